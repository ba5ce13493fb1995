"""CLI tests of `create --from-schema` (autogenerate) on SQLite and PostgreSQL.

Each step writes a desired-schema file, generates a migration from it,
applies it, and checks that the database now has exactly the schema the
file describes (validate --expected against the schema of a database the
file was loaded into), that generating again says "no changes" and writes
nothing, and at the end that roundtrip passes on the generated set.
"""
import hashlib
import os
import re
import shutil
import sqlite3
import subprocess

from smtest import CliTest, FIXTURES, main

SQLITE_STEPS = [
    # tables, an index, a view, a trigger
    """CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, email TEXT, nick TEXT);
CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id), body TEXT);
CREATE INDEX posts_user ON posts(user_id);
CREATE VIEW v_users AS SELECT id, name FROM users;
CREATE VIEW a_names AS SELECT name FROM v_users;
CREATE TABLE gone (id INTEGER);
CREATE TRIGGER posts_touch AFTER INSERT ON posts BEGIN UPDATE users SET nick = 'x' WHERE id = NEW.user_id; END;
""",
    # type, nullability, default, added columns, unique and FK changes,
    # partial and expression indexes, changed view, dropped table, new table
    """CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL DEFAULT '', email VARCHAR(200) UNIQUE, nick TEXT, age INTEGER, score INTEGER NOT NULL DEFAULT 0);
CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id) ON DELETE CASCADE, body TEXT, extra TEXT);
CREATE INDEX posts_user ON posts(user_id) WHERE user_id IS NOT NULL;
CREATE INDEX users_lower ON users(lower(email));
CREATE VIEW v_users AS SELECT id, name, email FROM users;
CREATE VIEW a_names AS SELECT name FROM v_users;
CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT UNIQUE, post_id INTEGER REFERENCES posts(id));
CREATE TRIGGER posts_touch AFTER INSERT ON posts BEGIN UPDATE users SET nick = 'x' WHERE id = NEW.user_id; END;
""",
    # dropped columns, index, view and trigger
    """CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL DEFAULT '', email VARCHAR(200) UNIQUE, age INTEGER, score INTEGER NOT NULL DEFAULT 0);
CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id) ON DELETE CASCADE, body TEXT);
CREATE INDEX posts_user ON posts(user_id) WHERE user_id IS NOT NULL;
CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT UNIQUE, post_id INTEGER REFERENCES posts(id));
""",
]

PG_STEPS = [
    """CREATE TYPE mood AS ENUM ('sad', 'ok');
CREATE TABLE users (id serial PRIMARY KEY, name text, email text, m mood, nick text);
CREATE TABLE posts (id bigserial PRIMARY KEY, user_id integer REFERENCES users(id), body text);
CREATE INDEX posts_user ON posts(user_id);
CREATE VIEW v_users AS SELECT id, name, email, m FROM users;
CREATE VIEW v_posts AS SELECT id FROM posts;
CREATE VIEW a_posts AS SELECT id FROM v_posts;
CREATE TABLE gone (id int);
""",
    """CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE SEQUENCE counter START 5;
CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL DEFAULT '', email varchar(200) UNIQUE, m mood, nick text, age int CHECK (age > 0));
CREATE TABLE posts (id bigserial PRIMARY KEY, user_id integer REFERENCES users(id) ON DELETE CASCADE, body text);
CREATE INDEX posts_user ON posts(user_id) WHERE user_id IS NOT NULL;
CREATE INDEX users_lower ON users(lower(email));
CREATE TABLE tags (id int PRIMARY KEY, name text UNIQUE, post_id bigint REFERENCES posts(id));
CREATE VIEW v_users AS SELECT id, name, email, m FROM users;
CREATE VIEW v_posts AS SELECT id, body FROM posts;
CREATE VIEW a_posts AS SELECT id FROM v_posts;
""",
    """CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL DEFAULT '', email varchar(200) UNIQUE, m mood, age int CHECK (age > 0));
CREATE TABLE posts (id bigserial PRIMARY KEY, user_id integer REFERENCES users(id) ON DELETE CASCADE, body text);
CREATE TABLE tags (id int PRIMARY KEY, name text UNIQUE, post_id bigint REFERENCES posts(id));
""",
]


