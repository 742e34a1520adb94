//! A fake world for scenario tests of the controller: a runtime whose instances are fake
//! agents in memory, with servers reduced to what the controller's decisions depend on (role,
//! term, fencing, one GTID domain, who replicates from whom). No process, no socket, no
//! mariadbd; time is tokio's paused clock, so a scenario of minutes runs in milliseconds.
//!
//! Galera members (a spec with `galera`) are reduced likewise: one cluster UUID, a seqno per
//! member, a Primary component whose reachable members apply every write at once, which a
//! joiner enters by state transfer and which is lost when at most half of its last view
//! survives; a stopped member's position is what its volume holds.

use myset_api::{
    Address, AgentStatus, ClusterState, Event, GaleraStart, GaleraStatus, GtidPositions,
    InstanceSpec, Order, OrderAction, OrderResult, Phase, Placement, ReplicationStatus, Role,
    Secrets, WsrepState,
};
use myset_controller::{AgentApi, AgentError, Controller, KillOutcome, Runtime, Timing};
use myset_core::galera::{ClusterUuid, MemberData, Position};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// One GTID: (server id, sequence number) in domain 0.
pub type Gtid = (u32, u64);

fn text(g: Gtid) -> String {
    if g.1 == 0 {
        String::new()
    } else {
        format!("0-{}-{}", g.0, g.1)
    }
}

/// What an instance's server and agent look like.
#[derive(Debug, Clone)]
pub struct FakeAgent {
    pub pid: u32,
    pub running: bool,
    /// Frozen or cut off: its agent answers nobody and its server serves nobody.
    pub isolated: bool,
    /// Cut off by the network rather than frozen: the runtime cannot kill it.
    pub partitioned: bool,
    pub spec: InstanceSpec,
    /// Fenced until a spec of at least this term arrives.
    pub fence_term: u64,
    pub executed: Gtid,
    pub received: Gtid,
    /// When it last received from its primary.
    pub last_heard: Option<Instant>,
    /// Galera: in the Primary component (Synced), so Ready and writable.
    pub galera_primary: bool,
    /// How often its server was restarted on request (`myset restart`, settings).
    pub server_starts: u32,
    /// Its server exits at every start: its settings hold a value it refuses.
    pub start_failing: bool,
    /// Failed starts, as the agent counts them.
    pub restarts: u32,
    /// The user's settings the running server has.
    pub live: BTreeMap<String, String>,
}

/// The server variables the fake servers know, and whether each is dynamic.
const VARIABLES: &[(&str, bool)] = &[
    ("max_connections", true),
    ("innodb_log_buffer_size", false),
    ("thread_handling", false),
];

/// The fake Galera cluster's state UUID.
pub const GALERA_UUID: &str = "6b5b3c2e-0000-4000-8000-00000000cafe";

impl FakeAgent {
    fn following(&self) -> bool {
        self.spec.role == Role::Replica && self.fence_term <= self.spec.term
    }

    /// Whether its spec's settings hold a value its server refuses to start with.
    fn refuses(&self, refused: &BTreeMap<String, String>) -> bool {
        self.spec
            .settings
            .for_role(self.spec.role)
            .iter()
            .any(|(k, v)| refused.get(k) == Some(v))
    }

    /// Its server (re)starts with the settings of its spec, or fails to.
    fn start_server(&mut self, refused: &BTreeMap<String, String>) {
        if self.refuses(refused) {
            self.start_failing = true;
            self.restarts += 1;
        } else {
            self.start_failing = false;
            self.server_starts += 1;
            self.live = self.spec.settings.for_role(self.spec.role);
        }
    }
}

