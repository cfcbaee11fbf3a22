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
source scripts/lib.sh
bench_executables event_log bulwark_bench_event_log_instructions
command -v valgrind >/dev/null || { echo "valgrind is needed (scripts/install-deps.sh)" >&2; exit 1; }
commands=${COMMANDS:-5000}
bin="$BUILD_DIR/benchmarks/event_log/bulwark_bench_event_log_instructions"
base=$(callgrind_instructions "$bin" 0 256)
batched=$((($(callgrind_instructions "$bin" "$commands" 256) - base) / commands))
single=$((($(callgrind_instructions "$bin" "$commands" 1) - base) / commands))
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "instructions_per_command: $batched (max_batch 256, $commands commands)"
echo "instructions_per_command_one_at_a_time: $single (max_batch 1)"
echo "ratio_batch_instructions: $(div "$single" "$batched")"
