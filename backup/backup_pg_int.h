/*
 * backup_pg_int: what backup_pg.c (the snapshot's transaction, its entries
 * and the one-connection copy) and backup_pg_parallel.c (backup --jobs N)
 * share.  Internal to the backup library.
 */
#ifndef SM_BACKUP_PG_INT_H
#define SM_BACKUP_PG_INT_H

#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <signal.h>

#include "engine.h"
#include "error.h"
#include "hash.h"
#include "pg_copy.h"
#include "pgdump_catalog.h"
#include "snapshot.h"

/* The data entry of table number i (size_t) of the dump: its chunks are
 * "<entry>.NNNN". */
/* A ctid page range of a table: pages [from, to), to < 0 for "to the end". */
struct pgb_range {
	long long from, to;
};

/*
 * Starts the COPY TO STDOUT that reads t's rows (the snapshot's and the
 * checksum check's), only those of range if not NULL (t must then have a
 * column list and no filter); what names the failure.  0, or -1 with err
 * set (prefixed by the table's name).
 */
int pgb_start_copy(PGconn *conn, const struct pgcat_table *t, const struct pgb_range *range,
		   const char *what, struct sm_error *err);

/*
 * One message of table's COPY TO STDOUT, as pgcopy_out_row reads it: 1
 * for a row (*data and *len what to keep of it), 0 for the binary
 * trailer, -1 with err set when the data does not have the binary
 * format's shape.
 */
int pgb_copy_row(struct pgcopy_out *po, const char *table, const char **data, size_t *len,
		 struct sm_error *err);

/*
 * Copies the rows of every table of d into w over jobs (>= 2) connections
 * of their own, all on the snapshot of leader's transaction (open,
 * REPEATABLE READ, the tables locked: pg_take's), as chunk entries of
 * pga_data_entry()'s name.  Fills rows[i] and sums[i] (zeroed by the caller) with
 * table i's row count and content checksum (hash_sum_add over its COPY
 * rows: the one-connection backup's), and ranges (may be NULL) with
 * {qualified: number of ranges} for each table split into ctid ranges.
 * conninfo is what libpq gets (may hold a password, never printed),
 * redacted the printable form.  Stops with ERR_INTERRUPTED once
 * *interrupted is set (borrowed, may be NULL); any failure cancels the
 * workers' statements.  0, or -1 with err set.
 */
int pgb_copy_parallel(PGconn *leader, const char *conninfo, const char *redacted,
		      struct snap_writer *w, const struct pgcat_dump *d, int jobs,
		      volatile sig_atomic_t *interrupted, long long *rows,
		      unsigned char (*sums)[HASH_LEN], cJSON *ranges, struct sm_error *err);

#endif
