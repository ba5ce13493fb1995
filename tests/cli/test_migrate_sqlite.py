"""CLI tests of the migration commands against real SQLite files."""
import os
import sqlite3

from smtest import CliTest, main


class MigrateSqlite(CliTest):
    def setUp(self):
        super().setUp()
        self.url = self.sqlite_url()
        self.write("safe-migrate.ini", "[safe-migrate]\ndatabase_url = sqlite:///app.db\n")
        sqlite3.connect(self.path("app.db")).close()

    def test_chain_with_failure_keeps_earlier_and_leaves_no_trace(self):
        self.write("migrations/0001_users.sql",
                   "-- migrate:up\nCREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);\n"
                   "-- migrate:down\nDROP TABLE users;\n")
        self.write("migrations/0002_orders.up.sql", "CREATE TABLE orders (id INTEGER);\n")
        self.write("migrations/0002_orders.down.sql", "DROP TABLE orders;\n")
        self.write("migrations/0003_bad.sql",
                   "ALTER TABLE users ADD COLUMN email TEXT;\n"
                   "INSERT INTO users(name) VALUES ('x');\n\n"
                   "INSERT INTO missing_table VALUES (1);\n")
        r = self.code(1, "upgrade")
        self.assertIn("0003_bad.sql', line 4", r.err)
        self.assertIn("no such table: missing_table", r.err)
        cols = [c[1] for c in self.sqlite("PRAGMA table_info(users)")]
        self.assertEqual(cols, ["id", "name"])  # 0003 left no trace
        self.assertEqual(self.sqlite("SELECT count(*) FROM users"), [(0,)])
        applied = self.sqlite("SELECT version FROM safe_migrate_versions ORDER BY version")
        self.assertEqual(applied, [("0001",), ("0002",)])
        r = self.code(3, "check")
        self.assertEqual(self.run_sm("current", "--json").json()["pending"], ["0003"])

    def test_upgrade_targets_and_downgrade(self):
        for i in range(1, 5):
            self.write("migrations/%04d_t%d.sql" % (i, i),
                       "-- migrate:up\nCREATE TABLE t%d (x INT);\n-- migrate:down\nDROP TABLE t%d;\n"
                       % (i, i))
        self.ok("upgrade", "+2")
        self.assertEqual(self.run_sm("current").out.strip(), "0002")
        self.ok("upgrade", "0003")
        self.assertEqual(self.run_sm("current").out.strip(), "0003")
        self.code(2, "upgrade", "+9")
        self.code(2, "upgrade", "+x")
        self.code(2, "upgrade", "9999")
        self.ok("upgrade")
        self.code(0, "check")
        self.ok("downgrade", "-1")
        self.assertEqual(self.run_sm("current").out.strip(), "0003")
        self.ok("downgrade", "0001")
        self.assertEqual(self.run_sm("current").out.strip(), "0001")
        self.code(2, "downgrade", "-0")
        self.ok("downgrade", "base")
        self.assertEqual(self.run_sm("current").out.strip(), "base")
        tables = self.sqlite("SELECT name FROM sqlite_master WHERE name LIKE 't%'")
        self.assertEqual(tables, [])

    def test_no_down_section_is_refused(self):
        self.write("migrations/0001_a.sql", "CREATE TABLE a (x INT);\n")
        self.ok("upgrade")
        r = self.code(1, "downgrade", "-1")
        self.assertIn("no down section", r.err)
        self.assertIn("restore", r.err)
        self.assertEqual(self.sqlite("SELECT count(*) FROM a"), [(0,)])

    def test_edited_applied_migration(self):
        p = self.write("migrations/0001_a.sql", "CREATE TABLE a (x INT);\n")
        self.write("migrations/0002_b.sql", "CREATE TABLE b (x INT);\n")
        self.ok("upgrade", "0001")
        with open(p, "a") as f:
            f.write("CREATE TABLE sneaky (x INT);\n")
        r = self.code(1, "upgrade")
        self.assertIn("edited", r.err)
        self.assertIn("0001_a.sql", r.err)
        self.assertEqual(self.sqlite("SELECT count(*) FROM sqlite_master WHERE name='b'"), [(0,)])
        r = self.code(1, "check")
        self.assertIn("edited", r.err)
        r = self.ok("history")
        self.assertIn("EDITED", r.out)
        self.ok("stamp", "0001")
        self.ok("upgrade")
        self.code(0, "check")

    def test_duplicate_versions_name_both_files(self):
        self.write("migrations/0001_a.sql", "CREATE TABLE a (x INT);\n")
        self.write("migrations/1_b.sql", "CREATE TABLE b (x INT);\n")
        r = self.code(1, "upgrade")
        self.assertIn("duplicate", r.err)
        self.assertIn("0001_a.sql", r.err)
        self.assertIn("1_b.sql", r.err)
        self.assertFalse(os.path.exists(self.path("app.db-safe-migrate.lock")))

    def test_roundcube_style_dated_files_and_dotted_versions(self):
        for v in ["2008030300", "2008060900", "2010100600", "2015030800"]:
            self.write("migrations/%s.sql" % v, "CREATE TABLE t%s (x INT);\n" % v)
        self.ok("upgrade")
        self.assertEqual(self.run_sm("current").out.strip(), "2015030800")
        d = self.path("dotted")
        sqlite3.connect(self.path("d.db")).close()
        for v in ["2.9.0", "2.10.0", "2.8.1", "10.0"]:
            self.write("dotted/%s.sql" % v, "SELECT 1;\n")
        r = self.ok("-m", d, "-d", self.sqlite_url("d.db"), "history", "--json")
        versions = [m["version"] for m in r.json()["migrations"]]
        self.assertEqual(versions, ["2.8.1", "2.9.0", "2.10.0", "10.0"])

    def test_transaction_false_is_reported(self):
        self.write("migrations/0001_a.sql",
                   "-- migrate:up transaction:false\nCREATE TABLE a (x INT);\n"
                   "-- migrate:down\nDROP TABLE a;\n")
        r = self.ok("upgrade")
        self.assertIn("outside a transaction", r.err)

    def test_commit_inside_a_migration_is_refused(self):
        self.write("migrations/0001_a.sql",
                   "CREATE TABLE a (x INT);\n-- sneaky\nCOMMIT;\nCREATE TABLE b (x INT);\n")
        r = self.code(1, "upgrade")
        self.assertIn("0001_a.sql', line 3: 'COMMIT' would end the transaction", r.err)
        self.assertEqual(self.sqlite("SELECT name FROM sqlite_master WHERE name IN ('a', 'b')"), [])
        self.assertEqual(self.sqlite("SELECT count(*) FROM safe_migrate_versions"), [(0,)])

    def test_sql_is_offline(self):
        self.write("migrations/0001_a.sql", "CREATE TABLE a (x INT);\n")
        self.write("migrations/0002_b.sql", "CREATE TABLE b (x INT)")
        os.unlink(self.path("app.db"))
        r = self.ok("sql", "--start", "base", "--end", "head")
        self.assertIn("CREATE TABLE a", r.out)
        self.assertIn("INSERT INTO safe_migrate_versions", r.out)
        self.assertFalse(os.path.exists(self.path("app.db")))
        # the script really runs
        con = sqlite3.connect(self.path("other.db"))
        con.executescript(r.out)
        self.assertEqual(con.execute("SELECT count(*) FROM safe_migrate_versions").fetchone(), (2,))
        r = self.ok("sql", "--start", "0001")
        self.assertNotIn("CREATE TABLE a", r.out)
        self.assertIn("CREATE TABLE b", r.out)

    def test_stamp(self):
        self.write("migrations/0001_a.sql", "CREATE TABLE a (x INT);\n")
        self.write("migrations/0002_b.sql", "CREATE TABLE b (x INT);\n")
        self.ok("stamp", "0001")
        self.assertEqual(self.run_sm("current").out.strip(), "0001")
        self.assertEqual(self.sqlite("SELECT count(*) FROM sqlite_master WHERE name='a'"), [(0,)])
        self.ok("stamp", "base")
        self.assertEqual(self.run_sm("current").out.strip(), "base")
        self.code(2, "stamp", "banana")

    def test_no_database_configured(self):
        os.unlink(self.path("safe-migrate.ini"))
        r = self.code(2, "upgrade")
        self.assertIn("no database configured", r.err)
        self.assertIn("SAFE_MIGRATE_DATABASE_URL", r.err)

    def test_never_creates_a_database_silently(self):
        self.write("migrations/0001_a.sql", "CREATE TABLE a (x INT);\n")
        r = self.code(1, "-d", self.sqlite_url("nope.db"), "upgrade")
        self.assertIn("init", r.err)
        self.assertFalse(os.path.exists(self.path("nope.db")))

    def test_init_and_create(self):
        os.unlink(self.path("safe-migrate.ini"))
        os.unlink(self.path("app.db"))
        self.ok("init")
        self.assertTrue(os.path.exists(self.path("app.db")))
        self.assertTrue(os.path.isdir(self.path("migrations")))
        r = self.ok("create", "Add user preferences!")
        p = r.out.strip()
        self.assertRegex(os.path.basename(p), r"^\d{8}_\d{6}_add_user_preferences\.sql$")
        text = open(os.path.join(self.dir, p)).read()
        self.assertIn("-- migrate:up", text)
        self.assertIn("-- migrate:down", text)

    def test_precedence_flag_env_config(self):
        self.write("migrations/0001_a.sql", "CREATE TABLE a (x INT);\n")
        for n in ("env.db", "flag.db"):
            sqlite3.connect(self.path(n)).close()
        self.ok("upgrade", env={"DATABASE_URL": self.sqlite_url("env.db")})
        self.assertEqual(self.sqlite("SELECT count(*) FROM safe_migrate_versions", "env.db"), [(1,)])
        self.ok("-d", self.sqlite_url("flag.db"), "upgrade",
                env={"SAFE_MIGRATE_DATABASE_URL": self.sqlite_url("env.db")})
        self.assertEqual(self.sqlite("SELECT count(*) FROM safe_migrate_versions", "flag.db"), [(1,)])
        self.assertEqual(self.sqlite("SELECT count(*) FROM sqlite_master WHERE name='a'"), [(0,)])

    def test_usage_errors(self):
        self.code(2, "frobnicate")
        self.code(2, "upgrade", "--nope")
        self.code(2, "upgrade", "--keep", "3")
        self.ok("help", "upgrade")
        self.ok("upgrade", "--help")
        self.ok("--version")

    def test_bad_file_reported_before_database_touched(self):
        self.write("migrations/0001_a.sql", "CREATE TABLE a (x INT);\n")
        self.write("migrations/0002_b.sql", "\x00\x01binary")
        before = open(self.path("app.db"), "rb").read()
        r = self.code(1, "upgrade")
        self.assertIn("0002_b.sql", r.err)
        self.assertEqual(open(self.path("app.db"), "rb").read(), before)


if __name__ == "__main__":
    main()
