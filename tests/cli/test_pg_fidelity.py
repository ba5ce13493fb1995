"""PostgreSQL snapshot fidelity (issue 16): schemas that pg_dump reproduces
must come back identical from a snapshot too.

Each case group is one database loaded from a fixture.  The oracle,
pg_dump -Fc | pg_restore, must reproduce it (else the case itself is wrong);
then the snapshot is restored --to a fresh database, with --jobs 2, and in
place after damage, and each result is compared with the source: pg_dump -s
(owners and grants included) and an order-independent hash of every table's
rows and every sequence position.
"""
import glob
import io
import json
import os
import pwd
import shutil
import socket
import subprocess
import tarfile
import tempfile
import urllib.parse
import uuid

import test_snapshot_pg
from smtest import CliTest, FIXTURES, PG_URL, SRC, main, pg_dbname, snapshot_manifest

ZOO = os.path.join(FIXTURES, "pg_zoo_fidelity.sql")
OWNER = "sm_fid_owner"
# tests/pg/sm_label.c, built by tests/CMakeLists.txt: a security label provider
LABEL_SO = os.environ.get("SM_LABEL_SO", "")
LABELS_SQL = ("SELECT objtype, objname, provider, label FROM pg_seclabels "
              "ORDER BY objtype, objname, provider")


