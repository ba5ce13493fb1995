# Sourced by the PostgreSQL benchmarks: builds (or takes) the binary to time
# and gives them a server.  Sets src, bin, work, cluster, admin and base, and
# stops the cluster and removes work on exit.  Also the helpers they share:
# psql_, newdb NAME, t COMMAND... (wall seconds), rss TIME_V_FILE (MiB),
# median N..., ratio A B.
#   bench_pg_setup CLUSTER_DIR DEFAULT_PORT
# Builds a Release binary in build-bench/ (BENCH_BUILD_DIR to move it;
# SAFE_MIGRATE_BIN to use another binary).  SAFE_MIGRATE_BENCH_PG_URL uses an
# existing server instead of a throwaway cluster on SAFE_MIGRATE_BENCH_PG_PORT.
#
# The throwaway cluster's files go to a tmpfs, /dev/shm/ + CLUSTER_DIR's last
# component, when /dev/shm is one (SAFE_MIGRATE_BENCH_PG_DIR names another
# directory).  On ext4, a restore's thousands of new files right after a
# DROP DATABASE (or an in-place restore's dropped tables) of as many cost
# the next restore up to 0.5-1 s of system time in the file system's inode
# allocator (perf: find_inode_bit, recently_deleted: ext4 passes over inodes
# freed in the last minute), whichever tool runs it: the many-tables shape's
# --jobs 2 ratios split into about 1.1 with ours first and 0.6 with the peer
# first.  Both tools make the same files; on tmpfs neither pays for the other.
# The snapshot and dump files stay on disk, in a mktemp -d under /tmp.
bench_pg_setup() {
  src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  if [ -n "${SAFE_MIGRATE_BIN:-}" ]; then
    bin=$SAFE_MIGRATE_BIN
  else
    local build=${BENCH_BUILD_DIR:-$src/build-bench}
    cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
    cmake --build "$build" -j"$(nproc)" >/dev/null
    bin=$build/src/cli/safe-migrate
  fi
  work=$(mktemp -d /tmp/sm-bench.XXXXXX)
  cluster=""
  trap bench_pg_cleanup EXIT
  if [ -n "${SAFE_MIGRATE_BENCH_PG_URL:-}" ]; then
    admin=$SAFE_MIGRATE_BENCH_PG_URL
  else
    cluster=${SAFE_MIGRATE_BENCH_PG_DIR:-$1}
    if [ -z "${SAFE_MIGRATE_BENCH_PG_DIR:-}" ] && [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] &&
      [ -w /dev/shm ]; then
      cluster=/dev/shm/$(basename "$1")
    fi
    "$src/scripts/pg-cluster.sh" stop "$cluster"
    admin=$("$src/scripts/pg-cluster.sh" start "$cluster" "${SAFE_MIGRATE_BENCH_PG_PORT:-$2}")
  fi
  base=${admin%/*}
}

bench_pg_cleanup() {
  if [ -n "$cluster" ]; then "$src/scripts/pg-cluster.sh" stop "$cluster"; fi
  rm -rf "$work"
}

psql_() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 "$@"; }
newdb() { psql_ "$admin" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1"; }

t() { # seconds of wall time of a command, which must succeed
  local s e
  s=$(date +%s.%N)
  "$@" >/dev/null || { echo "bench: '$*' failed" >&2; return 1; }
  e=$(date +%s.%N)
  echo "$e - $s" | bc
}
rss() { awk -F': ' '/Maximum resident/ {printf "%.1f", $2 / 1024}' "$1"; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {
  if (NR % 2) printf "%.3f", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { echo "$1 / $2" | bc -l; }
