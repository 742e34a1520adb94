//! Point-in-time restore: choosing a base backup and the archive to replay (pure), and turning
//! them into a data dir (extract, prepare, replay the binlog, hand over the accounts).

use crate::base::{self, Manifest};
use crate::segment::{self, PlanError, ReplayPlan, SegmentKey};
use crate::store::{sha256_hex, Store};
use anyhow::{bail, Context};
use myset_api::Secrets;
use myset_core::{Gtid, GtidPos};
use myset_mariadb::{AdminClient, Binaries};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

/// What a store holds: its base backups and its archive segments.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Oldest first.
    pub backups: Vec<Manifest>,
    /// Backups whose manifest cannot be read, with why.
    pub broken: Vec<(String, String)>,
    pub segments: Vec<SegmentKey>,
}

impl Catalog {
    pub async fn load(store: &Store) -> anyhow::Result<Self> {
        let listing = base::list(store).await?;
        let segments = segment::list_keys(store).await?;
        Ok(Catalog {
            backups: listing.backups,
            broken: listing.broken,
            segments,
        })
    }

    /// The one GTID domain restores follow (myset's clusters write domain 0).
    fn domain(&self) -> u32 {
        self.segments.first().map_or(0, |s| s.domain)
    }

    /// From the oldest base backup to the end of the archive the newest one can replay.
    pub fn window(&self) -> Option<Window> {
        let first = self.backups.first()?;
        let last = self.backups.last()?;
        let domain = self.domain();
        let (end_seq, end_time) =
            match segment::plan_replay(&self.segments, domain, base_seq(last, domain), None) {
                Ok(plan) => (plan.window.1.seq, plan.window.1.time),
                Err(PlanError::Hole { window, .. }) => (window.1.seq, window.1.time),
                Err(_) => (base_seq(last, domain), None),
            };
        Some(Window {
            from_time: first.finished_at + 1,
            from_seq: base_seq(first, domain),
            to_time: end_time.map_or(last.finished_at, |t| i64::from(t).max(last.finished_at)),
            to_seq: end_seq,
            domain,
        })
    }
}

fn base_seq(manifest: &Manifest, domain: u32) -> u64 {
    manifest
        .gtid()
        .ok()
        .and_then(|g| g.get(domain).map(|g| g.seq))
        .unwrap_or(0)
}

/// What retention removes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruning {
    /// Base backups beyond the newest `keep`.
    pub backups: Vec<String>,
    /// Archive segments only those needed: wholly at or before the oldest kept backup.
    pub segments: Vec<SegmentKey>,
}

/// Keeps the newest `keep` base backups (at least one) and the archive that can replay after
/// the oldest of them; everything older goes.
pub fn retention(catalog: &Catalog, keep: u32) -> Pruning {
    let keep = keep.max(1) as usize;
    let n = catalog.backups.len();
    if n <= keep {
        return Pruning::default();
    }
    let oldest_kept = &catalog.backups[n - keep];
    let floor = oldest_kept.gtid().unwrap_or_default();
    Pruning {
        backups: catalog.backups[..n - keep]
            .iter()
            .map(|b| b.id.clone())
            .collect(),
        segments: catalog
            .segments
            .iter()
            .filter(|s| floor.get(s.domain).is_some_and(|g| s.last_seq <= g.seq))
            .cloned()
            .collect(),
    }
}

/// The range a restore can reach: times (unix seconds) and sequence numbers of the domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Window {
    pub domain: u32,
    pub from_time: i64,
    pub to_time: i64,
    pub from_seq: u64,
    pub to_seq: u64,
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} to {} (GTID {}-*-{} to {}-*-{})",
            rfc3339(self.from_time),
            rfc3339(self.to_time),
            self.domain,
            self.from_seq,
            self.domain,
            self.to_seq
        )
    }
}

pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// Where a restore stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreTarget {
    /// Everything archived.
    Latest,
    /// Every transaction stamped before this unix second (binlog timestamps have one-second
    /// resolution, so a time inside a second means that second's start).
    Before(i64),
    /// Up to and including this transaction.
    Gtid(Gtid),
}

