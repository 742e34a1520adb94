//! Message types shared by the CLI, the controller and the agents.
//!
//! Nothing here performs I/O, so every side can depend on it without pulling in the others.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Header carrying the bearer token on every control API request.
pub const AUTH_HEADER: &str = "authorization";

/// The controller's calls carry its term in this header, which tells an agent that the
/// controller can reach it (an isolated primary fences itself when nobody calls).
pub const CONTROLLER_TERM_HEADER: &str = "x-myset-controller-term";

/// Where the controller serves its Prometheus metrics.
pub const METRICS_PATH: &str = "/metrics";

/// The base URL of a control API listening at `address` (`host:port`), HTTPS when it serves
/// TLS: the one place its scheme is chosen.
pub fn api_url(address: impl std::fmt::Display, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{address}")
}

/// The URL of the metrics of a controller whose API listens at `address`.
pub fn metrics_url(address: impl std::fmt::Display, tls: bool) -> String {
    format!("{}{METRICS_PATH}", api_url(address, tls))
}

/// Time limits that both sides of a call must agree on.
pub mod limits {
    use std::time::Duration;

    /// How long a promotion may wait for the candidate to apply what it received. The
    /// controller waits longer than this for the order's answer, so the agent's verdict
    /// arrives first.
    pub const APPLY_TIMEOUT: Duration = Duration::from_secs(60);
}

/// The role an instance is told to play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    Replica,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        })
    }
}

/// A network address of a server or agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct Address {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// A peer an empty instance may copy its data from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Donor {
    pub ordinal: u32,
    /// The donor agent's HTTP address; it serves the clone stream.
    pub agent: Address,
}

/// What the controller wants one instance to be. The agent converges its server to this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSpec {
    pub cluster: String,
    pub ordinal: u32,
    pub server_id: u32,
    pub server: Address,
    pub agent: Address,
    pub role: Role,
    /// Where a replica replicates from.
    pub primary: Option<Address>,
    /// Initialise an empty data dir from scratch (only the first primary of a new cluster).
    pub bootstrap: bool,
    /// Peers to clone from when the data dir is empty, most preferred first.
    pub donors: Vec<Donor>,
    pub term: u64,
    /// A replica whose data is staler than this many seconds is not Ready: lagging behind a
    /// connected primary, or having heard nothing from an unreachable one for that long.
    #[serde(alias = "max_lag_seconds")]
    pub max_staleness_seconds: u64,
    /// On the primary: wait for a replica's acknowledgement before a commit returns.
    #[serde(default)]
    pub semisync: bool,
    /// The other members' agents; a primary that can reach none of them, nor hear from the
    /// controller, fences itself.
    #[serde(default)]
    pub peers: Vec<Address>,
    /// A primary isolated this long makes its server refuse writes. 0 disables self-fencing.
    #[serde(default)]
    pub isolation_fence_ms: u64,
    /// Galera topology: every member is writable and replicates through wsrep; `role`,
    /// `primary`, `donors` and `semisync` do not apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub galera: Option<GaleraSpec>,
    /// The user's server settings (`myset config set`); the agent renders those of every role
    /// and of its own into the option file, and applies dynamic ones live.
    #[serde(default, skip_serializing_if = "ServerSettings::is_empty")]
    pub settings: ServerSettings,
}

/// The user's server settings by the role they apply to, like the tutorial's ConfigMap
/// (primary.cnf, replica.cnf). Keys are normalised variable names (lower case, `_`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ServerSettings {
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub all: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub primary: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub replica: std::collections::BTreeMap<String, String>,
}

impl ServerSettings {
    pub fn is_empty(&self) -> bool {
        self.all.is_empty() && self.primary.is_empty() && self.replica.is_empty()
    }

    /// The settings of one role's part.
    pub fn part(&self, role: SettingsRole) -> &std::collections::BTreeMap<String, String> {
        match role {
            SettingsRole::All => &self.all,
            SettingsRole::Primary => &self.primary,
            SettingsRole::Replica => &self.replica,
        }
    }

    pub fn part_mut(
        &mut self,
        role: SettingsRole,
    ) -> &mut std::collections::BTreeMap<String, String> {
        match role {
            SettingsRole::All => &mut self.all,
            SettingsRole::Primary => &mut self.primary,
            SettingsRole::Replica => &mut self.replica,
        }
    }

    /// What a server of `role` runs with: every role's settings, overridden by its own role's.
    pub fn for_role(&self, role: Role) -> std::collections::BTreeMap<String, String> {
        let own = match role {
            Role::Primary => &self.primary,
            Role::Replica => &self.replica,
        };
        let mut merged = self.all.clone();
        merged.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
        merged
    }
}

/// Which servers a setting applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum SettingsRole {
    #[default]
    All,
    Primary,
    Replica,
}

