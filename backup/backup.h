/*
 * backup: taking a snapshot of a live database.
 *
 * backup_take() is what the CLI's `backup`, `drop-tables`, `restore`'s safety
 * snapshot and the safe-migrate pipeline call.  It is engine-agnostic: the
 * engine-specific work is done by a driver found in backup.c's table by
 * e->ops->name (as pg_dump's archive formats are).  Adding an engine is one
 * line in that table plus its backup_<engine>.c.  Nothing here prints.
 */
#ifndef SM_BACKUP_H
#define SM_BACKUP_H

#include <signal.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "engine.h"
#include "error.h"
#include "hash.h"
#include "snapshot.h"

struct backup_opts {
	/* Schema revision to record; NULL: the driver reads the newest version
	 * in safe_migrate_versions (if that table exists). */
	const char *revision;
	/* Progress of the payload (may be NULL). */
	snap_progress_fn progress;
	void *progress_ud;
	int no_owner; /* PostgreSQL: do not record ownership */
	int no_tablespaces; /* PostgreSQL: do not record tablespaces */
	/* PostgreSQL: copy the tables' rows over this many connections of one
	 * exported snapshot (0 or 1: the one connection; SQLite ignores it) */
	int jobs;
	/* A signal handler's flag (borrowed, may be NULL): once set, the
	 * snapshot is abandoned (ERR_INTERRUPTED, nothing published).  The
	 * server's running query is the caller's to cancel. */
	volatile sig_atomic_t *interrupted;
	/* zstd level (has_level 0: the snapshot layer's default) */
	int level, has_level;
	/* Where the archive goes instead of backup_dir/NAME.tar.zst (struct
	 * snap_write_opts): a user-named file, or a stream (use_output_fd,
	 * output_fd borrowed: stdout).  backup_dir still holds scratch files;
	 * the free-space check is then made in a new output file's directory
	 * (none for a stream). */
	const char *output;
	int output_fd, use_output_fd;
	/* Receives a copy of manifest.json (caller frees), or NULL. */
	cJSON **manifest;
	/* Also run the engine's own check of the database, on what the copy
	 * reads, beside the copy (SQLite: PRAGMA quick_check on a connection of
	 * its own that sees what the copy sees); the manifest records the
	 * outcome, so a restore of this snapshot need not check again. */
	int check;
	/* Where the driver puts that outcome (backup_take points it at
	 * backup_result.check; the caller's value is ignored). */
	char **check_result;
};

struct backup_result {
	char *path;                     /* owned: the snapshot file ("-" for a stream) */
	char sha256[HASH_HEX_LEN + 1];  /* of the whole file */
	uint64_t bytes;
	/* owned: the outcome of backup_opts.check, "ok" or the problems found
	 * one per line; NULL when no check ran */
	char *check;
};

#define BACKUP_RESULT_INIT { NULL, "", 0, NULL }

void backup_result_release(struct backup_result *r);

/* What a snapshot records about its database, to check a restored copy
 * against (verify --restore-to). */
struct backup_summary {
	char schema_sha256[HASH_HEX_LEN + 1]; /* the manifest's extra.schema_sha256; "" if none */
	cJSON *row_counts; /* owned: {"table": rows} as the manifest's row_counts */
	/* in: also read every table's content checksum (reads all the data) */
	int want_content;
	/* owned: {"table": checksum} as the manifest's extra.table_sha256, when
	 * want_content and the engine records them; else NULL */
	cJSON *table_sha256;
};

#define BACKUP_SUMMARY_INIT { "", NULL, 0, NULL }

void backup_summary_release(struct backup_summary *s);

struct backup_driver {
	const char *engine; /* e->ops->name */
	/* Writes the engine's entries into w (the manifest's engine and source
	 * are already set by backup_take).  Before its first entry, inside the
	 * transaction it copies in, it sets the revision: backup_set_revision,
	 * or on a connection of its own as that does.  Must keep memory
	 * bounded. */
	int (*take)(struct engine *e, struct snap_writer *w, const struct backup_opts *opts,
		    struct sm_error *err);
	/* Estimates the bytes the snapshot (and any scratch files) will need in
	 * the backup directory, for the free-space check. */
	int (*estimate)(struct engine *e, uint64_t *bytes, struct sm_error *err);
	/* Optional: fills out as backup_describe says. */
	int (*describe)(struct engine *e, const cJSON *extra, struct backup_summary *out,
			struct sm_error *err);
};

/* For drivers: records in w the revision, opts->revision or else the
 * newest version in safe_migrate_versions as e reads it now (none if the
 * table is missing); to be called in the transaction the snapshot is read
 * in, before the first entry. */
int backup_set_revision(struct engine *e, struct snap_writer *w, const struct backup_opts *opts,
			struct sm_error *err);
/* Keeps in *best (borrowed) the newer of *best and v (ver_cmp; v may be
 * NULL): the revision a snapshot records is the newest version applied. */
void backup_newer_version(const char *v, const char **best);

/* The driver for e's engine, or NULL. */
const struct backup_driver *backup_find_driver(const struct engine *e);

/*
 * Takes a snapshot of e into backup_dir (created 0700 if missing) as
 * NAME.tar.zst (name NULL: backup_YYYYMMDD_HHMMSS).  Checks free space
 * first (ERR_NOSPACE).  On success fills out (caller releases); on failure
 * no snapshot file is left behind.
 */
int backup_take(struct engine *e, const char *backup_dir, const char *name,
		const struct backup_opts *opts, struct backup_result *out, struct sm_error *err);

/*
 * Describes e now as a snapshot of it would: schema fingerprint and row
 * counts, read in one consistent transaction, nothing written.  extra is
 * the manifest's "extra" of the snapshot to compare with (the options it
 * was taken with; may be NULL).  An engine whose snapshots record no
 * fingerprint leaves it "" and counts no rows (row_counts stays NULL).
 */
int backup_describe(struct engine *e, const cJSON *extra, struct backup_summary *out,
		    struct sm_error *err);

/*
 * The first table whose content differs between the snapshot (extra, its
 * manifest's "extra": the per-table checksums recorded as it was taken,
 * "table_sha256") and got (backup_describe with want_content), or NULL
 * when all agree, or when either side has no checksums (an engine whose
 * snapshot is an exact page image records none).
 */
const char *backup_content_differs(const cJSON *extra, const struct backup_summary *got);

/* Engine drivers (backup_<engine>.c). */
extern const struct backup_driver backup_sqlite_driver;
extern const struct backup_driver backup_pg_driver;

#endif
