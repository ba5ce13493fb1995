/*
 * url: parsing and redaction of database URLs (see url.h).
 */
#include "url.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "strbuf.h"
#include "xalloc.h"

void url_release(struct db_url *u)
{
	free(u->scheme);
	free(u->path);
	free(u->conninfo);
	free(u->redacted);
	u->scheme = u->path = u->conninfo = u->redacted = NULL;
}

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

void url_copy(struct db_url *dst, const struct db_url *src)
{
	dst->scheme = dup_or_null(src->scheme);
	dst->path = dup_or_null(src->path);
	dst->conninfo = dup_or_null(src->conninfo);
	dst->redacted = dup_or_null(src->redacted);
}

static int hexval(int c)
{
	return isdigit(c) ? c - '0' : tolower(c) - 'a' + 10;
}

/* Does a parameter name spelling "password" start at p?  Case is ignored
 * (a misspelt keyword may still hold the secret) and, in a URI, so is
 * percent-encoding, which libpq decodes in query keys.  On a match sets
 * *after to the first character after the name. */
static int is_password_key(const char *p, int uri, const char **after)
{
	static const char want[] = "password";

	for (size_t i = 0; want[i]; i++) {
		int c = (unsigned char)*p;

		if (uri && c == '%' && isxdigit((unsigned char)p[1]) &&
		    isxdigit((unsigned char)p[2])) {
			c = hexval((unsigned char)p[1]) * 16 + hexval((unsigned char)p[2]);
			p += 3;
		} else if (!c) {
			return 0;
		} else {
			p++;
		}
		if (tolower(c) != want[i])
			return 0;
	}
	*after = p;
	return 1;
}

/* Masks the value of every "password" parameter: "password = VALUE" in a
 * keyword/value string (bare, with backslash escapes, or quoted), or
 * "password=VALUE" in a URI query. */
static void redact_password_params(struct strbuf *sb)
{
	int uri = strstr(sb->buf, "://") != NULL;
	size_t i = 0;

	while (i < sb->len) {
		const char *p = sb->buf + i, *q;
		char *v, *end;
		struct strbuf rest = STRBUF_INIT;
		size_t off;

		if ((i && !strchr(" \t\n\r\f\v?&", p[-1])) || !is_password_key(p, uri, &q)) {
			i++;
			continue;
		}
		while (isspace((unsigned char)*q))
			q++;
		if (*q != '=') {
			i++;
			continue;
		}
		q++;
		while (!uri && isspace((unsigned char)*q))
			q++;
		v = sb->buf + (q - sb->buf);
		end = v;
		if (!uri && *v == '\'') {
			end = v + 1;
			while (*end && *end != '\'') {
				if (*end == '\\' && end[1])
					end++;
				end++;
			}
			if (*end)
				end++;
		} else if (uri) {
			end += strcspn(end, "&");
		} else {
			while (*end && !isspace((unsigned char)*end)) {
				if (*end == '\\' && end[1])
					end++;
				end++;
			}
		}
		sb_adds(&rest, end);
		off = (size_t)(v - sb->buf);
		sb_setlen(sb, off);
		sb_adds(sb, "***");
		sb_add(sb, rest.buf, rest.len);
		sb_release(&rest);
		i = off + 3;
	}
}

/* Replaces every occurrence of secret at or after offset from with "***". */
static void mask_all(struct strbuf *sb, const char *secret, size_t from)
{
	size_t n = strlen(secret);
	char *hit;

	while (from < sb->len && (hit = strstr(sb->buf + from, secret)) != NULL) {
		size_t off = (size_t)(hit - sb->buf);
		struct strbuf rest = STRBUF_INIT;

		sb_adds(&rest, hit + n);
		sb_setlen(sb, off);
		sb_adds(sb, "***");
		sb_add(sb, rest.buf, rest.len);
		sb_release(&rest);
		from = off + 3;
	}
}

