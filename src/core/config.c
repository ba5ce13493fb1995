/*
 * config: INI configuration via libinih (see config.h).
 */
#include "config.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "fsutil.h"
#include "strbuf.h"
#include "xalloc.h"

/* The most a config file may hold: a few settings, not a device's stream. */
#define CFG_MAX_BYTES ((size_t)1 << 20)

struct cfg_seen {
	const char *key; /* canonical name (static) */
	int line;
};

struct cfg_parse_state {
	struct cfg_file *cfg;
	struct sm_error *err;
	size_t dirs_alloc;
	int failed;
	/* the file, fed to inih line by line so that we know the line */
	const char *text;
	size_t pos, len;
	int line, continuation; /* the line last read; did it start with blanks */
	struct cfg_seen seen[16];
	size_t nseen;
};

/* inih's reader: like fgets on the file's text, counting lines. */
static char *read_line(char *str, int num, void *stream)
{
	struct cfg_parse_state *st = stream;
	size_t n = 0;

	if (st->pos >= st->len || num < 2)
		return NULL;
	st->line++;
	st->continuation = st->text[st->pos] == ' ' || st->text[st->pos] == '\t';
	while (st->pos < st->len && n + 1 < (size_t)num) {
		char c = st->text[st->pos++];
		str[n++] = c;
		if (c == '\n')
			break;
	}
	str[n] = '\0';
	return str;
}

/* A key given twice (or under both of its names) is an error naming both
 * lines: silently letting the later one win hid mistakes.  inih reports a
 * continuation line (indented) under the key it continues: that is not a
 * second setting. */
static int check_duplicate(struct cfg_parse_state *st, const char *key)
{
	for (size_t i = 0; i < st->nseen; i++) {
		if (strcmp(st->seen[i].key, key) != 0)
			continue;
		if (st->continuation)
			return 0;
		err_set(st->err, ERR_USAGE, "config file '%s', line %d: duplicate key '%s' "
			"(already set on line %d)", st->cfg->path, st->line, key,
			st->seen[i].line);
		st->failed = 1;
		return -1;
	}
	if (st->nseen < sizeof(st->seen) / sizeof(st->seen[0])) {
		st->seen[st->nseen].key = key;
		st->seen[st->nseen++].line = st->line;
	}
	return 0;
}

static void set_string(char **slot, const char *value)
{
	free(*slot);
	*slot = xstrdup(value);
}

static char *resolve(const struct cfg_file *c, const char *value)
{
	return fs_join(c->dir, value);
}

/* migrations_dir may list several directories separated by spaces or commas,
 * as alembic's version_locations does. */
static void add_dirs(struct cfg_parse_state *st, const char *value)
{
	struct cfg_file *c = st->cfg;
	const char *p = value;

	while (*p) {
		size_t n;
		char *one;

		while (*p == ' ' || *p == ',' || *p == '\t')
			p++;
		n = strcspn(p, " ,\t");
		if (!n)
			break;
		one = xstrndup(p, n);
		ALLOC_GROW(c->migrations_dirs, c->n_migrations_dirs + 1, st->dirs_alloc);
		c->migrations_dirs[c->n_migrations_dirs++] = resolve(c, one);
		free(one);
		p += n;
	}
}

