//! The faults the harness injects.

use crate::cluster::Cluster;
use crate::load::Load;
use anyhow::Context;
use myset_api::{ClusterStatus, EventKind, Role, Topology};
use nix::sys::signal::Signal;
use rand::Rng;
use std::time::Duration;

/// In a Galera cluster "the primary" is the member `rw` routes to (the status's `primary`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// kill -9 of the primary's mariadbd (Galera: of the member rw routes to); its agent
    /// restarts it.
    KillPrimaryServer,
    /// kill -9 of the primary's agent and mariadbd, as if its Pod died.
    KillPrimaryInstance,
    /// SIGSTOP of the primary's agent and mariadbd, SIGCONT once the cluster moved on.
    FreezePrimary,
    /// kill -9 of a replica's agent and mariadbd.
    KillReplica,
    /// kill -9 of the controller alone, with every member healthy; the cluster must start a
    /// new one by itself.
    KillController,
    /// The controller is killed in the middle of a failover; the cluster must start a new one
    /// by itself and converge.
    KillControllerDuringFailover,
    /// `myset down` then `myset up`.
    RestartCluster,
    /// The primary is cut off from the network (clusters in namespaces only), then reconnected
    /// once the cluster moved on.
    PartitionPrimary,
    /// A planned `myset switchover` (not drawn at random; for measuring the write pause).
    Switchover,
    /// A `myset restart`: every server restarted in turn, with a switchover before the
    /// primary's turn (not drawn at random; for measuring the write pause).
    RollingRestart,
    /// Galera: kill -9 of any member's agent and mariadbd.
    KillMember,
    /// Galera: SIGSTOP of any member's agent and mariadbd, SIGCONT once it left the pool and
    /// the others evicted it.
    FreezeMember,
    /// Galera: any member cut off from the network (clusters in namespaces only), reconnected
    /// once it left the pool and the others evicted it.
    PartitionMember,
    /// Galera: every member's agent and mariadbd killed at once; the controller must recover
    /// the cluster from the members' positions.
    KillAllMembers,
    /// Galera: the members crash one after another, with writes acknowledged by the survivors
    /// in between, while the controller is frozen (so nothing restarts them); then it thaws and
    /// must bootstrap from a member that holds the newest writes, never the first to crash.
    CrashMembersInTurn,
}

impl Fault {
    /// Drawn at random for the replication topology (plus partitions with namespaces).
    const REPLICATION: [Fault; 7] = [
        Fault::KillPrimaryServer,
        Fault::KillPrimaryInstance,
        Fault::FreezePrimary,
        Fault::KillReplica,
        Fault::KillController,
        Fault::KillControllerDuringFailover,
        Fault::RestartCluster,
    ];
    /// Drawn at random for Galera (plus partitions with namespaces).
    const GALERA: [Fault; 7] = [
        Fault::KillPrimaryServer,
        Fault::KillMember,
        Fault::FreezeMember,
        Fault::KillAllMembers,
        Fault::CrashMembersInTurn,
        Fault::KillController,
        Fault::RestartCluster,
    ];
    /// Only injected on request (`--only`), or only with namespaces.
    const OTHERS: [Fault; 4] = [
        Fault::PartitionPrimary,
        Fault::PartitionMember,
        Fault::Switchover,
        Fault::RollingRestart,
    ];

    /// Every fault once, for parsing `--only`.
    fn every() -> Vec<Fault> {
        let mut all: Vec<Fault> = Vec::new();
        for f in Fault::REPLICATION
            .into_iter()
            .chain(Fault::GALERA)
            .chain(Fault::OTHERS)
        {
            if !all.contains(&f) {
                all.push(f);
            }
        }
        all
    }

    /// The faults drawn at random for a cluster of `topology`; partitions need namespaces.
    pub fn drawn(topology: Topology, netns: bool) -> Vec<Fault> {
        let (always, partition) = match topology {
            Topology::Replication => (Fault::REPLICATION, Fault::PartitionPrimary),
            Topology::Galera => (Fault::GALERA, Fault::PartitionMember),
        };
        always
            .into_iter()
            .chain(netns.then_some(partition))
            .collect()
    }

    /// Whether `--only` may inject this fault into a cluster of `topology` (with namespaces or
    /// not); None when it may, else why not.
    pub fn unusable(self, topology: Topology, netns: bool) -> Option<String> {
        let applies = match self {
            Fault::Switchover => topology == Topology::Replication,
            Fault::RollingRestart => true,
            _ => Fault::drawn(topology, true).contains(&self),
        };
        if !applies {
            let usable: Vec<String> = Fault::drawn(topology, true)
                .iter()
                .map(|f| f.to_string())
                .collect();
            return Some(format!(
                "fault {self} does not apply to {topology} clusters: use one of {}",
                usable.join(", ")
            ));
        }
        let partitions = matches!(self, Fault::PartitionPrimary | Fault::PartitionMember);
        (partitions && !netns).then(|| format!("fault {self} needs --netns (run as root)"))
    }

