/*
 * pgdump_objects: the object kinds of a PostgreSQL snapshot beyond the
 * schema's tables, types and functions (see pgdump_objects.h), and the
 * list of the kinds no snapshot reproduces yet.
 *
 * Each kind is read in one set-based query.  Objects that belong to an
 * extension (pg_depend deptype 'e'), or hang off one (a rule or a policy
 * of an extension's table), are the extension's: CREATE EXTENSION brings
 * them back, so they are neither dumped nor refused.
 *
 * Objects that live outside the snapshot's schemas (wrappers, servers,
 * user mappings, casts, transforms, access methods, languages, publications,
 * event triggers) survive the DROP SCHEMA CASCADE of an in-place restore
 * unless something dropped took them along: each is dropped IF EXISTS
 * before it is created again (pre-data's kinds at the start of pre-data),
 * so a restore puts back exactly the snapshot's.  So are large objects:
 * every one of the target's is unlinked first.
 */
#include "pgdump_objects.h"

#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

/* The object a rule, policy or trigger hangs off belongs to an extension. */
#define REL_NOT_EXT(oidexpr) NOT_EXT("pg_catalog.pg_class", oidexpr)

/* --- refused kinds ------------------------------------------------------- */

int pgobj_unsupported(PGconn *conn, struct strbuf *out, struct sm_error *err)
{
	static const char sql[] =
		"SELECT DISTINCT what COLLATE \"C\" AS what FROM ("
		/* objects living in a user schema, of a catalog no snapshot dumps
		 * (none today: this catches the kinds a later server adds) */
		"SELECT pg_catalog.pg_describe_object(d.classid, d.objid, 0) AS what "
		"FROM pg_catalog.pg_depend d WHERE d.refclassid = 'pg_catalog.pg_namespace'::regclass "
		"AND d.refobjid IN " USER_NSP " AND d.deptype = 'n' AND d.classid NOT IN ("
		"'pg_catalog.pg_class'::regclass, 'pg_catalog.pg_type'::regclass, "
		"'pg_catalog.pg_proc'::regclass, 'pg_catalog.pg_statistic_ext'::regclass, "
		"'pg_catalog.pg_extension'::regclass, 'pg_catalog.pg_collation'::regclass, "
		"'pg_catalog.pg_conversion'::regclass, 'pg_catalog.pg_operator'::regclass, "
		"'pg_catalog.pg_opclass'::regclass, 'pg_catalog.pg_opfamily'::regclass, "
		"'pg_catalog.pg_ts_parser'::regclass, 'pg_catalog.pg_ts_template'::regclass, "
		"'pg_catalog.pg_ts_dict'::regclass, 'pg_catalog.pg_ts_config'::regclass) "
		"AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend x WHERE x.classid = d.classid "
		"AND x.objid = d.objid AND x.deptype = 'e') "
		/* a subscription's connection string is for superusers' eyes only */
		"UNION ALL SELECT 'subscription ' || pg_catalog.quote_ident(s.subname) || "
		"' (only a superuser can read it)' FROM pg_catalog.pg_subscription s "
		"JOIN pg_catalog.pg_database db ON db.oid = s.subdbid "
		"WHERE db.datname = pg_catalog.current_database() AND NOT (SELECT r.rolsuper FROM "
		"pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER) "
		") u ORDER BY 1";

	return pgcat_add_lines(conn, sql, out, err);
}

/* --- which kinds the database holds ------------------------------------ */

/* Rows of a catalog whose ACL differs from pg_init_privs' (objsubid 0), as
 * init_acl_sql compares them: either the ACL is set and differs, on an
 * object of the kind that query reads (ours: where, if a namespace, it is
 * pg_catalog or the object an extension's member), or it is NULL where
 * pg_init_privs has one. */
#define ACL_DIFFERS(cat, alias, acl, ours)                                              \
	"EXISTS (SELECT 1 FROM pg_catalog." cat " " alias " LEFT JOIN pg_catalog.pg_init_privs ip " \
	"ON ip.classoid = 'pg_catalog." cat "'::regclass AND ip.objoid = " alias ".oid AND "  \
	"ip.objsubid = 0 WHERE " alias "." acl " IS NOT NULL AND " alias "." acl " IS DISTINCT " \
	"FROM ip.initprivs AND " ours ") OR EXISTS (SELECT 1 FROM pg_catalog.pg_init_privs ip " \
	"LEFT JOIN pg_catalog." cat " " alias " ON " alias ".oid = ip.objoid WHERE ip.classoid = " \
	"'pg_catalog." cat "'::regclass AND ip.objsubid = 0 AND " alias "." acl " IS DISTINCT " \
	"FROM ip.initprivs)"
#define IN_CATALOG_OR_EXT(cat, alias, nsp)                                              \
	"(" alias "." nsp " = 'pg_catalog'::regnamespace OR NOT " NOT_EXT("pg_catalog." cat, alias ".oid") ")"

/* A catalog has an object of the user's: objects in the user's schemas
 * were all made after initdb, and so have OIDs from FirstNormalObjectId
 * (16384) up (those below are initdb's, which PostgreSQL never hands out
 * again, also after the OID counter wraps around).  A range scan of the
 * catalog's OID index. */
#define USER_OBJECT(cat) "SELECT 1 FROM pg_catalog." cat " WHERE oid >= 16384"

/* Each kind's test (see enum pgobj_kind): the queries' own first conditions,
 * without what narrows them further (extension members, the user's schemas
 * by name, ...). */
static const char *const kind_test[PK_NKINDS] = {
	[PK_COLLATION] = USER_OBJECT("pg_collation"),
	/* a server needs its wrapper, a user mapping its server */
	[PK_FDW] = "SELECT 1 FROM pg_catalog.pg_foreign_data_wrapper",
	[PK_LANGUAGE] = USER_OBJECT("pg_language"),
	[PK_AM] = USER_OBJECT("pg_am"),
	[PK_TRANSFORM] = "SELECT 1 FROM pg_catalog.pg_transform",
	[PK_CAST] = USER_OBJECT("pg_cast"),
	[PK_CONVERSION] = USER_OBJECT("pg_conversion"),
	[PK_OPERATOR] = USER_OBJECT("pg_operator"),
	[PK_OPFAMILY] = USER_OBJECT("pg_opfamily"),
	[PK_OPCLASS] = USER_OBJECT("pg_opclass"),
	[PK_TSPARSER] = USER_OBJECT("pg_ts_parser"),
	[PK_TSTEMPLATE] = USER_OBJECT("pg_ts_template"),
	[PK_TSDICT] = USER_OBJECT("pg_ts_dict"),
	[PK_TSCONFIG] = USER_OBJECT("pg_ts_config"),
	[PK_RLS] = "SELECT 1 FROM pg_catalog.pg_class c WHERE c.relrowsecurity OR c.relforcerowsecurity",
	[PK_POLICY] = "SELECT 1 FROM pg_catalog.pg_policy",
	/* (pg_settings has rules of its own) */
	[PK_RULE] = "SELECT 1 FROM pg_catalog.pg_rewrite r WHERE r.oid >= 16384 AND "
		"r.rulename <> '_RETURN'",
	[PK_INIT_ACL] = "SELECT 1 WHERE "
		ACL_DIFFERS("pg_class", "c", "relacl", IN_CATALOG_OR_EXT("pg_class", "c", "relnamespace"))
		" OR " ACL_DIFFERS("pg_proc", "p", "proacl", IN_CATALOG_OR_EXT("pg_proc", "p", "pronamespace"))
		" OR " ACL_DIFFERS("pg_type", "t", "typacl", IN_CATALOG_OR_EXT("pg_type", "t", "typnamespace"))
		" OR " ACL_DIFFERS("pg_language", "l", "lanacl", "true"),
	/* the same for columns (init_col_acl_sql) */
	[PK_INIT_COL_ACL] = "SELECT 1 WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a "
		"JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
		"LEFT JOIN pg_catalog.pg_init_privs ip ON ip.classoid = 'pg_catalog.pg_class'::regclass "
		"AND ip.objoid = a.attrelid AND ip.objsubid = a.attnum WHERE a.attacl IS NOT NULL "
		"AND a.attacl IS DISTINCT FROM ip.initprivs AND "
		IN_CATALOG_OR_EXT("pg_class", "c", "relnamespace") ") OR EXISTS (SELECT 1 FROM "
		"pg_catalog.pg_init_privs ip LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = "
		"ip.objoid AND a.attnum = ip.objsubid WHERE ip.classoid = "
		"'pg_catalog.pg_class'::regclass AND ip.objsubid <> 0 AND a.attacl IS DISTINCT FROM "
		"ip.initprivs)",
	[PK_PUBLICATION] = "SELECT 1 FROM pg_catalog.pg_publication",
	/* (subdbid: readable by anyone, unlike subconninfo) */
	[PK_SUBSCRIPTION] = "SELECT 1 FROM pg_catalog.pg_subscription s JOIN pg_catalog.pg_database "
		"db ON db.oid = s.subdbid WHERE db.datname = pg_catalog.current_database()",
	[PK_OBJ_COMMENT] = "SELECT 1 FROM pg_catalog.pg_description d WHERE d.objoid >= 16384 AND "
		"d.classoid IN ('pg_catalog.pg_collation'::regclass, "
		"'pg_catalog.pg_foreign_data_wrapper'::regclass, 'pg_catalog.pg_foreign_server'::regclass, "
		"'pg_catalog.pg_policy'::regclass, 'pg_catalog.pg_rewrite'::regclass, "
		"'pg_catalog.pg_publication'::regclass)",
	[PK_MISC_COMMENT] = "SELECT 1 FROM pg_catalog.pg_description d WHERE d.objoid >= 16384 AND "
		"d.classoid IN ('pg_catalog.pg_cast'::regclass, 'pg_catalog.pg_conversion'::regclass, "
		"'pg_catalog.pg_operator'::regclass, 'pg_catalog.pg_opclass'::regclass, "
		"'pg_catalog.pg_opfamily'::regclass, 'pg_catalog.pg_ts_parser'::regclass, "
		"'pg_catalog.pg_ts_template'::regclass, 'pg_catalog.pg_ts_dict'::regclass, "
		"'pg_catalog.pg_ts_config'::regclass, 'pg_catalog.pg_am'::regclass, "
		"'pg_catalog.pg_language'::regclass)",
	[PK_DEFACL] = "SELECT 1 FROM pg_catalog.pg_default_acl",
	[PK_EVENT_TRIGGER] = "SELECT 1 FROM pg_catalog.pg_event_trigger",
	/* pg_seclabels is these two */
	[PK_SECLABEL] = "SELECT 1 FROM pg_catalog.pg_seclabel UNION ALL SELECT 1 FROM "
		"pg_catalog.pg_shseclabel",
	[PK_INDEX_ATTACH] = "SELECT 1 FROM pg_catalog.pg_inherits h JOIN pg_catalog.pg_index i ON "
		"i.indexrelid = h.inhrelid",
	/* (an index's columns are numbered from 1; a table's system columns,
	 * below 0, have a target of 0) */
	[PK_INDEX_STATS] = "SELECT 1 FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_index i ON "
		"i.indexrelid = a.attrelid WHERE a.attstattarget >= 0 AND a.attnum > 0",
	[PK_INDEX_USE] = "SELECT 1 FROM pg_catalog.pg_index i WHERE i.indisclustered OR "
		"i.indisreplident",
	/* (a table's: information_schema's domains have checks) */
	[PK_CHECK] = "SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.contype = 'c' AND "
		"k.conrelid <> 0",
	[PK_DOMAIN_CHECK] = "SELECT 1 FROM pg_catalog.pg_constraint k WHERE NOT k.convalidated",
	[PK_TRIGGER] = "SELECT 1 FROM pg_catalog.pg_trigger t WHERE NOT t.tgisinternal",
	[PK_TRIGGER_CLONE] = "SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgparentid <> 0",
	[PK_STATISTICS] = "SELECT 1 FROM pg_catalog.pg_statistic_ext",
	/* pgdump_catalog.c's functions and aggregates, enums, domains, ranges and
	 * composite types, base and shell types (not a table's row type's
	 * array), sequences */
	[PK_FUNCTION] = USER_OBJECT("pg_proc"),
	[PK_TYPE] = "SELECT 1 FROM pg_catalog.pg_type t WHERE t.oid >= 16384 AND t.typtype IN "
		"('e', 'd', 'r') UNION ALL SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid >= 16384 "
		"AND c.relkind = 'c'",
	[PK_BASE_TYPE] = "SELECT 1 FROM pg_catalog.pg_type t WHERE t.oid >= 16384 AND "
		"(t.typtype = 'b' AND (t.typelem = 0 OR (SELECT e.typarray FROM pg_catalog.pg_type e "
		"WHERE e.oid = t.typelem) <> t.oid) OR t.typtype = 'p' AND NOT t.typisdefined)",
	[PK_SEQUENCE] = "SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid >= 16384 AND "
		"c.relkind = 'S'",
	/* a key a rule or a function names (pgdump_catalog.c's KEY_NEEDED_EARLY:
	 * with none, none of their partitions' keys either) */
	[PK_EARLY_KEY] = "SELECT 1 FROM pg_catalog.pg_depend kd WHERE kd.refclassid = "
		"'pg_catalog.pg_constraint'::regclass AND kd.classid IN "
		"('pg_catalog.pg_rewrite'::regclass, 'pg_catalog.pg_proc'::regclass)",
};

