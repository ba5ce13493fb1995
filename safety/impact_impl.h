/*
 * impact_impl: the engine-specific half of impact.c, one table per engine
 * keyed by engine_ops.name (as safety_driver.h).  Internal to safety/.
 */
#ifndef SM_IMPACT_IMPL_H
#define SM_IMPACT_IMPL_H

#include "impact.h"

struct impact_driver {
	const char *engine; /* engine_ops.name */
	void *(*state_new)(void);
	void (*state_free)(void *st);
	/* Right before a statement; new_mig: the first of a migration. */
	int (*before)(void *st, struct engine *e, int new_mig, struct sm_error *err);
	/* After a statement that succeeded: adds (impact_add_rel) each relation
	 * it newly locked or rewrote. */
	int (*after)(void *st, struct engine *e, struct impact_stmt *s, struct sm_error *err);
	/* After a statement that failed (may be NULL): ends what before()
	 * started, and may add the relations it was seen to lock or wait for
	 * (no queries: the failure may have left e unusable). */
	void (*failed)(void *st, struct impact_stmt *s);
};

extern const struct impact_driver impact_pg_driver;
extern const struct impact_driver impact_sqlite_driver;

/* Appends a relation to s (strings copied) and returns it. */
struct impact_rel *impact_add_rel(struct impact_stmt *s, const char *name, const char *kind,
				  const char *mode);
/* Notes that s created (created != 0) or dropped the object what. */
void impact_add_object(struct impact_stmt *s, int created, const char *what);
/* Compares two object listings (column 0 a key, sorted byte-wise; column 1
 * what impact_add_object records) and notes the differences on s.  With
 * ours_col >= 0, an object new in after is the statement's only when that
 * column of it is "t" (another session may have created it meanwhile). */
void impact_diff_objects(struct impact_stmt *s, const struct eng_rows *before,
			 const struct eng_rows *after, int ours_col);
/* Microseconds on a monotonic clock. */
long long impact_now_us(void);
/* What a PostgreSQL table lock mode blocks. */
enum impact_blocks impact_pg_blocks(const char *mode);

/* The longest window blocking at least min, on an existing relation first. */
const struct impact_window *impact_longest(const struct impact *imp, enum impact_blocks min);

#endif
