//! Failures of myset's own parts never become outages: a killed controller comes back by
//! itself while the primary keeps taking writes, a frozen agent alone does not get its healthy
//! primary failed over, and a frozen server never hangs a client of `ro`.

mod support;

use myset_api::{ClusterStatus, EventKind};
use nix::sys::signal::Signal;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use support::{
    pid_alive, poll_for, signal, throughout, wait_until, Cluster, ContinueOnDrop, QUICK, SLOW,
};

/// `--failover-delay` of these clusters, short to keep the tests short.
const FAILOVER_DELAY: Duration = Duration::from_secs(2);
/// How long a part of myset may take to come back by itself.
const RECOVERY: Duration = Duration::from_secs(60);

/// A 3-instance cluster with the short failover delay, converged.
fn up(cluster: &Cluster) -> ClusterStatus {
    let delay = FAILOVER_DELAY.as_secs().to_string();
    cluster
        .up_with(&["--replicas", "3", "--failover-delay", &delay])
        .ok();
    cluster
        .wait_converged(SLOW)
        .expect("the cluster converges after up")
}

/// Inserts of distinct ids, remembering those acknowledged.
#[derive(Default)]
struct Writes {
    next: u32,
    acked: Vec<u32>,
}

impl Writes {
    const SETUP: &'static str = "CREATE DATABASE cp; CREATE TABLE cp.w (id INT PRIMARY KEY)";

    /// Inserts the next id through `target`; a failed insert's id is never reused.
    fn insert(&mut self, cluster: &Cluster, target: &str) -> support::Run {
        self.next += 1;
        let run = cluster.sql(target, &format!("INSERT INTO cp.w VALUES ({})", self.next));
        if run.success() {
            self.acked.push(self.next);
        }
        run
    }

    /// Asserts every acknowledged id is in the table, read through `target`.
    #[track_caller]
    fn assert_none_lost(&self, cluster: &Cluster, target: &str) {
        let present: BTreeSet<u32> = cluster
            .query(target, "SELECT id FROM cp.w")
            .iter()
            .map(|row| row[0].parse().expect("an id"))
            .collect();
        let lost: Vec<u32> = self
            .acked
            .iter()
            .filter(|id| !present.contains(id))
            .copied()
            .collect();
        assert!(
            lost.is_empty(),
            "acknowledged writes lost: {lost:?} of {}",
            self.acked.len()
        );
    }
}

#[test]
fn controller_death_is_no_outage() {
    let cluster = Cluster::new("cpkill");
    let first = up(&cluster);
    let (primary, term) = (first.primary, first.term);
    let direct = primary.to_string();
    cluster.sql("rw", Writes::SETUP).ok();
    let mut writes = Writes::default();
    let events_before = cluster.events().len();

    for round in 1..=3 {
        let status = cluster
            .wait_converged(RECOVERY)
            .unwrap_or_else(|| panic!("round {round}: the cluster did not converge"));
        let old = status
            .controller_pid
            .expect("status names the controller's pid");
        signal(old, Signal::SIGKILL);
        assert!(
            wait_until(QUICK, || !pid_alive(old)),
            "controller {old} survived SIGKILL"
        );

        // The primary does not fence itself: its peers still answer, only the controller died.
        let killed = Instant::now();
        while killed.elapsed() < FAILOVER_DELAY * 2 {
            let run = writes.insert(&cluster, &direct);
            assert!(
                run.success(),
                "round {round}: the primary refused a write {:.1?} after the controller died: {run:?}",
                killed.elapsed()
            );
        }

        // Nobody runs `myset up`: rw comes back with a new controller by itself.
        assert!(
            wait_until(RECOVERY, || writes.insert(&cluster, "rw").success()),
            "round {round}: rw did not come back within {RECOVERY:?} of killing the controller"
        );
        let new = poll_for(RECOVERY, || {
            cluster
                .try_status()
                .filter(|s| s.running)
                .and_then(|s| s.controller_pid)
                .filter(|&pid| pid != old)
        })
        .unwrap_or_else(|| panic!("round {round}: no new controller in status"));
        assert!(pid_alive(new), "the new controller {new} is not running");
        let after = cluster.status();
        assert_eq!(
            (after.primary, after.term),
            (primary, term),
            "round {round}: the controller's death changed the primary"
        );
    }

    let kinds: Vec<EventKind> = cluster.events()[events_before..]
        .iter()
        .map(|e| e.kind)
        .collect();
    assert!(!kinds.contains(&EventKind::Failover), "{kinds:?}");
    writes.assert_none_lost(&cluster, "rw");
}

