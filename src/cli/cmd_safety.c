/*
 * cmd_safety: the safety commands: schema, validate, lint and safety-check,
 * and session_record_schema(), which stores the schema fingerprint after
 * every successful upgrade, downgrade or stamp.  The work is done by the
 * safety library (safety/); this file only prints and picks exit codes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autogen.h"
#include "checks.h"
#include "cli.h"
#include "finding.h"
#include "fsutil.h"
#include "history.h"
#include "journal.h"
#include "lint.h"
#include "schema.h"
#include "session.h"
#include "strbuf.h"
#include "validate.h"
#include "pipeline.h"

static const char *level_tag(enum level lv)
{
	return lv == LEVEL_PASS ? "PASS" : lv == LEVEL_WARN ? "WARN" : "FAIL";
}

void print_findings(const struct finding_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		const struct finding *f = &l->items[i];

		if (f->file)
			out("%s %s:%d: %s: %s\n", level_tag(f->level), f->file, f->line,
			    f->check_or_rule, f->message);
		else
			out("%s %s: %s\n", level_tag(f->level), f->check_or_rule, f->message);
		if (f->hint && f->level != LEVEL_PASS)
			out("     hint: %s\n", f->hint);
	}
}

static void json_findings(struct cmd_ctx *ctx, const struct finding_list *l)
{
	if (!ctx->json)
		return;
	cJSON_AddBoolToObject(ctx->json, "ok", finding_count(l, LEVEL_FAIL) == 0);
	cJSON_AddItemToObject(ctx->json, "findings", finding_list_json(l));
}

static int usage(struct cmd_ctx *ctx, const char *msg)
{
	err_set(&ctx->err, ERR_USAGE, "%s", msg);
	return report_error(ctx, &ctx->err);
}

/* ---- recording the schema after a change ------------------------------- */

void session_record_schema(struct session *s, const struct schema_model *prev)
{
	struct schema_model m = SCHEMA_MODEL_INIT;
	struct strbuf text = STRBUF_INIT;
	struct sm_error err = SM_ERROR_INIT;
	char fp[65];

	if (schema_load_since(s->e, prev, &m, &err) < 0)
		goto fail;
	schema_canonical_text(&m, &text);
	schema_fingerprint(text.buf, fp);
	if (hist_ensure(s->e, &err) < 0 || hist_save_schema(s->e, fp, text.buf, &err) < 0)
		goto fail;
	verbose("recorded schema fingerprint %.12s", fp);
	goto out;
fail:
	warning("cannot record the schema fingerprint (validate will not see drift): %s",
		err.msg);
out:
	schema_release(&m);
	sb_release(&text);
}

/* ---- schema ---------------------------------------------------------------- */

int cmd_schema(struct cmd_ctx *ctx)
{
	struct engine *e = NULL;
	struct schema_model m = SCHEMA_MODEL_INIT;
	struct strbuf text = STRBUF_INIT;
	char fp[65];
	int code = EXIT_OK;

	if (ctx->argc)
		return usage(ctx, "schema takes no arguments (use --output FILE to write a file)");
	if (engine_open(&e, &ctx->url, 0, &ctx->err) < 0 || schema_load(e, &m, &ctx->err) < 0) {
		code = report_error(ctx, &ctx->err);
		goto out;
	}
	schema_canonical_text(&m, &text);
	schema_fingerprint(text.buf, fp);
	if (opt.output) {
		if (fs_write_output(opt.output, text.buf, text.len, 0644, &ctx->err) < 0) {
			code = report_error(ctx, &ctx->err);
			goto out;
		}
		info("wrote the schema to '%s' (fingerprint %.12s)", opt.output, fp);
	} else {
		out("%s", text.buf);
	}
	if (ctx->json) {
		cJSON_AddStringToObject(ctx->json, "fingerprint", fp);
		cJSON_AddStringToObject(ctx->json, "schema", text.buf);
		if (opt.output)
			cJSON_AddStringToObject(ctx->json, "output", opt.output);
	}
out:
	schema_release(&m);
	sb_release(&text);
	engine_close(e);
	return code;
}