#[derive(Default)]
pub struct Inner {
    pub agents: BTreeMap<u32, FakeAgent>,
    /// What survives an agent's death: each volume's last position.
    pub disk: BTreeMap<u32, Gtid>,
    pub events: Vec<Event>,
    pub saved: Option<ClusterState>,
    pub next_pid: u32,
    /// Scale-down's graceful stop takes this long.
    pub stop_delay: Duration,
    /// Fence orders to these ordinals fail.
    pub fence_fails: BTreeSet<u32>,
    /// Promotions take this long (the agent finishes them whatever the caller does).
    pub promote_delay: Duration,
    /// Acknowledged writes (sequence numbers), to check that none is lost.
    pub acked: Vec<u64>,
    /// Primaries that were writable at the same moment, if ever.
    pub split_brain: Vec<Vec<u32>>,
    /// Instances whose next start leaves them unreachable for a while (a slow start: the
    /// controller cannot observe them yet).
    pub slow_start: BTreeMap<u32, Duration>,
    /// Galera: how many members the Primary component last had (0: none exists).
    pub galera_view: usize,
    /// Settings (key, value) a server refuses to start with.
    pub refused_settings: BTreeMap<String, String>,
    /// Agents that take this long to answer a status call (a busy machine).
    pub status_latency: BTreeMap<u32, Duration>,
}

pub struct World {
    pub inner: Mutex<Inner>,
}

