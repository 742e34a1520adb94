//! Liveness and readiness, each bounded by the probe timeout so a hung server fails the probe
//! instead of blocking it.

use crate::role::admin;
use crate::state::Shared;
use myset_api::{GtidPositions, Phase, ReplicationStatus, Role};
use std::time::Duration;

/// A probe never takes longer than this.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(900);

#[derive(Debug, Clone, Default)]
pub struct Probe {
    pub live: bool,
    pub ready: bool,
    pub reason: Option<String>,
    pub gtid: Option<GtidPositions>,
    pub replication: Option<ReplicationStatus>,
    pub read_only: Option<bool>,
    pub primary_silent_ms: Option<u64>,
    pub semisync: Option<bool>,
    /// On a primary: replicas connected as semi-sync acknowledgers.
    pub semisync_clients: Option<u32>,
    /// On a primary: since when (ms since the Unix epoch) commits have been waiting for an
    /// acknowledgement, as seen by successive probes; None while none waits.
    pub commits_waiting_since_ms: Option<u64>,
}

pub async fn evaluate(shared: &Shared) -> Probe {
    let phase = shared.server().phase;
    if phase != Phase::Running {
        return Probe {
            reason: Some(format!("mariadbd is not running ({phase})")),
            ..Probe::default()
        };
    }
    match tokio::time::timeout(PROBE_TIMEOUT, query(shared)).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => Probe {
            reason: Some(format!("server does not answer: {e:#}")),
            ..Probe::default()
        },
        Err(_) => Probe {
            reason: Some(format!("server did not answer within {PROBE_TIMEOUT:?}")),
            ..Probe::default()
        },
    }
}

async fn query(shared: &Shared) -> anyhow::Result<Probe> {
    let spec = shared.spec();
    let mut c = admin(shared).await?;
    c.ping().await?;
    let (gtid, read_only) = c.positions().await?;
    let replication = c.replication().await?;
    let semisync = c.semisync().await?;
    c.disconnect().await;
    let primary_silent_ms = replication.as_ref().and_then(|r| shared.primary_silence(r));
    let primary = spec.role == Role::Primary;
    let commits_waiting_since_ms = shared.commits_waiting(primary && semisync.waiting_sessions > 0);
    let verdict = myset_core::readiness(
        spec.role,
        replication.as_ref(),
        primary_silent_ms,
        spec.max_staleness_seconds,
    );
    Ok(Probe {
        live: true,
        ready: verdict.is_ok(),
        reason: verdict.err(),
        gtid: Some(gtid),
        replication,
        read_only: Some(read_only),
        primary_silent_ms,
        semisync: Some(semisync.enabled),
        semisync_clients: primary.then_some(semisync.clients),
        commits_waiting_since_ms,
    })
}

/// How often a replica samples its primary's stream, so the silence it reports is accurate to
/// this much rather than to the controller's probe period.
const STREAM_SAMPLE_PERIOD: Duration = Duration::from_millis(250);

/// On a running replica, keeps the "last heard from the primary" clock current.
pub async fn sample_primary_stream(shared: std::sync::Arc<Shared>) {
    let mut tick = tokio::time::interval(STREAM_SAMPLE_PERIOD);
    let mut conn = None;
    loop {
        tick.tick().await;
        let replica = shared.spec().role == Role::Replica;
        if !replica {
            shared.forget_primary_stream();
        }
        if !replica || shared.server().phase != Phase::Running {
            conn = None;
            continue;
        }
        if conn.is_none() {
            conn = admin(&shared).await.ok();
        }
        let Some(c) = conn.as_mut() else { continue };
        match tokio::time::timeout(PROBE_TIMEOUT, c.replication()).await {
            Ok(Ok(Some(r))) => {
                shared.primary_silence(&r);
            }
            Ok(Ok(None)) => {}
            _ => conn = None,
        }
    }
}
