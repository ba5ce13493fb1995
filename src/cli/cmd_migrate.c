/*
 * cmd_migrate: the Alembic-style commands: init, create, upgrade, downgrade,
 * current, history, check, stamp and sql.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "foreign.h"
#include "fsutil.h"
#include "lint.h"
#include "pipeline.h"
#include "session.h"
#include "strbuf.h"
#include "version.h"
#include "xalloc.h"

static int usage_error(struct cmd_ctx *ctx, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int usage_error(struct cmd_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ctx->err.msg, sizeof(ctx->err.msg), fmt, ap);
	va_end(ap);
	ctx->err.kind = ERR_USAGE;
	return report_error(ctx, &ctx->err);
}

static const char *mig_name(const struct migration *m)
{
	return *m->description ? m->description : "";
}

/* ---- upgrade / downgrade ---------------------------------------------- */

struct apply_print {
	struct cmd_ctx *ctx;
	cJSON *applied;
};

static void print_start(void *ud, const struct step *s)
{
	int up = s->dir == STEP_UP;
	char buf[128];
	const char *note = mig_tx_note(s->m, up, buf, sizeof(buf));
	const char *sql = up ? s->m->up_sql : s->m->down_sql;

	(void)ud;
	info("%s %s %s%s%s%s", up ? "applying" : "reverting", s->m->version, mig_name(s->m),
	     *note ? " (" : "", note, *note ? ")" : "");
	if (mig_is_blank(sql))
		info("version %s is empty: recorded as applied, no SQL runs", s->m->version);
}

static void print_done(void *ud, const struct step *s, long long ms, int ok,
		       const struct sm_error *err)
{
	struct apply_print *ap = ud;

	(void)err;
	if (!ok)
		return;
	out("%s %s %s (%lld ms)\n", s->dir == STEP_UP ? "applied" : "reverted", s->m->version,
	    mig_name(s->m), ms);
	if (ap->applied)
		cJSON_AddItemToArray(ap->applied, cJSON_CreateString(s->m->version));
}

static int run_plan(struct cmd_ctx *ctx, struct session *s, struct plan *p, const char *key)
{
	struct apply_print ap = { ctx, NULL };
	struct apply_hooks hooks = { &ap, print_start, print_done };
	size_t done = 0;
	int rc;

	if (ctx->json) {
		ap.applied = cJSON_AddArrayToObject(ctx->json, key);
	}
	signals_watch(s->e);
	rc = apply_plan(s->e, p, &hooks, &cli_interrupted, &done, &ctx->err);
	signals_unwatch();
	if (done)
		session_record_schema(s, NULL);
	if (rc < 0) {
		const struct step *failed = &p->steps[done];
		int no_tx = failed->dir == STEP_UP ? failed->m->up_no_tx : failed->m->down_no_tx;
		int code = report_error(ctx, &ctx->err);
		if (no_tx && !s->e->script_committed)
			info("version %s ran outside a transaction, but none of its statements "
			     "committed (the transaction it began was rolled back); %zu migration%s "
			     "before it stay %s", failed->m->version, done, done == 1 ? "" : "s",
			     failed->dir == STEP_UP ? "applied" : "reverted");
		else if (no_tx)
			error_msg("version %s ran outside a transaction and may be partly applied; "
				  "check the database by hand (%s takes no snapshot: restore one "
				  "you took before, see 'safe-migrate list-backups'; 'safe-migrate "
				  "safe-migrate' takes one and restores it on failure)",
				  failed->m->version, failed->dir == STEP_UP ? "upgrade" : "downgrade");
		else
			info("version %s was rolled back; %zu migration%s before it stay %s",
			     failed->m->version, done, done == 1 ? "" : "s",
			     failed->dir == STEP_UP ? "applied" : "reverted");
		return code;
	}
	return EXIT_OK;
}

