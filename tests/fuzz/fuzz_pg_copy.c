/*
 * libFuzzer harness: the binary COPY framing (pg_copy.c), which a parallel
 * restore walks over a snapshot's data before the archive is verified, so
 * over bytes that may be hostile.
 * Invariants: nothing is read outside the buffer (the sanitizers); the end
 * of the whole tuples is within it; walking a prefix first, then the rest
 * from where that stopped, ends where one walk over the whole does (the
 * restore walks the bytes as they arrive).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pg_copy.h"
#include "xalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* an exact-size copy: the sanitizers see any read past its end */
	char *buf = xmalloc(size ? size : 1);
	size_t whole = 0, part = 0, split = size ? data[0] % (size + 1) : 0;
	int rc_whole, rc_part;
	struct pgcopy_out out = PGCOPY_OUT_INIT(1);
	const char *msg = buf;
	size_t len = size;

	memcpy(buf, data, size);
	rc_whole = pgcopy_rows_end(buf, size, &whole);
	if (whole > size)
		__builtin_trap();
	rc_part = pgcopy_rows_end(buf, split, &part);
	if (part > split)
		__builtin_trap();
	if (rc_part == 0) {
		rc_part = pgcopy_rows_end(buf, size, &part);
		if (rc_part != rc_whole || part != whole)
			__builtin_trap();
	}
	/* one message of a COPY TO STDOUT: what is kept lies within it */
	if (pgcopy_out_row(&out, &msg, &len) >= 0 &&
	    (msg < buf || msg + len != buf + size))
		__builtin_trap();
	free(buf);
	return 0;
}
