/*
 * test_pg_archive: the PostgreSQL archive's typed table of contents: a toc
 * written by pga_toc_json reads back the same, a hostile toc (a slice out
 * of the script, a dependency on a later entry, an unknown lock mode) is
 * refused as damaged, the lock-conflict table is PostgreSQL's, and
 * pga_toc_sort orders entries on their dependencies as pg_dump's TopoSort,
 * and a toc's client encoding is one a snapshot is read in or refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pg_archive.h"
#include "strbuf.h"

/* Two entries: an index and a foreign key that needs it. */
static void build(struct pga_toc *t, struct strbuf *script)
{
	struct pga_entry *e;

	sb_adds(script, "-- header\n");
	e = pga_toc_add(t, script, "INDEX", "s.t_pkey", "CREATE INDEX i ON s.t (a);\n", 26);
	e->lock = PGA_LOCK_SHARE;
	pga_entry_add_table(e, "s.t");
	e = pga_toc_add(t, script, "FK CONSTRAINT", "s.u u_fkey",
			"ALTER TABLE ONLY s.u ADD CONSTRAINT u_fkey FOREIGN KEY (a) REFERENCES s.t(a);\n",
			78);
	e->lock = PGA_LOCK_SHARE_ROW_EXCLUSIVE;
	pga_entry_add_table(e, "s.u");
	pga_entry_add_table(e, "s.t");
	pga_entry_add_dep(e, 0);
}

/* Parses toc text (a JSON object) against a script of len bytes. */
static int parse(const char *text, size_t len, struct pga_toc *out)
{
	struct sm_error err = SM_ERROR_INIT;
	cJSON *toc = cJSON_Parse(text);
	int rc;

	assert_non_null(toc);
	rc = pga_toc_parse(toc, len, out, &err);
	if (rc < 0)
		assert_int_equal(err.kind, ERR_DAMAGED);
	cJSON_Delete(toc);
	return rc;
}

static void test_round_trip(void **state)
{
	struct pga_toc t = PGA_TOC_INIT, back = PGA_TOC_INIT;
	struct strbuf script = STRBUF_INIT;
	struct sm_error err = SM_ERROR_INIT;
	cJSON *toc = cJSON_CreateObject();

	(void)state;
	build(&t, &script);
	cJSON_AddItemToObject(toc, "post_data", pga_toc_json(&t));
	assert_int_equal(pga_toc_parse(toc, script.len, &back, &err), 0);
	assert_int_equal(back.n, 2);
	assert_string_equal(back.v[1].kind, "FK CONSTRAINT");
	assert_int_equal(back.v[1].lock, PGA_LOCK_SHARE_ROW_EXCLUSIVE);
	assert_int_equal(back.v[1].ntables, 2);
	assert_string_equal(back.v[1].tables[1], "s.t");
	assert_int_equal(back.v[1].ndeps, 1);
	assert_int_equal(back.v[1].deps[0], 0);
	assert_int_equal(back.v[0].offset, 10);
	assert_memory_equal(script.buf + back.v[1].offset, "ALTER TABLE ONLY s.u", 20);
	/* the same list under another key (pre-data's) reads the same */
	cJSON_AddItemToObject(toc, "pre_data", pga_toc_json(&t));
	assert_int_equal(pga_toc_parse_list(toc, "pre_data", script.len, &back, &err), 0);
	assert_int_equal(back.n, 2);
	assert_string_equal(back.v[0].name, "s.t_pkey");
	assert_int_equal(pga_toc_parse_list(toc, "pre_data", 20, &back, &err), -1);
	assert_int_equal(err.kind, ERR_DAMAGED);
	assert_non_null(strstr(err.msg, "pre_data"));
	cJSON_DeleteItemFromObject(toc, "pre_data");
	/* a version 1 toc has no entries, and that is no error */
	cJSON_DeleteItemFromObject(toc, "post_data");
	assert_int_equal(pga_toc_parse(toc, script.len, &back, &err), 0);
	assert_int_equal(back.n, 0);
	cJSON_Delete(toc);
	pga_toc_release(&t);
	pga_toc_release(&back);
	sb_release(&script);
}

/* An entry's dependencies are a set, kept in ascending order: two backups
 * of one database find them in whatever order the server's plan returns
 * the catalog's rows, and must write the same toc. */
static void test_deps_are_a_sorted_set(void **state)
{
	struct pga_toc t = PGA_TOC_INIT;
	struct strbuf script = STRBUF_INIT;
	const size_t in[] = { 7, 0, 3, 2, 7, 0, 5 }, want[] = { 0, 2, 3, 5, 7 };
	struct pga_entry *e;

	(void)state;
	for (int i = 0; i < 8; i++)
		pga_toc_add(&t, &script, "TABLE", "s.t", "SELECT 1;\n", 10);
	e = &t.v[7];
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++)
		pga_entry_add_dep(e, in[i]);
	assert_int_equal(e->ndeps, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < e->ndeps; i++)
		assert_int_equal(e->deps[i], want[i]);
	pga_toc_release(&t);
	sb_release(&script);
}

