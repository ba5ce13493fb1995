/*
 * backup_pg: the PostgreSQL driver of backup, our pg_dump.
 *
 * Everything is read in one REPEATABLE READ, READ ONLY transaction, so the
 * schema and every table's rows come from one consistent snapshot of the
 * database.  pgdump_catalog.c rebuilds the DDL; this file writes the
 * snapshot's PostgreSQL entries, in the order restore_pg reads them (the
 * layout is pg_archive.h's): the table of contents (with post-data's typed
 * entries), pre-data, post-data, then one COPY ... TO STDOUT stream per
 * table, in chunk entries of at most SNAP_CHUNK_MAX bytes, then the data
 * of each large object (lo_read), chunked the same way.
 *
 * A table whose columns are all of built-in types (pgcat_table.binary) is
 * copied in COPY's binary format, the others as text: the server writes
 * binary 30-40% faster and reads it back (the restore's COPY FROM) up to
 * twice as fast, as it formats and parses no numbers, dates or escapes.
 * Its tuples are stored without the format's header and trailer
 * (pg_copy.h), so that the ranges of backup --jobs and the units of a
 * parallel restore need no stitching.
 *
 * Memory stays bounded (a few 1 MiB blocks between the COPY reader thread
 * and the writer, plus the writer's chunk).  Row counts (one
 * PQgetCopyData row each) go into the manifest, and so does each table's
 * content checksum (extra.table_sha256: hash_sum_add, by a hash_summer,
 * over its COPY rows, so that it does not depend on the order a scan
 * returns them in): pg_describe reads a restored table back the same way,
 * in the format the snapshot recorded, and the checks after a restore
 * compare the two (backup_content_differs).
 */
#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <libpq/libpq-fs.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backup.h"
#include "backup_pg_int.h"
#include "hash.h"
#include "pg_archive.h"
#include "pg_copy.h"
#include "pgdump_catalog.h"
#include "strbuf.h"
#include "xalloc.h"

/*
 * extra.copy_format: each table's rows are in the format its toc entry
 * names ("format": "binary", or text without it): pgcat_table.binary.
 * Snapshots before it say "text": all in text.
 */
#define PGB_COPY_FORMAT "by_table"

/*
 * One COPY TO STDOUT stream.  COPY TO is bound by the server (one core), so
 * a reader thread drains the connection into a small bounded queue of
 * blocks while the writer compresses and hashes the previous ones: the two
 * overlap, and memory stays at QUEUE_DEPTH blocks.
 */
#define BLOCK_SIZE ((size_t)1 << 20)
#define QUEUE_DEPTH 4

struct block {
	char *data;
	size_t len;
	size_t cap;
};

/* Blocks the writer is done with, for the reader to fill again: fresh
 * allocations would cost a page fault per 4 KiB every time. */
#define SPARE_MAX (QUEUE_DEPTH + 2)

struct copy_stream {
	PGconn *conn;
	const char *table;
	struct pgcopy_out po; /* the reader's */
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct block q[QUEUE_DEPTH];
	size_t head, count;
	int eof, failed, cancel;
	struct sm_error err; /* the reader's failure */
	long long rows;
	unsigned char sum[HASH_LEN]; /* of the rows: hash_sum_add */
	struct hash_summer hs;       /* the reader's */
	struct block cur;    /* consumer side: the block being handed out */
	size_t cur_off;
	char *spare[SPARE_MAX]; /* BLOCK_SIZE blocks to reuse, under mu */
	size_t nspare;
};

/* Reader side: an empty BLOCK_SIZE block. */
static char *get_block(struct copy_stream *s)
{
	char *b = NULL;

	pthread_mutex_lock(&s->mu);
	if (s->nspare)
		b = s->spare[--s->nspare];
	pthread_mutex_unlock(&s->mu);
	return b ? b : xmalloc(BLOCK_SIZE);
}

/* Under mu: keeps b for reuse if it is a BLOCK_SIZE block, else frees it. */
static void put_block(struct copy_stream *s, const struct block *b)
{
	if (b->data && b->cap == BLOCK_SIZE && s->nspare < SPARE_MAX)
		s->spare[s->nspare++] = b->data;
	else
		free(b->data);
}

/* Reader side: queues a block (waiting while the queue is full).  Takes
 * data in every case (freed when the writer cancelled). */