int pgobj_present(PGconn *conn, unsigned long long *present, struct sm_error *err)
{
	struct strbuf sql = STRBUF_INIT;
	PGresult *r;
	int k;

	/* one column a kind, 't' or 'f' */
	for (k = 0; k < PK_NKINDS; k++)
		sb_addf(&sql, "%sEXISTS (%s)", k ? ", " : "SELECT ", kind_test[k]);
	r = pgcat_query(conn, sql.buf, err);
	sb_release(&sql);
	if (!r)
		return -1;
	*present = 0;
	for (k = 0; k < PK_NKINDS && PQntuples(r) == 1 && k < PQnfields(r); k++)
		if (PQgetvalue(r, 0, k)[0] == 't')
			*present |= 1ULL << k;
	PQclear(r);
	return 0;
}

/* --- pre-data ------------------------------------------------------------ */

/* The target's role-wide default privileges would apply to every object the
 * restore creates (an object whose ACL was the built-in default would come
 * back with the target's): they are reset to the built-in defaults first,
 * and the snapshot's are set again at the end of post-data.  Those of roles
 * the restoring role is not a member of stay as they are (it may not
 * change them). */
static const char defacl_reset_sql[] =
	"DO $sm$ DECLARE d record; g record; BEGIN\n"
	"FOR d IN SELECT pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.defaclrole)) AS r, "
	"a.defaclacl AS acl, CASE a.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES' "
	"WHEN 'f' THEN 'FUNCTIONS' WHEN 'T' THEN 'TYPES' WHEN 'n' THEN 'SCHEMAS' END AS o "
	"FROM pg_catalog.pg_default_acl a WHERE a.defaclnamespace = 0 "
	/* only a member of the role may change its defaults */
	"AND pg_catalog.pg_has_role(a.defaclrole, 'MEMBER') LOOP\n"
	"FOR g IN SELECT DISTINCT x.grantee FROM pg_catalog.aclexplode(d.acl) x LOOP\n"
	"EXECUTE pg_catalog.format('ALTER DEFAULT PRIVILEGES FOR ROLE %s REVOKE ALL ON %s FROM %s', "
	"d.r, d.o, CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE "
	"pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(g.grantee)) END);\n"
	"END LOOP;\n"
	"EXECUTE pg_catalog.format('ALTER DEFAULT PRIVILEGES FOR ROLE %s GRANT ALL ON %s TO %s', "
	"d.r, d.o, d.r);\n"
	"IF d.o IN ('FUNCTIONS', 'TYPES') THEN EXECUTE pg_catalog.format("
	"'ALTER DEFAULT PRIVILEGES FOR ROLE %s GRANT %s ON %s TO PUBLIC', d.r, "
	"CASE d.o WHEN 'TYPES' THEN 'USAGE' ELSE 'EXECUTE' END, d.o); END IF;\n"
	"END LOOP; END $sm$;\n";

/* The objects of the snapshot that live outside every schema, and so may
 * outlive the DROP SCHEMA ... CASCADE of an in-place restore (a cast between
 * built-in types, a wrapper whose functions are built in, or anything else
 * whose dependencies are all outside the dropped schemas): dropped before
 * anything is created, not right before their own CREATE, since what the
 * restore creates meanwhile may come to depend on them (a SQL function on
 * a transform's type).  CASCADE only where the dependents are kinds the
 * snapshot puts back (a server's user mappings and foreign tables). */
static const char drops_sql[] =
	"SELECT sql FROM ("
	" SELECT 1 AS k, t.oid, 'DROP TRANSFORM IF EXISTS FOR ' || pg_catalog.format_type(t.trftype, "
	" NULL) || ' LANGUAGE ' || pg_catalog.quote_ident(l.lanname) || ';' AS sql "
	" FROM pg_catalog.pg_transform t JOIN pg_catalog.pg_language l ON l.oid = t.trflang "
	" WHERE " NOT_EXT("pg_catalog.pg_transform", "t.oid")
	" UNION ALL SELECT 2, c.oid, 'DROP CAST IF EXISTS (' || pg_catalog.format_type(c.castsource, "
	" NULL) || ' AS ' || pg_catalog.format_type(c.casttarget, NULL) || ');' FROM "
	" pg_catalog.pg_cast c WHERE c.oid >= 16384 AND " NOT_EXT("pg_catalog.pg_cast", "c.oid")
	" AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend x WHERE x.classid = "
	" 'pg_catalog.pg_cast'::regclass AND x.objid = c.oid AND x.deptype = 'i')"
	" UNION ALL SELECT 3, s.oid, 'DROP SERVER IF EXISTS ' || pg_catalog.quote_ident(s.srvname) || "
	" ' CASCADE;' FROM pg_catalog.pg_foreign_server s WHERE "
	NOT_EXT("pg_catalog.pg_foreign_server", "s.oid")
	" UNION ALL SELECT 4, w.oid, 'DROP FOREIGN DATA WRAPPER IF EXISTS ' || "
	" pg_catalog.quote_ident(w.fdwname) || ' CASCADE;' FROM pg_catalog.pg_foreign_data_wrapper w "
	" WHERE " NOT_EXT("pg_catalog.pg_foreign_data_wrapper", "w.oid")
	" UNION ALL SELECT 5, a.oid, 'DROP ACCESS METHOD IF EXISTS ' || pg_catalog.quote_ident(a.amname) "
	" || ';' FROM pg_catalog.pg_am a WHERE a.oid >= 16384 AND " NOT_EXT("pg_catalog.pg_am", "a.oid")
	" UNION ALL SELECT 6, l.oid, 'DROP LANGUAGE IF EXISTS ' || pg_catalog.quote_ident(l.lanname) "
	" || ';' FROM pg_catalog.pg_language l WHERE l.oid >= 16384 AND "
	NOT_EXT("pg_catalog.pg_language", "l.oid") ") d ORDER BY k, oid";

/* Large objects live outside every schema too: all of the target's go, the
 * snapshot's are created again (pgdump_catalog.c), so that an in-place
 * restore also removes those made after the snapshot. */
static const char blobs_reset_sql[] =
	"SELECT pg_catalog.lo_unlink(l.oid) FROM pg_catalog.pg_largeobject_metadata l;\n";

int pgobj_prelude(const struct pgobj_out *o, struct strbuf *pre)
{
	sb_adds(pre, defacl_reset_sql);
	sb_adds(pre, blobs_reset_sql);
	return pgcat_add_lines(o->conn, drops_sql, pre, o->err);
}

