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
#include "schema.h"
#include "strbuf.h"

struct validate_baseline {
	struct finding_list problems; /* WARN and FAIL findings seen before the run */
	/* validate_baseline_capture_tracked: the tables whose checks between
	 * tables are in problems, one per line */
	struct strbuf related;
	/* ... and the tables whose own checks are in problems */
	struct strbuf own;
	struct engine *tracking; /* borrowed: the engine that adds to it, or NULL */
};

#define VALIDATE_BASELINE_INIT { FINDING_LIST_INIT, STRBUF_INIT, STRBUF_INIT, NULL }

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
 * into *b (empty on entry; release with validate_baseline_release).  live
 * (borrowed; NULL: loaded here) is e's schema, when the caller has just
 * loaded it (schema_load). */
int validate_baseline_capture(struct engine *e, const struct schema_model *live,
			      struct validate_baseline *b, struct sm_error *err);
/* validate_baseline_capture for a change about to be made through e: the
 * checks between tables (SQLite's foreign keys) are left out, and e tracks
 * its writes (engine_ops.track_writes) to add them to *b table by table,
 * just before a statement first writes where their outcome can change.
 * Validate the change with validate_opts.only_written: a table the change
 * wrote is then checked, and compared with *b, which must stay where it is
 * until then; validate_baseline_release stops the tracking (e must still
 * be open).  Without tracking in the engine, the same as
 * validate_baseline_capture. */
int validate_baseline_capture_tracked(struct engine *e, const struct schema_model *live,
				      struct validate_baseline *b, struct sm_error *err);
/* validate_baseline_capture without the engine's check of the whole file
 * (SQLite: quick_check) when the engine can split it off
 * (safety_driver.quick_integrity_but_whole): *whole_pending is then set,
 * and validate_baseline_add_whole must add it before the change.  The
 * pipeline takes it from its snapshot, whose backup checked the very pages
 * it copied beside the copy, instead of reading the whole file twice. */
int validate_baseline_capture_but_whole(struct engine *e, const struct schema_model *live,
					struct validate_baseline *b, int *whole_pending,
					struct sm_error *err);
/* Adds that check to b: from checked (backup_result.check: "ok" or the
 * problems one per line), or, NULL (no backup checked), by running the
 * engine's check of the whole file now. */
int validate_baseline_add_whole(struct engine *e, struct validate_baseline *b,
				const char *checked, struct sm_error *err);
void validate_baseline_release(struct validate_baseline *b);

#endif
