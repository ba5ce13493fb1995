"""The migration commands' contract, tested once for every engine.

MigrationContract holds the tests that must pass on SQLite and PostgreSQL
alike; test_migrate_sqlite.py and test_migrate_pg.py mix it into a CliTest
that provides the engine's side:

    has_table(name, url=None)   name is unquoted; url defaults to self.url
    versions(url=None)          applied versions, in order
    columns(table)              column names, in order
    count(table)                row count
    second_db()                 URL of another, empty database
    SERIAL_PK                   column type of an auto-numbered primary key
    MISSING_TABLE               the engine's message for an unknown table
"""


class MigrationContract:
    def test_chain_with_failure_keeps_earlier_and_leaves_no_trace(self):
        self.write("migrations/0001_users.sql",
                   "-- migrate:up\nCREATE TABLE users (id %s, name TEXT);\n"
                   "-- migrate:down\nDROP TABLE users;\n" % self.SERIAL_PK)
        self.write("migrations/0002_orders.up.sql", "CREATE TABLE orders (id INTEGER);\n")
        self.write("migrations/0002_orders.down.sql", "DROP TABLE orders;\n")
        self.write("migrations/0003_bad.sql",
                   "ALTER TABLE users ADD COLUMN email TEXT;\n"
                   "INSERT INTO users(name) VALUES ('x');\n"
                   "-- a comment before the failing statement\n"
                   "INSERT INTO missing_table VALUES (1);\n"
                   "CREATE TABLE never (x INT);\n")
        self.write("migrations/0004_after.sql", "CREATE TABLE after_bad (x INT);\n")
        r = self.code(1, "upgrade")
        self.assertIn("0003_bad.sql', line 4", r.err)
        self.assertIn(self.MISSING_TABLE, r.err)
        self.assertEqual(self.columns("users"), ["id", "name"])  # 0003 left no trace
        self.assertEqual(self.count("users"), 0)
        self.assertFalse(self.has_table("never"))
        self.assertFalse(self.has_table("after_bad"))
        self.assertEqual(self.versions(), ["0001", "0002"])
        self.code(3, "check")
        self.assertEqual(self.run_sm("current", "--json").json()["pending"], ["0003", "0004"])

    def test_upgrade_targets_and_downgrade(self):
        self.chain(4)
        self.ok("upgrade", "+2")
        self.assertEqual(self.run_sm("current").out.strip(), "0002")
        self.ok("upgrade", "0003")
        self.assertEqual(self.run_sm("current").out.strip(), "0003")
        self.code(2, "upgrade", "+9")
        self.code(2, "upgrade", "+x")
        self.code(2, "upgrade", "9999")
        self.ok("upgrade")
        self.code(0, "check")
        self.assertTrue(self.has_table("t4"))
        self.ok("downgrade", "-1")
        self.assertEqual(self.run_sm("current").out.strip(), "0003")
        self.assertFalse(self.has_table("t4"))
        self.ok("downgrade", "0001")
        self.assertEqual(self.run_sm("current").out.strip(), "0001")
        self.code(2, "downgrade", "-0")
        self.ok("downgrade", "base")
        self.assertEqual(self.run_sm("current").out.strip(), "base")
        self.assertEqual([t for t in ("t1", "t2", "t3", "t4") if self.has_table(t)], [])

    def test_current_and_history(self):
        self.chain(3)
        self.ok("upgrade", "+1")
        r = self.ok("current", "--json").json()
        self.assertEqual(r, {"current": "0001", "head": "0003", "pending": ["0002", "0003"]})
        r = self.ok("history")
        self.assertRegex(r.out, r"0001\s+applied")
        self.assertRegex(r.out, r"0002\s+pending")
        r = self.ok("history", "--json").json()
        self.assertEqual([m["version"] for m in r["migrations"]], ["0001", "0002", "0003"])

    def test_no_down_section_is_refused(self):
        self.write("migrations/0001_a.sql", "CREATE TABLE a (x INT);\n")
        self.ok("upgrade")
        r = self.code(1, "downgrade", "-1")
        self.assertIn("no down section", r.err)
        self.assertIn("restore", r.err)
        self.assertTrue(self.has_table("a"))
        self.assertEqual(self.versions(), ["0001"])

    def test_edited_applied_migration(self):
        p = self.write("migrations/0001_a.sql", "CREATE TABLE a (x INT);\n")
        self.write("migrations/0002_b.sql", "CREATE TABLE b (x INT);\n")
        self.ok("upgrade", "0001")
        with open(p, "a") as f:
            f.write("CREATE TABLE sneaky (x INT);\n")
        r = self.code(1, "upgrade")
        self.assertIn("edited", r.err)
        self.assertIn("0001_a.sql", r.err)
        self.assertFalse(self.has_table("b"))
        r = self.code(1, "check")
        self.assertIn("edited", r.err)
        r = self.ok("history")
        self.assertIn("EDITED", r.out)
        self.ok("stamp", "0001")
        self.ok("upgrade")
        self.code(0, "check")
        self.assertTrue(self.has_table("b"))
        self.assertFalse(self.has_table("sneaky"))

    def test_duplicate_versions_name_both_files(self):
        self.write("migrations/0001_a.sql", "CREATE TABLE a (x INT);\n")
        self.write("migrations/1_b.sql", "CREATE TABLE b (x INT);\n")
        r = self.code(1, "upgrade")
        self.assertIn("duplicate", r.err)
        self.assertIn("0001_a.sql", r.err)
        self.assertIn("1_b.sql", r.err)
        self.assertFalse(self.has_table("safe_migrate_versions"))

    def test_dated_files_and_dotted_versions(self):
        # Roundcube-style dates, then dotted versions ordered part by part
        for v in ["2008030300", "2008060900", "2010100600", "2015030800"]:
            self.write("migrations/%s.sql" % v, "CREATE TABLE t%s (x INT);\n" % v)
        self.ok("upgrade")
        self.assertEqual(self.run_sm("current").out.strip(), "2015030800")
        url2 = self.second_db()
        for v in ["2.9.0", "2.10.0", "2.8.1", "10.0"]:
            self.write("dotted/%s.sql" % v, "CREATE TABLE \"v%s\" (x INT);\n" % v)
        r = self.ok("-m", self.path("dotted"), "-d", url2, "upgrade")
        order = [l.split()[1] for l in r.out.splitlines() if l.startswith("applied")]
        self.assertEqual(order, ["2.8.1", "2.9.0", "2.10.0", "10.0"])
        self.assertEqual(self.versions(url2), ["2.8.1", "2.9.0", "2.10.0", "10.0"])
        self.assertTrue(self.has_table("v2.10.0", url2))

    def test_stamp(self):
        self.write("migrations/0001_a.sql", "CREATE TABLE a (x INT);\n")
        self.write("migrations/0002_b.sql", "CREATE TABLE b (x INT);\n")
        self.ok("stamp", "0001")
        self.assertEqual(self.run_sm("current").out.strip(), "0001")
        self.assertFalse(self.has_table("a"))
        self.ok("upgrade")
        self.assertFalse(self.has_table("a"))
        self.assertTrue(self.has_table("b"))
        self.ok("stamp", "base")
        self.assertEqual(self.run_sm("current").out.strip(), "base")
        self.code(2, "stamp", "banana")
