//! The Kubernetes implementation of `myset_runtime::Runtime`: an instance is a Pod
//! `<name>-<N>` with its PVC `<name>-<N>-data`, created and deleted through the API server;
//! the cluster record lives in the `MySet`'s status ([`crate::record`]).
//!
//! The controller asks some questions synchronously (is the agent running, does the volume
//! hold data): they are answered from a [`View`] of the cluster's Pods, PVCs and Nodes that
//! [`KubeRuntime::refresh`] lists from the API server every probe period.
//!
//! Galera: an agent started in a Pod runs no server until the operator hands it a spec (a
//! stored one may say "form the cluster" long after that was decided). So a Galera member's
//! Pod counts as running only once this runtime handed its agent a spec, recorded on the Pod
//! with the container's restart count ([`ANNOTATION_SPEC_DELIVERED`]): a restarted container
//! waits again and is started again by the controller, which decides how it starts. A Pod
//! whose agent waits is how the operator reads a stopped member's position after a full
//! outage: [`Runtime::galera_position`] creates one if needed and asks its agent, which reads
//! its own data dir.

use crate::crd::MySet;
use crate::record::StatusStore;
use crate::render::{self, names, LABEL_CLUSTER, LABEL_ROLE};
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use myset_api::{Address, ClusterState, Event, InstanceSpec, Placement, Role, Secrets, Topology};
use myset_core::galera::MemberData;
use myset_runtime::{AgentApi, AgentError, KillOutcome, Runtime};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Annotation on a PVC once its member's agent has run a server from it: only then does a
/// restart of the member start from that data rather than clone.
pub const ANNOTATION_DATA: &str = "myset.dev/data";
/// Annotation on a Galera member's Pod once its agent was handed a spec: the container's
/// restart count at that moment. A higher count means the container restarted and its agent
/// waits for a spec again.
pub const ANNOTATION_SPEC_DELIVERED: &str = "myset.dev/spec-delivered";
/// The field manager of every write this operator makes.
pub const FIELD_MANAGER: &str = "myset-operator";

/// How long a graceful stop may take before the Pod is deleted without grace.
const STOP_GRACE: Duration = Duration::from_secs(60);
/// How long a forced deletion may take to be confirmed by the kubelet before the member is
/// taken as unreachable (its node does not answer).
const KILL_CONFIRM: Duration = Duration::from_secs(10);
/// How long one attempt to hand a new agent its spec (or ask it a position) may take, and the
/// pause between two.
const SPEC_CALL: Duration = Duration::from_secs(5);
const SPEC_RETRY: Duration = Duration::from_secs(1);
/// How often a wait on the API server or a new agent checks again.
const POLL: Duration = Duration::from_millis(200);
/// Events kept in memory for `status` and tests.
const EVENTS_KEPT: usize = 1000;
/// How long reading a stopped Galera member's position may take by default: its Pod must be
/// scheduled, pull its image and start, and its agent may run `mariadbd --wsrep-recover`.
pub const POSITION_WAIT: Duration = Duration::from_secs(300);

/// What the runtime last listed of one member's Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    pub node: Option<String>,
    /// Deletion was requested: the Pod is on its way out.
    pub terminating: bool,
    /// The Pod's phase: Pending, Running, Succeeded, Failed or Unknown.
    pub phase: Option<String>,
    pub role_label: Option<String>,
    pub uid: Option<String>,
    /// How often its containers restarted.
    pub restarts: i32,
    /// Galera: the restart count when its agent was handed a spec
    /// ([`ANNOTATION_SPEC_DELIVERED`]).
    pub spec_delivered: Option<i32>,
}

impl PodView {
    /// Whether the member's agent runs or is about to: the Pod exists, is not being deleted
    /// and has not ended.
    pub fn running(&self) -> bool {
        !self.terminating && !matches!(self.phase.as_deref(), Some("Succeeded" | "Failed"))
    }

    /// Galera: its agent was handed a spec and has not restarted since.
    pub fn has_spec(&self) -> bool {
        self.spec_delivered == Some(self.restarts)
    }
}

/// What the runtime last listed of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// The kubelet reports Ready. False when it reports NotReady or stopped reporting
    /// (Unknown): its Pods cannot be killed then, only fenced.
    pub ready: bool,
    /// Cordoned, as `kubectl drain` does first.
    pub unschedulable: bool,
}

