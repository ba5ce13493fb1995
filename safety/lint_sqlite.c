/*
 * lint_sqlite: the SQLite dialect of lint (see lint.h).
 *
 * SQLite has no public parse tree, so each statement is prepared on a
 * scratch in-memory database holding a copy of the live schema: a statement
 * that does not prepare is an sql-error, exactly as it would fail at run
 * time.  While preparing, SQLite's authorizer reports what the statement
 * does (drop a table, alter one, delete from one, read which columns), and
 * the statement is then run on the scratch copy (no data, so it is cheap)
 * and the altered table's columns are compared before and after.
 *
 * The scratch copy holds only what the migrations can reach: before each
 * migration, the live objects it names (as whole words), and, closed over
 * both directions, the objects those name and the objects that name them
 * (a table's indexes and triggers, the tables a view or trigger reads, the
 * views and triggers an ALTER TABLE must rewrite, the parents and children
 * of foreign keys).  An object is copied once, the first time it is named:
 * one a migration dropped stays dropped for the next.  Creating every object
 * of a large schema costs SQLite a scan of sqlite_master per CREATE, so a
 * full copy of 6,000 objects took a second on every lint.
 *
 * The scratch database must never reach outside memory or run away: ATTACH
 * (and so VACUUM INTO) is disabled, read-only statements are not run, and a
 * statement that runs longer than a fixed budget of VM steps is stopped and
 * left unchecked.
 */
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lint_impl.h"
#include "sqlite_copy.h"
#include "strbuf.h"
#include "xalloc.h"

struct auth_event {
	int action;
	char *a1, *a2;
};

#define STEP_BUDGET 10000 /* progress callbacks (of 1000 VM steps) per statement */

struct sq_state {
	sqlite3 *db;
	int budget;
	struct auth_event *ev;
	size_t n, alloc;
	/* the live schema (name, sql, both lowercased; type; tbl_name), in
	 * creation order, copied into db as migrations name it */
	struct eng_rows live;
	unsigned char *copied; /* per row of live: copied (or tried) already */
};

/* Objects copied to the scratch database beyond which the rest is copied
 * too: the closure is not worth computing for a migration that reaches
 * most of the schema. */
#define COPY_ALL_OVER 256

struct names {
	char **v;
	size_t n, alloc;
};

static void names_release(struct names *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static int names_has(const struct names *l, const char *s)
{
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->v[i], s))
			return 1;
	return 0;
}

static void events_clear(struct sq_state *st)
{
	for (size_t i = 0; i < st->n; i++) {
		free(st->ev[i].a1);
		free(st->ev[i].a2);
	}
	st->n = 0;
}

static int on_auth(void *ud, int action, const char *a1, const char *a2, const char *dbname,
		   const char *trigger)
{
	struct sq_state *st = ud;
	struct auth_event *e;

	(void)dbname;
	if (trigger)
		return SQLITE_OK; /* what a trigger does is not the statement's doing */
	ALLOC_GROW(st->ev, st->n + 1, st->alloc);
	e = &st->ev[st->n++];
	e->action = action;
	e->a1 = a1 ? xstrdup(a1) : NULL;
	e->a2 = a2 ? xstrdup(a2) : NULL;
	return SQLITE_OK;
}

static int on_progress(void *ud)
{
	struct sq_state *st = ud;

	return --st->budget < 0;
}

static int has_event(const struct sq_state *st, int action)
{
	for (size_t i = 0; i < st->n; i++)
		if (st->ev[i].action == action)
			return 1;
	return 0;
}

static int sq_begin(struct lint_ctx *c, struct engine *live, struct sm_error *err)
{
	struct sq_state *st = xcalloc(1, sizeof(*st));

	c->state = st;
	if (sqlite3_open_v2(":memory:", &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
			    NULL) != SQLITE_OK)
		return err_set(err, ERR_FAIL, "cannot open a scratch database: %s",
			       sqlite3_errmsg(st->db));
	sqlite3_limit(st->db, SQLITE_LIMIT_ATTACHED, 0);
	sqlite3_progress_handler(st->db, 1000, on_progress, st);
	if (!live || strcmp(live->ops->name, "sqlite"))
		return 0;
	if (live->ops->query(live, "SELECT lower(name), lower(sql), sql, lower(tbl_name) "
			     "FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE "
			     "'sqlite\\_%' ESCAPE '\\' ORDER BY CASE type WHEN 'table' THEN 0 "
			     "WHEN 'index' THEN 1 WHEN 'view' THEN 2 ELSE 3 END, rowid",
			     0, NULL, &st->live, err) < 0)
		return err_prefix(err, "cannot copy the schema into a scratch database");
	st->copied = xcalloc(st->live.nrows + 1, 1);
	return 0;
}

