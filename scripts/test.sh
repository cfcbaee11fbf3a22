#!/usr/bin/env bash
# Installs what is missing, starts the test servers on free loopback ports, builds, runs the
# whole suite with ctest (dev preset, README and docs snippets included), stops the servers
# (also on failure or Ctrl-C), builds every target again optimised (release preset) and runs
# its unit tests, then the unit and conformance labels under ASan+UBSan. Exits non-zero on any
# failure.
#   scripts/test.sh            everything
#   SKIP_RELEASE=1 scripts/test.sh   without the optimised build
#   SKIP_ASAN=1 scripts/test.sh      without the sanitizer pass
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scripts/install-deps.sh
scripts/check-format.sh

export BULWARK_SERVERS_DIR="$root/.servers"
# Servers an interrupted earlier run left behind are stopped before their pidfiles go.
[ -d "$BULWARK_SERVERS_DIR" ] && { scripts/servers.sh down >/dev/null 2>&1 || true; }
rm -rf "$BULWARK_SERVERS_DIR"
mkdir -p "$BULWARK_SERVERS_DIR"
cleanup() { scripts/servers.sh down >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

export CCACHE_DIR="${CCACHE_DIR:-$root/.cache/ccache}"
export CCACHE_SLOPPINESS="${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}"
jobs=$(nproc)
start=$(date +%s)
cmake --preset dev >/dev/null
cmake --build --preset dev -j "$jobs"
echo "test.sh: dev build done in $(( $(date +%s) - start )) s"

scripts/servers.sh up
# shellcheck disable=SC1091
source "$BULWARK_SERVERS_DIR/env"
export BULWARK_REQUIRE_SERVERS=1   # a backend test whose server is missing fails, never skips

status=0
ctest --preset dev -j "$jobs" --timeout 600 || status=1
# The release and sanitizer passes need no servers: free their memory (eight JVMs) first.
cleanup

# Every target, tests included, also builds as `cmake -DCMAKE_BUILD_TYPE=Release` does (-O3),
# where GCC warns about what -O0 never shows it; the unit tests run there too (seconds).
if [ "${SKIP_RELEASE:-0}" != 1 ]; then
  release_start=$(date +%s)
  cmake --preset release >/dev/null
  cmake --build --preset release -j "$jobs"
  ctest --preset release -j "$jobs" --timeout 600 || status=1
  echo "test.sh: release build and unit tests done in $(( $(date +%s) - release_start )) s"
fi

if [ "${SKIP_ASAN:-0}" != 1 ]; then
  cmake --preset asan >/dev/null
  cmake --build --preset asan -j "$jobs"
  ctest --preset asan -j "$jobs" --timeout 600 || status=1
fi
echo "test.sh: finished in $(( $(date +%s) - start )) s, status $status"
exit $status
