/*
 * cmd_pending: handlers for commands whose implementation has not landed
 * yet.  Each says so plainly and exits 1; they are replaced one by one as
 * the snapshot, safety and pipeline modules land.
 */
#include "cli.h"
#include "session.h"

static int not_yet(struct cmd_ctx *ctx)
{
	err_set(&ctx->err, ERR_FAIL, "'%s' is not implemented yet in this build",
		ctx->cmd->name);
	return report_error(ctx, &ctx->err);
}

int cmd_backup(struct cmd_ctx *ctx) { return not_yet(ctx); }
int cmd_list_backups(struct cmd_ctx *ctx) { return not_yet(ctx); }
int cmd_verify(struct cmd_ctx *ctx) { return not_yet(ctx); }
int cmd_restore(struct cmd_ctx *ctx) { return not_yet(ctx); }
int cmd_prune(struct cmd_ctx *ctx) { return not_yet(ctx); }
int cmd_drop_tables(struct cmd_ctx *ctx) { return not_yet(ctx); }
int cmd_safe_migrate(struct cmd_ctx *ctx) { return not_yet(ctx); }
int cmd_run(struct cmd_ctx *ctx) { return not_yet(ctx); }
int cmd_recover(struct cmd_ctx *ctx) { return not_yet(ctx); }
int cmd_roundtrip(struct cmd_ctx *ctx) { return not_yet(ctx); }
int cmd_history_runs(struct cmd_ctx *ctx);
int cmd_history_runs(struct cmd_ctx *ctx)
{
	err_set(&ctx->err, ERR_FAIL, "history --runs needs the run journal, which is not "
		"implemented yet in this build");
	return report_error(ctx, &ctx->err);
}
int cmd_create_from_schema(struct cmd_ctx *ctx, const char *file, struct strbuf *body);
int cmd_create_from_schema(struct cmd_ctx *ctx, const char *file, struct strbuf *body)
{
	(void)file;
	(void)body;
	return err_set(&ctx->err, ERR_FAIL, "create --from-schema is not implemented yet in "
		       "this build");
}
