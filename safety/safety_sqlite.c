/*
 * safety_sqlite: the SQLite driver of safety/ (see safety_driver.h):
 * schema introspection from sqlite_master and the table-valued pragmas,
 * PRAGMA integrity_check / foreign_key_check, the file size as the snapshot
 * estimate, and the hot-journal / writability check.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "fsutil.h"
#include "safety_driver.h"
#include "xalloc.h"

#define MAX_REPORTED 50 /* rows of a failed check reported one by one */

/* SQL text with whitespace runs collapsed, so layout changes made by
 * editors or dump/restore do not count as schema changes. */
static char *squeeze(const char *sql)
{
	struct strbuf sb = STRBUF_INIT;

	sb_add_squeezed(&sb, sql, " \t\n\r");
	return sb_detach(&sb);
}

static void add_sql_obj(struct schema_model *m, enum schema_kind kind, const char *table,
			const char *name, const char *sql)
{
	char *def = squeeze(sql);

	schema_add(m, kind, table, name, def);
	free(def);
}

/*
 * Each table's columns, keys and unique constraints come from the
 * table-valued pragmas, joined with sqlite_master: one statement for all
 * tables per pragma.  A statement per table (and one more per unique index)
 * cost 8,000 statements on an application's 2,000 tables, half of a whole
 * `safe-migrate` run there, which reads the schema before and after (the
 * second time only for the tables the run changed: sqlite_schema_load).
 * Each pragma names the schema, main: a TEMP table that a migration made on
 * the same connection would else stand in for the main table of its name
 * (and the fingerprint recorded after the run would differ from every
 * later one).
 */
#define TABLES_ONLY \
	" WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "

/* With a list of tables to read (a JSON array, the query's $1), the
 * restriction to them; else none. */
#define SOME_TABLES " AND m.name IN (SELECT value FROM json_each($1)) "

/* Runs a loader's query: head, then with only (a JSON array of names, or
 * NULL: every table) SOME_TABLES, then tail. */
static int query_tables(struct engine *e, const char *head, const char *only, const char *tail,
			struct eng_rows *r, struct sm_error *err)
{
	struct strbuf sql = STRBUF_INIT;
	int ret;

	sb_adds(&sql, head);
	if (only)
		sb_adds(&sql, SOME_TABLES);
	sb_adds(&sql, tail);
	ret = e->ops->query(e, sql.buf, only ? 1 : 0, only ? &only : NULL, r, err);
	sb_release(&sql);
	return ret;
}

/* Only a table whose CREATE TABLE says REFERENCES can have a foreign key:
 * the clause has no other spelling, and ALTER TABLE ADD COLUMN writes its
 * REFERENCES into the stored text too (a comment may say it: such a table
 * is only asked in vain).  Asking each table's pragma_foreign_key_list
 * costs a statement's preparation per table. */
#define MAY_REFERENCE " instr(upper(m.sql), 'REFERENCES') > 0 "

/* Rows [i, end) of r that belong to the table in column 0 of row i. */
static size_t table_rows_end(const struct eng_rows *r, size_t i)
{
	size_t j = i;

	while (j < r->nrows && !strcmp(rows_get(r, j, 0), rows_get(r, i, 0)))
		j++;
	return j;
}

/* Columns and primary keys: (table, column, type, notnull, default, pk,
 * position: cid counts from 0, with no gap). */
static int load_columns(struct engine *e, struct schema_model *m, const char *only,
			struct sm_error *err)
{
	struct eng_rows r = ENG_ROWS_INIT;
	struct strbuf pk = STRBUF_INIT;

