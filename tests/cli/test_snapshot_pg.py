"""PostgreSQL snapshots: backup, verify and restore against the test cluster.

pg_dump is the oracle (tests only): the schema-only dump of the database must
be the same before the snapshot and after a restore, and so must an
order-independent hash of every table's rows and every sequence position.
"""
import hashlib
import io
import json
import os
import socket
import subprocess
import tarfile
import time
import uuid

from smtest import (CliTest, FIXTURES, SRC, compress_to, fk_tables_sql, main, pg_dbname,
                    snapshot_manifest)

FIDELITY = os.path.join(SRC, "tests", "fixtures", "pg_fidelity.sql")
PAGILA = os.path.join(FIXTURES, "pagila", "pagila-schema.sql")


def binary_tuples(data):
    """The tuples of a COPY binary stream (after its header, if it has one:
    a snapshot keeps none), each as its bytes; walked here on their own,
    from the format's documentation."""
    pos = 0
    if data.startswith(b"PGCOPY\n\xff\r\n\x00"):
        pos = 19 + int.from_bytes(data[15:19], "big")
    tuples = []
    while pos < len(data):
        fields = int.from_bytes(data[pos:pos + 2], "big", signed=True)
        if fields == -1:  # the trailer
            break
        start, pos = pos, pos + 2
        for _ in range(fields):
            n = int.from_bytes(data[pos:pos + 4], "big", signed=True)
            pos += 4 + max(n, 0)
        tuples.append(data[start:pos])
    return tuples

