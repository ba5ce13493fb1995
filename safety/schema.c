/*
 * schema: the schema model, its canonical text, parse-back and diff (see
 * schema.h).  Introspection itself is per engine (safety_sqlite.c,
 * safety_pg.c), chosen from the driver table below.
 */
#include "schema.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "safety_driver.h"
#include "xalloc.h"

static const struct safety_driver *const drivers[] = {
	&safety_sqlite_driver,
	&safety_pg_driver,
};

const struct safety_driver *safety_driver_find(const char *engine)
{
	for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++)
		if (!strcmp(drivers[i]->engine, engine))
			return drivers[i];
	return NULL;
}

int safety_driver_for(struct engine *e, const struct safety_driver **d, struct sm_error *err)
{
	*d = safety_driver_find(e->ops->name);
	if (!*d)
		return err_set(err, ERR_FAIL, "no schema support for %s databases",
			       e->ops->display_name);
	return 0;
}

static const char *const kind_names[] = {
	[SOBJ_TABLE] = "table",
	[SOBJ_COLUMN] = "column",
	[SOBJ_CONSTRAINT] = "constraint",
	[SOBJ_INDEX] = "index",
	[SOBJ_TRIGGER] = "trigger",
	[SOBJ_VIEW] = "view",
	[SOBJ_SEQUENCE] = "sequence",
	[SOBJ_TYPE] = "type",
	[SOBJ_FUNCTION] = "function",
};

#define N_KINDS (sizeof(kind_names) / sizeof(kind_names[0]))

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

struct schema_obj *schema_add(struct schema_model *m, enum schema_kind kind, const char *table,
			      const char *name, const char *def)
{
	struct schema_obj *o;

	ALLOC_GROW(m->items, m->n + 1, m->alloc);
	o = &m->items[m->n++];
	memset(o, 0, sizeof(*o));
	o->kind = kind;
	o->table = dup_or_null(table);
	o->name = xstrdup(name ? name : "");
	o->def = dup_or_null(def);
	return o;
}

void schema_release(struct schema_model *m)
{
	for (size_t i = 0; i < m->n; i++) {
		free(m->items[i].table);
		free(m->items[i].name);
		free(m->items[i].type);
		free(m->items[i].dflt);
		free(m->items[i].def);
		free(m->items[i].source);
	}
	free(m->items);
	memset(m, 0, sizeof(*m));
}

static int by_position(const void *a, const void *b)
{
	const struct schema_obj *x = *(const struct schema_obj *const *)a;
	const struct schema_obj *y = *(const struct schema_obj *const *)b;

	if (x->position != y->position)
		return (x->position > y->position) - (x->position < y->position);
	return strcmp(x->name, y->name);
}

size_t schema_table_columns(const struct schema_model *m, const char *table,
			    const struct schema_obj ***out)
{
	const struct schema_obj **v = NULL;
	size_t n = 0, alloc = 0;

	for (size_t i = 0; i < m->n; i++) {
		if (m->items[i].kind != SOBJ_COLUMN || strcmp(m->items[i].table, table))
			continue;
		/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
		ALLOC_GROW(v, n + 1, alloc);
		v[n++] = &m->items[i];
	}
	if (n)
		/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
		qsort(v, n, sizeof(v[0]), by_position);
	*out = v;
	return n;
}

int schema_is_own_table(const char *name)
{
	return !strncmp(name, "safe_migrate_", strlen("safe_migrate_"));
}

/* Canonical order: each table followed by its columns, constraints, indexes
 * and triggers; then views, sequences, types and functions. */
static int section(const struct schema_obj *o)
{
	switch (o->kind) {
	case SOBJ_VIEW:
		return 1;
	case SOBJ_SEQUENCE:
		return 2;
	case SOBJ_TYPE:
		return 3;
	case SOBJ_FUNCTION:
		return 4;
	default:
		return 0;
	}
}

static const char *group(const struct schema_obj *o)
{
	return o->table ? o->table : o->name;
}

static int cmp_obj(const void *a, const void *b)
{
	const struct schema_obj *x = a, *y = b;
	int c;

	if (section(x) != section(y))
		return section(x) - section(y);
	if ((c = strcmp(group(x), group(y))))
		return c;
	if (x->kind != y->kind)
		return (int)x->kind - (int)y->kind;
	return strcmp(x->name, y->name);
}

