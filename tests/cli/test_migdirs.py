"""Migration directories as real projects ship them (issue 18 section 1), on
SQLite and PostgreSQL: empty files, statements that cannot run in a
transaction in pair layouts, files that manage their own transaction,
double-dot names, and `create` following a numbered up/down pair layout.

DirsContract holds the tests for both engines; each engine class gives
url(), tables() and versions()."""
import json
import os
import sqlite3
import subprocess

from smtest import CliTest, main


class DirsContract:
    def test_empty_files(self):
        # golang-migrate's `migrate create` writes two empty files; a down
        # with only a comment is no down either
        self.write("migrations/000001_init.up.sql", "")
        self.write("migrations/000001_init.down.sql", "")
        self.write("migrations/000002_a.up.sql", "CREATE TABLE a (x INT);\n")
        self.write("migrations/000002_a.down.sql", "-- nothing to undo\n\n")
        r = self.ok("history")
        self.assertRegex(r.out, r"000001\s+pending.*\(no down\)")
        self.assertRegex(r.out, r"000002\s+pending.*\(no down\)")
        r = self.ok("lint")
        self.assertIn("WARN", r.out)
        self.assertIn("empty-migration", r.out)
        r = self.ok("safety-check")
        self.assertIn("empty-migration", r.out)
        r = self.ok("upgrade")
        self.assertIn("version 000001 is empty", r.err)
        self.assertEqual(self.versions(), ["000001", "000002"])
        self.assertIn("a", self.tables())
        r = self.code(1, "downgrade", "-1")
        self.assertIn("has no down section", r.err)
        self.assertNotIn("up section", r.err)
        r = self.ok("roundtrip", *self.roundtrip_args())
        self.assertRegex(r.out, r"000002\s+no_down")

    def test_partly_successful_runs_record_the_schema(self):
        # an upgrade that applied two migrations and then failed, and a
        # downgrade that reverted one and then failed: validate must judge
        # the schema against what is really applied, with no false drift
        self.write("migrations/0001_a.up.sql", "CREATE TABLE a (x INT);\n")
        self.write("migrations/0001_a.down.sql", "DROP TABLE a;\n")
        self.write("migrations/0002_b.up.sql", "CREATE TABLE b (x INT);\n")
        self.write("migrations/0002_b.down.sql", "DROP TABLE no_such_table;\n")
        self.write("migrations/0003_c.up.sql", "CREATE TABLE c (x INT);\n")
        self.write("migrations/0003_c.down.sql", "DROP TABLE c;\n")
        self.write("migrations/0004_bad.up.sql", "SELECT no_such_column FROM a;\n")
        self.code(1, "upgrade")
        self.assertEqual(self.versions(), ["0001", "0002", "0003"])
        r = self.ok("validate")
        self.assertNotIn("FAIL", r.out)
        self.assertIn("matches the one recorded after the last migration", r.out)
        # 0003's down works, 0002's fails
        self.code(1, "downgrade", "base")
        self.assertEqual(self.versions(), ["0001", "0002"])
        r = self.ok("validate")
        self.assertNotIn("FAIL", r.out)
        self.assertIn("matches the one recorded after the last migration", r.out)

    def test_create_template_breaks_nothing(self):
        self.write("migrations/0001_a.sql", "-- migrate:up\nCREATE TABLE a (x INT);\n"
                   "-- migrate:down\nDROP TABLE a;\n")
        path = self.ok("create", "add foo").out.strip()
        self.assertTrue(path.endswith("_add_foo.sql"), path)
        self.ok("history")
        self.code(3, "check")
        self.ok("upgrade")
        self.assertEqual(len(self.versions()), 2)

    def test_create_follows_numbered_pairs(self):
        self.write("migrations/000009_a.up.sql", "CREATE TABLE a (x INT);\n")
        self.write("migrations/000009_a.down.sql", "DROP TABLE a;\n")
        r = self.ok("create", "add foo", "--json").json()
        self.assertEqual(r["version"], "000010")
        self.assertEqual([os.path.basename(p) for p in r["paths"]],
                         ["000010_add_foo.up.sql", "000010_add_foo.down.sql"])
        r = self.ok("create", "bar", "--json").json()
        self.assertEqual(r["version"], "000011")
        self.ok("upgrade")
        self.assertEqual(self.versions(), ["000009", "000010", "000011"])

    def test_double_dot_names_pair_by_version(self):
        self.write("migrations/20240813211251_passkey_backup_flags..up.sql",
                   "CREATE TABLE flags (x INT);\n")
        self.write("migrations/20240813211251_passkey_backup_flags.down.sql",
                   "DROP TABLE flags;\n")
        r = self.ok("history", "--json").json()["migrations"]
        self.assertEqual([(m["version"], m["description"], m["has_down"]) for m in r],
                         [("20240813211251", "passkey_backup_flags", True)])
        self.ok("upgrade")
        self.assertIn("flags", self.tables())
        self.ok("downgrade", "base")
        self.assertNotIn("flags", self.tables())
        self.ok("roundtrip", *self.roundtrip_args())

    def test_down_file_takes_its_own_marker(self):
        self.write("migrations/0001_a.up.sql", "CREATE TABLE a (x INT);\n")
        self.write("migrations/0001_a.down.sql",
                   "-- migrate:down transaction:false\nDROP TABLE a;\n")
        self.ok("upgrade")
        r = self.ok("downgrade", "base")
        self.assertIn("outside a transaction", r.err)
        self.assertNotIn("a", self.tables())

    def test_own_transaction_runs_as_written(self):
        self.write("migrations/0001_a.up.sql", "CREATE TABLE a (x INT, y INT);\n")
        self.write("migrations/0001_a.down.sql", "DROP TABLE a;\n")
        self.write("migrations/0002_rebuild.up.sql", self.OWN_TX_UP)
        self.write("migrations/0002_rebuild.down.sql", self.OWN_TX_DOWN)
        r = self.ok("upgrade")
        self.assertIn("manages its own transaction", r.err)
        self.assertEqual(self.versions(), ["0001", "0002"])
        self.assertIn("b", self.tables())
        r = self.ok("sql", "--start", "base")
        self.assertIn("0002_rebuild.up.sql', outside a transaction", r.out)
        self.ok("downgrade", "0001")
        self.assertNotIn("b", self.tables())
        self.ok("roundtrip", *self.roundtrip_args())
        self.ok("lint")

    def test_safe_migrate_with_own_transaction_and_empty_down(self):
        self.write("migrations/0001_a.up.sql", "CREATE TABLE a (x INT, y INT);\n")
        self.write("migrations/0001_a.down.sql", "")
        self.write("migrations/0002_rebuild..up.sql", self.OWN_TX_UP)
        r = self.ok("safe-migrate", "--json").json()
        self.assertEqual(r["outcome"], "applied")
        self.assertEqual(r["applied"], ["0001", "0002"])

    # -- other tools' version tables ------------------------------------------
    def dbmate_dir(self):
        for i in (1, 2, 3):
            self.write("db/migrations/2024010100000%d_t%d.sql" % (i, i),
                       "-- migrate:up\nCREATE TABLE t%d (a INT);\n"
                       "-- migrate:down\nDROP TABLE t%d;\n" % (i, i))

    def test_dbmate_adopted_and_kept_in_step(self):
        self.dbmate_dir()
        self.sql("CREATE TABLE schema_migrations (version varchar(128) PRIMARY KEY);\n"
                 "INSERT INTO schema_migrations VALUES ('20240101000001'), ('20240101000002');\n"
                 "CREATE TABLE t1 (a INT);\nCREATE TABLE t2 (a INT);\n")
        m = ("-m", "db/migrations")
        r = self.ok("current", "--json", *m)
        self.assertIn("found dbmate's version table 'schema_migrations'", r.err)
        self.assertIn("stamp --from dbmate", r.err)
        self.assertEqual(r.json()["foreign"]["tool"], "dbmate")
        r = self.run_sm("safety-check", *m)
        self.assertIn("foreign-history: dbmate's version table", r.out)
        r = self.code(1, "stamp", "--from", "golang-migrate", *m)
        self.assertIn("found dbmate's", r.err)
        self.ok("stamp", "--from", "dbmate", *m)
        self.assertEqual(self.versions(), ["20240101000001", "20240101000002"])
        self.ok("safe-migrate", *m)
        self.assertEqual(self.foreign_versions(), ["20240101000001", "20240101000002",
                                                   "20240101000003"])
        self.ok("downgrade", "-2", *m)
        self.assertEqual(self.foreign_versions(), ["20240101000001"])
        r = self.ok("current", "--json", *m).json()
        self.assertTrue(r["foreign"]["in_step"])

    def test_golang_migrate_adopted_dirty_refused(self):
        for i in (1, 2, 3):
            self.write("migrations/%06d_t%d.up.sql" % (i, i), "CREATE TABLE t%d (a INT);\n" % i)
            self.write("migrations/%06d_t%d.down.sql" % (i, i), "DROP TABLE t%d;\n" % i)
        self.sql("CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, "
                 "dirty boolean NOT NULL);\nINSERT INTO schema_migrations VALUES (2, true);\n"
                 "CREATE TABLE t1 (a INT);\nCREATE TABLE t2 (a INT);\n")
        r = self.code(1, "stamp", "--from", "golang-migrate")
        self.assertIn("dirty", r.err)
        self.sql("UPDATE schema_migrations SET dirty = false;\n")
        self.ok("stamp", "--from", "golang-migrate")
        self.assertEqual(self.versions(), ["000001", "000002"])
        self.ok("safe-migrate", "--no-backup")  # all in one transaction: kept in step too
        self.assertEqual(self.foreign_versions(), ["3"])
        self.ok("downgrade", "base")
        self.assertEqual(self.foreign_versions(), [])
        self.ok("upgrade", "+1")
        self.assertEqual(self.foreign_versions(), ["1"])

    def test_alembic_adopted(self):
        self.chain(3)
        self.sql("CREATE TABLE alembic_version (version_num varchar(32) NOT NULL);\n"
                 "INSERT INTO alembic_version VALUES ('0002');\n"
                 "CREATE TABLE t1 (x INT);\nCREATE TABLE t2 (x INT);\n")
        r = self.code(3, "check")
        self.assertIn("alembic's version table 'alembic_version'", r.err)
        self.ok("stamp", "--from", "alembic")
        self.assertEqual(self.versions(), ["0001", "0002"])
        r = self.ok("current")
        self.assertIn("safe-migrate keeps its own history", r.err)
        self.assertNotIn("warning", r.err)
        self.ok("upgrade")
        self.assertIn("t3", self.tables())

    def test_validate_expected_sql_file(self):
        self.chain(2)
        self.ok("upgrade")
        self.write("db/schema.sql", "-- dumped by the other tool\nCREATE TABLE t1 (x INT);\n"
                   "CREATE TABLE t2 (x INT);\n")
        self.ok("validate", "--expected", "db/schema.sql")
        self.write("db/schema.sql", "CREATE TABLE t1 (x INT);\nCREATE TABLE t3 (x INT);\n")
        r = self.code(7, "validate", "--expected", "db/schema.sql")
        self.assertIn("expected-schema", r.out)
        self.assertIn("t3", r.out)

    # -- roundtrip --------------------------------------------------------------
    def test_roundtrip_keep_going_and_rerun(self):
        self.chain(3)
        self.write("migrations/0002_t2.sql", "-- migrate:up\nCREATE TABLE t2 (x INT);\n"
                   "-- migrate:down\nSELECT 1;\n")
        self.write("migrations/0004_t4.sql", "-- migrate:up\nCREATE TABLE t4 (x INT);\n"
                   "-- migrate:down\nDROP TABLE nosuch;\n")
        r = self.code(7, "roundtrip", *self.roundtrip_args(fresh=True))
        self.assertNotIn("0003", r.out)
        r = self.code(7, "roundtrip", "--keep-going", "--json",
                      *self.roundtrip_args(fresh=True)).json()
        self.assertEqual([(m["version"], m["status"]) for m in r["migrations"]],
                         [("0001", "ok"), ("0002", "mismatch"), ("0003", "ok"),
                          ("0004", "down_failed")])
        self.write("migrations/0002_t2.sql", "-- migrate:up\nCREATE TABLE t2 (x INT);\n"
                   "-- migrate:down\nDROP TABLE t2;\n")
        self.write("migrations/0004_t4.sql", "-- migrate:up\nCREATE TABLE t4 (x INT);\n"
                   "-- migrate:down\nDROP TABLE t4;\n")
        args = self.roundtrip_args(fresh=True)
        self.ok("roundtrip", *args)
        # the scratch database is left as found: a rerun works
        self.ok("roundtrip", *args)


