#!/usr/bin/env bash
# Starts or stops every test server: each scripts/servers/<name>.sh takes up|down and, on up,
# appends `export VAR=value` lines (addresses on free loopback ports) to $BULWARK_SERVERS_DIR/env.
#   scripts/servers.sh up [name...]   scripts/servers.sh down [name...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${BULWARK_SERVERS_DIR:=$(cd "$here/.." && pwd)/.servers}"
export BULWARK_SERVERS_DIR
mkdir -p "$BULWARK_SERVERS_DIR"
action=${1:?usage: servers.sh up|down [name...]}
shift
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for f in "$here"/servers/*.sh; do [ -e "$f" ] && names+=("$(basename "$f" .sh)"); done
fi
case "$action" in
  up)
    touch "$BULWARK_SERVERS_DIR/env"
    for n in "${names[@]}"; do "$here/servers/$n.sh" up; done
    echo "servers: up (${names[*]:-none}); environment in $BULWARK_SERVERS_DIR/env" ;;
  down)
    status=0
    for n in "${names[@]}"; do "$here/servers/$n.sh" down || status=1; done
    exit $status ;;
  *) echo "usage: servers.sh up|down [name...]" >&2; exit 2 ;;
esac
