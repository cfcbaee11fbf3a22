#!/usr/bin/env bash
# Cost per command of the event-log example's memory mode, stage by stage: the command API's route
# in process (HTTP parsing and the socket are not in it) and the validator, persister and
# materializer, each with full batches, on the memory models. Two measures, both steady on a
# shared machine (benchmarks/event_log.sh measures commands/s over HTTP, which a busy machine moves):
#   cpu_us_per_command: <stage> N      CPU microseconds (the process's CPU time over the stage)
#   instructions_per_command: <stage> N   instructions, counted by callgrind
# then the total of each, for max_batch 256 (the example's), and the total instructions with
# max_batch 1 (a stage that takes one message at a time) with their ratio.
# Needs valgrind. Builds the release preset unless BUILD_DIR points at an existing build.
# Environment: COMMANDS (default 5000 under callgrind; 10x that for the CPU time).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
bench_executables event_log bulwark_bench_event_log_instructions
command -v valgrind >/dev/null || { echo "valgrind is needed (scripts/install-deps.sh)" >&2; exit 1; }
commands=${COMMANDS:-5000}
bin="$BUILD_DIR/benchmarks/event_log/bulwark_bench_event_log_instructions"
stages="command_api validator persister materializer"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# per_stage N MAX_BATCH -> "stage instructions" lines, one per stage, from callgrind's dumps (two
# runs: the persister and the materializer read one topic, a run measures one of them)
per_stage() {
  local last f
  for last in persister materializer; do
    rm -f "$work"/cg*
    valgrind --tool=callgrind --callgrind-out-file="$work/cg" "$bin" "$1" "$2" "$last" >/dev/null 2>"$work/log"
    for f in "$work"/cg.*; do
      awk '/^desc: Trigger: Client Request: / { name = $NF } /^(summary|totals):/ { print name, $2; exit }' "$f"
    done
  done | awk '!seen[$1]++' # the command API and the validator: the first run's
}
# cpu N -> "stage microseconds" lines
cpu() {
  { "$bin" "$1" 256 persister; "$bin" "$1" 256 materializer; } | awk '$1 == "cpu_us" && !seen[$2]++ { print $2, $3 }'
}

per_stage 0 256 >"$work/i0"
per_stage "$commands" 256 >"$work/i1"
per_stage "$commands" 1 >"$work/i1single"
big=$((commands * 10))
cpu 0 >"$work/c0"
cpu "$big" >"$work/c1"

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
total_i=0 total_c=0
for s in $stages; do
  i=$((($(awk -v s="$s" '$1 == s { print $2 }' "$work/i1") - $(awk -v s="$s" '$1 == s { print $2 }' "$work/i0")) / commands))
  c=$(awk -v s="$s" -v n="$big" 'FNR == 1 { f++ } $1 == s { v[f] = $2 } END { printf "%.1f", (v[2] - v[1]) / n }' "$work/c0" "$work/c1")
  total_i=$((total_i + i))
  total_c=$(awk -v a="$total_c" -v b="$c" 'BEGIN { printf "%.1f", a + b }')
  echo "instructions_per_command: $s $i"
  echo "cpu_us_per_command: $s $c"
done
single=$((($(awk '{ s += $2 } END { print s }' "$work/i1single") - $(awk '{ s += $2 } END { print s }' "$work/i0")) / commands))
echo "instructions_per_command: total $total_i (max_batch 256, $commands commands)"
echo "cpu_us_per_command: total $total_c ($big commands)"
echo "instructions_per_command_one_at_a_time: $single (max_batch 1)"
echo "ratio_batch_instructions: $(div "$single" "$total_i")"
