/*
 * engine_sqlite: the SQLite backend of the engine interface.
 *
 * Statements are split by SQLite's own parser (sqlite3_prepare_v2 and its
 * tail pointer), so a script is executed exactly as sqlite3 would run it and
 * an error names the statement's line.  The migration lock is an flock() on
 * "<database>-safe-migrate.lock": SQLite's own locks last only for one
 * transaction, but a run spans many.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "fsutil.h"
#include "sqlite_copy.h"
#include "xalloc.h"

struct sqlite_impl {
	sqlite3 *db; /* first member: engine_native() returns it */
	int lock_fd;
	char *lock_path;
	int busy_ms;      /* the busy timeout db was given, for a reopened one */
	unsigned opened;  /* how many times db was opened: write marks name it */
	/* track_writes: the tables this connection's statements named as
	 * written since, unless written_all; the first reported of them (and
	 * written_all if all_reported) were handed to before_write */
	int tracking, written_all, all_reported, reporting;
	char **written;
	size_t nwritten, alloc_written, reported;
	engine_write_cb before_write;
	void *before_write_ud;
	/* confine_writes: writes to an attached database are refused; denied
	 * says why the statement being prepared was, elsewhere names the
	 * attached database a PRAGMA of it addressed (writes or not: known
	 * only once it is prepared); vacuuming while a VACUUM runs, whose own
	 * statements write the database it attaches (vacuum_db) */
	int confined, vacuuming;
	char *denied, *elsewhere;
};

static void track_report(struct engine *e);
static void set_authorizer(struct sqlite_impl *s);

static void track_clear(struct sqlite_impl *s)
{
	for (size_t i = 0; i < s->nwritten; i++)
		free(s->written[i]);
	free(s->written);
	s->written = NULL;
	s->nwritten = s->alloc_written = s->reported = 0;
	s->tracking = s->written_all = s->all_reported = 0;
	s->before_write = NULL;
	s->before_write_ud = NULL;
}

/* Whether a statement naming database db (NULL: none named, so "main")
 * reaches beyond the snapshot: a file attached to the connection.  An
 * attached database with no file (ATTACH ':memory:' or '', scratch space
 * a migration may use) outlives nothing, and neither does "temp". */
static int is_elsewhere(struct sqlite_impl *s, const char *db)
{
	const char *file;

	if (!db || !sqlite3_stricmp(db, "main") || !sqlite3_stricmp(db, "temp"))
		return 0;
	file = sqlite3_db_filename(s->db, db);
	return file && *file;
}

static void deny_elsewhere(struct sqlite_impl *s, const char *db)
{
	const char *file = sqlite3_db_filename(s->db, db);
	struct strbuf sb = STRBUF_INIT;

	sb_addf(&sb, "writes to the attached database '%s' ('%s'): the run's snapshot and its "
		"restore cover the main database only, so under the safety net a migration may "
		"read an attached database file but not write it", db, file ? file : "");
	free(s->denied);
	s->denied = sb_detach(&sb);
}

/* confine_writes' part of the authorizer: any action but reading, naming
 * an attached database, is a write to it (ALTER TABLE names its database
 * first).  Whether a PRAGMA writes is known once it is prepared. */
static int confine_auth(struct sqlite_impl *s, int code, const char *a1, const char *db)
{
	switch (code) {
	case SQLITE_READ:
	case SQLITE_SELECT:
	case SQLITE_FUNCTION:
	case SQLITE_RECURSIVE:
	case SQLITE_TRANSACTION:
	case SQLITE_SAVEPOINT:
	case SQLITE_ATTACH:
	case SQLITE_DETACH:
		return SQLITE_OK;
	case SQLITE_PRAGMA:
		if (is_elsewhere(s, db) && !s->elsewhere)
			s->elsewhere = xstrdup(db);
		return SQLITE_OK;
	case SQLITE_ALTER_TABLE:
		db = a1;
		break;
	default:
		break;
	}
	if (!is_elsewhere(s, db))
		return SQLITE_OK;
	deny_elsewhere(s, db);
	return SQLITE_DENY;
}

/* Opens e->url.path as open() does (oflags: SQLITE_OPEN_* of its own
 * besides READWRITE), with busy_ms as the busy timeout; *out NULL on
 * failure. */
