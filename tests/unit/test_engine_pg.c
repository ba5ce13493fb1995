/*
 * Unit tests of the PostgreSQL engine: the parts that need no server
 * (statement splitting, quoting) always run; the rest runs against
 * SAFE_MIGRATE_TEST_PG_URL (skipped without one, failed under CI=true).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine.h"
#include "engine_pg.h"
#include "xalloc.h"

struct collected {
	int n;
	char *text[16];
	int line[16];
};

static int collect(void *ud, const char *text, size_t len, int line)
{
	struct collected *c = ud;

	if (c->n >= 16)
		return 1;
	c->text[c->n] = xstrndup(text, len);
	c->line[c->n++] = line;
	return 0;
}

static void collected_release(struct collected *c)
{
	for (int i = 0; i < c->n; i++)
		free(c->text[i]);
	c->n = 0;
}

static const struct engine_ops *pg_ops(void)
{
	const struct engine_ops *ops = engine_find("postgresql");

	assert_non_null(ops);
	return ops;
}

static void test_split_keeps_dollar_quoted_bodies(void **state)
{
	struct collected c = { 0 };
	struct sm_error err = SM_ERROR_INIT;
	const char *sql =
		"-- leading comment\n"
		"CREATE TABLE a (x INT);\n"
		"\n"
		"CREATE FUNCTION f() RETURNS INT LANGUAGE plpgsql AS $$\n"
		"BEGIN\n  RETURN 1; -- ; inside\nEND;\n$$;\n"
		"/* block */ INSERT INTO a VALUES (';'), ($q$;$q$)\n";

	(void)state;
	assert_int_equal(pg_ops()->split(sql, collect, &c, &err), 0);
	assert_int_equal(c.n, 3);
	assert_string_equal(c.text[0], "CREATE TABLE a (x INT)");
	assert_int_equal(c.line[0], 2);
	assert_true(!strncmp(c.text[1], "CREATE FUNCTION f()", 19));
	assert_non_null(strstr(c.text[1], "RETURN 1; -- ; inside\nEND;\n$$"));
	assert_int_equal(c.line[1], 4);
	assert_string_equal(c.text[2], "INSERT INTO a VALUES (';'), ($q$;$q$)\n");
	assert_int_equal(c.line[2], 9);
	collected_release(&c);
}

static int stop_at_second(void *ud, const char *text, size_t len, int line)
{
	int *n = ud;

	(void)text;
	(void)len;
	(void)line;
	return ++*n == 2 ? 7 : 0;
}

static void test_split_stops_when_callback_asks(void **state)
{
	struct sm_error err = SM_ERROR_INIT;
	int n = 0;

	(void)state;
	assert_int_equal(pg_ops()->split("SELECT 1; SELECT 2; SELECT 3;", stop_at_second, &n, &err),
			 7);
	assert_int_equal(n, 2);
}

static void test_split_syntax_error_names_line(void **state)
{
	struct collected c = { 0 };
	struct sm_error err = SM_ERROR_INIT;

	(void)state;
	/* the multi-byte character before the error must not shift the line */
	assert_int_equal(pg_ops()->split("SELECT 'é';\n\nSELECT 1 frm x y;\n", collect, &c, &err),
			 -1);
	assert_int_equal(c.n, 0);
	assert_non_null(strstr(err.msg, "line 3: ERROR:  syntax error at or near \"x\""));
	assert_string_equal(err.sqlstate, "42601");
}

static void test_split_empty_and_comment_only(void **state)
{
	struct collected c = { 0 };
	struct sm_error err = SM_ERROR_INIT;

	(void)state;
	assert_int_equal(pg_ops()->split("", collect, &c, &err), 0);
	assert_int_equal(pg_ops()->split("-- nothing\n/* here */\n;;\n", collect, &c, &err), 0);
	assert_int_equal(c.n, 0);
}

/* The client encoding our sessions speak: UTF8, or the database's own
 * where the server has no conversion to UTF8. */
