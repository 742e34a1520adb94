//! The per-instance agent, like a Pod's instance manager: it owns one mariadbd and its data dir.
//!
//! It prepares the data dir (bootstrap or clone), renders the server's option file from the
//! ordinal and role, supervises mariadbd and restarts it when it dies, converges replication to
//! what the controller asks, and serves probes, a status document and a clone stream over HTTP.

mod awaiting;
mod blocking;
mod clocks;
mod clone;
mod datadir;
mod http;
mod layout;
mod orders;
mod probe;
mod reconnect;
mod role;
mod same_host;
mod settings;
mod state;
mod supervisor;
mod tls;

pub use awaiting::Identity;
pub use layout::InstanceLayout;

use anyhow::Context;
use myset_api::{InstanceSpec, Secrets};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// What an agent process is started with. Everything after `secrets_file` is for running as
/// a Kubernetes Pod's PID 1; left unset (as the local runtime does), the agent behaves as it
/// always has.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The instance's directory: spec file, data dir ("volume"), sockets and logs.
    pub instance_dir: PathBuf,
    pub secrets_file: PathBuf,
    /// Where the API listens, instead of the spec's agent address.
    pub listen: Option<SocketAddr>,
    /// Where to serve the kubelet's token-free `/healthz` and `/readyz`; off when None.
    pub probe_listen: Option<SocketAddr>,
    /// With no spec on disk, wait for one over the API (needs `listen` and `identity`)
    /// instead of failing.
    pub await_spec: bool,
    /// The member this agent runs; a spec naming another is refused.
    pub identity: Option<Identity>,
    /// The host mariadbd binds (and the API, without `listen`), instead of the spec's hosts,
    /// which peers keep using to reach them.
    pub bind_host: Option<String>,
    /// A directory of the user's option files: `all.cnf`, `primary.cnf`, `replica.cnf`.
    pub server_options_dir: Option<PathBuf>,
    /// Move an existing data dir aside to `data.<label>` before starting, once per label
    /// (Kubernetes: a diverged former primary's data is kept on its volume for inspection
    /// and the instance re-clones).
    pub set_aside_data: Option<String>,
    /// The instance's TLS files (`ca.pem`, `cert.pem`, `key.pem`): the server requires TLS of
    /// TCP clients, replication verifies the primary, and the API is HTTPS. None: plain.
    pub tls_dir: Option<PathBuf>,
}

impl AgentOptions {
    /// An agent as the local runtime starts it: everything in the spec.
    pub fn local(instance_dir: PathBuf, secrets_file: PathBuf) -> Self {
        AgentOptions {
            instance_dir,
            secrets_file,
            listen: None,
            probe_listen: None,
            await_spec: false,
            identity: None,
            bind_host: None,
            server_options_dir: None,
            set_aside_data: None,
            tls_dir: None,
        }
    }
}

/// Runs the agent until it is told to stop (SIGTERM, SIGINT or `POST /shutdown`).
pub async fn run(options: AgentOptions) -> anyhow::Result<()> {
    let layout = InstanceLayout::new(options.instance_dir.clone());
    let stored: Option<InstanceSpec> = if options.await_spec && !layout.spec_file().exists() {
        None
    } else {
        Some(read_json(&layout.spec_file())?)
    };
    let spec = stored_spec_to_run(stored, options.await_spec);
    if options.await_spec && spec.is_none() && layout.spec_file().exists() {
        tracing::info!("a Galera member waits for the operator's spec before starting its server");
    }
    if let (Some(spec), Some(identity)) = (&spec, &options.identity) {
        identity
            .check(spec)
            .map_err(|e| anyhow::anyhow!("{}: {e}", layout.spec_file().display()))?;
    }
    let secrets: Secrets = read_json(&options.secrets_file)?;
    let binaries = myset_mariadb::Binaries::find()?;
    layout.create_dirs()?;
    supervisor::stop_leftover_server(&layout).await;
    if let Some(label) = &options.set_aside_data {
        set_aside_once(&layout, label)?;
    }

    let probe_target = http::ProbeTarget::default();
    let probes = match options.probe_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("agent cannot listen for probes on {addr}"))?;
            Some(tokio::spawn(http::serve_probes(
                probe_target.clone(),
                listener,
            )))
        }
        None => None,
    };
    let result = run_with(options, layout, spec, secrets, binaries, probe_target).await;
    if let Some(probes) = probes {
        probes.abort();
    }
    result
}

