/*
 * lint_pg: the PostgreSQL lint rules (see lint.h), applied to the JSON
 * parse tree libpg_query returns for a migration (the server's own grammar,
 * so every statement is understood as the server will understand it).
 */
#include <cjson/cJSON.h>
#include <pg_query.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lint_impl.h"
#include "strbuf.h"
#include "xalloc.h"

/* The dialect's state for a whole lint run: the live database (borrowed,
 * may be NULL) and the column types the linted CREATE TABLEs gave, so that
 * a later type change knows what it changes from. */
struct pg_state {
	struct engine *live;
	char **col_keys, **col_types; /* "table.column" -> "varchar(10)" */
	size_t n_cols, alloc_keys, alloc_types;
};

struct pg_run {
	struct lint_run *r;
	struct pg_state *st;
	int lock_timeout_set;
	int lock_timeout_warned;
	int depth; /* DO blocks being walked */
};

static void lint_stmt(struct pg_run *p, const cJSON *node);

static const char *str(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int flag(const cJSON *o, const char *key)
{
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, key));
}

static const cJSON *get(const cJSON *o, const char *key)
{
	return cJSON_GetObjectItemCaseSensitive(o, key);
}

/* A RangeVar as "schema.name" or "name"; caller frees. */
static char *rel_name(const cJSON *rv)
{
	struct strbuf sb = STRBUF_INIT;
	const char *schema = str(rv, "schemaname"), *rel = str(rv, "relname");

	if (!rel)
		return NULL;
	if (schema)
		sb_addf(&sb, "%s.", schema);
	sb_adds(&sb, rel);
	return sb_detach(&sb);
}

/* The name list of a DropStmt object ({"List": {"items": [String...]}}). */
static char *list_name(const cJSON *obj)
{
	struct strbuf sb = STRBUF_INIT;
	const cJSON *items = get(get(obj, "List"), "items"), *it;

	cJSON_ArrayForEach(it, items) {
		const char *s = str(get(it, "String"), "sval");
		if (s)
			sb_addf(&sb, "%s%s", sb.len ? "." : "", s);
	}
	return sb_detach(&sb);
}

static int has_defelem(const cJSON *list, const char *name)
{
	const cJSON *it;

	cJSON_ArrayForEach(it, list) {
		const char *d = str(get(it, "DefElem"), "defname");
		if (d && !strcmp(d, name))
			return 1;
	}
	return 0;
}

/* SET lock_timeout = 0 (or '0') turns the limit off.  libpg_query writes
 * the integer 0 as an empty "ival" object. */
static int is_zero_setting(const cJSON *args)
{
	const cJSON *c = args ? get(args->child, "A_Const") : NULL;
	const cJSON *ival = get(c, "ival");
	const char *sval = str(get(c, "sval"), "sval");

	if (!c)
		return 1;
	if (ival)
		return !cJSON_IsNumber(get(ival, "ival")) ||
		       cJSON_GetNumberValue(get(ival, "ival")) == 0;
	return sval && (!strcmp(sval, "0") || !strcmp(sval, "0ms") || !strcmp(sval, "0s"));
}

/* The statements that can never run inside a transaction block: what the
 * statement is, or NULL.  One list, read by the concurrently-in-transaction
 * rule and by lint_never_in_tx (which runs such a migration outside one). */
static const char *never_in_tx(const char *type, const cJSON *s)
{
	static const struct {
		const char *type, *what;
	} always[] = {
		{ "CreatedbStmt", "CREATE DATABASE" },
		{ "DropdbStmt", "DROP DATABASE" },
		{ "AlterSystemStmt", "ALTER SYSTEM" },
		{ "CreateTableSpaceStmt", "CREATE TABLESPACE" },
		{ "DropTableSpaceStmt", "DROP TABLESPACE" },
	};

	for (size_t i = 0; i < sizeof(always) / sizeof(always[0]); i++)
		if (!strcmp(type, always[i].type))
			return always[i].what;
	if (!strcmp(type, "IndexStmt") && flag(s, "concurrent"))
		return "CREATE INDEX CONCURRENTLY";
	if (!strcmp(type, "DropStmt") && flag(s, "concurrent"))
		return "DROP INDEX CONCURRENTLY";
	if (!strcmp(type, "VacuumStmt") && flag(s, "is_vacuumcmd"))
		return "VACUUM";
	if (!strcmp(type, "ReindexStmt") && has_defelem(get(s, "params"), "concurrently"))
		return "REINDEX CONCURRENTLY";
	return NULL;
}

