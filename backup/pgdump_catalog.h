/*
 * pgdump_catalog: our pg_dump, the schema half.
 *
 * Reads a PostgreSQL database's catalogs inside one REPEATABLE READ, READ
 * ONLY transaction and rebuilds its DDL with the server's own helpers
 * (pg_get_indexdef, pg_get_constraintdef, pg_get_viewdef, ...), split as
 * pg_dump splits it: a pre-data script (schemas, extensions, types,
 * sequences, tables, functions, views, in dependency order), the list of
 * tables whose rows are copied, and a post-data script (constraints,
 * indexes, triggers, sequence positions, ownership, grants, comments,
 * materialized-view refresh).  Every statement is schema-qualified, so the
 * scripts run with an empty search_path.
 *
 * Only the user's schemas are read (not pg_catalog, information_schema,
 * pg_toast, temp schemas, nor schemas created by extensions); objects that
 * belong to an extension come back with CREATE EXTENSION.  The kinds beyond
 * tables, types and functions (wrappers, servers, operators, policies,
 * publications, ...) are pgdump_objects.c's.  An object kind no snapshot
 * reproduces makes pgcat_read fail with a message naming every such object:
 * a snapshot is complete or it is not taken.
 */
#ifndef SM_PGDUMP_CATALOG_H
#define SM_PGDUMP_CATALOG_H

#include <libpq-fe.h>
#include <stddef.h>

#include "error.h"
#include "hash.h"
#include "pg_archive.h"
#include "strbuf.h"

struct pgcat_options {
	int no_owner;          /* leave out ALTER ... OWNER TO */
	long lock_timeout_ms;  /* waiting for each table's ACCESS SHARE lock (0: 10 s) */
	int no_tablespaces;    /* leave out TABLESPACE clauses */
	/* the client encoding the transaction reads in (pgcat_begin's),
	 * which pgcat_read records in the dump */
	const char *encoding;
};

/* One table whose rows are copied (a leaf: partitioned parents hold none). */
struct pgcat_table {
	char *schema, *name; /* raw names */
	char *qualified;     /* "schema"."name", quoted as needed */
	char *columns;       /* "(a, b, ...)": the stored, non-generated columns; "" if none */
	long long est_rows;  /* the planner's estimate (reltuples), for progress */
	/* An extension's configuration table (pg_extension_config_dump): the
	 * rows to copy, "WHERE ..." or "" for all; NULL for the user's tables. */
	char *filter;
	/* Its rows are copied in COPY's binary format: every copied column is
	 * of a built-in type whose binary form is stable (pgdump_catalog.c's
	 * BINARY_TYPES); else as text. */
	int binary;
};

struct pgcat_dump {
	struct strbuf pre_data;  /* SQL script, run with search_path = '' */
	struct strbuf post_data; /* SQL script, run after the rows are loaded */
	struct pga_toc post_toc; /* post_data's typed entries (pg_archive.h) */
	struct pgcat_table *tables;
	size_t ntables, tables_alloc;
	char **schemas; /* raw names of the schemas the snapshot holds */
	size_t nschemas, schemas_alloc;
	/* The large objects (pg_largeobject_metadata), by OID: pre-data
	 * creates them empty (lo_create), their data is copied like a table's
	 * rows, post-data sets their owner, grants and comments. */
	unsigned *blobs;
	size_t nblobs, blobs_alloc;
	/* pre_data's objects sorted on pg_depend, as typed entries (its
	 * schemas, extensions, sequence ownership and large objects are not) */
	struct pga_toc pre_toc;
	/* the client encoding all of it (names, SQL, the rows copied on the
	 * same snapshot) is in: pgcat_options.encoding, static */
	const char *encoding;
};

#define PGCAT_DUMP_INIT { STRBUF_INIT, STRBUF_INIT, PGA_TOC_INIT, NULL, 0, 0, NULL, 0, 0, NULL, 0, 0, \
			  PGA_TOC_INIT, PGA_ENCODING_UTF8 }

/* The client encoding a snapshot of conn's database is read in
 * (pga_encoding_for its server_encoding: UTF8, or the database's own when
 * the server cannot convert it to UTF8), a static string. */
const char *pgcat_encoding(PGconn *conn);
/* Appends the settings the dump runs under (pg_dump's) to sql: client
 * encoding encoding (pgcat_encoding's, or a snapshot's pga_encoding), ISO
 * dates, empty search_path, no timeouts; SET LOCAL, so they end with the
 * transaction.  Every connection reading one snapshot uses the same. */
void pgcat_session(struct strbuf *sql, const char *encoding);

/* Opens the REPEATABLE READ, READ ONLY transaction the whole snapshot is
 * read in, with pgcat_session's settings for encoding.  The caller ends it
 * (COMMIT) when the last COPY is done; the connection's own settings then
 * come back. */
int pgcat_begin(PGconn *conn, const char *encoding, struct sm_error *err);
/* Inside a transaction already, pgcat_begin reads in that one, under a
 * savepoint, and returns 1 (0 for a transaction of its own).  pgcat_end
 * rolls back what it began (nested: its return value). */
void pgcat_end(PGconn *conn, int nested);
/* pgcat_begin that runs first(ud) (may be NULL) as the transaction's first
 * statements, under the connection's own settings (its search_path, which
 * pgcat_session_sql empties): what it reads is in the snapshot. */
int pgcat_begin_with(PGconn *conn, const char *encoding,
		     int (*first)(void *ud, struct sm_error *err), void *ud, struct sm_error *err);

/* Locks every table in ACCESS SHARE mode (failing after lock_timeout_ms
 * when a table is locked exclusively) and fills out.  Needs pgcat_begin.
 * On failure out may be partly filled: release it anyway. */
int pgcat_read(PGconn *conn, const struct pgcat_options *o, struct pgcat_dump *out,
	       struct sm_error *err);

void pgcat_dump_release(struct pgcat_dump *d);

/* The schema's fingerprint: SHA-256 (hex) of d's pre- and post-data lines,
 * sorted, so that it does not depend on the order the catalogs list objects
 * in (which OIDs decide): a database restored from a snapshot has the
 * fingerprint the snapshot recorded. */
void pgcat_fingerprint(const struct pgcat_dump *d, char hex[HASH_HEX_LEN + 1]);

/* The most bytes of SQL that one message of several queries carries
 * (pgcat_query_batch, the backup's batches of COPYs): a message that
 * small always fits the socket's buffer whole, so it is one send, and a
 * run's calls are the same from run to run (the fault tests count them). */
#define PGCAT_BATCH_BYTES 8192

/* Fills err from a failed libpq result (message, SQLSTATE), prefixed by what. */
int pgcat_pq_error(struct sm_error *err, PGconn *conn, const PGresult *res, const char *what);

#endif
