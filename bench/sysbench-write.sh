#!/usr/bin/env bash
# bench/sysbench-write.sh — sysbench write throughput through `rw` of a 3-member Galera cluster
# against `rw` of a 3-instance replication cluster (semi-synchronous, the default), same
# machine, same run (issue 8).
#
# Usage:  bash bench/sysbench-write.sh        (about 6 min on 2 cores with the defaults)
#
# Both clusters are up for the whole run; each gets WORKLOAD tables prepared through its rw
# (SB_TABLES x SB_TABLE_SIZE rows), a SB_WARMUP s warm-up, then SB_ROUNDS interleaved rounds
# (replication, galera, replication, galera, ...) of SB_THREADS threads for SB_TIME s each.
# Reported: the median tps of each, galera/replication, p95 latency, errors and reconnects.
# The cluster not being measured is idle (its agents still probe every second). Also checked:
# the Galera members stay in one view through the load (wsrep_cluster_conf_id unchanged on
# every member, no member leaving the Ready set), which short failure-detection timers could
# break on a CPU-starved machine.
#
# Knobs: MYSET=<repo>/target/release/myset  WORKLOAD=oltp_write_only  SB_TABLES=4
#        SB_TABLE_SIZE=20000  SB_THREADS=4  SB_TIME=30  SB_WARMUP=5  SB_ROUNDS=3  PORT_BASE=24500
# Prints `RESULT key=value` lines on stdout, progress on stderr; destroys both clusters and
# deletes its state dir on exit, success or failure.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
MYSET="${MYSET:-$here/target/release/myset}"
WORKLOAD="${WORKLOAD:-oltp_write_only}"
SB_TABLES="${SB_TABLES:-4}"
SB_TABLE_SIZE="${SB_TABLE_SIZE:-20000}"
SB_THREADS="${SB_THREADS:-4}"
SB_TIME="${SB_TIME:-30}"
SB_WARMUP="${SB_WARMUP:-5}"
SB_ROUNDS="${SB_ROUNDS:-3}"
PORT_BASE="${PORT_BASE:-24500}"

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ -x $MYSET ]] || die "no myset binary at $MYSET (cargo build --release -p myset-cli, or set MYSET)"
for tool in jq mariadb sysbench; do command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install -y sysbench jq)"; done

