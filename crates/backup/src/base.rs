//! Base backups: a `mariadb-backup --stream=xbstream` stored whole, proven restorable by
//! extracting and preparing it, and only then described by its manifest.
//!
//! A backup exists once its manifest does: the manifest is written last, so a backup cut short
//! (a crash, a broken stream, a failed check) is never listed, and its stream object is removed.

use crate::store::{Store, Written};
use anyhow::{bail, Context};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use myset_core::GtidPos;
use myset_mariadb::Binaries;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Version tag of a manifest; anything else is refused as foreign.
pub const MANIFEST_FORMAT: &str = "myset-base-backup/v1";
const BASE_PREFIX: &str = "base/";

/// What a stored base backup holds, written once it has been checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub id: String,
    /// The cluster it was taken from.
    pub cluster: String,
    /// The member it was read from.
    pub source_ordinal: u32,
    /// Unix seconds.
    pub started_at: i64,
    /// Unix seconds; the data is consistent at a point between the two.
    pub finished_at: i64,
    /// The GTID position the data holds (mariadb-backup's `xtrabackup_binlog_info`).
    pub gtid: String,
    /// The xbstream object, its size and SHA-256.
    pub stream: Written,
}

impl Manifest {
    pub fn gtid(&self) -> anyhow::Result<GtidPos> {
        GtidPos::parse(&self.gtid)
            .with_context(|| format!("backup {} has a garbled GTID {:?}", self.id, self.gtid))
    }
}

/// Who a backup is for and where it comes from.
#[derive(Debug, Clone)]
pub struct Origin {
    pub cluster: String,
    pub source_ordinal: u32,
}

fn stream_key(id: &str) -> String {
    format!("{BASE_PREFIX}{id}/backup.xbstream")
}

fn manifest_key(id: &str) -> String {
    format!("{BASE_PREFIX}{id}/manifest.json")
}

/// A backup id: the UTC start time to the second, sortable, e.g. `20261122T120501Z`.
pub fn new_id(started_at: i64) -> String {
    crate::format_utc(
        started_at,
        time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"),
    )
}

pub fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Uploads `stream` (a backup's xbstream) as a new base backup, checks it by extracting and
/// preparing it under `scratch`, then writes its manifest. Returns once all of that is done.
pub async fn take<S, E>(
    store: &Store,
    origin: &Origin,
    stream: S,
    scratch: &Path,
    binaries: &Binaries,
) -> anyhow::Result<Manifest>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<anyhow::Error>,
{
    let started_at = now_unix();
    let id = unused_id(store, started_at).await?;
    let written = store
        .put_stream(&stream_key(&id), stream)
        .await
        .context("the backup stream was not stored")?;
    let mut manifest = Manifest {
        format: MANIFEST_FORMAT.into(),
        id: id.clone(),
        cluster: origin.cluster.clone(),
        source_ordinal: origin.source_ordinal,
        started_at,
        finished_at: now_unix(),
        gtid: String::new(),
        stream: written,
    };
    let checked = async {
        let work = tempfile::Builder::new()
            .prefix("verify-")
            .tempdir_in(scratch)
            .with_context(|| format!("cannot make a scratch dir in {}", scratch.display()))?;
        extract_prepared(store, &manifest, work.path(), binaries).await
    }
    .await;
    match checked {
        Ok(gtid) => manifest.gtid = gtid.to_string(),
        Err(e) => {
            let _ = store.delete(&manifest.stream.key).await;
            return Err(e.context(format!("backup {id} failed its check and was removed")));
        }
    }
    let json = serde_json::to_vec_pretty(&manifest)?;
    store.put(&manifest_key(&id), Bytes::from(json)).await?;
    Ok(manifest)
}

/// Two backups started in the same second get `-2`, `-3`, ... so neither overwrites the other.
async fn unused_id(store: &Store, started_at: i64) -> anyhow::Result<String> {
    let base = new_id(started_at);
    let mut id = base.clone();
    let mut n = 1;
    while store.exists(&stream_key(&id)).await? || store.exists(&manifest_key(&id)).await? {
        n += 1;
        id = format!("{base}-{n}");
    }
    Ok(id)
}

/// Streams the backup out of the store into `target` (an empty or missing dir), checking its
/// size and SHA-256 on the way, and prepares it. Returns the GTID position the data holds.
/// A corrupt or truncated backup is an error, never a data dir.
pub async fn extract_prepared(
    store: &Store,
    manifest: &Manifest,
    target: &Path,
    binaries: &Binaries,
) -> anyhow::Result<GtidPos> {
    std::fs::create_dir_all(target)
        .with_context(|| format!("cannot create {}", target.display()))?;
    let log_path = target.with_extension("log");
    let log = std::fs::File::create(&log_path)?;
    let mut extract = Command::new(&binaries.mbstream)
        .arg("-x")
        .arg("-C")
        .arg(target)
        .stdin(Stdio::piped())
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start mbstream")?;
    // A directory store yields small chunks; one pipe write per chunk cost more than the
    // extraction itself (BENCHMARKS.md), so they are gathered first.
    let mut stdin =
        tokio::io::BufWriter::with_capacity(1 << 20, extract.stdin.take().expect("stdin is piped"));
    let mut body = store.get_stream(&manifest.stream.key).await?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut fed = Ok(());
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
        if fed.is_ok() {
            // mbstream stops reading at a garbled chunk; keep hashing to name the cause.
            fed = stdin.write_all(&chunk).await;
        }
    }
    if fed.is_ok() {
        fed = stdin.flush().await;
    }
    drop(stdin);
    let status = extract.wait().await?;
    let sha256 = hex::encode(hasher.finalize());
    if size != manifest.stream.size || sha256 != manifest.stream.sha256 {
        bail!(
            "backup {} is corrupt: {} has {size} bytes with SHA-256 {sha256}, its manifest says {} bytes with {}",
            manifest.id,
            manifest.stream.key,
            manifest.stream.size,
            manifest.stream.sha256
        );
    }
    if fed.is_err() || !status.success() {
        bail!(
            "backup {} does not extract (mbstream {status}); see {}",
            manifest.id,
            log_path.display()
        );
    }
    let prepare = Command::new(&binaries.backup)
        .arg("--prepare")
        .arg(format!("--target-dir={}", target.display()))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .await
        .context("cannot start mariadb-backup --prepare")?;
    if !prepare.success() {
        bail!(
            "backup {} does not prepare (mariadb-backup --prepare {prepare}); see {}",
            manifest.id,
            log_path.display()
        );
    }
    let info_path = target.join("xtrabackup_binlog_info");
    let info = std::fs::read_to_string(&info_path)
        .with_context(|| format!("backup {} has no xtrabackup_binlog_info", manifest.id))?;
    let gtid = myset_mariadb::sql::clone_gtid(&info)
        .and_then(|g| GtidPos::parse(&g).ok())
        .with_context(|| {
            format!(
                "backup {}'s xtrabackup_binlog_info holds no GTID: {info:?}",
                manifest.id
            )
        })?;
    let _ = std::fs::remove_file(&log_path);
    Ok(gtid)
}

