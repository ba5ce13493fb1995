/*
 * engine: backend registry and helpers shared by every backend (see engine.h).
 */
#include "engine.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

extern const struct engine_ops engine_sqlite_ops;
extern const struct engine_ops engine_pg_ops;

static const struct engine_ops *const backends[] = {
	&engine_sqlite_ops,
	&engine_pg_ops,
};

const struct engine_ops *engine_find(const char *scheme)
{
	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++)
		if (!strcmp(backends[i]->name, scheme))
			return backends[i];
	return NULL;
}

int engine_open(struct engine **out, const struct db_url *url, unsigned flags,
		struct sm_error *err)
{
	const struct engine_ops *ops = engine_find(url->scheme);
	struct engine *e;

	*out = NULL;
	if (!ops)
		return err_set(err, ERR_USAGE, "unsupported database engine '%s'", url->scheme);
	e = xcalloc(1, sizeof(*e));
	e->ops = ops;
	url_copy(&e->url, url);
	if (ops->open(e, flags, err) < 0) {
		url_release(&e->url);
		free(e);
		return -1;
	}
	*out = e;
	return 0;
}

void engine_close(struct engine *e)
{
	struct sm_error ignored = SM_ERROR_INIT;

	if (!e)
		return;
	if (e->in_tx)
		e->ops->rollback(e, &ignored);
	e->ops->unlock(e);
	e->ops->close(e);
	url_release(&e->url);
	free(e);
}

int engine_exec(struct engine *e, const char *sql, struct sm_error *err)
{
	return e->ops->exec_script(e, sql, NULL, err);
}

int engine_scalar(struct engine *e, const char *sql, int nparams, const char *const *params,
		  char **out, struct sm_error *err)
{
	struct eng_rows rows = ENG_ROWS_INIT;
	const char *v;

	*out = NULL;
	if (e->ops->query(e, sql, nparams, params, &rows, err) < 0)
		return -1;
	v = rows.nrows && rows.ncols ? rows_get(&rows, 0, 0) : NULL;
	if (v)
		*out = xstrdup(v);
	rows_release(&rows);
	return 0;
}

void *engine_native(struct engine *e)
{
	return e->impl ? *(void **)e->impl : NULL;
}

const char *rows_get(const struct eng_rows *r, size_t row, size_t col)
{
	if (row >= r->nrows || col >= r->ncols)
		return NULL;
	return r->cells[row * r->ncols + col];
}

void rows_release(struct eng_rows *r)
{
	for (size_t i = 0; i < r->nrows * r->ncols; i++)
		free(r->cells[i]);
	for (size_t i = 0; i < r->ncols; i++)
		free(r->colnames ? r->colnames[i] : NULL);
	free(r->cells);
	free(r->colnames);
	memset(r, 0, sizeof(*r));
}

void engine_quote_ident_sql(struct strbuf *out, const char *ident)
{
	sb_addch(out, '"');
	for (const char *c = ident; *c; c++) {
		if (*c == '"')
			sb_addch(out, '"');
		sb_addch(out, *c);
	}
	sb_addch(out, '"');
}

int engine_line_at(const char *text, size_t offset, int first_line)
{
	struct engine_lines l;

	engine_lines_init(&l, text, first_line);
	return engine_lines_at(&l, offset);
}

void engine_lines_init(struct engine_lines *l, const char *text, int first_line)
{
	l->text = text;
	l->off = 0;
	l->first = l->line = first_line > 0 ? first_line : 1;
}

int engine_lines_at(struct engine_lines *l, size_t offset)
{
	if (offset < l->off) { /* backwards: start over (callers go forwards) */
		l->off = 0;
		l->line = l->first;
	}
	for (; l->off < offset && l->text[l->off]; l->off++)
		if (l->text[l->off] == '\n')
			l->line++;
	return l->line;
}

size_t engine_skip_space(const char *text, size_t len)
{
	size_t i = 0;

	while (i < len) {
		char c = text[i];
		if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
			i++;
		} else if (c == '-' && i + 1 < len && text[i + 1] == '-') {
			while (i < len && text[i] != '\n')
				i++;
		} else if (c == '/' && i + 1 < len && text[i + 1] == '*') {
			i += 2;
			while (i + 1 < len && !(text[i] == '*' && text[i + 1] == '/'))
				i++;
			i = i + 2 <= len ? i + 2 : len;
		} else {
			break;
		}
	}
	return i;
}

/* The first word of a statement, upper-cased, into buf. */
static void first_word(const char *stmt, size_t len, char *buf, size_t size)
{
	size_t n = 0;

	while (n < len && n + 1 < size && isalpha((unsigned char)stmt[n])) {
		buf[n] = (char)toupper((unsigned char)stmt[n]);
		n++;
	}
	buf[n] = '\0';
}

int engine_is_tx_control(const char *stmt, size_t len)
{
	static const char *const words[] = { "BEGIN", "START", "COMMIT", "END", "ABORT" };
	char w[16];

	first_word(stmt, len, w, sizeof(w));
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (!strcmp(w, words[i]))
			return 1;
	if (!strcmp(w, "ROLLBACK")) {
		size_t i = 8;
		char w2[16];

		while (i < len && isspace((unsigned char)stmt[i]))
			i++;
		/* ROLLBACK [TRANSACTION] TO SAVEPOINT stays inside the transaction */
		first_word(stmt + i, len - i, w2, sizeof(w2));
		if (!strcmp(w2, "TRANSACTION") || !strcmp(w2, "WORK")) {
			i += strlen(w2);
			while (i < len && isspace((unsigned char)stmt[i]))
				i++;
			first_word(stmt + i, len - i, w2, sizeof(w2));
		}
		return strcmp(w2, "TO") != 0 && strcmp(w2, "PREPARED") != 0;
	}
	return 0;
}

int engine_same_database(struct engine *a, const struct db_url *b, int *same,
			 struct sm_error *err)
{
	struct engine_identity ia, ib;
	struct sm_error ignored = SM_ERROR_INIT;
	struct engine *eb = NULL;
	int ret = -1;

	*same = 0;
	if (strcmp(a->url.scheme, b->scheme))
		return 0;
	if (a->ops->identity(a, &ia, err) < 0)
		return -1;
	/* a database that cannot be opened is not a's (which is open) */
	if (engine_open(&eb, b, 0, &ignored) < 0 || !eb)
		return 0;
	if (eb->ops->identity(eb, &ib, err) < 0)
		goto out;
	*same = !strcmp(ia.key, ib.key);
	ret = 0;
out:
	engine_close(eb);
	return ret;
}

char *engine_scrub(const struct db_url *url, const char *text)
{
	const struct engine_ops *ops = url->scheme ? engine_find(url->scheme) : NULL;
	struct strbuf sb = STRBUF_INIT;
	char *out;

	sb_adds(&sb, text);
	if (ops && ops->scrub_secrets)
		ops->scrub_secrets(url, &sb);
	out = url_redact(sb.buf);
	sb_release(&sb);
	return out;
}
