/*
 * restore_pg_blobs: loading a snapshot's large objects (the one-transaction
 * restore, its batched fallback and the parallel restore all call it).
 *
 * Pre-data creates every large object of the snapshot empty (lo_create,
 * after unlinking all of the target's); post-data sets their owners, grants
 * and comments.  Between the two, each large object's data entry (chunks
 * "pg/blobs/NNNNNN.bin.MMMM", mapped to its OID by toc.json's
 * "large_objects") is written into it with lo_write, one IO_BLOCK at a time,
 * as the reader hashes it: its checksum is verified with every other
 * entry's before anything is committed (in one transaction) or built upon.
 */
#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <libpq/libpq-fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_pg.h"
#include "restore_pg_int.h"
#include "xalloc.h"

#define IO_BLOCK ((size_t)256 << 10)

const cJSON *pgr_blob_of_chunk(const cJSON *toc, const char *name)
{
	const cJSON *b;

	cJSON_ArrayForEach(b, cJSON_GetObjectItemCaseSensitive(toc, "large_objects")) {
		const cJSON *entry = cJSON_GetObjectItemCaseSensitive(b, "entry");

		if (cJSON_IsString(entry) && snap_is_chunk_of(name, entry->valuestring, NULL))
			return b;
	}
	return NULL;
}

/* The large object's OID from its toc entry; 0 when it is not one. */
static unsigned blob_oid(const cJSON *blob)
{
	const cJSON *oid = cJSON_GetObjectItemCaseSensitive(blob, "oid");
	double v = cJSON_IsNumber(oid) ? oid->valuedouble : 0;

	return v >= 1 && v <= 4294967295.0 && v == (double)(unsigned)v ? (unsigned)v : 0;
}

/* Appends the current entry of r to the large object (open in fd). */
static int write_chunk(PGconn *conn, struct snap_reader *r, int fd, unsigned oid,
		       struct sm_error *err)
{
	char *buf = xmalloc(IO_BLOCK);
	int ret = -1;

	if (lo_lseek64(conn, fd, 0, SEEK_END) < 0) {
		pgr_error(err, conn, NULL, "cannot load large object");
		goto out;
	}
	for (;;) {
		size_t got;

		if (snap_reader_read(r, buf, IO_BLOCK, &got, err) < 0)
			goto out;
		if (!got)
			break;
		if (lo_write(conn, fd, buf, got) != (int)got) {
			pgr_error(err, conn, NULL, "cannot load large object");
			goto out;
		}
	}
	ret = 0;
out:
	if (ret < 0 && err->kind != ERR_DAMAGED)
		err_prefix(err, "large object %u", oid);
	free(buf);
	return ret;
}

int pgr_load_blob(PGconn *conn, struct snap_reader *r, const cJSON *blob, struct sm_error *err)
{
	unsigned oid = blob_oid(blob);
	/* the batched and the parallel restore run outside a transaction:
	 * a large object descriptor needs one */
	int own_tx = PQtransactionStatus(conn) == PQTRANS_IDLE;
	int fd = -1, ret = -1;

	if (!oid)
		return err_set(err, ERR_DAMAGED, "snapshot '%s' is damaged: a large object of its "
			       "toc has no valid OID", snap_reader_path(r));
	if (own_tx && pgr_run_sql(conn, "BEGIN", "cannot load large object", err) < 0)
		return -1;
	fd = lo_open(conn, oid, INV_WRITE);
	if (fd < 0) {
		pgr_error(err, conn, NULL, "cannot open large object");
		err_prefix(err, "large object %u", oid);
		goto out;
	}
	if (write_chunk(conn, r, fd, oid, err) < 0)
		goto out;
	ret = lo_close(conn, fd);
	fd = -1;
	if (ret < 0) {
		pgr_error(err, conn, NULL, "cannot load large object");
		err_prefix(err, "large object %u", oid);
		goto out;
	}
	ret = -1;
	if (own_tx && pgr_run_sql(conn, "COMMIT", "cannot load large object", err) < 0) {
		own_tx = 0;
		goto out;
	}
	own_tx = 0;
	ret = 0;
out:
	/* after a failure (damage found in the entry, say): the transaction
	 * is rolled back, but a descriptor left open would warn at its end */
	if (fd >= 0)
		(void)lo_close(conn, fd);
	if (own_tx) {
		PGresult *res = PQexec(conn, "ROLLBACK");

		PQclear(res);
	}
	return ret;
}

int pgr_check_blobs(PGconn *conn, const cJSON *manifest, const char *path, struct sm_error *err)
{
	const cJSON *extra = cJSON_GetObjectItemCaseSensitive(manifest, "extra");
	const cJSON *want = cJSON_GetObjectItemCaseSensitive(extra, "large_objects");
	PGresult *res;
	double have;
	int ret = 0;

	if (!cJSON_IsNumber(want))
		return 0;
	/* inside the restore's transaction, only the large objects it created:
	 * other sessions' committed since its unlink are not the snapshot's
	 * (they stay; counted, a good snapshot was called damaged).  Outside
	 * one (a batched or parallel restore into another database), all. */
	res = PQexec(conn, PQtransactionStatus(conn) == PQTRANS_INTRANS ?
		     "SELECT pg_catalog.count(*) FROM pg_catalog.pg_largeobject_metadata l WHERE "
		     "pg_catalog.txid_status(" PG_XMIN_TXID("l.xmin") ") = 'in progress'" :
		     "SELECT pg_catalog.count(*) FROM pg_catalog.pg_largeobject_metadata");
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		ret = pgr_error(err, conn, res, "cannot count the large objects");
		goto out;
	}
	have = strtod(PQgetvalue(res, 0, 0), NULL);
	if (have != want->valuedouble)
		ret = err_set(err, ERR_DAMAGED, "snapshot '%s' is damaged: %.0f large objects were "
			      "restored, the manifest says %.0f", path, have, want->valuedouble);
out:
	PQclear(res);
	return ret;
}