/// The cluster's Pods, PVCs and the nodes, as last listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    pub pods: BTreeMap<u32, PodView>,
    /// Each member's PVC: whether its data is known to be present.
    pub pvcs: BTreeMap<u32, bool>,
    pub nodes: BTreeMap<String, NodeView>,
}

impl View {
    /// The node a member's Pod runs on, when it is known and listed.
    pub fn node_of(&self, ordinal: u32) -> Option<(&str, &NodeView)> {
        let name = self.pods.get(&ordinal)?.node.as_deref()?;
        self.nodes.get(name).map(|n| (name, n))
    }
}

/// The Kubernetes runtime of one `MySet`.
pub struct KubeRuntime<A: AgentApi> {
    name: String,
    namespace: String,
    pods: Api<Pod>,
    pvcs: Api<PersistentVolumeClaim>,
    nodes: Api<Node>,
    /// The latest `MySet`, for rendering Pods with the current spec.
    myset: watch::Receiver<MySet>,
    agents: A,
    view: Arc<Mutex<View>>,
    /// The Pods this runtime noted itself, which a listing begun earlier must not undo.
    noted: Arc<Mutex<Noted>>,
    status: Arc<StatusStore>,
    events: Arc<Mutex<VecDeque<Event>>>,
    /// Members whose next Pod sets their data dir aside first, with the label.
    set_aside: Mutex<BTreeMap<u32, String>>,
    /// Galera: the Pods (by member, the Pod's uid) whose agents this runtime is handing a
    /// spec: they count as running meanwhile, so the controller does not start them twice.
    delivering: Arc<Mutex<BTreeMap<u32, String>>>,
    /// Publishes each event as a Kubernetes Event on the `MySet`.
    publish: Box<dyn Fn(&Event) + Send + Sync>,
    /// How long a Galera position read may wait for the member's agent.
    position_wait: Duration,
}

