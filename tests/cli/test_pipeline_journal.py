"""The run journal and database identity under production conditions
(issue 15, sections 2 and 3): databases sharing a backup directory, reused
PIDs, runs waiting for the lock, failed restores, replaced snapshots,
wrapped commands that outlive a killed safe-migrate, the same database
spelled two ways, and passwords on a wrapped command's command line.
Real SQLite files, the real PostgreSQL server, real kill -9."""
import glob
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
import urllib.parse

from smtest import BIN, PG_URL, CliTest, main, snapshot_manifest

# Long only on real data: the pre-flight lint rehearses migrations on an empty
# copy of the schema, where this returns at once.
LONG_SQL = "SELECT count(*) FROM big a, big b, big c;\n"


def make_db(path, rows=3):
    con = sqlite3.connect(path)
    con.executescript("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);"
                      "CREATE TABLE big (x INT);"
                      "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                      "WHERE x < 3000) INSERT INTO big SELECT x FROM c;")
    con.executemany("INSERT INTO users(name) VALUES (?)", [("u%d" % i,) for i in range(rows)])
    con.commit()
    con.close()


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class JournalSqlite(CliTest):
    def setUp(self):
        super().setUp()
        make_db(self.path("app.db"))
        make_db(self.path("other.db"), rows=5)
        self.write("migrations/0001_base.sql",
                   "-- migrate:up\nCREATE TABLE base (x INT);\n-- migrate:down\nDROP TABLE base;\n")
        # B has migrations of its own (A's long one must not run on B)
        self.write("migrations_b/0001_base.sql",
                   "-- migrate:up\nCREATE TABLE base (x INT);\n")
        self.a = ["-d", "sqlite:///app.db", "-b", "backups"]
        self.b = ["-d", "sqlite:///other.db", "-b", "backups", "-m", "migrations_b"]
        self.ok(*self.a, "upgrade")
        self.ok(*self.b, "upgrade")

    def add(self, name, up, notx=False):
        self.write("migrations/" + name,
                   "-- migrate:up%s\n%s\n" % (" transaction:false" if notx else "", up))

    def journal_docs(self):
        out = []
        for p in self.journals(self.path("backups")):
            with open(p) as f:
                out.append(json.load(f))
        return out

    def kill_in_apply(self, args):
        p = self.start_in_apply(*args, capture=False)
        p.kill()
        p.wait()

    # -- section 2: the journal belongs to one database ----------------------
    def test_databases_sharing_a_backup_dir_have_their_own_journals(self):
        self.add("0002_long.sql", "CREATE TABLE t (x INT);\n" + LONG_SQL)
        before_a, before_b = self.sqlite_dump("app.db"), self.sqlite_dump("other.db")
        self.kill_in_apply([*self.a, "safe-migrate"])
        # B is not blocked by A's killed run ...
        self.write("migrations_b/0003_b.sql", "-- migrate:up\nCREATE TABLE only_b (x INT);\n")
        self.code(0, *self.b, "safe-migrate")
        # ... and recover -d B never restores A's snapshot into B
        after_b = self.sqlite_dump("other.db")
        self.assertNotEqual(after_b, before_b)
        r = self.ok(*self.b, "recover", "--yes", "--json")
        self.assertEqual(r.json()["outcome"], "nothing_to_do")
        self.assertIn("of another database", r.err)
        self.assertEqual(self.sqlite_dump("other.db"), after_b)
        # A is still blocked, and recovers its own snapshot
        self.code(4, *self.a, "safe-migrate")
        r = self.ok(*self.a, "recover", "--yes", "--json")
        self.assertEqual(r.json()["outcome"], "restored")
        self.assertEqual(self.sqlite_dump("app.db"), before_a)

    # -- a run killed with another backup directory ---------------------------
    def wait_for_mark(self, name="app.db", timeout=10):
        """Waits (at most timeout) until the database holds a run's mark,
        written after the journal's "apply"; the test goes on either way,
        and fails on what a run without one does."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if self.sqlite("SELECT count(*) FROM safe_migrate_runs", name)[0][0]:
                    return
            except sqlite3.OperationalError:
                pass
            time.sleep(0.01)

    def dump_without_marks(self):
        return "\n".join(l for l in self.sqlite_dump("app.db").splitlines()
                         if "safe_migrate_runs" not in l)

    def assertNoMarksTable(self):
        """No mark, and no table of marks: a run that ended leaves none."""
        self.assertEqual(self.sqlite("SELECT count(*) FROM sqlite_master WHERE name = "
                                     "'safe_migrate_runs'"), [(0,)])

    def marks(self, name="app.db"):
        try:
            return self.sqlite("SELECT run_id, host FROM safe_migrate_runs", name)
        except sqlite3.OperationalError:  # no such table: none
            return []

    def test_a_run_killed_with_another_backup_dir_blocks_every_run(self):
        """A run killed in -b backups: a run given another backup directory
        (or the default one, relative to another working directory) finds
        no journal there, and used to migrate over the half-changed
        database; the mark the run left in the database stops it, and says
        where the journal is."""
        self.add("0002_long.sql", "CREATE TABLE t (x INT);\n" + LONG_SQL)
        before = self.sqlite_dump("app.db")
        p = self.start_in_apply(*self.a, "safe-migrate", capture=False)
        try:
            self.wait_for_mark()
        finally:
            p.kill()
            p.wait()
        [journal] = self.journals(self.path("backups"))
        # quick, so that a run that is not stopped finishes (and fails the test)
        self.add("0002_long.sql", "CREATE TABLE t (x INT);")
        elsewhere = ["-d", "sqlite:///app.db", "-b", "elsewhere"]
        for cmd in (["safe-migrate"], ["upgrade"], ["recover", "--yes"]):
            r = self.code(4, *elsewhere, *cmd)
            self.assertIn(journal, r.err)
            self.assertIn("another backup directory", r.err)
            self.assertIn("-b %s recover" % self.path("backups"), r.err)
        r = self.code(4, *elsewhere, "safety-check")
        self.assertIn("FAIL interrupted-run", r.out)
        self.assertIn(journal, r.out)
        self.assertEqual(self.sqlite("SELECT count(*) FROM safe_migrate_versions WHERE "
                                     "version = '0002'"), [(0,)])
        # recovered where its journal is, it blocks no one
        r = self.ok(*self.a, "recover", "--yes", "--json")
        self.assertEqual(r.json()["outcome"], "restored")
        self.assertEqual(self.sqlite_dump("app.db"), before)
        self.assertEqual(self.marks(), [])
        r = self.ok(*elsewhere, "safe-migrate", "--json")
        self.assertEqual(r.json()["outcome"], "applied")
        self.assertEqual(self.marks(), [])

    def test_a_mark_whose_journal_is_out_of_reach_blocks_until_discarded(self):
        """A run killed on another machine (a container gone with its disk):
        its journal cannot be read here, so the run stops until an operator
        accepts the database as it is with recover --discard."""
        self.sqlite("CREATE TABLE safe_migrate_runs (run_id TEXT PRIMARY KEY, journal TEXT NOT "
                    "NULL, host TEXT NOT NULL, started_at TEXT NOT NULL)")
        self.sqlite("INSERT INTO safe_migrate_runs VALUES ('r-gone', '/srv/bk/safe-migrate-x."
                    "journal', 'pod-7f9c', '2026-01-01T00:00:00Z')")
        self.add("0002_t.sql", "CREATE TABLE t (x INT);")
        r = self.code(4, *self.a, "safe-migrate")
        self.assertIn("pod-7f9c", r.err)
        self.assertIn("recover --discard", r.err)
        self.code(4, *self.a, "recover", "--yes")
        self.assertEqual(self.sqlite("SELECT count(*) FROM sqlite_master WHERE name = 't'"),
                         [(0,)])
        r = self.ok(*self.a, "recover", "--discard", "--json")
        self.assertEqual(r.json()["outcome"], "discarded")
        self.assertIn("r-gone", r.json()["cleared_marks"])
        self.assertEqual(self.marks(), [])
        self.ok(*self.a, "safe-migrate")

    def test_a_stale_mark_is_removed(self):
        """A mark whose journal says the run ended (a copy of the database
        taken during a run carries one) blocks nothing and is removed."""
        self.add("0002_t.sql", "CREATE TABLE t (x INT);")
        self.ok(*self.a, "safe-migrate")
        [journal] = self.journals(self.path("backups"))
        with open(journal) as f:
            run_id = json.load(f)["run_id"]
        self.assertEqual(self.marks(), [])  # no mark, and no table, after a run
        self.sqlite("CREATE TABLE safe_migrate_runs (run_id TEXT PRIMARY KEY, journal TEXT NOT "
                    "NULL, host TEXT NOT NULL, started_at TEXT NOT NULL)")
        self.sqlite("INSERT INTO safe_migrate_runs VALUES ('%s', '%s', '%s', 'x')"
                    % (run_id, journal, os.uname().nodename))
        self.add("0003_u.sql", "CREATE TABLE u (x INT);")
        self.ok(*self.a, "safe-migrate")
        self.assertEqual(self.marks(), [])

    def test_no_mark_is_left_by_a_run_that_ended(self):
        self.add("0002_t.sql", "CREATE TABLE t (x INT);")
        self.ok(*self.a, "safe-migrate")
        self.assertNoMarksTable()
        # restored after a failure: the snapshot holds no mark
        # (a duplicate key: the lint's rehearsal on an empty schema passes)
        self.add("0003_u.sql", "CREATE TABLE u (x INT);")
        self.add("0004_bad.sql", "INSERT INTO users (id, name) VALUES (1, 'again');")
        self.code(5, *self.a, "safe-migrate")
        self.assertNoMarksTable()
        # a first migration failing in its own transaction changes nothing
        os.unlink(self.path("migrations/0003_u.sql"))
        self.code(1, *self.a, "safe-migrate")
        self.assertNoMarksTable()

    def test_recover_refuses_a_journal_of_another_database(self):
        self.add("0002_long.sql", "CREATE TABLE t (x INT);\n" + LONG_SQL)
        self.kill_in_apply([*self.a, "safe-migrate"])
        [path] = self.journals(self.path("backups"))
        # the journal named (by hand, or by an older version) for B
        before_b = self.sqlite_dump("other.db")
        shutil.copy(path, self.path("backups", "safe-migrate.journal"))
        os.unlink(path)
        r = self.code(4, *self.b, "recover", "--yes")
        self.assertIn("belongs to another database", r.err)
        self.assertIn("app.db", r.err)
        self.assertEqual(self.sqlite_dump("other.db"), before_b)

    def test_reused_pid_does_not_hide_a_killed_run(self):
        self.add("0002_long.sql", "CREATE TABLE t (x INT);\n" + LONG_SQL)
        self.kill_in_apply([*self.a, "safe-migrate"])
        [path] = self.journals(self.path("backups"))
        with open(path) as f:
            doc = json.load(f)
        doc["pid"] = os.getpid()  # a live process now has the killed run's PID
        with open(path, "w") as f:
            json.dump(doc, f)
        r = self.code(4, *self.a, "safe-migrate")
        self.assertIn("recover", r.err)
        r = self.code(4, *self.a, "safety-check")
        self.assertIn("FAIL interrupted-run", r.out)

    def test_a_database_replaced_after_a_killed_run_is_not_migrated_blindly(self):
        self.add("0002_long.sql", "CREATE TABLE t (x INT);\n" + LONG_SQL)
        self.kill_in_apply([*self.a, "safe-migrate"])
        # a copy moved over the file: another inode, so another identity
        shutil.copy(self.path("app.db"), self.path("copy.db"))
        os.replace(self.path("copy.db"), self.path("app.db"))
        r = self.code(4, *self.a, "safe-migrate")
        self.assertIn("was replaced since", r.err)
        # the killed run ran our migrations, which never replace the file:
        # another database is there, which recover does not restore over ...
        after = self.dump_without_marks()
        r = self.code(4, *self.a, "recover", "--yes")
        self.assertIn("never saw", r.err)
        self.assertEqual(self.dump_without_marks(), after)
        # ... but accepts as it is (the run's mark, which the copy may
        # carry, goes with its journal)
        r = self.ok(*self.a, "recover", "--discard", "--json")
        self.assertEqual(r.json()["outcome"], "discarded")
        self.assertEqual(self.dump_without_marks(), after)
        self.assertEqual(self.marks(), [])
        os.unlink(self.path("migrations/0002_long.sql"))
        self.ok(*self.a, "safe-migrate")

    def test_a_run_waiting_for_the_lock_rereads_the_journal(self):
        self.add("0002_long.sql", "CREATE TABLE t (x INT);\n" + LONG_SQL)
        a = self.start_in_apply(*self.a, "safe-migrate", capture=False)
        waiting = subprocess.Popen([BIN, *self.a, "--lock-timeout", "120s", "upgrade"],
                                   cwd=self.dir, env=self.env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(1)  # let it reach the lock (only makes the old code's failure certain)
        a.kill()
        a.wait()
        out, err = waiting.communicate(timeout=120)
        self.assertEqual(waiting.returncode, 4, err)
        self.assertIn("recover", err)
        self.assertEqual(self.sqlite("SELECT count(*) FROM safe_migrate_versions "
                                     "WHERE version = '0002'", "app.db"), [(0,)])
        # a run that waited and was blocked did not overwrite the killed run's journal
        waiting = subprocess.Popen([BIN, *self.a, "--lock-timeout", "120s", "safe-migrate"],
                                   cwd=self.dir, env=self.env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        waiting.communicate(timeout=120)
        self.assertEqual(waiting.returncode, 4)
        [doc] = self.journal_docs()
        self.assertIsNone(doc["outcome"])
        self.assertEqual(doc["phase"], "apply")
        self.assertEqual(self.ok(*self.a, "recover", "--yes", "--json").json()["outcome"],
                         "restored")

    # -- section 2: exit 6 and the snapshot's SHA-256 --------------------------
    EVIL = ("import glob, os, shutil, sqlite3, sys\n"
            "snap = glob.glob(os.path.join(sys.argv[1], 'backup_*.tar.zst'))[0]\n"
            "if sys.argv[2] == 'damage':\n"
            "    with open(snap, 'r+b') as f:\n"
            "        f.seek(100); f.write(b'XXXXXXXX')\n"
            "else:\n"
            "    shutil.copy(sys.argv[2], snap)\n"
            "    with open(sys.argv[2] + '.sha256') as f:\n"
            "        hexd = f.read().split()[0]\n"
            "    with open(snap + '.sha256', 'w') as f:\n"
            "        f.write(hexd + '  ' + os.path.basename(snap) + '\\n')\n"
            "con = sqlite3.connect(os.environ['DATABASE_URL'][len('sqlite:///'):])\n"
            "con.execute('CREATE TABLE half (x INT)'); con.commit()\n"
            "sys.exit(1)\n")

    def test_exit_6_leaves_the_run_unfinished(self):
        script = self.write("evil.py", self.EVIL)
        r = self.code(6, *self.a, "run", "--", "/usr/bin/python3", script,
                      self.path("backups"), "damage")
        # the database is half-migrated: nothing may proceed on it
        r = self.code(4, *self.a, "safe-migrate")
        self.assertIn("automatic restore failed", r.err)
        self.code(4, *self.a, "safety-check")
        self.code(4, *self.a, "upgrade")
        # nor is its history reverted or rewritten
        self.code(4, *self.a, "downgrade", "-1", "--yes")
        self.code(4, *self.a, "stamp", "base")
        self.assertEqual(self.sqlite("SELECT count(*) FROM safe_migrate_versions", "app.db"),
                         [(1,)])
        r = self.ok(*self.a, "recover", "--discard", "--json")
        self.assertEqual(r.json()["outcome"], "discarded")
        self.ok(*self.a, "safe-migrate")

    def test_a_replaced_snapshot_is_never_restored(self):
        self.ok(*self.b, "-b", "elsewhere", "backup", "--name", "foreign")
        foreign = self.path("elsewhere", "foreign.tar.zst")
        script = self.write("evil.py", self.EVIL)
        r = self.code(6, *self.a, "run", "--json", "--", "/usr/bin/python3", script,
                      self.path("backups"), foreign)
        self.assertIn("not the one this run took", r.err)
        self.assertEqual(r.json()["outcome"], "restore_failed")
        # B's rows never landed in A
        self.assertEqual(self.sqlite("SELECT count(*) FROM users", "app.db"), [(3,)])
        r = self.code(7, *self.a, "recover", "--yes")
        self.assertIn("not the one this run took", r.err)
        self.assertEqual(self.sqlite("SELECT count(*) FROM users", "app.db"), [(3,)])

    # -- section 2: run -- COMMAND children -----------------------------------
    WRITER = ("import os, sqlite3, subprocess, sys, time\n"
              "if sys.argv[1] == 'spawn':\n"
              "    subprocess.Popen([sys.executable, sys.argv[0], 'write'])\n"
              "    time.sleep(600)\n"
              "con = sqlite3.connect(os.environ['DATABASE_URL'][len('sqlite:///'):], timeout=30)\n"
              "con.execute('CREATE TABLE IF NOT EXISTS w (x INT)'); con.commit()\n"
              "for i in range(100000):\n"
              "    con.execute('INSERT INTO w VALUES (?)', (i,)); con.commit()\n"
              "    time.sleep(0.01)\n")

    def wait_rows(self, minimum):
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if self.sqlite("SELECT count(*) FROM w", "app.db")[0][0] >= minimum:
                    return
            except sqlite3.OperationalError:
                pass
            time.sleep(0.05)
        self.fail("the wrapped command never wrote")

    def test_killed_run_takes_its_command_along(self):
        script = self.write("writer.py", self.WRITER)
        before = self.sqlite_dump("app.db")
        p = subprocess.Popen([BIN, *self.a, "run", "--", "/usr/bin/python3", script, "write"],
                             cwd=self.dir, env=self.env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        self.wait_rows(3)
        [doc] = self.journal_docs()
        child = int(doc["child_pid"])
        self.assertEqual(int(doc["child_pgid"]), child)
        p.kill()
        p.wait()
        r = self.ok(*self.a, "recover", "--yes", "--json")
        self.assertEqual(r.json()["outcome"], "restored")
        self.assertFalse(alive(child), "the wrapped command outlived safe-migrate")
        time.sleep(0.3)
        self.assertEqual(self.sqlite_dump("app.db"), before)

    def test_recover_refuses_while_the_command_group_lives(self):
        script = self.write("writer.py", self.WRITER)
        before = self.sqlite_dump("app.db")
        p = subprocess.Popen([BIN, *self.a, "run", "--", "/usr/bin/python3", script, "spawn"],
                             cwd=self.dir, env=self.env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        self.wait_rows(3)
        [doc] = self.journal_docs()
        pgid = int(doc["child_pgid"])
        p.kill()
        p.wait()
        try:
            # the grandchild (same process group) is still writing
            r = self.code(4, *self.a, "--lock-timeout", "1s", "recover", "--yes")
            self.assertIn("process group %d" % pgid, r.err)
            self.assertIn("kill -TERM -- -%d" % pgid, r.err)
            self.code(4, *self.a, "--lock-timeout", "1s", "recover", "--discard")
        finally:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.assertEqual(self.ok(*self.a, "recover", "--yes", "--json").json()["outcome"],
                         "restored")
        self.assertEqual(self.sqlite_dump("app.db"), before)

    def test_a_command_that_ran_is_never_reported_as_never_started(self):
        # SIGCHLD ignored by whoever started safe-migrate: waitpid fails unless it
        # resets the disposition; the command has changed the database by then
        script = self.write("half.py",
                            "import os, sqlite3, sys\n"
                            "con = sqlite3.connect(os.environ['DATABASE_URL'][len('sqlite:///'):])\n"
                            "con.execute('CREATE TABLE half (x INT)'); con.commit()\n"
                            "sys.exit(1)\n")
        before = self.sqlite_dump("app.db")
        p = subprocess.run([BIN, *self.a, "run", "--json", "--", "/usr/bin/python3", script],
                           cwd=self.dir, env=self.env, capture_output=True, text=True,
                           timeout=120,
                           preexec_fn=lambda: signal.signal(signal.SIGCHLD, signal.SIG_IGN))
        self.assertEqual(p.returncode, 5, p.stderr)
        self.assertNotIn("never started", p.stderr)
        self.assertEqual(json.loads(p.stdout)["outcome"], "restored")
        self.assertEqual(self.sqlite_dump("app.db"), before)

    # -- section 3: identity, not URL text ------------------------------------
    def test_rehearse_url_spelled_differently_is_refused(self):
        self.add("0002_notx.sql", "CREATE TABLE prod_touched (x INT);", notx=True)
        before = self.sqlite_dump("app.db")
        r = self.code(1, *self.a, "safe-migrate", "--dry-run",
                      "--rehearse-url", "sqlite:///./app.db")
        self.assertIn("is the database being migrated", r.err)
        self.assertEqual(self.sqlite_dump("app.db"), before)

    def test_roundtrip_url_spelled_differently_is_refused(self):
        sqlite3.connect(self.path("empty.db")).close()
        r = self.code(2, "-d", "sqlite:///empty.db", "roundtrip", "--url",
                      "sqlite:///./empty.db")
        self.assertIn("is the database being migrated", r.err)
        self.assertEqual(self.sqlite("SELECT count(*) FROM sqlite_master", "empty.db"), [(0,)])

    def test_restore_jobs_into_the_same_database_is_refused(self):
        snap = self.ok(*self.a, "backup").out.strip()
        r = self.code(2, *self.a, "restore", snap, "--yes", "--jobs", "2",
                      "--to", "sqlite:///./app.db")
        self.assertIn("is the database itself", r.err)

    def test_restore_of_another_databases_snapshot_needs_force(self):
        snap = self.ok(*self.b, "backup").out.strip()
        self.assertEqual(snapshot_manifest(self.path(snap))["source_identity"][:7], "sqlite:")
        before = self.sqlite_dump("app.db")
        r = self.code(1, *self.a, "restore", snap, "--yes")
        self.assertIn("taken from another database", r.err)
        self.assertIn("other.db", r.err)
        self.assertIn("app.db", r.err)
        self.assertEqual(self.sqlite_dump("app.db"), before)
        # its own snapshot, spelled another way, restores without --force
        own = self.ok(*self.a, "backup").out.strip()
        self.ok("-d", "sqlite:///./app.db", "-b", "backups", "restore", own, "--yes")
        # --to a scratch database is not in place: no question asked
        self.ok(*self.a, "restore", snap, "--yes", "--to", "sqlite:///scratch.db")
        r = self.ok(*self.a, "restore", snap, "--force")
        self.assertIn("restoring it anyway", r.err)
        self.assertEqual(self.sqlite("SELECT count(*) FROM users", "app.db"), [(5,)])


class JournalPg(CliTest):
    def setUp(self):
        super().setUp()
        self.url = self.pg_new_db()
        self.psql(self.url, "CREATE TABLE users (id serial PRIMARY KEY, name text);"
                            "INSERT INTO users (name) VALUES ('ada'), ('alan');")
        self.base = ["-d", self.url, "-b", self.path("backups")]
        self.write("migrations/0001_base.sql",
                   "-- migrate:up\nCREATE TABLE base (x int);\n-- migrate:down\nDROP TABLE base;\n")
        self.ok(*self.base, "upgrade")

    def keyword_spelling(self, url):
        u = urllib.parse.urlsplit(url)
        parts = ["host=%s" % (u.hostname or "localhost"), "dbname=%s" % u.path.lstrip("/")]
        if u.port:
            parts.append("port=%d" % u.port)
        if u.username:
            parts.append("user=%s" % u.username)
        return " ".join(parts)

    def test_a_run_killed_with_another_backup_dir_blocks_every_run(self):
        """The PostgreSQL side of the SQLite test of that name: the mark in
        the database stops a run given another backup directory (or
        machine), and recovered where its journal is it blocks no one."""
        self.write("migrations/0002_slow.sql",
                   "-- migrate:up\nCREATE TABLE t (x int);\nSELECT pg_sleep(30);\n")
        before = self.pg_state(self.url)
        p = self.start_in_apply(*self.base, "safe-migrate", capture=False)
        try:
            for _ in range(1000):  # the mark follows the journal's "apply"
                if self.psql(self.url, "SELECT to_regclass('safe_migrate_runs') IS NOT NULL "
                             "AND EXISTS (SELECT FROM safe_migrate_runs)", check=False) == "t":
                    break
                time.sleep(0.01)
        finally:
            p.kill()
            p.wait()
        [journal] = self.journals(self.path("backups"))
        # quick, so that a run that is not stopped finishes (and fails the test)
        self.write("migrations/0002_slow.sql", "-- migrate:up\nCREATE TABLE t (x int);\n")
        elsewhere = ["-d", self.url, "-b", self.path("elsewhere")]
        deadline = time.time() + 30  # the killed client's server session ends
        while True:
            r = self.run_sm(*elsewhere, "safe-migrate")
            if r.code != 4 or "journal" in r.err or time.time() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(r.code, 4, r)
        self.assertIn(journal, r.err)
        self.assertIn("another backup directory", r.err)
        self.code(4, *elsewhere, "recover", "--yes")
        self.assertEqual(self.psql(self.url, "SELECT count(*) FROM safe_migrate_versions "
                                   "WHERE version = '0002'"), "0")
        r = self.ok(*self.base, "recover", "--yes", "--json")
        self.assertEqual(r.json()["outcome"], "restored")
        self.assertEqual(self.pg_state(self.url), before)
        r = self.ok(*elsewhere, "safe-migrate", "--json")
        self.assertEqual(r.json()["outcome"], "applied")
        self.assertEqual(self.psql(self.url, "SELECT to_regclass('safe_migrate_runs') IS NULL"),
                         "t")

    def test_rehearse_url_keyword_spelling_is_refused(self):
        self.write("migrations/0002_notx.sql",
                   "-- migrate:up transaction:false\nCREATE TABLE prod_touched (x int);\n")
        before = self.pg_state(self.url)
        r = self.code(1, *self.base, "safe-migrate", "--dry-run",
                      "--rehearse-url", self.keyword_spelling(self.url))
        self.assertIn("is the database being migrated", r.err)
        self.assertEqual(self.pg_state(self.url), before)

    def test_restore_of_another_databases_snapshot_needs_force(self):
        other = self.pg_new_db()
        self.psql(other, "CREATE TABLE o (x int);")
        snap = self.ok("-d", other, "-b", self.path("backups"), "backup").out.strip()
        before = self.pg_state(self.url)
        r = self.code(1, *self.base, "restore", snap, "--yes")
        self.assertIn("taken from another database", r.err)
        self.assertEqual(self.pg_state(self.url), before)
        own = self.ok(*self.base, "backup").out.strip()
        self.ok("-d", self.keyword_spelling(self.url), "-b", self.path("backups"), "restore",
                own, "--yes")

    def test_run_never_leaks_the_password(self):
        secret = "Pw-9f3kQz7"
        role = "sm_pw_" + os.path.basename(self.dir).replace("-", "_").lower()[-8:]
        self.psql_admin("CREATE ROLE %s LOGIN SUPERUSER PASSWORD '%s'" % (role, secret))
        db = urllib.parse.urlsplit(self.pg_new_db())
        try:
            url = db._replace(netloc="%s:%s@%s:%d" % (role, secret, db.hostname, db.port or 5432)
                              ).geturl()
            # everything owned by the role, so that its snapshot restores as it
            self.psql(url, "CREATE TABLE users (id serial PRIMARY KEY, name text);"
                           "INSERT INTO users (name) VALUES ('ada');")
            base = ["-d", url, "-b", self.path("backups")]
            script = self.write("tool.py", "import sys\nsys.exit(int(sys.argv[-1]))\n")
            outputs = []
            for code in (3, 0):
                r = self.run_sm(*base, "run", "--json", "--", "/usr/bin/python3", script,
                                "--url", url, "password=" + secret, "--password", secret,
                                str(code))
                self.assertEqual(r.code, 5 if code else 0, r)
                outputs += [r.out, r.err]
            r = self.run_sm(*base, "run", "--", "/usr/bin/python3", script, url, "0")
            self.assertEqual(r.code, 0, r)
            self.assertIn("running:", r.err)
            self.assertIn(":***@", r.err)
            outputs += [r.out, r.err]
            r = self.run_sm(*base, "history", "--runs", "--json")
            outputs += [r.out, r.err]
            for o in outputs:
                self.assertNotIn(secret, o)
            files = glob.glob(self.path("backups", "*"))
            self.assertTrue(any(f.endswith(".journal") for f in files))
            for f in files:
                with open(f, "rb") as fh:
                    self.assertNotIn(secret.encode(), fh.read(), f)
        finally:
            self.psql_admin('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % db.path.lstrip("/"))
            self.psql_admin("DROP ROLE IF EXISTS %s" % role)


if __name__ == "__main__":
    main()
