/*
 * cmd_pending: what this build does not do yet, said plainly.
 *
 * `create --from-schema` (autogenerate) has not landed; it fails with exit 1
 * and writes no file.
 */
#include "cli.h"
#include "strbuf.h"

int cmd_create_from_schema(struct cmd_ctx *ctx, const char *file, struct strbuf *body);
int cmd_create_from_schema(struct cmd_ctx *ctx, const char *file, struct strbuf *body)
{
	(void)file;
	(void)body;
	return err_set(&ctx->err, ERR_FAIL, "create --from-schema is not implemented yet in "
		       "this build; write the migration by hand");
}
