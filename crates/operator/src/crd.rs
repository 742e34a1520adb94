//! The `MySet` custom resource (`myset.dev/v1alpha1`): what a user asks for (spec) and what the
//! operator reports (status). The CRD's schema is generated from these types
//! (`myset operator crd`) and committed as `deploy/crd.yaml`.

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most instances a `MySet` may have (the same bound as the local runtime's).
pub const MAX_REPLICAS: u32 = 64;

/// A replicated MariaDB cluster with stable ordinal identities: Pods `<name>-<N>` with PVCs
/// `<name>-<N>-data`, one primary and replicas (or Galera members, all writable),
/// `<name>-rw`, `<name>-ro` and a headless Service `<name>`.
// The printer columns repeat `type_ = ...`, which clippy takes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "myset.dev",
    version = "v1alpha1",
    kind = "MySet",
    plural = "mysets",
    shortname = "ms",
    namespaced,
    status = "MySetStatus",
    derive = "PartialEq",
    doc = "A replicated MariaDB cluster with stable ordinal identities, managed by myset",
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Topology", type_ = "string", json_path = ".spec.topology"),
    printcolumn(name = "Primary", type_ = "integer", json_path = ".status.primary"),
    printcolumn(name = "Term", type_ = "integer", json_path = ".status.term"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MySetSpec {
    /// Number of instances, the primary included (1 to 64).
    #[schemars(range(min = 1, max = 64))]
    pub replicas: u32,
    /// semisync: a commit returns once a replica has it, so a failover loses no acknowledged
    /// write; async: faster commits, a failover may lose the last ones.
    #[serde(default)]
    pub durability: myset_api::Durability,
    /// replication: one primary and replicas (the default); galera: every member writable
    /// through wsrep, at least 3 members, recovered after a full outage from the member with
    /// the newest data. Fixed at creation: a later change is refused (event `spec-refused`,
    /// condition `Degraded`) and the cluster keeps its topology.
    #[serde(default)]
    pub topology: myset_api::Topology,
    /// Galera only: every read on a user's connection first waits until its member has
    /// applied everything committed before it (`wsrep_sync_wait = 1`), so reads through
    /// `<name>-ro` see every acknowledged write; each read then costs a round trip to the
    /// group. A change applies at each member's next server start.
    #[serde(default)]
    pub causal_reads: bool,
    /// Seconds the primary must look dead (or its node unreachable) before an automatic
    /// failover (1 to 600).
    #[serde(default = "default_failover_delay_seconds")]
    #[schemars(range(min = 1, max = 600))]
    pub failover_delay_seconds: u32,
    /// A member whose Pod cannot run for this long (its node is gone with its local volume,
    /// say) is rebuilt on another node with a fresh volume cloned from a peer, unless it is
    /// the primary or the last copy of the data (60 to 86400).
    #[serde(default = "default_node_loss_timeout_seconds")]
    #[schemars(range(min = 60, max = 86400))]
    pub node_loss_timeout_seconds: u32,
    /// Container image with the myset binary, mariadbd and mariadb-backup.
    pub image: String,
    /// Each instance's data volume.
    pub storage: Storage,
    /// Compute resources of each instance's container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Server options (`option-name: value`), like the tutorial's ConfigMap.
    #[serde(default)]
    pub server: ServerSettings,
    /// Where the instances run: for all of them, with per-ordinal overrides.
    #[serde(default)]
    pub scheduling: Scheduling,
    /// The client Services `<name>-rw` and `<name>-ro`.
    #[serde(default)]
    pub service: ServiceSettings,
}

fn default_failover_delay_seconds() -> u32 {
    3
}

fn default_node_loss_timeout_seconds() -> u32 {
    300
}

/// Each instance's PersistentVolumeClaim.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    /// Requested size, a Kubernetes quantity such as `10Gi`.
    pub size: Quantity,
    /// StorageClass of the claims [default: the cluster's default class].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Delete the claims of instances removed by a scale-down. By default they are kept, as
    /// the tutorial shows, and a later scale-up reuses them.
    #[serde(default)]
    pub delete_on_scale_down: bool,
}

/// Server options by role, rendered into the server's option file. Options myset manages
/// itself (identity, replication, paths, `read-only`) are refused.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerSettings {
    /// Options of every instance.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub all: BTreeMap<String, String>,
    /// Options of the primary only (the tutorial's `primary.cnf`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub primary: BTreeMap<String, String>,
    /// Options of replicas only (the tutorial's `replica.cnf`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub replica: BTreeMap<String, String>,
}

/// Where instances are scheduled. Unlike a StatefulSet's single template, each ordinal may
/// have its own placement (for example node affinity to the node holding its local volume).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Scheduling {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Per-ordinal overrides, merged over the settings above: node selector keys are
    /// overridden one by one, each kind of affinity (node, pod, pod anti-) is replaced when
    /// given, and tolerations are added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ordinals: Vec<OrdinalScheduling>,
}

/// The scheduling of one ordinal.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrdinalScheduling {
    pub ordinal: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
}

/// The client Services.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSettings {
    /// Type of `<name>-rw` and `<name>-ro` (the headless Service is always headless).
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// Port of `<name>-rw` (the primary).
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub rw_port: u16,
    /// Port of `<name>-ro` (every Ready instance, primary included).
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub ro_port: u16,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            type_: ServiceType::default(),
            rw_port: default_port(),
            ro_port: default_port(),
        }
    }
}

fn default_port() -> u16 {
    3306
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// What the operator observed and decided. The term and the primary are written here (with
/// the resource version) before the operator acts on them, as `cluster.json` is locally.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MySetStatus {
    /// Ordinal of the primary (Galera: the member `<name>-rw` prefers; the instance with the
    /// role primary is the one it routes to now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<u32>,
    /// Increases with every change of primary; agents refuse orders from an older term.
    #[serde(default)]
    pub term: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<InstanceStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_primary_change: Option<PrimaryChange>,
    /// `Ready`, `Progressing` and `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The controller's durable record (members, placements, term, primary, former primaries
    /// held for a check): what `cluster.json` holds locally. `primary`, `term` and
    /// `lastPrimaryChange` above are copied from it for people and `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<myset_api::ClusterState>,
}

/// One instance as last observed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    pub ordinal: u32,
    /// The Pod's name, `<name>-<ordinal>`.
    pub pod: String,
    /// The node it runs on, once scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub role: Role,
    pub ready: bool,
    /// GTID position (`gtid_current_pos`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
    /// Galera members: wsrep state, component, cluster size and seqno.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub galera: Option<myset_api::GaleraStatus>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    Replica,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }
}

/// The last change of primary.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrimaryChange {
    pub time: Time,
    pub term: u64,
    pub from: u32,
    pub to: u32,
    /// `failover` or `switchover`.
    pub kind: ChangeKind,
    pub reason: String,
}

pub use myset_api::ChangeKind;

/// Condition types the operator sets in `status.conditions`.
pub mod condition {
    /// Every instance is Ready and the primary takes writes.
    pub const READY: &str = "Ready";
    /// Instances are being created, cloned, scaled or a primary is changing.
    pub const PROGRESSING: &str = "Progressing";
    /// Some instance is not Ready, or the primary is fenced.
    pub const DEGRADED: &str = "Degraded";
}
