"""CLI tests of the safe-migrate pipeline, run wrap mode, dry runs and the
run journal, against real SQLite files."""
import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import time

from smtest import BIN, CliTest, main

# Long only on real data: the pre-flight lint rehearses migrations on an empty
# copy of the schema, where this returns at once.
LONG_SQL = "SELECT count(*) FROM big a, big b, big c;\n"


class PipelineSqlite(CliTest):
    def setUp(self):
        super().setUp()
        self.write("safe-migrate.ini",
                   "[safe-migrate]\ndatabase_url = sqlite:///app.db\nbackup_dir = backups\n")
        con = sqlite3.connect(self.path("app.db"))
        con.executescript("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);"
                          "INSERT INTO users(name) VALUES ('ada'), ('alan'), (NULL), ('');"
                          "CREATE TABLE big (x INT);"
                          "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                          "WHERE x < 3000) INSERT INTO big SELECT x FROM c;")
        con.close()
        self.write("migrations/0001_base.sql",
                   "-- migrate:up\nCREATE TABLE base (x INT);\n-- migrate:down\nDROP TABLE base;\n")
        self.ok("upgrade")

    def add(self, name, up, down=None, notx=False):
        text = "-- migrate:up%s\n%s\n" % (" transaction:false" if notx else "", up)
        if down:
            text += "-- migrate:down\n%s\n" % down
        self.write("migrations/" + name, text)

    def bytes_of_db(self):
        with open(self.path("app.db"), "rb") as f:
            return f.read()

    def runs(self):
        with open(self.path("backups", "safe-migrate-runs.jsonl")) as f:
            return [json.loads(l) for l in f if l.strip()]

    def test_third_of_three_fails_and_is_restored(self):
        self.add("0002_a.sql", "ALTER TABLE users ADD COLUMN email TEXT;\nUPDATE users SET email = 'x';")
        self.add("0003_b.sql", "CREATE TABLE b (x INT);\nINSERT INTO b VALUES (1);")
        # fails only on the real data (two users named alike), not in the lint's rehearsal
        self.add("0004_c.sql", "UPDATE users SET name = 'same';\n"
                 "CREATE UNIQUE INDEX users_name_uq ON users(name);")
        before = self.sqlite_dump()
        r = self.code(5, "safe-migrate", "--json")
        self.assertEqual(self.sqlite_dump(), before)
        j = r.json()
        self.assertEqual(j["outcome"], "restored")
        self.assertEqual(j["applied"], [])
        self.assertTrue(os.path.exists(self.path(j["snapshot"])))
        names = [p["name"] for p in j["phases"]]
        self.assertEqual(names, ["safety-check", "snapshot", "verify", "apply", "restore"])
        self.assertEqual([p["ok"] for p in j["phases"]], [True, True, True, False, True])
        self.assertIn("0004_c.sql', line 3", j["error"])
        self.assertIn("UNIQUE", j["error"])
        self.assertEqual(self.runs()[-1]["outcome"], "restored")
        # the journal is closed: the next run is not blocked by it
        self.code(3, "check")

    def test_a_write_to_an_attached_database_is_refused(self):
        # the snapshot holds app.db only: a write through ATTACH could not
        # be undone by the restore, so the run refuses it before it runs
        other = self.path("other.db")
        con = sqlite3.connect(other)
        con.executescript("CREATE TABLE src (x INT); INSERT INTO src VALUES (1);")
        con.close()
        with open(other, "rb") as f:
            other_before = f.read()
        self.add("0002_a.sql", "CREATE TABLE a (x INT);")
        # (the comment: the lint of the past blocked on the names of o)
        self.add("0003_b.sql", "ATTACH '%s' AS o;\n-- safe-migrate:ignore sql-error\n"
                 "INSERT INTO o.src VALUES (2);\nUPDATE o.src SET x = 3;" % other, notx=True)
        before = self.sqlite_dump()
        r = self.run_sm("safe-migrate", "--json")
        with open(other, "rb") as f:
            self.assertEqual(f.read(), other_before, r)
        self.assertEqual(r.code, 5, r)
        self.assertEqual(r.json()["outcome"], "restored")
        self.assertIn("0003_b.sql', line 4", r.json()["error"])
        self.assertIn("attached database 'o'", r.json()["error"])
        self.assertEqual(self.sqlite_dump(), before)
        # the lint warns at the ATTACH, and does not block on the names
        # of the attached database it cannot open
        lint = self.ok("lint")
        self.assertIn("0003_b.sql:2: attach:", lint.out)
        self.assertIn("0003_b.sql:4: attach: not checked", lint.out)
        self.assertNotIn("sql-error", lint.out)
        # a PRAGMA that sets something of the attached database is a write
        self.add("0003_b.sql", "ATTACH '%s' AS o;\nPRAGMA o.user_version = 7;" % other,
                 notx=True)
        r = self.code(5, "safe-migrate", "--json")
        self.assertIn("attached database 'o'", r.json()["error"])
        with open(other, "rb") as f:
            self.assertEqual(f.read(), other_before)
        # the main database under another name is attached all the same
        self.add("0003_b.sql", "ATTACH '%s' AS again;\nINSERT INTO again.users(name) "
                 "VALUES ('x');" % self.path("app.db"), notx=True)
        r = self.code(5, "safe-migrate", "--json")
        self.assertIn("attached database 'again'", r.json()["error"])
        self.assertEqual(self.sqlite_dump(), before)

    def test_reading_an_attached_database_is_allowed(self):
        other = self.path("other.db")
        con = sqlite3.connect(other)
        con.executescript("CREATE TABLE src (x INT); INSERT INTO src VALUES (1), (2);")
        con.close()
        # (an attached database in memory is scratch space: written freely)
        self.add("0002_a.sql", "ATTACH '%s' AS o;\nCREATE TABLE copied AS SELECT * FROM o.src;"
                 "\nPRAGMA o.table_info(src);\nDETACH o;\nATTACH ':memory:' AS scratch;\n"
                 "CREATE TABLE scratch.s AS SELECT x * 10 AS x FROM copied;\n"
                 "INSERT INTO copied SELECT x FROM scratch.s;\nDETACH scratch;" % other,
                 notx=True)
        r = self.ok("safe-migrate", "--json")
        self.assertEqual(r.json()["outcome"], "applied")
        con = sqlite3.connect(self.path("app.db"))
        self.assertEqual(con.execute("SELECT sum(x) FROM copied").fetchone()[0], 33)
        con.close()

    def test_success_json_and_nothing_to_do(self):
        self.add("0002_a.sql", "CREATE TABLE a (x INT);", "DROP TABLE a;")
        r = self.ok("safe-migrate", "--json")
        j = r.json()
        self.assertEqual(j["outcome"], "applied")
        self.assertEqual(j["applied"], ["0002"])
        self.assertEqual([p["name"] for p in j["phases"]],
                         ["safety-check", "snapshot", "verify", "apply", "validate"])
        self.assertEqual(oct(os.stat(self.path(j["snapshot"])).st_mode & 0o777), "0o600")
        r = self.ok("safe-migrate", "--json")
        self.assertEqual(r.json()["outcome"], "nothing_to_do")
        self.assertIsNone(r.json()["snapshot"])
        self.assertEqual(len([f for f in os.listdir(self.path("backups")) if f.endswith(".tar.zst")]), 1)

    def test_failure_after_transaction_false_is_restored(self):
        self.add("0002_idx.sql", "CREATE INDEX users_name_idx ON users(name);", notx=True)
        self.add("0003_bad.sql", "UPDATE users SET name = 'same';\n"
                 "CREATE UNIQUE INDEX users_name_uq ON users(name);")
        before = self.sqlite_dump()
        r = self.code(5, "safe-migrate", "--json")
        self.assertEqual(self.sqlite_dump(), before)
        self.assertEqual(self.sqlite("SELECT count(*) FROM sqlite_master WHERE name='users_name_idx'"),
                         [(0,)])

    # fails only on the real data (two users named alike), not in the lint's rehearsal
    DUPLICATE = ("UPDATE users SET name = 'same';\n"
                 "CREATE UNIQUE INDEX users_name_uq ON users(name);")

    def sha3(self):
        r = subprocess.run(["sqlite3", self.path("app.db"), ".sha3sum"], capture_output=True,
                           text=True, check=True)
        return r.stdout

    def test_own_transaction_failing_after_a_commit_is_restored(self):
        """A migration that opens its own transaction (the README's table
        rebuild, or a SAVEPOINT outside ours) and fails inside it: its
        transaction, which holds the write lock, is rolled back, so the
        restore's connection gets in at once (it waited out --lock-timeout
        and exited 6 before)."""
        for own in ("PRAGMA foreign_keys=OFF;\nBEGIN;\n%s\nCOMMIT;\nPRAGMA foreign_keys=ON;",
                    "SAVEPOINT rebuild;\n%s\nRELEASE rebuild;"):
            with self.subTest(own=own):
                self.add("0002_a.sql", "CREATE TABLE a (x INT);")
                self.add("0003_own.sql", own % self.DUPLICATE, notx=own.startswith("SAVEPOINT"))
                before, dump = self.sha3(), self.sqlite_dump()
                r = self.code(5, "--lock-timeout", "5s", "safe-migrate", "--json")
                self.assertEqual(r.json()["outcome"], "restored")
                self.assertIn("the transaction it began was rolled back", r.json()["error"])
                self.assertEqual(self.sha3(), before)
                self.assertEqual(self.sqlite_dump(), dump)
                os.unlink(self.path("migrations", "0002_a.sql"))
                os.unlink(self.path("migrations", "0003_own.sql"))

    def test_own_transaction_failing_first_changes_nothing(self):
        """The first pending migration fails inside the transaction it
        opened: nothing was committed, so exit 1 and no restore."""
        for own in ("PRAGMA foreign_keys=OFF;\nBEGIN;\n%s\nCOMMIT;",
                    "SAVEPOINT rebuild;\n%s\nRELEASE rebuild;"):
            with self.subTest(own=own):
                self.add("0002_own.sql", own % self.DUPLICATE, notx=own.startswith("SAVEPOINT"))
                before = self.sha3()
                r = self.code(1, "--lock-timeout", "5s", "safe-migrate", "--json")
                self.assertEqual(r.json()["outcome"], "rolled_back")
                self.assertIn("no restore was needed", r.err)
                self.assertNotIn("restoring", r.err)
                self.assertEqual(self.sha3(), before)
                os.unlink(self.path("migrations", "0002_own.sql"))

    def test_own_transaction_after_a_commit_of_its_own_is_restored(self):
        """A statement before the file's BEGIN committed on its own: the
        failure inside the BEGIN leaves that change, which the restore
        takes back."""
        self.add("0002_own.sql", "CREATE TABLE a (x INT);\nBEGIN;\n%s\nCOMMIT;" % self.DUPLICATE)
        before = self.sha3()
        r = self.code(5, "--lock-timeout", "5s", "safe-migrate", "--json")
        self.assertEqual(r.json()["outcome"], "restored")
        self.assertEqual(self.sha3(), before)

    def test_own_transaction_without_commit_fails_and_is_rolled_back(self):
        self.add("0002_a.sql", "CREATE TABLE a (x INT);")
        self.add("0003_open.sql", "BEGIN;\nCREATE TABLE b (x INT);")
        before = self.sha3()
        r = self.code(5, "--lock-timeout", "5s", "safe-migrate", "--json")
        self.assertIn("left the transaction it began open", r.json()["error"])
        self.assertEqual(self.sha3(), before)

    def test_exclusive_locking_mode_left_by_a_migration_is_released_for_the_restore(self):
        """locking_mode=EXCLUSIVE keeps the file locked after the
        migration's transactions: the restore's connection was locked out
        (exit 8 or 6).  In WAL mode SQLite cannot leave EXCLUSIVE without
        leaving WAL."""
        for pragmas in ("PRAGMA locking_mode=EXCLUSIVE;",
                        "PRAGMA locking_mode=EXCLUSIVE;\nPRAGMA journal_mode=WAL;"):
            with self.subTest(pragmas=pragmas):
                self.add("0002_ex.sql", pragmas + "\nCREATE TABLE ex (x INT);", notx=True)
                self.add("0003_bad.sql", self.DUPLICATE)
                before = self.sha3()
                r = self.code(5, "--lock-timeout", "5s", "safe-migrate", "--json")
                self.assertEqual(r.json()["outcome"], "restored")
                self.assertEqual(self.sha3(), before)
                self.assertEqual(self.sqlite("PRAGMA journal_mode"), [("delete",)])
                os.unlink(self.path("migrations", "0002_ex.sql"))
                os.unlink(self.path("migrations", "0003_bad.sql"))

    def head(self):
        """(page size, journal mode) as app.db's header says (bytes 16-19)."""
        with open(self.path("app.db"), "rb") as f:
            b = f.read(20)
        return (b[16] << 8 | b[17], {(1, 1): "delete", (2, 2): "wal"}[(b[18], b[19])])

    def test_page_size_and_journal_mode_a_migration_changed_are_restored(self):
        """A transaction:false migration changes the page size and puts the
        database in WAL mode (or only the latter), a later one fails: the
        restore gives back the page size (SQLite cannot change it in WAL
        mode: the restore failed "attempt to write a readonly database",
        reported as exit 8) and the journal mode (it stayed WAL)."""
        for change in ("PRAGMA page_size = 8192;\nVACUUM;\nPRAGMA journal_mode = WAL;",
                       "PRAGMA journal_mode = WAL;"):
            with self.subTest(change=change):
                self.add("0002_wal.sql", change, notx=True)
                self.add("0003_bad.sql", self.DUPLICATE)
                before, head = self.sha3(), self.head()
                self.assertEqual(head, (4096, "delete"))
                r = self.code(5, "--lock-timeout", "5s", "safe-migrate", "--json")
                self.assertEqual(r.json()["outcome"], "restored")
                self.assertEqual(self.sha3(), before)
                self.assertEqual(self.head(), head)
                os.unlink(self.path("migrations", "0002_wal.sql"))
                os.unlink(self.path("migrations", "0003_bad.sql"))

    def test_wal_mode_a_migration_left_is_restored(self):
        """The database is in WAL mode before the run; a migration takes it
        out of WAL mode and a later one fails: back in WAL mode."""
        self.sqlite("PRAGMA journal_mode = WAL")
        self.add("0002_delete.sql", "PRAGMA journal_mode = DELETE;\nCREATE TABLE a (x INT);",
                 notx=True)
        self.add("0003_bad.sql", self.DUPLICATE)
        before = self.sha3()
        r = self.code(5, "--lock-timeout", "5s", "safe-migrate", "--json")
        self.assertEqual(r.json()["outcome"], "restored")
        self.assertEqual(self.sha3(), before)
        self.assertEqual(self.head(), (4096, "wal"))

    def test_restore_failing_for_another_reason_is_not_reported_as_concurrent_writes(self):
        """Other sessions' writes were seen (those of a transaction:false
        migration count as theirs) and the restore then failed before the
        failed state could be saved, for a reason of its own (here: an
        application connection keeps the database in WAL mode, and the page
        size to restore differs): exit 6 with that reason, not exit 8
        "other sessions wrote" whatever the failure.  The printed command
        keeps the safety snapshot (it saves their writes) and works once
        the application's connection is closed."""
        self.add("0002_wal.sql", "PRAGMA page_size = 8192;\nVACUUM;\nPRAGMA journal_mode = WAL;",
                 notx=True)
        # long enough to open the application's connection while it runs
        self.add("0003_bad.sql", "SELECT count(*) FROM big a, big b;\n" + self.DUPLICATE)
        before, head = self.sha3(), self.head()
        apps = []

        def app_reads_in_wal():
            """The application has read the database in WAL mode (and so
            keeps it open in WAL mode), or does now if it can at once."""
            if apps:
                return True
            if not self.journals(self.path("backups")) or self.head()[1] != "wal":
                return False
            app = sqlite3.connect(self.path("app.db"), timeout=0)
            try:
                app.execute("SELECT count(*) FROM users").fetchall()
            except sqlite3.OperationalError:  # the run holds a lock right now
                app.close()
                return False
            apps.append(app)
            return True

        try:
            code, err, caught = self.interrupt(("--lock-timeout", "5s", "safe-migrate"),
                                               app_reads_in_wal, act=lambda: None)
        finally:
            for app in apps:
                app.close()
        self.assertTrue(caught, err)
        self.assertEqual(code, 6, err)
        self.assertIn("THE AUTOMATIC RESTORE FAILED", err)
        self.assertIn("no other connection has", err)
        self.assertNotIn("once the failed state can be saved", err)
        line = [l for l in err.splitlines() if " restore " in l and " --yes" in l]
        self.assertEqual(len(line), 1, err)
        self.assertNotIn("--no-safety-backup", line[0])
        self.ok(*shlex.split(line[0].split("error:", 1)[1])[1:])
        self.ok("recover", "--discard")
        self.assertEqual(self.sha3(), before)
        self.assertEqual(self.head(), head)

    def test_validation_only_failure_is_restored(self):
        self.sqlite("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        self.sqlite("CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INT REFERENCES parent(id))")
        before = self.sqlite_dump()
        # foreign_keys is off by default in SQLite: the orphan goes in silently
        self.add("0002_orphan.sql", "INSERT INTO child (parent_id) VALUES (42);")
        r = self.code(5, "safe-migrate", "--json")
        j = r.json()
        self.assertEqual(j["outcome"], "restored")
        self.assertEqual([p["name"] for p in j["phases"]][-2:], ["validate", "restore"])
        self.assertTrue(any(f["level"] == "fail" and "child" in f["message"] for f in j["findings"]),
                        j["findings"])
        self.assertEqual(self.sqlite_dump(), before)

    def fk_tables(self):
        """parent, and two tables whose foreign keys reference it (other's
        spelled in lower case and added by ALTER TABLE)"""
        for sql in ("CREATE TABLE parent (id INTEGER PRIMARY KEY)",
                    "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INT REFERENCES parent(id))",
                    "CREATE TABLE other (id INTEGER PRIMARY KEY)",
                    "ALTER TABLE other ADD COLUMN parent_id INT references parent(id)",
                    "INSERT INTO parent VALUES (1), (2)",
                    "INSERT INTO child (parent_id) VALUES (1)",
                    "INSERT INTO other (parent_id) VALUES (2)"):
            self.sqlite(sql)

    def fk_pass(self, j):
        return [f["message"] for f in j["findings"]
                if f.get("check") == "foreign-keys" and f["level"] == "pass"]

    def test_validate_rechecks_foreign_keys_only_where_the_run_wrote(self):
        self.fk_tables()
        self.add("0002_note.sql", "CREATE TABLE note (x INT);\nINSERT INTO note VALUES (1);")
        j = self.ok("safe-migrate", "--json").json()
        self.assertEqual(j["outcome"], "applied")
        msgs = self.fk_pass(j)
        self.assertEqual(len(msgs), 1, j["findings"])
        self.assertIn("checked in 0 of the 2 tables", msgs[0])
        # a row written in child: child is checked, other is not
        self.add("0003_child.sql", "INSERT INTO child (parent_id) VALUES (2);")
        j = self.ok("safe-migrate", "--json").json()
        self.assertIn("checked in 1 of the 2 tables", self.fk_pass(j)[0])
        # ALTER TABLE may rewrite what other tables reference: everything is checked
        self.add("0004_rename.sql", "ALTER TABLE note RENAME TO note2;")
        j = self.ok("safe-migrate", "--json").json()
        self.assertEqual(j["outcome"], "applied")
        self.assertEqual(self.fk_pass(j), [])

    def test_schema_recorded_after_a_run_is_the_schema_read_whole(self):
        # the run re-reads only the tables whose CREATE TABLE changed: each
        # kind of change, and tables it leaves alone, must come out as a
        # whole reading does
        self.fk_tables()
        for sql in ("CREATE TABLE keep (id INTEGER PRIMARY KEY, code TEXT UNIQUE, extra INT, "
                    "p INT REFERENCES parent(id))",
                    "CREATE TABLE gone (x INT)",
                    "CREATE TABLE renamed (id INTEGER PRIMARY KEY, v TEXT NOT NULL DEFAULT 'x')",
                    "CREATE TABLE kid (id INTEGER PRIMARY KEY, r INT REFERENCES renamed(id))",
                    "CREATE TABLE mod (a INT, b TEXT, UNIQUE (a, b))",
                    "CREATE TABLE \"we\"\"ird 'n\u00e4me\" (k TEXT UNIQUE)"):
            self.sqlite(sql)
        self.ok("stamp", "head")
        self.add("0002_change.sql",
                 "ALTER TABLE child ADD COLUMN note TEXT NOT NULL DEFAULT '';\n"
                 "ALTER TABLE renamed RENAME TO renamed2;\n"
                 "ALTER TABLE renamed2 RENAME COLUMN v TO w;\n"
                 "DROP TABLE gone;\n"
                 "CREATE TABLE fresh (id INTEGER PRIMARY KEY, k TEXT UNIQUE, "
                 "p INT references parent (id) ON DELETE CASCADE);\n"
                 "CREATE TABLE mod_new (a INT, b TEXT NOT NULL, c INT, UNIQUE (b, a));\n"
                 "INSERT INTO mod_new (a, b) SELECT a, coalesce(b, '') FROM mod;\n"
                 "DROP TABLE mod;\nALTER TABLE mod_new RENAME TO mod;\n"
                 "ALTER TABLE keep DROP COLUMN extra;\n"
                 "CREATE INDEX keep_p ON keep (p);\n"
                 "ALTER TABLE \"we\"\"ird 'n\u00e4me\" ADD COLUMN p INT REFERENCES parent;")
        self.ok("safe-migrate")
        whole = self.ok("schema").out
        recorded = self.sqlite("SELECT schema_text FROM safe_migrate_schema")[0][0]
        self.assertEqual(recorded, whole)
        for want in ("column\tchild\tnote\tTEXT\tnot null\tdefault ''\tposition 3",
                     "column\trenamed2\tw\tTEXT\tnot null\tdefault 'x'\tposition 2",
                     "constraint\tkid\tfk(r)\tFOREIGN KEY (r) REFERENCES renamed2 (id)",
                     "constraint\tfresh\tfk(p)\tFOREIGN KEY (p) REFERENCES parent (id) "
                     "ON DELETE CASCADE",
                     "constraint\tmod\tunique(b, a)\tUNIQUE (b, a)",
                     "constraint\twe\"ird 'n\u00e4me\tfk(p)\tFOREIGN KEY (p) REFERENCES parent ()",
                     "constraint\twe\"ird 'n\u00e4me\tunique(k)\tUNIQUE (k)"):
            self.assertIn(want, whole.splitlines())
        self.assertNotIn("gone", whole)
        self.assertNotIn("column\tkeep\textra", whole)
        self.assertIn("constraint\tkeep\tunique(code)\tUNIQUE (code)", whole.splitlines())
        self.assertIn("PASS schema-drift", self.ok("validate").out)

    def test_validate_catches_orphans_the_run_made_without_writing_the_child(self):
        self.fk_tables()
        # through the parent: child itself is not written
        self.add("0002_parent.sql", "DELETE FROM parent WHERE id = 1;")
        before = self.sqlite_dump()
        j = self.code(5, "safe-migrate", "--json").json()
        self.assertEqual(j["outcome"], "restored")
        self.assertTrue(any(f["level"] == "fail" and "'child'" in f["message"]
                            for f in j["findings"]), j["findings"])
        self.assertEqual(self.sqlite_dump(), before)
        os.remove(self.path("migrations", "0002_parent.sql"))
        # through a trigger on a table no foreign key involves
        self.sqlite("CREATE TRIGGER users_ins AFTER INSERT ON users BEGIN "
                    "DELETE FROM parent WHERE id = 2; END")
        self.add("0002_user.sql", "INSERT INTO users (name) VALUES ('grace');")
        before = self.sqlite_dump()
        j = self.code(5, "safe-migrate", "--json").json()
        self.assertEqual(j["outcome"], "restored")
        self.assertTrue(any(f["level"] == "fail" and "'other'" in f["message"]
                            for f in j["findings"]), j["findings"])
        self.assertEqual(self.sqlite_dump(), before)

    def test_orphans_already_there_in_a_table_the_run_writes_are_not_blamed_on_it(self):
        self.fk_tables()
        self.sqlite("INSERT INTO child (parent_id) VALUES (99)")  # an orphan before the run
        self.add("0002_child.sql", "INSERT INTO child (parent_id) VALUES (2);")
        j = self.ok("safe-migrate", "--json").json()
        self.assertEqual(j["outcome"], "applied")
        self.assertIn("checked in 1 of the 2 tables", self.fk_pass(j)[0])
        self.assertTrue(any(f["level"] == "pass" and "already present before the run" in f["message"]
                            for f in j["findings"]), j["findings"])
        # a new orphan beside it is the run's
        self.add("0003_orphan.sql", "INSERT INTO child (parent_id) VALUES (98);")
        j = self.code(5, "safe-migrate", "--json").json()
        self.assertEqual(j["outcome"], "restored")
        fails = [f["message"] for f in j["findings"] if f["level"] == "fail"]
        self.assertEqual(len(fails), 1, fails)
        self.assertIn("'child'", fails[0])

    def test_orphans_in_a_table_the_run_created_are_the_runs(self):
        # the parent is written after the run filled its new child: the
        # baseline taken then must not take that child's orphan for an old one
        self.fk_tables()
        self.add("0002_new_child.sql",
                 "CREATE TABLE child2 (id INTEGER PRIMARY KEY, parent_id INT REFERENCES parent(id));\n"
                 "INSERT INTO child2 (parent_id) VALUES (99);\n"
                 "UPDATE parent SET id = id WHERE id = 1;")
        before = self.sqlite_dump()
        j = self.code(5, "safe-migrate", "--json").json()
        self.assertEqual(j["outcome"], "restored")
        self.assertTrue(any(f["level"] == "fail" and "'child2'" in f["message"]
                            for f in j["findings"]), j["findings"])
        self.assertEqual(self.sqlite_dump(), before)

    def test_foreign_keys_of_tables_the_run_does_not_write_are_not_checked(self):
        # a foreign key SQLite cannot check (its parent column has no unique
        # index): PRAGMA foreign_key_check fails on it, wherever it is run
        self.sqlite("CREATE TABLE loose_parent (code TEXT)")
        self.sqlite("CREATE TABLE loose (id INTEGER PRIMARY KEY, code TEXT REFERENCES loose_parent(code))")
        self.add("0002_note.sql", "CREATE TABLE note (x INT);")
        j = self.ok("safe-migrate", "--json").json()
        self.assertEqual(j["outcome"], "applied")
        self.assertIn("checked in 0 of the 1 tables", self.fk_pass(j)[0])
        # a run that writes it is checked, and fails (nothing was changed: the
        # baseline's check fails before the statement runs, validate's after)
        self.add("0003_loose.sql", "INSERT INTO loose (code) VALUES ('x');")
        before = self.sqlite_dump()
        r = self.code(5, "safe-migrate", "--json")
        self.assertIn("foreign key mismatch", r.out + r.err)
        self.assertEqual(self.sqlite_dump(), before)

    def null_in_not_null(self):
        """strict_t fails PRAGMA quick_check from now on (a NULL in a column
        made NOT NULL behind SQLite's back): a problem the database has
        before any run, which reading the table does not trip over."""
        con = sqlite3.connect(self.path("app.db"))
        con.executescript("CREATE TABLE strict_t (x);"
                          "INSERT INTO strict_t VALUES (NULL), (1);"
                          "PRAGMA writable_schema = ON;"
                          "UPDATE sqlite_schema SET sql = 'CREATE TABLE strict_t (x NOT NULL)' "
                          "WHERE name = 'strict_t';")
        con.close()
        self.assertNotEqual(self.sqlite("PRAGMA quick_check"), [("ok",)])

    def test_quick_check_before_the_run_beside_the_snapshot(self):
        """The whole file is checked beside the snapshot's copy (its problems
        are reported, not blamed on the run); validate checks the tables the
        run wrote, compared with their check just before the run first wrote
        there."""
        self.null_in_not_null()
        # a run that does not write strict_t: told, applied, strict_t not checked after
        self.add("0002_note.sql", "CREATE TABLE note (x INT);")
        j = self.ok("safe-migrate", "--json").json()
        self.assertEqual(j["outcome"], "applied")
        warn = [f["message"] for f in j["findings"]
                if f.get("check") == "integrity" and f["level"] == "warn"]
        self.assertEqual(len(warn), 1, j["findings"])
        self.assertIn("already fails PRAGMA quick_check", warn[0])
        self.assertIn("NULL value in strict_t.x", warn[0])
        self.assertIn("the database's integrity checks found no problem",
                      [f["message"] for f in j["findings"] if f.get("check") == "integrity"])
        # a run that writes strict_t: its problem was there before, not the run's
        self.add("0003_strict.sql", "UPDATE strict_t SET x = x + 1 WHERE rowid = 2;")
        j = self.ok("safe-migrate", "--json").json()
        self.assertEqual(j["outcome"], "applied")
        self.assertTrue(any(f.get("check") == "integrity" and f["level"] == "pass" and
                            "already present before the run" in f["message"]
                            for f in j["findings"]), j["findings"])
        # a run that fails after a commit goes back to the state before it,
        # the problem it already had included (the restore used to refuse the
        # snapshot for that problem: exit 6, "restore failed, act now")
        self.add("0004_ok.sql", "CREATE TABLE note4 (x INT);")
        self.add("0005_bad.sql", "UPDATE users SET name = 'same';\n"
                 "CREATE UNIQUE INDEX users_name_uq ON users(name);")
        before = self.sqlite_dump()
        j = self.code(5, "safe-migrate", "--json").json()
        self.assertEqual(j["outcome"], "restored")
        self.assertEqual(self.sqlite_dump(), before)
        self.assertNotEqual(self.sqlite("PRAGMA quick_check"), [("ok",)])

    def command_leaving_a_lock(self):
        """A command for run -- that writes, leaves a session holding the
        write lock for 4 s, and fails: the automatic restore cannot get in
        within a --lock-timeout of 1s (exit 6)."""
        holder = ("import sqlite3, sys, time\n"
                  "con = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
                  "con.execute('BEGIN IMMEDIATE')\n"
                  "open(sys.argv[2], 'w').close()\n"
                  "time.sleep(float(sys.argv[3]))\n")
        return self.write("mig.py",
                          "import os, sqlite3, subprocess, sys, time\n"
                          "db = os.environ['DATABASE_URL'][len('sqlite:///'):]\n"
                          "con = sqlite3.connect(db)\n"
                          "con.execute('CREATE TABLE half (x INT)')\n"
                          "con.commit()\n"
                          "con.close()\n"
                          "subprocess.Popen([sys.executable, '-c', %r, db, 'locked', '4'],\n"
                          "                 start_new_session=True)\n"
                          "while not os.path.exists('locked'):\n"
                          "    time.sleep(0.02)\n"
                          "sys.exit(1)\n" % holder)

    def wait_for_write_lock(self):
        """Waits (at most 30 s) until no session holds app.db's write lock."""
        deadline = time.time() + 30
        while time.time() < deadline:
            con = sqlite3.connect(self.path("app.db"), timeout=0, isolation_level=None)
            try:
                con.execute("BEGIN IMMEDIATE")
                con.execute("ROLLBACK")
                return
            except sqlite3.OperationalError:
                time.sleep(0.1)
            finally:
                con.close()

    def test_restore_failed_prints_a_command_that_restores_recorded_problems(self):
        """Exit 6 on a database that already failed quick_check: the
        hand-restore command it prints carries --accept-recorded-problems,
        and works once the lock that kept the automatic restore out is
        gone (without the option, restore refuses that snapshot)."""
        self.null_in_not_null()
        before = self.sqlite_dump()
        script = self.command_leaving_a_lock()
        r = self.code(6, "--lock-timeout", "1s", "run", "--", "/usr/bin/python3", script)
        line = [l for l in r.err.splitlines() if " restore " in l and " --yes" in l]
        self.assertEqual(len(line), 1, r.err)
        self.assertIn("--accept-recorded-problems", line[0])
        # the safety snapshot keeps what an application still up writes
        self.assertNotIn("--no-safety-backup", line[0])
        cmd = shlex.split(line[0].split("error:", 1)[1])
        self.assertEqual(cmd[0], "safe-migrate")
        self.wait_for_write_lock()
        r = self.run_sm(*[a for a in cmd[1:] if a != "--accept-recorded-problems"])
        self.assertEqual(r.code, 7, r)
        self.ok(*cmd[1:])
        self.assertEqual(self.sqlite_dump(), before)

    def test_restore_failed_prints_a_command_that_runs_from_anywhere(self):
        """The exit-6 command is for an operator in a hurry, in whatever
        directory their shell is: it names the config file, the database
        and the backup directory by absolute paths, and quotes them (here a
        backup directory with a space and a quote, given with -b), so that
        pasted as printed in another directory it restores the snapshot."""
        before = self.sqlite_dump()
        bdir = "bk o'dir"
        script = self.command_leaving_a_lock()
        r = self.code(6, "-b", bdir, "--lock-timeout", "1s", "run", "--", "/usr/bin/python3",
                      script)
        [line] = [l for l in r.err.splitlines() if " restore " in l and " --yes" in l]
        cmd = shlex.split(line.split("error:", 1)[1])
        self.assertEqual(cmd[0], "safe-migrate")
        self.assertIn(self.path(bdir), cmd)
        self.assertIn(self.path("safe-migrate.ini"), cmd)
        self.wait_for_write_lock()
        elsewhere = self.path("elsewhere")
        os.mkdir(elsewhere)
        self.ok(*cmd[1:], cwd=elsewhere)
        self.assertEqual(self.sqlite_dump(), before)
        self.assertEqual(os.listdir(elsewhere), [])  # its safety snapshot went to bdir

    def test_sigterm_during_long_statement(self):
        self.add("0002_long.sql", "CREATE TABLE t (x INT);\n" + LONG_SQL)
        before = self.sqlite_dump()
        p = self.start_in_apply("safe-migrate", "--json")
        time.sleep(0.3)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 130, err)
        # the first migration's own transaction was rolled back: nothing to restore
        self.assertEqual(json.loads(out)["outcome"], "rolled_back")
        self.assertEqual(self.sqlite_dump(), before)

    def test_kill_9_then_recover(self):
        self.add("0002_long.sql", "CREATE TABLE t (x INT);\n" + LONG_SQL)
        before = self.sqlite_dump()
        p = self.start_in_apply("safe-migrate", capture=False)
        time.sleep(0.2)
        p.kill()
        p.wait()
        r = self.code(4, "safe-migrate")
        self.assertIn("recover", r.err)
        r = self.code(4, "safety-check")
        self.assertIn("recover", r.out + r.err)
        r = self.code(4, "upgrade")
        self.assertIn("recover", r.err)
        r = self.ok("recover", "--yes", "--json")
        self.assertEqual(r.json()["outcome"], "restored")
        self.assertEqual(self.sqlite_dump(), before)
        self.ok("recover")  # nothing left to recover
        self.assertEqual(self.runs()[-1]["outcome"], "recovered")

    def test_recover_discard(self):
        self.write("backups/safe-migrate.journal", json.dumps(
            {"run_id": "x", "pid": 999999, "phase": "apply", "snapshot": "backups/none.tar.zst",
             "outcome": None}))
        self.code(4, "safe-migrate")
        r = self.ok("recover", "--discard")
        self.assertIn("none.tar.zst", r.out)
        self.code(0, "safe-migrate")

    def test_concurrent_runs_apply_once(self):
        self.add("0002_slow.sql",
                 "CREATE TABLE slow (x INT);\nWITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 "
                 "FROM c WHERE x < 3000000) SELECT count(*) FROM c;")
        procs = [subprocess.Popen([BIN, "safe-migrate", "--json"], cwd=self.dir, env=self.env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        results = [p.communicate(timeout=120) for p in procs]
        outcomes = sorted(json.loads(o)["outcome"] for o, _ in results)
        self.assertEqual(outcomes, ["applied", "nothing_to_do"], results)
        self.assertEqual(self.sqlite("SELECT count(*) FROM safe_migrate_versions WHERE version='0002'"),
                         [(1,)])

    def test_a_run_through_a_symlink_excludes_a_recover_through_the_real_path(self):
        # the lock goes by the file, not by the spelling of its path: a
        # recover through the real path must not take the live run's
        # journal for an interrupted one and restore under it
        os.symlink("app.db", self.path("link.db"))
        self.add("0002_a.sql", "CREATE TABLE a (x INT);")
        self.add("0003_slow.sql", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 "
                 "FROM c WHERE x < 4000000) SELECT count(*) FROM c;")
        run = subprocess.Popen([BIN, "-d", "sqlite:///link.db", "safe-migrate", "--json"],
                               cwd=self.dir, env=self.env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        try:
            # the run holds the lock once its journal is written
            for _ in range(1000):
                if [f for f in os.listdir(self.path("backups")) if f.endswith(".journal")] \
                        if os.path.isdir(self.path("backups")) else []:
                    break
                time.sleep(0.01)
            r = self.run_sm("-d", "sqlite:///app.db", "--lock-timeout", "200ms", "recover",
                            "--yes")
        finally:
            out, err = run.communicate(timeout=120)
        self.assertEqual(run.returncode, 0, err)
        self.assertEqual(json.loads(out)["outcome"], "applied")
        self.assertNotEqual(r.code, 0, r)
        self.assertIn("another migration is running", r.err)
        self.assertEqual(self.sqlite("SELECT count(*) FROM a"), [(0,)])
        self.assertEqual(self.sqlite("SELECT count(*) FROM safe_migrate_versions WHERE "
                                     "version IN ('0002', '0003')"), [(2,)])

    def test_dry_run_is_byte_identical(self):
        self.add("0002_a.sql", "CREATE TABLE a (x INT);\nINSERT INTO a VALUES (1);")
        self.add("0003_b.sql", "DELETE FROM users WHERE id = 1;")
        before = self.bytes_of_db()
        r = self.ok("safe-migrate", "--dry-run", "--json")
        j = r.json()
        self.assertEqual(j["outcome"], "dry_run")
        self.assertEqual(j["applied"], ["0002", "0003"])
        self.assertEqual(self.bytes_of_db(), before)
        self.assertFalse([f for f in os.listdir(self.path("backups")) if f.endswith(".tar.zst")])
        self.add("0004_bad.sql", "UPDATE users SET name = 'same';\n"
                 "CREATE UNIQUE INDEX users_name_uq ON users(name);")
        r = self.code(1, "safe-migrate", "--dry-run", "--json")
        self.assertEqual(r.json()["would_fail"], "0004")
        self.assertEqual(self.bytes_of_db(), before)

    def test_dry_run_transaction_false_needs_rehearse_url(self):
        self.add("0002_idx.sql", "CREATE INDEX users_name_idx ON users(name);", notx=True)
        before = self.bytes_of_db()
        # nothing could be rehearsed in place: not a pass (exit 3, listed)
        r = self.code(3, "safe-migrate", "--dry-run", "--json")
        self.assertIn("--rehearse-url", r.err)
        self.assertEqual(r.json()["not_rehearsed"], ["0002"])
        self.assertEqual(self.bytes_of_db(), before)
        # the transactional prefix is rehearsed, and a failure in it found
        self.add("0001_5_bad.sql", "SELECT abs(-9223372036854775808);")
        self.add("0003_after.sql", "CREATE TABLE after (x INT);")
        r = self.code(1, "safe-migrate", "--dry-run", "--json")
        self.assertEqual(r.json()["would_fail"], "0001_5")
        os.unlink(self.path("migrations/0001_5_bad.sql"))
        self.add("0001_5_good.sql", "CREATE TABLE good (x INT);")
        r = self.code(3, "safe-migrate", "--dry-run", "--json")
        self.assertEqual(r.json()["not_rehearsed"], ["0002", "0003"])
        self.assertEqual(r.json()["rehearsed"], ["0001_5"])
        r = self.code(3, "safe-migrate", "--dry-run")
        self.assertIn("rehearsed 1 of 3 pending migrations", r.out)
        self.assertEqual(self.bytes_of_db(), before)
        os.unlink(self.path("migrations/0001_5_good.sql"))
        os.unlink(self.path("migrations/0003_after.sql"))
        r = self.ok("safe-migrate", "--dry-run", "--rehearse-url", self.sqlite_url("rehearsal.db"),
                    "--json")
        self.assertEqual(r.json()["outcome"], "dry_run")
        self.assertEqual(self.bytes_of_db(), before)
        con = sqlite3.connect(self.path("rehearsal.db"))
        self.assertEqual(con.execute("SELECT count(*) FROM sqlite_master WHERE name='users_name_idx'")
                         .fetchone(), (1,))
        con.close()

    def test_no_backup(self):
        self.add("0002_a.sql", "CREATE TABLE a (x INT);")
        self.add("0003_b.sql", "UPDATE users SET name = 'same';\n"
                 "CREATE UNIQUE INDEX users_name_uq ON users(name);")
        before = self.sqlite_dump()
        # one transaction, rolled back whole: nothing changed (exit 1, not "restored")
        r = self.code(1, "safe-migrate", "--no-backup", "--json")
        self.assertIn("NO SNAPSHOT", r.err)
        self.assertEqual(r.json()["outcome"], "rolled_back")
        self.assertIsNone(r.json()["snapshot"])
        self.assertEqual(self.sqlite_dump(), before)
        os.unlink(self.path("migrations/0003_b.sql"))
        self.add("0003_idx.sql", "CREATE INDEX ai ON a(x);", notx=True)
        r = self.code(4, "safe-migrate", "--no-backup", "--json")
        self.assertEqual(r.json()["outcome"], "blocked")
        self.assertIn("transaction:false", r.err)

    def test_blocked_by_safety_check(self):
        self.add("0002_drop.sql", "DROP TABLE users;")
        self.write("backups", "a file where the backup directory should be")
        before = self.sqlite_dump()
        r = self.code(4, "safe-migrate", "--json")
        self.assertEqual(r.json()["outcome"], "blocked")
        self.assertEqual(self.sqlite_dump(), before)

    def test_run_wraps_a_command(self):
        script = self.write("mig.py",
                            "import os, sqlite3, sys\n"
                            "url = os.environ['DATABASE_URL']\n"
                            "assert url == os.environ['SAFE_MIGRATE_DATABASE_URL']\n"
                            "con = sqlite3.connect(url[len('sqlite:///'):])\n"
                            "con.execute('CREATE TABLE wrapped (x INT)')\n"
                            "con.commit()\n"
                            "sys.exit(int(sys.argv[1]))\n")
        before = self.sqlite_dump()
        r = self.code(5, "run", "--json", "--", "/usr/bin/python3", script, "3")
        self.assertEqual(r.json()["outcome"], "restored")
        self.assertEqual(self.sqlite_dump(), before)
        r = self.ok("run", "--json", "--", "/usr/bin/python3", script, "0")
        self.assertEqual(r.json()["outcome"], "applied")
        self.assertEqual(self.sqlite("SELECT count(*) FROM wrapped"), [(0,)])
        r = self.code(1, "run", "--", "/nonexistent/tool", "up")
        self.assertIn("cannot start '/nonexistent/tool'", r.err)
        self.code(2, "run")

    def test_run_no_backup_does_not_claim_the_commands_writes_were_undone(self):
        # no snapshot, and the command's writes are its own commits: nothing
        # was rolled back, so the run must not say so (exit 5)
        script = self.write("upd.py",
                            "import os, sqlite3, sys\n"
                            "con = sqlite3.connect(os.environ['DATABASE_URL'][len('sqlite:///'):])\n"
                            "con.execute(\"UPDATE users SET name = 'changed'\")\n"
                            "con.commit()\n"
                            "sys.exit(1)\n")
        r = self.code(6, "run", "--no-backup", "--json", "--", "/usr/bin/python3", script)
        self.assertIn("no snapshot was taken (--no-backup)", r.err)
        self.assertNotIn("rolled back", r.err)
        self.assertEqual(self.sqlite("SELECT count(*) FROM users WHERE name = 'changed'"),
                         [(4,)])

    # A wrapped command that does what some tools do: writes a new file (here
    # a copy made with SQLite's backup API, then changed by argv[1]) and
    # renames it over the database.  argv[2]: its exit status; argv[3], if
    # given: a file it creates once the rename is done, after which it
    # sleeps (for a kill -9 of the run while it still runs).
    REPLACE = ("import os, sqlite3, sys, time\n"
               "path = os.environ['DATABASE_URL'][len('sqlite:///'):]\n"
               "src = sqlite3.connect(path)\n"
               "dst = sqlite3.connect(path + '.new')\n"
               "src.backup(dst)\n"
               "src.close()\n"
               "dst.executescript(sys.argv[1])\n"
               "dst.close()\n"
               "os.rename(path + '.new', path)\n"
               "if len(sys.argv) > 3:\n"
               "    open(sys.argv[3], 'w').close()\n"
               "    time.sleep(120)\n"
               "sys.exit(int(sys.argv[2]))\n")

    def replacing_run(self, code, sql, status, *args):
        script = self.write("replace.py", self.REPLACE)
        return self.code(code, "run", "--json", *args, "--", sys.executable, script, sql,
                         str(status))

    def inode(self):
        return os.stat(self.path("app.db")).st_ino

    def test_run_validates_the_file_a_command_renamed_over_the_database(self):
        """The command's new file has an orphan row: validate must check that
        file, not the one the run opened (which no one uses any more), and
        the restore must put the snapshot into it."""
        self.sqlite("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        self.sqlite("CREATE TABLE child (id INTEGER PRIMARY KEY, "
                    "parent_id INT REFERENCES parent(id))")
        self.sqlite("INSERT INTO parent VALUES (1)")
        self.sqlite("INSERT INTO child (parent_id) VALUES (1)")
        before, dump, ino = self.sha3(), self.sqlite_dump(), self.inode()
        r = self.replacing_run(5, "INSERT INTO child (parent_id) VALUES (42);", 0)
        j = r.json()
        self.assertNotEqual(self.inode(), ino, "the command did not replace the file")
        self.assertIn("was replaced during", r.err)
        self.assertIn(self.path("app.db"), r.err)
        self.assertTrue(j["database_replaced"])
        self.assertEqual(j["outcome"], "restored")
        self.assertTrue(any(f["level"] == "fail" and "child" in f["message"]
                            for f in j["findings"]), j["findings"])
        # the snapshot went into the file now at the path
        self.assertEqual(self.sha3(), before)
        self.assertEqual(self.sqlite_dump(), dump)

    def test_run_restores_a_file_a_failed_command_renamed_over_the_database(self):
        """The command replaces the file and fails: the file now there is
        restored, and what the command left in it is the failed state saved
        before (its writes cannot be told from other sessions')."""
        before, dump = self.sha3(), self.sqlite_dump()
        r = self.replacing_run(5, "CREATE TABLE marker (x INT); INSERT INTO marker VALUES (7);", 1)
        j = r.json()
        self.assertIn("was replaced during", r.err)
        self.assertEqual(j["outcome"], "restored")
        self.assertEqual(self.sha3(), before)
        self.assertEqual(self.sqlite_dump(), dump)
        saved = self.path(j["saved_state"])
        self.assertTrue(os.path.exists(saved), saved)
        # the saved state is the replacing file's, not the one the run opened
        self.ok("restore", saved, "--to", self.sqlite_url("saved.db"), "--yes")
        self.assertEqual(self.sqlite("SELECT x FROM marker", "saved.db"), [(7,)])

    def test_run_accepts_a_good_file_a_command_renamed_over_the_database(self):
        ino = self.inode()
        r = self.replacing_run(0, "CREATE TABLE added (x INT); INSERT INTO added VALUES (1);", 0)
        j = r.json()
        self.assertEqual(j["outcome"], "applied")
        self.assertTrue(j["database_replaced"])
        self.assertIn("was replaced during", r.err)
        self.assertNotEqual(self.inode(), ino)
        self.assertEqual(self.sqlite("SELECT x FROM added"), [(1,)])
        # the journal followed the database to its new identity
        [path] = self.journals(self.path("backups"))
        with open(path) as f:
            doc = json.load(f)
        st = os.stat(self.path("app.db"))
        self.assertEqual(doc["identity"], "sqlite:%d:%d" % (st.st_dev, st.st_ino))
        self.assertEqual(doc["replaced_identity"], "sqlite:%d:%d" % (st.st_dev, ino))
        self.ok("run", "--", sys.executable, "-c", "pass")

    def test_run_whose_command_removed_the_database_restores_it(self):
        dump = self.sqlite_dump()
        r = self.code(5, "run", "--json", "--", sys.executable, "-c",
                      "import os; os.unlink(os.environ['DATABASE_URL'][len('sqlite:///'):])")
        self.assertIn("is gone after", r.err)
        self.assertIn(self.path("app.db"), r.err)
        self.assertEqual(r.json()["outcome"], "restored")
        # nothing was at the path: the restore replaced nothing to save
        self.assertNotIn("saved_state", r.json())
        self.assertEqual(self.sqlite_dump(), dump)
        self.ok("run", "--", sys.executable, "-c", "pass")

    def test_recover_after_a_kill_while_the_command_that_replaced_the_file_ran(self):
        """safe-migrate is killed after its command renamed a new file over
        the database and before it could see that: the journal still has the
        old identity.  recover takes it (the command may have replaced the
        file), saves the state now first, and restores the snapshot."""
        dump = self.sqlite_dump()
        script = self.write("replace.py", self.REPLACE)
        done = self.path("replaced")
        p = subprocess.Popen([BIN, "run", "--", sys.executable, script,
                              "CREATE TABLE marker (x INT);", "0", done],
                             cwd=self.dir, env=self.env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while not os.path.exists(done):
            self.assertLess(time.time(), deadline, "the command never replaced the file")
            time.sleep(0.05)
        p.kill()
        p.wait()
        r = self.code(4, "run", "--", sys.executable, "-c", "pass")
        self.assertIn("was replaced since", r.err)
        self.assertIn("safe-migrate recover", r.err)
        r = self.ok("recover", "--yes", "--json")
        self.assertIn("replaced", r.err)
        self.assertEqual(r.json()["outcome"], "restored")
        self.assertTrue(os.path.exists(self.path(r.json()["saved_state"])))
        self.assertEqual(self.sqlite_dump(), dump)
        self.ok("run", "--", sys.executable, "-c", "pass")

    def test_migrations_applied_to_a_file_replaced_meanwhile_are_not_reported_applied(self):
        """Another process renames a new file over the database while our
        migration runs: the migration went into the file the run opened,
        which is no longer there.  The run fails and restores the file now at
        the path, saving it first (whose writes it holds cannot be told)."""
        self.add("0002_slow.sql",
                 "CREATE TABLE slow (x INT);\nWITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT "
                 "x + 1 FROM c WHERE x < 3000000) SELECT count(*) FROM c;")
        before, dump = self.sha3(), self.sqlite_dump()

        def replace():
            src = sqlite3.connect(self.path("app.db"))
            dst = sqlite3.connect(self.path("new.db"))
            src.backup(dst)
            src.close()
            dst.execute("CREATE TABLE marker (x INT)")
            dst.commit()
            dst.close()
            os.rename(self.path("new.db"), self.path("app.db"))

        def in_apply():
            for p in self.journals(self.path("backups")):
                try:
                    with open(p) as f:
                        if json.load(f).get("phase") != "apply":
                            continue
                    # and the run's mark is in (it comes just before the
                    # migration): the migration, not the mark, meets the
                    # replaced file
                    con = sqlite3.connect(self.path("app.db"), timeout=0)
                    try:
                        return con.execute("SELECT count(*) FROM safe_migrate_runs"
                                           ).fetchone()[0] > 0
                    finally:
                        con.close()
                except (OSError, ValueError, sqlite3.Error):
                    pass
            return False

        code, err, caught = self.interrupt(["safe-migrate", "--json"], in_apply, act=replace)
        self.assertTrue(caught, err)
        self.assertEqual(code, 5, err)
        self.assertIn("was replaced during", err)
        self.assertIn("is no longer there", err)
        self.assertIn("OTHER SESSIONS WROTE", err)
        self.assertEqual(self.sha3(), before)
        self.assertEqual(self.sqlite_dump(), dump)
        saved = [f for f in os.listdir(self.path("backups")) if f.endswith("_failed_state.tar.zst")]
        self.assertEqual(len(saved), 1, saved)

    def test_run_takes_its_whole_file_check_from_the_snapshot(self):
        """A wrapped command's writes cannot be traced, so the whole file is
        checked before and after; the check before is the one the backup
        made beside its copy (or, without a snapshot, one made then), and a
        problem the database already had is not the command's."""
        self.null_in_not_null()
        script = self.write("mig.py",
                            "import os, sqlite3\n"
                            "con = sqlite3.connect(os.environ['DATABASE_URL'][len('sqlite:///'):])\n"
                            "con.execute('CREATE TABLE wrapped (x INT)')\n"
                            "con.commit()\n")
        for args in ((), ("--no-backup",)):
            with self.subTest(args=args):
                self.sqlite("DROP TABLE IF EXISTS wrapped")
                j = self.ok("run", "--json", *args, "--", "/usr/bin/python3", script).json()
                self.assertEqual(j["outcome"], "applied")
                integ = [f for f in j["findings"] if f.get("check") == "integrity"]
                self.assertTrue(any(f["level"] == "pass" and "already present before the run"
                                    in f["message"] for f in integ), integ)
                self.assertFalse([f for f in integ if f["level"] == "fail"], integ)
        # a problem the command makes is its own
        script = self.write("bad.py",
                            "import os, sqlite3\n"
                            "con = sqlite3.connect(os.environ['DATABASE_URL'][len('sqlite:///'):])\n"
                            "con.executescript(\"CREATE TABLE t2 (x); INSERT INTO t2 VALUES (NULL);"
                            "PRAGMA writable_schema = ON; UPDATE sqlite_schema SET sql = "
                            "'CREATE TABLE t2 (x NOT NULL)' WHERE name = 't2';\")\n")
        before = self.sqlite_dump()
        j = self.code(5, "run", "--json", "--", "/usr/bin/python3", script).json()
        self.assertEqual(j["outcome"], "restored")
        self.assertTrue(any(f["level"] == "fail" and "t2.x" in f["message"]
                            for f in j["findings"]), j["findings"])
        self.assertEqual(self.sqlite_dump(), before)

    def test_restore_failed_names_the_snapshot(self):
        # the wrapped command damages the snapshot the pipeline took, then fails:
        # the automatic restore must refuse the damaged file and say what to do
        script = self.write("evil.py",
                            "import glob, os, sqlite3, sys\n"
                            "snap = glob.glob(os.path.join(sys.argv[1], '*.tar.zst'))[0]\n"
                            "with open(snap, 'r+b') as f:\n"
                            "    f.seek(100); f.write(b'XXXXXXXX')\n"
                            "con = sqlite3.connect(os.environ['DATABASE_URL'][len('sqlite:///'):])\n"
                            "con.execute('CREATE TABLE half (x INT)'); con.commit()\n"
                            "sys.exit(1)\n")
        r = self.code(6, "run", "--json", "--", "/usr/bin/python3", script, self.path("backups"))
        j = r.json()
        self.assertEqual(j["outcome"], "restore_failed")
        self.assertIn(j["snapshot"], r.err)
        self.assertIn(" restore %s --yes" % self.path(j["snapshot"]), r.err)
        self.assertEqual(self.runs()[-1]["outcome"], "restore_failed")

    def test_history_runs(self):
        self.add("0002_a.sql", "CREATE TABLE a (x INT);")
        self.ok("safe-migrate")
        self.ok("safe-migrate", "--dry-run")
        r = self.ok("history", "--runs", "--json")
        outcomes = [x["outcome"] for x in r.json()["runs"]]
        self.assertEqual(outcomes, ["applied", "nothing_to_do"])
        self.assertEqual(oct(os.stat(self.path("backups", "safe-migrate-runs.jsonl")).st_mode & 0o777),
                         "0o600")


class AlembicSqlite(CliTest):
    def setUp(self):
        super().setUp()
        if not os.path.exists("/usr/bin/python3") or subprocess.run(
                ["/usr/bin/python3", "-c", "import alembic"], capture_output=True).returncode:
            self.fail("python3-alembic is required (scripts/install-deps.sh installs it)")
        import shutil
        from smtest import SRC
        shutil.copytree(os.path.join(SRC, "examples", "alembic-project"), self.path("proj"))
        sqlite3.connect(self.path("proj", "app.db")).close()

    def test_failing_then_succeeding(self):
        cwd = self.path("proj")
        url = "sqlite:///" + self.path("proj", "app.db")
        before = subprocess.run(["sqlite3", self.path("proj", "app.db"), ".dump"],
                                capture_output=True, text=True).stdout
        r = self.run_sm("-d", url, "-b", "backups", "run", "--json", "--",
                        "/usr/bin/python3", "-m", "alembic", "upgrade", "head", cwd=cwd)
        self.assertEqual(r.code, 5, r)
        self.assertEqual(r.json()["outcome"], "restored")
        after = subprocess.run(["sqlite3", self.path("proj", "app.db"), ".dump"],
                               capture_output=True, text=True).stdout
        self.assertEqual(after, before)
        r = self.run_sm("-d", url, "-b", "backups", "run", "--json", "--",
                        "/usr/bin/python3", "-m", "alembic", "upgrade", "head", cwd=cwd,
                        env={"ALEMBIC_EXAMPLE_FIXED": "1"})
        self.assertEqual(r.code, 0, r)
        con = sqlite3.connect(self.path("proj", "app.db"))
        self.assertEqual(con.execute("SELECT version_num FROM alembic_version").fetchone(), ("a3",))
        self.assertEqual(con.execute("SELECT count(*) FROM invoices").fetchone(), (1,))
        con.close()


if __name__ == "__main__":
    main()
