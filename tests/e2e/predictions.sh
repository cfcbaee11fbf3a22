#!/usr/bin/env bash
# Black-box tests of the predictions example over HTTP (curl), as a person runs it.
#
#   predictions.sh BIN memory     one process on memory backends: inputs from the data set
#                                 generator (valid and one-rule-broken), 202/400 with reasons,
#                                 /live and /logs agree with what was accepted, pages by content
#                                 negotiation, a clean stop on SIGTERM that ends an open stream
#   predictions.sh BIN real       the API and two consumer replicas as separate processes on the
#                                 shared Kafka, MySQL and Redis (own topic, database, key prefix);
#                                 the same checks, then chaos under loadgen load: one consumer
#                                 SIGKILLed and restarted, then the API SIGKILLed and restarted;
#                                 afterwards `--role audit` reads the topic (the accepted inputs,
#                                 whatever the clients saw) and the stores must hold each once.
# Environment (real): BULWARK_KAFKA_BOOTSTRAP, BULWARK_MYSQL_{HOST,PORT,USER,PASSWORD},
# BULWARK_MYSQL_DATABASE (the logs go to a table of their own in it), BULWARK_REDIS_{HOST,PORT}
# (scripts/servers.sh); CHAOS_SECONDS (default 6) sets the load's
# length: the short form runs in CI, `CHAOS_SECONDS=120 predictions.sh BIN real` is the long one.
# Every wait is bounded; the script stops what it started.
set -euo pipefail
bin=${1:?usage: predictions.sh path/to/predictions memory|real [path/to/loadgen]}
mode=${2:-memory}
loadgen=${3:-} # real mode's chaos load
here=$(cd "$(dirname "$0")" && pwd)
dataset="$here/../../examples/predictions/dataset.py"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ "$mode" = real ] && [ -n "${suffix:-}" ]; then
    mysql -h "$BULWARK_MYSQL_HOST" -P "$BULWARK_MYSQL_PORT" -u "$BULWARK_MYSQL_USER" -p"$BULWARK_MYSQL_PASSWORD" \
      -e "DROP TABLE IF EXISTS $table" "$database" 2>/dev/null || true
    redis-cli -h "$BULWARK_REDIS_HOST" -p "$BULWARK_REDIS_PORT" --scan --pattern "$prefix:*" 2>/dev/null |
      xargs -r -n 500 redis-cli -h "$BULWARK_REDIS_HOST" -p "$BULWARK_REDIS_PORT" DEL >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for f in "$work"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -20 "$f"; }; done
  exit 1
}
passed=0
ok() { passed=$((passed + 1)); }

# launch NAME ARGS...: one process in the background, its log in $work/NAME.log, its pid in
# $pid_NAME; listening NAME waits until it listens and sets $port; start does both.
launch() {
  local name=$1; shift
  "$bin" "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
  eval "pid_$name=$!"
}
listening() {
  local name=$1 pid_var="pid_$1"
  port=
  for _ in $(seq 300); do
    # The background process may not have opened its log yet: no file is no port yet.
    port=$(sed -n 's|^predictions: listening on http://127\.0\.0\.1:\([0-9]*\) .*|\1|p' "$work/$name.log" 2>/dev/null || true)
    [ -n "$port" ] && return 0
    kill -0 "${!pid_var}" 2>/dev/null || fail "$name exited at start"
    sleep 0.1
  done
  fail "$name not listening within 30 s"
}
start() { launch "$@" && listening "$1"; }

post() { curl -s -o "$work/answer" -w '%{http_code}' -X POST -H 'Content-Type: application/json' --data-binary "$1" "$api/input"; }

# The data set: valid inputs and inputs that each break one rule.
python3 "$dataset" -n 60 --invalid 0.25 --seed 17 --lines >"$work/inputs.jsonl"
python3 "$dataset" -n 2000 --seed 7 >"$work/load.json"

