/*
 * engine_pg: what the modules that speak libpq themselves (backup_pg's
 * COPY and catalog reads, restore_pg's loads) share with the PostgreSQL
 * engine, so that a server error reads and is classified the same way
 * everywhere.
 */
#ifndef SM_ENGINE_PG_H
#define SM_ENGINE_PG_H

#include <libpq-fe.h>

#include "error.h"

/*
 * Fills err (ERR_FAIL) from a failed libpq result, or from the connection
 * when res is NULL: "WHAT: message" with the server's severity prefix
 * removed (whatever its lc_messages language), and err->sqlstate.
 * Decisions about an error must use err->sqlstate, never the message text,
 * which is translated.  Returns -1.
 */
/*
 * The user's schemas: the one definition of them that every PostgreSQL
 * module uses (the snapshot, the restore, the safety checks and lint, the
 * engine's drop list, lock estimate and schema list), a subquery of
 * pg_namespace OIDs for "nsp IN " PG_USER_NSP.  Not the system schemas
 * (pg_catalog, information_schema, pg_toast, every session's pg_temp_N and
 * pg_toast_temp_N), and not a schema that an extension owns (CREATE
 * EXTENSION brings it back).  Its aliases (sm_un, sm_ux) do not capture
 * the outer query's.
 */
#define PG_USER_NSP                                                                         \
	"(SELECT sm_un.oid FROM pg_catalog.pg_namespace sm_un "                             \
	"WHERE sm_un.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') "      \
	"AND sm_un.nspname !~ '^pg_(toast_)?temp_' AND NOT EXISTS (SELECT 1 FROM "          \
	"pg_catalog.pg_depend sm_ux WHERE sm_ux.classid = 'pg_catalog.pg_namespace'::regclass " \
	"AND sm_ux.objid = sm_un.oid AND sm_ux.deptype = 'e'))"

int engine_pg_error(struct sm_error *err, PGconn *conn, const PGresult *res, const char *what);

/*
 * The 64-bit transaction id (what the txid_* functions take) of a catalog
 * row's 32-bit xmin, an SQL expression of the column ("c.xmin"); NULL for a
 * frozen or special xmin (< 3), older than any transaction.  It is the one
 * within 2^31 of the current snapshot's xmax, on either side (our own
 * transaction's ids, not yet completed, can be past xmax; wraparound
 * protection keeps every live xmin less than 2^31 old): with r = xmax +
 * 2^31, xid8 = r - ((r - xmin) mod 2^32).  Read inside one of our
 * transactions, a visible row whose xid8 is 'in progress' (txid_status)
 * can only be ours, savepoints' included: another session's uncommitted
 * rows are not visible.
 */
#define PG_XMIN_TXID_R \
	"(pg_catalog.txid_snapshot_xmax(pg_catalog.txid_current_snapshot()) + 2147483648)"
#define PG_XMIN_TXID(xmin)                                                                  \
	"(CASE WHEN " xmin "::text::bigint < 3 THEN NULL ELSE " PG_XMIN_TXID_R " - ((" \
	PG_XMIN_TXID_R " % 4294967296) - " xmin "::text::bigint + 4294967296) % 4294967296 END)"

/*
 * The client encoding every session of ours speaks to a database whose
 * encoding is server_encoding (the server's spelling, as the
 * server_encoding parameter reports it; NULL: unknown), as a static
 * string: UTF8, which the server converts to and from, except where it has
 * no conversion to UTF8 (SQL_ASCII, MULE_INTERNAL), whose bytes pass as
 * they are.  The engine's session (migration files are UTF-8) and the
 * snapshot's (which records it: pg_archive.h) both follow it.
 */
const char *engine_pg_client_encoding(const char *server_encoding);

#endif