static int push_block(struct copy_stream *s, char *data, size_t len, size_t cap)
{
	int cancelled;

	pthread_mutex_lock(&s->mu);
	while (s->count == QUEUE_DEPTH && !s->cancel)
		pthread_cond_wait(&s->cv, &s->mu);
	cancelled = s->cancel;
	if (!cancelled) {
		s->q[(s->head + s->count) % QUEUE_DEPTH] = (struct block){ data, len, cap };
		s->count++;
		pthread_cond_broadcast(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
	if (cancelled)
		free(data);
	return cancelled ? -1 : 0;
}

/* Reads and drops every result left of the query in progress, the rows of
 * a COPY among them: the connection is idle after. */
static void drain_results(PGconn *conn)
{
	PGresult *res;
	char *row = NULL;

	while ((res = PQgetResult(conn))) {
		if (PQresultStatus(res) == PGRES_COPY_OUT)
			while (PQgetCopyData(conn, &row, 0) >= 0) {
				PQfreemem(row);
				row = NULL;
			}
		PQclear(res);
	}
}

/* The result of a COPY whose rows were all read; then whatever follows,
 * unless more (another COPY of the same query comes next, and it went
 * well: after a failure the server skips the rest). */
static int copy_result_more(PGconn *conn, const char *table, const char *what, int more,
			    struct sm_error *err)
{
	PGresult *res = PQgetResult(conn);
	int ret = 0;

	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		pgcat_pq_error(err, conn, res, what);
		err_prefix(err, "%s", table);
		ret = -1;
	}
	PQclear(res);
	if (ret < 0 || !more)
		drain_results(conn);
	return ret;
}

static int copy_result(PGconn *conn, const char *table, const char *what, struct sm_error *err)
{
	return copy_result_more(conn, table, what, 0, err);
}

int pgb_copy_row(struct pgcopy_out *po, const char *table, const char **data, size_t *len,
		 struct sm_error *err)
{
	int kind = pgcopy_out_row(po, data, len);

	if (kind < 0)
		err_set(err, ERR_FAIL, "%s: cannot copy table: the server's binary COPY data does "
			"not have the binary format's shape", table);
	return kind;
}

static void *copy_reader(void *arg)
{
	struct copy_stream *s = arg;
	char *buf = get_block(s), *row = NULL;
	size_t len = 0, cap = BLOCK_SIZE;
	int n, stop = 0, failed, malformed = 0;
	struct sm_error rerr = SM_ERROR_INIT;

	while (!stop && (n = PQgetCopyData(s->conn, &row, 0)) >= 0) {
		const char *data = row;
		size_t rl = (size_t)n;
		int kind = pgb_copy_row(&s->po, s->table, &data, &rl, &rerr);

		if (kind <= 0) { /* the trailer, or a malformed stream */
			malformed = stop = kind < 0;
			PQfreemem(row);
			row = NULL;
			continue;
		}
		if (len + rl > cap && len) {
			if (push_block(s, buf, len, cap) < 0)
				stop = 1;
			buf = NULL;
			len = 0;
			cap = BLOCK_SIZE;
			if (!stop && rl > BLOCK_SIZE) {
				buf = xmalloc(rl);
				cap = rl;
			} else if (!stop) {
				buf = get_block(s);
			}
		} else if (len + rl > cap) {
			buf = xrealloc(buf, rl);
			cap = rl;
		}
		if (!stop) {
			memcpy(buf + len, data, rl);
			len += rl;
			s->rows++;
			hash_summer_add(&s->hs, s->sum, data, rl);
		}
		PQfreemem(row);
		row = NULL;
	}
	/* after a cancel, drain what is left so the connection stays usable */
	while (stop && PQgetCopyData(s->conn, &row, 0) >= 0) {
		PQfreemem(row);
		row = NULL;
	}
	if (!stop && len) {
		push_block(s, buf, len, cap); /* takes buf, even when cancelled */
		buf = NULL;
	}
	free(buf);
	failed = copy_result(s->conn, s->table, "cannot copy table",
			     malformed ? &(struct sm_error)SM_ERROR_INIT : &rerr) < 0 || malformed;
	pthread_mutex_lock(&s->mu);
	if ((!stop || malformed) && failed) {
		s->err = rerr;
		s->failed = 1;
	}
	s->eof = 1;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

/* Writer side (a snap_read_fn): hands out the queued blocks. */
static int copy_read(void *ud, void *buf, size_t cap, size_t *got, struct sm_error *err)
{
	struct copy_stream *s = ud;
	size_t n = 0;

	while (n < cap) {
		size_t take;

		if (s->cur_off == s->cur.len) {
			int failed = 0, end = 0;

			pthread_mutex_lock(&s->mu);
			put_block(s, &s->cur);
			s->cur = (struct block){ NULL, 0, 0 };
			s->cur_off = 0;
			while (!s->count && !s->eof)
				pthread_cond_wait(&s->cv, &s->mu);
			if (s->count) {
				s->cur = s->q[s->head];
				s->head = (s->head + 1) % QUEUE_DEPTH;
				s->count--;
				pthread_cond_broadcast(&s->cv);
			} else {
				end = 1;
				failed = s->failed;
			}
			pthread_mutex_unlock(&s->mu);
			if (failed) {
				*err = s->err;
				return -1;
			}
			if (end)
				break;
		}
		take = s->cur.len - s->cur_off;
		if (take > cap - n)
			take = cap - n;
		memcpy((char *)buf + n, s->cur.data + s->cur_off, take);
		n += take;
		s->cur_off += take;
	}
	*got = n;
	return 0;
}

/* The COPY TO STDOUT of t (of range, if not NULL) into sql. */
static void copy_sql(struct strbuf *sql, const struct pgcat_table *t, const struct pgb_range *range)
{
	if (t->filter) { /* an extension's configuration table: the user's rows */
		sb_addf(sql, "COPY (SELECT %.*s FROM ONLY %s %s) TO STDOUT",
			(int)strlen(t->columns) - 2, t->columns + 1, t->qualified, t->filter);
	} else if (range) { /* a TID range scan (PostgreSQL 14+) */
		sb_addf(sql, "COPY (SELECT %.*s FROM ONLY %s WHERE ctid >= '(%lld,0)'::pg_catalog.tid",
			(int)strlen(t->columns) - 2, t->columns + 1, t->qualified, range->from);
		if (range->to >= 0)
			sb_addf(sql, " AND ctid < '(%lld,0)'::pg_catalog.tid", range->to);
		sb_adds(sql, ") TO STDOUT");
	} else {
		sb_addf(sql, "COPY %s %s TO STDOUT", t->qualified, t->columns);
	}
	if (t->binary)
		sb_adds(sql, " (FORMAT binary)");
}

/* res (taken) is the answer to t's COPY: 0 if its rows follow, else -1
 * with err set. */
static int copy_started(PGconn *conn, PGresult *res, const struct pgcat_table *t,
			const char *what, struct sm_error *err)
{
	int ret = 0;

	if (PQresultStatus(res) != PGRES_COPY_OUT) {
		pgcat_pq_error(err, conn, res, what);
		err_prefix(err, "%s", t->qualified);
		ret = -1;
	}
	PQclear(res);
	return ret;
}

int pgb_start_copy(PGconn *conn, const struct pgcat_table *t, const struct pgb_range *range,
		   const char *what, struct sm_error *err)
{
	struct strbuf sql = STRBUF_INIT;
	PGresult *res;

	copy_sql(&sql, t, range);
	res = PQexec(conn, sql.buf);
	sb_release(&sql);
	return copy_started(conn, res, t, what, err);
}

/*
 * A small table (a few thousand rows by the planner's estimate) is read on
 * the writer's own thread: there is nothing to overlap, and a reader
 * thread's start, hand-offs and join cost more than its rows.  reltuples is
 * -1 for a table never vacuumed or analyzed: its size is unknown, so it
 * gets the reader thread.
 */
#define SMALL_TABLE_ROWS 10000

struct copy_rows {
	PGconn *conn;
	const struct pgcat_table *t;
	const char *what; /* the error's "cannot ..." */
	char *row;        /* the row being handed out, from PQgetCopyData */
	size_t len, off;
	int end;
	long long rows;
	unsigned char sum[HASH_LEN];
	struct hash_summer hs;
	struct pgcopy_out po;
	int malformed;           /* the rows did not have the format's shape: */
	struct sm_error bad;     /* why */
	struct strbuf *ahead; /* rows read ahead (copy_rows_ahead), handed out */
	size_t ahead_off;     /* first; borrowed, may be NULL */
	int more;             /* another COPY of the same query follows */
};

static void copy_rows_init(struct copy_rows *c, PGconn *conn, const struct pgcat_table *t,
			   const char *what)
{
	memset(c, 0, sizeof(*c));
	c->conn = conn;
	c->t = t;
	c->what = what;
	c->po = (struct pgcopy_out)PGCOPY_OUT_INIT(t->binary);
	hash_summer_init(&c->hs);
}

/* Starts the COPY of t into c; what is the error's "cannot ..." (borrowed). */
static int copy_rows_start(struct copy_rows *c, PGconn *conn, const struct pgcat_table *t,
			   const char *what, struct sm_error *err)
{
	copy_rows_init(c, conn, t, what);
	if (pgb_start_copy(conn, t, NULL, what, err) < 0) {
		hash_summer_release(&c->hs);
		return -1;
	}
	return 0;
}

/* One row: counted and added to the checksum (c->row + c->off, c->len
 * past the binary header).  0 at the end of the rows, and after a
 * malformed one (the rest is read and dropped; copy_rows_end fails). */
static int copy_rows_next(struct copy_rows *c)
{
	for (;;) {
		const char *data;
		size_t len;
		int rl, kind;

		PQfreemem(c->row);
		c->row = NULL;
		c->len = c->off = 0;
		rl = PQgetCopyData(c->conn, &c->row, 0);
		if (rl < 0)
			return 0;
		if (c->malformed)
			continue;
		data = c->row;
		len = (size_t)rl;
		kind = pgb_copy_row(&c->po, c->t->qualified, &data, &len, &c->bad);
		c->malformed = kind < 0;
		if (kind <= 0) /* the trailer, or the first malformed row */
			continue;
		c->off = (size_t)(data - c->row);
		c->len = c->off + len;
		c->rows++;
		hash_summer_add(&c->hs, c->sum, data, len);
		return 1;
	}
}

/* The end of the COPY: its result (copy_result). */
static int copy_rows_end(struct copy_rows *c, struct sm_error *err)
{
	c->end = 1;
	PQfreemem(c->row);
	c->row = NULL;
	hash_summer_release(&c->hs);
	/* after a malformed row, nothing more of the batch is wanted */
	if (copy_result_more(c->conn, c->t->qualified, c->what, c->more && !c->malformed, err) < 0)
		return -1;
	if (c->malformed)
		*err = c->bad;
	return c->malformed ? -1 : 0;
}

/* Writer side (a snap_read_fn) of a small table: reads the rows itself. */
static int copy_rows_read(void *ud, void *buf, size_t cap, size_t *got, struct sm_error *err)
{
	struct copy_rows *c = ud;
	size_t n = 0;

	if (c->ahead && c->ahead_off < c->ahead->len) {
		n = c->ahead->len - c->ahead_off;
		if (n > cap)
			n = cap;
		memcpy(buf, c->ahead->buf + c->ahead_off, n);
		c->ahead_off += n;
	}
	while (n < cap) {
		size_t take;

		if (c->off == c->len) {
			if (c->end)
				break;
			if (!copy_rows_next(c)) {
				if (copy_rows_end(c, err) < 0)
					return -1;
				break;
			}
		}
		take = c->len - c->off;
		if (take > cap - n)
			take = cap - n;
		memcpy((char *)buf + n, c->row + c->off, take);
		n += take;
		c->off += take;
	}
	*got = n;
	return 0;
}

/*
 * Reads c's rows into ahead (borrowed, reset first) until they end or the
 * next would take it past max bytes; that row and the rest are then left
 * to copy_rows_read, which hands out ahead's first.  c->end tells which.
 * 0, or -1 with err set when the COPY failed (c has ended then).
 */
static int copy_rows_ahead(struct copy_rows *c, struct strbuf *ahead, size_t max,
			   struct sm_error *err)
{
	sb_reset(ahead);
	c->ahead = ahead;
	c->ahead_off = 0;
	for (;;) {
		if (!copy_rows_next(c))
			return copy_rows_end(c, err);
		if (ahead->len && ahead->len + (c->len - c->off) > max)
			return 0;
		sb_add(ahead, c->row + c->off, c->len - c->off);
		c->off = c->len;
	}
}

/* Ends c's COPY early (the writer failed part-way): cancels it on the
 * server and reads what is left, so that the connection stays usable. */
static void copy_rows_abandon(struct copy_rows *c)
{
	PGcancel *pc = PQgetCancel(c->conn);
	char ebuf[256];
	struct sm_error ignored = SM_ERROR_INIT;

	if (pc) {
		PQcancel(pc, ebuf, sizeof(ebuf));
		PQfreeCancel(pc);
	}
	while (copy_rows_next(c))
		;
	copy_rows_end(c, &ignored);
}

/* Writes c's rows (its COPY started, perhaps read ahead) into entry, and
 * fills their count and content checksum; c has ended after. */
static int copy_rows_write(struct copy_rows *c, struct snap_writer *w, const char *entry,
			   long long *rows, unsigned char sum[HASH_LEN], struct sm_error *err)
{
	int ret = snap_add_entry_stream(w, entry, SNAP_SIZE_UNKNOWN, copy_rows_read, c, err);

	if (!c->end) /* the writer failed part-way: end the COPY, keep the connection */
		copy_rows_abandon(c);
	*rows = c->rows;
	memcpy(sum, c->sum, HASH_LEN);
	return ret;
}

static int small_table(const struct pgcat_table *t)
{
	return t->est_rows >= 0 && t->est_rows <= SMALL_TABLE_ROWS;
}

/*
 * The small tables from first on (at most COPY_BATCH and PGCAT_BATCH_BYTES
 * of SQL, or one, and never past a table that is not small) have their
 * COPYs sent as one query: the server runs one after the other without
 * waiting for us between them, and we read their answers in turn
 * (sent_copy_started).  Returns the index past the last table sent, or 0
 * with err set.
 */
#define COPY_BATCH 64

static size_t send_copies(PGconn *conn, const struct pgcat_dump *d, size_t first,
			  struct sm_error *err)
{
	struct strbuf sql = STRBUF_INIT, one = STRBUF_INIT;
	size_t end = first;
	int ok;

	while (end < d->ntables && end - first < COPY_BATCH && small_table(&d->tables[end])) {
		sb_reset(&one);
		copy_sql(&one, &d->tables[end], NULL);
		sb_adds(&one, ";\n");
		if (sql.len && sql.len + one.len > PGCAT_BATCH_BYTES)
			break;
		sb_add(&sql, one.buf, one.len);
		end++;
	}
	ok = PQsendQuery(conn, sql.buf);
	sb_release(&sql);
	sb_release(&one);
	if (!ok) {
		pgcat_pq_error(err, conn, NULL, "cannot copy table");
		err_prefix(err, "%s", d->tables[first].qualified);
		return 0;
	}
	return end;
}

/* The answer to t's COPY, sent by send_copies: as pgb_start_copy's.  After
 * a failure no COPY of the batch is left. */
static int sent_copy_started(PGconn *conn, const struct pgcat_table *t, struct sm_error *err)
{
	PGresult *res = PQgetResult(conn);

	if (PQresultStatus(res) == PGRES_COPY_OUT) {
		PQclear(res);
		return 0;
	}
	copy_started(conn, res, t, "cannot copy table", err);
	drain_results(conn);
	return -1;
}

/* Copies t into entry through a reader thread (a table not known to be
 * small); fills its row count and content checksum. */
static int copy_table(PGconn *conn, struct snap_writer *w, const struct pgcat_table *t,
		      const char *entry, long long *rows, unsigned char sum[HASH_LEN],
		      struct sm_error *err)
{
	struct copy_stream s;
	PGresult *res;
	size_t i;
	int ret = -1;

	memset(&s, 0, sizeof(s));
	s.conn = conn;
	s.table = t->qualified;
	s.po = (struct pgcopy_out)PGCOPY_OUT_INIT(t->binary);
	if (pgb_start_copy(conn, t, NULL, "cannot copy table", err) < 0)
		return -1;
	pthread_mutex_init(&s.mu, NULL);
	pthread_cond_init(&s.cv, NULL);
	hash_summer_init(&s.hs);
	if (pthread_create(&s.thread, NULL, copy_reader, &s) != 0) {
		err_sys(err, "cannot start the COPY reader thread");
		while (PQgetCopyData(conn, &s.cur.data, 0) >= 0) {
			PQfreemem(s.cur.data);
			s.cur.data = NULL;
		}
		while ((res = PQgetResult(conn)))
			PQclear(res);
		goto out;
	}
	ret = snap_add_entry_stream(w, entry, SNAP_SIZE_UNKNOWN, copy_read, &s, err);
	if (ret < 0) {
		PGcancel *c = PQgetCancel(conn);
		char ebuf[256];

		pthread_mutex_lock(&s.mu);
		s.cancel = 1;
		pthread_cond_broadcast(&s.cv);
		pthread_mutex_unlock(&s.mu);
		if (c) {
			PQcancel(c, ebuf, sizeof(ebuf));
			PQfreeCancel(c);
		}
	}
	pthread_join(s.thread, NULL);
	*rows = s.rows;
	memcpy(sum, s.sum, HASH_LEN);
out:
	free(s.cur.data);
	for (i = 0; i < s.nspare; i++)
		free(s.spare[i]);
	for (i = 0; i < s.count; i++)
		free(s.q[(s.head + i) % QUEUE_DEPTH].data);
	pthread_mutex_destroy(&s.mu);
	pthread_cond_destroy(&s.cv);
	hash_summer_release(&s.hs);
	return ret;
}

/* ---- large objects --------------------------------------------------------- */

/* toc.json's "large_objects": [{"oid", "entry"}], in OID order (only when
 * the database has any, so the toc of one without is as it was). */
static void add_blobs_toc(cJSON *toc, const struct pgcat_dump *d)
{
	cJSON *arr;
	char entry[64];

	if (!d->nblobs)
		return;
	arr = cJSON_AddArrayToObject(toc, "large_objects");
	for (size_t i = 0; i < d->nblobs; i++) {
		cJSON *b = cJSON_CreateObject();

		snprintf(entry, sizeof(entry), PGA_BLOB_ENTRY_FMT, i);
		cJSON_AddNumberToObject(b, "oid", d->blobs[i]);
		cJSON_AddStringToObject(b, "entry", entry);
		cJSON_AddItemToArray(arr, b);
	}
}

/* lo_read reads at most this much a call: memory stays bounded whatever
 * the object's size (the writer buffers one chunk). */
#define BLOB_IO ((size_t)1 << 20)

struct blob_stream {
	PGconn *conn;
	int fd;
	unsigned oid;
	uint64_t bytes;
	struct hash_ctx h; /* of its data: its content checksum */
};

/* A large object's key in extra.table_sha256, beside the tables' (so that
 * the checks after a restore compare its content as a table's). */
#define BLOB_SUM_KEY "large object %u"

static int blob_open(PGconn *conn, unsigned oid, struct blob_stream *b, struct sm_error *err)
{
	memset(b, 0, sizeof(*b));
	b->conn = conn;
	b->oid = oid;
	b->fd = lo_open(conn, oid, INV_READ);
	if (b->fd < 0) {
		pgcat_pq_error(err, conn, NULL, "cannot open large object");
		err_prefix(err, "large object %u", oid);
		return -1;
	}
	hash_init(&b->h);
	return 0;
}

/* Closes b; on success adds its content checksum to sums (may be NULL). */
static int blob_close(struct blob_stream *b, int ret, cJSON *sums, struct sm_error *err)
{
	char hex[HASH_HEX_LEN + 1], key[32];

	if (lo_close(b->conn, b->fd) < 0 && ret == 0) {
		pgcat_pq_error(err, b->conn, NULL, "cannot close large object");
		err_prefix(err, "large object %u", b->oid);
		ret = -1;
	}
	if (ret == 0 && sums) {
		hash_final_hex(&b->h, hex);
		snprintf(key, sizeof(key), BLOB_SUM_KEY, b->oid);
		cJSON_AddStringToObject(sums, key, hex);
	}
	hash_release(&b->h);
	return ret;
}

static int blob_read(void *ud, void *buf, size_t cap, size_t *got, struct sm_error *err)
{
	struct blob_stream *b = ud;
	int n = lo_read(b->conn, b->fd, buf, cap < BLOB_IO ? cap : BLOB_IO);

	if (n < 0) {
		pgcat_pq_error(err, b->conn, NULL, "cannot read large object");
		err_prefix(err, "large object %u", b->oid);
		return -1;
	}
	*got = (size_t)n;
	b->bytes += (uint64_t)n;
	hash_update(&b->h, buf, (size_t)n);
	return 0;
}

/* The content checksum of every large object, as copy_blobs records it,
 * read without a snapshot writer. */
static int blob_sums(PGconn *conn, const struct pgcat_dump *d, cJSON *sums, struct sm_error *err)
{
	char *buf = NULL;
	int ret = 0;

	for (size_t i = 0; i < d->nblobs && ret == 0; i++) {
		struct blob_stream b;
		size_t got = 0;

		if (blob_open(conn, d->blobs[i], &b, err) < 0)
			return -1;
		if (!buf)
			buf = xmalloc(BLOB_IO);
		do
			ret = blob_read(&b, buf, BLOB_IO, &got, err);
		while (ret == 0 && got);
		ret = blob_close(&b, ret, sums, err);
	}
	free(buf);
	return ret;
}

/* Streams every large object's data into its entry, in the snapshot's
 * transaction; counts them in the manifest's extra ("large_objects",
 * "large_object_bytes") and adds their content checksums to sums. */
static int copy_blobs(PGconn *conn, struct snap_writer *w, const struct pgcat_dump *d,
		      cJSON *extra, cJSON *sums, struct sm_error *err)
{
	uint64_t total = 0;
	char entry[64];

	for (size_t i = 0; i < d->nblobs; i++) {
		struct blob_stream b;
		int ret;

		if (blob_open(conn, d->blobs[i], &b, err) < 0)
			return -1;
		snprintf(entry, sizeof(entry), PGA_BLOB_ENTRY_FMT, i);
		ret = snap_add_entry_stream(w, entry, SNAP_SIZE_UNKNOWN, blob_read, &b, err);
		if (blob_close(&b, ret, sums, err) < 0)
			return -1;
		total += b.bytes;
	}
	if (d->nblobs) {
		cJSON_AddNumberToObject(extra, "large_objects", (double)d->nblobs);
		cJSON_AddNumberToObject(extra, "large_object_bytes", (double)total);
	}
	return 0;
}

static cJSON *make_toc(const struct pgcat_dump *d)
{
	cJSON *toc = cJSON_CreateObject(), *schemas = cJSON_AddArrayToObject(toc, "schemas");
	cJSON *tables = cJSON_AddArrayToObject(toc, "tables");
	struct strbuf entry = STRBUF_INIT;
	size_t i;

	cJSON_AddNumberToObject(toc, "version", PGA_TOC_VERSION);
	cJSON_AddStringToObject(toc, PGA_TOC_ENCODING, d->encoding);
	for (i = 0; i < d->nschemas; i++)
		cJSON_AddItemToArray(schemas, cJSON_CreateString(d->schemas[i]));
	for (i = 0; i < d->ntables; i++) {
		cJSON *t = cJSON_CreateObject();

		pga_data_entry(&entry, i);
		cJSON_AddStringToObject(t, "schema", d->tables[i].schema);
		cJSON_AddStringToObject(t, "name", d->tables[i].name);
		cJSON_AddStringToObject(t, "qualified", d->tables[i].qualified);
		cJSON_AddStringToObject(t, "columns", d->tables[i].columns);
		cJSON_AddStringToObject(t, "entry", entry.buf);
		if (d->tables[i].binary)
			cJSON_AddStringToObject(t, PGA_TOC_FORMAT, PGA_FORMAT_BINARY);
		if (d->tables[i].filter)
			cJSON_AddTrueToObject(t, "extension_config");
		cJSON_AddItemToArray(tables, t);
	}
	cJSON_AddItemToObject(toc, "post_data", pga_toc_json(&d->post_toc));
	cJSON_AddItemToObject(toc, "pre_data", pga_toc_json(&d->pre_toc));
	sb_release(&entry);
	add_blobs_toc(toc, d);
	return toc;
}

struct name_list {
	char **v;
	size_t n, alloc;
};

static void name_add(struct name_list *l, struct strbuf *name)
{
	ALLOC_GROW(l->v, l->n + 1, l->alloc);
	l->v[l->n++] = sb_detach(name);
}

/* Whether j is or holds (keys included) a string that is not valid UTF-8.
 * (Recursive: j is a toc make_toc built, a few levels deep.) */
/* NOLINTNEXTLINE(misc-no-recursion) */
static int has_non_utf8(const cJSON *j)
{
	const cJSON *c;

	if ((j->string && !utf8_valid(j->string)) ||
	    (cJSON_IsString(j) && !utf8_valid(j->valuestring)))
		return 1;
	cJSON_ArrayForEach(c, j)
		if (has_non_utf8(c))
			return 1;
	return 0;
}

/* Adds to out every part of j (a toc) that holds a string that is not
 * valid UTF-8, named as the operator would look for it: a typed entry by
 * its kind and name, a table by its name and columns, anything else (a
 * schema) by the string itself. */
/* NOLINTNEXTLINE(misc-no-recursion) */
static void collect_non_utf8(const cJSON *j, struct name_list *out)
{
	struct strbuf name = STRBUF_INIT;
	const cJSON *c;
	/* (make_toc's and pga_toc_json's: both fields of a pair are strings) */
	const char *kind = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "kind"));
	const char *table = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "qualified"));

	if (kind || table) {
		if (!has_non_utf8(j))
			return;
		if (kind)
			sb_addf(&name, "%s %s", kind,
				cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "name")));
		else
			sb_addf(&name, "table %s %s", table,
				cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "columns")));
		name_add(out, &name);
		return;
	}
	if (cJSON_IsString(j) && !utf8_valid(j->valuestring))
		sb_adds(&name, j->valuestring);
	else if (j->string && !utf8_valid(j->string))
		sb_adds(&name, j->string);
	if (name.len)
		name_add(out, &name);
	sb_release(&name);
	cJSON_ArrayForEach(c, j)
		collect_non_utf8(c, out);
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * The toc, and the manifest after it, are JSON, whose text is UTF-8; the
 * names they hold (schemas, tables, columns, the typed entries' objects
 * and owners) are the database's.  Read in UTF8 they always are, but a
 * database read as it is (SQL_ASCII, MULE_INTERNAL: pga_encoding_for) may
 * have names that are not: written
 * as they are, they would make a toc and a manifest that are not JSON (no
 * other tool could read them), and JSON has no way to spell bytes.  Such
 * a database is refused, before anything is written, with every such name
 * (its bytes that are not UTF-8 as \xNN, sorted, each once).  Its data,
 * comments, defaults and function bodies are in the SQL and COPY entries,
 * which are bytes, and come back as they were.
 */
