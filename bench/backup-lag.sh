#!/usr/bin/env bash
# bench/backup-lag.sh — the recovery point while the replica the archive reads is slow to apply.
#
# Usage:  bash bench/backup-lag.sh        (about 30 s)
#
# A --replicas 2 cluster, a table, a base backup; one `mariadb` client writes through rw as in
# bench/backup.sh's rpo part (one autocommit insert per transaction, each acknowledgement timed
# by the server just after it). After WRITE_BEFORE s, a session on the replica (its admin
# socket) holds `LOCK TABLES rpo.w READ`, so the replica's SQL thread waits while its IO thread
# keeps receiving (and acknowledging semi-sync commits). LOCKED s later the script prints
# `status` (readiness, GTID positions, the archive's source and how far behind it is), SIGKILLs
# every process of the cluster, destroys it, restores it, and prints how many acknowledged
# writes the restore lacks and the RPO (kill time - acknowledgement of the oldest one missing).
#
# Knobs: MYSET=<repo>/target/release/myset  PORT_BASE=25620 (uses +1..+4)  WRITE_BEFORE=2
#        LOCKED=3. Deletes its state dir (/tmp/bench-backup-lag-XXXXXX) on exit.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MYSET="${MYSET:-$here/target/release/myset}"
PORT_BASE="${PORT_BASE:-25620}"
WRITE_BEFORE="${WRITE_BEFORE:-2}"
LOCKED="${LOCKED:-3}"
RW=$((PORT_BASE + 1)) RO=$((PORT_BASE + 2)) RRW=$((PORT_BASE + 3)) RRO=$((PORT_BASE + 4))
S=$(mktemp -d /tmp/bench-backup-lag-XXXXXX)
W="" L=""
cleanup() {
  set +e
  [[ -n $W ]] && { pkill -P "$W"; kill "$W"; wait "$W"; } 2>/dev/null
  [[ -n $L ]] && { kill "$L"; wait "$L"; } 2>/dev/null
  for c in lag lagr; do "$MYSET" --state-dir "$S" destroy --name "$c" --delete-backups >/dev/null 2>&1; done
  left=$(pgrep -f -- "$S/")
  [[ -n $left ]] && kill -9 $left
  rm -rf "$S"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
m() { "$MYSET" --state-dir "$S" "$@"; }
password() { cat "$(m status --name "$1" -o json | jq -r .credentials.password_file)"; }

m up --name lag --replicas 2 --rw-port "$RW" --ro-port "$RO" >/dev/null
P=$(password lag)
MYSQL_PWD=$P mariadb --no-defaults -h127.0.0.1 -P"$RW" -umyset -e "CREATE DATABASE rpo; CREATE TABLE rpo.w (id INT PRIMARY KEY, at DATETIME(6))"
m backup --name lag >/dev/null 2>&1
(
  seq 1 100000000 | awk '{ printf "INSERT INTO rpo.w VALUES (%d, NOW(6)); SELECT %d, UNIX_TIMESTAMP(NOW(6));\n", $1, $1 }' |
    MYSQL_PWD="$P" mariadb --no-defaults -h 127.0.0.1 -P "$RW" -u myset -N -B --unbuffered 2>/dev/null |
    while IFS=$'\t' read -r n at; do echo "$n $at"; done >"$S/acks"
) &
W=$!
sleep "$WRITE_BEFORE"
locked=$EPOCHREALTIME
mariadb --defaults-file="$S/lag/instances/lag-1/run/my.cnf" -e "LOCK TABLES rpo.w READ; SELECT SLEEP(600)" >/dev/null 2>&1 &
L=$!
sleep "$LOCKED"
echo "status $LOCKED s after the lock:"
m status --name lag -o json | jq -c '{instances: [.instances[] | {name, role, ready, port, applied: .gtid.current}], archive: .backup.archive | {source, last_gtid, behind_transactions}}'
left=$(pgrep -f -- "$S/")
killed=$EPOCHREALTIME
kill -9 $left
sleep 0.5
pkill -P "$W" || true
kill "$W" 2>/dev/null || true
wait "$W" 2>/dev/null || true
W=""
wait "$L" 2>/dev/null || true
L=""
m destroy --name lag >/dev/null
m restore --from-cluster lag --name lagr --replicas 1 --rw-port "$RRW" --ro-port "$RRO" >/dev/null
MYSQL_PWD=$(password lagr) mariadb --no-defaults -h127.0.0.1 -P"$RRW" -umyset -N -B -e "SELECT id FROM rpo.w" >"$S/restored"
awk -v kill="$killed" -v locked="$locked" 'NR == FNR { have[$1] = 1; n++; next }
  { acked++; if (!($1 in have)) { missing++; if (oldest == "" || $2 < oldest) oldest = $2 } }
  END { printf "acknowledged %d, restored %d, acknowledged but missing %d; replica locked %.3f s before the kill; RPO %.3f s\n",
        acked, n, missing, kill - locked, missing ? kill - oldest : 0 }' "$S/restored" "$S/acks"
