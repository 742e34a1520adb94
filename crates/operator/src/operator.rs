//! `myset operator run`: watches `MySet` objects and drives each through the shared
//! controller (`myset_controller::Controller`) over the Kubernetes runtime.
//!
//! Per `MySet`, [`Operator::reconcile`] makes sure the Secrets exist (generated once) and
//! applies the shared objects (ConfigMap, Services, PDB) with server-side apply; then a
//! [`Brain`] runs for it: the controller's loop (members, failover, specs) plus a
//! housekeeping pass every second that lists Pods, PVCs and nodes, relabels the primary for
//! `<name>-rw`, writes the status, and acts on nodes ([`crate::nodes`]).

use crate::crd::{self, MySet};
use crate::kube_runtime::{secrets_from, KubeRuntime, FIELD_MANAGER};
use crate::nodes::{self, Durations, NodeAction, NodePolicy};
use crate::record::{StatusError, StatusStore};
use crate::render::{self, names, Object};
use anyhow::Context as _;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use myset_api::{
    ClusterState, ClusterStatus, Event, EventKind, InstanceState, Phase, Role, Secrets, Topology,
};
use myset_controller::{Controller, HttpAgents, Timing};
use myset_runtime::AgentApi;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Annotation asking for a switchover: an ordinal, or `any` for the most advanced Ready
/// replica. The operator removes it once done (or refused, with an event saying why).
pub const ANNOTATION_SWITCHOVER: &str = "myset.dev/switchover-to";
/// Annotation asking, for a Galera `MySet` none of whose members runs, that the next recovery
/// bootstraps this ordinal whatever the others hold (`myset up --force-bootstrap` locally).
/// The operator removes it once taken (or refused, with an event saying why).
pub const ANNOTATION_FORCE_BOOTSTRAP: &str = "myset.dev/force-bootstrap";
/// The housekeeping period.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// What the operator process is told.
#[derive(Debug, Clone)]
pub struct Options {
    /// Watch `MySet`s in this namespace only; all namespaces when None.
    pub namespace: Option<String>,
    /// Where the Lease lives (the operator's own namespace).
    pub lease_namespace: String,
    /// This replica's name (its Pod name).
    pub identity: String,
}

/// Runs the operator until it loses its lease or is asked to stop. Instances keep running
/// when it exits: a new leader picks them up from the record in each `MySet`'s status.
pub async fn run(options: Options) -> anyhow::Result<()> {
    use futures::StreamExt;
    use kube::runtime::{watcher, Controller as Watcher};
    let client = kube::Client::try_default().await.map_err(|e| {
        anyhow::anyhow!("cannot reach the Kubernetes API server: no service account and no usable kubeconfig (set KUBECONFIG or run in a Pod): {e}")
    })?;
    let leases = Api::namespaced(client.clone(), &options.lease_namespace);
    let mut leadership =
        crate::lease::acquire(leases, crate::lease::LeaseSettings::new(options.identity)).await;
    let operator = Arc::new(Operator::new(client.clone()));
    let mysets: Api<MySet> = match &options.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let watching = Watcher::new(mysets, watcher::Config::default())
        .shutdown_on_signal()
        .run(
            |myset, op: Arc<Operator<HttpAgents>>| async move {
                op.reconcile(&myset).await.map_err(ReconcileError)
            },
            |_, error, _| {
                tracing::warn!("{error}");
                kube::runtime::controller::Action::requeue(Duration::from_secs(5))
            },
            operator.clone(),
        )
        .for_each(|_| futures::future::ready(()));
    let result = tokio::select! {
        _ = watching => Ok(()),
        _ = leadership.lost() => Err(anyhow::anyhow!(
            "lost the operator lease; exiting so that only the new leader acts"
        )),
    };
    operator.stop_all();
    result
}

#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct ReconcileError(anyhow::Error);

/// The operator's state: one brain per `MySet` it drives.
pub struct Operator<A: AgentApi + Clone> {
    client: kube::Client,
    make_agents: Box<dyn Fn(&Secrets) -> A + Send + Sync>,
    timing: Timing,
    brains: Mutex<BTreeMap<(String, String), Brain<A>>>,
    /// How long a Galera position read waits for a member's agent.
    position_wait: Duration,
    /// Per `MySet`, the refusal last reported, so each is an event once.
    refusals: Mutex<BTreeMap<(String, String), String>>,
}

