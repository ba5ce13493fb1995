/*
 * Unit tests for migration file parsing and discovery (src/migrate/migration.c).
 */
#include "unit_tmpdir.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "migration.h"

static void parse(struct migration *m, const char *text, int expect_ok)
{
	struct sm_error err = SM_ERROR_INIT;
	int rc;

	memset(m, 0, sizeof(*m));
	rc = mig_parse_text(m, "t.sql", text, strlen(text), &err);
	if (expect_ok && rc != 0)
		fail_msg("parse failed: %s", err.msg);
	if (!expect_ok)
		assert_int_equal(rc, -1);
}

static void test_markers(void **state)
{
	struct migration m;

	(void)state;
	parse(&m, "-- comment\n-- migrate:up\nCREATE TABLE a(x int);\n\n-- migrate:down\nDROP TABLE a;\n", 1);
	assert_string_equal(m.up_sql, "CREATE TABLE a(x int);\n\n");
	assert_string_equal(m.down_sql, "DROP TABLE a;\n");
	assert_int_equal(m.up_line, 3);
	assert_int_equal(m.down_line, 6);
	assert_int_equal(m.up_no_tx, 0);
	mig_release(&m);

	parse(&m, "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY i ON a(x);\n"
		  "-- migrate:down transaction:false\nDROP INDEX CONCURRENTLY i;\n", 1);
	assert_int_equal(m.up_no_tx, 1);
	assert_int_equal(m.down_no_tx, 1);
	mig_release(&m);

	/* no markers: up-only */
	parse(&m, "CREATE TABLE a(x int);\n", 1);
	assert_null(m.down_sql);
	assert_int_equal(m.up_line, 1);
	mig_release(&m);

	/* an empty up is a no-op; an empty or comment-only down is no down */
	parse(&m, "-- migrate:up\n   \n-- migrate:down\n-- nothing\n/* x */\n", 1);
	assert_true(mig_is_blank(m.up_sql));
	assert_null(m.down_sql);
	mig_release(&m);
	parse(&m, "", 1);
	assert_true(mig_is_blank(m.up_sql));
	mig_release(&m);

	/* morph's marker */
	parse(&m, "-- morph:nontransactional\nVACUUM;\n", 1);
	assert_int_equal(m.up_no_tx, MIG_TX_MARKER);
	mig_release(&m);

	/* "-- migrate:upgrade" is not a marker */
	parse(&m, "-- migrate:upgrade notes\nSELECT 1;\n", 1);
	assert_null(m.down_sql);
	mig_release(&m);
}

static void test_bad_markers(void **state)
{
	struct migration m;

	(void)state;
	parse(&m, "-- migrate:down\nDROP TABLE a;\n-- migrate:up\nCREATE TABLE a(x int);\n", 0);
	mig_release(&m);
	parse(&m, "-- migrate:up\nSELECT 1;\n-- migrate:up\nSELECT 2;\n", 0);
	mig_release(&m);
	parse(&m, "-- migrate:up transaction:maybe\nSELECT 1;\n", 0);
	mig_release(&m);
	parse(&m, "SELECT '\xff\xfe';\n", 0);
	mig_release(&m);
}

static char tmpdir[64];

static void put(const char *rel, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_layouts(void **state)
{
	struct migration_set set;
	struct sm_error err = SM_ERROR_INIT;
	char sub[128];
	char *dirs[1] = { tmpdir };

	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "%s", "/tmp/sm-unit-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	snprintf(sub, sizeof(sub), "%s/billing", tmpdir);
	mkdir(sub, 0755);
	put("0001_markers.sql", "-- migrate:up\nSELECT 1;\n-- migrate:down\nSELECT 2;\n");
	put("0002_pair.up.sql", "SELECT 3;\n");
	put("0002_pair.down.sql", "SELECT 4;\n");
	put("0003.sql", "SELECT 5;\n");
	put("billing/0004_notes.sql", "SELECT 6;\n");
	put("billing/0004_notes_rollback.sql", "SELECT 7;\n");
	put("README.md", "not a migration\n");
	put("0005_flags..up.sql", "SELECT 9;\n");
	put("0005_flags.down.sql", "-- migrate:down transaction:false\nSELECT 10;\n");
	put("0006_e.up.sql", "");
	put("0006_e.down.sql", "\n-- empty\n");
	assert_int_equal(mig_load(&set, dirs, 1, &err), 0);
	assert_int_equal(set.n, 6);
	assert_string_equal(set.items[4].description, "flags");
	assert_string_equal(set.items[4].down_sql, "SELECT 10;\n");
	assert_int_equal(set.items[4].down_no_tx, MIG_TX_MARKER);
	assert_true(mig_is_blank(set.items[5].up_sql));
	assert_null(set.items[5].down_sql);
	assert_string_equal(set.items[0].version, "0001");
	assert_string_equal(set.items[0].description, "markers");
	assert_string_equal(set.items[0].down_sql, "SELECT 2;\n");
	assert_string_equal(set.items[1].up_sql, "SELECT 3;\n");
	assert_string_equal(set.items[1].down_sql, "SELECT 4;\n");
	assert_null(set.items[2].down_sql);
	assert_string_equal(set.items[3].version, "0004");
	assert_string_equal(set.items[3].down_sql, "SELECT 7;\n");
	mig_set_release(&set);

	/* a duplicate version names both files */
	put("4_again.sql", "SELECT 8;\n");
	assert_int_equal(mig_load(&set, dirs, 1, &err), -1);
	assert_non_null(strstr(err.msg, "duplicate"));
	assert_non_null(strstr(err.msg, "4_again.sql"));
	assert_non_null(strstr(err.msg, "0004_notes.sql"));
	assert_int_equal(unit_remove_tree(tmpdir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_markers),
		cmocka_unit_test(test_bad_markers),
		cmocka_unit_test(test_layouts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
