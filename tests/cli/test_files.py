"""Files that cannot be turned against the operator, and snapshots that never
overwrite each other (issue 15, sections 2 and 6): two runs sharing a backup
directory, symlinks planted at the names safe-migrate writes, special files
as output, permissive backup directories, and power loss (the crash shim)."""
import glob
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import time

from faultlib import SHIM, shim_env, wait_stopped
from smtest import BIN, CliTest, main


class SharedBackupDir(CliTest):
    def make_db(self, name, rows):
        con = sqlite3.connect(self.path(name))
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        con.executemany("INSERT INTO t(v) VALUES (?)", [(name,)] * rows)
        con.commit()
        con.close()

    def test_same_second_snapshots_never_replace_each_other(self):
        """Two backups of different databases into one directory, with the
        same default name (same second): the one that publishes second moves
        to the next suffix; both survive, verify, and hold their own data."""
        self.make_db("a.db", 10)
        self.make_db("b.db", 20)
        os.mkdir(self.path("backups"))
        frozen = str(int(time.time()))
        # A stops just before its first rename (publishing), with its name picked
        env = dict(self.env)
        env.update(shim_env({"SM_FAKE_TIME": frozen, "SM_FAULT_STOP": "rename:1"}))
        a = subprocess.Popen([BIN, "-d", self.sqlite_url("a.db"), "-b", "backups", "backup",
                              "--json"], cwd=self.dir, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        try:
            self.assertTrue(wait_stopped(a), "backup A never reached its publish step")
            b = self.ok("-d", self.sqlite_url("b.db"), "-b", "backups", "backup", "--json",
                        env=shim_env({"SM_FAKE_TIME": frozen})).json()
        finally:
            a.send_signal(signal.SIGCONT)
            out, err = a.communicate(timeout=120)
        self.assertEqual(a.returncode, 0, err)
        a_path = json.loads(out)["path"]
        self.assertNotEqual(os.path.basename(a_path), os.path.basename(b["path"]))
        snaps = sorted(glob.glob(self.path("backups", "*.tar.zst")))
        self.assertEqual(len(snaps), 2, snaps)
        for p, db, rows in ((a_path, "a.db", 10), (b["path"], "b.db", 20)):
            p = os.path.join(self.dir, p)
            self.ok("verify", p)
            with open(p + ".sha256") as f:
                self.assertTrue(f.read().endswith("  " + os.path.basename(p) + "\n"))
            self.ok("restore", p, "--to", self.sqlite_url("r-" + db), "--yes")
            self.assertEqual(self.sqlite("SELECT count(*), min(v) FROM t", "r-" + db),
                             [(rows, db)])


class NoSymlinkFollowed(CliTest):
    """Writes never go through a symlink that someone with write access to
    the directory planted: the target keeps its content and its mode."""

    def setUp(self):
        super().setUp()
        con = sqlite3.connect(self.path("app.db"))
        con.execute("CREATE TABLE t (x)")
        con.commit()
        con.close()
        self.write("safe-migrate.ini", "[safe-migrate]\ndatabase_url = sqlite:///app.db\n"
                   "backup_dir = backups\n")
        self.chain(1)
        self.victim = self.write("victim.txt", "precious\n")
        os.chmod(self.victim, 0o640)

    def assert_victim_untouched(self):
        with open(self.victim) as f:
            self.assertEqual(f.read(), "precious\n")
        self.assertEqual(stat.S_IMODE(os.stat(self.victim).st_mode), 0o640)

    def test_symlink_at_the_temp_name(self):
        """The temp name of a durable write was .safe-migrate-tmp.<pid>.<name>:
        a symlink planted there for the writer's pid (known here because the
        shell execs safe-migrate) had the victim truncated, chmodded and
        overwritten."""
        proc = subprocess.Popen(["sh", "-c", 'read go; exec "$@"', "sh", BIN, "schema",
                                 "--output", "schema.txt"], cwd=self.dir, env=self.env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        os.symlink(self.victim, self.path(".safe-migrate-tmp.%d.schema.txt" % proc.pid))
        out, err = proc.communicate("go\n", timeout=60)
        self.assertEqual(proc.returncode, 0, err)
        self.assert_victim_untouched()
        self.assertFalse(os.path.islink(self.path("schema.txt")))
        with open(self.path("schema.txt")) as f:
            self.assertIn("t", f.read())

    def test_symlink_at_the_runs_log(self):
        os.mkdir(self.path("backups"), 0o700)
        os.symlink(self.victim, self.path("backups", "safe-migrate-runs.jsonl"))
        self.run_sm("safe-migrate", "--yes")
        self.assert_victim_untouched()

    def test_symlink_at_the_lock_file(self):
        """The lock file was opened with O_CREAT through a symlink: a file was
        created wherever the link pointed."""
        target = self.path("created-by-safe-migrate")
        os.symlink(target, self.path("app.db-safe-migrate.lock"))
        r = self.run_sm("upgrade")
        self.assertEqual(r.code, 1, r)
        self.assertIn("lock", r.err)
        self.assertFalse(os.path.exists(target))
        self.assertEqual(self.sqlite("SELECT count(*) FROM sqlite_master WHERE name='t1'"),
                         [(0,)])


class SpecialOutput(CliTest):
    """schema --output never renames over a device or a FIFO: as root,
    --output /dev/full had turned the device into a regular file."""

    def setUp(self):
        super().setUp()
        con = sqlite3.connect(self.path("app.db"))
        con.execute("CREATE TABLE t (x)")
        con.commit()
        con.close()
        self.write("safe-migrate.ini", "[safe-migrate]\ndatabase_url = sqlite:///app.db\n")

    def test_fifo_output_is_written_in_place(self):
        fifo = self.path("pipe")
        os.mkfifo(fifo)
        # a reader that never blocks: the writer's open finds it, and the
        # schema (a few hundred bytes) waits in the pipe's buffer
        rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            r = self.run_sm("schema", "--output", fifo, timeout=60)
            try:
                out = os.read(rfd, 65536).decode()
            except BlockingIOError:
                out = ""
        finally:
            os.close(rfd)
        self.assertEqual(r.code, 0, r)
        self.assertTrue(stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced")
        self.assertIn("safe-migrate schema", out)
        self.assertIn("table\tt", out)

    def test_device_output_is_written_in_place(self):
        """A null device of our own (mknod needs root; never the machine's
        /dev/null, which a regression would destroy)."""
        if os.geteuid() != 0:
            self.skipTest("mknod of a character device needs root")
        dev = self.path("null")
        os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        self.ok("schema", "--output", dev)
        self.assertTrue(stat.S_ISCHR(os.lstat(dev).st_mode), "the device was replaced")
        self.ok("schema", "--output", "/dev/null")
        self.assertTrue(stat.S_ISCHR(os.lstat("/dev/null").st_mode))


class BackupDirPermissions(CliTest):
    def test_world_writable_backup_dir_warns(self):
        con = sqlite3.connect(self.path("app.db"))
        con.execute("CREATE TABLE t (x)")
        con.commit()
        con.close()
        os.mkdir(self.path("backups"))
        os.chmod(self.path("backups"), 0o777)
        r = self.run_sm("-d", self.sqlite_url(), "-b", "backups", "safety-check", "--json")
        findings = [f for f in r.json()["findings"] if f.get("check") == "backup-dir-owner"]
        self.assertEqual([f["level"] for f in findings], ["warn"], r)
        self.assertIn("world-writable", findings[0]["message"])
        os.chmod(self.path("backups"), 0o700)
        r = self.run_sm("-d", self.sqlite_url(), "-b", "backups", "safety-check", "--json")
        self.assertFalse([f for f in r.json()["findings"] if f.get("check") == "backup-dir-owner"])


CRASHSHIM = os.path.join(os.path.dirname(os.path.abspath(SHIM)), "libcrashshim.so")


class PowerLoss(CliTest):
    """A power loss at several fsync boundaries of a SQLite safe-migrate
    run (tests/faults/crashshim.c drops every write, create, rename and
    unlink not yet made durable, then kills the process): every published
    snapshot verifies, and recover puts the database back in its pre-run
    state (or the run had finished and it is in the new state).  The backup
    directory is two levels deep: SQLite fsyncs the database's directory
    (making a first-level mkdir durable by chance), nothing else syncs the
    second level's parent but fs_mkdirs."""

    def setUp(self):
        super().setUp()
        if not os.path.exists(CRASHSHIM):
            self.fail("the crash shim is not built: %s" % CRASHSHIM)
        self.root = self.path("w")
        os.mkdir(self.root)

    def dump(self):
        r = subprocess.run(["sqlite3", os.path.join(self.root, "app.db"), ".dump"],
                           capture_output=True, text=True, check=True)
        return [s for s in r.stdout.split(";\n") if "safe_migrate_" not in s]

    def prepare(self):
        shutil.rmtree(self.root)
        os.mkdir(self.root)
        con = sqlite3.connect(os.path.join(self.root, "app.db"))
        con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        con.executemany("INSERT INTO users(name) VALUES (?)", [("u%d" % i,) for i in range(500)])
        con.commit()
        con.close()
        os.makedirs(os.path.join(self.root, "migrations"))
        with open(os.path.join(self.root, "migrations", "0001_more.sql"), "w") as f:
            f.write("-- migrate:up\nALTER TABLE users ADD COLUMN bio TEXT;\n"
                    "UPDATE users SET bio = 'x' || id;\nCREATE TABLE more (x);\n"
                    "-- migrate:down\nDROP TABLE more;\nALTER TABLE users DROP COLUMN bio;\n")

    def run_crash(self, at):
        env = {"LD_PRELOAD": CRASHSHIM, "SM_CRASH_ROOT": self.root,
               "ASAN_OPTIONS": self.env.get("ASAN_OPTIONS", "detect_leaks=1") +
                               ":verify_asan_link_order=0",
               "SM_CRASH_COUNT_FILE": self.path("crash-count")}
        if at:
            env["SM_CRASH_AT"] = str(at)
        return self.run_sm("-d", "sqlite:///app.db", "-b", "backups/run", "safe-migrate",
                           env=env, cwd=self.root, timeout=60)

    def test_power_loss_during_safe_migrate(self):
        self.prepare()
        old = self.dump()
        r = self.run_crash(0)
        self.assertEqual(r.code, 0, r)
        new = self.dump()
        self.assertNotEqual(old, new)
        with open(self.path("crash-count")) as f:
            n = int(f.read().split()[1])
        self.assertGreater(n, 5)
        points = sorted({1, 2, 3, n // 4, n // 2, 3 * n // 4, n - 1, n} - {0})
        for at in points:
            with self.subTest(crash_at=at, of=n):
                self.prepare()
                r = self.run_crash(at)
                self.assertEqual(r.code, -9, r)
                bdir = os.path.join(self.root, "backups", "run")
                for f in sorted(os.listdir(bdir)) if os.path.isdir(bdir) else []:
                    if f.endswith(".tar.zst") and not f.startswith("."):
                        self.ok("verify", os.path.join(bdir, f))
                # the database's own journal (one per database identity)
                journals = self.journals(bdir)
                self.assertLessEqual(len(journals), 1, journals)
                done = False
                for journal in journals:
                    with open(journal) as f:
                        done = json.load(f).get("phase") == "done"
                rec = self.run_sm("-d", "sqlite:///app.db", "-b", "backups/run", "recover",
                                  "--yes", cwd=self.root)
                self.assertEqual(rec.code, 0, rec)
                # a run whose end is not durable is undone; one that is, stays
                self.assertEqual(self.dump(), new if done else old, (done, rec))
                # and the next run completes
                r = self.run_sm("-d", "sqlite:///app.db", "-b", "backups/run", "safe-migrate",
                                cwd=self.root)
                self.assertEqual(r.code, 0, r)
                self.assertEqual(self.dump(), new)


if __name__ == "__main__":
    main()
