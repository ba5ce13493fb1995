"""backup --jobs N on PostgreSQL: N COPY connections on one exported snapshot,
into the one archive.

The one-connection backup is the oracle: a parallel snapshot records the same
row counts and per-table content checksums, and restores to the same
database (pg_dump --schema-only and an order-independent hash of every
table's rows, smtest.pg_state).  Failures (a worker's COPY, SIGINT, a full
disk, a lost connection) leave no snapshot, as without --jobs.
"""
import glob
import io
import json
import os
import subprocess
import tarfile
import time
import uuid

from faultlib import FaultTest, spread
from smtest import CliTest, FIXTURES, compress_to, main, snapshot_manifest
import test_snapshot_pg

WORKER_APP = "safe-migrate backup --jobs"


class ParallelMixin:
    load = test_snapshot_pg.SnapshotPgTest.load
    pagila_db = test_snapshot_pg.SnapshotPgTest.pagila_db
    assertSameState = test_snapshot_pg.SnapshotPgTest.assertSameState

    def backup(self, url, name, *args):
        r = self.ok("-d", url, "-b", self.path("backups"), "--json", "backup", "--name", name,
                    *args)
        return r.json()["path"]

    def assertSameContent(self, one, par):
        """The manifests of two snapshots record the same rows."""
        a, b = snapshot_manifest(one), snapshot_manifest(par)
        self.assertEqual(a["row_counts"], b["row_counts"])
        self.assertEqual(a["extra"]["table_sha256"], b["extra"]["table_sha256"])
        self.assertEqual(a["extra"]["schema_sha256"], b["extra"]["schema_sha256"])

    def big_db(self, rows=30000):
        """A database with a table of about 3 MB (split into ranges), a row
        bigger than a chunk, escapes in every row, and small, empty and
        column-less tables around it."""
        url = self.pg_new_db()
        self.psql(url, r"""
            CREATE TABLE big (id int PRIMARY KEY, v text, n numeric);
            INSERT INTO big SELECT g, E'tab\there\nnewline \\ ' || md5(g::text) || ' ü', g / 7.0
              FROM generate_series(1, %d) g;
            INSERT INTO big VALUES (0, repeat(md5('x'), 160000), 0);  -- a 5 MB row
            CREATE TABLE small (id int PRIMARY KEY, at date);
            INSERT INTO small SELECT g, date '2026-01-01' + g FROM generate_series(1, 500) g;
            CREATE TABLE empty (x int);
            CREATE TABLE nocol ();
            INSERT INTO nocol DEFAULT VALUES;
            INSERT INTO nocol DEFAULT VALUES;
            CREATE SCHEMA other;
            CREATE TABLE other.items (id serial PRIMARY KEY, big_id int REFERENCES public.big(id));
            INSERT INTO other.items (big_id) SELECT g FROM generate_series(1, 3000) g;
        """ % rows)
        return url


