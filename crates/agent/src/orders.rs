//! Orders from the controller during a change of primary, and self-fencing.

use crate::role::admin;
use crate::state::{ServerOps, Shared};
use myset_api::{InstanceSpec, Order, OrderAction, OrderResult, Role};
use myset_core::health::Isolation;
use myset_core::GtidPos;
use myset_mariadb::{sql, AdminClient};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a peer may take to answer the isolation check.
const PEER_CHECK_TIMEOUT: Duration = Duration::from_millis(500);
/// How often a primary checks whether it is isolated.
const ISOLATION_CHECK_PERIOD: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("order of term {offered} refused: this agent is at term {current}")]
    StaleTerm { current: u64, offered: u64 },
    #[error("{0} is not possible on a {1}")]
    WrongRole(&'static str, Role),
    #[error("{0:#}")]
    Failed(#[from] anyhow::Error),
}

impl From<myset_mariadb::ClientError> for OrderError {
    fn from(e: myset_mariadb::ClientError) -> Self {
        OrderError::Failed(e.into())
    }
}

/// What an order asks of this agent, given the spec it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Fence,
    Promote {
        wait_for: Option<String>,
    },
    Demote,
    /// A repeat of an order already carried out (its caller gave up waiting and asked again):
    /// only the positions are reported.
    AlreadyDone,
}

/// Decides what to do with `order` on an agent running `spec`: refuse it, carry it out, or
/// recognise a repeat of one already carried out. A fence is never "done": repeating it
/// just stops the IO thread again, which is harmless.
fn plan(spec: &InstanceSpec, order: &Order) -> Result<Step, OrderError> {
    if !myset_core::failover::accept_term(spec.term, order.term) {
        return Err(OrderError::StaleTerm {
            current: spec.term,
            offered: order.term,
        });
    }
    let same_term = spec.term == order.term;
    match (&order.action, spec.role) {
        (OrderAction::Fence, Role::Replica) => Ok(Step::Fence),
        (OrderAction::Fence, role) => Err(OrderError::WrongRole("fence", role)),
        (OrderAction::Promote { wait_for }, Role::Replica) => Ok(Step::Promote {
            wait_for: wait_for.clone(),
        }),
        (OrderAction::Promote { .. }, Role::Primary) if same_term => Ok(Step::AlreadyDone),
        (OrderAction::Promote { .. }, role) => Err(OrderError::WrongRole("promote", role)),
        (OrderAction::Demote, Role::Primary) => Ok(Step::Demote),
        // A demoted primary is held: a replica of the order's term with no primary to follow.
        (OrderAction::Demote, Role::Replica) if same_term && spec.primary.is_none() => {
            Ok(Step::AlreadyDone)
        }
        (OrderAction::Demote, role) => Err(OrderError::WrongRole("demote", role)),
    }
}

/// Carries out `order` in a task of its own, so it runs to completion even when the caller
/// times out and drops this future: a promotion cut off half-way would leave a replica that
/// has stopped replicating and is not yet primary. A repeat waits for the running order.
pub async fn obey(shared: &Arc<Shared>, order: Order) -> Result<OrderResult, OrderError> {
    let shared = shared.clone();
    tokio::spawn(async move { carry_out(&shared, order).await })
        .await
        .map_err(|e| OrderError::Failed(anyhow::anyhow!("the order's task failed: {e}")))?
}

async fn carry_out(shared: &Shared, order: Order) -> Result<OrderResult, OrderError> {
    let ops = shared.server_ops().await;
    // Planned under the guard, so a repeat sees what the order before it did.
    let step = plan(&shared.spec(), &order)?;
    let mut c = admin(shared).await?;
    let result = async {
        c.exec(sql::NO_BINLOG).await?;
        match step {
            Step::Fence => fence(shared, &mut c, order.term).await?,
            Step::Promote { wait_for } => {
                promote(shared, &ops, &mut c, order.term, wait_for).await?
            }
            Step::Demote => demote(shared, &ops, &mut c, order.term).await?,
            Step::AlreadyDone => {
                tracing::info!(term = order.term, ?order.action, "order already carried out")
            }
        }
        positions(&mut c).await
    }
    .await;
    c.disconnect().await;
    result
}

async fn fence(shared: &Shared, c: &mut AdminClient, term: u64) -> Result<(), OrderError> {
    {
        let mut f = shared.fencing.lock().expect("fencing lock");
        f.fence_term = f.fence_term.max(term);
    }
    c.exec(sql::STOP_RECEIVING).await?;
    tracing::info!(term, "fenced: stopped receiving from the primary");
    Ok(())
}

async fn demote(
    shared: &Shared,
    ops: &ServerOps<'_>,
    c: &mut AdminClient,
    term: u64,
) -> Result<(), OrderError> {
    let mut held = shared.spec();
    held.role = Role::Replica;
    held.primary = None;
    held.term = term;
    held.semisync = false;
    crate::role::stop_writes(shared, ops, c).await?;
    store(shared, held).await?;
    tracing::info!(term, "demoted: writes refused, client sessions cut");
    Ok(())
}

