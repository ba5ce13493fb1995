/*
 * restore_pg: the PostgreSQL driver of restore (the entries backup_pg.c
 * writes).
 *
 * Verification, in the one pass that loads (restore.c verifies nothing
 * first: verifies_in_apply).  toc.json, pre-data and post-data are read
 * whole and checked against the checksums the header declares before any of
 * their SQL runs (check_meta); the data chunks stream into COPY while the
 * reader hashes each entry and the whole file, and snap_reader_finish checks
 * them all (every entry against the manifest, the file against its .sha256
 * sidecar) before COMMIT.  So a snapshot that fails anything is rolled back
 * and never committed, and SQL that fails its checksum never runs at all.
 * restore --to --jobs N commits as it goes, so it checks the file against
 * its sidecar up front (pg_load) as well.
 * A snapshot streamed through stdin is read once: apply streams from the
 * reader restore.c opened (which has read only the header) instead of
 * opening the file again; what needs a second pass is refused for it.
 *
 * load:  only records the snapshot and the options.
 * apply: streams the snapshot into the target in ONE transaction: drop the
 *        snapshot's schemas (and only those), pre-data, COPY ... FROM STDIN
 *        (FREEZE) per table straight from the chunks, post-data
 *        (constraints, indexes, setval, grants, comments, REFRESH of
 *        materialized views).  Any damage found on the way (an
 *        entry that fails its checksum, a truncated stream) or any SQL error
 *        rolls everything back and the database stays exactly as it was.
 *        Locks are waited for at most opts->lock_timeout_ms.
 *        restore --to URL --jobs N loads in parallel instead
 *        (restore_pg_parallel.c), not atomically.
 *
 * What makes the load fast: the tables are created in the same transaction,
 * so COPY ... FREEZE writes the rows frozen and all-visible (no hint-bit or
 * freeze rewrite of every page later; a table of less than
 * PGR_FREEZE_MIN_BYTES is loaded without it); maintenance_work_mem (256 MB) lets
 * each CREATE INDEX sort in memory with the server's parallel maintenance
 * workers, and the foreign-key checks of post-data run with it as their
 * work_mem (the server does so for ALTER TABLE ... ADD FOREIGN KEY).  There
 * is no ANALYZE: inside the transaction it would hold every restored table's
 * ACCESS EXCLUSIVE lock for its duration (10% of the restore of an indexed
 * 130 MB database), and the COPYed rows count as changes for autovacuum,
 * which analyzes every restored table of 50 rows or more within
 * autovacuum_naptime, as after pg_restore.
 *
 * Restoring a schema with very many objects in one transaction can exhaust
 * the server's lock table (SQLSTATE 53200, "max_locks_per_transaction").
 * The transaction then rolls back whole.  In place, that is reported with
 * what to do; into an empty database (restore --to) the load starts again
 * in batched transactions, as pg_restore does without --single-transaction.
 */
#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#include "engine_pg.h"
#include "hash.h"
#include "pg_copy.h"
#include "restore.h"
#include "restore_pg_int.h"
#include "strbuf.h"
#include "xalloc.h"

#define IO_BLOCK ((size_t)256 << 10)

/* The restore session's settings: those the snapshot was read under
 * (pg_dump's), and those that decide how its text is taken in, whatever the
 * target database or role sets by default (ALTER DATABASE ... SET):
 * array_nulls off reads a NULL array element back as the string 'NULL',
 * default_table_access_method and default_tablespace place what the
 * snapshot names without USING or TABLESPACE (heap, the database's default).
 * A NULL value is the snapshot's: client_encoding, the one its text was
 * read in (pg_meta.encoding), so that the server takes the bytes as they
 * were written, and converts them, or refuses them, for the target's
 * encoding as it did for pg_restore.  One list: save_settings reads back
 * the same names. */
static const struct { const char *name, *value; } session_settings[] = {
	{ "client_encoding", NULL },
	{ "standard_conforming_strings", "on" },
	{ "DateStyle", "ISO, MDY" },
	{ "IntervalStyle", "postgres" },
	{ "TimeZone", "UTC" },
	{ "extra_float_digits", "3" },
	{ "bytea_output", "hex" },
	{ "array_nulls", "on" },
	{ "default_table_access_method", "heap" },
	{ "default_tablespace", "" },
	{ "statement_timeout", "0" },
	{ "idle_in_transaction_session_timeout", "0" },
	{ "check_function_bodies", "off" },
	{ "xmloption", "content" },
	{ "client_min_messages", "warning" },
	{ "maintenance_work_mem", "256MB" },
	{ "row_security", "off" },
	{ "search_path", "" },
};

#define N_SESSION_SETTINGS (sizeof(session_settings) / sizeof(session_settings[0]))

/* One statement that makes every session setting (the values are
 * constants without quotes, encoding one of pg_archive.c's names). */
static void session_sql(struct strbuf *sql, const char *encoding)
{
	sb_adds(sql, "SELECT ");
	for (size_t i = 0; i < N_SESSION_SETTINGS; i++)
		sb_addf(sql, "%spg_catalog.set_config('%s', '%s', false)", i ? ", " : "",
			session_settings[i].name,
			session_settings[i].value ? session_settings[i].value : encoding);
}

struct pg_stage {
	char *path;   /* the snapshot, streamed by apply */
	struct snap_reader *stream; /* borrowed: a stream's one reader, or NULL */
	int jobs;
	long lock_timeout_ms;
	struct pg_meta meta;
};

void pgr_meta_release(struct pg_meta *m)
{
	cJSON_Delete(m->toc);
	m->toc = NULL;
	sb_release(&m->pre);
	sb_release(&m->post);
	pga_toc_release(&m->post_toc);
}

