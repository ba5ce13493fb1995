/*
 * engine_pg: the PostgreSQL backend of the engine interface (libpq).
 *
 * The connection string goes to libpq untouched (a postgresql:// URI or a
 * keyword/value string), so the PG* environment, ~/.pgpass, service files
 * and sslmode behave exactly as in psql.  Scripts are split into statements
 * by libpg_query, which embeds PostgreSQL's own parser: dollar quoting,
 * plpgsql bodies and nested comments are cut where the server would cut
 * them, and each statement is sent on its own so that an error names the
 * statement's line.  The migration lock is a session advisory lock, which
 * outlives the per-migration transactions and vanishes with the connection
 * if the process dies.  A script that changes the search_path has it reset
 * afterwards, so that each migration (and the version table's unqualified
 * name) starts from the session's default, as in a fresh psql session.
 *
 * No message built here may contain the password: the target is always
 * named by e->url.redacted, and libpq's own messages (which can echo parts
 * of the connection string) are scrubbed of every password we know of.
 */
#include <ctype.h>
#include <libpq-fe.h>
#include <pg_query.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "engine_pg.h"
#include "xalloc.h"

/* The advisory lock key: the bytes of "safe-mig" as a big-endian bigint.
 * pg_locks shows it as classid 0x73616665, objid 0x2d6d6967, objsubid 1. */
#define PG_LOCK_KEY "8314038971842521447"
#define PG_LOCK_CLASSID "1935763045"
#define PG_LOCK_OBJID "762145127"

#define PG_LOCK_POLL_MS 100

struct pg_impl {
	PGconn *conn;     /* first member: engine_native() returns it */
	PGcancel *cancel; /* prepared at open so interrupt() stays signal-safe */
	volatile sig_atomic_t interrupted;
	int locked;
	long statement_timeout_ms; /* set by set_timeouts (0: none) */
	struct pg_writes *writes; /* own row writes, once writes_mark started counting */
	int tx_failed;            /* a script failed in the open transaction */
};

static void writes_free(struct pg_writes *w);
static void writes_tx_start(struct engine *e);
static void writes_tx_end(struct engine *e);
static PGresult *exec_outside_tx(struct engine *e, const char *sql,
				 PGTransactionStatusType before);
static void writes_untracked(struct engine *e);

/* ---- messages ------------------------------------------------------------ */

/* Replaces every occurrence of secret in sb with "***". */
static void scrub_secret(struct strbuf *sb, const char *secret)
{
	struct strbuf out = STRBUF_INIT;
	size_t n = secret ? strlen(secret) : 0;
	const char *p, *hit;

	if (!n || !strstr(sb->buf, secret))
		return;
	for (p = sb->buf; (hit = strstr(p, secret)) != NULL; p = hit + n) {
		sb_add(&out, p, (size_t)(hit - p));
		sb_adds(&out, "***");
	}
	sb_adds(&out, p);
	sb_reset(sb);
	sb_add(sb, out.buf, out.len);
	sb_release(&out);
}

/* Appends a libpq message on one line, with every password we know of
 * (the connection string's, PGPASSWORD, the one libpq ended up using)
 * masked. */
static void add_libpq_message(struct strbuf *out, const char *conninfo, PGconn *conn,
			      const char *msg)
{
	struct strbuf sb = STRBUF_INIT;
	PQconninfoOption *opts = conninfo ? PQconninfoParse(conninfo, NULL) : NULL;

	/* one line: the server's own double spaces stay */
	sb_add_squeezed(&sb, msg, "\n\t\r");
	for (PQconninfoOption *o = opts; o && o->keyword; o++)
		if (!strcmp(o->keyword, "password"))
			scrub_secret(&sb, o->val);
	scrub_secret(&sb, getenv("PGPASSWORD"));
	if (conn)
		scrub_secret(&sb, PQpass(conn));
	/* a URL echoed back whole keeps its user:password@ form */
	{
		char *red = url_redact(sb.buf);
		sb_adds(out, red);
		free(red);
	}
	PQconninfoFree(opts);
	sb_release(&sb);
}

/* Fills err from a failed result: "ERROR:  message (SQLSTATE xxxxx)" plus
 * DETAIL and HINT lines, after prefix (may be ""). */
static int result_error(struct engine *e, const PGresult *res, const char *prefix,
			struct sm_error *err)
{
	struct pg_impl *pg = e->impl;
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *sev = res ? PQresultErrorField(res, PG_DIAG_SEVERITY) : NULL;
	const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
	const char *hint = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_HINT) : NULL;
	struct strbuf sb = STRBUF_INIT;
	enum err_kind kind = ERR_FAIL;

	sb_adds(&sb, prefix);
	if (primary) {
		sb_addf(&sb, "%s:  %s", sev ? sev : "ERROR", primary);
		if (state)
			sb_addf(&sb, " (SQLSTATE %s)", state);
		if (detail)
			sb_addf(&sb, "\nDETAIL:  %s", detail);
		if (hint)
			sb_addf(&sb, "\nHINT:  %s", hint);
	} else {
		/* no server error: the connection failed (libpq's own message) */
		const char *msg = res ? PQresultErrorMessage(res) : "";
		add_libpq_message(&sb, NULL, pg->conn, *msg ? msg : PQerrorMessage(pg->conn));
		/* said whatever libpq's message (translated) says */
		if (PQstatus(pg->conn) == CONNECTION_BAD)
			sb_adds(&sb, " (connection lost)");
	}
	sb_rtrim(&sb);
	if (state && !strcmp(state, "57014") && pg->interrupted)
		kind = ERR_INTERRUPTED;
	err_set(err, kind, "%s", sb.buf);
	snprintf(err->sqlstate, sizeof(err->sqlstate), "%s", state ? state : "");
	sb_release(&sb);
	return -1;
}

int engine_pg_error(struct sm_error *err, PGconn *conn, const PGresult *res, const char *what)
{
	const char *msg = res ? PQresultErrorMessage(res) : NULL;
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *sev = res ? PQresultErrorField(res, PG_DIAG_SEVERITY) : NULL;
	struct strbuf m = STRBUF_INIT;
	size_t n = sev ? strlen(sev) : 0;

	sb_adds(&m, msg && *msg ? msg : PQerrorMessage(conn));
	sb_rtrim(&m);
	/* "ERROR:  ", or "FEHLER:  " under lc_messages = de_DE */
	if (n && !strncmp(m.buf, sev, n) && !strncmp(m.buf + n, ":  ", 3))
		memmove(m.buf, m.buf + n + 3, m.len - n - 2);
	err_set(err, ERR_FAIL, "%s: %s", what, m.buf);
	if (state)
		snprintf(err->sqlstate, sizeof(err->sqlstate), "%s", state);
	sb_release(&m);
	return -1;
}

static int result_ok(const PGresult *res)
{
	switch (PQresultStatus(res)) {
	case PGRES_COMMAND_OK:
	case PGRES_TUPLES_OK:
	case PGRES_EMPTY_QUERY:
		return 1;
	default:
		return 0;
	}
}

/* Runs a statement with the simple protocol and consumes COPY data, which a
 * migration script cannot supply.  Returns the last result (caller clears). */
static PGresult *exec_simple(PGconn *conn, const char *sql)
{
	PGresult *res = PQexec(conn, sql);

	while (res) {
		ExecStatusType st = PQresultStatus(res);
		char *buf = NULL;

		if (st == PGRES_COPY_IN) {
			PQputCopyEnd(conn, "COPY FROM STDIN is not supported in a migration script");
		} else if (st == PGRES_COPY_OUT) {
			while (PQgetCopyData(conn, &buf, 0) > 0)
				PQfreemem(buf);
		} else {
			break;
		}
		PQclear(res);
		res = PQgetResult(conn);
		/* the final result of the COPY is followed by NULL */
		if (res && !(PQresultStatus(res) == PGRES_COPY_IN ||
			     PQresultStatus(res) == PGRES_COPY_OUT)) {
			PGresult *extra;
			while ((extra = PQgetResult(conn)) != NULL)
				PQclear(extra);
			break;
		}
	}
	return res;
}

/* ---- open / close ---------------------------------------------------------- */

static void ignore_notice(void *arg, const char *message)
{
	/* library code never prints; NOTICEs such as "table does not exist,
	 * skipping" are not errors */
	(void)arg;
	(void)message;
}

/*
 * After a failed connection: is it because the database does not exist?
 * The server's message is in its lc_messages language and libpq gives no
 * SQLSTATE for a failed connection, so this asks pg_database over a
 * connection to the maintenance database "postgres" (the same parameters,
 * the later dbname winning).  0 when that cannot be told.
 */
static int database_missing(const char *const *keys, const char *const *vals, int n,
			    const char *dbname)
{
	const char *k[8], *v[8];
	PGconn *conn;
	PGresult *res;
	int i, missing = 0;

	if (!dbname || !*dbname || !strcmp(dbname, "postgres") || n > 6)
		return 0;
	for (i = 0; i < n; i++) {
		k[i] = keys[i];
		v[i] = vals[i];
	}
	k[n] = "dbname";
	v[n] = "postgres";
	k[n + 1] = NULL;
	v[n + 1] = NULL;
	conn = PQconnectdbParams(k, v, 1);
	if (conn && PQstatus(conn) == CONNECTION_OK) {
		res = PQexecParams(conn, "SELECT NOT EXISTS (SELECT 1 FROM pg_catalog.pg_database "
				   "WHERE datname = $1)", 1, NULL, &dbname, NULL, NULL, 0);
		missing = PQresultStatus(res) == PGRES_TUPLES_OK && PQgetvalue(res, 0, 0)[0] == 't';
		PQclear(res);
	}
	PQfinish(conn);
	return missing;
}

const char *engine_pg_client_encoding(const char *server_encoding)
{
	static const char *const own[] = { "SQL_ASCII", "MULE_INTERNAL" };

	for (size_t i = 0; server_encoding && i < sizeof(own) / sizeof(*own); i++)
		if (!strcmp(server_encoding, own[i]))
			return own[i];
	return "UTF8";
}

/* Migration files are UTF-8 (the migration reader refuses any other), and
 * so are the canonical schema and what the checks print: the session
 * speaks engine_pg_client_encoding's, whatever the user's environment
 * says.  libpq's default is the database's own encoding (or
 * PGCLIENTENCODING), so a migration's 'café' went into a LATIN1 database
 * as 'cafÃ©'; a SQL_ASCII database read in UTF8 refuses its other bytes. */