class PgFidelityTest(CliTest):
    def setUp(self):
        super().setUp()
        self.require_pg()
        self.psql_admin("DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '%s') "
                        "THEN CREATE ROLE %s LOGIN; END IF; END$$" % (OWNER, OWNER))

    load = test_snapshot_pg.SnapshotPgTest.load
    reseal = test_snapshot_pg.SnapshotPgTest.reseal

    def schema(self, url):
        """pg_dump -s with owners and grants: what must be the same."""
        r = subprocess.run(["pg_dump", "--schema-only", url], capture_output=True, text=True,
                           check=True)
        return "\n".join(l for l in r.stdout.splitlines()
                         if l.strip() and not l.startswith("--") and not l.startswith("\\"))

    ROWS_SQL = r"""
        SELECT CASE c.relkind WHEN 'S' THEN
            format('SELECT %L || ''|'' || last_value || '','' || is_called FROM %s', q, q)
          ELSE format('SELECT %L || ''|'' || count(*) || '':'' || coalesce(md5(string_agg(h, '''' '
                      'ORDER BY h)), '''') FROM (SELECT md5(t::text) AS h FROM %s t) s', q, q) END
        FROM (SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS q, c.relkind
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND n.nspname NOT LIKE 'pg_toast%') c ORDER BY 1 \gexec
    """

    def state(self, url):
        """pg_dump -s, and every table's row count and hash and every
        sequence's position (as smtest's pg_state, in one psql run)."""
        r = subprocess.run(["psql", url, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"],
                           input=self.ROWS_SQL, capture_output=True, text=True, check=True)
        return self.schema(url), dict(l.rsplit("|", 1) for l in r.stdout.splitlines() if l)

    def assertSameState(self, expected, actual, what):
        self.assertEqual(expected[0], actual[0], "%s: schema (pg_dump -s) differs" % what)
        self.assertEqual(expected[1], actual[1], "%s: rows or sequence positions differ" % what)

    def oracle(self, url, before):
        """pg_dump | pg_restore reproduces the database: the case is sound."""
        other = self.pg_new_db()
        dump = subprocess.run(["pg_dump", "-Fc", url], capture_output=True, check=True).stdout
        subprocess.run(["pg_restore", "--exit-on-error", "-d", other], input=dump,
                       capture_output=True, check=True)
        self.assertSameState(before, self.state(other), "pg_dump/pg_restore (oracle)")

    def backup(self, url, name="snap"):
        return self.ok("-d", url, "-b", self.path("backups"), "--json", "backup",
                       "--name", name).json()["path"]

    def round_trips(self, url, damage):
        """Backup; restore --to, --to --jobs 2, in place after damage; each
        compared with the source."""
        before = self.state(url)
        self.oracle(url, before)
        snap = self.backup(url)
        self.assertSameState(before, self.state(url), "taking the snapshot")
        scratch = self.pg_new_db()
        r = self.ok("--json", "verify", snap, "--restore-to", scratch)
        self.assertTrue(r.json()["ok"], r)
        self.assertSameState(before, self.state(scratch), "verify --restore-to")
        other = self.pg_new_db()
        self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap, "--to", other,
                "--no-safety-backup")
        self.assertSameState(before, self.state(other), "restore --to")
        other = self.pg_new_db()
        self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap, "--to", other,
                "--jobs", "2", "--no-safety-backup")
        self.assertSameState(before, self.state(other), "restore --to --jobs 2")
        self.psql(url, damage)
        self.assertNotEqual(before, self.state(url))
        self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap,
                "--no-safety-backup")
        self.assertSameState(before, self.state(url), "restore in place")
        return snap

    def zoo_db(self):
        url = self.pg_new_db()
        self.load(url, ZOO)
        return url

    def test_zoo_round_trips(self):
        url = self.zoo_db()
        self.round_trips(url, """
            DROP VIEW fid.customer_totals CASCADE;
            DROP TABLE fid.nocols;
            INSERT INTO fid.only_generated DEFAULT VALUES;
            DROP TYPE fid.int42 CASCADE;
            DELETE FROM fid.measures;
            INSERT INTO fid.owned_serial (v) VALUES ('after');
        """)
        # the restored copy works: the serial and the key-dependent objects
        self.psql(url, "INSERT INTO fid.owned_serial (v) VALUES ('c')")
        self.assertEqual(self.psql(url, "SELECT max(id) FROM fid.owned_serial"), "3")
        self.assertEqual(self.psql(url, "SELECT count(*) FROM fid.customer_names()"), "3")
        self.assertEqual(self.psql(url, "SELECT count(*) FROM fid.nocols"), "3")

    def test_verify_restore_to_finds_what_differs(self):
        url = self.zoo_db()
        snap = self.backup(url)
        m = snapshot_manifest(snap)
        fp = m["extra"]["schema_sha256"]
        self.assertEqual(len(fp), 64)
        self.assertEqual(m["row_counts"]["fid.nocols"], 3)
        # a non-empty scratch database is refused, and left alone
        busy = self.pg_new_db()
        self.psql(busy, "CREATE TABLE keep_me (x int)")
        r = self.code(2, "verify", snap, "--restore-to", busy)
        self.assertIn("is not empty", r.err)
        self.assertEqual(self.psql(busy, "SELECT count(*) FROM keep_me"), "0")
        # a recorded fingerprint that the restored copy does not have
        self.reseal(snap, fp.encode(), ("0" * 64).encode())
        self.ok("verify", snap)  # every checksum holds
        r = self.code(7, "--json", "verify", snap, "--restore-to", self.pg_new_db())
        problems = r.json()["problems"]
        self.assertTrue(any("restored schema differs" in p for p in problems), problems)
        # a recorded row count the data does not have: the restore itself
        # compares each table's COPY count with the manifest before COMMIT
        self.reseal(snap, b'"fid.nocols":\t3', b'"fid.nocols":\t4')
        self.ok("verify", snap)
        r = self.code(7, "--json", "verify", snap, "--restore-to", self.pg_new_db())
        problems = r.json()["problems"]
        self.assertTrue(any("fid.nocols" in p and "3 rows" in p and "4" in p for p in problems),
                        problems)

    def test_verify_restore_to_compares_table_contents(self):
        """An UPDATE changes no row count: the snapshot records each table's
        content checksum, and the check after a restore reads the table back
        and compares.  Here the recorded checksum of one table is altered
        (resealed), as a restore that left an updated row would look."""
        url = self.zoo_db()
        snap = self.backup(url)
        sums = snapshot_manifest(snap)["extra"]["table_sha256"]
        self.assertEqual(len(sums["fid.nocols"]), 64)
        r = self.ok("--json", "verify", snap, "--restore-to", self.pg_new_db())
        self.assertIn("table checksums", r.err)
        self.reseal(snap, sums["fid.nocols"].encode(), ("0" * 64).encode())
        self.ok("verify", snap)  # every checksum of the archive holds
        r = self.code(7, "--json", "verify", snap, "--restore-to", self.pg_new_db())
        problems = r.json()["problems"]
        self.assertTrue(any("fid.nocols" in p and "content" in p for p in problems), problems)

    BINARY_SQL = r"""
        CREATE SCHEMA bin;
        CREATE DOMAIN bin.pos AS numeric(12, 3) CHECK (VALUE >= 0);
        CREATE DOMAIN bin.tags AS text[];
        CREATE TYPE bin.mood AS ENUM ('sad', 'ok');
        CREATE TABLE bin.scalars (
            id int PRIMARY KEY, b bool, s smallint, l bigint, r real, d double precision,
            n numeric, p bin.pos, t text, v varchar(12), c char(5), q "char", o oid,
            by bytea, dt date, tm time, ts timestamp, tz timestamptz, iv interval, u uuid,
            j json, jb jsonb, ip inet, net cidr, mac macaddr);
        INSERT INTO bin.scalars VALUES
            (1, true, -32768, -9223372036854775808, 'NaN', '-Infinity', 'NaN', 0, '', '', '',
             'x', 4294967295, '\x00ff5c0a0d09', '-infinity', '24:00', 'infinity',
             '2000-01-01 00:00:00.000001+14', '-178000000 years',
             '00000000-0000-0000-0000-000000000000',
             '{"a": [1, 2.50, null], "b": "\u00e9"}', '{"a": [1, 2.50, null], "b": "\u00e9"}',
             '::ffff:1.2.3.4', '10.0.0.0/8', '08:00:2b:01:02:03'),
            (2, false, 32767, 9223372036854775807, 'Infinity', 1e-308, 'Infinity', 1e9 - 0.001,
             E'tab\there\nnew\\line \\N Ünïcødé 日本', 'twelve chars', 'ab', E'\\001', 0,
             '', 'epoch', '00:00', '4713-01-01 BC', 'infinity', '1 mon -2 days 03:04:05.6',
             gen_random_uuid(), '"x"', 'null', '::1', '::/0', 'ff:ff:ff:ff:ff:ff'),
            (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
             NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
        INSERT INTO bin.scalars (id, n, t, by)
            SELECT g, g * 1.5 - 1e20, repeat(md5(g::text), g % 50),
                   decode(repeat(md5(g::text), g % 9), 'hex')
            FROM generate_series(4, 30000) g;
        CREATE TABLE bin.arrays (id int, a int[], b text[][], c bin.tags, d numeric[],
                                 e timestamptz[], f jsonb[], g bytea[], h uuid[]);
        INSERT INTO bin.arrays VALUES
            (1, '{1,NULL,3}', '{{a,NULL},{"x,y",""}}', '{"",NULL}', '{NaN,1.5,-0}',
             '{infinity,-infinity,NULL}', ARRAY['{"k": 1}'::jsonb, NULL],
             ARRAY['\x00'::bytea, ''], ARRAY[gen_random_uuid()]),
            (2, '{}', '{}', NULL, NULL, NULL, NULL, NULL, NULL),
            (3, '[0:1]={7,8}', NULL, '{q}', '{}', '{}', '{}', '{}', '{}');
        -- a column of a type of the database's own: the table is copied as text
        CREATE TABLE bin.mixed (id int, m bin.mood, t text);
        INSERT INTO bin.mixed VALUES (1, 'ok', E'a\tb'), (2, NULL, NULL);
        -- no stored column: text, as pg_dump
        CREATE TABLE bin.nocols (g int GENERATED ALWAYS AS (1) STORED);
        INSERT INTO bin.nocols DEFAULT VALUES;
    """

    def toc(self, snap):
        return json.loads(subprocess.run(["tar", "--zstd", "-xOf", snap, "pg/toc.json"],
                                         capture_output=True, text=True, check=True).stdout)

    def test_binary_copy_round_trips(self):
        """Tables whose every column is of a built-in type are copied in
        COPY's binary format (the server writes and reads it much faster),
        the others in text: both come back exactly, through every path,
        edge values included (NaN, infinities, NULLs in arrays, a domain's
        check, bytes that text escapes)."""
        url = self.pg_new_db()
        self.psql(url, self.BINARY_SQL)
        snap = self.round_trips(url, """
            UPDATE bin.scalars SET t = 'changed' WHERE id = 2;
            DELETE FROM bin.arrays WHERE id = 3;
            UPDATE bin.mixed SET m = 'sad';
        """)
        formats = {t["qualified"]: t.get("format") for t in self.toc(snap)["tables"]}
        self.assertEqual(formats, {"bin.scalars": "binary", "bin.arrays": "binary",
                                   "bin.mixed": None, "bin.nocols": None})
        self.assertEqual(snapshot_manifest(snap)["extra"]["copy_format"], "by_table")
        # backup --jobs 2 splits the big table into ctid ranges, each a COPY
        # of its own with its own binary header and trailer: the snapshot
        # keeps one stream of tuples all the same
        before = self.state(url)
        par = self.ok("-d", url, "-b", self.path("backups"), "--json", "backup", "--name", "par",
                      "--jobs", "2").json()["path"]
        self.assertGreater(snapshot_manifest(par)["extra"]["table_ranges"]["bin.scalars"], 1)
        for jobs in ("1", "2"):
            other = self.pg_new_db()
            self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", par, "--to", other,
                    "--jobs", jobs, "--no-safety-backup")
            self.assertSameState(before, self.state(other), "backup --jobs 2, restore --jobs " + jobs)
        # the content checksums are over the binary tuples: verify reads
        # the restored tables back the same way and finds them equal
        r = self.ok("--json", "verify", par, "--restore-to", self.pg_new_db())
        self.assertTrue(r.json()["ok"], r)

    def test_verify_restore_to_finds_an_unrestorable_snapshot(self):
        # a snapshot that passes every checksum but cannot be restored here:
        # the role owning a table is gone
        url = self.pg_new_db()
        self.psql_admin("DROP ROLE IF EXISTS sm_fid_gone; CREATE ROLE sm_fid_gone")
        try:
            self.psql(url, "CREATE TABLE t (x int); ALTER TABLE t OWNER TO sm_fid_gone")
            snap = self.backup(url)
            self.psql(url, "DROP TABLE t")
        finally:
            self.psql_admin("DROP ROLE IF EXISTS sm_fid_gone")
        self.ok("verify", snap)
        scratch = self.pg_new_db()
        r = self.code(7, "verify", snap, "--restore-to", scratch)
        self.assertIn("cannot be restored", r.out)
        self.assertIn("sm_fid_gone", r.out)


    def test_verify_restore_to_on_every_fixture(self):
        # the older fixtures (issue 5's fidelity one, pagila; the zoo, the
        # tablespace and the application-role tests run it too): restored
        # into a scratch database, with --jobs 2, and found as recorded
        fixtures = [test_snapshot_pg.FIDELITY, test_snapshot_pg.PAGILA]
        for path in fixtures:
            url = self.pg_new_db()
            self.load(url, path)
            snap = self.backup(url, os.path.basename(path).split(".")[0])
            scratch = self.pg_new_db()
            r = self.ok("--json", "verify", snap, "--restore-to", scratch, "--jobs", "2")
            self.assertTrue(r.json()["ok"], r)
            self.assertEqual(self.state(url), self.state(scratch), path)

    def test_index_definitions(self):
        """Indexes on one plain column with every default are written without
        pg_get_indexdef (issue 17); the odd ones beside them still with it.
        Each comes back as it was, and the snapshot's post-data holds each
        index's pg_get_indexdef text as the server prints it."""
        url = self.pg_new_db()
        self.psql(url, """
            CREATE SCHEMA "My Schema";
            CREATE TABLE "My Schema"."Tab le" ("Col" text COLLATE "C", v varchar(10), n int,
                                              "select" int, d date);
            CREATE INDEX "Idx One" ON "My Schema"."Tab le" ("Col");
            CREATE INDEX ON "My Schema"."Tab le" (v);
            CREATE INDEX ON "My Schema"."Tab le" (n DESC);
            CREATE INDEX ON "My Schema"."Tab le" (n NULLS FIRST);
            CREATE INDEX ON "My Schema"."Tab le" ("select");
            CREATE UNIQUE INDEX ON "My Schema"."Tab le" (d) NULLS NOT DISTINCT;
            CREATE UNIQUE INDEX ON "My Schema"."Tab le" (n);
            CREATE INDEX ON "My Schema"."Tab le" (n) INCLUDE (d);
            CREATE INDEX ON "My Schema"."Tab le" ("Col" COLLATE "POSIX");
            CREATE INDEX ON "My Schema"."Tab le" ("Col" text_pattern_ops);
            CREATE INDEX ON "My Schema"."Tab le" (n) WITH (fillfactor = 70);
            CREATE INDEX ON "My Schema"."Tab le" (n) WHERE n > 0;
            CREATE INDEX ON "My Schema"."Tab le" USING hash (n);
            CREATE INDEX ON "My Schema"."Tab le" (n, d);
            CREATE MATERIALIZED VIEW "My Schema".mv AS SELECT * FROM "My Schema"."Tab le";
            CREATE INDEX ON "My Schema".mv (n);
            CREATE TABLE p (id int, k text) PARTITION BY LIST (id);
            CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1);
            CREATE INDEX ON p (k);
            CREATE DOMAIN dtext AS text;
            CREATE TABLE dt (a int, x dtext, y int);
            CREATE INDEX ON dt (x);
            CREATE INDEX ON dt (y);
            ALTER TABLE dt DROP COLUMN a;
        """)
        defs = "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON " \
               "c.oid = i.indrelid WHERE c.relnamespace::regnamespace::text NOT IN " \
               "('pg_catalog', 'pg_toast') ORDER BY 1"
        want = self.psql(url, defs).splitlines()
        self.assertEqual(len(want), 19)
        snap = self.backup(url)
        raw = subprocess.run(["zstd", "-q", "-d", "-c", snap], capture_output=True,
                             check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
            post = tf.extractfile("pg/post-data.sql").read().decode()
        for d in want:
            self.assertIn(d + ";", post)
        other = self.pg_new_db()
        self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap, "--to", other,
                "--no-safety-backup")
        self.assertEqual(self.psql(other, defs).splitlines(), want)

    def test_table_access_method(self):
        # the access method itself is a database object of its own (dumped
        # with the other object kinds); here the target has it already
        am = "CREATE ACCESS METHOD heap_copy TYPE TABLE HANDLER heap_tableam_handler"
        url = self.pg_new_db()
        self.psql(url, am + "; CREATE TABLE t (x int) USING heap_copy; "
                            "CREATE MATERIALIZED VIEW mv USING heap_copy AS SELECT x FROM t; "
                            "INSERT INTO t VALUES (1)")
        before = self.state(url)
        snap = self.backup(url)
        other = self.pg_new_db()
        self.psql(other, am)
        self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap, "--to", other,
                "--no-safety-backup")
        self.assertSameState(before, self.state(other), "restore --to")

    def test_settings_of_the_target_and_the_client_change_nothing(self):
        """A snapshot taken by a client in another time zone comes back whole
        into databases whose own settings (ALTER DATABASE ... SET) would read
        its text otherwise: array_nulls off took a NULL array element for
        the string 'NULL', default_table_access_method put the tables in
        another access method, and verify --restore-to called the snapshot
        damaged because the restored rows, read under another TimeZone and
        bytea_output, no longer matched their content checksum.  The table
        with an enum is copied as text."""
        am = "CREATE ACCESS METHOD heap2 TYPE TABLE HANDLER heap_tableam_handler"
        settings = ("SET array_nulls = off", "SET default_table_access_method = heap2",
                    "SET TimeZone = 'Asia/Kolkata'", "SET bytea_output = 'escape'")
        url = self.pg_new_db()
        self.psql(url, am + r"""; CREATE TYPE mood AS ENUM ('ok');
            CREATE TABLE t (k mood, a text[], ts timestamptz, b bytea);
            INSERT INTO t VALUES ('ok', '{a,NULL}', '2026-01-02 03:04:05+00', '\x00ff5c'),
                                 ('ok', '{NULL}', '-infinity', '\x');
            CREATE TABLE n (x int, a int[]);
            INSERT INTO n VALUES (1, '{1,NULL}')""")
        before = self.state(url)
        snap = self.run_sm("-d", url, "-b", self.path("backups"), "--json", "backup",
                           env={"PGTZ": "America/New_York"})
        self.assertEqual(snap.code, 0, snap)
        snap = snap.json()["path"]

        def prepared():
            db = self.pg_new_db()
            self.psql(db, am)
            for s in settings:
                self.psql_admin('ALTER DATABASE "%s" %s' % (pg_dbname(db), s))
            return db

        def assertRestored(db, what):
            # read back under the defaults, as the source was
            self.psql_admin('ALTER DATABASE "%s" RESET ALL' % pg_dbname(db))
            self.assertSameState(before, self.state(db), what)
            self.assertEqual(self.psql(db, "SELECT count(*) FROM t WHERE a[2] IS NULL OR "
                                           "a[1] IS NULL"), "2")

        scratch = prepared()
        r = self.ok("--json", "verify", snap, "--restore-to", scratch)
        self.assertTrue(r.json()["ok"], r)
        assertRestored(scratch, "verify --restore-to")
        for jobs in ("1", "2"):
            other = prepared()
            self.ok("-b", self.path("backups"), "--yes", "restore", snap, "--to", other,
                    "--jobs", jobs, "--no-safety-backup", env={"PGTZ": "Pacific/Chatham"})
            assertRestored(other, "restore --to --jobs %s" % jobs)
        for s in settings:
            self.psql_admin('ALTER DATABASE "%s" %s' % (pg_dbname(url), s))
        self.psql(url, "DELETE FROM t; DROP TABLE n")
        self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap,
                "--no-safety-backup")
        assertRestored(url, "restore in place")

    def test_tablespaces(self):
        loc = tempfile.mkdtemp(prefix="sm-ts-")
        self.addCleanup(subprocess.run, ["rm", "-rf", loc])
        if os.geteuid() == 0:  # the test cluster's server runs as postgres
            pw = pwd.getpwnam("postgres")
            os.chown(loc, pw.pw_uid, pw.pw_gid)
        ts = "sm_fid_ts_" + uuid.uuid4().hex[:8]
        self.psql_admin("CREATE TABLESPACE %s LOCATION '%s'" % (ts, loc))
        self.addCleanup(self.psql_admin, "DROP TABLESPACE IF EXISTS %s" % ts)
        url = self.pg_new_db()
        self.psql(url, """
            CREATE TABLE t (id int, v text, CONSTRAINT t_pk PRIMARY KEY (id) USING INDEX
                TABLESPACE {ts} DEFERRABLE) TABLESPACE {ts};
            CREATE INDEX t_v ON t (v) TABLESPACE {ts} WHERE v IS NOT NULL;
            CREATE INDEX t_v2 ON t (lower(v)) WITH (fillfactor = 50) TABLESPACE {ts};
            CREATE MATERIALIZED VIEW mv TABLESPACE {ts} AS SELECT id FROM t;
            CREATE TABLE p (id int, at date) PARTITION BY RANGE (at) TABLESPACE {ts};
            CREATE TABLE p1 PARTITION OF p FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
            INSERT INTO t VALUES (1, 'a'), (2, NULL);
            INSERT INTO p VALUES (1, '2025-02-02');
            REFRESH MATERIALIZED VIEW mv;
        """.format(ts=ts))
        self.assertIn("SET default_tablespace = %s" % ts, self.schema(url))
        self.round_trips(url, "DROP INDEX t_v; DELETE FROM t")
        # --no-tablespaces: everything in the database's default tablespace
        snap = self.ok("-d", url, "-b", self.path("backups"), "--json", "backup", "--name",
                       "nots", "--no-tablespaces").json()["path"]
        other = self.pg_new_db()
        self.ok("--json", "verify", snap, "--restore-to", other)
        def no_ts(text):
            return [l for l in text.splitlines() if not l.startswith("SET default_tablespace")]
        self.assertEqual(no_ts(self.schema(url)), no_ts(self.schema(other)))
        self.assertEqual(self.psql(other, "SELECT count(*) FROM pg_class WHERE reltablespace <> 0 "
                                          "AND relnamespace = 'public'::regnamespace"), "0")

    # -- one application role owns everything ---------------------------------
    APP = "sm_fid_app"

    def as_user(self, url, user):
        u = urllib.parse.urlsplit(url)
        return u._replace(netloc="%s@%s" % (user, u.netloc.split("@")[-1])).geturl()

    def app_db(self):
        """A database owned by the application role, and everything in it
        created by that role."""
        url = self.pg_new_db()
        self.psql_admin('ALTER DATABASE "%s" OWNER TO %s' % (pg_dbname(url), self.APP))
        self.psql(self.as_user(url, self.APP), """
            CREATE SCHEMA shop;
            CREATE SEQUENCE shop.order_no START 1000;
            CREATE TABLE shop.customers (id serial PRIMARY KEY, name text NOT NULL);
            CREATE TABLE shop.orders (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                no int NOT NULL DEFAULT nextval('shop.order_no'),
                customer_id int REFERENCES shop.customers,
                total numeric);
            CREATE TABLE public.settings (k text PRIMARY KEY, v text, n bigserial);
            CREATE VIEW shop.customer_orders AS
                SELECT c.id, c.name, count(o.id) AS n FROM shop.customers c
                LEFT JOIN shop.orders o ON o.customer_id = c.id GROUP BY c.id;
            CREATE MATERIALIZED VIEW shop.totals AS SELECT customer_id, sum(total) FROM shop.orders
                GROUP BY customer_id;
            CREATE FUNCTION shop.add_customer(n text) RETURNS int LANGUAGE sql
                AS $$ INSERT INTO shop.customers (name) VALUES (n) RETURNING id $$;
            CREATE PROCEDURE shop.noop() LANGUAGE plpgsql AS $$BEGIN END$$;
            CREATE TYPE shop.status AS ENUM ('new', 'paid');
            CREATE DOMAIN shop.money_amount AS numeric CHECK (VALUE >= 0);
            COMMENT ON TABLE shop.orders IS 'orders';
            SELECT shop.add_customer('Ann'), shop.add_customer('Bo');
            INSERT INTO shop.orders (customer_id, total) VALUES (1, 10), (2, 5.5), (1, 1);
            INSERT INTO public.settings VALUES ('a', 'b');
            REFRESH MATERIALIZED VIEW shop.totals;
        """)
        return url

    def test_one_application_role(self):
        self.psql_admin("DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '%s') "
                        "THEN CREATE ROLE %s LOGIN; END IF; "
                        "IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sm_fid_super') "
                        "THEN CREATE ROLE sm_fid_super LOGIN SUPERUSER; END IF; END$$"
                        % (self.APP, self.APP))
        url = self.app_db()
        app = self.as_user(url, self.APP)
        self.assertEqual(self.psql(url, "SELECT count(*) FROM pg_class c JOIN pg_namespace n "
                                        "ON n.oid = c.relnamespace WHERE n.nspname IN "
                                        "('shop', 'public') AND relowner <> '%s'::regrole"
                                        % self.APP), "0")
        before = self.state(url)
        self.oracle(url, before)
        # backed up by a superuser, restored by a different superuser
        snap = self.backup(url)
        self.ok("verify", snap, "--restore-to", self.pg_new_db())
        other = self.pg_new_db()
        self.ok("-d", self.as_user(url, "sm_fid_super"), "-b", self.path("backups"), "--yes",
                "restore", snap, "--to", self.as_user(other, "sm_fid_super"),
                "--no-safety-backup")
        self.assertSameState(before, self.state(other), "restore by another superuser")
        # backed up and restored by the owner itself: into a database it owns,
        # and in place
        snap = self.backup(app, "by_owner")
        mine = self.pg_new_db()
        self.psql_admin('ALTER DATABASE "%s" OWNER TO %s' % (pg_dbname(mine), self.APP))
        self.ok("-d", app, "-b", self.path("backups"), "--yes", "restore", snap, "--to",
                self.as_user(mine, self.APP), "--no-safety-backup")
        self.assertSameState(before, self.state(mine), "restore --to by the owner")
        self.psql(app, "DROP VIEW shop.customer_orders; DELETE FROM shop.orders; "
                       "INSERT INTO shop.customers (name) VALUES ('new')")
        self.ok("-d", app, "-b", self.path("backups"), "--yes", "restore", snap)
        self.assertSameState(before, self.state(url), "restore in place by the owner")
        # and it keeps working for the application
        self.psql(app, "INSERT INTO shop.orders (customer_id, total) VALUES (2, 1)")
        self.assertEqual(self.psql(app, "SELECT max(no) FROM shop.orders"), "1003")

    def test_a_table_the_role_cannot_read(self):
        """The application role backs up a database holding a table another
        role owns and did not grant: the backup fails at once, naming the
        table and the permission, and does not claim it waited for a lock."""
        self.psql_admin("DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '%s') "
                        "THEN CREATE ROLE %s LOGIN; END IF; END$$" % (self.APP, self.APP))
        url = self.app_db()
        self.psql(url, "CREATE TABLE public.admins_only (x int)")
        r = self.run_sm("-d", self.as_user(url, self.APP), "-b", self.path("backups"), "backup")
        self.assertEqual(r.code, 1, r)
        self.assertIn("cannot lock the tables for the snapshot", r.err)
        self.assertIn("permission denied", r.err)
        self.assertIn("admins_only", r.err)
        self.assertNotIn("waited", r.err)

    def label_provider(self):
        """Where tests/pg/sm_label.so is, copied to a directory that the
        server's user can read (the build tree need not be)."""
        self.require(LABEL_SO and os.path.exists(LABEL_SO),
                     "tests/pg/sm_label.c is not built (SM_LABEL_SO)", "security label",
                     "needs postgresql-server-dev-15")
        d = tempfile.mkdtemp(prefix="sm-label-")
        self.addCleanup(shutil.rmtree, d, True)
        os.chmod(d, 0o755)
        so = os.path.join(d, "sm_label.so")
        shutil.copyfile(LABEL_SO, so)
        os.chmod(so, 0o755)
        return so

    def provide_labels(self, url, so):
        """Every new session of url's database loads the provider (RESET
        when so is None)."""
        self.psql_admin('ALTER DATABASE "%s" %s' % (
            pg_dbname(url), "RESET session_preload_libraries" if so is None else
            "SET session_preload_libraries = '%s'" % so))
        return url

    def test_security_labels_round_trip(self):
        """Security labels, set with the tests' own provider (sm_label.c),
        on objects in a schema and outside every schema (a large object, a
        language, an event trigger, a publication) come back with restore --to, --to
        --jobs 2 and in place: pg_dump -s (which dumps them) and
        pg_seclabels agree with the source.  Into a target whose sessions
        lack the provider the restore fails, and in place it changes
        nothing."""
        so = self.label_provider()
        url = self.provide_labels(self.pg_new_db(), so)
        self.psql(url, """
            CREATE SCHEMA lab;
            CREATE TABLE lab.t (id int PRIMARY KEY, "Odd col" text);
            INSERT INTO lab.t SELECT g, 'r' || g FROM generate_series(1, 100) g;
            CREATE VIEW lab.v AS SELECT id FROM lab.t;
            CREATE MATERIALIZED VIEW lab.mv AS SELECT count(*) AS n FROM lab.t;
            CREATE SEQUENCE lab.s;
            CREATE FUNCTION lab.f(int) RETURNS int LANGUAGE sql AS 'SELECT $1';
            CREATE DOMAIN lab.d AS int CHECK (VALUE > 0);
            CREATE TYPE lab.e AS ENUM ('a', 'b');
            SELECT lo_create(4343);
            CREATE FUNCTION lab.evt() RETURNS event_trigger LANGUAGE plpgsql AS 'BEGIN END';
            CREATE EVENT TRIGGER lab_evt ON ddl_command_end EXECUTE FUNCTION lab.evt();
            CREATE PUBLICATION lab_pub FOR TABLE lab.t;
            CREATE LANGUAGE lab_lang HANDLER plpgsql_call_handler;
            SECURITY LABEL FOR smtest ON SCHEMA lab IS 'internal';
            SECURITY LABEL FOR smtest ON TABLE lab.t IS 'secret ''quoted''';
            SECURITY LABEL FOR smtest ON COLUMN lab.t."Odd col" IS 'public';
            SECURITY LABEL FOR smtest ON VIEW lab.v IS 'public';
            SECURITY LABEL FOR smtest ON MATERIALIZED VIEW lab.mv IS 'internal';
            SECURITY LABEL FOR smtest ON SEQUENCE lab.s IS 'internal';
            SECURITY LABEL FOR smtest ON FUNCTION lab.f(int) IS 'public';
            SECURITY LABEL FOR smtest ON DOMAIN lab.d IS 'internal';
            SECURITY LABEL FOR smtest ON TYPE lab.e IS 'public';
            SECURITY LABEL FOR smtest ON LARGE OBJECT 4343 IS 'internal';
            SECURITY LABEL FOR smtest ON EVENT TRIGGER lab_evt IS 'public';
            SECURITY LABEL FOR smtest ON PUBLICATION lab_pub IS 'internal';
            SECURITY LABEL FOR smtest ON LANGUAGE lab_lang IS 'public';
        """)
        labels = self.psql(url, LABELS_SQL)
        self.assertEqual(len(labels.splitlines()), 13, labels)
        before = self.state(url)
        self.assertIn('SECURITY LABEL FOR smtest ON COLUMN lab.t."Odd col"', before[0])
        snap = self.backup(url)
        for jobs in ([], ["--jobs", "2"]):
            with self.subTest(jobs=jobs):
                other = self.provide_labels(self.pg_new_db(), so)
                self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap, "--to",
                        other, "--no-safety-backup", *jobs)
                self.assertSameState(before, self.state(other), "restore --to %s" % jobs)
                self.assertEqual(labels, self.psql(other, LABELS_SQL))
        # in place, over changed and removed labels
        self.psql(url, """SECURITY LABEL FOR smtest ON TABLE lab.t IS 'public';
                          SECURITY LABEL FOR smtest ON COLUMN lab.t."Odd col" IS NULL;
                          SECURITY LABEL FOR smtest ON LARGE OBJECT 4343 IS NULL""")
        self.assertNotEqual(labels, self.psql(url, LABELS_SQL))
        self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap,
                "--no-safety-backup")
        self.assertSameState(before, self.state(url), "restore in place")
        self.assertEqual(labels, self.psql(url, LABELS_SQL))
        # the target's sessions without the provider: the restore fails on
        # the first label and, in place, rolls back whole
        other = self.pg_new_db()
        r = self.run_sm("-d", url, "-b", self.path("backups"), "--yes", "restore", snap, "--to",
                        other, "--no-safety-backup")
        self.assertNotEqual(r.code, 0, r)
        self.assertIn("smtest", r.err)
        self.provide_labels(url, None)
        self.psql(url, """UPDATE lab.t SET "Odd col" = 'changed' WHERE id = 1""")
        changed = self.state(url)
        r = self.run_sm("-d", url, "-b", self.path("backups"), "--yes", "restore", snap,
                        "--no-safety-backup")
        self.assertNotEqual(r.code, 0, r)
        self.assertIn("smtest", r.err)
        self.assertSameState(changed, self.state(url), "a failed restore in place")
        self.assertEqual(labels, self.psql(url, LABELS_SQL))


