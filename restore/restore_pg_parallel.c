/*
 * restore_pg_parallel: restore --to URL --jobs N, the parallel load into a
 * scratch database (like pg_restore -j N).  Not atomic: a failure part-way
 * leaves the target incomplete, and the error says so.
 *
 *   1. pre-data on the engine's connection (transactions of 50 statements);
 *   2. data: this thread reads the snapshot (one zstd stream, so one
 *      reader) and cuts each table's COPY rows into units that end on a row
 *      boundary (a text COPY row always ends with a raw '\n': newlines in
 *      values are escaped; binary tuples are walked, pg_copy.h), whatever
 *      the chunk entries' boundaries are.  N
 *      worker threads, one connection each, load the units with
 *      COPY ... FROM STDIN, several workers into one table if it is big.
 *      The queue holds at most N units, so memory stays bounded;
 *   3. the snapshot is verified (every entry against the manifest, the file
 *      against its sidecar) once all of it was read;
 *   4. post-data in parallel, scheduled from the snapshot's typed table of
 *      contents (pg_archive.h), as pg_restore does: an entry runs once the
 *      entries it depends on (from pg_depend, recorded by the backup) are
 *      done and no running entry holds a lock on one of its tables that
 *      conflicts with its own (PostgreSQL's lock table: CREATE INDEX
 *      statements, SHARE, run together on one table; ADD CONSTRAINT,
 *      ACCESS EXCLUSIVE, alone; a partition counts as its tree's root).
 *      They wait in the order the tables' rows come in, so a table's
 *      foreign key follows its own indexes (post_queue says why).  A
 *      key that the backup marked so is built as a unique index first, with
 *      the table's other indexes, then attached.  These entries are queued
 *      before the data: in a snapshot whose tables' chunks come together
 *      (the toc's data_by_table), an entry starts as soon as every table it
 *      locks has all its rows in, while later tables still load (as
 *      pg_restore starts a table's indexes once its data is done), at most
 *      N - 1 workers at a time while rows wait; otherwise, and for a table
 *      without data of its own (a partitioned one), once all the data is
 *      in and verified (step 3);
 *   5. the entries whose locks are unknown (setval, owners, grants,
 *      comments, REFRESH MATERIALIZED VIEW, publications, event triggers,
 *      ...) and those that need one of them, in order on the engine's
 *      connection (the backup sorted the entries on their dependencies,
 *      so every one comes after what it needs).
 *   A snapshot written before the typed toc runs its post-data script in
 *   order on the engine's connection instead.
 *   No ANALYZE: as after pg_restore, autovacuum analyzes the loaded tables
 *   (see restore_pg.c).
 *
 * No SQL is parsed here: what an entry is and what it locks, the toc says.
 * Any worker's error stops the others (their statements are cancelled).
 */
#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_pg.h"
#include "pg_copy.h"
#include "restore_pg_int.h"
#include "strbuf.h"
#include "xalloc.h"

#define IO_BLOCK ((size_t)256 << 10)

struct lockkey {
	char *key;     /* the table (a partition tree's root) */
	enum pga_lock mode;
};

#define NO_ID SIZE_MAX

/* One unit of work for a worker. */
struct item {
	char *sql;         /* COPY ... FROM STDIN, or the SQL to run */
	char *data;        /* COPY data (NULL: sql is plain SQL) */
	size_t len;
	int binary;        /* data is binary tuples: the header goes first */
	int frozen;        /* a unit of a table loaded in one transaction (tabload) */
	char *what;        /* for error messages */
	struct lockkey locks[PGA_MAX_TABLES];
	int nlocks;
	size_t id;         /* post-data: its index in pool.done; NO_ID for COPY */
	size_t *deps;      /* ids of the items it needs done first */
	size_t ndeps, adeps;
	size_t tab;        /* COPY: its table in pool.tabs (NO_ID: none) */
	/* post-data: the tables (in pool.tabs) whose rows it needs loaded
	 * first; none: it waits for all the data */
	size_t need[PGA_MAX_TABLES];
	int nneed;
};

/* A table's name and its index in pool.tabs. */
struct tabname {
	const char *qualified;
	size_t i;
};

