#!/usr/bin/env bash
# redis::cache over a Redis Cluster client against `redis-benchmark --cluster`, on a private
# six-node cluster (three masters, three replicas; scripts/servers/redis-cluster.sh) on
# loopback, 100-byte values, in the same run:
#   1. GET and SET, 50 concurrent coroutines on one thread  vs  redis-benchmark --cluster -c 50 -P 1
#      (the same 50 requests in flight; bulwark pipelines them automatically, per node)
#   2. GET and SET, 800 concurrent coroutines on one thread vs  redis-benchmark --cluster -c 50 -P 16
# Key layout: without -r, redis-benchmark --cluster uses one key per master (a hash tag per
# node); so do bulwark's workers in sections 1 and 2 (--keys 3 --tagged 1: three keys, one per
# master), as the single-node script uses one key; a turn's puts then make one script call per
# master. A SET here is redis::cache::put (an EVALSHA of the
# version-checking script per slot and turn) against a plain SET. A third section shows the
# cost of keys spread over all slots (no tags): one script call per key and turn, since a
# script's keys must share a slot. Each ratio is that of the GET+SET throughput
# (2 / (1/get + 1/set)). Last lines:
#   ratio: <bulwark/redis-benchmark, section 1>          (goal >= 2.0)
#   ratio_pipelined: <bulwark/redis-benchmark, section 2> (goal >= 0.8)
# Usage: benchmarks/redis_cluster_vs_redis_benchmark.sh        builds the release preset's target
#        BUILD_DIR=build/release benchmarks/redis_cluster_vs_redis_benchmark.sh   uses that build
# Environment: REQUESTS (section 1, default 400000), REQUESTS_PIPELINED (default 2000000).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

bench_executables redis bulwark_redis_benchmark
bench="$BUILD_DIR/benchmarks/redis/bulwark_redis_benchmark"
requests=${REQUESTS:-400000}
requests_pipelined=${REQUESTS_PIPELINED:-2000000}

private_redis_cluster
first=${nodes%%,*}

# redis_benchmark PIPELINE REQUESTS -> "set_rps get_rps"
redis_benchmark() {
  redis-benchmark --cluster -h 127.0.0.1 -p "${first#*:}" -c 50 -P "$1" -n "$2" -d 100 -t set,get --csv 2>/dev/null |
    awk -F'"' '$2 == "SET" { set = $4 } $2 == "GET" { get = $4 } END { printf "%.0f %.0f\n", set, get }'
}
# bulwark OP CONCURRENCY REQUESTS [KEYS TAGGED] -> ops/s; the client's CPU time per operation
# (us) goes to $work/cpu_OP_CONCURRENCY_KEYS, read by client_cpu.
bulwark() {
  local out
  out=$("$bench" --cluster "$nodes" --op "$1" --concurrency "$2" --keys "${4:-3}" --requests "$3" --value-size 100 \
    --tagged "${5:-1}")
  awk '/^client_cpu_us_per_op:/ { print $2 }' <<<"$out" >"$work/cpu_$1_$2_${4:-3}"
  awk '/^ops_per_sec:/ { print $2 }' <<<"$out"
}
# client_cpu CONCURRENCY [KEYS] -> "GET x us, SET y us" (the last bulwark runs' CPU per operation)
client_cpu() {
  echo "GET $(cat "$work/cpu_get_$1_${2:-3}") us, SET $(cat "$work/cpu_set_$1_${2:-3}") us"
}

echo "redis-server $(redis-server --version | awk '{print $3}' | cut -d= -f2) cluster (3 masters, 3 replicas) on $nodes, 100-byte values, $(nproc) cores"
redis_section "section 1: 50 in flight" 50 1 "$requests" "$(( requests / 2 ))" \
  "redis-benchmark --cluster -c 50 -P 1: " "redis::cache on the cluster, 50 coroutines:"
ratio=$section_ratio
echo "  redis::cache client CPU per operation: $(client_cpu 50)"
redis_section "section 2: 800 in flight" 800 16 "$requests_pipelined" "$(( requests_pipelined / 4 ))" \
  "redis-benchmark --cluster -c 50 -P 16:" "redis::cache on the cluster, 800 coroutines:"
ratio_pipelined=$section_ratio
echo "  redis::cache client CPU per operation: $(client_cpu 800)"
pipelined_reference=$section_reference

bws_get=$(bulwark get 800 "$requests_pipelined" 800 0)
bws_set=$(bulwark set 800 "$(( requests_pipelined / 20 ))" 800 0)
echo "section 3: 800 in flight, 800 keys spread over the slots (no hash tags)"
echo "  redis::cache on the cluster, 800 coroutines: GET $bws_get ops/s   SET $bws_set ops/s   GET+SET $(mixed "$bws_get" "$bws_set") ops/s"
echo "  redis::cache client CPU per operation: $(client_cpu 800 800)"
echo "  ratio_spread (vs section 2's redis-benchmark): $(div "$(mixed "$bws_get" "$bws_set")" "$pipelined_reference")"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "ratio: $ratio"
echo "ratio_pipelined: $ratio_pipelined"
