/*
 * unit_sqlite: the scratch directory and the direct SQL the SQLite unit
 * tests share.  Include after cmocka.h, sqlite3.h and strbuf.h (and
 * unit_tmpdir.h first of all, as it says).
 */
#ifndef SM_UNIT_SQLITE_H
#define SM_UNIT_SQLITE_H

static char unit_dir[256];

/* A fresh directory /tmp/sm-unit-TAG-XXXXXX (cmocka group setup). */
static inline int unit_dir_make(const char *tag)
{
	snprintf(unit_dir, sizeof(unit_dir), "/tmp/sm-unit-%s-XXXXXX", tag);
	return mkdtemp(unit_dir) ? 0 : -1;
}

/* Removes it and everything in it (cmocka group teardown). */
static inline int unit_dir_teardown(void **state)
{
	(void)state;
	return unit_remove_tree(unit_dir);
}

/* name inside it; the caller frees the result. */
static inline char *unit_path(const char *name)
{
	struct strbuf sb = STRBUF_INIT;

	sb_addf(&sb, "%s/%s", unit_dir, name);
	return sb_detach(&sb);
}

/* Runs sql on the database at path over a connection of its own. */
static inline void unit_exec_sql(const char *path, const char *sql)
{
	sqlite3 *db = NULL;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
		fail_msg("%s: %s", sql, sqlite3_errmsg(db));
	sqlite3_close(db);
}

#endif