	if (query_tables(e, "SELECT m.name, p.name, p.type, p.\"notnull\", p.dflt_value, p.pk, "
			 "p.cid + 1 "
			 "FROM sqlite_master m, pragma_table_info(m.name, 'main') p" TABLES_ONLY,
			 only, "ORDER BY m.name, p.pk, p.cid", &r, err) < 0)
		return -1;
	for (size_t i = 0, end; i < r.nrows; i = end) {
		const char *table = rows_get(&r, i, 0);
		long npk = 0;

		end = table_rows_end(&r, i);
		if (schema_is_own_table(table))
			continue;
		sb_reset(&pk);
		for (size_t k = i; k < end; k++) {
			struct schema_obj *o =
				schema_add(m, SOBJ_COLUMN, table, rows_get(&r, k, 1), NULL);
			const char *dflt = rows_get(&r, k, 4);

			o->type = xstrdup(rows_get(&r, k, 2) ? rows_get(&r, k, 2) : "");
			o->notnull = rows_get(&r, k, 3) && strcmp(rows_get(&r, k, 3), "0");
			o->dflt = dflt ? xstrdup(dflt) : NULL;
			o->position = (int)strtol(rows_get(&r, k, 6), NULL, 10);
			if (rows_get(&r, k, 5) && strcmp(rows_get(&r, k, 5), "0")) {
				sb_addf(&pk, "%s%s", npk ? ", " : "PRIMARY KEY (",
					rows_get(&r, k, 1));
				npk++;
			}
		}
		if (npk) {
			sb_addch(&pk, ')');
			schema_add(m, SOBJ_CONSTRAINT, table, "pk", pk.buf);
		}
	}
	sb_release(&pk);
	rows_release(&r);
	return 0;
}

/* Foreign keys: (table, id, parent, from, to, on_update, on_delete). */
static int load_fks(struct engine *e, struct schema_model *m, const char *only,
		    struct sm_error *err)
{
	struct eng_rows r = ENG_ROWS_INIT;
	size_t i = 0;

	if (query_tables(e, "SELECT m.name, f.id, f.\"table\", f.\"from\", f.\"to\", "
			 "f.on_update, f.on_delete FROM sqlite_master m, "
			 "pragma_foreign_key_list(m.name, 'main') f" TABLES_ONLY "AND" MAY_REFERENCE,
			 only, "ORDER BY m.name, f.id, f.seq", &r, err) < 0)
		return -1;
	while (i < r.nrows) {
		struct strbuf from = STRBUF_INIT, to = STRBUF_INIT, def = STRBUF_INIT,
			      name = STRBUF_INIT;
		const char *table = rows_get(&r, i, 0), *id = rows_get(&r, i, 1);
		size_t j = i, end = table_rows_end(&r, i);

		for (; j < end && !strcmp(rows_get(&r, j, 1), id); j++) {
			sb_addf(&from, "%s%s", j > i ? ", " : "", rows_get(&r, j, 3));
			sb_addf(&to, "%s%s", j > i ? ", " : "",
				rows_get(&r, j, 4) ? rows_get(&r, j, 4) : "");
		}
		sb_addf(&def, "FOREIGN KEY (%s) REFERENCES %s (%s)", from.buf, rows_get(&r, i, 2),
			to.buf);
		if (strcmp(rows_get(&r, i, 5), "NO ACTION"))
			sb_addf(&def, " ON UPDATE %s", rows_get(&r, i, 5));
		if (strcmp(rows_get(&r, i, 6), "NO ACTION"))
			sb_addf(&def, " ON DELETE %s", rows_get(&r, i, 6));
		sb_addf(&name, "fk(%s)", from.buf);
		if (!schema_is_own_table(table))
			schema_add(m, SOBJ_CONSTRAINT, table, name.buf, def.buf);
		sb_release(&from);
		sb_release(&to);
		sb_release(&def);
		sb_release(&name);
		i = j;
	}
	rows_release(&r);
	return 0;
}

/* UNIQUE constraints (not CREATE UNIQUE INDEX): (table, index, column). */
static int load_uniques(struct engine *e, struct schema_model *m, const char *only,
			struct sm_error *err)
{
	struct eng_rows r = ENG_ROWS_INIT;
	size_t i = 0;

