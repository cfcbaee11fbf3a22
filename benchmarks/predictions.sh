#!/usr/bin/env bash
# benchmarks/predictions.sh: the predictions example's ingestion (issue 17, "Benchmark"):
# accepted predictions/s through POST /input and the lag until they count in GET /live.
#
#   memory  one `predictions` process on the memory backends (API and consumer in it)
#   real    `predictions --role api` and two `--role consumer` replicas on the 3-broker Kafka
#           (a topic of 12 partitions, RF 3, min ISR 2), MariaDB (the logs) and Redis (the
#           aggregates)
# Load: `wrk -t1 -c$CONNECTIONS -d$DURATION` posting the data set generator's predictions in
# turn (examples/predictions/wrk_post.lua; loadgen replaces wrk once it is merged). Accepted/s
# is the servers' own count (predictions_inputs_total{outcome="accepted"} over the run), not
# the client's. The lag is predictions_lag_seconds (from the 202's timestamp at the API to the
# count in the aggregates, which GET /live reads directly; the pages' streams add at most the
# push interval, 200 ms), its p99 the upper bound of the bucket holding the 99th percentile,
# summed over the consumers; measured until the consumers caught up (bounded: 120 s).
# Prints every run and ends with:
#   accepted_per_s_memory, accepted_per_s_real, lag_p99_s_memory, lag_p99_s_real
#   ratio_memory: <memory accepted/s / 30000>   ratio_real: <real accepted/s / 10000>
#   ratio_lag_real: <1 s / real p99 lag>        (each goal >= 1)
#
# Environment: BUILD_DIR (an existing release build; default: build the `predictions` target in
# build/release), DURATION (10s), CONNECTIONS (64), SERVERS_ENV (an env file of running servers,
# as scripts/servers.sh writes; default: start MariaDB, Redis and Kafka of the script's own under
# a temporary BULWARK_SERVERS_DIR and stop them at the end), MODES ("memory real").
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source scripts/lib.sh

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
MODES=${MODES:-memory real}
if [ -z "${BUILD_DIR:-}" ]; then
  BUILD_DIR=build/release
  cmake --preset release >/dev/null
  cmake --build "$BUILD_DIR" --target predictions >/dev/null
fi
BIN="$BUILD_DIR/examples/predictions/predictions"
[ -x "$BIN" ] || { echo "no $BIN: build the predictions target" >&2; exit 1; }
command -v wrk >/dev/null || { echo "needs wrk (scripts/install-deps.sh --all)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/bulwark-predictions-bench.XXXXXX)
pids=()
own_servers=0
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [ "$own_servers" = 1 ] && { "$root/scripts/servers.sh" down mysql redis kafka >/dev/null 2>&1 || true; }
  rm -rf "$tmp"
}
trap cleanup EXIT

python3 examples/predictions/dataset.py -n 20000 --seed 1 --lines >"$tmp/data.jsonl"

# start NAME ARGS... -> runs predictions in the background, waits for its port (sets $port).
start() {
  local name=$1; shift
  "$BIN" "$@" >"$tmp/$name.log" 2>&1 &
  pids+=($!)
  port=
  for _ in $(seq 600); do
    port=$(sed -n 's|^predictions: listening on http://127\.0\.0\.1:\([0-9]*\) .*|\1|p' "$tmp/$name.log")
    [ -n "$port" ] && return 0
    sleep 0.1
  done
  echo "$name did not start:" >&2
  cat "$tmp/$name.log" >&2
  return 1
}

metric() { # metric PORT NAME_REGEX -> the sum of the matching samples
  curl -s "http://127.0.0.1:$1/metrics" | awk -v re="$2" '$1 ~ re { s += $2 } END { printf "%.0f", s }'
}

# lag_p99 PORT... -> the p99 of predictions_lag_seconds over the given processes (bucket bound).
lag_p99() {
  local p
  for p in "$@"; do curl -s "http://127.0.0.1:$p/metrics"; done | python3 -c '
import re, sys
buckets = {}
for line in sys.stdin:
    m = re.match(r"predictions_lag_seconds_bucket\{le=\"([^\"]+)\"\} (\S+)", line)
    if m:
        le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
        buckets[le] = buckets.get(le, 0) + float(m.group(2))
total = buckets.get(float("inf"), 0)
if not total:
    print("nan"); sys.exit()
for le in sorted(buckets):
    if buckets[le] >= 0.99 * total:
        print(le); break'
}

