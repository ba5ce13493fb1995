/*
 * libFuzzer harness: lint (safety/lint*.c) on arbitrary migration SQL, in
 * both dialects: the PostgreSQL parse-tree walk and the SQLite scratch
 * database must neither crash nor leak, whatever the input.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct finding_list l = FINDING_LIST_INIT;
	struct sm_error err = SM_ERROR_INIT;
	char *sql = malloc(size + 1);

	if (!sql)
		return 0;
	memcpy(sql, data, size);
	sql[size] = '\0';
	lint_sql("postgresql", sql, "fuzz.sql", 1, 1, &l, &err);
	lint_sql("sqlite", sql, "fuzz.sql", 1, 0, &l, &err);
	for (size_t i = 0; i < l.n; i++)
		if (!l.items[i].message || l.items[i].line < 1)
			__builtin_trap();
	finding_list_release(&l);
	free(sql);
	return 0;
}