static void stage_free(void *p)
{
	struct pg_stage *s = p;

	if (!s)
		return;
	free(s->path);
	pgr_meta_release(&s->meta);
	free(s);
}

static int read_entry(struct snap_reader *r, struct strbuf *out, struct sm_error *err)
{
	for (;;) {
		size_t got;

		sb_grow(out, IO_BLOCK);
		if (snap_reader_read(r, out->buf + out->len, IO_BLOCK, &got, err) < 0)
			return -1;
		if (!got)
			return 0;
		sb_setlen(out, out->len + got);
		if (out->len > SNAP_SMALL_MAX)
			return err_set(err, ERR_DAMAGED, "snapshot entry is larger than %zu bytes",
				       (size_t)SNAP_SMALL_MAX);
	}
}

/*
 * Checks toc.json, pre-data and post-data before any of them is used (they
 * are SQL, or become SQL): against the checksums the header declares, or,
 * for a snapshot written before the header declared them, against the
 * manifest of a full verification pass of its own (the manifest is the last
 * entry, after all the data).  The streaming pass checks them once more
 * against the manifest before COMMIT.
 */
static int check_meta(struct snap_reader *r, const struct strbuf *toc, const struct pg_meta *m,
		      volatile sig_atomic_t *interrupted, struct sm_error *err)
{
	static const char *const names[] = { PGA_TOC_ENTRY, PGA_PRE_ENTRY, PGA_POST_ENTRY };
	const struct strbuf *const bufs[] = { toc, &m->pre, &m->post };
	const cJSON *sums = cJSON_GetObjectItemCaseSensitive(snap_reader_header(r), "checksums");
	struct snap_reader *full = NULL;
	cJSON *listed = NULL;
	int ret = -1;

	/* sealed entries were authenticated record by record as they were
	 * read (their checksums are of the sealed bytes): nothing to add */
	if (snap_reader_decrypts(r) > 0)
		return 0;
	if (!sums) {
		const cJSON *e;

		if (snap_reader_is_stream(r)) {
			err_set(err, ERR_FAIL, "snapshot '%s' was written by an older safe-migrate "
				"that did not declare its checksums up front; it cannot be restored "
				"from a stream (save it to a file and restore that)", snap_reader_path(r));
			goto out;
		}
		if (snap_reader_open(snap_reader_path(r), &full, err) < 0)
			goto out;
		snap_reader_set_interrupt(full, interrupted);
		if (snap_reader_finish(full, err) < 0)
			goto out;
		listed = cJSON_CreateObject();
		cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(snap_reader_manifest(full),
								       "entries")) {
			const char *name = pgr_str(e, "name");

			if (!strcmp(name, PGA_TOC_ENTRY) || !strcmp(name, PGA_PRE_ENTRY) ||
			    !strcmp(name, PGA_POST_ENTRY))
				cJSON_AddStringToObject(listed, name, pgr_str(e, "sha256"));
		}
		sums = listed;
	}
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const cJSON *want = cJSON_GetObjectItemCaseSensitive(sums, names[i]);
		char have[HASH_HEX_LEN + 1];

		hash_buf_hex(bufs[i]->buf, bufs[i]->len, have);
		if (!cJSON_IsString(want) || strcmp(want->valuestring, have) != 0) {
			err_set(err, ERR_DAMAGED, "snapshot '%s' is damaged: entry '%s' fails its "
				"SHA-256 check; none of it was run", snap_reader_path(r), names[i]);
			goto out;
		}
	}
	ret = 0;
out:
	cJSON_Delete(listed);
	snap_reader_close(full);
	return ret;
}

/* A toc of a later version than this build reads, text in an encoding
 * it does not know, or a table whose rows are in a format it does not
 * know, is refused before anything runs.  Sets m->encoding. */
static int check_formats(struct pg_meta *m, const char *path, struct sm_error *err)
{
	const cJSON *toc = m->toc;
	const cJSON *version = cJSON_GetObjectItemCaseSensitive(toc, "version"), *t;

	if (cJSON_IsNumber(version) && version->valuedouble > PGA_TOC_VERSION)
		return err_set(err, ERR_USAGE, "snapshot '%s' has a table of contents of version "
			       "%g, and this safe-migrate reads versions up to %d: restore it with "
			       "the version that wrote it", path, version->valuedouble,
			       PGA_TOC_VERSION);
	if (!(m->encoding = pga_encoding(toc)))
		return err_set(err, ERR_USAGE, "snapshot '%s' was read in a client encoding this "
			       "safe-migrate does not know (%s): restore it with the version that "
			       "wrote it", path, pgr_str(toc, PGA_TOC_ENCODING));
	cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(toc, "tables")) {
		const cJSON *f = cJSON_GetObjectItemCaseSensitive(t, PGA_TOC_FORMAT);

		if (f && (!cJSON_IsString(f) || strcmp(f->valuestring, PGA_FORMAT_BINARY) != 0))
			return err_set(err, ERR_DAMAGED, "snapshot '%s' is damaged: table %s's rows "
				       "are in a format this safe-migrate does not know", path,
				       pgr_str(t, "qualified"));
	}
	return 0;
}

int pgr_binary(const cJSON *t)
{
	return cJSON_GetObjectItemCaseSensitive(t, PGA_TOC_FORMAT) != NULL;
}

void pgr_copy_sql(struct strbuf *sql, const cJSON *t, int freeze)
{
	int binary = pgr_binary(t);

	sb_addf(sql, "COPY %s %s FROM STDIN", pgr_str(t, "qualified"), pgr_str(t, "columns"));
	if (binary || freeze)
		sb_addf(sql, " (%s%s%s)", binary ? "FORMAT binary" : "",
			binary && freeze ? ", " : "", freeze ? "FREEZE" : "");
}