/// The brain of one `MySet`.
pub struct Brain<A: AgentApi + Clone> {
    pub controller: Arc<Controller<KubeRuntime<A>>>,
    myset: watch::Sender<MySet>,
    stop: CancellationToken,
    /// Why the latest spec is refused, if it is: shown in the `Degraded` condition.
    refused: Arc<Mutex<Option<String>>>,
}

impl Operator<HttpAgents> {
    pub fn new(client: kube::Client) -> Self {
        Operator::with_agents(client, Timing::default(), |s| {
            HttpAgents::new(myset_runtime::ApiAccess::plain(&s.api_token))
        })
    }
}

impl<A: AgentApi + Clone> Operator<A> {
    /// An operator whose brains reach agents through `make_agents` (tests pass fakes).
    pub fn with_agents(
        client: kube::Client,
        timing: Timing,
        make_agents: impl Fn(&Secrets) -> A + Send + Sync + 'static,
    ) -> Self {
        Operator {
            client,
            make_agents: Box::new(make_agents),
            timing,
            brains: Mutex::new(BTreeMap::new()),
            position_wait: crate::kube_runtime::POSITION_WAIT,
            refusals: Mutex::new(BTreeMap::new()),
        }
    }

    /// How long a Galera position read waits for a member's agent before the member counts
    /// as unreadable (default [`crate::kube_runtime::POSITION_WAIT`]).
    pub fn with_position_wait(mut self, wait: Duration) -> Self {
        self.position_wait = wait;
        self
    }

    /// The brain driving `namespace/name`, if one runs. A brain stops by itself when its
    /// `MySet` is deleted or its record is taken over; a stopped one is forgotten here, so a
    /// `MySet` created again under the same name gets a new brain.
    pub fn brain(&self, namespace: &str, name: &str) -> Option<Arc<Controller<KubeRuntime<A>>>> {
        let mut brains = self.brains.lock().expect("brains lock");
        let key = (namespace.to_string(), name.to_string());
        if brains.get(&key).is_some_and(|b| b.stop.is_cancelled()) {
            brains.remove(&key);
        }
        brains.get(&key).map(|b| b.controller.clone())
    }

    /// Stops every brain's loop; instances keep running.
    pub fn stop_all(&self) {
        for brain in self.brains.lock().expect("brains lock").values() {
            brain.stop.cancel();
            brain.controller.request_stop();
        }
    }

    /// Converges one `MySet`: Secrets, shared objects, its brain, scale and switchover
    /// requests. The brain does the rest continuously.
    pub async fn reconcile(
        self: &Arc<Self>,
        myset: &MySet,
    ) -> anyhow::Result<kube::runtime::controller::Action> {
        let namespace = myset.namespace().unwrap_or_else(|| "default".into());
        let name = myset.name_any();
        let key = (namespace.clone(), name.clone());
        if let Err(invalid) = crate::validate::validate(myset) {
            self.refuse(
                &key,
                myset,
                format!("the MySet's spec is refused: {invalid}"),
            );
            return Err(invalid).with_context(|| format!("MySet {namespace}/{name}"));
        }
        let secrets = ensure_secrets(&self.client, myset).await?;
        let existing = self.brain(&namespace, &name);
        let controller = match existing {
            Some(c) => c,
            None => {
                let brain = self.start_brain(myset, secrets.clone()).await?;
                let controller = brain.controller.clone();
                self.brains
                    .lock()
                    .expect("brains lock")
                    .insert(key.clone(), brain);
                controller
            }
        };
        let record = controller.state();
        // The topology is the record's, whatever the spec says now (see `refused_change`).
        let effective = with_topology(myset, record.topology);
        if let Some(brain) = self.brains.lock().expect("brains lock").get(&key) {
            brain.myset.send_replace(effective.clone());
        }
        for object in render::render_shared(&effective, &secrets)? {
            match &object {
                Object::Secret(_) => {}
                Object::ConfigMap(o) => apply(&self.client, &namespace, o).await?,
                Object::Service(o) => apply(&self.client, &namespace, o).await?,
                Object::PodDisruptionBudget(o) => apply(&self.client, &namespace, o).await?,
                Object::PersistentVolumeClaim(_) | Object::Pod(_) => {}
            }
        }
        if let Some(why) = refused_change(myset, &record) {
            self.refuse(&key, myset, why);
            return Ok(kube::runtime::controller::Action::requeue(
                Duration::from_secs(60),
            ));
        }
        self.accept(&key);
        let delete_data = myset.spec.storage.delete_on_scale_down;
        if record.replicas != myset.spec.replicas || record.delete_data_on_removal != delete_data {
            controller
                .request_scale(myset.spec.replicas, delete_data)
                .await?;
        }
        controller
            .request_settings(
                myset.spec.durability,
                u64::from(myset.spec.failover_delay_seconds) * 1000,
            )
            .await?;
        controller
            .request_causal_reads(myset.spec.causal_reads)
            .await?;
        if let Some(asked) = myset.annotations().get(ANNOTATION_SWITCHOVER).cloned() {
            self.switchover(myset, &controller, &asked).await?;
        }
        if let Some(asked) = myset.annotations().get(ANNOTATION_FORCE_BOOTSTRAP).cloned() {
            self.force_bootstrap(myset, &controller, &asked).await?;
        }
        Ok(kube::runtime::controller::Action::requeue(
            Duration::from_secs(60),
        ))
    }

