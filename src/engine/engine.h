/*
 * engine: the one interface behind which SQLite and PostgreSQL differ.
 *
 * Each backend fills a struct engine_ops (as pg_dump's archive formats and
 * libarchive's read/write backends do) and registers it in engine.c's table
 * under its URL scheme.  Nothing above this layer tests which database it is
 * talking to; modules that need engine-specific code (snapshots, schema
 * introspection, lint) keep their own tables keyed by ops->name.
 *
 * SQL given to query() uses $1..$n placeholders on both engines.
 */
#ifndef SM_ENGINE_H
#define SM_ENGINE_H

#include <stddef.h>

#include "error.h"
#include "strbuf.h"
#include "url.h"

struct engine;

/* A query result: nrows x ncols cells of text; a NULL cell is SQL NULL. */
struct eng_rows {
	size_t nrows, ncols;
	char **cells;    /* owned, row-major */
	char **colnames; /* owned, ncols entries */
};

#define ENG_ROWS_INIT { 0, 0, NULL, NULL }

const char *rows_get(const struct eng_rows *r, size_t row, size_t col);
void rows_release(struct eng_rows *r);

/* Where a script came from, so errors can name the file and line. */
struct exec_source {
	const char *file; /* display name, e.g. "migrations/0003_x.sql" */
	int first_line;   /* line of the script's first character within file (1-based) */
};

/* Called once per statement by ops->split: text is not NUL-terminated. */
typedef int (*stmt_cb)(void *ud, const char *text, size_t len, int line);

/* Which database this is, independent of how its URL is spelled
 * (sqlite:///./app.db and sqlite:///app.db, a URL and a keyword/value
 * conninfo): two connections reach the same database iff their keys are
 * equal. */
#define ENGINE_ID_LEN 160
struct engine_identity {
	char key[ENGINE_ID_LEN];   /* "sqlite:DEV:INO" or "postgresql:SYSTEM_ID:DB_OID" */
	char label[ENGINE_ID_LEN]; /* for messages: the file, or "database 'NAME'" */
};

/* engine_ops.track_writes' callback. */
typedef void (*engine_write_cb)(void *ud, struct engine *e, const char *tables);

/* How engine_ops.outside_state ends a line that a session other than the
 * run's wrote during the run: not the run's change to undo. */
#define ENGINE_OUTSIDE_THEIRS " (changed during the run by another session)"

struct engine_ops {
	const char *name;         /* "sqlite" or "postgresql": the URL scheme */
	const char *display_name; /* "SQLite" or "PostgreSQL" */

	/* Connects to e->url; with ENGINE_CREATE a missing SQLite file is created. */
	int (*open)(struct engine *e, unsigned flags, struct sm_error *err);
	void (*close)(struct engine *e);
	/* Connects again to the database e->url names now, when it is no
	 * longer the one this connection opened (identity() says which is
	 * there: SQLite stats the path, and a tool may have renamed a new
	 * file over it), with the settings open, set_timeouts, track_writes
	 * and confine_writes gave and the migration lock still held.  A
	 * transaction left open on the old connection is rolled back there,
	 * and what was attached to it is not attached again.  Nothing counted
	 * on the old database carries over: writes_since reports "*\t?" for a
	 * mark taken before, and tracked_writes "*".  On failure the
	 * connection stays on the old database.  NULL: a connection always
	 * reaches the database its URL names (PostgreSQL cannot drop a
	 * database that has connections). */
	int (*reopen)(struct engine *e, struct sm_error *err);

	/* Runs every statement of sql in order in the current transaction state.
	 * On failure err names src->file, the statement's line and the server's
	 * message (and err->sqlstate on PostgreSQL).  Inside a transaction
	 * begun with begin(), statements that would end it (engine_is_tx_control)
	 * are refused before they run.  PostgreSQL: a script that changes the
	 * search_path has it reset afterwards, so the next script starts from
	 * the session's default.  May set e->script_committed. */
	int (*exec_script)(struct engine *e, const char *sql, const struct exec_source *src,
			   struct sm_error *err);
	/* Splits sql into statements with the engine's real parser, without a
	 * connection.  Stops early if cb returns non-zero (that value is returned).
	 * Leading comments are skipped; PostgreSQL's statements come without
	 * their ';', SQLite's with it.  A script the parser rejects fails with
	 * -1 and err naming the line. */
	int (*split)(const char *sql, stmt_cb cb, void *ud, struct sm_error *err);