impl<A: AgentApi + Clone> KubeRuntime<A> {
    pub fn new(
        client: kube::Client,
        myset: watch::Receiver<MySet>,
        agents: A,
        status: Arc<StatusStore>,
        publish: Box<dyn Fn(&Event) + Send + Sync>,
    ) -> Self {
        let (name, namespace) = {
            let m = myset.borrow();
            (
                m.metadata.name.clone().unwrap_or_default(),
                m.metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into()),
            )
        };
        KubeRuntime {
            pods: Api::namespaced(client.clone(), &namespace),
            pvcs: Api::namespaced(client.clone(), &namespace),
            nodes: Api::all(client),
            name,
            namespace,
            myset,
            agents,
            view: Arc::default(),
            noted: Arc::default(),
            status,
            events: Arc::default(),
            set_aside: Mutex::default(),
            delivering: Arc::default(),
            publish,
            position_wait: POSITION_WAIT,
        }
    }

    /// How long a Galera position read waits for the member's agent (a Pod to be scheduled
    /// and start) before the member counts as unreadable; [`POSITION_WAIT`] by default.
    pub fn with_position_wait(mut self, wait: Duration) -> Self {
        self.position_wait = wait;
        self
    }

    /// The latest listing.
    pub fn view(&self) -> View {
        self.view.lock().expect("view lock").clone()
    }

    /// The events recorded so far (the latest [`EVENTS_KEPT`]).
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .expect("events lock")
            .iter()
            .cloned()
            .collect()
    }

    /// Lists the cluster's Pods and PVCs, and the nodes, into the view.
    pub async fn refresh(&self) -> anyhow::Result<()> {
        let began = self.noted.lock().expect("noted lock").seq;
        let selector = ListParams::default().labels(&format!("{LABEL_CLUSTER}={}", self.name));
        let every_node = ListParams::default();
        let (pods, pvcs, nodes) = futures::try_join!(
            self.pods.list(&selector),
            self.pvcs.list(&selector),
            self.nodes.list(&every_node),
        )?;
        let view = View {
            pods: pods
                .items
                .iter()
                .filter_map(|p| Some((ordinal_of(&p.metadata)?, pod_view(p))))
                .collect(),
            pvcs: pvcs
                .items
                .iter()
                .filter_map(|c| {
                    let present = c
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(ANNOTATION_DATA))
                        .is_some_and(|v| v == "present");
                    Some((ordinal_of(&c.metadata)?, present))
                })
                .collect(),
            nodes: nodes
                .items
                .iter()
                .filter_map(|n| Some((n.metadata.name.clone()?, node_view(n))))
                .collect(),
        };
        let mut noted = self.noted.lock().expect("noted lock");
        let mut current = self.view.lock().expect("view lock");
        *current = merge_listing(view, &current, &mut noted, began);
        Ok(())
    }

    /// Labels each member's Pod with its role, so `<name>-rw` selects `writer` only: the
    /// primary, or for Galera the one member rw routes to. Pods whose label is already right
    /// are left alone.
    pub async fn label_roles(&self, record: &ClusterState, writer: u32) -> anyhow::Result<()> {
        let wanted: Vec<(u32, Role)> = record
            .members
            .iter()
            .map(|&o| {
                (
                    o,
                    if o == writer {
                        Role::Primary
                    } else {
                        Role::Replica
                    },
                )
            })
            .collect();
        let current = self.view();
        let mut failures = Vec::new();
        // The old primary loses its label first: for a moment -rw has no endpoint rather
        // than two.
        let mut order = wanted.clone();
        order.sort_by_key(|(_, role)| *role == Role::Primary);
        for (ordinal, role) in order {
            let label = crate::crd::Role::from(role).as_str();
            let Some(pod) = current.pods.get(&ordinal) else {
                continue;
            };
            if pod.role_label.as_deref() == Some(label) {
                continue;
            }
            let patch = serde_json::json!({"metadata": {"labels": {LABEL_ROLE: label}}});
            let name = names::pod(&self.name, ordinal);
            match self
                .pods
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    if let Some(p) = self.view.lock().expect("view lock").pods.get_mut(&ordinal) {
                        p.role_label = Some(label.to_string());
                    }
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => failures.push(format!("cannot label {name} {label}: {e}")),
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("{}", failures.join("; "))
        }
    }

    /// Marks a member's PVC as holding data, once its agent ran a server from it.
    pub async fn mark_data_present(&self, ordinal: u32) -> anyhow::Result<()> {
        let pending_set_aside = self
            .set_aside
            .lock()
            .expect("set-aside lock")
            .contains_key(&ordinal);
        if pending_set_aside || self.view().pvcs.get(&ordinal) == Some(&true) {
            return Ok(());
        }
        let patch = serde_json::json!({"metadata": {"annotations": {ANNOTATION_DATA: "present"}}});
        self.pvcs
            .patch(
                &names::pvc(&self.name, ordinal),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        self.view
            .lock()
            .expect("view lock")
            .pvcs
            .insert(ordinal, true);
        Ok(())
    }

    /// Deletes a member's Pod without grace. Used once the member is fenced and its node is
    /// unreachable, so the Pod can be recreated (the kubelet will never confirm the deletion).
    pub async fn force_delete(&self, ordinal: u32) -> anyhow::Result<()> {
        let name = names::pod(&self.name, ordinal);
        match self
            .pods
            .delete(&name, &DeleteParams::default().grace_period(0))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until a terminating Pod is gone; true at once when there is none terminating.
    async fn wait_pod_gone_if_terminating(&self, name: &str) -> anyhow::Result<bool> {
        match self.pods.get_opt(name).await? {
            Some(p) if p.metadata.deletion_timestamp.is_some() => {
                Ok(self.wait_pod_gone(name, STOP_GRACE + KILL_CONFIRM).await)
            }
            _ => Ok(true),
        }
    }

    async fn wait_pod_gone(&self, name: &str, limit: Duration) -> bool {
        myset_os::poll_until_async(limit, POLL, || async {
            matches!(self.pods.get_opt(name).await, Ok(None))
        })
        .await
    }

    fn note_pod(&self, ordinal: u32, pod: Option<PodView>) {
        note_pod(&self.view, &self.noted, ordinal, pod);
    }

    fn topology(&self) -> Topology {
        self.myset.borrow().spec.topology
    }

    /// Creates the member's PVC (kept if it exists) and Pod; an existing Pod is taken as it
    /// is. Returns the Pod.
    async fn ensure_pod(&self, ordinal: u32, role: Role) -> anyhow::Result<Pod> {
        let myset = self.myset.borrow().clone();
        let set_aside = self
            .set_aside
            .lock()
            .expect("set-aside lock")
            .get(&ordinal)
            .cloned();
        let (pvc, pod) = render::render_member(&myset, ordinal, role.into(), set_aside.as_deref())?;
        match self.pvcs.create(&PostParams::default(), &pvc).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => anyhow::bail!("cannot create PVC {}: {e}", names::pvc(&self.name, ordinal)),
        }
        let pod_name = names::pod(&self.name, ordinal);
        let running = match self.pods.create(&PostParams::default(), &pod).await {
            Ok(created) => {
                self.set_aside
                    .lock()
                    .expect("set-aside lock")
                    .remove(&ordinal);
                created
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                match self.pods.get_opt(&pod_name).await? {
                    Some(p) if p.metadata.deletion_timestamp.is_some() => anyhow::bail!(
                        "Pod {pod_name} is still terminating; it is recreated once gone"
                    ),
                    Some(p) => p,
                    None => anyhow::bail!("Pod {pod_name} went away while being created"),
                }
            }
            Err(e) => anyhow::bail!("cannot create Pod {pod_name}: {e}"),
        };
        self.note_pod(ordinal, Some(pod_view(&running)));
        Ok(running)
    }

    /// The member's agent, reached by its Pod's stable DNS name.
    fn agent_address(&self, ordinal: u32) -> Address {
        Address {
            host: render::member_host(&self.name, &self.namespace, ordinal),
            port: render::AGENT_PORT as u16,
        }
    }
}

