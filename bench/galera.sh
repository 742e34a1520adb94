#!/usr/bin/env bash
# bench/galera.sh — Galera figures for BENCHMARKS.md (issue 8), with the same cluster for both:
#   gap        the longest time between two acknowledged writes through rw around a SIGKILL of
#              rw's member (agent and server, `myset kill`), RUNS times; median and p95.
#   recovery   seconds from `myset up` after the controller, every agent and every server were
#              SIGKILLed at once (positions recovered with --wsrep-recover, the newest member
#              bootstraps, the others join) until `up` returns with all Ready, RUNS_RECOVERY times.
# Baseline, measured in the same run: the same gap for the replication topology's kill of the
# primary instance (`myset kill` of the primary), so the ratio shows what Galera costs.
#
# Knobs: MYSET=<repo>/target/debug/myset  RUNS=20  RUNS_RECOVERY=5  PORT_BASE=24300
#        BENCHES="gap recovery" (either or both)
# Prints `RESULT key=value` lines; cleans up its clusters and state dir on exit.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
MYSET="${MYSET:-$here/target/debug/myset}"
RUNS="${RUNS:-20}"
RUNS_RECOVERY="${RUNS_RECOVERY:-5}"
PORT_BASE="${PORT_BASE:-24300}"
BENCHES="${BENCHES:-gap recovery}"
STATE="$(mktemp -d /tmp/bench-galera-XXXXXX)"
WRITER_PID=""

cleanup() {
  [ -n "$WRITER_PID" ] && kill "$WRITER_PID" 2>/dev/null || true
  for name in gal rep; do "$MYSET" --state-dir "$STATE" destroy --name "$name" >/dev/null 2>&1 || true; done
  rm -rf "$STATE"
}
trap cleanup EXIT

m() { "$MYSET" --state-dir "$STATE" "$@"; }

# Writes through rw as fast as one client can, one timestamp per acknowledged INSERT.
writer() {
  local name=$1 port=$2 out=$3
  while true; do
    if mariadb --defaults-extra-file="$STATE/$name/client.cnf" -h 127.0.0.1 -P "$port" \
      --connect-timeout=3 -e "INSERT INTO b.t VALUES ()" 2>/dev/null; then
      date +%s.%N >>"$out"
    fi
  done
}

# Waits until every instance is Ready (status -o json), at most 300 s.
converged() {
  local name=$1
  for _ in $(seq 1 600); do
    if m status --name "$name" -o json 2>/dev/null |
      python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if s["instances"] and all(i["ready"] for i in s["instances"]) else 1)'; then
      return 0
    fi
    sleep 0.5
  done
  echo "cluster $name did not converge" >&2
  return 1
}

# The longest gap between consecutive timestamps in a file, within [from, until].
max_gap() {
  python3 - "$1" "$2" "$3" <<'EOF'
import sys
path, start, end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
ts = [float(l) for l in open(path) if l.strip()]
before = [t for t in ts if t <= start]
window = ([before[-1]] if before else []) + [t for t in ts if start < t <= end]
print(max((b - a for a, b in zip(window, window[1:])), default=0.0))
EOF
}

stats() {
  python3 -c 'import sys,statistics; v=sorted(float(x) for x in sys.argv[1:]); p95=v[min(len(v)-1, round((len(v)-1)*0.95))]; print(f"{statistics.median(v):.3f} {p95:.3f} {max(v):.3f}")' "$@"
}

# kill_gaps NAME RW_PORT: RUNS kills of rw's member, printing each gap.
kill_gaps() {
  local name=$1 port=$2 log="$STATE/$1.acks"
  : >"$log"
  writer "$name" "$port" "$log" &
  WRITER_PID=$!
  local gaps=()
  for _ in $(seq 1 "$RUNS"); do
    sleep 2
    local victim
    victim=$(m status --name "$name" -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["primary"])')
    local start
    start=$(date +%s.%N)
    m kill --name "$name" "$victim" >/dev/null
    converged "$name"
    sleep 1
    gaps+=("$(max_gap "$log" "$start" "$(date +%s.%N)")")
  done
  kill "$WRITER_PID" 2>/dev/null || true
  wait "$WRITER_PID" 2>/dev/null || true
  WRITER_PID=""
  echo "${gaps[@]}"
}

setup() {
  local name=$1 rw=$2 ro=$3
  shift 3
  m up --name "$name" --rw-port "$rw" --ro-port "$ro" "$@" >/dev/null
  m sql --name "$name" rw -e "CREATE DATABASE b; CREATE TABLE b.t (id BIGINT PRIMARY KEY AUTO_INCREMENT)"
}

if [[ " $BENCHES " == *" gap "* ]]; then
echo "replication baseline: $RUNS kills of the primary" >&2
setup rep $((PORT_BASE + 1)) $((PORT_BASE + 2))
read -r -a rep_gaps <<<"$(kill_gaps rep $((PORT_BASE + 1)))"
m destroy --name rep >/dev/null
echo "galera: $RUNS kills of rw's member" >&2
setup gal $((PORT_BASE + 3)) $((PORT_BASE + 4)) --topology galera
read -r -a gal_gaps <<<"$(kill_gaps gal $((PORT_BASE + 3)))"

read -r rep_med rep_p95 rep_max <<<"$(stats "${rep_gaps[@]}")"
read -r gal_med gal_p95 gal_max <<<"$(stats "${gal_gaps[@]}")"
echo "RESULT replication_kill_gap_median_s=$rep_med p95=$rep_p95 max=$rep_max runs=$RUNS"
echo "RESULT galera_kill_gap_median_s=$gal_med p95=$gal_p95 max=$gal_max runs=$RUNS"
python3 -c "print(f'RESULT galera_over_replication_median_ratio={float($gal_med)/float($rep_med):.2f}')"
fi

if [[ " $BENCHES " == *" recovery "* ]]; then
m status --name gal >/dev/null 2>&1 || setup gal $((PORT_BASE + 3)) $((PORT_BASE + 4)) --topology galera

echo "galera: $RUNS_RECOVERY full crashes" >&2
times=()
for _ in $(seq 1 "$RUNS_RECOVERY"); do
  # A full crash: SIGKILL to the controller, every agent and every server at once, so
  # positions must come from --wsrep-recover; then `up`.
  pkill -9 -f "$STATE/gal( |/|$)" || true
  sleep 1
  start=$(date +%s.%N)
  m up --name gal >/dev/null
  times+=("$(python3 -c "print($(date +%s.%N) - $start)")")
done
read -r rec_med rec_p95 rec_max <<<"$(stats "${times[@]}")"
echo "RESULT galera_recovery_after_crash_s_median=$rec_med max=$rec_max runs=$RUNS_RECOVERY"
fi
