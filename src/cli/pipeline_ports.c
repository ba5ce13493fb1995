/*
 * pipeline_ports: the pipeline's view of backup/, restore/ and safety/
 * (see pipeline.h).
 *
 * A port whose module has not landed in this build fails with a clear
 * message, so the pipeline refuses to run rather than run unprotected.
 */
#include <stdlib.h>
#include <string.h>

#include "backup.h"
#include "pipeline.h"
#include "progress.h"
#include "restore.h"
#include "snapshot.h"
#include "xalloc.h"

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
	struct backup_opts bo;
	struct backup_result res = BACKUP_RESULT_INIT;
	struct progress pr;
	int rc;

	*path = NULL;
	memset(&bo, 0, sizeof(bo));
	progress_init(&pr, "snapshot");
	bo.progress = progress_cb;
	bo.progress_ud = &pr;
	rc = backup_take(e, ctx->backup_dir, name, &bo, &res, err);
	progress_end(&pr);
	if (rc == 0) {
		*path = res.path;
		res.path = NULL;
	}
	backup_result_release(&res);
	return rc;
}

int port_verify(const char *path, struct sm_error *err)
{
	struct snap_problems probs = SNAP_PROBLEMS_INIT;
	int rc;

	if (snap_verify(path, &probs, NULL, err) < 0)
		return -1;
	rc = probs.n ? err_set(err, ERR_DAMAGED, "snapshot '%s' is damaged: %s", path,
			       probs.items[0])
		     : 0;
	snap_problems_release(&probs);
	return rc;
}

int port_restore(struct cmd_ctx *ctx, const char *path, const struct db_url *url,
		 struct sm_error *err)
{
	struct restore_opts ro;
	struct progress pr;
	struct engine *e = NULL;
	int rc;

	(void)ctx;
	memset(&ro, 0, sizeof(ro));
	/* the caller holds the migration lock on its own connection; this one
	 * must not wait for it.  A rehearsal target may not exist yet. */
	if (engine_open(&e, url, ENGINE_CREATE, err) < 0)
		return -1;
	progress_init(&pr, "restore");
	ro.progress = progress_cb;
	ro.progress_ud = &pr;
	rc = restore_snapshot(path, e, &ro, err);
	progress_end(&pr);
	engine_close(e);
	return rc;
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