static void test_hostile_tocs(void **state)
{
	static const char *const bad[] = {
		/* the slice runs past the script */
		"{\"post_data\": [{\"kind\": \"INDEX\", \"name\": \"i\", \"tables\": [], \"lock\": \"\", "
		"\"deps\": [], \"offset\": 90, \"length\": 20}]}",
		/* a negative or fractional offset */
		"{\"post_data\": [{\"kind\": \"INDEX\", \"name\": \"i\", \"tables\": [], \"lock\": \"\", "
		"\"deps\": [], \"offset\": -1, \"length\": 2}]}",
		"{\"post_data\": [{\"kind\": \"INDEX\", \"name\": \"i\", \"tables\": [], \"lock\": \"\", "
		"\"deps\": [], \"offset\": 1.5, \"length\": 2}]}",
		/* a dependency on itself or a later entry: no order runs it */
		"{\"post_data\": [{\"kind\": \"INDEX\", \"name\": \"i\", \"tables\": [], \"lock\": \"\", "
		"\"deps\": [0], \"offset\": 0, \"length\": 2}]}",
		/* a lock mode PostgreSQL does not have */
		"{\"post_data\": [{\"kind\": \"INDEX\", \"name\": \"i\", \"tables\": [\"t\"], "
		"\"lock\": \"VERY SHARE\", \"deps\": [], \"offset\": 0, \"length\": 2}]}",
		/* more tables than an entry may lock, a missing kind, not a list */
		"{\"post_data\": [{\"kind\": \"INDEX\", \"name\": \"i\", \"tables\": [\"a\", \"b\", \"c\"], "
		"\"lock\": \"SHARE\", \"deps\": [], \"offset\": 0, \"length\": 2}]}",
		"{\"post_data\": [{\"name\": \"i\", \"tables\": [], \"lock\": \"\", \"deps\": [], "
		"\"offset\": 0, \"length\": 2}]}",
		"{\"post_data\": {}}",
	};
	struct pga_toc t = PGA_TOC_INIT;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		assert_int_equal(parse(bad[i], 100, &t), -1);
		assert_int_equal(t.n, 0);
	}
	assert_int_equal(parse("{\"post_data\": [{\"kind\": \"INDEX\", \"name\": \"i\", \"tables\": "
			       "[\"t\"], \"lock\": \"SHARE\", \"deps\": [], \"offset\": 98, "
			       "\"length\": 2}]}", 100, &t), 0);
	assert_int_equal(t.n, 1);
	pga_toc_release(&t);
}

static void test_lock_conflicts(void **state)
{
	(void)state;
	/* index builds on one table run together; not with ADD CONSTRAINT */
	assert_false(pga_locks_conflict(PGA_LOCK_SHARE, PGA_LOCK_SHARE));
	assert_true(pga_locks_conflict(PGA_LOCK_SHARE, PGA_LOCK_ACCESS_EXCLUSIVE));
	/* two foreign keys on one table wait for each other, and for an index */
	assert_true(pga_locks_conflict(PGA_LOCK_SHARE_ROW_EXCLUSIVE, PGA_LOCK_SHARE_ROW_EXCLUSIVE));
	assert_true(pga_locks_conflict(PGA_LOCK_SHARE_ROW_EXCLUSIVE, PGA_LOCK_SHARE));
	assert_false(pga_locks_conflict(PGA_LOCK_ACCESS_SHARE, PGA_LOCK_EXCLUSIVE));
	assert_true(pga_locks_conflict(PGA_LOCK_ROW_EXCLUSIVE, PGA_LOCK_SHARE));
	assert_false(pga_locks_conflict(PGA_LOCK_ROW_EXCLUSIVE, PGA_LOCK_ROW_EXCLUSIVE));
	assert_false(pga_locks_conflict(PGA_LOCK_NONE, PGA_LOCK_ACCESS_EXCLUSIVE));
	/* the table is symmetric */
	for (int a = PGA_LOCK_NONE; a <= PGA_LOCK_ACCESS_EXCLUSIVE; a++)
		for (int b = PGA_LOCK_NONE; b <= PGA_LOCK_ACCESS_EXCLUSIVE; b++)
			assert_int_equal(pga_locks_conflict((enum pga_lock)a, (enum pga_lock)b),
					 pga_locks_conflict((enum pga_lock)b, (enum pga_lock)a));
	assert_string_equal(pga_lock_name(PGA_LOCK_SHARE_UPDATE_EXCLUSIVE), "SHARE UPDATE EXCLUSIVE");
	/* every mode reads back from its name; others are no mode */
	for (int m = PGA_LOCK_NONE; m <= PGA_LOCK_ACCESS_EXCLUSIVE; m++)
		assert_int_equal(pga_lock_parse(pga_lock_name((enum pga_lock)m)), m);
	assert_int_equal(pga_lock_parse("share"), -1);
}

