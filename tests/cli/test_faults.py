"""Fault injection on SQLite: write, fsync and rename fail (EIO or ENOSPC),
or the process is SIGKILLed, at call after call of backup, restore (in
place and --to a new file) and the safe-migrate pipeline; a killed pipeline
run is brought back by `recover`.  See faultlib.py for what is checked.
"""
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import threading

from faultlib import SPREAD, FaultTest, shim_env, spread, wait_stopped
from smtest import BIN, main, snapshot_manifest


class FaultSqlite(FaultTest):
    def setUp(self):
        super().setUp()
        self.sqlite("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, bio TEXT)")
        self.sqlite("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1500) "
                    "INSERT INTO users (name, bio) SELECT 'user' || x, printf('%.80c', 'b') FROM c")
        self.sqlite("CREATE INDEX users_name ON users(name)")
        self.url = self.sqlite_url()

    def sqlite_state(self, name="app.db"):
        """The dump, with the version table's timestamps left out."""
        lines = [l for l in self.sqlite_dump(name).splitlines()
                 if not l.startswith(("INSERT INTO safe_migrate_versions",
                                      "INSERT INTO safe_migrate_schema"))]
        if "CREATE TABLE safe_migrate_versions" in "\n".join(lines):
            lines.append(repr(self.sqlite("SELECT version, checksum FROM safe_migrate_versions "
                                          "ORDER BY 1", name)))
            lines.append(repr(self.sqlite("SELECT fingerprint FROM safe_migrate_schema", name)))
        return "\n".join(lines)

    def reset_db(self, pristine):
        # the lock file too: creating it fsyncs its directory, so a run
        # without it makes more fsync calls than one with it, and each run
        # must start in the state its calls were counted in
        for sfx in ("-journal", "-wal", "-shm", "-safe-migrate.lock"):
            if os.path.exists(self.path("app.db" + sfx)):
                os.unlink(self.path("app.db" + sfx))
        shutil.copyfile(pristine, self.path("app.db"))

    def test_backup(self):
        before = self.sqlite_dump()
        n = self.counts("-d", self.url, "-b", self.path("count"), "backup")
        self.assertGreater(n["write"], 1)  # the archive goes out in 1 MiB blocks
        self.assertGreater(n["fsync"], 1)
        self.assertGreater(n["rename"], 1)
        runs = 0
        for kind in ("write", "fsync", "rename"):
            for i in spread(n[kind]):
                for mode in ("fault", "kill"):
                    runs += 1
                    bdir = self.path("b-%s-%d-%s" % (kind, i, mode))
                    with self.subTest(kind=kind, index=i, mode=mode):
                        eno = "ENOSPC" if i % 2 else "EIO"
                        if mode == "fault":
                            r = self.run_shim("-d", self.url, "-b", bdir, "backup",
                                              fault="%s:%d:%s" % (kind, i, eno))
                            self.assertClean(r, (0, 1))
                            if r.code and eno == "ENOSPC" and kind == "write":
                                self.assertRegex(r.err, "No space left on device|disk is full")
                            # a failed backup cleans up after itself at once
                            self.assertNoTemps(bdir, self.dir)
                        else:
                            r = self.run_shim("-d", self.url, "-b", bdir, "backup",
                                              kill="%s:%d" % (kind, i))
                            self.assertClean(r, (), killed=True)
                        self.assertSnapshotsVerify(bdir)
                        self.assertEqual(self.sqlite_dump(), before)
                        # the next normal run removes what a killed run left
                        self.ok("-d", self.url, "-b", bdir, "backup")
                        self.assertNoTemps(bdir, self.dir)
                        self.assertSnapshotsVerify(bdir)
                        names = os.listdir(bdir)
                        self.assertEqual(len([f for f in names if f.endswith(".sha256")]),
                                         len([f for f in names if f.endswith(".tar.zst")]),
                                         names)
                    shutil.rmtree(bdir, ignore_errors=True)
        self.assertGreaterEqual(runs, 12)

    def restore_cases(self, to_new):
        """Faults during restore (in place, or --to a new database)."""
        snap = self.path("snap.tar.zst")
        self.ok("-d", self.url, "-b", self.dir, "backup", "--name", "snap")
        new_dump = self.sqlite_dump()
        if not to_new:
            self.sqlite("UPDATE users SET name = 'changed' WHERE id % 7 = 0")
            self.sqlite("CREATE TABLE extra (x INT)")
        old_dump = self.sqlite_dump()
        pristine = self.path("pristine.db")
        shutil.copyfile(self.path("app.db"), pristine)
        target = "new.db" if to_new else "app.db"
        args = ["-d", self.url, "-b", self.path("bk"), "restore", snap, "--yes"]
        if to_new:
            args += ["--to", self.sqlite_url(target)]

        def state():
            if not os.path.exists(self.path(target)):
                return "absent"
            d = self.sqlite_dump(target)
            if d == new_dump:
                return "new"
            if to_new and d == self.empty_dump:
                return "absent"
            if d == old_dump:
                return "old"
            return d

        self.empty_dump = subprocess.run(["sqlite3", ":memory:", ".dump"], capture_output=True,
                                         text=True, check=True).stdout

        def reset():
            if to_new:
                for sfx in ("", "-journal", "-wal", "-shm", "-safe-migrate.lock"):
                    if os.path.exists(self.path(target + sfx)):
                        os.unlink(self.path(target + sfx))
            else:
                self.reset_db(pristine)
            shutil.rmtree(self.path("bk"), ignore_errors=True)

        reset()
        n = self.counts(*args)
        self.assertEqual(state(), "new")
        reset()
        for kind in ("write", "fsync", "rename"):
            for i in spread(n[kind], SPREAD * 2 // 3):
                for mode in ("fault", "kill"):
                    with self.subTest(kind=kind, index=i, mode=mode):
                        if mode == "fault":
                            r = self.run_shim(*args, fault="%s:%d:%s" % (
                                kind, i, "ENOSPC" if i % 2 else "EIO"))
                            self.assertClean(r, (0, 1))
                            self.assertEqual(state(), "new" if r.code == 0 else
                                             ("absent" if to_new else "old"), r)
                            self.assertNoTemps(self.path("bk"), self.dir)
                        else:
                            r = self.run_shim(*args, kill="%s:%d" % (kind, i))
                            self.assertClean(r, (), killed=True)
                            self.assertIn(state(), ("new", "absent" if to_new else "old"))
                        self.assertSnapshotsVerify(self.path("bk"))
                        # the next normal restore finishes the job and cleans up
                        self.ok(*args)
                        self.assertEqual(state(), "new")
                        self.assertNoTemps(self.path("bk"), self.dir)
                        self.assertSnapshotsVerify(self.path("bk"))
                    reset()

    def test_revision_is_the_snapshots_under_a_migration_at_every_header_read(self):
        """A second operator's migration commits (WAL mode) while the backup
        of a database above 32 MiB (copied by a reader of its own) is stopped
        before each read of the file's first page, where a connection's view
        of the database begins: the revision the snapshot records is always
        the one of the database it holds.  Read on the engine's connection
        before the copy's view began, it named the revision before a
        migration whose table the snapshot has."""
        con = sqlite3.connect(self.path("big.db"))
        con.executescript("""
            PRAGMA journal_mode=WAL;
            CREATE TABLE safe_migrate_versions (version TEXT PRIMARY KEY,
              description TEXT NOT NULL, checksum TEXT NOT NULL, applied_at TEXT NOT NULL,
              applied_by TEXT NOT NULL, execution_ms INTEGER NOT NULL);
            INSERT INTO safe_migrate_versions VALUES ('0001', 'base', 'x', 'then', 'me', 1);
            CREATE TABLE bulk (id INTEGER PRIMARY KEY, b BLOB);
            WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 36)
            INSERT INTO bulk (b) SELECT randomblob(1048576) FROM c;
        """)
        con.close()
        url = self.sqlite_url("big.db")
        reads = self.counts("-d", url, "-b", self.path("count"), "backup")["read0"]
        self.assertGreater(reads, 2)
        seen = set()
        for i in range(1, reads + 1):
            bdir = self.path("race-%d" % i)
            version, table = "%04d" % (i + 1), "race_%d" % i
            with self.subTest(read=i):
                p = subprocess.Popen([BIN, "-q", "-d", url, "-b", bdir, "--json", "backup"],
                                     env=dict(self.env, **shim_env({"SM_FAULT_STOP":
                                                                    "read0:%d" % i})),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                migration = None
                try:
                    if wait_stopped(p):
                        # the migration's table and its version, in one
                        # commit; it may have to wait for a lock the
                        # stopped backup holds, so it runs beside it
                        migration = threading.Thread(target=self.migrate_big,
                                                     args=(table, version))
                        migration.start()
                        migration.join(1)
                finally:
                    p.send_signal(signal.SIGCONT)
                    out, err = p.communicate(timeout=120)
                    if migration:
                        migration.join()
                self.assertEqual(p.returncode, 0, err)
                m = snapshot_manifest(json.loads(out)["path"])
                has_table = table in m["row_counts"]
                self.assertEqual(m["revision"], version if has_table else "%04d" % i, m)
                seen.add(has_table)
                if not migration:  # the next run's base revision
                    self.migrate_big(table, version)
            shutil.rmtree(bdir, ignore_errors=True)
        # both outcomes happened: stops before the snapshot's view and in it
        self.assertEqual(seen, {False, True})

    def migrate_big(self, table, version):
        con = sqlite3.connect(self.path("big.db"), timeout=60, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            con.execute("CREATE TABLE %s (x)" % table)
            con.execute("INSERT INTO safe_migrate_versions VALUES (?, 'race', 'x', 'now', "
                        "'other', 1)", (version,))
            con.execute("COMMIT")
        finally:
            con.close()

    def test_restore_in_place(self):
        self.restore_cases(to_new=False)

    def test_restore_to_new_database(self):
        self.restore_cases(to_new=True)

    def test_pipeline(self):
        self.write("migrations/0001_base.sql",
                   "-- migrate:up\nCREATE TABLE base (x INT);\n-- migrate:down\nDROP TABLE base;\n")
        self.ok("-d", self.url, "upgrade")
        self.write("migrations/0002_more.sql",
                   "-- migrate:up\nALTER TABLE users ADD COLUMN email TEXT;\n"
                   "UPDATE users SET email = name || '@example.com';\n"
                   "CREATE TABLE more (x INT);\nINSERT INTO more VALUES (1), (2);\n"
                   "-- migrate:down\nDROP TABLE more;\nALTER TABLE users DROP COLUMN email;\n")
        self.pipeline_cases(["-d", self.url, "-b", self.path("bk"), "safe-migrate"])

    def test_run_command(self):
        """The pipeline around another tool's command (run -- COMMAND): the
        shim fails only safe-migrate's own calls (the child runs unfaulted);
        the command is idempotent, so a rerun after success changes nothing."""
        self.pipeline_cases(["-d", self.url, "-b", self.path("bk"), "run", "--", "sqlite3",
                             "app.db", "CREATE TABLE IF NOT EXISTS more (x INT PRIMARY KEY); "
                             "INSERT OR IGNORE INTO more VALUES (1), (2); "
                             "UPDATE users SET bio = 'run' WHERE id % 3 = 0"])

    def pipeline_cases(self, args):
        """Faults and kills at spread write/fsync/rename calls of a pipeline
        run (args); after each, recover if killed, then one normal run must
        leave the new state and no temp file."""
        old_dump = self.sqlite_state()
        pristine = self.path("pristine.db")
        shutil.copyfile(self.path("app.db"), pristine)
        bdir = self.path("bk")

        self.reset_db(pristine)
        n = self.counts(*args)
        new_dump = self.sqlite_state()
        self.assertNotEqual(new_dump, old_dump)

        def state():
            d = self.sqlite_state()
            return "new" if d == new_dump else "old" if d == old_dump else d

        def without_mark(dump):
            return [l for l in dump.splitlines() if "safe_migrate_runs" not in l]

        def app_state():
            """The dump's statements but those of safe-migrate's own tables."""
            return [st for st in self.sqlite_dump().split(";\n") if "safe_migrate_" not in st]

        def new_but_fingerprint():
            """The new state of the application's tables; safe-migrate's
            record of the schema may be missing or stale."""
            return app_state() == new_app

        def reset():
            self.reset_db(pristine)
            shutil.rmtree(bdir, ignore_errors=True)

        new_app = app_state()
        reset()
        for kind in ("write", "fsync", "rename"):
            for i in spread(n[kind], SPREAD * 2 // 3):
                for mode in ("fault", "kill"):
                    stale_fingerprint = False
                    with self.subTest(kind=kind, index=i, mode=mode):
                        if mode == "fault":
                            r = self.run_shim(*args, fault="%s:%d:%s" % (
                                kind, i, "ENOSPC" if i % 2 else "EIO"))
                            self.assertClean(r, (0, 1, 4, 5))
                            if "cannot record the schema fingerprint" in r.err:
                                # the migration is in; only validate's drift
                                # baseline is stale, and the run said so
                                self.assertEqual(r.code, 0, r)
                                self.assertTrue(new_but_fingerprint(), r)
                                stale_fingerprint = True
                            elif ("cannot remove this run's mark" in r.err or
                                  "cannot mark this run" in r.err):
                                # the run ended, and said that its mark in
                                # the database (or its empty table) stayed:
                                # the next run removes it
                                self.assertEqual(without_mark(self.sqlite_state()),
                                                 without_mark(new_dump if r.code == 0
                                                              else old_dump), r)
                            else:
                                self.assertEqual(state(), "new" if r.code == 0 else "old", r)
                            self.assertNoTemps(bdir, self.dir)
                        else:
                            r = self.run_shim(*args, kill="%s:%d" % (kind, i))
                            self.assertClean(r, (), killed=True)
                            rec = self.run_sm("-d", self.url, "-b", bdir, "recover", "--yes")
                            self.assertClean(rec, (0,))
                            if "restored" in rec.out:
                                self.assertEqual(state(), "old", rec)
                            else:
                                self.assertIn(state(), ("old", "new"), rec)
                        self.assertSnapshotsVerify(bdir)
                        # the next normal run applies what is left, and cleans up
                        self.ok(*args)
                        if stale_fingerprint:
                            self.assertTrue(new_but_fingerprint())
                        else:
                            self.assertEqual(state(), "new")
                        self.assertNoTemps(bdir, self.dir)
                    reset()

    def test_killed_pipeline_recover_discard(self):
        """recover --discard after a kill in the middle of apply accepts what
        is there; the next run finishes the job."""
        self.write("migrations/0001_a.sql", "-- migrate:up\nCREATE TABLE a (x INT);\n"
                   "INSERT INTO a VALUES (1);\n-- migrate:down\nDROP TABLE a;\n")
        bdir = self.path("bk")
        args = ["-d", self.url, "-b", bdir, "safe-migrate"]
        pristine = self.path("pristine.db")
        shutil.copyfile(self.path("app.db"), pristine)
        self.reset_db(pristine)
        n = self.counts(*args)
        self.reset_db(pristine)
        shutil.rmtree(bdir)
        # the last fsync of the database file: the migration's commit (then
        # come the journal's "done" (file, directory) and the runs log's
        # first creation (directory) and line)
        r = self.run_shim(*args, kill="fsync:%d" % (n["fsync"] - 4))
        self.assertClean(r, (), killed=True)
        self.code(4, *args)
        self.ok("-d", self.url, "-b", bdir, "recover", "--discard")
        self.ok(*args)
        self.assertEqual(self.sqlite("SELECT count(*) FROM a"), [(1,)])
        self.assertNoTemps(bdir, self.dir)


class BackgroundFlush(FaultTest):
    """Files larger than one flusher step (32 MiB) are made durable while
    they are written: fdatasync runs in a thread of its own
    (src/core/flusher.c).  A failed background flush must fail the command:
    after a failed fdatasync Linux may report success for the next one
    although the data never arrived."""

    def setUp(self):
        super().setUp()
        # about 70 MB of incompressible rows: snapshot and restored file both
        # cross two flush steps
        self.sqlite("CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB)")
        self.sqlite("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                    "WHERE x < 1100) INSERT INTO blobs (b) SELECT randomblob(65536) FROM c")
        self.url = self.sqlite_url()
        self.before = self.sqlite_dump()

    def flush_faults(self, args, check, reset):
        n = self.counts(*args)
        # the flushes happened (they may be folded together when the device
        # is slower than the writer, so the number varies from run to run)
        self.assertGreaterEqual(n["fdatasync"], 1, n)
        for i in range(1, n["fdatasync"] + 1):
            for mode in ("fault", "kill"):
                reset()
                with self.subTest(index=i, mode=mode):
                    if mode == "fault":
                        r = self.run_shim(*args, fault="fdatasync:%d:EIO" % i)
                        with open(self.count_file) as f:
                            fired = "fired 1" in f.read()
                        if fired:
                            self.assertClean(r, (1,))
                            self.assertIn("Input/output error", r.err)
                        else:
                            self.assertClean(r, (0,))
                    else:
                        r = self.run_shim(*args, kill="fdatasync:%d" % i)
                        fired = r.code == -9
                        self.assertClean(r, (0,) if not fired else (), killed=fired)
                    check(r, fired, mode)

    def test_backup(self):
        bdir = self.path("bk")

        def check(r, fired, mode):
            if fired and mode == "fault":
                self.assertEqual(os.listdir(bdir), [])
            self.assertSnapshotsVerify(bdir)
            self.assertEqual(self.sqlite_dump(), self.before)
            self.ok("-d", self.url, "-b", bdir, "backup")  # cleans what a kill left
            self.assertNoTemps(bdir, self.dir)

        self.flush_faults(["-d", self.url, "-b", bdir, "backup"], check,
                          lambda: shutil.rmtree(bdir, ignore_errors=True))

    def test_restore_to_new_database(self):
        self.ok("-d", self.url, "-b", self.dir, "backup", "--name", "snap")
        target = self.path("new.db")
        args = ["-b", self.path("bk"), "restore", self.path("snap.tar.zst"), "--yes",
                "--no-safety-backup", "--to", self.sqlite_url("new.db")]

        def check(r, fired, mode):
            if fired:
                # nothing was renamed into place: the target is still absent
                # or the empty file the restore created
                self.assertTrue(not os.path.exists(target) or os.path.getsize(target) == 0)
            else:
                self.assertEqual(self.sqlite_dump("new.db"), self.before)
            self.ok(*args)
            self.assertEqual(self.sqlite_dump("new.db"), self.before)
            self.assertNoTemps(self.path("bk"), self.dir)

        def reset():
            for sfx in ("", "-journal", "-wal", "-shm"):
                if os.path.exists(target + sfx):
                    os.unlink(target + sfx)

        self.flush_faults(args, check, reset)


class DiskFull(FaultTest):
    """A small tmpfs as the backup directory (or restore target) and a
    database larger than it.  Without permission to mount, the shim's
    persistent ENOSPC stands in for the full disk."""

    MB = 1 << 20

    def setUp(self):
        super().setUp()
        self.small = self.path("small")
        os.mkdir(self.small)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs",
                            self.small], capture_output=True, text=True)
        self.mounted = r.returncode == 0
        # about 1.5 MB of incompressible rows: the snapshot needs about 4 MB
        self.sqlite("CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB)")
        self.sqlite("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                    "WHERE x < 1500) INSERT INTO blobs (b) SELECT randomblob(1000) FROM c")
        self.url = self.sqlite_url()
        self.before = self.sqlite_dump()

    def tearDown(self):
        if self.mounted:
            subprocess.run(["umount", self.small], check=False)
        super().tearDown()

    def assertNoSpaceClean(self, r):
        self.assertClean(r, (1,))
        self.assertRegex(r.err, "(?i)no space left on device|not enough free space|disk is full")
        self.assertSnapshotsVerify(self.small)
        self.assertEqual([f for f in os.listdir(self.small) if f.endswith(".tar.zst")], [])
        self.assertNoTemps(self.small, self.dir)
        self.assertEqual(self.sqlite_dump(), self.before)

    def test_backup_refused_by_the_space_check(self):
        if self.mounted:
            r = self.run_sm("-d", self.url, "-b", self.small, "backup")
            self.assertIn("not enough free space", r.err)
        else:
            r = self.run_shim("-d", self.url, "-b", self.small, "backup", fault="write:1:ENOSPC",
                              persist=True)
        self.assertNoSpaceClean(r)

    def test_disk_fills_while_the_snapshot_is_written(self):
        """The space check passes (the disk is big enough at the start) and
        the disk fills part-way through: from the 3rd write on (the scratch
        copy), from the middle of the archive on, or at its last write, every
        write gets ENOSPC (the shim stands in for another writer taking the
        space: a real race would make the test flaky)."""
        if self.mounted:
            subprocess.run(["mount", "-o", "remount,size=8m", self.small], check=True)
        n = self.counts("-d", self.url, "-b", self.path("count"), "backup")
        for at in (3, n["write"] // 2, n["write"]):
            with self.subTest(at=at):
                r = self.run_shim("-d", self.url, "-b", self.small, "backup", "--name", "full",
                                  fault="write:%d:ENOSPC" % at, persist=True)
                self.assertNoSpaceClean(r)
        self.ok("-d", self.url, "-b", self.small, "backup")
        self.assertSnapshotsVerify(self.small)

    def test_restore_into_a_full_disk(self):
        """A real ENOSPC part-way: the staging file of the new database does
        not fit in the tmpfs (1 MB, the database about 1.5 MB)."""
        self.ok("-d", self.url, "-b", self.dir, "backup", "--name", "snap")
        target = os.path.join(self.small, "new.db")
        if self.mounted:
            subprocess.run(["mount", "-o", "remount,size=1m", self.small], check=True)
            r = self.run_sm("-b", self.path("bk"), "restore", self.path("snap.tar.zst"),
                            "--to", "sqlite:///" + target, "--yes")
        else:
            r = self.run_shim("-b", self.path("bk"), "restore", self.path("snap.tar.zst"),
                              "--to", "sqlite:///" + target, "--yes",
                              fault="write:10:ENOSPC", persist=True)
        self.assertClean(r, (1,))
        self.assertRegex(r.err, "(?i)no space left on device|disk is full")
        self.assertFalse(os.path.exists(target), os.listdir(self.small))
        self.assertNoTemps(self.small, self.path("bk"))
        # not even the migration lock file: its holder removes it (engine_sqlite.c)
        self.assertEqual(os.listdir(self.small), [])



if __name__ == "__main__":
    main()
