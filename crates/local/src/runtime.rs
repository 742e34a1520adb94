//! Agents as local processes, and the controller process that owns them.

use crate::layout::ClusterDir;
use anyhow::Context;
use myset_api::{Address, ClusterState, Event, InstanceSpec, Placement};
use myset_controller::{Controller, Runtime, Timing};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
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
}

impl LocalRuntime {
    pub fn new(dir: ClusterDir, exe: PathBuf, netns: Option<u8>) -> Self {
        LocalRuntime {
            dir,
            netns,
            exe,
            children: Mutex::new(HashMap::new()),
        }
    }
}

/// Starts `command` in its own process group, so a Ctrl-C aimed at the CLI does not reach it.
fn spawn_detached(command: &mut Command, log: &std::path::Path) -> std::io::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
}

impl Runtime for LocalRuntime {
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
            });
        }
        let mut taken: Vec<u16> = vec![state.rw_port, state.ro_port];
        taken.extend(
            state
                .placements
                .values()
                .flat_map(|p| [p.server.port, p.agent.port]),
        );
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
        Ok(Placement {
            server: address(pick()?),
            agent: address(pick()?),
        })
    }

    async fn start(&self, spec: &InstanceSpec) -> anyhow::Result<()> {
        let dir = self.dir.instance_dir(spec.ordinal);
        std::fs::create_dir_all(&dir)?;
        let spec_bytes = serde_json::to_vec_pretty(spec)?;
        myset_os::write_atomic(&dir.join("spec.json"), &spec_bytes, 0o600)?;
        let mut command = match self.netns {
            Some(index) => {
                crate::netns::ensure(self.dir.name(), index, spec.ordinal)?;
                let mut c = Command::new("ip");
                c.args([
                    "netns",
                    "exec",
                    &crate::netns::namespace(index, self.dir.name(), spec.ordinal),
                ])
                .arg(&self.exe);
                c
            }
            None => Command::new(&self.exe),
        };
        let child = spawn_detached(
            command
                .arg("agent")
                .arg("--instance-dir")
                .arg(&dir)
                .arg("--secrets")
                .arg(self.dir.secrets_file()),
            &self.dir.agent_log(spec.ordinal),
        )
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
        let pid = myset_os::read_pid(&self.dir.agent_pid_file(ordinal))?;
        let marker = self.dir.instance_dir(ordinal);
        myset_os::pid_matches(pid, &marker.to_string_lossy()).then_some(pid)
    }

    async fn stop(&self, ordinal: u32) {
        if let Some(pid) = self.agent_pid(ordinal) {
            myset_os::terminate(pid, STOP_GRACE).await;
        }
        let child = self
            .children
            .lock()
            .expect("children lock")
            .remove(&ordinal);
        if let Some(mut child) = child {
            let _ = child.wait();
        }
        // A server whose agent was killed outlives it; stop it too.
        if let Some(pid) = myset_os::read_pid(&self.dir.server_pid_file(ordinal)) {
            if myset_os::pid_matches(pid, &self.dir.instance_dir(ordinal).to_string_lossy()) {
                myset_os::terminate(pid, STOP_GRACE).await;
            }
        }
    }

    async fn kill(&self, ordinal: u32) -> bool {
        // Instances in namespaces stand for separate hosts: one cut off from the network
        // cannot be reached, so it is not killed (fencing and self-fencing must hold instead).
        if let Some(index) = self.netns {
            if !crate::netns::connected(index, ordinal) {
                return false;
            }
        }
        let marker = self
            .dir
            .instance_dir(ordinal)
            .to_string_lossy()
            .into_owned();
        let mut killed = false;
        // The server first: it is what must not take another write.
        for file in [
            self.dir.server_pid_file(ordinal),
            self.dir.agent_pid_file(ordinal),
        ] {
            if let Some(pid) =
                myset_os::read_pid(&file).filter(|&p| myset_os::pid_matches(p, &marker))
            {
                killed |= myset_os::signal(pid, nix::sys::signal::Signal::SIGKILL);
                let deadline = std::time::Instant::now() + Duration::from_secs(5);
                while myset_os::pid_alive(pid) && std::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        // Reap our child so its pid is not mistaken for a live agent.
        if let Some(mut child) = self
            .children
            .lock()
            .expect("children lock")
            .remove(&ordinal)
        {
            let _ = child.try_wait();
        }
        killed
    }

    fn set_aside_data(&self, ordinal: u32, label: &str) -> anyhow::Result<String> {
        let data = self.dir.data_dir(ordinal);
        let aside = self.dir.instance_dir(ordinal).join(format!("data.{label}"));
        std::fs::rename(&data, &aside)
            .with_context(|| format!("cannot move {} aside", data.display()))?;
        Ok(aside.display().to_string())
    }

    fn has_data(&self, ordinal: u32) -> bool {
        self.dir.data_dir(ordinal).exists()
    }

    fn delete_data(&self, ordinal: u32) -> anyhow::Result<()> {
        if let Some(index) = self.netns {
            crate::netns::remove(index, self.dir.name(), ordinal);
        }
        let dir = self.dir.instance_dir(ordinal);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot delete {}", dir.display()))?;
        }
        Ok(())
    }

    fn save_state(&self, state: &ClusterState) -> anyhow::Result<()> {
        Ok(self.dir.save_state(state)?)
    }

    fn record_event(&self, event: &Event) {
        self.dir.append_event(event);
    }

    fn password_file(&self) -> String {
        self.dir.password_file().display().to_string()
    }
}

