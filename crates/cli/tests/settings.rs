//! Server settings and rolling restarts against real servers: `config set` reaches every
//! instance under a steady writer with no acknowledged write lost; a value mariadbd refuses to
//! start with stops at the first replica and is rolled back; settings myset owns are refused;
//! `restart` restarts every server, one at a time, with no acknowledged write lost.

mod support;

use myset_api::{EventKind, ServerSettings};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::{
    app_ids, galera_available, serial, wait_until, Cluster, SteadyWriter, APP_SETUP, SLOW,
};

fn up(cluster: &Cluster, extra: &[&str]) {
    cluster.up_with(extra).ok();
    cluster.sql("rw", APP_SETUP).ok();
}

/// A new cluster up with `extra`, its servers' pids, and a steady writer under way.
fn under_writes(name: &str, extra: &[&str]) -> (Cluster, BTreeMap<u32, u32>, SteadyWriter) {
    let cluster = Cluster::new(name);
    up(&cluster, extra);
    let pids = server_pids(&cluster);
    let writer = SteadyWriter::start(&cluster);
    assert!(
        wait_until(Duration::from_secs(30), || writer.acked_count() >= 20),
        "the writer made no progress"
    );
    (cluster, pids, writer)
}

/// Stops the writer once it has written past the command that just returned, then checks
/// that every acknowledged id is on every instance. Returns the longest write pause since
/// `since`.
#[track_caller]
fn no_acknowledged_write_lost(cluster: &Cluster, writer: SteadyWriter, since: Instant) -> Duration {
    let after = writer.acked_count();
    assert!(
        wait_until(Duration::from_secs(30), || writer.acked_count()
            >= after + 20),
        "writes did not resume after the command"
    );
    let gap = writer.longest_gap_since(since);
    let acked: Vec<u32> = writer.stop().into_iter().map(|(id, _)| id).collect();
    for ordinal in 0..3u32 {
        let target = ordinal.to_string();
        let mut missing = Vec::new();
        let caught_up = wait_until(Duration::from_secs(30), || {
            let have: std::collections::BTreeSet<u32> = app_ids(cluster, &cluster.name, &target)
                .into_iter()
                .collect();
            missing = acked
                .iter()
                .copied()
                .filter(|id| !have.contains(id))
                .collect();
            missing.is_empty()
        });
        assert!(
            caught_up,
            "instance {ordinal} lacks {} of {} acknowledged writes: {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(20)]
        );
    }
    gap
}

fn server_pids(cluster: &Cluster) -> BTreeMap<u32, u32> {
    cluster
        .status()
        .instances
        .iter()
        .map(|i| (i.ordinal, i.pid.expect("a running server")))
        .collect()
}

fn variables(cluster: &Cluster, ordinal: u32, names: &str) -> Vec<String> {
    cluster.query(&ordinal.to_string(), &format!("SELECT {names}"))[0].clone()
}

/// Asserts each server's max_connections by its role now.
#[track_caller]
fn max_connections_by_role(cluster: &Cluster, primary: &str, replica: &str) {
    let status = cluster.status();
    for i in &status.instances {
        let expected = if i.ordinal == status.primary {
            primary
        } else {
            replica
        };
        assert_eq!(
            variables(cluster, i.ordinal, "@@max_connections"),
            vec![expected],
            "instance {}",
            i.ordinal
        );
    }
}

