#!/usr/bin/env bash
# bench/clone-paths.sh — where a clone's copy time goes: the ways of copying a loaded primary's
# data dir, measured in interleaved rounds on one machine, page cache dropped before each.
#
# A --replicas 1 cluster is loaded like bench/run.sh's clone benchmark (sysbench oltp_read_write
# prepare through rw), then each round runs every variant in turn:
#   cp        `cp -a` of the data dir without binlogs, + sync (bench/run.sh's baseline)
#   direct    `mariadb-backup --backup --target-dir=DIR --parallel=4 --log-copy-interval=10` + sync
#   pipe      `mariadb-backup --backup --stream=xbstream ... | mbstream -x --parallel=2 -C DIR` + sync
#   clone     `myset scale --replicas 2` until Ready (and its stream/transfer time, from the new
#             agent's log: `cloning` to `phase=preparing`; then the prepare, to `clone complete`,
#             and the server start, to `phase=running`), then scale back with --delete-data
#   base      with MYSET_BASE set: the same clone on a second cluster, made and loaded the same
#             way by that binary (the baseline build), in the same rounds
# mariadb-backup runs as the agent runs it: --defaults-file=<primary>/run/my.cnf.
#
# Knobs: MYSET (required), MYSET_BASE, ROUNDS=5, TABLES=8, TABLE_SIZE=550000, PORT_BASE=23600,
#   VARIANTS="cp direct pipe clone base", WORKDIR=/tmp.
# Output: "# " progress on stderr, RESULT lines on stdout (seconds; ratios to cp's median).
# Needs root (drop_caches). Every cluster and copy it makes is removed on exit.

set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MYSET=${MYSET:?set MYSET to the myset binary}
MYSET_BASE=${MYSET_BASE:-}
ROUNDS=${ROUNDS:-5}
TABLES=${TABLES:-8}
TABLE_SIZE=${TABLE_SIZE:-550000}
PORT_BASE=${PORT_BASE:-23600}
VARIANTS=${VARIANTS:-"cp direct pipe clone${MYSET_BASE:+ base}"}
ROOT=$(mktemp -d "${WORKDIR:-/tmp}/clone-paths.XXXXXX")
WORK=$ROOT/work
mkdir -p "$WORK" "$ROOT/state" "$ROOT/state-base"

