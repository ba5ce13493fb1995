/*
 * validate: live schema against the recorded and expected schemas, plus the
 * engine's integrity checks, filtered by a baseline (see validate.h).
 */
#include "validate.h"

#include <stdlib.h>
#include <string.h>

#include "history.h"
#include "safety_driver.h"
#include "schema.h"

static int in_baseline(const struct validate_baseline *b, const struct finding *f)
{
	if (!b)
		return 0;
	for (size_t i = 0; i < b->problems.n; i++) {
		const struct finding *x = &b->problems.items[i];
		if (!strcmp(x->check_or_rule, f->check_or_rule) && !strcmp(x->message, f->message))
			return 1;
	}
	return 0;
}

/* Moves the findings of src that are not in the baseline to out, and adds a
 * PASS named check when no problem is left. */
static void keep_new(struct finding_list *out, struct finding_list *src,
		     const struct validate_baseline *b, const char *check, const char *pass_msg)
{
	size_t kept = 0, old = 0;

	for (size_t i = 0; i < src->n; i++) {
		struct finding *f = &src->items[i];

		if (f->level != LEVEL_PASS && in_baseline(b, f)) {
			old++;
			continue;
		}
		finding_add(out, f->kind, f->check_or_rule, f->level, f->hint, f->file, f->line,
			    "%s", f->message);
		if (f->level != LEVEL_PASS)
			kept++;
	}
	if (!kept && pass_msg) {
		if (old)
			finding_add(out, FINDING_CHECK, check, LEVEL_PASS, NULL, NULL, 0,
				    "%s (%zu problem%s already present before the run not counted)",
				    pass_msg, old, old == 1 ? "" : "s");
		else
			finding_add(out, FINDING_CHECK, check, LEVEL_PASS, NULL, NULL, 0, "%s",
				    pass_msg);
	}
	finding_list_release(src);
}

static int compare_with_text(const struct schema_model *live, const char *text,
			     const char *name, const char *check, const char *against,
			     struct finding_list *out, struct sm_error *err)
{
	struct schema_model want = SCHEMA_MODEL_INIT;

	if (schema_load_text(text, name, &want, err) < 0)
		return -1;
	schema_diff(&want, live, check, against, out);
	schema_release(&want);
	return 0;
}

/* What validate_run checks of integrity: as o says, or (the tracked
 * baseline) nothing between tables. */
enum integrity_scope { INTEGRITY_AS_ASKED, INTEGRITY_LOCAL, INTEGRITY_BUT_WHOLE };

/* The engine's integrity checks as o asks for them. */
static int integrity(struct engine *e, const struct safety_driver *d,
		     const struct validate_opts *o, enum integrity_scope scope,
		     struct finding_list *out, struct sm_error *err)
{
	struct strbuf written = STRBUF_INIT;
	int ret;

	if (scope == INTEGRITY_LOCAL)
		return d->quick_integrity_local(e, out, err);
	if (scope == INTEGRITY_BUT_WHOLE)
		return d->quick_integrity_but_whole(e, out, err);
	if (!o->quick_integrity || !d->quick_integrity)
		return d->integrity(e, out, err);
	if (!o->only_written || !d->quick_integrity_written || !e->ops->tracked_writes)
		return d->quick_integrity(e, out, err);
	ret = e->ops->tracked_writes(e, &written, err);
	if (ret == 0)
		ret = d->quick_integrity_written(e, written.len ? written.buf : "", out, err);
	sb_release(&written);
	return ret;
}

/* validate_run; given (may be NULL: loaded here if needed) is the live
 * schema the caller has already loaded. */
static int run_scoped(struct engine *e, const struct validate_opts *o,
		      enum integrity_scope scope, const struct schema_model *given,
		      struct finding_list *out, struct sm_error *err)
{
	const struct safety_driver *d;
	struct schema_model live = SCHEMA_MODEL_INIT;
	const struct schema_model *cur = given ? given : &live;
	struct finding_list tmp = FINDING_LIST_INIT;
	char *fp = NULL, *text = NULL;
	int ret = -1;

	if (safety_driver_for(e, &d, err) < 0)
		return -1;
	/* the live schema only for a comparison (the pipeline's validate has
	 * none without --expected: loading it is most of its time on a schema
	 * of many tables) */
	if (!given && (!o->skip_recorded || o->expected_text) && schema_load(e, &live, err) < 0)
		goto out;
	if (!o->skip_recorded) {
		if (hist_load_schema(e, &fp, &text, err) < 0) {
			err_prefix(err, "cannot read the recorded schema");
			goto out;
		}
		if (!text) {
			finding_add(out, FINDING_CHECK, "schema-drift", LEVEL_WARN,
				    "'safe-migrate upgrade' or 'stamp' records the schema", NULL, 0,
				    "no recorded schema to compare with");
		} else {
			if (compare_with_text(cur, text, "the recorded schema", "schema-drift",
					      "the schema recorded after the last migration", &tmp,
					      err) < 0)
				goto out;
			keep_new(out, &tmp, o->baseline, "schema-drift",
				 "the schema matches the one recorded after the last migration");
		}
	}
	if (o->expected_text) {
		const char *name = o->expected_name ? o->expected_name : "the expected schema";
		struct strbuf against = STRBUF_INIT;

		sb_addf(&against, "'%s'", name);
		ret = compare_with_text(cur, o->expected_text, name, "expected-schema",
					against.buf, &tmp, err);
		if (ret == 0) {
			sb_reset(&against);
			sb_addf(&against, "the schema matches '%s'", name);
			/* the expected file is the caller's statement of truth:
			 * no baseline applies */
			keep_new(out, &tmp, NULL, "expected-schema", against.buf);
		}
		sb_release(&against);
		if (ret < 0)
			goto out;
		ret = -1;
	}
	if (integrity(e, d, o, scope, &tmp, err) < 0)
		goto out;
	keep_new(out, &tmp, o->baseline, "integrity",
		 "the database's integrity checks found no problem");
	ret = 0;
out:
	finding_list_release(&tmp);
	schema_release(&live);
	free(fp);
	free(text);
	return ret;
}

