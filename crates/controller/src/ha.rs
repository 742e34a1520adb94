//! High availability: watching the primary, failover, switchover and rejoin.

use crate::controller::{Controller, Observed};
use anyhow::{anyhow, bail, Context};
use myset_api::{
    ChangeKind, ClusterState, Event, EventKind, Order, OrderAction, OrderResult, PrimaryChange,
    Role,
};
use myset_core::failover::{self, Candidate, Policy, PrimaryView, Rejoin, ReplicaView, Verdict};
use myset_core::GtidPos;
use myset_runtime::{AgentApi, AgentError, KillOutcome, Runtime};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// No automatic failover sooner than this after the previous change of primary.
const MIN_FAILOVER_INTERVAL_MS: u64 = 10_000;

/// Parses a GTID position an agent reported. A garbled one is an error, never an empty
/// position: an empty position is contained in every other, so it could let a diverged
/// server rejoin or win an election.
fn gtid(text: &str, whose: &str) -> anyhow::Result<GtidPos> {
    GtidPos::parse(text).with_context(|| format!("{whose} reported an unreadable GTID position"))
}

/// Server ids whose GTIDs are legitimate history: every primary so far, the current included.
fn primary_server_ids(state: &ClusterState) -> BTreeSet<u32> {
    let mut ids = state.primary_server_ids.clone();
    ids.insert(ClusterState::server_id(state.primary));
    ids
}

/// A fenced replica as a promotion candidate, from the positions it reported.
fn candidate(ordinal: u32, r: &OrderResult) -> anyhow::Result<Candidate> {
    let whose = format!("instance {ordinal}");
    let executed = gtid(&r.executed, &whose)?;
    let received = if r.received.is_empty() {
        executed.clone()
    } else {
        gtid(&r.received, &whose)?
    };
    Ok(Candidate {
        ordinal,
        received,
        executed,
    })
}

fn policy(state: &ClusterState) -> Policy {
    Policy {
        delay_ms: state.failover_delay_ms,
        min_interval_ms: MIN_FAILOVER_INTERVAL_MS,
    }
}

