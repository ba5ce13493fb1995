/*
 * migration: discovery and parsing of migration files (see migration.h).
 */
#include "migration.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "engine.h"
#include "fsutil.h"
#include "strbuf.h"
#include "version.h"
#include "xalloc.h"

#define MIG_MAX_FILE (64u << 20) /* a migration larger than 64 MiB is a mistake */

void mig_release(struct migration *m)
{
	free(m->version);
	free(m->description);
	free(m->path);
	free(m->down_path);
	free(m->up_sql);
	free(m->down_sql);
	memset(m, 0, sizeof(*m));
}

void mig_set_release(struct migration_set *set)
{
	for (size_t i = 0; i < set->n; i++)
		mig_release(&set->items[i]);
	free(set->items);
	memset(set, 0, sizeof(*set));
}

long mig_index(const struct migration_set *set, const char *version)
{
	for (size_t i = 0; i < set->n; i++)
		if (!ver_cmp(set->items[i].version, version))
			return (long)i;
	return -1;
}

static int has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && !strcmp(s + n - m, suffix);
}

int mig_check_text(const char *name, const char *text, size_t len, struct sm_error *err)
{
	size_t i = 0;
	int line = 1;

	while (i < len) {
		unsigned char c = (unsigned char)text[i];
		size_t extra;

		if (c == 0)
			return err_set(err, ERR_FAIL, "'%s' is not a text file (NUL byte on line %d)",
				       name, line);
		if (c == '\n')
			line++;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			extra = 1;
		else if (c >= 0xe0 && c <= 0xef)
			extra = 2;
		else if (c >= 0xf0 && c <= 0xf4)
			extra = 3;
		else
			return err_set(err, ERR_FAIL, "'%s' is not valid UTF-8 (line %d)", name, line);
		for (size_t k = 1; k <= extra; k++)
			if (i + k >= len || ((unsigned char)text[i + k] & 0xc0) != 0x80)
				return err_set(err, ERR_FAIL, "'%s' is not valid UTF-8 (line %d)",
					       name, line);
		i += extra + 1;
	}
	return 0;
}

/* If line (without its newline) is a dbmate marker, returns 'u' or 'd' and
 * sets *no_tx; otherwise 0. */
static int parse_marker(const char *line, size_t len, int *no_tx, int *bad_option,
			struct strbuf *option)
{
	const char *p = line, *end = line + len;
	int kind;

	*no_tx = 0;
	*bad_option = 0;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	if (end - p < 2 || p[0] != '-' || p[1] != '-')
		return 0;
	p += 2;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	if ((size_t)(end - p) >= 10 && !strncmp(p, "migrate:up", 10)) {
		kind = 'u';
		p += 10;
	} else if ((size_t)(end - p) >= 12 && !strncmp(p, "migrate:down", 12)) {
		kind = 'd';
		p += 12;
	} else if ((size_t)(end - p) >= 22 && !strncmp(p, "morph:nontransactional", 22)) {
		/* morph's marker: the whole file runs outside a transaction */
		p += 22;
		while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
			p++;
		*no_tx = 1;
		return p == end ? 'n' : 0;
	} else {
		return 0;
	}
	if (p < end && *p != ' ' && *p != '\t' && *p != '\r')
		return 0; /* "-- migrate:upgrade" is a comment, not a marker */
	while (p < end) {
		const char *w;

		while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
			p++;
		w = p;
		while (p < end && *p != ' ' && *p != '\t' && *p != '\r')
			p++;
		if (p == w)
			break;
		if ((size_t)(p - w) == 17 && !strncmp(w, "transaction:false", 17)) {
			*no_tx = 1;
		} else if ((size_t)(p - w) == 16 && !strncmp(w, "transaction:true", 16)) {
			*no_tx = 0;
		} else {
			*bad_option = 1;
			sb_reset(option);
			sb_add(option, w, (size_t)(p - w));
		}
	}
	return kind;
}

int mig_is_blank(const char *sql)
{
	size_t len = sql ? strlen(sql) : 0;

	return engine_skip_space(sql ? sql : "", len) == len;
}

/* Parses text into m's sections.  A separate down file (down_file) may open
 * with "-- migrate:down [transaction:false]" (or, as before, "-- migrate:up"):
 * its section becomes m's up section, which the caller moves. */