impl World {
    pub fn new() -> Arc<Self> {
        Arc::new(World {
            inner: Mutex::new(Inner {
                next_pid: 1000,
                ..Inner::default()
            }),
        })
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap())
    }

    fn ordinal_of(inner: &Inner, agent: &Address) -> Option<u32> {
        inner
            .agents
            .iter()
            .find(|(_, a)| a.spec.agent == *agent)
            .map(|(o, _)| *o)
    }

    /// Writable servers: running, reachable or not, playing primary.
    pub fn writable(&self) -> Vec<u32> {
        self.with(|w| {
            w.agents
                .iter()
                .filter(|(_, a)| a.running && a.spec.role == Role::Primary)
                .map(|(o, _)| *o)
                .collect()
        })
    }

    /// Replication: every following replica receives and applies what its primary has.
    pub fn propagate(&self) {
        self.with(|w| {
            let now = Instant::now();
            let snapshot = w.agents.clone();
            for a in w.agents.values_mut() {
                if !a.running || a.isolated || !a.following() {
                    continue;
                }
                let source = a.spec.primary.as_ref().and_then(|p| {
                    snapshot
                        .values()
                        .find(|s| s.spec.server == *p && s.running && !s.isolated)
                });
                if let Some(source) = source.filter(|s| s.spec.role == Role::Primary) {
                    a.received = source.executed;
                    a.executed = source.executed;
                    a.last_heard = Some(now);
                }
            }
            let writers: Vec<u32> = w
                .agents
                .iter()
                .filter(|(_, a)| {
                    a.running && a.spec.galera.is_none() && a.spec.role == Role::Primary
                })
                .map(|(o, _)| *o)
                .collect();
            if writers.len() > 1 {
                w.split_brain.push(writers);
            }
            Self::propagate_galera(w);
        });
    }

    /// Galera: members cut off or dead are in no component; the survivors of the Primary
    /// component keep it only with more than half of its last view, and then every reachable
    /// member is in it with the newest writes (joiners by state transfer).
    fn propagate_galera(w: &mut Inner) {
        let mut reachable = Vec::new();
        for (&o, a) in w.agents.iter_mut().filter(|(_, a)| a.spec.galera.is_some()) {
            if a.running && !a.isolated {
                reachable.push(o);
            } else {
                a.galera_primary = false;
            }
        }
        let survivors: Vec<u32> = reachable
            .iter()
            .copied()
            .filter(|o| w.agents[o].galera_primary)
            .collect();
        if survivors.is_empty() || survivors.len() * 2 <= w.galera_view {
            for o in survivors {
                w.agents.get_mut(&o).unwrap().galera_primary = false;
            }
            w.galera_view = 0;
            return;
        }
        let newest = survivors
            .iter()
            .map(|o| w.agents[o].executed)
            .max_by_key(|g| g.1)
            .unwrap();
        for o in &reachable {
            let a = w.agents.get_mut(o).unwrap();
            a.galera_primary = true;
            a.executed = newest;
            a.received = newest;
        }
        w.galera_view = reachable.len();
    }

    /// Galera: a client commits `n` writes on member `ordinal`; each is acknowledged once
    /// the Primary component has it (every member of it applies it).
    pub fn galera_write(&self, ordinal: u32, n: u64) -> u64 {
        let mut acked = 0;
        for _ in 0..n {
            self.propagate();
            let seq = self.with(|w| {
                let a = w.agents.get_mut(&ordinal)?;
                if !a.running || a.isolated || !a.galera_primary {
                    return None;
                }
                a.executed = (a.spec.server_id, a.executed.1 + 1);
                Some(a.executed.1)
            });
            let Some(seq) = seq else { break };
            self.propagate();
            self.with(|w| w.acked.push(seq));
            acked += 1;
        }
        acked
    }

    /// Galera: what a stopped member's volume holds, as `grastate.dat` or a recovery says.
    pub fn galera_position(&self, ordinal: u32) -> MemberData {
        self.with(|w| match w.disk.get(&ordinal) {
            None => MemberData::Empty,
            Some(&(_, seqno)) => MemberData::At {
                position: Position {
                    uuid: ClusterUuid::parse(GALERA_UUID).expect("a UUID"),
                    seqno,
                },
                safe_to_bootstrap: false,
            },
        })
    }

    /// A client commits `n` writes on the server `ordinal` (through rw or directly). With
    /// semi-sync, a write is acknowledged only if a replica received it.
    pub fn write_on(&self, ordinal: u32, n: u64, semisync: bool) -> u64 {
        let mut acked = 0;
        for _ in 0..n {
            let ok = self.with(|w| {
                let a = w.agents.get_mut(&ordinal)?;
                if !a.running || a.spec.role != Role::Primary {
                    return None;
                }
                a.executed = (a.spec.server_id, a.executed.1 + 1);
                Some(a.executed.1)
            });
            let Some(seq) = ok else { break };
            self.propagate();
            let received = self.with(|w| {
                w.agents
                    .values()
                    .any(|a| a.spec.role == Role::Replica && a.running && a.received.1 >= seq)
            });
            if !semisync || received {
                self.with(|w| w.acked.push(seq));
                acked += 1;
            }
        }
        acked
    }

    /// Freezes an instance (SIGSTOP of agent and server): nothing reaches it, but the
    /// runtime can still kill it.
    pub fn freeze(&self, ordinal: u32) {
        self.with(|w| w.agents.get_mut(&ordinal).unwrap().isolated = true);
        self.propagate();
    }

    /// Cuts an instance off the network: nothing reaches it and it cannot be killed.
    pub fn partition(&self, ordinal: u32) {
        self.with(|w| {
            let a = w.agents.get_mut(&ordinal).unwrap();
            a.isolated = true;
            a.partitioned = true;
        });
        self.propagate();
    }

    pub fn heal(&self, ordinal: u32) {
        self.with(|w| {
            let a = w.agents.get_mut(&ordinal).unwrap();
            a.isolated = false;
            a.partitioned = false;
        });
        self.propagate();
    }

    pub fn agent(&self, ordinal: u32) -> FakeAgent {
        self.with(|w| w.agents[&ordinal].clone())
    }

    pub fn events(&self) -> Vec<Event> {
        self.with(|w| w.events.clone())
    }

    fn status_of(a: &FakeAgent, ordinal: u32, galera_view: usize) -> AgentStatus {
        if a.spec.galera.is_some() {
            let primary = a.galera_primary;
            return AgentStatus {
                ready: primary,
                reason: (!primary).then(|| "not in the Primary component".to_string()),
                replication: None,
                read_only: Some(false),
                primary_silent_ms: None,
                semisync: Some(false),
                galera: Some(GaleraStatus {
                    state: if primary {
                        WsrepState::Synced
                    } else {
                        WsrepState::Initializing
                    },
                    primary_component: primary,
                    cluster_size: if primary { galera_view as u32 } else { 1 },
                    seqno: a.executed.1 as i64,
                    cluster_uuid: GALERA_UUID.into(),
                    conf_id: galera_view as u64,
                }),
                ..Self::replication_status_of(a, ordinal)
            };
        }
        Self::replication_status_of(a, ordinal)
    }

    fn replication_status_of(a: &FakeAgent, ordinal: u32) -> AgentStatus {
        let silent = a
            .last_heard
            .map(|t| Instant::now().duration_since(t).as_millis() as u64);
        let replica = a.spec.role == Role::Replica;
        let following_now = replica && a.following() && silent == Some(0);
        let ready = match a.spec.role {
            Role::Primary => true,
            // The agent's staleness rule: Ready while heard from within the bound.
            Role::Replica => {
                a.spec.primary.is_some()
                    && silent.is_some_and(|s| s <= a.spec.max_staleness_seconds * 1000)
            }
        };
        let ready = ready && !a.start_failing;
        AgentStatus {
            ordinal,
            role: a.spec.role,
            term: a.spec.term,
            phase: Phase::Running,
            live: !a.start_failing,
            ready,
            reason: (!ready).then(|| "not replicating".to_string()),
            pid: (!a.start_failing).then_some(a.pid + 1 + 1000 * a.server_starts),
            agent_pid: a.pid,
            gtid: Some(GtidPositions {
                current: text(a.executed),
                binlog: text(a.executed),
                slave: String::new(),
            }),
            replication: replica.then(|| ReplicationStatus {
                source: a
                    .spec
                    .primary
                    .as_ref()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                received: text(a.received),
                heartbeats: 0,
                io_running: following_now,
                sql_running: true,
                seconds_behind: following_now.then_some(0),
                last_error: None,
                sql_error: None,
            }),
            read_only: Some(replica),
            restarts: a.restarts,
            primary_silent_ms: if replica { silent } else { None },
            semisync: Some(!replica),
            fenced: None,
            semisync_clients: None,
            commits_waiting_since_ms: None,
            galera: None,
            version: None,
            cloned_from: None,
            server_log: None,
        }
    }

    fn positions(a: &FakeAgent) -> OrderResult {
        OrderResult {
            received: if a.spec.role == Role::Replica {
                text(a.received)
            } else {
                String::new()
            },
            executed: text(a.executed),
            binlog: text(a.executed),
        }
    }
}

