//! Locating the MariaDB programs on PATH.

use std::path::{Path, PathBuf};

/// A program myset needs is not on PATH.
#[derive(Debug, thiserror::Error)]
#[error("{program} not found on PATH: install the Debian package {package} (apt-get install {package}); Debian puts mariadbd in /usr/sbin, so make sure that is on PATH")]
pub struct MissingBinary {
    pub program: &'static str,
    pub package: &'static str,
}

/// Paths of the MariaDB programs an instance needs.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub mariadbd: PathBuf,
    pub install_db: PathBuf,
    pub backup: PathBuf,
    pub mbstream: PathBuf,
    /// `mariadb-binlog`, which turns archived binlogs back into statements on a restore.
    pub binlog: PathBuf,
    /// The `mariadb` command-line client, which applies them.
    pub client: PathBuf,
}

impl Binaries {
    /// Finds every program on the current PATH, or names the first missing one.
    pub fn find() -> Result<Self, MissingBinary> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        Self::find_in(&path)
    }

    pub fn find_in(path: &std::ffi::OsStr) -> Result<Self, MissingBinary> {
        let lookup = |names: &[&'static str], package: &'static str| {
            names
                .iter()
                .find_map(|n| which(path, n))
                .ok_or(MissingBinary {
                    program: names[0],
                    package,
                })
        };
        Ok(Binaries {
            mariadbd: lookup(&["mariadbd"], "mariadb-server")?,
            install_db: lookup(&["mariadb-install-db"], "mariadb-server")?,
            backup: lookup(&["mariadb-backup", "mariabackup"], "mariadb-backup")?,
            mbstream: lookup(&["mbstream"], "mariadb-backup")?,
            binlog: lookup(&["mariadb-binlog", "mysqlbinlog"], "mariadb-client")?,
            client: lookup(&["mariadb", "mysql"], "mariadb-client")?,
        })
    }
}

fn which(path: &std::ffi::OsStr, name: &str) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_path_names_mariadbd_and_its_package() {
        let err = Binaries::find_in(std::ffi::OsStr::new("")).unwrap_err();
        assert_eq!(err.program, "mariadbd");
        assert!(err.to_string().contains("apt-get install mariadb-server"));
    }
}
