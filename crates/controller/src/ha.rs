//! High availability: watching the primary, failover, switchover and rejoin.

use crate::controller::Controller;
use crate::runtime::Runtime;
use anyhow::{anyhow, bail};
use myset_api::{
    ChangeKind, ClusterState, EventKind, Order, OrderAction, OrderResult, PrimaryChange, Role,
};
use myset_core::failover::{self, Candidate, Policy, PrimaryView, Rejoin, ReplicaView, Verdict};
use myset_core::GtidPos;
use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

/// No automatic failover sooner than this after the previous change of primary.
const MIN_FAILOVER_INTERVAL_MS: u64 = 10_000;
/// A promotion may wait this long for the candidate to apply its relay log.
const PROMOTE_TIMEOUT: Duration = Duration::from_secs(75);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn gtid(text: &str) -> GtidPos {
    GtidPos::parse(text).unwrap_or_default()
}

/// Server ids whose GTIDs are legitimate history: every primary so far, the current included.
fn primary_server_ids(state: &ClusterState) -> BTreeSet<u32> {
    let mut ids = state.primary_server_ids.clone();
    ids.insert(ClusterState::server_id(state.primary));
    ids
}

impl<R: Runtime> Controller<R> {
    /// Judges the primary's health from the controller's probes and the replicas' view of it,
    /// and fails over when it is dead rather than merely unreachable.
    pub(crate) async fn watch_primary(&self) {
        let state = self.state();
        if !state.initialized || state.members.len() < 2 {
            return;
        }
        let now = Instant::now();
        let (primary, replicas) = {
            let observed = self.observed.lock().expect("lock");
            let p = observed.get(&state.primary);
            let healthy = p
                .and_then(|o| o.status.as_ref())
                .is_some_and(|s| s.live && s.role == Role::Primary && s.term == state.term);
            let last_live = p.and_then(|o| o.last_live).unwrap_or(self.started);
            let primary = PrimaryView {
                healthy,
                unhealthy_for_ms: if healthy {
                    0
                } else {
                    now.duration_since(last_live).as_millis() as u64
                },
            };
            let replicas: Vec<ReplicaView> = state
                .members
                .iter()
                .filter(|&&o| o != state.primary && !state.rejoin_pending.contains_key(&o))
                .map(|&o| {
                    let status = observed.get(&o).and_then(|ob| ob.status.as_ref());
                    ReplicaView {
                        ordinal: o,
                        reachable: status.is_some_and(|s| s.live),
                        primary_silent_ms: status.and_then(|s| s.primary_silent_ms),
                    }
                })
                .collect();
            (primary, replicas)
        };
        // The flap guard counts automatic failovers only: a planned switchover is no flap.
        let since_last = state
            .last_primary_change
            .as_ref()
            .filter(|c| c.kind == ChangeKind::Failover)
            .map(|c| now_ms().saturating_sub(c.at_ms));
        let policy = Policy {
            delay_ms: state.failover_delay_ms,
            min_interval_ms: MIN_FAILOVER_INTERVAL_MS,
        };
        match failover::judge(primary, &replicas, policy, since_last) {
            Verdict::Healthy => *self.hold_reason.lock().expect("lock") = None,
            Verdict::Hold(reason) => {
                let mut last = self.hold_reason.lock().expect("lock");
                if last.as_deref() != Some(reason.as_str())
                    && primary.unhealthy_for_ms >= policy.delay_ms
                {
                    self.event(EventKind::FailoverHeld, reason.clone());
                }
                *last = Some(reason);
            }
            Verdict::Failover(reason) => {
                if let Err(e) = self.fail_over(&reason).await {
                    self.event(EventKind::FailoverFailed, format!("{e:#}"));
                }
            }
        }
    }

    async fn order(
        &self,
        ordinal: u32,
        order: Order,
        timeout: Duration,
    ) -> anyhow::Result<OrderResult> {
        let state = self.state();
        let placement = state
            .placements
            .get(&ordinal)
            .ok_or_else(|| anyhow!("instance {ordinal} has no placement"))?;
        Ok(self
            .agent_with_timeout(&placement.agent, timeout)
            .call("/order", &order)
            .await?)
    }

