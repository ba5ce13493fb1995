/*
 * pipeline_ports: the pipeline's view of backup/, restore/ and safety/
 * (see pipeline.h).
 *
 * Each port adapts one module call to what the pipeline needs and keeps
 * the pipeline free of those modules' option structs.
 */
#include <stdlib.h>
#include <string.h>

#include "backup.h"
#include "pipeline.h"
#include "pipeline_restore.h"
#include "progress.h"
#include "restore.h"
#include "checks.h"
#include "schema.h"
#include "validate.h"
#include "snapshot.h"
#include "fsutil.h"
#include "journal.h"
#include "strbuf.h"
#include "xalloc.h"

/* Prints findings (human output) and appends them to the run's JSON array. */
void port_report_findings(const struct finding_list *l, cJSON *arr)
{
	cJSON *items, *it;

	if (!opt.json)
		print_findings(l);
	if (!arr)
		return;
	items = finding_list_json(l);
	while ((it = cJSON_DetachItemFromArray(items, 0)) != NULL)
		cJSON_AddItemToArray(arr, it);
	cJSON_Delete(items);
}

int port_safety_check(struct cmd_ctx *ctx, struct session *s, cJSON *arr, struct sm_error *err)
{
	struct safety_check_opts o;
	struct finding_list l = FINDING_LIST_INIT;
	char *journal;
	int failed;

	memset(&o, 0, sizeof(o));
	o.e = s->e;
	o.backup_dir = ctx->backup_dir;
	o.foreign_migrations = !strcmp(ctx->cmd->name, "run");
	o.set = !o.foreign_migrations && (s->set.n || !s->applied.n) ? &s->set : NULL;
	o.lint_ignore = opt.lint_ignore;
	o.target = !o.foreign_migrations && ctx->argc ? ctx->argv[0] : NULL;
	o.applied = &s->applied;
	o.allow_out_of_order = opt.allow_out_of_order;
	o.caller_holds_lock = 1;
	o.skip_backup = opt.no_backup || opt.dry_run;
	o.journal_path = journal = journal_path_of(ctx->backup_dir, s->e, ctx->url.redacted);
	if (safety_check_run(&o, &l, err) < 0) {
		finding_list_release(&l);
		free(journal);
		return 1;
	}
	free(journal);
	port_report_findings(&l, arr);
	failed = finding_count(&l, LEVEL_FAIL) > 0;
	finding_list_release(&l);
	return failed;
}

int port_backup(struct cmd_ctx *ctx, struct engine *e, const char *name, const char *label,
		int check, struct backup_result *res, struct sm_error *err)
{
	return port_backup_to(ctx, e, name, label, check, NULL, res, NULL, err);
}

int port_backup_to(struct cmd_ctx *ctx, struct engine *e, const char *name, const char *label,
		   int check, const char *output, struct backup_result *res, cJSON **manifest,
		   struct sm_error *err)
{
	struct backup_opts bo;
	struct progress pr;
	int rc;

	memset(&bo, 0, sizeof(bo));
	bo.level = opt.level;
	bo.has_level = opt.has_level;
	bo.manifest = manifest;
	bo.check = check;
	if (output && !strcmp(output, "-")) {
		bo.output_fd = 1;
		bo.use_output_fd = 1;
	} else {
		bo.output = output;
	}
	progress_init(&pr, label);
	bo.progress = progress_cb;
	bo.progress_ud = &pr;
	bo.no_owner = opt.no_owner;
	bo.no_tablespaces = opt.no_tablespaces;
	bo.jobs = opt.jobs; /* backup --jobs, restore --jobs's safety snapshot */
	bo.interrupted = &cli_interrupted; /* set only where signals are watched */
	rc = backup_take(e, ctx->backup_dir, name, &bo, res, err);
	progress_end(&pr);
	return rc;
}

