/*
 * strbuf: growable NUL-terminated strings (see strbuf.h).
 */
#include "strbuf.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

char sb_slopbuf[1];

void sb_init(struct strbuf *sb, size_t hint)
{
	sb->buf = sb_slopbuf;
	sb->len = 0;
	sb->alloc = 0;
	if (hint)
		sb_grow(sb, hint);
}

void sb_release(struct strbuf *sb)
{
	if (sb->alloc)
		free(sb->buf);
	sb_init(sb, 0);
}

void sb_reset(struct strbuf *sb)
{
	sb_setlen(sb, 0);
}

void sb_grow(struct strbuf *sb, size_t extra)
{
	size_t need;

	if (extra > SIZE_MAX - sb->len - 1)
		xdie_oom();
	need = sb->len + extra + 1;
	if (need <= sb->alloc)
		return;
	size_t nalloc = sb->alloc ? sb->alloc : 64;
	while (nalloc < need)
		nalloc = nalloc > SIZE_MAX / 2 ? need : nalloc * 2;
	if (sb->alloc) {
		sb->buf = xrealloc(sb->buf, nalloc);
	} else {
		sb->buf = xmalloc(nalloc);
		sb->buf[0] = '\0';
	}
	sb->alloc = nalloc;
}

void sb_setlen(struct strbuf *sb, size_t len)
{
	if (!sb->alloc) {
		/* only an empty slop buffer can be "set" to zero */
		return;
	}
	sb->len = len;
	sb->buf[len] = '\0';
}

void sb_add(struct strbuf *sb, const void *data, size_t len)
{
	if (!len)
		return;
	sb_grow(sb, len);
	memcpy(sb->buf + sb->len, data, len);
	sb->len += len;
	sb->buf[sb->len] = '\0';
}

void sb_adds(struct strbuf *sb, const char *s)
{
	sb_add(sb, s, strlen(s));
}

void sb_addch(struct strbuf *sb, int c)
{
	char ch = (char)c;

	sb_add(sb, &ch, 1);
}

void sb_vaddf(struct strbuf *sb, const char *fmt, va_list ap)
{
	va_list cp;
	int n;

	sb_grow(sb, 64);
	va_copy(cp, ap);
	n = vsnprintf(sb->buf + sb->len, sb->alloc - sb->len, fmt, cp);
	va_end(cp);
	if (n < 0)
		return;
	if ((size_t)n >= sb->alloc - sb->len) {
		sb_grow(sb, (size_t)n);
		va_copy(cp, ap);
		n = vsnprintf(sb->buf + sb->len, sb->alloc - sb->len, fmt, cp);
		va_end(cp);
		if (n < 0)
			return;
	}
	sb->len += (size_t)n;
}

void sb_addf(struct strbuf *sb, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sb_vaddf(sb, fmt, ap);
	va_end(ap);
}

void sb_rtrim(struct strbuf *sb)
{
	size_t n = sb->len;

	while (n && isspace((unsigned char)sb->buf[n - 1]))
		n--;
	sb_setlen(sb, n);
}

void sb_add_squeezed(struct strbuf *sb, const char *s, const char *ws)
{
	size_t start = sb->len;
	int pending = 0;

	for (; s && *s; s++) {
		if (strchr(ws, *s)) {
			pending = 1;
			continue;
		}
		if (pending && sb->len > start)
			sb_addch(sb, ' ');
		pending = 0;
		sb_addch(sb, *s);
	}
}

char *sb_detach(struct strbuf *sb)
{
	char *r;

	if (!sb->alloc)
		return xstrdup("");
	r = sb->buf;
	sb_init(sb, 0);
	return r;
}

int lines_contain(const char *lines, const char *s, size_t len)
{
	for (const char *p = lines; p && *p;) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);

		if (n == len && !strncmp(p, s, len))
			return 1;
		p += n + (nl ? 1 : 0);
	}
	return 0;
}

/* Length of the valid UTF-8 sequence at s (1 to 4), or 0 if invalid:
 * no overlongs, no surrogates, nothing past U+10FFFF (RFC 3629). */
static size_t utf8_seq(const unsigned char *s)
{
	unsigned c = s[0];

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		unsigned lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
		return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 ? 3 : 0;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		unsigned lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
		return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 &&
		       (s[3] & 0xc0) == 0x80 ? 4 : 0;
	}
	return 0;
}

int utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		size_t n = utf8_seq(p);
		if (!n)
			return 0;
		p += n;
	}
	return 1;
}

/* s with each byte that is not part of valid UTF-8 replaced by U+FFFD, or
 * (escape) written as \xNN. */
static void add_utf8(struct strbuf *sb, const char *s, int escape)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		size_t n = utf8_seq(p);
		if (n) {
			sb_add(sb, p, n);
			p += n;
		} else {
			if (escape)
				sb_addf(sb, "\\x%02x", *p);
			else
				sb_adds(sb, "\xef\xbf\xbd"); /* U+FFFD */
			p++;
		}
	}
}

void sb_add_utf8(struct strbuf *sb, const char *s)
{
	add_utf8(sb, s, 0);
}

void sb_add_utf8_escaped(struct strbuf *sb, const char *s)
{
	add_utf8(sb, s, 1);
}

void sb_add_shell_word(struct strbuf *sb, const char *s)
{
	static const char plain[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				    "0123456789-_./:@%+=,";

	if (*s && s[strspn(s, plain)] == '\0') {
		sb_adds(sb, s);
		return;
	}
	sb_addch(sb, '\'');
	for (; *s; s++) {
		if (*s == '\'')
			sb_adds(sb, "'\\''");
		else
			sb_addch(sb, *s);
	}
	sb_addch(sb, '\'');
}