static int pin_client_encoding(PGconn *conn, const struct db_url *url, struct sm_error *err)
{
	const char *client = PQparameterStatus(conn, "client_encoding");
	const char *want =
		engine_pg_client_encoding(PQparameterStatus(conn, "server_encoding"));
	struct strbuf sql = STRBUF_INIT;
	PGresult *res;
	int ok;

	if (client && !strcmp(client, want))
		return 0;
	sb_addf(&sql, "SET client_encoding = '%s'", want);
	res = PQexec(conn, sql.buf);
	sb_release(&sql);
	ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	PQclear(res);
	if (!ok)
		return err_set(err, ERR_FAIL, "cannot set the client encoding of '%s' to %s: %s",
			       url->redacted, want, PQerrorMessage(conn));
	return 0;
}

static int pg_open(struct engine *e, unsigned flags, struct sm_error *err)
{
	/* later keywords win: connect_timeout is only a default, while
	 * application_name marks our sessions for the lock-holder message */
	const char *keys[4], *vals[4];
	int n = 0;
	struct pg_impl *pg;
	struct strbuf sb = STRBUF_INIT;

	(void)flags; /* a PostgreSQL database is never created implicitly */
	if (!getenv("PGCONNECT_TIMEOUT")) {
		keys[n] = "connect_timeout";
		vals[n++] = "10";
	}
	keys[n] = "dbname";
	vals[n++] = e->url.conninfo;
	keys[n] = "application_name";
	vals[n++] = "safe-migrate";
	keys[n] = NULL;
	vals[n] = NULL;

	pg = xcalloc(1, sizeof(*pg));
	pg->conn = PQconnectdbParams(keys, vals, 1);
	if (!pg->conn || PQstatus(pg->conn) != CONNECTION_OK) {
		sb_addf(&sb, "cannot connect to '%s': ", e->url.redacted);
		add_libpq_message(&sb, e->url.conninfo, pg->conn,
				  pg->conn ? PQerrorMessage(pg->conn) : "out of memory");
		sb_rtrim(&sb);
		if (pg->conn && PQstatus(pg->conn) == CONNECTION_BAD &&
		    database_missing(keys, vals, n, PQdb(pg->conn)))
			sb_adds(&sb, " (safe-migrate never creates a PostgreSQL database: create it "
				"first, e.g. with createdb)");
		err_set(err, ERR_FAIL, "%s", sb.buf);
		sb_release(&sb);
		PQfinish(pg->conn);
		free(pg);
		return -1;
	}
	if (pin_client_encoding(pg->conn, &e->url, err) < 0) {
		PQfinish(pg->conn);
		free(pg);
		return -1;
	}
	PQsetNoticeProcessor(pg->conn, ignore_notice, NULL);
	pg->cancel = PQgetCancel(pg->conn);
	e->impl = pg;
	return 0;
}

static void pg_close(struct engine *e)
{
	struct pg_impl *pg = e->impl;

	if (!pg)
		return;
	e->impl = NULL;
	writes_free(pg->writes);
	PQfreeCancel(pg->cancel);
	PQfinish(pg->conn);
	free(pg);
}

/* ---- scripts --------------------------------------------------------------- */

static int simple(struct engine *e, const char *sql, struct sm_error *err);

/* Byte offset of the 1-based character position pos (as the parser counts). */
static size_t char_pos_to_offset(const char *text, int pos)
{
	size_t i = 0;
	int chars = 0;

	if (pos <= 1)
		return 0;
	while (text[i]) {
		if (((unsigned char)text[i] & 0xC0) != 0x80) {
			if (++chars == pos)
				return i;
		}
		i++;
	}
	return i;
}

static int split_error(const char *sql, const PgQueryError *pe, const struct exec_source *src,
		       struct sm_error *err)
{
	size_t off = char_pos_to_offset(sql, pe->cursorpos);
	int first = src ? src->first_line : 1;
	/* psql scripts are the usual source of migration files */
	const char *hint = sql[off] == '\\' ?
		"\nHINT:  psql meta-commands such as \\set and \\i are not SQL; a migration "
		"holds SQL statements only" : "";

	if (src && src->file)
		err_set(err, ERR_FAIL, "'%s', line %d: ERROR:  %s (SQLSTATE 42601)%s", src->file,
			engine_line_at(sql, off, first), pe->message, hint);
	else
		err_set(err, ERR_FAIL, "line %d: ERROR:  %s (SQLSTATE 42601)%s",
			engine_line_at(sql, off, first), pe->message, hint);
	snprintf(err->sqlstate, sizeof(err->sqlstate), "42601");
	return -1;
}

/* Calls cb for each non-empty statement of sql, with its offset. */
typedef int (*split_cb)(void *ud, size_t off, size_t len);

static int split_each(const char *sql, const struct exec_source *src, split_cb cb, void *ud,
		      struct sm_error *err)
{
	PgQuerySplitResult r = pg_query_split_with_parser(sql);
	int ret = 0;

	if (r.error) {
		ret = split_error(sql, r.error, src, err);
		goto out;
	}
	for (int i = 0; i < r.n_stmts; i++) {
		size_t loc = (size_t)r.stmts[i]->stmt_location;
		size_t len = (size_t)r.stmts[i]->stmt_len;
		size_t skip = engine_skip_space(sql + loc, len);

		if (skip >= len)
			continue;
		ret = cb(ud, loc + skip, len - skip);
		if (ret)
			break;
	}
out:
	pg_query_free_split_result(r);
	return ret;
}

/* Appends what an operator can do about the failures a migration run
 * typically meets, unless the server already gave a hint (res's hint
 * field, not the message text). */
static void add_migration_hint(const struct engine *e, const PGresult *res, struct sm_error *err)
{
	const char *hint = NULL;
	size_t n = strlen(err->msg);

	if ((res && PQresultErrorField(res, PG_DIAG_MESSAGE_HINT)) || err->kind == ERR_INTERRUPTED)
		return;
	if (!strcmp(err->sqlstate, "25001") && e->in_tx)
		hint = "this statement cannot run in a transaction: mark the migration "
		       "'-- migrate:up transaction:false' (and keep it to such statements)";
	else if (!strcmp(err->sqlstate, "55P03"))
		hint = "another session holds a lock the statement needs; retry when it is "
		       "done, or raise --statement-lock-timeout";
	else if (!strcmp(err->sqlstate, "57014") &&
		 ((const struct pg_impl *)e->impl)->statement_timeout_ms > 0)
		hint = "the statement ran longer than --statement-timeout allows";
	if (hint)
		snprintf(err->msg + n, sizeof(err->msg) - n, "\nHINT:  %s", hint);
}

struct exec_state {
	struct engine *e;
	const char *sql;
	const struct exec_source *src;
	struct sm_error *err;
	struct strbuf stmt;
};

static void where_prefix(struct strbuf *sb, const struct exec_state *st, size_t off)
{
	int first = st->src ? st->src->first_line : 1;
	int line = engine_line_at(st->sql, off, first);

	if (st->src && st->src->file)
		sb_addf(sb, "'%s', line %d: ", st->src->file, line);
	else
		sb_addf(sb, "line %d: ", line);
}

/* Whether the statement that just ran (res: its result) committed a change
 * outside a transaction of ours: one that succeeded with no transaction
 * open before or after it (it ran in one of its own), or one that ended
 * the script's own transaction other than by a rollback (a COMMIT of a
 * failed transaction reports ROLLBACK).  Session settings (SET, RESET,
 * SHOW) change nothing in the database. */
static int stmt_committed(PGconn *conn, PGresult *res, PGTransactionStatusType before)
{
	const char *tag = PQcmdStatus(res);

	if (!result_ok(res) || PQtransactionStatus(conn) != PQTRANS_IDLE)
		return 0;
	if (before != PQTRANS_IDLE)
		return strcmp(tag, "ROLLBACK") != 0;
	return strcmp(tag, "SET") && strcmp(tag, "RESET") && strcmp(tag, "SHOW");
}

static int exec_one(void *ud, size_t off, size_t len)
{
	struct exec_state *st = ud;
	struct pg_impl *pg = st->e->impl;
	struct strbuf where = STRBUF_INIT;
	PGTransactionStatusType before;
	PGresult *res;
	int ret = 0;

	where_prefix(&where, st, off);
	if (pg->interrupted) {
		err_set(st->err, ERR_INTERRUPTED, "%sinterrupted before this statement", where.buf);
		ret = -1;
		goto out;
	}
	if (st->e->in_tx && engine_is_tx_control(st->sql + off, len)) {
		size_t shown = strcspn(st->sql + off, "\n");
		err_set(st->err, ERR_FAIL,
			"%s'%.*s' would end the transaction the migration runs in; remove it, or "
			"mark the migration transaction:false", where.buf,
			(int)(shown < len ? shown : len), st->sql + off);
		st->err->sqlstate[0] = '\0';
		ret = -1;
		goto out;
	}
	sb_reset(&st->stmt);
	sb_add(&st->stmt, st->sql + off, len);
	if (st->e->observer)
		st->e->observer->before(st->e->observer->ud, st->e, st->sql + off, len, st->src,
					engine_line_at(st->sql, off, st->src ? st->src->first_line : 1));
	before = PQtransactionStatus(pg->conn);
	res = st->src && !st->e->in_tx && pg->writes ?
		      exec_outside_tx(st->e, st->stmt.buf, before) :
		      exec_simple(pg->conn, st->stmt.buf);
	if (!st->e->in_tx && stmt_committed(pg->conn, res, before)) {
		st->e->script_committed = 1;
		/* a migration's (safe-migrate's own statements are not
		 * another session's) */
		if (st->src)
			writes_untracked(st->e);
	}
	if (!result_ok(res)) {
		ret = result_error(st->e, res, where.buf, st->err);
		add_migration_hint(st->e, res, st->err);
	}
	PQclear(res);
	if (st->e->observer)
		st->e->observer->after(st->e->observer->ud, st->e, ret == 0);
out:
	sb_release(&where);
	return ret;
}

/* Case-insensitive: does text mention word? */
static int mentions(const char *text, const char *word)
{
	size_t n = strlen(word);

	for (; *text; text++)
		if (!strncasecmp(text, word, n))
			return 1;
	return 0;
}

