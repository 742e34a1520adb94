//! What the operator creates for a `MySet`, as pure functions: no API calls, no randomness
//! (credentials come in as an argument), so every object is unit-tested and schema-validated.
//!
//! For a `MySet` named N with R replicas:
//! - Secrets `N-agent` (the agents' credentials file) and `N-user` (the account for clients);
//! - ConfigMap `N-config` with the server options by role (the tutorial's ConfigMap);
//! - Services `N` (headless, stable DNS per member), `N-ro` (every Ready member) and `N-rw`
//!   (`myset.dev/role=primary`);
//! - a PodDisruptionBudget `N` allowing one disruption at a time;
//! - per ordinal o < R: PVC `N-o-data` and Pod `N-o`. Never a StatefulSet: each Pod gets its
//!   own placement, and the operator relabels the primary itself.

use crate::crd::{MySet, OrdinalScheduling, Role, Scheduling, ServerSettings};
use crate::validate::{validate, InvalidMySet};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort,
    EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, Pod,
    PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec, Probe, SeccompProfile, Secret,
    SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec, Toleration, Volume,
    VolumeMount, VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;
use myset_api::Secrets;
use serde::Serialize;
use std::collections::BTreeMap;

pub const LABEL_CLUSTER: &str = "myset.dev/cluster";
pub const LABEL_ORDINAL: &str = "myset.dev/ordinal";
pub const LABEL_ROLE: &str = "myset.dev/role";

/// The server's port inside every Pod.
pub const MYSQL_PORT: i32 = 3306;
/// The agent's authenticated API (status, spec, orders, clone stream).
pub const AGENT_PORT: i32 = 8080;
/// The kubelet's probes. The kubelet cannot present the API token (probe headers are literal
/// strings in the Pod spec, readable by anyone who can read Pods, and cannot come from a
/// Secret), so the probes go to a separate port on which the agent answers `/healthz` and
/// `/readyz` with a bare verdict and nothing else (`--probe-listen`); the API port keeps
/// requiring the token.
pub const PROBE_PORT: i32 = 8081;
/// Galera members' group communication, incremental and full state transfer ports (Galera's
/// usual ones), the same in every Pod; peers reach them through the headless Service.
pub const GALERA_PORTS: myset_api::GaleraPorts = myset_api::GaleraPorts {
    gcomm: 4567,
    ist: 4568,
    sst: 4444,
};
/// The names of those ports on Pods and on the headless Service.
const GALERA_PORT_NAMES: [&str; 3] = ["galera", "galera-ist", "galera-sst"];

/// Galera's ports with their names, for a Galera `MySet`; none otherwise.
fn galera_ports(topology: myset_api::Topology) -> Vec<(&'static str, i32)> {
    match topology {
        myset_api::Topology::Replication => Vec::new(),
        myset_api::Topology::Galera => {
            let p = GALERA_PORTS;
            GALERA_PORT_NAMES
                .into_iter()
                .zip([p.gcomm, p.ist, p.sst].map(i32::from))
                .collect()
        }
    }
}

/// The PVC's mount: the agent's instance directory (data dir, spec, sockets, logs).
pub const INSTANCE_DIR: &str = "/var/lib/myset";
/// Where the `N-agent` Secret is mounted; the agent reads `secrets.json` there.
pub const SECRETS_DIR: &str = "/etc/myset/secrets";
pub const SECRETS_KEY: &str = "secrets.json";
/// Where the `N-config` ConfigMap is mounted: `all.cnf`, `primary.cnf`, `replica.cnf`.
pub const SERVER_CONFIG_DIR: &str = "/etc/myset/server.d";

/// The unprivileged user and group the container runs as (no user name is needed: mariadbd
/// runs as whoever starts it when that is not root).
pub const RUN_AS: i64 = 10001;

/// How long a Pod may take to become live the first time: bootstrap, or a clone of a large
/// data dir from a donor followed by its prepare. 24 hours, so a long clone is never killed
/// (mariadb-operator's #270 and #744); a Pod stuck at start is the operator's business, not
/// the kubelet's.
pub const STARTUP_PERIOD_SECONDS: i32 = 10;
pub const STARTUP_FAILURE_THRESHOLD: i32 = 8640;