static void json_status(struct cmd_ctx *ctx, struct session *s)
{
	const char *cur = hist_current(&s->applied);
	cJSON *pending;

	if (!ctx->json)
		return;
	cJSON_DeleteItemFromObject(ctx->json, "current");
	cJSON_DeleteItemFromObject(ctx->json, "head");
	cJSON_DeleteItemFromObject(ctx->json, "pending");
	if (cur)
		cJSON_AddStringToObject(ctx->json, "current", cur);
	else
		cJSON_AddNullToObject(ctx->json, "current");
	if (s->set.n)
		cJSON_AddStringToObject(ctx->json, "head", s->set.items[s->set.n - 1].version);
	else
		cJSON_AddNullToObject(ctx->json, "head");
	pending = cJSON_AddArrayToObject(ctx->json, "pending");
	for (size_t i = 0; i < s->st.n_pending; i++)
		cJSON_AddItemToArray(pending,
				     cJSON_CreateString(s->set.items[s->st.pending[i]].version));
}

static void warn_missing(struct session *s)
{
	for (size_t i = 0; i < s->st.n_missing; i++)
		warning("applied version %s has no migration file in the migrations directory",
			s->applied.items[s->st.missing[i]].version);
}

/* Runs plan p (its versions reported under key), or says the database is
 * already at `at`; then adds the new status to --json. */
static int run_or_nothing(struct cmd_ctx *ctx, struct session *s, struct plan *p,
			  const char *key, const char *at)
{
	int code;

	if (!p->n) {
		out("already at %s; nothing to do\n", at);
		if (ctx->json)
			cJSON_AddArrayToObject(ctx->json, key);
		code = EXIT_OK;
	} else {
		code = run_plan(ctx, s, p, key);
	}
	if (session_reload(s, &ctx->err) == 0)
		json_status(ctx, s);
	return code;
}

int cmd_upgrade(struct cmd_ctx *ctx)
{
	struct session s;
	struct plan p = PLAN_INIT;
	int code;

	if (ctx->argc > 1)
		return usage_error(ctx, "upgrade takes one TARGET, not '%s'", ctx->argv[1]);
	if (session_open(&s, ctx, SESSION_LOCK, &ctx->err) < 0)
		return report_error(ctx, &ctx->err);
	/* a killed safe-migrate run must be recovered (or discarded) first;
	 * read under the lock: a run we waited for may have been killed */
	if ((code = check_unfinished(ctx, s.e, NULL)) != 0) {
		session_close(&s);
		return code;
	}
	warn_missing(&s);
	if (plan_check_consistent(&s.set, &s.applied, &s.st, opt.allow_out_of_order, &ctx->err) < 0 ||
	    plan_upgrade(&s.set, &s.applied, ctx->argc ? ctx->argv[0] : NULL, &p, &ctx->err) < 0) {
		code = report_error(ctx, &ctx->err);
		goto out;
	}
	code = run_or_nothing(ctx, &s, &p, "applied",
			      hist_current(&s.applied) ? hist_current(&s.applied) : "base");
out:
	plan_release(&p);
	session_close(&s);
	return code;
}

int cmd_downgrade(struct cmd_ctx *ctx)
{
	struct session s;
	struct plan p = PLAN_INIT;
	int code;

	if (ctx->argc != 1)
		return usage_error(ctx, "downgrade needs one TARGET (-N, a version or base)");
	if (session_open(&s, ctx, SESSION_LOCK, &ctx->err) < 0)
		return report_error(ctx, &ctx->err);
	/* as upgrade: a half-migrated database is recovered (or the run
	 * discarded) first, not reverted from a history it may not match */
	if ((code = check_unfinished(ctx, s.e, NULL)) != 0) {
		session_close(&s);
		return code;
	}
	if (plan_downgrade(&s.set, &s.applied, ctx->argv[0], &p, &ctx->err) < 0) {
		code = report_error(ctx, &ctx->err);
		goto out;
	}
	code = run_or_nothing(ctx, &s, &p, "reverted", ctx->argv[0]);
out:
	plan_release(&p);
	session_close(&s);
	return code;
}

