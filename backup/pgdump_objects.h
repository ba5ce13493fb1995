/*
 * pgdump_objects: the object kinds of a PostgreSQL snapshot beyond schemas,
 * types, sequences, functions and relations (those are pgdump_catalog.c's):
 * foreign-data wrappers, servers, user mappings, collations, casts,
 * conversions, operators, operator families and classes, text search
 * objects, access methods, languages, transforms (pre-data, in the
 * dependency sort; shell types are pgdump_catalog.c's, with base types), and row-level security, policies, rules,
 * publications, subscriptions, event triggers and default privileges
 * (post-data).
 *
 * Internal to backup/: pgdump_catalog.c calls it while it reads the
 * catalogs, inside the snapshot's one transaction.  Nothing here prints.
 */
#ifndef SM_PGDUMP_OBJECTS_H
#define SM_PGDUMP_OBJECTS_H

#include <libpq-fe.h>

#include "engine_pg.h"
#include "error.h"
#include "pg_archive.h"
#include "strbuf.h"

/* The user's schemas: what a snapshot holds (engine_pg.h's one
 * definition). */
#define USER_NSP PG_USER_NSP
/* Not a member of an extension (CREATE EXTENSION brings it back). */
#define NOT_EXT(cls, oidexpr)                                                         \
	"NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend x WHERE x.classid = '" cls    \
	"'::regclass AND x.objid = " oidexpr " AND x.deptype = 'e')"
/* The SECURITY LABEL statements (and their objects' names) of the labels
 * that where (a condition on pg_seclabels l) selects, but extension
 * members'.  pg_seclabels names each object as SECURITY LABEL wants it but a
 * column, whose own name it leaves unquoted: that one is built here. */
#define SECLABEL_SQL(where)                                                           \
	"SELECT 'SECURITY LABEL FOR ' || pg_catalog.quote_ident(x.provider) || ' ON ' || " \
	"x.target || ' IS ' || pg_catalog.quote_literal(x.label) || ';', x.target FROM ("  \
	"SELECT l.classoid, l.objoid, l.objsubid, l.provider, l.label, "                  \
	"pg_catalog.upper(l.objtype) || ' ' || CASE WHEN l.objsubid <> 0 THEN "           \
	"l.objoid::pg_catalog.regclass::text || '.' || pg_catalog.quote_ident((SELECT "   \
	"a.attname FROM pg_catalog.pg_attribute a WHERE a.attrelid = l.objoid AND "        \
	"a.attnum = l.objsubid)) ELSE l.objname END AS target "                           \
	"FROM pg_catalog.pg_seclabels l WHERE (" where ") AND NOT EXISTS (SELECT 1 FROM "  \
	"pg_catalog.pg_depend x WHERE x.classid = l.classoid AND x.objid = l.objoid AND "  \
	"x.deptype = 'e')) x ORDER BY x.classoid, x.objoid, x.objsubid, x.provider"

/* Ranks of pre-data objects: the tie-break of the dependency sort (lowest
 * first among the objects whose dependencies are all out). */
enum obj_rank {
	R_LANG, R_COLL, R_TYPE, R_SEQ, R_FUNC, R_AGG, R_AM, R_TRANSFORM, R_CAST, R_CONV,
	R_OPER, R_OPFAMILY, R_OPCLASS, R_TSPARSER, R_TSTEMPLATE, R_TSDICT, R_TSCONFIG,
	R_FDW, R_SERVER, R_UMAP, R_TABLE, R_VIEW, R_MATVIEW
};

/*
 * Object classes of the sort, one letter per catalog (pgcat's keys):
 * 'c' pg_class, 't' pg_type, 'p' pg_proc, 'l' pg_collation,
 * 'w' pg_foreign_data_wrapper, 's' pg_foreign_server, 'u' pg_user_mapping,
 * 'k' pg_cast, 'v' pg_conversion, 'o' pg_operator, 'F' pg_opfamily,
 * 'C' pg_opclass, 'P' pg_ts_parser, 'E' pg_ts_template, 'D' pg_ts_dict,
 * 'T' pg_ts_config, 'a' pg_am, 'g' pg_language, 'x' pg_transform; and
 * pgdump_catalog.c's own 'b' (a base type's full CREATE TYPE, after its
 * shell 't') and 'K' pg_constraint (a key a view needs, in pre-data).
 * PGOBJ_CLASS_OF(col) is the SQL that maps a regclass column to its letter
 * (NULL for a catalog the sort does not hold).
 */