static void test_client_encoding(void **state)
{
	(void)state;
	assert_string_equal(engine_pg_client_encoding("UTF8"), "UTF8");
	assert_string_equal(engine_pg_client_encoding("LATIN1"), "UTF8");
	assert_string_equal(engine_pg_client_encoding("EUC_JP"), "UTF8");
	assert_string_equal(engine_pg_client_encoding(NULL), "UTF8");
	assert_string_equal(engine_pg_client_encoding("SQL_ASCII"), "SQL_ASCII");
	assert_string_equal(engine_pg_client_encoding("MULE_INTERNAL"), "MULE_INTERNAL");
}

static void test_quoting(void **state)
{
	struct strbuf sb = STRBUF_INIT;

	(void)state;
	pg_ops()->quote_ident(&sb, "Mixed \"Case\"");
	assert_string_equal(sb.buf, "\"Mixed \"\"Case\"\"\"");
	sb_reset(&sb);
	pg_ops()->quote_literal(&sb, "it's");
	assert_string_equal(sb.buf, "'it''s'");
	sb_reset(&sb);
	pg_ops()->quote_literal(&sb, "C:\\dir's");
	assert_string_equal(sb.buf, "E'C:\\\\dir''s'");
	sb_release(&sb);
}

static void test_tx_control_detection(void **state)
{
	static const char *const yes[] = { "BEGIN", "begin transaction", "START TRANSACTION",
					   "COMMIT", "commit work", "END", "ABORT", "ROLLBACK",
					   "rollback transaction", "End Transaction" };
	static const char *const no[] = { "ROLLBACK TO SAVEPOINT s", "rollback transaction to s",
					  "SAVEPOINT s", "RELEASE s", "SELECT 1", "BEGINNING",
					  "CREATE TABLE begin (x int)", "DO $$ BEGIN END $$", "" };

	(void)state;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		assert_true(engine_is_tx_control(yes[i], strlen(yes[i])));
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		assert_false(engine_is_tx_control(no[i], strlen(no[i])));
}

/* ---- with a server ------------------------------------------------------ */

static struct engine *connect_or_skip(void)
{
	const char *url_text = getenv("SAFE_MIGRATE_TEST_PG_URL");
	const char *ci = getenv("CI");
	struct db_url url = DB_URL_INIT;
	struct sm_error err = SM_ERROR_INIT;
	struct engine *e = NULL;

	if (!url_text) {
		if (ci && !strcmp(ci, "true"))
			fail_msg("CI=true but SAFE_MIGRATE_TEST_PG_URL is not set");
		return NULL;
	}
	assert_int_equal(url_parse(url_text, NULL, &url, &err), 0);
	if (engine_open(&e, &url, 0, &err) < 0)
		fail_msg("%s", err.msg);
	url_release(&url);
	return e;
}

static void test_query_rows_params_and_nulls(void **state)
{
	struct engine *e = connect_or_skip();
	struct eng_rows rows = ENG_ROWS_INIT;
	struct sm_error err = SM_ERROR_INIT;
	const char *params[] = { "abc", NULL };

	(void)state;
	if (!e)
		skip();
	assert_int_equal(e->ops->query(e, "SELECT $1::text AS a, $2::text AS b, 1 + 1 AS c "
				       "UNION ALL SELECT 'x', 'y', 3", 2, params, &rows, &err), 0);
	assert_int_equal(rows.nrows, 2);
	assert_int_equal(rows.ncols, 3);
	assert_string_equal(rows.colnames[0], "a");
	assert_string_equal(rows.colnames[2], "c");
	assert_string_equal(rows_get(&rows, 0, 0), "abc");
	assert_null(rows_get(&rows, 0, 1));
	assert_string_equal(rows_get(&rows, 0, 2), "2");
	assert_string_equal(rows_get(&rows, 1, 1), "y");
	rows_release(&rows);
	assert_int_equal(e->ops->query(e, "SELECT * FROM no_such_table", 0, NULL, &rows, &err), -1);
	assert_string_equal(err.sqlstate, "42P01");
	assert_int_equal(rows.nrows, 0);
	engine_close(e);
}

