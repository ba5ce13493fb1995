/*
 * backup_sqlite: the SQLite driver of backup.
 *
 * A consistent copy comes from SQLite's online backup API in ONE full step
 * (sqlite3_backup_step(-1)): a backup taken a few pages per step restarts
 * from page 1 whenever another connection commits, so under a steady writer
 * it would never finish, while a single step holds a read transaction for
 * its duration and always does.  The source connection opens that read
 * transaction itself first, so the row counts in the manifest describe the
 * very same snapshot the copy is taken from.
 *
 * The copy's destination is not a file: it is a database on stream_vfs,
 * which hands the pages straight to the snapshot writer as the backup
 * writes them (pages 2..N as chunks data/main.db.0001..., then page 1, which
 * SQLite writes last, as data/main.db.0000; the header declares that entry
 * deferred so a reader can place the rest first).  No scratch copy of the
 * database is ever written, and the source is read in large blocks through
 * a connection of its own (sqlite_readahead), or below 32 MiB through the
 * engine's connection (a new one would parse the whole schema again).
 *
 * With opts->check, PRAGMA quick_check runs on another thread beside the
 * copy, on a third connection whose read transaction begins while the
 * copy's is open and no other connection can commit (a fourth connection
 * holds the write lock for that moment): both read the same
 * database, so the manifest's extra.quick_check says whether the very
 * pages in the snapshot passed, and a restore need not check them again.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backup.h"
#include "fsutil.h"
#include "sqlite_copy.h"
#include "sqlite_readahead.h"
#include "stream_vfs.h"
#include "strbuf.h"
#include "xalloc.h"


static int sqlite_estimate(struct engine *e, uint64_t *bytes, struct sm_error *err)
{
	sqlite3 *db = engine_native(e);
	long long pages = 0, size = 0;

	if (sqlite_pragma_int(db, "PRAGMA page_count", &pages) < 0 ||
	    sqlite_pragma_int(db, "PRAGMA page_size", &size) < 0)
		return err_set(err, ERR_FAIL, "cannot read the size of '%s': %s", e->url.path,
			       sqlite3_errmsg(db));
	/* an archive no smaller than the database (random data does not
	 * compress), and a little room for the header and manifest */
	*bytes = (uint64_t)pages * (uint64_t)size + ((uint64_t)1 << 20);
	return 0;
}

/* Tables counted by one statement: a statement of its own per table adds
 * its preparation's fixed cost to each count (on 2,000 small tables, 13.5 ms
 * counting one per statement, 10.7 ms 64 per statement).  SQLite allows
 * 2,000 result columns by default. */
#define COUNT_BATCH 64

/* Counts names[0..n) in one statement of scalar subqueries, one column per
 * table (columns, unlike the rows of a compound SELECT, keep their order).
 * -1 if it cannot be prepared, e.g. a virtual table whose module is missing. */
static int count_batch(struct snap_writer *w, sqlite3 *db, char *const *names, int n,
		       struct strbuf *sql)
{
	sqlite3_stmt *st = NULL;
	int ret = -1;

	sb_reset(sql);
	sb_adds(sql, "SELECT ");
	for (int i = 0; i < n; i++) {
		sb_adds(sql, i ? ", (SELECT count(*) FROM main." : "(SELECT count(*) FROM main.");
		engine_quote_ident_sql(sql, names[i]);
		sb_addch(sql, ')');
	}
	if (sqlite3_prepare_v2(db, sql->buf, -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW) {
		for (int i = 0; i < n; i++)
			snap_set_row_count(w, names[i], sqlite3_column_int64(st, i));
		ret = 0;
	}
	sqlite3_finalize(st);
	return ret;
}

/* Row counts of every table, into the manifest. */
static int count_rows(struct snap_writer *w, sqlite3 *db, struct sm_error *err)
{
	sqlite3_stmt *st = NULL;
	struct strbuf sql = STRBUF_INIT;
	char **names = NULL;
	size_t alloc = 0;
	int n = 0, ret = -1;

	if (sqlite3_prepare_v2(db, "SELECT name FROM main.sqlite_schema WHERE type = 'table' "
			       "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name", -1,
			       &st, NULL) != SQLITE_OK) {
		err_set(err, ERR_FAIL, "cannot list the tables: %s", sqlite3_errmsg(db));
		goto out;
	}
	while (sqlite3_step(st) == SQLITE_ROW) {
		ALLOC_GROW(names, (size_t)n + 1, alloc);
		names[n++] = xstrdup((const char *)sqlite3_column_text(st, 0));
	}
	for (int i = 0; i < n; i += COUNT_BATCH) {
		int k = n - i < COUNT_BATCH ? n - i : COUNT_BATCH;

		/* a table that cannot be counted (a virtual table without its
		 * module) leaves out only itself */
		if (count_batch(w, db, names + i, k, &sql) < 0)
			for (int j = 0; j < k; j++)
				count_batch(w, db, names + i + j, 1, &sql);
	}
	ret = 0;
out:
	sqlite3_finalize(st);
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	sb_release(&sql);
	return ret;
}

/* backup_set_revision on the copy's connection, in its read transaction
 * (which may be a reader of its own, not the engine's). */
static int set_revision(sqlite3 *db, struct snap_writer *w, const struct backup_opts *opts,
			struct sm_error *err)
{
	sqlite3_stmt *st = NULL;
	char *best = NULL;
	long long exists = 0;
	int rc = SQLITE_DONE;