async fn store(shared: &Shared, spec: InstanceSpec) -> Result<(), OrderError> {
    shared
        .set_spec(spec)
        .await
        .map_err(|e| OrderError::Failed(anyhow::anyhow!(e)))
}

async fn promote(
    shared: &Shared,
    ops: &ServerOps<'_>,
    c: &mut AdminClient,
    term: u64,
    wait_for: Option<String>,
) -> Result<(), OrderError> {
    // A switchover names the old primary's last position; a failover applies what was
    // received. A replica with no replication configured has received nothing.
    let target = match wait_for {
        Some(position) => position,
        None => c
            .replication()
            .await?
            .map(|r| r.received)
            .unwrap_or_default(),
    };
    let target = GtidPos::parse(&target).map_err(anyhow::Error::from)?;
    wait_applied(c, &target).await?;
    c.exec(sql::STOP_REPLICA).await?;
    c.exec(sql::RESET_REPLICA).await?;
    let mut spec = shared.spec();
    spec.role = Role::Primary;
    spec.primary = None;
    spec.term = term;
    store(shared, spec).await?;
    crate::role::converge(shared, ops).await?;
    tracing::info!(term, "promoted to primary");
    Ok(())
}

/// Waits until the server's history (gtid_current_pos, which also covers a former primary's own
/// binlog) contains `target`, failing fast if the SQL thread stops with an error.
async fn wait_applied(c: &mut AdminClient, target: &GtidPos) -> Result<(), OrderError> {
    let limit = myset_api::limits::APPLY_TIMEOUT;
    // The connection and the last position seen, shared by the successive checks.
    let state = &tokio::sync::Mutex::new((c, String::new()));
    let applied = myset_os::poll_for(limit, Duration::from_millis(10), || async move {
        let mut guard = state.lock().await;
        let (c, last) = &mut *guard;
        let (gtid, _) = c.positions().await?;
        // Never read as empty: an empty position is contained in everything.
        let current = GtidPos::parse(&gtid.current)
            .map_err(|e| anyhow::anyhow!("the server's gtid_current_pos is unusable: {e}"))?;
        if target.contained_in(&current) {
            return Ok(Some(()));
        }
        *last = current.to_string();
        if let Some(r) = c.replication().await? {
            if let (false, Some(e)) = (r.sql_running, r.last_error) {
                return Err(OrderError::Failed(anyhow::anyhow!(
                    "cannot apply up to {target}: {e}"
                )));
            }
        }
        Ok(None)
    })
    .await?;
    applied.ok_or_else(|| {
        let last = state.try_lock().map(|g| g.1.clone()).unwrap_or_default();
        OrderError::Failed(anyhow::anyhow!(
            "did not apply up to {target} within {}s (at {last})",
            limit.as_secs()
        ))
    })
}