	if (query_tables(e, "SELECT m.name, l.name, c.name "
			 "FROM sqlite_master m, pragma_index_list(m.name, 'main') l, "
			 "pragma_index_info(l.name, 'main') c" TABLES_ONLY "AND l.origin = 'u' ",
			 only, "ORDER BY m.name, l.name, c.seqno", &r, err) < 0)
		return -1;
	while (i < r.nrows) {
		struct strbuf cols = STRBUF_INIT, name = STRBUF_INIT, def = STRBUF_INIT;
		const char *table = rows_get(&r, i, 0), *index = rows_get(&r, i, 1);
		size_t j = i, end = table_rows_end(&r, i);

		for (; j < end && !strcmp(rows_get(&r, j, 1), index); j++)
			sb_addf(&cols, "%s%s", j > i ? ", " : "",
				rows_get(&r, j, 2) ? rows_get(&r, j, 2) : "<expr>");
		sb_addf(&name, "unique(%s)", cols.buf);
		sb_addf(&def, "UNIQUE (%s)", cols.buf);
		if (!schema_is_own_table(table))
			schema_add(m, SOBJ_CONSTRAINT, table, name.buf, def.buf);
		sb_release(&cols);
		sb_release(&name);
		sb_release(&def);
		i = j;
	}
	rows_release(&r);
	return 0;
}

/* The objects of table in prev that its CREATE TABLE text alone decides
 * (columns and constraints), if prev read that table from the same text:
 * copied into m, 1; else 0.  *cur walks prev, which is sorted, as the
 * tables come in the order of their names. */
static int reuse_table(const struct schema_model *prev, size_t *cur, const char *table,
		       const char *sql, struct schema_model *m)
{
	size_t i;

	while (*cur < prev->n && (prev->items[*cur].kind != SOBJ_TABLE ||
				  strcmp(prev->items[*cur].name, table) < 0))
		(*cur)++;
	i = *cur;
	if (i == prev->n || strcmp(prev->items[i].name, table) || !prev->items[i].source ||
	    !sql || strcmp(prev->items[i].source, sql))
		return 0;
	for (i++; i < prev->n && prev->items[i].table && !strcmp(prev->items[i].table, table);
	     i++) {
		const struct schema_obj *o = &prev->items[i];
		struct schema_obj *c;

		if (o->kind != SOBJ_COLUMN && o->kind != SOBJ_CONSTRAINT)
			continue;
		c = schema_add(m, o->kind, o->table, o->name, o->def);
		c->type = o->type ? xstrdup(o->type) : NULL;
		c->notnull = o->notnull;
		c->position = o->position;
		c->dflt = o->dflt ? xstrdup(o->dflt) : NULL;
	}
	return 1;
}

/*
 * A table's columns, keys and UNIQUE constraints are decided by its
 * CREATE TABLE text (sqlite_master.sql: every ALTER TABLE rewrites it, and
 * a UNIQUE constraint's index is named after the table), so with prev, the
 * model read earlier on the same library, the tables whose text is
 * unchanged take them from prev and only the others are asked: after a
 * migration that changed one table of 2,000, one table's pragmas instead
 * of all of them.
 */
static int sqlite_schema_load(struct engine *e, const struct schema_model *prev,
			      struct schema_model *m, struct sm_error *err)
{
	struct eng_rows r = ENG_ROWS_INIT;
	cJSON *changed = prev ? cJSON_CreateArray() : NULL;
	char *only = NULL;
	size_t cur = 0;
	int ret = -1;

