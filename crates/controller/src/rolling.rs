//! Server settings and rolling restarts (`myset config set`, `myset restart`): dynamic
//! settings are set live on every server of their role; static ones, and a plain restart,
//! restart the replicas one at a time, switch over, then restart the old primary. A server
//! that does not come back with new settings is rolled back and the record keeps the old ones.

use crate::controller::Controller;
use anyhow::{anyhow, bail, Context};
use myset_api::{
    ClusterState, Event, EventKind, RollingOutcome, ServerSettings, SettingsRole, Topology,
};
use myset_core::rolling::{next_step, RollingStep};
use myset_runtime::{AgentApi, Runtime};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// How long a restarted server may take to be Ready again (crash recovery of a busy server
/// included) before the restart counts as failed.
const RESTART_DEADLINE: Duration = Duration::from_secs(180);

/// Settings being rolled out: the members already given them run them; the others keep the
/// record's until their turn. Kept in memory only: a controller that dies mid-way leaves the
/// record's settings, which every member takes at its next start.
#[derive(Debug, Clone)]
pub(crate) struct Rollout {
    pub(crate) settings: ServerSettings,
    pub(crate) given: BTreeSet<u32>,
}

/// Why a restarted server is not back.
#[derive(Debug)]
enum NotBack {
    /// Its agent counted a failed start: the server exited while starting.
    StartFailed,
    TimedOut,
    Other(anyhow::Error),
}

impl<R: Runtime> Controller<R> {
    /// The settings `ordinal` should run: those being rolled out once it has its turn, else
    /// the record's.
    pub(crate) fn settings_for(&self, state: &ClusterState, ordinal: u32) -> ServerSettings {
        let rollout = self.rollout.lock().expect("rollout lock");
        match rollout.as_ref() {
            Some(r) if r.given.contains(&ordinal) => r.settings.clone(),
            _ => state.settings.clone(),
        }
    }

    /// `myset config set`: checks, then applies `assignments` to the servers of `role`.
    pub async fn set_config(
        self: &Arc<Self>,
        role: SettingsRole,
        assignments: BTreeMap<String, String>,
    ) -> anyhow::Result<RollingOutcome> {
        let _one = self.one_rolling_at_a_time()?;
        let state = self.state();
        if state.topology == Topology::Galera && role != SettingsRole::All {
            bail!("Galera members have no primary or replica role: use --role all");
        }
        let mut next = state.settings.clone();
        next.part_mut(role).extend(assignments.clone());
        let keys: Vec<String> = assignments.keys().cloned().collect();
        let described = self.describe(&state, &keys).await?;
        if let Some(unknown) = described.iter().find(|v| v.dynamic.is_none()) {
            bail!(
                "{} is not a variable of this server; nothing was changed",
                unknown.name
            );
        }
        if next == state.settings {
            return Ok(self.outcome(next, vec![], vec![], None));
        }
        // Only a static setting whose value changes needs a restart.
        let changed =
            myset_core::settings::changed_keys(state.settings.part(role), next.part(role));
        let statics: Vec<&str> = described
            .iter()
            .filter(|v| v.dynamic == Some(false) && changed.contains(&v.name))
            .map(|v| v.name.as_str())
            .collect();
        let summary = assignments
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        if statics.is_empty() {
            let applied = self.apply_live_everywhere(&state, &next).await?;
            self.update_state(|s| s.settings = next.clone()).await?;
            self.record_event(
                Event::new(
                    EventKind::ServerSettingsChanged,
                    format!("{role} servers: {summary} (applied live)"),
                )
                .term(state.term),
            );
            self.wake.notify_one();
            return Ok(self.outcome(next, applied, vec![], None));
        }
        let why = format!(
            "{role} servers: {summary} ({} needs a restart)",
            statics.join(", ")
        );
        let done = self
            .roll(next.clone(), &why, Some(&statics.join(", ")))
            .await?;
        self.record_event(
            Event::new(EventKind::ServerSettingsChanged, why.clone())
                .term(self.state().term)
                .reason(why),
        );
        Ok(done)
    }

    /// `myset restart`: every server restarted once, in the rolling order, settings unchanged.
    pub async fn rolling_restart(self: &Arc<Self>) -> anyhow::Result<RollingOutcome> {
        let _one = self.one_rolling_at_a_time()?;
        let settings = self.state().settings;
        self.roll(settings, "requested", None).await
    }