#[test]
fn config_set_reaches_every_instance_under_a_steady_writer_and_loses_no_write() {
    let _serial = serial();
    let (cluster, before, writer) = under_writes("cfg", &["--replicas", "3"]);
    let started = Instant::now();

    // innodb_log_buffer_size is static (a rolling restart), max_connections dynamic.
    let out = cluster
        .cmd_timeout(
            &[
                "config",
                "set",
                "innodb_log_buffer_size=33554432",
                "max_connections=333",
            ],
            SLOW,
        )
        .ok()
        .to_string();
    assert!(out.contains("restarted one at a time"), "{out}");
    let gap = no_acknowledged_write_lost(&cluster, writer, started);
    eprintln!("longest write pause during config set: {gap:?}");

    for ordinal in 0..3 {
        assert_eq!(
            variables(
                &cluster,
                ordinal,
                "@@innodb_log_buffer_size, @@max_connections"
            ),
            vec!["33554432", "333"],
            "instance {ordinal}"
        );
    }
    let after = server_pids(&cluster);
    for (ordinal, pid) in &before {
        assert_ne!(after[ordinal], *pid, "instance {ordinal} was not restarted");
    }
    // The primary moved once, by a switchover, not a failover.
    let status = cluster.status();
    assert!(status.converged());
    assert_ne!(status.primary, 0);
    let kinds: Vec<EventKind> = cluster.events().into_iter().map(|e| e.kind).collect();
    assert!(kinds.contains(&EventKind::Switchover));
    assert!(!kinds.contains(&EventKind::Failover));
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == EventKind::InstanceRestarted)
            .count(),
        3
    );

    let shown: ServerSettings =
        serde_json::from_str(cluster.cmd(&["config", "show", "-o", "json"]).ok())
            .expect("config show -o json");
    assert_eq!(shown.all["innodb_log_buffer_size"], "33554432");
    assert_eq!(shown.all["max_connections"], "333");
    let table = cluster.cmd(&["config", "show"]).ok().to_string();
    assert!(
        table.contains("max_connections") && table.contains("333"),
        "{table}"
    );

    // `-` and `_` are one key: the same value again changes nothing.
    let again = cluster
        .cmd(&["config", "set", "Max-Connections=333"])
        .ok()
        .to_string();
    assert!(again.contains("nothing to change"), "{again}");
    // A dynamic change alone is applied live: nobody restarts.
    cluster
        .cmd(&["config", "set", "--role", "replica", "max_connections=444"])
        .ok();
    max_connections_by_role(&cluster, "333", "444");
    assert_eq!(
        server_pids(&cluster),
        after,
        "a live change restarted a server"
    );

    // The settings survive a full restart, by role.
    cluster.cmd(&["down"]).ok();
    cluster.up_with(&[]).ok();
    max_connections_by_role(&cluster, "333", "444");
    for ordinal in 0..3 {
        assert_eq!(
            variables(&cluster, ordinal, "@@innodb_log_buffer_size"),
            vec!["33554432"]
        );
    }
}