static int parse_text(struct migration *m, const char *name, const char *text, size_t len,
		      int down_file, struct sm_error *err)
{
	int file_no_tx = 0;

	size_t pos = 0, up_start = 0, up_end = len, down_start = 0, down_end = len;
	int line = 1, up_line = 1, down_line = 0, seen_up = 0, seen_down = 0;
	struct strbuf option = STRBUF_INIT;

	if (mig_check_text(name, text, len, err) < 0)
		return -1;
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t llen = nl ? (size_t)(nl - (text + pos)) : len - pos;
		size_t next = nl ? pos + llen + 1 : len;
		int no_tx, bad;
		int kind = parse_marker(text + pos, llen, &no_tx, &bad, &option);

		if (kind && bad) {
			err_set(err, ERR_FAIL, "'%s', line %d: unknown marker option '%s' (expected "
				"transaction:false)", name, line, option.buf);
			sb_release(&option);
			return -1;
		}
		if (kind == 'n') {
			file_no_tx = 1;
		} else if (kind == 'd' && down_file && !seen_up && !seen_down) {
			/* a down file's own marker, e.g. transaction:false */
			seen_up = 1;
			m->up_no_tx = no_tx;
			up_start = next;
			up_line = line + 1;
		} else if (kind == 'u') {
			if (seen_up || seen_down) {
				sb_release(&option);
				return err_set(err, ERR_FAIL, "'%s', line %d: %s", name, line,
					       seen_up ? "a second '-- migrate:up' marker" :
							 "'-- migrate:up' after '-- migrate:down'");
			}
			seen_up = 1;
			m->up_no_tx = no_tx;
			up_start = next;
			up_line = line + 1;
		} else if (kind == 'd') {
			if (seen_down) {
				sb_release(&option);
				return err_set(err, ERR_FAIL, "'%s', line %d: a second "
					       "'-- migrate:down' marker", name, line);
			}
			if (!seen_up) {
				sb_release(&option);
				return err_set(err, ERR_FAIL, "'%s', line %d: '-- migrate:down' before "
					       "any '-- migrate:up' marker", name, line);
			}
			seen_down = 1;
			m->down_no_tx = no_tx;
			up_end = pos;
			down_start = next;
			down_line = line + 1;
		}
		pos = next;
		line++;
	}
	sb_release(&option);
	if (!seen_up) {
		/* a plain file: all of it is the up section */
		up_start = 0;
		up_end = len;
		up_line = 1;
	}
	m->up_sql = xstrndup(text + up_start, up_end - up_start);
	m->up_line = up_line;
	if (file_no_tx) {
		m->up_no_tx = MIG_TX_MARKER;
		m->down_no_tx = MIG_TX_MARKER;
	}
	if (seen_down) {
		m->down_sql = xstrndup(text + down_start, down_end - down_start);
		m->down_line = down_line;
		if (mig_is_blank(m->down_sql)) {
			/* an empty or comment-only down section (golang-migrate's
			 * `migrate create` writes empty down files) means "no down" */
			free(m->down_sql);
			m->down_sql = NULL;
		}
	}
	/* an empty up section is a no-op migration: upgrade records it */
	return 0;
}

int mig_parse_text(struct migration *m, const char *name, const char *text, size_t len,
		   struct sm_error *err)
{
	return parse_text(m, name, text, len, 0, err);
}

/* One .sql file found while walking, before pairing. */
struct found_file {
	char *path;
	char *stem;  /* file name without ".sql", ".up.sql", ".down.sql", "_rollback.sql" */
	int role;    /* 'p' plain or marker file, 'u' .up.sql, 'd' .down.sql, 'r' _rollback.sql */
};

struct found_list {
	struct found_file *items;
	size_t n, alloc;
};

static void found_add(struct found_list *fl, const char *path, const char *name)
{
	static const struct {
		const char *suffix;
		int role;
	} roles[] = { { ".up.sql", 'u' }, { ".down.sql", 'd' }, { "_rollback.sql", 'r' },
		      { ".sql", 'p' } };
	struct found_file *f;

	for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
		if (!has_suffix(name, roles[i].suffix))
			continue;
		ALLOC_GROW(fl->items, fl->n + 1, fl->alloc);
		f = &fl->items[fl->n++];
		f->path = xstrdup(path);
		f->stem = xstrndup(name, strlen(name) - strlen(roles[i].suffix));
		f->role = roles[i].role;
		return;
	}
}