impl RestoreTarget {
    /// Parses `--to-time` (RFC 3339) or `--to-gtid`.
    pub fn parse(to_time: Option<&str>, to_gtid: Option<&str>) -> anyhow::Result<Self> {
        match (to_time, to_gtid) {
            (Some(_), Some(_)) => bail!("--to-time and --to-gtid exclude each other; give one"),
            (Some(t), None) => {
                let at =
                    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                        .map_err(|_| {
                            anyhow::anyhow!(
                        "--to-time {t:?} is not an RFC 3339 time; write e.g. 2026-11-22T12:00:05Z"
                    )
                        })?;
                Ok(Self::Before(at.unix_timestamp()))
            }
            (None, Some(g)) => {
                let pos = GtidPos::parse(g).ok().filter(|p| p.iter().count() == 1);
                let gtid = pos.and_then(|p| p.iter().next().copied()).ok_or_else(|| {
                    anyhow::anyhow!("--to-gtid {g:?} is not one GTID; write domain-server-sequence, e.g. 0-100-42")
                })?;
                Ok(Self::Gtid(gtid))
            }
            (None, None) => Ok(Self::Latest),
        }
    }
}

/// A restore's choices: the base backup and the segments replayed on it, and how far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePlan {
    pub base: Manifest,
    pub replay: ReplayPlan,
    pub target: RestoreTarget,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RestoreRefused {
    #[error("{store} holds no base backup; take one with `myset backup`")]
    NoBackup { store: String },
    #[error("--to-time {} is in the future; the recoverable window is {window}", rfc3339(*.at))]
    Future { at: i64, window: Window },
    #[error("the target is before the first base backup; the recoverable window is {window}")]
    BeforeFirstBackup { window: Window },
    #[error("the target is past the end of the archive; the recoverable window is {window} (omit the target to restore everything archived)")]
    PastArchive { window: Window },
    #[error("the archive has a gap: transactions {from}..={to} of domain {domain} are missing, so a restore cannot reach past them; the recoverable window is {window}")]
    Gap {
        domain: u32,
        from: u64,
        to: u64,
        window: Window,
    },
    #[error("--to-gtid names domain {asked}, but the archive follows domain {domain}")]
    OtherDomain { asked: u32, domain: u32 },
    #[error("the archive is inconsistent: {0}")]
    Inconsistent(String),
}

/// Chooses the newest base backup before the target and the segments to replay after it.
pub fn plan(
    catalog: &Catalog,
    store: &str,
    target: RestoreTarget,
    now: i64,
) -> Result<RestorePlan, RestoreRefused> {
    let Some(window) = catalog.window() else {
        return Err(RestoreRefused::NoBackup {
            store: store.into(),
        });
    };
    let domain = window.domain;
    let (candidates, replay_target): (Vec<&Manifest>, Option<segment::Target>) = match target {
        RestoreTarget::Latest => (catalog.backups.iter().collect(), None),
        RestoreTarget::Before(at) => {
            if at > now {
                return Err(RestoreRefused::Future { at, window });
            }
            // A backup's data is consistent at a point no later than its finish: only
            // transactions stamped before `at` may be in it.
            let before: Vec<&Manifest> = catalog
                .backups
                .iter()
                .filter(|b| b.finished_at < at)
                .collect();
            let last_second = u32::try_from(at - 1).unwrap_or(0);
            (before, Some(segment::Target::Time(last_second)))
        }
        RestoreTarget::Gtid(g) => {
            if g.domain != domain {
                return Err(RestoreRefused::OtherDomain {
                    asked: g.domain,
                    domain,
                });
            }
            let before: Vec<&Manifest> = catalog
                .backups
                .iter()
                .filter(|b| base_seq(b, domain) <= g.seq)
                .collect();
            (before, Some(segment::Target::Seq(g.seq)))
        }
    };
    let Some(base) = candidates.last() else {
        return Err(RestoreRefused::BeforeFirstBackup { window });
    };
    // A backup that already holds everything up to a time target needs no replay: the
    // archive need not reach past it.
    let replay = segment::plan_replay(
        &catalog.segments,
        domain,
        base_seq(base, domain),
        replay_target,
    );
    let replay = match (replay, target) {
        (Ok(plan), _) => plan,
        (Err(PlanError::TargetBeyondArchive { .. }), RestoreTarget::Before(at))
            if at <= window.to_time =>
        {
            // The window's end is the newest backup, newer than the archive's last event.
            segment::plan_replay(&catalog.segments, domain, base_seq(base, domain), None)
                .map_err(|e| RestoreRefused::Inconsistent(e.to_string()))?
        }
        (Err(PlanError::TargetBeyondArchive { .. }), _) => {
            return Err(RestoreRefused::PastArchive { window })
        }
        (Err(PlanError::TargetBeforeBase { .. }), _) => {
            return Err(RestoreRefused::BeforeFirstBackup { window })
        }
        (
            Err(PlanError::Hole {
                domain, from, to, ..
            }),
            _,
        ) => {
            return Err(RestoreRefused::Gap {
                domain,
                from,
                to,
                window,
            })
        }
        (Err(e @ PlanError::Overlap { .. }), _) => {
            return Err(RestoreRefused::Inconsistent(e.to_string()))
        }
    };
    Ok(RestorePlan {
        base: (*base).clone(),
        replay,
        target,
    })
}

