/*
 * validate: is the live database what it should be?
 *
 * Compares the live schema with the schema recorded after the last upgrade,
 * downgrade or stamp (safe_migrate_schema: drift made by hand) and, when
 * given, with an expected canonical schema text (`validate --expected FILE`,
 * a file written by `schema --output`), and runs the engine's own integrity
 * checks: SQLite's PRAGMA integrity_check and foreign_key_check (naming the
 * table and rowid); PostgreSQL's invalid indexes (FAIL) and NOT VALID
 * constraints (WARN: adding one NOT VALID is the recommended first step).
 *
 * Baselines: the safe-migrate pipeline captures a baseline before migrating
 * and validates against it afterwards, so problems the database already had
 * are not blamed on the migration.  A finding is "old" when the baseline has
 * one with the same check name and message.
 */
#ifndef SM_VALIDATE_H
#define SM_VALIDATE_H

#include "engine.h"
#include "error.h"
#include "finding.h"

struct validate_baseline {
	struct finding_list problems; /* WARN and FAIL findings seen before the run */
};

#define VALIDATE_BASELINE_INIT { FINDING_LIST_INIT }

struct validate_opts {
	const char *expected_text; /* canonical schema text to compare with, or NULL */
	const char *expected_name; /* its name in messages (the file), or NULL */
	int skip_recorded;         /* do not compare with the recorded schema */
	const struct validate_baseline *baseline; /* report only new problems; NULL: all */
	/* The engine's quick integrity checks (SQLite: PRAGMA quick_check
	 * instead of integrity_check), for the pipeline: see docs/safety.md. */
	int quick_integrity;
	/* With quick_integrity: the checks between tables only where the
	 * tables the engine saw written (engine_ops.track_writes) can have
	 * changed their outcome; everything when the engine cannot tell.
	 * Problems elsewhere are those of before tracking started. */
	int only_written;
};

/* Runs every validation and appends findings to out: LEVEL_FAIL per problem
 * (naming the object), LEVEL_WARN for things worth knowing, and one
 * LEVEL_PASS per check that found nothing.  Problems are findings; -1 means
 * validation could not run (err set).  Call after the new schema was recorded
 * (session_record_schema) or with skip_recorded, or the migration's own
 * changes show as drift. */
int validate_run(struct engine *e, const struct validate_opts *o, struct finding_list *out,
		 struct sm_error *err);

/* Captures the problems e has now (every validation except an expected
 * file, with the quick integrity checks: the baseline is the pipeline's)
 * into *b (empty on entry; release with validate_baseline_release). */
int validate_baseline_capture(struct engine *e, struct validate_baseline *b,
			      struct sm_error *err);
void validate_baseline_release(struct validate_baseline *b);

#endif
