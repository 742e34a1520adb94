//! Continuous binlog archiving: events are streamed from the current primary, as a replica
//! would, and uploaded to the store in segments (see [`crate::segment`]) a fraction of a second
//! after they are written.
//!
//! The archiver connects with `mysql_async`'s binlog stream as a MariaDB GTID replica:
//! `@mariadb_slave_capability=4` (GTID events arrive as GTID events) and
//! `@slave_connect_state=<last archived GTIDs>` (the server starts right after them and ignores
//! the file/position of COM_BINLOG_DUMP). The position comes from listing the store on every
//! (re)connect, so a restart, a reconnect or a new primary continue where the archive ends and
//! nothing is archived twice.
//!
//! Continuity: in each domain the first transaction received must be the archived seq_no + 1.
//! Anything else is a [`Gap`], reported as an [`ArchiveEvent::Gap`] and kept in the status:
//! - a jump in seq_no ([`GapKind::Jump`]): archiving goes on from what arrived;
//! - the server answering 1236 (the position is not in its binlogs: purged, or a server that
//!   never had those transactions) ([`GapKind::NotInSource`]): the archiver reconnects from the
//!   start of the server's oldest binlog (a file/position dump from the first file, not a
//!   GTID one: an empty `@slave_connect_state` is refused too once anything was purged),
//!   dropping the transactions it already has; if that fails too, from the server's current
//!   `@@gtid_binlog_pos`. Either way the next transaction it takes is checked against the
//!   archive and the jump is reported as well;
//! - a transaction at or below the archived seq_no after connecting by GTID, or at the
//!   archived seq_no but from another server when reading from the oldest binlog
//!   ([`GapKind::Duplicate`]): the server's history differs from the archive's; such
//!   transactions are dropped (the archive keeps its own history).
//!
//! With nothing archived yet the archiver starts at the server's oldest binlog.

use crate::segment::{self, Sealed, SegmentBuilder};
use crate::store::Store;
use futures::StreamExt;
use myset_core::gtid::Gtid;
use mysql_async::binlog::events::Event;
use mysql_async::prelude::Queryable;
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The primary to archive from. Its account needs only REPLICATION SLAVE.
#[derive(Clone, PartialEq, Eq)]
pub struct Source {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// With TLS, the CA file the source is verified by.
    pub ca: Option<std::path::PathBuf>,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Source({}@{}:{})", self.user, self.host, self.port)
    }
}

impl Source {
    pub fn addr(&self) -> SourceAddr {
        SourceAddr {
            host: self.host.clone(),
            port: self.port,
        }
    }
}

/// A source without its credentials, for status and events.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceAddr {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for SourceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// A GTID, serializable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GtidRecord {
    pub domain: u32,
    pub server: u32,
    pub seq: u64,
}

impl From<Gtid> for GtidRecord {
    fn from(g: Gtid) -> Self {
        Self {
            domain: g.domain,
            server: g.server,
            seq: g.seq,
        }
    }
}

impl fmt::Display for GtidRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.seq)
    }
}

/// Where a dump connection asked the server to start.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "from")]
pub enum StartFrom {
    /// Right after the archived GTIDs (the normal case).
    Archived { position: Vec<GtidRecord> },
    /// The start of the server's oldest binlog (a file/position dump from the first file),
    /// dropping what is archived already.
    OldestBinlog,
    /// The server's current binlog position.
    Current { position: Vec<GtidRecord> },
}

/// A hole or fork in the archive's history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum GapKind {
    /// The next transaction of the domain was not the archived seq_no + 1.
    Jump {
        expected_seq: u64,
        after: GtidRecord,
        received: GtidRecord,
    },
    /// The server refused the start position with error 1236 (not in its binlogs).
    NotInSource {
        requested: StartFrom,
        code: u16,
        message: String,
    },
    /// The server's history is not the archive's: connected by GTID, it sent a transaction at
    /// or below the archived seq_no of its domain; or, read from its oldest binlog, its
    /// transaction at the archived seq_no came from another server (e.g. a new primary that
    /// lacked the last archived transactions and wrote its own under the same seq_nos). The
    /// archive keeps its own history: such transactions are dropped.
    Duplicate {
        archived: GtidRecord,
        received: GtidRecord,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Gap {
    pub source: SourceAddr,
    /// Unix milliseconds when the archiver saw it.
    pub at_unix_ms: u64,
    #[serde(flatten)]
    pub kind: GapKind,
}

/// What `myset status` shows of the archiver.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArchiveStatus {
    /// The last archived GTID of each domain.
    pub position: Vec<GtidRecord>,
    /// Timestamp (unix seconds) of the last archived event.
    pub last_event_time: Option<u32>,
    /// When the last segment was uploaded (unix milliseconds).
    pub last_upload_unix_ms: Option<u64>,
    /// The source streamed from right now (`None`: not connected).
    pub connected: Option<SourceAddr>,
    pub segments_uploaded: u64,
    pub bytes_uploaded: u64,
    /// Every gap seen since the archiver started.
    pub gaps: Vec<Gap>,
    /// The last error, on one line. The next upload clears it; so does the next stream that
    /// opens, when the error was the source's.
    pub last_error: Option<String>,
    /// Which side `last_error` came from.
    #[serde(default)]
    pub last_error_side: Option<ErrorSide>,
}