static int ident_char(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '_' || ch == '$' || ch >= 0x80;
}

/* Does text (lowercased) name word (lowercased) as a whole word?  Quoted
 * or not, an identifier's letters are in the text; a name holding a quote
 * character is matched without it, so it is taken as named whenever its
 * parts are (copying too much is only slower). */
static int names_word(const char *text, const char *word)
{
	size_t n = strlen(word);

	if (!n || !text)
		return 0;
	if (strpbrk(word, "\"`]'"))
		return 1;
	for (const char *p = strstr(text, word); p; p = strstr(p + 1, word))
		if ((p == text || !ident_char((unsigned char)p[-1])) &&
		    !ident_char((unsigned char)p[n]))
			return 1;
	return 0;
}

/* Copies into the scratch database the live objects sql (lowercased) can
 * reach that are not there yet (see the top of this file). */
static void copy_reached(struct sq_state *st, const char *sql)
{
	const struct eng_rows *l = &st->live;
	size_t *pick = xcalloc(l->nrows + 1, sizeof(*pick)); /* the round that added it */
	size_t picked = 0, round;
	long long query_only = 0;
	int grew = 1;

	for (size_t i = 0; i < l->nrows; i++)
		if (!st->copied[i] && names_word(sql, rows_get(l, i, 0))) {
			pick[i] = 1;
			picked++;
		}
	/* round k adds what is related to the objects round k-1 added */
	for (round = 1; grew && picked && picked <= COPY_ALL_OVER; round++) {
		grew = 0;
		for (size_t i = 0; i < l->nrows; i++) {
			if (st->copied[i] || pick[i])
				continue;
			for (size_t j = 0; j < l->nrows; j++) {
				if (pick[j] != round)
					continue;
				if (!strcmp(rows_get(l, i, 3), rows_get(l, j, 0)) ||
				    names_word(rows_get(l, i, 1), rows_get(l, j, 0)) ||
				    names_word(rows_get(l, j, 1), rows_get(l, i, 0))) {
					pick[i] = round + 1;
					picked++;
					grew = 1;
					break;
				}
			}
		}
	}
	/* an earlier migration's PRAGMA query_only=1 holds for the ones after
	 * it, but the live objects were there before it: they are copied all
	 * the same, so a later write fails as it will (readonly), not as "no
	 * such table" */
	if (sqlite_pragma_int(st->db, "PRAGMA query_only", &query_only) < 0)
		query_only = 0;
	if (query_only)
		sqlite3_exec(st->db, "PRAGMA query_only = 0", NULL, NULL, NULL);
	/* a view or trigger the live database could not compile either is
	 * skipped rather than failing the whole lint */
	for (size_t i = 0; i < l->nrows; i++) {
		if (st->copied[i] || (!pick[i] && picked <= COPY_ALL_OVER))
			continue;
		st->copied[i] = 1;
		st->budget = STEP_BUDGET;
		sqlite3_exec(st->db, rows_get(l, i, 2), NULL, NULL, NULL);
	}
	if (query_only)
		sqlite3_exec(st->db, "PRAGMA query_only = 1", NULL, NULL, NULL);
	free(pick);
}

static void sq_end(struct lint_ctx *c)
{
	struct sq_state *st = c->state;

	if (!st)
		return;
	events_clear(st);
	free(st->ev);
	rows_release(&st->live);
	free(st->copied);
	sqlite3_close(st->db);
	free(st);
}

static void table_columns(sqlite3 *db, const char *table, struct names *out)
{
	sqlite3_stmt *s = NULL;

	if (sqlite3_prepare_v2(db, "SELECT name FROM pragma_table_info(?1)", -1, &s, NULL) !=
	    SQLITE_OK)
		return;
	sqlite3_bind_text(s, 1, table, -1, SQLITE_TRANSIENT);
	while (sqlite3_step(s) == SQLITE_ROW) {
		ALLOC_GROW(out->v, out->n + 1, out->alloc);
		out->v[out->n++] = xstrdup((const char *)sqlite3_column_text(s, 0));
	}
	sqlite3_finalize(s);
}

