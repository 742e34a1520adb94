//! The reconcile loop: the controller's state and the steps that converge the cluster to it.

use myset_api::{
    Address, AgentStatus, ClusterState, ClusterStatus, Credentials, Donor, Event, EventKind,
    GaleraSpec, GaleraStart, InstanceSpec, InstanceState, InstanceStatus, Phase, Role, Secrets,
    Topology,
};
use myset_core::{Readiness, StartPlan, Transition};
use myset_runtime::{AgentApi, Runtime};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the controller probes and reconciles, and how long one agent call may take.
/// Every other controller timeout is derived from these.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub probe_period: Duration,
    pub probe_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            probe_period: Duration::from_secs(1),
            probe_timeout: Duration::from_secs(1),
        }
    }
}

impl Timing {
    /// A fence is one statement on a replica, but it must get through a busy agent.
    pub fn fence_timeout(&self) -> Duration {
        self.probe_timeout * 3
    }

    /// Demoting cuts sessions and waits for in-flight commits to be released.
    pub fn demote_timeout(&self) -> Duration {
        self.probe_timeout * 5
    }

    /// A promotion waits for the candidate to apply its relay log, which the agent bounds by
    /// `myset_api::limits::APPLY_TIMEOUT`; the controller waits a little longer than that, so
    /// the agent's own verdict arrives first.
    pub fn promote_timeout(&self) -> Duration {
        myset_api::limits::APPLY_TIMEOUT + self.probe_timeout * 5
    }
}

/// How often instances coming up are checked between probe ticks, so that `up`, a scale-up or
/// a restart is noticed Ready within this rather than within a probe period.
const QUICK_CHECK_PERIOD: Duration = Duration::from_millis(100);
/// How long one of those checks may wait for an agent. The loop waits for the check, so a hung
/// agent coming up must delay the probe tick of the others by no more than this.
const QUICK_CHECK_TIMEOUT: Duration = Duration::from_millis(250);

/// How the agent of an instance is restarted when it keeps dying: a few times at once (a
/// killed Pod comes back at once), then ever more slowly, like a Pod's CrashLoopBackOff.
const AGENT_RESTARTS: myset_core::RestartPolicy = myset_core::RestartPolicy {
    stable_ms: 3_000,
    burst: 5,
    window_ms: 60_000,
    first_delay_ms: 1_000,
    max_delay_ms: 30_000,
};

/// The member rw routes to: the primary; for Galera, one Ready member at a time (the recorded
/// primary while it is Ready, else the lowest Ready ordinal), None while none is Ready.
fn writer(state: &ClusterState, ready: &[u32]) -> Option<u32> {
    match state.topology {
        Topology::Replication => Some(state.primary),
        Topology::Galera if ready.contains(&state.primary) => Some(state.primary),
        Topology::Galera => ready.first().copied(),
    }
}

/// What the controller last saw of one ordinal.
#[derive(Default)]
pub(crate) struct Observed {
    pub(crate) readiness: Readiness,
    pub(crate) status: Option<AgentStatus>,
    /// When the instance was last seen live (agent answering, server answering).
    pub(crate) last_live: Option<Instant>,
    /// When `status` was last answered.
    observed_at: Option<Instant>,
    /// The donor whose clone was reported for the agent's current start.
    clone_reported: Option<u32>,
    /// When this controller last started the instance's agent.
    pub(crate) started_at: Option<Instant>,
    /// Why the instance is not running or not ready, in words.
    note: Option<String>,
    /// The last spec the agent accepted.
    pub(crate) sent: Option<InstanceSpec>,
    /// When this controller started the instance's agent, to space out restarts of an agent
    /// that keeps dying young.
    starts: myset_core::RestartHistory,
    /// Times a clone of this instance, for the clone-duration metric.
    clone: crate::metrics::CloneClock,
}

impl Observed {
    /// The last report, if it still describes the instance: its agent runs, and answered
    /// since it was last (re)started. A killed instance must not show as Ready with the pid
    /// of a server that is gone until the next observation.
    fn current_status(&self, agent_running: bool) -> Option<&AgentStatus> {
        let since_start = match (self.observed_at, self.started_at) {
            (Some(observed), Some(started)) => observed >= started,
            (observed, None) => observed.is_some(),
            (None, Some(_)) => false,
        };
        self.status
            .as_ref()
            .filter(|_| agent_running && since_start)
    }

    /// The donor an instance's report shows it cloning (or, for a clone quicker than an
    /// observation, having cloned) from, and whether the clone is done, the first time the
    /// reports of this start of its agent show that donor.
    /// Agents this controller did not start (adopted after a restart of the controller) were
    /// reported by the one that started them.
    fn newly_cloned_from(&mut self) -> Option<(u32, bool)> {
        self.started_at?;
        let status = self.status.as_ref()?;
        let (donor, done) = match (&status.phase, status.cloned_from) {
            (Phase::Cloning { donor, .. } | Phase::Preparing { donor }, _) => (*donor, false),
            (_, Some(donor)) => (donor, true),
            _ => return None,
        };
        (self.clone_reported != Some(donor)).then(|| {
            self.clone_reported = Some(donor);
            (donor, done)
        })
    }
}

/// The reconcile steps, for reporting a failing one once rather than every second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Step {
    Membership,
    Record,
    Start,
    Specs,
    Rejoin,
    /// Publishing rw and ro through an [`crate::EndpointPublisher`].
    Endpoints,
}