/// Written by a running controller so the CLI can find its API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControllerInfo {
    pub pid: u32,
    pub api: Address,
}

impl ControllerInfo {
    /// The running controller of `dir`, if there is one.
    pub fn find(dir: &ClusterDir) -> Option<ControllerInfo> {
        let text = std::fs::read_to_string(dir.controller_info()).ok()?;
        let info: ControllerInfo = serde_json::from_str(&text).ok()?;
        myset_os::pid_matches(info.pid, &dir.root().to_string_lossy()).then_some(info)
    }
}

/// Starts the controller of `dir` as a background process running `exe controller`.
pub fn spawn_controller(
    dir: &ClusterDir,
    exe: &std::path::Path,
    state_dir: &std::path::Path,
) -> anyhow::Result<u32> {
    let child = spawn_detached(
        Command::new(exe)
            .arg("--state-dir")
            .arg(state_dir)
            .arg("controller")
            .arg("--name")
            .arg(dir.name())
            .arg("--cluster-dir")
            .arg(dir.root()),
        &dir.controller_log(),
    )
    .with_context(|| format!("cannot start {}", exe.display()))?;
    Ok(child.id())
}

/// The controller process: holds the cluster's lock, serves the API and reconciles.
pub async fn run_controller(dir: ClusterDir, exe: PathBuf) -> anyhow::Result<()> {
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.controller_lock())?;
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|_| anyhow::anyhow!("another controller already runs cluster {}", dir.name()))?;
    let state = dir.load_state()?;
    let secrets = dir.load_secrets()?;
    let api_listener = tokio::net::TcpListener::bind((state.bind_host.as_str(), 0)).await?;
    let info = ControllerInfo {
        pid: std::process::id(),
        api: Address {
            host: state.bind_host.clone(),
            port: api_listener.local_addr()?.port(),
        },
    };
    let runtime = LocalRuntime::new(dir.clone(), exe, state.netns);
    let controller = Controller::new(runtime, state, secrets, Timing::default());
    let run = controller.run_with(api_listener, || {
        myset_os::write_atomic(
            &dir.controller_info(),
            &serde_json::to_vec(&info).expect("info serializes"),
            0o600,
        )
    });
    let result = run.await;
    let _ = std::fs::remove_file(dir.controller_info());
    result
}