static int is_internal(const char *table)
{
	return !table || !strncmp(table, "sqlite_", 7);
}

/* Did the statement read any column of table (a WHERE clause on it)? */
static int reads_table(const struct sq_state *st, const char *table)
{
	for (size_t i = 0; i < st->n; i++)
		if (st->ev[i].action == SQLITE_READ && st->ev[i].a1 &&
		    !strcmp(st->ev[i].a1, table))
			return 1;
	return 0;
}

/* Rules that the authorizer's report alone decides; returns the table an
 * ALTER TABLE changes (borrowed from st), or NULL. */
static const char *before_step(struct lint_run *r, struct sq_state *st)
{
	const char *altered = NULL;
	int reported_dml = 0;

	for (size_t i = 0; i < st->n; i++) {
		const struct auth_event *e = &st->ev[i];

		switch (e->action) {
		case SQLITE_CREATE_TABLE:
			lint_created(r, e->a1);
			lint_touch(r, e->a1);
			break;
		case SQLITE_DROP_TABLE:
			lint_touch(r, e->a1);
			if (!lint_is_created(r, e->a1))
				lint_emit(r, "drop-table", "table '%s' is dropped with all its rows",
					  e->a1);
			break;
		case SQLITE_ALTER_TABLE:
			altered = e->a2;
			lint_touch(r, e->a2);
			break;
		case SQLITE_CREATE_INDEX:
			lint_touch(r, e->a2);
			break;
		case SQLITE_INSERT:
			if (!is_internal(e->a1))
				lint_touch(r, e->a1);
			break;
		case SQLITE_DELETE:
		case SQLITE_UPDATE:
			if (is_internal(e->a1) || reported_dml)
				break;
			lint_touch(r, e->a1);
			if (!reads_table(st, e->a1) && !lint_is_created(r, e->a1)) {
				lint_emit(r, "update-or-delete-without-where",
					  "%s on '%s' has no WHERE clause: it changes every row",
					  e->action == SQLITE_DELETE ? "DELETE" : "UPDATE", e->a1);
				reported_dml = 1;
			}
			break;
		}
	}
	return altered;
}

static int table_exists(sqlite3 *db, const char *table)
{
	sqlite3_stmt *s = NULL;
	int found = 0;

	if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
			       "name = ?1", -1, &s, NULL) != SQLITE_OK)
		return 0;
	sqlite3_bind_text(s, 1, table, -1, SQLITE_TRANSIENT);
	found = sqlite3_step(s) == SQLITE_ROW;
	sqlite3_finalize(s);
	return found;
}

static void after_alter(struct lint_run *r, sqlite3 *db, const char *table,
			const struct names *before)
{
	struct names now = { 0 }, removed = { 0 }, added = { 0 };

	if (lint_is_created(r, table))
		return;
	if (!table_exists(db, table)) {
		lint_emit(r, "rename-table", "table '%s' is renamed", table);
		return;
	}
	table_columns(db, table, &now);
	for (size_t i = 0; i < before->n; i++)
		if (!names_has(&now, before->v[i])) {
			ALLOC_GROW(removed.v, removed.n + 1, removed.alloc);
			removed.v[removed.n++] = xstrdup(before->v[i]);
		}
	for (size_t i = 0; i < now.n; i++)
		if (!names_has(before, now.v[i])) {
			ALLOC_GROW(added.v, added.n + 1, added.alloc);
			added.v[added.n++] = xstrdup(now.v[i]);
		}
	if (removed.n == 1 && added.n == 1 && now.n == before->n)
		lint_emit(r, "rename-column", "column '%s' of '%s' is renamed to '%s'", removed.v[0],
			  table, added.v[0]);
	else
		for (size_t i = 0; i < removed.n; i++)
			lint_emit(r, "drop-column", "column '%s' of '%s' is dropped with its data",
				  removed.v[i], table);
	names_release(&now);
	names_release(&removed);
	names_release(&added);
}