impl fmt::Display for SettingsRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SettingsRole::All => "all",
            SettingsRole::Primary => "primary",
            SettingsRole::Replica => "replica",
        })
    }
}

/// Body of the controller's `PUT /config`: settings to change for one role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSetRequest {
    pub role: SettingsRole,
    /// `(key, value)` as the user typed them; the controller normalises and checks them.
    pub assignments: Vec<(String, String)>,
}

/// What `PUT /config` and `POST /restart` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollingOutcome {
    /// The settings in force now.
    pub settings: ServerSettings,
    /// Keys applied live (`SET GLOBAL`), without a restart.
    pub applied_live: Vec<String>,
    /// Instances restarted, in order.
    pub restarted: Vec<u32>,
    /// The switchover done on the way (old primary, new primary).
    pub switchover: Option<(u32, u32)>,
}

/// A server variable as the server describes it (`information_schema.SYSTEM_VARIABLES`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariableInfo {
    pub name: String,
    /// None: the server knows no such variable.
    pub dynamic: Option<bool>,
}

/// Body of an agent's `POST /variables`: names to describe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariablesRequest {
    pub names: Vec<String>,
}

/// Body of an agent's `POST /settings/live`: dynamic variables to set now (`SET GLOBAL`).
/// The answer is each variable's global value before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveSettingsRequest {
    pub term: u64,
    pub settings: std::collections::BTreeMap<String, String>,
}

/// Body of an agent's `POST /restart`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerRestart {
    /// An agent refuses a restart of an older term than its own.
    pub term: u64,
}

/// The agent path that restarts its server cleanly (shutdown, then a start with the option
/// file rendered from the spec in force). Answers at once; the status shows the new pid.
pub const RESTART_PATH: &str = "/restart";

/// Body of an agent's `POST /primary-back`: a primary's agent tells its peers' agents that its
/// server was (re)started and takes writes again, so replicas waiting on MariaDB's 1 s retry
/// timer reconnect now. A hint, not an order: a replica acts on it only when it follows that
/// primary at that term and is not fenced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrimaryBack {
    pub term: u64,
    /// The primary's server address, as replicas' specs name it.
    pub primary: Address,
}

pub const PRIMARY_BACK_PATH: &str = "/primary-back";
pub const VARIABLES_PATH: &str = "/variables";
pub const LIVE_SETTINGS_PATH: &str = "/settings/live";

/// How the members of a cluster replicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Topology {
    /// One primary and asynchronous or semi-synchronous replicas.
    #[default]
    Replication,
    /// Galera (wsrep): every member is writable; a commit is certified by all of them.
    Galera,
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Topology::Replication => "replication",
            Topology::Galera => "galera",
        })
    }
}

/// A Galera member's extra ports: group communication, incremental and full state transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct GaleraPorts {
    pub gcomm: u16,
    pub ist: u16,
    pub sst: u16,
}

/// What a Galera member's agent is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GaleraSpec {
    pub cluster_name: String,
    pub ports: GaleraPorts,
    /// Every member's group-communication address, this one included.
    pub members: Vec<Address>,
    pub start: GaleraStart,
    /// Causal reads for the user's connections ([`ClusterState::causal_reads`]).
    #[serde(default)]
    pub causal_reads: bool,
}

/// How a Galera member's server starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum GaleraStart {
    /// The first member of a brand-new cluster: it creates the cluster (and its UUID).
    NewCluster,
    /// After a full outage, the member chosen for the newest data forms the cluster again
    /// from its recovered position (`<uuid>:<seqno>`).
    Bootstrap { position: String },
    /// Join the running cluster (state transfer from a donor if needed).
    Join,
}

/// A Galera member's replication state (`wsrep_local_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum WsrepState {
    Joining,
    /// Sending a state transfer, or desynchronised on purpose.
    Donor,
    Joined,
    Synced,
    /// Not yet in a cluster (0, or a value this version does not know).
    Initializing,
}

impl WsrepState {
    pub fn from_code(code: u32) -> Self {
        match code {
            1 => WsrepState::Joining,
            2 => WsrepState::Donor,
            3 => WsrepState::Joined,
            4 => WsrepState::Synced,
            _ => WsrepState::Initializing,
        }
    }
}

impl fmt::Display for WsrepState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WsrepState::Joining => "joining",
            WsrepState::Donor => "donor",
            WsrepState::Joined => "joined",
            WsrepState::Synced => "synced",
            WsrepState::Initializing => "initializing",
        })
    }
}