static int open_handle(struct engine *e, int oflags, int busy_ms, sqlite3 **out,
		       struct sm_error *err)
{
	sqlite3 *db = NULL;
	int rc;

	*out = NULL;
	rc = sqlite3_open_v2(e->url.path, &db, SQLITE_OPEN_READWRITE | oflags, NULL);
	if (rc != SQLITE_OK) {
		err_set(err, ERR_FAIL, "cannot open database '%s': %s", e->url.path,
			db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		return -1;
	}
	sqlite3_extended_result_codes(db, 1);
	sqlite3_busy_timeout(db, busy_ms);
	/* a file that is not a database fails here rather than mid-migration */
	rc = sqlite3_exec(db, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		err_set(err, ERR_FAIL, "cannot read database '%s': %s", e->url.path,
			sqlite3_errmsg(db));
		sqlite3_close(db);
		return -1;
	}
	*out = db;
	return 0;
}

/* What is at e->url.path must be a regular file (missing: create says
 * whether that is fine). */
static int check_path(struct engine *e, int create, struct sm_error *err)
{
	struct stat st;

	if (stat(e->url.path, &st) < 0) {
		if (!create)
			/* refusing is right (a typo must not create a database);
			 * the hint is the one command that creates just the file */
			return err_set(err, ERR_FAIL,
				       "cannot open database '%s': No such file (to create an "
				       "empty one: sqlite3 '%s' 'VACUUM')", e->url.path,
				       e->url.path);
	} else if (S_ISDIR(st.st_mode)) {
		return err_set(err, ERR_FAIL, "cannot open database '%s': is a directory",
			       e->url.path);
	} else if (!S_ISREG(st.st_mode)) {
		/* /dev/null reads as an empty database: snapshots of nothing,
		 * migrations applied to nowhere */
		return err_set(err, ERR_FAIL, "cannot open database '%s': not a regular file",
			       e->url.path);
	}
	return 0;
}

static int sqlite_open(struct engine *e, unsigned flags, struct sm_error *err)
{
	struct sqlite_impl *s;
	int create = (flags & ENGINE_CREATE) != 0;

	if (check_path(e, create, err) < 0)
		return -1;
	s = xcalloc(1, sizeof(*s));
	s->lock_fd = -1;
	s->busy_ms = 10000;
	if (open_handle(e, SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0), s->busy_ms,
			&s->db, err) < 0) {
		free(s);
		return -1;
	}
	s->opened = 1;
	e->impl = s;
	return 0;
}

/* The file at the path is another one now (a tool wrote a new file and
 * renamed it over the path): the connection follows it.  The lock is
 * flock() on a file of its own, named after the path, so it is held
 * throughout.  What this connection knew of the old file means nothing
 * for the new one: marks taken before no longer compare (writes_since
 * reports unknown writes) and every table counts as written. */