/// One rendered object. Serializes as the Kubernetes object itself (apiVersion and kind
/// included).
/// (A Pod is much larger than a Secret; boxing would buy nothing for a dozen objects.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Object {
    Secret(Secret),
    ConfigMap(ConfigMap),
    Service(Service),
    PodDisruptionBudget(PodDisruptionBudget),
    PersistentVolumeClaim(PersistentVolumeClaim),
    Pod(Pod),
}

impl Object {
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Secret(_) => "Secret",
            Object::ConfigMap(_) => "ConfigMap",
            Object::Service(_) => "Service",
            Object::PodDisruptionBudget(_) => "PodDisruptionBudget",
            Object::PersistentVolumeClaim(_) => "PersistentVolumeClaim",
            Object::Pod(_) => "Pod",
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::Secret(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::PodDisruptionBudget(o) => &o.metadata,
            Object::PersistentVolumeClaim(o) => &o.metadata,
            Object::Pod(o) => &o.metadata,
        }
    }

    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or("")
    }
}

/// Names of everything rendered for a `MySet`.
pub mod names {
    pub fn pod(cluster: &str, ordinal: u32) -> String {
        format!("{cluster}-{ordinal}")
    }
    pub fn pvc(cluster: &str, ordinal: u32) -> String {
        format!("{cluster}-{ordinal}-data")
    }
    pub fn headless(cluster: &str) -> String {
        cluster.to_string()
    }
    pub fn rw(cluster: &str) -> String {
        format!("{cluster}-rw")
    }
    pub fn ro(cluster: &str) -> String {
        format!("{cluster}-ro")
    }
    pub fn agent_secret(cluster: &str) -> String {
        format!("{cluster}-agent")
    }
    pub fn user_secret(cluster: &str) -> String {
        format!("{cluster}-user")
    }
    pub fn config(cluster: &str) -> String {
        format!("{cluster}-config")
    }
    pub fn pdb(cluster: &str) -> String {
        cluster.to_string()
    }
}

/// Everything the operator creates for `myset`, in the order it would create them.
/// `secrets` are the cluster's credentials: generated once at the edge
/// ([`crate::generate_credentials`]) and then read back from the `N-agent` Secret.
///
/// The `MySet` must carry its `metadata.uid` (the API server sets it): owner references
/// need it.
pub fn render(myset: &MySet, secrets: &Secrets) -> Result<Vec<Object>, InvalidMySet> {
    let mut objects = render_shared(myset, secrets)?;
    let cx = Context::new(myset)?;
    let members: Vec<_> = (0..myset.spec.replicas)
        .map(|ordinal| render_member(myset, ordinal, cx.role(ordinal), None))
        .collect::<Result<_, _>>()?;
    let (pvcs, pods): (Vec<_>, Vec<_>) = members.into_iter().unzip();
    objects.extend(pvcs.into_iter().map(Object::PersistentVolumeClaim));
    objects.extend(pods.into_iter().map(Object::Pod));
    Ok(objects)
}

/// The objects every member shares: Secrets, ConfigMap, Services and the PDB.
pub fn render_shared(myset: &MySet, secrets: &Secrets) -> Result<Vec<Object>, InvalidMySet> {
    validate(myset)?;
    let cx = Context::new(myset)?;
    Ok(vec![
        Object::Secret(cx.agent_secret(secrets)?),
        Object::Secret(cx.user_secret(secrets)),
        Object::ConfigMap(cx.server_config(&myset.spec.server)),
        Object::Service(cx.headless_service()),
        Object::Service(cx.client_service(false)),
        Object::Service(cx.client_service(true)),
        Object::PodDisruptionBudget(cx.pdb()),
    ])
}

/// One member's PVC and Pod, its Pod labelled with `role`. With `set_aside`, the agent first
/// moves the volume's data dir aside under that label (a diverged former primary re-clones).
pub fn render_member(
    myset: &MySet,
    ordinal: u32,
    role: Role,
    set_aside: Option<&str>,
) -> Result<(PersistentVolumeClaim, Pod), InvalidMySet> {
    validate(myset)?;
    let cx = Context::new(myset)?;
    let mut pod = cx.pod(ordinal, role);
    if let Some(label) = set_aside {
        let spec = pod.spec.as_mut().expect("a rendered Pod has a spec");
        let command = spec.containers[0]
            .command
            .as_mut()
            .expect("the agent's command");
        command.extend(["--set-aside-data".to_string(), label.to_string()]);
    }
    Ok((cx.pvc(ordinal), pod))
}

