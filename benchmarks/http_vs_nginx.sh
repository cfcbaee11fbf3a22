#!/usr/bin/env bash
# benchmarks/http_vs_nginx.sh: nginx serving a ~200-byte JSON file vs examples/hello serving
# the same bytes from memory. Both get 2 workers on loopback; each is driven by
# `wrk -t1 -c64 -d10s --latency`, alternating nginx, bulwark, nginx, bulwark... for ROUNDS
# rounds (default 3). Prints every run, both medians (req/s) and median p99 latencies, and
# ends with `ratio: <bulwark/nginx>` (median req/s).
#
# Environment: BUILD_DIR (an existing release build; default: configure and build
# build/release), ROUNDS, DURATION (default 10s), CONNECTIONS (default 64).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --all   # nginx and wrk
source scripts/lib.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
if [ -z "${BUILD_DIR:-}" ]; then
  BUILD_DIR=build/release
  cmake --preset release >/dev/null
  cmake --build "$BUILD_DIR" --target hello >/dev/null
fi
HELLO="$BUILD_DIR/examples/hello/hello"
[ -x "$HELLO" ] || { echo "no $HELLO: build the hello target" >&2; exit 1; }
command -v wrk >/dev/null && command -v nginx >/dev/null || { echo "needs wrk and nginx" >&2; exit 1; }

tmp=$(mktemp -d)
hello_pid=""
cleanup() {
  [ -n "$hello_pid" ] && kill "$hello_pid" 2>/dev/null && wait "$hello_pid" 2>/dev/null || true
  [ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null || true
  sleep 0.2
  rm -rf "$tmp"
}
trap cleanup EXIT

bulwark_port=$(free_port)
"$HELLO" --port "$bulwark_port" --threads 2 >"$tmp/hello.log" 2>&1 &
hello_pid=$!
wait_until 10 curl -sf "http://127.0.0.1:$bulwark_port/hello"

# nginx serves exactly the bytes hello serves, as a static file.
mkdir -p "$tmp/www"
curl -sf "http://127.0.0.1:$bulwark_port/hello" >"$tmp/www/hello"
nginx_port=$(free_port)
static_nginx "$tmp" "$nginx_port" "= /hello"
wait_until 10 curl -sf "http://127.0.0.1:$nginx_port/hello"
echo "document: $(wc -c <"$tmp/www/hello") bytes; nginx $(nginx -v 2>&1 | sed 's/.*\///'), wrk -t1 -c$CONNECTIONS -d$DURATION"

# cpu_ticks PID...: user+system CPU time of the processes, in clock ticks.
cpu_ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
nginx_pids() { pgrep -P "$(cat "$tmp/nginx.pid")" | tr '\n' ' '; }
hz=$(getconf CLK_TCK)

# run NAME URL PIDS -> appends "req_per_s p99_ms cpu_us_per_request" to $tmp/NAME
# The server's CPU time per request is printed too: on a busy machine it is steadier than req/s.
run() {
  local out rps p99 t0 t1 total cpu
  t0=$(cpu_ticks $3)
  out=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "$2")
  t1=$(cpu_ticks $3)
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" { v=$2; if (v ~ /us$/) { sub(/us$/,"",v); v=v/1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v) } else if (v ~ /s$/) { sub(/s$/,"",v); v=v*1000 } print v }' <<<"$out")
  if grep -q "Non-2xx\|Socket errors" <<<"$out"; then echo "  ($1: $(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr -s ' '))"; fi
  total=$(awk '/requests in/ {print $1}' <<<"$out")
  cpu=$(awk -v t=$((t1 - t0)) -v n="$total" -v hz="$hz" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
  echo "$rps $p99 $cpu" >>"$tmp/$1"
  printf '  %-8s %10.0f req/s  p99 %7.2f ms  server CPU %5.1f us/request\n' "$1" "$rps" "$p99" "$cpu"
}
median() { sort -g | awk '{a[NR]=$1} END { if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }

for round in $(seq "$ROUNDS"); do
  echo "round $round"
  run nginx "http://127.0.0.1:$nginx_port/hello" "$(nginx_pids)"
  run bulwark "http://127.0.0.1:$bulwark_port/hello" "$hello_pid"
done

nginx_rps=$(cut -d' ' -f1 "$tmp/nginx" | median)
nginx_p99=$(cut -d' ' -f2 "$tmp/nginx" | median)
bulwark_rps=$(cut -d' ' -f1 "$tmp/bulwark" | median)
bulwark_p99=$(cut -d' ' -f2 "$tmp/bulwark" | median)
nginx_cpu=$(cut -d' ' -f3 "$tmp/nginx" | median)
bulwark_cpu=$(cut -d' ' -f3 "$tmp/bulwark" | median)
echo "load average before the last run: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
printf 'nginx   median %.0f req/s, median p99 %.2f ms, median CPU %.1f us/request\n' "$nginx_rps" "$nginx_p99" "$nginx_cpu"
printf 'bulwark median %.0f req/s, median p99 %.2f ms, median CPU %.1f us/request\n' "$bulwark_rps" "$bulwark_p99" "$bulwark_cpu"
awk -v b="$bulwark_rps" -v n="$nginx_rps" 'BEGIN { printf "ratio: %.3f\n", b / n }'
