#!/usr/bin/env bash
# benchmarks/predictions.sh: the predictions example's ingestion (issue 17, "Benchmark"):
# accepted predictions/s through POST /input and the lag until they count in GET /live.
#
#   memory  one `predictions` process on the memory backends (API and consumer in it)
#   real    `predictions --role api` and two `--role consumer` replicas on the 3-broker Kafka
#           (a topic of 12 partitions, RF 3, min ISR 2), MariaDB (the logs) and Redis (the
#           aggregates)
# Load: `loadgen -c $CONNECTIONS -d $DURATION -f data.json` (tools/loadgen, closed model: each
# connection sends its next prediction when the previous one was answered) posting the data set
# generator's predictions in turn. An ingestion API is driven by many clients: the default 1,000
# connections keep enough requests in flight for the producer to fill its batches (with 64 the
# script measured what the cluster gives 64 messages in flight: about 1,000/s on a quiet
# machine, a few hundred under load). The producer's linger is LINGER_MS (default 20, the
# example's default) on both the API and raw_window's ceiling.
# Accepted/s
# is the servers' own count (predictions_inputs_total{outcome="accepted"} over the run), not
# the client's. The lag is predictions_lag_seconds (from the 202's timestamp at the API to the
# count in the aggregates, which GET /live reads directly; the pages' streams add at most the
# push interval, 200 ms), its p99 given as the bucket holding the 99th percentile (the buckets
# are 50 ms apart from 0.75 s to 1.25 s) and an interpolation inside it, summed over the
# consumers; measured until the consumers caught up (bounded: 120 s). lag_p99_s_* and
# ratio_lag_real use the bucket's upper bound: a p99 of at most that, never a guess below it.
# Per run it also prints loadgen's request latency (p50, p99), the CPU time each process spent per
# accepted input over the run and the consumers' catch-up (the API, the consumers, and the
# servers when the script started them: the brokers, mariadbd, redis-server), and the load
# average before and after: the machine is shared, and a figure means little without them.
# Each mode first runs WARMUP of the same load, not counted: brokers just started run
# interpreted code and compile it for their first minutes (the first version of this script
# measured them cold). Real mode also measures the ceiling the cluster sets: benchmarks/kafka/
# raw_window.c, raw librdkafka with the producer's settings keeping as many messages in flight as
# loadgen has connections, on a topic of the same shape, just before the API's run
# (`ratio_real_to_raw_librdkafka:` = the API's accepted/s over it; about 1 means the cluster, not
# the example or the library, bounds the figure).
# Prints every run and ends with:
#   accepted_per_s_memory, accepted_per_s_real, lag_p99_s_memory, lag_p99_s_real
#   ratio_memory: <memory accepted/s / 30000>   ratio_real: <real accepted/s / 10000>
#   ratio_lag_real: <1 s / real p99 lag>        (each goal >= 1)
# The closed loop saturates the pipeline, so its lag is mostly queueing. Real mode then also runs
# loadgen's open model at GOAL_RATE (10,000/s, the goal's rate; 0: skip) for DURATION and prints
#   lag_p99_s_real_at_<GOAL_RATE>_per_s, ratio_lag_real_at_goal_rate: <1 s / that p99 lag>
# the lag an operator sees with the service running at the goal's rate.
#
# Environment: BUILD_DIR (an existing release build; default: build the `predictions` target in
# build/release), DURATION (10s), WARMUP (30s of the same load before the measured run, not
# counted; 0: none), CONNECTIONS (1000; the file-descriptor limit must allow it twice, the
# server's max_connections is 10,000), SERVERS_ENV (an env file of running servers,
# as scripts/servers.sh writes; default: start MariaDB, Redis and Kafka of the script's own under
# a temporary BULWARK_SERVERS_DIR and stop them at the end; on servers given this way the run's
# table, Redis keys and both topics are deleted after it), MODES ("memory real"), GOAL_RATE (10000).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source scripts/lib.sh

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-30s}
CONNECTIONS=${CONNECTIONS:-1000}
LINGER_MS=${LINGER_MS:-20}
GOAL_RATE=${GOAL_RATE:-10000}
MODES=${MODES:-memory real}
if [ -z "${BUILD_DIR:-}" ]; then
  BUILD_DIR=build/release
  cmake --preset release >/dev/null
  cmake --build "$BUILD_DIR" --target predictions loadgen >/dev/null
