/*
 * backup_pg_parallel: backup --jobs N for PostgreSQL, the tables' rows
 * copied over N connections into the one snapshot archive (pg_dump -j's
 * idea; pg_dump needs its directory format for it).
 *
 * pg_take's transaction (REPEATABLE READ, every table locked, the catalogs
 * read) exports its snapshot (pg_export_snapshot()); each worker
 * connection opens a REPEATABLE READ transaction on that very snapshot
 * (SET TRANSACTION SNAPSHOT) with the same session settings
 * (pgcat_session, in the dump's client encoding), so the N connections
 * read exactly the rows the one-connection backup reads, in the same text
 * form.
 *
 * The units of work are tables, largest first; a big table is split into
 * ctid page ranges (a TID range scan each, PostgreSQL 14+), so that one
 * huge table also keeps N connections busy.  N worker threads, one per
 * connection, run one COPY ... TO STDOUT at a time and cut its rows into
 * pieces of about PIECE_SIZE that end on a row boundary.  The calling
 * thread is the only one that touches the snapshot writer (which is
 * single-threaded): it writes each piece as the next chunk entries of its
 * table's data entry, so the chunks of different tables interleave and a
 * switch from one table's chunks to another's always falls on a row
 * boundary (docs/snapshot-format.md).  At most N pieces wait between the
 * workers and the writer: memory stays bounded (about 2N + 1 pieces).
 *
 * A table's row count and content checksum are the sums over its units
 * (hash_sum_add is a sum mod 2^256, hash_sum_merge adds two), so they are
 * the one-connection backup's whatever the split.  The first failure (a
 * worker's COPY, a lost connection, the writer's disk, an interrupt)
 * cancels the other workers' statements and fails the whole copy; the
 * caller then publishes nothing.
 */
#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backup_pg_int.h"
#include "pg_archive.h"
#include "strbuf.h"
#include "xalloc.h"

/* What a worker hands the writer at once: whole rows, about one chunk of
 * the one-connection backup (so as many entries: the manifest lists each,
 * and a reader holds the manifest in memory, at most SNAP_SMALL_MAX). */
#define PIECE_SIZE SNAP_STREAM_CHUNK
/* A table is split into ranges of at least this many bytes of its heap. */
#define RANGE_MIN_BYTES (1LL << 20)
/* How long a worker waits for a table's ACCESS SHARE lock, as the leader
 * did for all of them (pgdump_catalog.c's lock_tables).  The leader holds
 * them, so a worker waits only behind another session queued for an
 * exclusive lock, which itself waits for the leader: without a timeout,
 * a deadlock the server cannot see (pg_dump's workers use NOWAIT). */
#define WORKER_LOCK_TIMEOUT_MS 10000
/* The workers' application_name (pg_stat_activity). */
#define WORKER_APP "safe-migrate backup --jobs"

struct unit {
	size_t table;      /* index in d->tables */
	int ranged;        /* copy only range */
	struct pgb_range range;
	long long bytes;   /* the scheduling weight */
};

/* Whole rows of one table, from a worker to the writer. */
struct piece {
	size_t table;
	char *data;
	size_t len, cap;
	struct piece *next;
};

struct par;

struct worker {
	struct par *p;
	PGconn *conn;
	PGcancel *cancel;
	pthread_t thread;
	int started;
};

struct par {
	const struct pgcat_dump *d;
	pthread_mutex_t mu;
	pthread_cond_t cv;     /* any change below */
	struct unit *units;
	size_t nunits, next_unit;
	struct piece *head, *tail; /* written in this order */
	size_t queued, bound;
	char **spare;          /* PIECE_SIZE buffers to reuse */
	size_t nspare, spare_max;
	int running;           /* workers that have not finished */
	int stop;              /* every worker stops: a failure or an interrupt */
	int failed;            /* a worker failed: err is why */
	struct sm_error err;
	long long *rows;       /* per table, under mu */
	unsigned char (*sums)[HASH_LEN];
	struct worker *w;
	int n;
};

static void ignore_notice(void *arg, const char *message)
{
	(void)arg; /* library code never prints */
	(void)message;
}

/* A worker's empty PIECE_SIZE buffer. */
static char *get_buf(struct par *p)
{
	char *b = NULL;

	pthread_mutex_lock(&p->mu);
	if (p->nspare)
		b = p->spare[--p->nspare];
	pthread_mutex_unlock(&p->mu);
	return b ? b : xmalloc(PIECE_SIZE);
}

/* Under mu: keeps a written piece's buffer for reuse (fresh allocations
 * cost a page fault per 4 KiB each time), or frees it. */
