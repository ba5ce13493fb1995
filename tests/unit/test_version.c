/*
 * Unit tests for version parsing and ordering (src/migrate/version.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "version.h"

static void test_prefix(void **state)
{
	(void)state;
	assert_int_equal(ver_prefix_len("20260223_143052_add_user.sql"), 15);
	assert_int_equal(ver_prefix_len("0004_add_audit_log.up.sql"), 4);
	assert_int_equal(ver_prefix_len("2.8.1.sql"), 5);
	assert_int_equal(ver_prefix_len("2008030300.sql"), 10);
	assert_int_equal(ver_prefix_len("1_2_3x"), 5);
	assert_int_equal(ver_prefix_len("1__2"), 1);
	assert_int_equal(ver_prefix_len("abc"), 0);
	assert_int_equal(ver_prefix_len(""), 0);
	assert_true(ver_valid("2.10.0"));
	assert_false(ver_valid("2.10.0a"));
	assert_false(ver_valid("+1"));
}

static void test_order(void **state)
{
	(void)state;
	assert_true(ver_cmp("2.9.0", "2.10.0") < 0);
	assert_true(ver_cmp("2.10.0", "2.9.0") > 0);
	assert_true(ver_cmp("0004", "4") == 0);
	assert_true(ver_cmp("9", "10") < 0);
	assert_true(ver_cmp("2.9", "2.9.1") < 0);
	assert_true(ver_cmp("20260223_143052", "20260223_143053") < 0);
	assert_true(ver_cmp("20260223_143052", "20260224_000000") < 0);
	assert_true(ver_cmp("99999999999999999999999", "100000000000000000000000") < 0);
	assert_true(ver_cmp("1", "1") == 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_prefix),
		cmocka_unit_test(test_order),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
