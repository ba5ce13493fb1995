/*
 * pg_archive: the layout of a PostgreSQL snapshot's archive, its one owner.
 * backup_pg.c writes it, restore_pg.c and restore_pg_parallel.c read it;
 * none of them spells an entry name or a toc field of its own.
 *
 *   pg/toc.json        the table of contents: format version, the client
 *                      encoding everything was read in, the schemas the
 *                      snapshot owns, per table its qualified name, COPY
 *                      column list, data entry and (version 3) the format
 *                      of its rows, and (version 2) the typed entries of
 *                      post-data ("post_data", below)
 *   pg/pre-data.sql    schemas, extensions, types, sequences, tables,
 *                      functions, views (run with an empty search_path);
 *                      the objects sorted on pg_depend are typed entries
 *                      too ("pre_data": kind, identity, owner, deps,
 *                      slice), which the restore does not need: it runs
 *                      the script whole
 *   pg/post-data.sql   constraints, indexes, triggers, setval, ownership,
 *                      grants, comments, materialized-view refresh
 *   data/NNNNNN.copy.* the rows of one table, as COPY ... TO STDOUT writes
 *                      them: text, or (the toc's "format": "binary") the
 *                      binary format's tuples without its header and
 *                      trailer (pg_copy.h)
 *
 * Like pg_dump's archive TOC, each post-data item is an entry: its kind
 * (pg_dump's names: "INDEX", "CONSTRAINT", "FK CONSTRAINT", "TRIGGER",
 * "ACL", "COMMENT", "POLICY", ...), its identity, its owner, the tables it
 * locks and in which mode, the entries it needs first (computed from
 * pg_depend by the backup, which orders the entries on them:
 * pga_toc_sort) and its SQL, a slice [offset, offset + length) of
 * pg/post-data.sql, which stays one script that runs in order.  The restore schedules from these
 * entries and never parses the SQL to find out what it is.
 *
 * Version 1 (safe-migrate before the typed toc) has no "post_data": such a
 * snapshot restores by running pg/post-data.sql as a whole, in order.
 */
#ifndef SM_PG_ARCHIVE_H
#define SM_PG_ARCHIVE_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "error.h"
#include "strbuf.h"

#define PGA_TOC_ENTRY "pg/toc.json"
#define PGA_PRE_ENTRY "pg/pre-data.sql"
#define PGA_POST_ENTRY "pg/post-data.sql"
/* Large object number i (0, 1, ... in OID order): its data, streamed in
 * chunks after every table's; the toc's "large_objects" maps each OID to
 * its entry. */
#define PGA_BLOB_ENTRY_FMT "pg/blobs/%06zu.bin"
/* The toc's format version this build writes (it reads 1 to 3). */
#define PGA_TOC_VERSION 3
/* A toc table's "format": PGA_FORMAT_BINARY when its rows are in COPY's
 * binary format (version 3), absent when they are text.  A reader refuses
 * any other value. */
#define PGA_TOC_FORMAT "format"
#define PGA_FORMAT_BINARY "binary"
/* toc.json's "data_by_table": true when each table's data chunks come
 * together, one table after the other (the one-connection backup), so a
 * reader that has moved past a table's chunks has all of its rows.  An
 * older snapshot, or one of backup --jobs (whose chunks interleave), has
 * no such key: its tables are complete only at the end of the data. */
#define PGA_TOC_DATA_BY_TABLE "data_by_table"

/*
 * toc.json's "encoding" (and the manifest extra's, under the same key):
 * the client encoding every text of the snapshot was read in (its SQL, its
 * text COPY rows, the text fields of its binary ones), which a restore sets
 * before it runs any of it, and the checks after a restore read the
 * restored database in.  "UTF8" for a database the server converts to
 * UTF8; for one it cannot convert (SQL_ASCII, whose bytes have no declared
 * meaning, and MULE_INTERNAL, which has no conversion to UTF8) the
 * database's own, its bytes as they are.  Absent from older snapshots:
 * UTF8.  A reader refuses any other value before any SQL runs.
 */
#define PGA_TOC_ENCODING "encoding"
#define PGA_ENCODING_UTF8 "UTF8"

/* The encoding obj (the toc, or the manifest's extra; may be NULL) says
 * its snapshot was read in, as a static string: PGA_ENCODING_UTF8 when it
 * says none, NULL when it names one no snapshot is read in. */
const char *pga_encoding(const cJSON *obj);

/* Table n's data entry name ("data/NNNNNN.copy") into out (reset first). */
void pga_data_entry(struct strbuf *out, size_t n);

/* PostgreSQL's table lock modes, weakest first (PGA_LOCK_NONE: the entry's
 * locks are not known, so it runs alone, in order). */
