"""CLI tests of the safe-migrate pipeline and run wrap mode on a real
PostgreSQL server.  "Restored" is checked with pg_dump --schema-only plus an
order-independent hash of every table's rows and every sequence position."""
import json
import os
import shutil
import signal
import subprocess
import time

from smtest import BIN, SRC, CliTest, main


class PipelinePg(CliTest):
    def setUp(self):
        super().setUp()
        self.url = self.pg_new_db()
        self.psql(self.url, """
            CREATE TABLE users (id serial PRIMARY KEY, name text);
            INSERT INTO users (name) VALUES ('ada'), ('alan'), (NULL), (E'tab\\there');
            CREATE TABLE big (x int);
            INSERT INTO big SELECT generate_series(1, 2000);""")
        self.base = ["-d", self.url, "-b", self.path("backups")]
        self.write("migrations/0001_base.sql",
                   "-- migrate:up\nCREATE TABLE base (x int);\n-- migrate:down\nDROP TABLE base;\n")
        self.ok(*self.base, "upgrade")

    def add(self, name, up, notx=False):
        self.write("migrations/" + name,
                   "-- migrate:up%s\n%s\n" % (" transaction:false" if notx else "", up))

    def sm(self, *args, **kw):
        return self.run_sm(*self.base, *args, **kw)

    def test_third_of_three_fails_and_is_restored(self):
        self.add("0002_a.sql", "ALTER TABLE users ADD COLUMN email text;\nUPDATE users SET email = 'x';")
        self.add("0003_b.sql", "CREATE TABLE b (x int);\nINSERT INTO b VALUES (1);")
        self.add("0004_c.sql", "SET lock_timeout = '5s';\n\nUPDATE users SET name = 'same';\n"
                 "ALTER TABLE users ADD CONSTRAINT users_name_uq UNIQUE (name);")
        before = self.pg_state(self.url)
        r = self.sm("safe-migrate", "--json")
        self.assertEqual(r.code, 5, r)
        j = r.json()
        self.assertEqual(j["outcome"], "restored")
        self.assertIn("0004_c.sql', line 5", j["error"])
        self.assertIn("23505", j["error"])
        self.assertEqual(self.pg_state(self.url), before)

    def test_the_restore_does_not_hand_out_ids_again(self):
        """Ids drawn from a sequence since the snapshot (by another session,
        or by the run itself) went to someone: the restore leaves the
        sequence where it was, not at the snapshot's position, as a
        ROLLBACK does; the rows are the snapshot's all the same."""
        self.psql(self.url, "CREATE SEQUENCE order_no; CREATE SEQUENCE countdown "
                  "INCREMENT -1 START 100 MINVALUE 1 MAXVALUE 100; SELECT nextval('order_no')")
        self.add("0002_a.sql", "SELECT nextval('order_no') FROM generate_series(1, 4);\n"
                 "SELECT nextval('countdown') FROM generate_series(1, 3);")
        self.add("0003_b.sql", "SELECT 1 / 0;")
        before = self.pg_state(self.url)
        r = self.sm("safe-migrate", "--json")
        self.assertEqual(r.code, 5, r)
        self.assertEqual(self.psql(self.url, "SELECT nextval('order_no'), nextval('countdown')"),
                         "6|97")
        # the tables' rows and the schema are the snapshot's
        self.assertEqual(self.pg_state(self.url)[0], before[0])

    def test_what_the_restore_cannot_undo_is_named(self):
        """A migration changes what no snapshot holds (the database's own
        settings, grants on a system catalog, a publication, an extension in
        pg_catalog, a wrapper and server), a later one fails: the
        restore brings back the snapshot's objects and rows, and names each
        of those changes as not undone rather than calling the database
        back in its state before the run without a word."""
        name = self.url.rsplit("/", 1)[1]
        role = "sm_app_" + name[-8:]
        self.psql(self.url, "CREATE TABLE t (id int PRIMARY KEY)")
        self.add("0002_outside.sql",
                 "CREATE ROLE %s;\nGRANT SELECT ON pg_catalog.pg_authid TO %s;\n"
                 "REVOKE USAGE ON LANGUAGE sql FROM PUBLIC;\n"
                 "CREATE PUBLICATION sm_pub FOR TABLE t;\n"
                 "CREATE FOREIGN DATA WRAPPER sm_w;\nCREATE SERVER sm_s FOREIGN DATA WRAPPER sm_w;\n"
                 "CREATE EXTENSION hstore SCHEMA pg_catalog;\n"
                 "ALTER DATABASE \"%s\" SET work_mem = '77MB';\n"
                 "COMMENT ON DATABASE \"%s\" IS 'changed';" % (role, role, name, name))
        self.add("0003_bad.sql", "SELECT 1 / 0;")
        try:
            r = self.sm("safe-migrate", "--json")
            self.assertEqual(r.code, 5, r)
            left = r.json()["not_undone"]
            for what in ("+ publication sm_pub",
                         "+ foreign-data wrapper sm_w", "+ server sm_s",
                         "+ extension hstore", "database setting for every role: work_mem=77MB",
                         "comment 'changed'", "grants on pg_authid", "+ language sql"):
                self.assertIn(what, left)
            self.assertIn("NOT UNDONE", r.err)
            # nothing to say when the run changed nothing of the kind
            self.psql(self.url, "DROP PUBLICATION sm_pub; DROP SERVER sm_s; "
                      "DROP FOREIGN DATA WRAPPER sm_w; DROP EXTENSION hstore; "
                      "ALTER DATABASE \"%s\" RESET work_mem; COMMENT ON DATABASE \"%s\" "
                      "IS NULL; REVOKE SELECT ON pg_catalog.pg_authid FROM %s; GRANT USAGE "
                      "ON LANGUAGE sql TO PUBLIC" % (name, name, role))
            self.add("0002_outside.sql", "CREATE TABLE inside (x int);")
            r = self.sm("safe-migrate", "--json")
            self.assertEqual(r.code, 5, r)
            self.assertNotIn("not_undone", r.json())
        finally:
            self.psql(self.url, "DROP OWNED BY %s; DROP ROLE %s" % (role, role), check=False)

    def kill_in_a_slow_migration(self):
        """Adds a migration that sleeps 4 s after the pending ones, runs the
        pipeline and kills it (SIGKILL) while that migration runs."""
        self.add("0003_slow.sql", "SELECT pg_sleep(4);")
        p = self.start_in_apply(*self.base, "safe-migrate", capture=False)
        try:
            for _ in range(3000):
                if self.psql(self.url, "SELECT count(*) FROM pg_stat_activity WHERE query "
                             "LIKE 'SELECT pg_sleep(4)%'") == "1":
                    break
                time.sleep(0.01)
        finally:
            p.kill()
            p.wait()

    def test_recover_names_what_it_cannot_undo(self):
        """A run killed after a migration changed the database's settings:
        recover restores the snapshot and names that change, against the
        list the run journaled before its first change."""
        name = self.url.rsplit("/", 1)[1]
        self.add("0002_setting.sql", "ALTER DATABASE \"%s\" SET work_mem = '33MB';" % name)
        self.kill_in_a_slow_migration()
        r = self.sm("recover", "--yes", "--json")
        self.assertEqual(r.code, 0, r)
        self.assertEqual(r.json()["outcome"], "restored")
        self.assertIn("database setting for every role: work_mem=33MB", r.json()["not_undone"])
        self.assertIn("NOT UNDONE", r.err)

    def drop_roles(self, *roles):
        for role in roles:
            self.psql(self.url, "DROP OWNED BY %s; DROP ROLE %s" % (role, role), check=False)

    def test_roles_and_system_functions_the_run_changed_are_named(self):
        """A migration creates a role, gives an existing one a new password
        and another role's membership, sets a role's setting, and changes a
        system function; a later one fails.  The restore cannot undo any of
        it (roles are the cluster's; pg_catalog is no snapshot's), so each
        is named as the run's, and the password is nowhere in the output or
        the journal."""
        tag = self.url.rsplit("/", 1)[1][-8:]
        new, app = "sm_new_" + tag, "sm_app_" + tag
        self.psql(self.url, "CREATE ROLE %s LOGIN PASSWORD 'old-secret-1'" % app)
        self.add("0002_roles.sql",
                 "CREATE ROLE %s LOGIN CONNECTION LIMIT 3;\n"
                 "ALTER ROLE %s PASSWORD 'new-secret-2';\n"
                 "GRANT pg_monitor TO %s;\n"
                 "ALTER ROLE %s SET work_mem = '11MB';\n"
                 "ALTER FUNCTION pg_catalog.lower(text) COST 5;" % (new, app, new, app))
        self.add("0003_bad.sql", "SELECT 1 / 0;")
        try:
            r = self.sm("safe-migrate", "--json")
            self.assertEqual(r.code, 5, r)
            self.assertEqual(r.json()["outcome"], "restored")
            left = r.json()["not_undone"].splitlines()
            self.assertIn("+ role %s: login, connection limit 3 (changed by the run: what is "
                          "shown, or the password)" % new, left)
            self.assertIn("+ role %s: login, password set (changed by the run: what is shown, "
                          "or the password)" % app, left)
            self.assertIn("- role %s: login, password set" % app, left)
            self.assertIn("+ role %s member of pg_monitor: no admin option (changed by the "
                          "run)" % new, left)
            self.assertIn("+ role setting for %s in every database: work_mem=11MB "
                          "(changed by the run)" % app, left)
            self.assertIn("+ function pg_catalog.lower(text) properties: immutable, strict, "
                          "parallel safe, cost 5, owner postgres (changed by the run)", left)
            self.assertIn("NOT UNDONE", r.err)
            self.assertIn("role %s member of pg_monitor: no admin option (changed by the run)"
                          % new, r.err)
            for root, _, files in os.walk(self.dir):
                for f in files:
                    if f.endswith(".sql"):
                        continue
                    with open(os.path.join(root, f), "rb") as fh:
                        self.assertNotIn(b"new-secret-2", fh.read(), f)
            self.assertNotIn("new-secret-2", r.out + r.err)
        finally:
            self.drop_roles(new, app)

    def test_a_role_another_session_creates_during_the_run_is_not_the_runs(self):
        """Another session creates a role and alters one while the run
        applies; the run then fails and is restored.  Those stay, as the
        run's own role does, but they were not the run's: they are said
        apart from what the run left to undo."""
        tag = self.url.rsplit("/", 1)[1][-8:]
        mine, theirs, old = "sm_mine_" + tag, "sm_theirs_" + tag, "sm_old_" + tag
        self.psql(self.url, "CREATE ROLE %s" % old)
        self.add("0002_role.sql", "CREATE ROLE %s;" % mine)
        self.add("0003_slow.sql", "SELECT pg_sleep(3);\nSELECT 1 / 0;")
        p = self.start_in_apply(*self.base, "safe-migrate", "--json")
        try:
            for _ in range(3000):
                if self.psql(self.url, "SELECT count(*) FROM pg_stat_activity WHERE query "
                             "LIKE 'SELECT pg_sleep(3)%'") == "1":
                    break
                time.sleep(0.01)
            self.psql(self.url, "CREATE ROLE %s; ALTER ROLE %s LOGIN" % (theirs, old))
            out, err = p.communicate(timeout=120)
            self.assertEqual(p.returncode, 5, err)
            j = json.loads(out)
            self.assertEqual(j["not_undone"].splitlines(),
                             ["+ role %s: nologin (changed by the run: what is shown, or the "
                              "password)" % mine])
            self.assertEqual(sorted(j["changed_by_others"].splitlines()),
                             ["+ role %s: login (changed during the run by another session)"
                              % old,
                              "+ role %s: nologin (changed during the run by another session)"
                              % theirs,
                              "- role %s: nologin" % old])
            self.assertNotIn(theirs, err.split("other sessions changed these")[0])
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            self.drop_roles(mine, theirs, old)

    def test_a_role_a_transaction_false_step_creates_is_not_claimed_as_anyones(self):
        """A transaction:false migration runs each statement in a
        transaction of its own, whose writes the run cannot look into: the
        role it created is named, as possibly another session's."""
        role = "sm_notx_" + self.url.rsplit("/", 1)[1][-8:]
        self.add("0002_role.sql", "CREATE ROLE %s;" % role, notx=True)
        self.add("0003_bad.sql", "SELECT 1 / 0;")
        try:
            r = self.sm("safe-migrate", "--json")
            self.assertEqual(r.code, 5, r)
            self.assertIn("+ role %s: nologin (changed during the run, by the run or another "
                          "session)" % role, r.json()["not_undone"].splitlines())
        finally:
            self.drop_roles(role)

    def test_recover_names_the_roles_a_killed_run_changed(self):
        """A run killed after a migration created a role: recover restores
        the snapshot and names the role against the list the run journaled
        (it cannot tell whose it is, and does not claim to)."""
        role = "sm_rec_" + self.url.rsplit("/", 1)[1][-8:]
        self.add("0002_role.sql", "CREATE ROLE %s;\nALTER FUNCTION pg_catalog.lower(text) "
                 "COST 7;" % role)
        self.kill_in_a_slow_migration()
        try:
            r = self.sm("recover", "--yes", "--json")
            self.assertEqual(r.code, 0, r)
            self.assertEqual(r.json()["outcome"], "restored")
            left = r.json()["not_undone"].splitlines()
            self.assertIn("+ role %s: nologin" % role, left)
            self.assertIn("+ function pg_catalog.lower(text) properties: immutable, strict, "
                          "parallel safe, cost 7, owner postgres", left)
        finally:
            self.drop_roles(role)

    def test_restored_under_inheritance(self):
        """Tables with inheritance children that hold rows: the restore's
        check counts each table's own rows (ONLY), as its snapshot's COPY
        did.  Counted with the children's, the parent 'had' rows the
        snapshot did not, and every automatic restore failed (exit 6)."""
        self.psql(self.url, """
            CREATE TABLE p (a int); CREATE TABLE c (b text) INHERITS (p);
            CREATE TABLE q (z int); CREATE TABLE cq (w int) INHERITS (c, q);
            INSERT INTO p VALUES (1); INSERT INTO c VALUES (2, 'two'), (3, 'three');
            INSERT INTO cq VALUES (4, 'four', 40, 400);""")
        self.add("0002_a.sql", "CREATE TABLE t1 (x int);\nINSERT INTO c VALUES (5, 'five');")
        self.add("0003_b.sql", "INSERT INTO p VALUES (6);\nSELECT 1/0;")
        before = self.pg_state(self.url)
        r = self.sm("safe-migrate", "--json")
        self.assertEqual(r.code, 5, r)
        self.assertEqual(r.json()["outcome"], "restored")
        self.assertEqual(self.pg_state(self.url), before)
        self.assertEqual(self.psql(self.url, "SELECT count(*) FROM p"), "4")

    def test_failure_after_create_index_concurrently(self):
        self.add("0002_idx.sql", "CREATE INDEX CONCURRENTLY users_name_idx ON users (name);", notx=True)
        self.add("0003_bad.sql", "SET lock_timeout = '5s';\nUPDATE users SET name = 'same';\n"
                 "ALTER TABLE users ADD CONSTRAINT users_name_uq UNIQUE (name);")
        before = self.pg_state(self.url)
        r = self.sm("safe-migrate", "--json")
        self.assertEqual(r.code, 5, r)
        self.assertEqual(self.pg_state(self.url), before)
        self.assertEqual(self.psql(self.url, "SELECT count(*) FROM pg_indexes WHERE "
                                             "indexname = 'users_name_idx'"), "0")

    def test_success_and_dry_run(self):
        self.add("0002_a.sql", "CREATE TABLE a (x int);\nINSERT INTO a VALUES (1);")
        before = self.pg_state(self.url)
        r = self.sm("safe-migrate", "--dry-run", "--json")
        self.assertEqual(r.code, 0, r)
        self.assertEqual(r.json()["outcome"], "dry_run")
        self.assertEqual(self.pg_state(self.url), before)
        r = self.sm("safe-migrate", "--json")
        self.assertEqual(r.code, 0, r)
        self.assertEqual(r.json()["outcome"], "applied")
        self.assertEqual(self.psql(self.url, "SELECT count(*) FROM a"), "1")

    # fails only on the real data (two users named alike)
    DUPLICATE = ("UPDATE users SET name = 'same';\n"
                 "ALTER TABLE users ADD CONSTRAINT users_name_uq UNIQUE (name);")

    def test_own_transaction_failing_after_a_commit_is_restored(self):
        """A file that opens its own transaction and fails inside it: the
        aborted transaction holds its locks until it is rolled back, and
        the restore's transaction waited for them (exit 6) before."""
        self.add("0002_a.sql", "CREATE TABLE a (x int);")
        self.add("0003_own.sql", "SET lock_timeout = '5s';\nBEGIN;\n%s\nCOMMIT;" % self.DUPLICATE)
        before = self.pg_state(self.url)
        r = self.sm("--lock-timeout", "5s", "safe-migrate", "--json")
        self.assertEqual(r.code, 5, r)
        self.assertIn("the transaction it began was rolled back", r.json()["error"])
        self.assertEqual(self.pg_state(self.url), before)

    def test_own_transaction_failing_first_changes_nothing(self):
        self.add("0002_own.sql", "SET lock_timeout = '5s';\nBEGIN;\n%s\nCOMMIT;" % self.DUPLICATE)
        before = self.pg_state(self.url)
        r = self.sm("--lock-timeout", "5s", "safe-migrate", "--json")
        self.assertEqual(r.code, 1, r)
        self.assertEqual(r.json()["outcome"], "rolled_back")
        self.assertNotIn("restoring", r.err)
        self.assertEqual(self.pg_state(self.url), before)

    def test_sigterm_during_long_statement(self):
        self.add("0002_long.sql", "CREATE TABLE t (x int);\nSELECT pg_sleep(60);")
        before = self.pg_state(self.url)
        p = self.start_in_apply(*self.base, "safe-migrate", "--json")
        time.sleep(0.5)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 130, err)
        # the first migration's own transaction was rolled back: nothing to restore
        self.assertEqual(json.loads(out)["outcome"], "rolled_back")
        self.assertEqual(self.pg_state(self.url), before)

    def test_kill_9_then_recover(self):
        # the schema the killed run created is dropped by recover (the
        # journal keeps the schemas from before the run)
        self.add("0002_a.sql", "CREATE SCHEMA extra;\nCREATE TABLE a (x int);")
        # the killed client's server session sleeps on: recover must wait for it
        self.add("0003_long.sql", "CREATE TABLE t (x int);\nSELECT pg_sleep(8);")
        before = self.pg_state(self.url)
        p = self.start_in_apply(*self.base, "safe-migrate", capture=False)
        deadline = time.time() + 30
        while time.time() < deadline and self.psql(
                self.url, "SELECT count(*) FROM safe_migrate_versions WHERE version = '0002'") != "1":
            time.sleep(0.1)
        p.kill()
        p.wait()
        # the server ends the killed session's transaction; 0002 stays committed
        self.assertNotEqual(self.pg_state(self.url), before)
        r = self.sm("safe-migrate")
        self.assertEqual(r.code, 4, r)
        self.assertIn("recover", r.err)
        r = self.sm("recover", "--yes", "--json")
        self.assertEqual(r.code, 0, r)
        self.assertEqual(r.json()["outcome"], "restored")
        self.assertEqual(self.pg_state(self.url), before)
        self.assertEqual(self.psql(self.url, "SELECT to_regnamespace('extra') IS NULL"), "t")

    def test_concurrent_runs_apply_once(self):
        self.add("0002_slow.sql", "CREATE TABLE slow (x int);\nSELECT pg_sleep(2);")
        procs = [subprocess.Popen([BIN, *self.base, "safe-migrate", "--json"], cwd=self.dir,
                                  env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(2)]
        results = [p.communicate(timeout=120) for p in procs]
        outcomes = sorted(json.loads(o)["outcome"] for o, _ in results)
        self.assertEqual(outcomes, ["applied", "nothing_to_do"], results)
        self.assertEqual(self.psql(self.url, "SELECT count(*) FROM safe_migrate_versions "
                                             "WHERE version = '0002'"), "1")

    def test_password_never_printed(self):
        role = "pipe_" + os.path.basename(self.url)
        self.psql(self.url, "CREATE ROLE %s LOGIN SUPERUSER PASSWORD 'Sekr1t-Pw'" % role)
        self.addCleanup(self.psql_admin, "DROP ROLE IF EXISTS %s" % role)
        url = self.url.replace("postgres@", role + ":Sekr1t-Pw@")
        self.add("0002_a.sql", "CREATE TABLE a (x int);")
        self.add("0003_bad.sql", "UPDATE users SET name = 'same';\n"
                 "CREATE UNIQUE INDEX users_name_uq ON users (name);")
        for args in (["safe-migrate", "--json"], ["history", "--runs", "--json"],
                     ["list-backups", "--json"], ["safety-check", "--json"]):
            r = self.run_sm("-d", url, "-b", self.path("backups"), *args)
            self.assertNotIn("Sekr1t-Pw", r.out + r.err, args)
        for root, _, files in os.walk(self.path("backups")):
            for f in files:
                p = os.path.join(root, f)
                if f.endswith(".tar.zst"):
                    data = subprocess.run(["tar", "--zstd", "-xOf", p, "manifest.json"],
                                          capture_output=True).stdout
                else:
                    with open(p, "rb") as fh:
                        data = fh.read()
                self.assertNotIn(b"Sekr1t-Pw", data, p)


class AlembicPg(CliTest):
    def test_failing_then_succeeding(self):
        url = self.pg_new_db()
        if subprocess.run(["/usr/bin/python3", "-c", "import alembic, psycopg2"],
                          capture_output=True).returncode:
            self.fail("python3-alembic and python3-psycopg2 are required "
                      "(scripts/install-deps.sh installs them)")
        shutil.copytree(os.path.join(SRC, "examples", "alembic-project"), self.path("proj"))
        cwd = self.path("proj")
        self.psql(url, "CREATE TABLE keep (x int); INSERT INTO keep VALUES (1), (2);")
        before = self.pg_state(url)
        cmd = ["-d", url, "-b", "backups", "run", "--json", "--",
               "/usr/bin/python3", "-m", "alembic", "upgrade", "head"]
        r = self.run_sm(*cmd, cwd=cwd)
        self.assertEqual(r.code, 5, r)
        self.assertEqual(r.json()["outcome"], "restored")
        self.assertEqual(self.pg_state(url), before)
        r = self.run_sm(*cmd, cwd=cwd, env={"ALEMBIC_EXAMPLE_FIXED": "1"})
        self.assertEqual(r.code, 0, r)
        self.assertEqual(self.psql(url, "SELECT version_num FROM alembic_version"), "a3")
        self.assertEqual(self.psql(url, "SELECT count(*) FROM invoices"), "1")


if __name__ == "__main__":
    main()
