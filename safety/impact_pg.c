/*
 * impact_pg: PostgreSQL's half of the impact measurement.  Before each
 * statement it notes the relation locks the rehearsing backend holds; after
 * it, pg_locks (pid = pg_backend_pid(), inside the transaction) gives the
 * locks the statement added, and a changed pg_relation_filenode a rewrite.
 * Every user relation's filenode is read once per migration; after that only
 * the locked relations' (a rewrite needs a lock), which keeps the cost per
 * statement to two small queries about the backend's own locks: the real
 * run measures too, inside its transactions.
 *
 * A statement outside a transaction (transaction:false: CREATE INDEX
 * CONCURRENTLY, say) releases its locks when it ends, before after() could
 * read them.  For those a second connection (the watcher, opened once) polls
 * the rehearsing backend's locks from a thread while the statement runs:
 * the strongest mode per relation, the time it was held and the time the
 * statement queued for it behind another session.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_pg.h"
#include "history.h"
#include "impact_impl.h"
#include "xalloc.h"

struct pg_state {
	struct eng_rows locks;    /* oid, mode held before the statement */
	struct eng_rows nodes;    /* oid, filenode before the statement (kept up to date
				   * from the locked relations after each statement) */
	struct eng_rows baseline; /* oid of the relations that existed when the migration began */
	struct eng_rows objs;     /* key, "kind name" of the user's objects before the statement */
	int have_objs;
	struct watch *watch;      /* outside a transaction; NULL until the first such statement */
};

/* A relation the watcher saw the backend lock (or wait for). */
struct watched_rel {
	char *oid;
	char *name, *relkind;       /* NULL: not looked up yet */
	int other;                  /* not the user's (or gone before it was looked up) */
	int rank;                   /* the strongest mode, granted or awaited */
	long long held_us, waited_us;
};

/* The watcher: its connection, and while a statement runs, its thread. */
struct watch {
	struct engine *conn;
	char pid[24];               /* the rehearsing backend's */
	pthread_t thread;
	int running;
	atomic_int stop;
	atomic_int ready;           /* the thread's first poll has returned */
	long long t0;               /* the watch's start */
	struct watched_rel *rels;   /* written by the thread, read after it joined */
	size_t n_rels, alloc;
	struct sm_error err;        /* the thread's, read after it joined */
};

#define USER_NS "n.oid IN " PG_USER_NSP

/*
 * The listings looked up by oid (find_row) come sorted byte-wise by their
 * first column, and the look-ups are binary searches: a migration that
 * creates a thousand tables in one transaction holds thousands of locks by
 * its end, and a linear search of them for each lock after each statement
 * made its run quadratic (600 tables: 63 s, against 2.8 s for `upgrade`).
 */
#define BY_OID(expr) " ORDER BY " expr " COLLATE \"C\""

static const char lock_sql[] =
	"SELECT l.relation::oid::text, l.mode FROM pg_locks l "
	"WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted"
	BY_OID("l.relation::oid::text") ", l.mode COLLATE \"C\"";

static const char node_sql[] =
	"SELECT c.oid::text, coalesce(pg_relation_filenode(c.oid)::text, '') FROM pg_class c "
	"JOIN pg_namespace n ON n.oid = c.relnamespace WHERE " USER_NS BY_OID("c.oid::text");

/* (the size and row estimate of the few relations reported come after,
 * from watched_sql: pg_table_size of every relation locked, after every
 * statement, was quadratic too) */
static const char after_sql[] =
	"SELECT c.oid::text, CASE WHEN n.nspname = 'public' THEN c.relname "
	"ELSE n.nspname || '.' || c.relname END, c.relkind::text, l.mode, "
	"coalesce(pg_relation_filenode(c.oid)::text, '') "
	"FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
	"JOIN pg_namespace n ON n.oid = c.relnamespace "
	"WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted AND "
	/* the user's schemas as an array, read once: as a semi-join, the
	 * planner tested each lock's schema against them, a regular expression
	 * and an index probe per lock (half of the query's time with 3,000) */
	"n.oid = ANY (ARRAY" PG_USER_NSP ") AND c.relname <> '" HIST_TABLE "' ORDER BY 2, 1";

