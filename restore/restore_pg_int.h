/*
 * restore_pg_int: what restore_pg.c (the one-transaction restore) and
 * restore_pg_parallel.c (restore --to --jobs N) share.  Internal to the
 * restore library.
 */
#ifndef SM_RESTORE_PG_INT_H
#define SM_RESTORE_PG_INT_H

#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <signal.h>

#include "engine.h"
#include "error.h"
#include "pg_archive.h"
#include "snapshot.h"
#include "strbuf.h"

/* The snapshot's small PostgreSQL entries, read from the pass that loads. */
struct pg_meta {
	cJSON *toc;
	struct strbuf pre, post;
	/* post's typed entries; none (n == 0) in a version 1 snapshot, whose
	 * post-data only runs as a whole script */
	struct pga_toc post_toc;
	/* the client encoding its text was read in (pga_encoding of the toc),
	 * which every session that runs any of it sets: pgr_session */
	const char *encoding;
};

#define PG_META_INIT { NULL, STRBUF_INIT, STRBUF_INIT, PGA_TOC_INIT, PGA_ENCODING_UTF8 }

void pgr_meta_release(struct pg_meta *m);

/*
 * Reads pg/toc.json, pg/pre-data.sql and pg/post-data.sql, which come
 * before the data entries, and checks each against the checksum the header
 * declares for it (a snapshot without them is verified in full first, a
 * pass that stops once *interrupted is set; borrowed, may be NULL).  Stops
 * at the first other entry: then *pending is 1 and *ent is that entry (its
 * name borrowed from r until the next snap_reader_next).  ERR_DAMAGED when
 * the toc (typed entries included) is missing or malformed or an entry
 * fails its checksum: then none of them may be run; ERR_USAGE when it is
 * of a later version or in an encoding this build does not know.
 */
int pgr_read_meta(struct snap_reader *r, struct pg_meta *m, struct snap_entry *ent,
		  int *pending, volatile sig_atomic_t *interrupted, struct sm_error *err);

/* Applies pg_dump's session settings, client encoding encoding (the
 * snapshot's: pg_meta.encoding), and lock_timeout (0: none).  Session-wide:
 * pg_apply puts the connection's own back after. */
int pgr_session(PGconn *conn, const char *encoding, long lock_timeout_ms, struct sm_error *err);

/* Fills err from a failed result (or the connection's message), with what
 * as prefix; keeps the SQLSTATE.  Returns -1. */
int pgr_error(struct sm_error *err, PGconn *conn, const PGresult *res, const char *what);
/* When the server refused some of the snapshot's text (read in encoding)
 * for the target's encoding (an invalid byte sequence: a SQL_ASCII
 * snapshot's bytes into a UTF8 database; a character the target's
 * encoding has no equivalent for), as it refuses it to pg_restore: adds to
 * err what database would take it. */
void pgr_encoding_hint(PGconn *conn, const char *encoding, struct sm_error *err);
/* PQexec that must succeed. */
int pgr_run_sql(PGconn *conn, const char *sql, const char *what, struct sm_error *err);
/* Runs script's statements in transactions of at most 50 statements. */
int pgr_run_batched(struct engine *target, const char *script, const char *what,
		    struct sm_error *err);
/* Runs m's typed post-data entries, in order, but those skip[i] is set for
 * (skip may be NULL), in transactions of at most 50 entries. */
int pgr_run_entries(PGconn *conn, const struct pg_meta *m, const unsigned char *skip,
		    const char *what, struct sm_error *err);
/* Appends the SQL that runs m's typed post-data entry e to sql: its slice
 * of the script, with the settings its kind runs fastest under (for the
 * entry's transaction only) when frozen (the rows were loaded with
 * COPY FREEZE). */
void pgr_entry_sql(struct strbuf *sql, const struct pg_meta *m, const struct pga_entry *e,
		   int frozen);

/* The toc's table whose data entry name is a chunk of, or NULL. */
const cJSON *pgr_table_of_chunk(const cJSON *toc, const char *name);
/* Whether toc table t's rows are in COPY's binary format (the toc's
 * "format", checked by pgr_read_meta). */
int pgr_binary(const cJSON *t);
/* The COPY ... FROM STDIN that loads toc table t's rows, in their format
 * (FREEZE too when freeze), into sql. */
void pgr_copy_sql(struct strbuf *sql, const cJSON *t, int freeze);
/* What a COPY of rows in the binary format (binary) sends before them,
 * and after them (the snapshot keeps neither: pg_copy.h); nothing for
 * text: PQputCopyData's result. */
int pgr_put_copy_header(PGconn *conn, int binary);
int pgr_put_copy_trailer(PGconn *conn, int binary);
/* toc string field (never NULL: "" when missing). */
const char *pgr_str(const cJSON *obj, const char *key);
/* Appends DROP SCHEMA IF EXISTS ... CASCADE for every snapshot schema. */
void pgr_drop_schemas_sql(PGconn *conn, const cJSON *toc, struct strbuf *sql);

/* Large objects (restore_pg_blobs.c).  The toc's large object whose data
 * entry name is a chunk of, or NULL. */
const cJSON *pgr_blob_of_chunk(const cJSON *toc, const char *name);
/* Appends r's current entry (a chunk of blob's data) to the large object
 * pre-data created; in a transaction of its own when conn is in none. */
int pgr_load_blob(PGconn *conn, struct snap_reader *r, const cJSON *blob, struct sm_error *err);
/* The number of large objects in the target against the manifest's
 * extra.large_objects (none recorded: nothing to check); ERR_DAMAGED when
 * they differ. */
int pgr_check_blobs(PGconn *conn, const cJSON *manifest, const char *path, struct sm_error *err);

/*
 * restore --to URL --jobs N (N >= 2): opens the snapshot at path and loads
 * it into target with N extra connections (restore_pg_parallel.c).  Not
 * atomic: a failure part-way leaves the target incomplete, which err says.
 */
int pgr_apply_parallel(struct engine *target, const char *path, int jobs, long lock_timeout_ms,
		       volatile sig_atomic_t *interrupted, struct sm_error *err);

#endif
