/*
 * safety_pg: the PostgreSQL driver of safety/ (see safety_driver.h),
 * written against the engine interface: schema introspection from the
 * catalogs (definitions rendered by the server's own pg_get_*def functions),
 * invalid indexes and NOT VALID constraints, pg_database_size as the
 * snapshot estimate, and long transactions holding locks on the tables the
 * pending migrations touch (pg_locks joined with pg_stat_activity).
 *
 * Objects in schemas other than "public" are named "schema.object"; system
 * schemas and objects that belong to extensions are left out.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_pg.h"
#include "safety_driver.h"
#include "xalloc.h"

/* Qualified name of pg_class row c in namespace n. */
#define QN(c) "CASE WHEN n.nspname = 'public' THEN " c ".relname::text " \
	      "ELSE n.nspname || '.' || " c ".relname END"
/* Qualified name of an object named by column col in namespace n. */
#define QNAME(col) "CASE WHEN n.nspname = 'public' THEN " col "::text " \
		   "ELSE n.nspname || '.' || " col " END"
#define USER_NS "n.oid IN " PG_USER_NSP
/* User objects only: no system schema, no extension member. */
#define USER_REL(c) USER_NS " AND NOT EXISTS (SELECT 1 FROM pg_depend dep " \
	"WHERE dep.classid = 'pg_class'::regclass AND dep.objid = " c ".oid " \
	"AND dep.deptype = 'e') AND " c ".relname NOT LIKE 'safe\\_migrate\\_%'"

static int is_true(const char *v)
{
	return v && (!strcmp(v, "t") || !strcmp(v, "true") || !strcmp(v, "1"));
}

/* Columns, with their type, nullability, default (identity and generated
 * columns described as such) and position (attnum counts dropped columns:
 * the place among the others is what SELECT * shows, and what a restore or
 * a copy elsewhere gives them). */
static int load_columns(struct engine *e, struct schema_model *m, struct sm_error *err)
{
	struct eng_rows r = ENG_ROWS_INIT;

	if (e->ops->query(e, "SELECT " QN("c") ", a.attname, format_type(a.atttypid, a.atttypmod), "
			  "a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity, "
			  "a.attgenerated, row_number() OVER (PARTITION BY a.attrelid ORDER BY "
			  "a.attnum) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
			  "JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_attrdef d "
			  "ON d.adrelid = a.attrelid AND d.adnum = a.attnum WHERE c.relkind IN "
			  "('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped AND " USER_REL("c"),
			  0, NULL, &r, err) < 0)
		return -1;
	for (size_t i = 0; i < r.nrows; i++) {
		struct schema_obj *o = schema_add(m, SOBJ_COLUMN, rows_get(&r, i, 0),
						  rows_get(&r, i, 1), NULL);
		const char *dflt = rows_get(&r, i, 4), *ident = rows_get(&r, i, 5),
			   *gen = rows_get(&r, i, 6);
		struct strbuf d = STRBUF_INIT;

		o->type = xstrdup(rows_get(&r, i, 2));
		o->notnull = is_true(rows_get(&r, i, 3));
		o->position = (int)strtol(rows_get(&r, i, 7), NULL, 10);
		if (ident && *ident)
			sb_addf(&d, "generated %s as identity",
				!strcmp(ident, "a") ? "always" : "by default");
		else if (gen && *gen && dflt)
			sb_addf(&d, "generated always as (%s) stored", dflt);
		else if (dflt)
			sb_adds(&d, dflt);
		o->dflt = d.len ? sb_detach(&d) : NULL;
		sb_release(&d);
	}
	rows_release(&r);
	return 0;
}

/*
 * The other kinds of object, one catalog query each.  Each row holds, in
 * order: the owning table if with_table, the object's name, its definition
 * if with_def, and whether it is valid if with_validity.
 */
