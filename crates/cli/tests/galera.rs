//! The Galera topology end to end, with real mariadbd and Debian's galera-4 on loopback:
//! three members Synced and each writable, rw surviving a SIGKILL of its member, a member
//! rejoining by incremental transfer, and the two full outages (`down`, then every instance
//! killed at once) recovered by bootstrapping the newest member, every write kept.
//!
//! Needs galera-4 (scripts/install-deps installs it); skipped without it, except under CI.

mod support;

use myset_api::{EventKind, Topology, WsrepState};
use std::time::Duration;
use support::{wait_until, Cluster};

const SETUP: &str =
    "CREATE DATABASE g; CREATE TABLE g.t (id INT PRIMARY KEY AUTO_INCREMENT, member INT)";

fn count(cluster: &Cluster, target: &str) -> Option<u64> {
    cluster
        .try_query(target, "SELECT COUNT(*) FROM g.t")
        .and_then(|rows| rows.first()?.first()?.parse().ok())
}

/// Every member Ready, Synced, in a Primary component of all of them.
#[track_caller]
fn wait_all_synced(cluster: &Cluster, n: usize) {
    let synced = wait_until(Duration::from_secs(240), || {
        cluster.try_status().is_some_and(|s| {
            s.instances.len() == n
                && s.instances.iter().all(|i| {
                    i.ready
                        && i.galera.as_ref().is_some_and(|g| {
                            g.state == WsrepState::Synced
                                && g.primary_component
                                && g.cluster_size == n as u32
                        })
                })
        })
    });
    assert!(synced, "not all Synced: {:#?}", cluster.try_status());
}

/// Inserts through `target`; true when acknowledged.
fn write(cluster: &Cluster, target: &str, member: u32) -> bool {
    cluster
        .sql(
            target,
            &format!("INSERT INTO g.t (member) VALUES ({member})"),
        )
        .success()
}

#[test]
fn galera_members_are_all_writable_survive_kills_and_full_outages() {
    if !support::galera_available() {
        return;
    }
    let cluster = Cluster::new("galera");
    cluster.up_with(&["--topology", "galera"]).ok();
    wait_all_synced(&cluster, 3);
    let status = cluster.status();
    assert_eq!(status.topology, Topology::Galera);

    // Every member takes writes, and every write is everywhere.
    cluster.sql("0", SETUP).ok();
    for o in 0..3u32 {
        assert!(
            write(&cluster, &o.to_string(), o),
            "member {o} refused a write"
        );
    }
    let mut acked = 3u64;
    for o in 0..3 {
        assert!(
            wait_until(Duration::from_secs(10), || count(&cluster, &o.to_string())
                == Some(acked)),
            "member {o} lacks writes"
        );
    }

    // rw survives a SIGKILL of its member: it moves to another Ready member.
    let writer = cluster.status().primary;
    let before_kill = cluster.events().len();
    cluster.cmd(&["kill", &writer.to_string()]).ok();
    assert!(
        wait_until(Duration::from_secs(30), || cluster.events()[before_kill..]
            .iter()
            .any(|e| e.kind == EventKind::Unready && e.ordinal == Some(writer))),
        "the killed member never left the pool"
    );
    assert!(
        wait_until(Duration::from_secs(30), || write(&cluster, "rw", 9)),
        "rw took no write after its member was killed"
    );
    acked += 1;
    // The killed member comes back and catches up by incremental state transfer.
    wait_all_synced(&cluster, 3);
    assert!(wait_until(Duration::from_secs(10), || count(
        &cluster,
        &writer.to_string()
    ) == Some(acked)));
    for _ in 0..5 {
        assert!(write(&cluster, "rw", 7));
        acked += 1;
    }

    // Scaling keeps the data: two members join by state transfer, then leave again with
    // their data dirs kept; fewer than 3 is refused.
    cluster.scale(5, false).ok();
    wait_all_synced(&cluster, 5);
    assert_eq!(count(&cluster, "4"), Some(acked));
    cluster.scale(3, false).ok();
    wait_all_synced(&cluster, 3);
    assert!(
        cluster.data_dir(4).exists(),
        "a scale-down keeps the data dir"
    );
    cluster
        .scale(2, false)
        .error_containing(&["at least 3 members"]);

    // A clean full stop, then up: the cluster is formed again with every write.
    cluster.cmd(&["down"]).ok();
    cluster.up_with(&[]).ok();
    wait_all_synced(&cluster, 3);
    assert_eq!(count(&cluster, "ro"), Some(acked));

    // Every instance killed at once (the controller stays): positions are recovered from
    // InnoDB, the newest member bootstraps the cluster again, nothing acknowledged is lost.
    assert!(write(&cluster, "rw", 8));
    acked += 1;
    let before = cluster.events().len();
    // Agents and servers alike, in one sweep: the controller cannot restart one in between.
    let instances = cluster
        .root()
        .join("instances")
        .to_string_lossy()
        .into_owned();
    let victims = support::processes_mentioning(&instances);
    assert!(victims.len() >= 6, "agents and servers: {victims:?}");
    for (pid, _) in &victims {
        support::signal(*pid, nix::sys::signal::Signal::SIGKILL);
    }
    // The controller's next probes see them gone, and it records the bootstrap choice.
    assert!(
        wait_until(Duration::from_secs(60), || cluster.events()[before..]
            .iter()
            .any(|e| e.kind == EventKind::GaleraBootstrap)),
        "no bootstrap after every instance was killed: {:#?}",
        &cluster.events()[before..]
    );
    wait_all_synced(&cluster, 3);
    let since: Vec<_> = cluster.events()[before..].to_vec();
    let bootstrap = since
        .iter()
        .find(|e| e.kind == EventKind::GaleraBootstrap)
        .cloned()
        .unwrap_or_else(|| panic!("no bootstrap choice recorded: {since:#?}"));
    assert!(
        bootstrap.message.contains("newest position"),
        "{bootstrap:?}"
    );
    for o in 0..3 {
        assert_eq!(count(&cluster, &o.to_string()), Some(acked), "member {o}");
    }

    // A forced bootstrap names its member and says what it would lose (nothing here: every
    // member holds the same position after a clean stop).
    cluster.cmd(&["down"]).ok();
    cluster
        .up_with(&["--force-bootstrap", "7"])
        .error_containing(&["--force-bootstrap 7", "not a member"]);
    let before = cluster.events().len();
    cluster.up_with(&["--force-bootstrap", "2"]).ok();
    wait_all_synced(&cluster, 3);
    let forced = cluster.events()[before..]
        .iter()
        .find(|e| e.kind == EventKind::GaleraBootstrap)
        .cloned()
        .expect("the forced bootstrap is recorded");
    assert_eq!(forced.ordinal, Some(2), "{forced:?}");
    assert!(forced.message.contains("forced"), "{forced:?}");
    assert_eq!(count(&cluster, "ro"), Some(acked));
}

