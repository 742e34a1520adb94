//! The metrics observed at each scrape: plain functions from the cluster's status (what
//! `myset status` shows) to samples, and the collector that writes them.

use super::{instance_labels_of, Labels};
use myset_api::{AgentStatus, ClusterStatus, Role, WsrepState};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;
use std::collections::BTreeMap;

/// The replication domain of myset's GTIDs: MariaDB's default, since myset never sets
/// `gtid_domain_id`.
const CLUSTER_DOMAIN: u32 = 0;

/// A metric family computed at each scrape.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Desc {
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
    unit: Option<BaseUnit>,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BaseUnit {
    Seconds,
    Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gauge,
    /// A count kept elsewhere (by an agent), exposed as it is reported.
    Counter,
}

impl Desc {
    const fn gauge(name: &'static str, help: &'static str) -> Desc {
        Desc {
            name,
            help,
            unit: None,
            kind: Kind::Gauge,
        }
    }

    const fn counter(name: &'static str, help: &'static str) -> Desc {
        Desc {
            kind: Kind::Counter,
            ..Desc::gauge(name, help)
        }
    }

    const fn in_unit(self, unit: BaseUnit) -> Desc {
        Desc {
            unit: Some(unit),
            ..self
        }
    }
}

pub(crate) const TERM: Desc = Desc::gauge(
    "term",
    "The cluster's term: it grows with every change of primary",
);
pub(crate) const INSTANCES_DESIRED: Desc =
    Desc::gauge("instances_desired", "Instances asked for (myset scale)");
pub(crate) const PRIMARY_READY: Desc = Desc::gauge(
    "primary_ready",
    "1 when the instance rw routes to (the primary) is Ready, else 0",
);
pub(crate) const INSTANCE_UP: Desc = Desc::gauge(
    "instance_up",
    "1 when the instance's agent answered and its server is live, else 0",
);
pub(crate) const INSTANCE_READY: Desc = Desc::gauge(
    "instance_ready",
    "1 when the instance is Ready (serves reads; in ro), else 0",
);
pub(crate) const INSTANCE_ROLE: Desc = Desc::gauge(
    "instance_role",
    "1 for the role the instance is told to play (label role), 0 for the other",
);
pub(crate) const INSTANCE_GTID_SEQUENCE: Desc = Desc::gauge(
    "instance_gtid_sequence",
    "Sequence number of the instance's current GTID position in the cluster's domain",
);
pub(crate) const SERVER_RESTARTS: Desc = Desc::counter(
    "server_restarts",
    "mariadbd restarts by the instance's agent after a crash, since the agent started",
);
pub(crate) const REPLICATION_LAG: Desc = Desc::gauge(
    "replication_lag",
    "How far a replica's applier is behind its primary (Seconds_Behind_Master)",
)
.in_unit(BaseUnit::Seconds);
pub(crate) const REPLICATION_RUNNING: Desc = Desc::gauge(
    "replication_thread_running",
    "1 when a replica's replication thread (label thread: io or sql) runs, else 0",
);
pub(crate) const GALERA_STATE: Desc = Desc::gauge(
    "galera_state",
    "1 for a Galera member's wsrep state (label state), 0 for the others",
);
pub(crate) const GALERA_PRIMARY_COMPONENT: Desc = Desc::gauge(
    "galera_primary_component",
    "1 when a Galera member is in the Primary component (a quorum), else 0",
);
pub(crate) const GALERA_CLUSTER_SIZE: Desc = Desc::gauge(
    "galera_cluster_size",
    "Members in a Galera member's component (wsrep_cluster_size)",
);
pub(crate) const GALERA_LAST_COMMITTED: Desc = Desc::gauge(
    "galera_last_committed",
    "A Galera member's last committed seqno (wsrep_last_committed)",
);
pub(crate) const BACKUP_AGE: Desc = Desc::gauge(
    "backup_last_base_backup_age",
    "Time since the newest base backup finished",
)
.in_unit(BaseUnit::Seconds);
pub(crate) const BACKUP_SIZE: Desc = Desc::gauge(
    "backup_last_base_backup_size",
    "Size of the newest base backup",
)
.in_unit(BaseUnit::Bytes);
pub(crate) const ARCHIVE_LAG: Desc = Desc::gauge(
    "archive_lag",
    "How far the binlog archive is behind: 0 when it holds all the primary committed, else the age of its last event",
).in_unit(BaseUnit::Seconds);
pub(crate) const ARCHIVE_BEHIND: Desc = Desc::gauge(
    "archive_behind_transactions",
    "Transactions the primary committed that the binlog archive does not hold yet",
);
pub(crate) const ARCHIVE_GAPS: Desc = Desc::gauge(
    "archive_gaps",
    "Holes in the binlog archive: a point-in-time restore cannot reach past the first",
);
pub(crate) const ARCHIVE_CONNECTED: Desc = Desc::gauge(
    "archive_connected",
    "1 when the binlog archive streams from a server, else 0",
);

