#!/usr/bin/env bash
# bench/run.sh — benchmarks for myset, each figure a ratio against a baseline measured in the same run.
#
# Usage:  bash bench/run.sh            (from anywhere; defaults: ~6-7 minutes on 2 cores, plus the build)
#
# What it measures (select with BENCHES, default "up clone pointselect"):
#   up           Seconds from `myset up --replicas 3` to the command returning (all 3 Ready), median of
#                UP_RUNS runs, destroying the cluster between runs. Baseline: one bare
#                `mariadb-install-db` + `mariadbd` start until `mariadb-admin ping` answers (median of
#                BARE_RUNS; BARE_RUNS=0 skips it).
#   clone        A --replicas 1 cluster is loaded through rw with `sysbench oltp_read_write prepare`
#                (CLONE_TABLES x CLONE_TABLE_SIZE rows, ~1 GiB of InnoDB data with the defaults). Then,
#                CLONE_RUNS times, interleaved: `myset scale --replicas 2` (a mariadb-backup stream
#                clone + prepare, until the new replica is Ready), scale back to 1 with --delete-data;
#                `cp -a` of the primary's whole data dir + `sync`; and `cp -a` of the same data dir
#                without its binlogs (mysql-bin.*, which mariadb-backup does not copy) + `sync`.
#                Page cache is dropped before each timed step when /proc/sys/vm/drop_caches is
#                writable (DROP_CACHES=auto|1|0), otherwise the figures are warm-cache.
#   pointselect  A --replicas 3 cluster; `sysbench oltp_point_select` prepared through rw, wait until
#                every replica has the primary's GTID position, then PS_THREADS threads for PS_TIME s
#                against: `direct` (one replica's own port, ordinal DIRECT_ORDINAL), `ro` (myset's ro
#                endpoint) and `haproxy` (HAProxy mode tcp, balance roundrobin over the same Ready
#                instances' ports). Targets are run interleaved for PS_ROUNDS rounds after a PS_WARMUP s
#                warm-up of each; the median tps per target is reported with ro/direct, ro/haproxy and
#                haproxy/direct.
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
#   PORT_BASE=23300                  uses PORT_BASE+1 .. PORT_BASE+8 on 127.0.0.1 (checked free)
#   UP_RUNS=3 BARE_RUNS=3 UP_TIMEOUT=600
#   CLONE_TABLES=8 CLONE_TABLE_SIZE=550000 CLONE_LOAD_THREADS=2 CLONE_RUNS=3 CLONE_SETTLE_MAX=120
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
DROP_CACHES=${DROP_CACHES:-auto}
PS_TABLES=${PS_TABLES:-4}
PS_TABLE_SIZE=${PS_TABLE_SIZE:-50000}
PS_THREADS=${PS_THREADS:-4}
PS_TIME=${PS_TIME:-20}
PS_WARMUP=${PS_WARMUP:-5}
PS_ROUNDS=${PS_ROUNDS:-3}
DIRECT_ORDINAL=${DIRECT_ORDINAL:-1}
KEEP_LOGS_DIR=${KEEP_LOGS_DIR:-/tmp/bench-logs-$$}
RESULTS_FILE=${RESULTS_FILE:-}

UP_RW=$((PORT_BASE + 1)) UP_RO=$((PORT_BASE + 2))
CL_RW=$((PORT_BASE + 3)) CL_RO=$((PORT_BASE + 4))
PS_RW=$((PORT_BASE + 5)) PS_RO=$((PORT_BASE + 6))
HAP_PORT=$((PORT_BASE + 7))
BARE_PORT=$((PORT_BASE + 8))

WORK=""          # scratch dir for copies, bare data dirs, haproxy config (inside STATE_DIR's parent)
CHILD=""         # the long-running child we are waiting on
HAP_PID=""
BARE_PID=""
CREATED_STATE=0

