#!/usr/bin/env bash
# Benchmark (not a test): PostgreSQL snapshots against pg_dump / pg_restore.
#
#   scripts/bench/pg-snapshot.sh [SCALE] [RUNS] [SHAPES]
#       SCALE   size factor, 1 = about 100 MB per data shape (default 1)
#       RUNS    alternating runs per shape, medians are printed (default 5)
#       SHAPES  any of "blobs narrow many" (default all three)
#
# Builds each data shape in a throwaway cluster (or SAFE_MIGRATE_BENCH_PG_URL,
# a superuser URL of an existing server):
#   blobs   one table of random text, numerics, jsonb and timestamps (poorly
#           compressible wide rows), a primary key and a second index;
#   narrow  customers / orders as an application has them: short text
#           columns, a UNIQUE email, orders.customer_id a foreign key with its
#           index (SCALE 1: 300k customers, 600k orders);
#   many    400 small tables (SCALE 1: 250 rows each), each with a primary
#           key, a second index and a foreign key to a parent table.
# Then, per shape and per run, alternating which tool goes first:
#   our backup                        vs  pg_dump -Fc -Z0 | zstd -1 -T2
#     (and, as our floor, psql's binary COPY TO of every table, discarded)
#   our in-place restore (one tx)     vs  pg_restore --clean --if-exists --single-transaction
#   our restore --to an empty db -j2  vs  pg_restore -j2 into an empty db
# (the peer restores read pg_dump -Fc's default, compressed, archive; an
# untimed CHECKPOINT comes before every timed restore, see settle) and
# prints every run, the median of each time and ratio, and our peak RSS from
# /usr/bin/time -v.  Goals (issue 17): backup <= 0.9, in-place restore
# <= 0.8, --jobs 2 <= 0.9, peak RSS <= 64 MiB.  Database creation is not
# timed.  Builds and uses a Release binary in build-bench/ (BENCH_BUILD_DIR to
# move it; SAFE_MIGRATE_BIN to use another binary).  A failing command stops
# the benchmark.
set -euo pipefail
scale=${1:-1}
runs=${2:-5}
shapes=${3:-blobs narrow many}
. "$(dirname "$0")/pg-bench-lib.sh"
bench_pg_setup /tmp/pg-sm-bench 25499

build_blobs() {
  local rows=$((scale * 100 * 1024 * 1024 / 560))
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
SQL
}

