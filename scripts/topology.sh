#!/usr/bin/env bash
# The channel-metadata system on loopback with real servers, as the reference ran it: two MariaDB
# servers (the store's database and CRS's own, so the downtime log can be written while the
# store's database is down), Redis, a 4-member Hazelcast cluster, a 3-broker Kafka cluster,
# TOPOLOGY_CMS_REPLICAS channel-metadata-store and TOPOLOGY_CRS_REPLICAS cache-retry-service
# replicas (2 each by default), nginx in front (examples/channel-metadata/deploy/nginx) and
# Prometheus scraping every replica (deploy/prometheus, with its alert rules). Every port is a
# free loopback port; state, logs and pidfiles live in $TOPOLOGY_DIR (default .topology/).
#
#   scripts/topology.sh up        start everything, print the URLs; $TOPOLOGY_DIR/env has them
#   scripts/topology.sh down      stop everything this topology started
#   scripts/topology.sh status    what runs, and the URLs
#   scripts/topology.sh stop mysql | start mysql      the store's MariaDB: clean shutdown / start
#   scripts/topology.sh kill cms N | start cms N      SIGKILL CMS replica N / start it again
#   scripts/topology.sh kill crs N | start crs N      the same for CRS
#   scripts/topology.sh stop kafka N | start kafka N  Kafka broker N (1-3)
#   scripts/topology.sh stop hazelcast N | start hazelcast N   Hazelcast member N (1-4)
#
# Settings (environment):
#   TOPOLOGY_DIR            state directory (default <repo>/.topology)
#   TOPOLOGY_BUILD_DIR      where the executables are (default <repo>/build/dev); or CMS_BIN and
#                           CRS_BIN, the two executables' paths
#   TOPOLOGY_CACHE          hazelcast (default) or redis: CMS's shared cache
#   TOPOLOGY_CMS_REPLICAS, TOPOLOGY_CRS_REPLICAS   replicas of each (default 2)
#   TOPOLOGY_SOFT_TTL       CMS's soft TTL (default 5s: the outage test sees stale serving soon)
#   TOPOLOGY_SERVERS_ENV    the env file of an already running server set (scripts/servers.sh's
#                           $BULWARK_SERVERS_DIR/env): its Kafka, Hazelcast and Redis are used
#                           (with this topology's own topic, consumer group, cache name and databases)
#                           instead of starting new ones, and the two MariaDB servers are private
#                           instances of that set (its `servers.sh down` removes them too). CI
#                           does this: each kind of server starts once per run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
: "${TOPOLOGY_DIR:=$repo/.topology}"
mkdir -p "$TOPOLOGY_DIR"
T=$(cd "$TOPOLOGY_DIR" && pwd)
deploy="$repo/examples/channel-metadata/deploy"
: "${TOPOLOGY_BUILD_DIR:=$repo/build/dev}"
: "${CMS_BIN:=$TOPOLOGY_BUILD_DIR/examples/channel-metadata/channel-metadata-store}"
: "${CRS_BIN:=$TOPOLOGY_BUILD_DIR/examples/channel-metadata/cache-retry-service}"
: "${TOPOLOGY_CACHE:=hazelcast}"
: "${TOPOLOGY_CMS_REPLICAS:=2}"
: "${TOPOLOGY_CRS_REPLICAS:=2}"
: "${TOPOLOGY_SOFT_TTL:=5s}"
cms_user=cms cms_password=cmspass crs_user=crs crs_password=crspass
db_user=bulwark db_password=bulwark-test store_db=channel_metadata_db outage_db=cache_retry_db

log() { echo "topology: $*" >&2; }
die() { log "$*"; exit 1; }

# The settings `up` chose are in $T/settings (sourced by every other command).
load_settings() {
  [ -f "$T/settings" ] || die "not up (no $T/settings)"
  # shellcheck disable=SC1091
  source "$T/settings"
  export BULWARK_SERVERS_DIR="$servers_dir"
}
setting() { echo "$1=$(printf '%q' "$2")" >>"$T/settings"; }

