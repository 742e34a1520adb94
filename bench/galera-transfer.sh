#!/usr/bin/env bash
# bench/galera-transfer.sh — Galera state transfer of a member holding ~1 GiB (issue 8): IST
# against SST, each against a plain copy of the same data dir measured in the same run.
#
# Usage:  bash bench/galera-transfer.sh        (about 15-20 min on 2 cores with the defaults)
#
# A 3-member Galera cluster is loaded through rw with `sysbench oltp_read_write prepare`
# (TABLES x TABLE_SIZE rows, ~1 GiB of InnoDB data with the defaults). Then, RUNS times:
#   sst   `myset scale --replicas 4` with no data dir for the new member: its agent creates an
#         empty data dir and Galera fills it by SST (mariabackup, from a donor), until `scale`
#         returns with the member Ready (Synced, Primary). Checked in its server log: an SST ran.
#   (untimed) `myset scale --replicas 3`: the member leaves gracefully, its data dir kept; then
#         `sysbench oltp_write_only --events=IST_EVENTS` through rw while it is away.
#   ist   `myset scale --replicas 4` again: the member restarts from its own data and receives
#         the writesets it missed by IST, until `scale` returns with it Ready. Checked in its
#         server log: an IST was received and no SST ran.
#   kill  (KILL=1) 200 more write transactions, then `myset kill 3` (SIGKILL of the member's
#         agent and server; the controller starts it again from its own data), until it is
#         Ready again; reported with the kind of transfer its log shows (sst or ist).
#   (untimed) `myset scale --replicas 3 --delete-data`, so the next sst starts from nothing.
#   cp    baselines: `cp -a` + `sync` of member 0's whole data dir (its binlogs purged after the
#         load), and of the same data dir without its binlogs (mysql-bin.*) and gcache
#         (galera.cache), the files an SST moves.
# The page cache is dropped before every timed step when /proc/sys/vm/drop_caches is writable.
#
# Knobs: MYSET=<repo>/target/release/myset  BUILD=0  RUNS=3  TABLES=8  TABLE_SIZE=550000
#        LOAD_THREADS=2  IST_EVENTS=4000  KILL=1  PORT_BASE=24400  TIMEOUT=900  MIN_FREE_GIB=10
#        KEEP_LOGS=DIR (copy the cluster's logs and events there on exit)
# Prints `RESULT key=value` lines on stdout, progress on stderr; destroys its cluster and
# deletes its state dir and copies on exit, success or failure.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
MYSET="${MYSET:-$here/target/release/myset}"
BUILD="${BUILD:-0}"
RUNS="${RUNS:-3}"
TABLES="${TABLES:-8}"
TABLE_SIZE="${TABLE_SIZE:-550000}"
LOAD_THREADS="${LOAD_THREADS:-2}"
IST_EVENTS="${IST_EVENTS:-4000}"
KILL="${KILL:-1}"
MIN_FREE_GIB="${MIN_FREE_GIB:-10}"
KEEP_LOGS="${KEEP_LOGS:-}"
PORT_BASE="${PORT_BASE:-24400}"
TIMEOUT="${TIMEOUT:-900}"
NAME=gt
RW=$((PORT_BASE + 1)) RO=$((PORT_BASE + 2))

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# A transfer of the wrong kind is reported with the joiner's WSREP lines about transfers.
warn() {
  log "WARNING: $*"
  result warning "\"$*\""
  grep -E "SST|IST|sst|ist" "$STATE/$NAME/instances/$NAME-3/logs/mariadbd.log" 2>/dev/null | grep WSREP | tail -15 >&2 || true
}

if [[ $BUILD == 1 ]]; then
  (cd "$here" && cargo build --release -p myset-cli) >&2
fi
[[ -x $MYSET ]] || die "no myset binary at $MYSET (build it, or set MYSET)"
for tool in jq mariadb sysbench; do command -v "$tool" >/dev/null || die "$tool is not installed"; done