    fn one_rolling_at_a_time(&self) -> anyhow::Result<tokio::sync::MutexGuard<'_, ()>> {
        self.rolling.try_lock().map_err(|_| {
            anyhow!("a settings change or rolling restart is already running; wait for it")
        })
    }

    fn outcome(
        &self,
        settings: ServerSettings,
        applied_live: Vec<String>,
        restarted: Vec<u32>,
        switchover: Option<(u32, u32)>,
    ) -> RollingOutcome {
        RollingOutcome {
            settings,
            applied_live,
            restarted,
            switchover,
        }
    }

    /// Asks a Ready member's server (the primary's first) what it knows of `names`.
    async fn describe(
        &self,
        state: &ClusterState,
        names: &[String],
    ) -> anyhow::Result<Vec<myset_api::VariableInfo>> {
        let ready = self.ready_ordinals();
        let asked = std::iter::once(state.primary)
            .chain(ready.iter().copied())
            .find(|o| ready.contains(o))
            .ok_or_else(|| anyhow!("no instance is Ready to check the settings against"))?;
        let agent = &self.placement(state, asked)?.agent;
        self.runtime
            .agents()
            .describe_variables(agent, names, self.timing.fence_timeout())
            .await
            .map_err(|e| anyhow!("cannot check the settings: {e}"))
    }

    fn placement<'a>(
        &self,
        state: &'a ClusterState,
        ordinal: u32,
    ) -> anyhow::Result<&'a myset_api::Placement> {
        state.placements.get(&ordinal).ok_or_else(|| {
            anyhow!(
                "{} has no placement in the cluster record",
                state.instance_name(ordinal)
            )
        })
    }

    /// Sets what changed between the record's settings and `next` live on every member, by
    /// its role; all or none: a refusal sets back the members already changed.
    async fn apply_live_everywhere(
        &self,
        state: &ClusterState,
        next: &ServerSettings,
    ) -> anyhow::Result<Vec<String>> {
        let mut done: Vec<(u32, BTreeMap<String, String>)> = Vec::new();
        let mut applied = BTreeSet::new();
        for &o in &state.members {
            let role = state.role_of(o);
            let before = state.settings.for_role(role);
            let after = next.for_role(role);
            let changes: BTreeMap<String, String> =
                myset_core::settings::changed_keys(&before, &after)
                    .into_iter()
                    .map(|k| {
                        let v = after[&k].clone();
                        (k, v)
                    })
                    .collect();
            if changes.is_empty() {
                continue;
            }
            let agent = &self.placement(state, o)?.agent;
            match self
                .runtime
                .agents()
                .apply_live(agent, state.term, &changes, self.timing.demote_timeout())
                .await
            {
                Ok(previous) => {
                    applied.extend(changes.keys().cloned());
                    done.push((o, previous));
                }
                Err(e) => {
                    for (undo, previous) in &done {
                        let agent = &self.placement(state, *undo)?.agent;
                        if let Err(e) = self
                            .runtime
                            .agents()
                            .apply_live(agent, state.term, previous, self.timing.demote_timeout())
                            .await
                        {
                            tracing::warn!("cannot set {undo}'s settings back: {e}");
                        }
                    }
                    bail!(
                        "{} refused the settings, nothing was changed: {}",
                        state.instance_name(o),
                        refusal(&e)
                    );
                }
            }
        }
        Ok(applied.into_iter().collect())
    }

    /// Restarts every member in the rolling order with `settings`, then records them. A
    /// member that does not come back is rolled back to the record's settings.
    async fn roll(
        self: &Arc<Self>,
        settings: ServerSettings,
        why: &str,
        new_static: Option<&str>,
    ) -> anyhow::Result<RollingOutcome> {
        let start = self.state();
        self.record_event(
            Event::new(
                EventKind::RollingRestartStarted,
                format!("rolling restart of {}: {why}", start.name),
            )
            .term(start.term)
            .reason(why),
        );
        *self.rollout.lock().expect("rollout lock") = Some(Rollout {
            settings: settings.clone(),
            given: BTreeSet::new(),
        });
        let result = self.roll_steps(new_static).await;
        let (restarted, switchover) = match result {
            Ok(done) => done,
            Err(e) => {
                // Every member goes back to the record's settings (static ones at their next
                // start).
                *self.rollout.lock().expect("rollout lock") = None;
                let message = format!("{e:#}");
                self.record_event(
                    Event::new(EventKind::RollingRestartFailed, message.clone()).reason(message),
                );
                self.wake.notify_one();
                return Err(e);
            }
        };
        // Recorded before the rollout is dropped, so no spec in between goes back to the old
        // settings.
        let recorded = self.update_state(|s| s.settings = settings.clone()).await;
        *self.rollout.lock().expect("rollout lock") = None;
        recorded?;
        self.record_event(
            Event::new(
                EventKind::RollingRestartDone,
                format!("rolling restart done: {restarted:?} restarted"),
            )
            .term(self.state().term),
        );
        self.wake.notify_one();
        Ok(self.outcome(settings, vec![], restarted, switchover))
    }

    async fn roll_steps(
        self: &Arc<Self>,
        new_static: Option<&str>,
    ) -> anyhow::Result<(Vec<u32>, Option<(u32, u32)>)> {
        let mut restarted = Vec::new();
        let mut switchover = None;
        loop {
            let state = self.state();
            let done: BTreeSet<u32> = restarted.iter().copied().collect();
            match next_step(state.topology, &state.members, state.primary, &done) {
                RollingStep::Done => return Ok((restarted, switchover)),
                RollingStep::Restart(o) => {
                    self.wait_others_ready(o).await?;
                    self.restart_member(o, new_static).await?;
                    restarted.push(o);
                }
                RollingStep::Switchover { from } => {
                    let to = self.switchover(None).await.with_context(|| {
                        format!(
                            "the replicas were restarted, but the switchover before restarting {} failed (the record keeps the previous settings)",
                            state.instance_name(from)
                        )
                    })?;
                    switchover = Some((from, to));
                }
            }
        }
    }

    /// Gives `ordinal` the settings being rolled out, restarts its server and waits until it
    /// is Ready again. Out of the endpoints meanwhile, like a drained Pod.
    async fn restart_member(&self, ordinal: u32, new_static: Option<&str>) -> anyhow::Result<()> {
        let state = self.state();
        let name = state.instance_name(ordinal);
        self.busy.lock().expect("busy lock").insert(ordinal);
        self.publish_endpoints();
        let result = self.restart_member_busy(&state, ordinal).await;
        let result = match result {
            Ok(()) => Ok(()),
            Err(NotBack::Other(e)) => Err(e),
            Err(why) => {
                let log = self.server_log_of(ordinal);
                let rolled_back = self.roll_back(&state, ordinal).await;
                let what = match new_static {
                    Some(keys) => {
                        format!("{keys}: {name}'s server did not start with the new value")
                    }
                    None => format!("{name}'s server did not come back from its restart"),
                };
                let how = match why {
                    NotBack::StartFailed => "it exited while starting",
                    _ => "not Ready in time",
                };
                let back = match rolled_back {
                    Ok(()) => "rolled back, it runs the previous settings; nothing else changed"
                        .to_string(),
                    Err(e) => format!("rolling it back failed too: {e:#}"),
                };
                Err(anyhow!("{what} ({how}; see {log}); {back}"))
            }
        };
        self.busy.lock().expect("busy lock").remove(&ordinal);
        self.wake.notify_one();
        result?;
        // Back in the endpoints (and acknowledging commits) before the next step.
        self.wait_ready(ordinal, RESTART_DEADLINE)
            .await
            .map_err(|_| anyhow!("{name} restarted but the controller does not see it Ready"))?;
        self.record_event(
            Event::new(
                EventKind::InstanceRestarted,
                format!("{name} restarted and is Ready"),
            )
            .ordinal(ordinal)
            .term(state.term),
        );
        Ok(())
    }

    async fn restart_member_busy(&self, state: &ClusterState, ordinal: u32) -> Result<(), NotBack> {
        if let Some(r) = self.rollout.lock().expect("rollout lock").as_mut() {
            r.given.insert(ordinal);
        }
        self.send_spec(state, ordinal)
            .await
            .map_err(NotBack::Other)?;
        let (pid, restarts) = self.server_of(ordinal);
        let agent = &self
            .placement(state, ordinal)
            .map_err(NotBack::Other)?
            .agent;
        self.runtime
            .agents()
            .restart_server(agent, state.term, self.timing.fence_timeout())
            .await
            .map_err(|e| {
                NotBack::Other(anyhow!(
                    "cannot restart {}: {e}",
                    state.instance_name(ordinal)
                ))
            })?;
        self.wait_restarted(ordinal, pid, restarts).await
    }

    /// Sends `ordinal` its spec now (the loop would, but the restart must follow it).
    async fn send_spec(&self, state: &ClusterState, ordinal: u32) -> anyhow::Result<()> {
        let mut spec = self.spec_for(state, ordinal, false, &[], myset_api::GaleraStart::Join)?;
        let sent = self
            .observed
            .lock()
            .expect("observed lock")
            .get(&ordinal)
            .and_then(|ob| ob.sent.clone());
        if let Some(sent) = &sent {
            spec.bootstrap = sent.bootstrap;
            spec.donors = sent.donors.clone();
        }
        self.runtime
            .agents()
            .put_spec(&spec, self.timing.fence_timeout())
            .await
            .map_err(|e| {
                anyhow!(
                    "cannot send {} its settings: {e}",
                    state.instance_name(ordinal)
                )
            })?;
        if let Some(ob) = self
            .observed
            .lock()
            .expect("observed lock")
            .get_mut(&ordinal)
        {
            ob.sent = Some(spec);
        }
        Ok(())
    }

    /// The server's pid and failed-start count as last reported.
    fn server_of(&self, ordinal: u32) -> (Option<u32>, u32) {
        let observed = self.observed.lock().expect("observed lock");
        let status = observed.get(&ordinal).and_then(|ob| ob.status.as_ref());
        (
            status.and_then(|s| s.pid),
            status.map(|s| s.restarts).unwrap_or(0),
        )
    }

    fn server_log_of(&self, ordinal: u32) -> String {
        self.observed
            .lock()
            .expect("observed lock")
            .get(&ordinal)
            .and_then(|ob| ob.status.as_ref()?.server_log.clone())
            .unwrap_or_else(|| "its mariadbd.log".into())
    }

    /// Waits until the agent reports a new server that is Ready; fails as soon as the agent
    /// counts a failed start, or at the deadline. Reads what the loop observes every period.
    async fn wait_restarted(
        &self,
        ordinal: u32,
        old_pid: Option<u32>,
        old_restarts: u32,
    ) -> Result<(), NotBack> {
        let verdict = || {
            self.wake.notify_one();
            let observed = self.observed.lock().expect("observed lock");
            let verdict = observed
                .get(&ordinal)
                .and_then(|ob| ob.status.as_ref())
                .map(|s| restart_verdict(ServerSample::of(s), old_pid, old_restarts));
            std::future::ready(match verdict {
                Some(RestartVerdict::Back) => Ok(Some(())),
                Some(RestartVerdict::StartFailed) => Err(NotBack::StartFailed),
                _ => Ok(None),
            })
        };
        myset_os::poll_for(RESTART_DEADLINE, self.timing.probe_period, verdict)
            .await?
            .ok_or(NotBack::TimedOut)
    }

    /// Waits until every member but `ordinal` is Ready: after a switchover the other replicas
    /// must follow the new primary (and acknowledge its commits) before the old one stops,
    /// or commits wait for them.
    async fn wait_others_ready(&self, ordinal: u32) -> anyhow::Result<()> {
        let not_ready = || {
            let state = self.state();
            let ready = self.ready_ordinals();
            let mut waiting: Vec<String> = state
                .members
                .iter()
                .filter(|&&o| o != ordinal && !ready.contains(&o))
                .map(|&o| state.instance_name(o))
                .collect();
            if !self.every_replica_acknowledges(&state) {
                waiting.push("the replicas' semi-sync acknowledgements".into());
            }
            waiting
        };
        let settled = myset_os::poll_until(RESTART_DEADLINE, self.timing.probe_period / 10, || {
            self.wake.notify_one();
            not_ready().is_empty()
        })
        .await;
        if !settled {
            bail!(
                "stopped before restarting {}: {} not Ready",
                self.state().instance_name(ordinal),
                not_ready().join(", ")
            );
        }
        Ok(())
    }

    /// Whether the primary reports every replica connected as a semi-sync acknowledger (a
    /// Ready replica may have been observed before a switchover repointed it). Anything but
    /// semi-synchronous replication has nothing to wait for.
    fn every_replica_acknowledges(&self, state: &ClusterState) -> bool {
        if state.topology != Topology::Replication
            || state.durability != myset_api::Durability::Semisync
            || state.members.len() < 2
        {
            return true;
        }
        let replicas = state.members.len() as u32 - 1;
        self.observed
            .lock()
            .expect("observed lock")
            .get(&state.primary)
            .and_then(|ob| ob.status.as_ref())
            .is_some_and(|s| {
                s.role == myset_api::Role::Primary && s.semisync_clients >= Some(replicas)
            })
    }

    /// Waits until the controller counts `ordinal` Ready (in the endpoints).
    async fn wait_ready(&self, ordinal: u32, limit: Duration) -> anyhow::Result<()> {
        let ready = myset_os::poll_until(limit, self.timing.probe_period, || {
            self.wake.notify_one();
            self.ready_ordinals().contains(&ordinal)
        })
        .await;
        if !ready {
            bail!("not Ready");
        }
        Ok(())
    }

    /// Gives `ordinal` the record's settings again; its agent, retrying the failed start,
    /// renders them at its next try. Waits until it is Ready.
    async fn roll_back(&self, state: &ClusterState, ordinal: u32) -> anyhow::Result<()> {
        if let Some(r) = self.rollout.lock().expect("rollout lock").as_mut() {
            r.given.remove(&ordinal);
        }
        self.send_spec(state, ordinal).await?;
        let back = myset_os::poll_until(RESTART_DEADLINE, self.timing.probe_period, || {
            self.wake.notify_one();
            self.observed
                .lock()
                .expect("observed lock")
                .get(&ordinal)
                .and_then(|ob| ob.status.as_ref())
                .is_some_and(|s| s.ready && s.pid.is_some())
        })
        .await;
        if !back {
            bail!("not Ready within {RESTART_DEADLINE:?}");
        }
        Ok(())
    }
}

