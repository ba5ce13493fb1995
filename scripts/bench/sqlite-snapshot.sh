#!/usr/bin/env bash
# Benchmark (not a test): safe-migrate's SQLite backup and restore against
# what an operator would do by hand, on three data shapes.
#
#   backup:   safe-migrate backup             vs  sqlite3 DB ".backup F" && zstd -1 -T2 F
#   restore --to a new file:
#             safe-migrate restore --to NEW   vs  zstd -d F.zst -o NEW && sync NEW (fsync)
#   in-place restore into an existing database:
#             safe-migrate restore (in place) vs  zstd -d F.zst -o TMP && sqlite3 LIVE ".restore TMP"
#             (the peer's copy-in-place: decompress, then SQLite's backup API into the
#             live file, as our restore does; no checksum, no integrity check)
#
# Shapes (SHAPES, default "blobs narrow tables"):
#   blobs   random blobs and text in wide rows (BLOBS_MB, default 256)
#   narrow  an application's tables: CUSTOMERS customers (default 300000) with a
#           UNIQUE email, twice as many orders with an index on customer_id
#           (a foreign key), short text columns
#   tables  many small tables: TABLES tables (default 2000) of 40 rows, each with an index
#
# Each side runs RUNS times (default 5), alternating ours and the peer's; the script
# prints every run, the medians, their ratio (wall clock; and CPU time, user + system, which
# a busy shared machine disturbs less) and our peak RSS (wait4's, of the process tree).
# Goals (issue 17): backup <= 0.6x, restore --to and in-place restore <= 1.5x,
# peak RSS <= 64 MiB.
#
# pipeline: `safe-migrate` of a 1 ms migration (CREATE TABLE) on a copy of the shape's
# database, against our backup of it alone ("the snapshot alone"; the copy is made
# outside the timing): the pipeline's overhead, goal <= 2.5x.
#
# scripts/bench/sqlite-snapshot.sh --big [WORKDIR] instead builds a database of more
# than 1 GiB (so that it spans SQLite's lock-byte page at offset 0x40000000), backs it
# up, restores it with --to and in place, and checks that `sqlite3 .sha3sum` and
# PRAGMA integrity_check agree.  Needs about 4 GiB in WORKDIR.
#
# Usage: scripts/bench/sqlite-snapshot.sh [--big] [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
BIG=0
if [ "${1:-}" = "--big" ]; then
  BIG=1
  shift
fi
WORK=${1:-/tmp/sm-bench-sqlite}
RUNS=${RUNS:-5}
SHAPES=${SHAPES:-"blobs narrow tables"}
BLOBS_MB=${BLOBS_MB:-256}
CUSTOMERS=${CUSTOMERS:-300000}
TABLES=${TABLES:-2000}

for tool in sqlite3 zstd python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required" >&2; exit 1; }
done

BUILD=${BENCH_BUILD_DIR:-$ROOT/build-bench}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" >/dev/null
SM="$BUILD/src/cli/safe-migrate"
mkdir -p "$WORK"

# rows N: a recursive CTE of N rows (x = 1..N), for INSERT ... SELECT
rows() {
  echo "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $1)"
}

