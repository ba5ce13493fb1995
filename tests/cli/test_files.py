"""Files that cannot be turned against the operator, and snapshots that never
overwrite each other (issue 15, sections 2 and 6): two runs sharing a backup
directory, symlinks planted at the names safe-migrate writes, special files
as output, permissive backup directories, and power loss (the crash shim)."""
import glob
import json
import os
import signal
import sqlite3
import stat
import subprocess
import time

from faultlib import SHIM
from smtest import BIN, CliTest, main


def shim_env(extra):
    env = {"LD_PRELOAD": os.path.abspath(SHIM),
           "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "detect_leaks=1") +
                           ":verify_asan_link_order=0"}
    env.update(extra)
    return env


def wait_stopped(proc, timeout=60):
    """Waits until proc is stopped (SIGSTOP), or fails if it exited."""
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            return False
        with open("/proc/%d/stat" % proc.pid) as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "T":
                return True
        time.sleep(0.02)
    return False


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


if __name__ == "__main__":
    main()