class DirsSqlite(DirsContract, CliTest):
    OWN_TX_UP = ("PRAGMA foreign_keys=OFF;\nBEGIN;\nCREATE TABLE b (x INT);\n"
                 "INSERT INTO b SELECT x FROM a;\nCOMMIT;\nPRAGMA foreign_keys=ON;\n")
    OWN_TX_DOWN = "PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\nDROP TABLE b;\nCOMMIT;\n"

    def setUp(self):
        super().setUp()
        self.write("safe-migrate.ini", "[safe-migrate]\ndatabase_url = sqlite:///app.db\n")
        sqlite3.connect(self.path("app.db")).close()

    def roundtrip_args(self, fresh=False):
        return ()

    def test_upgrade_on_a_missing_file_offers_the_command(self):
        self.chain(1)
        os.unlink(self.path("app.db"))
        r = self.code(1, "upgrade")
        self.assertFalse(os.path.exists(self.path("app.db")))
        cmd = r.err.split("to create an empty one: ")[1].split(")")[0]
        self.assertTrue(cmd.startswith("sqlite3 "), r.err)
        subprocess.run(cmd, shell=True, cwd=self.dir, check=True)
        self.ok("upgrade")
        self.assertEqual(self.versions(), ["0001"])

    def test_sql_without_url_names_no_engine(self):
        os.unlink(self.path("safe-migrate.ini"))
        self.chain(1)
        r = self.ok("sql", "--start", "base")
        self.assertNotIn("(SQLite)", r.out)
        self.assertIn("engine not known", r.out)

    def test_roundtrip_needs_no_database(self):
        os.unlink(self.path("safe-migrate.ini"))
        self.chain(2)
        r = self.ok("roundtrip")
        self.assertIn("roundtrip ok: 2 migrations", r.out)

    def tables(self):
        return [n for (n,) in self.sqlite("SELECT name FROM sqlite_master WHERE type='table'")]

    def versions(self):
        return [v for (v,) in self.sqlite("SELECT version FROM safe_migrate_versions "
                                          "ORDER BY version")]

    def sql(self, script):
        con = sqlite3.connect(self.path("app.db"))
        con.executescript(script)
        con.close()

    def foreign_versions(self):
        return [str(v) for (v,) in self.sqlite("SELECT version FROM schema_migrations "
                                               "ORDER BY version")]


