/*
 * finding: one result of a safety check, a lint rule or a validation, and
 * the growable list they are collected in.
 *
 * Every producer in safety/ (checks, lint, validate) appends findings and
 * never prints; the CLI and the safe-migrate pipeline decide how to show
 * them.  A finding at LEVEL_FAIL blocks (safety-check and lint exit 4) or is a
 * problem (validate exits 7); LEVEL_WARN is reported but does not block.
 */
#ifndef SM_FINDING_H
#define SM_FINDING_H

#include <cjson/cJSON.h>
#include <stddef.h>

enum level { LEVEL_PASS, LEVEL_WARN, LEVEL_FAIL };

/* Whether check_or_rule names a pre-flight/validation check or a lint rule:
 * it decides the JSON key ("check" or "rule"). */
enum finding_kind { FINDING_CHECK, FINDING_RULE };

struct finding {
	enum finding_kind kind;
	char *check_or_rule; /* e.g. "backup-dir", "drop-table"; owned */
	enum level level;
	char *message;       /* what was found, naming the object; owned */
	char *hint;          /* the safe alternative, or NULL; owned */
	char *file;          /* migration file, or NULL; owned */
	int line;            /* line in file (1-based), or 0 */
};

struct finding_list {
	struct finding *items;
	size_t n, alloc;
};

#define FINDING_LIST_INIT { NULL, 0, 0 }

/* Appends a finding (strings are copied; hint and file may be NULL) and
 * returns it (borrowed, valid until the list grows). */
struct finding *finding_add(struct finding_list *l, enum finding_kind kind, const char *name,
			    enum level level, const char *hint, const char *file, int line,
			    const char *fmt, ...) __attribute__((format(printf, 8, 9)));
/* Moves every finding of src to the end of dst; src is left empty. */
void finding_move(struct finding_list *dst, struct finding_list *src);
void finding_list_release(struct finding_list *l);

/* How many findings are at level lv. */
size_t finding_count(const struct finding_list *l, enum level lv);
/* "pass", "warn" or "fail". */
const char *level_name(enum level lv);

/* Renders the list as a new cJSON array of objects with "check" or "rule",
 * "level", "message", and "hint", "file", "line" when set.  Caller owns it. */
cJSON *finding_list_json(const struct finding_list *l);

#endif
