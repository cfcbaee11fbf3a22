#!/usr/bin/env bash
# Installs what is missing, builds, and starts the demo service on the embedded (in-memory)
# defaults: no database, cache or broker needed. Ctrl-C stops it gracefully.
#   scripts/demo.sh [--port 8080] [--address 127.0.0.1]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export CCACHE_DIR="${CCACHE_DIR:-$(pwd)/.cache/ccache}"
export CCACHE_SLOPPINESS="${CCACHE_SLOPPINESS:-pch_defines,time_macros}"
cmake --preset release >/dev/null
cmake --build build/release --target kv-demo
exec build/release/examples/kv-demo/kv-demo "$@"