async fn run_with(
    options: AgentOptions,
    layout: InstanceLayout,
    spec: Option<InstanceSpec>,
    secrets: Secrets,
    binaries: myset_mariadb::Binaries,
    probe_target: http::ProbeTarget,
) -> anyhow::Result<()> {
    // A listener given by flag is bound before any spec exists: while the agent waits for
    // its spec and then, as the same socket, for the API.
    let mut listener = match options.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("agent cannot listen on {addr}"))?
                .into_std()?,
        ),
        None => None,
    };
    // Signals stop a wait for the spec; after it, state::stop_on_signal takes over as always.
    let early_stop = tokio_util::sync::CancellationToken::new();
    let spec = match spec {
        Some(spec) => spec,
        None => {
            let (Some(std_listener), Some(identity)) = (&listener, options.identity.clone()) else {
                anyhow::bail!("waiting for a spec needs the address to listen on and the identity of the member (--listen, --cluster, --ordinal)");
            };
            let signals = tokio::spawn(state::stop_on_signal(early_stop.clone()));
            let waiting = tokio::net::TcpListener::from_std(std_listener.try_clone()?)?;
            let received = awaiting::await_spec(
                waiting,
                &layout,
                binaries.mariadbd.clone(),
                identity,
                &secrets.api_token,
                early_stop.clone(),
            )
            .await;
            // Left running: a signal from now on reaches the agent through the link below.
            drop(signals);
            match received? {
                Some(spec) => spec,
                None => return Ok(()),
            }
        }
    };

    let mut shared = state::Shared::new(spec, secrets, layout, binaries);
    shared.overrides = state::Overrides {
        bind_host: options.bind_host.clone(),
        server_options_dir: options.server_options_dir.clone(),
    };
    if let Some(dir) = options.tls_dir.clone() {
        let tls = tls::AgentTls::load(dir)?;
        shared.api =
            myset_http::ApiAccess::verified_by(&shared.secrets.api_token, &tls.files.ca())?;
        shared.tls = Some(tls);
    }
    let shared = Arc::new(shared);
    let _ = probe_target.set(shared.clone());
    let link = {
        let shared = shared.clone();
        tokio::spawn(async move {
            early_stop.cancelled().await;
            shared.stop.cancel();
        })
    };
    let listener = match listener.take() {
        Some(l) => tokio::net::TcpListener::from_std(l)?,
        None => {
            let spec = shared.spec();
            let host = options.bind_host.as_deref().unwrap_or(&spec.agent.host);
            tokio::net::TcpListener::bind((host, spec.agent.port))
                .await
                .with_context(|| format!("agent cannot listen on {host}:{}", spec.agent.port))?
        }
    };
    let server = tokio::spawn(http::serve(shared.clone(), listener));
    let signals = tokio::spawn(state::stop_on_signal(shared.stop.clone()));
    let fence_watch = tokio::spawn(orders::self_fence_watch(shared.clone()));
    let sampler = tokio::spawn(probe::sample_primary_stream(shared.clone()));

    let result = supervisor::run(shared.clone()).await;
    server.abort();
    signals.abort();
    fence_watch.abort();
    sampler.abort();
    link.abort();
    result
}

/// Whether the agent runs the spec it found on disk (None: it waits for one over the API).
/// On Kubernetes (`await_spec`) only the operator, which compares every member's position,
/// decides how a Galera server starts: a stored spec may still say "form the cluster" long
/// after it was formed, and a new Pod may be there only to report its position. So a Galera
/// agent there waits for the operator's word, reporting its position meanwhile.
fn stored_spec_to_run(stored: Option<InstanceSpec>, await_spec: bool) -> Option<InstanceSpec> {
    stored.filter(|s| !(await_spec && s.galera.is_some()))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is corrupt", path.display()))
}

#[cfg(test)]
pub(crate) mod testing {
    use myset_api::{Address, InstanceSpec, Role, Secrets};

    pub fn address(port: u16) -> Address {
        Address {
            host: "127.0.0.1".into(),
            port,
        }
    }

