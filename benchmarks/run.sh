#!/usr/bin/env bash
# Runs the microbenchmarks of the in-memory models and prints a table, then the targets:
#   memory cache hit <= 100 ns; memory bus publish-to-handler >= 1M messages/s on one core;
#   a deadline costs at most as much as the call it bounds: ratio_deadline_overhead (bare get /
#   with_timeout(get, 1s) on a memory repository) >= 0.5; a consumer whose handler awaits a
#   100 us round trip per call handles more per second with subscribe_batch than with
#   subscribe: ratio_batch (batch msgs/s / per-message msgs/s), no goal yet.
# Builds the release preset unless BUILD_DIR points at an existing build.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build/release}
if [ -z "${BUILD_DIR:-}" ]; then
  cmake --preset release >/dev/null
  cmake --build "$build" --target bulwark_bench_core
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
taskset -c 0 "$build/benchmarks/core/bulwark_bench_core" --benchmark_min_time=0.5 --benchmark_repetitions=3 \
  --benchmark_report_aggregates_only=true --benchmark_format=json >"$out"
python3 - "$out" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
rows = {}
for b in data["benchmarks"]:
    if b.get("aggregate_name") != "median":
        continue
    name = b["run_name"].removesuffix("/real_time")
    ns = b["real_time"] if b["time_unit"] == "ns" else b["real_time"] * {"us": 1e3, "ms": 1e6}[b["time_unit"]]
    rows[name] = (ns, b.get("items_per_second", 0.0))
print(f"{'benchmark':28} {'ns/op':>10} {'ops/s':>14}")
for name, (ns, ips) in rows.items():
    print(f"{name:28} {ns:10.1f} {ips:14,.0f}")
hit = rows["cache_get_hit"][0]
hit_sync = rows["cache_get_hit_sync"][0]
bus = rows["bus_publish_to_handler"][1]
print(f"target cache hit <= 100 ns: co_await get {hit:.1f} ns {'OK' if hit <= 100 else 'MISSED'}, "
      f"get_now {hit_sync:.1f} ns {'OK' if hit_sync <= 100 else 'MISSED'}")
print(f"target bus_publish_to_handler >= 1,000,000 msg/s: {bus:,.0f} {'OK' if bus >= 1e6 else 'MISSED'}")
print(f"ratio_cache_hit_vs_target: {100.0 / hit:.2f}")
print(f"ratio_cache_hit_sync_vs_target: {100.0 / hit_sync:.2f}")
print(f"ratio_bus_vs_target: {bus / 1e6:.2f}")
bare, bounded = rows["repository_get"][0], rows["repository_get_bounded"][0]
print(f"target deadline overhead ratio >= 0.5: repository get {bare:.1f} ns, with_timeout {bounded:.1f} ns "
      f"{'OK' if bare / bounded >= 0.5 else 'MISSED'}; an op that suspends once: "
      f"{rows['suspending_get'][0]:.1f} ns bare, {rows['suspending_get_bounded'][0]:.1f} ns bounded")
print(f"ratio_deadline_overhead: {bare / bounded:.2f}")
one, batch = rows["bus_round_trip_per_message"][1], rows["bus_round_trip_batch"][1]
print(f"memory bus, handler awaiting a 100 us round trip per call: subscribe {one:,.0f} msgs/s, "
      f"subscribe_batch (max_batch 256) {batch:,.0f} msgs/s")
print(f"ratio_batch: {batch / one:.2f}")
PY
