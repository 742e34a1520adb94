#!/usr/bin/env bash
# bench/run.sh — benchmarks for myset, each figure a ratio against a baseline measured in the same run.
#
# Usage:  bash bench/run.sh            (from anywhere; defaults: ~6-7 minutes on 2 cores, plus the build)
#
# What it measures (select with BENCHES, default "up clone pointselect"; "tls" on request):
#   up           Seconds from `myset up --replicas 3` to the command returning (all 3 Ready), median of
#                UP_RUNS runs, destroying the cluster between runs. Baseline: one bare
#                `mariadb-install-db` + `mariadbd` start until `mariadb-admin ping` answers (median of
#                BARE_RUNS; BARE_RUNS=0 skips it). Also the median of each step of an `up` (up3_<step>_seconds_median,
#                from the agents' logs and the events): to_agent, bootstrap (mariadb-install-db and accounts),
#                primary_start, primary_ready_seen, replicas_clone_start, replicas_ready_seen, return.
#   clone        A --replicas 1 cluster is loaded through rw with `sysbench oltp_read_write prepare`
#                (CLONE_TABLES x CLONE_TABLE_SIZE rows, ~1 GiB of InnoDB data with the defaults). Then,
#                CLONE_RUNS times, interleaved: `myset scale --replicas 2` (a mariadb-backup stream
#                clone + prepare, until the new replica is Ready), scale back to 1 with --delete-data;
#                `cp -a` of the primary's whole data dir + `sync`; and `cp -a` of the same data dir
#                without its binlogs (mysql-bin.*, which mariadb-backup does not copy) + `sync`.
#                Page cache is dropped before each timed step when /proc/sys/vm/drop_caches is
#                writable (DROP_CACHES=auto|1|0), otherwise the figures are warm-cache. Also the median of
#                each step of a clone (clone_<step>_seconds_median, from the new replica's agent log and the
#                events): to_agent, stream_extract, prepare, server_start, catch_up_ready_seen, return.
#   pointselect  A --replicas 3 cluster; `sysbench oltp_point_select` prepared through rw, wait until
#                every replica has the primary's GTID position, then PS_THREADS threads for PS_TIME s
#                against: `direct` (one replica's own port, ordinal DIRECT_ORDINAL), `ro` (myset's ro
#                endpoint) and `haproxy` (HAProxy mode tcp, balance roundrobin over the same Ready
#                instances' ports). Targets are run interleaved for PS_ROUNDS rounds after a PS_WARMUP s
#                warm-up of each; the median tps per target is reported with ro/direct, ro/haproxy and
#                haproxy/direct. The cluster's endpoints are the userspace proxy (--endpoints
#                userspace). When kernel endpoints are possible (root and a usable nft; KERNEL=auto,
#                1 to require them, 0 to skip), a second --replicas 3 cluster with --endpoints kernel
#                is prepared the same way, and the targets add `ro_kernel` (its ro), `rw` (the proxy's
#                rw), `rw_kernel` (its rw) and `direct_primary` (the first cluster's primary's own
#                port), reported as ro_kernel/direct, rw/direct_primary and rw_kernel/direct_primary.
#   tls          Two --replicas 1 clusters, one with TLS (the default) and one with --tls off;
#                `sysbench oltp_point_select` prepared through each one's rw, then PS_THREADS threads
#                for PS_TIME s through rw, the two interleaved for PS_ROUNDS rounds after a warm-up;
#                reports the median tps of each and tls/plain. Each sysbench thread keeps one
#                connection, so this is the cost of encryption, not of handshakes.
#
# The other benchmarks run their clusters with --tls "$TLS" (default off: the figures recorded
# before TLS existed stay comparable).
#
# Output: progress lines on stderr starting with "# "; results on stdout, one per line, as
#   RESULT <key>=<value>
# (seconds, tps, bytes or plain ratios). Also copied to RESULTS_FILE when set.
#
# Knobs (environment):
#   BENCHES="up clone pointselect"   which benchmarks to run
#   BUILD=1                          run `cargo build --release -p myset-cli` first (0: use MYSET as is)
#   MYSET=<repo>/target/release/myset
#   BENCH_STATE_DIR=/tmp/bench-state-<pid>   must not exist; created, and deleted at the end
#   PORT_BASE=23300                  uses PORT_BASE+1 .. PORT_BASE+14 on 127.0.0.1 (checked free)
#   KERNEL=auto                      pointselect's kernel-endpoints cluster: auto, 1 or 0
#   UP_RUNS=3 BARE_RUNS=3 UP_TIMEOUT=600
#   CLONE_TABLES=8 CLONE_TABLE_SIZE=550000 CLONE_LOAD_THREADS=2 CLONE_RUNS=3 CLONE_SETTLE_MAX=120
#   CLONE_CP_FULL=1                  0: skip the copy of the whole data dir (binlogs included), which
#                                    needs as much free disk again as the primary's data dir
#   DROP_CACHES=auto
#   PS_TABLES=4 PS_TABLE_SIZE=50000 PS_THREADS=4 PS_TIME=20 PS_WARMUP=5 PS_ROUNDS=3 DIRECT_ORDINAL=1
#   KEEP_LOGS_DIR=/tmp/bench-logs-<pid>   on failure, cluster logs are copied here before destroy
#   RESULTS_FILE=                    also append RESULT lines to this file
#
# Needs: bash, jq, mariadb client, mariadb-install-db, mariadbd, mariadb-backup, sysbench, haproxy
# (apt-get install -y sysbench haproxy jq). All traffic is to 127.0.0.1. Every cluster, process
# and temporary copy the script creates is removed on exit, success or failure.

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCHES=${BENCHES:-"up clone pointselect"}
TLS=${TLS:-off}
BUILD=${BUILD:-1}
MYSET=${MYSET:-$REPO/target/release/myset}
STATE_DIR=${BENCH_STATE_DIR:-/tmp/bench-state-$$}
PORT_BASE=${PORT_BASE:-23300}
UP_RUNS=${UP_RUNS:-3}
BARE_RUNS=${BARE_RUNS:-3}
UP_TIMEOUT=${UP_TIMEOUT:-600}
CLONE_TABLES=${CLONE_TABLES:-8}
CLONE_TABLE_SIZE=${CLONE_TABLE_SIZE:-550000}
CLONE_LOAD_THREADS=${CLONE_LOAD_THREADS:-2}
CLONE_RUNS=${CLONE_RUNS:-3}
CLONE_SETTLE_MAX=${CLONE_SETTLE_MAX:-120}
CLONE_CP_FULL=${CLONE_CP_FULL:-1}
DROP_CACHES=${DROP_CACHES:-auto}
PS_TABLES=${PS_TABLES:-4}
PS_TABLE_SIZE=${PS_TABLE_SIZE:-50000}
PS_THREADS=${PS_THREADS:-4}
PS_TIME=${PS_TIME:-20}
PS_WARMUP=${PS_WARMUP:-5}
PS_ROUNDS=${PS_ROUNDS:-3}
DIRECT_ORDINAL=${DIRECT_ORDINAL:-1}
KERNEL=${KERNEL:-auto}
KEEP_LOGS_DIR=${KEEP_LOGS_DIR:-/tmp/bench-logs-$$}
RESULTS_FILE=${RESULTS_FILE:-}