/* ---- validate -------------------------------------------------------------- */

static int has_check(const struct finding_list *l, const char *check)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->items[i].level == LEVEL_FAIL && !strcmp(l->items[i].check_or_rule, check))
			return 1;
	return 0;
}

/* -v: the line diff behind the named differences. */
static void show_diff(struct engine *e, const struct finding_list *l, const char *expected)
{
	struct schema_model m = SCHEMA_MODEL_INIT;
	struct strbuf live = STRBUF_INIT, diff = STRBUF_INIT;
	struct sm_error err = SM_ERROR_INIT;
	char *fp = NULL, *recorded = NULL;

	if (schema_load(e, &m, &err) < 0)
		goto out;
	schema_canonical_text(&m, &live);
	if (has_check(l, "schema-drift") && hist_load_schema(e, &fp, &recorded, &err) == 0 &&
	    recorded) {
		schema_text_diff(recorded, live.buf, &diff);
		out("--- recorded schema\n+++ live schema\n%s", diff.buf);
	}
	if (expected && has_check(l, "expected-schema")) {
		sb_reset(&diff);
		schema_text_diff(expected, live.buf, &diff);
		out("--- %s\n+++ live schema\n%s", opt.expected, diff.buf);
	}
out:
	free(fp);
	free(recorded);
	schema_release(&m);
	sb_release(&live);
	sb_release(&diff);
}

/* validate --expected FILE where FILE is SQL (db/schema.sql, structure.sql,
 * a .schema dump): loads it into a scratch database of e's engine, as
 * create --from-schema does, and replaces *text with that schema's
 * canonical text. */
static int expected_from_sql(struct engine *e, const char *file, struct strbuf *text,
			     struct sm_error *err)
{
	struct engine *scratch = NULL;
	struct schema_model m = SCHEMA_MODEL_INIT;
	struct exec_source src = { file, 1 };
	int ret = -1;

	if (mig_check_text(file, text->buf, text->len, err) < 0 ||
	    autogen_scratch_open(e, &scratch, err) < 0)
		goto out;
	if (scratch->ops->exec_script(scratch, text->buf, &src, err) < 0) {
		err_prefix(err, "cannot load the expected schema '%s' into a scratch database",
			   file);
		goto out;
	}
	if (schema_load(scratch, &m, err) < 0)
		goto out;
	sb_reset(text);
	schema_canonical_text(&m, text);
	verbose("loaded the SQL schema '%s' into a scratch database to compare with", file);
	ret = 0;
out:
	schema_release(&m);
	autogen_scratch_close(e, scratch);
	return ret;
}

int cmd_validate(struct cmd_ctx *ctx)
{
	struct engine *e = NULL;
	struct strbuf expected = STRBUF_INIT;
	struct finding_list l = FINDING_LIST_INIT;
	struct validate_opts o = { NULL, NULL, 0, NULL, 0, 0 };
	size_t problems;
	int code;

	if (ctx->argc)
		return usage(ctx, "validate takes no arguments (use --expected FILE)");
	if (opt.expected &&
	    fs_read_file(opt.expected, &expected, 256u << 20, &ctx->err) < 0)
		return report_error(ctx, &ctx->err);
	if (engine_open(&e, &ctx->url, 0, &ctx->err) < 0)
		goto fail;
	if (opt.expected) {
		/* our canonical text, or SQL to load into a scratch database */
		if (!schema_is_canonical_text(expected.buf) &&
		    expected_from_sql(e, opt.expected, &expected, &ctx->err) < 0)
			goto fail;
		o.expected_text = expected.buf;
		o.expected_name = opt.expected;
	}
	if (validate_run(e, &o, &l, &ctx->err) < 0)
		goto fail;
	print_findings(&l);
	if (opt.verbose)
		show_diff(e, &l, o.expected_text);
	problems = finding_count(&l, LEVEL_FAIL);
	if (problems)
		info("validate: %zu problem%s found", problems, problems == 1 ? "" : "s");
	json_findings(ctx, &l);
	code = problems ? EXIT_PROBLEMS : EXIT_OK;
	goto out;
fail:
	code = report_error(ctx, &ctx->err);
out:
	finding_list_release(&l);
	sb_release(&expected);
	engine_close(e);
	return code;
}

