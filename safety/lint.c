/*
 * lint: the rule table, suppression comments and the run bookkeeping shared
 * by the dialects (see lint.h; the rules themselves are in lint_pg.c and
 * lint_sqlite.c).
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "lint_impl.h"
#include "strbuf.h"
#include "xalloc.h"

static const char snapshot_net[] =
	"; safe-migrate takes a verified snapshot first and restores it if the run fails, but "
	"data removed by a successful run is only in that snapshot: check it is what you mean";

static const struct lint_rule rules[] = {
	{ "sql-error", LEVEL_FAIL, "fix the statement; it would fail when the migration runs" },
	{ "adding-not-null-column-without-default", LEVEL_FAIL,
	  "add the column with a DEFAULT (constant defaults are instant since PostgreSQL 11), or "
	  "add it nullable, backfill in batches, then add a CHECK (col IS NOT NULL) NOT VALID "
	  "constraint, VALIDATE it and SET NOT NULL" },
	{ "concurrently-in-transaction", LEVEL_FAIL,
	  "put the statement in its own migration marked '-- migrate:up transaction:false'" },
	{ "create-index-non-concurrently", LEVEL_WARN,
	  "use CREATE INDEX CONCURRENTLY in a migration marked transaction:false; it does not "
	  "block writes" },
	{ "column-type-change", LEVEL_WARN,
	  "changing a type rewrites the table and its indexes under an ACCESS EXCLUSIVE lock "
	  "(except e.g. widening a varchar): add a new column, backfill it, and switch over" },
	{ "set-not-null", LEVEL_WARN,
	  "add CHECK (col IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT in a later migration, then "
	  "SET NOT NULL (PostgreSQL 12+ uses the constraint and skips the scan)" },
	{ "constraint-without-not-valid", LEVEL_WARN,
	  "add the constraint with NOT VALID, then ALTER TABLE ... VALIDATE CONSTRAINT in a "
	  "separate migration (validation takes only a SHARE UPDATE EXCLUSIVE lock)" },
	{ "drop-table", LEVEL_WARN, NULL },
	{ "drop-column", LEVEL_WARN, NULL },
	{ "truncate", LEVEL_WARN, NULL },
	{ "rename-column", LEVEL_WARN,
	  "running application code still uses the old name: add the new column, write both, "
	  "move readers, then drop the old one (or use a view for the transition)" },
	{ "rename-table", LEVEL_WARN,
	  "running application code still uses the old name: create the new table (or a view "
	  "with the old name) and migrate the code first" },
	{ "update-or-delete-without-where", LEVEL_WARN,
	  "this touches every row in one transaction: add a WHERE clause, or backfill in "
	  "batches" },
	{ "vacuum-full", LEVEL_WARN,
	  "VACUUM FULL rewrites the table under an ACCESS EXCLUSIVE lock: use plain VACUUM, or "
	  "pg_repack, outside the migration" },
	{ "cluster", LEVEL_WARN,
	  "CLUSTER rewrites the table under an ACCESS EXCLUSIVE lock: run it in a maintenance "
	  "window, or use pg_repack" },
	{ "drop-index-non-concurrently", LEVEL_WARN,
	  "use DROP INDEX CONCURRENTLY in a migration marked transaction:false; it does not "
	  "block reads or writes" },
	{ "attach", LEVEL_WARN,
	  "read the attached database only: under the safety net a write to it fails the "
	  "migration; move such a write out of the migration (or run it with 'upgrade', "
	  "which takes no snapshot)" },
	{ "dynamic-sql", LEVEL_WARN,
	  "the SQL is built at run time; review what it does, or write the statements out" },
	{ "empty-migration", LEVEL_WARN,
	  "fill it in before it is applied: once recorded, editing it shows as EDITED" },
	{ "missing-lock-timeout", LEVEL_WARN,
	  "start the migration with SET lock_timeout = '5s' (or run with "
	  "--statement-lock-timeout) so a blocked statement fails fast instead of queueing "
	  "every query on the table behind it" },
};

#define N_RULES (sizeof(rules) / sizeof(rules[0]))

const struct lint_rule *lint_rules(size_t *n)
{
	*n = N_RULES;
	return rules;
}

static const struct lint_rule *find_rule_n(const char *name, size_t n)
{
	for (size_t i = 0; i < N_RULES; i++)
		if (strlen(rules[i].name) == n && !strncmp(rules[i].name, name, n))
			return &rules[i];
	return NULL;
}

static const struct lint_rule *find_rule(const char *name)
{
	return find_rule_n(name, strlen(name));
}

static const struct lint_dialect *find_dialect(const char *engine_name)
{
	return engine_name && !strcmp(engine_name, "postgresql") ? &lint_pg_dialect
								  : &lint_sqlite_dialect;
}

int lint_begin(struct lint_ctx **out, const char *engine_name, struct engine *live,
	       struct sm_error *err)
{
	struct lint_ctx *c = xcalloc(1, sizeof(*c));

	c->d = find_dialect(engine_name);
	if (c->d->begin && c->d->begin(c, live, err) < 0) {
		lint_end(c);
		*out = NULL;
		return -1;
	}
	*out = c;
	return 0;
}

void lint_end(struct lint_ctx *c)
{
	if (!c)
		return;
	if (c->d->end)
		c->d->end(c);
	for (size_t i = 0; i < c->n_touched; i++)
		free(c->touched[i]);
	free(c->touched);
	for (size_t i = 0; i < c->n_created; i++)
		free(c->created[i]);
	free(c->created);
	for (size_t i = 0; i < c->n_ignore; i++)
		free(c->ignore[i]);
	free(c->ignore);
	free(c);
}

void lint_set_interrupt(struct lint_ctx *c, volatile sig_atomic_t *flag)
{
	c->interrupted = flag;
}

int lint_interrupted(const struct lint_run *r, struct sm_error *err)
{
	if (!r->ctx->interrupted || !*r->ctx->interrupted)
		return 0;
	err_set(err, ERR_INTERRUPTED, "lint of '%s' interrupted", r->file ? r->file : "SQL");
	return 1;
}

int lint_migration(struct lint_ctx *c, const char *sql, const char *file, int first_line,
		   int transactional, struct finding_list *out, struct sm_error *err)
{
	struct lint_run r;
	int ret;

	memset(&r, 0, sizeof(r));
	r.ctx = c;
	r.sql = sql;
	r.file = file;
	r.first_line = first_line > 0 ? first_line : 1;
	r.transactional = transactional;
	r.out = out;
	r.line = r.first_line;
	engine_lines_init(&r.lines, sql, r.first_line);
	if (mig_is_blank(sql)) {
		lint_at(&r, 0, 0);
		lint_emit(&r, "empty-migration", "the migration is empty: upgrade records it as "
			  "applied without running anything");
		return 0;
	}
	ret = c->d->migration(&r, err);
	for (size_t i = 0; i < r.n_created; i++)
		free(r.created[i]);
	free(r.created);
	return ret;
}

int lint_ignore(struct lint_ctx *c, const char *list, struct sm_error *err)
{
	const char *p = list ? list : "";

	while (*p) {
		size_t n = strcspn(p, ", \t\n"), rn;
		char *item;

		if (!n) {
			p++;
			continue;
		}
		item = xstrndup(p, n);
		rn = strcspn(item, ":");
		if (!rn || (!find_rule_n(item, rn) && !(rn == 3 && !strncmp(item, "all", 3)))) {
			err_set(err, ERR_USAGE, "cannot ignore '%s': no lint rule '%.*s' (see "
				"'safe-migrate help lint')", item, (int)rn, item);
			free(item);
			return -1;
		}
		ALLOC_GROW(c->ignore, c->n_ignore + 1, c->alloc_ignore);
		c->ignore[c->n_ignore++] = item;
		p += n;
	}
	return 0;
}

/* Is rule silenced for the current migration by lint_ignore()? */
static int ignored(const struct lint_ctx *c, const char *rule)
{
	size_t rl = strlen(rule);

	for (size_t i = 0; i < c->n_ignore; i++) {
		const char *it = c->ignore[i], *colon = strchr(it, ':');
		size_t n = colon ? (size_t)(colon - it) : strlen(it);

		if (!((n == rl && !strncmp(it, rule, rl)) || (n == 3 && !strncmp(it, "all", 3))))
			continue;
		if (!colon || (c->version && !strcmp(colon + 1, c->version)))
			return 1;
	}
	return 0;
}

