"""The dry run's measured impact report (issue 19): per statement, the locks
the rehearsing backend took (pg_locks, inside the rolled-back transaction),
what they block, rewrites (a changed filenode / SQLite root page) and the
per-table blocking window; and the --max-blocking / --max-rewrite gates."""
import os
import re
import sqlite3
import subprocess
import threading
import time
import xml.etree.ElementTree as ET

from smtest import CliTest, main

XHTML = "{http://www.w3.org/1999/xhtml}"
SVG = "{http://www.w3.org/2000/svg}"


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


def check_html(test, path, impact):
    """The --report page: well-formed XML, no external references, one lane
    per locked relation other than an index; returns the parsed root."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    root = ET.fromstring(text)  # raises unless well-formed
    test.assertEqual(root.tag, XHTML + "html")
    urls = re.findall(r"https?://[^\s\"'<>]*", text)
    test.assertEqual(set(urls) - {"http://www.w3.org/1999/xhtml", "http://www.w3.org/2000/svg"},
                     set(), "external references")
    for attr in re.findall(r"\b(?:src|href|xlink:href)\s*=\s*[\"']([^\"']*)", text):
        test.assertTrue(attr.startswith("#"), attr)
    test.assertNotIn("<script", text)
    test.assertNotIn("@import", text)
    test.assertNotIn("url(", text)
    locked = set()
    for m in impact["migrations"]:
        for s in m["statements"]:
            for r in s["relations"]:
                if r["lock"] and r["blocks"] != "none" and r["kind"] != "index":
                    locked.add(r["name"])
    lanes = [g.get("data-relation") for g in root.iter(SVG + "g") if g.get("class") == "lane"]
    test.assertEqual(sorted(lanes), sorted(locked))
    test.assertTrue(locked)
    test.assertEqual(len(root.findall(".//" + SVG + "svg")), 1)
    test.assertEqual(len([g for g in root.iter(SVG + "g") if g.get("class") == "legend"]), 3)
    test.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
    return root


def html_objects(root):
    """(migration, change, object) of the page's objects table."""
    return [(tr[0].text, tr[2].text, tr[3].text) for tr in root.iter(XHTML + "tr")
            if tr.get("class") in ("created", "dropped")]


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

    def test_many_tables_in_one_transaction(self):
        # the locks held by then, and the relations made since the migration
        # began, are looked up sorted: a rewrite of orders after 40 new
        # tables, then of one of those tables, each with its size and rows
        tables = "".join("CREATE TABLE n%d (id serial PRIMARY KEY, v text);\n" % i
                         for i in range(40))
        self.add("0001_m.sql", tables +
                 "INSERT INTO n7 (v) SELECT 'v' FROM generate_series(1, 500);\n"
                 "ALTER TABLE orders ALTER COLUMN n TYPE bigint;\n"
                 "ALTER TABLE n7 ALTER COLUMN v TYPE varchar(10);\n"
                 "CREATE INDEX n0_v ON n0 (v);")
        imp = self.impact()
        s, r = stmt_rel(imp, "ALTER TABLE orders", "orders")
        self.assertEqual((r["lock"], r["rewritten"], r["existing"], r["rows"]),
                         ("AccessExclusiveLock", True, True, 20000), s)
        self.assertGreater(r["bytes"], 0)
        # only what the statement newly locked or rewrote: none of the new tables
        self.assertFalse([x["name"] for x in s["relations"] if x["name"].startswith("n")], s)
        s, r = stmt_rel(imp, "ALTER TABLE n7", "n7")
        self.assertEqual((r["rewritten"], r["existing"]), (True, False), s)
        self.assertGreater(r["bytes"], 0)
        s, r = stmt_rel(imp, "CREATE INDEX n0_v", "n0_v")
        self.assertEqual((r["existing"], s["created"]), (False, ["index n0_v"]), s)
        self.assertEqual(imp["migrations"][0]["created"][:2], ["sequence n0_id_seq", "table n0"])

    def test_type_change_that_rewrites(self):
        imp = self.check("ALTER TABLE orders ALTER COLUMN n TYPE bigint;", "ALTER TABLE",
                         "AccessExclusiveLock", True, "reads")
        self.assertEqual([(x["rule"], x["lint_said"], x["measured"], x["confirmed"])
                          for x in imp["lint_checks"]],
                         [("column-type-change", "rewrite", "rewrite", True)])

    def test_lint_and_measurement_agree_or_not(self):
        self.add("0001_m.sql", "ALTER TABLE orders ALTER COLUMN code TYPE varchar(20);\n"
                 "ALTER TABLE orders ALTER COLUMN note SET NOT NULL;\n"
                 "CREATE INDEX orders_n_idx ON orders (n);")
        page = self.path("impact.html")
        imp = self.impact("--report", page)
        got = [(x["rule"], x["line"], x["lint_said"], x["measured"], x["confirmed"])
               for x in imp["lint_checks"]]
        self.assertEqual(got, [
            # widening a varchar: the lint guessed a rewrite, the server did none
            ("column-type-change", 2, "rewrite", "no rewrite", False),
            # ACCESS EXCLUSIVE was already held by line 2: nothing new to see
            ("set-not-null", 3, "blocks reads", "no new lock", None),
            # its own new lock (SHARE) is what it claims, under the ACCESS EXCLUSIVE held
            ("create-index-non-concurrently", 4, "blocks writes", "blocks writes", True)])
        r = self.run_sm(*self.base, "safe-migrate", "--dry-run")
        self.assertIn("lint column-type-change: migrations/0001_m.sql line 2: lint said rewrite, "
                      "measured: no rewrite (CONTRADICTED)", r.out)
        root = check_html(self, page, imp)
        rows = [tr for tr in root.iter(XHTML + "tr") if tr.get("class") == "contradicted"]
        self.assertEqual(len(rows), 1)
        self.assertEqual(rows[0][0].text, "column-type-change")
        # on its own, the plain CREATE INDEX is confirmed
        self.add("0001_m.sql", "CREATE INDEX orders_n_idx ON orders (n);")
        imp = self.impact()
        self.assertEqual([(x["rule"], x["measured"], x["confirmed"]) for x in imp["lint_checks"]],
                         [("create-index-non-concurrently", "blocks writes", True)])

    def test_type_change_that_does_not_rewrite(self):
        imp = self.check("ALTER TABLE orders ALTER COLUMN code TYPE varchar(20);", "ALTER TABLE",
                         "AccessExclusiveLock", False, "reads")
        self.assertEqual(imp["rewrites"], [])

    def test_create_index_blocks_writes(self):
        self.check("CREATE INDEX orders_n_idx ON orders (n);", "CREATE INDEX", "ShareLock",
                   False, "writes")

    def test_foreign_key_validated_at_once_or_later(self):
        self.psql(self.url, "CREATE TABLE customers (id int PRIMARY KEY); "
                  "INSERT INTO customers SELECT g FROM generate_series(1, 20000) g")
        # at once: the whole check runs under a lock that blocks writes
        self.check("ALTER TABLE orders ADD CONSTRAINT orders_n_fk FOREIGN KEY (n) "
                   "REFERENCES customers (id);", "ALTER TABLE", "ShareRowExclusiveLock",
                   False, "writes")
        # NOT VALID, then VALIDATE in a migration of its own: the validation
        # takes only a lock that blocks DDL
        self.add("0001_m.sql", "ALTER TABLE orders ADD CONSTRAINT orders_n_fk FOREIGN KEY (n) "
                 "REFERENCES customers (id) NOT VALID;")
        self.add("0002_v.sql", "ALTER TABLE orders VALIDATE CONSTRAINT orders_n_fk;")
        imp = self.impact()
        s, r = stmt_rel(imp, "ALTER TABLE orders VALIDATE", "orders")
        self.assertIsNotNone(r, s)
        self.assertEqual(r["new_lock"], "ShareUpdateExclusiveLock", r)
        self.assertFalse(r["rewritten"])
        # held from the statement to the end of the transaction, blocking DDL only
        self.assertGreater(r["held_ms"], 0)
        self.assertIsNone(r["waited_ms"])
        s, r = stmt_rel(imp, "ALTER TABLE orders ADD CONSTRAINT", "orders")
        self.assertEqual(r["new_lock"], "ShareRowExclusiveLock", r)
        self.assertFalse(r["rewritten"])
        self.assertGreater(r["held_ms"], 0)
        # the NOT VALID step blocks writes (briefly; in place the one rolled-back
        # transaction goes on holding it through the validation)
        w = window(imp, "orders")
        self.assertEqual((os.path.basename(w["migration"]), w["blocks"]), ("0001_m.sql", "writes"))
        self.assertGreater(w["ms"], 0)

    def test_set_not_null(self):
        self.check("ALTER TABLE orders ALTER COLUMN note SET NOT NULL;", "ALTER TABLE",
                   "AccessExclusiveLock", False, "reads")

    def test_do_block_that_alters_a_table(self):
        self.check("DO $$ BEGIN ALTER TABLE orders ADD COLUMN z int; END $$;", "DO",
                   "AccessExclusiveLock", False, "reads")

    def test_create_index_concurrently(self):
        # enough rows that the build lasts many of the watcher's polls even
        # on a loaded machine (on 20,000 it took 8 ms, and under ctest -j2
        # the watcher once saw no lock at all)
        self.psql(self.url, "INSERT INTO orders (n, code, note) SELECT g, 'c' || g, 'x' "
                  "FROM generate_series(20001, 300000) g; ANALYZE orders")
        self.add("0001_idx.sql", "CREATE INDEX CONCURRENTLY orders_n_idx ON orders (n);",
                 notx=True)
        # in place it cannot be rehearsed, and says so
        r = self.run_sm(*self.base, "safe-migrate", "--dry-run", "--json")
        self.assertEqual(r.code, 3, r)
        self.assertEqual(r.json()["not_rehearsed"], ["0001"])
        # --rehearse-url runs it outside a transaction, where a second
        # connection watches the backend's locks while it runs: SHARE UPDATE
        # EXCLUSIVE (blocks DDL only), held for part of the statement
        imp = self.impact("--rehearse-url", self.pg_new_db())
        self.assertEqual(imp["rehearsal"], "rehearse-url")
        self.assertFalse(imp["live_locks_held"])
        s, r = stmt_rel(imp, "CREATE INDEX CONCURRENTLY", "orders")
        self.assertFalse(s["in_transaction"])
        self.assertTrue(s["locks_observed"])
        self.assertIsNotNone(r, s)
        self.assertEqual(r["lock"], "ShareUpdateExclusiveLock")
        self.assertEqual(r["blocks"], "ddl")
        self.assertFalse(r["rewritten"])
        self.assertTrue(r["existing"])
        self.assertEqual(r["rows"], 300000)
        self.assertGreater(r["held_ms"], 0)
        self.assertLessEqual(r["held_ms"] + r["waited_ms"], s["ms"])
        self.assertEqual(s["created"], ["index orders_n_idx"])
        # it blocks no writes: no window, and the lint has nothing to check
        self.assertIsNone(window(imp, "orders"))
        self.assertEqual(imp["lint_checks"], [])
        r = self.run_sm(*self.base, "safe-migrate", "--dry-run", "--rehearse-url",
                        self.pg_new_db())
        self.assertNotIn("(not observed)", r.out)
        self.assertRegex(r.out, r"orders +ShareUpdateExcl ddl ")

    def test_transaction_false_statement_is_gated(self):
        """A statement outside a transaction (transaction:false) that holds
        SHARE on orders for 0.3 s: the watcher sees the lock, so the statement
        has a write-blocking window and the gate applies to it."""
        self.add("0001_lock.sql", "DO $$ BEGIN LOCK TABLE orders IN SHARE MODE; "
                 "PERFORM pg_sleep(0.3); END $$;", notx=True)
        r = self.run_sm(*self.base, "safe-migrate", "--dry-run", "--json", "--rehearse-url",
                        self.pg_new_db(), "--max-blocking", "0ms")
        self.assertEqual(r.code, 4, r)
        imp = r.json()["impact"]
        s, o = stmt_rel(imp, "DO $$", "orders")
        self.assertFalse(s["in_transaction"])
        self.assertEqual(o["lock"], "ShareLock")
        self.assertEqual(o["blocks"], "writes")
        self.assertGreater(o["held_ms"], 0)
        w = window(imp, "orders")
        self.assertEqual(w["ms"], s["ms"])  # the statement alone
        self.assertGreater(w["ms"], 0)
        self.assertIn("blocks writes to orders", imp["gate_findings"][0])

    def dry_run_against_a_lock_holder(self):
        """Runs the dry run on a scratch database where a session takes SHARE
        on orders (it conflicts with the SHARE UPDATE EXCLUSIVE that CREATE
        INDEX CONCURRENTLY needs) as soon as the rehearsal's restore has
        created it, while the first migration sleeps, and holds it past the
        sleep; returns the run's result."""
        scratch = self.pg_new_db()
        self.add("0001_m.sql", "SELECT pg_sleep(1.5);")
        locked, stop, procs = threading.Event(), threading.Event(), []

        def holder():
            # (fails until the rehearsal's restore has created orders)
            sql = ("SET lock_timeout = '100ms';\nBEGIN;\nLOCK TABLE orders IN SHARE MODE;\n"
                   "SELECT 'locked';\nSELECT pg_sleep(3);\nCOMMIT;\n")
            while not stop.is_set() and not locked.is_set():
                p = subprocess.Popen(["psql", scratch, "-X", "-q", "-A", "-t"], text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
                procs.append(p)
                p.stdin.write(sql)
                p.stdin.close()
                for line in p.stdout:
                    if line.strip() == "locked":
                        locked.set()
                p.wait()
                p.stdout.close()
                time.sleep(0.05)

        t = threading.Thread(target=holder, daemon=True)
        t.start()
        try:
            r = self.run_sm(*self.base, "safe-migrate", "--dry-run", "--json", "--rehearse-url",
                            scratch, timeout=60)
        finally:
            stop.set()
            for p in procs:
                p.terminate()  # the holder's part is over: do not sit out its sleep
            t.join(60)
        self.assertTrue(locked.is_set())
        return r

    def test_create_index_concurrently_waits_for_a_conflicting_lock(self):
        """The watched statement reports the time it waited for its lock
        behind another session, then the time it held it."""
        self.add("0002_c.sql", "CREATE INDEX CONCURRENTLY orders_n_idx ON orders (n);",
                 notx=True)
        r = self.dry_run_against_a_lock_holder()
        self.assertEqual(r.code, 0, r)
        imp = r.json()["impact"]
        s, o = stmt_rel(imp, "CREATE INDEX CONCURRENTLY", "orders")
        self.assertIsNotNone(o, s)
        self.assertEqual(o["lock"], "ShareUpdateExclusiveLock")
        self.assertGreater(o["waited_ms"], 0)
        self.assertGreater(o["held_ms"], 0)

    def test_failed_statement_reports_its_wait(self):
        """A statement outside a transaction that gives up waiting for its
        lock (lock_timeout): the report still says what it waited for, how
        long, and that it failed."""
        self.add("0002_c.sql", "SET lock_timeout = '200ms';\n"
                 "CREATE INDEX CONCURRENTLY orders_n_idx ON orders (n);", notx=True)
        r = self.dry_run_against_a_lock_holder()
        self.assertNotEqual(r.code, 0, r)
        self.assertIn("lock timeout", r.err)
        imp = r.json()["impact"]
        s, o = stmt_rel(imp, "CREATE INDEX CONCURRENTLY", "orders")
        self.assertFalse(s["ok"])
        self.assertTrue(s["locks_observed"])
        self.assertIsNotNone(o, s)
        self.assertEqual(o["lock"], "ShareUpdateExclusiveLock")
        self.assertGreater(o["waited_ms"], 0)
        self.assertEqual(o["held_ms"], 0)

    def test_in_place_dry_run_gives_up_waiting_for_a_lock(self):
        """A session holds ACCESS EXCLUSIVE on orders, idle in its transaction:
        the in-place rehearsal's ALTER waits --lock-timeout, no longer, then
        exits 3 (not rehearsed) naming the holder and its lock; our backend
        is gone, nothing waits behind the holder any more."""
        self.add("0001_m.sql", "ALTER TABLE orders ADD COLUMN r int;")
        holder = subprocess.Popen(["psql", self.url, "-X", "-q", "-A", "-t"], text=True,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL,
                                  env=dict(os.environ, PGAPPNAME="lockholder"))
        try:
            holder.stdin.write("BEGIN;\nLOCK TABLE orders IN ACCESS EXCLUSIVE MODE;\n"
                               "SELECT pg_backend_pid();\n")
            holder.stdin.flush()
            pid = holder.stdout.readline().strip()
            r = self.run_sm(*self.base, "--lock-timeout", "1s", "safe-migrate", "--dry-run",
                            "--json", timeout=60)
            waiting = self.psql(self.url, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
                                "application_name = 'safe-migrate'")
        finally:
            holder.stdin.write("ROLLBACK;\n")
            holder.communicate(timeout=30)
        self.assertEqual(r.code, 3, r)
        self.assertIn("could not take its lock within the lock timeout (1000 ms)", r.err)
        self.assertIn("NOT rehearsed", r.err)
        self.assertIn("pid %s" % pid, r.err)
        self.assertIn("AccessExclusiveLock on orders", r.err)
        j = r.json()
        self.assertEqual(j["lock_timeout_ms"], 1000)
        self.assertEqual(j["lock_timeout_migration"], "0001")
        self.assertIn("AccessExclusiveLock on orders", j["blocking_sessions"])
        self.assertEqual(waiting, "0")

    def test_objects_created_and_dropped(self):
        self.psql(self.url, "CREATE TABLE old (x int);")
        self.add("0001_m.sql", "CREATE TABLE a (x int);\nCREATE INDEX a_x ON a (x);\n"
                 "DROP TABLE old;\nCREATE FUNCTION f(int) RETURNS int LANGUAGE sql AS 'SELECT 1';")
        r = self.run_sm(*self.base, "safe-migrate", "--dry-run", "--json")
        self.assertEqual(r.code, 0, r)
        m = r.json()["impact"]["migrations"][0]
        st = m["statements"]
        self.assertEqual((st[0]["created"], st[0]["dropped"]), (["table a"], []))
        self.assertEqual((st[1]["created"], st[1]["dropped"]), (["index a_x"], []))
        self.assertEqual((st[2]["created"], st[2]["dropped"]), ([], ["table old"]))
        self.assertEqual(st[3]["created"], ["function f(integer)"])
        self.assertEqual(sorted(m["created"]), ["function f(integer)", "index a_x", "table a"])
        self.assertEqual(m["dropped"], ["table old"])
        r = self.run_sm(*self.base, "safe-migrate", "--dry-run")
        self.assertIn("objects: migrations/0001_m.sql: created table a, created index a_x, "
                      "created function f(integer), dropped table old", r.out)

    def test_objects_another_session_creates_meanwhile_are_not_the_statements(self):
        # the statement sleeps while another session creates a table and a
        # function: they appear in the catalog between its before and after
        self.add("0001_m.sql", "SELECT pg_sleep(1.5);\nCREATE TABLE a (x int);")
        found = {}

        def other_session():
            for _ in range(200):
                if self.psql(self.url, "SELECT count(*) FROM pg_stat_activity WHERE "
                             "query LIKE 'SELECT pg_sleep(1.5)%'") == "1":
                    self.psql(self.url, "CREATE TABLE theirs (x int); CREATE FUNCTION "
                              "their_f() RETURNS int LANGUAGE sql AS 'SELECT 1'")
                    found["created"] = True
                    return
                time.sleep(0.02)

        t = threading.Thread(target=other_session)
        t.start()
        r = self.run_sm(*self.base, "safe-migrate", "--dry-run", "--json")
        t.join()
        self.assertTrue(found.get("created"), "the other session never saw the statement")
        self.assertEqual(r.code, 0, r)
        m = r.json()["impact"]["migrations"][0]
        st = m["statements"]
        self.assertEqual((st[0]["created"], st[0]["dropped"]), ([], []))
        self.assertEqual(st[1]["created"], ["table a"])
        self.assertEqual(m["created"], ["table a"])

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

    def test_rehearsal_window_matches_a_writers_wait(self):
        """An application inserting into orders on the scratch database every
        10 ms while the rehearsal runs there: its longest insert waits at
        least half the write-blocking window the report states (the window is
        not made up)."""
        scratch = self.pg_new_db()
        self.add("0001_m.sql", "ALTER TABLE orders ADD COLUMN z int;\nSELECT pg_sleep(1.5);")
        # (with a transaction:false migration the dry run rehearses on --rehearse-url)
        self.add("0002_c.sql", "CREATE INDEX CONCURRENTLY orders_n_idx ON orders (n);",
                 notx=True)
        lat, ok, stop = [], [0], threading.Event()

        def writer():
            p = subprocess.Popen(["psql", scratch, "-X", "-q", "-A", "-t"], text=True,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, bufsize=1)
            while not stop.is_set():
                t0 = time.monotonic()
                # (fails fast until the rehearsal's restore has created orders)
                p.stdin.write("INSERT INTO orders (n) VALUES (0) RETURNING 'ok';\n\\echo done\n")
                p.stdin.flush()
                line = p.stdout.readline()
                while line and line.strip() != "done":
                    ok[0] += line.strip() == "ok"
                    line = p.stdout.readline()
                lat.append(time.monotonic() - t0)
                if not line:
                    break
                time.sleep(0.01)
            p.stdin.close()
            p.wait()
            p.stdout.close()

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        try:
            imp = self.impact("--rehearse-url", scratch)
        finally:
            stop.set()
            t.join(60)
        self.assertEqual(imp["rehearsal"], "rehearse-url")
        w = [x for x in imp["windows"] if x["relation"] == "orders" and x["blocks"] == "reads"]
        self.assertEqual(len(w), 1, imp["windows"])
        self.assertGreaterEqual(w[0]["ms"], 1500)
        self.assertGreater(ok[0], 0)
        self.assertGreaterEqual(max(lat) * 1000, 0.5 * w[0]["ms"], (max(lat), w[0]))

    def test_html_report(self):
        # names that need escaping reach the page only escaped
        self.psql(self.url, 'CREATE TABLE "a<b&c>\'d""" (x int); INSERT INTO "a<b&c>\'d""" VALUES (1);')
        self.add("0001_a.sql", "ALTER TABLE orders ADD COLUMN r float8 DEFAULT random();\n"
                 "ALTER TABLE \"a<b&c>'d\"\"\" ADD COLUMN y int;")
        self.add("0002_b.sql", "CREATE INDEX orders_n_idx ON orders (n);\n"
                 "SELECT '</td><script>' AS x;")
        self.add("0003_c.sql", "CREATE INDEX CONCURRENTLY orders_c_idx ON orders (code);",
                 notx=True)
        page = self.path("out/impact.html")
        os.makedirs(self.path("out"))
        imp = self.impact("--rehearse-url", self.pg_new_db(), "--report", page)
        root = check_html(self, page, imp)
        lanes = [g.get("data-relation") for g in root.iter(SVG + "g") if g.get("class") == "lane"]
        self.assertEqual(sorted(lanes), ["a<b&c>'d\"", "orders"])
        text = ET.tostring(root, encoding="unicode", method="text")
        self.assertIn("longest write-blocking window: orders", text)
        self.assertIn("rewrite: table orders", text)
        self.assertIn("SELECT '</td><script>' AS x", text)
        # reads (red) for the rewrite, writes (orange) for the plain index,
        # DDL only (yellow) for the concurrent one, watched outside a transaction
        fills = {r.get("fill") for r in root.iter(SVG + "rect") if r.get("class") == "window"}
        self.assertEqual(fills, {"#c0392b", "#e67e22", "#f4d03f"})
        # the objects created and dropped, as in the text and --json
        self.assertEqual(html_objects(root), [
            ("migrations/0002_b.sql", "created", "index orders_n_idx"),
            ("migrations/0003_c.sql", "created", "index orders_c_idx")])
        # replaced atomically, never through a symlink
        os.remove(page)
        os.symlink(self.path("victim"), page)
        self.write("victim", "keep")
        self.impact("--rehearse-url", self.pg_new_db(), "--report", page)
        self.assertFalse(os.path.islink(page))
        with open(self.path("victim")) as f:
            self.assertEqual(f.read(), "keep")
        check_html(self, page, imp)
        # only with --dry-run
        self.assertEqual(self.run_sm(*self.base, "safe-migrate", "--report", page).code, 2)

    def test_real_run_recorded_in_runs_log(self):
        self.add("0001_a.sql", "ALTER TABLE orders ADD COLUMN r float8 DEFAULT random();")
        self.add("0002_b.sql", "CREATE INDEX orders_n_idx ON orders (n);")
        r = self.run_sm(*self.base, "safe-migrate", "--json")
        self.assertEqual(r.code, 0, r)
        imp = r.json()["impact"]
        self.assertEqual(imp["rehearsal"], "real-run")
        self.assertTrue(imp["live_locks_held"])
        self.assertNotIn("statements", imp["migrations"][0])
        self.assertTrue(all(m["ms"] > 0 for m in imp["migrations"]))
        blocks = sorted((os.path.basename(w["migration"]), w["relation"], w["blocks"]) for w in imp["windows"]
                        if w["kind"] == "table")
        self.assertEqual(blocks, [("0001_a.sql", "orders", "reads"),
                                  ("0002_b.sql", "orders", "writes")])
        self.assertTrue(all(w["ms"] > 0 for w in imp["windows"]))
        self.assertEqual([x["relation"] for x in imp["rewrites"]], ["orders", "orders_pkey"])
        self.assertEqual([(x["rule"], x["confirmed"]) for x in imp["lint_checks"]],
                         [("create-index-non-concurrently", True)])
        # the migrations really ran (the measurement's savepoints left them alone)
        self.assertEqual(self.psql(self.url, "SELECT count(r) FROM orders").strip(), "20000")
        h = self.run_sm(*self.base, "history", "--runs", "--json")
        self.assertEqual(h.json()["runs"][-1]["impact"], imp)
        h = self.run_sm(*self.base, "history", "--runs", "-v")
        self.assertIn("blocked reads to table orders for ", h.out)
        self.assertIn("blocked writes to table orders for ", h.out)
        self.assertIn("rewrote table orders (", h.out)
        self.assertIn("migration migrations/0002_b.sql: ", h.out)
        self.assertIn("lint create-index-non-concurrently (migrations/0002_b.sql line 2): lint "
                      "said blocks writes, measured: blocks writes (confirmed)", h.out)
        self.assertNotIn("blocked", self.run_sm(*self.base, "history", "--runs").out)

    def test_real_run_records_a_transaction_false_window(self):
        """The real run watches a transaction:false statement too: the runs
        log keeps the write-blocking window it opened."""
        self.add("0001_lock.sql", "DO $$ BEGIN LOCK TABLE orders IN SHARE MODE; "
                 "PERFORM pg_sleep(0.2); END $$;", notx=True)
        r = self.run_sm(*self.base, "safe-migrate", "--json")
        self.assertEqual(r.code, 0, r)
        ws = [(w["relation"], w["blocks"]) for w in r.json()["impact"]["windows"]]
        self.assertEqual(ws, [("orders", "writes")])
        h = self.run_sm(*self.base, "history", "--runs", "-v")
        self.assertRegex(h.out, r"blocked writes to table orders for [0-9.]+ ms "
                         r"\(migrations/0001_lock.sql line 2\)")
        self.assertIn("migration migrations/0001_lock.sql: ", h.out)
        self.assertIn("(outside a transaction)", h.out)

    def test_max_blocking_gate(self):
        self.add("0001_m.sql", "ALTER TABLE orders ADD COLUMN r float8 DEFAULT random();")
        self.impact("--max-blocking", "10min")
        r = self.run_sm(*self.base, "safe-migrate", "--dry-run", "--max-blocking", "0ms")
        self.assertEqual(r.code, 4, r)
        self.assertIn("impact gate: migrations/0001_m.sql line 2 ('ALTER TABLE orders ADD COLUMN "
                      "r float8 DEFAULT random()') blocks reads to orders", r.err)
        # the finding carries the lint's safer alternative
        self.add("0001_m.sql", "CREATE INDEX orders_n_idx ON orders (n);")
        r = self.run_sm(*self.base, "safe-migrate", "--dry-run", "--max-blocking", "0ms")
        self.assertEqual(r.code, 4, r)
        self.assertRegex(r.err, r"migrations/0001_m.sql line 2 \('CREATE INDEX orders_n_idx ON "
                         r"orders \(n\)'\) blocks writes to orders for [0-9.]+ ms, over "
                         r"--max-blocking 0 ms; hint: [^\n]*CONCURRENTLY")
        self.add("0001_m.sql", "ALTER TABLE orders ADD COLUMN r float8 DEFAULT random();")
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

    def test_objects_created_and_dropped(self):
        self.write("migrations/0001_rebuild.sql",
                   "-- migrate:up\nCREATE TABLE a (x INT);\nCREATE INDEX a_x ON a (x);\n"
                   "DROP TABLE t;\n")
        r = self.run_sm(*self.base, "safe-migrate", "--dry-run", "--json")
        self.assertEqual(r.code, 0, r)
        m = r.json()["impact"]["migrations"][0]
        st = m["statements"]
        self.assertEqual((st[0]["created"], st[0]["dropped"]), (["table a"], []))
        self.assertEqual((st[1]["created"], st[1]["dropped"]), (["index a_x"], []))
        self.assertEqual((st[2]["created"], st[2]["dropped"]), ([], ["table t"]))
        self.assertEqual((m["created"], m["dropped"]), (["table a", "index a_x"], ["table t"]))
        self.assertIn("created table a, created index a_x, dropped table t",
                      self.run_sm(*self.base, "safe-migrate", "--dry-run").out)

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

    def test_rebuilds_among_many_tables_and_statements(self):
        # tables on either side of the rebuilt ones by name, and statements
        # that change no schema between the steps of each rebuild
        for sql in ("CREATE TABLE a_first (x INT)", "INSERT INTO a_first VALUES (1)",
                    "CREATE TABLE z_last (x INT)", "INSERT INTO z_last VALUES (1), (2)",
                    "CREATE TABLE zz (x INT)"):
            self.sqlite(sql)
        self.write("migrations/0001_rebuild.sql",
                   "-- migrate:up\nCREATE TABLE t_new (id INTEGER PRIMARY KEY, a TEXT, b INT);\n"
                   "INSERT INTO t_new SELECT id, a, b FROM t;\n"
                   "UPDATE a_first SET x = 2;\n"
                   "DROP TABLE t;\nALTER TABLE t_new RENAME TO t;\n"
                   "UPDATE zz SET x = 3;\n"
                   "CREATE TABLE z_new (x INT NOT NULL);\n"
                   "INSERT INTO z_new SELECT x FROM z_last;\n"
                   "DROP TABLE z_last;\nALTER TABLE z_new RENAME TO z_last;\n"
                   "CREATE INDEX a_first_x ON a_first (x);\n")
        r = self.run_sm(*self.base, "safe-migrate", "--dry-run", "--json")
        self.assertEqual(r.code, 0, r)
        imp = r.json()["impact"]
        self.assertEqual([(x["relation"], x["rows"]) for x in imp["rewrites"]],
                         [("t", 5000), ("z_last", 2)])
        st = imp["migrations"][0]["statements"]
        self.assertEqual(st[-1]["created"], ["index a_first_x"])
        self.assertEqual([s["created"] for s in st[5:7]], [[], ["table z_new"]])

    def test_html_report(self):
        page = self.path("impact.html")
        r = self.run_sm(*self.base, "safe-migrate", "--dry-run", "--json", "--report", page)
        self.assertEqual(r.code, 0, r)
        self.assertEqual(r.json()["report"], page)
        root = check_html(self, page, r.json()["impact"])
        lanes = [g.get("data-relation") for g in root.iter(SVG + "g") if g.get("class") == "lane"]
        self.assertEqual(lanes, ["(database)"])
        m = "migrations/0001_rebuild.sql"
        self.assertEqual(html_objects(root), [(m, "created", "table t_new"),
                                              (m, "dropped", "table t"),
                                              (m, "created", "table t"),
                                              (m, "dropped", "table t_new")])
        # an unwritable destination is an error, not a silent skip
        r = self.run_sm(*self.base, "safe-migrate", "--dry-run", "--report",
                        self.path("nodir/impact.html"))
        self.assertEqual(r.code, 1, r)
        self.assertIn("safe-migrate: error: cannot ", r.err)
        self.assertIn("nodir", r.err)

    def test_real_run_recorded_in_runs_log(self):
        self.write("migrations/0002_idx.sql",
                   "-- migrate:up transaction:false\nCREATE INDEX t_b_idx ON t (b);\n")
        r = self.run_sm(*self.base, "safe-migrate", "--json")
        self.assertEqual(r.code, 0, r)
        imp = r.json()["impact"]
        self.assertEqual(imp["rehearsal"], "real-run")
        ws = sorted((os.path.basename(w["migration"]), w["relation"], w["blocks"])
                    for w in imp["windows"])
        self.assertEqual(ws, [("0001_rebuild.sql", "(database)", "writes"),
                              ("0002_idx.sql", "(database)", "writes")])
        self.assertEqual([(x["relation"], x["rows"]) for x in imp["rewrites"]], [("t", 5000)])
        h = self.run_sm(*self.base, "history", "--runs", "--json")
        self.assertEqual(h.json()["runs"][-1]["impact"], imp)
        h = self.run_sm(*self.base, "history", "--runs", "-v")
        self.assertIn("blocked writes to database (database) for ", h.out)
        self.assertIn("rewrote table t (", h.out)
        self.assertIn("migration migrations/0002_idx.sql: ", h.out)
        self.assertIn("(outside a transaction)", h.out)

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
        self.assertTrue(s["locks_observed"])
        self.assertEqual(d["blocks"], "writes")
        ws = [w for w in imp["windows"] if w["migration"].endswith("0002_idx.sql")]
        self.assertEqual(len(ws), 1)
        self.assertEqual(ws[0]["ms"], s["ms"])  # the statement alone
        self.assertGreater(ws[0]["ms"], 0)


if __name__ == "__main__":
    main()
