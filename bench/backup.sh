#!/usr/bin/env bash
# bench/backup.sh — backups and point-in-time restore, each figure against a baseline measured in
# the same run (README "Backups and point-in-time restore").
#
# Usage:  bash bench/backup.sh          (about 15 min on 2 cores with the defaults, plus a build
#                                        when BUILD=1)
#
# What it measures (select with BENCHES, default "base restore rpo"):
#   base     A --replicas 2 cluster (--backup-keep 1, so each new base backup prunes the one
#            before) is loaded through rw with `sysbench oltp_read_write prepare` (TABLES x
#            TABLE_SIZE rows, ~1 GiB of InnoDB data with the defaults); once the archive holds
#            everything and the replica has caught up, both members' binlogs are purged (for disk
#            space only; a base backup does not read them). Then BASE_RUNS times, interleaved:
#              backup  `myset backup --name bk` until it returns (stream from the replica into the
#                      store, extract + prepare it to check it, manifest, prune). The upload part
#                      ends when the stream's object appears in the store (the directory store
#                      renames it into place once written), the check part when its
#                      manifest.json appears; both are seen by polling every 20 ms.
#              cp      `cp -a` of the same replica's whole data dir to the same filesystem, then
#                      `sync` (the files mariadb-backup copies, plus the replica's small binlog).
#            MB/s is the stream's bytes (the manifest's size) over the time, and the data dir's
#            bytes over the cp's time; MB = 10^6 bytes.
#   restore  (uses base's cluster) About ARCHIVE_MB of binlog is written through rw after the
#            newest base backup (`INSERT INTO sbtest.copy (k, c, pad) SELECT ... FROM sbtestN`
#            in chunks of CHUNK_ROWS rows, one transaction each), the script waits until
#            `status`'s archive last_gtid is the primary's @@gtid_binlog_pos, then:
#              restore `myset restore --from-cluster bk --name bkr --replicas 1` until it returns
#                      (Ready); the time up to its "starting cluster" line is the data dir build.
#              manual  the same restore by hand with the same tools and the same inputs: mbstream
#                      -x of the stored stream, mariadb-backup --prepare, a bare mariadbd on the
#                      result (socket only, the flags myset's restore uses), RESET MASTER + SET
#                      GLOBAL gtid_binlog_state = <base GTID>, `mariadb-binlog --start-position=
#                      <base GTID> <segments> | mariadb --binary-mode`, shutdown.
#              cp      `cp` of the stored stream and the segments to the same filesystem + `sync`:
#                      the bytes a restore has to read, as a floor.
#            Both restores are checked: sbtest.copy has every row the source has.
#   rpo      RPO_RUNS times: a fresh --replicas RPO_REPLICAS cluster, a table, a base backup; a
#            steady writer through rw (one `mariadb` client reading `INSERT INTO rpo.w VALUES
#            (n, NOW(6)); SELECT n, UNIX_TIMESTAMP(NOW(6));` from a pipe: one autocommit insert
#            per transaction, and the server's clock just after each insert's OK reached the
#            client, i.e. an upper bound of its acknowledgement time); after RPO_WRITE_SECONDS,
#            SIGKILL of every process whose command line names the state dir (the kill time is
#            taken just before the first signal); `myset destroy`; `myset restore --from-cluster`;
#            then RPO = kill time - acknowledgement time of the oldest acknowledged write missing
#            from the restore (0 if none is missing), and the lag of the newest acknowledged write
#            present (kill time - its acknowledgement). Target: RPO under 1 s. Each run also
#            reports when the last archive segment was stored before the kill and the longest
#            interval between two stored segments while writing (the segment files' mtimes).
#
# Output: progress on stderr ("# hh:mm:ss ..."), results on stdout as `RESULT key=value`.
# Knobs: MYSET=<repo>/target/release/myset  BUILD=0  BENCHES="base restore rpo"  PORT_BASE=25500
#        TABLES=8 TABLE_SIZE=550000 LOAD_THREADS=2  BASE_RUNS=3  ARCHIVE_MB=200 CHUNK_ROWS=10000
#        RPO_RUNS=10 RPO_REPLICAS=2 RPO_WRITE_SECONDS=5  DROP_CACHES=auto|1|0  TIMEOUT=900
#        MIN_FREE_GIB=10  KEEP_LOGS=DIR (copy the clusters' logs there on failure, and those of an
#        rpo run whose RPO is over RPO_KEEP_ABOVE=0.3 s, with its segments' store times and acks)
# Needs: jq, sysbench, mariadb, mariadb-binlog, mariadb-backup, mbstream, mariadbd, mariadb-admin.
# Uses ports PORT_BASE+1..+9 on 127.0.0.1 and its own state dir (/tmp/bench-backup-XXXXXX); on
# exit, success or failure, destroys its clusters (--delete-backups), stops its writer and bare
# mariadbd, and deletes the state dir and copies.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MYSET="${MYSET:-$here/target/release/myset}"
BUILD="${BUILD:-0}"
BENCHES="${BENCHES:-base restore rpo}"
PORT_BASE="${PORT_BASE:-25500}"
TABLES="${TABLES:-8}"
TABLE_SIZE="${TABLE_SIZE:-550000}"
LOAD_THREADS="${LOAD_THREADS:-2}"
BASE_RUNS="${BASE_RUNS:-3}"
ARCHIVE_MB="${ARCHIVE_MB:-200}"
CHUNK_ROWS="${CHUNK_ROWS:-10000}"
RPO_RUNS="${RPO_RUNS:-10}"
RPO_REPLICAS="${RPO_REPLICAS:-2}"
RPO_WRITE_SECONDS="${RPO_WRITE_SECONDS:-5}"
RPO_KEEP_ABOVE="${RPO_KEEP_ABOVE:-0.3}"
DROP_CACHES="${DROP_CACHES:-auto}"
TIMEOUT="${TIMEOUT:-900}"
MIN_FREE_GIB="${MIN_FREE_GIB:-10}"
KEEP_LOGS="${KEEP_LOGS:-}"
BK_RW=$((PORT_BASE + 1)) BK_RO=$((PORT_BASE + 2))
BKR_RW=$((PORT_BASE + 3)) BKR_RO=$((PORT_BASE + 4))
RPO_RW=$((PORT_BASE + 5)) RPO_RO=$((PORT_BASE + 6))
RPOR_RW=$((PORT_BASE + 7)) RPOR_RO=$((PORT_BASE + 8))

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
now() { echo "$EPOCHREALTIME"; }
mbps() { awk -v n="$1" -v s="$2" 'BEGIN { if (s == 0) print "nan"; else printf "%.1f", n / s / 1e6 }'; }
maximum() { printf '%s\n' "$@" | sort -g | tail -1; }
wants() { [[ " $BENCHES " == *" $1 "* ]]; }
port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }

if [[ $BUILD == 1 ]]; then
  (cd "$here" && cargo build --release -p myset-cli) >&2
fi
[[ -x $MYSET ]] || die "no myset binary at $MYSET (build it, or set MYSET)"
for tool in jq sysbench mariadb mariadb-admin mariadb-binlog mariadb-backup mbstream mariadbd ss; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done
for p in $(seq $((PORT_BASE + 1)) $((PORT_BASE + 9))); do
  port_free "$p" || die "port $p is in use on 127.0.0.1: pick another PORT_BASE"
done
free_gib=$(df -BG --output=avail /tmp | tail -1 | tr -dc 0-9)
((free_gib >= MIN_FREE_GIB)) || die "only ${free_gib} GiB free under /tmp; the run needs about $MIN_FREE_GIB GiB (MIN_FREE_GIB)"

STATE="$(mktemp -d /tmp/bench-backup-XXXXXX)"
WORK="$STATE/.work"   # not a cluster name: myset never looks at it
mkdir -p "$WORK"
WRITER_PID="" BARE_PID="" POLL_PID=""

# SIGKILLs every process whose command line names the state dir, until none is left. KILLED_AT
# is the time just before the first signal, KILLED_PIDS how many processes the first round hit.
KILLED_AT="" KILLED_PIDS=0
kill_all() {
  local left tries=0
  KILLED_AT=""
  while left=$(pgrep -f -- "$STATE/" || true) && [[ -n $left ]]; do
    [[ -n $KILLED_AT ]] || KILLED_AT=$EPOCHREALTIME
    # shellcheck disable=SC2086
    kill -9 $left 2>/dev/null || true
    ((tries > 0)) || KILLED_PIDS=$(wc -w <<<"$left")
    tries=$((tries + 1))
    ((tries < 200)) || return 1
    sleep 0.01
  done
}
stop_writer() {
  [[ -n $WRITER_PID ]] || return 0
  pkill -P "$WRITER_PID" 2>/dev/null || true
  kill "$WRITER_PID" 2>/dev/null || true
  wait "$WRITER_PID" 2>/dev/null || true
  WRITER_PID=""
}
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  [[ -n $POLL_PID ]] && kill "$POLL_PID" 2>/dev/null && wait "$POLL_PID" 2>/dev/null
  stop_writer
  if [[ -n $BARE_PID ]]; then kill "$BARE_PID" 2>/dev/null; wait "$BARE_PID" 2>/dev/null; fi
  if [[ -n $KEEP_LOGS && $rc != 0 ]]; then
    mkdir -p "$KEEP_LOGS"
    (cd "$STATE" && find . \( -name data -o -name 'data.*' -o -name '.work' -o -name base -o -name archive \) -prune -o \
      -type f \( -name '*.log' -o -name '*.err' -o -name events.jsonl -o -name cluster.json \) -print |
      while read -r f; do mkdir -p "$KEEP_LOGS/$(dirname "$f")"; cp "$f" "$KEEP_LOGS/$f"; done)
    log "logs copied to $KEEP_LOGS"
  fi
  for c in "$STATE"/*/; do
    [[ -f $c/cluster.json ]] || continue
    "$MYSET" --state-dir "$STATE" destroy --name "$(basename "$c")" --delete-backups >/dev/null 2>&1 ||
      log "WARNING: myset destroy --name $(basename "$c") failed"
  done
  local left
  left=$(pgrep -f -- "$STATE/" || true)
  [[ -n $left ]] && { log "processes left under $STATE: $(echo $left); killing them"; for p in $left; do kill -9 "$p"; done; }
  rm -rf "$STATE"
  ((rc != 0)) && log "exit status $rc"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ $DROP_CACHES == auto ]]; then
  if sync && (echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then DROP_CACHES=1; else DROP_CACHES=0; fi
fi
drop_caches() { if [[ $DROP_CACHES == 1 ]]; then sync; echo 3 >/proc/sys/vm/drop_caches; fi; }

m() { "$MYSET" --state-dir "$STATE" "$@"; }
status_json() { m status --name "$1" -o json; }
password() { cat "$(status_json "$1" | jq -r .credentials.password_file)"; }
# sql PORT PASSWORD STATEMENTS
sql() { MYSQL_PWD="$2" mariadb --no-defaults -h 127.0.0.1 -P "$1" -u myset -N -B -e "$3"; }
# An instance's own admin connection, over its socket.
admin() { mariadb --defaults-file="$STATE/$1/instances/$1-$2/run/my.cnf" -N -B -e "$3"; }
# Waits until the archive of cluster $1 (rw port $2, password $3) holds the primary's whole binlog.
wait_archive() {
  local want got
  for _ in $(seq 1 $((TIMEOUT * 5))); do
    want=$(sql "$2" "$3" "SELECT @@gtid_binlog_pos")
    got=$(status_json "$1" | jq -r '.backup.archive.last_gtid // ""')
    [[ -n $want && $got == "$want" ]] && { echo "$want"; return 0; }
    sleep 0.2
  done
  die "the archive of $1 did not reach $want (last_gtid $got): $(status_json "$1" | jq -c .backup)"
}
# Archive segments with a last sequence number above $2, in store $1, in order.
segments_after() {
  find "$1/archive" -name '*.binlog' 2>/dev/null | sort | while read -r f; do
    local b last
    b=$(basename "$f")
    last=${b%%_*}
    last=$((10#${last#*-}))
    ((last > $2)) && echo "$f"
  done
  return 0
}
bytes_of() { if (($# == 0)); then echo 0; else stat -c %s -- "$@" | awk '{ s += $1 } END { print s + 0 }'; fi; }

result date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
result machine_nproc "$(nproc)"
result machine_cpu "\"$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)\""
result mariadb_version "$(mariadbd --version | awk '{ print $3 }')"
result myset_git "$(cd "$here" && git rev-parse --short HEAD)$(cd "$here" && [[ -n $(git status --porcelain -- crates) ]] && echo -dirty)"
result myset_binary "\"$(stat -c '%y' "$MYSET" | cut -d. -f1) sha256:$(sha256sum "$MYSET" | cut -c1-12)\""
result drop_caches "$DROP_CACHES"
result loadavg_start "\"$(cut -d' ' -f1-3 /proc/loadavg)\""

# ---------------------------------------------------------------- base and restore

if wants base || wants restore; then
  STORE="$STATE/backups/bk"
  log "up: bk, 2 instances, --backup-keep 1"
  m up --name bk --replicas 2 --rw-port "$BK_RW" --ro-port "$BK_RO" --backup-keep 1 --timeout "$TIMEOUT" >"$WORK/up.out" 2>&1 ||
    { cat "$WORK/up.out" >&2; die "myset up"; }
  PASS=$(password bk)
  sql "$BK_RW" "$PASS" "CREATE DATABASE sbtest"
  log "loading $TABLES x $TABLE_SIZE rows through rw (sysbench oltp_read_write prepare, $LOAD_THREADS threads)"
  t0=$(now)
  sysbench oltp_read_write --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$BK_RW" --mysql-user=myset \
    --mysql-password="$PASS" --mysql-db=sbtest --tables="$TABLES" --table-size="$TABLE_SIZE" \
    --threads="$LOAD_THREADS" prepare >"$WORK/prepare.log" 2>&1 || { tail -20 "$WORK/prepare.log" >&2; die "sysbench prepare"; }
  result load_seconds "$(elapsed "$t0" "$(now)")"
  log "waiting for the archive and the replica to catch up, and the writes to settle"
  t0=$(now)
  pos=$(wait_archive bk "$BK_RW" "$PASS")
  still=0 last=""
  for _ in $(seq 1 300); do
    caught=$(admin bk 1 "SELECT @@gtid_slave_pos")
    written=$(admin bk 1 "SHOW GLOBAL STATUS LIKE 'Innodb_data_written'" | cut -f2)
    if [[ $caught == "$pos" && $written == "$last" ]]; then still=$((still + 1)); else still=0; fi
    ((still >= 3)) && break
    last=$written
    sleep 1
  done
  result settle_seconds "$(elapsed "$t0" "$(now)")"
  result load_gtid "$pos"
  result load_archive_bytes "$(du -sb "$STORE/archive" | cut -f1)"
  # The load wrote ~1.6 GiB of ROW binlog on each member; it is archived, and a base backup
  # does not read binlogs: purge them so that the copies fit on the disk.
  for o in 0 1; do
    admin bk "$o" "FLUSH BINARY LOGS; PURGE BINARY LOGS BEFORE NOW() + INTERVAL 1 DAY" 2>&1 | grep -v '^Warning' >&2 || true
  done
  sync
  src="$STATE/bk/instances/bk-1/data"
  result replica_datadir_bytes "$(du -sb "$src" | cut -f1)"
  result replica_sbtest_bytes "$(du -sb "$src/sbtest" | cut -f1)"

  runs=$BASE_RUNS
  wants base || runs=1
  backups=() uploads=() checks=() cps=() cpsyncs=() sizes=()
  for ((i = 1; i <= runs; i++)); do
    log "base run $i/$runs: myset backup --name bk"
    before=$({ find "$STORE/base" -name backup.xbstream 2>/dev/null || true; } | sort | tr '\n' ' ')
    drop_caches
    # Polls the store: when the new stream object appears (upload done), when its manifest does.
    (
      up="" mf=""
      while :; do
        for f in "$STORE"/base/*/backup.xbstream; do
          [[ -e $f && " $before " != *" $f "* ]] || continue
          [[ -z $up ]] && { up=$EPOCHREALTIME; echo "upload $up $f"; }
          [[ -z $mf && -e $(dirname "$f")/manifest.json ]] && { mf=$EPOCHREALTIME; echo "manifest $mf"; }
        done
        [[ -n $up && -n $mf ]] && break
        sleep 0.02
      done
    ) >"$WORK/poll" &
    POLL_PID=$!
    t0=$(now)
    m backup --name bk >"$WORK/backup.out" 2>"$WORK/backup.err" || { cat "$WORK/backup.err" >&2; die "myset backup"; }
    t1=$(now)
    sleep 0.2
    kill "$POLL_PID" 2>/dev/null || true
    wait "$POLL_PID" 2>/dev/null || true
    POLL_PID=""
    id=$(cat "$WORK/backup.out")
    size=$(jq -r .stream.size "$STORE/base/$id/manifest.json")
    src_ord=$(jq -r .source_ordinal "$STORE/base/$id/manifest.json")
    [[ $src_ord == 1 ]] || log "WARNING: backup $id was read from member $src_ord, not bk-1"
    t_up=$(awk '$1 == "upload" { print $2 }' "$WORK/poll")
    t_mf=$(awk '$1 == "manifest" { print $2 }' "$WORK/poll")
    backups+=("$(elapsed "$t0" "$t1")")
    uploads+=("$(elapsed "$t0" "${t_up:-$t1}")")
    checks+=("$(elapsed "${t_up:-$t0}" "${t_mf:-$t1}")")
    sizes+=("$size")
    result "backup_run$i" "\"id $id from bk-$src_ord, $size bytes, total ${backups[-1]} s, upload ${uploads[-1]} s, check ${checks[-1]} s, manifest->return $(elapsed "${t_mf:-$t1}" "$t1") s, $(mbps "$size" "${backups[-1]}") MB/s\""

    log "base run $i/$runs: cp -a of bk-1's data dir"
    rm -rf "$WORK/copy"
    bytes=$(du -sb "$src" | cut -f1)
    drop_caches
    t0=$(now)
    cp -a "$src" "$WORK/copy"
    t1=$(now)
    sync
    t2=$(now)
    cps+=("$(elapsed "$t0" "$t2")")
    cpsyncs+=("$(elapsed "$t0" "$t1")")
    result "cp_run$i" "\"$bytes bytes, ${cps[-1]} s with sync (${cpsyncs[-1]} s before it), $(mbps "$bytes" "${cps[-1]}") MB/s\""
    rm -rf "$WORK/copy"
  done
  if wants base; then
    b=$(median "${backups[@]}") u=$(median "${uploads[@]}") c=$(median "${checks[@]}") p=$(median "${cps[@]}")
    s=$(median "${sizes[@]}")
    result backup_seconds_median "$b"
    result backup_upload_seconds_median "$u"
    result backup_check_seconds_median "$c"
    result backup_stream_bytes_median "$s"
    result backup_mb_per_s "$(mbps "$s" "$b")"
    result backup_upload_mb_per_s "$(mbps "$s" "$u")"
    result cp_seconds_median "$p"
    result cp_mb_per_s "$(mbps "$bytes" "$p")"
    result backup_over_cp_ratio "$(ratio "$b" "$p")"
    result backup_upload_over_cp_ratio "$(ratio "$u" "$p")"
  fi
