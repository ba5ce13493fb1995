/*
 * journal: the run journal and the runs log, kept next to the snapshots.
 *
 *   BACKUP_DIR/safe-migrate.journal    one JSON object for the current or last
 *                                      run: run_id, started_at, pid, user,
 *                                      database (redacted), command, phase,
 *                                      snapshot, outcome (null while running)
 *   BACKUP_DIR/safe-migrate-runs.jsonl one JSON line per finished run
 *
 * The journal is written durably (temp, fsync, rename) before the first
 * change and at every phase, so after a SIGKILL or a power loss the next run
 * finds a journal whose outcome is null and refuses to continue until the
 * operator runs `recover` or `recover --discard`.  Both files are mode 0600.
 */
#ifndef SM_JOURNAL_H
#define SM_JOURNAL_H

#include <cjson/cJSON.h>

#include "error.h"

#define JOURNAL_FILE "safe-migrate.journal"
#define RUNS_LOG_FILE "safe-migrate-runs.jsonl"

struct journal {
	char *path;   /* BACKUP_DIR/safe-migrate.journal */
	char *dir;
	cJSON *doc;   /* owned */
	long long t0; /* monotonic ms at start */
};

/* Starts a run: fills the journal in memory (not yet written). */
void journal_start(struct journal *j, const char *backup_dir, const char *command,
		   const char *database_redacted);
/* Sets the phase (and the snapshot, if not NULL) and writes the journal durably. */
int journal_phase(struct journal *j, const char *phase, const char *snapshot,
		  struct sm_error *err);
/* Records the wrapped command's pid and process group (run) and writes the
 * journal durably. */
int journal_set_child(struct journal *j, long pid, long pgid, struct sm_error *err);
/* Adds a timed phase record {"name","ms","ok"} to the run's phases list. */
void journal_add_phase(struct journal *j, const char *name, long long ms, int ok);
/* Sets the outcome, writes the journal and appends the run to the runs log.
 * extra (borrowed) is merged into the runs-log line (e.g. applied versions). */
int journal_finish(struct journal *j, const char *outcome, const cJSON *extra,
		   struct sm_error *err);
void journal_release(struct journal *j);
/*
 * When journal_finish failed (disk full, I/O error) for a run whose outcome
 * is known and needs no recover: removes the journal if it still describes
 * this process's run as unfinished, so that the next run is not told to
 * `recover` (which would restore the snapshot over a good database).
 * Returns 0 if no unfinished journal of ours is left, -1 with err otherwise.
 */
int journal_drop_own(const char *backup_dir, struct sm_error *err);

/* Reads BACKUP_DIR's journal.  *doc is NULL when there is none (caller owns it). */
int journal_read(const char *backup_dir, cJSON **doc, struct sm_error *err);
/* 1 if doc describes a run that did not finish and whose process is gone. */
int journal_unfinished(const cJSON *doc);
/* Marks the journal of an unfinished run as finished with outcome (recover). */
int journal_close_unfinished(const char *backup_dir, const char *outcome, struct sm_error *err);

#endif