/// Which members' Pods the runtime noted itself (created, annotated, deleted), by a counter
/// that grows with every note.
#[derive(Debug, Default)]
struct Noted {
    seq: u64,
    at: BTreeMap<u32, u64>,
}

/// The view from a listing that began at note `began`: a Pod created or annotated while it ran
/// may be missing from it, or seen as before, so what the runtime noted since stands.
fn merge_listing(mut listed: View, current: &View, noted: &mut Noted, began: u64) -> View {
    for (&ordinal, &at) in &noted.at {
        if at > began {
            match current.pods.get(&ordinal) {
                Some(p) => listed.pods.insert(ordinal, p.clone()),
                None => listed.pods.remove(&ordinal),
            };
        }
    }
    noted.at.retain(|_, at| *at > began);
    listed
}

/// Puts what the runtime knows of a member's Pod into the view, so that a listing begun
/// earlier does not undo it ([`KubeRuntime::refresh`]).
fn note_pod(view: &Mutex<View>, noted: &Mutex<Noted>, ordinal: u32, pod: Option<PodView>) {
    let mut noted = noted.lock().expect("noted lock");
    noted.seq += 1;
    let seq = noted.seq;
    noted.at.insert(ordinal, seq);
    let mut view = view.lock().expect("view lock");
    match pod {
        Some(p) => view.pods.insert(ordinal, p),
        None => view.pods.remove(&ordinal),
    };
}

/// Galera's record of a delivery: the Pod is annotated with its restart count at delivery
/// (so a restarted container is known to wait again), and the runtime's view and pending
/// deliveries follow.
struct DeliveryRecord {
    view: Arc<Mutex<View>>,
    noted: Arc<Mutex<Noted>>,
    delivering: Arc<Mutex<BTreeMap<u32, String>>>,
}

/// Hands a new Pod's agent its spec, retrying for as long as that same Pod exists: it may
/// take minutes to be scheduled and to pull its image, and until the agent has a spec it
/// reports no status, so nothing else would send one. A replaced Pod gets its own delivery.
async fn deliver_spec<A: AgentApi>(
    agents: A,
    pods: Api<Pod>,
    spec: InstanceSpec,
    pod_name: String,
    uid: Option<String>,
    record: Option<DeliveryRecord>,
) {
    // The restart count before the spec goes out: a restart after it shows as a higher one.
    let mut seen = None;
    let restarts = loop {
        match pods.get_opt(&pod_name).await {
            Ok(Some(p)) if p.metadata.uid == uid && p.metadata.deletion_timestamp.is_none() => {
                seen = Some(restart_count(&p));
            }
            Ok(_) => {
                forget_delivery(record.as_ref(), spec.ordinal, uid.as_deref());
                return;
            }
            Err(e) => tracing::debug!(pod = %pod_name, "cannot check the Pod: {e}"),
        }
        if let Some(restarts) = seen {
            if agents.put_spec(&spec, SPEC_CALL).await.is_ok() {
                break restarts;
            }
        }
        tokio::time::sleep(SPEC_RETRY).await;
    };
    let Some(record) = record else {
        return;
    };
    let patch = serde_json::json!({
        "metadata": {"annotations": {ANNOTATION_SPEC_DELIVERED: restarts.to_string()}}
    });
    loop {
        match pods
            .patch(&pod_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(p) if p.metadata.uid == uid => {
                note_pod(
                    &record.view,
                    &record.noted,
                    spec.ordinal,
                    Some(pod_view(&p)),
                );
                break;
            }
            Ok(_) => break,
            Err(kube::Error::Api(e)) if e.code == 404 => break,
            Err(e) => {
                tracing::warn!(pod = %pod_name, "cannot record the delivered spec: {e}");
                tokio::time::sleep(SPEC_RETRY).await;
            }
        }
    }
    forget_delivery(Some(&record), spec.ordinal, uid.as_deref());
}

