//! The per-instance agent, like a Pod's instance manager: it owns one mariadbd and its data dir.
//!
//! It prepares the data dir (bootstrap or clone), renders the server's option file from the
//! ordinal and role, supervises mariadbd and restarts it when it dies, converges replication to
//! what the controller asks, and serves probes, a status document and a clone stream over HTTP.

mod blocking;
mod clocks;
mod clone;
mod datadir;
mod http;
mod layout;
mod orders;
mod probe;
mod role;
mod state;
mod supervisor;

pub use layout::InstanceLayout;

use anyhow::Context;
use myset_api::{InstanceSpec, Secrets};
use std::path::PathBuf;
use std::sync::Arc;

/// What an agent process is started with.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The instance's directory: spec file, data dir ("volume"), sockets and logs.
    pub instance_dir: PathBuf,
    pub secrets_file: PathBuf,
}

/// Runs the agent until it is told to stop (SIGTERM, SIGINT or `POST /shutdown`).
pub async fn run(options: AgentOptions) -> anyhow::Result<()> {
    let layout = InstanceLayout::new(options.instance_dir);
    let spec: InstanceSpec = read_json(&layout.spec_file())?;
    let secrets: Secrets = read_json(&options.secrets_file)?;
    let binaries = myset_mariadb::Binaries::find()?;
    layout.create_dirs()?;
    supervisor::stop_leftover_server(&layout).await;

    let shared = Arc::new(state::Shared::new(spec, secrets, layout, binaries));
    let listener = tokio::net::TcpListener::bind((
        shared.spec().agent.host.as_str(),
        shared.spec().agent.port,
    ))
    .await
    .with_context(|| format!("agent cannot listen on {}", shared.spec().agent))?;
    let server = tokio::spawn(http::serve(shared.clone(), listener));
    let signals = tokio::spawn(state::stop_on_signal(shared.clone()));
    let fence_watch = tokio::spawn(orders::self_fence_watch(shared.clone()));
    let sampler = tokio::spawn(probe::sample_primary_stream(shared.clone()));

    let result = supervisor::run(shared.clone()).await;
    server.abort();
    signals.abort();
    fence_watch.abort();
    sampler.abort();
    result
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
        };
        let layout = crate::InstanceLayout::new(dir.to_path_buf());
        crate::state::Shared::new(spec, secrets, layout, binaries)
    }
}
