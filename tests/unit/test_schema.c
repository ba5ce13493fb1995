/*
 * Unit tests for the schema model (safety/schema.c): canonical text, its
 * parse-back, the fingerprint and the named differences.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "schema.h"

static void sample(struct schema_model *m)
{
	struct schema_obj *c;

	/* added out of order on purpose: canonical order sorts it */
	schema_add(m, SOBJ_VIEW, NULL, "v", "SELECT a\n\tFROM t");
	schema_add(m, SOBJ_INDEX, "t", "t_b", "CREATE INDEX t_b ON t (b)");
	c = schema_add(m, SOBJ_COLUMN, "t", "b", NULL);
	c->type = strdup("TEXT");
	c->dflt = strdup("'x\\y'");
	c->position = 2;
	c = schema_add(m, SOBJ_COLUMN, "t", "a", NULL);
	c->type = strdup("INTEGER");
	c->notnull = 1;
	c->position = 1;
	schema_add(m, SOBJ_TABLE, NULL, "t", NULL);
	schema_add(m, SOBJ_CONSTRAINT, "t", "pk", "PRIMARY KEY (a)");
	schema_add(m, SOBJ_SEQUENCE, NULL, "s", "AS bigint");
	schema_sort(m);
}

static void test_text_roundtrip(void **state)
{
	struct schema_model m = SCHEMA_MODEL_INIT, back = SCHEMA_MODEL_INIT;
	struct strbuf a = STRBUF_INIT, b = STRBUF_INIT;
	struct sm_error err = SM_ERROR_INIT;
	char fa[65], fb[65];

	(void)state;
	sample(&m);
	schema_canonical_text(&m, &a);
	assert_string_equal(a.buf,
			    "# safe-migrate schema v2\n"
			    "table\tt\n"
			    "column\tt\ta\tINTEGER\tnot null\tposition 1\n"
			    "column\tt\tb\tTEXT\tnull\tdefault 'x\\\\y'\tposition 2\n"
			    "constraint\tt\tpk\tPRIMARY KEY (a)\n"
			    "index\tt\tt_b\tCREATE INDEX t_b ON t (b)\n"
			    "view\tv\tSELECT a\\n\\tFROM t\n"
			    "sequence\ts\tAS bigint\n");
	assert_int_equal(schema_load_text(a.buf, "a", &back, &err), 0);
	schema_canonical_text(&back, &b);
	assert_string_equal(a.buf, b.buf);
	schema_fingerprint(a.buf, fa);
	schema_fingerprint(b.buf, fb);
	assert_string_equal(fa, fb);
	assert_int_equal(schema_diff(&m, &back, "x", "y", &(struct finding_list)FINDING_LIST_INIT),
			 0);
	schema_release(&m);
	schema_release(&back);
	sb_release(&a);
	sb_release(&b);
}

static int has_msg(const struct finding_list *l, const char *needle)
{
	for (size_t i = 0; i < l->n; i++)
		if (strstr(l->items[i].message, needle))
			return 1;
	return 0;
}

static void test_bad_text(void **state)
{
	struct schema_model m = SCHEMA_MODEL_INIT;
	struct sm_error err = SM_ERROR_INIT;

	(void)state;
	assert_int_equal(schema_load_text("table\tt\ncolumn\tt\tx\n", "f.txt", &m, &err), -1);
	assert_non_null(strstr(err.msg, "'f.txt', line 2"));
	assert_int_equal(schema_load_text("CREATE TABLE t (a int);\n", "f.txt", &m, &err), -1);
	assert_int_equal(schema_load_text("", "f.txt", &m, &err), 0);
	assert_int_equal(m.n, 0);
	/* a position is a whole number from 1, after the default */
	assert_int_equal(schema_load_text("column\tt\tx\tINT\tnull\tposition 0\n", "f.txt", &m,
					  &err), -1);
	assert_int_equal(schema_load_text("column\tt\tx\tINT\tnull\tposition 2x\n", "f.txt", &m,
					  &err), -1);
	assert_int_equal(schema_load_text("column\tt\tx\tINT\tnull\tposition 1\tdefault 1\n",
					  "f.txt", &m, &err), -1);
	assert_int_equal(schema_load_text("column\tt\tx\tINT\tnull\tposition 1\tposition 1\n",
					  "f.txt", &m, &err), -1);
	assert_int_equal(schema_load_text("column\tt\tx\tINT\tnull\tdefault 1\tdefault 1\n",
					  "f.txt", &m, &err), -1);
	assert_int_equal(m.n, 0);
}

