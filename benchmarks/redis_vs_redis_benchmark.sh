#!/usr/bin/env bash
# redis::cache against redis-benchmark on one redis-server (loopback), 100-byte values.
#   1. GET and SET, 50 concurrent coroutines on one thread  vs  redis-benchmark -c 50 -P 1
#      (the same 50 requests in flight; bulwark pipelines them automatically)
#   2. GET and SET, 800 concurrent coroutines on one thread vs  redis-benchmark -c 50 -P 16
# A SET here is redis::cache::put: one EVALSHA of the version-checking Lua script, against a
# plain SET for redis-benchmark. Each ratio is that of the GET+SET throughput (equal numbers of
# both: 2 / (1/get + 1/set)); the per-command ratios are printed too. The last two lines are
#   ratio: <bulwark/redis-benchmark, section 1>          (goal >= 2.0)
#   ratio_pipelined: <bulwark/redis-benchmark, section 2> (goal >= 0.8)
# Usage: benchmarks/redis_vs_redis_benchmark.sh        builds the release preset's target
#        BUILD_DIR=build/release benchmarks/redis_vs_redis_benchmark.sh   uses that build
# Environment: REQUESTS (section 1, default 400000), REQUESTS_PIPELINED (default 2000000).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

bench_executables redis bulwark_redis_benchmark
bench="$BUILD_DIR/benchmarks/redis/bulwark_redis_benchmark"
requests=${REQUESTS:-400000}
requests_pipelined=${REQUESTS_PIPELINED:-2000000}

work=$(mktemp -d)
redis_pid=
cleanup() { stop_private_redis; rm -rf "$work"; }
trap cleanup EXIT
private_redis "$work"
port=$redis_port

# redis_benchmark PIPELINE REQUESTS -> "set_rps get_rps"
redis_benchmark() {
  redis-benchmark -h 127.0.0.1 -p "$port" -c 50 -P "$1" -n "$2" -d 100 -t set,get --csv 2>/dev/null |
    awk -F'"' '$2 == "SET" { set = $4 } $2 == "GET" { get = $4 } END { printf "%.0f %.0f\n", set, get }'
}
# bulwark OP CONCURRENCY REQUESTS -> ops/s
bulwark() {
  "$bench" --port "$port" --op "$1" --concurrency "$2" --requests "$3" --value-size 100 --pool "${POOL:-1}" |
    awk '/^ops_per_sec:/ { print $2 }'
}

echo "redis-server $(redis-server --version | awk '{print $3}' | cut -d= -f2) on 127.0.0.1:$port, 100-byte values, $(nproc) cores"
redis_section "section 1: 50 in flight" 50 1 "$requests" "$(( requests / 2 ))" \
  "redis-benchmark -c 50 -P 1: " "redis::cache, 50 coroutines:"
ratio=$section_ratio
redis_section "section 2: 800 in flight" 800 16 "$requests_pipelined" "$(( requests_pipelined / 4 ))" \
  "redis-benchmark -c 50 -P 16:" "redis::cache, 800 coroutines:"
ratio_pipelined=$section_ratio
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "ratio: $ratio"
echo "ratio_pipelined: $ratio_pipelined"
