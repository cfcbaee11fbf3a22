#!/usr/bin/env bash
# The event-log example's pipeline (issue 16), on one machine, loopback only: commands accepted
# per second end to end (loadgen POSTs creates to the command API for DURATION seconds; the
# figure is the commands accepted divided by the time until the materializer applied the last of
# them) and the p99 of the visibility lag (acceptance -> snapshot written, the query API's view:
# the materializer's eventlog_visibility_lag_seconds histogram, read at its bucket bounds).
#   memory mode: `event-log` alone, every stage in one process
#   real mode:   every stage its own process, as deployed (`event-log command-api`, `validator`,
#                `persister`, `materializer`, each `--mode real`), on a private redis-server and
#                a private 3-node Kafka cluster (scripts/servers/kafka.sh; KAFKA=shared uses the
#                one in $BULWARK_KAFKA_BOOTSTRAP instead, with its own topic prefix)
# Load: `loadgen -c CONNECTIONS -d DURATION -f assets.json` (tools/loadgen, closed model: each
# connection sends its next create when the previous one was answered). A command is answered
# once its status is in Redis and Kafka acknowledged it (acks=all, the producer lingering
# LINGER_MS to fill a batch), a few tens of milliseconds: the rate a closed model reaches is
# about connections / that latency, so CONNECTIONS must keep enough commands in flight to fill
# the pipeline. With wrk's 32 (this script's first version) real mode measured 32 / 70 ms, about
# 450/s, the latency and not the pipeline. The default, 256, fills it (as the predictions and
# checkout benchmarks use hundreds to 1,000): at 512 the command API accepted 4,800-5,000/s, more
# than the validator (one consumer of one partition) decides, and the lag grew for the whole
# run; at 128 it accepted about 2,600/s (2026-12-04, load 10-16).
# Per mode it prints the request latency (loadgen's p50, p99), the consumer lag each real stage
# had when the load ended (bulwark_bus_consumer_lag_messages: which stage is behind), and the
# CPU time each process spent per command over the load and the catch-up (the command API, the
# validator, the persister, the materializer, redis-server, and the brokers: those the script
# started, or with KAFKA=shared the JVMs listening on the bootstrap ports, with their CPU in
# the 3 s before the load, since other clients' work counts in it): the machine is shared, and
# the load moves the throughput far more than the CPU per command. Freshly started brokers
# spend more CPU compiling than serving for minutes (examples/event-log/README.md,
# "Benchmark"): measure after a throwaway run. With KAFKA=shared the run's topics are deleted
# at the end.
# The last lines are (goals: 20,000 commands/s in memory mode, 3,000/s in real mode, p99 lag < 1 s)
#   ratio_memory: <commands/s / 20000>
#   ratio_real: <commands/s / 3000>
#   ratio_lag_memory: <1 s / p99 lag>   ratio_lag_real: <1 s / p99 lag>   (>= 1 meets the goal)
# and the load average it ran under is printed before them (2 cores shared: a busy machine
# inflates every figure).
# Usage: benchmarks/event_log.sh                          builds event-log and loadgen in the release preset
#        BUILD_DIR=build/release benchmarks/event_log.sh  uses that build
# Environment: DURATION (default 10 s per mode), CONNECTIONS (default 256; the file-descriptor
#              limit must allow it twice), LINGER_MS (real mode's --linger-ms, default: the
#              example's), KAFKA (private|shared, default private), MODES (default "memory
#              real": either alone prints its own lines only), REAL_ARGS (more flags for every
#              real-mode process, e.g. "--linger-ms 5"), LOGS (a directory: the processes'
#              logs are copied there at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source scripts/lib.sh

if [ -z "${BUILD_DIR:-}" ]; then
  BUILD_DIR=build/release
  cmake --preset release >/dev/null
  cmake --build "$BUILD_DIR" --target event-log loadgen >/dev/null