static int pg_exec_script(struct engine *e, const char *sql, const struct exec_source *src,
			  struct sm_error *err)
{
	struct pg_impl *pg = e->impl;
	struct exec_state st = { e, sql, src, err, STRBUF_INIT };
	/* counting own writes: a failing script is rolled back to this
	 * savepoint, so that what it wrote before failing can still be counted
	 * (the server counts rows of aborted work too) */
	int counted = pg->writes && e->in_tx &&
		      simple(e, "SAVEPOINT safe_migrate_writes", err) == 0;
	int ret = split_each(sql, src, exec_one, &st, err);

	sb_release(&st.stmt);
	if (ret && counted) {
		PGresult *res = PQexec(pg->conn, "ROLLBACK TO SAVEPOINT safe_migrate_writes");

		PQclear(res);
		writes_tx_end(e);
		/* the transaction is usable again, but what it did must not be
		 * committed: it failed */
		pg->tx_failed = 1;
	}
	if (ret)
		return -1;
	/* a script that moves the search_path (pg_dump output sets it to '')
	 * must not move it for the next migration or for the version table's
	 * unqualified name: every script starts from the session's default */
	if (mentions(sql, "search_path"))
		return simple(e, "RESET search_path", err);
	return 0;
}

struct split_state {
	const char *sql;
	stmt_cb cb;
	void *ud;
	struct engine_lines lines;
};

static int split_one(void *ud, size_t off, size_t len)
{
	struct split_state *st = ud;

	return st->cb(st->ud, st->sql + off, len, engine_lines_at(&st->lines, off));
}

static int pg_split(const char *sql, stmt_cb cb, void *ud, struct sm_error *err)
{
	struct split_state st = { sql, cb, ud, { NULL, 0, 0, 0 } };

	engine_lines_init(&st.lines, sql, 1);

	return split_each(sql, NULL, split_one, &st, err);
}

/* ---- transactions and queries --------------------------------------------- */

static int simple(struct engine *e, const char *sql, struct sm_error *err)
{
	struct pg_impl *pg = e->impl;
	PGresult *res = PQexec(pg->conn, sql);
	int ret = 0;

	if (!result_ok(res)) {
		struct strbuf prefix = STRBUF_INIT;
		sb_addf(&prefix, "%s failed: ", sql);
		ret = result_error(e, res, prefix.buf, err);
		sb_release(&prefix);
	}
	PQclear(res);
	return ret;
}

static int pg_begin(struct engine *e, struct sm_error *err)
{
	if (simple(e, "BEGIN", err) < 0)
		return -1;
	e->in_tx = 1;
	((struct pg_impl *)e->impl)->tx_failed = 0;
	writes_tx_start(e);
	return 0;
}

static int pg_commit(struct engine *e, struct sm_error *err)
{
	struct pg_impl *pg = e->impl;
	PGresult *res;
	int ret = 0;

	if (PQtransactionStatus(pg->conn) == PQTRANS_INERROR || pg->tx_failed)
		return err_set(err, ERR_FAIL, "cannot commit: the transaction was aborted by an "
			       "earlier error");
	writes_tx_end(e);
	res = PQexec(pg->conn, "COMMIT");
	if (!result_ok(res)) {
		ret = result_error(e, res, "COMMIT failed: ", err);
		if (PQstatus(pg->conn) == CONNECTION_BAD) {
			size_t n = strlen(err->msg);
			snprintf(err->msg + n, sizeof(err->msg) - n, "; the connection was lost "
				 "during COMMIT, so whether it took effect is unknown: check the "
				 "version table");
		}
	}
	else if (!strcmp(PQcmdStatus(res), "ROLLBACK"))
		ret = err_set(err, ERR_FAIL, "COMMIT failed: the server rolled the transaction back");
	PQclear(res);
	if (ret == 0)
		e->in_tx = 0;
	return ret;
}

static int pg_rollback(struct engine *e, struct sm_error *err)
{
	struct pg_impl *pg = e->impl;

	if (e->in_tx)
		writes_tx_end(e);
	e->in_tx = 0;
	if (PQstatus(pg->conn) != CONNECTION_OK ||
	    PQtransactionStatus(pg->conn) == PQTRANS_IDLE)
		return 0; /* nothing to roll back (or the server already did) */
	return simple(e, "ROLLBACK", err);
}

static int pg_tx_open(struct engine *e)
{
	const struct pg_impl *pg = e->impl;

	return PQstatus(pg->conn) == CONNECTION_OK &&
	       PQtransactionStatus(pg->conn) != PQTRANS_IDLE;
}

/* A session's locks are its transaction's, but for advisory ones taken
 * at session level: ours is the migration lock, and a script's own stay
 * its business. */
static int pg_release_locks(struct engine *e, struct sm_error *err)
{
	return pg_rollback(e, err);
}

static int pg_query(struct engine *e, const char *sql, int nparams, const char *const *params,
		    struct eng_rows *rows, struct sm_error *err)
{
	struct pg_impl *pg = e->impl;
	PGresult *res;
	size_t nr, nc;

	if (rows)
		memset(rows, 0, sizeof(*rows));
	res = PQexecParams(pg->conn, sql, nparams, NULL, params, NULL, NULL, 0);
	if (!result_ok(res)) {
		result_error(e, res, "", err);
		PQclear(res);
		return -1;
	}
	if (rows) {
		nr = PQresultStatus(res) == PGRES_TUPLES_OK ? (size_t)PQntuples(res) : 0;
		nc = (size_t)PQnfields(res);
		rows->nrows = nr;
		rows->ncols = nc;
		rows->colnames = xcalloc(nc ? nc : 1, sizeof(char *));
		rows->cells = xcalloc(nr * nc > 0 ? nr * nc : 1, sizeof(char *));
		for (size_t c = 0; c < nc; c++)
			rows->colnames[c] = xstrdup(PQfname(res, (int)c));
		for (size_t r = 0; r < nr; r++)
			for (size_t c = 0; c < nc; c++)
				if (!PQgetisnull(res, (int)r, (int)c))
					rows->cells[r * nc + c] =
						xstrdup(PQgetvalue(res, (int)r, (int)c));
	}
	PQclear(res);
	return 0;
}

/* ---- the migration lock ------------------------------------------------------ */

static long ms_since(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000;
}

/* Appends who holds the lock ("pid 123, application 'safe-migrate', user
 * 'app', since ...") if the server lets us see it. */
static void describe_holder(struct engine *e, struct strbuf *out)
{
	struct eng_rows rows = ENG_ROWS_INIT;
	struct sm_error ignored = SM_ERROR_INIT;
	const char *sql =
		"SELECT l.pid::text, a.application_name, a.usename::text, "
		"to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
		"host(a.client_addr) "
		"FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
		"WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
		"AND l.classid = " PG_LOCK_CLASSID " AND l.objid = " PG_LOCK_OBJID " "
		"AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())";
	const char *v;

	if (pg_query(e, sql, 0, NULL, &rows, &ignored) < 0 || !rows.nrows) {
		rows_release(&rows);
		return;
	}
	sb_addf(out, " (held by pid %s", rows_get(&rows, 0, 0));
	if ((v = rows_get(&rows, 0, 1)) && *v)
		sb_addf(out, ", application '%s'", v);
	if ((v = rows_get(&rows, 0, 2)) && *v)
		sb_addf(out, ", user '%s'", v);
	if ((v = rows_get(&rows, 0, 4)) && *v)
		sb_addf(out, ", from %s", v);
	if ((v = rows_get(&rows, 0, 3)) && *v)
		sb_addf(out, ", connected since %s", v);
	sb_addch(out, ')');
	rows_release(&rows);
}

static int pg_lock(struct engine *e, long timeout_ms, struct sm_error *err)
{
	struct pg_impl *pg = e->impl;
	struct timespec start;

	if (pg->locked)
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		char *got = NULL;
		long waited;

		if (engine_scalar(e, "SELECT pg_try_advisory_lock(" PG_LOCK_KEY ")", 0, NULL, &got,
				  err) < 0)
			return err_prefix(err, "cannot take the migration lock on '%s'",
					  e->url.redacted);
		pg->locked = got && !strcmp(got, "t");
		free(got);
		if (pg->locked)
			return 0;
		if (pg->interrupted)
			return err_set(err, ERR_INTERRUPTED,
				       "interrupted while waiting for the migration lock");
		waited = ms_since(&start);
		if (waited >= timeout_ms) {
			struct strbuf sb = STRBUF_INIT;
			sb_addf(&sb, "another migration is running on '%s'", e->url.redacted);
			describe_holder(e, &sb);
			sb_addf(&sb, "; gave up waiting for its lock after %ld ms (see --lock-timeout)",
				timeout_ms);
			err_set(err, ERR_LOCKED, "%s", sb.buf);
			sb_release(&sb);
			return -1;
		}
		{
			long left = timeout_ms - waited;
			usleep((useconds_t)(left < PG_LOCK_POLL_MS ? left : PG_LOCK_POLL_MS) * 1000);
		}
	}
}

static void pg_unlock(struct engine *e)
{
	struct pg_impl *pg = e->impl;
	PGresult *res;

	if (!pg || !pg->locked)
		return;
	pg->locked = 0;
	if (PQstatus(pg->conn) != CONNECTION_OK)
		return; /* the server released it with the session */
	if (PQtransactionStatus(pg->conn) == PQTRANS_INERROR) {
		res = PQexec(pg->conn, "ROLLBACK");
		PQclear(res);
	}
	res = PQexec(pg->conn, "SELECT pg_advisory_unlock(" PG_LOCK_KEY ")");
	PQclear(res);
}

/* ---- settings and the rest --------------------------------------------------- */

static int pg_set_timeouts(struct engine *e, long lock_timeout_ms, long statement_timeout_ms,
			   struct sm_error *err)
{
	struct strbuf sql = STRBUF_INIT;
	int ret = 0;

	if (lock_timeout_ms > 0) {
		sb_addf(&sql, "SET lock_timeout = '%ldms'", lock_timeout_ms);
		ret = simple(e, sql.buf, err);
	}
	sb_reset(&sql);
	if (!ret && statement_timeout_ms > 0) {
		sb_addf(&sql, "SET statement_timeout = '%ldms'", statement_timeout_ms);
		ret = simple(e, sql.buf, err);
		if (!ret)
			((struct pg_impl *)e->impl)->statement_timeout_ms = statement_timeout_ms;
	}
	sb_release(&sql);
	return ret;
}

