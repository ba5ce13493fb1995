/*
 * restore_pg_parallel: restore --to URL --jobs N, the parallel load into a
 * scratch database (like pg_restore -j N).  Not atomic: a failure part-way
 * leaves the target incomplete, and the error says so.
 *
 *   1. pre-data on the engine's connection (transactions of 50 statements);
 *   2. data: this thread reads the snapshot (one zstd stream, so one
 *      reader) and cuts each table's COPY text into units that end on a row
 *      boundary (a text COPY row always ends with a raw '\n': newlines in
 *      values are escaped), whatever the chunk entries' boundaries are.  N
 *      worker threads, one connection each, load the units with
 *      COPY ... FROM STDIN, several workers into one table if it is big.
 *      The queue holds at most N units, so memory stays bounded;
 *   3. the snapshot is verified (every entry against the manifest, the file
 *      against its sidecar) once all of it was read;
 *   4. post-data in parallel: indexes, then primary key / unique /
 *      exclusion / check constraints grouped per table, then foreign keys,
 *      scheduled so that no two statements that both lock a table
 *      exclusively run at once (a partitioned table counts with all its
 *      partitions; a foreign key locks both of its tables; CREATE INDEX
 *      statements on one table may run together);
 *   5. the rest of post-data (triggers, setval, owners, grants, comments,
 *      REFRESH MATERIALIZED VIEW) in order on the engine's connection.
 *   No ANALYZE: as after pg_restore, autovacuum analyzes the loaded tables
 *   (see restore_pg.c).
 *
 * The statements of post-data are classified with libpg_query's parse tree.
 * Any worker's error stops the others (their statements are cancelled).
 */
#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <pg_query.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_pg.h"
#include "restore_pg_int.h"
#include "strbuf.h"
#include "xalloc.h"

#define IO_BLOCK ((size_t)256 << 10)

struct lockkey {
	char *key;     /* the table family's key (see struct roots) */
	int exclusive;
};

/* One unit of work for a worker. */
struct item {
	char *sql;         /* COPY ... FROM STDIN, or the SQL to run */
	char *data;        /* COPY data (NULL: sql is plain SQL) */
	size_t len;
	char *what;        /* for error messages */
	struct lockkey locks[2];
	int nlocks;
};

struct pool;

struct worker {
	struct pool *p;
	PGconn *conn;
	PGcancel *cancel;
	pthread_t thread;
	int started;
	struct item *cur;  /* under p->mu */
};

struct pool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct worker *w;
	int n;
	struct item **q;   /* pending, in order */
	size_t nq, aq;
	size_t bound;      /* pool_push waits while nq >= bound (0: no bound) */
	size_t running;
	int shutdown, failed;
	struct sm_error err; /* the first worker error */
	volatile sig_atomic_t *interrupted; /* a signal handler's flag, or NULL */
};

static void item_free(struct item *it)
{
	if (!it)
		return;
	free(it->sql);
	free(it->data);
	free(it->what);
	for (int i = 0; i < it->nlocks; i++)
		free(it->locks[i].key);
	free(it);
}

static struct item *item_new(char *sql, const char *what)
{
	struct item *it = xcalloc(1, sizeof(*it));

	it->sql = sql;
	it->what = xstrdup(what);
	return it;
}

static void item_lock(struct item *it, const char *key, int exclusive)
{
	if (it->nlocks < 2 && key) {
		it->locks[it->nlocks].key = xstrdup(key);
		it->locks[it->nlocks++].exclusive = exclusive;
	}
}