static int on_entry(void *user, const char *section, const char *name, const char *value)
{
	struct cfg_parse_state *st = user;
	struct cfg_file *c = st->cfg;

	if (strcmp(section, "safe-migrate") != 0)
		return 1; /* other tools' sections (e.g. [alembic]) are not ours */
	{
		static const char *const keys[] = {
			"database_url", "migrations_dir", "backup_dir", "lock_timeout",
			"statement_timeout", "migration_lock_timeout", "expected_schema",
			"compression_level", "require_encryption",
		};
		const char *key = !strcmp(name, "sqlalchemy.url") ? "database_url" :
				  !strcmp(name, "version_locations") ? "migrations_dir" : NULL;

		for (size_t i = 0; !key && i < sizeof(keys) / sizeof(keys[0]); i++)
			if (!strcmp(name, keys[i]))
				key = keys[i];
		if (key && check_duplicate(st, key) < 0)
			return 0;
	}
	if (!strcmp(name, "database_url") || !strcmp(name, "sqlalchemy.url")) {
		set_string(&c->database_url, value);
	} else if (!strcmp(name, "migrations_dir") || !strcmp(name, "version_locations")) {
		add_dirs(st, value);
	} else if (!strcmp(name, "backup_dir")) {
		free(c->backup_dir);
		c->backup_dir = resolve(c, value);
	} else if (!strcmp(name, "lock_timeout")) {
		set_string(&c->lock_timeout, value);
	} else if (!strcmp(name, "statement_timeout")) {
		set_string(&c->statement_timeout, value);
	} else if (!strcmp(name, "migration_lock_timeout")) {
		set_string(&c->migration_lock_timeout, value);
	} else if (!strcmp(name, "max_blocking")) {
		set_string(&c->max_blocking, value);
	} else if (!strcmp(name, "max_rewrite")) {
		set_string(&c->max_rewrite, value);
	} else if (!strcmp(name, "encryption_key_file")) {
		free(c->encryption_key_file);
		c->encryption_key_file = resolve(c, value);
	} else if (!strcmp(name, "encryption_cipher")) {
		set_string(&c->encryption_cipher, value);
	} else if (!strcmp(name, "encrypt_to")) {
		free(c->encrypt_to);
		c->encrypt_to = resolve(c, value);
	} else if (!strcmp(name, "lint_ignore")) {
		set_string(&c->lint_ignore, value);
	} else if (!strcmp(name, "compression_level")) {
		set_string(&c->compression_level, value);
	} else if (!strcmp(name, "require_encryption")) {
		set_string(&c->require_encryption, value);
	} else if (!strcmp(name, "expected_schema")) {
		free(c->expected_schema);
		c->expected_schema = resolve(c, value);
	} else {
		err_set(st->err, ERR_USAGE, "unknown key '%s' in section [safe-migrate] of '%s'",
			name, c->path);
		st->failed = 1;
		return 0;
	}
	return 1;
}

int cfg_load(const char *path, struct cfg_file *out, struct sm_error *err)
{
	struct cfg_parse_state st;
	struct strbuf text = STRBUF_INIT;
	struct stat sb;
	int rc;

	memset(&st, 0, sizeof(st));
	st.cfg = out;
	st.err = err;
	memset(out, 0, sizeof(*out));
	out->path = xstrdup(path);
	out->dir = fs_dirname(path);
	/* -c /dev/zero or a FIFO would be read for ever (or block at open) */
	if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
		err_set(err, ERR_USAGE, "cannot read config file '%s': not a regular file", path);
		cfg_release(out);
		return -1;
	}
	if (fs_read_file(path, &text, CFG_MAX_BYTES, err) < 0) {
		if (err->sys_errno)
			err_set(err, ERR_USAGE, "cannot open config file '%s': %s", path,
				strerror(err->sys_errno));
		else
			err_prefix(err, "config file");
		err->kind = ERR_USAGE;
		sb_release(&text);
		cfg_release(out);
		return -1;
	}
	st.text = text.buf;
	st.len = text.len;
	rc = ini_parse_stream(read_line, &st, on_entry, &st);
	sb_release(&text);
	if (st.failed) {
		cfg_release(out);
		return -1;
	}
	if (rc != 0) {
		err_set(err, ERR_USAGE, "cannot parse config file '%s': syntax error on line %d",
			path, rc);
		cfg_release(out);
		return -1;
	}
	return 0;
}

void cfg_release(struct cfg_file *c)
{
	free(c->path);
	free(c->dir);
	free(c->database_url);
	for (size_t i = 0; i < c->n_migrations_dirs; i++)
		free(c->migrations_dirs[i]);
	free(c->migrations_dirs);
	free(c->backup_dir);
	free(c->lock_timeout);
	free(c->statement_timeout);
	free(c->migration_lock_timeout);
	free(c->expected_schema);
	free(c->max_blocking);
	free(c->max_rewrite);
	free(c->lint_ignore);
	free(c->encryption_key_file);
	free(c->encrypt_to);
	free(c->encryption_cipher);
	free(c->compression_level);
	free(c->require_encryption);
	memset(c, 0, sizeof(*c));
}

int cfg_parse_bool(const char *text, int *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (!strcasecmp(text, yes[i])) {
			*out = 1;
			return 0;
		}
		if (!strcasecmp(text, no[i])) {
			*out = 0;
			return 0;
		}
	}
	return -1;
}