static int check_names_utf8(const cJSON *toc, const char *encoding, struct sm_error *err)
{
	struct name_list bad = { NULL, 0, 0 };
	struct strbuf names = STRBUF_INIT;
	size_t shown = 0, n = 0;

	collect_non_utf8(toc, &bad);
	if (!bad.n)
		return 0;
	qsort(bad.v, bad.n, sizeof(*bad.v), str_cmp);
	for (size_t i = 0; i < bad.n; i++) {
		if (i && !strcmp(bad.v[i], bad.v[i - 1]))
			continue;
		n++;
		/* the message has room for about 1.5 kB of names: the rest is counted */
		if (names.len > 1500)
			continue;
		if (shown++)
			sb_adds(&names, "; ");
		sb_add_utf8_escaped(&names, bad.v[i]);
	}
	if (n > shown)
		sb_addf(&names, "; and %zu more", n - shown);
	err_set(err, ERR_FAIL, "cannot snapshot this database (encoding %s): these names are not "
		"valid UTF-8, which the snapshot's table of contents and manifest (JSON) cannot "
		"hold: %s (rename them, or use pg_dump)", encoding, names.buf);
	sb_release(&names);
	for (size_t i = 0; i < bad.n; i++)
		free(bad.v[i]);
	free(bad.v);
	return -1;
}

