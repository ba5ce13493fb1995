/*
 * impact_pg: PostgreSQL's half of the impact measurement.  Before each
 * statement it notes the relation locks the rehearsing backend holds; after
 * it, pg_locks (pid = pg_backend_pid(), inside the transaction) gives the
 * locks the statement added, and a changed pg_relation_filenode a rewrite.
 * Every user relation's filenode is read once per migration; after that only
 * the locked relations' (a rewrite needs a lock), which keeps the cost per
 * statement to two small queries about the backend's own locks: the real
 * run measures too, inside its transactions.
 */
#include <stdlib.h>
#include <string.h>

#include "engine_pg.h"
#include "history.h"
#include "impact_impl.h"
#include "xalloc.h"

struct pg_state {
	struct eng_rows locks;    /* oid, mode held before the statement */
	struct eng_rows nodes;    /* oid, filenode before the statement (kept up to date
				   * from the locked relations after each statement) */
	struct eng_rows baseline; /* oid of the relations that existed when the migration began */
	struct eng_rows objs;     /* key, "kind name" of the user's objects before the statement */
	int have_objs;
};

#define USER_NS "n.oid IN " PG_USER_NSP

static const char lock_sql[] =
	"SELECT l.relation::oid::text, l.mode FROM pg_locks l "
	"WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted";

static const char node_sql[] =
	"SELECT c.oid::text, coalesce(pg_relation_filenode(c.oid)::text, '') FROM pg_class c "
	"JOIN pg_namespace n ON n.oid = c.relnamespace WHERE " USER_NS;

static const char after_sql[] =
	"SELECT c.oid::text, CASE WHEN n.nspname = 'public' THEN c.relname "
	"ELSE n.nspname || '.' || c.relname END, c.relkind::text, l.mode, "
	"coalesce(pg_relation_filenode(c.oid)::text, ''), pg_table_size(c.oid)::text, "
	"CASE WHEN c.reltuples < 0 THEN '-1' ELSE c.reltuples::bigint::text END "
	"FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
	"JOIN pg_namespace n ON n.oid = c.relnamespace "
	"WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted AND "
	USER_NS " AND c.relname <> '" HIST_TABLE "' ORDER BY 2, 1";

#define QNAME(n, x) "CASE WHEN " n ".nspname = 'public' THEN " x " ELSE " n ".nspname || '.' || " x " END"

/* The user's relations, functions and types (not a table's row type or an
 * array type), keyed by catalog and oid, in byte order. */
static const char obj_sql[] =
	"SELECT ('c' || c.oid::text) COLLATE \"C\", CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' "
	"WHEN 'i' THEN 'index' WHEN 'I' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 'v' THEN "
	"'view' WHEN 'm' THEN 'materialized view' WHEN 'c' THEN 'type' WHEN 'f' THEN "
	"'foreign table' ELSE 'relation' END || ' ' || " QNAME("n", "c.relname") " "
	"FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE " USER_NS
	" AND c.relkind <> 't' AND c.relname <> '" HIST_TABLE "' "
	"UNION ALL SELECT 'p' || p.oid::text, 'function ' || " QNAME("n", "p.proname") " || '(' || "
	"pg_get_function_identity_arguments(p.oid) || ')' FROM pg_proc p "
	"JOIN pg_namespace n ON n.oid = p.pronamespace WHERE " USER_NS " "
	"UNION ALL SELECT 't' || t.oid::text, 'type ' || " QNAME("n", "t.typname") " FROM pg_type t "
	"JOIN pg_namespace n ON n.oid = t.typnamespace WHERE " USER_NS
	" AND t.typtype IN ('e', 'd', 'r', 'm') ORDER BY 1";

/* Reads the object listing; inside a transaction under the guard. */
static int read_objs(struct engine *e, struct eng_rows *out, struct sm_error *err);

static void *pg_state_new(void)
{
	return xcalloc(1, sizeof(struct pg_state));
}

static void pg_state_free(void *p)
{
	struct pg_state *st = p;

	rows_release(&st->locks);
	rows_release(&st->nodes);
	rows_release(&st->baseline);
	rows_release(&st->objs);
	free(st);
}

/* The measurement's queries run inside the migration's transaction (the
 * real run's too): under a savepoint, so that one failing (a
 * statement_timeout the migration set, say) costs the measurement, never the
 * migration. */
static int guard_begin(struct engine *e, struct sm_error *err)
{
	return e->ops->query(e, "SAVEPOINT sm_impact", 0, NULL, NULL, err);
}

static int guard_end(struct engine *e, int rc)
{
	struct sm_error ignored = SM_ERROR_INIT;

	if (rc < 0)
		e->ops->query(e, "ROLLBACK TO SAVEPOINT sm_impact", 0, NULL, NULL, &ignored);
	e->ops->query(e, "RELEASE SAVEPOINT sm_impact", 0, NULL, NULL, &ignored);
	return rc;
}

static int pg_before(void *p, struct engine *e, int new_mig, struct sm_error *err)
{
	struct pg_state *st = p;
	int rc = 0;

	rows_release(&st->locks);
	if (new_mig || !st->have_objs) {
		rows_release(&st->objs);
		st->have_objs = read_objs(e, &st->objs, err) == 0;
		if (!st->have_objs)
			return -1;
	}
	if (!e->in_tx)
		return 0; /* outside a transaction the locks end with the statement */
	if (guard_begin(e, err) < 0)
		return -1;
	if (e->ops->query(e, lock_sql, 0, NULL, &st->locks, err) < 0)
		rc = -1;
	if (!rc && (new_mig || !st->nodes.ncols)) {
		rows_release(&st->nodes);
		rows_release(&st->baseline);
		if (e->ops->query(e, node_sql, 0, NULL, &st->baseline, err) < 0 ||
		    e->ops->query(e, node_sql, 0, NULL, &st->nodes, err) < 0)
			rc = -1;
	}
	return guard_end(e, rc);
}

