//! Physical clones: serving a `mariadb-backup --stream` to a peer, backing up straight into a
//! peer's dir on the same host ([`crate::same_host`]), and receiving either.

use crate::blocking::remove_tree;
use crate::same_host::{self, CopyInto, Next, Refusal};
use crate::state::Shared;
use crate::supervisor::{append_log, run_logged};
use anyhow::{bail, Context};
use bytes::Bytes;
use futures::StreamExt;
use myset_api::{Donor, Phase};
use myset_core::GtidPos;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// The donor side: a stream of `mariadb-backup --backup --stream=xbstream` output. If the backup
/// fails, the stream ends with an error so the receiver never mistakes it for a whole copy.
pub fn serve(
    shared: &Shared,
) -> anyhow::Result<impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static> {
    let layout = &shared.layout;
    let work = tempfile_dir(&layout.run_dir())?;
    let log = append_log(&layout.backup_log())?;
    let mut child = Command::new(&shared.binaries.backup)
        .args(backup_args(&layout.server_config(), &work, Output::Stream))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start mariadb-backup")?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(16);
    tokio::spawn(async move {
        let mut chunks = tokio_util::io::ReaderStream::with_capacity(stdout, 256 * 1024);
        while let Some(chunk) = chunks.next().await {
            if tx.send(chunk).await.is_err() {
                // The receiver went away: stop the backup.
                let _ = child.kill().await;
                remove_work_dir(work).await;
                return;
            }
        }
        let status = child.wait().await;
        remove_work_dir(work).await;
        if !matches!(status, Ok(s) if s.success()) {
            let _ = tx
                .send(Err(std::io::Error::other(format!(
                    "mariadb-backup failed: {status:?}"
                ))))
                .await;
        }
    });
    Ok(futures::stream::unfold(rx, |mut rx| async {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// Files the donor's backup copies at once. Its data files are read in parallel into the one
/// stream: a 1 GiB clone streamed in about two thirds of the time with 4 than with 1 (on 2
/// cores, cold cache; see BENCHMARKS.md).
const BACKUP_COPY_THREADS: u32 = 4;
/// How often the backup's redo log copier looks for new redo. The backup ends only after the
/// copier's last look, so mariadb-backup's default (1 s) adds up to a second to every clone.
const LOG_COPY_INTERVAL_MS: u32 = 10;
/// Threads writing the received files on the receiving side.
const EXTRACT_THREADS: u32 = 2;

/// Where the donor's backup goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    /// An xbstream on stdout; the target dir holds only scratch files.
    Stream,
    /// The files themselves, written into the target dir.
    Files,
}

/// The donor's `mariadb-backup` arguments: a backup of the server configured by `config`,
/// streamed (using `target` for its scratch files) or written as files into `target`.
fn backup_args(config: &Path, target: &Path, output: Output) -> Vec<String> {
    let mut args = vec![
        format!("--defaults-file={}", config.display()),
        "--backup".into(),
    ];
    if output == Output::Stream {
        args.push("--stream=xbstream".into());
    }
    args.extend([
        format!("--target-dir={}", target.display()),
        format!("--parallel={BACKUP_COPY_THREADS}"),
        format!("--log-copy-interval={LOG_COPY_INTERVAL_MS}"),
    ]);
    args
}

/// Why a same-host backup did not complete.
#[derive(Debug, thiserror::Error)]
pub enum CopyIntoError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("the receiver's proof left {0} during the backup: the receiver gave up")]
    ProofGone(PathBuf),
    #[error("mariadb-backup failed: {0}")]
    Backup(String),
}

/// How often the donor looks whether the receiver's proof is still in place during a backup.
const PROOF_CHECK_PERIOD: Duration = Duration::from_millis(100);
/// How soon after its proof goes a donor's backup into a receiver's dir has surely stopped:
/// a check period, the check and the kill.
const DONOR_STOP_BOUND: Duration = PROOF_CHECK_PERIOD.saturating_mul(3);

/// The donor side of a same-host clone: checks that `request.dir` is the receiver's prepared
/// dir ([`same_host::check_target`]) and backs up into it, stopping the backup if the proof
/// goes (the receiver removed its dir) or the request is dropped.
pub async fn copy_into(shared: &Shared, request: CopyInto) -> Result<(), CopyIntoError> {
    let CopyInto { dir, proof } = request;
    if same_host::switched_off(std::env::var_os(same_host::SWITCH_ENV).as_deref()) {
        return Err(Refusal::SwitchedOff.into());
    }
    let checked = {
        let (dir, proof) = (dir.clone(), proof.clone());
        tokio::task::spawn_blocking(move || same_host::check_target(&dir, &proof)).await
    };
    checked.map_err(|e| CopyIntoError::Backup(format!("the check did not run: {e}")))??;
    tracing::info!(dir = %dir.display(), "backing up into a same-host receiver's dir");
    let layout = &shared.layout;
    let fail = |e: std::io::Error| CopyIntoError::Backup(e.to_string());
    let log = append_log(&layout.backup_log()).map_err(fail)?;
    let mut child = Command::new(&shared.binaries.backup)
        .args(backup_args(&layout.server_config(), &dir, Output::Files))
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(fail)?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(fail)?;
    let mut check = tokio::time::interval(PROOF_CHECK_PERIOD);
    loop {
        tokio::select! {
            status = child.wait() => {
                let status = status.map_err(fail)?;
                return if status.success() {
                    Ok(())
                } else {
                    Err(CopyIntoError::Backup(status.to_string()))
                };
            }
            _ = check.tick() => {
                let (d, p) = (dir.clone(), proof.clone());
                let holds = tokio::task::spawn_blocking(move || same_host::proof_holds(&d, &p)).await;
                if !matches!(holds, Ok(Ok(true))) {
                    let _ = child.kill().await;
                    return Err(CopyIntoError::ProofGone(dir));
                }
            }
        }
    }
}

/// The receiver's `mbstream` arguments: extract the stream into `target`.
fn extract_args(target: &Path) -> Vec<String> {
    vec![
        "-x".into(),
        format!("--parallel={EXTRACT_THREADS}"),
        "-C".into(),
        target.display().to_string(),
    ]
}

async fn remove_work_dir(work: PathBuf) {
    if let Err(e) = remove_tree(work.clone()).await {
        tracing::warn!(path = %work.display(), "cannot remove the backup's work dir: {e}");
    }
}

fn tempfile_dir(parent: &Path) -> std::io::Result<PathBuf> {
    let dir = parent.join(format!("backup-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// How a clone's files reached the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transfer {
    /// The donor's backup wrote them into the receiver's dir ([`crate::same_host`]).
    SameHost,
    /// Streamed through both agents and extracted by `mbstream`.
    Stream,
}

impl std::fmt::Display for Transfer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transfer::SameHost => "same-host",
            Transfer::Stream => "stream",
        })
    }
}

