//! The faults the harness injects.

use crate::cluster::Cluster;
use anyhow::Context;
use myset_api::{ClusterStatus, Role};
use nix::sys::signal::Signal;
use rand::Rng;
use std::time::{Duration, Instant};

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
    /// The controller is killed in the middle of a failover, then restarted.
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
    pub const ALL: [Fault; 6] = [
        Fault::KillPrimaryServer,
        Fault::KillPrimaryInstance,
        Fault::FreezePrimary,
        Fault::KillReplica,
        Fault::KillControllerDuringFailover,
        Fault::RestartCluster,
    ];
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

pub async fn inject(
    cluster: &Cluster,
    fault: Fault,
    before: &ClusterStatus,
    rng: &mut impl Rng,
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
        Fault::KillControllerDuringFailover => {
            let controller = cluster.controller_pid().context("no controller running")?;
            let seen = cluster.events().len();
            let pids = freeze(primary)?;
            let deadline = Instant::now() + FREEZE_LIMIT;
            while Instant::now() < deadline {
                if cluster.events()[seen.min(cluster.events().len())..]
                    .iter()
                    .any(|e| e.kind == myset_api::EventKind::Failover)
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            myset_os::signal(controller, Signal::SIGKILL);
            while myset_os::pid_alive(controller) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            thaw(&pids);
            cluster.up(&[]).await.context("restarting the controller")?;
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

/// Waits until the cluster has replaced `old` as primary, or gives up after `FREEZE_LIMIT`.
async fn wait_for_new_primary(cluster: &Cluster, old: u32) {
    let deadline = Instant::now() + FREEZE_LIMIT;
    while Instant::now() < deadline {
        if cluster.status().await.is_ok_and(|s| s.primary != old) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
