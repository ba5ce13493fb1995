/*
 * lazy_lib: see lazy_lib.h.
 */
#include "lazy_lib.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

static void __attribute__((noreturn)) unavailable(const char *soname, const char *what)
{
	fprintf(stderr, "safe-migrate: error: cannot load '%s': %s\n", soname, what);
	exit(127);
}

void *lazy_open(const char *soname)
{
	void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);

	if (!h)
		unavailable(soname, dlerror());
	return h;
}

void *lazy_sym(void *h, const char *soname, const char *name)
{
	void *f = dlsym(h, name);

	if (!f) {
		const char *why = dlerror();

		unavailable(soname, why ? why : name);
	}
	return f;
}