# Legacy bytes that are not UTF-8 (Latin-1 é, ï, ÿ, þ), and a valid UTF-8
# sequence beside them that must stay those very bytes too
LEGACY_SQL = b"""
    CREATE SCHEMA legacy;
    COMMENT ON SCHEMA legacy IS 'sch\xe9ma';
    CREATE TYPE legacy.mood AS ENUM ('ok', 'caf\xe9');
    CREATE DOMAIN legacy.label AS text CHECK (VALUE <> 'nul\xef');
    CREATE FUNCTION legacy.greet(n text) RETURNS text LANGUAGE sql
        AS $$ SELECT 'h\xe9llo ' || n $$;
    CREATE FUNCTION legacy.shout() RETURNS text LANGUAGE plpgsql
        AS $$ BEGIN RETURN 'r\xe9sum\xe9'; END $$;
    -- text COPY (an enum column)
    CREATE TABLE legacy.t (id int PRIMARY KEY, s text DEFAULT 'd\xe9faut',
                           v varchar(20), a text[], j jsonb, js json, m legacy.mood,
                           l legacy.label, CHECK (s <> 'interdit\xe9'));
    INSERT INTO legacy.t VALUES
        (1, 'caf\xe9', 'na\xefve', ARRAY['\xff\xfe', 'x'], '{"k": "v\xe9"}', '"\xe9"',
         'caf\xe9', 'lab\xe9l'),
        (2, 'caf\xc3\xa9', 'plain', '{}', 'null', 'null', 'ok', NULL),
        (3, E'tab\\t\\\\\xe9', NULL, NULL, NULL, NULL, NULL, NULL);
    INSERT INTO legacy.t (id) VALUES (4);
    -- binary COPY (built-in types only)
    CREATE TABLE legacy.b (id int PRIMARY KEY, s text, v varchar(20), a text[], j jsonb);
    INSERT INTO legacy.b SELECT g, 'caf\xe9 ' || g, 'na\xefve', ARRAY['\xfe' || g], '{"\xe9": 1}'
        FROM generate_series(1, 500) g;
    COMMENT ON TABLE legacy.t IS 'na\xefve';
    COMMENT ON COLUMN legacy.t.s IS '\xff\xfe';
    CREATE VIEW legacy.v AS SELECT id, s || ' \xe9t\xe9' AS s2 FROM legacy.t;
    CREATE INDEX t_s_idx ON legacy.t (s) WHERE s <> 'x\xe9';
"""


