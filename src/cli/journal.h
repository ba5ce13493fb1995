/*
 * journal: the run journal and the runs log, kept next to the snapshots.
 *
 *   BACKUP_DIR/safe-migrate-<ID>.journal  one JSON object for the current or
 *                                      last run on one database: run_id,
 *                                      started_at, pid, user, database
 *                                      (redacted), identity, command, phase,
 *                                      snapshot, snapshot_sha256, child_pid
 *                                      and child_pgid (run),
 *                                      replaced_identity (the one the run
 *                                      began with, when it followed a
 *                                      replaced database), outcome (null
 *                                      while running, and after a failed
 *                                      restore until `recover`)
 *   BACKUP_DIR/safe-migrate-runs.jsonl one JSON line per finished run
 *
 * <ID> is the first 16 hex digits of the SHA-256 of the database's identity
 * (engine.h: struct engine_identity), so databases sharing a backup
 * directory have journals of their own, whatever their URLs look like.  A
 * run that sees its database replaced (a file renamed over the SQLite path)
 * moves its journal to the new identity (journal_follow).
 * (Versions before had one BACKUP_DIR/safe-migrate.journal; journal_find
 * still reads it for the database its "database" field names.)
 *
 * The journal file is written only by a run that reached its first change,
 * durably (temp, fsync, rename) before that change and at every phase, so
 * after a SIGKILL or a power loss the next run finds a journal whose outcome
 * is null and refuses to continue until the operator runs `recover` or
 * `recover --discard`.  "Unfinished" is the journal's own state read while
 * holding the migration lock (a live run holds it), never a PID.  Both
 * files are mode 0600.
 */
#ifndef SM_JOURNAL_H
#define SM_JOURNAL_H

#include <cjson/cJSON.h>

#include "engine.h"
#include "error.h"
#include "strbuf.h"

#define JOURNAL_LEGACY_FILE "safe-migrate.journal"
#define RUNS_LOG_FILE "safe-migrate-runs.jsonl"

struct journal {
	char *path;   /* BACKUP_DIR/safe-migrate-<ID>.journal */
	char *dir;
	cJSON *doc;   /* owned */
	long long t0; /* monotonic ms at start */
	int written;  /* the journal file holds this run */
};

/* BACKUP_DIR/safe-migrate-<ID>.journal for the database id (caller frees). */
char *journal_path(const char *backup_dir, const struct engine_identity *id);

/* Starts a run: fills the journal in memory (not yet written). */
void journal_start(struct journal *j, const char *backup_dir, const struct engine_identity *id,
		   const char *command, const char *database_redacted);
/* Sets the phase (and the snapshot, if not NULL) and writes the journal
 * durably. */
int journal_phase(struct journal *j, const char *phase, const char *snapshot,
		  struct sm_error *err);
/* Records the snapshot's SHA-256 (written with the next phase): the
 * automatic restore and `recover` restore only that file. */
void journal_set_snapshot_sha(struct journal *j, const char *sha256);
/* The database was replaced during the run (a file renamed over the
 * SQLite path): the journal follows it to the identity id now at that
 * place, so that after a kill the next run and `recover` on that database
 * find it.  Writes it durably under id's name first, then removes the one
 * under the old name (a kill in between leaves both; journal_find_replaced
 * passes over the old one).  Refuses, with err, when another run's
 * unfinished journal holds id's name.  A journal not yet written only
 * changes name. */
int journal_follow(struct journal *j, const struct engine_identity *id, struct sm_error *err);
/* Records the wrapped command's pid and process group (run) and writes the
 * journal durably. */
int journal_set_child(struct journal *j, long pid, long pgid, struct sm_error *err);
/* Adds a timed phase record {"name","ms","ok"} to the run's phases list. */
void journal_add_phase(struct journal *j, const char *name, long long ms, int ok);
/*
 * Records the outcome in the journal (if this run wrote one) and appends the
 * run to the runs log.  extra (borrowed) is merged into the runs-log line.
 * "restore_failed" and "concurrent_writes" (other sessions wrote, the run
 * did not restore: exit 8) leave the journal unfinished (outcome null, phase
 * the outcome): only `recover` or `recover --discard` closes it.
 */
int journal_finish(struct journal *j, const char *outcome, const cJSON *extra,
		   struct sm_error *err);
/* 1 for the outcomes that leave the journal unfinished (journal_finish). */
int journal_stays_open(const char *outcome);
void journal_release(struct journal *j);
/*
 * When journal_finish failed (disk full, I/O error) for a run whose outcome
 * is known and needs no recover: removes this run's journal, so that the
 * next run is not told to `recover` (which would restore the snapshot over a
 * good database).  Returns 0 if no unfinished journal of ours is left, -1
 * with err otherwise.
 */