# build SHAPE DB: creates the shape's database unless it is already there
build() {
  local shape=$1 db=$2
  [ -f "$db" ] && return 0
  echo "bench: building the '$shape' database in $db" >&2
  case $shape in
  blobs)
    # 2000 rows of about 1 KB per MiB, plus one 1 MiB blob per 2 MB
    local n=$((BLOBS_MB * 1000))
    sqlite3 "$db.tmp" "PRAGMA journal_mode=OFF;
      CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB, t TEXT);
      CREATE TABLE big (id INTEGER PRIMARY KEY, b BLOB);
      $(rows "$n") INSERT INTO blobs (b, t) SELECT randomblob(700), hex(randomblob(75)) FROM c;
      $(rows $((BLOBS_MB / 4))) INSERT INTO big (b) SELECT randomblob(1048576) FROM c;" >/dev/null
    ;;
  narrow)
    local n=$CUSTOMERS
    sqlite3 "$db.tmp" "PRAGMA journal_mode=OFF;
      CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL, city TEXT, created_at TEXT NOT NULL);
      CREATE TABLE orders (id INTEGER PRIMARY KEY,
        customer_id INTEGER NOT NULL REFERENCES customers(id), amount_cents INTEGER NOT NULL,
        status TEXT NOT NULL, created_at TEXT NOT NULL);
      CREATE INDEX orders_customer_id ON orders(customer_id);
      $(rows "$n") INSERT INTO customers (email, name, city, created_at)
        SELECT lower(hex(randomblob(6))) || '@example.com', 'Customer ' || x,
               'City ' || (abs(random()) % 500), datetime(1600000000 + x * 37, 'unixepoch')
        FROM c;
      $(rows $((2 * n))) INSERT INTO orders (customer_id, amount_cents, status, created_at)
        SELECT 1 + abs(random()) % $n, abs(random()) % 100000,
               CASE abs(random()) % 3 WHEN 0 THEN 'paid' WHEN 1 THEN 'shipped' ELSE 'open' END,
               datetime(1600000000 + x * 19, 'unixepoch')
        FROM c;" >/dev/null
    ;;
  tables)
    python3 - "$db.tmp" "$TABLES" <<'PY'
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("PRAGMA journal_mode=OFF")
con.execute("BEGIN")
for t in range(int(sys.argv[2])):
    con.execute("CREATE TABLE t%d (id INTEGER PRIMARY KEY, code TEXT UNIQUE, label TEXT, "
                "n INTEGER, at TEXT)" % t)
    con.execute("CREATE INDEX t%d_n ON t%d (n)" % (t, t))
    con.execute("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 40) "
                "INSERT INTO t%d (code, label, n, at) SELECT hex(randomblob(8)), "
                "'label ' || x || ' of table %d', abs(random()) %% 1000, "
                "datetime(1600000000 + x * 60, 'unixepoch') FROM c" % (t, t))
con.execute("COMMIT")
PY
    ;;
  *)
    echo "bench: unknown shape '$shape'" >&2
    exit 2
    ;;
  esac
  mv "$db.tmp" "$db"
}

# measure LABEL CMD...: appends "LABEL seconds maxrss_kb cpu_seconds" to $TIMES: the
# wall clock to the microsecond (/usr/bin/time prints hundredths, and the tables
# shape's peer takes one or two of them), and the process tree's CPU time (user +
# system) and peak RSS from wait4
measure() {
  local label=$1; shift
  sync
  python3 - "$WORK/cmd.err" "$label" "$@" >>"$TIMES" <<'PY' || {
import os, subprocess, sys, time
err, label, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(os.devnull, "wb") as out, open(err, "wb") as e:
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=out, stderr=e)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
if p.returncode != 0:
    sys.exit(1)
print(label, "%.6f" % wall, ru.ru_maxrss, "%.6f" % (ru.ru_utime + ru.ru_stime))
PY
    echo "bench: '$*' failed:" >&2; cat "$WORK/cmd.err" >&2; exit 1; }
}

# same_content A B: the databases hold the same content (sqlite3's .sha3sum) and B
# passes PRAGMA integrity_check
same_content() {
  local a b
  a=$(sqlite3 "$1" .sha3sum)
  b=$(sqlite3 "$2" .sha3sum)
  [ "$a" = "$b" ] || { echo "bench: '$2' differs from '$1' (.sha3sum)" >&2; exit 1; }
  [ "$(sqlite3 "$2" 'PRAGMA integrity_check')" = ok ] ||
    { echo "bench: '$2' fails PRAGMA integrity_check" >&2; exit 1; }
}

