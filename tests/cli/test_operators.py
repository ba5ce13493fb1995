"""CLI tests of the operators' command set (issue 9): roundtrip, feature folders
and several -m directories, the _rollback layout, out-of-order migrations,
relative targets, init --migrate and drop-tables, on SQLite and PostgreSQL."""
import os
import sqlite3
import subprocess

from smtest import CliTest, main


class OperatorsMixin:
    """Tests shared by both engines; subclasses provide url(), db_state() and sql()."""

    def write_good_set(self):
        self.write("migrations/0001_a.sql",
                   "-- migrate:up\nCREATE TABLE a (x int);\nCREATE INDEX ai ON a (x);\n"
                   "-- migrate:down\nDROP TABLE a;\n")
        self.write("migrations/0002_b.up.sql", "ALTER TABLE a ADD COLUMN y int;\n")
        self.write("migrations/0002_b.down.sql", "ALTER TABLE a DROP COLUMN y;\n")

    def test_roundtrip_good_set(self):
        self.write_good_set()
        r = self.sm("roundtrip", "--json")
        self.assertEqual(r.code, 0, r)
        self.assertEqual([m["status"] for m in r.json()["migrations"]], ["ok", "ok"])
        self.assertEqual(self.tables(), [])  # the live database was never touched

    def test_roundtrip_forgotten_index(self):
        self.write_good_set()
        self.write("migrations/0003_idx.sql",
                   "-- migrate:up\nCREATE INDEX a_y_idx ON a (y);\n-- migrate:down\nSELECT 1;\n")
        r = self.sm("roundtrip", "--json")
        self.assertEqual(r.code, 7, r)
        bad = r.json()["migrations"][-1]
        self.assertEqual((bad["version"], bad["status"]), ("0003", "mismatch"))
        self.assertIn("a_y_idx", bad["diff"])
        self.assertIn("0003_idx.sql", r.err)

    def test_roundtrip_column_left_behind(self):
        self.write_good_set()
        self.write("migrations/0003_col.sql",
                   "-- migrate:up\nALTER TABLE a ADD COLUMN z int;\nCREATE TABLE side (x int);\n"
                   "-- migrate:down\nDROP TABLE side;\n")
        r = self.sm("roundtrip", "--json")
        self.assertEqual(r.code, 7, r)
        bad = r.json()["migrations"][-1]
        self.assertEqual((bad["version"], bad["status"]), ("0003", "mismatch"))
        self.assertIn("z", bad["diff"])

    def test_roundtrip_column_order_is_a_warning(self):
        """A down that adds back the column its up dropped can only add it
        last: the order is told (SELECT * sees it), not failed."""
        self.write_good_set()
        self.write("migrations/0003_drop.sql",
                   "-- migrate:up\nDROP INDEX ai;\nALTER TABLE a DROP COLUMN x;\n"
                   "-- migrate:down\nALTER TABLE a ADD COLUMN x int;\n"
                   "CREATE INDEX ai ON a (x);\n")
        r = self.sm("roundtrip", "--json")
        self.assertEqual(r.code, 0, r)
        last = r.json()["migrations"][-1]
        self.assertEqual((last["version"], last["status"]), ("0003", "ok"))
        self.assertRegex(last["column_order_diff"], r"\+ column\ta\tx\t.*\tposition 2\n")
        self.assertIn("brings columns back in another order", r.err)
        self.assertNotIn("column_order_diff", r.json()["migrations"][0])

    def test_feature_folders_and_several_dirs(self):
        self.write("migrations/common/0001_a.sql", "CREATE TABLE a (x int);\n")
        self.write("migrations/billing/0003_c.sql", "CREATE TABLE c (x int);\n")
        self.write("extra/0002_b.sql", "CREATE TABLE b (x int);\n")
        r = self.sm("-m", "migrations", "-m", "extra", "upgrade", "--json")
        self.assertEqual(r.code, 0, r)
        self.assertEqual(r.json()["applied"], ["0001", "0002", "0003"])
        self.write("extra/sub/3_clash.sql", "SELECT 1;\n")
        r = self.sm("-m", "migrations", "-m", "extra", "check")
        self.assertEqual(r.code, 1, r)
        self.assertIn("0003_c.sql", r.err)
        self.assertIn("3_clash.sql", r.err)

    def test_rollback_layout(self):
        self.write("migrations/001_add_notes.sql", "CREATE TABLE notes (x int);\n")
        self.write("migrations/001_add_notes_rollback.sql", "DROP TABLE notes;\n")
        self.assertEqual(self.sm("upgrade").code, 0)
        self.assertEqual(self.tables(), ["notes"])
        r = self.sm("downgrade", "-1")
        self.assertEqual(r.code, 0, r)
        self.assertEqual(self.tables(), [])

    def test_out_of_order(self):
        self.write("migrations/0001_a.sql", "CREATE TABLE a (x int);\n")
        self.write("migrations/0003_c.sql", "CREATE TABLE c (x int);\n")
        self.assertEqual(self.sm("upgrade").code, 0)
        self.write("migrations/0002_late.sql", "CREATE TABLE late (x int);\n")
        r = self.sm("upgrade")
        self.assertEqual(r.code, 1, r)
        self.assertIn("0002_late.sql", r.err)
        self.assertIn("--allow-out-of-order", r.err)
        self.assertNotIn("late", self.tables())
        r = self.sm("upgrade", "--allow-out-of-order", "--json")
        self.assertEqual(r.code, 0, r)
        self.assertEqual(r.json()["applied"], ["0002"])

    def test_relative_targets(self):
        for i in range(1, 4):
            self.write("migrations/%04d_t.sql" % i,
                       "-- migrate:up\nCREATE TABLE t%d (x int);\n-- migrate:down\nDROP TABLE t%d;\n"
                       % (i, i))
        self.assertEqual(self.sm("stamp", "+1").code, 0)
        self.assertEqual(self.sm("current").out.strip(), "0001")
        self.assertEqual(self.tables(), [])  # stamp runs no SQL
        self.assertEqual(self.sm("upgrade", "+2").code, 0)
        self.assertEqual(self.tables(), ["t2", "t3"])
        self.assertEqual(self.sm("downgrade", "-1").code, 0)
        self.assertEqual(self.tables(), ["t2"])
        self.assertEqual(self.sm("stamp", "-1").code, 0)
        self.assertEqual(self.sm("current").out.strip(), "0001")

    def test_drop_tables_then_restore(self):
        self.write_good_set()
        self.assertEqual(self.sm("upgrade").code, 0)
        self.sql("INSERT INTO a (x, y) VALUES (1, 2), (3, NULL)")
        before = self.db_state()
        r = self.sm("drop-tables")
        self.assertEqual(r.code, 2, r)  # no TTY and no --yes: refused
        self.assertEqual(self.db_state(), before)
        r = self.sm("drop-tables", "--yes", "--json")
        self.assertEqual(r.code, 0, r)
        snap = r.json()["snapshot"]
        self.assertIn(snap, r.out + r.err)
        self.assertEqual(self.tables(), [])
        r = self.sm("restore", snap, "--yes", "--no-safety-backup")
        self.assertEqual(r.code, 0, r)
        self.assertEqual(self.db_state(), before)