	if (opts->revision) {
		snap_set_revision(w, opts->revision);
		return 0;
	}
	if (sqlite_pragma_int(db, "SELECT count(*) FROM main.sqlite_schema WHERE type = 'table' AND "
		       "name = 'safe_migrate_versions'", &exists) < 0 ||
	    (exists && sqlite3_prepare_v2(db, "SELECT version FROM main.safe_migrate_versions", -1,
					  &st, NULL) != SQLITE_OK))
		return err_set(err, ERR_FAIL, "cannot read the schema revision: %s",
			       sqlite3_errmsg(db));
	while (st && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *v = (const char *)sqlite3_column_text(st, 0), *newest = best;

		/* v lives until the next step: the newest is kept as a copy */
		backup_newer_version(v, &newest);
		if (v && newest == v) {
			free(best);
			best = xstrdup(v);
		}
	}
	if (st && rc != SQLITE_DONE) {
		err_set(err, ERR_FAIL, "cannot read the schema revision: %s", sqlite3_errmsg(db));
		sqlite3_finalize(st);
		free(best);
		return -1;
	}
	sqlite3_finalize(st);
	snap_set_revision(w, best);
	free(best);
	return 0;
}

static int sink_to_snapshot(void *ud, const void *data, size_t len, struct sm_error *err)
{
	return snap_payload_write(ud, data, len, err);
}

/* Copies main of src into the snapshot, inside src's read transaction. */
static int stream_copy(sqlite3 *src, struct snap_writer *w, uint32_t page_size,
		       uint64_t pages, struct sm_error *err)
{
	struct stream_vfs sv = { 0 };
	sqlite3 *dst = NULL;
	enum sqlite_copy_stage stage;
	int rc, ret = -1;

	sv.page_size = page_size;
	sv.sink = sink_to_snapshot;
	sv.ud = w;
	if (stream_vfs_attach(&sv, err) < 0)
		return -1;
	if (sqlite3_open_v2("safe-migrate-backup-stream", &dst, SQLITE_OPEN_READWRITE |
			    SQLITE_OPEN_CREATE, STREAM_VFS_NAME) != SQLITE_OK ||
	    sqlite3_exec(dst, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; "
			 "PRAGMA cache_size=-2048", NULL, NULL, NULL) != SQLITE_OK) {
		err_set(err, ERR_FAIL, "cannot start the backup copy: %s",
			dst ? sqlite3_errmsg(dst) : "out of memory");
		goto out;
	}
	if (snap_payload_begin(w, "data/main.db", 1, (pages - 1) * page_size, err) < 0)
		goto out;
	rc = sqlite_copy_whole(dst, src, &stage);
	if (sv.failed) {
		/* the sink's own error (no space, a write error) says it best */
		*err = sv.err;
		err_prefix(err, "backup of the database failed");
		goto out;
	}
	if (rc != SQLITE_OK) {
		if (stage == SQLITE_COPY_INIT)
			err_set(err, ERR_FAIL, "cannot start the backup: %s", sqlite3_errmsg(dst));
		else if (stage == SQLITE_COPY_LOCKED)
			err_set(err, ERR_LOCKED, "backup of the database failed: it stayed locked by "
				"another connection for %d s", SQLITE_COPY_GIVE_UP_MS / 1000);
		else
			err_set(err, ERR_FAIL, "backup of the database failed: %s",
				sqlite3_errstr(rc));
		goto out;
	}
	if (snap_payload_end(w, err) < 0)
		goto out;
	if (!sv.head) {
		err_set(err, ERR_FAIL, "backup of the database failed: the copy has no first page");
		goto out;
	}
	if (snap_add_entry_buf(w, "data/main.db.0000", sv.head, page_size, err) < 0)
		goto out;
	ret = 0;
out:
	sqlite3_close(dst);
	stream_vfs_detach(&sv);
	return ret;
}

/* The check beside the copy. */
struct side_check {
	sqlite3 *db;    /* its connection, in its read transaction */
	pthread_t th;
	int started;
	int found;      /* problems found; -1: the check could not run */
	struct strbuf out;
};

static void *side_check_run(void *ud)
{
	struct side_check *c = ud;

	c->found = sqlite_quick_check(c->db, SQLITE_CHECK_MAX_LINES, "\n", &c->out);
	return NULL;
}

/* How long the check waits for another connection's write transaction
 * before it gives up running beside the copy. */
#define CHECK_LOCK_WAIT_MS 250

/* Takes the write lock, on a connection of its own, before the copy's read
 * transaction begins: until side_check_start lets it go, no other
 * connection can commit, so the check's read transaction, begun in
 * between, sees what the copy sees (in WAL mode too, where a reader's view
 * is fixed when its transaction begins).  NULL if it cannot be had within
 * CHECK_LOCK_WAIT_MS (a writer that keeps it, a read-only file): the check
 * then runs on the copy's connection after the copy, and the backup never
 * waits on a writer longer than that. */
static sqlite3 *side_check_lock(const char *path)
{
	sqlite3 *lk = NULL;

	if (sqlite3_open_v2(path, &lk, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		sqlite3_close(lk);
		return NULL;
	}
	sqlite3_busy_timeout(lk, CHECK_LOCK_WAIT_MS);
	if (sqlite3_exec(lk, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		sqlite3_close(lk);
		return NULL;
	}
	return lk;
}

/* Lets writers go again: ROLLBACK, not COMMIT, which in rollback-journal
 * mode waits for the readers to go, as if the empty transaction had pages
 * to write. */
static void side_check_unlock(sqlite3 *lk)
{
	if (!lk)
		return;
	sqlite3_exec(lk, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(lk);
}

/* With the write lock held (lk, from side_check_lock) and the copy's read
 * transaction begun: opens the check's connection and its read
 * transaction, lets writers go and starts the check.  The transaction
 * begins by reading the header's schema cookie, which does not parse the
 * schema (20 ms on 2,000 small tables): the check's thread does that, in
 * the same transaction, while writers are free and the copy runs. */
static void side_check_start(struct side_check *c, sqlite3 *lk, const char *path)
{
	if (lk && sqlite_readahead_register() == SQLITE_OK &&
	    sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READONLY, SQLITE_READAHEAD_VFS) ==
		    SQLITE_OK &&
	    sqlite3_exec(c->db, "BEGIN; PRAGMA main.schema_version", NULL, NULL, NULL) ==
		    SQLITE_OK)
		c->started = pthread_create(&c->th, NULL, side_check_run, c) == 0;
	side_check_unlock(lk);
	if (!c->started) {
		sqlite3_close(c->db);
		c->db = NULL;
	}
}

/* Waits for the check (stopping it first when the copy failed), or runs
 * it on rd, inside the copy's read transaction, if it did not start. */
static void side_check_finish(struct side_check *c, sqlite3 *rd, int stop)
{
	if (c->started) {
		if (stop)
			sqlite3_interrupt(c->db);
		pthread_join(c->th, NULL);
		c->started = 0;
	} else if (!stop) {
		c->found = sqlite_quick_check(rd, SQLITE_CHECK_MAX_LINES, "\n", &c->out);
	}
	sqlite3_close(c->db);
	c->db = NULL;
}

/* A connection of its own for the copy, reading in large blocks: it lives
 * for exactly one read transaction, during which the parts of the file it
 * reads cannot change (writers are locked out in rollback-journal mode; in
 * WAL mode checkpoints never pass an open reader's snapshot).  NULL if it
 * cannot be opened: the engine's connection then does the work. */
static sqlite3 *open_reader(const char *path)
{
	sqlite3 *rd = NULL;

	if (sqlite_readahead_register() != SQLITE_OK ||
	    sqlite3_open_v2(path, &rd, SQLITE_OPEN_READWRITE, SQLITE_READAHEAD_VFS) !=
		    SQLITE_OK) {
		sqlite3_close(rd);
		return NULL;
	}
	sqlite3_busy_timeout(rd, 10000);
	return rd;
}

/* Below this size the engine's own connection copies the database: a
 * reader of its own would parse the whole schema again (on 500 small tables
 * as long as the copy of their 6 MiB), to save reads that a small file
 * does not need to save. */
#define READER_MIN_BYTES ((long long)32 << 20)

static int small_database(sqlite3 *db)
{
	long long pages = 0, size = 0;

	return sqlite_pragma_int(db, "PRAGMA main.page_count", &pages) == 0 &&
	       sqlite_pragma_int(db, "PRAGMA main.page_size", &size) == 0 &&
	       pages * size < READER_MIN_BYTES;
}

static int sqlite_take(struct engine *e, struct snap_writer *w, const struct backup_opts *opts,
		       struct sm_error *err)
{
	sqlite3 *db = engine_native(e), *rd = NULL;
	long long pages = 0, size = 0;
	int own_txn = sqlite3_get_autocommit(db), ret = -1;
	struct side_check check = { NULL, 0, 0, -1, STRBUF_INIT };
	/* the check needs a read transaction of the copy's own */
	int checking = opts->check && own_txn;
	sqlite3 *lk = NULL;
	cJSON *extra;

	/* inside the caller's transaction only its connection sees its state */
	if (own_txn && !small_database(db) && (rd = open_reader(e->url.path)) != NULL)
		db = rd;
	if (checking)
		lk = side_check_lock(e->url.path);
	/* one read transaction: the counts and the copy see the same database */
	if (own_txn && sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
		err_set(err, ERR_FAIL, "cannot start a read transaction on '%s': %s",
			e->url.path, sqlite3_errmsg(db));
		side_check_unlock(lk);
		sqlite3_close(rd);
		return -1;
	}
	/* reads the header: the copy's read transaction begins here */
	if (sqlite_pragma_int(db, "PRAGMA main.page_count", &pages) < 0 ||
	    sqlite_pragma_int(db, "PRAGMA main.page_size", &size) < 0 || size < 512 || size > 65536) {
		err_set(err, ERR_FAIL, "cannot read the size of '%s': %s", e->url.path,
			sqlite3_errmsg(db));
		goto out;
	}
	/* an empty file becomes a one-page database */
	if (pages < 1)
		pages = 1;
	if (checking) {
		side_check_start(&check, lk, e->url.path);
		lk = NULL;
	}
	if (set_revision(db, w, opts, err) < 0 || count_rows(w, db, err) < 0)
		goto out;
	extra = cJSON_CreateObject();
	cJSON_AddNumberToObject(extra, "page_size", (double)size);
	cJSON_AddNumberToObject(extra, "page_count", (double)pages);
	cJSON_AddStringToObject(extra, "payload", "data/main.db");
	snap_set_extra(w, extra);
	snap_defer_entry(w, "data/main.db.0000", (uint64_t)size);
	snap_set_progress(w, opts->progress, opts->progress_ud, (uint64_t)pages * (uint64_t)size);
	if (stream_copy(db, w, (uint32_t)size, (uint64_t)pages, err) < 0)
		goto out;
	if (checking) {
		side_check_finish(&check, db, 0);
		if (check.found >= 0) {
			const char *outcome = check.found ? check.out.buf : "ok";

			sb_rtrim(&check.out);
			cJSON_AddStringToObject(extra, "quick_check", outcome);
			if (opts->check_result)
				*opts->check_result = xstrdup(outcome);
		}
	}
	ret = 0;
out:
	side_check_unlock(lk);
	if (checking)
		side_check_finish(&check, db, 1);
	sb_release(&check.out);
	if (own_txn)
		sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	sqlite3_close(rd);
	return ret;
}

const struct backup_driver backup_sqlite_driver = {
	.engine = "sqlite",
	.take = sqlite_take,
	.estimate = sqlite_estimate,
};
