"""CLI tests of the migration commands against real SQLite files: the
engine-independent contract (migrate_common.py) and what is SQLite's own."""
import os
import sqlite3

from migrate_common import MigrationContract
from smtest import CliTest, main


class MigrateSqlite(MigrationContract, CliTest):
    SERIAL_PK = "INTEGER PRIMARY KEY"
    MISSING_TABLE = "no such table: missing_table"

    def setUp(self):
        super().setUp()
        self.url = self.sqlite_url()
        self.write("safe-migrate.ini", "[safe-migrate]\ndatabase_url = sqlite:///app.db\n")
        sqlite3.connect(self.path("app.db")).close()

    # -- the engine's side of MigrationContract ---------------------------------
    def db_name(self, url):
        return url[len("sqlite:///"):] if url else "app.db"

    def has_table(self, name, url=None):
        rows = self.sqlite("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
                           "name = '%s'" % name, self.db_name(url))
        return rows == [(1,)]

    def versions(self, url=None):
        if not self.has_table("safe_migrate_versions", url):
            return []
        rows = self.sqlite("SELECT version FROM safe_migrate_versions", self.db_name(url))
        return sorted((v for (v,) in rows),
                      key=lambda v: [int(p) for p in v.replace("_", ".").split(".")])

    def columns(self, table):
        return [c[1] for c in self.sqlite("PRAGMA table_info(%s)" % table)]

    def count(self, table):
        return self.sqlite("SELECT count(*) FROM %s" % table)[0][0]

    def second_db(self):
        sqlite3.connect(self.path("second.db")).close()
        return self.sqlite_url("second.db")

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

    def test_no_database_configured(self):
        os.unlink(self.path("safe-migrate.ini"))
        r = self.code(2, "upgrade")
        self.assertIn("no database configured", r.err)
        self.assertIn("SAFE_MIGRATE_DATABASE_URL", r.err)

    def test_never_creates_a_database_silently(self):
        self.write("migrations/0001_a.sql", "CREATE TABLE a (x INT);\n")
        r = self.code(1, "-d", self.sqlite_url("nope.db"), "upgrade")
        self.assertIn("to create an empty one: sqlite3", r.err)
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
