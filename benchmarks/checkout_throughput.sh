#!/usr/bin/env bash
# benchmarks/checkout_throughput.sh: the checkout example (examples/checkout, issue 15) under the
# course's stress test shape. Runs from the repository root.
#
#   1. batch_init: ITEMS items (100k) with stock 1M, USERS users (100k) with credit 1M, ORDERS
#      orders (each 2 random items of quantity 1 at price 1, a random user): nothing can run
#      out, and the run never checks out an order twice.
#   2. wrk -t2 -c$CONNECTIONS -d$DURATION with benchmarks/checkout.lua: every request checks out
#      a distinct unpaid order. The throughput counts the 200s (an order taken from unpaid to
#      paid); 4xx and anything else are reported apart. Real mode first runs WARMUP of the same
#      load on other orders, not counted (brokers just started run interpreted code).
#   3. consistency, read right after through the services: every order sent (warm-up included)
#      read back, the stock taken over all items must be 2 x the paid orders, the credit taken
#      over all users 2 x price x the paid orders.
# against
#   (a) memory: the one-process `checkout` (--threads 2), ORDERS 1M;
#   (b) real: `order-service`, `stock-service`, `payment-service` as separate processes on a
#       private redis-server (scripts/lib.sh private_redis; each service its own key namespace)
#       and a 3-broker Kafka cluster: the script's own (scripts/servers/kafka.sh under a
#       temporary BULWARK_SERVERS_DIR), or with KAFKA=shared the one in $BULWARK_KAFKA_BOOTSTRAP
#       (topics of this run's own prefix). The services create their topics: 8 partitions
#       (PARTITIONS), replication factor 3, min.insync.replicas 2. wrk sends the checkouts to the
#       order service, the setup and the reads go to the service of each path. ORDERS_REAL
#       (300k) orders. Then what one reply or command publish costs: raw librdkafka
#       (benchmarks/kafka/raw_window.c) with one message in flight, with the services' producer
#       settings (idempotent, acks=all, linger CHECKOUT_LINGER_MS, default 20 ms), linger 1 ms, without
#       linger, and with acks=1.
#
# CONNECTIONS_REAL (real mode, 1024; CONNECTIONS, 256, is memory mode's): wrk is a closed loop,
# so checkouts/s <= connections / latency. A checkout waits for four publishes in a row, each
# lingering 20 ms: 80 ms on an idle machine, so 256 connections could never pass 3,200/s, nor
# 3,000/s once a checkout takes more than 85 ms; 1024 leave room for 3,000/s at up to 340 ms.
#
# Prints, per mode, the load average before and after, checkouts/s, p50/p99 latency, refusals and
# errors, each process's CPU time per checkout (memory: the server; real: each service, the
# brokers, redis-server; both: wrk), the consistency check, and ends with:
#   ratio_memory: <checkouts/s in memory mode / 20000>  (goal >= 1)
#   ratio_real: <checkouts/s in real mode / 3000>       (goal >= 1)
# With KAFKA=shared the brokers' CPU is that of the shared cluster's java processes (those
# listening on the bootstrap ports): every client of theirs counts, other helpers' benchmarks included;
# `brokers_background` is their CPU over 3 s with no checkout in flight just before the run
# (other clients, the brokers' own housekeeping), for a sense of how much of it is not this run's. Real mode also
# prints the Kafka messages per checkout (the run's topics' high watermarks before and after the
# measured run: commands, replies, resends) and, with COUNT_REQUESTS=1, the requests each
# service's librdkafka sent per checkout by type (debug=protocol: its log costs CPU, so the
# run's other figures are not comparable with a run without it).
#
# Environment: BUILD_DIR (an existing release build; default: configure and build
# build/release), MODES ("memory real"), DURATION (20s), WARMUP (real mode: 10s; 0 none),
# CONNECTIONS (memory mode, 256), CONNECTIONS_REAL (1024), ITEMS, USERS, ORDERS, ORDERS_REAL,
# PARTITIONS (8), KAFKA (private|shared), MAX_BATCH (real mode: the participants' --max-batch; unset: the services' default),
# PARTICIPANT_LINGER_MS (real mode: the participants' --linger-ms; unset: the services' default),
# COUNT_REQUESTS (real mode: 1 counts the services' Kafka requests), CHECKOUT_KAFKA_PROPERTIES
# (the services' extra librdkafka settings, name=value,...; read by the services themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source scripts/lib.sh

