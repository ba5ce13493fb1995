/*
 * backup_sqlite: the SQLite driver of backup.
 *
 * A consistent copy comes from SQLite's online backup API in ONE full step
 * (sqlite3_backup_step(-1)): a backup taken a few pages per step restarts
 * from page 1 whenever another connection commits, so under a steady writer
 * it would never finish, while a single step holds a read transaction for
 * its duration and always does.  The copy goes to a scratch file in the
 * backup directory (journal off, no syncs: it is thrown away), is streamed
 * into the archive as data/main.db.NNNN chunks, and is deleted.
 */
#include <errno.h>
#include <fcntl.h>
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
#include "strbuf.h"
#include "xalloc.h"


static int pragma_int(sqlite3 *db, const char *sql, long long *out)
{
	sqlite3_stmt *st = NULL;
	int ok = 0;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
		*out = sqlite3_column_int64(st, 0);
		ok = 1;
	}
	sqlite3_finalize(st);
	return ok ? 0 : -1;
}

static int sqlite_estimate(struct engine *e, uint64_t *bytes, struct sm_error *err)
{
	sqlite3 *db = engine_native(e);
	long long pages = 0, size = 0;

	if (pragma_int(db, "PRAGMA page_count", &pages) < 0 ||
	    pragma_int(db, "PRAGMA page_size", &size) < 0)
		return err_set(err, ERR_FAIL, "cannot read the size of '%s': %s", e->url.path,
			       sqlite3_errmsg(db));
	/* the scratch copy plus an archive no smaller than it (random data does
	 * not compress), and a little room for the manifest */
	*bytes = 2 * (uint64_t)pages * (uint64_t)size + ((uint64_t)1 << 20);
	return 0;
}

static int describe_copy(struct snap_writer *w, sqlite3 *db, struct sm_error *err);

/* Copies main of src into the file at path in one step, and describes the
 * copy (row counts, geometry) in w's manifest. */
static int copy_db(sqlite3 *src, const char *path, struct snap_writer *w, struct sm_error *err)
{
	sqlite3 *dst = NULL;
	enum sqlite_copy_stage stage;
	int rc, ret = -1;

	if (sqlite3_open_v2(path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
	    SQLITE_OK) {
		err_set(err, ERR_FAIL, "cannot create '%s': %s", path,
			dst ? sqlite3_errmsg(dst) : "out of memory");
		goto out;
	}
	/* a scratch copy: no journal, no syncs */
	sqlite3_exec(dst, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; "
		     "PRAGMA locking_mode=EXCLUSIVE", NULL, NULL, NULL);
	rc = sqlite_copy_whole(dst, src, &stage);
	if (rc != SQLITE_OK) {
		if (stage == SQLITE_COPY_INIT)
			err_set(err, ERR_FAIL, "cannot start the backup: %s", sqlite3_errmsg(dst));
		else if (stage == SQLITE_COPY_LOCKED)
			err_set(err, ERR_LOCKED, "backup of the database failed: it stayed locked by "
				"another connection for %d s", SQLITE_COPY_GIVE_UP_MS / 1000);
		else
			err_set(err, rc == SQLITE_FULL && stage == SQLITE_COPY_STEP ? ERR_NOSPACE
										     : ERR_FAIL,
				"backup of the database failed: %s", sqlite3_errstr(rc));
		goto out;
	}
	ret = describe_copy(w, dst, err);
out:
	sqlite3_close(dst);
	return ret;
}

/* Row counts and page geometry of the copy, into the manifest. */
static int describe_copy(struct snap_writer *w, sqlite3 *db, struct sm_error *err)
{
	sqlite3_stmt *st = NULL;
	struct strbuf sql = STRBUF_INIT;
	long long pages = 0, size = 0;
	cJSON *extra;
	int ret = -1;

	if (sqlite3_prepare_v2(db, "SELECT name FROM sqlite_schema WHERE type = 'table' AND "
			       "name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name", -1, &st,
			       NULL) != SQLITE_OK) {
		err_set(err, ERR_FAIL, "cannot read the backup copy: %s", sqlite3_errmsg(db));
		goto out;
	}
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);
		long long n = 0;

		sb_reset(&sql);
		sb_adds(&sql, "SELECT count(*) FROM \"");
		for (const char *c = name; *c; c++) {
			if (*c == '"')
				sb_addch(&sql, '"');
			sb_addch(&sql, *c);
		}
		sb_addch(&sql, '"');
		/* virtual tables may not be countable without their module */
		if (pragma_int(db, sql.buf, &n) == 0)
			snap_set_row_count(w, name, n);
	}
	pragma_int(db, "PRAGMA page_count", &pages);
	pragma_int(db, "PRAGMA page_size", &size);
	extra = cJSON_CreateObject();
	cJSON_AddNumberToObject(extra, "page_size", (double)size);
	cJSON_AddNumberToObject(extra, "page_count", (double)pages);
	cJSON_AddStringToObject(extra, "payload", "data/main.db");
	snap_set_extra(w, extra);
	ret = 0;
out:
	sqlite3_finalize(st);
	sb_release(&sql);
	return ret;
}

static int read_fd(void *ud, void *buf, size_t cap, size_t *got, struct sm_error *err)
{
	int fd = *(int *)ud;
	ssize_t n;

	do {
		n = read(fd, buf, cap);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return err_sys(err, "cannot read the backup copy");
	*got = (size_t)n;
	return 0;
}

static int sqlite_take(struct engine *e, struct snap_writer *w, const struct backup_opts *opts,
		       struct sm_error *err)
{
	struct strbuf tmp = STRBUF_INIT, side = STRBUF_INIT;
	struct stat st;
	int fd = -1, ret = -1;

	sb_addf(&tmp, "%s/%s%ld.copy.db", snap_writer_dir(w), SNAP_TMP_PREFIX, (long)getpid());
	unlink(tmp.buf);
	/* created 0600 before SQLite opens it: it holds the whole database */
	fd = open(tmp.buf, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		err_sys(err, "cannot create '%s'", tmp.buf);
		goto out;
	}
	close(fd);
	fd = -1;
	if (copy_db(engine_native(e), tmp.buf, w, err) < 0)
		goto out;
	fd = open(tmp.buf, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		err_sys(err, "cannot open the backup copy '%s'", tmp.buf);
		goto out;
	}
	snap_set_progress(w, opts->progress, opts->progress_ud, (uint64_t)st.st_size);
	if (snap_add_entry_stream(w, "data/main.db", (uint64_t)st.st_size, read_fd, &fd, err) < 0)
		goto out;
	ret = 0;
out:
	if (fd >= 0)
		close(fd);
	unlink(tmp.buf);
	/* a WAL-format copy opened for counting may have left these */
	sb_addf(&side, "%s-wal", tmp.buf);
	unlink(side.buf);
	sb_reset(&side);
	sb_addf(&side, "%s-shm", tmp.buf);
	unlink(side.buf);
	sb_release(&side);
	sb_release(&tmp);
	return ret;
}

const struct backup_driver backup_sqlite_driver = {
	.engine = "sqlite",
	.take = sqlite_take,
	.estimate = sqlite_estimate,
};