static int dump_collations(const struct pgobj_out *o)
{
	PGresult *r = pgcat_query(o->conn,
		"SELECT c.oid, pg_catalog.quote_ident(n.nspname) || '.' || "
		"pg_catalog.quote_ident(c.collname), "
		"pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(c.collowner)), c.collprovider, "
		"c.collisdeterministic, pg_catalog.quote_literal(c.collcollate), "
		"pg_catalog.quote_literal(c.collctype), pg_catalog.quote_literal(c.colliculocale) "
		"FROM pg_catalog.pg_collation c JOIN pg_catalog.pg_namespace n ON n.oid = c.collnamespace "
		"WHERE c.collnamespace IN " USER_NSP " AND " NOT_EXT("pg_catalog.pg_collation", "c.oid")
		" ORDER BY c.oid", o->err);
	int i;

	if (!r)
		return -1;
	for (i = 0; i < PQntuples(r); i++) {
		struct strbuf sb = STRBUF_INIT;
		const char *name = PQgetvalue(r, i, 1), *prov = PQgetvalue(r, i, 3);

		sb_addf(&sb, "CREATE COLLATION %s (provider = %s", name,
			prov[0] == 'i' ? "icu" : prov[0] == 'c' ? "libc" : "default");
		if (prov[0] == 'i' && pgcat_val(r, i, 7))
			sb_addf(&sb, ", locale = %s", pgcat_val(r, i, 7));
		else if (prov[0] == 'c' && pgcat_val(r, i, 5) && pgcat_val(r, i, 6))
			sb_addf(&sb, ", lc_collate = %s, lc_ctype = %s", pgcat_val(r, i, 5), pgcat_val(r, i, 6));
		if (PQgetvalue(r, i, 4)[0] != 't')
			sb_adds(&sb, ", deterministic = false");
		sb_adds(&sb, ");\n");
		o->add(o->ud, R_COLL, 'l', pgcat_oid(r, i, 0), sb_detach(&sb));
		pgcat_owner_to(o->owners, o->no_owner, "COLLATION", name, PQgetvalue(r, i, 2));
	}
	PQclear(r);
	return 0;
}

static int dump_fdws(const struct pgobj_out *o)
{
	PGresult *r = pgcat_query(o->conn,
		"SELECT w.oid, pg_catalog.quote_ident(w.fdwname), "
		"pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(w.fdwowner)), "
		"NULLIF(w.fdwhandler, 0)::pg_catalog.regproc, NULLIF(w.fdwvalidator, 0)::pg_catalog.regproc, "
		PGOBJ_OPTIONS("w.fdwoptions") " FROM pg_catalog.pg_foreign_data_wrapper w WHERE "
		NOT_EXT("pg_catalog.pg_foreign_data_wrapper", "w.oid") " ORDER BY w.oid", o->err);
	int i;

	if (!r)
		return -1;
	for (i = 0; i < PQntuples(r); i++) {
		struct strbuf sb = STRBUF_INIT;
		const char *name = PQgetvalue(r, i, 1);

		sb_addf(&sb, "CREATE FOREIGN DATA WRAPPER %s", name);
		if (pgcat_val(r, i, 3))
			sb_addf(&sb, " HANDLER %s", pgcat_val(r, i, 3));
		if (pgcat_val(r, i, 4))
			sb_addf(&sb, " VALIDATOR %s", pgcat_val(r, i, 4));
		sb_addf(&sb, "%s;\n", PQgetvalue(r, i, 5));
		o->add(o->ud, R_FDW, 'w', pgcat_oid(r, i, 0), sb_detach(&sb));
		pgcat_owner_to(o->owners, o->no_owner, "FOREIGN DATA WRAPPER", name, PQgetvalue(r, i, 2));
	}
	PQclear(r);
	return 0;
}

static int dump_servers(const struct pgobj_out *o)
{
	PGresult *r = pgcat_query(o->conn,
		"SELECT s.oid, pg_catalog.quote_ident(s.srvname), "
		"pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(s.srvowner)), "
		"pg_catalog.quote_literal(s.srvtype), pg_catalog.quote_literal(s.srvversion), "
		"pg_catalog.quote_ident(w.fdwname), " PGOBJ_OPTIONS("s.srvoptions")
		" FROM pg_catalog.pg_foreign_server s JOIN pg_catalog.pg_foreign_data_wrapper w "
		"ON w.oid = s.srvfdw WHERE " NOT_EXT("pg_catalog.pg_foreign_server", "s.oid")
		" ORDER BY s.oid", o->err);
	int i;

	if (!r)
		return -1;
	for (i = 0; i < PQntuples(r); i++) {
		struct strbuf sb = STRBUF_INIT;
		const char *name = PQgetvalue(r, i, 1);

		sb_addf(&sb, "CREATE SERVER %s", name);
		if (pgcat_val(r, i, 3))
			sb_addf(&sb, " TYPE %s", pgcat_val(r, i, 3));
		if (pgcat_val(r, i, 4))
			sb_addf(&sb, " VERSION %s", pgcat_val(r, i, 4));
		sb_addf(&sb, " FOREIGN DATA WRAPPER %s%s;\n", PQgetvalue(r, i, 5), PQgetvalue(r, i, 6));
		o->add(o->ud, R_SERVER, 's', pgcat_oid(r, i, 0), sb_detach(&sb));
		pgcat_owner_to(o->owners, o->no_owner, "SERVER", name, PQgetvalue(r, i, 2));
	}
	PQclear(r);
	return 0;
}

/* pg_user_mappings shows the options (passwords too) to whoever may see
 * them, as pg_dump reads them. */
static int dump_user_mappings(const struct pgobj_out *o)
{
	PGresult *r = pgcat_query(o->conn,
		"SELECT u.umid, CASE WHEN u.umuser = 0 THEN 'PUBLIC' ELSE "
		"pg_catalog.quote_ident(u.usename) END, pg_catalog.quote_ident(u.srvname), "
		PGOBJ_OPTIONS("u.umoptions") " FROM pg_catalog.pg_user_mappings u "
		"WHERE " NOT_EXT("pg_catalog.pg_foreign_server", "u.srvid") " ORDER BY u.umid", o->err);
	int i;

	if (!r)
		return -1;
	for (i = 0; i < PQntuples(r); i++) {
		struct strbuf sb = STRBUF_INIT;

		sb_addf(&sb, "CREATE USER MAPPING FOR %s SERVER %s%s;\n", PQgetvalue(r, i, 1),
			PQgetvalue(r, i, 2), PQgetvalue(r, i, 3));
		o->add(o->ud, R_UMAP, 'u', pgcat_oid(r, i, 0), sb_detach(&sb));
	}
	PQclear(r);
	return 0;
}


/* Adds, for every row of sql, column 1 (taken as the statement) to the sort
 * as (rank, cls, column 0), and ALTER kind <column 2> OWNER TO <column 3>
 * when column 3 is there.  For the kinds whose statement SQL builds whole. */
/* Adds the objects of r (one of the queries below; taken) of rank and
 * catalog cls, with ALTER kind ... OWNER TO if kind is not NULL. */
static void add_rows(const struct pgobj_out *o, PGresult *r, int rank, char cls,
		     const char *kind)
{
	int i;

	for (i = 0; i < PQntuples(r); i++) {
		o->add(o->ud, rank, cls, pgcat_oid(r, i, 0), xstrdup(PQgetvalue(r, i, 1)));
		if (PQnfields(r) > 3 && pgcat_val(r, i, 3))
			pgcat_owner_to(o->owners, o->no_owner, kind, PQgetvalue(r, i, 2), PQgetvalue(r, i, 3));
	}
	PQclear(r);
}

#define QNAME(nsp, name) "pg_catalog.quote_ident(" nsp ") || '.' || pg_catalog.quote_ident(" name ")"
#define OWNER(col) "pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(" col "))"

/* Casts between any types, when the user made them (not a domain's or a
 * range's built-in ones). */
static const char cast_sql[] =
	"SELECT c.oid, 'CREATE CAST (' || "
	"pg_catalog.format_type(c.castsource, NULL) || ' AS ' || pg_catalog.format_type(c.casttarget, "
	"NULL) || ') ' || CASE c.castmethod WHEN 'f' THEN 'WITH FUNCTION ' || "
	"c.castfunc::pg_catalog.regprocedure::text WHEN 'i' THEN 'WITH INOUT' ELSE 'WITHOUT FUNCTION' "
	"END || CASE c.castcontext WHEN 'a' THEN ' AS ASSIGNMENT' WHEN 'i' THEN ' AS IMPLICIT' ELSE '' "
	"END || E';\n' FROM pg_catalog.pg_cast c WHERE c.oid >= 16384 AND "
	NOT_EXT("pg_catalog.pg_cast", "c.oid") " AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend x "
	"WHERE x.classid = 'pg_catalog.pg_cast'::regclass AND x.objid = c.oid AND x.deptype = 'i') "
	"ORDER BY c.oid";

static const char conversion_sql[] =
	"SELECT c.oid, 'CREATE ' || CASE WHEN c.condefault THEN 'DEFAULT ' ELSE '' END || "
	"'CONVERSION ' || " QNAME("n.nspname", "c.conname") " || ' FOR ' || pg_catalog.quote_literal("
	"pg_catalog.pg_encoding_to_char(c.conforencoding)) || ' TO ' || pg_catalog.quote_literal("
	"pg_catalog.pg_encoding_to_char(c.contoencoding)) || ' FROM ' || c.conproc::pg_catalog.regproc"
	"::text || E';\n', " QNAME("n.nspname", "c.conname") ", " OWNER("c.conowner")
	" FROM pg_catalog.pg_conversion c JOIN pg_catalog.pg_namespace n ON n.oid = c.connamespace "
	"WHERE c.connamespace IN " USER_NSP " AND " NOT_EXT("pg_catalog.pg_conversion", "c.oid")
	" ORDER BY c.oid";

/* Operators (not the shells a COMMUTATOR or NEGATOR left undefined), in
 * pg_dump's order, by name: defining an operator fills in the links of the
 * ones that name it as COMMUTATOR or NEGATOR, so the order decides which
 * links exist. */
#define OPREF(col) "(SELECT 'OPERATOR(' || pg_catalog.quote_ident(rn.nspname) || '.' || " \
	"r.oprname || ')' FROM pg_catalog.pg_operator r JOIN pg_catalog.pg_namespace rn ON " \
	"rn.oid = r.oprnamespace WHERE r.oid = " col ")"
