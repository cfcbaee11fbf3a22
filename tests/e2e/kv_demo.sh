#!/usr/bin/env bash
# Black-box test of examples/kv-demo over HTTP with curl: start it on port 0 (the kernel picks a
# free one, read back from its log), exercise the API, stop it with SIGTERM and check it exits
# cleanly.
set -euo pipefail
bin=${1:?usage: kv_demo.sh path/to/kv-demo}
work=$(mktemp -d)
log=$work/kv-demo.log
"$bin" --port 0 >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; cat "$log"; exit 1; }
port=
for _ in $(seq 100); do
  port=$(sed -n 's|^kv-demo: listening on http://[^:]*:\([0-9]*\).*|\1|p' "$log" 2>/dev/null || true) # the log may not exist yet
  [ -n "$port" ] && break
  kill -0 $pid 2>/dev/null || fail "exited before listening"
  sleep 0.1
done
[ -n "$port" ] || fail "no 'listening on' line within 10 s"
base="http://127.0.0.1:$port"
for _ in $(seq 50); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done
passed=0
expect() { # expect STATUS BODY_REGEX -- curl args
  local status=$1 pattern=$2; shift 3
  local out code
  out=$(curl -s -w '\n%{http_code}' "$@")
  code=${out##*$'\n'}; out=${out%$'\n'*}
  [ "$code" = "$status" ] || fail "$* -> $code (wanted $status): $out"
  [[ "$out" =~ $pattern ]] || fail "$* -> body '$out' does not match '$pattern'"
  passed=$((passed + 1))
}
expect 404 '"error":"not_found"' -- "$base/api/items/GB"
expect 200 '"version":1' -- -X PUT -d '{"value":{"name":"AT One"}}' "$base/api/items/GB"
expect 200 '"source":"cache".*"version":1|"version":1.*"source":"cache"' -- "$base/api/items/GB"
expect 200 '"version":2' -- -X PUT -d '{"value":2,"expectedVersion":1}' "$base/api/items/GB"
expect 409 '"error":"conflict"' -- -X PUT -d '{"value":3,"expectedVersion":1}' "$base/api/items/GB"
expect 400 '"error":"invalid_argument"' -- -X PUT -d 'not json' "$base/api/items/GB"
expect 200 '"items":\[\{"key":"GB"' -- "$base/api/items"
for _ in $(seq 50); do curl -s "$base/api/changes" | grep -q '"GB":2' && break; sleep 0.1; done
expect 200 '"GB":2' -- "$base/api/changes"
expect 204 '' -- -X DELETE "$base/api/items/GB"
expect 404 '' -- -X DELETE "$base/api/items/GB"
expect 200 'bulwark_http_requests_total' -- "$base/metrics"
kill -TERM $pid
for _ in $(seq 100); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
kill -0 $pid 2>/dev/null && fail "did not stop within 10 s of SIGTERM"
wait $pid || fail "exited with status $?"
grep -q "kv-demo: stopping" "$log" || fail "no graceful stop in the log"
echo "kv-demo e2e: $passed requests as expected, then a clean stop on SIGTERM"
