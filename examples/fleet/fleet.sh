#!/bin/sh
# fleet.sh: run safe-migrate's pipeline (checks, snapshot, migrate, validate,
# automatic restore) over a fleet of SQLite databases, several at a time, and
# aggregate the outcomes.
#
# usage: fleet.sh [-j JOBS] [-m MIGRATIONS_DIR] [-b BACKUP_ROOT | -s SHARED_BACKUP_DIR]
#                 [-o RESULTS_DIR] DATABASE_FILE...
#
#   -j JOBS   databases migrated at once (default 4)
#   -m DIR    the migrations every database gets (default: migrations)
#   -b ROOT   one backup directory per database: ROOT/<name> (default: backups)
#   -s DIR    one backup directory shared by all (safe: snapshot names are
#             unique, a run's journal is per database)
#   -o DIR    where each run's --json object, messages and exit code go
#             (default: fleet-results)
#
# Prints one JSON summary on stdout:
#   {"databases": [{"db", "exit", "outcome", "snapshot", "applied"}...],
#    "counts": {"applied": N, "restored": N, ...}, "exit": WORST}
# and exits with WORST: 0 if every database is at head, else the highest exit
# code of any run (5: a migration failed and that database was restored;
# 6: its restore failed too, see its log for the snapshot to restore by hand).
#
# Needs: safe-migrate (or $SAFE_MIGRATE), jq, xargs -P (GNU parallel works the
# same: parallel -j JOBS fleet.sh --one ::: DB...).
set -eu

SM=${SAFE_MIGRATE:-safe-migrate}

# One database (run by xargs): results go to $RES/<name>.{json,log,code,db}.
if [ "${1:-}" = --one ]; then
	db=$2
	name=$(printf '%s' "$db" | tr -c 'A-Za-z0-9._-' '_')
	if [ -n "$SHARED" ]; then bdir=$SHARED; else bdir=$ROOT/$name; fi
	printf '%s\n' "$db" >"$RES/$name.db"
	set +e
	"$SM" -d "sqlite:///$db" -m "$MIG" -b "$bdir" --json --yes --no-progress safe-migrate \
		>"$RES/$name.json" 2>"$RES/$name.log"
	echo $? >"$RES/$name.code"
	exit 0
fi

JOBS=4 MIG=migrations ROOT=backups SHARED= RES=fleet-results
while getopts j:m:b:s:o: o; do
	case $o in
	j) JOBS=$OPTARG ;;
	m) MIG=$OPTARG ;;
	b) ROOT=$OPTARG ;;
	s) SHARED=$OPTARG ;;
	o) RES=$OPTARG ;;
	*) exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || { echo "usage: fleet.sh [-j N] [-m DIR] [-b ROOT|-s DIR] [-o DIR] DB..." >&2; exit 2; }
mkdir -p "$RES"
rm -f "$RES"/*.json "$RES"/*.log "$RES"/*.code "$RES"/*.db
export SM MIG ROOT SHARED RES

for db in "$@"; do printf '%s\0' "$db"; done | xargs -0 -n 1 -P "$JOBS" "$0" --one

# Aggregate: a run that ended before printing its object (a usage error)
# counts as outcome "error" with its exit code.
for code in "$RES"/*.code; do
	n=${code%.code}
	jq -c --arg db "$(cat "$n.db")" --argjson exit "$(cat "$code")" \
		'{db: $db, exit: $exit, outcome: (.outcome // "error"), snapshot: (.snapshot // null),
		  applied: (.applied // [])}' "$n.json" 2>/dev/null ||
		jq -nc --arg db "$(cat "$n.db")" --argjson exit "$(cat "$code")" \
			'{db: $db, exit: $exit, outcome: "error", snapshot: null, applied: []}'
done | jq -s '{databases: ., counts: (group_by(.outcome) | map({(.[0].outcome): length}) | add),
	       exit: (map(.exit) | max)}' | tee "$RES/summary.json"
exit "$(jq .exit "$RES/summary.json")"