static void pg_interrupt(struct engine *e)
{
	/* runs in a signal handler: PQcancel is documented as signal-safe and
	 * nothing else here allocates */
	struct pg_impl *pg = e->impl;
	char errbuf[256];

	if (!pg)
		return;
	pg->interrupted = 1;
	if (pg->cancel)
		PQcancel(pg->cancel, errbuf, (int)sizeof(errbuf));
}

static int pg_server_version(struct engine *e, struct strbuf *out, struct sm_error *err)
{
	struct pg_impl *pg = e->impl;
	const char *v = PQparameterStatus(pg->conn, "server_version");
	int num = PQserverVersion(pg->conn);

	(void)err;
	if (v) /* "15.4 (Debian 15.4-1.pgdg120+1)": keep the number */
		sb_addf(out, "PostgreSQL %.*s", (int)strcspn(v, " "), v);
	else if (num >= 100000)
		sb_addf(out, "PostgreSQL %d.%d", num / 10000, num % 10000);
	else
		sb_addf(out, "PostgreSQL %d.%d.%d", num / 10000, num / 100 % 100, num % 100);
	return 0;
}

static void pg_quote_literal(struct strbuf *out, const char *s)
{
	/* E'' makes backslashes mean the same whatever
	 * standard_conforming_strings says */
	int esc = strchr(s, '\\') != NULL;

	if (esc)
		sb_addch(out, 'E');
	sb_addch(out, '\'');
	for (const char *c = s; *c; c++) {
		if (*c == '\'' || (esc && *c == '\\'))
			sb_addch(out, *c);
		sb_addch(out, *c);
	}
	sb_addch(out, '\'');
}

static int pg_table_exists(struct engine *e, const char *name, int *exists, struct sm_error *err)
{
	/* an unqualified name is one identifier (case kept) looked up on the
	 * search_path; "schema.table" is parsed as a qualified name */
	const char *sql = strchr(name, '.') ?
		"SELECT count(*) FROM pg_class WHERE oid = to_regclass($1) "
		"AND relkind IN ('r','p','v','m','f')" :
		"SELECT count(*) FROM pg_class WHERE oid = to_regclass(quote_ident($1)) "
		"AND relkind IN ('r','p','v','m','f')";
	const char *params[] = { name };
	char *v = NULL;

	if (engine_scalar(e, sql, 1, params, &v, err) < 0)
		return -1;
	*exists = v && strcmp(v, "0") != 0;
	free(v);
	return 0;
}

/* ---- other sessions' writes, locks and the restore's needs --------------- */

/*
 * Own writes are told from other sessions' by the server's per-table
 * counters (n_tup_ins + n_tup_upd + n_tup_del).  The shared counters
 * (pg_stat_user_tables) hold every session's flushed counts; this
 * connection's own are read inside each of its transactions from
 * pg_stat_xact_user_tables, at the start and at the end: nothing is flushed
 * within a transaction, so the difference is exactly that transaction's.
 * Other sessions flush their counts when idle, at most once a second (and
 * an idle one after up to 10 s), so writes_since looks twice, a second
 * apart.  Writes outside a transaction of ours (transaction:false) count as
 * another session's: the error is on the side of keeping data.  Kept out:
 * safe-migrate's own tables (the run's mark goes in outside our
 * transactions, after the mark of the counters).
 */
#define WRITES_SQL(view)                                                                 \
	"SELECT relid::text, (n_tup_ins + n_tup_upd + n_tup_del)::text, "                   \
	"pg_catalog.format('%I.%I', schemaname, relname) FROM pg_catalog." view               \
	" WHERE relname NOT LIKE 'safe\\_migrate\\_%'"

/*
 * A table the run drops takes its counters with it, and the restore brings
 * it back without what other sessions wrote into it after the mark.  So at
 * the end of each of our transactions (before COMMIT), a table whose
 * counters were there at its start and are gone is one it dropped: its
 * shared counters, still readable by OID until the drop commits, are read
 * after waiting for other sessions' counts to come in.  Their writes are
 * shared + pre - mark - own: the shared counters hold every session's
 * flushed counts, and this connection's not yet flushed ones are in the
 * transaction's counters at its start (pre; pg_stat_xact_* include them).
 */
#define DROPPED_SQL                                                                      \
	"SELECT (pg_catalog.pg_stat_get_tuples_inserted($1::oid) + "                        \
	"pg_catalog.pg_stat_get_tuples_updated($1::oid) + "                                  \
	"pg_catalog.pg_stat_get_tuples_deleted($1::oid))::text"

/*
 * The counters say nothing when they are not kept (track_counts off) or
 * were reset since the mark (pg_stat_reset(), or one table's: both set the
 * database's stats_reset): a write before the reset is gone from them.  The
 * mark records this "state" ("off", or when the counters were last reset),
 * and writes_since reports unknown writes ("*") when it was off or is no
 * longer the same, or when a table's counter went down.  Another session
 * that turns track_counts off for itself only (SET, superusers) cannot be
 * seen.
 */
#define STATS_STATE_SQL                                                                  \
	"SELECT CASE WHEN pg_catalog.current_setting('track_counts')::bool THEN "           \
	"COALESCE((SELECT d.stats_reset::text FROM pg_catalog.pg_stat_database d WHERE "    \
	"d.datname = pg_catalog.current_database()), 'never') ELSE 'off' END"

/*
 * Definitions other sessions created or changed: the counters say nothing
 * of a table another session created (or dropped and created again, or
 * TRUNCATEd, or ALTERed), and an in-place restore drops what the snapshot
 * does not have.  A catalog row's xmin says which transaction wrote it: one
 * that is not visible in the snapshot taken at the mark came after it, and
 * it is the run's own when its transaction was one of ours.  Ours are read
 * at the end of each of our transactions, from the inside: a visible row
 * whose transaction is still in progress can only be our own (another
 * session's uncommitted rows are not visible), and that covers the rows our
 * savepoints wrote, whose xmin is a subtransaction's.  An object is
 * "class:oid:xmin", so that another session's later change to one of ours
 * is its own.  Kept out: safe-migrate's own tables (safe_migrate_*), and
 * what comes with a table (its row type, array type and TOAST table).
 *
 * A large object another session created is a definition too ("large
 * object OID"): the restore unlinks every large object and creates the
 * snapshot's.  Writes into an existing large object's data change no row
 * that an ordinary user can read (pg_largeobject needs superuser): not seen.
 *
 * xmin is 32 bits; PG_XMIN_TXID rebuilds the 64-bit form that the txid
 * functions take.  An xmin frozen or special is older than any mark.
 */
#define DEFS_OBJECTS_SQL                                                                    \
	"SELECT 'c' AS cls, c.oid, c.xmin, CASE c.relkind WHEN 'i' THEN 'index' "           \
	"WHEN 'I' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 'v' THEN 'view' WHEN 'm' THEN " \
	"'materialized view' WHEN 'f' THEN 'foreign table' ELSE 'table' END || ' ' || "     \
	"pg_catalog.format('%I.%I', n.nspname, c.relname) AS what FROM pg_catalog.pg_class c " \
	"JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.oid IN "          \
	PG_USER_NSP " AND c.relkind NOT IN ('t', 'c') AND "                                 \
	"c.relname NOT LIKE 'safe\\_migrate\\_%' "                                           \
	"UNION ALL SELECT 'p', p.oid, p.xmin, 'function ' || pg_catalog.format('%I.%I(%s)', " \
	"n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)) FROM "  \
	"pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "     \
	"WHERE n.oid IN " PG_USER_NSP " "                                                   \
	"UNION ALL SELECT 't', t.oid, t.xmin, 'type ' || pg_catalog.format('%I.%I', "         \
	"n.nspname, t.typname) FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON " \
	"n.oid = t.typnamespace WHERE n.oid IN " PG_USER_NSP " AND (t.typtype IN ('d', 'e', " \
	"'r', 'm') OR (t.typtype = 'c' AND EXISTS (SELECT 1 FROM pg_catalog.pg_class tc "    \
	"WHERE tc.oid = t.typrelid AND tc.relkind = 'c'))) "                                 \
	"UNION ALL SELECT 'n', n.oid, n.xmin, 'schema ' || pg_catalog.quote_ident(n.nspname) " \
	"FROM pg_catalog.pg_namespace n WHERE n.oid IN " PG_USER_NSP " "                     \
	"UNION ALL SELECT 'l', l.oid, l.xmin, 'large object ' || l.oid FROM "                \
	"pg_catalog.pg_largeobject_metadata l"

/* The objects written after the mark's snapshot ($1), with their 64-bit
 * transaction id. */
#define DEFS_SINCE_SQL                                                                      \
	"WITH o AS (" DEFS_OBJECTS_SQL "), w AS (SELECT o.cls, o.oid, o.xmin, o.what, "        \
	PG_XMIN_TXID("o.xmin") " AS xid FROM o) SELECT w.cls || ':' || w.oid || ':' || "       \
	"w.xmin AS key, w.what, w.xid FROM w WHERE w.xid IS NOT NULL AND NOT "                \
	"pg_catalog.txid_visible_in_snapshot(w.xid, $1::pg_catalog.txid_snapshot)"

/* Ours, read inside one of our transactions. */
static const char defs_own_sql[] =
	"SELECT d.key FROM (" DEFS_SINCE_SQL ") d WHERE "
	"pg_catalog.txid_status(d.xid) = 'in progress'";

/* Other sessions': $2 is ours, a text[] of keys. */
static const char defs_theirs_sql[] =
	"SELECT d.what FROM (" DEFS_SINCE_SQL ") d WHERE d.key <> ALL ($2::text[]) "
	"ORDER BY d.what COLLATE \"C\"";

/*
 * What outside the schemas (see pg_outside_state) a catalog row's xmin can
 * tell the writer of: roles, memberships, role and database settings, and
 * system functions' properties; a row each: x (the line, "OBJECT: STATE"),
 * cls, id (cls:id is the object) and xmin.  A role's row (pg_authid) is readable by
 * superusers only; others read pg_roles, whose rows carry no xmin.  Its
 * password is never read, only whether it has one.  pg_* roles are the
 * server's own and cannot be altered.
 *
 * System functions: those whose row was written after template0 was made
 * (initdb's last step), that is, changed since initdb (raw xmins compared,
 * as VACUUM FREEZE keeps them); an extension's are the extension's.
 */