static void put_buf(struct par *p, char *data, size_t cap)
{
	if (data && cap == PIECE_SIZE && p->nspare < p->spare_max)
		p->spare[p->nspare++] = data;
	else
		free(data);
}

/* Queues a piece for the writer, waiting while the queue is full.  Takes
 * data in every case; -1 once everyone is to stop. */
static int push_piece(struct par *p, size_t table, char *data, size_t len, size_t cap)
{
	struct piece *pc;

	pthread_mutex_lock(&p->mu);
	while (p->queued >= p->bound && !p->stop)
		pthread_cond_wait(&p->cv, &p->mu);
	if (p->stop) {
		put_buf(p, data, cap);
		pthread_mutex_unlock(&p->mu);
		return -1;
	}
	pc = xcalloc(1, sizeof(*pc));
	*pc = (struct piece){ table, data, len, cap, NULL };
	if (p->tail)
		p->tail->next = pc;
	else
		p->head = pc;
	p->tail = pc;
	p->queued++;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return 0;
}

/*
 * Copies unit u on wk's connection into pieces and adds its rows and
 * checksum to its table's.  0 when done, 1 when told to stop (then its
 * statement is cancelled and its rows are not counted), -1 with err when
 * the COPY failed.
 */
static int copy_unit(struct worker *wk, const struct unit *u, struct sm_error *err)
{
	struct par *p = wk->p;
	const struct pgcat_table *t = &p->d->tables[u->table];
	unsigned char sum[HASH_LEN] = { 0 };
	struct hash_summer hs = HASH_SUMMER_INIT;
	struct pgcopy_out po = PGCOPY_OUT_INIT(t->binary);
	long long rows = 0;
	char *buf = NULL, *row = NULL, ebuf[256];
	size_t len = 0, cap = 0;
	int n, stopped = 0, malformed = 0, ret = 0;
	PGresult *res;

	if (pgb_start_copy(wk->conn, t, u->ranged ? &u->range : NULL, "cannot copy table",
			   err) < 0)
		return -1;
	hash_summer_init(&hs);
	while ((n = PQgetCopyData(wk->conn, &row, 0)) >= 0) {
		const char *data = row;
		size_t rl = (size_t)n;
		/* each range's COPY has its binary header and trailer: the
		 * snapshot keeps neither (pg_copy.h) */
		int kind = stopped ? 0 : pgb_copy_row(&po, t->qualified, &data, &rl, err);

		if (kind < 0) {
			malformed = stopped = 1;
			if (wk->cancel)
				PQcancel(wk->cancel, ebuf, sizeof(ebuf));
		}
		if (kind <= 0) {
			PQfreemem(row);
			row = NULL;
			continue;
		}
		/* a piece ends before the row that would overflow it */
		if (!stopped && len && len + rl > cap) {
			stopped = push_piece(p, u->table, buf, len, cap) < 0;
			buf = NULL;
			len = cap = 0;
			/* the rest of the COPY is not wanted: the server stops */
			if (stopped && wk->cancel)
				PQcancel(wk->cancel, ebuf, sizeof(ebuf));
		}
		if (!stopped) {
			if (!buf) {
				cap = rl > PIECE_SIZE ? rl : PIECE_SIZE;
				buf = cap == PIECE_SIZE ? get_buf(p) : xmalloc(cap);
			}
			memcpy(buf + len, data, rl);
			len += rl;
			rows++;
			hash_summer_add(&hs, sum, data, rl);
		}
		PQfreemem(row);
		row = NULL;
	}
	hash_summer_release(&hs);
	res = PQgetResult(wk->conn);
	if (!stopped && PQresultStatus(res) != PGRES_COMMAND_OK) {
		pgcat_pq_error(err, wk->conn, res, "cannot copy table");
		err_prefix(err, "%s", t->qualified);
		ret = -1;
	}
	PQclear(res);
	while ((res = PQgetResult(wk->conn)))
		PQclear(res);
	if (ret == 0 && !stopped && len) {
		stopped = push_piece(p, u->table, buf, len, cap) < 0;
		buf = NULL;
	}
	free(buf);
	if (ret < 0 || malformed)
		return -1;
	if (stopped)
		return 1;
	pthread_mutex_lock(&p->mu);
	p->rows[u->table] += rows;
	hash_sum_merge(p->sums[u->table], sum);
	pthread_mutex_unlock(&p->mu);
	return 0;
}