#define QNAME(n, x) "CASE WHEN " n ".nspname = 'public' THEN " x " ELSE " n ".nspname || '.' || " x " END"

/* The user's relations, functions and types (not a table's row type or an
 * array type), keyed by catalog and oid, in byte order, and whether the
 * transaction that wrote each one's catalog row is still in progress: read
 * inside ours, it can only be ours (another session's uncommitted rows are
 * not visible), savepoints' included (PG_XMIN_TXID). */
static const char obj_sql[] =
	"WITH o(key, what, xmin) AS ("
	"SELECT ('c' || c.oid::text) COLLATE \"C\", CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' "
	"WHEN 'i' THEN 'index' WHEN 'I' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 'v' THEN "
	"'view' WHEN 'm' THEN 'materialized view' WHEN 'c' THEN 'type' WHEN 'f' THEN "
	"'foreign table' ELSE 'relation' END || ' ' || " QNAME("n", "c.relname") ", c.xmin "
	"FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE " USER_NS
	" AND c.relkind <> 't' AND c.relname <> '" HIST_TABLE "' "
	"UNION ALL SELECT 'p' || p.oid::text, 'function ' || " QNAME("n", "p.proname") " || '(' || "
	"pg_get_function_identity_arguments(p.oid) || ')', p.xmin FROM pg_proc p "
	"JOIN pg_namespace n ON n.oid = p.pronamespace WHERE " USER_NS " "
	"UNION ALL SELECT 't' || t.oid::text, 'type ' || " QNAME("n", "t.typname") ", t.xmin "
	"FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE " USER_NS
	" AND t.typtype IN ('e', 'd', 'r', 'm')) "
	"SELECT o.key, o.what, CASE WHEN o.xmin::text::bigint < 3 THEN 'f' ELSE "
	"(pg_catalog.txid_status(" PG_XMIN_TXID("o.xmin") ") = 'in progress')::text::char END "
	"FROM o ORDER BY 1";

/* The watcher's poll: the backend's relation locks, granted or awaited,
 * while it runs a statement (its pg_stat_activity row: active), on objects
 * not built into the server (FirstNormalObjectId).  Kept to pg_locks and
 * the one backend's activity, about 0.2 ms: a name is looked up once, when
 * its relation first appears (watch_names_sql). */
static const char watch_sql[] =
	"SELECT l.relation::oid::text, l.mode, CASE WHEN l.granted THEN 't' ELSE 'f' END "
	"FROM pg_locks l, pg_stat_get_activity($1::int) a WHERE l.pid = a.pid AND "
	"a.state = 'active' AND l.locktype = 'relation' AND l.relation >= 16384 AND "
	"l.database = (SELECT oid FROM pg_database WHERE datname = current_database())";

/* The watcher's look-up of relations it saw locked ($1: an oid[] literal):
 * the user's only. */
static const char watch_names_sql[] =
	"SELECT c.oid::text, " QNAME("n", "c.relname") ", c.relkind::text FROM pg_class c "
	"JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY ($1::oid[]) AND "
	USER_NS " AND c.relname <> '" HIST_TABLE "'" BY_OID("c.oid::text");

/* After a watched statement: the filenode, size and row estimate of the
 * relations it locked ($1: an oid[] literal). */
static const char watched_sql[] =
	"SELECT c.oid::text, coalesce(pg_relation_filenode(c.oid)::text, ''), "
	"pg_table_size(c.oid)::text, "
	"CASE WHEN c.reltuples < 0 THEN '-1' ELSE c.reltuples::bigint::text END "
	"FROM pg_class c WHERE c.oid = ANY ($1::oid[])" BY_OID("c.oid::text");

/* How long the watcher pauses between two polls: WATCH_PAUSE_MIN_NS
 * (short enough to catch a CREATE INDEX CONCURRENTLY of a small table, tens
 * of milliseconds) while the backend waits for a lock (so that the grant is
 * seen at once) or its locks just changed; then 1% of the time they have
 * stayed the same, at most WATCH_PAUSE_MAX_NS: a statement that holds its
 * lock for hours in production is polled 50 times a second, not 2,000 (each
 * poll reads pg_locks, which takes the server's lock-manager locks). */
