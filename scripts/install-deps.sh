#!/usr/bin/env bash
# Installs the Debian packages safe-migrate needs to build, test and demo,
# but only those that are missing: with everything present it does nothing.
set -euo pipefail

# postgresql-contrib-15 is not listed: on Debian 12 it is only a virtual
# package provided by postgresql-15, so dpkg never reports it installed, and
# asking for it ran apt-get on every test run and upgraded the server under
# running clusters (their next plpgsql load then failed).
PACKAGES=(
  build-essential cmake pkg-config clang
  libsqlite3-dev libpq-dev libzstd-dev libarchive-dev libssl-dev
  libcjson-dev libinih-dev libpg-query-dev libcmocka-dev
  sqlite3 zstd python3 python3-alembic python3-psycopg2 time
  postgresql-15 postgresql-client-15 postgresql-15-postgis-3 postgresql-server-dev-15
  cppcheck clang-tidy
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
# the server's headers (for the tests' label provider, tests/pg/sm_label.c)
# of the very server installed: the latest would upgrade the server too
# (and under running clusters), to a release that can behave differently
server=$(dpkg-query -W -f='${Version}' postgresql-15 2>/dev/null || true)
if [ -n "$server" ]; then
  for i in "${!missing[@]}"; do
    if [ "${missing[$i]}" = postgresql-server-dev-15 ]; then
      missing[$i]="postgresql-server-dev-15=$server"
    fi
  done
fi
echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# the server package must not start a cluster of its own at install time
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
