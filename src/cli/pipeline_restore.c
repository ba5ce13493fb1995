/*
 * pipeline_restore: the pipeline's decisions around an automatic restore
 * (see pipeline_restore.h).
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "history.h"
#include "pipeline_restore.h"
#include "xalloc.h"

int guard_policy_stop(struct sm_error *err)
{
	const char *v = opt.on_concurrent_writes;

	if (!v || !strcmp(v, "restore"))
		return 0;
	if (!strcmp(v, "stop"))
		return 1;
	return err_set(err, ERR_USAGE, "--on-concurrent-writes takes 'restore' or 'stop', not '%s'",
		       v);
}

int guard_start(struct restore_guard *g, struct engine *e, int count_writes,
		struct sm_error *err)
{
	struct strbuf sb = STRBUF_INIT;

	guard_release(g);
	if (e->ops->user_schemas) {
		if (e->ops->user_schemas(e, &sb, err) < 0) {
			sb_release(&sb);
			return -1;
		}
		g->schemas = sb_detach(&sb);
	}
	if (count_writes && e->ops->writes_mark && e->ops->writes_mark(e, &g->mark, err) < 0)
		return -1;
	return 0;
}

void guard_release(struct restore_guard *g)
{
	free(g->mark);
	free(g->schemas);
	g->mark = NULL;
	g->schemas = NULL;
}

int guard_foreign_writes(const struct restore_guard *g, struct engine *e, struct strbuf *out,
			 struct sm_error *err)
{
	if (!g->mark || !e->ops->writes_since)
		return 0;
	return e->ops->writes_since(e, g->mark, out, err);
}

int guard_version_absent(struct engine *e, const char *version)
{
	struct sm_error ignored = SM_ERROR_INIT;
	const char *const params[] = { version };
	char *n = NULL;
	int absent;

	if (e->in_tx ||
	    engine_scalar(e, "SELECT count(*) FROM " HIST_TABLE " WHERE version = $1", 1, params,
			  &n, &ignored) < 0)
		return 0;
	absent = n && !strcmp(n, "0");
	free(n);
	return absent;
}
