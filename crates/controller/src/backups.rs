//! Backups run by the controller: base backups on demand and on a schedule, retention, and the
//! binlog archive that follows the primary.

use crate::controller::Controller;
use anyhow::{bail, Context};
use futures::TryStreamExt;
use myset_api::{
    ArchiveGapInfo, ArchiveInfo, BackupStatus, BaseBackupInfo, ClusterStatus, Event, EventKind,
    Role, Topology,
};
use myset_backup::archive::{ArchiveEvent, ArchiveStatus, Archiver, GapKind, GtidRecord, Source};
use myset_backup::base::{self, Manifest, Origin};
use myset_backup::restore::{self, Catalog};
use myset_backup::Store;
use myset_mariadb::Binaries;
use myset_runtime::Runtime;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The server id the archive's binlog dump uses: far above any member's (ordinal-based).
pub const ARCHIVE_DUMP_SERVER_ID: u32 = 4_000_000_000;
/// How often the archive's source is re-read from the record (the primary and its address).
const FOLLOW_PERIOD: Duration = Duration::from_millis(200);
/// After a scheduled backup fails, the next attempt waits at most this long.
const SCHEDULE_RETRY: Duration = Duration::from_secs(600);

/// What the controller needs to take and keep backups.
pub struct Backups {
    store: Store,
    /// Where a new backup is extracted and prepared to check it.
    scratch: PathBuf,
    binaries: Binaries,
    /// One base backup at a time.
    taking: tokio::sync::Mutex<()>,
    last: Mutex<Option<BaseBackupInfo>>,
    archive: Mutex<Option<watch::Receiver<ArchiveStatus>>>,
}

impl Backups {
    pub fn new(store: Store, scratch: PathBuf, binaries: Binaries) -> Self {
        Backups {
            store,
            scratch,
            binaries,
            taking: tokio::sync::Mutex::new(()),
            last: Mutex::new(None),
            archive: Mutex::new(None),
        }
    }

    fn remember(&self, manifest: &Manifest) {
        *self.last.lock().expect("last lock") = Some(info(manifest));
    }
}

fn info(m: &Manifest) -> BaseBackupInfo {
    BaseBackupInfo {
        id: m.id.clone(),
        finished_at: m.finished_at,
        gtid: m.gtid.clone(),
        bytes: m.stream.size,
    }
}

/// The member a base backup reads from: a Ready replica, the most advanced one, so the
/// primary carries no backup load. Only a one-instance cluster backs up its primary.
pub fn backup_source(status: &ClusterStatus) -> Result<u32, String> {
    let replicas: Vec<_> = status
        .instances
        .iter()
        .filter(|i| i.role == Role::Replica)
        .collect();
    if replicas.is_empty() {
        return match status
            .instances
            .iter()
            .find(|i| i.ordinal == status.primary)
        {
            Some(p) if p.ready => Ok(p.ordinal),
            _ => Err(format!("the primary ({}) is not Ready", status.primary)),
        };
    }
    replicas
        .into_iter()
        .filter(|i| i.ready)
        .max_by_key(|i| (gtid_progress(i), std::cmp::Reverse(i.ordinal)))
        .map(|i| i.ordinal)
        .ok_or_else(|| {
            "no replica is Ready, and backups never load the primary; retry once one is".into()
        })
}

fn gtid_progress(i: &myset_api::InstanceStatus) -> u64 {
    i.gtid
        .as_ref()
        .and_then(|g| myset_core::GtidPos::parse(&g.current).ok())
        .map_or(0, |g| g.progress())
}

impl<R: Runtime> Controller<R> {
    fn backups(&self) -> anyhow::Result<&Backups> {
        self.backups
            .get()
            .ok_or_else(|| anyhow::anyhow!("this runtime has no backup store"))
    }