void schema_sort(struct schema_model *m)
{
	if (m->n)
		qsort(m->items, m->n, sizeof(m->items[0]), cmp_obj);
}

int schema_load(struct engine *e, struct schema_model *m, struct sm_error *err)
{
	return schema_load_since(e, NULL, m, err);
}

int schema_load_since(struct engine *e, const struct schema_model *prev, struct schema_model *m,
		      struct sm_error *err)
{
	const struct safety_driver *d;

	memset(m, 0, sizeof(*m));
	if (safety_driver_for(e, &d, err) < 0)
		return -1;
	if (d->schema_load(e, prev, m, err) < 0) {
		schema_release(m);
		return err_prefix(err, "cannot read the schema");
	}
	schema_sort(m);
	return 0;
}

int schema_row_counts(struct engine *e, const struct schema_model *m, struct strbuf *out,
		      struct sm_error *err)
{
	const struct safety_driver *d;

	if (safety_driver_for(e, &d, err) < 0)
		return -1;
	for (size_t i = 0; i < m->n; i++) {
		long long n = 0;

		if (m->items[i].kind != SOBJ_TABLE)
			continue;
		if (d->count_rows(e, m->items[i].name, &n, err) < 0)
			return err_prefix(err, "cannot count the rows of '%s'", m->items[i].name);
		sb_addf(out, "%s=%lld\n", m->items[i].name, n);
	}
	return 0;
}

/* ---- canonical text ------------------------------------------------------ */

static void add_field(struct strbuf *out, const char *s)
{
	sb_addch(out, '\t');
	for (; s && *s; s++) {
		switch (*s) {
		case '\\': sb_adds(out, "\\\\"); break;
		case '\t': sb_adds(out, "\\t"); break;
		case '\n': sb_adds(out, "\\n"); break;
		case '\r': sb_adds(out, "\\r"); break;
		default: sb_addch(out, *s);
		}
	}
}

static void obj_line(const struct schema_obj *o, struct strbuf *out)
{
	sb_adds(out, kind_names[o->kind]);
	if (o->table)
		add_field(out, o->table);
	add_field(out, o->name);
	switch (o->kind) {
	case SOBJ_TABLE:
		break;
	case SOBJ_COLUMN:
		add_field(out, o->type);
		add_field(out, o->notnull ? "not null" : "null");
		if (o->dflt) {
			struct strbuf d = STRBUF_INIT;
			sb_addf(&d, "default %s", o->dflt);
			add_field(out, d.buf);
			sb_release(&d);
		}
		if (o->position > 0) {
			char pos[32];

			snprintf(pos, sizeof(pos), "position %d", o->position);
			add_field(out, pos);
		}
		break;
	default:
		add_field(out, o->def);
		if (o->invalid)
			add_field(out, o->kind == SOBJ_INDEX ? "invalid" : "not valid");
	}
	sb_addch(out, '\n');
}

#define CANONICAL_HEADER "# safe-migrate schema v2\n"
/* before columns had positions: recorded by earlier versions, and
 * committed as --expected files */
#define CANONICAL_HEADER_V1 "# safe-migrate schema v1\n"

int schema_is_canonical_text(const char *text)
{
	return !strncmp(text, CANONICAL_HEADER, strlen(CANONICAL_HEADER)) ||
	       !strncmp(text, CANONICAL_HEADER_V1, strlen(CANONICAL_HEADER_V1));
}

void schema_canonical_text(const struct schema_model *m, struct strbuf *out)
{
	sb_adds(out, CANONICAL_HEADER);
	for (size_t i = 0; i < m->n; i++)
		obj_line(&m->items[i], out);
}

void schema_forget_positions(struct schema_model *m)
{
	for (size_t i = 0; i < m->n; i++)
		m->items[i].position = 0;
}

void schema_fingerprint(const char *text, char hex[65])
{
	hash_buf_hex(text, strlen(text), hex);
}