/// What a Galera member's server reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct GaleraStatus {
    pub state: WsrepState,
    /// In the Primary component (a quorum): only then does it take writes.
    pub primary_component: bool,
    pub cluster_size: u32,
    /// `wsrep_last_committed`.
    pub seqno: i64,
    pub cluster_uuid: String,
    /// `wsrep_cluster_conf_id`: how many membership changes its component has seen. A member
    /// frozen or cut off past its eviction still reports Synced and Primary with the old view
    /// until it notices; its peers' views are newer by then.
    #[serde(default)]
    pub conf_id: u64,
}

/// The agent path answering a stopped Galera member's last committed position
/// ([`GaleraPositionReport`]): served by an agent whose server is not running (on Kubernetes,
/// one waiting for the operator's spec), which reads it from its own data dir.
pub const GALERA_POSITION_PATH: &str = "/galera/position";

/// What a stopped Galera member's data dir holds, as its agent reports it: the wire form of
/// `myset_core::galera::MemberData`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum GaleraPositionReport {
    /// No data dir, never joined, or the zero UUID: nothing to offer.
    Empty,
    /// Its last committed position (`uuid:seqno`) and `grastate.dat`'s safe_to_bootstrap.
    At {
        uuid: String,
        seqno: u64,
        safe_to_bootstrap: bool,
    },
}

/// Durability of acknowledged writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// A commit returns only once a replica has the transaction (semi-synchronous replication,
    /// wait point AFTER_SYNC): a failover loses no acknowledged write.
    #[default]
    Semisync,
    /// Commits return before any replica has them: a failover may lose the last writes.
    Async,
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Durability::Semisync => "semisync",
            Durability::Async => "async",
        })
    }
}

/// An order from the controller to an agent during a change of primary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The term the order belongs to; an agent refuses orders from an older term.
    pub term: u64,
    pub action: OrderAction,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum OrderAction {
    /// Replica: stop receiving from the primary (so it can no longer collect acks) until a
    /// spec of this term arrives.
    Fence,
    /// Replica: apply everything received (and, if given, wait until this position is
    /// received and applied), then become the primary.
    Promote { wait_for: Option<String> },
    /// Primary: stop taking writes and cut client connections; become a held replica.
    Demote,
}

/// An agent's GTID positions after obeying an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderResult {
    /// Received from the primary (relay log included); empty on a primary.
    pub received: String,
    /// gtid_current_pos.
    pub executed: String,
    /// gtid_binlog_pos.
    pub binlog: String,
}

/// A change of primary, as recorded in the cluster state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct PrimaryChange {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub term: u64,
    pub from: u32,
    pub to: u32,
    pub kind: ChangeKind,
    pub reason: String,
}

/// Why the primary changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// Automatic: the primary failed.
    Failover,
    /// Planned: `myset switchover`.
    Switchover,
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChangeKind::Failover => "failover",
            ChangeKind::Switchover => "switchover",
        })
    }
}

/// Where an agent is in an instance's life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
pub enum Phase {
    /// Creating a fresh data dir (bootstrap of a new cluster).
    Initializing,
    /// Receiving a physical copy from a donor.
    Cloning { donor: u32, bytes: u64 },
    /// Applying the redo log of a received copy.
    Preparing { donor: u32 },
    /// Starting mariadbd and configuring its role.
    Starting,
    /// mariadbd is up and configured.
    Running,
    /// Waiting for something outside the agent (for example a donor); the reason says what.
    Waiting { reason: String },
    /// Stopping on request.
    Stopping,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phase::Initializing => f.write_str("initializing"),
            Phase::Cloning { donor, bytes } => {
                write!(
                    f,
                    "cloning from {donor} ({:.1} MiB)",
                    *bytes as f64 / 1048576.0
                )
            }
            Phase::Preparing { donor } => write!(f, "preparing clone from {donor}"),
            Phase::Starting => f.write_str("starting"),
            Phase::Running => f.write_str("running"),
            Phase::Waiting { reason } => write!(f, "waiting: {reason}"),
            Phase::Stopping => f.write_str("stopping"),
        }
    }
}

/// Replication threads as a replica sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationStatus {
    /// The primary it replicates from, as "host:port".
    pub source: String,
    /// GTID position received from the primary (Gtid_IO_Pos).
    #[serde(default)]
    pub received: String,
    /// Heartbeats received from the primary so far.
    #[serde(default)]
    pub heartbeats: u64,
    pub io_running: bool,
    pub sql_running: bool,
    pub seconds_behind: Option<u64>,
    pub last_error: Option<String>,
    /// The applier's error alone: it needs a human, unlike a connection error.
    #[serde(default)]
    pub sql_error: Option<String>,
}

/// GTID positions of a server (MariaDB domain-server-sequence lists).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GtidPositions {
    pub current: String,
    pub binlog: String,
    pub slave: String,
}

