//! The controller's Prometheus metrics, served at `GET /metrics`.
//!
//! Two kinds: what the controller counts as it goes (events such as failovers, the endpoints'
//! connections and bytes, clone durations), kept in prometheus-client's atomics; and what it
//! observes (instances, roles, lag, term, backups), computed at each scrape from the same
//! status `myset status` shows, by [`status_samples`], a plain function.
//!
//! prometheus-client writes OpenMetrics text; Prometheus asks for that. Anything else (curl,
//! `promtool check metrics`) gets the classic Prometheus text format, which names a counter's
//! family after its `_total` sample ([`to_prometheus_text`]).

use myset_api::{EventKind, Phase};
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::borrow::Cow;
use std::time::Duration;
use tokio::time::Instant;

/// Every metric's name starts with this (and `_`).
const PREFIX: &str = "myset";

/// Clone durations, in seconds: from a small test database to a large one.
const CLONE_BUCKETS: [f64; 11] = [
    1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// The content type of the OpenMetrics text the registry writes.
pub(crate) const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The classic Prometheus text format.
pub(crate) const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(crate) type Labels = Vec<(&'static str, String)>;

/// Which text format a scraper gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    OpenMetrics,
    Prometheus,
}

impl Format {
    /// OpenMetrics when the `Accept` header asks for it (Prometheus does), else the classic
    /// format, which every scraper reads.
    pub(crate) fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Format::Prometheus => PROMETHEUS_CONTENT_TYPE,
        }
    }
}

/// Counts of one client endpoint (rw or ro). The proxy updates them on its hot path: each is
/// one relaxed atomic add, with no lock and no allocation.
#[derive(Clone, Default)]
pub(crate) struct EndpointMetrics {
    pub(crate) accepted: Counter,
    pub(crate) open: Gauge,
    /// Bytes clients sent through the endpoint.
    pub(crate) from_clients: Counter,
    /// Bytes the endpoint sent to clients.
    pub(crate) to_clients: Counter,
}

impl EndpointMetrics {
    /// Counts an accepted connection as open until the returned guard is dropped.
    pub(crate) fn accepted(&self) -> OpenConnection {
        self.accepted.inc();
        self.open.inc();
        OpenConnection(self.open.clone())
    }
}

/// One open endpoint connection: counted as open while this lives, whatever path ends it.
pub(crate) struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Counters of things the controller does, one per event kind worth alerting on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counted {
    Failover,
    Switchover,
    Fence,
    ErrantRejoin,
    AgentRestart,
}

/// Which counter an event of `kind` increments, if any.
fn counted(kind: EventKind) -> Option<Counted> {
    match kind {
        EventKind::Failover => Some(Counted::Failover),
        EventKind::Switchover => Some(Counted::Switchover),
        EventKind::Fenced => Some(Counted::Fence),
        EventKind::Errant => Some(Counted::ErrantRejoin),
        EventKind::AgentRestarted => Some(Counted::AgentRestart),
        _ => None,
    }
}

/// The controller's metrics registry and the instruments it updates as it goes.
pub(crate) struct Metrics {
    cluster: String,
    registry: Registry,
    failovers: Counter,
    switchovers: Counter,
    fences: Counter,
    errant_rejoins: Counter,
    agent_restarts: Family<Labels, Counter>,
    clone_seconds: Histogram,
    pub(crate) rw: EndpointMetrics,
    pub(crate) ro: EndpointMetrics,
}

fn registry_for(cluster: &str) -> Registry {
    Registry::with_prefix_and_labels(
        PREFIX,
        [(Cow::Borrowed("cluster"), Cow::Owned(cluster.to_string()))].into_iter(),
    )
}

