"""CLI tests of the example projects in examples/: the SQLite shop of the demo
(its broken migration is restored), and the PostgreSQL project (whose
transaction:false CREATE INDEX CONCURRENTLY migration applies)."""
import os
import shutil
import subprocess

from smtest import SRC, CliTest, main


class ShopExample(CliTest):
    def test_broken_migration_is_restored_then_fixed(self):
        proj = self.path("shop")
        shutil.copytree(os.path.join(SRC, "examples", "sqlite-shop"), proj)
        os.makedirs(os.path.join(proj, "data"))
        r = self.run_sm("init", "--migrate", cwd=proj)
        self.assertEqual(r.code, 0, r)
        db = os.path.join(proj, "data", "shop.db")
        with open(os.path.join(proj, "seed.sql")) as f:
            subprocess.run(["sqlite3", db], stdin=f, check=True)
        for name in os.listdir(os.path.join(proj, "broken")):
            shutil.copy(os.path.join(proj, "broken", name), os.path.join(proj, "migrations"))
        dump = lambda: subprocess.run(["sqlite3", db, ".dump"], capture_output=True,
                                      text=True, check=True).stdout
        before = dump()
        r = self.run_sm("safe-migrate", "--json", cwd=proj)
        self.assertEqual(r.code, 5, r)
        self.assertEqual(r.json()["failed_version"], "20260203_090000")
        self.assertIn("CHECK constraint failed", r.json()["error"])
        self.assertEqual(dump(), before)
        path = os.path.join(proj, "migrations", "20260203_090000_backfill_order_totals.sql")
        with open(path) as f:
            text = f.read().replace("price_cents - 2500", "price_cents * 9 / 10")
        with open(path, "w") as f:
            f.write(text)
        r = self.run_sm("safe-migrate", "--json", cwd=proj)
        self.assertEqual(r.code, 0, r)
        self.assertEqual(len(r.json()["applied"]), 3)


class PostgresExample(CliTest):
    def test_applies_with_concurrent_index(self):
        url = self.pg_new_db()
        mig = os.path.join(SRC, "examples", "postgres-project", "migrations")
        base = ["-d", url, "-m", mig, "-b", self.path("backups")]
        r = self.run_sm(*base, "safety-check")
        self.assertEqual(r.code, 0, r)
        r = self.run_sm(*base, "safe-migrate", "--dry-run")
        self.assertEqual(r.code, 3, r)  # 0003 is transaction:false: a partial rehearsal
        self.assertIn("--rehearse-url", r.err)
        r = self.run_sm(*base, "safe-migrate", "--json")
        self.assertEqual(r.code, 0, r)
        self.assertEqual(r.json()["applied"], ["0001", "0002", "0003", "0004"])
        self.assertEqual(self.psql(url, "SELECT indisvalid FROM pg_index WHERE indexrelid = "
                                        "'orders_placed_at_idx'::regclass"), "t")
        r = self.run_sm(*base, "roundtrip", "--url", self.pg_new_db())
        self.assertEqual(r.code, 0, r)


if __name__ == "__main__":
    main()
