/*
 * test_sqlite_snapshot: SQLite backup and restore (backup/ and restore/
 * through their library entry points) of a database that spans the
 * lock-byte page.  SQLite never writes that page (offset PENDING_BYTE,
 * 1 GiB), so every database of 1 GiB or more has a hole there; here the
 * pending byte is lowered to 64 KiB with SQLITE_TESTCTRL_PENDING_BYTE so
 * that a database of a few hundred KiB spans it (scripts/bench/
 * sqlite-snapshot.sh --big runs the same round trip on a real 1 GiB file).
 */
#include "unit_tmpdir.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "backup.h"
#include "engine.h"
#include "restore.h"
#include "strbuf.h"
#include "url.h"
#include "xalloc.h"
#include "unit_sqlite.h"

#define LOW_PENDING_BYTE 0x10000 /* 64 KiB: page 17 of 4 KiB pages */
#define PAGE 4096

static int setup(void **state)
{
	(void)state;
	assert_int_equal(unit_dir_make("sqlsnap"), 0);
	return 0;
}

static struct engine *open_db(const char *path, unsigned flags)
{
	struct strbuf text = STRBUF_INIT;
	struct db_url url = DB_URL_INIT;
	struct sm_error err = SM_ERROR_INIT;
	struct engine *e = NULL;

	sb_addf(&text, "sqlite:///%s", path);
	assert_int_equal(url_parse(text.buf, NULL, &url, &err), 0);
	if (engine_open(&e, &url, flags, &err) < 0)
		fail_msg("%s", err.msg);
	url_release(&url);
	sb_release(&text);
	return e;
}

static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf;
	long n;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n > 0);
	rewind(f);
	buf = xmalloc((size_t)n);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* Pages 2..N of both files are the same bytes (page 1 differs only in the
 * header's counters), and the lock-byte page is zeros. */
static void assert_same_pages(const char *a, const char *b)
{
	size_t la, lb;
	unsigned char *pa = slurp(a, &la), *pb = slurp(b, &lb);
	static const unsigned char zero[PAGE];

	assert_int_equal(la, lb);
	assert_true(la > LOW_PENDING_BYTE + 4 * PAGE);
	assert_memory_equal(pa + PAGE, pb + PAGE, la - PAGE);
	assert_memory_equal(pb + LOW_PENDING_BYTE, zero, PAGE);
	free(pa);
	free(pb);
}

static void assert_integrity_ok(const char *path)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
	sqlite3_finalize(st);
	sqlite3_close(db);
}

static void test_database_spanning_the_lock_byte_page(void **state)
{
	char *src = unit_path("src.db"), *to = unit_path("to.db"), *inplace = unit_path("in.db");
	char *bdir = unit_path("backups");
	struct sm_error err = SM_ERROR_INIT;
	struct backup_result res = BACKUP_RESULT_INIT;
	struct restore_opts ro;
	struct engine *e;

	(void)state;
	/* about 100 pages of 4 KiB: the lock-byte page (17) lies inside */
	unit_exec_sql(src, "PRAGMA page_size=4096; CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB);"
		 "CREATE INDEX t_b ON t(b);"
		 "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 150) "
		 "INSERT INTO t (b) SELECT randomblob(1000) FROM c");

	e = open_db(src, 0);
	if (backup_take(e, bdir, "snap", NULL, &res, &err) < 0)
		fail_msg("backup: %s", err.msg);
	engine_close(e);

	/* restore --to a new file: the staged file is renamed into place */
	memset(&ro, 0, sizeof(ro));
	ro.to_other = 1;
	ro.target_new = 1;
	e = open_db(to, ENGINE_CREATE);
	if (restore_snapshot(res.path, e, &ro, &err) < 0)
		fail_msg("restore --to: %s", err.msg);
	engine_close(e);
	assert_integrity_ok(to);
	assert_same_pages(src, to);

	/* in place: copied into an existing database with the backup API */
	unit_exec_sql(inplace, "PRAGMA page_size=4096; CREATE TABLE other (x)");
	memset(&ro, 0, sizeof(ro));
	e = open_db(inplace, 0);
	if (restore_snapshot(res.path, e, &ro, &err) < 0)
		fail_msg("restore in place: %s", err.msg);
	engine_close(e);
	assert_integrity_ok(inplace);
	assert_same_pages(src, inplace);

	backup_result_release(&res);
	free(src);
	free(to);
	free(inplace);
	free(bdir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_database_spanning_the_lock_byte_page),
	};

	/* before any database is opened: the pending byte is process-wide */
	if (sqlite3_test_control(SQLITE_TESTCTRL_PENDING_BYTE, LOW_PENDING_BYTE) <= 0) {
		fprintf(stderr, "test_sqlite_snapshot: this libsqlite3 has no test controls "
			"(SQLITE_UNTESTABLE); skipped\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, setup, unit_dir_teardown);
}
