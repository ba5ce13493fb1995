"""Shared helpers for the CLI tests.

Every test runs the real safe-migrate binary (SAFE_MIGRATE_BIN) in a fresh
temporary directory.  SQLite tests use real database files; PostgreSQL tests
use the throwaway cluster that scripts/test.sh starts and exports as
SAFE_MIGRATE_TEST_PG_URL.  Each PostgreSQL test gets a database of its own.
Under CI=true a missing server fails the test instead of skipping it.
"""
import hashlib
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
import unittest
import urllib.parse
import uuid

BIN = os.environ.get("SAFE_MIGRATE_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "src", "cli", "safe-migrate")
SRC = os.environ.get("SAFE_MIGRATE_SRC") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
PG_URL = os.environ.get("SAFE_MIGRATE_TEST_PG_URL")
FIXTURES = os.path.join(SRC, "tests", "fixtures")


class Result:
    def __init__(self, proc):
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def json(self):
        return json.loads(self.out)

    def __repr__(self):
        return "exit %d\n--- stdout\n%s--- stderr\n%s" % (self.code, self.out, self.err)


class CliTest(unittest.TestCase):
    """A fresh temp directory per test; self.run_sm runs the binary in it."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sm-test-")
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("SAFE_MIGRATE_") and k != "DATABASE_URL"}
        self.env["SAFE_MIGRATE_BIN"] = BIN
        self.env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        self._pg_dbs = []

    def tearDown(self):
        for db in self._pg_dbs:
            try:
                self.psql_admin('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % db)
            except Exception:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- running -----------------------------------------------------------
    def run_sm(self, *args, env=None, input=None, timeout=300, cwd=None):
        e = dict(self.env)
        if env:
            e.update(env)
        proc = subprocess.run([BIN] + [str(a) for a in args], cwd=cwd or self.dir, env=e,
                              input=input, capture_output=True, text=True, timeout=timeout)
        return Result(proc)

    def ok(self, *args, **kw):
        r = self.run_sm(*args, **kw)
        self.assertEqual(r.code, 0, r)
        return r

    def code(self, expected, *args, **kw):
        r = self.run_sm(*args, **kw)
        self.assertEqual(r.code, expected, r)
        return r

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def write(self, rel, text, mode="w"):
        p = self.path(rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, mode) as f:
            f.write(text)
        return p

    def chain(self, n):
        """Migrations 0001..n, each creating (and on down dropping) table tN."""
        for i in range(1, n + 1):
            self.write("migrations/%04d_t%d.sql" % (i, i),
                       "-- migrate:up\nCREATE TABLE t%d (x INT);\n-- migrate:down\nDROP TABLE t%d;\n"
                       % (i, i))

    # -- SQLite --------------------------------------------------------------
    def sqlite_url(self, name="app.db"):
        return "sqlite:///" + self.path(name)

    def sqlite(self, sql, name="app.db"):
        con = sqlite3.connect(self.path(name))
        try:
            rows = con.execute(sql).fetchall()
            con.commit()
            return rows
        finally:
            con.close()

    def sqlite_dump(self, name="app.db"):
        r = subprocess.run(["sqlite3", self.path(name), ".dump"], capture_output=True,
                           text=True, check=True)
        return r.stdout

    # -- PostgreSQL ------------------------------------------------------------
    def require(self, present, missing, what, hint):
        """Skips the test unless present; under CI=true fails it instead:
        CI never skips a test for want of something it should have."""
        if present:
            return
        if os.environ.get("CI") == "true":
            self.fail("CI=true but %s: the %s tests must not be skipped in CI" % (missing, what))
        self.skipTest("%s (%s)" % (missing, hint))

    def require_pg(self):
        self.require(PG_URL, "SAFE_MIGRATE_TEST_PG_URL is not set", "PostgreSQL",
                     "run scripts/test.sh")

    def psql_admin(self, sql):
        return subprocess.run(["psql", PG_URL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql],
                              capture_output=True, text=True, check=True).stdout

    def pg_new_db(self):
        """Creates an empty database and returns its URL."""
        self.require_pg()
        name = "sm_" + uuid.uuid4().hex[:12]
        self.psql_admin('CREATE DATABASE "%s"' % name)
        self._pg_dbs.append(name)
        # keep the server's host, port, user and query (sslmode...); swap the database
        return urllib.parse.urlsplit(PG_URL)._replace(path="/" + name).geturl()

    def psql(self, url, sql, check=True):
        r = subprocess.run(["psql", url, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                            "-c", sql], capture_output=True, text=True)
        if check and r.returncode != 0:
            raise AssertionError("psql failed: %s" % r.stderr)
        return r.stdout.strip()

    PG_TABLES_SQL = (
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relkind "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1")

    def pg_state(self, url):
        """Schema (pg_dump --schema-only), an order-independent hash of every
        table's rows, and every sequence's position."""
        # one query for all of them: a psql per table costs seconds on a
        # loaded machine
        parts = []
        for line in self.psql(url, self.PG_TABLES_SQL).splitlines():
            name, kind = line.rsplit("|", 1)
            if kind == "S":
                expr = "SELECT last_value || ',' || is_called FROM %s" % name
            else:
                expr = ("SELECT count(*) || ':' || coalesce(md5(string_agg(h, '' ORDER BY h)), '') "
                        "FROM (SELECT md5(t::text) AS h FROM %s t) s" % name)
            parts.append("SELECT (%s) || '|' || '%s'" % (expr, name.replace("'", "''")))
        rows = {}
        if parts:
            # the value first: it holds no '|'
            for line in self.psql(url, " UNION ALL ".join(parts)).splitlines():
                value, name = line.split("|", 1)
                rows[name] = value
        return self.pg_schema_dump(url), rows

    @staticmethod
    def journals(backup_dir):
        """The run journals in backup_dir (one per database: safe-migrate-ID.journal)."""
        try:
            names = os.listdir(backup_dir)
        except OSError:
            return []
        return sorted(os.path.join(backup_dir, n) for n in names
                      if n.startswith("safe-migrate") and n.endswith(".journal"))

    def wait_for_phase(self, backup_dir, phase="apply", timeout=60):
        """Waits until a run journal in backup_dir says the run reached phase."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for journal in self.journals(backup_dir):
                try:
                    with open(journal) as f:
                        if json.load(f).get("phase") == phase:
                            return
                except (OSError, ValueError):
                    pass
            time.sleep(0.05)
        self.fail("the run never reached the %s phase" % phase)

    def start_in_apply(self, *args, capture=True):
        """Starts safe-migrate ARGS in the background (its output captured, or
        discarded) and returns it once its run journal says it is applying."""
        out = subprocess.PIPE if capture else subprocess.DEVNULL
        p = subprocess.Popen([BIN, *args], cwd=self.dir, env=self.env, stdout=out, stderr=out,
                             text=True)
        self.wait_for_phase(self.path("backups"))
        return p

    def interrupt(self, args, ready, freeze=False, act=None):
        """Starts safe-migrate ARGS, waits until ready() holds (or the process
        ends), sends SIGINT and waits for the process to end.  With freeze
        it is stopped (SIGSTOP) first and ready() asked again, so the signal
        lands (on SIGCONT) at a point known to be reached.  With act, act()
        is called instead of sending SIGINT (if ready() held).  Returns (exit
        code, stderr, whether ready() held when the signal was sent)."""
        p = subprocess.Popen([BIN, *args], cwd=self.dir, env=self.env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while not ready() and p.poll() is None:
                self.assertLess(time.monotonic(), deadline, "timed out waiting to interrupt")
                time.sleep(0.001)
            if freeze:
                p.send_signal(signal.SIGSTOP)
            caught = p.poll() is None and ready()
            if act is None:
                p.send_signal(signal.SIGINT)
            elif caught:
                act()
            if freeze:
                p.send_signal(signal.SIGCONT)
            _, err = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
        return p.returncode, err, caught

    def pg_schema_dump(self, url):
        r = subprocess.run(["pg_dump", "--schema-only", "--no-owner", url],
                           capture_output=True, text=True, check=True)
        lines = [l for l in r.stdout.splitlines()
                 if l.strip() and not l.startswith("--") and not l.startswith("\\restrict")
                 and not l.startswith("\\unrestrict")]
        return "\n".join(lines)


def pg_dbname(url):
    """The database a PostgreSQL URL names."""
    return urllib.parse.urlsplit(url).path.lstrip("/")


def fk_tables_sql(parents, children):
    """SQL for a table parent of `parents` rows and a table child of
    `children` rows with a foreign key to it, about 140 bytes a row: big
    enough, from some 15,000 rows, to span several units of a parallel
    restore (which then loads each in one transaction, frozen)."""
    return """
        CREATE TABLE parent (id int PRIMARY KEY, note text);
        INSERT INTO parent SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, %d) g;
        CREATE TABLE child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parent,
                            note text);
        INSERT INTO child SELECT g, 1 + g %% %d, repeat(md5(g::text), 4)
            FROM generate_series(1, %d) g;
    """ % (parents, parents, children)


def snapshot_manifest(path):
    """The manifest.json of the snapshot archive at path, parsed."""
    return json.loads(subprocess.run(["tar", "--zstd", "-xOf", path, "manifest.json"],
                                     capture_output=True, check=True).stdout)


def compress_to(path, tar_bytes):
    """Writes tar_bytes zstd-compressed to path with a matching sidecar."""
    comp = subprocess.run(["zstd", "-q", "-c"], input=tar_bytes, capture_output=True,
                          check=True).stdout
    with open(path, "wb") as f:
        f.write(comp)
    with open(path + ".sha256", "w") as f:
        f.write("%s  %s\n" % (hashlib.sha256(comp).hexdigest(), os.path.basename(path)))
    return path


def packed_snapshot(path, header, entries, extra=None):
    """A well-formed snapshot at path (correct manifest and sidecar) of the
    given (name, bytes) entries after snapshot.json (header), for crafted
    format and layout variants; extra is the manifest's "extra"."""
    raw = io.BytesIO()
    listed = []
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        for ename, data in [("snapshot.json", json.dumps(header).encode())] + entries:
            ti = tarfile.TarInfo(ename)
            ti.size = len(data)
            ti.mode = 0o600
            t.addfile(ti, io.BytesIO(data))
            listed.append({"name": ename, "size": len(data),
                           "sha256": hashlib.sha256(data).hexdigest()})
        data = json.dumps(dict(header, row_counts={}, extra=extra or {},
                               entries=listed)).encode()
        ti = tarfile.TarInfo("manifest.json")
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
    return compress_to(path, raw.getvalue())


def main():
    unittest.main(verbosity=2)
