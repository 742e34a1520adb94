//! A [`Runtime`] over podman: the shared controller drives the Pods the operator renders,
//! for real, on one host and without a Kubernetes API server. It is the data-plane half of the
//! Kubernetes runtime (issue 7, layer 3): what a Pod is, how its agent gets its spec, how its
//! volume outlives it. What it stands in for:
//!
//! | Kubernetes                         | here                                                   |
//! |------------------------------------|--------------------------------------------------------|
//! | create the Pod (`N-o`)             | `podman kube play` of the rendered Pod, adapted ([`adapt`]) |
//! | the Pod network                    | a podman bridge network of this runtime's own, one fixed IP per ordinal |
//! | PVC `N-o-data`                     | the named podman volume `N-o-data`                     |
//! | Secret `N-agent`, ConfigMap `N-config` | a host directory; the `ConfigMap` document itself  |
//! | delete the Pod (graceful / forced) | `podman pod stop` + `rm` / `podman pod rm -f -t 0`     |
//! | the `MySet` status, Events         | a JSON file in this runtime's directory; memory        |
//!
//! As the operator will, the runtime sends each started Pod its spec (`PUT /spec`): a rendered
//! Pod starts with `--await-spec` and waits for it.

pub mod adapt;
mod podman;

pub use adapt::{adapt_for_podman, HostSide};
pub use podman::Podman;

use anyhow::Context;
use k8s_openapi::api::core::v1::Pod;
use myset_api::{Address, ClusterState, Event, InstanceSpec, Placement, Secrets};
use myset_operator::render::{names, AGENT_PORT, MYSQL_PORT, RUN_AS};
use myset_operator::{MySet, Object};
use myset_runtime::{AgentApi, HttpAgents, KillOutcome, Runtime};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a started Pod's agent may take to accept its spec (the container starting).
const SPEC_DEADLINE: Duration = Duration::from_secs(60);
/// How long a stopping Pod may take before podman kills it (a server's clean shutdown).
const STOP_GRACE_SECONDS: &str = "90";

/// Runs one `MySet`'s Pods with podman. Cheap to clone: clones share everything, so a test
/// keeps one while the controller owns another.
#[derive(Clone)]
pub struct PodmanRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    podman: Podman,
    myset: MySet,
    secrets: Secrets,
    /// This runtime's directory: record, secrets file, scratch dirs, rendered YAML.
    dir: PathBuf,
    network: String,
    /// The network's /24, as its first three octets; ordinal o gets `.{10 + o}`.
    prefix: String,
    /// Where podman keeps named volumes (`<volumes>/<name>/_data`).
    volumes: PathBuf,
    /// Each started Pod's agent container's pid file, which podman rewrites at every restart
    /// of the container.
    pid_files: Mutex<HashMap<u32, PathBuf>>,
    events: Mutex<Vec<Event>>,
    agents: HttpAgents,
}

impl PodmanRuntime {
    /// Sets up what every Pod of `myset` needs (its network, the secrets file, podman's
    /// configuration) under `dir`, a directory of the caller's that outlives the runtime.
    /// `myset` names the cluster (give each test its own name: Pods, volumes and the network
    /// are named after it) and the image.
    pub async fn create(myset: MySet, secrets: Secrets, dir: &Path) -> anyhow::Result<Self> {
        let name = myset.metadata.name.clone().unwrap_or_default();
        let podman = Podman::configure(dir)?;
        let secrets_dir = dir.join("secrets");
        std::fs::create_dir_all(&secrets_dir)?;
        let file = secrets_dir.join(myset_operator::render::SECRETS_KEY);
        myset_os::write_atomic(&file, &serde_json::to_vec_pretty(&secrets)?, 0o400)?;
        // What the kubelet does for a Secret volume with fsGroup: the Pod's user can read it.
        for path in [&secrets_dir, &file] {
            std::os::unix::fs::chown(path, Some(RUN_AS as u32), Some(RUN_AS as u32))?;
        }
        myset_os::write_atomic(
            &dir.join("password"),
            secrets.user_password.as_bytes(),
            0o600,
        )?;
        let volumes = podman
            .run(&["info", "--format", "{{.Store.VolumePath}}"])
            .await?
            .trim()
            .into();
        let network = format!("myset-{name}");
        let prefix = create_network(&podman, &network).await?;
        Ok(PodmanRuntime {
            inner: Arc::new(Inner {
                agents: HttpAgents::new(myset_runtime::ApiAccess::plain(&secrets.api_token)),
                podman,
                myset,
                secrets,
                dir: dir.to_path_buf(),
                network,
                prefix,
                volumes,
                pid_files: Mutex::new(HashMap::new()),
                events: Mutex::new(Vec::new()),
            }),
        })
    }

