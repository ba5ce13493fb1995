#!/usr/bin/env bash
# Builds the libFuzzer harnesses with clang and runs each for SECONDS
# (default 300).  Crashes are saved under tests/fuzz/crashes/; turn each one
# into a regression test (copy it into the harness's corpus directory, which
# the short run in scripts/test.sh replays every time).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-300}
BUILD=${FUZZ_BUILD_DIR:-build-fuzz}
CC=clang cmake -S . -B "$BUILD" -DFUZZ=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$BUILD" -j"$(nproc)" >/dev/null
mkdir -p tests/fuzz/crashes
status=0
for f in "$BUILD"/tests/fuzz/fuzz_*; do
  [ -x "$f" ] || continue
  name=$(basename "$f"); corpus=tests/fuzz/corpus/${name#fuzz_}
  work=$(mktemp -d)
  cp -r "$corpus"/. "$work"/ 2>/dev/null || true
  echo "fuzz: $name for ${SECONDS_EACH}s" >&2
  if ! "$f" -max_total_time="$SECONDS_EACH" -max_len=65536 -timeout=10 \
       -artifact_prefix=tests/fuzz/crashes/"$name"- "$work" "$corpus" >"$work.log" 2>&1; then
    echo "fuzz: $name FAILED; see tests/fuzz/crashes/ and $work.log" >&2
    tail -30 "$work.log" >&2
    status=1
  fi
  grep -E '^(#[0-9]+\s+DONE|Done)' "$work.log" | tail -1 >&2 || true
  rm -rf "$work"
done
exit $status
