/*
 * Unit tests for lint (safety/lint*.c): every rule in its firing and its
 * non-firing form, in the PostgreSQL dialect (libpg_query, no server) and
 * the SQLite dialect (a scratch in-memory database), plus suppression
 * comments and the placement of findings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "lint.h"

/* How many findings of rule linting sql produces. */
static size_t count_tx(const char *dialect, const char *sql, int transactional, const char *rule)
{
	struct finding_list l = FINDING_LIST_INIT;
	struct sm_error err = SM_ERROR_INIT;
	size_t n = 0;

	assert_int_equal(lint_sql(dialect, sql, "m.sql", 1, transactional, &l, &err), 0);
	for (size_t i = 0; i < l.n; i++) {
		assert_int_equal(l.items[i].kind, FINDING_RULE);
		assert_non_null(l.items[i].hint);
		if (!strcmp(l.items[i].check_or_rule, rule))
			n++;
	}
	finding_list_release(&l);
	return n;
}

static size_t pg(const char *sql, const char *rule)
{
	return count_tx("postgresql", sql, 1, rule);
}

static size_t sq(const char *sql, const char *rule)
{
	return count_tx("sqlite", sql, 1, rule);
}

#define LT "SET lock_timeout = '5s';\n"

static void test_pg_not_null_column(void **state)
{
	(void)state;
	assert_int_equal(pg("ALTER TABLE t ADD COLUMN c int NOT NULL;",
			    "adding-not-null-column-without-default"), 1);
	assert_int_equal(pg("ALTER TABLE t ADD COLUMN c int NOT NULL DEFAULT 0;",
			    "adding-not-null-column-without-default"), 0);
	assert_int_equal(pg("ALTER TABLE t ADD COLUMN c int;",
			    "adding-not-null-column-without-default"), 0);
	/* a table created in the same migration is empty */
	assert_int_equal(pg("CREATE TABLE t (a int); ALTER TABLE t ADD COLUMN c int NOT NULL;",
			    "adding-not-null-column-without-default"), 0);
}

static void test_pg_create_index(void **state)
{
	(void)state;
	assert_int_equal(pg("CREATE INDEX i ON t (a);", "create-index-non-concurrently"), 1);
	assert_int_equal(count_tx("postgresql", "CREATE INDEX CONCURRENTLY i ON t (a);", 0,
				  "create-index-non-concurrently"), 0);
	assert_int_equal(pg("CREATE TABLE t (a int); CREATE INDEX i ON t (a);",
			    "create-index-non-concurrently"), 0);
	/* a unique or primary key constraint builds an index under the lock ... */
	assert_int_equal(pg(LT "ALTER TABLE t ADD CONSTRAINT u UNIQUE (a);",
			    "create-index-non-concurrently"), 1);
	assert_int_equal(pg(LT "ALTER TABLE t ADD PRIMARY KEY (a);",
			    "create-index-non-concurrently"), 1);
	/* ... unless it adopts an index built concurrently */
	assert_int_equal(pg(LT "ALTER TABLE t ADD CONSTRAINT u UNIQUE USING INDEX i;",
			    "create-index-non-concurrently"), 0);
}

static void test_pg_concurrently_in_transaction(void **state)
{
	static const char *const stmts[] = {
		"CREATE INDEX CONCURRENTLY i ON t (a);",
		"DROP INDEX CONCURRENTLY i;",
		"REINDEX INDEX CONCURRENTLY i;",
		"VACUUM t;",
		"CREATE DATABASE x;",
		"ALTER SYSTEM SET work_mem = '1MB';",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++) {
		assert_int_equal(count_tx("postgresql", stmts[i], 1, "concurrently-in-transaction"), 1);
		assert_int_equal(count_tx("postgresql", stmts[i], 0, "concurrently-in-transaction"), 0);
	}
	assert_int_equal(pg("ANALYZE t;", "concurrently-in-transaction"), 0);
}

static void test_pg_column_type_change(void **state)
{
	(void)state;
	assert_int_equal(pg(LT "ALTER TABLE t ALTER COLUMN a TYPE bigint;", "column-type-change"), 1);
	assert_int_equal(pg(LT "ALTER TABLE t ALTER COLUMN a SET DEFAULT 1;", "column-type-change"), 0);
}