int port_check_sha(const char *path, const char *sha256, struct sm_error *err)
{
	struct strbuf sidecar = STRBUF_INIT, text = STRBUF_INIT;
	int rc = 0;

	sb_addf(&sidecar, "%s%s", path, SNAP_SHA_SUFFIX);
	if (fs_read_file(sidecar.buf, &text, 4096, err) < 0) {
		rc = err_prefix(err, "cannot check snapshot '%s'", path);
	} else if (text.len < HASH_HEX_LEN || strncmp(text.buf, sha256, HASH_HEX_LEN)) {
		rc = err_set(err, ERR_DAMAGED, "snapshot '%s' is not the one this run took (its "
			     "SHA-256 was %s, the file now says %.*s): it was replaced", path, sha256,
			     text.len < HASH_HEX_LEN ? (int)text.len : HASH_HEX_LEN, text.buf);
	}
	sb_release(&sidecar);
	sb_release(&text);
	return rc;
}

int port_verify(const char *path, cJSON **rows, cJSON **extra, struct sm_error *err)
{
	struct snap_problems probs = SNAP_PROBLEMS_INIT;
	cJSON *manifest = NULL;
	int rc;

	if (rows)
		*rows = NULL;
	if (extra)
		*extra = NULL;
	if (snap_verify(path, &probs, rows || extra ? &manifest : NULL, err) < 0)
		return -1;
	rc = probs.n ? err_set(err, ERR_DAMAGED, "snapshot '%s' is damaged: %s", path,
			       probs.items[0])
		     : 0;
	if (rc == 0 && rows && manifest)
		*rows = cJSON_DetachItemFromObject(manifest, "row_counts");
	if (rc == 0 && extra && manifest)
		*extra = cJSON_DetachItemFromObject(manifest, "extra");
	cJSON_Delete(manifest);
	snap_problems_release(&probs);
	return rc;
}

int port_content_check(struct engine *e, const cJSON *extra, struct sm_error *err)
{
	struct backup_summary got = BACKUP_SUMMARY_INIT;
	const char *differs;
	int ret = -1;

	if (!cJSON_GetObjectItemCaseSensitive(extra, "table_sha256"))
		return 0;
	got.want_content = 1;
	if (backup_describe(e, extra, &got, err) < 0)
		goto out;
	differs = backup_content_differs(extra, &got);
	ret = differs ? 1 : 0;
	if (differs)
		err_set(err, ERR_FAIL, "the database does not match the snapshot: the content of "
			"table '%s' differs from the snapshot's (content checksum)", differs);
out:
	backup_summary_release(&got);
	return ret;
}

int port_restore(struct cmd_ctx *ctx, const char *path, const struct db_url *url,
		 const char *keep_schemas, int (*blocked)(void *ud, struct sm_error *err),
		 int (*verify)(void *ud, struct engine *target, struct sm_error *err),
		 void *ud, struct sm_error *err)
{
	struct restore_opts ro;
	struct progress pr;
	struct strbuf notes = STRBUF_INIT;
	struct engine *e = NULL;
	int rc;

	(void)ctx;
	memset(&ro, 0, sizeof(ro));
	/* the caller holds the migration lock on its own connection; this one
	 * must not wait for it.  A rehearsal target may not exist yet. */
	if (engine_open(&e, url, ENGINE_CREATE, err) < 0)
		return -1;
	progress_init(&pr, "restore");
	ro.progress = progress_cb;
	ro.progress_ud = &pr;
	/* never queue behind an idle session for ever: every other session
	 * would queue behind the restore's drops */
	ro.lock_timeout_ms = opt.lock_timeout_ms;
	ro.keep_schemas = keep_schemas;
	/* back to the state before the run, as it was, problems included */
	ro.accept_recorded_problems = 1;
	ro.sequences_ahead = 1;
	ro.writers_blocked = blocked;
	ro.writers_blocked_ud = ud;
	ro.verify = verify;
	ro.verify_ud = ud;
	ro.interrupted = restore_signals_cancel();
	ro.notes = &notes;
	restore_watch(e);
	rc = restore_snapshot(path, e, &ro, err);
	restore_watch(NULL);
	progress_end(&pr);
	engine_close(e);
	warning_lines(notes.buf);
	sb_release(&notes);
	return rc;
}

const char *port_hand_restore_options(const cJSON *extra)
{
	return restore_recorded_problems(extra) ? " --accept-recorded-problems" : "";
}