#define PGOBJ_CLASS_OF(col)                                                       \
	"CASE " col " WHEN 'pg_catalog.pg_class'::regclass THEN 'c' "             \
	"WHEN 'pg_catalog.pg_type'::regclass THEN 't' "                           \
	"WHEN 'pg_catalog.pg_proc'::regclass THEN 'p' "                           \
	"WHEN 'pg_catalog.pg_collation'::regclass THEN 'l' "                      \
	"WHEN 'pg_catalog.pg_foreign_data_wrapper'::regclass THEN 'w' "           \
	"WHEN 'pg_catalog.pg_foreign_server'::regclass THEN 's' "                 \
	"WHEN 'pg_catalog.pg_user_mapping'::regclass THEN 'u' "                   \
	"WHEN 'pg_catalog.pg_cast'::regclass THEN 'k' "                           \
	"WHEN 'pg_catalog.pg_conversion'::regclass THEN 'v' "                     \
	"WHEN 'pg_catalog.pg_operator'::regclass THEN 'o' "                       \
	"WHEN 'pg_catalog.pg_opfamily'::regclass THEN 'F' "                       \
	"WHEN 'pg_catalog.pg_opclass'::regclass THEN 'C' "                        \
	"WHEN 'pg_catalog.pg_ts_parser'::regclass THEN 'P' "                      \
	"WHEN 'pg_catalog.pg_ts_template'::regclass THEN 'E' "                    \
	"WHEN 'pg_catalog.pg_ts_dict'::regclass THEN 'D' "                        \
	"WHEN 'pg_catalog.pg_ts_config'::regclass THEN 'T' "                      \
	"WHEN 'pg_catalog.pg_am'::regclass THEN 'a' "                             \
	"WHEN 'pg_catalog.pg_language'::regclass THEN 'g' "                       \
	"WHEN 'pg_catalog.pg_transform'::regclass THEN 'x' END"

/* Edges pg_depend holds only through an operator class's or family's
 * members (pg_amop, pg_amproc): the class or family needs the member's
 * operator, function and types first.  Rows (cls, oid, refcls, refoid),
 * the shape of pgdump_catalog.c's dependency query, to UNION ALL with it. */
#define PGOBJ_MEMBER_DEPS                                                         \
	"SELECT CASE o.refclassid WHEN 'pg_catalog.pg_opclass'::regclass THEN 'C' " \
	"ELSE 'F' END, o.refobjid, " PGOBJ_CLASS_OF("m.refclassid") ", m.refobjid " \
	"FROM pg_catalog.pg_depend o JOIN pg_catalog.pg_depend m ON "             \
	"m.classid = o.classid AND m.objid = o.objid "                             \
	"WHERE o.classid IN ('pg_catalog.pg_amop'::regclass, "                     \
	"'pg_catalog.pg_amproc'::regclass) AND o.refclassid IN ("                  \
	"'pg_catalog.pg_opclass'::regclass, 'pg_catalog.pg_opfamily'::regclass) "  \
	"AND o.refobjid >= 16384 AND m.refobjid >= 16384 AND m.refclassid IN ("    \
	"'pg_catalog.pg_operator'::regclass, 'pg_catalog.pg_proc'::regclass, "     \
	"'pg_catalog.pg_type'::regclass, 'pg_catalog.pg_opfamily'::regclass)"

/* " OPTIONS (k 'v', ...)" of an options array (text[]), or ''. */
#define PGOBJ_OPTIONS(arr)                                                        \
	"COALESCE((SELECT ' OPTIONS (' || pg_catalog.string_agg("                 \
	"pg_catalog.quote_ident(option_name) || ' ' || "                          \
	"pg_catalog.quote_literal(option_value), ', ') || ')' FROM "              \
	"pg_catalog.pg_options_to_table(" arr ")), '')"
/* " SERVER s OPTIONS (...)": what follows a foreign table's columns. */
#define PGOBJ_FOREIGN_TABLE(oidexpr)                                              \
	"(SELECT ' SERVER ' || pg_catalog.quote_ident(s.srvname) || "             \
	PGOBJ_OPTIONS("ft.ftoptions") " FROM pg_catalog.pg_foreign_table ft "     \
	"JOIN pg_catalog.pg_foreign_server s ON s.oid = ft.ftserver "             \
	"WHERE ft.ftrelid = " oidexpr ")"

/* The lock key of table c (an SQL expression): the root of its partition
 * tree (ALTER TABLE on a partitioned table recurses into its partitions). */
#define PGOBJ_LOCK_ROOT(c)                                                             \
	"COALESCE(pg_catalog.pg_partition_root(" c ".oid), " c ".oid)::pg_catalog.regclass::text"

/* The ALTER ... OWNER TO statements post-data runs, each with the object
 * it sets ("KIND NAME") and the role (as the SQL names it). */
struct pgcat_owner {
	char *object, *owner, *sql;
};

struct pgcat_owners {
	struct pgcat_owner *v;
	size_t n, alloc;
};

void pgcat_owners_release(struct pgcat_owners *o);

/* A post-data entry of pgdump_objects (all borrowed; pg_archive.h): its
 * SQL is one line, without its newline. */
struct pgobj_entry {
	const char *kind, *name;
	const char *owner;  /* the object's owner, or NULL */
	const char *tables[PGA_MAX_TABLES + 1]; /* locked in mode lock; NULL-ended */
	enum pga_lock lock;
	const char *sql;
};

