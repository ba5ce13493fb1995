/*
 * autogen: the schema diff turned into SQL (see autogen.h).  The same
 * generator runs twice, live -> desired for the up section and desired ->
 * live for the down section; what differs between engines sits in the
 * driver table below (keyed by e->ops->name).
 */
#include "autogen.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine_pg.h"
#include "schema.h"
#include "xalloc.h"

struct ag;

struct ag_driver {
	const char *engine;
	int sqlite_style; /* rebuild tables instead of ALTER COLUMN / constraints */
	int (*table_ddl)(struct ag *g, const char *table, struct strbuf *out, struct sm_error *err);
	int (*scratch_open)(struct engine *live, struct engine **out, struct sm_error *err);
	void (*scratch_close)(struct engine *live, struct engine *scratch);
	const char *views_sql; /* view names in creation order */
};

/* One direction's generation: from -> to, DDL read from to_e. */
struct ag {
	const struct ag_driver *d;
	struct engine *to_e, *from_e;
	const struct schema_model *from, *to;
	struct strbuf *sql, *csql; /* csql: CONCURRENTLY section (PostgreSQL) */
	struct strbuf *summary;    /* NULL for the down direction */
	struct strbuf *warn;
	size_t changes;
	int no_tx;
	char **rebuilt; /* SQLite: tables rebuilt */
	size_t n_rebuilt, alloc_rebuilt;
};

void autogen_result_release(struct autogen_result *r)
{
	sb_release(&r->up);
	sb_release(&r->down);
	sb_release(&r->cup);
	sb_release(&r->cdown);
	sb_release(&r->summary);
	sb_release(&r->warnings);
}

/* ---- helpers -------------------------------------------------------------- */

static const struct schema_obj *find(const struct schema_model *m, enum schema_kind k,
				     const char *table, const char *name)
{
	for (size_t i = 0; i < m->n; i++) {
		const struct schema_obj *o = &m->items[i];
		if (o->kind == k && !strcmp(o->name, name) &&
		    (!table || (o->table && !strcmp(o->table, table))))
			return o;
	}
	return NULL;
}

static int sdiff(const char *a, const char *b)
{
	if (!a || !b)
		return a != b;
	return strcmp(a, b) != 0;
}

/* Quotes a model name; PostgreSQL names outside public are "schema.name". */
static void qname(struct ag *g, struct strbuf *out, const char *name)
{
	const char *dot = g->d->sqlite_style ? NULL : strchr(name, '.');

	if (dot) {
		char *schema = xstrndup(name, (size_t)(dot - name));
		g->to_e->ops->quote_ident(out, schema);
		sb_addch(out, '.');
		free(schema);
		name = dot + 1;
	}
	g->to_e->ops->quote_ident(out, name);
}