class DirsPg(DirsContract, CliTest):
    OWN_TX_UP = "BEGIN;\nCREATE TABLE b (x INT);\nINSERT INTO b SELECT x FROM a;\nCOMMIT;\n"
    OWN_TX_DOWN = "START TRANSACTION;\nDROP TABLE b;\nCOMMIT;\n"

    def setUp(self):
        super().setUp()
        self.url = self.pg_new_db()
        self.write("safe-migrate.ini", "[safe-migrate]\ndatabase_url = %s\n" % self.url)

    def roundtrip_args(self, fresh=False):
        return ("--url", self.pg_new_db())

    def test_roundtrip_on_an_empty_d(self):
        self.chain(2)
        empty = self.pg_new_db()
        r = self.ok("-d", empty, "roundtrip")
        self.assertIn("roundtrip ok: 2 migrations", r.out)
        self.assertEqual(self.psql(empty, "SELECT count(*) FROM pg_tables "
                                   "WHERE schemaname = 'public'"), "0")
        self.psql(self.url, "CREATE TABLE live (x INT)")
        r = self.code(2, "roundtrip")
        self.assertIn("needs --url SCRATCH", r.err)

    def tables(self):
        return self.psql(self.url, "SELECT string_agg(tablename, ' ') FROM pg_tables "
                         "WHERE schemaname = 'public'").split()

    def versions(self):
        out = self.psql(self.url, "SELECT string_agg(version, ' ' ORDER BY version) "
                        "FROM safe_migrate_versions")
        return out.split()

    def sql(self, script):
        self.psql(self.url, script)

    def foreign_versions(self):
        return self.psql(self.url, "SELECT string_agg(version::text, ' ' ORDER BY version) "
                         "FROM schema_migrations").split()

    def test_concurrently_in_pairs(self):
        self.write("migrations/0001_a.up.sql", "CREATE TABLE a (x INT);\n")
        self.write("migrations/0001_a.down.sql", "DROP TABLE a;\n")
        self.write("migrations/0002_i.up.sql", "CREATE INDEX CONCURRENTLY a_x ON a (x);\n")
        self.write("migrations/0002_i.down.sql", "DROP INDEX CONCURRENTLY a_x;\n")
        self.write("migrations/0003_v.up.sql", "-- morph:nontransactional\nVACUUM a;\n")
        self.write("migrations/0003_v.down.sql", "SELECT 1;\n")
        r = self.ok("lint")
        self.assertNotIn("concurrently-in-transaction", r.out)
        r = self.ok("upgrade")
        self.assertIn("runs outside a transaction: CREATE INDEX CONCURRENTLY cannot run in one",
                      r.err)
        self.assertIn("0003 v (transaction:false", r.err)
        self.assertEqual(self.psql(self.url, "SELECT indisvalid FROM pg_index "
                                   "WHERE indexrelid = 'a_x'::regclass"), "t")
        r = self.ok("downgrade", "0001")
        self.assertIn("DROP INDEX CONCURRENTLY cannot run in one", r.err)
        self.assertEqual(self.psql(self.url, "SELECT to_regclass('a_x') IS NULL"), "t")
        self.ok("roundtrip", *self.roundtrip_args())
        self.ok("safe-migrate", "0002")
        self.assertEqual(self.versions(), ["0001", "0002"])


if __name__ == "__main__":
    main()
