#!/usr/bin/env bash
# kafka::event_bus against raw librdkafka on the same local 3-node cluster (started here):
# publish N messages of 100 bytes both ways (same producer configuration: idempotent,
# acks=all, linger 5 ms), then consume them both ways. Prints msgs/s and
#   ratio: <publish bulwark/raw>      ratio_consume: <consume bulwark/raw>
# The publish phase runs four ways, 1M messages each, in 3 rounds rotating their order, all but the
# last with 50,000 messages in flight: raw librdkafka keeping 50,000 waiting for their reports;
# bulwark publish_batch (1000 per batch, 50 batches in flight) -> `ratio:`; bulwark publish per
# message (50000 coroutines, spawned before the clock starts, each taking the next message when
# its report came) -> `ratio_per_message_publish:`; raw with no bound but librdkafka's queue,
# printed for reference. Each way prints client CPU per message (whole process, main thread,
# and by kind of thread: main, rdk:main, rdk:broker*, rdk:other, poll) and page faults; the
# producer settings in which the two handles differ are printed first. Then 9,000 messages with
# 64 in flight (an ingestion API's concurrency), raw (a loop keeping 64 waiting for reports)
# against publish per message (64 coroutines) -> `ratio_per_message_publish_64:`. Last, a handler that
# awaits a simulated 100 us round trip per call reads up to 50,000 of the messages again:
# subscribe (a wait per message) vs subscribe_batch (a wait per batch of up to 256) ->
# `ratio_batch:` (batch msgs/s / per-message msgs/s).
# Usage: benchmarks/kafka_vs_raw.sh [messages=1000000] [bytes=100] [window=50000] [rounds=3] [batch=1000]
#        [small_window=64] [small_messages=9000]
#   BUILD_DIR=build/release  use an existing build (default: configure and build the release preset)
#   KAFKA=shared             use the cluster in $BULWARK_KAFKA_BOOTSTRAP (source the servers' env)
#                            instead of starting a private one; the bench deletes its topics at the end
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
messages=${1:-1000000}
bytes=${2:-100}
window=${3:-50000}
rounds=${4:-3}
batch=${5:-1000}
small_window=${6:-64}
small_messages=${7:-$((messages < 9000 ? messages : 9000))}

if [ -z "${BUILD_DIR:-}" ]; then
  BUILD_DIR=$root/build/release
  cmake --preset release >/dev/null
fi
cmake --build "$BUILD_DIR" --target bulwark_kafka_bench >/dev/null

if [ "${KAFKA:-private}" = shared ]; then
  [ -n "${BULWARK_KAFKA_BOOTSTRAP:-}" ] || { echo "KAFKA=shared needs BULWARK_KAFKA_BOOTSTRAP (source the servers' env)" >&2; exit 1; }
  echo "cluster: shared ($BULWARK_KAFKA_BOOTSTRAP)"
else
  # A cluster of its own, so that the benchmark's topics never burden the test cluster.
  export BULWARK_SERVERS_DIR=$root/.servers/bench-kafka
  rm -rf "$BULWARK_SERVERS_DIR"
  mkdir -p "$BULWARK_SERVERS_DIR"
  cleanup() { scripts/servers/kafka.sh down >/dev/null 2>&1 || true; rm -rf "$BULWARK_SERVERS_DIR"; }
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  scripts/servers/kafka.sh up
  # shellcheck disable=SC1091
  source "$BULWARK_SERVERS_DIR/env"
fi
echo "load before the run: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
"$BUILD_DIR/benchmarks/kafka/bulwark_kafka_bench" "$messages" "$bytes" "$window" "$rounds" "$batch" "$small_window" "$small_messages" 2> >(grep -v '^%' >&2)