/// Checks a stored backup as a restore would: size, checksum, extraction, prepare, and the
/// GTID position its manifest promises.
pub async fn verify(
    store: &Store,
    id: &str,
    scratch: &Path,
    binaries: &Binaries,
) -> anyhow::Result<Manifest> {
    let manifest = read_manifest(store, id).await?;
    let work = tempfile::Builder::new()
        .prefix("verify-")
        .tempdir_in(scratch)
        .with_context(|| format!("cannot make a scratch dir in {}", scratch.display()))?;
    let gtid = extract_prepared(store, &manifest, work.path(), binaries).await?;
    if gtid != manifest.gtid()? {
        bail!(
            "backup {id} is inconsistent: its data holds GTID {gtid}, its manifest says {}",
            manifest.gtid
        );
    }
    Ok(manifest)
}

pub async fn read_manifest(store: &Store, id: &str) -> anyhow::Result<Manifest> {
    if !store.exists(&manifest_key(id)).await? {
        bail!(
            "no backup {id} in {}; see `myset backups` for the ids",
            store.url()
        );
    }
    let bytes = store.get(&manifest_key(id)).await?;
    parse_manifest(id, &bytes)
}

fn parse_manifest(id: &str, bytes: &[u8]) -> anyhow::Result<Manifest> {
    let manifest: Manifest = serde_json::from_slice(bytes)
        .map_err(|e| anyhow::anyhow!("backup {id}'s manifest is corrupt: {e}"))?;
    if manifest.format != MANIFEST_FORMAT || manifest.id != id {
        bail!(
            "backup {id}'s manifest is foreign (format {:?}, id {:?})",
            manifest.format,
            manifest.id
        );
    }
    Ok(manifest)
}

/// The store's base backups, oldest first, and the ids whose manifest cannot be read.
#[derive(Debug, Default)]
pub struct Listing {
    pub backups: Vec<Manifest>,
    pub broken: Vec<(String, String)>,
}

pub async fn list(store: &Store) -> anyhow::Result<Listing> {
    let mut listing = Listing::default();
    for object in store.list(BASE_PREFIX).await? {
        let Some(id) = object
            .key
            .strip_prefix(BASE_PREFIX)
            .and_then(|rest| rest.strip_suffix("/manifest.json"))
        else {
            continue;
        };
        let read = async { parse_manifest(id, &store.get(&object.key).await?) };
        match read.await {
            Ok(m) => listing.backups.push(m),
            Err(e) => listing.broken.push((id.to_string(), format!("{e:#}"))),
        }
    }
    listing
        .backups
        .sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
    Ok(listing)
}

/// Removes a base backup: its manifest first, so it stops being listed before its data goes.
pub async fn remove(store: &Store, id: &str) -> anyhow::Result<()> {
    store.delete(&manifest_key(id)).await?;
    store.delete(&stream_key(id)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_utc_seconds_and_sort_by_time() {
        assert_eq!(new_id(0), "19700101T000000Z");
        assert_eq!(new_id(1_795_349_101), "20261122T120501Z");
        assert!(new_id(1_000) < new_id(10_000));
    }

    #[test]
    fn a_foreign_or_garbled_manifest_is_refused() {
        assert!(parse_manifest("x", b"{").is_err());
        let m = Manifest {
            format: "other/v9".into(),
            id: "x".into(),
            cluster: "c".into(),
            source_ordinal: 1,
            started_at: 0,
            finished_at: 0,
            gtid: "0-1-2".into(),
            stream: Written {
                key: stream_key("x"),
                size: 1,
                sha256: "00".into(),
            },
        };
        let json = serde_json::to_vec(&m).unwrap();
        assert!(format!("{:#}", parse_manifest("x", &json).unwrap_err()).contains("foreign"));
        let ok = Manifest {
            format: MANIFEST_FORMAT.into(),
            ..m
        };
        let json = serde_json::to_vec(&ok).unwrap();
        assert_eq!(parse_manifest("x", &json).unwrap(), ok);
        assert!(parse_manifest("y", &json).is_err(), "id mismatch");
    }
}