#define WATCH_PAUSE_MIN_NS 500000L
#define WATCH_PAUSE_MAX_NS 20000000L

/* Reads the object listing; inside a transaction under the guard. */
static int read_objs(struct engine *e, struct eng_rows *out, struct sm_error *err);

static void *pg_state_new(void)
{
	return xcalloc(1, sizeof(struct pg_state));
}

static int mode_rank(const char *mode);
static long find_row(const struct eng_rows *r, const char *key);

static void watch_forget(struct watch *w)
{
	for (size_t i = 0; i < w->n_rels; i++) {
		free(w->rels[i].oid);
		free(w->rels[i].name);
		free(w->rels[i].relkind);
	}
	w->n_rels = 0;
}

/* Notes one poll's row: dt microseconds (since the previous poll) of holding
 * (granted) or of waiting for the lock.  Returns 1 for a relation not seen
 * before. */
static int watch_note(struct watch *w, const struct eng_rows *r, size_t row, long long dt)
{
	const char *oid = rows_get(r, row, 0);
	int rank = mode_rank(rows_get(r, row, 1)), granted = !strcmp(rows_get(r, row, 2), "t");
	int fresh = 0;
	struct watched_rel *x = NULL;

	for (size_t i = 0; i < w->n_rels && !x; i++)
		if (!strcmp(w->rels[i].oid, oid))
			x = &w->rels[i];
	if (!x) {
		ALLOC_GROW(w->rels, w->n_rels + 1, w->alloc);
		x = &w->rels[w->n_rels++];
		memset(x, 0, sizeof(*x));
		x->oid = xstrdup(oid);
		fresh = 1;
	}
	if (rank > x->rank)
		x->rank = rank;
	if (granted)
		x->held_us += dt;
	else
		x->waited_us += dt;
	return fresh;
}

/* Appends an oid[] literal of the watched relations that were looked up
 * (named) or that are still to look up (!named). */
static void oid_array(const struct watch *w, int named, struct strbuf *out)
{
	size_t start = out->len;

	sb_addch(out, '{');
	for (size_t i = 0; i < w->n_rels; i++)
		if (named ? w->rels[i].name != NULL : !w->rels[i].name && !w->rels[i].other)
			sb_addf(out, "%s%s", out->len > start + 1 ? "," : "", w->rels[i].oid);
	sb_addch(out, '}');
}

/* Looks up the relations not looked up yet; one not found is not the
 * user's. */
static int watch_names(struct watch *w)
{
	struct strbuf oids = STRBUF_INIT;
	struct eng_rows r = ENG_ROWS_INIT;
	const char *param;
	int rc;

	oid_array(w, 0, &oids);
	param = oids.buf;
	rc = w->conn->ops->query(w->conn, watch_names_sql, 1, &param, &r, &w->err);
	for (size_t i = 0; !rc && i < w->n_rels; i++) {
		struct watched_rel *x = &w->rels[i];
		long row;

		if (x->name || x->other)
			continue;
		row = find_row(&r, x->oid);
		if (row < 0) {
			x->other = 1;
			continue;
		}
		x->name = xstrdup(rows_get(&r, (size_t)row, 1));
		x->relkind = xstrdup(rows_get(&r, (size_t)row, 2));
	}
	rows_release(&r);
	sb_release(&oids);
	return rc;
}

/* The thread: polls until told to stop.  A relation the backend both holds
 * and waits for (a lock upgrade) in one poll counts once for each. */