    /// The harness takes the whole cluster down on purpose: reads failing meanwhile are no
    /// outage.
    pub fn stops_the_cluster(self) -> bool {
        matches!(
            self,
            Fault::RestartCluster | Fault::KillAllMembers | Fault::CrashMembersInTurn
        )
    }

    /// The harness stops what serves reads on purpose: reads failing meanwhile are no outage.
    /// With userspace endpoints the proxies live in the controller, so killing it stops them
    /// until an agent starts the next one; kernel rules outlive it.
    pub fn stops_the_endpoints(self, path: Option<myset_api::EndpointPath>) -> bool {
        self.stops_the_cluster()
            || (path == Some(myset_api::EndpointPath::Userspace)
                && matches!(
                    self,
                    Fault::KillController | Fault::KillControllerDuringFailover
                ))
    }
}

impl std::str::FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let every = Fault::every();
        every
            .iter()
            .find(|f| f.to_string() == s)
            .copied()
            .ok_or_else(|| {
                let names: Vec<String> = every.iter().map(|f| f.to_string()).collect();
                format!("unknown fault {s:?}: use one of {}", names.join(", "))
            })
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = serde_json::to_value(self).ok();
        f.write_str(text.as_ref().and_then(|v| v.as_str()).unwrap_or("fault"))
    }
}

/// How long a frozen primary stays frozen at most.
const FREEZE_LIMIT: Duration = Duration::from_secs(20);

/// Injects `fault` into a converged cluster whose status was `before`; returns once the fault
/// is over (a frozen process thawed, a killed controller replaced), waiting at most `limit`
/// for the cluster to replace a killed controller.
pub async fn inject(
    cluster: &Cluster,
    load: &Load,
    fault: Fault,
    before: &ClusterStatus,
    rng: &mut impl Rng,
    limit: Duration,
) -> anyhow::Result<()> {
    let primary = before
        .instances
        .iter()
        .find(|i| i.ordinal == before.primary)
        .context("the primary is not in the status")?;
    let any_member = |rng: &mut dyn rand::RngCore| {
        &before.instances[rng.random_range(0..before.instances.len())]
    };
    match fault {
        Fault::KillPrimaryServer => {
            let pid = primary.pid.context("primary has no server pid")?;
            myset_os::signal(pid, Signal::SIGKILL);
        }
        Fault::KillPrimaryInstance => cluster.kill(primary.ordinal).await?,
        Fault::KillReplica => {
            let replicas: Vec<u32> = before
                .instances
                .iter()
                .filter(|i| i.role == Role::Replica)
                .map(|i| i.ordinal)
                .collect();
            let victim = replicas[rng.random_range(0..replicas.len())];
            cluster.kill(victim).await?;
        }
        Fault::KillMember => cluster.kill(any_member(rng).ordinal).await?,
        Fault::FreezePrimary => {
            let frozen = freeze(primary)?;
            wait_for_new_primary(cluster, before.primary).await;
            drop(frozen);
        }
        Fault::FreezeMember => {
            let victim = any_member(rng);
            let seen = cluster.events().len();
            let frozen = freeze(victim)?;
            wait_evicted(cluster, victim.ordinal, seen).await;
            drop(frozen);
        }
        // Injected only into a converged cluster, so no failover is under way.
        Fault::KillController => {
            wait_controller_stable(cluster).await;
            let controller = cluster.controller_pid().context("no controller running")?;
            myset_os::kill_and_wait(controller).await;
            wait_for_new_controller(cluster, controller, limit).await?;
        }
        Fault::KillControllerDuringFailover => {
            wait_controller_stable(cluster).await;
            let controller = cluster.controller_pid().context("no controller running")?;
            let seen = cluster.events().len();
            let frozen = freeze(primary)?;
            // Killed as soon as the failover has begun, or after the limit anyway.
            myset_os::poll_until(FREEZE_LIMIT, Duration::from_millis(5), || {
                cluster
                    .events()
                    .iter()
                    .skip(seen)
                    .any(|e| e.kind == EventKind::Failover)
            })
            .await;
            myset_os::kill_and_wait(controller).await;
            drop(frozen);
            // No `myset up`: bringing a controller back is the cluster's own job.
            wait_for_new_controller(cluster, controller, limit).await?;
        }
        Fault::RestartCluster => {
            cluster.down().await?;
            cluster.up(&[]).await?;
        }
        Fault::Switchover => cluster.switchover().await?,
        Fault::RollingRestart => cluster.rolling_restart().await?,
        Fault::PartitionPrimary => {
            cluster.partition(primary.ordinal, false).await?;
            wait_for_new_primary(cluster, before.primary).await;
            cluster.partition(primary.ordinal, true).await?;
        }
        Fault::PartitionMember => {
            let victim = any_member(rng).ordinal;
            let seen = cluster.events().len();
            cluster.partition(victim, false).await?;
            wait_evicted(cluster, victim, seen).await;
            cluster.partition(victim, true).await?;
        }
        Fault::KillAllMembers => {
            // Signals rather than `myset kill` one member at a time, so the controller cannot
            // restart one before the last is dead.
            for instance in &before.instances {
                for pid in [instance.agent_pid, instance.pid].into_iter().flatten() {
                    myset_os::signal(pid, Signal::SIGKILL);
                }
            }
        }
        Fault::CrashMembersInTurn => {
            crash_members_in_turn(cluster, load, before, rng, limit).await?
        }
    }
    Ok(())
}