/// Where an archiver error came from: a working connection proves the source is back, but
/// only an upload proves the store is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorSide {
    Source,
    Store,
}

impl ArchiveStatus {
    fn note_error(&mut self, side: ErrorSide, error: String) {
        self.last_error = Some(error);
        self.last_error_side = Some(side);
    }

    /// A stream from `source` opened: a source's error is over.
    fn connected_to(&mut self, source: SourceAddr) {
        self.connected = Some(source);
        if self.last_error_side == Some(ErrorSide::Source) {
            self.clear_error();
        }
    }

    fn clear_error(&mut self) {
        self.last_error = None;
        self.last_error_side = None;
    }
}

/// What the archiver reports as it happens.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum ArchiveEvent {
    /// Streaming from `source` started.
    Started {
        source: SourceAddr,
        from: StartFrom,
    },
    Gap(Gap),
    /// The stream from `source` broke; the archiver reconnects after a short backoff.
    SourceLost {
        source: SourceAddr,
        error: String,
    },
    /// A segment upload or store listing failed; the archiver retries from the store's state.
    StoreFailed {
        error: String,
    },
    /// `stop` was cancelled and the pending segment uploaded (or not: `error`).
    Stopped {
        error: Option<String>,
    },
}

/// Timings, defaults for production; tests shorten them.
#[derive(Debug, Clone)]
pub struct Timings {
    /// A segment is uploaded when its oldest transaction has waited this long.
    pub flush_after: Duration,
    /// The server sends a heartbeat after this much silence; four missed ones (2 s at least)
    /// end the session.
    pub heartbeat: Duration,
    pub connect_timeout: Duration,
    /// The wait before reconnecting after an error.
    pub backoff: Duration,
    pub max_segment_bytes: usize,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            flush_after: Duration::from_millis(200),
            heartbeat: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(5),
            backoff: Duration::from_secs(1),
            max_segment_bytes: segment::MAX_SEGMENT_BYTES,
        }
    }
}

pub struct Archiver {
    store: Store,
    dump_server_id: u32,
    timings: Timings,
    status: watch::Sender<ArchiveStatus>,
}

/// MariaDB's ER_MASTER_FATAL_ERROR_READING_BINLOG: the dump cannot start or go on.
const ER_MASTER_FATAL_ERROR_READING_BINLOG: u16 = 1236;

/// How one dump session ended.
enum Ended {
    Stopped,
    SourceChanged,
    /// The server refused the start position (1236).
    NotInSource {
        code: u16,
        message: String,
    },
    SourceFailed(String),
    StoreFailed(String),
}

impl Archiver {
    /// `dump_server_id`: the server_id the archiver registers with; it must differ from every
    /// member's (members use small ordinal-based ids), or the server drops the other dump.
    pub fn new(store: Store, dump_server_id: u32) -> Self {
        Self {
            store,
            dump_server_id,
            timings: Timings::default(),
            status: watch::Sender::new(ArchiveStatus::default()),
        }
    }

    pub fn with_timings(mut self, timings: Timings) -> Self {
        self.timings = timings;
        self
    }

    pub fn status(&self) -> watch::Receiver<ArchiveStatus> {
        self.status.subscribe()
    }