/// The agent's report of its instance, served at `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub ordinal: u32,
    pub role: Role,
    pub term: u64,
    #[serde(flatten)]
    pub phase: Phase,
    /// Liveness: the server answers a ping.
    pub live: bool,
    /// Readiness: a query over TCP succeeds and, on a replica, replication is healthy.
    pub ready: bool,
    /// Why the instance is not ready, when it is not.
    pub reason: Option<String>,
    /// mariadbd's pid.
    pub pid: Option<u32>,
    pub agent_pid: u32,
    pub gtid: Option<GtidPositions>,
    pub replication: Option<ReplicationStatus>,
    pub read_only: Option<bool>,
    /// How often the agent restarted a crashed mariadbd.
    pub restarts: u32,
    /// On a replica: milliseconds since it last received an event or heartbeat from the primary.
    #[serde(default)]
    pub primary_silent_ms: Option<u64>,
    /// On the primary: whether commits wait for a replica's acknowledgement.
    #[serde(default)]
    pub semisync: Option<bool>,
    /// The server refuses writes because the agent fenced it.
    #[serde(default)]
    pub fenced: Option<String>,
    /// On the primary: replicas connected as semi-synchronous acknowledgers.
    #[serde(default)]
    pub semisync_clients: Option<u32>,
    /// On the primary: commits have been waiting for a replica's acknowledgement since this
    /// time (milliseconds since the Unix epoch); None while no commit waits.
    #[serde(default)]
    pub commits_waiting_since_ms: Option<u64>,
    /// Galera members: wsrep state, component, cluster size and seqno.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub galera: Option<GaleraStatus>,
    /// The running server's version (`SELECT VERSION()`), read once per server start.
    #[serde(default)]
    pub version: Option<String>,
    /// The donor whose clone became this instance's data dir, when this agent made it.
    #[serde(default)]
    pub cloned_from: Option<u32>,
    /// The server's error log, where a server that fails to start says why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_log: Option<String>,
}

/// One instance as the controller reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStatus {
    pub ordinal: u32,
    pub name: String,
    pub role: Role,
    pub ready: bool,
    pub host: String,
    pub port: u16,
    pub server_id: u32,
    pub pid: Option<u32>,
    pub agent_pid: Option<u32>,
    /// What the instance is doing.
    pub state: InstanceState,
    pub reason: Option<String>,
    pub gtid: Option<GtidPositions>,
    pub replication: Option<ReplicationStatus>,
    /// Galera members: wsrep state, component, cluster size and seqno.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub galera: Option<GaleraStatus>,
    /// How often its agent restarted a crashed mariadbd (since the agent started).
    #[serde(default)]
    pub restarts: u32,
    /// The server's version, while it runs.
    #[serde(default)]
    pub version: Option<String>,
}

/// What an instance is doing, as the controller sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum InstanceState {
    /// The cluster is not running (no controller observes it).
    Stopped,
    /// Its agent is not running.
    NotRunning,
    /// Its agent runs but did not answer.
    Unreachable,
    /// Its agent answered; the phase says what it is doing.
    Agent { phase: Phase },
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstanceState::Stopped => f.write_str("stopped"),
            InstanceState::NotRunning => f.write_str("not running"),
            InstanceState::Unreachable => f.write_str("unreachable"),
            InstanceState::Agent { phase } => phase.fmt(f),
        }
    }
}

/// Something about the cluster a user should know, beyond each instance's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Condition {
    /// Commits on the primary are waiting for a replica's acknowledgement.
    CommitsWaiting { ordinal: u32, since_ms: u64 },
    /// No replica could take over if the primary failed now.
    NoFailoverCandidate { reason: String },
    /// The durability in force is weaker than the one asked for.
    DurabilityDegraded {
        asked: Durability,
        in_force: Durability,
        reason: String,
    },
}

/// The two client endpoints, like the tutorial's Services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    /// Always reaches the current primary.
    pub rw: String,
    /// Spreads new connections across every Ready instance.
    pub ro: String,
    /// How the local runtime was asked to carry them (`up --endpoints`).
    #[serde(default)]
    pub asked: EndpointsMode,
    /// How they are carried now, while a local controller serves them; none on Kubernetes
    /// (Services do) or with the controller down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<EndpointPath>,
}

/// `up --endpoints`: how the local runtime carries the rw and ro endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum EndpointsMode {
    /// The kernel when run as root with a usable `nft`, else the userspace proxy.
    #[default]
    Auto,
    /// Destination rewrites in nftables: no extra hop (root and nftables needed).
    Kernel,
    /// The controller's TCP proxy.
    Userspace,
}

impl fmt::Display for EndpointsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndpointsMode::Auto => "auto",
            EndpointsMode::Kernel => "kernel",
            EndpointsMode::Userspace => "userspace",
        })
    }
}

/// How the endpoints are carried in fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointPath {
    /// nftables rewrites each new connection's destination to a server.
    Kernel,
    /// The controller accepts each connection and relays it to a server.
    Userspace,
}