static const char operator_sql[] =
	"SELECT o.oid, 'CREATE OPERATOR ' || pg_catalog.quote_ident(n.nspname) || '.' || o.oprname || "
	"' (FUNCTION = ' || o.oprcode::pg_catalog.regproc::text || "
	"CASE WHEN o.oprleft <> 0 THEN ', LEFTARG = ' || pg_catalog.format_type(o.oprleft, NULL) "
	"ELSE '' END || CASE WHEN o.oprright <> 0 THEN ', RIGHTARG = ' || "
	"pg_catalog.format_type(o.oprright, NULL) ELSE '' END || "
	"COALESCE(', COMMUTATOR = ' || " OPREF("NULLIF(o.oprcom, 0)") ", '') || "
	"COALESCE(', NEGATOR = ' || " OPREF("NULLIF(o.oprnegate, 0)") ", '') || "
	"COALESCE(', RESTRICT = ' || NULLIF(o.oprrest, 0)::pg_catalog.regproc::text, '') || "
	"COALESCE(', JOIN = ' || NULLIF(o.oprjoin, 0)::pg_catalog.regproc::text, '') || "
	"CASE WHEN o.oprcanhash THEN ', HASHES' ELSE '' END || "
	"CASE WHEN o.oprcanmerge THEN ', MERGES' ELSE '' END || E');\n', "
	"o.oid::pg_catalog.regoperator::text, " OWNER("o.oprowner")
	" FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace "
	"WHERE o.oprnamespace IN " USER_NSP " AND o.oprcode <> 0 AND "
	NOT_EXT("pg_catalog.pg_operator", "o.oid") " ORDER BY n.nspname COLLATE \"C\", "
	"o.oprname COLLATE \"C\", o.oprleft, o.oprright";

/* An operator family's or class's members: "OPERATOR n op(l, r) [FOR ...]"
 * and "FUNCTION n (l, r) f(args)"; loose: the family's own (pg_depend 'a'),
 * else the class's ('i'). */
#define AMOP_ITEMS(ownercls, ownerexpr, deptype)                                          \
	"(SELECT pg_catalog.string_agg(item, ', ' ORDER BY k, num) FROM ("                    \
	"SELECT 0 AS k, ao.amopstrategy AS num, 'OPERATOR ' || ao.amopstrategy || ' ' || "    \
	"ao.amopopr::pg_catalog.regoperator::text || CASE WHEN ao.amoppurpose = 'o' THEN "    \
	"' FOR ORDER BY ' || " QNAME("sn.nspname", "sf.opfname") " ELSE '' END AS item "      \
	"FROM pg_catalog.pg_amop ao JOIN pg_catalog.pg_depend dd ON dd.classid = "            \
	"'pg_catalog.pg_amop'::regclass AND dd.objid = ao.oid AND dd.refclassid = '"         \
	ownercls "'::regclass AND dd.refobjid = " ownerexpr " AND dd.deptype = '" deptype "' " \
	"LEFT JOIN pg_catalog.pg_opfamily sf ON sf.oid = ao.amopsortfamily "                  \
	"LEFT JOIN pg_catalog.pg_namespace sn ON sn.oid = sf.opfnamespace "                   \
	"UNION ALL SELECT 1, ap.amprocnum, 'FUNCTION ' || ap.amprocnum || ' (' || "           \
	"pg_catalog.format_type(ap.amproclefttype, NULL) || ', ' || "                         \
	"pg_catalog.format_type(ap.amprocrighttype, NULL) || ') ' || "                        \
	"ap.amproc::pg_catalog.regprocedure::text FROM pg_catalog.pg_amproc ap "              \
	"JOIN pg_catalog.pg_depend dd ON dd.classid = 'pg_catalog.pg_amproc'::regclass "      \
	"AND dd.objid = ap.oid AND dd.refclassid = '" ownercls "'::regclass AND "            \
	"dd.refobjid = " ownerexpr " AND dd.deptype = '" deptype "') items)"

static const char opfamily_sql[] =
	"SELECT f.oid, 'CREATE OPERATOR FAMILY ' || " QNAME("n.nspname", "f.opfname") " || "
	"' USING ' || pg_catalog.quote_ident(a.amname) || E';\n' || COALESCE('ALTER OPERATOR "
	"FAMILY ' || " QNAME("n.nspname", "f.opfname") " || ' USING ' || "
	"pg_catalog.quote_ident(a.amname) || ' ADD ' || "
	AMOP_ITEMS("pg_catalog.pg_opfamily", "f.oid", "a") " || E';\n', ''), "
	QNAME("n.nspname", "f.opfname") " || ' USING ' || pg_catalog.quote_ident(a.amname), "
	OWNER("f.opfowner") " FROM pg_catalog.pg_opfamily f JOIN pg_catalog.pg_namespace n "
	"ON n.oid = f.opfnamespace JOIN pg_catalog.pg_am a ON a.oid = f.opfmethod "
	"WHERE f.opfnamespace IN " USER_NSP " AND " NOT_EXT("pg_catalog.pg_opfamily", "f.oid")
	" ORDER BY f.oid";

static const char opclass_sql[] =
	"SELECT c.oid, 'CREATE OPERATOR CLASS ' || " QNAME("n.nspname", "c.opcname") " || "
	"CASE WHEN c.opcdefault THEN ' DEFAULT' ELSE '' END || ' FOR TYPE ' || "
	"pg_catalog.format_type(c.opcintype, NULL) || ' USING ' || pg_catalog.quote_ident(a.amname) "
	"|| ' FAMILY ' || " QNAME("fn.nspname", "f.opfname") " || ' AS ' || "
	/* a class with no members of its own still says something: its
	 * storage type, which is its input type when not recorded */
	"COALESCE(NULLIF(pg_catalog.concat_ws(', ', CASE WHEN c.opckeytype <> 0 THEN 'STORAGE ' || "
	"pg_catalog.format_type(c.opckeytype, NULL) END, "
	AMOP_ITEMS("pg_catalog.pg_opclass", "c.oid", "i") "), ''), 'STORAGE ' || "
	"pg_catalog.format_type(c.opcintype, NULL)) || E';\n', "
	QNAME("n.nspname", "c.opcname") " || ' USING ' || pg_catalog.quote_ident(a.amname), "
	OWNER("c.opcowner") " FROM pg_catalog.pg_opclass c JOIN pg_catalog.pg_namespace n "
	"ON n.oid = c.opcnamespace JOIN pg_catalog.pg_am a ON a.oid = c.opcmethod "
	"JOIN pg_catalog.pg_opfamily f ON f.oid = c.opcfamily JOIN pg_catalog.pg_namespace fn "
	"ON fn.oid = f.opfnamespace WHERE c.opcnamespace IN " USER_NSP " AND "
	NOT_EXT("pg_catalog.pg_opclass", "c.oid") " ORDER BY c.oid";

static const char tsparser_sql[] =
	"SELECT p.oid, 'CREATE TEXT SEARCH PARSER ' || " QNAME("n.nspname", "p.prsname") " || "
	"' (START = ' || p.prsstart::pg_catalog.regproc::text || ', GETTOKEN = ' || "
	"p.prstoken::pg_catalog.regproc::text || ', END = ' || p.prsend::pg_catalog.regproc::text || "
	"', LEXTYPES = ' || p.prslextype::pg_catalog.regproc::text || COALESCE(', HEADLINE = ' || "
	"NULLIF(p.prsheadline, 0)::pg_catalog.regproc::text, '') || E');\n' "
	"FROM pg_catalog.pg_ts_parser p JOIN pg_catalog.pg_namespace n ON n.oid = p.prsnamespace "
	"WHERE p.prsnamespace IN " USER_NSP " AND " NOT_EXT("pg_catalog.pg_ts_parser", "p.oid")
	" ORDER BY p.oid";

static const char tstemplate_sql[] =
	"SELECT t.oid, 'CREATE TEXT SEARCH TEMPLATE ' || " QNAME("n.nspname", "t.tmplname") " || "
	"' (' || COALESCE('INIT = ' || NULLIF(t.tmplinit, 0)::pg_catalog.regproc::text || ', ', '') "
	"|| 'LEXIZE = ' || t.tmpllexize::pg_catalog.regproc::text || E');\n' "
	"FROM pg_catalog.pg_ts_template t JOIN pg_catalog.pg_namespace n ON n.oid = t.tmplnamespace "
	"WHERE t.tmplnamespace IN " USER_NSP " AND " NOT_EXT("pg_catalog.pg_ts_template", "t.oid")
	" ORDER BY t.oid";

static const char tsdict_sql[] =
	"SELECT d.oid, 'CREATE TEXT SEARCH DICTIONARY ' || " QNAME("n.nspname", "d.dictname") " || "
	"' (TEMPLATE = ' || " QNAME("tn.nspname", "t.tmplname") " || COALESCE(', ' || "
	"d.dictinitoption, '') || E');\n', " QNAME("n.nspname", "d.dictname") ", "
	OWNER("d.dictowner") " FROM pg_catalog.pg_ts_dict d JOIN pg_catalog.pg_namespace n "
	"ON n.oid = d.dictnamespace JOIN pg_catalog.pg_ts_template t ON t.oid = d.dicttemplate "
	"JOIN pg_catalog.pg_namespace tn ON tn.oid = t.tmplnamespace "
	"WHERE d.dictnamespace IN " USER_NSP " AND " NOT_EXT("pg_catalog.pg_ts_dict", "d.oid")
	" ORDER BY d.oid";

/* A configuration and its mappings, token type by token type. */
static const char tsconfig_sql[] =
	"SELECT c.oid, 'CREATE TEXT SEARCH CONFIGURATION ' || " QNAME("n.nspname", "c.cfgname") " || "
	"' (PARSER = ' || " QNAME("pn.nspname", "p.prsname") " || E');\n' || COALESCE((SELECT "
	"pg_catalog.string_agg('ALTER TEXT SEARCH CONFIGURATION ' || " QNAME("n.nspname", "c.cfgname")
	" || ' ADD MAPPING FOR ' || pg_catalog.quote_ident(tt.alias) || ' WITH ' || m.dicts || "
	"E';\n', '' ORDER BY m.maptokentype) FROM (SELECT mm.maptokentype, pg_catalog.string_agg("
	"mm.mapdict::pg_catalog.regdictionary::text, ', ' ORDER BY mm.mapseqno) AS dicts FROM "
	"pg_catalog.pg_ts_config_map mm WHERE mm.mapcfg = c.oid GROUP BY mm.maptokentype) m "
	"JOIN pg_catalog.ts_token_type(c.cfgparser) tt ON tt.tokid = m.maptokentype), ''), "
	QNAME("n.nspname", "c.cfgname") ", " OWNER("c.cfgowner")
	" FROM pg_catalog.pg_ts_config c JOIN pg_catalog.pg_namespace n ON n.oid = c.cfgnamespace "
	"JOIN pg_catalog.pg_ts_parser p ON p.oid = c.cfgparser JOIN pg_catalog.pg_namespace pn "
	"ON pn.oid = p.prsnamespace WHERE c.cfgnamespace IN " USER_NSP " AND "
	NOT_EXT("pg_catalog.pg_ts_config", "c.oid") " ORDER BY c.oid";