	int (*begin)(struct engine *e, struct sm_error *err);
	int (*commit)(struct engine *e, struct sm_error *err);
	/* Rolls back whatever transaction the connection has open: one begun
	 * with begin(), or one a script began itself (BEGIN, SAVEPOINT). */
	int (*rollback)(struct engine *e, struct sm_error *err);
	/* Whether the connection has a transaction open, begun with begin() or
	 * by a script's own BEGIN (or SAVEPOINT) that no COMMIT ended, a failed
	 * one included: it holds locks until it is rolled back. */
	int (*tx_open)(struct engine *e);
	/* Lets go of every lock this connection holds in the database, except
	 * the migration lock: rolls back an open transaction and (SQLite) ends
	 * locking_mode=EXCLUSIVE, which a migration may have set and which
	 * keeps the file locked after its transactions end.  Called before
	 * another connection restores the database. */
	int (*release_locks)(struct engine *e, struct sm_error *err);

	/* Runs one statement with text parameters ($1..$n; NULL means SQL NULL).
	 * rows may be NULL when the result is not wanted. */
	int (*query)(struct engine *e, const char *sql, int nparams, const char *const *params,
		     struct eng_rows *rows, struct sm_error *err);

	/* The migration lock, held for the whole run.  Waits up to timeout_ms
	 * (0: do not wait); on timeout fails with ERR_LOCKED. */
	int (*lock)(struct engine *e, long timeout_ms, struct sm_error *err);
	void (*unlock)(struct engine *e);

	/* Per-statement limits for migration SQL, in milliseconds (0: none). */
	int (*set_timeouts)(struct engine *e, long lock_timeout_ms, long statement_timeout_ms,
			    struct sm_error *err);

	/* Async-signal-safe: asks the statement now running to stop. */
	void (*interrupt)(struct engine *e);

	/* e.g. "SQLite 3.40.1" or "PostgreSQL 15.4". */
	int (*server_version)(struct engine *e, struct strbuf *out, struct sm_error *err);

	/* Appends ident quoted for this engine's SQL. */
	void (*quote_ident)(struct strbuf *out, const char *ident);
	/* Appends s as a string literal. */
	void (*quote_literal)(struct strbuf *out, const char *s);

	/* Sets *exists to whether a table (or view) of that name is visible. */
	int (*table_exists)(struct engine *e, const char *name, int *exists, struct sm_error *err);

	/* ---- what other sessions do (the pipeline's safety net) ---- */