mysql_script="$here/servers/mysql.sh"
# mysql NAME ARGS...: the private MariaDB instance NAME (store or outage) of this topology.
mysql_ctl() { local name=$1; shift; BULWARK_MYSQL_INSTANCE="$mysql_prefix-$name" "$mysql_script" "$@"; }
mysql_port() { cat "$servers_dir/$mysql_prefix-$1/port"; }
mysql_root() {
  local dir="$servers_dir/$mysql_prefix-$1"
  mariadb --no-defaults --socket="/tmp/bulwark-mysqld.$(printf '%s' "$dir" | md5sum | cut -c1-16).sock" -uroot
}

# The server set's own control scripts (a shared set's may belong to another checkout, whose
# .cache holds the jars its servers run from).
kafka_ctl() { BULWARK_SERVERS_DIR="$kafka_dir" "$kafka_control" "$@"; }
# shellcheck disable=SC2086 # the control is a command line: env BULWARK_SERVERS_DIR=... script
hazelcast_ctl() { BULWARK_SERVERS_DIR="$hazelcast_dir" $hazelcast_control "$@"; }

alive_pidfile() { [ -f "$1" ] && alive "$(cat "$1")"; }

# start_replica cms|crs N: runs replica N of the service on its recorded port, waits for /private/status.
start_replica() {
  local svc=$1 n=$2 d="$T/$1$2"
  alive_pidfile "$d/pid" && return 0
  local port; port=$(cat "$d/port")
  local common=(--address 127.0.0.1 --port "$port" --threads 2
    --mysql-host 127.0.0.1 --mysql-port "$(mysql_port store)" --mysql-user "$db_user" --mysql-database "$store_db"
    --kafka-brokers "$kafka_bootstrap" --retry-topic "$retry_topic")
  echo "=== start $(date -u +%FT%TZ)" >>"$d/log"
  if [ "$svc" = cms ]; then
    local cache=()
    if [ "$cache_kind" = hazelcast ]; then cache=(--backend mysql+hazelcast --hazelcast-members "$hazelcast_members")
    else cache=(--backend mysql+redis --redis-host 127.0.0.1 --redis-port "$redis_port"); fi
    CMS_PASSWORD=$cms_password CMS_MYSQL_PASSWORD=$db_password CMS_PEER_PASSWORD=$crs_password \
      setsid "$cms_bin" "${common[@]}" "${cache[@]}" --cache-name "$cache_name" --node-id "$n" \
      --user "$cms_user" --soft-ttl "$soft_ttl" \
      --peer-url "http://$crs_listen" --peer-user "$crs_user" >>"$d/log" 2>&1 </dev/null &
  else
    CRS_PASSWORD=$crs_password CRS_MYSQL_PASSWORD=$db_password CRS_OUTAGE_MYSQL_PASSWORD=$db_password \
      CRS_PEER_PASSWORD=$cms_password \
      setsid "$crs_bin" "${common[@]}" --backend "mysql+$cache_kind" --user "$crs_user" \
      --outage-mysql-host 127.0.0.1 --outage-mysql-port "$(mysql_port outage)" --outage-mysql-user "$db_user" \
      --outage-mysql-database "$outage_db" --consumer-group "$consumer_group" \
      --peer-url "http://$cms_listen" --peer-user "$cms_user" >>"$d/log" 2>&1 </dev/null &
  fi
  echo $! >"$d/pid"
}

replica_ready() { curl -sf -m 1 -o /dev/null "http://127.0.0.1:$1/private/status"; }
wait_replica() {
  local svc=$1 n=$2 d="$T/$1$2"
  local port; port=$(cat "$d/port")
  local deadline=$(( $(date +%s) + 60 ))
  until replica_ready "$port"; do
    if ! alive_pidfile "$d/pid" || [ "$(date +%s)" -gt "$deadline" ]; then
      log "$svc replica $n did not come up on port $port; last lines of $d/log:"
      tail -n 20 "$d/log" >&2
      return 1
    fi
    sleep 0.1
  done
}

stop_replica() { signal_pidfile "$T/$1$2/pid" "${3:-TERM}" 10; }

