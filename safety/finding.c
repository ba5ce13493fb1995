/*
 * finding: the findings list shared by checks, lint and validate (see finding.h).
 */
#include "finding.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"
#include "xalloc.h"

#define FINDING_MSG_MAX 1000

struct finding *finding_add(struct finding_list *l, enum finding_kind kind, const char *name,
			    enum level level, const char *hint, const char *file, int line,
			    const char *fmt, ...)
{
	struct strbuf msg = STRBUF_INIT;
	struct finding *f;
	va_list ap;

	va_start(ap, fmt);
	sb_vaddf(&msg, fmt, ap);
	va_end(ap);
	/* an SQL error quoting a 1 MB line must not become a 1 MB message; cut
	 * at a UTF-8 character boundary */
	if (msg.len > FINDING_MSG_MAX) {
		size_t cut = FINDING_MSG_MAX;

		while (cut && ((unsigned char)msg.buf[cut] & 0xC0) == 0x80)
			cut--;
		sb_setlen(&msg, cut);
		sb_adds(&msg, "... (message cut)");
	}
	ALLOC_GROW(l->items, l->n + 1, l->alloc);
	f = &l->items[l->n++];
	f->kind = kind;
	f->check_or_rule = xstrdup(name);
	f->level = level;
	f->message = sb_detach(&msg);
	f->hint = hint ? xstrdup(hint) : NULL;
	f->file = file ? xstrdup(file) : NULL;
	f->line = line;
	return f;
}

void finding_move(struct finding_list *dst, struct finding_list *src)
{
	for (size_t i = 0; i < src->n; i++) {
		ALLOC_GROW(dst->items, dst->n + 1, dst->alloc);
		dst->items[dst->n++] = src->items[i];
	}
	free(src->items);
	memset(src, 0, sizeof(*src));
}

void finding_list_release(struct finding_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->items[i].check_or_rule);
		free(l->items[i].message);
		free(l->items[i].hint);
		free(l->items[i].file);
	}
	free(l->items);
	memset(l, 0, sizeof(*l));
}

size_t finding_count(const struct finding_list *l, enum level lv)
{
	size_t n = 0;

	for (size_t i = 0; i < l->n; i++)
		n += l->items[i].level == lv;
	return n;
}

const char *level_name(enum level lv)
{
	switch (lv) {
	case LEVEL_PASS:
		return "pass";
	case LEVEL_WARN:
		return "warn";
	case LEVEL_FAIL:
		break;
	}
	return "fail";
}

cJSON *finding_list_json(const struct finding_list *l)
{
	cJSON *arr = cJSON_CreateArray();

	for (size_t i = 0; i < l->n; i++) {
		const struct finding *f = &l->items[i];
		cJSON *o = cJSON_CreateObject();

		cJSON_AddStringToObject(o, f->kind == FINDING_RULE ? "rule" : "check",
					f->check_or_rule);
		cJSON_AddStringToObject(o, "level", level_name(f->level));
		cJSON_AddStringToObject(o, "message", f->message);
		if (f->hint)
			cJSON_AddStringToObject(o, "hint", f->hint);
		if (f->file)
			cJSON_AddStringToObject(o, "file", f->file);
		if (f->line > 0)
			cJSON_AddNumberToObject(o, "line", f->line);
		cJSON_AddItemToArray(arr, o);
	}
	return arr;
}