static void test_pg_set_not_null(void **state)
{
	(void)state;
	assert_int_equal(pg(LT "ALTER TABLE t ALTER COLUMN a SET NOT NULL;", "set-not-null"), 1);
	assert_int_equal(pg(LT "ALTER TABLE t ALTER COLUMN a DROP NOT NULL;", "set-not-null"), 0);
}

static void test_pg_constraint_not_valid(void **state)
{
	(void)state;
	assert_int_equal(pg(LT "ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES u (id);",
			    "constraint-without-not-valid"), 1);
	assert_int_equal(pg(LT "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0);",
			    "constraint-without-not-valid"), 1);
	assert_int_equal(pg(LT "ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES u (id) "
			    "NOT VALID;", "constraint-without-not-valid"), 0);
	assert_int_equal(pg(LT "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID;",
			    "constraint-without-not-valid"), 0);
	assert_int_equal(pg(LT "ALTER TABLE t VALIDATE CONSTRAINT c;",
			    "constraint-without-not-valid"), 0);
}

static void test_pg_destructive(void **state)
{
	(void)state;
	assert_int_equal(pg("DROP TABLE t;", "drop-table"), 1);
	assert_int_equal(pg("DROP TABLE a, b;", "drop-table"), 2);
	assert_int_equal(pg("DROP VIEW v;", "drop-table"), 0);
	assert_int_equal(pg(LT "ALTER TABLE t DROP COLUMN a;", "drop-column"), 1);
	assert_int_equal(pg(LT "ALTER TABLE t ADD COLUMN a int;", "drop-column"), 0);
	assert_int_equal(pg("TRUNCATE t;", "truncate"), 1);
	assert_int_equal(pg("DELETE FROM t WHERE a = 1;", "truncate"), 0);
}

static void test_pg_rename(void **state)
{
	(void)state;
	assert_int_equal(pg(LT "ALTER TABLE t RENAME COLUMN a TO b;", "rename-column"), 1);
	assert_int_equal(pg(LT "ALTER TABLE t RENAME TO u;", "rename-table"), 1);
	assert_int_equal(pg(LT "ALTER TABLE t RENAME TO u;", "rename-column"), 0);
	assert_int_equal(pg(LT "ALTER INDEX i RENAME TO j;", "rename-table"), 0);
}

static void test_pg_where(void **state)
{
	(void)state;
	assert_int_equal(pg("DELETE FROM t;", "update-or-delete-without-where"), 1);
	assert_int_equal(pg("UPDATE t SET a = 1;", "update-or-delete-without-where"), 1);
	assert_int_equal(pg("DELETE FROM t WHERE a = 1;", "update-or-delete-without-where"), 0);
	assert_int_equal(pg("UPDATE t SET a = 1 WHERE b IS NULL;", "update-or-delete-without-where"),
			 0);
}

static void test_pg_vacuum_cluster(void **state)
{
	(void)state;
	assert_int_equal(count_tx("postgresql", "VACUUM FULL t;", 0, "vacuum-full"), 1);
	assert_int_equal(count_tx("postgresql", "VACUUM (FULL) t;", 0, "vacuum-full"), 1);
	assert_int_equal(count_tx("postgresql", "VACUUM t;", 0, "vacuum-full"), 0);
	assert_int_equal(pg("CLUSTER t USING i;", "cluster"), 1);
	assert_int_equal(pg("ANALYZE t;", "cluster"), 0);
}

static void test_pg_lock_timeout(void **state)
{
	(void)state;
	assert_int_equal(pg("ALTER TABLE t ADD COLUMN a int;", "missing-lock-timeout"), 1);
	/* reported once per migration */
	assert_int_equal(pg("ALTER TABLE t ADD COLUMN a int; ALTER TABLE u ADD COLUMN b int;",
			    "missing-lock-timeout"), 1);
	assert_int_equal(pg(LT "ALTER TABLE t ADD COLUMN a int;", "missing-lock-timeout"), 0);
	assert_int_equal(pg("SET LOCAL lock_timeout TO 1000; ALTER TABLE t ADD COLUMN a int;",
			    "missing-lock-timeout"), 0);
	/* set too late, or switched off */
	assert_int_equal(pg("ALTER TABLE t ADD COLUMN a int; " LT, "missing-lock-timeout"), 1);
	assert_int_equal(pg("SET lock_timeout = 0; ALTER TABLE t ADD COLUMN a int;",
			    "missing-lock-timeout"), 1);
	assert_int_equal(pg("CREATE TABLE t (a int); ALTER TABLE t ADD COLUMN b int;",
			    "missing-lock-timeout"), 0);
}