/* ---- current / history / check ---------------------------------------- */

/* Says which other tool's version table the database holds, if any. */
static void report_foreign(struct cmd_ctx *ctx, struct session *s)
{
	struct foreign_hist f = FOREIGN_HIST_INIT;
	struct sm_error err = SM_ERROR_INIT;
	struct strbuf line = STRBUF_INIT;

	if (foreign_load(s->e, &f, &err) < 0) {
		warning("%s", err.msg);
		return;
	}
	if (f.tool != FOREIGN_NONE) {
		int ok = foreign_describe(&f, &s->applied, &line);

		if (ok)
			info("found %s", line.buf);
		else
			warning("found %s", line.buf);
		if (ctx->json) {
			cJSON *o = cJSON_AddObjectToObject(ctx->json, "foreign");
			cJSON_AddStringToObject(o, "tool", f.name);
			cJSON_AddStringToObject(o, "table", f.table);
			cJSON_AddNumberToObject(o, "versions", (double)f.n);
			cJSON_AddBoolToObject(o, "dirty", f.dirty);
			cJSON_AddBoolToObject(o, "in_step", foreign_in_step(&f, &s->applied));
		}
	}
	sb_release(&line);
	foreign_release(&f);
}

int cmd_current(struct cmd_ctx *ctx)
{
	struct session s;
	const char *cur;

	if (ctx->argc)
		return usage_error(ctx, "current takes no arguments ('%s')", ctx->argv[0]);
	if (session_open(&s, ctx, 0, &ctx->err) < 0)
		return report_error(ctx, &ctx->err);
	cur = hist_current(&s.applied);
	out("%s\n", cur ? cur : "base");
	info("%zu pending migration%s%s", s.st.n_pending, s.st.n_pending == 1 ? "" : "s",
	     s.st.n_pending ? "" : " (at head)");
	for (size_t i = 0; i < s.st.n_edited; i++)
		warning("applied migration '%s' was edited after it was applied",
			s.set.items[s.st.edited[i]].path);
	json_status(ctx, &s);
	report_foreign(ctx, &s);
	session_close(&s);
	return EXIT_OK;
}

int cmd_history(struct cmd_ctx *ctx)
{
	struct session s;
	cJSON *arr = NULL;

	if (opt.runs) {
		extern int cmd_history_runs(struct cmd_ctx *);
		return cmd_history_runs(ctx);
	}
	if (session_open(&s, ctx, 0, &ctx->err) < 0)
		return report_error(ctx, &ctx->err);
	if (ctx->json)
		arr = cJSON_AddArrayToObject(ctx->json, "migrations");
	out("%-18s %-8s %-20s %8s  %s\n", "VERSION", "STATUS", "APPLIED AT", "MS", "DESCRIPTION");
	/* every file, and every applied version whose file is gone, in version order */
	{
		size_t i = 0, k = 0;
		while (i < s.set.n || k < s.applied.n) {
			const struct migration *m = i < s.set.n ? &s.set.items[i] : NULL;
			const struct applied *a = k < s.applied.n ? &s.applied.items[k] : NULL;
			int c = !m ? 1 : !a ? -1 : ver_cmp(m->version, a->version);
			const char *status, *version, *description;
			char msbuf[32] = "";

			if (c > 0)
				m = NULL;
			if (c < 0)
				a = NULL;
			/* at least one of m and a is set: the loop runs while either is */
			version = m ? m->version : a ? a->version : "";
			description = m ? m->description : a ? a->description : "";
			status = !a ? "pending" : !m ? "missing" :
				 strcmp(m->checksum, a->checksum) ? "EDITED" : "applied";
			if (a)
				snprintf(msbuf, sizeof(msbuf), "%lld", a->execution_ms);
			out("%-18s %-8s %-20s %8s  %s%s\n", version, status,
			    a ? a->applied_at : "-", a ? msbuf : "-", description,
			    m && !m->down_sql ? "  (no down)" : "");
			if (arr) {
				cJSON *o = cJSON_CreateObject();
				cJSON_AddStringToObject(o, "version", version);
				cJSON_AddStringToObject(o, "description", description);
				cJSON_AddStringToObject(o, "status", status);
				if (m)
					cJSON_AddStringToObject(o, "path", m->path);
				if (a) {
					cJSON_AddStringToObject(o, "applied_at", a->applied_at);
					cJSON_AddStringToObject(o, "applied_by", a->applied_by);
					cJSON_AddNumberToObject(o, "execution_ms",
								(double)a->execution_ms);
				}
				if (m)
					cJSON_AddBoolToObject(o, "has_down", m->down_sql != NULL);
				cJSON_AddItemToArray(arr, o);
			}
			if (m)
				i++;
			if (a)
				k++;
		}
	}
	for (size_t i = 0; i < s.st.n_edited; i++)
		warning("applied migration '%s' was edited after it was applied; restore it or "
			"'safe-migrate stamp %s'", s.set.items[s.st.edited[i]].path,
			s.set.items[s.st.edited[i]].version);
	json_status(ctx, &s);
	session_close(&s);
	return EXIT_OK;
}