checks() { # the pipeline's checks against $api (the process that serves the API)
  local accepted=0 refused=0 code
  while IFS= read -r line; do
    code=$(post "$line")
    case $code in
      202) grep -Eq '^\{"id":"[0-9a-f]{28}"\}$' "$work/answer" || fail "202 without an id: $(cat "$work/answer")"
           accepted=$((accepted + 1)) ;;
      400) grep -q '"violations":\[{"code":"' "$work/answer" || fail "400 without reasons: $(cat "$work/answer")"
           refused=$((refused + 1)) ;;
      *) fail "POST /input $line -> $code $(cat "$work/answer")" ;;
    esac
  done <"$work/inputs.jsonl"
  [ "$accepted" -gt 30 ] && [ "$refused" -gt 5 ] || fail "data set gave $accepted accepted, $refused refused"
  ok
  # Each rule once more, by hand: the reason's code in the answer.
  local rule
  for rule in '{"team2":"B","score":"1-0","phase":1}|"missing"' '{"team1":" ","team2":"B","score":"1-0","phase":1}|"blank"' \
              '{"team1":"B","team2":"B","score":"1-0","phase":1}|"same_team"' '{"team1":"A","team2":"B","score":"1-","phase":1}|"bad_score"' \
              '{"team1":"A","team2":"B","score":"1-0","phase":5}|"bad_phase"' '{"team1":"A","team2":"B","score":"1-0","phase":1,"x":0}|"unknown_field"' \
              'not json|"not_an_object"'; do
    code=$(post "${rule%|*}")
    [ "$code" = 400 ] && grep -q "${rule#*|}" "$work/answer" || fail "${rule%|*} -> $code $(cat "$work/answer")"
    ok
  done
  local total=
  for _ in $(seq 200); do
    total=$(curl -s "$api/live" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')
    [ "$total" = "$accepted" ] && break
    sleep 0.1
  done
  [ "$total" = "$accepted" ] || fail "/live total $total, accepted $accepted"
  ok
  local logs
  logs=$(curl -s "$api/logs?limit=1000" | python3 -c 'import json,sys; l=json.load(sys.stdin)["logs"]; print(len(l), len({x["id"] for x in l}))')
  [ "$logs" = "$accepted $accepted" ] || fail "/logs holds '$logs', accepted $accepted"
  ok
  curl -s -H 'Accept: text/html,*/*;q=0.8' "$api/live" | grep -q '<title>Predictions: live results' || fail "no live page"
  curl -s -H 'Accept: text/html' "$api/logs" | grep -q '<title>Predictions: recent logs' || fail "no logs page"
  curl -s "$api/live" | grep -q '^{"matches":' || fail "curl's */* should get JSON"
  ok
}

if [ "$mode" = memory ]; then
  start all --port 0 --address 127.0.0.1
  api="http://127.0.0.1:$port"
  checks
  [ "$(curl -s -w ' %{http_code}' "$api/ready")" = '{"status":"UP","components":{}} 200' ] || fail "/ready in memory mode"
  ok
  # The deploy kit's dashboard on a real Prometheus scraping this process (as both roles: it is
  # both): while inputs keep coming, every panel's query must return data.
  prom_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  printf 'global: {scrape_interval: 1s}\nscrape_configs:\n' >"$work/prometheus.yml"
  for job in predictions-api predictions-consumer; do
    printf '  - job_name: %s\n    static_configs: [{targets: ["127.0.0.1:%s"]}]\n' "$job" "${api##*:}" >>"$work/prometheus.yml"
  done
  prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
    --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
  pids+=($!)
  (for _ in $(seq 300); do post '{"team1":"Qatar","team2":"Ecuador","score":"0-2","phase":1}' >/dev/null; sleep 0.1; done) &
  pids+=($!)
  python3 "$here/../../scripts/check_dashboard.py" live --kit "$here/../../examples/predictions/deploy" \
    --dashboard predictions --prometheus "http://127.0.0.1:$prom_port" --timeout 25 || fail "a dashboard panel had no data"
  ok
  # An open event stream ends at SIGTERM (the graceful stop), and the process exits 0.
  curl -sN -H 'Accept: text/event-stream' "$api/live" >"$work/stream" 2>&1 &
  stream=$!
  for _ in $(seq 50); do grep -q '^event: live' "$work/stream" && break; sleep 0.1; done
  grep -q '^event: live' "$work/stream" || fail "no event on the stream"
  kill -TERM "$pid_all"
  for _ in $(seq 50); do kill -0 "$stream" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$stream" 2>/dev/null && fail "the event stream still open 5 s after SIGTERM"
  wait "$stream" || fail "curl saw the stream cut, not ended (exit $?)"
  for _ in $(seq 100); do kill -0 "$pid_all" 2>/dev/null || break; sleep 0.1; done
  wait "$pid_all" || fail "exit status $? after SIGTERM"
  ok
  echo "predictions e2e (memory): $passed checks passed"
  exit 0
fi

# --- real mode ----------------------------------------------------------------------------------
for v in BULWARK_KAFKA_BOOTSTRAP BULWARK_MYSQL_HOST BULWARK_MYSQL_PORT BULWARK_MYSQL_USER BULWARK_REDIS_HOST BULWARK_REDIS_PORT; do
  [ -n "${!v:-}" ] || fail "$v is not set (source the servers' env: scripts/servers.sh)"
done
suffix="$(date +%s)_$$"
database=${BULWARK_MYSQL_DATABASE:-bulwark_test} # the test user's database; a table of our own in it
table="predictions_e2e_$suffix"
prefix="predictions_e2e_$suffix"
export PREDICTIONS_BACKEND=real PREDICTIONS_KAFKA="$BULWARK_KAFKA_BOOTSTRAP" PREDICTIONS_TOPIC="predictions_e2e_$suffix" \
  PREDICTIONS_GROUP="predictions_e2e_$suffix" PREDICTIONS_PARTITIONS=6 \
  PREDICTIONS_MYSQL_HOST="$BULWARK_MYSQL_HOST" PREDICTIONS_MYSQL_PORT="$BULWARK_MYSQL_PORT" \
  PREDICTIONS_MYSQL_USER="$BULWARK_MYSQL_USER" PREDICTIONS_MYSQL_PASSWORD="${BULWARK_MYSQL_PASSWORD:-}" \
  PREDICTIONS_MYSQL_DATABASE="$database" PREDICTIONS_LOGS_TABLE="$table" PREDICTIONS_REDIS_HOST="$BULWARK_REDIS_HOST" \
  PREDICTIONS_REDIS_PORT="$BULWARK_REDIS_PORT" PREDICTIONS_REDIS_PREFIX="$prefix"