	if (e->ops->query(e, "SELECT type, name, tbl_name, sql FROM sqlite_master "
			  "WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name", 0, NULL,
			  &r, err) < 0)
		goto out;
	for (size_t i = 0; i < r.nrows; i++) {
		const char *type = rows_get(&r, i, 0), *name = rows_get(&r, i, 1);
		const char *tbl = rows_get(&r, i, 2), *sql = rows_get(&r, i, 3);

		if (schema_is_own_table(tbl))
			continue;
		if (!strcmp(type, "table")) {
			schema_add(m, SOBJ_TABLE, NULL, name, NULL)->source = sql ? xstrdup(sql) : NULL;
			if (prev && !reuse_table(prev, &cur, name, sql, m))
				cJSON_AddItemToArray(changed, cJSON_CreateString(name));
		} else if (!strcmp(type, "index") && sql) { /* NULL sql: automatic index */
			add_sql_obj(m, SOBJ_INDEX, tbl, name, sql);
		} else if (!strcmp(type, "view")) {
			add_sql_obj(m, SOBJ_VIEW, NULL, name, sql);
		} else if (!strcmp(type, "trigger")) {
			add_sql_obj(m, SOBJ_TRIGGER, tbl, name, sql);
		}
	}
	if (prev && !cJSON_GetArraySize(changed)) {
		ret = 0;
		goto out;
	}
	if (prev && !(only = cJSON_PrintUnformatted(changed))) {
		err_set(err, ERR_FAIL, "out of memory");
		goto out;
	}
	if (load_columns(e, m, only, err) < 0 || load_fks(e, m, only, err) < 0 ||
	    load_uniques(e, m, only, err) < 0)
		goto out;
	ret = 0;
out:
	cJSON_Delete(changed);
	cJSON_free(only);
	rows_release(&r);
	return ret;
}

/* Page cache of the checks: integrity_check probes every index once per
 * row of its table, and foreign_key_check looks every child row's parent
 * up, so the same pages are read again and again unless they stay cached.
 * Bounded, so the checks' memory stays within the tool's budget. */
#define CHECK_CACHE_KIB 16384

/* Gives the connection a page cache of CHECK_CACHE_KIB for the checks;
 * *old receives the setting to put back (owned). */
static int check_cache_begin(struct engine *e, char **old, struct sm_error *err)
{
	struct strbuf sql = STRBUF_INIT;
	int ret;

	*old = NULL;
	if (engine_scalar(e, "PRAGMA cache_size", 0, NULL, old, err) < 0)
		return -1;
	sb_addf(&sql, "PRAGMA cache_size = -%d", CHECK_CACHE_KIB);
	ret = engine_exec(e, sql.buf, err);
	sb_release(&sql);
	return ret;
}

/* Puts the page cache setting back and frees old; ret is the checks'
 * result (after a failure, err already says what went wrong first). */
static int check_cache_end(struct engine *e, char *old, int ret, struct sm_error *err)
{
	struct strbuf sql = STRBUF_INIT;
	struct sm_error later = SM_ERROR_INIT;

	if (old) {
		sb_addf(&sql, "PRAGMA cache_size = %s", old);
		if (engine_exec(e, sql.buf, ret < 0 ? &later : err) < 0)
			ret = -1;
	}
	free(old);
	sb_release(&sql);
	return ret;
}

/* The finding of one line of a check's outcome (not "ok"). */
static void check_finding(struct finding_list *out, const char *pragma, const char *line,
			  size_t len)
{
	finding_add(out, FINDING_CHECK, "integrity", LEVEL_FAIL,
		    "restore the snapshot taken before the run", NULL, 0, "%s: %.*s", pragma,
		    (int)len, line);
}

/* Runs PRAGMA pragma (integrity_check or quick_check) of the whole file,
 * or of table and its indexes only (NULL: the whole file).  A finding's
 * message does not say which: a problem found one way is the same problem
 * found the other (the baseline is compared with validate's findings). */
static int run_check(struct engine *e, const char *pragma, const char *table,
		     struct finding_list *out, struct sm_error *err)
{
	struct eng_rows r = ENG_ROWS_INIT;
	struct strbuf sql = STRBUF_INIT;