    pub fn podman(&self) -> &Podman {
        &self.inner.podman
    }

    pub fn cluster(&self) -> &str {
        self.inner
            .myset
            .metadata
            .name
            .as_deref()
            .unwrap_or_default()
    }

    /// The Pod of `ordinal` (also its hostname).
    pub fn pod_name(&self, ordinal: u32) -> String {
        names::pod(self.cluster(), ordinal)
    }

    /// The IP the Pod of `ordinal` always gets.
    pub fn pod_ip(&self, ordinal: u32) -> String {
        format!("{}.{}", self.inner.prefix, 10 + ordinal)
    }

    /// Every event the controller recorded, oldest first.
    pub fn events(&self) -> Vec<Event> {
        self.inner.events.lock().expect("events lock").clone()
    }

    /// The named volume standing in for the ordinal's PVC.
    fn volume(&self, ordinal: u32) -> String {
        names::pvc(self.cluster(), ordinal)
    }

    /// The instance directory inside the ordinal's volume, as the agent sees /var/lib/myset.
    fn instance_dir(&self, ordinal: u32) -> myset_agent::InstanceLayout {
        myset_agent::InstanceLayout::new(
            self.inner.volumes.join(self.volume(ordinal)).join("_data"),
        )
    }

    /// The ordinal's rendered Pod, adapted for podman, with the ConfigMap it mounts, as one
    /// YAML stream for `podman kube play`; and the Pod as rendered. (Through `render`, whose
    /// signature is settled, rather than the per-member helpers still being shaped.)
    fn pod_yaml(&self, ordinal: u32, host: &HostSide) -> anyhow::Result<(Pod, String)> {
        let mut myset = self.inner.myset.clone();
        // render() makes the Pods of ordinals below `replicas`; this ordinal must be one.
        myset.spec.replicas = myset.spec.replicas.max(ordinal + 1);
        let pod_name = self.pod_name(ordinal);
        let (mut pod, mut config) = (None, None);
        for object in myset_operator::render(&myset, &self.inner.secrets)? {
            match object {
                Object::Pod(p) if p.metadata.name.as_deref() == Some(pod_name.as_str()) => {
                    pod = Some(p)
                }
                Object::ConfigMap(c) => config = Some(c),
                _ => {}
            }
        }
        let (Some(rendered), Some(config)) = (pod, config) else {
            anyhow::bail!("render() made no Pod {pod_name} or no ConfigMap");
        };
        let mut pod = rendered.clone();
        adapt_for_podman(&mut pod, host);
        let yaml = myset_operator::to_yaml_stream(&[Object::ConfigMap(config), Object::Pod(pod)])?;
        Ok((rendered, yaml))
    }

    /// Fresh emptyDir stand-ins for the ordinal's next Pod, writable by the Pod's user.
    fn prepare_scratch(&self, ordinal: u32, pod: &Pod) -> anyhow::Result<PathBuf> {
        let scratch = self.inner.dir.join("pods").join(self.pod_name(ordinal));
        if scratch.exists() {
            std::fs::remove_dir_all(&scratch)?;
        }
        for volume in adapt::scratch_volumes(pod) {
            let dir = scratch.join(volume);
            std::fs::create_dir_all(&dir)?;
            std::os::unix::fs::chown(&dir, Some(RUN_AS as u32), Some(RUN_AS as u32))?;
        }
        Ok(scratch)
    }

    /// Creates the Pod of `spec.ordinal` (replacing any left of it) and returns once its agent
    /// has taken `spec`.
    async fn play(&self, spec: &InstanceSpec) -> anyhow::Result<()> {
        let o = spec.ordinal;
        let podman = &self.inner.podman;
        let volume = self.volume(o);
        if podman.run(&["volume", "exists", &volume]).await.is_err() {
            // Empty: podman copies the image's /var/lib/myset (owned by the Pods' user) onto
            // it at the first mount, as fsGroup would make a PVC writable.
            podman.run(&["volume", "create", &volume]).await?;
        }
        let scratch = self.inner.dir.join("pods").join(self.pod_name(o));
        let host = HostSide {
            secrets_dir: self.inner.dir.join("secrets"),
            scratch_dir: scratch.clone(),
            pod_ip: self.pod_ip(o),
        };
        let (rendered, yaml) = self.pod_yaml(o, &host)?;
        let (me, pod) = (self.clone(), rendered);
        myset_os::off_thread(move || {
            me.prepare_scratch(o, &pod)
                .map_err(std::io::Error::other)
                .map(drop)
        })
        .await?;
        let file = self
            .inner
            .dir
            .join("pods")
            .join(format!("{}.yaml", self.pod_name(o)));
        std::fs::write(&file, yaml)?;
        let ip = self.pod_ip(o);
        podman
            .run(&[
                "kube",
                "play",
                "--replace",
                "--network",
                &self.inner.network,
                "--ip",
                &ip,
                &file.to_string_lossy(),
            ])
            .await?;
        let container = format!("{}-myset", self.pod_name(o));
        let pid_file = podman
            .run(&["inspect", "--format", "{{.PidFile}}", &container])
            .await?;
        self.inner
            .pid_files
            .lock()
            .expect("pid files lock")
            .insert(o, PathBuf::from(pid_file.trim()));
        self.send_spec(spec).await
    }