/// Every family [`status_samples`] may emit, in the order they are written.
pub(crate) const OBSERVED: [&Desc; 20] = [
    &TERM,
    &INSTANCES_DESIRED,
    &PRIMARY_READY,
    &INSTANCE_UP,
    &INSTANCE_READY,
    &INSTANCE_ROLE,
    &INSTANCE_GTID_SEQUENCE,
    &SERVER_RESTARTS,
    &REPLICATION_LAG,
    &REPLICATION_RUNNING,
    &GALERA_STATE,
    &GALERA_PRIMARY_COMPONENT,
    &GALERA_CLUSTER_SIZE,
    &GALERA_LAST_COMMITTED,
    &BACKUP_AGE,
    &BACKUP_SIZE,
    &ARCHIVE_LAG,
    &ARCHIVE_BEHIND,
    &ARCHIVE_GAPS,
    &ARCHIVE_CONNECTED,
];

/// One observed value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub(crate) desc: &'static Desc,
    pub(crate) labels: Labels,
    pub(crate) value: f64,
}

/// What an instance's agent last reported beyond its status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct AgentFacts {
    /// The server answers a ping.
    pub(crate) live: bool,
    /// mariadbd restarts by the agent.
    pub(crate) server_restarts: u32,
}

impl AgentFacts {
    pub(crate) fn of(status: &AgentStatus) -> AgentFacts {
        AgentFacts {
            live: status.live,
            server_restarts: status.restarts,
        }
    }
}

fn flag(on: bool) -> f64 {
    if on {
        1.0
    } else {
        0.0
    }
}

const WSREP_STATES: [WsrepState; 5] = [
    WsrepState::Joining,
    WsrepState::Donor,
    WsrepState::Joined,
    WsrepState::Synced,
    WsrepState::Initializing,
];