fi
BIN="$BUILD_DIR/examples/predictions/predictions"
LOADGEN="$BUILD_DIR/tools/loadgen/loadgen"
[ -x "$BIN" ] || { echo "no $BIN: build the predictions target" >&2; exit 1; }
[ -x "$LOADGEN" ] || { echo "no $LOADGEN: build the loadgen target" >&2; exit 1; }
# loadgen's connections and the API's, each a descriptor, in this shell's processes.
[ "$(ulimit -n)" -ge $((2 * CONNECTIONS + 256)) ] || ulimit -n $((2 * CONNECTIONS + 256)) || {
  echo "CONNECTIONS=$CONNECTIONS needs $((2 * CONNECTIONS + 256)) file descriptors (ulimit -n)" >&2
  exit 1
}

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

python3 examples/predictions/dataset.py -n 20000 --seed 1 >"$tmp/data.json"
if [[ " $MODES " == *" real "* ]]; then
  # shellcheck disable=SC2046
  cc -O2 -o "$tmp/raw_window" benchmarks/kafka/raw_window.c $(pkg-config --cflags --libs rdkafka)
fi

# start NAME ARGS... -> runs predictions in the background, waits for its port (sets $port).
start() {
  local name=$1; shift
  "$BIN" "$@" >"$tmp/$name.log" 2>&1 &
  pids+=($!)
  port=
  for _ in $(seq 600); do
    port=$(sed -n 's|^predictions: listening on http://127\.0\.0\.1:\([0-9]*\) .*|\1|p' "$tmp/$name.log" 2>/dev/null || true)
    [ -n "$port" ] && return 0
    sleep 0.1
  done
  echo "$name did not start:" >&2
  cat "$tmp/$name.log" >&2
  return 1
}

ticks_per_s=$(getconf CLK_TCK)
load() { cut -d' ' -f1-3 /proc/loadavg; }