int pgr_put_copy_header(PGconn *conn, int binary)
{
	if (binary)
		return PQputCopyData(conn, (const char *)pgcopy_header, PGCOPY_HEADER_LEN);
	return 1;
}

int pgr_put_copy_trailer(PGconn *conn, int binary)
{
	if (binary)
		return PQputCopyData(conn, (const char *)pgcopy_trailer, PGCOPY_TRAILER_LEN);
	return 1;
}

int pgr_read_meta(struct snap_reader *r, struct pg_meta *m, struct snap_entry *ent,
		  int *pending, volatile sig_atomic_t *interrupted, struct sm_error *err)
{
	struct strbuf toc = STRBUF_INIT;
	int rc, ret = -1;

	*pending = 0;
	pgr_meta_release(m);
	while ((rc = snap_reader_next(r, ent, err)) == 1) {
		struct strbuf *dst = !strcmp(ent->name, PGA_TOC_ENTRY) ? &toc :
				     !strcmp(ent->name, PGA_PRE_ENTRY) ? &m->pre :
				     !strcmp(ent->name, PGA_POST_ENTRY) ? &m->post : NULL;

		if (!dst) {
			*pending = 1;
			break;
		}
		if (read_entry(r, dst, err) < 0)
			goto out;
	}
	if (rc < 0 || check_meta(r, &toc, m, interrupted, err) < 0)
		goto out;
	if (!toc.len || !(m->toc = cJSON_Parse(toc.buf)) ||
	    !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(m->toc, "schemas")) ||
	    !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(m->toc, "tables"))) {
		err_set(err, ERR_DAMAGED, "snapshot '%s' is damaged: it has no valid %s",
			snap_reader_path(r), PGA_TOC_ENTRY);
		goto out;
	}
	if (pga_toc_parse(m->toc, m->post.len, &m->post_toc, err) < 0) {
		err_prefix(err, "snapshot '%s' is damaged", snap_reader_path(r));
		goto out;
	}
	if (check_formats(m, snap_reader_path(r), err) < 0)
		goto out;
	/* the scripts are run as C strings: make sure they are terminated */
	sb_grow(&m->pre, 1);
	sb_grow(&m->post, 1);
	ret = 0;
out:
	sb_release(&toc);
	return ret;
}

/* The server's lock table is full: SQLSTATE 53200 (out of memory) raised
 * by its lock manager.  Neither is the message text, which is in the
 * server's lc_messages language. */
static int is_lock_exhaustion(const PGresult *res)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *file = res ? PQresultErrorField(res, PG_DIAG_SOURCE_FILE) : NULL;

	return state && !strcmp(state, "53200") && file && !strcmp(file, "lock.c");
}

int pgr_error(struct sm_error *err, PGconn *conn, const PGresult *res, const char *what)
{
	engine_pg_error(err, conn, res, what);
	if (is_lock_exhaustion(res))
		err_set(err, ERR_FAIL, "%s: the server ran out of lock slots: restoring this "
			"snapshot in one transaction needs more locks than max_locks_per_transaction "
			"allows; nothing was changed. Raise max_locks_per_transaction in "
			"postgresql.conf (and restart the server), or restore into an empty "
			"database with 'restore --to URL', which then loads in several "
			"transactions", what);
	else if (!strcmp(err->sqlstate, "55P03"))
		err->kind = ERR_LOCKED;
	return -1;
}

int pgr_run_sql(PGconn *conn, const char *sql, const char *what, struct sm_error *err)
{
	PGresult *res = PQexec(conn, sql);
	int ret = 0;

	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
		ret = pgr_error(err, conn, res, what);
	PQclear(res);
	return ret;
}

int pgr_session(PGconn *conn, const char *encoding, long lock_timeout_ms, struct sm_error *err)
{
	struct strbuf sql = STRBUF_INIT;
	int ret;

	session_sql(&sql, encoding);
	sb_addf(&sql, "; SET lock_timeout = %ld", lock_timeout_ms > 0 ? lock_timeout_ms : 0);
	ret = pgr_run_sql(conn, sql.buf, "cannot prepare the restore session", err);
	sb_release(&sql);
	return ret;
}

/* Only records the snapshot: apply streams and verifies it (see the top). */
static int pg_load(struct engine *target, struct snap_reader *r, const struct restore_opts *opts,
		   void **state, struct sm_error *err)
{
	struct pg_stage *s = xcalloc(1, sizeof(*s));

	(void)target;
	*state = s;
	s->meta = (struct pg_meta)PG_META_INIT;
	s->path = xstrdup(snap_reader_path(r));
	s->jobs = opts->jobs;
	s->lock_timeout_ms = opts->lock_timeout_ms;
	if (opts->jobs > 1 && !opts->to_other)
		return err_set(err, ERR_USAGE, "--jobs %d: a parallel restore is not atomic, so it "
			       "is only for 'restore --to URL' (a scratch database); in place the "
			       "restore is one transaction", opts->jobs);
	if (snap_reader_is_stream(r)) {
		if (opts->jobs > 1)
			return err_set(err, ERR_USAGE, "--jobs %d: a parallel restore reads the "
				       "snapshot more than once; a stream is read once (omit --jobs, "
				       "or save the stream to a file first)", opts->jobs);
		s->stream = r;
	}
	/* the parallel load commits as it goes: damage must be found before it
	 * starts, not part-way (the one-transaction load checks the file while
	 * it streams it and rolls back instead) */
	if (opts->jobs > 1 && snap_reader_check_file(r, err) < 0)
		return -1;
	return 0;
}

const char *pgr_str(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsString(v) ? v->valuestring : "";
}