start_nginx() {
  alive_pidfile "$T/nginx/master.pid" && return 0
  setsid nginx -e "$T/nginx/error.log" -p "$T/nginx" -c "$T/nginx/nginx.conf" >>"$T/nginx/stdout.log" 2>&1 </dev/null &
  echo $! >"$T/nginx/master.pid"
  wait_until 10 curl -s -m 1 -o /dev/null "http://$cms_listen/private/status" || die "nginx did not start (see $T/nginx/error.log)"
}

start_prometheus() {
  alive_pidfile "$T/prometheus/pid" && return 0
  setsid prometheus --config.file="$T/prometheus/prometheus.yml" --storage.tsdb.path="$T/prometheus/data" \
    --storage.tsdb.retention.time=1d --web.listen-address="$prometheus_listen" --web.enable-lifecycle \
    >>"$T/prometheus/prometheus.log" 2>&1 </dev/null &
  echo $! >"$T/prometheus/pid"
  wait_until 30 curl -sf -m 1 -o /dev/null "http://$prometheus_listen/-/ready" \
    || die "prometheus did not start (see $T/prometheus/prometheus.log)"
}

targets_json() { # targets_json SERVICE-LABEL host:port...
  local label=$1; shift
  python3 -c 'import json,sys; print(json.dumps([{"targets": sys.argv[2:], "labels": {"service": sys.argv[1]}}]))' "$label" "$@"
}

write_env() {
  local cms_replicas="" crs_replicas="" n
  for n in $(seq "$cms_replicas_n"); do cms_replicas+="${cms_replicas:+,}127.0.0.1:$(cat "$T/cms$n/port")"; done
  for n in $(seq "$crs_replicas_n"); do crs_replicas+="${crs_replicas:+,}127.0.0.1:$(cat "$T/crs$n/port")"; done
  {
    echo "export TOPOLOGY_DIR=$(printf '%q' "$T")"
    echo "export TOPOLOGY_CONTROL=$(printf '%q' "$here/topology.sh")"
    echo "export TOPOLOGY_CMS_URL=http://$cms_listen"
    echo "export TOPOLOGY_CRS_URL=http://$crs_listen"
    echo "export TOPOLOGY_PROMETHEUS_URL=http://$prometheus_listen"
    echo "export TOPOLOGY_CMS_REPLICAS=$cms_replicas"
    echo "export TOPOLOGY_CRS_REPLICAS=$crs_replicas"
    echo "export TOPOLOGY_CMS_USER=$cms_user TOPOLOGY_CMS_PASSWORD=$cms_password"
    echo "export TOPOLOGY_CRS_USER=$crs_user TOPOLOGY_CRS_PASSWORD=$crs_password"
    echo "export TOPOLOGY_CACHE=$cache_kind"
    echo "export TOPOLOGY_SOFT_TTL=$soft_ttl"
    echo "export TOPOLOGY_STORE_MYSQL_PORT=$(mysql_port store) TOPOLOGY_OUTAGE_MYSQL_PORT=$(mysql_port outage)"
    echo "export TOPOLOGY_MYSQL_USER=$db_user TOPOLOGY_MYSQL_PASSWORD=$db_password"
    echo "export TOPOLOGY_STORE_DATABASE=$store_db TOPOLOGY_OUTAGE_DATABASE=$outage_db"
    echo "export TOPOLOGY_KAFKA_BOOTSTRAP=$kafka_bootstrap"
    echo "export TOPOLOGY_RETRY_TOPIC=$retry_topic TOPOLOGY_CONSUMER_GROUP=$consumer_group TOPOLOGY_CACHE_NAME=$cache_name"
    echo "export TOPOLOGY_HAZELCAST_MEMBERS=$hazelcast_members"
    echo "export TOPOLOGY_REDIS_PORT=$redis_port"
  } >"$T/env"
}

