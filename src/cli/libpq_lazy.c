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
#include <libpq-fe.h>
#include <pthread.h>

#include "lazy_lib.h"

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

static void load_libpq(void)
{
	void *h = lazy_open(LIBPQ_SONAME);

	/* a void * into a function pointer the way POSIX's dlsym manual does;
	 * h stays open: libpq is used until the program exits */
	*(void **)&pq.PQcancel = lazy_sym(h, LIBPQ_SONAME, "PQcancel");
	*(void **)&pq.PQclear = lazy_sym(h, LIBPQ_SONAME, "PQclear");
	*(void **)&pq.PQcmdStatus = lazy_sym(h, LIBPQ_SONAME, "PQcmdStatus");
	*(void **)&pq.PQcmdTuples = lazy_sym(h, LIBPQ_SONAME, "PQcmdTuples");
	*(void **)&pq.PQconnectdb = lazy_sym(h, LIBPQ_SONAME, "PQconnectdb");
	*(void **)&pq.PQconnectdbParams = lazy_sym(h, LIBPQ_SONAME, "PQconnectdbParams");
	*(void **)&pq.PQconninfoFree = lazy_sym(h, LIBPQ_SONAME, "PQconninfoFree");
	*(void **)&pq.PQconninfoParse = lazy_sym(h, LIBPQ_SONAME, "PQconninfoParse");
	*(void **)&pq.PQdb = lazy_sym(h, LIBPQ_SONAME, "PQdb");
	*(void **)&pq.PQerrorMessage = lazy_sym(h, LIBPQ_SONAME, "PQerrorMessage");
	*(void **)&pq.PQescapeIdentifier = lazy_sym(h, LIBPQ_SONAME, "PQescapeIdentifier");
	*(void **)&pq.PQescapeLiteral = lazy_sym(h, LIBPQ_SONAME, "PQescapeLiteral");
	*(void **)&pq.PQexec = lazy_sym(h, LIBPQ_SONAME, "PQexec");
	*(void **)&pq.PQexecParams = lazy_sym(h, LIBPQ_SONAME, "PQexecParams");
	*(void **)&pq.PQfinish = lazy_sym(h, LIBPQ_SONAME, "PQfinish");
	*(void **)&pq.PQfname = lazy_sym(h, LIBPQ_SONAME, "PQfname");
	*(void **)&pq.PQfreeCancel = lazy_sym(h, LIBPQ_SONAME, "PQfreeCancel");
	*(void **)&pq.PQfreemem = lazy_sym(h, LIBPQ_SONAME, "PQfreemem");
	*(void **)&pq.PQgetCancel = lazy_sym(h, LIBPQ_SONAME, "PQgetCancel");
	*(void **)&pq.PQgetCopyData = lazy_sym(h, LIBPQ_SONAME, "PQgetCopyData");
	*(void **)&pq.PQgetResult = lazy_sym(h, LIBPQ_SONAME, "PQgetResult");
	*(void **)&pq.PQgetisnull = lazy_sym(h, LIBPQ_SONAME, "PQgetisnull");
	*(void **)&pq.PQgetvalue = lazy_sym(h, LIBPQ_SONAME, "PQgetvalue");
	*(void **)&pq.PQlibVersion = lazy_sym(h, LIBPQ_SONAME, "PQlibVersion");
	*(void **)&pq.PQnfields = lazy_sym(h, LIBPQ_SONAME, "PQnfields");
	*(void **)&pq.PQntuples = lazy_sym(h, LIBPQ_SONAME, "PQntuples");
	*(void **)&pq.PQparameterStatus = lazy_sym(h, LIBPQ_SONAME, "PQparameterStatus");
	*(void **)&pq.PQpass = lazy_sym(h, LIBPQ_SONAME, "PQpass");
	*(void **)&pq.PQputCopyData = lazy_sym(h, LIBPQ_SONAME, "PQputCopyData");
	*(void **)&pq.PQputCopyEnd = lazy_sym(h, LIBPQ_SONAME, "PQputCopyEnd");
	*(void **)&pq.PQresultErrorField = lazy_sym(h, LIBPQ_SONAME, "PQresultErrorField");
	*(void **)&pq.PQresultErrorMessage = lazy_sym(h, LIBPQ_SONAME, "PQresultErrorMessage");
	*(void **)&pq.PQresultStatus = lazy_sym(h, LIBPQ_SONAME, "PQresultStatus");
	*(void **)&pq.PQsendQuery = lazy_sym(h, LIBPQ_SONAME, "PQsendQuery");
	*(void **)&pq.PQserverVersion = lazy_sym(h, LIBPQ_SONAME, "PQserverVersion");
	*(void **)&pq.PQsetNoticeProcessor = lazy_sym(h, LIBPQ_SONAME, "PQsetNoticeProcessor");
	*(void **)&pq.PQstatus = lazy_sym(h, LIBPQ_SONAME, "PQstatus");
	*(void **)&pq.PQtransactionStatus = lazy_sym(h, LIBPQ_SONAME, "PQtransactionStatus");
	*(void **)&pq.lo_close = lazy_sym(h, LIBPQ_SONAME, "lo_close");
	*(void **)&pq.lo_lseek64 = lazy_sym(h, LIBPQ_SONAME, "lo_lseek64");
	*(void **)&pq.lo_open = lazy_sym(h, LIBPQ_SONAME, "lo_open");
	*(void **)&pq.lo_read = lazy_sym(h, LIBPQ_SONAME, "lo_read");
	*(void **)&pq.lo_write = lazy_sym(h, LIBPQ_SONAME, "lo_write");
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
