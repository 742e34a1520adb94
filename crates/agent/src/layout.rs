//! Where an instance keeps its files.

use std::path::{Path, PathBuf};

/// Paths inside one instance's directory.
#[derive(Debug, Clone)]
pub struct InstanceLayout {
    dir: PathBuf,
}

impl InstanceLayout {
    pub fn new(dir: PathBuf) -> Self {
        InstanceLayout { dir }
    }

    /// The data dir, the instance's "volume". It only ever appears complete (by rename).
    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }
    /// Where a fresh data dir is built before it is renamed into place.
    pub fn data_init(&self) -> PathBuf {
        self.dir.join("data.init")
    }
    /// Where a clone is received and prepared before it is renamed into place.
    pub fn data_clone(&self) -> PathBuf {
        self.dir.join("data.clone")
    }
    pub fn spec_file(&self) -> PathBuf {
        self.dir.join("spec.json")
    }
    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }
    pub fn log_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }
    pub fn server_config(&self) -> PathBuf {
        self.run_dir().join("my.cnf")
    }
    pub fn socket(&self) -> PathBuf {
        self.run_dir().join("mariadbd.sock")
    }
    pub fn server_pid_file(&self) -> PathBuf {
        self.run_dir().join("mariadbd.pid")
    }
    pub fn server_log(&self) -> PathBuf {
        self.log_dir().join("mariadbd.log")
    }
    pub fn backup_log(&self) -> PathBuf {
        self.log_dir().join("backup.log")
    }
    /// The log of `mariadbd --wsrep-recover` when a Galera position is read.
    pub fn wsrep_recover_log(&self) -> PathBuf {
        self.log_dir().join("wsrep-recover.log")
    }
    /// Marker inside a cloned data dir holding the GTID to replicate from; removed once used.
    pub fn clone_marker(&self) -> PathBuf {
        Self::clone_marker_in(&self.data())
    }
    /// The clone marker of the data dir `datadir`, wherever it is being built.
    pub fn clone_marker_in(datadir: &Path) -> PathBuf {
        datadir.join("myset-clone-gtid")
    }

    pub fn create_dirs(&self) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        for d in [self.run_dir(), self.log_dir()] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(d)?;
        }
        Ok(())
    }
}