/* Schema and row counts; with baseline, the validation baseline instead of
 * the counts (1: all of it now but the check of the whole file, which may
 * come from the snapshot (port_baseline_add_whole); 2: tracked,
 * validate_baseline_capture_tracked).  A run is checked against the
 * snapshot manifest's counts, taken in the snapshot's own transaction:
 * counts taken before it would compare nothing (on narrow indexed rows,
 * count(*) of every table was 6% of a run). */
static int capture(struct engine *e, struct db_state *st, int baseline, struct sm_error *err)
{
	struct schema_model m = SCHEMA_MODEL_INIT;
	struct strbuf text = STRBUF_INIT, counts = STRBUF_INIT;
	struct validate_baseline *b = NULL;
	int ret = -1;

	memset(st, 0, sizeof(*st));
	if (schema_load(e, &m, err) < 0)
		goto out;
	schema_canonical_text(&m, &text);
	if (!baseline && schema_row_counts(e, &m, &counts, err) < 0)
		goto out;
	if (baseline) {
		b = xcalloc(1, sizeof(*b));
		if ((baseline == 2 ? validate_baseline_capture_tracked(e, &m, b, err)
				   : validate_baseline_capture_but_whole(e, &m, b, &st->whole_pending,
									 err)) < 0) {
			free(b);
			b = NULL;
			goto out;
		}
	}
	st->schema_text = sb_detach(&text);
	st->row_counts = baseline ? NULL : sb_detach(&counts);
	st->baseline = b;
	st->model = m;
	memset(&m, 0, sizeof(m));
	b = NULL;
	ret = 0;
out:
	schema_release(&m);
	sb_release(&text);
	sb_release(&counts);
	return ret;
}

int port_capture(struct engine *e, struct db_state *st, struct sm_error *err)
{
	return capture(e, st, 0, err);
}

int port_capture_before(struct engine *e, struct db_state *st, int own_writes,
			struct sm_error *err)
{
	return capture(e, st, own_writes ? 2 : 1, err);
}

int port_baseline_add_whole(struct engine *e, struct db_state *st, const char *checked,
			    struct sm_error *err)
{
	if (!st->whole_pending || !st->baseline)
		return 0;
	st->whole_pending = 0;
	if (validate_baseline_add_whole(e, st->baseline, checked, err) < 0)
		return err_prefix(err, "cannot check the database before the change");
	return 0;
}

void port_state_release(struct db_state *st)
{
	free(st->schema_text);
	free(st->row_counts);
	schema_release(&st->model);
	if (st->baseline) {
		validate_baseline_release(st->baseline);
		free(st->baseline);
	}
	memset(st, 0, sizeof(*st));
}

int port_validate(struct engine *e, const struct db_state *before, int check_schema, cJSON *arr,
		  struct sm_error *err)
{
	struct validate_opts o;
	struct finding_list l = FINDING_LIST_INIT;
	struct strbuf expected = STRBUF_INIT;
	int bad;

	memset(&o, 0, sizeof(o));
	o.baseline = before->baseline;
	o.quick_integrity = 1; /* as the baseline: docs/safety.md says why */
	o.only_written = 1;    /* what the run cannot have changed is as it was */
	/* the recorded schema describes the database before this run; what the
	 * run is expected to produce is only known from --expected */
	o.skip_recorded = 1;
	if (check_schema && opt.expected) {
		if (fs_read_file(opt.expected, &expected, 64u << 20, err) < 0)
			return 1;
		o.expected_text = expected.buf;
		o.expected_name = opt.expected;
	}
	if (validate_run(e, &o, &l, err) < 0) {
		sb_release(&expected);
		finding_list_release(&l);
		return 1;
	}
	bad = finding_count(&l, LEVEL_FAIL) > 0;
	port_report_findings(&l, arr);
	if (bad)
		err_set(err, ERR_DAMAGED, "%zu new problem%s after the migration",
			finding_count(&l, LEVEL_FAIL), finding_count(&l, LEVEL_FAIL) == 1 ? "" : "s");
	sb_release(&expected);
	finding_list_release(&l);
	return bad;
}
