"""Fault injection: the real binary with write, fsync, rename and send made to
fail (or the process SIGKILLed) at call after call, through the LD_PRELOAD
shim tests/faults/faultshim.c.

Each command is first run unfaulted to learn how many calls of each kind it
makes; then it is run again with a fault at every call index (or at a spread
of indexes when there are many).  Every faulted run must either succeed or
fail cleanly with a contract exit code, and afterwards:
  - every visible snapshot verifies (no partial snapshot is ever visible);
  - the database is in its old state, or, for a run that succeeded (or was
    killed after its commit), in its new state;
  - after one more normal run no temp or staging file is left.
A killed pipeline run is brought back by `recover`.
"""
import os
import shutil
import subprocess
import time

from smtest import BIN, CliTest, main

SHIM = os.environ.get("SM_FAULTSHIM") or os.path.join(
    os.path.dirname(BIN), "..", "..", "tests", "libfaultshim.so")
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
                     "runtime error:")
TEMP_MARKERS = (".safe-migrate-tmp", ".safe-migrate-restore.")
# how many call indexes of one kind to try at most (spread over the range)
SPREAD = int(os.environ.get("SM_FAULT_SPREAD", "14"))


def spread(n, limit=SPREAD):
    """Call indexes 1..n, or about `limit` of them spread over the range
    (always the first and the last)."""
    if n <= limit:
        return list(range(1, n + 1))
    return sorted({1 + round(i * (n - 1) / (limit - 1)) for i in range(limit)})


