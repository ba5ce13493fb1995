/*
 * libFuzzer harness: the canonical schema text parser (safety/schema.c).
 * Whatever parses must print back to text that parses to the same text.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct schema_model a = SCHEMA_MODEL_INIT, b = SCHEMA_MODEL_INIT;
	struct strbuf ta = STRBUF_INIT, tb = STRBUF_INIT;
	struct sm_error err = SM_ERROR_INIT;
	char *text = malloc(size + 1);

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (schema_load_text(text, "fuzz", &a, &err) == 0) {
		schema_canonical_text(&a, &ta);
		if (schema_load_text(ta.buf, "again", &b, &err) < 0)
			__builtin_trap();
		schema_canonical_text(&b, &tb);
		if (strcmp(ta.buf, tb.buf))
			__builtin_trap();
	}
	schema_release(&a);
	schema_release(&b);
	sb_release(&ta);
	sb_release(&tb);
	free(text);
	return 0;
}
