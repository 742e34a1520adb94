//! Physical clones: serving a `mariadb-backup --stream` to a peer, and receiving one.

use crate::blocking::remove_tree;
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
        .arg(format!(
            "--defaults-file={}",
            layout.server_config().display()
        ))
        .arg("--backup")
        .arg("--stream=xbstream")
        .arg(format!("--target-dir={}", work.display()))
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

/// The receiver side: stream a donor's backup into `data.clone`, prepare it, record the GTID to
/// replicate from, and only then rename it into place as the data dir.
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

    let client = myset_http::Client::streaming(
        format!("http://{}", donor.agent),
        &shared.secrets.api_token,
        Duration::from_secs(5),
    );
    let response = client.stream("/clone").await?;
    let log = append_log(&layout.backup_log())?;
    let mut extract = Command::new(&shared.binaries.mbstream)
        .arg("-x")
        .arg("-C")
        .arg(&target)
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
    tracing::info!(donor = donor.ordinal, bytes = received, %gtid, "clone complete");
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