#define OUTSIDE_KEYED_SQL(roles, role_xmin)                                                   \
	"SELECT 'role ' || pg_catalog.quote_ident(r.rolname) || ': ' || pg_catalog.concat_ws("  \
	"', ', CASE WHEN r.rolsuper THEN 'superuser' END, CASE WHEN r.rolcanlogin THEN "        \
	"'login' ELSE 'nologin' END, CASE WHEN r.rolcreatedb THEN 'createdb' END, CASE WHEN "   \
	"r.rolcreaterole THEN 'createrole' END, CASE WHEN r.rolreplication THEN 'replication' " \
	"END, CASE WHEN r.rolbypassrls THEN 'bypassrls' END, CASE WHEN NOT r.rolinherit THEN "  \
	"'noinherit' END, 'connection limit ' || NULLIF(r.rolconnlimit, -1), CASE WHEN "       \
	"r.rolpassword IS NOT NULL THEN 'password set' END, 'valid until ' || "                \
	"pg_catalog.to_char(r.rolvaliduntil AT TIME ZONE 'UTC', "                              \
	"'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')) AS x, 'a' AS cls, r.oid::text AS id, " role_xmin  \
	" AS xmin FROM " roles " r WHERE r.rolname !~ '^pg_' "                                  \
	"UNION ALL SELECT 'role ' || m.member::pg_catalog.regrole::text || ' member of ' || "  \
	"m.roleid::pg_catalog.regrole::text || CASE WHEN m.admin_option THEN "                 \
	"': admin option' ELSE ': no admin option' END, 'm', m.roleid || ':' || m.member, "    \
	"m.xmin "                                                                               \
	"FROM pg_catalog.pg_auth_members m "                                                    \
	"UNION ALL SELECT CASE WHEN s.setdatabase = d.oid THEN 'database setting for ' || "   \
	"CASE WHEN s.setrole = 0 THEN 'every role' ELSE s.setrole::pg_catalog.regrole::text "  \
	"END ELSE 'role setting for ' || s.setrole::pg_catalog.regrole::text || CASE WHEN "    \
	"s.setdatabase = 0 THEN ' in every database' ELSE ' in database ' || "                 \
	"coalesce(pg_catalog.quote_ident(o.datname), s.setdatabase::text) END END || ': ' || " \
	"pg_catalog.array_to_string(s.setconfig, ', '), 's', s.setdatabase || ':' || "         \
	"s.setrole, s.xmin FROM pg_catalog.pg_db_role_setting s CROSS JOIN (SELECT oid FROM "  \
	"pg_catalog.pg_database WHERE datname = pg_catalog.current_database()) d LEFT JOIN "   \
	"pg_catalog.pg_database o ON o.oid = s.setdatabase WHERE s.setdatabase = d.oid OR "    \
	"s.setrole <> 0 "                                                                       \
	"UNION ALL SELECT 'function pg_catalog.' || pg_catalog.quote_ident(p.proname) || '(' " \
	"|| pg_catalog.pg_get_function_identity_arguments(p.oid) || ') properties: ' || "      \
	"pg_catalog.concat_ws(', ', CASE p.provolatile WHEN 'i' THEN 'immutable' WHEN 's' "    \
	"THEN 'stable' ELSE 'volatile' END, CASE WHEN p.proisstrict THEN 'strict' END, CASE "  \
	"p.proparallel WHEN 's' THEN 'parallel safe' WHEN 'r' THEN 'parallel restricted' "     \
	"ELSE 'parallel unsafe' END, CASE WHEN p.prosecdef THEN 'security definer' END, CASE " \
	"WHEN p.proleakproof THEN 'leakproof' END, 'cost ' || p.procost, 'rows ' || "          \
	"NULLIF(p.prorows, 0), 'owner ' || p.proowner::pg_catalog.regrole::text, 'set ' || "   \
	"pg_catalog.array_to_string(p.proconfig, ', ')), 'p', p.oid::text, p.xmin "            \
	"FROM pg_catalog.pg_proc p WHERE p.pronamespace = "                                    \
	"'pg_catalog'::pg_catalog.regnamespace AND p.xmin::text::bigint > coalesce((SELECT "   \
	"t.xmin::text::bigint FROM pg_catalog.pg_database t WHERE t.datname = 'template0'), "  \
	"2) AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend x WHERE x.classid = "           \
	"'pg_catalog.pg_proc'::pg_catalog.regclass AND x.objid = p.oid AND x.deptype = 'e')"

/* With each row's 64-bit transaction id (see PG_XMIN_TXID: a frozen row's
 * raw xmin from an older epoch may come out in the future). */
#define OUTSIDE_XID_SQL(roles, role_xmin)                                                     \
	"SELECT k.*, " PG_XMIN_TXID("k.xmin") " AS xid FROM (" OUTSIDE_KEYED_SQL(roles,       \
	role_xmin) ") k"

/* The rows the open transaction wrote: read inside it, a visible row whose
 * transaction is in progress is ours, savepoints' included (their ids come
 * after the transaction's own, and may be past the snapshot's xmax).
 * txid_status fails on an id in the future: only ids near ours are asked
 * about (CASE keeps that order). */
#define OUTSIDE_OWN_SQL(roles, role_xmin)                                                     \
	"SELECT k.cls || ':' || k.id || ':' || k.xmin FROM (" OUTSIDE_XID_SQL(roles, role_xmin) \
	") k WHERE CASE WHEN k.xid >= pg_catalog.txid_current_if_assigned() AND k.xid < "       \
	"pg_catalog.txid_snapshot_xmax(pg_catalog.txid_current_snapshot()) + 1048576 THEN "    \
	"pg_catalog.txid_status(k.xid) = 'in progress' END"

static const char outside_own_authid_sql[] =
	OUTSIDE_OWN_SQL("pg_catalog.pg_authid", "r.xmin");
static const char outside_own_roles_sql[] =
	OUTSIDE_OWN_SQL("pg_catalog.pg_roles", "NULL::pg_catalog.xid");

/* Whether this session may read pg_authid (superusers; a role given
 * SELECT on it). */
static int authid_readable(struct engine *e)
{
	struct sm_error ignored = SM_ERROR_INIT;
	char *v = NULL;
	int yes = engine_scalar(e, "SELECT pg_catalog.has_table_privilege("
				"'pg_catalog.pg_authid', 'SELECT')", 0, NULL, &v, &ignored) == 0 &&
		  v && !strcmp(v, "t");

	free(v);
	return yes;
}

#define WRITES_FLUSH_WAIT_MS 1100
#define USER_SCHEMA_FILTER "oid IN " PG_USER_NSP

struct pg_count {
	char *oid;
	long long rows;
	char *name; /* "schema.table", when the read gave it */
};

struct pg_counts {
	struct pg_count *v;
	size_t n, alloc;
};

struct pg_writes {
	struct pg_counts own; /* rows written by this connection's transactions */
	struct pg_counts pre; /* the open transaction's counters at its start */
	int have_pre;
	char *snapshot;       /* txid_current_snapshot() at the mark, or NULL */
	struct strbuf own_defs; /* our transactions' catalog rows: "{key,key,...}" */
	/* the rows they wrote outside the schemas (OUTSIDE_KEYED_SQL), the same way */
	struct strbuf own_outside;
	int untracked; /* a statement committed outside a transaction of ours */
	struct pg_counts at_mark; /* the shared counters at the mark */
	struct strbuf dropped; /* theirs in tables we dropped (DROPPED_SQL) */
};

static struct pg_count *counts_add(struct pg_counts *c, const char *oid, long long rows)
{
	for (size_t i = 0; i < c->n; i++) {
		if (!strcmp(c->v[i].oid, oid)) {
			c->v[i].rows += rows;
			return &c->v[i];
		}
	}
	ALLOC_GROW(c->v, c->n + 1, c->alloc);
	c->v[c->n].oid = xstrdup(oid);
	c->v[c->n].name = NULL;
	c->v[c->n].rows = rows;
	return &c->v[c->n++];
}

static const struct pg_count *counts_find(const struct pg_counts *c, const char *oid)
{
	for (size_t i = 0; i < c->n; i++)
		if (!strcmp(c->v[i].oid, oid))
			return &c->v[i];
	return NULL;
}

static long long counts_get(const struct pg_counts *c, const char *oid)
{
	const struct pg_count *x = counts_find(c, oid);

	return x ? x->rows : 0;
}

static void counts_release(struct pg_counts *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->v[i].oid);
		free(c->v[i].name);
	}
	free(c->v);
	memset(c, 0, sizeof(*c));
}

static void writes_free(struct pg_writes *w)
{
	if (!w)
		return;
	counts_release(&w->own);
	counts_release(&w->pre);
	counts_release(&w->at_mark);
	free(w->snapshot);
	sb_release(&w->own_defs);
	sb_release(&w->own_outside);
	sb_release(&w->dropped);
	free(w);
}

/* Adds sign * each table's counter from sql to c. */
static int counts_read(struct engine *e, const char *sql, struct pg_counts *c, int sign,
		       struct sm_error *err)
{
	struct eng_rows rows = ENG_ROWS_INIT;

	if (pg_query(e, sql, 0, NULL, &rows, err) < 0)
		return -1;
	for (size_t i = 0; i < rows.nrows; i++) {
		struct pg_count *x = counts_add(c, rows_get(&rows, i, 0),
						sign * strtoll(rows_get(&rows, i, 1), NULL, 10));

		if (rows.ncols > 2 && !x->name)
			x->name = xstrdup(rows_get(&rows, i, 2));
	}
	rows_release(&rows);
	return 0;
}

/* Adds the keys sql gives (one per row, holding no quote, comma or brace)
 * to keys, an array literal "{key,key,...}".  Run inside the open
 * transaction.  Not known (an error): those rows count as another
 * session's, which saves a failed state that was not needed, or names a
 * change the run made as possibly another session's, never loses one. */