static void non_tx(struct pg_run *p, const char *what)
{
	if (p->r->transactional)
		lint_emit(p->r, "concurrently-in-transaction",
			  "%s cannot run inside a transaction block, and this migration runs in "
			  "one", what);
}

/* stmt (e.g. "ALTER TABLE") on table takes lock, which blocks writes: without
 * a lock_timeout it queues every later query on the table behind it while it
 * waits.  Reported once per migration. */
static void lock_heavy(struct pg_run *p, const char *stmt, const char *table, const char *lock)
{
	if (p->lock_timeout_set || p->lock_timeout_warned)
		return;
	p->lock_timeout_warned = 1;
	lint_emit(p->r, "missing-lock-timeout",
		  "%s%s%s takes %s lock and no lock_timeout was set before it", stmt,
		  table ? " " : "", table ? table : "", lock);
}

#define ACCESS_EXCLUSIVE "an ACCESS EXCLUSIVE"

/* A TypeName as "varchar(10)", "numeric(10,2)", "text" (the last name
 * part and the integer modifiers); caller frees. */
static char *type_text(const cJSON *tn)
{
	struct strbuf sb = STRBUF_INIT;
	const cJSON *it, *names = get(tn, "names"), *last = NULL;
	int first = 1;

	cJSON_ArrayForEach(it, names)
		last = it;
	if (!last || !str(get(last, "String"), "sval"))
		return NULL;
	sb_adds(&sb, str(get(last, "String"), "sval"));
	cJSON_ArrayForEach(it, get(tn, "typmods")) {
		const cJSON *iv = get(get(get(it, "A_Const"), "ival"), "ival");

		sb_addf(&sb, "%s%d", first ? "(" : ",", iv ? (int)cJSON_GetNumberValue(iv) : 0);
		first = 0;
	}
	if (!first)
		sb_addch(&sb, ')');
	if (get(tn, "arrayBounds"))
		sb_adds(&sb, "[]");
	return sb_detach(&sb);
}

/* Splits "varchar(10)" / "character varying(10)" / "numeric(10,2)" into a
 * base name and up to two modifiers (-1: none). */
static void type_parts(const char *t, char *base, size_t size, long *m1, long *m2)
{
	const char *paren = strchr(t, '(');
	size_t n = paren ? (size_t)(paren - t) : strlen(t);

	*m1 = *m2 = -1;
	snprintf(base, size, "%.*s", (int)n, t);
	if (!strcmp(base, "character varying"))
		snprintf(base, size, "varchar");
	if (paren) {
		char *end;
		*m1 = strtol(paren + 1, &end, 10);
		if (*end == ',')
			*m2 = strtol(end + 1, &end, 10);
	}
}

/* Does changing a column from type `from` to type `to` leave the stored
 * data as it is (binary-coercible, no table rewrite)?  varchar(n) to a wider
 * varchar, to varchar or to text; numeric(p,s) to numeric(p2,s) with p2 >= p,
 * or to unconstrained numeric. */
static int no_rewrite(const char *from, const char *to)
{
	char fb[64], tb[64];
	long f1, f2, t1, t2;

	if (!from || !to || strchr(from, '[') || strchr(to, '['))
		return 0;
	type_parts(from, fb, sizeof(fb), &f1, &f2);
	type_parts(to, tb, sizeof(tb), &t1, &t2);
	if (!strcmp(tb, "text"))
		return !strcmp(fb, "varchar") || !strcmp(fb, "text");
	if (!strcmp(tb, "varchar"))
		return (!strcmp(fb, "varchar") || !strcmp(fb, "text")) &&
		       (t1 < 0 || (!strcmp(fb, "varchar") && f1 >= 0 && f1 <= t1));
	if (!strcmp(tb, "numeric") && !strcmp(fb, "numeric"))
		return t1 < 0 || (f1 >= 0 && t1 >= f1 && (f2 < 0 ? 0 : f2) == (t2 < 0 ? 0 : t2));
	return 0;
}