/* ---- lint -------------------------------------------------------------------- */

static int lint_file(struct lint_ctx *lc, const char *path, struct finding_list *l,
		     struct sm_error *err)
{
	struct strbuf text = STRBUF_INIT;
	struct migration m;
	int ret = -1;

	memset(&m, 0, sizeof(m));
	if (fs_read_file(path, &text, 64u << 20, err) < 0)
		goto out;
	if (mig_parse_text(&m, path, text.buf, text.len, err) < 0)
		goto out;
	ret = lint_migration(lc, m.up_sql ? m.up_sql : "", path, m.up_line, !m.up_no_tx, l, err);
out:
	mig_release(&m);
	sb_release(&text);
	return ret;
}

/* Lints m's up section, then its down section (findings say "down
 * section"), in the order roundtrip runs them: up, down, up again (the
 * second up only to bring the scratch schema forward; its findings are
 * dropped).  A broken down is found before it is needed. */
static int lint_up_down(struct lint_ctx *lc, const struct migration *m, struct finding_list *l,
			struct sm_error *err)
{
	struct finding_list again = FINDING_LIST_INIT;
	int ret;

	if (lint_migration_of(lc, m, 0, l, err) < 0)
		return -1;
	if (!m->down_sql)
		return 0;
	if (lint_migration_of(lc, m, 1, l, err) < 0)
		return -1;
	ret = lint_migration_of(lc, m, 0, &again, err);
	finding_list_release(&again);
	return ret;
}

int cmd_lint(struct cmd_ctx *ctx)
{
	struct session s;
	struct migration_set set = MIGRATION_SET_INIT;
	struct lint_ctx *lc = NULL;
	struct finding_list l = FINDING_LIST_INIT;
	const char *dialect = ctx->have_url ? ctx->url.scheme : "sqlite";
	size_t blocking, n_linted = 0;
	int code = EXIT_OK, opened = 0;

	memset(&s, 0, sizeof(s));
	if (ctx->have_url && !ctx->argc) {
		/* the live database tells what is pending and, for SQLite, gives the
		 * scratch copy its schema */
		if (session_open(&s, ctx, 0, &ctx->err) < 0)
			return report_error(ctx, &ctx->err);
		opened = 1;
	} else if (ctx->have_url) {
		/* files: the live schema helps (SQLite) but is not required */
		struct sm_error ignored = SM_ERROR_INIT;

		if (engine_open(&s.e, &ctx->url, 0, &ignored) < 0)
			info("linting without the live schema: %s", ignored.msg);
	}
	if (lint_begin(&lc, dialect, s.e, &ctx->err) < 0 ||
	    lint_ignore(lc, opt.lint_ignore, &ctx->err) < 0)
		goto fail;
	/* a huge file takes a while: SIGINT stops it between statements */
	signals_watch(s.e);
	lint_set_interrupt(lc, &cli_interrupted);
	if (ctx->argc) {
		for (int i = 0; i < ctx->argc; i++, n_linted++)
			if (lint_file(lc, ctx->argv[i], &l, &ctx->err) < 0)
				goto fail;
	} else {
		const struct migration_set *ms = &s.set;
		size_t n = opened ? s.st.n_pending : 0;

		if (!opened) {
			info("no database configured: linting every migration as pending (%s "
			     "dialect)", dialect);
			if (mig_load(&set, ctx->mig_dirs, ctx->n_mig_dirs, &ctx->err) < 0)
				goto fail;
			lint_find_no_tx(&set, engine_find(dialect) ? engine_find(dialect)
								 : engine_find("sqlite"));
			ms = &set;
			n = set.n;
		}
		for (size_t i = 0; i < n; i++, n_linted++)
			if (lint_up_down(lc, &ms->items[opened ? s.st.pending[i] : i], &l,
					 &ctx->err) < 0)
				goto fail;
	}
	print_findings(&l);
	blocking = finding_count(&l, LEVEL_FAIL);
	info("linted %zu migration%s: %zu blocking, %zu warning%s", n_linted,
	     n_linted == 1 ? "" : "s", blocking, finding_count(&l, LEVEL_WARN),
	     finding_count(&l, LEVEL_WARN) == 1 ? "" : "s");
	json_findings(ctx, &l);
	code = blocking ? EXIT_BLOCKED : EXIT_OK;
	goto out;
fail:
	code = report_error(ctx, &ctx->err);
out:
	lint_end(lc);
	finding_list_release(&l);
	mig_set_release(&set);
	signals_unwatch();
	if (opened)
		session_close(&s);
	else
		engine_close(s.e);
	return code;
}

