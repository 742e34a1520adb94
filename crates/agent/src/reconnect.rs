//! Replicas reconnect as soon as their primary's server is back, not on MariaDB's retry timer.
//!
//! After its server dies, a replica's IO thread retries once per `MASTER_CONNECT_RETRY`,
//! whose minimum is 1 s; a semi-synchronous commit on the restarted primary waits for a
//! replica's ack, so writes would wait for that timer. Instead the primary's agent, once its
//! restarted server takes writes (semi-sync on, read-write), tells its peers' agents, and a
//! replica that follows that primary at that term and is waiting to reconnect restarts its IO
//! thread at once. This only hastens a connection the replica was going to make anyway:
//! commits still wait for a replica's ack exactly as before, and a fenced replica, or one of
//! another term or following another primary, ignores the hint.

use crate::role::admin;
use crate::state::Shared;
use myset_api::{InstanceSpec, PrimaryBack, ReplicationStatus, Role};
use myset_mariadb::sql;
use std::time::Duration;

/// How long a peer's agent may take to take the hint; it is best effort.
const HINT_TIMEOUT: Duration = Duration::from_millis(500);

/// What a replica does with a primary's "I am back".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconnect {
    /// Restart the IO thread: it is waiting on the retry timer (or stopped after an error).
    Now,
    /// Nothing to do: this instance is no replica (or a Galera member).
    NotAReplica,
    /// The hint is of another term than this replica's spec.
    OtherTerm,
    /// Fenced for a change of primary: it receives nothing until its new spec.
    Fenced,
    /// The spec names another primary, or none (a held former primary).
    OtherPrimary,
    /// Replication is not configured yet, or still points at the previous primary: the
    /// supervisor's convergence sets it up and starts it.
    NotPointedThere,
    /// The IO thread is connected already.
    Connected,
}

/// Decides whether a replica running `spec`, fenced up to `fence_term`, with `replication`,
/// reconnects on `hint`. Only a replica that follows exactly that primary at exactly that term
/// and is not fenced acts: a fence must keep holding, and a hint from a primary of another
/// term must never pull a replica back to it.
pub fn plan(
    spec: &InstanceSpec,
    fence_term: u64,
    hint: &PrimaryBack,
    replication: Option<&ReplicationStatus>,
) -> Reconnect {
    if spec.role != Role::Replica || spec.galera.is_some() {
        return Reconnect::NotAReplica;
    }
    if hint.term != spec.term {
        return Reconnect::OtherTerm;
    }
    if fence_term > spec.term {
        return Reconnect::Fenced;
    }
    if spec.primary.as_ref() != Some(&hint.primary) {
        return Reconnect::OtherPrimary;
    }
    let Some(r) = replication else {
        return Reconnect::NotPointedThere;
    };
    if r.source != hint.primary.to_string() {
        return Reconnect::NotPointedThere;
    }
    if r.io_running {
        return Reconnect::Connected;
    }
    Reconnect::Now
}

/// Acts on a primary's hint. The server-ops guard orders it with the orders (a fence) and the
/// supervisor's convergence: the decision is taken with what they left.
pub async fn on_hint(shared: &Shared, hint: &PrimaryBack) -> anyhow::Result<Reconnect> {
    let _ops = shared.server_ops().await;
    let mut c = admin(shared).await?;
    let result = async {
        let replication = c.replication().await?;
        let step = plan(
            &shared.spec(),
            shared.fencing().fence_term,
            hint,
            replication.as_ref(),
        );
        if step == Reconnect::Now {
            // STOP ends the retry sleep at once; START connects now.
            c.exec(sql::STOP_RECEIVING).await?;
            c.exec(sql::START_RECEIVING).await?;
            tracing::info!(primary = %hint.primary, term = hint.term, "primary is back: reconnected at once");
        }
        anyhow::Ok(step)
    }
    .await;
    c.disconnect().await;
    result
}

/// Whether this agent's server, just converged after a start, is a primary whose replicas
/// should be told.
pub fn announces(spec: &InstanceSpec, self_fenced: bool) -> bool {
    spec.role == Role::Primary && spec.galera.is_none() && !spec.peers.is_empty() && !self_fenced
}