#[test]
fn a_value_mariadbd_refuses_stops_at_the_first_replica_and_owned_settings_are_refused() {
    let _serial = serial();
    let cluster = Cluster::new("bad");
    up(&cluster, &["--replicas", "3"]);
    let before = server_pids(&cluster);

    // thread_handling is static, and mariadbd 10.11 exits at start on an unknown value.
    let error = cluster
        .cmd_timeout(&["config", "set", "thread_handling=bogus"], SLOW)
        .one_line_error();
    assert!(error.contains("thread_handling"), "{error}");
    assert!(error.contains("mariadbd.log"), "{error}");
    assert!(error.contains("rolled back"), "{error}");
    // The first replica was restarted twice (the bad start, the rollback); nothing else moved.
    let status = cluster
        .wait_converged(Duration::from_secs(60))
        .expect("every instance Ready again");
    assert_eq!(status.primary, 0);
    let after = server_pids(&cluster);
    assert_ne!(after[&1], before[&1]);
    assert_eq!(after[&0], before[&0], "the primary was touched");
    assert_eq!(after[&2], before[&2], "the second replica was touched");
    for ordinal in 0..3 {
        assert_eq!(
            variables(&cluster, ordinal, "@@thread_handling"),
            vec!["one-thread-per-connection"]
        );
    }
    let shown = cluster
        .cmd(&["config", "show", "-o", "json"])
        .ok()
        .to_string();
    assert!(!shown.contains("thread_handling"), "{shown}");
    let events = cluster.events();
    assert!(events
        .iter()
        .any(|e| e.kind == EventKind::RollingRestartFailed));
    assert!(!events.iter().any(|e| e.kind == EventKind::Switchover));
    cluster.sql("rw", "INSERT INTO app.t VALUES (1)").ok();

    // Settings myset owns, unknown variables and bad values: one line each, nothing changed.
    for (args, needles) in [
        (
            vec!["config", "set", "server_id=5"],
            vec!["server_id is managed by myset", "100 + the ordinal"],
        ),
        (
            vec!["config", "set", "--role", "primary", "read-only=OFF"],
            vec!["read_only is managed by myset", "fencing"],
        ),
        (
            vec!["config", "set", "gtid_strict_mode=OFF"],
            vec!["gtid_strict_mode is managed by myset"],
        ),
        (
            vec!["config", "set", "no_such_variable=1"],
            vec!["no_such_variable is not a variable of this server"],
        ),
        (
            vec!["config", "set", "max_connections=1\nserver_id=3"],
            vec!["max_connections: the value contains"],
        ),
        (
            vec!["config", "set", "max_connections=lots"],
            vec!["max_connections=lots", "Incorrect argument type"],
        ),
    ] {
        let error = cluster.cmd(&args).error_containing(&needles);
        assert!(!error.contains('\n'), "{error}");
    }
    // A malformed argument is clap's (usage) error, kept whole: what is wrong and an example.
    cluster
        .cmd(&["config", "set", "max_connections"])
        .usage_error(&["expected KEY=VALUE", "max_connections=500"]);
    assert_eq!(server_pids(&cluster), after);
    assert!(cluster.status().converged());
    let shown = cluster.cmd(&["config", "show"]).ok().to_string();
    assert!(shown.contains("no server settings"), "{shown}");
}

#[test]
fn restart_restarts_every_server_one_at_a_time_and_loses_no_write() {
    let _serial = serial();
    let (cluster, before, writer) = under_writes("rr", &["--replicas", "3"]);
    let started = Instant::now();
    let out = cluster.cmd_timeout(&["restart"], SLOW).ok().to_string();
    assert!(out.contains("rr-1, rr-2, rr-0"), "{out}");
    assert!(out.contains("switched over: primary rr-0"), "{out}");
    let gap = no_acknowledged_write_lost(&cluster, writer, started);
    eprintln!("longest write pause during restart: {gap:?}");
    let after = server_pids(&cluster);
    for (ordinal, pid) in &before {
        assert_ne!(after[ordinal], *pid, "instance {ordinal} was not restarted");
    }
    // Each server is a fresh one.
    for ordinal in 0..3 {
        let uptime: u64 = cluster.query(
            &ordinal.to_string(),
            "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'UPTIME'",
        )[0][0]
            .parse()
            .expect("uptime");
        // MariaDB's Uptime is whole seconds between two truncated clock readings, so it may
        // exceed the real time since the start by up to a second.
        let elapsed = started.elapsed().as_secs();
        assert!(
            uptime <= elapsed + 1,
            "instance {ordinal} up {uptime}s, restarted at most {elapsed}s ago"
        );
    }
}

#[test]
fn galera_restarts_member_by_member_without_a_switchover() {
    if !galera_available() {
        return;
    }
    let _serial = serial();
    let (cluster, before, writer) =
        under_writes("gr", &["--replicas", "3", "--topology", "galera"]);
    let started = Instant::now();
    let out = cluster.cmd_timeout(&["restart"], SLOW).ok().to_string();
    assert!(out.contains("restarted one at a time"), "{out}");
    assert!(!out.contains("switched over"), "{out}");
    no_acknowledged_write_lost(&cluster, writer, started);
    let after = server_pids(&cluster);
    for (ordinal, pid) in &before {
        assert_ne!(after[ordinal], *pid, "member {ordinal} was not restarted");
    }
    cluster
        .cmd(&["config", "set", "--role", "primary", "max_connections=10"])
        .error_containing(&["--role all"]);
}
