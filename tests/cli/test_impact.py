"""The dry run's measured impact report (issue 19): per statement, the locks
the rehearsing backend took (pg_locks, inside the rolled-back transaction),
what they block, rewrites (a changed filenode / SQLite root page) and the
per-table blocking window; and the --max-blocking / --max-rewrite gates."""
import sqlite3

from smtest import CliTest, main


def stmt_rel(impact, text_prefix, rel):
    """(statement, relation) of the first statement starting with text_prefix;
    relation is None when the statement did not touch rel."""
    for m in impact["migrations"]:
        for s in m["statements"]:
            if s["statement"].startswith(text_prefix):
                for r in s["relations"]:
                    if r["name"] == rel:
                        return s, r
                return s, None
    raise AssertionError("no statement %r in %r" % (text_prefix, impact))


def window(impact, rel):
    for w in impact["windows"]:
        if w["relation"] == rel:
            return w
    return None


class ImpactPg(CliTest):
    def setUp(self):
        super().setUp()
        self.url = self.pg_new_db()
        self.psql(self.url, """
            CREATE TABLE orders (id serial PRIMARY KEY, n int, code varchar(10), note text);
            INSERT INTO orders (n, code, note) SELECT g, 'c' || g, 'x' FROM generate_series(1, 20000) g;
            ANALYZE orders;""")
        self.base = ["-d", self.url, "-b", self.path("backups")]

    def add(self, name, up, notx=False):
        self.write("migrations/" + name,
                   "-- migrate:up%s\n%s\n" % (" transaction:false" if notx else "", up))

    def impact(self, *extra, code=0):
        r = self.run_sm(*self.base, "safe-migrate", "--dry-run", "--json", *extra)
        self.assertEqual(r.code, code, r)
        return r.json()["impact"]

    def check(self, sql, prefix, mode, rewritten, blocks):
        self.add("0001_m.sql", sql)
        imp = self.impact()
        self.assertEqual(imp["rehearsal"], "in-place")
        self.assertTrue(imp["live_locks_held"])
        s, r = stmt_rel(imp, prefix, "orders")
        self.assertIsNotNone(r, s)
        self.assertEqual(r["lock"], mode)
        self.assertEqual(r["blocks"], blocks)
        self.assertEqual(r["rewritten"], rewritten)
        self.assertTrue(r["existing"])
        self.assertEqual(r["rows"], 20000)
        self.assertGreater(r["bytes"], 0)
        w = window(imp, "orders")
        self.assertIsNotNone(w, imp)
        self.assertGreater(w["ms"], 0)
        self.assertEqual(w["blocks"], blocks)
        return imp

    def test_add_column_volatile_default_rewrites(self):
        imp = self.check("ALTER TABLE orders ADD COLUMN r float8 DEFAULT random();",
                         "ALTER TABLE orders ADD COLUMN", "AccessExclusiveLock", True, "reads")
        self.assertEqual([x["relation"] for x in imp["rewrites"]], ["orders", "orders_pkey"])
        self.assertEqual(imp["longest_write_block"]["relation"], "orders")

    def test_type_change_that_rewrites(self):
        self.check("ALTER TABLE orders ALTER COLUMN n TYPE bigint;", "ALTER TABLE",
                   "AccessExclusiveLock", True, "reads")

    def test_type_change_that_does_not_rewrite(self):
        imp = self.check("ALTER TABLE orders ALTER COLUMN code TYPE varchar(20);", "ALTER TABLE",
                         "AccessExclusiveLock", False, "reads")
        self.assertEqual(imp["rewrites"], [])

    def test_create_index_blocks_writes(self):
        self.check("CREATE INDEX orders_n_idx ON orders (n);", "CREATE INDEX", "ShareLock",
                   False, "writes")

    def test_set_not_null(self):
        self.check("ALTER TABLE orders ALTER COLUMN note SET NOT NULL;", "ALTER TABLE",
                   "AccessExclusiveLock", False, "reads")

    def test_do_block_that_alters_a_table(self):
        self.check("DO $$ BEGIN ALTER TABLE orders ADD COLUMN z int; END $$;", "DO",
                   "AccessExclusiveLock", False, "reads")

    def test_create_index_concurrently(self):
        self.add("0001_idx.sql", "CREATE INDEX CONCURRENTLY orders_n_idx ON orders (n);",
                 notx=True)
        # in place it cannot be rehearsed, and says so
        r = self.run_sm(*self.base, "safe-migrate", "--dry-run", "--json")
        self.assertEqual(r.code, 3, r)
        self.assertEqual(r.json()["not_rehearsed"], ["0001"])
        # --rehearse-url runs it outside a transaction: reported as not observed
        imp = self.impact("--rehearse-url", self.pg_new_db())
        self.assertEqual(imp["rehearsal"], "rehearse-url")
        self.assertFalse(imp["live_locks_held"])
        s, r = stmt_rel(imp, "CREATE INDEX CONCURRENTLY", "orders")
        self.assertFalse(s["in_transaction"])
        self.assertFalse(s["locks_observed"])
        self.assertIsNone(r)
        self.assertIsNone(window(imp, "orders"))
        r = self.run_sm(*self.base, "safe-migrate", "--dry-run", "--rehearse-url",
                        self.pg_new_db())
        self.assertIn("(not observed): ran outside a transaction", r.out)

    def test_rehearse_url_measures_each_migration(self):
        self.add("0001_a.sql", "ALTER TABLE orders ADD COLUMN r float8 DEFAULT random();")
        self.add("0002_b.sql", "CREATE INDEX orders_n_idx ON orders (n);")
        # (the dry run uses --rehearse-url when a migration is transaction:false)
        self.add("0003_c.sql", "CREATE INDEX CONCURRENTLY orders_c_idx ON orders (code);",
                 notx=True)
        imp = self.impact("--rehearse-url", self.pg_new_db())
        s, r = stmt_rel(imp, "CREATE INDEX", "orders")
        self.assertEqual(r["lock"], "ShareLock")
        self.assertEqual(len([w for w in imp["windows"] if w["relation"] == "orders"]), 2)

    def test_max_blocking_gate(self):
        self.add("0001_m.sql", "ALTER TABLE orders ADD COLUMN r float8 DEFAULT random();")
        self.impact("--max-blocking", "10min")
        r = self.run_sm(*self.base, "safe-migrate", "--dry-run", "--max-blocking", "0ms")
        self.assertEqual(r.code, 4, r)
        self.assertIn("impact gate: migrations/0001_m.sql line 2 ('ALTER TABLE orders ADD COLUMN "
                      "r float8 DEFAULT random()') blocks reads to orders", r.err)
        # the config key does the same
        self.write("safe-migrate.ini", "[safe-migrate]\nmax_blocking = 0ms\n")
        imp = self.impact(code=4)
        self.assertEqual(len(imp["gate_findings"]), 1)
        self.assertIn("over --max-blocking 0 ms", imp["gate_findings"][0])

    def test_max_blocking_ignores_new_and_empty_tables(self):
        self.psql(self.url, "CREATE TABLE empty (x int);")
        self.add("0001_m.sql", "CREATE TABLE fresh (x int);\nCREATE INDEX ON fresh (x);\n"
                 "CREATE INDEX ON empty (x);")
        self.impact("--max-blocking", "0ms")

    def test_max_rewrite_gate(self):
        self.add("0001_m.sql", "ALTER TABLE orders ALTER COLUMN n TYPE bigint;")
        self.impact("--max-rewrite", "1GB")
        r = self.run_sm(*self.base, "safe-migrate", "--dry-run", "--max-rewrite", "100kB")
        self.assertEqual(r.code, 4, r)
        self.assertIn("rewrites table orders (", r.err)
        self.assertIn("over --max-rewrite 100.0 kB; hint: changing a type rewrites the table", r.err)
        self.assertEqual(self.run_sm(*self.base, "safe-migrate", "--dry-run", "--max-rewrite",
                                     "lots").code, 2)
        self.write("safe-migrate.ini", "[safe-migrate]\nmax_rewrite = 100kB\n")
        imp = self.impact(code=4)
        self.assertEqual([f.split(" rewrites ")[1].split(" (")[0] for f in imp["gate_findings"]],
                         ["table orders", "index orders_pkey"])
        self.impact("--max-rewrite", "1GB")  # the flag wins over the config key


