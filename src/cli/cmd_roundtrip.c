/*
 * cmd_roundtrip: the CI rollback test as one command.
 *
 * On a scratch database (a new temp SQLite file, or --url for PostgreSQL)
 * each migration in order is applied, reverted, the schema compared with
 * what it was before, and applied again.  The first migration whose down
 * does not undo its up is named with the schema difference (exit 7); one
 * whose down brings columns back in another order only is warned about (a
 * down that re-adds a column the up dropped can only add it last);
 * migrations without a down section are reported (--keep-going: every
 * migration is tried and reported).  Without -d the scratch database is a
 * temp SQLite file and the live database is never opened; with -d it is
 * opened only to check that --url names another database, and a PostgreSQL
 * -d holding no tables may serve as the scratch database itself.  A scratch
 * database given by URL is left as it was found.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "fsutil.h"
#include "lint.h"
#include "plan.h"
#include "schema.h"
#include "strbuf.h"
#include "xalloc.h"

/* The schema's canonical text into out, and into unordered without the
 * columns' positions. */
static int schema_text(struct engine *e, struct strbuf *out, struct strbuf *unordered,
		       struct sm_error *err)
{
	struct schema_model m = SCHEMA_MODEL_INIT;

	if (schema_load(e, &m, err) < 0)
		return -1;
	schema_canonical_text(&m, out);
	schema_forget_positions(&m);
	schema_canonical_text(&m, unordered);
	schema_release(&m);
	return 0;
}

static int one_step(struct engine *e, const struct migration *m, enum step_dir dir,
		    struct sm_error *err)
{
	struct step st = { m, dir };
	struct plan p = { &st, 1, 1 };
	size_t done = 0;

	return apply_plan(e, &p, NULL, &cli_interrupted, &done, err);
}

/* Puts a scratch database given by URL back as it was found (empty): every
 * migration still applied is reverted, newest first, and the version tables
 * go.  One without a down section stops that, with a warning. */
static void leave_as_found(struct engine *e, const struct migration_set *set,
			   const char *up_applied)
{
	struct sm_error err = SM_ERROR_INIT;

	for (size_t i = set->n; i-- > 0;) {
		const struct migration *m = &set->items[i];

		if (!up_applied[i])
			continue;
		if (!m->down_sql || one_step(e, m, STEP_DOWN, &err) < 0) {
			warning("the scratch database keeps the migrations up to %s: %s; drop its "
				"tables before the next roundtrip", m->version,
				m->down_sql ? err.msg : "it has no down section");
			return;
		}
	}
	if (engine_exec(e, "DROP TABLE " HIST_TABLE "; DROP TABLE " HIST_SCHEMA_TABLE, &err) < 0)
		warning("cannot drop the version tables from the scratch database: %s", err.msg);
}

/* Opens the scratch database: a fresh temp SQLite file, or --url, which
 * must be another database than the live one and hold no tables yet. */
static int open_scratch(struct cmd_ctx *ctx, struct engine **e, char **tmp_path,
			struct sm_error *err)
{
	/* without -d: a temp SQLite file (the live database is never opened) */
	const struct engine_ops *ops = engine_find(ctx->have_url ? ctx->url.scheme : "sqlite");
	struct db_url u = DB_URL_INIT;
	struct strbuf s = STRBUF_INIT;
	int rc = -1;