static void remember_type(struct pg_state *st, const char *table, const char *col,
			  char *type)
{
	struct strbuf key = STRBUF_INIT;

	if (!st || !table || !col || !type) {
		free(type);
		return;
	}
	sb_addf(&key, "%s.%s", table, col);
	for (size_t i = 0; i < st->n_cols; i++)
		if (!strcmp(st->col_keys[i], key.buf)) {
			free(st->col_types[i]);
			st->col_types[i] = type;
			sb_release(&key);
			return;
		}
	ALLOC_GROW(st->col_keys, st->n_cols + 1, st->alloc_keys);
	ALLOC_GROW(st->col_types, st->n_cols + 1, st->alloc_types);
	st->col_keys[st->n_cols] = sb_detach(&key);
	st->col_types[st->n_cols++] = type;
}

/* The column's current type: from a CREATE TABLE linted earlier in this
 * run, else from the live database; NULL when unknown.  Caller frees. */
static char *known_type(struct pg_state *st, const char *table, const char *col)
{
	struct strbuf key = STRBUF_INIT;
	struct sm_error ignored = SM_ERROR_INIT;
	char *type = NULL;

	if (!st || !table || !col)
		return NULL;
	sb_addf(&key, "%s.%s", table, col);
	for (size_t i = 0; i < st->n_cols && !type; i++)
		if (!strcmp(st->col_keys[i], key.buf))
			type = xstrdup(st->col_types[i]);
	if (!type && st->live) {
		const char *params[2] = { table, col };
		if (engine_scalar(st->live, "SELECT format_type(a.atttypid, a.atttypmod) FROM "
				  "pg_attribute a WHERE a.attrelid = to_regclass($1) AND "
				  "a.attname = $2 AND NOT a.attisdropped", 2, params, &type,
				  &ignored) < 0)
			type = NULL;
	}
	sb_release(&key);
	return type;
}

/* is_new: created earlier in this lint run (empty, unused); here: created by
 * this very migration. */
static void alter_cmd(struct pg_run *p, const char *table, int is_new, int here,
		      const cJSON *cmd)
{
	const char *sub = str(cmd, "subtype"), *col = str(cmd, "name");
	const cJSON *def = get(cmd, "def"), *c;

	if (!sub)
		return;
	if (strcmp(sub, "AT_ValidateConstraint") && !is_new)
		lock_heavy(p, "ALTER TABLE", table, ACCESS_EXCLUSIVE);
	if (!strcmp(sub, "AT_AlterColumnType") || !strcmp(sub, "AT_AddColumn")) {
		const cJSON *cd = get(def, "ColumnDef");
		const char *name = !strcmp(sub, "AT_AddColumn") ? str(cd, "colname") : col;
		char *to = type_text(get(cd, "typeName"));

		if (!strcmp(sub, "AT_AlterColumnType") && !is_new && !get(cd, "raw_default")) {
			char *from = known_type(p->st, table, name);
			int same = no_rewrite(from, to);

			free(from);
			if (same) {
				remember_type(p->st, table, name, to);
				return;
			}
		}
		remember_type(p->st, table, name, to);
	}
	if (!strcmp(sub, "AT_DropColumn") && !here)
		lint_emit(p->r, "drop-column", "column '%s' of '%s' is dropped with its data", col,
			  table);
	if (is_new)
		return;
	if (!strcmp(sub, "AT_AddColumn")) {
		const cJSON *cd = get(def, "ColumnDef");
		int notnull = 0, dflt = 0;

		cJSON_ArrayForEach(c, get(cd, "constraints")) {
			const char *t = str(get(c, "Constraint"), "contype");
			if (!t)
				continue;
			notnull |= !strcmp(t, "CONSTR_NOTNULL") || !strcmp(t, "CONSTR_PRIMARY");
			dflt |= !strcmp(t, "CONSTR_DEFAULT") || !strcmp(t, "CONSTR_IDENTITY") ||
				!strcmp(t, "CONSTR_GENERATED");
		}
		if (notnull && !dflt)
			lint_emit(p->r, "adding-not-null-column-without-default",
				  "column '%s' is added to '%s' as NOT NULL without a default: it "
				  "fails if the table has any row", str(cd, "colname"), table);
	} else if (!strcmp(sub, "AT_AlterColumnType")) {
		lint_emit(p->r, "column-type-change",
			  "changing the type of column '%s' of '%s' rewrites the table", col, table);
	} else if (!strcmp(sub, "AT_SetNotNull")) {
		lint_emit(p->r, "set-not-null",
			  "SET NOT NULL on column '%s' of '%s' scans the whole table under an ACCESS "
			  "EXCLUSIVE lock", col, table);
	} else if (!strcmp(sub, "AT_AddConstraint")) {
		const cJSON *con = get(def, "Constraint");
		const char *t = str(con, "contype");

		if (t && (!strcmp(t, "CONSTR_UNIQUE") || !strcmp(t, "CONSTR_PRIMARY") ||
			  !strcmp(t, "CONSTR_EXCLUSION")) && !str(con, "indexname"))
			lint_emit(p->r, "create-index-non-concurrently",
				  "adding a %s constraint to '%s' builds its index while the table is "
				  "locked; CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT "
				  "... USING INDEX", !strcmp(t, "CONSTR_PRIMARY") ? "primary key" :
				  !strcmp(t, "CONSTR_UNIQUE") ? "unique" : "exclusion", table);
		else if (t && (!strcmp(t, "CONSTR_FOREIGN") || !strcmp(t, "CONSTR_CHECK")) &&
			 !flag(con, "skip_validation"))
			lint_emit(p->r, "constraint-without-not-valid",
				  "%s constraint %s%s%sadded to '%s' without NOT VALID: every row is "
				  "checked while the table is locked",
				  !strcmp(t, "CONSTR_FOREIGN") ? "foreign key" : "check",
				  str(con, "conname") ? "'" : "",
				  str(con, "conname") ? str(con, "conname") : "",
				  str(con, "conname") ? "' " : "", table);
	}
}

