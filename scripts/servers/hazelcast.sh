#!/usr/bin/env bash
# Test Hazelcast members (the pinned 5.x jar from scripts/hazelcast/pom.xml, the config
# scripts/hazelcast/member.xml) on free loopback ports; state under $BULWARK_SERVERS_DIR/hazelcast/.
#   hazelcast.sh up          starts members 1-4 (one cluster, unique name per run) and `nodata`
#                            (a one-member cluster whose REST DATA endpoint group is disabled), in
#                            parallel; waits until each is ready and the cluster has 4 members;
#                            appends BULWARK_HAZELCAST_MEMBERS=127.0.0.1:p1,...,127.0.0.1:p4,
#                            BULWARK_HAZELCAST_NO_DATA_MEMBER and BULWARK_HAZELCAST_CONTROL
#                            (this script, with its servers dir) to $BULWARK_SERVERS_DIR/env
#   hazelcast.sh down        stops every member
#   hazelcast.sh kill N      SIGKILL member N (1-4 or nodata)
#   hazelcast.sh stop N      SIGTERM (graceful shutdown: partitions migrate away first)
#   hazelcast.sh start N     starts member N again on its port, waits until it is ready
#   hazelcast.sh jar         only fetches the jar (Maven, cached in ~/.m2) and prints its path
# BULWARK_HAZELCAST_CONFIG overrides the member config (e.g. to try backup-count 0).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=../lib.sh
source "$here/../lib.sh"
: "${BULWARK_SERVERS_DIR:=$repo/.servers}"
export BULWARK_SERVERS_DIR
root="$BULWARK_SERVERS_DIR/hazelcast"
version=$(sed -n 's:.*<version>\(5\.[0-9.]*\)</version>.*:\1:p' "$repo/scripts/hazelcast/pom.xml")
jar_dir="$repo/.cache/hazelcast"
jar="$jar_dir/hazelcast-$version.jar"

fetch_jar() {
  [ -f "$jar" ] && return 0
  mkdir -p "$jar_dir"
  mvn -q -B -f "$repo/scripts/hazelcast/pom.xml" org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies -DoutputDirectory="$jar_dir" >&2
  [ -f "$jar" ] || { echo "hazelcast.sh: $jar not fetched" >&2; return 1; }
}

ready() { curl -sf -m 1 -o /dev/null "http://127.0.0.1:$1/hazelcast/health/ready"; }
cluster_size_is() { curl -sf -m 1 "http://127.0.0.1:$1/hazelcast/health" | grep -q "\"clusterSize\":$2[,}]"; }

# launch NAME: starts member NAME in the background with the settings recorded by `up`.
launch() {
  local name=$1 dir="$root/$1"
  [ -f "$dir/pid" ] && alive "$(cat "$dir/pid")" && return 0
  local port cluster members data
  port=$(cat "$dir/port"); cluster=$(cat "$dir/cluster"); members=$(cat "$dir/members"); data=$(cat "$dir/data")
  # Small heap, serial GC and C1 only: start-up time and memory matter more than peak speed here.
  java -Xms64m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:-UsePerfData -Xshare:auto \
    -Djava.net.preferIPv4Stack=true \
    -Dhazelcast.config="${BULWARK_HAZELCAST_CONFIG:-$repo/scripts/hazelcast/member.xml}" \
    -Dbulwark.cluster="$cluster" -Dbulwark.port="$port" -Dbulwark.members="$members" -Dbulwark.rest.data="$data" \
    -cp "$jar" com.hazelcast.core.server.HazelcastMemberStarter >>"$dir/member.log" 2>&1 &
  echo $! >"$dir/pid"
}

wait_ready() {
  local name=$1 port; port=$(cat "$root/$1/port")
  wait_until "${2:-90}" ready "$port" || { echo "hazelcast.sh: member $name not ready (see $root/$name/member.log)" >&2; return 1; }
}

# signal_member NAME SIGNAL: sends SIGNAL and waits (up to 30 s, then SIGKILL) for the exit.
signal_member() { signal_pidfile "$root/$1/pid" "$2" 30; }

cluster_members=(1 2 3 4)
action=${1:?usage: hazelcast.sh up|down|kill N|stop N|start N|jar}
case "$action" in
  jar) fetch_jar; echo "$jar" ;;
  up)
    fetch_jar
    for n in "${cluster_members[@]}" nodata; do [ -d "$root/$n" ] && signal_member "$n" KILL; done
    rm -rf "$root"
    cluster="bulwark-$(date +%s)-$$"
    ports=(); list=()
    for n in "${cluster_members[@]}"; do p=$(free_port); ports+=("$p"); list+=("127.0.0.1:$p"); done
    members=$(IFS=,; echo "${list[*]}")
    for i in "${!cluster_members[@]}"; do
      d="$root/${cluster_members[$i]}"; mkdir -p "$d"
      echo "${ports[$i]}" >"$d/port"; echo "$cluster" >"$d/cluster"; echo "$members" >"$d/members"; echo true >"$d/data"
    done
    d="$root/nodata"; mkdir -p "$d"; p=$(free_port)
    echo "$p" >"$d/port"; echo "$cluster-nodata" >"$d/cluster"; echo "127.0.0.1:$p" >"$d/members"; echo false >"$d/data"
    start=$(date +%s)
    for n in "${cluster_members[@]}" nodata; do launch "$n"; done
    for n in "${cluster_members[@]}" nodata; do wait_ready "$n"; done
    for p in "${ports[@]}"; do
      wait_until 60 cluster_size_is "$p" 4 || { echo "hazelcast.sh: member on $p never saw 4 members" >&2; exit 1; }
    done
    echo "hazelcast.sh: 4 members + nodata ready in $(( $(date +%s) - start )) s ($members)" >&2
    export_env BULWARK_HAZELCAST_MEMBERS "$members"
    export_env BULWARK_HAZELCAST_NO_DATA_MEMBER "127.0.0.1:$(cat "$root/nodata/port")"
    export_env BULWARK_HAZELCAST_CONTROL "env BULWARK_SERVERS_DIR=$BULWARK_SERVERS_DIR $here/hazelcast.sh" ;;
  down)
    for n in "${cluster_members[@]}" nodata; do signal_member "$n" KILL; done ;;
  kill) signal_member "${2:?member}" KILL ;;
  stop) signal_member "${2:?member}" TERM ;;
  start) launch "${2:?member}"; wait_ready "$2" ;;
  *) echo "usage: hazelcast.sh up|down|kill N|stop N|start N|jar" >&2; exit 2 ;;
esac