cleanup() {
    local rc=$?
    set +e
    MYSET_STATE_DIR=$ROOT/state "$MYSET" destroy --name cp-new >&2 2>/dev/null
    [[ -n $MYSET_BASE ]] && MYSET_STATE_DIR=$ROOT/state-base "$MYSET_BASE" destroy --name cp-base >&2 2>/dev/null
    rm -rf "$ROOT"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
sql() { mariadb --no-defaults -h 127.0.0.1 -P "$1" -u myset -p"$2" -N -B -e "$3"; }
# on <variant>: the binary and state dir of that variant's cluster
on() {
    if [[ $1 == base ]]; then echo "$MYSET_BASE $ROOT/state-base cp-base"; else echo "$MYSET $ROOT/state cp-new"; fi
}

load_cluster() { # binary state name rw ro
    local bin=$1 state=$2 name=$3 pass written last="" still=0 i
    MYSET_STATE_DIR=$state "$bin" up --name "$name" --replicas 1 --rw-port "$4" --ro-port "$5" --tls off \
        --timeout 600 >"$WORK/up-$name.out" 2>&1 || { cat "$WORK/up-$name.out" >&2; die "up $name failed"; }
    pass=$(cat "$state/$name/password")
    sql "$4" "$pass" "CREATE DATABASE sbtest"
    log "$name: loading $TABLES x $TABLE_SIZE rows"
    sysbench oltp_read_write --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$4" \
        --mysql-user=myset --mysql-password="$pass" --mysql-db=sbtest --tables="$TABLES" \
        --table-size="$TABLE_SIZE" --threads=2 prepare >"$WORK/load-$name.log" 2>&1 ||
        { tail "$WORK/load-$name.log" >&2; die "sysbench prepare failed"; }
    for ((i = 0; i < 120 && still < 3; i++)); do
        written=$(sql "$4" "$pass" "SHOW GLOBAL STATUS LIKE 'Innodb_data_written'" | cut -f2)
        if [[ $written == "$last" ]]; then still=$((still + 1)); else still=0; fi
        last=$written
        sleep 1
    done
}

log_at() { # agent.log pattern -> epoch seconds of its last matching line
    local line
    line=$(grep -E -- "$2" "$1" | tail -1 | cut -d' ' -f1) || true
    [[ -n $line ]] && date -u -d "$line" +%s.%N || echo nan
}

declare -A TIMES=() STREAMS=() PREPARES=() STARTS=()
add() { TIMES[$1]="${TIMES[$1]:-} $2"; log "$1: $2 s${3:+ ($3)}"; }

load_cluster "$MYSET" "$ROOT/state" cp-new $((PORT_BASE + 1)) $((PORT_BASE + 2))
[[ " $VARIANTS " == *" base "* ]] &&
    load_cluster "$MYSET_BASE" "$ROOT/state-base" cp-base $((PORT_BASE + 3)) $((PORT_BASE + 4))
PRIMARY=$ROOT/state/cp-new/instances/cp-new-0
DATA=$PRIMARY/data
result date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
result loadavg "\"$(cut -d' ' -f1-3 /proc/loadavg)\""
result datadir_without_binlogs_bytes "$(find "$DATA" -mindepth 1 -maxdepth 1 ! -name 'mysql-bin.*' -exec du -sbc {} + | awk '/total$/ { s += $1 } END { print s }')"

for ((r = 1; r <= ROUNDS; r++)); do
    for v in $VARIANTS; do
        rm -rf "$WORK/dst" "$WORK/scratch"
        mkdir "$WORK/dst" "$WORK/scratch"
        drop_caches
        case $v in
        cp)
            t0=$(now)
            find "$DATA" -mindepth 1 -maxdepth 1 ! -name 'mysql-bin.*' -exec cp -a -t "$WORK/dst" {} +
            sync
            add cp "$(elapsed "$t0" "$(now)")"
            ;;
        direct)
            t0=$(now)
            mariadb-backup --defaults-file="$PRIMARY/run/my.cnf" --backup --target-dir="$WORK/dst" \
                --parallel=4 --log-copy-interval=10 2>"$WORK/direct.log" || { tail "$WORK/direct.log" >&2; die "direct backup failed"; }
            sync
            add direct "$(elapsed "$t0" "$(now)")"
            ;;
        pipe)
            t0=$(now)
            mariadb-backup --defaults-file="$PRIMARY/run/my.cnf" --backup --stream=xbstream \
                --target-dir="$WORK/scratch" --parallel=4 --log-copy-interval=10 2>"$WORK/pipe.log" |
                mbstream -x --parallel=2 -C "$WORK/dst" || { tail "$WORK/pipe.log" >&2; die "piped backup failed"; }
            sync
            add pipe "$(elapsed "$t0" "$(now)")"
            ;;
        clone | base)
            read -r bin state name < <(on "$v")
            t0=$(now)
            MYSET_STATE_DIR=$state "$bin" scale --name "$name" --replicas 2 --timeout 600 >"$WORK/scale.out" 2>&1 ||
                { cat "$WORK/scale.out" >&2; die "scale $name up failed"; }
            t1=$(now)
            agent_log=$state/$name/instances/$name-1/agent.log
            a=$(log_at "$agent_log" 'myset_agent::clone: cloning')
            b=$(log_at "$agent_log" 'phase=preparing')
            c=$(log_at "$agent_log" 'clone complete')
            d=$(log_at "$agent_log" 'phase=running')
            STREAMS[$v]="${STREAMS[$v]:-} $(elapsed "$a" "$b")"
            PREPARES[$v]="${PREPARES[$v]:-} $(elapsed "$b" "$c")"
            STARTS[$v]="${STARTS[$v]:-} $(elapsed "$c" "$d")"
            add "$v" "$(elapsed "$t0" "$t1")" "transfer $(elapsed "$a" "$b") s; $(grep -o 'transfer=[a-z-]*' "$agent_log" | tail -1)"
            MYSET_STATE_DIR=$state "$bin" scale --name "$name" --replicas 1 --delete-data --timeout 600 >"$WORK/scale.out" 2>&1 ||
                { cat "$WORK/scale.out" >&2; die "scale $name down failed"; }
            for ((t = 0; t < 600; t++)); do [[ -e $state/$name/instances/$name-1/data ]] || break; sleep 0.1; done
            ;;
        esac
    done
done
rm -rf "$WORK/dst" "$WORK/scratch"

result loadavg_end "\"$(cut -d' ' -f1-3 /proc/loadavg)\""
base_cp=$(median ${TIMES[cp]})
for v in $VARIANTS; do
    # shellcheck disable=SC2086
    m=$(median ${TIMES[$v]})
    result "${v}_runs" "\"${TIMES[$v]# }\""
    result "${v}_seconds_median" "$m"
    result "${v}_over_cp" "$(ratio "$m" "$base_cp")"
    # shellcheck disable=SC2086
    if [[ -n ${STREAMS[$v]:-} ]]; then
        # shellcheck disable=SC2086
        result "${v}_transfer_seconds_median" "$(median ${STREAMS[$v]})"
        # shellcheck disable=SC2086
        result "${v}_prepare_seconds_median" "$(median ${PREPARES[$v]})"
        # shellcheck disable=SC2086
        result "${v}_server_start_seconds_median" "$(median ${STARTS[$v]})"
    fi
done
exit 0