/* A table's load, as the post-data that needs it sees it. */
struct tabload {
	const cJSON *t;        /* the toc's table (borrowed) */
	const char *qualified; /* borrowed from the toc */
	size_t units;          /* its COPY units queued or running */
	int read;              /* the reader has passed its last chunk */
	int pushed;            /* a unit of it was queued (the reader's) */
	/* Loaded in one transaction with FREEZE: BEGIN, TRUNCATE, its units
	 * one after the other on one worker (owner), COMMIT once it is read
	 * and no unit is left (open until then) */
	int frozen;
	int owner;             /* that worker's index, or -1 */
	int open;
	int fk;                /* a foreign key of post-data names it */
};

struct pool;

struct worker {
	struct pool *p;
	int id;            /* its index in p->w */
	PGconn *conn;
	PGcancel *cancel;
	pthread_t thread;
	int started;
	struct item *cur;  /* under p->mu */
	/* under p->mu: the frozen table whose transaction it has open (NO_ID:
	 * none), and whether the unit taken starts it */
	size_t owns;
	int begin;
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
	unsigned char *done; /* post-data: done[id] once item id ran */
	/* the data's progress, which post-data waits for */
	struct tabload *tabs;
	size_t ntabs;
	struct tabname *by_name; /* tabs' names, sorted */
	size_t nq_copy;     /* COPY units in q (pool_push's bound counts these) */
	size_t copies;      /* COPY units queued or running */
	size_t open_tx;     /* frozen tables' transactions not committed yet */
	int post_running;   /* post-data items running */
	int data_done;      /* every row loaded and the snapshot verified */
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
	free(it->deps);
	free(it);
}

static struct item *item_new(char *sql, const char *what)
{
	struct item *it = xcalloc(1, sizeof(*it));

	it->sql = sql;
	it->what = xstrdup(what);
	it->id = NO_ID;
	it->tab = NO_ID;
	return it;
}

static void item_lock(struct item *it, const char *key, enum pga_lock mode)
{
	if (it->nlocks < PGA_MAX_TABLES && key) {
		it->locks[it->nlocks].key = xstrdup(key);
		it->locks[it->nlocks++].mode = mode;
	}
}

static void item_dep(struct item *it, size_t id)
{
	ALLOC_GROW(it->deps, it->ndeps + 1, it->adeps);
	it->deps[it->ndeps++] = id;
}

/* Starts COPY unit it's statement on conn, and its rows' header. */
static int start_copy(PGconn *conn, const struct item *it, struct sm_error *err)
{
	PGresult *res = PQexec(conn, it->sql);

	if (PQresultStatus(res) != PGRES_COPY_IN) {
		pgr_error(err, conn, res, it->what);
		PQclear(res);
		while ((res = PQgetResult(conn)))
			PQclear(res);
		return -1;
	}
	PQclear(res);
	if (pgr_put_copy_header(conn, it->binary) != 1)
		return pgr_error(err, conn, NULL, it->what);
	return 0;
}

/*
 * A unit of frozen table t (struct tabload).  The first (begin) opens the
 * table's transaction and its one COPY ... FREEZE, which needs the table
 * created or truncated in that transaction (TRUNCATE of the empty table
 * pre-data made, which nothing references yet: its foreign keys are
 * post-data's, which waits for its rows); each unit's rows then go into
 * that COPY, which end_frozen ends.
 */
static int copy_frozen(PGconn *conn, const struct tabload *t, const struct item *it, int begin,
		       struct sm_error *err)
{
	if (begin) {
		struct strbuf sql = STRBUF_INIT;
		int ret;

		sb_addf(&sql, "BEGIN; TRUNCATE ONLY %s", t->qualified);
		ret = pgr_run_sql(conn, sql.buf, it->what, err);
		sb_release(&sql);
		if (ret < 0 || start_copy(conn, it, err) < 0)
			return -1;
	}
	if (PQputCopyData(conn, it->data, (int)it->len) != 1)
		return pgr_error(err, conn, NULL, it->what);
	return 0;
}

/* Ends the COPY in progress on conn: unless sending its rows failed
 * already (ret < 0), the trailer of binary rows and the end; then its
 * result.  ret, or -1 with err set (what its prefix). */