class SnapshotPgTest(CliTest):
    def load(self, url, path):
        subprocess.run(["psql", url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", path],
                       capture_output=True, text=True, check=True)

    def assertSameState(self, expected, actual):
        self.assertEqual(expected[0], actual[0], "schema (pg_dump --schema-only) differs")
        self.assertEqual(expected[1], actual[1], "rows or sequence positions differ")

    def backup(self, url, name="snap"):
        r = self.ok("-d", url, "-b", self.path("backups"), "--json", "backup", "--name", name)
        path = r.json()["path"]
        self.assertTrue(os.path.exists(path))
        return path

    def damage(self, url):
        self.psql(url, """
            UPDATE app.orders SET note = 'changed' WHERE id < 10;
            DROP TRIGGER orders_audit ON app.orders;
            DROP TABLE audit.log CASCADE;
            DROP VIEW app.big_spenders;
            ALTER TABLE app.users ADD COLUMN extra int;
            DELETE FROM "Billing Dept"."Invoice Lines";
            INSERT INTO app.events VALUES (99, '2025-06-01', 'new', NULL);
            SELECT setval('app.ticket_seq', 999);
            CREATE TABLE app.not_in_snapshot (x int);
            DROP TYPE app.floatrange CASCADE;
        """)

    def reseal(self, snap, old, new):
        """Changes bytes inside the archive (old -> new, same length) and
        writes a matching .sha256: the file checks out against its sidecar,
        but an entry no longer matches the manifest, which only the pass
        that loads can find."""
        tar = subprocess.run(["zstd", "-dc", snap], capture_output=True, check=True).stdout
        self.assertEqual(len(old), len(new))
        self.assertIn(old, tar)
        data = subprocess.run(["zstd", "-1", "-c"], input=tar.replace(old, new, 1),
                              capture_output=True, check=True).stdout
        with open(snap, "wb") as f:
            f.write(data)
        with open(snap + ".sha256", "w") as f:
            f.write("%s  %s\n" % (hashlib.sha256(data).hexdigest(), os.path.basename(snap)))

    def flip_byte(self, snap):
        with open(snap, "r+b") as f:
            size = os.path.getsize(snap)
            f.seek(size // 2)
            b = f.read(1)
            f.seek(size // 2)
            f.write(bytes([b[0] ^ 0xFF]))

    def fidelity_db(self):
        url = self.pg_new_db()
        self.load(url, FIDELITY)
        return url

    def test_fidelity_in_place_restore(self):
        url = self.fidelity_db()
        before = self.pg_state(url)
        snap = self.backup(url)
        self.assertSameState(before, self.pg_state(url))  # taking it changed nothing
        self.damage(url)
        self.assertNotEqual(before, self.pg_state(url))
        self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap)
        self.assertSameState(before, self.pg_state(url))
        # the restored database works: triggers, identity, sequences, deferrable FKs
        self.psql(url, "INSERT INTO app.orders (user_id, amount, coupon) VALUES (10, 5, 'new')")
        self.assertEqual(self.psql(url, "SELECT count(*) FROM audit.log WHERE op = 'INSERT'"),
                         "505")

    def test_in_place_restore_names_the_schemas_it_leaves(self):
        # a schema created after the snapshot is not the snapshot's to drop
        # (a restore by hand cannot tell whose it is): left, and said so
        url = self.fidelity_db()
        snap = self.backup(url)
        self.psql(url, 'CREATE SCHEMA later; CREATE TABLE later.kept (x int); '
                  'INSERT INTO later.kept VALUES (1); CREATE SCHEMA "also later"')
        r = self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap)
        self.assertIn("the snapshot does not hold these schemas, which are left as they are",
                      r.err)
        note = [l for l in r.err.splitlines() if "left as they are" in l][0]
        self.assertEqual(sorted(note.split(": ")[-1].split(", ")), ["also later", "later"])
        self.assertEqual(self.psql(url, "SELECT count(*) FROM later.kept"), "1")
        # nothing to say when there is nothing left
        self.psql(url, 'DROP SCHEMA later CASCADE; DROP SCHEMA "also later"')
        r = self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap)
        self.assertNotIn("left as they are", r.err)

    def test_fidelity_restore_to_empty_database(self):
        url = self.fidelity_db()
        before = self.pg_state(url)
        snap = self.backup(url)
        other = self.pg_new_db()
        self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap, "--to", other)
        self.assertSameState(before, self.pg_state(other))
        self.assertSameState(before, self.pg_state(url))

    def test_verify_and_manifest_row_counts(self):
        url = self.fidelity_db()
        snap = self.backup(url)
        r = self.ok("--json", "verify", snap)
        self.assertTrue(r.json()["ok"], r)
        out = subprocess.run(["tar", "--zstd", "-tf", snap], capture_output=True, text=True,
                             check=True).stdout.split()
        for entry in ("pg/toc.json", "pg/pre-data.sql", "pg/post-data.sql", "manifest.json"):
            self.assertIn(entry, out)
        manifest = snapshot_manifest(snap)
        self.assertEqual(manifest["engine"], "postgresql")
        self.assertEqual(manifest["row_counts"]["app.orders"], 504)
        self.assertEqual(manifest["row_counts"]['"Billing Dept"."Invoice Lines"'], 3)
        self.assertEqual(manifest["row_counts"]["app.events_other"], 1)
        self.assertNotIn("app.events", manifest["row_counts"])  # partitioned: rows are in partitions
        self.assertIn("Billing Dept", manifest["extra"]["schemas"])

    def test_row_counts_of_names_that_differ_only_in_case(self):
        # PostgreSQL's quoted names are case-sensitive: "aB" and "AB" are two
        # tables, and each keeps its own count in the manifest (a writer that
        # replaced keys case-insensitively recorded only the last one)
        url = self.pg_new_db()
        self.psql(url, """
            CREATE TABLE "aB" (id int); INSERT INTO "aB" SELECT generate_series(1, 3);
            CREATE TABLE "AB" (id int); INSERT INTO "AB" SELECT generate_series(1, 5);
            CREATE TABLE ab (id int); INSERT INTO ab SELECT generate_series(1, 7);
        """)
        snap = self.backup(url)
        counts = snapshot_manifest(snap)["row_counts"]
        self.assertEqual({k: v for k, v in counts.items() if k.lower().endswith("ab\"")
                          or k.endswith(".ab")},
                         {'public."aB"': 3, 'public."AB"': 5, "public.ab": 7})

    def test_table_checksums_of_small_and_large_tables(self):
        # a table the planner knows to be small is read on the writer's
        # thread, a large or never-analyzed one through the reader thread:
        # either way its recorded content checksum is the sum mod 2^256 of
        # the SHA-256 of each COPY row (binary tuples when the columns are
        # of built-in types, text lines when one is an enum), computed here
        # independently, and verify --restore-to finds the restored tables
        # equal
        url = self.pg_new_db()
        self.psql(url, """
            CREATE TABLE small (id int PRIMARY KEY, note text);
            INSERT INTO small SELECT g, 'row ' || g || E'\ttab' FROM generate_series(1, 300) g;
            CREATE TABLE large (id int PRIMARY KEY, note text);
            INSERT INTO large SELECT g, md5(g::text) FROM generate_series(1, 20000) g;
            CREATE TABLE unknown (id int, note text);
            INSERT INTO unknown VALUES (1, 'one'), (2, NULL);
            CREATE TYPE mood AS ENUM ('sad', 'ok');
            CREATE TABLE texty (id int, m mood, note text);
            INSERT INTO texty SELECT g, 'ok', E'a\tb\\c' FROM generate_series(1, 50) g;
            ANALYZE small; ANALYZE large;
        """)
        self.assertEqual(self.psql(url, "SELECT string_agg(relname || '=' || reltuples, ' ' "
                                   "ORDER BY relname) FROM pg_class WHERE relname IN "
                                   "('small', 'large', 'unknown')"),
                         "large=20000 small=300 unknown=-1")
        snap = self.backup(url)
        manifest = snapshot_manifest(snap)
        for table, rows, fmt in (("public.small", 300, "binary"),
                                 ("public.large", 20000, "binary"),
                                 ("public.unknown", 2, "binary"), ("public.texty", 50, "text")):
            data = subprocess.run(["psql", url, "-X", "-q", "-c",
                                   "COPY %s TO STDOUT (FORMAT %s)" % (table, fmt)],
                                  capture_output=True, check=True).stdout
            lines = binary_tuples(data) if fmt == "binary" else \
                [line + b"\n" for line in data.split(b"\n")[:-1]]
            self.assertEqual(len(lines), rows)
            want = sum(int.from_bytes(hashlib.sha256(line).digest(), "big")
                       for line in lines) % (1 << 256)
            self.assertEqual(manifest["row_counts"][table], rows)
            self.assertEqual(manifest["extra"]["table_sha256"][table], "%064x" % want, table)
        r = self.ok("--json", "verify", snap, "--restore-to", self.pg_new_db())
        self.assertTrue(r.json()["ok"], r)
        self.assertIn("table checksums", r.err)

    def test_damaged_snapshot_leaves_database_unchanged(self):
        url = self.fidelity_db()
        snap = self.backup(url)
        self.damage(url)
        damaged = self.pg_state(url)
        self.flip_byte(snap)
        r = self.run_sm("-d", url, "-b", self.path("backups"), "--yes", "restore", snap)
        self.assertNotEqual(r.code, 0, r)
        self.assertSameState(damaged, self.pg_state(url))

    def test_damage_found_while_loading_rolls_everything_back(self):
        # the file matches its sidecar, so only the loading pass finds the
        # entry that fails its checksum: after the schemas were dropped and
        # most rows loaded; the one transaction puts everything back
        url = self.fidelity_db()
        snap = self.backup(url)
        self.reseal(snap, b"bulk 499\t", b"bulk 498\t")
        self.damage(url)
        damaged = self.pg_state(url)
        r = self.code(7, "-d", url, "-b", self.path("backups"), "--yes", "restore", snap)
        self.assertIn("fails its SHA-256 check", r.err)
        self.assertIn("nothing was changed", r.err)
        self.assertSameState(damaged, self.pg_state(url))

    def rewrite(self, snap, change):
        """Rewrites the archive entry by entry: change(name, data) returns
        the new data (or None to keep it).  Sizes may change; the manifest
        is left as it was and the sidecar is recomputed."""
        import io
        import tarfile
        tar = subprocess.run(["zstd", "-dc", snap], capture_output=True, check=True).stdout
        out = io.BytesIO()
        with tarfile.open(fileobj=io.BytesIO(tar)) as src, \
                tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as dst:
            for m in src.getmembers():
                data = src.extractfile(m).read()
                new = change(m.name, data)
                if new is not None:
                    data = new
                m.size = len(data)
                dst.addfile(m, io.BytesIO(data))
        data = subprocess.run(["zstd", "-1", "-c"], input=out.getvalue(),
                              capture_output=True, check=True).stdout
        with open(snap, "wb") as f:
            f.write(data)
        with open(snap + ".sha256", "w") as f:
            f.write("%s  %s\n" % (hashlib.sha256(data).hexdigest(), os.path.basename(snap)))

    def xid(self, url):
        return int(self.psql(url, "SELECT txid_current()"))

    def test_in_place_restore_loads_rows_frozen(self):
        # the tables are created in the restoring transaction, so COPY ...
        # FREEZE applies: every page of a restored table of 1 MiB or more is
        # all-frozen in the visibility map at once (a plain COPY leaves none
        # frozen until a VACUUM rewrites them).  A smaller table is loaded
        # without it (FREEZE's fixed cost per table is more than it saves
        # there), so app.orders (504 rows) has no page frozen
        url = self.fidelity_db()
        self.psql(url, "CREATE TABLE app.wide AS SELECT g AS id, md5(g::text) AS note "
                  "FROM generate_series(1, 40000) g")
        snap = self.backup(url)
        self.damage(url)
        self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap,
                "--no-safety-backup")
        self.assertEqual(self.psql(url, "SELECT count(*) FROM app.orders"), "504")
        self.assertEqual(self.psql(url, "SELECT count(*) FROM app.wide"), "40000")
        self.psql(url, "CREATE SCHEMA ext; CREATE EXTENSION pg_visibility SCHEMA ext")
        for table, frozen in (("app.wide", True), ("app.orders", False)):
            got, pages = self.psql(url, "SELECT all_frozen, pg_relation_size('%s') / "
                                   "current_setting('block_size')::int "
                                   "FROM ext.pg_visibility_map_summary('%s')"
                                   % (table, table)).split("|")
            self.assertGreater(int(pages), 1, table)
            self.assertEqual(got, pages if frozen else "0", table)

    def test_damaged_tail_is_found_before_commit(self):
        # the file no longer matches its sidecar, but only near its end: the
        # whole-file SHA-256 is computed while the rows stream in and checked
        # before COMMIT, so the load ran (a transaction was used) and rolled
        # back: the database is unchanged, exit 7
        url = self.fidelity_db()
        self.big_table(url)
        snap = self.backup(url)
        self.damage(url)
        damaged = self.pg_state(url)
        with open(snap, "r+b") as f:
            f.seek(0, os.SEEK_END)
            f.truncate(f.tell() - 64)
        before = self.xid(url)
        r = self.code(7, "-d", url, "-b", self.path("backups"), "--yes", "restore", snap,
                      "--no-safety-backup")
        self.assertIn("nothing was changed", r.err)
        self.assertSameState(damaged, self.pg_state(url))
        # not refused by a separate pass up front: the restore's own
        # transaction took an xid (its DROP SCHEMA) before the damage showed
        self.assertGreaterEqual(self.xid(url) - before, 2)

    def altered_pre_data(self, url, name="snap"):
        """A snapshot whose pre-data also bumps keep.s (a sequence outside
        the snapshot's schemas: nextval is not undone by a rollback) and
        creates keep.marker."""
        self.psql(url, "CREATE TABLE app.pad_" + "x" * 50 + " (x int)")
        snap = self.backup(url, name)
        self.psql(url, "CREATE SCHEMA keep; CREATE SEQUENCE keep.s")
        return snap

    def assertNoSqlRan(self, url, r):
        self.assertIn("pg/pre-data.sql", r.err)
        self.assertEqual(self.psql(url, "SELECT last_value || ' ' || is_called FROM keep.s"),
                         "1 false")
        self.assertEqual(self.psql(url, "SELECT to_regclass('keep.marker') IS NULL"), "t")

    def test_altered_pre_data_is_refused_before_any_sql_runs(self):
        url = self.fidelity_db()
        snap = self.altered_pre_data(url)
        old = b"CREATE TABLE app.pad_" + b"x" * 50
        new = b"SELECT nextval('keep.s'); CREATE TABLE keep.marker"
        self.reseal(snap, old, new.ljust(len(old)))
        r = self.code(7, "-d", url, "-b", self.path("backups"), "--yes", "restore", snap,
                      "--no-safety-backup")
        self.assertIn("fails its SHA-256 check; none of it was run", r.err)
        self.assertNoSqlRan(url, r)

    def test_snapshot_without_declared_checksums(self):
        # a snapshot written before the header declared its SQL entries'
        # checksums: verified in full first, then restored as usual; with
        # an altered pre-data nothing of it runs either
        def strip(name, data):
            if name == "snapshot.json":
                h = json.loads(data)
                self.assertIn("pg/pre-data.sql", h.pop("checksums"))
                return json.dumps(h).encode()
            if name == "manifest.json":
                m = json.loads(data)
                for e in m["entries"]:
                    if e["name"] == "snapshot.json":
                        e["sha256"] = hashlib.sha256(header[0]).hexdigest()
                        e["size"] = len(header[0])
                return json.dumps(m).encode()
            return None

        def keep_header(name, data):
            out = strip(name, data)
            if name == "snapshot.json":
                header[0] = out
            return out

        header = [None]
        url = self.fidelity_db()
        before = self.pg_state(url)
        snap = self.backup(url)
        self.rewrite(snap, keep_header)
        self.ok("verify", snap)
        self.damage(url)
        self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap,
                "--no-safety-backup")
        self.assertSameState(before, self.pg_state(url))

        url = self.fidelity_db()
        snap = self.altered_pre_data(url, "snap2")
        self.rewrite(snap, lambda name, data: data.replace(
            b"CREATE TABLE app.pad_", b"SELECT nextval('keep.s'); CREATE TABLE keep.marker (y int);"
            b"CREATE TABLE app.pad_") if name == "pg/pre-data.sql" else keep_header(name, data))
        r = self.code(7, "-d", url, "-b", self.path("backups"), "--yes", "restore", snap,
                      "--no-safety-backup")
        self.assertNoSqlRan(url, r)

    def test_wrong_declared_checksum_fails_verify_and_restore(self):
        # verify and restore agree: a header that declares a checksum its
        # entry does not have (the manifest re-sealed to match the header)
        # fails both, and the restore runs nothing
        def lie(name, data):
            if name == "snapshot.json":
                h = json.loads(data)
                h["checksums"]["pg/pre-data.sql"] = "0" * 64
                header[0] = json.dumps(h).encode()
                return header[0]
            if name == "manifest.json":
                m = json.loads(data)
                for e in m["entries"]:
                    if e["name"] == "snapshot.json":
                        e["sha256"] = hashlib.sha256(header[0]).hexdigest()
                        e["size"] = len(header[0])
                return json.dumps(m).encode()
            return None

        header = [None]
        url = self.fidelity_db()
        snap = self.altered_pre_data(url)
        self.rewrite(snap, lie)
        r = self.code(7, "verify", snap)
        self.assertIn("does not match the checksum the header declares", r.out + r.err)
        r = self.code(7, "-d", url, "-b", self.path("backups"), "--yes", "restore", snap,
                      "--no-safety-backup")
        self.assertIn("none of it was run", r.err)
        self.assertNoSqlRan(url, r)

    def parallel_copy(self, url):
        """Backs url up and restores it --to a new database --jobs 2, which
        must then be url's equal: (the snapshot, the new database's URL)."""
        before = self.pg_state(url)
        snap = self.backup(url)
        other = self.pg_new_db()
        self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap, "--to", other,
                "--jobs", "2", "--no-safety-backup")
        self.assertSameState(before, self.pg_state(other))
        return snap, other

    def big_table(self, url):
        # about 25 MB: several 4 MiB chunk entries (rows span their
        # boundary), several parallel COPY units and a row larger than one;
        # escapes in every row
        self.psql(url, r"""
            CREATE TABLE app.bulk (id int PRIMARY KEY, v text, n numeric);
            INSERT INTO app.bulk SELECT g, E'tab\there\nnewline \\ ' || repeat(md5(g::text), 2)
                || ' ü', g * 1.5 FROM generate_series(1, 200000) g;
            INSERT INTO app.bulk VALUES (0, repeat(md5('x'), 150000), 0);  -- one 4.8 MB row
            CREATE INDEX bulk_v ON app.bulk (md5(v));
        """)

    def test_parallel_restore_to_fidelity(self):
        url = self.fidelity_db()
        self.big_table(url)
        before = self.pg_state(url)
        snap = self.backup(url)
        for jobs in ("2", "3"):
            other = self.pg_new_db()
            self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap, "--to", other,
                    "--jobs", jobs, "--no-safety-backup")
            self.assertSameState(before, self.pg_state(other))
            # the restored database works: triggers, identity, deferrable FKs
            self.psql(other, "INSERT INTO app.orders (user_id, amount, coupon) VALUES (10, 5, 'new')")
            self.assertEqual(self.psql(other, "SELECT count(*) FROM audit.log WHERE op = 'INSERT'"),
                             "505")
        self.assertSameState(before, self.pg_state(url))

    def test_parallel_restore_builds_a_loaded_tables_indexes_while_others_load(self):
        # as pg_restore -j does: once a table's rows are in, its index is
        # built while a later table still loads (a snapshot of one
        # connection writes each table's chunks together).  Seen from the
        # server: the index's catalog row was written by a transaction
        # older than the later table's last COPY unit (each unit commits
        # on its own)
        url = self.pg_new_db()
        self.psql(url, """
            CREATE TABLE first_t (id int, v text);
            INSERT INTO first_t SELECT g, md5(g::text) FROM generate_series(1, 20000) g;
            CREATE INDEX first_t_v ON first_t (v);
            CREATE TABLE second_t (id int PRIMARY KEY, first_id int, v text);
            INSERT INTO second_t SELECT g, g % 20000, repeat(md5(g::text), 2)
                FROM generate_series(1, 250000) g;
            CREATE INDEX second_t_v ON second_t (v);
        """)
        _, other = self.parallel_copy(url)
        self.assertEqual(self.psql(other, """
            SELECT (SELECT xmin::text::bigint FROM pg_class WHERE relname = 'first_t_v')
                 < (SELECT max(xmin::text::bigint) FROM second_t)"""), "t")
        # and the second table's index only once its rows were all in
        self.assertEqual(self.psql(other, """
            SELECT (SELECT xmin::text::bigint FROM pg_class WHERE relname = 'second_t_v')
                 > (SELECT max(xmin::text::bigint) FROM second_t)"""), "t")

    def test_column_grants_all_revoked(self):
        # a column's grants all revoked leave an empty ACL, which aclexplode
        # refuses: the backup failed ("ACL arrays must be one-dimensional").
        # pg_subscription is the catalog whose columns have initial grants
        # (pg_attribute, where they live, is the database's own)
        url = self.pg_new_db()
        self.psql(url, "REVOKE SELECT (subname) ON pg_catalog.pg_subscription FROM PUBLIC;"
                  "CREATE TABLE t (a int, b int); GRANT SELECT (a) ON t TO PUBLIC;"
                  "REVOKE SELECT (a) ON t FROM PUBLIC")
        acl = ("SELECT coalesce(attacl::text, '-') FROM pg_attribute WHERE attrelid = "
               "'pg_catalog.pg_subscription'::regclass AND attname = 'subname'")
        self.assertIn(self.psql(url, acl), ("-", "{}"))
        snap = self.backup(url)
        other = self.pg_new_db()
        self.assertRegex(self.psql(other, acl), r"^\{=r/[^,]+\}$")
        self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap, "--to", other,
                "--no-safety-backup")
        self.assertIn(self.psql(other, acl), ("-", "{}"))
        self.assertEqual(self.pg_schema_dump(other), self.pg_schema_dump(url))

    def test_parallel_restore_adds_a_parents_check_after_its_childrens_rows(self):
        # a parent's NOT VALID check (post-data, no ONLY) is added to its
        # inheritance children too: run as soon as the parent's rows were
        # in, while a big table loaded, it made the child refuse its own
        # rows when their turn came (seen once in test_pg_kinds under load)
        url = self.pg_new_db()
        self.psql(url, """
            CREATE TABLE parent_t (id int, n int);
            INSERT INTO parent_t VALUES (1, 1);
            CREATE TABLE big_t (id int, v text);
            INSERT INTO big_t SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 200000) g;
            CREATE TABLE child_t () INHERITS (parent_t);
            INSERT INTO child_t VALUES (2, -5);
            ALTER TABLE parent_t ADD CONSTRAINT n_positive CHECK (n > 0) NOT VALID;
        """)
        before = self.pg_state(url)
        snap = self.backup(url)
        for _ in range(3):
            other = self.pg_new_db()
            self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap, "--to",
                    other, "--jobs", "2", "--no-safety-backup")
            self.assertSameState(before, self.pg_state(other))
            self.assertEqual(self.psql(other, "SELECT n FROM ONLY child_t"), "-5")

    def test_parallel_restore_loads_foreign_key_tables_frozen(self):
        # restore --to --jobs 2: a table a foreign key names, bigger than a
        # unit of the load, is loaded on one worker in one transaction that
        # truncates it first, with COPY FREEZE, so its pages are all
        # frozen (and all-visible: the key's check then reads no heap
        # page); a big table no key names still loads unit by unit over
        # both workers, not frozen; the restored copy is the source's
        url = self.pg_new_db()
        self.psql(url, fk_tables_sql(40000, 60000) + """
            CREATE INDEX child_parent ON child (parent_id);
            CREATE TABLE loose (id int, note text);
            INSERT INTO loose SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 40000) g;
        """)
        snap, other = self.parallel_copy(url)
        self.psql(other, "CREATE SCHEMA ext; CREATE EXTENSION pg_visibility SCHEMA ext")
        for table, frozen in (("parent", True), ("child", True), ("loose", False)):
            got, pages = self.psql(other, "SELECT all_frozen, pg_relation_size('%s') / "
                                   "current_setting('block_size')::int FROM "
                                   "ext.pg_visibility_map_summary('%s')" % (table, table)
                                   ).split("|")
            self.assertGreater(int(pages), 100, table)
            if frozen:
                self.assertEqual(got, pages, table)
            else:
                self.assertEqual(got, "0", table)
        # damage in the frozen table's rows, found while its transaction
        # is open: the load stops, exit 7, and says the target is incomplete
        mark = hashlib.md5(b"59999").hexdigest().encode()
        self.reseal(snap, mark, mark[::-1])
        r = self.code(7, "-d", url, "-b", self.path("backups"), "--yes", "restore", snap, "--to",
                      self.pg_new_db(), "--jobs", "2", "--no-safety-backup")
        self.assertIn("fails its SHA-256 check", r.err)
        self.assertIn("left the target database incomplete", r.err)

    def test_parallel_restore_adds_each_foreign_key_once_its_table_is_indexed(self):
        # restore --to --jobs 2 builds post-data table by table, in the order
        # the rows came in, and adds a table's foreign key as soon as that
        # table's key and indexes are built: the keys to one parent run one
        # at a time (each locks it), so left to the end, as the toc orders
        # them (every index, then every key), they ran on one worker while
        # the other had nothing to do.  Object ids come from one counter, in
        # order of creation: the first table's key is older than the last
        # table's index
        url = self.pg_new_db()
        self.psql(url, """
            CREATE TABLE parent (id int PRIMARY KEY);
            INSERT INTO parent SELECT generate_series(1, 10);
            DO $$ BEGIN FOR i IN 1..30 LOOP
              EXECUTE format('CREATE TABLE t%1$s (id int PRIMARY KEY, '
                'p int NOT NULL REFERENCES parent (id), code text);
                CREATE INDEX t%1$s_code ON t%1$s (code);
                INSERT INTO t%1$s SELECT g, 1 + g %% 10, md5(g::text)
                FROM generate_series(1, 50) g', i);
            END LOOP; END $$;
        """)
        _, other = self.parallel_copy(url)
        first_fk, last_index = self.psql(other, """
            SELECT (SELECT min(oid::int8) FROM pg_constraint WHERE contype = 'f'),
                   (SELECT max(oid::int8) FROM pg_class WHERE relkind = 'i'
                    AND relnamespace = 'public'::regnamespace)""").split("|")
        self.assertLess(int(first_fk), int(last_index))

    def test_parallel_restore_refuses_a_table_whose_data_comes_back(self):
        # the toc says each table's chunks come together ("data_by_table"),
        # but the first table's come in two runs, the second table's
        # between them: the parallel restore, which built on the first
        # table once the reader had passed it, calls that damage; the
        # one-transaction restore, which depends on no order, loads it
        url = self.pg_new_db()
        self.psql(url, """
            CREATE TABLE first_t (id int PRIMARY KEY, v text);
            INSERT INTO first_t SELECT g, md5(g::text) FROM generate_series(1, 2000) g;
            CREATE TABLE second_t (id int);
            INSERT INTO second_t SELECT generate_series(1, 10);
        """)
        before = self.pg_state(url)
        snap = self.backup(url)
        raw = subprocess.run(["zstd", "-dc", snap], capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(raw)) as t:
            entries = [(m.name, t.extractfile(m).read()) for m in t.getmembers()]
        names = [n for n, _ in entries]
        self.assertIs(json.loads(dict(entries)["pg/toc.json"])["data_by_table"], True)
        first = names.index("data/000000.copy.0000")
        self.assertEqual(names[first + 1], "data/000001.copy.0000")
        rows = entries[first][1]
        tuples = binary_tuples(rows)
        self.assertEqual(len(tuples), 2000)
        cut = sum(len(t) for t in tuples[:1000])
        second = entries[first + 1]
        entries[first:first + 2] = [("data/000000.copy.0000", rows[:cut]), second,
                                    ("data/000000.copy.0001", rows[cut:])]
        man = json.loads(dict(entries)["manifest.json"])
        man["entries"] = [{"name": n, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
                          for n, b in entries if n != "manifest.json"]
        entries = [(n, json.dumps(man).encode() if n == "manifest.json" else b)
                   for n, b in entries]
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as t:
            for name, body in entries:
                ti = tarfile.TarInfo(name)
                ti.size = len(body)
                ti.mode = 0o600
                t.addfile(ti, io.BytesIO(body))
        bad = compress_to(self.path("two-runs.tar.zst"), out.getvalue())
        r = self.code(7, "-d", url, "-b", self.path("backups"), "--yes", "restore", bad, "--to",
                      self.pg_new_db(), "--jobs", "2", "--no-safety-backup")
        self.assertIn("the data of table public.first_t comes in two runs", r.err)
        other = self.pg_new_db()
        self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", bad, "--to", other,
                "--no-safety-backup")
        self.assertSameState(before, self.pg_state(other))

    def test_parallel_restore_to_pagila(self):
        url = self.pagila_db()
        before = self.pg_state(url)
        snap = self.backup(url, "pagila")
        for jobs in ("2", "3"):
            other = self.pg_new_db()
            self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap, "--to", other,
                    "-j", jobs)
            self.assertSameState(before, self.pg_state(other))

    def test_parallel_restore_of_a_damaged_snapshot(self):
        url = self.fidelity_db()
        snap = self.backup(url)
        other = self.pg_new_db()
        empty = self.pg_state(other)
        # damaged on disk: found before the target is touched
        bad = self.path("bad.tar.zst")
        with open(snap, "rb") as f, open(bad, "wb") as g:
            g.write(f.read())
        with open(snap + ".sha256") as f, open(bad + ".sha256", "w") as g:
            g.write(f.read().replace("snap.tar.zst", "bad.tar.zst"))
        self.flip_byte(bad)
        r = self.code(7, "-d", url, "-b", self.path("backups"), "--yes", "restore", bad,
                      "--to", other, "--jobs", "2")
        self.assertIn("does not match its checksum file", r.err)
        self.assertSameState(empty, self.pg_state(other))
        # damage only the loading pass can find: the target is left incomplete, and said so
        self.reseal(snap, b"bulk 499\t", b"bulk 498\t")
        r = self.code(7, "-d", url, "-b", self.path("backups"), "--yes", "restore", snap,
                      "--to", other, "--jobs", "2")
        self.assertIn("fails its SHA-256 check", r.err)
        self.assertIn("left the target database incomplete", r.err)

    def test_parallel_restore_worker_error_names_the_statement(self):
        # an event trigger in the target refuses CREATE INDEX: a worker fails,
        # the others stop, and the message names the statement
        url = self.fidelity_db()
        snap = self.backup(url)
        other = self.pg_new_db()
        self.psql(other, """
            CREATE SCHEMA guard;
            CREATE FUNCTION guard.no_index() RETURNS event_trigger LANGUAGE plpgsql AS
              $$BEGIN RAISE EXCEPTION 'indexes are not allowed here'; END$$;
            CREATE EVENT TRIGGER no_index ON ddl_command_start WHEN TAG IN ('CREATE INDEX')
              EXECUTE FUNCTION guard.no_index();
        """)
        r = self.code(1, "-d", url, "-b", self.path("backups"), "--yes", "restore", snap,
                      "--to", other, "--jobs", "2", "--no-safety-backup")
        self.assertIn("indexes are not allowed here", r.err)
        self.assertIn("INDEX", r.err)
        self.assertIn("left the target database incomplete", r.err)

    def test_jobs_usage_errors_change_nothing(self):
        url = self.fidelity_db()
        snap = self.backup(url)
        self.damage(url)
        damaged = self.pg_state(url)
        r = self.code(2, "-d", url, "-b", self.path("backups"), "--yes", "restore", snap,
                      "--jobs", "2")
        self.assertIn("not atomic", r.err)
        r = self.code(2, "-d", url, "-b", self.path("backups"), "--yes", "restore", snap,
                      "--jobs", "0")
        self.assertIn("--jobs", r.err)
        r = self.code(2, "-d", url, "-b", self.path("backups"), "--yes", "restore", snap,
                      "--to", self.pg_new_db(), "--jobs", "1000")
        self.assertIn("--jobs", r.err)
        self.assertSameState(damaged, self.pg_state(url))
        self.assertEqual(sorted(os.listdir(self.path("backups"))),
                         ["snap.tar.zst", "snap.tar.zst.sha256"])  # no safety snapshot either

    def test_lock_held_during_in_place_restore(self):
        # another session keeps a lock that DROP SCHEMA must wait for (ACCESS
        # SHARE for the safety snapshot is still granted): the restore gives
        # up after --lock-timeout and changes nothing
        url = self.fidelity_db()
        snap = self.backup(url)
        self.damage(url)
        damaged = self.pg_state(url)
        holder = subprocess.Popen(["psql", url, "-X", "-q"], stdin=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
        try:
            holder.stdin.write("BEGIN; LOCK TABLE app.users IN ROW EXCLUSIVE MODE;\n")
            holder.stdin.flush()
            for _ in range(200):
                if self.psql(url, "SELECT count(*) FROM pg_locks WHERE relation = "
                                  "'app.users'::regclass AND mode = 'RowExclusiveLock'") == "1":
                    break
                time.sleep(0.05)
            else:
                self.fail("the lock was never taken")
            r = self.code(1, "-d", url, "-b", self.path("backups"), "--yes", "--lock-timeout", "1s",
                          "restore", snap)
            self.assertIn("--lock-timeout", r.err)
            self.assertIn("nothing was changed", r.err)
        finally:
            holder.stdin.write("ROLLBACK;\n")
            holder.stdin.close()
            holder.wait(timeout=30)
        self.assertSameState(damaged, self.pg_state(url))

    def test_failure_during_restore_rolls_everything_back(self):
        # the snapshot gives a table to a role that no longer exists when it is
        # restored: post-data fails after the schemas were dropped and reloaded
        url = self.fidelity_db()
        role = "sm_gone_" + os.path.basename(self.dir).replace("-", "_").lower()
        self.psql(url, 'CREATE ROLE "%s"; ALTER TABLE app.users OWNER TO "%s"' % (role, role))
        try:
            snap = self.backup(url)
            self.psql(url, 'ALTER TABLE app.users OWNER TO CURRENT_USER; DROP ROLE "%s"' % role)
        finally:
            self.psql(url, 'ALTER TABLE app.users OWNER TO CURRENT_USER; DROP ROLE IF EXISTS "%s"'
                      % role, check=False)
        self.damage(url)
        damaged = self.pg_state(url)
        r = self.code(1, "-d", url, "-b", self.path("backups"), "--yes", "restore", snap)
        self.assertIn(role, r.err)
        self.assertSameState(damaged, self.pg_state(url))

    def test_lock_table_too_small(self):
        # a cluster of its own whose lock table cannot hold a 400-table restore
        # in one transaction: in place nothing changes and the message says
        # what to do; into an empty database it goes on in several transactions.
        # The backup must fit: it locks the 400 tables and the catalogs it
        # reads (about 80 of them and their indexes since every object kind
        # is read), hence 32 locks a transaction, not fewer
        self.require_pg()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cluster = "/tmp/sm-pglocks-" + uuid.uuid4().hex[:8]
        script = os.path.join(SRC, "scripts", "pg-cluster.sh")
        env = dict(os.environ, PG_CLUSTER_OPTS="-c max_locks_per_transaction=32 -c max_connections=5")
        admin = subprocess.run([script, "start", cluster, str(port)], env=env, capture_output=True,
                               text=True, check=True).stdout.strip()
        try:
            base = admin.rsplit("/", 1)[0]
            self.psql(admin, "CREATE DATABASE a")
            self.psql(admin, "CREATE DATABASE b")
            for batch in range(8):
                self.psql(base + "/a", "DO $$BEGIN FOR i IN %d..%d LOOP EXECUTE format("
                          "'CREATE TABLE t%%s (id int PRIMARY KEY, v text)', i); END LOOP; END$$"
                          % (batch * 50 + 1, batch * 50 + 50))
            self.psql(base + "/a", "INSERT INTO t1 VALUES (1, 'x')")
            snap = self.backup(base + "/a")
            self.psql(base + "/a", "INSERT INTO t2 VALUES (2, 'after the snapshot')")
            r = self.code(1, "-d", base + "/a", "-b", self.path("backups"), "--yes", "restore", snap)
            self.assertIn("max_locks_per_transaction", r.err)
            self.assertIn("nothing was changed", r.err)
            self.assertEqual(self.psql(base + "/a", "SELECT v FROM t2"), "after the snapshot")
            self.ok("-d", base + "/a", "-b", self.path("backups"), "--yes", "restore", snap,
                    "--to", base + "/b", "--no-safety-backup")
            self.assertEqual(self.psql(base + "/b", "SELECT count(*) FROM pg_tables WHERE "
                                                    "schemaname = 'public'"), "400")
            self.assertEqual(self.psql(base + "/b", "SELECT v FROM t1"), "x")
            self.assertEqual(self.psql(base + "/b", "SELECT count(*) FROM t2"), "0")
        finally:
            subprocess.run([script, "stop", cluster], capture_output=True)

    def pagila_db(self):
        url = self.pg_new_db()
        self.load(url, PAGILA)
        self.psql(url, """
            INSERT INTO language (name) VALUES ('English'), ('Deutsch');
            INSERT INTO actor (first_name, last_name) VALUES ('PENELOPE', 'GUINESS'), ('NICK', 'WAHLBERG');
            INSERT INTO category (name) VALUES ('Action');
        """)
        return url

    def test_pagila_round_trip(self):
        url = self.pagila_db()
        before = self.pg_state(url)
        snap = self.backup(url, "pagila")
        other = self.pg_new_db()
        self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap, "--to", other)
        self.assertSameState(before, self.pg_state(other))
        self.psql(url, "DROP TABLE film_actor CASCADE; DELETE FROM actor")
        self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap)
        self.assertSameState(before, self.pg_state(url))

    def test_no_owner_leaves_out_ownership(self):
        url = self.fidelity_db()
        snap = self.backup(url)
        post = subprocess.run(["tar", "--zstd", "-xOf", snap, "pg/post-data.sql"],
                              capture_output=True, text=True, check=True).stdout
        self.assertIn("OWNER TO", post)
        r = self.ok("-d", url, "-b", self.path("backups"), "--json", "backup", "--name", "noown",
                    "--no-owner")
        post = subprocess.run(["tar", "--zstd", "-xOf", r.json()["path"], "pg/post-data.sql"],
                              capture_output=True, text=True, check=True).stdout
        self.assertNotIn("OWNER TO", post)

    # an index whose every key takes half a second to compute, but only in
    # sessions of a database that has sm_test.slow = on: its data loads
    # fast, its CREATE INDEX in the restore takes minutes
    SLOW_SCHEMA = """
        CREATE SCHEMA slow;
        CREATE FUNCTION slow.key(x int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$
        BEGIN
            IF current_setting('sm_test.slow', true) = 'on' THEN
                PERFORM pg_sleep(0.5);
            END IF;
            RETURN x;
        END $$;
        CREATE TABLE slow.t (id int PRIMARY KEY, v text);
        INSERT INTO slow.t SELECT g, md5(g::text) FROM generate_series(1, 300) g;
        CREATE INDEX t_key ON slow.t (slow.key(id));
    """

    def active_index_builds(self, url):
        # in place, post-data goes to the server as one batch of statements
        return int(self.psql(url, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                  "current_database() AND state = 'active' AND "
                                  "pid <> pg_backend_pid() AND query LIKE '%CREATE INDEX t_key%'"))

    def interrupt_during_index_build(self, url, *args):
        """Runs safe-migrate ARGS, sends SIGINT once a CREATE INDEX of it runs
        in url's database, and returns (exit code, stderr)."""
        self.psql(url, "ALTER DATABASE \"%s\" SET sm_test.slow = 'on'" % pg_dbname(url))
        code, err, caught = self.interrupt(args, lambda: self.active_index_builds(url))
        self.assertTrue(caught, "safe-migrate ended before the index build: %s" % err)
        # cancelled, not left running: without a cancel the server goes on
        # building for minutes after the client is gone
        deadline = time.time() + 15
        while self.active_index_builds(url):
            self.assertLess(time.time(), deadline, "the index build still runs")
            time.sleep(0.1)
        self.psql(url, "ALTER DATABASE \"%s\" RESET sm_test.slow" % pg_dbname(url))
        return code, err

    def test_interrupt_cancels_the_parallel_workers(self):
        src = self.pg_new_db()
        self.psql(src, self.SLOW_SCHEMA)
        snap = self.backup(src)
        dst = self.pg_new_db()
        code, err = self.interrupt_during_index_build(
            dst, "-b", self.path("backups"), "restore", snap, "--to", dst, "--jobs", "2",
            "--yes", "--no-safety-backup")
        self.assertEqual(code, 130, err)
        self.assertIn("interrupted", err)
        self.assertIn("incomplete", err)
        # the workers are gone with their cancelled statements
        self.assertEqual(self.psql(dst, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                        "current_database() AND pid <> pg_backend_pid()"), "0")

    def test_interrupt_rolls_an_in_place_restore_back(self):
        url = self.pg_new_db()
        self.psql(url, self.SLOW_SCHEMA)
        snap = self.backup(url)
        self.psql(url, "UPDATE slow.t SET v = 'changed' WHERE id < 50; CREATE TABLE slow.extra (x int)")
        before = self.pg_state(url)
        code, err = self.interrupt_during_index_build(
            url, "-d", url, "-b", self.path("backups"), "restore", snap, "--yes",
            "--no-safety-backup")
        self.assertEqual(code, 130, err)
        self.assertIn("nothing was changed", err)
        self.assertSameState(before, self.pg_state(url))


if __name__ == "__main__":
    main()