enum pga_lock {
	PGA_LOCK_NONE,
	PGA_LOCK_ACCESS_SHARE,
	PGA_LOCK_ROW_SHARE,
	PGA_LOCK_ROW_EXCLUSIVE,
	PGA_LOCK_SHARE_UPDATE_EXCLUSIVE,
	PGA_LOCK_SHARE,
	PGA_LOCK_SHARE_ROW_EXCLUSIVE,
	PGA_LOCK_EXCLUSIVE,
	PGA_LOCK_ACCESS_EXCLUSIVE,
};

/* "SHARE", "ACCESS EXCLUSIVE", ... ("" for PGA_LOCK_NONE). */
const char *pga_lock_name(enum pga_lock mode);
/* The mode named name (pga_lock_name's spelling), or -1. */
int pga_lock_parse(const char *name);
/* Do two sessions holding a and b on one table wait for each other?
 * (PostgreSQL's conflict table; PGA_LOCK_NONE conflicts with nothing.) */
int pga_locks_conflict(enum pga_lock a, enum pga_lock b);

/* At most this many tables an entry locks (a foreign key: two). */
#define PGA_MAX_TABLES 2

struct pga_entry {
	char *kind;            /* pg_dump's name of the kind */
	char *name;            /* the object, as the SQL names it */
	char *owner;           /* the object's owner (an OWNER entry: the role
				* it sets; an ACL entry: the one its grants
				* start from), or NULL */
	/* the tables it locks (a partition counts as its tree's root: ALTER
	 * TABLE recurses into partitions), qualified, all in mode lock */
	char *tables[PGA_MAX_TABLES];
	size_t ntables;
	enum pga_lock lock;
	size_t *deps;          /* indexes of earlier entries it needs */
	size_t ndeps, adeps;
	size_t offset, len;    /* its SQL in pg/post-data.sql */
	/* a primary key or unique constraint that can be built as a unique
	 * index (SHARE lock, alongside the table's other index builds) and
	 * then attached (ADD CONSTRAINT ... USING INDEX): the two statements,
	 * equivalent to the entry's SQL; NULL otherwise */
	char *index_sql, *attach_sql;
};

struct pga_toc {
	struct pga_entry *v;
	size_t n, alloc;
};

#define PGA_TOC_INIT { NULL, 0, 0 }

/*
 * Appends sql[0..len) to script and records it as a new entry of kind and
 * name (copied).  Returns the entry (borrowed: valid until the next add),
 * for the caller to fill in tables, lock, dependencies.
 */
struct pga_entry *pga_toc_add(struct pga_toc *t, struct strbuf *script, const char *kind,
			      const char *name, const char *sql, size_t len);
/* Records script[offset, offset + len), already written, as a new entry
 * of kind and name (copied); returns it as pga_toc_add does. */
struct pga_entry *pga_toc_add_slice(struct pga_toc *t, const char *kind, const char *name,
				    size_t offset, size_t len);
/* Adds table (copied) to e's locked tables; ignored past PGA_MAX_TABLES,
 * which makes the entry's locks unknown (lock = PGA_LOCK_NONE). */
void pga_entry_add_table(struct pga_entry *e, const char *table);
/* Records that e needs entry dep (an earlier one) first. */
void pga_entry_add_dep(struct pga_entry *e, size_t dep);
void pga_toc_release(struct pga_toc *t);

/*
 * Puts t's entries in an order that runs: each after the entries it needs
 * (dependencies may point forward before this), as pg_dump's TopoSort
 * does: the current order is kept but where a dependency says otherwise,
 * and an entry that must come earlier moves only as far as that (just
 * before the first entry that needs it).  The entries' SQL, slices of
 * script laid end to end from t->v[0].offset on (as pga_toc_add lays
 * them), is reordered along, and their offsets and dependencies follow.
 * Returns 0, or -1 when the dependencies have a cycle (t and script are
 * unchanged); *at is then an entry on the cycle.
 */
int pga_toc_sort(struct pga_toc *t, struct strbuf *script, size_t *at);

/* The toc's "post_data" array for t (caller owns). */
cJSON *pga_toc_json(const struct pga_toc *t);

/*
 * Reads toc's typed entries into out (empty for a version 1 toc).  The
 * archive is hostile: a slice outside the script_len bytes of post-data, a
 * dependency that is not an earlier entry, an unknown lock mode or a
 * missing field is ERR_DAMAGED.  On failure out is released.
 */
int pga_toc_parse(const cJSON *toc, size_t script_len, struct pga_toc *out, struct sm_error *err);
/* The same for the toc's list key ("post_data", "pre_data"). */
int pga_toc_parse_list(const cJSON *toc, const char *key, size_t script_len, struct pga_toc *out,
		       struct sm_error *err);

#endif