char *url_redact(const char *text)
{
	struct strbuf sb = STRBUF_INIT;
	const char *sep = strstr(text, "://");

	if (sep) {
		const char *auth = sep + 3;
		/* libpq ends the authority only at '/'; '?' and '#' may sit in a
		 * password, so search up to the first '/' like it does */
		const char *end = auth + strcspn(auth, "/");
		const char *at = NULL;

		/* the last '@' before the path ends the userinfo */
		for (const char *q = auth; q < end; q++)
			if (*q == '@')
				at = q;
		if (at) {
			const char *colon = memchr(auth, ':', (size_t)(at - auth));
			if (colon) {
				char *pw = xstrndup(colon + 1, (size_t)(at - colon - 1));
				sb_add(&sb, text, (size_t)(colon + 1 - text));
				sb_adds(&sb, "***");
				sb_adds(&sb, at);
				/* the same text elsewhere (a database name, a repeated
				 * URL) must not give the password away either */
				if (*pw)
					mask_all(&sb, pw, (size_t)(colon + 1 - text) + 3);
				free(pw);
				/* libpq itself takes the first '@': mask that reading too */
				pw = xstrndup(colon + 1, strcspn(colon + 1, "@"));
				if (*pw)
					mask_all(&sb, pw, (size_t)(colon + 1 - text) + 3);
				free(pw);
			}
		}
	}
	if (!sb.len)
		sb_adds(&sb, text);
	redact_password_params(&sb);
	return sb_detach(&sb);
}

static int starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* URL parameters of Python's sqlite3 driver (SQLAlchemy passes them to
 * connect()): how that client behaves, nothing about the file, so a URL
 * copied from an application's settings works.  Any other parameter
 * (mode=ro, immutable, nolock, vfs, uri...) would change what the file is
 * opened as, which safe-migrate decides itself: refused, not dropped. */
static const char *const sqlite_client_params[] = {
	"check_same_thread", "timeout", "cached_statements", "detect_types",
	"isolation_level", "factory", NULL,
};

static int check_sqlite_params(const char *query, struct sm_error *err)
{
	while (*query) {
		size_t len = strcspn(query, "&"), key = strcspn(query, "=&");
		const char *const *known = sqlite_client_params;

		while (*known && (key != strlen(*known) || strncmp(query, *known, key)))
			known++;
		if (len && !*known)
			return err_set(err, ERR_USAGE,
				       "invalid SQLite URL: parameter '%.*s' is not supported "
				       "(safe-migrate opens the file itself, read-write; only the "
				       "Python driver's client options are accepted, and ignored)",
				       (int)(len > 100 ? 100 : len), query);
		query += len + (query[len] == '&');
	}
	return 0;
}

static int parse_sqlite(const char *rest, const char *base_dir, struct db_url *out,
			struct sm_error *err)
{
	/* rest follows "sqlite:" (after an optional +driver) */
	size_t n;
	char *path;

	if (!starts_with(rest, "//"))
		return err_set(err, ERR_USAGE,
			       "invalid SQLite URL: expected 'sqlite:///relative.db' or "
			       "'sqlite:////absolute/path.db'");
	rest += 2;
	if (*rest != '/')
		return err_set(err, ERR_USAGE,
			       "invalid SQLite URL: a host is not allowed; use 'sqlite:///%s'", rest);
	rest++; /* now the path: relative, or absolute if it starts with '/' */
	n = strcspn(rest, "?");
	if (n == 0)
		return err_set(err, ERR_USAGE,
			       "invalid SQLite URL: no database file given (in-memory databases "
			       "cannot be migrated safely)");
	if (rest[n] == '?' && check_sqlite_params(rest + n + 1, err) < 0)
		return -1;
	path = xstrndup(rest, n);
	if (!strcmp(path, ":memory:")) {
		free(path);
		return err_set(err, ERR_USAGE,
			       "invalid SQLite URL: in-memory databases cannot be migrated safely");
	}
	if (path[0] != '/' && base_dir && strcmp(base_dir, ".")) {
		char *joined = fs_join(base_dir, path);
		free(path);
		path = joined;
	}
	out->scheme = xstrdup("sqlite");
	out->path = path;
	{
		struct strbuf sb = STRBUF_INIT;
		sb_addf(&sb, "sqlite:///%s", path);
		out->redacted = sb_detach(&sb);
	}
	return 0;
}

