#!/usr/bin/env bash
# Instructions per call (callgrind) of the calls benchmarks/write_through.sh times, on the memory
# models: a bare repository put, a durable write through write_through, a bare cache get, a
# cache-hit read. Steadier than nanoseconds on a shared machine; prints the instruction ratios
# next to the script's goals (ratio_write: put / write >= 0.5, ratio_read_hit: get / read >= 0.5).
# Needs valgrind. Builds the release preset unless BUILD_DIR points at an existing build.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build/release}
if [ -z "${BUILD_DIR:-}" ]; then
  cmake --preset release >/dev/null
  cmake --build "$build" --target bulwark_bench_write_through_instructions
fi
command -v valgrind >/dev/null || { echo "valgrind is needed (scripts/install-deps.sh)" >&2; exit 1; }
calls=20000
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Total instructions of one run of `mode` with `n` calls.
total() {
  valgrind --tool=callgrind --callgrind-out-file="$out/cg" \
    "$build/benchmarks/flows/bulwark_bench_write_through_instructions" "$1" "$2" >/dev/null 2>"$out/log"
  grep -o 'Collected : [0-9]*' "$out/log" | grep -o '[0-9]*$'
}
declare -A per_call
for mode in put write get read; do
  per_call[$mode]=$((($(total "$mode" "$calls") - $(total "$mode" 0)) / calls))
  echo "$mode: ${per_call[$mode]} instructions per call"
done
python3 -c "import sys; p, w, g, r = map(int, sys.argv[1:]); print(f'ratio_write_instructions: {p / w:.2f}'); print(f'ratio_read_hit_instructions: {g / r:.2f}')" \
  "${per_call[put]}" "${per_call[write]}" "${per_call[get]}" "${per_call[read]}"