const cJSON *pgr_table_of_chunk(const cJSON *toc, const char *name)
{
	const cJSON *t;

	cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(toc, "tables")) {
		const cJSON *entry = cJSON_GetObjectItemCaseSensitive(t, "entry");

		if (cJSON_IsString(entry) && snap_is_chunk_of(name, entry->valuestring, NULL))
			return t;
	}
	return NULL;
}

/* Ends the COPY into toc table t (NULL when errmsg, which fails it);
 * loaded (may be NULL) adds up the rows it took (a table's chunks may come
 * in several runs, between other tables': a snapshot of backup --jobs). */
static int end_copy(PGconn *conn, const cJSON *t, const char *errmsg, cJSON *loaded,
		    struct sm_error *err)
{
	const char *table = t ? pgr_str(t, "qualified") : "";
	PGresult *res;
	int ret = 0;

	if ((!errmsg && pgr_put_copy_trailer(conn, pgr_binary(t)) != 1) ||
	    PQputCopyEnd(conn, errmsg) != 1)
		return pgr_error(err, conn, NULL, "cannot load table");
	while ((res = PQgetResult(conn))) {
		if (!errmsg && loaded && PQresultStatus(res) == PGRES_COMMAND_OK) {
			cJSON *had = cJSON_GetObjectItemCaseSensitive(loaded, table);
			double n = strtod(PQcmdTuples(res), NULL);

			if (had)
				cJSON_SetNumberValue(had, had->valuedouble + n);
			else
				cJSON_AddNumberToObject(loaded, table, n);
		}
		if (!errmsg && ret == 0 && PQresultStatus(res) != PGRES_COMMAND_OK) {
			struct strbuf what = STRBUF_INIT;

			sb_addf(&what, "cannot load table %s", table);
			ret = pgr_error(err, conn, res, what.buf);
			sb_release(&what);
		}
		PQclear(res);
	}
	return ret;
}

/* When name is a chunk of a large object's data: ends the COPY of *cur
 * (if any) and writes the chunk into the large object. */
static int load_blob_entry(PGconn *conn, struct snap_reader *r, const cJSON *toc,
			   const char *name, const cJSON **cur, cJSON *loaded, struct sm_error *err)
{
	const cJSON *blob = pgr_blob_of_chunk(toc, name);

	if (!blob)
		return 0;
	if (*cur && end_copy(conn, *cur, NULL, loaded, err) < 0)
		return -1;
	*cur = NULL;
	return pgr_load_blob(conn, r, blob, err);
}

/* A table whose data (its first chunk) is smaller is loaded without
 * FREEZE.  FREEZE gives the table its visibility-map fork at once, one more
 * file per table for the file system to create: on ext4, 400 tables of 250
 * rows (about 30 kB each) created in one transaction took 0.15-0.4 s longer
 * to COPY with it, 0.4-1 ms a table, and 40 of 2,500 rows 0.75 ms a table;
 * 4 of 25,000 rows (2.5 MB) were even (on a tmpfs, where files cost little,
 * so was everything).  What it saves, a hint-bit write of each page on its
 * first read and the freezing VACUUM of every page, is a few hundred pages'
 * writes below this size; and the foreign-key checks it speeds up (see
 * FK_CHECK_ON) cost little on tables this small either way. */
#define PGR_FREEZE_MIN_BYTES ((uint64_t)1 << 20)

/* Streams every data chunk into COPY FROM STDIN, starting with *ent when
 * pending (the entry pgr_read_meta stopped at). */
static int load_data(PGconn *conn, struct snap_reader *r, const cJSON *toc, int freeze,
		     struct snap_entry *ent, int pending, cJSON *loaded, struct sm_error *err)
{
	const cJSON *cur = NULL;
	char *buf = xmalloc(IO_BLOCK);
	int rc, ret = -1;

	for (rc = pending ? 1 : snap_reader_next(r, ent, err); rc == 1;
	     rc = snap_reader_next(r, ent, err)) {
		const cJSON *t = pgr_table_of_chunk(toc, ent->name);
		size_t got;

		if (!t) {
			if (load_blob_entry(conn, r, toc, ent->name, &cur, loaded, err) < 0)
				goto out;
			continue;
		}
		if (t != cur) {
			struct strbuf sql = STRBUF_INIT;
			PGresult *res;

			if (cur && end_copy(conn, cur, NULL, loaded, err) < 0)
				goto out;
			cur = NULL;
			/* FREEZE: the table was created in this transaction, so its rows
			 * are written frozen and all-visible (no hint-bit rewrite on
			 * first read, no freezing VACUUM later); an extension's
			 * configuration table may not be new.  Not for a small table:
			 * see PGR_FREEZE_MIN_BYTES */
			pgr_copy_sql(&sql, t, freeze && ent->size >= PGR_FREEZE_MIN_BYTES &&
						      !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
							      t, "extension_config")));
			res = PQexec(conn, sql.buf);
			sb_release(&sql);
			if (PQresultStatus(res) != PGRES_COPY_IN) {
				pgr_error(err, conn, res, "cannot load table");
				err_prefix(err, "%s", pgr_str(t, "qualified"));
				PQclear(res);
				goto out;
			}
			PQclear(res);
			cur = t;
			if (pgr_put_copy_header(conn, pgr_binary(t)) != 1) {
				pgr_error(err, conn, NULL, "cannot load table");
				goto out;
			}
		}
		for (;;) {
			if (snap_reader_read(r, buf, IO_BLOCK, &got, err) < 0) {
				struct sm_error ignored = SM_ERROR_INIT;

				end_copy(conn, NULL, "snapshot damaged", NULL, &ignored);
				cur = NULL;
				goto out;
			}
			if (!got)
				break;
			if (PQputCopyData(conn, buf, (int)got) != 1) {
				pgr_error(err, conn, NULL, "cannot load table");
				goto out;
			}
		}
	}
	if (rc < 0) {
		struct sm_error ignored = SM_ERROR_INIT;

		if (cur)
			end_copy(conn, NULL, "snapshot damaged", NULL, &ignored);
		cur = NULL;
		goto out;
	}
	if (cur && end_copy(conn, cur, NULL, loaded, err) < 0)
		goto out;
	ret = 0;
