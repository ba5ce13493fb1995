"""The pipeline while the application keeps writing (issue 15, section 4).

A real concurrent writer (a thread inserting a row every 3 ms through its own
connection: sqlite3, or a psql session) runs through every test; real lock
holders are psql sessions left idle in a transaction.  What is asserted:
nothing another session committed is ever silently discarded.
"""
import json
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time

from smtest import BIN, SRC, CliTest, main, snapshot_manifest

# Fails on the real data only (two users named alike), not in the lint's rehearsal.
BAD_SQLITE = ("UPDATE users SET name = 'same';\n"
              "CREATE UNIQUE INDEX users_name_uq ON users(name);")
BAD_PG = ("UPDATE users SET name = 'same';\n"
          "CREATE UNIQUE INDEX users_name_uq ON users (name);")


class SqliteWriter:
    """Inserts a row into events every 3 ms; .committed lists what committed."""

    def __init__(self, path):
        self.path = path
        self.committed = []
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self):
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        i = 0
        while not self.stop_flag.is_set():
            i += 1
            try:
                con.execute("INSERT INTO events (v) VALUES (?)", (i,))
                self.committed.append(i)
            except sqlite3.Error:
                pass
            time.sleep(0.003)
        con.close()

    def __enter__(self):
        self.thread.start()
        return self

    def wait_for_rows(self, n):
        deadline = time.monotonic() + 30
        while len(self.committed) < n and time.monotonic() < deadline:
            time.sleep(0.01)

    def stop(self):
        self.stop_flag.set()
        self.thread.join(60)

    def __exit__(self, *exc):
        self.stop()


