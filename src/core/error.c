/*
 * error: failure reports for library code (see error.h).
 */
#include "error.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void err_clear(struct sm_error *e)
{
	e->kind = ERR_NONE;
	e->sys_errno = 0;
	e->sqlstate[0] = '\0';
	e->msg[0] = '\0';
}

static void err_vset(struct sm_error *e, enum err_kind kind, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

/* A message cut at the buffer's end must not end in half a UTF-8 character
 * (it goes into --json output and terminals). */
static void trim_partial_utf8(char *s)
{
	size_t n = strlen(s), i = n, need;
	unsigned char lead;

	while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
		i--;
	if (i == 0)
		return;
	lead = (unsigned char)s[i - 1];
	if (lead < 0xC0)
		return;
	need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
	if (n - (i - 1) < need)
		s[i - 1] = '\0';
}

static void err_vset(struct sm_error *e, enum err_kind kind, const char *fmt, va_list ap)
{
	e->kind = kind;
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	trim_partial_utf8(e->msg);
}

int err_set(struct sm_error *e, enum err_kind kind, const char *fmt, ...)
{
	va_list ap;

	if (!e)
		return -1;
	va_start(ap, fmt);
	err_vset(e, kind, fmt, ap);
	va_end(ap);
	e->sys_errno = 0;
	return -1;
}

int err_sys(struct sm_error *e, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	size_t n;

	if (!e)
		return -1;
	va_start(ap, fmt);
	err_vset(e, ERR_FAIL, fmt, ap);
	va_end(ap);
	n = strlen(e->msg);
	snprintf(e->msg + n, sizeof(e->msg) - n, ": %s", strerror(saved));
	trim_partial_utf8(e->msg);
	e->sys_errno = saved;
	if (saved == ENOSPC || saved == EDQUOT)
		e->kind = ERR_NOSPACE;
	errno = saved;
	return -1;
}

int err_prefix(struct sm_error *e, const char *fmt, ...)
{
	char old[sizeof(e->msg)];
	va_list ap;
	size_t n;

	if (!e)
		return -1;
	memcpy(old, e->msg, sizeof(old));
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	n = strlen(e->msg);
	snprintf(e->msg + n, sizeof(e->msg) - n, ": %s", old);
	trim_partial_utf8(e->msg);
	return -1;
}
