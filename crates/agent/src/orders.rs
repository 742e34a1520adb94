//! Orders from the controller during a change of primary, and self-fencing.

use crate::role::admin;
use crate::state::Shared;
use myset_api::{Order, OrderAction, OrderResult, Role};
use myset_mariadb::{sql, AdminClient};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a promotion may wait for the relay log to be applied.
const APPLY_TIMEOUT_SECONDS: u64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("order of term {offered} refused: this agent is at term {current}")]
    StaleTerm { current: u64, offered: u64 },
    #[error("{0} is not possible on a {1}")]
    WrongRole(&'static str, Role),
    #[error("{0:#}")]
    Failed(#[from] anyhow::Error),
}

pub async fn obey(shared: &Shared, order: Order) -> Result<OrderResult, OrderError> {
    let spec = shared.spec();
    if !myset_core::failover::accept_term(spec.term, order.term) {
        return Err(OrderError::StaleTerm {
            current: spec.term,
            offered: order.term,
        });
    }
    let mut c = admin(shared).await.map_err(OrderError::Failed)?;
    c.exec(sql::NO_BINLOG).await.map_err(anyhow::Error::from)?;
    match order.action {
        OrderAction::Fence => {
            if spec.role != Role::Replica {
                return Err(OrderError::WrongRole("fence", spec.role));
            }
            shared.fencing.lock().expect("fencing lock").fence_term = order.term;
            c.exec(sql::STOP_RECEIVING)
                .await
                .map_err(anyhow::Error::from)?;
            tracing::info!(
                term = order.term,
                "fenced: stopped receiving from the primary"
            );
        }
        OrderAction::Promote { wait_for } => {
            if spec.role != Role::Replica {
                return Err(OrderError::WrongRole("promote", spec.role));
            }
            promote(shared, &mut c, order.term, wait_for).await?;
        }
        OrderAction::Demote => {
            if spec.role != Role::Primary {
                return Err(OrderError::WrongRole("demote", spec.role));
            }
            let mut held = spec.clone();
            held.role = Role::Replica;
            held.primary = None;
            held.term = order.term;
            held.semisync = false;
            crate::role::stop_writes(shared, &mut c)
                .await
                .map_err(anyhow::Error::from)?;
            store(shared, held)?;
            tracing::info!(
                term = order.term,
                "demoted: writes refused, client sessions cut"
            );
        }
    }
    let result = positions(&mut c).await.map_err(OrderError::Failed);
    c.disconnect().await;
    result
}

fn store(shared: &Shared, spec: myset_api::InstanceSpec) -> Result<(), OrderError> {
    shared
        .set_spec(spec)
        .map_err(|e| OrderError::Failed(anyhow::anyhow!(e)))
}

async fn promote(
    shared: &Shared,
    c: &mut AdminClient,
    term: u64,
    wait_for: Option<String>,
) -> Result<(), OrderError> {
    let received = c
        .replication()
        .await
        .map_err(anyhow::Error::from)?
        .map(|r| r.received)
        .unwrap_or_default();
    // A switchover names the old primary's last position; a failover applies what was received.
    let target = myset_core::GtidPos::parse(&wait_for.unwrap_or(received))
        .map_err(|e| OrderError::Failed(anyhow::anyhow!(e)))?;
    wait_applied(c, &target).await?;
    c.exec(sql::STOP_REPLICA)
        .await
        .map_err(anyhow::Error::from)?;
    c.exec(sql::RESET_REPLICA)
        .await
        .map_err(anyhow::Error::from)?;
    let mut spec = shared.spec();
    spec.role = Role::Primary;
    spec.primary = None;
    spec.term = term;
    store(shared, spec)?;
    crate::role::converge(shared).await?;
    tracing::info!(term, "promoted to primary");
    Ok(())
}

/// Waits until the server's history (gtid_current_pos, which also covers a former primary's own
/// binlog) contains `target`, failing fast if the SQL thread stops with an error.
async fn wait_applied(c: &mut AdminClient, target: &myset_core::GtidPos) -> Result<(), OrderError> {
    let deadline = Instant::now() + Duration::from_secs(APPLY_TIMEOUT_SECONDS);
    loop {
        let (gtid, _) = c.positions().await.map_err(anyhow::Error::from)?;
        let current = myset_core::GtidPos::parse(&gtid.current).unwrap_or_default();
        if target.contained_in(&current) {
            return Ok(());
        }
        if let Some(r) = c.replication().await.map_err(anyhow::Error::from)? {
            if !r.sql_running {
                if let Some(e) = r.last_error {
                    return Err(OrderError::Failed(anyhow::anyhow!(
                        "cannot apply up to {target}: {e}"
                    )));
                }
            }
        }
        if Instant::now() > deadline {
            return Err(OrderError::Failed(anyhow::anyhow!(
                "did not apply up to {target} within {APPLY_TIMEOUT_SECONDS}s (at {current})"
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn positions(c: &mut AdminClient) -> anyhow::Result<OrderResult> {
    let (gtid, _) = c.positions().await?;
    let received = c
        .replication()
        .await?
        .map(|r| r.received)
        .unwrap_or_default();
    Ok(OrderResult {
        received,
        executed: gtid.current,
        binlog: gtid.binlog,
    })
}

/// A primary that hears neither from the controller nor from any peer for the spec's
/// isolation period makes its server refuse writes and cuts client sessions, so clients stuck
/// with it on the wrong side of a partition cannot write where nobody else can see.
pub async fn self_fence_watch(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let spec = shared.spec();
        let fencing = shared.fencing();
        if spec.role != Role::Primary
            || spec.isolation_fence_ms == 0
            || fencing.self_fenced.is_some()
        {
            continue;
        }
        let limit = Duration::from_millis(spec.isolation_fence_ms);
        let silent = fencing.last_controller_contact.elapsed();
        if silent < limit || any_peer_reachable(&shared, &spec.peers).await {
            continue;
        }
        let reason = format!(
            "isolated: no word from the controller for {}ms and no peer reachable",
            silent.as_millis()
        );
        tracing::warn!("{reason}; refusing writes");
        shared.fencing.lock().expect("fencing lock").self_fenced = Some(reason);
        if let Ok(mut c) = admin(&shared).await {
            if let Err(e) = crate::role::stop_writes(&shared, &mut c).await {
                tracing::error!("self-fencing failed: {e}");
            }
            c.disconnect().await;
        }
    }
}

async fn any_peer_reachable(shared: &Shared, peers: &[myset_api::Address]) -> bool {
    let started = Instant::now();
    let checks = peers.iter().map(|p| {
        let client = myset_http::Client::new(
            format!("http://{p}"),
            &shared.secrets.api_token,
            Duration::from_millis(500),
        );
        async move {
            // Any answer, even "not ready", proves the network path works.
            match client.get::<serde_json::Value>("/healthz").await {
                Ok(_) => true,
                Err(myset_http::CallError::Refused { .. }) => true,
                Err(myset_http::CallError::Unreachable { .. }) => false,
            }
        }
    });
    let reached = futures::future::join_all(checks)
        .await
        .into_iter()
        .any(|r| r);
    tracing::debug!(reached, elapsed = ?started.elapsed(), "peer check");
    reached
}
