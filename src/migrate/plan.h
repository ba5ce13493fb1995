/*
 * plan: what to run, from the migration set, the version table and a target.
 *
 * Targets: "head", "base", a version, "+N" (the next N pending), "-N" (the
 * last N applied).  Planning never touches the database; apply_plan() then
 * runs the steps, each migration in its own transaction unless marked
 * transaction:false.
 */
#ifndef SM_PLAN_H
#define SM_PLAN_H

#include <signal.h>
#include <stddef.h>

#include "engine.h"
#include "error.h"
#include "foreign.h"
#include "history.h"
#include "migration.h"

enum step_dir { STEP_UP, STEP_DOWN };

struct step {
	const struct migration *m; /* borrowed from the migration set */
	enum step_dir dir;
};

struct plan {
	struct step *steps;
	size_t n, alloc;
};

#define PLAN_INIT { NULL, 0, 0 }

void plan_release(struct plan *p);

/* How the migration directory and the version table agree. Indices point into
 * the set (pending, edited, out_of_order) or the applied set (missing). */
struct mig_status {
	size_t *pending;      size_t n_pending;
	size_t *edited;       size_t n_edited;       /* applied, file changed since */
	size_t *missing;      size_t n_missing;      /* applied, no file any more */
	size_t *out_of_order; size_t n_out_of_order; /* pending, older than the newest applied */
};

void plan_status(const struct migration_set *set, const struct applied_set *applied,
		 struct mig_status *st);
void plan_status_release(struct mig_status *st);

/* Fails (ERR_FAIL) naming the file if any applied migration was edited, and
 * naming the versions if pending ones are out of order (unless allowed). */
int plan_check_consistent(const struct migration_set *set, const struct applied_set *applied,
			  const struct mig_status *st, int allow_out_of_order, struct sm_error *err);

int plan_upgrade(const struct migration_set *set, const struct applied_set *applied,
		 const char *target, struct plan *out, struct sm_error *err);
int plan_downgrade(const struct migration_set *set, const struct applied_set *applied,
		   const char *target, struct plan *out, struct sm_error *err);
/* Resolves a stamp target to the index of the last migration that should be
 * recorded as applied (-1 for base). */
int plan_stamp_target(const struct migration_set *set, const struct applied_set *applied,
		      const char *target, long *last, struct sm_error *err);

/* Runs one step: its SQL and its version-table change, in a transaction of
 * its own (or bare, then recorded, for transaction:false).  When the caller
 * has a transaction open (e->in_tx), runs inside it and neither commits nor
 * rolls back (a transaction:false step is then refused).  mirror (may be NULL):
 * the other tool's version table, kept in step (plan_mirror).  *ms: how long
 * the SQL took. */
int run_step(struct engine *e, const struct step *s, const struct foreign_hist *mirror,
	     long long *ms, struct sm_error *err);

/* Called around each step; ud is apply_hooks.ud. err is set when ok == 0. */
struct apply_hooks {
	void *ud;
	void (*on_start)(void *ud, const struct step *s);
	void (*on_done)(void *ud, const struct step *s, long long ms, int ok,
			const struct sm_error *err);
};

/* Loads into *f the other tool's version table, if any, and sets *mirror to f
 * when that table mirrors ours, so that every recorded step keeps it so
 * (foreign.h); else *mirror is NULL.  Release f with foreign_release. */
int plan_mirror(struct engine *e, struct foreign_hist *f, const struct foreign_hist **mirror,
		struct sm_error *err);
/* Records step s (ms: how long it ran) in the version table, and in mirror
 * (may be NULL), in the current transaction. */
int plan_record_step(struct engine *e, const struct step *s, long long ms,
		     const struct foreign_hist *mirror, struct sm_error *err);

/* Runs the steps in order.  Each transactional step either fully applies (SQL
 * and version-table row) or leaves no trace.  Stops at the first failure and
 * sets *n_done to the number of steps completed.  If *stop becomes non-zero
 * (a signal), stops with ERR_INTERRUPTED. */
int apply_plan(struct engine *e, const struct plan *p, const struct apply_hooks *hooks,
	       volatile sig_atomic_t *stop, size_t *n_done, struct sm_error *err);

/* Appends the offline SQL script of an upgrade over set->items[from..to)
 * (version-table statements included), in ops's dialect.  The header names
 * label, or ops's display name when label is NULL. */
void plan_render_sql(const struct engine_ops *ops, const char *label,
		     const struct migration_set *set, size_t from, size_t to, struct strbuf *out);

/* Milliseconds on a monotonic clock. */
long long plan_now_ms(void);

#endif