/// Freezes the controller (so nothing restarts a member), kills the members one after another
/// with writes acknowledged by the survivors of the first crash, thaws the controller, and
/// checks that it bootstrapped from a member other than the first to crash: that one lacks the
/// writes acknowledged after it died.
async fn crash_members_in_turn(
    cluster: &Cluster,
    load: &Load,
    before: &ClusterStatus,
    rng: &mut impl Rng,
    limit: Duration,
) -> anyhow::Result<()> {
    use rand::seq::SliceRandom;
    let mut order: Vec<&myset_api::InstanceStatus> = before.instances.iter().collect();
    order.shuffle(rng);
    wait_controller_stable(cluster).await;
    let controller = cluster.controller_pid().context("no controller running")?;
    let seen = cluster.events().len();
    let frozen = Frozen::new(vec![controller]);
    let (first, survivors) = order.split_first().context("no members")?;
    cluster.kill(first.ordinal).await?;
    // The survivors are a majority of the last view: once they have evicted the dead member
    // they take writes it never sees (on whichever of them takes it).
    let targets: Vec<(&str, u16)> = survivors
        .iter()
        .map(|s| (s.host.as_str(), s.port))
        .collect();
    for _ in 0..3 {
        load.write_directly(&targets, limit)
            .await
            .with_context(|| format!("the survivors took no write after {} crashed", first.name))?;
    }
    for survivor in survivors {
        cluster.kill(survivor.ordinal).await?;
    }
    drop(frozen);
    let chose = myset_os::poll_until_async(limit, Duration::from_millis(200), || async {
        bootstrapped_from(cluster, seen).is_some()
    })
    .await;
    anyhow::ensure!(
        chose,
        "no bootstrap within {}s of the last crash",
        limit.as_secs()
    );
    let chosen = bootstrapped_from(cluster, seen);
    anyhow::ensure!(
        chosen != Some(first.ordinal),
        "bootstrapped from {}, which crashed first and lacks the newest writes",
        first.name
    );
    Ok(())
}

/// The member the first Galera bootstrap recorded after event `seen` chose.
fn bootstrapped_from(cluster: &Cluster, seen: usize) -> Option<u32> {
    cluster
        .events()
        .iter()
        .skip(seen)
        .find(|e| e.kind == EventKind::GaleraBootstrap)
        .and_then(|e| e.ordinal)
}

/// Waits until the controller has taken `ordinal` out of the endpoints' pool (an Unready or
/// Suspect event after event `seen`: a member already unready for another reason, a donor
/// say, must still be noticed as failed) and the other members have evicted it from their
/// Galera component, so that it must rejoin; gives up after `FREEZE_LIMIT`.
async fn wait_evicted(cluster: &Cluster, ordinal: u32, seen: usize) {
    myset_os::poll_until_async(FREEZE_LIMIT, Duration::from_millis(100), || async {
        let noticed = cluster.events().iter().skip(seen).any(|e| {
            matches!(e.kind, EventKind::Unready | EventKind::Suspect) && e.ordinal == Some(ordinal)
        });
        noticed
            && cluster.status().await.is_ok_and(|s| {
                let members = s.instances.len() as u32;
                s.instances
                    .iter()
                    .filter(|i| i.ordinal != ordinal)
                    .filter_map(|i| i.galera.as_ref())
                    .any(|g| g.primary_component && g.cluster_size < members)
            })
    })
    .await;
}