class PgSqlAsciiTest(CliTest):
    """A SQL_ASCII database holding bytes that are not UTF-8, as legacy
    databases do: the snapshot is read, and restored, in SQL_ASCII (as
    pg_dump does, in the database's encoding), so every byte comes back as
    it was; the oracle is pg_dump -s and the rows' COPY bytes."""

    def setUp(self):
        super().setUp()
        self.require_pg()
        # psql and pg_dump take and give the bytes as they are (a SQL_ASCII
        # client), whatever the environment says
        self.client_env = dict(os.environ, PGCLIENTENCODING="SQL_ASCII")

    def new_db(self, encoding="SQL_ASCII"):
        """A new database of that encoding (C locale, which any encoding
        takes); its URL."""
        name = "sm_" + uuid.uuid4().hex[:12]
        self.psql_admin("CREATE DATABASE \"%s\" ENCODING '%s' TEMPLATE template0 "
                        "LC_COLLATE 'C' LC_CTYPE 'C'" % (name, encoding))
        self._pg_dbs.append(name)
        return urllib.parse.urlsplit(PG_URL)._replace(path="/" + name).geturl()

    def sql(self, url, sql):
        """Runs sql (bytes) with psql; its output, bytes."""
        r = subprocess.run(["psql", url, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"],
                           input=sql, capture_output=True, env=self.client_env)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def schema(self, url):
        """pg_dump -s, owners and grants included, as bytes (in the
        database's encoding: both sides the same options)."""
        r = subprocess.run(["pg_dump", "--schema-only", url], capture_output=True, check=True,
                           env=self.client_env)
        return b"\n".join(l for l in r.stdout.splitlines()
                          if l.strip() and not l.startswith(b"--") and not l.startswith(b"\\"))

    def state(self, url):
        """pg_dump -s and the bytes COPY gives of every table's rows."""
        rows = {}
        for t in ("legacy.t", "legacy.b"):
            rows[t] = self.sql(url, b"COPY (SELECT * FROM %s ORDER BY id) TO STDOUT" % t.encode())
        return self.schema(url), rows

    def assertSameState(self, expected, actual, what):
        self.assertEqual(expected[0], actual[0], "%s: schema (pg_dump -s) differs" % what)
        self.assertEqual(expected[1], actual[1], "%s: rows differ" % what)

    def legacy_db(self):
        url = self.new_db()
        self.sql(url, LEGACY_SQL)
        return url

    def backup(self, url, *extra, name="snap"):
        return self.ok("-d", url, "-b", self.path("backups"), "--json", "backup", "--name", name,
                       *extra).json()["path"]

    def restore_to(self, snap, target, *extra):
        return self.run_sm("-b", self.path("backups"), "--yes", "restore", snap, "--to", target,
                           "--no-safety-backup", *extra)

    def test_sql_ascii_round_trips(self):
        url = self.legacy_db()
        before = self.state(url)
        self.assertIn(b"caf\xe9", before[0])  # the enum label, in pg_dump -s
        self.assertIn(b"na\xefve", before[1]["legacy.t"])
        # the oracle: pg_dump | pg_restore into another SQL_ASCII database
        other = self.new_db()
        dump = subprocess.run(["pg_dump", "-Fc", url], capture_output=True, check=True,
                              env=self.client_env).stdout
        subprocess.run(["pg_restore", "--exit-on-error", "-d", other], input=dump,
                       capture_output=True, check=True, env=self.client_env)
        self.assertSameState(before, self.state(other), "pg_dump/pg_restore (oracle)")

        snap = self.backup(url)
        self.assertSameState(before, self.state(url), "taking the snapshot")
        toc = json.loads(subprocess.run(["tar", "--zstd", "-xOf", snap, "pg/toc.json"],
                                        capture_output=True, check=True).stdout)
        self.assertEqual(toc["encoding"], "SQL_ASCII")
        self.assertEqual({t["qualified"]: t.get("format") for t in toc["tables"]},
                         {"legacy.t": None, "legacy.b": "binary"})
        # the manifest is JSON that any reader takes (strict UTF-8)
        manifest = subprocess.run(["tar", "--zstd", "-xOf", snap, "manifest.json"],
                                  capture_output=True, check=True).stdout
        self.assertEqual(json.loads(manifest.decode("utf-8"))["extra"]["encoding"], "SQL_ASCII")
        self.ok("verify", snap)

        for what, extra in (("restore --to", ()), ("restore --to --jobs 2", ("--jobs", "2"))):
            other = self.new_db()
            r = self.restore_to(snap, other, *extra)
            self.assertEqual(r.code, 0, r)
            self.assertSameState(before, self.state(other), what)
        # the restored copy reads back with the schema fingerprint and the
        # table checksums recorded: both sides in SQL_ASCII
        scratch = self.new_db()
        r = self.ok("--json", "verify", snap, "--restore-to", scratch)
        self.assertTrue(r.json()["ok"], r)
        self.assertIn("table checksums", r.err)
        self.assertSameState(before, self.state(scratch), "verify --restore-to")
        r = self.ok("--json", "verify", snap, "--restore-to", self.new_db(), "--jobs", "2")
        self.assertTrue(r.json()["ok"], r)

        # backup --jobs 2: every connection reads in SQL_ASCII
        par = self.backup(url, "--jobs", "2", name="par")
        other = self.new_db()
        r = self.restore_to(par, other)
        self.assertEqual(r.code, 0, r)
        self.assertSameState(before, self.state(other), "backup --jobs 2")
        r = self.ok("--json", "verify", par, "--restore-to", self.new_db())
        self.assertTrue(r.json()["ok"], r)

        # in place, after damage
        self.sql(url, b"UPDATE legacy.t SET s = 'chang\xe9'; DELETE FROM legacy.b WHERE id > 3; "
                      b"COMMENT ON TABLE legacy.t IS 'x'; DROP FUNCTION legacy.greet(text);")
        self.assertNotEqual(before, self.state(url))
        self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap,
                "--no-safety-backup")
        self.assertSameState(before, self.state(url), "restore in place")
        self.assertEqual(self.sql(url, b"SELECT legacy.greet('x'), legacy.shout()"),
                         b"h\xe9llo x|r\xe9sum\xe9\n")

    def test_sql_ascii_snapshot_into_a_utf8_database_fails_cleanly(self):
        """The server refuses the bytes that are not UTF-8 (as it does to
        pg_restore): the one-transaction restore changes nothing and says
        what database would take them."""
        url = self.legacy_db()
        snap = self.backup(url)
        target = self.new_db("UTF8")
        self.sql(target, b"CREATE TABLE keep (x int); INSERT INTO keep VALUES (1)")
        r = self.restore_to(snap, target)
        self.assertEqual(r.code, 1, r)
        self.assertIn("invalid byte sequence", r.err)
        self.assertIn("ENCODING 'SQL_ASCII'", r.err)
        self.assertEqual(self.sql(target, b"SELECT count(*) FROM pg_namespace WHERE "
                                          b"nspname = 'legacy'"), b"0\n")
        self.assertEqual(self.sql(target, b"SELECT x FROM keep"), b"1\n")
        # verify --restore-to: a snapshot that cannot be restored there
        r = self.code(7, "verify", snap, "--restore-to", self.new_db("UTF8"))
        self.assertIn("cannot be restored", r.out)

    def test_sql_ascii_names_that_are_not_utf8_are_refused(self):
        """The toc and the manifest are JSON, which holds UTF-8: a name that
        is not (a table, a column, a schema) fails the backup before
        anything is written, naming each object; the data, comments and
        function bodies are SQL and COPY bytes, and are kept."""
        url = self.new_db()
        self.sql(url, b'CREATE SCHEMA "s\xe9"; CREATE TABLE "s\xe9".ok (x int); '
                      b'CREATE TABLE "caf\xe9" (id int PRIMARY KEY, "na\xefve" text); '
                      b"COMMENT ON TABLE \"caf\xe9\" IS 'na\xefve'")
        r = self.code(1, "-d", url, "-b", self.path("backups"), "backup")
        self.assertIn("not valid UTF-8", r.err)
        for name in ('table public."caf\\xe9" (id, "na\\xefve")', 'TABLE "s\\xe9".ok',
                     "; s\\xe9;"):
            self.assertIn(name, r.err)
        self.assertFalse(os.path.exists(self.path("backups")) and
                         [f for f in os.listdir(self.path("backups")) if f.endswith(".zst")])
        # renamed, the same database is taken and comes back byte for byte
        self.sql(url, b'ALTER SCHEMA "s\xe9" RENAME TO s; ALTER TABLE "caf\xe9" RENAME TO cafe; '
                      b'ALTER TABLE cafe RENAME "na\xefve" TO naive; '
                      b'ALTER INDEX "caf\xe9_pkey" RENAME TO cafe_pkey; '
                      b"INSERT INTO cafe VALUES (1, 'na\xefve')")
        snap = self.backup(url)
        other = self.new_db()
        r = self.restore_to(snap, other)
        self.assertEqual(r.code, 0, r)
        self.assertEqual(self.schema(url), self.schema(other))
        self.assertEqual(self.sql(other, b"SELECT naive, obj_description('cafe'::regclass) "
                                         b"FROM cafe"), b"na\xefve|na\xefve\n")

    def test_sql_ascii_pipeline_restores_the_bytes(self):
        """safe-migrate on a SQL_ASCII database: snapshot, apply, validate;
        a run that fails after a committed migration is restored (exit 5),
        with every byte as it was, checked by the pipeline against the
        snapshot's table checksums (read in SQL_ASCII on both sides)."""
        url = self.legacy_db()
        base = ["-d", url, "-b", self.path("backups")]
        self.write("migrations/0001_base.sql",
                   "-- migrate:up\nCREATE TABLE legacy.base (x int);\n")
        r = self.ok(*base, "safe-migrate")
        self.assertIn("applied 0001", r.out)
        before = self.state(url)
        self.write("migrations/0002_change.sql",
                   "-- migrate:up\nUPDATE legacy.t SET s = 'changed', a = NULL;\n"
                   "COMMENT ON TABLE legacy.t IS 'plain';\nDROP VIEW legacy.v;\n")
        self.write("migrations/0003_fail.sql", "-- migrate:up\nSELECT 1/0;\n")
        r = self.run_sm(*base, "safe-migrate", "--json")
        self.assertEqual(r.code, 5, r)
        self.assertEqual(r.json()["outcome"], "restored")
        self.assertSameState(before, self.state(url), "the automatic restore")

    def test_migrations_keep_their_characters_in_a_latin1_database(self):
        # migration files are UTF-8: the run's session speaks UTF-8 and the
        # server converts (libpq's default, the database's own encoding,
        # stored 'caf\xc3\xa9'); a client encoding the user chose is theirs
        url = self.new_db("LATIN1")
        self.write("migrations/0001_a.sql", "-- migrate:up\nCREATE TABLE \"donn\u00e9es\" "
                   "(id int PRIMARY KEY, s text);\nINSERT INTO \"donn\u00e9es\" VALUES "
                   "(1, 'caf\u00e9');\n")
        self.write("migrations/0002_b.sql", "-- migrate:up\nINSERT INTO \"donn\u00e9es\" "
                   "VALUES (2, 'na\u00efve');\n")
        base = ["-d", url, "-b", self.path("backups")]
        self.ok(*base, "safe-migrate", "0001")
        self.ok(*base, "upgrade")
        self.assertEqual(self.sql(url, b'SELECT s FROM "donn\xe9es" ORDER BY id'),
                         b"caf\xe9\nna\xefve\n")
        # what the checks read back is UTF-8 too
        self.assertIn("table\tdonn\u00e9es\n", self.ok(*base, "schema").out)
        # whatever PGCLIENTENCODING says: the files are UTF-8
        self.write("migrations/0003_c.sql", "-- migrate:up\nINSERT INTO \"donn\u00e9es\" "
                   "VALUES (3, 'd\u00e9j\u00e0');\n")
        self.ok(*base, "upgrade", env={"PGCLIENTENCODING": "LATIN1"})
        self.assertEqual(self.sql(url, b'SELECT s FROM "donn\xe9es" WHERE id = 3'),
                         b"d\xe9j\xe0\n")
        # and a SQL_ASCII database takes the file's bytes as they are, even
        # under PGCLIENTENCODING=UTF8 (which cannot read its other bytes)
        url = self.new_db("SQL_ASCII")
        self.sql(url, b"CREATE TABLE legacy (s text); INSERT INTO legacy VALUES ('caf\xe9')")
        self.write("migrations/0001_a.sql", "-- migrate:up\nINSERT INTO legacy VALUES "
                   "('na\u00efve');\n")
        for name in ("0002_b.sql", "0003_c.sql"):
            os.unlink(self.path("migrations", name))
        self.ok("-d", url, "-b", self.path("backups"), "safe-migrate",
                env={"PGCLIENTENCODING": "UTF8"})
        self.assertEqual(self.sql(url, b"SELECT s FROM legacy ORDER BY s"),
                         b"caf\xe9\nna\xc3\xafve\n")

    def test_mule_internal_round_trips(self):
        """MULE_INTERNAL, the other server encoding with no conversion to
        UTF8: read and restored in its own encoding."""
        url = self.new_db("MULE_INTERNAL")
        # Latin-1 'café', which the server stores as MULE_INTERNAL's bytes
        self.sql(url, b"SET client_encoding = 'LATIN1';\n"
                      b"CREATE TABLE m (id int PRIMARY KEY, s text);\n"
                      b"INSERT INTO m VALUES (1, 'caf\xe9');\n"
                      b"COMMENT ON TABLE m IS 'na\xefve';\n")
        rows = b"SELECT encode(convert_to(s || obj_description('m'::regclass), " \
               b"'MULE_INTERNAL'), 'hex') FROM m"
        want = self.sql(url, rows)
        self.assertIn(b"81e9", want)  # a Latin-1 character in MULE_INTERNAL
        snap = self.backup(url)
        self.assertEqual(snapshot_manifest(snap)["extra"]["encoding"], "MULE_INTERNAL")
        scratch = self.new_db("MULE_INTERNAL")
        r = self.ok("--json", "verify", snap, "--restore-to", scratch)
        self.assertTrue(r.json()["ok"], r)
        self.assertEqual(self.sql(scratch, rows), want)
        self.assertEqual(self.schema(url), self.schema(scratch))