impl fmt::Display for EndpointPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndpointPath::Kernel => "kernel",
            EndpointPath::Userspace => "userspace",
        })
    }
}

/// The account handed to users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub user: String,
    pub password_file: String,
}

/// The whole cluster as `myset status -o json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub name: String,
    /// Whether the controller is running.
    pub running: bool,
    /// The running controller's pid.
    pub controller_pid: Option<u32>,
    pub primary: u32,
    pub term: u64,
    #[serde(default)]
    pub topology: Topology,
    /// The durability asked for.
    pub durability: Durability,
    /// Galera: whether reads are causal ([`ClusterState::causal_reads`]).
    #[serde(default)]
    pub causal_reads: bool,
    /// The durability actually in force (weaker when, say, there is no replica to wait for).
    pub durability_in_force: Durability,
    /// What a user should know: blocked commits, no failover candidate, weaker durability.
    pub conditions: Vec<Condition>,
    /// The last change of primary and why it happened.
    pub last_primary_change: Option<PrimaryChange>,
    pub replicas: u32,
    pub endpoints: Endpoints,
    pub credentials: Credentials,
    pub instances: Vec<InstanceStatus>,
    /// Backups and the binlog archive, where the runtime has a backup store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupStatus>,
    /// Whether connections are encrypted, and the CA to verify servers by.
    #[serde(default)]
    pub tls: TlsStatus,
    /// The URL of the controller's Prometheus metrics, while it serves them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
}

impl InstanceStatus {
    /// An instance as the cluster record describes it, before anything is observed.
    pub fn from_state(state: &ClusterState, ordinal: u32) -> Self {
        let placement = state.placements.get(&ordinal);
        InstanceStatus {
            ordinal,
            name: state.instance_name(ordinal),
            role: state.role_of(ordinal),
            ready: false,
            host: placement.map(|p| p.server.host.clone()).unwrap_or_default(),
            port: placement.map(|p| p.server.port).unwrap_or_default(),
            server_id: ClusterState::server_id(ordinal),
            pid: None,
            agent_pid: None,
            state: InstanceState::Stopped,
            reason: None,
            gtid: None,
            replication: None,
            galera: None,
            restarts: 0,
            version: None,
        }
    }
}

impl ClusterStatus {
    /// The cluster-wide fields from the durable record; instances come from the caller.
    pub fn from_state(
        state: &ClusterState,
        running: bool,
        credentials: Credentials,
        instances: Vec<InstanceStatus>,
    ) -> Self {
        ClusterStatus {
            name: state.name.clone(),
            running,
            controller_pid: None,
            primary: state.primary,
            term: state.term,
            topology: state.topology,
            durability: state.durability,
            causal_reads: state.causal_reads,
            durability_in_force: state.durability,
            conditions: Vec::new(),
            last_primary_change: state.last_primary_change.clone(),
            replicas: state.replicas,
            endpoints: Endpoints {
                rw: format!("{}:{}", state.bind_host, state.rw_port),
                ro: format!("{}:{}", state.bind_host, state.ro_port),
                asked: state.endpoints,
                mode: None,
            },
            credentials,
            instances,
            backup: None,
            tls: TlsStatus {
                mode: state.tls.mode,
                ca_file: None,
            },
            metrics: None,
        }
    }

    /// Every desired instance exists, is Ready, and nothing else is left over.
    pub fn converged(&self) -> bool {
        self.running
            && self.instances.len() == self.replicas as usize
            && self.instances.iter().all(|i| i.ready)
    }
}

/// Body of the controller's switchover request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchoverRequest {
    /// The ordinal to promote; the controller picks the most advanced replica when None.
    pub to: Option<u32>,
}

/// Body of the controller's scale request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleRequest {
    pub replicas: u32,
    pub delete_data: bool,
}