fi
bin="$BUILD_DIR/examples/event-log/event-log"
loadgen="$BUILD_DIR/tools/loadgen/loadgen"
[ -x "$bin" ] || { echo "missing $bin (build the target event-log)" >&2; exit 1; }
[ -x "$loadgen" ] || { echo "missing $loadgen (build the target loadgen)" >&2; exit 1; }
duration=${DURATION:-10}
connections=${CONNECTIONS:-256}
kafka_mode=${KAFKA:-private}
modes=${MODES:-memory real}
real_args=()
[ -z "${LINGER_MS:-}" ] || real_args+=(--linger-ms "$LINGER_MS")
# shellcheck disable=SC2206
[ -z "${REAL_ARGS:-}" ] || real_args+=($REAL_ARGS)
# loadgen's connections and the command API's, each a descriptor, in this shell's processes.
[ "$(ulimit -n)" -ge $((2 * connections + 256)) ] || ulimit -n $((2 * connections + 256)) || {
  echo "CONNECTIONS=$connections needs $((2 * connections + 256)) file descriptors (ulimit -n)" >&2
  exit 1
}
ticks_per_s=$(getconf CLK_TCK)

work=$(mktemp -d)
redis_pid=
pids=()
own_kafka=0
stop_stages() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
cleanup() {
  stop_stages
  # A shared cluster: this run's topics go too (a cluster with thousands of partitions slows
  # every client), once no stage of it runs.
  if [ -n "${topic_prefix:-}" ] && [ "$own_kafka" = 0 ]; then
    { [ -x "$work/raw_window" ] || cc -O2 -o "$work/raw_window" benchmarks/kafka/raw_window.c $(pkg-config --cflags --libs rdkafka); } &&
      "$work/raw_window" "$bootstrap" --delete "${topic_prefix}"{commands,events,rejections}{,.dlq} \
        2> >(grep -v '^%' >&2) || true
  fi
  stop_private_redis
  [ -z "${LOGS:-}" ] || { mkdir -p "$LOGS" && cp "$work"/*.log "$LOGS"/; }
  if [ "$own_kafka" = 1 ]; then scripts/servers/kafka.sh down >/dev/null 2>&1 || true; rm -rf "$BULWARK_SERVERS_DIR"; fi
  rm -rf "$work"
}
trap cleanup EXIT

# 1,000 assets, sent in turn (the command API gives each create its id).
python3 -c 'import json; print(json.dumps([{"title": "asset %d" % i, "src": "https://example.com/%d.png" % i, "width": i} for i in range(1, 1001)]))' \
  >"$work/assets.json"

# metric PORT NAME_REGEX -> the sum of the samples of that process matching it
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v re="$2" '$0 ~ re { s += $NF } END { printf "%.0f", s }'; }
# p99 PORT -> the upper bound of the bucket holding the 99th percentile of the visibility lag (seconds)
p99() {
  curl -s "http://127.0.0.1:$1/metrics" | awk '
    /^eventlog_visibility_lag_seconds_bucket/ { match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5); n++; bound[n] = le; count[n] = $NF }
    /^eventlog_visibility_lag_seconds_count/ { total = $NF }
    END { for (i = 1; i <= n; i++) if (count[i] >= 0.99 * total) { print bound[i]; exit } }'
}
load() { cut -d' ' -f1-3 /proc/loadavg; }

# start NAME ARGS... -> `event-log ARGS...` in the background (log: $work/NAME.log), its pid
# appended to pids; returns once it says it runs.
start() {
  local name=$1 log="$work/$1.log"
  shift
  "$bin" "$@" >"$log" 2>&1 &
  pids+=($!)
  wait_until 60 grep -q "running\|all stages in this process" "$log" || { cat "$log"; return 1; }
}

# run MODE COMMAND_PORT STAGE_PORT NAME=PIDS... -> loadgen against the command API at
# COMMAND_PORT for DURATION, then waits until the materializer (whose metrics are at
# STAGE_PORT) applied every accepted command; prints its lines and sets rate and lag. Each
# NAME=PIDS is a process (or several, space-separated: the brokers) whose CPU per command is
# printed; LAG_PORTS ("name=port ...") are the processes whose consumer lag is read when the
# load ends.
run() {
  local mode=$1 command_port=$2 stage_port=$3
  shift 3
  local procs=("$@") p t0=() t1=() load_before start end accepted applied
  load_before=$(load)
  # The brokers' CPU for 3 s before the load (other clients, the cluster's own work): what of
  # their CPU per command is not this run's.
  local idle=""
  for p in "${procs[@]}"; do
    [ "${p%%=*}" = brokers ] || continue
    # shellcheck disable=SC2086
    idle=$(cpu_ticks ${p#*=})
    sleep 3
    # shellcheck disable=SC2086
    idle=$(awk -v t="$(($(cpu_ticks ${p#*=}) - idle))" -v hz="$ticks_per_s" 'BEGIN { printf "%.2f", t / hz / 3 }')
  done
  # shellcheck disable=SC2086
  for p in "${procs[@]}"; do t0+=("$(cpu_ticks ${p#*=})"); done
  start=$(date +%s.%N)
  "$loadgen" -f "$work/assets.json" -c "$connections" -d "${duration}s" -q --json "$work/$mode.json" \
    "http://127.0.0.1:$command_port/assets" >"$work/$mode.loadgen" 2>&1 || true
  local behind=""
  for p in ${LAG_PORTS:-}; do behind+="${behind:+, }${p%=*} $(metric "${p#*=}" '^bulwark_bus_consumer_lag_messages')"; done
  accepted=$(metric "$command_port" '^eventlog_commands_total\\{outcome="accepted"\\}')
  # Until the materializer applied every accepted command (bounded: 120 s).
  for _ in $(seq 1200); do
    applied=$(metric "$stage_port" '^eventlog_stage_messages_total\\{stage="materializer",outcome="applied"\\}')
    [ "$applied" -ge "$accepted" ] && break
    sleep 0.1
  done
  end=$(date +%s.%N)
  # shellcheck disable=SC2086
  for p in "${procs[@]}"; do t1+=("$(cpu_ticks ${p#*=})"); done
  rate=$(awk -v n="$accepted" -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", n / (b - a) }')
  lag=$(p99 "$stage_port")
  local i cpu="" latency
  for i in "${!procs[@]}"; do
    cpu+="${cpu:+, }${procs[$i]%=*} $(awk -v t="$((t1[i] - t0[i]))" -v n="$accepted" -v hz="$ticks_per_s" \
      'BEGIN { if (n > 0) printf "%.0f", t / hz / n * 1e6; else print "nan" }') us"
  done
  latency=$(python3 -c 'import json, sys; l = json.load(open(sys.argv[1]))["latency_ms"]; print("p50 %.1f ms, p99 %.1f ms" % (l["p50"], l["p99"]))' "$work/$mode.json" 2>/dev/null || echo "none")
  printf '%-7s %8s commands accepted, %8s applied, %7s commands/s end to end, p99 visibility lag <= %s s\n' \
    "$mode" "$accepted" "$applied" "$rate" "$lag"
  echo "        request latency $latency (loadgen -c$connections); $(grep -E '^loadgen:|errors' "$work/$mode.loadgen" | tr -s ' ' | tr '\n' ' ')"
  [ -z "$behind" ] || echo "        consumer lag when the load ended (messages): $behind"
  echo "        CPU per command: $cpu; load average before $load_before, after $(load)"
  [ -z "$idle" ] || echo "        brokers before the load: $idle CPU seconds per second"
  # Real mode: the Redis calls each command cost (the private redis-server served only this run).
  [ "$mode" != real ] || redis-cli -p "$redis_port" info commandstats | tr -d '\r' | awk -F'[:=,]' -v n="$accepted" '
    /^cmdstat_/ { sub(/^cmdstat_/, "", $1); calls += $3; usec += $5; line = line sprintf("%s%s %.2f", (line == "" ? "" : ", "), $1, $3 / n) }
    END { if (n > 0) printf "        Redis calls per command: %.2f (%s), %.0f us of redis-server time each\n", calls / n, line, usec / calls }'
}

echo "event-log pipeline, $(nproc) cores, loadgen -c$connections -d${duration}s POST /assets"
# ratio_lines MODE... -> the ratio lines of the modes that ran (after the load average)
ratio_lines() {
  local m goal rate_var lag_var
  echo "load average: $(load)"
  for m in "$@"; do
    goal=$([ "$m" = memory ] && echo 20000 || echo 3000)
    rate_var=${m}_rate
    echo "ratio_$m: $(div "${!rate_var}" "$goal")"
  done
  for m in "$@"; do
    lag_var=${m}_lag
    echo "ratio_lag_$m: $(awk -v l="${!lag_var}" 'BEGIN { printf "%.2f", (l == "+Inf" ? 0 : 1 / l) }')"
  done
}

ran=()
if [[ " $modes " == *" memory "* ]]; then
  command_port=$(free_port) query_port=$(free_port)
  start memory --command-port "$command_port" --query-port "$query_port"
  run memory "$command_port" "$query_port" "event-log=${pids[0]}"
  memory_rate=$rate memory_lag=$lag
  stop_stages
  ran+=(memory)
fi
if [[ " $modes " != *" real "* ]]; then
  ratio_lines "${ran[@]}"
  exit 0
fi

private_redis "$work"
brokers=()
if [ "$kafka_mode" = shared ] && [ -n "${BULWARK_KAFKA_BOOTSTRAP:-}" ]; then
  bootstrap=$BULWARK_KAFKA_BOOTSTRAP
  # The shared brokers' CPU too (the JVMs listening on the bootstrap ports, when ss shows them):
  # other clients of the cluster count in it, so compare such figures only run against run.
  shared_pids=$(listening_pids "$bootstrap")
  [ -z "${shared_pids// /}" ] || brokers=("brokers=${shared_pids% }")
  # shellcheck disable=SC2046
  cc -O2 -o "$work/raw_window" benchmarks/kafka/raw_window.c $(pkg-config --cflags --libs rdkafka) &&
    kafka_crowded "$work/raw_window" "$bootstrap" event_log.sh
else
  export BULWARK_SERVERS_DIR=$root/.servers/bench-event-log
  own_kafka=1
  scripts/servers/kafka.sh up >/dev/null
  bootstrap=$(sed -n 's/^export BULWARK_KAFKA_BOOTSTRAP=//p' "$BULWARK_SERVERS_DIR/env" | tr -d '\\' | tail -1)
  brokers=("brokers=$(cat "$BULWARK_SERVERS_DIR"/kafka/node*/pid | tr '\n' ' ')")
fi
topic_prefix="bench-$$-$(date +%s)."
common=(--mode real --kafka "$bootstrap" --redis "127.0.0.1:$redis_port" --prefix "$topic_prefix" "${real_args[@]}")
command_port=$(free_port) validator_port=$(free_port) persister_port=$(free_port) materializer_port=$(free_port)
start command-api command-api --command-port "$command_port" "${common[@]}"
start validator validator --metrics-port "$validator_port" "${common[@]}"
start persister persister --metrics-port "$persister_port" "${common[@]}"
start materializer materializer --metrics-port "$materializer_port" "${common[@]}"
LAG_PORTS="validator=$validator_port persister=$persister_port materializer=$materializer_port" \
  run real "$command_port" "$materializer_port" "command-api=${pids[0]}" "validator=${pids[1]}" \
  "persister=${pids[2]}" "materializer=${pids[3]}" "redis-server=$redis_pid" "${brokers[@]}"
real_rate=$rate real_lag=$lag
ran+=(real)
ratio_lines "${ran[@]}"