static void lint_sql_text(struct pg_run *p, const char *sql);

/* The text of a constant string expression ("'DROP TABLE x'", "$q$...$q$"),
 * or NULL when the expression is computed.  Caller frees. */
static char *const_string(const char *expr)
{
	struct strbuf sb = STRBUF_INIT;
	PgQueryParseResult res;
	cJSON *tree;
	const char *v = NULL;
	char *out = NULL;

	sb_addf(&sb, "SELECT %s", expr);
	res = pg_query_parse(sb.buf);
	tree = res.error ? NULL : cJSON_Parse(res.parse_tree);
	if (tree) {
		const cJSON *sel = get(get(get(tree, "stmts")->child, "stmt"), "SelectStmt");
		const cJSON *tl = get(sel, "targetList");

		if (tl && tl->child && !tl->child->next)
			v = str(get(get(get(get(tl->child, "ResTarget"), "val"), "A_Const"), "sval"),
				"sval");
		if (v)
			out = xstrdup(v);
	}
	cJSON_Delete(tree);
	pg_query_free_parse_result(res);
	sb_release(&sb);
	return out;
}

/* Walks a PL/pgSQL statement tree (the JSON pg_query_parse_plpgsql gives):
 * each embedded SQL statement is linted as if it stood in the migration;
 * EXECUTE of a constant string is linted too, any other EXECUTE is reported
 * as invisible to the lint. */
/* recursion bounded by the PL/pgSQL nesting of one DO block */
/* NOLINTNEXTLINE(misc-no-recursion) */
static void walk_plpgsql(struct pg_run *p, const cJSON *node)
{
	const cJSON *it;

	if (!node)
		return;
	if (node->string && !strcmp(node->string, "PLpgSQL_stmt_execsql")) {
		lint_sql_text(p, str(get(get(node, "sqlstmt"), "PLpgSQL_expr"), "query"));
		return;
	}
	if (node->string && !strcmp(node->string, "PLpgSQL_stmt_dynexecute")) {
		const char *q = str(get(get(node, "query"), "PLpgSQL_expr"), "query");
		char *text = q ? const_string(q) : NULL;

		if (text)
			lint_sql_text(p, text);
		else
			lint_emit(p->r, "dynamic-sql",
				  "EXECUTE %.60s%s builds its SQL at run time: the lint cannot see "
				  "what it does", q ? q : "", q && strlen(q) > 60 ? "..." : "");
		free(text);
		return;
	}
	for (it = node->child; it; it = it->next)
		if (cJSON_IsObject(it) || cJSON_IsArray(it))
			walk_plpgsql(p, it);
}

/* DO $$ ... $$: its SQL statements run now, in this migration.  Parsed as
 * the body of a PL/pgSQL function (libpg_query parses PL/pgSQL only so).
 * Recursion (a DO block in a DO block) is bounded by p->depth. */
