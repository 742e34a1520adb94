//! The cluster's records on disk: state, secrets and events.

use crate::layout::ClusterDir;
use myset_api::{ClusterState, Event, Secrets, STATE_FORMAT};
use rand::distr::{Alphanumeric, SampleString};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cluster {name:?} does not exist in {dir}: create it with `myset up --name {name}`")]
    NotFound { name: String, dir: PathBuf },
    #[error("{0} exists but is not a myset cluster (no cluster.json): choose another --name or --state-dir")]
    Foreign(PathBuf),
    #[error("{path} is corrupt ({detail}): restore it from a backup; nothing was changed")]
    Corrupt { path: PathBuf, detail: String },
    #[error("cannot access {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
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
            return Err(StoreError::NotFound {
                name: self.name().to_string(),
                dir: self.root().parent().map(PathBuf::from).unwrap_or_default(),
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

    /// Creates a new cluster's directory, state and freshly generated credentials.
    pub fn create(&self, state: &ClusterState) -> Result<Secrets, StoreError> {
        let secrets = self.prepare_new()?;
        // The state file goes last: its presence marks a complete cluster directory.
        self.save_state(state)?;
        Ok(secrets)
    }

    /// A new cluster's directory and freshly generated credentials, without the state file
    /// that would make it a cluster: a restore fills in the data first.
    pub fn prepare_new(&self) -> Result<Secrets, StoreError> {
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
        write(
            self.client_config(),
            format!(
                "[client]\nuser = {}\npassword = {}\n",
                secrets.user, secrets.user_password
            )
            .as_bytes(),
        )?;
        Ok(secrets)
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

fn generate_secrets() -> Secrets {
    let random = || Alphanumeric.sample_string(&mut rand::rng(), 32);
    Secrets::generate(random)
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
        let secrets = dir.create(&state("demo")).unwrap();
        assert_eq!(dir.load_state().unwrap(), state("demo"));
        assert_eq!(dir.load_secrets().unwrap().api_token, secrets.api_token);
        for f in [dir.secrets_file(), dir.password_file(), dir.client_config()] {
            assert_eq!(f.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_ne!(secrets.admin_password, secrets.user_password);
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