pub struct Controller<R: Runtime> {
    pub(crate) runtime: R,
    pub(crate) secrets: Secrets,
    pub(crate) timing: Timing,
    /// The cluster record. Only writers take this lock, and they hold it while the new record
    /// is persisted, so each change is durable before the next is computed from it.
    record: tokio::sync::Mutex<ClusterState>,
    /// The latest durable record, for readers: they never wait behind a write.
    snapshot: watch::Sender<ClusterState>,
    pub(crate) observed: Mutex<BTreeMap<u32, Observed>>,
    /// Ordinals with a slow lifecycle operation in flight (leaving the cluster, data being set
    /// aside): they are not restarted, not routed to and not promoted meanwhile.
    pub(crate) busy: Mutex<BTreeSet<u32>>,
    pub(crate) rw: watch::Sender<Vec<Address>>,
    pub(crate) ro: watch::Sender<Vec<Address>>,
    pub(crate) stop: CancellationToken,
    pub(crate) wake: Notify,
    /// Serialises the changes of primary (failover in the loop, switchover from the API).
    pub(crate) changing: tokio::sync::Mutex<()>,
    /// The last reason a failover was held back, so it is reported once.
    pub(crate) hold_reason: Mutex<Option<String>>,
    /// Galera: since when every running member has been outside a Primary component.
    pub(crate) galera_no_primary_since: Mutex<Option<Instant>>,
    /// The last error of each failing step, so it is reported once.
    step_errors: Mutex<BTreeMap<Step, String>>,
    /// Since when the primary's commits wait for an acknowledgement, as last reported.
    commits_waiting: Mutex<Option<u64>>,
    pub(crate) started: Instant,
    /// Wall-clock milliseconds at `started`; with the monotonic clock this gives `now_ms`.
    started_wall_ms: u64,
    /// Base backups and the binlog archive, where the runtime has a store.
    pub(crate) backups: std::sync::OnceLock<crate::backups::Backups>,
    /// The API's certificate and the CA agents and servers are verified by; unset: plain.
    pub(crate) tls: std::sync::OnceLock<crate::tls::ControllerTls>,
    pub(crate) metrics: crate::metrics::Metrics,
    /// Where the API listens, once it does (not when only the loop runs, as on Kubernetes).
    api_address: std::sync::OnceLock<Address>,
    /// A second token that reads `/metrics` and nothing else, where the runtime has one.
    pub(crate) metrics_token: std::sync::OnceLock<Arc<str>>,
    /// One settings change or rolling restart at a time.
    pub(crate) rolling: tokio::sync::Mutex<()>,
    /// Settings being rolled out, and the members that have them already.
    pub(crate) rollout: Mutex<Option<crate::rolling::Rollout>>,
    /// Carries rw and ro instead of the controller's proxies, where the runtime has one.
    publisher: std::sync::OnceLock<Arc<dyn crate::EndpointPublisher>>,
    /// How rw and ro are carried, once `run_with` serves them.
    endpoint_path: std::sync::OnceLock<myset_api::EndpointPath>,
}

impl<R: Runtime> Controller<R> {
    pub fn new(runtime: R, state: ClusterState, secrets: Secrets, timing: Timing) -> Arc<Self> {
        let started_wall_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        Arc::new(Controller {
            runtime,
            secrets,
            timing,
            metrics: crate::metrics::Metrics::new(&state.name),
            snapshot: watch::Sender::new(state.clone()),
            record: tokio::sync::Mutex::new(state),
            observed: Mutex::new(BTreeMap::new()),
            busy: Mutex::new(BTreeSet::new()),
            rw: watch::Sender::new(Vec::new()),
            ro: watch::Sender::new(Vec::new()),
            stop: CancellationToken::new(),
            wake: Notify::new(),
            changing: tokio::sync::Mutex::new(()),
            hold_reason: Mutex::new(None),
            galera_no_primary_since: Mutex::new(None),
            step_errors: Mutex::new(BTreeMap::new()),
            commits_waiting: Mutex::new(None),
            started: Instant::now(),
            started_wall_ms,
            backups: std::sync::OnceLock::new(),
            tls: std::sync::OnceLock::new(),
            api_address: std::sync::OnceLock::new(),
            metrics_token: std::sync::OnceLock::new(),
            rolling: tokio::sync::Mutex::new(()),
            rollout: Mutex::new(None),
            publisher: std::sync::OnceLock::new(),
            endpoint_path: std::sync::OnceLock::new(),
        })
    }

    /// Lets `token` read `/metrics` (and nothing else) besides the API token, so a scraper
    /// needs no token that can change the cluster. Call before `run_with`.
    pub fn enable_metrics_token(&self, token: &str) {
        if self.metrics_token.set(token.into()).is_err() {
            tracing::warn!("a metrics token was given twice; the first stays");
        }
    }

    /// Gives the controller a backup store: it then takes base backups on request and on
    /// schedule, and archives the primary's binlog (replication). Call before `run_with`.
    pub fn enable_backups(&self, backups: crate::backups::Backups) {
        if self.backups.set(backups).is_err() {
            tracing::warn!("backups were enabled twice; the first store stays");
        }
    }

    /// Has `publisher` carry rw and ro instead of the controller's proxies (the local
    /// runtime's kernel mode). Call before `run_with`.
    pub fn publish_endpoints_through(&self, publisher: Arc<dyn crate::EndpointPublisher>) {
        if self.publisher.set(publisher).is_err() {
            tracing::warn!("an endpoint publisher was given twice; the first stays");
        }
    }

    /// Binds the endpoints and serves the API, calls `on_listening` once clients can connect,
    /// then reconciles until asked to stop; on stop, stops every instance (data kept).
    pub async fn run_with(
        self: Arc<Self>,
        api_listener: tokio::net::TcpListener,
        on_listening: impl FnOnce() -> std::io::Result<()>,
    ) -> anyhow::Result<()> {
        let (host, rw_port, ro_port) = {
            let s = self.state();
            (s.bind_host.clone(), s.rw_port, s.ro_port)
        };
        // rw needs no observation: it goes to the recorded primary from the first moment.
        self.publish_endpoints();
        let published = match self.publisher.get().cloned() {
            Some(publisher) => {
                // The proxies listen on the ports too. The kernel rewrites every connection it
                // has a rule for before any socket sees it, so only those that found no server
                // (no primary yet, an empty ro) reach a proxy, which holds them as it always
                // does until a server appears. Listening also keeps the ports from other
                // programs, and binds where the last proxy's connections linger in TIME_WAIT.
                self.serve_proxies(&host, rw_port, ro_port).await?;
                let _ = self.endpoint_path.set(publisher.path());
                Some(tokio::spawn(self.clone().follow_endpoints(publisher)))
            }
            None => {
                let _ = self.endpoint_path.set(myset_api::EndpointPath::Userspace);
                self.serve_proxies(&host, rw_port, ro_port).await?;
                None
            }
        };
        if let Ok(a) = api_listener.local_addr() {
            let _ = self.api_address.set(Address {
                host: a.ip().to_string(),
                port: a.port(),
            });
        }
        tokio::spawn(crate::api::serve(self.clone(), api_listener));
        tokio::spawn(self.clone().run_backups());
        tokio::spawn(self.clone().run_certificate_renewal());
        on_listening()?;
        self.clone().run_loop().await;
        // Withdrawn before the servers stop, so new clients are refused rather than stalled.
        if let Some(follow) = published {
            let _ = follow.await;
        }
        self.shutdown().await;
        Ok(())
    }