    /// Reports that `myset`'s spec is refused: an event the first time this reason is seen,
    /// and the `Degraded` condition while it lasts.
    fn refuse(&self, key: &(String, String), myset: &MySet, why: String) {
        let brain = self
            .brains
            .lock()
            .expect("brains lock")
            .get(key)
            .map(|b| (b.controller.clone(), b.refused.clone()));
        if let Some((_, refused)) = &brain {
            *refused.lock().expect("refused lock") = Some(why.clone());
        }
        let mut refusals = self.refusals.lock().expect("refusals lock");
        if refusals.get(key) == Some(&why) {
            return;
        }
        refusals.insert(key.clone(), why.clone());
        drop(refusals);
        let event = Event::new(EventKind::SpecRefused, why);
        match brain {
            Some((controller, _)) => controller.record_event(event),
            // No brain (a new MySet refused from the start): published directly.
            None => {
                tracing::warn!("{}", event.message);
                event_publisher(self.client.clone(), myset)(&event);
            }
        }
    }

    /// The spec is acted on again: a refusal is over.
    fn accept(&self, key: &(String, String)) {
        self.refusals.lock().expect("refusals lock").remove(key);
        if let Some(brain) = self.brains.lock().expect("brains lock").get(key) {
            *brain.refused.lock().expect("refused lock") = None;
        }
    }

    async fn switchover(
        &self,
        myset: &MySet,
        controller: &Arc<Controller<KubeRuntime<A>>>,
        asked: &str,
    ) -> anyhow::Result<()> {
        let target = match asked {
            "any" => Ok(None),
            n => n.parse::<u32>().map(Some).map_err(|_| {
                format!("{ANNOTATION_SWITCHOVER}={asked:?} is neither an ordinal nor \"any\"")
            }),
        };
        let outcome = match target {
            Ok(to) => controller
                .switchover(to)
                .await
                .map_err(|e| format!("{e:#}")),
            Err(e) => Err(e),
        };
        if let Err(why) = &outcome {
            controller.record_event(Event::new(
                EventKind::SwitchoverFailed,
                format!("switchover asked by {ANNOTATION_SWITCHOVER} refused: {why}"),
            ));
        }
        self.remove_annotation(myset, ANNOTATION_SWITCHOVER).await
    }

    /// Takes a forced bootstrap asked by annotation, or refuses it with an event; either way
    /// the annotation is removed.
    async fn force_bootstrap(
        &self,
        myset: &MySet,
        controller: &Arc<Controller<KubeRuntime<A>>>,
        asked: &str,
    ) -> anyhow::Result<()> {
        let outcome = match asked.parse::<u32>() {
            Ok(ordinal) => controller
                .request_force_bootstrap(ordinal)
                .await
                .map(|()| ordinal)
                .map_err(|e| format!("{e:#}")),
            Err(_) => Err(format!("{asked:?} is not an ordinal")),
        };
        let event = match outcome {
            Ok(ordinal) => Event::new(
                EventKind::GaleraForceBootstrapAsked,
                format!("{ANNOTATION_FORCE_BOOTSTRAP}={ordinal}: member {ordinal} bootstraps the cluster at its next recovery; writes newer than its own on other members are lost"),
            )
            .ordinal(ordinal),
            Err(why) => Event::new(
                EventKind::SpecRefused,
                format!("{ANNOTATION_FORCE_BOOTSTRAP}={asked} refused: {why}"),
            ),
        };
        controller.record_event(event);
        self.remove_annotation(myset, ANNOTATION_FORCE_BOOTSTRAP)
            .await
    }

