/*
 * Unit tests for safety/impact.c: sizes, what each PostgreSQL lock mode
 * blocks, the gates, and held and waited times over a hand-built
 * measurement.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "impact_impl.h"
#include "xalloc.h"

static void test_parse_size(void **state)
{
	long long b = 0;

	(void)state;
	assert_int_equal(impact_parse_size("4096", &b), 0);
	assert_int_equal(b, 4096);
	assert_int_equal(impact_parse_size("100MB", &b), 0);
	assert_int_equal(b, 100LL << 20);
	assert_int_equal(impact_parse_size("512kB", &b), 0);
	assert_int_equal(b, 512LL << 10);
	assert_int_equal(impact_parse_size("1.5 GB", &b), 0);
	assert_int_equal(b, 3LL << 29);
	assert_int_equal(impact_parse_size("lots", &b), -1);
	assert_int_equal(impact_parse_size("10 parsecs", &b), -1);
	assert_int_equal(impact_parse_size("-1MB", &b), -1);
}

static void test_pg_blocks(void **state)
{
	(void)state;
	assert_int_equal(impact_pg_blocks("AccessExclusiveLock"), IMPACT_READS);
	assert_int_equal(impact_pg_blocks("ExclusiveLock"), IMPACT_WRITES);
	assert_int_equal(impact_pg_blocks("ShareRowExclusiveLock"), IMPACT_WRITES);
	assert_int_equal(impact_pg_blocks("ShareLock"), IMPACT_WRITES);
	assert_int_equal(impact_pg_blocks("ShareUpdateExclusiveLock"), IMPACT_DDL);
	assert_int_equal(impact_pg_blocks("RowExclusiveLock"), IMPACT_DDL);
	assert_int_equal(impact_pg_blocks("AccessShareLock"), IMPACT_DDL);
}

/* One migration, one statement locking an existing table, one a new one. */
static void test_gate(void **state)
{
	struct impact imp;
	struct impact_mig mig = { (char *)"migrations/0001_a.sql", 0, 3000, 1 };
	struct impact_stmt st[2];
	struct impact_window wins[2];
	struct strbuf sb = STRBUF_INIT;
	struct impact_rel *r;

	(void)state;
	memset(&imp, 0, sizeof(imp));
	memset(st, 0, sizeof(st));
	imp.migs = &mig;
	imp.n_migs = 1;
	imp.stmts = st;
	imp.n_stmts = 2;
	imp.wins = wins;
	imp.wins_alloc = 2;
	st[0].line = 2;
	st[0].text = (char *)"ALTER TABLE t ADD COLUMN r float8 DEFAULT random()";
	st[0].start_us = 1000;
	st[0].us = 1500;
	st[0].in_tx = 1;
	r = impact_add_rel(&st[0], "t", "table", "AccessExclusiveLock");
	r->blocks = IMPACT_READS;
	r->rewritten = 1;
	r->existing = 1;
	r->bytes = 2 << 20;
	r->rows = 100;
	st[1].line = 3;
	st[1].text = (char *)"CREATE TABLE n (x int)";
	st[1].start_us = 2500;
	st[1].us = 500;
	st[1].in_tx = 1;
	r = impact_add_rel(&st[1], "n", "table", "AccessExclusiveLock");
	r->blocks = IMPACT_READS;
	r->bytes = 0;
	r->rows = 0;
	impact_end(&imp);
	assert_int_equal(imp.n_wins, 2);
	/* from the first blocking statement's start to the end of the migration */
	assert_int_equal(imp.wins[0].us, 2000);
	assert_int_equal(impact_gate(&imp, 2, -1, &sb), 0);
	assert_int_equal(impact_gate(&imp, 1, -1, &sb), 1);
	assert_non_null(strstr(sb.buf, "migrations/0001_a.sql line 2"));
	assert_non_null(strstr(sb.buf, "blocks reads to t for 2.0 ms"));
	sb_reset(&sb);
	assert_int_equal(impact_gate(&imp, -1, 1 << 20, &sb), 1);
	assert_non_null(strstr(sb.buf, "rewrites table t (2.0 MB), over --max-rewrite 1.0 MB"));
	sb_reset(&sb);
	assert_int_equal(impact_gate(&imp, -1, 4 << 20, &sb), 0);
	sb_release(&sb);
	for (int i = 0; i < 2; i++) {
		free(st[i].rels[0].name);
		free(st[i].rels[0].mode);
		free(st[i].rels);
	}
}