int lint_migration_of(struct lint_ctx *c, const struct migration *m, int down,
		      struct finding_list *out, struct sm_error *err)
{
	int ret;

	c->version = m->version;
	c->down = down;
	ret = down ? lint_migration(c, m->down_sql ? m->down_sql : "", m->down_path,
				    m->down_line, !m->down_no_tx, out, err)
		   : lint_migration(c, m->up_sql, m->path, m->up_line, !m->up_no_tx, out, err);
	c->version = NULL;
	c->down = 0;
	return ret;
}

const char *const *lint_touched(const struct lint_ctx *c, size_t *n)
{
	*n = c->n_touched;
	return (const char *const *)c->touched;
}

int lint_sql(const char *engine_name, const char *sql, const char *file, int first_line,
	     int transactional, struct finding_list *out, struct sm_error *err)
{
	struct lint_ctx *c = NULL;
	int ret;

	if (lint_begin(&c, engine_name, NULL, err) < 0)
		return -1;
	ret = lint_migration(c, sql, file, first_line, transactional, out, err);
	lint_end(c);
	return ret;
}

const char *lint_never_in_tx(const char *engine_name, const char *sql)
{
	const struct lint_dialect *d = find_dialect(engine_name);

	return d->never_in_tx && sql ? d->never_in_tx(sql) : NULL;
}

