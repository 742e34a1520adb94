#!/usr/bin/env bash
# bench/endpoint-faults.sh — what faults cost clients through rw and ro, kernel endpoints against the
# userspace proxy, measured in the same run.
#
# Usage (as root, with nft and conntrack):  bash bench/endpoint-faults.sh
#
# For each fault kind in KINDS, and for each endpoint mode in MODES (interleaved: all modes of one
# kind, then the next kind), it runs the chaos harness on a fresh 3-instance cluster:
#   MYSET_ENDPOINTS=<mode> myset chaos --netns --only <kind> --faults FAULTS --seed SEED ...
# with a steady writer through rw and 2 readers through ro (each read a new connection), and reads
# the harness's JSON report. Per kind and mode it prints:
#   RESULT <kind>.<mode>.gap_median_s=…      write gap through rw: last acknowledged write before the
#                                             fault to the first after it, median over the faults
#   RESULT <kind>.<mode>.gap_max_s=…
#   RESULT <kind>.<mode>.failed_reads_per_fault=…   reads through ro that failed while it healed
#   RESULT <kind>.<mode>.read_success=…      over the whole run (the harness's ratio)
#   RESULT <kind>.<mode>.lost_writes=…       must be 0
# and, with both modes run, <kind>.gap_kernel_over_userspace=… (median over median).
#
# The faults:
#   kill-primary-server  kill -9 of the primary's mariadbd (its agent restarts it; no failover)
#   freeze-primary       SIGSTOP of the primary's server and agent until the controller fails over;
#                        the frozen member is in ro too, so it is the hung member of the stall
#   kill-replica         kill -9 of a replica's server and agent: a member that dies while in ro
#
# Knobs (environment):
#   MYSET=<repo>/target/release/myset   the binary (build it first: cargo build --release -p myset-cli)
#   KINDS="kill-primary-server freeze-primary kill-replica"
#   MODES="userspace kernel"
#   FAULTS=20   faults per kind and mode
#   SEED=1
#   FAILOVER_INTERVAL=12   seconds between two faults that fail over (the flap guard holds a second
#                          failover for 10 s, which would otherwise be measured)
#   INTERVAL=2             seconds between two other faults
#   PORT_BASE=23400        uses PORT_BASE+1 and +2 on 127.0.0.1
#   OUT=/tmp/endpoint-faults-<pid>   the reports and, on failure, the clusters' logs (kept)
#   RESULTS_FILE=          also append RESULT lines to this file
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
MYSET=${MYSET:-$repo/target/release/myset}
KINDS=${KINDS:-"kill-primary-server freeze-primary kill-replica"}
MODES=${MODES:-"userspace kernel"}
FAULTS=${FAULTS:-20}
SEED=${SEED:-1}
FAILOVER_INTERVAL=${FAILOVER_INTERVAL:-12}
INTERVAL=${INTERVAL:-2}
PORT_BASE=${PORT_BASE:-23400}
OUT=${OUT:-/tmp/endpoint-faults-$$}
RESULTS_FILE=${RESULTS_FILE:-}

source "$repo/bench/lib.sh"

[ "$(id -u)" = 0 ] || die "needs root (network namespaces and nftables); run it with sudo"
[ -x "$MYSET" ] || die "no myset binary at $MYSET; build it with 'cargo build --release -p myset-cli' or set MYSET"
command -v jq >/dev/null || die "jq is missing; install it with 'apt-get install -y jq'"
mkdir -p "$OUT"
state="$OUT/state"
[ ! -e "$state" ] || die "$state exists; set OUT to a new directory"
export PATH="$PATH:/usr/sbin:/sbin"

cleanup() {
  for dir in "$state"/*/; do
    [ -d "$dir" ] && "$MYSET" --state-dir "$state" destroy --name "$(basename "$dir")" --yes >/dev/null 2>&1 || true
  done
  rm -rf "$state"
}
trap cleanup EXIT

for kind in $KINDS; do
  case "$kind" in
    freeze-primary) interval=$FAILOVER_INTERVAL ;;
    *) interval=$INTERVAL ;;
  esac
  for mode in $MODES; do
    report="$OUT/$kind-$mode.json"
    log "$kind, $mode endpoints: $FAULTS faults, seed $SEED, $interval s apart"
    if ! MYSET_ENDPOINTS=$mode "$MYSET" --state-dir "$state" chaos --name "bf-$mode" --netns \
      --only "$kind" --faults "$FAULTS" --seed "$SEED" --interval "$interval" \
      --rw-port $((PORT_BASE + 1)) --ro-port $((PORT_BASE + 2)) \
      --report "$report" --keep-logs "$OUT/logs-$kind-$mode" >"$OUT/$kind-$mode.out" 2>&1; then
      log "the harness reported a failure; its output is in $OUT/$kind-$mode.out"
    fi
    [ -s "$report" ] || die "no report from the $kind run in $mode mode; see $OUT/$kind-$mode.out"
    asked=$(jq -r '.endpoints // "unknown"' "$report")
    [ "$asked" = "$mode" ] || die "asked for $mode endpoints but the cluster ran $asked"
    mapfile -t gaps < <(jq -r '.faults[].write_gap_s' "$report")
    gap=$(median "${gaps[@]}")
    result "$kind.$mode.gap_median_s" "$gap"
    result "$kind.$mode.gap_max_s" "$(jq -r '[.faults[].write_gap_s] | max' "$report")"
    result "$kind.$mode.failed_reads_per_fault" \
      "$(jq -r '([.faults[].reads_failed] | add) / (.faults | length)' "$report")"
    result "$kind.$mode.read_success" "$(jq -r '.read_success_ratio' "$report")"
    result "$kind.$mode.lost_writes" "$(jq -r '.lost_writes' "$report")"
    eval "gap_${mode}=$gap"
  done
  if [ -n "${gap_kernel:-}" ] && [ -n "${gap_userspace:-}" ]; then
    result "$kind.gap_kernel_over_userspace" "$(ratio "$gap_kernel" "$gap_userspace")"
  fi
  unset gap_kernel gap_userspace
done
log "reports in $OUT"
