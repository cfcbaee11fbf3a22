#!/usr/bin/env bash
# benchmarks/cms_get_vs_nginx.sh: channel-metadata-store (CMS, examples/channel-metadata) in its
# real mode against nginx serving the same document as a static file (issue 12, "Benchmark").
#
# The script starts its own servers under a temporary BULWARK_SERVERS_DIR (MariaDB, Redis, a
# 3-broker Kafka: scripts/servers.sh) and two CMS processes on them, both `--threads 2`, auth on:
#   near   --backend mysql+redis with the near cache (the default): a GET is a local hit
#   shared --near-cache=false: every GET is a Redis round trip
# and nginx with `worker_processes 2` serving the bytes `GET /api/channel-metadata/GB` answers.
# Every run is `wrk -t1 -c$CONNECTIONS -d$DURATION --latency` with the same Basic auth header.
#
#   1. GET, cache hit: rounds alternate nginx, near, shared (ROUNDS, default 3); medians.
#   2. POST, durable (MySQL up): wrk with benchmarks/cms_post.lua, each request one of the 675
#      two-letter codes AA..ZZ other than GB in turn (no hot row; GB keeps the GET document),
#      rounds alternating `near` and `shared`; no write may be left pending. With the near
#      cache a write also awaits its invalidation on Kafka (acks=all) before it answers.
#   3. GET while MySQL is down: the private MariaDB is stopped, the soft TTL (SOFT_TTL, default
#      5s, given to both CMS) is let pass, the stale headers are checked, then ROUNDS runs of
#      `near` serving its last known good.
# Prints every run (req/s, p99, the server's CPU time per request), the medians, the load
# average, and ends with:
#   ratio_by_cpu, ratio_no_near_cache_by_cpu: nginx's CPU time per request / CMS's
#   ratio: <near GET / nginx req/s>  (goal >= 0.9)  ratio_no_near_cache: <shared GET / nginx>
#   post_rps, post_rps_no_near_cache: durable writes/s    stale_rps: GET while MySQL is down
#   ratio_stale_vs_hit: <stale / near GET req/s>
#
# Environment: BUILD_DIR (an existing release build; default: configure and build
# build/release), ROUNDS, DURATION (10s), CONNECTIONS (64), SOFT_TTL (5s), KAFKA_LIBS (see
# scripts/servers/kafka.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scripts/install-deps.sh --all # nginx, wrk, MariaDB, Redis, Java
source scripts/lib.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
SOFT_TTL=${SOFT_TTL:-5s}
if [ -z "${BUILD_DIR:-}" ]; then
  BUILD_DIR=build/release
  cmake --preset release >/dev/null
  cmake --build "$BUILD_DIR" --target channel-metadata-store >/dev/null
fi
CMS="$BUILD_DIR/examples/channel-metadata/channel-metadata-store"
[ -x "$CMS" ] || { echo "no $CMS: build the channel-metadata-store target" >&2; exit 1; }
command -v wrk >/dev/null && command -v nginx >/dev/null || { echo "needs wrk and nginx" >&2; exit 1; }

