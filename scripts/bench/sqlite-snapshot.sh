#!/usr/bin/env bash
# Benchmark (not a test): safe-migrate's SQLite backup and restore against
# what an operator would do by hand.
#
#   backup:  safe-migrate backup      vs  sqlite3 DB ".backup F" && zstd -1 -T2 F
#   restore: safe-migrate restore --to vs  zstd -d F.zst && cp F TARGET
#
# Builds a database of poorly compressible data (random blobs and text,
# SIZE_MB, default 512), runs each side RUNS times (default 3) alternating,
# and prints every run, the medians, their ratio and our peak RSS from /usr/bin/time -v.
# Goals (issue 3): backup <= 0.6x the peer's time, peak RSS <= 64 MiB,
# restore <= 1.5x.  Usage: scripts/bench/sqlite-snapshot.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
WORK=${1:-/tmp/sm-bench-sqlite}
SIZE_MB=${SIZE_MB:-512}
RUNS=${RUNS:-5}

for tool in sqlite3 zstd python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required" >&2; exit 1; }
done
if [ ! -x /usr/bin/time ]; then
  echo "bench: /usr/bin/time is missing (apt-get install time)" >&2
  exit 1
fi

BUILD=${BENCH_BUILD_DIR:-$ROOT/build-bench}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" >/dev/null
SM="$BUILD/src/cli/safe-migrate"

mkdir -p "$WORK"
DB="$WORK/bench.db"
if [ ! -f "$DB" ] || [ "$(stat -c %s "$DB")" -lt $((SIZE_MB * 1000000)) ]; then
  echo "bench: building a ${SIZE_MB} MB database of random data in $DB" >&2
  rm -f "$DB"
  python3 - "$DB" "$SIZE_MB" <<'PY'
import os, sqlite3, sys
db, mb = sys.argv[1], int(sys.argv[2])
con = sqlite3.connect(db)
con.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB, t TEXT)")
con.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, b BLOB)")
done = 0
while done < mb * 1024 * 1024:
    rows = [(os.urandom(700), os.urandom(150).hex()) for _ in range(2000)]
    con.executemany("INSERT INTO blobs (b, t) VALUES (?, ?)", rows)
    con.execute("INSERT INTO big (b) VALUES (?)", (os.urandom(1 << 20),))
    done += 2000 * 1000 + (1 << 20)
con.commit()
con.close()
PY
fi
DB_BYTES=$(stat -c %s "$DB")

# measure LABEL CMD...: appends "LABEL seconds maxrss_kb" to $WORK/times
measure() {
  local label=$1; shift
  sync
  /usr/bin/time -v -o "$WORK/time.out" "$@" >/dev/null 2>"$WORK/cmd.err" || {
    echo "bench: '$*' failed:" >&2; cat "$WORK/cmd.err" >&2; exit 1; }
  python3 - "$WORK/time.out" "$label" >>"$WORK/times" <<'PY'
import sys
wall = rss = None
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("Elapsed (wall clock)"):
        parts = [float(p) for p in line.rsplit(" ", 1)[1].split(":")]
        wall = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    elif line.startswith("Maximum resident set size"):
        rss = int(line.rsplit(" ", 1)[1])
print(sys.argv[2], wall, rss)
PY
}

: >"$WORK/times"
B="$WORK/backups"
for i in $(seq 1 "$RUNS"); do
  rm -rf "$B" "$WORK/peer.db" "$WORK/peer.db.zst"
  measure ours_backup "$SM" -q --no-progress -d "sqlite:///$DB" -b "$B" backup --name run
  measure peer_backup sh -c "sqlite3 '$DB' '.backup $WORK/peer.db' && zstd -q -1 -T2 '$WORK/peer.db'"
  rm -f "$WORK/restored.db" "$WORK/peer-restored.db" "$WORK/peer-out.db"
  measure ours_restore "$SM" -q --no-progress -b "$B" restore "$B/run.tar.zst" \
    --to "sqlite:///$WORK/restored.db" --yes --no-safety-backup
  rm -f "$WORK/peer.db"
  measure peer_restore sh -c "zstd -q -d '$WORK/peer.db.zst' -o '$WORK/peer-out.db' && cp '$WORK/peer-out.db' '$WORK/peer-restored.db'"
done
SNAP_BYTES=$(stat -c %s "$B/run.tar.zst")
PEER_BYTES=$(stat -c %s "$WORK/peer.db.zst")
cmp <(sqlite3 "$DB" "SELECT count(*), sum(length(b)) FROM blobs") \
    <(sqlite3 "$WORK/restored.db" "SELECT count(*), sum(length(b)) FROM blobs") ||
  { echo "bench: the restored database differs" >&2; exit 1; }

python3 - "$WORK/times" "$DB_BYTES" "$SNAP_BYTES" "$PEER_BYTES" "$(nproc)" <<'PY'
import statistics, sys
t = {}
for line in open(sys.argv[1]):
    label, wall, rss = line.split()
    t.setdefault(label, []).append((float(wall), int(rss)))
med = lambda k: statistics.median(w for w, _ in t[k])
peak = lambda k: max(r for _, r in t[k]) / 1024
db, snap, peer = (int(x) for x in sys.argv[2:5])
print("database: %.0f MiB; snapshot %.0f MiB, peer .zst %.0f MiB; %s CPUs; %d runs each"
      % (db / 2**20, snap / 2**20, peer / 2**20, sys.argv[5], len(t["ours_backup"])))
for op in ("backup", "restore"):
    print("%-8s runs: ours %s; peer %s" % (op, " ".join("%.2f" % w for w, _ in t["ours_" + op]),
                                          " ".join("%.2f" % w for w, _ in t["peer_" + op])))
print("%-8s %10s %10s %7s %14s %14s" % ("", "ours (s)", "peer (s)", "ratio", "our RSS (MiB)",
                                          "peer RSS (MiB)"))
for op, goal in (("backup", 0.6), ("restore", 1.5)):
    o, p = med("ours_" + op), med("peer_" + op)
    print("%-8s %10.2f %10.2f %6.2fx %14.1f %14.1f   goal <= %.1fx%s"
          % (op, o, p, o / p, peak("ours_" + op), peak("peer_" + op), goal,
             "" if o / p <= goal else "  (MISSED)"))
PY
