#!/usr/bin/env bash
# Black-box test of examples/event-log in memory mode over HTTP with curl: every stage in one
# process on free ports; creates, updates, deletes, link checks, the validation texts, command
# status, bad input (nothing published: the command counter stays), then a clean stop on SIGTERM.
set -euo pipefail
bin=${1:?usage: event_log.sh path/to/event-log}
work=$(mktemp -d)
log=$work/event-log.log
# Bad flag values are refused before anything starts (exit 2, the flag named).
refused_flag() { # refused_flag TEXT ARGS...
  local text=$1 code=0 out
  shift
  out=$("$bin" "$@" 2>&1) || code=$?
  [ "$code" = 2 ] && [[ "$out" == *"$text"* ]] || { echo "FAIL: event-log $* -> exit $code: $out"; exit 1; }
}
refused_flag 'bad value for --max-in-flight' --max-in-flight many
refused_flag 'bad value for --max-batch' --max-batch 0
if "$bin" --help 2>&1 | grep -q -- --linger-ms; then # real mode built in
  refused_flag '--linger-ms: linger "-1" is not a whole number of milliseconds from 0 to 900000' --linger-ms -1
  refused_flag '--kafka-properties: "linger.ms" is not name=value' --kafka-properties acks=all,linger.ms
fi
# The flags taken (a small admission bound and batches: the run below goes through them).
"$bin" --command-port 0 --query-port 0 --max-in-flight 64 --max-batch 16 >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; cat "$log"; exit 1; }
for _ in $(seq 100); do
  grep -q 'all stages in this process' "$log" && break
  kill -0 $pid 2>/dev/null || fail "exited before listening"
  sleep 0.1
done
cmd="http://127.0.0.1:$(sed -n 's|^event-log: command API listening on http://[^:]*:\([0-9]*\).*|\1|p' "$log")"
qry="http://127.0.0.1:$(sed -n 's|^event-log: query API listening on http://[^:]*:\([0-9]*\).*|\1|p' "$log")"
passed=0
out=
expect() { # expect STATUS BODY_REGEX -- curl args; the body lands in $out
  local status=$1 pattern=$2; shift 3
  local code
  out=$(curl -s -w '\n%{http_code}' "$@")
  code=${out##*$'\n'}; out=${out%$'\n'*}
  [ "$code" = "$status" ] || fail "$* -> $code (wanted $status): $out"
  [[ "$out" =~ $pattern ]] || fail "$* -> body '$out' does not match '$pattern'"
  passed=$((passed + 1))
}
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
settled() { # settled COMMAND_ID STATUS: the command's status, bounded 10 s
  for _ in $(seq 200); do
    curl -s "$qry/commands/$1" | grep -q "\"status\":\"$2\"" && return 0
    sleep 0.05
  done
  fail "command $1 not $2 within 10 s: $(curl -s "$qry/commands/$1")"
}
accepted() { commands=$(curl -s "$cmd/metrics" | sed -n 's/^eventlog_commands_total{outcome="accepted"} //p'); echo "${commands:-0}"; }

expect 202 '"commandId"' -- -X POST -d '{"title":"hero","src":"h.png","width":640}' "$cmd/assets"
asset=$(field "$out" id)
expect 202 '"commandId"' -- -X POST -H 'X-User: 7' -d "{\"title\":\"post\",\"heroImage\":\"$asset\"}" "$cmd/entries"
entry=$(field "$out" id); created=$(field "$out" commandId)
expect 202 '"commandId"' -- -X PUT -d "{\"title\":\"post 2\",\"heroImage\":\"$asset\"}" "$cmd/entries/$entry"
updated=$(field "$out" commandId)
expect 202 '"commandId"' -- -X DELETE "$cmd/assets/$asset"
refused=$(field "$out" commandId)
settled "$created" applied
settled "$updated" applied
settled "$refused" rejected
expect 200 "still linked from 1 place" -- "$qry/commands/$refused"
expect 200 '"version":2' -- "$qry/entries/$entry"
expect 200 '"title":"post 2"' -- "$qry/entries/$entry"
expect 200 "\"items\":\[\{.*\"id\":\"$asset\"" -- "$qry/assets"
nobody=$(cat /proc/sys/kernel/random/uuid)
expect 202 '"commandId"' -- -X POST -d "{\"title\":\"x\",\"heroImage\":\"$nobody\"}" "$cmd/entries"
dangling=$(field "$out" commandId)
settled "$dangling" rejected
expect 200 "names Asset \\\\\"$nobody\\\\\", which does not exist" -- "$qry/commands/$dangling"
expect 202 '"commandId"' -- -X DELETE "$cmd/entries/$entry"
settled "$(field "$out" commandId)" applied
expect 202 '"commandId"' -- -X DELETE "$cmd/assets/$asset"
settled "$(field "$out" commandId)" applied
expect 404 'not found' -- "$qry/entries/$entry"
expect 404 'unknown' -- "$qry/commands/$nobody"

before=$(accepted)
expect 400 '^Required field "title" is missing$' -- -X POST -d '{"src":"s","width":1}' "$cmd/assets"
expect 400 '^Field "width" should be of type "number" but is of type "string"$' -- -X POST -d '{"title":"t","src":"s","width":"1"}' "$cmd/assets"
expect 400 '^Body is not valid JSON$' -- -X POST -d 'not json' "$cmd/entries"
expect 400 '^Body is nested deeper than 32 levels$' -- -X POST --data-binary "$(printf '%.0s[' $(seq 200))" "$cmd/entries"
head -c 100000 /dev/zero | tr '\0' ' ' >"$work/huge"
expect 400 '^Body is larger than 65536 bytes$' -- -X POST --data-binary "@$work/huge" "$cmd/entries"
head -c 9000000 /dev/zero | tr '\0' ' ' >"$work/huger"
expect 413 '' -- -X POST --data-binary "@$work/huger" "$cmd/entries"
expect 400 '^Unsupported method or URL pattern$' -- -X POST -d '{}' "$cmd/unknown"
expect 400 '^Unsupported method or URL pattern$' -- -X PATCH -d '{}' "$cmd/entries/$entry"
expect 400 '^Unsupported method or URL pattern$' -- "$qry/unknown/x/y"
[ "$(accepted)" = "$before" ] || fail "bad input was accepted: $before -> $(accepted)"
expect 200 'eventlog_stage_messages_total\{stage="validator",outcome="rejected"\} 2' -- "$qry/metrics"
expect 200 'eventlog_visibility_lag_seconds_count' -- "$qry/metrics"

kill -TERM $pid
for _ in $(seq 100); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
kill -0 $pid 2>/dev/null && fail "did not stop within 10 s of SIGTERM"
wait $pid || fail "exited with status $?"
echo "event-log e2e (memory): $passed requests as expected, then a clean stop on SIGTERM"