tmp=$(mktemp -d /tmp/bulwark-cms-bench.XXXXXX)
BULWARK_SERVERS_DIR="$tmp/servers"
export BULWARK_SERVERS_DIR
mkdir -p "$BULWARK_SERVERS_DIR"
cms_pids=()
cleanup() {
  local p
  for p in "${cms_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${cms_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null || true
  "$root/scripts/servers.sh" down mysql redis kafka >/dev/null 2>&1 || true
  sleep 0.2
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "starting MariaDB, Redis and a 3-broker Kafka in $BULWARK_SERVERS_DIR ..."
"$root/scripts/servers.sh" up mysql redis kafka >/dev/null
# shellcheck disable=SC1091
source "$BULWARK_SERVERS_DIR/env"

auth="Authorization: Basic $(printf 'cms:cmspass' | base64)"
# start_cms NAME NODE FLAGS...: a CMS on a free port, logging to $tmp/NAME.log; sets port_NAME.
start_cms() {
  local name=$1 node=$2 port; shift 2
  port=$(free_port)
  "$CMS" --backend mysql+redis --address 127.0.0.1 --port "$port" --threads 2 --node-id "$node" \
    --mysql-host "$BULWARK_MYSQL_HOST" --mysql-port "$BULWARK_MYSQL_PORT" --mysql-user "$BULWARK_MYSQL_USER" \
    --mysql-password "$BULWARK_MYSQL_PASSWORD" --mysql-database "$BULWARK_MYSQL_DATABASE" \
    --redis-host "$BULWARK_REDIS_HOST" --redis-port "$BULWARK_REDIS_PORT" --kafka-brokers "$BULWARK_KAFKA_BOOTSTRAP" \
    --soft-ttl "$SOFT_TTL" "$@" >"$tmp/$name.log" 2>&1 &
  cms_pids+=($!)
  eval "port_$name=$port pid_$name=$!"
  if ! wait_until 60 curl -sf "http://127.0.0.1:$port/private/status"; then
    echo "CMS $name did not start:" >&2
    tail -n 20 "$tmp/$name.log" >&2
    exit 1
  fi
}
start_cms near 1
start_cms shared 2 --near-cache=false
# shellcheck disable=SC2154 # set by start_cms
near_url="http://127.0.0.1:$port_near/api/channel-metadata/GB"
# shellcheck disable=SC2154
shared_url="http://127.0.0.1:$port_shared/api/channel-metadata/GB"

# The document: Great Britain with 12 channels (about 900 bytes), written once through CMS.
doc='{"countryCode":"GB","product":"exampleProduct","metadata":['
for i in $(seq 1 12); do
  doc+="$([ "$i" -gt 1 ] && echo ,){\"name\":\"Channel $i\",\"language\":\"English\",\"type\":\"$( ((i % 3)) && echo Entertainment || echo News)\"}"
done
doc+=']}'
posted=$(curl -s -H "$auth" -H 'Content-Type: application/json' --data-binary "$doc" -X POST "$near_url")
[ "$posted" = "Data successfully posted" ] || { echo "POST GB answered: $posted" >&2; exit 1; }

# nginx serves exactly the bytes CMS serves, as a static file.
mkdir -p "$tmp/www/api/channel-metadata"
curl -sf -H "$auth" "$near_url" >"$tmp/www/api/channel-metadata/GB"
cmp -s "$tmp/www/api/channel-metadata/GB" <(curl -sf -H "$auth" "$shared_url") \
  || { echo "the two CMS answer different documents" >&2; exit 1; }
nginx_port=$(free_port)
static_nginx "$tmp" "$nginx_port" /api/
nginx_url="http://127.0.0.1:$nginx_port/api/channel-metadata/GB"
wait_until 10 curl -sf "$nginx_url"
echo "document: $(wc -c <"$tmp/www/api/channel-metadata/GB") bytes; nginx $(nginx -v 2>&1 | sed 's/.*\///'), wrk -t1 -c$CONNECTIONS -d$DURATION, CMS and nginx 2 threads/workers each"

# cpu_ticks PID...: user+system CPU time of the processes, in clock ticks.
cpu_ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
nginx_pids() { pgrep -P "$(cat "$tmp/nginx.pid")" | tr '\n' ' '; }
hz=$(getconf CLK_TCK)

# run NAME URL PIDS [WRK_ARGS...] -> appends "req_per_s p99_ms cpu_us_per_request" to $tmp/NAME.
# Any non-2xx answer or socket error fails the benchmark: the figures are of correct answers only.
run() {
  local name=$1 url=$2 pids=$3 out rps p99 t0 t1 total cpu
  shift 3
  t0=$(cpu_ticks $pids)
  out=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -H "$auth" "$@" "$url")
  t1=$(cpu_ticks $pids)
  if grep -qE "Non-2xx|Socket errors" <<<"$out"; then
    echo "$name: $(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr -s ' ')" >&2
    exit 1
  fi
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" { v=$2; if (v ~ /us$/) { sub(/us$/,"",v); v=v/1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v) } else if (v ~ /s$/) { sub(/s$/,"",v); v=v*1000 } print v }' <<<"$out")
  total=$(awk '/requests in/ {print $1}' <<<"$out")
  cpu=$(awk -v t=$((t1 - t0)) -v n="$total" -v hz="$hz" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
  echo "$rps $p99 $cpu" >>"$tmp/$name"
  printf '  %-11s %10.0f req/s  p99 %7.2f ms  server CPU %6.1f us/request\n' "$name" "$rps" "$p99" "$cpu"
}
median() { sort -g | awk '{a[NR]=$1} END { if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }
col() { cut -d' ' -f"$2" "$tmp/$1" | median; }
spread() { cut -d' ' -f1 "$tmp/$1" | sort -g | awk '{a[NR]=$1} END { printf "%.0f-%.0f", a[1], a[NR] }'; }
summary() {
  printf '%-11s median %8.0f req/s (runs %s), median p99 %6.2f ms, median CPU %6.1f us/request\n' \
    "$1" "$(col "$1" 1)" "$(spread "$1")" "$(col "$1" 2)" "$(col "$1" 3)"
}
loads=()
note_load() { loads+=("$1: $(cut -d' ' -f1-3 /proc/loadavg)"); }

echo "GET /api/channel-metadata/GB, cache hit (MySQL up)"
note_load "load average before the GET runs"
for round in $(seq "$ROUNDS"); do
  echo "round $round"
  run nginx "$nginx_url" "$(nginx_pids)"
  # shellcheck disable=SC2154
  run near "$near_url" "$pid_near"
  # shellcheck disable=SC2154
  run shared "$shared_url" "$pid_shared"
done

echo "POST /api/channel-metadata/{AA..ZZ but GB}, durable (MySQL up)"
note_load "load average before the POST runs"
for round in $(seq "$ROUNDS"); do
  echo "round $round"
  run post "http://127.0.0.1:$port_near" "$pid_near" -s "$root/benchmarks/cms_post.lua"
  run post_shared "http://127.0.0.1:$port_shared" "$pid_shared" -s "$root/benchmarks/cms_post.lua"
done
for port in "$port_near" "$port_shared"; do
  pending=$(curl -sf "http://127.0.0.1:$port/private/healthcheck" | python3 -c 'import json,sys; print(json.load(sys.stdin)["components"]["writes"]["details"]["pending"])')
  [ "$pending" = 0 ] || { echo "after the POST runs $pending writes are pending: not all were durable" >&2; exit 1; }
done

echo "GET while MySQL is down (stale serving), CMS with the near cache"
"$root/scripts/servers/mysql.sh" stop
sleep "$(awk -v t="$SOFT_TTL" 'BEGIN { n = t + 0; if (t ~ /ms$/) n /= 1000; else if (t ~ /m$/) n *= 60; print n + 1 }')"
headers=$(curl -s -D - -o /dev/null -H "$auth" "$near_url" | tr -d '\r')
grep -qi '^x-stale: true$' <<<"$headers" || { echo "no X-Stale: true on the GET while MySQL is down:" >&2; echo "$headers" >&2; exit 1; }
cmp -s "$tmp/www/api/channel-metadata/GB" <(curl -sf -H "$auth" "$near_url") \
  || { echo "the stale answer is not the document" >&2; exit 1; }
echo "  stale headers: $(grep -iE '^(x-stale|warning|age):' <<<"$headers" | tr '\n' ' ')"
note_load "load average before the stale runs"
for round in $(seq "$ROUNDS"); do
  run stale "$near_url" "$pid_near"
done
note_load "load average after the last run"
grep -qi '^x-stale: true$' <<<"$(curl -s -D - -o /dev/null -H "$auth" "$near_url" | tr -d '\r')" \
  || { echo "the answers stopped being stale during the stale runs" >&2; exit 1; }

echo
printf '%s\n' "${loads[@]}"
echo "machine: $(nproc) cores"
summary nginx
summary near
summary shared
summary post
summary post_shared
summary stale
# By CPU time per request (nginx's / CMS's): on a busy machine steadier than req/s, which
# depends on how the scheduler shares the cores out among CMS's threads and nginx's processes.
awk -v b="$(col near 3)" -v n="$(col nginx 3)" 'BEGIN { printf "ratio_by_cpu: %.3f\n", n / b }'
awk -v b="$(col shared 3)" -v n="$(col nginx 3)" 'BEGIN { printf "ratio_no_near_cache_by_cpu: %.3f\n", n / b }'
awk -v b="$(col near 1)" -v n="$(col nginx 1)" 'BEGIN { printf "ratio: %.3f\n", b / n }'
awk -v b="$(col shared 1)" -v n="$(col nginx 1)" 'BEGIN { printf "ratio_no_near_cache: %.3f\n", b / n }'
printf 'post_rps: %.0f\n' "$(col post 1)"
printf 'post_rps_no_near_cache: %.0f\n' "$(col post_shared 1)"
printf 'stale_rps: %.0f\n' "$(col stale 1)"
awk -v s="$(col stale 1)" -v h="$(col near 1)" 'BEGIN { printf "ratio_stale_vs_hit: %.3f\n", s / h }'