static int sq_migration(struct lint_run *r, struct sm_error *err)
{
	struct sq_state *st = r->ctx->state;
	const char *p = r->sql, *end = r->sql + strlen(r->sql);
	int attached = 0; /* an ATTACH came before: the scratch lacks its names */

	if (st->live.nrows) {
		char *lower = xstrdup(r->sql);

		for (char *c = lower; *c; c++)
			if (*c >= 'A' && *c <= 'Z')
				*c = (char)(*c - 'A' + 'a');
		copy_reached(st, lower);
		free(lower);
	}
	while (*p) {
		size_t off = (size_t)(p - r->sql), rest = (size_t)(end - p);
		sqlite3_stmt *stmt = NULL;
		const char *tail = NULL, *altered;
		struct names before = { 0 };
		int rc;

		if (lint_interrupted(r, err)) {
			events_clear(st);
			return -1;
		}
		if (!p[engine_skip_space(p, rest)])
			break;
		lint_at(r, off, rest);
		events_clear(st);
		st->budget = STEP_BUDGET;
		sqlite3_set_authorizer(st->db, on_auth, st);
		rc = sqlite3_prepare_v2(st->db, p, -1, &stmt, &tail);
		sqlite3_set_authorizer(st->db, NULL, NULL);
		if (rc != SQLITE_OK && attached) {
			/* it may name the attached database, which the scratch
			 * does not have (ATTACH cannot run on it) */
			lint_emit(r, "attach", "not checked from here on: this statement may name "
				  "the attached database, which the lint cannot open (%s)",
				  sqlite3_errmsg(st->db));
			break;
		}
		if (rc != SQLITE_OK) {
			lint_emit(r, "sql-error", "%s", sqlite3_errmsg(st->db));
			break; /* the rest cannot be split reliably */
		}
		if (!stmt)
			break;
		if (sqlite_stmt_is_vacuum(stmt)) {
			/* changes no schema, and cannot run on the scratch copy
			 * (it attaches a temp database); only a transaction stops
			 * it (sq_never_in_tx runs such a migration outside one) */
			if (r->transactional)
				lint_emit(r, "concurrently-in-transaction",
					  "VACUUM cannot run inside a transaction block, and this "
					  "migration runs in one");
			sqlite3_finalize(stmt);
			p = tail;
			continue;
		}
		altered = before_step(r, st);
		if (has_event(st, SQLITE_ATTACH)) {
			lint_emit(r, "attach", "ATTACH: the safety net refuses writes to an attached "
				  "database (its snapshot covers the main database only), and the lint "
				  "cannot check statements that name it");
			attached = 1;
		}
		if (sqlite3_stmt_readonly(stmt) || has_event(st, SQLITE_ATTACH) ||
		    has_event(st, SQLITE_DETACH)) {
			/* nothing to carry forward in the scratch schema */
			sqlite3_finalize(stmt);
			p = tail;
			continue;
		}
		if (altered)
			table_columns(st->db, altered, &before);
		st->budget = STEP_BUDGET;
		while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
			;
		if (rc == SQLITE_INTERRUPT) {
			rc = SQLITE_DONE; /* over budget: left unchecked */
		}
		if (rc != SQLITE_DONE) {
			lint_emit(r, "sql-error", "%s", sqlite3_errmsg(st->db));
			sqlite3_finalize(stmt);
			names_release(&before);
			break;
		}
		sqlite3_finalize(stmt);
		st->budget = STEP_BUDGET;
		if (altered)
			after_alter(r, st->db, altered, &before);
		names_release(&before);
		p = tail;
	}
	events_clear(st);
	return 0;
}

static int vacuum_cb(void *ud, const char *text, size_t len, int line)
{
	(void)ud;
	(void)line;
	return sqlite_starts_vacuum(text, len);
}

/* The statements SQLite never runs in a transaction: VACUUM (the one list
 * lint_never_in_tx reads, as lint_pg.c's never_in_tx for PostgreSQL). */
static const char *sq_never_in_tx(const char *sql)
{
	const struct engine_ops *ops = engine_find("sqlite");
	struct sm_error err = SM_ERROR_INIT;

	/* a script the parser rejects is lint's sql-error, not this */
	return ops && ops->split(sql, vacuum_cb, NULL, &err) == 1 ? "VACUUM" : NULL;
}

const struct lint_dialect lint_sqlite_dialect = {
	.engine = "sqlite",
	.begin = sq_begin,
	.migration = sq_migration,
	.end = sq_end,
	.never_in_tx = sq_never_in_tx,
};
