/*
 * pg_archive: the PostgreSQL archive's entry names and its typed table of
 * contents (see pg_archive.h).
 */
#include "pg_archive.h"

#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

void pga_data_entry(struct strbuf *out, size_t n)
{
	sb_reset(out);
	sb_addf(out, "data/%06zu.copy", n);
}

/* The client encodings a snapshot is read in: UTF8, and the server
 * encodings that PostgreSQL cannot convert to UTF8 (pg_conversion has no
 * default conversion from them), read as they are. */
static const char *const encodings[] = { PGA_ENCODING_UTF8, "SQL_ASCII", "MULE_INTERNAL" };

static const char *known_encoding(const char *name)
{
	for (size_t i = 0; name && i < sizeof(encodings) / sizeof(*encodings); i++)
		if (!strcmp(encodings[i], name))
			return encodings[i];
	return NULL;
}

const char *pga_encoding(const cJSON *obj)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, PGA_TOC_ENCODING);

	if (!v)
		return PGA_ENCODING_UTF8;
	return cJSON_IsString(v) ? known_encoding(v->valuestring) : NULL;
}

static const char *const lock_names[] = {
	"", "ACCESS SHARE", "ROW SHARE", "ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "SHARE",
	"SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE",
};

#define BIT(m) (1u << (m))
/* PostgreSQL's table of conflicting lock modes ("Explicit Locking"). */
static const unsigned conflicts[] = {
	[PGA_LOCK_NONE] = 0,
	[PGA_LOCK_ACCESS_SHARE] = BIT(PGA_LOCK_ACCESS_EXCLUSIVE),
	[PGA_LOCK_ROW_SHARE] = BIT(PGA_LOCK_EXCLUSIVE) | BIT(PGA_LOCK_ACCESS_EXCLUSIVE),
	[PGA_LOCK_ROW_EXCLUSIVE] = BIT(PGA_LOCK_SHARE) | BIT(PGA_LOCK_SHARE_ROW_EXCLUSIVE) |
				   BIT(PGA_LOCK_EXCLUSIVE) | BIT(PGA_LOCK_ACCESS_EXCLUSIVE),
	[PGA_LOCK_SHARE_UPDATE_EXCLUSIVE] = BIT(PGA_LOCK_SHARE_UPDATE_EXCLUSIVE) |
					    BIT(PGA_LOCK_SHARE) | BIT(PGA_LOCK_SHARE_ROW_EXCLUSIVE) |
					    BIT(PGA_LOCK_EXCLUSIVE) | BIT(PGA_LOCK_ACCESS_EXCLUSIVE),
	[PGA_LOCK_SHARE] = BIT(PGA_LOCK_ROW_EXCLUSIVE) | BIT(PGA_LOCK_SHARE_UPDATE_EXCLUSIVE) |
			   BIT(PGA_LOCK_SHARE_ROW_EXCLUSIVE) | BIT(PGA_LOCK_EXCLUSIVE) |
			   BIT(PGA_LOCK_ACCESS_EXCLUSIVE),
	[PGA_LOCK_SHARE_ROW_EXCLUSIVE] = BIT(PGA_LOCK_ROW_EXCLUSIVE) |
					 BIT(PGA_LOCK_SHARE_UPDATE_EXCLUSIVE) | BIT(PGA_LOCK_SHARE) |
					 BIT(PGA_LOCK_SHARE_ROW_EXCLUSIVE) | BIT(PGA_LOCK_EXCLUSIVE) |
					 BIT(PGA_LOCK_ACCESS_EXCLUSIVE),
	[PGA_LOCK_EXCLUSIVE] = BIT(PGA_LOCK_ROW_SHARE) | BIT(PGA_LOCK_ROW_EXCLUSIVE) |
			       BIT(PGA_LOCK_SHARE_UPDATE_EXCLUSIVE) | BIT(PGA_LOCK_SHARE) |
			       BIT(PGA_LOCK_SHARE_ROW_EXCLUSIVE) | BIT(PGA_LOCK_EXCLUSIVE) |
			       BIT(PGA_LOCK_ACCESS_EXCLUSIVE),
	[PGA_LOCK_ACCESS_EXCLUSIVE] = BIT(PGA_LOCK_ACCESS_SHARE) | BIT(PGA_LOCK_ROW_SHARE) |
				      BIT(PGA_LOCK_ROW_EXCLUSIVE) |
				      BIT(PGA_LOCK_SHARE_UPDATE_EXCLUSIVE) | BIT(PGA_LOCK_SHARE) |
				      BIT(PGA_LOCK_SHARE_ROW_EXCLUSIVE) | BIT(PGA_LOCK_EXCLUSIVE) |
				      BIT(PGA_LOCK_ACCESS_EXCLUSIVE),
};