static int own_keys_read(struct engine *e, const char *sql, int nparams,
			 const char *const *params, struct strbuf *keys)
{
	struct eng_rows rows = ENG_ROWS_INIT;
	struct sm_error ignored = SM_ERROR_INIT;

	/* under a savepoint: a query of ours that fails must not abort the
	 * migration's transaction */
	if (simple(e, "SAVEPOINT safe_migrate_defs", &ignored) < 0)
		return -1;
	if (pg_query(e, sql, nparams, params, &rows, &ignored) < 0) {
		simple(e, "ROLLBACK TO SAVEPOINT safe_migrate_defs", &ignored);
		simple(e, "RELEASE SAVEPOINT safe_migrate_defs", &ignored);
		return -1;
	}
	simple(e, "RELEASE SAVEPOINT safe_migrate_defs", &ignored);
	for (size_t i = 0; i < rows.nrows; i++) {
		if (keys->len)
			sb_setlen(keys, keys->len - 1);
		sb_adds(keys, keys->len ? "," : "{");
		sb_adds(keys, rows_get(&rows, i, 0));
		sb_addch(keys, '}');
	}
	rows_release(&rows);
	return 0;
}

/* Adds the catalog rows the open transaction wrote to the run's own: its
 * definitions in the user schemas, and what it wrote outside them that
 * pg_outside_state can tell by the row (roles, memberships, settings,
 * system functions). */
static void own_defs_read(struct engine *e)
{
	struct pg_writes *w = ((struct pg_impl *)e->impl)->writes;
	const char *params[] = { w->snapshot };

	if (w->snapshot)
		own_keys_read(e, defs_own_sql, 1, params, &w->own_defs);
	/* not known: what the transaction wrote cannot be told from another
	 * session's, as a transaction:false step's cannot */
	if (own_keys_read(e, authid_readable(e) ? outside_own_authid_sql : outside_own_roles_sql,
			  0, NULL, &w->own_outside) < 0)
		w->untracked = 1;
}

static void writes_tx_start(struct engine *e)
{
	struct pg_impl *pg = e->impl;
	struct sm_error ignored = SM_ERROR_INIT;

	if (!pg->writes)
		return;
	counts_release(&pg->writes->pre);
	pg->writes->have_pre = counts_read(e, WRITES_SQL("pg_stat_xact_user_tables"),
					   &pg->writes->pre, 1, &ignored) == 0;
}

/* Adds to w->dropped other sessions' writes since the mark to the tables
 * the open transaction dropped: in pre, not in post (see DROPPED_SQL).
 * Not known (an error): unknown writes, a saved state perhaps not needed. */
static void dropped_read(struct engine *e, const struct pg_counts *post)
{
	struct pg_impl *pg = e->impl;
	struct pg_writes *w = pg->writes;
	struct sm_error ignored = SM_ERROR_INIT;
	int waited = 0;

	for (size_t i = 0; i < w->pre.n; i++) {
		const struct pg_count *t = &w->pre.v[i];
		const char *const params[] = { t->oid };
		char *v = NULL;
		long long theirs;

		if (counts_find(post, t->oid))
			continue;
		/* under a savepoint: a query of ours that fails must not abort
		 * the migration's transaction; the statistics snapshot of this
		 * transaction is cleared to read what came in meanwhile */
		if (!waited) {
			usleep(WRITES_FLUSH_WAIT_MS * 1000);
			waited = 1;
			if (simple(e, "SAVEPOINT safe_migrate_dropped", &ignored) < 0 ||
			    simple(e, "SELECT pg_catalog.pg_stat_clear_snapshot()", &ignored) < 0)
				goto unknown;
		}
		if (engine_scalar(e, DROPPED_SQL, 1, params, &v, &ignored) < 0)
			goto unknown;
		theirs = (v ? strtoll(v, NULL, 10) : 0) + t->rows - counts_get(&w->at_mark, t->oid) -
			 counts_get(&w->own, t->oid);
		free(v);
		if (theirs > 0)
			sb_addf(&w->dropped, "%s\t%lld\tdropped\n", t->name ? t->name : t->oid,
				theirs);
	}
	if (waited)
		simple(e, "RELEASE SAVEPOINT safe_migrate_dropped", &ignored);
	return;
unknown:
	simple(e, "ROLLBACK TO SAVEPOINT safe_migrate_dropped", &ignored);
	simple(e, "RELEASE SAVEPOINT safe_migrate_dropped", &ignored);
	sb_adds(&w->dropped, "*\t?\n");
}

/* A statement committed outside a transaction of ours: what it wrote
 * cannot be told from another session's. */
static void writes_untracked(struct engine *e)
{
	struct pg_impl *pg = e->impl;

	if (pg->writes)
		pg->writes->untracked = 1;
}

/* Tallies the open transaction's writes (once; not possible once it failed). */
static void writes_tx_end(struct engine *e)
{
	struct pg_impl *pg = e->impl;
	struct sm_error ignored = SM_ERROR_INIT;
	struct pg_counts post = { NULL, 0, 0 };

	if (!pg->writes || !pg->writes->have_pre ||
	    PQtransactionStatus(pg->conn) != PQTRANS_INTRANS)
		return;
	pg->writes->have_pre = 0;
	if (counts_read(e, WRITES_SQL("pg_stat_xact_user_tables"), &post, 1, &ignored) == 0) {
		for (size_t i = 0; i < post.n; i++)
			counts_add(&pg->writes->own, post.v[i].oid,
				   post.v[i].rows - counts_get(&pg->writes->pre, post.v[i].oid));
		dropped_read(e, &post);
	}
	counts_release(&post);
	own_defs_read(e);
}

/* Is stmt a DROP that may take a table with it (any but DROP INDEX, which
 * never does and whose CONCURRENTLY form cannot run in a transaction)? */
static int drops_tables(const char *stmt)
{
	size_t n = strlen(stmt), i;

	if (n < 5 || strncasecmp(stmt, "DROP", 4) || !isspace((unsigned char)stmt[4]))
		return 0;
	i = 4 + engine_skip_space(stmt + 4, n - 4);
	return !(n - i >= 5 && !strncasecmp(stmt + i, "INDEX", 5) &&
		 (n - i == 5 || !isalnum((unsigned char)stmt[i + 5])));
}

/* Runs sql bare; a table gone after it is "TABLE\t?\tdropped" (see
 * exec_outside_tx). */
static PGresult *exec_watched(struct engine *e, const char *sql)
{
	struct pg_impl *pg = e->impl;
	struct sm_error ignored = SM_ERROR_INIT;
	struct pg_counts was = { NULL, 0, 0 }, now = { NULL, 0, 0 };
	int known = PQtransactionStatus(pg->conn) != PQTRANS_INERROR &&
		    counts_read(e, WRITES_SQL("pg_stat_xact_user_tables"), &was, 1, &ignored) == 0;
	PGresult *res = exec_simple(pg->conn, sql);

	if (known && PQtransactionStatus(pg->conn) != PQTRANS_INERROR &&
	    counts_read(e, WRITES_SQL("pg_stat_xact_user_tables"), &now, 1, &ignored) == 0) {
		for (size_t i = 0; i < was.n; i++)
			if (!counts_find(&now, was.v[i].oid))
				sb_addf(&pg->writes->dropped, "%s\t?\tdropped\n",
					was.v[i].name ? was.v[i].name : was.v[i].oid);
	}
	counts_release(&was);
	counts_release(&now);
	return res;
}

/*
 * A migration's statement outside a transaction of ours (transaction:false)
 * commits on its own, and a table it drops takes its counters with it before
 * anything can read them.  So, while other sessions' writes are counted:
 *
 * - a DROP that may take a table (drops_tables) runs, when no transaction is
 *   open, inside one of ours that holds only it: the same for the database
 *   (one statement, committed at once), and the drop's table is looked at
 *   before it commits as in any of our transactions (writes_tx_end).  One
 *   that cannot run in a transaction block (25001; 2D000: a procedure that
 *   commits) is rolled back (it did nothing that stays) and run bare;
 * - any other statement (and that one) runs bare, and a table that is gone
 *   after it (a DO block or a function that dropped it, a DROP in the
 *   script's own transaction) could not be looked at: "TABLE\t?\tdropped",
 *   rows unknown, possibly lost.
 *
 * Returns the statement's result (or, when our COMMIT failed, COMMIT's).
 */
static PGresult *exec_outside_tx(struct engine *e, const char *sql,
				 PGTransactionStatusType before)
{
	struct pg_impl *pg = e->impl;
	struct pg_writes *w = pg->writes;
	struct sm_error ignored = SM_ERROR_INIT;
	const char *state;
	PGresult *res, *commit;
	size_t len0;

	if (before != PQTRANS_IDLE || !drops_tables(sql) || simple(e, "BEGIN", &ignored) < 0)
		return exec_watched(e, sql);
	writes_tx_start(e);
	len0 = w->dropped.len;
	res = exec_simple(pg->conn, sql);
	if (!result_ok(res)) {
		simple(e, "ROLLBACK", &ignored);
		w->have_pre = 0;
		state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		if (!state || (strcmp(state, "25001") && strcmp(state, "2D000")))
			return res;
		PQclear(res);
		return exec_watched(e, sql);
	}
	writes_tx_end(e);
	commit = PQexec(pg->conn, "COMMIT");
	if (result_ok(commit)) {
		PQclear(commit);
		return res;
	}
	/* the drop did not commit: the table and its rows are still there */
	sb_setlen(&w->dropped, len0);
	PQclear(res);
	return commit;
}

/* The shared counters, with this connection's pending counts flushed first
 * (pg_stat_force_next_flush: PostgreSQL 15 and later). */
static int shared_counts(struct engine *e, struct pg_counts *c, struct sm_error *err)
{
	struct pg_impl *pg = e->impl;

	if (PQserverVersion(pg->conn) >= 150000 &&
	    simple(e, "SELECT pg_catalog.pg_stat_force_next_flush()", err) < 0)
		return -1;
	return counts_read(e, WRITES_SQL("pg_stat_user_tables"), c, 1, err);
}

