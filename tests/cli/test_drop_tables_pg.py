"""drop-tables on PostgreSQL: a safety snapshot first, then every user table,
view and sequence is gone (the version table included), and restoring the
printed snapshot gives back the identical database."""
import os

from smtest import CliTest, main


class DropTablesPg(CliTest):
    def test_drop_then_restore_is_identical(self):
        url = self.pg_new_db()
        self.write("migrations/0001_a.sql", "CREATE TABLE a (id serial PRIMARY KEY, t text);\n")
        self.ok("-d", url, "upgrade")
        self.psql(url, """
            CREATE SCHEMA app;
            CREATE TABLE app.parent (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, n text);
            CREATE TABLE app.child (id int PRIMARY KEY, pid int REFERENCES app.parent(id));
            CREATE SEQUENCE app.free_seq START 40;
            SELECT nextval('app.free_seq');
            CREATE VIEW app.v AS SELECT p.n, count(c.id) FROM app.parent p
                LEFT JOIN app.child c ON c.pid = p.id GROUP BY p.n;
            CREATE MATERIALIZED VIEW app.mv AS SELECT * FROM app.v;
            INSERT INTO app.parent (n) VALUES ('x'), ('y');
            INSERT INTO app.child VALUES (1, 1), (2, 1);
            INSERT INTO a (t) VALUES ('one'), (NULL), ('');
        """)
        before = self.pg_schema_dump(url)
        rows = lambda: self.psql(url, "SELECT (SELECT count(*) FROM app.child), "
                                      "(SELECT string_agg(coalesce(t, '~'), ',' ORDER BY id) FROM a), "
                                      "(SELECT last_value FROM app.free_seq)")
        before_rows = rows()
        r = self.code(2, "-d", url, "-b", self.path("b"), "drop-tables")
        self.assertIn("--yes", r.err)
        self.assertEqual(self.pg_schema_dump(url), before)
        r = self.ok("-d", url, "-b", self.path("b"), "drop-tables", "--yes", "--json")
        j = r.json()
        self.assertTrue(os.path.exists(j["snapshot"]))
        self.assertIn("TABLE public.safe_migrate_versions", j["dropped"])
        self.assertIn("SEQUENCE app.free_seq", j["dropped"])
        left = self.psql(url, "SELECT count(*) FROM pg_class c JOIN pg_namespace n "
                              "ON n.oid = c.relnamespace WHERE c.relkind IN "
                              "('r','p','v','m','S','f') AND n.nspname NOT IN "
                              "('pg_catalog', 'information_schema') "
                              "AND n.nspname NOT LIKE 'pg_toast%'")
        self.assertEqual(left, "0")
        self.ok("-d", url, "-b", self.path("b"), "restore", j["snapshot"], "--yes")
        self.assertEqual(self.pg_schema_dump(url), before)
        self.assertEqual(rows(), before_rows)


if __name__ == "__main__":
    main()
