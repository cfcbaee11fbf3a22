#!/usr/bin/env bash
# Installs what is missing, builds, and starts a demo service on the embedded (in-memory)
# defaults: no database, cache or broker needed. Ctrl-C stops it gracefully.
#   scripts/demo.sh [channel-metadata] [flags]   channel-metadata-store with the cache-retry-service
#                                                in one process (CMS :8080, CRS :8090, admin page
#                                                http://127.0.0.1:8080/admin/, fault control on)
#   scripts/demo.sh kv-demo [--port 8080]        the small key-value service (examples/kv-demo)
# Flags after the name go to the service (channel-metadata-store --help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
service=channel-metadata
case "${1:-}" in
  channel-metadata|kv-demo) service=$1; shift ;;
esac
scripts/install-deps.sh
export CCACHE_DIR="${CCACHE_DIR:-$(pwd)/.cache/ccache}"
export CCACHE_SLOPPINESS="${CCACHE_SLOPPINESS:-pch_defines,time_macros}"
cmake --preset release >/dev/null
if [ "$service" = kv-demo ]; then
  cmake --build build/release --target kv-demo
  exec build/release/examples/kv-demo/kv-demo "$@"
fi
cmake --build build/release --target channel-metadata-store
port=8080
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --port) port=${args[$((i + 1))]:-8080} ;;
    --port=*) port=${args[$i]#--port=} ;;
  esac
done
cat <<MSG
channel-metadata demo (in-memory database, cache and bus; Basic auth cms / cmspass)
  admin page:  http://127.0.0.1:${port}/admin/
  write:       curl -u cms:cmspass -X POST -H 'Content-Type: application/json' \\
                 -d '{"countryCode":"GB","metadata":[{"name":"AT One","language":"English","type":"News"}],"product":"exampleProduct"}' \\
                 http://127.0.0.1:${port}/api/channel-metadata/GB
  read:        curl -u cms:cmspass http://127.0.0.1:${port}/api/channel-metadata/GB
  outage:      curl -u cms:cmspass -X POST -d '{"down":true}' http://127.0.0.1:${port}/private/faults/database
  health:      curl http://127.0.0.1:${port}/private/healthcheck
MSG
exec build/release/examples/channel-metadata/channel-metadata-store --fault-control "$@"