    /// `PUT /spec` until the agent takes it: it waits for one (`--await-spec`), or, restarted
    /// on a volume that holds a spec, runs from that one and takes this newer one.
    async fn send_spec(&self, spec: &InstanceSpec) -> anyhow::Result<()> {
        let last = Mutex::new(String::from("no answer"));
        let step = || async {
            match self
                .inner
                .agents
                .put_spec(spec, Duration::from_secs(2))
                .await
            {
                Ok(()) => Ok::<_, std::convert::Infallible>(Some(())),
                Err(e) => {
                    *last.lock().expect("last error lock") = e.to_string();
                    Ok(None)
                }
            }
        };
        let taken = myset_os::poll_for(SPEC_DEADLINE, Duration::from_millis(250), step).await;
        anyhow::ensure!(
            matches!(taken, Ok(Some(()))),
            "the agent of {} did not take its spec within {}s: {}",
            self.pod_name(spec.ordinal),
            SPEC_DEADLINE.as_secs(),
            last.lock().expect("last error lock")
        );
        Ok(())
    }

    /// Removes the ordinal's Pod at once (SIGKILL), as a forced delete does.
    async fn remove_pod(&self, ordinal: u32) -> anyhow::Result<()> {
        self.forget(ordinal);
        let pod = self.pod_name(ordinal);
        self.inner
            .podman
            .run(&["pod", "rm", "--force", "--ignore", "--time", "0", &pod])
            .await
            .map(drop)
    }

    fn forget(&self, ordinal: u32) {
        self.inner
            .pid_files
            .lock()
            .expect("pid files lock")
            .remove(&ordinal);
    }

    /// Removes everything this runtime made on the host: its Pods, volumes (the data too) and
    /// network. Synchronous, so a test can call it from a `Drop` even while panicking.
    /// Returns what could not be removed.
    pub fn cleanup(&self) -> Vec<String> {
        let podman = &self.inner.podman;
        let prefix = format!("{}-", self.cluster());
        let mut failures = Vec::new();
        let mut check = |what: &str, result: anyhow::Result<String>| {
            if let Err(e) = result {
                failures.push(format!("{what}: {e:#}"));
            }
        };
        let label = format!(
            "label={}={}",
            myset_operator::render::LABEL_CLUSTER,
            self.cluster()
        );
        let pods = podman.run_blocking(&["pod", "ps", "--quiet", "--filter", &label]);
        for pod in pods.as_deref().unwrap_or_default().split_whitespace() {
            check(
                pod,
                podman.run_blocking(&["pod", "rm", "--force", "--time", "0", pod]),
            );
        }
        let volumes = podman.run_blocking(&["volume", "ls", "--format", "{{.Name}}"]);
        for volume in volumes.as_deref().unwrap_or_default().lines() {
            if volume.starts_with(&prefix) {
                check(
                    volume,
                    podman.run_blocking(&["volume", "rm", "--force", volume]),
                );
            }
        }
        check(
            &self.inner.network,
            podman.run_blocking(&["network", "rm", "--force", &self.inner.network]),
        );
        failures
    }
}

/// Creates the bridge network `name` on a free /24 of 10.77.0.0/16 and returns its prefix.
/// The first /24 tried depends on the pid, so concurrent test processes rarely collide.
async fn create_network(podman: &Podman, name: &str) -> anyhow::Result<String> {
    let start = std::process::id() % 250;
    for i in 0..250 {
        let prefix = format!("10.77.{}", (start + i) % 250 + 1);
        let subnet = format!("{prefix}.0/24");
        match podman
            .run(&["network", "create", "--subnet", &subnet, name])
            .await
        {
            Ok(_) => return Ok(prefix),
            Err(e) if e.to_string().contains("already used") => continue,
            Err(e) => return Err(e),
        }
    }
    anyhow::bail!("no free /24 in 10.77.0.0/16 for network {name}")
}

impl Runtime for PodmanRuntime {
    type Agents = HttpAgents;

    fn agents(&self) -> &HttpAgents {
        &self.inner.agents
    }