#[test]
fn galera_refuses_what_it_cannot_do() {
    if !support::galera_available() {
        return;
    }
    let cluster = Cluster::new("galera-bad");
    let two = cluster.up_with(&["--topology", "galera", "--replicas", "2"]);
    two.error_containing(&["at least 3 members", "--replicas 3"]);
    assert!(
        !cluster.state_file().exists(),
        "a refused cluster leaves nothing behind"
    );
    // Causal reads are Galera's; replication bounds its reads' staleness instead.
    cluster
        .up_with(&["--causal-reads", "on"])
        .error_containing(&["--causal-reads is for Galera", "--max-read-staleness"]);
    assert!(!cluster.state_file().exists());
}

#[test]
fn a_galera_member_cut_off_in_a_minority_refuses_writes_and_rejoins() {
    if !support::galera_available() {
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: network namespaces need root");
        return;
    }
    let cluster = Cluster::new("galera-part");
    cluster
        .up_with(&["--topology", "galera", "--netns", "--causal-reads", "on"])
        .ok();
    wait_all_synced(&cluster, 3);
    cluster.sql("rw", SETUP).ok();
    // Causal reads: the user's sessions wait for the group before each read; myset's own
    // probes are exempt (they keep working on the cut-off member below).
    assert!(cluster.status().causal_reads);
    assert_eq!(
        cluster.query("ro", "SELECT @@session.wsrep_sync_wait"),
        vec![vec!["1".to_string()]]
    );
    let writer = cluster.status().primary;

    cluster.cmd(&["partition", &writer.to_string()]).ok();
    // The majority goes on: rw moves to one of its members.
    assert!(
        wait_until(Duration::from_secs(30), || write(&cluster, "rw", 1)),
        "the majority took no write through rw"
    );
    // The cut-off member, alone in a non-Primary component, refuses writes on its own side.
    assert!(
        wait_until(Duration::from_secs(30), || cluster
            .sql_inside(writer, "INSERT INTO g.t (member) VALUES (99)")
            .is_err_and(|e| e.contains("WSREP"))),
        "the minority member took a write"
    );
    let during = count(&cluster, "rw").expect("the majority answers");

    cluster
        .cmd(&["partition", &writer.to_string(), "--heal"])
        .ok();
    wait_all_synced(&cluster, 3);
    assert!(
        wait_until(Duration::from_secs(20), || count(
            &cluster,
            &writer.to_string()
        ) == Some(during)),
        "the healed member did not catch up"
    );
}