static void *worker_main(void *arg)
{
	struct worker *wk = arg;
	struct par *p = wk->p;
	struct sm_error err = SM_ERROR_INIT;

	for (;;) {
		const struct unit *u = NULL;
		int rc;

		pthread_mutex_lock(&p->mu);
		if (!p->stop && p->next_unit < p->nunits)
			u = &p->units[p->next_unit++];
		pthread_mutex_unlock(&p->mu);
		if (!u)
			break;
		rc = copy_unit(wk, u, &err);
		if (rc < 0) {
			/* the first failure is the one to report: a statement
			 * cancelled because everyone stops is not a failure */
			pthread_mutex_lock(&p->mu);
			if (!p->stop) {
				p->failed = 1;
				p->err = err;
				p->stop = 1;
			}
			pthread_cond_broadcast(&p->cv);
			pthread_mutex_unlock(&p->mu);
		}
		if (rc != 0)
			break;
	}
	pthread_mutex_lock(&p->mu);
	p->running--;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* Tells every worker to stop and cancels their statements. */
static void stop_workers(struct par *p)
{
	char ebuf[256];

	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < p->n; i++)
		if (p->w[i].cancel)
			PQcancel(p->w[i].cancel, ebuf, sizeof(ebuf));
}

/* Connects worker i of n and opens its transaction on the exported
 * snapshot (snap_lit, an SQL literal), with the leader's settings. */
static int worker_connect(struct worker *wk, const char *conninfo, const char *redacted,
			  const char *snap_lit, int i, int n, struct sm_error *err)
{
	/* as the engine's own connection (engine_pg.c's pg_open) */
	const char *keys[4], *vals[4];
	struct strbuf sql = STRBUF_INIT;
	PGresult *res;
	int k = 0, ret = -1;

	if (!getenv("PGCONNECT_TIMEOUT")) {
		keys[k] = "connect_timeout";
		vals[k++] = "10";
	}
	keys[k] = "dbname";
	vals[k++] = conninfo;
	keys[k] = "application_name";
	vals[k++] = WORKER_APP;
	keys[k] = NULL;
	vals[k] = NULL;
	wk->conn = PQconnectdbParams(keys, vals, 1);
	if (!wk->conn || PQstatus(wk->conn) != CONNECTION_OK) {
		struct strbuf m = STRBUF_INIT;

		sb_adds(&m, wk->conn ? PQerrorMessage(wk->conn) : "out of memory");
		sb_rtrim(&m);
		err_set(err, ERR_FAIL, "cannot open connection %d of %d (--jobs) to '%s': %s", i + 1,
			n, redacted, m.buf);
		sb_release(&m);
		return -1;
	}
	PQsetNoticeProcessor(wk->conn, ignore_notice, NULL);
	/* SET TRANSACTION SNAPSHOT must come before the first query; the
	 * leader's client encoding, so that the rows are the same bytes */
	sb_addf(&sql, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT %s; ",
		snap_lit);
	pgcat_session(&sql, wk->p->d->encoding);
	sb_addf(&sql, " SET LOCAL lock_timeout = %d", WORKER_LOCK_TIMEOUT_MS);
	res = PQexec(wk->conn, sql.buf);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		pgcat_pq_error(err, wk->conn, res, "cannot open a --jobs connection on the snapshot");
	} else {
		wk->cancel = PQgetCancel(wk->conn);
		ret = 0;
	}
	PQclear(res);
	sb_release(&sql);
	return ret;
}

/* The exported snapshot of leader's transaction, as an SQL literal (caller
 * frees with PQfreemem), or NULL with err. */
static char *export_snapshot(PGconn *leader, struct sm_error *err)
{
	PGresult *res = PQexec(leader, "SELECT pg_catalog.pg_export_snapshot()");
	char *lit = NULL;

	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		pgcat_pq_error(err, leader, res, "cannot export the snapshot for --jobs");
	else if (!(lit = PQescapeLiteral(leader, PQgetvalue(res, 0, 0),
					 strlen(PQgetvalue(res, 0, 0)))))
		pgcat_pq_error(err, leader, NULL, "cannot export the snapshot for --jobs");
	PQclear(res);
	return lit;
}

static int unit_cmp(const void *a, const void *b)
{
	const struct unit *x = a, *y = b;

	if (x->bytes != y->bytes)
		return x->bytes > y->bytes ? -1 : 1;
	if (x->table != y->table)
		return x->table < y->table ? -1 : 1;
	return (x->range.from > y->range.from) - (x->range.from < y->range.from);
}

/* A table can be read by ctid ranges: a plain table with a column list
 * (its rows are the user's, not an extension's selection), on a server
 * with TID range scans (without them each range would scan it all). */
static int splittable(PGconn *leader, const struct pgcat_table *t)
{
	return PQserverVersion(leader) >= 140000 && !t->filter && t->columns[0];
}

