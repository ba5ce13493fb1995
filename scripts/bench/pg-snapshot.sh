#!/usr/bin/env bash
# Benchmark (not a test): PostgreSQL snapshots against pg_dump / pg_restore.
#
#   scripts/bench/pg-snapshot.sh [SIZE_MB] [RUNS]     (defaults: 500 MB, 3 runs)
#
# Builds a table of SIZE_MB of realistic, poorly compressible rows (random
# text, numerics, jsonb, timestamps; a primary key and a second index) in a
# throwaway cluster (or SAFE_MIGRATE_BENCH_PG_URL, a superuser URL of an
# existing server), then in each run, alternating the tools:
#   our backup                    vs  pg_dump -Fc
#   our backup                    vs  pg_dump -Fc -Z0 | zstd -1 -T2
#   our restore --to an empty db --jobs 2  vs  pg_restore -j2 into an empty db
# and prints the ratios (goals: <= 0.35, <= 1.0, <= 1.0) and our peak RSS
# from /usr/bin/time -v (goal: <= 64 MiB).  Builds and uses a Release binary
# in build-bench/ (BENCH_BUILD_DIR to move it; SAFE_MIGRATE_BIN to use another
# binary).  A failing command stops the benchmark.
# It takes several minutes at 500 MB: iterate with a smaller SIZE_MB.
set -euo pipefail
size_mb=${1:-500}
runs=${2:-3}
src=$(cd "$(dirname "$0")/../.." && pwd)
if [ -n "${SAFE_MIGRATE_BIN:-}" ]; then
  bin=$SAFE_MIGRATE_BIN
else
  build=${BENCH_BUILD_DIR:-$src/build-bench}
  cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
  cmake --build "$build" -j"$(nproc)" >/dev/null
  bin=$build/src/cli/safe-migrate
fi
work=$(mktemp -d /tmp/sm-bench.XXXXXX)
cluster=""
cleanup() {
  if [ -n "$cluster" ]; then "$src/scripts/pg-cluster.sh" stop "$cluster"; fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ -n "${SAFE_MIGRATE_BENCH_PG_URL:-}" ]; then
  admin=$SAFE_MIGRATE_BENCH_PG_URL
else
  cluster=/tmp/pg-sm-bench
  "$src/scripts/pg-cluster.sh" stop "$cluster"
  admin=$("$src/scripts/pg-cluster.sh" start "$cluster" "${SAFE_MIGRATE_BENCH_PG_PORT:-25499}")
fi
base=${admin%/*}
psql_() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
newdb() { psql_ "$admin" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1"; }

echo "== building ${size_mb} MB of data"
newdb smbench
rows=$((size_mb * 1024 * 1024 / 560))
psql_ "$base/smbench" <<SQL
CREATE TABLE items (
    id bigint PRIMARY KEY,
    title text NOT NULL,
    body text,
    price numeric(12, 2),
    qty integer,
    score double precision,
    created_at timestamptz NOT NULL,
    attrs jsonb
);
INSERT INTO items
SELECT g,
       encode(decode(md5(random()::text), 'hex'), 'base64'),
       encode(decode(md5(random()::text) || md5(random()::text) || md5(random()::text)
              || md5(random()::text) || md5(random()::text) || md5(random()::text), 'hex'), 'base64')
         || ' ' || encode(decode(md5(random()::text) || md5(random()::text) || md5(random()::text)
              || md5(random()::text) || md5(random()::text) || md5(random()::text), 'hex'), 'base64'),
       round((random() * 100000)::numeric, 2),
       (random() * 1000)::int,
       random() * 1e6,
       now() - random() * interval '3 years',
       jsonb_build_object('sku', md5(random()::text), 'tags',
                          jsonb_build_array(md5(random()::text), (random() * 1e6)::int),
                          'ok', random() < 0.5)
FROM generate_series(1, $rows) g;
CREATE INDEX items_created_idx ON items (created_at);
VACUUM ANALYZE items;
SQL
psql_ -At "$base/smbench" -c "SELECT 'table size: ' || pg_size_pretty(pg_table_size('items')) || ', with indexes: ' || pg_size_pretty(pg_total_relation_size('items'))"

t() { # seconds of wall time of a command, which must succeed
  local s e
  s=$(date +%s.%N)
  "$@" || { echo "bench: '$*' failed" >&2; return 1; }
  e=$(date +%s.%N)
  echo "$e - $s" | bc
}
ours_backup() {
  rm -f "$work"/b/*
  /usr/bin/time -v -o "$work/time.txt" "$bin" -q -d "$base/smbench" -b "$work/b" backup --name bench >/dev/null
}
dump_fc() { pg_dump -Fc -f "$work/dump.fc" "$base/smbench"; }
dump_zstd() { pg_dump -Fc -Z0 "$base/smbench" | zstd -q -1 -T2 -o "$work/dump.fc0.zst" -f; }
ours_restore() {
  newdb smbench_r1
  /usr/bin/time -v -o "$work/time_r.txt" "$bin" -q -d "$base/smbench" -b "$work/b" --yes restore \
    "$work/b/bench.tar.zst" --to "$base/smbench_r1" --jobs 2 --no-safety-backup >/dev/null
}
pg_restore_j2() { newdb smbench_r2; pg_restore -j2 -d "$base/smbench_r2" "$work/dump.fc"; }
rss() { awk -F': ' '/Maximum resident/ {printf "%.1f", $2 / 1024}' "$1"; }

mkdir -p "$work/b"
for i in $(seq 1 "$runs"); do
  if [ $((i % 2)) -eq 1 ]; then
    ob=$(t ours_backup); fc=$(t dump_fc); zs=$(t dump_zstd)
    orr=$(t ours_restore); pr=$(t pg_restore_j2)
  else
    fc=$(t dump_fc); zs=$(t dump_zstd); ob=$(t ours_backup)
    pr=$(t pg_restore_j2); orr=$(t ours_restore)
  fi
  printf 'run %d: backup %.2fs  pg_dump -Fc %.2fs  pg_dump -Z0|zstd %.2fs  restore --jobs 2 %.2fs  pg_restore -j2 %.2fs\n' \
    "$i" "$ob" "$fc" "$zs" "$orr" "$pr"
  printf '       backup/pg_dump -Fc = %.3f (goal <= 0.35)  backup/(pg_dump -Z0 | zstd -1 -T2) = %.3f (goal <= 1.0)\n' \
    "$(echo "$ob / $fc" | bc -l)" "$(echo "$ob / $zs" | bc -l)"
  printf '       restore/pg_restore -j2 = %.3f (goal <= 1.0)  peak RSS backup %s MiB, restore %s MiB (goal <= 64)\n' \
    "$(echo "$orr / $pr" | bc -l)" "$(rss "$work/time.txt")" "$(rss "$work/time_r.txt")"
done
ls -l "$work/b/bench.tar.zst" "$work/dump.fc" "$work/dump.fc0.zst" | awk '{print $5, $9}'