fn unreachable(agent: &Address) -> AgentError {
    AgentError::Unreachable {
        agent: agent.clone(),
        detail: "no answer".into(),
    }
}

fn refused(agent: &Address, detail: &str) -> AgentError {
    AgentError::Refused {
        agent: agent.clone(),
        detail: detail.into(),
    }
}

/// The agents, as the controller reaches them.
pub struct FakeAgents(pub Arc<World>);

impl FakeAgents {
    /// Applies an order as an agent would, running it to completion.
    async fn obey(
        world: Arc<World>,
        agent: Address,
        order: Order,
    ) -> Result<OrderResult, AgentError> {
        if matches!(order.action, OrderAction::Promote { .. }) {
            let delay = world.with(|w| w.promote_delay);
            tokio::time::sleep(delay).await;
        }
        let result = world.with(|w| {
            let ordinal = World::ordinal_of(w, &agent).ok_or_else(|| unreachable(&agent))?;
            let fence_fails = w.fence_fails.contains(&ordinal);
            let a = w.agents.get_mut(&ordinal).unwrap();
            if !a.running || a.isolated {
                return Err(unreachable(&agent));
            }
            if order.term < a.spec.term {
                return Err(refused(&agent, "stale term"));
            }
            match order.action {
                OrderAction::Fence => {
                    if fence_fails {
                        return Err(refused(&agent, "STOP SLAVE did not finish"));
                    }
                    if a.spec.role != Role::Replica {
                        return Err(refused(&agent, "fence is not possible on a primary"));
                    }
                    a.fence_term = order.term;
                }
                OrderAction::Promote { .. } => {
                    if a.spec.role == Role::Replica {
                        a.executed = a.received.max(a.executed);
                        a.spec.role = Role::Primary;
                        a.spec.primary = None;
                        a.spec.term = order.term;
                    } else if a.spec.term != order.term {
                        return Err(refused(&agent, "promote is not possible on a primary"));
                    }
                }
                OrderAction::Demote => {
                    if a.spec.role != Role::Primary {
                        return Err(refused(&agent, "demote is not possible on a replica"));
                    }
                    a.spec.role = Role::Replica;
                    a.spec.primary = None;
                    a.spec.term = order.term;
                }
            }
            Ok(World::positions(a))
        });
        world.propagate();
        result
    }
}

