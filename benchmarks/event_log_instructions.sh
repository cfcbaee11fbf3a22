#!/usr/bin/env bash
# Instructions per command (callgrind) of the event-log example's memory mode: the command API's
# route in process (no socket) and the validator, persister and materializer with full batches,
# on the memory models. Steadier than commands/s on a shared machine (benchmarks/event_log.sh
# measures those, over HTTP). Prints `instructions_per_command: N` for max_batch 256 (the
# example's) and for max_batch 1 (a stage that takes one message at a time), and their ratio.
# Needs valgrind. Builds the release preset unless BUILD_DIR points at an existing build.
# Environment: COMMANDS (default 5000).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build/release}
if [ -z "${BUILD_DIR:-}" ]; then
  cmake --preset release >/dev/null
  cmake --build "$build" --target bulwark_bench_event_log_instructions
fi
command -v valgrind >/dev/null || { echo "valgrind is needed (scripts/install-deps.sh)" >&2; exit 1; }
commands=${COMMANDS:-5000}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Total instructions of one run with `n` commands and batches of up to `b`.
total() {
  valgrind --tool=callgrind --callgrind-out-file="$out/cg" \
    "$build/benchmarks/event_log/bulwark_bench_event_log_instructions" "$1" "$2" >/dev/null 2>"$out/log"
  grep -o 'Collected : [0-9]*' "$out/log" | grep -o '[0-9]*$'
}
base=$(total 0 256)
batched=$((($(total "$commands" 256) - base) / commands))
single=$((($(total "$commands" 1) - base) / commands))
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "instructions_per_command: $batched (max_batch 256, $commands commands)"
echo "instructions_per_command_one_at_a_time: $single (max_batch 1)"
python3 -c "import sys; b, s = map(int, sys.argv[1:]); print(f'ratio_batch_instructions: {s / b:.2f}')" "$single" "$batched"
