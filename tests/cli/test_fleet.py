#!/usr/bin/env python3
"""examples/fleet/fleet.sh (issue 20 §5): the pipeline over several SQLite
databases at once, its aggregated --json outcomes and exit code, with a
backup directory per database and with one shared by all."""
import json
import os
import subprocess

import smtest
from smtest import BIN, SRC, CliTest

SCRIPT = os.path.join(SRC, "examples", "fleet", "fleet.sh")


class FleetTest(CliTest):
    def setUp(self):
        super().setUp()
        self.chain(2)
        for name in ("a.db", "b.db", "c.db"):
            self.sqlite("CREATE TABLE keep (x INT)", name)
        # c.db already has t2: the pre-flight checks block its run
        self.sqlite("CREATE TABLE t2 (y INT)", "c.db")

    def fleet(self, *args):
        env = dict(self.env, SAFE_MIGRATE=BIN)
        p = subprocess.run([SCRIPT, "-j", "3"] + list(args) +
                           [self.path(n) for n in ("a.db", "b.db", "c.db")],
                           cwd=self.dir, env=env, capture_output=True, text=True, timeout=300)
        return p.returncode, json.loads(p.stdout), p.stderr

    def check(self, code, summary):
        self.assertEqual(code, 4, summary)
        self.assertEqual(summary["exit"], 4)
        self.assertEqual(summary["counts"], {"applied": 2, "blocked": 1})
        by_db = {os.path.basename(d["db"]): d for d in summary["databases"]}
        self.assertEqual(by_db["a.db"]["applied"], ["0001", "0002"])
        self.assertEqual(by_db["c.db"]["outcome"], "blocked")
        self.assertEqual(by_db["c.db"]["exit"], 4)
        self.assertEqual(self.sqlite("SELECT count(*) FROM sqlite_master WHERE name = 't1'",
                                     "c.db"), [(0,)])
        for n in ("a.db", "b.db"):
            self.assertEqual(self.sqlite("SELECT count(*) FROM sqlite_master WHERE name IN "
                                         "('t1', 't2')", n), [(2,)])
            self.assertTrue(os.path.exists(self.path(by_db[n]["snapshot"])))
        return by_db

    def test_backup_dir_per_database(self):
        code, summary, err = self.fleet("-b", "backups")
        self.check(code, summary)
        dirs = os.listdir(self.path("backups"))
        self.assertEqual(len(dirs), 3, dirs)
        # a second pass: nothing to do for a and b, c is still blocked
        code, summary, err = self.fleet("-b", "backups")
        self.assertEqual(summary["counts"], {"nothing_to_do": 2, "blocked": 1})
        # once c is fixed, the fleet is at head: exit 0
        self.sqlite("DROP TABLE t2", "c.db")
        code, summary, err = self.fleet("-b", "backups")
        self.assertEqual((code, summary["counts"]), (0, {"applied": 1, "nothing_to_do": 2}))

    def test_shared_backup_dir(self):
        code, summary, err = self.fleet("-s", "shared")
        by_db = self.check(code, summary)
        snaps = [f for f in os.listdir(self.path("shared")) if f.endswith(".tar.zst")]
        # one snapshot per database that got as far (c was blocked before
        # its snapshot), names unique though taken at the same time
        self.assertEqual(len(snaps), 2, snaps)
        self.assertEqual(len({by_db[n]["snapshot"] for n in ("a.db", "b.db")}), 2)
        for s in snaps:
            self.ok("verify", self.path("shared", s))


if __name__ == "__main__":
    smtest.main()