int cmd_check(struct cmd_ctx *ctx)
{
	struct session s;
	int code;

	if (session_open(&s, ctx, 0, &ctx->err) < 0)
		return report_error(ctx, &ctx->err);
	json_status(ctx, &s);
	warn_missing(&s);
	if (plan_check_consistent(&s.set, &s.applied, &s.st, 1, &ctx->err) < 0) {
		code = report_error(ctx, &ctx->err);
	} else if (s.st.n_pending) {
		out("%zu pending migration%s; database is at %s, head is %s\n", s.st.n_pending,
		    s.st.n_pending == 1 ? "" : "s",
		    hist_current(&s.applied) ? hist_current(&s.applied) : "base",
		    s.set.items[s.set.n - 1].version);
		code = EXIT_PENDING;
	} else {
		out("database is at head (%s)\n",
		    hist_current(&s.applied) ? hist_current(&s.applied) : "base");
		code = EXIT_OK;
	}
	if (ctx->json)
		cJSON_AddBoolToObject(ctx->json, "at_head", code == EXIT_OK);
	report_foreign(ctx, &s);
	session_close(&s);
	return code;
}

/* ---- stamp ---------------------------------------------------------------- */

/* stamp --from TOOL: which migrations the other tool's table says are
 * applied (want[i]).  -1 with ctx->err set when there is no such table or
 * it cannot be adopted. */
static int stamp_from(struct cmd_ctx *ctx, struct session *s, char *want)
{
	struct foreign_hist f = FOREIGN_HIST_INIT;
	enum foreign_tool tool = foreign_tool_named(opt.stamp_from);
	size_t unmatched = 0;
	int ret = -1;

	if (tool == FOREIGN_NONE) {
		err_set(&ctx->err, ERR_USAGE, "unknown tool '%s' for --from (dbmate, golang-migrate, "
			"alembic or flyway)", opt.stamp_from);
		return -1;
	}
	if (foreign_load(s->e, &f, &ctx->err) < 0)
		goto out;
	if (f.tool != tool) {
		err_set(&ctx->err, ERR_FAIL, "no %s version table in %s%s%s%s", opt.stamp_from,
			ctx->url.redacted, f.name ? " (found " : "", f.name ? f.name : "",
			f.name ? "'s)" : "");
		goto out;
	}
	if (foreign_applied(&f, &s->set, want, &unmatched, &ctx->err) < 0)
		goto out;
	if (unmatched)
		warning("%zu version%s in %s's table '%s' match%s no migration file", unmatched,
			unmatched == 1 ? "" : "s", f.name, f.table, unmatched == 1 ? "es" : "");
	info("adopting %s's history from '%s' (%zu version%s)", f.name, f.table, f.n,
	     f.n == 1 ? "" : "s");
	ret = 0;
out:
	foreign_release(&f);
	return ret;
}

