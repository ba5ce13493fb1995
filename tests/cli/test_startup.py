"""CLI tests of what the program loads when it starts: libpq (and the twenty
libraries it brings) only on its first PostgreSQL call, never for SQLite
(src/cli/libpq_lazy.c); libpg_query only when PostgreSQL SQL is parsed
(src/cli/pg_query_lazy.c).  The dynamic loader says what it loads, and why,
under LD_DEBUG=files."""
import os
import re

from smtest import CliTest, main

LIBPQ = "libpq.so.5"
PG_QUERY = "libpg_query.so"  # its soname goes on with its version


class StartupTest(CliTest):
    def loads(self, *args, env=None, lib=LIBPQ):
        """Runs the binary under LD_DEBUG=files: (result, how lib was loaded:
        "needed" at start-up, "dynamically" loaded by a call, or None)."""
        e = {"LD_DEBUG": "files"}
        e.update(env or {})
        r = self.run_sm(*args, env=e)
        m = re.search(r"file=" + re.escape(lib) + r"[.\d]* \[\d+\];\s+(needed|dynamically)",
                      r.err)
        return r, m.group(1) if m else None

    def unloadable(self, soname):
        """The environment in which soname is a file that is not a library,
        found first (LD_LIBRARY_PATH)."""
        libdir = self.path("lib")
        os.mkdir(libdir)
        with open(os.path.join(libdir, soname), "w") as f:
            f.write("not a library\n")
        return {"LD_LIBRARY_PATH": libdir}

    def sqlite_db(self):
        self.sqlite("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        self.sqlite("INSERT INTO t (v) VALUES ('a'), ('b')")
        return self.sqlite_url()

    def test_libpq_not_loaded_at_start(self):
        url = self.sqlite_db()
        for args in (("-h",),
                     ("-q", "-d", url, "-b", "bk", "backup", "--name", "s"),
                     ("-q", "-b", "bk", "restore", "bk/s.tar.zst", "--to",
                      "sqlite:///" + self.path("copy.db"), "--yes", "--no-safety-backup")):
            r, how = self.loads(*args)
            self.assertEqual(r.code, 0, r)
            self.assertIsNone(how, "%s loaded libpq (%s)" % (" ".join(args), how))
            r, how = self.loads(*args, lib=PG_QUERY)
            self.assertIsNone(how, "%s loaded libpg_query (%s)" % (" ".join(args), how))
        self.assertEqual(self.sqlite_dump("copy.db"), self.sqlite_dump())

    def test_pg_query_loaded_to_parse_postgresql(self):
        # the lint of a PostgreSQL migration parses it with libpg_query,
        # loaded then (with no server to reach, the lint still parses)
        self.write("m/1.sql", "-- migrate:up\nALTER TABLE t ADD COLUMN b int NOT NULL;\n")
        r, how = self.loads("-d", "postgresql://nobody@127.0.0.1:1/none", "lint",
                            self.path("m", "1.sql"), lib=PG_QUERY)
        self.assertEqual(r.code, 4, r)
        self.assertEqual(how, "dynamically", r.err[-2000:])
        self.assertIn("adding-not-null-column-without-default", r.out)
        # unloadable (a file that is not a library, found first): the SQLite
        # lint and backup go on, the PostgreSQL lint stops with status 127
        soname = re.search(r"file=(" + re.escape(PG_QUERY) + r"[.\d]*) \[", r.err).group(1)
        env = self.unloadable(soname)
        url = self.sqlite_db()
        self.write("s/1.sql", "-- migrate:up\nALTER TABLE t ADD COLUMN b TEXT;\n")
        r = self.run_sm("-d", url, "lint", self.path("s", "1.sql"), env=env)
        self.assertEqual(r.code, 0, r)
        r = self.run_sm("-q", "-d", url, "-b", "bk", "backup", "--name", "s", env=env)
        self.assertEqual(r.code, 0, r)
        r = self.run_sm("-d", "postgresql://nobody@127.0.0.1:1/none", "lint",
                        self.path("m", "1.sql"), env=env)
        self.assertEqual(r.code, 127, r)
        self.assertIn("safe-migrate: error: cannot load '%s': " % soname, r.err)

    def test_libpq_loaded_on_first_call(self):
        r, how = self.loads("--version")
        self.assertEqual(r.code, 0, r)
        self.assertEqual(how, "dynamically", r.err[-2000:])
        # PQlibVersion answered through the loaded library
        self.assertRegex(r.out, r"libpq \d{5,}")

    def test_unloadable_libpq_stops_only_postgresql(self):
        env = self.unloadable(LIBPQ)
        url = self.sqlite_db()
        r = self.run_sm("-q", "-d", url, "-b", "bk", "backup", "--name", "s", env=env)
        self.assertEqual(r.code, 0, r)
        self.assertTrue(os.path.exists(self.path("bk", "s.tar.zst")))
        r = self.run_sm("--version", env=env)
        self.assertEqual(r.code, 127, r)
        self.assertIn("safe-migrate: error: cannot load '%s': " % LIBPQ, r.err)
        r = self.run_sm("-q", "-d", "postgresql://nobody@127.0.0.1:1/none", "schema", env=env)
        self.assertEqual(r.code, 127, r)
        self.assertIn("safe-migrate: error: cannot load '%s': " % LIBPQ, r.err)


if __name__ == "__main__":
    main()
