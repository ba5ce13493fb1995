/*
 * Unit tests for the INI config reader (src/core/config.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static char path[64];

static void write_cfg(const char *text)
{
	FILE *f;

	snprintf(path, sizeof(path), "%s", "/tmp/sm-cfg-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	fputs(text, f);
	fclose(f);
}

static void test_read(void **state)
{
	struct cfg_file c;
	struct sm_error err = SM_ERROR_INIT;

	(void)state;
	write_cfg("[alembic]\nscript_location = x\n[safe-migrate]\n"
		  "database_url = sqlite:///app.db\nmigrations_dir = db/a, db/b\n"
		  "backup_dir = /var/backups/x\nlock_timeout = 5s\nmax_blocking = 2s\n"
		  "max_rewrite = 100MB\nlint_ignore = R1\nexpected_schema = s.sql\n"
		  "encryption_key_file = keys/k\nencrypt_to = /etc/dr.pub\n"
		  "encryption_cipher = chacha20-poly1305\n");
	assert_int_equal(cfg_load(path, &c, &err), 0);
	assert_string_equal(c.database_url, "sqlite:///app.db");
	assert_int_equal(c.n_migrations_dirs, 2);
	assert_string_equal(c.migrations_dirs[0], "/tmp/db/a");
	assert_string_equal(c.migrations_dirs[1], "/tmp/db/b");
	assert_string_equal(c.backup_dir, "/var/backups/x");
	assert_string_equal(c.lock_timeout, "5s");
	assert_string_equal(c.max_blocking, "2s");
	assert_string_equal(c.max_rewrite, "100MB");
	/* expected_schema once freed lint_ignore (a use after free in main.c) */
	assert_string_equal(c.lint_ignore, "R1");
	assert_string_equal(c.expected_schema, "/tmp/s.sql");
	assert_string_equal(c.encryption_key_file, "/tmp/keys/k");
	assert_string_equal(c.encrypt_to, "/etc/dr.pub");
	assert_string_equal(c.encryption_cipher, "chacha20-poly1305");
	assert_string_equal(c.dir, "/tmp");
	cfg_release(&c);
	unlink(path);
}

static void test_errors(void **state)
{
	struct cfg_file c;
	struct sm_error err = SM_ERROR_INIT;

	(void)state;
	write_cfg("[safe-migrate]\ndatabse_url = typo\n");
	assert_int_equal(cfg_load(path, &c, &err), -1);
	assert_non_null(strstr(err.msg, "databse_url"));
	unlink(path);
	write_cfg("[safe-migrate\nx\n");
	assert_int_equal(cfg_load(path, &c, &err), -1);
	assert_int_equal(err.kind, ERR_USAGE);
	unlink(path);
	assert_int_equal(cfg_load("/nonexistent/sm.ini", &c, &err), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_read),
		cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
