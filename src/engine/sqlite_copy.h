/*
 * sqlite_copy: copying a whole SQLite database with the online backup API.
 *
 * Taking a snapshot and restoring one both copy "main" to "main" in a single
 * sqlite3_backup_step(-1): a few pages per step would restart from page 1
 * whenever another connection commits, and never finish under a steady
 * writer.  Backup lives in backup/ and restore in restore/, which may not
 * depend on each other, so the copy sits here, beside the SQLite backend.
 */
#ifndef SM_SQLITE_COPY_H
#define SM_SQLITE_COPY_H

#include <sqlite3.h>

#include "strbuf.h"

/* How long a copy waits for other connections' locks before giving up. */
#define SQLITE_COPY_GIVE_UP_MS 60000

/* Where a copy failed, so callers can say it in their own words. */
enum sqlite_copy_stage {
	SQLITE_COPY_INIT,   /* sqlite3_backup_init failed: sqlite3_errmsg(dst) says why */
	SQLITE_COPY_STEP,   /* the copy failed: sqlite3_errstr(rc) names it */
	SQLITE_COPY_LOCKED, /* other connections held locks past SQLITE_COPY_GIVE_UP_MS */
	SQLITE_COPY_FINISH, /* the copy completed but sqlite3_backup_finish failed */
	SQLITE_COPY_HELD,   /* the caller's held() said no: nothing was written */
};

/*
 * Copies all of src into dst, retrying while another connection holds a
 * lock, for up to SQLITE_COPY_GIVE_UP_MS.  Returns SQLITE_OK, or the failing
 * SQLite code with *stage saying where it failed.
 */
int sqlite_copy_whole(sqlite3 *dst, sqlite3 *src, enum sqlite_copy_stage *stage);

/*
 * sqlite_copy_whole, giving up after give_up_ms (<= 0: the default), that
 * first takes dst's write lock without writing a page and calls held(ud):
 * the backup keeps that lock until the copy commits, so no other
 * connection can commit between what held() does and the copy, in WAL
 * mode too (where a lock cannot outlive a transaction of dst's own, and
 * other connections go on reading meanwhile).  held() returns SQLITE_OK to
 * go on; anything else abandons the copy with nothing written and is
 * returned (*stage SQLITE_COPY_HELD).  held may be NULL.
 */
int sqlite_copy_whole_held(sqlite3 *dst, sqlite3 *src, long give_up_ms,
			   int (*held)(void *ud), void *ud, enum sqlite_copy_stage *stage);

/* Whether db's main database is in WAL mode. */
int sqlite_journal_is_wal(sqlite3 *db);

/*
 * Puts db's main database in WAL mode (wal) or out of it (DELETE), without
 * waiting for other connections: leaving WAL mode needs that no other
 * connection has the database open (each keeps a shared lock on the file
 * as long as it is open in WAL mode), entering it that none holds a lock
 * at that moment.  Returns SQLITE_OK when the database is in that mode
 * afterwards, else SQLite's code (SQLITE_BUSY: another connection is in
 * the way).  db's busy timeout is left as it was.
 */
int sqlite_set_journal_wal(sqlite3 *db, int wal);

/* Whether the statement at p (len bytes, comments skipped) is a VACUUM,
 * which SQLite refuses inside a transaction (VACUUM INTO too), and which
 * runs statements of its own on a database it attaches ("vacuum_db"). */
int sqlite_starts_vacuum(const char *p, size_t len);
/* The same of a prepared statement (leading comments skipped). */
int sqlite_stmt_is_vacuum(sqlite3_stmt *stmt);

/* The first column of the first row of sql (a PRAGMA) as an integer in
 * *out; -1 when it has none (sqlite3_errmsg(db) may say why). */
int sqlite_pragma_int(sqlite3 *db, const char *sql, long long *out);

/*
 * PRAGMA quick_check of all of db's main database, read in db's current
 * transaction (or one of its own).  Returns the number of problems found
 * (0: "ok"), their first max lines added to problems, sep between two; -1 when
 * the check could not run (problems then holds SQLite's message).  The
 * snapshot taken with a check records its outcome, and a restore of it
 * relies on that instead of checking again (docs/safety.md).
 */
int sqlite_quick_check(sqlite3 *db, int max, const char *sep, struct strbuf *problems);

/* The lines of a check's outcome a snapshot records (backup: extra.quick_check,
 * joined by newlines) and a restore of it compares with its own check
 * (restore_opts.accept_recorded_problems); further problems are counted. */
#define SQLITE_CHECK_MAX_LINES 50

#endif