/* Access methods, procedural languages and transforms outside extensions. */
static const char am_sql[] =
	"SELECT a.oid, 'CREATE ACCESS METHOD ' || pg_catalog.quote_ident(a.amname) || ' TYPE ' || "
	"CASE a.amtype WHEN 'i' THEN 'INDEX' ELSE 'TABLE' END || ' HANDLER ' || "
	"a.amhandler::pg_catalog.regproc::text || E';\n' FROM pg_catalog.pg_am a "
	"WHERE a.oid >= 16384 AND " NOT_EXT("pg_catalog.pg_am", "a.oid") " ORDER BY a.oid";

static const char language_sql[] =
	"SELECT l.oid, 'CREATE ' || CASE WHEN l.lanpltrusted THEN 'TRUSTED ' ELSE '' END || "
	"'LANGUAGE ' || pg_catalog.quote_ident(l.lanname) || ' HANDLER ' || "
	"l.lanplcallfoid::pg_catalog.regproc::text || COALESCE(' INLINE ' || NULLIF(l.laninline, 0)"
	"::pg_catalog.regproc::text, '') || COALESCE(' VALIDATOR ' || NULLIF(l.lanvalidator, 0)"
	"::pg_catalog.regproc::text, '') || E';\n', pg_catalog.quote_ident(l.lanname), "
	OWNER("l.lanowner") " FROM pg_catalog.pg_language l WHERE l.oid >= 16384 AND "
	NOT_EXT("pg_catalog.pg_language", "l.oid") " ORDER BY l.oid";

static const char transform_sql[] =
	"SELECT t.oid, 'CREATE TRANSFORM FOR ' || "
	"pg_catalog.format_type(t.trftype, NULL) || ' LANGUAGE ' || pg_catalog.quote_ident(l.lanname) "
	"|| ' (' || pg_catalog.concat_ws(', ', 'FROM SQL WITH FUNCTION ' || NULLIF(t.trffromsql, 0)"
	"::pg_catalog.regprocedure::text, 'TO SQL WITH FUNCTION ' || NULLIF(t.trftosql, 0)"
	"::pg_catalog.regprocedure::text) || E');\n' FROM pg_catalog.pg_transform t "
	"JOIN pg_catalog.pg_language l ON l.oid = t.trflang WHERE "
	NOT_EXT("pg_catalog.pg_transform", "t.oid") " ORDER BY t.oid";

int pgobj_pre(const struct pgobj_out *o)
{
	/* the kinds read by one query each, all in one round trip */
	static const struct {
		const char *sql;
		int rank;
		char cls;
		const char *kind;
		enum pgobj_kind need;
	} kinds[] = {
		{ language_sql, R_LANG, 'g', "LANGUAGE", PK_LANGUAGE },
		{ am_sql, R_AM, 'a', NULL, PK_AM },
		{ transform_sql, R_TRANSFORM, 'x', NULL, PK_TRANSFORM },
		{ cast_sql, R_CAST, 'k', NULL, PK_CAST },
		{ conversion_sql, R_CONV, 'v', "CONVERSION", PK_CONVERSION },
		{ operator_sql, R_OPER, 'o', "OPERATOR", PK_OPERATOR },
		{ opfamily_sql, R_OPFAMILY, 'F', "OPERATOR FAMILY", PK_OPFAMILY },
		{ opclass_sql, R_OPCLASS, 'C', "OPERATOR CLASS", PK_OPCLASS },
		{ tsparser_sql, R_TSPARSER, 'P', NULL, PK_TSPARSER },
		{ tstemplate_sql, R_TSTEMPLATE, 'E', NULL, PK_TSTEMPLATE },
		{ tsdict_sql, R_TSDICT, 'D', "TEXT SEARCH DICTIONARY", PK_TSDICT },
		{ tsconfig_sql, R_TSCONFIG, 'T', "TEXT SEARCH CONFIGURATION", PK_TSCONFIG },
	};
#define NKINDS (sizeof(kinds) / sizeof(*kinds))
	const char *sql[NKINDS];
	PGresult *res[NKINDS];
	size_t i;

	if (PGOBJ_HAS(o->present, PK_COLLATION) && dump_collations(o) < 0)
		return -1;
	/* (a server needs its wrapper, a user mapping its server) */
	if (PGOBJ_HAS(o->present, PK_FDW) &&
	    (dump_fdws(o) < 0 || dump_servers(o) < 0 || dump_user_mappings(o) < 0))
		return -1;
	for (i = 0; i < NKINDS; i++)
		sql[i] = PGOBJ_HAS(o->present, kinds[i].need) ? kinds[i].sql : NULL;
	if (pgcat_query_batch(o->conn, sql, NKINDS, res, o->err) < 0)
		return -1;
	for (i = 0; i < NKINDS; i++)
		if (res[i])
			add_rows(o, res[i], kinds[i].rank, kinds[i].cls, kinds[i].kind);
	return 0;
#undef NKINDS
}

/* --- post-data ----------------------------------------------------------- */

/*
 * Each query below gives a post-data entry a row: 0 its SQL, 1 its name,
 * then optional 2 the object's owner, 3 and 4 the tables it locks (their
 * partition trees' roots) in the part's lock mode.
 */

/* The relations a policy's or a rule's expressions read (other than its
 * own table): locked too while it is created (a second table to lock, or,
 * past that, a lock the schedule does not know). */
#define REFERENCED(cat, alias)                                                         \
	"(SELECT pg_catalog.string_agg(DISTINCT " PGOBJ_LOCK_ROOT("rc") ", ' ') FROM "    \
	"pg_catalog.pg_depend rd JOIN pg_catalog.pg_class rc ON rc.oid = rd.refobjid WHERE " \
	"rd.classid = 'pg_catalog." cat "'::regclass AND rd.objid = " alias ".oid AND "     \
	"rd.refclassid = 'pg_catalog.pg_class'::regclass AND rd.refobjid <> c.oid)"

/* Row-level security switches and policies. */
static const char rls_sql[] =
	"SELECT 'ALTER TABLE ' || c.oid::pg_catalog.regclass::text || ' ENABLE ROW LEVEL SECURITY;' "
	"|| CASE WHEN c.relforcerowsecurity THEN ' ALTER TABLE ' || c.oid::pg_catalog.regclass::text "
	"|| ' FORCE ROW LEVEL SECURITY;' ELSE '' END, c.oid::pg_catalog.regclass::text, "
	"pg_catalog.pg_get_userbyid(c.relowner), " PGOBJ_LOCK_ROOT("c") " FROM pg_catalog.pg_class c "
	"WHERE (c.relrowsecurity OR c.relforcerowsecurity) AND c.relnamespace IN " USER_NSP
	" AND " REL_NOT_EXT("c.oid") " ORDER BY c.oid";

static const char policy_sql[] =
	"SELECT 'CREATE POLICY ' || pg_catalog.quote_ident(p.polname) || ' ON ' || "
	"c.oid::pg_catalog.regclass::text || CASE WHEN p.polpermissive THEN '' "
	"ELSE ' AS RESTRICTIVE' END || ' FOR ' || CASE p.polcmd WHEN 'r' THEN 'SELECT' "
	"WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END "
	"|| ' TO ' || (SELECT pg_catalog.string_agg(CASE WHEN r.u = 0 THEN 'PUBLIC' ELSE "
	"pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(r.u)) END, ', ' ORDER BY r.n) "
	"FROM pg_catalog.unnest(p.polroles) WITH ORDINALITY r(u, n)) || "
	"COALESCE(' USING (' || pg_catalog.pg_get_expr(p.polqual, p.polrelid) || ')', '') || "
	"COALESCE(' WITH CHECK (' || pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) || ')', '') "
	"|| ';', c.oid::pg_catalog.regclass::text || ' ' || pg_catalog.quote_ident(p.polname), "
	"pg_catalog.pg_get_userbyid(c.relowner), " PGOBJ_LOCK_ROOT("c") ", " REFERENCED("pg_policy", "p")
	" FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid "
	"WHERE c.relnamespace IN " USER_NSP " AND " REL_NOT_EXT("c.oid") " ORDER BY c.oid, p.polname";

/* Rules (a view's _RETURN rule is the view itself). */
static const char rule_sql[] =
	"SELECT pg_catalog.pg_get_ruledef(r.oid) || CASE r.ev_enabled "
	"WHEN 'D' THEN ' ALTER TABLE ' || c.oid::pg_catalog.regclass::text || ' DISABLE RULE ' "
	"|| pg_catalog.quote_ident(r.rulename) || ';' "
	"WHEN 'R' THEN ' ALTER TABLE ' || c.oid::pg_catalog.regclass::text || ' ENABLE REPLICA RULE ' "
	"|| pg_catalog.quote_ident(r.rulename) || ';' "
	"WHEN 'A' THEN ' ALTER TABLE ' || c.oid::pg_catalog.regclass::text || ' ENABLE ALWAYS RULE ' "
	"|| pg_catalog.quote_ident(r.rulename) || ';' ELSE '' END, "
	"c.oid::pg_catalog.regclass::text || ' ' || pg_catalog.quote_ident(r.rulename), "
	"pg_catalog.pg_get_userbyid(c.relowner), " PGOBJ_LOCK_ROOT("c") ", " REFERENCED("pg_rewrite", "r")
	" FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class "
	"WHERE r.rulename <> '_RETURN' AND c.relnamespace IN " USER_NSP " AND " REL_NOT_EXT("c.oid")
	" ORDER BY c.oid, r.rulename";

/* Grants on wrappers and servers: the object's ACL replayed from a clean
 * slate.  An extension's wrapper (postgres_fdw) counts when its ACL is no
 * longer the one the extension set up (pg_init_privs). */