static int end_copy(PGconn *conn, int binary, const char *what, int ret, struct sm_error *err)
{
	PGresult *res;

	if (ret == 0 && (pgr_put_copy_trailer(conn, binary) != 1 || PQputCopyEnd(conn, NULL) != 1))
		ret = pgr_error(err, conn, NULL, what);
	while ((res = PQgetResult(conn))) {
		if (ret == 0 && PQresultStatus(res) != PGRES_COMMAND_OK)
			ret = pgr_error(err, conn, res, what);
		PQclear(res);
	}
	return ret;
}

/* Ends frozen table t's COPY (all its units are in) and commits. */
static int end_frozen(PGconn *conn, const struct tabload *t, struct sm_error *err)
{
	struct strbuf what = STRBUF_INIT;
	int ret;

	sb_addf(&what, "cannot load table %s", t->qualified);
	ret = end_copy(conn, pgr_binary(t->t), what.buf, 0, err);
	if (ret == 0)
		ret = pgr_run_sql(conn, "COMMIT", what.buf, err);
	sb_release(&what);
	return ret;
}

static int run_item(PGconn *conn, const struct item *it, struct sm_error *err)
{
	int ret = 0;

	if (!it->data)
		return pgr_run_sql(conn, it->sql, it->what, err);
	if (start_copy(conn, it, err) < 0)
		return -1;
	if (PQputCopyData(conn, it->data, (int)it->len) != 1)
		ret = pgr_error(err, conn, NULL, it->what);
	return end_copy(conn, it->binary, it->what, ret, err);
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
				if (pga_locks_conflict(it->locks[i].mode, c->locks[j].mode) &&
				    !strcmp(it->locks[i].key, c->locks[j].key))
					return 1;
	}
	return 0;
}

/* Under p->mu: has every item it needs run? */
static int deps_done(const struct pool *p, const struct item *it)
{
	for (size_t i = 0; i < it->ndeps; i++)
		if (!p->done || !p->done[it->deps[i]])
			return 0;
	return 1;
}

/* Under p->mu: is every row it needs loaded?  A post-data item that names
 * its tables may start once their rows are in (pg_restore starts a table's
 * indexes while others still load); one that does not, once all are. */
static int data_ready(const struct pool *p, const struct item *it)
{
	if (it->id == NO_ID || p->data_done)
		return 1;
	if (!it->nneed)
		return 0;
	for (int i = 0; i < it->nneed; i++) {
		const struct tabload *t = &p->tabs[it->need[i]];

		if (!t->read || t->units || t->open)
			return 0;
	}
	return 1;
}

/* Under p->mu: the first pending item that can run now, removed from q.
 * While rows wait to be loaded, at most n - 1 workers run post-data, so
 * that the load goes on beside the index builds. */
static struct item *take_runnable(struct pool *p, struct worker *w)
{
	int post_ok = p->data_done || !p->nq_copy || p->post_running < p->n - 1;