/*
 * A small table's rows are read whole (up to AHEAD_MAX bytes) before its
 * entry is written, and the small tables' COPYs go to the server in
 * batches (send_copies): the server runs the next while this one is
 * compressed and hashed, instead of each side waiting for the other 400
 * times over in a schema of 400 small tables.  The bytes written are the
 * same.
 */
#define AHEAD_MAX ((size_t)1 << 20)

/* Copies every table of d into w, one after the other on conn; fills
 * rows[i] and sum[i] for table i. */
static int copy_serial(PGconn *conn, struct snap_writer *w, const struct pgcat_dump *d,
		       long long *rows, unsigned char (*sum)[HASH_LEN], struct sm_error *err)
{
	struct strbuf name = STRBUF_INIT, ahead = STRBUF_INIT;
	size_t i, sent = 0; /* the COPYs of tables [i, sent) were sent, not yet read */
	int ret = -1;

	for (i = 0; i < d->ntables; i++) {
		const struct pgcat_table *t = &d->tables[i];
		struct copy_rows c;

		pga_data_entry(&name, i);
		if (!small_table(t)) {
			if (copy_table(conn, w, t, name.buf, &rows[i], sum[i], err) < 0)
				goto out;
			continue;
		}
		if (i >= sent && !(sent = send_copies(conn, d, i, err)))
			goto out;
		copy_rows_init(&c, conn, t, "cannot copy table");
		c.more = i + 1 < sent;
		if (sent_copy_started(conn, t, err) < 0) {
			hash_summer_release(&c.hs);
			goto out;
		}
		if (copy_rows_ahead(&c, &ahead, AHEAD_MAX, err) < 0 ||
		    copy_rows_write(&c, w, name.buf, &rows[i], sum[i], err) < 0)
			goto out;
	}
	ret = 0;
out:
	/* a failure part-way through a batch: what is left of it, read and
	 * dropped, so that the ROLLBACK after it finds the connection idle */
	if (ret < 0)
		drain_results(conn);
	sb_release(&ahead);
	sb_release(&name);
	return ret;
}

