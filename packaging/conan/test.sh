#!/usr/bin/env bash
# Proves the conan recipe offline: conan (pinned, from PyPI) in a venv under .cache/, a conan home
# of its own with no remote, stand-ins for the central index's packages that wrap Debian's
# (system/conanfile.py, versions read from the system), then `conan create` of bulwark twice:
# the core alone, and every backend option at once; each builds and runs test_package (the
# tests/consumer program against find_package(bulwark COMPONENTS ...)).
#   packaging/conan/test.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
start=$(date +%s)
venv="$root/.cache/conan-venv"
# The pinned conan (packaging/conan/requirements.txt); scripts/install-deps.sh installs it too.
if ! "$venv/bin/pip" freeze 2>/dev/null | grep -qxF -f packaging/conan/requirements.txt; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r packaging/conan/requirements.txt
fi
conan="$venv/bin/conan"
export CONAN_HOME="$root/.cache/conan-home"
rm -rf "$CONAN_HOME"
mkdir -p "$CONAN_HOME"
"$conan" profile detect >/dev/null 2>&1
"$conan" remote disable conancenter >/dev/null
# Ninja, two jobs (a shared 2-core machine), ccache when there is one.
settings=(-s compiler.cppstd=20 -s build_type=Release
          -c tools.cmake.cmaketoolchain:generator=Ninja -c tools.build:jobs=2)
command -v ccache >/dev/null && export CMAKE_CXX_COMPILER_LAUNCHER=ccache

# upstream version of a Debian package (no epoch, no Debian revision, at most three numbers)
deb_version() {
  dpkg-query -W -f='${Version}' "$1" | sed -E 's/^[0-9]+://; s/-[^-]*$//' | cut -d. -f1-3
}
declare -A versions=(
  [asio]=$(deb_version libasio-dev)
  [boost]=$(deb_version libboost-dev)
  [nlohmann_json]=$(deb_version nlohmann-json3-dev)
  [hiredis]=$(deb_version libhiredis-dev)
  [librdkafka]=$(deb_version librdkafka-dev)
  [mariadb-connector-c]=$(pkg-config --modversion libmariadb)
)
for name in "${!versions[@]}"; do
  "$conan" create packaging/conan/system --name "$name" --version "${versions[$name]}" -nr "${settings[@]}" \
    >"$CONAN_HOME/standin-$name.log" 2>&1 || { cat "$CONAN_HOME/standin-$name.log"; exit 1; }
  echo "conan test: stand-in $name/${versions[$name]}"
done
standins=$(date +%s)

create() {
  local label=$1; shift
  local t0 log
  t0=$(date +%s)
  log="$CONAN_HOME/create-$label.log"
  if ! "$conan" create packaging/conan -nr "${settings[@]}" "$@" >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "conan test: FAILED: conan create ($label), log $log"
    exit 1
  fi
  grep -E "^consumer: " "$log" | sed 's/^/  /'
  grep -q "^consumer: ok" "$log" || { echo "conan test: FAILED: test_package did not report ok ($label)"; exit 1; }
  echo "conan test: conan create ($label) and test_package ok in $(( $(date +%s) - t0 )) s"
}
create core -o "bulwark/*:with_http=False"
create all-backends -o "bulwark/*:with_redis=True" -o "bulwark/*:with_mysql=True" \
  -o "bulwark/*:with_kafka=True" -o "bulwark/*:with_hazelcast=True" -o "bulwark/*:with_http=True"
# bulwark's package config found every client library through conan's CMakeDeps files (the
# central index's names), not through the system's .pc files.
cache=$(ls -d packaging/conan/test_package/build/*/CMakeCache.txt | head -n 1)
for dep in Boost asio nlohmann_json hiredis RdKafka mariadb-connector-c; do
  grep -q "^${dep}_DIR:PATH=.*/generators$" "$cache" || { echo "conan test: FAILED: $dep not found through CMakeDeps"; exit 1; }
done
if grep -q "^PKG_CONFIG_EXECUTABLE:" "$cache"; then
  echo "conan test: FAILED: the conan build fell back to pkg-config"
  exit 1
fi
echo "conan test: stand-ins $(( standins - start )) s, total $(( $(date +%s) - start )) s"