    async fn remove_annotation(&self, myset: &MySet, key: &str) -> anyhow::Result<()> {
        let api: Api<MySet> = Api::namespaced(
            self.client.clone(),
            &myset.namespace().unwrap_or_else(|| "default".into()),
        );
        let patch = serde_json::json!({"metadata": {"annotations": {key: null}}});
        api.patch(
            &myset.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
        Ok(())
    }

    async fn start_brain(
        self: &Arc<Self>,
        myset: &MySet,
        secrets: Secrets,
    ) -> anyhow::Result<Brain<A>> {
        let namespace = myset.namespace().unwrap_or_else(|| "default".into());
        let name = myset.name_any();
        let api: Api<MySet> = Api::namespaced(self.client.clone(), &namespace);
        // The latest version: its resource version is the first write's precondition.
        let fresh = api.get(&name).await?;
        let record = fresh
            .status
            .as_ref()
            .and_then(|s| s.record.clone())
            .unwrap_or_else(|| initial_record(&fresh));
        let status = Arc::new(StatusStore::new(api.clone(), fresh.clone()));
        let (myset_tx, myset_rx) = watch::channel(fresh.clone());
        // The runtime renders Pods from it: with the record's topology.
        myset_tx.send_replace(with_topology(&fresh, record.topology));
        let runtime = KubeRuntime::new(
            self.client.clone(),
            myset_rx,
            (self.make_agents)(&secrets),
            status.clone(),
            event_publisher(self.client.clone(), &fresh),
        )
        .with_position_wait(self.position_wait);
        runtime.refresh().await?;
        let controller = Controller::new(runtime, record, secrets, self.timing);
        let stop = CancellationToken::new();
        let refused = Arc::new(Mutex::new(None));
        tokio::spawn(controller.clone().run_loop());
        tokio::spawn(housekeeping(
            controller.clone(),
            status,
            api,
            myset_tx.clone(),
            refused.clone(),
            stop.clone(),
        ));
        Ok(Brain {
            controller,
            myset: myset_tx,
            stop,
            refused,
        })
    }
}

/// A cluster record for a `MySet` seen for the first time.
pub fn initial_record(myset: &MySet) -> ClusterState {
    let spec = &myset.spec;
    let mut record = ClusterState::new(
        &myset.name_any(),
        spec.replicas,
        "0.0.0.0",
        spec.service.rw_port,
        spec.service.ro_port,
    );
    record.durability = spec.durability;
    record.failover_delay_ms = u64::from(spec.failover_delay_seconds) * 1000;
    record.delete_data_on_removal = spec.storage.delete_on_scale_down;
    record.topology = spec.topology;
    record.causal_reads = spec.causal_reads;
    record
}

/// `myset` with the topology the cluster has: the one it was created with.
pub fn with_topology(myset: &MySet, topology: Topology) -> MySet {
    let mut pinned = myset.clone();
    pinned.spec.topology = topology;
    pinned
}

/// Why the spec cannot be acted on although it is valid on its own: it asks for another
/// topology than the cluster's, which cannot change after creation (replication and Galera
/// keep different data and state; converting one to the other is not offered).
pub fn refused_change(myset: &MySet, record: &ClusterState) -> Option<String> {
    let (asked, has) = (myset.spec.topology, record.topology);
    (asked != has).then(|| {
        format!(
            "spec.topology {asked} is refused: the cluster was created as {has} and its topology cannot change; nothing in this spec is acted on until spec.topology is {has} again"
        )
    })
}

/// Reads the cluster's credentials from its Secret, creating both Secrets with fresh
/// credentials the first time.
pub async fn ensure_secrets(client: &kube::Client, myset: &MySet) -> anyhow::Result<Secrets> {
    let namespace = myset.namespace().unwrap_or_else(|| "default".into());
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let name = names::agent_secret(&myset.name_any());
    if let Some(secret) = api.get_opt(&name).await? {
        return secrets_from(&secret).with_context(|| format!("Secret {namespace}/{name}"));
    }
    let generated = crate::generate_credentials();
    for object in render::render_shared(myset, &generated)? {
        if let Object::Secret(secret) = object {
            match api.create(&PostParams::default(), &secret).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => {
                    return Err(e).context(format!("cannot create Secret {}", secret.name_any()))
                }
            }
        }
    }
    // Read back: had another writer created it meanwhile, its credentials are the ones.
    let secret = api.get(&name).await?;
    secrets_from(&secret).with_context(|| format!("Secret {namespace}/{name}"))
}