    /// Binds rw and ro and serves them with the controller's own proxies.
    async fn serve_proxies(
        self: &Arc<Self>,
        host: &str,
        rw_port: u16,
        ro_port: u16,
    ) -> anyhow::Result<()> {
        let rw_listener = crate::proxy::bind(host, rw_port, "--rw-port").await?;
        let ro_listener = crate::proxy::bind(host, ro_port, "--ro-port").await?;
        let suspect = {
            let me = Arc::downgrade(self);
            Arc::new(move |backend: &Address, why: crate::proxy::Suspicion| {
                if let Some(c) = me.upgrade() {
                    c.report_suspect(backend, why);
                }
            })
        };
        let rw = crate::proxy::Endpoint {
            name: "rw",
            cut_removed: true,
            metrics: self.metrics.rw.clone(),
        };
        let ro = crate::proxy::Endpoint {
            name: "ro",
            cut_removed: false,
            metrics: self.metrics.ro.clone(),
        };
        tokio::spawn(crate::proxy::serve(
            rw,
            rw_listener,
            self.rw.subscribe(),
            suspect.clone(),
            self.stop.clone(),
        ));
        tokio::spawn(crate::proxy::serve(
            ro,
            ro_listener,
            self.ro.subscribe(),
            suspect,
            self.stop.clone(),
        ));
        Ok(())
    }

    /// Reconciles every probe period, and at once when woken, until asked to stop. Serves no
    /// endpoint and leaves every instance running when it returns: the Kubernetes operator
    /// runs it directly (Services route clients there, and instances must outlive a change
    /// of operator leader), and [`Controller::run_with`] adds the local endpoints around it.
    pub async fn run_loop(self: Arc<Self>) {
        self.record_event(
            Event::new(
                EventKind::ControllerStarted,
                format!("controller started (pid {})", std::process::id()),
            )
            .term(self.state().term),
        );
        let mut ticker = tokio::time::interval(self.timing.probe_period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let coming_up = self.coming_up();
            let primary_suspect = self.primary_suspect();
            tokio::select! {
                _ = ticker.tick() => self.reconcile().await,
                _ = self.wake.notified() => self.reconcile().await,
                _ = tokio::time::sleep(QUICK_CHECK_PERIOD),
                    if !coming_up.is_empty() || primary_suspect => {
                    self.reconcile_quickly(&coming_up, primary_suspect).await
                }
                _ = self.stop.cancelled() => break,
            }
        }
    }

    /// Instances checked between probe ticks: those coming up after a start by this
    /// controller (see [`myset_core::check_quickly`]). Galera members are left to the tick:
    /// their readiness compares every member's view.
    fn coming_up(&self) -> BTreeSet<u32> {
        let state = self.state();
        if state.topology == Topology::Galera {
            return BTreeSet::new();
        }
        let observed = self.observed.lock().expect("observed lock");
        state
            .members
            .iter()
            .copied()
            .filter(|o| {
                observed.get(o).is_some_and(|ob| {
                    let since_start = ob.started_at.map(|t| t.elapsed().as_millis() as u64);
                    myset_core::check_quickly(&ob.readiness, since_start)
                })
            })
            .collect()
    }

    /// A quick check between probe ticks. It checks the instances coming up; when one became
    /// Ready, it finishes the pass at once (endpoints, starting the members that wait for it,
    /// specs) instead of on the next tick. While the primary looks unhealthy it checks every
    /// member and judges the primary, so a failover comes when the delay runs out rather than
    /// on the next tick. A failed quick check changes nothing (see [`Self::observe`]), so
    /// failure detection keeps the tick, and the judgement asks what it always asks.
    async fn reconcile_quickly(self: &Arc<Self>, coming_up: &BTreeSet<u32>, primary_suspect: bool) {
        let checked = if primary_suspect {
            self.state().members
        } else {
            coming_up.clone()
        };
        if self.observe(Some(&checked)).await {
            self.reconcile_after_observe().await;
        } else if primary_suspect {
            // A change of primary in progress (a switchover, a failover) is judged again
            // after it ends.
            if let Ok(_change) = self.changing.try_lock() {
                self.watch_primary().await;
            }
        }
    }

    /// The cluster record as it changes (each value is durable), for runtimes that route
    /// clients themselves, such as relabelling the primary's Pod.
    pub fn watch_record(&self) -> watch::Receiver<ClusterState> {
        self.snapshot.subscribe()
    }

    /// The runtime it drives, for what the runtime does beside the loop (the Kubernetes
    /// operator's listing and labelling).
    pub fn runtime(&self) -> &R {
        &self.runtime
    }

    /// The latest durable cluster record.
    pub fn state(&self) -> ClusterState {
        self.snapshot.borrow().clone()
    }

    /// Changes the cluster record and returns once the change is durable. Nothing is changed
    /// when persisting fails.
    pub(crate) async fn update_state(
        &self,
        change: impl FnOnce(&mut ClusterState),
    ) -> anyhow::Result<ClusterState> {
        let mut record = self.record.lock().await;
        let mut next = record.clone();
        change(&mut next);
        if next != *record {
            self.runtime.save_state(&next).await?;
            *record = next.clone();
            self.snapshot.send_replace(next.clone());
        }
        Ok(next)
    }