/* Splits line (len bytes, no newline) at TABs into unescaped fields. */
static size_t split_fields(const char *line, size_t len, char **fields, size_t max)
{
	size_t n = 0;
	struct strbuf f = STRBUF_INIT;

	for (size_t i = 0; i <= len; i++) {
		if (i == len || line[i] == '\t') {
			if (n < max)
				fields[n] = sb_detach(&f);
			else
				sb_release(&f);
			n++;
			continue;
		}
		if (line[i] == '\\' && i + 1 < len) {
			char c = line[++i];
			sb_addch(&f, c == 't' ? '\t' : c == 'n' ? '\n' : c == 'r' ? '\r' : c);
		} else {
			sb_addch(&f, line[i]);
		}
	}
	sb_release(&f);
	return n;
}

/* The N of a "position N" field (a whole number from 1), or 0. */
static int parse_position(const char *field)
{
	const char *digits = field + strlen("position ");
	char *end;
	long n;

	if (strncmp(field, "position ", strlen("position ")) || *digits < '1' || *digits > '9')
		return 0;
	n = strtol(digits, &end, 10);
	return *end || n > INT_MAX ? 0 : (int)n;
}

/* Adds the object one line's fields describe; 0 if they make no sense. */
static int parse_fields(struct schema_model *m, char **f, size_t nf)
{
	size_t k;
	struct schema_obj *o;

	for (k = 0; k < N_KINDS; k++)
		if (!strcmp(f[0], kind_names[k]))
			break;
	switch (k) {
	case SOBJ_TABLE:
		if (nf != 2)
			return 0;
		schema_add(m, SOBJ_TABLE, NULL, f[1], NULL);
		return 1;
	case SOBJ_COLUMN:
		if (nf < 5 || nf > 7 || (strcmp(f[4], "null") && strcmp(f[4], "not null")))
			return 0;
		o = schema_add(m, SOBJ_COLUMN, f[1], f[2], NULL);
		o->type = xstrdup(f[3]);
		o->notnull = !strcmp(f[4], "not null");
		/* then [default EXPR] [position N], in that order */
		for (size_t i = 5; i < nf; i++) {
			if (!o->dflt && !o->position && !strncmp(f[i], "default ", 8))
				o->dflt = xstrdup(f[i] + 8);
			else if (o->position || !(o->position = parse_position(f[i])))
				return 0;
		}
		return 1;
	case SOBJ_VIEW:
	case SOBJ_SEQUENCE:
	case SOBJ_TYPE:
	case SOBJ_FUNCTION:
		if (nf != 3)
			return 0;
		schema_add(m, (enum schema_kind)k, NULL, f[1], f[2]);
		return 1;
	case SOBJ_CONSTRAINT:
	case SOBJ_INDEX:
	case SOBJ_TRIGGER:
		if (nf != 4 && !(nf == 5 && (!strcmp(f[4], "invalid") || !strcmp(f[4], "not valid"))))
			return 0;
		schema_add(m, (enum schema_kind)k, f[1], f[2], f[3])->invalid = nf == 5;
		return 1;
	}
	return 0;
}

#define MAX_FIELDS 8

int schema_load_text(const char *text, const char *name, struct schema_model *m,
		     struct sm_error *err)
{
	const char *p = text;
	int lineno = 0;

	memset(m, 0, sizeof(*m));
	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		size_t used = len + (nl ? 1 : 0);
		char *f[MAX_FIELDS] = { NULL };
		size_t nf;
		int ok;

		lineno++;
		if (len && p[len - 1] == '\r')
			len--;
		if (!len || p[0] == '#') {
			p += used;
			continue;
		}
		nf = split_fields(p, len, f, MAX_FIELDS);
		ok = nf <= MAX_FIELDS && parse_fields(m, f, nf);
		for (size_t i = 0; i < MAX_FIELDS; i++)
			free(f[i]);
		if (!ok) {
			schema_release(m);
			return err_set(err, ERR_FAIL, "'%s', line %d: not a safe-migrate schema line "
				       "(expected the output of 'safe-migrate schema')", name, lineno);
		}
		p += used;
	}
	schema_sort(m);
	return 0;
}

/* ---- diff ---------------------------------------------------------------- */

static const struct schema_obj *find_obj(const struct schema_model *m,
					 const struct schema_obj *key)
{
	return m->n ? bsearch(key, m->items, m->n, sizeof(m->items[0]), cmp_obj) : NULL;
}

static int has_table(const struct schema_model *m, const char *table)
{
	struct schema_obj key = { .kind = SOBJ_TABLE, .name = (char *)table };

	return find_obj(m, &key) != NULL;
}