class PgInheritOrderTest(CliTest):
    """Inheritance children whose column order CREATE TABLE ... INHERITS
    cannot give (tests/fixtures/pg_inherit_order.sql) come back in their own
    order: their rows read the same through SELECT * and take a positional
    INSERT the same.  pg_dump shares the limitation (bar --binary-upgrade),
    so it is no oracle here: the source's catalog is.  The one difference,
    documented in docs/snapshot-postgresql.md: a column (or check) the child
    only inherited comes back its own as well (attislocal, conislocal)."""

    # the children created with their own column list, then ALTER TABLE
    # ... INHERIT (adopted's columns were all its own already: it comes
    # back the same in every respect)
    REORDERED = ("c", "adopted", "mc", "qc", "dc", "g2")
    # what they only inherited and get back as their own as well
    LOCALIZED = {"c": ("a", "x"), "mc": ("id", "s", "k", "late"), "qc": ("a", "n", "g", "t"),
                 "dc": ("a", "e"), "g2": ("a", "y", "g_pos")}

    CATALOG_SQL = r"""
        SELECT 'column ' || c.relname || '.' || a.attname || ' #' ||
               row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum) || ' ' ||
               format_type(a.atttypid, a.atttypmod) || ' notnull=' || a.attnotnull ||
               ' inh=' || a.attinhcount || ' default=' ||
               coalesce(pg_get_expr(d.adbin, d.adrelid), '-') || ' gen=' || a.attgenerated::text ||
               ' ident=' || a.attidentity::text || ' coll=' || a.attcollation::regcollation ||
               ' local=' || a.attislocal
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = 'inh'::regnamespace AND c.relkind = 'r' AND a.attnum > 0
        AND NOT a.attisdropped
        UNION ALL
        SELECT 'check ' || c.relname || '.' || k.conname || ' ' || pg_get_constraintdef(k.oid) ||
               ' inh=' || k.coninhcount || ' valid=' || k.convalidated || ' local=' || k.conislocal
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
        WHERE c.relnamespace = 'inh'::regnamespace
        UNION ALL
        SELECT 'inherits ' || i.inhrelid::regclass || ' ' || i.inhparent::regclass || ' ' ||
               i.inhseqno FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE c.relnamespace = 'inh'::regnamespace
        ORDER BY 1"""

    # each table's own rows as SELECT * gives them
    ROWS_SQL = r"""
        SELECT format('SELECT %L || '': '' || coalesce(string_agg(t::text, '' '' ORDER BY '
                      't::text), '''') FROM ONLY inh.%I t', c.relname, c.relname)
        FROM pg_class c WHERE c.relnamespace = 'inh'::regnamespace AND c.relkind = 'r'
        ORDER BY c.relname \gexec
    """

    def setUp(self):
        super().setUp()
        self.require_pg()

    load = test_snapshot_pg.SnapshotPgTest.load

    def state(self, url):
        rows = subprocess.run(["psql", url, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"],
                              input=self.ROWS_SQL, capture_output=True, text=True,
                              check=True).stdout
        return self.pg_schema_dump(url), self.psql(url, self.CATALOG_SQL), rows

    def expected_catalog(self, source):
        """The source's catalog with the documented difference made."""
        out = []
        for line in source.splitlines():
            kind, name = line.split(" ", 2)[:2]
            table, obj = name.split(".", 1) if "." in name else (name, None)
            if kind in ("column", "check") and obj in self.LOCALIZED.get(table, ()):
                self.assertTrue(line.endswith(" local=false"), line)
                line = line[:-len("false")] + "true"
            out.append(line)
        return "\n".join(out)

    def assertRestored(self, before, after, what):
        self.assertEqual(before[2], after[2], "%s: rows (SELECT *) differ" % what)
        self.assertEqual(self.expected_catalog(before[1]), after[1],
                         "%s: catalog differs" % what)
        # pg_dump -s: only the statements that print the localized columns
        # differ (CREATE TABLE lists them; their NOT NULL and default go
        # with them)
        a, b = ({stmt.rstrip(";") for stmt in s.split(";\n")} for s in (before[0], after[0]))
        for stmt in a ^ b:
            self.assertRegex(stmt, r"^(CREATE TABLE|ALTER TABLE ONLY) inh\.(%s) " %
                             "|".join(self.LOCALIZED), "%s: pg_dump -s differs" % what)

    def test_column_order_round_trips(self):
        url = self.pg_new_db()
        self.load(url, os.path.join(FIXTURES, "pg_inherit_order.sql"))
        before = self.state(url)
        self.assertIn("c: (1,b,3)\n", before[2])
        snap = self.ok("-d", url, "-b", self.path("backups"), "--json", "backup").json()["path"]
        # pg_dump's form wherever INHERITS gives the order
        pre = subprocess.run(["tar", "--zstd", "-xOf", snap, "pg/pre-data.sql"],
                             capture_output=True, text=True, check=True).stdout
        self.assertIn("CREATE TABLE inh.plain_c (\n    a integer NOT NULL,\n    b text\n) "
                      "INHERITS (inh.plain);", pre)
        for child in self.REORDERED:
            self.assertRegex(pre, r"ALTER TABLE ONLY inh\.%s INHERIT inh\." % child)
        r = self.ok("--json", "verify", snap, "--restore-to", self.pg_new_db())
        self.assertTrue(r.json()["ok"], r)
        for jobs in ((), ("--jobs", "2")):
            other = self.pg_new_db()
            self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap, "--to",
                    other, "--no-safety-backup", *jobs)
            self.assertRestored(before, self.state(other), "restore --to %s" % " ".join(jobs))
        self.psql(url, "DROP TABLE inh.c; DELETE FROM inh.qc; ALTER TABLE inh.m1 DROP late")
        self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap,
                "--no-safety-backup")
        self.assertRestored(before, self.state(url), "restore in place")
        # a positional INSERT lands as in the source
        self.psql(url, "INSERT INTO inh.c VALUES (4, 'e', 6)")
        self.assertEqual(self.psql(url, "SELECT b || x FROM inh.c WHERE a = 4"), "e6")


