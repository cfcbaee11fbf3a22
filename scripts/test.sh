#!/usr/bin/env bash
# Installs what is missing, starts the test servers on free loopback ports, builds every target
# but the benchmarks in the release preset (-O2 for the examples: a sixth to a quarter less
# compile time than the -O3 users get and the benchmarks measure, and GCC's optimising passes
# still run, where it warns about what -O0 never shows it; -O1 for the tests, a third less
# compile time), runs the whole suite with ctest there (README and docs snippets included), stops
# the servers (also on failure or Ctrl-C), and runs the unit and conformance tests built with
# ASan+UBSan. Those two test executables are built only there, not also in the release build.
# The sanitizer build starts first and runs beside everything else at the lowest priority: it
# takes the CPU the release build leaves (its links, its last long files) and the release tests
# leave (they mostly wait on servers). CI's budget is 40 minutes on a fresh clone; the dev preset
# is for working by hand.
# Exits non-zero on any failure.
#   scripts/test.sh                  everything
#   SKIP_ASAN=1 scripts/test.sh      without the sanitizer pass
#   PRESET=dev scripts/test.sh       the suite on the debug build instead
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
# The channel-metadata topology (a ctest fixture, scripts/topology.sh) normally stops itself; a
# cut-short run leaves it up, so it goes first, then the servers (its MariaDB instances with them).
stop_servers() {
  local topology="build/${PRESET:-release}/topology"
  [ -f "$topology/settings" ] && { TOPOLOGY_DIR="$topology" scripts/topology.sh down >/dev/null 2>&1 || true; }
  scripts/servers.sh down >/dev/null 2>&1 || true
}
asan_build=   # the sanitizer build's process group while it runs
cleanup() {
  [ -n "$asan_build" ] && { kill -- "-$asan_build" 2>/dev/null || true; }
  stop_servers
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export CCACHE_DIR="${CCACHE_DIR:-$root/.cache/ccache}"
export CCACHE_SLOPPINESS="${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}"
jobs=$(nproc)
start=$(date +%s)
preset=${PRESET:-release}
unit_tests=ON
if [ "${SKIP_ASAN:-0}" != 1 ]; then
  cmake --preset asan >/dev/null
  # Only the executables whose tests it runs (labels unit and conformance), not every target;
  # its own process group, so that cleanup can stop all of it. setsid also gives it its own
  # scheduler autogroup, where its nice value counts only against itself: with autogroups on
  # (Debian's default) it took half the CPU from the release build. The autogroup's own nice
  # value is what puts it behind.
  mkdir -p build/asan
  setsid bash -c 'echo 19 >/proc/self/autogroup 2>/dev/null; exec nice -n 19 "$@"' asan-build \
    cmake --build --preset asan -j "$jobs" --target bulwark_unit bulwark_conformance_memory \
    >build/asan/build.log 2>&1 &
  asan_build=$!
  unit_tests=OFF # they run under ASan+UBSan; not built a second time at -O1
fi

# Not the benchmarks: each benchmarks/*.sh builds what it runs (its `cmake --preset release`
# turns them on again), and their ~220 CPU seconds do not fit CI's budget beside the examples.
# The examples at -O2 (examples/CMakeLists.txt): their tests measure no speed.
cmake --preset "$preset" -DBULWARK_BUILD_BENCHMARKS=OFF -DBULWARK_BUILD_UNIT_TESTS=$unit_tests \
  -DBULWARK_EXAMPLES_OPTIMIZATION=-O2 >/dev/null
cmake --build --preset "$preset" -j "$jobs"
echo "test.sh: $preset build done in $(( $(date +%s) - start )) s"

servers_start=$(date +%s)
scripts/servers.sh up
echo "test.sh: servers up in $(( $(date +%s) - servers_start )) s"
# shellcheck disable=SC1091
source "$BULWARK_SERVERS_DIR/env"
export BULWARK_REQUIRE_SERVERS=1   # a backend test whose server is missing fails, never skips
# The channel-metadata topology (e2e tests) uses these Kafka, Hazelcast and Redis servers rather
# than starting its own: each kind of server starts once per run.
export TOPOLOGY_SERVERS_ENV="$BULWARK_SERVERS_DIR/env"

status=0
tests_start=$(date +%s)
# --repeat until-pass:2: channel_metadata_integration's mariadb_outage_202_pending_then_replayed_by_crs
# failed about once in 40 runs after its known cause (a consumer joining a just-created topic
# before its broker knew it) was fixed; the test now prints CRS's metrics and logs when it fails.
# Until that residual cause is found, a single failure must not sink the run; a second one does.
ctest --preset "$preset" -j "$jobs" --timeout 600 --repeat until-pass:2 || status=1
echo "test.sh: $preset tests done in $(( $(date +%s) - tests_start )) s"
# The sanitizer pass needs no servers: free their memory (eight JVMs) first.
stop_servers

if [ -n "$asan_build" ]; then
  asan_start=$(date +%s)
  if wait "$asan_build"; then
    asan_build=
    tail -n 3 build/asan/build.log
    echo "test.sh: asan build done $(( $(date +%s) - asan_start )) s after the release tests"
    ctest --preset asan -j "$jobs" --timeout 600 || status=1
    echo "test.sh: asan tests done in $(( $(date +%s) - asan_start )) s"
  else
    asan_build=
    cat build/asan/build.log
    echo "test.sh: asan build failed"
    status=1
  fi
fi
echo "test.sh: finished in $(( $(date +%s) - start )) s, status $status"
exit $status
