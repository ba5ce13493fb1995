/*
 * Unit tests for database URL parsing and password redaction (src/core/url.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "url.h"

static void test_sqlite(void **state)
{
	struct db_url u;
	struct sm_error err = SM_ERROR_INIT;

	(void)state;
	assert_int_equal(url_parse("sqlite:///app.db", NULL, &u, &err), 0);
	assert_string_equal(u.scheme, "sqlite");
	assert_string_equal(u.path, "app.db");
	url_release(&u);
	assert_int_equal(url_parse("sqlite:////abs/path.db", NULL, &u, &err), 0);
	assert_string_equal(u.path, "/abs/path.db");
	url_release(&u);
	assert_int_equal(url_parse("sqlite:///data/app.db", "/etc/proj", &u, &err), 0);
	assert_string_equal(u.path, "/etc/proj/data/app.db");
	url_release(&u);
	assert_int_equal(url_parse("sqlite+pysqlite:///x.db", NULL, &u, &err), 0);
	url_release(&u);
	assert_int_equal(url_parse("sqlite://host/x.db", NULL, &u, &err), -1);
	assert_int_equal(err.kind, ERR_USAGE);
	assert_int_equal(url_parse("sqlite:///", NULL, &u, &err), -1);
	assert_int_equal(url_parse("sqlite:///:memory:", NULL, &u, &err), -1);
	assert_int_equal(url_parse("mysql://u:secret@h/db", NULL, &u, &err), -1);
	assert_null(strstr(err.msg, "secret"));
	assert_int_equal(url_parse("", NULL, &u, &err), -1);
	assert_int_equal(url_parse("nonsense", NULL, &u, &err), -1);
}

static void test_postgres(void **state)
{
	struct db_url u;
	struct sm_error err = SM_ERROR_INIT;

	(void)state;
	assert_int_equal(url_parse("postgresql+psycopg2://bob:s3cr3t@db:5433/app?sslmode=require",
				   NULL, &u, &err), 0);
	assert_string_equal(u.scheme, "postgresql");
	assert_string_equal(u.conninfo, "postgresql://bob:s3cr3t@db:5433/app?sslmode=require");
	assert_string_equal(u.redacted, "postgresql://bob:***@db:5433/app?sslmode=require");
	url_release(&u);
	assert_int_equal(url_parse("postgres://bob@db/app", NULL, &u, &err), 0);
	assert_string_equal(u.redacted, "postgresql://bob@db/app");
	url_release(&u);
	assert_int_equal(url_parse("host=db dbname=app password=hunter2 user=x", NULL, &u, &err), 0);
	assert_null(strstr(u.redacted, "hunter2"));
	assert_non_null(strstr(u.redacted, "password=***"));
	url_release(&u);
	assert_int_equal(url_parse("postgresql://h/db?user=a&password=pw1", NULL, &u, &err), 0);
	assert_null(strstr(u.redacted, "pw1"));
	url_release(&u);
	/* '@' inside a password */
	{
		char *r = url_redact("postgresql://u:p@ss@h/db");
		assert_string_equal(r, "postgresql://u:***@h/db");
		free(r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sqlite),
		cmocka_unit_test(test_postgres),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
