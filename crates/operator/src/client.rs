//! The `myset` CLI's side of a cluster on Kubernetes (`myset --kube ...`, `kubectl myset ...`):
//! `status`, `events`, `scale`, `switchover` and `sql` over a `kube::Client`, through the
//! `MySet`, its Events, Pods and Secret, as the operator exposes them. Everything the CLI
//! prints is a `myset_api` type, so it prints it with the same code as for a local cluster.
//!
//! The decisions are pure functions ([`cluster_status`], [`event_from`], [`scaled`],
//! [`sql_target`]); the rest are thin API calls and deadline-bounded waits.

use crate::crd::{self, MySet};
use crate::operator::ANNOTATION_SWITCHOVER;
use crate::render::{self, names, LABEL_CLUSTER, LABEL_ORDINAL, LABEL_ROLE};
use anyhow::{anyhow, bail, Context as _};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::api::{Api, ListParams, Patch, PatchParams};
use myset_api::{
    ClusterState, ClusterStatus, Credentials, Endpoints, Event, EventKind, GtidPositions,
    InstanceState, InstanceStatus, Phase, PrimaryChange,
};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};

/// How often a wait reads the `MySet` again (the operator reports every second).
const POLL: Duration = Duration::from_millis(500);
/// After the operator removed the switchover annotation, how long the outcome (a new primary
/// in the status, or a `switchover-failed` Event, published in the background) may take to
/// show.
const OUTCOME_GRACE: Duration = Duration::from_secs(10);
/// Events listed per request.
const EVENTS_PAGE: u32 = 500;
/// The port MariaDB listens on in every member's Pod.
const MYSQL_PORT: u16 = render::MYSQL_PORT as u16;

/// A client from the current kubeconfig (or the Pod's service account), and the namespace to
/// work in: `namespace` when given, else the kubeconfig context's, else `default`.
pub async fn connect(namespace: Option<&str>) -> anyhow::Result<(kube::Client, String)> {
    let config = kube::Config::infer().await.map_err(|e| {
        anyhow!(
            "cannot reach a Kubernetes API server: no usable kubeconfig (set KUBECONFIG, or \
             ~/.kube/config) and not in a Pod: {}",
            one_line(&e.to_string())
        )
    })?;
    let namespace = namespace
        .map(str::to_string)
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = kube::Client::try_from(config).map_err(|e| {
        anyhow!(
            "cannot make a Kubernetes client: {}",
            one_line(&e.to_string())
        )
    })?;
    Ok((client, namespace))
}

/// The `MySet`, or an error saying it does not exist (or cannot be read) in one line.
pub async fn get_myset(client: &kube::Client, ns: &str, name: &str) -> anyhow::Result<MySet> {
    let api: Api<MySet> = Api::namespaced(client.clone(), ns);
    api.get(name).await.map_err(|e| match &e {
        kube::Error::Api(s) if s.code == 404 => {
            anyhow!("no MySet {name} in namespace {ns}: {}", api_message(&e))
        }
        _ => anyhow!("cannot read MySet {ns}/{name}: {}", api_message(&e)),
    })
}

/// What a failed API call says, in one line: the server's message when it gave one.
fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => one_line(&s.message),
        other => one_line(&other.to_string()),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn namespace_of(myset: &MySet) -> String {
    myset
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into())
}

fn name_of(myset: &MySet) -> String {
    myset.metadata.name.clone().unwrap_or_default()
}

