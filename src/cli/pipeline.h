/*
 * pipeline: what the safe-migrate pipeline needs from the snapshot and safety
 * modules, in the pipeline's own terms.  pipeline_ports.c implements these on
 * top of backup/, restore/ and safety/; cmd_pipeline.c drives the phases.
 */
#ifndef SM_PIPELINE_H
#define SM_PIPELINE_H

#include <cjson/cJSON.h>

#include "backup.h"
#include "cli.h"
#include "finding.h"
#include "session.h"

/* The database's state as the operator would judge it: schema text and
 * per-table row counts.  The schema is compared before the run and after a
 * restore; the counts, read after a restore only, with the snapshot
 * manifest's. */
struct db_state {
	char *schema_text;    /* canonical schema, owned */
	char *row_counts;     /* "table=N\n..." sorted, owned; NULL before a change */
	void *baseline;       /* validation baseline (safety module), owned */
	struct schema_model model; /* the schema model the text was made from */
	/* the baseline still lacks the engine's check of the whole file:
	 * port_baseline_add_whole must add it before the change */
	int whole_pending;
};

/* Prints findings (human output) and appends them to arr (may be NULL). */
void port_report_findings(const struct finding_list *l, cJSON *arr);
/* Runs the pre-flight checks (the caller holds the migration lock).  Adds
 * findings to arr (may be NULL) and prints them; returns 1 if any FAILed. */
int port_safety_check(struct cmd_ctx *ctx, struct session *s, cJSON *arr, struct sm_error *err);
/* Takes a snapshot of e into ctx->backup_dir with the progress display
 * labelled label (the one snapshot-taking path of every command: backup,
 * the pipeline, safety snapshots); res filled (caller releases it).  check:
 * also run the engine's check of what the snapshot copies (backup_opts.
 * check; res->check says what it found).  Stops with ERR_INTERRUPTED once
 * cli_interrupted is set. */
int port_backup(struct cmd_ctx *ctx, struct engine *e, const char *name, const char *label,
		int check, struct backup_result *res, struct sm_error *err);
/* port_backup with an output other than the backup directory: a file, or
 * "-" for stdout (backup --output); manifest (may be NULL) receives a copy
 * of the manifest (caller frees).  The zstd level is opt's, as for
 * port_backup. */
int port_backup_to(struct cmd_ctx *ctx, struct engine *e, const char *name, const char *label,
		   int check, const char *output, struct backup_result *res, cJSON **manifest,
		   struct sm_error *err);
/* Checks that the snapshot at path is still the one whose SHA-256 was
 * sha256: its .sha256 sidecar says so (restore checks the file against the
 * sidecar).  ERR_DAMAGED when it was replaced. */
int port_check_sha(const char *path, const char *sha256, struct sm_error *err);
/* Verifies a snapshot's structure and checksums.  If rows (extra) is not
 * NULL it receives the manifest's "row_counts" ("extra") object (caller
 * frees; NULL if none). */
int port_verify(const char *path, cJSON **rows, cJSON **extra, struct sm_error *err);
/* Compares every table's content in e with the checksums the snapshot
 * recorded (extra: its manifest's "extra"; an engine that records none
 * passes).  Returns 0 when they agree, 1 with err set (ERR_FAIL, naming the
 * table) when one differs, -1 with err when they cannot be read. */
int port_content_check(struct engine *e, const cJSON *extra, struct sm_error *err);
/* Restores path into the database of url, without a safety snapshot or a
 * question (the pipeline took the snapshot itself).  Table locks are waited
 * for at most --lock-timeout.  keep_schemas (may be NULL): the user schemas
 * before the run, one per line; others not in the snapshot are dropped.
 * blocked (may be NULL) is called with ud once other sessions can no
 * longer write, before anything is replaced (restore_opts.writers_blocked);
 * verify (may be NULL) once the snapshot is in and before they can write
 * again (restore_opts.verify). */
int port_restore(struct cmd_ctx *ctx, const char *path, const struct db_url *url,
		 const char *keep_schemas, int (*blocked)(void *ud, struct sm_error *err),
		 int (*verify)(void *ud, struct engine *target, struct sm_error *err),
		 void *ud, struct sm_error *err);
/* The options a hand-run `restore` of the snapshot whose manifest extra
 * this is needs besides the usual ones, with a leading space ("" when
 * none): port_restore gives back problems its backup recorded, a restore
 * asked for by hand only with --accept-recorded-problems. */
const char *port_hand_restore_options(const cJSON *extra);
/* Captures schema and row counts. */
int port_capture(struct engine *e, struct db_state *st, struct sm_error *err);
/* The schema and the validation baseline, before a change (no counts: the
 * snapshot's manifest has the ones to compare with).  own_writes: the
 * change goes through e alone, and the checks between tables are added to
 * the baseline just before it first writes where they can change
 * (validate_baseline_capture_tracked). */
int port_capture_before(struct engine *e, struct db_state *st, int own_writes,
			struct sm_error *err);
/* Completes a baseline port_capture_before left without the check of the
 * whole file (st->whole_pending; else nothing to do): from checked, the
 * outcome of that check the snapshot's backup made beside its copy
 * (backup_result.check), or, NULL, by running it now. */
int port_baseline_add_whole(struct engine *e, struct db_state *st, const char *checked,
			    struct sm_error *err);
void port_state_release(struct db_state *st);
/* Validates e against the baseline in before; new problems go to arr and
 * make it return 1. */
int port_validate(struct engine *e, const struct db_state *before, int check_schema, cJSON *arr,
		  struct sm_error *err);

/* Returns 0 when no earlier run on e's database is unfinished; otherwise
 * reports it (naming its snapshot and `recover`) and returns the exit code
 * (4).  Call it holding the migration lock.  Fills *id (if not NULL) with
 * e's identity. */
int check_unfinished(struct cmd_ctx *ctx, struct engine *e, struct engine_identity *id);

/* Prints findings as PASS/WARN/FAIL lines (cmd_safety.c). */
void print_findings(const struct finding_list *l);

#endif
