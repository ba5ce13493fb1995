/*
 * libFuzzer harness: the migration-file parser (markers, UTF-8 checks).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "migration.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct migration m;
	struct sm_error err = SM_ERROR_INIT;

	memset(&m, 0, sizeof(m));
	if (mig_parse_text(&m, "fuzz.sql", (const char *)data, size, &err) == 0) {
		/* invariants: the sections are NUL-terminated copies of the input */
		if (!m.up_sql || strlen(m.up_sql) > size)
			__builtin_trap();
		if (m.down_sql && strlen(m.down_sql) > size)
			__builtin_trap();
	}
	mig_release(&m);
	return 0;
}