MODES=${MODES:-memory real}
DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-10s}
CONNECTIONS=${CONNECTIONS:-256}
CONNECTIONS_REAL=${CONNECTIONS_REAL:-1024}
ITEMS=${ITEMS:-100000}
USERS=${USERS:-100000}
ORDERS=${ORDERS:-1000000}
ORDERS_REAL=${ORDERS_REAL:-300000}
PARTITIONS=${PARTITIONS:-8}
KAFKA=${KAFKA:-private}
STARTING=1000000
PRICE=1
if [ -z "${BUILD_DIR:-}" ]; then
  BUILD_DIR=build/release
  cmake --preset release >/dev/null
  cmake --build "$BUILD_DIR" --target checkout order-service stock-service payment-service >/dev/null
fi
bins="$BUILD_DIR/examples/checkout"
for b in checkout order-service stock-service payment-service; do
  [ -x "$bins/$b" ] || { echo "no $bins/$b: build the checkout targets" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "needs wrk (scripts/install-deps.sh --all)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time): wrk's CPU time" >&2; exit 1; }
# wrk and the service it loads each hold a socket per connection.
most=$((CONNECTIONS > CONNECTIONS_REAL ? CONNECTIONS : CONNECTIONS_REAL))
[ "$(ulimit -n)" -ge $((2 * most + 256)) ] || ulimit -n $((2 * most + 256)) || {
  echo "$most connections need $((2 * most + 256)) file descriptors (ulimit -n)" >&2
  exit 1
}

tmp=$(mktemp -d /tmp/bulwark-checkout-bench.XXXXXX)
pids=()
own_kafka=0
redis_pid=
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  stop_private_redis
  [ "$own_kafka" = 1 ] && { scripts/servers/kafka.sh down >/dev/null 2>&1 || true; }
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

load() { cut -d' ' -f1-3 /proc/loadavg; }
hz=$(getconf CLK_TCK)

