/*
 * migration: discovering and parsing migration files.
 *
 * Four layouts are understood (see the README and docs/cli-contract):
 *   1. one file with dbmate's "-- migrate:up" / "-- migrate:down" markers
 *      (either may carry "transaction:false");
 *   2. a pair NNN_x.up.sql / NNN_x.down.sql;
 *   3. a plain NNN.sql with no markers: up-only;
 *   4. a pair NNN_x.sql / NNN_x_rollback.sql.
 * Up/down pairs pair by version and direction (golang-migrate's rule, so
 * "x..up.sql" finds "x.down.sql").  An empty or comment-only down section is
 * no down; an empty up section is a no-op migration.  A down file may carry
 * "-- migrate:down transaction:false"; "-- morph:nontransactional" marks a
 * file transaction:false.  Directories are walked recursively (feature
 * sub-folders) and several may be given; versions are unique across all of
 * them.  Every file is read and checked here, before any database is touched.
 */
#ifndef SM_MIGRATION_H
#define SM_MIGRATION_H

#include <stddef.h>

#include "engine.h"
#include "error.h"
#include "hash.h"

struct migration {
	char *version;     /* e.g. "20260223_143052" */
	char *description; /* e.g. "add_user_preferences" (may be "") */
	char *path;        /* the file holding the up SQL */
	char *down_path;   /* the file holding the down SQL, or NULL when there is none */
	char *up_sql;      /* owned */
	char *down_sql;    /* owned; NULL when there is no down section */
	int up_line;       /* line of up_sql's first character within path */
	int down_line;     /* line of down_sql's first character within down_path */
	int up_no_tx;      /* the up section runs outside a transaction: an enum mig_tx */
	int down_no_tx;    /* the same for the down section */
	const char *up_no_tx_what;   /* MIG_TX_NEVER: the statement, e.g. "VACUUM" (static) */
	const char *down_no_tx_what;
	char checksum[HASH_HEX_LEN + 1]; /* SHA-256 of up_sql */
};

/* Why a section runs outside a transaction (0: it runs inside one). */
enum mig_tx {
	MIG_TX_MARKER = 1, /* "transaction:false" or "-- morph:nontransactional" in the file */
	MIG_TX_NEVER = 2,  /* holds a statement that can never run in a transaction
			    * (CREATE INDEX CONCURRENTLY, VACUUM...): found by the lint */
	MIG_TX_OWN = 3,    /* controls its own transaction (BEGIN; ... COMMIT;): runs as
			    * written */
};

struct migration_set {
	struct migration *items; /* sorted by version */
	size_t n, alloc;
};

#define MIGRATION_SET_INIT { NULL, 0, 0 }

/* Loads every migration under dirs (recursively).  A missing directory, an
 * unreadable, binary or malformed file, or two files claiming one version is
 * an error naming the file(s). */
int mig_load(struct migration_set *set, char *const *dirs, size_t ndirs, struct sm_error *err);
void mig_set_release(struct migration_set *set);
/* Index of version in set, or -1. */
long mig_index(const struct migration_set *set, const char *version);

/* Parses one file's text into m's up/down sections (layout 1 or 3).  name is
 * used in messages.  Exposed for tests and fuzzing. */
int mig_parse_text(struct migration *m, const char *name, const char *text, size_t len,
		   struct sm_error *err);
void mig_release(struct migration *m);

/* Is sql empty or only whitespace and comments?  An empty up section is a
 * no-op migration (recorded when applied); an empty down section is no down. */
int mig_is_blank(const char *sql);

/* Does sql manage its own transaction: is its first statement that begins
 * or ends a transaction (engine_is_tx_control) a BEGIN or START?  A stray
 * COMMIT stays refused.  Splits sql with ops's parser; a script the parser
 * rejects counts as not. */
int mig_controls_tx(const struct engine_ops *ops, const char *sql);

/* Marks the sections of set that control their own transaction as
 * MIG_TX_OWN (see mig_controls_tx).  Sections already outside a transaction
 * are left as they are. */
void mig_set_find_own_tx(struct migration_set *set, const struct engine_ops *ops);

/* Why section up (or down) of m runs outside a transaction, for a notice:
 * "" when it does not.  Static or borrowed from m. */
const char *mig_tx_note(const struct migration *m, int up, char *buf, size_t size);

/* Rejects text that is not UTF-8 or holds NUL bytes (such a file is not SQL,
 * and quoting it in an error would put binary on the terminal): -1 with
 * "'name' is not a text file (NUL byte on line N)" or "... is not valid
 * UTF-8 (line N)". */
int mig_check_text(const char *name, const char *text, size_t len, struct sm_error *err);

#endif