async fn positions(c: &mut AdminClient) -> Result<OrderResult, OrderError> {
    let (gtid, _) = c.positions().await?;
    // Empty on a primary, which receives from nobody.
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

/// What this agent knows about its own isolation right now.
fn isolation(shared: &Shared) -> Isolation {
    let spec = shared.spec();
    let fencing = shared.fencing();
    Isolation {
        role: spec.role,
        limit_ms: spec.isolation_fence_ms,
        controller_silent_ms: u64::try_from(fencing.last_controller_contact.elapsed().as_millis())
            .unwrap_or(u64::MAX),
        has_peers: !spec.peers.is_empty(),
        already_fenced: fencing.self_fenced.is_some(),
    }
}

/// A primary that hears neither from the controller nor from any peer for the spec's
/// isolation period makes its server refuse writes and cuts client sessions, so clients stuck
/// with it on the wrong side of a partition cannot write where nobody else can see.
pub async fn self_fence_watch(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(ISOLATION_CHECK_PERIOD);
    loop {
        tick.tick().await;
        if !isolation(&shared).suspected() {
            continue;
        }
        let answered = any_peer_answered(&shared, &shared.spec().peers).await;
        let ops = shared.server_ops().await;
        // Judged again with what is known now: the controller may have called, or an order
        // changed the role, while the peers were asked or the guard awaited.
        let view = isolation(&shared);
        if !view.fence_now(answered) {
            continue;
        }
        let reason = format!(
            "isolated: no word from the controller for {}ms and no peer answered",
            view.controller_silent_ms
        );
        tracing::warn!("{reason}; refusing writes");
        shared.fencing.lock().expect("fencing lock").self_fenced = Some(reason);
        // If this fails, the supervisor's convergence retries it: the primary is marked fenced.
        match admin(&shared).await {
            Ok(mut c) => {
                if let Err(e) = crate::role::stop_writes(&shared, &ops, &mut c).await {
                    tracing::error!("self-fencing failed: {e}");
                }
                c.disconnect().await;
            }
            Err(e) => tracing::error!("self-fencing failed: {e:#}"),
        }
    }
}

/// Whether any peer's agent sent an HTTP answer. Any answer, even an error status, proves the
/// network path works; `/ping` does not touch the peer's server, so a hung mariadbd there
/// cannot make its agent look unreachable.
async fn any_peer_answered(shared: &Shared, peers: &[myset_api::Address]) -> bool {
    let started = Instant::now();
    let checks = peers.iter().map(|p| {
        let client = shared.api.client(p, PEER_CHECK_TIMEOUT);
        async move {
            match client.probe(crate::http::PING_PATH).await {
                Ok(_) => true,
                Err(e) => e.answered(),
            }
        }
    });
    let answered = futures::future::join_all(checks)
        .await
        .into_iter()
        .any(|r| r);
    tracing::debug!(answered, elapsed = ?started.elapsed(), "peer check");
    answered
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{address, spec};

    fn following() -> Option<myset_api::Address> {
        Some(address(3306))
    }

    fn order(term: u64, action: OrderAction) -> Order {
        Order { term, action }
    }

    const PROMOTE: OrderAction = OrderAction::Promote { wait_for: None };

    #[tokio::test(start_paused = true)]
    async fn an_order_waits_for_whoever_is_changing_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Arc::new(crate::testing::shared(
            dir.path(),
            spec(Role::Replica, 5, following()),
        ));
        let ops = shared.server_ops().await;
        let mut order_task = {
            let shared = shared.clone();
            tokio::spawn(async move { obey(&shared, order(4, PROMOTE)).await })
        };
        // Time is paused: it only jumps to the deadline once every task is idle, the
        // order's included.
        let waited = tokio::time::timeout(Duration::from_secs(60), &mut order_task).await;
        assert!(
            waited.is_err(),
            "the order ran while the server was being changed"
        );
        drop(ops);
        let result = order_task.await.unwrap();
        assert!(matches!(result, Err(OrderError::StaleTerm { .. })));
    }

    #[test]
    fn orders_of_an_older_term_are_refused() {
        let err = plan(&spec(Role::Replica, 5, following()), &order(4, PROMOTE)).unwrap_err();
        assert!(matches!(
            err,
            OrderError::StaleTerm {
                current: 5,
                offered: 4
            }
        ));
    }

    #[test]
    fn orders_are_carried_out_on_the_right_role() {
        let replica = spec(Role::Replica, 5, following());
        let primary = spec(Role::Primary, 5, None);
        assert_eq!(
            plan(&replica, &order(6, OrderAction::Fence)).unwrap(),
            Step::Fence
        );
        assert_eq!(
            plan(&replica, &order(6, PROMOTE)).unwrap(),
            Step::Promote { wait_for: None }
        );
        assert_eq!(
            plan(&primary, &order(6, OrderAction::Demote)).unwrap(),
            Step::Demote
        );
        assert!(matches!(
            plan(&primary, &order(6, OrderAction::Fence)),
            Err(OrderError::WrongRole("fence", Role::Primary))
        ));
        assert!(matches!(
            plan(&replica, &order(6, OrderAction::Demote)),
            Err(OrderError::WrongRole("demote", Role::Replica))
        ));
    }

    #[test]
    fn a_repeated_order_finds_itself_done() {
        // Promoted at term 6 by the first attempt.
        let promoted = spec(Role::Primary, 6, None);
        assert_eq!(
            plan(&promoted, &order(6, PROMOTE)).unwrap(),
            Step::AlreadyDone
        );
        // Demoted (held) at term 6 by the first attempt.
        let held = spec(Role::Replica, 6, None);
        assert_eq!(
            plan(&held, &order(6, OrderAction::Demote)).unwrap(),
            Step::AlreadyDone
        );
        // A fence is simply repeated.
        let fenced = spec(Role::Replica, 5, following());
        assert_eq!(
            plan(&fenced, &order(6, OrderAction::Fence)).unwrap(),
            Step::Fence
        );
    }

    #[test]
    fn a_done_order_of_another_term_is_not_a_repeat() {
        // The primary of term 5 is asked to promote at term 6: not a repeat, a mistake.
        assert!(matches!(
            plan(&spec(Role::Primary, 5, None), &order(6, PROMOTE)),
            Err(OrderError::WrongRole("promote", Role::Primary))
        ));
        // A held replica of term 5 is asked to demote at term 6.
        assert!(matches!(
            plan(
                &spec(Role::Replica, 5, None),
                &order(6, OrderAction::Demote)
            ),
            Err(OrderError::WrongRole("demote", Role::Replica))
        ));
        // A replica following a primary at term 6 is not a demoted one.
        assert!(matches!(
            plan(
                &spec(Role::Replica, 6, following()),
                &order(6, OrderAction::Demote)
            ),
            Err(OrderError::WrongRole("demote", Role::Replica))
        ));
    }
}
