#!/usr/bin/env bash
# A real 3-node Apache Kafka cluster (KRaft, no ZooKeeper) on free loopback ports, for tests,
# benchmarks and the examples' real mode. Every node is a combined broker + controller.
#
#   scripts/servers/kafka.sh up        fetch the jars (once), format, start 3 nodes, wait until
#                                      every broker is unfenced; records BULWARK_KAFKA_BOOTSTRAP
#   scripts/servers/kafka.sh down      stop every node, remove the data dir
#   scripts/servers/kafka.sh kill N... SIGKILL nodes (1..3): a crash
#   scripts/servers/kafka.sh stop N... SIGTERM nodes and wait: a clean shutdown
#   scripts/servers/kafka.sh start N.. start nodes again on their ports and data, wait until they serve
#   scripts/servers/kafka.sh status    which nodes run
#
# The Kafka version is pinned in scripts/kafka/pom.xml; Maven copies the jars once into
# .cache/kafka-<version>/libs (KAFKA_LIBS overrides). State lives in $BULWARK_SERVERS_DIR/kafka.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=../lib.sh
source "$here/../lib.sh"
: "${BULWARK_SERVERS_DIR:=$root/.servers}"
export BULWARK_SERVERS_DIR
dir="$BULWARK_SERVERS_DIR/kafka"
nodes=(1 2 3)
pom="$root/scripts/kafka/pom.xml"
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")
: "${KAFKA_LIBS:=$root/.cache/kafka-$version/libs}"
: "${KAFKA_HEAP:=-Xmx512m -Xms128m}"
: "${KAFKA_START_TIMEOUT:=90}"

fetch_jars() {
  [ -f "$KAFKA_LIBS/.complete" ] && return 0
  echo "kafka: fetching Apache Kafka $version from Maven Central into $KAFKA_LIBS"
  rm -rf "$KAFKA_LIBS"
  mkdir -p "$KAFKA_LIBS"
  mvn -q -B -f "$pom" dependency:copy-dependencies -DoutputDirectory="$KAFKA_LIBS"
  touch "$KAFKA_LIBS/.complete"
}

