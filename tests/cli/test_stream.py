#!/usr/bin/env python3
"""Streamed snapshots (issue 20 §1, §4): backup --output -|FILE, verify -,
restore - [--to URL] with the stream's SHA-256 checked before commit, for
SQLite and PostgreSQL; bounded memory; --compression-level.

The binary's stdout is the snapshot here, so these tests run it with
binary pipes and files instead of smtest's text-mode run_sm.
"""
import hashlib
import json
import os
import stat
import subprocess
import unittest

import smtest
from smtest import BIN, CliTest

BAD_SHA = "0" * 64


class StreamTest(CliTest):
    def run_bin(self, *args, stdin=None, stdout=None, env=None, wrap=()):
        """Runs the binary with stdin from a file path (or None) and stdout
        to a file path (or captured bytes)."""
        e = dict(self.env)
        if env:
            e.update(env)
        fin = open(stdin, "rb") if stdin else subprocess.DEVNULL
        fout = open(stdout, "wb") if stdout else subprocess.PIPE
        try:
            p = subprocess.run(list(wrap) + [BIN] + [str(a) for a in args], cwd=self.dir, env=e, stdin=fin,
                               stdout=fout, stderr=subprocess.PIPE, timeout=300)
        finally:
            if stdin:
                fin.close()
            if stdout:
                fout.close()
        return p.returncode, p.stdout, p.stderr.decode()

    def stream_backup(self, url, out="snap.tar.zst", *extra):
        code, _, err = self.run_bin("-d", url, "-b", "backups", "backup", "--output", "-",
                                    *extra, stdout=self.path(out))
        self.assertEqual(code, 0, err)
        with open(self.path(out), "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        # stderr's first line is sha256sum's own line for stdin
        self.assertEqual(err.splitlines()[0], "%s  -" % sha, err)
        self.write("snap.sha256", err.splitlines()[0] + "\n")
        return self.path(out), sha

    def make_sqlite(self, name="app.db", rows=200):
        self.sqlite("CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT)", name)
        self.sqlite("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                    "WHERE x < %d) INSERT INTO t (s) SELECT 'row ' || x FROM c" % rows, name)

    # -- SQLite ------------------------------------------------------------------
    def test_sqlite_backup_to_stdout_is_a_snapshot(self):
        self.make_sqlite()
        snap, sha = self.stream_backup(self.sqlite_url())
        with open(snap, "rb") as f:
            self.assertEqual(f.read(4), b"\x28\xb5\x2f\xfd")  # zstd magic
        names = subprocess.run(["tar", "--zstd", "-tf", snap], capture_output=True, text=True,
                               check=True).stdout.split()
        self.assertEqual(names[0], "snapshot.json")
        self.assertEqual(names[-1], "manifest.json")
        # nothing was published in the backup directory
        self.assertEqual([f for f in os.listdir(self.path("backups")) if f.endswith(".zst")]
                         if os.path.isdir(self.path("backups")) else [], [])
        # --json: the object goes to stderr (stdout is the snapshot), with the manifest
        code, _, err = self.run_bin("-d", self.sqlite_url(), "-b", "backups", "--json",
                                    "backup", "--output", "-", stdout=self.path("j.tar.zst"))
        self.assertEqual(code, 0, err)
        obj = json.loads(err[err.index("{"):])
        with open(self.path("j.tar.zst"), "rb") as f:
            self.assertEqual(obj["sha256"], hashlib.sha256(f.read()).hexdigest())
        self.assertEqual(obj["path"], "-")
        self.assertEqual(obj["manifest"]["engine"], "sqlite")
        self.assertTrue(any(e["name"].startswith("data/") for e in obj["manifest"]["entries"]))
        # verify - accepts it, with and without the out-of-band checksum
        for extra in ([], ["--sha256", sha], ["--sha256-file", "snap.sha256"]):
            code, out, err = self.run_bin("verify", "-", *extra, stdin=snap)
            self.assertEqual(code, 0, err)
        code, out, err = self.run_bin("verify", "-", "--sha256", BAD_SHA, stdin=snap)
        self.assertEqual(code, 7, err)
        self.assertIn("does not match the expected SHA-256", out.decode())
        # a truncated stream is damaged
        with open(snap, "rb") as f:
            data = f.read()
        with open(self.path("cut.tar.zst"), "wb") as f:
            f.write(data[:len(data) // 2])
        code, _, err = self.run_bin("verify", "-", stdin=self.path("cut.tar.zst"))
        self.assertEqual(code, 7, err)
        # a reader that goes away: an error (exit 1), not a death by SIGPIPE
        # (random bytes, so that the snapshot cannot fit in the pipe's buffer)
        self.sqlite("CREATE TABLE noise (b BLOB)")
        self.sqlite("INSERT INTO noise VALUES (randomblob(400000))")
        p = subprocess.Popen([BIN, "-d", self.sqlite_url(), "-b", "backups", "backup",
                              "--output", "-"], cwd=self.dir, env=self.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        p.stdout.close()
        self.assertEqual(p.wait(timeout=60), 1)
        self.assertIn("Broken pipe", p.stderr.read().decode())
        p.stderr.close()
        # usage errors
        self.assertEqual(self.run_bin("verify", "-", "--sha256", "xyz", stdin=snap)[0], 2)
        self.assertEqual(self.run_bin("verify", snap, "--sha256", sha)[0], 2)

    def test_sqlite_restore_from_stdin_in_place(self):
        self.make_sqlite()
        snap, sha = self.stream_backup(self.sqlite_url())
        self.sqlite("DELETE FROM t WHERE id > 10")
        before = self.sqlite_dump()
        # a wrong checksum: refused before the staged file is moved in
        code, _, err = self.run_bin("-d", self.sqlite_url(), "-b", "backups", "restore", "-",
                                    "--yes", "--sha256", BAD_SHA, stdin=snap)
        self.assertEqual(code, 7, err)
        self.assertIn("does not match the expected SHA-256", err)
        self.assertEqual(self.sqlite_dump(), before)
        # the staged copy is gone with it
        self.assertEqual([f for f in os.listdir(self.dir) if "restore" in f], [])
        # a truncated stream too
        with open(snap, "rb") as f:
            data = f.read()
        with open(self.path("cut.tar.zst"), "wb") as f:
            f.write(data[:-200])
        code, _, err = self.run_bin("-d", self.sqlite_url(), "-b", "backups", "restore", "-",
                                    "--yes", stdin=self.path("cut.tar.zst"))
        self.assertEqual(code, 7, err)
        self.assertEqual(self.sqlite_dump(), before)
        # confirmation cannot come from stdin: --yes is needed
        code, _, err = self.run_bin("-d", self.sqlite_url(), "-b", "backups", "restore", "-",
                                    stdin=snap)
        self.assertEqual(code, 2, err)
        # the right one
        code, _, err = self.run_bin("-d", self.sqlite_url(), "-b", "backups", "restore", "-",
                                    "--yes", "--sha256-file", "snap.sha256", stdin=snap)
        self.assertEqual(code, 0, err)
        self.assertEqual(self.sqlite("SELECT count(*) FROM t"), [(200,)])
        self.assertFalse([f for f in os.listdir(self.dir) if "restore" in f or ".tmp" in f])

    def test_sqlite_restore_from_stdin_to_new(self):
        self.make_sqlite()
        snap, sha = self.stream_backup(self.sqlite_url())
        code, _, err = self.run_bin("-b", "backups", "restore", "-", "--to",
                                    self.sqlite_url("new.db"), "--yes", "--sha256", BAD_SHA,
                                    stdin=snap)
        self.assertEqual(code, 7, err)
        self.assertFalse(os.path.exists(self.path("new.db")))
        code, _, err = self.run_bin("-b", "backups", "restore", "-", "--to",
                                    self.sqlite_url("new.db"), "--yes", "--sha256", sha,
                                    stdin=snap)
        self.assertEqual(code, 0, err)
        self.assertEqual(self.sqlite("SELECT count(*) FROM t", "new.db"), [(200,)])

    def test_backup_output_file(self):
        self.make_sqlite()
        os.mkdir(self.path("out"))
        r = self.ok("-d", self.sqlite_url(), "-b", "backups", "backup", "--output",
                    "out/x.tar.zst", "--json")
        self.assertEqual(r.json()["path"], "out/x.tar.zst")
        st = os.stat(self.path("out/x.tar.zst"))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        subprocess.run(["sha256sum", "-c", "x.tar.zst.sha256"], cwd=self.path("out"),
                       check=True, capture_output=True)
        self.ok("verify", self.path("out/x.tar.zst"))
        # never replaced, never through a symlink, never a block device
        self.code(2, "-d", self.sqlite_url(), "-b", "backups", "backup", "--output",
                  "out/x.tar.zst")
        os.symlink(self.path("victim"), self.path("out/link.tar.zst"))
        self.code(2, "-d", self.sqlite_url(), "-b", "backups", "backup", "--output",
                  "out/link.tar.zst")
        self.assertFalse(os.path.exists(self.path("victim")))
        self.code(2, "-d", self.sqlite_url(), "-b", "backups", "backup", "--output", "-",
                  "--name", "n")
        # a FIFO is written in place
        os.mkfifo(self.path("fifo"))
        with open(self.path("f.zst"), "wb") as sink:
            reader = subprocess.Popen(["cat", self.path("fifo")], stdout=sink)
            self.ok("-d", self.sqlite_url(), "-b", "backups", "backup", "--output", "fifo")
            reader.wait(timeout=60)
        code, _, err = self.run_bin("verify", "-", stdin=self.path("f.zst"))
        self.assertEqual(code, 0, err)

    def test_memory_stays_bounded(self):
        """Peak RSS of a stream out and back in: at most 64 MiB, and (nearly)
        the same for a database ten times larger.  ASan's quarantine of freed
        blocks is turned off: it holds freed memory by design."""
        peaks = {}
        for mb in (16, 160):
            name = "big%d.db" % mb
            self.sqlite("CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)", name)
            self.sqlite("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE "
                        "x < %d) INSERT INTO t (b) SELECT randomblob(1000) FROM c" % (mb * 1000),
                        name)
            env = dict(self.env, ASAN_OPTIONS="quarantine_size_mb=0:detect_leaks=0")
            for what, cmd, fin, fout in (
                    ("backup", ["-d", self.sqlite_url(name), "-b", "backups", "--no-progress",
                                "backup", "--output", "-"], None, "s.tar.zst"),
                    ("restore", ["-b", "backups", "--no-progress", "restore", "-", "--to",
                                 self.sqlite_url("r.db"), "--yes"], "s.tar.zst", None)):
                p = self.run_bin(*cmd, stdin=self.path(fin) if fin else None,
                                 stdout=self.path(fout) if fout else None, env=env,
                                 wrap=["/usr/bin/time", "-f", "RSS %M"])
                err = p[2]
                p = subprocess.CompletedProcess(cmd, p[0])
                self.assertEqual(p.returncode, 0, err)
                peaks[(what, mb)] = int(err.strip().splitlines()[-1].split()[1])
            os.unlink(self.path("r.db"))
            os.unlink(self.path(name))
        for what in ("backup", "restore"):
            self.assertLessEqual(peaks[(what, 160)], 64 * 1024, peaks)
            self.assertLessEqual(peaks[(what, 160)] - peaks[(what, 16)], 8 * 1024, peaks)

    def test_compression_level(self):
        self.sqlite("CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT)")
        self.sqlite("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE "
                    "x < 20000) INSERT INTO t (s) SELECT 'customer ' || (x % 977) || ' ordered "
                    "item ' || (x * 7919 % 10007) || ' at address ' || (x % 313) || ' street' FROM c")
        sizes = {}
        for level in ("-5", "-1", "9"):
            r = self.ok("-d", self.sqlite_url(), "-b", "backups", "backup", "--name",
                        "l" + level, "--compression-level", level, "--json")
            sizes[level] = r.json()["bytes"]
            self.ok("verify", r.json()["path"])
        # clearly apart: names and timestamps in the header move a size by a few bytes
        self.assertLess(sizes["9"] + 1000, sizes["-1"])
        self.assertLess(sizes["-1"] + 1000, sizes["-5"])
        # the default is -1
        r = self.ok("-d", self.sqlite_url(), "-b", "backups", "backup", "--name", "dflt", "--json")
        self.assertAlmostEqual(r.json()["bytes"], sizes["-1"], delta=100)
        # the config key
        self.write("safe-migrate.ini", "[safe-migrate]\ncompression_level = 9\n")
        r = self.ok("-d", self.sqlite_url(), "-b", "backups", "backup", "--name", "cfg", "--json")
        self.assertAlmostEqual(r.json()["bytes"], sizes["9"], delta=100)
        # the pipeline's own snapshot takes it too
        self.chain(1)
        r = self.ok("-d", self.sqlite_url(), "-b", "backups", "safe-migrate",
                    "--compression-level", "9", "--json")
        self.assertEqual(r.json()["outcome"], "applied")
        self.assertLess(os.path.getsize(self.path(r.json()["snapshot"])) + 1000, sizes["-1"])
        for bad in ("x", "1.5", "23", "-200000"):
            self.code(2, "-d", self.sqlite_url(), "-b", "backups", "backup",
                      "--compression-level", bad)

    # -- PostgreSQL ----------------------------------------------------------------
    def make_pg(self):
        url = self.pg_new_db()
        self.psql(url, "CREATE TABLE t (id serial PRIMARY KEY, s text NOT NULL); "
                       "INSERT INTO t (s) SELECT md5(i::text) FROM generate_series(1, 3000) i; "
                       "CREATE INDEX t_s ON t (s)")
        return url

    def test_pg_restore_from_stdin_in_place(self):
        url = self.make_pg()
        snap, sha = self.stream_backup(url)
        want = self.pg_state(url)
        self.psql(url, "DELETE FROM t WHERE id > 10; CREATE TABLE extra (x int)")
        changed = self.pg_state(url)
        # a wrong checksum rolls the one transaction back
        code, _, err = self.run_bin("-d", url, "-b", "backups", "restore", "-", "--yes",
                                    "--sha256", BAD_SHA, stdin=snap)
        self.assertEqual(code, 7, err)
        self.assertIn("nothing was changed", err)
        self.assertEqual(self.pg_state(url), changed)
        # a stream is read once: no parallel load from it
        code, _, err = self.run_bin("-d", url, "-b", "backups", "restore", "-", "--yes",
                                    "--to", self.pg_new_db(), "--jobs", "2", stdin=snap)
        self.assertEqual(code, 2, err)
        code, _, err = self.run_bin("-d", url, "-b", "backups", "restore", "-", "--yes",
                                    "--sha256-file", "snap.sha256", stdin=snap)
        self.assertEqual(code, 0, err)
        self.assertEqual(self.pg_state(url), want)

    def test_pg_restore_from_stdin_to_other(self):
        url = self.make_pg()
        snap, sha = self.stream_backup(url)
        want = self.pg_state(url)
        other = self.pg_new_db()
        code, _, err = self.run_bin("-b", "backups", "restore", "-", "--to", other, "--yes",
                                    "--sha256", BAD_SHA, stdin=snap)
        self.assertEqual(code, 7, err)
        self.assertEqual(self.psql(other, "SELECT count(*) FROM pg_tables WHERE "
                                          "schemaname = 'public'"), "0")
        code, _, err = self.run_bin("-b", "backups", "restore", "-", "--to", other, "--yes",
                                    "--sha256", sha, stdin=snap)
        self.assertEqual(code, 0, err)
        self.assertEqual(self.pg_state(other)[1], want[1])
        code, _, err = self.run_bin("verify", "-", "--sha256", sha, stdin=snap)
        self.assertEqual(code, 0, err)


if __name__ == "__main__":
    smtest.main()