class BackupParallelTest(ParallelMixin, CliTest):
    def setUp(self):
        super().setUp()
        self.require_pg()

    def test_pagila_same_as_one_connection(self):
        url = self.pagila_db()
        before = self.pg_state(url)
        one = self.backup(url, "one")
        par = self.backup(url, "par", "--jobs", "3")
        self.assertSameContent(one, par)
        self.assertEqual(snapshot_manifest(par)["extra"]["jobs"], 3)
        other = self.pg_new_db()
        self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", par, "--to", other,
                "--no-safety-backup")
        self.assertSameState(before, self.pg_state(other))

    def test_fixtures_same_as_one_connection(self):
        # the fidelity fixtures (partitions, inheritance, many types) and an
        # extension's configuration table (copied as a selection, never
        # split): the same entries but the data, the same rows
        self.psql_admin("DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = "
                        "'sm_fid_owner') THEN CREATE ROLE sm_fid_owner LOGIN; END IF; END$$")
        for fixture in ("pg_fidelity.sql", "pg_zoo_fidelity.sql"):
            with self.subTest(fixture=fixture):
                url = self.pg_new_db()
                self.load(url, os.path.join(FIXTURES, fixture))
                one = self.backup(url, fixture + "-one")
                par = self.backup(url, fixture + "-par", "--jobs", "3")
                self.assertSameContent(one, par)
                for entry in ("pg/pre-data.sql", "pg/post-data.sql"):
                    self.assertEqual(self.entry(one, entry), self.entry(par, entry), entry)
                # the same toc, but that only one connection writes each
                # table's chunks together ("data_by_table")
                toc_one = json.loads(self.entry(one, "pg/toc.json"))
                toc_par = json.loads(self.entry(par, "pg/toc.json"))
                self.assertIs(toc_one.pop("data_by_table"), True)
                self.assertNotIn("data_by_table", toc_par)
                self.assertEqual(toc_one, toc_par)
        # restored, it is what the manifest says (schema, rows, contents)
        self.ok("verify", par, "--restore-to", self.pg_new_db())

    @staticmethod
    def entry(snap, name):
        return subprocess.run(["tar", "--zstd", "-xOf", snap, name], capture_output=True,
                              check=True).stdout

    def test_big_table_split_into_ranges(self):
        url = self.big_db()
        before = self.pg_state(url)
        one = self.backup(url, "one")
        par = self.backup(url, "par", "-j", "3")
        self.assertSameContent(one, par)
        # the big table was read as ctid ranges; the small ones whole
        ranges = snapshot_manifest(par)["extra"]["table_ranges"]
        self.assertEqual(list(ranges), ["public.big"])
        self.assertIn(ranges["public.big"], (2, 3))
        self.ok("verify", par)
        # restored with --jobs, and in place (one transaction)
        other = self.pg_new_db()
        self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", par, "--to", other,
                "--jobs", "2", "--no-safety-backup")
        self.assertSameState(before, self.pg_state(other))
        self.psql(url, "DELETE FROM big WHERE id BETWEEN 5000 AND 20000; DROP TABLE small")
        self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", par,
                "--no-safety-backup")
        self.assertSameState(before, self.pg_state(url))

    def test_interleaved_chunks_restore_in_place(self):
        # a parallel snapshot's tables' chunks interleave (as the workers
        # finish pieces); re-packed so that they surely do, every run: the
        # in-place restore loads each table in several runs and still
        # counts all of its rows
        url = self.big_db(rows=10000)
        before = self.pg_state(url)
        snap = self.interleave(self.backup(url, "par", "--jobs", "2"))
        self.psql(url, "DELETE FROM other.items; DELETE FROM big")
        self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap,
                "--no-safety-backup")
        self.assertSameState(before, self.pg_state(url))
        other = self.pg_new_db()
        self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap, "--to", other,
                "--jobs", "2", "--no-safety-backup")
        self.assertSameState(before, self.pg_state(other))

    def interleave(self, snap):
        """snap re-packed with the data chunks of its tables round-robin
        (each table's in order), manifest and sidecar to match."""
        raw = subprocess.run(["zstd", "-dc", snap], capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(raw)) as t:
            entries = [(m.name, t.extractfile(m).read()) for m in t.getmembers()]
        head = [e for e in entries if not e[0].startswith("data/") and e[0] != "manifest.json"]
        man = json.loads(dict(entries)["manifest.json"])
        runs = {}
        for name, data in entries:
            if name.startswith("data/"):
                runs.setdefault(name.rsplit(".", 1)[0], []).append((name, data))
        self.assertGreater(len(runs["data/000000.copy"]), 2)
        data = []
        while any(runs.values()):
            for base in sorted(runs):
                if runs[base]:
                    data.append(runs[base].pop(0))
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as t:
            for name, body in head + data:
                ti = tarfile.TarInfo(name)
                ti.size = len(body)
                ti.mode = 0o600
                t.addfile(ti, io.BytesIO(body))
            order = [n for n, _ in head + data]
            man["entries"].sort(key=lambda e: order.index(e["name"]))
            body = json.dumps(man).encode()
            ti = tarfile.TarInfo("manifest.json")
            ti.size = len(body)
            t.addfile(ti, io.BytesIO(body))
        return compress_to(self.path("interleaved.tar.zst"), out.getvalue())

    def test_worker_error_leaves_no_snapshot(self):
        # a table the backup's role may not read whole (row-level security,
        # with row_security off as pg_dump runs): its COPY fails in a worker
        # while others are copying; the backup fails as without --jobs
        url = self.big_db(rows=10000)
        role = "sm_reader_" + uuid.uuid4().hex[:8]
        self.psql_admin("CREATE ROLE %s LOGIN" % role)
        self.addCleanup(self.psql_admin, "DROP ROLE IF EXISTS %s" % role)
        self.psql(url, """
            CREATE TABLE secret (id int, owner_name text);
            INSERT INTO secret VALUES (1, 'a');
            ALTER TABLE secret ENABLE ROW LEVEL SECURITY;
            CREATE POLICY mine ON secret USING (owner_name = current_user);
            GRANT USAGE ON SCHEMA other TO %s;
            GRANT SELECT ON ALL TABLES IN SCHEMA public, other TO %s;
            GRANT SELECT ON ALL SEQUENCES IN SCHEMA other TO %s;
        """ % (role, role, role))
        as_role = url.replace("postgres@", role + "@", 1)
        self.assertIn(role + "@", as_role)
        for jobs in ("1", "3"):
            with self.subTest(jobs=jobs):
                bdir = self.path("b" + jobs)
                r = self.code(1, "-d", as_role, "-b", bdir, "backup", "--jobs", jobs)
                self.assertIn("public.secret", r.err)
                self.assertIn("row-level security", r.err)
                self.assertEqual(os.listdir(bdir) if os.path.isdir(bdir) else [], [])
        self.assertEqual(self.worker_sessions(url), 0)

    def worker_sessions(self, url, copying=False):
        return int(self.psql(url, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
                                  "application_name = '%s'%s" % (
                                      WORKER_APP, " AND query LIKE 'COPY%'" if copying else "")))

    def test_interrupt_leaves_no_snapshot(self):
        url = self.big_db(rows=150000)
        bdir = self.path("backups")
        code, err, caught = self.interrupt(
            ["-d", url, "-b", bdir, "backup", "--jobs", "2"],
            lambda: self.worker_sessions(url) > 0, freeze=True)
        self.assertTrue(caught, "the backup ended before its workers were seen: %s" % err)
        self.assertEqual(code, 130, err)
        self.assertIn("interrupted", err)
        self.assertEqual(os.listdir(bdir), [])
        deadline = time.time() + 15
        while self.worker_sessions(url):
            self.assertLess(time.time(), deadline, "a worker's session is left")
            time.sleep(0.05)

    def test_terminated_worker_fails_the_backup(self):
        # a worker's connection killed on the server (pg_terminate_backend)
        url = self.big_db(rows=150000)
        bdir = self.path("backups")
        terminate = ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND "
                     "application_name = '%s'" % WORKER_APP)
        code, err, caught = self.interrupt(
            ["-d", url, "-b", bdir, "backup", "--jobs", "2"],
            lambda: self.worker_sessions(url, copying=True) > 0, freeze=True,
            act=lambda: self.psql(url, terminate))
        self.assertTrue(caught, "the backup ended before its workers were seen: %s" % err)
        self.assertEqual(code, 1, err)
        self.assertRegex(err, r"error: \w+\.\w+: cannot copy table: ")
        self.assertEqual(os.listdir(bdir), [])


