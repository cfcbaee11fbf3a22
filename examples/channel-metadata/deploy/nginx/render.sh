#!/usr/bin/env bash
# Writes a runnable nginx setup into PREFIX from nginx.conf.template and an upstreams file.
#   nginx/render.sh PREFIX CMS_LISTEN CRS_LISTEN UPSTREAMS_FILE
#   nginx/render.sh /tmp/cm-nginx 127.0.0.1:8000 127.0.0.1:8001 nginx/upstreams.example.conf
# then: nginx -e PREFIX/error.log -p PREFIX -c PREFIX/nginx.conf   (add -t to only check it)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -eq 4 ] || { echo "usage: render.sh PREFIX CMS_LISTEN CRS_LISTEN UPSTREAMS_FILE" >&2; exit 2; }
prefix=$1 cms=$2 crs=$3 upstreams=$4
mkdir -p "$prefix"/tmp/{body,proxy,fastcgi,uwsgi,scgi}
# Run as root, nginx's workers are `nobody`: they write request bodies to these.
chmod -R a+rwx "$prefix/tmp"
prefix=$(cd "$prefix" && pwd)
[ "$(cd "$(dirname "$upstreams")" && pwd)/$(basename "$upstreams")" = "$prefix/upstreams.conf" ] || cp "$upstreams" "$prefix/upstreams.conf"
sed -e "s|@PREFIX@|$prefix|g" -e "s|@CMS_LISTEN@|$cms|g" -e "s|@CRS_LISTEN@|$crs|g" \
  "$here/nginx.conf.template" >"$prefix/nginx.conf"