out:
	free(buf);
	return ret;
}

void pgr_drop_schemas_sql(PGconn *conn, const cJSON *toc, struct strbuf *sql)
{
	const cJSON *sch;

	cJSON_ArrayForEach(sch, cJSON_GetObjectItemCaseSensitive(toc, "schemas")) {
		char *q;

		if (!cJSON_IsString(sch))
			continue;
		q = PQescapeIdentifier(conn, sch->valuestring, strlen(sch->valuestring));
		sb_addf(sql, "DROP SCHEMA IF EXISTS %s CASCADE;\n", q);
		PQfreemem(q);
	}
}


/* Appends the snapshot's schemas (toc "schemas") to list as SQL literals,
 * comma-separated. */
static void schema_literals(PGconn *conn, const cJSON *toc, struct strbuf *list)
{
	const cJSON *sch;

	cJSON_ArrayForEach(sch, cJSON_GetObjectItemCaseSensitive(toc, "schemas")) {
		char *lit;

		if (!cJSON_IsString(sch))
			continue;
		lit = PQescapeLiteral(conn, sch->valuestring, strlen(sch->valuestring));
		sb_addf(list, "%s%s", list->len ? ", " : "", lit);
		PQfreemem(lit);
	}
}

/* Sets *empty when the target holds nothing the snapshot's schemas would
 * replace but an empty public schema (a fresh database, as for --to). */
static int target_is_empty(PGconn *conn, const cJSON *toc, int *empty, struct sm_error *err)
{
	struct strbuf list = STRBUF_INIT, sql = STRBUF_INIT;
	PGresult *res;
	int ret = -1;

	schema_literals(conn, toc, &list);
	sb_addf(&sql, "SELECT count(*) FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_namespace n "
		"ON n.oid = d.refobjid WHERE d.refclassid = 'pg_catalog.pg_namespace'::regclass "
		"AND n.nspname IN (%s) OR EXISTS (SELECT 1 FROM pg_catalog.pg_namespace x WHERE "
		"x.nspname IN (%s) AND x.nspname <> 'public')", list.len ? list.buf : "NULL",
		list.len ? list.buf : "NULL");
	res = PQexec(conn, sql.buf);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		pgr_error(err, conn, res, "cannot inspect the target database");
		goto out;
	}
	*empty = !strcmp(PQgetvalue(res, 0, 0), "0");
	ret = 0;
out:
	PQclear(res);
	sb_release(&list);
	sb_release(&sql);
	return ret;
}

/* Batched mode: statements run in transactions of at most BATCH statements. */
#define BATCH 50

struct batch {
	PGconn *conn;
	const char *what;
	struct sm_error *err;
	struct strbuf stmt;
	int n;
};

static int batch_stmt(void *ud, const char *text, size_t len, int line)
{
	struct batch *b = ud;

	(void)line;
	if (b->n == 0 && pgr_run_sql(b->conn, "BEGIN", b->what, b->err) < 0)
		return -1;
	sb_reset(&b->stmt);
	sb_add(&b->stmt, text, len);
	if (pgr_run_sql(b->conn, b->stmt.buf, b->what, b->err) < 0)
		return -1;
	if (++b->n == BATCH) {
		b->n = 0;
		return pgr_run_sql(b->conn, "COMMIT", b->what, b->err);
	}
	return 0;
}

int pgr_run_batched(struct engine *target, const char *script, const char *what,
		    struct sm_error *err)
{
	struct batch b = { engine_native(target), what, err, STRBUF_INIT, 0 };
	int ret = target->ops->split(script, batch_stmt, &b, err);

	if (ret == 0 && b.n)
		ret = pgr_run_sql(b.conn, "COMMIT", what, err);
	if (ret != 0) {
		PGresult *res = PQexec(b.conn, "ROLLBACK");

		PQclear(res);
		ret = -1;
	}
	sb_release(&b.stmt);
	return ret;
}

/*
 * After COPY FREEZE (frozen), a foreign key's check, the server's
 * anti-join of the referencing rows against the referenced key, runs
 * without hash joins.  The referenced side always has a unique index, so
 * the planner is left with a merge join (on index-only scans when the
 * referencing columns are indexed too: FREEZE left every page
 * all-visible, so they read no heap page) or index probes, never a
 * quadratic plan; the hash join it prefers, on freshly loaded tables it
 * has no statistics for, probes a table far bigger than the CPU's caches.
 * Measured on the narrow bench shape (600k orders against 300k customers,
 * in the restore's transaction): 300-380 ms with a hash join, 60-90 ms
 * with the index, 190-245 ms without an index on orders.customer_id.
 * Without FREEZE (restore --jobs, the batched restore) the index-only
 * scans fetch every heap page and the merge join took 785 ms: the hash
 * join stays.
 */
#define FK_CHECK_ON "SET LOCAL enable_hashjoin = off;\n"
#define FK_CHECK_OFF "\nSET LOCAL enable_hashjoin TO DEFAULT;\n"

void pgr_entry_sql(struct strbuf *sql, const struct pg_meta *m, const struct pga_entry *e,
		   int frozen)
{
	int fk = frozen && !strcmp(e->kind, "FK CONSTRAINT");

	if (fk)
		sb_adds(sql, FK_CHECK_ON);
	sb_add(sql, m->post.buf + e->offset, e->len);
	if (fk)
		sb_adds(sql, FK_CHECK_OFF);
}