	/* Starts counting this connection's own row writes (in transactions
	 * begun with begin()) and sets *mark (owned by the caller) to the
	 * database's write counters now. */
	int (*writes_mark)(struct engine *e, char **mark, struct sm_error *err);
	/* Appends "TABLE\tROWS\n" for each table that OTHER connections wrote
	 * since mark (ROWS: rows inserted, updated or deleted; "?" when the
	 * engine cannot count; TABLE "*" when it cannot tell which table;
	 * "TABLE\tROWS\tdropped\n" for a table this connection then dropped,
	 * whose rows no saved state can hold: ROWS "?" when they could not be
	 * read before the drop committed), and
	 * "OBJECT\tdefinition\n" for each object whose definition they created
	 * or changed (OBJECT: its kind and name, "table public.t"; engines
	 * whose "*" covers every change need not). */
	int (*writes_since)(struct engine *e, const char *mark, struct strbuf *out,
			    struct sm_error *err);
	/* Starts recording which tables this connection's statements may write
	 * rows of or change the definition of, triggers and foreign-key actions
	 * included, for tracked_writes (may be NULL: the engine cannot tell).
	 * before_write (may be NULL) is called in exec_script after a statement
	 * was prepared and before it runs, when it writes tables no statement
	 * before it did: tables lists them one per line ("*": any table, as in
	 * tracked_writes).  It may run queries on e that only read.  Calling
	 * it again starts over (before_write NULL: none). */
	int (*track_writes)(struct engine *e, engine_write_cb before_write, void *ud,
			    struct sm_error *err);
	/* Appends the tables this connection wrote since track_writes, one per
	 * line; a line "*" when any table may have changed (tracking never
	 * started, or a statement whose effect is not tied to the tables it
	 * names, such as ALTER TABLE).  Other connections' writes are not
	 * included.  May be NULL. */
	int (*tracked_writes)(struct engine *e, struct strbuf *out, struct sm_error *err);
	/* From now on (on) or no longer, exec_script refuses a statement that
	 * would write where no snapshot of the database reaches: SQLite, a
	 * database ATTACHed to the connection (reading one is allowed, and so
	 * is writing "main" and the connection's own "temp").  The statement
	 * fails before it runs, and the error says why.  The pipeline runs its
	 * migrations so, since its restore could not undo such a write.  May be
	 * NULL: the engine has nothing of the kind to refuse. */
	int (*confine_writes)(struct engine *e, int on, struct sm_error *err);
	/* Appends one line per other session holding a lock in this database:
	 * "pid N, user U, application 'A', state S, since T".  May be NULL. */
	int (*lock_holders)(struct engine *e, struct strbuf *out, struct sm_error *err);
	/* How many locks an in-place restore of the database as it is would
	 * take in its one transaction, and how many the server's lock table
	 * guarantees (*available < 0: no limit).  May be NULL. */
	int (*restore_locks)(struct engine *e, long *needed, long *available, struct sm_error *err);
	/* Appends the user schemas, one per line (none on engines without
	 * schemas). */
	int (*user_schemas)(struct engine *e, struct strbuf *out, struct sm_error *err);
	/* Appends, one per line in a stable order, what a migration can change
	 * that no snapshot of the database holds or an in-place restore does
	 * not put back when the run created or changed it (PostgreSQL:
	 * extensions, publications, wrappers, servers, casts, languages and
	 * their grants, event triggers, the database's settings, grants and
	 * comment, grants on the system catalogs, functions added to them and
	 * system functions changed since initdb, and the cluster's roles,
	 * memberships and role settings): the pipeline compares it before the
	 * run and after its restore, and names what the restore left.  Called
	 * after writes_mark, a line the engine can tell the writer of says
	 * whether the run or another session changed it during the run, in its
	 * own words, so that it differs from the line before; one another
	 * session wrote reads "OBJECT: STATE" ENGINE_OUTSIDE_THEIRS.  May be
	 * NULL (SQLite: the snapshot is the whole file). */
	int (*outside_state)(struct engine *e, struct strbuf *out, struct sm_error *err);
	/* Fills id: SQLite the st_dev and st_ino of the file at the path now
	 * (stat(): a file renamed over the path is another identity, even
	 * before reopen follows it; no file there fails with sys_errno
	 * ENOENT); PostgreSQL the cluster's system_identifier
	 * (pg_control_system()) and the database's OID (where the role may
	 * not call pg_control_system(): the server's own address and port
	 * instead of the system identifier). */
	int (*identity)(struct engine *e, struct engine_identity *id, struct sm_error *err);

	/* Masks in text every password that url carries (NULL: no secrets
	 * beyond what url_redact finds). */
	void (*scrub_secrets)(const struct db_url *url, struct strbuf *text);

	/* Appends what another tool needs to reach url's database (run --
	 * COMMAND's DATABASE_URL): password included, never print it. */
	void (*client_url)(const struct db_url *url, struct strbuf *out);

	/* Creates a throwaway empty database (roundtrip's scratch) and appends
	 * its URL; *remove (caller frees, and removes that file when done) is
	 * NULL when nothing is left to clean.  NULL: the engine cannot, the
	 * user names one (--url). */
	int (*make_scratch)(struct strbuf *url_out, char **remove, struct sm_error *err);

	/* drop-tables: run before its transaction (NULL: nothing); the query
	 * listing (kind in lowercase, name as SQL, name as reported) of every
	 * user object in an order that drops dependents first (NULL: not
	 * supported); what follows each DROP statement. */
	const char *drop_prepare_sql;
	const char *drop_list_sql;
	const char *drop_suffix;
};