static void test_pg_lock_timeout_every_lock(void **state)
{
	static const char *const heavy[] = {
		"CREATE INDEX i ON t (a);", "DROP TABLE t;", "DROP INDEX i;", "TRUNCATE t;",
		"ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID;",
		"REFRESH MATERIALIZED VIEW m;", "ALTER TABLE t RENAME TO u;",
		"CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f();",
		"CLUSTER t USING i;",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(heavy) / sizeof(heavy[0]); i++) {
		char with[256];

		assert_int_equal(pg(heavy[i], "missing-lock-timeout"), 1);
		snprintf(with, sizeof(with), LT "%s", heavy[i]);
		assert_int_equal(pg(with, "missing-lock-timeout"), 0);
	}
	assert_int_equal(pg("REFRESH MATERIALIZED VIEW CONCURRENTLY m;", "missing-lock-timeout"), 0);
	assert_int_equal(pg("CREATE TABLE t (a int); CREATE INDEX i ON t (a);",
			    "missing-lock-timeout"), 0);
}

static void test_pg_drop_index(void **state)
{
	(void)state;
	assert_int_equal(pg(LT "DROP INDEX i;", "drop-index-non-concurrently"), 1);
	assert_int_equal(pg(LT "DROP INDEX IF EXISTS a, b;", "drop-index-non-concurrently"), 2);
	assert_int_equal(count_tx("postgresql", "DROP INDEX CONCURRENTLY i;", 0,
				  "drop-index-non-concurrently"), 0);
	/* an index this migration built is not in use yet */
	assert_int_equal(pg(LT "CREATE TABLE t (a int); CREATE INDEX i ON t (a); DROP INDEX i;",
			    "drop-index-non-concurrently"), 0);
}

static void test_pg_if_not_exists(void **state)
{
	(void)state;
	/* IF NOT EXISTS may meet a table that is there: what follows is real */
	assert_int_equal(pg(LT "CREATE TABLE IF NOT EXISTS t (a int); ALTER TABLE t DROP COLUMN a;",
			    "drop-column"), 1);
	assert_int_equal(pg(LT "CREATE TABLE IF NOT EXISTS t (a int); CREATE INDEX i ON t (a);",
			    "create-index-non-concurrently"), 1);
	assert_int_equal(pg(LT "CREATE TABLE t (a int); ALTER TABLE t DROP COLUMN a;",
			    "drop-column"), 0);
}

static void test_pg_do_blocks(void **state)
{
	(void)state;
	assert_int_equal(pg(LT "DO $$ BEGIN IF true THEN ALTER TABLE t DROP COLUMN a; END IF; "
			    "END $$;", "drop-column"), 1);
	assert_int_equal(pg(LT "DO $$ BEGIN FOR i IN 1..2 LOOP CREATE INDEX ON t (a); END LOOP; "
			    "END $$;", "create-index-non-concurrently"), 1);
	assert_int_equal(pg("DO $$ BEGIN DROP INDEX i; END $$;", "missing-lock-timeout"), 1);
	/* a constant EXECUTE string is read; a computed one is reported as unseen */
	assert_int_equal(pg(LT "DO $$ BEGIN EXECUTE 'DROP TABLE t'; END $$;", "drop-table"), 1);
	assert_int_equal(pg(LT "DO $$ BEGIN EXECUTE 'DROP TABLE t'; END $$;", "dynamic-sql"), 0);
	assert_int_equal(pg(LT "DO $$ DECLARE n text := 't'; BEGIN EXECUTE 'DROP TABLE ' || n; "
			    "END $$;", "dynamic-sql"), 1);
	assert_int_equal(pg(LT "DO $$ BEGIN PERFORM 1; END $$;", "dynamic-sql"), 0);
	/* another language is not PL/pgSQL */
	assert_int_equal(pg("DO LANGUAGE plpython3u $$ x = 1 $$;", "dynamic-sql"), 0);
	/* suppression before the DO statement applies to what is inside */
	assert_int_equal(pg(LT "-- safe-migrate:ignore drop-column\nDO $$ BEGIN ALTER TABLE t "
			    "DROP COLUMN a; END $$;", "drop-column"), 0);
}