# start NAME BINARY ARGS... -> runs a service in the background, waits for its "listening on"
# line (60 s) and sets port.
start() {
  local name=$1 bin=$2
  shift 2
  "$bin" "$@" >"$tmp/$name.log" 2>&1 &
  pids+=($!)
  port=
  for _ in $(seq 600); do
    port=$( (sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$tmp/$name.log" 2>/dev/null || true) | head -1)
    [ -n "$port" ] && return 0
    alive "${pids[-1]}" || break
    sleep 0.1
  done
  echo "$name did not start:" >&2
  cat "$tmp/$name.log" >&2
  return 1
}

post() { # post BASE PATH: a 200 or the run ends
  local got
  got=$(curl -s -w ' %{http_code}' -X POST "$1$2")
  [ "${got##* }" = 200 ] || { echo "POST $2 answered: $got" >&2; exit 1; }
}

# read_all BASE PATH COUNT FIELD -> "<answers> <sum of FIELD>" over GET BASE PATH<id> for ids
# 0..COUNT-1, over one keep-alive connection per curl (-K), 4 curls at once. A boolean FIELD
# sums as 0/1.
read_all() {
  local base=$1 path=$2 count=$3 field=$4 part
  for part in 0 1 2 3; do
    awk -v p="$path" -v n="$count" -v k="$part" -v b="$base" \
      'BEGIN { for (i = k; i < n; i += 4) printf "url = \"%s%s%d\"\n", b, p, i }' >"$tmp/urls.$part"
    curl -s -K "$tmp/urls.$part" >"$tmp/bodies.$part" &
  done
  wait
  cat "$tmp"/bodies.* | python3 -c '
import json, sys
text, field = sys.stdin.read(), sys.argv[1]
decoder, i, n, total = json.JSONDecoder(), 0, 0, 0
while i < len(text):
    value, i = decoder.raw_decode(text, i)
    n += 1
    total += int(value[field])
print(n, total)' "$field"
  rm -f "$tmp"/urls.* "$tmp"/bodies.*
}

# settle BASE -> waits (120 s at most) until the order service at BASE drives no saga
# (bulwark_saga_in_flight 0): wrk stops counting at its end, the checkouts still in flight run on.
settle() {
  local n
  for _ in $(seq 1200); do
    n=$(curl -s "$1/metrics" | awk '/^bulwark_saga_in_flight/ { s += $2 } END { printf "%d", s }')
    [ "$n" = 0 ] && return 0
    sleep 0.1
  done
  echo "sagas still in flight after 120 s: $n" >&2
}

# wrk_run BASE SECONDS FIRST OUT -> wrk checking out orders FIRST, FIRST + 1, ... for SECONDS;
# OUT.cpu gets wrk's CPU seconds (user + system).
wrk_run() {
  /usr/bin/time -f '%U %S' -o "$4.cpu" \
    wrk -t2 -c"$connections" -d"$2" --timeout 60s --latency -s benchmarks/checkout.lua "$1" -- 2 "$orders" "$3" >"$4"
}

# kafka_messages -> the messages ever written to the run's topics ($kafka_topics), summed.
kafka_messages() {
  "$tmp/raw_window" "$bootstrap" --offsets $kafka_topics 2> >(grep -v '^%' >&2) | awk '{ n += $2 } END { print n + 0 }'
}

# log_lines NAME -> the lines of service NAME's log so far.
log_lines() { wc -l <"$tmp/$1.log"; }

# kafka_requests NAME FROM TO -> "Type n, ..." of the requests librdkafka logged as sent
# (debug=protocol) in lines FROM+1..TO of service NAME's log, each per checkout ($ok).
kafka_requests() {
  sed -n "$(($2 + 1)),$3p" "$tmp/$1.log" | sed -n 's/.*: Sent \([A-Za-z]*\)Request .*/\1/p' | sort | uniq -c |
    sort -rn | awk -v n="$ok" '{ t += $1; line = line sprintf("%s%s %.2f", (line == "" ? "" : ", "), $2, $1 / n) }
      END { printf "%.2f (%s)", t / n, line }'
}

# measure MODE ORDER_BASE STOCK_BASE PAYMENT_BASE CPU_GROUPS... -> batch_init, the warm-up
# (real mode), the measured run and the consistency check; prints the mode's lines and sets
# rate. A CPU group is "label:pid pid ...": its CPU time per checkout over the measured run.
measure() {
  local mode=$1 order_base=$2 stock_base=$3 payment_base=$4
  shift 4
  echo "$mode: batch_init: $ITEMS items with stock $STARTING, $USERS users with credit $STARTING, $orders orders ..."
  local t0
  t0=$(date +%s.%N)
  post "$stock_base" "/stock/batch_init/$ITEMS/$STARTING/$PRICE"
  post "$payment_base" "/payment/batch_init/$USERS/$STARTING"
  post "$order_base" "/orders/batch_init/$orders/$ITEMS/$USERS/$PRICE"
  echo "$mode: batch_init took $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"

  local first=0
  if [ "$mode" = real ] && [ "$WARMUP" != 0 ]; then
    wrk_run "$order_base" "$WARMUP" 0 "$tmp/wrk-$mode-warmup.out"
    first=$(awk '/^orders_sent:/ {print $2}' "$tmp/wrk-$mode-warmup.out")
    echo "$mode: warm-up $WARMUP (not counted): $(awk '/^checkouts_per_s:/ {print $2}' "$tmp/wrk-$mode-warmup.out") checkouts/s, orders 0..$((first - 1))"
    settle "$order_base"
  fi

  local group label before=() after=() i messages_before lines_before=() idle_ticks=
  # The brokers' CPU over 3 s with no checkout in flight (before the measured run): on a shared
  # cluster, what other clients and the brokers' own housekeeping cost them meanwhile.
  if [ -n "${broker_pids:-}" ]; then
    idle_ticks=$(cpu_ticks $broker_pids)
    sleep 3
    idle_ticks=$(($(cpu_ticks $broker_pids) - idle_ticks))
  fi
  for group in "$@"; do before+=("$(cpu_ticks ${group#*:})"); done
  # Real mode: the private redis-server's command counts over the measured run only, the
  # topics' messages and the services' logged requests from here.
  if [ "$mode" = real ]; then
    redis-cli -p "$redis_port" config resetstat >/dev/null
    messages_before=$(kafka_messages)
    for label in order stock payment; do lines_before+=("$(log_lines $label)"); done
  fi
  echo "$mode: load average before the run: $(load) ($connections connections)"
  wrk_run "$order_base" "$DURATION" "$first" "$tmp/wrk-$mode.out"
  for group in "$@"; do after+=("$(cpu_ticks ${group#*:})"); done
  local messages_after lines_after=()
  if [ "$mode" = real ]; then
    messages_after=$(kafka_messages)
    for label in order stock payment; do lines_after+=("$(log_lines $label)"); done
  fi
  echo "$mode: load average after the run: $(load)"
  local ok refused other sent
  ok=$(awk '/^checkouts_ok:/ {print $2}' "$tmp/wrk-$mode.out")
  refused=$(awk '/^checkouts_refused:/ {print $2}' "$tmp/wrk-$mode.out")
  other=$(awk '/^checkouts_other:/ {print $2}' "$tmp/wrk-$mode.out")
  rate=$(awk '/^checkouts_per_s:/ {print $2}' "$tmp/wrk-$mode.out")
  grep -E '^(seconds|p50_ms|p99_ms|socket_errors):' "$tmp/wrk-$mode.out" | sed "s/^/$mode /"
  echo "$mode checkouts_ok: $ok  checkouts_refused: $refused  checkouts_other: $other"
  echo "$mode checkouts_per_s: $rate"
  if [ "$ok" -gt 0 ]; then
    local line=""
    i=0
    for group in "$@"; do
      label=${group%%:*}
      line+="${line:+, }$label $(awk -v t=$((after[i] - before[i])) -v hz="$hz" -v n="$ok" 'BEGIN { printf "%.0f", t / hz * 1e6 / n }') us"
      i=$((i + 1))
    done
    line+=", wrk $(awk -v n="$ok" '{ printf "%.0f", ($1 + $2) * 1e6 / n }' "$tmp/wrk-$mode.out.cpu") us"
    echo "$mode cpu_us_per_checkout: $line"
    # shellcheck disable=SC2086
    [ -z "$idle_ticks" ] || echo "$mode brokers_background: $(awk -v t="$idle_ticks" -v hz="$hz" \
      'BEGIN { printf "%.0f", t / hz / 3 * 1000 }') ms of CPU per second with no checkout running (3 s before the run)," \
      "$(awk -v t="$idle_ticks" -v hz="$hz" -v n="$ok" -v s="$(awk '/^seconds:/ {print $2}' "$tmp/wrk-$mode.out")" \
        'BEGIN { printf "%.0f", t / hz / 3 * s * 1e6 / n }') us per checkout at this run's rate"
    if [ "$mode" = real ]; then
      echo "$mode kafka_messages_per_checkout: $(div $((messages_after - messages_before)) "$ok")" \
        "($((messages_after - messages_before)) written to the run's topics during it)"
      if [ "${COUNT_REQUESTS:-0}" = 1 ]; then
        i=0
        for label in order stock payment; do
          echo "$mode kafka_requests_per_checkout $label-service: $(kafka_requests $label "${lines_before[i]}" "${lines_after[i]}")"
          i=$((i + 1))
        done
      fi
    fi
    # Commands sent during the run by checkouts still in flight after it count too (as in the
    # CPU figures): a per-checkout figure within a few percent at 1024 connections.
    [ "$mode" != real ] || redis-cli -p "$redis_port" info commandstats | tr -d '\r' | awk -F'[:=,]' -v n="$ok" '
      /^cmdstat_/ { sub(/^cmdstat_/, "", $1); calls += $3; usec += $5; line = line sprintf("%s%s %.2f", (line == "" ? "" : ", "), $1, $3 / n) }
      END { if (n > 0 && calls > 0) printf "'"$mode"' redis_calls_per_checkout: %.2f (%s), %.1f us of redis-server time each\n", calls / n, line, usec / calls }'
  fi

  # wrk stops counting at the end of the run while up to $connections checkouts are still in
  # flight; they finish on the server (settle waits for that). So the orders actually sent (below `orders_sent`) are
  # read back: the paid ones among those of the measured run must be at least its 200s, at most
  # $connections more, and the stock and credit taken must be exactly what every paid order cost.
  settle "$order_base"
  sent=$(awk '/^orders_sent:/ {print $2}' "$tmp/wrk-$mode.out")
  [ "$sent" -le "$orders" ] || sent=$orders
  echo "$mode consistency: reading $sent orders, $ITEMS items and $USERS users ..."
  local orders_read paid items_read stock_left users_read credit_left warm_paid=0 result
  if [ "$first" -gt 0 ]; then
    result=$(read_all "$order_base" /orders/find/ "$first" paid)
    read -r _ warm_paid <<<"$result"
  fi
  result=$(read_all "$order_base" /orders/find/ "$sent" paid)
  read -r orders_read paid <<<"$result"
  result=$(read_all "$stock_base" /stock/find/ "$ITEMS" stock)
  read -r items_read stock_left <<<"$result"
  result=$(read_all "$payment_base" /payment/find_user/ "$USERS" credit)
  read -r users_read credit_left <<<"$result"
  local stock_taken=$((ITEMS * STARTING - stock_left)) credit_taken=$((USERS * STARTING - credit_left))
  local run_paid=$((paid - warm_paid)) consistent=yes
  [ "$orders_read" = "$sent" ] && [ "$items_read" = "$ITEMS" ] && [ "$users_read" = "$USERS" ] || consistent=no
  [ "$run_paid" -ge "$ok" ] && [ "$run_paid" -le $((ok + connections)) ] || consistent=no
  [ "$stock_taken" = $((2 * paid)) ] || consistent=no
  [ "$credit_taken" = $((2 * PRICE * paid)) ] || consistent=no
  echo "$mode consistency: $paid orders paid ($run_paid in the measured run, $ok answered 200 within it), stock taken" \
    "$stock_taken (expected $((2 * paid))), credit taken $credit_taken (expected $((2 * PRICE * paid))): $consistent"
  [ "$consistent" = yes ] || { echo "INCONSISTENT" >&2; exit 1; }
}

for mode in $MODES; do
  case $mode in
    memory)
      orders=$ORDERS connections=$CONNECTIONS
      p=$(free_port)
      "$bins/checkout" --port "$p" --threads 2 >"$tmp/checkout.log" 2>&1 &
      pids+=($!)
      wait_until 30 curl -sf "http://127.0.0.1:$p/health" || { echo "checkout did not start:" >&2; cat "$tmp/checkout.log" >&2; exit 1; }
      base="http://127.0.0.1:$p"
      measure memory "$base" "$base" "$base" "checkout:${pids[-1]}"
      memory_rate=$rate
      kill "${pids[-1]}"
      wait "${pids[-1]}" 2>/dev/null || true
      ;;
    real)
      orders=$ORDERS_REAL connections=$CONNECTIONS_REAL
      private_redis "$tmp"
      if [ "$KAFKA" = shared ]; then
        [ -n "${BULWARK_KAFKA_BOOTSTRAP:-}" ] || { echo "KAFKA=shared needs BULWARK_KAFKA_BOOTSTRAP (source the servers' env)" >&2; exit 1; }
        bootstrap=${BULWARK_KAFKA_BOOTSTRAP//\\/}
        broker_pids=$(listening_pids "$bootstrap")
      else
        export BULWARK_SERVERS_DIR="$tmp/servers"
        mkdir -p "$BULWARK_SERVERS_DIR"
        own_kafka=1
        echo "real: starting a 3-broker Kafka cluster of the script's own ..."
        scripts/servers/kafka.sh up >"$tmp/kafka-up.log" 2>&1 || { cat "$tmp/kafka-up.log" >&2; exit 1; }
        bootstrap=$(sed -n 's/^export BULWARK_KAFKA_BOOTSTRAP=//p' "$BULWARK_SERVERS_DIR/env" | tr -d '\\' | tail -1)
        broker_pids=$(cat "$BULWARK_SERVERS_DIR"/kafka/node*/pid | tr '\n' ' ')
      fi
      prefix="ckbench$$-$(date +%s)"
      kafka_topics="$prefix.stock.commands $prefix.payment.commands $prefix.replies.order-bench"
      # shellcheck disable=SC2046
      cc -O2 -o "$tmp/raw_window" benchmarks/kafka/raw_window.c $(pkg-config --cflags --libs rdkafka)
      common=(--redis "127.0.0.1:$redis_port" --kafka "$bootstrap" --prefix "$prefix" --partitions "$PARTITIONS")
      if [ "${COUNT_REQUESTS:-0}" = 1 ]; then
        export CHECKOUT_KAFKA_PROPERTIES="${CHECKOUT_KAFKA_PROPERTIES:+$CHECKOUT_KAFKA_PROPERTIES,}debug=protocol"
      fi
      participant_args=()
      [ -z "${MAX_BATCH:-}" ] || participant_args=(--max-batch "$MAX_BATCH")
      [ -z "${PARTICIPANT_LINGER_MS:-}" ] || participant_args+=(--linger-ms "$PARTICIPANT_LINGER_MS")
      start stock "$bins/stock-service" --port 0 "${common[@]}" "${participant_args[@]}"
      stock_port=$port stock_pid=${pids[-1]}
      start payment "$bins/payment-service" --port 0 "${common[@]}" "${participant_args[@]}"
      payment_port=$port payment_pid=${pids[-1]}
      start order "$bins/order-service" --port 0 --replica order-bench --stock-url "127.0.0.1:$stock_port" \
        --payment-url "127.0.0.1:$payment_port" --answer-timeout-ms 60000 "${common[@]}"
      order_port=$port order_pid=${pids[-1]}
      groups=("order-service:$order_pid" "stock-service:$stock_pid" "payment-service:$payment_pid")
      [ -z "$broker_pids" ] || groups+=("brokers:$broker_pids")
      groups+=("redis-server:$redis_pid")
      echo "real: $PARTITIONS partitions per topic, prefix $prefix, Kafka $KAFKA ($bootstrap), redis-server :$redis_port"
      measure real "http://127.0.0.1:$order_port" "http://127.0.0.1:$stock_port" "http://127.0.0.1:$payment_port" \
        "${groups[@]}"
      real_rate=$rate
      grep -hE '^bulwark_participant_(commands|duplicates|batches)_total|^bulwark_saga_finished_total' \
        <(curl -s "http://127.0.0.1:$stock_port/metrics") <(curl -s "http://127.0.0.1:$payment_port/metrics") \
        <(curl -s "http://127.0.0.1:$order_port/metrics") | sed 's/^/real metrics: /' || true

      # What one publish costs (a checkout waits for four in a row: the pay command and its
      # reply, the stock command and its reply): raw librdkafka, one message in flight.
      raw() { "$tmp/raw_window" "$bootstrap" "${prefix}.raw" "$PARTITIONS" 1 3 "$@" 2> >(grep -v '^%' >&2) | sed 's/^raw_window: //'; }
      linger=${CHECKOUT_LINGER_MS:-20}
      echo "real publish latency, acks=all linger $linger ms (the services' producer): $(raw linger.ms "$linger")"
      echo "real publish latency, acks=all linger 1 ms:                          $(raw linger.ms 1)"
      echo "real publish latency, acks=all linger 0:                             $(raw linger.ms 0)"
      echo "real publish latency, acks=1 linger 0 (not idempotent):              $(raw linger.ms 0 enable.idempotence false acks 1)"
      # On a shared cluster the run's topics go too, once no service of it can use them.
      for p in "$order_pid" "$stock_pid" "$payment_pid"; do kill "$p" 2>/dev/null || true; done
      for p in "$order_pid" "$stock_pid" "$payment_pid"; do wait "$p" 2>/dev/null || true; done
      # shellcheck disable=SC2086
      [ "$KAFKA" = shared ] && "$tmp/raw_window" "$bootstrap" --delete "${prefix}.raw" $kafka_topics \
        2> >(grep -v '^%' >&2) >/dev/null || true
      ;;
    *) echo "unknown mode $mode" >&2; exit 1 ;;
  esac
done

echo "load average: $(load)"
[ -z "${memory_rate:-}" ] || echo "ratio_memory: $(div "$memory_rate" 20000)"
[ -z "${real_rate:-}" ] || echo "ratio_real: $(div "$real_rate" 3000)"
