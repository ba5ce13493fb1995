/*
 * lazy_lib: loading a shared library on the program's first call into it
 * (libpq_lazy.c, pg_query_lazy.c), with one way to fail.
 */
#ifndef SM_LAZY_LIB_H
#define SM_LAZY_LIB_H

/* dlopen(soname, RTLD_NOW | RTLD_LOCAL).  If it cannot be loaded, the
 * program stops as the dynamic loader would have stopped it at start-up: a
 * message and exit status 127.  The handle stays open until exit. */
void *lazy_open(const char *soname);

/* The address of h's function name; stops the program (as above) if soname
 * has no such function. */
void *lazy_sym(void *h, const char *soname, const char *name);

#endif
