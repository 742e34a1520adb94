//! The faults the harness injects.

use crate::cluster::Cluster;
use anyhow::Context;
use myset_api::{ClusterStatus, Role};
use nix::sys::signal::Signal;
use rand::Rng;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// kill -9 of the primary's mariadbd; its agent restarts it.
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
}

impl Fault {
    pub const ALL: [Fault; 7] = [
        Fault::KillPrimaryServer,
        Fault::KillPrimaryInstance,
        Fault::FreezePrimary,
        Fault::KillReplica,
        Fault::KillController,
        Fault::KillControllerDuringFailover,
        Fault::RestartCluster,
    ];

    /// The harness stops the whole cluster on purpose: reads failing meanwhile are no outage.
    pub fn stops_the_cluster(self) -> bool {
        self == Fault::RestartCluster
    }
}

impl std::str::FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let all = Fault::ALL
            .iter()
            .chain([Fault::PartitionPrimary, Fault::Switchover].iter());
        all.clone()
            .find(|f| f.to_string() == s)
            .copied()
            .ok_or_else(|| {
                let names: Vec<String> = all.map(|f| f.to_string()).collect();
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
    fault: Fault,
    before: &ClusterStatus,
    rng: &mut impl Rng,
    limit: Duration,
) -> anyhow::Result<()> {
    let primary = before
        .instances
        .iter()
        .find(|i| i.role == Role::Primary)
        .context("no primary in status")?;
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
        Fault::FreezePrimary => {
            let pids = freeze(primary)?;
            wait_for_new_primary(cluster, before.primary).await;
            thaw(&pids);
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
            let pids = freeze(primary)?;
            // Killed as soon as the failover has begun, or after the limit anyway.
            myset_os::poll_until(FREEZE_LIMIT, Duration::from_millis(5), || {
                cluster
                    .events()
                    .iter()
                    .skip(seen)
                    .any(|e| e.kind == myset_api::EventKind::Failover)
            })
            .await;
            myset_os::kill_and_wait(controller).await;
            thaw(&pids);
            // No `myset up`: bringing a controller back is the cluster's own job.
            wait_for_new_controller(cluster, controller, limit).await?;
        }
        Fault::RestartCluster => {
            cluster.down().await?;
            cluster.up(&[]).await?;
        }
        Fault::Switchover => cluster.switchover().await?,
        Fault::PartitionPrimary => {
            cluster.partition(primary.ordinal, false).await?;
            wait_for_new_primary(cluster, before.primary).await;
            cluster.partition(primary.ordinal, true).await?;
        }
    }
    Ok(())
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

fn freeze(primary: &myset_api::InstanceStatus) -> anyhow::Result<Vec<u32>> {
    let pids: Vec<u32> = [primary.agent_pid, primary.pid]
        .into_iter()
        .flatten()
        .collect();
    anyhow::ensure!(
        pids.len() == 2,
        "primary has no agent or server pid to freeze"
    );
    for &pid in &pids {
        myset_os::signal(pid, Signal::SIGSTOP);
    }
    Ok(pids)
}

fn thaw(pids: &[u32]) {
    for &pid in pids {
        if myset_os::pid_alive(pid) {
            myset_os::signal(pid, Signal::SIGCONT);
        }
    }
}
