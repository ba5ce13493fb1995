/*
 * foreign: other tools' version tables (see foreign.h).
 */
#include "foreign.h"

#include <stdlib.h>
#include <string.h>

#include "version.h"
#include "xalloc.h"

static const struct {
	enum foreign_tool tool;
	const char *name;
} names[] = {
	{ FOREIGN_DBMATE, "dbmate" },
	{ FOREIGN_GOLANG, "golang-migrate" },
	{ FOREIGN_ALEMBIC, "alembic" },
	{ FOREIGN_FLYWAY, "flyway" },
};

enum foreign_tool foreign_tool_named(const char *name)
{
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(names[i].name, name))
			return names[i].tool;
	return FOREIGN_NONE;
}

static const char *tool_name(enum foreign_tool t)
{
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].tool == t)
			return names[i].name;
	return NULL;
}

void foreign_release(struct foreign_hist *f)
{
	for (size_t i = 0; i < f->n; i++)
		free(f->versions[i]);
	free(f->versions);
	memset(f, 0, sizeof(*f));
}

static int has_col(const struct eng_rows *r, const char *name)
{
	for (size_t i = 0; i < r->ncols; i++)
		if (!strcmp(r->colnames[i], name))
			return 1;
	return 0;
}

/* Reads column 0 of every row of sql into f->versions. */
static int read_versions(struct engine *e, struct foreign_hist *f, const char *sql,
			 struct sm_error *err)
{
	struct eng_rows rows = ENG_ROWS_INIT;

	if (e->ops->query(e, sql, 0, NULL, &rows, err) < 0)
		return err_prefix(err, "cannot read %s's version table '%s'", f->name, f->table);
	f->versions = xcalloc(rows.nrows + 1, sizeof(char *));
	for (size_t i = 0; i < rows.nrows; i++)
		if (rows_get(&rows, i, 0))
			f->versions[f->n++] = xstrdup(rows_get(&rows, i, 0));
	rows_release(&rows);
	return 0;
}

int foreign_load(struct engine *e, struct foreign_hist *out, struct sm_error *err)
{
	struct eng_rows rows = ENG_ROWS_INIT;
	int exists = 0;

	memset(out, 0, sizeof(*out));
	if (e->ops->table_exists(e, "schema_migrations", &exists, err) < 0)
		return -1;
	if (exists) {
		/* dbmate: (version); golang-migrate: (version, dirty) */
		if (e->ops->query(e, "SELECT * FROM schema_migrations LIMIT 1", 0, NULL, &rows,
				  err) < 0)
			return err_prefix(err, "cannot read 'schema_migrations'");
		out->tool = has_col(&rows, "dirty") ? FOREIGN_GOLANG : FOREIGN_DBMATE;
		if (out->tool == FOREIGN_GOLANG && rows.nrows) {
			const char *d = rows_get(&rows, 0, 1);
			out->dirty = d && (!strcmp(d, "t") || !strcmp(d, "1") || !strcmp(d, "true"));
		}
		rows_release(&rows);
		out->name = tool_name(out->tool);
		out->table = "schema_migrations";
		return read_versions(e, out, "SELECT version FROM schema_migrations", err);
	}
	if (e->ops->table_exists(e, "alembic_version", &exists, err) < 0)
		return -1;
	if (exists) {
		out->tool = FOREIGN_ALEMBIC;
		out->name = tool_name(out->tool);
		out->table = "alembic_version";
		return read_versions(e, out, "SELECT version_num FROM alembic_version", err);
	}
	if (e->ops->table_exists(e, "flyway_schema_history", &exists, err) < 0)
		return -1;
	if (exists) {
		out->tool = FOREIGN_FLYWAY;
		out->name = tool_name(out->tool);
		out->table = "flyway_schema_history";
		return read_versions(e, out, "SELECT version FROM flyway_schema_history WHERE "
				     "success AND version IS NOT NULL", err);
	}
	return 0;
}

/* Versions compare as versions: golang-migrate stores 3 for "000003". */
static int same_version(const char *a, const char *b)
{
	if (!a || !b)
		return 0;
	return ver_valid(a) && ver_valid(b) ? ver_cmp(a, b) == 0 : strcmp(a, b) == 0;
}