build_narrow() {
  local nc=$((scale * 300000))
  psql_ "$base/smbench" <<SQL
CREATE TABLE customers (
    id bigint PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name text NOT NULL,
    country char(2) NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE TABLE orders (
    id bigint PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers (id),
    status text NOT NULL,
    amount numeric(10, 2) NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX orders_customer_idx ON orders (customer_id);
INSERT INTO customers
SELECT g, 'user' || g || '@' || substr(md5(g::text), 1, 8) || '.example',
       initcap(substr(md5(random()::text), 1, 6 + (g % 7))) || ' '
         || initcap(substr(md5(random()::text), 1, 5 + (g % 9))),
       (ARRAY['us', 'de', 'fr', 'jp', 'br', 'in'])[1 + g % 6],
       now() - random() * interval '5 years'
FROM generate_series(1, $nc) g;
INSERT INTO orders
SELECT g, 1 + (random() * ($nc - 1))::bigint,
       (ARRAY['new', 'paid', 'shipped', 'delivered', 'returned'])[1 + g % 5],
       round((random() * 500)::numeric, 2),
       now() - random() * interval '3 years'
FROM generate_series(1, $((nc * 2))) g;
SQL
}

build_many() {
  local n=400 rows=$((scale * 250))
  psql_ "$base/smbench" <<SQL
CREATE TABLE parent (id int PRIMARY KEY, label text NOT NULL);
INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, 100) g;
DO \$\$
BEGIN
  FOR i IN 1..$n LOOP
    EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parent (id),
                    code text NOT NULL, qty int, note text)', i);
    EXECUTE format('CREATE INDEX t%s_code_idx ON t%s (code)', i, i);
    EXECUTE format('INSERT INTO t%s SELECT g, 1 + g %% 100, md5(g::text || %s), g %% 17,
                    repeat(''x'', g %% 40) FROM generate_series(1, $rows) g', i, i);
  END LOOP;
END
\$\$;
SQL
}

ours_backup() {
  /usr/bin/time -v -o "$work/time_b.txt" "$bin" -q -d "$base/smbench" -b "$work/b" backup --name bench
}
dump_zstd() { pg_dump -Fc -Z0 "$base/smbench" | zstd -q -1 -T2 -o "$work/dump.fc0.zst" -f; }
ours_inplace() {
  /usr/bin/time -v -o "$work/time_i.txt" "$bin" -q -d "$base/smbench" -b "$work/b" --yes restore \
    "$work/b/bench.tar.zst" --no-safety-backup
}
pg_restore_1tx() {
  pg_restore --clean --if-exists --single-transaction -d "$base/smbench" "$work/dump.fc"
}
ours_jobs() {
  /usr/bin/time -v -o "$work/time_j.txt" "$bin" -q -d "$base/smbench" -b "$work/b" --yes restore \
    "$work/b/bench.tar.zst" --to "$base/smbench_r1" --jobs 2 --no-safety-backup
}
pg_restore_j2() { pg_restore -j2 -d "$base/smbench_r2" "$work/dump.fc"; }
# untimed, before every timed restore: a CHECKPOINT, so that each starts
# from the same server state.  Without it only the first restore of an
# iteration followed one (DROP DATABASE of the --jobs targets forces a
# checkpoint), and on the many-tables shape that restore was the slower by
# 0.5 to 1.5 s, whichever tool it was: the in-place ratios split by which
# tool went first (0.99, 1.02, 0.92 against 0.62, 0.56 in one 5-run median).
# Then a sync, so that the page cache's write-back of earlier runs' files
# does not fall in the timed one (see also pg-bench-lib.sh on the tmpfs)
settle() { psql_ "$admin" -c CHECKPOINT; sync; }
# the floor of our backup: the server's COPY TO of every table, in the binary
# format it copies the bench shapes' tables in (their columns are all of
# built-in types), read by psql and thrown away
copy_floor() { psql_ "$base/smbench" -f "$work/copy_all.sql" >/dev/null; }

for shape in $shapes; do
  echo "== shape $shape (scale $scale, $runs runs)"
  newdb smbench
  "build_$shape"
  psql_ "$base/smbench" -c "VACUUM ANALYZE"
  psql_ -At "$base/smbench" -c "SELECT 'database size: ' || pg_size_pretty(pg_database_size(current_database())) || ', ' || count(*) || ' tables' FROM pg_tables WHERE schemaname = 'public'"
  psql_ -At "$base/smbench" -c "SELECT format('COPY %I.%I TO STDOUT (FORMAT binary);', schemaname, tablename)
    FROM pg_tables WHERE schemaname = 'public'" >"$work/copy_all.sql"
  rm -rf "$work/b" && mkdir -p "$work/b"
  ours_backup >/dev/null
  pg_dump -Fc -f "$work/dump.fc" "$base/smbench"
  ls -l "$work/b/bench.tar.zst" "$work/dump.fc" | awk '{print "  " $5, $9}'
  B=() Z=() F=() I=() P=() J=() R=() rb=() ri=() rj=() rs_b=() rs_i=() rs_j=()
  for i in $(seq 1 "$runs"); do
    rm -f "$work/b/bench.tar.zst" "$work/b/bench.tar.zst.sha256"
    newdb smbench_r1 >/dev/null; newdb smbench_r2 >/dev/null
    if [ $((i % 2)) -eq 1 ]; then
      b=$(t ours_backup); z=$(t dump_zstd); f=$(t copy_floor)
      settle; o=$(t ours_inplace); settle; p=$(t pg_restore_1tx)
      settle; j=$(t ours_jobs); settle; r=$(t pg_restore_j2)
    else
      f=$(t copy_floor); z=$(t dump_zstd); b=$(t ours_backup)
      settle; p=$(t pg_restore_1tx); settle; o=$(t ours_inplace)
      settle; r=$(t pg_restore_j2); settle; j=$(t ours_jobs)
    fi
    B+=("$b"); Z+=("$z"); F+=("$f"); I+=("$o"); P+=("$p"); J+=("$j"); R+=("$r")
    rb+=("$(ratio "$b" "$z")"); ri+=("$(ratio "$o" "$p")"); rj+=("$(ratio "$j" "$r")")
    rs_b+=("$(rss "$work/time_b.txt")"); rs_i+=("$(rss "$work/time_i.txt")"); rs_j+=("$(rss "$work/time_j.txt")")
    printf '  run %d: backup %.2f/%.2f s = %.3f  in-place %.2f/%.2f s = %.3f  --jobs 2 %.2f/%.2f s = %.3f  RSS %s/%s/%s MiB\n' \
      "$i" "$b" "$z" "${rb[-1]}" "$o" "$p" "${ri[-1]}" "$j" "$r" "${rj[-1]}" \
      "${rs_b[-1]}" "${rs_i[-1]}" "${rs_j[-1]}"
  done
  echo "  median ($shape):"
  printf '    backup / (pg_dump -Fc -Z0 | zstd -1 -T2)           %.3f  (%s s / %s s; goal <= 0.9)\n' \
    "$(median "${rb[@]}")" "$(median "${B[@]}")" "$(median "${Z[@]}")"
  printf '    (the server'"'"'s binary COPY TO of every table alone, through psql: %s s)\n' "$(median "${F[@]}")"
  printf '    in-place restore / pg_restore --single-transaction %.3f  (%s s / %s s; goal <= 0.8)\n' \
    "$(median "${ri[@]}")" "$(median "${I[@]}")" "$(median "${P[@]}")"
  printf '    restore --to --jobs 2 / pg_restore -j2             %.3f  (%s s / %s s; goal <= 0.9)\n' \
    "$(median "${rj[@]}")" "$(median "${J[@]}")" "$(median "${R[@]}")"
  printf '    peak RSS backup / in-place / --jobs 2: max %s / %s / %s MiB (goal <= 64)\n' \
    "$(printf '%s\n' "${rs_b[@]}" | sort -g | tail -1)" "$(printf '%s\n' "${rs_i[@]}" | sort -g | tail -1)" \
    "$(printf '%s\n' "${rs_j[@]}" | sort -g | tail -1)"
done
