/*
 * engine_pg: the PostgreSQL backend of the engine interface (libpq).
 *
 * Placeholder until the PostgreSQL engine lands: every URL is refused with
 * "not yet supported" rather than a parse error.
 */
#include "engine.h"

static int pg_open(struct engine *e, unsigned flags, struct sm_error *err)
{
	(void)flags;
	return err_set(err, ERR_USAGE, "PostgreSQL databases are not yet supported ('%s')",
		       e->url.redacted);
}

static void pg_noop(struct engine *e)
{
	(void)e;
}

const struct engine_ops engine_pg_ops = {
	.name = "postgresql",
	.display_name = "PostgreSQL",
	.open = pg_open,
	.close = pg_noop,
	.unlock = pg_noop,
	.interrupt = pg_noop,
};
