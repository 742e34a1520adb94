use super::observed::*;
use super::*;
use myset_api::{
    ArchiveGapInfo, ArchiveInfo, BackupStatus, BaseBackupInfo, ClusterState, ClusterStatus,
    Credentials, GaleraStatus, GtidPositions, InstanceStatus, ReplicationStatus, Role, WsrepState,
};
use std::collections::{BTreeMap, BTreeSet};
use tokio::time::Instant;

const NOW: i64 = 1_800_000_000;

fn cluster(instances: Vec<InstanceStatus>) -> ClusterStatus {
    let mut state = ClusterState::new("demo", 3, "127.0.0.1", 1, 2);
    state.term = 4;
    let credentials = Credentials {
        user: "u".into(),
        password_file: "p".into(),
    };
    ClusterStatus::from_state(&state, true, credentials, instances)
}

fn instance(ordinal: u32, role: Role, ready: bool) -> InstanceStatus {
    let state = ClusterState::new("demo", 3, "127.0.0.1", 1, 2);
    InstanceStatus {
        role,
        ready,
        ..InstanceStatus::from_state(&state, ordinal)
    }
}

fn gtid(current: &str) -> Option<GtidPositions> {
    Some(GtidPositions {
        current: current.into(),
        binlog: current.into(),
        slave: String::new(),
    })
}

fn replica(ordinal: u32, lag: Option<u64>, current: &str) -> InstanceStatus {
    InstanceStatus {
        gtid: gtid(current),
        replication: Some(ReplicationStatus {
            io_running: true,
            sql_running: lag.is_some(),
            seconds_behind: lag,
            ..Default::default()
        }),
        ..instance(ordinal, Role::Replica, true)
    }
}

fn live(restarts: u32) -> AgentFacts {
    AgentFacts {
        live: true,
        server_restarts: restarts,
    }
}