int cmd_stamp(struct cmd_ctx *ctx)
{
	struct session s;
	long last = -1;
	int code = EXIT_ERROR, changed = 0;
	cJSON *stamped = NULL, *removed = NULL;
	char *want = NULL;

	if (opt.stamp_from ? ctx->argc != 0 : ctx->argc != 1)
		return usage_error(ctx, "stamp needs one TARGET (head, base, a version, +N or -N), "
				   "or --from TOOL alone");
	if (session_open(&s, ctx, SESSION_LOCK, &ctx->err) < 0)
		return report_error(ctx, &ctx->err);
	/* nor is the history of a half-migrated database rewritten */
	if ((code = check_unfinished(ctx, s.e, NULL)) != 0) {
		session_close(&s);
		return code;
	}
	want = xcalloc(s.set.n + 1, 1);
	if (opt.stamp_from) {
		if (stamp_from(ctx, &s, want) < 0)
			goto fail;
	} else {
		if (plan_stamp_target(&s.set, &s.applied, ctx->argv[0], &last, &ctx->err) < 0)
			goto fail;
		if (last >= 0)
			memset(want, 1, (size_t)last + 1);
	}
	if (hist_ensure(s.e, &ctx->err) < 0 || s.e->ops->begin(s.e, &ctx->err) < 0)
		goto fail;
	if (ctx->json) {
		stamped = cJSON_AddArrayToObject(ctx->json, "stamped");
		removed = cJSON_AddArrayToObject(ctx->json, "unstamped");
	}
	for (size_t i = 0; i < s.set.n; i++) {
		const struct migration *m = &s.set.items[i];
		long a = hist_index(&s.applied, m->version);

		if (!want[i])
			continue;
		if (a >= 0 && !strcmp(s.applied.items[a].checksum, m->checksum))
			continue;
		if (hist_record(s.e, m, a >= 0 ? s.applied.items[a].execution_ms : 0, &ctx->err) < 0)
			goto rollback;
		out("stamped %s %s%s\n", m->version, m->description,
		    a >= 0 ? " (new checksum recorded)" : "");
		if (stamped)
			cJSON_AddItemToArray(stamped, cJSON_CreateString(m->version));
		changed = 1;
	}
	for (size_t k = 0; k < s.applied.n && !opt.stamp_from; k++) {
		const char *v = s.applied.items[k].version;
		long idx = mig_index(&s.set, v);
		int keep = idx >= 0 ? idx <= last
				    : (last >= 0 && ver_cmp(v, s.set.items[last].version) <= 0);
		if (keep)
			continue;
		if (hist_remove(s.e, v, &ctx->err) < 0)
			goto rollback;
		out("unstamped %s\n", v);
		if (removed)
			cJSON_AddItemToArray(removed, cJSON_CreateString(v));
		changed = 1;
	}
	if (s.e->ops->commit(s.e, &ctx->err) < 0)
		goto rollback;
	/* the schema is recorded even when no version changed: stamping is how
	 * an operator accepts the database as it is now */
	session_record_schema(&s, NULL);
	if (!changed)
		out("already stamped at %s; nothing to do\n",
		    opt.stamp_from ? opt.stamp_from : ctx->argv[0]);
	if (session_reload(&s, &ctx->err) == 0)
		json_status(ctx, &s);
	session_close(&s);
	free(want);
	return EXIT_OK;
rollback:
	{
		struct sm_error ignored = SM_ERROR_INIT;
		s.e->ops->rollback(s.e, &ignored);
	}
fail:
	code = report_error(ctx, &ctx->err);
	session_close(&s);
	free(want);
	return code;
}

/* ---- sql ------------------------------------------------------------------- */