/// Builds a restored data dir at `target` (which must not exist): the plan's base backup,
/// extracted and prepared, with the archive replayed up to the target and myset's accounts
/// given `secrets`; `server_id` is the id of the member that will run it. Returns the GTID
/// position the data holds. Everything it reads is checked against its checksum; on any
/// error `target` is removed.
pub async fn build_data_dir(
    store: &Store,
    plan: &RestorePlan,
    target: &Path,
    scratch: &Path,
    binaries: &Binaries,
    secrets: &Secrets,
    server_id: u32,
) -> anyhow::Result<GtidPos> {
    if target.exists() {
        bail!(
            "{} exists already; a restore never writes over data",
            target.display()
        );
    }
    let result = async {
        let work = tempfile::Builder::new()
            .prefix("restore-")
            .tempdir_in(scratch)
            .with_context(|| format!("cannot make a scratch dir in {}", scratch.display()))?;
        let base_gtid = base::extract_prepared(store, &plan.base, target, binaries).await?;
        let segments = download_segments(store, &plan.replay.segments, work.path()).await?;
        let mut server = TempServer::start(target, work.path(), binaries, server_id).await?;
        let replayed = async {
            server
                .replay(&base_gtid, &segments, plan.target, binaries)
                .await?;
            server.hand_over_accounts(secrets).await?;
            server.settle_gtid_position().await
        }
        .await;
        server.shut_down().await;
        replayed
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_dir_all(target);
    }
    result
}

/// Downloads each segment, checking it against the SHA-256 in its key.
async fn download_segments(
    store: &Store,
    segments: &[SegmentKey],
    dir: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::with_capacity(segments.len());
    for (n, segment) in segments.iter().enumerate() {
        let key = segment.to_key();
        let bytes = store.get(&key).await?;
        let sha256 = sha256_hex(&bytes);
        if sha256 != segment.sha256 {
            bail!("archive segment {key} is corrupt: its SHA-256 is {sha256}");
        }
        let path = dir.join(format!("{n:08}.binlog"));
        tokio::fs::write(&path, &bytes).await?;
        files.push(path);
    }
    Ok(files)
}

/// A mariadbd on the restored data dir, on a socket only and without grant checks, so the
/// replay can run as any account and the old cluster's credentials are not needed.
struct TempServer {
    child: tokio::process::Child,
    socket: PathBuf,
    log: PathBuf,
    client: Option<AdminClient>,
}