static void test_pg_binary_coercible(void **state)
{
	(void)state;
	/* the old type comes from a CREATE TABLE linted before (IF NOT EXISTS:
	 * the table may exist and be full, so the change is checked) */
#define OLD LT "CREATE TABLE IF NOT EXISTS t (v varchar(10), w varchar, n numeric(10,2), i int);\n"
	assert_int_equal(pg(OLD "ALTER TABLE t ALTER COLUMN v TYPE varchar(20);",
			    "column-type-change"), 0);
	assert_int_equal(pg(OLD "ALTER TABLE t ALTER COLUMN v TYPE text;", "column-type-change"), 0);
	assert_int_equal(pg(OLD "ALTER TABLE t ALTER COLUMN v TYPE varchar;", "column-type-change"), 0);
	assert_int_equal(pg(OLD "ALTER TABLE t ALTER COLUMN w TYPE text;", "column-type-change"), 0);
	assert_int_equal(pg(OLD "ALTER TABLE t ALTER COLUMN n TYPE numeric(12,2);",
			    "column-type-change"), 0);
	assert_int_equal(pg(OLD "ALTER TABLE t ALTER COLUMN n TYPE numeric;", "column-type-change"),
			 0);
	/* real rewrites (or checks of every row) */
	assert_int_equal(pg(OLD "ALTER TABLE t ALTER COLUMN v TYPE varchar(5);",
			    "column-type-change"), 1);
	assert_int_equal(pg(OLD "ALTER TABLE t ALTER COLUMN n TYPE numeric(12,3);",
			    "column-type-change"), 1);
	assert_int_equal(pg(OLD "ALTER TABLE t ALTER COLUMN i TYPE bigint;", "column-type-change"), 1);
	assert_int_equal(pg(OLD "ALTER TABLE t ALTER COLUMN v TYPE text USING lower(v);",
			    "column-type-change"), 1);
	/* unknown old type: reported */
	assert_int_equal(pg(LT "ALTER TABLE u ALTER COLUMN v TYPE text;", "column-type-change"), 1);
#undef OLD
}

/* rule's findings in the second of two migrations linted in one run */
static size_t pg2(const char *first, const char *second, const char *rule)
{
	struct finding_list l = FINDING_LIST_INIT;
	struct sm_error err = SM_ERROR_INIT;
	struct lint_ctx *c = NULL;
	size_t n = 0;

	assert_int_equal(lint_begin(&c, "postgresql", NULL, &err), 0);
	assert_int_equal(lint_migration(c, first, "1.sql", 1, 1, &l, &err), 0);
	finding_list_release(&l);
	assert_int_equal(lint_migration(c, second, "2.sql", 1, 1, &l, &err), 0);
	for (size_t i = 0; i < l.n; i++)
		if (!strcmp(l.items[i].check_or_rule, rule))
			n++;
	finding_list_release(&l);
	lint_end(c);
	return n;
}

static void test_pg_created_in_the_run(void **state)
{
	(void)state;
	/* a table created by an earlier pending migration is empty */
	assert_int_equal(pg2("CREATE TABLE t (a int);", "ALTER TABLE t ADD COLUMN b int NOT NULL;",
			     "adding-not-null-column-without-default"), 0);
	assert_int_equal(pg2("CREATE TABLE t (a int);", "CREATE INDEX i ON t (a);",
			     "create-index-non-concurrently"), 0);
	assert_int_equal(pg2("CREATE TABLE u (a int);", "ALTER TABLE t ADD COLUMN b int NOT NULL;",
			     "adding-not-null-column-without-default"), 1);
	/* but dropping what an earlier migration may have filled is still reported */
	assert_int_equal(pg2("CREATE TABLE t (a int); INSERT INTO t SELECT 1;", "DROP TABLE t;",
			     "drop-table"), 1);
}

