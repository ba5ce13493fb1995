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
  postgresql-15 postgresql-client-15 postgresql-15-postgis-3
  cppcheck clang-tidy
)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

missing=()
for p in "${PACKAGES[@]}"; do
  if ! installed "$p"; then
    missing+=("$p")
  fi
done
# The server's headers, for the tests' label provider (tests/pg/sm_label.c),
# of the very server installed: asked for without a version, apt installs
# the latest and upgrades the server with it (here 15.18 to 15.20, a release
# that behaves differently), and under running clusters.  Asked for apart
# from the rest, so that a version the mirror no longer has only costs the
# security label test, not the whole setup.
headers=""
if ! installed postgresql-server-dev-15; then
  headers=postgresql-server-dev-15
fi
if [ ${#missing[@]} -eq 0 ] && [ -z "$headers" ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  # the server package must not start a cluster of its own at install time
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ -n "$headers" ]; then
  # the installed server and client named at their versions too: else apt
  # may upgrade them to satisfy the headers' dependencies
  server=$(dpkg-query -W -f='${Version}' postgresql-15)
  client=$(dpkg-query -W -f='${Version}' postgresql-client-15)
  echo "install-deps: installing $headers=$server" >&2
  $SUDO apt-get install -y -qq --no-install-recommends "$headers=$server" \
      "postgresql-15=$server" "postgresql-client-15=$client" >/dev/null ||
    echo "install-deps: $headers $server is not to be had: the security label test" \
         "(tests/pg/sm_label.c) will fail" >&2
fi
