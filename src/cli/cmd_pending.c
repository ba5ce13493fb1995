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

int cmd_roundtrip(struct cmd_ctx *ctx) { return not_yet(ctx); }
int cmd_create_from_schema(struct cmd_ctx *ctx, const char *file, struct strbuf *body);
int cmd_create_from_schema(struct cmd_ctx *ctx, const char *file, struct strbuf *body)
{
	(void)file;
	(void)body;
	return err_set(&ctx->err, ERR_FAIL, "create --from-schema is not implemented yet in "
		       "this build");
}