if [ "$BIG" = 1 ]; then
  DB="$WORK/big.db"
  B="$WORK/big-backups"
  if [ ! -f "$DB" ]; then
    echo "bench: building a 1.1 GiB database in $DB" >&2
    sqlite3 "$DB.tmp" "PRAGMA journal_mode=OFF;
      CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT UNIQUE, b BLOB);
      $(rows 280000) INSERT INTO t (k, b)
        SELECT hex(randomblob(8)), randomblob(2000) || zeroblob(2000) FROM c;" >/dev/null
    mv "$DB.tmp" "$DB"
  fi
  PAGES=$(sqlite3 "$DB" "PRAGMA page_count")
  PSIZE=$(sqlite3 "$DB" "PRAGMA page_size")
  echo "database: $((PAGES * PSIZE)) bytes ($PAGES pages of $PSIZE; the lock-byte page is" \
       "page $((0x40000000 / PSIZE + 1)))"
  [ $((PAGES * PSIZE)) -gt $((0x40000000 + PSIZE)) ] ||
    { echo "bench: the database does not span the lock-byte page" >&2; exit 1; }
  rm -rf "$B" "$WORK/big-restored.db" "$WORK/big-inplace.db"
  t0=$(date +%s.%N)
  "$SM" -q --no-progress -d "sqlite:///$DB" -b "$B" backup --name big
  t1=$(date +%s.%N)
  "$SM" -q --no-progress -b "$B" restore "$B/big.tar.zst" --to "sqlite:///$WORK/big-restored.db" \
    --yes --no-safety-backup
  t2=$(date +%s.%N)
  sqlite3 "$WORK/big-inplace.db" "CREATE TABLE other (x); INSERT INTO other VALUES (1)"
  "$SM" -q --no-progress -d "sqlite:///$WORK/big-inplace.db" -b "$B" restore "$B/big.tar.zst" \
    --yes --no-safety-backup --force
  t3=$(date +%s.%N)
  "$SM" -q --no-progress verify "$B/big.tar.zst"
  same_content "$DB" "$WORK/big-restored.db"
  same_content "$DB" "$WORK/big-inplace.db"
  python3 - "$t0" "$t1" "$t2" "$t3" "$(stat -c %s "$B/big.tar.zst")" <<'PY'
import sys
t0, t1, t2, t3 = (float(x) for x in sys.argv[1:5])
print("backup %.1f s (snapshot %.0f MiB), restore --to %.1f s, in-place restore %.1f s"
      % (t1 - t0, int(sys.argv[5]) / 2**20, t2 - t1, t3 - t2))
print("OK: .sha3sum and PRAGMA integrity_check agree for restore --to and in place")
PY
  rm -rf "$B" "$WORK/big-restored.db" "$WORK/big-inplace.db"
  exit 0
fi

SUMMARY="$WORK/summary"
: >"$SUMMARY"
for shape in $SHAPES; do
  DB="$WORK/$shape.db"
  build "$shape" "$DB"
  B="$WORK/backups-$shape"
  TIMES="$WORK/times-$shape"
  LIVE="$WORK/live.db"
  PEERLIVE="$WORK/peer-live.db"
  : >"$TIMES"
  # the pipeline's database: the shape and one pending migration (the run creates the
  # version table too)
  PIPE="$WORK/pipe-$shape"
  rm -rf "$PIPE"
  mkdir -p "$PIPE/migrations"
  cp "$DB" "$PIPE/pristine.db"
  printf -- '-- migrate:up\nCREATE TABLE bench_note (id INTEGER PRIMARY KEY, t TEXT);\n-- migrate:down\nDROP TABLE bench_note;\n' \
    >"$PIPE/migrations/20260101_000000_note.sql"
  for i in $(seq 1 "$RUNS"); do
    rm -rf "$PIPE/bk" "$PIPE/app.db"*
    # synced outside the timing: else the run's first commit (fdatasync)
    # writes out the whole fresh copy, which a live database never asks for
    cp "$PIPE/pristine.db" "$PIPE/app.db" && sync "$PIPE/app.db"
    measure ours_pipeline "$SM" -q --no-progress -d "sqlite:///$PIPE/app.db" -m "$PIPE/migrations" \
      -b "$PIPE/bk" safe-migrate
    rm -rf "$PIPE/bk" "$PIPE/app.db"*
    cp "$PIPE/pristine.db" "$PIPE/app.db" && sync "$PIPE/app.db"
    measure peer_pipeline "$SM" -q --no-progress -d "sqlite:///$PIPE/app.db" -b "$PIPE/bk" backup --name s
    rm -rf "$B" "$WORK/peer.db" "$WORK/peer.db.zst"
    measure ours_backup "$SM" -q --no-progress -d "sqlite:///$DB" -b "$B" backup --name run
    measure peer_backup sh -c "sqlite3 '$DB' '.backup $WORK/peer.db' && zstd -q -1 -T2 '$WORK/peer.db'"
    measure ours_backup_nocheck "$SM" -q --no-progress -d "sqlite:///$DB" -b "$B" backup \
      --name unchecked --no-check
    rm -f "$WORK/peer.db" "$WORK/restored.db" "$WORK/peer-restored.db"
    measure ours_restore_to "$SM" -q --no-progress -b "$B" restore "$B/run.tar.zst" \
      --to "sqlite:///$WORK/restored.db" --yes --no-safety-backup
    rm -f "$WORK/restored-unchecked.db"
    measure ours_restore_to_unchecked "$SM" -q --no-progress -b "$B" restore \
      "$B/unchecked.tar.zst" --to "sqlite:///$WORK/restored-unchecked.db" --yes --no-safety-backup
    measure peer_restore_to sh -c "zstd -q -d '$WORK/peer.db.zst' -o '$WORK/peer-restored.db' && sync '$WORK/peer-restored.db'"
    # in place: into a small live database of the same page size (made outside the timing)
    for f in "$LIVE" "$PEERLIVE"; do
      rm -f "$f" "$f-journal" "$f-wal" "$f-shm"
      sqlite3 "$f" "CREATE TABLE app (x); INSERT INTO app VALUES (1)"
    done
    measure ours_restore_in_place "$SM" -q --no-progress -d "sqlite:///$LIVE" -b "$B" \
      restore "$B/run.tar.zst" --yes --no-safety-backup --force
    rm -f "$WORK/peer-tmp.db"
    measure peer_restore_in_place sh -c "zstd -q -d '$WORK/peer.db.zst' -o '$WORK/peer-tmp.db' && sqlite3 '$PEERLIVE' '.restore $WORK/peer-tmp.db'"
  done
  same_content "$DB" "$WORK/restored.db"
  same_content "$DB" "$WORK/restored-unchecked.db"
  same_content "$DB" "$LIVE"
  python3 - "$TIMES" "$shape" "$(stat -c %s "$DB")" "$(stat -c %s "$B/run.tar.zst")" \
    "$(stat -c %s "$WORK/peer.db.zst")" "$(nproc)" <<'PY' | tee -a "$SUMMARY"