/*
 * Kinds of objects a database may well hold none of: pgobj_present asks,
 * in one query, which it holds, and the queries that can only find objects
 * of a kind are not sent when it holds none (their planning and catalog
 * scans were most of the catalog reads' server time on a plain schema).
 * Each kind's test is at least as broad as the queries it stands for: it
 * holds for every row one of them could return (a superset of their
 * conditions), so a kind is never skipped that one of them would find.
 */
enum pgobj_kind {
	PK_COLLATION, PK_FDW, PK_LANGUAGE, PK_AM, PK_TRANSFORM, PK_CAST, PK_CONVERSION,
	PK_OPERATOR, PK_OPFAMILY, PK_OPCLASS, PK_TSPARSER, PK_TSTEMPLATE, PK_TSDICT,
	PK_TSCONFIG, PK_RLS, PK_POLICY, PK_RULE, PK_INIT_ACL, PK_INIT_COL_ACL, PK_PUBLICATION,
	PK_SUBSCRIPTION, PK_OBJ_COMMENT, PK_MISC_COMMENT, PK_DEFACL, PK_EVENT_TRIGGER,
	PK_SECLABEL, PK_INDEX_ATTACH, PK_INDEX_STATS, PK_INDEX_USE, PK_CHECK, PK_DOMAIN_CHECK,
	PK_TRIGGER, PK_TRIGGER_CLONE, PK_STATISTICS, PK_FUNCTION, PK_TYPE, PK_BASE_TYPE,
	PK_SEQUENCE, PK_EARLY_KEY,
	PK_NKINDS,
	PK_ALWAYS = PK_NKINDS /* a query sent whatever the database holds */
};

/* Fills *present with a bit (1 << kind) per kind the database holds.
 * 0, or -1 with err set. */
int pgobj_present(PGconn *conn, unsigned long long *present, struct sm_error *err);

/* Whether a query of kind k is to be sent. */
#define PGOBJ_HAS(present, k) ((k) == PK_ALWAYS || ((present) >> (k)) & 1ULL)

/* Where pgdump_objects puts what it reads (all borrowed). */
struct pgobj_out {
	PGconn *conn;
	int no_owner;
	struct sm_error *err;
	/* a pre-data object for the dependency sort; takes sql */
	void (*add)(void *ud, int rank, char cls, unsigned oid, char *sql);
	void *ud;
	struct pgcat_owners *owners; /* ALTER ... OWNER TO, run in post-data */
	/* a post-data entry, appended to post-data in the order given */
	void (*add_post)(void *ud, const struct pgobj_entry *e);
	unsigned long long present; /* pgobj_present's */
};

/* Runs sql; returns the result (caller PQclear) or NULL with err set. */
PGresult *pgcat_query(PGconn *conn, const char *sql, struct sm_error *err);
/* Runs the n queries of sql (NULL ones are skipped, their res[i] NULL) a
 * few round trips, one after the other: as many to a message as fit in
 * PGCAT_BATCH_BYTES (a message that big is never split into several
 * sends, which keeps a run's calls the same from run to run).  Fills res
 * (each to PQclear).  0, or -1 with err set and no result left.  The server
 * plans and runs each as pgcat_query would; only the waits between them
 * go. */
int pgcat_query_batch(PGconn *conn, const char *const *sql, size_t n, PGresult **res,
		      struct sm_error *err);
/* Cell (row, col) of r; NULL for SQL NULL (borrowed from r). */
const char *pgcat_val(const PGresult *r, int row, int col);
/* Cell (row, col) of r as an OID. */
unsigned pgcat_oid(const PGresult *r, int row, int col);
/* Appends "ALTER KIND NAME OWNER TO OWNER;" to owners, unless no_owner or
 * owner is NULL. */
void pgcat_owner_to(struct pgcat_owners *owners, int no_owner, const char *kind, const char *name,
		    const char *owner);
/* Runs sql and appends column 0 of every row (non-NULL), a line each. */
int pgcat_add_lines(PGconn *conn, const char *sql, struct strbuf *out, struct sm_error *err);

/* The start of pre-data, before the schemas and extensions: puts the
 * target's role-wide default privileges back to the built-in ones, so
 * that the objects the restore creates get the snapshot's ACLs, and drops
 * (IF EXISTS) the snapshot's objects that live outside every schema, so
 * that an in-place restore can create them again.  0, or -1 with o->err. */
int pgobj_prelude(const struct pgobj_out *o, struct strbuf *pre);

/* Pre-data objects: collations, foreign-data wrappers, servers, user
 * mappings, each handed to o->add.  0, or -1 with o->err set. */
int pgobj_pre(const struct pgobj_out *o);


/* Post-data, an entry each through o->add_post: row-level security and
 * policies, rules, grants on wrappers and servers, grants that differ from
 * pg_init_privs (pg_catalog objects, extension members, languages),
 * publications, subscriptions, comments on the kinds above, default
 * privileges, event triggers (last: nothing of the restore fires them). */
int pgobj_post(const struct pgobj_out *o);

/* Appends to out every object of a kind no snapshot reproduces, one
 * description a line, sorted (empty: none).  0, or -1 with err set. */
int pgobj_unsupported(PGconn *conn, struct strbuf *out, struct sm_error *err);

#endif