java_cmd() { # java_cmd N MAIN ARGS...: the JVM for node N
  local n=$1 main=$2; shift 2
  # shellcheck disable=SC2086
  exec java $KAFKA_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$dir/log4j.properties" -Dkafka.logs.dir="$dir/node$n" \
    -cp "$KAFKA_LIBS/*" "$main" "$@"
}

write_config() {
  local voters="" n
  for n in "${nodes[@]}"; do
    voters+="${voters:+,}$n@127.0.0.1:$(cat "$dir/node$n/controller.port")"
  done
  cat >"$dir/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=${kafka.logs.dir}/server.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.org.apache.kafka.clients=WARN
log4j.logger.kafka.log.LogCleaner=WARN
log4j.logger.state.change.logger=WARN
EOF
  for n in "${nodes[@]}"; do
    cat >"$dir/node$n/server.properties" <<EOF
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$(cat "$dir/node$n/broker.port"),CONTROLLER://127.0.0.1:$(cat "$dir/node$n/controller.port")
advertised.listeners=PLAINTEXT://127.0.0.1:$(cat "$dir/node$n/broker.port")
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$dir/node$n/data
num.partitions=3
default.replication.factor=3
min.insync.replicas=2
auto.create.topics.enable=true
offsets.topic.replication.factor=3
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=3
# Fast test cycles: no initial rebalance delay; a dead broker is fenced after 3 s and drops
# out of the ISR after 5 s (defaults 9 s and 30 s).
group.initial.rebalance.delay.ms=0
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=500
replica.lag.time.max.ms=5000
controller.quorum.election.timeout.ms=1000
controller.quorum.fetch.timeout.ms=2000
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.segment.bytes=67108864
log.retention.check.interval.ms=300000
EOF
  done
}

pid_of() { cat "$dir/node$1/pid" 2>/dev/null || true; }
running() { local p; p=$(pid_of "$1"); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

start_node() {
  local n=$1
  running "$n" && return 0
  # Marks the log so "started" below is the line of this run, not of an earlier one.
  echo "=== start $(date +%s%N)" >>"$dir/node$n/server.log"
  (java_cmd "$n" kafka.Kafka "$dir/node$n/server.properties" </dev/null >>"$dir/node$n/stdout.log" 2>&1 &
   echo $! >"$dir/node$n/pid")
}

# started N: node N logged "Kafka Server started" since its last start marker. KRaft brokers
# log it only once they are registered with the quorum and unfenced, so they serve metadata.
started() {
  awk '/^=== start/{ok=0} /Kafka Server started/{ok=1} END{exit !ok}' "$dir/node$1/server.log" 2>/dev/null
}

wait_started() {
  local n
  for n in "$@"; do
    if ! wait_until "$KAFKA_START_TIMEOUT" started "$n"; then
      echo "kafka: node $n did not start within ${KAFKA_START_TIMEOUT}s; last lines of its log:" >&2
      tail -n 30 "$dir/node$n/server.log" "$dir/node$n/stdout.log" >&2 || true
      return 1
    fi
  done
}

check_node() {
  case "${1:-}" in 1|2|3) ;; *) echo "kafka: node must be 1, 2 or 3, not '${1:-}'" >&2; exit 2 ;; esac
}

action=${1:?usage: kafka.sh up|down|kill N...|stop N...|start N...|status}
case "$action" in
  up)
    command -v java >/dev/null || { echo "kafka: java not found (scripts/install-deps.sh)" >&2; exit 1; }
    fetch_jars
    "$0" down >/dev/null 2>&1 || true
    mkdir -p "$dir"
    for n in "${nodes[@]}"; do
      mkdir -p "$dir/node$n"
      free_port >"$dir/node$n/broker.port"
      free_port >"$dir/node$n/controller.port"
    done
    write_config
    # Base64 of a random UUID, as Kafka's own random-uuid makes it: drawn again when it begins with
    # '-', which kafka-storage's argument parser takes for an option (1 run in 64 failed so).
    cluster_id=$(python3 -c 'import base64, uuid
while True:
    i = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    if not i.startswith("-"):
        print(i)
        break')
    echo "$cluster_id" >"$dir/cluster.id"
    for n in "${nodes[@]}"; do
      (java_cmd "$n" kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/node$n/server.properties" \
        >"$dir/node$n/format.log" 2>&1) &
    done
    wait
    for n in "${nodes[@]}"; do
      [ -f "$dir/node$n/data/meta.properties" ] || { cat "$dir/node$n/format.log" >&2; exit 1; }
    done
    t0=$(date +%s)
    for n in "${nodes[@]}"; do start_node "$n"; done
    wait_started "${nodes[@]}"
    bootstrap=""
    for n in "${nodes[@]}"; do bootstrap+="${bootstrap:+,}127.0.0.1:$(cat "$dir/node$n/broker.port")"; done
    echo "$bootstrap" >"$dir/bootstrap"
    export_env BULWARK_KAFKA_BOOTSTRAP "$bootstrap"
    export_env BULWARK_KAFKA_CONTROL "$here/kafka.sh"
    echo "kafka: 3 nodes up in $(( $(date +%s) - t0 )) s, bootstrap $bootstrap"
    ;;
  down)
    for n in "${nodes[@]}"; do stop_pidfile "$dir/node$n/pid" & done
    wait
    rm -rf "$dir"
    ;;
  kill)
    shift
    [ $# -gt 0 ] || { echo "usage: kafka.sh kill N..." >&2; exit 2; }
    for n in "$@"; do check_node "$n"; done
    for n in "$@"; do
      p=$(pid_of "$n")
      [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true
    done
    for n in "$@"; do
      p=$(pid_of "$n")
      # Wait until the process is gone so that a restart can bind its ports again.
      [ -n "$p" ] && { wait_until 10 bash -c "! kill -0 $p" || true; }
      rm -f "$dir/node$n/pid"
    done
    ;;
  stop)
    shift
    [ $# -gt 0 ] || { echo "usage: kafka.sh stop N..." >&2; exit 2; }
    for n in "$@"; do check_node "$n"; done
    for n in "$@"; do stop_pidfile "$dir/node$n/pid" & done
    wait
    ;;
  start)
    shift
    [ $# -gt 0 ] || { echo "usage: kafka.sh start N..." >&2; exit 2; }
    for n in "$@"; do check_node "$n"; done
    [ -f "$dir/node1/server.properties" ] || { echo "kafka: cluster is not up" >&2; exit 1; }
    # All at once: after a full outage no node can finish starting without a controller quorum.
    for n in "$@"; do start_node "$n"; done
    wait_started "$@"
    ;;
  status)
    for n in "${nodes[@]}"; do
      if running "$n"; then echo "node $n: running (pid $(pid_of "$n"), port $(cat "$dir/node$n/broker.port"))"
      else echo "node $n: stopped"; fi
    done
    ;;
  *) echo "usage: kafka.sh up|down|kill N...|stop N...|start N...|status" >&2; exit 2 ;;
esac
