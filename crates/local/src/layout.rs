//! Where a cluster's files live under the state dir.

use std::path::{Path, PathBuf};

/// One cluster's directory: `<state dir>/<name>`.
#[derive(Debug, Clone)]
pub struct ClusterDir {
    root: PathBuf,
    name: String,
}

impl ClusterDir {
    pub fn new(state_dir: &Path, name: &str) -> Self {
        ClusterDir {
            root: state_dir.join(name),
            name: name.to_string(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The cluster record (intent, term, placements).
    pub fn state_file(&self) -> PathBuf {
        self.root.join("cluster.json")
    }
    /// Every generated credential and the API token (mode 0600).
    pub fn secrets_file(&self) -> PathBuf {
        self.root.join("secrets.json")
    }
    /// The user account's password alone (mode 0600).
    pub fn password_file(&self) -> PathBuf {
        self.root.join("password")
    }
    /// A `mariadb` client option file with the user account (mode 0600).
    pub fn client_config(&self) -> PathBuf {
        self.root.join("client.cnf")
    }
    pub fn events_file(&self) -> PathBuf {
        self.root.join("events.jsonl")
    }
    pub fn controller_info(&self) -> PathBuf {
        self.root.join("controller.json")
    }
    /// The read-only token of the controller's `/metrics` (mode 0600), for a scraper.
    pub fn metrics_token_file(&self) -> PathBuf {
        self.root.join("metrics-token")
    }
    /// The live controller's metrics address as a Prometheus `file_sd_configs` target list;
    /// rewritten at each controller start, since the API port changes then.
    pub fn prometheus_targets_file(&self) -> PathBuf {
        self.root.join("prometheus-targets.json")
    }
    pub fn controller_lock(&self) -> PathBuf {
        self.root.join("controller.lock")
    }
    /// Present while the user wants the cluster stopped (`myset down`): nothing restarts its
    /// controller then.
    pub fn stop_marker(&self) -> PathBuf {
        self.root.join("stopped")
    }
    /// When agents restarted a dead controller, to space restarts of one that keeps dying.
    pub fn restart_history(&self) -> PathBuf {
        self.root.join("controller-restarts.json")
    }
    pub fn controller_log(&self) -> PathBuf {
        self.root.join("controller.log")
    }
    /// The cluster's CA, its signing key and the controller's API certificate.
    pub fn tls(&self) -> myset_tls::CertFiles {
        myset_tls::CertFiles::in_dir(self.root.join("tls"))
    }
    /// A member's certificate and a copy of the CA's, which its agent is started with.
    pub fn instance_tls(&self, ordinal: u32) -> myset_tls::CertFiles {
        myset_tls::CertFiles::in_dir(self.instance_dir(ordinal).join("tls"))
    }
    pub fn instance_dir(&self, ordinal: u32) -> PathBuf {
        self.root
            .join("instances")
            .join(format!("{}-{ordinal}", self.name))
    }
    pub fn agent_pid_file(&self, ordinal: u32) -> PathBuf {
        self.instance_dir(ordinal).join("agent.pid")
    }
    pub fn agent_log(&self, ordinal: u32) -> PathBuf {
        self.instance_dir(ordinal).join("agent.log")
    }
    /// mariadbd's error log (the agent's `InstanceLayout::server_log`).
    pub fn server_log(&self, ordinal: u32) -> PathBuf {
        self.instance_dir(ordinal).join("logs").join("mariadbd.log")
    }
    pub fn server_pid_file(&self, ordinal: u32) -> PathBuf {
        self.instance_dir(ordinal).join("run").join("mariadbd.pid")
    }
    pub fn data_dir(&self, ordinal: u32) -> PathBuf {
        self.instance_dir(ordinal).join("data")
    }
    /// Where the controller checks a new base backup by extracting and preparing it.
    pub fn backup_scratch(&self) -> PathBuf {
        self.root.join("backup-scratch")
    }
}

/// The state dir's directory of backup stores: `<state dir>/backups`. It outlives the clusters
/// (`destroy` keeps a cluster's store unless asked), so no cluster may be named `backups`.
pub fn backups_root(state_dir: &Path) -> PathBuf {
    state_dir.join(BACKUPS_DIR)
}

pub const BACKUPS_DIR: &str = "backups";

/// A cluster's default backup store: `<state dir>/backups/<name>`.
pub fn default_backup_store(state_dir: &Path, name: &str) -> PathBuf {
    backups_root(state_dir).join(name)
}

/// The store a cluster's backups go to: the one it was created with, else its default.
pub fn backup_store_url(
    state_dir: &Path,
    state: &myset_api::ClusterState,
) -> Result<myset_backup::StoreUrl, myset_backup::store::StoreUrlError> {
    match &state.backup.store {
        Some(url) => myset_backup::StoreUrl::parse(url),
        None => Ok(myset_backup::StoreUrl::Dir(default_backup_store(
            state_dir,
            &state.name,
        ))),
    }
}

/// Where the CLI extracts backups it verifies or restores: `<state dir>/backups/.scratch`.
pub fn restore_scratch(state_dir: &Path) -> PathBuf {
    backups_root(state_dir).join(".scratch")
}
