"""Fault injection on PostgreSQL: send (libpq), write, fsync and rename fail,
or the process is SIGKILLed, at call after call of backup, of an in-place
restore and of a parallel restore --to (--jobs 2).  See faultlib.py for what
is checked.
"""
import io
import json
import shutil
import signal
import subprocess
import tarfile
import time

from faultlib import FaultTest, shim_env, spread, wait_stopped
from smtest import BIN, fk_tables_sql, main, pg_dbname, snapshot_manifest


class FaultPg(FaultTest):
    def setUp(self):
        super().setUp()
        self.url = self.pg_new_db()
        self.psql(self.url, """
            CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL, bio text);
            INSERT INTO users (name, bio) SELECT 'user' || x, repeat('b', 80)
              FROM generate_series(1, 2000) x;
            CREATE INDEX users_name ON users(name);
            CREATE TABLE orders (id int PRIMARY KEY, user_id int REFERENCES users(id));
            INSERT INTO orders SELECT x, x FROM generate_series(1, 500) x;
            -- the planner's row counts decide how the backup reads a table
            -- (small ones in batches of COPYs, fewer sends): known now, not
            -- whenever autovacuum gets to them between the counting run and
            -- the faulted ones
            ANALYZE;
        """)

    def wait_idle(self, url=None):
        """Waits until no session of a killed client is left on the database
        (the server notices a lost client only at its next read)."""
        url = url or self.url
        db = pg_dbname(url)
        for _ in range(300):
            if self.psql(url, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                         "'%s' AND pid <> pg_backend_pid()" % db) == "0":
                return
            time.sleep(0.05)
        self.fail("a killed client's session did not go away")

    def test_backup(self):
        before = self.pg_state(self.url)
        n = self.counts("-d", self.url, "-b", self.path("count"), "backup")
        self.assertGreater(n["send"], 3)
        # write, fsync and rename go through the same snapshot writer as
        # SQLite's (test_faults.py covers it call by call): a few of each
        for kind, limit in (("send", 6), ("write", 2), ("fsync", 2), ("rename", 1)):
            for i in spread(n[kind], limit):
                for mode in ("fault", "kill"):
                    bdir = self.path("b-%s-%d-%s" % (kind, i, mode))
                    with self.subTest(kind=kind, index=i, mode=mode):
                        if mode == "fault":
                            r = self.run_shim("-d", self.url, "-b", bdir, "backup",
                                              fault="%s:%d" % (kind, i))
                            self.assertClean(r, (0, 1))
                            self.assertNoTemps(bdir)
                        else:
                            r = self.run_shim("-d", self.url, "-b", bdir, "backup",
                                              kill="%s:%d" % (kind, i))
                            self.assertClean(r, (), killed=True)
                            self.wait_idle()
                            self.assertSnapshotsVerify(bdir)
                            # the next run removes what the killed one left
                            self.ok("-d", self.url, "-b", bdir, "backup")
                        self.assertNoTemps(bdir)
                        self.assertSnapshotsVerify(bdir)
                    shutil.rmtree(bdir, ignore_errors=True)
        self.assertEqual(self.pg_state(self.url), before)

    def test_revision_is_the_snapshots_under_a_migration_at_every_send(self):
        """A second operator's migration commits while the backup is
        stopped before each of its sends: the revision the snapshot records
        is always the one of the database it holds.  Read before the
        snapshot's transaction began, it named the revision before a
        migration whose table the snapshot has."""
        self.psql(self.url, """
            CREATE TABLE safe_migrate_versions (version TEXT PRIMARY KEY,
              description TEXT NOT NULL, checksum TEXT NOT NULL, applied_at TEXT NOT NULL,
              applied_by TEXT NOT NULL, execution_ms BIGINT NOT NULL);
            INSERT INTO safe_migrate_versions VALUES ('0001', 'base', 'x', 'then', 'me', 1);
        """)
        sends = self.counts("-d", self.url, "-b", self.path("count"), "backup")["send"]
        seen = set()
        for i in range(1, sends + 1):
            bdir = self.path("race-%d" % i)
            version, table = "%04d" % (i + 1), "race_%d" % i
            with self.subTest(send=i):
                p = subprocess.Popen([BIN, "-q", "-d", self.url, "-b", bdir, "--json", "backup"],
                                     env=dict(self.env, **shim_env({"SM_FAULT_STOP":
                                                                    "send:%d" % i})),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                try:
                    stopped = wait_stopped(p)
                    if stopped:
                        # the migration's table and its version, in one commit
                        self.psql(self.url, "BEGIN; CREATE TABLE %s (x int); INSERT INTO "
                                  "safe_migrate_versions VALUES ('%s', 'race', 'x', 'now', "
                                  "'other', 1); COMMIT;" % (table, version))
                finally:
                    p.send_signal(signal.SIGCONT)
                    out, err = p.communicate(timeout=120)
                self.assertEqual(p.returncode, 0, err)
                m = snapshot_manifest(json.loads(out)["path"])
                has_table = "public." + table in m["row_counts"]
                self.assertEqual(m["revision"], version if has_table else "%04d" % i, m)
                seen.add(has_table)
                if stopped:  # the next run's base revision
                    continue
                self.psql(self.url, "INSERT INTO safe_migrate_versions VALUES ('%s', 'race', "
                          "'x', 'now', 'other', 1)" % version)
            shutil.rmtree(bdir, ignore_errors=True)
        # both outcomes happened: stops before the snapshot and after it
        self.assertEqual(seen, {False, True})

    def test_backup_of_many_small_tables(self):
        """Small tables' COPYs go to the server in batches, one query for
        many (issue 17): far fewer sends than tables.  A failure part-way
        through a batch (a write or a send) fails the backup cleanly, and a
        backup that succeeds restores every table's rows."""
        url = self.pg_new_db()
        self.psql(url, """
            DO $$ BEGIN FOR i IN 1..90 LOOP
              EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, v text)', i);
              EXECUTE format('INSERT INTO t%s SELECT g, repeat(''v'', g %% 50) '
                             'FROM generate_series(1, 40) g', i);
            END LOOP; END $$;
            ANALYZE;
        """)
        want = self.pg_state(url)
        n = self.counts("-d", url, "-b", self.path("count"), "backup", "--name", "snap")
        # one COPY a round trip would take 90 sends for the COPYs alone
        self.assertLess(n["send"], 90)
        target = self.pg_new_db()
        self.ok("-b", self.path("r"), "restore", self.path("count", "snap.tar.zst"),
                "--to", target, "--yes", "--no-safety-backup")
        self.assertEqual(self.pg_state(target), want)
        for kind in ("write", "send"):
            for i in spread(n[kind], 3)[1:]:
                bdir = self.path("b-%s-%d" % (kind, i))
                with self.subTest(kind=kind, index=i):
                    r = self.run_shim("-d", url, "-b", bdir, "backup",
                                      fault="%s:%d" % (kind, i))
                    self.assertClean(r, (0, 1))
                    self.assertNoTemps(bdir)
                    self.assertSnapshotsVerify(bdir)
        self.assertEqual(self.pg_state(url), want)

    def test_backup_skips_kinds_the_database_has_none_of(self):
        """The backup asks once which object kinds the database holds
        (issue 17) and sends no catalog query for a kind it has none of: a
        database without collations, wrappers, servers and user mappings
        takes fewer sends than the same one with them, whose snapshot has
        them all."""
        def sends_and_predata(url, name):
            n = self.counts("-d", url, "-b", self.path(name), "backup", "--name", "s")
            raw = subprocess.run(["zstd", "-q", "-d", "-c", self.path(name, "s.tar.zst")],
                                 capture_output=True, check=True).stdout
            with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
                pre = tf.extractfile("pg/pre-data.sql").read().decode()
            return n["send"], pre

        plain = self.pg_new_db()
        self.psql(plain, "CREATE TABLE t (id int PRIMARY KEY, v text)")
        rich = self.pg_new_db()
        self.psql(rich, "CREATE TABLE t (id int PRIMARY KEY, v text); "
                  "CREATE COLLATION c_coll (provider = libc, locale = 'C'); "
                  "CREATE FOREIGN DATA WRAPPER w; CREATE SERVER s FOREIGN DATA WRAPPER w; "
                  "CREATE USER MAPPING FOR CURRENT_USER SERVER s")
        n_plain, pre_plain = sends_and_predata(plain, "plain")
        n_rich, pre_rich = sends_and_predata(rich, "rich")
        self.assertLess(n_plain, n_rich)
        for what in ("CREATE COLLATION", "CREATE FOREIGN DATA WRAPPER", "CREATE SERVER",
                     "CREATE USER MAPPING"):
            self.assertIn(what, pre_rich)
            self.assertNotIn(what, pre_plain)

    def test_restore_in_place(self):
        snap = self.path("snap.tar.zst")
        self.ok("-d", self.url, "-b", self.dir, "backup", "--name", "snap")
        new = self.pg_state(self.url)
        self.psql(self.url, "UPDATE users SET name = 'changed' WHERE id % 7 = 0; "
                  "CREATE TABLE extra (x int); DELETE FROM orders WHERE id > 400")
        old = self.pg_state(self.url)
        bdir = self.path("bk")
        args = ["-d", self.url, "-b", bdir, "restore", snap, "--yes", "--no-safety-backup"]

        def state():
            s = self.pg_state(self.url)
            return "new" if s == new else "old" if s == old else s

        def reset():
            self.psql(self.url, "UPDATE users SET name = 'changed' WHERE id % 7 = 0; "
                      "CREATE TABLE extra (x int); DELETE FROM orders WHERE id > 400")
            self.assertEqual(state(), "old")

        n = self.counts(*args)
        self.assertEqual(state(), "new")
        reset()
        self.assertGreater(n["send"], 3)
        for i in spread(n["send"], 6):
            for mode in ("fault", "kill"):
                with self.subTest(index=i, mode=mode):
                    if mode == "fault":
                        r = self.run_shim(*args, fault="send:%d" % i)
                        self.assertClean(r, (0, 1))
                        st = state()
                        self.assertEqual(st, "new" if r.code == 0 else "old", r)
                    else:
                        r = self.run_shim(*args, kill="send:%d" % i)
                        self.assertClean(r, (), killed=True)
                        self.wait_idle()
                        self.assertIn(state(), ("new", "old"))
                        # nothing of the killed run stands in the next one's way
                        self.ok(*args)
                        st = state()
                        self.assertEqual(st, "new")
                    self.assertNoTemps(bdir, self.dir)
                if st == "new":
                    reset()
        # with the safety snapshot: faults while it is written
        args = args[:-1]
        n = self.counts(*args)
        reset()
        for kind in ("write", "fsync", "rename"):
            for i in spread(n[kind], 2):
                with self.subTest(kind=kind, index=i):
                    r = self.run_shim(*args, fault="%s:%d" % (kind, i))
                    self.assertClean(r, (0, 1))
                    self.assertEqual(state(), "new" if r.code == 0 else "old", r)
                    self.assertNoTemps(bdir, self.dir)
                    self.assertSnapshotsVerify(bdir)
                    if r.code == 0:
                        reset()

    def test_restore_to_in_parallel(self):
        """restore --to --jobs 2: the send that fails may be the main
        connection's or a worker's (the shim counts the threads' sends
        together).  A parallel restore is not atomic: a failed one must say
        the target is incomplete, and restoring again must mend it."""
        snap = self.path("snap.tar.zst")
        self.ok("-d", self.url, "-b", self.dir, "backup", "--name", "snap")
        want = self.pg_state(self.url)
        target = self.pg_new_db()
        args = ["-b", self.path("bk"), "restore", snap, "--to", target, "--jobs", "2", "--yes",
                "--no-safety-backup"]
        n = self.counts(*args)
        self.assertEqual(self.pg_state(target), want)
        self.assertGreater(n["send"], 6)
        for i in spread(n["send"], 6):
            for mode in ("fault", "kill"):
                with self.subTest(index=i, mode=mode):
                    if mode == "fault":
                        r = self.run_shim(*args, fault="send:%d" % i)
                        self.assertClean(r, (0, 1))
                        if r.code == 0:
                            self.assertEqual(self.pg_state(target), want)
                        else:
                            self.assertRegex(r.err, "incomplete|cannot|lost|closed")
                    else:
                        r = self.run_shim(*args, kill="send:%d" % i)
                        self.assertClean(r, (), killed=True)
                    self.wait_idle(target)
                    # restoring again mends whatever the failed run left
                    self.ok(*args)
                    self.assertEqual(self.pg_state(target), want)
                    self.assertNoTemps(self.path("bk"), self.dir)

    def test_restore_to_in_parallel_killed_in_a_frozen_load(self):
        """restore --to --jobs 2 SIGKILLed while it loads tables that a
        foreign key names and that are bigger than one unit of the load:
        each loads in one transaction of its own (TRUNCATE, one COPY FREEZE,
        COMMIT), so whatever the moment of the kill, such a table holds all
        its rows or none, never a part; and restoring again mends the
        target."""
        src = self.pg_new_db()
        # about 3 MiB of COPY rows each: more than one unit (2 MiB at --jobs 2)
        self.psql(src, fk_tables_sql(22000, 22000) + "ANALYZE;")
        full = {t: self.psql(src, "SELECT count(*) FROM %s" % t) for t in ("parent", "child")}
        snap = self.path("frozen.tar.zst")
        self.ok("-d", src, "-b", self.dir, "backup", "--name", "frozen")
        want = self.pg_state(src)
        target = self.pg_new_db()
        args = ["-b", self.path("bk"), "restore", snap, "--to", target, "--jobs", "2", "--yes",
                "--no-safety-backup"]
        n = self.counts(*args)
        self.assertEqual(self.pg_state(target), want)
        self.assertGreater(n["send"], 20)

        def rows(table):
            exists = self.psql(target, "SELECT to_regclass('public.%s') IS NOT NULL" % table)
            return self.psql(target, "SELECT count(*) FROM %s" % table) if exists == "t" else None

        empty_seen = False
        for i in spread(n["send"], 8):
            with self.subTest(index=i):
                r = self.run_shim(*args, kill="send:%d" % i)
                self.assertClean(r, (), killed=True)
                self.wait_idle(target)
                for table, count in full.items():
                    got = rows(table)
                    # None: killed before the table was created
                    self.assertIn(got, (None, "0", count), table)
                    empty_seen = empty_seen or got == "0"
                self.ok(*args)
                self.assertEqual(self.pg_state(target), want)
                self.assertNoTemps(self.path("bk"), self.dir)
        # at least one kill fell while a frozen table's transaction was open
        self.assertTrue(empty_seen)


if __name__ == "__main__":
    main()