    /// Takes a base backup now from [`backup_source`], stores and checks it, then applies
    /// retention. One at a time: a second request while one runs is refused.
    pub async fn take_backup(&self) -> anyhow::Result<Manifest> {
        let backups = self.backups()?;
        let Ok(_taking) = backups.taking.try_lock() else {
            bail!("a base backup is already being taken; wait for it");
        };
        let result = self.take_backup_now(backups).await;
        match &result {
            Ok(m) => {
                backups.remember(m);
                self.record_event(
                    Event::new(
                        EventKind::BackupTaken,
                        format!(
                            "base backup {} taken from {} ({} bytes, GTID {})",
                            m.id,
                            self.state().instance_name(m.source_ordinal),
                            m.stream.size,
                            m.gtid
                        ),
                    )
                    .ordinal(m.source_ordinal)
                    .backup(&m.id)
                    .gtid(&m.gtid),
                );
                if let Err(e) = self.prune().await {
                    tracing::warn!("pruning old backups failed: {e:#}");
                }
            }
            Err(e) => self.record_event(
                Event::new(
                    EventKind::BackupFailed,
                    format!("base backup failed: {e:#}"),
                )
                .reason(format!("{e:#}")),
            ),
        }
        result
    }

    async fn take_backup_now(&self, backups: &Backups) -> anyhow::Result<Manifest> {
        let state = self.state();
        if state.topology == Topology::Galera {
            bail!("base backups of Galera clusters are not supported yet");
        }
        let source = backup_source(&self.status()).map_err(|why| anyhow::anyhow!(why))?;
        let agent = state
            .placements
            .get(&source)
            .map(|p| p.agent.clone())
            .context("the source member has no placement")?;
        let client = self
            .agent_access()?
            .streaming(&agent, Duration::from_secs(5));
        let response = client.stream("/clone").await.map_err(|e| {
            anyhow::anyhow!("the backup stream from member {source} did not start: {e}")
        })?;
        let stream =
            Box::pin(response.bytes_stream().map_err(|e| {
                anyhow::anyhow!("the backup stream from member {source} broke off: {e}")
            }));
        std::fs::create_dir_all(&backups.scratch)?;
        let origin = Origin {
            cluster: state.name.clone(),
            source_ordinal: source,
        };
        base::take(
            &backups.store,
            &origin,
            stream,
            &backups.scratch,
            &backups.binaries,
        )
        .await
    }

    /// Retention: keeps the newest `keep` base backups and the archive they need.
    async fn prune(&self) -> anyhow::Result<()> {
        let backups = self.backups()?;
        let keep = self.state().backup.keep;
        let catalog = Catalog::load(&backups.store).await?;
        let pruning = restore::retention(&catalog, keep);
        for id in &pruning.backups {
            base::remove(&backups.store, id).await?;
            self.record_event(
                Event::new(
                    EventKind::BackupPruned,
                    format!("base backup {id} removed by retention (keep {keep})"),
                )
                .backup(id),
            );
        }
        for segment in &pruning.segments {
            backups.store.delete(&segment.to_key()).await?;
        }
        if !pruning.segments.is_empty() {
            self.record_event(Event::new(
                EventKind::BackupPruned,
                format!(
                    "{} archive segments removed: no kept base backup needs them",
                    pruning.segments.len()
                ),
            ));
        }
        Ok(())
    }

    /// Runs the archive and the schedule until the controller stops.
    pub(crate) async fn run_backups(self: Arc<Self>) {
        let Ok(backups) = self.backups() else { return };
        match Catalog::load(&backups.store).await {
            Ok(catalog) => {
                if let Some(m) = catalog.backups.last() {
                    backups.remember(m);
                }
            }
            Err(e) => tracing::warn!("cannot read the backup store: {e:#}"),
        }
        if self.state().topology == Topology::Replication {
            tokio::spawn(self.clone().run_archive());
        }
        self.run_schedule().await;
    }

