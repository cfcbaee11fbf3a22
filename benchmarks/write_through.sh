#!/usr/bin/env bash
# The cost of flows::write_through on the memory models, configured as a service runs it (a
# circuit breaker and a deadline on every repository call, the shared cache hit, no near cache),
# next to the bare calls it wraps. Prints a table, then:
#   ratio_read_hit:  bare memory::cache get / cache-hit read through write_through (goal >= 0.5:
#                    the flow at most doubles a hit)
#   ratio_write:     bare memory::repository put / durable write through write_through (>= 0.5)
#   stale_read_ns:   a read while the repository is down (the breaker open), served stale
# and the load average it ran under (2 cores shared: a busy machine inflates every figure).
# Builds the release preset unless BUILD_DIR points at an existing build.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build/release}
if [ -z "${BUILD_DIR:-}" ]; then
  cmake --preset release >/dev/null
  cmake --build "$build" --target bulwark_bench_write_through
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
taskset -c 0 "$build/benchmarks/flows/bulwark_bench_write_through" --benchmark_min_time=0.5 \
  --benchmark_repetitions=5 --benchmark_report_aggregates_only=true --benchmark_format=json >"$out"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - "$out" "$load_before" "$load_after" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
rows = {}
for b in data["benchmarks"]:
    if b.get("aggregate_name") != "median":
        continue
    ns = b["real_time"] * {"ns": 1, "us": 1e3, "ms": 1e6}[b["time_unit"]]
    cpu = b["cpu_time"] * {"ns": 1, "us": 1e3, "ms": 1e6}[b["time_unit"]]
    rows[b["run_name"]] = (ns, cpu)
print(f"{'benchmark (median of 5)':34} {'ns/op':>10} {'cpu ns/op':>10}")
for name, (ns, cpu) in rows.items():
    print(f"{name:34} {ns:10.1f} {cpu:10.1f}")
get, read = rows["cache_get_hit"][0], rows["write_through_read_hit"][0]
put, write = rows["repository_put"][0], rows["write_through_write_durable"][0]
stale = rows["write_through_read_stale"][0]
floor_read, floor_write = rows["cache_get_hit_with_deadline"][0], rows["repository_put_guarded"][0]
print(f"the wrappers alone: get / get under the deadline {get / floor_read:.2f}; "
      f"put / put through breaker and timeout {put / floor_write:.2f}")
print(f"goal ratio_read_hit >= 0.5: {'OK' if get / read >= 0.5 else 'MISSED'}; "
      f"goal ratio_write >= 0.5: {'OK' if put / write >= 0.5 else 'MISSED'}")
cpu = {name: c for name, (_, c) in rows.items()}
print(f"by CPU time (what a busy shared machine inflates less): ratio_read_hit "
      f"{cpu['cache_get_hit'] / cpu['write_through_read_hit']:.2f}, ratio_write "
      f"{cpu['repository_put'] / cpu['write_through_write_durable']:.2f}, stale read "
      f"{cpu['write_through_read_stale']:.0f} ns")
print(f"load average (1, 5, 15 min): before {sys.argv[2]}, after {sys.argv[3]}")
print(f"ratio_read_hit: {get / read:.2f}")
print(f"ratio_write: {put / write:.2f}")
print(f"stale_read_ns: {stale:.0f}")
PY