/// What kind of thing happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    ControllerStarted,
    /// A controller process ended without being asked to (seen by the agent that started it).
    ControllerExited,
    /// An agent started a new controller because none was running.
    ControllerRestarted,
    /// The controller keeps dying: its next restart waits.
    ControllerRestartDelayed,
    Scale,
    MemberAdded,
    MemberRemoved,
    AgentStarted,
    AgentRestarted,
    /// A new instance began copying its data from a donor (the one that actually serves it).
    Cloning,
    /// An agent could not be started.
    StartFailed,
    Ready,
    Unready,
    /// A proxy found a backend that accepted a connection but did not greet in time.
    Suspect,
    /// A step of the reconcile loop failed; the loop went on.
    ReconcileFailed,
    /// An agent reported a newer term than the record's; the cluster moved past it.
    TermAdopted,
    Failover,
    FailoverHeld,
    FailoverFailed,
    Fenced,
    Promoted,
    Switchover,
    SwitchoverFailed,
    Rejoined,
    Errant,
    /// Commits on the primary wait for a replica's acknowledgement.
    CommitsWaiting,
    /// Commits on the primary stopped waiting.
    CommitsResumed,
    Shutdown,
    /// The durability or the failover delay asked for changed.
    SettingsChanged,
    /// Galera: after a full outage, the member with the newest data bootstraps the cluster.
    GaleraBootstrap,
    /// Galera: after a full outage, no member may bootstrap automatically; the message says
    /// why and what to do.
    GaleraBootstrapRefused,
    /// Galera: the running members are all outside a Primary component (the others died):
    /// they are stopped so the cluster is recovered as after a full outage.
    GaleraNoPrimary,
    /// Galera: a forced bootstrap of a member was asked; the next recovery after a full outage
    /// uses it (writes newer than that member's are lost).
    GaleraForceBootstrapAsked,
    /// Kubernetes: an edit of the `MySet` that cannot be applied (a change of topology after
    /// creation, too few members for Galera) was refused; the cluster keeps what it has.
    SpecRefused,
    /// Kubernetes: a fenced member's Pod on a node that stopped reporting was force-deleted.
    PodForceDeleted,
    /// Kubernetes: a member whose node was lost with its volume gets a fresh one, cloned.
    MemberRebuilt,
    /// A base backup was taken, stored and checked.
    BackupTaken,
    /// A base backup could not be taken; the reason says why.
    BackupFailed,
    /// Retention removed a base backup, or archive segments only older backups needed.
    BackupPruned,
    /// The binlog archive started following a primary.
    ArchiveFollowing,
    /// The binlog archive is missing transactions: a restore cannot reach past the gap.
    ArchiveGap,
    /// Certificates were renewed (before their end, or by `myset rotate-certs`) and the
    /// members took them up.
    CertificatesRenewed,
    /// A certificate could not be renewed, or a member could not take its new one up.
    CertificateRenewalFailed,
    /// Server settings changed (`myset config set`); the message says which and how.
    ServerSettingsChanged,
    /// A rolling restart began (`myset restart`, or static settings); `reason` says why.
    RollingRestartStarted,
    /// One instance of a rolling restart was restarted and is Ready again.
    InstanceRestarted,
    /// A rolling restart finished on every instance.
    RollingRestartDone,
    /// A rolling restart stopped; the instance it stopped at was rolled back.
    RollingRestartFailed,
    /// A kind this version does not know (written by another version).
    #[serde(other)]
    Other,
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_value(self).ok();
        f.write_str(text.as_ref().and_then(|v| v.as_str()).unwrap_or("other"))
    }
}

/// Something that happened to the cluster, and why. The structured fields say who and what;
/// the message says it in words for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Seconds since the Unix epoch, with milliseconds.
    pub at: f64,
    pub kind: EventKind,
    pub message: String,
    /// The instance it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordinal: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<u64>,
    /// For a change of primary: the old and the new primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u32>,
    /// Why, when the message gives a cause (for example why a failover was held).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For a backup event: the base backup's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// For a backup or archive event: the GTID position concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
    /// For a clone: the instance that serves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub donor: Option<u32>,
}

impl Event {
    /// An event of `kind` now, with no structured fields yet.
    pub fn new(kind: EventKind, message: impl Into<String>) -> Self {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as f64 / 1000.0)
            .unwrap_or_default();
        Event {
            at,
            kind,
            message: message.into(),
            ordinal: None,
            term: None,
            from: None,
            to: None,
            reason: None,
            backup: None,
            gtid: None,
            donor: None,
        }
    }

    pub fn donor(mut self, donor: u32) -> Self {
        self.donor = Some(donor);
        self
    }

    pub fn backup(mut self, id: impl Into<String>) -> Self {
        self.backup = Some(id.into());
        self
    }

    pub fn gtid(mut self, gtid: impl Into<String>) -> Self {
        self.gtid = Some(gtid.into());
        self
    }

    pub fn ordinal(mut self, ordinal: u32) -> Self {
        self.ordinal = Some(ordinal);
        self
    }

    pub fn term(mut self, term: u64) -> Self {
        self.term = Some(term);
        self
    }

    pub fn change(mut self, from: u32, to: u32) -> Self {
        self.from = Some(from);
        self.to = Some(to);
        self
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

/// Error body of every control API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

/// Generated credentials of a cluster, stored in a 0600 file.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secrets {
    /// Account the agents and controller administer servers with.
    pub admin_user: String,
    pub admin_password: String,
    /// Replication-only account.
    pub repl_user: String,
    pub repl_password: String,
    /// Account handed to users; it cannot override `read_only`.
    pub user: String,
    pub user_password: String,
    /// Bearer token of every control API (controller and agents).
    pub api_token: String,
}

