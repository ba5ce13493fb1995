/*
 * libpq_lazy: libpq is loaded when the program first calls it, not when
 * the program starts.
 *
 * libpq brings twenty shared libraries with it (Kerberos, LDAP, GnuTLS and
 * theirs): mapping and relocating them is about half of this program's
 * start-up, 4 to 5 ms of CPU on every run, on SQLite databases too, which
 * never call libpq.  This file defines each libpq function the program
 * calls, with libpq-fe.h's own prototype; the first call loads libpq.so.5
 * (dlopen) and looks every one of them up, and each call goes on to
 * libpq's.  The code that uses libpq is unchanged and still compiles
 * against libpq-fe.h.
 *
 * The executable is linked with --as-needed and still names libpq
 * (src/cli/CMakeLists.txt): while every libpq function the program calls
 * is defined here, the executable does not need libpq.so.5 at start-up; a
 * new call to a function missing here makes the linker take libpq again,
 * as before (correct, only slower to start), and the test
 * tests/cli/test_startup.py fails.  Add the function here then: its
 * pointer in pq, its lookup in load_libpq and its definition below.
 *
 * If libpq cannot be loaded, the program stops as the dynamic loader
 * would have stopped it at start-up before: a message and exit status
 * 127.  Every first call to libpq comes before a connection exists, so
 * nothing has been changed in a PostgreSQL database by then.
 */
#include <dlfcn.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

/* libpq's soname: 5 since PostgreSQL 8.0. */
#define LIBPQ_SONAME "libpq.so.5"

/* libpq's functions, set once by load_libpq. */
static struct {
	int (*PQcancel)(PGcancel *cancel, char *errbuf, int errbufsize);
	void (*PQclear)(PGresult *res);
	char *(*PQcmdStatus)(PGresult *res);
	char *(*PQcmdTuples)(PGresult *res);
	PGconn *(*PQconnectdb)(const char *conninfo);
	PGconn *(*PQconnectdbParams)(const char *const *keywords, const char *const *values,
				     int expand_dbname);
	void (*PQconninfoFree)(PQconninfoOption *connOptions);
	PQconninfoOption *(*PQconninfoParse)(const char *conninfo, char **errmsg);
	char *(*PQdb)(const PGconn *conn);
	char *(*PQerrorMessage)(const PGconn *conn);
	char *(*PQescapeIdentifier)(PGconn *conn, const char *str, size_t len);
	char *(*PQescapeLiteral)(PGconn *conn, const char *str, size_t len);
	PGresult *(*PQexec)(PGconn *conn, const char *query);
	PGresult *(*PQexecParams)(PGconn *conn, const char *command, int nParams,
				  const Oid *paramTypes, const char *const *paramValues,
				  const int *paramLengths, const int *paramFormats,
				  int resultFormat);
	void (*PQfinish)(PGconn *conn);
	char *(*PQfname)(const PGresult *res, int field_num);
	void (*PQfreeCancel)(PGcancel *cancel);
	void (*PQfreemem)(void *ptr);
	PGcancel *(*PQgetCancel)(PGconn *conn);
	int (*PQgetCopyData)(PGconn *conn, char **buffer, int async);
	PGresult *(*PQgetResult)(PGconn *conn);
	int (*PQgetisnull)(const PGresult *res, int tup_num, int field_num);
	char *(*PQgetvalue)(const PGresult *res, int tup_num, int field_num);
	int (*PQlibVersion)(void);
	int (*PQnfields)(const PGresult *res);
	int (*PQntuples)(const PGresult *res);
	const char *(*PQparameterStatus)(const PGconn *conn, const char *paramName);
	char *(*PQpass)(const PGconn *conn);
	int (*PQputCopyData)(PGconn *conn, const char *buffer, int nbytes);
	int (*PQputCopyEnd)(PGconn *conn, const char *errormsg);
	char *(*PQresultErrorField)(const PGresult *res, int fieldcode);
	char *(*PQresultErrorMessage)(const PGresult *res);
	ExecStatusType (*PQresultStatus)(const PGresult *res);
	int (*PQsendQuery)(PGconn *conn, const char *query);
	int (*PQserverVersion)(const PGconn *conn);
	PQnoticeProcessor (*PQsetNoticeProcessor)(PGconn *conn, PQnoticeProcessor proc, void *arg);
	ConnStatusType (*PQstatus)(const PGconn *conn);
	PGTransactionStatusType (*PQtransactionStatus)(const PGconn *conn);
	int (*lo_close)(PGconn *conn, int fd);
	pg_int64 (*lo_lseek64)(PGconn *conn, int fd, pg_int64 offset, int whence);
	int (*lo_open)(PGconn *conn, Oid lobjId, int mode);
	int (*lo_read)(PGconn *conn, int fd, char *buf, size_t len);
	int (*lo_write)(PGconn *conn, int fd, const char *buf, size_t len);
} pq;