	*tmp_path = NULL;
	if (opt.scratch_url) {
		if (url_parse(opt.scratch_url, NULL, &u, err) < 0)
			return -1;
	} else if (ops && ops->make_scratch) {
		if (ops->make_scratch(&s, tmp_path, err) < 0 || url_parse(s.buf, NULL, &u, err) < 0)
			goto out;
	} else {
		/* -d may itself be the scratch database: the check below refuses
		 * one that holds tables */
		sb_adds(&s, "-d");
		url_copy(&u, &ctx->url);
	}
	if (engine_open(e, &u, *tmp_path ? ENGINE_CREATE : 0, err) < 0)
		goto out;
	if (!*tmp_path && ctx->have_url && strcmp(s.buf, "-d")) {
		/* by identity, not URL text: ./app.db or a keyword/value conninfo
		 * can name the live database too (opened only to compare) */
		int same = 0;
		if (engine_same_database(*e, &ctx->url, &same, err) < 0)
			goto out;
		if (same) {
			err_set(err, ERR_USAGE, "--url '%s' is the database being migrated ('%s'); "
				"it must name a scratch database", u.redacted, ctx->url.redacted);
			goto out;
		}
	}
	{
		/* empty: no object at all, and no version table (which the model
		 * leaves out).  A live database whose migrations made only a type
		 * and a sequence is not a scratch one: roundtrip would run their
		 * down sections there and drop its version tables at the end. */
		struct schema_model m = SCHEMA_MODEL_INIT;
		size_t n_objects = 0;
		int versions = 0;
		if (schema_load(*e, &m, err) < 0 ||
		    (*e)->ops->table_exists(*e, HIST_TABLE, &versions, err) < 0) {
			schema_release(&m);
			goto out;
		}
		for (size_t i = 0; i < m.n; i++)
			n_objects += m.items[i].kind != SOBJ_COLUMN &&
				     m.items[i].kind != SOBJ_CONSTRAINT;
		schema_release(&m);
		if ((n_objects || versions) && !strcmp(s.buf, "-d")) {
			err_set(err, ERR_USAGE, "roundtrip on %s needs --url SCRATCH: a throwaway "
				"database it may create and drop objects in ('%s' holds %zu object%s%s)",
				u.scheme, u.redacted, n_objects, n_objects == 1 ? "" : "s",
				versions ? " and a version table" : "");
			goto out;
		}
		if (n_objects || versions) {
			err_set(err, ERR_USAGE, "scratch database '%s' is not empty (%zu object%s%s); "
				"roundtrip needs an empty database", u.redacted, n_objects,
				n_objects == 1 ? "" : "s", versions ? " and a version table" : "");
			goto out;
		}
	}
	rc = 0;
out:
	if (rc < 0 && *e) {
		engine_close(*e);
		*e = NULL;
	}
	url_release(&u);
	sb_release(&s);
	return rc;
}