/// Creates or updates `object` with server-side apply, as this operator's field manager.
pub async fn apply<K>(client: &kube::Client, namespace: &str, object: &K) -> anyhow::Result<()>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + serde::Serialize
        + serde::de::DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let name = object.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .with_context(|| format!("cannot apply {} {namespace}/{name}", K::kind(&())))?;
    Ok(())
}

/// Publishes controller events as Kubernetes Events on the `MySet`, in the background.
fn event_publisher(client: kube::Client, myset: &MySet) -> Box<dyn Fn(&Event) + Send + Sync> {
    use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
    let reporter = Reporter {
        controller: FIELD_MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let recorder = Recorder::new(client, reporter);
    let reference = myset.object_ref(&());
    Box::new(move |event: &Event| {
        let warning = matches!(
            event.kind,
            EventKind::Failover
                | EventKind::ReconcileFailed
                | EventKind::Errant
                | EventKind::Unready
                | EventKind::SpecRefused
                | EventKind::GaleraNoPrimary
                | EventKind::GaleraBootstrapRefused
                | EventKind::GaleraForceBootstrapAsked
        );
        let kube_event = KubeEvent {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: event.kind.to_string(),
            note: Some(truncate(&event.message, 1000)),
            action: event.kind.to_string(),
            secondary: None,
        };
        let (recorder, reference) = (recorder.clone(), reference.clone());
        tokio::spawn(async move {
            if let Err(e) = recorder.publish(&kube_event, &reference).await {
                tracing::debug!("cannot publish an event: {e}");
            }
        });
    })
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => s[..at].to_string(),
        None => s.to_string(),
    }
}

/// Every second: list, relabel, report, act on nodes. Ends when the `MySet` is gone or its
/// record was taken over by another writer; the loop is stopped then too.
async fn housekeeping<A: AgentApi + Clone>(
    controller: Arc<Controller<KubeRuntime<A>>>,
    status: Arc<StatusStore>,
    api: Api<MySet>,
    myset_tx: watch::Sender<MySet>,
    refused: Arc<Mutex<Option<String>>>,
    stop: CancellationToken,
) {
    let mut lasted = Durations::default();
    let mut last_report: Option<(Vec<crd::InstanceStatus>, Vec<Condition>)> = None;
    let mut ticker = tokio::time::interval(HOUSEKEEPING);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.cancelled() => break,
        }
        let name = myset_tx.borrow().name_any();
        match api.get_opt(&name).await {
            Ok(Some(latest)) => {
                myset_tx.send_replace(with_topology(&latest, controller.state().topology));
            }
            Ok(None) => {
                tracing::info!("the MySet is gone; its brain stops");
                break;
            }
            Err(e) => {
                tracing::warn!("cannot read the MySet: {e}");
                continue;
            }
        }
        let refusal = refused.lock().expect("refused lock").clone();
        match housekeeping_pass(
            &controller,
            &status,
            &myset_tx,
            refusal.as_deref(),
            &mut lasted,
            &mut last_report,
        )
        .await
        {
            Ok(()) => {}
            Err(e)
                if e.downcast_ref::<StatusError>().is_some_and(|s| {
                    matches!(s, StatusError::Gone(_) | StatusError::Superseded { .. })
                }) =>
            {
                tracing::error!("{e:#}; this brain stops");
                break;
            }
            Err(e) => tracing::warn!("housekeeping: {e:#}"),
        }
    }
    stop.cancel();
    controller.request_stop();
}

