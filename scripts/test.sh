#!/usr/bin/env bash
# The test command: installs what is missing, builds with ASan+UBSan, starts a
# throwaway PostgreSQL 15 cluster, runs every test through ctest, and always
# stops the cluster.  Under CI=true a missing PostgreSQL server is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

scripts/install-deps.sh

BUILD=${BUILD_DIR:-$ROOT/build-test}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Debug -DSANITIZE=ON -DBUILD_TESTING=ON >/dev/null
cmake --build "$BUILD" -j"$(nproc)" 2>&1 | grep -vE '^\[|^(Consolidate|Scanning|Built target)' || true
cmake --build "$BUILD" -j"$(nproc)" >/dev/null  # fails the script on a build error

# static analysis: cppcheck's warning and portability checks, no findings allowed
cppcheck --quiet --enable=warning,portability --std=c11 --error-exitcode=1 --inline-suppr \
  -D_POSIX_C_SOURCE=200809L --library=scripts/cppcheck-cjson.cfg \
  -I src/core -I src/engine -I src/migrate -I src/snapshot -I backup -I restore -I safety \
  -I src/cli src backup restore safety

# clang-tidy with .clang-tidy's checks (each disabled one says why there), no
# findings allowed; it reads the build's compile_commands.json
tidy_t0=$(date +%s)
if ! run-clang-tidy -j"$(nproc)" -quiet -p "$BUILD" "$ROOT/(src|backup|restore|safety)/" \
    >"$BUILD/clang-tidy.log" 2>&1; then
  grep -E "(warning|error):" "$BUILD/clang-tidy.log" | sort -u >&2 || true
  echo "test.sh: clang-tidy found problems (full output: $BUILD/clang-tidy.log)" >&2
  exit 1
fi
echo "test.sh: clang-tidy clean ($(( $(date +%s) - tidy_t0 )) s)" >&2

PGDIR=$(mktemp -d /tmp/sm-pg.XXXXXX)
PORT=${SAFE_MIGRATE_TEST_PG_PORT:-$((20000 + RANDOM % 20000))}
cleanup() { "$ROOT/scripts/pg-cluster.sh" stop "$PGDIR" || true; }
trap cleanup EXIT INT TERM
if url=$(scripts/pg-cluster.sh start "$PGDIR" "$PORT"); then
  export SAFE_MIGRATE_TEST_PG_URL="$url"
  echo "test.sh: PostgreSQL test cluster at $url" >&2
else
  echo "test.sh: could not start a PostgreSQL cluster (see $PGDIR/*.log)" >&2
  cat "$PGDIR"/*.log >&2 2>/dev/null || true
  if [ "${CI:-}" = "true" ]; then exit 1; fi
fi

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# short fuzz runs of every libFuzzer harness (scripts/fuzz.sh runs longer ones)
FUZZ_BUILD_DIR="$ROOT/build-fuzz" scripts/fuzz.sh "${SAFE_MIGRATE_FUZZ_SECONDS:-20}"

(cd "$BUILD" && ctest --output-on-failure -j"$(nproc)" --timeout 900 "$@")

