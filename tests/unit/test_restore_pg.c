/*
 * test_restore_pg: the SQL the PostgreSQL restore sends for what the
 * snapshot's toc describes.  A table's COPY names its rows' format and
 * FREEZE; a foreign key's post-data entry runs without hash joins after
 * COPY FREEZE (index-only scans then read no heap page), and as it is
 * otherwise; every other entry runs as it is.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "restore_pg_int.h"

static const char fk_sql[] =
	"ALTER TABLE ONLY s.u ADD CONSTRAINT u_fkey FOREIGN KEY (a) REFERENCES s.t(a);\n";
static const char index_sql[] = "CREATE INDEX i ON s.t (a);\n";

static void test_entry_sql(void **state)
{
	struct pg_meta m = PG_META_INIT;
	struct strbuf sql = STRBUF_INIT;
	const char *at;

	(void)state;
	pga_toc_add(&m.post_toc, &m.post, "INDEX", "s.i", index_sql, strlen(index_sql));
	pga_toc_add(&m.post_toc, &m.post, "FK CONSTRAINT", "s.u u_fkey", fk_sql, strlen(fk_sql));
	pgr_entry_sql(&sql, &m, &m.post_toc.v[1], 1);
	at = strstr(sql.buf, fk_sql);
	assert_non_null(at);
	assert_non_null(strstr(sql.buf, "SET LOCAL enable_hashjoin = off;"));
	assert_true(strstr(sql.buf, "SET LOCAL enable_hashjoin = off;") < at);
	assert_non_null(strstr(at, "SET LOCAL enable_hashjoin TO DEFAULT;"));
	sb_reset(&sql);
	pgr_entry_sql(&sql, &m, &m.post_toc.v[1], 0);
	assert_string_equal(sql.buf, fk_sql);
	sb_reset(&sql);
	pgr_entry_sql(&sql, &m, &m.post_toc.v[0], 1);
	assert_string_equal(sql.buf, index_sql);
	sb_release(&sql);
	pgr_meta_release(&m);
}

static void test_copy_sql(void **state)
{
	cJSON *text = cJSON_Parse("{\"qualified\": \"s.t\", \"columns\": \"(a, b)\"}");
	cJSON *bin = cJSON_Parse("{\"qualified\": \"s.t\", \"columns\": \"(a, b)\", "
				 "\"format\": \"binary\"}");
	struct strbuf sql = STRBUF_INIT;

	(void)state;
	pgr_copy_sql(&sql, text, 0);
	assert_string_equal(sql.buf, "COPY s.t (a, b) FROM STDIN");
	sb_reset(&sql);
	pgr_copy_sql(&sql, text, 1);
	assert_string_equal(sql.buf, "COPY s.t (a, b) FROM STDIN (FREEZE)");
	sb_reset(&sql);
	pgr_copy_sql(&sql, bin, 0);
	assert_string_equal(sql.buf, "COPY s.t (a, b) FROM STDIN (FORMAT binary)");
	sb_reset(&sql);
	pgr_copy_sql(&sql, bin, 1);
	assert_string_equal(sql.buf, "COPY s.t (a, b) FROM STDIN (FORMAT binary, FREEZE)");
	sb_release(&sql);
	cJSON_Delete(text);
	cJSON_Delete(bin);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_entry_sql),
		cmocka_unit_test(test_copy_sql),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