/* Splits every table into units (largest first), the big ones into up to
 * jobs ctid ranges of at least RANGE_MIN_BYTES of heap each. */
static int plan_units(PGconn *leader, struct par *p, int jobs, cJSON *ranges,
		      struct sm_error *err)
{
	const struct pgcat_dump *d = p->d;
	struct strbuf sql = STRBUF_INIT;
	PGresult *res = NULL;
	size_t i;
	int ret = -1;

	p->units = xcalloc(d->ntables * (size_t)jobs + 1, sizeof(*p->units));
	if (!d->ntables)
		return 0;
	/* under the leader's locks: sizes of the files as they are, a bound on
	 * the pages that hold the snapshot's rows (the last range is open) */
	sb_adds(&sql, "SELECT pg_catalog.pg_relation_size(u.r), pg_catalog.pg_table_size(u.r), "
		"pg_catalog.current_setting('block_size')::pg_catalog.int8 "
		"FROM pg_catalog.unnest(ARRAY[");
	for (i = 0; i < d->ntables; i++) {
		char *lit = PQescapeLiteral(leader, d->tables[i].qualified,
					    strlen(d->tables[i].qualified));

		if (!lit) {
			pgcat_pq_error(err, leader, NULL, "cannot read the tables' sizes");
			goto out;
		}
		sb_addf(&sql, "%s%s", i ? ", " : "", lit);
		PQfreemem(lit);
	}
	sb_adds(&sql, "]::pg_catalog.regclass[]) WITH ORDINALITY AS u(r, i) ORDER BY u.i");
	res = PQexec(leader, sql.buf);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || (size_t)PQntuples(res) != d->ntables) {
		pgcat_pq_error(err, leader, res, "cannot read the tables' sizes");
		goto out;
	}
	for (i = 0; i < d->ntables; i++) {
		long long heap = strtoll(PQgetvalue(res, (int)i, 0), NULL, 10);
		long long total = strtoll(PQgetvalue(res, (int)i, 1), NULL, 10);
		long long block = strtoll(PQgetvalue(res, (int)i, 2), NULL, 10);
		long long k = heap / RANGE_MIN_BYTES, pages, per;

		if (k > jobs)
			k = jobs;
		if (k < 2 || block <= 0 || !splittable(leader, &d->tables[i])) {
			p->units[p->nunits++] = (struct unit){ i, 0, { 0, -1 }, total };
			continue;
		}
		pages = heap / block;
		per = (pages + k - 1) / k;
		for (long long r = 0; r < k; r++)
			p->units[p->nunits++] = (struct unit){
				i, 1, { r * per, r == k - 1 ? -1 : (r + 1) * per }, total / k };
		if (ranges)
			cJSON_AddNumberToObject(ranges, d->tables[i].qualified, (double)k);
	}
	qsort(p->units, p->nunits, sizeof(*p->units), unit_cmp);
	ret = 0;
out:
	PQclear(res);
	sb_release(&sql);
	return ret;
}

/* Writes piece pc as the next chunk entries of its table (next: each
 * table's next chunk index). */
static int write_piece(struct snap_writer *w, unsigned *next, const struct piece *pc,
		       struct strbuf *name, struct sm_error *err)
{
	struct strbuf tbl = STRBUF_INIT;
	size_t off = 0;
	int ret = 0;

	pga_data_entry(&tbl, pc->table);
	do {
		size_t n = pc->len - off < SNAP_STREAM_CHUNK ? pc->len - off : SNAP_STREAM_CHUNK;

		sb_reset(name);
		snap_chunk_name(name, tbl.buf, next[pc->table]++);
		if (snap_add_entry_buf(w, name->buf, pc->data + off, n, err) < 0) {
			ret = -1;
			break;
		}
		off += n;
	} while (off < pc->len);
	sb_release(&tbl);
	return ret;
}

/* Waits on p->cv (locked) for at most 100 ms: the interrupt flag is a
 * signal handler's, which no condition variable hears. */
static void wait_a_while(struct par *p)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 100000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&p->cv, &p->mu, &ts);
}

/* The writer's side: writes the workers' pieces as they come, until all
 * are done (0) or anything failed (-1 with err). */
