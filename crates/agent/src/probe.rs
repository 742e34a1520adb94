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
    /// Galera members: wsrep state, component, cluster size and seqno.
    pub galera: Option<myset_api::GaleraStatus>,
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
    if spec.galera.is_some() {
        let (gtid, read_only) = c.positions().await?;
        let galera = c.galera().await?;
        c.disconnect().await;
        let verdict = myset_core::galera::readiness(&galera);
        return Ok(Probe {
            live: true,
            ready: verdict.is_ok(),
            reason: verdict.err(),
            gtid: Some(gtid),
            read_only: Some(read_only),
            galera: Some(galera),
            ..Probe::default()
        });
    }
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
        galera: None,
    })
}

/// How long a clone may go without receiving a byte, or a wait for a donor without another
/// attempt, before the kubelet's liveness probe calls the agent stuck.
pub const CLONE_STALL_LIMIT: Duration = Duration::from_secs(300);
/// How long creating a data dir or preparing a received clone may take before the kubelet's
/// liveness probe calls the agent stuck. Neither reports progress while it runs, and the
/// prepare of a large clone replays all the redo written during the copy.
pub const STEP_LIMIT: Duration = Duration::from_secs(4 * 3600);

/// Liveness as the kubelet sees it (the probe port's `/healthz`): whether restarting the
/// container could help. A running server is live when it answers, as on the authenticated
/// API. Before the server runs, the agent is live while it makes progress on its data dir:
/// a clone receiving bytes, a bootstrap or a prepare that has not run absurdly long, a wait
/// for a donor between attempts. A starting or stopping server is not live: the agent
/// restarts a server that fails to start itself, and the kubelet steps in only when that has
/// not worked for as long as its probe allows.
///
/// `since_progress` is the time since the phase last changed kind or a clone last received
/// bytes. The controller keeps reading the server-only `live` of the status document: this
/// verdict is for the kubelet alone.
pub fn pod_live(phase: &Phase, server_live: bool, since_progress: Duration) -> bool {
    match phase {
        Phase::Running => server_live,
        Phase::Initializing | Phase::Preparing { .. } => since_progress < STEP_LIMIT,
        Phase::Cloning { .. } | Phase::Waiting { .. } => since_progress < CLONE_STALL_LIMIT,
        Phase::Starting | Phase::Stopping => false,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_server_is_live_when_it_answers() {
        assert!(pod_live(&Phase::Running, true, Duration::ZERO));
        assert!(!pod_live(&Phase::Running, false, Duration::ZERO));
    }

    #[test]
    fn a_clone_is_live_while_bytes_arrive_and_stuck_when_they_stop() {
        let cloning = Phase::Cloning {
            donor: 0,
            bytes: 1 << 30,
        };
        assert!(pod_live(&cloning, false, Duration::from_secs(1)));
        assert!(pod_live(
            &cloning,
            false,
            CLONE_STALL_LIMIT - Duration::from_secs(1)
        ));
        assert!(!pod_live(&cloning, false, CLONE_STALL_LIMIT));
        let waiting = Phase::Waiting {
            reason: "no donor to clone from".into(),
        };
        assert!(pod_live(&waiting, false, Duration::from_secs(2)));
        assert!(!pod_live(&waiting, false, CLONE_STALL_LIMIT));
    }

    #[test]
    fn a_bootstrap_or_prepare_is_live_until_it_runs_absurdly_long() {
        for phase in [Phase::Initializing, Phase::Preparing { donor: 2 }] {
            assert!(pod_live(&phase, false, Duration::from_secs(1800)));
            assert!(!pod_live(&phase, false, STEP_LIMIT));
        }
    }

    #[test]
    fn a_starting_or_stopping_server_is_not_live() {
        // The agent's own restarts come first; the kubelet's probe budget covers them.
        for phase in [Phase::Starting, Phase::Stopping] {
            assert!(!pod_live(&phase, false, Duration::ZERO));
            assert!(!pod_live(&phase, true, Duration::ZERO));
        }
    }
}