const char *pga_lock_name(enum pga_lock mode)
{
	return (size_t)mode < sizeof(lock_names) / sizeof(*lock_names) ? lock_names[mode] : "";
}

int pga_locks_conflict(enum pga_lock a, enum pga_lock b)
{
	if ((size_t)a >= sizeof(conflicts) / sizeof(*conflicts))
		return 1;
	return (conflicts[a] & BIT(b)) != 0;
}

int pga_lock_parse(const char *name)
{
	for (size_t i = 0; i < sizeof(lock_names) / sizeof(*lock_names); i++)
		if (!strcmp(name, lock_names[i]))
			return (int)i;
	return -1;
}

struct pga_entry *pga_toc_add_slice(struct pga_toc *t, const char *kind, const char *name,
				    size_t offset, size_t len)
{
	struct pga_entry *e;

	ALLOC_GROW(t->v, t->n + 1, t->alloc);
	e = &t->v[t->n++];
	memset(e, 0, sizeof(*e));
	e->kind = xstrdup(kind);
	e->name = xstrdup(name ? name : "");
	e->offset = offset;
	e->len = len;
	return e;
}

struct pga_entry *pga_toc_add(struct pga_toc *t, struct strbuf *script, const char *kind,
			      const char *name, const char *sql, size_t len)
{
	struct pga_entry *e = pga_toc_add_slice(t, kind, name, script->len, len);

	sb_add(script, sql, len);
	return e;
}

void pga_entry_add_table(struct pga_entry *e, const char *table)
{
	for (size_t i = 0; i < e->ntables; i++)
		if (!strcmp(e->tables[i], table))
			return;
	if (e->ntables == PGA_MAX_TABLES) {
		e->lock = PGA_LOCK_NONE;
		return;
	}
	e->tables[e->ntables++] = xstrdup(table);
}

/* Kept in ascending order: a set, written the same whatever the order the
 * catalog's rows came in (which a plan of the server's decides). */
void pga_entry_add_dep(struct pga_entry *e, size_t dep)
{
	size_t i = 0;

	while (i < e->ndeps && e->deps[i] < dep)
		i++;
	if (i < e->ndeps && e->deps[i] == dep)
		return;
	ALLOC_GROW(e->deps, e->ndeps + 1, e->adeps);
	memmove(e->deps + i + 1, e->deps + i, (e->ndeps - i) * sizeof(*e->deps));
	e->deps[i] = dep;
	e->ndeps++;
}

static void entry_release(struct pga_entry *e)
{
	free(e->kind);
	free(e->name);
	free(e->owner);
	for (size_t i = 0; i < e->ntables; i++)
		free(e->tables[i]);
	free(e->deps);
	free(e->index_sql);
	free(e->attach_sql);
}

void pga_toc_release(struct pga_toc *t)
{
	for (size_t i = 0; i < t->n; i++)
		entry_release(&t->v[i]);
	free(t->v);
	t->v = NULL;
	t->n = t->alloc = 0;
}