UP_RW=$((PORT_BASE + 1)) UP_RO=$((PORT_BASE + 2))
CL_RW=$((PORT_BASE + 3)) CL_RO=$((PORT_BASE + 4))
PS_RW=$((PORT_BASE + 5)) PS_RO=$((PORT_BASE + 6))
HAP_PORT=$((PORT_BASE + 7))
TLS_ON_RW=$((PORT_BASE + 9)) TLS_ON_RO=$((PORT_BASE + 10))
TLS_OFF_RW=$((PORT_BASE + 11)) TLS_OFF_RO=$((PORT_BASE + 12))
BARE_PORT=$((PORT_BASE + 8))
PSK_RW=$((PORT_BASE + 13)) PSK_RO=$((PORT_BASE + 14))

WORK=""          # scratch dir for copies, bare data dirs, haproxy config (inside STATE_DIR's parent)
CHILD=""         # the long-running child we are waiting on
HAP_PID=""
BARE_PID=""
CREATED_STATE=0

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
wants() { [[ " $BENCHES " == *" $1 "* ]]; }

# Runs a command in the background and waits for it, so a signal reaches the trap at once.
run() {
    "$@" &
    CHILD=$!
    local rc=0
    wait "$CHILD" || rc=$?
    CHILD=""
    return "$rc"
}