/* A version 1 text (no positions: recorded before they were) reads back,
 * and no column order is compared against it. */
static void test_v1_text(void **state)
{
	struct schema_model now = SCHEMA_MODEL_INIT, old = SCHEMA_MODEL_INIT;
	struct finding_list l = FINDING_LIST_INIT;
	struct sm_error err = SM_ERROR_INIT;
	const char *v1 = "# safe-migrate schema v1\n"
			 "table\tt\n"
			 "column\tt\ta\tINTEGER\tnot null\n"
			 "column\tt\tb\tTEXT\tnull\tdefault 'x\\\\y'\n"
			 "constraint\tt\tpk\tPRIMARY KEY (a)\n"
			 "index\tt\tt_b\tCREATE INDEX t_b ON t (b)\n"
			 "view\tv\tSELECT a\\n\\tFROM t\n"
			 "sequence\ts\tAS bigint\n";

	(void)state;
	assert_true(schema_is_canonical_text(v1));
	assert_int_equal(schema_load_text(v1, "v1", &old, &err), 0);
	for (size_t i = 0; i < old.n; i++)
		assert_int_equal(old.items[i].position, 0);
	sample(&now);
	for (size_t i = 0; i < now.n; i++)
		if (now.items[i].kind == SOBJ_COLUMN)
			now.items[i].position = 3 - now.items[i].position;
	assert_int_equal(schema_diff(&old, &now, "drift", "the record", &l), 0);
	assert_int_equal(schema_diff(&now, &old, "drift", "the record", &l), 0);
	finding_list_release(&l);
	schema_release(&now);
	schema_release(&old);
}

/* Columns in another order: one finding a table, on the columns both
 * sides have (an added or dropped column moves the others' positions
 * without changing their order). */
static void test_column_order(void **state)
{
	struct schema_model a = SCHEMA_MODEL_INIT, b = SCHEMA_MODEL_INIT;
	struct finding_list l = FINDING_LIST_INIT;
	struct schema_obj *c;
	const char *cols[] = { "a", "b", "x" };
	const struct schema_obj **order;

	(void)state;
	schema_add(&a, SOBJ_TABLE, NULL, "t", NULL);
	schema_add(&b, SOBJ_TABLE, NULL, "t", NULL);
	for (int i = 0; i < 3; i++) {
		c = schema_add(&a, SOBJ_COLUMN, "t", cols[i], NULL);
		c->type = strdup("INT");
		c->position = i + 1;
		c = schema_add(&b, SOBJ_COLUMN, "t", cols[i], NULL);
		c->type = strdup("INT");
		c->position = i + 2; /* after "gone", dropped below */
	}
	c = schema_add(&b, SOBJ_COLUMN, "t", "gone", NULL);
	c->type = strdup("INT");
	c->position = 1;
	schema_sort(&a);
	schema_sort(&b);
	/* in the table's order, not the model's */
	assert_int_equal(schema_table_columns(&b, "t", &order), 4);
	assert_string_equal(order[0]->name, "gone");
	assert_string_equal(order[3]->name, "x");
	free(order);
	assert_int_equal(schema_diff(&b, &a, "drift", "the record", &l), 1);
	assert_true(has_msg(&l, "missing column 't.gone'"));
	finding_list_release(&l);

	/* x before b: (a, x, b) */
	for (size_t i = 0; i < b.n; i++) {
		if (b.items[i].kind == SOBJ_COLUMN && !strcmp(b.items[i].name, "x"))
			b.items[i].position = 3;
		else if (b.items[i].kind == SOBJ_COLUMN && !strcmp(b.items[i].name, "b"))
			b.items[i].position = 4;
	}
	assert_int_equal(schema_diff(&a, &b, "drift", "the record", &l), 2);
	assert_true(has_msg(&l, "table 't' column order changed: a, b, x in the record, a, x, b now"));
	assert_true(has_msg(&l, "extra column 't.gone'"));
	finding_list_release(&l);
	schema_release(&a);
	schema_release(&b);
}