int pgr_run_entries(PGconn *conn, const struct pg_meta *m, const unsigned char *skip,
		    const char *what, struct sm_error *err)
{
	struct strbuf sql = STRBUF_INIT, ewhat = STRBUF_INIT;
	int n = 0, ret = -1;

	for (size_t i = 0; i < m->post_toc.n; i++) {
		const struct pga_entry *e = &m->post_toc.v[i];

		if (skip && skip[i])
			continue;
		if (n == 0 && pgr_run_sql(conn, "BEGIN", what, err) < 0)
			goto out;
		sb_reset(&sql);
		pgr_entry_sql(&sql, m, e, 0);
		sb_reset(&ewhat);
		sb_addf(&ewhat, "%s: %s%s%s", what, e->kind, *e->name ? " " : "", e->name);
		if (pgr_run_sql(conn, sql.buf, ewhat.buf, err) < 0)
			goto out;
		if (++n == BATCH) {
			n = 0;
			if (pgr_run_sql(conn, "COMMIT", what, err) < 0)
				goto out;
		}
	}
	if (n && pgr_run_sql(conn, "COMMIT", what, err) < 0)
		goto out;
	n = 0;
	ret = 0;
out:
	if (n || ret < 0)
		PQclear(PQexec(conn, "ROLLBACK"));
	sb_release(&sql);
	sb_release(&ewhat);
	return ret;
}

/*
 * Into an empty database whose lock table cannot hold the whole snapshot in
 * one transaction: the pg_restore way, several transactions.  A failure
 * part-way leaves the target partly restored, which the error says.
 */
static int apply_batched(struct engine *target, struct pg_stage *s,
			 const struct restore_opts *opts, struct sm_error *err)
{
	PGconn *conn = engine_native(target);
	struct snap_reader *r = NULL;
	struct strbuf sql = STRBUF_INIT;
	struct snap_entry ent;
	int pending = 0, ret = -1;

	if (snap_reader_open(s->path, &r, err) < 0)
		goto out;
	snap_reader_set_interrupt(r, opts->interrupted);
	if (pgr_read_meta(r, &s->meta, &ent, &pending, opts->interrupted, err) < 0 ||
	    pgr_session(conn, s->meta.encoding, s->lock_timeout_ms, err) < 0)
		goto fail;
	pgr_drop_schemas_sql(conn, s->meta.toc, &sql);
	if (pgr_run_sql(conn, sql.buf, "cannot drop the schemas to restore", err) < 0 ||
	    pgr_run_batched(target, s->meta.pre.buf, "cannot restore the schema (pre-data)", err) < 0 ||
	    load_data(conn, r, s->meta.toc, 0, &ent, pending, NULL, err) < 0 ||
	    snap_reader_finish(r, err) < 0 ||
	    pgr_check_blobs(conn, snap_reader_manifest(r), s->path, err) < 0)
		goto fail;
	/* a snapshot with typed entries runs them; an older one, its script */
	if (s->meta.post_toc.n ?
	    pgr_run_entries(conn, &s->meta, NULL, "cannot restore constraints and indexes "
			    "(post-data)", err) < 0 :
	    pgr_run_batched(target, s->meta.post.buf,
			    "cannot restore constraints and indexes (post-data)", err) < 0)
		goto fail;
	ret = 0;
	goto out;
fail:
	err_prefix(err, "the restore (in several transactions, the server's lock table being too "
		   "small for one) stopped part-way and left the target database incomplete");
out:
	snap_reader_close(r);
	sb_release(&sql);
	return ret;
}

static int toc_has_schema(const cJSON *toc, const char *name)
{
	const cJSON *sch;

	cJSON_ArrayForEach(sch, cJSON_GetObjectItemCaseSensitive(toc, "schemas"))
		if (cJSON_IsString(sch) && !strcmp(sch->valuestring, name))
			return 1;
	return 0;
}

/* The user schemas the snapshot does not hold.  After a failed run (keep:
 * the pre-run list) those not in keep were created by the run: they go in
 * the same transaction.  A restore asked for by hand (keep NULL) cannot
 * tell whose they are and leaves them, saying so in notes. */
static int drop_new_schemas_sql(struct engine *target, const cJSON *toc, const char *keep,
				struct strbuf *sql, struct strbuf *notes, struct sm_error *err)
{
	struct strbuf now = STRBUF_INIT, left = STRBUF_INIT;
	PGconn *conn = engine_native(target);

	if ((!keep && !notes) || !target->ops->user_schemas)
		return 0;
	if (target->ops->user_schemas(target, &now, err) < 0) {
		sb_release(&now);
		return -1;
	}
	for (char *p = now.buf; p && *p;) {
		char *nl = strchr(p, '\n');

		if (nl)
			*nl = '\0';
		if (toc_has_schema(toc, p)) {
			; /* restored */
		} else if (!keep) {
			sb_addf(&left, "%s%s", left.len ? ", " : "", p);
		} else if (!lines_contain(keep, p, strlen(p))) {
			char *q = PQescapeIdentifier(conn, p, strlen(p));

			sb_addf(sql, "DROP SCHEMA IF EXISTS %s CASCADE;\n", q);
			PQfreemem(q);
		}
		p = nl ? nl + 1 : p + strlen(p);
	}
	if (left.len)
		sb_addf(notes, "the snapshot does not hold these schemas, which are left as they "
			"are (drop them by hand if they should go): %s\n", left.buf);
	sb_release(&now);
	sb_release(&left);
	return 0;
}

/* Each table's rows as COPY counted them, against the manifest's
 * row_counts (taken in the snapshot's own transaction): checked inside the
 * restore's transaction, where no other session can have written yet. */