static int parse_postgres(const char *text, const char *after_scheme, struct db_url *out,
			  struct sm_error *err)
{
	struct strbuf sb = STRBUF_INIT;
	const char *auth;

	if (!starts_with(after_scheme, "//"))
		return err_set(err, ERR_USAGE,
			       "invalid PostgreSQL URL: expected 'postgresql://user@host:port/db'");
	auth = after_scheme + 2;
	/* libpq understands postgresql:// and postgres:// but not +driver */
	sb_adds(&sb, "postgresql://");
	sb_adds(&sb, auth);
	for (const char *c = text; *c; c++) {
		if ((unsigned char)*c < 0x20) {
			sb_release(&sb);
			return err_set(err, ERR_USAGE, "invalid PostgreSQL URL: control character");
		}
	}
	out->scheme = xstrdup("postgresql");
	out->conninfo = sb_detach(&sb);
	out->redacted = url_redact(out->conninfo);
	return 0;
}

int url_parse(const char *text, const char *base_dir, struct db_url *out, struct sm_error *err)
{
	const char *colon, *plus;
	char *scheme = NULL;
	int ret;

	memset(out, 0, sizeof(*out));
	if (!text || !*text)
		return err_set(err, ERR_USAGE, "empty database URL");
	colon = strstr(text, "://");
	if (!colon) {
		if (strchr(text, '=')) {
			/* a libpq keyword/value conninfo string */
			out->scheme = xstrdup("postgresql");
			out->conninfo = xstrdup(text);
			out->redacted = url_redact(text);
			return 0;
		}
		if (starts_with(text, "sqlite:"))
			return err_set(err, ERR_USAGE,
				       "invalid SQLite URL: expected 'sqlite:///relative.db' or "
				       "'sqlite:////absolute/path.db'");
		return err_set(err, ERR_USAGE,
			       "invalid database URL '%.200s': expected sqlite:///FILE or "
			       "postgresql://USER@HOST/DB", text);
	}
	for (const char *c = text; c < colon; c++) {
		int ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
			 (c > text && ((*c >= '0' && *c <= '9') || *c == '+' || *c == '-' || *c == '.'));
		if (!ok)
			return err_set(err, ERR_USAGE,
				       "invalid database URL: expected sqlite:///FILE or "
				       "postgresql://USER@HOST/DB");
	}
	scheme = xstrndup(text, (size_t)(colon - text));
	plus = strchr(scheme, '+');
	if (plus)
		scheme[plus - scheme] = '\0';
	for (char *c = scheme; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	if (!strcmp(scheme, "sqlite") || !strcmp(scheme, "sqlite3")) {
		ret = parse_sqlite(colon + 1, base_dir, out, err);
	} else if (!strcmp(scheme, "postgresql") || !strcmp(scheme, "postgres")) {
		ret = parse_postgres(text, colon + 1, out, err);
	} else {
		char *red = url_redact(text);
		ret = err_set(err, ERR_USAGE,
			      "unsupported database URL scheme '%.40s' in '%.200s': "
			      "use sqlite:/// or postgresql://", scheme, red);
		free(red);
	}
	free(scheme);
	if (ret < 0)
		url_release(out);
	return ret;
}

char *url_redacted_absolute(const struct db_url *u)
{
	struct strbuf sb = STRBUF_INIT;
	char *abs;

	if (!u->scheme || strcmp(u->scheme, "sqlite") || !u->path)
		return xstrdup(u->redacted ? u->redacted : "");
	abs = fs_absolute(u->path);
	sb_addf(&sb, "sqlite:///%s", abs);
	free(abs);
	return sb_detach(&sb);
}
