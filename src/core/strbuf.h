/*
 * strbuf: the one growable string type of safe-migrate.
 *
 * A strbuf is always NUL-terminated, even when empty (buf then points at a
 * shared empty string, as git's slopbuf does), so sb.buf can be passed to
 * any C string function at any time.  Memory exhaustion aborts the program
 * (see xalloc.h): a migration tool that cannot allocate a few bytes has no
 * safe way to continue.
 */
#ifndef SM_STRBUF_H
#define SM_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

extern char sb_slopbuf[];

struct strbuf {
	char *buf;    /* owned; never NULL */
	size_t len;   /* bytes used, excluding the terminating NUL */
	size_t alloc; /* 0 while buf is the shared slop buffer */
};

#define STRBUF_INIT { sb_slopbuf, 0, 0 }

void sb_init(struct strbuf *sb, size_t hint);
/* Frees the buffer and leaves sb as STRBUF_INIT. */
void sb_release(struct strbuf *sb);
/* Empties sb, keeping its allocation. */
void sb_reset(struct strbuf *sb);
/* Ensures room for extra more bytes plus the NUL. */
void sb_grow(struct strbuf *sb, size_t extra);
void sb_add(struct strbuf *sb, const void *data, size_t len);
void sb_adds(struct strbuf *sb, const char *s);
void sb_addch(struct strbuf *sb, int c);
void sb_addf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as one word of a POSIX shell command line: as it is when it
 * holds only characters no shell treats specially, else in single quotes
 * (a quote inside as '\''), so that a command printed for an operator to
 * paste runs as printed, whatever the paths hold. */
void sb_add_shell_word(struct strbuf *sb, const char *s);
void sb_vaddf(struct strbuf *sb, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
void sb_setlen(struct strbuf *sb, size_t len);
/* Appends s with every run of the characters in ws turned into one space,
 * and none at either end (s may be NULL). */
void sb_add_squeezed(struct strbuf *sb, const char *s, const char *ws);
/* Removes trailing whitespace. */
void sb_rtrim(struct strbuf *sb);
/* Returns the buffer (caller owns it, free()) and leaves sb empty. */
char *sb_detach(struct strbuf *sb);
/* True if s is valid UTF-8. */
int utf8_valid(const char *s);
/* Appends s with every byte that is not part of valid UTF-8 replaced by
 * U+FFFD (file names are bytes; JSON output must be UTF-8). */
void sb_add_utf8(struct strbuf *sb, const char *s);
/* The same with each such byte written as \xNN instead: a message that
 * names bytes that are not text, so that they can be found. */
void sb_add_utf8_escaped(struct strbuf *sb, const char *s);

/* 1 when lines (newline-separated, may be NULL) has a line equal to the
 * len bytes at s. */
int lines_contain(const char *lines, const char *s, size_t len);

#endif
