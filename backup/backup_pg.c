/*
 * backup_pg: the PostgreSQL driver of backup, our pg_dump.
 *
 * Everything is read in one REPEATABLE READ, READ ONLY transaction, so the
 * schema and every table's rows come from one consistent snapshot of the
 * database.  pgdump_catalog.c rebuilds the DDL; this file writes the
 * snapshot's PostgreSQL entries, in the order restore_pg reads them:
 *
 *   pg/toc.json        the schemas the snapshot owns and, per table, its
 *                      qualified name, COPY column list and data entry
 *   pg/pre-data.sql    schemas, extensions, types, sequences, tables,
 *                      functions, views (run with an empty search_path)
 *   pg/post-data.sql   constraints, indexes, triggers, setval, ownership,
 *                      grants, comments, materialized-view refresh
 *   data/NNNNNN.copy.* one COPY ... TO STDOUT text stream per table, in
 *                      chunk entries of at most SNAP_CHUNK_MAX bytes
 *
 * Memory stays bounded: rows go from libpq's buffer straight into the
 * writer's chunk.  Row counts (the newlines of the text COPY stream, which
 * escapes newlines inside values) go into the manifest.
 */
#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#include "backup.h"
#include "pgdump_catalog.h"
#include "strbuf.h"
#include "xalloc.h"

#define TOC_ENTRY "pg/toc.json"
#define PRE_ENTRY "pg/pre-data.sql"
#define POST_ENTRY "pg/post-data.sql"

/* One COPY TO STDOUT stream, pulled by the snapshot writer. */
struct copy_src {
	PGconn *conn;
	char *row;        /* the row libpq gave us, partly handed out */
	size_t row_len, row_off;
	long long rows;
	int done;
	const char *table;
};

static int copy_read(void *ud, void *buf, size_t cap, size_t *got, struct sm_error *err)
{
	struct copy_src *s = ud;
	char *out = buf;
	size_t n = 0;

	while (n < cap && !s->done) {
		if (s->row_off == s->row_len) {
			int len;

			PQfreemem(s->row);
			s->row = NULL;
			s->row_len = s->row_off = 0;
			len = PQgetCopyData(s->conn, &s->row, 0);
			if (len == -1) {
				PGresult *res = PQgetResult(s->conn);
				int bad = PQresultStatus(res) != PGRES_COMMAND_OK;

				if (bad)
					pgcat_pq_error(err, s->conn, res, "cannot copy table");
				PQclear(res);
				while ((res = PQgetResult(s->conn)))
					PQclear(res);
				if (bad)
					return err_prefix(err, "%s", s->table);
				s->done = 1;
				break;
			}
			if (len < 0)
				return pgcat_pq_error(err, s->conn, NULL, "cannot copy table");
			s->row_len = (size_t)len;
			s->rows++;
		}
		{
			size_t take = s->row_len - s->row_off;

			if (take > cap - n)
				take = cap - n;
			memcpy(out + n, s->row + s->row_off, take);
			n += take;
			s->row_off += take;
		}
	}
	*got = n;
	return 0;
}

static int copy_table(PGconn *conn, struct snap_writer *w, const struct pgcat_table *t,
		      const char *entry, long long *rows, struct sm_error *err)
{
	struct copy_src s = { conn, NULL, 0, 0, 0, 0, t->qualified };
	struct strbuf sql = STRBUF_INIT;
	PGresult *res;
	int ret = -1;

	sb_addf(&sql, "COPY %s %s TO STDOUT", t->qualified, t->columns);
	res = PQexec(conn, sql.buf);
	if (PQresultStatus(res) != PGRES_COPY_OUT) {
		pgcat_pq_error(err, conn, res, "cannot copy table");
		err_prefix(err, "%s", t->qualified);
		PQclear(res);
		goto out;
	}
	PQclear(res);
	if (snap_add_entry_stream(w, entry, SNAP_SIZE_UNKNOWN, copy_read, &s, err) < 0) {
		/* drain the stream so the connection stays usable for the rollback */
		while (!s.done && PQgetCopyData(conn, &s.row, 0) >= 0) {
			PQfreemem(s.row);
			s.row = NULL;
		}
		while ((res = PQgetResult(conn)))
			PQclear(res);
		goto out;
	}
	*rows = s.rows;
	ret = 0;
out:
	PQfreemem(s.row);
	sb_release(&sql);
	return ret;
}

