#!/usr/bin/env bash
# Starts or stops a throwaway PostgreSQL 15 cluster for the tests:
#   scripts/pg-cluster.sh start DIR PORT   -> prints the URL to use
#   scripts/pg-cluster.sh stop DIR
# PG_CLUSTER_OPTS adds server options (e.g. "-c max_locks_per_transaction=10").
# As root, initdb and pg_ctl run as the postgres user through runuser.  The
# cluster listens on 127.0.0.1:PORT and on a private socket directory, with
# fsync off; nothing else on the machine is touched.
set -euo pipefail
cmd=$1; dir=$2
BIN=$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null || dirname "$(command -v pg_ctl)")
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case "$cmd" in
start)
  port=$3
  mkdir -p "$dir"
  if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi
  as_pg "$BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1
  mkdir -p "$dir/sock"; if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir/sock"; fi
  as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -k $dir/sock -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100 -c max_locks_per_transaction=256 ${PG_CLUSTER_OPTS:-}" start >/dev/null
  echo "postgresql://postgres@127.0.0.1:$port/postgres"
  ;;
stop)
  if [ -d "$dir/data" ]; then
    as_pg "$BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
  ;;
*) echo "usage: $0 start DIR PORT | stop DIR" >&2; exit 2;;
esac
