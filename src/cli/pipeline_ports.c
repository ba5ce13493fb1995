/*
 * pipeline_ports: the pipeline's view of backup/, restore/ and safety/
 * (see pipeline.h).
 *
 * Until those modules land in this build, every port fails with a clear
 * message, so the pipeline refuses to run rather than run unprotected.
 */
#include <stdlib.h>

#include "pipeline.h"

static int unavailable(const char *what, struct sm_error *err)
{
	return err_set(err, ERR_FAIL, "%s is not available in this build", what);
}

int port_safety_check(struct cmd_ctx *ctx, struct session *s, cJSON *arr, struct sm_error *err)
{
	(void)ctx;
	(void)s;
	(void)arr;
	unavailable("the safety module", err);
	return 1;
}

int port_backup(struct cmd_ctx *ctx, struct engine *e, const char *name, char **path,
		struct sm_error *err)
{
	(void)ctx;
	(void)e;
	(void)name;
	*path = NULL;
	return unavailable("the snapshot module", err);
}

int port_verify(const char *path, struct sm_error *err)
{
	(void)path;
	return unavailable("the snapshot module", err);
}

int port_restore(struct cmd_ctx *ctx, const char *path, const struct db_url *url,
		 struct sm_error *err)
{
	(void)ctx;
	(void)path;
	(void)url;
	return unavailable("the snapshot module", err);
}

int port_capture(struct engine *e, struct db_state *st, struct sm_error *err)
{
	(void)e;
	(void)st;
	return unavailable("the schema model", err);
}

void port_state_release(struct db_state *st)
{
	free(st->schema_text);
	free(st->row_counts);
	st->schema_text = st->row_counts = NULL;
}

int port_validate(struct engine *e, const struct db_state *before, int check_schema, cJSON *arr,
		  struct sm_error *err)
{
	(void)e;
	(void)before;
	(void)check_schema;
	(void)arr;
	unavailable("the safety module", err);
	return 1;
}