log() { printf '# %s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
result() {
    printf 'RESULT %s=%s\n' "$1" "$2"
    if [[ -n $RESULTS_FILE ]]; then printf 'RESULT %s=%s\n' "$1" "$2" >>"$RESULTS_FILE"; fi
}
die() { log "FAILED: $*"; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "nan"; else printf "%.3f", a / b }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.3f", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
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
for p in "$UP_RW" "$UP_RO" "$CL_RW" "$CL_RO" "$PS_RW" "$PS_RO" "$HAP_PORT" "$BARE_PORT"; do
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

# sql <port> <password> <statement>: one value/row per line, no header.
sql() { mariadb --no-defaults -h 127.0.0.1 -P "$1" -u myset -p"$2" -N -B -e "$3"; }

up_cluster() { # name replicas rw ro
    run "$MYSET" up --name "$1" --replicas "$2" --rw-port "$3" --ro-port "$4" --timeout "$UP_TIMEOUT" >"$WORK/up-$1.out" 2>&1 ||
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
    exec sysbench "$workload" --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$port" \
        --mysql-user=myset --mysql-password="$pass" --mysql-db="$db" \
        --tables="$tables" --table-size="$size" --threads="$threads" "$@" "$action"
}

# ---------------------------------------------------------------- 1. up

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
        destroy_cluster bench-up
    done
    local up_med
    up_med=$(median "${ups[@]}")
    result up3_seconds_median "$up_med"
    if ((BARE_RUNS > 0)); then
        local bare_med
        bare_med=$(median "${bare[@]}")
        result bare_install_start_seconds_median "$bare_med"
        result up3_over_bare_ratio "$(ratio "$up_med" "$bare_med")"
    fi
}

# ---------------------------------------------------------------- 2. clone

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

    local scales=() fulls=() nobins=() fulls_nosync=() nobins_nosync=() i t t2 port1 count dst ev
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

        log "clone: run $i/$CLONE_RUNS: cp -a of the whole data dir"
        dst=$WORK/copy
        rm -rf "$dst"
        drop_caches
        t0=$(now)
        run cp -a "$data" "$dst"
        t1=$(now)
        sync
        t2=$(now)
        fulls_nosync+=("$(elapsed "$t0" "$t1")")
        fulls+=("$(elapsed "$t0" "$t2")")
        result "clone_cp_full_seconds_run$i" "${fulls[-1]}"
        rm -rf "$dst"

        log "clone: run $i/$CLONE_RUNS: cp -a of the data dir without binlogs"
        drop_caches
        mkdir "$dst"
        t0=$(now)
        run find "$data" -mindepth 1 -maxdepth 1 ! -name 'mysql-bin.*' -exec cp -a -t "$dst" {} +
        t1=$(now)
        sync
        t2=$(now)
        nobins_nosync+=("$(elapsed "$t0" "$t1")")
        nobins+=("$(elapsed "$t0" "$t2")")
        result "clone_cp_without_binlogs_seconds_run$i" "${nobins[-1]}"
        rm -rf "$dst"
    done
    local s f n
    s=$(median "${scales[@]}")
    f=$(median "${fulls[@]}")
    n=$(median "${nobins[@]}")
    result clone_scale_seconds_median "$s"
    result clone_cp_full_seconds_median "$f"
    result clone_cp_full_nosync_seconds_median "$(median "${fulls_nosync[@]}")"
    result clone_cp_without_binlogs_seconds_median "$n"
    result clone_cp_without_binlogs_nosync_seconds_median "$(median "${nobins_nosync[@]}")"
    result clone_scale_over_cp_full_ratio "$(ratio "$s" "$f")"
    result clone_scale_over_cp_without_binlogs_ratio "$(ratio "$s" "$n")"
    destroy_cluster "$name"
}

# ---------------------------------------------------------------- 3. point select

sb_run() { # label port password seconds -> sets SB_TPS SB_P95 SB_ERR SB_REC
    local out=$WORK/ps-$1.log
    run sysbench_cmd "$2" "$3" sbpoint "$PS_TABLES" "$PS_TABLE_SIZE" "$PS_THREADS" oltp_point_select run \
        --time="$4" --report-interval=0 >"$out" 2>&1 || { tail -20 "$out" >&2; die "sysbench run against $1 (port $2) failed"; }
    awk '
        /transactions:/ { gsub(/[()]/, ""); tps = $3 }
        /95th percentile:/ { p95 = $3 }
        /ignored errors:/ { err = $3 }
        /reconnects:/ { rec = $2 }
        END { print tps, p95, err, rec }' "$out" >"$out.parsed"
    read -r SB_TPS SB_P95 SB_ERR SB_REC <"$out.parsed" || true
}

