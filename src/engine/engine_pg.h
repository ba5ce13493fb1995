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
int engine_pg_error(struct sm_error *err, PGconn *conn, const PGresult *res, const char *what);

#endif