print_urls() {
  # shellcheck disable=SC1091
  source "$T/env"
  cat <<EOF
topology: up ($cms_replicas_n CMS + $crs_replicas_n CRS replicas, cache $cache_kind)
  CMS through nginx:   $TOPOLOGY_CMS_URL   (admin page $TOPOLOGY_CMS_URL/admin/, user $cms_user / $cms_password)
  CRS through nginx:   $TOPOLOGY_CRS_URL   (user $crs_user / $crs_password)
  CMS replicas:        $TOPOLOGY_CMS_REPLICAS
  CRS replicas:        $TOPOLOGY_CRS_REPLICAS
  Prometheus:          $TOPOLOGY_PROMETHEUS_URL  (alerts $TOPOLOGY_PROMETHEUS_URL/alerts)
  MariaDB store:       127.0.0.1:$TOPOLOGY_STORE_MYSQL_PORT/$store_db   downtime log: 127.0.0.1:$TOPOLOGY_OUTAGE_MYSQL_PORT/$outage_db ($db_user / $db_password)
  Kafka:               $kafka_bootstrap (topic $retry_topic, group $consumer_group)
  Hazelcast:           $hazelcast_members
  Redis:               127.0.0.1:$redis_port
  environment:         source $T/env
EOF
}

up() {
  [ -x "$CMS_BIN" ] || die "no channel-metadata-store at $CMS_BIN (build it, or set TOPOLOGY_BUILD_DIR or CMS_BIN)"
  [ -x "$CRS_BIN" ] || die "no cache-retry-service at $CRS_BIN (build it, or set TOPOLOGY_BUILD_DIR or CRS_BIN)"
  case "$TOPOLOGY_CACHE" in hazelcast|redis) ;; *) die "TOPOLOGY_CACHE must be hazelcast or redis" ;; esac
  [ -f "$T/settings" ] && { "$0" down >/dev/null 2>&1 || true; }
  rm -rf "$T"; mkdir -p "$T"
  local t0; t0=$(date +%s)
  local id; id=$(date +%s)-$$
  if [ -n "${TOPOLOGY_SERVERS_ENV:-}" ]; then
    [ -f "$TOPOLOGY_SERVERS_ENV" ] || die "TOPOLOGY_SERVERS_ENV=$TOPOLOGY_SERVERS_ENV is not a file"
    (
      # shellcheck disable=SC1090
      source "$TOPOLOGY_SERVERS_ENV"
      shared=$(cd "$(dirname "$TOPOLOGY_SERVERS_ENV")" && pwd)
      [ -n "${BULWARK_KAFKA_BOOTSTRAP:-}" ] && [ -n "${BULWARK_KAFKA_CONTROL:-}" ] && [ -n "${BULWARK_HAZELCAST_MEMBERS:-}" ] \
        && [ -n "${BULWARK_HAZELCAST_CONTROL:-}" ] && [ -n "${BULWARK_REDIS_PORT:-}" ] \
        || die "$TOPOLOGY_SERVERS_ENV lacks Kafka, Hazelcast or Redis"
      {
        echo "shared=1"
        echo "servers_dir=$(printf '%q' "$shared")"
        echo "kafka_dir=$(printf '%q' "$shared") hazelcast_dir=$(printf '%q' "$shared")"
        echo "kafka_bootstrap=$BULWARK_KAFKA_BOOTSTRAP"
        echo "hazelcast_members=$BULWARK_HAZELCAST_MEMBERS"
        echo "redis_port=$BULWARK_REDIS_PORT"
        echo "kafka_control=$(printf '%q' "$BULWARK_KAFKA_CONTROL")"
        echo "hazelcast_control=$(printf '%q' "$BULWARK_HAZELCAST_CONTROL")"
        # Its own names on the shared servers: nothing another test uses.
        echo "retry_topic=topology-retry-$id consumer_group=topology-group-$id cache_name=topology-$id mysql_prefix=mysql-topology"
      } >"$T/settings"
    )
  else
    {
      echo "shared=0"
      echo "servers_dir=$(printf '%q' "$T/servers")"
      echo "kafka_dir=$(printf '%q' "$T/servers") hazelcast_dir=$(printf '%q' "$T/servers")"
      echo "kafka_control=$(printf '%q' "$here/servers/kafka.sh")"
      echo "hazelcast_control=$(printf '%q' "$here/servers/hazelcast.sh")"
      echo "retry_topic=retry-db-write-from-cache consumer_group=channel-metadata-group cache_name=channel-metadata mysql_prefix=mysql-topology"
    } >"$T/settings"
  fi
  setting cache_kind "$TOPOLOGY_CACHE"
  # The executables `up` started: restarts (start cms N) use the same ones.
  setting cms_bin "$(cd "$(dirname "$CMS_BIN")" && pwd)/$(basename "$CMS_BIN")"
  setting crs_bin "$(cd "$(dirname "$CRS_BIN")" && pwd)/$(basename "$CRS_BIN")"
  setting soft_ttl "$TOPOLOGY_SOFT_TTL"
  setting cms_replicas_n "$TOPOLOGY_CMS_REPLICAS"
  setting crs_replicas_n "$TOPOLOGY_CRS_REPLICAS"
  load_settings
  mkdir -p "$servers_dir"

  # The servers, in parallel: the two MariaDB instances always; Redis, Kafka and Hazelcast only
  # without a shared set.
  local pids=() names=()
  for db in store outage; do
    mysql_ctl "$db" up >"$T/mysql-$db.up.log" 2>&1 & pids+=($!); names+=("mysql-$db")
  done
  if [ "$shared" = 0 ]; then
    BULWARK_SERVERS_DIR="$servers_dir" "$here/servers.sh" up redis kafka hazelcast >"$T/servers.up.log" 2>&1 &
    pids+=($!); names+=(servers)
  fi
  local i failed=0
  for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
      log "${names[$i]} failed to start:"; tail -n 30 "$T/${names[$i]}.up.log" >&2; failed=1
    fi
  done
  [ "$failed" = 0 ] || { "$0" down >/dev/null 2>&1 || true; exit 1; }
  if [ "$shared" = 0 ]; then
    (
      # shellcheck disable=SC1091
      source "$servers_dir/env"
      echo "kafka_bootstrap=$BULWARK_KAFKA_BOOTSTRAP"
      echo "hazelcast_members=$BULWARK_HAZELCAST_MEMBERS"
      echo "redis_port=$BULWARK_REDIS_PORT"
    ) >>"$T/settings"
    load_settings
  fi
  for db in store outage; do
    local name=$store_db; [ "$db" = outage ] && name=$outage_db
    mysql_root "$db" <<SQL