int journal_drop_own(struct journal *j, struct sm_error *err);

/*
 * Finds the journal of the database id in backup_dir: its own file, else an
 * older version's shared BACKUP_DIR/safe-migrate.journal when that one is
 * unfinished (it blocks every database of the directory until recovered, as
 * it did; journal_belongs says whether `recover` may act on it).  *path and
 * *doc are NULL when there is none (caller owns both).  A damaged journal
 * fails.
 */
int journal_find(const char *backup_dir, const struct engine_identity *id,
		 const char *url_redacted, char **path, cJSON **doc, struct sm_error *err);
/* Finds an unfinished journal of a database at the same place as id (same
 * label: the SQLite file's path, the PostgreSQL database's name and system)
 * but another identity: the database was replaced (a file moved over it, a
 * database re-created) after a run on it was killed, or while it ran.  A
 * journal that journal_follow left behind (the same run as id's own
 * journal) does not count.  Returns 1 with *path and *doc (caller owns
 * both), or 0. */
int journal_find_replaced(const char *backup_dir, const struct engine_identity *id, char **path,
			  cJSON **doc);
/* 1 if the run doc records was killed while its wrapped command ran (run
 * -- COMMAND, phase "apply", the command's process recorded): that command
 * may itself have replaced the database before the run could follow it
 * (journal_follow), so a journal journal_find_replaced finds is this
 * database's run. */
int journal_command_was_running(const cJSON *doc);
/* Appends to names (one per line) the base names of the snapshots that the
 * unfinished journals in backup_dir name: a run in progress, or one killed
 * or failed until `recover` (prune never deletes those).  Not under any
 * lock, so a running run counts too.  A journal that cannot be read fails. */
int journal_open_snapshots(const char *backup_dir, struct strbuf *names, struct sm_error *err);
/* Reads one journal file; *doc NULL when it does not exist (caller owns it). */
int journal_read(const char *path, cJSON **doc, struct sm_error *err);
/* 1 if doc describes a run that did not finish.  Meaningful only while the
 * caller holds the migration lock: a running run holds it. */
int journal_unfinished(const cJSON *doc);
/* 1 if doc is the journal of the database id: by the identity it records;
 * an older journal without one, by its redacted URL (if it has one). */
int journal_belongs(const cJSON *doc, const struct engine_identity *id, const char *url_redacted);
/* Marks the journal at path as finished with outcome (recover). */
int journal_close_unfinished(const char *path, const char *outcome, struct sm_error *err);
/* A string field of doc, or def. */
const char *journal_str(const cJSON *doc, const char *key, const char *def);

/*
 * The run's mark in the database itself (table safe_migrate_runs: run_id,
 * journal, host, started_at).  The journal lives in the backup directory,
 * and a run given another one (-b, another working directory for the
 * default relative one, another machine) would not see it and would
 * migrate over a database a killed run left half changed.  The mark goes
 * with the database: written after the journal says "apply" and after the
 * snapshot (so no snapshot of the run holds it, and a restore of that
 * snapshot takes it away), removed before the journal is closed.
 *
 * journal_mark writes j's mark (creating the table if needed).
 * journal_unmark removes the mark of run_id, if any, and the table when no
 * mark is left in it (a run that changed nothing leaves no trace).
 */
int journal_mark(const struct journal *j, struct engine *e, struct sm_error *err);
int journal_unmark(struct engine *e, const char *run_id, struct sm_error *err);
/*
 * Looks at the marks in e's database of runs whose journal is not in
 * backup_dir (that one is journal_find's to judge).  A mark whose journal
 * says the run ended, or now holds a later run, is stale and removed.  One
 * whose journal is unfinished, gone, or on another machine blocks: returns
 * 1 with err (ERR_BLOCKED) naming the journal and how to recover it.  With
 * discard, a mark whose journal is gone or on another machine is removed
 * instead (`recover --discard`: the operator accepts the database as it
 * is), and its run id and journal are appended to cleared, one per line.
 * Returns 0 when nothing blocks, -1 with err when the marks cannot be read.
 */
int journal_check_marks(struct engine *e, const struct engine_identity *id,
			const char *backup_dir, int discard, struct strbuf *cleared,
			struct sm_error *err);

/* The journal file that speaks for e's database (journal_find's, else its
 * own name), for the safety checks; NULL when e cannot tell its identity.
 * Caller frees. */
char *journal_path_of(const char *backup_dir, struct engine *e, const char *url_redacted);

#endif