/// SIGKILLs every process of one member (agent and server).
fn kill_member(cluster: &Cluster, ordinal: u32) {
    let dir = cluster.instance_dir(ordinal).to_string_lossy().into_owned();
    for (pid, _) in support::processes_mentioning(&dir) {
        support::signal(pid, nix::sys::signal::Signal::SIGKILL);
    }
}

#[test]
fn after_members_crash_one_by_one_the_newest_bootstraps_and_no_write_is_lost() {
    if !support::galera_available() {
        return;
    }
    let cluster = Cluster::new("galera-seq");
    cluster.up_with(&["--topology", "galera"]).ok();
    wait_all_synced(&cluster, 3);
    cluster.sql("0", SETUP).ok();
    assert!(write(&cluster, "0", 0));
    let mut acked = 1u64;

    // The controller is frozen, so nothing restarts the members while they go down one by one
    // (its lock stays held, so no agent starts another controller either).
    let controller = cluster.controller_pid().expect("a controller");
    support::signal(controller, nix::sys::signal::Signal::SIGSTOP);
    let _resume = support::ContinueOnDrop(controller);

    kill_member(&cluster, 0);
    // Members 1 and 2 stay a majority of the last view and take writes that 0 never sees
    // (each waits until the dead member is evicted).
    for _ in 0..3 {
        assert!(write(&cluster, "1", 1), "the majority refused a write");
        acked += 1;
    }
    kill_member(&cluster, 1);
    kill_member(&cluster, 2);

    let before = cluster.events().len();
    support::signal(controller, nix::sys::signal::Signal::SIGCONT);
    assert!(
        wait_until(Duration::from_secs(90), || cluster.events()[before..]
            .iter()
            .any(|e| e.kind == EventKind::GaleraBootstrap)),
        "no bootstrap: {:#?}",
        &cluster.events()[before..]
    );
    let chosen = cluster.events()[before..]
        .iter()
        .find(|e| e.kind == EventKind::GaleraBootstrap)
        .and_then(|e| e.ordinal)
        .expect("the bootstrap names its member");
    assert_ne!(
        chosen, 0,
        "the member that crashed first lacks the newest writes"
    );
    wait_all_synced(&cluster, 3);
    for o in 0..3 {
        assert_eq!(count(&cluster, &o.to_string()), Some(acked), "member {o}");
    }
}

#[test]
fn when_two_of_three_members_crash_the_survivor_is_recovered_with_them() {
    if !support::galera_available() {
        return;
    }
    let cluster = Cluster::new("galera-two");
    cluster.up_with(&["--topology", "galera"]).ok();
    wait_all_synced(&cluster, 3);
    cluster.sql("rw", SETUP).ok();
    let mut acked = 0u64;
    for _ in 0..3 {
        assert!(write(&cluster, "rw", 0));
        acked += 1;
    }
    // The survivor is left alone, a minority of its last view: no quorum, no writes, and it
    // cannot form a Primary component by itself. The controller is frozen meanwhile, so it
    // finds the survivor already cut off when it looks again (as when the dead members'
    // restarts are delayed).
    let controller = cluster.controller_pid().expect("a controller");
    support::signal(controller, nix::sys::signal::Signal::SIGSTOP);
    let resume = support::ContinueOnDrop(controller);
    let before = cluster.events().len();
    kill_member(&cluster, 1);
    kill_member(&cluster, 2);
    assert!(
        wait_until(Duration::from_secs(60), || cluster
            .try_query("0", "SHOW STATUS LIKE 'wsrep_cluster_status'")
            .is_some_and(|rows| rows
                .first()
                .and_then(|r| r.get(1))
                .map(String::as_str)
                == Some("non-Primary"))),
        "the survivor never left the Primary component"
    );
    drop(resume);
    assert!(
        wait_until(Duration::from_secs(90), || {
            let since = &cluster.events()[before..];
            since.iter().any(|e| e.kind == EventKind::GaleraNoPrimary)
                && since.iter().any(|e| e.kind == EventKind::GaleraBootstrap)
        }),
        "not recovered: {:#?}",
        &cluster.events()[before..]
    );
    wait_all_synced(&cluster, 3);
    for o in 0..3 {
        assert_eq!(count(&cluster, &o.to_string()), Some(acked), "member {o}");
    }
    assert!(write(&cluster, "rw", 0), "rw takes writes again");
}