port_free() {
    if command -v ss >/dev/null; then
        ! ss -Hltn "sport = :$1" | grep -q .
    else
        ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    # A signal can arrive inside a function whose output is redirected to a file: write to the
    # script's own stdout and stderr again.
    exec 1>&8 2>&9
    [[ -n $CHILD ]] && kill "$CHILD" 2>/dev/null && wait "$CHILD" 2>/dev/null
    [[ -n $HAP_PID ]] && kill "$HAP_PID" 2>/dev/null && wait "$HAP_PID" 2>/dev/null
    if [[ -n $BARE_PID ]]; then
        kill "$BARE_PID" 2>/dev/null
        wait "$BARE_PID" 2>/dev/null
    fi
    if ((CREATED_STATE)) && [[ -d $STATE_DIR ]]; then
        if ((rc != 0)); then
            mkdir -p "$KEEP_LOGS_DIR"
            (cd "$STATE_DIR" && find . \( -name data -o -name data.clone -o -name 'backup-*' \) -prune -o \
                -type f \( -name '*.log' -o -name '*.jsonl' -o -name 'cluster.json' -o -name 'spec.json' \) -print |
                while read -r f; do mkdir -p "$KEEP_LOGS_DIR/$(dirname "$f")"; cp "$f" "$KEEP_LOGS_DIR/$f"; done)
            log "logs of the failed run copied to $KEEP_LOGS_DIR"
        fi
        for c in "$STATE_DIR"/*/; do
            [[ -f $c/cluster.json ]] || continue
            MYSET_STATE_DIR=$STATE_DIR "$MYSET" destroy --name "$(basename "$c")" >&2 ||
                log "WARNING: myset destroy --name $(basename "$c") failed"
        done
        local left
        left=$(pgrep -f -- "$STATE_DIR/" || true)
        if [[ -n $left ]]; then
            log "WARNING: processes still running under $STATE_DIR after destroy: $(echo $left); killing them"
            for p in $left; do kill -9 "$p" 2>/dev/null; done
        fi
        rm -rf "$STATE_DIR"
    fi
    [[ -n $WORK && -d $WORK ]] && rm -rf "$WORK"
    if ((rc != 0)); then log "exit status $rc"; fi
    exit "$rc"
}

drop_caches() {
    if [[ $DROP_CACHES == 1 ]]; then
        sync
        echo 3 >/proc/sys/vm/drop_caches
    fi
}

# ---------------------------------------------------------------- setup

for tool in jq mariadb mariadb-admin mariadb-install-db mariadbd mariadb-backup sysbench haproxy; do
    command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install -y sysbench haproxy jq mariadb-server mariadb-backup)"
done
[[ -e $STATE_DIR ]] && die "$STATE_DIR already exists: pick a fresh BENCH_STATE_DIR"
for p in "$UP_RW" "$UP_RO" "$CL_RW" "$CL_RO" "$PS_RW" "$PS_RO" "$HAP_PORT" "$BARE_PORT" \
    "$TLS_ON_RW" "$TLS_ON_RO" "$TLS_OFF_RW" "$TLS_OFF_RO" "$PSK_RW" "$PSK_RO"; do
    port_free "$p" || die "port $p is in use on 127.0.0.1: pick another PORT_BASE"
done

exec 8>&1 9>&2
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ $BUILD == 1 ]]; then
    log "building: cargo build --release -p myset-cli"
    (cd "$REPO" && run cargo build --release -p myset-cli) >&2
fi
[[ -x $MYSET ]] || die "no myset binary at $MYSET (build it, or set MYSET)"

mkdir -p "$STATE_DIR"
CREATED_STATE=1
export MYSET_STATE_DIR=$STATE_DIR
WORK=$(mktemp -d "$(dirname "$STATE_DIR")/bench-work.XXXXXX")

if [[ $DROP_CACHES == auto ]]; then
    if sync && (echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then DROP_CACHES=1; else DROP_CACHES=0; fi
fi

result date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
result machine_nproc "$(nproc)"
result machine_mem_total_gib "$(free -g | awk '/^Mem:/ { print $2 }')"
result machine_cpu "\"$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)\""
result mariadb_version "$(mariadbd --version | awk '{ print $3 }')"
result sysbench_version "$(sysbench --version | awk '{ print $2 }')"
result haproxy_version "$(haproxy -v | awk 'NR == 1 { print $3 }')"
result myset_git "$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$REPO" && [[ -n $(git status --porcelain 2>/dev/null) ]] && echo -dirty)"
result myset_binary "\"$(stat -c '%y' "$MYSET" | cut -d. -f1) sha256:$(sha256sum "$MYSET" | cut -c1-12)\""
result drop_caches "$DROP_CACHES"

# ---------------------------------------------------------------- helpers on clusters

status_json() { "$MYSET" status --name "$1" -o json; }
password_of() { cat "$(status_json "$1" | jq -r .credentials.password_file)"; }

# sql <port> <password> <statement>: one value/row per line, no header. With SQL_CA set, over
# TLS verified by that CA.
sql() {
    local tls=()
    [[ -n ${SQL_CA:-} ]] && tls=(--ssl-ca="$SQL_CA" --ssl-verify-server-cert)
    mariadb --no-defaults "${tls[@]}" -h 127.0.0.1 -P "$1" -u myset -p"$2" -N -B -e "$3"
}

up_cluster() { # name replicas rw ro [tls: on|off, default $TLS]
    run "$MYSET" up --name "$1" --replicas "$2" --rw-port "$3" --ro-port "$4" --tls "${5:-$TLS}" \
        --timeout "$UP_TIMEOUT" >"$WORK/up-$1.out" 2>&1 ||
        { cat "$WORK/up-$1.out" >&2; die "myset up --name $1 --replicas $2 failed"; }
}

all_ready() { # name n
    status_json "$1" | jq -e --argjson n "$2" '(.instances | length) == $n and all(.instances[]; .ready)' >/dev/null
}

destroy_cluster() {
    run "$MYSET" destroy --name "$1" >&2 || die "myset destroy --name $1 failed"
}

sysbench_cmd() { # port password db tables size threads workload action [extra...]
    local port=$1 pass=$2 db=$3 tables=$4 size=$5 threads=$6 workload=$7 action=$8
    shift 8
    # sysbench 1.0's --mysql-ssl=on reads cacert.pem, client-cert.pem and client-key.pem from
    # its working directory; SB_SSL_DIR holds them for a TLS run.
    if [[ -n ${SB_SSL_DIR:-} ]]; then cd "$SB_SSL_DIR" || exit 1; fi
    exec sysbench "$workload" --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$port" \
        --mysql-user=myset --mysql-password="$pass" --mysql-db="$db" \
        --tables="$tables" --table-size="$size" --threads="$threads" "$@" "$action"
}

# Timelines, for where the time goes. Epoch seconds of: the last line of an agent's log
# matching a pattern; an event of a kind about an ordinal (the last one when several).
log_at() { # agent.log pattern
    local line
    line=$(grep -E -- "$2" "$1" | tail -1 | cut -d' ' -f1) || true
    [[ -n $line ]] && date -u -d "$line" +%s.%N || echo nan
}
event_at() { # cluster kind ordinal
    "$MYSET" events --name "$1" -o json | jq -rs --arg k "$2" --argjson o "$3" \
        '[.[] | select(.kind == $k and .ordinal == $o) | .at] | last // "nan"'
}
# Median of each step over the runs: step_add <step> <seconds> collects, step_results <prefix> reports.
declare -A STEPS=()
step_add() { STEPS[$1]="${STEPS[$1]:-} $2"; }
step_results() {
    local k
    for k in "${!STEPS[@]}"; do
        # shellcheck disable=SC2086
        result "${1}_${k}_seconds_median" "$(median ${STEPS[$k]})"
    done
    STEPS=()
}

# ---------------------------------------------------------------- 1. up

# Where one `up` spent its time, from the primary's agent log and the controller's events:
# bootstrap (mariadb-install-db, accounts), the primary's server start, until the controller saw
# it Ready, the replicas' clones until their servers run, until the controller saw them Ready,
# and until the command returned.
up_timeline() { # t0 t1
    local inst=$STATE_DIR/bench-up/instances a b c d e f
    a=$(log_at "$inst/bench-up-0/agent.log" 'phase=initializing')
    b=$(log_at "$inst/bench-up-0/agent.log" 'bootstrapped a new data dir')
    c=$(log_at "$inst/bench-up-0/agent.log" 'phase=running')
    d=$(event_at bench-up ready 0)
    e=$(printf '%s\n' "$(log_at "$inst/bench-up-1/agent.log" 'phase=running')" \
        "$(log_at "$inst/bench-up-2/agent.log" 'phase=running')" | sort -g | tail -1)
    f=$(printf '%s\n' "$(event_at bench-up ready 1)" "$(event_at bench-up ready 2)" | sort -g | tail -1)
    step_add to_agent "$(elapsed "$1" "$a")"
    step_add bootstrap "$(elapsed "$a" "$b")"
    step_add primary_start "$(elapsed "$b" "$c")"
    step_add primary_ready_seen "$(elapsed "$c" "$d")"
    step_add replicas_clone_start "$(elapsed "$d" "$e")"
    step_add replicas_ready_seen "$(elapsed "$e" "$f")"
    step_add return "$(elapsed "$f" "$2")"
}

bench_up() {
    log "up: bare baseline, $BARE_RUNS run(s)"
    local bare=() i t0 t1 d extra=()
    [[ $(id -u) == 0 ]] && extra=(--user=root)
    for ((i = 1; i <= BARE_RUNS; i++)); do
        d=$WORK/bare
        rm -rf "$d"
        mkdir -p "$d"
        t0=$(now)
        mariadb-install-db --no-defaults --datadir="$d/data" --auth-root-authentication-method=normal \
            --skip-test-db "${extra[@]}" >"$d/install.log" 2>&1 || { cat "$d/install.log" >&2; die "mariadb-install-db failed"; }
        mariadbd --no-defaults --datadir="$d/data" --socket="$d/sock" --port="$BARE_PORT" \
            --bind-address=127.0.0.1 --pid-file="$d/pid" --log-error="$d/err.log" "${extra[@]}" &
        BARE_PID=$!
        until mariadb-admin --no-defaults --socket="$d/sock" -u root ping >/dev/null 2>&1; do
            kill -0 "$BARE_PID" 2>/dev/null || { cat "$d/err.log" >&2; die "bare mariadbd exited"; }
            sleep 0.02
        done
        t1=$(now)
        bare+=("$(elapsed "$t0" "$t1")")
        mariadb-admin --no-defaults --socket="$d/sock" -u root shutdown >/dev/null 2>&1 || kill "$BARE_PID"
        wait "$BARE_PID" || true
        BARE_PID=""
        rm -rf "$d"
        result "bare_install_start_seconds_run$i" "${bare[-1]}"
    done

    log "up: myset up --replicas 3, $UP_RUNS run(s)"
    local ups=()
    for ((i = 1; i <= UP_RUNS; i++)); do
        t0=$(now)
        up_cluster bench-up 3 "$UP_RW" "$UP_RO"
        t1=$(now)
        all_ready bench-up 3 || die "myset up returned but not all 3 instances are Ready: $(status_json bench-up)"
        ups+=("$(elapsed "$t0" "$t1")")
        result "up3_seconds_run$i" "${ups[-1]}"
        up_timeline "$t0" "$t1"
        destroy_cluster bench-up
    done
    local up_med
    up_med=$(median "${ups[@]}")
    result up3_seconds_median "$up_med"
    step_results up3
    if ((BARE_RUNS > 0)); then
        local bare_med
        bare_med=$(median "${bare[@]}")
        result bare_install_start_seconds_median "$bare_med"
        result up3_over_bare_ratio "$(ratio "$up_med" "$bare_med")"
    fi
}

# ---------------------------------------------------------------- 2. clone

# Where one clone spent its time, from the new replica's agent log and the controller's events:
# until its agent started cloning, the backup streamed and extracted, --prepare, the server start
# (and replication set up), until the controller saw it Ready (replication caught up), and until
# the command returned.
clone_timeline() { # name t0 t1
    local log=$STATE_DIR/$1/instances/$1-1/agent.log a b c d e
    a=$(log_at "$log" 'myset_agent::clone: cloning')
    b=$(log_at "$log" 'phase=preparing')
    c=$(log_at "$log" 'clone complete')
    d=$(log_at "$log" 'phase=running')
    e=$(event_at "$1" ready 1)
    step_add to_agent "$(elapsed "$2" "$a")"
    step_add stream_extract "$(elapsed "$a" "$b")"
    step_add prepare "$(elapsed "$b" "$c")"
    step_add server_start "$(elapsed "$c" "$d")"
    step_add catch_up_ready_seen "$(elapsed "$d" "$e")"
    step_add return "$(elapsed "$e" "$3")"
}

# timed_copy CMD...: with the page cache dropped, runs a copy, then sync; sets COPY_SECONDS (the
# copy alone) and COPY_SYNCED_SECONDS (the copy and the sync).
timed_copy() {
    local t0 t1 t2
    drop_caches
    t0=$(now)
    run "$@"
    t1=$(now)
    sync
    t2=$(now)
    COPY_SECONDS=$(elapsed "$t0" "$t1")
    COPY_SYNCED_SECONDS=$(elapsed "$t0" "$t2")
}

bench_clone() {
    local name=bench-clone
    log "clone: cluster $name --replicas 1"
    up_cluster "$name" 1 "$CL_RW" "$CL_RO"
    local pass data
    pass=$(password_of "$name")
    data=$STATE_DIR/$name/instances/$name-0/data
    [[ -d $data ]] || die "no data dir at $data"
    sql "$CL_RW" "$pass" "CREATE DATABASE IF NOT EXISTS sbtest"
    log "clone: loading $CLONE_TABLES x $CLONE_TABLE_SIZE rows with sysbench oltp_read_write prepare"
    local t0 t1
    t0=$(now)
    run sysbench_cmd "$CL_RW" "$pass" sbtest "$CLONE_TABLES" "$CLONE_TABLE_SIZE" "$CLONE_LOAD_THREADS" \
        oltp_read_write prepare >"$WORK/clone-prepare.log" 2>&1 || { tail -20 "$WORK/clone-prepare.log" >&2; die "sysbench prepare failed"; }
    t1=$(now)
    result clone_load_seconds "$(elapsed "$t0" "$t1")"
    # Let the primary finish writing after the load (flushing, purge) before timing anything, so
    # the first run is not slowed by background I/O the later runs do not see: wait until
    # Innodb_data_written has not moved for 3 s (at most CLONE_SETTLE_MAX s).
    log "clone: waiting for the primary's background writes to stop"
    local written last="" still=0 settle
    t0=$(now)
    for ((settle = 0; settle < CLONE_SETTLE_MAX; settle++)); do
        written=$(sql "$CL_RW" "$pass" "SHOW GLOBAL STATUS LIKE 'Innodb_data_written'" | cut -f2)
        if [[ $written == "$last" ]]; then still=$((still + 1)); else still=0; fi
        ((still >= 3)) && break
        last=$written
        sleep 1
    done
    sync
    result clone_settle_seconds "$(elapsed "$t0" "$(now)")"
    local total binlogs schema
    total=$(du -sb "$data" | cut -f1)
    binlogs=$(find "$data" -maxdepth 1 -name 'mysql-bin.*' -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
    schema=$(du -sb "$data/sbtest" | cut -f1)
    result clone_rows "$((CLONE_TABLES * CLONE_TABLE_SIZE))"
    result clone_primary_datadir_bytes "$total"
    result clone_primary_datadir_sbtest_bytes "$schema"
    result clone_primary_datadir_binlog_bytes "$binlogs"
    result clone_primary_datadir_without_binlogs_bytes "$((total - binlogs))"

    local scales=() fulls=() nobins=() fulls_nosync=() nobins_nosync=() i t port1 count dst ev
    for ((i = 1; i <= CLONE_RUNS; i++)); do
        log "clone: run $i/$CLONE_RUNS: myset scale --replicas 2"
        drop_caches
        t0=$(now)
        run "$MYSET" scale --name "$name" --replicas 2 --timeout "$UP_TIMEOUT" >"$WORK/scale.out" 2>&1 ||
            { cat "$WORK/scale.out" >&2; die "myset scale --name $name --replicas 2 failed"; }
        t1=$(now)
        scales+=("$(elapsed "$t0" "$t1")")
        all_ready "$name" 2 || die "scale returned but not 2 Ready instances: $(status_json "$name")"
        ev=$("$MYSET" events --name "$name")
        [[ $(grep -c "started $name-1 (cloning" <<<"$ev") == "$i" ]] ||
            die "the new replica was not started by cloning: $(tail -5 <<<"$ev")"
        result "clone_scale_seconds_run$i" "${scales[-1]}"
        clone_timeline "$name" "$t0" "$t1"
        result "clone_replica_datadir_bytes_run$i" "$(du -sb "$STATE_DIR/$name/instances/$name-1/data" | cut -f1)"
        port1=$(status_json "$name" | jq -r '.instances[] | select(.ordinal == 1) | .port')
        count=0
        for ((t = 1; t <= CLONE_TABLES; t++)); do
            count=$((count + $(sql "$port1" "$pass" "SELECT COUNT(*) FROM sbtest.sbtest$t")))
        done
        ((count == CLONE_TABLES * CLONE_TABLE_SIZE)) || die "the clone has $count rows, expected $((CLONE_TABLES * CLONE_TABLE_SIZE))"

        log "clone: run $i/$CLONE_RUNS: scale back to 1 with --delete-data"
        run "$MYSET" scale --name "$name" --replicas 1 --delete-data --timeout "$UP_TIMEOUT" >"$WORK/scale.out" 2>&1 ||
            { cat "$WORK/scale.out" >&2; die "myset scale --name $name --replicas 1 --delete-data failed"; }
        # `scale` returns once the instance has stopped; its data may still be being deleted.
        for ((t = 0; t < 600; t++)); do [[ -e $STATE_DIR/$name/instances/$name-1/data ]] || break; sleep 0.1; done
        [[ -e $STATE_DIR/$name/instances/$name-1/data ]] && die "the removed replica's data dir was not deleted"

        dst=$WORK/copy
        if ((CLONE_CP_FULL)); then
            log "clone: run $i/$CLONE_RUNS: cp -a of the whole data dir"
            rm -rf "$dst"
            timed_copy cp -a "$data" "$dst"
            fulls_nosync+=("$COPY_SECONDS")
            fulls+=("$COPY_SYNCED_SECONDS")
            result "clone_cp_full_seconds_run$i" "${fulls[-1]}"
            rm -rf "$dst"
        fi

        log "clone: run $i/$CLONE_RUNS: cp -a of the data dir without binlogs"
        mkdir "$dst"
        timed_copy find "$data" -mindepth 1 -maxdepth 1 ! -name 'mysql-bin.*' -exec cp -a -t "$dst" {} +
        nobins_nosync+=("$COPY_SECONDS")
        nobins+=("$COPY_SYNCED_SECONDS")
        result "clone_cp_without_binlogs_seconds_run$i" "${nobins[-1]}"
        rm -rf "$dst"
    done
    local s f n
    s=$(median "${scales[@]}")
    n=$(median "${nobins[@]}")
    result clone_scale_seconds_median "$s"
    step_results clone
    if ((CLONE_CP_FULL)); then
        f=$(median "${fulls[@]}")
        result clone_cp_full_seconds_median "$f"
        result clone_cp_full_nosync_seconds_median "$(median "${fulls_nosync[@]}")"
        result clone_scale_over_cp_full_ratio "$(ratio "$s" "$f")"
    fi
    result clone_cp_without_binlogs_seconds_median "$n"
    result clone_cp_without_binlogs_nosync_seconds_median "$(median "${nobins_nosync[@]}")"
    result clone_scale_over_cp_without_binlogs_ratio "$(ratio "$s" "$n")"
    destroy_cluster "$name"
}

# ---------------------------------------------------------------- 3. point select

sb_run() { # label port password seconds [sysbench options...] -> sets SB_TPS SB_P95 SB_ERR SB_REC
    local out=$WORK/ps-$1.log label=$1 port=$2 pass=$3 secs=$4
    shift 4
    run sysbench_cmd "$port" "$pass" sbpoint "$PS_TABLES" "$PS_TABLE_SIZE" "$PS_THREADS" oltp_point_select run \
        --time="$secs" --report-interval=0 "$@" >"$out" 2>&1 || { tail -20 "$out" >&2; die "sysbench run against $label (port $port) failed"; }
    awk '
        /transactions:/ { gsub(/[()]/, ""); tps = $3 }
        /95th percentile:/ { p95 = $3 }
        /ignored errors:/ { err = $3 }
        /reconnects:/ { rec = $2 }
        END { print tps, p95, err, rec }' "$out" >"$out.parsed"
    read -r SB_TPS SB_P95 SB_ERR SB_REC <"$out.parsed" || true
}

# Whether pointselect also measures kernel endpoints (KERNEL=auto: when root with a usable nft).
kernel_endpoints_wanted() {
    case $KERNEL in
        0) return 1 ;;
        1) return 0 ;;
        *) [[ $(id -u) == 0 ]] && nft list tables >/dev/null 2>&1 ;;
    esac
}

# A --replicas 3 cluster with `sysbench oltp_point_select` prepared through its rw, every replica
# at the primary's GTID position; sets PS_PASS, PS_PORTS (Ready instances' ports), PS_PRIMARY.
prepared_cluster() { # name rw ro endpoints
    log "pointselect: cluster $1 --replicas 3 --endpoints $4"
    MYSET_ENDPOINTS=$4 up_cluster "$1" 3 "$2" "$3"
    PS_PASS=$(password_of "$1")
    sql "$2" "$PS_PASS" "CREATE DATABASE IF NOT EXISTS sbpoint"
    log "pointselect: prepare $PS_TABLES x $PS_TABLE_SIZE rows through $1's rw"
    run sysbench_cmd "$2" "$PS_PASS" sbpoint "$PS_TABLES" "$PS_TABLE_SIZE" 2 oltp_point_select prepare \
        >"$WORK/ps-prepare-$1.log" 2>&1 || { tail -20 "$WORK/ps-prepare-$1.log" >&2; die "sysbench prepare failed"; }
    PS_STATUS=$(status_json "$1")
    PS_PRIMARY=$(jq -r '.instances[] | select(.role == "primary") | .port' <<<"$PS_STATUS")
    mapfile -t PS_PORTS < <(jq -r '.instances[] | select(.ready) | .port' <<<"$PS_STATUS")
    ((${#PS_PORTS[@]} == 3)) || die "expected 3 Ready instances: $PS_STATUS"
    log "pointselect: waiting for every replica of $1 to reach the primary's GTID position"
    local want p caught t
    want=$(sql "$PS_PRIMARY" "$PS_PASS" "SELECT @@gtid_binlog_pos")
    for ((t = 0; t < 600; t++)); do
        caught=1
        for p in "${PS_PORTS[@]}"; do
            [[ $(sql "$p" "$PS_PASS" "SELECT @@gtid_current_pos") == "$want" ]] || caught=0
        done
        ((caught)) && break
        sleep 0.5
    done
    ((caught)) || die "replicas of $1 did not catch up to $want within 300s"
}

bench_pointselect() {
    local name=bench-ps kname=bench-psk kernel=0 kpass=""
    kernel_endpoints_wanted && kernel=1
    if ((kernel)); then
        prepared_cluster "$kname" "$PSK_RW" "$PSK_RO" kernel
        kpass=$PS_PASS
        [[ $(jq -r '.endpoints.mode' <<<"$PS_STATUS") == kernel ]] || die "$kname does not run kernel endpoints: $PS_STATUS"
    fi
    prepared_cluster "$name" "$PS_RW" "$PS_RO" userspace
    local pass=$PS_PASS st=$PS_STATUS ports=("${PS_PORTS[@]}") primary_port=$PS_PRIMARY direct_port
    direct_port=$(jq -r --argjson o "$DIRECT_ORDINAL" '.instances[] | select(.ordinal == $o) | .port' <<<"$st")
    [[ -n $direct_port && $direct_port != null ]] || die "no instance with ordinal $DIRECT_ORDINAL"
    result ps_gtid "$(sql "$primary_port" "$pass" "SELECT @@gtid_binlog_pos")"

    log "pointselect: haproxy on 127.0.0.1:$HAP_PORT over ports ${ports[*]}"
    local cfg=$WORK/haproxy.cfg i=0
    {
        printf 'global\n    maxconn 4096\n\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 1h\n    timeout server 1h\n\n'
        printf 'frontend ro_bench\n    bind 127.0.0.1:%s\n    default_backend instances\n\n' "$HAP_PORT"
        printf 'backend instances\n    balance roundrobin\n'
        for p in "${ports[@]}"; do printf '    server i%s 127.0.0.1:%s\n' "$((i++))" "$p"; done
    } >"$cfg"
    haproxy -c -f "$cfg" >/dev/null || die "invalid haproxy config $cfg"
    haproxy -db -f "$cfg" >"$WORK/haproxy.log" 2>&1 &
    HAP_PID=$!
    for ((t = 0; t < 100; t++)); do sql "$HAP_PORT" "$pass" "SELECT 1" >/dev/null 2>&1 && break; sleep 0.1; done
    sql "$HAP_PORT" "$pass" "SELECT 1" >/dev/null || die "haproxy does not answer: $(cat "$WORK/haproxy.log")"

    declare -A target_port=([direct]=$direct_port [ro]=$PS_RO [haproxy]=$HAP_PORT
        [direct_primary]=$primary_port [rw]=$PS_RW [ro_kernel]=$PSK_RO [rw_kernel]=$PSK_RW)
    declare -A target_pass=([direct]=$pass [ro]=$pass [haproxy]=$pass [direct_primary]=$pass [rw]=$pass
        [ro_kernel]=$kpass [rw_kernel]=$kpass)
    local targets=(direct ro haproxy) tg r tps p95 err rec
    ((kernel)) && targets+=(ro_kernel direct_primary rw rw_kernel)
    declare -A tps_list
    for tg in "${targets[@]}"; do
        log "pointselect: warm-up $tg ${PS_WARMUP}s"
        sb_run "warmup-$tg" "${target_port[$tg]}" "${target_pass[$tg]}" "$PS_WARMUP"
    done
    for ((r = 1; r <= PS_ROUNDS; r++)); do
        for tg in "${targets[@]}"; do
            log "pointselect: round $r/$PS_ROUNDS $tg ${PS_TIME}s"
            SB_TPS="" SB_P95="" SB_ERR="" SB_REC=""
            sb_run "$tg" "${target_port[$tg]}" "${target_pass[$tg]}" "$PS_TIME"
            tps=$SB_TPS p95=$SB_P95 err=$SB_ERR rec=$SB_REC
            [[ -n $tps ]] || die "could not read the tps of the $tg run: $(tail -30 "$WORK/ps-$tg.log")"
            tps_list[$tg]+="$tps "
            result "ps_${tg}_tps_round$r" "$tps"
            result "ps_${tg}_p95_ms_round$r" "$p95"
            if [[ ${err:-0} != 0 || ${rec:-0} != 0 ]]; then
                result "ps_${tg}_errors_round$r" "$err"
                result "ps_${tg}_reconnects_round$r" "$rec"
            fi
        done
    done
    kill "$HAP_PID" 2>/dev/null || true
    wait "$HAP_PID" 2>/dev/null || true
    HAP_PID=""

    declare -A med
    for tg in "${targets[@]}"; do
        # shellcheck disable=SC2086
        med[$tg]=$(median ${tps_list[$tg]})
        result "ps_${tg}_tps_median" "${med[$tg]}"
    done
    result ps_threads "$PS_THREADS"
    result ps_ro_over_direct_ratio "$(ratio "${med[ro]}" "${med[direct]}")"
    result ps_ro_over_haproxy_ratio "$(ratio "${med[ro]}" "${med[haproxy]}")"
    result ps_haproxy_over_direct_ratio "$(ratio "${med[haproxy]}" "${med[direct]}")"
    if ((kernel)); then
        result ps_ro_kernel_over_direct_ratio "$(ratio "${med[ro_kernel]}" "${med[direct]}")"
        result ps_rw_over_direct_primary_ratio "$(ratio "${med[rw]}" "${med[direct_primary]}")"
        result ps_rw_kernel_over_direct_primary_ratio "$(ratio "${med[rw_kernel]}" "${med[direct_primary]}")"
        destroy_cluster "$kname"
    fi
    destroy_cluster "$name"
}

# ---------------------------------------------------------------- 4. TLS against plain

# Writes the three files sysbench 1.0 reads for --mysql-ssl=on into $2: the cluster's CA (file $1)
# and a client certificate that CA signs (with its key, ca-key.pem beside it; the server checks a
# certificate a client offers).
sysbench_ssl_files() { # ca-file dir
    local ca=$1 dir=$2
    mkdir -p "$dir"
    cp "$ca" "$dir/cacert.pem"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=myset-bench \
        -keyout "$dir/client-key.pem" -out "$dir/client.csr" 2>/dev/null || die "openssl req failed"
    openssl x509 -req -in "$dir/client.csr" -CA "$ca" -CAkey "$(dirname "$ca")/ca-key.pem" \
        -set_serial "$RANDOM" -days 1 -out "$dir/client-cert.pem" 2>/dev/null || die "openssl x509 (sign the bench's client certificate) failed"
}

# Sets SSL (sysbench options) and SB_SSL_DIR for a run against the tls "$1" cluster.
tls_mode_options() { # on|off
    if [[ $1 == on ]]; then
        SSL=(--mysql-ssl=on) SB_SSL_DIR=$WORK/sysbench-ssl
    else
        SSL=(--mysql-ssl=off) SB_SSL_DIR=""
    fi
}

bench_tls() {
    local mode name rw pass tg r SSL SB_SSL_DIR
    declare -A tls_port tls_pass tls_ca tps_list
    for mode in on off; do
        name=bench-tls-$mode
        if [[ $mode == on ]]; then rw=$TLS_ON_RW; else rw=$TLS_OFF_RW; fi
        log "tls: cluster $name --replicas 1 --tls $mode"
        if [[ $mode == on ]]; then
            up_cluster "$name" 1 "$TLS_ON_RW" "$TLS_ON_RO" on
        else
            up_cluster "$name" 1 "$TLS_OFF_RW" "$TLS_OFF_RO" off
        fi
        pass=$(password_of "$name")
        tls_port[$mode]=$rw tls_pass[$mode]=$pass
        tls_ca[$mode]=$(status_json "$name" | jq -r '.tls.ca_file // empty')
        SQL_CA=${tls_ca[$mode]} sql "$rw" "$pass" "CREATE DATABASE IF NOT EXISTS sbpoint"
        if [[ $mode == on ]]; then
            [[ -n ${tls_ca[on]} ]] || die "the TLS cluster's status names no CA file"
            sysbench_ssl_files "${tls_ca[on]}" "$WORK/sysbench-ssl"
        fi
        log "tls: prepare $PS_TABLES x $PS_TABLE_SIZE rows through $name's rw"
        tls_mode_options "$mode"
        run sysbench_cmd "$rw" "$pass" sbpoint "$PS_TABLES" "$PS_TABLE_SIZE" 2 oltp_point_select prepare "${SSL[@]}" \
            >"$WORK/tls-prepare-$mode.log" 2>&1 || { tail -20 "$WORK/tls-prepare-$mode.log" >&2; die "sysbench prepare failed"; }
    done
    # Proof the "on" runs are encrypted: the server counts TLS sessions.
    result tls_session_cipher "$(SQL_CA=${tls_ca[on]} sql "${tls_port[on]}" "${tls_pass[on]}" "SHOW STATUS LIKE 'Ssl_cipher'" | awk '{ print $2 }')"
    for mode in on off; do
        tls_mode_options "$mode"
        log "tls: warm-up $mode ${PS_WARMUP}s"
        sb_run "tls-warmup-$mode" "${tls_port[$mode]}" "${tls_pass[$mode]}" "$PS_WARMUP" "${SSL[@]}"
    done
    for ((r = 1; r <= PS_ROUNDS; r++)); do
        for mode in on off; do
            tls_mode_options "$mode"
            log "tls: round $r/$PS_ROUNDS tls $mode ${PS_TIME}s"
            SB_TPS=""
            sb_run "tls-$mode" "${tls_port[$mode]}" "${tls_pass[$mode]}" "$PS_TIME" "${SSL[@]}"
            [[ -n $SB_TPS ]] || die "could not read the tps of the tls $mode run"
            tps_list[$mode]+="$SB_TPS "
            result "tls_${mode}_tps_round$r" "$SB_TPS"
        done
    done
    local on off
    # shellcheck disable=SC2086
    on=$(median ${tps_list[on]})
    # shellcheck disable=SC2086
    off=$(median ${tps_list[off]})
    result tls_threads "$PS_THREADS"
    result tls_on_tps_median "$on"
    result tls_off_tps_median "$off"
    result tls_on_over_off_ratio "$(ratio "$on" "$off")"
    destroy_cluster bench-tls-on
    destroy_cluster bench-tls-off
}

START=$(now)
if wants up; then bench_up; fi
if wants clone; then bench_clone; fi
if wants pointselect; then bench_pointselect; fi
if wants tls; then bench_tls; fi
result total_seconds "$(elapsed "$START" "$(now)")"
log "done"
