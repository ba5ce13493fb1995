/*
 * foreign: other migration tools' version tables.
 *
 * A database migrated by dbmate or golang-migrate (schema_migrations),
 * Alembic (alembic_version) or Flyway (flyway_schema_history) already says
 * what is applied.  foreign_load() finds such a table and reads it; `stamp
 * --from TOOL` adopts that history into safe-migrate's own table, and from
 * then on a dbmate or golang-migrate table that mirrors ours is kept in step
 * by every applied step (foreign_step, called by apply_plan), so the old
 * tool still works.  "Mirrors" is the test, not a flag: dbmate's rows are
 * exactly our applied versions, golang-migrate's one row is our current
 * version and not dirty.
 */
#ifndef SM_FOREIGN_H
#define SM_FOREIGN_H

#include <stddef.h>

#include "engine.h"
#include "error.h"
#include "history.h"
#include "migration.h"
#include "strbuf.h"

enum foreign_tool { FOREIGN_NONE, FOREIGN_DBMATE, FOREIGN_GOLANG, FOREIGN_ALEMBIC, FOREIGN_FLYWAY };

struct foreign_hist {
	enum foreign_tool tool;
	const char *name;  /* "dbmate", "golang-migrate", "alembic", "flyway" (static) */
	const char *table; /* static */
	char **versions;   /* as the table holds them; golang-migrate and alembic: one */
	size_t n;
	int dirty;         /* golang-migrate's flag: a migration failed part-way */
};

#define FOREIGN_HIST_INIT { FOREIGN_NONE, NULL, NULL, NULL, 0, 0 }

/* Finds and reads the first other tool's version table present on e (none:
 * out->tool == FOREIGN_NONE, return 0). */
int foreign_load(struct engine *e, struct foreign_hist *out, struct sm_error *err);
void foreign_release(struct foreign_hist *f);
/* The tool named by a `stamp --from` argument, or FOREIGN_NONE. */
enum foreign_tool foreign_tool_named(const char *name);
/* Does f's table mirror applied (so that foreign_step keeps it so)? */
int foreign_in_step(const struct foreign_hist *f, const struct applied_set *applied);
/* Which migrations f says are applied: want[i] = 1 for set->items[i]
 * (want has set->n entries).  Versions of f that no file has are counted
 * in *unmatched.  A dirty golang-migrate table, or an alembic revision that
 * is no version of set, is an error. */
int foreign_applied(const struct foreign_hist *f, const struct migration_set *set, char *want,
		    size_t *unmatched, struct sm_error *err);
/* Mirrors one applied step in f's table, in the current transaction: up
 * adds m's version (dbmate) or makes it the version (golang-migrate); down
 * removes it (dbmate) or sets the version to prev (NULL: none). */
int foreign_step(struct engine *e, const struct foreign_hist *f, const struct migration *m,
		 int up, const char *prev, struct sm_error *err);

/* One line for `current` and `safety-check` on what f is and how it stands
 * with applied, e.g. "dbmate's version table 'schema_migrations' (20
 * versions, newest 2024...): not adopted; adopt it with 'safe-migrate stamp
 * --from dbmate'".  Returns 1 when it is in step (or adopted as far as it
 * goes), 0 when it needs attention. */
int foreign_describe(const struct foreign_hist *f, const struct applied_set *applied,
		     struct strbuf *out);

#endif
