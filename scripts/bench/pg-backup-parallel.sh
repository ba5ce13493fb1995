#!/usr/bin/env bash
# Benchmark (not a test): backup --jobs N against pg_dump's parallel and
# single-stream dumps, compressed to one zstd file each.
#
#   scripts/bench/pg-backup-parallel.sh [SCALE] [RUNS] [JOBS] [SHAPES]
#       SCALE   size factor, 1 = about 200 MB per data shape (default 1)
#       RUNS    alternating runs per shape, medians are printed (default 5)
#       JOBS    N for --jobs and pg_dump -j (default 2)
#       SHAPES  any of "onebig mixed" (default both)
#
# Shapes, built in a throwaway cluster (or SAFE_MIGRATE_BENCH_PG_URL):
#   onebig  one table of wide, poorly compressible rows (random base64 text,
#           numerics, timestamps) and a small one: pg_dump -j has one table
#           to give one worker, our --jobs splits it into ctid ranges;
#   mixed   eight tables of halving sizes (50%, 25%, ... of the data), the
#           shape of an application's schema.
# Per shape and run, in an order that alternates from run to run:
#   ours -j N   safe-migrate backup --jobs N
#   ours        safe-migrate backup (one connection)
#   Fd -j N     pg_dump -Fd -j N -Z0, then tar of the directory | zstd -1 -T2
#               into one file (the "plus zstd of its output"), timed together
#   Fc | zstd   pg_dump -Fc -Z0 | zstd -1 -T2
# and prints every run, the medians of the times and of the ratios, the
# output sizes and our peak RSS (/usr/bin/time -v).  Database creation is
# not timed.  Builds and uses a Release binary in build-bench/ (see
# pg-bench-lib.sh).  A failing command stops the benchmark.
set -euo pipefail
scale=${1:-1}
runs=${2:-5}
jobs=${3:-2}
shapes=${4:-onebig mixed}
. "$(dirname "$0")/pg-bench-lib.sh"
bench_pg_setup /tmp/pg-sm-bench-par 25498

# N rows of about 800 bytes of random (poorly compressible) text into TABLE
fill() {
  local hex="md5(random()::text)" k
  for k in $(seq 1 23); do hex="$hex || md5(random()::text)"; done
  psql_ "$base/smbench" <<SQL
CREATE TABLE $1 (
    id bigint PRIMARY KEY,
    body text NOT NULL,
    amount numeric(12, 2),
    created_at timestamptz NOT NULL
);
INSERT INTO $1
SELECT g, encode(decode($hex, 'hex'), 'base64'),
       round((random() * 100000)::numeric, 2), now() - random() * interval '2 years'
FROM generate_series(1, $2) g;
SQL
}

build_onebig() {
  fill events $((scale * 200 * 1024 * 1024 / 800))
  fill settings 1000
}

build_mixed() {
  local rows=$((scale * 200 * 1024 * 1024 / 800)) i
  for i in 1 2 3 4 5 6 7 8; do
    rows=$((rows / 2))
    fill "t$i" "$rows"
  done
}

ours_jobs() {
  /usr/bin/time -v -o "$work/time_j.txt" "$bin" -q -d "$base/smbench" -b "$work/b" backup \
    --name par --jobs "$jobs"
}
ours_one() { "$bin" -q -d "$base/smbench" -b "$work/b" backup --name one; }
dump_fd() {
  rm -rf "$work/fd"
  pg_dump -Fd -j "$jobs" -Z0 -f "$work/fd" "$base/smbench"
  tar -cf - -C "$work/fd" . | zstd -q -1 -T2 -o "$work/fd.tar.zst" -f
}
dump_fc() { pg_dump -Fc -Z0 "$base/smbench" | zstd -q -1 -T2 -o "$work/fc.zst" -f; }
clean() { rm -rf "$work/b" "$work/fd" "$work/fd.tar.zst" "$work/fc.zst"; mkdir -p "$work/b"; }

for shape in $shapes; do
  echo "== shape $shape (scale $scale, $runs runs, N = $jobs)"
  newdb smbench >/dev/null
  "build_$shape"
  psql_ "$base/smbench" -c "VACUUM ANALYZE"
  psql_ -At "$base/smbench" -c "SELECT 'database size: ' || pg_size_pretty(pg_database_size(current_database())) || ', ' || count(*) || ' tables' FROM pg_tables WHERE schemaname = 'public'"
  J=() O=() D=() C=() rd=() rc=() ro=() rs=()
  for i in $(seq 1 "$runs"); do
    clean
    if [ $((i % 2)) -eq 1 ]; then
      j=$(t ours_jobs); d=$(t dump_fd); o=$(t ours_one); c=$(t dump_fc)
    else
      c=$(t dump_fc); o=$(t ours_one); d=$(t dump_fd); j=$(t ours_jobs)
    fi
    J+=("$j"); O+=("$o"); D+=("$d"); C+=("$c")
    rd+=("$(ratio "$j" "$d")"); rc+=("$(ratio "$j" "$c")"); ro+=("$(ratio "$j" "$o")")
    rs+=("$(rss "$work/time_j.txt")")
    printf '  run %d: ours -j%d %.2f s, ours %.2f s, Fd -j%d+zstd %.2f s, Fc|zstd %.2f s; -j%d / Fd %.3f, / Fc %.3f, / ours %.3f; RSS %s MiB\n' \
      "$i" "$jobs" "$j" "$o" "$jobs" "$d" "$c" "$jobs" "${rd[-1]}" "${rc[-1]}" "${ro[-1]}" "${rs[-1]}"
  done
  echo "  sizes:"
  ls -l "$work/b/par.tar.zst" "$work/b/one.tar.zst" "$work/fd.tar.zst" "$work/fc.zst" |
    awk '{printf "    %12d %s\n", $5, $9}'
  echo "  median ($shape):"
  printf '    ours --jobs %d / (pg_dump -Fd -j%d -Z0 + zstd -1 -T2)  %.3f  (%s s / %s s)\n' \
    "$jobs" "$jobs" "$(median "${rd[@]}")" "$(median "${J[@]}")" "$(median "${D[@]}")"
  printf '    ours --jobs %d / (pg_dump -Fc -Z0 | zstd -1 -T2)      %.3f  (%s s / %s s)\n' \
    "$jobs" "$(median "${rc[@]}")" "$(median "${J[@]}")" "$(median "${C[@]}")"
  printf '    ours --jobs %d / ours (one connection)               %.3f  (%s s / %s s)\n' \
    "$jobs" "$(median "${ro[@]}")" "$(median "${J[@]}")" "$(median "${O[@]}")"
  printf '    peak RSS of ours --jobs %d: max %s MiB\n' "$jobs" "$(printf '%s\n' "${rs[@]}" | sort -g | tail -1)"
done