/*
 * Copies every table of d into w: one after the other on e's connection,
 * or with opts->jobs connections (backup_pg_parallel.c).  Either way the
 * same row counts and content checksums (extra's table_sha256) are
 * recorded, in the dump's table order.
 */
static int copy_tables(struct engine *e, struct snap_writer *w, const struct pgcat_dump *d,
		       const struct backup_opts *opts, cJSON *extra, struct sm_error *err)
{
	cJSON *sums = cJSON_GetObjectItemCaseSensitive(extra, "table_sha256");
	PGconn *conn = engine_native(e);
	long long *rows = xcalloc(d->ntables ? d->ntables : 1, sizeof(*rows));
	unsigned char (*sum)[HASH_LEN] = xcalloc(d->ntables ? d->ntables : 1, sizeof(*sum));
	size_t i;
	int ret = -1;

	if (opts && opts->jobs > 1) {
		/* what the parallel copy did, for whoever wonders about the chunks */
		cJSON_AddNumberToObject(extra, "jobs", opts->jobs);
		if (pgb_copy_parallel(conn, e->url.conninfo, e->url.redacted, w, d, opts->jobs,
				      opts->interrupted, rows, sum,
				      cJSON_AddObjectToObject(extra, "table_ranges"), err) < 0)
			goto out;
	} else if (copy_serial(conn, w, d, rows, sum, err) < 0) {
		goto out;
	}
	for (i = 0; i < d->ntables; i++) {
		char hex[HASH_HEX_LEN + 1];

		snap_set_row_count(w, d->tables[i].qualified, rows[i]);
		hash_hex(sum[i], hex);
		cJSON_AddStringToObject(sums, d->tables[i].qualified, hex);
	}
	ret = 0;
out:
	free(rows);
	free(sum);
	return ret;
}

