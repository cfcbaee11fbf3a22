#!/usr/bin/env bash
# ops.nginx_config: renders deploy/nginx with the example upstreams (four replicas of each
# service) into a scratch prefix and has nginx check it (-t: parses, resolves every directive and
# module, opens nothing but its logs).
set -euo pipefail
deploy=${1:?usage: nginx_config.sh DEPLOY_DIR}
PATH="$PATH:/usr/sbin:/sbin"
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
"$deploy/nginx/render.sh" "$prefix" 127.0.0.1:18080 127.0.0.1:18090 "$deploy/nginx/upstreams.example.conf"
nginx -e "$prefix/error.log" -t -p "$prefix" -c "$prefix/nginx.conf"
# The rendered file keeps no placeholder.
! grep -n '@[A-Z_]*@' "$prefix/nginx.conf"