/* recursion bounded by depth (sub-folders 16 deep at most) */
/* NOLINTNEXTLINE(misc-no-recursion) */
static int walk(const char *dir, struct found_list *fl, int depth, struct sm_error *err)
{
	DIR *d;
	struct dirent *de;
	int ret = 0;

	if (depth > 16)
		return err_set(err, ERR_FAIL, "migrations directory '%s' is nested too deeply", dir);
	d = opendir(dir);
	if (!d) {
		err_sys(err, "cannot open migrations directory '%s'", dir);
		if (errno == ENOENT)
			err->kind = ERR_USAGE;
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		struct stat st;
		char *path;

		if (de->d_name[0] == '.')
			continue; /* ".", "..", and hidden files such as editor swap files */
		path = fs_join(dir, de->d_name);
		if (stat(path, &st) < 0) {
			ret = err_sys(err, "cannot stat '%s'", path);
			free(path);
			break;
		}
		if (S_ISDIR(st.st_mode)) {
			ret = walk(path, fl, depth + 1, err);
		} else if (S_ISREG(st.st_mode) && has_suffix(de->d_name, ".sql")) {
			found_add(fl, path, de->d_name);
		} else if (has_suffix(de->d_name, ".sql")) {
			/* a FIFO or device named like a migration: reading it could
			 * block for ever, and skipping it would hide a migration */
			ret = err_set(err, ERR_FAIL, "cannot read migration '%s': not a regular file",
				      path);
		}
		free(path);
		if (ret < 0)
			break;
	}
	closedir(d);
	return ret;
}

static int cmp_migration(const void *a, const void *b)
{
	const struct migration *x = a, *y = b;

	return ver_cmp(x->version, y->version);
}

/* Finds the partner of f (same directory, same stem, given role). */
static struct found_file *find_partner(struct found_list *fl, const struct found_file *f, int role)
{
	char *dir = fs_dirname(f->path);
	struct found_file *hit = NULL;

	size_t vlen = ver_prefix_len(f->stem);
	int by_version = vlen && (role == 'u' || role == 'd');

	for (size_t i = 0; i < fl->n && !hit; i++) {
		const char *stem = fl->items[i].stem;
		char *d2;

		if (fl->items[i].role != role)
			continue;
		/* .up.sql/.down.sql pair by version, as golang-migrate does
		 * ("20240813_x..up.sql" with "20240813_x.down.sql"); the
		 * _rollback.sql layout pairs by the whole stem */
		if (by_version ? ver_prefix_len(stem) != vlen || strncmp(stem, f->stem, vlen)
			       : strcmp(stem, f->stem) != 0)
			continue;
		d2 = fs_dirname(fl->items[i].path);
		if (!strcmp(d2, dir))
			hit = &fl->items[i];
		free(d2);
	}
	free(dir);
	return hit;
}

static int read_section_file(const char *path, struct strbuf *out, struct sm_error *err)
{
	return fs_read_file(path, out, MIG_MAX_FILE, err);
}

/* Builds one migration from its up file and optional down file. */
static int build_one(struct migration *m, const struct found_file *up, const struct found_file *down,
		     struct sm_error *err)
{
	struct strbuf text = STRBUF_INIT;
	size_t vlen = ver_prefix_len(up->stem);
	const char *rest = up->stem + vlen;
	int ret = -1;

	memset(m, 0, sizeof(*m));
	if (!vlen) {
		err_set(err, ERR_FAIL, "'%s' has no version: migration file names start with "
			"digits, e.g. '0001_create_users.sql'", up->path);
		goto out;
	}
	m->version = xstrndup(up->stem, vlen);
	while (*rest == '_' || *rest == '-' || *rest == '.')
		rest++;
	m->description = xstrdup(rest);
	{
		/* "x..up.sql": the stem's trailing dot is not part of the name */
		size_t n = strlen(m->description);
		while (n && m->description[n - 1] == '.')
			m->description[--n] = '\0';
	}
	m->path = xstrdup(up->path);
	if (read_section_file(up->path, &text, err) < 0)
		goto out;
	if (mig_parse_text(m, up->path, text.buf, text.len, err) < 0)
		goto out;
	if (m->down_sql) {
		if (down) {
			err_set(err, ERR_FAIL, "'%s' has a '-- migrate:down' section and a separate "
				"down file '%s'; keep one", up->path, down->path);
			goto out;
		}
		m->down_path = xstrdup(up->path);
	} else if (down) {
		struct migration tmp = { 0 };
		sb_reset(&text);
		if (read_section_file(down->path, &text, err) < 0)
			goto out;
		if (parse_text(&tmp, down->path, text.buf, text.len, 1, err) < 0) {
			mig_release(&tmp);
			goto out;
		}
		if (tmp.down_sql) {
			err_set(err, ERR_FAIL, "down file '%s' has a '-- migrate:down' marker; a "
				"separate down file holds only the down SQL", down->path);
			mig_release(&tmp);
			goto out;
		}
		if (!mig_is_blank(tmp.up_sql)) {
			m->down_sql = tmp.up_sql;
			m->down_line = tmp.up_line;
			m->down_no_tx = tmp.up_no_tx;
			tmp.up_sql = NULL;
			m->down_path = xstrdup(down->path);
		}
		mig_release(&tmp);
	}
	hash_buf_hex(m->up_sql, strlen(m->up_sql), m->checksum);
	ret = 0;
out:
	sb_release(&text);
	return ret;
}