    /// Runs until `stop` is cancelled, following `source` (`None`: no primary right now).
    pub async fn run(
        self,
        mut source: watch::Receiver<Option<Source>>,
        stop: CancellationToken,
        events: mpsc::Sender<ArchiveEvent>,
    ) {
        let emit = |e: ArchiveEvent| {
            if let Err(e) = events.try_send(e) {
                tracing::warn!("archive event not delivered (the status keeps it): {e}");
            }
        };
        // After a 1236 the next connection to the same source starts elsewhere.
        let mut fallback: Option<(SourceAddr, StartFrom)> = None;
        loop {
            if stop.is_cancelled() {
                break;
            }
            let current = source.borrow_and_update().clone();
            let Some(current) = current else {
                self.status.send_modify(|s| s.connected = None);
                tokio::select! {
                    _ = stop.cancelled() => break,
                    changed = source.changed() => if changed.is_err() { stop.cancelled().await; break },
                }
                continue;
            };
            let position = match self.archived_position().await {
                Ok(p) => p,
                Err(e) => {
                    let error = one_line(&e);
                    self.status
                        .send_modify(|s| s.note_error(ErrorSide::Store, error.clone()));
                    emit(ArchiveEvent::StoreFailed { error });
                    if self.backoff(&mut source, &stop).await {
                        break;
                    }
                    continue;
                }
            };
            self.status.send_modify(|s| {
                s.position = position.values().map(|g| (*g).into()).collect();
            });
            let start = match fallback.take() {
                Some((addr, start)) if addr == current.addr() => start,
                // Nothing archived yet: everything the server still has.
                _ if position.is_empty() => StartFrom::OldestBinlog,
                _ => StartFrom::Archived {
                    position: position.values().map(|g| (*g).into()).collect(),
                },
            };
            let ended = self
                .follow(&current, position, start.clone(), &mut source, &stop, &emit)
                .await;
            self.status.send_modify(|s| s.connected = None);
            match ended {
                Ended::Stopped => break,
                Ended::SourceChanged => continue,
                Ended::NotInSource { code, message } => {
                    let gap = Gap {
                        source: current.addr(),
                        at_unix_ms: now_unix_ms(),
                        kind: GapKind::NotInSource {
                            requested: start.clone(),
                            code,
                            message: message.clone(),
                        },
                    };
                    self.status.send_modify(|s| {
                        s.note_error(
                            ErrorSide::Source,
                            format!("{} refused the start position: {message}", current.addr()),
                        )
                    });
                    self.record_gap(gap, &emit);
                    let next = match start {
                        StartFrom::Archived { .. } => Some(StartFrom::OldestBinlog),
                        StartFrom::OldestBinlog => match self.current_position(&current).await {
                            Ok(position) => Some(StartFrom::Current { position }),
                            Err(e) => {
                                tracing::warn!("cannot read the source's binlog position: {e}");
                                None
                            }
                        },
                        StartFrom::Current { .. } => None,
                    };
                    fallback = next.map(|n| (current.addr(), n));
                    if self.backoff(&mut source, &stop).await {
                        break;
                    }
                }
                Ended::SourceFailed(error) => {
                    tracing::warn!(source = %current.addr(), "archive stream lost: {error}");
                    self.status
                        .send_modify(|s| s.note_error(ErrorSide::Source, error.clone()));
                    emit(ArchiveEvent::SourceLost {
                        source: current.addr(),
                        error,
                    });
                    if self.backoff(&mut source, &stop).await {
                        break;
                    }
                }
                Ended::StoreFailed(error) => {
                    tracing::warn!("archive upload failed: {error}");
                    self.status
                        .send_modify(|s| s.note_error(ErrorSide::Store, error.clone()));
                    emit(ArchiveEvent::StoreFailed { error });
                    if self.backoff(&mut source, &stop).await {
                        break;
                    }
                }
            }
        }
        self.status.send_modify(|s| s.connected = None);
        emit(ArchiveEvent::Stopped {
            error: self.status.borrow().last_error.clone(),
        });
    }

    /// Waits the backoff; returns whether `stop` was cancelled. A new source ends it early.
    async fn backoff(
        &self,
        source: &mut watch::Receiver<Option<Source>>,
        stop: &CancellationToken,
    ) -> bool {
        tokio::select! {
            _ = stop.cancelled() => true,
            _ = tokio::time::sleep(self.timings.backoff) => false,
            _ = source.changed() => false,
        }
    }

    /// The last archived GTID of each domain, from the store's listing.
    async fn archived_position(&self) -> anyhow::Result<BTreeMap<u32, Gtid>> {
        let keys = segment::list_keys(&self.store).await?;
        Ok(segment::archived_position(&keys))
    }