void lint_find_no_tx(struct migration_set *set, const struct engine_ops *ops)
{
	mig_set_find_own_tx(set, ops);
	for (size_t i = 0; i < set->n; i++) {
		struct migration *m = &set->items[i];
		const char *what;

		if (!m->up_no_tx && (what = lint_never_in_tx(ops->name, m->up_sql))) {
			m->up_no_tx = MIG_TX_NEVER;
			m->up_no_tx_what = what;
		}
		if (m->down_sql && !m->down_no_tx &&
		    (what = lint_never_in_tx(ops->name, m->down_sql))) {
			m->down_no_tx = MIG_TX_NEVER;
			m->down_no_tx_what = what;
		}
	}
}

void lint_at(struct lint_run *r, size_t start, size_t len)
{
	size_t skip = engine_skip_space(r->sql + start, len);

	r->lead = r->sql + start;
	r->lead_len = skip;
	r->line = engine_lines_at(&r->lines, start + skip);
}

static int is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

/* Does a "-- safe-migrate:ignore a, b" comment in the statement's leading
 * comments name rule (or "all")? */
static int suppressed(const struct lint_run *r, const char *rule)
{
	static const char marker[] = "safe-migrate:ignore";
	const char *p = r->lead, *end = r->lead + r->lead_len;

	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *q;

		if (!eol)
			eol = end;
		for (q = p; q < eol && (*q == ' ' || *q == '\t'); q++)
			;
		if (eol - q > 2 && q[0] == '-' && q[1] == '-') {
			for (q += 2; q < eol && (*q == ' ' || *q == '\t'); q++)
				;
			if ((size_t)(eol - q) > strlen(marker) &&
			    !strncmp(q, marker, strlen(marker))) {
				q += strlen(marker);
				while (q < eol) {
					const char *w;

					while (q < eol && !is_name_char(*q))
						q++;
					for (w = q; q < eol && is_name_char(*q); q++)
						;
					if (q > w && (((size_t)(q - w) == strlen(rule) &&
						       !strncmp(w, rule, strlen(rule))) ||
						      ((size_t)(q - w) == 3 && !strncmp(w, "all", 3))))
						return 1;
				}
			}
		}
		p = eol + 1;
	}
	return 0;
}

void lint_emit(struct lint_run *r, const char *rule, const char *fmt, ...)
{
	const struct lint_rule *lr = find_rule(rule);
	struct strbuf msg = STRBUF_INIT, hint = STRBUF_INIT;
	va_list ap;

	if (!lr || suppressed(r, rule) || ignored(r->ctx, rule))
		return;
	if (r->ctx->down)
		sb_adds(&msg, "down section: ");
	va_start(ap, fmt);
	sb_vaddf(&msg, fmt, ap);
	va_end(ap);
	if (lr->hint) {
		sb_adds(&hint, lr->hint);
	} else {
		sb_adds(&hint, "destructive: make sure nothing reads it any more");
		sb_adds(&hint, snapshot_net);
	}
	finding_add(r->out, FINDING_RULE, rule, lr->level, hint.buf, r->file, r->line, "%s",
		    msg.buf);
	sb_release(&msg);
	sb_release(&hint);
}

static int in_list(char *const *v, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(v[i], s))
			return 1;
	return 0;
}

void lint_touch(struct lint_run *r, const char *table)
{
	struct lint_ctx *c = r->ctx;

	if (!table || in_list(c->touched, c->n_touched, table))
		return;
	ALLOC_GROW(c->touched, c->n_touched + 1, c->alloc_touched);
	c->touched[c->n_touched++] = xstrdup(table);
}

/* Tables (and, as "index NAME", indexes) created by the migrations linted so
 * far in this run: a table created earlier in the same pending run is as
 * empty and unused as one created in the same migration. */
static void add_created(struct lint_run *r, const char *name)
{
	struct lint_ctx *c = r->ctx;

	if (in_list(c->created, c->n_created, name))
		return;
	ALLOC_GROW(c->created, c->n_created + 1, c->alloc_created);
	c->created[c->n_created++] = xstrdup(name);
}

void lint_created(struct lint_run *r, const char *table)
{
	if (!table)
		return;
	add_created(r, table);
	if (!in_list(r->created, r->n_created, table)) {
		ALLOC_GROW(r->created, r->n_created + 1, r->alloc_created);
		r->created[r->n_created++] = xstrdup(table);
	}
}

int lint_is_created(const struct lint_run *r, const char *table)
{
	/* a down section undoing what the run's up sections created loses
	 * nothing the application wrote */
	return table && (in_list(r->created, r->n_created, table) ||
			 (r->ctx->down && lint_is_new(r, table)));
}

int lint_is_new(const struct lint_run *r, const char *table)
{
	return table && in_list(r->ctx->created, r->ctx->n_created, table);
}

void lint_created_index(struct lint_run *r, const char *index)
{
	struct strbuf key = STRBUF_INIT;

	sb_addf(&key, "index %s", index);
	add_created(r, key.buf);
	sb_release(&key);
}

int lint_is_created_index(const struct lint_run *r, const char *index)
{
	struct strbuf key = STRBUF_INIT;
	int yes;

	sb_addf(&key, "index %s", index);
	yes = in_list(r->ctx->created, r->ctx->n_created, key.buf);
	sb_release(&key);
	return yes;
}