static pthread_once_t pq_once = PTHREAD_ONCE_INIT;

static void __attribute__((noreturn)) pq_unavailable(const char *what)
{
	fprintf(stderr, "safe-migrate: error: cannot load '%s': %s\n", LIBPQ_SONAME, what);
	exit(127);
}

/* The address of libpq's function name. */
static void *lookup(void *h, const char *name)
{
	void *f = dlsym(h, name);

	if (!f) {
		const char *why = dlerror();

		pq_unavailable(why ? why : name);
	}
	return f;
}

static void load_libpq(void)
{
	void *h = dlopen(LIBPQ_SONAME, RTLD_NOW | RTLD_LOCAL);

	if (!h)
		pq_unavailable(dlerror());
	/* a void * into a function pointer the way POSIX's dlsym manual does;
	 * h stays open: libpq is used until the program exits */
	*(void **)&pq.PQcancel = lookup(h, "PQcancel");
	*(void **)&pq.PQclear = lookup(h, "PQclear");
	*(void **)&pq.PQcmdStatus = lookup(h, "PQcmdStatus");
	*(void **)&pq.PQcmdTuples = lookup(h, "PQcmdTuples");
	*(void **)&pq.PQconnectdb = lookup(h, "PQconnectdb");
	*(void **)&pq.PQconnectdbParams = lookup(h, "PQconnectdbParams");
	*(void **)&pq.PQconninfoFree = lookup(h, "PQconninfoFree");
	*(void **)&pq.PQconninfoParse = lookup(h, "PQconninfoParse");
	*(void **)&pq.PQdb = lookup(h, "PQdb");
	*(void **)&pq.PQerrorMessage = lookup(h, "PQerrorMessage");
	*(void **)&pq.PQescapeIdentifier = lookup(h, "PQescapeIdentifier");
	*(void **)&pq.PQescapeLiteral = lookup(h, "PQescapeLiteral");
	*(void **)&pq.PQexec = lookup(h, "PQexec");
	*(void **)&pq.PQexecParams = lookup(h, "PQexecParams");
	*(void **)&pq.PQfinish = lookup(h, "PQfinish");
	*(void **)&pq.PQfname = lookup(h, "PQfname");
	*(void **)&pq.PQfreeCancel = lookup(h, "PQfreeCancel");
	*(void **)&pq.PQfreemem = lookup(h, "PQfreemem");
	*(void **)&pq.PQgetCancel = lookup(h, "PQgetCancel");
	*(void **)&pq.PQgetCopyData = lookup(h, "PQgetCopyData");
	*(void **)&pq.PQgetResult = lookup(h, "PQgetResult");
	*(void **)&pq.PQgetisnull = lookup(h, "PQgetisnull");
	*(void **)&pq.PQgetvalue = lookup(h, "PQgetvalue");
	*(void **)&pq.PQlibVersion = lookup(h, "PQlibVersion");
	*(void **)&pq.PQnfields = lookup(h, "PQnfields");
	*(void **)&pq.PQntuples = lookup(h, "PQntuples");
	*(void **)&pq.PQparameterStatus = lookup(h, "PQparameterStatus");
	*(void **)&pq.PQpass = lookup(h, "PQpass");
	*(void **)&pq.PQputCopyData = lookup(h, "PQputCopyData");
	*(void **)&pq.PQputCopyEnd = lookup(h, "PQputCopyEnd");
	*(void **)&pq.PQresultErrorField = lookup(h, "PQresultErrorField");
	*(void **)&pq.PQresultErrorMessage = lookup(h, "PQresultErrorMessage");
	*(void **)&pq.PQresultStatus = lookup(h, "PQresultStatus");
	*(void **)&pq.PQsendQuery = lookup(h, "PQsendQuery");
	*(void **)&pq.PQserverVersion = lookup(h, "PQserverVersion");
	*(void **)&pq.PQsetNoticeProcessor = lookup(h, "PQsetNoticeProcessor");
	*(void **)&pq.PQstatus = lookup(h, "PQstatus");
	*(void **)&pq.PQtransactionStatus = lookup(h, "PQtransactionStatus");
	*(void **)&pq.lo_close = lookup(h, "lo_close");
	*(void **)&pq.lo_lseek64 = lookup(h, "lo_lseek64");
	*(void **)&pq.lo_open = lookup(h, "lo_open");
	*(void **)&pq.lo_read = lookup(h, "lo_read");
	*(void **)&pq.lo_write = lookup(h, "lo_write");
}

