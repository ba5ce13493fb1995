"""CLI tests of what the program loads when it starts: libpq (and the twenty
libraries it brings) only on its first PostgreSQL call, never for SQLite
(src/cli/libpq_lazy.c).  The dynamic loader says what it loads, and why,
under LD_DEBUG=files."""
import os
import re

from smtest import CliTest, main

LIBPQ = "libpq.so.5"


class StartupTest(CliTest):
    def loads(self, *args, env=None):
        """Runs the binary under LD_DEBUG=files: (result, how libpq was loaded:
        "needed" at start-up, "dynamically" loaded by a call, or None)."""
        e = {"LD_DEBUG": "files"}
        e.update(env or {})
        r = self.run_sm(*args, env=e)
        m = re.search(r"file=" + re.escape(LIBPQ) + r" \[\d+\];\s+(needed|dynamically)",
                      r.err)
        return r, m.group(1) if m else None

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
        self.assertEqual(self.sqlite_dump("copy.db"), self.sqlite_dump())

    def test_libpq_loaded_on_first_call(self):
        r, how = self.loads("--version")
        self.assertEqual(r.code, 0, r)
        self.assertEqual(how, "dynamically", r.err[-2000:])
        # PQlibVersion answered through the loaded library
        self.assertRegex(r.out, r"libpq \d{5,}")

    def test_unloadable_libpq_stops_only_postgresql(self):
        # a file that is not a library, found first (LD_LIBRARY_PATH)
        libdir = self.path("lib")
        os.mkdir(libdir)
        with open(os.path.join(libdir, LIBPQ), "w") as f:
            f.write("not a library\n")
        env = {"LD_LIBRARY_PATH": libdir}
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