static int pg_writes_mark(struct engine *e, char **mark, struct sm_error *err)
{
	struct pg_impl *pg = e->impl;
	struct pg_counts now = { NULL, 0, 0 };
	struct strbuf sb = STRBUF_INIT;
	char *snap = NULL, *state = NULL;

	*mark = NULL;
	writes_free(pg->writes);
	pg->writes = NULL;
	/* the snapshot first: a definition committed between the two reads is
	 * then after the mark (a saved state too many, not one too few) */
	if (engine_scalar(e, "SELECT pg_catalog.txid_current_snapshot()::text", 0, NULL, &snap,
			  err) < 0 ||
	    engine_scalar(e, STATS_STATE_SQL, 0, NULL, &state, err) < 0 ||
	    shared_counts(e, &now, err) < 0) {
		free(snap);
		free(state);
		return -1;
	}
	/* the state cannot hold a newline; it is the first line */
	sb_addf(&sb, "stats %s\n", state ? state : "");
	free(state);
	for (size_t i = 0; i < now.n; i++)
		sb_addf(&sb, "%s %lld\n", now.v[i].oid, now.v[i].rows);
	pg->writes = xcalloc(1, sizeof(*pg->writes));
	pg->writes->snapshot = snap;
	pg->writes->at_mark = now;
	*mark = sb_detach(&sb);
	return 0;
}

/* Appends "OBJECT\tdefinition\n" for each definition another session
 * created or changed since the mark (see DEFS_OBJECTS_SQL). */
static int foreign_defs(struct engine *e, struct strbuf *out, struct sm_error *err)
{
	struct pg_impl *pg = e->impl;
	struct eng_rows rows = ENG_ROWS_INIT;
	const char *params[2];

	if (!pg->writes || !pg->writes->snapshot)
		return 0;
	params[0] = pg->writes->snapshot;
	params[1] = pg->writes->own_defs.len ? pg->writes->own_defs.buf : "{}";
	if (pg_query(e, defs_theirs_sql, 2, params, &rows, err) < 0)
		return -1;
	for (size_t i = 0; i < rows.nrows; i++)
		sb_addf(out, "%s\tdefinition\n", rows_get(&rows, i, 0));
	rows_release(&rows);
	return 0;
}

/* Appends the tables whose shared counters grew more than our own writes,
 * and "*" when the counters cannot tell (see STATS_STATE_SQL). */
static int foreign_writes(struct engine *e, const struct pg_counts *then, const char *then_state,
			  struct strbuf *out, struct sm_error *err)
{
	struct pg_impl *pg = e->impl;
	struct pg_counts now = { NULL, 0, 0 };
	struct eng_rows name = ENG_ROWS_INIT;
	char *state = NULL;
	int unknown, ret = -1;

	/* the counters first: a reset after reading them changes the state */
	if (shared_counts(e, &now, err) < 0 ||
	    engine_scalar(e, STATS_STATE_SQL, 0, NULL, &state, err) < 0)
		goto out;
	unknown = !then_state || !state || !strcmp(then_state, "off") ||
		  strcmp(then_state, state) != 0;
	if (pg->writes && pg->writes->dropped.len)
		sb_add(out, pg->writes->dropped.buf, pg->writes->dropped.len);
	for (size_t i = 0; i < now.n; i++) {
		const char *oid = now.v[i].oid;
		long long theirs = now.v[i].rows - counts_get(then, oid) -
				   (pg->writes ? counts_get(&pg->writes->own, oid) : 0);
		const char *const params[] = { oid };

		/* counters only grow, until a reset */
		if (now.v[i].rows < counts_get(then, oid))
			unknown = 1;

		/* a table created after the mark counts from 0: another
		 * session's rows in a table the run created are dropped with
		 * it by the restore, and no catalog row tells of them */
		if (theirs <= 0)
			continue;
		if (pg_query(e, "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) FROM "
			     "pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = "
			     "c.relnamespace WHERE c.oid = $1::oid", 1, params, &name, err) < 0)
			goto out;
		if (name.nrows)
			sb_addf(out, "%s\t%lld\n", rows_get(&name, 0, 0), theirs);
		rows_release(&name);
	}
	if (unknown)
		sb_adds(out, "*\t?\n");
	ret = foreign_defs(e, out, err);
out:
	free(state);
	rows_release(&name);
	counts_release(&now);
	return ret;
}

static int pg_writes_since(struct engine *e, const char *mark, struct strbuf *out,
			   struct sm_error *err)
{
	const struct pg_impl *pg = e->impl;
	struct pg_counts then = { NULL, 0, 0 };
	const char *p = mark ? mark : "";
	size_t len0 = out->len;
	char *state = NULL;
	int ret;

	/* the mark is ours: "stats STATE\n", then "OID ROWS\n" lines */
	if (!strncmp(p, "stats ", 6)) {
		const char *nl = strchr(p, '\n');

		state = xstrndup(p + 6, nl ? (size_t)(nl - p - 6) : strlen(p + 6));
		p = nl ? nl + 1 : p + strlen(p);
	}
	while (*p) {
		const char *sp = strchr(p, ' ');
		char *end, *oid;
		long long rows;

		if (!sp)
			break;
		rows = strtoll(sp + 1, &end, 10);
		oid = xstrndup(p, (size_t)(sp - p));
		counts_add(&then, oid, rows);
		free(oid);
		p = *end == '\n' ? end + 1 : end;
		if (end == sp + 1)
			break;
	}
	ret = foreign_writes(e, &then, state, out, err);
	/* nothing but the dropped tables' lines (read before each drop
	 * committed, so they are complete) is no answer for the others */
	if (ret == 0 && out->len == len0 + (pg->writes ? pg->writes->dropped.len : 0)) {
		/* other sessions' counts reach the shared counters up to a
		 * second late: look again once they must have */
		usleep(WRITES_FLUSH_WAIT_MS * 1000);
		sb_setlen(out, len0);
		ret = foreign_writes(e, &then, state, out, err);
	}
	free(state);
	counts_release(&then);
	return ret;
}

/* Appends the first column of each row sql gives (with its nparams
 * params), a line each. */
static int query_lines(struct engine *e, const char *sql, int nparams, const char *const *params,
		       struct strbuf *out, struct sm_error *err)
{
	struct eng_rows rows = ENG_ROWS_INIT;

	if (pg_query(e, sql, nparams, params, &rows, err) < 0)
		return -1;
	for (size_t i = 0; i < rows.nrows; i++)
		sb_addf(out, "%s\n", rows_get(&rows, i, 0));
	rows_release(&rows);
	return 0;
}

static int pg_lock_holders(struct engine *e, struct strbuf *out, struct sm_error *err)
{
	/* our own connections are the caller's business: the migration lock's
	 * session (this one) is never a blocker of the restore */
	return query_lines(e,
		     "SELECT pg_catalog.format('pid %s, user %s, application ''%s'', state %s, since %s%s%s',"
		     " a.pid, a.usename, a.application_name, a.state,"
		     " to_char(a.state_change AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
		     " (SELECT ', holding ' || string_agg(l.mode || ' on ' || l.relation::pg_catalog.regclass::text,"
		     " ', ' ORDER BY l.relation) FROM pg_catalog.pg_locks l WHERE l.pid = a.pid AND l.granted"
		     " AND l.locktype = 'relation' AND l.relation >= 16384 AND l.database ="
		     " (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())),"
		     " CASE WHEN a.query <> '' THEN ', last statement: ' || left(a.query, 80) ELSE '' END)"
		     " FROM pg_catalog.pg_stat_activity a WHERE a.datname = current_database()"
		     " AND a.pid <> pg_catalog.pg_backend_pid() AND (a.application_name <> 'safe-migrate'"
		     " OR a.state <> 'idle') AND EXISTS (SELECT 1 FROM pg_catalog.pg_locks l WHERE"
		     " l.pid = a.pid AND l.granted AND l.locktype = 'relation' AND l.database ="
		     " (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()))"
		     " ORDER BY a.pid", 0, NULL, out, err);
}

/*
 * The in-place restore drops the snapshot's schemas and creates everything
 * again in one transaction: it locks each object it drops and each it
 * creates (relations, indexes, sequences, TOAST tables, types,
 * constraints, defaults, functions ...).  The objects that depend on the
 * user schemas, counted twice, approximate that; the lock table guarantees
 * max_locks_per_transaction x (max_connections + max_prepared_transactions).
 */
static int pg_restore_locks(struct engine *e, long *needed, long *available,
			    struct sm_error *err)
{
	struct eng_rows rows = ENG_ROWS_INIT;

	if (pg_query(e,
		     "WITH s AS (SELECT oid FROM pg_catalog.pg_namespace WHERE " USER_SCHEMA_FILTER "),"
		     " rel AS (SELECT c.oid, c.reltoastrelid FROM pg_catalog.pg_class c WHERE"
		     " c.relnamespace IN (SELECT oid FROM s))"
		     " SELECT (2 * ((SELECT count(*) FROM rel)"
		     " + (SELECT count(*) FROM rel WHERE reltoastrelid <> 0) * 2"
		     " + (SELECT count(*) FROM pg_catalog.pg_type WHERE typnamespace IN (SELECT oid FROM s))"
		     " + (SELECT count(*) FROM pg_catalog.pg_constraint WHERE connamespace IN (SELECT oid FROM s))"
		     " + (SELECT count(*) FROM pg_catalog.pg_proc WHERE pronamespace IN (SELECT oid FROM s))"
		     " + (SELECT count(*) FROM pg_catalog.pg_attrdef WHERE adrelid IN (SELECT oid FROM rel))"
		     " + (SELECT count(*) FROM s)))::text,"
		     " (current_setting('max_locks_per_transaction')::bigint *"
		     " (current_setting('max_connections')::bigint +"
		     " current_setting('max_prepared_transactions')::bigint))::text",
		     0, NULL, &rows, err) < 0)
		return -1;
	*needed = strtol(rows_get(&rows, 0, 0), NULL, 10);
	*available = strtol(rows_get(&rows, 0, 1), NULL, 10);
	rows_release(&rows);
	return 0;
}

static int pg_user_schemas(struct engine *e, struct strbuf *out, struct sm_error *err)
{
	return query_lines(e, "SELECT nspname FROM pg_catalog.pg_namespace WHERE "
			   USER_SCHEMA_FILTER " ORDER BY 1", 0, NULL, out, err);
}