/// Where a restarted server is, from its agent's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RestartVerdict {
    /// A new server runs and is Ready.
    Back,
    /// The agent counted a failed start since the restart was asked.
    StartFailed,
    Waiting,
}

/// What a restart is judged on in an agent's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ServerSample {
    pub(crate) pid: Option<u32>,
    /// Failed starts the agent counted.
    pub(crate) restarts: u32,
    pub(crate) ready: bool,
}

impl ServerSample {
    fn of(status: &myset_api::AgentStatus) -> Self {
        ServerSample {
            pid: status.pid,
            restarts: status.restarts,
            ready: status.ready,
        }
    }
}

/// Judges an agent's report after a restart was asked of a server that had `old_pid` and
/// `old_restarts` failed starts.
pub(crate) fn restart_verdict(
    now: ServerSample,
    old_pid: Option<u32>,
    old_restarts: u32,
) -> RestartVerdict {
    if now.restarts > old_restarts {
        RestartVerdict::StartFailed
    } else if now.pid.is_some() && now.pid != old_pid && now.ready {
        RestartVerdict::Back
    } else {
        RestartVerdict::Waiting
    }
}

/// An agent's refusal, without the URL around it.
fn refusal(e: &myset_runtime::AgentError) -> String {
    match e {
        myset_runtime::AgentError::Refused { detail, .. }
        | myset_runtime::AgentError::Unreachable { detail, .. } => detail.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(pid: Option<u32>, restarts: u32, ready: bool) -> ServerSample {
        ServerSample {
            pid,
            restarts,
            ready,
        }
    }

    #[test]
    fn a_restart_is_done_when_a_new_server_is_ready_and_failed_when_a_start_failed() {
        use RestartVerdict::*;
        // Not restarted yet: the old server still answers.
        assert_eq!(
            restart_verdict(status(Some(10), 0, true), Some(10), 0),
            Waiting
        );
        // Stopped, starting.
        assert_eq!(
            restart_verdict(status(None, 0, false), Some(10), 0),
            Waiting
        );
        assert_eq!(
            restart_verdict(status(Some(11), 0, false), Some(10), 0),
            Waiting
        );
        assert_eq!(
            restart_verdict(status(Some(11), 0, true), Some(10), 0),
            Back
        );
        // The new server exited while starting: the agent counted it.
        assert_eq!(
            restart_verdict(status(None, 1, false), Some(10), 0),
            StartFailed
        );
        assert_eq!(
            restart_verdict(status(Some(12), 3, true), Some(10), 2),
            StartFailed
        );
    }
}