/* NOLINTNEXTLINE(misc-no-recursion) */
static void lint_do(struct pg_run *p, const cJSON *s)
{
	const cJSON *it;
	const char *body = NULL, *lang = NULL;
	struct strbuf fn = STRBUF_INIT;
	PgQueryPlpgsqlParseResult res;
	cJSON *tree;

	cJSON_ArrayForEach(it, get(s, "args")) {
		const cJSON *d = get(it, "DefElem");
		const char *name = str(d, "defname");
		const char *v = str(get(get(d, "arg"), "String"), "sval");

		if (name && !strcmp(name, "as"))
			body = v;
		else if (name && !strcmp(name, "language"))
			lang = v;
	}
	if (!body || (lang && strcmp(lang, "plpgsql")) || p->depth > 4)
		return;
	sb_addf(&fn, "CREATE FUNCTION safe_migrate_do() RETURNS void LANGUAGE plpgsql AS "
		"$safe_migrate_do$%s$safe_migrate_do$", body);
	res = pg_query_parse_plpgsql(fn.buf);
	tree = res.error ? NULL : cJSON_Parse(res.plpgsql_funcs);
	if (tree) {
		p->depth++;
		walk_plpgsql(p, tree);
		p->depth--;
	} else {
		lint_emit(p->r, "dynamic-sql", "the DO block does not parse as PL/pgSQL (%s): the "
			  "lint cannot see what it does", res.error ? res.error->message : "?");
	}
	cJSON_Delete(tree);
	pg_query_free_plpgsql_parse_result(res);
	sb_release(&fn);
}

