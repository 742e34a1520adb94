#![allow(dead_code)] // Shared by several test binaries, each using part of it.
//! A simulated Kubernetes for the operator's scenario tests: kube-fake-client's in-memory API
//! server, plus a minimal scheduler and kubelet ([`Sim::kubelet_pass`]) and agents that live
//! in the controller tests' fake world. A member's agent runs while its Pod exists on a Ready
//! node; a node that stops reporting cuts its agents off (they can neither be reached nor
//! killed); each PVC is a local volume, so its member's Pod can only run on the node where
//! the PVC was first used.

#[path = "../../../controller/tests/fake/mod.rs"]
#[allow(dead_code)]
pub mod fake;

use fake::{FakeAgents, FakeRuntime, World};
use k8s_openapi::api::core::v1::{
    Node, NodeCondition, NodeSpec, NodeStatus, PersistentVolumeClaim, Pod,
};
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams};
use myset_api::{Address, AgentStatus, InstanceSpec, Order, OrderResult};
use myset_controller::Timing;
use myset_controller::{AgentApi, AgentError, Runtime};
use myset_core::galera::MemberData;
use myset_operator::operator::Operator;
use myset_operator::MySet;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const NAMESPACE: &str = "default";

/// The agents, reached through the simulated Pods.
#[derive(Clone)]
pub struct SimAgents {
    pub world: Arc<World>,
    pods: Api<Pod>,
    nodes: Api<Node>,
    /// The uid of the Pod each running fake agent belongs to: a new Pod is a new process.
    incarnation: Arc<Mutex<BTreeMap<u32, String>>>,
    /// Labels under which each member's data was set aside (`--set-aside-data`), once each.
    set_aside: Arc<Mutex<BTreeMap<u32, Vec<String>>>>,
    /// Galera positions the agents reported, in order: (member, the Pod's uid).
    pub positions_reported: Arc<Mutex<Vec<(u32, String)>>>,
}

/// `<name>-<N>.<name>.<ns>.svc` → N.
fn ordinal_of(agent: &Address) -> Option<u32> {
    agent
        .host
        .split('.')
        .next()?
        .rsplit('-')
        .next()?
        .parse()
        .ok()
}

fn cut_off(agent: &Address) -> AgentError {
    AgentError::Unreachable {
        agent: agent.clone(),
        detail: "no Pod, or its node does not answer".into(),
    }
}

impl SimAgents {
    /// Whether the ordinal's Pod runs on a Ready node; with its uid.
    async fn running_pod(&self, ordinal: u32, cluster: &str) -> Option<String> {
        let pod = self
            .pods
            .get_opt(&format!("{cluster}-{ordinal}"))
            .await
            .ok()??;
        if pod.metadata.deletion_timestamp.is_some() {
            return None;
        }
        let node = pod.spec.as_ref()?.node_name.clone()?;
        let node = self.nodes.get_opt(&node).await.ok()??;
        node_ready(&node).then(|| pod.metadata.uid.clone().unwrap_or_default())
    }

    /// Brings the fake agent in line with its Pod: gone with it, cut off with its node.
    async fn sync(&self, ordinal: u32, cluster: &str) -> Option<String> {
        let uid = self.running_pod(ordinal, cluster).await;
        let known = self.incarnation.lock().unwrap().get(&ordinal).cloned();
        let exists = self.world.with(|w| w.agents.contains_key(&ordinal));
        match &uid {
            Some(u) if known.as_ref() == Some(u) => {
                if exists {
                    self.world.with(|w| {
                        let a = w.agents.get_mut(&ordinal).unwrap();
                        a.isolated = false;
                        a.partitioned = false;
                    });
                }
            }
            _ => {
                // The Pod is gone, cut off, or replaced: the old process serves nobody.
                if exists {
                    let pod_gone = self
                        .pods
                        .get_opt(&format!("{cluster}-{ordinal}"))
                        .await
                        .ok()
                        .flatten()
                        .is_none();
                    // A new Pod's agent may have started during the calls above: it is not
                    // the process this is about.
                    let current = self.incarnation.lock().unwrap().get(&ordinal).cloned();
                    if current != known {
                        self.world.propagate();
                        return uid;
                    }
                    self.world.with(|w| {
                        let a = w.agents.get_mut(&ordinal).unwrap();
                        if pod_gone || uid.is_some() {
                            if a.running {
                                a.running = false;
                                w.disk.insert(ordinal, a.executed);
                            }
                        } else {
                            a.isolated = true;
                            a.partitioned = true;
                        }
                    });
                }
            }
        }
        self.world.propagate();
        uid
    }
}