class OperatorsSqlite(OperatorsMixin, CliTest):
    def setUp(self):
        super().setUp()
        sqlite3.connect(self.path("app.db")).close()

    def sm(self, *args, **kw):
        return self.run_sm("-d", self.sqlite_url(), "-b", self.path("backups"), *args, **kw)

    def sql(self, q):
        return self.sqlite(q)

    def tables(self):
        return [r[0] for r in self.sqlite(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
            "'safe_migrate_%' AND name NOT LIKE 'sqlite_%' ORDER BY name")]

    def db_state(self):
        return self.sqlite_dump()

    def test_init_migrate(self):
        os.unlink(self.path("app.db"))
        self.write("migrations/0001_a.sql", "CREATE TABLE a (x int);\n")
        r = self.run_sm("init", "--migrate", "--json")
        self.assertEqual(r.code, 0, r)
        self.assertEqual(r.json()["applied"], ["0001"])
        self.assertEqual(self.tables(), ["a"])
        self.assertTrue(os.path.exists(self.path("safe-migrate.ini")))

    def test_roundtrip_does_not_create_the_live_database(self):
        os.unlink(self.path("app.db"))
        self.write_good_set()
        r = self.sm("roundtrip")
        self.assertEqual(r.code, 0, r)
        self.assertFalse(os.path.exists(self.path("app.db")))


class OperatorsPg(OperatorsMixin, CliTest):
    def setUp(self):
        super().setUp()
        self.url = self.pg_new_db()
        self.scratch = self.pg_new_db()

    def sm(self, *args, **kw):
        extra = ["--url", self.scratch] if "roundtrip" in args else []
        return self.run_sm("-d", self.url, "-b", self.path("backups"), *args, *extra, **kw)

    def sql(self, q):
        return self.psql(self.url, q)

    def tables(self):
        out = self.psql(self.url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                                  "AND tablename NOT LIKE 'safe_migrate_%' ORDER BY 1")
        return out.split("\n") if out else []

    def db_state(self):
        return self.pg_state(self.url)

    def test_init_migrate(self):
        self.write("migrations/0001_a.sql", "CREATE TABLE a (x int);\n")
        r = self.run_sm("init", self.url, "--migrate", "--json")
        self.assertEqual(r.code, 0, r)
        self.assertEqual(r.json()["applied"], ["0001"])
        self.assertEqual(self.tables(), ["a"])

    def test_roundtrip_needs_scratch_url(self):
        self.write_good_set()
        # an empty -d may serve as the scratch database; one with tables may not
        self.psql(self.url, "CREATE TABLE live (x int)")
        r = self.run_sm("-d", self.url, "roundtrip")
        self.assertEqual(r.code, 2, r)
        self.assertIn("--url", r.err)
        r = self.run_sm("-d", self.url, "roundtrip", "--url", self.url)
        self.assertEqual(r.code, 2, r)


if __name__ == "__main__":
    main()
