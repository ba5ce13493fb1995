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
	/* the driver's client options are ignored; what changes how the file
	 * is opened is refused, never dropped */
	assert_int_equal(url_parse("sqlite:///x.db?check_same_thread=false&timeout=5", NULL, &u,
				   &err), 0);
	assert_string_equal(u.path, "x.db");
	url_release(&u);
	assert_int_equal(url_parse("sqlite:///x.db?timeout=5&mode=ro", NULL, &u, &err), -1);
	assert_non_null(strstr(err.msg, "'mode=ro'"));
	assert_int_equal(url_parse("sqlite:///x.db?immutable=1", NULL, &u, &err), -1);
	assert_int_equal(url_parse("sqlite:///x.db?timeout", NULL, &u, &err), 0);
	url_release(&u);
	assert_int_equal(url_parse("sqlite:///x.db?", NULL, &u, &err), 0);
	url_release(&u);
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

static void expect_redacted(const char *text, const char *want)
{
	char *r = url_redact(text);

	assert_string_equal(r, want);
	free(r);
}

static void test_password_params_in_every_spelling(void **state)
{
	struct db_url u;
	struct sm_error err = SM_ERROR_INIT;

	(void)state;
	/* libpq allows spaces around '=' in keyword/value strings */
	expect_redacted("host=h password = s3cret dbname=d", "host=h password = *** dbname=d");
	expect_redacted("password=s3cret", "password=***");
	/* quoted, with escapes; bare with an escaped space; '&' is not special */
	expect_redacted("host=h password='a \\' b' user=u", "host=h password=*** user=u");
	expect_redacted("host=h password=ab\\ cd user=u", "host=h password=*** user=u");
	expect_redacted("host=h password=ab&cd user=u", "host=h password=*** user=u");
	/* a misspelt keyword may still hold the secret */
	expect_redacted("host=h PASSWORD=s3cret", "host=h PASSWORD=***");
	/* URI query keys are percent-decoded by libpq */
	expect_redacted("postgresql://h/d?pass%77ord=s3cret&sslmode=disable",
			"postgresql://h/d?pass%77ord=***&sslmode=disable");
	expect_redacted("postgresql://h/d?sslmode=disable&Password=s3cret",
			"postgresql://h/d?sslmode=disable&Password=***");
	/* not a parameter name */
	expect_redacted("host=h dbname=mypassword=x", "host=h dbname=mypassword=x");
	/* the +driver suffix is dropped for libpq, and the password never shows */
	assert_int_equal(url_parse("postgresql+asyncpg://bob:pw9@db/app?password = x", NULL, &u,
				   &err), 0);
	assert_string_equal(u.conninfo, "postgresql://bob:pw9@db/app?password = x");
	assert_null(strstr(u.redacted, "pw9"));
	url_release(&u);
	assert_int_equal(url_parse("POSTGRESQL+psycopg2://bob@db/app", NULL, &u, &err), 0);
	assert_string_equal(u.scheme, "postgresql");
	assert_string_equal(u.conninfo, "postgresql://bob@db/app");
	url_release(&u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sqlite),
		cmocka_unit_test(test_postgres),
		cmocka_unit_test(test_password_params_in_every_spelling),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