class PgWriter(SqliteWriter):
    """The same through one psql session (autocommit): a row counts as
    committed when its RETURNING line came back."""

    STATEMENT = "INSERT INTO events (v) VALUES (%d) RETURNING 'c' || v;"

    def loop(self):
        p = subprocess.Popen(["psql", self.path, "-X", "-q", "-A", "-t"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             bufsize=1, env=dict(os.environ, PGAPPNAME="app-writer"))
        i = 0
        while not self.stop_flag.is_set():
            i += 1
            p.stdin.write(self.STATEMENT % i + "\n\\echo done\n")
            p.stdin.flush()
            while True:
                line = p.stdout.readline()
                if not line or line.strip() == "done":
                    break
                if line.strip() == "c%d" % i:
                    self.committed.append(i)
            if not line:
                break
            time.sleep(0.003)
        p.stdin.close()
        p.wait()


class LoWriter(PgWriter):
    """Creates a large object every 3 ms instead."""

    STATEMENT = "SELECT 'c' || %d FROM pg_catalog.lo_from_bytea(0, 'app doc');"


class LockHolder:
    """A psql session that takes ACCESS SHARE on a table and stays idle in
    its transaction (what an application's forgotten transaction does)."""

    def __init__(self, url, table):
        self.p = subprocess.Popen(["psql", url, "-X", "-q", "-A", "-t"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                  bufsize=1, env=dict(os.environ, PGAPPNAME="lockholder"))
        self.p.stdin.write("BEGIN;\nSELECT pg_backend_pid() FROM %s LIMIT 1;\n" % table)
        self.p.stdin.flush()
        self.pid = self.p.stdout.readline().strip()

    def release(self):
        if self.p.poll() is None:
            self.p.stdin.write("ROLLBACK;\n")
            self.p.stdin.close()
            self.p.wait(30)


class ConcurrentSqlite(CliTest):
    def setUp(self):
        super().setUp()
        self.sqlite("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        self.sqlite("INSERT INTO users (name) VALUES ('ada'), ('alan'), ('grace')")
        self.sqlite("CREATE TABLE events (id INTEGER PRIMARY KEY, v INT)")
        self.write("migrations/0001_base.sql",
                   "-- migrate:up\nCREATE TABLE base (x INT);\n-- migrate:down\nDROP TABLE base;\n")
        self.ok("-d", self.sqlite_url(), "-b", "backups", "-m", "migrations", "upgrade")
        self.base = ["-d", self.sqlite_url(), "-b", "backups", "-m", "migrations"]
        # the run takes a while, so the writer is busy during it
        self.slow = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                     "WHERE x < 300000) SELECT count(*) FROM c;")

    def add(self, name, up):
        self.write("migrations/" + name, "-- migrate:up\n%s\n" % up)

    def events(self, name="app.db"):
        return {v for (v,) in self.sqlite("SELECT v FROM events", name)}

    def test_nothing_committed_no_restore(self):
        """The first migration fails in its own transaction: nothing to undo,
        exit 1, and every row the writer committed survives."""
        self.add("0002_bad.sql", self.slow + "\n" + BAD_SQLITE)
        with SqliteWriter(self.path("app.db")) as w:
            w.wait_for_rows(20)
            r = self.run_sm(*self.base, "safe-migrate", "--json")
            w.wait_for_rows(len(w.committed) + 20)
        self.assertEqual(r.code, 1, r)
        j = r.json()
        self.assertEqual(j["outcome"], "rolled_back")
        self.assertIn("nothing was changed", r.err)
        self.assertTrue(os.path.exists(self.path(j["snapshot"])), j)
        self.assertTrue(set(w.committed) <= self.events())
        self.assertEqual(self.sqlite("SELECT count(*) FROM sqlite_master WHERE name = "
                                     "'users_name_uq'"), [(0,)])

    def test_foreign_writes_saved_then_restored(self):
        self.add("0002_a.sql", "CREATE TABLE a (x INT);\n" + self.slow)
        self.add("0003_bad.sql", BAD_SQLITE)
        with SqliteWriter(self.path("app.db")) as w:
            w.wait_for_rows(20)
            r = self.run_sm(*self.base, "safe-migrate", "--json")
        self.assertEqual(r.code, 5, r)
        j = r.json()
        self.assertEqual(j["outcome"], "restored")
        cw = j["concurrent_writes"]
        self.assertEqual(cw["action"], "saved_then_restored")
        saved = cw["saved_state"]
        self.assertIn("OTHER SESSIONS WROTE", r.err)
        self.assertIn(saved, r.err)
        self.assertEqual(self.sqlite("SELECT count(*) FROM sqlite_master WHERE name = 'a'"),
                         [(0,)])
        # every committed row is in the restored database or in the saved state
        self.ok("restore", saved, "--to", self.sqlite_url("saved.db"), "--yes")
        self.assertTrue(set(w.committed) <= self.events() | self.events("saved.db"))
        self.assertEqual(self.sqlite("SELECT count(*) FROM sqlite_master WHERE name = 'a'",
                                     "saved.db"), [(1,)])

    def test_stop_leaves_the_database(self):
        self.add("0002_a.sql", "CREATE TABLE a (x INT);\n" + self.slow)
        self.add("0003_bad.sql", BAD_SQLITE)
        with SqliteWriter(self.path("app.db")) as w:
            w.wait_for_rows(20)
            r = self.run_sm(*self.base, "safe-migrate", "--json", "--on-concurrent-writes", "stop")
        self.assertEqual(r.code, 8, r)
        j = r.json()
        self.assertEqual(j["outcome"], "concurrent_writes")
        self.assertEqual(j["concurrent_writes"]["action"], "stopped")
        self.assertIn(j["snapshot"], r.err)
        # not restored: 0002's table is there, and so is every row
        self.assertEqual(self.sqlite("SELECT count(*) FROM sqlite_master WHERE name = 'a'"),
                         [(1,)])
        self.assertTrue(set(w.committed) <= self.events())
        # the run stays open in its journal: the message points to recover,
        # and nothing proceeds on the half-migrated database until then
        self.assertIn("recover --yes", r.err)
        r = self.code(4, *self.base, "safe-migrate")
        self.assertIn("other sessions wrote, it did not restore", r.err)
        self.assertIn("safe-migrate recover", r.err)
        r = self.run_sm(*self.base, "recover", "--yes", "--json")
        self.assertEqual(r.code, 0, r)
        self.assertEqual(r.json()["outcome"], "restored")
        self.assertIn("saved_state", r.json())
        self.assertEqual(self.sqlite("SELECT count(*) FROM sqlite_master WHERE name = 'a'"),
                         [(0,)])

    def test_recover_saves_the_state_first(self):
        """After kill -9, recover cannot tell the killed run's writes from the
        writer's: it saves the state (while writes wait) and then restores."""
        self.add("0002_a.sql", "CREATE TABLE a (x INT);")
        self.add("0003_long.sql", "CREATE TABLE t (x INT);\n" + self.slow.replace("300000",
                                                                                 "30000000"))
        with SqliteWriter(self.path("app.db")) as w:
            w.wait_for_rows(20)
            p = subprocess.Popen([BIN, *self.base, "safe-migrate"], cwd=self.dir, env=self.env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 60
            while not self.sqlite("SELECT count(*) FROM safe_migrate_versions WHERE version = "
                                  "'0002'")[0][0]:
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.02)
            p.kill()
            p.wait()
            w.wait_for_rows(len(w.committed) + 20)
            r = self.run_sm(*self.base, "recover", "--yes", "--json")
            w.wait_for_rows(len(w.committed) + 5)
        self.assertEqual(r.code, 0, r)
        j = r.json()
        self.assertEqual(j["outcome"], "restored")
        self.assertEqual(self.sqlite("SELECT count(*) FROM sqlite_master WHERE name = 'a'"),
                         [(0,)])
        self.ok("restore", j["saved_state"], "--to", self.sqlite_url("saved.db"), "--yes")
        missing = set(w.committed) - self.events() - self.events("saved.db")
        self.assertFalse(missing, (sorted(missing), max(self.events()), max(self.events("saved.db")),
                                   len(w.committed)))

    def run_command_fails_under_a_writer(self):
        """run -- COMMAND cannot tell the command's writes from a writer's: the
        failed state is always saved before the restore, so none is lost, and
        the writer's commits after the restore do not make it a failed one."""
        with SqliteWriter(self.path("app.db")) as w:
            w.wait_for_rows(20)
            r = self.run_sm(*self.base[:4], "run", "--json", "--", "sqlite3", "-cmd", ".timeout 10000",
                            "app.db",
                            "INSERT INTO users (name) VALUES ('cmd'); "
                            "CREATE TEMP TABLE slow AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL "
                            "SELECT x + 1 FROM c WHERE x < 300000) SELECT x FROM c; "
                            "SELECT no_such_fn();")
            w.wait_for_rows(len(w.committed) + 5)
        self.assertEqual(r.code, 5, r)
        saved = r.json().get("saved_state")
        self.assertTrue(saved and os.path.exists(os.path.join(self.dir, saved)), r)
        self.assertEqual(self.sqlite("SELECT count(*) FROM users WHERE name = 'cmd'"), [(0,)])
        self.ok("restore", saved, "--to", self.sqlite_url("saved.db"), "--yes")
        self.assertEqual(self.sqlite("SELECT count(*) FROM users WHERE name = 'cmd'", "saved.db"),
                         [(1,)])
        missing = set(w.committed) - self.events() - self.events("saved.db")
        self.assertFalse(missing, sorted(missing))
        return r

    def test_run_saves_the_failed_state_before_restoring(self):
        r = self.run_command_fails_under_a_writer()
        # rollback-journal mode: the restore keeps its lock until the check
        # is done, so a writer's row cannot land in between
        self.assertIn("confirmed before other sessions could write again", r.err)

    def test_run_restores_under_a_writer_in_wal_mode(self):
        """In WAL mode the copy cannot keep its lock for the check: a writer
        that commits right after it leaves the counts unchecked, never a
        restore reported as failed (exit 6)."""
        self.sqlite("PRAGMA journal_mode=WAL")
        self.run_command_fails_under_a_writer()
        self.assertEqual(self.sqlite("PRAGMA journal_mode"), [("wal",)])

    def test_backup_row_counts_are_its_copys_under_a_writer(self):
        """The manifest's row counts describe the very rows the snapshot
        holds, while a writer commits all along: they are counted in the
        copy's read transaction (counted in a later one, WAL-mode counts
        come out a few rows off).  In both journal modes, five backups
        each, each restored and counted."""
        for mode in ("delete", "wal"):
            self.sqlite("PRAGMA journal_mode=%s" % mode)
            with SqliteWriter(self.path("app.db")) as w:
                w.wait_for_rows(20)
                for i in range(5):
                    with self.subTest(mode=mode, backup=i):
                        name = "%s-%d" % (mode, i)
                        self.ok("-d", self.sqlite_url(), "-b", "backups", "backup",
                                "--name", name)
                        snap = self.path("backups", name + ".tar.zst")
                        manifest = snapshot_manifest(snap)
                        copy = self.path(name + ".db")
                        self.ok("-b", "backups", "restore", snap, "--to",
                                "sqlite:///" + copy, "--yes", "--no-safety-backup")
                        for table in ("events", "users"):
                            got = self.sqlite("SELECT count(*) FROM %s" % table,
                                              name + ".db")[0][0]
                            self.assertEqual(manifest["row_counts"][table], got, table)

    def test_no_writer_no_saved_state(self):
        """The run's own commits (its snapshot, migrations, version rows) are not
        taken for another connection's: "stop" does not stop, it restores."""
        self.add("0002_a.sql", "CREATE TABLE a (x INT);\nINSERT INTO events (v) VALUES (1);")
        self.add("0003_bad.sql", BAD_SQLITE)
        r = self.run_sm(*self.base, "safe-migrate", "--json", "--on-concurrent-writes", "stop")
        self.assertEqual(r.code, 5, r)
        self.assertNotIn("concurrent_writes", r.json())
        self.assertFalse([f for f in os.listdir(self.path("backups")) if "failed_state" in f])

    def test_bad_policy_is_a_usage_error(self):
        r = self.run_sm(*self.base, "safe-migrate", "--on-concurrent-writes", "maybe")
        self.assertEqual(r.code, 2, r)
        self.assertIn("'restore' or 'stop'", r.err)


class ConcurrentPg(CliTest):
    def setUp(self):
        super().setUp()
        self.url = self.pg_new_db()
        self.psql(self.url, """
            CREATE TABLE users (id serial PRIMARY KEY, name text);
            INSERT INTO users (name) VALUES ('ada'), ('alan'), ('grace');
            CREATE TABLE events (id serial PRIMARY KEY, v int);""")
        self.base = ["-d", self.url, "-b", self.path("backups"), "-m", self.path("migrations")]
        self.write("migrations/0001_base.sql",
                   "-- migrate:up\nCREATE TABLE base (x int);\n-- migrate:down\nDROP TABLE base;\n")
        self.ok(*self.base, "upgrade")

    def add(self, name, up):
        self.write("migrations/" + name, "-- migrate:up\n%s\n" % up)

    def events(self, url=None):
        return {int(x) for x in self.psql(url or self.url, "SELECT v FROM events").split()}

    def test_nothing_committed_no_restore(self):
        self.add("0002_bad.sql", "SELECT pg_sleep(0.5);\n" + BAD_PG)
        with PgWriter(self.url) as w:
            w.wait_for_rows(20)
            r = self.run_sm(*self.base, "safe-migrate", "--json")
            w.wait_for_rows(len(w.committed) + 20)
        self.assertEqual(r.code, 1, r)
        j = r.json()
        self.assertEqual(j["outcome"], "rolled_back")
        self.assertTrue(os.path.exists(j["snapshot"]), j)
        self.assertTrue(set(w.committed) <= self.events())

    def test_foreign_writes_saved_then_restored(self):
        self.add("0002_a.sql", "CREATE TABLE a (x int);\nINSERT INTO a VALUES (1);\n"
                 "UPDATE users SET name = name || '!';\nSELECT pg_sleep(0.5);")
        self.add("0003_bad.sql", "INSERT INTO users (name) VALUES ('eve');\n" + BAD_PG)
        with PgWriter(self.url) as w:
            w.wait_for_rows(20)
            r = self.run_sm(*self.base, "safe-migrate", "--json")
        self.assertEqual(r.code, 5, r)
        j = r.json()
        self.assertEqual(j["outcome"], "restored")
        cw = j["concurrent_writes"]
        # the writer's table, and not the tables only the run wrote
        self.assertEqual([t["table"] for t in cw["tables"]], ["public.events"], cw)
        self.assertGreater(cw["tables"][0]["rows"], 0)
        self.assertIn("public.events", r.err)
        saved = cw["saved_state"]
        self.assertIn(saved, r.err)
        self.assertEqual(self.psql(self.url, "SELECT to_regclass('public.a') IS NULL"), "t")
        self.assertEqual(self.psql(self.url, "SELECT string_agg(name, ',' ORDER BY id) FROM users"),
                         "ada,alan,grace")
        # checked inside the restore's transaction: the writer's next rows,
        # committed once it ends, are not taken for a faulty restore
        self.assertIn("confirmed before other sessions could write again", r.err)
        scratch = self.pg_new_db()
        # as the message says: restore it elsewhere with --to (with -d SCRATCH
        # it would be an in-place restore of another database's snapshot)
        self.ok("-d", self.url, "-b", self.path("backups"), "restore", saved, "--to", scratch,
                "--yes")
        self.assertTrue(set(w.committed) <= self.events() | self.events(scratch))

    def test_stop_leaves_the_database(self):
        self.add("0002_a.sql", "CREATE TABLE a (x int);\nSELECT pg_sleep(0.5);")
        self.add("0003_bad.sql", BAD_PG)
        with PgWriter(self.url) as w:
            w.wait_for_rows(20)
            r = self.run_sm(*self.base, "safe-migrate", "--json", "--on-concurrent-writes", "stop")
        self.assertEqual(r.code, 8, r)
        self.assertEqual(r.json()["concurrent_writes"]["action"], "stopped")
        self.assertEqual(self.psql(self.url, "SELECT to_regclass('public.a') IS NOT NULL"), "t")
        self.assertTrue(set(w.committed) <= self.events())

    def other_sessions_definitions(self):
        """A run whose last migration fails after a pause, during which
        another session creates a table (with a row), a schema with a table
        and a function, and alters an existing table: an in-place restore
        drops what the snapshot does not have.  Returns the run's result."""
        self.add("0002_a.sql", "CREATE TABLE a (x int);\nCREATE FUNCTION mine() RETURNS int "
                 "LANGUAGE sql AS 'SELECT 1';")
        self.add("0003_bad.sql", "SELECT pg_sleep(3);\n" + BAD_PG)
        p = self.start_in_apply(*self.base, "safe-migrate", "--json", "--on-concurrent-writes",
                                self.policy)
        self.psql(self.url, """
            CREATE TABLE orders_2026 (v text); INSERT INTO orders_2026 VALUES ('an order');
            CREATE SCHEMA other_team; CREATE TABLE other_team.t (x int);
            CREATE FUNCTION theirs(x int) RETURNS int LANGUAGE sql AS 'SELECT x';
            ALTER TABLE users ADD COLUMN note text;""")
        out, err = p.communicate(timeout=120)
        return p.returncode, out, err

    THEIRS = ["function public.theirs(x integer)", "schema other_team", "table other_team.t",
              "table public.orders_2026", "table public.users"]

    def test_other_sessions_definitions_saved_then_restored(self):
        """Definitions other sessions created or changed during the run are
        other sessions' writes: the failed state is saved first (before,
        the new table and its row were dropped with nothing said), and the
        run's own (its table and function) are not taken for theirs."""
        self.policy = "restore"
        code, out, err = self.other_sessions_definitions()
        self.assertEqual(code, 5, err)
        j = json.loads(out)
        self.assertEqual(j["outcome"], "restored")
        cw = j["concurrent_writes"]
        self.assertEqual(sorted(cw["definitions"]), self.THEIRS, cw)
        self.assertIn("table public.orders_2026: created or changed outside the run's "
                      "transactions", err)
        self.assertEqual(self.psql(self.url, "SELECT to_regclass('public.orders_2026') IS NULL "
                                             "AND to_regclass('public.a') IS NULL"), "t")
        scratch = self.pg_new_db()
        self.ok("-d", self.url, "-b", self.path("backups"), "restore", cw["saved_state"], "--to",
                scratch, "--yes")
        self.assertEqual(self.psql(scratch, "SELECT v FROM orders_2026"), "an order")
        self.assertEqual(self.psql(scratch, "SELECT theirs(7) + count(*) FROM other_team.t"),
                         "7")

    def test_other_sessions_definitions_stop_the_run(self):
        self.policy = "stop"
        code, out, err = self.other_sessions_definitions()
        self.assertEqual(code, 8, err)
        self.assertEqual(sorted(json.loads(out)["concurrent_writes"]["definitions"]),
                         self.THEIRS)
        self.assertEqual(self.psql(self.url, "SELECT v FROM orders_2026"), "an order")

    def fail_while_they_write(self, ready, sql, policy="restore"):
        """A run whose last migration fails after a pause: once ready (a
        query) says "t", other sessions run sql (a list: one session each,
        in turn).  Returns the run's exit code, its JSON and its stderr."""
        self.add("0003_bad.sql", "SELECT pg_sleep(3);\n" + BAD_PG)
        p = self.start_in_apply(*self.base, "safe-migrate", "--json", "--on-concurrent-writes",
                                policy)
        deadline = time.monotonic() + 60
        while self.psql(self.url, ready) != "t":
            self.assertLess(time.monotonic(), deadline, "the run never got ready")
            time.sleep(0.05)
        for one in [sql] if isinstance(sql, str) else sql:
            self.psql(self.url, one)
        out, err = p.communicate(timeout=120)
        return p.returncode, json.loads(out), err

    def test_rows_in_a_table_the_run_created_are_theirs(self):
        """Another session's rows in a table the run created (committed) are
        dropped with it by the restore: the table had no counter at the
        mark, and it was skipped (exit 5, nothing said, nothing saved)."""
        self.add("0002_feature.sql", "CREATE TABLE feature (id int PRIMARY KEY, what text);")
        code, j, err = self.fail_while_they_write(
            "SELECT to_regclass('public.feature') IS NOT NULL",
            "INSERT INTO feature VALUES (1, 'order 1'), (2, 'order 2')")
        self.assertEqual(code, 5, err)
        cw = j["concurrent_writes"]
        self.assertEqual(cw["tables"], [{"table": "public.feature", "rows": 2}], cw)
        scratch = self.pg_new_db()
        self.ok("-d", self.url, "-b", self.path("backups"), "restore", cw["saved_state"], "--to",
                scratch, "--yes")
        self.assertEqual(self.psql(scratch, "SELECT count(*) FROM feature"), "2")

    def test_rows_in_a_partition_the_run_created_stop_the_run(self):
        """The same through a partitioned table: the month's partition the
        run created gets the application's rows."""
        self.psql(self.url, """
            CREATE TABLE orders (at date NOT NULL, what text) PARTITION BY RANGE (at);
            CREATE TABLE orders_2026_11 PARTITION OF orders
                FOR VALUES FROM ('2026-11-01') TO ('2026-12-01');
            INSERT INTO orders VALUES ('2026-11-30', 'old');""")
        self.add("0002_december.sql", "CREATE TABLE orders_2026_12 PARTITION OF orders "
                 "FOR VALUES FROM ('2026-12-01') TO ('2027-01-01');")
        code, j, err = self.fail_while_they_write(
            "SELECT to_regclass('public.orders_2026_12') IS NOT NULL",
            "INSERT INTO orders VALUES ('2026-12-03', 'order 1'), ('2026-12-03', 'order 2')",
            policy="stop")
        self.assertEqual(code, 8, err)
        self.assertEqual(j["concurrent_writes"]["tables"],
                         [{"table": "public.orders_2026_12", "rows": 2}])
        self.assertEqual(self.psql(self.url, "SELECT count(*) FROM orders_2026_12"), "2")

    UNKNOWN = {"table": "*", "rows": None}

    def test_counters_reset_after_writing_are_unknown_writes(self):
        """A session that writes, then resets the activity counters
        (pg_stat_reset(): a monitoring job) took its write out of them; the
        restore discarded its row unsaid.  A reset since the mark now means
        unknown writes: the failed state is saved first."""
        self.add("0002_a.sql", "ALTER TABLE users ADD COLUMN c int;")
        code, j, err = self.fail_while_they_write(
            "SELECT true", ["INSERT INTO events (v) VALUES (100)",
                            "SELECT pg_sleep(0.2); SELECT pg_stat_reset()"])
        self.assertEqual(code, 5, err)
        cw = j["concurrent_writes"]
        self.assertIn(self.UNKNOWN, cw["tables"], cw)
        self.assertIn("activity counters are off or were reset", err)
        scratch = self.pg_new_db()
        self.ok("-d", self.url, "-b", self.path("backups"), "restore", cw["saved_state"], "--to",
                scratch, "--yes")
        self.assertEqual(self.events(scratch), {100})

    def test_counters_off_are_unknown_writes(self):
        """With track_counts off, no write is ever counted: every row another
        session committed was discarded unsaid.  Now the writes are unknown:
        with stop, exit 8 and the row stays."""
        self.psql(self.url, "DO $$BEGIN EXECUTE format('ALTER DATABASE %I SET track_counts = "
                            "off', current_database()); END$$")
        self.add("0002_a.sql", "ALTER TABLE users ADD COLUMN c int;")
        code, j, err = self.fail_while_they_write(
            "SELECT true", "INSERT INTO events (v) VALUES (100)", policy="stop")
        self.assertEqual(code, 8, err)
        self.assertIn(self.UNKNOWN, j["concurrent_writes"]["tables"])
        self.assertEqual(self.events(), {100})

    def test_large_object_of_another_session_is_theirs(self):
        """A large object another session created during the run is
        unlinked by the restore (it unlinks all, then creates the
        snapshot's): it was lost unsaid.  It is a definition of theirs now;
        the run's own large object is not."""
        self.add("0002_mine.sql", "SELECT lo_from_bytea(0, 'mine');")
        code, j, err = self.fail_while_they_write(
            "SELECT true", "SELECT lo_from_bytea(0, 'theirs')")
        self.assertEqual(code, 5, err)
        cw = j["concurrent_writes"]
        scratch = self.pg_new_db()
        self.ok("-d", self.url, "-b", self.path("backups"), "restore", cw["saved_state"], "--to",
                scratch, "--yes")
        theirs = self.psql(scratch, "SELECT oid FROM pg_largeobject_metadata WHERE "
                                    "lo_get(oid) = 'theirs'")
        self.assertEqual(cw["definitions"], ["large object " + theirs], cw)

    def test_restore_counts_only_its_own_large_objects(self):
        """An in-place restore while the application creates large objects:
        those committed after the restore unlinked the target's were
        counted with the snapshot's, and the good snapshot was called
        damaged (exit 7).  They are kept, and the snapshot's count holds."""
        self.psql(self.url, "INSERT INTO events (v) SELECT generate_series(1, 300000); "
                            "SELECT lo_from_bytea(0, 'the snapshot''s')")
        r = self.ok(*self.base, "backup", "--json")
        snap = r.json()["path"]
        with LoWriter(self.url) as w:
            w.wait_for_rows(20)
            r = self.run_sm(*self.base, "restore", snap, "--yes", "--no-safety-backup")
            w.wait_for_rows(len(w.committed) + 20)
        self.assertEqual(r.code, 0, r)
        self.assertNotIn("damaged", r.err)
        self.assertEqual(self.psql(self.url, "SELECT count(*) FROM pg_largeobject_metadata "
                                             "WHERE lo_get(oid) = 'the snapshot''s'"), "1")

    def test_rows_in_a_table_the_run_dropped_are_theirs(self):
        """Another session's rows in a table that a migration then drops
        (committed) went with the table's counters: the restore brought the
        table back from the snapshot without them, nothing said.  No saved
        state can hold them (the DROP discarded them), but they are counted
        before the drop commits and said to be lost; the run's own row in
        the table is not theirs."""
        self.add("0002_drop.sql", "INSERT INTO events (v) VALUES (1);\nSELECT pg_sleep(2);\n"
                 "DROP TABLE events;")
        self.add("0003_bad.sql", BAD_PG)
        p = self.start_in_apply(*self.base, "safe-migrate", "--json")
        time.sleep(0.5)
        self.psql(self.url, "INSERT INTO events (v) VALUES (100), (101)")
        out, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 5, err)
        cw = json.loads(out)["concurrent_writes"]
        self.assertEqual(cw["tables"], [{"table": "public.events", "rows": 2,
                                         "dropped_by_run": True}], cw)
        self.assertIn("then the run dropped the table: those rows are LOST", err)

    def test_rows_in_a_table_a_transaction_false_migration_dropped_are_lost(self):
        """A transaction:false migration's DROP commits on its own, and the
        table's counters went with it unread: another session's rows in it
        were lost unsaid, and the run claimed nothing of theirs was.  The
        drop now runs in a transaction of the run's that holds only it, so
        the table is looked at before it commits: the rows are reported
        lost (JSON and text); a DO block that drops one cannot be looked
        at, so its rows are unknown, never "none"."""
        self.write("migrations/0002_drop.sql",
                   "-- migrate:up transaction:false\nSELECT pg_sleep(2);\nDROP TABLE events;\n"
                   "DO $$BEGIN EXECUTE 'DROP TABLE base'; END$$;\n")
        self.add("0003_bad.sql", BAD_PG)
        p = self.start_in_apply(*self.base, "safe-migrate", "--json")
        time.sleep(0.5)
        self.psql(self.url, "INSERT INTO events (v) VALUES (100), (101)")
        out, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 5, err)
        cw = json.loads(out).get("concurrent_writes")
        self.assertIsNotNone(cw, err)
        self.assertEqual(cw["tables"], [
            {"table": "public.events", "rows": 2, "dropped_by_run": True},
            {"table": "public.base", "rows": None, "dropped_by_run": True}], cw)
        self.assertIn("public.events: 2 rows inserted, updated or deleted, then the run "
                      "dropped the table: those rows are LOST", err)
        self.assertIn("public.base: rows other sessions wrote since the snapshot cannot "
                      "be counted (the run dropped the table where its counters could not "
                      "be read): any are LOST", err)
        self.assertEqual(self.events(), set())

    def test_only_writes_to_dropped_tables_save_no_failed_state(self):
        """When the only rows other sessions wrote were in a table the run
        dropped, a saved failed state cannot hold them (the table is gone
        from it too): none is taken, and the summary says they are lost
        instead of claiming they were saved."""
        self.add("0002_drop.sql", "SELECT pg_sleep(2);\nDROP TABLE events;")
        self.add("0003_bad.sql", BAD_PG)
        p = self.start_in_apply(*self.base, "safe-migrate", "--json")
        time.sleep(0.5)
        self.psql(self.url, "INSERT INTO events (v) VALUES (100), (101)")
        out, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 5, err)
        j = json.loads(out)
        self.assertEqual(j["outcome"], "restored")
        cw = j["concurrent_writes"]
        self.assertEqual(cw["tables"], [{"table": "public.events", "rows": 2,
                                         "dropped_by_run": True}], cw)
        self.assertIsNone(cw["saved_state"], cw)
        self.assertEqual(cw["action"], "lost_not_saved", cw)
        self.assertIn("no failed state was saved: the only writes of other sessions were to "
                      "tables the run dropped, and no snapshot holds those rows (LOST)", err)
        self.assertNotIn("saving the failed state", err)
        self.assertNotIn("is saved in", err)
        self.assertFalse([f for f in os.listdir(self.path("backups")) if "failed_state" in f])

    def test_dropped_tables_rows_and_other_writes_save_the_others(self):
        """Rows in a table the run dropped beside another session's write to
        a table it kept: the failed state is saved for the latter, and the
        summary does not claim it holds the lost ones."""
        self.add("0002_drop.sql", "SELECT pg_sleep(2);\nDROP TABLE events;")
        self.add("0003_bad.sql", BAD_PG)
        p = self.start_in_apply(*self.base, "safe-migrate", "--json")
        time.sleep(0.5)
        self.psql(self.url, "INSERT INTO events (v) VALUES (100), (101);\n"
                            "INSERT INTO base VALUES (7)")
        out, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 5, err)
        cw = json.loads(out)["concurrent_writes"]
        self.assertEqual(cw["tables"], [
            {"table": "public.events", "rows": 2, "dropped_by_run": True},
            {"table": "public.base", "rows": 1}], cw)
        self.assertEqual(cw["action"], "saved_then_restored", cw)
        self.assertTrue(os.path.exists(cw["saved_state"]), cw)
        self.assertIn("those writes (but the LOST ones) are NOT in the restored database. "
                      "The failed state, with them, is saved in " + cw["saved_state"], err)

    def test_stop_for_only_dropped_tables_rows_does_not_claim_them(self):
        """--on-concurrent-writes stop leaves the database as the failed run
        left it; when the only foreign rows were in a table the run dropped,
        it does not claim they are in it."""
        self.add("0002_drop.sql", "SELECT pg_sleep(2);\nDROP TABLE events;")
        self.add("0003_bad.sql", BAD_PG)
        p = self.start_in_apply(*self.base, "safe-migrate", "--json",
                                "--on-concurrent-writes", "stop")
        time.sleep(0.5)
        self.psql(self.url, "INSERT INTO events (v) VALUES (100)")
        out, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 8, err)
        self.assertEqual(json.loads(out)["concurrent_writes"]["action"], "stopped")
        self.assertIn("it is as the failed run left it, without the LOST rows (the run "
                      "dropped their tables)", err)
        self.assertNotIn("other sessions' writes included", err)

    def test_no_writer_no_saved_state(self):
        """Without other sessions, the run's own writes (committed, and those of
        the failed migration before it failed) are not taken for foreign ones:
        rows, and definitions of every kind, some made under savepoints."""
        self.add("0002_a.sql", "INSERT INTO events (v) SELECT generate_series(1, 50);\n"
                 "UPDATE users SET name = name || '!';\n"
                 "CREATE SCHEMA s2;\nCREATE TABLE s2.t (x int PRIMARY KEY);\n"
                 "CREATE TYPE mood AS ENUM ('ok');\nCREATE DOMAIN pos AS int CHECK (VALUE > 0);\n"
                 "CREATE VIEW v AS SELECT id FROM users;\nCREATE SEQUENCE seq2;\n"
                 "CREATE INDEX users_name ON users (name);\nALTER TABLE events ADD COLUMN w int;\n"
                 "DO $$BEGIN BEGIN CREATE TABLE sub (x int); EXCEPTION WHEN others THEN NULL; "
                 "END; END$$;\nCREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';\n"
                 "INSERT INTO base VALUES (1);")
        # a table the run wrote, then dropped in another transaction
        self.add("0003_drop.sql", "DELETE FROM base;\nDROP TABLE base;")
        self.add("0004_bad.sql", "DELETE FROM events WHERE v < 10;\n" + BAD_PG)
        # "stop" stops only for other sessions' writes: this run is restored
        r = self.run_sm(*self.base, "safe-migrate", "--json", "--on-concurrent-writes", "stop")
        self.assertEqual(r.code, 5, r)
        self.assertNotIn("concurrent_writes", r.json())
        self.assertFalse([f for f in os.listdir(self.path("backups")) if "failed_state" in f])
        self.assertEqual(self.psql(self.url, "SELECT count(*) FROM events"), "0")

    def test_schema_created_by_the_run_is_dropped(self):
        self.add("0002_s.sql", "CREATE SCHEMA extra;\nCREATE TABLE extra.t (x int);")
        self.add("0003_bad.sql", BAD_PG)
        r = self.run_sm(*self.base, "safe-migrate", "--json")
        self.assertEqual(r.code, 5, r)
        self.assertEqual(self.psql(self.url, "SELECT count(*) FROM pg_namespace WHERE "
                                             "nspname = 'extra'"), "0")

    def test_restore_honours_lock_timeout_and_names_the_blocker(self):
        self.add("0002_a.sql", "CREATE TABLE a (x int);\nCREATE SCHEMA extra;")
        self.add("0003_bad.sql", BAD_PG)
        holder = LockHolder(self.url, "users")
        try:
            r = self.run_sm(*self.base, "--lock-timeout", "1s", "safe-migrate", "--json",
                            timeout=60)
        finally:
            holder.release()
        self.assertEqual(r.code, 6, r)
        self.assertIn("--lock-timeout", r.err)
        self.assertIn("pid %s" % holder.pid, r.err)
        self.assertIn("'lockholder'", r.err)
        self.assertIn("idle in transaction", r.err)
        self.assertIn("pid %s" % holder.pid, r.json()["blocking_sessions"])
        # the remedy names what the printed restore cannot know about
        self.assertEqual(r.json()["created_schemas"], "extra")
        # the printed command finishes the job once the blocker is gone
        cmd = [l for l in r.err.splitlines() if " restore " in l and "--yes" in l][0]
        # with its safety snapshot: the application may write before it runs
        self.assertNotIn("--no-safety-backup", cmd)
        self.psql(self.url, "INSERT INTO users (name) VALUES ('after the failure')")
        r2 = self.ok(*self.base, "--lock-timeout", "5s", "--json", "restore", j_snapshot(r),
                     "--yes")
        other = self.pg_new_db()
        self.ok(*self.base, "restore", r2.json()["safety_snapshot"], "--to", other, "--yes",
                "--no-safety-backup")
        self.assertEqual(self.psql(other, "SELECT count(*) FROM users WHERE name = "
                                          "'after the failure'"), "1")
        self.assertEqual(self.psql(self.url, "SELECT to_regclass('public.a') IS NULL"), "t")


    def test_second_sigint_cancels_the_restore(self):
        """The restore waits behind an idle transaction's lock: the first SIGINT
        says a restore is running, the second cancels it (its transaction rolls
        back) and the run exits 6 naming the command to finish."""
        self.add("0002_a.sql", "CREATE TABLE a (x int);")
        self.add("0003_bad.sql", BAD_PG)
        holder = LockHolder(self.url, "users")
        errpath = self.path("stderr.txt")
        try:
            with open(errpath, "w") as errf:
                p = subprocess.Popen([BIN, *self.base, "--lock-timeout", "60s", "safe-migrate"],
                                     cwd=self.dir, env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=errf)
            try:
                def restore_waits():
                    return self.psql(self.url, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
                                     "application_name = 'safe-migrate' AND wait_event_type = "
                                     "'Lock'") != "0"
                self.wait_until(restore_waits, p)
                p.send_signal(signal.SIGINT)
                self.wait_until(lambda: "a restore is running" in self.read(errpath), p)
                self.assertIsNone(p.poll())
                p.send_signal(signal.SIGINT)
                p.wait(60)
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        finally:
            holder.release()
        err = self.read(errpath)
        self.assertEqual(p.returncode, 6, err)
        self.assertIn("CANCELLED", err)
        self.assertIn("--lock-timeout", err)
        # the restore's transaction rolled back: the failed run's state is there
        self.assertEqual(self.psql(self.url, "SELECT to_regclass('public.a') IS NOT NULL"), "t")

    @staticmethod
    def read(path):
        with open(path) as f:
            return f.read()

    def wait_until(self, cond, proc):
        deadline = time.monotonic() + 60
        while not cond():
            self.assertIsNone(proc.poll(), "the run ended early")
            self.assertLess(time.monotonic(), deadline, "timed out")
            time.sleep(0.05)