async fn housekeeping_pass<A: AgentApi + Clone>(
    controller: &Arc<Controller<KubeRuntime<A>>>,
    status: &StatusStore,
    myset_tx: &watch::Sender<MySet>,
    refusal: Option<&str>,
    lasted: &mut Durations,
    last_report: &mut Option<(Vec<crd::InstanceStatus>, Vec<Condition>)>,
) -> anyhow::Result<()> {
    let runtime = controller.runtime();
    runtime.refresh().await?;
    let record = controller.state();
    let observed = controller.status();
    // The primary, or for Galera the member rw routes to (one Ready member at a time).
    runtime.label_roles(&record, observed.primary).await?;
    for instance in &observed.instances {
        if matches!(
            instance.state,
            InstanceState::Agent {
                phase: Phase::Running
            }
        ) {
            runtime.mark_data_present(instance.ordinal).await?;
        }
    }

    let myset = myset_tx.borrow().clone();
    let view = runtime.view();
    *lasted = nodes::advance(
        lasted,
        &view,
        &record.members,
        HOUSEKEEPING.as_millis() as u64,
    );
    let ready: BTreeSet<u32> = observed
        .instances
        .iter()
        .filter(|i| i.ready)
        .map(|i| i.ordinal)
        .collect();
    let policy = NodePolicy {
        force_delete_after_ms: record.failover_delay_ms,
        rebuild_after_ms: u64::from(myset.spec.node_loss_timeout_seconds) * 1000,
    };
    for action in nodes::node_actions(&record, &view, &ready, lasted, policy) {
        act_on_node(controller, action).await;
    }

    let instances = instance_statuses(&observed, &view, record.topology);
    let conditions = conditions(&observed, &record, refusal, now());
    let report = (instances, conditions);
    if last_report.as_ref() != Some(&report) {
        status
            .report(
                report.0.clone(),
                report.1.clone(),
                myset.metadata.generation,
            )
            .await?;
        *last_report = Some(report);
    }
    Ok(())
}

