/*
 * test_engine_sqlite: the SQLite backend's reopen, which the pipeline calls
 * when a wrapped command renamed a new file over the database: the
 * connection must reach the new file, keep the migration lock, and forget
 * what it counted on the old one (write marks, tracked writes).
 */
#include "unit_tmpdir.h"

#include <errno.h>
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

#include "engine.h"
#include "strbuf.h"
#include "url.h"
#include "unit_sqlite.h"

static int setup(void **state)
{
	(void)state;
	assert_int_equal(unit_dir_make("engsqlite"), 0);
	return 0;
}

static struct engine *open_db(const char *path)
{
	struct strbuf text = STRBUF_INIT;
	struct db_url url = DB_URL_INIT;
	struct sm_error err = SM_ERROR_INIT;
	struct engine *e = NULL;

	sb_addf(&text, "sqlite:///%s", path);
	assert_int_equal(url_parse(text.buf, NULL, &url, &err), 0);
	if (engine_open(&e, &url, 0, &err) < 0)
		fail_msg("%s", err.msg);
	url_release(&url);
	sb_release(&text);
	return e;
}

static int has_table(struct engine *e, const char *name)
{
	struct sm_error err = SM_ERROR_INIT;
	int exists = -1;

	if (e->ops->table_exists(e, name, &exists, &err) < 0)
		fail_msg("%s", err.msg);
	return exists;
}

static void test_reopen_follows_a_file_renamed_over_the_path(void **state)
{
	char *db = unit_path("app.db"), *repl = unit_path("new.db");
	struct sm_error err = SM_ERROR_INIT;
	struct engine_identity before, after;
	struct strbuf since = STRBUF_INIT, written = STRBUF_INIT;
	struct engine *e, *other;
	char *mark = NULL;

	(void)state;
	unit_exec_sql(db, "CREATE TABLE old_t (x)");
	e = open_db(db);
	assert_int_equal(e->ops->lock(e, 0, &err), 0);
	assert_int_equal(e->ops->identity(e, &before, &err), 0);
	assert_int_equal(e->ops->writes_mark(e, &mark, &err), 0);
	assert_int_equal(e->ops->track_writes(e, NULL, NULL, &err), 0);
	assert_int_equal(engine_exec(e, "INSERT INTO old_t VALUES (1)", &err), 0);

	/* what a tool that replaces the database does */
	unit_exec_sql(repl, "CREATE TABLE new_t (x)");
	assert_int_equal(rename(repl, db), 0);

	/* the path's identity changes at once; the connection still reads
	 * the old file */
	assert_int_equal(e->ops->identity(e, &after, &err), 0);
	assert_string_not_equal(after.key, before.key);
	assert_true(has_table(e, "old_t"));

	if (e->ops->reopen(e, &err) < 0)
		fail_msg("reopen: %s", err.msg);
	assert_true(has_table(e, "new_t"));
	assert_false(has_table(e, "old_t"));

	/* a mark of the old file says nothing of the new one */
	assert_int_equal(e->ops->writes_since(e, mark, &since, &err), 0);
	assert_string_equal(since.buf, "*\t?\n");
	/* nor does what this connection wrote there */
	assert_int_equal(e->ops->tracked_writes(e, &written, &err), 0);
	assert_string_equal(written.buf, "*\n");
	free(mark);
	mark = NULL;
	sb_reset(&since);
	/* a mark of the new file works as ever */
	assert_int_equal(e->ops->writes_mark(e, &mark, &err), 0);
	assert_int_equal(e->ops->writes_since(e, mark, &since, &err), 0);
	assert_string_equal(since.buf, "");
	unit_exec_sql(db, "INSERT INTO new_t VALUES (2)");
	assert_int_equal(e->ops->writes_since(e, mark, &since, &err), 0);
	assert_string_equal(since.buf, "*\t?\n");

	/* the migration lock was held throughout */
	other = open_db(db);
	assert_int_equal(other->ops->lock(other, 0, &err), -1);
	assert_int_equal(err.kind, ERR_LOCKED);
	engine_close(other);

	sb_release(&since);
	sb_release(&written);
	free(mark);
	engine_close(e);
	free(db);
	free(repl);
}

static void test_reopen_with_nothing_at_the_path_keeps_the_connection(void **state)
{
	char *db = unit_path("gone.db");
	struct sm_error err = SM_ERROR_INIT;
	struct engine_identity id;
	struct engine *e;

	(void)state;
	unit_exec_sql(db, "CREATE TABLE t (x)");
	e = open_db(db);
	assert_int_equal(unlink(db), 0);
	assert_int_equal(e->ops->identity(e, &id, &err), -1);
	assert_int_equal(err.sys_errno, ENOENT);
	assert_int_equal(e->ops->reopen(e, &err), -1);
	/* still on the file it opened */
	assert_true(has_table(e, "t"));
	engine_close(e);
	free(db);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reopen_follows_a_file_renamed_over_the_path),
		cmocka_unit_test(test_reopen_with_nothing_at_the_path_keeps_the_connection),
	};

	return cmocka_run_group_tests(tests, setup, unit_dir_teardown);
}