static const char fdw_acl_sql[] =
	"WITH o(kind, name, acl, owner) AS ("
	" SELECT 'FOREIGN DATA WRAPPER', pg_catalog.quote_ident(w.fdwname), w.fdwacl, w.fdwowner "
	" FROM pg_catalog.pg_foreign_data_wrapper w LEFT JOIN pg_catalog.pg_init_privs ip ON "
	" ip.classoid = 'pg_catalog.pg_foreign_data_wrapper'::regclass AND ip.objoid = w.oid "
	" WHERE w.fdwacl IS DISTINCT FROM ip.initprivs AND (w.fdwacl IS NOT NULL OR ip.initprivs "
	" IS NOT NULL)"
	" UNION ALL SELECT 'FOREIGN SERVER', pg_catalog.quote_ident(s.srvname), s.srvacl, s.srvowner "
	" FROM pg_catalog.pg_foreign_server s WHERE s.srvacl IS NOT NULL AND "
	NOT_EXT("pg_catalog.pg_foreign_server", "s.oid") ") "
	"SELECT 'REVOKE ALL ON ' || o.kind || ' ' || o.name || ' FROM PUBLIC; REVOKE ALL ON ' || "
	"o.kind || ' ' || o.name || ' FROM ' || "
	"pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(o.owner)) || ';' || COALESCE((SELECT "
	"pg_catalog.string_agg(' GRANT ' || a.privilege_type || ' ON ' || o.kind || ' ' || o.name || "
	"' TO ' || CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE "
	"pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END || "
	"CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END || ';', '') "
	"FROM pg_catalog.aclexplode(COALESCE(o.acl, pg_catalog.acldefault('F', o.owner))) a), ''), "
	"o.kind || ' ' || o.name, pg_catalog.pg_get_userbyid(o.owner) FROM o ORDER BY o.kind, o.name";

/* Grants on PostgreSQL's own objects (pg_catalog, languages) and on
 * extension members, and on the user's own languages, where they are no longer the ones initdb or CREATE EXTENSION set
 * up (pg_init_privs), as pg_dump compares them: replayed from a clean slate
 * (an in-place restore recreates the extensions in the dropped schemas, and
 * leaves pg_catalog alone). */
/* The owner whose privileges an object's ACL is read against: for
 * PostgreSQL's own objects, the bootstrap superuser, since a restore does not
 * give them to another owner (pg_dump does not either). */
#define INIT_OWNER(nsp, owner) "CASE WHEN " nsp " = 'pg_catalog'::regnamespace THEN " \
	"10::pg_catalog.oid ELSE " owner " END"

static const char init_acl_sql[] =
	"WITH o(kind, name, acl, owner, dflt) AS ("
	" SELECT CASE WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, "
	" c.oid::pg_catalog.regclass::text, c.relacl, " INIT_OWNER("c.relnamespace", "c.relowner") ", "
	" CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END FROM pg_catalog.pg_class c "
	" LEFT JOIN pg_catalog.pg_init_privs ip ON ip.classoid = 'pg_catalog.pg_class'::regclass "
	" AND ip.objoid = c.oid AND ip.objsubid = 0 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') "
	" AND c.relacl IS DISTINCT FROM ip.initprivs AND (c.relnamespace = "
	" 'pg_catalog'::regnamespace OR NOT " NOT_EXT("pg_catalog.pg_class", "c.oid") ")"
	" UNION ALL SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, "
	" p.oid::pg_catalog.regprocedure::text, p.proacl, " INIT_OWNER("p.pronamespace", "p.proowner") ", 'f' FROM pg_catalog.pg_proc p "
	" LEFT JOIN pg_catalog.pg_init_privs ip ON ip.classoid = 'pg_catalog.pg_proc'::regclass "
	" AND ip.objoid = p.oid AND ip.objsubid = 0 WHERE p.proacl IS DISTINCT FROM ip.initprivs "
	" AND (p.pronamespace = 'pg_catalog'::regnamespace OR NOT "
	NOT_EXT("pg_catalog.pg_proc", "p.oid") ")"
	" UNION ALL SELECT 'TYPE', pg_catalog.format_type(t.oid, NULL), t.typacl, "
	INIT_OWNER("t.typnamespace", "t.typowner") ", 'T' "
	" FROM pg_catalog.pg_type t LEFT JOIN pg_catalog.pg_init_privs ip ON ip.classoid = "
	" 'pg_catalog.pg_type'::regclass AND ip.objoid = t.oid AND ip.objsubid = 0 "
	" WHERE t.typacl IS DISTINCT FROM ip.initprivs AND t.typcategory <> 'A' AND "
	" (t.typnamespace = 'pg_catalog'::regnamespace OR NOT " NOT_EXT("pg_catalog.pg_type", "t.oid") ")"
	/* languages: built-in, an extension's (plpgsql) or the user's own */
	" UNION ALL SELECT 'LANGUAGE', pg_catalog.quote_ident(l.lanname), l.lanacl, l.lanowner, 'l' "
	" FROM pg_catalog.pg_language l LEFT JOIN pg_catalog.pg_init_privs ip ON ip.classoid = "
	" 'pg_catalog.pg_language'::regclass AND ip.objoid = l.oid AND ip.objsubid = 0 "
	" WHERE l.lanacl IS DISTINCT FROM ip.initprivs) "
	"SELECT 'REVOKE ALL ON ' || o.kind || ' ' || o.name || ' FROM PUBLIC; REVOKE ALL ON ' || "
	"o.kind || ' ' || o.name || ' FROM ' || "
	"pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(o.owner)) || ';' || COALESCE((SELECT "
	"pg_catalog.string_agg(' GRANT ' || a.privilege_type || ' ON ' || o.kind || ' ' || o.name || "
	"' TO ' || CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE "
	"pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END || "
	"CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END || ';', '') "
	"FROM pg_catalog.aclexplode(COALESCE(o.acl, pg_catalog.acldefault(o.dflt::\"char\", "
	"o.owner))) a), ''), o.kind || ' ' || o.name, pg_catalog.pg_get_userbyid(o.owner) "
	"FROM o ORDER BY o.kind, o.name";

/* Column grants on the same tables, where they are no longer the initial
 * ones: after the tables' own (a table's REVOKE ALL takes its columns'
 * privileges too).  A column whose grants were all revoked has an empty
 * ACL (or none), which aclexplode refuses ("ACL arrays must be
 * one-dimensional"): it explodes NULL, no rows, instead. */
static const char init_col_acl_sql[] =
	"WITH o(name, col, acl, owner) AS (SELECT c.oid::pg_catalog.regclass::text, "
	" pg_catalog.quote_ident(a.attname), a.attacl, " INIT_OWNER("c.relnamespace", "c.relowner")
	" FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
	" LEFT JOIN pg_catalog.pg_init_privs ip ON ip.classoid = 'pg_catalog.pg_class'::regclass "
	" AND ip.objoid = c.oid AND ip.objsubid = a.attnum WHERE a.attnum > 0 AND NOT "
	" a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attacl IS DISTINCT FROM "
	" ip.initprivs AND (c.relnamespace = 'pg_catalog'::regnamespace OR NOT "
	NOT_EXT("pg_catalog.pg_class", "c.oid") ")) "
	"SELECT 'REVOKE ALL (' || o.col || ') ON TABLE ' || o.name || ' FROM PUBLIC; REVOKE ALL (' "
	"|| o.col || ') ON TABLE ' || o.name || ' FROM ' || "
	"pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(o.owner)) || ';' || COALESCE((SELECT "
	"pg_catalog.string_agg(' GRANT ' || a.privilege_type || ' (' || o.col || ') ON TABLE ' || "
	"o.name || ' TO ' || CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE "
	"pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END || "
	"CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END || ';', '') "
	"FROM pg_catalog.aclexplode(CASE WHEN pg_catalog.cardinality(o.acl) > 0 THEN o.acl END) a), "
	"''), 'TABLE ' || o.name || ' COLUMN ' || o.col, pg_catalog.pg_get_userbyid(o.owner) "
	"FROM o ORDER BY o.name, o.col";

/* Comments on the kinds of this file. */
static const char comment_sql[] =
	"SELECT 'COMMENT ON ' || x.target || ' IS ' || pg_catalog.quote_literal(x.description) || "
	"';', x.target FROM (SELECT d.classoid, d.objoid, d.description, CASE "
	" WHEN d.classoid = 'pg_catalog.pg_collation'::regclass THEN (SELECT 'COLLATION ' || "
	"  pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.collname) "
	"  FROM pg_catalog.pg_collation c JOIN pg_catalog.pg_namespace n ON n.oid = c.collnamespace "
	"  WHERE c.oid = d.objoid AND c.collnamespace IN " USER_NSP
	"  AND " NOT_EXT("pg_catalog.pg_collation", "c.oid") ") "
	" WHEN d.classoid = 'pg_catalog.pg_foreign_data_wrapper'::regclass THEN (SELECT "
	"  'FOREIGN DATA WRAPPER ' || pg_catalog.quote_ident(w.fdwname) FROM "
	"  pg_catalog.pg_foreign_data_wrapper w WHERE w.oid = d.objoid AND "
	NOT_EXT("pg_catalog.pg_foreign_data_wrapper", "w.oid") ") "
	" WHEN d.classoid = 'pg_catalog.pg_foreign_server'::regclass THEN (SELECT "
	"  'SERVER ' || pg_catalog.quote_ident(s.srvname) FROM pg_catalog.pg_foreign_server s "
	"  WHERE s.oid = d.objoid AND " NOT_EXT("pg_catalog.pg_foreign_server", "s.oid") ") "
	" WHEN d.classoid = 'pg_catalog.pg_policy'::regclass THEN (SELECT 'POLICY ' || "
	"  pg_catalog.quote_ident(p.polname) || ' ON ' || c.oid::pg_catalog.regclass::text "
	"  FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid "
	"  WHERE p.oid = d.objoid AND c.relnamespace IN " USER_NSP " AND " REL_NOT_EXT("c.oid") ") "
	" WHEN d.classoid = 'pg_catalog.pg_rewrite'::regclass THEN (SELECT 'RULE ' || "
	"  pg_catalog.quote_ident(r.rulename) || ' ON ' || c.oid::pg_catalog.regclass::text "
	"  FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class "
	"  WHERE r.oid = d.objoid AND r.rulename <> '_RETURN' AND c.relnamespace IN " USER_NSP
	"  AND " REL_NOT_EXT("c.oid") ") "
	" WHEN d.classoid = 'pg_catalog.pg_publication'::regclass THEN (SELECT 'PUBLICATION ' || "
	"  pg_catalog.quote_ident(p.pubname) FROM pg_catalog.pg_publication p WHERE p.oid = d.objoid) "
	" END AS target "
	"FROM pg_catalog.pg_description d WHERE d.objoid >= 16384 AND d.classoid IN ("
	"'pg_catalog.pg_collation'::regclass, 'pg_catalog.pg_foreign_data_wrapper'::regclass, "
	"'pg_catalog.pg_foreign_server'::regclass, 'pg_catalog.pg_policy'::regclass, "
	"'pg_catalog.pg_rewrite'::regclass, 'pg_catalog.pg_publication'::regclass)) x "
	"ORDER BY x.classoid, x.objoid";

