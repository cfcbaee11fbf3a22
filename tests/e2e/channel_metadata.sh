#!/usr/bin/env bash
# Black-box test of channel-metadata-store in memory mode (CMS and the embedded CRS in one
# process) over HTTP with curl: the wiring main() does, over real sockets (CRS calling CMS's
# force-update-all, CMS proxying CRS), an outage through --fault-control, the embedded admin
# page, and a clean stop on SIGTERM.
set -euo pipefail
bin=${1:?usage: channel_metadata.sh path/to/channel-metadata-store}
work=$(mktemp -d)
log=$work/cms.log
# Port 0 for both listeners: the kernel picks free ports and the log says which (the way a
# script finds them).
"$bin" --address 127.0.0.1 --port 0 --crs-port 0 --fault-control >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; cat "$log"; exit 1; }
port_of() { sed -n "s|^channel-metadata-store: $1 listening on http://127\.0\.0\.1:\([0-9]*\) .*|\1|p" "$log"; }
cms_port= crs_port=
for _ in $(seq 100); do
  cms_port=$(port_of channel-metadata-store) crs_port=$(port_of cache-retry-service)
  [ -n "$cms_port" ] && [ -n "$crs_port" ] && break
  sleep 0.1
done
[ -n "$cms_port" ] && [ -n "$crs_port" ] || fail "no 'listening on' lines with the bound ports within 10 s"
[ "$cms_port" != 0 ] && [ "$crs_port" != 0 ] || fail "port 0 logged instead of the bound port"
cms="http://127.0.0.1:$cms_port"
crs="http://127.0.0.1:$crs_port"
for _ in $(seq 100); do curl -sf "$crs/private/status" >/dev/null && break; sleep 0.1; done
# Both listeners honour --address: bound to 127.0.0.1, not a wildcard.
if command -v ss >/dev/null; then
  for port in "$cms_port" "$crs_port"; do
    bound=$(ss -Hltn "sport = :$port" | awk '{print $4}' | sort -u | tr '\n' ' ')
    [ "$bound" = "127.0.0.1:$port " ] || fail "port $port is bound on '$bound', not only 127.0.0.1"
  done
fi
curl -sf "$cms/private/status" >/dev/null || fail "CMS not up within 10 s"
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
auth=(-u cms:cmspass)
doc() { echo "{\"countryCode\":\"$1\",\"metadata\":[{\"name\":\"$2\",\"language\":\"English\",\"type\":\"News\"}],\"product\":\"p\"}"; }
expect 401 '^Invalid or missing credentials$' -- "$cms/api/channel-metadata/GB"
expect 404 '"errorCode":"CMS-0003"' -- "${auth[@]}" "$cms/api/channel-metadata/GB"
expect 200 '^Data successfully posted$' -- "${auth[@]}" -X POST -d "$(doc GB one)" "$cms/api/channel-metadata/GB"
expect 200 '"name":"one"' -- "${auth[@]}" "$cms/api/channel-metadata/gb"
expect 200 '^\{"database":\{"down":true\}\}$' -- "${auth[@]}" -X POST -d '{"down":true}' "$cms/private/faults/database"
expect 202 '^Write accepted and pending' -- "${auth[@]}" -X POST -d "$(doc GB two)" "$cms/api/channel-metadata/GB"
expect 200 '"name":"two"' -- "${auth[@]}" "$cms/api/channel-metadata/GB"
expect 200 '"database":\{"status":"DOWN"\}.*"pending":1' -- "$cms/private/healthcheck"
expect 200 '"database":\{"status":"DOWN"\}' -- "${auth[@]}" "$cms/admin/crs/private/healthcheck"
expect 200 '^\{"database":\{"down":false\}\}$' -- "${auth[@]}" -X POST -d '{"down":false}' "$cms/private/faults/database"
# CRS replays the pending write and asks CMS (over HTTP) to reconcile: pending back to 0.
for _ in $(seq 150); do curl -s "$cms/private/healthcheck" | grep -q '"pending":0' && break; sleep 0.1; done
expect 200 '"database":\{"status":"UP"\}.*"pending":0' -- "$cms/private/healthcheck"
expect 200 '^\[\{"id":1,"downtimeTimestamp":"[0-9-]{10} [0-9:]{8}"\}\]$' -- -u crs:crspass "$crs/get-downtime-logs"
expect 200 '^\[\{"id":1,' -- "${auth[@]}" "$cms/admin/crs/get-downtime-logs"
expect 200 '"statusCode":"CRS-1000"' -- -u crs:crspass "$crs/trigger-cache-retry"
expect 200 '<html' -- "$cms/admin/"
expect 200 'bulwark_http_requests_total' -- "$cms/metrics"
expect 200 'bulwark_replayer_messages_total\{replayer="channel_metadata",outcome="replayed"\} 1' -- "$crs/private/prometheus"
id=$(curl -s -D - -o /dev/null "$cms/private/status" | tr -d '\r' | sed -n 's/^request-id: //Ip')
[[ "$id" =~ ^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$ ]] || fail "request-id '$id' is not a UUID v4"
kill -TERM $pid
for _ in $(seq 100); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
kill -0 $pid 2>/dev/null && fail "still running 10 s after SIGTERM"
wait $pid || fail "exit status $? after SIGTERM"
grep -q "stopping" "$log" || fail "no 'stopping' line"
echo "channel_metadata e2e: $passed checks passed"
