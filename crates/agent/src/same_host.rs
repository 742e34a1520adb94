//! Same-host clones. When the donor's agent sees the receiver's scratch dir (the local
//! runtime's agents share one file system, `--netns` included), the donor's `mariadb-backup`
//! writes the files straight into it: each byte is written once, with no stream relayed through
//! both agents and no `mbstream`. Nothing is configured: the receiver proves the dir is its own
//! with a random token in a file inside it, and a donor that does not find that file there
//! (another host, another container, another volume) refuses; the receiver then streams as
//! before. The donor writes only into an absolute path that holds the proof and nothing else,
//! and stops its backup as soon as the proof disappears or changes (the receiver gave up).

use myset_http::CallError;
use serde::{Deserialize, Serialize};
use std::ffi::OsStr;
use std::io;
use std::path::{Component, Path, PathBuf};

/// The donor agent's route: back up into the receiver's dir.
pub const COPY_INTO_PATH: &str = "/clone/into";
/// The proof's file name in the receiver's scratch dir.
pub const PROOF_FILE: &str = ".myset-clone-proof";

/// Set to `off` in a donor agent's environment (inherited from `myset up`), it refuses every
/// same-host clone, so its receivers stream: for tests and comparisons of the two paths.
pub const SWITCH_ENV: &str = "MYSET_CLONE_SAME_HOST";

/// Whether [`SWITCH_ENV`]'s value switches same-host clones off.
pub fn switched_off(value: Option<&OsStr>) -> bool {
    value == Some(OsStr::new("off"))
}

/// The receiver's request: back up into `dir`, which holds `proof` in [`PROOF_FILE`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CopyInto {
    pub dir: PathBuf,
    pub proof: String,
}

/// Why a donor will not write into the dir a receiver named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("same-host clones are switched off on this donor ({SWITCH_ENV}=off)")]
    SwitchedOff,
    #[error("{0} is not an absolute path without ..")]
    NotPlainAbsolute(PathBuf),
    #[error("{0} is not a directory on the donor's file system")]
    NotADirectory(PathBuf),
    #[error("{0} holds no proof file the donor can read")]
    NoProof(PathBuf),
    #[error("the proof file in {0} does not hold the proof presented")]
    ProofMismatch(PathBuf),
    #[error("{dir} holds {entry} besides the proof file")]
    NotEmpty { dir: PathBuf, entry: String },
}

/// A fresh random proof.
pub fn new_proof() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Writes `proof` into `dir`'s proof file (0600: only the agents' user reads it).
pub fn write_proof(dir: &Path, proof: &str) -> io::Result<()> {
    myset_os::write_atomic(&dir.join(PROOF_FILE), proof.as_bytes(), 0o600)
}

/// Whether the donor may back up into `dir`: an absolute path with no `..`, a real
/// directory (not a symlink), holding the proof file with exactly `proof` and nothing else.
pub fn check_target(dir: &Path, proof: &str) -> Result<(), Refusal> {
    let plain = dir.is_absolute()
        && dir
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !plain {
        return Err(Refusal::NotPlainAbsolute(dir.to_path_buf()));
    }
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        _ => return Err(Refusal::NotADirectory(dir.to_path_buf())),
    }
    if !proof_holds(dir, proof).map_err(|_| Refusal::NoProof(dir.to_path_buf()))? {
        return Err(Refusal::ProofMismatch(dir.to_path_buf()));
    }
    let entries = std::fs::read_dir(dir).map_err(|_| Refusal::NotADirectory(dir.to_path_buf()))?;
    for entry in entries {
        let entry = entry.map_err(|_| Refusal::NotADirectory(dir.to_path_buf()))?;
        if entry.file_name() != PROOF_FILE {
            return Err(Refusal::NotEmpty {
                dir: dir.to_path_buf(),
                entry: entry.file_name().to_string_lossy().into_owned(),
            });
        }
    }
    Ok(())
}

/// Whether `dir`'s proof file is a regular file holding exactly `proof`; an error when there is
/// no such file.
pub fn proof_holds(dir: &Path, proof: &str) -> io::Result<bool> {
    let path = dir.join(PROOF_FILE);
    if !std::fs::symlink_metadata(&path)?.is_file() {
        return Ok(false);
    }
    Ok(std::fs::read(&path)? == proof.as_bytes())
}

