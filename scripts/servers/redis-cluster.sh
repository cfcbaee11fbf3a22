#!/usr/bin/env bash
# A test Redis Cluster: six redis-server processes in cluster mode (three masters, three
# replicas) on free loopback ports, state under $BULWARK_SERVERS_DIR/redis-cluster/<node>/
# (or REDIS_CLUSTER_ROOT when set: a test's private cluster, which it may kill and restart).
#   redis-cluster.sh up            starts the nodes, creates the cluster (redis-cli --cluster
#                                  create --cluster-replicas 1), waits for cluster_state:ok on
#                                  every node, appends BULWARK_REDIS_CLUSTER_NODES
#                                  (host:port,... of all six) and BULWARK_REDIS_CLUSTER_CONTROL
#                                  (this script) and BULWARK_REDIS_CLUSTER_SERVERS_DIR to
#                                  $BULWARK_SERVERS_DIR/env
#   redis-cluster.sh down          stops every node
#   redis-cluster.sh kill  NODE    SIGKILL one node (n1..n6)
#   redis-cluster.sh start NODE    starts it again on its port and directory (nodes.conf kept)
#   redis-cluster.sh nodes         prints host:port,... of the cluster under the root
#   redis-cluster.sh ids           prints "node port cluster-id" per line
# Small and fast: no persistence (--save "", no AOF), 64 MB maxmemory, cluster-node-timeout
# 2000 ms so a failover takes a few seconds, and cluster-replica-validity-factor 0 so a replica
# always stands for election, however long ago it heard from its master (tests kill masters).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib.sh
source "$here/../lib.sh"
: "${BULWARK_SERVERS_DIR:=$(cd "$here/../.." && pwd)/.servers}"
export BULWARK_SERVERS_DIR
root=${REDIS_CLUSTER_ROOT:-$BULWARK_SERVERS_DIR/redis-cluster}
nodes=(n1 n2 n3 n4 n5 n6)

ping() { redis-cli -h 127.0.0.1 -p "$1" ping | grep -q PONG; }
state_ok() { redis-cli -h 127.0.0.1 -p "$1" cluster info | grep -q 'cluster_state:ok'; }
# A replica whose link to its master is up (a master passes).
synced() {
  local info
  info=$(redis-cli -h 127.0.0.1 -p "$1" info replication)
  grep -q 'role:master' <<<"$info" || grep -q 'master_link_status:up' <<<"$info"
}
# cluster_state:ok on every node (each has seen all slots covered), every replica in sync.
all_ok() {
  local n
  for n in "${nodes[@]}"; do state_ok "$(cat "$root/$n/port")" && synced "$(cat "$root/$n/port")" || return 1; done
}

start_node() {
  local name=$1 dir="$root/$1"
  mkdir -p "$dir"
  local port bus
  # The cluster bus gets its own free port (--cluster-port), not the default port + 10000,
  # which may be taken or above 65535.
  if [ -f "$dir/port" ]; then port=$(cat "$dir/port"); else port=$(free_port); echo "$port" >"$dir/port"; fi
  if [ -f "$dir/bus" ]; then bus=$(cat "$dir/bus"); else bus=$(free_port); echo "$bus" >"$dir/bus"; fi
  if [ -f "$dir/pid" ] && alive "$(cat "$dir/pid")"; then return 0; fi
  redis-server --port "$port" --cluster-port "$bus" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly no \
    --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
    --cluster-replica-validity-factor 0 --repl-diskless-sync-delay 0 --maxmemory 64mb --daemonize no --logfile "$dir/redis.log" >/dev/null 2>&1 &
  echo $! >"$dir/pid"
  wait_until 10 ping "$port" || { echo "redis-cluster.sh: $name did not start (see $dir/redis.log)" >&2; return 1; }
}

addresses() {
  local out=() n
  for n in "${nodes[@]}"; do out+=("127.0.0.1:$(cat "$root/$n/port")"); done
  (IFS=,; echo "${out[*]}")
}

action=${1:?usage: redis-cluster.sh up|down|kill|start|nodes [node]}
case "$action" in
  up)
    [ -d "$root" ] && for d in "$root"/*/; do [ -d "$d" ] && signal_pidfile "$d/pid" TERM 10; done
    rm -rf "$root"
    pids=()
    for n in "${nodes[@]}"; do start_node "$n" & pids+=($!); done
    for p in "${pids[@]}"; do wait "$p" || exit 1; done
    # shellcheck disable=SC2046
    redis-cli --cluster create $(addresses | tr , ' ') --cluster-replicas 1 --cluster-yes >"$root/create.log" 2>&1 ||
      { cat "$root/create.log" >&2; exit 1; }
    wait_until 30 all_ok || { echo "redis-cluster.sh: cluster_state is not ok on every node" >&2; exit 1; }
    if [ -z "${REDIS_CLUSTER_ROOT:-}" ]; then
      export_env BULWARK_REDIS_CLUSTER_NODES "$(addresses)"
      export_env BULWARK_REDIS_CLUSTER_CONTROL "$here/redis-cluster.sh"
      export_env BULWARK_REDIS_CLUSTER_SERVERS_DIR "$BULWARK_SERVERS_DIR"
    fi
    echo "redis-cluster: $(addresses)" ;;
  down)
    # Also the private clusters of tests that could not stop theirs (a crash, a killed ctest).
    for r in "$root" "$BULWARK_SERVERS_DIR"/redis-cluster-private-*; do
      [ -d "$r" ] || continue
      for d in "$r"/*/; do [ -d "$d" ] && signal_pidfile "$d/pid" TERM 10; done
    done
    true ;;
  kill) signal_pidfile "$root/${2:?node}/pid" KILL 10 ;;
  stop) signal_pidfile "$root/${2:?node}/pid" TERM 10 ;;
  start) start_node "${2:?node}" ;;
  nodes) addresses ;;
  ids) for n in "${nodes[@]}"; do echo "$n $(cat "$root/$n/port") $(redis-cli -p "$(cat "$root/$n/port")" cluster myid)"; done ;;
  *) echo "usage: redis-cluster.sh up|down|kill|stop|start|nodes|ids [node]" >&2; exit 2 ;;
esac