	for (size_t i = 0; i < p->nq; i++) {
		struct item *it = p->q[i];

		if (it->id != NO_ID && !post_ok)
			continue;
		/* a frozen table's units go to its owner, which takes nothing
		 * else while its transaction is open */
		if (w->owns != NO_ID && it->tab != w->owns)
			continue;
		if (it->frozen && p->tabs[it->tab].owner >= 0 && p->tabs[it->tab].owner != w->id)
			continue;
		if (!data_ready(p, it) || !deps_done(p, it) || conflicts(p, it))
			continue;
		if (it->frozen && p->tabs[it->tab].owner < 0) {
			p->tabs[it->tab].owner = w->id;
			p->tabs[it->tab].open = 1;
			p->open_tx++;
			w->owns = it->tab;
			w->begin = 1;
		}
		if (it->id == NO_ID)
			p->nq_copy--;
		else
			p->post_running++;
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
		struct item *it;
		struct sm_error e = SM_ERROR_INIT;
		int rc, begin;

		if (w->owns != NO_ID && p->tabs[w->owns].read && !p->tabs[w->owns].units) {
			/* its frozen table is all in: commit, then the post-data
			 * that waits for its rows may start */
			struct tabload *t = &p->tabs[w->owns];

			pthread_mutex_unlock(&p->mu);
			rc = end_frozen(w->conn, t, &e);
			pthread_mutex_lock(&p->mu);
			if (rc < 0) {
				pool_fail(p, w, &e);
				break;
			}
			t->open = 0;
			t->owner = -1;
			p->open_tx--;
			w->owns = NO_ID;
			pthread_cond_broadcast(&p->cv);
			continue;
		}
		it = take_runnable(p, w);
		if (!it) {
			if (p->shutdown && !p->nq)
				break;
			pthread_cond_wait(&p->cv, &p->mu);
			continue;
		}
		w->cur = it;
		begin = w->begin;
		w->begin = 0;
		p->running++;
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
		rc = it->frozen ? copy_frozen(w->conn, &p->tabs[it->tab], it, begin, &e) :
				  run_item(w->conn, it, &e);
		pthread_mutex_lock(&p->mu);
		if (it->id != NO_ID)
			p->post_running--;
		if (it->tab != NO_ID)
			p->tabs[it->tab].units--;
		if (it->data)
			p->copies--;
		if (rc < 0)
			pool_fail(p, w, &e);
		else if (it->id != NO_ID && p->done)
			p->done[it->id] = 1;
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

/* Queues it (owned); a COPY unit waits while p->bound of them are queued.
 * -1 once a worker failed. */
static int pool_push(struct pool *p, struct item *it)
{
	int ret = 0;

	pthread_mutex_lock(&p->mu);
	while (!p->failed && it->id == NO_ID && p->bound && p->nq_copy >= p->bound)
		pool_sleep(p);
	if (p->failed) {
		ret = -1;
		item_free(it);
	} else {
		/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
		ALLOC_GROW(p->q, p->nq + 1, p->aq);
		p->q[p->nq++] = it;
		if (it->id == NO_ID)
			p->nq_copy++;
		if (it->data)
			p->copies++;
		if (it->tab != NO_ID) {
			p->tabs[it->tab].units++;
			p->tabs[it->tab].pushed = 1;
		}
		pthread_cond_broadcast(&p->cv);
	}
	pthread_mutex_unlock(&p->mu);
	return ret;
}

/* Waits until everything queued has run (only_data: every COPY unit).
 * -1 with err once a worker failed. */
static int pool_wait_for(struct pool *p, int only_data, struct sm_error *err)
{
	int ret = 0;

	pthread_mutex_lock(&p->mu);
	while (!p->failed && (only_data ? p->copies > 0 || p->open_tx > 0 : p->nq || p->running))
		pool_sleep(p);
	if (p->failed) {
		*err = p->err;
		ret = -1;
	}
	pthread_mutex_unlock(&p->mu);
	return ret;
}

static int pool_wait(struct pool *p, struct sm_error *err)
{
	return pool_wait_for(p, 0, err);
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
	free(p->done);
	free(p->tabs);
	free(p->by_name);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
}

/* Connects n workers to the target, their sessions in the snapshot's
 * client encoding, and starts them. */
static int pool_start(struct pool *p, struct engine *target, int n, const char *encoding,
		      long lock_timeout_ms, struct sm_error *err)
{
	memset(p, 0, sizeof(*p));
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->w = xcalloc((size_t)n, sizeof(*p->w));
	p->n = n;
	for (int i = 0; i < n; i++) {
		struct worker *w = &p->w[i];

		w->p = p;
		w->id = i;
		w->owns = NO_ID;
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
		if (pgr_session(w->conn, encoding, lock_timeout_ms, err) < 0)
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

/* ---- data ----------------------------------------------------------------- */

/* t's index in p->tabs (NO_ID: not there). */
static size_t tab_index(const struct pool *p, const cJSON *t)
{
	for (size_t i = 0; i < p->ntabs; i++)
		if (p->tabs[i].t == t)
			return i;
	return NO_ID;
}

static int cmp_tab_names(const void *a, const void *b)
{
	return strcmp(((const struct tabname *)a)->qualified, ((const struct tabname *)b)->qualified);
}

/* The index in p->tabs of the table named qualified (NO_ID: none). */
static size_t tab_named(const struct pool *p, const char *qualified)
{
	const struct tabname key = { qualified, 0 };
	const struct tabname *hit = p->ntabs ? bsearch(&key, p->by_name, p->ntabs,
						       sizeof(*p->by_name), cmp_tab_names) : NULL;

	return hit ? hit->i : NO_ID;
}

/*
 * Queues buf[0..len) (taken) as one COPY unit of table t.  more: the
 * table's rows go on past this unit, and the snapshot's tables come whole,
 * one after the other (data_by_table).  A table that a foreign key names
 * and whose first unit is such is loaded frozen (struct tabload): all its
 * units on one worker, in one transaction that truncates it first, as one
 * COPY ... FREEZE, as the one-transaction restore loads every table.  Its
 * pages are then all-visible, so the key's check reads no heap page
 * (pgr_entry_sql): on the narrow bench shape that check took 435 ms with
 * the hash join the server picks for freshly loaded tables and 60 ms
 * with the merge join on index-only scans, and the whole restore --jobs 2
 * 0.79x the time it took loading both tables over both workers (7 paired
 * runs, the target's creation included).  Any other table
 * loads unit by unit over all the workers, each unit in a transaction of
 * its own: a big table without foreign keys (the blobs shape) loads 25%
 * faster so; so do a small table (one unit), every table of an
 * interleaved snapshot (backup --jobs), whose tables' runs of chunks a
 * worker could not wait through, and an extension's configuration table,
 * which pre-data did not make empty.
 */
static int push_copy(struct pool *p, const cJSON *t, char *buf, size_t len, int more)
{
	struct strbuf sql = STRBUF_INIT, what = STRBUF_INIT;
	struct item *it;
	size_t tab = tab_index(p, t);
	int frozen = tab != NO_ID &&
		     (p->tabs[tab].pushed ? p->tabs[tab].frozen :
		      more && p->tabs[tab].fk &&
		      !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(t, "extension_config")));

	pgr_copy_sql(&sql, t, frozen);
	sb_addf(&what, "cannot load table %s", pgr_str(t, "qualified"));
	it = item_new(sb_detach(&sql), what.buf);
	it->data = buf;
	it->len = len;
	it->binary = pgr_binary(t);
	it->tab = tab;
	it->frozen = frozen;
	if (tab != NO_ID && !p->tabs[tab].pushed) {
		pthread_mutex_lock(&p->mu);
		p->tabs[tab].frozen = frozen;
		pthread_mutex_unlock(&p->mu);
	}
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

/* Queues the whole of *buf as one unit of t (if it holds anything); more
 * as push_copy's. */
static int flush_copy(struct pool *p, const cJSON *t, struct strbuf *buf, int more)
{
	size_t len = buf->len;

	if (!len)
		return 0;
	return push_copy(p, t, sb_detach(buf), len, more);
}

/*
 * The reader has moved from table cur to table next (either may be NULL):
 * in a snapshot whose tables' chunks come together (by_table), cur's rows
 * have all been read, which lets the post-data that needs only them start
 * once its units are loaded.  A table whose chunks come back after that is
 * damage (the toc said otherwise); -1 with err then.
 */
static int table_switch(struct pool *p, int by_table, const cJSON *cur, const cJSON *next,
			const char *path, struct sm_error *err)
{
	size_t c = cur ? tab_index(p, cur) : NO_ID, n = next ? tab_index(p, next) : NO_ID;
	int ret = 0;

	if (!by_table)
		return 0;
	pthread_mutex_lock(&p->mu);
	if (c != NO_ID)
		p->tabs[c].read = 1;
	if (n != NO_ID && p->tabs[n].read)
		ret = err_set(err, ERR_DAMAGED, "snapshot '%s' is damaged: the data of table %s "
			      "comes in two runs, but its %s says each table's comes whole", path,
			      p->tabs[n].qualified, PGA_TOC_ENTRY);
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return ret;
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
	int binary = 0;      /* cur's rows are binary tuples */
	int by_table = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(toc, PGA_TOC_DATA_BY_TABLE));
	int rc, ret = -1;

	for (rc = pending ? 1 : snap_reader_next(r, ent, err); rc == 1;
	     rc = snap_reader_next(r, ent, err)) {
		const cJSON *t = pgr_table_of_chunk(toc, ent->name);

		/* a table's chunks follow each other; a row may span two chunks */
		if (t != cur && flush_copy(p, cur, &buf, 0) < 0)
			goto failed;
		if (t != cur) {
			rows_end = 0;
			if (table_switch(p, by_table, cur, t, snap_reader_path(r), err) < 0) {
				pool_abort(p, err);
				goto out;
			}
		}
		cur = t;
		binary = t && pgr_binary(t);
		if (!t) {
			/* a large object's data: on this connection */
			if (load_blob_entry(p, conn, r, toc, ent->name, err) < 0)
				goto out;
			continue;
		}
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
			/* only the new bytes are searched (a binary tuple cut short is
			 * walked again from its start, a step per field): a huge row
			 * stays linear */
			if (!binary && (nl = last_newline(buf.buf + buf.len, got)))
				rows_end = (size_t)(nl - buf.buf) + 1;
			sb_setlen(&buf, buf.len + got);
			if (binary && pgcopy_rows_end(buf.buf, buf.len, &rows_end) < 0) {
				err_set(err, ERR_DAMAGED, "snapshot '%s' is damaged: the rows of table "
					"%s do not have COPY's binary format", snap_reader_path(r),
					pgr_str(cur, "qualified"));
				pool_abort(p, err);
				goto out;
			}
			if (buf.len < unit || !rows_end)
				continue;
			/* the whole rows go; the rest starts the next unit */
			sb_grow(&rest, unit + IO_BLOCK);
			sb_add(&rest, buf.buf + rows_end, buf.len - rows_end);
			sb_setlen(&buf, rows_end);
			queued = flush_copy(p, cur, &buf, by_table);
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
	if (flush_copy(p, cur, &buf, 0) < 0)
		goto failed;
	if (table_switch(p, by_table, cur, NULL, snap_reader_path(r), err) < 0) {
		pool_abort(p, err);
		goto out;
	}
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

/* The kinds of post-data entries that act on the tables they lock and on
 * no other: they may run once those tables' rows are in.  Any other kind
 * waits for all the data: a CHECK constraint added to an inheritance
 * parent (no ONLY) is added to its children too, and a child whose rows
 * were not loaded yet would then refuse the very rows the snapshot holds
 * (a NOT VALID check they break). */
static int acts_on_its_tables(const char *kind)
{
	static const char *const kinds[] = { "INDEX", "CONSTRAINT", "FK CONSTRAINT",
					     "INDEX ATTACH", "INDEX USE", "INDEX STATISTICS",
					     "STATISTICS" };

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (kind && !strcmp(kind, kinds[i]))
			return 1;
	return 0;
}

/* Makes it post-data item number id.  It waits for the rows of the tables
 * e locks, when the data has them all (a partitioned table, whose rows are
 * its partitions', has none) and e acts on them alone: else for all the
 * data. */
static void post_item(const struct pool *p, struct item *it, const struct pga_entry *e,
		      size_t id)
{
	it->id = id;
	for (size_t t = 0; acts_on_its_tables(e->kind) && t < e->ntables && t < PGA_MAX_TABLES;
	     t++) {
		size_t k = tab_named(p, e->tables[t]);

		if (k == NO_ID) {
			it->nneed = 0;
			break;
		}
		it->need[it->nneed++] = k;
	}
}

/* A post-data item's place in the load: the last of its tables in the
 * toc's order (the order their rows come in); one that waits for all the
 * data comes after every table. */
static size_t load_rank(const struct item *it)
{
	size_t r = 0;

	if (!it->nneed)
		return SIZE_MAX;
	for (int i = 0; i < it->nneed; i++)
		if (it->need[i] > r)
			r = it->need[i];
	return r;
}

static int cmp_load_order(const void *a, const void *b)
{
	const struct item *x = *(struct item *const *)a, *y = *(struct item *const *)b;
	size_t rx = load_rank(x), ry = load_rank(y);

	if (rx != ry)
		return rx < ry ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

/*
 * Queues m's typed post-data entries whose locks the toc gives (and that
 * need only such entries), marking them in pooled (m->post_toc.n bytes):
 * the workers run them as their dependencies, locks and rows allow, some
 * while other tables still load.  -1 once a worker failed.
 *
 * They are queued in the order the tables' rows come in (a worker takes
 * the first that can run), not in the toc's: there every index comes
 * before every foreign key, and adding a foreign key takes SHARE ROW
 * EXCLUSIVE on the table it references, so the keys to one table run one
 * at a time.  On 400 small tables that reference one parent, the keys then
 * ran last: 0.3 s on one worker while the other had nothing left to do.
 * Table by table, a table's key comes right after its own indexes (whose
 * SHARE locks it waits for: a key's check reads the referencing column's
 * index when there is one, 60-90 ms against 190-245 ms without on 600,000
 * rows) and runs beside the tables still loading.
 */
static int post_queue(struct pool *p, const struct pg_meta *m, unsigned char *pooled)
{
	static const char what_prefix[] = "cannot restore constraints and indexes (post-data)";
	const struct pga_toc *toc = &m->post_toc;
	size_t *fin = xcalloc(toc->n ? toc->n : 1, sizeof(*fin)), nitems = 0, n = 0, pushed = 0;
	struct strbuf what = STRBUF_INIT;
	struct item **items;
	int ret = -1;

	/* the pooled entries and the ids of their items (a split key: two) */
	for (size_t i = 0; i < toc->n; i++) {
		const struct pga_entry *e = &toc->v[i];

		pooled[i] = e->lock != PGA_LOCK_NONE && e->ntables;
		for (size_t d = 0; d < e->ndeps && pooled[i]; d++)
			pooled[i] = pooled[e->deps[d]];
		if (pooled[i]) {
			nitems += e->index_sql ? 2 : 1;
			fin[i] = nitems - 1;
		}
	}
	pthread_mutex_lock(&p->mu);
	p->done = xcalloc(nitems ? nitems : 1, 1);
	pthread_mutex_unlock(&p->mu);
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
	items = xcalloc(nitems ? nitems : 1, sizeof(*items));
	for (size_t i = 0; i < toc->n; i++) {
		const struct pga_entry *e = &toc->v[i];
		struct item *it;

		if (!pooled[i])
			continue;
		sb_reset(&what);
		if (e->index_sql) {
			/* the key's index, with the table's other index builds */
			sb_addf(&what, "%s: INDEX of %s %s", what_prefix, e->kind, e->name);
			it = item_new(xstrdup(e->index_sql), what.buf);
			item_lock(it, e->tables[0], PGA_LOCK_SHARE);
			for (size_t d = 0; d < e->ndeps; d++)
				item_dep(it, fin[e->deps[d]]);
			post_item(p, it, e, fin[i] - 1);
			items[n++] = it;
			sb_reset(&what);
			sb_addf(&what, "%s: %s %s", what_prefix, e->kind, e->name);
			it = item_new(xstrdup(e->attach_sql), what.buf);
			item_dep(it, fin[i] - 1);
		} else {
			struct strbuf sql = STRBUF_INIT;

			sb_addf(&what, "%s: %s %s", what_prefix, e->kind, e->name);
			/* a snapshot whose tables come whole loads its big ones
			 * frozen (push_copy) */
			pgr_entry_sql(&sql, m, e,
				      cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
					      m->toc, PGA_TOC_DATA_BY_TABLE)));
			it = item_new(sb_detach(&sql), what.buf);
		}
		for (size_t t = 0; t < e->ntables; t++)
			item_lock(it, e->tables[t], e->lock);
		for (size_t d = 0; d < e->ndeps; d++)
			item_dep(it, fin[e->deps[d]]);
		post_item(p, it, e, fin[i]);
		items[n++] = it;
	}
	/* in the order the rows come in (a table's entries as soon as its rows
	 * may be in), and in the toc's order for one table */
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
	qsort(items, n, sizeof(*items), cmp_load_order);
	for (; pushed < n; pushed++)
		if (pool_push(p, items[pushed]) < 0) {
			pushed++;
			goto out;
		}
	ret = 0;
out:
	for (; pushed < n; pushed++)
		item_free(items[pushed]);
	free(items);
	sb_release(&what);
	free(fin);
	return ret;
}

/* The rows are all in and verified: the post-data that waited for them
 * runs, then (pooled: what post_queue queued) the rest in order on the
 * engine's connection. */
static int post_data(struct pool *p, struct engine *target, const struct pg_meta *m,
		     const unsigned char *pooled, struct sm_error *err)
{
	pthread_mutex_lock(&p->mu);
	p->data_done = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	if (pool_wait(p, err) < 0)
		return -1;
	/* a snapshot written before the typed toc: its script, in order */
	if (!m->post_toc.n)
		return pgr_run_batched(target, m->post.buf, "cannot restore post-data", err);
	return pgr_run_entries(engine_native(target), m, pooled,
			       "cannot restore constraints and indexes (post-data)", err);
}

/* p->tabs: the toc's tables, whose loads post-data waits for (and which
 * of them m's foreign keys name). */
static void pool_tables(struct pool *p, const cJSON *toc, const struct pg_meta *m)
{
	const cJSON *t;
	size_t n = (size_t)cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(toc, "tables"));

	pthread_mutex_lock(&p->mu);
	p->tabs = xcalloc(n ? n : 1, sizeof(*p->tabs));
	cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(toc, "tables")) {
		if (p->ntabs == n)
			break;
		p->tabs[p->ntabs].t = t;
		p->tabs[p->ntabs].owner = -1;
		p->tabs[p->ntabs++].qualified = pgr_str(t, "qualified");
	}
	p->by_name = xcalloc(n ? n : 1, sizeof(*p->by_name));
	for (size_t i = 0; i < p->ntabs; i++)
		p->by_name[i] = (struct tabname){ p->tabs[i].qualified, i };
	qsort(p->by_name, p->ntabs, sizeof(*p->by_name), cmp_tab_names);
	for (size_t i = 0; i < m->post_toc.n; i++) {
		const struct pga_entry *e = &m->post_toc.v[i];

		for (size_t k = 0; !strcmp(e->kind, "FK CONSTRAINT") && k < e->ntables; k++) {
			size_t tab = tab_named(p, e->tables[k]);

			if (tab != NO_ID)
				p->tabs[tab].fk = 1;
		}
	}
	pthread_mutex_unlock(&p->mu);
}

int pgr_apply_parallel(struct engine *target, const char *path, int jobs, long lock_timeout_ms,
		       volatile sig_atomic_t *interrupted, struct sm_error *err)
{
	PGconn *conn = engine_native(target);
	struct snap_reader *r = NULL;
	struct pg_meta m = PG_META_INIT;
	struct strbuf sql = STRBUF_INIT;
	struct snap_entry ent;
	struct pool p;
	unsigned char *pooled = NULL;
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
	if (pgr_read_meta(r, &m, &ent, &pending, interrupted, err) < 0 ||
	    pgr_session(conn, m.encoding, lock_timeout_ms, err) < 0)
		goto out;
	pgr_drop_schemas_sql(conn, m.toc, &sql);
	if (pgr_run_sql(conn, sql.buf, "cannot drop the schemas to restore", err) < 0 ||
	    pgr_run_batched(target, m.pre.buf, "cannot restore the schema (pre-data)", err) < 0)
		goto out;
	if (pool_start(&p, target, jobs, m.encoding, lock_timeout_ms, err) < 0) {
		started = 1;
		goto out;
	}
	started = 1;
	p.interrupted = interrupted;
	p.bound = (size_t)jobs;
	pool_tables(&p, m.toc, &m);
	pooled = xcalloc(m.post_toc.n ? m.post_toc.n : 1, 1);
	if (post_queue(&p, &m, pooled) < 0) {
		pool_wait(&p, err);
		goto out;
	}
	if (load_data(&p, conn, r, m.toc, unit, &ent, pending, err) < 0)
		goto out;
	/* everything was read: check it all (the file was checked against its
	 * sidecar before the load: pg_load) before what waits for all of it */
	if (snap_reader_finish(r, err) < 0 ||
	    pgr_check_blobs(conn, snap_reader_manifest(r), path, err) < 0) {
		pool_abort(&p, err);
		goto out;
	}
	if (pool_wait_for(&p, 1, err) < 0 || post_data(&p, target, &m, pooled, err) < 0)
		goto out;
	ret = 0;
out:
	if (started)
		pool_stop(&p);
	if (ret < 0 && interrupted && *interrupted)
		err->kind = ERR_INTERRUPTED;
	if (ret < 0)
		pgr_encoding_hint(conn, m.encoding, err);
	if (ret < 0)
		err_prefix(err, "the parallel restore (--jobs %d) stopped part-way and left the target "
			   "database incomplete (a parallel restore is not atomic: drop it or restore "
			   "again)", jobs);
	pgr_meta_release(&m);
	snap_reader_close(r);
	sb_release(&sql);
	free(pooled);
	return ret;
}
