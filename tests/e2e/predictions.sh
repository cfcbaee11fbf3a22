#!/usr/bin/env bash
# Black-box tests of the predictions example over HTTP (curl), as a person runs it.
#
#   predictions.sh BIN memory     one process on memory backends: inputs from the data set
#                                 generator (valid and one-rule-broken), 202/400 with reasons,
#                                 /live and /logs agree with what was accepted, pages by content
#                                 negotiation, a clean stop on SIGTERM that ends an open stream
#   predictions.sh BIN real       the API and two consumer replicas as separate processes on the
#                                 shared Kafka, MySQL and Redis (own topic, database, key prefix);
#                                 the same checks, then chaos under wrk load: one consumer
#                                 SIGKILLed and restarted, then the API SIGKILLed and restarted;
#                                 afterwards `--role audit` reads the topic (the accepted inputs,
#                                 whatever the clients saw) and the stores must hold each once.
# Environment (real): BULWARK_KAFKA_BOOTSTRAP, BULWARK_MYSQL_{HOST,PORT,USER,PASSWORD},
# BULWARK_MYSQL_DATABASE (the logs go to a table of their own in it), BULWARK_REDIS_{HOST,PORT}
# (scripts/servers.sh); CHAOS_SECONDS (default 6) sets the load's
# length: the short form runs in CI, `CHAOS_SECONDS=120 predictions.sh BIN real` is the long one.
# Every wait is bounded; the script stops what it started.
set -euo pipefail
bin=${1:?usage: predictions.sh path/to/predictions memory|real}
mode=${2:-memory}
here=$(cd "$(dirname "$0")" && pwd)
dataset="$here/../../examples/predictions/dataset.py"
lua="$here/../../examples/predictions/wrk_post.lua"
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

# start NAME ARGS...: one process in the background, its log in $work/NAME.log; sets $port.
start() {
  local name=$1; shift
  "$bin" "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
  eval "pid_$name=$!"
  port=
  for _ in $(seq 300); do
    port=$(sed -n 's|^predictions: listening on http://127\.0\.0\.1:\([0-9]*\) .*|\1|p' "$work/$name.log")
    [ -n "$port" ] && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || fail "$name exited at start"
    sleep 0.1
  done
  fail "$name not listening within 30 s"
}

post() { curl -s -o "$work/answer" -w '%{http_code}' -X POST -H 'Content-Type: application/json' --data-binary "$1" "$api/input"; }

# The data set: valid inputs and inputs that each break one rule.
python3 "$dataset" -n 60 --invalid 0.25 --seed 17 --lines >"$work/inputs.jsonl"
python3 "$dataset" -n 2000 --seed 7 --lines >"$work/load.jsonl"

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

# Chaos under load: wrk posts the data set for CHAOS_SECONDS; a third of the way in, consumer 1
# is SIGKILLed and restarted; at two thirds, the API is SIGKILLed and restarted on its port.
seconds=${CHAOS_SECONDS:-6}
PREDICTIONS_DATA="$work/load.jsonl" timeout $((seconds + 30)) \
  wrk -t1 -c4 -d"${seconds}s" --timeout 5s -s "$lua" "$api" >"$work/wrk.log" 2>&1 &
wrk_pid=$!
sleep $((seconds / 3))
kill -9 "$pid_consumer1"
start consumer1 --role consumer --port 0
sleep $((seconds / 3))
kill -9 "$pid_api"
start api --role api --port "$api_port"
wait "$wrk_pid" || fail "wrk failed: $(cat "$work/wrk.log")"
grep '^wrk:' "$work/wrk.log" || true
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
