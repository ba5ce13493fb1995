/*
 * restore: loading a snapshot back into a database.
 *
 * restore_snapshot() is engine-agnostic: it opens the snapshot, picks the
 * driver for the snapshot's engine (restore.c's table, keyed by the header's
 * "engine" which equals e->ops->name) and runs it in two phases:
 *
 *   load   streams the snapshot into a staging area that is NOT the target
 *          (SQLite: a temp file next to the target) while every checksum is
 *          computed; then the whole snapshot is verified (snap_reader_finish).
 *          A driver whose apply verifies as it streams (verifies_in_apply)
 *          skips this pass: apply checks everything before it commits.
 *   apply  only after verification, and after opts->before_apply (the CLI
 *          asks for confirmation and takes the safety snapshot there) agreed:
 *          puts the staged data into the target so that other connections
 *          see either the old or the new database, never a mix.
 *
 * restore cannot depend on backup, so the safety snapshot is the caller's
 * business, done in before_apply.  Nothing here prints.
 */
#ifndef SM_RESTORE_H
#define SM_RESTORE_H

#include <cjson/cJSON.h>
#include <signal.h>

#include "engine.h"
#include "error.h"
#include "snapshot.h"

struct restore_opts {
	/* Called after the snapshot was loaded and verified, before the target
	 * is touched; returning -1 (with err) cancels the restore. May be NULL.
	 * manifest is NULL for a driver that verifies in apply; header (the
	 * snapshot's first entry: engine, source, source_identity, revision,
	 * checked equal to the manifest's before anything commits) is always
	 * there, so that a stream need not be opened a second time for it. */
	int (*before_apply)(void *ud, const cJSON *manifest, const cJSON *header,
			    struct sm_error *err);
	void *ud;
	snap_progress_fn progress; /* compressed bytes read of the snapshot */
	void *progress_ud;
	/* PostgreSQL: parallel workers (0 or 1: one transaction).  More than
	 * one only with to_other: a parallel restore is not atomic. */
	int jobs;
	int to_other;          /* the target is not the snapshot's database (restore --to) */
	long lock_timeout_ms;  /* how long to wait for a table lock (0: no limit) */
	/* In place, after a failed run: the user schemas that existed before
	 * the run (one per line).  A user schema in neither this list nor the
	 * snapshot was created by the run and is dropped.  NULL: none dropped. */
	const char *keep_schemas;
	/* In place: called once other sessions can no longer write to the
	 * target and before anything is replaced (PostgreSQL: inside the
	 * restore's transaction, which has locked every table of the
	 * snapshot's schemas; SQLite: while the restore's connection holds the
	 * write lock, kept until the copy commits: in rollback-journal mode by
	 * locking_mode=EXCLUSIVE, in WAL mode by the copy itself, begun without
	 * a page written).  The pipeline saves
	 * the failed state there.  Returning -1 (with err) cancels the restore,
	 * which then changed nothing.  May be NULL. */
	int (*writers_blocked)(void *ud, struct sm_error *err);
	void *writers_blocked_ud;
	/* In place: called once the snapshot's data is in the target and
	 * before other sessions can write to it again, on the restore's own
	 * connection (target): PostgreSQL inside the restore's transaction,
	 * before COMMIT (-1 rolls the whole restore back); SQLite with the
	 * write lock still held (-1 cannot take the copy back).  The caller
	 * confirms the restored state there, where no other session's write
	 * can pass for a faulty restore.  Not called when the driver could not
	 * keep writers out from the copy to the check (SQLite in WAL mode, when
	 * another connection committed in between).  May be NULL. */
	int (*verify)(void *ud, struct engine *target, struct sm_error *err);
	void *verify_ud;
	/* The target did not exist before this restore (the caller created it):
	 * no other connection can be using it, so a driver may move the staged
	 * database into place instead of copying it in. */
	int target_new;
	/* Check the staged database even when the snapshot says its backup
	 * checked these pages (SQLite: extra.quick_check "ok"): restore
	 * --check, verify --restore-to. */
	int check_again;
	/* The snapshot's backup found problems in the very pages it copied
	 * (restore_recorded_problems): restore them as they were instead of
	 * refusing the snapshot, provided the staged copy, checked all the
	 * same, fails exactly as recorded (anything else is refused).  The
	 * pipeline's automatic restore, recover, a rehearsal copy and restore
	 * --accept-recorded-problems: the database goes back to its state
	 * before the run, problems it already had included, rather than
	 * staying in the failed run's state. */
	int accept_recorded_problems;
	/* In place: a sequence that other sessions (or the run) moved on since
	 * the snapshot is not set back behind where it is (PostgreSQL: it
	 * ends at the further of its position before the restore and the
	 * snapshot's).  Undoing a failed run must not hand out again the ids
	 * an application already got, as a ROLLBACK does not rewind a
	 * sequence either.  The pipeline's automatic restore and recover. */
	int sequences_ahead;
	/* Where a restore that succeeded says what it could not do as asked
	 * and the caller should tell (one line each; SQLite: a journal mode it
	 * could not put back).  Borrowed, may be NULL. */
	struct strbuf *notes;
	/* A signal handler's flag (borrowed, may be NULL): once set, the
	 * restore stops at the next block or statement with ERR_INTERRUPTED.
	 * Server-side statements already running are the caller's to cancel
	 * (the engine's interrupt op), except those of --jobs workers, which
	 * the parallel restore cancels itself. */
	volatile sig_atomic_t *interrupted;
};