/// The cluster as `myset status` prints it, from what the `MySet` says: its spec, the
/// operator's record (members, placements, term, durability) and the observed instances.
/// What only a local cluster has (pids) is left empty; `running` says whether the operator
/// has taken the `MySet` in hand (it wrote a record).
pub fn cluster_status(myset: &MySet) -> ClusterStatus {
    let name = name_of(myset);
    let ns = namespace_of(myset);
    let spec = &myset.spec;
    let status = myset.status.clone().unwrap_or_default();
    let record = status.record.as_ref();
    let durability = record.map_or(spec.durability, |r| r.durability);
    let recorded = status
        .primary
        .or(record.map(|r| r.primary))
        .unwrap_or_default();
    // Galera: the member rw routes to now, as the operator last reported it.
    let primary = match record.map(|r| r.topology) {
        Some(myset_api::Topology::Galera) => status
            .instances
            .iter()
            .find(|i| i.role == crd::Role::Primary)
            .map_or(recorded, |i| i.ordinal),
        _ => recorded,
    };
    let observed: BTreeMap<u32, &crd::InstanceStatus> =
        status.instances.iter().map(|i| (i.ordinal, i)).collect();
    let mut ordinals: Vec<u32> = observed.keys().copied().collect();
    if let Some(r) = record {
        ordinals.extend(r.members.iter().copied());
    }
    ordinals.sort_unstable();
    ordinals.dedup();
    let instances = ordinals
        .into_iter()
        .map(|o| instance_status(&name, &ns, primary, record, o, observed.get(&o).copied()))
        .collect();
    let last_primary_change = record
        .and_then(|r| r.last_primary_change.clone())
        .or_else(|| {
            status.last_primary_change.as_ref().map(|c| PrimaryChange {
                at_ms: c.time.0.as_millisecond().max(0) as u64,
                term: c.term,
                from: c.from,
                to: c.to,
                kind: c.kind,
                reason: c.reason.clone(),
            })
        });
    ClusterStatus {
        running: record.is_some(),
        controller_pid: None,
        primary,
        term: status.term.max(record.map_or(0, |r| r.term)),
        topology: record.map(|r| r.topology).unwrap_or_default(),
        durability,
        causal_reads: record.is_some_and(|r| r.causal_reads),
        // The operator's conditions say it in words only (see `warnings`).
        durability_in_force: durability,
        conditions: Vec::new(),
        last_primary_change,
        replicas: spec.replicas,
        endpoints: Endpoints {
            rw: format!("{}.{ns}.svc:{}", names::rw(&name), spec.service.rw_port),
            ro: format!("{}.{ns}.svc:{}", names::ro(&name), spec.service.ro_port),
            // Services carry them; the local modes do not apply.
            asked: myset_api::EndpointsMode::default(),
            mode: None,
        },
        credentials: Credentials {
            // The account the operator creates (the record does not name it); the Secret's
            // `username` says it too.
            user: myset_api::Secrets::generate(String::new).user,
            password_file: format!("Secret {ns}/{} (key password)", names::user_secret(&name)),
        },
        instances,
        name,
        backup: None,
        // The operator issues no certificates yet (README: TLS on Kubernetes).
        tls: Default::default(),
        // The operator serves no controller API.
        metrics: None,
    }
}

fn instance_status(
    name: &str,
    ns: &str,
    primary: u32,
    record: Option<&ClusterState>,
    ordinal: u32,
    observed: Option<&crd::InstanceStatus>,
) -> InstanceStatus {
    let placement = record.and_then(|r| r.placements.get(&ordinal));
    let role = match observed {
        Some(i) => match i.role {
            crd::Role::Primary => myset_api::Role::Primary,
            crd::Role::Replica => myset_api::Role::Replica,
        },
        None if ordinal == primary => myset_api::Role::Primary,
        None => myset_api::Role::Replica,
    };
    let pod = observed
        .map(|i| i.pod.clone())
        .unwrap_or_else(|| names::pod(name, ordinal));
    let ready = observed.is_some_and(|i| i.ready);
    let (state, reason) = match observed {
        Some(i) if i.ready => (
            InstanceState::Agent {
                phase: Phase::Running,
            },
            None,
        ),
        // The operator reports readiness only; the Pod says more.
        Some(_) => (
            InstanceState::Agent {
                phase: Phase::Waiting {
                    reason: "not Ready".into(),
                },
            },
            Some(format!("see kubectl describe pod {pod} -n {ns}")),
        ),
        None => (
            InstanceState::NotRunning,
            Some("not observed yet".to_string()),
        ),
    };
    InstanceStatus {
        ordinal,
        name: pod,
        role,
        ready,
        host: placement
            .map(|p| p.server.host.clone())
            .unwrap_or_else(|| render::member_host(name, ns, ordinal)),
        port: placement.map_or(MYSQL_PORT, |p| p.server.port),
        server_id: ClusterState::server_id(ordinal),
        pid: None,
        agent_pid: None,
        state,
        reason,
        gtid: observed
            .and_then(|i| i.gtid.clone())
            .map(|current| GtidPositions {
                current,
                ..GtidPositions::default()
            }),
        replication: None,
        galera: observed.and_then(|i| i.galera.clone()),
        restarts: 0,
        version: None,
    }
}