static int resolve_bound(const struct migration_set *set, const char *text, int is_start,
			 size_t *out, struct sm_error *err)
{
	long idx;

	if (!strcmp(text, "base")) {
		*out = 0;
		return 0;
	}
	if (!strcmp(text, "head")) {
		*out = set->n;
		return 0;
	}
	if (!ver_valid(text))
		return err_set(err, ERR_USAGE, "invalid %s '%.100s': expected base, head or a version",
			       is_start ? "--start" : "--end", text);
	idx = mig_index(set, text);
	if (idx < 0)
		return err_set(err, ERR_USAGE, "unknown version '%s': no migration file has it", text);
	*out = (size_t)idx + 1; /* start is exclusive (already applied), end inclusive */
	return 0;
}

int cmd_sql(struct cmd_ctx *ctx)
{
	struct migration_set set = MIGRATION_SET_INIT;
	struct strbuf script = STRBUF_INIT;
	const struct engine_ops *ops = engine_find(ctx->have_url ? ctx->url.scheme : "sqlite");
	size_t from = 0, to = 0;
	int code = EXIT_OK;

	if (ctx->argc)
		return usage_error(ctx, "sql takes --start and --end, not '%s'", ctx->argv[0]);
	if (mig_load(&set, ctx->mig_dirs, ctx->n_mig_dirs, &ctx->err) < 0)
		goto fail;
	lint_find_no_tx(&set, ops);
	to = set.n;
	if (opt.end && resolve_bound(&set, opt.end, 0, &to, &ctx->err) < 0)
		goto fail;
	if (opt.start) {
		if (resolve_bound(&set, opt.start, 1, &from, &ctx->err) < 0)
			goto fail;
	} else if (ctx->have_url) {
		/* default start: the database's current version (read only) */
		struct session s;
		if (session_open(&s, ctx, SESSION_NO_MIGRATIONS, &ctx->err) < 0)
			goto fail;
		if (hist_current(&s.applied)) {
			long idx = mig_index(&set, hist_current(&s.applied));
			from = idx >= 0 ? (size_t)idx + 1 : 0;
		}
		session_close(&s);
	}
	if (from > to) {
		err_set(&ctx->err, ERR_USAGE, "--start is after --end");
		goto fail;
	}
	/* with no database the engine is unknown: the script's own statements
	 * are portable SQL (standard quoting), and the header says no more */
	plan_render_sql(ops, ctx->have_url ? NULL : "no database given: engine not known; "
			"the version-table statements are portable SQL", &set, from, to, &script);
	if (ctx->json) {
		cJSON_AddStringToObject(ctx->json, "sql", script.buf);
		cJSON *v = cJSON_AddArrayToObject(ctx->json, "versions");
		for (size_t i = from; i < to; i++)
			cJSON_AddItemToArray(v, cJSON_CreateString(set.items[i].version));
	} else {
		fwrite(script.buf, 1, script.len, stdout);
	}
	goto out;
fail:
	code = report_error(ctx, &ctx->err);
out:
	sb_release(&script);
	mig_set_release(&set);
	return code;
}

/* ---- create ---------------------------------------------------------------- */

