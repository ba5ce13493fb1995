/*
 * schema: a database's schema as a model, its canonical text and its diff.
 *
 * The model is introspected from either engine through the per-engine
 * drivers of safety_driver.h (keyed by e->ops->name): tables, columns (type,
 * nullability, default), primary key / unique / foreign key / check
 * constraints, indexes (definition, validity), views, triggers, sequences,
 * and on PostgreSQL user-defined types and functions.  safe-migrate's own bookkeeping tables (every table whose name
 * starts with "safe_migrate_") are left out.
 *
 * The canonical text is one object per line, fields separated by TAB (TAB,
 * newline and backslash inside a field are written \t, \n, \\), sorted so
 * that a table's columns, constraints, indexes and triggers follow it:
 *
 *   # safe-migrate schema v2
 *   table      NAME
 *   column     TABLE  NAME  TYPE  null|not null  [default EXPR]  position N
 *   constraint TABLE  NAME  DEFINITION  [not valid]
 *   index      TABLE  NAME  DEFINITION  [invalid]
 *   trigger    TABLE  NAME  DEFINITION
 *   view       NAME   DEFINITION
 *   sequence   NAME   DEFINITION
 *   type       NAME   DEFINITION
 *   function   NAME(ARGS)  DEFINITION
 *
 * Columns are sorted by name; "position N" is a column's place among its
 * table's (1 first, dropped columns not counted): SELECT * and a positional
 * INSERT depend on it, so it is part of the schema.  Version 1 texts (before
 * positions) are still read: their columns have no position, and the diff
 * compares no order where a side has none.  The text is what `safe-migrate
 * schema` prints, what is stored in safe_migrate_schema after each change,
 * and what `validate --expected FILE` reads back.
 *
 * SQLite limits: CHECK constraints are not modelled (SQLite does not expose
 * them apart from the CREATE TABLE text); unnamed constraints get names from
 * their columns ("pk", "fk(a,b)", "unique(a)").
 */
#ifndef SM_SCHEMA_H
#define SM_SCHEMA_H

#include <stddef.h>

#include "engine.h"
#include "error.h"
#include "finding.h"
#include "strbuf.h"

enum schema_kind {
	SOBJ_TABLE,
	SOBJ_COLUMN,
	SOBJ_CONSTRAINT,
	SOBJ_INDEX,
	SOBJ_TRIGGER,
	SOBJ_VIEW,
	SOBJ_SEQUENCE,
	SOBJ_TYPE,     /* PostgreSQL enum, domain, composite and range types */
	SOBJ_FUNCTION, /* PostgreSQL functions and procedures, named with their arguments */
};

struct schema_obj {
	enum schema_kind kind;
	char *table;   /* owning table (column, constraint, index, trigger), else NULL */
	char *name;
	char *type;    /* column type, else NULL */
	int notnull;   /* column */
	int position;  /* column: its place in its table, 1 first; 0 not known (a v1 text) */
	char *dflt;    /* column default expression, or NULL */
	char *def;     /* definition (constraint, index, trigger, view, sequence), else NULL */
	int invalid;   /* index not valid / constraint NOT VALID (PostgreSQL) */
	/* what the driver read the object from, to tell later whether it
	 * changed (SQLite: a table's CREATE TABLE text); not in the canonical
	 * text, so NULL in a model read from it */
	char *source;
};

struct schema_model {
	struct schema_obj *items;
	size_t n, alloc;
};

#define SCHEMA_MODEL_INIT { NULL, 0, 0 }

/* Adds an object; every string is copied (NULLs allowed where documented
 * above).  Returns it, borrowed until the model grows. */
struct schema_obj *schema_add(struct schema_model *m, enum schema_kind kind, const char *table,
			      const char *name, const char *def);
void schema_release(struct schema_model *m);
/* Sorts the objects into canonical order (schema_load already does). */
void schema_sort(struct schema_model *m);

/* The columns of table in m in the table's order (by position, by name
 * where a position is not known), into *out: an array the caller frees, of
 * m's objects (borrowed, until m changes).  Returns how many. */
size_t schema_table_columns(const struct schema_model *m, const char *table,
			    const struct schema_obj ***out);

/* 1 for safe-migrate's own tables (names starting "safe_migrate_"). */
int schema_is_own_table(const char *name);

/* Introspects the schema of e into *m (which must be empty, caller releases
 * with schema_release), sorted. */
int schema_load(struct engine *e, struct schema_model *m, struct sm_error *err);
/* schema_load, given prev, a model schema_load read from e earlier in this
 * process: the driver may take from prev what it can tell is unchanged
 * (SQLite: the columns and constraints of each table whose CREATE TABLE
 * text is the same), so that reading the schema again after a migration
 * costs what the migration changed.  prev may be NULL. */
int schema_load_since(struct engine *e, const struct schema_model *prev, struct schema_model *m,
		      struct sm_error *err);

/* Appends the canonical text of m to out. */
void schema_canonical_text(const struct schema_model *m, struct strbuf *out);
/* Forgets the columns' positions (as a v1 text has none): a text of m then
 * says whether two schemas differ in anything but column order. */
void schema_forget_positions(struct schema_model *m);
/* Is text in that canonical form (it opens with its header line), rather
 * than e.g. SQL? */
int schema_is_canonical_text(const char *text);
/* SHA-256 (hex) of the canonical text. */
void schema_fingerprint(const char *text, char hex[65]);

/* Parses canonical text back into *m (empty on entry; caller releases).  name
 * is used in messages ("'schema.txt', line 3: ..."). */
int schema_load_text(const char *text, const char *name, struct schema_model *m,
		     struct sm_error *err);

/* Compares expected with actual and appends one LEVEL_FAIL finding (kind
 * FINDING_CHECK, named check) per difference: missing/extra table, column,
 * constraint, index, trigger, view or sequence; column type, nullability or
 * default change; a table's columns in another order (those both sides
 * have, where both know their positions: one finding a table); changed
 * definition; index or constraint no longer valid.
 * Children of a missing/extra table are not reported again.  against names
 * the expected side in messages ("the recorded schema").  Returns the number
 * of differences. */
size_t schema_diff(const struct schema_model *expected, const struct schema_model *actual,
		   const char *check, const char *against, struct finding_list *out);

/* Appends a line diff of two canonical texts: "- line" for lines only in a,
 * "+ line" for lines only in b. */
void schema_text_diff(const char *a, const char *b, struct strbuf *out);

/* Appends "table=N" lines, one per table of m in canonical order, with
 * count(*) of each (a full scan per table: for the pipeline's before/after
 * comparison, not for every command). */
int schema_row_counts(struct engine *e, const struct schema_model *m, struct strbuf *out,
		      struct sm_error *err);

#endif