/* A statement outside a transaction, watched while it ran (held and waited
 * as the watcher measured them), and one inside, held to the transaction's
 * end: the text, the JSON and the page carry both. */
static void test_held_and_waited(void **state)
{
	struct impact imp;
	struct impact_mig migs[2] = { { (char *)"migrations/0001_a.sql", 0, 3000, 1 },
				      { (char *)"migrations/0002_c.sql", 3000, 5000, 0 } };
	struct impact_stmt st[2];
	struct strbuf sb = STRBUF_INIT;
	struct impact_rel *r;
	cJSON *js, *rel;

	(void)state;
	memset(&imp, 0, sizeof(imp));
	memset(st, 0, sizeof(st));
	imp.rehearsal = "rehearse-url";
	imp.migs = migs;
	imp.n_migs = 2;
	imp.stmts = st;
	imp.n_stmts = 2;
	st[0].line = 2;
	st[0].text = (char *)"ALTER TABLE t ALTER COLUMN x SET NOT NULL";
	st[0].start_us = 1000;
	st[0].us = 500;
	st[0].in_tx = st[0].observed = st[0].ok = 1;
	r = impact_add_rel(&st[0], "t", "table", "AccessExclusiveLock");
	r->new_lock = "AccessExclusiveLock";
	r->blocks = r->new_blocks = IMPACT_READS;
	st[1].mig = 1;
	st[1].line = 2;
	st[1].text = (char *)"CREATE INDEX CONCURRENTLY t_x ON t (x)";
	st[1].start_us = 3000;
	st[1].us = 2000;
	st[1].observed = st[1].ok = 1;
	r = impact_add_rel(&st[1], "t", "table", "ShareUpdateExclusiveLock");
	r->new_lock = "ShareUpdateExclusiveLock";
	r->blocks = r->new_blocks = IMPACT_DDL;
	r->held_us = 500;
	r->waited_us = 1500;
	impact_end(&imp);
	/* inside the transaction: from the statement to the migration's end */
	assert_int_equal(st[0].rels[0].held_us, 2000);
	assert_int_equal(st[0].rels[0].waited_us, -1);
	impact_render_text(&imp, &sb);
	assert_non_null(strstr(sb.buf, "waited: migrations/0002_c.sql line 2 waited 1.5 ms for "
				       "ShareUpdateExclusiveLock on t"));
	assert_null(strstr(sb.buf, "not observed"));
	assert_non_null(strstr(sb.buf, "lock), then held it 0.5 ms"));
	/* a statement that gave up waiting (lock_timeout) */
	st[1].ok = 0;
	sb_reset(&sb);
	impact_render_text(&imp, &sb);
	assert_non_null(strstr(sb.buf, "lock), then failed"));
	assert_non_null(strstr(sb.buf, "(failed) CREATE INDEX CONCURRENTLY"));
	st[1].ok = 1;
	sb_reset(&sb);
	impact_render_html(&imp, &sb);
	assert_non_null(strstr(sb.buf, "<td>0.5</td><td>1.5</td>"));
	assert_non_null(strstr(sb.buf, "(1.5 ms of it waiting for the lock)"));
	js = impact_to_json(&imp);
	rel = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(
		cJSON_GetArrayItem(cJSON_GetObjectItem(js, "migrations"), 1), "statements"), 0),
		"relations"), 0);
	assert_true(cJSON_GetObjectItem(rel, "held_ms")->valuedouble == 0.5);
	assert_true(cJSON_GetObjectItem(rel, "waited_ms")->valuedouble == 1.5);
	rel = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(
		cJSON_GetArrayItem(cJSON_GetObjectItem(js, "migrations"), 0), "statements"), 0),
		"relations"), 0);
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(rel, "waited_ms")));
	cJSON_Delete(js);
	sb_release(&sb);
	free(imp.wins);
	for (int i = 0; i < 2; i++) {
		free(st[i].rels[0].name);
		free(st[i].rels[0].mode);
		free(st[i].rels);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_pg_blocks),
		cmocka_unit_test(test_gate),
		cmocka_unit_test(test_held_and_waited),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
