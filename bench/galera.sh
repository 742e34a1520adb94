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
#        GAP_VARIANTS="label=/path/to/myset ..." (gap only): after the default galera gap, the
#          same gap again with each of these binaries (for example one built with other Galera
#          provider options), on a fresh cluster each, so they share the run's baseline.
#        KEEP_LOGS=DIR: copy every cluster's logs and events there before it is destroyed.
# Prints `RESULT key=value` lines; cleans up its clusters and state dir on exit.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
MYSET="${MYSET:-$here/target/debug/myset}"
RUNS="${RUNS:-20}"
RUNS_RECOVERY="${RUNS_RECOVERY:-5}"
PORT_BASE="${PORT_BASE:-24300}"
BENCHES="${BENCHES:-gap recovery}"
GAP_VARIANTS="${GAP_VARIANTS:-}"
KEEP_LOGS="${KEEP_LOGS:-}"
STATE="$(mktemp -d /tmp/bench-galera-XXXXXX)"
WRITER_PID=""

# Copies a cluster's logs, events and records to KEEP_LOGS/<name> (when KEEP_LOGS is set).
keep_logs() {
  [ -n "$KEEP_LOGS" ] && [ -d "$STATE/$1" ] || return 0
  (cd "$STATE" && find "$1" \( -name data -o -name data.init -o -name 'backup-*' \) -prune -o \
    -type f \( -name '*.log' -o -name '*.jsonl' -o -name cluster.json \) -print |
    while read -r f; do mkdir -p "$KEEP_LOGS/$(dirname "$f")"; cp "$f" "$KEEP_LOGS/$f"; done)
  cp "$STATE"/*.acks "$STATE"/*.kills "$KEEP_LOGS/" 2>/dev/null || true
}

cleanup() {
  [ -n "$WRITER_PID" ] && kill "$WRITER_PID" 2>/dev/null || true
  for dir in "$STATE"/*/; do
    [ -f "$dir/cluster.json" ] || continue
    keep_logs "$(basename "$dir")"
    "$MYSET" --state-dir "$STATE" destroy --name "$(basename "$dir")" >/dev/null 2>&1 || true
  done
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

# Waits until VICTIM's agent pid differs from OLD_PID and every instance is Ready (Galera
# members: Synced, Primary, cluster size = instances), at most 300 s.
healed() {
  local name=$1 victim=$2 old_pid=$3
  for _ in $(seq 1 600); do
    if m status --name "$name" -o json 2>/dev/null | python3 -c '
import json, sys
s = json.load(sys.stdin); victim, old = int(sys.argv[1]), int(sys.argv[2]); n = len(s["instances"])
v = [i for i in s["instances"] if i["ordinal"] == victim]
ok = v and v[0]["agent_pid"] not in (None, old) and all(
    i["ready"] and (i.get("galera") is None or (i["galera"]["state"] == "synced"
        and i["galera"]["primary_component"] and i["galera"]["cluster_size"] == n))
    for i in s["instances"])
sys.exit(0 if ok else 1)' "$victim" "$old_pid"; then
      return 0
    fi
    sleep 0.5
  done
  echo "cluster $name did not heal after a kill of $victim" >&2
  return 1
}

# Waits until FILE holds an acknowledged write later than T, at most 120 s.
writes_after() {
  for _ in $(seq 1 1200); do
    if [ "$(awk -v t="$2" '$1 > t { n++ } END { print n + 0 }' "$1")" -gt 0 ]; then return 0; fi
    sleep 0.1
  done
  echo "no write acknowledged within 120 s after the cluster healed" >&2
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
    local victim old_pid
    read -r victim old_pid < <(m status --name "$name" -o json | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["primary"], s["instances"][s["primary"]]["agent_pid"])')
    local start
    start=$(date +%s.%N)
    m kill --name "$name" "$victim" >/dev/null
    # Healed: the victim runs again (a new agent), every member is Ready (and, on Galera,
    # Synced in a Primary component of all of them), and a write was acknowledged after that.
    # Without the first condition, a status still showing the victim Ready from before the kill
    # ended the wait at once, and the next kill hit the member rw had moved to while the first
    # was still being evicted: two of three members down, no quorum.
    healed "$name" "$victim" "$old_pid"
    local healed_at
    healed_at=$(date +%s.%N)
    writes_after "$log" "$healed_at"
    sleep 1
    gaps+=("$(max_gap "$log" "$start" "$(date +%s.%N)")")
    echo "$start $victim ${gaps[-1]}" >>"$STATE/$name.kills"
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
keep_logs rep
m destroy --name rep >/dev/null
echo "galera: $RUNS kills of rw's member" >&2
setup gal $((PORT_BASE + 3)) $((PORT_BASE + 4)) --topology galera
read -r -a gal_gaps <<<"$(kill_gaps gal $((PORT_BASE + 3)))"

read -r rep_med rep_p95 rep_max <<<"$(stats "${rep_gaps[@]}")"
read -r gal_med gal_p95 gal_max <<<"$(stats "${gal_gaps[@]}")"
echo "RESULT replication_kill_gaps_s=\"${rep_gaps[*]}\""
echo "RESULT galera_kill_gaps_s=\"${gal_gaps[*]}\""
echo "RESULT replication_kill_gap_median_s=$rep_med p95=$rep_p95 max=$rep_max runs=$RUNS"
echo "RESULT galera_kill_gap_median_s=$gal_med p95=$gal_p95 max=$gal_max runs=$RUNS"
python3 -c "print(f'RESULT galera_over_replication_median_ratio={float($gal_med)/float($rep_med):.2f}')"

# The same gap with other binaries (other Galera provider options), each on a fresh cluster.
variant=0
for v in $GAP_VARIANTS; do
  label=${v%%=*}
  variant=$((variant + 1))
  keep_logs gal
  m destroy --name gal >/dev/null
  default_myset=$MYSET
  MYSET=${v#*=}
  echo "galera ($label, $MYSET): $RUNS kills of rw's member" >&2
  name=gal$variant
  setup "$name" $((PORT_BASE + 3)) $((PORT_BASE + 4)) --topology galera
  m sql --name "$name" 0 -e "SHOW GLOBAL VARIABLES LIKE 'wsrep_provider_options'" | tr ';' '\n' | grep -E 'evs\.(suspect|inactive|keepalive|install)' >&2 || true
  read -r -a v_gaps <<<"$(kill_gaps "$name" $((PORT_BASE + 3)))"
  read -r v_med v_p95 v_max <<<"$(stats "${v_gaps[@]}")"
  echo "RESULT galera_${label}_kill_gaps_s=\"${v_gaps[*]}\""
  echo "RESULT galera_${label}_kill_gap_median_s=$v_med p95=$v_p95 max=$v_max runs=$RUNS"
  python3 -c "print(f'RESULT galera_${label}_over_default_median_ratio={float($v_med)/float($gal_med):.2f} over_replication={float($v_med)/float($rep_med):.2f}')"
  keep_logs "$name"
  m destroy --name "$name" >/dev/null
  MYSET=$default_myset
done
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
