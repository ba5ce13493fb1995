/*
 * test_pg_copy: the binary COPY framing.  A COPY TO STDOUT's first message
 * carries the header in front of its first row and the trailer comes
 * alone (or, with no rows, right after the header): pgcopy_out_row keeps
 * the rows only.  pgcopy_rows_end finds the end of the whole tuples of a
 * buffer cut anywhere, and calls a malformed tuple so.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pg_copy.h"

/* Two tuples: (1, NULL) and ("abc"). */
static const unsigned char tuples[] = {
	0, 2, 0, 0, 0, 4, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, /* 14 bytes */
	0, 1, 0, 0, 0, 3, 'a', 'b', 'c',                      /* 9 bytes */
};

static void test_out_rows(void **state)
{
	unsigned char first[PGCOPY_HEADER_LEN + 14], empty[PGCOPY_HEADER_LEN + 2];
	struct pgcopy_out out = PGCOPY_OUT_INIT(1), none = PGCOPY_OUT_INIT(1);
	struct pgcopy_out text = PGCOPY_OUT_INIT(0);
	const char *msg;
	size_t len;

	(void)state;
	memcpy(first, pgcopy_header, PGCOPY_HEADER_LEN);
	memcpy(first + PGCOPY_HEADER_LEN, tuples, 14);
	msg = (const char *)first;
	len = sizeof(first);
	assert_int_equal(pgcopy_out_row(&out, &msg, &len), 1);
	assert_ptr_equal(msg, (const char *)first + PGCOPY_HEADER_LEN);
	assert_int_equal(len, 14);
	/* the next row is kept whole; the trailer is no row */
	msg = (const char *)tuples + 14;
	len = 9;
	assert_int_equal(pgcopy_out_row(&out, &msg, &len), 1);
	assert_int_equal(len, 9);
	msg = (const char *)pgcopy_trailer;
	len = PGCOPY_TRAILER_LEN;
	assert_int_equal(pgcopy_out_row(&out, &msg, &len), 0);
	/* no rows: header and trailer in one message */
	memcpy(empty, pgcopy_header, PGCOPY_HEADER_LEN);
	memcpy(empty + PGCOPY_HEADER_LEN, pgcopy_trailer, PGCOPY_TRAILER_LEN);
	msg = (const char *)empty;
	len = sizeof(empty);
	assert_int_equal(pgcopy_out_row(&none, &msg, &len), 0);
	/* a first message without the signature */
	none.started = 0;
	msg = (const char *)tuples;
	len = sizeof(tuples);
	assert_int_equal(pgcopy_out_row(&none, &msg, &len), -1);
	/* text: every message is a row, as it is */
	msg = "1\tx\n";
	len = 4;
	assert_int_equal(pgcopy_out_row(&text, &msg, &len), 1);
	assert_int_equal(len, 4);
}

static void test_rows_end(void **state)
{
	size_t cut, pos;
	unsigned char bad[] = { 0, 1, 0xff, 0xff, 0xff, 0xfe };

	(void)state;
	for (cut = 0; cut <= sizeof(tuples); cut++) {
		pos = 0;
		assert_int_equal(pgcopy_rows_end((const char *)tuples, cut, &pos), 0);
		assert_int_equal(pos, cut < 14 ? 0 : cut < sizeof(tuples) ? 14 : sizeof(tuples));
	}
	/* walking on from where a cut stopped */
	pos = 0;
	pgcopy_rows_end((const char *)tuples, 20, &pos);
	assert_int_equal(pgcopy_rows_end((const char *)tuples, sizeof(tuples), &pos), 0);
	assert_int_equal(pos, sizeof(tuples));
	/* a length of -2, and the trailer among the rows */
	pos = 0;
	assert_int_equal(pgcopy_rows_end((const char *)bad, sizeof(bad), &pos), -1);
	assert_int_equal(pos, 0);
	pos = 0;
	assert_int_equal(pgcopy_rows_end((const char *)pgcopy_trailer, 2, &pos), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_out_rows),
		cmocka_unit_test(test_rows_end),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