/// The primary as the last probes saw it. Unhealthy since it was last seen live, or since it
/// was (re)started, or since this controller started (`controller_started`): whichever is
/// latest. An instance just started gets the whole failover delay to come up.
fn primary_view(
    state: &ClusterState,
    observed: &BTreeMap<u32, Observed>,
    controller_started: Instant,
    now: Instant,
) -> PrimaryView {
    let p = observed.get(&state.primary);
    let healthy = p
        .and_then(|o| o.status.as_ref())
        .is_some_and(|s| s.live && s.role == Role::Primary && s.term == state.term);
    let last_live = [
        Some(controller_started),
        p.and_then(|o| o.last_live),
        p.and_then(|o| o.started_at),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(controller_started);
    PrimaryView {
        healthy,
        unhealthy_for_ms: if healthy {
            0
        } else {
            now.duration_since(last_live).as_millis() as u64
        },
    }
}

impl<R: Runtime> Controller<R> {
    /// The primary as the last probes saw it, with the failover policy, for a replication
    /// cluster whose primary failover watches; None otherwise (Galera has no such primary).
    fn watched_primary(&self) -> Option<(PrimaryView, Policy)> {
        let state = self.state();
        if state.topology == myset_api::Topology::Galera
            || !state.initialized
            || state.members.len() < 2
        {
            return None;
        }
        let observed = self.observed.lock().expect("observed lock");
        let primary = primary_view(&state, &observed, self.started, Instant::now());
        Some((primary, policy(&state)))
    }

    /// Whether the primary of a replication cluster looks unhealthy, so that it is judged at
    /// every quick check (see [`failover::watch_closely`]).
    pub(crate) fn primary_suspect(&self) -> bool {
        self.watched_primary()
            .is_some_and(|(primary, policy)| failover::watch_closely(primary, policy))
    }

    /// How long a probe of the primary may wait (see [`failover::primary_probe_timeout`]);
    /// `regular` where failover watches no primary.
    pub(crate) fn primary_probe_timeout(&self, regular: Duration, quick: Duration) -> Duration {
        match self.watched_primary() {
            Some((primary, policy)) => {
                failover::primary_probe_timeout(primary, policy, regular, quick)
            }
            None => regular,
        }
    }

    /// Judges the primary's health from the controller's probes and the replicas' view of it,
    /// and fails over when it is dead rather than merely unreachable.
    pub(crate) async fn watch_primary(&self) {
        let state = self.state();
        if !state.initialized || state.members.len() < 2 {
            return;
        }
        let now = Instant::now();
        let busy = self.busy.lock().expect("busy lock").clone();
        let (primary, replicas) = {
            let observed = self.observed.lock().expect("observed lock");
            let primary = primary_view(&state, &observed, self.started, now);
            let replicas: Vec<ReplicaView> = state
                .members
                .iter()
                .filter(|&&o| o != state.primary && !state.rejoin_pending.contains_key(&o))
                .filter(|o| !busy.contains(o))
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
            .map(|c| self.now_ms().saturating_sub(c.at_ms));
        let policy = policy(&state);
        match failover::judge(primary, &replicas, policy, since_last) {
            Verdict::Healthy => *self.hold_reason.lock().expect("hold lock") = None,
            Verdict::Hold(reason) => {
                let mut last = self.hold_reason.lock().expect("hold lock");
                let report = last.as_deref() != Some(reason.as_str())
                    && primary.unhealthy_for_ms >= policy.delay_ms;
                *last = Some(reason.clone());
                drop(last);
                if report {
                    self.record_event(
                        Event::new(EventKind::FailoverHeld, reason.clone())
                            .ordinal(state.primary)
                            .term(state.term)
                            .reason(reason),
                    );
                }
            }
            Verdict::Failover(reason) => {
                if let Err(e) = self.fail_over(&reason).await {
                    let message = format!("{e:#}");
                    self.record_event(
                        Event::new(EventKind::FailoverFailed, message.clone())
                            .ordinal(state.primary)
                            .reason(message),
                    );
                    // Judged again after a full delay, not every second: each try is a term.
                    self.observed
                        .lock()
                        .expect("observed lock")
                        .entry(state.primary)
                        .or_default()
                        .last_live = Some(Instant::now());
                }
            }
        }
    }

    /// Starts the next term of a change of primary. It is durable before anyone acts on it,
    /// and agents refuse anything of an older term from then on.
    async fn new_term(&self) -> anyhow::Result<ClusterState> {
        self.update_state(|s| s.term += 1).await
    }

    /// Sends `order` to the agent of `ordinal`. A member without a placement cannot be
    /// reached at all: that is an error of the record, not of the agent.
    async fn order(
        &self,
        ordinal: u32,
        order: Order,
        timeout: Duration,
    ) -> anyhow::Result<Result<OrderResult, AgentError>> {
        let state = self.state();
        let placement = state.placements.get(&ordinal).ok_or_else(|| {
            anyhow!(
                "{} has no placement in the cluster record",
                state.instance_name(ordinal)
            )
        })?;
        Ok(self
            .runtime
            .agents()
            .order(&placement.agent, &order, timeout)
            .await)
    }

    async fn fail_over(&self, reason: &str) -> anyhow::Result<()> {
        let old = self.state().primary;
        let state = self.new_term().await?;
        let term = state.term;
        self.record_event(
            Event::new(
                EventKind::Failover,
                format!(
                    "term {term}: primary {} failed ({reason}); fencing",
                    state.instance_name(old)
                ),
            )
            .ordinal(old)
            .term(term)
            .reason(reason),
        );

        // Kill the old primary first where the runtime can reach it: its death closes the
        // replicas' connections, so they stop receiving at once (a replica stuck reading from a
        // frozen primary can take seconds to obey STOP SLAVE).
        let killed = self.runtime.kill(old).await;
        if killed == KillOutcome::Killed {
            self.record_event(
                Event::new(
                    EventKind::Fenced,
                    format!("killed the processes of {}", state.instance_name(old)),
                )
                .ordinal(old)
                .term(term),
            );
        }
        // Fence: replicas stop receiving, so an isolated old primary can no longer collect acks.
        let busy = self.busy.lock().expect("busy lock").clone();
        let replicas: Vec<u32> = state
            .members
            .iter()
            .copied()
            .filter(|&o| o != old && !state.rejoin_pending.contains_key(&o))
            .filter(|o| !busy.contains(o))
            .collect();
        let fence = |o: u32| async move {
            let order = Order {
                term,
                action: OrderAction::Fence,
            };
            let result = self.order(o, order, self.timing.fence_timeout()).await;
            (o, result.and_then(|r| Ok(r?)))
        };
        let mut fenced = Vec::new();
        let mut unfenced = Vec::new();
        for (o, result) in futures::future::join_all(replicas.into_iter().map(fence)).await {
            match result {
                Ok(r) => fenced.push((o, r)),
                Err(e) => {
                    tracing::warn!(ordinal = o, "fence failed: {e:#}");
                    unfenced.push(format!("{} ({e:#})", state.instance_name(o)));
                }
            }
        }
        // A replica that may still receive from an old primary that may still run could be
        // acknowledging writes the new primary will never have: promote nobody then.
        if !unfenced.is_empty() && killed == KillOutcome::Unreachable {
            bail!(
                "term {term}: {} could not be fenced and {} cannot be reached to be stopped; promoting now could let two servers take writes",
                unfenced.join(", "),
                state.instance_name(old)
            );
        }
        let candidates = fenced
            .iter()
            .map(|(o, r)| candidate(*o, r))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let Some(chosen) = failover::choose_candidate(&candidates, &primary_server_ids(&state))
        else {
            bail!("term {term}: no replica without errant transactions could be fenced; nothing promoted");
        };
        // What the chosen replica received is all it will ever apply of the old primary's
        // history: it is the position a returning old primary is compared with.
        let chosen_received = candidates
            .iter()
            .find(|c| c.ordinal == chosen)
            .map(|c| c.received.to_string())
            .unwrap_or_default();
        let promotion = self
            .order(
                chosen,
                Order {
                    term,
                    action: OrderAction::Promote { wait_for: None },
                },
                self.timing.promote_timeout(),
            )
            .await?;
        let held_at = match promotion {
            Ok(promoted) => promoted.executed,
            // The order was delivered and the agent finishes it on its own (it runs orders to
            // completion): the decision of this term stands.
            Err(AgentError::Unreachable { detail, .. }) => {
                self.record_event(
                    Event::new(
                        EventKind::FailoverHeld,
                        format!(
                            "term {term}: {} did not confirm its promotion in time ({detail}); it stays the chosen primary",
                            state.instance_name(chosen)
                        ),
                    )
                    .ordinal(chosen)
                    .term(term)
                    .reason(detail),
                );
                chosen_received
            }
            Err(e) => bail!(
                "term {term}: promoting {} failed: {e}",
                state.instance_name(chosen)
            ),
        };
        self.complete_change(
            old,
            chosen,
            term,
            ChangeKind::Failover,
            reason,
            Some(held_at),
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
        let at_ms = self.now_ms();
        let state = self
            .update_state(|s| {
                s.primary = new;
                s.primary_server_ids.insert(ClusterState::server_id(old));
                s.primary_server_ids.insert(ClusterState::server_id(new));
                if let Some(position) = held_at {
                    s.rejoin_pending.insert(old, position);
                }
                s.last_primary_change = Some(PrimaryChange {
                    at_ms,
                    term,
                    from: old,
                    to: new,
                    kind,
                    reason: reason.to_string(),
                });
            })
            .await?;
        self.publish_endpoints();
        self.record_event(
            Event::new(
                EventKind::Promoted,
                format!(
                    "term {term}: {} is the primary ({kind}); rw moved",
                    state.instance_name(new)
                ),
            )
            .term(term)
            .change(old, new)
            .ordinal(new)
            .reason(reason),
        );
        // Best effort: the loop pushes again whatever did not get through.
        if let Err(e) = self.push_specs().await {
            tracing::warn!("after the change of primary: {e:#}");
        }
        Ok(())
    }

    /// A planned change of primary: the old primary stops taking writes, the target applies
    /// everything it wrote, then takes over. No acknowledged write is lost.
    pub async fn switchover(&self, to: Option<u32>) -> anyhow::Result<u32> {
        if self.state().topology == myset_api::Topology::Galera {
            anyhow::bail!(
                "a Galera cluster has no primary to switch over: every member is writable, and rw moves by itself to another Ready member when its own leaves"
            );
        }
        let _change = self.changing.lock().await;
        let result = self.switch_over(to).await;
        if let Err(e) = &result {
            let message = format!("{e:#}");
            self.record_event(
                Event::new(EventKind::SwitchoverFailed, message.clone()).reason(message),
            );
        }
        result
    }

    async fn switch_over(&self, to: Option<u32>) -> anyhow::Result<u32> {
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
                let candidates = self.switchover_candidates(&state, &ready)?;
                failover::choose_candidate(&candidates, &primary_server_ids(&state))
                    .ok_or_else(|| anyhow!("no Ready replica to switch over to"))?
            }
        };
        let state = self.new_term().await?;
        let term = state.term;
        self.record_event(
            Event::new(
                EventKind::Switchover,
                format!(
                    "term {term}: moving the primary from {} to {}",
                    state.instance_name(old),
                    state.instance_name(target)
                ),
            )
            .term(term)
            .change(old, target),
        );
        let demoted = self
            .order(
                old,
                Order {
                    term,
                    action: OrderAction::Demote,
                },
                self.timing.demote_timeout(),
            )
            .await??;
        let promotion = self
            .order(
                target,
                Order {
                    term,
                    action: OrderAction::Promote {
                        wait_for: Some(demoted.binlog.clone()),
                    },
                },
                self.timing.promote_timeout(),
            )
            .await?;
        match promotion {
            Ok(_) => {}
            // Delivered: the agent finishes it, and the old primary is read-only already, so
            // the target is the only server that can become writable. The decision stands.
            Err(AgentError::Unreachable { detail, .. }) => {
                tracing::warn!("promotion not confirmed in time ({detail}); it stands");
            }
            Err(e) => {
                // Refused: the old primary stays primary; its spec of the new term re-enables
                // writes.
                if let Err(push) = self.push_specs().await {
                    tracing::warn!("re-enabling {}: {push:#}", state.instance_name(old));
                }
                bail!(
                    "promoting {} failed, {} stays primary: {e}",
                    state.instance_name(target),
                    state.instance_name(old)
                );
            }
        }
        self.complete_change(old, target, term, ChangeKind::Switchover, "requested", None)
            .await?;
        Ok(target)
    }

    fn switchover_candidates(
        &self,
        state: &ClusterState,
        ready: &[u32],
    ) -> anyhow::Result<Vec<Candidate>> {
        let observed = self.observed.lock().expect("observed lock");
        let mut candidates = Vec::new();
        for &o in ready
            .iter()
            .filter(|&&o| o != state.primary && !state.rejoin_pending.contains_key(&o))
        {
            let Some(s) = observed.get(&o).and_then(|ob| ob.status.as_ref()) else {
                continue;
            };
            let Some(positions) = &s.gtid else { continue };
            let whose = state.instance_name(o);
            let executed = gtid(&positions.current, &whose)?;
            let received = match &s.replication {
                Some(r) if !r.received.is_empty() => gtid(&r.received, &whose)?,
                _ => executed.clone(),
            };
            candidates.push(Candidate {
                ordinal: o,
                received,
                executed,
            });
        }
        Ok(candidates)
    }

    /// Former primaries come back held; each rejoins as a replica if its data is contained in
    /// what the new primary had at promotion, or is set aside and re-cloned if not.
    pub(crate) async fn check_rejoins(self: &Arc<Self>) -> anyhow::Result<()> {
        let state = self.state();
        let mut failures = Vec::new();
        for (&ordinal, promoted_at) in &state.rejoin_pending {
            let name = state.instance_name(ordinal);
            if !state.members.contains(&ordinal) {
                self.update_state(|s| drop(s.rejoin_pending.remove(&ordinal)))
                    .await?;
                continue;
            }
            if self.busy.lock().expect("busy lock").contains(&ordinal) {
                continue;
            }
            let own = {
                let observed = self.observed.lock().expect("observed lock");
                observed
                    .get(&ordinal)
                    .and_then(|ob| ob.status.as_ref())
                    .filter(|s| s.live && s.role == Role::Replica && s.term == state.term)
                    .and_then(|s| s.gtid.as_ref())
                    .map(|g| g.current.clone())
            };
            let Some(own) = own else { continue };
            let positions = gtid(&own, &name).and_then(|own| {
                Ok((
                    own,
                    gtid(promoted_at, "the cluster record's promotion position")?,
                ))
            });
            let (own_pos, promoted_pos) = match positions {
                Ok(p) => p,
                // Held until someone looks: a guess could let a diverged server rejoin.
                Err(e) => {
                    failures.push(format!("{name} stays held: {e:#}"));
                    continue;
                }
            };
            match failover::rejoin(&own_pos, &promoted_pos) {
                Rejoin::AsReplica => {
                    self.update_state(|s| drop(s.rejoin_pending.remove(&ordinal)))
                        .await?;
                    self.record_event(
                        Event::new(
                            EventKind::Rejoined,
                            format!("{name} rejoins as a replica (its data {own} is contained in {promoted_at})"),
                        )
                        .ordinal(ordinal)
                        .term(state.term),
                    );
                }
                Rejoin::Reclone(reason) => self.set_aside(ordinal, reason),
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            bail!("{}", failures.join("; "))
        }
    }

    /// Stops a diverged former primary and moves its data aside, in the background (a clean
    /// stop can take long); the loop then re-clones it.
    fn set_aside(self: &Arc<Self>, ordinal: u32, reason: String) {
        if !self.busy.lock().expect("busy lock").insert(ordinal) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let state = me.state();
            let name = state.instance_name(ordinal);
            me.runtime.stop(ordinal).await;
            let label = format!("errant-term{}-{}", state.term, me.now_ms());
            let event = match me.runtime.set_aside_data(ordinal, &label).await {
                Ok(path) => {
                    me.observed.lock().expect("observed lock").remove(&ordinal);
                    let cleared = me
                        .update_state(|s| drop(s.rejoin_pending.remove(&ordinal)))
                        .await;
                    match cleared {
                        Ok(_) => Event::new(
                            EventKind::Errant,
                            format!("{name}: {reason}; its data dir is set aside at {path}; re-cloning it"),
                        ),
                        Err(e) => Event::new(
                            EventKind::Errant,
                            format!("{name}: {reason}; its data dir is set aside at {path}, but the record could not be updated: {e:#}"),
                        ),
                    }
                }
                Err(e) => Event::new(
                    EventKind::Errant,
                    format!("{name}: {reason}; cannot set its data aside: {e:#}"),
                ),
            };
            me.record_event(event.ordinal(ordinal).term(state.term).reason(reason));
            me.busy.lock().expect("busy lock").remove(&ordinal);
            me.wake.notify_one();
        });
    }
}