impl Secrets {
    /// myset's three accounts and the API token, each secret drawn from `random` (the caller
    /// brings the randomness, so this crate stays free of I/O).
    pub fn generate(mut random: impl FnMut() -> String) -> Self {
        Secrets {
            admin_user: "myset_admin".into(),
            admin_password: random(),
            repl_user: "myset_repl".into(),
            repl_password: random(),
            user: "myset".into(),
            user_password: random(),
            api_token: random(),
        }
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secrets { .. }")
    }
}

/// Where a cluster's backups go and when they are taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct BackupSettings {
    /// The store: an absolute directory or `s3://bucket/prefix`. None: the local runtime's
    /// `<state dir>/backups/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// Seconds between scheduled base backups; None: only `myset backup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_seconds: Option<u64>,
    /// How many base backups retention keeps; older ones, and the archive only they need, are
    /// pruned after each new backup.
    #[serde(default = "default_backups_kept")]
    pub keep: u32,
}

fn default_backups_kept() -> u32 {
    7
}

impl Default for BackupSettings {
    fn default() -> Self {
        BackupSettings {
            store: None,
            every_seconds: None,
            keep: default_backups_kept(),
        }
    }
}

/// Backups as `status` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupStatus {
    /// The store's address.
    pub store: String,
    pub every_seconds: Option<u64>,
    pub keep: u32,
    /// The newest base backup.
    pub last_base_backup: Option<BaseBackupInfo>,
    /// The binlog archive; None where none runs (Galera).
    pub archive: Option<ArchiveInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseBackupInfo {
    pub id: String,
    /// Unix seconds.
    pub finished_at: i64,
    pub gtid: String,
    pub bytes: u64,
}

/// The binlog archive's progress behind the primary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveInfo {
    /// The server it streams from, as host:port.
    pub source: Option<String>,
    /// The last transaction stored.
    pub last_gtid: Option<String>,
    /// Seconds since the Unix epoch of the last stored event.
    pub last_event_at: Option<i64>,
    /// Transactions the primary has committed that the archive does not hold yet, per the
    /// primary's GTID position; None while unknown.
    pub behind_transactions: Option<u64>,
    /// Holes in the archive: a restore cannot reach past the first.
    pub gaps: Vec<ArchiveGapInfo>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveGapInfo {
    /// The transaction the archive needed next.
    pub expected: String,
    /// What the source sent instead (or the error it gave).
    pub received: String,
    /// Unix seconds.
    pub at: i64,
}

/// Whether the cluster's connections are encrypted: its servers' client and replication
/// connections, and its control APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain connections. A record written before TLS existed reads as this.
    #[default]
    Off,
    /// Every TCP client must use TLS (`require_secure_transport`), replication verifies the
    /// primary's certificate, and the control APIs are HTTPS.
    Required,
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsMode::Off => "off",
            TlsMode::Required => "required",
        })
    }
}

/// Where the cluster's CA came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum CaSource {
    /// myset generated it when the cluster was created.
    #[default]
    Generated,
    /// The user supplied it (`up --tls-ca`); myset issues the members' certificates from it.
    Supplied,
}

/// The cluster's TLS, as its record keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct TlsSettings {
    pub mode: TlsMode,
    #[serde(default)]
    pub ca: CaSource,
}

impl TlsSettings {
    pub fn enabled(&self) -> bool {
        self.mode == TlsMode::Required
    }
}

/// TLS as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TlsStatus {
    pub mode: TlsMode,
    /// The CA certificate clients verify servers by; None with TLS off.
    pub ca_file: Option<String>,
}

/// What `myset rotate-certs` did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CertRotation {
    /// Members that received a new certificate and serve it now.
    pub renewed: Vec<u32>,
    /// Members that received a new certificate but could not take it up now (their agent
    /// did not answer): they use it from their next start.
    pub pending: Vec<u32>,
}

/// The controller API's route that renews every certificate now.
pub const TLS_ROTATE_PATH: &str = "/tls/rotate";

/// The agent API's route that makes it take up renewed certificate files.
pub const TLS_RELOAD_PATH: &str = "/tls/reload";

/// Version tag of the cluster state file; anything else is refused as foreign.
pub const STATE_FORMAT: &str = "myset-cluster/v1";

/// Where one instance listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct Placement {
    pub server: Address,
    pub agent: Address,
    /// Galera clusters: the member's group-communication and state-transfer ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub galera: Option<GaleraPorts>,
}

