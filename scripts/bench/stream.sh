#!/usr/bin/env bash
# Benchmark (not a test): streamed snapshots (issue 20 §1, §4).
#
#   rss    a generated SQLite database of SIZE_MB (default 2048) streamed out
#          (backup --output - | cat > F) and back in (cat F | restore -
#          --sha256-file S --to NEW, then in place), and the same for
#          PostgreSQL when SAFE_MIGRATE_BENCH_PG_URL names an empty scratch
#          database: prints each side's peak RSS (goal <= 64 MiB, whatever the
#          size), wall and CPU time.  stdout and stdin are pipes, as for
#          `aws s3 cp -`; every restore checks the SHA-256 that backup printed;
#          a failing command stops the bench; SQLITE=0 runs PostgreSQL only.  A 20 GB run is SIZE_MB=20480 and
#          needs about 3.5x that in WORKDIR (the source is deleted before the
#          in-place restore, which stages a full copy and copies it in through
#          a rollback journal as big as the target; 73 GB at the peak for
#          20 GiB); run it niced, e.g.
#          nice -n 19 ionice -c3 scripts/bench/stream.sh rss /work/scratch.
#   levels a text-heavy SQLite database (TEXT_ROWS rows, default 2000000, about
#          400 MB): snapshot size, ratio and time for --compression-level -1,
#          1, 3 and 9, against `zstd -1` of the same tar (the README's table).
#
# Usage: scripts/bench/stream.sh [rss|levels|all] [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
WHAT=${1:-all}
WORK=${2:-/tmp/sm-bench-stream}
SIZE_MB=${SIZE_MB:-2048}
TEXT_ROWS=${TEXT_ROWS:-2000000}

for tool in sqlite3 zstd; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "bench: /usr/bin/time is missing (apt-get install time)" >&2; exit 1; }

BUILD=${BENCH_BUILD_DIR:-$ROOT/build-bench}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
cmake --build "$BUILD" -j2 --target safe-migrate >/dev/null
SM=$BUILD/src/cli/safe-migrate
rm -rf "$WORK"
mkdir -p "$WORK"
cd "$WORK"
trap 'cd /; rm -rf "$WORK"' EXIT

# peak RSS (KiB), wall and CPU (user + system) seconds of a command:
# "RSS_KIB WALL CPU"
measure() {
  local in=$1 out=$2
  shift 2
  /usr/bin/time -f "%M %e %U %S" -o time.txt "$@" <"$in" >"$out" 2>/dev/null
  read -r rss wall usr sys <time.txt
  echo "$rss $wall $(echo "$usr + $sys" | bc)"
}

# the same for a stream: the command's stdout goes through a pipe into OUT
# (backup --output - | cat >OUT) or its stdin comes through one from IN
# (cat IN | restore -); its stderr is kept in err.txt; a failure stops the bench
measure_stream() {
  local in=$1 out=$2 rc
  shift 2
  set +e
  # shellcheck disable=SC2002 # the cat is the point: stdin must be a pipe, not a file
  cat "$in" | /usr/bin/time -f "%M %e %U %S" -o time.txt "$@" 2>err.txt | cat >"$out"
  rc=("${PIPESTATUS[@]}")
  set -e
  if [ "${rc[0]}${rc[1]}${rc[2]}" != 000 ]; then
    echo "bench: '$*' failed (pipe status ${rc[*]}):" >&2
    cat err.txt >&2
    exit 1
  fi
  read -r rss wall usr sys <time.txt
  echo "$rss $wall $(echo "$usr + $sys" | bc)"
}

stamp() { echo "  [$(date -u +%H:%M:%S)] $*"; }

report() { # label "rss wall cpu" bytes
  read -r rss secs cpu <<<"$2"
  printf '%-34s peak RSS %6.1f MiB  %7.2f s  (CPU %6.2f s)  %s\n' "$1" \
    "$(echo "$rss / 1024" | bc -l)" "$secs" "${cpu:-0}" "${3:-}"
}

if [ "$WHAT" = rss ] || [ "$WHAT" = all ]; then
  echo "== streaming: peak RSS (SIZE_MB=$SIZE_MB)"
