//! The cluster's records on disk: state, secrets and events.

use crate::layout::ClusterDir;
use crate::tls::SuppliedCa;
use myset_api::{ClusterState, Event, Secrets, TlsSettings, STATE_FORMAT};
use rand::distr::{Alphanumeric, SampleString};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cluster {name:?} does not exist in {dir}{}: create it with `myset up --name {name}`",
        existing_clusters(others)
    )]
    NotFound {
        name: String,
        dir: PathBuf,
        /// The clusters that do exist there, for the user who mistyped a name.
        others: Vec<String>,
    },
    #[error("{0} exists but is not a myset cluster (no cluster.json): choose another --name or --state-dir")]
    Foreign(PathBuf),
    #[error("{path} is corrupt ({detail}): restore it from a backup; nothing was changed")]
    Corrupt { path: PathBuf, detail: String },
    #[error("cannot access {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{0:#}")]
    Tls(anyhow::Error),
}

/// " (clusters there: a, b)", or " (no clusters there)", for an error about a missing one.
pub fn existing_clusters(names: &[String]) -> String {
    if names.is_empty() {
        " (no clusters there)".to_string()
    } else {
        format!(" (clusters there: {})", names.join(", "))
    }
}

/// The clusters of a state dir: its directories holding a cluster record, by name.
pub fn cluster_names(state_dir: &std::path::Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(state_dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| validate_name(name).is_ok())
        .filter(|name| ClusterDir::new(state_dir, name).state_file().is_file())
        .collect();
    names.sort();
    names
}

/// Cluster names become directory and instance names, so only DNS-label characters are allowed.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if name == crate::layout::BACKUPS_DIR {
        return Err(format!(
            "cluster name {name:?} is reserved: <state dir>/{name} holds the backup stores; pick another"
        ));
    }
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid cluster name {name:?}: use 1-40 lowercase letters, digits and inner '-' (for example demo)"
        ))
    }
}

/// The `[client]` options of the user's account, and with TLS the CA the `mariadb` client
/// verifies the server by.
fn io(path: PathBuf) -> impl FnOnce(std::io::Error) -> StoreError {
    move |error| StoreError::Io { path, error }
}

impl ClusterDir {
    /// Whether anything exists at the cluster's path.
    pub fn exists(&self) -> bool {
        self.root().exists()
    }

