/*
 * session: the state a migration command works on: the migration set (read
 * and checked before the database is touched), the open engine holding the
 * migration lock, and the version table's contents.
 */
#ifndef SM_SESSION_H
#define SM_SESSION_H

#include "cli.h"
#include "engine.h"
#include "history.h"
#include "migration.h"
#include "plan.h"
#include "schema.h"

struct session {
	struct migration_set set;
	struct engine *e;
	struct applied_set applied;
	struct mig_status st;
};

#define SESSION_LOCK 0x1  /* take the migration lock */
#define SESSION_CREATE 0x2 /* create a missing SQLite database (init) */
#define SESSION_NO_MIGRATIONS 0x4 /* do not load the migration directories */

/* Loads the migrations, opens the database, optionally locks, loads history. */
int session_open(struct session *s, struct cmd_ctx *ctx, unsigned flags, struct sm_error *err);
/* Reloads the version table and status (after applying). */
int session_reload(struct session *s, struct sm_error *err);
void session_close(struct session *s);

/* Signal handling for long operations: SIGINT/SIGTERM set cli_interrupted
 * and interrupt the statement running on e. */
void signals_watch(struct engine *e);
void signals_unwatch(void);

/* Records the schema fingerprint after a successful change (safety module);
 * prev (may be NULL): the model read before the change, which
 * schema_load_since may take the unchanged tables from. */
void session_record_schema(struct session *s, const struct schema_model *prev);

#endif