	sb_addf(&sql, "PRAGMA main.%s", pragma);
	if (table) {
		sb_addch(&sql, '(');
		e->ops->quote_ident(&sql, table);
		sb_addch(&sql, ')');
	}
	if (e->ops->query(e, sql.buf, 0, NULL, &r, err) < 0) {
		sb_release(&sql);
		return err_prefix(err, "PRAGMA %s failed", pragma);
	}
	for (size_t i = 0; i < r.nrows && i < MAX_REPORTED; i++) {
		const char *v = rows_get(&r, i, 0);
		if (v && strcmp(v, "ok"))
			check_finding(out, pragma, v, strlen(v));
	}
	sb_release(&sql);
	rows_release(&r);
	return 0;
}

/* Adds a finding per violation foreign_key_check found (r: its rows, in
 * table order), the first MAX_REPORTED of each table one by one and the
 * rest as a count: a table's findings are the same whether it was checked
 * alone or with every other (a baseline taken one way is compared with
 * findings taken the other). */
static void fk_findings(const struct eng_rows *r, struct finding_list *out)
{
	size_t n = 0;

	for (size_t i = 0; i < r->nrows; i++) {
		const char *table = rows_get(r, i, 0) ? rows_get(r, i, 0) : "?";
		const char *next = i + 1 < r->nrows ? rows_get(r, i + 1, 0) : NULL;

		if (n++ < MAX_REPORTED)
			finding_add(out, FINDING_CHECK, "foreign-keys", LEVEL_FAIL,
				    "delete or fix the orphan rows, or restore the snapshot", NULL, 0,
				    "row rowid=%s of table '%s' references a missing row in table "
				    "'%s'", rows_get(r, i, 1) ? rows_get(r, i, 1) : "NULL", table,
				    rows_get(r, i, 2));
		if (next && !strcmp(next, table))
			continue;
		if (n > MAX_REPORTED)
			finding_add(out, FINDING_CHECK, "foreign-keys", LEVEL_FAIL, NULL, NULL, 0,
				    "%zu more foreign-key violations in table '%s' not listed",
				    n - MAX_REPORTED, table);
		n = 0;
	}
}

/* PRAGMA foreign_key_check of table, or of every table (NULL). */
static int fk_check(struct engine *e, const char *table, struct finding_list *out,
		    struct sm_error *err)
{
	struct eng_rows r = ENG_ROWS_INIT;
	const char *params[1] = { table };

	if (e->ops->query(e, table ? "SELECT * FROM pragma_foreign_key_check($1, 'main')"
				   : "PRAGMA main.foreign_key_check", table ? 1 : 0, params, &r,
			  err) < 0)
		return err_prefix(err, "PRAGMA foreign_key_check failed");
	fk_findings(&r, out);
	rows_release(&r);
	return 0;
}

/* name is one of the lines of lines, compared as SQLite compares names
 * (ASCII letters without case). */
static int in_lines(const char *lines, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = lines ? lines : ""; *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);

		if (len == n && !strncasecmp(p, name, n))
			return 1;
		p += len + (nl ? 1 : 0);
	}
	return 0;
}

/* foreign_key_check of each table whose outcome writes to the tables in
 * written ("*": any) can change: a table written (rows, definition, or an
 * index), or one whose foreign keys reference a table written (its rows,
 * its parent key's index, or the table dropped).  Writes that foreign-key
 * actions and triggers make are in written too (engine_ops.track_writes).
 * Tables listed in skip are left out; each table checked is added to
 * checked (both may be NULL); *tables and *nchecked (may be NULL) receive
 * how many tables have foreign keys and how many were checked. */
static int fk_check_written(struct engine *e, const char *written, const char *skip,
			    struct strbuf *checked, size_t *tables, size_t *nchecked,
			    struct finding_list *out, struct sm_error *err)
{
	struct eng_rows r = ENG_ROWS_INIT;
	const char *last = NULL, *prev = NULL;
	size_t ntables = 0, n = 0;
	int all = in_lines(written, "*"), ret = -1;