# Three members of ~3 GiB each while loading (InnoDB, ROW binlogs, a 256 MiB gcache); then,
# binlogs purged, four of ~1.5 GiB and one copy.
free_gib=$(df -BG --output=avail /tmp | tail -1 | tr -dc 0-9)
((free_gib >= MIN_FREE_GIB)) || die "only ${free_gib} GiB free under /tmp; the run needs about $MIN_FREE_GIB GiB (MIN_FREE_GIB)"
STATE="$(mktemp -d /tmp/bench-galera-transfer-XXXXXX)"
WORK="$STATE/work"
mkdir -p "$WORK"
cleanup() {
  local rc=$?
  set +e
  if [[ -n $KEEP_LOGS ]]; then
    mkdir -p "$KEEP_LOGS"
    (cd "$STATE" && find . \( -name data -o -name data.init \) -prune -o -type f \( -name '*.log' -o -name events.jsonl \) -print |
      while read -r f; do mkdir -p "$KEEP_LOGS/$(dirname "$f")"; cp "$f" "$KEEP_LOGS/$f"; done)
  fi
  "$MYSET" --state-dir "$STATE" destroy --name "$NAME" >/dev/null 2>&1
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
status_json() { m status --name "$NAME" -o json; }
all_ready() { status_json | jq -e --argjson n "$1" '(.instances | length) == $n and all(.instances[]; .ready)' >/dev/null; }
port_of() { status_json | jq -r --argjson o "$1" '.instances[] | select(.ordinal == $o) | .port'; }
sql() { mariadb --no-defaults -h 127.0.0.1 -P "$1" -u myset -p"$PASS" -N -B -e "$2"; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
sb() { # workload action [extra...]
  local w=$1 a=$2
  shift 2
  sysbench "$w" --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$RW" --mysql-user=myset \
    --mysql-password="$PASS" --mysql-db=sbtest --tables="$TABLES" --table-size="$TABLE_SIZE" "$@" "$a"
}
# Transfers in the joiner's server log so far (0 0 when it has none): full copies (the
# mariabackup stream actually received: the joiner script prints this line only then; a
# joiner that gets IST alone also runs the script, which the donor bypasses) and IST receipts.
transfers() {
  local f="$STATE/$NAME/instances/$NAME-3/logs/mariadbd.log" s=0 i=0
  if [[ -f $f ]]; then
    s=$(grep -c "mariabackup SST completed on joiner" "$f" || true)
    i=$(grep -c "IST received" "$f" || true)
  fi
  echo "$s $i"
}
scale() { # replicas [--delete-data]
  m scale --name "$NAME" --replicas "$@" --timeout "$TIMEOUT" >"$WORK/scale.out" 2>&1 ||
    { cat "$WORK/scale.out" >&2; die "myset scale --replicas $*"; }
}
seqno() { sql "$RW" "SHOW GLOBAL STATUS LIKE 'wsrep_last_committed'" | cut -f2; }
# Member 3 holds what member 0 holds. (Not TABLES x TABLE_SIZE: Galera's auto-increment control
# spaced the prepared ids by the cluster size, so oltp_write_only's delete+insert of a random id
# in 1..TABLE_SIZE often adds a row.)
rows() {
  local port count=0 t
  port=$(port_of "$1")
  for ((t = 1; t <= TABLES; t++)); do count=$((count + $(sql "$port" "SELECT COUNT(*) FROM sbtest.sbtest$t"))); done
  echo "$count"
}
check_rows() {
  local a b
  a=$(rows 0) b=$(rows 3)
  [[ $a == "$b" ]] || die "member 3 has $b rows, member 0 has $a"
}

result date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
result machine_nproc "$(nproc)"
result myset_git "$(cd "$here" && git rev-parse --short HEAD)$(cd "$here" && [[ -n $(git status --porcelain -- crates) ]] && echo -dirty)"
result myset_binary "\"$(stat -c '%y' "$MYSET" | cut -d. -f1) sha256:$(sha256sum "$MYSET" | cut -c1-12)\""

log "up: 3-member galera cluster"
m up --name "$NAME" --topology galera --rw-port "$RW" --ro-port "$RO" --timeout "$TIMEOUT" >"$WORK/up.out" 2>&1 ||
  { cat "$WORK/up.out" >&2; die "myset up"; }
PASS=$(cat "$(status_json | jq -r .credentials.password_file)")
sql "$RW" "CREATE DATABASE sbtest"
log "loading $TABLES x $TABLE_SIZE rows (sysbench oltp_read_write prepare, $LOAD_THREADS threads)"
t0=$(now)
sb oltp_read_write prepare --threads="$LOAD_THREADS" >"$WORK/prepare.log" 2>&1 || { tail -20 "$WORK/prepare.log" >&2; die "sysbench prepare"; }
result load_seconds "$(elapsed "$t0" "$(now)")"

# Let every member finish applying and flushing before anything is timed: equal
# wsrep_last_committed everywhere and member 0's Innodb_data_written still for 3 s.
log "waiting for the members to settle"
t0=$(now)
still=0 last=""
for _ in $(seq 1 300); do
  seqs=$(for o in 0 1 2; do sql "$(port_of $o)" "SHOW GLOBAL STATUS LIKE 'wsrep_last_committed'" | cut -f2; done | sort -u | wc -l)
  written=$(sql "$(port_of 0)" "SHOW GLOBAL STATUS LIKE 'Innodb_data_written'" | cut -f2)
  if [[ $seqs == 1 && $written == "$last" ]]; then still=$((still + 1)); else still=0; fi
  ((still >= 3)) && break
  last=$written
  sleep 1
done
result settle_seconds "$(elapsed "$t0" "$(now)")"
# The load left ~1.6 GiB of ROW binlogs on every member, which no state transfer uses (IST comes
# from the gcache, SST copies InnoDB's files): purge them so that four members and a copy fit
# on the disk (over each member's socket, as its admin account: the user's account may not
# purge binlogs).
for o in 0 1 2; do
  mariadb --defaults-file="$STATE/$NAME/instances/$NAME-$o/run/my.cnf" \
    -e "FLUSH BINARY LOGS; PURGE BINARY LOGS BEFORE NOW() + INTERVAL 1 DAY" 2>&1 | grep -v '^Warning' >&2 || true
done
sync
data0="$STATE/$NAME/instances/$NAME-0/data"
total=$(du -sb "$data0" | cut -f1)
binlogs=$(find "$data0" -maxdepth 1 -name 'mysql-bin.*' -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
gcache=$(stat -c %s "$data0/galera.cache")
result rows "$(rows 0)"
result member0_datadir_bytes "$total"
result member0_sbtest_bytes "$(du -sb "$data0/sbtest" | cut -f1)"
result member0_binlog_bytes "$binlogs"
result member0_gcache_bytes "$gcache"
result member0_datadir_without_binlogs_gcache_bytes "$((total - binlogs - gcache))"


ssts=() ists=() fulls=() parts=() kills=()
for ((i = 1; i <= RUNS; i++)); do
  read -r s0 i0 <<<"$(transfers)"
  log "run $i/$RUNS: sst: myset scale --replicas 4 (new member, no data)"
  drop_caches
  t0=$(now)
  scale 4
  ssts+=("$(elapsed "$t0" "$(now)")")
  all_ready 4 || die "scale returned without 4 Ready: $(status_json)"
  read -r s1 i1 <<<"$(transfers)"
  ((s1 > s0)) || warn "run $i: no SST line in member 3's log"
  result "sst_seconds_run$i" "${ssts[-1]}"
  result "sst_joiner_datadir_bytes_run$i" "$(du -sb "$STATE/$NAME/instances/$NAME-3/data" | cut -f1)"
  check_rows

  log "run $i/$RUNS: member 3 leaves (data kept); $IST_EVENTS oltp_write_only events through rw"
  scale 3
  before=$(seqno)
  sb oltp_write_only run --threads=4 --events="$IST_EVENTS" --time=0 >"$WORK/writes.log" 2>&1 || { tail -20 "$WORK/writes.log" >&2; die "sysbench oltp_write_only"; }
  result "ist_writesets_missed_run$i" "$(($(seqno) - before))"
  sleep 3

  log "run $i/$RUNS: ist: myset scale --replicas 4 (the member comes back with its data)"
  drop_caches
  t0=$(now)
  scale 4
  ists+=("$(elapsed "$t0" "$(now)")")
  all_ready 4 || die "scale returned without 4 Ready: $(status_json)"
  read -r s2 i2 <<<"$(transfers)"
  ((i2 > i1)) || warn "run $i: no 'IST received' line in member 3's log"
  ((s2 == s1)) || warn "run $i: the returning member ran an SST"
  result "ist_seconds_run$i" "${ists[-1]}"
  result "joiner_log_counts_run$i" "\"sst $s0->$s1->$s2 ist $i0->$i1->$i2\""
  check_rows

  if [[ $KILL == 1 ]]; then
    # A SIGKILL of the member (agent and server; the controller starts it again from its own
    # data) after a few writes: until it is Ready again, and which transfer it got.
    sb oltp_write_only run --threads=4 --events=200 --time=0 >"$WORK/writes.log" 2>&1 || die "sysbench oltp_write_only"
    old_pid=$(status_json | jq -r '.instances[] | select(.ordinal == 3) | .agent_pid')
    log "run $i/$RUNS: kill: myset kill 3, until it is Ready again"
    drop_caches
    t0=$(now)
    m kill --name "$NAME" 3 >/dev/null
    for _ in $(seq 1 $((TIMEOUT * 5))); do
      status_json | jq -e --argjson old "$old_pid" '(.instances | length) == 4 and all(.instances[]; .ready)
        and any(.instances[]; .ordinal == 3 and .agent_pid != null and .agent_pid != $old)' >/dev/null && break
      sleep 0.2
    done
    kills+=("$(elapsed "$t0" "$(now)")")
    all_ready 4 || die "member 3 did not come back after the kill"
    read -r s3 i3 <<<"$(transfers)"
    result "kill_rejoin_seconds_run$i" "${kills[-1]}"
    result "kill_rejoin_transfer_run$i" "$( ((s3 > s2)) && echo sst || echo ist)"
  fi

  log "run $i/$RUNS: member 3 removed with its data"
  scale 3 --delete-data
  for _ in $(seq 1 600); do [[ -e $STATE/$NAME/instances/$NAME-3/data ]] || break; sleep 0.1; done
  [[ -e $STATE/$NAME/instances/$NAME-3/data ]] && die "member 3's data dir was not deleted"

  log "run $i/$RUNS: cp -a of member 0's data dir"
  dst="$WORK/copy"
  rm -rf "$dst"
  drop_caches
  t0=$(now)
  cp -a "$data0" "$dst"
  sync
  fulls+=("$(elapsed "$t0" "$(now)")")
  result "cp_full_seconds_run$i" "${fulls[-1]}"
  rm -rf "$dst"
  mkdir "$dst"
  drop_caches
  t0=$(now)
  find "$data0" -mindepth 1 -maxdepth 1 ! -name 'mysql-bin.*' ! -name galera.cache -exec cp -a -t "$dst" {} +
  sync
  parts+=("$(elapsed "$t0" "$(now)")")
  result "cp_without_binlogs_gcache_seconds_run$i" "${parts[-1]}"
  rm -rf "$dst"
done

sst=$(median "${ssts[@]}") ist=$(median "${ists[@]}") full=$(median "${fulls[@]}") part=$(median "${parts[@]}")
result sst_seconds_median "$sst"
result ist_seconds_median "$ist"
result cp_full_seconds_median "$full"
result cp_without_binlogs_gcache_seconds_median "$part"
result ist_over_sst_ratio "$(ratio "$ist" "$sst")"
result sst_over_cp_full_ratio "$(ratio "$sst" "$full")"
result sst_over_cp_without_binlogs_gcache_ratio "$(ratio "$sst" "$part")"
result ist_over_cp_without_binlogs_gcache_ratio "$(ratio "$ist" "$part")"
if ((${#kills[@]})); then
  result kill_rejoin_seconds_median "$(median "${kills[@]}")"
  result kill_rejoin_over_ist_ratio "$(ratio "$(median "${kills[@]}")" "$ist")"
fi