    /// Loads the state of an existing cluster, telling missing, foreign and corrupt apart.
    pub fn load_state(&self) -> Result<ClusterState, StoreError> {
        if !self.root().exists() {
            let dir = self.root().parent().map(PathBuf::from).unwrap_or_default();
            return Err(StoreError::NotFound {
                name: self.name().to_string(),
                others: cluster_names(&dir),
                dir,
            });
        }
        let path = self.state_file();
        if !path.exists() {
            return Err(StoreError::Foreign(self.root().to_path_buf()));
        }
        let bytes = std::fs::read(&path).map_err(io(path.clone()))?;
        let state: ClusterState =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                path: path.clone(),
                detail: e.to_string(),
            })?;
        if state.format != STATE_FORMAT || state.name != self.name() {
            return Err(StoreError::Corrupt {
                path,
                detail: format!(
                    "format {:?} for cluster {:?}, expected {STATE_FORMAT:?} for {:?}",
                    state.format,
                    state.name,
                    self.name()
                ),
            });
        }
        Ok(state)
    }

    pub fn save_state(&self, state: &ClusterState) -> Result<(), StoreError> {
        let path = self.state_file();
        let bytes = serde_json::to_vec_pretty(state).expect("state serializes");
        myset_os::write_atomic(&path, &bytes, 0o600).map_err(io(path))
    }

    pub fn load_secrets(&self) -> Result<Secrets, StoreError> {
        let path = self.secrets_file();
        let bytes = std::fs::read(&path).map_err(io(path.clone()))?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            path,
            detail: e.to_string(),
        })
    }

    /// The token that reads the controller's `/metrics` and nothing else, created (mode 0600)
    /// the first time it is asked for, so clusters made before it get one too.
    pub fn metrics_token(&self) -> Result<String, StoreError> {
        let path = self.metrics_token_file();
        match std::fs::read_to_string(&path) {
            Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_string()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(path)(e)),
        }
        let token = random_secret();
        myset_os::write_atomic(&path, format!("{token}\n").as_bytes(), 0o600).map_err(io(path))?;
        Ok(token)
    }

    /// Creates a new cluster's directory, state and freshly generated credentials, and with
    /// TLS its CA (the user's `supplied_ca`, or a generated one).
    pub fn create(
        &self,
        state: &ClusterState,
        supplied_ca: Option<&SuppliedCa>,
    ) -> Result<Secrets, StoreError> {
        let secrets = self.prepare_new(&state.tls, supplied_ca)?;
        self.write_client_config(&secrets, state)?;
        // The state file goes last: its presence marks a complete cluster directory.
        self.save_state(state)?;
        Ok(secrets)
    }

    /// A new cluster's directory and freshly generated credentials, without the state file
    /// that would make it a cluster: a restore fills in the data first.
    pub fn prepare_new(
        &self,
        tls: &TlsSettings,
        supplied_ca: Option<&SuppliedCa>,
    ) -> Result<Secrets, StoreError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(self.root())
            .map_err(io(self.root().to_path_buf()))?;
        let secrets = generate_secrets();
        let write = |path: PathBuf, bytes: &[u8]| {
            myset_os::write_atomic(&path, bytes, 0o600).map_err(io(path))
        };
        write(
            self.secrets_file(),
            &serde_json::to_vec_pretty(&secrets).expect("secrets serialize"),
        )?;
        write(
            self.password_file(),
            format!("{}\n", secrets.user_password).as_bytes(),
        )?;
        if tls.enabled() {
            crate::tls::create_authority(self, supplied_ca).map_err(StoreError::Tls)?;
        }
        Ok(secrets)
    }

    /// Writes `client.cnf` (mode 0600): the user account and the rw endpoint, so that
    /// `mariadb --defaults-extra-file=<it>` alone reaches the primary. The one writer of that
    /// file: it is rewritten whenever the cluster starts, so it follows the record.
    pub fn write_client_config(
        &self,
        secrets: &Secrets,
        state: &ClusterState,
    ) -> Result<(), StoreError> {
        let path = self.client_config();
        let mut text = format!(
            "[client]\nuser = {}\npassword = {}\nhost = {}\nport = {}\nprotocol = TCP\n",
            secrets.user, secrets.user_password, state.bind_host, state.rw_port
        );
        if let Some(ca) = crate::tls::client_ca(self, state) {
            // Verified TLS: every local member's certificate names the endpoints' host.
            text.push_str(&format!(
                "ssl-ca = {}\nssl-verify-server-cert\n",
                ca.display()
            ));
        }
        myset_os::write_atomic(&path, text.as_bytes(), 0o600).map_err(io(path))
    }

    pub fn append_event(&self, event: &Event) {
        use std::io::Write;
        let line = serde_json::to_string(event).expect("event serializes");
        let result = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.events_file())
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = result {
            tracing::warn!("cannot record event: {e}");
        }
    }

    /// Every recorded event, oldest first; unreadable lines are skipped.
    pub fn events(&self) -> Vec<Event> {
        std::fs::read_to_string(self.events_file())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

fn random_secret() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

fn generate_secrets() -> Secrets {
    Secrets::generate(random_secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn state(name: &str) -> ClusterState {
        ClusterState::new(name, 3, "127.0.0.1", 1, 2)
    }

    #[test]
    fn names_are_dns_labels() {
        assert!(validate_name("demo").is_ok());
        assert!(validate_name("a-1").is_ok());
        for bad in [
            "",
            "../x",
            "a b",
            "Demo",
            "-a",
            "a-",
            "a/b",
            &"x".repeat(41),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn create_then_load_round_trips_with_private_secrets() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ClusterDir::new(tmp.path(), "demo");
        let secrets = dir.create(&state("demo"), None).unwrap();
        assert_eq!(dir.load_state().unwrap(), state("demo"));
        assert_eq!(dir.load_secrets().unwrap().api_token, secrets.api_token);
        for f in [dir.secrets_file(), dir.password_file(), dir.client_config()] {
            assert_eq!(f.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_ne!(secrets.admin_password, secrets.user_password);
        let cnf = std::fs::read_to_string(dir.client_config()).unwrap();
        assert!(cnf.contains("host = 127.0.0.1\nport = 1\n"), "{cnf}");
        assert!(cnf.contains(&format!("password = {}\n", secrets.user_password)));
    }

    #[test]
    fn a_missing_cluster_names_the_existing_ones() {
        let tmp = tempfile::tempdir().unwrap();
        for name in ["b", "a"] {
            ClusterDir::new(tmp.path(), name)
                .create(&state(name), None)
                .unwrap();
        }
        std::fs::create_dir(tmp.path().join("foreign")).unwrap();
        assert_eq!(cluster_names(tmp.path()), ["a", "b"]);
        let missing = ClusterDir::new(tmp.path(), "demo")
            .load_state()
            .unwrap_err();
        let text = missing.to_string();
        assert!(text.contains("\"demo\" does not exist"), "{text}");
        assert!(text.contains("(clusters there: a, b)"), "{text}");
        let empty = tempfile::tempdir().unwrap();
        let text = ClusterDir::new(empty.path(), "demo")
            .load_state()
            .unwrap_err()
            .to_string();
        assert!(text.contains("(no clusters there)"), "{text}");
    }

    #[test]
    fn a_cluster_with_tls_gets_its_ca_and_a_client_config_that_verifies_the_server() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ClusterDir::new(tmp.path(), "demo");
        let mut with_tls = state("demo");
        with_tls.tls.mode = myset_api::TlsMode::Required;
        dir.create(&with_tls, None).unwrap();
        let cnf = std::fs::read_to_string(dir.client_config()).unwrap();
        let ca = dir.tls().ca();
        assert!(
            cnf.contains(&format!("ssl-ca = {}\n", ca.display())),
            "{cnf}"
        );
        assert!(cnf.contains("ssl-verify-server-cert\n"), "{cnf}");
        assert!(ca.is_file());
        assert_eq!(
            dir.tls().ca_key().metadata().unwrap().permissions().mode() & 0o777,
            0o600
        );

        let plain = ClusterDir::new(tmp.path(), "plain");
        plain.create(&state("plain"), None).unwrap();
        let cnf = std::fs::read_to_string(plain.client_config()).unwrap();
        assert!(!cnf.contains("ssl"), "{cnf}");
        assert!(!plain.tls().dir.exists());
    }

    #[test]
    fn the_metrics_token_is_made_once_private_and_apart_from_the_api_token() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ClusterDir::new(tmp.path(), "demo");
        let secrets = dir
            .create(&ClusterState::new("demo", 3, "127.0.0.1", 1, 2), None)
            .unwrap();
        let token = dir.metrics_token().unwrap();
        assert_eq!(token.len(), 32);
        assert_ne!(token, secrets.api_token);
        let mode = dir
            .metrics_token_file()
            .metadata()
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(dir.metrics_token().unwrap(), token, "kept across calls");
    }

    #[test]
    fn missing_foreign_and_corrupt_are_told_apart() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ClusterDir::new(tmp.path(), "demo");
        assert!(matches!(dir.load_state(), Err(StoreError::NotFound { .. })));
        std::fs::create_dir_all(dir.root()).unwrap();
        assert!(matches!(dir.load_state(), Err(StoreError::Foreign(_))));
        std::fs::write(dir.state_file(), "{not json").unwrap();
        assert!(matches!(dir.load_state(), Err(StoreError::Corrupt { .. })));
        std::fs::write(
            dir.state_file(),
            serde_json::to_string(&state("other")).unwrap(),
        )
        .unwrap();
        assert!(matches!(dir.load_state(), Err(StoreError::Corrupt { .. })));
    }
}
