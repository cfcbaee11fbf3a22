#!/usr/bin/env bash
# scripts/fuzz.sh SECONDS [TARGET]: builds a fuzzer with clang (libFuzzer + ASan + UBSan) and runs
# it for SECONDS on its seed corpus (new inputs go to a scratch corpus under build/fuzz so the
# checked-in seeds stay small). Prints the execution count. TARGET (default http_parser):
#   http_parser   tests/fuzz/http_parser_fuzz.cpp, seeds tests/fuzz/http_corpus
#   frame_decode  tests/fuzz/frame_decode_fuzz.cpp, seeds tests/fuzz/frame_corpus
#   snapshot_load tests/fuzz/snapshot_load_fuzz.cpp, seeds tests/fuzz/snapshot_load_corpus
#   channel_metadata  tests/fuzz/channel_metadata_fuzz.cpp (the example's document parser),
#                 seeds tests/fuzz/channel_metadata_corpus
#   event_log_scanner  tests/fuzz/event_log_scanner_fuzz.cpp (the event-log stages' JSON scanner
#                 against nlohmann_json, and the command API's body check), seeds tests/fuzz/event_log_corpus
#   checkout_codec  tests/fuzz/checkout_codec_fuzz.cpp (the order record and saga context codecs),
#                 seeds tests/fuzz/checkout_corpus
#   predictions_input  tests/fuzz/predictions_input_fuzz.cpp (POST /input's check and the published
#                 form), seeds tests/fuzz/predictions_corpus
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --all   # clang (libFuzzer)
seconds=${1:-60}
target=${2:-http_parser}
case "$target" in
  http_parser) seeds=tests/fuzz/http_corpus ;;
  frame_decode) seeds=tests/fuzz/frame_corpus ;;
  snapshot_load) seeds=tests/fuzz/snapshot_load_corpus ;;
  channel_metadata) seeds=tests/fuzz/channel_metadata_corpus ;;
  event_log_scanner) seeds=tests/fuzz/event_log_corpus ;;
  checkout_codec) seeds=tests/fuzz/checkout_corpus ;;
  predictions_input) seeds=tests/fuzz/predictions_corpus ;;
  *) echo "fuzz: unknown target $target (http_parser, frame_decode, snapshot_load, channel_metadata, event_log_scanner, checkout_codec, predictions_input)" >&2; exit 2 ;;
esac
out=build/fuzz/$target
mkdir -p "$out/corpus"
clang++ -std=c++20 -DASIO_HAS_CO_AWAIT -DASIO_HAS_STD_COROUTINE -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Iinclude -Iexamples/channel-metadata \
  -Iexamples/event-log -Iexamples/checkout -Iexamples/predictions \
  "tests/fuzz/${target}_fuzz.cpp" -o "$out/${target}_fuzz"
rm -f "$out"/crash-* "$out"/leak-* "$out"/timeout-* "$out"/oom-*
status=0
"$out/${target}_fuzz" -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 \
  -artifact_prefix="$out/" "$out/corpus" "$seeds" >"$out/last-run.log" 2>&1 || status=$?
grep -E '^(stat::number_of_executed_units|#[0-9]+ +DONE|==[0-9]+==ERROR|SUMMARY)' "$out/last-run.log" || true
# libFuzzer exits non-zero on a crash, a leak, a timeout or an out-of-memory input and leaves
# the input in $out as crash-*/leak-*/timeout-*/oom-*: either one fails this script.
artifacts=$(find "$out" -maxdepth 1 \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \))
if [ "$status" -ne 0 ] || [ -n "$artifacts" ]; then
  echo "fuzz: FAILED (exit $status); inputs: ${artifacts:-none}; log: $out/last-run.log" >&2
  exit 1
fi
echo "fuzz: $target: no crash, leak or timeout in ${seconds} s"
