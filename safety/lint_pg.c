/*
 * lint_pg: the PostgreSQL lint rules (see lint.h), applied to the JSON
 * parse tree libpg_query returns for a migration (the server's own grammar,
 * so every statement is understood as the server will understand it).
 */
#include <cjson/cJSON.h>
#include <pg_query.h>
#include <stdlib.h>
#include <string.h>

#include "lint_impl.h"
#include "strbuf.h"
#include "xalloc.h"

struct pg_run {
	struct lint_run *r;
	int lock_timeout_set;
	int lock_timeout_warned;
};

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

static void lock_heavy(struct pg_run *p, const char *table)
{
	if (p->lock_timeout_set || p->lock_timeout_warned)
		return;
	p->lock_timeout_warned = 1;
	lint_emit(p->r, "missing-lock-timeout",
		  "ALTER TABLE %s takes an ACCESS EXCLUSIVE lock and no lock_timeout was set "
		  "before it", table);
}

static void alter_cmd(struct pg_run *p, const char *table, int is_new, const cJSON *cmd)
{
	const char *sub = str(cmd, "subtype"), *col = str(cmd, "name");
	const cJSON *def = get(cmd, "def"), *c;

	if (!sub)
		return;
	if (strcmp(sub, "AT_ValidateConstraint") && !is_new)
		lock_heavy(p, table);
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
	} else if (!strcmp(sub, "AT_DropColumn")) {
		lint_emit(p->r, "drop-column", "column '%s' of '%s' is dropped with its data", col,
			  table);
	}
}

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
		lint_created(r, table);
		lint_touch(r, table);
	} else if (!strcmp(type, "IndexStmt")) {
		table = rel_name(get(s, "relation"));
		lint_touch(r, table);
		if (flag(s, "concurrent"))
			non_tx(p, never_in_tx(type, s));
		else if (!lint_is_created(r, table))
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
		is_new = lint_is_created(r, table);
		cJSON_ArrayForEach(it, get(s, "cmds"))
			alter_cmd(p, table, is_new, get(it, "AlterTableCmd"));
	} else if (!strcmp(type, "RenameStmt")) {
		const char *rt = str(s, "renameType");

		table = rel_name(get(s, "relation"));
		if (!rt || lint_is_created(r, table))
			goto out;
		lint_touch(r, table);
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
		if (!rt || strcmp(rt, "OBJECT_TABLE"))
			goto out;
		cJSON_ArrayForEach(it, get(s, "objects")) {
			char *name = list_name(it);

			lint_touch(r, name);
			if (!lint_is_created(r, name))
				lint_emit(r, "drop-table", "table '%s' is dropped with all its rows",
					  name);
			free(name);
		}
	} else if (!strcmp(type, "TruncateStmt")) {
		cJSON_ArrayForEach(it, get(s, "relations")) {
			char *name = rel_name(get(it, "RangeVar"));
			lint_touch(r, name);
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
			lint_emit(r, "vacuum-full", "VACUUM FULL rewrites every table it names under "
				  "an ACCESS EXCLUSIVE lock");
	} else if (!strcmp(type, "ClusterStmt")) {
		table = rel_name(get(s, "relation"));
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

static int pg_migration(struct lint_run *r, struct sm_error *err)
{
	PgQueryParseResult res = pg_query_parse(r->sql);
	struct pg_run p = { r, 0, 0 };
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
	.begin = NULL,
	.migration = pg_migration,
	.end = NULL,
	.never_in_tx = pg_never_in_tx,
};
