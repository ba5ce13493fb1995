/*
 * pgdump_catalog: rebuilds a PostgreSQL database's DDL from its catalogs
 * (see pgdump_catalog.h).
 *
 * The pre-data objects (types, sequences, functions, aggregates, tables,
 * views, materialized views) are collected with their CREATE statements and
 * sorted topologically on pg_depend, the way pg_dump sorts its archive:
 * a view's rule, a column's default or type, a partition's parent all
 * become edges between the objects that own them.  Ties keep a stable
 * order (kind, then the order each kind was read in: OID, creation order,
 * for most).  Post-data is read in a fixed order of kinds: unique and
 * primary keys first (foreign keys reference them), then indexes, checks,
 * foreign keys, triggers, ...  Each of its statements is an entry of the
 * typed table of contents (pg_archive.h, in out->post_toc): its kind, name,
 * owner, the tables it locks and how, and the entries it needs, from
 * pg_depend (post_keys below), so that a parallel restore schedules them
 * without reading their SQL; the entries are then sorted on those
 * dependencies (pga_toc_sort), which moves an entry only where one says so.
 */
#include "pgdump_catalog.h"
#include "pgdump_objects.h"

#include <stdlib.h>
#include <string.h>

#include "engine_pg.h"
#include "hash.h"
#include "xalloc.h"

/* SET LOCAL: they end with the snapshot's transaction, and the engine's
 * connection goes on (a migration may run on it next) as it was.  TimeZone
 * and bytea_output too: a table copied as text is hashed as it comes out
 * (its content checksum), and a check of a restored copy reads it again on
 * another connection, whose defaults (PGTZ, ALTER DATABASE ... SET) need not
 * be the source's.  client_encoding comes first, from pgcat_session. */
static const char session_sql[] =
	"SET LOCAL standard_conforming_strings = on;"
	"SET LOCAL DateStyle = 'ISO, MDY';"
	"SET LOCAL IntervalStyle = 'postgres';"
	"SET LOCAL extra_float_digits = 3;"
	"SET LOCAL TimeZone = 'UTC';"
	"SET LOCAL bytea_output = 'hex';"
	"SET LOCAL statement_timeout = 0;"
	"SET LOCAL idle_in_transaction_session_timeout = 0;"
	"SET LOCAL check_function_bodies = false;"
	"SET LOCAL xmloption = content;"
	"SET LOCAL row_security = off;"
	/* the catalog queries are big expressions over small tables: compiling
	 * them (JIT) costs more than running them (0.3 s of 0.4 s for the
	 * comments of a 1,044-table schema) */
	"SET LOCAL jit = off;"
	"SELECT pg_catalog.set_config('search_path', '', true);";

const char *pgcat_encoding(PGconn *conn)
{
	/* reported by the server at connection start: no round trip */
	return engine_pg_client_encoding(PQparameterStatus(conn, "server_encoding"));
}

void pgcat_session(struct strbuf *sql, const char *encoding)
{
	/* encoding is one of pg_archive.c's names: nothing to quote */
	sb_addf(sql, "SET LOCAL client_encoding = '%s';%s", encoding, session_sql);
}

/* A key that a view's rule or an SQL-body function needs (GROUP BY the
 * primary key, ON CONFLICT ON CONSTRAINT): created in pre-data, before them. */
#define KEY_NEEDED_EARLY(k)                                                           \
	"(" k ".oid IN (WITH RECURSIVE dn(oid) AS (SELECT kd.refobjid FROM "              \
	"pg_catalog.pg_depend kd WHERE kd.refclassid = 'pg_catalog.pg_constraint'::regclass " \
	"AND kd.classid IN ('pg_catalog.pg_rewrite'::regclass, 'pg_catalog.pg_proc'::regclass) " \
	"UNION SELECT pc.oid FROM pg_catalog.pg_constraint pc JOIN dn ON pc.conparentid = dn.oid) " \
	"SELECT oid FROM dn))"
/* (a key of a partition whose parent's key is needed early is too: the
 * parent's ADD CONSTRAINT must find it to attach, not create its own.  The
 * set is the keys rules and functions name and their partitions' keys down
 * the tree, uncorrelated, so the server reads it once, not once per key:
 * pg_constraint has no index on conparentid to walk up by) */

/*
 * "ALTER TABLE [ONLY] t ADD CONSTRAINT name DEFINITION;" for a key, unique
 * or exclusion constraint k of table c, whose pg_get_constraintdef is def.
 * pg_get_constraintdef leaves out the index's storage options: they go
 * before DEFERRABLE.  On a partitioned table it recurses, and attaches the
 * partitions' own keys, created before it (so they keep their names).
 */
#define KEY_SQL(k, c, def)                                                             \
	"'ALTER TABLE ' || CASE WHEN " c ".relkind = 'p' THEN '' ELSE 'ONLY ' END || "  \
	c ".oid::pg_catalog.regclass::text || ' ADD CONSTRAINT ' || "                  \
	"pg_catalog.quote_ident(" k ".conname) || ' ' || CASE WHEN " k ".contype IN "   \
	"('p', 'u') THEN pg_catalog.regexp_replace(" def ", "                          \
	"'( DEFERRABLE)?( INITIALLY DEFERRED)?$', COALESCE(' WITH (' || "                \
	"pg_catalog.array_to_string((SELECT ic.reloptions FROM pg_catalog.pg_class ic "  \
	"WHERE ic.oid = " k ".conindid), ', ') || ')', '') || COALESCE(' USING INDEX "   \
	"TABLESPACE ' || " TABLESPACE_OF(k ".conindid") ", '') || '\\1\\2') "           \
	"ELSE " def " END || ';'"
/* The tablespace of relation rel (quoted), NULL for the database's default
 * or with --no-tablespaces (pgcat_read sets safe_migrate.no_tablespaces). */
#define TABLESPACE_OF(rel)                                                             \
	"(SELECT pg_catalog.quote_ident(ts.spcname) FROM pg_catalog.pg_tablespace ts "   \
	"JOIN pg_catalog.pg_class tr ON tr.reltablespace = ts.oid WHERE tr.oid = " rel    \
	" AND pg_catalog.current_setting('safe_migrate.no_tablespaces', true) IS "      \
	"DISTINCT FROM 'on')"

/* Deepest partitions first. */
#define PARTITION_DEPTH(c)                                                             \
	"(SELECT count(*) FROM pg_catalog.pg_partition_ancestors(" c ".oid))"

int pgcat_pq_error(struct sm_error *err, PGconn *conn, const PGresult *res, const char *what)
{
	return engine_pg_error(err, conn, res, what);
}

PGresult *pgcat_query(PGconn *conn, const char *sql, struct sm_error *err)
{
	PGresult *res = PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(res);

	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
		return res;
	pgcat_pq_error(err, conn, res, "cannot read the catalogs");
	PQclear(res);
	return NULL;
}

/* Sends sql[from..) as one message of at most PGCAT_BATCH_BYTES (or one
 * query, if bigger); returns the index past the last one sent, or 0 with
 * err set. */
static size_t send_batch(PGconn *conn, const char *const *sql, size_t from, size_t n,
			 struct sm_error *err)
{
	struct strbuf all = STRBUF_INIT;
	size_t end = from;
	int ok;

	for (; end < n; end++) {
		size_t len = sql[end] ? strlen(sql[end]) + 2 : 0;

		if (all.len && all.len + len > PGCAT_BATCH_BYTES)
			break;
		/* (a newline: a query never ends in a comment that would hide the ';') */
		if (sql[end])
			sb_addf(&all, "%s;\n", sql[end]);
	}
	/* one simple-query message: a result per statement, in order */
	ok = PQsendQuery(conn, all.buf);
	sb_release(&all);
	if (!ok) {
		pgcat_pq_error(err, conn, NULL, "cannot read the catalogs");
		return 0;
	}
	return end;
}

int pgcat_query_batch(PGconn *conn, const char *const *sql, size_t n, PGresult **res,
		      struct sm_error *err)
{
	PGresult *r;
	size_t i = 0, j, end;
	int failed = 0;

	for (j = 0; j < n; j++)
		res[j] = NULL;
	while (!failed) {
		while (i < n && !sql[i])
			i++;
		if (i == n)
			break;
		if (!(end = send_batch(conn, sql, i, n, err)))
			return -1;
		for (; i < end; i++) {
			if (!sql[i] || failed)
				continue;
			r = PQgetResult(conn);
			if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK) {
				pgcat_pq_error(err, conn, r, "cannot read the catalogs");
				PQclear(r);
				failed = 1;
				continue;
			}
			res[i] = r;
		}
		/* the end of the message (after an error, what the server still sent) */
		while ((r = PQgetResult(conn)))
			PQclear(r);
	}
	if (!failed)
		return 0;
	for (j = 0; j < n; j++) {
		PQclear(res[j]);
		res[j] = NULL;
	}
	return -1;
}

