/*
 * lint_impl: what lint.c shares with its dialects (lint_pg.c,
 * lint_sqlite.c).  Internal to safety/.
 */
#ifndef SM_LINT_IMPL_H
#define SM_LINT_IMPL_H

#include "lint.h"

struct lint_dialect;

struct lint_ctx {
	const struct lint_dialect *d;
	void *state; /* the dialect's */
	char **touched;
	size_t n_touched, alloc_touched;
	char **ignore;       /* "RULE" or "RULE:VERSION" */
	size_t n_ignore, alloc_ignore;
	const char *version; /* of the migration being linted (lint_migration_of), or NULL */
	int down;            /* it is a down section */
	/* tables created by the migrations linted so far ("index NAME" for indexes) */
	char **created;
	size_t n_created, alloc_created;
	/* set by a signal handler: stop between statements (lint_set_interrupt) */
	volatile sig_atomic_t *interrupted;
};

/* One migration being linted, and the statement being looked at. */
struct lint_run {
	struct lint_ctx *ctx;
	const char *sql;
	const char *file;
	int first_line;
	int transactional;
	struct finding_list *out;
	/* current statement: the comments and blank lines before it, its line */
	const char *lead;
	size_t lead_len;
	int line;
	struct engine_lines lines; /* numbers statements in one pass */
	/* tables created by this migration so far */
	char **created;
	size_t n_created, alloc_created;
};

struct lint_dialect {
	const char *engine;
	int (*begin)(struct lint_ctx *c, struct engine *live, struct sm_error *err);
	int (*migration)(struct lint_run *r, struct sm_error *err);
	void (*end)(struct lint_ctx *c);
	/* The first statement of sql that can never run in a transaction
	 * block (static text), or NULL; may be NULL itself. */
	const char *(*never_in_tx)(const char *sql);
};

extern const struct lint_dialect lint_pg_dialect;
extern const struct lint_dialect lint_sqlite_dialect;

/* Sets the current statement: it starts at sql+start, its leading comments
 * and whitespace included. */
void lint_at(struct lint_run *r, size_t start, size_t len);
/* Adds rule's finding for the current statement unless a
 * "-- safe-migrate:ignore" comment before it silences the rule. */
void lint_emit(struct lint_run *r, const char *rule, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Whether the lint was interrupted (lint_set_interrupt); fills err
 * (ERR_INTERRUPTED) when it was. */
int lint_interrupted(const struct lint_run *r, struct sm_error *err);
void lint_touch(struct lint_run *r, const char *table);
void lint_created(struct lint_run *r, const char *table);
/* Created by this migration (destructive rules: data put there by the same
 * migration is not lost data)? */
int lint_is_created(const struct lint_run *r, const char *table);
/* Created by this migration or an earlier one of the same lint run (lock and
 * emptiness rules: nothing uses it yet and it holds no rows written by the
 * application)? */
int lint_is_new(const struct lint_run *r, const char *table);
void lint_created_index(struct lint_run *r, const char *index);
int lint_is_created_index(const struct lint_run *r, const char *index);

#endif
