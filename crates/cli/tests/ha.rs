//! High availability, fault by fault, with explicit assertions: a switchover, a partitioned
//! primary that fences itself and rejoins, and an async-mode primary with a write nobody else
//! has, which is set aside and re-cloned. The partition tests need root (network namespaces)
//! and are skipped with a message otherwise.

mod support;

use myset_api::{ChangeKind, EventKind};
use std::time::Duration;
use support::{wait_until, Cluster, SLOW};

const SETUP: &str = "CREATE DATABASE ha; \
    CREATE TABLE ha.t (id INT PRIMARY KEY); INSERT INTO ha.t VALUES (1)";

fn up(cluster: &Cluster, extra: &[&str]) {
    let (rw, ro) = (cluster.rw_port.to_string(), cluster.ro_port.to_string());
    let mut args = vec!["up", "--rw-port", &rw, "--ro-port", &ro, "--timeout", "280"];
    args.extend_from_slice(extra);
    cluster.cmd_timeout(&args, SLOW).ok();
}

fn count(cluster: &Cluster, target: &str) -> Option<String> {
    cluster
        .try_query(target, "SELECT COUNT(*) FROM ha.t")
        .and_then(|rows| rows.first()?.first().cloned())
}

/// Waits until the controller has promoted someone other than `old`.
#[track_caller]
fn wait_for_failover_from(cluster: &Cluster, old: u32) {
    assert!(
        wait_until(Duration::from_secs(30), || cluster
            .try_status()
            .is_some_and(|s| s.primary != old)),
        "no failover away from the partitioned primary"
    );
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn event_kinds(cluster: &Cluster) -> Vec<EventKind> {
    cluster.events().into_iter().map(|e| e.kind).collect()
}

#[test]
fn switchover_moves_writes_and_the_demoted_primary_refuses_them() {
    let cluster = Cluster::new("sw");
    up(&cluster, &["--replicas", "3"]);
    cluster.sql("rw", SETUP).ok();
    let before = cluster.status();
    assert_eq!(before.primary, 0);

    cluster.cmd(&["switchover", "--to", "2"]).ok();
    let after = cluster.status();
    assert_eq!(after.primary, 2);
    assert_eq!(
        after.term,
        before.term + 1,
        "a switchover starts a new term"
    );
    let change = after.last_primary_change.expect("the change is recorded");
    assert_eq!(
        (change.kind, change.from, change.to),
        (ChangeKind::Switchover, 0, 2)
    );

    // rw reaches the new primary; the demoted one refuses the user's writes.
    assert_eq!(cluster.query("rw", "SELECT @@server_id"), vec![vec!["102"]]);
    cluster.sql("rw", "INSERT INTO ha.t VALUES (2)").ok();
    cluster
        .sql("0", "INSERT INTO ha.t VALUES (3)")
        .error_containing(&["read-only"]);
    // The demoted primary follows the new one.
    assert!(
        wait_until(Duration::from_secs(20), || count(&cluster, "0").as_deref()
            == Some("2")),
        "instance 0 did not replicate from the new primary"
    );
    assert!(wait_until(Duration::from_secs(20), || cluster
        .try_status()
        .is_some_and(|s| s.converged())));

    cluster
        .cmd(&["switchover", "--to", "2"])
        .error_containing(&["already the primary"]);
    cluster
        .cmd(&["switchover", "--to", "9"])
        .error_containing(&["not a member"]);
}

#[test]
fn a_partitioned_primary_fences_itself_and_rejoins() {
    if !is_root() {
        eprintln!("skipped: network namespaces need root");
        return;
    }
    let cluster = Cluster::new("part");
    up(&cluster, &["--replicas", "3", "--netns"]);
    cluster.sql("rw", SETUP).ok();

    cluster.cmd(&["partition", "0"]).ok();
    wait_for_failover_from(&cluster, 0);
    // On its side of the partition, the old primary refuses writes from the user account.
    assert!(
        wait_until(Duration::from_secs(15), || cluster
            .sql_inside(0, "SELECT @@read_only")
            .is_ok_and(|v| v == "1")),
        "the isolated primary did not fence itself"
    );
    let refused = cluster.sql_inside(0, "INSERT INTO ha.t VALUES (7)");
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("read-only")),
        "a write on the fenced primary was not refused: {refused:?}"
    );
    // Writes go on through rw on the other side.
    cluster.sql("rw", "INSERT INTO ha.t VALUES (2)").ok();

    cluster.cmd(&["partition", "0", "--heal"]).ok();
    assert!(
        wait_until(Duration::from_secs(90), || cluster
            .try_status()
            .is_some_and(
                |s| s.converged() && s.instances.iter().all(|i| i.ready)
            )),
        "the cluster did not converge after the partition healed"
    );
    assert!(
        wait_until(Duration::from_secs(30), || count(&cluster, "0").as_deref()
            == Some("2")),
        "the former primary did not catch up"
    );
    let kinds = event_kinds(&cluster);
    for kind in [EventKind::Failover, EventKind::Promoted] {
        assert!(kinds.contains(&kind), "no {kind} event in {kinds:?}");
    }
    assert!(
        kinds
            .iter()
            .any(|k| [EventKind::Rejoined, EventKind::Errant].contains(k)),
        "the former primary's return was not decided: {kinds:?}"
    );
}

#[test]
fn an_async_primary_with_an_unreplicated_write_is_set_aside_and_recloned() {
    if !is_root() {
        eprintln!("skipped: network namespaces need root");
        return;
    }
    let cluster = Cluster::new("errant");
    up(
        &cluster,
        &["--replicas", "3", "--netns", "--durability", "async"],
    );
    cluster.sql("rw", SETUP).ok();
    assert!(wait_until(Duration::from_secs(20), || {
        count(&cluster, "1").as_deref() == Some("1") && count(&cluster, "2").as_deref() == Some("1")
    }));

    cluster.cmd(&["partition", "0"]).ok();
    // In async mode a client beside the isolated primary can still commit, until it fences
    // itself: that is the write async mode may lose.
    let written = cluster.sql_inside(0, "INSERT INTO ha.t VALUES (999)");
    assert!(written.is_ok(), "the direct write failed: {written:?}");
    wait_for_failover_from(&cluster, 0);
    cluster.cmd(&["partition", "0", "--heal"]).ok();
    assert!(
        wait_until(Duration::from_secs(120), || cluster
            .try_status()
            .is_some_and(|s| s.converged())),
        "the cluster did not converge after the partition healed"
    );

    let kinds = event_kinds(&cluster);
    assert!(
        kinds.contains(&EventKind::Errant),
        "no errant event: {kinds:?}"
    );
    let aside: Vec<String> = std::fs::read_dir(cluster.instance_dir(0))
        .expect("instance dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("data.errant-term"))
        .collect();
    assert_eq!(aside.len(), 1, "the diverged data dir is kept aside once");
    // The re-cloned instance has the cluster's history, not its own lost write.
    assert!(
        wait_until(Duration::from_secs(30), || count(&cluster, "0").as_deref()
            == Some("1")),
        "the re-cloned instance does not match the primary"
    );
    assert_eq!(count(&cluster, "rw").as_deref(), Some("1"));
    assert!(cluster
        .query("0", "SELECT id FROM ha.t WHERE id = 999")
        .is_empty());
}