static void describe(const struct schema_obj *o, struct strbuf *out)
{
	switch (o->kind) {
	case SOBJ_COLUMN:
		sb_addf(out, "column '%s.%s'", o->table, o->name);
		break;
	case SOBJ_TABLE:
	case SOBJ_VIEW:
	case SOBJ_SEQUENCE:
	case SOBJ_TYPE:
	case SOBJ_FUNCTION:
		sb_addf(out, "%s '%s'", kind_names[o->kind], o->name);
		break;
	default:
		sb_addf(out, "%s '%s' on table '%s'", kind_names[o->kind], o->name, o->table);
	}
}

static int str_differs(const char *a, const char *b)
{
	if (!a || !b)
		return a != b;
	return strcmp(a, b) != 0;
}

#define SHORT_DEF 100 /* longer definitions are not quoted in messages */

static size_t diff_pair(const struct schema_obj *x, const struct schema_obj *y,
			const char *check, const char *against, struct finding_list *out)
{
	struct strbuf what = STRBUF_INIT;
	size_t n = 0;

	describe(x, &what);
	if (x->kind == SOBJ_COLUMN) {
		if (str_differs(x->type, y->type)) {
			finding_add(out, FINDING_CHECK, check, LEVEL_FAIL, NULL, NULL, 0,
				    "%s type changed: %s in %s, %s now", what.buf, x->type, against,
				    y->type);
			n++;
		}
		if (x->notnull != y->notnull) {
			finding_add(out, FINDING_CHECK, check, LEVEL_FAIL, NULL, NULL, 0,
				    "%s nullability changed: %s in %s, %s now", what.buf,
				    x->notnull ? "NOT NULL" : "NULL", against,
				    y->notnull ? "NOT NULL" : "NULL");
			n++;
		}
		if (str_differs(x->dflt, y->dflt)) {
			finding_add(out, FINDING_CHECK, check, LEVEL_FAIL, NULL, NULL, 0,
				    "%s default changed: %s in %s, %s now", what.buf,
				    x->dflt ? x->dflt : "none", against, y->dflt ? y->dflt : "none");
			n++;
		}
	} else {
		if (str_differs(x->def, y->def)) {
			const char *a = x->def ? x->def : "", *b = y->def ? y->def : "";

			if (strlen(a) + strlen(b) > 2 * (size_t)SHORT_DEF || strchr(a, '\n') ||
			    strchr(b, '\n'))
				finding_add(out, FINDING_CHECK, check, LEVEL_FAIL,
					    "'safe-migrate validate -v' shows the full diff", NULL, 0,
					    "%s definition changed since %s", what.buf, against);
			else
				finding_add(out, FINDING_CHECK, check, LEVEL_FAIL, NULL, NULL, 0,
					    "%s definition changed: '%s' in %s, '%s' now", what.buf, a,
					    against, b);
			n++;
		}
		if (!x->invalid && y->invalid) {
			finding_add(out, FINDING_CHECK, check, LEVEL_FAIL, NULL, NULL, 0,
				    "%s is %s now (valid in %s)", what.buf,
				    y->kind == SOBJ_INDEX ? "invalid" : "NOT VALID", against);
			n++;
		}
	}
	sb_release(&what);
	return n;
}

/* A column both sides have, and its place on each. */
struct col_place {
	const char *name;
	int expected, actual;
};

static int by_expected(const void *a, const void *b)
{
	const struct col_place *x = a, *y = b;

	return (x->expected > y->expected) - (x->expected < y->expected);
}

static int by_actual(const void *a, const void *b)
{
	const struct col_place *x = a, *y = b;

	return (x->actual > y->actual) - (x->actual < y->actual);
}

static void list_names(const struct col_place *v, size_t n, struct strbuf *out)
{
	for (size_t i = 0; i < n; i++)
		sb_addf(out, "%s%s", i ? ", " : "", v[i].name);
}

/* One finding if the columns of table (expected's table object) that both
 * sides have come in another order in actual.  Only their relative order
 * counts: a column added or dropped moves the others' positions, and is
 * reported as such already.  A column with no position (a v1 text) is not
 * compared. */