bench_pointselect() {
    local name=bench-ps
    log "pointselect: cluster $name --replicas 3"
    up_cluster "$name" 3 "$PS_RW" "$PS_RO"
    local pass
    pass=$(password_of "$name")
    sql "$PS_RW" "$pass" "CREATE DATABASE IF NOT EXISTS sbpoint"
    log "pointselect: prepare $PS_TABLES x $PS_TABLE_SIZE rows through rw"
    run sysbench_cmd "$PS_RW" "$pass" sbpoint "$PS_TABLES" "$PS_TABLE_SIZE" 2 oltp_point_select prepare \
        >"$WORK/ps-prepare.log" 2>&1 || { tail -20 "$WORK/ps-prepare.log" >&2; die "sysbench prepare failed"; }

    local st ports primary_port direct_port
    st=$(status_json "$name")
    primary_port=$(jq -r '.instances[] | select(.role == "primary") | .port' <<<"$st")
    mapfile -t ports < <(jq -r '.instances[] | select(.ready) | .port' <<<"$st")
    ((${#ports[@]} == 3)) || die "expected 3 Ready instances: $st"
    direct_port=$(jq -r --argjson o "$DIRECT_ORDINAL" '.instances[] | select(.ordinal == $o) | .port' <<<"$st")
    [[ -n $direct_port && $direct_port != null ]] || die "no instance with ordinal $DIRECT_ORDINAL"

    log "pointselect: waiting for every replica to reach the primary's GTID position"
    local want p caught t
    want=$(sql "$primary_port" "$pass" "SELECT @@gtid_binlog_pos")
    for ((t = 0; t < 600; t++)); do
        caught=1
        for p in "${ports[@]}"; do
            [[ $(sql "$p" "$pass" "SELECT @@gtid_current_pos") == "$want" ]] || caught=0
        done
        ((caught)) && break
        sleep 0.5
    done
    ((caught)) || die "replicas did not catch up to $want within 300s"
    result ps_gtid "$want"

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

    declare -A target_port=([direct]=$direct_port [ro]=$PS_RO [haproxy]=$HAP_PORT)
    local targets=(direct ro haproxy) tg r tps p95 err rec
    declare -A tps_list
    for tg in "${targets[@]}"; do
        log "pointselect: warm-up $tg ${PS_WARMUP}s"
        sb_run "warmup-$tg" "${target_port[$tg]}" "$pass" "$PS_WARMUP"
    done
    for ((r = 1; r <= PS_ROUNDS; r++)); do
        for tg in "${targets[@]}"; do
            log "pointselect: round $r/$PS_ROUNDS $tg ${PS_TIME}s"
            SB_TPS="" SB_P95="" SB_ERR="" SB_REC=""
            sb_run "$tg" "${target_port[$tg]}" "$pass" "$PS_TIME"
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

    local d ro h
    # shellcheck disable=SC2086
    d=$(median ${tps_list[direct]})
    # shellcheck disable=SC2086
    ro=$(median ${tps_list[ro]})
    # shellcheck disable=SC2086
    h=$(median ${tps_list[haproxy]})
    result ps_threads "$PS_THREADS"
    result ps_direct_tps_median "$d"
    result ps_ro_tps_median "$ro"
    result ps_haproxy_tps_median "$h"
    result ps_ro_over_direct_ratio "$(ratio "$ro" "$d")"
    result ps_ro_over_haproxy_ratio "$(ratio "$ro" "$h")"
    result ps_haproxy_over_direct_ratio "$(ratio "$h" "$d")"
    destroy_cluster "$name"
}

START=$(now)
if wants up; then bench_up; fi
if wants clone; then bench_clone; fi
if wants pointselect; then bench_pointselect; fi
result total_seconds "$(elapsed "$START" "$(now)")"
log "done"