static const struct catalog_query {
	enum schema_kind kind;
	int with_table, with_def, with_validity;
	const char *sql;
} catalog_queries[] = {
	{ SOBJ_TABLE, 0, 0, 0,
	  "SELECT " QN("c") " FROM pg_class c JOIN pg_namespace n ON "
	  "n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND " USER_REL("c") },
	{ SOBJ_CONSTRAINT, 1, 1, 1,
	  "SELECT " QN("c") ", co.conname, pg_get_constraintdef(co.oid), "
	  "co.convalidated FROM pg_constraint co JOIN pg_class c ON c.oid = "
	  "co.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE "
	  "co.contype IN ('p', 'u', 'f', 'c', 'x') AND " USER_REL("c") },
	{ SOBJ_INDEX, 1, 1, 1,
	  "SELECT " QN("c") ", ic.relname, pg_get_indexdef(i.indexrelid), "
	  "i.indisvalid FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
	  "JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = "
	  "c.relnamespace WHERE " USER_REL("c") },
	{ SOBJ_VIEW, 0, 1, 0,
	  "SELECT " QN("c") ", CASE c.relkind WHEN 'm' THEN 'MATERIALIZED ' "
	  "ELSE '' END || pg_get_viewdef(c.oid, true) FROM pg_class c JOIN "
	  "pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('v', 'm') "
	  "AND " USER_REL("c") },
	{ SOBJ_TRIGGER, 1, 1, 0,
	  "SELECT " QN("c") ", t.tgname, pg_get_triggerdef(t.oid, true) FROM "
	  "pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n "
	  "ON n.oid = c.relnamespace WHERE NOT t.tgisinternal AND " USER_REL("c") },
	{ SOBJ_SEQUENCE, 0, 1, 0,
	  "SELECT " QN("c") ", format('AS %s INCREMENT BY %s MINVALUE %s "
	  "MAXVALUE %s START WITH %s%s', s.seqtypid::regtype, s.seqincrement, "
	  "s.seqmin, s.seqmax, s.seqstart, CASE WHEN s.seqcycle THEN ' CYCLE' "
	  "ELSE '' END) FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid "
	  "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE " USER_REL("c") },
	{ SOBJ_TYPE, 0, 1, 0,
	  "SELECT " QNAME("t.typname") ", CASE t.typtype "
	  "WHEN 'e' THEN 'ENUM (' || coalesce((SELECT string_agg(quote_literal("
	  "en.enumlabel), ', ' ORDER BY en.enumsortorder) FROM pg_enum en WHERE "
	  "en.enumtypid = t.oid), '') || ')' "
	  "WHEN 'd' THEN 'DOMAIN ' || format_type(t.typbasetype, t.typtypmod) || "
	  "CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END || coalesce(' DEFAULT ' "
	  "|| t.typdefault, '') || coalesce((SELECT ' ' || string_agg("
	  "pg_get_constraintdef(co.oid), ' ' ORDER BY co.conname) FROM pg_constraint co "
	  "WHERE co.contypid = t.oid), '') "
	  "WHEN 'c' THEN 'COMPOSITE (' || coalesce((SELECT string_agg(quote_ident("
	  "a.attname) || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY "
	  "a.attnum) FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 "
	  "AND NOT a.attisdropped), '') || ')' "
	  "ELSE 'RANGE OF ' || (SELECT format_type(rg.rngsubtype, NULL) FROM pg_range "
	  "rg WHERE rg.rngtypid = t.oid) END "
	  "FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
	  "WHERE t.typtype IN ('e', 'd', 'c', 'r') AND (t.typtype <> 'c' OR (SELECT "
	  "c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c') AND "
	  USER_NS " AND NOT EXISTS (SELECT 1 FROM pg_depend dep WHERE dep.classid = "
	  "'pg_type'::regclass AND dep.objid = t.oid AND dep.deptype = 'e')" },
	{ SOBJ_FUNCTION, 0, 1, 0,
	  "SELECT " QNAME("p.proname") " || '(' || "
	  "pg_get_function_identity_arguments(p.oid) || ')', "
	  "pg_get_functiondef(p.oid) FROM pg_proc p JOIN pg_namespace n ON "
	  "n.oid = p.pronamespace WHERE p.prokind IN ('f', 'p') AND " USER_NS
	  " AND NOT EXISTS (SELECT 1 FROM pg_depend dep WHERE dep.classid = "
	  "'pg_proc'::regclass AND dep.objid = p.oid AND dep.deptype = 'e')" },
};