/// Tells every peer's agent that this primary's server is back. Best effort: a peer that does
/// not answer reconnects on MariaDB's own timer, as it would have anyway.
pub async fn announce(shared: &Shared) {
    let spec = shared.spec();
    let hint = PrimaryBack {
        term: spec.term,
        primary: spec.server.clone(),
    };
    let calls = spec.peers.iter().map(|peer| {
        let client = shared.api.client(peer, HINT_TIMEOUT);
        let hint = &hint;
        async move {
            let taken: Result<(), _> = client.call(myset_api::PRIMARY_BACK_PATH, hint).await;
            if let Err(e) = taken {
                tracing::debug!(%peer, "primary-back hint not taken: {e}");
            }
        }
    });
    futures::future::join_all(calls).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{address, spec};

    const PRIMARY: u16 = 3306;

    fn hint(term: u64) -> PrimaryBack {
        PrimaryBack {
            term,
            primary: address(PRIMARY),
        }
    }

    fn replication(source: u16, io_running: bool) -> ReplicationStatus {
        ReplicationStatus {
            source: address(source).to_string(),
            received: String::new(),
            heartbeats: 0,
            io_running,
            sql_running: true,
            seconds_behind: None,
            last_error: None,
            sql_error: None,
        }
    }

    fn replica(term: u64) -> InstanceSpec {
        spec(Role::Replica, term, Some(address(PRIMARY)))
    }

    #[test]
    fn a_replica_waiting_to_reconnect_to_that_primary_reconnects_now() {
        let waiting = replication(PRIMARY, false);
        assert_eq!(
            plan(&replica(5), 5, &hint(5), Some(&waiting)),
            Reconnect::Now
        );
    }

    #[test]
    fn a_connected_replica_is_left_alone() {
        let connected = replication(PRIMARY, true);
        assert_eq!(
            plan(&replica(5), 5, &hint(5), Some(&connected)),
            Reconnect::Connected
        );
    }

    #[test]
    fn a_fence_holds_against_the_hint() {
        // Fenced for term 6: the primary of term 5 must not get this replica back.
        let waiting = replication(PRIMARY, false);
        assert_eq!(
            plan(&replica(5), 6, &hint(5), Some(&waiting)),
            Reconnect::Fenced
        );
    }

    #[test]
    fn a_hint_of_another_term_or_primary_is_ignored() {
        let waiting = replication(PRIMARY, false);
        assert_eq!(
            plan(&replica(6), 6, &hint(5), Some(&waiting)),
            Reconnect::OtherTerm
        );
        assert_eq!(
            plan(&replica(5), 5, &hint(6), Some(&waiting)),
            Reconnect::OtherTerm
        );
        let elsewhere = spec(Role::Replica, 5, Some(address(4000)));
        assert_eq!(
            plan(&elsewhere, 5, &hint(5), Some(&waiting)),
            Reconnect::OtherPrimary
        );
        // Held (no primary to follow): a former primary waiting for its data to be checked.
        let held = spec(Role::Replica, 5, None);
        assert_eq!(
            plan(&held, 5, &hint(5), Some(&waiting)),
            Reconnect::OtherPrimary
        );
    }

    #[test]
    fn replication_must_already_point_at_that_primary() {
        assert_eq!(
            plan(&replica(5), 5, &hint(5), None),
            Reconnect::NotPointedThere
        );
        let old = replication(4000, false);
        assert_eq!(
            plan(&replica(5), 5, &hint(5), Some(&old)),
            Reconnect::NotPointedThere
        );
    }

    #[test]
    fn a_primary_ignores_the_hint() {
        let primary = spec(Role::Primary, 5, None);
        assert_eq!(plan(&primary, 5, &hint(5), None), Reconnect::NotAReplica);
    }

    #[test]
    fn only_a_replicated_primary_that_has_not_fenced_itself_announces() {
        let mut primary = spec(Role::Primary, 5, None);
        assert!(!announces(&primary, false), "no peers to tell");
        primary.peers = vec![address(9000)];
        assert!(announces(&primary, false));
        assert!(!announces(&primary, true));
        assert!(!announces(&replica(5), false));
    }
}
