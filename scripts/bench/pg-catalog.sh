#!/usr/bin/env bash
# Benchmark (not a test): reading a big schema's catalogs (issue 16 §6).
#
#   scripts/bench/pg-catalog.sh [TABLES] [RUNS]     (defaults: 1044 tables, 5 runs)
#
# Builds an empty GitLab-sized schema in a throwaway cluster (or
# SAFE_MIGRATE_BENCH_PG_URL, a superuser URL of an existing server): TABLES
# tables of 12 columns (serial key, text, timestamps, a foreign key to the
# previous table, a check) with 4.6 indexes each on average (1,044 tables:
# 4,812 indexes, as GitLab's), a sequence each, comments and a view every 20
# tables.  Then, alternating the tools, times our backup against
# pg_dump -Fc of the same database (goal: ratio <= 1.0).  Builds and uses
# a Release binary in build-bench/ (BENCH_BUILD_DIR to move it;
# SAFE_MIGRATE_BIN to use another binary).
set -euo pipefail
tables=${1:-1044}
runs=${2:-5}
. "$(dirname "$0")/pg-bench-lib.sh"
bench_pg_setup /tmp/pg-sm-bench-catalog 25498
psql_() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
psql_ "$admin" -c "DROP DATABASE IF EXISTS smcatalog WITH (FORCE)" -c "CREATE DATABASE smcatalog"
url=$base/smcatalog

echo "== building $tables empty tables"
psql_ "$url" <<SQL
DO \$\$
DECLARE i int; k int;
BEGIN
  FOR i IN 1..$tables LOOP
    EXECUTE format('CREATE TABLE t%s (id bigserial PRIMARY KEY, name text NOT NULL, '
      'email varchar(255), state integer NOT NULL DEFAULT 0 CHECK (state >= 0), '
      'parent_id bigint %s, created_at timestamptz NOT NULL DEFAULT now(), '
      'updated_at timestamptz, body text, flags jsonb, score double precision, '
      'archived boolean NOT NULL DEFAULT false, token uuid)', i,
      CASE WHEN i > 1 THEN format('REFERENCES t%s (id)', i - 1) ELSE '' END);
    EXECUTE format('CREATE UNIQUE INDEX t%s_token ON t%s (token)', i, i);
    EXECUTE format('CREATE INDEX t%s_parent ON t%s (parent_id)', i, i);
    EXECUTE format('CREATE INDEX t%s_state_created ON t%s (state, created_at)', i, i);
    -- 4,812 indexes for 1,044 tables: a fourth index on 60 % of the tables, a fifth on 1 %
    IF i % 5 < 3 THEN
      EXECUTE format('CREATE INDEX t%s_lower_email ON t%s (lower(email)) WHERE NOT archived', i, i);
    END IF;
    IF i <= $tables / 100 THEN
      EXECUTE format('CREATE INDEX t%s_updated ON t%s (updated_at)', i, i);
    END IF;
    EXECUTE format('COMMENT ON TABLE t%s IS %L', i, 'table ' || i);
    IF i % 20 = 0 THEN
      EXECUTE format('CREATE VIEW v%s AS SELECT id, name FROM t%s WHERE NOT archived', i, i);
    END IF;
  END LOOP;
END \$\$;
ANALYZE;
SQL
psql_ "$url" -Atc "SELECT count(*) || ' tables, ' || (SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace = 'public'::regnamespace) || ' indexes' FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"

echo "== $runs runs each, alternating: our backup vs pg_dump -Fc"
ours=() theirs=()
for r in $(seq 1 "$runs"); do
  rm -rf "$work/b"
  s=$(date +%s.%N); "$bin" -d "$url" -b "$work/b" backup >/dev/null; e=$(date +%s.%N)
  ours+=("$(echo "$e - $s" | bc)")
  s=$(date +%s.%N); pg_dump -Fc -f "$work/dump" "$url"; e=$(date +%s.%N)
  theirs+=("$(echo "$e - $s" | bc)")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mo=$(median "${ours[@]}") mt=$(median "${theirs[@]}")
echo "ours:    ${ours[*]}  (median $mo s)"
echo "pg_dump: ${theirs[*]}  (median $mt s)"
echo "ratio (goal <= 1.0): $(echo "scale=2; $mo / $mt" | bc)"