/* prev is not used: the catalog queries read every object at once. */
static int pg_schema_load(struct engine *e, const struct schema_model *prev,
			  struct schema_model *m, struct sm_error *err)
{
	(void)prev;
	if (load_columns(e, m, err) < 0)
		return -1;
	for (size_t q = 0; q < sizeof(catalog_queries) / sizeof(catalog_queries[0]); q++) {
		const struct catalog_query *cq = &catalog_queries[q];
		struct eng_rows r = ENG_ROWS_INIT;

		if (e->ops->query(e, cq->sql, 0, NULL, &r, err) < 0)
			return -1;
		for (size_t i = 0; i < r.nrows; i++) {
			size_t col = 0;
			const char *table = cq->with_table ? rows_get(&r, i, col++) : NULL;
			const char *name = rows_get(&r, i, col++);
			const char *def = cq->with_def ? rows_get(&r, i, col++) : NULL;
			struct schema_obj *o = schema_add(m, cq->kind, table, name, def);

			if (cq->with_validity)
				o->invalid = !is_true(rows_get(&r, i, col));
		}
		rows_release(&r);
	}
	return 0;
}

static const char invalid_indexes_sql[] =
	"SELECT " QN("c") ", ic.relname FROM pg_index i JOIN pg_class ic ON ic.oid = "
	"i.indexrelid JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = "
	"c.relnamespace WHERE NOT i.indisvalid AND " USER_REL("c") " ORDER BY 1, 2";

static const char invalid_index_hint[] =
	"an invalid index is left by a failed CREATE INDEX CONCURRENTLY: drop it (DROP INDEX "
	"CONCURRENTLY) and create it again, or REINDEX INDEX CONCURRENTLY";

static int add_invalid_indexes(struct engine *e, const char *check, enum level lv,
			       struct finding_list *out, size_t *n, struct sm_error *err)
{
	struct eng_rows r = ENG_ROWS_INIT;

	if (e->ops->query(e, invalid_indexes_sql, 0, NULL, &r, err) < 0)
		return -1;
	for (size_t i = 0; i < r.nrows; i++)
		finding_add(out, FINDING_CHECK, check, lv, invalid_index_hint, NULL, 0,
			    "index '%s' on table '%s' is invalid", rows_get(&r, i, 1),
			    rows_get(&r, i, 0));
	*n = r.nrows;
	rows_release(&r);
	return 0;
}

static int pg_integrity(struct engine *e, struct finding_list *out, struct sm_error *err)
{
	struct eng_rows r = ENG_ROWS_INIT;
	size_t n;

	if (add_invalid_indexes(e, "invalid-index", LEVEL_FAIL, out, &n, err) < 0)
		return -1;
	if (e->ops->query(e, "SELECT " QN("c") ", co.conname FROM pg_constraint co JOIN pg_class c "
			  "ON c.oid = co.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
			  "WHERE NOT co.convalidated AND " USER_REL("c") " ORDER BY 1, 2",
			  0, NULL, &r, err) < 0)
		return -1;
	for (size_t i = 0; i < r.nrows; i++) {
		struct strbuf hint = STRBUF_INIT;

		sb_addf(&hint, "run ALTER TABLE %s VALIDATE CONSTRAINT %s (it takes only a SHARE "
			"UPDATE EXCLUSIVE lock)", rows_get(&r, i, 0), rows_get(&r, i, 1));
		finding_add(out, FINDING_CHECK, "not-valid-constraint", LEVEL_WARN, hint.buf, NULL, 0,
			    "constraint '%s' on table '%s' is NOT VALID: existing rows are not "
			    "checked", rows_get(&r, i, 1), rows_get(&r, i, 0));
		sb_release(&hint);
	}
	rows_release(&r);
	return 0;
}

static int pg_db_size(struct engine *e, unsigned long long *bytes, struct sm_error *err)
{
	char *v = NULL;

	if (engine_scalar(e, "SELECT pg_database_size(current_database())::text", 0, NULL, &v,
			  err) < 0)
		return -1;
	*bytes = v ? strtoull(v, NULL, 10) : 0;
	free(v);
	return 0;
}

/* "public.t" and "t" name the same table. */
static const char *unqualified_public(const char *name)
{
	return !strncmp(name, "public.", 7) ? name + 7 : name;
}

static int touched(const char *table, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(unqualified_public(names[i]), table))
			return 1;
	return 0;
}

