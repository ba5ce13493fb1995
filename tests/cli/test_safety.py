"""CLI tests of the safety commands: safety-check, lint, schema and validate,
against real SQLite files and (when a test server is available) PostgreSQL."""
import fcntl
import json
import os
import sqlite3
import subprocess
import time

from smtest import FIXTURES, CliTest, main

PG_LOCK_KEY = 8314038971842521447  # engine_pg.c: the migration lock's advisory key

USERS = ("-- migrate:up\n"
         "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, age INTEGER);\n"
         "CREATE INDEX users_name ON users (name);\n"
         "-- migrate:down\nDROP TABLE users;\n")
ORDERS = ("-- migrate:up\n"
          "CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL "
          "REFERENCES users (id), total INTEGER);\n"
          "-- migrate:down\nDROP TABLE orders;\n")


def checks(result, level=None):
    """{check-or-rule: [levels]} from a --json findings list."""
    out = {}
    for f in result.json()["findings"]:
        name = f.get("check") or f.get("rule")
        if level is None or f["level"] == level:
            out.setdefault(name, []).append(f)
    return out


class SafetySqlite(CliTest):
    def setUp(self):
        super().setUp()
        self.write("safe-migrate.ini", "[safe-migrate]\ndatabase_url = sqlite:///app.db\n")
        sqlite3.connect(self.path("app.db")).close()
        self.write("migrations/0001_users.sql", USERS)
        self.write("migrations/0002_orders.sql", ORDERS)

    # -- safety-check --------------------------------------------------------
    def test_safety_check_all_well(self):
        r = self.ok("safety-check")
        for name in ("connectivity", "backup-dir", "disk-space", "migration-history",
                     "interrupted-run", "concurrent-migration", "pending-migrations"):
            self.assertRegex(r.out, r"(?m)^PASS %s: " % name)
        self.assertNotIn("FAIL", r.out)
        self.assertIn("2 pending: 0001, 0002", r.out)
        self.assertTrue(os.path.isdir(self.path("data", "backups")))
        self.assertEqual(os.stat(self.path("data", "backups")).st_mode & 0o777, 0o700)
        self.assertEqual(os.listdir(self.path("data", "backups")), [])  # probe removed
        r = self.ok("safety-check", "--json")
        doc = r.json()
        self.assertTrue(doc["ok"])
        self.assertEqual(set(f["level"] for f in doc["findings"]), {"pass"})

    def test_unwritable_backup_dir(self):
        # tests run as root, which ignores permissions: a path under a regular
        # file cannot be a directory for anyone
        self.write("not-a-dir", "x")
        r = self.code(4, "safety-check", "-b", self.path("not-a-dir", "backups"))
        self.assertRegex(r.out, r"FAIL backup-dir: cannot create backup directory .*not-a-dir")
        f = checks(self.run_sm("safety-check", "--json", "-b",
                               self.path("not-a-dir", "backups")), "fail")
        self.assertIn("backup-dir", f)

    def test_unreachable_server(self):
        r = self.code(4, "safety-check", "-d", "postgresql://nobody:secret@127.0.0.1:1/db")
        self.assertRegex(r.out, r"FAIL connectivity: .*127\.0\.0\.1")
        self.assertNotIn("secret", r.out + r.err)
        r = self.code(4, "safety-check", "-d", "sqlite:///" + self.path("missing.db"))
        self.assertRegex(r.out, r"FAIL connectivity: .*missing\.db")

    def test_edited_applied_migration(self):
        self.ok("upgrade", "0001")
        self.write("migrations/0001_users.sql", USERS.replace("age INTEGER", "age INT"))
        r = self.code(4, "safety-check")
        self.assertRegex(r.out, r"FAIL migration-history: applied migration .*0001_users\.sql"
                                r".* was edited")

    def test_missing_applied_file_warns(self):
        self.ok("upgrade")
        os.unlink(self.path("migrations", "0002_orders.sql"))
        r = self.ok("safety-check")
        self.assertIn("WARN migration-history: applied version 0002 has no migration file", r.out)

    def test_lock_held_by_another_process(self):
        fd = os.open(self.path("app.db-safe-migrate.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            r = self.code(4, "safety-check")
            self.assertIn("FAIL concurrent-migration: another migration is running", r.out)
        finally:
            os.close(fd)
        self.ok("safety-check")

    def test_interrupted_run(self):
        os.makedirs(self.path("data", "backups"))
        self.write("data/backups/safe-migrate.journal", json.dumps({
            "run_id": "run-42", "started_at": "2026-01-01T00:00:00Z",
            "snapshot": "data/backups/backup_x.tar.zst", "phase": "apply", "outcome": None}))
        r = self.code(4, "safety-check")
        self.assertRegex(r.out, r"FAIL interrupted-run: run run-42 was interrupted; its "
                                r"snapshot is 'data/backups/backup_x.tar.zst'")
        self.assertIn("safe-migrate recover", r.out)
        self.assertIn("recover --discard", r.out)
        self.write("data/backups/safe-migrate.journal", json.dumps({
            "run_id": "run-42", "snapshot": None, "phase": "done", "outcome": "applied"}))
        self.ok("safety-check")

    def test_hot_journal(self):
        self.write("app.db-journal", "")
        r = self.code(4, "safety-check")
        self.assertIn("FAIL database-file: hot journal", r.out)

    def test_blocking_lint_in_pending(self):
        self.write("migrations/0003_bad.sql", "INSERT INTO nowhere VALUES (1);\n")
        r = self.code(4, "safety-check")
        self.assertIn("FAIL pending-migrations: 3 pending", r.out)
        self.assertRegex(r.out, r"FAIL .*0003_bad\.sql:1: sql-error: no such table: nowhere")
        doc = self.run_sm("safety-check", "--json").json()
        self.assertFalse(doc["ok"])
        rules = [f for f in doc["findings"] if f.get("rule") == "sql-error"]
        self.assertEqual(len(rules), 1)
        self.assertTrue(rules[0]["file"].endswith("0003_bad.sql"))
        self.assertEqual(rules[0]["line"], 1)

    # -- lint -------------------------------------------------------------------
    def test_lint_pending_sees_earlier_migrations(self):
        self.ok("upgrade", "0001")
        self.write("migrations/0003_more.sql",
                   "ALTER TABLE orders ADD COLUMN note TEXT;\nDELETE FROM users;\n")
        r = self.ok("lint")  # warnings only: exit 0
        self.assertRegex(r.out, r"WARN .*0003_more\.sql:2: update-or-delete-without-where")
        self.assertNotIn("0001", r.out)  # applied: not linted
        self.assertIn("linted 2 migrations", r.err)

    def test_lint_files_and_exit_codes(self):
        self.write("x/drop.sql", "DROP TABLE users;\n")
        self.write("x/ok.sql", "CREATE TABLE t (a INT);\n")
        self.ok("upgrade")
        r = self.ok("lint", self.path("x", "drop.sql"))
        self.assertIn("drop-table: table 'users' is dropped", r.out)
        self.assertIn("snapshot", r.out)
        self.write("x/drop2.sql", "-- safe-migrate:ignore drop-table\nDROP TABLE users;\n")
        r = self.ok("lint", self.path("x", "drop2.sql"))
        self.assertNotIn("drop-table", r.out)
        r = self.ok("lint", "--json", self.path("x", "ok.sql"))
        self.assertEqual(r.json(), {"ok": True, "findings": []})
        self.write("x/bad.sql", "SELEC 1;\n")
        r = self.code(4, "lint", "--json", self.path("x", "bad.sql"))
        self.assertFalse(r.json()["ok"])
        self.assertEqual(r.json()["findings"][0]["rule"], "sql-error")

    def test_lint_postgres_dialect_without_server(self):
        self.write("x/idx.sql", "-- migrate:up\nCREATE INDEX CONCURRENTLY i ON t (a);\n")
        self.write("x/idx_notx.sql",
                   "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY i ON t (a);\n")
        url = "postgresql://postgres@127.0.0.1:1/none"
        r = self.code(4, "-d", url, "lint", self.path("x", "idx.sql"))
        self.assertRegex(r.out, r"FAIL .*idx\.sql:2: concurrently-in-transaction")
        self.ok("-d", url, "lint", self.path("x", "idx_notx.sql"))

    def test_lint_without_database(self):
        os.unlink(self.path("safe-migrate.ini"))
        self.write("migrations/0003_drop.sql", "DROP TABLE orders;\n")
        r = self.ok("lint")
        self.assertIn("drop-table: table 'orders'", r.out)

    # -- schema -----------------------------------------------------------------
    def test_schema_stable_and_output_file(self):
        self.ok("upgrade")
        a = self.ok("schema").out
        self.assertEqual(a, self.ok("schema").out)
        self.assertIn("table\tusers\n", a)
        self.assertIn("column\tusers\tname\tTEXT\tnot null\tposition 2\n", a)
        self.assertIn("index\tusers\tusers_name\t", a)
        self.assertNotIn("safe_migrate", a)
        self.ok("schema", "--output", self.path("schema.txt"))
        with open(self.path("schema.txt")) as f:
            self.assertEqual(f.read(), a)
        fp = self.ok("schema", "--json").json()["fingerprint"]
        self.assertEqual(len(fp), 64)

    def test_temp_table_of_a_migration_is_not_the_schema(self):
        # a migration's TEMP table named like a main table lives on the
        # connection that then records the schema: the model names the main
        # schema, so what is recorded is the database's schema and validate
        # finds no drift (it found the TEMP table's columns instead of the
        # main table's: exit 7)
        self.write("migrations/0003_scratch.sql",
                   "-- migrate:up\nCREATE TEMP TABLE users (x BLOB, y BLOB);\n"
                   "CREATE TABLE notes (id INTEGER PRIMARY KEY);\n"
                   "-- migrate:down\nDROP TABLE notes;\n")
        self.ok("upgrade")
        r = self.ok("validate")
        self.assertIn("PASS schema-drift", r.out)
        self.assertNotIn("users\tx", self.ok("schema").out)

    def test_schema_keys_and_constraints_of_every_table(self):
        # the columns, keys and UNIQUE constraints of every table (read for
        # all tables at once), each under its own table: a composite key in
        # key order, keys of several columns, actions, a WITHOUT ROWID table
        # with an awkward name, a UNIQUE expression index as an index, and
        # the tool's own table left out
        self.ok("upgrade")
        for sql in ("""CREATE TABLE a (id INTEGER PRIMARY KEY, x TEXT NOT NULL DEFAULT 'q', y,
                                       UNIQUE (x, y), UNIQUE (y))""",
                    """CREATE TABLE "odd name" (k1 INT, k2 TEXT, v BLOB, PRIMARY KEY (k2, k1),
                           FOREIGN KEY (k1) REFERENCES a (id) ON DELETE CASCADE,
                           FOREIGN KEY (k2, k1) REFERENCES "odd name" (k2, k1)
                           ON UPDATE SET NULL) WITHOUT ROWID""",
                    "CREATE TABLE c (id INTEGER, a_id INT REFERENCES a, e TEXT UNIQUE)",
                    "CREATE UNIQUE INDEX c_lower ON c (lower(e))",
                    # added later, in lower case: the key is in the stored text
                    "ALTER TABLE c ADD COLUMN b_id INT references a (id)"):
            self.sqlite(sql)
        lines = set(self.ok("schema").out.splitlines())
        for want in ("constraint\ta\tpk\tPRIMARY KEY (id)",
                     "constraint\ta\tunique(x, y)\tUNIQUE (x, y)",
                     "constraint\ta\tunique(y)\tUNIQUE (y)",
                     "column\ta\tx\tTEXT\tnot null\tdefault 'q'\tposition 2",
                     "constraint\todd name\tpk\tPRIMARY KEY (k2, k1)",
                     "constraint\todd name\tfk(k1)\tFOREIGN KEY (k1) REFERENCES a (id) "
                     "ON DELETE CASCADE",
                     "constraint\todd name\tfk(k2, k1)\tFOREIGN KEY (k2, k1) REFERENCES "
                     "odd name (k2, k1) ON UPDATE SET NULL",
                     "constraint\tc\tfk(a_id)\tFOREIGN KEY (a_id) REFERENCES a ()",
                     "constraint\tc\tfk(b_id)\tFOREIGN KEY (b_id) REFERENCES a (id)",
                     "constraint\tc\tunique(e)\tUNIQUE (e)",
                     "index\tc\tc_lower\tCREATE UNIQUE INDEX c_lower ON c (lower(e))"):
            self.assertIn(want, lines)
        self.assertEqual(len([x for x in lines if x.split("\t")[:2] in (
            ["constraint", "a"], ["constraint", "odd name"], ["constraint", "c"])]), 9)
        self.assertFalse([x for x in lines if "safe_migrate" in x])

    def test_schema_stable_across_backup_and_restore(self):
        self.ok("upgrade")
        before = self.ok("schema").out
        snap = self.ok("backup").out.strip().splitlines()[-1]
        self.sqlite("DROP TABLE orders")
        self.assertNotEqual(self.ok("schema").out, before)
        self.ok("restore", snap, "--yes", "--no-safety-backup")
        self.assertEqual(self.ok("schema").out, before)
        self.ok("validate")

    # -- validate ---------------------------------------------------------------
    def test_validate_clean_after_upgrade_and_stamp(self):
        self.ok("upgrade")
        r = self.ok("validate")
        self.assertIn("PASS schema-drift", r.out)
        self.assertIn("PASS integrity", r.out)
        self.sqlite("CREATE TABLE extra (a)")
        self.code(7, "validate")
        self.ok("stamp", "head")  # stamp records the schema as it is now
        self.ok("validate")

    def test_validate_changed_column_type(self):
        self.ok("upgrade", "0001")
        con = sqlite3.connect(self.path("app.db"))
        con.executescript("""
            PRAGMA foreign_keys = OFF;
            CREATE TABLE users_new (id INTEGER PRIMARY KEY, name TEXT NOT NULL, age TEXT);
            INSERT INTO users_new SELECT * FROM users;
            DROP TABLE users;
            ALTER TABLE users_new RENAME TO users;
            CREATE INDEX users_name ON users (name);
        """)
        con.close()
        r = self.code(7, "validate")
        self.assertIn("FAIL schema-drift: column 'users.age' type changed: INTEGER", r.out)
        self.assertIn("TEXT now", r.out)

    def test_validate_dropped_index_and_added_column(self):
        self.ok("upgrade")
        self.sqlite("DROP INDEX users_name")
        self.sqlite("ALTER TABLE users ADD COLUMN email TEXT")
        r = self.code(7, "validate")
        self.assertIn("FAIL schema-drift: missing index 'users_name' on table 'users'", r.out)
        self.assertIn("FAIL schema-drift: extra column 'users.email'", r.out)
        r = self.code(7, "validate", "-v")
        self.assertIn("- index\tusers\tusers_name", r.out)
        self.assertIn("+ column\tusers\temail\tTEXT\tnull", r.out)
        doc = self.run_sm("validate", "--json").json()
        self.assertFalse(doc["ok"])
        msgs = [f["message"] for f in doc["findings"] if f["level"] == "fail"]
        self.assertEqual(len(msgs), 2)

    def test_validate_nullability_change(self):
        self.ok("upgrade")
        con = sqlite3.connect(self.path("app.db"))
        con.executescript("""
            CREATE TABLE o2 (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users (id),
                             total INTEGER);
            DROP TABLE orders; ALTER TABLE o2 RENAME TO orders;
        """)
        con.close()
        r = self.code(7, "validate")
        self.assertIn("column 'orders.user_id' nullability changed: NOT NULL", r.out)

    def test_validate_foreign_key_orphans(self):
        self.ok("upgrade")
        self.sqlite("INSERT INTO users (id, name) VALUES (1, 'a')")
        self.sqlite("INSERT INTO orders (id, user_id) VALUES (10, 1)")
        self.ok("validate")
        self.sqlite("INSERT INTO orders (id, user_id) VALUES (11, 99)")  # FKs off in sqlite3
        r = self.code(7, "validate")
        self.assertIn("FAIL foreign-keys: row rowid=11 of table 'orders' references a missing "
                      "row in table 'users'", r.out)
        self.assertNotIn("rowid=10", r.out)

    def test_validate_expected_file(self):
        self.ok("upgrade")
        self.ok("schema", "--output", self.path("expected.txt"))
        self.ok("validate", "--expected", self.path("expected.txt"))
        self.sqlite("ALTER TABLE users ADD COLUMN email TEXT")
        self.ok("stamp", "head")  # the record agrees with the live schema ...
        r = self.code(7, "validate", "--expected", self.path("expected.txt"))
        # ... but the committed file does not
        self.assertIn("FAIL expected-schema: extra column 'users.email'", r.out)
        self.assertIn("expected.txt", r.out)
        # SQL is loaded into a scratch database (test_migdirs.py); garbage is neither
        self.write("garbage.txt", "this is no schema\n")
        r = self.code(1, "validate", "--expected", self.path("garbage.txt"))
        self.assertIn("garbage.txt', line 1", r.err)

    def test_validate_without_record(self):
        r = self.ok("validate")
        self.assertIn("WARN schema-drift: no recorded schema", r.out)


class SafetyPostgres(CliTest):
    def setUp(self):
        super().setUp()
        self.url = self.pg_new_db()
        self.write("migrations/0001_users.sql",
                   "-- migrate:up\nCREATE TABLE users (id int PRIMARY KEY, name text NOT NULL, "
                   "age int);\nCREATE INDEX users_name ON users (name);\n"
                   "-- migrate:down\nDROP TABLE users;\n")
        self.write("safe-migrate.ini", "[safe-migrate]\ndatabase_url = %s\n" % self.url)

    def test_safety_check_all_well(self):
        r = self.ok("safety-check")
        self.assertRegex(r.out, r"PASS connectivity: .*PostgreSQL")
        self.assertIn("PASS long-transactions", r.out)
        self.assertIn("PASS invalid-indexes", r.out)
        self.assertRegex(r.out, r"PASS disk-space: .*database")

    def test_lock_held_by_another_session(self):
        holder = subprocess.Popen(
            ["psql", self.url, "-X", "-q", "-c",
             "SELECT pg_advisory_lock(%d); SELECT pg_sleep(60);" % PG_LOCK_KEY],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                if self.psql(self.url, "SELECT count(*) FROM pg_locks WHERE locktype = "
                             "'advisory' AND granted AND database = (SELECT oid FROM "
                             "pg_database WHERE datname = current_database())") != "0":
                    break
                time.sleep(0.05)
            r = self.code(4, "safety-check")
            self.assertIn("FAIL concurrent-migration", r.out)
        finally:
            holder.kill()
            holder.wait()

    def test_long_transaction_on_touched_table(self):
        self.ok("upgrade")
        self.write("migrations/0002_age.sql",
                   "SET lock_timeout = '5s';\nALTER TABLE users ADD COLUMN x int;\n")
        self.psql(self.url, "CREATE TABLE other (a int)")
        holder = subprocess.Popen(
            ["psql", self.url, "-X", "-q", "-c",
             "BEGIN; LOCK TABLE users IN ACCESS SHARE MODE; SELECT pg_sleep(60);"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        env = {"SAFE_MIGRATE_LONG_TX_SECONDS": "1"}
        try:
            # wait until the transaction is older than the 1 s threshold
            for _ in range(400):
                if self.psql(self.url, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE "
                             "'%pg_sleep(60)%' AND pid <> pg_backend_pid() AND xact_start < "
                             "now() - interval '1.5 s'") != "0":
                    break
                time.sleep(0.05)
            r = self.code(4, "safety-check", env=env)
            self.assertRegex(r.out, r"FAIL long-transactions: process \d+ .* holding "
                                    r"AccessShareLock on table 'users'")
            self.assertIn("pg_terminate_backend", r.out)
            # the same transaction does not matter to a migration of another table
            os.unlink(self.path("migrations", "0002_age.sql"))
            self.write("migrations/0002_other.sql",
                       "SET lock_timeout = '5s';\nALTER TABLE other ADD COLUMN x int;\n")
            r = self.ok("safety-check", env=env)
            self.assertIn("PASS long-transactions", r.out)
        finally:
            holder.kill()
            holder.wait()

    def test_edited_applied_migration(self):
        self.ok("upgrade")
        p = self.path("migrations", "0001_users.sql")
        with open(p) as f:
            text = f.read()
        self.write("migrations/0001_users.sql", text.replace("age int", "age bigint"))
        r = self.code(4, "safety-check")
        self.assertIn("was edited", r.out)

    def test_lint_rules_on_pending(self):
        self.ok("upgrade")
        self.write("migrations/0002_risky.sql",
                   "ALTER TABLE users ADD COLUMN email text NOT NULL;\n")
        r = self.code(4, "lint")
        self.assertIn("adding-not-null-column-without-default", r.out)
        self.assertIn("missing-lock-timeout", r.out)
        self.code(4, "safety-check")

    def test_validate_column_order_and_v1_record(self):
        """A table rebuilt with its columns in another order is drift
        (SELECT * and positional INSERTs see it); a schema recorded before
        positions were (text v1) is compared without them."""
        self.ok("upgrade")
        self.psql(self.url, "ALTER TABLE users DROP COLUMN name")
        self.psql(self.url, "ALTER TABLE users ADD COLUMN name text NOT NULL")
        self.psql(self.url, "CREATE INDEX users_name ON users (name)")
        r = self.code(7, "validate")
        self.assertIn("FAIL schema-drift: table 'users' column order changed: id, name, age in "
                      "the schema recorded after the last migration, id, age, name now", r.out)
        self.assertEqual(r.out.count("FAIL"), 1, r.out)
        r = self.code(7, "validate", "-v")
        self.assertIn("- column\tusers\tname\ttext\tnot null\tposition 2\n", r.out)
        self.assertIn("+ column\tusers\tname\ttext\tnot null\tposition 3\n", r.out)
        # the same record as an earlier version wrote it: no order, no drift
        recorded = self.psql(self.url, "SELECT schema_text FROM safe_migrate_schema")
        v1 = recorded.replace("# safe-migrate schema v2", "# safe-migrate schema v1")
        v1 = "\n".join(l.rsplit("\tposition ", 1)[0] for l in v1.splitlines())
        self.assertNotIn("position", v1)
        self.psql(self.url, "UPDATE safe_migrate_schema SET schema_text = '%s'" %
                  v1.replace("'", "''"))
        self.assertIn("PASS schema-drift", self.ok("validate").out)
        # and read as an --expected file
        self.write("v1.txt", v1 + "\n")
        self.assertIn("PASS expected-schema", self.ok("validate", "--expected", "v1.txt").out)

    def test_validate_drift(self):
        self.ok("upgrade")
        self.ok("validate")
        a = self.ok("schema").out
        self.assertEqual(a, self.ok("schema").out)
        self.assertIn("column\tusers\tage\tinteger\tnull\tposition 3\n", a)
        self.psql(self.url, "ALTER TABLE users ALTER COLUMN age TYPE bigint")
        self.psql(self.url, "DROP INDEX users_name")
        self.psql(self.url, "ALTER TABLE users ADD COLUMN email text")
        self.psql(self.url, "CREATE FUNCTION one(a int) RETURNS int LANGUAGE sql AS 'SELECT 1'")
        r = self.code(7, "validate")
        self.assertIn("extra function 'one(a integer)'", r.out)
        self.assertIn("column 'users.age' type changed: integer in the schema recorded after "
                      "the last migration, bigint now", r.out)
        self.assertIn("missing index 'users_name' on table 'users'", r.out)
        self.assertIn("extra column 'users.email'", r.out)

    def test_schema_stable_across_backup_and_restore(self):
        with open(os.path.join(FIXTURES, "pagila", "pagila-schema.sql")) as f:
            pagila = f.read()
        subprocess.run(["psql", self.url, "-X", "-q", "-v", "ON_ERROR_STOP=0"], input=pagila,
                       capture_output=True, text=True)
        before = self.ok("schema").out
        self.assertIn("table\tfilm\n", before)
        self.assertEqual(before, self.ok("schema").out)
        snap = self.ok("-b", self.path("backups"), "backup").out.strip().splitlines()[-1]
        other = self.pg_new_db()
        self.ok("-b", self.path("backups"), "--yes", "restore", snap, "--to", other)
        self.assertEqual(self.ok("-d", other, "schema").out, before)
        self.psql(self.url, "DROP TABLE film_actor CASCADE")
        self.assertNotEqual(self.ok("schema").out, before)
        self.ok("-b", self.path("backups"), "--yes", "restore", snap)
        self.assertEqual(self.ok("schema").out, before)

    def test_validate_invalid_index(self):
        self.ok("upgrade")
        self.psql(self.url, "UPDATE pg_index SET indisvalid = false "
                            "WHERE indexrelid = 'users_name'::regclass")
        r = self.code(7, "validate")
        self.assertIn("FAIL invalid-index: index 'users_name' on table 'users' is invalid", r.out)
        r = self.ok("safety-check")  # present before a run: a warning there
        self.assertIn("WARN invalid-indexes: index 'users_name'", r.out)

    def test_not_valid_constraint_is_a_warning(self):
        self.ok("upgrade")
        self.psql(self.url, "ALTER TABLE users ADD CONSTRAINT age_pos CHECK (age > 0) NOT VALID")
        r = self.code(7, "validate")  # drift: a constraint nobody recorded
        self.assertIn("WARN not-valid-constraint: constraint 'age_pos' on table 'users'", r.out)
        self.ok("stamp", "head")
        self.ok("validate")


if __name__ == "__main__":
    main()
