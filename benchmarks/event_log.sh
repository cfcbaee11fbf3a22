#!/usr/bin/env bash
# The event-log example's pipeline (issue 16), on one machine, loopback only: commands accepted
# per second end to end (wrk POSTs creates to the command API for DURATION seconds; the figure is
# the commands accepted divided by the time until the materializer applied the last of them) and
# the p99 of the visibility lag (acceptance -> snapshot written, the query API's view: the
# materializer's eventlog_visibility_lag_seconds histogram, read at its bucket bounds).
#   memory mode: `event-log` alone, every stage in one process
#   real mode:   `event-log --mode real`, every stage in one process, on a private redis-server and
#                a private 3-node Kafka cluster (scripts/servers/kafka.sh; KAFKA=shared uses the one
#                in $BULWARK_KAFKA_BOOTSTRAP instead, with its own topic prefix)
# The last lines are (goals: 20,000 commands/s in memory mode, 3,000/s in real mode, p99 lag < 1 s)
#   ratio_memory: <commands/s / 20000>
#   ratio_real: <commands/s / 3000>
#   ratio_lag_memory: <1 s / p99 lag>   ratio_lag_real: <1 s / p99 lag>   (>= 1 meets the goal)
# and the load average it ran under is printed before them (2 cores shared: a busy machine
# inflates every figure).
# Usage: benchmarks/event_log.sh                          builds event-log in the release preset
#        BUILD_DIR=build/release benchmarks/event_log.sh  uses that build
# Environment: DURATION (default 10 s per mode), CONNECTIONS (default 32), THREADS (wrk, default 1),
#              KAFKA (private|shared, default private), MODES (default "memory real": either alone
#              prints its own lines only).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source scripts/lib.sh

if [ -z "${BUILD_DIR:-}" ]; then
  BUILD_DIR=build/release
  cmake --preset release >/dev/null
  cmake --build "$BUILD_DIR" --target event-log >/dev/null
fi
bin="$BUILD_DIR/examples/event-log/event-log"
[ -x "$bin" ] || { echo "missing $bin (build the target event-log)" >&2; exit 1; }
duration=${DURATION:-10}
connections=${CONNECTIONS:-32}
threads=${THREADS:-1}
kafka_mode=${KAFKA:-private}
modes=${MODES:-memory real}

work=$(mktemp -d)
redis_pid=
app_pid=
own_kafka=0
cleanup() {
  [ -z "$app_pid" ] || { kill "$app_pid" 2>/dev/null; wait "$app_pid" 2>/dev/null; } || true
  stop_private_redis
  if [ "$own_kafka" = 1 ]; then scripts/servers/kafka.sh down >/dev/null 2>&1 || true; rm -rf "$BULWARK_SERVERS_DIR"; fi
  rm -rf "$work"
}
trap cleanup EXIT

# metric NAME_REGEX -> the sum of the query API's samples matching it
metric() { curl -s "http://127.0.0.1:$query_port/metrics" | awk -v re="$1" '$0 ~ re { s += $NF } END { printf "%.0f", s }'; }
# p99 -> the upper bound of the bucket holding the 99th percentile of the visibility lag (seconds)
p99() {
  curl -s "http://127.0.0.1:$query_port/metrics" | awk '
    /^eventlog_visibility_lag_seconds_bucket/ { match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5); n++; bound[n] = le; count[n] = $NF }
    /^eventlog_visibility_lag_seconds_count/ { total = $NF }
    END { for (i = 1; i <= n; i++) if (count[i] >= 0.99 * total) { print bound[i]; exit } }'
}

# run MODE EXTRA_ARGS... -> prints one line and sets rate and lag
run() {
  local mode=$1
  shift
  local command_port log="$work/$mode.log"
  command_port=$(free_port)
  query_port=$(free_port)
  "$bin" --command-port "$command_port" --query-port "$query_port" "$@" >"$log" 2>&1 &
  app_pid=$!
  wait_until 60 grep -q "running\|all stages in this process" "$log" || { cat "$log"; return 1; }
  local start end accepted applied
  start=$(date +%s.%N)
  wrk -t"$threads" -c"$connections" -d"${duration}s" -s benchmarks/event_log_post.lua "http://127.0.0.1:$command_port" >"$work/$mode.wrk"
  accepted=$(metric '^eventlog_commands_total\\{outcome="accepted"\\}')
  # Until the materializer applied every accepted command (bounded: 120 s).
  for _ in $(seq 1200); do
    applied=$(metric '^eventlog_stage_messages_total\\{stage="materializer",outcome="applied"\\}')
    [ "$applied" -ge "$accepted" ] && break
    sleep 0.1
  done
  end=$(date +%s.%N)
  rate=$(awk -v n="$accepted" -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", n / (b - a) }')
  lag=$(p99)
  local refused
  refused=$(grep -c . <(grep -E 'Non-2xx|Socket errors' "$work/$mode.wrk") || true)
  printf '%-7s %8s commands accepted, %8s applied, %7s commands/s end to end, p99 visibility lag <= %s s%s\n' \
    "$mode" "$accepted" "$applied" "$rate" "$lag" "$([ "$refused" = 0 ] || echo ", wrk: $(grep -E 'Non-2xx|Socket errors' "$work/$mode.wrk" | tr '\n' ' ')")"
  kill "$app_pid"
  wait "$app_pid" 2>/dev/null || true
  app_pid=
}

echo "event-log pipeline, $(nproc) cores, wrk -t$threads -c$connections -d${duration}s POST /assets"
# ratio_lines MODE... -> the ratio lines of the modes that ran (after the load average)
ratio_lines() {
  local m goal rate_var lag_var
  echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
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
  run memory
  memory_rate=$rate memory_lag=$lag
  ran+=(memory)
fi
if [[ " $modes " != *" real "* ]]; then
  ratio_lines "${ran[@]}"
  exit 0
fi

private_redis "$work"
if [ "$kafka_mode" = shared ] && [ -n "${BULWARK_KAFKA_BOOTSTRAP:-}" ]; then
  bootstrap=$BULWARK_KAFKA_BOOTSTRAP
else
  export BULWARK_SERVERS_DIR=$root/.servers/bench-event-log
  own_kafka=1
  scripts/servers/kafka.sh up >/dev/null
  bootstrap=$(sed -n 's/^export BULWARK_KAFKA_BOOTSTRAP=//p' "$BULWARK_SERVERS_DIR/env" | tr -d '\\' | tail -1)
fi
run real --mode real --kafka "$bootstrap" --redis "127.0.0.1:$redis_port" --prefix "bench-$$-$(date +%s)."
real_rate=$rate real_lag=$lag
ran+=(real)
ratio_lines "${ran[@]}"
