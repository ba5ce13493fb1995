/*
 * history: the version table, safe-migrate's record of applied migrations.
 *
 *   safe_migrate_versions(version, description, checksum, applied_at,
 *                         applied_by, execution_ms)
 *   safe_migrate_schema(id = 1, fingerprint, schema_text, recorded_at)
 *
 * Both are created on demand with portable SQL, so the same code serves every
 * engine.  checksum is the SHA-256 of the up SQL that was applied.
 */
#ifndef SM_HISTORY_H
#define SM_HISTORY_H

#include <stddef.h>

#include "engine.h"
#include "error.h"
#include "migration.h"

#define HIST_TABLE "safe_migrate_versions"
#define HIST_SCHEMA_TABLE "safe_migrate_schema"
/* The marks of runs in progress or unfinished (journal.h: journal_mark). */
#define HIST_RUNS_TABLE "safe_migrate_runs"

struct applied {
	char *version, *description, *checksum, *applied_at, *applied_by;
	long long execution_ms;
};

struct applied_set {
	struct applied *items; /* sorted by version */
	size_t n, alloc;
};

#define APPLIED_SET_INIT { NULL, 0, 0 }

/* Creates the version tables if absent. */
int hist_ensure(struct engine *e, struct sm_error *err);
/* Loads the applied versions; an absent table is an empty history. */
int hist_load(struct engine *e, struct applied_set *out, struct sm_error *err);
void hist_release(struct applied_set *a);
/* Records m as applied (replacing a row of the same version). */
int hist_record(struct engine *e, const struct migration *m, long long ms, struct sm_error *err);
/* Removes version's row. */
int hist_remove(struct engine *e, const char *version, struct sm_error *err);
long hist_index(const struct applied_set *a, const char *version);
/* The newest applied version, or NULL. Borrowed from a. */
const char *hist_current(const struct applied_set *a);

/* Records the schema fingerprint and canonical text after a change. */
int hist_save_schema(struct engine *e, const char *fingerprint, const char *text,
		     struct sm_error *err);
/* Loads the last recorded schema; *fingerprint and *text are NULL if none (caller frees). */
int hist_load_schema(struct engine *e, char **fingerprint, char **text, struct sm_error *err);

/* The OS user running us (for applied_by); caller frees. */
char *hist_os_user(void);
/* Current UTC time as "YYYY-MM-DDTHH:MM:SSZ". */
void hist_now_iso(char out[32]);

#endif