    /// Archives the primary's binlog: one task follows the record's primary, another runs the
    /// archiver, restarted should it ever die (a malformed event can panic the decoder).
    async fn run_archive(self: Arc<Self>) {
        let Ok(backups) = self.backups() else { return };
        let (source_tx, source_rx) = watch::channel(None);
        let (events_tx, mut events_rx) = mpsc::channel(64);
        tokio::spawn(self.clone().follow_source(source_tx));
        let me = self.clone();
        tokio::spawn(async move {
            while let Some(event) = events_rx.recv().await {
                me.archive_event(event);
            }
        });
        loop {
            let archiver = Archiver::new(backups.store.clone(), ARCHIVE_DUMP_SERVER_ID);
            *backups.archive.lock().expect("archive lock") = Some(archiver.status());
            let run =
                tokio::spawn(archiver.run(source_rx.clone(), self.stop.clone(), events_tx.clone()));
            let ended = run.await;
            if self.stop.is_cancelled() {
                return;
            }
            tracing::error!("the binlog archiver ended unexpectedly ({ended:?}); restarting it");
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Keeps `source` on the recorded primary. The archive streams the primary's binlog: a
    /// commit is acknowledged once a replica has *received* it, and a replica's own binlog
    /// holds it only once applied, so reading a replica made the recovery point follow its
    /// apply lag (BENCHMARKS.md: 3 s of lag lost 3 s of acknowledged writes). The price: with
    /// AFTER_SYNC the primary's binlog holds a transaction before any replica does, and a
    /// failover in that instant drops it from the cluster but not from the archive; the next
    /// transaction of the new primary then meets the archive's own at that seq_no and is
    /// reported as a gap (a fork), never hidden.
    async fn follow_source(self: Arc<Self>, source: watch::Sender<Option<Source>>) {
        loop {
            let state = self.state();
            let primary = state.placements.get(&state.primary).map(|p| Source {
                host: p.server.host.clone(),
                port: p.server.port,
                user: self.secrets.repl_user.clone(),
                password: self.secrets.repl_password.clone(),
                ca: self.tls_ca(),
            });
            source.send_if_modified(|now| {
                let changed = *now != primary;
                if changed {
                    now.clone_from(&primary);
                }
                changed
            });
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(FOLLOW_PERIOD) => {}
            }
        }
    }

    fn archive_event(&self, event: ArchiveEvent) {
        match event {
            ArchiveEvent::Started { source, from } => self.record_event(Event::new(
                EventKind::ArchiveFollowing,
                format!("binlog archive streaming from {source} ({from:?})"),
            )),
            ArchiveEvent::Gap(gap) => {
                let (expected, received) = gap_text(&gap.kind);
                self.record_event(
                    Event::new(
                        EventKind::ArchiveGap,
                        format!(
                            "binlog archive gap at {}: expected {expected}, got {received}; a restore cannot reach past it",
                            gap.source
                        ),
                    )
                    .gtid(expected)
                    .reason(received),
                );
            }
            other => tracing::info!("binlog archive: {other:?}"),
        }
    }

    async fn run_schedule(&self) {
        loop {
            let every = self.state().backup.every_seconds;
            let wait = match every {
                None => Duration::from_secs(5),
                Some(every) => {
                    let last = self.backups().ok().and_then(|b| {
                        b.last
                            .lock()
                            .expect("last lock")
                            .as_ref()
                            .map(|l| l.finished_at)
                    });
                    let due = last.map_or(0, |l| l + every as i64);
                    Duration::from_secs(due.saturating_sub(base::now_unix()).max(0) as u64)
                }
            };
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(wait.min(Duration::from_secs(5))) => {}
            }
            // Due, but nothing to read from yet (a cluster still starting): not a failure.
            if every.is_none() || !wait.is_zero() || backup_source(&self.status()).is_err() {
                continue;
            }
            if let Err(e) = self.take_backup().await {
                tracing::warn!("scheduled base backup failed: {e:#}");
                let retry = Duration::from_secs(every.unwrap_or(60)).min(SCHEDULE_RETRY);
                tokio::select! {
                    _ = self.stop.cancelled() => return,
                    _ = tokio::time::sleep(retry) => {}
                }
            }
        }
    }

    /// Backups as `status` shows them.
    pub(crate) fn backup_status(&self, status: &ClusterStatus) -> Option<BackupStatus> {
        let backups = self.backups.get()?;
        let state = self.state();
        let archive = backups
            .archive
            .lock()
            .expect("archive lock")
            .as_ref()
            .map(|rx| archive_info(&rx.borrow(), status));
        Some(BackupStatus {
            store: backups.store.url().to_string(),
            every_seconds: state.backup.every_seconds,
            keep: state.backup.keep,
            last_base_backup: backups.last.lock().expect("last lock").clone(),
            archive,
        })
    }
}

/// A gap as (what the archive needed next, what it got instead).
fn gap_text(kind: &GapKind) -> (String, String) {
    match kind {
        GapKind::Jump {
            expected_seq,
            after,
            received,
        } => (
            format!("{}-*-{expected_seq} (after {after})", after.domain),
            received.to_string(),
        ),
        GapKind::NotInSource {
            requested,
            code,
            message,
        } => (format!("{requested:?}"), format!("error {code}: {message}")),
        GapKind::Duplicate { archived, received } => (
            format!("a transaction after {archived}"),
            format!("{received} again, from another history"),
        ),
    }
}