static int run_item(PGconn *conn, const struct item *it, struct sm_error *err)
{
	PGresult *res;
	int ret = 0;

	if (!it->data)
		return pgr_run_sql(conn, it->sql, it->what, err);
	res = PQexec(conn, it->sql);
	if (PQresultStatus(res) != PGRES_COPY_IN) {
		pgr_error(err, conn, res, it->what);
		PQclear(res);
		while ((res = PQgetResult(conn)))
			PQclear(res);
		return -1;
	}
	PQclear(res);
	if (PQputCopyData(conn, it->data, (int)it->len) != 1 || PQputCopyEnd(conn, NULL) != 1)
		ret = pgr_error(err, conn, NULL, it->what);
	while ((res = PQgetResult(conn))) {
		if (ret == 0 && PQresultStatus(res) != PGRES_COMMAND_OK)
			ret = pgr_error(err, conn, res, it->what);
		PQclear(res);
	}
	return ret;
}

/* Under p->mu: does it conflict with a running item's locks? */
static int conflicts(const struct pool *p, const struct item *it)
{
	for (int w = 0; w < p->n; w++) {
		const struct item *c = p->w[w].cur;

		if (!c)
			continue;
		for (int i = 0; i < it->nlocks; i++)
			for (int j = 0; j < c->nlocks; j++)
				if ((it->locks[i].exclusive || c->locks[j].exclusive) &&
				    !strcmp(it->locks[i].key, c->locks[j].key))
					return 1;
	}
	return 0;
}

/* Under p->mu: the first pending item that can run now, removed from q. */
static struct item *take_runnable(struct pool *p)
{
	for (size_t i = 0; i < p->nq; i++) {
		struct item *it = p->q[i];

		if (conflicts(p, it))
			continue;
		/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
		memmove(p->q + i, p->q + i + 1, (p->nq - i - 1) * sizeof(*p->q));
		p->nq--;
		return it;
	}
	return NULL;
}

/* Under p->mu: records the first failure and cancels the other workers'
 * statements, so that the restore stops soon. */