/// The receiver side: have the donor back up into `data.clone` when it shares this file system,
/// else stream its backup there; prepare it, record the GTID to replicate from, and only then
/// rename it into place as the data dir.
pub async fn receive(shared: &Shared, donor: &Donor) -> anyhow::Result<()> {
    let layout = &shared.layout;
    let target = layout.data_clone();
    remove_tree(target.clone()).await?;
    std::fs::create_dir_all(&target)?;
    shared.set_phase(Phase::Cloning {
        donor: donor.ordinal,
        bytes: 0,
    });
    tracing::info!(donor = donor.ordinal, "cloning");

    let transfer = match ask_copy_into(shared, donor, &target).await? {
        None => Transfer::SameHost,
        Some(why) => {
            tracing::info!(
                donor = donor.ordinal,
                "the donor cannot write here ({why}): streaming"
            );
            stream_into(shared, donor, &target).await?;
            Transfer::Stream
        }
    };

    shared.set_phase(Phase::Preparing {
        donor: donor.ordinal,
    });
    let mut prepare = Command::new(&shared.binaries.backup);
    prepare
        .arg("--prepare")
        .arg(format!("--target-dir={}", target.display()));
    run_logged(prepare, "mariadb-backup --prepare", &layout.backup_log()).await?;
    let gtid = clone_position(&target).await?;
    crate::role::write_clone_marker(&target, &gtid).await?;
    std::fs::rename(&target, layout.data())?;
    shared.set_cloned_from(donor.ordinal);
    tracing::info!(donor = donor.ordinal, %transfer, %gtid, "clone complete");
    Ok(())
}

/// Asks the donor to back up into `target` ([`crate::same_host`]), presenting a proof written
/// there: None once the files are in place, or why to stream instead (the donor wrote nothing,
/// and `target` is left empty for the stream).
async fn ask_copy_into(
    shared: &Shared,
    donor: &Donor,
    target: &Path,
) -> anyhow::Result<Option<String>> {
    let proof = same_host::new_proof();
    {
        let (dir, proof) = (target.to_path_buf(), proof.clone());
        tokio::task::spawn_blocking(move || same_host::write_proof(&dir, &proof)).await??;
    }
    let request = CopyInto {
        dir: target.to_path_buf(),
        proof,
    };
    let client = shared.api.streaming(&donor.agent, Duration::from_secs(5));
    let answer = client
        .call::<_, ()>(same_host::COPY_INTO_PATH, &request)
        .await;
    let proof_file = target.join(same_host::PROOF_FILE);
    let instead = match (same_host::after_copy_into(&answer), answer) {
        (Next::Copied, _) => None,
        (Next::Stream { why }, _) => {
            // Never stream over files someone wrote here after all (a backup of an earlier
            // attempt that had not stopped yet).
            let (dir, proof) = (target.to_path_buf(), request.proof);
            tokio::task::spawn_blocking(move || same_host::check_target(&dir, &proof))
                .await?
                .context("the clone's dir changed although the donor wrote nothing")?;
            Some(why)
        }
        (Next::Failed, answer) => {
            let e = answer.err();
            if e.as_ref().is_some_and(|e| !e.answered()) {
                // No answer: the donor's backup may still run. Without its proof it stops
                // within a check period; give it that before this dir is made again.
                let _ = tokio::fs::remove_file(&proof_file).await;
                tokio::time::sleep(DONOR_STOP_BOUND).await;
            }
            let why = e.map(|e| e.to_string()).unwrap_or_default();
            bail!("the donor's backup into {} failed: {why}", target.display());
        }
    };
    tokio::fs::remove_file(proof_file).await?;
    Ok(instead)
}