class ImpactSqlite(CliTest):
    def setUp(self):
        super().setUp()
        con = sqlite3.connect(self.path("app.db"))
        con.executescript(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b INT);"
            "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < 5000) "
            "INSERT INTO t SELECT x, 'v' || x, x FROM g;")
        con.close()
        self.base = ["-d", self.sqlite_url(), "-b", self.path("backups")]
        self.write("migrations/0001_rebuild.sql",
                   "-- migrate:up\nCREATE TABLE t_new (id INTEGER PRIMARY KEY, a TEXT NOT NULL, "
                   "b INT);\nINSERT INTO t_new SELECT id, coalesce(a, ''), b FROM t;\n"
                   "DROP TABLE t;\nALTER TABLE t_new RENAME TO t;\n")

    def test_database_window_and_rebuild(self):
        r = self.run_sm(*self.base, "safe-migrate", "--dry-run", "--json")
        self.assertEqual(r.code, 0, r)
        imp = r.json()["impact"]
        s, d = stmt_rel(imp, "CREATE TABLE t_new", "(database)")
        self.assertEqual(d["lock"], "RESERVED")
        self.assertEqual(d["blocks"], "writes")
        w = window(imp, "(database)")
        self.assertGreater(w["ms"], 0)
        s, t = stmt_rel(imp, "ALTER TABLE t_new RENAME", "t")
        self.assertTrue(t["rewritten"])
        self.assertEqual(t["rows"], 5000)
        self.assertEqual(imp["rewrites"][0]["relation"], "t")
        r = self.run_sm(*self.base, "safe-migrate", "--dry-run", "--max-rewrite", "1kB")
        self.assertEqual(r.code, 4, r)
        self.assertIn("rewrites table t (", r.err)
        self.assertEqual(self.run_sm(*self.base, "safe-migrate", "--dry-run", "--max-blocking",
                                     "0").code, 4)
        self.assertEqual(self.run_sm(*self.base, "safe-migrate", "--dry-run", "--max-blocking",
                                     "10min").code, 0)

    def test_transaction_false_statement_window(self):
        self.write("migrations/0002_idx.sql",
                   "-- migrate:up transaction:false\nCREATE INDEX t_b_idx ON t (b);\n")
        r = self.run_sm(*self.base, "safe-migrate", "--dry-run", "--json", "--rehearse-url",
                        self.sqlite_url("rehearsal.db"))
        self.assertEqual(r.code, 0, r)
        imp = r.json()["impact"]
        self.assertEqual(imp["rehearsal"], "rehearse-url")
        s, d = stmt_rel(imp, "CREATE INDEX t_b_idx", "(database)")
        self.assertFalse(s["in_transaction"])
        self.assertEqual(d["blocks"], "writes")
        ws = [w for w in imp["windows"] if w["migration"].endswith("0002_idx.sql")]
        self.assertEqual(len(ws), 1)
        self.assertEqual(ws[0]["ms"], s["ms"])  # the statement alone
        self.assertGreater(ws[0]["ms"], 0)


if __name__ == "__main__":
    main()