static int pg_live_checks(struct engine *e, const struct safety_check_opts *o,
			  const char *const *names, size_t n_names, struct finding_list *out,
			  struct sm_error *err)
{
	struct eng_rows r = ENG_ROWS_INIT;
	char secs[32];
	const char *p[] = { secs };
	long limit = o->long_tx_seconds > 0 ? o->long_tx_seconds : SAFETY_LONG_TX_SECONDS;
	size_t found = 0, n_invalid = 0;

	snprintf(secs, sizeof(secs), "%ld", limit);
	if (e->ops->query(e, "SELECT DISTINCT a.pid::text, " QN("c") ", l.mode, "
			  "coalesce(a.usename::text, ''), coalesce(a.state, ''), "
			  "extract(epoch FROM now() - a.xact_start)::bigint::text "
			  "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
			  "JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON "
			  "n.oid = c.relnamespace WHERE l.locktype = 'relation' AND l.granted "
			  "AND l.database = (SELECT oid FROM pg_database WHERE datname = "
			  "current_database()) AND a.pid <> pg_backend_pid() AND a.xact_start < "
			  "now() - make_interval(secs => $1::int) ORDER BY 2, 1", 1, p, &r, err) < 0)
		return err_prefix(err, "cannot read pg_locks");
	for (size_t i = 0; i < r.nrows; i++) {
		struct strbuf hint = STRBUF_INIT;

		if (!touched(rows_get(&r, i, 1), names, n_names))
			continue;
		sb_addf(&hint, "wait for it to finish, or end it with SELECT "
			"pg_terminate_backend(%s); the migration would queue behind it and block "
			"every other query on the table", rows_get(&r, i, 0));
		finding_add(out, FINDING_CHECK, "long-transactions", LEVEL_FAIL, hint.buf, NULL, 0,
			    "process %s (user '%s', %s) has had a transaction open for %s s "
			    "holding %s on table '%s', which the pending migrations touch",
			    rows_get(&r, i, 0), rows_get(&r, i, 3), rows_get(&r, i, 4),
			    rows_get(&r, i, 5), rows_get(&r, i, 2), rows_get(&r, i, 1));
		sb_release(&hint);
		found++;
	}
	rows_release(&r);
	if (!found)
		finding_add(out, FINDING_CHECK, "long-transactions", LEVEL_PASS, NULL, NULL, 0,
			    "no transaction open longer than %ld s holds a lock on the %zu "
			    "table%s the pending migrations touch", limit, n_names,
			    n_names == 1 ? "" : "s");
	if (add_invalid_indexes(e, "invalid-indexes", LEVEL_WARN, out, &n_invalid, err) < 0)
		return -1;
	if (!n_invalid)
		finding_add(out, FINDING_CHECK, "invalid-indexes", LEVEL_PASS, NULL, NULL, 0,
			    "no invalid indexes");
	return 0;
}

/* Table names in the model are "schema.table" outside public (see above).
 * ONLY: the table's own rows, as its snapshot's COPY counts them; without it
 * an inheritance parent counts its children's rows too. */
static int pg_count_rows(struct engine *e, const char *table, long long *n, struct sm_error *err)
{
	struct strbuf sql = STRBUF_INIT;
	const char *dot = strchr(table, '.');
	char *v = NULL, *schema = NULL;
	int ret;

	sb_adds(&sql, "SELECT count(*)::text FROM ONLY ");
	if (dot) {
		schema = xstrndup(table, (size_t)(dot - table));
		e->ops->quote_ident(&sql, schema);
		sb_addch(&sql, '.');
		e->ops->quote_ident(&sql, dot + 1);
	} else {
		e->ops->quote_ident(&sql, "public");
		sb_addch(&sql, '.');
		e->ops->quote_ident(&sql, table);
	}
	ret = engine_scalar(e, sql.buf, 0, NULL, &v, err);
	*n = v ? strtoll(v, NULL, 10) : 0;
	free(v);
	free(schema);
	sb_release(&sql);
	return ret;
}

const struct safety_driver safety_pg_driver = {
	.engine = "postgresql",
	.schema_load = pg_schema_load,
	.integrity = pg_integrity,
	.db_size = pg_db_size,
	.count_rows = pg_count_rows,
	.preopen = NULL,
	.live_checks = pg_live_checks,
};
