/*
 * xalloc: allocation wrappers that abort on exhaustion.
 *
 * Like git's xmalloc family: out of memory is not a condition safe-migrate
 * tries to recover from, because every later step (restore included) needs
 * memory too.  The message goes to stderr before abort().
 */
#ifndef SM_XALLOC_H
#define SM_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Grows *arr (of *alloc elements of size elem) to hold at least need. */
void xgrow(void **arr, size_t *alloc, size_t need, size_t elem);
_Noreturn void xdie_oom(void);

#define ALLOC_GROW(arr, need, alloc) \
	xgrow((void **)&(arr), &(alloc), (need), sizeof(*(arr)))

#endif
