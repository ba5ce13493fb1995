"""The lint as commands use it (issue 18 section 2): --ignore and the config
key lint_ignore, down sections read by the default lint, `safe-migrate
TARGET` linting only up to TARGET, `run` not claiming to know the wrapped
tool's migrations, and on PostgreSQL the rules that read the live schema
(binary-coercible type changes) or hide in DO blocks."""
import sqlite3

from smtest import CliTest, main


class LintSqlite(CliTest):
    def setUp(self):
        super().setUp()
        self.write("safe-migrate.ini", "[safe-migrate]\ndatabase_url = sqlite:///app.db\n")
        con = sqlite3.connect(self.path("app.db"))
        con.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT)")
        con.close()

    def test_ignore_flag_and_config(self):
        self.write("migrations/0001_col.sql", "ALTER TABLE orders DROP COLUMN note;\n")
        self.write("migrations/0002_drop.sql", "DROP TABLE orders;\n")
        r = self.ok("lint")
        self.assertIn("drop-table", r.out)
        self.assertIn("drop-column", r.out)
        r = self.ok("lint", "--ignore", "drop-table", "--json").json()
        rules = [f["rule"] for f in r["findings"]]
        self.assertNotIn("drop-table", rules)
        self.assertIn("drop-column", rules)
        # RULE:VERSION silences it for that migration only
        r = self.ok("lint", "--ignore", "drop-column:0002", "--json").json()
        self.assertIn("drop-column", [f["rule"] for f in r["findings"]])
        r = self.ok("lint", "--ignore", "drop-column:0001", "--json").json()
        self.assertNotIn("drop-column", [f["rule"] for f in r["findings"]])
        r = self.code(2, "lint", "--ignore", "no-such-rule")
        self.assertIn("no lint rule 'no-such-rule'", r.err)
        self.write("safe-migrate.ini", "[safe-migrate]\ndatabase_url = sqlite:///app.db\n"
                   "lint_ignore = drop-table, drop-column:0001\n")
        r = self.ok("lint", "--json").json()
        rules = [f["rule"] for f in r["findings"]]
        self.assertNotIn("drop-table", rules)
        self.assertNotIn("drop-column", rules)
        r = self.ok("safety-check", "--ignore", "update-or-delete-without-where", "--json").json()
        self.assertNotIn("update-or-delete-without-where",
                         [f.get("rule") for f in r["findings"]])

    def test_scratch_copy_holds_what_the_migrations_reach(self):
        """The scratch schema gets the live objects a migration names and
        what they reach (a trigger's table, a view), once: what one
        migration drops stays dropped for the next, and a name taken in the
        live schema is still taken."""
        con = sqlite3.connect(self.path("app.db"))
        con.executescript(
            "CREATE TABLE audit (id INTEGER PRIMARY KEY, what TEXT);"
            "CREATE TRIGGER orders_ins AFTER INSERT ON orders BEGIN "
            "INSERT INTO audit (what) VALUES ('order ' || NEW.id); END;"
            "CREATE VIEW recent AS SELECT o.id, a.what FROM orders o JOIN audit a ON a.id = o.id;"
            "CREATE TABLE y (z INT);" +
            "".join("CREATE TABLE t%d (id INTEGER PRIMARY KEY, v TEXT UNIQUE);" % i
                    for i in range(50)))
        con.close()
        self.write("migrations/0001_ins.sql", "INSERT INTO orders (note) VALUES ('a');\n")
        self.write("migrations/0002_drop.sql", "DROP TABLE y;\n")
        self.write("migrations/0003_again.sql", "CREATE TABLE y (z INT);\n")
        self.write("migrations/0004_col.sql", "ALTER TABLE audit RENAME COLUMN what TO what2;\n"
                   "SELECT what2 FROM recent;\n")
        self.write("migrations/0005_taken.sql", "ALTER TABLE orders RENAME TO t7;\n")
        r = self.code(4, "lint", "--json").json()
        errors = [(f["file"], f["message"]) for f in r["findings"] if f["rule"] == "sql-error"]
        self.assertEqual(len(errors), 1, r["findings"])
        self.assertIn("0005_taken.sql", errors[0][0])
        self.assertIn("t7", errors[0][1])
        self.assertIn("drop-table", [f["rule"] for f in r["findings"]])

    def test_an_earlier_query_only_does_not_hide_the_live_tables(self):
        # query_only from an earlier migration holds for the later ones,
        # whose writes fail as they will, not as "no such table"
        self.write("migrations/0001_ro.sql",
                   "-- migrate:up transaction:false\nPRAGMA query_only = 1;\n")
        self.write("migrations/0002_w.sql", "INSERT INTO orders(note) VALUES ('x');\n")
        r = self.code(4, "lint", "--json").json()
        errors = [f["message"] for f in r["findings"] if f["rule"] == "sql-error"]
        self.assertEqual(errors, ["attempt to write a readonly database"])
        # without it, the same migration is clean
        self.write("migrations/0001_ro.sql", "-- migrate:up\nSELECT 1;\n")
        self.ok("lint")

    def test_default_lint_reads_down_sections(self):
        self.write("migrations/0001_a.sql", "-- migrate:up\nCREATE TABLE a (x INT);\n"
                   "-- migrate:down\nDROP TABLE a;\n")
        self.write("migrations/0002_b.up.sql", "CREATE TABLE b (x INT);\n")
        self.write("migrations/0002_b.down.sql", "DROP TABLE bb;\n")
        self.write("migrations/0003_c.sql", "CREATE TABLE c (x INT);\n")
        r = self.code(4, "lint")
        self.assertRegex(r.out, r"FAIL .*0002_b\.down\.sql:1: sql-error: down section: no such "
                         r"table: bb")
        # dropping what the up created is what a down does: not reported
        self.assertNotIn("drop-table", r.out)
        self.write("migrations/0002_b.down.sql", "DROP TABLE b;\n")
        self.ok("lint")

    def test_safe_migrate_target_lints_only_up_to_it(self):
        self.write("migrations/0001_a.sql", "CREATE TABLE a (x INT);\n")
        self.write("migrations/0002_bad.sql", "ALTER TABLE nosuch ADD COLUMN y INT;\n")
        r = self.code(4, "safe-migrate", "--no-backup")
        self.assertIn("sql-error", r.out + r.err)
        r = self.ok("safe-migrate", "0001", "--no-backup", "--json").json()
        self.assertEqual(r["outcome"], "applied")
        self.assertEqual(r["applied"], ["0001"])

    def test_run_does_not_claim_no_pending(self):
        self.write("migrations/0001_a.sql", "CREATE TABLE a (x INT);\n")
        r = self.ok("run", "--no-backup", "--json", "--", "true").json()
        checks = [f for f in r["findings"] if f.get("check") == "pending-migrations"]
        self.assertEqual(len(checks), 1, r)
        self.assertEqual(checks[0]["level"], "warn")
        self.assertIn("wrapped command's migrations are not known", checks[0]["message"])