	if (e->ops->query(e, "SELECT m.name, f.\"table\" FROM sqlite_master m, "
			  "pragma_foreign_key_list(m.name, 'main') f WHERE m.type = 'table' "
			  "AND" MAY_REFERENCE "ORDER BY m.name", 0, NULL, &r, err) < 0) {
		err_prefix(err, "cannot list the foreign keys");
		goto out;
	}
	for (size_t i = 0; i < r.nrows; i++) {
		const char *child = rows_get(&r, i, 0), *parent = rows_get(&r, i, 1);

		if (!child)
			continue;
		if (!prev || strcmp(prev, child))
			ntables++;
		prev = child;
		if (last && !strcmp(last, child))
			continue;
		if (in_lines(skip, child) ||
		    (!all && !in_lines(written, child) && !(parent && in_lines(written, parent))))
			continue;
		if (fk_check(e, child, out, err) < 0)
			goto out;
		if (checked)
			sb_addf(checked, "%s\n", child);
		last = child;
		n++;
	}
	if (tables)
		*tables = ntables;
	if (nchecked)
		*nchecked = n;
	ret = 0;
out:
	rows_release(&r);
	return ret;
}

/* pragma of the whole file (NULL: none) and, with fks, foreign_key_check
 * of every table, with the checks' page cache. */
static int run_checks(struct engine *e, const char *pragma, int fks, struct finding_list *out,
		      struct sm_error *err)
{
	char *old = NULL;
	int ret = -1;

	if (check_cache_begin(e, &old, err) == 0 &&
	    (!pragma || run_check(e, pragma, NULL, out, err) == 0) &&
	    (!fks || fk_check(e, NULL, out, err) == 0))
		ret = 0;
	return check_cache_end(e, old, ret, err);
}

/* quick_integrity but the quick_check of the whole file: the snapshot's
 * backup runs that one beside its copy (sqlite_whole_check_findings). */
static int sqlite_quick_integrity_but_whole(struct engine *e, struct finding_list *out,
					    struct sm_error *err)
{
	return run_checks(e, NULL, 1, out, err);
}

static int sqlite_whole_check(struct engine *e, struct finding_list *out, struct sm_error *err)
{
	return run_checks(e, "quick_check", 0, out, err);
}

/* The backup's quick_check outcome (backup_sqlite.c: its first lines, one
 * per line) as run_check reports the same lines. */
static void sqlite_whole_check_findings(const char *checked, struct finding_list *out)
{
	size_t n = 0;

	for (const char *p = checked; p && *p && n < MAX_REPORTED;) {
		size_t len = strcspn(p, "\n");

		if (len && !(len == 2 && !strncmp(p, "ok", 2))) {
			check_finding(out, "quick_check", p, len);
			n++;
		}
		p += len + (p[len] ? 1 : 0);
	}
}

static int sqlite_integrity(struct engine *e, struct finding_list *out, struct sm_error *err)
{
	return run_checks(e, "integrity_check", 1, out, err);
}

/* The pipeline's check (docs/safety.md): quick_check reads every page once
 * and finds what a failed write or a bad page would leave (b-trees, cells,
 * freelist, NOT NULL and CHECK constraints); what it leaves out, that each
 * index holds exactly its table's rows, SQLite maintains in every statement
 * a migration can run, and costs a b-tree probe per row and index. */
static int sqlite_quick_integrity(struct engine *e, struct finding_list *out,
				  struct sm_error *err)
{
	return run_checks(e, "quick_check", 1, out, err);
}

/* The pipeline's baseline up front: nothing.  Every check it compares
 * with validate's is taken table by table just before the run first
 * writes there (sqlite_relations_baseline), and the snapshot checked the
 * whole file beside its copy (backup_sqlite.c). */
static int sqlite_quick_integrity_local(struct engine *e, struct finding_list *out,
					struct sm_error *err)
{
	(void)e;
	(void)out;
	(void)err;
	return 0;
}

/* The name table has in the schema if it is a table with b-trees of its
 * own (a view or a virtual table has none; a table the run has not yet
 * created, or has dropped, is not there): *name receives it (owned) or
 * NULL. */