const char *pgcat_val(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

static int bval(const PGresult *r, int row, int col)
{
	return !PQgetisnull(r, row, col) && PQgetvalue(r, row, col)[0] == 't';
}

unsigned pgcat_oid(const PGresult *r, int row, int col)
{
	return (unsigned)strtoul(PQgetvalue(r, row, col), NULL, 10);
}

int pgcat_add_lines(PGconn *conn, const char *sql, struct strbuf *out, struct sm_error *err)
{
	PGresult *r = pgcat_query(conn, sql, err);
	int i;

	if (!r)
		return -1;
	for (i = 0; i < PQntuples(r); i++)
		if (pgcat_val(r, i, 0))
			sb_addf(out, "%s\n", pgcat_val(r, i, 0));
	PQclear(r);
	return 0;
}

int pgcat_begin(PGconn *conn, const char *encoding, struct sm_error *err)
{
	return pgcat_begin_with(conn, encoding, NULL, NULL, err);
}

int pgcat_begin_with(PGconn *conn, const char *encoding,
		     int (*first)(void *ud, struct sm_error *err), void *ud, struct sm_error *err)
{
	/* inside a transaction already (a restore checking what it loaded
	 * before it commits): its snapshot is the one to read, under a
	 * savepoint that pgcat_end rolls back with the settings */
	int nested = PQtransactionStatus(conn) == PQTRANS_INTRANS;
	PGresult *r = pgcat_query(conn, nested ? "SAVEPOINT sm_catalog"
					       : "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
				  err);
	struct strbuf session = STRBUF_INIT;

	if (!r)
		return -1;
	PQclear(r);
	if (first && first(ud, err) < 0) {
		pgcat_end(conn, nested);
		return -1;
	}
	pgcat_session(&session, encoding);
	r = pgcat_query(conn, session.buf, err);
	sb_release(&session);
	if (!r) {
		pgcat_end(conn, nested);
		return -1;
	}
	PQclear(r);
	return nested;
}

void pgcat_end(PGconn *conn, int nested)
{
	PQclear(PQexec(conn, nested ? "ROLLBACK TO SAVEPOINT sm_catalog; "
				      "RELEASE SAVEPOINT sm_catalog"
				    : "ROLLBACK"));
}

/* --- pre-data objects and their ordering -------------------------------- */

struct pobj {
	int rank;
	char cls;      /* the catalog: PGOBJ_CLASS_OF's letter */
	unsigned oid;
	char *sql;     /* the CREATE statement(s) */
	size_t *deps;  /* indexes of objects this one needs first */
	size_t ndeps, adeps;
	int emitted;
	char *refresh; /* a populated materialized view: its REFRESH, for post-data, */
	char *name;    /* and its name */
	size_t pre_off, pre_len; /* its slice of pre-data, once emitted */
	size_t entry;  /* its pre-data entry (emission order) */
	int has_full;  /* a base type's shell (CREATE TYPE t;): */
	size_t full;   /* the index of its full CREATE TYPE */
};

struct okey {
	char cls;
	unsigned oid;
	size_t idx;
};

struct objset {
	struct pobj *v;
	size_t n, alloc;
	struct okey *keys; /* sorted by (cls, oid); aliases included */
	size_t nkeys, akeys;
};

static int okey_cmp(const void *a, const void *b)
{
	const struct okey *x = a, *y = b;

	if (x->cls != y->cls)
		return x->cls < y->cls ? -1 : 1;
	return x->oid < y->oid ? -1 : x->oid > y->oid;
}

static void add_key(struct objset *s, char cls, unsigned oid, size_t idx)
{
	ALLOC_GROW(s->keys, s->nkeys + 1, s->akeys);
	s->keys[s->nkeys].cls = cls;
	s->keys[s->nkeys].oid = oid;
	s->keys[s->nkeys].idx = idx;
	s->nkeys++;
}

static void sort_keys(struct objset *s)
{
	if (s->nkeys)
		qsort(s->keys, s->nkeys, sizeof(*s->keys), okey_cmp);
}

static long find_obj(const struct objset *s, char cls, unsigned oid)
{
	struct okey k = { cls, oid, 0 };
	const struct okey *f = s->nkeys ? bsearch(&k, s->keys, s->nkeys, sizeof(k), okey_cmp) : NULL;

	return f ? (long)f->idx : -1;
}

static struct pobj *add_obj(struct objset *s, int rank, char cls, unsigned oid, char *sql)
{
	struct pobj *o;

	ALLOC_GROW(s->v, s->n + 1, s->alloc);
	o = &s->v[s->n];
	memset(o, 0, sizeof(*o));
	o->rank = rank;
	o->cls = cls;
	o->oid = oid;
	o->sql = sql;
	add_key(s, cls, oid, s->n);
	s->n++;
	return o;
}

static int has_dep(const struct pobj *o, size_t dep)
{
	size_t i;

	for (i = 0; i < o->ndeps; i++)
		if (o->deps[i] == dep)
			return 1;
	return 0;
}

static void add_dep(struct pobj *o, size_t dep)
{
	if (has_dep(o, dep))
		return;
	ALLOC_GROW(o->deps, o->ndeps + 1, o->adeps);
	o->deps[o->ndeps++] = dep;
}

static void objset_release(struct objset *s)
{
	size_t i;

	for (i = 0; i < s->n; i++) {
		free(s->v[i].sql);
		free(s->v[i].refresh);
		free(s->v[i].name);
		free(s->v[i].deps);
	}
	free(s->v);
	free(s->keys);
}

/* --- post-data entries and their dependencies ---------------------------- */

/*
 * Post-data entries name themselves and what they need with keys of the
 * source database: "c:OID" a pg_class object (an index), "k:OID" a
 * pg_constraint.  An entry may carry several (a key's constraint and its
 * index; an index attach, the parent index, which is only whole once all
 * its partitions' indexes are attached); its needs come from pg_depend.
 * post_keys_resolve turns them into dependencies on earlier entries.
 */
struct post_key {
	char *key;
	size_t entry;
};

struct post_keys {
	struct post_key *ids;
	size_t nids, aids;
	char **needs; /* per entry: space-separated keys, or NULL */
	size_t nneeds, aneeds;
};

static void post_keys_add(struct post_keys *k, size_t entry, const char *ids, const char *needs)
{
	while (ids && *ids) {
		size_t n = strcspn(ids, " ");

		if (n) {
			ALLOC_GROW(k->ids, k->nids + 1, k->aids);
			k->ids[k->nids].key = xstrndup(ids, n);
			k->ids[k->nids++].entry = entry;
		}
		ids += n + (ids[n] == ' ');
	}
	ALLOC_GROW(k->needs, entry + 1, k->aneeds);
	while (k->nneeds <= entry)
		k->needs[k->nneeds++] = NULL;
	k->needs[entry] = needs && *needs ? xstrdup(needs) : NULL;
}

static int post_key_cmp(const void *a, const void *b)
{
	const struct post_key *x = a, *y = b;
	int c = strcmp(x->key, y->key);

	return c ? c : (x->entry > y->entry) - (x->entry < y->entry);
}

/* Each entry's needs become dependencies on every other entry that carries
 * a needed key (a later one too: pga_toc_sort then moves it earlier), but
 * a key the entry carries itself, which only earlier entries give it (an
 * index attach needs its parent index, not the other attaches). */
static void post_keys_resolve(struct post_keys *k, struct pga_toc *toc)
{
	if (k->nids)
		qsort(k->ids, k->nids, sizeof(*k->ids), post_key_cmp);
	for (size_t e = 0; e < k->nneeds && e < toc->n; e++) {
		const char *p = k->needs[e];

		while (p && *p) {
			size_t n = strcspn(p, " "), lo = 0, hi = k->nids;
			int own = 0;

			while (lo < hi) {
				size_t mid = lo + (hi - lo) / 2;
				/* keys below p[0..n) compare below on its n bytes */
				if (strncmp(k->ids[mid].key, p, n) < 0)
					lo = mid + 1;
				else
					hi = mid;
			}
			/* the exact matches sort before the longer keys p is a prefix of */
			for (hi = lo; hi < k->nids && !strncmp(k->ids[hi].key, p, n) && !k->ids[hi].key[n];
			     hi++)
				own |= k->ids[hi].entry == e;
			for (; lo < hi; lo++)
				if (k->ids[lo].entry != e && (!own || k->ids[lo].entry < e))
					pga_entry_add_dep(&toc->v[e], k->ids[lo].entry);
			p += n + (p[n] == ' ');
		}
	}
}

static void post_keys_release(struct post_keys *k)
{
	for (size_t i = 0; i < k->nids; i++)
		free(k->ids[i].key);
	for (size_t i = 0; i < k->nneeds; i++)
		free(k->needs[i]);
	free(k->ids);
	free(k->needs);
}

/* --- the dump ------------------------------------------------------------ */

struct dumper {
	PGconn *conn;
	const struct pgcat_options *o;
	struct pgcat_dump *d;
	struct objset objs;
	struct pgcat_owners owners; /* ALTER ... OWNER TO, emitted in post-data */
	struct strbuf seqowned; /* ALTER SEQUENCE ... OWNED BY, end of pre-data */
	size_t *refresh;        /* the objects to REFRESH, in dependency order */
	size_t nrefresh, arefresh;
	struct strbuf extseq;   /* setval of extensions' configuration sequences */
	struct sm_error *err;
	struct post_keys keys;  /* post-data entries' identities and needs */
	unsigned long long present; /* the kinds the database holds (pgobj_present) */
};

void pgcat_owner_to(struct pgcat_owners *owners, int no_owner, const char *kind, const char *name,
		    const char *owner)
{
	struct strbuf b = STRBUF_INIT;
	struct pgcat_owner *o;

	if (no_owner || !owner)
		return;
	ALLOC_GROW(owners->v, owners->n + 1, owners->alloc);
	o = &owners->v[owners->n++];
	sb_addf(&b, "%s %s", kind, name);
	o->object = sb_detach(&b);
	o->owner = xstrdup(owner);
	sb_addf(&b, "ALTER %s %s OWNER TO %s;\n", kind, name, owner);
	o->sql = sb_detach(&b);
}

void pgcat_owners_release(struct pgcat_owners *o)
{
	for (size_t i = 0; i < o->n; i++) {
		free(o->v[i].object);
		free(o->v[i].owner);
		free(o->v[i].sql);
	}
	free(o->v);
	memset(o, 0, sizeof(*o));
}

/* pgdump_objects hands its pre-data objects to the sort through this. */
static void add_sorted(void *ud, int rank, char cls, unsigned oid, char *sql)
{
	struct dumper *dp = ud;

	add_obj(&dp->objs, rank, cls, oid, sql);
}

static void add_post_object(void *ud, const struct pgobj_entry *pe);

static struct pgobj_out objects_out(struct dumper *dp)
{
	struct pgobj_out o = { dp->conn, dp->o->no_owner, dp->err, add_sorted, dp, &dp->owners,
			       add_post_object, dp->present };

	return o;
}

/* Appends text (and a newline when newline) to post-data as one entry of
 * kind and name, carrying keys ids and needing keys needs (post_keys;
 * either may be NULL). */
static struct pga_entry *add_post(struct dumper *dp, const char *kind, const char *name,
				  const char *text, int newline, const char *ids, const char *needs)
{
	struct pgcat_dump *d = dp->d;
	struct pga_entry *e = pga_toc_add(&d->post_toc, &d->post_data, kind, name, text,
					  strlen(text));

	if (newline) {
		sb_addch(&d->post_data, '\n');
		e->len++;
	}
	post_keys_add(&dp->keys, d->post_toc.n - 1, ids, needs);
	return e;
}

/* pgdump_objects hands its post-data entries over through this. */
static void add_post_object(void *ud, const struct pgobj_entry *pe)
{
	struct pga_entry *e = add_post(ud, pe->kind, pe->name, pe->sql, 1, NULL, NULL);

	if (pe->owner)
		e->owner = xstrdup(pe->owner);
	e->lock = pe->lock;
	for (size_t i = 0; e->lock != PGA_LOCK_NONE && i < PGA_MAX_TABLES && pe->tables[i]; i++)
		pga_entry_add_table(e, pe->tables[i]);
	if (!e->ntables)
		e->lock = PGA_LOCK_NONE;
}

/* The owners, an entry each, named by the object they set. */
static void add_post_owners(struct dumper *dp)
{
	for (size_t i = 0; i < dp->owners.n; i++) {
		const struct pgcat_owner *o = &dp->owners.v[i];

		add_post(dp, "OWNER", o->object, o->sql, 0, NULL, NULL)->owner = xstrdup(o->owner);
	}
}

/* Appends buf to post-data, one entry of kind a line (buf's statements
 * are a line each). */
static void add_post_lines(struct dumper *dp, const char *kind, const struct strbuf *buf)
{
	struct strbuf line = STRBUF_INIT;

	for (const char *p = buf->buf, *nl; p && *p; p = nl ? nl + 1 : NULL) {
		nl = strchr(p, '\n');
		sb_reset(&line);
		sb_add(&line, p, nl ? (size_t)(nl + 1 - p) : strlen(p));
		add_post(dp, kind, "", line.buf, 0, NULL, NULL);
	}
	sb_release(&line);
}

/* Any object kind we do not reproduce is an error naming every such
 * object, sorted (the same database gives the same message). */
static int check_unsupported(struct dumper *dp)
{
	struct strbuf list = STRBUF_INIT, names = STRBUF_INIT;
	const char *line, *nl;
	size_t n = 0, shown = 0;
	int ret = -1;

	if (pgobj_unsupported(dp->conn, &list, dp->err) < 0)
		goto out;
	for (line = list.buf; line && (nl = strchr(line, '\n')); line = nl + 1, n++) {
		/* the message has room for about 1.5 kB of names: the rest is counted */
		if (names.len + (size_t)(nl - line) > 1500)
			continue;
		sb_addf(&names, "%s%.*s", shown++ ? "; " : "", (int)(nl - line), line);
	}
	if (n > shown)
		sb_addf(&names, "; and %zu more", n - shown);
	if (n) {
		err_set(dp->err, ERR_FAIL, "cannot snapshot %s: %s not supported by PostgreSQL "
			"snapshots (use pg_dump)", names.buf, n > 1 ? "these objects are" :
			"this kind of object is");
		goto out;
	}
	ret = 0;
out:
	sb_release(&list);
	sb_release(&names);
	return ret;
}

static int dump_schemas(struct dumper *dp, struct strbuf *pre)
{
	PGresult *r = pgcat_query(dp->conn,
		"SELECT n.nspname, pg_catalog.quote_ident(n.nspname), "
		"pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(n.nspowner)) "
		"FROM pg_catalog.pg_namespace n WHERE n.oid IN " USER_NSP " ORDER BY n.nspname",
		dp->err);
	int i;

	if (!r)
		return -1;
	for (i = 0; i < PQntuples(r); i++) {
		struct pgcat_dump *d = dp->d;

		ALLOC_GROW(d->schemas, d->nschemas + 1, d->schemas_alloc);
		d->schemas[d->nschemas++] = xstrdup(PQgetvalue(r, i, 0));
		sb_addf(pre, "CREATE SCHEMA %s;\n", PQgetvalue(r, i, 1));
		pgcat_owner_to(&dp->owners, dp->o->no_owner, "SCHEMA", PQgetvalue(r, i, 1), PQgetvalue(r, i, 2));
	}
	PQclear(r);
	return 0;
}

static int dump_extensions(struct dumper *dp, struct strbuf *pre)
{
	PGresult *r = pgcat_query(dp->conn,
		"SELECT pg_catalog.quote_ident(e.extname), pg_catalog.quote_ident(n.nspname) "
		"FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace "
		"WHERE e.extname <> 'plpgsql' ORDER BY e.oid", dp->err);
	int i;

	if (!r)
		return -1;
	for (i = 0; i < PQntuples(r); i++)
		sb_addf(pre, "CREATE EXTENSION IF NOT EXISTS %s WITH SCHEMA %s;\n",
			PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
	PQclear(r);
	return 0;
}

/* Adds a table whose rows are copied: its stored, non-generated columns
 * copycols ("a, b"), binary and filter as in struct pgcat_table (filter
 * borrowed, copied). */
static void add_table(struct pgcat_dump *d, const PGresult *r, int row, int schema_col,
		      const char *qualified, const struct strbuf *copycols, int binary,
		      const char *filter)
{
	struct pgcat_table *t;

	ALLOC_GROW(d->tables, d->ntables + 1, d->tables_alloc);
	t = &d->tables[d->ntables++];
	memset(t, 0, sizeof(*t));
	/* schema_col: the schema's raw name, then the table's, then reltuples */
	t->schema = xstrdup(PQgetvalue(r, row, schema_col));
	t->name = xstrdup(PQgetvalue(r, row, schema_col + 1));
	t->est_rows = strtoll(PQgetvalue(r, row, schema_col + 2), NULL, 10);
	t->qualified = xstrdup(qualified);
	/* no stored column (none at all, all dropped, only generated ones):
	 * "COPY t () ..." is a syntax error, but "COPY t TO STDOUT" writes one
	 * empty line per row, as pg_dump does */
	t->columns = xmalloc(copycols->len + 3);
	snprintf(t->columns, copycols->len + 3, copycols->len ? "(%s)" : "%s", copycols->buf);
	t->filter = filter ? xstrdup(filter) : NULL;
	t->binary = binary;
}

/* Where a table's columns come from: its own CREATE TABLE (a partition's
 * too: it is created as a table of its own and attached after), its type
 * (CREATE TABLE OF), partly its INHERITS parents, or its own CREATE TABLE
 * with every column, inherited ones too, for an inheritance child whose
 * column order INHERITS would change (ALTER TABLE ... INHERIT after). */
enum col_source { COLS_OWN, COLS_TYPED, COLS_INHERITED, COLS_INHERIT_AFTER };

/*
 * The types (by OID, a domain by its base type's) whose columns are copied
 * in COPY's binary format: built-in types whose send and receive functions
 * have written and read the same bytes in every release since binary
 * timestamps, and arrays of them (an array's bytes name its element type
 * by OID, and built-in OIDs never change).  A table all of whose columns
 * are of these is copied in binary (struct pgcat_table): the server writes
 * and reads it much faster than text (no number, date or escape
 * formatting and parsing).  A table with any other column (an enum, a
 * composite, an extension's type, an array of one: whose OIDs differ from
 * one database to the next) is copied as text.
 */
#define BINARY_TYPES                                                                   \
	"16, 17, 18, 20, 21, 23, 25, 26, 114, 650, 700, 701, 829, 869, 1042, 1043, "    \
	"1082, 1083, 1114, 1184, 1186, 1700, 2950, 3802, "                              \
	/* their arrays */                                                              \
	"199, 651, 1000, 1001, 1002, 1005, 1007, 1009, 1014, 1015, 1016, 1021, 1022, "  \
	"1028, 1040, 1041, 1115, 1182, 1183, 1185, 1187, 1231, 2951, 3807"

/* The columns of the tables rels selects, read at once (one query, not one
 * a table: a schema of a thousand tables is read in a few round trips), in
 * table OID then column order (table_columns looks a table up in them). */
#define COLUMNS_SQL(rels)                                                             \
	"SELECT pg_catalog.quote_ident(a.attname), pg_catalog.format_type(a.atttypid, a.atttypmod), " \
	"a.attnotnull, a.attgenerated, a.attidentity, "                                  \
	"CASE WHEN a.atthasdef THEN (SELECT pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) " \
	" FROM pg_catalog.pg_attrdef ad WHERE ad.adrelid = a.attrelid AND ad.adnum = a.attnum) END, " \
	"CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation THEN (SELECT " \
	" pg_catalog.quote_ident(cn.nspname) || '.' || pg_catalog.quote_ident(co.collname) FROM " \
	" pg_catalog.pg_collation co JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace " \
	" WHERE co.oid = a.attcollation) END, "                                          \
	"CASE WHEN a.attstorage <> t.typstorage THEN a.attstorage END, "                 \
	"NULLIF(a.attstattarget, -1), "                                                  \
	/* 9 attribute options but the server's own (pg_*: PostgreSQL 15.20 stamps  \
	 * pg_attver on every new column, ignores it in SET and pg_dump leaves it    \
	 * out; a user can set n_distinct and n_distinct_inherited only) */          \
	"(SELECT pg_catalog.string_agg(o.v, ', ' ORDER BY o.n) FROM pg_catalog.unnest(" \
	" a.attoptions) WITH ORDINALITY o(v, n) WHERE o.v NOT LIKE 'pg\\_%'), "          \
	/* 10.. identity sequence name and options */                                    \
	"s.seqrelid::pg_catalog.regclass::text, s.seqstart, s.seqincrement, s.seqmin, s.seqmax, " \
	"s.seqcache, s.seqcycle, a.attislocal, "                                         \
	/* 18 a foreign table's column options */                                        \
	"CASE WHEN a.attfdwoptions IS NOT NULL THEN " PGOBJ_OPTIONS("a.attfdwoptions") " END, " \
	/* 19 the table, 20 compression */                                               \
	"a.attrelid, CASE a.attcompression WHEN 'p' THEN 'pglz' WHEN 'l' THEN 'lz4' END, " \
	/* 21 inherited from a parent too */                                             \
	"a.attinhcount > 0, "                                                            \
	/* 22 copied in binary (BINARY_TYPES) */                                         \
	"(CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END) "            \
	" IN (" BINARY_TYPES ") "                                                        \
	"FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid " \
	/* an identity column's sequence depends on it internally (looked up for    \
	 * identity columns only: OFFSET 0 keeps the test a gate in front of the    \
	 * index probe, not a filter after it) */                                    \
	"LEFT JOIN LATERAL (SELECT sd.objid FROM pg_catalog.pg_depend sd WHERE "          \
	" a.attidentity <> '' AND sd.classid = 'pg_catalog.pg_class'::regclass AND "      \
	" sd.refclassid = 'pg_catalog.pg_class'::regclass AND sd.refobjid = a.attrelid "  \
	" AND sd.refobjsubid = a.attnum AND sd.deptype = 'i' OFFSET 0) sd ON true "       \
	"LEFT JOIN pg_catalog.pg_sequence s ON s.seqrelid = sd.objid "                   \
	"WHERE a.attrelid IN (" rels ") "                                                \
	"AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attrelid, a.attnum"

static void table_columns(const PGresult *r, unsigned reloid, const char *qname,
			  enum col_source from, struct strbuf *cols, struct strbuf *alters,
			  struct strbuf *copycols, int *binary);

/*
 * Rows of extensions' configuration tables (pg_extension_config_dump): the
 * rows its condition selects are the user's, copied like a table's, and
 * the positions of its configuration sequences, as pg_dump does.  In
 * place the extension may survive the restore (its schema not being the
 * snapshot's), so pre-data first deletes the rows the copy brings back.
 */
static int dump_extension_config(struct dumper *dp, struct strbuf *pre)
{
	PGresult *r = pgcat_query(dp->conn,
		"SELECT c.oid, c.oid::pg_catalog.regclass::text, x.cond, c.relkind, n.nspname, "
		"c.relname, c.reltuples::bigint FROM pg_catalog.pg_extension e CROSS JOIN LATERAL ROWS FROM "
		"(pg_catalog.unnest(e.extconfig), pg_catalog.unnest(e.extcondition)) x(rel, cond) "
		"JOIN pg_catalog.pg_class c "
		"ON c.oid = x.rel JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
		"WHERE e.extname <> 'plpgsql' AND c.relkind IN ('r', 'S') ORDER BY e.oid, c.oid", dp->err);
	PGresult *colres = NULL;
	struct strbuf sql = STRBUF_INIT;
	int i, ret = -1;

	if (!r || !(colres = pgcat_query(dp->conn, COLUMNS_SQL("SELECT x.rel FROM pg_catalog.pg_extension e "
		"CROSS JOIN LATERAL pg_catalog.unnest(e.extconfig) x(rel) WHERE e.extname <> 'plpgsql'"),
		dp->err)))
		goto out;
	for (i = 0; i < PQntuples(r); i++) {
		const char *name = PQgetvalue(r, i, 1), *cond = PQgetvalue(r, i, 2);
		struct strbuf cols = STRBUF_INIT, alters = STRBUF_INIT, copycols = STRBUF_INIT;
		int binary;

		if (PQgetvalue(r, i, 3)[0] == 'S') {
			char *lit = PQescapeLiteral(dp->conn, name, strlen(name));
			PGresult *v;

			sb_reset(&sql);
			sb_addf(&sql, "SELECT last_value, is_called FROM %s", name);
			v = pgcat_query(dp->conn, sql.buf, dp->err);
			if (v)
				sb_addf(&dp->extseq, "SELECT pg_catalog.setval(%s, %s, %s);\n", lit,
					PQgetvalue(v, 0, 0), bval(v, 0, 1) ? "true" : "false");
			PQfreemem(lit);
			PQclear(v);
			if (!v)
				goto out;
			continue;
		}
		table_columns(colres, pgcat_oid(r, i, 0), name, COLS_OWN, &cols, &alters, &copycols,
			      &binary);
		sb_addf(pre, "DELETE FROM ONLY %s %s;\n", name, cond);
		add_table(dp->d, r, i, 4, name, &copycols, binary, cond);
		sb_release(&cols);
		sb_release(&alters);
		sb_release(&copycols);
	}
	ret = 0;
out:
	sb_release(&sql);
	PQclear(colres);
	PQclear(r);
	return ret;
}

static int dump_types(struct dumper *dp)
{
	PGresult *r = pgcat_query(dp->conn,
		"SELECT t.oid, t.typtype, pg_catalog.format_type(t.oid, NULL), "
		"pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(t.typowner)), "
		/* 4 enum labels */
		"(SELECT pg_catalog.string_agg(pg_catalog.quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder) "
		" FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid), "
		/* 5 domain base, 6 default, 7 not null, 8 collation, 9 checks */
		"pg_catalog.format_type(t.typbasetype, t.typtypmod), t.typdefault, t.typnotnull, "
		"CASE WHEN t.typcollation <> 0 AND t.typcollation <> (SELECT b.typcollation FROM "
		" pg_catalog.pg_type b WHERE b.oid = t.typbasetype) THEN (SELECT "
		" pg_catalog.quote_ident(cn.nspname) || '.' || pg_catalog.quote_ident(co.collname) FROM "
		" pg_catalog.pg_collation co JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace "
		" WHERE co.oid = t.typcollation) END, "
		"(SELECT pg_catalog.string_agg(' CONSTRAINT ' || pg_catalog.quote_ident(c.conname) || ' ' "
		" || pg_catalog.pg_get_constraintdef(c.oid), '' ORDER BY c.conname) "
		" FROM pg_catalog.pg_constraint c WHERE c.contypid = t.oid AND c.convalidated), "
		/* 10 composite attributes */
		"(SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname) || ' ' || "
		" pg_catalog.format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attcollation <> 0 AND "
		" a.attcollation <> (SELECT b.typcollation FROM pg_catalog.pg_type b WHERE b.oid = a.atttypid) "
		" THEN ' COLLATE ' || (SELECT pg_catalog.quote_ident(cn.nspname) || '.' || "
		" pg_catalog.quote_ident(co.collname) FROM pg_catalog.pg_collation co JOIN "
		" pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = a.attcollation) "
		" ELSE '' END, ', ' ORDER BY a.attnum) FROM pg_catalog.pg_attribute a "
		" WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped), "
		/* 11.. range: subtype, opclass, collation, canonical, subdiff, multirange name */
		"pg_catalog.format_type(rg.rngsubtype, NULL), "
		"(SELECT pg_catalog.quote_ident(on_.nspname) || '.' || pg_catalog.quote_ident(oc.opcname) "
		" FROM pg_catalog.pg_opclass oc JOIN pg_catalog.pg_namespace on_ ON on_.oid = oc.opcnamespace "
		" WHERE oc.oid = rg.rngsubopc AND NOT oc.opcdefault), "
		"CASE WHEN rg.rngcollation <> 0 AND rg.rngcollation <> (SELECT b.typcollation FROM "
		" pg_catalog.pg_type b WHERE b.oid = rg.rngsubtype) THEN (SELECT "
		" pg_catalog.quote_ident(cn.nspname) || '.' || pg_catalog.quote_ident(co.collname) FROM "
		" pg_catalog.pg_collation co JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace "
		" WHERE co.oid = rg.rngcollation) END, "
		"NULLIF(rg.rngcanonical, 0)::pg_catalog.regproc, NULLIF(rg.rngsubdiff, 0)::pg_catalog.regproc, "
		"pg_catalog.format_type(rg.rngmultitypid, NULL) "
		"FROM pg_catalog.pg_type t LEFT JOIN pg_catalog.pg_range rg ON rg.rngtypid = t.oid "
		"WHERE t.typnamespace IN " USER_NSP " AND " NOT_EXT("pg_catalog.pg_type", "t.oid")
		" AND (t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' AND (SELECT c.relkind FROM "
		" pg_catalog.pg_class c WHERE c.oid = t.typrelid) = 'c')) ORDER BY t.oid", dp->err);
	int i;

	if (!r)
		return -1;
	for (i = 0; i < PQntuples(r); i++) {
		struct strbuf sb = STRBUF_INIT;
		const char *kind = PQgetvalue(r, i, 1), *name = PQgetvalue(r, i, 2);
		unsigned oid = pgcat_oid(r, i, 0);

		switch (kind[0]) {
		case 'e':
			sb_addf(&sb, "CREATE TYPE %s AS ENUM (%s);\n", name,
				pgcat_val(r, i, 4) ? pgcat_val(r, i, 4) : "");
			break;
		case 'd':
			sb_addf(&sb, "CREATE DOMAIN %s AS %s", name, PQgetvalue(r, i, 5));
			if (pgcat_val(r, i, 8))
				sb_addf(&sb, " COLLATE %s", pgcat_val(r, i, 8));
			if (pgcat_val(r, i, 6))
				sb_addf(&sb, " DEFAULT %s", pgcat_val(r, i, 6));
			if (bval(r, i, 7))
				sb_adds(&sb, " NOT NULL");
			if (pgcat_val(r, i, 9))
				sb_adds(&sb, pgcat_val(r, i, 9));
			sb_adds(&sb, ";\n");
			break;
		case 'c':
			sb_addf(&sb, "CREATE TYPE %s AS (%s);\n", name, pgcat_val(r, i, 10) ? pgcat_val(r, i, 10) : "");
			break;
		case 'r':
			sb_addf(&sb, "CREATE TYPE %s AS RANGE (subtype = %s", name, PQgetvalue(r, i, 11));
			if (pgcat_val(r, i, 12))
				sb_addf(&sb, ", subtype_opclass = %s", pgcat_val(r, i, 12));
			if (pgcat_val(r, i, 13))
				sb_addf(&sb, ", collation = %s", pgcat_val(r, i, 13));
			if (pgcat_val(r, i, 14))
				sb_addf(&sb, ", canonical = %s", pgcat_val(r, i, 14));
			if (pgcat_val(r, i, 15))
				sb_addf(&sb, ", subtype_diff = %s", pgcat_val(r, i, 15));
			if (pgcat_val(r, i, 16))
				sb_addf(&sb, ", multirange_type_name = %s", pgcat_val(r, i, 16));
			sb_adds(&sb, ");\n");
			break;
		}
		add_obj(&dp->objs, R_TYPE, 't', oid, sb_detach(&sb));
		pgcat_owner_to(&dp->owners, dp->o->no_owner, kind[0] == 'd' ? "DOMAIN" : "TYPE", name, PQgetvalue(r, i, 3));
	}
	PQclear(r);
	return 0;
}

/*
 * Base types and types that are only a shell.  A base type and its I/O
 * functions need each other, so it is two objects, as in pg_dump: the shell
 * (CREATE TYPE t;), which the functions need, and the full CREATE TYPE,
 * which needs the functions and which everything else needs
 * (load_dependencies routes the edges).
 */
static int dump_base_types(struct dumper *dp)
{
	PGresult *r = pgcat_query(dp->conn,
		"SELECT t.oid, t.typisdefined, pg_catalog.format_type(t.oid, NULL), "
		"pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(t.typowner)), t.typlen, "
		/* 5.. support functions: regproc prints them schema-qualified here */
		"t.typinput::pg_catalog.regproc, t.typoutput::pg_catalog.regproc, "
		"NULLIF(t.typreceive, 0)::pg_catalog.regproc, NULLIF(t.typsend, 0)::pg_catalog.regproc, "
		"NULLIF(t.typmodin, 0)::pg_catalog.regproc, NULLIF(t.typmodout, 0)::pg_catalog.regproc, "
		"NULLIF(t.typanalyze, 0)::pg_catalog.regproc, NULLIF(t.typsubscript, 0)::pg_catalog.regproc, "
		/* 13 default, element, category, preferred, delimiter, by value, align, storage, collatable */
		"pg_catalog.quote_literal(t.typdefault), "
		"CASE WHEN t.typelem <> 0 THEN pg_catalog.format_type(t.typelem, NULL) END, "
		"t.typcategory, t.typispreferred, pg_catalog.quote_literal(t.typdelim::pg_catalog.text), t.typbyval, "
		"t.typalign, t.typstorage, t.typcollation <> 0 "
		"FROM pg_catalog.pg_type t WHERE t.typnamespace IN " USER_NSP " AND "
		NOT_EXT("pg_catalog.pg_type", "t.oid") " AND (t.typtype = 'b' AND t.typelem = 0 OR "
		"t.typtype = 'b' AND t.typelem <> 0 AND (SELECT e.typarray FROM pg_catalog.pg_type e "
		"WHERE e.oid = t.typelem) <> t.oid OR t.typtype = 'p' AND NOT t.typisdefined) "
		"ORDER BY t.oid", dp->err);
	static const char *const align[] = { "c", "char", "s", "int2", "i", "int4", "d", "double" };
	static const char *const storage[] = { "p", "plain", "e", "external", "m", "main",
					       "x", "extended" };
	static const char *const fn[] = { "INPUT", "OUTPUT", "RECEIVE", "SEND", "TYPMOD_IN",
					  "TYPMOD_OUT", "ANALYZE", "SUBSCRIPT" };
	int i;
	size_t k;

	if (!r)
		return -1;
	for (i = 0; i < PQntuples(r); i++) {
		struct strbuf sb = STRBUF_INIT;
		const char *name = PQgetvalue(r, i, 2);
		unsigned oid = pgcat_oid(r, i, 0);
		struct pobj *shell;
		size_t shell_idx = dp->objs.n;

		sb_addf(&sb, "CREATE TYPE %s;\n", name);
		add_obj(&dp->objs, R_TYPE, 't', oid, sb_detach(&sb));
		pgcat_owner_to(&dp->owners, dp->o->no_owner, "TYPE", name, PQgetvalue(r, i, 3));
		if (!bval(r, i, 1))
			continue; /* only a shell */
		sb_addf(&sb, "CREATE TYPE %s (\n    INTERNALLENGTH = %s", name,
			strcmp(PQgetvalue(r, i, 4), "-1") ? PQgetvalue(r, i, 4) : "variable");
		for (k = 0; k < sizeof(fn) / sizeof(*fn); k++)
			if (pgcat_val(r, i, 5 + (int)k))
				sb_addf(&sb, ",\n    %s = %s", fn[k], pgcat_val(r, i, 5 + (int)k));
		if (pgcat_val(r, i, 13))
			sb_addf(&sb, ",\n    DEFAULT = %s", pgcat_val(r, i, 13));
		if (pgcat_val(r, i, 14))
			sb_addf(&sb, ",\n    ELEMENT = %s", pgcat_val(r, i, 14));
		sb_addf(&sb, ",\n    CATEGORY = '%s'", PQgetvalue(r, i, 15));
		if (bval(r, i, 16))
			sb_adds(&sb, ",\n    PREFERRED = true");
		sb_addf(&sb, ",\n    DELIMITER = %s", PQgetvalue(r, i, 17));
		for (k = 0; k < sizeof(align) / sizeof(*align); k += 2)
			if (!strcmp(PQgetvalue(r, i, 19), align[k]))
				sb_addf(&sb, ",\n    ALIGNMENT = %s", align[k + 1]);
		for (k = 0; k < sizeof(storage) / sizeof(*storage); k += 2)
			if (!strcmp(PQgetvalue(r, i, 20), storage[k]))
				sb_addf(&sb, ",\n    STORAGE = %s", storage[k + 1]);
		if (bval(r, i, 21))
			sb_adds(&sb, ",\n    COLLATABLE = true");
		if (bval(r, i, 18))
			sb_adds(&sb, ",\n    PASSEDBYVALUE");
		sb_adds(&sb, "\n);\n");
		add_obj(&dp->objs, R_TYPE, 'b', oid, sb_detach(&sb));
		shell = &dp->objs.v[shell_idx];
		shell->has_full = 1;
		shell->full = dp->objs.n - 1;
		add_dep(&dp->objs.v[shell->full], shell_idx);
	}
	PQclear(r);
	return 0;
}

static void seq_options(struct strbuf *sb, const PGresult *r, int i, int c)
{
	/* c: start, increment, min, max, cache, cycle */
	sb_addf(sb, "START WITH %s INCREMENT BY %s MINVALUE %s MAXVALUE %s CACHE %s%s",
		PQgetvalue(r, i, c), PQgetvalue(r, i, c + 1), PQgetvalue(r, i, c + 2),
		PQgetvalue(r, i, c + 3), PQgetvalue(r, i, c + 4), bval(r, i, c + 5) ? " CYCLE" : "");
}

static int dump_sequences(struct dumper *dp)
{
	PGresult *r = pgcat_query(dp->conn,
		"SELECT c.oid, c.oid::pg_catalog.regclass::text, "
		"pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(c.relowner)), c.relpersistence, "
		"pg_catalog.format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, s.seqmax, "
		"s.seqcache, s.seqcycle, "
		/* 11 owning column (serial, OWNED BY) */
		"(SELECT d.refobjid::pg_catalog.regclass::text || '.' || pg_catalog.quote_ident(a.attname) "
		" FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid "
		" AND a.attnum = d.refobjsubid WHERE d.classid = 'pg_catalog.pg_class'::regclass "
		" AND d.objid = c.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass "
		" AND d.deptype = 'a' AND d.refobjsubid > 0 LIMIT 1) "
		"FROM pg_catalog.pg_class c JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid "
		"WHERE c.relkind = 'S' AND c.relnamespace IN " USER_NSP " AND "
		NOT_EXT("pg_catalog.pg_class", "c.oid") " AND NOT EXISTS (SELECT 1 FROM "
		"pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::regclass AND "
		"d.objid = c.oid AND d.deptype = 'i') ORDER BY c.oid", dp->err);
	int i;

	if (!r)
		return -1;
	for (i = 0; i < PQntuples(r); i++) {
		struct strbuf sb = STRBUF_INIT;
		const char *name = PQgetvalue(r, i, 1);

		sb_addf(&sb, "CREATE %sSEQUENCE %s AS %s ",
			PQgetvalue(r, i, 3)[0] == 'u' ? "UNLOGGED " : "", name, PQgetvalue(r, i, 4));
		seq_options(&sb, r, i, 5);
		sb_adds(&sb, ";\n");
		add_obj(&dp->objs, R_SEQ, 'c', pgcat_oid(r, i, 0), sb_detach(&sb));
		/* A sequence OWNED BY a column has its table's owner, and only
		 * the table's ALTER TABLE ... OWNER TO may change it (the server
		 * refuses "cannot change owner of sequence ... linked to table"
		 * otherwise): that one carries it along. */
		if (pgcat_val(r, i, 11))
			sb_addf(&dp->seqowned, "ALTER SEQUENCE %s OWNED BY %s;\n", name, pgcat_val(r, i, 11));
		else
			pgcat_owner_to(&dp->owners, dp->o->no_owner, "SEQUENCE", name, PQgetvalue(r, i, 2));
	}
	PQclear(r);
	return 0;
}

static const char *agg_modify(char m)
{
	return m == 's' ? "SHAREABLE" : m == 'w' ? "READ_WRITE" : "READ_ONLY";
}

/* What pg_dump adds beyond a plain aggregate (columns 16.. of the aggregate
 * query): hypothetical sets, FINALFUNC_MODIFY, the moving-aggregate mode. */
static void aggregate_options(struct strbuf *sb, const PGresult *r, int i)
{
	char kind = PQgetvalue(r, i, 16)[0];
	/* the default: READ_ONLY for plain aggregates, READ_WRITE for the others */
	char dflt = kind == 'n' ? 'r' : 'w';

	if (kind == 'h')
		sb_adds(sb, ", HYPOTHETICAL");
	if (PQgetvalue(r, i, 17)[0] != dflt)
		sb_addf(sb, ", FINALFUNC_MODIFY = %s", agg_modify(PQgetvalue(r, i, 17)[0]));
	if (!pgcat_val(r, i, 19))
		return;
	sb_addf(sb, ", MSFUNC = %s, MINVFUNC = %s, MSTYPE = %s", pgcat_val(r, i, 19), PQgetvalue(r, i, 20),
		PQgetvalue(r, i, 21));
	if (strcmp(PQgetvalue(r, i, 22), "0"))
		sb_addf(sb, ", MSSPACE = %s", PQgetvalue(r, i, 22));
	if (pgcat_val(r, i, 23))
		sb_addf(sb, ", MFINALFUNC = %s", pgcat_val(r, i, 23));
	if (bval(r, i, 24))
		sb_adds(sb, ", MFINALFUNC_EXTRA");
	if (PQgetvalue(r, i, 18)[0] != dflt)
		sb_addf(sb, ", MFINALFUNC_MODIFY = %s", agg_modify(PQgetvalue(r, i, 18)[0]));
	if (pgcat_val(r, i, 25))
		sb_addf(sb, ", MINITCOND = %s", pgcat_val(r, i, 25));
}

static int dump_functions(struct dumper *dp)
{
	PGresult *r = pgcat_query(dp->conn,
		"SELECT p.oid, p.prokind, pg_catalog.pg_get_functiondef(p.oid), "
		"p.oid::pg_catalog.regprocedure::text, "
		"pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(p.proowner)) "
		"FROM pg_catalog.pg_proc p WHERE p.pronamespace IN " USER_NSP " AND p.prokind <> 'a' AND "
		NOT_EXT("pg_catalog.pg_proc", "p.oid") " AND NOT EXISTS (SELECT 1 FROM "
		/* a range type's constructors come with CREATE TYPE */
		"pg_catalog.pg_depend x WHERE x.classid = 'pg_catalog.pg_proc'::regclass AND "
		"x.objid = p.oid AND x.deptype = 'i') ORDER BY p.oid", dp->err);
	int i;

	if (!r)
		return -1;
	for (i = 0; i < PQntuples(r); i++) {
		struct strbuf sb = STRBUF_INIT;
		int proc = PQgetvalue(r, i, 1)[0] == 'p';

		sb_adds(&sb, PQgetvalue(r, i, 2));
		sb_rtrim(&sb);
		sb_adds(&sb, ";\n");
		add_obj(&dp->objs, R_FUNC, 'p', pgcat_oid(r, i, 0), sb_detach(&sb));
		pgcat_owner_to(&dp->owners, dp->o->no_owner, proc ? "PROCEDURE" : "FUNCTION", PQgetvalue(r, i, 3), PQgetvalue(r, i, 4));
	}
	PQclear(r);

	/* aggregates: plain, ordered-set, hypothetical-set, moving */
	r = pgcat_query(dp->conn,
		"SELECT p.oid, CASE WHEN a.aggkind = 'n' THEN p.oid::pg_catalog.regprocedure::text ELSE "
		"pg_catalog.quote_ident(pn.nspname) || '.' || pg_catalog.quote_ident(p.proname) || '(' || "
		"pg_catalog.pg_get_function_identity_arguments(p.oid) || ')' END, "
		"pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(p.proowner)), "
		"pg_catalog.quote_ident(pn.nspname) || '.' || pg_catalog.quote_ident(p.proname), "
		"pg_catalog.pg_get_function_arguments(p.oid), a.aggtransfn::pg_catalog.regproc, "
		"pg_catalog.format_type(a.aggtranstype, NULL), NULLIF(a.aggfinalfn, 0)::pg_catalog.regproc, "
		"pg_catalog.quote_literal(a.agginitval), NULLIF(a.aggcombinefn, 0)::pg_catalog.regproc, "
		"NULLIF(a.aggserialfn, 0)::pg_catalog.regproc, NULLIF(a.aggdeserialfn, 0)::pg_catalog.regproc, "
		"NULLIF(a.aggsortop, 0)::pg_catalog.regoperator, a.aggfinalextra, a.aggtransspace, "
		"p.proparallel, "
		/* 16.. */
		"a.aggkind, a.aggfinalmodify, a.aggmfinalmodify, NULLIF(a.aggmtransfn, 0)::pg_catalog.regproc, "
		"NULLIF(a.aggminvtransfn, 0)::pg_catalog.regproc, "
		"CASE WHEN a.aggmtransfn <> 0 THEN pg_catalog.format_type(a.aggmtranstype, NULL) END, "
		"a.aggmtransspace, NULLIF(a.aggmfinalfn, 0)::pg_catalog.regproc, a.aggmfinalextra, "
		"pg_catalog.quote_literal(a.aggminitval) "
		"FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_aggregate a ON a.aggfnoid = p.oid "
		"JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace "
		"WHERE p.pronamespace IN " USER_NSP " AND " NOT_EXT("pg_catalog.pg_proc", "p.oid")
		" ORDER BY p.oid", dp->err);
	if (!r)
		return -1;
	for (i = 0; i < PQntuples(r); i++) {
		struct strbuf sb = STRBUF_INIT;

		sb_addf(&sb, "CREATE AGGREGATE %s(%s) (SFUNC = %s, STYPE = %s", PQgetvalue(r, i, 3),
			PQgetvalue(r, i, 4), PQgetvalue(r, i, 5), PQgetvalue(r, i, 6));
		if (pgcat_val(r, i, 7))
			sb_addf(&sb, ", FINALFUNC = %s", pgcat_val(r, i, 7));
		if (bval(r, i, 13))
			sb_adds(&sb, ", FINALFUNC_EXTRA");
		if (pgcat_val(r, i, 8))
			sb_addf(&sb, ", INITCOND = %s", pgcat_val(r, i, 8));
		if (pgcat_val(r, i, 9))
			sb_addf(&sb, ", COMBINEFUNC = %s", pgcat_val(r, i, 9));
		if (pgcat_val(r, i, 10))
			sb_addf(&sb, ", SERIALFUNC = %s", pgcat_val(r, i, 10));
		if (pgcat_val(r, i, 11))
			sb_addf(&sb, ", DESERIALFUNC = %s", pgcat_val(r, i, 11));
		if (pgcat_val(r, i, 12)) {
			/* regoperator prints "schema.op(type,type)": SORTOP wants the bare operator */
			const char *op = pgcat_val(r, i, 12);
			const char *paren = strchr(op, '(');

			sb_addf(&sb, ", SORTOP = OPERATOR(%.*s)", (int)(paren ? paren - op : (long)strlen(op)), op);
		}
		if (strcmp(PQgetvalue(r, i, 14), "0"))
			sb_addf(&sb, ", SSPACE = %s", PQgetvalue(r, i, 14));
		if (PQgetvalue(r, i, 15)[0] == 's')
			sb_adds(&sb, ", PARALLEL = SAFE");
		else if (PQgetvalue(r, i, 15)[0] == 'r')
			sb_adds(&sb, ", PARALLEL = RESTRICTED");
		aggregate_options(&sb, r, i);
		sb_adds(&sb, ");\n");
		add_obj(&dp->objs, R_AGG, 'p', pgcat_oid(r, i, 0), sb_detach(&sb));
		pgcat_owner_to(&dp->owners, dp->o->no_owner, "AGGREGATE", PQgetvalue(r, i, 1), PQgetvalue(r, i, 2));
	}
	PQclear(r);
	return 0;
}

/* The ALTERs of a column's own settings (row i of COLUMNS_SQL): storage,
 * statistics target, attribute options, compression; for a column the
 * table defines as for one it inherits or takes from its type. */
static void column_settings(const PGresult *r, int i, const char *qname, const char *name,
			    struct strbuf *alters)
{
	if (pgcat_val(r, i, 7)) {
		const char *st = pgcat_val(r, i, 7);

		sb_addf(alters, "ALTER TABLE ONLY %s ALTER COLUMN %s SET STORAGE %s;\n", qname, name,
			st[0] == 'p' ? "PLAIN" : st[0] == 'e' ? "EXTERNAL" : st[0] == 'm' ? "MAIN" : "EXTENDED");
	}
	if (pgcat_val(r, i, 8))
		sb_addf(alters, "ALTER TABLE ONLY %s ALTER COLUMN %s SET STATISTICS %s;\n", qname,
			name, pgcat_val(r, i, 8));
	if (pgcat_val(r, i, 9) && *pgcat_val(r, i, 9))
		sb_addf(alters, "ALTER TABLE ONLY %s ALTER COLUMN %s SET (%s);\n", qname, name,
			pgcat_val(r, i, 9));
	if (pgcat_val(r, i, 20))
		sb_addf(alters, "ALTER TABLE ONLY %s ALTER COLUMN %s SET COMPRESSION %s;\n", qname,
			name, pgcat_val(r, i, 20));
}

/* Column definitions of table reloid, in its own order (a partition's may
 * differ from its parent's), plus the ALTERs CREATE TABLE cannot say, from
 * its rows of r (COLUMNS_SQL; none for a table without columns); the
 * copied columns into copycols, and whether they are all of BINARY_TYPES
 * (and there is one) into *binary. */
static void table_columns(const PGresult *r, unsigned reloid, const char *qname,
			  enum col_source from, struct strbuf *cols, struct strbuf *alters,
			  struct strbuf *copycols, int *binary)
{
	int lo = 0, hi = PQntuples(r), i, n = 0, ncopy = 0, nbinary = 0;

	/* the first row of the table (rows are sorted on it) */
	while (lo < hi) {
		int mid = lo + (hi - lo) / 2;

		if (pgcat_oid(r, mid, 19) < reloid)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (i = lo; i < PQntuples(r) && pgcat_oid(r, i, 19) == reloid; i++) {
		const char *name = PQgetvalue(r, i, 0);
		const char *gen = PQgetvalue(r, i, 3), *ident = PQgetvalue(r, i, 4);

		if (!gen[0]) {
			sb_addf(copycols, "%s%s", ncopy++ ? ", " : "", name);
			nbinary += bval(r, i, 22);
		}
		if (from == COLS_TYPED || (from == COLS_INHERITED && !bval(r, i, 17))) {
			/* the parent (or type) defines the column; the table adds its own
			 * default and NOT NULL, and its own settings */
			if (pgcat_val(r, i, 5) && !gen[0] && !ident[0])
				sb_addf(alters, "ALTER TABLE ONLY %s ALTER COLUMN %s SET DEFAULT %s;\n",
					qname, name, pgcat_val(r, i, 5));
			if (bval(r, i, 2))
				sb_addf(alters, "ALTER TABLE ONLY %s ALTER COLUMN %s SET NOT NULL;\n",
					qname, name);
			column_settings(r, i, qname, name, alters);
			continue;
		}
		sb_addf(cols, "%s\n    %s %s", n++ ? "," : "", name, PQgetvalue(r, i, 1));
		if (pgcat_val(r, i, 18))
			sb_adds(cols, pgcat_val(r, i, 18));
		if (pgcat_val(r, i, 6))
			sb_addf(cols, " COLLATE %s", pgcat_val(r, i, 6));
		/* a generated column merged with a parent's takes the parent's
		 * expression: CREATE TABLE ... INHERITS refuses a second one.
		 * ATTACH PARTITION and ALTER TABLE ... INHERIT want the child's
		 * (the same; PostgreSQL 15.18 refuses a plain column there) */
		if (gen[0] == 's') {
			if (!bval(r, i, 21) || from != COLS_INHERITED)
				sb_addf(cols, " GENERATED ALWAYS AS (%s) STORED", pgcat_val(r, i, 5));
		} else if (pgcat_val(r, i, 5))
			sb_addf(cols, " DEFAULT %s", pgcat_val(r, i, 5));
		if (ident[0] && pgcat_val(r, i, 10)) {
			sb_addf(cols, " GENERATED %s AS IDENTITY (SEQUENCE NAME %s ",
				ident[0] == 'a' ? "ALWAYS" : "BY DEFAULT", pgcat_val(r, i, 10));
			seq_options(cols, r, i, 11);
			sb_adds(cols, ")");
		}
		if (bval(r, i, 2))
			sb_adds(cols, " NOT NULL");
		column_settings(r, i, qname, name, alters);
	}
	*binary = ncopy > 0 && nbinary == ncopy;
}

static int dump_relations(struct dumper *dp)
{
	PGresult *r = pgcat_query(dp->conn,
		"SELECT c.oid, c.relkind, c.oid::pg_catalog.regclass::text, "
		"pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(c.relowner)), c.relpersistence, "
		/* the TOAST table's options are the table's "toast.*" ones */
		"pg_catalog.array_to_string(c.reloptions || ARRAY(SELECT 'toast.' || x FROM "
		" pg_catalog.pg_class tc, pg_catalog.unnest(tc.reloptions) x WHERE tc.oid = "
		" c.reltoastrelid), ', '), c.relispartition, "
		"CASE WHEN c.relkind = 'p' THEN pg_catalog.pg_get_partkeydef(c.oid) END, "
		"CASE WHEN c.relispartition THEN (SELECT i.inhparent::pg_catalog.regclass::text FROM "
		" pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid) END, "
		"CASE WHEN c.relispartition THEN pg_catalog.pg_get_expr(c.relpartbound, c.oid) END, "
		"CASE WHEN c.relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(c.oid) END, "
		"c.relispopulated, n.nspname, c.relname, c.reltuples::bigint, c.relreplident, "
		"CASE WHEN c.relkind = 'f' THEN " PGOBJ_FOREIGN_TABLE("c.oid") " END, "
		/* 17 classic inheritance parents, 18 the type of a typed table */
		"CASE WHEN NOT c.relispartition THEN (SELECT pg_catalog.string_agg("
		" i.inhparent::pg_catalog.regclass::text, ', ' ORDER BY i.inhseqno) FROM "
		" pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid) END, "
		"CASE WHEN c.reloftype <> 0 THEN pg_catalog.format_type(c.reloftype, NULL) END, "
		/* 19 a table access method other than heap */
		"(SELECT pg_catalog.quote_ident(am.amname) FROM pg_catalog.pg_am am WHERE am.oid = "
		" c.relam AND am.amname <> 'heap'), "
		/* 20 a view's column defaults */
		"(SELECT pg_catalog.string_agg('ALTER VIEW ' || c.oid::pg_catalog.regclass::text || "
		" ' ALTER COLUMN ' || pg_catalog.quote_ident(a.attname) || ' SET DEFAULT ' || "
		" pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) || E';\\n', '' ORDER BY a.attnum) "
		" FROM pg_catalog.pg_attrdef ad JOIN pg_catalog.pg_attribute a ON a.attrelid = "
		" ad.adrelid AND a.attnum = ad.adnum WHERE c.relkind = 'v' AND ad.adrelid = c.oid), "
		/* 21 tablespace */
		TABLESPACE_OF("c.oid") ", "
		/* 22 check constraints both the table's own and inherited: in CREATE
		 * TABLE, so that the parent's (post-data, recursing) merges with
		 * them, as pg_dump's CREATE TABLE ... INHERITS does; else they would
		 * come back inherited only */
		"(SELECT pg_catalog.string_agg('CONSTRAINT ' || pg_catalog.quote_ident(k.conname) || "
		" ' ' || pg_catalog.pg_get_constraintdef(k.oid), E',\n    ' ORDER BY k.conname) FROM "
		" pg_catalog.pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'c' AND "
		" k.conislocal AND k.coninhcount > 0 AND k.convalidated), "
		/* 23 an inheritance child whose columns CREATE TABLE ... INHERITS
		 * would put in another order: it puts the parents' first (in
		 * inhseqno, then their own order, merged by name), then the
		 * child's own.  A column added to the parent after the child was
		 * made, or a parent taken on with ALTER TABLE ... INHERIT, leaves
		 * them in another (SELECT * and a positional INSERT see it).  (A
		 * parent's column sorts on inhseqno, then attnum, which stays
		 * below 1600; the child's own ones after all those.)  Such a child
		 * is made with every column and then inherits, one ALTER TABLE
		 * ... INHERIT a parent in inhseqno order: this column */
		"CASE WHEN NOT c.relispartition AND EXISTS (SELECT FROM pg_catalog.pg_inherits i "
		" WHERE i.inhrelid = c.oid) AND (SELECT pg_catalog.array_agg(a.attnum ORDER BY "
		" a.attnum) <> pg_catalog.array_agg(a.attnum ORDER BY (SELECT pg_catalog.min("
		" i.inhseqno::int8 * 2000 + pa.attnum) FROM pg_catalog.pg_inherits i JOIN "
		" pg_catalog.pg_attribute pa ON pa.attrelid = i.inhparent WHERE i.inhrelid = c.oid "
		" AND pa.attname = a.attname AND pa.attnum > 0 AND NOT pa.attisdropped), a.attnum) "
		" FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT "
		" a.attisdropped) THEN (SELECT pg_catalog.string_agg('ALTER TABLE ONLY ' || "
		" c.oid::pg_catalog.regclass::text || ' INHERIT ' || "
		" i.inhparent::pg_catalog.regclass::text || E';\n', '' ORDER BY i.inhseqno) FROM "
		" pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid) END, "
		/* 24 for such a child, column 22 and the valid checks it only
		 * inherits but its parents have by the time ALTER TABLE ...
		 * INHERIT runs, which wants them in the child: those an ancestor
		 * has of its own as well as inherited (in its CREATE TABLE; the
		 * others come in post-data and recurse).  They come back its own
		 * too, and so in column 22: one list sorted by name keeps the
		 * restored database's CREATE TABLE (and schema fingerprint) the
		 * snapshot's */
		"CASE WHEN NOT c.relispartition THEN (SELECT pg_catalog.string_agg('CONSTRAINT ' || "
		" pg_catalog.quote_ident(k.conname) || ' ' || pg_catalog.pg_get_constraintdef(k.oid), "
		" E',\n    ' ORDER BY k.conname) FROM pg_catalog.pg_constraint k WHERE k.conrelid = "
		" c.oid AND k.contype = 'c' AND k.coninhcount > 0 AND k.convalidated AND "
		" (k.conislocal OR EXISTS ("
		" WITH RECURSIVE anc(oid) AS (SELECT i.inhparent FROM pg_catalog.pg_inherits i WHERE "
		" i.inhrelid = c.oid UNION SELECT i.inhparent FROM pg_catalog.pg_inherits i JOIN anc "
		" ON i.inhrelid = anc.oid) SELECT FROM anc JOIN pg_catalog.pg_constraint ak ON "
		" ak.conrelid = anc.oid WHERE ak.contype = 'c' AND ak.conname = k.conname AND "
		" ak.conislocal AND ak.coninhcount > 0 AND ak.convalidated))) END "
		"FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
		"WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND c.relnamespace IN " USER_NSP " AND "
		NOT_EXT("pg_catalog.pg_class", "c.oid") " ORDER BY c.oid", dp->err);
	PGresult *colres = NULL;
	int i, ret = -1;

	if (!r || !(colres = pgcat_query(dp->conn, COLUMNS_SQL("SELECT c.oid FROM "
		"pg_catalog.pg_class c WHERE c.relkind IN ('r', 'p', 'f', 'm') AND c.relnamespace IN "
		USER_NSP " AND " NOT_EXT("pg_catalog.pg_class", "c.oid")), dp->err)))
		goto out;
	for (i = 0; i < PQntuples(r); i++) {
		struct strbuf sb = STRBUF_INIT, cols = STRBUF_INIT, alters = STRBUF_INIT;
		struct strbuf copycols = STRBUF_INIT;
		unsigned oid = pgcat_oid(r, i, 0);
		struct pobj *o;
		char kind = PQgetvalue(r, i, 1)[0];
		const char *name = PQgetvalue(r, i, 2), *relopts = PQgetvalue(r, i, 5);
		const char *am = pgcat_val(r, i, 19), *ts = pgcat_val(r, i, 21);
		int partition = bval(r, i, 6), rank = R_TABLE, binary;
		enum col_source from;

		if (kind == 'v' || kind == 'm') {
			struct strbuf def = STRBUF_INIT;

			sb_adds(&def, PQgetvalue(r, i, 10));
			sb_rtrim(&def);
			if (def.len && def.buf[def.len - 1] == ';')
				sb_setlen(&def, def.len - 1);
			if (kind == 'v') {
				sb_addf(&sb, "CREATE VIEW %s%s%s%s AS\n%s;\n", name, *relopts ? " WITH (" : "",
					relopts, *relopts ? ")" : "", def.buf);
				if (pgcat_val(r, i, 20))
					sb_adds(&sb, pgcat_val(r, i, 20));
				rank = R_VIEW;
			} else {
				sb_addf(&sb, "CREATE MATERIALIZED VIEW %s%s%s%s%s%s%s%s AS\n%s\nWITH NO DATA;\n",
					name, am ? " USING " : "", am ? am : "", *relopts ? " WITH (" : "",
					relopts, *relopts ? ")" : "", ts ? " TABLESPACE " : "", ts ? ts : "",
					def.buf);
				/* its columns' own settings (compression, statistics,
				 * storage), as a typed table's */
				table_columns(colres, oid, name, COLS_TYPED, &cols, &sb, &copycols,
					      &binary);
				sb_release(&cols);
				sb_release(&copycols);
				rank = R_MATVIEW;
			}
			sb_release(&def);
			pgcat_owner_to(&dp->owners, dp->o->no_owner, kind == 'v' ? "VIEW" : "MATERIALIZED VIEW", name, PQgetvalue(r, i, 3));
			o = add_obj(&dp->objs, rank, 'c', oid, sb_detach(&sb));
			if (kind == 'm' && bval(r, i, 11)) {
				sb_addf(&sb, "REFRESH MATERIALIZED VIEW %s;\n", name);
				o->refresh = sb_detach(&sb);
				o->name = xstrdup(name);
			}
			continue;
		}
		from = partition ? COLS_OWN : pgcat_val(r, i, 18) ? COLS_TYPED :
		       !pgcat_val(r, i, 17) ? COLS_OWN : pgcat_val(r, i, 23) ? COLS_INHERIT_AFTER :
		       COLS_INHERITED;
		table_columns(colres, oid, name, from, &cols, &alters, &copycols, &binary);
		/* a partition is a table of its own, attached after, as pg_dump does
		 * it: CREATE TABLE ... PARTITION OF would take the parent's column
		 * order and drop the partition's own NOT NULLs.  So is an
		 * inheritance child whose order INHERITS would change, inheriting
		 * after: its columns then stay its own too (attislocal; pg_dump
		 * --binary-upgrade resets that in the catalog, which a restore
		 * must not touch), see docs/snapshot-postgresql.md.  Every other
		 * child keeps pg_dump's INHERITS */
		sb_addf(&sb, "CREATE %s%sTABLE %s ", PQgetvalue(r, i, 4)[0] == 'u' ? "UNLOGGED " : "",
			kind == 'f' ? "FOREIGN " : "", name);
		if (pgcat_val(r, i, from == COLS_INHERIT_AFTER ? 24 : 22))
			sb_addf(&cols, "%s\n    %s", cols.len ? "," : "",
				pgcat_val(r, i, from == COLS_INHERIT_AFTER ? 24 : 22));
		if (from == COLS_TYPED)
			sb_addf(&sb, "OF %s", pgcat_val(r, i, 18));
		else
			sb_addf(&sb, "(%s\n)", cols.buf);
		if (from == COLS_INHERITED)
			sb_addf(&sb, " INHERITS (%s)", pgcat_val(r, i, 17));
		if (kind == 'p')
			sb_addf(&sb, " PARTITION BY %s", PQgetvalue(r, i, 7));
		if (kind == 'f')
			sb_adds(&sb, PQgetvalue(r, i, 16));
		if (am && kind != 'p')
			sb_addf(&sb, " USING %s", am);
		if (*relopts)
			sb_addf(&sb, " WITH (%s)", relopts);
		if (ts)
			sb_addf(&sb, " TABLESPACE %s", ts);
		sb_adds(&sb, ";\n");
		sb_add(&sb, alters.buf, alters.len);
		if (partition)
			sb_addf(&sb, "ALTER TABLE ONLY %s ATTACH PARTITION %s %s;\n", PQgetvalue(r, i, 8),
				name, PQgetvalue(r, i, 9));
		if (from == COLS_INHERIT_AFTER)
			sb_adds(&sb, pgcat_val(r, i, 23));
		switch (kind == 'f' ? 'd' : PQgetvalue(r, i, 15)[0]) {
		case 'f':
			sb_addf(&sb, "ALTER TABLE ONLY %s REPLICA IDENTITY FULL;\n", name);
			break;
		case 'n':
			sb_addf(&sb, "ALTER TABLE ONLY %s REPLICA IDENTITY NOTHING;\n", name);
			break;
		}
		pgcat_owner_to(&dp->owners, dp->o->no_owner, kind == 'f' ? "FOREIGN TABLE" : "TABLE", name, PQgetvalue(r, i, 3));
		add_obj(&dp->objs, R_TABLE, 'c', oid, sb_detach(&sb));
		if (kind == 'r')
			add_table(dp->d, r, i, 12, name, &copycols, binary, NULL);
		sb_release(&cols);
		sb_release(&alters);
		sb_release(&copycols);
	}
	ret = 0;
out:
	PQclear(colres);
	PQclear(r);
	return ret;
}

/*
 * Keys that views, materialized views or SQL-body functions need to be
 * valid (a GROUP BY the primary key selecting other columns): pre-data
 * objects between their table and those.  pg_dump instead creates such a
 * view as a placeholder and replaces it after the constraints, and moves
 * such a materialized view or function to post-data; creating the key
 * early keeps one order that serves every restore mode (the parallel one
 * builds post-data indexes before the rest), at the cost of loading that
 * one table with its key's index in place.
 */
static int dump_early_keys(struct dumper *dp)
{
	PGresult *r;
	int i;

	if (!PGOBJ_HAS(dp->present, PK_EARLY_KEY))
		return 0;
	r = pgcat_query(dp->conn,
		"SELECT k.oid, c.oid, " KEY_SQL("k", "c", "pg_catalog.pg_get_constraintdef(k.oid)")
		" || E'\\n', k.conparentid "
		"FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class c ON c.oid = k.conrelid "
		"WHERE k.contype IN ('p', 'u', 'x') AND c.relnamespace IN " USER_NSP
		" AND " NOT_EXT("pg_catalog.pg_class", "c.oid") " AND " KEY_NEEDED_EARLY("k")
		" ORDER BY k.oid", dp->err);
	if (!r)
		return -1;
	sort_keys(&dp->objs);
	for (i = 0; i < PQntuples(r); i++) {
		long table = find_obj(&dp->objs, 'c', pgcat_oid(r, i, 1));
		struct pobj *o = add_obj(&dp->objs, R_TABLE, 'K', pgcat_oid(r, i, 0),
					 xstrdup(PQgetvalue(r, i, 2)));

		if (table >= 0)
			add_dep(o, (size_t)table);
	}
	/* a partitioned table's key after its partitions' */
	sort_keys(&dp->objs);
	for (i = 0; i < PQntuples(r); i++) {
		long child = find_obj(&dp->objs, 'K', pgcat_oid(r, i, 0));
		long parent = find_obj(&dp->objs, 'K', pgcat_oid(r, i, 3));

		if (child >= 0 && parent >= 0)
			add_dep(&dp->objs.v[parent], (size_t)child);
	}
	PQclear(r);
	return 0;
}

/* Aliases (a table's row type, an array type, a composite type's pg_class
 * row) and the edges between collected objects, from pg_depend. */
static int load_dependencies(struct dumper *dp)
{
	struct objset *s = &dp->objs;
	PGresult *r = NULL;
	int i, pass, ret = -1;

	/* row types and composite relations */
	r = pgcat_query(dp->conn,
		"SELECT t.oid, t.typrelid FROM pg_catalog.pg_type t WHERE t.typrelid <> 0 "
		"AND t.typnamespace IN " USER_NSP, dp->err);
	if (!r)
		goto out;
	sort_keys(s);
	for (i = 0; i < PQntuples(r); i++) {
		long rel = find_obj(s, 'c', pgcat_oid(r, i, 1));
		long typ = find_obj(s, 't', pgcat_oid(r, i, 0));

		if (rel >= 0 && typ < 0)
			add_key(s, 't', pgcat_oid(r, i, 0), (size_t)rel);
		else if (typ >= 0 && rel < 0)
			add_key(s, 'c', pgcat_oid(r, i, 1), (size_t)typ);
	}
	PQclear(r);
	sort_keys(s);
	/* array types point at their element */
	r = pgcat_query(dp->conn,
		"SELECT t.oid, t.typelem FROM pg_catalog.pg_type t JOIN pg_catalog.pg_type e "
		"ON e.oid = t.typelem AND e.typarray = t.oid WHERE t.typnamespace IN " USER_NSP, dp->err);
	if (!r)
		goto out;
	for (i = 0; i < PQntuples(r); i++) {
		long el = find_obj(s, 't', pgcat_oid(r, i, 1));

		if (el >= 0)
			add_key(s, 't', pgcat_oid(r, i, 0), (size_t)el);
	}
	PQclear(r);
	sort_keys(s);

	r = pgcat_query(dp->conn,
		"SELECT * FROM (SELECT CASE WHEN d.classid IN ('pg_catalog.pg_rewrite'::regclass, "
		"'pg_catalog.pg_attrdef'::regclass) THEN 'c' WHEN d.classid = "
		"'pg_catalog.pg_constraint'::regclass THEN CASE WHEN co.contypid <> 0 THEN 't' END "
		"ELSE " PGOBJ_CLASS_OF("d.classid") " END AS cls, "
		"CASE d.classid WHEN 'pg_catalog.pg_rewrite'::regclass THEN rw.ev_class "
		"WHEN 'pg_catalog.pg_attrdef'::regclass THEN ad.adrelid "
		"WHEN 'pg_catalog.pg_constraint'::regclass THEN co.contypid ELSE d.objid END, "
		/* 'K': a key created early (dump_early_keys) */
		"CASE WHEN d.refclassid = 'pg_catalog.pg_constraint'::regclass THEN 'K' ELSE "
		PGOBJ_CLASS_OF("d.refclassid") " END AS refcls, d.refobjid "
		"FROM pg_catalog.pg_depend d "
		"LEFT JOIN pg_catalog.pg_rewrite rw ON d.classid = 'pg_catalog.pg_rewrite'::regclass "
		" AND rw.oid = d.objid "
		"LEFT JOIN pg_catalog.pg_attrdef ad ON d.classid = 'pg_catalog.pg_attrdef'::regclass "
		" AND ad.oid = d.objid "
		"LEFT JOIN pg_catalog.pg_constraint co ON d.classid = 'pg_catalog.pg_constraint'::regclass "
		" AND co.oid = d.objid "
		"WHERE d.deptype IN ('n', 'a', 'i') AND d.refobjid >= 16384 "
		"UNION ALL " PGOBJ_MEMBER_DEPS ") x "
		"WHERE x.cls IS NOT NULL AND x.refcls IS NOT NULL", dp->err);
	if (!r)
		goto out;
	/* pass 0: a base type's own edges (to its I/O functions), which go to
	 * its full definition; pass 1: the rest, where only the type's own
	 * functions need no more than its shell */
	for (pass = 0; pass < 2; pass++) {
		for (i = 0; i < PQntuples(r); i++) {
			long from = find_obj(s, PQgetvalue(r, i, 0)[0], pgcat_oid(r, i, 1));
			long to = find_obj(s, PQgetvalue(r, i, 2)[0], pgcat_oid(r, i, 3));

			if (from < 0 || to < 0 || from == to || s->v[from].has_full != !pass)
				continue;
			if (s->v[from].has_full)
				from = (long)s->v[from].full;
			if (s->v[to].has_full && !has_dep(&s->v[s->v[to].full], (size_t)from))
				to = (long)s->v[to].full;
			/* a sequence OWNED BY a column is created before its table */
			if (s->v[from].rank == R_SEQ || from == to)
				continue;
			add_dep(&s->v[from], (size_t)to);
		}
	}
	ret = 0;
out:
	PQclear(r);
	return ret;
}

/* Among objects of one rank the first collected goes first: each kind's
 * query gives its order (OID, creation order, for most; pg_dump's name
 * order for operators, whose COMMUTATOR links depend on it). */
static int obj_before(const struct pobj *a, const struct pobj *b)
{
	return a->rank < b->rank;
}

/* Emits the objects in a dependency-respecting order (a stable topological
 * sort: among the ready objects, the lowest rank first, then the first
 * collected). */
static int emit_sorted(struct dumper *dp, struct strbuf *pre)
{
	struct objset *s = &dp->objs;
	size_t done = 0, i, j;

	while (done < s->n) {
		long best = -1;

		for (i = 0; i < s->n; i++) {
			struct pobj *o = &s->v[i];
			int ready = !o->emitted;

			for (j = 0; ready && j < o->ndeps; j++)
				if (!s->v[o->deps[j]].emitted)
					ready = 0;
			if (ready && (best < 0 || obj_before(o, &s->v[best])))
				best = (long)i;
		}
		if (best < 0) {
			for (i = 0; i < s->n && s->v[i].emitted; i++)
				;
			return err_set(dp->err, ERR_FAIL, "cannot order the schema: a dependency cycle "
				       "involves this statement: %.200s", s->v[i].sql);
		}
		s->v[best].emitted = 1;
		s->v[best].pre_off = pre->len;
		s->v[best].entry = done;
		sb_adds(pre, s->v[best].sql);
		s->v[best].pre_len = pre->len - s->v[best].pre_off;
		if (s->v[best].refresh) {
			ALLOC_GROW(dp->refresh, dp->nrefresh + 1, dp->arefresh);
			dp->refresh[dp->nrefresh++] = (size_t)best;
		}
		done++;
	}
	return 0;
}

/* The catalog of a sorted object's class letter (PGOBJ_CLASS_OF's, and
 * 'b' a base type's full definition, 'K' a key created early). */
#define PRE_CATALOG(l)                                                                 \
	"CASE " l " WHEN 'c' THEN 'pg_catalog.pg_class'::regclass WHEN 't' THEN "          \
	"'pg_catalog.pg_type'::regclass WHEN 'b' THEN 'pg_catalog.pg_type'::regclass "     \
	"WHEN 'p' THEN 'pg_catalog.pg_proc'::regclass WHEN 'K' THEN "                      \
	"'pg_catalog.pg_constraint'::regclass WHEN 'l' THEN 'pg_catalog.pg_collation'::regclass " \
	"WHEN 'w' THEN 'pg_catalog.pg_foreign_data_wrapper'::regclass WHEN 's' THEN "      \
	"'pg_catalog.pg_foreign_server'::regclass WHEN 'u' THEN "                          \
	"'pg_catalog.pg_user_mapping'::regclass WHEN 'k' THEN 'pg_catalog.pg_cast'::regclass " \
	"WHEN 'v' THEN 'pg_catalog.pg_conversion'::regclass WHEN 'o' THEN "                \
	"'pg_catalog.pg_operator'::regclass WHEN 'F' THEN 'pg_catalog.pg_opfamily'::regclass " \
	"WHEN 'C' THEN 'pg_catalog.pg_opclass'::regclass WHEN 'P' THEN "                   \
	"'pg_catalog.pg_ts_parser'::regclass WHEN 'E' THEN 'pg_catalog.pg_ts_template'::regclass " \
	"WHEN 'D' THEN 'pg_catalog.pg_ts_dict'::regclass WHEN 'T' THEN "                   \
	"'pg_catalog.pg_ts_config'::regclass WHEN 'a' THEN 'pg_catalog.pg_am'::regclass "  \
	"WHEN 'g' THEN 'pg_catalog.pg_language'::regclass WHEN 'x' THEN "                  \
	"'pg_catalog.pg_transform'::regclass END"
/* Its owner's OID, for the catalogs that have one. */
#define PRE_OWNER(l, oid)                                                              \
	"CASE " l " WHEN 'c' THEN (SELECT x.relowner FROM pg_catalog.pg_class x WHERE x.oid = " oid ") " \
	"WHEN 't' THEN (SELECT x.typowner FROM pg_catalog.pg_type x WHERE x.oid = " oid ") "  \
	"WHEN 'b' THEN (SELECT x.typowner FROM pg_catalog.pg_type x WHERE x.oid = " oid ") "  \
	"WHEN 'p' THEN (SELECT x.proowner FROM pg_catalog.pg_proc x WHERE x.oid = " oid ") "  \
	"WHEN 'l' THEN (SELECT x.collowner FROM pg_catalog.pg_collation x WHERE x.oid = " oid ") " \
	"WHEN 'w' THEN (SELECT x.fdwowner FROM pg_catalog.pg_foreign_data_wrapper x WHERE x.oid = " oid ") " \
	"WHEN 's' THEN (SELECT x.srvowner FROM pg_catalog.pg_foreign_server x WHERE x.oid = " oid ") " \
	"WHEN 'v' THEN (SELECT x.conowner FROM pg_catalog.pg_conversion x WHERE x.oid = " oid ") " \
	"WHEN 'o' THEN (SELECT x.oprowner FROM pg_catalog.pg_operator x WHERE x.oid = " oid ") " \
	"WHEN 'F' THEN (SELECT x.opfowner FROM pg_catalog.pg_opfamily x WHERE x.oid = " oid ") " \
	"WHEN 'C' THEN (SELECT x.opcowner FROM pg_catalog.pg_opclass x WHERE x.oid = " oid ") " \
	"WHEN 'D' THEN (SELECT x.dictowner FROM pg_catalog.pg_ts_dict x WHERE x.oid = " oid ") " \
	"WHEN 'T' THEN (SELECT x.cfgowner FROM pg_catalog.pg_ts_config x WHERE x.oid = " oid ") " \
	"WHEN 'g' THEN (SELECT x.lanowner FROM pg_catalog.pg_language x WHERE x.oid = " oid ") END"

/*
 * The sorted objects of pre-data as typed entries (out->pre_toc), in the
 * order emit_sorted wrote them: kind and identity (pg_identify_object's,
 * a base type's shell is a "SHELL TYPE"), owner, the entries it needs
 * (its pg_depend edges) and its slice of pre-data.  One query for all.
 */
static int type_pre_data(struct dumper *dp)
{
	const struct objset *s = &dp->objs;
	struct strbuf sql = STRBUF_INIT;
	struct pga_toc *t = &dp->d->pre_toc;
	size_t *by_entry = xcalloc(s->n ? s->n : 1, sizeof(*by_entry));
	PGresult *r;
	size_t i;
	int ret = -1;

	for (i = 0; i < s->n; i++)
		by_entry[s->v[i].entry] = i;
	sb_adds(&sql, "SELECT CASE WHEN o.cls = 't' AND (SELECT NOT x.typisdefined FROM "
		"pg_catalog.pg_type x WHERE x.oid = o.oid) THEN 'SHELL TYPE' ELSE "
		"pg_catalog.upper(i.type) END, i.identity, pg_catalog.pg_get_userbyid("
		PRE_OWNER("o.cls", "o.oid") ") FROM ROWS FROM (pg_catalog.unnest('{");
	for (i = 0; i < s->n; i++)
		sb_addf(&sql, "%s%c", i ? "," : "", s->v[by_entry[i]].cls);
	sb_adds(&sql, "}'::\"char\"[]), pg_catalog.unnest('{");
	for (i = 0; i < s->n; i++)
		sb_addf(&sql, "%s%u", i ? "," : "", s->v[by_entry[i]].oid);
	sb_adds(&sql, "}'::pg_catalog.oid[])) WITH ORDINALITY o(cls, oid, n) LEFT JOIN LATERAL "
		"pg_catalog.pg_identify_object(" PRE_CATALOG("o.cls") ", o.oid, 0) i ON true "
		"ORDER BY o.n");
	if (!(r = pgcat_query(dp->conn, sql.buf, dp->err)))
		goto out;
	for (i = 0; i < s->n && i < (size_t)PQntuples(r); i++) {
		const struct pobj *o = &s->v[by_entry[i]];
		struct pga_entry *e = pga_toc_add_slice(t, pgcat_val(r, (int)i, 0) ?
							pgcat_val(r, (int)i, 0) : "OBJECT",
							pgcat_val(r, (int)i, 1), o->pre_off,
							o->pre_len);

		if (pgcat_val(r, (int)i, 2))
			e->owner = xstrdup(pgcat_val(r, (int)i, 2));
		for (size_t d = 0; d < o->ndeps; d++)
			pga_entry_add_dep(e, s->v[o->deps[d]].entry);
	}
	PQclear(r);
	ret = 0;
out:
	free(by_entry);
	sb_release(&sql);
	return ret;
}

/* The lock key of table c: the root of its partition tree (ALTER TABLE on
 * a partitioned table recurses into its partitions). */
#define LOCK_ROOT(c) PGOBJ_LOCK_ROOT(c)

/* The materialized views whose rows the expressions of constraint k read,
 * through the user's functions (an SQL-standard body records what it
 * reads) and views, as post_keys ("m:OID"): validating k needs them
 * refreshed.  Built-in objects (OIDs below 16384) are never followed. */
#define MATVIEWS_READ(k)                                                               \
	"(WITH RECURSIVE w(cls, oid) AS (SELECT d.refclassid, d.refobjid FROM "           \
	"pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_constraint'::regclass "   \
	"AND d.objid = " k ".oid AND d.deptype = 'n' AND d.refobjid >= 16384 AND "        \
	"d.refclassid IN ('pg_catalog.pg_proc'::regclass, 'pg_catalog.pg_class'::regclass) " \
	"UNION SELECT d.refclassid, d.refobjid FROM w CROSS JOIN LATERAL (SELECT w.cls, "  \
	"w.oid UNION ALL SELECT 'pg_catalog.pg_rewrite'::regclass, rw.oid FROM "           \
	"pg_catalog.pg_rewrite rw WHERE w.cls = 'pg_catalog.pg_class'::regclass AND "      \
	"rw.ev_class = w.oid) s(cls, oid) JOIN pg_catalog.pg_depend d ON d.classid = s.cls " \
	"AND d.objid = s.oid WHERE d.deptype = 'n' AND d.refobjid >= 16384 AND "          \
	"d.refclassid IN ('pg_catalog.pg_proc'::regclass, 'pg_catalog.pg_class'::regclass)) " \
	"SELECT pg_catalog.string_agg('m:' || w.oid, ' ') FROM w JOIN pg_catalog.pg_class mc " \
	"ON mc.oid = w.oid WHERE w.cls = 'pg_catalog.pg_class'::regclass AND mc.relkind = 'm')"

/*
 * Post-data: constraints, indexes, triggers, statistics, in the order that
 * always works serially (the parts, in order).  Each part's rows are the
 * entries of one kind, with the lock it takes on its tables; columns:
 * 0 the SQL, 1 the name, then optional 2 its keys, 3 and 4 the tables it
 * locks, 5 the keys it needs (post_keys), 6 and 7 a key's split form
 * (struct pga_entry's index_sql, attach_sql), 8 the row's lock mode when it
 * is not the part's.
 */
struct post_part {
	const char *kind;
	enum pga_lock lock;
	enum pgobj_kind need; /* sent only if the database holds this kind */
	const char *sql;
};

/* An index of the INDEX query (pg_index i of table c, its pg_class ic, the
 * table's schema n, its first column a and operator class o) that is a
 * b-tree on one plain column of a table or materialized view, with that
 * column's collation, its type's default operator class and the default
 * ordering, no INCLUDE, predicate, storage options, tablespace of its own
 * nor NULLS NOT DISTINCT: pg_get_indexdef prints just the names, which
 * PLAIN_INDEX_DEF builds the same way (quote_ident is the server's
 * quote_identifier; the table always schema-qualified) at less than half
 * the cost (400 such indexes: about 10 ms of pg_get_indexdef).  Any other
 * index still asks pg_get_indexdef. */
#define PLAIN_INDEX                                                                    \
	"c.relkind IN ('r', 'm') AND i.indnkeyatts = 1 AND i.indnatts = 1 AND "          \
	"i.indexprs IS NULL AND i.indpred IS NULL AND ic.reloptions IS NULL AND "         \
	"ic.relam = 403 AND ic.reltablespace = 0 AND i.indoption[0] = 0 AND "             \
	"i.indcollation[0] = a.attcollation AND o.opcdefault AND o.opcintype = a.atttypid " \
	"AND (NOT i.indisunique OR (pg_catalog.to_jsonb(i) ->> 'indnullsnotdistinct') IS " \
	"DISTINCT FROM 'true')"
#define PLAIN_INDEX_DEF                                                                \
	"'CREATE ' || CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END || 'INDEX ' || "  \
	"pg_catalog.quote_ident(ic.relname) || ' ON ' || pg_catalog.quote_ident(n.nspname) " \
	"|| '.' || pg_catalog.quote_ident(c.relname) || ' USING btree (' || "             \
	"pg_catalog.quote_ident(a.attname) || ')'"

/* Post-data's keys and exclusion constraints (keys they need first, a
 * partition's before its parent's, which attaches them): key_sql, then
 * unless no rule or function names a key (pgobj_present's PK_EARLY_KEY:
 * then the set is empty, and the server need not scan pg_depend for it)
 * the condition that leaves out those created early, then
 * key_sql_order. */
static const char key_sql[] =
	"SELECT " KEY_SQL("k", "c", "kd.def") ", c.oid::pg_catalog.regclass::text || ' ' || "
	"pg_catalog.quote_ident(k.conname), 'k:' || k.oid || ' c:' || k.conindid, "
	/* (only a partitioned table's key has children: pg_constraint has
	 * no index on conparentid, the scan is not done per key) */
	LOCK_ROOT("c") ", NULL, CASE WHEN c.relkind = 'p' THEN (SELECT "
	"pg_catalog.string_agg('k:' || ch.oid, ' ') FROM pg_catalog.pg_constraint ch WHERE "
	"ch.conparentid = k.oid) END, "
	/* a b-tree key on plain columns of a plain table: its index can be
	 * built first, next to the table's other indexes (see struct
	 * pga_entry).  Its pg_get_indexdef is the key's column list, which
	 * pg_get_constraintdef has already printed the same way, in "CREATE
	 * UNIQUE INDEX name ON table USING btree": a key's index has the
	 * default operator classes, collations and ordering (PostgreSQL
	 * refuses any other for ADD CONSTRAINT ... USING INDEX), and
	 * pg_get_indexdef would cost four times pg_get_constraintdef.  A key
	 * whose index has a tablespace of its own, which the definition
	 * prints, still asks pg_get_indexdef. */
	"CASE WHEN c.relkind = 'r' AND k.contype IN ('p', 'u') AND NOT k.condeferrable AND "
	"i.indexprs IS NULL AND i.indpred IS NULL AND ic.reloptions IS NULL AND i.indnatts = "
	"i.indnkeyatts AND (pg_catalog.to_jsonb(i) ->> 'indnullsnotdistinct') IS DISTINCT FROM "
	"'true' AND "
	TABLESPACE_OF("k.conindid") " IS NULL THEN CASE WHEN ic.reltablespace = 0 THEN "
	"'CREATE ' || CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END || 'INDEX ' || "
	"pg_catalog.quote_ident(ic.relname) || ' ON ' || c.oid::pg_catalog.regclass::text || "
	"' USING ' || (SELECT pg_catalog.quote_ident(am.amname) FROM pg_catalog.pg_am am WHERE "
	"am.oid = ic.relam) || ' ' || pg_catalog.substr(kd.def, pg_catalog.strpos(kd.def, '(')) "
	"ELSE pg_catalog.pg_get_indexdef(k.conindid) END END AS index_sql, "
	"'ALTER TABLE ONLY ' || c.oid::pg_catalog.regclass::text || "
	"' ADD CONSTRAINT ' || pg_catalog.quote_ident(k.conname) || CASE k.contype WHEN 'p' "
	"THEN ' PRIMARY KEY' ELSE ' UNIQUE' END || ' USING INDEX ' || "
	"pg_catalog.quote_ident(ic.relname) "
	"FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class c ON c.oid = k.conrelid "
	/* (OFFSET 0: computed once a key, not once a use) */
	"CROSS JOIN LATERAL (SELECT pg_catalog.pg_get_constraintdef(k.oid) AS def OFFSET 0) kd "
	"LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = k.conindid "
	"LEFT JOIN pg_catalog.pg_class ic ON ic.oid = k.conindid "
	"WHERE k.contype IN ('p', 'u', 'x') AND c.relnamespace IN " USER_NSP
	" AND " NOT_EXT("pg_catalog.pg_class", "c.oid");
static const char key_sql_order[] =
	" ORDER BY " PARTITION_DEPTH("c") " DESC, c.oid, k.contype, k.oid";

static int dump_post(struct dumper *dp)
{
	static const struct post_part parts[] = {
		/* keys and exclusion constraints (foreign keys need them), a
		 * partition's before its parent's (which attaches them) */
		/* (key_sql and, unless no key is needed early, the rest of KEY_NEEDED_EARLY) */
		{ "CONSTRAINT", PGA_LOCK_ACCESS_EXCLUSIVE, PK_ALWAYS, NULL },
		/* indexes that back no constraint; a partitioned table's ON ONLY, its
		 * partitions' under their own names, attached below */
		{ "INDEX", PGA_LOCK_SHARE, PK_ALWAYS,
		"SELECT CASE WHEN " PLAIN_INDEX " THEN " PLAIN_INDEX_DEF " WHEN "
		TABLESPACE_OF("i.indexrelid") " IS NULL THEN "
		"pg_catalog.pg_get_indexdef(i.indexrelid) ELSE pg_catalog.regexp_replace("
		"pg_catalog.pg_get_indexdef(i.indexrelid), '( WHERE \\(.*)?$', ' TABLESPACE ' || "
		TABLESPACE_OF("i.indexrelid") " || '\\1') END || ';', "
		"i.indexrelid::pg_catalog.regclass::text, 'c:' || i.indexrelid, " LOCK_ROOT("c") " "
		"FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indrelid "
		"JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid JOIN pg_catalog.pg_namespace n "
		"ON n.oid = c.relnamespace LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = "
		"i.indrelid AND a.attnum = i.indkey[0] LEFT JOIN pg_catalog.pg_opclass o ON "
		"o.oid = i.indclass[0] "
		"WHERE c.relnamespace IN " USER_NSP " AND c.relkind IN ('r', 'p', 'm') AND "
		NOT_EXT("pg_catalog.pg_class", "c.oid") " AND NOT EXISTS (SELECT 1 FROM "
		"pg_catalog.pg_constraint k WHERE k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x')) "
		"ORDER BY c.oid, i.indexrelid" },
		/* the parent index is whole (valid) only once every partition's is
		 * attached: what needs it needs the attaches too.  (A foreign key
		 * referencing a partitioned index records it as its conindid: that
		 * is no constraint of the index's own.) */
		{ "INDEX ATTACH", PGA_LOCK_ACCESS_EXCLUSIVE, PK_INDEX_ATTACH,
		"SELECT 'ALTER INDEX ' || h.inhparent::pg_catalog.regclass::text || ' ATTACH PARTITION ' "
		"|| h.inhrelid::pg_catalog.regclass::text || ';', h.inhrelid::pg_catalog.regclass::text, "
		"'c:' || h.inhparent, " LOCK_ROOT("c") ", NULL, 'c:' || h.inhparent || ' c:' || h.inhrelid "
		"FROM pg_catalog.pg_inherits h "
		"JOIN pg_catalog.pg_index i ON i.indexrelid = h.inhrelid JOIN pg_catalog.pg_class c "
		"ON c.oid = i.indrelid WHERE c.relnamespace IN " USER_NSP " AND NOT EXISTS (SELECT 1 "
		"FROM pg_catalog.pg_constraint k WHERE k.conindid = h.inhparent AND k.contype IN "
		"('p', 'u', 'x')) ORDER BY " PARTITION_DEPTH("c") " DESC, h.inhrelid" },
		/* settings of indexes (constraints' included) */
		/* (PostgreSQL 15 takes SHARE UPDATE EXCLUSIVE on the index: its
		 * table's, at least as strong, is what the schedule keys on) */
		{ "INDEX STATISTICS", PGA_LOCK_SHARE_UPDATE_EXCLUSIVE, PK_INDEX_STATS,
		"SELECT 'ALTER INDEX ' || i.indexrelid::pg_catalog.regclass::text || ' ALTER COLUMN ' || "
		"a.attnum || ' SET STATISTICS ' || a.attstattarget || ';', "
		"i.indexrelid::pg_catalog.regclass::text, NULL, " LOCK_ROOT("c") ", NULL, "
		"'c:' || i.indexrelid "
		"FROM pg_catalog.pg_index i "
		"JOIN pg_catalog.pg_class c ON c.oid = i.indrelid JOIN pg_catalog.pg_attribute a ON "
		"a.attrelid = i.indexrelid WHERE a.attstattarget >= 0 AND c.relnamespace IN " USER_NSP
		" AND " NOT_EXT("pg_catalog.pg_class", "c.oid") " ORDER BY i.indexrelid, a.attnum" },
		/* CLUSTER ON takes SHARE UPDATE EXCLUSIVE, REPLICA IDENTITY ACCESS
		 * EXCLUSIVE (column 8) */
		{ "INDEX USE", PGA_LOCK_SHARE_UPDATE_EXCLUSIVE, PK_INDEX_USE,
		"SELECT 'ALTER TABLE ONLY ' || c.oid::pg_catalog.regclass::text || CASE WHEN "
		"v.clu THEN ' CLUSTER ON ' ELSE ' REPLICA IDENTITY USING INDEX ' END || "
		"pg_catalog.quote_ident(ic.relname) || ';', i.indexrelid::pg_catalog.regclass::text, "
		"NULL, " LOCK_ROOT("c") ", NULL, 'c:' || i.indexrelid, NULL, NULL, CASE WHEN v.clu "
		"THEN 'SHARE UPDATE EXCLUSIVE' ELSE 'ACCESS EXCLUSIVE' END FROM pg_catalog.pg_index i "
		"JOIN pg_catalog.pg_class c ON c.oid = i.indrelid JOIN pg_catalog.pg_class ic ON "
		"ic.oid = i.indexrelid CROSS JOIN (VALUES (true), (false)) v(clu) "
		"WHERE (v.clu AND i.indisclustered OR NOT v.clu AND i.indisreplident AND c.relreplident "
		"= 'i') AND c.relnamespace IN " USER_NSP " AND " NOT_EXT("pg_catalog.pg_class", "c.oid")
		" ORDER BY c.oid, v.clu DESC" },
		/* check constraints of tables (recursing to inheritance children, whose
		 * copies are not dumped), and a child's NOT VALID one that is its own
		 * as well as inherited (a valid one is in its CREATE TABLE): after
		 * its parents', so that it merges with the copy they made, and stays
		 * local, as pg_dump does */
		{ "CHECK CONSTRAINT", PGA_LOCK_ACCESS_EXCLUSIVE, PK_CHECK,
		"SELECT 'ALTER TABLE ' || CASE WHEN c.relkind = 'p' OR c.relhassubclass THEN '' "
		"ELSE 'ONLY ' END || "
		"c.oid::pg_catalog.regclass::text || ' ADD CONSTRAINT ' || pg_catalog.quote_ident(k.conname) "
		"|| ' ' || pg_catalog.pg_get_constraintdef(k.oid) || ';', c.oid::pg_catalog.regclass::text "
		"|| ' ' || pg_catalog.quote_ident(k.conname), 'k:' || k.oid, " LOCK_ROOT("c") ", NULL, "
		MATVIEWS_READ("k") " "
		"FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class c ON c.oid = k.conrelid "
		"WHERE k.contype = 'c' AND k.conislocal AND (k.coninhcount = 0 OR NOT k.convalidated) "
		"AND c.relnamespace IN " USER_NSP " AND " NOT_EXT("pg_catalog.pg_class", "c.oid")
		" ORDER BY k.coninhcount > 0, c.oid, k.conname" },
		/* a domain's NOT VALID checks (CREATE DOMAIN cannot say NOT VALID), after
		 * the rows they were never checked against, as pg_dump does */
		{ "DOMAIN CONSTRAINT", PGA_LOCK_NONE, PK_DOMAIN_CHECK,
		"SELECT 'ALTER DOMAIN ' || pg_catalog.format_type(t.oid, NULL) || ' ADD CONSTRAINT ' || "
		"pg_catalog.quote_ident(k.conname) || ' ' || pg_catalog.pg_get_constraintdef(k.oid) || ';', "
		"pg_catalog.format_type(t.oid, NULL) || ' ' || pg_catalog.quote_ident(k.conname) "
		"FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_type t ON t.oid = k.contypid "
		"WHERE NOT k.convalidated AND t.typnamespace IN " USER_NSP " AND "
		NOT_EXT("pg_catalog.pg_type", "t.oid") " ORDER BY t.oid, k.conname" },
		/* foreign keys: they need the referenced key or unique index, which
		 * pg_depend records */
		{ "FK CONSTRAINT", PGA_LOCK_SHARE_ROW_EXCLUSIVE, PK_ALWAYS,
		"SELECT 'ALTER TABLE ' || CASE WHEN c.relkind = 'p' THEN '' ELSE 'ONLY ' END || "
		"c.oid::pg_catalog.regclass::text || ' ADD CONSTRAINT ' || pg_catalog.quote_ident(k.conname) "
		"|| ' ' || pg_catalog.pg_get_constraintdef(k.oid) || ';', c.oid::pg_catalog.regclass::text "
		"|| ' ' || pg_catalog.quote_ident(k.conname), 'k:' || k.oid, " LOCK_ROOT("c") ", "
		"(SELECT " LOCK_ROOT("rc") " FROM pg_catalog.pg_class rc WHERE rc.oid = k.confrelid), "
		"(SELECT pg_catalog.string_agg(CASE d.refclassid WHEN 'pg_catalog.pg_class'::regclass "
		"THEN 'c:' ELSE 'k:' END || d.refobjid, ' ') FROM pg_catalog.pg_depend d WHERE "
		"d.classid = 'pg_catalog.pg_constraint'::regclass AND d.objid = k.oid AND d.deptype = 'n' "
		"AND d.refclassid IN ('pg_catalog.pg_class'::regclass, "
		"'pg_catalog.pg_constraint'::regclass)) "
		"FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class c ON c.oid = k.conrelid "
		"WHERE k.contype = 'f' AND k.conparentid = 0 AND c.relnamespace IN " USER_NSP
		" AND " NOT_EXT("pg_catalog.pg_class", "c.oid") " ORDER BY c.oid, k.conname" },
		/* triggers (clones on partitions come with their parent's): CREATE
		 * TRIGGER and ALTER TABLE ... TRIGGER take SHARE ROW EXCLUSIVE (a
		 * constraint trigger's FROM table: ACCESS SHARE, weaker) */
		{ "TRIGGER", PGA_LOCK_SHARE_ROW_EXCLUSIVE, PK_TRIGGER,
		"SELECT pg_catalog.pg_get_triggerdef(t.oid) || ';' || CASE t.tgenabled "
		"WHEN 'D' THEN ' ALTER TABLE ' || c.oid::pg_catalog.regclass::text || ' DISABLE TRIGGER ' "
		"|| pg_catalog.quote_ident(t.tgname) || ';' "
		"WHEN 'R' THEN ' ALTER TABLE ' || c.oid::pg_catalog.regclass::text || ' ENABLE REPLICA TRIGGER ' "
		"|| pg_catalog.quote_ident(t.tgname) || ';' "
		"WHEN 'A' THEN ' ALTER TABLE ' || c.oid::pg_catalog.regclass::text || ' ENABLE ALWAYS TRIGGER ' "
		"|| pg_catalog.quote_ident(t.tgname) || ';' ELSE '' END, "
		"c.oid::pg_catalog.regclass::text || ' ' || pg_catalog.quote_ident(t.tgname), "
		"'t:' || t.oid, " LOCK_ROOT("c") ", (SELECT " LOCK_ROOT("fc") " FROM "
		"pg_catalog.pg_class fc WHERE fc.oid = t.tgconstrrelid) "
		"FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid "
		"WHERE NOT t.tgisinternal AND t.tgparentid = 0 AND c.relnamespace IN " USER_NSP
		" AND " NOT_EXT("pg_catalog.pg_class", "c.oid") " ORDER BY c.oid, t.tgname" },
		/* a partition's clone of its parent's trigger, enabled otherwise: it
		 * needs the trigger it was cloned from */
		{ "TRIGGER", PGA_LOCK_SHARE_ROW_EXCLUSIVE, PK_TRIGGER_CLONE,
		"SELECT 'ALTER TABLE ' || c.oid::pg_catalog.regclass::text || CASE t.tgenabled "
		"WHEN 'D' THEN ' DISABLE' WHEN 'R' THEN ' ENABLE REPLICA' WHEN 'A' THEN ' ENABLE ALWAYS' "
		"ELSE ' ENABLE' END || ' TRIGGER ' || pg_catalog.quote_ident(t.tgname) || ';', "
		"c.oid::pg_catalog.regclass::text || ' ' || pg_catalog.quote_ident(t.tgname), "
		"'t:' || t.oid, " LOCK_ROOT("c") ", NULL, (WITH RECURSIVE up(oid, parent) AS (SELECT "
		"pt.oid, pt.tgparentid UNION ALL SELECT x.oid, x.tgparentid FROM pg_catalog.pg_trigger x "
		"JOIN up ON x.oid = up.parent) SELECT pg_catalog.string_agg('t:' || up.oid, ' ') FROM up) "
		"FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_trigger pt ON pt.oid = t.tgparentid "
		"JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid WHERE t.tgenabled <> pt.tgenabled "
		"AND c.relnamespace IN " USER_NSP " ORDER BY " PARTITION_DEPTH("c") ", c.oid, t.tgname" },
		/* extended statistics: CREATE STATISTICS takes SHARE UPDATE EXCLUSIVE */
		{ "STATISTICS", PGA_LOCK_SHARE_UPDATE_EXCLUSIVE, PK_STATISTICS,
		"SELECT pg_catalog.pg_get_statisticsobjdef(s.oid) || ';' || CASE WHEN s.stxstattarget >= 0 "
		"THEN ' ALTER STATISTICS ' || pg_catalog.quote_ident(n.nspname) || '.' || "
		"pg_catalog.quote_ident(s.stxname) || ' SET STATISTICS ' || s.stxstattarget || ';' ELSE '' END, "
		"pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(s.stxname), NULL, "
		"(SELECT " LOCK_ROOT("c") " FROM pg_catalog.pg_class c WHERE c.oid = s.stxrelid) "
		"FROM pg_catalog.pg_statistic_ext s JOIN pg_catalog.pg_namespace n ON n.oid = s.stxnamespace "
		"WHERE s.stxnamespace IN " USER_NSP " AND " NOT_EXT("pg_catalog.pg_statistic_ext", "s.oid")
		" ORDER BY s.oid" },
	};
#define NPARTS (sizeof(parts) / sizeof(*parts))
	const char *sql[NPARTS];
	PGresult *res[NPARTS];
	struct strbuf keys = STRBUF_INIT;
	size_t p;
	int i, ret;

	sb_addf(&keys, "%s%s%s", key_sql,
		PGOBJ_HAS(dp->present, PK_EARLY_KEY) ? " AND NOT " KEY_NEEDED_EARLY("k") : "",
		key_sql_order);
	for (p = 0; p < NPARTS; p++)
		sql[p] = !parts[p].sql ? keys.buf :
			 PGOBJ_HAS(dp->present, parts[p].need) ? parts[p].sql : NULL;
	ret = pgcat_query_batch(dp->conn, sql, NPARTS, res, dp->err);
	sb_release(&keys);
	if (ret < 0)
		return -1;
	for (p = 0; p < NPARTS; p++) {
		PGresult *r = res[p];
		int nf = PQnfields(r);

		for (i = 0; i < PQntuples(r); i++) {
#define COL(n) (nf > (n) ? pgcat_val(r, i, (n)) : NULL)
			struct pga_entry *e = add_post(dp, parts[p].kind, PQgetvalue(r, i, 1),
						       PQgetvalue(r, i, 0), 1, COL(2), COL(5));
			const char *index_sql = COL(6), *attach_sql = COL(7);

			e->lock = parts[p].lock;
			if (COL(8) && pga_lock_parse(COL(8)) > 0)
				e->lock = (enum pga_lock)pga_lock_parse(COL(8));
			if (e->lock != PGA_LOCK_NONE && COL(3))
				pga_entry_add_table(e, COL(3));
			if (e->lock != PGA_LOCK_NONE && COL(4))
				pga_entry_add_table(e, COL(4));
			if (!e->ntables)
				e->lock = PGA_LOCK_NONE;
			if (index_sql && attach_sql) {
				e->index_sql = xstrdup(index_sql);
				e->attach_sql = xstrdup(attach_sql);
			}
#undef COL
		}
		PQclear(r);
	}
	return 0;
#undef NPARTS
}

/* setval for every sequence, identity ones included.  Their positions are
 * read SEQ_BATCH sequences a statement (a UNION ALL of one SELECT each):
 * fewer round trips than one a sequence, and the planner's cost of a
 * UNION ALL grows faster than linearly, so not all in one. */
#define SEQ_BATCH 100

static int dump_seq_positions(struct dumper *dp)
{
	PGresult *r = pgcat_query(dp->conn,
		"SELECT c.oid::pg_catalog.regclass::text, pg_catalog.quote_literal("
		"c.oid::pg_catalog.regclass::text) FROM pg_catalog.pg_class c "
		"WHERE c.relkind = 'S' AND c.relnamespace IN " USER_NSP " AND "
		NOT_EXT("pg_catalog.pg_class", "c.oid") " ORDER BY c.oid", dp->err);
	struct strbuf sql = STRBUF_INIT, line = STRBUF_INIT;
	int i, j, ret = -1;

	if (!r)
		return -1;
	for (i = 0; i < PQntuples(r); i += SEQ_BATCH) {
		PGresult *v;

		sb_reset(&sql);
		for (j = i; j < PQntuples(r) && j < i + SEQ_BATCH; j++)
			sb_addf(&sql, "%sSELECT %d, last_value, is_called FROM %s",
				j > i ? " UNION ALL " : "", j, PQgetvalue(r, j, 0));
		sb_adds(&sql, " ORDER BY 1");
		if (!(v = pgcat_query(dp->conn, sql.buf, dp->err)))
			goto out;
		for (j = 0; j < PQntuples(v) && i + j < PQntuples(r); j++) {
			sb_reset(&line);
			sb_addf(&line, "SELECT pg_catalog.setval(%s, %s, %s);\n",
				PQgetvalue(r, i + j, 1), PQgetvalue(v, j, 1),
				bval(v, j, 2) ? "true" : "false");
			add_post(dp, "SEQUENCE SET", PQgetvalue(r, i + j, 0), line.buf, 0, NULL, NULL);
		}
		PQclear(v);
	}
	ret = 0;
out:
	PQclear(r);
	sb_release(&sql);
	sb_release(&line);
	return ret;
}

/* A grant made by another role than the owner (who had the grant option)
 * is made as that role, so that it keeps its grantor, as pg_dump does
 * (GRANTED BY only accepts the current user). */
#define AS_GRANTOR(a, owner)                                                           \
	"CASE WHEN " a ".grantor <> " owner " THEN 'SET ROLE ' || pg_catalog.quote_ident(" \
	"pg_catalog.pg_get_userbyid(" a ".grantor)) || '; ' ELSE '' END || "
#define AS_GRANTOR_END(a, owner)                                                       \
	" || CASE WHEN " a ".grantor <> " owner " THEN ' RESET ROLE;' ELSE '' END"

/* Grants: the object's ACL replayed from a clean slate. */
static int dump_acls(struct dumper *dp)
{
	PGresult *r = pgcat_query(dp->conn,
		"WITH o(kind, name, acl, owner) AS ("
		" SELECT 'SCHEMA', pg_catalog.quote_ident(n.nspname), n.nspacl, n.nspowner "
		" FROM pg_catalog.pg_namespace n WHERE n.oid IN " USER_NSP " AND n.nspacl IS NOT NULL"
		" UNION ALL SELECT CASE WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, "
		" c.oid::pg_catalog.regclass::text, c.relacl, c.relowner FROM pg_catalog.pg_class c "
		" WHERE c.relnamespace IN " USER_NSP " AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') "
		" AND c.relacl IS NOT NULL AND " NOT_EXT("pg_catalog.pg_class", "c.oid")
		" UNION ALL SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, "
		" p.oid::pg_catalog.regprocedure::text, p.proacl, p.proowner FROM pg_catalog.pg_proc p "
		" WHERE p.pronamespace IN " USER_NSP " AND p.proacl IS NOT NULL AND "
		NOT_EXT("pg_catalog.pg_proc", "p.oid")
		" UNION ALL SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, "
		" pg_catalog.format_type(t.oid, NULL), t.typacl, t.typowner FROM pg_catalog.pg_type t "
		" WHERE t.typnamespace IN " USER_NSP " AND t.typacl IS NOT NULL AND t.typtype IN "
		" ('e', 'd', 'r', 'c', 'b') AND " NOT_EXT("pg_catalog.pg_type", "t.oid")
		" UNION ALL SELECT 'LARGE OBJECT', l.oid::text, l.lomacl, l.lomowner "
		" FROM pg_catalog.pg_largeobject_metadata l WHERE l.lomacl IS NOT NULL) "
		"SELECT o.kind, o.name, 'REVOKE ALL ON ' || o.kind || ' ' || o.name || ' FROM PUBLIC; "
		"REVOKE ALL ON ' || o.kind || ' ' || o.name || ' FROM ' || "
		"pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(o.owner)) || ';', "
		"(SELECT pg_catalog.string_agg(" AS_GRANTOR("a", "o.owner") "'GRANT ' || a.privilege_type || "
		" ' ON ' || o.kind || ' ' || o.name || ' TO ' || CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE "
		" pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END || "
		" CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END || ';'"
		AS_GRANTOR_END("a", "o.owner") ", ' ') FROM pg_catalog.aclexplode(o.acl) a), "
		"pg_catalog.pg_get_userbyid(o.owner) FROM o "
		"UNION ALL "
		"SELECT 'COLUMN', '', '', pg_catalog.string_agg(" AS_GRANTOR("a", "c.relowner")
		" 'GRANT ' || a.privilege_type || ' (' || "
		" pg_catalog.quote_ident(at.attname) || ') ON TABLE ' || c.oid::pg_catalog.regclass::text "
		" || ' TO ' || CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE "
		" pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END || "
		" CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END || ';'"
		AS_GRANTOR_END("a", "c.relowner") ", ' ' ORDER BY c.oid, at.attnum) "
		", NULL FROM pg_catalog.pg_attribute at JOIN pg_catalog.pg_class c ON c.oid = at.attrelid "
		"CROSS JOIN LATERAL pg_catalog.aclexplode(at.attacl) a "
		"WHERE at.attacl IS NOT NULL AND c.relnamespace IN " USER_NSP " AND "
		NOT_EXT("pg_catalog.pg_class", "c.oid") " HAVING count(*) > 0", dp->err);
	struct strbuf sql = STRBUF_INIT, name = STRBUF_INIT;
	int i;

	if (!r)
		return -1;
	for (i = 0; i < PQntuples(r); i++) {
		struct pga_entry *e;

		sb_reset(&sql);
		sb_reset(&name);
		if (PQgetvalue(r, i, 2)[0])
			sb_addf(&sql, "%s\n", PQgetvalue(r, i, 2));
		if (pgcat_val(r, i, 3))
			sb_addf(&sql, "%s\n", pgcat_val(r, i, 3));
		if (PQgetvalue(r, i, 1)[0])
			sb_addf(&name, "%s %s", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
		else
			sb_adds(&name, "column privileges");
		e = add_post(dp, "ACL", name.buf, sql.buf, 0, NULL, NULL);
		if (pgcat_val(r, i, 4))
			e->owner = xstrdup(pgcat_val(r, i, 4));
	}
	sb_release(&sql);
	sb_release(&name);
	PQclear(r);
	return 0;
}

/* Runs sql and appends column 0 of every row (non-NULL) to post-data, an
 * entry of kind each, named by column 1 and needing the keys of column 2
 * (post_keys). */
static int add_post_rows(struct dumper *dp, const char *kind, const char *sql)
{
	PGresult *r = pgcat_query(dp->conn, sql, dp->err);
	int i;

	if (!r)
		return -1;
	for (i = 0; i < PQntuples(r); i++)
		if (pgcat_val(r, i, 0))
			add_post(dp, kind, pgcat_val(r, i, 1), pgcat_val(r, i, 0), 1, NULL,
				 pgcat_val(r, i, 2));
	PQclear(r);
	return 0;
}

static int dump_comments(struct dumper *dp)
{
	return add_post_rows(dp, "COMMENT",
		"SELECT 'COMMENT ON ' || x.target || ' IS ' || pg_catalog.quote_literal(x.description) "
		"|| ';', x.target, CASE x.classoid WHEN 'pg_catalog.pg_class'::regclass THEN 'c:' || "
		"x.objoid WHEN 'pg_catalog.pg_constraint'::regclass THEN 'k:' || x.objoid WHEN "
		"'pg_catalog.pg_trigger'::regclass THEN 't:' || x.objoid END FROM (SELECT d.classoid, "
		"d.objoid, d.objsubid, d.description, CASE "
		" WHEN d.classoid = 'pg_catalog.pg_namespace'::regclass THEN 'SCHEMA ' || "
		"  (SELECT pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_namespace n WHERE n.oid = d.objoid "
		"   AND n.oid IN " USER_NSP ") "
		" WHEN d.classoid = 'pg_catalog.pg_extension'::regclass THEN 'EXTENSION ' || "
		"  (SELECT pg_catalog.quote_ident(e.extname) FROM pg_catalog.pg_extension e WHERE e.oid = d.objoid "
		"   AND e.extname <> 'plpgsql') "
		" WHEN d.classoid = 'pg_catalog.pg_class'::regclass THEN (SELECT CASE "
		"   WHEN d.objsubid > 0 THEN 'COLUMN ' || c.oid::pg_catalog.regclass::text || '.' || "
		"    pg_catalog.quote_ident((SELECT a.attname FROM pg_catalog.pg_attribute a WHERE "
		"    a.attrelid = c.oid AND a.attnum = d.objsubid)) "
		"   ELSE CASE c.relkind WHEN 'v' THEN 'VIEW ' WHEN 'm' THEN 'MATERIALIZED VIEW ' "
		"    WHEN 'S' THEN 'SEQUENCE ' WHEN 'i' THEN 'INDEX ' WHEN 'I' THEN 'INDEX ' "
		"    WHEN 'c' THEN 'TYPE ' WHEN 'f' THEN 'FOREIGN TABLE ' ELSE 'TABLE ' END || c.oid::pg_catalog.regclass::text END "
		"   FROM pg_catalog.pg_class c WHERE c.oid = d.objoid AND c.relnamespace IN " USER_NSP
		"   AND " NOT_EXT("pg_catalog.pg_class", "c.oid") ") "
		" WHEN d.classoid = 'pg_catalog.pg_type'::regclass THEN (SELECT 'TYPE ' || "
		"  pg_catalog.format_type(t.oid, NULL) FROM pg_catalog.pg_type t WHERE t.oid = d.objoid "
		"  AND t.typnamespace IN " USER_NSP " AND " NOT_EXT("pg_catalog.pg_type", "t.oid") ") "
		" WHEN d.classoid = 'pg_catalog.pg_proc'::regclass THEN (SELECT CASE p.prokind WHEN 'p' "
		"  THEN 'PROCEDURE ' WHEN 'a' THEN 'AGGREGATE ' ELSE 'FUNCTION ' END || "
		"  p.oid::pg_catalog.regprocedure::text FROM pg_catalog.pg_proc p WHERE p.oid = d.objoid "
		"  AND p.pronamespace IN " USER_NSP " AND " NOT_EXT("pg_catalog.pg_proc", "p.oid") ") "
		" WHEN d.classoid = 'pg_catalog.pg_constraint'::regclass THEN (SELECT 'CONSTRAINT ' || "
		"  pg_catalog.quote_ident(k.conname) || ' ON ' || CASE WHEN k.contypid <> 0 THEN 'DOMAIN ' "
		"  || pg_catalog.format_type(k.contypid, NULL) ELSE k.conrelid::pg_catalog.regclass::text END "
		"  FROM pg_catalog.pg_constraint k WHERE k.oid = d.objoid AND k.connamespace IN " USER_NSP ") "
		" WHEN d.classoid = 'pg_catalog.pg_trigger'::regclass THEN (SELECT 'TRIGGER ' || "
		"  pg_catalog.quote_ident(t.tgname) || ' ON ' || c.oid::pg_catalog.regclass::text "
		"  FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid "
		"  WHERE t.oid = d.objoid AND c.relnamespace IN " USER_NSP ") "
		" WHEN d.classoid = 'pg_catalog.pg_statistic_ext'::regclass THEN (SELECT 'STATISTICS ' || "
		"  pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(s.stxname) "
		"  FROM pg_catalog.pg_statistic_ext s JOIN pg_catalog.pg_namespace n ON n.oid = s.stxnamespace "
		"  WHERE s.oid = d.objoid AND s.stxnamespace IN " USER_NSP ") "
		" WHEN d.classoid = 'pg_catalog.pg_largeobject'::regclass THEN 'LARGE OBJECT ' || "
		"  d.objoid::text "
		" END AS target "
		/* built-in objects (OIDs below FirstNormalObjectId) but the public schema
		 * are never ours: skipping them first keeps this fast */
		"FROM pg_catalog.pg_description d WHERE d.objoid >= 16384 OR d.classoid IN ("
		"'pg_catalog.pg_namespace'::regclass, 'pg_catalog.pg_largeobject'::regclass)) x "
		"ORDER BY x.classoid, x.objoid, x.objsubid");
}

/* Security labels of the user's objects in its schemas, of the schemas, of
 * the large objects and of the user's own languages; those of publications,
 * subscriptions and event triggers come after them (pgobj_post).  Restoring
 * them needs the same label provider loaded. */
static int dump_security_labels(struct dumper *dp)
{
	if (!PGOBJ_HAS(dp->present, PK_SECLABEL))
		return 0;
	return add_post_rows(dp, "SECURITY LABEL", SECLABEL_SQL(
		"l.objnamespace IN " USER_NSP " OR l.classoid = 'pg_catalog.pg_namespace'::regclass "
		"AND l.objoid IN " USER_NSP " OR l.classoid = 'pg_catalog.pg_largeobject'::regclass "
		"OR l.classoid = 'pg_catalog.pg_language'::regclass AND l.objoid >= 16384"));
}

/* Large objects: created empty in pre-data (their data is copied after the
 * tables' rows), owned in post-data; their grants, comments and security
 * labels are dump_acls's, dump_comments's and dump_security_labels's.  An
 * in-place restore first unlinks every large object of the target (see
 * pgobj_prelude), so it ends with exactly the snapshot's. */
static int dump_large_objects(struct dumper *dp, struct strbuf *pre)
{
	PGresult *r = pgcat_query(dp->conn,
		"SELECT l.oid, pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(l.lomowner)) "
		"FROM pg_catalog.pg_largeobject_metadata l ORDER BY l.oid", dp->err);
	int i;

	if (!r)
		return -1;
	for (i = 0; i < PQntuples(r); i++) {
		ALLOC_GROW(dp->d->blobs, dp->d->nblobs + 1, dp->d->blobs_alloc);
		dp->d->blobs[dp->d->nblobs++] = pgcat_oid(r, i, 0);
		sb_addf(pre, "SELECT pg_catalog.lo_create('%s');\n", PQgetvalue(r, i, 0));
		pgcat_owner_to(&dp->owners, dp->o->no_owner, "LARGE OBJECT", PQgetvalue(r, i, 0),
			       pgcat_val(r, i, 1));
	}
	PQclear(r);
	return 0;
}

static int lock_tables(struct dumper *dp)
{
	struct strbuf sql = STRBUF_INIT;
	PGresult *r = pgcat_query(dp->conn,
		"SELECT c.oid::pg_catalog.regclass::text FROM pg_catalog.pg_class c "
		"WHERE c.relkind IN ('r', 'p') AND c.relnamespace IN " USER_NSP " AND "
		NOT_EXT("pg_catalog.pg_class", "c.oid") " ORDER BY c.oid", dp->err);
	long timeout = dp->o->lock_timeout_ms > 0 ? dp->o->lock_timeout_ms : 10000;
	int i, ret = -1;

	if (!r)
		return -1;
	sb_addf(&sql, "SET LOCAL lock_timeout = %ld", timeout);
	if (PQntuples(r) > 0)
		sb_adds(&sql, "; LOCK TABLE ");
	for (i = 0; i < PQntuples(r); i++)
		sb_addf(&sql, "%s%s", i ? ", " : "", PQgetvalue(r, i, 0));
	if (PQntuples(r) > 0)
		sb_adds(&sql, " IN ACCESS SHARE MODE; SET LOCAL lock_timeout = 0");
	PQclear(r);
	if (!(r = pgcat_query(dp->conn, sql.buf, dp->err))) {
		/* only a lock timeout waited; permission denied did not */
		if (!strcmp(dp->err->sqlstate, "55P03")) {
			dp->err->kind = ERR_LOCKED;
			err_prefix(dp->err, "cannot lock the tables for the snapshot (waited %ld ms)",
				   timeout);
		} else {
			err_prefix(dp->err, "cannot lock the tables for the snapshot");
		}
		goto out;
	}
	ret = 0;
out:
	PQclear(r);
	sb_release(&sql);
	return ret;
}

int pgcat_read(PGconn *conn, const struct pgcat_options *o, struct pgcat_dump *out,
	       struct sm_error *err)
{
	struct dumper dp = { conn, o, out, { 0 }, { NULL, 0, 0 }, STRBUF_INIT, NULL, 0, 0,
			     STRBUF_INIT, err, { 0 }, 0 };
	struct strbuf key = STRBUF_INIT;
	struct strbuf *pre = &out->pre_data, *post = &out->post_data;
	struct pgobj_out objs;
	size_t at = 0;
	int ret = -1;

	out->encoding = o->encoding ? o->encoding : PGA_ENCODING_UTF8;
	if (o->no_tablespaces) {
		PGresult *r = pgcat_query(conn, "SELECT pg_catalog.set_config('safe_migrate.no_tablespaces', "
				"'on', true)", err);

		if (!r)
			goto out;
		PQclear(r);
	}
	if (lock_tables(&dp) < 0 || check_unsupported(&dp) < 0 ||
	    pgobj_present(conn, &dp.present, err) < 0)
		goto out;
	objs = objects_out(&dp);
	sb_adds(pre, "-- safe-migrate PostgreSQL snapshot: pre-data\n");
	/* (a kind the database has none of is not asked for: pgobj_present) */
	if (pgobj_prelude(&objs, pre) < 0 || dump_schemas(&dp, pre) < 0 ||
	    dump_extensions(&dp, pre) < 0 || dump_extension_config(&dp, pre) < 0 ||
	    (PGOBJ_HAS(dp.present, PK_TYPE) && dump_types(&dp) < 0) ||
	    (PGOBJ_HAS(dp.present, PK_BASE_TYPE) && dump_base_types(&dp) < 0) ||
	    (PGOBJ_HAS(dp.present, PK_SEQUENCE) && dump_sequences(&dp) < 0) ||
	    (PGOBJ_HAS(dp.present, PK_FUNCTION) && dump_functions(&dp) < 0) ||
	    dump_relations(&dp) < 0 || dump_early_keys(&dp) < 0 ||
	    pgobj_pre(&objs) < 0 || load_dependencies(&dp) < 0 || emit_sorted(&dp, pre) < 0 ||
	    type_pre_data(&dp) < 0)
		goto out;
	sb_add(pre, dp.seqowned.buf, dp.seqowned.len);
	if (dump_large_objects(&dp, pre) < 0)
		goto out;

	/* post-data: typed entries (pg_archive.h), in the order that runs */
	sb_adds(post, "-- safe-migrate PostgreSQL snapshot: post-data\n");
	if (dump_post(&dp) < 0 ||
	    (PGOBJ_HAS(dp.present, PK_SEQUENCE) && dump_seq_positions(&dp) < 0))
		goto out;
	add_post_lines(&dp, "SEQUENCE SET", &dp.extseq);
	add_post_owners(&dp);
	if (dump_acls(&dp) < 0 || dump_comments(&dp) < 0 || dump_security_labels(&dp) < 0)
		goto out;
	/* REFRESH in dependency order (a view of a view after it) */
	for (size_t i = 0; i < dp.nrefresh; i++) {
		const struct pobj *mv = &dp.objs.v[dp.refresh[i]];

		sb_reset(&key);
		sb_addf(&key, "m:%u", mv->oid);
		add_post(&dp, "MATERIALIZED VIEW DATA", mv->name, mv->refresh, 0, key.buf, NULL);
	}
	/* policies, rules, publications, default privileges, event triggers */
	if (pgobj_post(&objs) < 0)
		goto out;
	post_keys_resolve(&dp.keys, &out->post_toc);
	/* the fixed order of kinds above, but where a dependency says otherwise */
	if (pga_toc_sort(&out->post_toc, post, &at) < 0) {
		err_set(err, ERR_FAIL, "cannot order post-data: a dependency cycle involves %s %s",
			out->post_toc.v[at].kind, out->post_toc.v[at].name);
		goto out;
	}
	ret = 0;
out:
	post_keys_release(&dp.keys);
	objset_release(&dp.objs);
	pgcat_owners_release(&dp.owners);
	sb_release(&dp.seqowned);
	free(dp.refresh);
	sb_release(&key);
	sb_release(&dp.extseq);
	return ret;
}

static int line_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void pgcat_fingerprint(const struct pgcat_dump *d, char hex[HASH_HEX_LEN + 1])
{
	struct strbuf all = STRBUF_INIT;
	struct hash_ctx h;
	char **lines = NULL, *p;
	size_t n = 0, alloc = 0, i;

	sb_add(&all, d->pre_data.buf, d->pre_data.len);
	sb_addch(&all, '\n');
	sb_add(&all, d->post_data.buf, d->post_data.len);
	for (p = all.buf; *p; ) {
		char *nl = strchr(p, '\n');

		if (nl)
			*nl = '\0';
		if (*p) {
			ALLOC_GROW(lines, n + 1, alloc);
			lines[n++] = p;
		}
		if (!nl)
			break;
		p = nl + 1;
	}
	if (n)
		qsort(lines, n, sizeof(*lines), line_cmp);
	hash_init(&h);
	for (i = 0; i < n; i++) {
		hash_update(&h, lines[i], strlen(lines[i]));
		hash_update(&h, "\n", 1);
	}
	hash_final_hex(&h, hex);
	hash_release(&h);
	free(lines);
	sb_release(&all);
}

void pgcat_dump_release(struct pgcat_dump *d)
{
	size_t i;

	sb_release(&d->pre_data);
	sb_release(&d->post_data);
	pga_toc_release(&d->post_toc);
	pga_toc_release(&d->pre_toc);
	for (i = 0; i < d->ntables; i++) {
		free(d->tables[i].schema);
		free(d->tables[i].name);
		free(d->tables[i].qualified);
		free(d->tables[i].columns);
		free(d->tables[i].filter);
	}
	free(d->tables);
	for (i = 0; i < d->nschemas; i++)
		free(d->schemas[i]);
	free(d->schemas);
	free(d->blobs);
	memset(d, 0, sizeof(*d));
	d->pre_data = (struct strbuf)STRBUF_INIT;
	d->post_data = (struct strbuf)STRBUF_INIT;
}