/// The operator's `Degraded` condition, when true, as a line for people: what a local
/// status shows as warnings.
pub fn warnings(myset: &MySet) -> Vec<String> {
    myset
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .filter(|c| c.type_ == crd::condition::DEGRADED && c.status == "True")
        .map(|c| c.message.clone())
        .collect()
}

/// The controller events of this `MySet` (Kubernetes Events regarding it, which the operator
/// publishes), oldest first.
pub async fn events(client: &kube::Client, ns: &str, name: &str) -> anyhow::Result<Vec<Event>> {
    let myset = get_myset(client, ns, name).await?;
    let mut events: Vec<Event> = regarding(client, &myset)
        .await?
        .iter()
        .filter_map(event_from)
        .collect();
    events.sort_by(|a, b| a.at.total_cmp(&b.at));
    Ok(events)
}

/// The Kubernetes Events regarding `myset` (this very object: same kind, name and uid).
///
/// The namespace's Events are listed in pages and filtered here: events.k8s.io/v1 takes
/// `regarding.name` field selectors on a real API server, but kube-fake-client only knows
/// core/v1's `involvedObject.*` ones, and this way is the same on both.
async fn regarding(client: &kube::Client, myset: &MySet) -> anyhow::Result<Vec<KubeEvent>> {
    let (ns, name) = (namespace_of(myset), name_of(myset));
    let api: Api<KubeEvent> = Api::namespaced(client.clone(), &ns);
    let uid = myset.metadata.uid.as_deref();
    let ours = |e: &KubeEvent| {
        let r = e.regarding.as_ref();
        r.and_then(|r| r.kind.as_deref()) == Some("MySet")
            && r.and_then(|r| r.name.as_deref()) == Some(name.as_str())
            && r.and_then(|r| r.api_version.as_deref())
                .is_none_or(|v| v.starts_with("myset.dev/"))
            // An earlier MySet of the same name had another uid.
            && match (uid, r.and_then(|r| r.uid.as_deref())) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    };
    let mut found = Vec::new();
    let mut params = ListParams::default().limit(EVENTS_PAGE);
    loop {
        let page = api.list(&params).await.map_err(|e| {
            anyhow!(
                "cannot list the Events of MySet {ns}/{name}: {}",
                api_message(&e)
            )
        })?;
        found.extend(page.items.into_iter().filter(|e| ours(e)));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    Ok(found)
}

/// One controller event from a Kubernetes Event: its reason is the event kind (a kind this
/// version does not know becomes `other`), its note the message, its time the last time it
/// was observed. The structured fields (ordinal, term...) are not carried by Kubernetes
/// Events and stay empty.
pub fn event_from(e: &KubeEvent) -> Option<Event> {
    let at = e
        .series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or(e.event_time.as_ref().map(|t| t.0))
        .or(e.deprecated_last_timestamp.as_ref().map(|t| t.0))
        .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))?;
    let reason = e.reason.clone().unwrap_or_default();
    let kind: EventKind =
        serde_json::from_value(serde_json::Value::String(reason)).unwrap_or(EventKind::Other);
    Some(Event {
        // Microseconds: two events published within a millisecond keep their order.
        at: at.as_microsecond() as f64 / 1_000_000.0,
        kind,
        message: e.note.clone().unwrap_or_default(),
        ordinal: None,
        term: None,
        from: None,
        to: None,
        reason: None,
        backup: None,
        gtid: None,
        donor: None,
    })
}

