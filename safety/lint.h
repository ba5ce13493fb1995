/*
 * lint: finds dangerous operations in migration SQL before it runs.
 *
 * PostgreSQL SQL is parsed with libpg_query (the server's own grammar) and
 * the JSON parse tree is walked; no regular expressions touch SQL.  SQLite
 * SQL is prepared with sqlite3_prepare_v2 against a scratch in-memory copy
 * of the live schema, statement by statement, and each statement is then run
 * on that scratch copy (schema only, no data) so later statements and later
 * migrations see the tables earlier ones create.  Destructive statements are
 * recognised from SQLite's authorizer callbacks and from the scratch
 * schema before and after each statement.
 *
 * Rules and levels (LEVEL_FAIL blocks: `lint` and `safety-check` exit 4):
 *
 *   sql-error                               FAIL  the statement does not parse / prepare
 *   adding-not-null-column-without-default  FAIL  fails on any non-empty table
 *   concurrently-in-transaction             FAIL  CREATE/DROP INDEX CONCURRENTLY, REINDEX
 *                                                 CONCURRENTLY, VACUUM, CREATE/DROP DATABASE,
 *                                                 ALTER SYSTEM, tablespaces in a
 *                                                 transactional migration: always errors
 *   create-index-non-concurrently           WARN  blocks writes for the whole build (also
 *                                                 ADD UNIQUE/PRIMARY KEY without USING INDEX)
 *   column-type-change                      WARN  rewrites the table under an exclusive lock
 *   set-not-null                            WARN  scans the table under an exclusive lock
 *   constraint-without-not-valid            WARN  FK/CHECK validated under the lock
 *   drop-table, drop-column, truncate       WARN  destructive (the snapshot is the safety net)
 *   rename-column, rename-table             WARN  breaks application code still running
 *   update-or-delete-without-where          WARN  touches every row
 *   vacuum-full, cluster                    WARN  rewrite under an ACCESS EXCLUSIVE lock
 *   missing-lock-timeout                    WARN  a statement taking a write-blocking lock
 *                                                 (ALTER TABLE, CREATE INDEX, DROP TABLE/
 *                                                 INDEX, TRUNCATE, REFRESH MATERIALIZED
 *                                                 VIEW, CREATE TRIGGER, ...) before any
 *                                                 SET lock_timeout in the migration
 *   drop-index-non-concurrently             WARN  DROP INDEX without CONCURRENTLY
 *   dynamic-sql                             WARN  EXECUTE of a computed string in a DO block
 *   empty-migration                         WARN  an empty (or comment-only) up section
 *
 * Rules about locks and emptiness (index, type change, not null, constraint,
 * lock timeout) only fire for tables that existed before the lint run: a
 * table created earlier in the run is empty and unused.  Destructive rules
 * (drop, rename) skip only tables created by the same migration.  CREATE
 * TABLE IF NOT EXISTS creates nothing for these rules.  column-type-change
 * skips binary-coercible changes when the old type is known (an earlier
 * CREATE TABLE, or the live PostgreSQL database).  The SQL inside DO blocks
 * is parsed with pg_query_parse_plpgsql and linted like the rest.  The SQLite dialect has sql-error, drop-table, drop-column,
 * rename-table, rename-column, update-or-delete-without-where (an UPDATE
 * or DELETE that reads no column of its table, i.e. has no WHERE clause on
 * it; an UPDATE that reads a column in its SET list is not recognised) and
 * attach (WARN: ATTACH; the statements naming the attached database cannot
 * be prepared on the scratch copy, so the first that fails ends the
 * migration's lint as not checked rather than as an sql-error).
 *
 * Suppression: a comment `-- safe-migrate:ignore RULE[,RULE...]` (or `all`)
 * among the comment lines directly before a statement silences those rules
 * for that statement only; lint_ignore() silences rules for a whole run
 * (RULE, or RULE:VERSION for one migration).
 */
#ifndef SM_LINT_H
#define SM_LINT_H

#include <signal.h>
#include <stddef.h>

#include "engine.h"
#include "error.h"
#include "finding.h"
#include "migration.h"

struct lint_rule {
	const char *name;
	enum level level;
	const char *hint; /* the safe alternative */
};

/* The rule table (for help and docs).  Borrowed, static. */
const struct lint_rule *lint_rules(size_t *n);

struct lint_ctx;

/* Starts a lint run in engine_name's dialect ("postgresql", or "sqlite" for
 * anything else).  live (borrowed, may be NULL) is the database the
 * migrations will run on: the SQLite dialect copies its schema into the
 * scratch database.  Caller frees with lint_end. */
int lint_begin(struct lint_ctx **out, const char *engine_name, struct engine *live,
	       struct sm_error *err);
/* Lints one migration (one up section), appending findings to out.  Call in
 * version order.  file/first_line place findings; transactional is 0 for a
 * transaction:false migration.  Problems in the SQL are findings, not
 * errors: -1 means lint itself failed (err set). */
int lint_migration(struct lint_ctx *c, const char *sql, const char *file, int first_line,
		   int transactional, struct finding_list *out, struct sm_error *err);
/* Silences rules for this run: list holds "RULE" or "RULE:VERSION" items
 * separated by commas or spaces (--ignore, config lint_ignore).  An unknown
 * rule is a usage error.  May be called more than once (the lists add up). */
/* Stops lint_migration between statements (ERR_INTERRUPTED) once *flag
 * is set (by a signal handler); NULL: never. */
void lint_set_interrupt(struct lint_ctx *c, volatile sig_atomic_t *flag);
int lint_ignore(struct lint_ctx *c, const char *list, struct sm_error *err);

/* Lints section up (or, with down, the down section) of migration m: as
 * lint_migration, with m's version for RULE:VERSION ignores.  A down
 * section's findings say so in their message. */
int lint_migration_of(struct lint_ctx *c, const struct migration *m, int down,
		      struct finding_list *out, struct sm_error *err);

/* Tables the linted statements create, alter, index, write or drop, as
 * written in the SQL (schema-qualified when it was).  Borrowed until lint_end. */
const char *const *lint_touched(const struct lint_ctx *c, size_t *n);
void lint_end(struct lint_ctx *c);

/* The first statement of sql that can never run inside a transaction
 * block in engine_name's dialect (e.g. "CREATE INDEX CONCURRENTLY",
 * "VACUUM"; static text), or NULL.  The concurrently-in-transaction rule
 * reads the same list. */
const char *lint_never_in_tx(const char *engine_name, const char *sql);

/* Decides which sections of set run outside a transaction although no
 * marker says so: those holding a statement that can never run in one
 * (MIG_TX_NEVER, see lint_never_in_tx) and those that control their own
 * transaction (MIG_TX_OWN, see mig_controls_tx).  Call once after mig_load,
 * before planning, linting or rendering. */
void lint_find_no_tx(struct migration_set *set, const struct engine_ops *ops);

/* One-shot: lints sql with no live schema. */
int lint_sql(const char *engine_name, const char *sql, const char *file, int first_line,
	     int transactional, struct finding_list *out, struct sm_error *err);

#endif