static cJSON *make_toc(const struct pgcat_dump *d)
{
	cJSON *toc = cJSON_CreateObject(), *schemas = cJSON_AddArrayToObject(toc, "schemas");
	cJSON *tables = cJSON_AddArrayToObject(toc, "tables");
	struct strbuf entry = STRBUF_INIT;
	size_t i;

	cJSON_AddNumberToObject(toc, "version", 1);
	for (i = 0; i < d->nschemas; i++)
		cJSON_AddItemToArray(schemas, cJSON_CreateString(d->schemas[i]));
	for (i = 0; i < d->ntables; i++) {
		cJSON *t = cJSON_CreateObject();

		sb_reset(&entry);
		sb_addf(&entry, "data/%06zu.copy", i);
		cJSON_AddStringToObject(t, "schema", d->tables[i].schema);
		cJSON_AddStringToObject(t, "name", d->tables[i].name);
		cJSON_AddStringToObject(t, "qualified", d->tables[i].qualified);
		cJSON_AddStringToObject(t, "columns", d->tables[i].columns);
		cJSON_AddStringToObject(t, "entry", entry.buf);
		cJSON_AddItemToArray(tables, t);
	}
	sb_release(&entry);
	return toc;
}

static int pg_take(struct engine *e, struct snap_writer *w, const struct backup_opts *opts,
		   struct sm_error *err)
{
	PGconn *conn = engine_native(e);
	struct pgcat_options co = { opts && opts->no_owner, 0 };
	struct pgcat_dump d = PGCAT_DUMP_INIT;
	struct strbuf name = STRBUF_INIT;
	cJSON *toc = NULL;
	char *toc_text = NULL;
	PGresult *res;
	size_t i;
	int ret = -1;

	if (pgcat_begin(conn, err) < 0)
		return -1;
	if (pgcat_read(conn, &co, &d, err) < 0)
		goto out;
	toc = make_toc(&d);
	toc_text = cJSON_Print(toc);
	if (snap_add_entry_buf(w, TOC_ENTRY, toc_text, strlen(toc_text), err) < 0 ||
	    snap_add_entry_buf(w, PRE_ENTRY, d.pre_data.buf, d.pre_data.len, err) < 0 ||
	    snap_add_entry_buf(w, POST_ENTRY, d.post_data.buf, d.post_data.len, err) < 0)
		goto out;
	for (i = 0; i < d.ntables; i++) {
		long long rows = 0;

		sb_reset(&name);
		sb_addf(&name, "data/%06zu.copy", i);
		if (copy_table(conn, w, &d.tables[i], name.buf, &rows, err) < 0)
			goto out;
		snap_set_row_count(w, d.tables[i].qualified, rows);
	}
	ret = 0;
out:
	res = PQexec(conn, ret == 0 ? "COMMIT" : "ROLLBACK");
	PQclear(res);
	free(toc_text);
	cJSON_Delete(toc);
	sb_release(&name);
	pgcat_dump_release(&d);
	return ret;
}

static int pg_estimate(struct engine *e, uint64_t *bytes, struct sm_error *err)
{
	PGconn *conn = engine_native(e);
	PGresult *res = PQexec(conn, "SELECT pg_catalog.pg_database_size(pg_catalog.current_database())");

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		pgcat_pq_error(err, conn, res, "cannot estimate the database size");
		PQclear(res);
		return -1;
	}
	/* compressed text COPY is usually well under the on-disk size */
	*bytes = strtoull(PQgetvalue(res, 0, 0), NULL, 10) / 2;
	PQclear(res);
	return 0;
}

const struct backup_driver backup_pg_driver = {
	.engine = "postgresql",
	.take = pg_take,
	.estimate = pg_estimate,
};