start api --role api --port 0
api_port=$port
api="http://127.0.0.1:$api_port"
start consumer1 --role consumer --port 0
start consumer2 --role consumer --port 0
checks
ready='{"status":"UP","components":{"kafka":{"status":"UP"},"mysql":{"status":"UP"},"redis":{"status":"UP"}}}'
[ "$(curl -s -w ' %{http_code}' "$api/ready")" = "$ready 200" ] || fail "/ready: $(curl -s "$api/ready")"
ok

# Readiness names the dependency that is down: an API on a Redis of its own, which then stops.
redis_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!)
redis_pid=$!
for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
PREDICTIONS_REDIS_PORT=$redis_port start lone --role api --port 0
lone="http://127.0.0.1:$port"
[ "$(curl -s -w ' %{http_code}' "$lone/ready")" = "$ready 200" ] || fail "/ready on its own Redis: $(curl -s "$lone/ready")"
kill -9 "$redis_pid"
answer=$(curl -s -m 10 -w ' %{http_code}' "$lone/ready")
[ "$answer" = '{"status":"DOWN","components":{"kafka":{"status":"UP"},"mysql":{"status":"UP"},"redis":{"status":"DOWN"}}} 503' ] ||
  fail "/ready with its Redis gone: $answer"
[ "$(curl -s -w '%{http_code}' -o /dev/null "$lone/health")" = 200 ] || fail "/health (liveness) should stay 200"
kill -9 "$pid_lone"
ok

# Chaos under load: loadgen posts the data set for CHAOS_SECONDS; a third of the way in, consumer 1
# is SIGKILLed and restarted; at two thirds, the API is SIGKILLed and restarted on its port. loadgen
# exits 1 when some requests failed (those cut by the kill): only a bad run (2 and up) fails the
# test here; what counts is what the topic accepted, read by the audit below. The run's HTML report
# (marks at the kills) is kept when CHAOS_REPORT names a file.
[ -x "$loadgen" ] || fail "real mode needs loadgen's path as the third argument"
seconds=${CHAOS_SECONDS:-6}
timeout $((seconds + 30)) "$loadgen" -f "$work/load.json" -c4 -d "${seconds}s" --request-timeout 5s \
  --connect-timeout 1s --progress 2s --json "$work/loadgen.json" --report "${CHAOS_REPORT:-$work/chaos.html}" \
  --title "predictions chaos, ${seconds} s" --event "$((seconds / 3))s=consumer 1 SIGKILLed" \
  --event "$((2 * seconds / 3))s=API SIGKILLed" "$api/input" >"$work/loadgen.log" 2>&1 &
loadgen_pid=$!
load_start=$(date +%s%N)
sleep_until() { # seconds after the load's start
  local left=$(( load_start + $1 * 1000000000 - $(date +%s%N) ))
  [ "$left" -le 0 ] || sleep "$((left / 1000000000)).$(printf '%09d' $((left % 1000000000)))"
}
sleep_until $((seconds / 3))
kill -9 "$pid_consumer1"
launch consumer1 --role consumer --port 0
sleep_until $((2 * seconds / 3))
kill -0 "$loadgen_pid" 2>/dev/null || fail "the load ended before the API was killed"
kill -9 "$pid_api"
start api --role api --port "$api_port"
listening consumer1
status=0
wait "$loadgen_pid" || status=$?
[ "$status" -le 1 ] || fail "loadgen exited $status: $(cat "$work/loadgen.log")"
python3 - "$work/loadgen.json" <<'EOF' || fail "loadgen's summary: $(cat "$work/loadgen.json")"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["requests"] > 100, s["requests"]  # the load really ran
print("loadgen: %d requests, status %s, errors %s" % (s["requests"], s["status"], s["errors"]))
EOF
# The consumers catch up (bounded), then the audit reads the topic and compares.
last= same=0
for _ in $(seq 600); do
  total=$(curl -s "$api/live" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])' 2>/dev/null || echo "")
  if [ -n "$total" ] && [ "$total" = "$last" ]; then same=$((same + 1)); else same=0; fi
  last=$total
  [ "$same" -ge 20 ] && break
  sleep 0.1
done
"$bin" --role audit --port 0 >"$work/audit.log" 2>&1 || fail "audit: $(cat "$work/audit.log")"
report=$(grep '^{' "$work/audit.log")
echo "audit: $report"
python3 - "$report" <<'EOF' || fail "audit report $report"
import json, sys
r = json.loads(sys.argv[1])
assert r["accepted"] > 100, r  # the load really ran
assert r["aggregatesTotal"] == r["accepted"] == r["logs"] == r["logsDistinct"] and r["missingLogs"] == 0, r
EOF
ok
echo "predictions e2e (real, chaos ${seconds}s): $passed checks passed"