#[test]
fn idle_primary_with_a_frozen_agent_is_not_failed_over() {
    let cluster = Cluster::new("cpagent");
    let before = up(&cluster);
    let (primary, term) = (before.primary, before.term);
    let agent = Cluster::instance(&before, primary)
        .agent_pid
        .expect("the primary's agent pid");
    let events_before = cluster.events().len();

    {
        let _thaw = ContinueOnDrop(agent);
        signal(agent, Signal::SIGSTOP);
        // The controller cannot reach the primary's agent, but the replicas still hear the
        // primary's heartbeats, even with no writes: the primary is alive.
        throughout(FAILOVER_DELAY * 3, || {
            if let Some(s) = cluster.try_status() {
                assert_eq!(
                    (s.primary, s.term),
                    (primary, term),
                    "failed over while only the primary's agent was frozen"
                );
            }
        });
    }

    let after = cluster
        .wait_converged(RECOVERY)
        .expect("the cluster converges once the agent resumes");
    assert_eq!((after.primary, after.term), (primary, term));
    let failovers: Vec<_> = cluster.events()[events_before..]
        .iter()
        .filter(|e| e.kind == EventKind::Failover)
        .cloned()
        .collect();
    assert!(failovers.is_empty(), "{failovers:#?}");
}

#[test]
fn a_frozen_member_never_hangs_ro_clients() {
    let cluster = Cluster::new("cpfrozen");
    let status = up(&cluster);
    let frozen = status
        .instances
        .iter()
        .find(|i| i.ordinal != status.primary)
        .expect("a replica");
    let pid = frozen.pid.expect("the replica's server pid");
    let live: BTreeSet<u32> = status
        .instances
        .iter()
        .filter(|i| i.ordinal != frozen.ordinal)
        .map(|i| i.server_id)
        .collect();

    let _thaw = ContinueOnDrop(pid);
    signal(pid, Signal::SIGSTOP);
    // At once: before readiness notices, ro still lists the frozen member.
    for call in 1..=20 {
        let run = cluster.sql("ro", "SELECT @@server_id");
        assert!(
            run.success() && run.elapsed <= Duration::from_secs(2),
            "call {call} through ro did not answer within 2s: {run:?}"
        );
        let id: u32 = run.stdout.trim().parse().expect("a server_id");
        assert!(
            live.contains(&id),
            "call {call} answered from server {id}, not a live member {live:?}"
        );
    }
}

#[test]
fn a_controller_killed_while_an_agent_is_frozen_comes_back_and_a_crash_loop_backs_off() {
    let cluster = Cluster::new("cploop");
    cluster.up_with(&["--replicas", "1"]).ok();
    let status = cluster.wait_converged(SLOW).expect("the cluster converges");
    let agent = status.instances[0].agent_pid.expect("an agent pid");
    let controller = status.controller_pid.expect("a controller pid");

    // The controller dies while its only agent is frozen: the agent's process group is
    // orphaned, and the kernel sends it SIGHUP (then SIGCONT). The agent must survive that
    // and bring a controller back.
    signal(agent, Signal::SIGSTOP);
    let agent_frozen = ContinueOnDrop(agent);
    signal(controller, Signal::SIGKILL);
    assert!(wait_until(QUICK, || !pid_alive(controller)));
    drop(agent_frozen);
    let back = poll_for(RECOVERY, || {
        cluster
            .try_status()
            .and_then(|s| s.controller_pid)
            .filter(|&pid| pid != controller)
    });
    assert!(back.is_some(), "no controller came back");
    assert!(pid_alive(agent), "the agent died with its controller");

    // A crash loop: every controller dies at start (its record is unreadable). Three restarts
    // at once, then ever longer waits, with the reason in the events.
    let record = std::fs::read(cluster.state_file()).expect("read cluster.json");
    std::fs::write(cluster.state_file(), b"{ not a cluster record").expect("spoil cluster.json");
    let count = |kind: EventKind| cluster.events().iter().filter(|e| e.kind == kind).count();
    let start = Instant::now();
    signal(back.unwrap(), Signal::SIGKILL);
    assert!(
        wait_until(RECOVERY, || count(EventKind::ControllerRestartDelayed) > 0),
        "no delayed restart reported: {:?}",
        cluster.event_messages_since(0)
    );
    assert!(
        count(EventKind::ControllerExited) >= 3,
        "the dead controllers' exits are not reported"
    );
    // The controller restarted above served under 3 s before it was killed: it counts too.
    let restarts = count(EventKind::ControllerRestarted);
    assert!(
        (3..=5).contains(&restarts),
        "{restarts} restarts within {:?}",
        start.elapsed()
    );

    // Once the record is readable again the next restart sticks, and rw serves.
    std::fs::write(cluster.state_file(), &record).expect("restore cluster.json");
    assert!(
        wait_until(RECOVERY, || cluster.sql("rw", "SELECT 1").success()),
        "the controller did not come back once it could start"
    );
    assert!(cluster.try_status().is_some_and(|s| s.running));
}