    async fn connect(&self, source: &Source) -> Result<mysql_async::Conn, String> {
        let opts = myset_mariadb::client::tcp_opts(
            &source.host,
            source.port,
            &source.user,
            &source.password,
            source.ca.as_deref(),
        );
        match tokio::time::timeout(self.timings.connect_timeout, mysql_async::Conn::new(opts)).await
        {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(format!(
                "cannot connect to {}: {}",
                source.addr(),
                one_line(&e)
            )),
            Err(_) => Err(format!(
                "cannot connect to {}: no answer in {:?}",
                source.addr(),
                self.timings.connect_timeout
            )),
        }
    }

    /// The server's `@@gtid_binlog_pos` (readable without privileges).
    async fn current_position(&self, source: &Source) -> Result<Vec<GtidRecord>, String> {
        let mut conn = self.connect(source).await?;
        let text: Option<String> = tokio::time::timeout(
            self.timings.connect_timeout,
            conn.query_first("SELECT @@global.gtid_binlog_pos"),
        )
        .await
        .map_err(|_| format!("{} did not answer", source.addr()))?
        .map_err(|e| one_line(&e))?;
        let _ = conn.disconnect().await;
        let pos = myset_core::gtid::GtidPos::parse(text.as_deref().unwrap_or(""))
            .map_err(|e| e.to_string())?;
        Ok(pos.iter().map(|g| (*g).into()).collect())
    }

    /// Connects to `source` as a MariaDB replica and starts the binlog dump at `start`.
    async fn open_stream(
        &self,
        source: &Source,
        start: &StartFrom,
    ) -> Result<mysql_async::BinlogStream, Ended> {
        let addr = source.addr();
        let connect_state = match start {
            StartFrom::Archived { position } | StartFrom::Current { position } => Some(
                position
                    .iter()
                    .map(|g| g.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            // Not a GTID connection: COM_BINLOG_DUMP with an empty file name starts at the
            // first binlog the server has. (An empty `@slave_connect_state` is refused with
            // 1236 once binlogs holding the domain's earlier transactions are purged.)
            StartFrom::OldestBinlog => None,
        };
        let mut conn = self.connect(source).await.map_err(Ended::SourceFailed)?;
        // A MariaDB GTID replica's session. mysql_async's get_binlog_stream then runs
        // `SET @master_binlog_checksum='ALL'`, overriding ours. MariaDB only checks that the
        // variable exists (the replica understands checksums) and sends the binlog's events
        // with their CRC32s as written; 'ALL' is no algorithm name, which MariaDB 10.11 turns
        // into "checksum what you make up" (fake Rotate and Gtid_list, heartbeats, and the
        // Format_description it rewrites, whose CRC it recomputes). None of it changes a
        // transaction's bytes; made-up events are skipped.
        let mut setup = vec![
            "SET @mariadb_slave_capability=4".to_string(),
            "SET @master_binlog_checksum=@@global.binlog_checksum".to_string(),
            format!(
                "SET @master_heartbeat_period={}",
                self.timings.heartbeat.as_nanos()
            ),
        ];
        if let Some(state) = &connect_state {
            setup.push(format!("SET @slave_connect_state='{state}'"));
        }
        for sql in &setup {
            let done =
                tokio::time::timeout(self.timings.connect_timeout, conn.query_drop(sql)).await;
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return Err(Ended::SourceFailed(format!(
                        "{addr}: {sql}: {}",
                        one_line(&e)
                    )))
                }
                Err(_) => return Err(Ended::SourceFailed(format!("{addr}: {sql}: no answer"))),
            }
        }
        let request = mysql_async::BinlogStreamRequest::new(self.dump_server_id);
        match tokio::time::timeout(
            self.timings.connect_timeout,
            conn.get_binlog_stream(request),
        )
        .await
        {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(classify(&addr, e)),
            Err(_) => Err(Ended::SourceFailed(format!(
                "{addr}: the binlog dump did not start"
            ))),
        }
    }

    /// One dump session: stream from `source` and upload segments until the stream ends, the
    /// source changes or `stop` is cancelled. Complete transactions received are uploaded
    /// before it returns; an unfinished one is dropped (the next session receives it again).
    async fn follow(
        &self,
        source: &Source,
        position: BTreeMap<u32, Gtid>,
        start: StartFrom,
        watch_source: &mut watch::Receiver<Option<Source>>,
        stop: &CancellationToken,
        emit: &impl Fn(ArchiveEvent),
    ) -> Ended {
        let addr = source.addr();
        let opened = tokio::select! {
            opened = self.open_stream(source, &start) => opened,
            _ = stop.cancelled() => return Ended::Stopped,
            _ = source_changed(watch_source, source) => return Ended::SourceChanged,
        };
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(ended) => return ended,
        };
        tracing::info!(source = %addr, ?start, "archiving binlog events");
        emit(ArchiveEvent::Started {
            source: addr.clone(),
            from: start.clone(),
        });
        self.status.send_modify(|s| s.connected_to(addr.clone()));