static int check_row_counts(const cJSON *loaded, const cJSON *manifest, const char *path,
			    struct sm_error *err)
{
	const cJSON *want = cJSON_GetObjectItemCaseSensitive(manifest, "row_counts");
	const cJSON *t;

	cJSON_ArrayForEach(t, want) {
		const cJSON *got = cJSON_GetObjectItemCaseSensitive(loaded, t->string);
		double n = got ? cJSON_GetNumberValue(got) : 0;

		if (n != cJSON_GetNumberValue(t))
			return err_set(err, ERR_DAMAGED, "snapshot '%s' is damaged: table %s took "
				       "%.0f rows, the manifest says %.0f", path, t->string, n,
				       cJSON_GetNumberValue(t));
	}
	return 0;
}

/* restore_opts.sequences_ahead: before the drops, every sequence's
 * position now, as the statement that, run after the snapshot's setval,
 * moves each one that came back behind it (and was readable: pg_sequences
 * hides the position of one the role may not read) to where it was.
 * "Behind" follows the sign of its increment.  Nothing when none has a
 * position. */
static int sequences_ahead_sql(PGconn *conn, struct strbuf *out, struct sm_error *err)
{
	PGresult *res = PQexec(conn,
		"SELECT pg_catalog.string_agg(pg_catalog.format('(%L, %L, %s::int8)', schemaname, "
		"sequencename, last_value), ', ') FROM pg_catalog.pg_sequences "
		"WHERE last_value IS NOT NULL");
	const char *list;

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		pgr_error(err, conn, res, "cannot read the sequences' positions");
		PQclear(res);
		return -1;
	}
	list = PQntuples(res) == 1 && !PQgetisnull(res, 0, 0) ? PQgetvalue(res, 0, 0) : NULL;
	if (list)
		sb_addf(out, "SELECT pg_catalog.setval(pg_catalog.format('%%I.%%I', s.schemaname, "
			"s.sequencename), o.v, true) FROM pg_catalog.pg_sequences s JOIN (VALUES %s) "
			"o(sch, seq, v) ON s.schemaname = o.sch AND s.sequencename = o.seq WHERE "
			"s.last_value IS NULL OR (s.increment_by > 0 AND s.last_value < o.v) OR "
			"(s.increment_by < 0 AND s.last_value > o.v)", list);
	PQclear(res);
	return 0;
}

/* Locks every table of the snapshot's schemas against writes (reads go on)
 * in the restore's transaction, then lets the caller act on a database
 * no one else can change. */
static int block_writers(PGconn *conn, const cJSON *toc, const struct restore_opts *opts,
			 struct sm_error *err)
{
	struct strbuf list = STRBUF_INIT, sql = STRBUF_INIT;
	PGresult *res = NULL;
	int ret = -1;

	if (!opts->writers_blocked)
		return 0;
	schema_literals(conn, toc, &list);
	sb_addf(&sql, "SELECT pg_catalog.string_agg(pg_catalog.format('%%I.%%I', n.nspname, "
		"c.relname), ', ') FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON "
		"n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND n.nspname IN (%s)",
		list.len ? list.buf : "NULL");
	res = PQexec(conn, sql.buf);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		pgr_error(err, conn, res, "cannot list the tables to lock");
		goto out;
	}
	if (!PQgetisnull(res, 0, 0)) {
		sb_reset(&sql);
		sb_addf(&sql, "LOCK TABLE %s IN EXCLUSIVE MODE", PQgetvalue(res, 0, 0));
		if (pgr_run_sql(conn, sql.buf, "cannot lock the tables against writes", err) < 0)
			goto out;
	}
	ret = opts->writers_blocked(opts->writers_blocked_ud, err);
out:
	PQclear(res);
	sb_release(&list);
	sb_release(&sql);
	return ret;
}

