"""CLI tests of the snapshot commands against real SQLite files: backup,
verify, restore (in place and --to), list-backups, prune and drop-tables,
including damaged and hostile snapshots and a concurrent writer."""
import glob
import hashlib
import io
import json
import os
import sqlite3
import stat
import subprocess
import sys
import tarfile
import time

from smtest import CliTest, compress_to, main, packed_snapshot, snapshot_manifest

WRITER = r"""
import os, sqlite3, sys, time
db, stop = sys.argv[1], sys.argv[2]
con = sqlite3.connect(db, timeout=60, isolation_level=None)
i = 0
while not os.path.exists(stop):
    con.execute("INSERT INTO w(v) VALUES (?)", (i,))
    i += 1
    time.sleep(0.003)
print(i)
"""


def fs_glob(directory, pattern):
    """A function returning the paths in directory that match pattern."""
    return lambda: glob.glob(os.path.join(directory, pattern))


def file_sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class SnapshotSqlite(CliTest):
    def setUp(self):
        super().setUp()
        self.url = self.sqlite_url()
        self.write("safe-migrate.ini", "[safe-migrate]\ndatabase_url = sqlite:///app.db\n"
                   "backup_dir = backups\n")
        self.fill("app.db")

    def fill(self, name, wal=False):
        con = sqlite3.connect(self.path(name))
        if wal:
            con.execute("PRAGMA journal_mode=WAL")
        con.executescript("""
            CREATE TABLE kinds (id INTEGER PRIMARY KEY, t TEXT, b BLOB, r REAL, n);
            CREATE INDEX kinds_t ON kinds(t);
            CREATE VIEW kinds_v AS SELECT id, t FROM kinds WHERE t IS NOT NULL;
            CREATE TABLE parent (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE);
            CREATE TABLE child (id INTEGER PRIMARY KEY,
                                pid INTEGER REFERENCES parent(id) ON DELETE CASCADE);
            CREATE TRIGGER child_ins AFTER INSERT ON child BEGIN
                UPDATE parent SET name = name WHERE id = NEW.pid; END;
            CREATE TABLE w (id INTEGER PRIMARY KEY, v INTEGER);
        """)
        rows = [
            (1, "plain", b"\x00\x01\x02\xff", 1.5, 7),
            (2, None, None, None, None),
            (3, "", b"", 0.0, ""),
            (4, "unicode: \u00e9\u00e8 \u4e2d\u6587 \U0001F600 \u0000x", b"\x00" * 10, -1e300,
             "mixed"),
            (5, "x" * 100000, os.urandom(3 * 1024 * 1024), 3.25, b"\x01blob"),
        ]
        con.executemany("INSERT INTO kinds VALUES (?,?,?,?,?)", rows)
        con.executemany("INSERT INTO parent(name) VALUES (?)", [("p%d" % i,) for i in range(50)])
        con.executemany("INSERT INTO child(pid) VALUES (?)", [(i % 50 + 1,) for i in range(200)])
        con.commit()
        con.close()

    def backup(self, *args):
        """Takes a snapshot; returns the JSON with path made absolute."""
        j = self.ok("backup", "--json", *args).json()
        j["path"] = os.path.join(self.dir, j["path"])
        return j

    # ------------------------------------------------------------------------
    def test_restore_waits_for_a_reader_at_most_the_lock_timeout(self):
        # a reader's open transaction keeps a rollback-journal database from
        # being written: the restore gives up after --lock-timeout (it
        # waited 60 s, each step 10 s more), with the database unchanged
        snap = self.backup()["path"]
        self.sqlite("INSERT INTO w VALUES (1, 1)")
        before = self.sqlite_dump()
        reader = sqlite3.connect(self.path("app.db"), isolation_level=None)
        try:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM kinds").fetchall()
            r = self.run_sm("--lock-timeout", "1500ms", "restore", snap, "--yes",
                            "--no-safety-backup", timeout=40)
        finally:
            reader.close()
        self.assertEqual(r.code, 1, r)
        self.assertIn("other connections kept it locked for 1.5 s (--lock-timeout)", r.err)
        self.assertEqual(self.sqlite_dump(), before)
        self.ok("restore", snap, "--yes", "--no-safety-backup")
        self.assertEqual(self.sqlite("SELECT count(*) FROM w"), [(0,)])

    def test_round_trip_in_place(self):
        before = self.sqlite_dump()
        b = self.backup()
        full = b["path"]
        self.assertTrue(os.path.exists(full))
        self.assertTrue(full.endswith(".tar.zst"))
        self.assertRegex(os.path.basename(full), r"^backup_\d{8}_\d{6}\.tar\.zst$")
        self.assertEqual(b["bytes"], os.path.getsize(full))
        self.assertEqual(b["sha256"], file_sha(full))
        self.assertEqual(stat.S_IMODE(os.stat(full).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(full + ".sha256").st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(self.path("backups")).st_mode), 0o700)
        # sha256sum -c works from the backup directory
        subprocess.run(["sha256sum", "-c", os.path.basename(full) + ".sha256"],
                       cwd=os.path.dirname(full), check=True, capture_output=True)
        # tar --zstd lists it
        listing = subprocess.run(["tar", "--zstd", "-tf", full], capture_output=True,
                                 text=True, check=True).stdout.split()
        self.assertEqual(listing[0], "snapshot.json")
        self.assertEqual(listing[-1], "manifest.json")
        self.assertIn("data/main.db.0000", listing)
        manifest = snapshot_manifest(full)
        self.assertEqual(manifest["format_version"], 3)
        # the first page is stored last, as the header declares
        self.assertEqual(listing[-2], "data/main.db.0000")
        header = json.loads(subprocess.run(["tar", "--zstd", "-xOf", full, "snapshot.json"],
                                           capture_output=True, check=True).stdout)
        self.assertEqual(header["deferred"], {"data/main.db.0000": 4096})
        self.assertEqual(manifest["engine"], "sqlite")
        self.assertEqual(manifest["row_counts"]["kinds"], 5)
        self.assertEqual(manifest["row_counts"]["child"], 200)
        self.assertTrue(all(len(e["sha256"]) == 64 for e in manifest["entries"]))
        # no leftover scratch files
        self.assertEqual([f for f in os.listdir(self.path("backups")) if f.startswith(".")], [])

        self.sqlite("DELETE FROM kinds WHERE id = 5")
        self.sqlite("DROP VIEW kinds_v")
        self.sqlite("CREATE TABLE extra (x)")
        self.assertNotEqual(self.sqlite_dump(), before)
        r = self.ok("restore", full, "--yes", "--json")
        self.assertEqual(self.sqlite_dump(), before)
        safety = r.json()["safety_snapshot"]
        self.assertTrue(os.path.exists(self.path(safety)))
        self.ok("verify", safety)
        self.assertEqual(self.sqlite("PRAGMA integrity_check"), [("ok",)])

    def test_wal_and_rollback_with_concurrent_writer(self):
        for mode in ("wal", "delete"):
            with self.subTest(mode=mode):
                name = "%s.db" % mode
                self.fill(name, wal=(mode == "wal"))
                stop = self.path("stop-" + mode)
                writer = subprocess.Popen([sys.executable, "-c", WRITER, self.path(name), stop],
                                          stdout=subprocess.PIPE, text=True)
                try:
                    deadline = time.time() + 30
                    while self.sqlite("SELECT count(*) FROM w", name)[0][0] < 20:
                        self.assertLess(time.time(), deadline, "writer made no progress")
                        time.sleep(0.01)
                    r = self.ok("-d", self.sqlite_url(name), "backup", "--json")
                    snap = r.json()["path"]
                    # the writer keeps going after the backup finished
                    seen = self.sqlite("SELECT count(*) FROM w", name)[0][0]
                    deadline = time.time() + 30
                    while self.sqlite("SELECT count(*) FROM w", name)[0][0] < seen + 5:
                        self.assertLess(time.time(), deadline, "writer stalled")
                        time.sleep(0.01)
                finally:
                    open(stop, "w").close()
                    out, _ = writer.communicate(timeout=60)
                self.assertEqual(writer.returncode, 0)
                self.assertGreater(int(out), 25)
                target = "restored-%s.db" % mode
                self.ok("restore", snap, "--to", self.sqlite_url(target), "--yes")
                self.assertEqual(glob.glob(self.path(target + ".safe-migrate-restore.*")), [])
                con = sqlite3.connect(self.path(target))
                self.assertEqual(con.execute("PRAGMA integrity_check").fetchall(), [("ok",)])
                # the copy is a consistent prefix of the writer's rows
                vals = [v for (v,) in con.execute("SELECT v FROM w ORDER BY id")]
                con.close()
                self.assertGreaterEqual(len(vals), 20)
                self.assertEqual(vals, list(range(len(vals))))
                # every other table is exactly the source's
                dump = lambda n: "\n".join(l for l in subprocess.run(
                    ["sqlite3", self.path(n), ".dump"], capture_output=True, text=True,
                    check=True).stdout.splitlines() if '"w"' not in l and " w " not in l
                    and "INTO w " not in l)
                self.assertEqual(dump(target), dump(name))

    def test_restore_to_new_database(self):
        before = self.sqlite_dump()
        snap = self.backup("--name", "drill")["path"]
        self.assertTrue(snap.endswith("drill.tar.zst"))
        self.code(2, "backup", "--name", "drill")  # names are not reused
        r = self.ok("restore", "drill.tar.zst", "--to", self.sqlite_url("drill.db"), "--yes",
                    "--json")
        self.assertIsNone(r.json()["safety_snapshot"])  # a new database has nothing to save
        self.assertEqual(self.sqlite_dump("drill.db"), before)
        self.assertEqual(self.sqlite_dump(), before)  # the source is untouched
        # --to works without any configured database
        os.remove(self.path("safe-migrate.ini"))
        self.ok("-b", "backups", "restore", snap, "--to", self.sqlite_url("drill2.db"), "--yes")
        self.assertEqual(self.sqlite_dump("drill2.db"), before)

    def corrupt_an_index(self):
        """Makes app.db fail PRAGMA quick_check (a leaf of an index gets an
        invalid b-tree page type, the rest of its header left as it was: a
        table page would make the check itself fail, which restore reports
        as "not readable"); returns the path of a good copy made before."""
        self.sqlite("CREATE TABLE wide (a INTEGER, b BLOB)")
        self.sqlite("CREATE INDEX wide_b ON wide(b)")
        # a few MB, so the check runs over many read-ahead blocks
        self.sqlite("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                    "WHERE x < 6000) INSERT INTO wide SELECT x, randomblob(500) FROM c")
        good = self.path("good.db")
        with open(self.path("app.db"), "rb") as src, open(good, "wb") as dst:
            dst.write(src.read())
        pageno = self.sqlite("SELECT max(pageno) FROM dbstat WHERE name = 'wide_b' "
                             "AND pagetype = 'leaf'")[0][0]
        page = self.sqlite("PRAGMA page_size")[0][0]
        with open(self.path("app.db"), "r+b") as f:
            f.seek((pageno - 1) * page)
            f.write(b"\x07")
        self.assertNotEqual(self.sqlite("PRAGMA quick_check"), [("ok",)])
        return good

    def test_backup_checks_the_pages_it_copies(self):
        """backup runs PRAGMA quick_check beside the copy and records the
        outcome; --no-check leaves it out."""
        j = self.backup("--name", "checked")
        self.assertEqual(j["quick_check"], "ok")
        self.assertEqual(snapshot_manifest(j["path"])["extra"]["quick_check"], "ok")
        j = self.backup("--name", "unchecked", "--no-check")
        self.assertNotIn("quick_check", j)
        self.assertNotIn("quick_check", snapshot_manifest(j["path"])["extra"])
        # both restore to the same database
        for name in ("checked", "unchecked"):
            self.ok("restore", self.path("backups", name + ".tar.zst"), "--to",
                    self.sqlite_url(name + ".db"), "--yes")
            self.assertEqual(self.sqlite_dump(name + ".db"), self.sqlite_dump())
        # a database that fails the check: a warning, and the outcome recorded
        self.corrupt_an_index()
        r = self.ok("backup", "--name", "bad", "--json")
        self.assertIn("fails PRAGMA quick_check", r.err)
        self.assertNotEqual(r.json()["quick_check"], "ok")
        self.assertIn("btreeInitPage", snapshot_manifest(self.path("backups", "bad.tar.zst"))
                      ["extra"]["quick_check"])

    def test_backup_is_checked_while_a_writer_holds_the_lock(self):
        """A writer that keeps its write transaction open does not hold the
        backup up: the check then runs after the copy, in the copy's read
        transaction, and is still recorded (both journal modes)."""
        for wal in (False, True):
            with self.subTest(wal=wal):
                name = "w%d.db" % wal
                self.fill(name, wal=wal)
                writer = sqlite3.connect(self.path(name), isolation_level=None)
                writer.execute("BEGIN IMMEDIATE")
                writer.execute("INSERT INTO w (v) VALUES (1)")
                try:
                    j = self.ok("-d", self.sqlite_url(name), "backup", "--name",
                                "locked%d" % wal, "--json").json()
                finally:
                    writer.execute("ROLLBACK")
                    writer.close()
                self.assertEqual(j["quick_check"], "ok")
                self.ok("restore", os.path.join(self.dir, j["path"]), "--to",
                        self.sqlite_url("r%d.db" % wal), "--yes")
                self.assertEqual(self.sqlite_dump("r%d.db" % wal), self.sqlite_dump(name))

    def test_restore_relies_on_the_backups_check(self):
        """A snapshot whose manifest says its pages passed quick_check is not
        checked again: only such a snapshot of a database that fails the
        check restores; the same pages without it, or with a page count that
        does not match them, are checked and refused."""
        self.corrupt_an_index()
        with open(self.path("app.db"), "rb") as f:
            db = f.read()
        page = 4096
        header = {"tool": "safe-migrate", "tool_version": "0.1.0", "engine": "sqlite",
                  "created_at": "2026-01-01T00:00:00.000Z", "server_version": "SQLite",
                  "source": "sqlite:///app.db", "revision": None, "format_version": 1}
        entries = [("data/main.db.0000", db)]
        sizes = {"page_size": page, "page_count": len(db) // page}
        trusted = self.packed("trusted.tar.zst", header, entries,
                              dict(sizes, quick_check="ok"))
        self.ok("restore", trusted, "--to", self.sqlite_url("trusted.db"), "--yes")
        self.assertEqual(file_sha(self.path("trusted.db")), file_sha(self.path("app.db")))
        # restore --check and verify --restore-to check it anyway
        r = self.code(7, "restore", trusted, "--to", self.sqlite_url("forced.db"), "--yes",
                      "--check")
        self.assertIn("fails PRAGMA quick_check", r.err)
        r = self.code(7, "verify", trusted, "--restore-to", self.sqlite_url("drill.db"))
        self.assertIn("quick_check", r.out + r.err)
        for label, extra in (("unchecked", sizes),
                             # what the backup found is refused by a manual
                             # restore (the pipeline's takes it as it was)
                             ("failed", dict(sizes, quick_check="row 1 missing")),
                             ("miscounted", dict(sizes, quick_check="ok",
                                                 page_count=sizes["page_count"] + 1))):
            with self.subTest(label):
                p = self.packed(label + ".tar.zst", header, entries, extra)
                r = self.code(7, "restore", p, "--to", self.sqlite_url(label + ".db"), "--yes")
                self.assertIn("fails PRAGMA quick_check", r.err)

    def misreport_fragmentation(self, name="app.db"):
        """A harmless defect that PRAGMA quick_check reports: a leaf page of
        table 'child' claims 5 fragmented bytes it does not have."""
        leaf = self.sqlite("SELECT pageno FROM dbstat WHERE name = 'child' AND "
                           "pagetype = 'leaf' LIMIT 1", name)[0][0]
        page = self.sqlite("PRAGMA page_size", name)[0][0]
        with open(self.path(name), "r+b") as f:
            f.seek((leaf - 1) * page + 7)  # the page header's fragmented-bytes count
            f.write(b"\x05")
        problems = self.sqlite("PRAGMA quick_check", name)
        self.assertIn("Fragmentation of 0 bytes reported as 5", problems[0][0])
        return problems

    def test_recorded_problems_are_restored_only_when_accepted(self):
        """The backup warns that a restore gives back the problems it
        found; restore refuses such a snapshot and names
        --accept-recorded-problems, which restores it (in place and --to)
        when the staged copy fails exactly as recorded, and refuses it
        otherwise."""
        problems = self.misreport_fragmentation()
        j = self.backup("--name", "defect")
        self.assertIn("Fragmentation of 0 bytes reported as 5", j["quick_check"])
        snap = j["path"]
        dump = self.sqlite_dump()
        self.sqlite("DELETE FROM kinds")
        changed = self.sqlite_dump()
        r = self.code(7, "restore", snap, "--yes", "--no-safety-backup")
        self.assertIn("--accept-recorded-problems", r.err)
        self.assertEqual(self.sqlite_dump(), changed)
        r = self.code(7, "restore", snap, "--to", self.sqlite_url("new.db"), "--yes")
        self.assertIn("--accept-recorded-problems", r.err)
        self.assertFalse(os.path.exists(self.path("new.db")))
        # accepted: back to the snapshot, its defect included
        self.ok("restore", snap, "--yes", "--no-safety-backup", "--accept-recorded-problems")
        self.assertEqual(self.sqlite_dump(), dump)
        self.assertEqual(self.sqlite("PRAGMA quick_check"), problems)
        self.ok("restore", snap, "--to", self.sqlite_url("new.db"), "--yes",
                "--accept-recorded-problems")
        self.assertEqual(self.sqlite_dump("new.db"), dump)
        self.assertEqual(self.sqlite("PRAGMA quick_check", "new.db"), problems)
        # the same pages recording other problems are not the database the
        # backup saw: refused even so
        with open(self.path("app.db"), "rb") as f:
            db = f.read()
        header = {"tool": "safe-migrate", "tool_version": "0.1.0", "engine": "sqlite",
                  "created_at": "2026-01-01T00:00:00.000Z", "server_version": "SQLite",
                  "source": "sqlite:///app.db", "revision": None, "format_version": 1}
        page = self.sqlite("PRAGMA page_size")[0][0]
        other = self.packed("other.tar.zst", header, [("data/main.db.0000", db)],
                            {"page_size": page, "page_count": len(db) // page,
                             "quick_check": "*** in database main ***\nrow 1 missing"})
        r = self.code(7, "restore", other, "--to", self.sqlite_url("other.db"), "--yes",
                      "--accept-recorded-problems")
        self.assertIn("otherwise than its backup recorded", r.err)
        self.assertFalse(os.path.exists(self.path("other.db")))

    def head(self, name):
        """(page size, journal mode) as the file's header says: bytes 16-17,
        and 18-19 (1: rollback journal, 2: WAL)."""
        with open(self.path(name), "rb") as f:
            b = f.read(20)
        return (b[16] << 8 | b[17], {(1, 1): "delete", (2, 2): "wal"}[(b[18], b[19])])

    def small_db(self, name, page_size, wal, rows):
        for leftover in (name, name + "-wal", name + "-shm"):
            if os.path.exists(self.path(leftover)):
                os.unlink(self.path(leftover))
        con = sqlite3.connect(self.path(name), isolation_level=None)
        con.execute("PRAGMA page_size = %d" % page_size)
        if wal:
            con.execute("PRAGMA journal_mode = WAL")
        con.execute("CREATE TABLE t (x INTEGER PRIMARY KEY, b BLOB)")
        con.executemany("INSERT INTO t (b) VALUES (?)", [(os.urandom(300),)] * rows)
        con.close()

    def test_restore_into_wal_database_of_another_page_size(self):
        """SQLite's backup API cannot change the page size of a database in
        WAL mode (SQLITE_READONLY: "attempt to write a readonly database",
        in place and --to an existing file): the target leaves WAL mode
        first, and ends as the snapshot's database was, page size and
        journal mode; with another connection open on it, it cannot leave
        WAL mode: refused, saying so, nothing changed."""
        self.small_db("src.db", 1024, False, 50)
        snap = self.ok("-d", self.sqlite_url("src.db"), "backup", "--name", "small",
                       "--json").json()["path"]
        dump = self.sqlite_dump("src.db")
        for label, args in (("in-place", ("-d", self.sqlite_url("live.db"), "restore", snap,
                                          "--force", "--no-safety-backup")),
                            ("to", ("restore", snap, "--to", self.sqlite_url("live.db"),
                                    "--yes"))):
            with self.subTest(label):
                self.small_db("live.db", 4096, True, 10)
                self.assertEqual(self.head("live.db"), (4096, "wal"))
                self.ok(*args)
                self.assertEqual(self.sqlite_dump("live.db"), dump)
                self.assertEqual(self.head("live.db"), (1024, "delete"))
                self.assertEqual(self.sqlite("PRAGMA quick_check", "live.db"), [("ok",)])
        # another connection keeps the database open in WAL mode
        self.small_db("live.db", 4096, True, 10)
        live = self.sqlite_dump("live.db")
        app = sqlite3.connect(self.path("live.db"))
        try:
            app.execute("SELECT count(*) FROM t").fetchall()
            r = self.code(1, "-d", self.sqlite_url("live.db"), "restore", snap, "--force",
                          "--no-safety-backup")
        finally:
            app.close()
        self.assertIn("no other connection has", r.err)
        self.assertIn("nothing was changed", r.err)
        self.assertEqual(self.sqlite_dump("live.db"), live)
        self.assertEqual(self.head("live.db"), (4096, "wal"))

    def test_restore_gives_back_the_journal_mode(self):
        """A snapshot of a database in rollback-journal mode restored in
        place into one in WAL mode leaves it in rollback-journal mode (it
        stayed in WAL mode), and the other way round; with another
        connection open the data is restored all the same and a warning
        says the journal mode stays."""
        self.small_db("del.db", 4096, False, 20)
        self.small_db("wal.db", 4096, True, 20)
        snaps = {}
        for name in ("del", "wal"):
            snaps[name] = self.ok("-d", self.sqlite_url(name + ".db"), "backup", "--name", name,
                                  "--json").json()["path"]
        for snap, live_wal, want in (("del", True, "delete"), ("wal", False, "wal")):
            with self.subTest(snap=snap):
                self.small_db("live.db", 4096, live_wal, 5)
                self.ok("-d", self.sqlite_url("live.db"), "restore", snaps[snap], "--force",
                        "--no-safety-backup")
                self.assertEqual(self.head("live.db"), (4096, want))
                self.assertEqual(self.sqlite_dump("live.db"), self.sqlite_dump(snap + ".db"))
        self.small_db("live.db", 4096, True, 5)
        app = sqlite3.connect(self.path("live.db"))
        try:
            app.execute("SELECT count(*) FROM t").fetchall()
            r = self.ok("-d", self.sqlite_url("live.db"), "restore", snaps["del"], "--force",
                        "--no-safety-backup")
        finally:
            app.close()
        self.assertIn("stays in WAL mode", r.err)
        self.assertIn("PRAGMA journal_mode=DELETE", r.err)
        self.assertEqual(self.sqlite_dump("live.db"), self.sqlite_dump("del.db"))

    def test_database_failing_integrity_check_is_not_restored(self):
        """The snapshot is intact (every checksum holds) but the database in
        it is not: a page of an index b-tree is garbage.  The backup's check
        says so; PRAGMA quick_check on the staged copy refuses it (pages are
        lent out of the read-ahead blocks, sqlite_readahead's xFetch), before
        the target is touched."""
        good = self.corrupt_an_index()
        snap = self.backup("--name", "bad")["path"]
        self.ok("verify", snap)  # the archive itself is fine
        r = self.code(7, "restore", snap, "--to", self.sqlite_url("new.db"), "--yes")
        self.assertIn("fails PRAGMA quick_check", r.err)
        self.assertFalse(os.path.exists(self.path("new.db")) and
                         os.path.getsize(self.path("new.db")) > 0)
        # in place: the current (good) database stays byte for byte
        os.replace(good, self.path("app.db"))
        db_sha = file_sha(self.path("app.db"))
        # (os.replace gave app.db a new inode: by identity it is another database)
        r = self.code(7, "restore", snap, "--force", "--no-safety-backup")
        self.assertIn("fails PRAGMA quick_check", r.err)
        self.assertEqual(file_sha(self.path("app.db")), db_sha)
        self.assertEqual(sorted(f for f in os.listdir(self.dir) if "restore" in f), [])

    def test_index_mismatch_of_the_source_is_restored_as_it_was(self):
        """An index that does not hold its table's rows (redefined through
        writable_schema) is a fact of the source: restore checks the staged
        copy with quick_check and gives back that same database, while
        `validate` (the full integrity_check) still reports it."""
        self.sqlite("CREATE TABLE wide (a INTEGER, b BLOB)")
        self.sqlite("CREATE INDEX wide_b ON wide(b)")
        self.sqlite("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                    "WHERE x < 2000) INSERT INTO wide SELECT x, randomblob(100) FROM c")
        con = sqlite3.connect(self.path("app.db"))
        con.execute("PRAGMA writable_schema = ON")
        con.execute("UPDATE sqlite_schema SET sql = 'CREATE INDEX wide_b ON wide(a)' "
                    "WHERE name = 'wide_b'")
        con.commit()
        con.close()
        snap = self.backup("--name", "mismatch")["path"]
        self.ok("restore", snap, "--to", self.sqlite_url("new.db"), "--yes")
        self.assertEqual(self.sqlite_dump("new.db"), self.sqlite_dump())
        self.assertEqual(self.sqlite("PRAGMA quick_check", "new.db"), [("ok",)])
        r = self.code(7, "-d", self.sqlite_url("new.db"), "validate")
        self.assertRegex(r.out, r"FAIL integrity: integrity_check: .*missing from index wide_b")

    def interrupt_while_staging(self, target, *args):
        """Interrupts safe-migrate ARGS while its staging file for target
        exists (frozen there, see CliTest.interrupt): the signal lands while
        the snapshot is loaded or checked, before the commit point.  Returns
        (exit code, stderr), or None when the restore was already past its
        staging file."""
        stage = fs_glob(self.dir, os.path.basename(target) + ".safe-migrate-restore.*")
        code, err, caught = self.interrupt(args, lambda: bool(stage()), freeze=True)
        return (code, err) if caught else None

    def add_big_table(self):
        """About 60 MB of incompressible rows: a backup or a restore takes
        long enough to be caught in the middle."""
        self.sqlite("CREATE TABLE big (id INTEGER PRIMARY KEY, b BLOB)")
        self.sqlite("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                    "WHERE x < 900) INSERT INTO big (b) SELECT randomblob(65536) FROM c")

    def test_interrupt_leaves_the_target_alone(self):
        self.add_big_table()
        snap = self.backup("--name", "big")["path"]
        self.sqlite("DELETE FROM big WHERE id > 100")
        db_sha = file_sha(self.path("app.db"))
        for attempt in range(5):
            new = self.path("new%d.db" % attempt)
            res = self.interrupt_while_staging(new, "restore", snap, "--yes",
                                               "--to", self.sqlite_url(os.path.basename(new)))
            if res is None:
                continue
            code, err = res
            self.assertEqual(code, 130, err)
            self.assertIn("interrupted", err)
            self.assertFalse(os.path.exists(new), err)  # the empty file it made is gone
            res = self.interrupt_while_staging(self.path("app.db"), "restore", snap, "--yes",
                                               "--no-safety-backup")
            if res is None:
                continue
            code, err = res
            self.assertEqual(code, 130, err)
            self.assertEqual(file_sha(self.path("app.db")), db_sha)
            self.assertEqual(sorted(f for f in os.listdir(self.dir) if "restore." in f), [])
            return
        self.skipTest("every restore finished before it could be interrupted")

    def test_interrupted_backup_publishes_nothing(self):
        """SIGINT while the snapshot's temp file is written (caught with
        SIGSTOP, SIGINT, SIGCONT): exit 130, no temp file, no snapshot."""
        self.add_big_table()
        for attempt in range(5):
            bdir = self.path("bk%d" % attempt)
            os.mkdir(bdir, 0o700)
            temp = fs_glob(bdir, ".safe-migrate-tmp.*")
            code, err, caught = self.interrupt(["-b", bdir, "backup"], lambda: bool(temp()),
                                               freeze=True)
            if not caught:
                continue
            self.assertEqual(code, 130, err)
            self.assertIn("interrupted; no snapshot was written", err)
            self.assertEqual(os.listdir(bdir), [])
            return
        self.skipTest("every backup finished before it could be interrupted")

    def damaged_copies(self, snap):
        """Yields (label, path) of damaged copies with the original's checksum."""
        data = open(snap, "rb").read()
        digest = hashlib.sha256(data).hexdigest()
        n = len(data)
        cases = [("flip@%d" % off, data[:off] + bytes([data[off] ^ 0x20]) + data[off + 1:])
                 for off in (0, 3, 600, n // 3, n // 2, n - 30, n - 1)]
        cases += [("cut@%d" % cut, data[:cut]) for cut in (0, 1, 512, n // 2, n - 1)]
        for i, (label, blob) in enumerate(cases):
            name = "damaged%d.tar.zst" % i
            p = self.path(name)
            with open(p, "wb") as f:
                f.write(blob)
            with open(p + ".sha256", "w") as f:
                f.write("%s  %s\n" % (digest, name))
            yield label, p

    def test_damaged_snapshots_are_refused(self):
        snap = self.backup()["path"]
        self.sqlite("INSERT INTO kinds(id, t) VALUES (99, 'after')")
        db_sha = file_sha(self.path("app.db"))
        for label, p in self.damaged_copies(snap):
            with self.subTest(label):
                r = self.code(7, "verify", p, "--json")
                j = r.json()
                self.assertFalse(j["ok"])
                self.assertTrue(j["problems"])
                r = self.code(7, "restore", p, "--yes")
                self.assertIn("damaged", r.err)
                self.assertEqual(file_sha(self.path("app.db")), db_sha)
        # nothing left behind by the refused restores
        self.assertEqual(sorted(f for f in os.listdir(self.dir) if "restore" in f), [])

    def test_wrong_checksum_file(self):
        snap = self.backup()["path"]
        self.ok("verify", snap)
        db_sha = file_sha(self.path("app.db"))
        with open(snap + ".sha256", "w") as f:
            f.write("%s  %s\n" % ("0" * 64, os.path.basename(snap)))
        r = self.code(7, "verify", snap)
        self.assertIn("checksum", r.out + r.err)
        self.code(7, "restore", snap, "--yes")
        self.assertEqual(file_sha(self.path("app.db")), db_sha)
        os.remove(snap + ".sha256")
        self.code(7, "verify", snap)

    def test_checksum_file_is_checked_before_anything_is_staged(self):
        """A snapshot whose .sha256 does not match is refused (exit 7) before
        a byte is written: the fault shim kills the process at its first
        write on a file, so a staging copy (the old order: expand, then
        check) ends in SIGKILL instead of exit 7."""
        shim = os.environ.get("SM_FAULTSHIM") or os.path.join(
            os.path.dirname(os.environ["SAFE_MIGRATE_BIN"]), "..", "..", "tests",
            "libfaultshim.so")
        if not os.path.exists(shim):
            self.fail("the fault shim is not built: %s" % shim)
        snap = self.backup()["path"]
        db_sha = file_sha(self.path("app.db"))
        with open(snap + ".sha256", "w") as f:
            f.write("%s  %s\n" % ("0" * 64, os.path.basename(snap)))
        env = {"LD_PRELOAD": os.path.abspath(shim), "SM_FAULT_KILL": "write:1",
               "ASAN_OPTIONS": self.env.get("ASAN_OPTIONS", "detect_leaks=1") +
                               ":verify_asan_link_order=0"}
        for args in ((), ("--to", "sqlite:///" + self.path("new.db"))):
            with self.subTest(args=args):
                r = self.run_sm("restore", snap, "--yes", *args, env=env)
                self.assertEqual(r.code, 7, r)
                self.assertIn("checksum file", r.err)
                self.assertEqual(file_sha(self.path("app.db")), db_sha)
                self.assertEqual([f for f in os.listdir(self.dir) if "restore" in f], [])

    def test_safety_check_counts_the_room_a_restore_needs(self):
        """The database (about 3.2 MB) on a 6 MB tmpfs: the snapshot fits
        in the backup directory (elsewhere), but the in-place restore's
        staging copy and journal (about 2 x 3.2 MB) would not fit next to
        the database, so safety-check and the pipeline FAIL up front."""
        small = self.path("small")
        os.mkdir(small)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m,mode=0700", "tmpfs", small],
                           capture_output=True, text=True)
        if r.returncode != 0:
            self.skipTest("cannot mount a tmpfs (%s): the restore-space check needs a "
                          "small file system" % r.stderr.strip())
        try:
            self.fill("small/app.db")
            url = "sqlite:///" + self.path("small", "app.db")
            self.write("migrations/0001_x.sql", "-- migrate:up\nCREATE TABLE x (i);\n")
            r = self.code(4, "-d", url, "safety-check")
            self.assertRegex(r.out, r"(?m)^PASS disk-space: ")
            self.assertRegex(r.out, r"(?m)^FAIL restore-space: only .* free in '%s'"
                             % self.path("small"))
            before = self.sqlite_dump("small/app.db")
            r = self.code(4, "-d", url, "safe-migrate")
            self.assertIn("restore-space", r.out + r.err)
            self.assertEqual(self.sqlite_dump("small/app.db"), before)
            # with room for both, the check passes
            subprocess.run(["mount", "-o", "remount,size=16m", small], check=True)
            r = self.ok("-d", url, "safety-check")
            self.assertRegex(r.out, r"(?m)^PASS restore-space: ")
        finally:
            subprocess.run(["umount", small], check=False)

    def test_verify_never_crashes(self):
        for i, blob in enumerate([b"", b"\x00", b"hello world\n" * 100, os.urandom(70000),
                                  b"\x28\xb5\x2f\xfd" + os.urandom(5000)]):
            p = self.write("junk%d.tar.zst" % i, blob, mode="wb")
            r = self.code(7, "verify", p, "--json")
            self.assertFalse(r.json()["ok"])
        self.code(1, "verify", self.path("missing.tar.zst"))
        self.code(2, "verify")

    def hostile_tar(self, name, build):
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
            hdr = json.dumps({"format_version": 1, "engine": "sqlite"}).encode()
            ti = tarfile.TarInfo("snapshot.json")
            ti.size = len(hdr)
            t.addfile(ti, io.BytesIO(hdr))
            build(t)
        return self.compressed(name, raw.getvalue())

    def compressed(self, name, tar_bytes):
        """Writes tar_bytes zstd-compressed as name, with a correct sidecar."""
        return compress_to(self.path(name), tar_bytes)

    def test_page_sizes_and_empty_file(self):
        open(self.path("empty.db"), "wb").close()
        for ps in (512, 65536):
            con = sqlite3.connect(self.path("p%d.db" % ps))
            con.execute("PRAGMA page_size=%d" % ps)
            con.execute("CREATE TABLE t (x)")
            con.executemany("INSERT INTO t VALUES (?)", [(os.urandom(3000),) for _ in range(300)])
            con.commit()
            con.close()
        for name in ("empty.db", "p512.db", "p65536.db"):
            with self.subTest(name):
                snap = self.ok("-d", self.sqlite_url(name), "backup", "--json").json()["path"]
                self.ok("restore", snap, "--to", self.sqlite_url("r-" + name), "--yes")
                self.assertEqual(self.sqlite("PRAGMA integrity_check", "r-" + name), [("ok",)])
                self.assertEqual(self.sqlite_dump("r-" + name), self.sqlite_dump(name))
                self.assertEqual(self.sqlite("PRAGMA page_size", "r-" + name),
                                 self.sqlite("PRAGMA page_size", name))

    def test_tar_alone_reassembles_the_database(self):
        snap = self.backup()["path"]
        out = self.path("x")
        os.mkdir(out)
        subprocess.run(["tar", "--zstd", "-xf", snap, "-C", out], check=True)
        parts = sorted(glob.glob(os.path.join(out, "data", "main.db.*")))
        self.assertGreaterEqual(len(parts), 2)
        with open(self.path("cat.db"), "wb") as f:
            for part in parts:
                with open(part, "rb") as src:
                    f.write(src.read())
        self.assertEqual(self.sqlite_dump("cat.db"), self.sqlite_dump())

    def packed(self, name, header, entries, extra=None):
        """A well-formed snapshot (correct manifest and sidecar) of the given
        (name, bytes) entries, for format and layout variants."""
        return packed_snapshot(self.path(name), header, entries, extra)

    def test_format_1_and_deferred_head_layouts(self):
        with open(self.path("app.db"), "rb") as f:
            db = f.read()
        page = 4096
        base = {"tool": "safe-migrate", "tool_version": "0.1.0", "engine": "sqlite",
                "created_at": "2026-01-01T00:00:00.000Z", "server_version": "SQLite",
                "source": "sqlite:///app.db", "revision": None}
        # format 1: the database in order from chunk 0000
        v1 = self.packed("v1.tar.zst", dict(base, format_version=1),
                         [("data/main.db.0000", db[:3 * page]),
                          ("data/main.db.0001", db[3 * page:])])
        self.ok("verify", v1)
        self.ok("restore", v1, "--to", self.sqlite_url("v1.db"), "--yes")
        self.assertEqual(self.sqlite_dump("v1.db"), self.sqlite_dump())
        v2 = dict(base, format_version=2, deferred={"data/main.db.0000": page})
        bad = {
            # the declared head comes first, or not at all, or is too short
            "head-first": [("data/main.db.0000", db[:page]), ("data/main.db.0001", db[page:])],
            "no-head": [("data/main.db.0001", db[page:])],
            "short-head": [("data/main.db.0001", db[page:]), ("data/main.db.0000", db[:100])],
            "gap": [("data/main.db.0002", db[page:]), ("data/main.db.0000", db[:page])],
            "after-head": [("data/main.db.0001", db[page:2 * page]),
                           ("data/main.db.0000", db[:page]),
                           ("data/main.db.0002", db[2 * page:])],
        }
        for label, entries in bad.items():
            with self.subTest(label):
                p = self.packed("bad-%s.tar.zst" % label, v2, entries)
                r = self.code(7, "restore", p, "--to", self.sqlite_url(label + ".db"), "--yes")
                self.assertRegex(r.err, "out of order|declares|no first page")
                self.assertFalse(os.path.exists(self.path(label + ".db")) and
                                 os.path.getsize(self.path(label + ".db")) > 0)
        good = self.packed("v2.tar.zst", v2, [("data/main.db.0001", db[page:5 * page]),
                                              ("data/main.db.0002", db[5 * page:]),
                                              ("data/main.db.0000", db[:page])])
        self.ok("restore", good, "--to", self.sqlite_url("v2.db"), "--yes")
        self.assertEqual(self.sqlite_dump("v2.db"), self.sqlite_dump())

    def test_hostile_archives(self):
        def add(t, name, data=b"evil", **kw):
            ti = tarfile.TarInfo(name)
            for k, v in kw.items():
                setattr(ti, k, v)
            if ti.type == tarfile.REGTYPE:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
            else:
                t.addfile(ti)
        cases = {
            "dotdot": lambda t: add(t, "../evil"),
            "deep-dotdot": lambda t: add(t, "data/../../evil"),
            "absolute": lambda t: add(t, self.path("abs-evil")),
            "symlink": lambda t: add(t, "data/main.db.0000", type=tarfile.SYMTYPE,
                                     linkname="/etc/passwd"),
            "hardlink": lambda t: add(t, "data/main.db.0000", type=tarfile.LNKTYPE,
                                      linkname="snapshot.json"),
            "duplicate": lambda t: add(t, "snapshot.json"),
        }
        db_sha = file_sha(self.path("app.db"))
        for label, build in cases.items():
            with self.subTest(label):
                p = self.hostile_tar("hostile-%s.tar.zst" % label, build)
                r = self.code(7, "verify", p)
                self.assertIn("refused", r.out)
                self.code(7, "restore", p, "--yes")
                self.assertEqual(file_sha(self.path("app.db")), db_sha)
        self.assertFalse(os.path.exists(os.path.join(os.path.dirname(self.dir), "evil")))
        self.assertFalse(os.path.exists(self.path("evil")))
        self.assertFalse(os.path.exists(self.path("abs-evil")))

    def test_restore_needs_confirmation(self):
        snap = self.backup()["path"]
        self.sqlite("INSERT INTO kinds(id, t) VALUES (99, 'after')")
        db_sha = file_sha(self.path("app.db"))
        r = self.code(2, "restore", snap)
        self.assertIn("--yes", r.err)
        self.assertEqual(file_sha(self.path("app.db")), db_sha)
        self.code(1, "restore", self.path("nope.tar.zst"), "--yes")
        self.assertEqual(file_sha(self.path("app.db")), db_sha)
        # --no-safety-backup takes none
        n = len(glob.glob(self.path("backups", "*.tar.zst")))
        self.ok("restore", snap, "--yes", "--no-safety-backup")
        self.assertEqual(len(glob.glob(self.path("backups", "*.tar.zst"))), n)
        self.assertEqual(self.sqlite("SELECT count(*) FROM kinds WHERE id = 99"), [(0,)])

    def test_list_backups_and_prune(self):
        r = self.ok("list-backups", "--json")
        self.assertEqual(r.json()["snapshots"], [])
        junk = self.write("backups/junk.tar.zst", "not a snapshot")
        os.utime(junk, (946684800, 946684800))  # old: listed last (newest first)
        paths = [self.backup("--name", n)["path"] for n in ("a", "b", "c")]
        snaps = self.ok("list-backups", "--json").json()["snapshots"]
        self.assertEqual(len(snaps), 4)
        self.assertTrue(snaps[-1]["damaged"])
        self.assertTrue(snaps[-1]["path"].endswith("junk.tar.zst"))
        good = snaps[:-1]
        self.assertEqual([os.path.basename(s["path"]) for s in good],
                         ["c.tar.zst", "b.tar.zst", "a.tar.zst"])
        for s in good:
            self.assertFalse(s["damaged"])
            self.assertEqual(s["engine"], "sqlite")
            self.assertIsNone(s["revision"])
            # the database it was taken from: prune's rules hold per database
            self.assertRegex(s["database"], r"^sqlite:\d+:\d+$")
            self.assertEqual(s["source"], "sqlite:///app.db")
            self.assertGreater(s["bytes"], 0)
            self.assertRegex(s["created_at"], r"^\d{4}-\d\d-\d\dT")
        text = self.ok("list-backups").out
        self.assertIn("DAMAGED", text)
        self.assertIn("b.tar.zst", text)

        self.code(2, "prune", "--keep", "-1")
        self.code(2, "prune", "--keep", "x")
        self.code(2, "prune", "--keep", "")
        self.code(2, "prune")
        self.assertEqual(len(glob.glob(self.path("backups", "*"))), 7)  # junk has no sidecar
        r = self.ok("prune", "--keep", "2", "--json")
        self.assertEqual(len(r.json()["removed"]), 2)
        left = sorted(os.listdir(self.path("backups")))
        self.assertEqual(left, ["b.tar.zst", "b.tar.zst.sha256", "c.tar.zst", "c.tar.zst.sha256"])
        self.ok("prune", "--keep", "5")
        self.assertEqual(len(os.listdir(self.path("backups"))), 4)
        # the newest verified snapshot always stays (issue 20)
        self.ok("prune", "--keep", "0")
        self.assertEqual(sorted(os.listdir(self.path("backups"))),
                         ["c.tar.zst", "c.tar.zst.sha256"])
        del paths

    def test_revision_is_recorded(self):
        self.write("migrations/0001_a.sql", "-- migrate:up\nCREATE TABLE a (x);\n"
                   "-- migrate:down\nDROP TABLE a;\n")
        self.write("migrations/0002_b.sql", "-- migrate:up\nCREATE TABLE b (x);\n"
                   "-- migrate:down\nDROP TABLE b;\n")
        self.ok("upgrade")
        self.backup("--name", "rev")
        snaps = self.ok("list-backups", "--json").json()["snapshots"]
        self.assertEqual(snaps[0]["revision"], "0002")

    def test_drop_tables_then_restore(self):
        self.write("migrations/0001_a.sql", "CREATE TABLE a (x);\n")
        self.ok("upgrade")
        before = self.sqlite_dump()
        r = self.code(2, "drop-tables")  # stdin is not a terminal
        self.assertIn("--yes", r.err)
        self.assertEqual(self.sqlite_dump(), before)
        r = self.ok("drop-tables", "--yes", "--json")
        j = r.json()
        snap = j["snapshot"]
        self.assertIn("table safe_migrate_versions", j["dropped"])
        self.assertIn("view kinds_v", j["dropped"])
        left = self.sqlite("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
        self.assertEqual(left, [])
        r = self.ok("drop-tables", "--yes")  # on an empty database too
        self.ok("restore", snap, "--yes")
        self.assertEqual(self.sqlite_dump(), before)
        # the plain output is the snapshot path
        self.assertTrue(r.out.strip().endswith(".tar.zst"))

    def test_leftovers_of_killed_runs_are_cleaned(self):
        # a pid above the default pid_max: that process is certainly gone
        dead = 4194305
        os.makedirs(self.path("backups"), exist_ok=True)
        stale_tmp = self.write("backups/.safe-migrate-tmp.%d.x.tar.zst" % dead, "partial")
        stale_copy = self.write("backups/.safe-migrate-tmp.%d.copy.db" % dead, "partial")
        live = self.write("backups/.safe-migrate-tmp.%d.y.tar.zst" % os.getpid(), "live")
        stage = self.write("app.db.safe-migrate-restore.%d.tmp" % dead, "partial")
        stage_wal = self.write("app.db.safe-migrate-restore.%d.tmp-wal" % dead, "partial")
        snap = self.backup()["path"]
        self.assertFalse(os.path.exists(stale_tmp))
        self.assertFalse(os.path.exists(stale_copy))
        self.assertTrue(os.path.exists(live))  # its process (this test) is alive
        self.ok("restore", snap, "--yes", "--no-safety-backup")
        self.assertFalse(os.path.exists(stage))
        self.assertFalse(os.path.exists(stage_wal))
        # leftovers are never listed as snapshots
        names = [os.path.basename(s["path"])
                 for s in self.ok("list-backups", "--json").json()["snapshots"]]
        self.assertEqual(names, [os.path.basename(snap)])


if __name__ == "__main__":
    main()