impl AgentApi for FakeAgents {
    async fn status(
        &self,
        agent: &Address,
        _term: u64,
        timeout: Duration,
    ) -> Result<AgentStatus, AgentError> {
        self.0.propagate();
        // A frozen or partitioned agent does not refuse: the call hangs until its timeout.
        // One that is merely busy answers late, or not within the timeout.
        let (isolated, latency) = self.0.with(|w| match World::ordinal_of(w, agent) {
            Some(o) => (
                w.agents[&o].running && w.agents[&o].isolated,
                w.status_latency.get(&o).copied().unwrap_or_default(),
            ),
            None => (false, Duration::ZERO),
        });
        if isolated || latency > timeout {
            tokio::time::sleep(timeout).await;
            return Err(unreachable(agent));
        }
        tokio::time::sleep(latency).await;
        self.0.with(|w| {
            let ordinal = World::ordinal_of(w, agent).ok_or_else(|| unreachable(agent))?;
            let a = &w.agents[&ordinal];
            if !a.running || a.isolated {
                return Err(unreachable(agent));
            }
            let mut status = World::status_of(a, ordinal, w.galera_view);
            if a.spec.galera.is_none() && a.spec.role == Role::Primary {
                // Every running replica following it acknowledges its commits.
                let followers = w
                    .agents
                    .values()
                    .filter(|r| r.running && !r.isolated && !r.start_failing && r.following())
                    .filter(|r| r.spec.primary.as_ref() == Some(&a.spec.server))
                    .count();
                status.semisync_clients = Some(followers as u32);
            }
            Ok(status)
        })
    }

    async fn put_spec(&self, spec: &InstanceSpec, _timeout: Duration) -> Result<(), AgentError> {
        let result = self.0.with(|w| {
            let a = w
                .agents
                .get_mut(&spec.ordinal)
                .ok_or_else(|| unreachable(&spec.agent))?;
            if !a.running || a.isolated {
                return Err(unreachable(&spec.agent));
            }
            if spec.term < a.spec.term {
                return Err(refused(&spec.agent, "stale term"));
            }
            a.spec = spec.clone();
            // A server failing to start is retried by its agent with the spec in force.
            if a.start_failing {
                let refused = w.refused_settings.clone();
                w.agents
                    .get_mut(&spec.ordinal)
                    .unwrap()
                    .start_server(&refused);
            }
            Ok(())
        });
        self.0.propagate();
        result
    }

    async fn describe_variables(
        &self,
        agent: &Address,
        names: &[String],
        _timeout: Duration,
    ) -> Result<Vec<myset_api::VariableInfo>, AgentError> {
        self.0.with(|w| {
            let ordinal = World::ordinal_of(w, agent).ok_or_else(|| unreachable(agent))?;
            if !w.agents[&ordinal].running {
                return Err(unreachable(agent));
            }
            Ok(names
                .iter()
                .map(|n| myset_api::VariableInfo {
                    name: n.clone(),
                    dynamic: VARIABLES.iter().find(|(v, _)| v == n).map(|(_, d)| *d),
                })
                .collect())
        })
    }

