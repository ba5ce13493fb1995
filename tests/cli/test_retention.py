#!/usr/bin/env python3
"""prune's retention rules (issue 20 §5): --keep N, --keep-within DURATION,
--keep-daily N, and the two guards no rule overrides: the newest snapshot
that passes verification, and the snapshot of an unfinished run (its
journal).  Snapshots are crafted with chosen creation times."""
import datetime
import json
import os

import smtest
from smtest import CliTest, packed_snapshot


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


class RetentionTest(CliTest):
    def setUp(self):
        super().setUp()
        os.makedirs(self.path("backups"), mode=0o700)
        now = datetime.datetime.now(datetime.timezone.utc)
        d0 = now.replace(hour=0, minute=0, second=0, microsecond=0)
        day = datetime.timedelta(days=1)
        hour = datetime.timedelta(hours=1)
        # name -> creation time; A is the newest, B and C share yesterday
        self.times = {
            "A": d0 + (now - d0) / 2,  # today, whatever the time of day
            "B": d0 - day + 10 * hour,
            "C": d0 - day + 2 * hour,
            "D": d0 - 3 * day + 5 * hour,
            "E": d0 - 10 * day,
        }
        for name, t in self.times.items():
            header = {"format_version": 2, "tool": "safe-migrate", "tool_version": "test",
                      "engine": "sqlite", "server_version": "3", "source": "sqlite:///x.db",
                      "revision": None, "created_at": iso(t)}
            packed_snapshot(self.path("backups", name + ".tar.zst"), header,
                            [("data/main.db.0000", b"x" * 100)])

    def left(self):
        return sorted(f[:-8] for f in os.listdir(self.path("backups")) if f.endswith(".tar.zst"))

    def damage(self, name):
        """Changes a byte near the end of a snapshot: its sidecar no longer
        matches, so verify fails; its header still reads."""
        p = self.path("backups", name + ".tar.zst")
        with open(p, "r+b") as f:
            f.seek(os.path.getsize(p) - 5)
            b = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([b[0] ^ 0xFF]))
        return p

    def prune(self, *args):
        return self.ok("-b", "backups", "prune", "--json", *args).json()

    def test_keep_daily(self):
        r = self.prune("--keep-daily", "2")
        # the newest of today and of yesterday
        self.assertEqual(self.left(), ["A", "B"])
        self.assertEqual(len(r["removed"]), 3)
        # their sidecars went with them
        self.assertEqual(sorted(os.listdir(self.path("backups"))),
                         ["A.tar.zst", "A.tar.zst.sha256", "B.tar.zst", "B.tar.zst.sha256"])

    def test_keep_within(self):
        for args in (["--keep-within", "5"], ["--keep-within", "x"], ["--keep-within", "-1d"],
                     ["--keep-daily", "-1"], ["--keep-daily", "a"], []):
            self.code(2, "-b", "backups", "prune", *args)
        self.assertEqual(len(self.left()), 5)
        self.prune("--keep-within", "5d")
        self.assertEqual(self.left(), ["A", "B", "C", "D"])
        self.prune("--keep-within", "2h")
        self.assertEqual(self.left(), ["A"])

    def test_rules_add_up(self):
        r = self.prune("--keep", "1", "--keep-daily", "3", "--keep-within", "1h")
        # --keep 1: A; --keep-daily 3: A, B, D (C shares B's day); E goes
        self.assertEqual(self.left(), ["A", "B", "D"])
        self.assertEqual(r["kept_because"][r["kept"][0]], "--keep-daily")

    def test_newest_verified_is_never_deleted(self):
        # A, the newest, is damaged (a byte changed: its sidecar no longer
        # matches), so B is the newest that verifies
        p = self.damage("A")
        self.code(7, "verify", p)
        r = self.prune("--keep", "0")
        self.assertEqual(self.left(), ["B"])
        self.assertEqual(r["kept_because"][r["kept"][0]], "the newest verified snapshot")

    def test_rules_hold_per_database(self):
        # one directory, two databases: the crafted A-E name none, F and G
        # another database (older than all of them); pruning keeps each
        # database's newest, never another's last snapshot
        day = datetime.timedelta(days=1)
        for name, age in (("F", 20), ("G", 30)):
            header = {"format_version": 2, "tool": "safe-migrate", "tool_version": "test",
                      "engine": "sqlite", "server_version": "3", "source": "sqlite:///y.db",
                      "source_identity": "sqlite:1:2", "revision": None,
                      "created_at": iso(self.times["E"] - age * day)}
            packed_snapshot(self.path("backups", name + ".tar.zst"), header,
                            [("data/main.db.0000", b"y" * 100)])
        r = self.prune("--keep", "1")
        self.assertEqual(self.left(), ["A", "F"])
        self.assertEqual([why for path, why in r["kept_because"].items()
                          if path.endswith("F.tar.zst")], ["--keep"])
        # list-backups says which database each is of
        listed = self.ok("-b", "backups", "list-backups", "--json").json()["snapshots"]
        self.assertEqual({s["name"]: s["database"] for s in listed},
                         {"A.tar.zst": None, "F.tar.zst": "sqlite:1:2"})
        self.assertIn("sqlite:///y.db", self.ok("-b", "backups", "list-backups").out)
        # the newest verified snapshot is kept per database too
        header["created_at"] = iso(self.times["E"] - 40 * day)
        packed_snapshot(self.path("backups", "H.tar.zst"), header,
                        [("data/main.db.0000", b"y" * 100)])
        self.damage("F")
        self.prune("--keep", "0")
        self.assertEqual(self.left(), ["A", "H"])

    def test_unfinished_run_snapshot_is_never_deleted(self):
        journal = {"run_id": "x", "command": "safe-migrate", "phase": "apply",
                   "snapshot": self.path("backups", "E.tar.zst"), "outcome": None}
        self.write("backups/safe-migrate-0123456789abcdef.journal", json.dumps(journal))
        self.prune("--keep", "0")
        self.assertEqual(self.left(), ["A", "E"])
        # once the run finished, E may go
        journal["outcome"] = "applied"
        self.write("backups/safe-migrate-0123456789abcdef.journal", json.dumps(journal))
        self.prune("--keep", "0")
        self.assertEqual(self.left(), ["A"])
        # a journal that cannot be read: nothing is pruned
        self.write("backups/safe-migrate-0123456789abcdef.journal", "{not json")
        r = self.code(1, "-b", "backups", "prune", "--keep", "0")
        self.assertIn("nothing was pruned", r.err)



if __name__ == "__main__":
    smtest.main()