static void *watch_run(void *p)
{
	struct watch *w = p;
	const char *params[1] = { w->pid };
	long long prev = w->t0, same_since; /* when the locks last changed */
	size_t prev_held = 0;
	int fresh = 0;

	same_since = prev;
	while (!atomic_load(&w->stop)) {
		struct eng_rows r = ENG_ROWS_INIT;
		struct timespec pause = { 0, WATCH_PAUSE_MIN_NS };
		long long t, ns;
		size_t held = 0;
		int waiting = 0;

		if (w->conn->ops->query(w->conn, watch_sql, 1, params, &r, &w->err) < 0) {
			rows_release(&r);
			break;
		}
		t = impact_now_us();
		for (size_t i = 0; i < r.nrows; i++) {
			fresh |= watch_note(w, &r, i, t - prev);
			if (!strcmp(rows_get(&r, i, 2), "t"))
				held++;
			else
				waiting = 1;
		}
		if (waiting || fresh || held != prev_held)
			same_since = t;
		prev_held = held;
		prev = t;
		atomic_store(&w->ready, 1);
		rows_release(&r);
		if (fresh && watch_names(w) < 0)
			break;
		fresh = 0;
		ns = (t - same_since) * 10; /* 1% of the microseconds, in nanoseconds */
		if (ns > WATCH_PAUSE_MIN_NS)
			pause.tv_nsec = ns < WATCH_PAUSE_MAX_NS ? (long)ns : WATCH_PAUSE_MAX_NS;
		nanosleep(&pause, NULL);
	}
	atomic_store(&w->ready, 1);
	return NULL;
}

/* Starts watching e's backend (opening the watcher's connection the first
 * time). */
static int watch_start(struct pg_state *st, struct engine *e, struct sm_error *err)
{
	struct watch *w = st->watch;
	char *pid = NULL;
	const struct timespec tick = { 0, 100000L };

	if (!w) {
		const char *none[1] = { "0" }, *no_oids[1] = { "{}" };
		struct eng_rows r = ENG_ROWS_INIT;
		int rc;

		w = st->watch = xcalloc(1, sizeof(*w));
		if (engine_open(&w->conn, &e->url, 0, err) < 0)
			return -1;
		/* a session's first queries of the catalogs are slow (caches):
		 * not while a statement runs */
		rc = w->conn->ops->query(w->conn, watch_sql, 1, none, &r, err);
		rows_release(&r);
		if (!rc)
			rc = w->conn->ops->query(w->conn, watch_names_sql, 1, no_oids, &r, err);
		rows_release(&r);
		if (rc < 0) {
			engine_close(w->conn);
			w->conn = NULL;
			return -1;
		}
	}
	if (!w->conn)
		return 0; /* it could not connect: said once, the statement goes unobserved */
	if (engine_scalar(e, "SELECT pg_backend_pid()::text", 0, NULL, &pid, err) < 0)
		return -1;
	snprintf(w->pid, sizeof(w->pid), "%s", pid ? pid : "0");
	free(pid);
	watch_forget(w);
	w->err = (struct sm_error)SM_ERROR_INIT;
	atomic_store(&w->stop, 0);
	atomic_store(&w->ready, 0);
	w->t0 = impact_now_us();
	if (pthread_create(&w->thread, NULL, watch_run, w) != 0)
		return err_set(err, ERR_FAIL, "cannot start the lock watcher thread");
	w->running = 1;
	/* a short statement could end before a thread still starting up polls
	 * once: send it only when the watcher is polling */
	while (!atomic_load(&w->ready))
		nanosleep(&tick, NULL);
	return 0;
}

/* Stops the thread (if running); returns -1 (err filled) when it failed. */
static int watch_stop(struct watch *w, struct sm_error *err)
{
	if (!w || !w->running)
		return 0;
	atomic_store(&w->stop, 1);
	pthread_join(w->thread, NULL);
	w->running = 0;
	if (w->err.msg[0]) {
		*err = w->err;
		return -1;
	}
	return 0;
}

static void pg_failed(void *p, struct impact_stmt *s);

static void pg_state_free(void *p)
{
	struct pg_state *st = p;

	if (st->watch) {
		pg_failed(st, NULL);
		watch_forget(st->watch);
		free(st->watch->rels);
		engine_close(st->watch->conn);
		free(st->watch);
	}

	rows_release(&st->locks);
	rows_release(&st->nodes);
	rows_release(&st->baseline);
	rows_release(&st->objs);
	free(st);
}

/* The measurement's queries run inside the migration's transaction (the
 * real run's too): under a savepoint, so that one failing (a
 * statement_timeout the migration set, say) costs the measurement, never the
 * migration. */
static int guard_begin(struct engine *e, struct sm_error *err)
{
	return e->ops->query(e, "SAVEPOINT sm_impact", 0, NULL, NULL, err);
}