/* ---- safety-check ------------------------------------------------------------ */

/* SAFE_MIGRATE_LONG_TX_SECONDS overrides how old a transaction must be for
 * the long-transactions check (default SAFETY_LONG_TX_SECONDS). */
static long long_tx_seconds(void)
{
	const char *v = getenv("SAFE_MIGRATE_LONG_TX_SECONDS");
	char *end;
	long n;

	if (!v || !*v)
		return 0;
	n = strtol(v, &end, 10);
	if (*end || n < 1) {
		warning("ignoring SAFE_MIGRATE_LONG_TX_SECONDS='%s': not a positive number of "
			"seconds", v);
		return 0;
	}
	return n;
}

int cmd_safety_check(struct cmd_ctx *ctx)
{
	struct engine *e = NULL;
	struct migration_set set = MIGRATION_SET_INIT;
	struct applied_set applied = APPLIED_SET_INIT;
	struct finding_list l = FINDING_LIST_INIT;
	struct safety_check_opts o;
	struct sm_error err = SM_ERROR_INIT, merr = SM_ERROR_INIT;
	char *journal = NULL;
	int have_set = 0, code;

	if (ctx->argc)
		return usage(ctx, "safety-check takes no arguments");
	safety_check_connect(&ctx->url, &e, &l);
	if (mig_load(&set, ctx->mig_dirs, ctx->n_mig_dirs, &err) < 0)
		finding_add(&l, FINDING_CHECK, "migrations", LEVEL_FAIL, NULL, NULL, 0, "%s",
			    err.msg);
	else
		have_set = 1;
	if (have_set && engine_find(ctx->url.scheme))
		lint_find_no_tx(&set, engine_find(ctx->url.scheme));
	if (e && hist_load(e, &applied, &err) < 0) {
		finding_add(&l, FINDING_CHECK, "migration-history", LEVEL_FAIL, NULL, NULL, 0, "%s",
			    err.msg);
		have_set = 0;
	}
	memset(&o, 0, sizeof(o));
	o.e = e;
	o.backup_dir = ctx->backup_dir;
	o.set = have_set ? &set : NULL;
	o.applied = &applied;
	o.allow_out_of_order = opt.allow_out_of_order;
	o.long_tx_seconds = long_tx_seconds();
	o.lint_ignore = opt.lint_ignore;
	if (e) {
		struct engine_identity id;

		o.journal_path = journal = journal_path_of(ctx->backup_dir, e, ctx->url.redacted);
		/* a run killed with another backup directory, as the database
		 * records it (the marks cannot be read: nothing to add) */
		if (e->ops->identity(e, &id, &merr) == 0 &&
		    journal_check_marks(e, &id, ctx->backup_dir, 0, NULL, &merr) == 1)
			o.unfinished_elsewhere = merr.msg;
	}
	if (safety_check_run(&o, &l, &ctx->err) < 0) {
		code = report_error(ctx, &ctx->err);
		goto out;
	}
	print_findings(&l);
	if (finding_count(&l, LEVEL_FAIL))
		info("safety-check: %zu check%s failed", finding_count(&l, LEVEL_FAIL),
		     finding_count(&l, LEVEL_FAIL) == 1 ? "" : "s");
	json_findings(ctx, &l);
	code = finding_count(&l, LEVEL_FAIL) ? EXIT_BLOCKED : EXIT_OK;
out:
	finding_list_release(&l);
	hist_release(&applied);
	mig_set_release(&set);
	engine_close(e);
	free(journal);
	return code;
}