/// The agents take a controller that dies within their restart policy's stable period for a
/// crash loop and space its restarts out (as a kubelet's back-off does). Faults drawn in a row
/// would kill controllers that young and measure that back-off instead of one failure, so a
/// controller is killed only once it has outlived the period.
async fn wait_controller_stable(cluster: &Cluster) {
    let stable = Duration::from_millis(myset_core::RestartPolicy::default().stable_ms)
        + Duration::from_millis(500);
    if let Some(age) = cluster.controller_age() {
        tokio::time::sleep(stable.saturating_sub(age)).await;
    }
}

/// Waits until a controller other than `old` serves the cluster's status.
async fn wait_for_new_controller(
    cluster: &Cluster,
    old: u32,
    limit: Duration,
) -> anyhow::Result<()> {
    let replaced = myset_os::poll_until_async(limit, Duration::from_millis(100), || async {
        cluster.status().await.is_ok_and(|s| {
            let serving = s.controller_pid.or_else(|| cluster.controller_pid());
            s.running && serving.is_some_and(|pid| pid != old)
        })
    })
    .await;
    anyhow::ensure!(
        replaced,
        "no new controller within {}s of killing controller {old}",
        limit.as_secs()
    );
    Ok(())
}

/// Waits until the cluster has replaced `old` as primary, or gives up after `FREEZE_LIMIT`.
async fn wait_for_new_primary(cluster: &Cluster, old: u32) {
    myset_os::poll_until_async(FREEZE_LIMIT, Duration::from_millis(100), || async {
        cluster.status().await.is_ok_and(|s| s.primary != old)
    })
    .await;
}

/// SIGSTOPs an instance's agent and server until the returned guard is dropped.
fn freeze(instance: &myset_api::InstanceStatus) -> anyhow::Result<Frozen> {
    let pids: Vec<u32> = [instance.agent_pid, instance.pid]
        .into_iter()
        .flatten()
        .collect();
    anyhow::ensure!(
        pids.len() == 2,
        "{} has no agent or server pid to freeze",
        instance.name
    );
    Ok(Frozen::new(pids))
}

/// Processes stopped with SIGSTOP until dropped, so an error cannot leave them frozen.
struct Frozen(Vec<u32>);

impl Frozen {
    fn new(pids: Vec<u32>) -> Self {
        for &pid in &pids {
            myset_os::signal(pid, Signal::SIGSTOP);
        }
        Frozen(pids)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if myset_os::pid_alive(pid) {
                myset_os::signal(pid, Signal::SIGCONT);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn killing_the_controller_stops_the_endpoints_only_where_it_serves_them() {
        use myset_api::EndpointPath;
        for fault in [Fault::KillController, Fault::KillControllerDuringFailover] {
            assert!(fault.stops_the_endpoints(Some(EndpointPath::Userspace)));
            assert!(!fault.stops_the_endpoints(Some(EndpointPath::Kernel)));
            assert!(!fault.stops_the_endpoints(None));
        }
        assert!(Fault::RestartCluster.stops_the_endpoints(Some(EndpointPath::Kernel)));
        assert!(!Fault::FreezePrimary.stops_the_endpoints(Some(EndpointPath::Userspace)));
    }

    use super::*;

    #[test]
    fn every_fault_parses_from_its_name_and_applies_to_its_topology_only() {
        for fault in Fault::every() {
            assert_eq!(fault.to_string().parse::<Fault>(), Ok(fault));
        }
        assert!("kill-everything".parse::<Fault>().is_err());
        let galera = Fault::drawn(Topology::Galera, true);
        assert!(galera.contains(&Fault::PartitionMember));
        assert!(!galera.contains(&Fault::KillReplica));
        assert!(!Fault::drawn(Topology::Galera, false).contains(&Fault::PartitionMember));
        assert!(Fault::KillMember
            .unusable(Topology::Replication, true)
            .is_some_and(|why| why.contains("replication clusters")));
        assert!(Fault::Switchover.unusable(Topology::Galera, true).is_some());
        assert!(Fault::Switchover
            .unusable(Topology::Replication, false)
            .is_none());
        assert!(Fault::PartitionMember
            .unusable(Topology::Galera, false)
            .is_some_and(|why| why.contains("--netns")));
        // Faults that take the whole cluster down do not count reads against it.
        assert!(Fault::KillAllMembers.stops_the_cluster());
        assert!(!Fault::KillMember.stops_the_cluster());
    }
}
