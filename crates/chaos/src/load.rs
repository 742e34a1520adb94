//! The workload: one writer recording every acknowledged write, and readers through ro.

use crate::cluster::Credentials;
use anyhow::bail;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const HOST: &str = "127.0.0.1";
/// A statement through an endpoint may take this long before the writer gives up on it.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A reader's pause after a successful read, and after a failed one.
const READ_PAUSE: Duration = Duration::from_millis(50);
const READ_RETRY_PAUSE: Duration = Duration::from_millis(100);

pub const TABLE: &str = "chaos.writes";

fn opts(c: &Credentials, host: &str, port: u16) -> OptsBuilder {
    myset_mariadb::client::tcp_opts(host, port, &c.user, &c.password, c.ca.as_deref())
}

/// Connects to an endpoint of the cluster (rw or ro, on loopback).
pub async fn connect(c: &Credentials, port: u16) -> anyhow::Result<Conn> {
    connect_to(c, HOST, port).await
}

pub async fn connect_to(c: &Credentials, host: &str, port: u16) -> anyhow::Result<Conn> {
    match tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(opts(c, host, port))).await {
        Ok(conn) => Ok(conn?),
        Err(_) => bail!("connecting to {host}:{port} timed out"),
    }
}

/// Creates the table every acknowledged write goes to. Each row records the server that
/// accepted it, which the checker uses to detect two primaries taking writes at once.
pub async fn prepare(c: &Credentials, rw_port: u16) -> anyhow::Result<()> {
    let mut conn = connect(c, rw_port).await?;
    conn.query_drop(
        "CREATE DATABASE IF NOT EXISTS chaos; \
         CREATE TABLE IF NOT EXISTS chaos.writes (id BIGINT PRIMARY KEY, server_id INT NOT NULL)",
    )
    .await?;
    conn.disconnect().await?;
    Ok(())
}

/// One read through ro, for the checker.
#[derive(Debug, Clone)]
struct Read {
    started: Instant,
    /// Seconds since the Unix epoch, as in the cluster's events, to line a failure up with them.
    started_unix: f64,
    outcome: ReadOutcome,
}

#[derive(Debug, Clone)]
enum ReadOutcome {
    /// The read answered; `staleness` is how far behind it was at least: it lacked a write
    /// acknowledged that long before the read started (zero when it lacked none).
    Ok {
        staleness: Duration,
    },
    Failed {
        error: String,
    },
    /// Failed while the harness had stopped the cluster on purpose (`myset down`).
    FailedWhileStopped,
}

/// What the reads through ro saw over a period.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReadStats {
    pub ok: u64,
    pub failed: u64,
    /// Failures while the harness had stopped the cluster on purpose: not an outage.
    pub failed_while_stopped: u64,
    /// The largest staleness a successful read showed (a lower bound, see [`ReadOutcome`]).
    pub max_staleness: Duration,
    /// Successful reads staler than the limit given to [`Load::reads_between`].
    pub stale: u64,
}

impl ReadStats {
    /// Successful reads over reads that counted (failures while stopped on purpose do not).
    pub fn success_ratio(&self) -> Option<f64> {
        let total = self.ok + self.failed;
        (total > 0).then(|| self.ok as f64 / total as f64)
    }
}

pub struct Load {
    credentials: Credentials,
    /// The next write's id, shared by the writer through rw and the harness's own writes.
    next_id: Arc<AtomicU64>,
    acked: Acked,
    reads: Arc<Mutex<Vec<Read>>>,
    stopped_on_purpose: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Acknowledged write ids with when they were acknowledged, in acknowledgement order.
type Acked = Arc<Mutex<Vec<(u64, Instant)>>>;

/// While alive, failed reads count as failures during a deliberate stop of the cluster.
pub struct StoppedOnPurpose(Arc<AtomicBool>);

impl Drop for StoppedOnPurpose {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

impl Load {
    pub fn start(c: Credentials, rw_port: u16, ro_port: u16) -> Self {
        let load = Load {
            credentials: c.clone(),
            next_id: Arc::new(AtomicU64::new(1)),
            acked: Arc::default(),
            reads: Arc::default(),
            stopped_on_purpose: Arc::default(),
            stop: Arc::default(),
            tasks: Vec::new(),
        };
        let mut tasks = vec![tokio::spawn(write(
            c.clone(),
            rw_port,
            load.next_id.clone(),
            load.acked.clone(),
            load.stop.clone(),
        ))];
        for _ in 0..2 {
            tasks.push(tokio::spawn(read(
                c.clone(),
                ro_port,
                load.acked.clone(),
                load.reads.clone(),
                load.stopped_on_purpose.clone(),
                load.stop.clone(),
            )));
        }
        Load { tasks, ..load }
    }