        let mut builder =
            SegmentBuilder::new(position).with_max_bytes(self.timings.max_segment_bytes);
        let mut flush_at: Option<Instant> = None;
        let mut reported_duplicate = false;
        // Heartbeats arrive after `heartbeat` of silence; four missed ones end the session.
        let silence = (self.timings.heartbeat * 4).max(Duration::from_secs(2));
        let ended = loop {
            let flush = async {
                match flush_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => break Ended::Stopped,
                _ = source_changed(watch_source, source) => break Ended::SourceChanged,
                _ = flush => {
                    flush_at = None;
                    if let Some(sealed) = builder.take() {
                        if let Err(e) = self.upload(sealed).await {
                            break Ended::StoreFailed(e);
                        }
                    }
                }
                next = tokio::time::timeout(silence, stream.next()) => {
                    let event = match next {
                        Err(_) => break Ended::SourceFailed(format!("{addr}: no event or heartbeat in {silence:?}")),
                        Ok(None) => break Ended::SourceFailed(format!("{addr} ended the binlog stream")),
                        Ok(Some(Err(e))) => break classify(&addr, e),
                        Ok(Some(Ok(event))) => event,
                    };
                    let raw = match raw_event(&event) {
                        Ok(raw) => raw,
                        Err(e) => break Ended::SourceFailed(format!("{addr}: {e}")),
                    };
                    let pushed = match builder.push(&raw) {
                        Ok(p) => p,
                        Err(e) => break Ended::SourceFailed(format!("{addr}: {e}")),
                    };
                    if let Some(jump) = pushed.jump {
                        self.gap(&addr, GapKind::Jump {
                            expected_seq: jump.after.seq + 1,
                            after: jump.after.into(),
                            received: jump.received.into(),
                        }, emit);
                    }
                    if let Some(dup) = pushed.duplicate {
                        let archived = builder.position()[&dup.domain];
                        // Connected by GTID, the server should send nothing archived; from its
                        // oldest binlog it re-sends what is archived, which must be the same
                        // history: the archived last GTID itself, not another server's.
                        let fork = match start {
                            StartFrom::Archived { .. } => !reported_duplicate,
                            _ => dup.seq == archived.seq && dup.server != archived.server,
                        };
                        if fork {
                            reported_duplicate = true;
                            self.gap(
                                &addr,
                                GapKind::Duplicate {
                                    archived: archived.into(),
                                    received: dup.into(),
                                },
                                emit,
                            );
                        }
                    }
                    let mut failed = None;
                    for sealed in pushed.sealed {
                        if let Err(e) = self.upload(sealed).await {
                            failed = Some(e);
                            break;
                        }
                    }
                    if let Some(e) = failed {
                        break Ended::StoreFailed(e);
                    }
                    if builder.has_pending() {
                        flush_at.get_or_insert_with(|| Instant::now() + self.timings.flush_after);
                    } else {
                        flush_at = None;
                    }
                }
            }
        };
        drop(stream);
        // Whatever ended the session, the complete transactions received are archived.
        match (builder.take(), ended) {
            (_, e @ Ended::StoreFailed(_)) => e,
            (Some(sealed), ended) => match self.upload(sealed).await {
                Ok(()) => ended,
                Err(e) => Ended::StoreFailed(e),
            },
            (None, ended) => ended,
        }
    }

    fn gap(&self, source: &SourceAddr, kind: GapKind, emit: &impl Fn(ArchiveEvent)) {
        let gap = Gap {
            source: source.clone(),
            at_unix_ms: now_unix_ms(),
            kind,
        };
        self.record_gap(gap, emit);
    }

    /// Keeps and reports a gap, unless the same one is already kept (the same refusal on every
    /// reconnect, the same jump seen again after a session broke mid-transaction).
    fn record_gap(&self, gap: Gap, emit: &impl Fn(ArchiveEvent)) {
        let new = self.status.send_if_modified(|s| {
            let repeat = s
                .gaps
                .iter()
                .any(|g| g.source == gap.source && g.kind == gap.kind);
            if !repeat {
                s.gaps.push(gap.clone());
            }
            !repeat
        });
        if new {
            tracing::warn!(source = %gap.source, gap = ?gap.kind, "archive gap");
            emit(ArchiveEvent::Gap(gap));
        }
    }

    async fn upload(&self, sealed: Sealed) -> Result<(), String> {
        // Hashing up to MAX_SEGMENT_BYTES is CPU work: off the async threads.
        let (key, sealed) = tokio::task::spawn_blocking(move || (sealed.key(), sealed))
            .await
            .map_err(|e| format!("hashing a segment failed: {e}"))?;
        let size = sealed.bytes.len() as u64;
        self.store
            .put(&key.to_key(), bytes::Bytes::from(sealed.bytes))
            .await
            .map_err(|e| one_line(&e))?;
        tracing::debug!(key = %key, "archived segment");
        self.status.send_modify(|s| {
            match s.position.iter_mut().find(|g| g.domain == key.domain) {
                Some(g) => *g = key.last_gtid().into(),
                None => {
                    s.position.push(key.last_gtid().into());
                    s.position.sort_by_key(|g| g.domain);
                }
            }
            s.last_event_time = Some(key.last_time);
            s.last_upload_unix_ms = Some(now_unix_ms());
            s.segments_uploaded += 1;
            s.bytes_uploaded += size;
            s.clear_error();
        });
        Ok(())
    }
}