/* A max-heap of entry indexes (pga_toc_sort's ready entries). */
static void heap_push(size_t *h, size_t *n, size_t v)
{
	size_t i = (*n)++;

	while (i && h[(i - 1) / 2] < v) {
		h[i] = h[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h[i] = v;
}

static size_t heap_pop(size_t *h, size_t *n)
{
	size_t top = h[0], v = h[--*n], i = 0;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= *n)
			break;
		if (c + 1 < *n && h[c + 1] > h[c])
			c++;
		if (h[c] <= v)
			break;
		h[i] = h[c];
		i = c;
	}
	if (*n)
		h[i] = v;
	return top;
}

int pga_toc_sort(struct pga_toc *t, struct strbuf *script, size_t *at)
{
	size_t n = t->n, nheap = 0, *needers, *heap, *order, *pos, k;
	struct strbuf out = STRBUF_INIT;
	struct pga_entry *v;
	int moved = 0;

	if (!n)
		return 0;
	/* needers[i]: how many entries need i and are not placed yet.  The
	 * order is built from the end: the last entry nothing unplaced needs,
	 * the one latest in the current order, goes last. */
	needers = xcalloc(n, sizeof(*needers));
	heap = xcalloc(n, sizeof(*heap));
	order = xcalloc(n, sizeof(*order));
	pos = xcalloc(n, sizeof(*pos));
	for (size_t i = 0; i < n; i++)
		for (size_t d = 0; d < t->v[i].ndeps; d++)
			needers[t->v[i].deps[d]]++;
	for (size_t i = 0; i < n; i++)
		if (!needers[i])
			heap_push(heap, &nheap, i);
	for (k = n; k > 0 && nheap; k--) {
		size_t j = heap_pop(heap, &nheap);

		order[k - 1] = j;
		for (size_t d = 0; d < t->v[j].ndeps; d++)
			if (!--needers[t->v[j].deps[d]])
				heap_push(heap, &nheap, t->v[j].deps[d]);
	}
	if (k > 0) {
		for (size_t i = 0; i < n; i++)
			if (needers[i])
				*at = i;
		free(needers);
		free(heap);
		free(order);
		free(pos);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		pos[order[i]] = i;
		moved |= order[i] != i;
	}
	if (moved) {
		size_t base = t->v[0].offset, end = t->v[n - 1].offset + t->v[n - 1].len;

		sb_add(&out, script->buf, base);
		v = xcalloc(n, sizeof(*v));
		for (size_t i = 0; i < n; i++) {
			v[i] = t->v[order[i]];
			v[i].offset = out.len;
			sb_add(&out, script->buf + t->v[order[i]].offset, v[i].len);
			for (size_t d = 0; d < v[i].ndeps; d++)
				v[i].deps[d] = pos[v[i].deps[d]];
		}
		sb_add(&out, script->buf + end, script->len - end);
		free(t->v);
		t->v = v;
		t->alloc = n;
		sb_release(script);
		*script = out;
	}
	free(needers);
	free(heap);
	free(order);
	free(pos);
	return 0;
}

cJSON *pga_toc_json(const struct pga_toc *t)
{
	cJSON *arr = cJSON_CreateArray();

	for (size_t i = 0; i < t->n; i++) {
		const struct pga_entry *e = &t->v[i];
		cJSON *o = cJSON_CreateObject(), *tables, *deps;

		cJSON_AddStringToObject(o, "kind", e->kind);
		cJSON_AddStringToObject(o, "name", e->name);
		if (e->owner)
			cJSON_AddStringToObject(o, "owner", e->owner);
		tables = cJSON_AddArrayToObject(o, "tables");
		for (size_t j = 0; j < e->ntables; j++)
			cJSON_AddItemToArray(tables, cJSON_CreateString(e->tables[j]));
		cJSON_AddStringToObject(o, "lock", pga_lock_name(e->lock));
		deps = cJSON_AddArrayToObject(o, "deps");
		for (size_t j = 0; j < e->ndeps; j++)
			cJSON_AddItemToArray(deps, cJSON_CreateNumber((double)e->deps[j]));
		cJSON_AddNumberToObject(o, "offset", (double)e->offset);
		cJSON_AddNumberToObject(o, "length", (double)e->len);
		if (e->index_sql && e->attach_sql) {
			cJSON_AddStringToObject(o, "index_sql", e->index_sql);
			cJSON_AddStringToObject(o, "attach_sql", e->attach_sql);
		}
		cJSON_AddItemToArray(arr, o);
	}
	return arr;
}