# server_pids KIND -> the pids of the servers of KIND (kafka, mysql, redis) this script started
# (none when SERVERS_ENV was given).
server_pids() {
  [ "$own_servers" = 1 ] || return 0
  local f
  case $1 in
    kafka) f=("$BULWARK_SERVERS_DIR"/kafka/node*/pid) ;;
    mysql) f=("$BULWARK_SERVERS_DIR"/mysql/server.pid) ;;
    redis) f=("$BULWARK_SERVERS_DIR"/redis/*/pid) ;;
  esac
  for f in "${f[@]}"; do [ -f "$f" ] && cat "$f"; done | tr '\n' ' '
}

metric() { # metric PORT NAME_REGEX -> the sum of the matching samples
  curl -s "http://127.0.0.1:$1/metrics" | awk -v re="$2" '$1 ~ re { s += $2 } END { printf "%.0f", s }'
}

# lag_buckets PORT... -> "le count" lines of predictions_lag_seconds summed over the processes.
lag_buckets() {
  local p
  for p in "$@"; do curl -s "http://127.0.0.1:$p/metrics"; done |
    sed -n 's/^predictions_lag_seconds_bucket{le="\([^"]*\)"} \(.*\)$/\1 \2/p' |
    awk '{ s[$1] += $2 } END { for (k in s) print k, s[k] }'
}

# lag_p99 BEFORE_FILE PORT... -> the p99 of predictions_lag_seconds counted since BEFORE_FILE
# (lag_buckets' output then) over the given processes, as "UPPER LOWER ESTIMATE": the bounds of
# the bucket holding it (the p99 lies in (LOWER, UPPER]; the buckets are 50 ms apart from 0.75 s
# to 1.25 s, so around the 1 s goal the bound decides it) and a linear interpolation inside
# that bucket, as Prometheus' histogram_quantile makes it.
lag_p99() {
  local before=$1; shift
  lag_buckets "$@" | python3 -c '
import sys
def read(lines):
    out = {}
    for line in lines:
        le, n = line.split()
        out[float("inf") if le == "+Inf" else float(le)] = float(n)
    return out
before = read(open(sys.argv[1]))
now = read(sys.stdin)
buckets = {le: n - before.get(le, 0) for le, n in now.items()}
total = buckets.get(float("inf"), 0)
if not total:
    print("nan nan nan"); sys.exit()
lower, below = 0.0, 0.0
for le in sorted(buckets):
    if buckets[le] >= 0.99 * total:
        inside = buckets[le] - below
        estimate = le if le == float("inf") or inside <= 0 else lower + (le - lower) * (0.99 * total - below) / inside
        print(le, lower, "%.3f" % estimate); break
    lower, below = le, buckets[le]' "$before"
}

accepted() { metric "$1" '^predictions_inputs_total\\{outcome="accepted"\\}'; }

# wait_counted TARGET PORT... -> waits (120 s at most) until the consumers counted TARGET inputs;
# prints the count reached.
wait_counted() {
  local target=$1 counted p; shift
  for _ in $(seq 1200); do
    counted=0
    for p in "$@"; do counted=$((counted + $(metric "$p" '^predictions_consumed_total\\{outcome="counted"\\}'))); done
    [ "$counted" -ge "$target" ] && break
    sleep 0.1
  done
  echo "$counted"
}

# seconds_of DURATION -> a duration (10, 10s, 2m, 1h) in seconds.
seconds_of() {
  case $1 in
    *h) echo $((${1%h} * 3600)) ;;
    *m) echo $((${1%m} * 60)) ;;
    *s) echo "${1%s}" ;;
    *) echo "$1" ;;
  esac
}

# load_for DURATION PORT NAME -> loadgen posting the data set to the API for DURATION; its
# summary in $tmp/NAME.log, its JSON summary in $tmp/NAME.json. Exit status 1 (a request that
# did not get a 2xx) is reported in the run's line, not fatal.
load_for() {
  "$LOADGEN" -f "$tmp/data.json" -c "$CONNECTIONS" -d "$1" -q --json "$tmp/$3.json" \
    "http://127.0.0.1:$2/input" >"$tmp/$3.log" 2>&1 || true
}

# latency JSON PERCENTILE -> loadgen's latency at PERCENTILE (p50, p99) from its JSON summary, as "12.3ms".
latency() { python3 -c 'import json, sys; print("%.1fms" % json.load(open(sys.argv[1]))["latency_ms"][sys.argv[2]])' "$@"; }

# lag_ratio P99 -> 1 s over a p99 lag bound (0.00 when there is none: nan or inf).
lag_ratio() { awk -v p="$1" 'BEGIN { if (p == "nan" || p == "inf") print "0.00"; else printf "%.2f", 1 / p }'; }

# run MODE API_PID CONSUMER_PIDS API_PORT CONSUMER_PORTS... -> a warm-up (WARMUP, not counted:
# freshly started brokers run interpreted code and compile for their first minute), loadgen against
# the API for DURATION, then waits until the consumers counted everything accepted; prints the
# run and sets accepted_rate and p99. CONSUMER_PIDS: a space-separated list (empty when the API
# process consumes too).
run() {
  local mode=$1 api_pid=$2 consumer_pids=$3 api=$4; shift 4
  local before after counted start_ns end_ns caught_ns seconds load_before kafka_pids mysql_pids redis_pids
  kafka_pids=$(server_pids kafka) mysql_pids=$(server_pids mysql) redis_pids=$(server_pids redis)
  if [ "$WARMUP" != 0 ]; then
    load_for "$WARMUP" "$api" "load-$mode-warmup"
    wait_counted "$(accepted "$api")" "$@" >/dev/null
  fi
  if [ "$mode" = real ]; then
    # The ceiling: raw librdkafka, the producer's settings, the same number in flight as
    # loadgen's connections, on the same (warm) cluster, a topic of the same shape, just before the run.
    ceiling=$("$tmp/raw_window" "$BULWARK_KAFKA_BOOTSTRAP" "${PREDICTIONS_TOPIC}_raw" "$PREDICTIONS_PARTITIONS" \
      "$CONNECTIONS" "$(seconds_of "$DURATION")" linger.ms "$LINGER_MS" 2> >(grep -v '^%' >&2))
    echo "$ceiling (load average $(load))"
    ceiling_rate=$(sed -n 's/.* = \([0-9]*\) msgs\/s.*/\1/p' <<<"$ceiling")
  fi
  load_before=$(load)
  before=$(accepted "$api")
  lag_buckets "$@" >"$tmp/lag-$mode-before"
  local api_t0 consumers_t0 kafka_t0 mysql_t0 redis_t0
  api_t0=$(cpu_ticks "$api_pid")
  # shellcheck disable=SC2086
  consumers_t0=$(cpu_ticks $consumer_pids) kafka_t0=$(cpu_ticks $kafka_pids) mysql_t0=$(cpu_ticks $mysql_pids) \
    redis_t0=$(cpu_ticks $redis_pids)
  start_ns=$(date +%s%N)
  load_for "$DURATION" "$api" "load-$mode"
  end_ns=$(date +%s%N)
  after=$(accepted "$api")
  seconds=$(awk -v a="$start_ns" -v b="$end_ns" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
  accepted_rate=$(awk -v n="$((after - before))" -v s="$seconds" 'BEGIN { printf "%.0f", n / s }')
  counted=$(wait_counted "$after" "$@")
  caught_ns=$(date +%s%N)
  local api_t1 consumers_t1 kafka_t1 mysql_t1 redis_t1 n=$((after - before))
  api_t1=$(cpu_ticks "$api_pid")
  # shellcheck disable=SC2086
  consumers_t1=$(cpu_ticks $consumer_pids) kafka_t1=$(cpu_ticks $kafka_pids) mysql_t1=$(cpu_ticks $mysql_pids) \
    redis_t1=$(cpu_ticks $redis_pids)
  local p99_lower p99_estimate
  read -r p99 p99_lower p99_estimate < <(lag_p99 "$tmp/lag-$mode-before" "$@")
  # CPU per accepted input, in microseconds, over the run and the catch-up.
  per() { awk -v t="$1" -v n="$n" -v hz="$ticks_per_s" 'BEGIN { if (n > 0) printf "%.0f", t / hz / n * 1e6; else print "nan" }'; }
  local cpu_line="api $(per $((api_t1 - api_t0))) us"
  [ -n "$consumer_pids" ] && cpu_line+=", consumers $(per $((consumers_t1 - consumers_t0))) us"
  [ -n "$kafka_pids" ] && cpu_line+=", brokers $(per $((kafka_t1 - kafka_t0))) us"
  [ -n "$mysql_pids" ] && cpu_line+=", mariadbd $(per $((mysql_t1 - mysql_t0))) us"
  [ -n "$redis_pids" ] && cpu_line+=", redis-server $(per $((redis_t1 - redis_t0))) us"
  local lat50 lat99 catch_up
  lat50=$(latency "$tmp/load-$mode.json" p50)
  lat99=$(latency "$tmp/load-$mode.json" p99)
  catch_up=$(awk -v a="$end_ns" -v b="$caught_ns" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
  echo "$mode: accepted $n in ${seconds}s = $accepted_rate/s; counted $((counted - before)) of $n (all by ${catch_up}s after the load); lag p99 in (${p99_lower}, ${p99}] s (interpolated ${p99_estimate} s); request latency p50 $lat50 p99 $lat99 (loadgen -c$CONNECTIONS); CPU per accepted input: $cpu_line; load average before $load_before, after $(load); $(grep -E '^loadgen:|errors' "$tmp/load-$mode.log" | tr -s ' ' | tr '\n' ' ')"
}

# at_rate MODE RATE API_PORT CONSUMER_PORTS... -> loadgen's open model (RATE requests/s on a fixed
# schedule, CONNECTIONS at most in flight) for DURATION, then waits until the consumers counted
# everything accepted; prints the run and sets rate_p99 (the lag's p99 bucket bound) and
# rate_accepted. The closed loop above measures the lag at saturation, where it is queueing;
# this one measures it at the goal's rate, as an operator would run the service.
at_rate() {
  local mode=$1 rate=$2 api=$3; shift 3
  local before after counted lower estimate seconds
  before=$(accepted "$api")
  lag_buckets "$@" >"$tmp/lag-$mode-rate-before"
  "$LOADGEN" -f "$tmp/data.json" --rate "$rate" -c "$CONNECTIONS" -d "$DURATION" -q --json "$tmp/rate-$mode.json" \
    "http://127.0.0.1:$api/input" >"$tmp/rate-$mode.log" 2>&1 || true
  after=$(accepted "$api")
  counted=$(wait_counted "$after" "$@")
  seconds=$(seconds_of "$DURATION")
  rate_accepted=$(awk -v n="$((after - before))" -v s="$seconds" 'BEGIN { printf "%.0f", n / s }')
  read -r rate_p99 lower estimate < <(lag_p99 "$tmp/lag-$mode-rate-before" "$@")
  echo "$mode at $rate/s (loadgen --rate $rate): accepted $((after - before)) (~$rate_accepted/s); counted all: $([ "$counted" -ge "$after" ] && echo yes || echo "no ($counted of $after)"); lag p99 in ($lower, $rate_p99] s (interpolated $estimate s); request latency p50 $(latency "$tmp/rate-$mode.json" p50) p99 $(latency "$tmp/rate-$mode.json" p99); load average $(load)"
}

for mode in $MODES; do
  case $mode in
    memory)
      start memory --port 0
      run memory "${pids[-1]}" "" "$port" "$port"
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
      kafka_crowded "$tmp/raw_window" "$BULWARK_KAFKA_BOOTSTRAP" predictions.sh
      suffix="bench_$(date +%s)_$$"
      export PREDICTIONS_BACKEND=real PREDICTIONS_KAFKA="$BULWARK_KAFKA_BOOTSTRAP" PREDICTIONS_TOPIC="predictions_$suffix" \
        PREDICTIONS_GROUP="predictions_$suffix" PREDICTIONS_PARTITIONS=12 PREDICTIONS_LINGER_MS="$LINGER_MS" \
        PREDICTIONS_MYSQL_HOST="$BULWARK_MYSQL_HOST" PREDICTIONS_MYSQL_PORT="$BULWARK_MYSQL_PORT" \
        PREDICTIONS_MYSQL_USER="$BULWARK_MYSQL_USER" PREDICTIONS_MYSQL_PASSWORD="${BULWARK_MYSQL_PASSWORD:-}" \
        PREDICTIONS_MYSQL_DATABASE="${BULWARK_MYSQL_DATABASE:-bulwark_test}" PREDICTIONS_LOGS_TABLE="predictions_$suffix" \
        PREDICTIONS_REDIS_HOST="$BULWARK_REDIS_HOST" \
        PREDICTIONS_REDIS_PORT="$BULWARK_REDIS_PORT" PREDICTIONS_REDIS_PREFIX="predictions_$suffix"
      start api --role api --port 0
      api=$port api_pid=${pids[-1]}
      start consumer1 --role consumer --port 0
      c1=$port c1_pid=${pids[-1]}
      start consumer2 --role consumer --port 0
      c2=$port c2_pid=${pids[-1]}
      run real "$api_pid" "$c1_pid $c2_pid" "$api" "$c1" "$c2"
      real_rate=$accepted_rate real_p99=$p99
      if [ "$GOAL_RATE" != 0 ]; then
        at_rate real "$GOAL_RATE" "$api" "$c1" "$c2"
        real_rate_p99=$rate_p99
      fi
      mysql -h "$BULWARK_MYSQL_HOST" -P "$BULWARK_MYSQL_PORT" -u "$BULWARK_MYSQL_USER" -p"${BULWARK_MYSQL_PASSWORD:-}" \
        -e "DROP TABLE IF EXISTS predictions_$suffix" "${BULWARK_MYSQL_DATABASE:-bulwark_test}" 2>/dev/null || true
      redis-cli -h "$BULWARK_REDIS_HOST" -p "$BULWARK_REDIS_PORT" --scan --pattern "predictions_$suffix:*" |
        xargs -r -n 500 redis-cli -h "$BULWARK_REDIS_HOST" -p "$BULWARK_REDIS_PORT" DEL >/dev/null || true
      if [ "$own_servers" = 0 ]; then
        # A shared cluster: its topics go too, once nothing of this run can produce to them again.
        kill "$api_pid" "$c1_pid" "$c2_pid" 2>/dev/null || true
        wait "$api_pid" "$c1_pid" "$c2_pid" 2>/dev/null || true
        "$tmp/raw_window" "$BULWARK_KAFKA_BOOTSTRAP" --delete "$PREDICTIONS_TOPIC" "${PREDICTIONS_TOPIC}_raw" \
          2> >(grep -v '^%' >&2) || true
      fi
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
  echo "ratio_lag_real: $(lag_ratio "$real_p99")"
  if [ -n "${real_rate_p99:-}" ]; then
    echo "lag_p99_s_real_at_${GOAL_RATE}_per_s: $real_rate_p99"
    echo "ratio_lag_real_at_goal_rate: $(lag_ratio "$real_rate_p99")"
  fi
  [ -n "${ceiling_rate:-}" ] && echo "ratio_real_to_raw_librdkafka: $(div "$real_rate" "$ceiling_rate")"
fi