int cmd_roundtrip(struct cmd_ctx *ctx)
{
	struct migration_set set = MIGRATION_SET_INIT;
	struct engine *e = NULL;
	struct strbuf before = STRBUF_INIT, after = STRBUF_INIT, diff = STRBUF_INIT;
	struct strbuf before_any = STRBUF_INIT, after_any = STRBUF_INIT; /* any column order */
	char *tmp_path = NULL;
	cJSON *arr = NULL;
	size_t no_down = 0, checked = 0;
	int code = EXIT_OK;
	char *up_applied = NULL;

	if (ctx->argc) {
		err_set(&ctx->err, ERR_USAGE, "roundtrip takes no arguments ('%s')", ctx->argv[0]);
		return report_error(ctx, &ctx->err);
	}
	if (mig_load(&set, ctx->mig_dirs, ctx->n_mig_dirs, &ctx->err) < 0 ||
	    open_scratch(ctx, &e, &tmp_path, &ctx->err) < 0) {
		code = report_error(ctx, &ctx->err);
		goto out;
	}
	lint_find_no_tx(&set, e->ops);
	up_applied = xcalloc(set.n + 1, 1);
	info("roundtrip on %s: %zu migration%s", e->url.redacted, set.n, set.n == 1 ? "" : "s");
	if (ctx->json)
		arr = cJSON_AddArrayToObject(ctx->json, "migrations");
	for (size_t i = 0; i < set.n; i++) {
		const struct migration *m = &set.items[i];
		const char *status = "ok";

		sb_reset(&before);
		sb_reset(&after);
		sb_reset(&before_any);
		sb_reset(&after_any);
		/* each condition is a step: two steps failing alike is no clone */
		/* NOLINTNEXTLINE(bugprone-branch-clone) */
		if (schema_text(e, &before, &before_any, &ctx->err) < 0) {
			status = "error";
		} else if (one_step(e, m, STEP_UP, &ctx->err) < 0) {
			status = "up_failed";
		} else if (!m->down_sql) {
			status = "no_down";
			no_down++;
		} else if (one_step(e, m, STEP_DOWN, &ctx->err) < 0) {
			status = "down_failed";
		} else if (schema_text(e, &after, &after_any, &ctx->err) < 0) {
			status = "error";
		} else if (strcmp(before_any.buf, after_any.buf)) {
			status = "mismatch";
			schema_text_diff(before.buf, after.buf, &diff);
		} else if (one_step(e, m, STEP_UP, &ctx->err) < 0) {
			status = "reapply_failed";
		} else if (strcmp(before.buf, after.buf)) {
			/* SELECT * and INSERT without a column list see it, but no
			 * ALTER TABLE can put a re-added column back in its place */
			schema_text_diff(before.buf, after.buf, &diff);
		}
		if (!strcmp(status, "ok"))
			checked++;
		out("%-18s %-9s %s\n", m->version, status, m->description);
		if (arr) {
			cJSON *o = cJSON_CreateObject();
			cJSON_AddStringToObject(o, "version", m->version);
			cJSON_AddStringToObject(o, "path", m->path);
			cJSON_AddStringToObject(o, "status", status);
			if (diff.len)
				cJSON_AddStringToObject(o, strcmp(status, "ok") ? "diff" :
							"column_order_diff", diff.buf);
			if (strcmp(status, "ok") && strcmp(status, "no_down") &&
			    strcmp(status, "mismatch"))
				cJSON_AddStringToObject(o, "error", ctx->err.msg);
			cJSON_AddItemToArray(arr, o);
		}
		if (!strcmp(status, "ok") && diff.len) {
			warning("the down section of '%s' (version %s) brings columns back in "
				"another order:", m->down_path, m->version);
			fputs(diff.buf, stderr);
			sb_reset(&diff);
		}
		if (!strcmp(status, "no_down"))
			warning("'%s' has no down section: it cannot be reverted by SQL", m->path);
		/* what the scratch holds now: the up applied or not */
		up_applied[i] = (char)(!strcmp(status, "ok") || !strcmp(status, "no_down") ||
				       !strcmp(status, "down_failed"));
		if (!strcmp(status, "mismatch")) {
			error_msg("the down section of '%s' (version %s) does not undo its up; the "
				  "schema differs after reverting:", m->down_path, m->version);
			fputs(diff.buf, stderr);
			sb_reset(&diff);
			code = EXIT_PROBLEMS;
			if (!opt.keep_going)
				break;
			continue;
		}
		if (!strcmp(status, "error")) {
			code = report_error(ctx, &ctx->err);
			break;
		}
		if (strcmp(status, "ok") && strcmp(status, "no_down")) {
			/* the migration itself is broken: a problem the check found */
			error_msg("version %s: %s", m->version, ctx->err.msg);
			code = EXIT_PROBLEMS;
			if (!opt.keep_going)
				break;
		}
	}
	if (!tmp_path)
		leave_as_found(e, &set, up_applied);
	if (code == EXIT_OK)
		out("roundtrip ok: %zu migration%s reverted cleanly, %zu without a down section\n",
		    checked, checked == 1 ? "" : "s", no_down);
	else if (opt.keep_going)
		out("roundtrip: %zu of %zu migration%s reverted cleanly\n", checked, set.n,
		    set.n == 1 ? "" : "s");
	if (ctx->json)
		cJSON_AddBoolToObject(ctx->json, "ok", code == EXIT_OK);
out:
	engine_close(e);
	if (tmp_path) {
		struct strbuf lock = STRBUF_INIT;
		unlink(tmp_path);
		sb_addf(&lock, "%s-safe-migrate.lock", tmp_path);
		unlink(lock.buf);
		sb_release(&lock);
		free(tmp_path);
	}
	free(up_applied);
	mig_set_release(&set);
	sb_release(&before);
	sb_release(&after);
	sb_release(&before_any);
	sb_release(&after_any);
	sb_release(&diff);
	return code;
}
