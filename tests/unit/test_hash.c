/*
 * Unit tests for the order-independent digest of a multiset (src/core/hash.c):
 * backup --jobs adds up a table's rows read in several ranges with
 * hash_sum_merge, and must get what one pass over them gets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "hash.h"

static void test_sum_any_order_any_split(void **state)
{
	unsigned char all[HASH_LEN] = { 0 }, rev[HASH_LEN] = { 0 };
	char row[32];

	(void)state;
	for (int i = 0; i < 1000; i++) {
		int n = snprintf(row, sizeof(row), "%d\tname %d\n", i, i * 7);

		hash_sum_add(all, row, (size_t)n);
	}
	for (int i = 1000; i-- > 0;) {
		int n = snprintf(row, sizeof(row), "%d\tname %d\n", i, i * 7);

		hash_sum_add(rev, row, (size_t)n);
	}
	assert_memory_equal(all, rev, HASH_LEN);
	/* split in three ranges of any sizes, merged in any order */
	for (int cut = 1; cut < 1000; cut += 137) {
		unsigned char part[3][HASH_LEN], merged[HASH_LEN] = { 0 };

		memset(part, 0, sizeof(part));
		for (int i = 0; i < 1000; i++) {
			int n = snprintf(row, sizeof(row), "%d\tname %d\n", i, i * 7);

			hash_sum_add(part[i < cut ? 0 : i < 700 ? 1 : 2], row, (size_t)n);
		}
		hash_sum_merge(merged, part[2]);
		hash_sum_merge(merged, part[0]);
		hash_sum_merge(merged, part[1]);
		assert_memory_equal(merged, all, HASH_LEN);
	}
}

static void test_merge_carries(void **state)
{
	unsigned char acc[HASH_LEN], one[HASH_LEN] = { 0 }, zero[HASH_LEN] = { 0 };

	(void)state;
	/* 2^256 - 1 plus 1 wraps to 0: the carry crosses every byte */
	memset(acc, 0xff, sizeof(acc));
	one[HASH_LEN - 1] = 1;
	hash_sum_merge(acc, one);
	assert_memory_equal(acc, zero, HASH_LEN);
	/* merging an empty multiset (zero) changes nothing */
	hash_sum_add(acc, "x", 1);
	memcpy(one, acc, HASH_LEN);
	hash_sum_merge(acc, zero);
	assert_memory_equal(acc, one, HASH_LEN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sum_any_order_any_split),
		cmocka_unit_test(test_merge_carries),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
