/*
 * safety_driver: what safety/ needs from each engine beyond the engine
 * interface, one table per engine keyed by engine_ops.name (as pg_dump keeps
 * one table per archive format).  Internal to safety/.
 */
#ifndef SM_SAFETY_DRIVER_H
#define SM_SAFETY_DRIVER_H

#include "checks.h"
#include "engine.h"
#include "error.h"
#include "finding.h"
#include "schema.h"
#include "url.h"

struct safety_driver {
	const char *engine; /* engine_ops.name */
	/* Fills m (unsorted) with the user schema, own tables excluded; prev
	 * (may be NULL) as schema_load_since says. */
	int (*schema_load)(struct engine *e, const struct schema_model *prev,
			   struct schema_model *m, struct sm_error *err);
	/* Appends one finding per integrity problem (check "integrity",
	 * "foreign-keys", "invalid-index", "not-valid-constraint"); adds nothing
	 * when all is well. */
	int (*integrity)(struct engine *e, struct finding_list *out, struct sm_error *err);
	/* The same, without the checks that a run's SQL cannot break and the
	 * snapshot already guards (validate_opts.quick_integrity; may be NULL:
	 * integrity is used). */
	int (*quick_integrity)(struct engine *e, struct finding_list *out, struct sm_error *err);
	/* quick_integrity of what can have changed since the engine started
	 * tracking writes: written is engine_ops.tracked_writes' list (a "*"
	 * line: anything may have changed); SQLite checks those tables and the
	 * foreign keys whose outcome they can change.  May be NULL. */
	int (*quick_integrity_written)(struct engine *e, const char *written,
				       struct finding_list *out, struct sm_error *err);
	/* The pipeline's baseline, for a run whose writes the engine tracks
	 * (engine_ops.track_writes): quick_integrity_local is what is taken up
	 * front; relations_baseline, just before the run first writes to the
	 * tables in written ("*": any), what quick_integrity_written will
	 * check there: the checks of those tables (leaving out those listed in
	 * own_done, adding those checked to it) and the checks between tables
	 * whose outcome the writes can change (leaving out those listed in
	 * done, adding those checked to it).  Both NULL or both set. */
	int (*quick_integrity_local)(struct engine *e, struct finding_list *out,
				     struct sm_error *err);
	int (*relations_baseline)(struct engine *e, const char *written, struct strbuf *done,
				  struct strbuf *own_done, struct finding_list *out,
				  struct sm_error *err);
	/* The pipeline's baseline for a change the engine cannot track (run
	 * -- COMMAND), in two parts: quick_integrity_but_whole is
	 * quick_integrity without the check of the whole file (SQLite:
	 * quick_check; foreign_key_check stays), whole_check is that check
	 * alone, and whole_check_findings turns its outcome, as the snapshot's
	 * backup recorded it (backup_result.check: "ok" or the problems one per
	 * line), into the findings whole_check would have made.  All NULL or
	 * all set. */
	int (*quick_integrity_but_whole)(struct engine *e, struct finding_list *out,
					 struct sm_error *err);
	int (*whole_check)(struct engine *e, struct finding_list *out, struct sm_error *err);
	void (*whole_check_findings)(const char *checked, struct finding_list *out);
	/* Estimated snapshot size: the database's size in bytes. */
	int (*db_size)(struct engine *e, unsigned long long *bytes, struct sm_error *err);
	/* Room an in-place restore of the snapshot needs outside the backup
	 * directory (may be NULL: the server's business): *dir (owned, caller
	 * frees) is the directory it is needed in, *bytes how much, given the
	 * database's size db_bytes (from db_size). */
	int (*restore_room)(struct engine *e, unsigned long long db_bytes, char **dir,
			    unsigned long long *bytes, struct sm_error *err);
	/* Rows in table (a name as the model spells it). */
	int (*count_rows)(struct engine *e, const char *table, long long *n, struct sm_error *err);
	/* Checks before connecting (may be NULL). */
	void (*preopen)(const struct db_url *url, struct finding_list *out);
	/* Engine-specific live checks (may be NULL); touched: tables the
	 * pending migrations touch. */
	int (*live_checks)(struct engine *e, const struct safety_check_opts *o,
			   const char *const *touched, size_t n_touched, struct finding_list *out,
			   struct sm_error *err);
};

extern const struct safety_driver safety_sqlite_driver;
extern const struct safety_driver safety_pg_driver;

/* The driver for engine name, or NULL. */
const struct safety_driver *safety_driver_find(const char *engine);
/* The driver for e, or fails naming the engine. */
int safety_driver_for(struct engine *e, const struct safety_driver **d, struct sm_error *err);

#endif