    async fn fail_over(&self, reason: &str) -> anyhow::Result<()> {
        let state = self.state();
        let old = state.primary;
        let term = state.term + 1;
        // The new term is durable before anyone acts on it: nothing of the old term is trusted.
        self.update_state(|s| s.term = term)?;
        self.event(
            EventKind::Failover,
            format!(
                "term {term}: primary {} failed ({reason}); fencing",
                state.instance_name(old)
            ),
        );

        // Fence: replicas stop receiving, so an isolated old primary can no longer collect acks.
        let replicas: Vec<u32> = state
            .members
            .iter()
            .copied()
            .filter(|&o| o != old && !state.rejoin_pending.contains_key(&o))
            .collect();
        let fence = |o: u32| async move {
            let order = Order {
                term,
                action: OrderAction::Fence,
            };
            (o, self.order(o, order, self.timing.probe_timeout * 3).await)
        };
        // Kill the old primary first where the runtime can reach it: its death closes the
        // replicas' connections, so they stop receiving at once (a replica stuck reading from a
        // frozen primary can take seconds to obey STOP SLAVE).
        if self.runtime.kill(old).await {
            self.event(
                EventKind::Fenced,
                format!("killed the processes of {}", state.instance_name(old)),
            );
        }
        let fence_results = futures::future::join_all(replicas.into_iter().map(fence)).await;
        let fenced: Vec<(u32, OrderResult)> = fence_results
            .into_iter()
            .filter_map(|(o, r)| match r {
                Ok(r) => Some((o, r)),
                Err(e) => {
                    tracing::warn!(ordinal = o, "fence failed: {e:#}");
                    None
                }
            })
            .collect();

        let candidates: Vec<Candidate> = fenced
            .iter()
            .map(|(o, r)| Candidate {
                ordinal: *o,
                received: if r.received.is_empty() {
                    gtid(&r.executed)
                } else {
                    gtid(&r.received)
                },
                executed: gtid(&r.executed),
            })
            .collect();
        let Some(chosen) = failover::choose_candidate(&candidates, &primary_server_ids(&state))
        else {
            bail!("term {term}: no replica without errant transactions could be fenced; nothing promoted");
        };
        let promoted = self
            .order(
                chosen,
                Order {
                    term,
                    action: OrderAction::Promote { wait_for: None },
                },
                PROMOTE_TIMEOUT,
            )
            .await?;
        self.complete_change(
            old,
            chosen,
            term,
            ChangeKind::Failover,
            reason,
            Some(promoted.executed),
        )
        .await
    }

    /// Records the new primary, moves rw (cutting its old connections) and repoints everyone.
    /// A former primary that may hold unreplicated writes (`held_at` is Some) is held out of
    /// replication until `check_rejoins` compares its data with `held_at`.
    async fn complete_change(
        &self,
        old: u32,
        new: u32,
        term: u64,
        kind: ChangeKind,
        reason: &str,
        held_at: Option<String>,
    ) -> anyhow::Result<()> {
        self.update_state(|s| {
            s.primary = new;
            s.primary_server_ids.insert(ClusterState::server_id(old));
            s.primary_server_ids.insert(ClusterState::server_id(new));
            if let Some(position) = held_at {
                s.rejoin_pending.insert(old, position);
            }
            s.last_primary_change = Some(PrimaryChange {
                at_ms: now_ms(),
                term,
                from: old,
                to: new,
                kind,
                reason: reason.to_string(),
            });
        })?;
        self.publish_endpoints();
        self.push_specs().await;
        let state = self.state();
        self.record(
            myset_api::Event::new(
                EventKind::Promoted,
                format!(
                    "term {term}: {} is the primary ({kind}); rw moved",
                    state.instance_name(new)
                ),
            )
            .term(term)
            .change(old, new)
            .ordinal(new),
        );
        Ok(())
    }