fn archive_info(a: &ArchiveStatus, status: &ClusterStatus) -> ArchiveInfo {
    let last = a.position.first();
    let primary_position = status
        .instances
        .iter()
        .find(|i| i.ordinal == status.primary)
        .and_then(|i| i.gtid.as_ref())
        .and_then(|g| myset_core::GtidPos::parse(&g.binlog).ok());
    ArchiveInfo {
        source: a.connected.as_ref().map(|s| s.to_string()),
        last_gtid: last.map(|g| g.to_string()),
        last_event_at: a.last_event_time.map(i64::from),
        behind_transactions: primary_position
            .map(|primary| transactions_behind(&primary, &a.position)),
        gaps: a
            .gaps
            .iter()
            .map(|g| {
                let (expected, received) = gap_text(&g.kind);
                ArchiveGapInfo {
                    expected,
                    received,
                    at: (g.at_unix_ms / 1000) as i64,
                }
            })
            .collect(),
        last_error: a.last_error.clone(),
    }
}

/// Transactions in the primary's binlog position that the archive does not hold, domain by
/// domain (a domain the archive has nothing of counts whole; a new cluster is 0 behind).
fn transactions_behind(primary: &myset_core::GtidPos, archived: &[GtidRecord]) -> u64 {
    primary
        .iter()
        .map(|g| {
            let held = archived
                .iter()
                .find(|a| a.domain == g.domain)
                .map_or(0, |a| a.seq);
            g.seq.saturating_sub(held)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use myset_api::{ClusterState, Credentials, GtidPositions, InstanceStatus};

    #[test]
    fn the_archive_is_behind_by_what_the_primary_has_and_it_lacks() {
        let primary = |text: &str| myset_core::GtidPos::parse(text).unwrap();
        let held = |domain, seq| GtidRecord {
            domain,
            server: 100,
            seq,
        };
        // A new cluster: nothing written, nothing to archive.
        assert_eq!(transactions_behind(&primary(""), &[]), 0);
        // Nothing archived yet: the primary's transactions, all of them.
        assert_eq!(transactions_behind(&primary("0-100-3"), &[]), 3);
        assert_eq!(transactions_behind(&primary("0-100-9"), &[held(0, 7)]), 2);
        // Each domain on its own; the archive being ahead (a new primary not yet level) is 0.
        assert_eq!(
            transactions_behind(&primary("0-100-9,1-101-4"), &[held(0, 9), held(1, 1)]),
            3
        );
        assert_eq!(transactions_behind(&primary("0-100-5"), &[held(0, 6)]), 0);
    }

    fn status(instances: &[(u32, Role, bool, u64)]) -> ClusterStatus {
        let state = ClusterState::new("c", instances.len() as u32, "127.0.0.1", 1, 2);
        let instances = instances
            .iter()
            .map(|&(ordinal, role, ready, seq)| InstanceStatus {
                role,
                ready,
                gtid: Some(GtidPositions {
                    current: format!("0-100-{seq}"),
                    binlog: String::new(),
                    slave: String::new(),
                }),
                ..InstanceStatus::from_state(&state, ordinal)
            })
            .collect();
        let credentials = Credentials {
            user: "u".into(),
            password_file: "p".into(),
        };
        ClusterStatus::from_state(&state, true, credentials, instances)
    }

    #[test]
    fn a_backup_reads_the_most_advanced_ready_replica() {
        let s = status(&[
            (0, Role::Primary, true, 9),
            (1, Role::Replica, true, 7),
            (2, Role::Replica, true, 8),
        ]);
        assert_eq!(backup_source(&s), Ok(2));
        let s = status(&[
            (0, Role::Primary, true, 9),
            (1, Role::Replica, true, 8),
            (2, Role::Replica, false, 9),
        ]);
        assert_eq!(backup_source(&s), Ok(1));
    }

    #[test]
    fn the_primary_is_backed_up_only_when_it_is_alone() {
        let alone = status(&[(0, Role::Primary, true, 9)]);
        assert_eq!(backup_source(&alone), Ok(0));
        let down = status(&[(0, Role::Primary, false, 9)]);
        assert!(backup_source(&down).is_err());
        let no_ready_replica = status(&[(0, Role::Primary, true, 9), (1, Role::Replica, false, 9)]);
        let why = backup_source(&no_ready_replica).unwrap_err();
        assert!(why.contains("no replica is Ready"), "{why}");
    }
}