/// Returns once `watch` holds something other than `source` (or its sender is gone).
async fn source_changed(watch: &mut watch::Receiver<Option<Source>>, source: &Source) {
    loop {
        if watch.changed().await.is_err() || watch.borrow().as_ref() != Some(source) {
            return;
        }
    }
}

fn classify(addr: &SourceAddr, e: mysql_async::Error) -> Ended {
    match e {
        mysql_async::Error::Server(s) if s.code == ER_MASTER_FATAL_ERROR_READING_BINLOG => {
            Ended::NotInSource {
                code: s.code,
                message: s.message.split_whitespace().collect::<Vec<_>>().join(" "),
            }
        }
        e => Ended::SourceFailed(format!("{addr}: {}", one_line(&e))),
    }
}

/// The event's bytes exactly as the server sent them. mysql_common splits an event into its
/// header, body, (for a Format_description) checksum algorithm, and CRC; this puts them back.
/// [`SegmentBuilder::push`] checks the size against the header and the CRC against the bytes.
fn raw_event(event: &Event) -> Result<Vec<u8>, String> {
    let h = event.header();
    let mut raw = Vec::with_capacity(h.event_size() as usize);
    raw.extend_from_slice(&h.timestamp().to_le_bytes());
    raw.push(h.event_type_raw());
    raw.extend_from_slice(&h.server_id().to_le_bytes());
    raw.extend_from_slice(&h.event_size().to_le_bytes());
    raw.extend_from_slice(&h.log_pos().to_le_bytes());
    raw.extend_from_slice(&h.flags_raw().to_le_bytes());
    raw.extend_from_slice(event.data());
    if h.event_type_raw() == segment::event_type::FORMAT_DESCRIPTION {
        match event.footer().get_checksum_alg() {
            Ok(Some(alg)) => raw.push(alg as u8),
            Ok(None) => {}
            Err(e) => return Err(format!("a Format_description event names {e}")),
        }
    }
    if let Some(crc) = event.checksum() {
        raw.extend_from_slice(&crc);
    }
    Ok(raw)
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn one_line(e: &dyn fmt::Display) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> SourceAddr {
        SourceAddr {
            host: "127.0.0.1".into(),
            port: 3306,
        }
    }

    #[test]
    fn a_stream_that_opens_ends_a_source_error_but_not_a_store_error() {
        let mut status = ArchiveStatus::default();
        status.note_error(ErrorSide::Source, "cannot connect to 127.0.0.1:3306".into());
        status.connected_to(source());
        assert_eq!(status.last_error, None);
        assert_eq!(status.connected, Some(source()));

        // A store that failed is still failing for all a connection can tell.
        status.note_error(ErrorSide::Store, "upload refused".into());
        status.connected_to(source());
        assert_eq!(status.last_error.as_deref(), Some("upload refused"));
        status.clear_error();
        assert_eq!((status.last_error, status.last_error_side), (None, None));
    }
}
