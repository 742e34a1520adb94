//! Agents as local processes, and the controller process that owns them.

use crate::layout::ClusterDir;
use anyhow::Context;
use myset_api::{Address, ClusterState, Event, GaleraPorts, InstanceSpec, Placement, Topology};
use myset_controller::{HttpAgents, KillOutcome, Runtime};
use myset_core::galera::MemberData;
use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a stopping instance may take before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(90);

pub struct LocalRuntime {
    dir: ClusterDir,
    /// The test subnet index when instances run in their own network namespaces.
    netns: Option<u8>,
    /// The myset binary, started as `myset agent` for each instance.
    exe: PathBuf,
    /// Agents this process started; kept so their exits are reaped.
    children: Mutex<HashMap<u32, Child>>,
    agents: HttpAgents,
    tls: Option<LocalTls>,
}

/// What the runtime needs to issue certificates.
pub struct LocalTls {
    /// The host of the rw and ro endpoints, which every member's certificate names.
    pub endpoint_host: String,
    /// The controller API's certificate, reloaded when renewed.
    pub api_cert: Arc<myset_tls::ReloadingCert>,
}

impl LocalRuntime {
    pub fn new(
        dir: ClusterDir,
        exe: PathBuf,
        netns: Option<u8>,
        access: myset_http::ApiAccess,
        tls: Option<LocalTls>,
    ) -> Self {
        LocalRuntime {
            dir,
            netns,
            exe,
            children: Mutex::new(HashMap::new()),
            agents: HttpAgents::new(access),
            tls,
        }
    }
}

/// Starts `command` in a session of its own, so a Ctrl-C aimed at the CLI does not reach it,
/// and so its parent's death does not signal it: a child in a mere process group of its own
/// would be in a group orphaned when its parent dies, and the kernel sends such a group
/// SIGHUP and SIGCONT if any member is stopped. That woke a frozen controller when the chaos
/// harness killed the agent that had started it, and could kill a stopped agent whose
/// controller dies.
pub(crate) fn spawn_detached(
    command: &mut Command,
    log: &std::path::Path,
) -> std::io::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    // SAFETY: setsid is async-signal-safe, the only call made between fork and exec here.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(|e| std::io::Error::from_raw_os_error(e as i32))
        });
    }
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
}

impl Runtime for LocalRuntime {
    type Agents = HttpAgents;

    fn agents(&self) -> &HttpAgents {
        &self.agents
    }

    fn place(&self, ordinal: u32, state: &ClusterState) -> anyhow::Result<Placement> {
        if let Some(index) = self.netns {
            // A host of its own: fixed ports on its own address.
            let host = crate::netns::instance_address(index, ordinal);
            return Ok(Placement {
                server: Address {
                    host: host.clone(),
                    port: 3306,
                },
                agent: Address { host, port: 8080 },
                galera: (state.topology == Topology::Galera).then_some(GaleraPorts {
                    gcomm: 4567,
                    ist: 4568,
                    sst: 4444,
                }),
            });
        }
        let mut taken: Vec<u16> = vec![state.rw_port, state.ro_port];
        taken.extend(state.placements.values().flat_map(|p| {
            let galera = p.galera.iter().flat_map(|g| [g.gcomm, g.ist, g.sst]);
            [p.server.port, p.agent.port].into_iter().chain(galera)
        }));
        let mut pick = || -> anyhow::Result<u16> {
            loop {
                let port = myset_os::free_port(&state.bind_host)
                    .with_context(|| format!("no free port on {}", state.bind_host))?;
                if !taken.contains(&port) {
                    taken.push(port);
                    return Ok(port);
                }
            }
        };
        let address = |port| Address {
            host: state.bind_host.clone(),
            port,
        };
        let server = address(pick()?);
        let agent = address(pick()?);
        let galera = if state.topology == Topology::Galera {
            Some(GaleraPorts {
                gcomm: pick()?,
                ist: pick()?,
                sst: pick()?,
            })
        } else {
            None
        };
        Ok(Placement {
            server,
            agent,
            galera,
        })
    }