/* Publications: dropped first (they live outside every schema), created
 * empty, then given their schemas and tables (column lists, row filters). */
static const char publication_sql[] =
	"SELECT 'DROP PUBLICATION IF EXISTS ' || pg_catalog.quote_ident(p.pubname) || "
	"'; CREATE PUBLICATION ' || pg_catalog.quote_ident(p.pubname) || CASE WHEN p.puballtables "
	"THEN ' FOR ALL TABLES' ELSE '' END || ' WITH (publish = ' || pg_catalog.quote_literal("
	"pg_catalog.concat_ws(', ', CASE WHEN p.pubinsert THEN 'insert' END, CASE WHEN p.pubupdate "
	"THEN 'update' END, CASE WHEN p.pubdelete THEN 'delete' END, CASE WHEN p.pubtruncate THEN "
	"'truncate' END)) || ', publish_via_partition_root = ' || p.pubviaroot || ');' || "
	"COALESCE((SELECT pg_catalog.string_agg(' ALTER PUBLICATION ' || pg_catalog.quote_ident("
	"p.pubname) || ' ADD TABLES IN SCHEMA ' || pg_catalog.quote_ident(n.nspname) || ';', '' "
	"ORDER BY n.nspname) FROM pg_catalog.pg_publication_namespace pn JOIN "
	"pg_catalog.pg_namespace n ON n.oid = pn.pnnspid WHERE pn.pnpubid = p.oid), '') || "
	"COALESCE((SELECT pg_catalog.string_agg(' ALTER PUBLICATION ' || pg_catalog.quote_ident("
	"p.pubname) || ' ADD TABLE ONLY ' || pr.prrelid::pg_catalog.regclass::text || "
	"COALESCE(' (' || (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' "
	"ORDER BY k.n) FROM pg_catalog.unnest(pr.prattrs::pg_catalog.int2[]) WITH ORDINALITY k(num, n) "
	"JOIN pg_catalog.pg_attribute a ON a.attrelid = pr.prrelid AND a.attnum = k.num) || ')', '') "
	"|| COALESCE(' WHERE (' || pg_catalog.pg_get_expr(pr.prqual, pr.prrelid) || ')', '') || ';', "
	"'' ORDER BY pr.prrelid) FROM pg_catalog.pg_publication_rel pr WHERE pr.prpubid = p.oid), ''), "
	"pg_catalog.quote_ident(p.pubname), pg_catalog.pg_get_userbyid(p.pubowner) "
	"FROM pg_catalog.pg_publication p ORDER BY p.pubname";

/* Subscriptions, as pg_dump writes them: created without connecting
 * (disabled, no replication slot made), to be enabled by hand.  One that is
 * there already (an in-place restore: it lives outside every schema) is
 * left alone, since dropping it would drop its slot on the publisher. */
static const char subscription_sql[] =
	"SELECT 'DO $sm$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_subscription s JOIN "
	"pg_catalog.pg_database d ON d.oid = s.subdbid WHERE d.datname = "
	"pg_catalog.current_database() AND s.subname = ' || pg_catalog.quote_literal(s.subname) || "
	"') THEN CREATE SUBSCRIPTION ' || pg_catalog.quote_ident(s.subname) || ' CONNECTION ' || "
	"pg_catalog.quote_literal(s.subconninfo) || ' PUBLICATION ' || (SELECT "
	"pg_catalog.string_agg(pg_catalog.quote_ident(p), ', ' ORDER BY n) FROM "
	"pg_catalog.unnest(s.subpublications) WITH ORDINALITY u(p, n)) || ' WITH (connect = false, "
	"slot_name = ' || COALESCE(pg_catalog.quote_literal(s.subslotname), 'NONE') || "
	"CASE WHEN s.subbinary THEN ', binary = true' ELSE '' END || "
	"CASE WHEN s.substream THEN ', streaming = on' ELSE '' END || "
	"CASE WHEN s.subtwophasestate <> 'd' THEN ', two_phase = on' ELSE '' END || "
	"CASE WHEN s.subdisableonerr THEN ', disable_on_error = true' ELSE '' END || "
	"CASE WHEN s.subsynccommit <> 'off' THEN ', synchronous_commit = ' || "
	"pg_catalog.quote_literal(s.subsynccommit) ELSE '' END || "
	/* options of later servers, read by name so that the query runs on
	 * every version (a column a server lacks reads as NULL) */
	"CASE WHEN pg_catalog.to_jsonb(s) ->> 'suborigin' = 'none' THEN ', origin = none' "
	"ELSE '' END || CASE WHEN pg_catalog.to_jsonb(s) ->> 'subpasswordrequired' = 'false' "
	"THEN ', password_required = false' ELSE '' END || CASE WHEN pg_catalog.to_jsonb(s) ->> "
	"'subrunasowner' = 'true' THEN ', run_as_owner = true' ELSE '' END || CASE WHEN "
	"pg_catalog.to_jsonb(s) ->> 'subfailover' = 'true' THEN ', failover = true' ELSE '' END "
	"|| '); ' || "
	"'ALTER SUBSCRIPTION ' || pg_catalog.quote_ident(s.subname) || ' OWNER TO ' || "
	"pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(s.subowner)) || '; END IF; END $sm$;' || "
	/* its comment (in this database's pg_description, not the shared one) */
	"COALESCE((SELECT ' COMMENT ON SUBSCRIPTION ' || pg_catalog.quote_ident(s.subname) || ' IS ' "
	"|| pg_catalog.quote_literal(sd.description) || ';' FROM pg_catalog.pg_description sd "
	"WHERE sd.classoid = 'pg_catalog.pg_subscription'::regclass AND sd.objoid = s.oid), ''), "
	"pg_catalog.quote_ident(s.subname), pg_catalog.pg_get_userbyid(s.subowner) "
	"FROM pg_catalog.pg_subscription s JOIN pg_catalog.pg_database db ON db.oid = s.subdbid "
	"WHERE db.datname = pg_catalog.current_database() ORDER BY s.subname";

/* Default privileges (ALTER DEFAULT PRIVILEGES).  A role-wide entry replaces
 * the built-in default: it is reset (REVOKE ALL from the owner and PUBLIC)
 * and granted again, which is the same whether or not it exists already.
 * A schema's entry adds to the role-wide one: only its grants. */
static const char defacl_sql[] =
	"SELECT (SELECT pg_catalog.string_agg(x.sql, ' ' ORDER BY x.n) FROM ("
	" SELECT 0 AS n, 'ALTER DEFAULT PRIVILEGES FOR ROLE ' || pg_catalog.quote_ident("
	" pg_catalog.pg_get_userbyid(d.defaclrole)) || ' REVOKE ALL ON ' || k.objs || ' FROM PUBLIC; "
	"ALTER DEFAULT PRIVILEGES FOR ROLE ' || pg_catalog.quote_ident(pg_catalog.pg_get_userbyid("
	" d.defaclrole)) || ' REVOKE ALL ON ' || k.objs || ' FROM ' || pg_catalog.quote_ident("
	" pg_catalog.pg_get_userbyid(d.defaclrole)) || ';' AS sql WHERE d.defaclnamespace = 0"
	" UNION ALL SELECT 1, 'ALTER DEFAULT PRIVILEGES FOR ROLE ' || pg_catalog.quote_ident("
	" pg_catalog.pg_get_userbyid(d.defaclrole)) || CASE WHEN d.defaclnamespace <> 0 THEN "
	" ' IN SCHEMA ' || pg_catalog.quote_ident(n.nspname) ELSE '' END || ' GRANT ' || "
	" a.privilege_type || ' ON ' || k.objs || ' TO ' || CASE WHEN a.grantee = 0 THEN 'PUBLIC' "
	" ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END || CASE WHEN "
	" a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END || ';' FROM "
	" pg_catalog.aclexplode(d.defaclacl) a) x"
	"), 'FOR ROLE ' || pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(d.defaclrole)) || "
	"CASE WHEN d.defaclnamespace <> 0 THEN ' IN SCHEMA ' || pg_catalog.quote_ident(n.nspname) "
	"ELSE '' END || ' ON ' || k.objs, pg_catalog.pg_get_userbyid(d.defaclrole) "
	"FROM pg_catalog.pg_default_acl d "
	"CROSS JOIN LATERAL (SELECT CASE d.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN "
	"'SEQUENCES' WHEN 'f' THEN 'FUNCTIONS' WHEN 'T' THEN 'TYPES' WHEN 'n' THEN 'SCHEMAS' END) "
	"k(objs) LEFT JOIN pg_catalog.pg_namespace n ON n.oid = d.defaclnamespace "
	"WHERE d.defaclnamespace = 0 OR d.defaclnamespace IN " USER_NSP
	" ORDER BY d.oid";

