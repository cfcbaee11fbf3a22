#!/usr/bin/env bash
# benchmarks/loadgen_vs_wrk.sh: tools/loadgen against wrk, each driving examples/hello
# (GET /hello, ~200 bytes of JSON) with one thread and the same connections. hello runs one
# thread pinned to core 0 (taskset), the load generator is pinned to core 1, so the generator
# is what limits the rate. loadgen records every latency in its histogram (as wrk does).
# Alternates wrk, loadgen, wrk, loadgen... for ROUNDS rounds; prints every run (req/s, p99, the
# generator's CPU time per request), the load average, the medians, and ends with
#   ratio_loadgen_vs_wrk: <loadgen median req/s / wrk median req/s>   (goal >= 0.8)
#   ratio_loadgen_vs_wrk_by_cpu: <wrk CPU us/request / loadgen CPU us/request>
# (the second is steadier on a busy machine: how much generator CPU each request costs).
#
# Environment: BUILD_DIR (an existing release build; default: configure and build
# build/release), ROUNDS (default 3), DURATION (seconds, default 10), CONNECTIONS (default 64).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --all   # wrk
source scripts/lib.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
if [ -z "${BUILD_DIR:-}" ]; then
  BUILD_DIR=build/release
  cmake --preset release >/dev/null
  cmake --build "$BUILD_DIR" --target hello loadgen >/dev/null
fi
HELLO="$BUILD_DIR/examples/hello/hello"
LOADGEN="$BUILD_DIR/tools/loadgen/loadgen"
for x in "$HELLO" "$LOADGEN"; do [ -x "$x" ] || { echo "no $x: build the hello and loadgen targets" >&2; exit 1; }; done
command -v wrk >/dev/null && command -v taskset >/dev/null || { echo "needs wrk and taskset" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "needs two cores (server on one, generator on the other)" >&2; exit 1; }

tmp=$(mktemp -d)
hello_pid=""
cleanup() {
  [ -n "$hello_pid" ] && kill "$hello_pid" 2>/dev/null && wait "$hello_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

port=$(free_port)
taskset -c 0 "$HELLO" --port "$port" --threads 1 >"$tmp/hello.log" 2>&1 &
hello_pid=$!
url="http://127.0.0.1:$port/hello"
wait_until 10 curl -sf "$url"
echo "hello: 1 thread on core 0; generators on core 1, 1 thread, $CONNECTIONS connections, ${DURATION}s per run"

# timed FILE CMD...: runs CMD, its output in FILE, and prints its user+system CPU seconds.
timed() {
  local out=$1 TIMEFORMAT='%U %S' t
  shift
  t=$( { time "$@" >"$out" 2>&1; } 2>&1 ) || { cat "$out" >&2; return 1; }
  awk '{ print $1 + $2 }' <<<"$t"
}

# run_wrk / run_loadgen -> appends "req_per_s p99_ms cpu_us_per_request" to $tmp/NAME
run_wrk() {
  local cpu rps p99 total
  cpu=$(timed "$tmp/out" taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$url")
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$tmp/out")
  p99=$(awk '$1 == "99%" { v=$2; if (v ~ /us$/) { sub(/us$/,"",v); v=v/1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v) } else if (v ~ /s$/) { sub(/s$/,"",v); v=v*1000 } print v }' "$tmp/out")
  total=$(awk '/requests in/ {print $1}' "$tmp/out")
  if grep -q "Non-2xx\|Socket errors" "$tmp/out"; then echo "  (wrk: $(grep -E 'Non-2xx|Socket errors' "$tmp/out" | tr -s ' '))"; fi
  record wrk "$rps" "$p99" "$(awk -v c="$cpu" -v n="$total" 'BEGIN { printf "%.2f", c * 1e6 / n }')"
}
run_loadgen() {
  local cpu rps p99 total errors
  cpu=$(timed "$tmp/out" taskset -c 1 "$LOADGEN" -q -c "$CONNECTIONS" -d "${DURATION}s" --json "$tmp/loadgen.json" "$url") || true
  read -r rps p99 total errors < <(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["requests_per_s"], j["latency_ms"]["p99"], j["requests"], j["errors"]["total"])' "$tmp/loadgen.json")
  [ "$errors" = 0 ] || echo "  (loadgen: $errors errors)"
  record loadgen "$rps" "$p99" "$(awk -v c="$cpu" -v n="$total" 'BEGIN { printf "%.2f", c * 1e6 / n }')"
}
record() {
  echo "$2 $3 $4" >>"$tmp/$1"
  printf '  %-8s %10.0f req/s  p99 %7.2f ms  generator CPU %5.2f us/request\n' "$1" "$2" "$3" "$4"
}
median() { sort -g | awk '{a[NR]=$1} END { if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }

for round in $(seq "$ROUNDS"); do
  echo "round $round"
  run_wrk
  run_loadgen
done

echo "load average after the last run: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
for name in wrk loadgen; do
  printf '%-8s median %.0f req/s, median p99 %.2f ms, median generator CPU %.2f us/request\n' "$name" \
    "$(cut -d' ' -f1 "$tmp/$name" | median)" "$(cut -d' ' -f2 "$tmp/$name" | median)" "$(cut -d' ' -f3 "$tmp/$name" | median)"
done
awk -v l="$(cut -d' ' -f1 "$tmp/loadgen" | median)" -v w="$(cut -d' ' -f1 "$tmp/wrk" | median)" \
  'BEGIN { printf "ratio_loadgen_vs_wrk: %.3f\n", l / w }'
awk -v l="$(cut -d' ' -f3 "$tmp/loadgen" | median)" -v w="$(cut -d' ' -f3 "$tmp/wrk" | median)" \
  'BEGIN { printf "ratio_loadgen_vs_wrk_by_cpu: %.3f\n", w / l }'
