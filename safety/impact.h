/*
 * impact: what a rehearsal's statements lock, rewrite and block, measured on
 * the server while the dry run (or --rehearse-url) runs them.
 *
 * impact_new() returns a recorder whose stmt_observer is installed on the
 * rehearsing engine (engine.observer); each statement exec_script runs is
 * then measured: the relations it newly locked and in which mode (PostgreSQL:
 * pg_locks of the rehearsing backend, inside the transaction), what each lock
 * blocks, whether a relation was rewritten (its filenode, or SQLite's root
 * page, changed), sizes, row estimates and the statement's duration.  The
 * engine-specific part sits in a driver table keyed by engine_ops.name
 * (impact_impl.h).  impact_end() closes the last migration and computes the
 * per-relation blocking windows: from the first statement of a migration
 * that took a lock blocking writes (or reads) on a relation to the end of
 * that migration's transaction; outside a transaction, the statement alone.
 * A PostgreSQL statement run outside a transaction (CREATE INDEX
 * CONCURRENTLY) releases its locks when it ends: a second connection then
 * polls the rehearsing backend's pg_locks while it runs, and reports the
 * strongest mode per relation, how long it was held and how long waited.
 * Times leave out the measurement's own queries.
 */
#ifndef SM_IMPACT_H
#define SM_IMPACT_H

#include <cjson/cJSON.h>

#include "engine.h"
#include "error.h"
#include "strbuf.h"

enum impact_blocks { IMPACT_NONE, IMPACT_DDL, IMPACT_WRITES, IMPACT_READS };

/* One relation a statement locked newly (or more strongly), or rewrote. */
struct impact_rel {
	char *name;
	const char *kind;  /* "table", "index", "sequence", "view", "database", ... */
	char *mode;        /* the strongest lock held on it, e.g. "AccessExclusiveLock" (NULL: none) */
	const char *new_lock; /* the strongest lock the statement added (static; NULL: none) */
	enum impact_blocks blocks;
	enum impact_blocks new_blocks; /* what new_lock alone blocks */
	int rewritten;
	int existing;      /* existed before the migration began */
	long long bytes;   /* size after the statement; -1: unknown */
	long long rows;    /* row estimate; -1: unknown */
	/* how long the lock was held and how long the statement waited for it
	 * (another session held a conflicting one): outside a transaction as a
	 * second connection watched it; in one, held from the statement to the
	 * end of the transaction and waited unknown; -1: unknown */
	long long held_us, waited_us;
};

struct impact_stmt {
	size_t mig;        /* index into impact.migs */
	int line;
	char *text;        /* the statement, shortened to one line */
	char *sql;         /* the statement as run */
	long long start_us, us; /* microseconds from the rehearsal's start */
	int ok, in_tx;
	int observed;      /* its locks were observed: inside a transaction, or
			    * watched from a second connection while it ran */
	struct impact_rel *rels;
	size_t n_rels, alloc;
	/* the objects it created and dropped, e.g. "table orders", "index
	 * orders_n_idx" (PostgreSQL: relations, functions, types in the user's
	 * schemas; SQLite: sqlite_master's entries) */
	char **created, **dropped;
	size_t n_created, n_dropped, created_alloc, dropped_alloc;
};

struct impact_mig {
	char *file;
	long long start_us, end_us;
	int in_tx;
};

/* Per migration and relation: how long the application's writes (or
 * reads) to it would wait. */
struct impact_window {
	char *rel;          /* borrowed from the statement's impact_rel */
	const char *kind;
	size_t mig, stmt;   /* the first blocking statement */
	enum impact_blocks blocks;
	long long us;
	int existing;
	long long bytes, rows;
};

/* A lint finding about a statement, checked against what was measured. */
struct impact_lint {
	size_t stmt;
	char *rule;           /* e.g. "column-type-change" */
	const char *said;     /* what the rule claims: "rewrite", "blocks writes", ... */
	const char *measured; /* "rewrite", "no rewrite", "blocks ddl", "no new lock", ... */
	int verdict;          /* 1 confirmed, 0 contradicted, -1 not measurable (no new
			       * lock: an earlier statement already held it) */
};

struct impact_driver;

struct impact {
	const struct impact_driver *drv;
	void *dstate;
	const char *rehearsal; /* "in-place" or "rehearse-url" */
	struct stmt_observer obs;
	struct impact_mig *migs;
	size_t n_migs, migs_alloc;
	struct impact_stmt *stmts;
	size_t n_stmts, stmts_alloc;
	struct impact_window *wins;
	size_t n_wins, wins_alloc;
	struct impact_lint *lints; /* by impact_end */
	size_t n_lints, lints_alloc;
	long long t0;           /* the rehearsal's start */
	long long overhead;     /* time spent measuring, left out of every duration */
	struct sm_error err;    /* the first measurement error, if any */
	int open;               /* a statement is being measured */
};

/* rehearsal: "in-place" (the live database, rolled back) or "rehearse-url". */
int impact_new(struct impact **out, struct engine *e, const char *rehearsal,
	       struct sm_error *err);
void impact_free(struct impact *imp);
/* The observer to install as e->observer while the rehearsal runs. */
const struct stmt_observer *impact_observer(struct impact *imp);
/* Closes the last migration, computes the windows and checks the lint's
 * findings about lock strength and rewrites against the measurement. */
void impact_end(struct impact *imp);

const char *impact_blocks_name(enum impact_blocks b);
/* "confirmed", "CONTRADICTED" or why it could not be measured. */
const char *impact_lint_verdict(const struct impact_lint *l);
/* Appends the compact text report. */
void impact_render_text(const struct impact *imp, struct strbuf *out);
/* Appends the report as one self-contained XHTML page (well-formed XML, no
 * external references) with an inline SVG timeline: migrations and
 * statements along time, one lane (class "lane", data-relation) per locked
 * relation other than an index, windows coloured by what they block. */
void impact_render_html(const struct impact *imp, struct strbuf *out);
/* Every field, as the "impact" object of --json. */
cJSON *impact_to_json(const struct impact *imp);
/* The same without the statements (migrations with their times, windows,
 * rewrites, the longest write block): what the runs log keeps of a real run. */
cJSON *impact_to_json_brief(const struct impact *imp);

/* The gates: appends one line per window over max_blocking_ms (on an
 * existing non-empty table or database) and per rewrite over max_rewrite_bytes (a
 * limit < 0 is off).  Returns the number of violations. */
int impact_gate(const struct impact *imp, long long max_blocking_ms, long long max_rewrite_bytes,
		struct strbuf *out);

/* "11.4 MB" (powers of 1024; "?" when b < 0). */
void impact_human_size(long long b, char *buf, size_t n);
/* Parses "100MB", "2GB", "512kB", "4096" (bytes; units are powers of 1024). */
int impact_parse_size(const char *text, long long *bytes);

#endif
