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

/* The reusable summer gives hash_sum_add's digest, empty items included,
 * and a known value: the SHA-256 of "abc" added to zero is that digest. */
static void test_summer_same_digest(void **state)
{
	static const unsigned char abc[HASH_LEN] = {
		0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae,
		0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61,
		0xf2, 0x00, 0x15, 0xad
	};
	unsigned char one[HASH_LEN] = { 0 }, many[HASH_LEN] = { 0 }, first[HASH_LEN] = { 0 };
	struct hash_summer hs = HASH_SUMMER_INIT;
	char row[32];

	(void)state;
	hash_summer_init(&hs);
	hash_summer_add(&hs, first, "abc", 3);
	assert_memory_equal(first, abc, HASH_LEN);
	for (int i = 0; i < 1000; i++) {
		int n = snprintf(row, sizeof(row), "%d\tname %d\n", i, i * 7);

		hash_sum_add(one, row, (size_t)(i % 10 ? n : 0));
		hash_summer_add(&hs, many, row, (size_t)(i % 10 ? n : 0));
	}
	assert_memory_equal(one, many, HASH_LEN);
	hash_summer_release(&hs);
	hash_summer_release(&hs); /* twice is harmless */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sum_any_order_any_split),
		cmocka_unit_test(test_merge_carries),
		cmocka_unit_test(test_summer_same_digest),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
