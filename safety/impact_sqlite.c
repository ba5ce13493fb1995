/*
 * impact_sqlite: SQLite's half of the impact measurement.  A transaction
 * that writes holds the database's one write lock (RESERVED) to its end, so
 * every table is write-blocked for that window; a table is rebuilt when its
 * root page changed since the migration began (ALTER TABLE's 12-step
 * rebuild: create, copy, drop, rename).
 */
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "history.h"
#include "impact_impl.h"
#include "xalloc.h"

struct sqlite_state {
	struct eng_rows baseline; /* name, rootpage of the tables when the migration began */
	long long cookie;         /* the schema cookie when objs was read */
	int wrote;                /* the migration's transaction holds the write lock */
	char **rebuilt;           /* tables already reported as rebuilt in this migration */
	size_t n_rebuilt;
	/* outside a transaction: did the statement write? */
	sqlite3_int64 changes;
	long long schema_version;
	struct eng_rows objs; /* "type name" twice, of sqlite_master's entries before the statement */
	int have_objs;
};

static const char obj_sql[] =
	"SELECT type || ' ' || name, type || ' ' || name FROM sqlite_master WHERE name NOT LIKE "
	"'sqlite\\_%' ESCAPE '\\' AND name <> '" HIST_TABLE "' ORDER BY 1";

/* sorted as obj_sql, by name: after() walks it beside the baseline */
static const char tables_sql[] =
	"SELECT name, rootpage FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
	"'sqlite\\_%' ESCAPE '\\' AND name <> '" HIST_TABLE "' ORDER BY 1";

static void *sqlite_state_new(void)
{
	return xcalloc(1, sizeof(struct sqlite_state));
}

static void forget_rebuilt(struct sqlite_state *st)
{
	for (size_t i = 0; i < st->n_rebuilt; i++)
		free(st->rebuilt[i]);
	free(st->rebuilt);
	st->rebuilt = NULL;
	st->n_rebuilt = 0;
}

static void sqlite_state_free(void *p)
{
	struct sqlite_state *st = p;

	rows_release(&st->baseline);
	rows_release(&st->objs);
	forget_rebuilt(st);
	free(st);
}

static long long scalar_ll(struct engine *e, const char *sql, const char *param);

static int sqlite_before(void *p, struct engine *e, int new_mig, struct sm_error *err)
{
	struct sqlite_state *st = p;

	if (!e->in_tx) {
		/* autocommit: each statement takes (and drops) the write lock itself */
		st->changes = sqlite3_total_changes64(engine_native(e));
		st->schema_version = scalar_ll(e, "PRAGMA schema_version", NULL);
		st->wrote = 0;
	}
	if (new_mig || !st->have_objs) {
		rows_release(&st->objs);
		st->cookie = scalar_ll(e, "PRAGMA schema_version", NULL);
		st->have_objs = e->ops->query(e, obj_sql, 0, NULL, &st->objs, err) == 0;
		if (!st->have_objs)
			return -1;
	}
	if (!new_mig)
		return 0;
	st->wrote = 0;
	forget_rebuilt(st);
	rows_release(&st->baseline);
	return e->ops->query(e, tables_sql, 0, NULL, &st->baseline, err);
}

static long long scalar_ll(struct engine *e, const char *sql, const char *param)
{
	char *v = NULL;
	struct sm_error ignored = SM_ERROR_INIT;
	long long n = -1;

	if (engine_scalar(e, sql, param ? 1 : 0, &param, &v, &ignored) == 0 && v)
		n = strtoll(v, NULL, 10);
	free(v);
	return n;
}

static int sqlite_after(void *p, struct engine *e, struct impact_stmt *s, struct sm_error *err)
{
	struct sqlite_state *st = p;
	struct eng_rows now = ENG_ROWS_INIT;
	sqlite3 *db = engine_native(e);
	/* the schema cookie after the statement: every change to sqlite_master
	 * bumps it */
	long long cookie = scalar_ll(e, "PRAGMA schema_version", NULL);

	s->observed = 1; /* outside a transaction too: did it write? */

	if (!st->wrote && (e->in_tx ? sqlite3_txn_state(db, "main") == SQLITE_TXN_WRITE
				    : sqlite3_total_changes64(db) != st->changes ||
				      cookie != st->schema_version)) {
		/* from here to the end of the transaction no other connection can
		 * write (readers go on in WAL mode; in rollback-journal mode they
		 * are shut out at commit) */
		struct impact_rel *r = impact_add_rel(s, "(database)", "database", "RESERVED");
		r->blocks = IMPACT_WRITES;
		r->new_blocks = IMPACT_WRITES;
		r->new_lock = "RESERVED";
		r->existing = st->baseline.nrows > 0;
		r->bytes = scalar_ll(e, "SELECT page_count * page_size FROM pragma_page_count(), "
				     "pragma_page_size()", NULL);
		st->wrote = e->in_tx; /* outside a transaction, each statement anew */
	}
	/* a statement that left the cookie alone created, dropped and rebuilt
	 * nothing, and the two listings of the whole schema are skipped (a
	 * data migration of many statements on thousands of tables would read
	 * them after each) */
	if (st->have_objs && cookie == st->cookie && cookie >= 0)
		return 0;
	st->cookie = cookie;
	if (st->have_objs) {
		if (e->ops->query(e, obj_sql, 0, NULL, &now, err) < 0) {
			st->have_objs = 0;
			return -1;
		}
		impact_diff_objects(s, &st->objs, &now, -1);
		rows_release(&st->objs);
		st->objs = now;
		memset(&now, 0, sizeof(now));
	}
	if (e->ops->query(e, tables_sql, 0, NULL, &now, err) < 0)
		return -1;
	/* both sorted by name: one walk (a lookup per table was quadratic) */
	for (size_t i = 0, b = 0; i < now.nrows; i++) {
		const char *name = rows_get(&now, i, 0), *root = rows_get(&now, i, 1);
		int seen = 0, c = 1;
		struct impact_rel *r;
		struct strbuf q = STRBUF_INIT;

		while (b < st->baseline.nrows &&
		       (c = strcmp(rows_get(&st->baseline, b, 0), name)) < 0)
			b++;
		if (c != 0 || !strcmp(rows_get(&st->baseline, b, 1), root))
			continue;
		for (size_t k = 0; k < st->n_rebuilt; k++)
			if (!strcmp(st->rebuilt[k], name))
				seen = 1;
		if (seen)
			continue;
		st->rebuilt = xrealloc(st->rebuilt, (st->n_rebuilt + 1) * sizeof(char *));
		st->rebuilt[st->n_rebuilt++] = xstrdup(name);
		r = impact_add_rel(s, name, "table", NULL);
		r->rewritten = 1;
		r->existing = 1;
		/* dbstat is optional in SQLite builds: the size is then unknown */
		r->bytes = scalar_ll(e, "SELECT sum(pgsize) FROM dbstat WHERE name = $1", name);
		sb_adds(&q, "SELECT count(*) FROM main.");
		e->ops->quote_ident(&q, name);
		r->rows = scalar_ll(e, q.buf, NULL);
		sb_release(&q);
	}
	rows_release(&now);
	return 0;
}

const struct impact_driver impact_sqlite_driver = {
	.engine = "sqlite",
	.state_new = sqlite_state_new,
	.state_free = sqlite_state_free,
	.before = sqlite_before,
	.after = sqlite_after,
};