static void note(struct ag *g, char sign, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void note(struct ag *g, char sign, const char *fmt, ...)
{
	va_list ap;

	g->changes++;
	if (!g->summary)
		return;
	sb_addf(g->summary, "%c ", sign);
	va_start(ap, fmt);
	sb_vaddf(g->summary, fmt, ap);
	va_end(ap);
	sb_addch(g->summary, '\n');
}

static void warn(struct ag *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(struct ag *g, const char *fmt, ...)
{
	va_list ap;

	if (!g->summary)
		return;
	va_start(ap, fmt);
	sb_vaddf(g->warn, fmt, ap);
	va_end(ap);
	sb_addch(g->warn, '\n');
}

/* Appends a definition that is a whole statement, with one ';'. */
static void add_stmt(struct strbuf *sql, const char *def)
{
	size_t n = strlen(def);

	while (n && (def[n - 1] == ';' || def[n - 1] == ' ' || def[n - 1] == '\n'))
		n--;
	sb_add(sql, def, n);
	sb_adds(sql, ";\n");
}

static int is_rebuilt(struct ag *g, const char *table)
{
	for (size_t i = 0; i < g->n_rebuilt; i++)
		if (!strcmp(g->rebuilt[i], table))
			return 1;
	return 0;
}

/* PostgreSQL: an index that backs a constraint comes with the constraint. */
static int constraint_index(const struct schema_model *m, const struct schema_obj *ix)
{
	return find(m, SOBJ_CONSTRAINT, ix->table, ix->name) != NULL;
}

static int is_fk_or_check(const char *def)
{
	return def && (!strncmp(def, "FOREIGN KEY", 11) || !strncmp(def, "CHECK", 5));
}

/* A constant SQLite accepts as ADD COLUMN's default. */
static int literal_default(const char *d)
{
	return !d || d[0] == '\'' || (d[0] >= '0' && d[0] <= '9') || d[0] == '-' ||
	       !strcasecmp(d, "NULL") || !strcasecmp(d, "TRUE") || !strcasecmp(d, "FALSE");
}

static void column_def(struct ag *g, struct strbuf *sql, const struct schema_obj *c)
{
	qname(g, sql, c->name);
	if (c->type && *c->type)
		sb_addf(sql, " %s", c->type);
	if (c->dflt && !strncmp(c->dflt, "generated ", 10))
		sb_addf(sql, " %s", c->dflt);
	else if (c->dflt)
		sb_addf(sql, " DEFAULT %s", c->dflt);
	if (c->notnull)
		sb_adds(sql, " NOT NULL");
}

/* ---- SQLite ----------------------------------------------------------------- */

static int sqlite_table_ddl(struct ag *g, const char *table, struct strbuf *out,
			    struct sm_error *err)
{
	const char *p[] = { table };
	char *sql = NULL;

	if (engine_scalar(g->to_e, "SELECT sql FROM sqlite_master WHERE type = 'table' AND "
			  "name = $1", 1, p, &sql, err) < 0)
		return -1;
	if (!sql)
		return err_set(err, ERR_FAIL, "table '%s' has no CREATE TABLE text", table);
	sb_adds(out, sql);
	free(sql);
	return 0;
}

static int sqlite_scratch_open(struct engine *live, struct engine **out, struct sm_error *err)
{
	struct db_url url = DB_URL_INIT;
	struct strbuf path = STRBUF_INIT;
	const char *tmp = getenv("TMPDIR");
	int fd, ret;

	(void)live;
	sb_addf(&path, "%s/sm-autogen-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	fd = mkstemp(path.buf);
	if (fd < 0) {
		ret = err_sys(err, "cannot create a scratch database in '%s'",
			      tmp && *tmp ? tmp : "/tmp");
		sb_release(&path);
		return ret;
	}
	close(fd);
	url.scheme = xstrdup("sqlite");
	url.path = sb_detach(&path);
	url.redacted = xstrdup(url.path);
	ret = engine_open(out, &url, ENGINE_CREATE, err);
	if (ret < 0)
		unlink(url.path);
	url_release(&url);
	return ret;
}

static void sqlite_scratch_close(struct engine *live, struct engine *scratch)
{
	char *path = xstrdup(scratch->url.path);

	(void)live;
	engine_close(scratch);
	unlink(path);
	free(path);
}

/* ---- PostgreSQL --------------------------------------------------------------- */

/* The columns in the desired schema's order, not the model's (by name):
 * SELECT * and INSERT without a column list follow it. */
static int pg_table_ddl(struct ag *g, const char *table, struct strbuf *out,
			struct sm_error *err)
{
	const struct schema_obj **cols;
	size_t n = schema_table_columns(g->to, table, &cols);

	(void)err;
	sb_adds(out, "CREATE TABLE ");
	qname(g, out, table);
	sb_adds(out, " (");
	for (size_t i = 0; i < n; i++) {
		sb_adds(out, i ? ",\n    " : "\n    ");
		column_def(g, out, cols[i]);
	}
	sb_adds(out, "\n)");
	free(cols);
	return 0;
}

/* live's connection string pointed at database name. */
static void pg_url_for(const struct db_url *live, const char *name, struct db_url *out)
{
	struct strbuf sb = STRBUF_INIT;
	const char *ci = live->conninfo;

	if (!strncmp(ci, "postgresql://", 13) || !strncmp(ci, "postgres://", 11)) {
		const char *auth = strstr(ci, "://") + 3;
		const char *slash = strchr(auth, '/'), *q = strchr(auth, '?');

		if (slash && q && slash > q)
			slash = NULL;
		if (slash)
			sb_add(&sb, ci, (size_t)(slash - ci));
		else
			sb_add(&sb, ci, q ? (size_t)(q - ci) : strlen(ci));
		sb_addf(&sb, "/%s", name);
		if (q)
			sb_adds(&sb, q);
	} else {
		sb_addf(&sb, "%s dbname=%s", ci, name); /* the last dbname wins */
	}
	out->scheme = xstrdup("postgresql");
	out->conninfo = sb_detach(&sb);
	out->redacted = url_redact(out->conninfo);
}

static void pg_drop_db(struct engine *live, const char *name)
{
	struct strbuf sql = STRBUF_INIT;
	struct sm_error ignored = SM_ERROR_INIT;

	sb_adds(&sql, "DROP DATABASE IF EXISTS ");
	live->ops->quote_ident(&sql, name);
	engine_exec(live, sql.buf, &ignored);
	err_clear(&ignored);
	sb_release(&sql);
}

static int pg_scratch_open(struct engine *live, struct engine **out, struct sm_error *err)
{
	char name[64];
	struct strbuf sql = STRBUF_INIT;
	struct db_url url = DB_URL_INIT;
	int ret;

	/* pid and time: two runs on one server never share a name */
	snprintf(name, sizeof(name), "sm_autogen_%ld_%ld", (long)getpid(), (long)time(NULL));
	sb_adds(&sql, "CREATE DATABASE ");
	live->ops->quote_ident(&sql, name);
	sb_adds(&sql, " TEMPLATE template0");
	ret = engine_exec(live, sql.buf, err);
	sb_release(&sql);
	if (ret < 0)
		return err_prefix(err, "cannot create the scratch database '%s' (the user needs "
				  "CREATEDB)", name);
	pg_url_for(&live->url, name, &url);
	ret = engine_open(out, &url, 0, err);
	url_release(&url);
	if (ret < 0)
		pg_drop_db(live, name);
	return ret;
}

static void pg_scratch_close(struct engine *live, struct engine *scratch)
{
	struct sm_error ignored = SM_ERROR_INIT;
	char *name = NULL;

	if (engine_scalar(scratch, "SELECT current_database()", 0, NULL, &name, &ignored) < 0 ||
	    !name || strncmp(name, "sm_autogen_", 11)) {
		engine_close(scratch); /* never drop a database we did not make */
		free(name);
		return;
	}
	engine_close(scratch);
	pg_drop_db(live, name);
	free(name);
}

static const struct ag_driver drivers[] = {
	{ "sqlite", 1, sqlite_table_ddl, sqlite_scratch_open, sqlite_scratch_close,
	  "SELECT name FROM sqlite_master WHERE type = 'view' ORDER BY rowid" },
	{ "postgresql", 0, pg_table_ddl, pg_scratch_open, pg_scratch_close,
	  "SELECT CASE WHEN n.nspname = 'public' THEN c.relname::text ELSE n.nspname || '.' || "
	  "c.relname END FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE "
	  "c.relkind IN ('v', 'm') AND n.oid IN " PG_USER_NSP " ORDER BY c.oid" },
};

static const struct ag_driver *driver_for(struct engine *e, struct sm_error *err)
{
	for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++)
		if (!strcmp(drivers[i].engine, e->ops->name))
			return &drivers[i];
	err_set(err, ERR_FAIL, "create --from-schema does not support %s databases",
		e->ops->display_name);
	return NULL;
}

int autogen_scratch_open(struct engine *live, struct engine **scratch, struct sm_error *err)
{
	const struct ag_driver *d = driver_for(live, err);

	*scratch = NULL;
	return d ? d->scratch_open(live, scratch, err) : -1;
}

void autogen_scratch_close(struct engine *live, struct engine *scratch)
{
	struct sm_error ignored = SM_ERROR_INIT;
	const struct ag_driver *d;

	if (!live || !scratch)
		return; /* nothing was opened (e.g. the schema file was missing) */
	d = driver_for(live, &ignored);
	if (d)
		d->scratch_close(live, scratch);
}

/* ---- the generator ------------------------------------------------------------- */

/* Is object o of from missing from to, or different there? */
static int gone_or_changed(const struct schema_obj *o, const struct schema_model *to)
{
	const struct schema_obj *x = find(to, o->kind, o->table, o->name);

	return !x || sdiff(o->def, x->def);
}

static int in_table_set(const struct schema_model *m, const char *table)
{
	return find(m, SOBJ_TABLE, NULL, table) != NULL;
}

/* SQLite: does table t (in both) need a rebuild?  Notes the column changes. */
static int column_changes(struct ag *g, const char *t)
{
	int rebuild = 0;

	for (size_t i = 0; i < g->from->n; i++) {
		const struct schema_obj *c = &g->from->items[i], *x;
		if (c->kind != SOBJ_COLUMN || strcmp(c->table, t))
			continue;
		x = find(g->to, SOBJ_COLUMN, t, c->name);
		if (!x) {
			note(g, '-', "drop column %s.%s", t, c->name);
			warn(g, "DESTRUCTIVE: drops column %s.%s and its data", t, c->name);
			rebuild = 1;
			continue;
		}
		if (sdiff(c->type, x->type)) {
			note(g, '~', "column %s.%s type %s -> %s", t, c->name, c->type, x->type);
			warn(g, "type change of %s.%s may lose data if the new type is narrower", t,
			     c->name);
			rebuild = 1;
		}
		if (c->notnull != x->notnull) {
			note(g, '~', x->notnull ? "column %s.%s set NOT NULL" :
			     "column %s.%s drop NOT NULL", t, c->name);
			rebuild = 1;
		}
		if (sdiff(c->dflt, x->dflt)) {
			note(g, '~', "column %s.%s default %s -> %s", t, c->name, c->dflt ? c->dflt : "none",
			     x->dflt ? x->dflt : "none");
			rebuild = 1;
		}
	}
	for (size_t i = 0; i < g->to->n; i++) {
		const struct schema_obj *c = &g->to->items[i];
		if (c->kind != SOBJ_COLUMN || strcmp(c->table, t) ||
		    find(g->from, SOBJ_COLUMN, t, c->name))
			continue;
		note(g, '+', "add column %s.%s", t, c->name);
		if ((c->notnull && !c->dflt) || !literal_default(c->dflt))
			rebuild = 1;
	}
	return rebuild;
}

static int constraint_changes(struct ag *g, const char *t)
{
	int n = 0;

	for (size_t i = 0; i < g->from->n; i++) {
		const struct schema_obj *c = &g->from->items[i];
		if (c->kind == SOBJ_CONSTRAINT && !strcmp(c->table, t) && gone_or_changed(c, g->to)) {
			note(g, find(g->to, c->kind, t, c->name) ? '~' : '-', "constraint %s on %s",
			     c->name, t);
			n++;
		}
	}
	for (size_t i = 0; i < g->to->n; i++) {
		const struct schema_obj *c = &g->to->items[i];
		if (c->kind == SOBJ_CONSTRAINT && !strcmp(c->table, t) &&
		    !find(g->from, c->kind, t, c->name)) {
			note(g, '+', "constraint %s on %s", c->name, t);
			n++;
		}
	}
	return n;
}

static void add_index_or_trigger(struct ag *g, const struct schema_obj *o, int concurrently)
{
	if (concurrently && o->kind == SOBJ_INDEX) {
		const char *p = strstr(o->def, "INDEX ");
		if (p) {
			sb_add(g->csql, o->def, (size_t)(p - o->def) + 6);
			sb_adds(g->csql, "CONCURRENTLY ");
			add_stmt(g->csql, p + 6);
			return;
		}
	}
	add_stmt(g->sql, o->def);
}

static int sqlite_rebuild(struct ag *g, const char *t, struct sm_error *err)
{
	struct strbuf ddl = STRBUF_INIT, tmp = STRBUF_INIT, cols = STRBUF_INIT, vals = STRBUF_INIT;
	const char *paren;
	int first = 1;

	if (g->d->table_ddl(g, t, &ddl, err) < 0)
		goto fail;
	paren = strchr(ddl.buf, '(');
	if (!paren) {
		err_set(err, ERR_FAIL, "cannot read the CREATE TABLE text of '%s'", t);
		goto fail;
	}
	sb_addf(&tmp, "new_%s", t);
	sb_addf(g->sql, "-- rebuild table %s (SQLite cannot ALTER this change)\n", t);
	sb_adds(g->sql, "CREATE TABLE ");
	qname(g, g->sql, tmp.buf);
	sb_addch(g->sql, ' ');
	add_stmt(g->sql, paren);
	for (size_t i = 0; i < g->to->n; i++) {
		const struct schema_obj *c = &g->to->items[i], *f;
		if (c->kind != SOBJ_COLUMN || strcmp(c->table, t) ||
		    !(f = find(g->from, SOBJ_COLUMN, t, c->name)))
			continue;
		if (!first) {
			sb_adds(&cols, ", ");
			sb_adds(&vals, ", ");
		}
		qname(g, &cols, c->name);
		/* a column becoming NOT NULL with a default: NULLs take the default */
		if (c->notnull && !f->notnull && c->dflt) {
			sb_adds(&vals, "coalesce(");
			qname(g, &vals, c->name);
			sb_addf(&vals, ", %s)", c->dflt);
		} else {
			qname(g, &vals, c->name);
		}
		first = 0;
	}
	sb_adds(g->sql, "INSERT INTO ");
	qname(g, g->sql, tmp.buf);
	sb_addf(g->sql, " (%s) SELECT %s FROM ", cols.buf, vals.buf);
	qname(g, g->sql, t);
	sb_adds(g->sql, ";\n-- safe-migrate:ignore drop-table,update-or-delete-without-where\n"
		"DROP TABLE ");
	qname(g, g->sql, t);
	sb_adds(g->sql, ";\nALTER TABLE ");
	qname(g, g->sql, tmp.buf);
	sb_adds(g->sql, " RENAME TO ");
	qname(g, g->sql, t);
	sb_adds(g->sql, ";\n");
	for (size_t i = 0; i < g->to->n; i++) {
		const struct schema_obj *o = &g->to->items[i];
		if ((o->kind == SOBJ_INDEX || o->kind == SOBJ_TRIGGER) && !strcmp(o->table, t))
			add_stmt(g->sql, o->def);
	}
	sb_release(&ddl);
	sb_release(&tmp);
	sb_release(&cols);
	sb_release(&vals);
	return 0;
fail:
	sb_release(&ddl);
	sb_release(&tmp);
	sb_release(&cols);
	sb_release(&vals);
	return -1;
}

/* PostgreSQL: ALTER TABLE for the columns of t (in both). */
static void pg_alter_columns(struct ag *g, const char *t)
{
	for (size_t i = 0; i < g->from->n; i++) {
		const struct schema_obj *c = &g->from->items[i], *x;
		if (c->kind != SOBJ_COLUMN || strcmp(c->table, t))
			continue;
		x = find(g->to, SOBJ_COLUMN, t, c->name);
		if (!x) {
			sb_adds(g->sql, "ALTER TABLE ");
			qname(g, g->sql, t);
			sb_adds(g->sql, " DROP COLUMN ");
			qname(g, g->sql, c->name);
			sb_adds(g->sql, ";\n");
			continue;
		}
		if (sdiff(c->dflt, x->dflt) &&
		    ((c->dflt && !strncmp(c->dflt, "generated ", 10)) ||
		     (x->dflt && !strncmp(x->dflt, "generated ", 10)))) {
			warn(g, "NOT GENERATED: identity/generated column %s.%s changed; write this "
			     "change by hand", t, c->name);
			continue;
		}
		if (sdiff(c->dflt, x->dflt) && c->dflt) {
			sb_adds(g->sql, "ALTER TABLE ");
			qname(g, g->sql, t);
			sb_adds(g->sql, " ALTER COLUMN ");
			qname(g, g->sql, c->name);
			sb_adds(g->sql, " DROP DEFAULT;\n");
		}
		if (sdiff(c->type, x->type)) {
			sb_adds(g->sql, "ALTER TABLE ");
			qname(g, g->sql, t);
			sb_adds(g->sql, " ALTER COLUMN ");
			qname(g, g->sql, c->name);
			sb_addf(g->sql, " TYPE %s USING ", x->type);
			qname(g, g->sql, c->name);
			sb_addf(g->sql, "::%s;\n", x->type);
		}
		if (x->notnull && !c->notnull && x->dflt) {
			/* NULLs take the new default, as on SQLite */
			sb_adds(g->sql, "UPDATE ");
			qname(g, g->sql, t);
			sb_adds(g->sql, " SET ");
			qname(g, g->sql, c->name);
			sb_addf(g->sql, " = %s WHERE ", x->dflt);
			qname(g, g->sql, c->name);
			sb_adds(g->sql, " IS NULL;\n");
		}
		if (c->notnull != x->notnull) {
			sb_adds(g->sql, "ALTER TABLE ");
			qname(g, g->sql, t);
			sb_adds(g->sql, " ALTER COLUMN ");
			qname(g, g->sql, c->name);
			sb_addf(g->sql, " %s NOT NULL;\n", x->notnull ? "SET" : "DROP");
		}
		if (sdiff(c->dflt, x->dflt) && x->dflt) {
			sb_adds(g->sql, "ALTER TABLE ");
			qname(g, g->sql, t);
			sb_adds(g->sql, " ALTER COLUMN ");
			qname(g, g->sql, c->name);
			sb_addf(g->sql, " SET DEFAULT %s;\n", x->dflt);
		}
	}
}

/* New columns of table t, added in the desired schema's order (each goes
 * last). */
static void add_columns(struct ag *g, const char *t)
{
	const struct schema_obj **cols;
	size_t n = schema_table_columns(g->to, t, &cols);

	for (size_t i = 0; i < n; i++) {
		const struct schema_obj *c = cols[i];
		if (find(g->from, SOBJ_COLUMN, t, c->name))
			continue;
		sb_adds(g->sql, "ALTER TABLE ");
		qname(g, g->sql, t);
		sb_adds(g->sql, " ADD COLUMN ");
		column_def(g, g->sql, c);
		sb_adds(g->sql, ";\n");
	}
	free(cols);
}

static void pg_drop_constraint(struct ag *g, const struct schema_obj *c)
{
	sb_adds(g->sql, "ALTER TABLE ");
	qname(g, g->sql, c->table);
	sb_adds(g->sql, " DROP CONSTRAINT ");
	qname(g, g->sql, c->name);
	sb_adds(g->sql, ";\n");
}

static void pg_add_constraint(struct ag *g, const struct schema_obj *c, int existing)
{
	int nv = existing && is_fk_or_check(c->def);

	sb_adds(g->sql, "ALTER TABLE ");
	qname(g, g->sql, c->table);
	sb_adds(g->sql, " ADD CONSTRAINT ");
	qname(g, g->sql, c->name);
	sb_addf(g->sql, " %s%s;\n", c->def, nv ? " NOT VALID" : "");
	if (nv) {
		sb_adds(g->sql, "ALTER TABLE ");
		qname(g, g->sql, c->table);
		sb_adds(g->sql, " VALIDATE CONSTRAINT ");
		qname(g, g->sql, c->name);
		sb_adds(g->sql, ";\n");
	}
}

static void drop_named(struct ag *g, const char *what, const char *name, const char *suffix)
{
	sb_addf(g->sql, "DROP %s ", what);
	qname(g, g->sql, name);
	sb_addf(g->sql, "%s;\n", suffix);
}

static void create_view(struct ag *g, const struct schema_obj *v)
{
	if (g->d->sqlite_style) {
		add_stmt(g->sql, v->def);
		return;
	}
	if (!strncmp(v->def, "MATERIALIZED ", 13)) {
		sb_adds(g->sql, "CREATE MATERIALIZED VIEW ");
		qname(g, g->sql, v->name);
		sb_adds(g->sql, " AS ");
		add_stmt(g->sql, v->def + 13);
	} else {
		sb_adds(g->sql, "CREATE VIEW ");
		qname(g, g->sql, v->name);
		sb_adds(g->sql, " AS ");
		add_stmt(g->sql, v->def);
	}
}

static void drop_view(struct ag *g, const struct schema_obj *v)
{
	int mat = !g->d->sqlite_style && !strncmp(v->def, "MATERIALIZED ", 13);

	if (g->d->sqlite_style)
		sb_adds(g->sql, "-- safe-migrate:ignore update-or-delete-without-where\n");
	drop_named(g, mat ? "MATERIALIZED VIEW" : "VIEW", v->name, "");
}

/* PostgreSQL enum labels of "ENUM ('a', 'b')" (quote_literal form). */
static size_t enum_labels(const char *def, char ***out)
{
	size_t n = 0, alloc = 0;
	char **v = NULL;
	const char *p = strchr(def, '(');

	while (p && (p = strchr(p, '\'')) != NULL) {
		struct strbuf sb = STRBUF_INIT;
		for (p++; *p; p++) {
			if (*p == '\'' && p[1] == '\'') {
				sb_addch(&sb, '\'');
				p++;
			} else if (*p == '\'') {
				p++;
				break;
			} else {
				sb_addch(&sb, *p);
			}
		}
		ALLOC_GROW(v, n + 1, alloc);
		v[n++] = sb_detach(&sb);
	}
	*out = v;
	return n;
}

static void free_labels(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void create_type(struct ag *g, const struct schema_obj *t)
{
	sb_adds(g->sql, !strncmp(t->def, "DOMAIN ", 7) ? "CREATE DOMAIN " : "CREATE TYPE ");
	qname(g, g->sql, t->name);
	if (!strncmp(t->def, "ENUM ", 5))
		sb_addf(g->sql, " AS %s;\n", t->def);
	else if (!strncmp(t->def, "DOMAIN ", 7))
		sb_addf(g->sql, " AS %s;\n", t->def + 7);
	else if (!strncmp(t->def, "COMPOSITE ", 10))
		sb_addf(g->sql, " AS %s;\n", t->def + 10);
	else
		sb_addf(g->sql, " AS RANGE (subtype = %s);\n", t->def + 9);
}

/* PostgreSQL cannot drop enum values: the type is renamed, created anew,
 * every column using it is converted through text, and the old one dropped.
 * Fails if a row holds a value that goes. */
static void recreate_enum(struct ag *g, const struct schema_obj *f, const struct schema_obj *t)
{
	struct strbuf old = STRBUF_INIT;

	warn(g, "enum %s loses values: the type is recreated, which fails if a row uses one",
	     t->name);
	sb_addf(&old, "%s__sm_old", t->name);
	sb_adds(g->sql, "ALTER TYPE ");
	qname(g, g->sql, t->name);
	sb_adds(g->sql, " RENAME TO ");
	g->to_e->ops->quote_ident(g->sql, strchr(old.buf, '.') ? strchr(old.buf, '.') + 1 :
				  old.buf);
	sb_adds(g->sql, ";\n");
	create_type(g, t);
	for (size_t i = 0; i < g->from->n; i++) {
		const struct schema_obj *c = &g->from->items[i];
		if (c->kind != SOBJ_COLUMN || !c->type || strcmp(c->type, f->name))
			continue;
		if (c->dflt) {
			sb_adds(g->sql, "ALTER TABLE ");
			qname(g, g->sql, c->table);
			sb_adds(g->sql, " ALTER COLUMN ");
			qname(g, g->sql, c->name);
			sb_adds(g->sql, " DROP DEFAULT;\n");
		}
		sb_adds(g->sql, "ALTER TABLE ");
		qname(g, g->sql, c->table);
		sb_adds(g->sql, " ALTER COLUMN ");
		qname(g, g->sql, c->name);
		sb_adds(g->sql, " TYPE ");
		qname(g, g->sql, t->name);
		sb_adds(g->sql, " USING ");
		qname(g, g->sql, c->name);
		sb_adds(g->sql, "::text::");
		qname(g, g->sql, t->name);
		sb_adds(g->sql, ";\n");
		if (c->dflt) {
			sb_adds(g->sql, "ALTER TABLE ");
			qname(g, g->sql, c->table);
			sb_adds(g->sql, " ALTER COLUMN ");
			qname(g, g->sql, c->name);
			sb_addf(g->sql, " SET DEFAULT %s;\n", c->dflt);
		}
	}
	sb_adds(g->sql, "DROP TYPE ");
	qname(g, g->sql, old.buf);
	sb_adds(g->sql, ";\n");
	sb_release(&old);
}

/* PostgreSQL: a changed type; only enum values added are generated. */
static void alter_type(struct ag *g, const struct schema_obj *f, const struct schema_obj *t)
{
	char **a = NULL, **b = NULL;
	size_t na = 0, nb = 0, j = 0;
	int ok = !strncmp(f->def, "ENUM ", 5) && !strncmp(t->def, "ENUM ", 5);

	if (ok) {
		na = enum_labels(f->def, &a);
		nb = enum_labels(t->def, &b);
		/* the old labels must appear in order among the new ones */
		for (size_t i = 0; i < nb && j < na; i++)
			if (!strcmp(b[i], a[j]))
				j++;
		ok = j == na;
	}
	if (!ok && !strncmp(f->def, "ENUM ", 5) && !strncmp(t->def, "ENUM ", 5)) {
		recreate_enum(g, f, t);
		goto out;
	}
	if (!ok) {
		warn(g, "NOT GENERATED: type %s changed in a way autogenerate cannot write (only "
		     "enum values are); write it by hand", t->name);
		sb_addf(g->sql, "-- type %s changed: write this change by hand\n", t->name);
		goto out;
	}
	j = 0;
	for (size_t i = 0; i < nb; i++) {
		if (j < na && !strcmp(b[i], a[j])) {
			j++;
			continue;
		}
		sb_adds(g->sql, "ALTER TYPE ");
		qname(g, g->sql, t->name);
		sb_adds(g->sql, " ADD VALUE IF NOT EXISTS ");
		g->to_e->ops->quote_literal(g->sql, b[i]);
		if (i > 0) {
			sb_adds(g->sql, " AFTER ");
			g->to_e->ops->quote_literal(g->sql, b[i - 1]);
		} else if (nb > 1) {
			sb_adds(g->sql, " BEFORE ");
			g->to_e->ops->quote_literal(g->sql, b[1]);
		}
		sb_adds(g->sql, ";\n");
	}
out:
	free_labels(a, na);
	free_labels(b, nb);
}

/* Non-table objects of kind k: create those added or changed (changed ones
 * are dropped first by drop_objects). */
static void create_objects(struct ag *g, enum schema_kind k)
{
	for (size_t i = 0; i < g->to->n; i++) {
		const struct schema_obj *o = &g->to->items[i], *f;
		if (o->kind != k)
			continue;
		f = find(g->from, k, NULL, o->name);
		if (f && !sdiff(f->def, o->def))
			continue;
		if (k == SOBJ_TYPE) {
			note(g, f ? '~' : '+', "type %s", o->name);
			if (f)
				alter_type(g, f, o);
			else
				create_type(g, o);
		} else if (k == SOBJ_SEQUENCE) {
			note(g, f ? '~' : '+', "sequence %s", o->name);
			sb_addf(g->sql, "%s SEQUENCE ", f ? "ALTER" : "CREATE");
			qname(g, g->sql, o->name);
			sb_addf(g->sql, " %s%s;\n", o->def,
				f && !strstr(o->def, " CYCLE") ? " NO CYCLE" : "");
		} else if (k == SOBJ_FUNCTION) {
			note(g, f ? '~' : '+', "function %s", o->name);
			add_stmt(g->sql, o->def); /* CREATE OR REPLACE FUNCTION ... */
		}
	}
}

static void drop_objects(struct ag *g, enum schema_kind k)
{
	for (size_t i = 0; i < g->from->n; i++) {
		const struct schema_obj *o = &g->from->items[i];
		if (o->kind != k || find(g->to, k, NULL, o->name))
			continue;
		note(g, '-', k == SOBJ_TYPE ? "type %s" : k == SOBJ_SEQUENCE ? "sequence %s" :
		     "function %s", o->name);
		if (k == SOBJ_FUNCTION)
			sb_addf(g->sql, "DROP FUNCTION %s;\n", o->name); /* name(args) as read */
		else
			drop_named(g, k == SOBJ_TYPE ? (!strncmp(o->def, "DOMAIN ", 7) ? "DOMAIN" :
			   "TYPE") : "SEQUENCE IF EXISTS", o->name, "");
	}
}

/* Is index ix (of from) one the up direction moved to the CONCURRENTLY
 * section?  Then the down direction leaves it to that section's down. */
static int concurrent_in_up(struct ag *g, const struct schema_obj *ix)
{
	return g->csql == NULL && !g->d->sqlite_style && in_table_set(g->to, ix->table) &&
	       !constraint_index(g->from, ix) && gone_or_changed(ix, g->to);
}

static int type_changes(const struct schema_model *F, const struct schema_model *T)
{
	for (size_t i = 0; i < F->n; i++) {
		const struct schema_obj *o = &F->items[i], *x;
		if (o->kind != SOBJ_COLUMN && o->kind != SOBJ_TYPE)
			continue;
		x = find(T, o->kind, o->table, o->name);
		if (x && (o->kind == SOBJ_COLUMN ? sdiff(o->type, x->type) : sdiff(o->def, x->def)))
			return 1;
	}
	return 0;
}

static int gen(struct ag *g, struct sm_error *err)
{
	const struct schema_model *F = g->from, *T = g->to;
	int sqlite = g->d->sqlite_style, views_all = 0;
	size_t n_drop_tables = 0;
	struct eng_rows vf = ENG_ROWS_INIT, vt = ENG_ROWS_INIT;

	/* which tables in both change */
	for (size_t i = 0; i < F->n; i++) {
		const struct schema_obj *t = &F->items[i];
		int rb, nc;
		if (t->kind != SOBJ_TABLE || !in_table_set(T, t->name))
			continue;
		rb = column_changes(g, t->name);
		nc = constraint_changes(g, t->name);
		if (sqlite && (rb || nc)) {
			ALLOC_GROW(g->rebuilt, g->n_rebuilt + 1, g->alloc_rebuilt);
			g->rebuilt[g->n_rebuilt++] = t->name;
			note(g, '~', "rebuild table %s (SQLite: create, copy, drop, rename)", t->name);
		}
	}
	/* views over a rebuilt table, a column whose type changes or an enum
	 * that is recreated would block the change: drop and recreate them all */
	views_all = sqlite ? g->n_rebuilt > 0 : type_changes(F, T);
	/* a view that goes or changes may have dependents: all go and come back */
	for (size_t i = 0; i < F->n; i++)
		if (F->items[i].kind == SOBJ_VIEW && gone_or_changed(&F->items[i], T))
			views_all = 1;
	/* views that go or change, dependents first (reverse creation order) */
	if (g->from_e->ops->query(g->from_e, g->d->views_sql, 0, NULL, &vf, err) < 0 ||
	    g->to_e->ops->query(g->to_e, g->d->views_sql, 0, NULL, &vt, err) < 0)
		goto fail;
	for (size_t k = vf.nrows; k-- > 0;) {
		const struct schema_obj *o = find(F, SOBJ_VIEW, NULL, rows_get(&vf, k, 0));
		if (o && (views_all || gone_or_changed(o, T))) {
			if (gone_or_changed(o, T))
				note(g, find(T, o->kind, NULL, o->name) ? '~' : '-', "view %s", o->name);
			drop_view(g, o);
		}
	}
	if (!sqlite) {
		create_objects(g, SOBJ_TYPE);
		create_objects(g, SOBJ_SEQUENCE);
		create_objects(g, SOBJ_FUNCTION);
	}
	for (size_t i = 0; i < F->n; i++) {
		const struct schema_obj *o = &F->items[i];
		if ((o->kind != SOBJ_TRIGGER && o->kind != SOBJ_INDEX) ||
		    !in_table_set(T, o->table) || is_rebuilt(g, o->table) ||
		    !gone_or_changed(o, T))
			continue;
		if (o->kind == SOBJ_INDEX && !sqlite && constraint_index(F, o))
			continue;
		note(g, find(T, o->kind, o->table, o->name) ? '~' : '-',
		     o->kind == SOBJ_INDEX ? "index %s on %s" : "trigger %s on %s", o->name,
		     o->table);
		if (o->kind == SOBJ_INDEX && concurrent_in_up(g, o))
			continue;
		if (o->kind == SOBJ_INDEX) {
			drop_named(g, "INDEX", o->name, "");
		} else {
			sb_adds(g->sql, "DROP TRIGGER ");
			qname(g, g->sql, o->name);
			if (!sqlite) {
				sb_adds(g->sql, " ON ");
				qname(g, g->sql, o->table);
			}
			sb_adds(g->sql, ";\n");
		}
	}
	if (!sqlite)
		for (size_t i = 0; i < F->n; i++) {
			const struct schema_obj *c = &F->items[i];
			if (c->kind == SOBJ_CONSTRAINT && in_table_set(T, c->table) &&
			    gone_or_changed(c, T))
				pg_drop_constraint(g, c);
		}
	/* tables that go */
	for (size_t i = 0; i < F->n; i++) {
		const struct schema_obj *t = &F->items[i];
		if (t->kind != SOBJ_TABLE || in_table_set(T, t->name))
			continue;
		note(g, '-', "drop table %s", t->name);
		warn(g, "DESTRUCTIVE: drops table %s and all its rows", t->name);
		if (sqlite) {
			drop_named(g, "TABLE", t->name, "");
			continue;
		}
		sb_adds(g->sql, n_drop_tables++ ? ", " : "DROP TABLE ");
		qname(g, g->sql, t->name);
	}
	if (n_drop_tables)
		sb_adds(g->sql, ";\n");
	/* tables that come */
	for (size_t i = 0; i < T->n; i++) {
		const struct schema_obj *t = &T->items[i];
		if (t->kind != SOBJ_TABLE || in_table_set(F, t->name))
			continue;
		note(g, '+', "add table %s", t->name);
		if (g->d->table_ddl(g, t->name, g->sql, err) < 0)
			goto fail;
		add_stmt(g->sql, "");
	}
	/* tables in both */
	for (size_t i = 0; i < F->n; i++) {
		const struct schema_obj *t = &F->items[i];
		if (t->kind != SOBJ_TABLE || !in_table_set(T, t->name))
			continue;
		if (is_rebuilt(g, t->name)) {
			if (sqlite_rebuild(g, t->name, err) < 0)
				goto fail;
			continue;
		}
		if (!sqlite)
			pg_alter_columns(g, t->name);
		add_columns(g, t->name);
	}
	/* constraints (PostgreSQL): keys first, then foreign keys */
	for (int pass = 0; !sqlite && pass < 2; pass++)
		for (size_t i = 0; i < T->n; i++) {
			const struct schema_obj *c = &T->items[i], *f;
			if (c->kind != SOBJ_CONSTRAINT ||
			    (pass == 0) != (strncmp(c->def, "FOREIGN KEY", 11) != 0))
				continue;
			f = find(F, c->kind, c->table, c->name);
			if (f && !sdiff(f->def, c->def))
				continue;
			pg_add_constraint(g, c, in_table_set(F, c->table));
		}
	/* indexes and triggers that come */
	for (int kind = SOBJ_INDEX; kind <= SOBJ_TRIGGER; kind++)
		for (size_t i = 0; i < T->n; i++) {
			const struct schema_obj *o = &T->items[i], *f;
			int existing;
			if ((int)o->kind != kind || is_rebuilt(g, o->table))
				continue;
			if (o->kind == SOBJ_INDEX && !sqlite && constraint_index(T, o))
				continue;
			f = find(F, o->kind, o->table, o->name);
			if (f && !sdiff(f->def, o->def))
				continue;
			existing = in_table_set(F, o->table);
			if (!f && existing)
				note(g, '+', kind == SOBJ_INDEX ? "index %s on %s" : "trigger %s on %s",
				     o->name, o->table);
			add_index_or_trigger(g, o, existing && g->csql && !sqlite);
		}
	/* views that come, in the order the desired database created them */
	for (size_t k = 0; k < vt.nrows; k++) {
		const struct schema_obj *v = find(T, SOBJ_VIEW, NULL, rows_get(&vt, k, 0)), *f;
		if (!v)
			continue;
		f = find(F, v->kind, NULL, v->name);
		if (f && !sdiff(f->def, v->def) && !views_all)
			continue;
		if (!f)
			note(g, '+', "view %s", v->name);
		create_view(g, v);
	}
	if (!sqlite) {
		drop_objects(g, SOBJ_FUNCTION);
		drop_objects(g, SOBJ_SEQUENCE);
		drop_objects(g, SOBJ_TYPE);
	}
	rows_release(&vf);
	rows_release(&vt);
	return 0;
fail:
	rows_release(&vf);
	rows_release(&vt);
	return -1;
}

/* SQLite: a section with a rebuild runs outside the migration's
 * transaction, with foreign keys off, in a transaction of its own. */
static void wrap_rebuild(struct strbuf *sql)
{
	struct strbuf w = STRBUF_INIT;

	/* legacy_alter_table: the rename must not re-check other tables'
	 * triggers against the schema while the old table is gone */
	sb_adds(&w, "PRAGMA foreign_keys = OFF;\nPRAGMA legacy_alter_table = ON;\nBEGIN;\n");
	sb_add(&w, sql->buf, sql->len);
	sb_adds(&w, "-- fails (\"malformed JSON\") if the rebuild broke a foreign key\n"
		"SELECT CASE WHEN EXISTS (SELECT 1 FROM pragma_foreign_key_check) THEN "
		"json('foreign key violation after the table rebuild') END;\n"
		"COMMIT;\nPRAGMA legacy_alter_table = OFF;\nPRAGMA foreign_keys = ON;\n");
	sb_reset(sql);
	sb_add(sql, w.buf, w.len);
	sb_release(&w);
}

static void rename_hint(struct autogen_result *r)
{
	if (strstr(r->summary.buf, "- drop table") && strstr(r->summary.buf, "+ add table"))
		sb_adds(&r->warnings, "a table is dropped and another added: if this is a rename, "
			"write it by hand (ALTER TABLE ... RENAME TO ...); drop + add loses the "
			"rows\n");
	if (strstr(r->summary.buf, "- drop column") && strstr(r->summary.buf, "+ add column"))
		sb_adds(&r->warnings, "a column is dropped and another added: if this is a rename, "
			"write it by hand (ALTER TABLE ... RENAME COLUMN ...); drop + add loses "
			"the data\n");
}

int autogen_diff(struct engine *live, struct engine *desired, struct autogen_result *r,
		 struct sm_error *err)
{
	struct schema_model lm = SCHEMA_MODEL_INIT, dm = SCHEMA_MODEL_INIT;
	struct ag up = { 0 }, down = { 0 };
	int ret = -1;

	up.d = down.d = driver_for(live, err);
	if (!up.d)
		return -1;
	if (schema_load(live, &lm, err) < 0 || schema_load(desired, &dm, err) < 0)
		goto out;
	up.to_e = desired;
	up.from_e = live;
	up.from = &lm;
	up.to = &dm;
	up.sql = &r->up;
	up.csql = &r->cup;
	up.summary = &r->summary;
	up.warn = &r->warnings;
	if (gen(&up, err) < 0)
		goto out;
	down.to_e = live;
	down.from_e = desired;
	down.from = &dm;
	down.to = &lm;
	down.sql = &r->down;
	down.warn = &r->warnings;
	if (gen(&down, err) < 0)
		goto out;
	/* the CONCURRENTLY section's down drops what its up creates */
	for (size_t i = 0; r->cup.len && i < dm.n; i++)
		if (dm.items[i].kind == SOBJ_INDEX && concurrent_in_up(&down, &dm.items[i])) {
			sb_adds(&r->cdown, "DROP INDEX CONCURRENTLY IF EXISTS ");
			qname(&down, &r->cdown, dm.items[i].name);
			sb_adds(&r->cdown, ";\n");
		}
	if (up.n_rebuilt) {
		wrap_rebuild(&r->up);
		r->up_no_tx = 1;
	}
	if (down.n_rebuilt) {
		wrap_rebuild(&r->down);
		r->down_no_tx = 1;
	}
	r->n_changes = up.changes;
	rename_hint(r);
	ret = 0;
out:
	free(up.rebuilt);
	free(down.rebuilt);
	schema_release(&lm);
	schema_release(&dm);
	return ret;
}
