"""PostgreSQL snapshot fidelity (issue 16): schemas that pg_dump reproduces
must come back identical from a snapshot too.

Each case group is one database loaded from a fixture.  The oracle,
pg_dump -Fc | pg_restore, must reproduce it (else the case itself is wrong);
then the snapshot is restored --to a fresh database, with --jobs 2, and in
place after damage, and each result is compared with the source: pg_dump -s
(owners and grants included) and an order-independent hash of every table's
rows and every sequence position.
"""
import os
import subprocess

from smtest import CliTest, FIXTURES, PG_URL, main

ZOO = os.path.join(FIXTURES, "pg_zoo_fidelity.sql")
OWNER = "sm_fid_owner"


class PgFidelityTest(CliTest):
    def setUp(self):
        super().setUp()
        self.require_pg()
        self.psql_admin("DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '%s') "
                        "THEN CREATE ROLE %s LOGIN; END IF; END$$" % (OWNER, OWNER))

    def load(self, url, path):
        subprocess.run(["psql", url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", path],
                       capture_output=True, text=True, check=True)

    def schema(self, url):
        """pg_dump -s with owners and grants: what must be the same."""
        r = subprocess.run(["pg_dump", "--schema-only", url], capture_output=True, text=True,
                           check=True)
        return "\n".join(l for l in r.stdout.splitlines()
                         if l.strip() and not l.startswith("--") and not l.startswith("\\"))

    def state(self, url):
        return self.schema(url), self.pg_state(url)[1]

    def assertSameState(self, expected, actual, what):
        self.assertEqual(expected[0], actual[0], "%s: schema (pg_dump -s) differs" % what)
        self.assertEqual(expected[1], actual[1], "%s: rows or sequence positions differ" % what)

    def oracle(self, url, before):
        """pg_dump | pg_restore reproduces the database: the case is sound."""
        other = self.pg_new_db()
        dump = subprocess.run(["pg_dump", "-Fc", url], capture_output=True, check=True).stdout
        subprocess.run(["pg_restore", "--exit-on-error", "-d", other], input=dump,
                       capture_output=True, check=True)
        self.assertSameState(before, self.state(other), "pg_dump/pg_restore (oracle)")

    def backup(self, url, name="snap"):
        return self.ok("-d", url, "-b", self.path("backups"), "--json", "backup",
                       "--name", name).json()["path"]

    def round_trips(self, url, damage):
        """Backup; restore --to, --to --jobs 2, in place after damage; each
        compared with the source."""
        before = self.state(url)
        self.oracle(url, before)
        snap = self.backup(url)
        self.assertSameState(before, self.state(url), "taking the snapshot")
        other = self.pg_new_db()
        self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap, "--to", other,
                "--no-safety-backup")
        self.assertSameState(before, self.state(other), "restore --to")
        other = self.pg_new_db()
        self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap, "--to", other,
                "--jobs", "2", "--no-safety-backup")
        self.assertSameState(before, self.state(other), "restore --to --jobs 2")
        self.psql(url, damage)
        self.assertNotEqual(before, self.state(url))
        self.ok("-d", url, "-b", self.path("backups"), "--yes", "restore", snap,
                "--no-safety-backup")
        self.assertSameState(before, self.state(url), "restore in place")
        return snap

    def zoo_db(self):
        url = self.pg_new_db()
        self.load(url, ZOO)
        return url

    def test_zoo_round_trips(self):
        url = self.zoo_db()
        self.round_trips(url, """
            DROP VIEW fid.customer_totals CASCADE;
            DROP TABLE fid.nocols;
            INSERT INTO fid.only_generated DEFAULT VALUES;
            DROP TYPE fid.int42 CASCADE;
            DELETE FROM fid.measures;
            INSERT INTO fid.owned_serial (v) VALUES ('after');
        """)
        # the restored copy works: the serial and the key-dependent objects
        self.psql(url, "INSERT INTO fid.owned_serial (v) VALUES ('c')")
        self.assertEqual(self.psql(url, "SELECT max(id) FROM fid.owned_serial"), "3")
        self.assertEqual(self.psql(url, "SELECT count(*) FROM fid.customer_names()"), "3")
        self.assertEqual(self.psql(url, "SELECT count(*) FROM fid.nocols"), "3")


if __name__ == "__main__":
    main()