/*
 * engine_ops.outside_state: objects outside every schema (the restore
 * drops and creates again those the snapshot holds; one the run created
 * stays), the database's own (never in a snapshot), what a migration can
 * change in the system catalogs, and the cluster's roles.
 *
 * Roles, their memberships and settings are the cluster's: another
 * database's session may change one during the run, and a plain
 * before/after difference would blame the run for it.  So where a row's
 * xmin says who wrote it (OUTSIDE_KEYED_SQL) and the run counted its own
 * writes (writes_mark), a line the run wrote ends "(changed by the run)"
 * (own_defs_read keeps the rows each of its transactions wrote), and one
 * written since the mark by a transaction not among them "(changed during
 * the run by another session)", or "(... by the run or another session)"
 * when a statement committed outside a transaction of ours (a
 * transaction:false step's, which the run cannot look into).  A line that
 * says neither cannot be told: a role's row for a session that cannot
 * read pg_authid, a row removed, recover's comparison with the list a
 * killed run journaled.  The words are part of the line, so that a row the
 * run rewrote with the same values (a new password: pg_roles shows none)
 * still differs from before.  $1 is the mark's snapshot or NULL, $2 the
 * run's own keys, $3 't' when a statement committed outside a transaction
 * of ours.
 */
#define OUTSIDE_SQL(roles, role_xmin)                                                         \
	"SELECT x FROM ("                                                                       \
	"SELECT 'extension ' || pg_catalog.quote_ident(extname) || ' ' || extversion || "       \
	"' in ' || extnamespace::pg_catalog.regnamespace::text AS x FROM pg_catalog.pg_extension " \
	"UNION ALL SELECT 'publication ' || pg_catalog.quote_ident(pubname) "                   \
	"FROM pg_catalog.pg_publication "                                                       \
	"UNION ALL SELECT 'foreign-data wrapper ' || pg_catalog.quote_ident(fdwname) "          \
	"FROM pg_catalog.pg_foreign_data_wrapper "                                              \
	"UNION ALL SELECT 'server ' || pg_catalog.quote_ident(srvname) "                        \
	"FROM pg_catalog.pg_foreign_server "                                                    \
	"UNION ALL SELECT 'user mapping for ' || usename || ' server ' || srvname "             \
	"FROM pg_catalog.pg_user_mappings "                                                     \
	"UNION ALL SELECT 'cast (' || pg_catalog.format_type(castsource, NULL) || ' AS ' || "   \
	"pg_catalog.format_type(casttarget, NULL) || ')' FROM pg_catalog.pg_cast WHERE oid >= 16384 " \
	"UNION ALL SELECT 'access method ' || pg_catalog.quote_ident(amname) "                  \
	"FROM pg_catalog.pg_am WHERE oid >= 16384 "                                             \
	"UNION ALL SELECT 'language ' || pg_catalog.quote_ident(lanname) || "                   \
	"coalesce(' grants ' || lanacl::text, '') FROM pg_catalog.pg_language "                 \
	"UNION ALL SELECT 'transform for ' || pg_catalog.format_type(trftype, NULL) || "        \
	"' language ' || trflang::text FROM pg_catalog.pg_transform "                           \
	"UNION ALL SELECT 'event trigger ' || pg_catalog.quote_ident(evtname) || ' ' || "       \
	"evtenabled::text FROM pg_catalog.pg_event_trigger "                                    \
	"UNION ALL SELECT 'database grants ' || coalesce(datacl::text, 'default') || "          \
	"coalesce(', comment ' || pg_catalog.quote_literal("                                    \
	"pg_catalog.shobj_description(oid, 'pg_database')), '') FROM pg_catalog.pg_database "   \
	"WHERE datname = pg_catalog.current_database() "                                        \
	"UNION ALL SELECT 'schema ' || nspname || ' grants ' || coalesce(nspacl::text, 'default') " \
	"FROM pg_catalog.pg_namespace WHERE nspname IN ('pg_catalog', 'information_schema') "   \
	"UNION ALL SELECT 'grants on ' || c.oid::pg_catalog.regclass::text || ': ' || "         \
	"c.relacl::text FROM pg_catalog.pg_class c WHERE c.relacl IS NOT NULL AND "             \
	"c.relnamespace IN ('pg_catalog'::pg_catalog.regnamespace, "                            \
	"'information_schema'::pg_catalog.regnamespace) "                                       \
	"UNION ALL SELECT 'function ' || p.oid::pg_catalog.regprocedure::text || "              \
	"coalesce(' grants ' || p.proacl::text, '') FROM pg_catalog.pg_proc p "                 \
	"WHERE p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace AND "                     \
	"(p.oid >= 16384 OR p.proacl IS NOT NULL) "                                             \
	"UNION ALL SELECT k.x || CASE WHEN $1::text IS NULL OR k.xid IS NULL THEN '' "          \
	"WHEN k.cls || ':' || k.id || ':' || k.xmin = ANY ($2::text[]) THEN "                   \
	"' (changed by the run' || CASE k.cls WHEN 'a' THEN ': what is shown, or the password' " \
	"ELSE '' END || ')' WHEN k.xid < pg_catalog.txid_snapshot_xmax("                          \
	"pg_catalog.txid_current_snapshot()) AND NOT pg_catalog.txid_visible_in_snapshot("       \
	"k.xid, $1::text::pg_catalog.txid_snapshot) THEN CASE WHEN $3::text = 't' THEN "        \
	"' (changed during the run, by the run or another session)' "                           \
	"ELSE '" ENGINE_OUTSIDE_THEIRS "' END ELSE '' END FROM ("                                \
	OUTSIDE_XID_SQL(roles, role_xmin) ") k"                                                  \
	") o ORDER BY x COLLATE \"C\""

static const char outside_authid_sql[] = OUTSIDE_SQL("pg_catalog.pg_authid", "r.xmin");
static const char outside_roles_sql[] =
	OUTSIDE_SQL("pg_catalog.pg_roles", "NULL::pg_catalog.xid");

static int pg_outside_state(struct engine *e, struct strbuf *out, struct sm_error *err)
{
	const struct pg_writes *w = ((struct pg_impl *)e->impl)->writes;
	const char *params[3] = { NULL, "{}", "f" };

	if (w && w->snapshot) {
		params[0] = w->snapshot;
		if (w->own_outside.len)
			params[1] = w->own_outside.buf;
		params[2] = w->untracked ? "t" : "f";
	}
	return query_lines(e, authid_readable(e) ? outside_authid_sql : outside_roles_sql, 3,
			   params, out, err);
}

static int pg_identity(struct engine *e, struct engine_identity *id, struct sm_error *err)
{
	struct eng_rows rows = ENG_ROWS_INIT;
	int ret = -1;

	memset(id, 0, sizeof(*id));
	/* a server that keeps pg_control_system() from this role still tells
	 * where it listens: weaker (an address, not the cluster), never the
	 * URL's spelling */
	if (pg_query(e, "SELECT s.system_identifier::text, d.oid::text, d.datname "
		     "FROM pg_catalog.pg_control_system() s, pg_catalog.pg_database d "
		     "WHERE d.datname = pg_catalog.current_database()", 0, NULL, &rows, err) < 0 &&
	    (e->in_tx ||
	     pg_query(e, "SELECT 'server ' || coalesce(host(pg_catalog.inet_server_addr()), "
		      "'local') || ':' || coalesce(pg_catalog.inet_server_port()::text, "
		      "pg_catalog.current_setting('port')), d.oid::text, d.datname "
		      "FROM pg_catalog.pg_database d "
		      "WHERE d.datname = pg_catalog.current_database()", 0, NULL, &rows, err) < 0))
		return err_prefix(err, "cannot tell which database this is");
	if (rows.nrows != 1 || !rows_get(&rows, 0, 0) || !rows_get(&rows, 0, 1)) {
		err_set(err, ERR_FAIL, "cannot tell which database this is: no system identifier");
		goto out;
	}
	snprintf(id->key, sizeof(id->key), "postgresql:%s:%s", rows_get(&rows, 0, 0),
		 rows_get(&rows, 0, 1));
	snprintf(id->label, sizeof(id->label), "database '%s' (system %s)", rows_get(&rows, 0, 2),
		 rows_get(&rows, 0, 0));
	ret = 0;
out:
	rows_release(&rows);
	return ret;
}

static void pg_scrub_secrets(const struct db_url *url, struct strbuf *text)
{
	PQconninfoOption *opts = url->conninfo ? PQconninfoParse(url->conninfo, NULL) : NULL;

	for (PQconninfoOption *o = opts; o && o->keyword; o++)
		if (!strcmp(o->keyword, "password"))
			scrub_secret(text, o->val);
	scrub_secret(text, getenv("PGPASSWORD"));
	PQconninfoFree(opts);
}

static void pg_client_url(const struct db_url *url, struct strbuf *out)
{
	sb_adds(out, url->conninfo);
}

const struct engine_ops engine_pg_ops = {
	.name = "postgresql",
	.display_name = "PostgreSQL",
	.open = pg_open,
	.close = pg_close,
	.exec_script = pg_exec_script,
	.split = pg_split,
	.begin = pg_begin,
	.commit = pg_commit,
	.rollback = pg_rollback,
	.tx_open = pg_tx_open,
	.release_locks = pg_release_locks,
	.query = pg_query,
	.lock = pg_lock,
	.unlock = pg_unlock,
	.set_timeouts = pg_set_timeouts,
	.interrupt = pg_interrupt,
	.server_version = pg_server_version,
	.quote_ident = engine_quote_ident_sql,
	.quote_literal = pg_quote_literal,
	.table_exists = pg_table_exists,
	.writes_mark = pg_writes_mark,
	.writes_since = pg_writes_since,
	.lock_holders = pg_lock_holders,
	.restore_locks = pg_restore_locks,
	.user_schemas = pg_user_schemas,
	.outside_state = pg_outside_state,
	.identity = pg_identity,
	.scrub_secrets = pg_scrub_secrets,
	.client_url = pg_client_url,
	/* every view, materialized view, table (partitions go with their
	 * parent) and sequence in the user's schemas; objects that belong to an
	 * extension are the extension's */
	.drop_list_sql =
		"SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' "
		"WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table' ELSE 'table' END, "
		"quote_ident(n.nspname) || '.' || quote_ident(c.relname), "
		"quote_ident(n.nspname) || '.' || quote_ident(c.relname) "
		"FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
		"WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND NOT c.relispartition "
		"AND n.oid IN " PG_USER_NSP " "
		"AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = "
		"'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e') "
		"ORDER BY CASE c.relkind WHEN 'v' THEN 0 WHEN 'm' THEN 1 WHEN 'S' THEN 3 ELSE 2 END, 2",
	/* views over a table, sequences owned by it and foreign keys into it go
	 * with it; IF EXISTS: they may already be gone */
	.drop_suffix = " CASCADE",
};