/// Whether the `MySet` shows the scale asked for done: the operator's record has taken the
/// new size (and the data policy), and exactly `replicas` instances are observed, all Ready.
pub fn scaled(myset: &MySet, replicas: u32, delete_data: bool) -> bool {
    let Some(status) = &myset.status else {
        return false;
    };
    let record_done = status.record.as_ref().is_none_or(|r| {
        r.replicas == replicas
            && r.members.len() == replicas as usize
            && r.delete_data_on_removal == delete_data
    });
    record_done
        && status.instances.len() == replicas as usize
        && status.instances.iter().all(|i| i.ready)
}

/// `myset scale`: sets `spec.replicas` (and `spec.storage.deleteOnScaleDown` to
/// `delete_data`, as a local scale applies its `--delete-data`), then waits until the status
/// shows `replicas` instances, all Ready. `progress` sees each status read meanwhile.
pub async fn scale(
    client: &kube::Client,
    ns: &str,
    name: &str,
    replicas: u32,
    delete_data: bool,
    timeout: Duration,
    mut progress: impl FnMut(&ClusterStatus),
) -> anyhow::Result<ClusterStatus> {
    get_myset(client, ns, name).await?;
    let api: Api<MySet> = Api::namespaced(client.clone(), ns);
    let patch = serde_json::json!({
        "spec": {"replicas": replicas, "storage": {"deleteOnScaleDown": delete_data}}
    });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| anyhow!("cannot scale MySet {ns}/{name}: {}", api_message(&e)))?;
    // Shared with each poll's future (a future cannot hold the closure's `&mut`).
    let last: Mutex<Option<MySet>> = Mutex::new(None);
    let progress = Mutex::new(&mut progress);
    let result = myset_os::poll_for(timeout, POLL, || {
        let api = api.clone();
        let (last, progress) = (&last, &progress);
        async move {
            match api.get(name).await {
                Ok(myset) => {
                    (progress.lock().expect("progress lock"))(&cluster_status(&myset));
                    let ok = scaled(&myset, replicas, delete_data);
                    *last.lock().expect("last lock") = Some(myset);
                    Ok(ok.then_some(()))
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    Err(anyhow!("MySet {ns}/{name} was deleted while scaling"))
                }
                // A transient read error: the next poll tries again.
                Err(_) => Ok(None),
            }
        }
    })
    .await?;
    match (result, last.into_inner().expect("last lock")) {
        (Some(()), Some(myset)) => Ok(cluster_status(&myset)),
        (_, last) => {
            let detail = last.as_ref().map(summary).unwrap_or_default();
            bail!(
                "not converged after {}s ({detail}); the operator keeps trying: watch `myset \
                 status --kube --namespace {ns} --name {name}` and `kubectl describe myset \
                 {name} -n {ns}`",
                timeout.as_secs()
            )
        }
    }
}

/// The instances in a few words, for a wait that gave up.
fn summary(myset: &MySet) -> String {
    let status = cluster_status(myset);
    let mut parts: Vec<String> = status
        .instances
        .iter()
        .map(|i| {
            let ready = if i.ready { "ready" } else { "not ready" };
            format!("{}: {ready}", i.name)
        })
        .collect();
    if parts.is_empty() {
        parts.push("no instance observed".into());
    }
    format!(
        "{} of {} wanted: {}",
        status.instances.len(),
        status.replicas,
        parts.join(", ")
    )
}

/// What a switchover did, for the same line a local switchover prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchoverDone {
    pub name: String,
    pub from: u32,
    pub to: u32,
    pub term: u64,
}