    pub fn acked_count(&self) -> usize {
        self.acked.lock().expect("acked lock").len()
    }

    /// Writes the next id to one of `servers` directly (not through rw), trying them in turn
    /// with a new id each time until one is acknowledged or `limit` passes; the acknowledged
    /// id counts like the writer's.
    pub async fn write_directly(
        &self,
        servers: &[(&str, u16)],
        limit: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        let mut last_error = None;
        for &(host, port) in servers.iter().cycle() {
            if Instant::now() >= deadline {
                break;
            }
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let attempt = async {
                let mut conn = connect_to(&self.credentials, host, port).await?;
                let result = insert(&mut conn, id).await;
                let _ = conn.disconnect().await;
                result
            };
            match attempt.await {
                Ok(()) => {
                    self.acked
                        .lock()
                        .expect("acked lock")
                        .push((id, Instant::now()));
                    return Ok(());
                }
                Err(e) => last_error = Some(e.context(format!("{host}:{port}"))),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        match last_error {
            Some(e) => Err(e.context("no direct write acknowledged")),
            None => bail!("no server to write to"),
        }
    }

    /// Marks the cluster as stopped on purpose until the returned guard is dropped.
    pub fn stopped_on_purpose(&self) -> StoppedOnPurpose {
        self.stopped_on_purpose.store(true, Ordering::Relaxed);
        StoppedOnPurpose(self.stopped_on_purpose.clone())
    }

    pub async fn wait_for_acks(&self, count: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while self.acked_count() < count {
            if Instant::now() > deadline {
                bail!(
                    "only {} of {count} writes acknowledged within {}s",
                    self.acked_count(),
                    timeout.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// The write gap of a fault injected at `from` and healed at `until`: the longest time
    /// between two consecutive acknowledged writes, counting from the last one before `from`.
    pub fn gap_between(&self, from: Instant, until: Instant) -> Duration {
        let acked = self.acked.lock().expect("acked lock");
        let start = acked.iter().rposition(|(_, t)| *t <= from).unwrap_or(0);
        acked[start..]
            .iter()
            .map(|(_, t)| *t)
            .take_while(|t| *t <= until)
            .collect::<Vec<_>>()
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default()
    }

    /// The reads started from `from` to `until`; a successful read staler than `limit`
    /// counts as stale.
    pub fn reads_between(&self, from: Instant, until: Instant, limit: Duration) -> ReadStats {
        let reads = self.reads.lock().expect("reads lock");
        let mut stats = ReadStats::default();
        for r in reads
            .iter()
            .filter(|r| r.started >= from && r.started <= until)
        {
            match r.outcome {
                ReadOutcome::Ok { staleness } => {
                    stats.ok += 1;
                    stats.max_staleness = stats.max_staleness.max(staleness);
                    stats.stale += u64::from(staleness > limit);
                }
                ReadOutcome::Failed { .. } => stats.failed += 1,
                ReadOutcome::FailedWhileStopped => stats.failed_while_stopped += 1,
            }
        }
        stats
    }

    /// One line per read that failed and counted (time since the Unix epoch, error), for the
    /// logs `myset chaos --keep-logs` keeps.
    pub fn failed_reads(&self) -> String {
        self.reads
            .lock()
            .expect("reads lock")
            .iter()
            .filter_map(|r| match &r.outcome {
                ReadOutcome::Failed { error } => Some(format!("{:.3} {error}\n", r.started_unix)),
                _ => None,
            })
            .collect()
    }

    /// Stops the load; returns the acknowledged ids.
    pub async fn stop(&mut self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        self.acked
            .lock()
            .expect("acked lock")
            .iter()
            .map(|(id, _)| *id)
            .collect()
    }
}

/// Inserts row `id`, recording the server that accepted it; an error or a timeout leaves the
/// outcome unknown.
async fn insert(conn: &mut Conn, id: u64) -> anyhow::Result<()> {
    let statement = format!("INSERT INTO {TABLE} (id, server_id) VALUES ({id}, @@server_id)");
    tokio::time::timeout(STATEMENT_TIMEOUT, conn.query_drop(statement)).await??;
    Ok(())
}

/// Writes ids 1, 2, 3, … through rw; an id is recorded only once its INSERT returned OK. An
/// id whose outcome is unknown (error or timeout) is skipped, never retried.
async fn write(
    c: Credentials,
    port: u16,
    next_id: Arc<AtomicU64>,
    acked: Acked,
    stop: Arc<AtomicBool>,
) {
    let mut conn: Option<Conn> = None;
    while !stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            match connect(&c, port).await {
                Ok(new) => conn = Some(new),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            }
        }
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        match insert(conn.as_mut().expect("connected above"), id).await {
            Ok(()) => acked.lock().expect("acked lock").push((id, Instant::now())),
            Err(_) => conn = None,
        }
    }
}

/// Reads `COUNT(*)` over a new connection through ro each time (so reads rotate over the
/// members), and records how stale each answer was at least.
async fn read(
    c: Credentials,
    port: u16,
    acked: Acked,
    reads: Arc<Mutex<Vec<Read>>>,
    stopped_on_purpose: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let started_unix = unix_now();
        let result = async {
            let mut conn = connect(&c, port).await?;
            let n: Option<u64> = tokio::time::timeout(
                STATEMENT_TIMEOUT,
                conn.query_first(format!("SELECT COUNT(*) FROM {TABLE}")),
            )
            .await??;
            let _ = conn.disconnect().await;
            anyhow::Ok(n.unwrap_or_default())
        }
        .await;
        let outcome = match result {
            Ok(count) => ReadOutcome::Ok {
                staleness: staleness(&acked, count, started),
            },
            Err(_) if stopped_on_purpose.load(Ordering::Relaxed) => ReadOutcome::FailedWhileStopped,
            Err(e) => ReadOutcome::Failed {
                error: format!("{e:#}"),
            },
        };
        let pause = match outcome {
            ReadOutcome::Ok { .. } => READ_PAUSE,
            _ => READ_RETRY_PAUSE,
        };
        reads.lock().expect("reads lock").push(Read {
            started,
            started_unix,
            outcome,
        });
        // Pace like an ordinary client; after a failure it waits a little longer before
        // retrying, so one outage counts as a few failed reads, not thousands of instant ones.
        tokio::time::sleep(pause).await;
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// How stale a read that counted `count` rows at `started` was at least. Rows only grow, and
/// ids are acknowledged in order: a count of n means that among the first n+1 acknowledged
/// writes at least one was missing, so the read lacked a write acknowledged no later than the
/// (n+1)-th one.
fn staleness(acked: &Acked, count: u64, started: Instant) -> Duration {
    let acked = acked.lock().expect("acked lock");
    usize::try_from(count)
        .ok()
        .and_then(|n| acked.get(n))
        .map(|(_, at)| started.saturating_duration_since(*at))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staleness_is_the_age_of_the_first_write_a_read_may_lack() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let acked: Acked = Arc::new(Mutex::new(vec![(1, at(0)), (2, at(5)), (3, at(9))]));
        // Counting 1 row at 20 s: the 2nd write (acknowledged at 5 s) may be missing: 15 s.
        assert_eq!(staleness(&acked, 1, at(20)), Duration::from_secs(15));
        assert_eq!(staleness(&acked, 0, at(20)), Duration::from_secs(20));
        // Every acknowledged write may be there (more rows: writes of unknown outcome).
        assert_eq!(staleness(&acked, 3, at(20)), Duration::ZERO);
        assert_eq!(staleness(&acked, 7, at(20)), Duration::ZERO);
        // Writes acknowledged after the read started do not count against it.
        assert_eq!(staleness(&acked, 2, at(8)), Duration::ZERO);
    }
}