/* Watches the statements exec_script runs (the dry run's impact
 * measurement): before() right before a statement is sent, after() right
 * after it finished (ok: it succeeded).  The callbacks may run queries on e
 * (never exec_script); they cannot fail the script. */
struct stmt_observer {
	void *ud;
	void (*before)(void *ud, struct engine *e, const char *text, size_t len,
		       const struct exec_source *src, int line);
	void (*after)(void *ud, struct engine *e, int ok);
};

struct engine {
	const struct engine_ops *ops;
	struct db_url url; /* owned copy */
	void *impl;        /* backend state */
	int in_tx;         /* a transaction begun through ops->begin is open */
	/* Set to 1 by exec_script when a statement it ran outside a
	 * transaction of ours committed a change, or may have (a COMMIT counts
	 * whatever its transaction wrote); never cleared by it (a callback's
	 * own scripts run in the middle of a script): whoever asks about one
	 * script clears it first (run_step).  Still 0 afterwards: the script
	 * left the database as it found it. */
	int script_committed;
	const struct stmt_observer *observer; /* borrowed; NULL: none */
};

#define ENGINE_CREATE 0x1 /* SQLite: create the file if it does not exist */

/* Returns the backend registered for scheme, or NULL. */
const struct engine_ops *engine_find(const char *scheme);

/* Picks the backend for url, connects, and returns the engine (caller owns:
 * engine_close).  Never creates a database unless flags has ENGINE_CREATE. */
int engine_open(struct engine **out, const struct db_url *url, unsigned flags,
		struct sm_error *err);
/* Rolls back an open transaction, releases the lock, disconnects, frees. NULL-safe. */
void engine_close(struct engine *e);

/* Do a and b name the same database?  Opens b (never creating it) and
 * compares identities with a's.  *same is 0 when b does not exist yet. */
int engine_same_database(struct engine *a, const struct db_url *b, int *same,
			 struct sm_error *err);

/* A printable copy of text (caller frees): every password url carries, in
 * any spelling its engine knows (a URL, a conninfo keyword, the decoded
 * value), and any URL credentials, masked as "***".  For echoing command
 * lines that may carry the database URL. */
char *engine_scrub(const struct db_url *url, const char *text);

/* Convenience: a script with no source file. */
int engine_exec(struct engine *e, const char *sql, struct sm_error *err);
/* Convenience: the first column of the first row as a newly allocated string
 * (NULL if no row or SQL NULL). */
int engine_scalar(struct engine *e, const char *sql, int nparams, const char *const *params,
		  char **out, struct sm_error *err);
/* The native handle: sqlite3 * or PGconn *, for the modules that need the
 * engine's own API (the backup API, COPY).  Borrowed. */
void *engine_native(struct engine *e);

/* Appends ident in standard SQL quoting ("...", '"' doubled), which both
 * SQLite and PostgreSQL use: the backends' quote_ident. */
void engine_quote_ident_sql(struct strbuf *out, const char *ident);

/* Line number (1-based) of offset within text, counting from first_line.
 * Scans from the start: for one message; a loop over statements uses
 * struct engine_lines. */
int engine_line_at(const char *text, size_t offset, int first_line);

/* Line numbers of increasing offsets in one text, counted incrementally so
 * that numbering every statement of a script costs one pass over it (a
 * rescan per statement made a 4 MB seed file take minutes). */
struct engine_lines {
	const char *text; /* borrowed */
	size_t off;       /* counted up to here */
	int line, first;
};

void engine_lines_init(struct engine_lines *l, const char *text, int first_line);
/* Line number of offset (an offset before the last one asked rescans). */
int engine_lines_at(struct engine_lines *l, size_t offset);
/* Skips whitespace and SQL comments; returns the first offset of real text. */
size_t engine_skip_space(const char *text, size_t len);
/* Does the statement at stmt (len bytes, comments already skipped) begin or
 * end a transaction?  BEGIN, START, COMMIT, END, ABORT and ROLLBACK do;
 * ROLLBACK TO (a savepoint) does not.  Backends refuse such statements in a
 * script run inside a transaction of their own. */
int engine_is_tx_control(const char *stmt, size_t len);

#endif