static void test_transactions_and_table_exists(void **state)
{
	struct engine *e = connect_or_skip();
	struct sm_error err = SM_ERROR_INIT;
	struct exec_source src = { "m.sql", 10 };
	int exists = -1;

	(void)state;
	if (!e)
		skip();
	assert_int_equal(e->ops->begin(e, &err), 0);
	assert_int_equal(engine_exec(e, "CREATE TEMP TABLE \"Tmp Case\" (x INT); "
				     "INSERT INTO \"Tmp Case\" VALUES (1);", &err), 0);
	assert_int_equal(e->ops->table_exists(e, "Tmp Case", &exists, &err), 0);
	assert_int_equal(exists, 1);
	assert_int_equal(e->ops->table_exists(e, "tmp case", &exists, &err), 0);
	assert_int_equal(exists, 0);
	/* a failing statement names its line; the transaction is then aborted */
	assert_int_equal(e->ops->exec_script(e, "SELECT 1;\n\nSELECT 1/0;", &src, &err), -1);
	assert_non_null(strstr(err.msg, "'m.sql', line 12: ERROR:  division by zero (SQLSTATE 22012)"));
	assert_int_equal(e->ops->commit(e, &err), -1);
	assert_int_equal(e->ops->rollback(e, &err), 0);
	assert_int_equal(e->ops->table_exists(e, "Tmp Case", &exists, &err), 0);
	assert_int_equal(exists, 0);
	/* transaction control inside a migration's transaction is refused */
	assert_int_equal(e->ops->begin(e, &err), 0);
	assert_int_equal(e->ops->exec_script(e, "SELECT 1;\ncommit;", &src, &err), -1);
	assert_non_null(strstr(err.msg, "line 11: 'commit' would end the transaction"));
	assert_int_equal(e->ops->exec_script(e, "SAVEPOINT s; ROLLBACK TO SAVEPOINT s;", &src, &err),
			 0);
	assert_int_equal(e->ops->rollback(e, &err), 0);
	/* COPY data cannot come from a script: refused, not hung */
	assert_int_equal(engine_exec(e, "CREATE TEMP TABLE c (x INT);\nCOPY c FROM STDIN;", &err),
			 -1);
	assert_non_null(strstr(err.msg, "line 2: ERROR:  COPY from stdin failed: COPY FROM STDIN "
			       "is not supported"));
	assert_int_equal(engine_exec(e, "COPY (SELECT 1) TO STDOUT; SELECT 2;", &err), 0);
	engine_close(e);
}

static void test_lock_version_and_native(void **state)
{
	struct engine *e = connect_or_skip(), *other = NULL;
	struct sm_error err = SM_ERROR_INIT;
	struct strbuf sb = STRBUF_INIT;

	(void)state;
	if (!e)
		skip();
	assert_non_null(engine_native(e));
	assert_int_equal(e->ops->server_version(e, &sb, &err), 0);
	assert_true(!strncmp(sb.buf, "PostgreSQL ", 11));
	assert_null(strchr(sb.buf + 11, ' '));
	sb_release(&sb);
	other = connect_or_skip();
	assert_int_equal(e->ops->lock(e, 0, &err), 0);
	assert_int_equal(other->ops->lock(other, 0, &err), -1);
	assert_int_equal(err.kind, ERR_LOCKED);
	assert_non_null(strstr(err.msg, "application 'safe-migrate'"));
	e->ops->unlock(e);
	assert_int_equal(other->ops->lock(other, 0, &err), 0);
	engine_close(other); /* releases the lock with the session */
	assert_int_equal(e->ops->lock(e, 1000, &err), 0);
	assert_int_equal(e->ops->set_timeouts(e, 1500, 2500, &err), 0);
	{
		char *v = NULL;
		assert_int_equal(engine_scalar(e, "SELECT current_setting('lock_timeout') || ' ' || "
					       "current_setting('statement_timeout')", 0, NULL, &v,
					       &err), 0);
		assert_string_equal(v, "1500ms 2500ms");
		free(v);
	}
	engine_close(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split_keeps_dollar_quoted_bodies),
		cmocka_unit_test(test_client_encoding),
		cmocka_unit_test(test_split_stops_when_callback_asks),
		cmocka_unit_test(test_split_syntax_error_names_line),
		cmocka_unit_test(test_split_empty_and_comment_only),
		cmocka_unit_test(test_quoting),
		cmocka_unit_test(test_tx_control_detection),
		cmocka_unit_test(test_query_rows_params_and_nulls),
		cmocka_unit_test(test_transactions_and_table_exists),
		cmocka_unit_test(test_lock_version_and_native),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