impl SimAgents {
    /// What the agent does first when its Pod says `--set-aside-data LABEL`.
    async fn apply_set_aside(&self, spec: &InstanceSpec) {
        let pod = format!("{}-{}", spec.cluster, spec.ordinal);
        let Ok(Some(pod)) = self.pods.get_opt(&pod).await else {
            return;
        };
        let command = pod
            .spec
            .and_then(|s| s.containers.into_iter().next())
            .and_then(|c| c.command)
            .unwrap_or_default();
        let label = command
            .iter()
            .position(|a| a == "--set-aside-data")
            .and_then(|i| command.get(i + 1));
        if let Some(label) = label {
            let mut done = self.set_aside.lock().unwrap();
            let labels = done.entry(spec.ordinal).or_default();
            if !labels.contains(label) {
                labels.push(label.clone());
                self.world.with(|w| w.disk.remove(&spec.ordinal));
            }
        }
    }
}

impl AgentApi for SimAgents {
    async fn status(
        &self,
        agent: &Address,
        term: u64,
        timeout: Duration,
    ) -> Result<AgentStatus, AgentError> {
        let ordinal = ordinal_of(agent).ok_or_else(|| cut_off(agent))?;
        let cluster = cluster_of(agent);
        self.sync(ordinal, &cluster).await;
        FakeAgents(self.world.clone())
            .status(agent, term, timeout)
            .await
    }

    /// The first spec a new Pod's agent takes starts its process in the fake world.
    async fn put_spec(&self, spec: &InstanceSpec, timeout: Duration) -> Result<(), AgentError> {
        let uid = self
            .sync(spec.ordinal, &spec.cluster)
            .await
            .ok_or_else(|| cut_off(&spec.agent))?;
        let known = self.incarnation.lock().unwrap().get(&spec.ordinal).cloned();
        if known.as_ref() != Some(&uid) {
            self.apply_set_aside(spec).await;
            // This Pod's process from now on: a call about it meanwhile must not take the
            // agent being started for the previous Pod's.
            self.incarnation
                .lock()
                .unwrap()
                .insert(spec.ordinal, uid.clone());
            let started = FakeRuntime::new(self.world.clone()).start(spec).await;
            if let Err(e) = started {
                let mut incarnation = self.incarnation.lock().unwrap();
                match known {
                    Some(k) => incarnation.insert(spec.ordinal, k),
                    None => incarnation.remove(&spec.ordinal),
                };
                return Err(AgentError::Refused {
                    agent: spec.agent.clone(),
                    detail: format!("{e:#}"),
                });
            }
            return Ok(());
        }
        FakeAgents(self.world.clone()).put_spec(spec, timeout).await
    }

    async fn order(
        &self,
        agent: &Address,
        order: &Order,
        timeout: Duration,
    ) -> Result<OrderResult, AgentError> {
        let ordinal = ordinal_of(agent).ok_or_else(|| cut_off(agent))?;
        self.sync(ordinal, &cluster_of(agent)).await;
        FakeAgents(self.world.clone())
            .order(agent, order, timeout)
            .await
    }

    /// The agent of a Pod that was handed no spec runs no server: it reads its volume.
    async fn galera_position(
        &self,
        agent: &Address,
        _timeout: Duration,
    ) -> Result<MemberData, AgentError> {
        let ordinal = ordinal_of(agent).ok_or_else(|| cut_off(agent))?;
        let uid = self
            .sync(ordinal, &cluster_of(agent))
            .await
            .ok_or_else(|| cut_off(agent))?;
        let known = self.incarnation.lock().unwrap().get(&ordinal).cloned();
        let serving = self
            .world
            .with(|w| w.agents.get(&ordinal).is_some_and(|a| a.running));
        if known.as_ref() == Some(&uid) && serving {
            return Err(AgentError::Refused {
                agent: agent.clone(),
                detail: "this member's agent has its spec and runs its server".into(),
            });
        }
        self.positions_reported.lock().unwrap().push((ordinal, uid));
        Ok(self.world.galera_position(ordinal))
    }
}

