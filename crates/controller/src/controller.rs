//! The reconcile loop.

use crate::runtime::Runtime;
use myset_api::{
    Address, AgentStatus, ClusterState, ClusterStatus, Credentials, Donor, Event, EventKind,
    InstanceSpec, InstanceState, InstanceStatus, Role, Secrets,
};
use myset_core::{Readiness, StartPlan, Transition};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

/// How often the controller probes and reconciles, and how long one agent call may take.
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

/// What the controller last saw of one ordinal.
#[derive(Default)]
pub(crate) struct Observed {
    pub(crate) readiness: Readiness,
    pub(crate) status: Option<AgentStatus>,
    /// When the instance was last seen live (agent answering, server answering).
    pub(crate) last_live: Option<std::time::Instant>,
    /// Why the instance is not running or not ready, in words.
    note: Option<String>,
    /// The last spec the agent accepted.
    sent: Option<InstanceSpec>,
    /// Whether this controller has started the instance's agent before.
    started: bool,
}

pub struct Controller<R: Runtime> {
    pub(crate) runtime: R,
    pub(crate) secrets: Secrets,
    pub(crate) timing: Timing,
    pub(crate) state: Mutex<ClusterState>,
    pub(crate) observed: Mutex<BTreeMap<u32, Observed>>,
    /// Set by a scale-down request that asked to delete the removed members' data.
    delete_data_on_removal: Mutex<bool>,
    /// Members being removed: out of the read pool, not restarted.
    leaving: Mutex<Vec<u32>>,
    pub(crate) rw: watch::Sender<Vec<Address>>,
    pub(crate) ro: watch::Sender<Vec<Address>>,
    pub(crate) stop: CancellationToken,
    pub(crate) wake: Notify,
    /// Serialises reconciling with switchovers.
    pub(crate) changing: tokio::sync::Mutex<()>,
    /// The last reason a failover was held back, so it is reported once.
    pub(crate) hold_reason: Mutex<Option<String>>,
    pub(crate) started: std::time::Instant,
}

impl<R: Runtime> Controller<R> {
    pub fn new(runtime: R, state: ClusterState, secrets: Secrets, timing: Timing) -> Arc<Self> {
        Arc::new(Controller {
            runtime,
            secrets,
            timing,
            state: Mutex::new(state),
            observed: Mutex::new(BTreeMap::new()),
            delete_data_on_removal: Mutex::new(false),
            leaving: Mutex::new(Vec::new()),
            rw: watch::Sender::new(Vec::new()),
            ro: watch::Sender::new(Vec::new()),
            stop: CancellationToken::new(),
            wake: Notify::new(),
            changing: tokio::sync::Mutex::new(()),
            hold_reason: Mutex::new(None),
            started: std::time::Instant::now(),
        })
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
        let bind = |port: u16, flag: &'static str| {
            let host = host.clone();
            async move {
                tokio::net::TcpListener::bind((host.as_str(), port))
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {host}:{port} for {flag}: {e}"))
            }
        };
        let rw_listener = bind(rw_port, "--rw-port").await?;
        let ro_listener = bind(ro_port, "--ro-port").await?;
        tokio::spawn(crate::proxy::serve(
            "rw",
            rw_listener,
            self.rw.subscribe(),
            true,
            self.stop.clone(),
        ));
        tokio::spawn(crate::proxy::serve(
            "ro",
            ro_listener,
            self.ro.subscribe(),
            false,
            self.stop.clone(),
        ));
        tokio::spawn(crate::api::serve(self.clone(), api_listener));
        on_listening()?;
        self.event(
            EventKind::ControllerStarted,
            "controller started".to_string(),
        );