/* Event triggers, last: nothing the restore runs before fires them. */
static const char evt_sql[] =
	"SELECT 'DROP EVENT TRIGGER IF EXISTS ' || pg_catalog.quote_ident(e.evtname) || "
	"'; CREATE EVENT TRIGGER ' || pg_catalog.quote_ident(e.evtname) || ' ON ' || "
	"pg_catalog.quote_ident(e.evtevent) || COALESCE(' WHEN TAG IN (' || (SELECT "
	"pg_catalog.string_agg(pg_catalog.quote_literal(t), ', ') FROM pg_catalog.unnest(e.evttags) "
	"t) || ')', '') || ' EXECUTE FUNCTION ' || e.evtfoid::pg_catalog.regproc::text || '();' || "
	"CASE e.evtenabled WHEN 'D' THEN ' ALTER EVENT TRIGGER ' || pg_catalog.quote_ident(e.evtname) "
	"|| ' DISABLE;' WHEN 'R' THEN ' ALTER EVENT TRIGGER ' || pg_catalog.quote_ident(e.evtname) "
	"|| ' ENABLE REPLICA;' WHEN 'A' THEN ' ALTER EVENT TRIGGER ' || pg_catalog.quote_ident("
	"e.evtname) || ' ENABLE ALWAYS;' ELSE '' END, pg_catalog.quote_ident(e.evtname), "
	"pg_catalog.pg_get_userbyid(e.evtowner) FROM pg_catalog.pg_event_trigger e WHERE " NOT_EXT("pg_catalog.pg_event_trigger", "e.oid")
	" ORDER BY e.evtname";

static const char evt_comment_sql[] =
	"SELECT 'COMMENT ON EVENT TRIGGER ' || pg_catalog.quote_ident(e.evtname) || ' IS ' || "
	"pg_catalog.quote_literal(d.description) || ';', 'EVENT TRIGGER ' || "
	"pg_catalog.quote_ident(e.evtname) FROM pg_catalog.pg_description d "
	"JOIN pg_catalog.pg_event_trigger e ON e.oid = d.objoid WHERE d.classoid = "
	"'pg_catalog.pg_event_trigger'::regclass AND " NOT_EXT("pg_catalog.pg_event_trigger", "e.oid")
	" ORDER BY e.evtname";

/* Comments on the pre-data kinds read by pgobj_pre but collations,
 * wrappers and servers: pg_identify_object names each as COMMENT wants it. */
static const char misc_comment_sql[] =
	"SELECT 'COMMENT ON ' || pg_catalog.upper(i.type) || ' ' || i.identity || ' IS ' || "
	"pg_catalog.quote_literal(d.description) || ';', pg_catalog.upper(i.type) || ' ' || "
	"i.identity FROM pg_catalog.pg_description d "
	"CROSS JOIN LATERAL pg_catalog.pg_identify_object(d.classoid, d.objoid, 0) i "
	"WHERE d.objoid >= 16384 AND d.classoid IN ('pg_catalog.pg_cast'::regclass, "
	"'pg_catalog.pg_conversion'::regclass, 'pg_catalog.pg_operator'::regclass, "
	"'pg_catalog.pg_opclass'::regclass, 'pg_catalog.pg_opfamily'::regclass, "
	"'pg_catalog.pg_ts_parser'::regclass, 'pg_catalog.pg_ts_template'::regclass, "
	"'pg_catalog.pg_ts_dict'::regclass, 'pg_catalog.pg_ts_config'::regclass, "
	"'pg_catalog.pg_am'::regclass, 'pg_catalog.pg_language'::regclass) "
	"AND (i.schema IS NULL OR i.schema::pg_catalog.regnamespace IN " USER_NSP ") "
	"AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend x WHERE x.classid = d.classoid "
	"AND x.objid = d.objoid AND x.deptype = 'e') ORDER BY d.classoid, d.objoid";

/* Security labels of the post-data kinds outside every schema, after
 * their objects: publications and this database's subscriptions, and
 * event triggers (the user's schemas' objects' are dump_security_labels's). */
static const char pubsub_label_sql[] = SECLABEL_SQL(
	"l.classoid = 'pg_catalog.pg_publication'::regclass OR l.classoid = "
	"'pg_catalog.pg_subscription'::regclass AND l.objoid IN (SELECT s.oid FROM "
	"pg_catalog.pg_subscription s JOIN pg_catalog.pg_database db ON db.oid = s.subdbid "
	"WHERE db.datname = pg_catalog.current_database())");
static const char evt_label_sql[] = SECLABEL_SQL(
	"l.classoid = 'pg_catalog.pg_event_trigger'::regclass");

/* Owners of the post-data kinds (pre-data ones are set by their dumpers). */
static const char pub_owner_sql[] =
	"SELECT 'ALTER PUBLICATION ' || pg_catalog.quote_ident(p.pubname) || ' OWNER TO ' || "
	"pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(p.pubowner)) || ';', 'PUBLICATION ' || "
	"pg_catalog.quote_ident(p.pubname), pg_catalog.pg_get_userbyid(p.pubowner) "
	"FROM pg_catalog.pg_publication p ORDER BY p.pubname";
static const char evt_owner_sql[] =
	"SELECT 'ALTER EVENT TRIGGER ' || pg_catalog.quote_ident(e.evtname) || ' OWNER TO ' "
	"|| pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(e.evtowner)) || ';', 'EVENT TRIGGER ' "
	"|| pg_catalog.quote_ident(e.evtname), pg_catalog.pg_get_userbyid(e.evtowner) "
	"FROM pg_catalog.pg_event_trigger e WHERE " NOT_EXT("pg_catalog.pg_event_trigger", "e.oid")
	" ORDER BY e.evtname";

/* A part of post-data: the entries of one kind, with the lock they take
 * on their tables (PGA_LOCK_NONE: none known, they run in order). */
struct post_part {
	const char *kind;
	enum pga_lock lock;
	enum pgobj_kind need; /* sent only if the database holds this kind */
	const char *sql;
};

/* Adds the entries of r, part's result (taken). */
static void add_post_part(const struct pgobj_out *o, const struct post_part *part, PGresult *r)
{
	struct strbuf more = STRBUF_INIT;
	int i, nf;

	nf = PQnfields(r);
	for (i = 0; i < PQntuples(r); i++) {
		struct pgobj_entry e = { part->kind, NULL, NULL, { NULL }, part->lock, NULL };
		const char *refs = nf > 4 ? pgcat_val(r, i, 4) : NULL;
		size_t nt = 0;

		if (!(e.sql = pgcat_val(r, i, 0)))
			continue;
		e.name = nf > 1 && pgcat_val(r, i, 1) ? pgcat_val(r, i, 1) : "";
		e.owner = nf > 2 ? pgcat_val(r, i, 2) : NULL;
		if (nf > 3 && pgcat_val(r, i, 3))
			e.tables[nt++] = pgcat_val(r, i, 3);
		/* the referenced relations, space-separated regclass names (which
		 * quote a name with a space) */
		sb_reset(&more);
		sb_adds(&more, refs ? refs : "");
		for (char *p = more.buf, *sp; p && *p && e.lock != PGA_LOCK_NONE; p = sp ? sp + 1 : NULL) {
			sp = strchr(p, ' ');
			if (sp)
				*sp = '\0';
			if (strchr(p, '"') || nt == PGA_MAX_TABLES)
				e.lock = PGA_LOCK_NONE;
			else
				e.tables[nt++] = p;
		}
		if (!nt)
			e.lock = PGA_LOCK_NONE;
		o->add_post(o->ud, &e);
	}
	sb_release(&more);
	PQclear(r);
}

int pgobj_post(const struct pgobj_out *o)
{
	/* only a superuser may read pg_subscription.subconninfo: the query
	 * fails for anyone else even on no rows (another role's backup of a
	 * database with subscriptions was refused by pgobj_unsupported) */
	const char *su = PQparameterStatus(o->conn, "is_superuser");
	/* ALTER TABLE ... ROW LEVEL SECURITY, CREATE POLICY and CREATE RULE
	 * take ACCESS EXCLUSIVE on their table (PostgreSQL 15) */
	const struct post_part parts[] = {
		{ "ROW SECURITY", PGA_LOCK_ACCESS_EXCLUSIVE, PK_RLS, rls_sql },
		{ "POLICY", PGA_LOCK_ACCESS_EXCLUSIVE, PK_POLICY, policy_sql },
		{ "RULE", PGA_LOCK_ACCESS_EXCLUSIVE, PK_RULE, rule_sql },
		{ "ACL", PGA_LOCK_NONE, PK_FDW, fdw_acl_sql },
		{ "ACL", PGA_LOCK_NONE, PK_INIT_ACL, init_acl_sql },
		{ "ACL", PGA_LOCK_NONE, PK_INIT_COL_ACL, init_col_acl_sql },
		{ "PUBLICATION", PGA_LOCK_NONE, PK_PUBLICATION, publication_sql },
		{ "SUBSCRIPTION", PGA_LOCK_NONE, PK_SUBSCRIPTION,
		  su && !strcmp(su, "on") ? subscription_sql : NULL },
		{ "OWNER", PGA_LOCK_NONE, PK_PUBLICATION, o->no_owner ? NULL : pub_owner_sql },
		{ "SECURITY LABEL", PGA_LOCK_NONE, PK_SECLABEL, pubsub_label_sql },
		{ "COMMENT", PGA_LOCK_NONE, PK_OBJ_COMMENT, comment_sql },
		{ "COMMENT", PGA_LOCK_NONE, PK_MISC_COMMENT, misc_comment_sql },
		{ "DEFAULT ACL", PGA_LOCK_NONE, PK_DEFACL, defacl_sql },
		/* event triggers fire on DDL (COMMENT, ALTER DEFAULT PRIVILEGES...): last */
		{ "EVENT TRIGGER", PGA_LOCK_NONE, PK_EVENT_TRIGGER, evt_sql },
		{ "OWNER", PGA_LOCK_NONE, PK_EVENT_TRIGGER, o->no_owner ? NULL : evt_owner_sql },
		{ "COMMENT", PGA_LOCK_NONE, PK_EVENT_TRIGGER, evt_comment_sql },
		{ "SECURITY LABEL", PGA_LOCK_NONE, PK_SECLABEL, evt_label_sql },
	};
#define NPARTS (sizeof(parts) / sizeof(*parts))
	const char *sql[NPARTS];
	PGresult *res[NPARTS];
	size_t i;

	for (i = 0; i < NPARTS; i++)
		sql[i] = PGOBJ_HAS(o->present, parts[i].need) ? parts[i].sql : NULL;
	if (pgcat_query_batch(o->conn, sql, NPARTS, res, o->err) < 0)
		return -1;
	for (i = 0; i < NPARTS; i++)
		if (res[i])
			add_post_part(o, &parts[i], res[i]);
	return 0;
#undef NPARTS
}