/* Loads libpq on the first call; after it, pthread_once only reads a flag,
 * so PQcancel stays async-signal-safe (its PGcancel came from PQgetCancel,
 * a call before). */
static void need_libpq(void)
{
	pthread_once(&pq_once, load_libpq);
}

int PQcancel(PGcancel *cancel, char *errbuf, int errbufsize)
{
	need_libpq();
	return pq.PQcancel(cancel, errbuf, errbufsize);
}

void PQclear(PGresult *res)
{
	need_libpq();
	pq.PQclear(res);
}

char *PQcmdStatus(PGresult *res)
{
	need_libpq();
	return pq.PQcmdStatus(res);
}

char *PQcmdTuples(PGresult *res)
{
	need_libpq();
	return pq.PQcmdTuples(res);
}

PGconn *PQconnectdb(const char *conninfo)
{
	need_libpq();
	return pq.PQconnectdb(conninfo);
}

PGconn *PQconnectdbParams(const char *const *keywords, const char *const *values,
			  int expand_dbname)
{
	need_libpq();
	return pq.PQconnectdbParams(keywords, values, expand_dbname);
}

void PQconninfoFree(PQconninfoOption *connOptions)
{
	need_libpq();
	pq.PQconninfoFree(connOptions);
}

PQconninfoOption *PQconninfoParse(const char *conninfo, char **errmsg)
{
	need_libpq();
	return pq.PQconninfoParse(conninfo, errmsg);
}

char *PQdb(const PGconn *conn)
{
	need_libpq();
	return pq.PQdb(conn);
}

char *PQerrorMessage(const PGconn *conn)
{
	need_libpq();
	return pq.PQerrorMessage(conn);
}

char *PQescapeIdentifier(PGconn *conn, const char *str, size_t len)
{
	need_libpq();
	return pq.PQescapeIdentifier(conn, str, len);
}

char *PQescapeLiteral(PGconn *conn, const char *str, size_t len)
{
	need_libpq();
	return pq.PQescapeLiteral(conn, str, len);
}

PGresult *PQexec(PGconn *conn, const char *query)
{
	need_libpq();
	return pq.PQexec(conn, query);
}

PGresult *PQexecParams(PGconn *conn, const char *command, int nParams, const Oid *paramTypes,
		       const char *const *paramValues, const int *paramLengths,
		       const int *paramFormats, int resultFormat)
{
	need_libpq();
	return pq.PQexecParams(conn, command, nParams, paramTypes, paramValues, paramLengths,
			       paramFormats, resultFormat);
}

void PQfinish(PGconn *conn)
{
	need_libpq();
	pq.PQfinish(conn);
}

char *PQfname(const PGresult *res, int field_num)
{
	need_libpq();
	return pq.PQfname(res, field_num);
}