    pub fn spec(role: Role, term: u64, primary: Option<Address>) -> InstanceSpec {
        InstanceSpec {
            cluster: "t".into(),
            ordinal: 1,
            server_id: 101,
            server: address(1),
            agent: address(2),
            role,
            primary,
            bootstrap: false,
            donors: Vec::new(),
            term,
            max_staleness_seconds: 10,
            semisync: false,
            peers: Vec::new(),
            isolation_fence_ms: 0,
            galera: None,
            settings: Default::default(),
        }
    }

    /// Agent state over `dir`, with no server behind it.
    pub fn shared(dir: &std::path::Path, spec: InstanceSpec) -> crate::state::Shared {
        let secret = |s: &str| s.to_string();
        let secrets = Secrets {
            admin_user: secret("admin"),
            admin_password: secret("a"),
            repl_user: secret("repl"),
            repl_password: secret("r"),
            user: secret("user"),
            user_password: secret("u"),
            api_token: secret("t"),
        };
        let binaries = myset_mariadb::Binaries {
            mariadbd: "/nonexistent".into(),
            install_db: "/nonexistent".into(),
            backup: "/nonexistent".into(),
            mbstream: "/nonexistent".into(),
            binlog: "/nonexistent".into(),
            client: "/nonexistent".into(),
        };
        let layout = crate::InstanceLayout::new(dir.to_path_buf());
        crate::state::Shared::new(spec, secrets, layout, binaries)
    }
}

/// Moves the data dir to `data.<label>` unless that was done already: the Pod's command keeps
/// the flag, so a restarted container must not set aside the clone made since.
fn set_aside_once(layout: &InstanceLayout, label: &str) -> anyhow::Result<()> {
    let aside = myset_os::set_aside_path(&layout.data(), label);
    if aside.exists() || !layout.data().exists() {
        return Ok(());
    }
    myset_os::set_aside(&layout.data(), label).map_err(|e| {
        anyhow::anyhow!(
            "cannot move {} aside to {}: {e}",
            layout.data().display(),
            aside.display()
        )
    })?;
    tracing::warn!(to = %aside.display(), "the data dir was set aside; this instance re-clones");
    Ok(())
}

#[cfg(test)]
mod set_aside_tests {
    use super::*;

    #[test]
    fn a_stored_galera_spec_waits_for_the_operator_on_kubernetes_only() {
        use myset_api::{Address, GaleraPorts, GaleraSpec, GaleraStart, Role};
        let replication = testing::spec(Role::Primary, 3, None);
        let mut galera = replication.clone();
        galera.galera = Some(GaleraSpec {
            cluster_name: "t".into(),
            ports: GaleraPorts {
                gcomm: 4567,
                ist: 4568,
                sst: 4444,
            },
            members: vec![Address {
                host: "t-1".into(),
                port: 4567,
            }],
            start: GaleraStart::NewCluster,
            causal_reads: false,
        });
        // Locally the runtime writes the spec just before starting the agent: it is fresh.
        assert_eq!(
            stored_spec_to_run(Some(galera.clone()), false),
            Some(galera.clone())
        );
        assert_eq!(stored_spec_to_run(Some(galera), true), None);
        assert_eq!(
            stored_spec_to_run(Some(replication.clone()), true),
            Some(replication)
        );
        assert_eq!(stored_spec_to_run(None, true), None);
    }

    #[test]
    fn data_is_set_aside_once_per_label() {
        let dir = tempfile::tempdir().unwrap();
        let layout = InstanceLayout::new(dir.path().to_path_buf());
        std::fs::create_dir_all(layout.data()).unwrap();
        std::fs::write(layout.data().join("errant"), b"x").unwrap();
        set_aside_once(&layout, "errant-term2").unwrap();
        assert!(!layout.data().exists());
        let aside = myset_os::set_aside_path(&layout.data(), "errant-term2");
        assert!(aside.join("errant").exists());
        // A restarted container with the same flag keeps the clone made since.
        std::fs::create_dir_all(layout.data()).unwrap();
        set_aside_once(&layout, "errant-term2").unwrap();
        assert!(layout.data().exists());
        // Nothing to set aside is no error.
        set_aside_once(&layout, "other").unwrap();
    }
}