/// `myset switchover`: annotates the `MySet` with [`ANNOTATION_SWITCHOVER`] (`to`, or `any`),
/// waits until the operator removed it, and reports the new primary; or fails with the
/// message of the `switchover-failed` Event the operator recorded. On timeout, the annotation
/// is removed, so the switchover does not happen later unexpectedly.
pub async fn switchover(
    client: &kube::Client,
    ns: &str,
    name: &str,
    to: Option<u32>,
    timeout: Duration,
) -> anyhow::Result<SwitchoverDone> {
    let before = get_myset(client, ns, name).await?;
    if let Some(pending) = before
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_SWITCHOVER))
    {
        bail!(
            "a switchover is already pending on MySet {ns}/{name} ({ANNOTATION_SWITCHOVER}={pending}); \
             wait for the operator, or remove it with kubectl annotate myset {name} -n {ns} {ANNOTATION_SWITCHOVER}-"
        );
    }
    let from = cluster_status(&before);
    let seen = failure_marks(&regarding(client, &before).await?);
    let api: Api<MySet> = Api::namespaced(client.clone(), ns);
    let value = to.map_or_else(|| "any".to_string(), |o| o.to_string());
    let patch = serde_json::json!({"metadata": {"annotations": {ANNOTATION_SWITCHOVER: value}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| anyhow!("cannot annotate MySet {ns}/{name}: {}", api_message(&e)))?;

    // Until the operator removes the annotation, then a little longer for the outcome.
    let started = tokio::time::Instant::now();
    let removed_at: Mutex<Option<tokio::time::Instant>> = Mutex::new(None);
    let outcome = myset_os::poll_for(timeout + OUTCOME_GRACE + POLL, POLL, || {
        let api = api.clone();
        let (seen, from) = (&seen, &from);
        let removed_at = &removed_at;
        async move {
            let now = match api.get(name).await {
                Ok(m) => m,
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    return Err(anyhow!("MySet {ns}/{name} was deleted during the switchover"))
                }
                // A transient read error: the next poll tries again.
                Err(_) => return Ok(None),
            };
            if let Ok(events) = regarding(client, &now).await {
                if let Some(why) = new_failure(&events, seen) {
                    return Err(anyhow!("switchover refused: {why}"));
                }
            }
            let pending = now
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(ANNOTATION_SWITCHOVER));
            if pending {
                return Ok((started.elapsed() >= timeout).then_some(None));
            }
            let after = cluster_status(&now);
            if after.term > from.term && after.primary != from.primary {
                return Ok(Some(Some(after)));
            }
            let removed = *removed_at
                .lock()
                .expect("removed_at lock")
                .get_or_insert_with(tokio::time::Instant::now);
            if removed.elapsed() >= OUTCOME_GRACE {
                return Err(anyhow!(
                    "the operator removed {ANNOTATION_SWITCHOVER} but the primary is still \
                     {name}-{} and no refusal was recorded; see kubectl describe myset {name} -n {ns}",
                    after.primary
                ));
            }
            Ok(None)
        }
    })
    .await?;
    match outcome {
        Some(Some(after)) => Ok(SwitchoverDone {
            name: name.to_string(),
            from: from.primary,
            to: after.primary,
            term: after.term,
        }),
        _ => {
            let undo =
                serde_json::json!({"metadata": {"annotations": {ANNOTATION_SWITCHOVER: null}}});
            let undone = api
                .patch(name, &PatchParams::default(), &Patch::Merge(&undo))
                .await
                .is_ok();
            bail!(
                "the operator did not act on the switchover within {}s ({}); is the operator \
                 running? see kubectl describe myset {name} -n {ns}",
                timeout.as_secs(),
                if undone {
                    "the request was withdrawn"
                } else {
                    "the request could not be withdrawn and may still happen"
                }
            )
        }
    }
}

/// Each `switchover-failed` Event's name with how many times it was observed (the event
/// recorder counts a repeated message in a series rather than creating a new Event).
fn failure_marks(events: &[KubeEvent]) -> BTreeMap<String, i32> {
    events
        .iter()
        .filter(|e| e.reason.as_deref() == Some(&EventKind::SwitchoverFailed.to_string()))
        .map(|e| {
            let count = e.series.as_ref().map_or(1, |s| s.count);
            (e.metadata.name.clone().unwrap_or_default(), count)
        })
        .collect()
}