class AutogenBase(CliTest):
    def setUp(self):
        super().setUp()
        self.n = 0

    def generate(self, url, schema_file, message="step"):
        """Runs create --from-schema; renames the file(s) to sequential
        versions (create names them by the second).  Returns the paths."""
        r = self.ok("-d", url, "create", message, "--from-schema", schema_file)
        paths = []
        for p in r.out.split():
            self.n += 1
            new = os.path.join(self.path("migrations"),
                               "%04d_%s" % (self.n, os.path.basename(p).split("_", 2)[2]))
            os.rename(os.path.join(self.dir, p), new)
            paths.append(new)
        self.assertTrue(paths, r)
        return paths, r

    def read(self, path):
        with open(path) as f:
            return f.read()

    def assert_no_changes(self, url, schema_file):
        before = sorted(os.listdir(self.path("migrations")))
        r = self.ok("-d", url, "create", "again", "--from-schema", schema_file)
        self.assertIn("no changes", r.err)
        self.assertEqual(r.out, "")
        self.assertEqual(sorted(os.listdir(self.path("migrations"))), before)

    def expected_schema(self, desired_url, schema_file, out):
        self.ok("-d", desired_url, "schema", "--output", self.path(out))
        return self.path(out)


class AutogenSqlite(AutogenBase):
    def test_steps_apply_validate_and_roundtrip(self):
        url = self.sqlite_url()
        sqlite3.connect(self.path("app.db")).close()
        for i, text in enumerate(SQLITE_STEPS):
            f = self.write("schema%d.sql" % i, text)
            paths, r = self.generate(url, f)
            if i == 1:
                body = self.read(paths[0])
                self.assertTrue(body.startswith("-- migrate:up transaction:false\n"), body)
                self.assertIn("PRAGMA foreign_keys = OFF;\nPRAGMA legacy_alter_table = ON;\nBEGIN;\n",
                              body)
                self.assertIn('ALTER TABLE "new_users" RENAME TO "users";', body)
                self.assertIn("COMMIT;\nPRAGMA legacy_alter_table = OFF;\nPRAGMA foreign_keys = ON;",
                              body)
                self.assertIn("DESTRUCTIVE: drops table gone", r.err)
                self.assertIn("if this is a rename, write it by hand", r.err)
                # some data that the rebuilds must keep
                self.sqlite("INSERT INTO users (id, name, email, nick) VALUES (1, 'a', 'a@x', 'n'), "
                            "(2, NULL, 'b@x', NULL)")
                self.sqlite("INSERT INTO posts (id, user_id, body) VALUES (7, 1, 'hello')")
            if i == 2:
                self.assertIn("DESTRUCTIVE: drops column users.nick", r.err)
            self.ok("-d", url, "upgrade")
            desired = "desired%d.db" % i
            con = sqlite3.connect(self.path(desired))
            con.executescript(text)
            con.close()
            exp = self.expected_schema(self.sqlite_url(desired), f, "exp%d.txt" % i)
            r = self.ok("-d", url, "validate", "--expected", exp)
            self.assertIn("PASS expected-schema", r.out)
            self.assert_no_changes(url, f)
        # the NULL name took the default of the column made NOT NULL
        self.assertEqual(self.sqlite("SELECT id, name, email FROM users ORDER BY id"),
                         [(1, "a", "a@x"), (2, "", "b@x")])
        self.assertEqual(self.sqlite("SELECT id, user_id, body FROM posts"), [(7, 1, "hello")])
        r = self.ok("-d", url, "roundtrip")
        self.assertIn("roundtrip ok: 3 migrations", r.out)

    def test_no_changes_on_empty_and_errors(self):
        url = self.sqlite_url()
        sqlite3.connect(self.path("app.db")).close()
        f = self.write("empty.sql", "-- nothing\n")
        r = self.ok("-d", url, "create", "x", "--from-schema", f)
        self.assertIn("no changes", r.err)
        self.assertFalse(os.path.exists(self.path("migrations")) and
                         os.listdir(self.path("migrations")))
        bad = self.write("bad.sql", "CREATE TABLE t (;\n")
        r = self.code(1, "-d", url, "create", "x", "--from-schema", bad)
        self.assertIn("cannot load the desired schema", r.err)
        self.code(1, "-d", url, "create", "x", "--from-schema", self.path("missing.sql"))

    def test_chinook_rebuild_keeps_rows_and_foreign_keys(self):
        shutil.copy(os.path.join(FIXTURES, "chinook", "Chinook_Sqlite.sqlite"), self.path("app.db"))
        url = self.sqlite_url()
        schema = subprocess.run(["sqlite3", self.path("app.db"), ".schema"], capture_output=True,
                                text=True, check=True).stdout
        # Album: referenced by Track, references Artist; Artist: referenced by Album
        new = schema.replace("[Title] NVARCHAR(160)  NOT NULL", "[Title] NVARCHAR(200)  NOT NULL")
        new = re.sub(r"(CREATE TABLE \[Artist\]\s*\(\s*\[ArtistId\] INTEGER  NOT NULL,\s*"
                     r"\[Name\] NVARCHAR\(120\))", r"\1 NOT NULL", new)
        self.assertNotEqual(new.count("NOT NULL"), schema.count("NOT NULL"))
        self.assertIn("NVARCHAR(200)", new)
        f = self.write("chinook.sql", new)

        def state():
            con = sqlite3.connect(self.path("app.db"))
            tables = [r[0] for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE "
                "'safe_migrate_%' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
            out = {}
            for t in tables:
                rows = con.execute('SELECT * FROM "%s" ORDER BY 1' % t).fetchall()
                out[t] = (len(rows), hashlib.sha256(repr(rows).encode()).hexdigest(),
                          con.execute('PRAGMA foreign_key_list("%s")' % t).fetchall())
            con.close()
            return out

        before = state()
        paths, r = self.generate(url, f, "widen album title")
        self.assertIn("rebuild table Album", r.err)
        self.assertIn("rebuild table Artist", r.err)
        self.assertNotIn("rebuild table Track", r.err)
        self.ok("-d", url, "upgrade")
        after = state()
        self.assertEqual(before, after)
        self.assertEqual(self.sqlite("PRAGMA foreign_key_check"), [])
        self.assertEqual(self.sqlite("PRAGMA integrity_check"), [("ok",)])
        cols = {c[1]: (c[2], c[3]) for c in self.sqlite("PRAGMA table_info(Album)")}
        self.assertEqual(cols["Title"], ("NVARCHAR(200)", 1))
        cols = {c[1]: (c[2], c[3]) for c in self.sqlite("PRAGMA table_info(Artist)")}
        self.assertEqual(cols["Name"], ("NVARCHAR(120)", 1))
        con = sqlite3.connect(self.path("desired.db"))
        con.executescript(new)
        con.close()
        exp = self.expected_schema(self.sqlite_url("desired.db"), f, "exp.txt")
        self.ok("-d", url, "validate", "--expected", exp)
        self.assert_no_changes(url, f)
        # and back down: the rows and foreign keys survive that rebuild too
        self.ok("-d", url, "downgrade", "base")
        self.assertEqual(state(), before)
        self.assertEqual(self.sqlite("PRAGMA foreign_key_check"), [])


class AutogenPg(AutogenBase):
    def test_steps_apply_validate_and_roundtrip(self):
        url = self.pg_new_db()
        for i, text in enumerate(PG_STEPS):
            f = self.write("schema%d.sql" % i, text)
            paths, r = self.generate(url, f)
            if i == 1:
                self.assertEqual(len(paths), 2, r)
                body = self.read(paths[0])
                self.assertIn("NOT VALID;", body)
                self.assertIn('VALIDATE CONSTRAINT "users_age_check"', body)
                self.assertIn("ADD VALUE IF NOT EXISTS 'happy'", body)
                conc = self.read(paths[1])
                self.assertTrue(conc.startswith("-- migrate:up transaction:false\n"), conc)
                self.assertIn("CREATE INDEX CONCURRENTLY users_lower", conc)
                self.assertIn("DROP INDEX CONCURRENTLY", conc)
                self.psql(url, "INSERT INTO users (name, email) VALUES ('a', 'a@x'), (NULL, 'b@x');"
                               "INSERT INTO posts (user_id, body) VALUES (1, 'hello')")
            self.ok("-d", url, "upgrade")
            desired = self.pg_new_db()
            self.psql(desired, text)
            exp = self.expected_schema(desired, f, "exp%d.txt" % i)
            r = self.ok("-d", url, "validate", "--expected", exp)
            self.assertIn("PASS expected-schema", r.out)
            self.assert_no_changes(url, f)
        self.assertEqual(self.psql(url, "SELECT name || ',' || email FROM users ORDER BY id"),
                         "a,a@x\n,b@x")
        self.assertEqual(self.psql(url, "SELECT body FROM posts"), "hello")
        r = self.ok("-d", url, "roundtrip", "--url", self.pg_new_db())
        self.assertIn("roundtrip ok", r.out)
        # the scratch database is gone
        self.assertEqual(self.psql(url, "SELECT count(*) FROM pg_database WHERE datname LIKE "
                                        "'sm\\_autogen\\_%'"), "0")


if __name__ == "__main__":
    main()