fn cluster_of(agent: &Address) -> String {
    let pod = agent.host.split('.').next().unwrap_or("");
    pod.rsplit_once('-')
        .map(|(c, _)| c.to_string())
        .unwrap_or_default()
}

pub fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

pub fn node(name: &str, ready: bool) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "Unknown" }.into(),
                ..NodeCondition::default()
            }]),
            ..NodeStatus::default()
        }),
    }
}

/// The names of every object `api` lists, sorted.
async fn sorted_names<K>(api: &Api<K>) -> Vec<String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut names: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|o| o.meta().name.clone())
        .collect();
    names.sort();
    names
}

/// Names `MySet`'s group, version and kind for kube-fake-client's status-subresource
/// registration, which reads them from a default instance (a `MySet` has none).
#[derive(Clone, Debug, Default)]
pub struct MySetKind(ObjectMeta);

impl serde::Serialize for MySetKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde_json::json!({"apiVersion": "myset.dev/v1alpha1", "kind": "MySet"}).serialize(s)
    }
}

impl kube::Resource for MySetKind {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;
    fn kind(_: &()) -> std::borrow::Cow<'_, str> {
        "MySet".into()
    }
    fn group(_: &()) -> std::borrow::Cow<'_, str> {
        "myset.dev".into()
    }
    fn version(_: &()) -> std::borrow::Cow<'_, str> {
        "v1alpha1".into()
    }
    fn plural(_: &()) -> std::borrow::Cow<'_, str> {
        "mysets".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.0
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.0
    }
}

/// The simulated cluster: API, nodes, volumes pinned to nodes, and the agents' world.
pub struct Sim {
    pub client: kube::Client,
    pub agents: SimAgents,
    pub pods: Api<Pod>,
    pub pvcs: Api<PersistentVolumeClaim>,
    pub nodes: Api<Node>,
    pub mysets: Api<MySet>,
    /// Where each PVC (by uid) was first used: a local volume stays on its node.
    volume_node: Mutex<BTreeMap<String, String>>,
}

impl Sim {
    /// An API server holding `myset` and nodes n0..n{nodes-1}, all Ready.
    pub async fn new(myset: MySet, nodes: usize) -> Sim {
        let mut builder = kube_fake_client::ClientBuilder::new()
            .with_resource::<MySet>()
            .with_status_subresource::<MySetKind>()
            .with_object(myset);
        for n in 0..nodes {
            builder = builder.with_object(node(&format!("n{n}"), true));
        }
        let client = builder.build().await.expect("fake API server");
        let pods = Api::namespaced(client.clone(), NAMESPACE);
        let nodes = Api::all(client.clone());
        Sim {
            agents: SimAgents {
                world: World::new(),
                pods: pods.clone(),
                nodes: nodes.clone(),
                incarnation: Arc::default(),
                set_aside: Arc::default(),
                positions_reported: Arc::default(),
            },
            pvcs: Api::namespaced(client.clone(), NAMESPACE),
            mysets: Api::namespaced(client.clone(), NAMESPACE),
            pods,
            nodes,
            client,
            volume_node: Mutex::default(),
        }
    }