/* A non-negative integer field below limit into *out. */
static int get_size(const cJSON *o, const char *key, double limit, size_t *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	double d = cJSON_IsNumber(v) ? v->valuedouble : -1;

	if (d < 0 || d > limit || d != (double)(size_t)d)
		return -1;
	*out = (size_t)d;
	return 0;
}

static const char *get_str(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int parse_entry(const cJSON *o, size_t idx, size_t script_len, struct pga_entry *e)
{
	const char *kind = get_str(o, "kind"), *name = get_str(o, "name");
	const char *lock = get_str(o, "lock"), *isql = get_str(o, "index_sql");
	const char *asql = get_str(o, "attach_sql"), *owner = get_str(o, "owner");
	const cJSON *tables = cJSON_GetObjectItemCaseSensitive(o, "tables");
	const cJSON *deps = cJSON_GetObjectItemCaseSensitive(o, "deps"), *v;
	int mode = lock ? pga_lock_parse(lock) : -1;

	memset(e, 0, sizeof(*e));
	if (!kind || !name || mode < 0 || !cJSON_IsArray(tables) || !cJSON_IsArray(deps) ||
	    cJSON_GetArraySize(tables) > PGA_MAX_TABLES ||
	    get_size(o, "offset", (double)script_len, &e->offset) < 0 ||
	    get_size(o, "length", (double)(script_len - e->offset), &e->len) < 0)
		return -1;
	e->kind = xstrdup(kind);
	e->name = xstrdup(name);
	e->owner = owner ? xstrdup(owner) : NULL;
	e->lock = (enum pga_lock)mode;
	cJSON_ArrayForEach(v, tables) {
		if (!cJSON_IsString(v))
			return -1;
		e->tables[e->ntables++] = xstrdup(v->valuestring);
	}
	cJSON_ArrayForEach(v, deps) {
		/* an earlier entry: the script's order satisfies every dependency */
		if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= (double)idx ||
		    v->valuedouble != (double)(size_t)v->valuedouble)
			return -1;
		pga_entry_add_dep(e, (size_t)v->valuedouble);
	}
	if (isql && asql) {
		e->index_sql = xstrdup(isql);
		e->attach_sql = xstrdup(asql);
	}
	return 0;
}

int pga_toc_parse(const cJSON *toc, size_t script_len, struct pga_toc *out, struct sm_error *err)
{
	return pga_toc_parse_list(toc, "post_data", script_len, out, err);
}

int pga_toc_parse_list(const cJSON *toc, const char *key, size_t script_len, struct pga_toc *out,
		       struct sm_error *err)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(toc, key), *o;

	pga_toc_release(out);
	if (!arr)
		return 0;
	if (!cJSON_IsArray(arr))
		return err_set(err, ERR_DAMAGED, "its %s has a malformed %s list", PGA_TOC_ENTRY, key);
	cJSON_ArrayForEach(o, arr) {
		ALLOC_GROW(out->v, out->n + 1, out->alloc);
		if (parse_entry(o, out->n, script_len, &out->v[out->n]) < 0) {
			size_t bad = out->n++;

			pga_toc_release(out);
			return err_set(err, ERR_DAMAGED, "its %s has a malformed %s entry "
				       "(number %zu)", PGA_TOC_ENTRY, key, bad);
		}
		out->n++;
	}
	return 0;
}