    /// The Pod's own IP (fixed per ordinal, given to `kube play --ip`), with the rendered
    /// ports: what the headless Service's DNS name resolves to on Kubernetes.
    fn place(&self, ordinal: u32, _state: &ClusterState) -> anyhow::Result<Placement> {
        let host = self.pod_ip(ordinal);
        Ok(Placement {
            server: Address {
                host: host.clone(),
                port: MYSQL_PORT as u16,
            },
            agent: Address {
                host,
                port: AGENT_PORT as u16,
            },
            galera: None,
        })
    }

    async fn start(&self, spec: &InstanceSpec) -> anyhow::Result<()> {
        let result = self.play(spec).await;
        if result.is_err() {
            // No half-started Pod: the controller sees it gone and starts it again later.
            if let Err(e) = self.remove_pod(spec.ordinal).await {
                tracing::warn!("cannot remove the Pod that failed to start: {e:#}");
            }
        }
        result
    }

    /// The host pid of the Pod's agent (PID 1 of its container) while it runs. The trait is
    /// local-centric; for a Pod the closest meaning is "its agent runs", and the agent's pid
    /// is the truest pid to give. It is read from the pid file podman rewrites at each
    /// container start, and checked against the agent's command line, so a stale pid never
    /// counts. A container that podman is restarting (restartPolicy Always after a crash)
    /// reads as None for that moment; the controller then replays the Pod, which replaces
    /// it: the same outcome as the kubelet's restart, one step sooner.
    fn agent_pid(&self, ordinal: u32) -> Option<u32> {
        let file = self
            .inner
            .pid_files
            .lock()
            .expect("pid files lock")
            .get(&ordinal)?
            .clone();
        let pid = myset_os::read_pid(&file)?;
        let marker = format!("--cluster {} --ordinal {ordinal} ", self.cluster());
        myset_os::pid_matches(pid, &marker).then_some(pid)
    }

    /// A graceful Pod deletion: SIGTERM to the agent, which shuts mariadbd down cleanly.
    async fn stop(&self, ordinal: u32) {
        let pod = self.pod_name(ordinal);
        let stop = self
            .inner
            .podman
            .run(&[
                "pod",
                "stop",
                "--ignore",
                "--time",
                STOP_GRACE_SECONDS,
                &pod,
            ])
            .await;
        if let Err(e) = stop {
            tracing::warn!("cannot stop {pod}: {e:#}");
        }
        if let Err(e) = self.remove_pod(ordinal).await {
            tracing::warn!("cannot remove {pod}: {e:#}");
        }
    }

    /// A forced Pod deletion. Every Pod is on this host, so it is always reachable.
    async fn kill(&self, ordinal: u32) -> KillOutcome {
        let was_running = self.agent_pid(ordinal).is_some();
        if let Err(e) = self.remove_pod(ordinal).await {
            tracing::warn!("cannot remove {}: {e:#}", self.pod_name(ordinal));
        }
        if was_running {
            KillOutcome::Killed
        } else {
            KillOutcome::AlreadyGone
        }
    }

    /// Renames the data dir inside the volume, as the local runtime does in its instance dir.
    async fn set_aside_data(&self, ordinal: u32, label: &str) -> anyhow::Result<String> {
        let data = self.instance_dir(ordinal).data();
        let (from, label) = (data.clone(), label.to_string());
        let aside = myset_os::off_thread(move || myset_os::set_aside(&from, &label))
            .await
            .with_context(|| format!("cannot move {} aside", data.display()))?;
        Ok(format!(
            "volume {}: {}",
            self.volume(ordinal),
            aside.display()
        ))
    }

    fn has_data(&self, ordinal: u32) -> bool {
        self.instance_dir(ordinal).data().exists()
    }

    /// Removes the ordinal's volume (its Pod is gone by then: the controller stops it first).
    async fn delete_data(&self, ordinal: u32) -> anyhow::Result<()> {
        let volume = self.volume(ordinal);
        self.inner
            .podman
            .run(&["volume", "rm", "--force", &volume])
            .await
            .map(drop)
    }

    async fn save_state(&self, state: &ClusterState) -> anyhow::Result<()> {
        let file = self.inner.dir.join("cluster.json");
        let bytes = serde_json::to_vec_pretty(state)?;
        myset_os::off_thread(move || myset_os::write_atomic(&file, &bytes, 0o600)).await?;
        Ok(())
    }

    fn record_event(&self, event: &Event) {
        self.inner
            .events
            .lock()
            .expect("events lock")
            .push(event.clone());
    }

    fn password_file(&self) -> String {
        self.inner.dir.join("password").display().to_string()
    }
}
