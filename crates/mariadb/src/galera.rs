//! A stopped Galera member's last committed position, read from its data dir.
//!
//! `grastate.dat` has it after a clean stop. After a crash its seqno is -1, and only
//! `mariadbd --wsrep-recover` can tell (it reads the position InnoDB stored with its last
//! commit, logs `WSREP: Recovered position: <uuid>:<seqno>` and exits). The recovered position
//! must then be given back when the member starts ([`start_position_arg`]): a member started
//! with `--wsrep-new-cluster` on a crashed `grastate.dat` without it begins a new history
//! under a new UUID (seen with MariaDB 10.11 and galera-4 26.4: the same data, seqno 2 of a
//! fresh UUID after seqno 4 of the old one), which would make every peer's state look foreign.

use myset_core::galera::{parse_grastate, parse_recovered_position, MemberData, Position};
use std::path::Path;

/// Where galera-4 (Debian's package `galera-4`) installs the provider library.
pub const PROVIDER: &str = "/usr/lib/galera/libgalera_smm.so";
/// Galera's state file in the data dir.
pub const GRASTATE: &str = "grastate.dat";

/// Why a member's position could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PositionError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Invalid { path: String, problem: String },
    #[error("mariadbd --wsrep-recover failed ({status}); see {log}")]
    RecoverFailed { status: String, log: String },
    #[error("cannot run mariadbd --wsrep-recover: {0}")]
    Spawn(std::io::Error),
}

/// What `datadir` holds, as the bootstrap choice needs it. A missing data dir is
/// [`MemberData::Empty`]; one without `grastate.dat` (never joined) too. `recover` runs
/// `mariadbd --defaults-file=<options_file> --wsrep-recover`, logging to `recover_log`.
pub async fn member_data(
    mariadbd: &Path,
    options_file: &Path,
    datadir: &Path,
    recover_log: &Path,
) -> Result<MemberData, PositionError> {
    if !datadir.exists() {
        return Ok(MemberData::Empty);
    }
    let path = datadir.join(GRASTATE);
    let text = match tokio::fs::read_to_string(&path).await {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(MemberData::Empty),
        Err(source) => {
            return Err(PositionError::Read {
                path: path.display().to_string(),
                source,
            })
        }
    };
    let state = parse_grastate(&text).map_err(|problem| PositionError::Invalid {
        path: path.display().to_string(),
        problem,
    })?;
    if state.uuid.is_zero() {
        return Ok(MemberData::Empty);
    }
    let position = match state.seqno {
        Some(seqno) => Some(Position {
            uuid: state.uuid.clone(),
            seqno,
        }),
        None => recover(mariadbd, options_file, recover_log).await?,
    };
    Ok(match position {
        Some(position) if !position.uuid.is_zero() => MemberData::At {
            position,
            safe_to_bootstrap: state.safe_to_bootstrap,
        },
        _ => MemberData::Empty,
    })
}

/// Runs `mariadbd --wsrep-recover` and reads the position it logs.
async fn recover(
    mariadbd: &Path,
    options_file: &Path,
    log: &Path,
) -> Result<Option<Position>, PositionError> {
    // A stale log from an earlier recovery must not be read as this one's.
    let _ = tokio::fs::remove_file(log).await;
    let status = tokio::process::Command::new(mariadbd)
        .arg(format!("--defaults-file={}", options_file.display()))
        .arg("--wsrep-recover")
        .arg(format!("--log-error={}", log.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .map_err(PositionError::Spawn)?;
    let failed = || PositionError::RecoverFailed {
        status: status.to_string(),
        log: log.display().to_string(),
    };
    if !status.success() {
        return Err(failed());
    }
    let text = tokio::fs::read_to_string(log)
        .await
        .map_err(|source| PositionError::Read {
            path: log.display().to_string(),
            source,
        })?;
    parse_recovered_position(&text).map_err(|problem| PositionError::Invalid {
        path: log.display().to_string(),
        problem,
    })
}

/// Marks the data dir's state as safe to bootstrap from. myset does this only on the member
/// its bootstrap choice picked (the highest position of the cluster's UUID): after a crash of
/// every member none is marked, and mariadbd refuses `--wsrep-new-cluster` without it.
pub fn mark_safe_to_bootstrap(datadir: &Path) -> Result<(), PositionError> {
    let path = datadir.join(GRASTATE);
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|source| PositionError::Read {
        path: shown.clone(),
        source,
    })?;
    parse_grastate(&text).map_err(|problem| PositionError::Invalid {
        path: shown.clone(),
        problem,
    })?;
    let marked: String = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("safe_to_bootstrap:") {
                "safe_to_bootstrap: 1".to_string()
            } else {
                l.to_string()
            }
        })
        .map(|l| l + "\n")
        .collect();
    std::fs::write(&path, marked).map_err(|source| PositionError::Read {
        path: shown,
        source,
    })
}

/// The option that makes a recovered member start from its position, keeping its cluster's
/// UUID (see the module's doc).
pub fn start_position_arg(position: &impl std::fmt::Display) -> String {
    format!("--wsrep-start-position={position}")
}