# run MODE API_PORT CONSUMER_PORTS... -> wrk against the API, then waits until the consumers
# counted everything accepted; prints the run and sets accepted_rate and p99.
run() {
  local mode=$1 api=$2; shift 2
  local before after counted start_ns end_ns seconds
  before=$(metric "$api" '^predictions_inputs_total\\{outcome="accepted"\\}')
  start_ns=$(date +%s%N)
  PREDICTIONS_DATA="$tmp/data.jsonl" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s examples/predictions/wrk_post.lua \
    "http://127.0.0.1:$api" >"$tmp/wrk-$mode.log" 2>&1
  end_ns=$(date +%s%N)
  after=$(metric "$api" '^predictions_inputs_total\\{outcome="accepted"\\}')
  seconds=$(awk -v a="$start_ns" -v b="$end_ns" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
  accepted_rate=$(awk -v n="$((after - before))" -v s="$seconds" 'BEGIN { printf "%.0f", n / s }')
  local p
  for _ in $(seq 1200); do
    counted=0
    for p in "$@"; do counted=$((counted + $(metric "$p" '^predictions_consumed_total\\{outcome="counted"\\}'))); done
    [ "$counted" -ge "$after" ] && break
    sleep 0.1
  done
  p99=$(lag_p99 "$@")
  echo "$mode: accepted $((after - before)) in ${seconds}s = $accepted_rate/s; counted $counted of $after; lag p99 <= ${p99}s; wrk: $(grep -E 'Requests/sec|Non-2xx|Socket errors' "$tmp/wrk-$mode.log" | tr -s ' ' | tr '\n' ' ')"
}

for mode in $MODES; do
  case $mode in
    memory)
      start memory --port 0
      run memory "$port" "$port"
      memory_rate=$accepted_rate memory_p99=$p99
      kill "${pids[-1]}"
      ;;
    real)
      if [ -n "${SERVERS_ENV:-}" ]; then
        source "$SERVERS_ENV"
      else
        export BULWARK_SERVERS_DIR="$tmp/servers"
        mkdir -p "$BULWARK_SERVERS_DIR"
        own_servers=1
        scripts/servers.sh up mysql redis kafka >/dev/null
        source "$BULWARK_SERVERS_DIR/env"
      fi
      suffix="bench_$(date +%s)_$$"
      export PREDICTIONS_BACKEND=real PREDICTIONS_KAFKA="$BULWARK_KAFKA_BOOTSTRAP" PREDICTIONS_TOPIC="predictions_$suffix" \
        PREDICTIONS_GROUP="predictions_$suffix" PREDICTIONS_PARTITIONS=12 \
        PREDICTIONS_MYSQL_HOST="$BULWARK_MYSQL_HOST" PREDICTIONS_MYSQL_PORT="$BULWARK_MYSQL_PORT" \
        PREDICTIONS_MYSQL_USER="$BULWARK_MYSQL_USER" PREDICTIONS_MYSQL_PASSWORD="${BULWARK_MYSQL_PASSWORD:-}" \
        PREDICTIONS_MYSQL_DATABASE="${BULWARK_MYSQL_DATABASE:-bulwark_test}" PREDICTIONS_LOGS_TABLE="predictions_$suffix" \
        PREDICTIONS_REDIS_HOST="$BULWARK_REDIS_HOST" \
        PREDICTIONS_REDIS_PORT="$BULWARK_REDIS_PORT" PREDICTIONS_REDIS_PREFIX="predictions_$suffix"
      start api --role api --port 0
      api=$port
      start consumer1 --role consumer --port 0
      c1=$port
      start consumer2 --role consumer --port 0
      c2=$port
      run real "$api" "$c1" "$c2"
      real_rate=$accepted_rate real_p99=$p99
      mysql -h "$BULWARK_MYSQL_HOST" -P "$BULWARK_MYSQL_PORT" -u "$BULWARK_MYSQL_USER" -p"${BULWARK_MYSQL_PASSWORD:-}" \
        -e "DROP TABLE IF EXISTS predictions_$suffix" "${BULWARK_MYSQL_DATABASE:-bulwark_test}" 2>/dev/null || true
      redis-cli -h "$BULWARK_REDIS_HOST" -p "$BULWARK_REDIS_PORT" --scan --pattern "predictions_$suffix:*" |
        xargs -r -n 500 redis-cli -h "$BULWARK_REDIS_HOST" -p "$BULWARK_REDIS_PORT" DEL >/dev/null || true
      ;;
    *) echo "unknown mode $mode" >&2; exit 1 ;;
  esac
done

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -n "${memory_rate:-}" ]; then
  echo "accepted_per_s_memory: $memory_rate"
  echo "lag_p99_s_memory: $memory_p99"
  echo "ratio_memory: $(div "$memory_rate" 30000)"
fi
if [ -n "${real_rate:-}" ]; then
  echo "accepted_per_s_real: $real_rate"
  echo "lag_p99_s_real: $real_p99"
  echo "ratio_real: $(div "$real_rate" 10000)"
  echo "ratio_lag_real: $(awk -v p="$real_p99" 'BEGIN { if (p == "nan" || p == "inf") print "0.00"; else printf "%.2f", 1 / p }')"
fi