int mig_load(struct migration_set *set, char *const *dirs, size_t ndirs, struct sm_error *err)
{
	struct found_list fl = { NULL, 0, 0 };
	int ret = -1;

	memset(set, 0, sizeof(*set));
	for (size_t i = 0; i < ndirs; i++)
		if (walk(dirs[i], &fl, 0, err) < 0)
			goto out;
	for (size_t i = 0; i < fl.n; i++) {
		struct found_file *f = &fl.items[i], *down = NULL;

		if (f->role == 'r' && !find_partner(&fl, f, 'p')) {
			/* "0005_rollback.sql" with no "0005.sql": an ordinary migration */
			char *stem = xstrndup(fs_basename(f->path), strlen(fs_basename(f->path)) - 4);
			free(f->stem);
			f->stem = stem;
			f->role = 'p';
		}
		if (f->role == 'd' || f->role == 'r') {
			int want = f->role == 'd' ? 'u' : 'p';
			if (!find_partner(&fl, f, want)) {
				err_set(err, ERR_FAIL, "down migration '%s' has no matching up file "
					"('%s%s')", f->path, f->stem,
					f->role == 'd' ? ".up.sql" : ".sql");
				goto out;
			}
			continue;
		}
		down = find_partner(&fl, f, f->role == 'u' ? 'd' : 'r');
		ALLOC_GROW(set->items, set->n + 1, set->alloc);
		if (build_one(&set->items[set->n], f, down, err) < 0) {
			mig_release(&set->items[set->n]);
			goto out;
		}
		set->n++;
	}
	if (set->n)
		qsort(set->items, set->n, sizeof(set->items[0]), cmp_migration);
	for (size_t i = 1; i < set->n; i++) {
		if (!ver_cmp(set->items[i - 1].version, set->items[i].version)) {
			err_set(err, ERR_FAIL, "duplicate migration version %s: '%s' and '%s'",
				set->items[i].version, set->items[i - 1].path, set->items[i].path);
			goto out;
		}
	}
	ret = 0;
out:
	for (size_t i = 0; i < fl.n; i++) {
		free(fl.items[i].path);
		free(fl.items[i].stem);
	}
	free(fl.items);
	if (ret < 0)
		mig_set_release(set);
	return ret;
}

static int tx_control_cb(void *ud, const char *text, size_t len, int line)
{
	size_t skip = engine_skip_space(text, len);

	(void)ud;
	(void)line;
	if (!engine_is_tx_control(text + skip, len - skip))
		return 0;
	/* 1: the file opens its own transaction; 2: a stray COMMIT or
	 * ROLLBACK comes first, which stays an error in a migration */
	return len - skip >= 5 && (!strncasecmp(text + skip, "BEGIN", 5) ||
				   !strncasecmp(text + skip, "START", 5)) ? 1 : 2;
}

int mig_controls_tx(const struct engine_ops *ops, const char *sql)
{
	struct sm_error ignored = SM_ERROR_INIT;

	return sql && ops->split(sql, tx_control_cb, NULL, &ignored) == 1;
}

void mig_set_find_own_tx(struct migration_set *set, const struct engine_ops *ops)
{
	for (size_t i = 0; i < set->n; i++) {
		struct migration *m = &set->items[i];

		if (!m->up_no_tx && mig_controls_tx(ops, m->up_sql))
			m->up_no_tx = MIG_TX_OWN;
		if (m->down_sql && !m->down_no_tx && mig_controls_tx(ops, m->down_sql))
			m->down_no_tx = MIG_TX_OWN;
	}
}

const char *mig_tx_note(const struct migration *m, int up, char *buf, size_t size)
{
	int why = up ? m->up_no_tx : m->down_no_tx;
	const char *what = up ? m->up_no_tx_what : m->down_no_tx_what;

	switch (why) {
	case MIG_TX_MARKER:
		return "transaction:false: runs outside a transaction";
	case MIG_TX_NEVER:
		snprintf(buf, size, "runs outside a transaction: %s cannot run in one",
			 what ? what : "a statement");
		return buf;
	case MIG_TX_OWN:
		return "manages its own transaction (BEGIN ... COMMIT): runs as written";
	default:
		return "";
	}
}
