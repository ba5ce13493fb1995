/*
 * autogen: writes the SQL that turns one schema into another (`create
 * --from-schema`).  The desired schema is loaded into a scratch database of
 * the live database's engine (autogen_scratch_open), both are introspected
 * into the schema model (schema.h), and the two models are diffed into an up
 * section (live -> desired) and a down section (desired -> live).  The DDL
 * for new tables, views, indexes and triggers comes from the database that
 * holds them (SQLite: sqlite_master.sql; PostgreSQL: the pg_get_*def text
 * and the model's columns).
 *
 * SQLite changes ALTER TABLE cannot express (column type, nullability or
 * default, constraints, dropped columns) become the documented table
 * rebuild, in a transaction:false section that turns foreign keys off,
 * rebuilds inside BEGIN/COMMIT, fails if PRAGMA foreign_key_check finds a
 * violation, and turns foreign keys back on.  On PostgreSQL foreign keys and
 * checks on existing tables are added NOT VALID and then validated, and new
 * indexes on existing tables go to a separate transaction:false section with
 * CREATE INDEX CONCURRENTLY.
 */
#ifndef SM_AUTOGEN_H
#define SM_AUTOGEN_H

#include <stddef.h>

#include "engine.h"
#include "error.h"
#include "strbuf.h"

struct autogen_result {
	struct strbuf up, down;   /* the main sections' SQL */
	int up_no_tx, down_no_tx; /* the section needs transaction:false */
	struct strbuf cup, cdown; /* PostgreSQL: CONCURRENTLY index section (may be empty) */
	struct strbuf summary;    /* one line per change, "+ ", "- " or "~ " first */
	struct strbuf warnings;   /* one line per destructive or unsupported change */
	size_t n_changes;
};

#define AUTOGEN_RESULT_INIT { STRBUF_INIT, STRBUF_INIT, 0, 0, STRBUF_INIT, STRBUF_INIT, \
			      STRBUF_INIT, STRBUF_INIT, 0 }

void autogen_result_release(struct autogen_result *r);

/* Creates an empty scratch database of live's engine and opens it into
 * *scratch (SQLite: a temporary file; PostgreSQL: CREATE DATABASE
 * sm_autogen_<pid> through live).  Release with autogen_scratch_close, which
 * removes the database. */
int autogen_scratch_open(struct engine *live, struct engine **scratch, struct sm_error *err);
void autogen_scratch_close(struct engine *live, struct engine *scratch);

/* Diffs live against desired (two engines of the same kind) into *r (fresh,
 * AUTOGEN_RESULT_INIT; caller releases).  No change: r->n_changes == 0. */
int autogen_diff(struct engine *live, struct engine *desired, struct autogen_result *r,
		 struct sm_error *err);

#endif
