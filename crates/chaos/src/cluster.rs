//! Driving the cluster under test through the `myset` binary, as a user would.

use crate::ChaosOptions;
use anyhow::{bail, Context};
use myset_api::{ClusterStatus, Event};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::process::Command;

/// The user account's credentials.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
    /// With TLS, the CA file servers are verified by.
    pub ca: Option<PathBuf>,
}

pub struct Cluster {
    exe: PathBuf,
    state_dir: PathBuf,
    pub name: String,
    rw_port: u16,
    ro_port: u16,
}

impl Cluster {
    pub async fn create(options: &ChaosOptions) -> anyhow::Result<Self> {
        let cluster = Cluster {
            exe: options.exe.clone(),
            state_dir: options.state_dir.clone(),
            name: options.name.clone(),
            rw_port: options.rw_port,
            ro_port: options.ro_port,
        };
        if cluster.dir().join("cluster.json").exists() {
            bail!(
                "cluster {} already exists in {}: chaos needs a cluster of its own (use --name)",
                cluster.name,
                cluster.state_dir.display()
            );
        }
        let topology = options.topology.to_string();
        let mut args = vec!["--replicas", "3", "--topology", topology.as_str()];
        if options.netns {
            args.push("--netns");
        }
        cluster.up(&args).await?;
        Ok(cluster)
    }

    pub fn dir(&self) -> PathBuf {
        self.state_dir.join(&self.name)
    }

    async fn myset(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.exe)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(args)
            .arg("--name")
            .arg(&self.name)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .with_context(|| format!("cannot run {}", self.exe.display()))?;
        if !out.status.success() {
            bail!(
                "myset {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub async fn up(&self, extra: &[&str]) -> anyhow::Result<()> {
        let rw = self.rw_port.to_string();
        let ro = self.ro_port.to_string();
        let mut args = vec!["up", "--rw-port", rw.as_str(), "--ro-port", ro.as_str()];
        args.extend_from_slice(extra);
        self.myset(&args).await.map(drop)
    }

    pub async fn down(&self) -> anyhow::Result<()> {
        self.myset(&["down"]).await.map(drop)
    }

    pub async fn kill(&self, ordinal: u32) -> anyhow::Result<()> {
        self.myset(&["kill", &ordinal.to_string()]).await.map(drop)
    }

    pub async fn partition(&self, ordinal: u32, heal: bool) -> anyhow::Result<()> {
        let o = ordinal.to_string();
        let mut args = vec!["partition", o.as_str()];
        if heal {
            args.push("--heal");
        }
        self.myset(&args).await.map(drop)
    }

    pub async fn switchover(&self) -> anyhow::Result<()> {
        self.myset(&["switchover"]).await.map(drop)
    }

    pub async fn rolling_restart(&self) -> anyhow::Result<()> {
        self.myset(&["restart"]).await.map(drop)
    }

    pub async fn destroy(&self) {
        if let Err(e) = self.myset(&["destroy", "--delete-backups"]).await {
            tracing::warn!("cannot destroy the chaos cluster: {e:#}");
        }
    }

    pub async fn status(&self) -> anyhow::Result<ClusterStatus> {
        let text = self.myset(&["status", "-o", "json"]).await?;
        serde_json::from_str(&text).context("status JSON")
    }

    /// The status, asking again until `limit` passes while it cannot be had (a controller
    /// that is restarting answers a moment later).
    pub async fn status_within(&self, limit: Duration) -> anyhow::Result<ClusterStatus> {
        let deadline = Instant::now() + limit;
        loop {
            match self.status().await {
                Ok(status) => return Ok(status),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    pub fn credentials(&self) -> anyhow::Result<Credentials> {
        let text = std::fs::read_to_string(self.dir().join("secrets.json"))?;
        let secrets: myset_api::Secrets = serde_json::from_str(&text)?;
        let state: myset_api::ClusterState =
            serde_json::from_str(&std::fs::read_to_string(self.dir().join("cluster.json"))?)?;
        Ok(Credentials {
            user: secrets.user,
            password: secrets.user_password,
            ca: state
                .tls
                .enabled()
                .then(|| self.dir().join("tls").join("ca.pem")),
        })
    }

    /// How stale a Ready replica may be and still serve reads through ro
    /// (`max_staleness_seconds` in the cluster's record).
    pub fn read_staleness_bound(&self) -> anyhow::Result<Duration> {
        let path = self.dir().join("cluster.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let state: myset_api::ClusterState =
            serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
        Ok(Duration::from_secs(state.max_staleness_seconds))
    }

    /// The controller's pid, while one runs.
    /// How long the running controller has been up: since it wrote `controller.json`, which it
    /// does once it listens.
    pub fn controller_age(&self) -> Option<Duration> {
        std::fs::metadata(self.dir().join("controller.json"))
            .and_then(|m| m.modified())
            .ok()?
            .elapsed()
            .ok()
    }

    pub fn controller_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.dir().join("controller.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        let pid = u32::try_from(v.get("pid")?.as_u64()?).ok()?;
        myset_os::pid_alive(pid).then_some(pid)
    }

    pub fn events(&self) -> Vec<Event> {
        std::fs::read_to_string(self.dir().join("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until every instance is Ready and every process the status names is alive (so a
    /// status taken before the controller noticed a fault does not count); for Galera, also
    /// until every member is Synced in one Primary view of all of them (a member can be Ready
    /// while a peer has not yet readmitted it).
    pub async fn wait_converged(&self, timeout: Duration) -> anyhow::Result<ClusterStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = self.status().await;
            if let Ok(s) = &last {
                let alive = s.instances.iter().all(|i| {
                    [i.pid, i.agent_pid]
                        .iter()
                        .all(|p| p.is_some_and(myset_os::pid_alive))
                });
                if s.converged() && alive && one_galera_view(s) && self.controller_pid().is_some() {
                    return Ok(s.clone());
                }
            }
            if Instant::now() > deadline {
                let detail = match last {
                    Ok(s) => s
                        .instances
                        .iter()
                        .map(|i| {
                            format!(
                                "{}: {} {}",
                                i.name,
                                i.state,
                                i.reason.clone().unwrap_or_default()
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; "),
                    Err(e) => format!("{e:#}"),
                };
                bail!("not converged within {}s: {detail}", timeout.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A Galera cluster's members all Synced, in a Primary component of all of them, with the same
/// view; trivially true for the replication topology.
fn one_galera_view(s: &ClusterStatus) -> bool {
    if s.topology != myset_api::Topology::Galera {
        return true;
    }
    let members = s.instances.len() as u32;
    let views: Vec<_> = s.instances.iter().map(|i| i.galera.as_ref()).collect();
    views.iter().all(|g| {
        g.is_some_and(|g| {
            g.primary_component
                && g.state == myset_api::WsrepState::Synced
                && g.cluster_size == members
        })
    }) && views
        .windows(2)
        .all(|w| w[0].map(|g| g.conf_id) == w[1].map(|g| g.conf_id))
}