STATE="$(mktemp -d /tmp/bench-sysbench-write-XXXXXX)"
cleanup() {
  local rc=$?
  set +e
  for name in rep gal; do "$MYSET" --state-dir "$STATE" destroy --name "$name" >/dev/null 2>&1; done
  local left
  left=$(pgrep -f -- "$STATE/" || true)
  [[ -n $left ]] && { log "processes left under $STATE: $(echo $left); killing them"; for p in $left; do kill -9 "$p"; done; }
  rm -rf "$STATE"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

m() { "$MYSET" --state-dir "$STATE" "$@"; }
declare -A RWPORT PASS
RWPORT[rep]=$((PORT_BASE + 1))
RWPORT[gal]=$((PORT_BASE + 3))

sb() { # name action [extra...]
  local n=$1 a=$2
  shift 2
  sysbench "$WORKLOAD" --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="${RWPORT[$n]}" \
    --mysql-user=myset --mysql-password="${PASS[$n]}" --mysql-db=sbtest \
    --tables="$SB_TABLES" --table-size="$SB_TABLE_SIZE" "$@" "$a"
}

result date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
result machine_nproc "$(nproc)"
result sysbench_version "$(sysbench --version | awk '{ print $2 }')"
result myset_git "$(cd "$here" && git rev-parse --short HEAD)$(cd "$here" && [[ -n $(git status --porcelain -- crates) ]] && echo -dirty)"
result myset_binary "\"$(stat -c '%y' "$MYSET" | cut -d. -f1) sha256:$(sha256sum "$MYSET" | cut -c1-12)\""

for n in rep gal; do
  extra=()
  [[ $n == gal ]] && extra=(--topology galera)
  log "up: $n ${extra[*]}"
  m up --name "$n" --rw-port "${RWPORT[$n]}" --ro-port $((RWPORT[$n] + 1)) "${extra[@]}" >"$STATE/up-$n.out" 2>&1 ||
    { cat "$STATE/up-$n.out" >&2; die "myset up --name $n"; }
  PASS[$n]=$(cat "$(m status --name "$n" -o json | jq -r .credentials.password_file)")
  mariadb --no-defaults -h 127.0.0.1 -P "${RWPORT[$n]}" -u myset -p"${PASS[$n]}" -e "CREATE DATABASE sbtest"
  sb "$n" prepare --threads=2 >"$STATE/prepare-$n.log" 2>&1 || { tail -20 "$STATE/prepare-$n.log" >&2; die "prepare $n"; }
done
result rep_durability_asked_in_force "$(m status --name rep -o json | jq -r '"\(.durability)/\(.durability_in_force)"')"

# Galera members must stay in one view under load: wsrep_cluster_conf_id counts view changes
# (a member suspected and evicted under CPU starvation would change it), and no member may
# leave the Ready set (unready events).
conf_ids() {
  for port in $(m status --name gal -o json | jq -r '.instances[].port'); do
    mariadb --no-defaults -h 127.0.0.1 -P "$port" -u myset -p"${PASS[gal]}" -N -B \
      -e "SHOW GLOBAL STATUS LIKE 'wsrep_cluster_conf_id'" | cut -f2
  done | tr '\n' ' '
}
conf_before=$(conf_ids)
events_before=$(m events --name gal | grep -c 'not Ready' || true)
load_start=$(date +%s)

declare -A TPS
TPS[rep]="" TPS[gal]=""
for n in rep gal; do
  log "warm-up $n: ${SB_WARMUP}s"
  sb "$n" run --threads="$SB_THREADS" --time="$SB_WARMUP" >/dev/null 2>&1 || die "warm-up $n"
done
for ((r = 1; r <= SB_ROUNDS; r++)); do
  for n in rep gal; do
    log "round $r/$SB_ROUNDS: $n, $WORKLOAD, $SB_THREADS threads, ${SB_TIME}s"
    out="$STATE/run-$n-$r.log"
    sb "$n" run --threads="$SB_THREADS" --time="$SB_TIME" --percentile=95 >"$out" 2>&1 || { tail -20 "$out" >&2; die "run $n"; }
    tps=$(awk '/transactions:/ { gsub(/\(/, "", $3); print $3 }' "$out")
    p95=$(awk '/95th percentile:/ { print $3 }' "$out")
    errs=$(awk '/ignored errors:/ { print $3 }' "$out")
    recs=$(awk '/reconnects:/ { print $2 }' "$out")
    result "${n}_tps_round$r" "$tps"
    result "${n}_p95_ms_round$r" "$p95"
    result "${n}_errors_reconnects_round$r" "\"$errs $recs\""
    TPS[$n]+="$tps "
  done
done
# shellcheck disable=SC2086
rep=$(median ${TPS[rep]})
# shellcheck disable=SC2086
gal=$(median ${TPS[gal]})
result replication_tps_median "$rep"
result galera_tps_median "$gal"
result galera_over_replication_tps_ratio "$(ratio "$gal" "$rep")"

result galera_provider_evs_options "\"$(mariadb --no-defaults -h 127.0.0.1 -P "${RWPORT[gal]}" -u myset -p"${PASS[gal]}" -N -B \
  -e "SHOW GLOBAL VARIABLES LIKE 'wsrep_provider_options'" | cut -f2 | tr ';' '\n' | grep -E 'evs\.(suspect|inactive|keepalive|install)_' | tr -d ' ' | tr '\n' ' ')\""
result galera_load_seconds "$(($(date +%s) - load_start))"
result galera_conf_ids_before_after "\"$conf_before/ $(conf_ids)\""
result galera_unready_events_during_load "$(($(m events --name gal | grep -c 'not Ready' || true) - events_before))"