static int stored_table(struct engine *e, const char *table, char **name, struct sm_error *err)
{
	const char *params[1] = { table };

	return engine_scalar(e, "SELECT name FROM main.sqlite_schema WHERE type = 'table' "
			     "AND rootpage > 0 AND name = $1 COLLATE NOCASE", 1, params, name, err);
}

/* quick_check of each table in written (and its indexes) not yet in done,
 * adding each to done; "*" (anything may have changed): of the whole file.
 * The schema table goes first, once: its check also covers the freelist,
 * which any write can change. */
static int quick_check_written(struct engine *e, const char *written, struct strbuf *done,
			       struct finding_list *out, struct sm_error *err)
{
	if (in_lines(done->buf, "*"))
		return 0;
	if (in_lines(written, "*")) {
		sb_adds(done, "*\n");
		return run_check(e, "quick_check", NULL, out, err);
	}
	if (*written && !in_lines(done->buf, "sqlite_schema")) {
		sb_adds(done, "sqlite_schema\n");
		if (run_check(e, "quick_check", "sqlite_schema", out, err) < 0)
			return -1;
	}
	for (const char *p = written; *p;) {
		size_t len = strcspn(p, "\n");
		char *table = xstrndup(p, len), *name = NULL;
		int rc = 0;

		p += len + (p[len] ? 1 : 0);
		if (len && !in_lines(done->buf, table)) {
			sb_addf(done, "%s\n", table);
			rc = stored_table(e, table, &name, err);
			if (rc == 0 && name)
				rc = run_check(e, "quick_check", name, out, err);
		}
		free(name);
		free(table);
		if (rc < 0)
			return -1;
	}
	return 0;
}

static int sqlite_relations_baseline(struct engine *e, const char *written,
				     struct strbuf *done, struct strbuf *own_done,
				     struct finding_list *out, struct sm_error *err)
{
	struct strbuf skip = STRBUF_INIT;
	char *old = NULL;
	int ret = -1;

	sb_addf(&skip, "%s", done->len ? done->buf : "");
	if (check_cache_begin(e, &old, err) == 0 &&
	    quick_check_written(e, written, own_done, out, err) == 0 &&
	    fk_check_written(e, written, skip.buf, done, NULL, NULL, out, err) == 0)
		ret = 0;
	/* a table written from here on is no longer as it was before the run:
	 * one created now (no foreign keys to check yet) must not be checked
	 * into the baseline later, after the run filled it */
	for (const char *p = written; ret == 0 && *p;) {
		size_t len = strcspn(p, "\n");

		if (len && !(len == 1 && *p == '*'))
			sb_addf(done, "%.*s\n", (int)len, p);
		p += len + (p[len] ? 1 : 0);
	}
	sb_release(&skip);
	return check_cache_end(e, old, ret, err);
}

/* The pipeline's validate, after its migrations ran on this connection:
 * quick_check of the tables written and the schema table (the whole file
 * when anything may have changed), foreign keys only where written can
 * have changed them (see docs/safety.md). */
static int sqlite_quick_integrity_written(struct engine *e, const char *written,
					  struct finding_list *out, struct sm_error *err)
{
	struct strbuf done = STRBUF_INIT;
	char *old = NULL;
	size_t tables = 0, checked = 0;
	int ret = -1;

	if (check_cache_begin(e, &old, err) < 0 ||
	    quick_check_written(e, written, &done, out, err) < 0)
		goto out;
	if (in_lines(written, "*")) {
		ret = fk_check(e, NULL, out, err);
		goto out;
	}
	if (fk_check_written(e, written, NULL, NULL, &tables, &checked, out, err) < 0)
		goto out;
	finding_add(out, FINDING_CHECK, "foreign-keys", LEVEL_PASS, NULL, NULL, 0,
		    "foreign keys checked in %zu of the %zu tables that have them; the run wrote "
		    "neither the others nor the tables they reference", checked, tables);
	ret = 0;
out:
	sb_release(&done);
	return check_cache_end(e, old, ret, err);
}