impl TempServer {
    async fn start(
        datadir: &Path,
        work: &Path,
        binaries: &Binaries,
        server_id: u32,
    ) -> anyhow::Result<Self> {
        let socket = work.join("mariadbd.sock");
        let log = work.join("mariadbd.err");
        let mut command = Command::new(&binaries.mariadbd);
        command
            .arg("--no-defaults")
            .arg(format!("--datadir={}", datadir.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!(
                "--pid-file={}",
                work.join("mariadbd.pid").display()
            ))
            .arg(format!("--log-error={}", log.display()))
            .arg("--skip-networking")
            .arg("--skip-grant-tables")
            .arg("--skip-slave-start")
            .arg(format!("--server-id={server_id}"))
            // The binlog continues the restored history: replicas later clone from it and
            // myset's errant-transaction checks read its GTIDs.
            .arg("--log-bin=mysql-bin")
            .arg("--binlog-format=ROW")
            .arg("--gtid-strict-mode=ON")
            .arg("--sync-binlog=0")
            .arg("--innodb-flush-log-at-trx-commit=2")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if nix::unistd::geteuid().is_root() {
            command.arg("--user=root");
        }
        let mut child = command.spawn().context("cannot start mariadbd")?;
        let client = myset_mariadb::client::connect_starting_server(
            &mut child,
            &socket,
            Duration::from_secs(300),
        )
        .await
        .with_context(|| {
            format!(
                "mariadbd on the restored data did not come up; see {}",
                log.display()
            )
        })?;
        Ok(TempServer {
            child,
            socket,
            log,
            client: Some(client),
        })
    }

    fn client(&mut self) -> &mut AdminClient {
        self.client.as_mut().expect("connected until shut down")
    }

    /// Replays `segments` after `base` up to `target` with `mariadb-binlog | mariadb`.
    async fn replay(
        &mut self,
        base: &GtidPos,
        segments: &[PathBuf],
        target: RestoreTarget,
        binaries: &Binaries,
    ) -> anyhow::Result<()> {
        // The binlog starts empty (a backup has none); it continues from the base position.
        self.client().exec("RESET MASTER").await?;
        if !base.is_empty() {
            self.client()
                .exec(&format!(
                    "SET GLOBAL gtid_binlog_state = {}",
                    myset_mariadb::sql::literal(&base.to_string())
                ))
                .await?;
        }
        if segments.is_empty() {
            return Ok(());
        }
        let mut decode = Command::new(&binaries.binlog);
        decode.env("TZ", "UTC");
        if !base.is_empty() {
            decode.arg(format!("--start-position={base}"));
        }
        match target {
            RestoreTarget::Latest => {}
            RestoreTarget::Before(at) => {
                decode.arg(format!("--stop-datetime={}", binlog_datetime(at)));
            }
            RestoreTarget::Gtid(g) => {
                decode.arg(format!(
                    "--stop-position={}-{}-{}",
                    g.domain, g.server, g.seq
                ));
            }
        }
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut decode = decode
            .args(segments)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log.try_clone()?)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start mariadb-binlog")?;
        let statements: Stdio = decode
            .stdout
            .take()
            .expect("stdout is piped")
            .try_into()
            .context("cannot pipe mariadb-binlog into mariadb")?;
        let apply = Command::new(&binaries.client)
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket.display()))
            .arg("--user=root")
            .arg("--binary-mode")
            .stdin(statements)
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .status();
        let (decoded, applied) = tokio::join!(decode.wait(), apply);
        let (decoded, applied) = (decoded?, applied?);
        if !decoded.success() {
            bail!(
                "mariadb-binlog could not read the archive ({decoded}); see {}",
                self.log.display()
            );
        }
        if !applied.success() {
            bail!(
                "replaying the archive failed ({applied}); see {}",
                self.log.display()
            );
        }
        Ok(())
    }

    /// myset's accounts get the new cluster's credentials; grant checks come back on. None of
    /// it is binlogged: it is not part of the restored history.
    async fn hand_over_accounts(&mut self, secrets: &Secrets) -> anyhow::Result<()> {
        self.client().exec(myset_mariadb::sql::NO_BINLOG).await?;
        self.client()
            .exec(myset_mariadb::sql::FLUSH_PRIVILEGES)
            .await?;
        for statement in myset_mariadb::sql::restored_accounts(secrets) {
            self.client().exec(&statement).await?;
        }
        Ok(())
    }

    /// The restored position becomes the server's whole position. A backup read from a
    /// replica carries that replica's `gtid_slave_pos`, which `gtid_current_pos` (and so the
    /// next clone's starting point) would prefer to the replayed binlog's GTIDs of other
    /// servers.
    async fn settle_gtid_position(&mut self) -> anyhow::Result<GtidPos> {
        self.client()
            .exec("SET GLOBAL gtid_slave_pos = @@global.gtid_binlog_pos")
            .await?;
        let pos = self
            .client()
            .scalar("SELECT @@global.gtid_current_pos")
            .await?
            .unwrap_or_default();
        Ok(GtidPos::parse(&pos)?)
    }

    /// A clean shutdown, so the data dir needs no crash recovery at its next start.
    async fn shut_down(mut self) {
        if let Some(mut client) = self.client.take() {
            let _ = client.exec("SHUTDOWN").await;
        }
        if tokio::time::timeout(Duration::from_secs(120), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }
}