static int sqlite_reopen(struct engine *e, struct sm_error *err)
{
	struct sqlite_impl *s = e->impl;
	sqlite3 *db = NULL, *old = s->db;
	int persist = 1;

	if (check_path(e, 0, err) < 0 ||
	    open_handle(e, SQLITE_OPEN_NOMUTEX, s->busy_ms, &db, err) < 0)
		return -1;
	if (s->tracking)
		s->written_all = 1;
	/* set before the old one goes: a signal handler interrupts s->db */
	s->db = db;
	set_authorizer(s);
	s->opened++;
	e->in_tx = 0;
	/* the old file's -wal and -journal are named after the path, which
	 * is the new file's now: closing must neither checkpoint into nor
	 * remove them (its own transaction, if one was left open, is rolled
	 * back in its own file) */
	sqlite3_db_config(old, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
	sqlite3_file_control(old, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
	sqlite3_close_v2(old);
	return 0;
}

static void sqlite_close(struct engine *e)
{
	struct sqlite_impl *s = e->impl;

	if (!s)
		return;
	sqlite3_close_v2(s->db);
	track_clear(s);
	free(s->denied);
	free(s->elsewhere);
	free(s->lock_path);
	free(s);
	e->impl = NULL;
}

static int sqlite_fail(struct engine *e, const char *sql, size_t off,
		       const struct exec_source *src, struct sm_error *err)
{
	struct sqlite_impl *s = e->impl;
	int code = sqlite3_extended_errcode(s->db);
	/* a refusal of confine_writes: SQLite's own reads "not authorized" */
	const char *msg = s->denied ? s->denied : sqlite3_errmsg(s->db);

	if (code == SQLITE_INTERRUPT) {
		err_set(err, ERR_INTERRUPTED, "statement interrupted");
		return -1;
	}
	if (src && src->file)
		return err_set(err, ERR_FAIL, "'%s', line %d: %s", src->file,
			       engine_line_at(sql, off, src->first_line), msg);
	return err_set(err, ERR_FAIL, "line %d: %s", engine_line_at(sql, off, 1), msg);
}

/* Whether the statement that just ran (ok: it succeeded) committed a
 * change outside a transaction of ours: one that wrote in autocommit mode
 * (a failed one was rolled back by SQLite), or one that ended a
 * transaction the script began other than by rolling it back (COMMIT, END,
 * the outermost RELEASE).  sqlite3_stmt_readonly is true of the
 * connection's own settings (PRAGMA foreign_keys=OFF) and of transaction
 * control, false of VACUUM and of PRAGMA journal_mode and user_version. */
static int stmt_committed(sqlite3 *db, sqlite3_stmt *stmt, int autocommit_before, int ok,
			  const char *text)
{
	if (!ok || !sqlite3_get_autocommit(db))
		return 0;
	if (autocommit_before)
		return !sqlite3_stmt_readonly(stmt);
	return sqlite3_strnicmp(text, "ROLLBACK", 8) != 0;
}

static int sqlite_exec_script(struct engine *e, const char *sql, const struct exec_source *src,
			      struct sm_error *err)
{
	struct sqlite_impl *s = e->impl;
	const char *p = sql;

	while (*p) {
		int autocommit;
		sqlite3_stmt *stmt = NULL;
		const char *tail = NULL;
		size_t start = (size_t)(p - sql) + engine_skip_space(p, strlen(p));
		int rc;

		free(s->denied);
		free(s->elsewhere);
		s->denied = s->elsewhere = NULL;
		rc = sqlite3_prepare_v2(s->db, p, -1, &stmt, &tail);
		if (rc != SQLITE_OK)
			return sqlite_fail(e, sql, start, src, err);
		if (!stmt) /* only whitespace or comments were left */
			break;
		if (s->elsewhere && !sqlite3_stmt_readonly(stmt)) {
			/* a PRAGMA that sets something of an attached database */
			deny_elsewhere(s, s->elsewhere);
			sqlite3_finalize(stmt);
			return sqlite_fail(e, sql, start, src, err);
		}
		if (e->in_tx && engine_is_tx_control(sql + start, strlen(sql + start))) {
			/* a COMMIT here would commit the migration half-way and
			 * leave the version table write outside any transaction */
			size_t shown = strcspn(sql + start, ";\n");
			struct strbuf where = STRBUF_INIT;
			if (src && src->file)
				sb_addf(&where, "'%s', ", src->file);
			err_set(err, ERR_FAIL, "%sline %d: '%.*s' would end the transaction the "
				"migration runs in; remove it, or mark the migration "
				"transaction:false", where.buf,
				engine_line_at(sql, start, src ? src->first_line : 1), (int)shown,
				sql + start);
			sb_release(&where);
			sqlite3_finalize(stmt);
			return -1;
		}
		track_report(e);
		if (e->observer)
			e->observer->before(e->observer->ud, e, sql + start,
					    (size_t)(tail - (sql + start)), src,
					    engine_line_at(sql, start, src ? src->first_line : 1));
		autocommit = sqlite3_get_autocommit(s->db);
		s->vacuuming = sqlite_stmt_is_vacuum(stmt);
		do {
			rc = sqlite3_step(stmt);
		} while (rc == SQLITE_ROW);
		s->vacuuming = 0;
		if (!e->in_tx && stmt_committed(s->db, stmt, autocommit, rc == SQLITE_DONE,
						sql + start))
			e->script_committed = 1;
		if (rc != SQLITE_DONE) {
			sqlite_fail(e, sql, start, src, err);
			sqlite3_finalize(stmt);
			if (e->observer)
				e->observer->after(e->observer->ud, e, 0);
			return -1;
		}
		sqlite3_finalize(stmt);
		if (e->observer)
			e->observer->after(e->observer->ud, e, 1);
		p = tail;
	}
	return 0;
}

static int sqlite_split(const char *sql, stmt_cb cb, void *ud, struct sm_error *err)
{
	/* A connection to an empty in-memory database is enough for
	 * sqlite3_complete-style splitting: we do not prepare (names would not
	 * resolve); we cut at each complete statement. */
	const char *p = sql, *end = sql + strlen(sql);
	struct strbuf acc = STRBUF_INIT;
	struct engine_lines lines;
	int ret = 0;

	engine_lines_init(&lines, sql, 1);
	while (*p) {
		size_t skip = engine_skip_space(p, (size_t)(end - p));
		const char *start = p + skip;
		const char *q = start;
		int found = 0;

		if (!*start)
			break;
		/* extend to each ';' until sqlite3_complete accepts the text */
		sb_reset(&acc);
		while (*q) {
			const char *semi = strchr(q, ';');
			if (!semi) {
				q = end;
				break;
			}
			/* grows by the piece since the last ';': the statement is
			 * copied once, however many ';' its strings hold */
			sb_add(&acc, q, (size_t)(semi + 1 - q));
			q = semi + 1;
			if (sqlite3_complete(acc.buf)) {
				found = 1;
				break;
			}
		}
		(void)found;
		ret = cb(ud, start, (size_t)(q - start),
			 engine_lines_at(&lines, (size_t)(start - sql)));
		if (ret)
			break;
		p = q;
	}
	sb_release(&acc);
	(void)err;
	return ret;
}

static int sqlite_simple(struct engine *e, const char *sql, struct sm_error *err)
{
	struct sqlite_impl *s = e->impl;

	if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return err_set(err, sqlite3_extended_errcode(s->db) == SQLITE_INTERRUPT ?
				    ERR_INTERRUPTED : ERR_FAIL,
			       "%s failed: %s", sql, sqlite3_errmsg(s->db));
	return 0;
}

static int sqlite_begin(struct engine *e, struct sm_error *err)
{
	/* IMMEDIATE takes the write lock now, so a migration never fails
	 * half-way with SQLITE_BUSY on its first write */
	if (sqlite_simple(e, "BEGIN IMMEDIATE", err) < 0)
		return -1;
	e->in_tx = 1;
	return 0;
}

static int sqlite_commit(struct engine *e, struct sm_error *err)
{
	if (sqlite_simple(e, "COMMIT", err) < 0)
		return -1;
	e->in_tx = 0;
	return 0;
}

static int sqlite_rollback(struct engine *e, struct sm_error *err)
{
	struct sqlite_impl *s = e->impl;

	e->in_tx = 0;
	if (sqlite3_get_autocommit(s->db))
		return 0; /* SQLite already rolled back (e.g. after an interrupt) */
	return sqlite_simple(e, "ROLLBACK", err);
}

static int sqlite_tx_open(struct engine *e)
{
	return !sqlite3_get_autocommit(((struct sqlite_impl *)e->impl)->db);
}

/* PRAGMA locking_mode=EXCLUSIVE keeps the file locked once a transaction
 * took the lock, after it ended; NORMAL lets go at the next access (the
 * pragma answers with the mode the file is in now).  A connection that
 * entered WAL mode in EXCLUSIVE mode keeps its WAL index in its own memory
 * and cannot go back to NORMAL until it leaves WAL mode (the pragma still
 * answers "exclusive"): it leaves it then (DELETE, which checkpoints),
 * which no other connection can prevent, since none could open the
 * database meanwhile.
 *
 * In WAL mode every connection keeps a shared lock on the file for as long
 * as it is open, which keeps any other from leaving WAL mode, as a restore
 * must when the snapshot's page size or journal mode differs
 * (restore_sqlite.c): this one leaves WAL mode when no other connection
 * has the database open (the restore then gives back the snapshot's
 * mode), and else stays in it, as the others keep it anyway. */
static int sqlite_release_locks(struct engine *e, struct sm_error *err)
{
	struct sqlite_impl *s = e->impl;
	char *mode = NULL;
	int exclusive;

	if (sqlite_rollback(e, err) < 0 ||
	    engine_scalar(e, "PRAGMA locking_mode = NORMAL", 0, NULL, &mode, err) < 0)
		return -1;
	exclusive = mode && !sqlite3_stricmp(mode, "exclusive");
	free(mode);
	if (exclusive && (sqlite_simple(e, "PRAGMA journal_mode = DELETE", err) < 0 ||
			  sqlite_simple(e, "PRAGMA locking_mode = NORMAL", err) < 0))
		return -1;
	if (sqlite_journal_is_wal(s->db))
		(void)sqlite_set_journal_wal(s->db, 0);
	return sqlite_simple(e, "SELECT count(*) FROM sqlite_master", err);
}

static int sqlite_query(struct engine *e, const char *sql, int nparams, const char *const *params,
			struct eng_rows *rows, struct sm_error *err)
{
	struct sqlite_impl *s = e->impl;
	sqlite3_stmt *stmt = NULL;
	size_t alloc = 0;
	int rc, ret = -1;

	if (rows)
		memset(rows, 0, sizeof(*rows));
	if (sqlite3_prepare_v2(s->db, sql, -1, &stmt, NULL) != SQLITE_OK) {
		err_set(err, ERR_FAIL, "%s", sqlite3_errmsg(s->db));
		goto out;
	}
	for (int i = 0; i < nparams; i++) {
		char name[16];
		int idx;

		snprintf(name, sizeof(name), "$%d", i + 1);
		idx = sqlite3_bind_parameter_index(stmt, name);
		if (!idx)
			continue;
		if (params[i])
			sqlite3_bind_text(stmt, idx, params[i], -1, SQLITE_TRANSIENT);
		else
			sqlite3_bind_null(stmt, idx);
	}
	if (rows) {
		rows->ncols = (size_t)sqlite3_column_count(stmt);
		rows->colnames = xcalloc(rows->ncols ? rows->ncols : 1, sizeof(char *));
		for (size_t c = 0; c < rows->ncols; c++)
			rows->colnames[c] = xstrdup(sqlite3_column_name(stmt, (int)c));
	}
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (!rows)
			continue;
		ALLOC_GROW(rows->cells, (rows->nrows + 1) * rows->ncols, alloc);
		for (size_t c = 0; c < rows->ncols; c++) {
			const unsigned char *v = sqlite3_column_text(stmt, (int)c);
			rows->cells[rows->nrows * rows->ncols + c] = v ? xstrdup((const char *)v) : NULL;
		}
		rows->nrows++;
	}
	if (rc != SQLITE_DONE) {
		err_set(err, rc == SQLITE_INTERRUPT ? ERR_INTERRUPTED : ERR_FAIL, "%s",
			sqlite3_errmsg(s->db));
		goto out;
	}
	ret = 0;
out:
	sqlite3_finalize(stmt);
	if (ret < 0 && rows)
		rows_release(rows);
	return ret;
}

/* Whether fd is still the file at path: a holder unlinks the lock file
 * before it lets go (sqlite_unlock), so a waiter that got the lock of an
 * unlinked file must open the path again (the usual lock-file protocol). */
static int lock_is_current(int fd, const char *path)
{
	struct stat a, b;

	return fstat(fd, &a) == 0 && lstat(path, &b) == 0 && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino;
}

static int sqlite_lock(struct engine *e, long timeout_ms, struct sm_error *err)
{
	struct sqlite_impl *s = e->impl;
	struct strbuf path = STRBUF_INIT;
	struct timespec start, now;
	char *real;

	if (s->lock_fd >= 0)
		return 0;
	/* named after the file, not the spelling of its path: a run through
	 * a symbolic link and a recover through the real path must exclude
	 * each other (the journal already goes by the file's identity), and
	 * SQLite names its journal after the resolved path too */
	real = fs_resolve(e->url.path);
	sb_addf(&path, "%s-safe-migrate.lock", real);
	free(real);
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		long waited;

		if (s->lock_fd < 0) {
			s->lock_fd = fs_open_lock(path.buf, 0600, err);
			if (s->lock_fd < 0) {
				err_prefix(err, "lock file");
				sb_release(&path);
				return -1;
			}
		}
		if (flock(s->lock_fd, LOCK_EX | LOCK_NB) == 0) {
			if (lock_is_current(s->lock_fd, path.buf))
				break;
			/* its holder removed it: lock the file now at path */
			close(s->lock_fd);
			s->lock_fd = -1;
			continue;
		}
		if (errno != EWOULDBLOCK && errno != EINTR) {
			err_sys(err, "cannot lock '%s'", path.buf);
			goto fail;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		waited = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
		if (waited >= timeout_ms) {
			err_set(err, ERR_LOCKED,
				"another migration is running on '%s' (lock '%s' held); gave up after "
				"%ld ms", e->url.path, path.buf, timeout_ms);
			goto fail;
		}
		usleep(20000);
	}
	s->lock_path = sb_detach(&path);
	return 0;
fail:
	close(s->lock_fd);
	s->lock_fd = -1;
	sb_release(&path);
	return -1;
}

static void sqlite_unlock(struct engine *e)
{
	struct sqlite_impl *s = e->impl;

	if (!s || s->lock_fd < 0)
		return;
	/* the lock file is removed while still locked: a waiter that opened
	 * it finds, once it gets the lock, that the name is gone or another
	 * file's, and starts over (lock_is_current).  One left by a killed run
	 * is removed by the next run's unlock. */
	if (s->lock_path && lock_is_current(s->lock_fd, s->lock_path))
		(void)unlink(s->lock_path);
	flock(s->lock_fd, LOCK_UN);
	close(s->lock_fd);
	s->lock_fd = -1;
	free(s->lock_path);
	s->lock_path = NULL;
}

static int sqlite_set_timeouts(struct engine *e, long lock_timeout_ms, long statement_timeout_ms,
			       struct sm_error *err)
{
	struct sqlite_impl *s = e->impl;

	/* SQLite has no statement timeout; lock_timeout is how long to wait
	 * for another connection's write lock */
	(void)statement_timeout_ms;
	(void)err;
	if (lock_timeout_ms > 0) {
		s->busy_ms = (int)lock_timeout_ms;
		sqlite3_busy_timeout(s->db, s->busy_ms);
	}
	return 0;
}

static void sqlite_interrupt(struct engine *e)
{
	struct sqlite_impl *s = e->impl;

	if (s && s->db)
		sqlite3_interrupt(s->db);
}

static int sqlite_server_version(struct engine *e, struct strbuf *out, struct sm_error *err)
{
	(void)e;
	(void)err;
	sb_addf(out, "SQLite %s", sqlite3_libversion());
	return 0;
}

static void sqlite_quote_literal(struct strbuf *out, const char *s)
{
	sb_addch(out, '\'');
	for (const char *c = s; *c; c++) {
		if (*c == '\'')
			sb_addch(out, '\'');
		sb_addch(out, *c);
	}
	sb_addch(out, '\'');
}

static int sqlite_table_exists(struct engine *e, const char *name, int *exists,
			       struct sm_error *err)
{
	char *v = NULL;
	const char *params[] = { name };

	if (engine_scalar(e, "SELECT count(*) FROM sqlite_master WHERE type IN ('table','view') "
			  "AND name = $1", 1, params, &v, err) < 0)
		return -1;
	*exists = v && strcmp(v, "0") != 0;
	free(v);
	return 0;
}

/* ---- other connections' writes ---------------------------------------------
 * PRAGMA data_version changes when another connection committed to the
 * file, never for this connection's own commits.  SQLite keeps no per-table
 * counts, so the table is "*" and the rows "?".  The value means something
 * only to the connection that read it: a mark names the connection
 * ("OPENED:DATA_VERSION"), so one taken before a reopen never matches. */

static int sqlite_writes_mark(struct engine *e, char **mark, struct sm_error *err)
{
	struct sqlite_impl *s = e->impl;
	struct strbuf sb = STRBUF_INIT;
	char *version = NULL;

	*mark = NULL;
	if (engine_scalar(e, "PRAGMA data_version", 0, NULL, &version, err) < 0)
		return -1;
	sb_addf(&sb, "%u:%s", s->opened, version ? version : "");
	free(version);
	*mark = sb_detach(&sb);
	return 0;
}

static int sqlite_writes_since(struct engine *e, const char *mark, struct strbuf *out,
			       struct sm_error *err)
{
	char *now = NULL;

	if (sqlite_writes_mark(e, &now, err) < 0)
		return -1;
	if (!mark || strcmp(mark, now) != 0)
		sb_adds(out, "*\t?\n");
	free(now);
	return 0;
}

/* More tables than this written: any may have changed (the list is
 * searched linearly on every authorization). */
#define TRACK_MAX 256

static void track_table(struct sqlite_impl *s, const char *name)
{
	if (s->written_all)
		return;
	if (!name || strchr(name, '\n') || s->nwritten >= TRACK_MAX) {
		s->written_all = 1;
		return;
	}
	for (size_t i = 0; i < s->nwritten; i++)
		if (!sqlite3_stricmp(s->written[i], name))
			return;
	ALLOC_GROW(s->written, s->nwritten + 1, s->alloc_written);
	s->written[s->nwritten++] = xstrdup(name);
}

/* The authorizer sees every statement as it is compiled, with the code of
 * its triggers and foreign-key actions: each write names its table.  A
 * code that is not known to leave rows and foreign keys as they were makes
 * every table count as written. */
static int conn_auth(void *ud, int code, const char *a1, const char *a2, const char *db,
		     const char *trigger)
{
	struct sqlite_impl *s = ud;

	(void)trigger;
	if (s->confined && !s->vacuuming && confine_auth(s, code, a1, db) != SQLITE_OK)
		return SQLITE_DENY;
	if (!s->tracking)
		return SQLITE_OK;
	switch (code) {
	case SQLITE_INSERT:
	case SQLITE_UPDATE:
	case SQLITE_DELETE:
	case SQLITE_CREATE_TABLE:
	case SQLITE_CREATE_TEMP_TABLE:
	case SQLITE_DROP_TABLE:
	case SQLITE_DROP_TEMP_TABLE:
	case SQLITE_CREATE_VTABLE:
	case SQLITE_DROP_VTABLE:
		track_table(s, a1);
		break;
	case SQLITE_CREATE_INDEX: /* a parent key's unique index */
	case SQLITE_CREATE_TEMP_INDEX:
	case SQLITE_DROP_INDEX:
	case SQLITE_DROP_TEMP_INDEX:
		track_table(s, a2);
		break;
	case SQLITE_PRAGMA: /* writable_schema lets sqlite_master be edited */
		if (!a1 || !sqlite3_stricmp(a1, "writable_schema"))
			s->written_all = 1;
		break;
	case SQLITE_READ:
	case SQLITE_SELECT:
	case SQLITE_FUNCTION:
	case SQLITE_RECURSIVE:
	case SQLITE_TRANSACTION:
	case SQLITE_SAVEPOINT:
	case SQLITE_ANALYZE:
	case SQLITE_REINDEX:
	case SQLITE_ATTACH:
	case SQLITE_DETACH:
	case SQLITE_CREATE_VIEW:
	case SQLITE_CREATE_TEMP_VIEW:
	case SQLITE_DROP_VIEW:
	case SQLITE_DROP_TEMP_VIEW:
	case SQLITE_CREATE_TRIGGER:
	case SQLITE_CREATE_TEMP_TRIGGER:
	case SQLITE_DROP_TRIGGER:
	case SQLITE_DROP_TEMP_TRIGGER:
		break;
	default: /* ALTER TABLE: a rename rewrites other tables' REFERENCES */
		s->written_all = 1;
		break;
	}
	return SQLITE_OK;
}

static int sqlite_track_writes(struct engine *e, engine_write_cb before_write, void *ud,
			       struct sm_error *err)
{
	struct sqlite_impl *s = e->impl;

	(void)err;
	track_clear(s);
	s->before_write = before_write;
	s->before_write_ud = ud;
	s->tracking = 1;
	set_authorizer(s);
	return 0;
}

/* The authorizer serves track_writes and confine_writes: there while
 * either is on, on whichever connection s has now (reopen). */
static void set_authorizer(struct sqlite_impl *s)
{
	sqlite3_set_authorizer(s->db, s->tracking || s->confined ? conn_auth : NULL, s);
}

static int sqlite_confine_writes(struct engine *e, int on, struct sm_error *err)
{
	struct sqlite_impl *s = e->impl;

	(void)err;
	s->confined = on;
	set_authorizer(s);
	return 0;
}

/* Hands the tables the statement just prepared writes, and no statement
 * before it did, to before_write: the statement has not run yet. */
static void track_report(struct engine *e)
{
	struct sqlite_impl *s = e->impl;
	struct strbuf tables = STRBUF_INIT;

	if (!s->tracking || !s->before_write || s->reporting)
		return;
	if (s->written_all && !s->all_reported) {
		sb_adds(&tables, "*\n");
		s->all_reported = 1;
	}
	for (; s->reported < s->nwritten; s->reported++)
		sb_addf(&tables, "%s\n", s->written[s->reported]);
	if (tables.len) {
		s->reporting = 1; /* its queries only read; never report them */
		s->before_write(s->before_write_ud, e, tables.buf);
		s->reporting = 0;
	}
	sb_release(&tables);
}

static int sqlite_tracked_writes(struct engine *e, struct strbuf *out, struct sm_error *err)
{
	struct sqlite_impl *s = e->impl;

	(void)err;
	if (!s->tracking || s->written_all) {
		sb_adds(out, "*\n");
		return 0;
	}
	for (size_t i = 0; i < s->nwritten; i++)
		sb_addf(out, "%s\n", s->written[i]);
	return 0;
}

static int sqlite_user_schemas(struct engine *e, struct strbuf *out, struct sm_error *err)
{
	(void)e;
	(void)out;
	(void)err;
	return 0;
}

static int sqlite_identity(struct engine *e, struct engine_identity *id, struct sm_error *err)
{
	struct sqlite_impl *s = e->impl;
	const char *file = sqlite3_db_filename(s->db, "main");
	struct stat st;

	memset(id, 0, sizeof(*id));
	if (!file || !*file)
		return err_set(err, ERR_FAIL, "database '%s' has no file", e->url.path);
	if (stat(file, &st) < 0)
		return err_sys(err, "cannot stat '%s'", file);
	snprintf(id->key, sizeof(id->key), "sqlite:%ju:%ju", (uintmax_t)st.st_dev,
		 (uintmax_t)st.st_ino);
	snprintf(id->label, sizeof(id->label), "'%s'", file);
	return 0;
}

static void sqlite_client_url(const struct db_url *url, struct strbuf *out)
{
	char *abs = fs_absolute(url->path);

	sb_addf(out, "sqlite:///%s", abs);
	free(abs);
}

static int sqlite_make_scratch(struct strbuf *url_out, char **remove, struct sm_error *err)
{
	char tmpl[] = "/tmp/safe-migrate-roundtrip-XXXXXX";
	int fd = mkstemp(tmpl);

	*remove = NULL;
	if (fd < 0)
		return err_sys(err, "cannot create a scratch database in /tmp");
	close(fd);
	*remove = xstrdup(tmpl);
	sb_addf(url_out, "sqlite:///%s", tmpl);
	return 0;
}

const struct engine_ops engine_sqlite_ops = {
	.name = "sqlite",
	.display_name = "SQLite",
	.open = sqlite_open,
	.close = sqlite_close,
	.reopen = sqlite_reopen,
	.exec_script = sqlite_exec_script,
	.split = sqlite_split,
	.begin = sqlite_begin,
	.commit = sqlite_commit,
	.rollback = sqlite_rollback,
	.tx_open = sqlite_tx_open,
	.release_locks = sqlite_release_locks,
	.query = sqlite_query,
	.lock = sqlite_lock,
	.unlock = sqlite_unlock,
	.set_timeouts = sqlite_set_timeouts,
	.interrupt = sqlite_interrupt,
	.server_version = sqlite_server_version,
	.quote_ident = engine_quote_ident_sql,
	.quote_literal = sqlite_quote_literal,
	.table_exists = sqlite_table_exists,
	.writes_mark = sqlite_writes_mark,
	.writes_since = sqlite_writes_since,
	.track_writes = sqlite_track_writes,
	.tracked_writes = sqlite_tracked_writes,
	.confine_writes = sqlite_confine_writes,
	.user_schemas = sqlite_user_schemas,
	.identity = sqlite_identity,
	.client_url = sqlite_client_url,
	.make_scratch = sqlite_make_scratch,
	/* foreign_keys cannot change inside a transaction; off, dropping a
	 * referenced table does not cascade deletes or fail */
	.drop_prepare_sql = "PRAGMA foreign_keys = OFF",
	.drop_list_sql =
		"SELECT type, '\"' || replace(name, '\"', '\"\"') || '\"', name FROM sqlite_master "
		"WHERE type IN ('view', 'table') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
		"ORDER BY type = 'table', name",
	.drop_suffix = "",
};