class LintPg(CliTest):
    def setUp(self):
        super().setUp()
        self.url = self.pg_new_db()
        self.write("safe-migrate.ini", "[safe-migrate]\ndatabase_url = %s\n" % self.url)
        self.psql(self.url, "CREATE TABLE items (id int, name varchar(10), price numeric(10,2), "
                  "n int)")

    def rules(self, *args):
        r = self.run_sm("lint", "--json", *args)
        self.assertIn(r.code, (0, 4), r)
        return [(f["rule"], f["message"]) for f in r.json()["findings"]]

    def test_binary_coercible_changes_read_the_live_schema(self):
        self.write("migrations/0001_widen.sql",
                   "SET lock_timeout = '5s';\n"
                   "ALTER TABLE items ALTER COLUMN name TYPE varchar(50);\n"
                   "ALTER TABLE items ALTER COLUMN price TYPE numeric(14,2);\n")
        self.assertNotIn("column-type-change", [r for r, _ in self.rules()])
        self.write("migrations/0002_rewrite.sql",
                   "SET lock_timeout = '5s';\nALTER TABLE items ALTER COLUMN n TYPE bigint;\n")
        found = [m for r, m in self.rules() if r == "column-type-change"]
        self.assertEqual(len(found), 1, found)
        self.assertIn("'n'", found[0])

    def test_do_blocks_and_lock_timeout(self):
        self.write("migrations/0001_do.sql",
                   "DO $$\nBEGIN\n  IF NOT EXISTS (SELECT 1) THEN\n"
                   "    CREATE INDEX items_name ON items (name);\n  END IF;\n"
                   "  EXECUTE format('DROP INDEX %I', 'x');\nEND $$;\n")
        rules = [r for r, _ in self.rules()]
        self.assertIn("create-index-non-concurrently", rules)
        self.assertIn("missing-lock-timeout", rules)
        self.assertIn("dynamic-sql", rules)

    def test_table_created_earlier_in_the_run(self):
        self.write("migrations/0001_t.sql", "CREATE TABLE t (a int);\n")
        self.write("migrations/0002_col.sql", "ALTER TABLE t ADD COLUMN b int NOT NULL;\n")
        self.assertNotIn("adding-not-null-column-without-default", [r for r, _ in self.rules()])
        self.ok("safe-migrate", "--no-backup")
        self.write("migrations/0003_col.sql", "ALTER TABLE t ADD COLUMN c int NOT NULL;\n")
        self.assertIn("adding-not-null-column-without-default", [r for r, _ in self.rules()])


if __name__ == "__main__":
    main()