/// Streams the donor's backup into `target` through `mbstream`.
async fn stream_into(shared: &Shared, donor: &Donor, target: &Path) -> anyhow::Result<()> {
    let layout = &shared.layout;
    let client = shared.api.streaming(&donor.agent, Duration::from_secs(5));
    let response = client.stream("/clone").await?;
    let log = append_log(&layout.backup_log())?;
    let mut extract = Command::new(&shared.binaries.mbstream)
        .args(extract_args(target))
        .stdin(Stdio::piped())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start mbstream")?;
    let mut stdin = extract.stdin.take().expect("stdin is piped");
    let mut body = response.bytes_stream();
    let mut received = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("the clone stream broke off")?;
        stdin
            .write_all(&chunk)
            .await
            .context("mbstream stopped reading")?;
        received += chunk.len() as u64;
        shared.set_phase(Phase::Cloning {
            donor: donor.ordinal,
            bytes: received,
        });
    }
    drop(stdin);
    let status = extract.wait().await?;
    if !status.success() {
        bail!("mbstream failed ({status})");
    }
    tracing::info!(donor = donor.ordinal, bytes = received, "stream received");
    Ok(())
}

/// The GTID position a prepared clone in `datadir` continues from, from mariadb-backup's
/// `xtrabackup_binlog_info`. Missing or garbled, the clone is unusable: replicating from a
/// guessed position would skip or repeat transactions.
async fn clone_position(datadir: &Path) -> anyhow::Result<GtidPos> {
    let path = datadir.join("xtrabackup_binlog_info");
    let info = tokio::fs::read_to_string(&path)
        .await
        .with_context(|| format!("the clone has no readable {}", path.display()))?;
    let gtid = myset_mariadb::sql::clone_gtid(&info)
        .with_context(|| format!("{} is not file, position, GTID: {info:?}", path.display()))?;
    GtidPos::parse(&gtid).with_context(|| format!("{} holds no valid GTID", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backup_copies_in_parallel_and_ends_soon_after_the_copy() {
        let args = backup_args(
            Path::new("/i/run/my.cnf"),
            Path::new("/i/run/backup-1"),
            Output::Stream,
        );
        assert_eq!(args[0], "--defaults-file=/i/run/my.cnf", "must come first");
        for expected in [
            "--backup",
            "--stream=xbstream",
            "--target-dir=/i/run/backup-1",
            "--parallel=4",
            "--log-copy-interval=10",
        ] {
            assert!(args.iter().any(|a| a == expected), "{expected} in {args:?}");
        }
        let files = backup_args(
            Path::new("/i/run/my.cnf"),
            Path::new("/r/data.clone"),
            Output::Files,
        );
        assert!(
            !files.iter().any(|a| a.starts_with("--stream")),
            "{files:?}"
        );
        assert!(files.iter().any(|a| a == "--target-dir=/r/data.clone"));
        assert!(files.iter().any(|a| a == "--parallel=4"));
        assert_eq!(
            extract_args(Path::new("/i/data.clone")),
            ["-x", "--parallel=2", "-C", "/i/data.clone"]
        );
    }

    #[tokio::test]
    async fn a_clone_position_is_read_strictly() {
        let dir = tempfile::tempdir().unwrap();
        assert!(clone_position(dir.path()).await.is_err(), "no file");
        let info = dir.path().join("xtrabackup_binlog_info");
        std::fs::write(&info, "mysql-bin.000002\t342\t0-100-6\n").unwrap();
        assert_eq!(
            clone_position(dir.path()).await.unwrap(),
            GtidPos::parse("0-100-6").unwrap()
        );
        std::fs::write(&info, "mysql-bin.000001\t329\n").unwrap();
        assert!(clone_position(dir.path()).await.unwrap().is_empty());
        for garbled in ["", "mysql-bin.000002\t342\t0-100-x\n", "garbage\n"] {
            std::fs::write(&info, garbled).unwrap();
            let err = format!("{:#}", clone_position(dir.path()).await.unwrap_err());
            assert!(err.contains("xtrabackup_binlog_info"), "{err}");
        }
    }
}
