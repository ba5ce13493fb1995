"""CLI tests of what happens around the migrations on PostgreSQL: the
advisory migration lock between concurrent runs, and connection parameters
(passwords in URLs and conninfo strings, PGPASSWORD and the PG* environment,
sslmode, +driver URLs) that must work and must never leak into any output.
"""
import os
import signal
import subprocess
import uuid

from smtest import BIN, PG_URL, main
from test_migrate_pg import LOCK_KEY, PgTest


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
            self.wait_for_pg_sleep("the first run to reach pg_sleep")
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