fi

if wants restore; then
  manifest=$(ls -d "$STORE"/base/*/manifest.json | sort | tail -1)
  base_id=$(jq -r .id "$manifest")
  base_gtid=$(jq -r .gtid "$manifest")
  base_seq=${base_gtid##*-}
  stream="$STORE/base/$base_id/backup.xbstream"
  log "restore: writing ~$ARCHIVE_MB MB of binlog through rw after base backup $base_id (GTID $base_gtid)"
  sql "$BK_RW" "$PASS" "CREATE TABLE sbtest.copy LIKE sbtest.sbtest1"
  want=$((ARCHIVE_MB * 1000000))
  t0=$(now) chunk=0
  while :; do
    mapfile -t segs < <(segments_after "$STORE" "$base_seq")
    (($(bytes_of "${segs[@]}") >= want)) && break
    stmts=""
    for ((k = 0; k < 10; k++)); do
      tab=$((chunk % TABLES + 1)) from=$(((chunk / TABLES) * CHUNK_ROWS % TABLE_SIZE + 1))
      stmts+="INSERT INTO sbtest.copy (k, c, pad) SELECT k, c, pad FROM sbtest.sbtest$tab WHERE id BETWEEN $from AND $((from + CHUNK_ROWS - 1));"
      chunk=$((chunk + 1))
    done
    sql "$BK_RW" "$PASS" "$stmts"
    sleep 0.5
  done
  pos=$(wait_archive bk "$BK_RW" "$PASS")
  mapfile -t segs < <(segments_after "$STORE" "$base_seq")
  expect=$(sql "$BK_RW" "$PASS" "SELECT COUNT(*) FROM sbtest.copy")
  result restore_write_seconds "$(elapsed "$t0" "$(now)")"
  result restore_base_id "$base_id"
  result restore_base_gtid "$base_gtid"
  result restore_base_stream_bytes "$(stat -c %s "$stream")"
  result restore_archive_gtid "$pos"
  result restore_archive_segments "${#segs[@]}"
  result restore_archive_bytes "$(bytes_of "${segs[@]}")"
  result restore_archive_transactions "$((${pos##*-} - base_seq))"
  result restore_copy_rows "$expect"

  log "restore: myset restore --from-cluster bk --name bkr --replicas 1"
  drop_caches
  t0=$(now)
  rc=0
  m restore --from-cluster bk --name bkr --replicas 1 --rw-port "$BKR_RW" --ro-port "$BKR_RO" --timeout "$TIMEOUT" 2>&1 |
    while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done >"$WORK/restore.out" || rc=$?
  t1=$(now)
  ((rc == 0)) || { cat "$WORK/restore.out" >&2; die "myset restore"; }
  t_built=$(awk '/starting cluster/ { print $1; exit }' "$WORK/restore.out")
  restore_s=$(elapsed "$t0" "$t1")
  result restore_seconds "$restore_s"
  result restore_build_seconds "$(elapsed "$t0" "${t_built:-$t1}")"
  result restore_start_seconds "$(elapsed "${t_built:-$t0}" "$t1")"
  got=$(sql "$BKR_RW" "$(password bkr)" "SELECT COUNT(*) FROM sbtest.copy")
  [[ $got == "$expect" ]] || die "the restored sbtest.copy has $got rows, bk has $expect"
  got_gtid=$(sql "$BKR_RW" "$(password bkr)" "SELECT @@gtid_binlog_pos")
  result restore_restored_gtid "$got_gtid"
  m destroy --name bkr --delete-backups >/dev/null

  log "restore baseline: the same restore by hand (mbstream -x, prepare, mariadbd, mariadb-binlog | mariadb)"
  man="$WORK/manual"
  rm -rf "$man"
  mkdir -p "$man/data"
  drop_caches
  t0=$(now)
  mbstream -x -C "$man/data" <"$stream"
  t_x=$(now)
  mariadb-backup --prepare --target-dir="$man/data" >"$man/prepare.log" 2>&1 || { tail "$man/prepare.log" >&2; die "prepare"; }
  t_p=$(now)
  user=()
  [[ $(id -u) == 0 ]] && user=(--user=root)
  mariadbd --no-defaults --datadir="$man/data" --socket="$man/sock" --pid-file="$man/pid" --log-error="$man/err" \
    --skip-networking --skip-grant-tables --skip-slave-start --server-id=1 --log-bin=mysql-bin --binlog-format=ROW \
    --gtid-strict-mode=ON --sync-binlog=0 --innodb-flush-log-at-trx-commit=2 "${user[@]}" >/dev/null 2>&1 &
  BARE_PID=$!
  for _ in $(seq 1 3000); do mariadb-admin --no-defaults --socket="$man/sock" -uroot ping >/dev/null 2>&1 && break; sleep 0.1; done
  t_s=$(now)
  mariadb --no-defaults --socket="$man/sock" -uroot -e "RESET MASTER; SET GLOBAL gtid_binlog_state = '$base_gtid'"
  mariadb-binlog --start-position="$base_gtid" "${segs[@]}" | mariadb --no-defaults --socket="$man/sock" -uroot --binary-mode
  t_r=$(now)
  got=$(mariadb --no-defaults --socket="$man/sock" -uroot -N -B -e "SELECT COUNT(*) FROM sbtest.copy")
  mariadb-admin --no-defaults --socket="$man/sock" -uroot shutdown
  wait "$BARE_PID" || true
  BARE_PID=""
  t_e=$(now)
  [[ $got == "$expect" ]] || die "the manual restore's sbtest.copy has $got rows, bk has $expect"
  manual_s=$(elapsed "$t0" "$t_e")
  result manual_restore_seconds "$manual_s"
  result manual_restore_parts "\"extract $(elapsed "$t0" "$t_x") s, prepare $(elapsed "$t_x" "$t_p") s, start $(elapsed "$t_p" "$t_s") s, replay $(elapsed "$t_s" "$t_r") s, shutdown $(elapsed "$t_r" "$t_e") s\""
  rm -rf "$man"

  log "restore floor: cp of the stream and the segments + sync"
  mkdir -p "$WORK/cp"
  drop_caches
  t0=$(now)
  cp "$stream" "${segs[@]}" "$WORK/cp/"
  sync
  cp_s=$(elapsed "$t0" "$(now)")
  result restore_cp_seconds "$cp_s"
  rm -rf "$WORK/cp"
  result restore_over_manual_ratio "$(ratio "$restore_s" "$manual_s")"
  result restore_over_cp_ratio "$(ratio "$restore_s" "$cp_s")"
  result manual_over_cp_ratio "$(ratio "$manual_s" "$cp_s")"
fi

if wants base || wants restore; then
  log "destroying bk"
  m destroy --name bk --delete-backups >/dev/null
fi

# ---------------------------------------------------------------- rpo

if wants rpo; then
  rpos=() lags=() restores=()
  for ((i = 1; i <= RPO_RUNS; i++)); do
    name="rpo$i"
    log "rpo run $i/$RPO_RUNS: up $name ($RPO_REPLICAS instances), base backup"
    m up --name "$name" --replicas "$RPO_REPLICAS" --rw-port "$RPO_RW" --ro-port "$RPO_RO" --timeout "$TIMEOUT" >"$WORK/up.out" 2>&1 ||
      { cat "$WORK/up.out" >&2; die "myset up $name"; }
    pass=$(password "$name")
    sql "$RPO_RW" "$pass" "CREATE DATABASE rpo; CREATE TABLE rpo.w (id INT PRIMARY KEY, at DATETIME(6))"
    m backup --name "$name" >/dev/null 2>"$WORK/backup.err" || { cat "$WORK/backup.err" >&2; die "myset backup $name"; }
    acks="$WORK/acks$i"
    : >"$acks"
    (
      seq 1 100000000 | awk '{ printf "INSERT INTO rpo.w VALUES (%d, NOW(6)); SELECT %d, UNIX_TIMESTAMP(NOW(6));\n", $1, $1 }' |
        MYSQL_PWD="$pass" mariadb --no-defaults -h 127.0.0.1 -P "$RPO_RW" -u myset -N -B --unbuffered 2>"$WORK/writer.err" |
        while IFS=$'\t' read -r n at; do printf '%s %s %s\n' "$n" "$at" "$EPOCHREALTIME"; done >"$acks"
    ) &
    WRITER_PID=$!
    log "rpo run $i/$RPO_RUNS: writing for $RPO_WRITE_SECONDS s, then SIGKILL of every process of $name"
    writing_from=$(now)
    sleep "$RPO_WRITE_SECONDS"
    [[ -s $acks ]] || die "the writer got no acknowledgement: $(cat "$WORK/writer.err")"
    kill_all || die "processes of $name survived SIGKILL"
    killed_at=$KILLED_AT
    for _ in $(seq 1 100); do kill -0 "$WRITER_PID" 2>/dev/null || break; sleep 0.1; done
    stop_writer
    # When each archive segment was stored (its file's mtime in the directory store): the last
    # one before the kill, and the longest interval between two during the writing.
    read -r seg_last seg_gap < <(find "$STATE/backups/$name/archive" -name '*.binlog' -printf '%T@\n' | sort -g |
      awk -v kill="$killed_at" -v from="$writing_from" '$1 >= from { if (prev != "" && $1 - prev > gap) gap = $1 - prev; prev = $1 }
        END { printf "%.3f %.3f\n", (prev == "" ? -1 : kill - prev), gap }')
    if [[ -n $KEEP_LOGS ]]; then
      rm -rf "$WORK/logs"
      mkdir -p "$WORK/logs"
      (cd "$STATE/$name" && find . -name data -prune -o -type f \( -name '*.log' -o -name events.jsonl \) -print |
        while read -r f; do mkdir -p "$WORK/logs/$(dirname "$f")"; cp "$f" "$WORK/logs/$f"; done)
      find "$STATE/backups/$name/archive" -name '*.binlog' -printf '%T@ %s %f\n' | sort -g >"$WORK/logs/segments.txt"
      cp "$acks" "$WORK/logs/acks.txt"
      echo "$killed_at" >"$WORK/logs/killed_at"
    fi
    m destroy --name "$name" >/dev/null 2>"$WORK/destroy.err" || { cat "$WORK/destroy.err" >&2; die "myset destroy $name"; }
    log "rpo run $i/$RPO_RUNS: myset restore --from-cluster $name --name ${name}r"
    t0=$(now)
    m restore --from-cluster "$name" --name "${name}r" --replicas 1 --rw-port "$RPOR_RW" --ro-port "$RPOR_RO" --timeout "$TIMEOUT" \
      >"$WORK/restore.out" 2>&1 || { cat "$WORK/restore.out" >&2; die "myset restore $name"; }
    restore_s=$(elapsed "$t0" "$(now)")
    restores+=("$restore_s")
    sql "$RPOR_RW" "$(password "${name}r")" "SELECT id FROM rpo.w" >"$WORK/restored$i"
    m destroy --name "${name}r" --delete-backups >/dev/null
    rm -rf "$STATE/backups/$name"
    # acks: id, server time just after the ack, the writer's time on reading it.
    read -r rpo lag acked missing extra lastack maxskew < <(awk -v kill="$killed_at" '
      NR == FNR { have[$1] = 1; nhave++; next }
      {
        acked++; last = $1; ack[$1] = $2
        if ($3 - $2 > skew) skew = $3 - $2
        if (!($1 in have)) { missing++; if (oldest == "" || $2 < oldest) oldest = $2 }
        else if ($2 > newest) newest = $2
      }
      END {
        extra = 0
        for (id in have) if (!(id in ack)) extra++
        printf "%.3f %.3f %d %d %d %.3f %.3f\n", (missing ? kill - oldest : 0), (newest ? kill - newest : -1), acked, missing, extra, kill - ack[last], skew
      }' "$WORK/restored$i" "$acks")
    rpos+=("$rpo") lags+=("$lag")
    result "rpo_run$i" "\"rpo $rpo s; acknowledged $acked, missing $missing, restored but unacknowledged $extra; newest present acknowledged $lag s before the kill; last ack $lastack s before the kill; $KILLED_PIDS processes killed; last archive segment stored $seg_last s before the kill, longest interval between segments while writing $seg_gap s; restore $restore_s s; writer read lag max $maxskew s\""
    if [[ -n $KEEP_LOGS ]] && awk -v r="$rpo" -v t="$RPO_KEEP_ABOVE" 'BEGIN { exit !(r > t) }'; then
      mkdir -p "$KEEP_LOGS"
      rm -rf "$KEEP_LOGS/$name"
      mv "$WORK/logs" "$KEEP_LOGS/$name"
      log "rpo run $i: RPO $rpo s is over $RPO_KEEP_ABOVE s: its logs are in $KEEP_LOGS/$name"
    fi
    rm -f "$acks" "$WORK/restored$i"
  done
  result rpo_seconds_median "$(median "${rpos[@]}")"
  result rpo_seconds_max "$(maximum "${rpos[@]}")"
  result rpo_newest_present_lag_median "$(median "${lags[@]}")"
  result rpo_newest_present_lag_max "$(maximum "${lags[@]}")"
  result rpo_restore_seconds_median "$(median "${restores[@]}")"
  result rpo_runs_under_1s "$(printf '%s\n' "${rpos[@]}" | awk '$1 < 1 { n++ } END { print n + 0 }')/$RPO_RUNS"
fi
result loadavg_end "\"$(cut -d' ' -f1-3 /proc/loadavg)\""
log "done"