fi
if { [ "$WHAT" = rss ] || [ "$WHAT" = all ]; } && [ "${SQLITE:-1}" = 1 ]; then
  stamp "generating big.db"
  t0=$(date +%s)
  sqlite3 big.db "PRAGMA page_size=8192; PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;
    CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB, s TEXT);
    WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $SIZE_MB * 1000)
    INSERT INTO t (b, s) SELECT randomblob(500), printf('%.400c', char(65 + x % 26)) FROM c;" \
    >/dev/null
  stamp "database: $(stat -c %s big.db) bytes ($(du -h big.db | cut -f1)), $SIZE_MB * 1000 rows," \
    "generated in $(($(date +%s) - t0)) s"
  r=$(measure_stream /dev/null big.tar.zst "$SM" -d sqlite:///big.db -b bk --no-progress backup \
      --output -)
  head -1 err.txt >big.sha256
  report "sqlite backup --output -" "$r" "$(stat -c %s big.tar.zst) bytes"
  stamp "snapshot sha256 $(cut -d' ' -f1 big.sha256)"
  r=$(measure_stream big.tar.zst /dev/null "$SM" -b bk --no-progress restore - \
      --sha256-file big.sha256 --to sqlite:///new.db --yes)
  report "sqlite restore - --to NEW" "$r" "$(stat -c %s new.db) bytes"
  [ "$(sqlite3 new.db 'SELECT count(*) FROM t')" = $((SIZE_MB * 1000)) ] ||
    { echo "bench: new.db does not hold $((SIZE_MB * 1000)) rows" >&2; exit 1; }
  rm -f big.db # the in-place restore stages a whole copy beside new.db
  r=$(measure_stream big.tar.zst /dev/null "$SM" -d sqlite:///new.db -b bk --no-progress \
      restore - --sha256-file big.sha256 --yes --force --no-safety-backup)
  report "sqlite restore - (in place)" "$r"
  stamp "done"
  rm -f big.db new.db big.tar.zst big.sha256
fi
if [ "$WHAT" = rss ] || [ "$WHAT" = all ]; then
  if [ -n "${SAFE_MIGRATE_BENCH_PG_URL:-}" ]; then
    U=$SAFE_MIGRATE_BENCH_PG_URL
    psql "$U" -qX -c "DROP TABLE IF EXISTS bench_t; CREATE TABLE bench_t (id bigserial PRIMARY KEY,
      b bytea, s text); INSERT INTO bench_t (b, s) SELECT decode(md5(i::text) || md5((i+1)::text),
      'hex'), repeat(chr(65 + i % 26), 400) FROM generate_series(1, $SIZE_MB * 2000) i"
    stamp "bench_t: $SIZE_MB * 2000 rows, $(psql "$U" -qXAt -c \
      "SELECT pg_size_pretty(pg_total_relation_size('bench_t'))")"
    r=$(measure_stream /dev/null pg.tar.zst "$SM" -d "$U" -b bk --no-progress backup --output -)
    head -1 err.txt >pg.sha256
    report "postgresql backup --output -" "$r" "$(stat -c %s pg.tar.zst) bytes"
    r=$(measure_stream pg.tar.zst /dev/null "$SM" -d "$U" -b bk --no-progress restore - \
        --sha256-file pg.sha256 --yes --no-safety-backup)
    report "postgresql restore - (in place)" "$r"
    stamp "done"
    psql "$U" -qX -c "DROP TABLE bench_t"
    rm -f pg.tar.zst pg.sha256
  fi
fi

if [ "$WHAT" = levels ] || [ "$WHAT" = all ]; then
  echo "== --compression-level on a text-heavy database ($TEXT_ROWS rows)"
  sqlite3 text.db "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, email TEXT,
      address TEXT, note TEXT, created TEXT);
    WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $TEXT_ROWS)
    INSERT INTO orders (customer, email, address, note, created)
    SELECT 'Customer ' || (x * 7919 % 100003), 'user' || (x * 31 % 50021) || '@example.com',
      (x % 9973) || ' ' || (CASE x % 5 WHEN 0 THEN 'Main Street' WHEN 1 THEN 'High Road'
        WHEN 2 THEN 'Station Avenue' WHEN 3 THEN 'Church Lane' ELSE 'Park Drive' END) ||
        ', Springfield',
      'order of ' || (x % 17 + 1) || ' items, shipped ' || (CASE x % 3 WHEN 0 THEN 'express'
        WHEN 1 THEN 'standard' ELSE 'pickup' END) || ' ' || hex(randomblob(4)),
      strftime('%Y-%m-%d %H:%M:%S', 1700000000 + x * 37, 'unixepoch') FROM c;"
  db_bytes=$(stat -c %s text.db)
  echo "database: $db_bytes bytes (each level runs ${RUNS:-3} times after a warm-up;" \
    "the fastest run is shown)"
  for level in -1 1 3 9; do
    measure /dev/null l.tar.zst "$SM" -d sqlite:///text.db -b bk --no-progress backup \
      --output - --compression-level "$level" >/dev/null
    r=
    for _ in $(seq "${RUNS:-3}"); do
      m=$(measure /dev/null l.tar.zst "$SM" -d sqlite:///text.db -b bk --no-progress backup \
          --output - --compression-level "$level")
      if [ -z "$r" ] ||
         [ "$(echo "$(cut -d' ' -f2 <<<"$m") < $(cut -d' ' -f2 <<<"$r")" | bc)" = 1 ]; then
        r=$m
      fi
    done
    b=$(stat -c %s l.tar.zst)
    report "--compression-level $level" "$r" \
      "$b bytes, ratio $(echo "scale=2; $db_bytes / $b" | bc)"
    [ "$level" = -1 ] && zstd -q -d -c l.tar.zst >l.tar
    rm -f l.tar.zst
  done
  r=$(measure l.tar z.zst zstd -q -1 -T2 -c)
  report "zstd -1 -T2 of the same tar" "$r" \
    "$(stat -c %s z.zst) bytes, ratio $(echo "scale=2; $db_bytes / $(stat -c %s z.zst)" | bc)"
fi
