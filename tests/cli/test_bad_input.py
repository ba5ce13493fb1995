"""Bad input for every command: malformed arguments, bad targets and URLs,
missing or unreadable files, binary and invalid-UTF-8 migrations, a 1 MB
line, bad --keep values, empty and random files as snapshots, unknown
options and missing option values.

Table-driven: each case is (label, arguments, allowed exit codes, pattern the
message on stderr must match).  Every case must end with an exit code from
the contract and a message on stderr: never a signal, never a sanitizer
report.  Cases marked "db untouched" also check that the database file was
not written (same bytes, no journal left).
"""
import hashlib
import io
import json
import os
import subprocess
import tarfile
import time

from smtest import BIN, CliTest, Result, compress_to, main, packed_snapshot

SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
                     "runtime error:")
USAGE = (2,)
FAIL = (1, 2)


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class BadInput(CliTest):
    def setUp(self):
        super().setUp()
        self.write("safe-migrate.ini",
                   "[safe-migrate]\ndatabase_url = sqlite:///app.db\nbackup_dir = backups\n")
        self.sqlite("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        self.sqlite("INSERT INTO users (name) VALUES ('ada'), ('alan')")
        self.write("migrations/0001_base.sql",
                   "-- migrate:up\nCREATE TABLE base (x INT);\n-- migrate:down\nDROP TABLE base;\n")
        self.ok("upgrade")
        self.snap = self.ok("backup", "--name", "good").out.strip()
        self.write("empty.tar.zst", "")
        self.write("random.tar.zst", os.urandom(4096), mode="wb")
        self.write("random.tar.zst.sha256", "%s  random.tar.zst\n" % sha(self.path("random.tar.zst")))
        self.write("binary.bin", os.urandom(2048) + b"\0\xff\xfe", mode="wb")
        os.mkdir(self.path("adir"))

    def check(self, label, args, allowed, pattern=None, db_untouched=False, **kw):
        before = (sha(self.path("app.db")), self.sqlite_dump()) if db_untouched else None
        proc = subprocess.run([BIN] + list(args), cwd=self.dir, env=self.env, timeout=60,
                              capture_output=True, stdin=subprocess.DEVNULL, **kw)
        raw_err = proc.stderr
        proc.stdout = proc.stdout.decode("utf-8", "replace")
        proc.stderr = proc.stderr.decode("utf-8", "replace")
        r = Result(proc)
        with self.subTest(label=label):
            try:
                raw_err.decode("utf-8")
            except UnicodeDecodeError:
                self.fail("%s: stderr is not valid UTF-8: %r" % (label, raw_err[:400]))
            for m in SANITIZER_MARKERS:
                self.assertNotIn(m, r.err, "%s: %r" % (label, r))
            self.assertGreaterEqual(r.code, 0, "%s: killed by a signal: %r" % (label, r))
            self.assertIn(r.code, allowed, "%s: %r" % (label, r))
            if r.code != 0:
                self.assertTrue(r.err.strip(), "%s: no message: %r" % (label, r))
                self.assertLess(len(r.err) + len(r.out), 16384, "%s: output too long" % label)
            if pattern:
                self.assertRegex(r.err, pattern, "%s: %r" % (label, r))
            if db_untouched:
                self.assertEqual((sha(self.path("app.db")), self.sqlite_dump()), before,
                                 "%s wrote to the database" % label)
                self.assertFalse(os.path.exists(self.path("app.db-journal")), label)
        return r

    def test_arguments(self):
        snap = self.snap
        cases = [
            # unknown commands, options and missing values
            ("no command", [], USAGE, "usage"),
            ("unknown command", ["frobnicate"], USAGE, "frobnicate"),
            ("unknown long option", ["--frobnicate", "current"], USAGE, "frobnicate"),
            ("unknown option after command", ["current", "--frobnicate"], USAGE, "frobnicate"),
            ("unknown short option", ["-Z", "current"], USAGE, None),
            ("option of another command", ["current", "--keep", "3"], USAGE, "keep"),
            ("missing -d value", ["current", "-d"], USAGE, None),
            ("missing -m value", ["current", "-m"], USAGE, None),
            ("missing -b value", ["backup", "-b"], USAGE, None),
            ("missing -c value", ["-c"], USAGE, None),
            ("missing --name value", ["backup", "--name"], USAGE, None),
            ("missing --to value", ["restore", snap, "--yes", "--to"], USAGE, None),
            ("missing --keep value", ["prune", "--keep"], USAGE, None),
            ("missing --output value", ["schema", "--output"], USAGE, None),
            ("missing --start value", ["sql", "--start"], USAGE, None),
            ("missing --lock-timeout value", ["upgrade", "--lock-timeout"], USAGE, None),
            ("bad --lock-timeout", ["--lock-timeout", "soon", "current"], USAGE, "soon"),
            ("negative --statement-timeout", ["--statement-timeout", "-5", "upgrade"], USAGE, None),
            ("bad --jobs", ["restore", snap, "--yes", "-j", "many"], USAGE, "many"),
            ("help for unknown command", ["help", "frobnicate"], USAGE, "frobnicate"),
            # targets
            ("upgrade +x", ["upgrade", "+x"], USAGE, r"\+x"),
            ("upgrade -0", ["upgrade", "-0"], USAGE, "-0"),
            ("upgrade +0", ["upgrade", "+0"], FAIL, None),
            ("upgrade unknown version", ["upgrade", "9999"], FAIL, "9999"),
            ("upgrade two targets", ["upgrade", "head", "0001"], USAGE, None),
            ("upgrade empty target", ["upgrade", ""], FAIL, None),
            ("downgrade without target", ["downgrade"], USAGE, None),
            ("downgrade +1", ["downgrade", "+1"], FAIL, None),
            ("downgrade -0", ["downgrade", "-0"], FAIL, None),
            ("downgrade -x", ["downgrade", "-x"], FAIL, None),
            ("downgrade -99", ["downgrade", "-99"], FAIL, None),
            ("downgrade unknown version", ["downgrade", "7.7.7"], FAIL, "7.7.7"),
            ("stamp unknown version", ["stamp", "9999"], FAIL, "9999"),
            ("stamp without target", ["stamp"], USAGE, None),
            ("sql bad --start", ["sql", "--start", "nope"], FAIL, "nope"),
            ("sql bad --end", ["sql", "--end", "+x"], FAIL, None),
            ("safe-migrate +x", ["safe-migrate", "+x"], USAGE + (4,), None),
            ("safe-migrate -0", ["safe-migrate", "-0"], USAGE + (4,), None),
            ("safe-migrate unknown version", ["safe-migrate", "9999"], USAGE + (1, 4), None),
            ("create without message", ["create"], USAGE, None),
            ("current with an argument", ["current", "x"], USAGE, None),
            ("run without command", ["run"], USAGE, None),
            ("run missing program", ["run", "--no-backup", "--", "/nonexistent/tool"], FAIL + (5,),
             "nonexistent"),
            # URLs
            ("unsupported scheme", ["-d", "mysql://u@h/db", "current"], FAIL, "mysql"),
            ("not a URL", ["-d", "just some words", "current"], FAIL, None),
            ("empty URL", ["-d", "", "current"], FAIL, None),
            ("sqlite URL without path", ["-d", "sqlite://", "current"], FAIL, None),
            ("sqlite URL with host", ["-d", "sqlite://host/x.db", "current"], FAIL, None),
            ("postgres URL bad port", ["-d", "postgresql://u@localhost:notaport/db", "current"],
             FAIL, None),
            ("postgres URL bad bracket", ["-d", "postgresql://[::1/db", "current"], FAIL, None),
            ("postgres URL bad percent", ["-d", "postgresql://u:%zz@h/db", "current"], FAIL, None),
            ("sqlite missing dir", ["-d", "sqlite:////nonexistent/dir/x.db", "current"], FAIL,
             None),
            ("sqlite database is a dir", ["-d", "sqlite:///adir", "current"], FAIL, None),
            ("sqlite database is garbage", ["-d", "sqlite:///binary.bin", "current"], FAIL, None),
            ("restore --to bad scheme", ["restore", snap, "--yes", "--to", "ftp://x/y"], FAIL,
             "ftp"),
            ("roundtrip --url bad", ["roundtrip", "--url", "nope://"], FAIL, None),
            # missing or unusable files and directories
            ("missing config", ["-c", "nope.ini", "current"], FAIL, "nope.ini"),
            ("config is a dir", ["-c", "adir", "current"], FAIL, None),
            ("config is binary", ["-c", "binary.bin", "current"], FAIL, None),
            ("missing migrations dir", ["-m", "nope", "current"], FAIL, "nope"),
            ("migrations dir is a file", ["-m", "binary.bin", "current"], FAIL, None),
            ("backup dir is a file", ["-b", "binary.bin", "backup"], FAIL, None),
            ("list-backups dir is a file", ["-b", "binary.bin", "list-backups"], FAIL + (0,), None),
            ("schema --output into missing dir", ["schema", "--output", "/nonexistent/x.txt"],
             FAIL, "nonexistent"),
            ("create --from-schema missing", ["create", "x", "--from-schema", "nope.sql"], FAIL,
             "nope.sql"),
            ("create --from-schema binary", ["create", "x", "--from-schema", "binary.bin"],
             FAIL + (4, 7), None),
            ("validate --expected missing", ["validate", "--expected", "nope.txt"], FAIL + (7,),
             "nope.txt"),
            ("lint missing file", ["lint", "nope.sql"], FAIL, "nope.sql"),
            ("lint a dir", ["lint", "adir"], FAIL, None),
            ("lint binary file", ["lint", "binary.bin"], FAIL + (4,), None),
            # snapshots
            ("verify without argument", ["verify"], USAGE, None),
            ("verify missing", ["verify", "nope.tar.zst"], FAIL, "nope"),
            ("verify a dir", ["verify", "adir"], FAIL + (7,), None),
            ("verify empty", ["verify", "empty.tar.zst"], (7,), None),
            ("verify random", ["verify", "random.tar.zst"], (7,), None),
            ("restore missing", ["restore", "nope.tar.zst", "--yes"], FAIL, "nope"),
            ("restore empty", ["restore", "empty.tar.zst", "--yes"], (1, 7), None),
            ("restore random", ["restore", "random.tar.zst", "--yes"], (1, 7), None),
            ("restore a dir", ["restore", "adir", "--yes"], FAIL + (7,), None),
            ("restore two snapshots", ["restore", snap, snap, "--yes"], USAGE, None),
            ("backup bad name", ["backup", "--name", "../evil"], USAGE, None),
            ("backup hidden name", ["backup", "--name", ".hidden"], USAGE, None),
            ("backup existing name", ["backup", "--name", "good"], USAGE, "exists"),
            # prune
            ("prune without --keep", ["prune"], USAGE, "keep"),
            ("prune --keep -1", ["prune", "--keep", "-1"], USAGE, "-1"),
            ("prune --keep abc", ["prune", "--keep", "abc"], USAGE, "abc"),
            ("prune --keep empty", ["prune", "--keep", ""], USAGE, None),
            ("prune --keep 1.5", ["prune", "--keep", "1.5"], USAGE, None),
            ("prune --keep huge", ["prune", "--keep", "99999999999999999999999"], USAGE, None),
        ]
        for label, args, allowed, pattern in cases:
            self.check(label, args, allowed, pattern)
        # none of that changed the database or removed the good snapshot
        self.assertEqual(self.sqlite("SELECT count(*) FROM users"), [(2,)])
        self.ok("verify", snap)

    def invalid_set_cases(self, files):
        """Writes files into migrations/ (after a valid pending 0002), runs
        every command that would write, and checks nothing was written."""
        self.write("migrations/0002_ok.sql",
                   "-- migrate:up\nCREATE TABLE ok (x INT);\n-- migrate:down\nDROP TABLE ok;\n")
        for name, data in files.items():
            self.write("migrations/" + name, data, mode="wb" if isinstance(data, bytes) else "w")
        for args in (["upgrade"], ["safe-migrate"], ["safe-migrate", "--no-backup"],
                     ["stamp", "head"], ["downgrade", "base"], ["roundtrip"], ["lint"],
                     ["sql"], ["current"], ["check"], ["history"], ["safety-check"]):
            self.check("%s with %s" % (" ".join(args), ", ".join(files)), args,
                       FAIL + (4, 7), None, db_untouched=True)

    def test_binary_migration(self):
        self.invalid_set_cases({"0003_bin.sql": b"CREATE TABLE t (x INT);\n\0\x01\x02" +
                                os.urandom(512)})

    def test_invalid_utf8_migration(self):
        self.invalid_set_cases({"0003_latin1.sql": "-- migrate:up\nINSERT INTO users (name) "
                                "VALUES ('caf\xe9');\n".encode("latin-1")})

    def test_duplicate_version(self):
        self.invalid_set_cases({"0003_a.sql": "CREATE TABLE a (x INT);\n",
                                "0003_b.sql": "CREATE TABLE b (x INT);\n"})

    def test_unreadable_migration(self):
        # root reads any file: a dangling symlink and a directory stand in
        os.symlink(self.path("nowhere.sql"), self.path("migrations", "0003_gone.sql"))
        self.invalid_set_cases({})

    def test_fifo_migration_does_not_hang(self):
        os.mkfifo(self.path("migrations", "0003_fifo.sql"))
        self.check("upgrade with a FIFO", ["upgrade"], FAIL, "not a regular file",
                   db_untouched=True)

    def test_one_megabyte_line(self):
        # a valid 1 MB single-line migration applies
        self.write("migrations/0002_long.sql", "CREATE TABLE long (x TEXT); INSERT INTO long VALUES ('" +
                   "a" * (1 << 20) + "');")
        self.ok("upgrade")
        self.assertEqual(self.sqlite("SELECT length(x) FROM long"), [(1 << 20,)])
        # 1 MB of garbage on one line fails with a short message, nothing written
        self.write("migrations/0003_junk.sql", "x" * (1 << 20))
        for args in (["upgrade"], ["safe-migrate"], ["lint"]):
            self.check("%s with a 1 MB junk line" % args[0], args, FAIL + (4, 5), None,
                       db_untouched=args[0] != "safe-migrate")
        self.assertEqual(self.sqlite("SELECT count(*) FROM safe_migrate_versions WHERE "
                                     "version = '0003'"), [(0,)])


class CraftedSnapshots(CliTest):
    """Layouts that verify accepted and restore refused (or that both
    accepted): verify and restore now run one validation
    (src/snapshot/snapshot_read.c, check_layout), so both refuse them all."""
    PAGE = 4096

    def setUp(self):
        super().setUp()
        con = __import__("sqlite3").connect(self.path("app.db"))
        con.execute("CREATE TABLE t (x)")
        con.executemany("INSERT INTO t VALUES (?)", [(os.urandom(500),) for _ in range(100)])
        con.commit()
        con.close()
        with open(self.path("app.db"), "rb") as f:
            self.db = f.read()
        self.base = {"tool": "safe-migrate", "tool_version": "0.1.0", "engine": "sqlite",
                     "created_at": "2026-01-01T00:00:00.000Z", "server_version": "SQLite",
                     "source": "sqlite:///app.db", "revision": None, "format_version": 2}

    def packed(self, name, header, entries):
        return packed_snapshot(self.path(name), header, entries)

    def test_verify_and_restore_refuse_the_same_layouts(self):
        db, page = self.db, self.PAGE
        deferred = dict(self.base, deferred={"data/main.db.0000": page})
        tail = [("data/main.db.0001", db[page:])]
        cases = {
            "missing deferred entry": (deferred, tail),
            "wrong-size deferred entry": (deferred, tail + [("data/main.db.0000", db[:100])]),
            "numbering gap": (deferred, [("data/main.db.0002", db[page:]),
                                         ("data/main.db.0000", db[:page])]),
            "no deferred header": (self.base, tail + [("data/main.db.0000", db[:page])]),
            "bad deferred name": (dict(self.base, deferred={"data/main.db": page}),
                                  tail + [("data/main.db", db[:page])]),
            "200 KB entry name": (self.base, [("data/main.db.0000", db),
                                              ("x" * 200000, b"")]),
            "chunk over 16 MiB": (dict(self.base, format_version=1),
                                  [("data/main.db.0000", db + b"\0" * (17 << 20))]),
            "format_version 1.5": (dict(self.base, format_version=1.5),
                                   [("data/main.db.0000", db)]),
        }
        for i, (label, (header, entries)) in enumerate(cases.items()):
            with self.subTest(label):
                p = self.packed("crafted%d.tar.zst" % i, header, entries)
                r = self.run_sm("verify", p)
                self.assertEqual(r.code, 7, "verify accepted %s: %r" % (label, r))
                target = self.path("r%d.db" % i)
                r = self.run_sm("restore", p, "--to", "sqlite:///" + target, "--yes")
                self.assertEqual(r.code, 7, "restore: %s: %r" % (label, r))
                self.assertFalse(os.path.exists(target) and os.path.getsize(target) > 0)
        # the good layout still passes both
        good = self.packed("good.tar.zst", deferred, tail + [("data/main.db.0000", db[:page])])
        self.ok("verify", good)
        r = self.run_sm("restore", good, "--to", self.sqlite_url("good.db"), "--yes")
        self.assertEqual(r.code, 0, r)

    def test_backup_name_with_a_newline_is_refused(self):
        for name in ("two\nlines", "tab\there", "sp ace", "quote'"):
            with self.subTest(name=name):
                r = self.run_sm("-d", self.sqlite_url(), "-b", "backups", "backup", "--name",
                                name)
                self.assertEqual(r.code, 2, r)
                self.assertIn("letters, digits", r.err)
        self.assertFalse(os.path.isdir(self.path("backups")) and
                         [f for f in os.listdir(self.path("backups"))
                          if not f.startswith(".")])


class SmallDefects(CliTest):
    """Issue 15, section 9."""

    def setUp(self):
        super().setUp()
        self.sqlite("CREATE TABLE t (x)")

    def test_config_that_is_a_device_or_fifo_is_refused(self):
        os.mkfifo(self.path("fifo.ini"))
        for cfg in ("/dev/zero", self.path("fifo.ini")):
            with self.subTest(cfg):
                r = self.run_sm("-c", cfg, "current", timeout=30)
                self.assertEqual(r.code, 2, r)
                self.assertIn("not a regular file", r.err)

    def test_duplicate_config_key_names_key_and_lines(self):
        self.write("dup.ini", "[safe-migrate]\ndatabase_url = %s\nbackup_dir = b\n"
                   "sqlalchemy.url = sqlite:///other.db\n" % self.sqlite_url())
        r = self.run_sm("-c", "dup.ini", "current")
        self.assertEqual(r.code, 2, r)
        self.assertIn("line 4: duplicate key 'database_url' (already set on line 2)", r.err)

    def test_history_json_with_an_invalid_utf8_file_name(self):
        os.makedirs(self.path("migrations"), exist_ok=True)
        with open(os.path.join(self.dir.encode(), b"migrations", b"0001_caf\xe9.sql"),
                  "w") as f:
            f.write("-- migrate:up\nCREATE TABLE a (x);\n")
        proc = subprocess.run([BIN, "-d", self.sqlite_url(), "history", "--json"],
                              cwd=self.dir, env=self.env, capture_output=True, timeout=60)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        doc = json.loads(proc.stdout.decode("utf-8"))  # strict: invalid UTF-8 raises
        self.assertEqual(doc["migrations"][0]["description"], "caf\ufffd")

    def test_dev_null_is_not_a_database(self):
        url = "sqlite:////dev/null"
        r = self.run_sm("-d", url, "-b", "backups", "backup")
        self.assertEqual(r.code, 1, r)
        self.assertIn("not a regular file", r.err)
        r = self.run_sm("-d", url, "-b", "backups", "safety-check", "--json")
        self.assertEqual(r.code, 4, r)
        self.assertFalse([f for f in os.listdir(self.path("backups")) if "tar.zst" in f]
                         if os.path.isdir(self.path("backups")) else [])

    def test_vacuum_in_a_transaction_false_migration_lints_clean(self):
        self.write("migrations/0001_vac.sql", "-- migrate:up transaction:false\nVACUUM;\n")
        r = self.run_sm("-d", self.sqlite_url(), "lint")
        self.assertEqual(r.code, 0, r)
        self.ok("-d", self.sqlite_url(), "upgrade")
        # unmarked, it is run outside a transaction (it can never run in
        # one), as PostgreSQL's VACUUM is: lint is clean, upgrade says so
        self.write("migrations/0002_vac.sql", "-- migrate:up\nVACUUM;\n")
        r = self.run_sm("-d", self.sqlite_url(), "lint")
        self.assertEqual(r.code, 0, r)
        r = self.ok("-d", self.sqlite_url(), "upgrade")
        self.assertIn("runs outside a transaction: VACUUM cannot run in one", r.err)

    def test_lock_file_is_removed_and_still_excludes(self):
        """The SQLite migration lock file is removed by its holder (it was
        never removed), one left by a killed run goes with the next run,
        and a waiter that got the lock of a removed file does not run: it
        locks the file now at the path (open, flock, compare inodes)."""
        import fcntl
        lock = self.path("app.db-safe-migrate.lock")
        self.write("migrations/0001_a.sql", "CREATE TABLE a (id INTEGER);\n")
        self.ok("-d", self.sqlite_url(), "upgrade")
        self.assertFalse(os.path.exists(lock))
        # left by a killed run: nobody holds it
        with open(lock, "w"):
            pass
        self.write("migrations/0002_b.sql", "CREATE TABLE b (id INTEGER);\n")
        self.ok("-d", self.sqlite_url(), "upgrade")
        self.assertFalse(os.path.exists(lock))
        # a holder that lets go of a file another holder replaced
        self.write("migrations/0003_c.sql", "CREATE TABLE c (id INTEGER);\n")
        old = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(old, fcntl.LOCK_EX)
        p = subprocess.Popen([BIN, "-d", self.sqlite_url(), "--lock-timeout", "3s",
                              "upgrade"], cwd=self.dir, env=self.env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        new = -1
        try:
            time.sleep(0.5)  # the waiter has opened the old file by now
            os.unlink(lock)
            new = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            fcntl.flock(new, fcntl.LOCK_EX)
            os.close(old)  # lets go of the old file: it is not the lock any more
            _, err = p.communicate(timeout=120)
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
            if new >= 0:
                os.close(new)
        self.assertNotEqual(p.returncode, 0, err)
        self.assertIn("another migration is running", err)
        self.assertEqual(self.sqlite("SELECT count(*) FROM sqlite_master WHERE name = 'c'"),
                         [(0,)])
        self.ok("-d", self.sqlite_url(), "upgrade")
        self.assertFalse(os.path.exists(lock))

    def test_stray_probe_of_a_killed_safety_check_is_removed(self):
        from faultlib import SHIM
        os.mkdir(self.path("backups"), 0o700)
        env = {"LD_PRELOAD": os.path.abspath(SHIM), "SM_FAULT_KILL": "fsync:1",
               "ASAN_OPTIONS": self.env.get("ASAN_OPTIONS", "detect_leaks=1") +
                               ":verify_asan_link_order=0"}
        r = self.run_sm("-d", self.sqlite_url(), "-b", "backups", "safety-check", env=env)
        self.assertEqual(r.code, -9, r)
        left = [f for f in os.listdir(self.path("backups")) if "probe" in f]
        self.assertEqual(len(left), 1, left)
        self.run_sm("-d", self.sqlite_url(), "-b", "backups", "safety-check")
        self.assertEqual([f for f in os.listdir(self.path("backups")) if "probe" in f], [])


class LinearCosts(CliTest):
    """Inputs whose handling was quadratic: numbering every statement of a
    script rescanned it from the start (lint of 4 MB of INSERTs took 39 s),
    and verify compared every entry with every other (223 s for 100k
    entries).  Asserted by behaviour: the right answer within a generous
    timeout that the quadratic code overran many times over."""

    def test_lint_of_a_big_seed_file_numbers_lines(self):
        self.sqlite("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        n = 40000
        os.makedirs(self.path("migrations"), exist_ok=True)
        with open(self.path("migrations", "0001_seed.sql"), "w") as f:
            f.write("-- migrate:up\n")
            for i in range(n):
                f.write("INSERT INTO t(v) VALUES ('row %d, padded to a realistic length');\n"
                        % i)
            f.write("DELETE FROM t;\n-- migrate:down\n")
        r = self.run_sm("-d", self.sqlite_url(), "lint", timeout=120)
        self.assertEqual(r.code, 0, r)
        self.assertIn("0001_seed.sql:%d:" % (n + 2), r.out + r.err)

    def test_lint_of_a_huge_file_stops_on_sigint(self):
        """SIGINT during the lint of a 40 MB INSERT file stops it between
        statements with exit 130 (it was ignored, or killed the process,
        while the lint ran on)."""
        row = "INSERT INTO t (v) VALUES ('%s');\n" % ("x" * 60)
        with open(self.path("big.sql"), "w") as f:
            f.write("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);\n")
            f.write(row * (40 * 1024 * 1024 // len(row)))
        start = time.monotonic()
        code, err, caught = self.interrupt(["lint", "big.sql"],
                                           lambda: time.monotonic() - start > 1.0)
        self.assertTrue(caught, "the lint ended before the signal: " + err)
        self.assertEqual(code, 130, err)
        self.assertIn("interrupted", err)

    def test_verify_of_100k_entries(self):
        n = 100000
        raw = io.BytesIO()
        listed = []
        header = {"format_version": 2, "tool": "safe-migrate", "tool_version": "0.1.0",
                  "engine": "sqlite", "created_at": "2026-01-01T00:00:00.000Z",
                  "server_version": "SQLite", "source": "sqlite:///x.db", "revision": None}
        empty = hashlib.sha256(b"").hexdigest()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as t:
            data = json.dumps(header).encode()
            ti = tarfile.TarInfo("snapshot.json")
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
            listed.append({"name": "snapshot.json", "size": len(data),
                           "sha256": hashlib.sha256(data).hexdigest()})
            for i in range(n):
                ti = tarfile.TarInfo("e/%d" % i)
                t.addfile(ti, io.BytesIO(b""))
                listed.append({"name": ti.name, "size": 0, "sha256": empty})
            data = json.dumps(dict(header, row_counts={}, extra={}, entries=listed)).encode()
            ti = tarfile.TarInfo("manifest.json")
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
        p = compress_to(self.path("many.tar.zst"), raw.getvalue())
        r = self.run_sm("verify", p, "--json", timeout=120)
        self.assertEqual(r.code, 0, r)
        self.assertEqual(r.json()["problems"], [])


class TamperedPgSnapshot(CliTest):
    """A PostgreSQL snapshot whose pre-data.sql was altered, with the
    sidecar recomputed: the altered SQL must never run (it did, and the
    restore failed later with exit 1); the entry's checksum is checked
    before any of its SQL runs, and the restore says the snapshot is
    damaged (exit 7)."""

    def test_altered_pre_data_never_runs(self):
        url = self.pg_new_db()
        self.psql(url, "CREATE TABLE t (id int PRIMARY KEY, v text); "
                       "INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 50) g")
        snap = self.ok("-d", url, "-b", "backups", "backup", "--json").json()["path"]
        snap = os.path.join(self.dir, snap)
        raw = subprocess.run(["zstd", "-q", "-d", "-c", snap], capture_output=True,
                             check=True).stdout
        out = io.BytesIO()
        with tarfile.open(fileobj=io.BytesIO(raw)) as src, \
                tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as dst:
            for m in src.getmembers():
                data = src.extractfile(m).read()
                if m.name == "pg/pre-data.sql":
                    # the canary: a sequence's nextval survives a rollback
                    data += b"\nSELECT pg_catalog.nextval('canary.s');\n"
                    m.size = len(data)
                dst.addfile(m, io.BytesIO(data))
        compress_to(snap, out.getvalue())
        self.psql(url, "CREATE SCHEMA canary; CREATE SEQUENCE canary.s")
        r = self.run_sm("-d", url, "-b", "backups", "restore", snap, "--yes",
                        "--no-safety-backup")
        self.assertEqual(r.code, 7, r)
        self.assertIn("pre-data.sql", r.err)
        self.assertEqual(self.psql(url, "SELECT is_called FROM canary.s"), "f",
                         "the altered pre-data SQL ran")
        r = self.run_sm("verify", snap)
        self.assertEqual(r.code, 7, r)


if __name__ == "__main__":
    main()
