/*
 * config: INI configuration via libinih (see config.h).
 */
#include "config.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "strbuf.h"
#include "xalloc.h"

struct cfg_parse_state {
	struct cfg_file *cfg;
	struct sm_error *err;
	size_t dirs_alloc;
	int failed;
};

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
	} else if (!strcmp(name, "lint_ignore")) {
		set_string(&c->lint_ignore, value);
	} else if (!strcmp(name, "expected_schema")) {
		free(c->expected_schema);
	free(c->lint_ignore);
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
	struct cfg_parse_state st = { out, err, 0, 0 };
	FILE *f;
	int rc;

	memset(out, 0, sizeof(*out));
	out->path = xstrdup(path);
	out->dir = fs_dirname(path);
	f = fopen(path, "re");
	if (!f) {
		err_sys(err, "cannot open config file '%s'", path);
		err->kind = ERR_USAGE;
		cfg_release(out);
		return -1;
	}
	rc = ini_parse_file(f, on_entry, &st);
	fclose(f);
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
	free(c->lint_ignore);
	memset(c, 0, sizeof(*c));
}