fn forget_delivery(record: Option<&DeliveryRecord>, ordinal: u32, uid: Option<&str>) {
    if let Some(record) = record {
        let mut delivering = record.delivering.lock().expect("delivering lock");
        if delivering.get(&ordinal).map(String::as_str) == uid {
            delivering.remove(&ordinal);
        }
    }
}

fn restart_count(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|c| c.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0)
}

impl From<Role> for crate::crd::Role {
    fn from(role: Role) -> Self {
        match role {
            Role::Primary => crate::crd::Role::Primary,
            Role::Replica => crate::crd::Role::Replica,
        }
    }
}

fn ordinal_of(meta: &kube::api::ObjectMeta) -> Option<u32> {
    meta.labels
        .as_ref()?
        .get(render::LABEL_ORDINAL)?
        .parse()
        .ok()
}

fn pod_view(pod: &Pod) -> PodView {
    PodView {
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        terminating: pod.metadata.deletion_timestamp.is_some(),
        phase: pod.status.as_ref().and_then(|s| s.phase.clone()),
        role_label: pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_ROLE).cloned()),
        uid: pod.metadata.uid.clone(),
        restarts: restart_count(pod),
        spec_delivered: pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_SPEC_DELIVERED))
            .and_then(|v| v.parse().ok()),
    }
}

fn node_view(node: &Node) -> NodeView {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True");
    NodeView {
        ready,
        unschedulable: node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false),
    }
}

impl<A: AgentApi + Clone> Runtime for KubeRuntime<A> {
    type Agents = A;

    fn agents(&self) -> &A {
        &self.agents
    }

    /// Every member is reached by its Pod's stable DNS name, on the same ports.
    fn place(&self, ordinal: u32, state: &ClusterState) -> anyhow::Result<Placement> {
        let host = render::member_host(&self.name, &self.namespace, ordinal);
        let at = |port: i32| Address {
            host: host.clone(),
            port: port as u16,
        };
        Ok(Placement {
            server: at(render::MYSQL_PORT),
            agent: at(render::AGENT_PORT),
            galera: (state.topology == Topology::Galera).then_some(render::GALERA_PORTS),
        })
    }

    /// Creates the member's PVC (kept if it exists) and Pod, or takes the Pod that is there
    /// (a Galera member's whose agent waits), then hands the spec to its agent in the
    /// background: a Pod may take minutes to be scheduled and pull its image.
    async fn start(&self, spec: &InstanceSpec) -> anyhow::Result<()> {
        let galera = self.topology() == Topology::Galera;
        // A Galera member starts out of `-rw`: the housekeeping labels the one member rw
        // routes to, so two Pods never carry the label while both are Ready.
        let label = if galera { Role::Replica } else { spec.role };
        let running = self.ensure_pod(spec.ordinal, label).await?;
        let record = galera.then(|| {
            if let Some(uid) = &running.metadata.uid {
                self.delivering
                    .lock()
                    .expect("delivering lock")
                    .insert(spec.ordinal, uid.clone());
            }
            DeliveryRecord {
                view: self.view.clone(),
                noted: self.noted.clone(),
                delivering: self.delivering.clone(),
            }
        });
        tokio::spawn(deliver_spec(
            self.agents.clone(),
            self.pods.clone(),
            spec.clone(),
            names::pod(&self.name, spec.ordinal),
            running.metadata.uid,
            record,
        ));
        Ok(())
    }