def j_snapshot(r):
    return r.json()["snapshot"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RestoreLocks(CliTest):
    """A cluster whose lock table is small (max_locks_per_transaction=10,
    max_connections=8: 80 slots guaranteed): safety-check and the pipeline
    refuse before anything changes when the restore could not fit."""

    @classmethod
    def setUpClass(cls):
        cls.cluster = None
        if not os.environ.get("SAFE_MIGRATE_TEST_PG_URL"):
            return
        cls.cluster = os.path.join("/tmp", "sm-small-%d" % os.getpid())
        r = subprocess.run([os.path.join(SRC, "scripts", "pg-cluster.sh"), "start", cls.cluster,
                            str(free_port())], capture_output=True, text=True,
                           env=dict(os.environ, PG_CLUSTER_OPTS="-c max_locks_per_transaction=10 "
                                    "-c max_connections=8"))
        if r.returncode != 0:
            raise RuntimeError("cannot start the small cluster: %s" % r.stderr)
        cls.small_url = r.stdout.strip()

    @classmethod
    def tearDownClass(cls):
        if cls.cluster:
            subprocess.run([os.path.join(SRC, "scripts", "pg-cluster.sh"), "stop", cls.cluster],
                           capture_output=True)

    def test_restore_that_cannot_fit_fails_the_check(self):
        self.require_pg()
        url = self.small_url
        self.psql(url, "DROP SCHEMA public CASCADE; CREATE SCHEMA public; "
                       "CREATE TABLE one (id serial PRIMARY KEY, v text)")
        base = ["-d", url, "-b", self.path("backups"), "-m", self.path("migrations")]
        self.write("migrations/0001_a.sql", "-- migrate:up\nCREATE TABLE a (x int);\n")
        r = self.run_sm(*base, "safety-check", "--json")
        self.assertEqual(r.code, 0, r)
        f = [x for x in r.json()["findings"] if x["check"] == "restore-locks"]
        self.assertEqual(f[0]["level"], "pass", f)
        self.psql(url, "DO $$ BEGIN FOR i IN 1..12 LOOP EXECUTE format("
                       "'CREATE TABLE t%s (id serial PRIMARY KEY, v text)', i); END LOOP; END $$")
        r = self.run_sm(*base, "safety-check", "--json")
        self.assertEqual(r.code, 4, r)
        f = [x for x in r.json()["findings"] if x["check"] == "restore-locks"]
        self.assertEqual(f[0]["level"], "fail", f)
        self.assertIn("max_locks_per_transaction", f[0]["message"])
        r = self.run_sm(*base, "safe-migrate", "--json")
        self.assertEqual(r.code, 4, r)
        self.assertEqual(r.json()["outcome"], "blocked")
        self.assertEqual(self.psql(url, "SELECT to_regclass('public.a') IS NULL"), "t")


if __name__ == "__main__":
    main()
