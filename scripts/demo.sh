#!/usr/bin/env bash
# The demo: installs what is missing, builds, and runs safe-migrate's main job
# on the SQLite example project (examples/sqlite-shop) in a scratch copy:
#   1. init and migrate the shop, load seed data;
#   2. pre-flight safety checks and lint;
#   3. safe-migrate: snapshot, verify, apply, validate -- three new migrations,
#      the third of which is broken, so the snapshot is restored (exit 5);
#   4. prove the database is exactly as before, and show the snapshot.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

scripts/install-deps.sh
cmake -S . -B build-demo -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF >/dev/null
cmake --build build-demo -j"$(nproc)" >/dev/null
SM="$ROOT/build-demo/src/cli/safe-migrate"

WORK=$(mktemp -d /tmp/safe-migrate-demo.XXXXXX)
cp -r examples/sqlite-shop/. "$WORK/"
cd "$WORK"
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

step "1. A fresh shop database: init, migrate to head, load seed data"
mkdir -p data
show "$SM" init --migrate
sqlite3 data/shop.db < seed.sql
show "$SM" history

step "2. Three new migrations arrive; the third is broken"
cp broken/*.sql migrations/
show "$SM" current
show "$SM" lint || true
show "$SM" safety-check

step "3. safe-migrate: checks, snapshot, verify, apply, validate -- and restore on failure"
sqlite3 data/shop.db .dump > before.sql
set +e
"$SM" safe-migrate
code=$?
set -e
echo "safe-migrate exited with $code (5 = the migration failed and the database was restored)"

step "4. The database is exactly as it was before the run"
sqlite3 data/shop.db .dump > after.sql
if cmp -s before.sql after.sql; then
  echo "identical: sqlite3 .dump before and after the failed run match"
else
  echo "DIFFERENT: the restore did not bring the database back" >&2
  diff before.sql after.sql | head -20 >&2
  exit 1
fi
show "$SM" current
show "$SM" list-backups
snap=$(ls data/backups/*.tar.zst | head -1)
show "$SM" verify "$snap"
(cd data/backups && show sha256sum -c "$(basename "$snap").sha256")
show tar --zstd -tvf "$snap"
show "$SM" history --runs

step "5. Fix the broken migration and run again"
sed -i 's#price_cents - 2500#price_cents * 9 / 10#' migrations/20260203_090000_backfill_order_totals.sql
show "$SM" safe-migrate
show sqlite3 -header data/shop.db "SELECT id, quantity, total_cents FROM orders"
show "$SM" validate
echo
echo "demo finished in $WORK"
[ "$code" -eq 5 ]
