/*
 * pipeline_restore: what the pipeline decides around an automatic restore
 * (cmd_pipeline.c's restore_after_failure and the apply-failure decision).
 *
 * - Whether there is anything to undo: a migration that failed in its own
 *   transaction, with nothing committed before it, changed nothing.
 * - Whether other sessions wrote since the snapshot (the engine's write
 *   counters, minus the run's own): those writes are saved in a snapshot
 *   of the failed state before the restore, or the restore is not done
 *   (--on-concurrent-writes stop).
 * - Which user schemas existed before the run, so that the restore drops
 *   the ones the run created.
 */
#ifndef SM_PIPELINE_RESTORE_H
#define SM_PIPELINE_RESTORE_H

#include <signal.h>

#include "engine.h"
#include "error.h"
#include "strbuf.h"

struct restore_guard {
	char *mark;    /* the engine's write counters before the snapshot, or NULL */
	char *schemas; /* user schemas before the run, one per line, or NULL */
	char *outside; /* engine_ops.outside_state before the run, or NULL */
};

#define RESTORE_GUARD_INIT { NULL, NULL, NULL }

/* Reads --on-concurrent-writes: 0 restore (the default), 1 stop, -1 with err
 * for another value. */
int guard_policy_stop(struct sm_error *err);

/* Records the pre-run facts.  With count_writes the engine starts counting
 * the connection's own writes (only a run whose writes all go through e may
 * ask: `run -- COMMAND` cannot).  Failures are returned (nothing is lost by
 * not knowing, but the caller says so). */
int guard_start(struct restore_guard *g, struct engine *e, int count_writes,
		struct sm_error *err);
void guard_release(struct restore_guard *g);

/* Appends "TABLE\tROWS\n" per table other sessions wrote since guard_start
 * (see engine_ops.writes_since).  0 with nothing appended when the guard
 * does not count writes. */
int guard_foreign_writes(const struct restore_guard *g, struct engine *e, struct strbuf *out,
			 struct sm_error *err);

/* Appends the user schemas that exist now but did not before the run, one
 * per line (the run created them). */
int guard_new_schemas(const struct restore_guard *g, struct engine *e, struct strbuf *out,
		      struct sm_error *err);

/* Appends what differs now from before, the outside_state before the run
 * (restore_guard.outside, or a killed run's, journaled), a line each:
 * "+ LINE" is new (or changed), "- LINE" gone (or changed); to theirs,
 * both lines of an object the engine says another session changed during
 * the run (ENGINE_OUTSIDE_THEIRS), to out the rest.  0 with nothing
 * appended when before is NULL or the engine has none. */
int guard_outside_changes(const char *before, struct engine *e, struct strbuf *out,
			  struct strbuf *theirs, struct sm_error *err);

/* 1 when the migration version is not in the version table, so that a
 * failure inside its transaction left nothing committed; 0 when it is or
 * that cannot be read. */
int guard_version_absent(struct engine *e, const char *version);

/*
 * Signals during an automatic restore: the first SIGINT/SIGTERM only says
 * that a restore is running; the second cancels it (the restore's engine,
 * registered with restore_watch, is interrupted, and *restore_signals_cancel()
 * is set for restore_opts.interrupted).  restore_signals_begin installs the
 * handler (saving the old ones), restore_signals_end puts them back.
 */
void restore_signals_begin(void);
void restore_signals_end(void);
volatile sig_atomic_t *restore_signals_cancel(void);
/* The engine the restore runs on (NULL: none), for the second signal. */
void restore_watch(struct engine *e);

#endif
