"""CLI tests of the migration commands against a real PostgreSQL server.

The SQLite tests of test_migrate_sqlite.py, ported to PostgreSQL, plus what
only a server has: SQLSTATEs, transaction:false with CREATE INDEX
CONCURRENTLY, the advisory migration lock between concurrent runs,
statement timeouts, cancellation, and connection parameters (passwords,
PGPASSWORD, sslmode, +driver URLs) that must never leak into any output.
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


class LockPg(PgTest):
    def test_concurrent_upgrades_apply_each_migration_once(self):
        self.q("CREATE TABLE applied_log (version TEXT)")
        for i in range(1, 4):
            self.write("migrations/%04d_m%d.sql" % (i, i),
                       "SELECT pg_sleep(1);\nCREATE TABLE m%d (x INT);\n"
                       "INSERT INTO applied_log VALUES ('%04d');\n" % (i, i))
        procs = [subprocess.Popen([BIN, "upgrade"], cwd=self.dir, env=self.env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(2)]
        results = [p.communicate(timeout=120) for p in procs]
        for p, (out, err) in zip(procs, results):
            self.assertEqual(p.returncode, 0, err)
        self.assertEqual(self.q("SELECT string_agg(version, ',' ORDER BY version) FROM applied_log"),
                         "0001,0002,0003")
        self.assertEqual(self.versions(), ["0001", "0002", "0003"])
        outs = "".join(out for out, _ in results)
        for v in ("0001", "0002", "0003"):
            self.assertEqual(outs.count("applied %s" % v), 1, outs)

    def test_lock_timeout_names_the_holder(self):
        self.chain(1)
        holder = subprocess.Popen(["psql", self.url, "-X", "-q", "-A", "-t"], text=True,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        try:
            holder.stdin.write("SELECT pg_advisory_lock(%s);\n" % LOCK_KEY)
            holder.stdin.flush()
            self.wait_for("SELECT count(*) > 0 FROM pg_locks l JOIN pg_database d ON "
                          "d.oid = l.database WHERE d.datname = '%s' AND l.locktype = "
                          "'advisory' AND l.granted" % self.dbname(), "psql to take the lock")
            pid = self.psql(PG_URL, "SELECT l.pid FROM pg_locks l JOIN pg_database d ON "
                            "d.oid = l.database WHERE d.datname = '%s' AND l.locktype = "
                            "'advisory'" % self.dbname())
            r = self.code(1, "upgrade", "--lock-timeout", "1s")
            self.assertIn("another migration is running", r.err)
            self.assertIn("held by pid %s" % pid, r.err)
            self.assertIn("application 'psql'", r.err)
            self.assertIn("1000 ms", r.err)
            self.assertEqual(self.versions(), [])
            self.assertFalse(self.has_table("t1"))
            # read-only commands do not need the lock
            self.assertEqual(self.run_sm("current").out.strip(), "base")
        finally:
            holder.communicate(timeout=30)
        self.ok("upgrade", "--lock-timeout", "0")
        self.assertEqual(self.versions(), ["0001"])

    def test_second_run_times_out_while_first_applies(self):
        self.write("migrations/0001_slow.sql", "CREATE TABLE a (x INT);\nSELECT pg_sleep(60);\n")
        first = subprocess.Popen([BIN, "upgrade"], cwd=self.dir, env=self.env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            self.wait_for("SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = '%s' "
                          "AND application_name = 'safe-migrate' AND state = 'active' "
                          "AND query LIKE 'SELECT pg_sleep%%'" % self.dbname(),
                          "the first run to reach pg_sleep")
            r = self.code(1, "upgrade", "--lock-timeout", "1s", "--json")
            self.assertIn("another migration is running on '%s'" % self.url, r.err)
            self.assertIn("application 'safe-migrate'", r.err)
            self.assertIn("--lock-timeout", r.err)
            self.assertIn("another migration is running", r.json()["error"])
            first.send_signal(signal.SIGINT)
            first.communicate(timeout=30)
        finally:
            if first.poll() is None:
                first.kill()
                first.communicate()
        self.assertEqual(first.returncode, 130)
        self.assertEqual(self.versions(), [])
        self.assertFalse(self.has_table("a"))

    def test_second_run_waits_and_finds_nothing_to_do(self):
        self.chain(2)
        script = self.ok("sql", "--start", "base", "--end", "head").out
        holder = subprocess.Popen(["psql", self.url, "-X", "-q", "-A", "-t"], text=True,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        waiter = None
        try:
            holder.stdin.write("SELECT pg_advisory_lock(%s);\n" % LOCK_KEY)
            holder.stdin.flush()
            self.wait_for("SELECT count(*) > 0 FROM pg_locks l JOIN pg_database d ON "
                          "d.oid = l.database WHERE d.datname = '%s' AND l.locktype = "
                          "'advisory' AND l.granted" % self.dbname(), "psql to take the lock")
            waiter = subprocess.Popen([BIN, "upgrade"], cwd=self.dir, env=self.env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            self.wait_for("SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = '%s' AND "
                          "application_name = 'safe-migrate'" % self.dbname(),
                          "the second run to connect")
            # while the waiter polls, the lock holder applies the whole chain
            # (the offline script, version rows included), then lets go
            holder.stdin.write(script)
        finally:
            holder.communicate(timeout=30)
            if waiter:
                out, err = waiter.communicate(timeout=120)
        self.assertEqual(holder.returncode, 0)
        self.assertEqual(waiter.returncode, 0, err)
        self.assertNotIn("applied", out)
        self.assertEqual(self.versions(), ["0001", "0002"])
        self.code(0, "check")


class ConnectionPg(PgTest):
    PASSWORD = "Pw9xS3cretZq"

    def make_role(self):
        role = "sm_u_" + uuid.uuid4().hex[:8]
        self.psql_admin("CREATE ROLE %s LOGIN PASSWORD '%s'" % (role, self.PASSWORD))
        self.psql_admin('ALTER DATABASE "%s" OWNER TO %s' % (self.dbname(), role))
        self.addCleanup(self.psql_admin, "DROP ROLE IF EXISTS %s" % role)
        return role

    def url_with(self, user=None, password=None, port=None, db=None, scheme="postgresql",
                 query=""):
        h, p = self.host_port()
        auth = user or "postgres"
        if password:
            auth += ":" + password
        return "%s://%s@%s:%s/%s%s" % (scheme, auth, h, port or p, db or self.dbname(), query)

    def assert_hidden(self, r, secret=None):
        secret = secret or self.PASSWORD
        self.assertNotIn(secret, r.out)
        self.assertNotIn(secret, r.err)

    def test_password_never_printed(self):
        role = self.make_role()
        url = self.url_with(role, self.PASSWORD)
        os.unlink(self.path("safe-migrate.ini"))
        self.chain(2)
        self.write("migrations/0003_bad.sql", "INSERT INTO nope VALUES (1);\n")
        runs = [
            self.ok("init", url),
            self.ok("-v", "upgrade", "0002"),
            self.ok("current"),
            self.ok("current", "--json"),
            self.ok("history", "--json"),
            self.code(3, "check", "--json"),
            self.ok("sql"),
            self.code(1, "upgrade"),
            self.code(1, "upgrade", "--json"),
            self.ok("-d", url, "downgrade", "-1"),
            self.ok("-d", url, "stamp", "0002"),
            self.code(1, "-d", self.url_with(role, self.PASSWORD, port=1), "current"),
            self.code(1, "-d", self.url_with(role, self.PASSWORD, port=1), "current", "--json"),
            self.code(1, "-d", self.url_with(role, self.PASSWORD, db="no_such_db"), "upgrade"),
            self.code(1, "-d", self.url_with(role, self.PASSWORD, query="?sslmode=require"),
                      "current"),
            self.code(1, "-d", self.url_with(role, self.PASSWORD, query="?bogus=1"), "current"),
            self.code(2, "-d", "mysql://%s:%s@h/db" % (role, self.PASSWORD), "current"),
        ]
        for r in runs:
            self.assert_hidden(r)
        self.assertEqual(self.versions(), ["0001", "0002"])
        self.assertEqual(self.q("SELECT tableowner FROM pg_tables WHERE tablename = 't1'"), role)

    def test_keyword_conninfo_password_never_printed(self):
        role = self.make_role()
        h, p = self.host_port()
        self.chain(1)
        ok = "host=%s port=%s dbname=%s user=%s password=%s" % (h, p, self.dbname(), role,
                                                                self.PASSWORD)
        self.assert_hidden(self.ok("-d", ok, "upgrade"))
        self.assertEqual(self.versions(), ["0001"])
        bad = "host=%s port=1 dbname=%s user=%s password='%s'" % (h, self.dbname(), role,
                                                                 self.PASSWORD)
        self.assert_hidden(self.code(1, "-d", bad, "current"))
        spaced = "host=%s port=1 dbname=%s user=%s password = %s" % (h, self.dbname(), role,
                                                                  self.PASSWORD)
        self.assert_hidden(self.code(1, "-d", spaced, "current", "--json"))
        broken = "host=%s password=%s port" % (h, self.PASSWORD)
        self.assert_hidden(self.code(1, "-d", broken, "current"))

    def test_connection_refused_names_host_and_port(self):
        self.chain(1)
        h, _ = self.host_port()
        r = self.code(1, "-d", self.url_with("postgres", self.PASSWORD, port=1), "upgrade")
        self.assertIn("cannot connect to 'postgresql://postgres:***@%s:1/" % h, r.err)
        self.assertIn('"%s", port 1 failed' % h, r.err)
        self.assertIn("Connection refused", r.err)
        self.assert_hidden(r)

    def test_pgpassword_and_pg_environment(self):
        role = self.make_role()
        self.chain(1)
        env = {"PGPASSWORD": self.PASSWORD}
        self.assert_hidden(self.ok("-d", self.url_with(role), "upgrade", env=env))
        self.assertEqual(self.versions(), ["0001"])
        self.assert_hidden(self.code(1, "-d", self.url_with(role, port=1), "current", env=env))
        # everything from the environment, as psql would take it
        h, p = self.host_port()
        env = {"PGHOST": h, "PGPORT": str(p), "PGUSER": role, "PGDATABASE": self.dbname(),
               "PGPASSWORD": self.PASSWORD}
        r = self.ok("-d", "postgresql://", "current", env=env)
        self.assertEqual(r.out.strip(), "0001")
        self.assert_hidden(r)

    def test_sslmode(self):
        self.chain(1)
        self.ok("-d", self.url_with(query="?sslmode=disable"), "upgrade")
        self.assertEqual(self.versions(), ["0001"])
        # the throwaway cluster has no SSL: requiring it must fail, proving
        # the parameter reaches libpq
        r = self.code(1, "-d", self.url_with(query="?sslmode=require"), "current")
        self.assertIn("SSL", r.err)
        r = self.code(1, "-d", self.url_with(), "current", env={"PGSSLMODE": "require"})
        self.assertIn("SSL", r.err)

    def test_driver_suffix_urls(self):
        self.chain(3)
        self.ok("-d", self.url_with(scheme="postgresql+psycopg2"), "upgrade", "+1")
        self.ok("-d", self.url_with(scheme="postgresql+asyncpg"), "upgrade", "+1")
        self.ok("-d", self.url_with(scheme="postgres"), "upgrade")
        self.assertEqual(self.versions(), ["0001", "0002", "0003"])
        self.write("alembic-style.ini", "[safe-migrate]\ndatabase_url = %s\n"
                   % self.url_with(scheme="postgresql+psycopg2", password=self.PASSWORD))
        r = self.ok("-c", self.path("alembic-style.ini"), "current", "--json")
        self.assertEqual(r.json()["current"], "0003")
        self.assert_hidden(r)


if __name__ == "__main__":
    main()