/// The DNS name of a member's Pod through the headless Service: stable across restarts.
pub fn member_host(cluster: &str, namespace: &str, ordinal: u32) -> String {
    format!(
        "{}.{}.{namespace}.svc",
        names::pod(cluster, ordinal),
        names::headless(cluster)
    )
}

/// What every object of one `MySet` shares.
struct Context<'a> {
    myset: &'a MySet,
    name: String,
    namespace: String,
    owner: OwnerReference,
    primary: u32,
}

impl<'a> Context<'a> {
    fn new(myset: &'a MySet) -> Result<Self, InvalidMySet> {
        let name = myset.metadata.name.clone().unwrap_or_default();
        let uid = myset.metadata.uid.clone().ok_or_else(|| InvalidMySet {
            field: "metadata.uid".into(),
            problem: "missing; owner references need the uid the API server gave the MySet".into(),
        })?;
        Ok(Context {
            myset,
            owner: OwnerReference {
                api_version: "myset.dev/v1alpha1".into(),
                kind: "MySet".into(),
                name: name.clone(),
                uid,
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
            namespace: myset
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            // The primary recorded in the status; a new set starts with ordinal 0.
            primary: myset.status.as_ref().and_then(|s| s.primary).unwrap_or(0),
            name,
        })
    }

    fn role(&self, ordinal: u32) -> Role {
        if ordinal == self.primary {
            Role::Primary
        } else {
            Role::Replica
        }
    }

    /// Selects every member of this set: the only label Services and the PDB select on,
    /// besides the role for `-rw`.
    fn selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(LABEL_CLUSTER.to_string(), self.name.clone())])
    }

    fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.selector();
        labels.insert("app.kubernetes.io/name".into(), "myset".into());
        labels.insert("app.kubernetes.io/instance".into(), self.name.clone());
        labels.insert(
            "app.kubernetes.io/managed-by".into(),
            "myset-operator".into(),
        );
        labels
    }

    fn meta(&self, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }

    fn member_labels(&self, ordinal: u32) -> BTreeMap<String, String> {
        let mut labels = self.labels();
        labels.insert(LABEL_ORDINAL.into(), ordinal.to_string());
        labels
    }

    /// The agents' credentials file: every account's password and the API token, as the
    /// agent reads it (`--secrets`).
    fn agent_secret(&self, secrets: &Secrets) -> Result<Secret, InvalidMySet> {
        let json = serde_json::to_vec_pretty(secrets).map_err(|e| InvalidMySet {
            field: "credentials".into(),
            problem: e.to_string(),
        })?;
        Ok(Secret {
            metadata: self.meta(names::agent_secret(&self.name), self.labels()),
            type_: Some("Opaque".into()),
            immutable: Some(true),
            data: Some(BTreeMap::from([(SECRETS_KEY.into(), ByteString(json))])),
            ..Secret::default()
        })
    }

    /// The account handed to clients, in the standard basic-auth shape.
    fn user_secret(&self, secrets: &Secrets) -> Secret {
        let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
        Secret {
            metadata: self.meta(names::user_secret(&self.name), self.labels()),
            type_: Some("kubernetes.io/basic-auth".into()),
            immutable: Some(true),
            data: Some(BTreeMap::from([
                ("username".into(), bytes(&secrets.user)),
                ("password".into(), bytes(&secrets.user_password)),
            ])),
            ..Secret::default()
        }
    }

    /// The tutorial's ConfigMap: options for all members, the primary, and replicas. Both
    /// role files are mounted in every Pod because the role changes without a restart; the
    /// agent includes the one of its current role.
    fn server_config(&self, server: &ServerSettings) -> ConfigMap {
        let file = |what: &str, options: &BTreeMap<String, String>| {
            let mut text = format!("# {what} (from the MySet's spec.server)\n[mariadbd]\n");
            for (k, v) in options {
                text.push_str(&format!("{k} = {v}\n"));
            }
            text
        };
        ConfigMap {
            metadata: self.meta(names::config(&self.name), self.labels()),
            data: Some(BTreeMap::from([
                (
                    "all.cnf".into(),
                    file("options of every instance", &server.all),
                ),
                (
                    "primary.cnf".into(),
                    file("options of the primary", &server.primary),
                ),
                (
                    "replica.cnf".into(),
                    file("options of replicas", &server.replica),
                ),
            ])),
            ..ConfigMap::default()
        }
    }

    /// `N`: stable DNS `N-<o>.N.<namespace>.svc` for every member, Ready or not (a cloning
    /// replica must reach its donor, and the donor it).
    fn headless_service(&self) -> Service {
        Service {
            metadata: self.meta(names::headless(&self.name), self.labels()),
            spec: Some(ServiceSpec {
                cluster_ip: Some("None".into()),
                publish_not_ready_addresses: Some(true),
                selector: Some(self.selector()),
                // Galera members reach each other's group communication and state
                // transfers here, Ready or not (a joiner is not Ready until it synced).
                ports: Some(
                    [("mysql", MYSQL_PORT), ("agent", AGENT_PORT)]
                        .into_iter()
                        .chain(galera_ports(self.myset.spec.topology))
                        .map(|(name, port)| service_port(name, port, name))
                        .collect(),
                ),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    /// `N-rw` selects the primary by its role label (the operator relabels on promotion);
    /// `N-ro` selects every member, and Kubernetes keeps only the Ready ones as endpoints,
    /// as the tutorial's `mysql-read`.
    fn client_service(&self, rw: bool) -> Service {
        let settings = &self.myset.spec.service;
        let mut selector = self.selector();
        let (name, port) = if rw {
            selector.insert(LABEL_ROLE.into(), Role::Primary.as_str().into());
            (names::rw(&self.name), settings.rw_port)
        } else {
            (names::ro(&self.name), settings.ro_port)
        };
        Service {
            metadata: self.meta(name, self.labels()),
            spec: Some(ServiceSpec {
                type_: Some(settings.type_.as_str().into()),
                selector: Some(selector),
                ports: Some(vec![service_port("mysql", port.into(), "mysql")]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    /// One voluntary disruption at a time: a drain never takes two members at once. (Before
    /// the primary's Pod is evicted the operator switches over; that is the reconcile loop's
    /// work, not this object's.)
    fn pdb(&self) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: self.meta(names::pdb(&self.name), self.labels()),
            spec: Some(PodDisruptionBudgetSpec {
                max_unavailable: Some(IntOrString::Int(1)),
                selector: Some(LabelSelector {
                    match_labels: Some(self.selector()),
                    ..LabelSelector::default()
                }),
                ..PodDisruptionBudgetSpec::default()
            }),
            ..PodDisruptionBudget::default()
        }
    }

    fn pvc(&self, ordinal: u32) -> PersistentVolumeClaim {
        let storage = &self.myset.spec.storage;
        PersistentVolumeClaim {
            metadata: self.meta(names::pvc(&self.name, ordinal), self.member_labels(ordinal)),
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: storage.storage_class_name.clone(),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([("storage".into(), storage.size.clone())])),
                    ..VolumeResourceRequirements::default()
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            ..PersistentVolumeClaim::default()
        }
    }

    fn pod(&self, ordinal: u32, role: Role) -> Pod {
        let spec = &self.myset.spec;
        let pod_name = names::pod(&self.name, ordinal);
        let mut labels = self.member_labels(ordinal);
        labels.insert(LABEL_ROLE.into(), role.as_str().into());
        let placement = placement(&spec.scheduling, ordinal);
        let affinity = with_default_spread(placement.affinity, &self.name);
        let http_probe = |path: &str| HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("probes".into()),
            scheme: Some("HTTP".into()),
            ..HTTPGetAction::default()
        };
        let container = Container {
            name: "myset".into(),
            image: Some(spec.image.clone()),
            image_pull_policy: Some("IfNotPresent".into()),
            // The agent is PID 1 and supervises mariadbd as its child, as locally (and as
            // CloudNativePG's instance manager); no shell in between.
            // The Pod starts before the operator sends the agent its spec (`PUT /spec`);
            // the agent waits for one naming this member. Peers reach the Pod by its DNS name
            // (the spec's addresses); the server and the API bind every address of the Pod.
            command: Some(vec![
                "myset".into(),
                "agent".into(),
                "--instance-dir".into(),
                INSTANCE_DIR.into(),
                "--secrets".into(),
                format!("{SECRETS_DIR}/{SECRETS_KEY}"),
                "--await-spec".into(),
                "--cluster".into(),
                self.name.clone(),
                "--ordinal".into(),
                ordinal.to_string(),
                "--listen".into(),
                format!("0.0.0.0:{AGENT_PORT}"),
                "--probe-listen".into(),
                format!("0.0.0.0:{PROBE_PORT}"),
                "--bind-host".into(),
                "0.0.0.0".into(),
                "--server-options-dir".into(),
                SERVER_CONFIG_DIR.into(),
            ]),
            env: Some(vec![
                env("MYSET_CLUSTER", &self.name),
                env("MYSET_ORDINAL", &ordinal.to_string()),
                field_env("POD_NAME", "metadata.name"),
                field_env("POD_NAMESPACE", "metadata.namespace"),
                field_env("POD_IP", "status.podIP"),
            ]),
            ports: Some(
                [
                    ("mysql", MYSQL_PORT),
                    ("agent", AGENT_PORT),
                    ("probes", PROBE_PORT),
                ]
                .into_iter()
                .chain(galera_ports(spec.topology))
                .map(|(name, port)| container_port(name, port))
                .collect(),
            ),
            // The agent's liveness for the kubelet holds while it waits for its spec and
            // while a bootstrap, clone or prepare makes progress; this budget is a backstop
            // for a first start, and the liveness probe only starts once this one passes.
            startup_probe: Some(Probe {
                http_get: Some(http_probe("/healthz")),
                period_seconds: Some(STARTUP_PERIOD_SECONDS),
                timeout_seconds: Some(5),
                failure_threshold: Some(STARTUP_FAILURE_THRESHOLD),
                ..Probe::default()
            }),
            // Leaves -ro (and -rw) quickly: the agent's verdict already includes staleness.
            readiness_probe: Some(Probe {
                http_get: Some(http_probe("/readyz")),
                period_seconds: Some(2),
                timeout_seconds: Some(2),
                failure_threshold: Some(2),
                ..Probe::default()
            }),
            // The agent restarts a dead mariadbd itself; the kubelet restarts the container
            // only when that has not worked for a minute.
            liveness_probe: Some(Probe {
                http_get: Some(http_probe("/healthz")),
                period_seconds: Some(10),
                timeout_seconds: Some(5),
                failure_threshold: Some(6),
                ..Probe::default()
            }),
            resources: spec.resources.clone(),
            security_context: Some(SecurityContext {
                allow_privilege_escalation: Some(false),
                // mariadbd and mariadb-backup write only to the data volume, /run and /tmp.
                read_only_root_filesystem: Some(true),
                run_as_non_root: Some(true),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".into()]),
                    ..Capabilities::default()
                }),
                ..SecurityContext::default()
            }),
            volume_mounts: Some(vec![
                mount("data", INSTANCE_DIR, false),
                mount("secrets", SECRETS_DIR, true),
                mount("server-config", SERVER_CONFIG_DIR, true),
                mount("run", "/run", false),
                mount("tmp", "/tmp", false),
            ]),
            ..Container::default()
        };
        Pod {
            metadata: self.meta(pod_name.clone(), labels),
            spec: Some(PodSpec {
                // With the headless Service: DNS name N-<o>.N.<namespace>.svc.
                hostname: Some(pod_name),
                subdomain: Some(names::headless(&self.name)),
                restart_policy: Some("Always".into()),
                // The agent needs no Kubernetes API access (yet): it talks to the operator
                // and its peers only.
                automount_service_account_token: Some(false),
                enable_service_links: Some(false),
                // mariadbd's clean shutdown flushes the buffer pool; give it time.
                termination_grace_period_seconds: Some(120),
                security_context: Some(PodSecurityContext {
                    run_as_non_root: Some(true),
                    run_as_user: Some(RUN_AS),
                    run_as_group: Some(RUN_AS),
                    fs_group: Some(RUN_AS),
                    fs_group_change_policy: Some("OnRootMismatch".into()),
                    seccomp_profile: Some(SeccompProfile {
                        type_: "RuntimeDefault".into(),
                        ..SeccompProfile::default()
                    }),
                    ..PodSecurityContext::default()
                }),
                node_selector: placement.node_selector,
                affinity: Some(affinity),
                tolerations: placement.tolerations,
                containers: vec![container],
                volumes: Some(vec![
                    Volume {
                        name: "data".into(),
                        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                            claim_name: names::pvc(&self.name, ordinal),
                            read_only: Some(false),
                        }),
                        ..Volume::default()
                    },
                    Volume {
                        name: "secrets".into(),
                        secret: Some(SecretVolumeSource {
                            secret_name: Some(names::agent_secret(&self.name)),
                            default_mode: Some(0o400),
                            ..SecretVolumeSource::default()
                        }),
                        ..Volume::default()
                    },
                    Volume {
                        name: "server-config".into(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: names::config(&self.name),
                            default_mode: Some(0o444),
                            ..ConfigMapVolumeSource::default()
                        }),
                        ..Volume::default()
                    },
                    Volume {
                        name: "run".into(),
                        empty_dir: Some(EmptyDirVolumeSource {
                            medium: Some("Memory".into()),
                            ..EmptyDirVolumeSource::default()
                        }),
                        ..Volume::default()
                    },
                    Volume {
                        name: "tmp".into(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Volume::default()
                    },
                ]),
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }
}

/// Where one ordinal runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Placement {
    pub node_selector: Option<BTreeMap<String, String>>,
    pub affinity: Option<Affinity>,
    pub tolerations: Option<Vec<Toleration>>,
}

/// The scheduling of `ordinal`: its override merged over the common settings. Node selector
/// keys of the override win one by one; each kind of affinity the override gives replaces the
/// common one; the override's tolerations are added to the common ones.
pub fn placement(scheduling: &Scheduling, ordinal: u32) -> Placement {
    let common = Placement {
        node_selector: scheduling.node_selector.clone(),
        affinity: scheduling.affinity.clone(),
        tolerations: scheduling.tolerations.clone(),
    };
    let Some(o) = scheduling.ordinals.iter().find(|o| o.ordinal == ordinal) else {
        return common;
    };
    let OrdinalScheduling {
        node_selector,
        affinity,
        tolerations,
        ..
    } = o.clone();
    let node_selector = match (common.node_selector, node_selector) {
        (Some(mut base), Some(over)) => {
            base.extend(over);
            Some(base)
        }
        (base, over) => over.or(base),
    };
    let affinity = match (common.affinity, affinity) {
        (Some(base), Some(over)) => Some(Affinity {
            node_affinity: over.node_affinity.or(base.node_affinity),
            pod_affinity: over.pod_affinity.or(base.pod_affinity),
            pod_anti_affinity: over.pod_anti_affinity.or(base.pod_anti_affinity),
        }),
        (base, over) => over.or(base),
    };
    let tolerations = match (common.tolerations, tolerations) {
        (Some(mut base), Some(over)) => {
            let added: Vec<Toleration> = over.into_iter().filter(|t| !base.contains(t)).collect();
            base.extend(added);
            Some(base)
        }
        (base, over) => over.or(base),
    };
    Placement {
        node_selector,
        affinity,
        tolerations,
    }
}

/// Unless the user said otherwise, members prefer different nodes: one node's loss should
/// cost one member, not the primary and its only replica.
fn with_default_spread(affinity: Option<Affinity>, cluster: &str) -> Affinity {
    let mut affinity = affinity.unwrap_or_default();
    if affinity.pod_anti_affinity.is_none() {
        affinity.pod_anti_affinity = Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        topology_key: "kubernetes.io/hostname".into(),
                        label_selector: Some(LabelSelector {
                            match_labels: Some(BTreeMap::from([(
                                LABEL_CLUSTER.to_string(),
                                cluster.to_string(),
                            )])),
                            ..LabelSelector::default()
                        }),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        });
    }
    affinity
}

fn service_port(name: &str, port: i32, target: &str) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(target.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

fn mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}
