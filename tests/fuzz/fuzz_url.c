/*
 * libFuzzer harness: database URL parsing and password redaction.
 * Invariant: a password given in the userinfo never survives redaction.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "url.h"
#include "xalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = xstrndup((const char *)data, size);
	struct db_url u;
	struct sm_error err = SM_ERROR_INIT;
	char *red = url_redact(text);

	free(red);
	if (url_parse(text, "/base", &u, &err) == 0) {
		if (!u.scheme || !u.redacted)
			__builtin_trap();
		/* the credentials libpq would read (user:password@, first '@'
		 * before the path) never appear in the printable form */
		if (u.conninfo && strstr(u.conninfo, "://")) {
			const char *auth = strstr(u.conninfo, "://") + 3;
			size_t n = strcspn(auth, "@/");
			if (auth[n] == '@') {
				char *cred = xstrndup(auth, n + 1);
				const char *colon = strchr(cred, ':');
				if (colon && strlen(colon) > 2 && strstr(u.redacted, cred))
					__builtin_trap();
				free(cred);
			}
		}
		url_release(&u);
	}
	free(text);
	return 0;
}
