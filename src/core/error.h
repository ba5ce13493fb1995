/*
 * error: how library code reports failure.
 *
 * Library functions never print and never exit.  They return 0 on success or
 * -1 on failure and fill a caller-supplied struct sm_error: a kind (which the
 * CLI maps to an exit code), a message in the house style
 * ("cannot open 'x': No such file or directory"), the saved errno and, for
 * PostgreSQL, the SQLSTATE.  Only src/cli prints errors.
 */
#ifndef SM_ERROR_H
#define SM_ERROR_H

#include <stdarg.h>

enum err_kind {
	ERR_NONE = 0,
	ERR_FAIL,        /* ordinary failure; nothing was changed */
	ERR_USAGE,       /* bad arguments or configuration */
	ERR_BLOCKED,     /* a safety check or lint rule blocked the run */
	ERR_DAMAGED,     /* verification or validation found problems */
	ERR_NOSPACE,     /* not enough disk space */
	ERR_LOCKED,      /* another migration holds the lock */
	ERR_INTERRUPTED, /* a signal stopped the operation */
};

struct sm_error {
	enum err_kind kind;
	int sys_errno;      /* errno at the time of failure, or 0 */
	char sqlstate[6];   /* PostgreSQL SQLSTATE, or "" */
	char msg[2048];
};

#define SM_ERROR_INIT { ERR_NONE, 0, "", "" }

void err_clear(struct sm_error *e);
/* Sets kind and message; returns -1 so callers can `return err_set(...)`. */
int err_set(struct sm_error *e, enum err_kind kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Like err_set(ERR_FAIL) with ": strerror(errno)" appended; saves errno
 * (ENOSPC and EDQUOT map to ERR_NOSPACE). */
int err_sys(struct sm_error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefixes the existing message with "context: ". */
int err_prefix(struct sm_error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