    /// A planned change of primary: the old primary stops taking writes, the target applies
    /// everything it wrote, then takes over. No acknowledged write is lost.
    pub(crate) async fn switchover(&self, to: Option<u32>) -> anyhow::Result<u32> {
        let _change = self.changing.lock().await;
        let state = self.state();
        let old = state.primary;
        let ready = self.ready_ordinals();
        let target = match to {
            Some(t) if t == old => bail!("instance {t} is already the primary"),
            Some(t) if !state.members.contains(&t) => {
                bail!("instance {t} is not a member of cluster {}", state.name)
            }
            Some(t) if !ready.contains(&t) => {
                bail!("instance {t} is not Ready; pick a Ready replica")
            }
            Some(t) => t,
            None => {
                let candidates: Vec<Candidate> = {
                    let observed = self.observed.lock().expect("lock");
                    ready
                        .iter()
                        .filter(|&&o| o != old && !state.rejoin_pending.contains_key(&o))
                        .filter_map(|&o| {
                            let s = observed.get(&o)?.status.as_ref()?;
                            let executed = gtid(&s.gtid.as_ref()?.current);
                            let received = s
                                .replication
                                .as_ref()
                                .map(|r| gtid(&r.received))
                                .unwrap_or_else(|| executed.clone());
                            Some(Candidate {
                                ordinal: o,
                                received,
                                executed,
                            })
                        })
                        .collect()
                };
                failover::choose_candidate(&candidates, &primary_server_ids(&state))
                    .ok_or_else(|| anyhow!("no Ready replica to switch over to"))?
            }
        };
        let term = state.term + 1;
        self.update_state(|s| s.term = term)?;
        self.event(
            EventKind::Switchover,
            format!(
                "term {term}: moving the primary from {} to {}",
                state.instance_name(old),
                state.instance_name(target)
            ),
        );
        let demoted = self
            .order(
                old,
                Order {
                    term,
                    action: OrderAction::Demote,
                },
                self.timing.probe_timeout * 5,
            )
            .await?;
        let promotion = self
            .order(
                target,
                Order {
                    term,
                    action: OrderAction::Promote {
                        wait_for: Some(demoted.binlog.clone()),
                    },
                },
                PROMOTE_TIMEOUT,
            )
            .await;
        if let Err(e) = promotion {
            // The old primary stays primary: pushing its spec of the new term re-enables writes.
            self.push_specs().await;
            bail!(
                "promoting {} failed, {} stays primary: {e:#}",
                state.instance_name(target),
                state.instance_name(old)
            );
        }
        self.complete_change(old, target, term, ChangeKind::Switchover, "requested", None)
            .await?;
        Ok(target)
    }

    /// Former primaries come back held; each rejoins as a replica if its data is contained in
    /// what the new primary had at promotion, or is set aside and re-cloned if not.
    pub(crate) async fn check_rejoins(&self) {
        let state = self.state();
        for (&ordinal, promoted_at) in &state.rejoin_pending {
            let name = state.instance_name(ordinal);
            if !state.members.contains(&ordinal) {
                let _ = self.update_state(|s| drop(s.rejoin_pending.remove(&ordinal)));
                continue;
            }
            let own = {
                let observed = self.observed.lock().expect("lock");
                observed
                    .get(&ordinal)
                    .and_then(|ob| ob.status.as_ref())
                    .filter(|s| s.live && s.role == Role::Replica && s.term == state.term)
                    .and_then(|s| s.gtid.as_ref())
                    .map(|g| g.current.clone())
            };
            let Some(own) = own else { continue };
            match failover::rejoin(&gtid(&own), &gtid(promoted_at)) {
                Rejoin::AsReplica => {
                    if self
                        .update_state(|s| drop(s.rejoin_pending.remove(&ordinal)))
                        .is_ok()
                    {
                        self.event(EventKind::Rejoined, format!("{name} rejoins as a replica (its data {own} is contained in {promoted_at})"));
                    }
                }
                Rejoin::Reclone(reason) => {
                    self.runtime.stop(ordinal).await;
                    let label = format!("errant-term{}-{}", state.term, now_ms());
                    match self.runtime.set_aside_data(ordinal, &label) {
                        Ok(path) => {
                            self.observed.lock().expect("lock").remove(&ordinal);
                            let _ = self.update_state(|s| drop(s.rejoin_pending.remove(&ordinal)));
                            self.event(
                                EventKind::Errant,
                                format!("{name}: {reason}; its data dir is set aside at {path}; re-cloning it"),
                            );
                        }
                        Err(e) => self.event(
                            EventKind::Errant,
                            format!("{name}: {reason}; cannot set its data aside: {e:#}"),
                        ),
                    }
                }
            }
        }
    }
}