/// The observed metrics of a cluster: from its status, the agents' facts (by ordinal) and
/// the time now (Unix seconds).
pub(crate) fn status_samples(
    status: &ClusterStatus,
    agents: &BTreeMap<u32, AgentFacts>,
    now_s: i64,
) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut push = |desc: &'static Desc, labels: Labels, value: f64| {
        out.push(Sample {
            desc,
            labels,
            value,
        })
    };
    push(&TERM, vec![], status.term as f64);
    push(&INSTANCES_DESIRED, vec![], status.replicas as f64);
    let primary_ready = status
        .instances
        .iter()
        .any(|i| i.ordinal == status.primary && i.ready);
    push(&PRIMARY_READY, vec![], flag(primary_ready));
    for i in &status.instances {
        let labels = || instance_labels_of(Some((i.name.clone(), i.ordinal)));
        let with = |key: &'static str, value: String| {
            let mut l = labels();
            l.push((key, value));
            l
        };
        let facts = agents.get(&i.ordinal).copied();
        push(&INSTANCE_UP, labels(), flag(facts.is_some_and(|f| f.live)));
        push(&INSTANCE_READY, labels(), flag(i.ready));
        for role in [Role::Primary, Role::Replica] {
            push(
                &INSTANCE_ROLE,
                with("role", role.to_string()),
                flag(i.role == role),
            );
        }
        // A known position without the domain: no transaction in it yet.
        let seq = i
            .gtid
            .as_ref()
            .and_then(|g| myset_core::GtidPos::parse(&g.current).ok())
            .map(|pos| pos.get(CLUSTER_DOMAIN).map_or(0, |g| g.seq));
        if let Some(seq) = seq {
            push(&INSTANCE_GTID_SEQUENCE, labels(), seq as f64);
        }
        if let Some(f) = facts {
            push(&SERVER_RESTARTS, labels(), f.server_restarts as f64);
        }
        if let Some(r) = &i.replication {
            if let Some(lag) = r.seconds_behind {
                push(&REPLICATION_LAG, labels(), lag as f64);
            }
            push(
                &REPLICATION_RUNNING,
                with("thread", "io".into()),
                flag(r.io_running),
            );
            push(
                &REPLICATION_RUNNING,
                with("thread", "sql".into()),
                flag(r.sql_running),
            );
        }
        if let Some(g) = &i.galera {
            for state in WSREP_STATES {
                push(
                    &GALERA_STATE,
                    with("state", state.to_string()),
                    flag(g.state == state),
                );
            }
            push(
                &GALERA_PRIMARY_COMPONENT,
                labels(),
                flag(g.primary_component),
            );
            push(&GALERA_CLUSTER_SIZE, labels(), g.cluster_size as f64);
            push(&GALERA_LAST_COMMITTED, labels(), g.seqno as f64);
        }
    }
    if let Some(b) = &status.backup {
        if let Some(last) = &b.last_base_backup {
            push(
                &BACKUP_AGE,
                vec![],
                (now_s - last.finished_at).max(0) as f64,
            );
            push(&BACKUP_SIZE, vec![], last.bytes as f64);
        }
        if let Some(a) = &b.archive {
            let lag = match (a.behind_transactions, a.last_event_at) {
                (Some(0), _) => Some(0),
                (_, Some(at)) => Some((now_s - at).max(0)),
                (_, None) => None,
            };
            if let Some(lag) = lag {
                push(&ARCHIVE_LAG, vec![], lag as f64);
            }
            if let Some(behind) = a.behind_transactions {
                push(&ARCHIVE_BEHIND, vec![], behind as f64);
            }
            push(&ARCHIVE_GAPS, vec![], a.gaps.len() as f64);
            push(&ARCHIVE_CONNECTED, vec![], flag(a.source.is_some()));
        }
    }
    out
}

/// One scrape's observed samples, written family by family.
#[derive(Debug)]
pub(super) struct Samples(pub(super) Vec<Sample>);

impl Collector for Samples {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for desc in OBSERVED {
            let mut of = self.0.iter().filter(|s| s.desc == desc).peekable();
            if of.peek().is_none() {
                continue;
            }
            let unit = desc.unit.map(|u| match u {
                BaseUnit::Seconds => Unit::Seconds,
                BaseUnit::Bytes => Unit::Bytes,
            });
            let metric_type = match desc.kind {
                Kind::Gauge => MetricType::Gauge,
                Kind::Counter => MetricType::Counter,
            };
            let mut family =
                encoder.encode_descriptor(desc.name, desc.help, unit.as_ref(), metric_type)?;
            for sample in of {
                let metric = family.encode_family(&sample.labels)?;
                match desc.kind {
                    Kind::Gauge => ConstGauge::new(sample.value).encode(metric)?,
                    Kind::Counter => ConstCounter::new(sample.value).encode(metric)?,
                }
            }
        }
        Ok(())
    }
}