int foreign_in_step(const struct foreign_hist *f, const struct applied_set *applied)
{
	if (f->tool == FOREIGN_GOLANG) {
		const char *cur = hist_current(applied);

		if (f->dirty)
			return 0;
		return cur ? f->n == 1 && same_version(f->versions[0], cur) : f->n == 0;
	}
	if (f->tool != FOREIGN_DBMATE || f->n != applied->n)
		return 0;
	for (size_t i = 0; i < f->n; i++) {
		size_t k;
		for (k = 0; k < applied->n; k++)
			if (same_version(f->versions[i], applied->items[k].version))
				break;
		if (k == applied->n)
			return 0;
	}
	return 1;
}

int foreign_applied(const struct foreign_hist *f, const struct migration_set *set, char *want,
		    size_t *unmatched, struct sm_error *err)
{
	memset(want, 0, set->n);
	*unmatched = 0;
	if (f->tool == FOREIGN_GOLANG && f->dirty)
		return err_set(err, ERR_FAIL, "golang-migrate marks version %s dirty: a migration "
			       "failed part-way; repair the database and clear the flag ('migrate "
			       "force %s') first", f->n ? f->versions[0] : "?",
			       f->n ? f->versions[0] : "VERSION");
	for (size_t i = 0; i < f->n; i++) {
		size_t k;

		for (k = 0; k < set->n; k++)
			if (same_version(f->versions[i], set->items[k].version))
				break;
		if (k == set->n) {
			if (f->tool == FOREIGN_ALEMBIC || f->tool == FOREIGN_GOLANG)
				return err_set(err, ERR_FAIL, "%s's current version '%s' is no "
					       "migration's version here; stamp the matching one "
					       "by hand ('safe-migrate stamp VERSION')", f->name,
					       f->versions[i]);
			(*unmatched)++;
			continue;
		}
		if (f->tool == FOREIGN_ALEMBIC || f->tool == FOREIGN_GOLANG)
			memset(want, 1, k + 1); /* one version: everything up to it */
		else
			want[k] = 1;
	}
	return 0;
}

int foreign_step(struct engine *e, const struct foreign_hist *f, const struct migration *m,
		 int up, const char *prev, struct sm_error *err)
{
	const char *v[1] = { m->version };
	int rc = 0;

	if (f->tool == FOREIGN_DBMATE) {
		rc = e->ops->query(e, up ? "INSERT INTO schema_migrations (version) VALUES ($1)"
					 : "DELETE FROM schema_migrations WHERE version = $1",
				   1, v, NULL, err);
	} else if (f->tool == FOREIGN_GOLANG) {
		rc = e->ops->query(e, "DELETE FROM schema_migrations", 0, NULL, NULL, err);
		if (rc == 0 && (up || prev)) {
			v[0] = up ? m->version : prev;
			rc = e->ops->query(e, "INSERT INTO schema_migrations (version, dirty) VALUES "
					   "($1, false)", 1, v, NULL, err);
		}
	}
	if (rc < 0)
		return err_prefix(err, "cannot keep %s's version table '%s' in step", f->name,
				  f->table);
	return 0;
}

int foreign_describe(const struct foreign_hist *f, const struct applied_set *applied,
		     struct strbuf *out)
{
	const char *newest = NULL;
	int ok;

	for (size_t i = 0; i < f->n; i++)
		if (!newest || (ver_valid(f->versions[i]) && ver_valid(newest) &&
				ver_cmp(f->versions[i], newest) > 0))
			newest = f->versions[i];
	sb_addf(out, "%s's version table '%s' (%zu version%s%s%s%s)", f->name, f->table, f->n,
		f->n == 1 ? "" : "s", newest ? ", newest " : "", newest ? newest : "",
		f->dirty ? ", DIRTY" : "");
	if (foreign_in_step(f, applied)) {
		sb_adds(out, ": in step with safe-migrate's; upgrade and downgrade keep it so");
		ok = 1;
	} else if (applied->n && (f->tool == FOREIGN_ALEMBIC || f->tool == FOREIGN_FLYWAY)) {
		sb_addf(out, ": safe-migrate keeps its own history (%s's table is not updated)",
			f->name);
		ok = 1;
	} else if (!applied->n) {
		sb_addf(out, ": not adopted; safe-migrate sees no applied migration: adopt "
			"its history with 'safe-migrate stamp --from %s'", f->name);
		ok = 0;
	} else {
		sb_adds(out, ": differs from safe-migrate's history; the other tool will not see "
			"what safe-migrate applies");
		ok = 0;
	}
	return ok;
}