static int guard_end(struct engine *e, int rc)
{
	struct sm_error ignored = SM_ERROR_INIT;

	if (rc < 0)
		e->ops->query(e, "ROLLBACK TO SAVEPOINT sm_impact", 0, NULL, NULL, &ignored);
	e->ops->query(e, "RELEASE SAVEPOINT sm_impact", 0, NULL, NULL, &ignored);
	return rc;
}

static int pg_before(void *p, struct engine *e, int new_mig, struct sm_error *err)
{
	struct pg_state *st = p;
	int rc = 0;

	rows_release(&st->locks);
	if (new_mig || !st->have_objs) {
		rows_release(&st->objs);
		st->have_objs = read_objs(e, &st->objs, err) == 0;
		if (!st->have_objs)
			return -1;
	}
	if (!e->in_tx) {
		/* the locks end with the statement: watched while it runs */
		if (new_mig || !st->nodes.ncols) {
			rows_release(&st->nodes);
			rows_release(&st->baseline);
			if (e->ops->query(e, node_sql, 0, NULL, &st->baseline, err) < 0 ||
			    e->ops->query(e, node_sql, 0, NULL, &st->nodes, err) < 0)
				return -1;
		}
		return watch_start(st, e, err);
	}
	if (guard_begin(e, err) < 0)
		return -1;
	if (e->ops->query(e, lock_sql, 0, NULL, &st->locks, err) < 0)
		rc = -1;
	if (!rc && (new_mig || !st->nodes.ncols)) {
		rows_release(&st->nodes);
		rows_release(&st->baseline);
		if (e->ops->query(e, node_sql, 0, NULL, &st->baseline, err) < 0 ||
		    e->ops->query(e, node_sql, 0, NULL, &st->nodes, err) < 0)
			rc = -1;
	}
	return guard_end(e, rc);
}

/* The first row of r (sorted byte-wise by column 0: BY_OID) whose column 0
 * is not below key. */
