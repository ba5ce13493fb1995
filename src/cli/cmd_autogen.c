/*
 * cmd_autogen: `create MESSAGE --from-schema FILE`, the migration written
 * from a desired-schema SQL file.  FILE is loaded into a scratch database of
 * the configured engine, the live schema is diffed against it (safety/
 * autogen.h), the changes are summarised on stderr with destructive ones
 * called out, and the generated up section is linted.  cmd_create writes the
 * file(s).
 */
#include <stdlib.h>
#include <string.h>

#include "autogen.h"
#include "cli.h"
#include "fsutil.h"
#include "lint.h"
#include "migration.h"

#define MAX_SCHEMA_FILE (64u << 20)

static void section(struct strbuf *body, const char *dir, int no_tx, const struct strbuf *sql)
{
	sb_addf(body, "-- migrate:%s%s\n", dir, no_tx ? " transaction:false" : "");
	sb_add(body, sql->buf, sql->len);
	sb_addch(body, '\n');
}

static void print_lines(const char *text, int warn)
{
	const char *p = text;

	while (*p) {
		const char *nl = strchr(p, '\n');
		int len = nl ? (int)(nl - p) : (int)strlen(p);
		if (warn)
			warning("%.*s", len, p);
		else
			info("  %.*s", len, p);
		p += len + (nl ? 1 : 0);
	}
}

static int lint_generated(struct engine *live, const struct autogen_result *r,
			  struct sm_error *err)
{
	struct lint_ctx *lc = NULL;
	struct finding_list l = FINDING_LIST_INIT;
	int ret = -1;

	if (lint_begin(&lc, live->ops->name, live, err) < 0)
		return -1;
	if (lint_migration(lc, r->up.buf, "(generated up)", 1, !r->up_no_tx, &l, err) < 0)
		goto out;
	if (r->cup.len &&
	    lint_migration(lc, r->cup.buf, "(generated concurrently up)", 1, 0, &l, err) < 0)
		goto out;
	/* on stderr: stdout carries only the new file's path */
	for (size_t i = 0; i < l.n; i++) {
		const struct finding *f = &l.items[i];
		warning("lint %s:%d: %s: %s%s%s", f->file ? f->file : "(generated)", f->line,
			f->check_or_rule, f->message, f->hint ? "; hint: " : "",
			f->hint ? f->hint : "");
	}
	ret = 0;
out:
	finding_list_release(&l);
	lint_end(lc);
	return ret;
}

/* Returns 0 with body (and body2, the CONCURRENTLY migration, possibly
 * empty) filled, 1 when there is nothing to change, -1 on error. */
int cmd_create_from_schema(struct cmd_ctx *ctx, const char *file, struct strbuf *body,
			   struct strbuf *body2);
int cmd_create_from_schema(struct cmd_ctx *ctx, const char *file, struct strbuf *body,
			   struct strbuf *body2)
{
	struct engine *live = NULL, *scratch = NULL;
	struct strbuf text = STRBUF_INIT;
	struct autogen_result r = AUTOGEN_RESULT_INIT;
	struct exec_source src = { file, 1 };
	int ret = -1;

	if (!ctx->have_url)
		return err_set(&ctx->err, ERR_USAGE, "create --from-schema needs the database to "
			       "compare with: pass -d URL or set database_url");
	if (fs_read_file(file, &text, MAX_SCHEMA_FILE, &ctx->err) < 0 ||
	    mig_check_text(file, text.buf, text.len, &ctx->err) < 0)
		goto out;
	if (engine_open(&live, &ctx->url, 0, &ctx->err) < 0)
		goto out;
	if (autogen_scratch_open(live, &scratch, &ctx->err) < 0)
		goto out;
	if (scratch->ops->exec_script(scratch, text.buf, &src, &ctx->err) < 0) {
		err_prefix(&ctx->err, "cannot load the desired schema '%s' into a scratch database",
			   file);
		goto out;
	}
	if (autogen_diff(live, scratch, &r, &ctx->err) < 0)
		goto out;
	if (!r.n_changes) {
		info("no changes: the database already has the schema of '%s'", file);
		if (ctx->json)
			cJSON_AddNumberToObject(ctx->json, "changes", 0);
		ret = 1;
		goto out;
	}
	info("%zu change%s from %s to '%s':", r.n_changes, r.n_changes == 1 ? "" : "s",
	     ctx->url.redacted, file);
	print_lines(r.summary.buf, 0);
	print_lines(r.warnings.buf, 1);
	if (ctx->json)
		cJSON_AddNumberToObject(ctx->json, "changes", (double)r.n_changes);
	section(body, "up", r.up_no_tx, &r.up);
	section(body, "down", r.down_no_tx, &r.down);
	if (r.cup.len) {
		section(body2, "up", 1, &r.cup);
		section(body2, "down", 1, &r.cdown);
	}
	if (lint_generated(live, &r, &ctx->err) < 0)
		goto out;
	ret = 0;
out:
	autogen_scratch_close(live, scratch);
	engine_close(live);
	autogen_result_release(&r);
	sb_release(&text);
	return ret;
}