class FaultTest(CliTest):
    def setUp(self):
        super().setUp()
        if not os.path.exists(SHIM):
            self.fail("the fault shim is not built: %s" % SHIM)
        self.count_file = self.path("fault-counts")

    # -- running under the shim ---------------------------------------------
    def run_shim(self, *args, fault=None, kill=None, persist=False, **kw):
        env = {"LD_PRELOAD": os.path.abspath(SHIM),
               "ASAN_OPTIONS": self.env.get("ASAN_OPTIONS", "detect_leaks=1") +
                               ":verify_asan_link_order=0",
               "SM_FAULT_COUNT_FILE": self.count_file}
        if fault:
            env["SM_FAULT"] = fault
        if kill:
            env["SM_FAULT_KILL"] = kill
        if persist:
            env["SM_FAULT_PERSIST"] = "1"
        env.update(kw.pop("env", {}) or {})
        if os.path.exists(self.count_file):
            os.unlink(self.count_file)
        kw.setdefault("timeout", 120)  # a hang is a failure, not a stuck suite
        return self.run_sm(*args, env=env, **kw)

    def counts(self, *args, **kw):
        """Runs args unfaulted (it must succeed) and returns {kind: calls}."""
        r = self.run_shim(*args, **kw)
        self.assertEqual(r.code, 0, r)
        with open(self.count_file) as f:
            counts = dict((k, int(v)) for k, v in (l.split() for l in f))
        self.assertEqual(counts["fired"], 0)
        return counts

    def assertClean(self, r, allowed, killed=False):
        """No sanitizer report; the injected SIGKILL or a contract exit code;
        a failure says what failed."""
        for m in SANITIZER_MARKERS:
            self.assertNotIn(m, r.err, r)
        if killed:
            self.assertEqual(r.code, -9, r)
            return
        self.assertIn(r.code, allowed, r)
        if r.code not in (0, 3):
            self.assertIn("error", r.err, r)

    def assertSnapshotsVerify(self, bdir):
        if not os.path.isdir(bdir):
            return
        for f in sorted(os.listdir(bdir)):
            if f.endswith(".tar.zst") and not f.startswith("."):
                self.ok("verify", os.path.join(bdir, f))

    def temps(self, *dirs):
        found = []
        for d in dirs:
            if os.path.isdir(d):
                found += [os.path.join(d, f) for f in os.listdir(d)
                          if any(m in f for m in TEMP_MARKERS)]
        return found

    def assertNoTemps(self, *dirs):
        self.assertEqual(self.temps(*dirs), [])


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
        for sfx in ("-journal", "-wal", "-shm"):
            if os.path.exists(self.path("app.db" + sfx)):
                os.unlink(self.path("app.db" + sfx))
        shutil.copyfile(pristine, self.path("app.db"))

    def test_backup(self):
        before = self.sqlite_dump()
        n = self.counts("-d", self.url, "-b", self.path("count"), "backup")
        self.assertGreater(n["write"], 3)
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
        self.assertGreater(runs, 20)

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
                for sfx in ("", "-journal", "-wal", "-shm"):
                    if os.path.exists(self.path(target + sfx)):
                        os.unlink(self.path(target + sfx))
            else:
                self.reset_db(pristine)
            shutil.rmtree(self.path("bk"), ignore_errors=True)

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
        old_dump = self.sqlite_state()
        pristine = self.path("pristine.db")
        shutil.copyfile(self.path("app.db"), pristine)
        bdir = self.path("bk")
        args = ["-d", self.url, "-b", bdir, "safe-migrate"]

        n = self.counts(*args)
        new_dump = self.sqlite_state()
        self.assertNotEqual(new_dump, old_dump)

        def state():
            d = self.sqlite_state()
            return "new" if d == new_dump else "old" if d == old_dump else d

        def reset():
            self.reset_db(pristine)
            shutil.rmtree(bdir, ignore_errors=True)

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
                                self.assertEqual(state().rsplit("\n", 1)[0],
                                                 new_dump.rsplit("\n", 1)[0])
                                stale_fingerprint = True
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
                            self.assertEqual(state().rsplit("\n", 1)[0],
                                             new_dump.rsplit("\n", 1)[0])
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
        n = self.counts(*args)
        self.reset_db(pristine)
        shutil.rmtree(bdir)
        # the last fsync of the database file: the migration's commit
        r = self.run_shim(*args, kill="fsync:%d" % (n["fsync"] - 2))
        self.assertClean(r, (), killed=True)
        self.code(4, *args)
        self.ok("-d", self.url, "-b", bdir, "recover", "--discard")
        self.ok(*args)
        self.assertEqual(self.sqlite("SELECT count(*) FROM a"), [(1,)])
        self.assertNoTemps(bdir, self.dir)


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
        """)

    def wait_idle(self):
        """Waits until no session of a killed client is left on the database
        (the server notices a lost client only at its next read)."""
        db = self.url.rsplit("/", 1)[1].split("?")[0]
        for _ in range(300):
            if self.psql(self.url, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                         "'%s' AND pid <> pg_backend_pid()" % db) == "0":
                return
            time.sleep(0.05)
        self.fail("a killed client's session did not go away")

    def test_backup(self):
        before = self.pg_state(self.url)
        n = self.counts("-d", self.url, "-b", self.path("count"), "backup")
        self.assertGreater(n["send"], 3)
        for kind in ("write", "fsync", "rename", "send"):
            for i in spread(n[kind], 8):
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
                        self.ok("-d", self.url, "-b", bdir, "backup")
                        self.assertNoTemps(bdir)
                    shutil.rmtree(bdir, ignore_errors=True)
        self.assertEqual(self.pg_state(self.url), before)

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
        for i in spread(n["send"], 12):
            for mode in ("fault", "kill"):
                with self.subTest(index=i, mode=mode):
                    if mode == "fault":
                        r = self.run_shim(*args, fault="send:%d" % i)
                        self.assertClean(r, (0, 1))
                        self.assertEqual(state(), "new" if r.code == 0 else "old", r)
                    else:
                        r = self.run_shim(*args, kill="send:%d" % i)
                        self.assertClean(r, (), killed=True)
                        self.wait_idle()
                        self.assertIn(state(), ("new", "old"))
                    self.assertNoTemps(bdir, self.dir)
                    self.ok(*args)
                    self.assertEqual(state(), "new")
                reset()
        # with the safety snapshot: faults while it is written
        args = args[:-1]
        n = self.counts(*args)
        reset()
        for kind in ("write", "fsync", "rename"):
            for i in spread(n[kind], 6):
                with self.subTest(kind=kind, index=i):
                    r = self.run_shim(*args, fault="%s:%d" % (kind, i))
                    self.assertClean(r, (0, 1))
                    self.assertEqual(state(), "new" if r.code == 0 else "old", r)
                    self.assertNoTemps(bdir, self.dir)
                    self.assertSnapshotsVerify(bdir)
                    if r.code == 0:
                        reset()


if __name__ == "__main__":
    main()