class FaultBackupParallel(ParallelMixin, FaultTest):
    def setUp(self):
        super().setUp()
        self.require_pg()

    def test_full_disk_and_lost_connections(self):
        url = self.big_db()
        args = ("-d", url, "backup", "--jobs", "3")
        n = self.counts("-b", self.path("count"), *args)
        self.assertGreater(n["write"], 2)
        # ENOSPC on the archive: the error, no snapshot, no temp file
        for i in spread(n["write"], 3):
            with self.subTest(write=i):
                bdir = self.path("w%d" % i)
                r = self.run_shim("-b", bdir, *args, fault="write:%d:ENOSPC" % i)
                self.assertClean(r, (1,))
                self.assertIn("No space left on device", r.err)
                self.assertEqual(glob.glob(os.path.join(bdir, "*")), [])
        # a send failing (the leader's or a worker's connection broken)
        for i in spread(n["send"], 5):
            with self.subTest(send=i):
                bdir = self.path("s%d" % i)
                r = self.run_shim("-b", bdir, *args, fault="send:%d" % i)
                self.assertClean(r, (0, 1))
                self.assertNoTemps(bdir)
                self.assertSnapshotsVerify(bdir)
                if r.code == 0:
                    self.assertEqual(len(glob.glob(os.path.join(bdir, "*.tar.zst"))), 1)


if __name__ == "__main__":
    main()
