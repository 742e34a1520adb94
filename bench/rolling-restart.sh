#!/usr/bin/env bash
# bench/rolling-restart.sh — the write pause of `myset restart` (issue 10) for BENCHMARKS.md:
# the longest time between two acknowledged writes of a steady writer through rw while every
# server of a 3-instance cluster is restarted in turn (replicas, a switchover, the old
# primary), RUNS times, median and max. Baseline, measured in the same run on its own cluster:
# the same pause around a plain `myset switchover`, RUNS times, and the ratio of the medians.
#
# Both use the chaos harness (`myset chaos --only FAULT`): its writer records every
# acknowledged write through rw, and its checker fails the run if any is missing afterwards.
#
# Knobs: MYSET=<repo>/target/debug/myset  RUNS=10  INTERVAL=8 (seconds between two faults)
#        PORT_BASE=24400
# Prints `RESULT key=value` lines; the chaos harness destroys its clusters on exit.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
MYSET="${MYSET:-$here/target/debug/myset}"
RUNS="${RUNS:-10}"
INTERVAL="${INTERVAL:-8}"
PORT_BASE="${PORT_BASE:-24400}"
STATE="$(mktemp -d /tmp/bench-rolling-XXXXXX)"
trap 'rm -rf "$STATE"' EXIT

# Runs RUNS faults of one kind; prints the report's path.
measure() {
  local fault=$1 rw=$2 ro=$3
  local report="$STATE/$fault.json"
  echo "# $fault x $RUNS" >&2
  "$MYSET" --state-dir "$STATE" chaos --name "bench-$fault" --only "$fault" --faults "$RUNS" \
    --interval "$INTERVAL" --rw-port "$rw" --ro-port "$ro" --report "$report" >&2
  echo "$report"
}

summarise() {
  python3 - "$@" <<'PY'
import json, statistics, sys
medians = {}
for path in sys.argv[1:]:
    r = json.load(open(path))
    gaps = sorted(f["write_gap_s"] for f in r["faults"])
    fault = r["faults"][0]["fault"]
    medians[fault] = statistics.median(gaps)
    print(f"RESULT {fault}_gap_median_s={medians[fault]:.3f}")
    print(f"RESULT {fault}_gap_max_s={gaps[-1]:.3f}")
    print(f"RESULT {fault}_gaps_s={','.join(f'{g:.3f}' for g in gaps)}")
    print(f"RESULT {fault}_acknowledged_writes={r['acknowledged_writes']} lost={r['lost_writes']}")
print(f"RESULT ratio_rolling_restart_to_switchover={medians['rolling-restart'] / medians['switchover']:.1f}")
PY
}

baseline=$(measure switchover $((PORT_BASE + 1)) $((PORT_BASE + 2)))
rolling=$(measure rolling-restart $((PORT_BASE + 3)) $((PORT_BASE + 4)))
summarise "$baseline" "$rolling"