/* Row index of key in column 0 of r, or -1. */
static long find_row(const struct eng_rows *r, const char *key)
{
	for (size_t i = 0; i < r->nrows; i++)
		if (!strcmp(rows_get(r, i, 0), key))
			return (long)i;
	return -1;
}

static int held_before(const struct eng_rows *locks, const char *oid, const char *mode)
{
	for (size_t i = 0; i < locks->nrows; i++)
		if (!strcmp(rows_get(locks, i, 0), oid) && !strcmp(rows_get(locks, i, 1), mode))
			return 1;
	return 0;
}

/* PostgreSQL's table lock modes, weakest first. */
static const char *const modes[] = {
	"AccessShareLock", "RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock",
	"ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock",
};

static const char *mode_name(int rank)
{
	return rank >= 1 && rank <= (int)(sizeof(modes) / sizeof(modes[0])) ? modes[rank - 1]
									  : "?";
}

static int mode_rank(const char *mode)
{
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		if (!strcmp(modes[i], mode))
			return (int)i + 1;
	return 0;
}

static const char *kind_name(const char *relkind)
{
	switch (relkind[0]) {
	case 'r': case 'p': return "table";
	case 'i': case 'I': return "index";
	case 'S': return "sequence";
	case 'v': return "view";
	case 'm': return "materialized view";
	default: return "relation";
	}
}

/* Notes oid's filenode after a statement (a relation it created: a new row). */
static void set_node(struct eng_rows *nodes, const char *oid, const char *node)
{
	long i = find_row(nodes, oid);
	size_t at;

	if (i < 0) {
		if (nodes->ncols != 2)
			return;
		nodes->cells = xrealloc(nodes->cells, (nodes->nrows + 1) * 2 * sizeof(char *));
		at = nodes->nrows++ * 2;
		nodes->cells[at] = xstrdup(oid);
		nodes->cells[at + 1] = NULL;
	} else {
		at = (size_t)i * 2;
	}
	free(nodes->cells[at + 1]);
	nodes->cells[at + 1] = xstrdup(node);
}

static int read_objs(struct engine *e, struct eng_rows *out, struct sm_error *err)
{
	if (!e->in_tx)
		return e->ops->query(e, obj_sql, 0, NULL, out, err);
	if (guard_begin(e, err) < 0)
		return -1;
	return guard_end(e, e->ops->query(e, obj_sql, 0, NULL, out, err));
}

static int pg_after(void *p, struct engine *e, struct impact_stmt *s, struct sm_error *err)
{
	struct pg_state *st = p;
	struct eng_rows now = ENG_ROWS_INIT;

	if (st->have_objs) {
		if (read_objs(e, &now, err) < 0) {
			st->have_objs = 0;
			return -1;
		}
		impact_diff_objects(s, &st->objs, &now);
		rows_release(&st->objs);
		st->objs = now;
		memset(&now, 0, sizeof(now));
	}
	if (!e->in_tx)
		return 0;
	if (guard_begin(e, err) < 0)
		return -1;
	if (guard_end(e, e->ops->query(e, after_sql, 0, NULL, &now, err)) < 0)
		return -1;
	/* rows come grouped by relation, one per lock mode held */
	for (size_t i = 0, j; i < now.nrows; i = j) {
		const char *oid = rows_get(&now, i, 0), *node = rows_get(&now, i, 4);
		long before = find_row(&st->nodes, oid);
		int rewritten = before >= 0 && *node &&
				strcmp(rows_get(&st->nodes, (size_t)before, 1), node) != 0;
		int held = 0, fresh = 0;
		struct impact_rel *r;

		for (j = i; j < now.nrows && !strcmp(rows_get(&now, j, 0), oid); j++) {
			const char *mode = rows_get(&now, j, 3);
			int rank = mode_rank(mode);
			if (rank > held)
				held = rank;
			if (!held_before(&st->locks, oid, mode) && rank > fresh)
				fresh = rank;
		}
		if (!fresh && !rewritten)
			continue;
		/* the strongest lock the transaction holds on it is what the
		 * application waits for; new_lock is the one this statement added */
		r = impact_add_rel(s, rows_get(&now, i, 1), kind_name(rows_get(&now, i, 2)),
				   mode_name(held));
		r->new_lock = fresh ? mode_name(fresh) : NULL;
		r->blocks = impact_pg_blocks(r->mode);
		r->new_blocks = fresh ? impact_pg_blocks(r->new_lock) : IMPACT_NONE;
		r->rewritten = rewritten;
		r->existing = find_row(&st->baseline, oid) >= 0;
		r->bytes = strtoll(rows_get(&now, i, 5), NULL, 10);
		r->rows = strtoll(rows_get(&now, i, 6), NULL, 10);
	}
	for (size_t i = 0; i < now.nrows; i++)
		set_node(&st->nodes, rows_get(&now, i, 0), rows_get(&now, i, 4));
	rows_release(&now);
	return 0;
}

const struct impact_driver impact_pg_driver = {
	.engine = "postgresql",
	.state_new = pg_state_new,
	.state_free = pg_state_free,
	.before = pg_before,
	.after = pg_after,
};