static void test_pg_syntax_error(void **state)
{
	struct finding_list l = FINDING_LIST_INIT;
	struct sm_error err = SM_ERROR_INIT;

	(void)state;
	assert_int_equal(lint_sql("postgresql", "CREATE TABLE a (x int);\n\nCREAT TABLE b;", "m.sql",
				  10, 1, &l, &err), 0);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.items[0].check_or_rule, "sql-error");
	assert_int_equal(l.items[0].level, LEVEL_FAIL);
	assert_int_equal(l.items[0].line, 12);
	finding_list_release(&l);
	assert_int_equal(pg("CREATE TABLE a (x int);", "sql-error"), 0);
}

static void test_suppression(void **state)
{
	(void)state;
	assert_int_equal(pg("-- safe-migrate:ignore drop-table\nDROP TABLE t;", "drop-table"), 0);
	assert_int_equal(pg("-- safe-migrate:ignore truncate, drop-table\nDROP TABLE t;",
			    "drop-table"), 0);
	assert_int_equal(pg("-- safe-migrate:ignore all\nDROP TABLE t;", "drop-table"), 0);
	/* another rule's name does not silence it */
	assert_int_equal(pg("-- safe-migrate:ignore truncate\nDROP TABLE t;", "drop-table"), 1);
	/* only the statement right after the comment */
	assert_int_equal(pg("-- safe-migrate:ignore drop-table\nDROP TABLE t;\nDROP TABLE u;",
			    "drop-table"), 1);
	/* a name that merely starts with the rule's does not count */
	assert_int_equal(pg("-- safe-migrate:ignore drop-table-x\nDROP TABLE t;", "drop-table"), 1);
	assert_int_equal(sq("CREATE TABLE t (a);\n-- safe-migrate:ignore drop-table\n"
			    "DROP TABLE t;", "drop-table"), 0);
}

static void test_finding_place(void **state)
{
	struct finding_list l = FINDING_LIST_INIT;
	struct sm_error err = SM_ERROR_INIT;

	(void)state;
	assert_int_equal(lint_sql("postgresql", LT "\n-- comment\nTRUNCATE t;", "x.sql", 5, 1,
				  &l, &err), 0);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.items[0].file, "x.sql");
	assert_int_equal(l.items[0].line, 8);
	assert_int_equal(l.items[0].level, LEVEL_WARN);
	assert_non_null(strstr(l.items[0].hint, "snapshot"));
	finding_list_release(&l);
}

static void test_sqlite_rules(void **state)
{
	(void)state;
	/* the scratch copy sees the statements before */
	assert_int_equal(sq("CREATE TABLE t (a, b); INSERT INTO t VALUES (1, 2);", "sql-error"), 0);
	assert_int_equal(sq("INSERT INTO missing VALUES (1);", "sql-error"), 1);
	assert_int_equal(sq("CREATE TABLE t (a) garbage;", "sql-error"), 1);
	/* the scratch database stays in memory and does not run away */
	assert_int_equal(sq("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
			    "SELECT x FROM c;", "sql-error"), 0);
	assert_int_equal(sq("CREATE TABLE t (a); WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL "
			    "SELECT x + 1 FROM c) INSERT INTO t SELECT x FROM c;", "sql-error"), 0);
	assert_int_equal(sq("ATTACH 'lint-must-not-create-this.db' AS x;", "sql-error"), 0);
	assert_int_equal(access("lint-must-not-create-this.db", F_OK), -1);
	/* destructive: only for tables that existed before the migration */
	assert_int_equal(sq("CREATE TABLE t (a); DROP TABLE t;", "drop-table"), 0);
}

/* SQLite rules on a table the migration did not create: two migrations in
 * one lint run, the first creating the table. */
static size_t sq2(const char *second, const char *rule)
{
	struct finding_list l = FINDING_LIST_INIT;
	struct sm_error err = SM_ERROR_INIT;
	struct lint_ctx *c = NULL;
	size_t n = 0;

	assert_int_equal(lint_begin(&c, "sqlite", NULL, &err), 0);
	assert_int_equal(lint_migration(c, "CREATE TABLE t (a INTEGER, b TEXT);", "1.sql", 1, 1, &l,
					&err), 0);
	assert_int_equal(l.n, 0);
	assert_int_equal(lint_migration(c, second, "2.sql", 1, 1, &l, &err), 0);
	for (size_t i = 0; i < l.n; i++)
		if (!strcmp(l.items[i].check_or_rule, rule))
			n++;
	finding_list_release(&l);
	lint_end(c);
	return n;
}