    /// One pass of the scheduler and kubelets: a Pod without a node goes to the node of its
    /// volume, or for a new volume to the first Ready schedulable node with no member of the
    /// set (the rendered anti-affinity); then it runs.
    pub async fn kubelet_pass(&self) {
        let pods = self.pods.list(&ListParams::default()).await.unwrap().items;
        let nodes = self.nodes.list(&ListParams::default()).await.unwrap().items;
        let pvcs = self.pvcs.list(&ListParams::default()).await.unwrap().items;
        for pod in pods {
            let name = pod.metadata.name.clone().unwrap();
            if pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .is_some()
            {
                continue;
            }
            let claim = format!("{name}-data");
            let Some(pvc_uid) = pvcs
                .iter()
                .find(|c| c.metadata.name.as_deref() == Some(claim.as_str()))
                .and_then(|c| c.metadata.uid.clone())
            else {
                continue;
            };
            let pinned = self.volume_node.lock().unwrap().get(&pvc_uid).cloned();
            let target = match pinned {
                Some(n) => nodes
                    .iter()
                    .find(|x| x.metadata.name.as_deref() == Some(n.as_str()) && node_ready(x))
                    .map(|_| n),
                None => {
                    let busy: Vec<String> = self
                        .pods
                        .list(&ListParams::default())
                        .await
                        .unwrap()
                        .items
                        .iter()
                        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
                        .collect();
                    nodes
                        .iter()
                        .filter(|x| node_ready(x))
                        .filter(|x| {
                            !x.spec
                                .as_ref()
                                .and_then(|s| s.unschedulable)
                                .unwrap_or(false)
                        })
                        .filter_map(|x| x.metadata.name.clone())
                        .find(|n| !busy.contains(n))
                }
            };
            let Some(target) = target else {
                self.set_phase(&name, "Pending").await;
                continue;
            };
            self.volume_node
                .lock()
                .unwrap()
                .insert(pvc_uid, target.clone());
            let patch = serde_json::json!({"spec": {"nodeName": target}});
            self.pods
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
            self.set_phase(&name, "Running").await;
        }
    }