    async fn apply_live(
        &self,
        agent: &Address,
        _term: u64,
        settings: &BTreeMap<String, String>,
        _timeout: Duration,
    ) -> Result<BTreeMap<String, String>, AgentError> {
        self.0.with(|w| {
            let ordinal = World::ordinal_of(w, agent).ok_or_else(|| unreachable(agent))?;
            let a = w.agents.get_mut(&ordinal).unwrap();
            let before = settings
                .keys()
                .map(|k| (k.clone(), a.live.get(k).cloned().unwrap_or_default()))
                .collect();
            a.live.extend(settings.clone());
            Ok(before)
        })
    }

    async fn restart_server(
        &self,
        agent: &Address,
        term: u64,
        _timeout: Duration,
    ) -> Result<(), AgentError> {
        let result = self.0.with(|w| {
            let ordinal = World::ordinal_of(w, agent).ok_or_else(|| unreachable(agent))?;
            let refusing = w.refused_settings.clone();
            let a = w.agents.get_mut(&ordinal).unwrap();
            if !a.running || a.isolated {
                return Err(unreachable(agent));
            }
            if term < a.spec.term {
                return Err(refused(agent, "stale term"));
            }
            a.start_server(&refusing);
            Ok(())
        });
        self.0.propagate();
        result
    }

    async fn order(
        &self,
        agent: &Address,
        order: &Order,
        timeout: Duration,
    ) -> Result<OrderResult, AgentError> {
        // The agent runs an order to completion even when its caller gives up.
        let task = tokio::spawn(Self::obey(self.0.clone(), agent.clone(), order.clone()));
        match tokio::time::timeout(timeout, task).await {
            Ok(joined) => joined.expect("order task"),
            Err(_) => Err(unreachable(agent)),
        }
    }

    /// An agent whose server is stopped reads its position from its volume.
    async fn galera_position(
        &self,
        agent: &Address,
        _timeout: Duration,
    ) -> Result<MemberData, AgentError> {
        let ordinal = self.0.with(|w| {
            let ordinal = World::ordinal_of(w, agent).ok_or_else(|| unreachable(agent))?;
            match &w.agents[&ordinal] {
                a if a.isolated => Err(unreachable(agent)),
                a if a.running => Err(refused(agent, "its server runs")),
                _ => Ok(ordinal),
            }
        })?;
        Ok(self.0.galera_position(ordinal))
    }
}

pub struct FakeRuntime {
    pub world: Arc<World>,
    agents: FakeAgents,
}

impl FakeRuntime {
    pub fn new(world: Arc<World>) -> Self {
        FakeRuntime {
            agents: FakeAgents(world.clone()),
            world,
        }
    }
}

impl Runtime for FakeRuntime {
    type Agents = FakeAgents;

    fn agents(&self) -> &FakeAgents {
        &self.agents
    }

    /// Like the local runtime: the lowest ports the record does not use yet, so a controller
    /// that placed two ordinals against a stale record would give them the same ports.
    fn place(&self, _ordinal: u32, state: &ClusterState) -> anyhow::Result<Placement> {
        let taken: BTreeSet<u16> = state
            .placements
            .values()
            .flat_map(|p| {
                let galera = p.galera.iter().flat_map(|g| [g.gcomm, g.ist, g.sst]);
                [p.server.port, p.agent.port].into_iter().chain(galera)
            })
            .collect();
        let mut free = (10_000u16..).filter(|p| !taken.contains(p));
        let mut port = || free.next().expect("a free port");
        let mut address = || Address {
            host: "fake".into(),
            port: port(),
        };
        let (server, agent) = (address(), address());
        let galera = (state.topology == myset_api::Topology::Galera).then(|| {
            let mut port = || free.next().expect("a free port");
            myset_api::GaleraPorts {
                gcomm: port(),
                ist: port(),
                sst: port(),
            }
        });
        Ok(Placement {
            server,
            agent,
            galera,
        })
    }