static int write_pieces(struct par *p, struct snap_writer *w, unsigned *next,
			volatile sig_atomic_t *interrupted, struct sm_error *err)
{
	struct strbuf name = STRBUF_INIT;
	int ret = -1;

	for (;;) {
		struct piece *pc = NULL;
		int done = 0, rc;

		pthread_mutex_lock(&p->mu);
		while (!p->head && p->running && !p->stop && !(interrupted && *interrupted))
			wait_a_while(p);
		if (p->failed) {
			*err = p->err;
		} else if (interrupted && *interrupted) {
			err_set(err, ERR_INTERRUPTED, "interrupted; no snapshot was written");
		} else if (p->head) {
			pc = p->head;
			p->head = pc->next;
			if (!p->head)
				p->tail = NULL;
			p->queued--;
			pthread_cond_broadcast(&p->cv);
		} else {
			done = 1;
		}
		pthread_mutex_unlock(&p->mu);
		if (done)
			break;
		if (!pc)
			goto out;
		rc = write_piece(w, next, pc, &name, err);
		pthread_mutex_lock(&p->mu);
		put_buf(p, pc->data, pc->cap);
		pthread_mutex_unlock(&p->mu);
		free(pc);
		if (rc < 0)
			goto out;
	}
	ret = 0;
out:
	sb_release(&name);
	return ret;
}

int pgb_copy_parallel(PGconn *leader, const char *conninfo, const char *redacted,
		      struct snap_writer *w, const struct pgcat_dump *d, int jobs,
		      volatile sig_atomic_t *interrupted, long long *rows,
		      unsigned char (*sums)[HASH_LEN], cJSON *ranges, struct sm_error *err)
{
	struct par p;
	struct strbuf name = STRBUF_INIT, tbl = STRBUF_INIT;
	unsigned *next = xcalloc(d->ntables + 1, sizeof(*next));
	char *snap = NULL;
	size_t i;
	int started = 0, ret = -1;

	memset(&p, 0, sizeof(p));
	pthread_mutex_init(&p.mu, NULL);
	pthread_cond_init(&p.cv, NULL);
	p.d = d;
	p.rows = rows;
	p.sums = sums;
	p.bound = (size_t)jobs;
	p.spare_max = 2 * (size_t)jobs + 1;
	p.spare = xcalloc(p.spare_max, sizeof(*p.spare));
	p.w = xcalloc((size_t)jobs, sizeof(*p.w));
	if (!(snap = export_snapshot(leader, err)) || plan_units(leader, &p, jobs, ranges, err) < 0)
		goto out;
	/* no more connections than units: a small database needs few */
	p.n = p.nunits < (size_t)jobs ? (int)p.nunits : jobs;
	for (int k = 0; k < p.n; k++) {
		p.w[k].p = &p;
		if (worker_connect(&p.w[k], conninfo, redacted, snap, k, p.n, err) < 0)
			goto out;
	}
	for (int k = 0; k < p.n; k++) {
		pthread_mutex_lock(&p.mu);
		p.running++;
		pthread_mutex_unlock(&p.mu);
		if (pthread_create(&p.w[k].thread, NULL, worker_main, &p.w[k]) != 0) {
			pthread_mutex_lock(&p.mu);
			p.running--;
			pthread_mutex_unlock(&p.mu);
			err_sys(err, "cannot start a backup worker thread");
			goto out;
		}
		p.w[k].started = 1;
		started = 1;
	}
	if (write_pieces(&p, w, next, interrupted, err) < 0)
		goto out;
	/* a table without rows is one empty chunk, as in the one-connection
	 * backup */
	for (i = 0; i < d->ntables; i++) {
		if (next[i])
			continue;
		pga_data_entry(&tbl, i);
		sb_reset(&name);
		snap_chunk_name(&name, tbl.buf, 0);
		if (snap_add_entry_buf(w, name.buf, "", 0, err) < 0)
			goto out;
	}
	/* the leader's session holds the tables' locks: had it gone, a table
	 * could have been altered before a worker copied it */
	{
		PGresult *res = PQexec(leader, "SELECT 1");

		if (PQresultStatus(res) != PGRES_TUPLES_OK)
			pgcat_pq_error(err, leader, res, "lost the snapshot's session");
		else
			ret = 0;
		PQclear(res);
	}
out:
	if (ret < 0 && started)
		stop_workers(&p);
	for (int k = 0; k < p.n; k++)
		if (p.w[k].started)
			pthread_join(p.w[k].thread, NULL);
	for (int k = 0; k < p.n; k++) {
		PQfreeCancel(p.w[k].cancel);
		PQfinish(p.w[k].conn);
	}
	while (p.head) {
		struct piece *pc = p.head;

		p.head = pc->next;
		free(pc->data);
		free(pc);
	}
	for (i = 0; i < p.nspare; i++)
		free(p.spare[i]);
	free(p.spare);
	free(p.w);
	free(p.units);
	free(next);
	PQfreemem(snap);
	sb_release(&name);
	sb_release(&tbl);
	pthread_mutex_destroy(&p.mu);
	pthread_cond_destroy(&p.cv);
	return ret;
}