    async fn set_phase(&self, pod: &str, phase: &str) {
        let patch = serde_json::json!({"status": {"phase": phase}});
        let _ = self
            .pods
            .patch_status(pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await;
    }

    /// Marks a node Ready or not (its kubelet stopped reporting).
    pub async fn set_node_ready(&self, name: &str, ready: bool) {
        let mut n = self.nodes.get(name).await.unwrap();
        n.status = node(name, ready).status;
        self.nodes
            .replace_status(name, &Default::default(), &n)
            .await
            .unwrap();
        assert_eq!(node_ready(&self.nodes.get(name).await.unwrap()), ready);
    }

    /// The kubelet restarts a member's container: its agent and server die, the Pod stays
    /// (same uid) with a higher restart count, and the new agent waits for a spec.
    pub async fn restart_container(&self, ordinal: u32) {
        let name = format!("db-{ordinal}");
        let pod = self.pods.get(&name).await.unwrap();
        let restarts: i32 = pod
            .status
            .and_then(|s| s.container_statuses)
            .map(|c| c.iter().map(|c| c.restart_count).sum())
            .unwrap_or(0);
        self.agents.world.with(|w| {
            let a = w.agents.get_mut(&ordinal).unwrap();
            a.running = false;
            w.disk.insert(ordinal, a.executed);
        });
        self.agents.incarnation.lock().unwrap().remove(&ordinal);
        self.agents.world.propagate();
        let patch = serde_json::json!({"status": {"containerStatuses": [{
            "name": "myset", "image": "localhost/myset:dev", "imageID": "",
            "ready": false, "restartCount": restarts + 1,
        }]}});
        self.pods
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    /// Cordons a node, as `kubectl drain` does first.
    pub async fn cordon(&self, name: &str) {
        let patch = serde_json::json!({"spec": {"unschedulable": true}});
        self.nodes
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    pub async fn pod_names(&self) -> Vec<String> {
        sorted_names(&self.pods).await
    }

    pub async fn pvc_names(&self) -> Vec<String> {
        sorted_names(&self.pvcs).await
    }

    /// The `myset.dev/role` label of each Pod, by name.
    pub async fn role_labels(&self) -> BTreeMap<String, String> {
        self.pods
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|p| {
                let role = p.metadata.labels?.get("myset.dev/role")?.clone();
                Some((p.metadata.name?, role))
            })
            .collect()
    }

    pub async fn node_of(&self, pod: &str) -> Option<String> {
        self.pods.get_opt(pod).await.ok()??.spec?.node_name
    }
}

/// The operator over a simulated cluster, stepped on the paused clock.
pub const TIMING: Timing = Timing {
    probe_period: Duration::from_secs(1),
    probe_timeout: Duration::from_secs(1),
};

pub fn myset(replicas: u32) -> MySet {
    myset_of(replicas, myset_api::Topology::Replication)
}

pub fn myset_of(replicas: u32, topology: myset_api::Topology) -> MySet {
    let text = format!(
        "apiVersion: myset.dev/v1alpha1
kind: MySet
metadata:
  name: db
  namespace: {NAMESPACE}
  uid: 6c1c3a52-0000-4000-8000-000000000001
spec:
  replicas: {replicas}
  topology: {topology}
  failoverDelaySeconds: 3
  nodeLossTimeoutSeconds: 60
  image: localhost/myset:dev
  storage:
    size: 1Gi
"
    );
    myset_operator::parse_manifest(&text).expect("a valid MySet")
}

pub struct Harness {
    pub sim: Sim,
    pub operator: Arc<Operator<SimAgents>>,
}

impl Harness {
    pub async fn new(replicas: u32, nodes: usize) -> Harness {
        Harness::with(myset(replicas), nodes).await
    }

    pub async fn with(myset: MySet, nodes: usize) -> Harness {
        let sim = Sim::new(myset, nodes).await;
        let agents = sim.agents.clone();
        // A Pod that cannot run answers no position: a minute of waiting is enough here.
        let operator = Arc::new(
            Operator::with_agents(sim.client.clone(), TIMING, move |_| agents.clone())
                .with_position_wait(Duration::from_secs(60)),
        );
        Harness { sim, operator }
    }

    /// Edits the `MySet` as `kubectl patch --type merge` does.
    pub async fn edit(&self, patch: serde_json::Value) {
        self.sim
            .mysets
            .patch("db", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("edit the MySet");
    }

    pub async fn latest(&self) -> MySet {
        self.sim.mysets.get("db").await.expect("the MySet")
    }

    /// Half a second passes; the scheduler and kubelets act, and the operator reconciles the
    /// `MySet` as its watch would on a change.
    pub async fn step(&self) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.sim.kubelet_pass().await;
        let latest = self.latest().await;
        self.operator.reconcile(&latest).await.expect("reconcile");
    }

    /// Steps until `done` holds, at most `limit` of (paused) time.
    pub async fn until<F, Fut>(&self, limit: Duration, mut done: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            self.step().await;
            if done().await {
                return true;
            }
        }
        false
    }

    pub async fn status(&self) -> myset_operator::MySetStatus {
        self.latest().await.status.unwrap_or_default()
    }

    pub async fn all_ready(&self, n: usize) -> bool {
        let s = self.status().await;
        s.instances.len() == n && s.instances.iter().all(|i| i.ready)
    }

    pub async fn converge(&self, n: usize) {
        assert!(
            self.until(Duration::from_secs(120), || self.all_ready(n))
                .await,
            "not converged to {n} Ready instances: {:?}; events: {:#?}",
            self.status().await,
            self.operator
                .brain(NAMESPACE, "db")
                .map(|b| b.runtime().events())
        );
    }

    pub fn primary(&self) -> u32 {
        self.operator
            .brain(NAMESPACE, "db")
            .expect("a brain")
            .state()
            .primary
    }

    pub async fn labelled_primary(&self) -> Vec<String> {
        self.sim
            .role_labels()
            .await
            .into_iter()
            .filter(|(_, role)| role == "primary")
            .map(|(pod, _)| pod)
            .collect()
    }

    /// Writes through -rw (to the recorded primary) in the fake world.
    pub fn write(&self, n: u64) -> u64 {
        self.sim.agents.world.write_on(self.primary(), n, true)
    }

    /// Every acknowledged write is on the current primary.
    pub fn no_write_lost(&self) -> bool {
        let primary = self.sim.agents.world.agent(self.primary());
        self.sim
            .agents
            .world
            .with(|w| w.acked.iter().all(|&seq| primary.executed.1 >= seq))
    }
}
