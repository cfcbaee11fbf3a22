#!/usr/bin/env bash
# Test Redis servers on free loopback ports, state under $BULWARK_SERVERS_DIR/redis/<instance>/.
#   redis.sh up                  starts the instances `main` (conformance and adapter tests) and
#                                `fault` (failure tests stop, kill and restart it), appends
#                                BULWARK_REDIS_HOST/PORT, BULWARK_REDIS_FAULT_PORT and
#                                BULWARK_REDIS_CONTROL (this script) and
#                                BULWARK_REDIS_SERVERS_DIR to $BULWARK_SERVERS_DIR/env
#   redis.sh down                stops every instance
#   redis.sh stop  [instance]    SIGTERM (a clean shutdown: the AOF is flushed), waits for exit
#   redis.sh kill  [instance]    SIGKILL
#   redis.sh start [instance]    starts it again on the same port and directory (AOF data kept)
# instance defaults to `main`. Servers run with --save "" --appendonly yes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib.sh
source "$here/../lib.sh"
: "${BULWARK_SERVERS_DIR:=$(cd "$here/../.." && pwd)/.servers}"
export BULWARK_SERVERS_DIR
root="$BULWARK_SERVERS_DIR/redis"

ping() { redis-cli -h 127.0.0.1 -p "$1" ping | grep -q PONG; }

start_instance() {
  local name=$1 dir="$root/$1"
  mkdir -p "$dir"
  local port
  if [ -f "$dir/port" ]; then port=$(cat "$dir/port"); else port=$(free_port); echo "$port" >"$dir/port"; fi
  if [ -f "$dir/pid" ] && alive "$(cat "$dir/pid")"; then return 0; fi
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly yes \
    --daemonize no --logfile "$dir/redis.log" --pidfile "$dir/redis.pid" >/dev/null 2>&1 &
  echo $! >"$dir/pid"
  wait_until 10 ping "$port" || { echo "redis.sh: $name did not start (see $dir/redis.log)" >&2; return 1; }
}

# signal_instance NAME SIGNAL: sends SIGNAL and waits (up to 10 s, then SIGKILL) for the exit.
signal_instance() { signal_pidfile "$root/$1/pid" "$2" 10; }
stop_instance() { signal_instance "$1" TERM; }
kill_instance() { signal_instance "$1" KILL; }

action=${1:?usage: redis.sh up|down|stop|kill|start [instance]}
instance=${2:-main}
case "$action" in
  up)
    rm -rf "$root"
    start_instance main
    start_instance fault
    export_env BULWARK_REDIS_HOST 127.0.0.1
    export_env BULWARK_REDIS_PORT "$(cat "$root/main/port")"
    export_env BULWARK_REDIS_FAULT_PORT "$(cat "$root/fault/port")"
    export_env BULWARK_REDIS_CONTROL "$here/redis.sh"
    export_env BULWARK_REDIS_SERVERS_DIR "$BULWARK_SERVERS_DIR"
    echo "redis: main on 127.0.0.1:$(cat "$root/main/port"), fault on 127.0.0.1:$(cat "$root/fault/port")" ;;
  down)
    for d in "$root"/*/; do [ -d "$d" ] && stop_instance "$(basename "$d")"; done
    true ;;
  stop) stop_instance "$instance" ;;
  kill) kill_instance "$instance" ;;
  start) start_instance "$instance" ;;
  *) echo "usage: redis.sh up|down|stop|kill|start [instance]" >&2; exit 2 ;;
esac