void PQfreeCancel(PGcancel *cancel)
{
	need_libpq();
	pq.PQfreeCancel(cancel);
}

void PQfreemem(void *ptr)
{
	need_libpq();
	pq.PQfreemem(ptr);
}

PGcancel *PQgetCancel(PGconn *conn)
{
	need_libpq();
	return pq.PQgetCancel(conn);
}

int PQgetCopyData(PGconn *conn, char **buffer, int async)
{
	need_libpq();
	return pq.PQgetCopyData(conn, buffer, async);
}

PGresult *PQgetResult(PGconn *conn)
{
	need_libpq();
	return pq.PQgetResult(conn);
}

int PQgetisnull(const PGresult *res, int tup_num, int field_num)
{
	need_libpq();
	return pq.PQgetisnull(res, tup_num, field_num);
}

char *PQgetvalue(const PGresult *res, int tup_num, int field_num)
{
	need_libpq();
	return pq.PQgetvalue(res, tup_num, field_num);
}

int PQlibVersion(void)
{
	need_libpq();
	return pq.PQlibVersion();
}

int PQnfields(const PGresult *res)
{
	need_libpq();
	return pq.PQnfields(res);
}

int PQntuples(const PGresult *res)
{
	need_libpq();
	return pq.PQntuples(res);
}

const char *PQparameterStatus(const PGconn *conn, const char *paramName)
{
	need_libpq();
	return pq.PQparameterStatus(conn, paramName);
}

char *PQpass(const PGconn *conn)
{
	need_libpq();
	return pq.PQpass(conn);
}

int PQputCopyData(PGconn *conn, const char *buffer, int nbytes)
{
	need_libpq();
	return pq.PQputCopyData(conn, buffer, nbytes);
}

int PQputCopyEnd(PGconn *conn, const char *errormsg)
{
	need_libpq();
	return pq.PQputCopyEnd(conn, errormsg);
}

char *PQresultErrorField(const PGresult *res, int fieldcode)
{
	need_libpq();
	return pq.PQresultErrorField(res, fieldcode);
}

char *PQresultErrorMessage(const PGresult *res)
{
	need_libpq();
	return pq.PQresultErrorMessage(res);
}

ExecStatusType PQresultStatus(const PGresult *res)
{
	need_libpq();
	return pq.PQresultStatus(res);
}

int PQsendQuery(PGconn *conn, const char *query)
{
	need_libpq();
	return pq.PQsendQuery(conn, query);
}

int PQserverVersion(const PGconn *conn)
{
	need_libpq();
	return pq.PQserverVersion(conn);
}

PQnoticeProcessor PQsetNoticeProcessor(PGconn *conn, PQnoticeProcessor proc, void *arg)
{
	need_libpq();
	/* cppcheck, without libpq-fe.h, takes PQnoticeProcessor for an int */
	// cppcheck-suppress CastIntegerToAddressAtReturn
	return pq.PQsetNoticeProcessor(conn, proc, arg);
}

ConnStatusType PQstatus(const PGconn *conn)
{
	need_libpq();
	return pq.PQstatus(conn);
}

PGTransactionStatusType PQtransactionStatus(const PGconn *conn)
{
	need_libpq();
	return pq.PQtransactionStatus(conn);
}

int lo_close(PGconn *conn, int fd)
{
	need_libpq();
	return pq.lo_close(conn, fd);
}

pg_int64 lo_lseek64(PGconn *conn, int fd, pg_int64 offset, int whence)
{
	need_libpq();
	return pq.lo_lseek64(conn, fd, offset, whence);
}

int lo_open(PGconn *conn, Oid lobjId, int mode)
{
	need_libpq();
	return pq.lo_open(conn, lobjId, mode);
}

int lo_read(PGconn *conn, int fd, char *buf, size_t len)
{
	need_libpq();
	return pq.lo_read(conn, fd, buf, len);
}

int lo_write(PGconn *conn, int fd, const char *buf, size_t len)
{
	need_libpq();
	return pq.lo_write(conn, fd, buf, len);
}