import statistics, sys
t, c = {}, {}
for line in open(sys.argv[1]):
    label, wall, rss, cpu = line.split()
    t.setdefault(label, []).append((float(wall), int(rss)))
    c.setdefault(label, []).append(float(cpu))
med = lambda k: statistics.median(w for w, _ in t[k])
cmed = lambda k: statistics.median(c[k])
peak = lambda k: max(r for _, r in t[k]) / 1024
shape = sys.argv[2]
db, snap, peer = (int(x) for x in sys.argv[3:6])
print("== %s: database %.0f MiB; snapshot %.0f MiB, peer .zst %.0f MiB; %s CPUs; %d runs each"
      % (shape, db / 2**20, snap / 2**20, peer / 2**20, sys.argv[6], len(t["ours_backup"])))
# (row, goal, the peer's row): backup_nocheck is `backup --no-check` (no
# quick_check beside the copy), restore_to_unchecked the restore --to of that
# snapshot (which must then check the staged copy itself)
ops = (("backup", 0.6, "backup"), ("backup_nocheck", 0.6, "backup"),
       ("restore_to", 1.5, "restore_to"), ("restore_to_unchecked", 1.5, "restore_to"),
       ("restore_in_place", 1.5, "restore_in_place"), ("pipeline", 2.5, "pipeline"))
for op, _, peer in ops:
    print("%-20s runs: ours %s; peer %s" % (op, " ".join("%.3f" % w for w, _ in t["ours_" + op]),
                                           " ".join("%.3f" % w for w, _ in t["peer_" + peer])))
print("%-20s %9s %9s %7s %10s %14s" % ("", "ours (s)", "peer (s)", "ratio", "cpu ratio",
                                        "our RSS (MiB)"))
for op, goal, peer in ops:
    o, p = med("ours_" + op), med("peer_" + peer)
    co, cp = cmed("ours_" + op), cmed("peer_" + peer)
    print("%-20s %9.3f %9.3f %6.2fx %9.2fx %14.1f   goal <= %.1fx%s"
          % (op, o, p, o / p, co / cp if cp else 0, peak("ours_" + op), goal,
             "" if o / p <= goal else "  (MISSED)"))
PY
  rm -rf "$B" "$WORK/peer.db.zst" "$WORK/restored.db" "$WORK/peer-restored.db" "$WORK/peer-tmp.db" \
    "$WORK/restored-unchecked.db" "$PIPE"
done
echo
echo "== all shapes"
grep -v "runs" "$SUMMARY"