/// `mariadb-binlog --stop-datetime` wants local time; it runs with TZ=UTC.
fn binlog_datetime(unix: i64) -> String {
    crate::format_utc(
        unix,
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Written;

    fn backup(id: &str, finished_at: i64, seq: u64) -> Manifest {
        Manifest {
            format: base::MANIFEST_FORMAT.into(),
            id: id.into(),
            cluster: "c".into(),
            source_ordinal: 1,
            started_at: finished_at - 5,
            finished_at,
            gtid: format!("0-100-{seq}"),
            stream: Written {
                key: format!("base/{id}/backup.xbstream"),
                size: 1,
                sha256: "00".into(),
            },
        }
    }

    fn seg(first_seq: u64, last_seq: u64, first_time: u32, last_time: u32) -> SegmentKey {
        SegmentKey {
            domain: 0,
            first_seq,
            last_seq,
            first_time,
            last_time,
            source_server_id: 100,
            last_server_id: 100,
            sha256: "ab".repeat(32),
        }
    }

    /// Backups at t=1000 (seq 10) and t=1500 (seq 20); segments of one transaction each
    /// cover seq 11..=30, seq s stamped 1000 + 50 * (s - 10) - 10 (11 at 1040, 30 at 1990).
    fn catalog() -> Catalog {
        let at = |s: u64| (1000 + 50 * (s - 10) - 10) as u32;
        Catalog {
            backups: vec![backup("a", 1000, 10), backup("b", 1500, 20)],
            broken: vec![],
            segments: (11..=30).map(|s| seg(s, s, at(s), at(s))).collect(),
        }
    }

    fn replayed(p: &RestorePlan) -> Vec<u64> {
        p.replay.segments.iter().map(|s| s.last_seq).collect()
    }

    #[test]
    fn targets_parse_strictly() {
        assert_eq!(
            RestoreTarget::parse(None, None).unwrap(),
            RestoreTarget::Latest
        );
        assert_eq!(
            RestoreTarget::parse(Some("1970-01-01T00:16:40.5Z"), None).unwrap(),
            RestoreTarget::Before(1000)
        );
        assert_eq!(
            RestoreTarget::parse(None, Some("0-100-7")).unwrap(),
            RestoreTarget::Gtid(Gtid {
                domain: 0,
                server: 100,
                seq: 7
            })
        );
        for (t, g) in [
            (Some("yesterday"), None),
            (None, Some("0-100")),
            (None, Some("0-1-2,1-1-2")),
            (Some("2026-01-01T00:00:00Z"), Some("0-1-1")),
        ] {
            assert!(RestoreTarget::parse(t, g).is_err(), "{t:?} {g:?}");
        }
    }

    #[test]
    fn a_time_picks_the_newest_backup_finished_before_it() {
        let c = catalog();
        let p = plan(&c, "s", RestoreTarget::Before(1100), 5000).unwrap();
        assert_eq!((p.base.id.as_str(), replayed(&p)), ("a", vec![11, 12]));
        let p = plan(&c, "s", RestoreTarget::Before(1501), 5000).unwrap();
        assert_eq!((p.base.id.as_str(), replayed(&p)), ("b", vec![]));
        let p = plan(&c, "s", RestoreTarget::Before(1990), 5000).unwrap();
        assert_eq!(
            (p.base.id.as_str(), replayed(&p)),
            ("b", (21..=29).collect())
        );
        // Nothing archived after 1990 tells whether 1990..1994 saw writes.
        let p = plan(&c, "s", RestoreTarget::Before(1995), 5000).unwrap_err();
        assert!(matches!(p, RestoreRefused::PastArchive { .. }), "{p}");
    }

    #[test]
    fn a_gtid_picks_the_newest_backup_at_or_before_it() {
        let c = catalog();
        let g = |seq| {
            RestoreTarget::Gtid(Gtid {
                domain: 0,
                server: 100,
                seq,
            })
        };
        let p = plan(&c, "s", g(25), 5000).unwrap();
        assert_eq!(
            (p.base.id.as_str(), replayed(&p)),
            ("b", (21..=25).collect())
        );
        let p = plan(&c, "s", g(19), 5000).unwrap();
        assert_eq!(
            (p.base.id.as_str(), replayed(&p)),
            ("a", (11..=19).collect())
        );
        assert_eq!(plan(&c, "s", g(20), 5000).unwrap().base.id, "b");
        assert!(matches!(
            plan(&c, "s", g(31), 5000),
            Err(RestoreRefused::PastArchive { .. })
        ));
        assert!(matches!(
            plan(&c, "s", g(9), 5000),
            Err(RestoreRefused::BeforeFirstBackup { .. })
        ));
        let other = RestoreTarget::Gtid(Gtid {
            domain: 1,
            server: 100,
            seq: 5,
        });
        assert!(matches!(
            plan(&c, "s", other, 5000),
            Err(RestoreRefused::OtherDomain { .. })
        ));
    }

    #[test]
    fn targets_outside_the_window_are_refused_with_the_window() {
        let c = catalog();
        let w = c.window().unwrap();
        assert_eq!(
            (w.from_time, w.to_time, w.from_seq, w.to_seq),
            (1001, 1990, 10, 30)
        );
        let before = plan(&c, "s", RestoreTarget::Before(1000), 5000).unwrap_err();
        assert!(matches!(before, RestoreRefused::BeforeFirstBackup { .. }));
        assert!(
            before.to_string().contains("1970-01-01T00:16:41Z"),
            "{before}"
        );
        let future = plan(&c, "s", RestoreTarget::Before(9000), 5000).unwrap_err();
        assert!(matches!(future, RestoreRefused::Future { .. }), "{future}");
        let past = plan(&c, "s", RestoreTarget::Before(2000), 5000).unwrap_err();
        assert!(matches!(past, RestoreRefused::PastArchive { .. }), "{past}");
        let empty = Catalog::default();
        assert!(matches!(
            plan(&empty, "s", RestoreTarget::Latest, 5000),
            Err(RestoreRefused::NoBackup { .. })
        ));
    }

    #[test]
    fn a_gap_after_the_base_is_refused_but_a_gap_before_it_is_not() {
        let mut c = catalog();
        c.segments.retain(|s| s.last_seq != 25);
        let latest = plan(&c, "s", RestoreTarget::Latest, 5000).unwrap_err();
        assert!(
            matches!(
                latest,
                RestoreRefused::Gap {
                    from: 25,
                    to: 25,
                    ..
                }
            ),
            "{latest}"
        );
        let early = RestoreTarget::Gtid(Gtid {
            domain: 0,
            server: 100,
            seq: 23,
        });
        assert!(plan(&c, "s", early, 5000).is_ok());
        let mut c = catalog();
        c.segments.retain(|s| s.last_seq != 15);
        let p = plan(&c, "s", RestoreTarget::Latest, 5000).unwrap();
        assert_eq!(p.base.id, "b", "the hole is before the newest backup");
    }

    #[test]
    fn retention_keeps_the_newest_backups_and_the_archive_after_the_oldest_kept() {
        let c = catalog();
        assert_eq!(retention(&c, 2), Pruning::default());
        let p = retention(&c, 1);
        assert_eq!(p.backups, ["a"]);
        let pruned: Vec<u64> = p.segments.iter().map(|s| s.last_seq).collect();
        assert_eq!(pruned, (11..=20).collect::<Vec<_>>());
        assert_eq!(retention(&c, 0), p, "at least one backup is always kept");
    }

    #[test]
    fn binlog_datetimes_are_utc() {
        assert_eq!(binlog_datetime(1_795_349_101), "2026-11-22 12:05:01");
    }
}
