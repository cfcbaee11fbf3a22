#!/usr/bin/env bash
# Installs every Debian package bulwark needs to build, test and run its demo; with --all, also
# what the benchmarks and the fuzzer need. Idempotent: installs only what is missing. Uses sudo
# when not root.
#   scripts/install-deps.sh [--all]
set -euo pipefail
packages=(
  build-essential cmake ninja-build ccache pkg-config git curl
  libasio-dev libboost-dev nlohmann-json3-dev libgtest-dev libgmock-dev libbenchmark-dev
  libhiredis-dev default-libmysqlclient-dev librdkafka-dev libjemalloc2
  redis-server redis-tools mariadb-server mariadb-client prometheus
  prometheus-alertmanager nginx-light wrk
  iproute2 procps python3 python3-venv util-linux time
  clang-format
  default-jdk-headless maven
  chromium nodejs npm
)
# prometheus-alertmanager (amtool) and nginx: the channel-metadata ops tests and its topology.
# libjemalloc2: the checkout example's executables link it as their malloc when it is there
# (examples/checkout/CMakeLists.txt).
# wrk: the predictions chaos test's load (tests/e2e/predictions.sh) and the benchmarks.
# --all: also what the benchmarks and the fuzzer need (valgrind for instruction counts,
# clang's libFuzzer).
# libclang-rt-dev holds libFuzzer and the sanitizer runtimes for the default clang (on Debian 12
# libclang-rt-14-dev); clang pulls it in only as a recommendation (of libclang-common-14-dev),
# which --no-install-recommends skips, and then -fsanitize=fuzzer fails to link.
if [ "${1:-}" = "--all" ]; then
  packages+=(valgrind clang libclang-rt-dev clang-tidy)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# A JDK that is already on PATH (any vendor) is enough for Kafka and Hazelcast.
if command -v java >/dev/null && command -v mvn >/dev/null; then
  missing=("${missing[@]/default-jdk-headless/}")
  missing=("${missing[@]/maven/}")
fi
# The browser test (tests/browser) runs Debian's chromium with playwright-core from npm, which
# wants Node.js 20 or later: a node and npm already on PATH (any packaging) are kept.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs/}")
  missing=("${missing[@]/npm/}")
fi
read -r -a missing <<<"${missing[*]}"

# conan (packaging/conan/test.sh), pinned in packaging/conan/requirements.txt, from PyPI into a
# venv under the checkout's .cache/ (Debian's python refuses system-wide pip installs).
install_conan() {
  local root venv
  root="$(cd "$(dirname "$0")/.." && pwd)"
  venv="$root/.cache/conan-venv"
  if ! "$venv/bin/pip" freeze 2>/dev/null | grep -qxF -f "$root/packaging/conan/requirements.txt"; then
    echo "install-deps: conan into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q -r "$root/packaging/conan/requirements.txt"
  fi
}
if [ ${#missing[@]} -eq 0 ]; then
  install_conan
  exit 0
fi
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# Keep Debian's packaged services from starting system-wide: tests start their own servers.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod +x /usr/sbin/policy-rc.d
  trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
fi
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
install_conan
