"""PostgreSQL snapshots of the object kinds beyond tables, types and
functions (issue 16): PostGIS, foreign-data wrappers, servers, user
mappings, foreign tables, collations, row-level security, policies, rules,
publications, event triggers, default privileges; and the refusal of the
kinds no snapshot reproduces.

Each fixture is backed up, restored --to a fresh database, with --jobs 2,
and in place after damage, and compared with the source by pg_dump -s and
row checksums; pg_dump/pg_restore, the oracle, must pass on the same
fixture in the same test.
"""
import glob
import hashlib
import os
import subprocess
import urllib.parse

import test_snapshot_pg
from smtest import CliTest, PG_URL, SRC, main, snapshot_manifest

ZOO = os.path.join(SRC, "tests", "fixtures", "pg_zoo_kinds.sql")
LOBS = os.path.join(SRC, "tests", "fixtures", "pg_zoo_lobs.sql")
PGDUMP_KINDS = os.path.join(SRC, "tests", "fixtures", "pg_zoo_pgdump_kinds.sql")
POSTGIS_CONTROL = "/usr/share/postgresql/15/extension/postgis.control"


class PgKindsTest(CliTest):
    def setUp(self):
        super().setUp()
        self.require_pg()
        for role in ("zoo_owner", "zoo_reader"):
            self.psql_admin("DO $$ BEGIN CREATE ROLE %s; EXCEPTION WHEN duplicate_object "
                            "THEN NULL; END $$" % role)

    def tearDown(self):
        # a database that holds a subscription cannot be dropped: drop them
        # first, slot-less (no slot was made: they never connected)
        for db in self._pg_dbs:
            url = urllib.parse.urlsplit(PG_URL)._replace(path="/" + db).geturl()
            for sub in self.psql(url, "SELECT quote_ident(subname) FROM pg_subscription s JOIN "
                                      "pg_database d ON d.oid = s.subdbid WHERE d.datname = "
                                      "current_database()", check=False).split():
                self.psql(url, "ALTER SUBSCRIPTION %s DISABLE" % sub, check=False)
                self.psql(url, "ALTER SUBSCRIPTION %s SET (slot_name = NONE)" % sub, check=False)
                self.psql(url, "DROP SUBSCRIPTION %s" % sub, check=False)
        super().tearDown()

    def load(self, url, path):
        subprocess.run(["psql", url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", path],
                       capture_output=True, text=True, check=True)

    reseal = test_snapshot_pg.SnapshotPgTest.reseal

    def backup(self, url):
        return self.ok("-d", url, "-b", self.path("backups"), "--json", "backup").json()["path"]

    # every large object: OID, owner, ACL, comment and the MD5 of its data
    LO_SQL = ("SELECT l.oid || '|' || pg_get_userbyid(l.lomowner) || '|' || "
              "coalesce(l.lomacl::text, '-') || '|' || "
              "coalesce(obj_description(l.oid, 'pg_largeobject'), '-') || '|' || "
              "length(lo_get(l.oid)) || '|' || md5(lo_get(l.oid)) "
              "FROM pg_largeobject_metadata l ORDER BY l.oid")

    def state(self, url):
        """pg_state, and the large objects (pg_dump -s leaves them out)."""
        return self.pg_state(url) + (self.psql(url, self.LO_SQL),)

    def assertSameState(self, expected, url):
        actual = self.state(url)
        self.assertEqual(expected[0], actual[0], "schema (pg_dump --schema-only) differs")
        self.assertEqual(expected[1], actual[1], "rows or sequence positions differ")
        self.assertEqual(expected[2], actual[2], "large objects differ")

    def oracle(self, url, before):
        """pg_dump -Fc / pg_restore reproduce the same database."""
        dump = self.path("oracle.dump")
        subprocess.run(["pg_dump", "-Fc", "-f", dump, url], check=True, capture_output=True)
        other = self.pg_new_db()
        subprocess.run(["pg_restore", "--exit-on-error", "-d", other, dump], check=True,
                       capture_output=True)
        self.assertSameState(before, other)

    def round_trips(self, url, damage):
        """--to, --jobs 2 and in place after damage all give back the source."""
        before = self.state(url)
        self.oracle(url, before)
        snap = self.backup(url)
        self.assertSameState(before, url)
        for extra in ([], ["--jobs", "2"]):
            other = self.pg_new_db()
            self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap,
                    "--to", other, *extra)
            self.assertSameState(before, other)
        self.psql(url, damage)
        self.assertNotEqual(before, self.state(url))
        self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap)
        self.assertSameState(before, url)
        return snap

    def test_large_objects(self):
        """Large objects were refused.  Each is backed up with its owner,
        grants and comment, its data streamed into entries of its own (the
        5 MB one in two chunks), and restored in every mode; in place, the
        one unlinked comes back and the one made after the snapshot goes."""
        url = self.pg_new_db()
        self.load(url, LOBS)
        snap = self.round_trips(url, """
            SELECT lo_unlink(4242);
            SELECT lo_from_bytea(0, 'made after the snapshot');
            SELECT lo_put(70000, 1000, 'XXXX');
            COMMENT ON LARGE OBJECT 70000 IS 'changed';
            REVOKE SELECT ON LARGE OBJECT 70001 FROM PUBLIC;
            ALTER LARGE OBJECT 17 OWNER TO zoo_reader;
        """)
        self.assertEqual(len(self.psql(url, self.LO_SQL).splitlines()), 4)
        names = subprocess.run(["tar", "--zstd", "-tf", snap], capture_output=True, text=True,
                               check=True).stdout.split()
        self.assertIn("pg/blobs/000002.bin.0001", names)  # the 5 MB one: two chunks
        extra = snapshot_manifest(snap)["extra"]
        self.assertEqual(extra["large_objects"], 4)
        self.assertEqual(extra["large_object_bytes"], 19 + 5 + 5120000 + 5)
        # the restored copy is what the snapshot recorded (fingerprint: the
        # large objects' OIDs, owners, grants and comments; content
        # checksums: their data, read back as a table's rows are)
        r = self.ok("verify", snap, "--restore-to", self.pg_new_db())
        self.assertIn("table checksums", r.err)
        sum4242 = extra["table_sha256"]["large object 4242"]
        self.assertEqual(sum4242, hashlib.sha256(b"hello, large object").hexdigest())
        self.reseal(snap, sum4242.encode(), ("0" * 64).encode())
        r = self.code(7, "--json", "verify", snap, "--restore-to", self.pg_new_db())
        problems = r.json()["problems"]
        self.assertTrue(any("large object 4242" in p and "content" in p for p in problems),
                        problems)

    def test_large_object_data_damage_changes_nothing(self):
        """A large object's data entry that fails its checksum rolls the
        in-place restore back, like a table's."""
        url = self.pg_new_db()
        self.load(url, LOBS)
        snap = self.backup(url)
        self.psql(url, "SELECT lo_unlink(4242)")
        before = self.state(url)
        # the file checks out against its sidecar; the entry does not
        self.reseal(snap, b"hello, large object", b"jello, large object")
        r = self.code(7, "-d", url, "-b", self.path("backups"), "--yes", "restore", snap,
                      "--no-safety-backup")
        self.assertIn("nothing was changed", r.err)
        self.assertSameState(before, url)

    def test_zoo_of_kinds(self):
        url = self.pg_new_db()
        self.load(url, ZOO)
        self.round_trips(url, """
            DROP POLICY own_rows ON zoo.accounts;
            ALTER TABLE zoo.accounts DISABLE ROW LEVEL SECURITY;
            DROP RULE keep_deleted ON zoo.events;
            DELETE FROM zoo.events WHERE id > 15;
            DROP USER MAPPING FOR PUBLIC SERVER zoo_remote;
            ALTER SERVER zoo_other OPTIONS (ADD extra 'x');
            REVOKE USAGE ON FOREIGN SERVER zoo_remote FROM zoo_reader;
            DROP PUBLICATION zoo_some;
            ALTER PUBLICATION zoo_all SET (publish = 'delete');
            ALTER EVENT TRIGGER zoo_drop ENABLE;
            ALTER DEFAULT PRIVILEGES FOR ROLE zoo_owner REVOKE SELECT ON TABLES FROM zoo_reader;
            ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
            DROP COLLATION zoo.c_bytes CASCADE;
            DROP TABLE zoo.car;
            GRANT EXECUTE ON FUNCTION pg_catalog.pg_sleep(double precision) TO PUBLIC;
            REVOKE SELECT ON pg_catalog.pg_statistic FROM zoo_reader;
            ALTER TABLE zoo.points ALTER COLUMN y SET DEFAULT 9;
        """)
        # the restored objects work: the rule archives, the policy filters
        self.psql(url, "DELETE FROM zoo.events WHERE id = 1")
        self.assertEqual(self.psql(url, "SELECT count(*) FROM zoo.archive"), "1")
        self.assertEqual(self.psql(url, "SELECT count(*) FROM pg_user_mappings "
                                        "WHERE srvname = 'zoo_remote'"), "2")

    def test_pgdump_suite_kinds(self):
        """The kinds pg_dump's own test suite creates (002_pg_dump.pl), in
        one database: every restore mode gives back what pg_dump's does."""
        self.psql_admin("DO $$ BEGIN CREATE ROLE \"zoo \"\"quoted\"\" role\"; EXCEPTION WHEN "
                        "duplicate_object THEN NULL; END $$")
        url = self.pg_new_db()
        self.load(url, PGDUMP_KINDS)
        snap = self.round_trips(url, """
            ALTER SCHEMA public OWNER TO CURRENT_USER;
            COMMENT ON SCHEMA public IS 'back';
            ALTER TABLE ONLY pgk.nv_parent DROP CONSTRAINT nv_positive;
            DROP TABLE pgk.gen_child_own;
            DELETE FROM pgk.items WHERE id > 6;
            DROP STATISTICS pgk.st_kinds;
            DROP MATERIALIZED VIEW pgk.mv4;
            REFRESH MATERIALIZED VIEW pgk.mv3;
            ALTER TYPE pgk.colour ADD VALUE 'black';
            DROP OPERATOR CLASS pgk.big_empty USING btree;
            DROP CAST (timestamptz AS interval);
            DROP TEXT SEARCH CONFIGURATION pgk.eng_copy;
            DROP PUBLICATION pgk_filtered;
            ALTER TABLE pgk_side.readings_feb ENABLE TRIGGER readings_log;
            ALTER DEFAULT PRIVILEGES FOR ROLE zoo_reader GRANT SELECT ON TABLES TO zoo_reader;
            REVOKE SELECT (proname) ON TABLE pg_catalog.pg_proc FROM zoo_reader;
            GRANT SELECT ON TABLE pg_catalog.pg_proc TO PUBLIC;
            SELECT lo_unlink(91002);
        """)
        # the NOT VALID check both local and inherited stays both
        self.assertEqual(self.psql(url, "SELECT conislocal, coninhcount, convalidated FROM "
                                        "pg_constraint WHERE conname = 'nv_positive' AND "
                                        "conrelid = 'pgk.nv_child'::regclass"), "t|1|f")
        # and the snapshot verifies by being restored
        r = self.ok("--json", "verify", snap, "--restore-to", self.pg_new_db())
        self.assertTrue(r.json()["ok"], r)

    def test_in_place_restore_keeps_live_fdw_objects(self):
        """The extension lives in public, which an in-place restore drops: its
        servers and user mappings went with it and were never put back."""
        url = self.pg_new_db()
        self.psql(url, """
            CREATE EXTENSION postgres_fdw;
            CREATE SERVER live FOREIGN DATA WRAPPER postgres_fdw OPTIONS (dbname 'x');
            CREATE USER MAPPING FOR zoo_reader SERVER live OPTIONS (user 'r', password 'pw');
            GRANT USAGE ON FOREIGN SERVER live TO zoo_reader;
            CREATE TABLE t (id int PRIMARY KEY);
            INSERT INTO t VALUES (1), (2);
        """)
        before = self.state(url)
        snap = self.backup(url)
        self.psql(url, "DELETE FROM t")
        self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap)
        self.assertSameState(before, url)
        self.assertEqual(self.psql(url, "SELECT umoptions FROM pg_user_mappings"),
                         "{user=r,password=pw}")
        self.assertEqual(self.psql(url, "SELECT srvacl FROM pg_foreign_server"),
                         "{postgres=U/postgres,zoo_reader=U/postgres}")

    def test_postgis(self):
        if not os.path.exists(POSTGIS_CONTROL) and os.environ.get("CI") != "true":
            self.skipTest("PostGIS is not installed (postgresql-15-postgis-3)")
        url = self.pg_new_db()
        self.psql(url, """
            CREATE EXTENSION postgis;
            CREATE TABLE places (id serial PRIMARY KEY, name text,
                                 geom geometry(Point, 4326), area geography);
            CREATE INDEX places_geom ON places USING gist (geom);
            GRANT SELECT, INSERT ON spatial_ref_sys TO zoo_reader;
            GRANT SELECT ON geometry_columns TO zoo_reader;
            INSERT INTO places (name, geom, area)
                SELECT 'p' || i, ST_SetSRID(ST_MakePoint(i, i / 2.0), 4326),
                       ST_MakePoint(i, 1)::geography FROM generate_series(1, 200) i;
        """)
        self.round_trips(url, "DELETE FROM places WHERE id > 100; DROP INDEX places_geom; "
                              "REVOKE INSERT ON spatial_ref_sys FROM zoo_reader")
        self.assertEqual(self.psql(url, "SELECT has_table_privilege('zoo_reader', "
                                        "'spatial_ref_sys', 'INSERT')"), "t")
        self.assertEqual(self.psql(url, "SELECT count(*) FROM places WHERE "
                                        "ST_DWithin(geom, ST_SetSRID(ST_MakePoint(5, 2.5), 4326), 0.1)"),
                         "1")
        # a row of the user's in PostGIS's configuration table is copied, as
        # pg_dump does (CREATE EXTENSION brings back only PostGIS's own)
        self.psql(url, "INSERT INTO spatial_ref_sys (srid, auth_name, auth_srid, proj4text) "
                       "VALUES (910001, 'zoo', 1, '+proj=longlat +datum=WGS84 +no_defs')")
        total = self.psql(url, "SELECT count(*) FROM spatial_ref_sys")
        snap = self.backup(url)
        srid = "SELECT count(*) FROM spatial_ref_sys WHERE srid = 910001 AND auth_name = 'zoo'"
        other = self.pg_new_db()
        self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap, "--to", other)
        self.assertEqual(self.psql(other, srid), "1")
        self.assertEqual(self.psql(other, "SELECT count(*) FROM spatial_ref_sys"), total)
        # in place the extension survives: the row is not loaded twice
        self.psql(url, "UPDATE spatial_ref_sys SET auth_name = 'changed' WHERE srid = 910001")
        self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap)
        self.assertEqual(self.psql(url, srid), "1")
        self.assertEqual(self.psql(url, "SELECT count(*) FROM spatial_ref_sys"), total)

    def test_refusal_names_every_object_in_order(self):
        # large objects are no longer refused; what is: subscriptions, when
        # the backup role may not read their connection strings
        url = self.pg_new_db()
        self.psql_admin("DO $$ BEGIN CREATE ROLE zoo_backup LOGIN; EXCEPTION WHEN "
                        "duplicate_object THEN NULL; END $$")
        self.psql(url, """
            SELECT lo_create(4242);
            CREATE SUBSCRIPTION zoo_sub_b CONNECTION 'dbname=nowhere' PUBLICATION p
                WITH (connect = false);
            CREATE SUBSCRIPTION zoo_sub_a CONNECTION 'dbname=nowhere' PUBLICATION p
                WITH (connect = false);
        """)
        as_backup = urllib.parse.urlsplit(url)
        as_backup = as_backup._replace(netloc="zoo_backup@" + as_backup.netloc.split("@")[-1])
        r = self.code(1, "-d", as_backup.geturl(), "-b", self.path("backups"), "backup")
        names = ["subscription zoo_sub_a (only a superuser can read it)",
                 "subscription zoo_sub_b (only a superuser can read it)"]
        self.assertIn("cannot snapshot " + "; ".join(names) + ":", r.err)
        self.assertIn("these objects are not supported", r.err)
        self.assertNotIn("large object", r.err)
        self.assertEqual(glob.glob(self.path("backups", "*.tar.zst")), [])
        # the same database gives the same message
        self.assertEqual(r.err, self.code(1, "-d", as_backup.geturl(), "-b",
                                          self.path("backups"), "backup").err)

if __name__ == "__main__":
    main()