    async fn galera_position(&self, ordinal: u32) -> anyhow::Result<MemberData> {
        let binaries = myset_mariadb::Binaries::find()?;
        let instance = self.dir.instance_dir(ordinal);
        Ok(myset_mariadb::galera::member_data(
            &binaries.mariadbd,
            &instance.join("run").join("my.cnf"),
            &self.dir.data_dir(ordinal),
            &instance.join("logs").join("wsrep-recover.log"),
        )
        .await?)
    }

    async fn start(&self, spec: &InstanceSpec) -> anyhow::Result<()> {
        let dir = self.dir.instance_dir(spec.ordinal);
        let spec_bytes = serde_json::to_vec_pretty(spec)?;
        let namespace = self
            .netns
            .map(|index| crate::netns::namespace(index, self.dir.name(), spec.ordinal));
        {
            let (dir, cluster, netns, ordinal) = (
                dir.clone(),
                self.dir.name().to_string(),
                self.netns,
                spec.ordinal,
            );
            let certificate = self.tls.as_ref().map(|tls| {
                (
                    self.dir.clone(),
                    member_hosts(tls, &spec.server, &spec.agent),
                )
            });
            // `ip`, key generation and fsync block: off the async threads.
            tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                std::fs::create_dir_all(&dir)?;
                myset_os::write_atomic(&dir.join("spec.json"), &spec_bytes, 0o600)?;
                if let Some((cluster_dir, hosts)) = certificate {
                    let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
                    crate::tls::ensure_member(&cluster_dir, ordinal, &hosts, false)?;
                }
                if let Some(index) = netns {
                    crate::netns::ensure(&cluster, index, ordinal)?;
                }
                Ok(())
            })
            .await??;
        }
        let mut command = Command::new(&self.exe);
        command
            .arg("agent")
            .arg("--instance-dir")
            .arg(&dir)
            .arg("--secrets")
            .arg(self.dir.secrets_file())
            .arg("--cluster-dir")
            .arg(self.dir.root());
        if self.tls.is_some() {
            command
                .arg("--tls-dir")
                .arg(&self.dir.instance_tls(spec.ordinal).dir);
        }
        if let Some(ns) = &namespace {
            // The agent enters the namespace itself, keeping a handle on this one, so that
            // the controller it may restart runs here, beside the endpoints.
            command.arg("--netns").arg(ns);
        }
        let child = spawn_detached(&mut command, &self.dir.agent_log(spec.ordinal))
            .with_context(|| format!("cannot start {}", self.exe.display()))?;
        std::fs::write(
            self.dir.agent_pid_file(spec.ordinal),
            child.id().to_string(),
        )?;
        self.children
            .lock()
            .expect("children lock")
            .insert(spec.ordinal, child);
        Ok(())
    }

    fn agent_pid(&self, ordinal: u32) -> Option<u32> {
        let mut children = self.children.lock().expect("children lock");
        if let Some(child) = children.get_mut(&ordinal) {
            return match child.try_wait() {
                Ok(None) => Some(child.id()),
                _ => {
                    children.remove(&ordinal);
                    None
                }
            };
        }
        // An agent started by an earlier controller: adopt it if it is really ours.
        myset_os::owned_pid(&self.dir.agent_pid_file(ordinal), &self.marker(ordinal))
    }

    async fn stop(&self, ordinal: u32) {
        if let Some(pid) = self.agent_pid(ordinal) {
            myset_os::terminate(pid, STOP_GRACE).await;
        }
        self.reap(ordinal);
        // A server whose agent was killed outlives it; stop it too.
        if let Some(pid) =
            myset_os::owned_pid(&self.dir.server_pid_file(ordinal), &self.marker(ordinal))
        {
            myset_os::terminate(pid, STOP_GRACE).await;
        }
    }

    async fn kill(&self, ordinal: u32) -> KillOutcome {
        // Instances in namespaces stand for separate hosts: one cut off from the network
        // cannot be reached, so it is not killed (fencing and self-fencing must hold instead).
        if let Some(index) = self.netns {
            if !crate::netns::connected(index, ordinal) {
                return KillOutcome::Unreachable;
            }
        }
        let marker = self.marker(ordinal);
        let mut killed = false;
        // The server first: it is what must not take another write.
        for file in [
            self.dir.server_pid_file(ordinal),
            self.dir.agent_pid_file(ordinal),
        ] {
            if let Some(pid) = myset_os::owned_pid(&file, &marker) {
                killed |= myset_os::kill_and_wait(pid).await;
            }
        }
        self.reap(ordinal);
        if killed {
            KillOutcome::Killed
        } else {
            KillOutcome::AlreadyGone
        }
    }

    async fn set_aside_data(&self, ordinal: u32, label: &str) -> anyhow::Result<String> {
        let data = self.dir.data_dir(ordinal);
        let (from, label) = (data.clone(), label.to_string());
        let aside = myset_os::off_thread(move || myset_os::set_aside(&from, &label))
            .await
            .with_context(|| format!("cannot move {} aside", data.display()))?;
        Ok(aside.display().to_string())
    }

    fn has_data(&self, ordinal: u32) -> bool {
        self.dir.data_dir(ordinal).exists()
    }

    async fn delete_data(&self, ordinal: u32) -> anyhow::Result<()> {
        let dir = self.dir.instance_dir(ordinal);
        let (netns, cluster) = (self.netns, self.dir.name().to_string());
        let target = dir.clone();
        // Gigabytes of data and `ip` calls: off the async threads.
        tokio::task::spawn_blocking(move || {
            if let Some(index) = netns {
                crate::netns::remove(index, &cluster, ordinal);
            }
            if target.exists() {
                std::fs::remove_dir_all(&target)?;
            }
            std::io::Result::Ok(())
        })
        .await?
        .with_context(|| format!("cannot delete {}", dir.display()))
    }

    async fn save_state(&self, state: &ClusterState) -> anyhow::Result<()> {
        let dir = self.dir.clone();
        let state = state.clone();
        tokio::task::spawn_blocking(move || dir.save_state(&state)).await??;
        Ok(())
    }

    fn record_event(&self, event: &Event) {
        self.dir.append_event(event);
    }

    fn password_file(&self) -> String {
        self.dir.password_file().display().to_string()
    }

    async fn renew_certificates(
        &self,
        state: &ClusterState,
        force: bool,
    ) -> anyhow::Result<Vec<u32>> {
        let Some(tls) = &self.tls else {
            return Ok(Vec::new());
        };
        let members: Vec<(u32, Vec<String>)> = state
            .members
            .iter()
            .filter_map(|o| {
                let p = state.placements.get(o)?;
                Some((*o, member_hosts(tls, &p.server, &p.agent)))
            })
            .collect();
        let (dir, endpoint_host, api_cert) = (
            self.dir.clone(),
            tls.endpoint_host.clone(),
            tls.api_cert.clone(),
        );
        tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<u32>> {
            if crate::tls::ensure_controller(&dir, &endpoint_host, force)? {
                api_cert.reload()?;
            }
            let mut renewed = Vec::new();
            for (ordinal, hosts) in members {
                let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
                if crate::tls::ensure_member(&dir, ordinal, &hosts, force)? {
                    renewed.push(ordinal);
                }
            }
            Ok(renewed)
        })
        .await?
    }
}

/// Every host a member is reached at: its own addresses and the endpoints', which route to it.
fn member_hosts(tls: &LocalTls, server: &Address, agent: &Address) -> Vec<String> {
    vec![
        tls.endpoint_host.clone(),
        server.host.clone(),
        agent.host.clone(),
    ]
}

impl LocalRuntime {
    /// What a process of this instance carries in its command line.
    fn marker(&self, ordinal: u32) -> String {
        self.dir
            .instance_dir(ordinal)
            .to_string_lossy()
            .into_owned()
    }

    /// Forgets (and reaps) the agent child this process started, so its pid is not mistaken
    /// for a live agent.
    fn reap(&self, ordinal: u32) {
        let child = self
            .children
            .lock()
            .expect("children lock")
            .remove(&ordinal);
        if let Some(mut child) = child {
            let _ = child.try_wait();
        }
    }
}
