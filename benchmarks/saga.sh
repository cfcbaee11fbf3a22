#!/usr/bin/env bash
# Sagas and the ledger (issue 13's benchmarks), on one machine, loopback only.
#   ledger apply/s, each apply a new op id taking 1 unit from one balance, on a hot key (every
#   apply the same balance) and spread over 10,000 keys:
#     memory::ledger (one thread, through its task interface)
#     redis::ledger on a private redis-server, IN_FLIGHT coroutines on one thread, one connection
#     raw: the same apply Lua script (EVALSHA, the same KEYS and ARGV) from hiredis's synchronous
#          API on one connection, IN_FLIGHT commands kept in flight by pipelining
#   the saga orchestrator's sagas/s, local and remote steps (saga_orchestrator_section below)
# The last lines are
#   ratio_ledger: <redis::ledger / raw hiredis, hot and spread combined (2 / (1/hot + 1/spread))>
#                 (goal >= 0.9)
# and the load average it ran under is printed before them (2 cores shared: a busy machine
# inflates every figure). Each figure is the median of RUNS runs (default 5), the Redis and raw runs
# interleaved.
# Usage: benchmarks/saga.sh                         builds the release preset's targets
#        BUILD_DIR=build/release benchmarks/saga.sh uses that build
# Environment: REQUESTS (default 100000 per Redis run), REQUESTS_MEMORY (default 1000000),
#              IN_FLIGHT (default 50), RUNS (default 5), SAGAS_LOCAL (default 200000),
#              SAGAS_REMOTE (default 50000).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

bench_executables saga bench_saga_ledger bench_saga_orchestrator
ledger_bench="$BUILD_DIR/benchmarks/saga/bench_saga_ledger"
orchestrator_bench="$BUILD_DIR/benchmarks/saga/bench_saga_orchestrator"
requests=${REQUESTS:-100000}
requests_memory=${REQUESTS_MEMORY:-1000000}
in_flight=${IN_FLIGHT:-50}
runs=${RUNS:-5}
sagas_local=${SAGAS_LOCAL:-200000}
sagas_remote=${SAGAS_REMOTE:-50000}

work=$(mktemp -d)
redis_pid=
cleanup() { stop_private_redis; rm -rf "$work"; }
trap cleanup EXIT
private_redis "$work"
port=$redis_port

# once BACKEND KEYS REQUESTS -> "ops/s client-CPU-us/op" of one run (a failed run stops the script)
once() {
  "$ledger_bench" --backend "$1" --keys "$2" --requests "$3" --concurrency "$in_flight" --port "$port" |
    awk '/^client_cpu_us_per_op:/ { cpu = $2 } /^ops_per_sec:/ { rate = $2 } END { print rate, cpu }'
}
# median FILE -> the line of FILE with the median ops/s
median() { sort -n "$1" | awk '{ v[NR] = $0 } END { print v[int((NR + 1) / 2)] }'; }

# The saga orchestrator's figures: sagas/s of a three-step saga with local steps on the memory
# models, and with remote steps over the memory bus (bench_saga_orchestrator prints each run's
# wall and CPU rates; the goal, 100,000 local sagas/s on one core, reads against the CPU rate).
saga_orchestrator_section() {
  echo "saga orchestrator (three steps, memory models; SAGAS_LOCAL=$sagas_local, SAGAS_REMOTE=$sagas_remote):"
  "$orchestrator_bench" "$sagas_local" "$sagas_remote"
}

echo "redis-server $(redis-server --version | awk '{print $3}' | cut -d= -f2) on 127.0.0.1:$port, $(nproc) cores, $in_flight in flight, median of $runs"
for _ in $(seq "$runs"); do
  once memory hot "$requests_memory" >>"$work/memory_hot"
  once memory spread "$requests_memory" >>"$work/memory_spread"
done
read -r mem_hot mem_hot_cpu < <(median "$work/memory_hot")
read -r mem_spread mem_spread_cpu < <(median "$work/memory_spread")
echo "memory::ledger                 hot $mem_hot applies/s ($mem_hot_cpu us CPU each)   spread $mem_spread applies/s ($mem_spread_cpu us)"
# Interleaved, so that a change in the machine's load hits both sides alike.
for _ in $(seq "$runs"); do
  for keys in hot spread; do
    once redis "$keys" "$requests" >>"$work/redis_$keys"
    once raw "$keys" "$requests" >>"$work/raw_$keys"
  done
done
read -r redis_hot redis_hot_cpu < <(median "$work/redis_hot")
read -r raw_hot raw_hot_cpu < <(median "$work/raw_hot")
read -r redis_spread redis_spread_cpu < <(median "$work/redis_spread")
read -r raw_spread raw_spread_cpu < <(median "$work/raw_spread")
echo "redis::ledger                  hot $redis_hot applies/s ($redis_hot_cpu us client CPU each)   spread $redis_spread applies/s ($redis_spread_cpu us)"
echo "raw hiredis, the same script   hot $raw_hot applies/s ($raw_hot_cpu us client CPU each)   spread $raw_spread applies/s ($raw_spread_cpu us)"
echo "  ratio hot: $(div "$redis_hot" "$raw_hot")   ratio spread: $(div "$redis_spread" "$raw_spread")   (throughput is the server's: the client CPU is what bulwark adds)"
saga_orchestrator_section
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "ratio_ledger: $(div "$(mixed "$redis_hot" "$redis_spread")" "$(mixed "$raw_hot" "$raw_spread")")"