async fn act_on_node<A: AgentApi + Clone>(
    controller: &Arc<Controller<KubeRuntime<A>>>,
    action: NodeAction,
) {
    let runtime = controller.runtime();
    let event = match action {
        NodeAction::SwitchoverForDrain { from, to, node } => {
            match controller.switchover(Some(to)).await {
                Ok(_) => Event::new(
                    EventKind::Switchover,
                    format!("node {node} is cordoned for a drain: primary moved from {from} to {to} before eviction"),
                ),
                Err(e) => Event::new(
                    EventKind::SwitchoverFailed,
                    format!("node {node} is cordoned, but the switchover away from {from} failed: {e:#}"),
                ),
            }
        }
        NodeAction::ForceDelete { ordinal, node } => match runtime.force_delete(ordinal).await {
            Ok(()) => Event::new(
                EventKind::PodForceDeleted,
                format!("node {node} stopped reporting; member {ordinal} is fenced, so its Pod was force-deleted to be recreated"),
            )
            .ordinal(ordinal),
            Err(e) => Event::new(
                EventKind::ReconcileFailed,
                format!("cannot force-delete member {ordinal}'s Pod on node {node}: {e:#}"),
            )
            .ordinal(ordinal),
        },
        NodeAction::Rebuild { ordinal, reason } => {
            use myset_runtime::Runtime;
            let result = async {
                runtime.delete_data(ordinal).await?;
                runtime.force_delete(ordinal).await
            }
            .await;
            match result {
                Ok(()) => Event::new(
                    EventKind::MemberRebuilt,
                    format!("member {ordinal} is rebuilt with a fresh volume cloned from a peer: {reason}"),
                )
                .ordinal(ordinal),
                Err(e) => Event::new(
                    EventKind::ReconcileFailed,
                    format!("cannot rebuild member {ordinal}: {e:#}"),
                )
                .ordinal(ordinal),
            }
        }
    };
    controller.record_event(event);
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// The per-instance status of the `MySet`. A Galera member is shown as the primary while rw
/// routes to it (every member is writable; rw uses one at a time).
pub fn instance_statuses(
    observed: &ClusterStatus,
    view: &crate::kube_runtime::View,
    topology: Topology,
) -> Vec<crd::InstanceStatus> {
    observed
        .instances
        .iter()
        .map(|i| crd::InstanceStatus {
            ordinal: i.ordinal,
            pod: i.name.clone(),
            node: view.pods.get(&i.ordinal).and_then(|p| p.node.clone()),
            role: match topology {
                Topology::Replication => i.role.into(),
                Topology::Galera if i.ordinal == observed.primary => crd::Role::Primary,
                Topology::Galera => crd::Role::Replica,
            },
            ready: i.ready,
            gtid: i.gtid.as_ref().map(|g| g.current.clone()),
            galera: i.galera.clone(),
        })
        .collect()
}

/// `Ready`, `Progressing` and `Degraded`, from what the controller observed; `refusal`: why
/// the latest spec is not acted on, if it is not.
pub fn conditions(
    observed: &ClusterStatus,
    record: &ClusterState,
    refusal: Option<&str>,
    at: Time,
) -> Vec<Condition> {
    let not_ready: Vec<String> = observed
        .instances
        .iter()
        .filter(|i| !i.ready)
        .map(|i| i.name.clone())
        .collect();
    let starting: Vec<String> = observed
        .instances
        .iter()
        .filter(|i| {
            matches!(
                &i.state,
                InstanceState::Agent {
                    phase: Phase::Initializing
                        | Phase::Cloning { .. }
                        | Phase::Preparing { .. }
                        | Phase::Starting
                }
            )
        })
        .map(|i| i.name.clone())
        .collect();
    let scaling = record.members.len() as u32 != record.replicas;
    // The member rw routes to: the primary, or a Galera member (any may take writes).
    let galera = record.topology == Topology::Galera;
    let writer = observed.primary;
    let primary_ready = observed
        .instances
        .iter()
        .any(|i| i.ordinal == writer && (galera || i.role == Role::Primary) && i.ready);
    let writer_words = if galera { "rw on member" } else { "primary" };
    let condition = |type_: &str, on: bool, reason: &str, message: String| Condition {
        type_: type_.into(),
        status: if on { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        last_transition_time: at.clone(),
        observed_generation: None,
    };
    let ready = primary_ready && not_ready.is_empty() && !scaling;
    let progressing = scaling || !starting.is_empty();
    let mut problems: Vec<String> = observed
        .conditions
        .iter()
        .map(|c| match c {
            myset_api::Condition::CommitsWaiting { ordinal, .. } => {
                format!("commits on member {ordinal} wait for a replica's acknowledgement")
            }
            myset_api::Condition::NoFailoverCandidate { reason } => {
                format!("no replica could take over: {reason}")
            }
            myset_api::Condition::DurabilityDegraded {
                in_force, reason, ..
            } => {
                format!("durability in force is {in_force}: {reason}")
            }
        })
        .collect();
    if !not_ready.is_empty() && !progressing {
        problems.push(format!("not Ready: {}", not_ready.join(", ")));
    }
    if let Some(why) = refusal {
        problems.push(why.to_string());
    }
    vec![
        condition(
            crd::condition::READY,
            ready,
            if ready { "AllReady" } else { "NotAllReady" },
            if ready {
                format!(
                    "{} instances Ready; {writer_words} {writer}",
                    observed.instances.len(),
                )
            } else if !primary_ready && galera {
                "no member is Ready for rw".to_string()
            } else if !primary_ready {
                format!("the primary ({writer}) is not Ready")
            } else {
                format!("not Ready: {}", not_ready.join(", "))
            },
        ),
        condition(
            crd::condition::PROGRESSING,
            progressing,
            if progressing {
                "Converging"
            } else {
                "Converged"
            },
            if scaling {
                format!("{} of {} members", record.members.len(), record.replicas)
            } else if !starting.is_empty() {
                format!("starting: {}", starting.join(", "))
            } else {
                "every member is in place".into()
            },
        ),
        condition(
            crd::condition::DEGRADED,
            !problems.is_empty(),
            if problems.is_empty() {
                "Healthy"
            } else {
                "Degraded"
            },
            if problems.is_empty() {
                "nothing to report".into()
            } else {
                problems.join("; ")
            },
        ),
    ]
}