static size_t diff_column_order(const struct schema_model *expected,
				const struct schema_model *actual, const struct schema_obj *table,
				const char *check, const char *against, struct finding_list *out)
{
	struct col_place *v = NULL;
	size_t n = 0, alloc = 0, moved = 0;

	/* a table's columns follow it in canonical order */
	for (const struct schema_obj *x = table + 1;
	     x < expected->items + expected->n && x->kind == SOBJ_COLUMN &&
	     !strcmp(x->table, table->name);
	     x++) {
		const struct schema_obj *y = find_obj(actual, x);

		if (!x->position || !y || !y->position)
			continue;
		ALLOC_GROW(v, n + 1, alloc);
		v[n++] = (struct col_place){ x->name, x->position, y->position };
	}
	if (n > 1) {
		qsort(v, n, sizeof(v[0]), by_expected);
		for (size_t i = 1; i < n; i++)
			if (v[i].actual < v[i - 1].actual)
				moved = 1;
	}
	if (moved) {
		struct strbuf was = STRBUF_INIT, now = STRBUF_INIT;

		list_names(v, n, &was);
		qsort(v, n, sizeof(v[0]), by_actual);
		list_names(v, n, &now);
		finding_add(out, FINDING_CHECK, check, LEVEL_FAIL,
			    "SELECT * and INSERT without a column list follow the order", NULL, 0,
			    "table '%s' column order changed: %s in %s, %s now", table->name, was.buf,
			    against, now.buf);
		sb_release(&was);
		sb_release(&now);
	}
	free(v);
	return moved;
}

size_t schema_diff(const struct schema_model *expected, const struct schema_model *actual,
		   const char *check, const char *against, struct finding_list *out)
{
	struct strbuf what = STRBUF_INIT;
	size_t n = 0;

	for (size_t i = 0; i < expected->n; i++) {
		const struct schema_obj *x = &expected->items[i];
		const struct schema_obj *y = find_obj(actual, x);

		if (y) {
			n += diff_pair(x, y, check, against, out);
			if (x->kind == SOBJ_TABLE)
				n += diff_column_order(expected, actual, x, check, against, out);
			continue;
		}
		if (x->table && !has_table(actual, x->table))
			continue; /* reported with its table */
		sb_reset(&what);
		describe(x, &what);
		finding_add(out, FINDING_CHECK, check, LEVEL_FAIL, NULL, NULL, 0,
			    "missing %s (present in %s)", what.buf, against);
		n++;
	}
	for (size_t i = 0; i < actual->n; i++) {
		const struct schema_obj *y = &actual->items[i];

		if (find_obj(expected, y))
			continue;
		if (y->table && !has_table(expected, y->table))
			continue;
		sb_reset(&what);
		describe(y, &what);
		finding_add(out, FINDING_CHECK, check, LEVEL_FAIL, NULL, NULL, 0,
			    "extra %s (not in %s)", what.buf, against);
		n++;
	}
	sb_release(&what);
	return n;
}

/* ---- text diff ----------------------------------------------------------- */

struct lines {
	char **v;
	size_t n, alloc;
};

static void split_lines(const char *text, struct lines *l)
{
	const char *p = text;

	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);

		if (len && p[0] != '#') {
			ALLOC_GROW(l->v, l->n + 1, l->alloc);
			l->v[l->n++] = xstrndup(p, len);
		}
		p += len + (nl ? 1 : 0);
	}
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_lines(struct lines *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

static void one_side(const struct lines *from, const struct lines *sorted_other, char mark,
		     struct strbuf *out)
{
	for (size_t i = 0; i < from->n; i++)
		if (!sorted_other->n || !bsearch(&from->v[i], sorted_other->v, sorted_other->n,
						 sizeof(char *), cmp_str))
			sb_addf(out, "%c %s\n", mark, from->v[i]);
}

void schema_text_diff(const char *a, const char *b, struct strbuf *out)
{
	struct lines la = { 0 }, lb = { 0 }, sa = { 0 }, sb_ = { 0 };

	split_lines(a, &la);
	split_lines(b, &lb);
	split_lines(a, &sa);
	split_lines(b, &sb_);
	if (sa.n)
		qsort(sa.v, sa.n, sizeof(char *), cmp_str);
	if (sb_.n)
		qsort(sb_.v, sb_.n, sizeof(char *), cmp_str);
	one_side(&la, &sb_, '-', out);
	one_side(&lb, &sa, '+', out);
	free_lines(&la);
	free_lines(&lb);
	free_lines(&sa);
	free_lines(&sb_);
}