    /// The agent is the Pod's PID 1: while the Pod runs, so does it. A Galera member runs
    /// only once its agent has a spec from this runtime (see the module's doc).
    fn agent_pid(&self, ordinal: u32) -> Option<u32> {
        let galera = self.topology() == Topology::Galera;
        let delivering = self.delivering.lock().expect("delivering lock").clone();
        let view = self.view.lock().expect("view lock");
        view.pods
            .get(&ordinal)
            .filter(|p| p.running())
            .filter(|p| {
                !galera
                    || p.has_spec()
                    || p.uid.is_some() && delivering.get(&ordinal) == p.uid.as_ref()
            })
            .map(|_| 1)
    }

    /// A stopped Galera member's position, read by the agent of its Pod, which runs no server
    /// until it is handed a spec: an existing Pod without one, or a new Pod for the purpose
    /// (it becomes the member's Pod when the member starts). Waits for the Pod to be
    /// scheduled and its agent to answer, at most the position wait ([`POSITION_WAIT`] by
    /// default).
    async fn galera_position(&self, ordinal: u32) -> anyhow::Result<MemberData> {
        let pod_name = names::pod(&self.name, ordinal);
        if self.agent_pid(ordinal).is_some() {
            anyhow::bail!(
                "{pod_name} runs its server; a position is read only from a stopped member"
            );
        }
        if !self.wait_pod_gone_if_terminating(&pod_name).await? {
            anyhow::bail!("Pod {pod_name} is still terminating");
        }
        self.ensure_pod(ordinal, Role::Replica).await?;
        let agent = self.agent_address(ordinal);
        let deadline = tokio::time::Instant::now() + self.position_wait;
        let mut last = String::new();
        while tokio::time::Instant::now() < deadline {
            match self.agents.galera_position(&agent, SPEC_CALL).await {
                Ok(data) => return Ok(data),
                // It answered without a position (its server runs, or the read failed): no
                // use asking again.
                Err(e @ AgentError::Refused { .. }) => return Err(e.into()),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(SPEC_RETRY).await;
        }
        anyhow::bail!(
            "its agent (Pod {pod_name}) did not report a position within {}s: {last}",
            self.position_wait.as_secs()
        )
    }

    async fn stop(&self, ordinal: u32) {
        let name = names::pod(&self.name, ordinal);
        let graceful = DeleteParams::default().grace_period(STOP_GRACE.as_secs() as u32);
        if let Err(e) = self.pods.delete(&name, &graceful).await {
            if !matches!(&e, kube::Error::Api(a) if a.code == 404) {
                tracing::warn!(pod = %name, "cannot delete: {e}");
            }
        }
        if !self.wait_pod_gone(&name, STOP_GRACE + KILL_CONFIRM).await {
            tracing::warn!(pod = %name, "still present after its grace period");
        }
        self.note_pod(ordinal, None);
    }

    /// Deletes the Pod without grace. On a node that does not report Ready, the kubelet cannot
    /// kill anything, so the member is unreachable: fencing must hold instead.
    async fn kill(&self, ordinal: u32) -> KillOutcome {
        let view = self.view();
        let Some(pod) = view.pods.get(&ordinal) else {
            return KillOutcome::AlreadyGone;
        };
        if pod.node.is_some() && !view.node_of(ordinal).is_some_and(|(_, n)| n.ready) {
            return KillOutcome::Unreachable;
        }
        let name = names::pod(&self.name, ordinal);
        match self
            .pods
            .delete(&name, &DeleteParams::default().grace_period(0))
            .await
        {
            Err(kube::Error::Api(e)) if e.code == 404 => {
                self.note_pod(ordinal, None);
                return KillOutcome::AlreadyGone;
            }
            Err(e) => {
                tracing::warn!(pod = %name, "cannot delete: {e}");
                return KillOutcome::Unreachable;
            }
            Ok(_) => {}
        }
        if self.wait_pod_gone(&name, KILL_CONFIRM).await {
            self.note_pod(ordinal, None);
            KillOutcome::Killed
        } else {
            KillOutcome::Unreachable
        }
    }

    /// The member's Pod is stopped; its next one moves the data dir aside on the volume
    /// before anything else (`--set-aside-data`), and since the volume is then not known to
    /// hold data, the member clones from a peer.
    async fn set_aside_data(&self, ordinal: u32, label: &str) -> anyhow::Result<String> {
        let pvc = names::pvc(&self.name, ordinal);
        let patch = serde_json::json!({"metadata": {"annotations": {ANNOTATION_DATA: null}}});
        match self
            .pvcs
            .patch(&pvc, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => anyhow::bail!("cannot unmark PVC {pvc}: {e}"),
        }
        self.view
            .lock()
            .expect("view lock")
            .pvcs
            .insert(ordinal, false);
        self.set_aside
            .lock()
            .expect("set-aside lock")
            .insert(ordinal, label.to_string());
        Ok(format!("data.{label} on PVC {pvc}"))
    }

    fn has_data(&self, ordinal: u32) -> bool {
        self.view
            .lock()
            .expect("view lock")
            .pvcs
            .get(&ordinal)
            .copied()
            .unwrap_or(false)
    }

    async fn delete_data(&self, ordinal: u32) -> anyhow::Result<()> {
        let name = names::pvc(&self.name, ordinal);
        match self.pvcs.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => anyhow::bail!("cannot delete PVC {name}: {e}"),
        }
        self.view.lock().expect("view lock").pvcs.remove(&ordinal);
        Ok(())
    }