CREATE DATABASE IF NOT EXISTS $name;
GRANT ALL ON $name.* TO '$db_user'@'127.0.0.1';
GRANT ALL ON $name.* TO '$db_user'@'localhost';
SQL
  done

  # Ports: nginx's two listeners, Prometheus, each replica.
  local n
  setting cms_listen "127.0.0.1:$(free_port)"
  setting crs_listen "127.0.0.1:$(free_port)"
  setting prometheus_listen "127.0.0.1:$(free_port)"
  load_settings
  for n in $(seq "$cms_replicas_n"); do mkdir -p "$T/cms$n"; free_port >"$T/cms$n/port"; done
  for n in $(seq "$crs_replicas_n"); do mkdir -p "$T/crs$n"; free_port >"$T/crs$n/port"; done

  for n in $(seq "$cms_replicas_n"); do start_replica cms "$n"; done
  for n in $(seq "$crs_replicas_n"); do start_replica crs "$n"; done
  for n in $(seq "$cms_replicas_n"); do wait_replica cms "$n" || { "$0" down >/dev/null 2>&1; exit 1; }; done
  for n in $(seq "$crs_replicas_n"); do wait_replica crs "$n" || { "$0" down >/dev/null 2>&1; exit 1; }; done

  # nginx: the deploy template with this topology's upstreams.
  mkdir -p "$T/nginx"
  {
    for svc in cms crs; do
      local count=$cms_replicas_n; [ "$svc" = crs ] && count=$crs_replicas_n
      echo "upstream $svc {"
      echo "  zone $svc 64k;"
      for n in $(seq "$count"); do echo "  server 127.0.0.1:$(cat "$T/$svc$n/port") max_fails=2 fail_timeout=5s;"; done
      echo "  keepalive 16;"
      echo "}"
    done
  } >"$T/nginx/upstreams.conf"
  "$deploy/nginx/render.sh" "$T/nginx" "$cms_listen" "$crs_listen" "$T/nginx/upstreams.conf"
  start_nginx

  # Prometheus: the deploy config and rules, this topology's targets.
  mkdir -p "$T/prometheus/targets"
  cp "$deploy/prometheus/prometheus.yml" "$deploy/prometheus/alerts.yml" "$T/prometheus/"
  local cms_t=() crs_t=()
  for n in $(seq "$cms_replicas_n"); do cms_t+=("127.0.0.1:$(cat "$T/cms$n/port")"); done
  for n in $(seq "$crs_replicas_n"); do crs_t+=("127.0.0.1:$(cat "$T/crs$n/port")"); done
  targets_json channel-metadata-store "${cms_t[@]}" >"$T/prometheus/targets/cms.json"
  targets_json cache-retry-service "${crs_t[@]}" >"$T/prometheus/targets/crs.json"
  targets_json prometheus "$prometheus_listen" >"$T/prometheus/targets/prometheus.json"
  echo '[]' >"$T/prometheus/targets/alertmanager.json"
  start_prometheus

  write_env
  print_urls
  log "up in $(( $(date +%s) - t0 )) s"
}