int validate_run(struct engine *e, const struct validate_opts *o, struct finding_list *out,
		 struct sm_error *err)
{
	return run_scoped(e, o, INTEGRITY_AS_ASKED, NULL, out, err);
}

/* Adds the problems of all (its WARN and FAIL findings) to b's. */
static void keep_problems(struct validate_baseline *b, const struct finding_list *all)
{
	for (size_t i = 0; i < all->n; i++) {
		const struct finding *f = &all->items[i];
		if (f->level != LEVEL_PASS)
			finding_add(&b->problems, f->kind, f->check_or_rule, f->level, f->hint,
				    f->file, f->line, "%s", f->message);
	}
}

static int capture(struct engine *e, const struct schema_model *live,
		   struct validate_baseline *b, enum integrity_scope scope, struct sm_error *err)
{
	struct validate_opts o = { NULL, NULL, 0, NULL, 1, 0 };
	struct finding_list all = FINDING_LIST_INIT;

	memset(b, 0, sizeof(*b));
	b->related = (struct strbuf)STRBUF_INIT;
	b->own = (struct strbuf)STRBUF_INIT;
	if (run_scoped(e, &o, scope, live, &all, err) < 0) {
		finding_list_release(&all);
		return -1;
	}
	keep_problems(b, &all);
	finding_list_release(&all);
	return 0;
}

int validate_baseline_capture(struct engine *e, const struct schema_model *live,
			      struct validate_baseline *b, struct sm_error *err)
{
	return capture(e, live, b, INTEGRITY_AS_ASKED, err);
}

/* Before a statement first writes tables: the checks between tables whose
 * outcome that can change, as they are before it runs.  A failure leaves
 * them out of the baseline: validate then counts what they find as new,
 * never the reverse. */
static void baseline_before_write(void *ud, struct engine *e, const char *tables)
{
	struct validate_baseline *b = ud;
	const struct safety_driver *d;
	struct sm_error ignored = SM_ERROR_INIT;

	if (safety_driver_for(e, &d, &ignored) == 0)
		d->relations_baseline(e, tables, &b->related, &b->own, &b->problems, &ignored);
}

int validate_baseline_capture_tracked(struct engine *e, const struct schema_model *live,
				      struct validate_baseline *b, struct sm_error *err)
{
	const struct safety_driver *d;

	if (safety_driver_for(e, &d, err) < 0)
		return -1;
	if (!d->quick_integrity_local || !e->ops->track_writes || !e->ops->tracked_writes)
		return capture(e, live, b, INTEGRITY_AS_ASKED, err);
	if (capture(e, live, b, INTEGRITY_LOCAL, err) < 0)
		return -1;
	if (e->ops->track_writes(e, baseline_before_write, b, err) < 0) {
		validate_baseline_release(b);
		return -1;
	}
	b->tracking = e;
	return 0;
}

int validate_baseline_capture_but_whole(struct engine *e, const struct schema_model *live,
					struct validate_baseline *b, int *whole_pending,
					struct sm_error *err)
{
	const struct safety_driver *d;

	*whole_pending = 0;
	if (safety_driver_for(e, &d, err) < 0)
		return -1;
	if (!d->quick_integrity_but_whole || !d->whole_check || !d->whole_check_findings)
		return capture(e, live, b, INTEGRITY_AS_ASKED, err);
	if (capture(e, live, b, INTEGRITY_BUT_WHOLE, err) < 0)
		return -1;
	*whole_pending = 1;
	return 0;
}

int validate_baseline_add_whole(struct engine *e, struct validate_baseline *b,
				const char *checked, struct sm_error *err)
{
	const struct safety_driver *d;
	struct finding_list all = FINDING_LIST_INIT;
	int ret = 0;

	if (safety_driver_for(e, &d, err) < 0)
		return -1;
	if (checked)
		d->whole_check_findings(checked, &all);
	else
		ret = d->whole_check(e, &all, err);
	if (ret == 0)
		keep_problems(b, &all);
	finding_list_release(&all);
	return ret;
}

void validate_baseline_release(struct validate_baseline *b)
{
	struct sm_error ignored = SM_ERROR_INIT;

	/* b goes: the engine must not call into it again */
	if (b->tracking)
		b->tracking->ops->track_writes(b->tracking, NULL, NULL, &ignored);
	b->tracking = NULL;
	finding_list_release(&b->problems);
	sb_release(&b->related);
	sb_release(&b->own);
}
