"""CLI tests of the migration commands against a real PostgreSQL server.

The SQLite tests of test_migrate_sqlite.py, ported to PostgreSQL, plus what
only a server has: SQLSTATEs, transaction:false with CREATE INDEX
CONCURRENTLY, statement and lock timeouts, and cancellation.  The migration
lock between concurrent runs and the connection parameters are tested in
test_pg_connection.py, which shares PgTest.
"""
import os
import signal
import subprocess
import time
import urllib.parse
import uuid

from smtest import BIN, PG_URL, CliTest, main

LOCK_KEY = "8314038971842521447"  # "safe-mig" as a bigint: engine_pg.c's PG_LOCK_KEY


class PgTest(CliTest):
    def setUp(self):
        super().setUp()
        self.url = self.pg_new_db()
        self.write("safe-migrate.ini", "[safe-migrate]\ndatabase_url = %s\n" % self.url)

    # -- helpers ---------------------------------------------------------------
    def read(self, rel):
        with open(os.path.join(self.dir, rel)) as f:
            return f.read()

    def q(self, sql, url=None):
        return self.psql(url or self.url, sql)

    def has_table(self, name, url=None):
        return self.q("SELECT to_regclass('%s') IS NOT NULL" % name, url) == "t"

    def versions(self, url=None):
        if not self.has_table("safe_migrate_versions", url):
            return []
        out = self.q("SELECT version FROM safe_migrate_versions", url)
        return sorted(out.split(), key=lambda v: [int(p) for p in v.replace("_", ".").split(".")])

    def dbname(self, url=None):
        return urllib.parse.urlsplit(url or self.url).path.lstrip("/")

    def host_port(self):
        u = urllib.parse.urlsplit(PG_URL)
        return u.hostname, u.port or 5432

    def wait_for(self, sql, what, timeout=60, url=None):
        """Polls sql (on the admin database by default) until it returns 't'."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.psql(url or PG_URL, sql) == "t":
                return
            time.sleep(0.05)
        self.fail("timed out waiting for " + what)

    def chain(self, n):
        for i in range(1, n + 1):
            self.write("migrations/%04d_t%d.sql" % (i, i),
                       "-- migrate:up\nCREATE TABLE t%d (x INT);\n-- migrate:down\nDROP TABLE t%d;\n"
                       % (i, i))


class MigratePg(PgTest):
    def test_init_with_url_and_create(self):
        os.unlink(self.path("safe-migrate.ini"))
        r = self.ok("init", self.url)
        self.assertIn("version table ready", r.out)
        self.assertIn("database_url = %s" % self.url, self.read("safe-migrate.ini"))
        self.assertTrue(os.path.isdir(self.path("migrations")))
        self.assertTrue(self.has_table("safe_migrate_versions"))
        self.assertFalse(os.path.exists(self.path("app.db")))
        self.assertEqual(self.ok("current").out.strip(), "base")
        r = self.ok("create", "Add user preferences!")
        p = r.out.strip()
        self.assertRegex(os.path.basename(p), r"^\d{8}_\d{6}_add_user_preferences\.sql$")
        text = self.read(p)
        self.assertIn("-- migrate:up", text)
        self.assertIn("-- migrate:down", text)

    def test_chain_with_failure_keeps_earlier_and_leaves_no_trace(self):
        self.write("migrations/0001_users.sql",
                   "-- migrate:up\nCREATE TABLE users (id serial PRIMARY KEY, name TEXT);\n"
                   "-- migrate:down\nDROP TABLE users;\n")
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
        self.assertIn("0003_bad.sql', line 4: ERROR:  relation \"missing_table\" does not exist "
                      "(SQLSTATE 42P01)", r.err)
        cols = self.q("SELECT string_agg(column_name, ',' ORDER BY ordinal_position) "
                      "FROM information_schema.columns WHERE table_name = 'users'")
        self.assertEqual(cols, "id,name")  # 0003 left no trace
        self.assertEqual(self.q("SELECT count(*) FROM users"), "0")
        self.assertFalse(self.has_table("never"))
        self.assertFalse(self.has_table("after_bad"))
        self.assertEqual(self.versions(), ["0001", "0002"])
        self.code(3, "check")
        self.assertEqual(self.run_sm("current", "--json").json()["pending"], ["0003", "0004"])
        r = self.code(1, "upgrade", "--json")
        self.assertEqual(r.json()["sqlstate"], "42P01")

    def test_error_line_counts_from_the_up_marker(self):
        self.write("migrations/0001_a.sql",
                   "-- migrate:up\n-- leading comment\nCREATE TABLE ok1 (x INT);\n\n"
                   "/* block\n comment */ INSERT INTO ok1 VALUES ('not a number');\n"
                   "-- migrate:down\nDROP TABLE ok1;\n")
        r = self.code(1, "upgrade")
        self.assertIn("0001_a.sql', line 6: ERROR:  invalid input syntax for type integer", r.err)
        self.assertIn("SQLSTATE 22P02", r.err)
        self.assertFalse(self.has_table("ok1"))

    def test_syntax_error_is_found_before_anything_runs(self):
        self.write("migrations/0001_a.sql",
                   "CREATE TABLE a (x INT);\n\nCREATE TABLE b (x INT,,\n  y INT);\n")
        r = self.code(1, "upgrade")
        self.assertIn("0001_a.sql', line 3: ERROR:  syntax error at or near \",\"", r.err)
        self.assertIn("SQLSTATE 42601", r.err)
        self.assertFalse(self.has_table("a"))
        self.assertEqual(self.versions(), [])

    def test_psql_meta_command_is_explained(self):
        self.write("migrations/0001_a.sql", "CREATE TABLE a (x INT);\n\\set ON_ERROR_STOP on\n")
        r = self.code(1, "upgrade")
        self.assertIn("0001_a.sql', line 2: ERROR:  syntax error at or near \"\\\"", r.err)
        self.assertIn("psql meta-commands", r.err)
        self.assertFalse(self.has_table("a"))

    def test_pg_dump_style_search_path_does_not_leak(self):
        # pg_dump output empties the search_path; the version table (and the
        # next migration) must still resolve unqualified names
        self.write("migrations/0001_dump.sql",
                   "SET statement_timeout = 0;\n"
                   "SELECT pg_catalog.set_config('search_path', '', false);\n"
                   "CREATE TABLE public.a (x integer);\n")
        self.write("migrations/0002_next.sql", "CREATE TABLE b (x INT);\n")
        self.ok("upgrade")
        self.assertEqual(self.versions(), ["0001", "0002"])
        self.assertTrue(self.has_table("public.b"))

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
        self.assertEqual(self.q("SELECT count(*) FROM pg_tables WHERE tablename ~ '^t[0-9]'"), "0")

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
        for v in ["2008030300", "2008060900", "2010100600", "2015030800"]:
            self.write("migrations/%s.sql" % v, "CREATE TABLE t%s (x INT);\n" % v)
        self.ok("upgrade")
        self.assertEqual(self.run_sm("current").out.strip(), "2015030800")
        url2 = self.pg_new_db()
        for v in ["2.9.0", "2.10.0", "2.8.1", "10.0"]:
            self.write("dotted/%s.sql" % v, "CREATE TABLE \"v%s\" (x INT);\n" % v)
        r = self.ok("-m", self.path("dotted"), "-d", url2, "upgrade")
        order = [l.split()[1] for l in r.out.splitlines() if l.startswith("applied")]
        self.assertEqual(order, ["2.8.1", "2.9.0", "2.10.0", "10.0"])
        self.assertEqual(self.versions(url2), ["2.8.1", "2.9.0", "2.10.0", "10.0"])
        self.assertTrue(self.has_table('"v2.10.0"', url2))

    def test_plpgsql_function_with_dollar_quoting(self):
        self.write("migrations/0001_fn.sql",
                   "-- migrate:up\n"
                   "CREATE TABLE counters (n INT NOT NULL);\n"
                   "CREATE FUNCTION bump(k INT) RETURNS INT LANGUAGE plpgsql AS $$\n"
                   "DECLARE\n  total INT;\nBEGIN\n"
                   "  INSERT INTO counters VALUES (k);  -- a ; inside the body\n"
                   "  SELECT sum(n) INTO total FROM counters;\n"
                   "  RETURN total;\nEND;\n$$;\n"
                   "CREATE FUNCTION tagged() RETURNS TEXT LANGUAGE sql AS $body$ SELECT 'a;b' $body$;\n"
                   "DO $$ BEGIN PERFORM bump(2); PERFORM bump(3); END $$;\n"
                   "-- migrate:down\n"
                   "DROP FUNCTION tagged();\nDROP FUNCTION bump(INT);\nDROP TABLE counters;\n")
        self.ok("upgrade")
        self.assertEqual(self.q("SELECT bump(10)"), "15")
        self.assertEqual(self.q("SELECT tagged()"), "a;b")
        self.ok("downgrade", "base")
        self.assertEqual(self.q("SELECT count(*) FROM pg_proc WHERE proname IN ('bump','tagged')"),
                         "0")

    def test_transaction_false_create_index_concurrently(self):
        self.write("migrations/0001_t.sql",
                   "-- migrate:up\nCREATE TABLE t (x INT);\nINSERT INTO t SELECT generate_series(1, 100);\n"
                   "-- migrate:down\nDROP TABLE t;\n")
        self.write("migrations/0002_idx.sql",
                   "-- migrate:up\nCREATE INDEX CONCURRENTLY t_x ON t (x);\n"
                   "-- migrate:down\nDROP INDEX CONCURRENTLY t_x;\n")
        # in a transaction the server refuses it: the chain stops there
        r = self.code(1, "upgrade")
        self.assertIn("0002_idx.sql', line 2", r.err)
        self.assertIn("SQLSTATE 25001", r.err)
        self.assertIn("transaction:false", r.err)
        self.assertEqual(self.versions(), ["0001"])
        self.write("migrations/0002_idx.sql",
                   "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY t_x ON t (x);\n"
                   "-- migrate:down transaction:false\nDROP INDEX CONCURRENTLY t_x;\n")
        r = self.ok("upgrade")
        self.assertIn("outside a transaction", r.err)
        self.assertEqual(self.q("SELECT indisvalid FROM pg_index WHERE indexrelid = 't_x'::regclass"),
                         "t")
        self.assertEqual(self.versions(), ["0001", "0002"])
        self.ok("downgrade", "-1")
        self.assertFalse(self.has_table("t_x"))
        self.assertEqual(self.versions(), ["0001"])

    def test_transaction_control_inside_a_migration_is_refused(self):
        self.write("migrations/0001_a.sql", "BEGIN;\nCREATE TABLE a (x INT);\nCOMMIT;\n")
        r = self.code(1, "upgrade")
        self.assertIn("0001_a.sql', line 1", r.err)
        self.assertIn("transaction:false", r.err)
        self.assertFalse(self.has_table("a"))
        self.assertEqual(self.versions(), [])

    def test_sql_is_offline(self):
        self.write("migrations/0001_a.sql", "CREATE TABLE a (x INT);\n")
        self.write("migrations/0002_b.sql",
                   "CREATE FUNCTION f() RETURNS INT AS $$ SELECT 1 $$ LANGUAGE sql;\n"
                   "CREATE TABLE b (x INT)")
        h, _ = self.host_port()
        dead = "postgresql://postgres@%s:1/nowhere" % h
        r = self.ok("-d", dead, "sql", "--start", "base", "--end", "head")
        self.assertIn("CREATE TABLE a", r.out)
        self.assertIn("INSERT INTO safe_migrate_versions", r.out)
        # the script really runs on PostgreSQL
        url2 = self.pg_new_db()
        p = subprocess.run(["psql", url2, "-X", "-q", "-v", "ON_ERROR_STOP=1"], input=r.out,
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.versions(url2), ["0001", "0002"])
        self.assertTrue(self.has_table("b", url2))
        # the default start is the database's current version
        self.ok("upgrade", "0001")
        r = self.ok("sql")
        self.assertNotIn("CREATE TABLE a", r.out)
        self.assertIn("CREATE TABLE b", r.out)
        self.assertFalse(self.has_table("b"))

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

    def test_missing_database_is_not_created(self):
        self.write("migrations/0001_a.sql", "CREATE TABLE a (x INT);\n")
        name = "sm_missing_" + uuid.uuid4().hex[:8]
        url = self.url.rsplit("/", 1)[0] + "/" + name
        r = self.code(1, "-d", url, "upgrade")
        self.assertIn('database "%s" does not exist' % name, r.err)
        self.assertIn("createdb", r.err)
        self.assertEqual(self.psql(PG_URL, "SELECT count(*) FROM pg_database WHERE datname = '%s'"
                                   % name), "0")

    def test_statement_timeout(self):
        self.write("migrations/0001_a.sql", "CREATE TABLE a (x INT);\n")
        self.write("migrations/0002_slow.sql", "CREATE TABLE b (x INT);\nSELECT pg_sleep(30);\n")
        r = self.code(1, "upgrade", "--statement-timeout", "300ms")
        self.assertIn("0002_slow.sql', line 2", r.err)
        self.assertIn("statement timeout", r.err)
        self.assertIn("SQLSTATE 57014", r.err)
        self.assertIn("--statement-timeout", r.err)
        self.assertFalse(self.has_table("b"))
        self.assertEqual(self.versions(), ["0001"])

    def test_statement_lock_timeout(self):
        self.write("migrations/0001_a.sql", "CREATE TABLE a (x INT);\n")
        self.write("migrations/0002_b.sql", "ALTER TABLE a ADD COLUMN y INT;\n")
        self.ok("upgrade", "0001")
        holder = subprocess.Popen(["psql", self.url, "-X", "-q", "-A", "-t"], text=True,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        try:
            holder.stdin.write("BEGIN;\nLOCK TABLE a IN ACCESS SHARE MODE;\n")
            holder.stdin.flush()
            self.wait_for("SELECT count(*) > 0 FROM pg_locks WHERE relation = 'a'::regclass "
                          "AND granted AND pid <> pg_backend_pid()", "psql to lock the table",
                          url=self.url)
            r = self.code(1, "upgrade", "--statement-lock-timeout", "200ms")
        finally:
            holder.communicate(timeout=30)
        self.assertIn("0002_b.sql', line 1", r.err)
        self.assertIn("lock timeout (SQLSTATE 55P03)", r.err)
        self.assertIn("--statement-lock-timeout", r.err)
        self.assertEqual(self.versions(), ["0001"])

    def test_interrupt_cancels_the_running_statement(self):
        self.write("migrations/0001_a.sql", "CREATE TABLE a (x INT);\n")
        self.write("migrations/0002_slow.sql", "CREATE TABLE b (x INT);\nSELECT pg_sleep(60);\n")
        p = subprocess.Popen([BIN, "upgrade"], cwd=self.dir, env=self.env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            self.wait_for("SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = '%s' "
                          "AND application_name = 'safe-migrate' AND state = 'active' "
                          "AND query LIKE 'SELECT pg_sleep%%'" % self.dbname(),
                          "the migration to reach pg_sleep")
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
        self.assertEqual(p.returncode, 130, err)
        self.assertIn("0002_slow.sql', line 2", err)
        self.assertIn("canceling statement due to user request", err)
        self.assertFalse(self.has_table("b"))
        self.assertEqual(self.versions(), ["0001"])
        # the lock went with the connection: the next run proceeds at once
        self.write("migrations/0002_slow.sql", "CREATE TABLE b (x INT);\n")
        self.ok("upgrade", "--lock-timeout", "0")
        self.assertEqual(self.versions(), ["0001", "0002"])


if __name__ == "__main__":
    main()