/* Appends an entry whose SQL is "<name>\n". */
static struct pga_entry *add(struct pga_toc *t, struct strbuf *script, const char *name)
{
	struct strbuf sql = STRBUF_INIT;
	struct pga_entry *e;

	sb_addf(&sql, "%s\n", name);
	e = pga_toc_add(t, script, "X", name, sql.buf, sql.len);
	sb_release(&sql);
	return e;
}

static void test_sort(void **state)
{
	struct pga_toc t = PGA_TOC_INIT;
	struct strbuf script = STRBUF_INIT;
	size_t at = SIZE_MAX;

	(void)state;
	/* already in order: nothing moves, the script is the same bytes */
	sb_adds(&script, "-- header\n");
	add(&t, &script, "a");
	pga_entry_add_dep(add(&t, &script, "b"), 0);
	assert_int_equal(pga_toc_sort(&t, &script, &at), 0);
	assert_string_equal(script.buf, "-- header\na\nb\n");
	pga_toc_release(&t);
	sb_reset(&script);

	/* c needs e, a later entry: e moves to just before c, and only that */
	sb_adds(&script, "-- header\n");
	add(&t, &script, "a");
	add(&t, &script, "b");
	pga_entry_add_dep(add(&t, &script, "c"), 4);
	pga_entry_add_dep(add(&t, &script, "d"), 2);
	add(&t, &script, "e");
	add(&t, &script, "f");
	assert_int_equal(pga_toc_sort(&t, &script, &at), 0);
	assert_string_equal(script.buf, "-- header\na\nb\ne\nc\nd\nf\n");
	assert_string_equal(t.v[2].name, "e");
	assert_string_equal(t.v[3].name, "c");
	/* the slices and the dependencies follow their entries */
	for (size_t i = 0; i < t.n; i++) {
		assert_int_equal(t.v[i].len, 2);
		assert_memory_equal(script.buf + t.v[i].offset, t.v[i].name, 1);
	}
	assert_int_equal(t.v[3].ndeps, 1);
	assert_int_equal(t.v[3].deps[0], 2);
	assert_int_equal(t.v[4].deps[0], 3);
	pga_toc_release(&t);
	sb_reset(&script);

	/* a cycle is refused, and nothing changes */
	sb_adds(&script, "-- header\n");
	pga_entry_add_dep(add(&t, &script, "a"), 1);
	pga_entry_add_dep(add(&t, &script, "b"), 0);
	add(&t, &script, "c");
	assert_int_equal(pga_toc_sort(&t, &script, &at), -1);
	assert_true(at < 2);
	assert_string_equal(script.buf, "-- header\na\nb\nc\n");
	assert_string_equal(t.v[0].name, "a");
	pga_toc_release(&t);
	sb_release(&script);
}

/* The client encoding a snapshot is read in: UTF8, or the database's own
 * where the server has no conversion to UTF8; a toc says it, an older one
 * (no field) means UTF8, and any other value is refused. */
static void test_encodings(void **state)
{
	cJSON *toc = cJSON_CreateObject();

	(void)state;
	assert_string_equal(pga_encoding(NULL), PGA_ENCODING_UTF8);
	assert_string_equal(pga_encoding(toc), PGA_ENCODING_UTF8);
	cJSON_AddStringToObject(toc, PGA_TOC_ENCODING, "SQL_ASCII");
	assert_string_equal(pga_encoding(toc), "SQL_ASCII");
	cJSON_ReplaceItemInObjectCaseSensitive(toc, PGA_TOC_ENCODING, cJSON_CreateString("KOI8R"));
	assert_null(pga_encoding(toc));
	/* (the spelling the server reports, and no other: a set_config value) */
	cJSON_ReplaceItemInObjectCaseSensitive(toc, PGA_TOC_ENCODING,
					       cJSON_CreateString("sql_ascii'; DROP"));
	assert_null(pga_encoding(toc));
	cJSON_ReplaceItemInObjectCaseSensitive(toc, PGA_TOC_ENCODING, cJSON_CreateNumber(6));
	assert_null(pga_encoding(toc));
	cJSON_Delete(toc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_deps_are_a_sorted_set),
		cmocka_unit_test(test_hostile_tocs),
		cmocka_unit_test(test_lock_conflicts),
		cmocka_unit_test(test_sort),
		cmocka_unit_test(test_encodings),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