class PgMessagesTest(CliTest):
    """Errors are told apart by SQLSTATE, never by the server's message text,
    which is in its lc_messages language.  The server runs in German when
    its translations and a German locale can be had (the locale is compiled
    into a temp dir, LOCPATH); else the same paths are checked in English."""

    def german_locale(self):
        if not glob.glob("/usr/share/locale/de/LC_MESSAGES/postgres-*.mo"):
            return None
        loc = tempfile.mkdtemp(prefix="sm-locale-")
        self.addCleanup(subprocess.run, ["rm", "-rf", loc])
        r = subprocess.run(["localedef", "-i", "de_DE", "-f", "UTF-8",
                            os.path.join(loc, "de_DE.UTF-8")], capture_output=True)
        if r.returncode not in (0, 1) or not os.path.isdir(os.path.join(loc, "de_DE.UTF-8")):
            return None
        os.chmod(loc, 0o755)
        return loc

    def test_errors_are_classified_by_sqlstate(self):
        self.require_pg()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cluster = "/tmp/sm-pgmsg-" + uuid.uuid4().hex[:8]
        script = os.path.join(SRC, "scripts", "pg-cluster.sh")
        env = dict(os.environ, PG_CLUSTER_OPTS="-c max_locks_per_transaction=16 "
                                               "-c max_connections=5")
        loc = self.german_locale()
        if loc:
            env["LOCPATH"] = loc
            env["PG_CLUSTER_OPTS"] += " -c lc_messages=de_DE.UTF-8"
        admin = subprocess.run([script, "start", cluster, str(port)], env=env,
                               capture_output=True, text=True, check=True).stdout.strip()
        self.addCleanup(subprocess.run, [script, "stop", cluster], capture_output=True)
        base = admin.rsplit("/", 1)[0]
        german = loc is not None
        if german:
            r = subprocess.run(["psql", admin, "-X", "-c", "SELECT 1/0"], capture_output=True,
                               text=True)
            german = "Division durch Null" in r.stderr

        # a database that does not exist (libpq gives no SQLSTATE for it)
        r = self.code(1, "-d", base + "/no_such_db", "-b", self.path("backups"), "backup")
        self.assertIn("never creates a PostgreSQL database", r.err)
        if german:
            self.assertIn("existiert nicht", r.err)

        # a statement cancelled by --statement-timeout (57014)
        self.psql(admin, "CREATE DATABASE a")
        self.psql(admin, "CREATE DATABASE b")
        self.write("migrations/0001_slow.sql", "-- migrate:up\nSELECT pg_sleep(5);\n"
                   "-- migrate:down\nSELECT 1;\n")
        r = self.code(1, "-d", base + "/a", "--statement-timeout", "200ms", "upgrade")
        self.assertIn("ran longer than --statement-timeout", r.err)
        self.assertIn("57014", r.err)
        if german:
            self.assertIn("Zeitüberschreitung", r.err)

        # a restore that fails: the server's severity prefix ("FEHLER:  ") is
        # not repeated after ours (the lock-table path, 53200 from the lock
        # manager, is test_snapshot_pg's test_lock_table_too_small)
        self.psql(admin, "CREATE ROLE gone")
        self.psql(base + "/a", "CREATE TABLE t (x int); ALTER TABLE t OWNER TO gone")
        snap = self.ok("-d", base + "/a", "-b", self.path("backups"), "--json", "backup",
                       "--name", "s").json()["path"]
        self.psql(base + "/a", "DROP TABLE t")
        self.psql(admin, "DROP ROLE gone")
        r = self.code(1, "-d", base + "/a", "-b", self.path("backups"), "--yes", "restore",
                      snap, "--to", base + "/b", "--no-safety-backup")
        self.assertIn(": " + ("Rolle" if german else "role"), r.err)
        self.assertNotIn("ERROR:  ", r.err)
        self.assertNotIn("FEHLER:  ", r.err)


if __name__ == "__main__":
    main()
