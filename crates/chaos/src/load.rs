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

pub const TABLE: &str = "chaos.writes";

fn opts(c: &Credentials, host: &str, port: u16) -> OptsBuilder {
    OptsBuilder::default()
        .ip_or_hostname(host)
        .tcp_port(port)
        .user(Some(c.user.clone()))
        .pass(Some(c.password.clone()))
        .prefer_socket(false)
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

pub struct Load {
    acked: Arc<Mutex<Vec<(u64, Instant)>>>,
    reads_ok: Arc<AtomicU64>,
    reads_failed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(c: Credentials, rw_port: u16, ro_port: u16) -> Self {
        let load = Load {
            acked: Arc::default(),
            reads_ok: Arc::default(),
            reads_failed: Arc::default(),
            stop: Arc::default(),
            tasks: Vec::new(),
        };
        let mut tasks = vec![tokio::spawn(write(
            c.clone(),
            rw_port,
            load.acked.clone(),
            load.stop.clone(),
        ))];
        for _ in 0..2 {
            tasks.push(tokio::spawn(read(
                c.clone(),
                ro_port,
                load.reads_ok.clone(),
                load.reads_failed.clone(),
                load.stop.clone(),
            )));
        }
        Load { tasks, ..load }
    }

    pub fn acked_count(&self) -> usize {
        self.acked.lock().expect("acked lock").len()
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

    /// Stops the load; returns the acknowledged ids and the read counts.
    pub async fn stop(self) -> (Vec<u64>, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let acked = self
            .acked
            .lock()
            .expect("acked lock")
            .iter()
            .map(|(id, _)| *id)
            .collect();
        (
            acked,
            self.reads_ok.load(Ordering::Relaxed),
            self.reads_failed.load(Ordering::Relaxed),
        )
    }
}

/// Writes ids 1, 2, 3, … through rw; an id is recorded only once its INSERT returned OK. An
/// id whose outcome is unknown (error or timeout) is skipped, never retried.
async fn write(
    c: Credentials,
    port: u16,
    acked: Arc<Mutex<Vec<(u64, Instant)>>>,
    stop: Arc<AtomicBool>,
) {
    let mut conn: Option<Conn> = None;
    let mut next_id = 1u64;
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
        let id = next_id;
        next_id += 1;
        let statement = format!("INSERT INTO {TABLE} (id, server_id) VALUES ({id}, @@server_id)");
        let c = conn.as_mut().expect("connected above");
        match tokio::time::timeout(STATEMENT_TIMEOUT, c.query_drop(statement)).await {
            Ok(Ok(())) => acked.lock().expect("acked lock").push((id, Instant::now())),
            _ => conn = None,
        }
    }
}

async fn read(
    c: Credentials,
    port: u16,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let result = async {
            let mut conn = connect(&c, port).await?;
            let n: Option<u64> = tokio::time::timeout(
                STATEMENT_TIMEOUT,
                conn.query_first(format!("SELECT COUNT(*) FROM {TABLE}")),
            )
            .await??;
            let _ = conn.disconnect().await;
            anyhow::Ok(n)
        }
        .await;
        match result {
            Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => failed.fetch_add(1, Ordering::Relaxed),
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
