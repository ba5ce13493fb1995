/*
 * history: the version table (see history.h).
 */
#include "history.h"

#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "version.h"
#include "xalloc.h"

static const char create_sql[] =
	"CREATE TABLE IF NOT EXISTS " HIST_TABLE " (\n"
	"  version TEXT PRIMARY KEY,\n"
	"  description TEXT NOT NULL,\n"
	"  checksum TEXT NOT NULL,\n"
	"  applied_at TEXT NOT NULL,\n"
	"  applied_by TEXT NOT NULL,\n"
	"  execution_ms BIGINT NOT NULL\n"
	");\n"
	"CREATE TABLE IF NOT EXISTS " HIST_SCHEMA_TABLE " (\n"
	"  id INTEGER PRIMARY KEY CHECK (id = 1),\n"
	"  fingerprint TEXT NOT NULL,\n"
	"  schema_text TEXT NOT NULL,\n"
	"  recorded_at TEXT NOT NULL\n"
	");\n";

int hist_ensure(struct engine *e, struct sm_error *err)
{
	int exists = 0;

	if (e->ops->table_exists(e, HIST_TABLE, &exists, err) < 0)
		return -1;
	if (exists) {
		if (e->ops->table_exists(e, HIST_SCHEMA_TABLE, &exists, err) < 0)
			return -1;
		if (exists)
			return 0;
	}
	if (engine_exec(e, create_sql, err) < 0)
		return err_prefix(err, "cannot create the version table");
	return 0;
}

void hist_release(struct applied_set *a)
{
	for (size_t i = 0; i < a->n; i++) {
		struct applied *x = &a->items[i];
		free(x->version);
		free(x->description);
		free(x->checksum);
		free(x->applied_at);
		free(x->applied_by);
	}
	free(a->items);
	memset(a, 0, sizeof(*a));
}

static char *dup_cell(const struct eng_rows *r, size_t row, size_t col)
{
	const char *v = rows_get(r, row, col);

	return xstrdup(v ? v : "");
}

static int cmp_applied(const void *a, const void *b)
{
	const struct applied *x = a, *y = b;

	return ver_cmp(x->version, y->version);
}

int hist_load(struct engine *e, struct applied_set *out, struct sm_error *err)
{
	struct eng_rows rows = ENG_ROWS_INIT;
	int exists = 0;

	memset(out, 0, sizeof(*out));
	if (e->ops->table_exists(e, HIST_TABLE, &exists, err) < 0)
		return -1;
	if (!exists)
		return 0;
	if (e->ops->query(e,
			  "SELECT version, description, checksum, applied_at, applied_by, "
			  "CAST(execution_ms AS TEXT) FROM " HIST_TABLE,
			  0, NULL, &rows, err) < 0)
		return err_prefix(err, "cannot read the version table");
	for (size_t i = 0; i < rows.nrows; i++) {
		struct applied *x;
		ALLOC_GROW(out->items, out->n + 1, out->alloc);
		x = &out->items[out->n++];
		x->version = dup_cell(&rows, i, 0);
		x->description = dup_cell(&rows, i, 1);
		x->checksum = dup_cell(&rows, i, 2);
		x->applied_at = dup_cell(&rows, i, 3);
		x->applied_by = dup_cell(&rows, i, 4);
		x->execution_ms = rows_get(&rows, i, 5) ? strtoll(rows_get(&rows, i, 5), NULL, 10) : 0;
	}
	rows_release(&rows);
	if (out->n)
		qsort(out->items, out->n, sizeof(out->items[0]), cmp_applied);
	return 0;
}

long hist_index(const struct applied_set *a, const char *version)
{
	for (size_t i = 0; i < a->n; i++)
		if (!ver_cmp(a->items[i].version, version))
			return (long)i;
	return -1;
}

const char *hist_current(const struct applied_set *a)
{
	return a->n ? a->items[a->n - 1].version : NULL;
}

char *hist_os_user(void)
{
	struct passwd *pw = getpwuid(geteuid());
	const char *u = pw ? pw->pw_name : getenv("USER");

	return xstrdup(u ? u : "unknown");
}

void hist_now_iso(char out[32])
{
	time_t t = time(NULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int hist_record(struct engine *e, const struct migration *m, long long ms, struct sm_error *err)
{
	char when[32], msbuf[32];
	char *user = hist_os_user();
	const char *del[] = { m->version };
	const char *ins[] = { m->version, m->description, m->checksum, when, user, msbuf };
	int ret = -1;

	hist_now_iso(when);
	snprintf(msbuf, sizeof(msbuf), "%lld", ms);
	if (e->ops->query(e, "DELETE FROM " HIST_TABLE " WHERE version = $1", 1, del, NULL, err) < 0)
		goto out;
	if (e->ops->query(e,
			  "INSERT INTO " HIST_TABLE " (version, description, checksum, applied_at, "
			  "applied_by, execution_ms) VALUES ($1, $2, $3, $4, $5, CAST($6 AS BIGINT))",
			  6, ins, NULL, err) < 0)
		goto out;
	ret = 0;
out:
	if (ret < 0)
		err_prefix(err, "cannot record version %s in the version table", m->version);
	free(user);
	return ret;
}

int hist_remove(struct engine *e, const char *version, struct sm_error *err)
{
	const char *p[] = { version };

	if (e->ops->query(e, "DELETE FROM " HIST_TABLE " WHERE version = $1", 1, p, NULL, err) < 0)
		return err_prefix(err, "cannot remove version %s from the version table", version);
	return 0;
}

int hist_save_schema(struct engine *e, const char *fingerprint, const char *text,
		     struct sm_error *err)
{
	char when[32];
	const char *p[] = { fingerprint, text, when };

	hist_now_iso(when);
	if (e->ops->query(e, "DELETE FROM " HIST_SCHEMA_TABLE, 0, NULL, NULL, err) < 0 ||
	    e->ops->query(e, "INSERT INTO " HIST_SCHEMA_TABLE " (id, fingerprint, schema_text, "
			  "recorded_at) VALUES (1, $1, $2, $3)", 3, p, NULL, err) < 0)
		return err_prefix(err, "cannot record the schema fingerprint");
	return 0;
}

int hist_load_schema(struct engine *e, char **fingerprint, char **text, struct sm_error *err)
{
	struct eng_rows rows = ENG_ROWS_INIT;
	int exists = 0;

	*fingerprint = *text = NULL;
	if (e->ops->table_exists(e, HIST_SCHEMA_TABLE, &exists, err) < 0)
		return -1;
	if (!exists)
		return 0;
	if (e->ops->query(e, "SELECT fingerprint, schema_text FROM " HIST_SCHEMA_TABLE
			  " WHERE id = 1", 0, NULL, &rows, err) < 0)
		return -1;
	if (rows.nrows) {
		*fingerprint = dup_cell(&rows, 0, 0);
		*text = dup_cell(&rows, 0, 1);
	}
	rows_release(&rows);
	return 0;
}