down() {
  [ -f "$T/settings" ] || { log "nothing to stop in $T"; return 0; }
  load_settings
  signal_pidfile "$T/prometheus/pid" TERM 10
  signal_pidfile "$T/nginx/master.pid" QUIT 10
  local d
  for d in "$T"/cms* "$T"/crs*; do [ -d "$d" ] && signal_pidfile "$d/pid" TERM 10; done
  mysql_ctl store down || true
  mysql_ctl outage down || true
  if [ "$shared" = 0 ]; then
    BULWARK_SERVERS_DIR="$servers_dir" "$here/servers.sh" down redis kafka hazelcast || true
    rm -rf "$servers_dir/mysql.template"
  fi
  rm -f "$T/settings" "$T/env"
  log "down"
}

status() {
  [ -f "$T/settings" ] || { echo "topology: down"; return 3; }
  load_settings
  local st=0 d n
  for d in "$T"/cms* "$T"/crs*; do
    [ -d "$d" ] || continue
    if alive_pidfile "$d/pid" && replica_ready "$(cat "$d/port")"; then echo "$(basename "$d"): up on 127.0.0.1:$(cat "$d/port")"
    else echo "$(basename "$d"): DOWN"; st=1; fi
  done
  for db in store outage; do
    if mysql_ctl "$db" status; then echo "mysql $db: up on 127.0.0.1:$(mysql_port "$db")"; else echo "mysql $db: DOWN"; st=1; fi
  done
  alive_pidfile "$T/nginx/master.pid" && echo "nginx: up" || { echo "nginx: DOWN"; st=1; }
  alive_pidfile "$T/prometheus/pid" && echo "prometheus: up" || { echo "prometheus: DOWN"; st=1; }
  kafka_ctl status | sed 's/^/kafka /'
  for n in 1 2 3 4; do
    if alive_pidfile "$hazelcast_dir/hazelcast/$n/pid"; then echo "hazelcast member $n: running"; else echo "hazelcast member $n: stopped"; fi
  done
  [ -f "$T/env" ] && print_urls
  return $st
}

component() { # component ACTION WHAT [N]
  local action=$1 what=${2:?usage: topology.sh $1 mysql|cms N|crs N|kafka N|hazelcast N} n=${3:-}
  load_settings
  case "$what" in
    mysql)
      case "$action" in
        stop) mysql_ctl store stop ;; start) mysql_ctl store start ;; kill) mysql_ctl store kill ;;
        *) die "mysql: stop, start or kill" ;;
      esac ;;
    cms|crs)
      [ -d "$T/$what${n:-x}" ] || die "no $what replica '${n}'"
      case "$action" in
        kill) stop_replica "$what" "$n" KILL ;;
        stop) stop_replica "$what" "$n" TERM ;;
        start) start_replica "$what" "$n"; wait_replica "$what" "$n" ;;
        *) die "$what: kill, stop or start" ;;
      esac ;;
    kafka) kafka_ctl "$action" "${n:?broker number}" ;;
    hazelcast) hazelcast_ctl "$action" "${n:?member number}" ;;
    *) die "unknown component '$what' (mysql, cms, crs, kafka, hazelcast)" ;;
  esac
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  stop|start|kill) component "$@" ;;
  *) echo "usage: topology.sh up|down|status|stop|start|kill [mysql|cms N|crs N|kafka N|hazelcast N]" >&2; exit 2 ;;
esac