/* recursion through DO blocks, bounded by lint_do's depth */
/* NOLINTNEXTLINE(misc-no-recursion) */
static void lint_stmt(struct pg_run *p, const cJSON *node)
{
	struct lint_run *r = p->r;
	const char *type = node->string;
	const cJSON *s = node, *it;
	char *table = NULL;

	if (!strcmp(type, "CreateStmt") || !strcmp(type, "CreateTableAsStmt")) {
		const cJSON *rv = get(s, "relation");
		if (!rv)
			rv = get(get(s, "into"), "rel");
		table = rel_name(rv);
		/* CREATE TABLE IF NOT EXISTS may meet a table that is there, full,
		 * and in use: what follows it is not about a new table */
		if (!flag(s, "if_not_exists"))
			lint_created(r, table);
		lint_touch(r, table);
		cJSON_ArrayForEach(it, get(s, "tableElts")) {
			const cJSON *cd = get(it, "ColumnDef");
			if (cd)
				remember_type(p->st, table, str(cd, "colname"),
					      type_text(get(cd, "typeName")));
		}
	} else if (!strcmp(type, "DoStmt")) {
		lint_do(p, s);
	} else if (!strcmp(type, "RefreshMatViewStmt")) {
		table = rel_name(get(s, "relation"));
		if (!flag(s, "concurrent"))
			lock_heavy(p, "REFRESH MATERIALIZED VIEW", table, ACCESS_EXCLUSIVE);
	} else if (!strcmp(type, "CreateTrigStmt")) {
		table = rel_name(get(s, "relation"));
		if (!lint_is_new(r, table))
			lock_heavy(p, "CREATE TRIGGER on", table, "a SHARE ROW EXCLUSIVE");
	} else if (!strcmp(type, "IndexStmt")) {
		table = rel_name(get(s, "relation"));
		lint_touch(r, table);
		if (!flag(s, "concurrent") && !lint_is_new(r, table))
			lock_heavy(p, "CREATE INDEX on", table, "a SHARE");
		if (str(s, "idxname"))
			lint_created_index(r, str(s, "idxname"));
		if (flag(s, "concurrent"))
			non_tx(p, never_in_tx(type, s));
		else if (!lint_is_new(r, table))
			lint_emit(r, "create-index-non-concurrently",
				  "CREATE INDEX %s%s%son existing table '%s' blocks writes to it while "
				  "the index builds", str(s, "idxname") ? "'" : "",
				  str(s, "idxname") ? str(s, "idxname") : "",
				  str(s, "idxname") ? "' " : "", table);
	} else if (!strcmp(type, "AlterTableStmt")) {
		const char *objtype = str(s, "objtype");
		int is_new;

		if (objtype && strcmp(objtype, "OBJECT_TABLE"))
			goto out;
		table = rel_name(get(s, "relation"));
		lint_touch(r, table);
		is_new = lint_is_new(r, table);
		cJSON_ArrayForEach(it, get(s, "cmds"))
			alter_cmd(p, table, is_new, lint_is_created(r, table),
				  get(it, "AlterTableCmd"));
	} else if (!strcmp(type, "RenameStmt")) {
		const char *rt = str(s, "renameType");

		table = rel_name(get(s, "relation"));
		if (!rt || lint_is_created(r, table))
			goto out;
		lint_touch(r, table);
		if ((!strcmp(rt, "OBJECT_COLUMN") || !strcmp(rt, "OBJECT_TABLE")) &&
		    !lint_is_new(r, table))
			lock_heavy(p, "ALTER TABLE ... RENAME on", table, ACCESS_EXCLUSIVE);
		if (!strcmp(rt, "OBJECT_COLUMN"))
			lint_emit(r, "rename-column", "column '%s' of '%s' is renamed to '%s'",
				  str(s, "subname"), table, str(s, "newname"));
		else if (!strcmp(rt, "OBJECT_TABLE"))
			lint_emit(r, "rename-table", "table '%s' is renamed to '%s'", table,
				  str(s, "newname"));
	} else if (!strcmp(type, "DropStmt")) {
		const char *rt = str(s, "removeType");

		if (rt && !strcmp(rt, "OBJECT_INDEX") && flag(s, "concurrent"))
			non_tx(p, never_in_tx(type, s));
		if (rt && !strcmp(rt, "OBJECT_INDEX") && !flag(s, "concurrent")) {
			cJSON_ArrayForEach(it, get(s, "objects")) {
				char *name = list_name(it);

				if (!lint_is_created_index(r, name)) {
					lock_heavy(p, "DROP INDEX", name, ACCESS_EXCLUSIVE);
					lint_emit(r, "drop-index-non-concurrently",
						  "DROP INDEX '%s' takes an ACCESS EXCLUSIVE lock on its "
						  "table, blocking reads and writes until it is dropped",
						  name);
				}
				free(name);
			}
		}
		if (!rt || strcmp(rt, "OBJECT_TABLE"))
			goto out;
		cJSON_ArrayForEach(it, get(s, "objects")) {
			char *name = list_name(it);

			lint_touch(r, name);
			if (!lint_is_new(r, name))
				lock_heavy(p, "DROP TABLE", name, ACCESS_EXCLUSIVE);
			if (!lint_is_created(r, name))
				lint_emit(r, "drop-table", "table '%s' is dropped with all its rows",
					  name);
			free(name);
		}
	} else if (!strcmp(type, "TruncateStmt")) {
		cJSON_ArrayForEach(it, get(s, "relations")) {
			char *name = rel_name(get(it, "RangeVar"));
			lint_touch(r, name);
			if (!lint_is_new(r, name))
				lock_heavy(p, "TRUNCATE", name, ACCESS_EXCLUSIVE);
			lint_emit(r, "truncate", "TRUNCATE deletes every row of '%s'", name);
			free(name);
		}
	} else if (!strcmp(type, "DeleteStmt") || !strcmp(type, "UpdateStmt")) {
		table = rel_name(get(s, "relation"));
		lint_touch(r, table);
		if (!get(s, "whereClause") && !lint_is_created(r, table))
			lint_emit(r, "update-or-delete-without-where", "%s on '%s' has no WHERE "
				  "clause: it changes every row", !strcmp(type, "DeleteStmt") ?
				  "DELETE" : "UPDATE", table);
	} else if (!strcmp(type, "VacuumStmt")) {
		if (!flag(s, "is_vacuumcmd"))
			goto out; /* ANALYZE may run in a transaction */
		non_tx(p, never_in_tx(type, s));
		if (has_defelem(get(s, "options"), "full"))
			lock_heavy(p, "VACUUM FULL", NULL, ACCESS_EXCLUSIVE);
		if (has_defelem(get(s, "options"), "full"))
			lint_emit(r, "vacuum-full", "VACUUM FULL rewrites every table it names under "
				  "an ACCESS EXCLUSIVE lock");
	} else if (!strcmp(type, "ClusterStmt")) {
		table = rel_name(get(s, "relation"));
		lock_heavy(p, "CLUSTER", table, ACCESS_EXCLUSIVE);
		lint_emit(r, "cluster", "CLUSTER%s%s%s rewrites the table under an ACCESS "
			  "EXCLUSIVE lock", table ? " '" : "", table ? table : "", table ? "'" : "");
	} else if (never_in_tx(type, s)) {
		non_tx(p, never_in_tx(type, s));
	} else if (!strcmp(type, "VariableSetStmt")) {
		const char *name = str(s, "name"), *kind = str(s, "kind");

		if (name && !strcmp(name, "lock_timeout"))
			p->lock_timeout_set = kind && !strcmp(kind, "VAR_SET_VALUE") &&
					      !is_zero_setting(get(s, "args"));
	}
out:
	free(table);
}