static void slugify(const char *msg, struct strbuf *out)
{
	int pending_sep = 0;

	for (const unsigned char *c = (const unsigned char *)msg; *c && out->len < 60; c++) {
		if ((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9')) {
			if (pending_sep && out->len)
				sb_addch(out, '_');
			pending_sep = 0;
			sb_addch(out, *c);
		} else if (*c >= 'A' && *c <= 'Z') {
			if (pending_sep && out->len)
				sb_addch(out, '_');
			pending_sep = 0;
			sb_addch(out, *c - 'A' + 'a');
		} else {
			pending_sep = 1;
		}
	}
}

/* The next version of a numbered up/down pair directory (golang-migrate's
 * "000123_name.up.sql"): the newest migration's number plus one, as wide,
 * into buf; 0 when the directory follows another layout (or is empty). */
static int next_pair_version(const struct migration_set *set, char *buf, size_t size)
{
	const struct migration *last = set->n ? &set->items[set->n - 1] : NULL;
	unsigned long long n;
	size_t len;
	char *end;

	if (!last || strlen(last->path) < 7 || strcmp(last->path + strlen(last->path) - 7, ".up.sql"))
		return 0;
	len = strlen(last->version);
	if (!len || len > 18 || strspn(last->version, "0123456789") != len)
		return 0;
	n = strtoull(last->version, &end, 10);
	snprintf(buf, size, "%0*llu", (int)len, n + 1);
	return 1;
}

/* Writes body as migration VERSION_slug.SUFFIX in the first migrations
 * directory; the path goes to *path (caller frees). */
static int write_migration(struct cmd_ctx *ctx, const struct migration_set *set,
			   const char *stamp, const char *slug, const char *suffix,
			   const struct strbuf *body, char **path)
{
	struct strbuf name = STRBUF_INIT;
	int fd, ret = -1;

	if (mig_index(set, stamp) >= 0 && !strcmp(suffix, ".sql")) {
		err_set(&ctx->err, ERR_FAIL, "a migration with version %s already exists; wait a "
			"second and try again", stamp);
		goto out;
	}
	sb_addf(&name, "%s_%s%s", stamp, slug, suffix);
	*path = fs_join(ctx->mig_dirs[0], name.buf);
	fd = open(*path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		err_sys(&ctx->err, "cannot create '%s'", *path);
		goto out;
	}
	if (fs_write_all(fd, body->buf, body->len) < 0 || fsync(fd) < 0) {
		err_sys(&ctx->err, "cannot write '%s'", *path);
		close(fd);
		unlink(*path);
		goto out;
	}
	close(fd);
	out("%s\n", *path);
	if (ctx->json) {
		cJSON *paths = cJSON_GetObjectItem(ctx->json, "paths");
		if (!paths) {
			cJSON_AddStringToObject(ctx->json, "path", *path);
			cJSON_AddStringToObject(ctx->json, "version", stamp);
			paths = cJSON_AddArrayToObject(ctx->json, "paths");
		}
		cJSON_AddItemToArray(paths, cJSON_CreateString(*path));
	}
	ret = 0;
out:
	sb_release(&name);
	return ret;
}

int cmd_create(struct cmd_ctx *ctx)
{
	struct strbuf slug = STRBUF_INIT, slug2 = STRBUF_INIT, body = STRBUF_INIT,
		      body2 = STRBUF_INIT;
	struct migration_set set = MIGRATION_SET_INIT;
	char *path = NULL, *path2 = NULL;
	time_t t = time(NULL);
	int code = EXIT_OK;
	char stamp[32];
	struct tm tm;

	if (ctx->argc != 1)
		return usage_error(ctx, "create needs one MESSAGE (quote it: create \"add users\")");
	slugify(ctx->argv[0], &slug);
	if (!slug.len)
		return usage_error(ctx, "message '%s' has no letters or digits", ctx->argv[0]);
	if (opt.from_schema) {
		extern int cmd_create_from_schema(struct cmd_ctx *, const char *, struct strbuf *,
						  struct strbuf *);
		int r = cmd_create_from_schema(ctx, opt.from_schema, &body, &body2);
		if (r < 0)
			goto fail;
		if (r > 0)
			goto out; /* no changes: no file */
	} else {
		sb_adds(&body, "-- migrate:up\n\n\n-- migrate:down\n\n");
	}
	if (fs_mkdirs(ctx->mig_dirs[0], 0755, &ctx->err) < 0)
		goto fail;
	if (mig_load(&set, ctx->mig_dirs, ctx->n_mig_dirs, &ctx->err) < 0)
		goto fail;
	if (!opt.from_schema && next_pair_version(&set, stamp, sizeof(stamp))) {
		/* the directory's own layout: an empty up/down pair, next number */
		struct strbuf empty = STRBUF_INIT;

		if (write_migration(ctx, &set, stamp, slug.buf, ".up.sql", &empty, &path) < 0)
			goto fail;
		if (write_migration(ctx, &set, stamp, slug.buf, ".down.sql", &empty, &path2) < 0) {
			unlink(path);
			goto fail;
		}
		goto out;
	}
	gmtime_r(&t, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%d_%H%M%S", &tm);
	if (write_migration(ctx, &set, stamp, slug.buf, ".sql", &body, &path) < 0)
		goto fail;
	if (body2.len) {
		/* the CONCURRENTLY indexes: a transaction:false migration of their
		 * own, one second later so that it runs after the first */
		t++;
		gmtime_r(&t, &tm);
		strftime(stamp, sizeof(stamp), "%Y%m%d_%H%M%S", &tm);
		sb_addf(&slug2, "%s_concurrently", slug.buf);
		if (write_migration(ctx, &set, stamp, slug2.buf, ".sql", &body2, &path2) < 0) {
			unlink(path);
			goto fail;
		}
	}
	goto out;
fail:
	code = report_error(ctx, &ctx->err);
out:
	free(path);
	free(path2);
	sb_release(&slug);
	sb_release(&slug2);
	sb_release(&body);
	sb_release(&body2);
	mig_set_release(&set);
	return code;
}

/* ---- init ------------------------------------------------------------------- */

int cmd_init(struct cmd_ctx *ctx)
{
	const char *cfg_path = opt.config ? opt.config : "safe-migrate.ini";
	struct strbuf text = STRBUF_INIT;
	struct session s;
	int code = EXIT_OK;

	if (ctx->argc > 1)
		return usage_error(ctx, "init takes at most one URL, not '%s'", ctx->argv[1]);
	if (ctx->argc == 1) {
		url_release(&ctx->url);
		if (url_parse(ctx->argv[0], NULL, &ctx->url, &ctx->err) < 0)
			goto fail;
		ctx->have_url = 1;
	}
	if (!fs_exists(cfg_path)) {
		const char *url_text = ctx->argc == 1 ? ctx->argv[0] : "sqlite:///app.db";
		if (ctx->argc == 1 && strcmp(ctx->url.redacted, ctx->argv[0]))
			warning("the URL holds a password; writing it to '%s' as given; consider "
				"PGPASSWORD or ~/.pgpass instead", cfg_path);
		sb_addf(&text, "# safe-migrate configuration (flag > environment > this file)\n"
			"[safe-migrate]\n"
			"database_url = %s\n"
			"migrations_dir = %s\n"
			"backup_dir = %s\n",
			url_text, ctx->mig_dirs[0], ctx->backup_dir);
		if (fs_write_atomic(cfg_path, text.buf, text.len, 0600, &ctx->err) < 0)
			goto fail;
		out("created %s\n", cfg_path);
		if (!ctx->have_url) {
			if (url_parse(url_text, NULL, &ctx->url, &ctx->err) < 0)
				goto fail;
			ctx->have_url = 1;
		}
	} else {
		info("'%s' exists; leaving it as it is", cfg_path);
		if (!ctx->have_url) {
			err_set(&ctx->err, ERR_USAGE, "'%s' has no database_url; add one or pass -d URL",
				cfg_path);
			goto fail;
		}
	}
	if (!fs_is_dir(ctx->mig_dirs[0])) {
		if (fs_mkdirs(ctx->mig_dirs[0], 0755, &ctx->err) < 0)
			goto fail;
		out("created %s/\n", ctx->mig_dirs[0]);
	}
	if (session_open(&s, ctx, SESSION_CREATE | SESSION_LOCK, &ctx->err) < 0)
		goto fail;
	if (hist_ensure(s.e, &ctx->err) < 0) {
		session_close(&s);
		goto fail;
	}
	out("version table ready in %s\n", ctx->url.redacted);
	session_close(&s);
	if (ctx->json)
		cJSON_AddStringToObject(ctx->json, "database_url", ctx->url.redacted);
	if (opt.migrate) {
		ctx->argc = 0;
		code = cmd_upgrade(ctx);
	}
	goto out;
fail:
	code = report_error(ctx, &ctx->err);
out:
	sb_release(&text);
	return code;
}
