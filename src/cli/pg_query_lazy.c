/*
 * pg_query_lazy: libpg_query, PostgreSQL's own SQL parser, is loaded when
 * the program first parses PostgreSQL SQL (the lint, splitting a migration
 * into statements), not when it starts.
 *
 * It is 2.6 MB with 9,000 relocations to resolve: on a run that never
 * parses PostgreSQL SQL (every SQLite run, a PostgreSQL backup or restore),
 * about 1 ms of a start-up that is most of a small SQLite restore's cost
 * next to `zstd -d`.  As libpq_lazy.c does for libpq: this file defines each
 * libpg_query function the program calls, with pg_query.h's prototype; the
 * first call loads the library and looks them all up.  The executable is
 * linked with --as-needed, so it names libpg_query only if a call to a
 * function missing here makes the linker take it (tests/cli/test_startup.py
 * fails then: add the function here).
 *
 * PG_QUERY_SONAME comes from the library CMake found (src/cli/CMakeLists.txt).
 * If it cannot be loaded, the program stops with exit status 127, as the
 * dynamic loader would have stopped it at start-up; the first parse comes
 * before anything is changed in a database.
 */
#include <pg_query.h>
#include <pthread.h>

#include "lazy_lib.h"

static struct {
	PgQueryParseResult (*parse)(const char *input);
	void (*free_parse_result)(PgQueryParseResult result);
	PgQueryPlpgsqlParseResult (*parse_plpgsql)(const char *input);
	void (*free_plpgsql_parse_result)(PgQueryPlpgsqlParseResult result);
	PgQuerySplitResult (*split_with_parser)(const char *input);
	void (*free_split_result)(PgQuerySplitResult result);
} pgq;

static pthread_once_t pgq_once = PTHREAD_ONCE_INIT;

static void load_pg_query(void)
{
	void *h = lazy_open(PG_QUERY_SONAME);

	*(void **)&pgq.parse = lazy_sym(h, PG_QUERY_SONAME, "pg_query_parse");
	*(void **)&pgq.free_parse_result = lazy_sym(h, PG_QUERY_SONAME,
						    "pg_query_free_parse_result");
	*(void **)&pgq.parse_plpgsql = lazy_sym(h, PG_QUERY_SONAME, "pg_query_parse_plpgsql");
	*(void **)&pgq.free_plpgsql_parse_result = lazy_sym(h, PG_QUERY_SONAME,
							    "pg_query_free_plpgsql_parse_result");
	*(void **)&pgq.split_with_parser = lazy_sym(h, PG_QUERY_SONAME,
						    "pg_query_split_with_parser");
	*(void **)&pgq.free_split_result = lazy_sym(h, PG_QUERY_SONAME,
						    "pg_query_free_split_result");
}

static void need_pg_query(void)
{
	pthread_once(&pgq_once, load_pg_query);
}

PgQueryParseResult pg_query_parse(const char *input)
{
	need_pg_query();
	return pgq.parse(input);
}

void pg_query_free_parse_result(PgQueryParseResult result)
{
	need_pg_query();
	pgq.free_parse_result(result);
}

PgQueryPlpgsqlParseResult pg_query_parse_plpgsql(const char *input)
{
	need_pg_query();
	return pgq.parse_plpgsql(input);
}

void pg_query_free_plpgsql_parse_result(PgQueryPlpgsqlParseResult result)
{
	need_pg_query();
	pgq.free_plpgsql_parse_result(result);
}

PgQuerySplitResult pg_query_split_with_parser(const char *input)
{
	need_pg_query();
	return pgq.split_with_parser(input);
}

void pg_query_free_split_result(PgQuerySplitResult result)
{
	need_pg_query();
	pgq.free_split_result(result);
}
