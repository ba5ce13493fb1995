"""CLI tests of the migration commands against a real PostgreSQL server.

The engine-independent contract (migrate_common.py), plus what only a
server has: SQLSTATEs, transaction:false with CREATE INDEX CONCURRENTLY,
statement and lock timeouts, and cancellation.  The migration
lock between concurrent runs and the connection parameters are tested in
test_pg_connection.py, which shares PgTest.
"""
import os
import signal
import subprocess
import time
import urllib.parse
import uuid

from migrate_common import MigrationContract
from smtest import BIN, PG_URL, CliTest, main, pg_dbname

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
        """name may be schema-qualified and quoted, as to_regclass takes it."""
        return self.q("SELECT to_regclass('%s') IS NOT NULL" % name, url) == "t"

    def versions(self, url=None):
        if not self.has_table("safe_migrate_versions", url):
            return []
        out = self.q("SELECT version FROM safe_migrate_versions", url)
        return sorted(out.split(), key=lambda v: [int(p) for p in v.replace("_", ".").split(".")])

    def dbname(self, url=None):
        return pg_dbname(url or self.url)

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

    def wait_for_pg_sleep(self, what):
        """Waits until a safe-migrate session of this database runs pg_sleep."""
        self.wait_for("SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = '%s' "
                      "AND application_name = 'safe-migrate' AND state = 'active' "
                      "AND query LIKE 'SELECT pg_sleep%%'" % self.dbname(), what)


class MigratePg(MigrationContract, PgTest):
    SERIAL_PK = "serial PRIMARY KEY"
    MISSING_TABLE = 'ERROR:  relation "missing_table" does not exist (SQLSTATE 42P01)'

    # -- the engine's side of MigrationContract (versions: PgTest) -----------
    def has_table(self, name, url=None):
        """A table of exactly this (unquoted) name in the public schema."""
        return self.q("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND "
                      "tablename = '%s'" % name.replace("'", "''"), url) == "1"

    def columns(self, table):
        return self.q("SELECT string_agg(column_name, ',' ORDER BY ordinal_position) "
                      "FROM information_schema.columns WHERE table_name = '%s'" % table).split(",")

    def count(self, table):
        return int(self.q("SELECT count(*) FROM %s" % table))

    def second_db(self):
        return self.pg_new_db()

    def test_roundtrip_never_takes_a_live_database_for_its_scratch(self):
        # no tables, but a type, a sequence in use and the version table:
        # roundtrip would have run the down sections here and dropped the
        # version tables at the end
        self.write("migrations/0001_a.sql", "-- migrate:up\nCREATE TYPE mood AS ENUM ('ok');\n"
                   "CREATE SEQUENCE IF NOT EXISTS invoice_no;\n-- migrate:down\n"
                   "DROP SEQUENCE invoice_no;\nDROP TYPE mood;\n")
        self.ok("upgrade")
        self.q("SELECT setval('invoice_no', 1049)")
        r = self.code(2, "roundtrip")
        self.assertIn("needs --url SCRATCH", r.err)
        self.assertIn("and a version table", r.err)
        self.assertIn("0001", self.ok("current").out)
        self.assertEqual(self.q("SELECT last_value FROM invoice_no"), "1049")
        # a scratch database given by URL must be empty too
        r = self.code(2, "-d", self.pg_new_db(), "roundtrip", "--url", self.url)
        self.assertIn("is not empty", r.err)
        self.assertIn("0001", self.ok("current").out)

    def test_failure_reports_the_sqlstate(self):
        self.write("migrations/0001_bad.sql", "INSERT INTO missing_table VALUES (1);\n")
        r = self.code(1, "upgrade", "--json")
        self.assertEqual(r.json()["sqlstate"], "42P01")

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
        self.assertTrue(self.has_table("b"))

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
        # unmarked, it is recognised from the parse tree and run outside one
        r = self.ok("upgrade", "+2")
        self.assertIn("CREATE INDEX CONCURRENTLY cannot run in one", r.err)
        self.ok("downgrade", "0001")
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
        # a file opening its own transaction runs as written (test_migdirs.py);
        # a stray COMMIT in a transactional migration is still refused
        self.write("migrations/0001_a.sql", "CREATE TABLE a (x INT);\nCOMMIT;\n")
        r = self.code(1, "upgrade")
        self.assertIn("0001_a.sql', line 2", r.err)
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
            self.wait_for_pg_sleep("the migration to reach pg_sleep")
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