impl Metrics {
    pub(crate) fn new(cluster: &str) -> Metrics {
        let mut registry = registry_for(cluster);
        let mut counter = |name: &str, help: &str| {
            let counter = Counter::default();
            registry.register(name, help, counter.clone());
            counter
        };
        let failovers = counter(
            "failovers",
            "Automatic failovers: the primary failed and a replica was promoted",
        );
        let switchovers = counter(
            "switchovers",
            "Planned changes of primary (myset switchover)",
        );
        let fences = counter(
            "fences",
            "Failed primaries whose processes the controller killed to fence them",
        );
        let errant_rejoins = counter(
            "errant_rejoins",
            "Former primaries found diverged when rejoining; each is set aside and re-cloned",
        );
        let agent_restarts = Family::<Labels, Counter>::default();
        registry.register(
            "agent_restarts",
            "Agent processes the controller started again after they died",
            agent_restarts.clone(),
        );
        let clone_seconds = Histogram::new(CLONE_BUCKETS);
        registry.register_with_unit(
            "clone_duration",
            "Time from an empty instance's start to its cloned server starting (copy and prepare)",
            Unit::Seconds,
            clone_seconds.clone(),
        );
        let connections = Family::<Labels, Counter>::default();
        registry.register(
            "endpoint_connections",
            "Client connections accepted by the rw and ro endpoints",
            connections.clone(),
        );
        let open = Family::<Labels, Gauge>::default();
        registry.register(
            "endpoint_open_connections",
            "Client connections currently open through the rw and ro endpoints",
            open.clone(),
        );
        let transferred = Family::<Labels, Counter>::default();
        registry.register_with_unit(
            "endpoint_transferred",
            "Bytes through the rw and ro endpoints, by direction (from_client or to_client)",
            Unit::Bytes,
            transferred.clone(),
        );
        let endpoint = |name: &str| {
            let of = |extra: Option<&str>| {
                let mut labels: Labels = vec![("endpoint", name.to_string())];
                if let Some(direction) = extra {
                    labels.push(("direction", direction.to_string()));
                }
                labels
            };
            // One statement each: a family's guard must be gone before it is asked again.
            let accepted = connections.get_or_create(&of(None)).clone();
            let open = open.get_or_create(&of(None)).clone();
            let from_clients = transferred.get_or_create(&of(Some("from_client"))).clone();
            let to_clients = transferred.get_or_create(&of(Some("to_client"))).clone();
            EndpointMetrics {
                accepted,
                open,
                from_clients,
                to_clients,
            }
        };
        let (rw, ro) = (endpoint("rw"), endpoint("ro"));
        Metrics {
            cluster: cluster.to_string(),
            registry,
            failovers,
            switchovers,
            fences,
            errant_rejoins,
            agent_restarts,
            clone_seconds,
            rw,
            ro,
        }
    }

    /// Counts an event the controller records, if its kind is counted. Called from the one
    /// place every event goes through.
    pub(crate) fn count_event(&self, kind: EventKind, instance: Option<(String, u32)>) {
        let counter = match counted(kind) {
            None => return,
            Some(Counted::Failover) => &self.failovers,
            Some(Counted::Switchover) => &self.switchovers,
            Some(Counted::Fence) => &self.fences,
            Some(Counted::ErrantRejoin) => &self.errant_rejoins,
            Some(Counted::AgentRestart) => {
                let labels = instance_labels_of(instance);
                self.agent_restarts.get_or_create(&labels).inc();
                return;
            }
        };
        counter.inc();
    }

    pub(crate) fn clone_finished(&self, took: Duration) {
        self.clone_seconds.observe(took.as_secs_f64());
    }

    /// Everything, in `format`: the instruments, then `samples` observed for this scrape.
    pub(crate) fn render(&self, samples: Vec<Sample>, format: Format) -> String {
        let mut text = String::new();
        let mut observed = registry_for(&self.cluster);
        observed.register_collector(Box::new(observed::Samples(samples)));
        encode_registry(&mut text, &self.registry)
            .and_then(|()| encode_registry(&mut text, &observed))
            .and_then(|()| encode_eof(&mut text))
            .expect("writing to a String cannot fail");
        match format {
            Format::OpenMetrics => text,
            Format::Prometheus => to_prometheus_text(&text),
        }
    }
}

pub(crate) fn instance_labels_of(instance: Option<(String, u32)>) -> Labels {
    match instance {
        Some((name, ordinal)) => vec![("instance", name), ("ordinal", ordinal.to_string())],
        None => Vec::new(),
    }
}

/// Rewrites OpenMetrics text as the classic Prometheus text format: a counter family's HELP
/// and TYPE lines name its `_total` sample, and the UNIT and EOF lines (comments there) go.
pub(crate) fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + counters.len() * 12);
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|tag| {
            let rest = line.strip_prefix(tag)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{tag}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// Times a clone as the controller sees it: from the start of an agent told to clone (or,
/// for a controller that adopted it mid-clone, the first report of a clone phase) to the
/// first report past the clone (its server starting).
#[derive(Debug, Default)]
pub(crate) struct CloneClock {
    since: Option<Instant>,
}

impl CloneClock {
    /// The controller started an empty instance's agent with donors.
    pub(crate) fn started(&mut self, now: Instant) {
        self.since = Some(now);
    }

    /// The agent reported `phase` at `now`; returns the clone's duration when it just ended.
    pub(crate) fn observe(&mut self, phase: &Phase, now: Instant) -> Option<Duration> {
        match phase {
            Phase::Cloning { .. } | Phase::Preparing { .. } => {
                self.since.get_or_insert(now);
                None
            }
            Phase::Starting | Phase::Running => self.since.take().map(|s| now - s),
            // Waiting for a donor is part of the clone; a stop abandons it.
            Phase::Initializing | Phase::Waiting { .. } => None,
            Phase::Stopping => {
                self.since = None;
                None
            }
        }
    }
}

mod observed;
pub(crate) use observed::{status_samples, AgentFacts, Sample};

#[cfg(test)]
mod tests;