static unsigned long long file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (unsigned long long)st.st_size : 0;
}

static int sqlite_db_size(struct engine *e, unsigned long long *bytes, struct sm_error *err)
{
	struct strbuf wal = STRBUF_INIT;

	(void)err;
	sb_addf(&wal, "%s-wal", e->url.path);
	*bytes = file_size(e->url.path) + file_size(wal.buf);
	sb_release(&wal);
	return 0;
}

/* The in-place restore writes a staging copy of the snapshot's database
 * next to the live one (restore_sqlite.c), then copies it in with the
 * backup API in one write transaction, whose rollback journal holds every
 * page it overwrites (or whose WAL holds every page it writes): about the
 * database's size twice, on the database's file system. */
static int sqlite_restore_room(struct engine *e, unsigned long long db_bytes, char **dir,
			       unsigned long long *bytes, struct sm_error *err)
{
	(void)err;
	*dir = fs_dirname(e->url.path);
	*bytes = 2 * db_bytes;
	return 0;
}

static void sqlite_preopen(const struct db_url *url, struct finding_list *out)
{
	struct strbuf journal = STRBUF_INIT;
	char *dir = fs_dirname(url->path);
	int problems = 0;

	if (!fs_exists(url->path))
		goto out; /* the connectivity check says so */
	sb_addf(&journal, "%s-journal", url->path);
	if (fs_exists(journal.buf)) {
		finding_add(out, FINDING_CHECK, "database-file", LEVEL_FAIL,
			    "make sure no other program is writing the database; opening it with "
			    "sqlite3 rolls an interrupted write back", NULL, 0,
			    "hot journal '%s' present: a write to the database is in progress or was "
			    "interrupted", journal.buf);
		problems++;
	}
	if (access(url->path, W_OK) < 0) {
		finding_add(out, FINDING_CHECK, "database-file", LEVEL_FAIL, NULL, NULL, 0,
			    "database '%s' is not writable: %s", url->path, strerror(errno));
		problems++;
	} else if (access(dir, W_OK) < 0) {
		finding_add(out, FINDING_CHECK, "database-file", LEVEL_FAIL,
			    "SQLite creates its journal next to the database", NULL, 0,
			    "directory '%s' of the database is not writable: %s", dir,
			    strerror(errno));
		problems++;
	}
	if (!problems)
		finding_add(out, FINDING_CHECK, "database-file", LEVEL_PASS, NULL, NULL, 0,
			    "'%s' is writable and has no hot journal", url->path);
out:
	free(dir);
	sb_release(&journal);
}

static int sqlite_count_rows(struct engine *e, const char *table, long long *n,
			     struct sm_error *err)
{
	struct strbuf sql = STRBUF_INIT;
	char *v = NULL;
	int ret;

	/* main.: not a TEMP table of that name (the schema model's tables are
	 * main's) */
	sb_adds(&sql, "SELECT count(*) FROM main.");
	e->ops->quote_ident(&sql, table);
	ret = engine_scalar(e, sql.buf, 0, NULL, &v, err);
	*n = v ? strtoll(v, NULL, 10) : 0;
	free(v);
	sb_release(&sql);
	return ret;
}

const struct safety_driver safety_sqlite_driver = {
	.engine = "sqlite",
	.schema_load = sqlite_schema_load,
	.integrity = sqlite_integrity,
	.quick_integrity = sqlite_quick_integrity,
	.quick_integrity_written = sqlite_quick_integrity_written,
	.quick_integrity_local = sqlite_quick_integrity_local,
	.relations_baseline = sqlite_relations_baseline,
	.quick_integrity_but_whole = sqlite_quick_integrity_but_whole,
	.whole_check = sqlite_whole_check,
	.whole_check_findings = sqlite_whole_check_findings,
	.db_size = sqlite_db_size,
	.restore_room = sqlite_restore_room,
	.count_rows = sqlite_count_rows,
	.preopen = sqlite_preopen,
	.live_checks = NULL,
};