        let mut ticker = tokio::time::interval(self.timing.probe_period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = self.wake.notified() => {}
                _ = self.stop.cancelled() => break,
            }
            if let Err(e) = self.reconcile().await {
                tracing::error!("reconcile failed: {e:#}");
            }
        }
        self.shutdown().await;
        Ok(())
    }

    pub fn state(&self) -> ClusterState {
        self.state.lock().expect("state lock").clone()
    }

    pub(crate) fn update_state(
        &self,
        change: impl FnOnce(&mut ClusterState),
    ) -> anyhow::Result<()> {
        let mut guard = self.state.lock().expect("state lock");
        let mut next = guard.clone();
        change(&mut next);
        if next != *guard {
            self.runtime.save_state(&next)?;
            *guard = next;
        }
        Ok(())
    }

    pub(crate) fn event(&self, kind: EventKind, message: String) {
        self.record(Event::new(kind, message));
    }

    /// Logs and records an event with its structured fields.
    pub(crate) fn record(&self, event: Event) {
        tracing::info!(kind = %event.kind, "{}", event.message);
        self.runtime.record_event(&event);
    }

    /// Accepts a new desired size; the loop converges to it.
    pub(crate) fn request_scale(&self, replicas: u32, delete_data: bool) -> anyhow::Result<()> {
        *self.delete_data_on_removal.lock().expect("lock") = delete_data;
        let from = self.state().replicas;
        self.update_state(|s| s.replicas = replicas)?;
        if from != replicas {
            self.event(
                EventKind::Scale,
                format!("desired replicas {from} -> {replicas}"),
            );
        }
        self.wake.notify_one();
        Ok(())
    }

    pub(crate) fn api_token(&self) -> &str {
        &self.secrets.api_token
    }

    pub(crate) fn request_stop(&self) {
        self.stop.cancel();
    }

    async fn reconcile(&self) -> anyhow::Result<()> {
        let _change = self.changing.lock().await;
        self.converge_membership().await?;
        self.observe().await;
        self.publish_endpoints();
        let state = self.state();
        if !state.initialized && self.runtime.has_data(state.primary) {
            self.update_state(|s| s.initialized = true)?;
        }
        self.check_rejoins().await;
        self.watch_primary().await;
        self.start_missing().await?;
        self.push_specs().await;
        Ok(())
    }

    /// Adds ordinals on scale-up and removes the highest non-primary ones on scale-down.
    async fn converge_membership(&self) -> anyhow::Result<()> {
        let state = self.state();
        let additions = myset_core::scale_up_additions(&state.members, state.replicas);
        for ordinal in additions {
            let placement = match state.placements.get(&ordinal) {
                Some(p) => p.clone(),
                None => self.runtime.place(ordinal, &state)?,
            };
            self.update_state(|s| {
                s.members.insert(ordinal);
                s.placements.insert(ordinal, placement);
            })?;
            self.event(
                EventKind::MemberAdded,
                format!("{} joins", state.instance_name(ordinal)),
            );
        }
        let victims = myset_core::scale_down_victims(&state.members, state.replicas, state.primary);
        if victims.is_empty() {
            return Ok(());
        }
        let delete = *self.delete_data_on_removal.lock().expect("lock");
        // Leave the read pool first, then stop, then leave the membership: until then `status`
        // still lists the instance, so `scale` returns only once it is really gone.
        *self.leaving.lock().expect("lock") = victims.clone();
        self.publish_endpoints();
        for &ordinal in &victims {
            let name = state.instance_name(ordinal);
            self.runtime.stop(ordinal).await;
            self.observed.lock().expect("lock").remove(&ordinal);
            // Data goes before membership, so `scale --delete-data` returns once it is gone.
            if delete {
                self.runtime.delete_data(ordinal)?;
            }
            self.update_state(|s| {
                s.members.remove(&ordinal);
            })?;
            if delete {
                self.event(
                    EventKind::MemberRemoved,
                    format!("{name} removed and its data deleted"),
                );
            } else {
                self.event(
                    EventKind::MemberRemoved,
                    format!("{name} removed; its data dir is kept"),
                );
            }
        }
        self.leaving.lock().expect("lock").clear();
        Ok(())
    }

    /// Fetches every running agent's status and updates readiness.
    async fn observe(&self) {
        let state = self.state();
        let calls = state.members.iter().map(|&o| {
            let placement = state.placements.get(&o).cloned();
            let running = self.runtime.agent_pid(o).is_some();
            async move {
                let result = match (running, placement) {
                    (false, _) => Err("agent is not running".to_string()),
                    (true, None) => Err("no placement".to_string()),
                    (true, Some(p)) => self
                        .agent(&p.agent)
                        .get::<AgentStatus>("/status")
                        .await
                        .map_err(|e| e.to_string()),
                };
                (o, result)
            }
        });
        let results = futures::future::join_all(calls).await;
        let mut observed = self.observed.lock().expect("lock");
        for (ordinal, result) in results {
            let entry = observed.entry(ordinal).or_default();
            // An instance still at an older term has not accepted the current spec (for example
            // a former primary coming back): it serves no reads until it has.
            let ready = matches!(&result, Ok(s) if s.ready && s.term == state.term);
            match result {
                Ok(status) => {
                    if status.live {
                        entry.last_live = Some(std::time::Instant::now());
                    }
                    entry.note = status.reason.clone();
                    entry.status = Some(status);
                }
                Err(e) => {
                    entry.note = Some(e);
                    entry.status = None;
                }
            }
            match entry.readiness.observe(ready) {
                Some(Transition::BecameReady) => self.event(
                    EventKind::Ready,
                    format!("{} is Ready", state.instance_name(ordinal)),
                ),
                Some(Transition::BecameUnready) => self.event(
                    EventKind::Unready,
                    format!(
                        "{} is not Ready: {}",
                        state.instance_name(ordinal),
                        entry.note.clone().unwrap_or_default()
                    ),
                ),
                None => {}
            }
        }
    }

    pub(crate) fn ready_ordinals(&self) -> Vec<u32> {
        let members = self.state().members;
        let leaving = self.leaving.lock().expect("lock").clone();
        let observed = self.observed.lock().expect("lock");
        members
            .into_iter()
            .filter(|o| !leaving.contains(o))
            .filter(|o| observed.get(o).is_some_and(|ob| ob.readiness.is_ready()))
            .collect()
    }

    /// rw goes to the primary; ro to every Ready member.
    pub(crate) fn publish_endpoints(&self) {
        let state = self.state();
        let server = |o: u32| state.placements.get(&o).map(|p| p.server.clone());
        let rw: Vec<Address> = server(state.primary).into_iter().collect();
        let ro: Vec<Address> = self
            .ready_ordinals()
            .into_iter()
            .filter(|o| state.members.contains(o))
            .filter_map(server)
            .collect();
        self.rw.send_if_modified(|cur| replace_if_changed(cur, rw));
        self.ro.send_if_modified(|cur| replace_if_changed(cur, ro));
    }

    /// Starts an agent for every member that has none, as a StatefulSet recreates Pods.
    async fn start_missing(&self) -> anyhow::Result<()> {
        let state = self.state();
        let ready = self.ready_ordinals();
        for &ordinal in &state.members {
            if self.runtime.agent_pid(ordinal).is_some() {
                continue;
            }
            let has_data = self.runtime.has_data(ordinal);
            let plan =
                myset_core::start_plan(ordinal, has_data, state.initialized, state.primary, &ready);
            let (bootstrap, donors) = match plan {
                StartPlan::FromData => (false, vec![]),
                StartPlan::Bootstrap => (true, vec![]),
                StartPlan::Clone(donors) => (false, donors),
                StartPlan::Wait(reason) => {
                    self.note(ordinal, reason);
                    continue;
                }
            };
            let spec = self.spec_for(&state, ordinal, bootstrap, &donors);
            let name = state.instance_name(ordinal);
            let was_started = self
                .observed
                .lock()
                .expect("lock")
                .get(&ordinal)
                .is_some_and(|ob| ob.started);
            match self.runtime.start(&spec).await {
                Ok(()) => {
                    let how = if bootstrap {
                        "bootstrapping a new data dir".to_string()
                    } else if donors.is_empty() {
                        "from its own data".to_string()
                    } else {
                        format!("cloning from {donors:?} in that order")
                    };
                    let kind = if was_started {
                        EventKind::AgentRestarted
                    } else {
                        EventKind::AgentStarted
                    };
                    self.event(kind, format!("started {name} ({how})"));
                    let mut observed = self.observed.lock().expect("lock");
                    let entry = observed.entry(ordinal).or_default();
                    entry.sent = Some(spec);
                    entry.started = true;
                    entry.readiness = Readiness::default();
                }
                Err(e) => self.note(ordinal, format!("cannot start the agent: {e:#}")),
            }
        }
        Ok(())
    }

    fn note(&self, ordinal: u32, note: String) {
        self.observed
            .lock()
            .expect("lock")
            .entry(ordinal)
            .or_default()
            .note = Some(note);
    }

    fn spec_for(
        &self,
        state: &ClusterState,
        ordinal: u32,
        bootstrap: bool,
        donors: &[u32],
    ) -> InstanceSpec {
        let placement = &state.placements[&ordinal];
        let role = state.role_of(ordinal);
        InstanceSpec {
            cluster: state.name.clone(),
            ordinal,
            server_id: ClusterState::server_id(ordinal),
            server: placement.server.clone(),
            agent: placement.agent.clone(),
            role,
            primary: match role {
                Role::Primary => None,
                // A former primary stays held until its data is checked.
                Role::Replica if state.rejoin_pending.contains_key(&ordinal) => None,
                Role::Replica => state
                    .placements
                    .get(&state.primary)
                    .map(|p| p.server.clone()),
            },
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
                && state.durability == myset_api::Durability::Semisync
                && state.members.len() > 1,
            peers: state
                .members
                .iter()
                .filter(|&&o| o != ordinal)
                .filter_map(|o| state.placements.get(o).map(|p| p.agent.clone()))
                .collect(),
            isolation_fence_ms: state.failover_delay_ms,
        }
    }

    /// Sends a running agent its spec when role, primary or term changed.
    pub(crate) async fn push_specs(&self) {
        let state = self.state();
        let pending: Vec<InstanceSpec> = {
            let observed = self.observed.lock().expect("lock");
            state
                .members
                .iter()
                .filter_map(|&o| {
                    let ob = observed.get(&o)?;
                    ob.status.as_ref()?;
                    let sent = ob.sent.as_ref();
                    let mut want = self.spec_for(&state, o, false, &[]);
                    if let Some(sent) = sent {
                        want.bootstrap = sent.bootstrap;
                        want.donors = sent.donors.clone();
                    }
                    (sent != Some(&want)).then_some(want)
                })
                .collect()
        };
        for spec in pending {
            match self.agent(&spec.agent).put("/spec", &spec).await {
                Ok(()) => {
                    if let Some(ob) = self.observed.lock().expect("lock").get_mut(&spec.ordinal) {
                        ob.sent = Some(spec);
                    }
                }
                Err(e) => tracing::warn!(ordinal = spec.ordinal, "cannot update spec: {e}"),
            }
        }
    }

    /// A client for an agent; its calls carry the controller's term, which tells the agent it
    /// is still in contact with the controller.
    pub(crate) fn agent(&self, address: &Address) -> myset_http::Client {
        self.agent_with_timeout(address, self.timing.probe_timeout)
    }

    pub(crate) fn agent_with_timeout(
        &self,
        address: &Address,
        timeout: Duration,
    ) -> myset_http::Client {
        myset_http::Client::new(
            format!("http://{address}"),
            &self.secrets.api_token,
            timeout,
        )
        .with_header("x-myset-controller-term", self.state().term.to_string())
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
        let observed = self.observed.lock().expect("lock");
        let instances = state
            .members
            .iter()
            .map(|&o| {
                let ob = observed.get(&o);
                let status = ob.and_then(|ob| ob.status.as_ref());
                let agent_pid = self.runtime.agent_pid(o);
                let phase = match (status, agent_pid) {
                    (Some(s), _) => InstanceState::Agent {
                        phase: s.phase.clone(),
                    },
                    (None, Some(_)) => InstanceState::Unreachable,
                    (None, None) => InstanceState::NotRunning,
                };
                InstanceStatus {
                    ready: ob.is_some_and(|ob| ob.readiness.is_ready()),
                    pid: status.and_then(|s| s.pid),
                    agent_pid,
                    state: phase,
                    reason: ob.and_then(|ob| ob.note.clone()),
                    gtid: status.and_then(|s| s.gtid.clone()),
                    replication: status.and_then(|s| s.replication.clone()),
                    ..InstanceStatus::from_state(&state, o)
                }
            })
            .collect();
        ClusterStatus::from_state(
            &state,
            true,
            Credentials {
                user: self.secrets.user.clone(),
                password_file: self.runtime.password_file(),
            },
            instances,
        )
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