static void pool_fail(struct pool *p, struct worker *self, const struct sm_error *e)
{
	char buf[256];

	if (p->failed)
		return;
	p->failed = 1;
	p->err = *e;
	for (int i = 0; i < p->n; i++)
		if (&p->w[i] != self && p->w[i].cur && p->w[i].cancel)
			PQcancel(p->w[i].cancel, buf, sizeof(buf));
	pthread_cond_broadcast(&p->cv);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct pool *p = w->p;

	pthread_mutex_lock(&p->mu);
	while (!p->failed) {
		struct item *it = take_runnable(p);
		struct sm_error e = SM_ERROR_INIT;
		int rc;

		if (!it) {
			if (p->shutdown && !p->nq)
				break;
			pthread_cond_wait(&p->cv, &p->mu);
			continue;
		}
		w->cur = it;
		p->running++;
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
		rc = run_item(w->conn, it, &e);
		pthread_mutex_lock(&p->mu);
		if (rc < 0)
			pool_fail(p, w, &e);
		w->cur = NULL;
		p->running--;
		item_free(it);
		pthread_cond_broadcast(&p->cv);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* Waits on the pool's condition (locked) for the reading side, looking at
 * the interrupt flag every 100 ms: the workers may be deep in one long
 * statement (an index build), which only a cancel stops. */
static void pool_sleep(struct pool *p)
{
	struct timespec ts;

	if (!p->interrupted) {
		pthread_cond_wait(&p->cv, &p->mu);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 100000000L; /* 100 ms */
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&p->cv, &p->mu, &ts);
	if (*p->interrupted && !p->failed) {
		struct sm_error e = SM_ERROR_INIT;

		err_set(&e, ERR_INTERRUPTED, "interrupted; the statements running were cancelled");
		pool_fail(p, NULL, &e);
	}
}

/* Queues it (owned), waiting while the queue is full.  -1 once a worker failed. */
static int pool_push(struct pool *p, struct item *it)
{
	int ret = 0;

	pthread_mutex_lock(&p->mu);
	while (!p->failed && p->bound && p->nq >= p->bound)
		pool_sleep(p);
	if (p->failed) {
		ret = -1;
		item_free(it);
	} else {
		/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
		ALLOC_GROW(p->q, p->nq + 1, p->aq);
		p->q[p->nq++] = it;
		pthread_cond_broadcast(&p->cv);
	}
	pthread_mutex_unlock(&p->mu);
	return ret;
}

/* Waits until everything queued has run.  -1 with err once a worker failed. */
static int pool_wait(struct pool *p, struct sm_error *err)
{
	int ret = 0;

	pthread_mutex_lock(&p->mu);
	while (!p->failed && (p->nq || p->running))
		pool_sleep(p);
	if (p->failed) {
		*err = p->err;
		ret = -1;
	}
	pthread_mutex_unlock(&p->mu);
	return ret;
}

/* Stops the pool from the reading side (the snapshot failed), cancelling
 * what runs. */
static void pool_abort(struct pool *p, const struct sm_error *why)
{
	pthread_mutex_lock(&p->mu);
	pool_fail(p, NULL, why);
	pthread_mutex_unlock(&p->mu);
}

static void pool_stop(struct pool *p)
{
	pthread_mutex_lock(&p->mu);
	p->shutdown = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < p->n; i++) {
		if (p->w[i].started)
			pthread_join(p->w[i].thread, NULL);
		if (p->w[i].cancel)
			PQfreeCancel(p->w[i].cancel);
		PQfinish(p->w[i].conn);
	}
	for (size_t i = 0; i < p->nq; i++)
		item_free(p->q[i]);
	free(p->q);
	free(p->w);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
}

/* Connects n workers to the target and starts them. */
static int pool_start(struct pool *p, struct engine *target, int n, long lock_timeout_ms,
		      struct sm_error *err)
{
	memset(p, 0, sizeof(*p));
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->w = xcalloc((size_t)n, sizeof(*p->w));
	p->n = n;
	for (int i = 0; i < n; i++) {
		struct worker *w = &p->w[i];

		w->p = p;
		w->conn = PQconnectdb(target->url.conninfo);
		if (PQstatus(w->conn) != CONNECTION_OK) {
			struct strbuf m = STRBUF_INIT;

			sb_adds(&m, PQerrorMessage(w->conn));
			sb_rtrim(&m);
			err_set(err, ERR_FAIL, "cannot open connection %d of %d (--jobs) to '%s': %s",
				i + 1, n, target->url.redacted, m.buf);
			sb_release(&m);
			return -1;
		}
		if (pgr_session(w->conn, lock_timeout_ms, err) < 0)
			return -1;
		w->cancel = PQgetCancel(w->conn);
	}
	for (int i = 0; i < n; i++) {
		if (pthread_create(&p->w[i].thread, NULL, worker_main, &p->w[i]) != 0)
			return err_sys(err, "cannot start a restore worker thread");
		p->w[i].started = 1;
	}
	return 0;
}

/*
 * Table families: every table of a partition tree locks as its root (ALTER
 * TABLE on a partitioned table recurses into its partitions), keyed by the
 * root's OID.  Read from the target after pre-data.
 */
struct roots {
	PGresult *res; /* nspname, relname, key */
};

static int roots_load(PGconn *conn, struct roots *rt, struct sm_error *err)
{
	rt->res = PQexec(conn,
		"SELECT n.nspname, c.relname, COALESCE(pg_catalog.pg_partition_root(c.oid), "
		"c.oid)::pg_catalog.oid::pg_catalog.text FROM pg_catalog.pg_class c JOIN "
		"pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'm') "
		"AND n.oid IN " PG_USER_NSP);
	if (PQresultStatus(rt->res) != PGRES_TUPLES_OK)
		return pgr_error(err, conn, rt->res, "cannot read the restored tables");
	return 0;
}

/* The lock key of schema.name into *key (the name itself when unknown). */
static void roots_key(const struct roots *rt, const char *schema, const char *name,
		      struct strbuf *key)
{
	sb_reset(key);
	for (int i = 0; i < PQntuples(rt->res); i++)
		if (!strcmp(PQgetvalue(rt->res, i, 1), name) &&
		    !strcmp(PQgetvalue(rt->res, i, 0), schema)) {
			sb_adds(key, PQgetvalue(rt->res, i, 2));
			return;
		}
	sb_addf(key, "%s.%s", schema, name);
}

/* ---- data ----------------------------------------------------------------- */

/* Queues buf[0..len) (taken) as one COPY unit of table t. */
static int push_copy(struct pool *p, const cJSON *t, char *buf, size_t len)
{
	struct strbuf sql = STRBUF_INIT, what = STRBUF_INIT;
	struct item *it;

	sb_addf(&sql, "COPY %s %s FROM STDIN", pgr_str(t, "qualified"), pgr_str(t, "columns"));
	sb_addf(&what, "cannot load table %s", pgr_str(t, "qualified"));
	it = item_new(sb_detach(&sql), what.buf);
	it->data = buf;
	it->len = len;
	sb_release(&what);
	return pool_push(p, it);
}

/* The last '\n' in buf[0..len), or NULL. */
static const char *last_newline(const char *buf, size_t len)
{
	while (len)
		if (buf[--len] == '\n')
			return buf + len;
	return NULL;
}

/* Queues the whole of *buf as one unit of t (if it holds anything). */
static int flush_copy(struct pool *p, const cJSON *t, struct strbuf *buf)
{
	size_t len = buf->len;

	if (!len)
		return 0;
	return push_copy(p, t, sb_detach(buf), len);
}

/* When name is a chunk of a large object's data, writes it into the large
 * object on conn (pre-data created it).  A failure stops the workers. */
static int load_blob_entry(struct pool *p, PGconn *conn, struct snap_reader *r,
			   const cJSON *toc, const char *name, struct sm_error *err)
{
	const cJSON *blob = pgr_blob_of_chunk(toc, name);

	if (blob && pgr_load_blob(conn, r, blob, err) < 0) {
		pool_abort(p, err);
		return -1;
	}
	return 0;
}

/*
 * Reads the data entries (from *ent when pending) and queues them as COPY
 * units of about unit bytes that end on row boundaries.  A reading failure
 * (damage) stops the workers.
 */
static int load_data(struct pool *p, PGconn *conn, struct snap_reader *r, const cJSON *toc,
		     size_t unit, struct snap_entry *ent, int pending, struct sm_error *err)
{
	const cJSON *cur = NULL;
	struct strbuf buf = STRBUF_INIT;
	size_t rows_end = 0; /* buf[0..rows_end) holds whole rows */
	int rc, ret = -1;

	for (rc = pending ? 1 : snap_reader_next(r, ent, err); rc == 1;
	     rc = snap_reader_next(r, ent, err)) {
		const cJSON *t = pgr_table_of_chunk(toc, ent->name);

		if (!t) {
			/* a large object's data: on this connection */
			if (load_blob_entry(p, conn, r, toc, ent->name, err) < 0)
				goto out;
			continue;
		}
		/* a table's chunks follow each other; a row may span two chunks */
		if (t != cur && flush_copy(p, cur, &buf) < 0)
			goto failed;
		if (t != cur)
			rows_end = 0;
		cur = t;
		for (;;) {
			const char *nl;
			size_t got;
			struct strbuf rest = STRBUF_INIT;
			int queued;

			sb_grow(&buf, IO_BLOCK);
			if (snap_reader_read(r, buf.buf + buf.len, IO_BLOCK, &got, err) < 0) {
				pool_abort(p, err);
				goto out;
			}
			if (!got)
				break;
			/* only the new bytes are searched: a huge row stays linear */
			if ((nl = last_newline(buf.buf + buf.len, got)))
				rows_end = (size_t)(nl - buf.buf) + 1;
			sb_setlen(&buf, buf.len + got);
			if (buf.len < unit || !rows_end)
				continue;
			/* the whole rows go; the rest starts the next unit */
			sb_grow(&rest, unit + IO_BLOCK);
			sb_add(&rest, buf.buf + rows_end, buf.len - rows_end);
			sb_setlen(&buf, rows_end);
			queued = flush_copy(p, cur, &buf);
			sb_release(&buf);
			buf = rest;
			rows_end = 0;
			if (queued < 0)
				goto failed;
		}
	}
	if (rc < 0) {
		pool_abort(p, err);
		goto out;
	}
	if (flush_copy(p, cur, &buf) < 0)
		goto failed;
	ret = 0;
	goto out;
failed:
	/* a worker failed: its error is the one to report */
	pool_wait(p, err);
out:
	sb_release(&buf);
	return ret;
}

/* ---- post-data -------------------------------------------------------------- */

struct post_plan {
	struct engine *target;
	const struct roots *roots;
	struct item **indexes, **keys, **fkeys; /* phases, in order */
	size_t nidx, aidx, nkeys, akeys, nfk, afk;
	struct strbuf rest;                      /* everything else, in order */
	struct strbuf key, key2;
	struct strbuf index_sql, attach_sql;     /* split_key's */
};

static const cJSON *jget(const cJSON *o, const char *k)
{
	return cJSON_GetObjectItemCaseSensitive(o, k);
}

/* The lock key of a RangeVar. */
static void rangevar_key(struct post_plan *pp, const cJSON *rv, struct strbuf *key)
{
	const char *schema = pgr_str(rv, "schemaname"), *name = pgr_str(rv, "relname");

	roots_key(pp->roots, schema, name, key);
}

static void what_of(struct strbuf *what, const char *text, size_t len)
{
	sb_adds(what, "cannot restore constraints and indexes (post-data): ");
	if (len > 160) {
		sb_add(what, text, 160);
		sb_adds(what, "...");
	} else {
		sb_add(what, text, len);
	}
}

enum post_kind { OTHER, INDEX, KEY, FOREIGN_KEY };

/*
 * A primary key or unique constraint that can be built as a plain unique
 * index first (CREATE INDEX takes a SHARE lock, so it runs concurrently with
 * the table's other index builds; ADD CONSTRAINT takes ACCESS EXCLUSIVE)
 * and then attached with ADD CONSTRAINT ... USING INDEX, which only
 * renames nothing and marks it: a b-tree on plain columns of a
 * non-partitioned table, without INCLUDE, WITH, tablespace, NULLS NOT
 * DISTINCT or DEFERRABLE.  Fills pp->index_sql and pp->attach_sql.
 */
static int split_key(struct post_plan *pp, const cJSON *alter, const cJSON *con)
{
	static const char *const plain[] = { "including", "options", "indexspace", "indexname",
					     "nulls_not_distinct", "deferrable", "initdeferred",
					     "exclusions", "where_clause", "access_method" };
	PGconn *conn = engine_native(pp->target);
	const cJSON *rel = jget(alter, "relation"), *k;
	const char *type = pgr_str(con, "contype"), *name = pgr_str(con, "conname");
	char *qname, *qs, *qr;

	if ((strcmp(type, "CONSTR_PRIMARY") && strcmp(type, "CONSTR_UNIQUE")) || !*name ||
	    cJSON_IsTrue(jget(rel, "inh")) || !*pgr_str(rel, "schemaname") ||
	    !cJSON_GetArraySize(jget(con, "keys")))
		return 0;
	for (size_t i = 0; i < sizeof(plain) / sizeof(*plain); i++)
		if (jget(con, plain[i]) && !cJSON_IsFalse(jget(con, plain[i])))
			return 0;
	sb_reset(&pp->index_sql);
	sb_reset(&pp->attach_sql);
	qname = PQescapeIdentifier(conn, name, strlen(name));
	qs = PQescapeIdentifier(conn, pgr_str(rel, "schemaname"), strlen(pgr_str(rel, "schemaname")));
	qr = PQescapeIdentifier(conn, pgr_str(rel, "relname"), strlen(pgr_str(rel, "relname")));
	sb_addf(&pp->index_sql, "CREATE UNIQUE INDEX %s ON %s.%s USING btree (", qname, qs, qr);
	cJSON_ArrayForEach(k, jget(con, "keys")) {
		const char *col = pgr_str(jget(k, "String"), "sval");
		char *qc = PQescapeIdentifier(conn, col, strlen(col));

		sb_addf(&pp->index_sql, "%s%s", k == jget(con, "keys")->child ? "" : ", ", qc);
		PQfreemem(qc);
	}
	sb_adds(&pp->index_sql, ")");
	sb_addf(&pp->attach_sql, "ALTER TABLE ONLY %s.%s ADD CONSTRAINT %s %s USING INDEX %s", qs, qr,
		qname, strcmp(type, "CONSTR_PRIMARY") ? "UNIQUE" : "PRIMARY KEY", qname);
	PQfreemem(qname);
	PQfreemem(qs);
	PQfreemem(qr);
	return 1;
}

/*
 * The kind of one post-data statement; fills the lock keys of its table
 * (pp->key) and of a foreign key's referenced table (pp->key2), and for a
 * key that can be split (split_key) sets *split.
 */
static enum post_kind classify(struct post_plan *pp, const char *sql, int *split)
{
	PgQueryParseResult pr;
	cJSON *tree = NULL;
	const cJSON *stmt, *node, *cmd;
	enum post_kind kind = OTHER;

	*split = 0;
	if (!strstr(sql, "INDEX") && !strstr(sql, "ALTER TABLE"))
		return OTHER;
	pr = pg_query_parse(sql);
	if (pr.error || !(tree = cJSON_Parse(pr.parse_tree)))
		goto out;
	stmt = cJSON_GetArrayItem(jget(tree, "stmts"), 0);
	if (cJSON_GetArraySize(jget(tree, "stmts")) != 1 || !(stmt = jget(stmt, "stmt")))
		goto out;
	if ((node = jget(stmt, "IndexStmt"))) {
		rangevar_key(pp, jget(node, "relation"), &pp->key);
		kind = INDEX;
		goto out;
	}
	if (!(node = jget(stmt, "AlterTableStmt")) || cJSON_GetArraySize(jget(node, "cmds")) != 1)
		goto out;
	cmd = jget(cJSON_GetArrayItem(jget(node, "cmds"), 0), "AlterTableCmd");
	if (strcmp(pgr_str(cmd, "subtype"), "AT_AddConstraint") != 0)
		goto out;
	{
		const cJSON *con = jget(jget(cmd, "def"), "Constraint");
		const char *type = pgr_str(con, "contype");

		rangevar_key(pp, jget(node, "relation"), &pp->key);
		if (!strcmp(type, "CONSTR_FOREIGN") && jget(con, "pktable")) {
			rangevar_key(pp, jget(con, "pktable"), &pp->key2);
			kind = FOREIGN_KEY;
		} else if (!strcmp(type, "CONSTR_PRIMARY") || !strcmp(type, "CONSTR_UNIQUE") ||
			   !strcmp(type, "CONSTR_EXCLUSION") || !strcmp(type, "CONSTR_CHECK")) {
			kind = KEY;
			*split = split_key(pp, node, con);
		}
	}
out:
	cJSON_Delete(tree);
	pg_query_free_parse_result(pr);
	return kind;
}

static void add_item(struct item ***arr, size_t *n, size_t *alloc, struct item *it)
{
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
	ALLOC_GROW(*arr, *n + 1, *alloc);
	(*arr)[(*n)++] = it;
}

/* Adds sql to the table's one key item (they all need its ACCESS EXCLUSIVE
 * lock, so they run one after the other anyway). */
static void add_key(struct post_plan *pp, const char *sql, const char *what)
{
	for (size_t i = 0; i < pp->nkeys; i++) {
		struct item *it = pp->keys[i];

		if (!strcmp(it->locks[0].key, pp->key.buf)) {
			struct strbuf all = STRBUF_INIT;

			sb_addf(&all, "%s;\n%s", it->sql, sql);
			free(it->sql);
			it->sql = sb_detach(&all);
			return;
		}
	}
	{
		struct item *it = item_new(xstrdup(sql), what);

		item_lock(it, pp->key.buf, 1);
		add_item(&pp->keys, &pp->nkeys, &pp->akeys, it);
	}
}

static int plan_stmt(void *ud, const char *text, size_t len, int line)
{
	struct post_plan *pp = ud;
	struct strbuf sql = STRBUF_INIT, what = STRBUF_INIT;
	struct item *it;
	enum post_kind kind;
	int split;

	(void)line;
	sb_add(&sql, text, len);
	kind = classify(pp, sql.buf, &split);
	what_of(&what, text, len);
	switch (kind) {
	case OTHER:
		sb_addf(&pp->rest, "%s;\n", sql.buf);
		break;
	case INDEX:
		it = item_new(sb_detach(&sql), what.buf);
		item_lock(it, pp->key.buf, 0);
		add_item(&pp->indexes, &pp->nidx, &pp->aidx, it);
		break;
	case KEY:
		if (!split) {
			add_key(pp, sql.buf, what.buf);
			break;
		}
		add_key(pp, pp->attach_sql.buf, what.buf);
		sb_reset(&what);
		what_of(&what, pp->index_sql.buf, pp->index_sql.len);
		it = item_new(sb_detach(&pp->index_sql), what.buf);
		item_lock(it, pp->key.buf, 0);
		add_item(&pp->indexes, &pp->nidx, &pp->aidx, it);
		break;
	case FOREIGN_KEY:
		it = item_new(sb_detach(&sql), what.buf);
		item_lock(it, pp->key.buf, 1);
		if (strcmp(pp->key.buf, pp->key2.buf) != 0)
			item_lock(it, pp->key2.buf, 1);
		add_item(&pp->fkeys, &pp->nfk, &pp->afk, it);
		break;
	}
	sb_release(&sql);
	sb_release(&what);
	return 0;
}

/* Queues items (taken, the array freed) and waits for them. */
static int run_phase(struct pool *p, struct item **items, size_t n, struct sm_error *err)
{
	size_t i;
	int ret = 0;

	for (i = 0; i < n && ret == 0; i++)
		if (pool_push(p, items[i]) < 0)
			ret = -1;
	for (; i < n; i++)
		item_free(items[i]);
	free(items);
	if (pool_wait(p, err) < 0)
		return -1;
	return ret;
}

static void plan_release(struct post_plan *pp)
{
	for (size_t i = 0; i < pp->nidx; i++)
		item_free(pp->indexes[i]);
	for (size_t i = 0; i < pp->nkeys; i++)
		item_free(pp->keys[i]);
	for (size_t i = 0; i < pp->nfk; i++)
		item_free(pp->fkeys[i]);
	free(pp->indexes);
	free(pp->keys);
	free(pp->fkeys);
	sb_release(&pp->rest);
	sb_release(&pp->key);
	sb_release(&pp->key2);
	sb_release(&pp->index_sql);
	sb_release(&pp->attach_sql);
}

static int post_data(struct pool *p, struct engine *target, const struct roots *rt,
		     const struct pg_meta *m, struct sm_error *err)
{
	struct post_plan pp;
	int ret = -1;

	memset(&pp, 0, sizeof(pp));
	pp.target = target;
	pp.roots = rt;
	pp.rest = (struct strbuf)STRBUF_INIT;
	pp.key = (struct strbuf)STRBUF_INIT;
	pp.key2 = (struct strbuf)STRBUF_INIT;
	pp.index_sql = (struct strbuf)STRBUF_INIT;
	pp.attach_sql = (struct strbuf)STRBUF_INIT;
	if (target->ops->split(m->post.buf, plan_stmt, &pp, err) < 0)
		goto out;
	/* indexes first (those of keys too: see split_key), all at once */
	for (int phase = 0; phase < 3; phase++) {
		struct item ***items = phase == 0 ? &pp.indexes : phase == 1 ? &pp.keys : &pp.fkeys;
		size_t *n = phase == 0 ? &pp.nidx : phase == 1 ? &pp.nkeys : &pp.nfk;
		struct item **taken = *items;
		size_t ntaken = *n;

		*items = NULL;
		*n = 0;
		if (run_phase(p, taken, ntaken, err) < 0)
			goto out;
	}
	sb_grow(&pp.rest, 1);
	if (pgr_run_batched(target, pp.rest.buf, "cannot restore post-data", err) < 0)
		goto out;
	ret = 0;
out:
	plan_release(&pp);
	return ret;
}

int pgr_apply_parallel(struct engine *target, const char *path, int jobs, long lock_timeout_ms,
		       volatile sig_atomic_t *interrupted, struct sm_error *err)
{
	PGconn *conn = engine_native(target);
	struct snap_reader *r = NULL;
	struct pg_meta m = PG_META_INIT;
	struct roots rt = { NULL };
	struct strbuf sql = STRBUF_INIT;
	struct snap_entry ent;
	struct pool p;
	int pending = 0, started = 0, ret = -1;
	/* N units queued, N loading (and in libpq's buffers), one filling */
	size_t unit = ((size_t)4 << 20) / (size_t)jobs;

	if (unit < ((size_t)512 << 10))
		unit = (size_t)512 << 10;
	if (unit > ((size_t)2 << 20))
		unit = (size_t)2 << 20;
	if (snap_reader_open(path, &r, err) < 0)
		goto out;
	snap_reader_set_interrupt(r, interrupted);
	if (pgr_read_meta(r, &m, &ent, &pending, interrupted, err) < 0)
		goto out;
	pgr_drop_schemas_sql(conn, m.toc, &sql);
	if (pgr_run_sql(conn, sql.buf, "cannot drop the schemas to restore", err) < 0 ||
	    pgr_run_batched(target, m.pre.buf, "cannot restore the schema (pre-data)", err) < 0 ||
	    roots_load(conn, &rt, err) < 0)
		goto out;
	if (pool_start(&p, target, jobs, lock_timeout_ms, err) < 0) {
		started = 1;
		goto out;
	}
	started = 1;
	p.interrupted = interrupted;
	p.bound = (size_t)jobs;
	if (load_data(&p, conn, r, m.toc, unit, &ent, pending, err) < 0)
		goto out;
	/* everything was read: check it all before building on it */
	if (snap_reader_finish(r, err) < 0 ||
	    pgr_check_blobs(conn, snap_reader_manifest(r), path, err) < 0) {
		pool_abort(&p, err);
		goto out;
	}
	if (pool_wait(&p, err) < 0)
		goto out;
	p.bound = 0;
	if (post_data(&p, target, &rt, &m, err) < 0)
		goto out;
	ret = 0;
out:
	if (started)
		pool_stop(&p);
	if (ret < 0 && interrupted && *interrupted)
		err->kind = ERR_INTERRUPTED;
	if (ret < 0)
		err_prefix(err, "the parallel restore (--jobs %d) stopped part-way and left the target "
			   "database incomplete (a parallel restore is not atomic: drop it or restore "
			   "again)", jobs);
	PQclear(rt.res);
	pgr_meta_release(&m);
	snap_reader_close(r);
	sb_release(&sql);
	return ret;
}