static void test_sqlite_existing_table(void **state)
{
	(void)state;
	assert_int_equal(sq2("DROP TABLE t;", "drop-table"), 1);
	assert_int_equal(sq2("DROP INDEX IF EXISTS i;", "drop-table"), 0);
	assert_int_equal(sq2("ALTER TABLE t DROP COLUMN b;", "drop-column"), 1);
	assert_int_equal(sq2("ALTER TABLE t ADD COLUMN c TEXT;", "drop-column"), 0);
	assert_int_equal(sq2("ALTER TABLE t RENAME COLUMN b TO c;", "rename-column"), 1);
	assert_int_equal(sq2("ALTER TABLE t RENAME COLUMN b TO c;", "drop-column"), 0);
	assert_int_equal(sq2("ALTER TABLE t RENAME TO u;", "rename-table"), 1);
	assert_int_equal(sq2("ALTER TABLE t ADD COLUMN c TEXT;", "rename-table"), 0);
	assert_int_equal(sq2("DELETE FROM t;", "update-or-delete-without-where"), 1);
	assert_int_equal(sq2("DELETE FROM t WHERE a = 1;", "update-or-delete-without-where"), 0);
	assert_int_equal(sq2("UPDATE t SET b = 'x';", "update-or-delete-without-where"), 1);
	assert_int_equal(sq2("UPDATE t SET b = 'x' WHERE a > 2;", "update-or-delete-without-where"), 0);
	assert_int_equal(sq2("-- safe-migrate:ignore drop-column\nALTER TABLE t DROP COLUMN b;",
			     "drop-column"), 0);
}

static void test_touched(void **state)
{
	struct finding_list l = FINDING_LIST_INIT;
	struct sm_error err = SM_ERROR_INIT;
	struct lint_ctx *c = NULL;
	const char *const *t;
	size_t n;

	(void)state;
	assert_int_equal(lint_begin(&c, "postgresql", NULL, &err), 0);
	assert_int_equal(lint_migration(c, LT "ALTER TABLE app.users ADD COLUMN a int; "
					"CREATE INDEX i ON orders (x); SELECT 1;", "m", 1, 1, &l, &err),
			 0);
	t = lint_touched(c, &n);
	assert_int_equal(n, 2);
	assert_string_equal(t[0], "app.users");
	assert_string_equal(t[1], "orders");
	lint_end(c);
	finding_list_release(&l);
}

static void test_rule_table(void **state)
{
	size_t n;
	const struct lint_rule *r = lint_rules(&n);

	(void)state;
	assert_true(n >= 16);
	for (size_t i = 0; i < n; i++)
		if (!strcmp(r[i].name, "concurrently-in-transaction") ||
		    !strcmp(r[i].name, "adding-not-null-column-without-default"))
			assert_int_equal(r[i].level, LEVEL_FAIL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pg_not_null_column),
		cmocka_unit_test(test_pg_create_index),
		cmocka_unit_test(test_pg_concurrently_in_transaction),
		cmocka_unit_test(test_pg_column_type_change),
		cmocka_unit_test(test_pg_set_not_null),
		cmocka_unit_test(test_pg_constraint_not_valid),
		cmocka_unit_test(test_pg_destructive),
		cmocka_unit_test(test_pg_rename),
		cmocka_unit_test(test_pg_where),
		cmocka_unit_test(test_pg_vacuum_cluster),
		cmocka_unit_test(test_pg_lock_timeout),
		cmocka_unit_test(test_pg_lock_timeout_every_lock),
		cmocka_unit_test(test_pg_drop_index),
		cmocka_unit_test(test_pg_if_not_exists),
		cmocka_unit_test(test_pg_do_blocks),
		cmocka_unit_test(test_pg_binary_coercible),
		cmocka_unit_test(test_pg_created_in_the_run),
		cmocka_unit_test(test_pg_syntax_error),
		cmocka_unit_test(test_suppression),
		cmocka_unit_test(test_finding_place),
		cmocka_unit_test(test_sqlite_rules),
		cmocka_unit_test(test_sqlite_existing_table),
		cmocka_unit_test(test_touched),
		cmocka_unit_test(test_rule_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