struct revision_reader {
	struct engine *e;
	struct snap_writer *w;
	const struct backup_opts *opts;
};

/* The snapshot transaction's first statement: the revision, as the
 * snapshot has it (pgcat_begin_with). */
static int read_revision_first(void *ud, struct sm_error *err)
{
	struct revision_reader *rr = ud;

	return backup_set_revision(rr->e, rr->w, rr->opts, err);
}

static int pg_take(struct engine *e, struct snap_writer *w, const struct backup_opts *opts,
		   struct sm_error *err)
{
	PGconn *conn = engine_native(e);
	struct pgcat_options co = { opts && opts->no_owner, 0, opts && opts->no_tablespaces,
				    pgcat_encoding(conn) };
	struct pgcat_dump d = PGCAT_DUMP_INIT;
	cJSON *toc = NULL, *extra;
	char *toc_text = NULL;
	PGresult *res;
	size_t i;
	struct revision_reader rr = { e, w, opts };
	int ret = -1, nested = pgcat_begin_with(conn, co.encoding, read_revision_first, &rr, err);

	if (nested < 0)
		return -1;
	/* its COMMIT would end the caller's transaction, not its own */
	if (nested) {
		pgcat_end(conn, nested);
		return err_set(err, ERR_USAGE, "a snapshot cannot be taken inside a transaction");
	}
	if (pgcat_read(conn, &co, &d, err) < 0)
		goto out;
	toc = make_toc(&d);
	if (check_names_utf8(toc, d.encoding, err) < 0)
		goto out;
	{
		cJSON *sch;
		char fp[HASH_HEX_LEN + 1];

		extra = cJSON_CreateObject();
		sch = cJSON_AddArrayToObject(extra, "schemas");

		pgcat_fingerprint(&d, fp);
		cJSON_AddStringToObject(extra, "copy_format", PGB_COPY_FORMAT);
		/* the checks after a restore read it back in the same encoding */
		cJSON_AddStringToObject(extra, PGA_TOC_ENCODING, d.encoding);
		cJSON_AddStringToObject(extra, "schema_sha256", fp);
		if (co.no_owner)
			cJSON_AddTrueToObject(extra, "no_owner");
		if (co.no_tablespaces)
			cJSON_AddTrueToObject(extra, "no_tablespaces");
		for (i = 0; i < d.nschemas; i++)
			cJSON_AddItemToArray(sch, cJSON_CreateString(d.schemas[i]));
		/* filled below; the manifest is written at the end */
		cJSON_AddObjectToObject(extra, "table_sha256");
		snap_set_extra(w, extra); /* extra stays borrowed */
	}
	/* one connection copies the tables one after the other: a restore
	 * may build a table's indexes once the next table's chunks start */
	if (!opts || opts->jobs <= 1)
		cJSON_AddTrueToObject(toc, PGA_TOC_DATA_BY_TABLE);
	toc_text = cJSON_Print(toc);
	/* the restore runs these before it reaches the manifest: the header
	 * carries their checksums so that it can check them first */
	snap_declare_checksum(w, PGA_TOC_ENTRY, toc_text, strlen(toc_text));
	snap_declare_checksum(w, PGA_PRE_ENTRY, d.pre_data.buf, d.pre_data.len);
	snap_declare_checksum(w, PGA_POST_ENTRY, d.post_data.buf, d.post_data.len);
	if (snap_add_entry_buf(w, PGA_TOC_ENTRY, toc_text, strlen(toc_text), err) < 0 ||
	    snap_add_entry_buf(w, PGA_PRE_ENTRY, d.pre_data.buf, d.pre_data.len, err) < 0 ||
	    snap_add_entry_buf(w, PGA_POST_ENTRY, d.post_data.buf, d.post_data.len, err) < 0)
		goto out;
	if (copy_tables(e, w, &d, opts, extra, err) < 0 ||
	    copy_blobs(conn, w, &d, extra, cJSON_GetObjectItemCaseSensitive(extra, "table_sha256"),
		       err) < 0)
		goto out;
	ret = 0;
out:
	res = PQexec(conn, ret == 0 ? "COMMIT" : "ROLLBACK");
	PQclear(res);
	free(toc_text);
	cJSON_Delete(toc);
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

/* t's content checksum as copy_table computes it, read without a snapshot
 * writer. */
static int content_sum(PGconn *conn, const struct pgcat_table *t, char hex[HASH_HEX_LEN + 1],
		       struct sm_error *err)
{
	struct copy_rows c;
	int ret;

