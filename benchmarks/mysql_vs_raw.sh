#!/usr/bin/env bash
# mysql::repository against a raw prepared-statement loop on the C API: point get and
# compare-and-set put, 8 concurrent callers, 8 connections each side, one MariaDB server that
# this script starts (and stops) on a free loopback port with a throwaway datadir.
#   benchmarks/mysql_vs_raw.sh                 builds the release preset target
#   BUILD_DIR=build/release benchmarks/mysql_vs_raw.sh   uses an existing build
#   BENCH_SECONDS=1 BENCH_ROUNDS=6             slice length and count (the defaults)
# Prints ops/s for each side, then `ratio_get: <repository/raw>` and `ratio_put: <...>`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
if [ -z "${BUILD_DIR:-}" ]; then
  cmake --preset release >/dev/null
  cmake --build build/release --target mysql_vs_raw >/dev/null
  BUILD_DIR=build/release
fi
bench="$BUILD_DIR/benchmarks/mysql/mysql_vs_raw"
[ -x "$bench" ] || { echo "mysql_vs_raw.sh: $bench not built" >&2; exit 1; }

BULWARK_SERVERS_DIR=$(mktemp -d /tmp/bulwark-mysql-bench.XXXXXX)
export BULWARK_SERVERS_DIR
cleanup() { "$root/scripts/servers/mysql.sh" down >/dev/null 2>&1 || true; rm -rf "$BULWARK_SERVERS_DIR"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
"$root/scripts/servers/mysql.sh" up >/dev/null
# shellcheck disable=SC1091
source "$BULWARK_SERVERS_DIR/env"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(mariadbd --version | awk '{print $3}')"
"$bench"