/// What the receiver does after asking the donor to back up into its dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The files are in place.
    Copied,
    /// The donor wrote nothing: it does not see the dir (refused, 409) or predates this path
    /// (404). Stream instead.
    Stream { why: String },
    /// The backup failed or the donor could not be reached: this attempt failed.
    Failed,
}

/// The receiver's decision from the donor's answer.
pub fn after_copy_into(answer: &Result<(), CallError>) -> Next {
    match answer {
        Ok(()) => Next::Copied,
        Err(CallError::Status {
            status: 409 | 404,
            message,
            ..
        }) => Next::Stream {
            why: message.clone(),
        },
        Err(_) => Next::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> (tempfile::TempDir, PathBuf, String) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data.clone");
        std::fs::create_dir(&dir).unwrap();
        let proof = new_proof();
        write_proof(&dir, &proof).unwrap();
        (root, dir, proof)
    }

    #[test]
    fn a_dir_holding_only_the_presented_proof_is_accepted() {
        let (_root, dir, proof) = scratch();
        assert_eq!(check_target(&dir, &proof), Ok(()));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.join(PROOF_FILE))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn another_proof_or_none_is_refused() {
        let (_root, dir, proof) = scratch();
        assert_eq!(
            check_target(&dir, &new_proof()),
            Err(Refusal::ProofMismatch(dir.clone()))
        );
        assert_eq!(
            check_target(&dir, ""),
            Err(Refusal::ProofMismatch(dir.clone()))
        );
        std::fs::remove_file(dir.join(PROOF_FILE)).unwrap();
        assert_eq!(
            check_target(&dir, &proof),
            Err(Refusal::NoProof(dir.clone()))
        );
        // The same path on another host: no such dir at all.
        let elsewhere = dir.join("missing");
        assert_eq!(
            check_target(&elsewhere, &proof),
            Err(Refusal::NotADirectory(elsewhere.clone()))
        );
    }

    #[test]
    fn only_an_empty_real_dir_at_a_plain_absolute_path_is_written() {
        let (root, dir, proof) = scratch();
        for bad in ["data.clone", "./data.clone", "/tmp/../etc"] {
            assert_eq!(
                check_target(Path::new(bad), &proof),
                Err(Refusal::NotPlainAbsolute(bad.into()))
            );
        }
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert_eq!(
            check_target(&link, &proof),
            Err(Refusal::NotADirectory(link.clone()))
        );
        std::fs::write(dir.join("ibdata1"), b"existing data").unwrap();
        assert_eq!(
            check_target(&dir, &proof),
            Err(Refusal::NotEmpty {
                dir: dir.clone(),
                entry: "ibdata1".into()
            })
        );
        // A proof file that is a symlink to the right content does not count.
        let (_root2, dir2, proof2) = scratch();
        let real = root.path().join("real-proof");
        std::fs::write(&real, &proof2).unwrap();
        std::fs::remove_file(dir2.join(PROOF_FILE)).unwrap();
        std::os::unix::fs::symlink(&real, dir2.join(PROOF_FILE)).unwrap();
        assert_eq!(
            check_target(&dir2, &proof2),
            Err(Refusal::ProofMismatch(dir2.clone()))
        );
    }

    #[test]
    fn only_off_switches_the_path_off() {
        assert!(switched_off(Some(OsStr::new("off"))));
        for on in [None, Some(""), Some("on"), Some("OFF"), Some("0")] {
            assert!(!switched_off(on.map(OsStr::new)), "{on:?}");
        }
    }

    #[test]
    fn the_receiver_streams_only_when_the_donor_wrote_nothing() {
        let status = |status| {
            Err(CallError::Status {
                url: "https://127.0.0.1:1/clone/into".into(),
                status,
                message: "refused".into(),
            })
        };
        assert_eq!(after_copy_into(&Ok(())), Next::Copied);
        assert_eq!(
            after_copy_into(&status(409)),
            Next::Stream {
                why: "refused".into()
            }
        );
        assert_eq!(
            after_copy_into(&status(404)),
            Next::Stream {
                why: "refused".into()
            }
        );
        // A backup that failed may have written part of the files: never stream over them.
        assert_eq!(after_copy_into(&status(500)), Next::Failed);
        assert_eq!(after_copy_into(&status(503)), Next::Failed);
    }
}