/// The message of a `switchover-failed` Event that is new since `seen`, or seen more often.
fn new_failure(events: &[KubeEvent], seen: &BTreeMap<String, i32>) -> Option<String> {
    let now = failure_marks(events);
    now.iter()
        .find(|(name, count)| seen.get(*name).is_none_or(|before| *count > before))
        .and_then(|(name, _)| {
            events
                .iter()
                .find(|e| e.metadata.name.as_deref() == Some(name.as_str()))
        })
        .map(|e| e.note.clone().unwrap_or_else(|| "no reason given".into()))
}

/// The Pod `myset sql` talks to, and how to name it in messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlTarget {
    /// `rw (Pod demo-0)`, `ro (Pod demo-2)`, `instance 1 (Pod demo-1)`.
    pub what: String,
    pub pod: String,
}

/// Picks the Pod for `target` among the cluster's `pods`: `rw` the Pod labelled
/// `myset.dev/role=primary`; `ro` a Ready member's Pod, `pick(n)` choosing one of `n` (the
/// caller brings the randomness); an ordinal that member's Pod.
pub fn sql_target(
    myset: &MySet,
    pods: &[Pod],
    target: &str,
    pick: impl FnOnce(usize) -> usize,
) -> anyhow::Result<SqlTarget> {
    let name = name_of(myset);
    let status = cluster_status(myset);
    let members: Vec<u32> = match myset.status.as_ref().and_then(|s| s.record.as_ref()) {
        Some(r) => r.members.iter().copied().collect(),
        None => (0..myset.spec.replicas).collect(),
    };
    let ordinal_of =
        |p: &Pod| -> Option<u32> { p.metadata.labels.as_ref()?.get(LABEL_ORDINAL)?.parse().ok() };
    let label =
        |p: &Pod, key: &str| -> Option<String> { p.metadata.labels.as_ref()?.get(key).cloned() };
    let live: Vec<&Pod> = pods
        .iter()
        .filter(|p| label(p, LABEL_CLUSTER).as_deref() == Some(name.as_str()))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let pod_name = |p: &Pod| p.metadata.name.clone().unwrap_or_default();
    let hint = format!("see `myset status --kube --name {name}`");
    match target {
        "rw" => {
            let primaries: Vec<&Pod> = live
                .iter()
                .copied()
                .filter(|p| label(p, LABEL_ROLE).as_deref() == Some("primary"))
                .collect();
            let chosen = primaries
                .iter()
                .find(|p| ordinal_of(p) == Some(status.primary))
                .or(primaries.first())
                .ok_or_else(|| {
                    anyhow!(
                        "no Pod of cluster {name} is labelled {LABEL_ROLE}=primary: nothing \
                         serves rw now; {hint}"
                    )
                })?;
            let pod = pod_name(chosen);
            Ok(SqlTarget {
                what: format!("rw (Pod {pod})"),
                pod,
            })
        }
        "ro" => {
            let ready: Vec<&Pod> = live
                .iter()
                .copied()
                .filter(|p| ordinal_of(p).is_some_and(|o| members.contains(&o)))
                .filter(|p| pod_ready(p))
                .collect();
            if ready.is_empty() {
                bail!("no member Pod of cluster {name} is Ready: nothing serves ro now; {hint}");
            }
            let pod = pod_name(ready[pick(ready.len()) % ready.len()]);
            Ok(SqlTarget {
                what: format!("ro (Pod {pod})"),
                pod,
            })
        }
        ordinal => {
            let o: u32 = ordinal.parse().map_err(|_| {
                anyhow!("unknown target {ordinal:?}: use rw, ro or an instance ordinal")
            })?;
            if !members.contains(&o) {
                let list: Vec<String> = members.iter().map(u32::to_string).collect();
                bail!(
                    "instance {o} is not a member of cluster {name} (members: {}): pick one of those",
                    list.join(", ")
                );
            }
            let pod = names::pod(&name, o);
            if !live.iter().any(|p| pod_name(p) == pod) {
                bail!("instance {o} has no Pod now ({pod} does not exist or is being deleted); {hint}");
            }
            Ok(SqlTarget {
                what: format!("instance {o} (Pod {pod})"),
                pod,
            })
        }
    }
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The client account of the cluster, from Secret `<name>-user`: (user, password).
pub async fn user_credentials(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> anyhow::Result<(String, String)> {
    let secret_name = names::user_secret(name);
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret = api.get(&secret_name).await.map_err(|e| {
        anyhow!(
            "cannot read Secret {ns}/{secret_name} (the client account): {}",
            api_message(&e)
        )
    })?;
    let key = |k: &str| -> anyhow::Result<String> {
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .ok_or_else(|| anyhow!("Secret {ns}/{secret_name} has no key {k}"))?;
        String::from_utf8(bytes.0.clone())
            .with_context(|| format!("Secret {ns}/{secret_name} key {k} is not UTF-8"))
    };
    Ok((key("username")?, key("password")?))
}

/// A stream to MariaDB in the Pod `myset sql` picked for `target`, through a port-forward by
/// the API server, on which the server's greeting has begun to arrive; with the target's
/// name for messages. Each step (the port-forward, the greeting) is bounded by
/// `connect_timeout`.
///
/// Not exercised by the tests here: the port-forward needs a real API server and kubelet
/// (kube-fake-client has no `portforward` subresource); [`sql_target`] is tested instead.
pub async fn sql_stream(
    client: &kube::Client,
    ns: &str,
    name: &str,
    target: &str,
    connect_timeout: Duration,
) -> anyhow::Result<(String, impl AsyncRead + AsyncWrite + Unpin + Send + 'static)> {
    let myset = get_myset(client, ns, name).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let listed = pods
        .list(&ListParams::default().labels(&format!("{LABEL_CLUSTER}={name}")))
        .await
        .map_err(|e| {
            anyhow!(
                "cannot list the Pods of MySet {ns}/{name}: {}",
                api_message(&e)
            )
        })?;
    let chosen = sql_target(&myset, &listed.items, target, |n| {
        use rand::Rng;
        rand::rng().random_range(0..n)
    })?;
    let what = chosen.what.clone();
    let secs = connect_timeout.as_secs();
    let mut forward = match tokio::time::timeout(
        connect_timeout,
        pods.portforward(&chosen.pod, &[MYSQL_PORT]),
    )
    .await
    {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => bail!(
            "cannot open a port-forward to {what} port {MYSQL_PORT}: {}",
            api_message(&e)
        ),
        Err(_) => bail!("cannot open a port-forward to {what}: no answer within {secs}s"),
    };
    let error = forward.take_error(MYSQL_PORT);
    let stream = forward
        .take_stream(MYSQL_PORT)
        .ok_or_else(|| anyhow!("the port-forward to {what} has no stream for port {MYSQL_PORT}"))?;
    // Reading ahead keeps the greeting in the buffer for the client library.
    let mut stream = BufReader::new(stream);
    match tokio::time::timeout(connect_timeout, stream.fill_buf()).await {
        Ok(Ok(bytes)) if !bytes.is_empty() => Ok((what, stream)),
        Ok(Ok(_)) => {
            let why = match error {
                Some(e) => tokio::time::timeout(Duration::from_secs(1), e)
                    .await
                    .ok()
                    .flatten(),
                None => None,
            };
            bail!(
                "{what} closed the port-forward without a server greeting{}; see `myset status \
                 --kube --name {name}`",
                why.map(|w| format!(" ({})", one_line(&w)))
                    .unwrap_or_default()
            )
        }
        Ok(Err(e)) => bail!("the port-forward to {what} failed: {e}"),
        Err(_) => bail!("port-forwarded to {what} but no server greeting arrived within {secs}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_user_is_the_generated_one() {
        let myset = crate::parse_manifest(
            "apiVersion: myset.dev/v1alpha1\nkind: MySet\nmetadata: {name: db, namespace: prod}\nspec: {replicas: 1, image: x, storage: {size: 1Gi}}\n",
        )
        .unwrap();
        let status = cluster_status(&myset);
        assert_eq!(status.credentials.user, "myset");
        assert_eq!(status.endpoints.rw, "db-rw.prod.svc:3306");
        assert!(!status.running);
    }
}