struct restore_driver {
	const char *engine; /* e->ops->name */
	/* Loads the snapshot's entries from r into a staging area; *state is
	 * the driver's (freed by discard).  Must not touch the target's data. */
	int (*load)(struct engine *target, struct snap_reader *r, const struct restore_opts *opts,
		    void **state, struct sm_error *err);
	/* Makes the staged data the target's, atomically for other connections. */
	int (*apply)(struct engine *target, void *state, const cJSON *manifest,
		     const struct restore_opts *opts, struct sm_error *err);
	/* Removes the staging area.  Called always, state may be NULL. */
	void (*discard)(void *state);
	/* Set when apply streams the snapshot again and checks every entry
	 * against the manifest and the file against its sidecar before it
	 * commits (and whatever it runs before it has run it): restore.c then
	 * verifies nothing before apply, load gets a reader it must not read
	 * data from (it may check the file with snap_reader_check_file), and
	 * before_apply gets a NULL manifest. */
	int verifies_in_apply;
};

const struct restore_driver *restore_find_driver(const char *engine);

/*
 * Restores the snapshot at path into target (an open engine; for a new
 * SQLite database open it with ENGINE_CREATE).  The snapshot's engine must
 * match the target's.  Errors: ERR_DAMAGED when the snapshot fails
 * verification (the target is untouched), ERR_USAGE for an engine mismatch,
 * whatever before_apply returned, ERR_FAIL otherwise.
 */
int restore_snapshot(const char *path, struct engine *target, const struct restore_opts *opts,
		     struct sm_error *err);
/*
 * restore_snapshot from a stream (fd borrowed, e.g. stdin; label names it
 * in messages), read once.  The stream's SHA-256 is compared with sha256
 * (NULL: not checked, only the manifest's entry checksums are) before the
 * driver commits anything: SQLite stages the whole file before it moves it
 * into place; PostgreSQL loads in its one transaction and rolls back on a
 * mismatch.  A PostgreSQL restore that would need a second pass (--jobs, a
 * format-1 snapshot without declared checksums, the several-transaction
 * fallback) is refused rather than spooled.
 */
int restore_snapshot_fd(int fd, const char *label, const char *sha256, struct engine *target,
			const struct restore_opts *opts, struct sm_error *err);

/* The problems the snapshot's backup found in the pages it copied, as its
 * manifest's extra (extra, borrowed) records them (SQLite: extra.quick_check,
 * its check's first lines), or NULL when it found none or did not check.
 * A restore refuses such a snapshot unless accept_recorded_problems.
 * Borrowed from extra. */
const char *restore_recorded_problems(const cJSON *extra);

/* -1 with ERR_INTERRUPTED if opts->interrupted is set, else 0 (for drivers:
 * a last look before the commit point). */
int restore_interrupted(const struct restore_opts *opts, struct sm_error *err);

/* Engine drivers (restore_<engine>.c). */
extern const struct restore_driver restore_sqlite_driver;
extern const struct restore_driver restore_pg_driver;

#endif