    async fn save_state(&self, state: &ClusterState) -> anyhow::Result<()> {
        Ok(self.status.save_record(state).await?)
    }

    fn record_event(&self, event: &Event) {
        let mut event = event.clone();
        if event.kind == myset_api::EventKind::GaleraBootstrapRefused {
            // The brain's words name the local command; here it is an annotation.
            event.message.push_str(&format!(
                " On Kubernetes: kubectl annotate myset {} -n {} {}=ORDINAL",
                self.name,
                self.namespace,
                crate::operator::ANNOTATION_FORCE_BOOTSTRAP
            ));
        }
        let mut events = self.events.lock().expect("events lock");
        if events.len() == EVENTS_KEPT {
            events.pop_front();
        }
        events.push_back(event.clone());
        drop(events);
        (self.publish)(&event);
    }

    fn password_file(&self) -> String {
        format!(
            "Secret {}/{} (key password)",
            self.namespace,
            names::user_secret(&self.name)
        )
    }
}

/// Reads a cluster's credentials from its `N-agent` Secret.
pub fn secrets_from(secret: &k8s_openapi::api::core::v1::Secret) -> anyhow::Result<Secrets> {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(render::SECRETS_KEY))
        .ok_or_else(|| anyhow::anyhow!("the Secret has no {} key", render::SECRETS_KEY))?;
    Ok(serde_json::from_slice(&bytes.0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str) -> PodView {
        PodView {
            node: Some("n0".into()),
            terminating: false,
            phase: Some("Running".into()),
            role_label: None,
            uid: Some(uid.into()),
            restarts: 0,
            spec_delivered: None,
        }
    }

    #[test]
    fn a_listing_does_not_undo_what_was_noted_while_it_ran() {
        let (view, noted) = (Mutex::new(View::default()), Mutex::new(Noted::default()));
        note_pod(&view, &noted, 0, Some(pod("a")));
        let began = noted.lock().unwrap().seq;
        // While the listing runs: member 1's Pod is created, member 0's is annotated.
        note_pod(&view, &noted, 1, Some(pod("b")));
        let annotated = PodView {
            spec_delivered: Some(0),
            ..pod("a")
        };
        note_pod(&view, &noted, 0, Some(annotated.clone()));
        // The listing saw member 0's Pod as it was, and no Pod of member 1; member 2's is new
        // to the runtime.
        let mut listed = View::default();
        listed.pods.insert(0, pod("a"));
        listed.pods.insert(2, pod("c"));
        let current = view.lock().unwrap().clone();
        let merged = merge_listing(listed, &current, &mut noted.lock().unwrap(), began);
        assert_eq!(merged.pods.get(&0), Some(&annotated));
        assert_eq!(merged.pods.get(&1), Some(&pod("b")));
        assert_eq!(merged.pods.get(&2), Some(&pod("c")));
        // A later listing is believed as it is.
        let began = noted.lock().unwrap().seq;
        let merged = merge_listing(View::default(), &merged, &mut noted.lock().unwrap(), began);
        assert!(merged.pods.is_empty());
        assert!(noted.lock().unwrap().at.is_empty());
    }
}