static size_t lower_row(const struct eng_rows *r, const char *key)
{
	size_t lo = 0, hi = r->nrows;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (strcmp(rows_get(r, mid, 0), key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Row index of key in column 0 of r (sorted: BY_OID), or -1. */
static long find_row(const struct eng_rows *r, const char *key)
{
	size_t i = lower_row(r, key);

	return i < r->nrows && !strcmp(rows_get(r, i, 0), key) ? (long)i : -1;
}

static int held_before(const struct eng_rows *locks, const char *oid, const char *mode)
{
	for (size_t i = lower_row(locks, oid);
	     i < locks->nrows && !strcmp(rows_get(locks, i, 0), oid); i++)
		if (!strcmp(rows_get(locks, i, 1), mode))
			return 1;
	return 0;
}

/* PostgreSQL's table lock modes, weakest first. */
static const char *const modes[] = {
	"AccessShareLock", "RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock",
	"ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock",
};

static const char *mode_name(int rank)
{
	return rank >= 1 && rank <= (int)(sizeof(modes) / sizeof(modes[0])) ? modes[rank - 1]
									  : "?";
}

static int mode_rank(const char *mode)
{
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		if (!strcmp(modes[i], mode))
			return (int)i + 1;
	return 0;
}

static const char *kind_name(const char *relkind)
{
	switch (relkind[0]) {
	case 'r': case 'p': return "table";
	case 'i': case 'I': return "index";
	case 'S': return "sequence";
	case 'v': return "view";
	case 'm': return "materialized view";
	default: return "relation";
	}
}

/* Notes oid's filenode after a statement (a relation it created: a new row). */
static void set_node(struct eng_rows *nodes, const char *oid, const char *node)
{
	size_t i = lower_row(nodes, oid), at = i * 2;

	if (i == nodes->nrows || strcmp(rows_get(nodes, i, 0), oid)) {
		/* a new relation, in its place in the order */
		if (nodes->ncols != 2)
			return;
		nodes->cells = xrealloc(nodes->cells, (nodes->nrows + 1) * 2 * sizeof(char *));
		memmove(nodes->cells + at + 2, nodes->cells + at,
			(nodes->nrows - i) * 2 * sizeof(char *));
		nodes->nrows++;
		nodes->cells[at] = xstrdup(oid);
		nodes->cells[at + 1] = NULL;
	}
	free(nodes->cells[at + 1]);
	nodes->cells[at + 1] = xstrdup(node);
}

static int read_objs(struct engine *e, struct eng_rows *out, struct sm_error *err)
{
	if (!e->in_tx)
		return e->ops->query(e, obj_sql, 0, NULL, out, err);
	if (guard_begin(e, err) < 0)
		return -1;
	return guard_end(e, e->ops->query(e, obj_sql, 0, NULL, out, err));
}

/* Adds the watched relations to s: their mode, times and whether they
 * existed before (sizes and rewrites are for the caller to fill). */
static void watched_add(const struct pg_state *st, struct impact_stmt *s)
{
	const struct watch *w = st->watch;

	for (size_t i = 0; i < w->n_rels; i++) {
		const struct watched_rel *x = &w->rels[i];
		struct impact_rel *r;

		if (!x->name)
			continue; /* not the user's */
		r = impact_add_rel(s, x->name, kind_name(x->relkind), mode_name(x->rank));
		r->new_lock = mode_name(x->rank);
		r->blocks = r->new_blocks = impact_pg_blocks(r->mode);
		r->existing = find_row(&st->baseline, x->oid) >= 0;
		/* the polls' intervals overhang the statement's ends a little */
		r->waited_us = x->waited_us < s->us ? x->waited_us : s->us;
		r->held_us = x->held_us < s->us - r->waited_us ? x->held_us : s->us - r->waited_us;
	}
}

/* A watched statement that failed (a lock_timeout, say): what it locked or
 * waited for until then; a wait for a lock queues the application behind it
 * as holding it would. */
static void pg_failed(void *p, struct impact_stmt *s)
{
	struct pg_state *st = p;
	struct sm_error ignored = SM_ERROR_INIT;

	if (!st->watch || !st->watch->running)
		return;
	if (watch_stop(st->watch, &ignored) == 0 && s) {
		watched_add(st, s);
		s->observed = 1;
	}
}

/* After a watched statement: a relation per lock the watcher saw, with its
 * filenode (a rewrite), size and rows read now. */
static int watched_after(struct pg_state *st, struct engine *e, struct impact_stmt *s,
			 struct sm_error *err)
{
	struct watch *w = st->watch;
	struct strbuf oids = STRBUF_INIT;
	struct eng_rows now = ENG_ROWS_INIT;
	const char *param;
	size_t k = s->n_rels;

	if (!w || !w->running)
		return 0; /* the watcher did not start: before() said why */
	if (watch_stop(w, err) < 0)
		return -1;
	oid_array(w, 1, &oids);
	param = oids.buf;
	if (e->ops->query(e, watched_sql, 1, &param, &now, err) < 0) {
		sb_release(&oids);
		return -1;
	}
	sb_release(&oids);
	s->observed = 1;
	watched_add(st, s);
	for (size_t i = 0; i < w->n_rels; i++) {
		const struct watched_rel *x = &w->rels[i];
		long row, before;
		const char *node;
		struct impact_rel *r;

		if (!x->name)
			continue; /* not the user's */
		r = &s->rels[k++];
		row = find_row(&now, x->oid);
		before = find_row(&st->nodes, x->oid);
		node = row >= 0 ? rows_get(&now, (size_t)row, 1) : "";
		r->rewritten = before >= 0 && *node &&
			       strcmp(rows_get(&st->nodes, (size_t)before, 1), node) != 0;
		if (row >= 0) {
			r->bytes = strtoll(rows_get(&now, (size_t)row, 2), NULL, 10);
			r->rows = strtoll(rows_get(&now, (size_t)row, 3), NULL, 10);
			set_node(&st->nodes, x->oid, node);
		}
	}
	rows_release(&now);
	return 0;
}

/* The size and row estimate of the relations s reports from first on
 * (oids[k] the (k + first)th's; set, a literal oid[] of them). */
static int reported_sizes(struct engine *e, struct impact_stmt *s, size_t first,
			  const char *const *oids, const char *set, struct sm_error *err)
{
	struct eng_rows sz = ENG_ROWS_INIT;

	if (guard_begin(e, err) < 0)
		return -1;
	if (guard_end(e, e->ops->query(e, watched_sql, 1, &set, &sz, err)) < 0)
		return -1;
	for (size_t k = first; k < s->n_rels; k++) {
		long row = find_row(&sz, oids[k - first]);

		if (row < 0)
			continue;
		s->rels[k].bytes = strtoll(rows_get(&sz, (size_t)row, 2), NULL, 10);
		s->rels[k].rows = strtoll(rows_get(&sz, (size_t)row, 3), NULL, 10);
	}
	rows_release(&sz);
	return 0;
}

static int pg_after(void *p, struct engine *e, struct impact_stmt *s, struct sm_error *err)
{
	struct pg_state *st = p;
	struct eng_rows now = ENG_ROWS_INIT;
	struct strbuf oids = STRBUF_INIT;
	const char **rel_oids = NULL;
	size_t first, alloc = 0;
	int rc = e->in_tx ? 0 : watched_after(st, e, s, err);

	if (st->have_objs) {
		if (read_objs(e, &now, err) < 0) {
			st->have_objs = 0;
			return -1;
		}
		/* inside our transaction, an object whose catalog row another
		 * session wrote is not the statement's; outside it, the
		 * statement's own rows are committed as theirs are */
		impact_diff_objects(s, &st->objs, &now, e->in_tx ? 2 : -1);
		rows_release(&st->objs);
		st->objs = now;
		memset(&now, 0, sizeof(now));
	}
	if (!e->in_tx)
		return rc;
	if (guard_begin(e, err) < 0)
		return -1;
	if (guard_end(e, e->ops->query(e, after_sql, 0, NULL, &now, err)) < 0)
		return -1;
	first = s->n_rels;
	sb_addch(&oids, '{');
	/* rows come grouped by relation, one per lock mode held */
	for (size_t i = 0, j; i < now.nrows; i = j) {
		const char *oid = rows_get(&now, i, 0), *node = rows_get(&now, i, 4);
		long before = find_row(&st->nodes, oid);
		int rewritten = before >= 0 && *node &&
				strcmp(rows_get(&st->nodes, (size_t)before, 1), node) != 0;
		int held = 0, fresh = 0;
		struct impact_rel *r;

		for (j = i; j < now.nrows && !strcmp(rows_get(&now, j, 0), oid); j++) {
			const char *mode = rows_get(&now, j, 3);
			int rank = mode_rank(mode);
			if (rank > held)
				held = rank;
			if (!held_before(&st->locks, oid, mode) && rank > fresh)
				fresh = rank;
		}
		if (!fresh && !rewritten)
			continue;
		/* the strongest lock the transaction holds on it is what the
		 * application waits for; new_lock is the one this statement added */
		r = impact_add_rel(s, rows_get(&now, i, 1), kind_name(rows_get(&now, i, 2)),
				   mode_name(held));
		r->new_lock = fresh ? mode_name(fresh) : NULL;
		r->blocks = impact_pg_blocks(r->mode);
		r->new_blocks = fresh ? impact_pg_blocks(r->new_lock) : IMPACT_NONE;
		r->rewritten = rewritten;
		r->existing = find_row(&st->baseline, oid) >= 0;
		sb_addf(&oids, "%s%s", s->n_rels - first > 1 ? "," : "", oid);
		ALLOC_GROW(rel_oids, s->n_rels - first, alloc);
		rel_oids[s->n_rels - first - 1] = oid;
	}
	sb_addch(&oids, '}');
	for (size_t i = 0; i < now.nrows; i++)
		set_node(&st->nodes, rows_get(&now, i, 0), rows_get(&now, i, 4));
	rc = s->n_rels > first ? reported_sizes(e, s, first, rel_oids, oids.buf, err) : 0;
	free(rel_oids);
	sb_release(&oids);
	rows_release(&now);
	return rc;
}

const struct impact_driver impact_pg_driver = {
	.engine = "postgresql",
	.state_new = pg_state_new,
	.state_free = pg_state_free,
	.before = pg_before,
	.after = pg_after,
	.failed = pg_failed,
};