static int apply_single(struct engine *target, struct pg_stage *s,
			const struct restore_opts *opts, struct sm_error *err)
{
	PGconn *conn = engine_native(target);
	struct snap_reader *r = NULL;
	struct strbuf sql = STRBUF_INIT, ahead = STRBUF_INIT;
	cJSON *loaded = cJSON_CreateObject();
	struct snap_entry ent;
	int pending = 0, ret = -1, in_tx = 0;

	if (s->stream)
		r = s->stream;
	else if (snap_reader_open(s->path, &r, err) < 0)
		goto out;
	snap_reader_set_interrupt(r, opts->interrupted);
	/* the session reads and writes text in the snapshot's encoding */
	if (pgr_read_meta(r, &s->meta, &ent, &pending, opts->interrupted, err) < 0 ||
	    pgr_session(conn, s->meta.encoding, s->lock_timeout_ms, err) < 0)
		goto out;
	if (pgr_run_sql(conn, "BEGIN", "cannot start the restore", err) < 0)
		goto out;
	in_tx = 1;
	if (block_writers(conn, s->meta.toc, opts, err) < 0 ||
	    (opts->sequences_ahead && sequences_ahead_sql(conn, &ahead, err) < 0))
		goto out;
	/* this transaction's drops are what every other connection waits for */
	pgr_drop_schemas_sql(conn, s->meta.toc, &sql);
	if (drop_new_schemas_sql(target, s->meta.toc, opts->keep_schemas, &sql, opts->notes,
				 err) < 0 ||
	    pgr_run_sql(conn, sql.buf, "cannot drop the schemas to restore", err) < 0 ||
	    pgr_run_sql(conn, s->meta.pre.buf, "cannot restore the schema (pre-data)", err) < 0 ||
	    load_data(conn, r, s->meta.toc, 1, &ent, pending, loaded, err) < 0)
		goto out;
	/* every entry loaded so far must check out before anything is kept:
	 * damage found here rolls the whole transaction back; so does a table
	 * that took another number of rows than the manifest says it had */
	if (snap_reader_finish(r, err) < 0 ||
	    check_row_counts(loaded, snap_reader_manifest(r), snap_reader_path(r), err) < 0 ||
	    pgr_check_blobs(conn, snap_reader_manifest(r), snap_reader_path(r), err) < 0)
		goto out;
	/* a snapshot with typed entries runs them (as one script); an older
	 * one, its script */
	sb_reset(&sql);
	for (size_t i = 0; i < s->meta.post_toc.n; i++)
		pgr_entry_sql(&sql, &s->meta, &s->meta.post_toc.v[i], 1);
	if (pgr_run_sql(conn, s->meta.post_toc.n ? sql.buf : s->meta.post.buf,
			"cannot restore constraints and indexes (post-data)", err) < 0 ||
	    (ahead.len && pgr_run_sql(conn, ahead.buf, "cannot move the sequences back ahead",
				      err) < 0))
		goto out;
	/* the caller's check of the restored state reads the catalog as its
	 * own sessions do: under their settings, not the restore's (an empty
	 * search_path qualifies every name in an index or a default) */
	if (opts->verify &&
	    (pgr_run_sql(conn, "RESET ALL", "cannot check the restore", err) < 0 ||
	     opts->verify(opts->verify_ud, target, err) < 0))
		goto out;
	if (restore_interrupted(opts, err) < 0 ||
	    pgr_run_sql(conn, "COMMIT", "cannot commit the restore", err) < 0)
		goto out;
	in_tx = 0;
	ret = 0;
out:
	if (in_tx) {
		PGresult *res = PQexec(conn, "ROLLBACK");

		PQclear(res);
	}
	/* a statement cancelled by the signal handler fails like any other */
	if (ret < 0 && opts->interrupted && *opts->interrupted)
		err->kind = ERR_INTERRUPTED;
	if (ret < 0 && (err->kind == ERR_DAMAGED || err->kind == ERR_INTERRUPTED))
		err_prefix(err, "nothing was changed");
	if (ret < 0 && err->kind == ERR_LOCKED)
		err_prefix(err, "another session holds a lock that the restore needs and kept it "
			   "longer than %ld ms (--lock-timeout); nothing was changed",
			   s->lock_timeout_ms);
	if (r != s->stream)
		snap_reader_close(r);
	sb_release(&ahead);
	sb_release(&sql);
	cJSON_Delete(loaded);
	return ret;
}

/* The statements that put back the connection's settings the restore
 * session changes (the engine's connection goes on after the restore). */
static int save_settings(PGconn *conn, struct strbuf *undo, struct sm_error *err)
{
	struct strbuf sql = STRBUF_INIT;
	PGresult *res;
	int ret = 0;

	sb_adds(&sql, "SELECT pg_catalog.string_agg(pg_catalog.format('SELECT pg_catalog.set_config("
		"%L, %L, false);', name, setting), ' ') FROM pg_catalog.pg_settings WHERE name IN "
		"('lock_timeout'");
	for (size_t i = 0; i < N_SESSION_SETTINGS; i++)
		sb_addf(&sql, ", '%s'", session_settings[i].name);
	sb_addch(&sql, ')');
	res = PQexec(conn, sql.buf);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		ret = pgr_error(err, conn, res, "cannot read the session settings");
	else
		sb_adds(undo, PQgetvalue(res, 0, 0));
	PQclear(res);
	sb_release(&sql);
	return ret;
}

void pgr_encoding_hint(PGconn *conn, const char *encoding, struct sm_error *err)
{
	const char *target = PQparameterStatus(conn, "server_encoding");

	if ((!strcmp(err->sqlstate, "22021") || !strcmp(err->sqlstate, "22P05")) && encoding &&
	    target && strcmp(target, encoding) != 0)
		err_prefix(err, "the snapshot's text was read in %s, and the target database's "
			   "encoding, %s, does not take all of it (restore it into a database "
			   "created with ENCODING '%s')", encoding, target, encoding);
}

static int pg_apply(struct engine *target, void *state, const cJSON *manifest,
		    const struct restore_opts *opts, struct sm_error *err)
{
	struct pg_stage *s = state;
	PGconn *conn = engine_native(target);
	struct strbuf undo = STRBUF_INIT;
	int empty = 0, ret = -1;

	(void)manifest;
	/* each way of loading sets the session (pgr_session) once it has
	 * read the toc, which says the encoding */
	if (save_settings(conn, &undo, err) < 0)
		goto out;
	if (s->jobs > 1) {
		ret = pgr_apply_parallel(target, s->path, s->jobs, s->lock_timeout_ms,
					 opts->interrupted, err);
		goto out;
	}
	if (apply_single(target, s, opts, err) == 0) {
		ret = 0;
		goto out;
	}
	/* out of lock slots (or memory): nothing was changed; into an empty
	 * database the restore may go on in several, smaller transactions,
	 * elsewhere it must not */
	if (strcmp(err->sqlstate, "53200") != 0 || !s->meta.toc || s->stream ||
	    target_is_empty(conn, s->meta.toc, &empty, err) < 0 || !empty)
		goto out;
	err_clear(err);
	ret = apply_batched(target, s, opts, err);
out:
	/* (the parallel restore reads its own meta, and says it itself) */
	if (ret < 0 && s->jobs <= 1)
		pgr_encoding_hint(conn, s->meta.encoding, err);
	if (undo.len) {
		PGresult *res = PQexec(conn, undo.buf);

		PQclear(res);
	}
	sb_release(&undo);
	return ret;
}

const struct restore_driver restore_pg_driver = {
	.engine = "postgresql",
	.load = pg_load,
	.apply = pg_apply,
	.discard = stage_free,
	.verifies_in_apply = 1,
};