    async fn start(&self, spec: &InstanceSpec) -> anyhow::Result<()> {
        self.world
            .with(|w| {
                let data = w.disk.get(&spec.ordinal).copied();
                let galera = spec.galera.as_ref().map(|g| &g.start);
                let position = match data {
                    Some(p) => p,
                    None if spec.bootstrap => (spec.server_id, 0),
                    // A Galera joiner starts empty and gets its data when it joins.
                    None if galera.is_some() => (spec.server_id, 0),
                    None => {
                        // A clone copies the first running donor's data.
                        let donor = spec
                            .donors
                            .iter()
                            .find_map(|d| {
                                w.agents
                                    .get(&d.ordinal)
                                    .filter(|a| a.running && !a.isolated)
                            })
                            .ok_or_else(|| anyhow::anyhow!("no donor reachable"))?;
                        donor.executed
                    }
                };
                // Galera: forming the cluster again must be from the member's own position.
                let forms = match galera {
                    Some(GaleraStart::NewCluster) => true,
                    Some(GaleraStart::Bootstrap { position: asked }) => {
                        let has = format!("{GALERA_UUID}:{}", position.1);
                        anyhow::ensure!(
                            *asked == has,
                            "asked to bootstrap from {asked}, but its data is at {has}"
                        );
                        true
                    }
                    Some(GaleraStart::Join) | None => false,
                };
                if forms {
                    let formed = w.agents.values().any(|a| a.galera_primary && a.running);
                    if formed {
                        // A second Primary component: Galera's split brain.
                        let both = w.agents.keys().copied().chain([spec.ordinal]).collect();
                        w.split_brain.push(both);
                    }
                    w.galera_view = 1;
                }
                w.next_pid += 10;
                if data.is_some() || galera.is_none() || forms {
                    w.disk.insert(spec.ordinal, position);
                }
                let slow = w.slow_start.remove(&spec.ordinal);
                w.agents.insert(
                    spec.ordinal,
                    FakeAgent {
                        pid: w.next_pid,
                        running: true,
                        isolated: slow.is_some(),
                        partitioned: false,
                        spec: spec.clone(),
                        fence_term: 0,
                        executed: position,
                        received: position,
                        last_heard: None,
                        galera_primary: forms,
                        server_starts: 0,
                        start_failing: false,
                        restarts: 0,
                        live: spec.settings.for_role(spec.role),
                    },
                );
                Ok(slow)
            })
            .map(|slow| {
                if let Some(delay) = slow {
                    let (world, ordinal) = (self.world.clone(), spec.ordinal);
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        world.heal(ordinal);
                    });
                }
            })
    }

    fn agent_pid(&self, ordinal: u32) -> Option<u32> {
        self.world
            .with(|w| w.agents.get(&ordinal).filter(|a| a.running).map(|a| a.pid))
    }

    async fn stop(&self, ordinal: u32) {
        let delay = self.world.with(|w| w.stop_delay);
        tokio::time::sleep(delay).await;
        self.world.with(|w| {
            if let Some(a) = w.agents.get_mut(&ordinal) {
                // A Galera member leaving gracefully shrinks the component's view.
                if a.running && a.galera_primary {
                    a.galera_primary = false;
                    w.galera_view = w.galera_view.saturating_sub(1);
                }
                a.running = false;
                w.disk.insert(ordinal, a.executed);
            }
        });
        self.world.propagate();
    }

    async fn kill(&self, ordinal: u32) -> KillOutcome {
        self.world.with(|w| match w.agents.get_mut(&ordinal) {
            Some(a) if a.running && a.partitioned => KillOutcome::Unreachable,
            Some(a) if a.running => {
                a.running = false;
                w.disk.insert(ordinal, a.executed);
                KillOutcome::Killed
            }
            _ => KillOutcome::AlreadyGone,
        })
    }

    async fn set_aside_data(&self, ordinal: u32, label: &str) -> anyhow::Result<String> {
        self.world.with(|w| w.disk.remove(&ordinal));
        Ok(format!("data.{label}"))
    }

    fn has_data(&self, ordinal: u32) -> bool {
        self.world.with(|w| w.disk.contains_key(&ordinal))
    }

    async fn delete_data(&self, ordinal: u32) -> anyhow::Result<()> {
        self.world.with(|w| w.disk.remove(&ordinal));
        Ok(())
    }

    async fn save_state(&self, state: &ClusterState) -> anyhow::Result<()> {
        self.world.with(|w| w.saved = Some(state.clone()));
        Ok(())
    }

    fn record_event(&self, event: &Event) {
        self.world.with(|w| w.events.push(event.clone()));
    }

    fn password_file(&self) -> String {
        "/nonexistent/password".into()
    }

    /// Like the local runtime: read from the stopped member's volume.
    async fn galera_position(&self, ordinal: u32) -> anyhow::Result<MemberData> {
        Ok(self.world.galera_position(ordinal))
    }
}