/// The value of the one sample of `desc` whose labels include `with`.
#[track_caller]
fn value(samples: &[Sample], desc: &Desc, with: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = samples
        .iter()
        .filter(|s| s.desc == desc)
        .filter(|s| {
            with.iter()
                .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.value)
        .collect();
    assert!(found.len() <= 1, "{} {with:?}: {found:?}", desc.name);
    found.first().copied()
}

#[test]
fn a_replication_cluster_maps_to_instance_gauges() {
    let primary = InstanceStatus {
        gtid: gtid("0-100-42"),
        ..instance(0, Role::Primary, true)
    };
    let status = cluster(vec![
        primary,
        replica(1, Some(7), "0-100-40"),
        replica(2, None, "0-100-42,1-101-9"),
        replica(3, Some(0), ""),
        instance(4, Role::Replica, false),
    ]);
    // Ordinal 2's agent did not answer.
    let agents = BTreeMap::from([(0, live(2)), (1, live(0))]);
    let s = status_samples(&status, &agents, NOW);

    assert_eq!(value(&s, &TERM, &[]), Some(4.0));
    assert_eq!(value(&s, &INSTANCES_DESIRED, &[]), Some(3.0));
    assert_eq!(value(&s, &PRIMARY_READY, &[]), Some(1.0));
    let of = |o: &'static str| [("instance", o), ("ordinal", &o[5..])];
    assert_eq!(value(&s, &INSTANCE_UP, &of("demo-0")), Some(1.0));
    assert_eq!(value(&s, &INSTANCE_UP, &of("demo-2")), Some(0.0));
    assert_eq!(value(&s, &INSTANCE_READY, &of("demo-2")), Some(1.0));
    let role = |o, r| value(&s, &INSTANCE_ROLE, &[("instance", o), ("role", r)]);
    assert_eq!(role("demo-0", "primary"), Some(1.0));
    assert_eq!(role("demo-0", "replica"), Some(0.0));
    assert_eq!(role("demo-1", "primary"), Some(0.0));
    assert_eq!(role("demo-1", "replica"), Some(1.0));
    let seq = |o| value(&s, &INSTANCE_GTID_SEQUENCE, &[("instance", o)]);
    assert_eq!(seq("demo-0"), Some(42.0));
    assert_eq!(seq("demo-1"), Some(40.0));
    assert_eq!(
        seq("demo-2"),
        Some(42.0),
        "only the cluster's domain counts"
    );
    assert_eq!(seq("demo-3"), Some(0.0), "no transaction yet");
    assert_eq!(seq("demo-4"), None, "position unknown");
    assert_eq!(
        value(&s, &REPLICATION_LAG, &[("instance", "demo-1")]),
        Some(7.0)
    );
    assert_eq!(
        value(&s, &REPLICATION_LAG, &[("instance", "demo-2")]),
        None,
        "no lag is reported while the applier is stopped"
    );
    let thread = |o, t| value(&s, &REPLICATION_RUNNING, &[("instance", o), ("thread", t)]);
    assert_eq!(thread("demo-2", "io"), Some(1.0));
    assert_eq!(thread("demo-2", "sql"), Some(0.0));
    assert_eq!(
        thread("demo-0", "io"),
        None,
        "a primary replicates from nobody"
    );
    assert_eq!(
        value(&s, &SERVER_RESTARTS, &[("instance", "demo-0")]),
        Some(2.0)
    );
    assert_eq!(value(&s, &SERVER_RESTARTS, &[("instance", "demo-2")]), None);
    assert!(s
        .iter()
        .all(|x| x.desc != &GALERA_STATE && x.desc != &BACKUP_AGE));
}

#[test]
fn a_primary_that_is_not_ready_is_reported() {
    let status = cluster(vec![
        instance(0, Role::Primary, false),
        replica(1, Some(0), "0-100-1"),
    ]);
    let s = status_samples(&status, &BTreeMap::new(), NOW);
    assert_eq!(value(&s, &PRIMARY_READY, &[]), Some(0.0));
}

#[test]
fn a_galera_member_reports_one_state_of_all() {
    let member = InstanceStatus {
        galera: Some(GaleraStatus {
            state: WsrepState::Donor,
            primary_component: true,
            cluster_size: 3,
            seqno: 17,
            cluster_uuid: "u".into(),
            conf_id: 5,
        }),
        ..instance(1, Role::Replica, true)
    };
    let s = status_samples(&cluster(vec![member]), &BTreeMap::new(), NOW);
    let state = |st| value(&s, &GALERA_STATE, &[("instance", "demo-1"), ("state", st)]);
    assert_eq!(state("donor"), Some(1.0));
    for other in ["joining", "joined", "synced", "initializing"] {
        assert_eq!(state(other), Some(0.0), "{other}");
    }
    let one = |d| value(&s, d, &[("instance", "demo-1")]);
    assert_eq!(one(&GALERA_PRIMARY_COMPONENT), Some(1.0));
    assert_eq!(one(&GALERA_CLUSTER_SIZE), Some(3.0));
    assert_eq!(one(&GALERA_LAST_COMMITTED), Some(17.0));
}

fn backup(archive: Option<ArchiveInfo>) -> Option<BackupStatus> {
    Some(BackupStatus {
        store: "/b".into(),
        every_seconds: None,
        keep: 7,
        last_base_backup: Some(BaseBackupInfo {
            id: "x".into(),
            finished_at: NOW - 3600,
            gtid: "0-100-5".into(),
            bytes: 1 << 20,
        }),
        archive,
    })
}

fn archive(behind: Option<u64>, last_event_at: Option<i64>, gaps: usize) -> ArchiveInfo {
    ArchiveInfo {
        source: Some("127.0.0.1:1".into()),
        last_gtid: Some("0-100-5".into()),
        last_event_at,
        behind_transactions: behind,
        gaps: (0..gaps)
            .map(|_| ArchiveGapInfo {
                expected: "e".into(),
                received: "r".into(),
                at: NOW,
            })
            .collect(),
        last_error: None,
    }
}

#[test]
fn backups_and_the_archive_map_to_ages_and_lags() {
    let samples = |a| {
        let mut status = cluster(vec![]);
        status.backup = backup(a);
        status_samples(&status, &BTreeMap::new(), NOW)
    };
    let s = samples(Some(archive(Some(0), Some(NOW - 500), 0)));
    assert_eq!(value(&s, &BACKUP_AGE, &[]), Some(3600.0));
    assert_eq!(value(&s, &BACKUP_SIZE, &[]), Some(1048576.0));
    assert_eq!(
        value(&s, &ARCHIVE_LAG, &[]),
        Some(0.0),
        "an archive holding everything is not behind, however old its last event"
    );
    assert_eq!(value(&s, &ARCHIVE_CONNECTED, &[]), Some(1.0));
    assert_eq!(value(&s, &ARCHIVE_GAPS, &[]), Some(0.0));

    let s = samples(Some(archive(Some(12), Some(NOW - 30), 2)));
    assert_eq!(value(&s, &ARCHIVE_LAG, &[]), Some(30.0));
    assert_eq!(value(&s, &ARCHIVE_BEHIND, &[]), Some(12.0));
    assert_eq!(value(&s, &ARCHIVE_GAPS, &[]), Some(2.0));

    let s = samples(Some(archive(None, None, 0)));
    assert_eq!(value(&s, &ARCHIVE_LAG, &[]), None, "unknown is not zero");
    assert_eq!(value(&s, &ARCHIVE_BEHIND, &[]), None);

    let s = samples(None);
    assert_eq!(value(&s, &BACKUP_AGE, &[]), Some(3600.0));
    assert_eq!(value(&s, &ARCHIVE_GAPS, &[]), None, "no archive (Galera)");
}

#[test]
fn the_counted_event_kinds() {
    assert_eq!(counted(EventKind::Failover), Some(Counted::Failover));
    assert_eq!(counted(EventKind::Switchover), Some(Counted::Switchover));
    assert_eq!(counted(EventKind::Fenced), Some(Counted::Fence));
    assert_eq!(counted(EventKind::Errant), Some(Counted::ErrantRejoin));
    assert_eq!(
        counted(EventKind::AgentRestarted),
        Some(Counted::AgentRestart)
    );
    for kind in [
        EventKind::FailoverHeld,
        EventKind::FailoverFailed,
        EventKind::SwitchoverFailed,
        EventKind::AgentStarted,
        EventKind::Promoted,
    ] {
        assert_eq!(counted(kind), None, "{kind}");
    }
}

#[test]
fn events_are_counted_in_both_formats() {
    let m = Metrics::new("demo");
    m.count_event(EventKind::Failover, Some(("demo-0".into(), 0)));
    m.count_event(EventKind::Failover, None);
    m.count_event(EventKind::AgentRestarted, Some(("demo-2".into(), 2)));
    m.count_event(EventKind::Ready, Some(("demo-2".into(), 2)));
    m.clone_finished(Duration::from_secs(3));

    let text = m.render(Vec::new(), Format::Prometheus);
    assert!(
        text.contains("# TYPE myset_failovers_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains("myset_failovers_total{cluster=\"demo\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "myset_agent_restarts_total{cluster=\"demo\",instance=\"demo-2\",ordinal=\"2\"} 1\n"
        ),
        "{text}"
    );
    assert!(text.contains("myset_clone_duration_seconds_count{cluster=\"demo\"} 1\n"));
    assert!(
        !text.contains("# EOF") && !text.contains("# UNIT"),
        "{text}"
    );

    let open = m.render(Vec::new(), Format::OpenMetrics);
    assert!(open.contains("# TYPE myset_failovers counter\n"), "{open}");
    assert!(open.ends_with("# EOF\n"), "{open}");
}

#[test]
fn observed_samples_are_written_once_per_family_with_the_cluster_label() {
    let m = Metrics::new("demo");
    let status = cluster(vec![replica(1, Some(3), "0-100-1")]);
    let samples = status_samples(&status, &BTreeMap::from([(1, live(4))]), NOW);
    let text = m.render(samples, Format::Prometheus);
    assert_eq!(
        text.matches("# TYPE myset_instance_role gauge\n").count(),
        1
    );
    assert!(
        text.contains("myset_term{cluster=\"demo\"} 4.0\n"),
        "{text}"
    );
    assert!(text.contains(
        "myset_replication_lag_seconds{cluster=\"demo\",instance=\"demo-1\",ordinal=\"1\"} 3.0\n"
    ), "{text}");
    assert!(
        text.contains("# TYPE myset_server_restarts_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "myset_server_restarts_total{cluster=\"demo\",instance=\"demo-1\",ordinal=\"1\"} 4.0\n"
        ),
        "{text}"
    );
}

#[test]
fn openmetrics_counters_become_classic_counters() {
    let open = "# HELP a_b Help text.\n# TYPE a_b counter\na_b_total 1\n\
        # HELP c_seconds Other.\n# TYPE c_seconds gauge\n# UNIT c_seconds seconds\nc_seconds 2\n# EOF\n";
    assert_eq!(
        to_prometheus_text(open),
        "# HELP a_b_total Help text.\n# TYPE a_b_total counter\na_b_total 1\n\
        # HELP c_seconds Other.\n# TYPE c_seconds gauge\nc_seconds 2\n"
    );
}

#[test]
fn prometheus_gets_openmetrics_and_others_the_classic_format() {
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
    assert_eq!(Format::negotiate(Some("*/*")), Format::Prometheus);
    assert_eq!(Format::negotiate(None), Format::Prometheus);
}

#[test]
fn a_clone_is_timed_from_the_start_to_the_server_starting() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let cloning = Phase::Cloning { donor: 0, bytes: 1 };
    let mut clock = CloneClock::default();
    clock.started(at(0));
    assert_eq!(
        clock.observe(
            &Phase::Waiting {
                reason: "donor".into()
            },
            at(1)
        ),
        None
    );
    assert_eq!(clock.observe(&cloning, at(2)), None);
    assert_eq!(clock.observe(&Phase::Preparing { donor: 0 }, at(5)), None);
    assert_eq!(
        clock.observe(&Phase::Starting, at(9)),
        Some(Duration::from_secs(9))
    );
    assert_eq!(clock.observe(&Phase::Running, at(10)), None, "counted once");

    // A controller that adopts an agent mid-clone times from its first sight of the clone.
    let mut adopted = CloneClock::default();
    assert_eq!(adopted.observe(&cloning, at(20)), None);
    assert_eq!(
        adopted.observe(&Phase::Running, at(23)),
        Some(Duration::from_secs(3))
    );

    // A server started from its own data was no clone; a stop abandons a clone.
    let mut own = CloneClock::default();
    assert_eq!(own.observe(&Phase::Running, at(1)), None);
    let mut stopped = CloneClock::default();
    stopped.observe(&cloning, at(1));
    stopped.observe(&Phase::Stopping, at(2));
    assert_eq!(stopped.observe(&Phase::Running, at(3)), None);
}

/// Every series name the controller can export: a render of a cluster with every kind of
/// sample in it (replication, Galera, backups, the archive) and every instrument touched.
fn exported_series() -> BTreeSet<String> {
    let m = Metrics::new("demo");
    m.count_event(EventKind::AgentRestarted, Some(("demo-1".into(), 1)));
    m.clone_finished(Duration::from_secs(1));
    let galera = InstanceStatus {
        galera: Some(GaleraStatus {
            state: WsrepState::Synced,
            primary_component: true,
            cluster_size: 3,
            seqno: 1,
            cluster_uuid: "u".into(),
            conf_id: 1,
        }),
        ..instance(2, Role::Replica, true)
    };
    let mut status = cluster(vec![
        instance(0, Role::Primary, true),
        replica(1, Some(1), "0-100-1"),
        galera,
    ]);
    status.backup = backup(Some(archive(Some(1), Some(NOW), 1)));
    let agents = BTreeMap::from([(0, live(0)), (1, live(0)), (2, live(0))]);
    let text = m.render(status_samples(&status, &agents, NOW), Format::Prometheus);
    let names: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect();
    for desc in OBSERVED {
        assert!(
            names
                .iter()
                .any(|n| n.starts_with(&format!("myset_{}", desc.name))),
            "the fixture lacks {}",
            desc.name
        );
    }
    names
}

/// The `myset_…` names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("myset_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// Every `expr` string anywhere in `value`.
fn exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match v {
                    serde_json::Value::String(s) if k == "expr" => out.push(s.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

fn monitoring_file(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/monitoring")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[track_caller]
fn assert_known(exprs: &[String], exported: &BTreeSet<String>, file: &str) {
    assert!(!exprs.is_empty(), "{file} has no expressions");
    for expr in exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{file}: {expr:?} uses no myset metric");
        for name in names {
            assert!(
                exported.contains(&name),
                "{file}: {name} in {expr:?} is not exported; exported: {exported:?}"
            );
        }
    }
}

#[test]
fn the_dashboard_uses_only_exported_metrics() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&monitoring_file("grafana-dashboard.json")).expect("valid JSON");
    assert!(dashboard["title"].is_string() && dashboard["panels"].is_array());
    let mut found = Vec::new();
    exprs(&dashboard, &mut found);
    assert_known(&found, &exported_series(), "grafana-dashboard.json");
}

#[test]
fn the_alerts_use_only_exported_metrics() {
    let rules: serde_json::Value =
        serde_norway::from_str(&monitoring_file("alerts.yaml")).expect("valid YAML");
    let mut found = Vec::new();
    exprs(&rules, &mut found);
    assert_known(&found, &exported_series(), "alerts.yaml");
}

#[test]
fn metric_names_are_found_in_expressions() {
    assert_eq!(
        metric_names("sum(rate(myset_failovers_total[5m])) > myset_term"),
        vec!["myset_failovers_total", "myset_term"]
    );
}