    /// Wall-clock milliseconds, advancing with the controller's monotonic clock (so a paused
    /// clock in tests pauses it too).
    pub(crate) fn now_ms(&self) -> u64 {
        self.started_wall_ms + self.started.elapsed().as_millis() as u64
    }

    pub(crate) fn event(&self, kind: EventKind, message: String) {
        self.record_event(Event::new(kind, message));
    }

    /// Logs and records an event with its structured fields.
    pub fn record_event(&self, event: Event) {
        tracing::info!(kind = %event.kind, "{}", event.message);
        let instance = event.ordinal.map(|o| (self.state().instance_name(o), o));
        self.metrics.count_event(event.kind, instance);
        self.runtime.record_event(&event);
    }

    /// Accepts a new desired size; the loop converges to it.
    pub async fn request_scale(&self, replicas: u32, delete_data: bool) -> anyhow::Result<()> {
        if self.state().topology == Topology::Galera {
            myset_core::galera::check_size(replicas).map_err(anyhow::Error::msg)?;
        }
        let from = self.state().replicas;
        self.update_state(|s| {
            s.replicas = replicas;
            s.delete_data_on_removal = delete_data;
        })
        .await?;
        if from != replicas {
            self.event(
                EventKind::Scale,
                format!("desired replicas {from} -> {replicas}"),
            );
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Accepts new durability and failover-delay settings; the next pass sends members specs
    /// that carry them (semi-sync on the primary, the isolation bound on every member).
    pub async fn request_settings(
        &self,
        durability: myset_api::Durability,
        failover_delay_ms: u64,
    ) -> anyhow::Result<()> {
        let before = self.state();
        if before.durability == durability && before.failover_delay_ms == failover_delay_ms {
            return Ok(());
        }
        self.update_state(|s| {
            s.durability = durability;
            s.failover_delay_ms = failover_delay_ms;
        })
        .await?;
        self.event(
            EventKind::SettingsChanged,
            format!(
                "durability {} -> {durability}, failover delay {}ms -> {failover_delay_ms}ms",
                before.durability, before.failover_delay_ms
            ),
        );
        self.wake.notify_one();
        Ok(())
    }

    pub(crate) fn api_token(&self) -> &str {
        &self.secrets.api_token
    }

    pub fn request_stop(&self) {
        self.stop.cancel();
    }

    /// One pass of the loop. Each step's failure is reported (once) and the pass goes on, so
    /// no step can keep health observation and failover from running.
    pub async fn reconcile(self: &Arc<Self>) {
        let result = self.converge_membership().await;
        self.report_step(Step::Membership, result);
        self.observe(None).await;
        self.reconcile_after_observe().await;
    }

    /// The steps of a pass that act on what was observed.
    async fn reconcile_after_observe(self: &Arc<Self>) {
        self.publish_endpoints();
        let state = self.state();
        if !state.initialized && self.runtime.has_data(state.primary) {
            let result = self.update_state(|s| s.initialized = true).await.map(drop);
            self.report_step(Step::Record, result);
        }
        // A change of primary (here or a switchover) excludes the others; waiting for a
        // switchover to finish is right, since it changes who the primary is.
        if state.topology == Topology::Galera {
            let result = self.galera_bookkeeping().await;
            self.report_step(Step::Record, result);
        } else {
            let _change = self.changing.lock().await;
            let result = self.check_rejoins().await;
            self.report_step(Step::Rejoin, result);
            self.watch_primary().await;
        }
        let result = self.start_missing().await;
        self.report_step(Step::Start, result);
        let result = self.push_specs().await;
        self.report_step(Step::Specs, result);
    }

    /// Records a failing step's error as an event the first time it is seen, and clears it
    /// when the step succeeds again.
    pub(crate) fn report_step(&self, step: Step, result: anyhow::Result<()>) {
        let mut errors = self.step_errors.lock().expect("step errors lock");
        match result {
            Ok(()) => {
                errors.remove(&step);
            }
            Err(e) => {
                let message = format!("{e:#}");
                tracing::warn!(?step, "{message}");
                if errors.get(&step) != Some(&message) {
                    errors.insert(step, message.clone());
                    drop(errors);
                    self.record_event(
                        Event::new(
                            EventKind::ReconcileFailed,
                            format!("{step:?} step failed: {message}"),
                        )
                        .reason(message),
                    );
                }
            }
        }
    }

    /// Adds ordinals on scale-up; on scale-down starts removing the highest non-primary ones
    /// in the background, so the loop (and a failover) never waits for a graceful stop.
    async fn converge_membership(self: &Arc<Self>) -> anyhow::Result<()> {
        let mut state = self.state();
        for ordinal in myset_core::scale_up_additions(&state.members, state.replicas) {
            // Placed against the record as updated by the previous addition, so two new
            // ordinals never get the same ports.
            let placement = match state.placements.get(&ordinal) {
                Some(p) => p.clone(),
                None => self.runtime.place(ordinal, &state)?,
            };
            state = self
                .update_state(|s| {
                    s.members.insert(ordinal);
                    s.placements.insert(ordinal, placement);
                })
                .await?;
            self.record_event(
                Event::new(
                    EventKind::MemberAdded,
                    format!("{} joins", state.instance_name(ordinal)),
                )
                .ordinal(ordinal),
            );
        }
        let victims = myset_core::scale_down_victims(&state.members, state.replicas, state.primary);
        for ordinal in victims {
            if !self.busy.lock().expect("busy lock").insert(ordinal) {
                continue;
            }
            // Out of the read pool before it stops.
            self.publish_endpoints();
            let me = self.clone();
            tokio::spawn(async move {
                let result = me.remove_member(ordinal).await;
                me.busy.lock().expect("busy lock").remove(&ordinal);
                me.report_step(Step::Membership, result);
                me.wake.notify_one();
            });
        }
        Ok(())
    }

    /// Stops a leaving member, deletes its data if asked, then drops it from the membership:
    /// until then `status` still lists it, so `scale` returns only once it is really gone.
    async fn remove_member(&self, ordinal: u32) -> anyhow::Result<()> {
        let state = self.state();
        let name = state.instance_name(ordinal);
        self.runtime.stop(ordinal).await;
        self.observed
            .lock()
            .expect("observed lock")
            .remove(&ordinal);
        let delete = state.delete_data_on_removal;
        if delete {
            self.runtime.delete_data(ordinal).await?;
        }
        self.update_state(|s| {
            s.members.remove(&ordinal);
        })
        .await?;
        let message = if delete {
            format!("{name} removed and its data deleted")
        } else {
            format!("{name} removed; its data dir is kept")
        };
        self.record_event(Event::new(EventKind::MemberRemoved, message).ordinal(ordinal));
        Ok(())
    }

    /// Fetches every running agent's status and updates readiness. With `only` (a quick check
    /// of instances coming up), just those, each call bounded by [`QUICK_CHECK_TIMEOUT`], and a
    /// failed call changes nothing: it could not change the readiness of an instance that has not
    /// been Ready, and the tick reports it. Returns whether an instance became Ready.
    async fn observe(&self, only: Option<&BTreeSet<u32>>) -> bool {
        // A primary that already looks unhealthy must not hang the judgement it is waiting for
        // past the failover delay.
        let primary_timeout =
            self.primary_probe_timeout(self.timing.probe_timeout, QUICK_CHECK_TIMEOUT);
        let state = self.state();
        let timeout_for = |ordinal: u32| match only {
            Some(_) => QUICK_CHECK_TIMEOUT,
            None if ordinal == state.primary => primary_timeout,
            None => self.timing.probe_timeout,
        };
        let busy = self.busy.lock().expect("busy lock").clone();
        let state_ref = &state;
        let observed_members = state
            .members
            .iter()
            .filter(|o| only.is_none_or(|only| only.contains(o)));
        let calls = observed_members.map(|&o| {
            let placement = state.placements.get(&o).cloned();
            let running = self.runtime.agent_pid(o).is_some();
            let state = state_ref;
            async move {
                let result = match (running, placement) {
                    (false, _) => Err("agent is not running".to_string()),
                    (true, None) => Err(format!(
                        "{} has no placement in the cluster record",
                        state.instance_name(o)
                    )),
                    (true, Some(p)) => self
                        .runtime
                        .agents()
                        .status(&p.agent, state.term, timeout_for(o))
                        .await
                        .map_err(|e| e.to_string()),
                };
                // When this answer came, not when the slowest of the calls ended: the
                // failover delay counts from the primary's last good answer.
                (o, result, Instant::now())
            }
        });
        let results = futures::future::join_all(calls).await;
        let newest_term = results
            .iter()
            .filter_map(|(_, r, _)| r.as_ref().ok().map(|s| s.term))
            .max()
            .unwrap_or(0);
        let newest_galera_view = myset_core::galera::newest_view(
            results
                .iter()
                .filter_map(|(_, r, _)| r.as_ref().ok()?.galera.as_ref()),
        );
        let mut transitions = Vec::new();
        let mut clones = Vec::new();
        let mut clones_done = Vec::new();
        {
            let mut observed = self.observed.lock().expect("observed lock");
            for (ordinal, result, answered_at) in results {
                if only.is_some() && result.is_err() {
                    continue;
                }
                let entry = observed.entry(ordinal).or_default();
                let stale_view = result.as_ref().ok().and_then(|s| {
                    myset_core::galera::stale_view(s.galera.as_ref()?, newest_galera_view)
                });
                let serves = stale_view.is_none()
                    && matches!(&result, Ok(s) if myset_core::serves_reads(
                        s,
                        state.role_of(ordinal),
                        state.rejoin_pending.contains_key(&ordinal) || busy.contains(&ordinal),
                    ));
                match result {
                    Ok(status) => {
                        if status.live {
                            entry.last_live = Some(answered_at);
                        }
                        clones_done.extend(entry.clone.observe(&status.phase, Instant::now()));
                        entry.note = stale_view.or_else(|| status.reason.clone());
                        entry.status = Some(status);
                        entry.observed_at = Some(Instant::now());
                        if let Some(clone) = entry.newly_cloned_from() {
                            clones.push((ordinal, clone));
                        }
                    }
                    Err(e) => {
                        entry.note = Some(e);
                        entry.status = None;
                    }
                }
                if let Some(t) = entry.readiness.observe(serves) {
                    transitions.push((ordinal, t, entry.note.clone()));
                }
            }
        }
        for (ordinal, (donor, done)) in clones {
            let how = if done { "was cloned" } else { "is cloning" };
            self.record_event(
                Event::new(
                    EventKind::Cloning,
                    format!(
                        "{} {how} from {}",
                        state.instance_name(ordinal),
                        state.instance_name(donor)
                    ),
                )
                .ordinal(ordinal)
                .donor(donor)
                .term(state.term),
            );
        }
        for took in clones_done {
            self.metrics.clone_finished(took);
        }
        let became_ready = transitions
            .iter()
            .any(|(_, t, _)| *t == Transition::BecameReady);
        for (ordinal, transition, note) in transitions {
            let name = state.instance_name(ordinal);
            let event = match transition {
                Transition::BecameReady => Event::new(EventKind::Ready, format!("{name} is Ready")),
                Transition::BecameUnready => {
                    let why = note.unwrap_or_default();
                    Event::new(EventKind::Unready, format!("{name} is not Ready: {why}"))
                        .reason(why)
                }
            };
            self.record_event(event.ordinal(ordinal));
        }
        if newest_term > state.term {
            self.adopt_newer_term(newest_term).await;
        }
        self.watch_commits(&state);
        became_ready
    }

    /// An agent at a newer term than the record means the record is behind (restored from an
    /// old copy, say). The controller moves past that term, so its specs are obeyed again; it
    /// promotes nobody on that account.
    async fn adopt_newer_term(&self, seen: u64) {
        let term = seen + 1;
        let result = self.update_state(|s| s.term = s.term.max(term)).await;
        match result {
            Ok(_) => self.record_event(
                Event::new(
                    EventKind::TermAdopted,
                    format!("an agent reported term {seen}, newer than the record's; the cluster moves to term {term}"),
                )
                .term(term)
                .reason(format!("agent at term {seen}")),
            ),
            Err(e) => self.report_step(Step::Record, Err(e)),
        }
    }

    /// Reports when the primary's commits start and stop waiting for an acknowledgement.
    fn watch_commits(&self, state: &ClusterState) {
        let since = self
            .observed
            .lock()
            .expect("observed lock")
            .get(&state.primary)
            .and_then(|ob| ob.status.as_ref())
            .and_then(|s| s.commits_waiting_since_ms);
        let mut last = self.commits_waiting.lock().expect("commits lock");
        if *last == since {
            return;
        }
        let was_waiting = last.is_some();
        *last = since;
        drop(last);
        let name = state.instance_name(state.primary);
        let event = match since {
            Some(_) if !was_waiting => Event::new(
                EventKind::CommitsWaiting,
                format!("commits on {name} are waiting for a replica's acknowledgement"),
            ),
            Some(_) => return,
            None => Event::new(
                EventKind::CommitsResumed,
                format!("commits on {name} no longer wait"),
            ),
        };
        self.record_event(event.ordinal(state.primary).term(state.term));
    }

    /// A proxy found a backend that accepted a connection but sent no greeting: it leaves the
    /// read pool at once, until a probe finds it Ready again.
    pub fn report_suspect(&self, backend: &Address, why: crate::proxy::Suspicion) {
        let state = self.state();
        // A refused connection to a replication member is left to the probes: a killed
        // primary's server is back within tens of milliseconds, and its fate is the failover
        // logic's. A Galera member that refuses is out of rw and ro at once: rw moves to
        // another member now instead of after the next probe.
        if why == crate::proxy::Suspicion::Refused && state.topology != Topology::Galera {
            return;
        }
        self.take_out_server(&state, backend, why);
    }

    /// Takes the member serving at `backend` out of the lists until a probe finds it Ready,
    /// saying why.
    pub(crate) fn take_out_server(
        &self,
        state: &ClusterState,
        backend: &Address,
        why: crate::proxy::Suspicion,
    ) {
        let Some(ordinal) = state
            .placements
            .iter()
            .find(|(o, p)| state.members.contains(o) && p.server == *backend)
            .map(|(o, _)| *o)
        else {
            return;
        };
        let name = state.instance_name(ordinal);
        self.take_out(
            ordinal,
            match why {
                crate::proxy::Suspicion::Silent => format!("{name} accepted a connection but did not greet in time; out of ro until a probe finds it Ready"),
                crate::proxy::Suspicion::Refused => format!("{name} refused a connection; out of the endpoints until a probe finds it Ready"),
            },
        );
    }

    /// Counts a failed observation of `ordinal` ahead of the next probe (it then leaves the
    /// endpoints' lists at once), saying why in a `suspect` event; wakes the loop to look.
    pub(crate) fn take_out(&self, ordinal: u32, why: String) {
        let transition = self
            .observed
            .lock()
            .expect("observed lock")
            .get_mut(&ordinal)
            .and_then(|ob| ob.readiness.observe(false));
        if transition.is_some() {
            self.publish_endpoints();
            self.record_event(Event::new(EventKind::Suspect, why).ordinal(ordinal));
        }
        self.wake.notify_one();
    }

    pub(crate) fn ready_ordinals(&self) -> Vec<u32> {
        let members = self.state().members;
        let busy = self.busy.lock().expect("busy lock").clone();
        let observed = self.observed.lock().expect("observed lock");
        members
            .into_iter()
            .filter(|o| !busy.contains(o))
            .filter(|o| observed.get(o).is_some_and(|ob| ob.readiness.is_ready()))
            .collect()
    }

    /// rw goes to the primary; ro to every Ready member. Galera: rw goes to one Ready member
    /// at a time (one writer avoids certification conflicts), the recorded primary while it is
    /// Ready, else the lowest Ready ordinal.
    pub(crate) fn publish_endpoints(&self) {
        let state = self.state();
        let server = |o: u32| state.placements.get(&o).map(|p| p.server.clone());
        let ready = self.ready_ordinals();
        let writer = writer(&state, &ready);
        let rw: Vec<Address> = writer.and_then(server).into_iter().collect();
        let ro: Vec<Address> = ready.into_iter().filter_map(server).collect();
        self.rw.send_if_modified(|cur| replace_if_changed(cur, rw));
        self.ro.send_if_modified(|cur| replace_if_changed(cur, ro));
    }

    /// Starts an agent for every member that has none, as a StatefulSet recreates Pods.
    async fn start_missing(&self) -> anyhow::Result<()> {
        let state = self.state();
        let ready = self.ready_ordinals();
        let busy = self.busy.lock().expect("busy lock").clone();
        let mut failures = Vec::new();
        let now_ms = self.now_ms();
        let nothing_to_start = state
            .members
            .difference(&busy)
            .all(|&o| self.runtime.agent_pid(o).is_some());
        let galera = if state.topology == Topology::Galera && !nothing_to_start {
            Some(self.galera_plan(&state, &ready).await)
        } else {
            None
        };
        for &ordinal in state.members.difference(&busy) {
            if self.runtime.agent_pid(ordinal).is_some() {
                continue;
            }
            let decision = self
                .observed
                .lock()
                .expect("observed lock")
                .entry(ordinal)
                .or_default()
                .starts
                .decide(now_ms, AGENT_RESTARTS);
            if let myset_core::RestartDecision::Later { at_ms, recent } = decision {
                self.note(
                    ordinal,
                    format!(
                        "its agent died soon after starting {recent} times within a minute; next start in {:.1}s (see its agent.log)",
                        at_ms.saturating_sub(now_ms) as f64 / 1000.0
                    ),
                );
                continue;
            }
            let has_data = self.runtime.has_data(ordinal);
            let (bootstrap, donors, galera_start) = match &galera {
                // Galera: state transfers replace clones; only a new cluster's first member
                // creates a data dir with accounts.
                Some(plan) => match plan.for_member(ordinal) {
                    Ok(start) => (start == GaleraStart::NewCluster && !has_data, vec![], start),
                    Err(reason) => {
                        self.note(ordinal, reason);
                        continue;
                    }
                },
                None => {
                    let plan = myset_core::start_plan(
                        ordinal,
                        has_data,
                        state.initialized,
                        state.primary,
                        &ready,
                    );
                    match plan {
                        StartPlan::FromData => (false, vec![], GaleraStart::Join),
                        StartPlan::Bootstrap => (true, vec![], GaleraStart::Join),
                        StartPlan::Clone(donors) => (false, donors, GaleraStart::Join),
                        StartPlan::Wait(reason) => {
                            self.note(ordinal, reason);
                            continue;
                        }
                    }
                }
            };
            let name = state.instance_name(ordinal);
            let spec = match self.spec_for(&state, ordinal, bootstrap, &donors, galera_start) {
                Ok(spec) => spec,
                Err(e) => {
                    failures.push(format!("{e:#}"));
                    continue;
                }
            };
            let was_started = self
                .observed
                .lock()
                .expect("observed lock")
                .get(&ordinal)
                .is_some_and(|ob| ob.started_at.is_some());
            match self.runtime.start(&spec).await {
                Ok(()) => {
                    let how = if bootstrap {
                        "bootstrapping a new data dir".to_string()
                    } else if donors.is_empty() {
                        "from its own data".to_string()
                    } else {
                        let names: Vec<String> =
                            donors.iter().map(|&d| state.instance_name(d)).collect();
                        format!(
                            "cloning from the first of {} that serves it",
                            names.join(", ")
                        )
                    };
                    let kind = if was_started {
                        EventKind::AgentRestarted
                    } else {
                        EventKind::AgentStarted
                    };
                    self.record_event(
                        Event::new(kind, format!("started {name} ({how})"))
                            .ordinal(ordinal)
                            .term(state.term),
                    );
                    let mut observed = self.observed.lock().expect("observed lock");
                    let entry = observed.entry(ordinal).or_default();
                    entry.sent = Some(spec);
                    entry.started_at = Some(Instant::now());
                    entry.clone_reported = None;
                    entry.readiness = Readiness::default();
                    entry.starts.started(now_ms, AGENT_RESTARTS);
                    if !donors.is_empty() {
                        entry.clone.started(Instant::now());
                    }
                }
                Err(e) => {
                    let why = format!("cannot start {name}: {e:#}");
                    self.note(ordinal, why.clone());
                    failures.push(why);
                }
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("{}", failures.join("; "))
        }
    }

    fn note(&self, ordinal: u32, note: String) {
        self.observed
            .lock()
            .expect("observed lock")
            .entry(ordinal)
            .or_default()
            .note = Some(note);
    }

    /// What `ordinal` should be under `state`. A member without a placement is an error: its
    /// identity would be guessed.
    /// `galera_start` applies to Galera members only.
    pub(crate) fn spec_for(
        &self,
        state: &ClusterState,
        ordinal: u32,
        bootstrap: bool,
        donors: &[u32],
        galera_start: GaleraStart,
    ) -> anyhow::Result<InstanceSpec> {
        let placement_of = |o: u32| {
            state.placements.get(&o).ok_or_else(|| {
                anyhow::anyhow!(
                    "{} has no placement in the cluster record; restore cluster.json from a backup",
                    state.instance_name(o)
                )
            })
        };
        let placement = placement_of(ordinal)?;
        let role = state.role_of(ordinal);
        let galera = match state.topology {
            Topology::Replication => None,
            Topology::Galera => {
                let ports_of = |o: u32| {
                    placement_of(o)?.galera.ok_or_else(|| {
                        anyhow::anyhow!(
                            "{} has no Galera ports in the cluster record",
                            state.instance_name(o)
                        )
                    })
                };
                let members = state
                    .members
                    .iter()
                    .map(|&o| {
                        Ok(Address {
                            host: placement_of(o)?.server.host.clone(),
                            port: ports_of(o)?.gcomm,
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Some(GaleraSpec {
                    cluster_name: state.name.clone(),
                    ports: ports_of(ordinal)?,
                    members,
                    start: galera_start,
                    causal_reads: state.causal_reads,
                })
            }
        };
        let primary = match role {
            _ if galera.is_some() => None,
            Role::Primary => None,
            // A former primary stays held until its data is checked.
            Role::Replica if state.rejoin_pending.contains_key(&ordinal) => None,
            Role::Replica => Some(placement_of(state.primary)?.server.clone()),
        };
        Ok(InstanceSpec {
            cluster: state.name.clone(),
            ordinal,
            server_id: ClusterState::server_id(ordinal),
            server: placement.server.clone(),
            agent: placement.agent.clone(),
            role,
            primary,
            bootstrap,
            donors: donors
                .iter()
                .filter_map(|d| {
                    state.placements.get(d).map(|p| Donor {
                        ordinal: *d,
                        agent: p.agent.clone(),
                    })
                })
                .collect(),
            term: state.term,
            max_staleness_seconds: state.max_staleness_seconds,
            semisync: role == Role::Primary
                && galera.is_none()
                && state.durability == myset_api::Durability::Semisync
                && state.members.len() > 1,
            peers: state
                .members
                .iter()
                .filter(|&&o| o != ordinal)
                .filter_map(|o| state.placements.get(o).map(|p| p.agent.clone()))
                .collect(),
            // Galera's quorum fences a cut-off member itself.
            isolation_fence_ms: if galera.is_some() {
                0
            } else {
                state.failover_delay_ms
            },
            galera,
            settings: self.settings_for(state, ordinal),
        })
    }

    /// Sends a running agent its spec when role, primary or term changed.
    pub(crate) async fn push_specs(&self) -> anyhow::Result<()> {
        let state = self.state();
        let mut failures = Vec::new();
        let pending: Vec<InstanceSpec> = {
            let observed = self.observed.lock().expect("observed lock");
            state
                .members
                .iter()
                .filter_map(|&o| {
                    let ob = observed.get(&o)?;
                    ob.status.as_ref()?;
                    let mut want = match self.spec_for(&state, o, false, &[], GaleraStart::Join) {
                        Ok(spec) => spec,
                        Err(e) => {
                            failures.push(format!("{e:#}"));
                            return None;
                        }
                    };
                    let sent = ob.sent.as_ref();
                    if let Some(sent) = sent {
                        want.bootstrap = sent.bootstrap;
                        want.donors = sent.donors.clone();
                        // A Galera member forming the cluster keeps that instruction until it
                        // is Ready: its first server start may still be ahead.
                        if let (Some(w), Some(g)) = (want.galera.as_mut(), sent.galera.as_ref()) {
                            if !ob.readiness.is_ready() {
                                w.start = g.start.clone();
                            }
                        }
                    }
                    (sent != Some(&want)).then_some(want)
                })
                .collect()
        };
        let pushes = pending.into_iter().map(|spec| async move {
            let result = self
                .runtime
                .agents()
                .put_spec(&spec, self.timing.probe_timeout)
                .await;
            (spec, result)
        });
        for (spec, result) in futures::future::join_all(pushes).await {
            match result {
                Ok(()) => {
                    let mut observed = self.observed.lock().expect("observed lock");
                    if let Some(ob) = observed.get_mut(&spec.ordinal) {
                        ob.sent = Some(spec);
                    }
                }
                // The next pass tries again; an unreachable agent is already shown as such.
                Err(e) => tracing::warn!(ordinal = spec.ordinal, "cannot update spec: {e}"),
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("{}", failures.join("; "))
        }
    }

    async fn shutdown(&self) {
        let state = self.state();
        self.event(
            EventKind::Shutdown,
            "stopping every instance; data is kept".into(),
        );
        futures::future::join_all(state.members.iter().map(|&o| self.runtime.stop(o))).await;
    }

    /// The cluster as `myset status` shows it.
    pub fn status(&self) -> ClusterStatus {
        let state = self.state();
        let busy = self.busy.lock().expect("busy lock").clone();
        let observed = self.observed.lock().expect("observed lock");
        let instances = state
            .members
            .iter()
            .map(|&o| {
                let ob = observed.get(&o);
                let agent_pid = self.runtime.agent_pid(o);
                let status = ob.and_then(|ob| ob.current_status(agent_pid.is_some()));
                let phase = match (status, agent_pid) {
                    (Some(s), _) => InstanceState::Agent {
                        phase: s.phase.clone(),
                    },
                    (None, Some(_)) => InstanceState::Unreachable,
                    (None, None) => InstanceState::NotRunning,
                };
                let reason = ob.and_then(|ob| ob.note.clone()).or_else(|| {
                    agent_pid
                        .is_none()
                        .then(|| "its agent is not running".to_string())
                });
                InstanceStatus {
                    ready: status.is_some() && ob.is_some_and(|ob| ob.readiness.is_ready()),
                    pid: status.and_then(|s| s.pid),
                    agent_pid,
                    state: phase,
                    reason,
                    gtid: status.and_then(|s| s.gtid.clone()),
                    replication: status.and_then(|s| s.replication.clone()),
                    galera: status.and_then(|s| s.galera.clone()),
                    restarts: status.map_or(0, |s| s.restarts),
                    version: status.and_then(|s| s.version.clone()),
                    ..InstanceStatus::from_state(&state, o)
                }
            })
            .collect::<Vec<_>>();
        let failover_candidates = instances
            .iter()
            .filter(|i| i.ready && i.ordinal != state.primary)
            .filter(|i| {
                !state.rejoin_pending.contains_key(&i.ordinal) && !busy.contains(&i.ordinal)
            })
            .count();
        let (durability_in_force, conditions) = match state.topology {
            // Galera's guarantees are its own: no semi-sync, no failover candidates.
            Topology::Galera => (state.durability, Vec::new()),
            Topology::Replication => myset_core::conditions(&myset_core::ClusterView {
                asked: state.durability,
                members: state.members.len(),
                primary: state.primary,
                primary_status: observed
                    .get(&state.primary)
                    .and_then(|ob| ob.status.as_ref()),
                failover_candidates,
            }),
        };
        drop(observed);
        let mut status = ClusterStatus::from_state(
            &state,
            true,
            Credentials {
                user: self.secrets.user.clone(),
                password_file: self.runtime.password_file(),
            },
            instances,
        );
        status.controller_pid = Some(std::process::id());
        status.endpoints.mode = self.endpoint_path.get().copied();
        status.durability_in_force = durability_in_force;
        status.conditions = conditions;
        if state.topology == Topology::Galera {
            // The member rw routes to now.
            let ready = self.ready_ordinals();
            status.primary = writer(&state, &ready).unwrap_or(state.primary);
        }
        status.backup = self.backup_status(&status);
        let tls = self.tls.get().is_some();
        status.metrics = self
            .api_address
            .get()
            .map(|address| myset_api::metrics_url(address, tls));
        status
    }

    /// The metrics as `GET /metrics` serves them, in `format`.
    pub(crate) fn metrics_text(&self, format: crate::metrics::Format) -> String {
        let status = self.status();
        let agents: BTreeMap<u32, crate::metrics::AgentFacts> = self
            .observed
            .lock()
            .expect("observed lock")
            .iter()
            .filter_map(|(&o, ob)| Some((o, crate::metrics::AgentFacts::of(ob.status.as_ref()?))))
            .collect();
        let now_s = (self.now_ms() / 1000) as i64;
        let samples = crate::metrics::status_samples(&status, &agents, now_s);
        self.metrics.render(samples, format)
    }
}

fn replace_if_changed(current: &mut Vec<Address>, next: Vec<Address>) -> bool {
    if *current == next {
        false
    } else {
        *current = next;
        true
    }
}
