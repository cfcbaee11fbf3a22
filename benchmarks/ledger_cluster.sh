#!/usr/bin/env bash
# redis::ledger on a Redis Cluster: what splitting an apply across slots costs against an apply in
# one slot. On a private six-node cluster (scripts/servers/redis-cluster.sh, three masters, three
# replicas) on loopback; each apply moves 1 unit on two keys of 1,000 pairs (bench_saga_ledger
# --backend cluster --shape ...):
#   tagged    a {tag} prefix: the whole ledger in one slot (one master), one script per apply
#   local     no tag; the op id and both keys share a per-pair {tag}: one script, spread
#   debits    no tag; two debits in two slots: split (plan, both parts at once, state)
#   transfer  no tag; a debit and a credit in two slots: split (plan, debit, credit, state)
# at IN_FLIGHT=1 (latency: the round trips) and IN_FLIGHT=50 (throughput), the median of RUNS.
# Last lines:
#   ratio_split_latency: <local latency / debits latency>   (1 round trip against 2)
#   ratio_split:         <debits applies/s / local applies/s, at 50 in flight>
# Usage: benchmarks/ledger_cluster.sh                        builds the release preset's target
#        BUILD_DIR=build/release benchmarks/ledger_cluster.sh uses that build
# Environment: REQUESTS (default 50000 at 50 in flight; a tenth at 1), IN_FLIGHT (default 50),
#              RUNS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

bench_executables saga bench_saga_ledger
bench="$BUILD_DIR/benchmarks/saga/bench_saga_ledger"
requests=${REQUESTS:-50000}
in_flight=${IN_FLIGHT:-50}
runs=${RUNS:-3}

private_redis_cluster

# once SHAPE IN_FLIGHT REQUESTS -> "ops/s latency-us client-CPU-us commands/apply"
once() {
  "$bench" --backend cluster --seeds "$nodes" --shape "$1" --concurrency "$2" --requests "$3" |
    awk '/commands_per_apply=/ { for (i = 1; i <= NF; ++i) if ($i ~ /^commands_per_apply=/) { split($i, kv, "="); c = kv[2] } }
         /^client_cpu_us_per_op:/ { cpu = $2 } /^latency_us:/ { lat = $2 } /^ops_per_sec:/ { rate = $2 }
         END { print rate, lat, cpu, c }'
}
median() { sort -n "$1" | awk '{ v[NR] = $0 } END { print v[int((NR + 1) / 2)] }'; }

echo "redis-server $(redis-server --version | awk '{print $3}' | cut -d= -f2), private cluster $nodes, $(nproc) cores, median of $runs, load $(cut -d' ' -f1-3 /proc/loadavg)"
shapes="tagged local debits transfer"
for _ in $(seq "$runs"); do # interleaved: a change in the machine's load hits every shape alike
  for shape in $shapes; do
    once "$shape" 1 $((requests / 10)) >>"$work/$shape.1"
    once "$shape" "$in_flight" "$requests" >>"$work/$shape.n"
  done
done
for shape in $shapes; do
  read -r rate1 lat1 _ cmd < <(median "$work/$shape.1")
  read -r rate lat cpu _ < <(median "$work/$shape.n")
  printf '%-9s 1 in flight: %8s applies/s, %7s us each   %s in flight: %8s applies/s (%s us client CPU each)   %s commands per apply\n' \
    "$shape" "$rate1" "$lat1" "$in_flight" "$rate" "$cpu" "$cmd"
  eval "rate_$shape=$rate lat_$shape=$lat1"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "ratio_split_latency: $(div "$lat_local" "$lat_debits")"
echo "ratio_split: $(div "$rate_debits" "$rate_local")"