	if (copy_rows_start(&c, conn, t, "cannot read the table", err) < 0)
		return -1;
	while (copy_rows_next(&c))
		;
	ret = copy_rows_end(&c, err);
	hash_hex(c.sum, hex);
	return ret;
}

/* What pg_take would record: the same dump, fingerprinted, and count(*)
 * of every table it would copy (and, with want_content, its content
 * checksum), in one REPEATABLE READ transaction. */
static int pg_describe(struct engine *e, const cJSON *extra, struct backup_summary *out,
		       struct sm_error *err)
{
	PGconn *conn = engine_native(e);
	const char *format;
	/* read as the snapshot was: its text, and so its fingerprint and
	 * content checksums, in the encoding it recorded */
	struct pgcat_options co = {
		cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(extra, "no_owner")), 0,
		cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(extra, "no_tablespaces")),
		pga_encoding(extra) };
	struct pgcat_dump d = PGCAT_DUMP_INIT;
	struct strbuf sql = STRBUF_INIT;
	PGresult *res = NULL;
	size_t i;
	int ret = -1, nested;

	if (!co.encoding)
		return err_set(err, ERR_DAMAGED, "the snapshot records a client encoding this "
			       "safe-migrate does not know");
	if ((nested = pgcat_begin(conn, co.encoding, err)) < 0)
		return -1;
	if (pgcat_read(conn, &co, &d, err) < 0)
		goto out;
	/* the content checksums are over the rows in the format the snapshot
	 * has them in */
	format = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(extra, "copy_format"));
	if (!format || strcmp(format, PGB_COPY_FORMAT) != 0)
		for (i = 0; i < d.ntables; i++)
			d.tables[i].binary = 0;
	pgcat_fingerprint(&d, out->schema_sha256);
	out->row_counts = cJSON_CreateObject();
	if (out->want_content)
		out->table_sha256 = cJSON_CreateObject();
	for (i = 0; i < d.ntables; i++) {
		sb_reset(&sql);
		sb_addf(&sql, "SELECT count(*) FROM ONLY %s %s", d.tables[i].qualified,
			d.tables[i].filter ? d.tables[i].filter : "");
		res = PQexec(conn, sql.buf);
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			pgcat_pq_error(err, conn, res, "cannot count the rows");
			err_prefix(err, "%s", d.tables[i].qualified);
			goto out;
		}
		cJSON_AddNumberToObject(out->row_counts, d.tables[i].qualified,
					strtod(PQgetvalue(res, 0, 0), NULL));
		PQclear(res);
		res = NULL;
		if (out->table_sha256) {
			char sum[HASH_HEX_LEN + 1];

			if (content_sum(conn, &d.tables[i], sum, err) < 0)
				goto out;
			cJSON_AddStringToObject(out->table_sha256, d.tables[i].qualified, sum);
		}
	}
	if (out->table_sha256 && blob_sums(conn, &d, out->table_sha256, err) < 0)
		goto out;
	ret = 0;
out:
	PQclear(res);
	pgcat_end(conn, nested);
	sb_release(&sql);
	pgcat_dump_release(&d);
	return ret;
}

const struct backup_driver backup_pg_driver = {
	.engine = "postgresql",
	.take = pg_take,
	.estimate = pg_estimate,
	.describe = pg_describe,
};