/// The controller's durable record of a cluster: intent plus what must survive restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ClusterState {
    pub format: String,
    pub name: String,
    /// Desired number of instances.
    pub replicas: u32,
    /// Ordinals that currently belong to the cluster.
    pub members: std::collections::BTreeSet<u32>,
    pub primary: u32,
    pub term: u64,
    /// Whether the first primary has been bootstrapped; after that, empty members clone.
    pub initialized: bool,
    /// Address the rw/ro endpoints and every instance bind to.
    pub bind_host: String,
    pub rw_port: u16,
    pub ro_port: u16,
    /// `--max-read-staleness`: a replica serves reads through `ro` while its data is at most
    /// this many seconds stale, even while its primary is unreachable.
    #[serde(alias = "max_lag_seconds")]
    pub max_staleness_seconds: u64,
    #[serde(default)]
    pub durability: Durability,
    #[serde(default)]
    pub topology: Topology,
    /// Galera: the cluster's state UUID, recorded once a member reports it; a full outage's
    /// bootstrap only ever uses data of this UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub galera_uuid: Option<String>,
    /// Galera: `up --force-bootstrap ORDINAL`: the next full-outage recovery bootstraps this
    /// member even if the majority rule refuses, losing writes newer than its own. Cleared
    /// once a member is Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub galera_force_bootstrap: Option<u32>,
    /// Galera: every read on a user's connection first waits until its member has applied
    /// everything the cluster committed before the read began (`wsrep_sync_wait = 1`, set
    /// for the user's sessions through `init_connect`), so a read through `ro` sees every write
    /// acknowledged before it. Off by default: each read then costs a round trip to the group.
    #[serde(default)]
    pub causal_reads: bool,
    /// Whether members removed by a scale-down lose their data dirs (`scale --delete-data`).
    #[serde(default)]
    pub delete_data_on_removal: bool,
    /// Local runtime: how the rw and ro endpoints are carried (`up --endpoints`). A record
    /// from before the option reads as `auto`, the default of a new cluster.
    #[serde(default)]
    pub endpoints: EndpointsMode,
    /// How long the primary must look dead before an automatic failover.
    #[serde(default = "default_failover_delay_ms")]
    pub failover_delay_ms: u64,
    /// Server ids that have ever been primary; a GTID from any other server is errant.
    #[serde(default)]
    pub primary_server_ids: std::collections::BTreeSet<u32>,
    /// Former primaries held out of replication until their data is checked, with the new
    /// primary's GTID position at promotion.
    #[serde(default)]
    pub rejoin_pending: std::collections::BTreeMap<u32, String>,
    #[serde(default)]
    pub last_primary_change: Option<PrimaryChange>,
    /// Local runtime only: each instance runs in its own network namespace on the test subnet
    /// 10.231.<index>.0/24, as if on its own host.
    #[serde(default)]
    pub netns: Option<u8>,
    /// Base backups, their schedule and retention, and the binlog archive.
    #[serde(default)]
    pub backup: BackupSettings,
    /// Whether connections are encrypted; `up` turns it on for a new cluster.
    #[serde(default)]
    pub tls: TlsSettings,
    /// The user's server settings (`myset config set`), by role.
    #[serde(default, skip_serializing_if = "ServerSettings::is_empty")]
    pub settings: ServerSettings,
    /// Where each ordinal listens; kept when an ordinal leaves, so its identity is stable.
    pub placements: std::collections::BTreeMap<u32, Placement>,
}

fn default_failover_delay_ms() -> u64 {
    3000
}

impl ClusterState {
    /// A cluster not yet bootstrapped: ordinal 0 will be its first primary, at term 1.
    pub fn new(name: &str, replicas: u32, bind_host: &str, rw_port: u16, ro_port: u16) -> Self {
        ClusterState {
            format: STATE_FORMAT.into(),
            name: name.into(),
            replicas,
            members: Default::default(),
            primary: 0,
            term: 1,
            initialized: false,
            bind_host: bind_host.into(),
            rw_port,
            ro_port,
            max_staleness_seconds: 10,
            durability: Durability::default(),
            topology: Topology::default(),
            galera_uuid: None,
            galera_force_bootstrap: None,
            causal_reads: false,
            delete_data_on_removal: false,
            endpoints: EndpointsMode::default(),
            failover_delay_ms: default_failover_delay_ms(),
            primary_server_ids: Default::default(),
            rejoin_pending: Default::default(),
            last_primary_change: None,
            netns: None,
            backup: BackupSettings::default(),
            tls: TlsSettings::default(),
            settings: ServerSettings::default(),
            placements: Default::default(),
        }
    }

    pub fn instance_name(&self, ordinal: u32) -> String {
        format!("{}-{}", self.name, ordinal)
    }

    pub fn server_id(ordinal: u32) -> u32 {
        100 + ordinal
    }

    pub fn role_of(&self, ordinal: u32) -> Role {
        if ordinal == self.primary {
            Role::Primary
        } else {
            Role::Replica
        }
    }
}
