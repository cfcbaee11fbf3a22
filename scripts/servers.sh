#!/usr/bin/env bash
# Starts or stops every test server: each scripts/servers/<name>.sh takes up|down and, on up,
# appends `export VAR=value` lines (addresses on free loopback ports) to $BULWARK_SERVERS_DIR/env,
# which `down` of every server removes.
#   scripts/servers.sh up [name...]   scripts/servers.sh down [name...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${BULWARK_SERVERS_DIR:=$(cd "$here/.." && pwd)/.servers}"
export BULWARK_SERVERS_DIR
mkdir -p "$BULWARK_SERVERS_DIR"
action=${1:?usage: servers.sh up|down [name...]}
shift
names=("$@")
all=$(( $# == 0 ))
if [ ${#names[@]} -eq 0 ]; then
  for f in "$here"/servers/*.sh; do [ -e "$f" ] && names+=("$(basename "$f" .sh)"); done
fi
case "$action" in
  up)
    touch "$BULWARK_SERVERS_DIR/env"
    # In parallel: JVM-based clusters take tens of seconds each. Each script appends whole
    # lines to the env file, which concurrent appends keep intact.
    pids=()
    for n in "${names[@]}"; do
      "$here/servers/$n.sh" up >"$BULWARK_SERVERS_DIR/$n.up.log" 2>&1 &
      pids+=($!)
    done
    status=0
    for i in "${!names[@]}"; do
      if ! wait "${pids[$i]}"; then
        echo "servers: ${names[$i]} failed to start:" >&2
        tail -n 30 "$BULWARK_SERVERS_DIR/${names[$i]}.up.log" >&2
        status=1
      fi
    done
    [ $status -eq 0 ] || exit 1
    echo "servers: up (${names[*]:-none}); environment in $BULWARK_SERVERS_DIR/env" ;;
  down)
    status=0
    for n in "${names[@]}"; do "$here/servers/$n.sh" down || status=1; done
    # With every server down, their addresses go too: the next `up` starts a fresh file rather
    # than appending to lines that name ports nobody listens on.
    if [ "$all" = 1 ] && [ $status -eq 0 ]; then rm -f "$BULWARK_SERVERS_DIR/env"; fi
    exit $status ;;
  *) echo "usage: servers.sh up|down [name...]" >&2; exit 2 ;;
esac