/* Lints the statements of sql (found inside a DO block) at the current
 * statement's place. */
/* NOLINTNEXTLINE(misc-no-recursion) */
static void lint_sql_text(struct pg_run *p, const char *sql)
{
	PgQueryParseResult res;
	cJSON *tree;
	const cJSON *st;

	if (!sql)
		return;
	res = pg_query_parse(sql);
	tree = res.error ? NULL : cJSON_Parse(res.parse_tree);
	cJSON_ArrayForEach(st, get(tree, "stmts")) {
		const cJSON *node = get(st, "stmt");

		if (node && node->child)
			lint_stmt(p, node->child);
	}
	cJSON_Delete(tree);
	pg_query_free_parse_result(res);
}

static int pg_begin(struct lint_ctx *c, struct engine *live, struct sm_error *err)
{
	struct pg_state *st = xcalloc(1, sizeof(*st));

	(void)err;
	st->live = live && !strcmp(live->ops->name, "postgresql") ? live : NULL;
	c->state = st;
	return 0;
}

static void pg_end(struct lint_ctx *c)
{
	struct pg_state *st = c->state;

	if (!st)
		return;
	for (size_t i = 0; i < st->n_cols; i++) {
		free(st->col_keys[i]);
		free(st->col_types[i]);
	}
	free(st->col_keys);
	free(st->col_types);
	free(st);
	c->state = NULL;
}

static int pg_migration(struct lint_run *r, struct sm_error *err)
{
	PgQueryParseResult res = pg_query_parse(r->sql);
	struct pg_run p = { r, r->ctx->state, 0, 0, 0 };
	cJSON *tree = NULL;
	const cJSON *st;
	int ret = -1;

	if (res.error) {
		size_t pos = res.error->cursorpos > 0 ? (size_t)res.error->cursorpos - 1 : 0;
		size_t len = strlen(r->sql);

		lint_at(r, 0, 0);
		r->line = engine_line_at(r->sql, pos < len ? pos : len, r->first_line);
		lint_emit(r, "sql-error", "syntax error: %s", res.error->message);
		ret = 0;
		goto out;
	}
	tree = cJSON_Parse(res.parse_tree);
	if (!tree) {
		err_set(err, ERR_FAIL, "cannot read the parse tree of '%s'", r->file ? r->file : "SQL");
		goto out;
	}
	cJSON_ArrayForEach(st, get(tree, "stmts")) {
		const cJSON *loc = get(st, "stmt_location"), *len = get(st, "stmt_len");
		const cJSON *node = get(st, "stmt");
		size_t start = loc ? (size_t)cJSON_GetNumberValue(loc) : 0;
		size_t n = len ? (size_t)cJSON_GetNumberValue(len) : strlen(r->sql + start);

		if (lint_interrupted(r, err))
			goto out;
		if (!node || !node->child)
			continue;
		lint_at(r, start, n);
		lint_stmt(&p, node->child);
	}
	ret = 0;
out:
	cJSON_Delete(tree);
	pg_query_free_parse_result(res);
	return ret;
}

static const char *pg_never_in_tx(const char *sql)
{
	PgQueryParseResult res = pg_query_parse(sql);
	cJSON *tree = res.error ? NULL : cJSON_Parse(res.parse_tree);
	const cJSON *st;
	const char *what = NULL;

	cJSON_ArrayForEach(st, get(tree, "stmts")) {
		const cJSON *node = get(st, "stmt");

		if (node && node->child && (what = never_in_tx(node->child->string, node->child)))
			break;
	}
	cJSON_Delete(tree);
	pg_query_free_parse_result(res);
	return what;
}

const struct lint_dialect lint_pg_dialect = {
	.engine = "postgresql",
	.begin = pg_begin,
	.migration = pg_migration,
	.end = pg_end,
	.never_in_tx = pg_never_in_tx,
};