static void test_diff(void **state)
{
	struct schema_model a = SCHEMA_MODEL_INIT, b = SCHEMA_MODEL_INIT;
	struct finding_list l = FINDING_LIST_INIT;
	struct schema_obj *c;

	(void)state;
	sample(&a);
	sample(&b);
	for (size_t i = 0; i < b.n; i++) {
		if (b.items[i].kind == SOBJ_COLUMN && !strcmp(b.items[i].name, "a")) {
			free(b.items[i].type);
			b.items[i].type = strdup("TEXT");
			b.items[i].notnull = 0;
		}
		if (b.items[i].kind == SOBJ_INDEX)
			b.items[i].invalid = 1;
		if (b.items[i].kind == SOBJ_CONSTRAINT) {
			free(b.items[i].def);
			b.items[i].def = strdup("PRIMARY KEY (a, b)");
		}
	}
	c = schema_add(&b, SOBJ_COLUMN, "t", "email", NULL);
	c->type = strdup("TEXT");
	schema_add(&b, SOBJ_TABLE, NULL, "extra", NULL);
	c = schema_add(&b, SOBJ_COLUMN, "extra", "id", NULL);
	c->type = strdup("INT");
	schema_sort(&b);
	/* drop the view from b */
	for (size_t i = 0; i < b.n; i++)
		if (b.items[i].kind == SOBJ_VIEW)
			b.items[i].name[0] = 'w';
	schema_sort(&b);

	assert_int_equal(schema_diff(&a, &b, "drift", "the record", &l), 8);
	assert_true(has_msg(&l, "constraint 'pk' on table 't' definition changed: 'PRIMARY KEY (a)' "
			    "in the record, 'PRIMARY KEY (a, b)' now"));
	assert_true(has_msg(&l, "column 't.a' type changed: INTEGER in the record, TEXT now"));
	assert_true(has_msg(&l, "column 't.a' nullability changed: NOT NULL in the record, NULL now"));
	assert_true(has_msg(&l, "index 't_b' on table 't' is invalid now"));
	assert_true(has_msg(&l, "extra column 't.email'"));
	assert_true(has_msg(&l, "extra table 'extra'"));
	assert_false(has_msg(&l, "extra column 'extra.id'")); /* reported with its table */
	assert_true(has_msg(&l, "missing view 'v'"));
	assert_true(has_msg(&l, "extra view 'w'"));
	for (size_t i = 0; i < l.n; i++) {
		assert_int_equal(l.items[i].level, LEVEL_FAIL);
		assert_string_equal(l.items[i].check_or_rule, "drift");
	}
	finding_list_release(&l);
	schema_release(&a);
	schema_release(&b);
}

static void test_text_diff(void **state)
{
	struct strbuf d = STRBUF_INIT;

	(void)state;
	schema_text_diff("# h\ntable\tt\ncolumn\tt\ta\tINT\tnull\n",
			 "# h\ntable\tt\ncolumn\tt\ta\tTEXT\tnull\n", &d);
	assert_string_equal(d.buf, "- column\tt\ta\tINT\tnull\n+ column\tt\ta\tTEXT\tnull\n");
	sb_release(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text_roundtrip),
		cmocka_unit_test(test_bad_text),
		cmocka_unit_test(test_v1_text),
		cmocka_unit_test(test_column_order),
		cmocka_unit_test(test_diff),
		cmocka_unit_test(test_text_diff),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