pub fn secrets() -> Secrets {
    Secrets {
        admin_user: "admin".into(),
        admin_password: "x".into(),
        repl_user: "repl".into(),
        repl_password: "x".into(),
        user: "user".into(),
        user_password: "x".into(),
        api_token: "token".into(),
    }
}

pub const TIMING: Timing = Timing {
    probe_period: Duration::from_secs(1),
    probe_timeout: Duration::from_secs(1),
};

/// A controller over a fake world, driven one reconcile pass at a time.
pub struct Scenario {
    pub world: Arc<World>,
    pub controller: Arc<Controller<FakeRuntime>>,
}

impl Scenario {
    /// A new cluster of `replicas` instances, run until every one is Ready.
    pub async fn new(replicas: u32) -> Scenario {
        let world = World::new();
        let state = ClusterState::new("t", replicas, "127.0.0.1", 0, 0);
        let scenario = Scenario::resume(world, state);
        assert!(
            scenario
                .run_until(Duration::from_secs(30), |s| s
                    .controller
                    .status()
                    .converged())
                .await,
            "the cluster did not converge: {:?}",
            scenario.controller.status()
        );
        scenario
    }

    /// A controller started over an existing world from a saved record (a restarted
    /// controller).
    pub fn resume(world: Arc<World>, state: ClusterState) -> Scenario {
        let controller = Controller::new(FakeRuntime::new(world.clone()), state, secrets(), TIMING);
        Scenario { world, controller }
    }

    /// One probe period passes, then one reconcile pass.
    pub async fn tick(&self) {
        tokio::time::sleep(TIMING.probe_period).await;
        self.controller.reconcile().await;
        self.world.propagate();
    }

    /// Ticks until `done` holds, at most `limit` of (fake) time.
    pub async fn run_until(&self, limit: Duration, done: impl Fn(&Scenario) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            self.tick().await;
            if done(self) {
                return true;
            }
        }
        false
    }

    pub fn primary(&self) -> u32 {
        self.controller.state().primary
    }

    pub fn term(&self) -> u64 {
        self.controller.state().term
    }

    /// Writes through rw: to the recorded primary.
    pub fn write(&self, n: u64) -> u64 {
        self.world.write_on(self.primary(), n, true)
    }

    /// Every acknowledged write is on the current primary.
    pub fn no_write_lost(&self) -> bool {
        let primary = self.world.agent(self.primary());
        self.world
            .with(|w| w.acked.iter().all(|&seq| primary.executed.1 >= seq))
    }
}
