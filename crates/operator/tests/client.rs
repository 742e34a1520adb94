//! The CLI's Kubernetes side (`myset --kube`, `kubectl myset`; `myset_operator::client`)
//! against kube-fake-client's in-memory API server: status and events read from the `MySet`
//! and its Events, scale and switchover with a spawned task playing the operator.
//!
//! `sql`'s port-forward is not exercised: it needs the API server's `portforward`
//! subresource over a WebSocket to a kubelet, which kube-fake-client does not have (and no
//! API server can run here). The choice of the Pod it forwards to is tested as a pure
//! function ([`client::sql_target`]).

mod sim;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, PodCondition, PodStatus};
use k8s_openapi::api::events::v1::{Event as KubeEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use myset_api::{
    Address, ChangeKind, ClusterState, Durability, EventKind, InstanceState, Phase, Placement,
    PrimaryChange, Role,
};
use myset_operator::client;
use myset_operator::crd::{self, MySetStatus};
use myset_operator::operator::ANNOTATION_SWITCHOVER;
use myset_operator::MySet;
use std::collections::BTreeMap;
use std::time::Duration;

use sim::MySetKind;

const NS: &str = "prod";
const UID: &str = "6c1c3a52-0000-4000-8000-000000000001";

fn myset(name: &str, replicas: u32) -> MySet {
    let text = format!(
        "apiVersion: myset.dev/v1alpha1
kind: MySet
metadata:
  name: {name}
  namespace: {NS}
  uid: {UID}
spec:
  replicas: {replicas}
  image: localhost/myset:dev
  storage:
    size: 1Gi
  service:
    rwPort: 3307
"
    );
    myset_operator::parse_manifest(&text).expect("a valid MySet")
}

/// The record an operator keeps for `db` with `members`, `primary` and `term`.
fn record(replicas: u32, primary: u32, term: u64) -> ClusterState {
    let mut r = ClusterState::new("db", replicas, "0.0.0.0", 3307, 3306);
    r.members = (0..replicas).collect();
    r.primary = primary;
    r.term = term;
    r.initialized = true;
    r.durability = Durability::Async;
    for o in 0..replicas {
        let host = myset_operator::render::member_host("db", NS, o);
        r.placements.insert(
            o,
            Placement {
                server: Address {
                    host: host.clone(),
                    port: 3306,
                },
                agent: Address { host, port: 8080 },
                galera: None,
            },
        );
    }
    r
}

/// A status as the operator writes it: `ready` says which ordinals are Ready.
fn status(replicas: u32, primary: u32, term: u64, ready: &[u32]) -> MySetStatus {
    let instances = (0..replicas)
        .map(|o| crd::InstanceStatus {
            ordinal: o,
            pod: format!("db-{o}"),
            node: Some(format!("n{o}")),
            role: if o == primary {
                crd::Role::Primary
            } else {
                crd::Role::Replica
            },
            ready: ready.contains(&o),
            gtid: Some(format!("0-101-{}", 10 + o)),
            galera: None,
        })
        .collect();
    MySetStatus {
        primary: Some(primary),
        term,
        instances,
        record: Some(record(replicas, primary, term)),
        ..MySetStatus::default()
    }
}

async fn api_server(objects: Vec<MySet>, events: Vec<KubeEvent>) -> kube::Client {
    let mut builder = kube_fake_client::ClientBuilder::new()
        .with_resource::<MySet>()
        .with_status_subresource::<MySetKind>();
    for o in objects {
        builder = builder.with_object(o);
    }
    for e in events {
        builder = builder.with_object(e);
    }
    builder.build().await.expect("fake API server")
}

/// Writes `status` as the operator does (PUT .../status on the latest version).
async fn write_status(api: &Api<MySet>, name: &str, status: MySetStatus) {
    let mut latest = api.get(name).await.expect("the MySet");
    latest.status = Some(status);
    api.replace_status(name, &PostParams::default(), &latest)
        .await
        .expect("status written");
}

fn at(seconds: i64) -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap()
}

/// An Event regarding `kind`/`name` (with `uid`), as the operator's recorder publishes it.
fn kube_event(
    event: &str,
    kind: &str,
    name: &str,
    uid: &str,
    reason: &str,
    note: &str,
    time: i64,
) -> KubeEvent {
    KubeEvent {
        metadata: ObjectMeta {
            name: Some(event.into()),
            namespace: Some(NS.into()),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(at(time))),
        reason: Some(reason.into()),
        action: Some(reason.into()),
        note: Some(note.into()),
        type_: Some("Normal".into()),
        reporting_controller: Some("myset-operator".into()),
        reporting_instance: Some("myset-operator-0".into()),
        regarding: Some(ObjectReference {
            api_version: Some(if kind == "MySet" {
                "myset.dev/v1alpha1".into()
            } else {
                "v1".into()
            }),
            kind: Some(kind.into()),
            name: Some(name.into()),
            namespace: Some(NS.into()),
            uid: Some(uid.into()),
            ..ObjectReference::default()
        }),
        ..KubeEvent::default()
    }
}

#[tokio::test]
async fn status_shows_what_the_myset_says() {
    let mut db = myset("db", 3);
    let mut s = status(3, 1, 3, &[0, 1]);
    s.last_primary_change = Some(crd::PrimaryChange {
        time: Time(at(1_795_219_200)),
        term: 3,
        from: 0,
        to: 1,
        kind: ChangeKind::Switchover,
        reason: "asked".into(),
    });
    if let Some(r) = s.record.as_mut() {
        r.last_primary_change = Some(PrimaryChange {
            at_ms: 1_795_219_200_000,
            term: 3,
            from: 0,
            to: 1,
            kind: ChangeKind::Switchover,
            reason: "asked".into(),
        });
    }
    s.conditions = vec![Condition {
        type_: crd::condition::DEGRADED.into(),
        status: "True".into(),
        reason: "Degraded".into(),
        message: "not Ready: db-2".into(),
        last_transition_time: Time(at(1_795_219_300)),
        observed_generation: None,
    }];
    db.status = Some(s);
    let kube = api_server(vec![db], vec![]).await;

    let myset = client::get_myset(&kube, NS, "db").await.expect("the MySet");
    let status = client::cluster_status(&myset);
    assert_eq!(status.name, "db");
    assert!(status.running, "the operator wrote a record");
    assert_eq!(status.controller_pid, None);
    assert_eq!((status.primary, status.term, status.replicas), (1, 3, 3));
    assert_eq!(status.durability, Durability::Async);
    assert_eq!(status.durability_in_force, Durability::Async);
    assert_eq!(status.endpoints.rw, "db-rw.prod.svc:3307");
    assert_eq!(status.endpoints.ro, "db-ro.prod.svc:3306");
    assert_eq!(status.credentials.user, "myset");
    assert_eq!(
        status.credentials.password_file,
        "Secret prod/db-user (key password)"
    );
    assert_eq!(
        status.last_primary_change.as_ref().map(|c| (c.from, c.to)),
        Some((0, 1))
    );
    assert_eq!(
        client::warnings(&myset),
        vec!["not Ready: db-2".to_string()]
    );
    let rows: Vec<_> = status
        .instances
        .iter()
        .map(|i| {
            (
                i.ordinal,
                i.name.as_str(),
                i.role,
                i.ready,
                i.host.as_str(),
                i.port,
                i.server_id,
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (
                0,
                "db-0",
                Role::Replica,
                true,
                "db-0.db.prod.svc",
                3306,
                100
            ),
            (
                1,
                "db-1",
                Role::Primary,
                true,
                "db-1.db.prod.svc",
                3306,
                101
            ),
            (
                2,
                "db-2",
                Role::Replica,
                false,
                "db-2.db.prod.svc",
                3306,
                102
            ),
        ]
    );
    assert_eq!(
        status.instances[1].state,
        InstanceState::Agent {
            phase: Phase::Running
        }
    );
    assert!(status.instances[2]
        .reason
        .as_deref()
        .is_some_and(|r| r.contains("kubectl describe pod db-2 -n prod")));
    assert_eq!(
        status.instances[0]
            .gtid
            .as_ref()
            .map(|g| g.current.as_str()),
        Some("0-101-10")
    );

    // The JSON has the local status's shape: the same keys, at the top and per instance.
    let local = myset_api::ClusterStatus::from_state(
        &record(1, 0, 1),
        true,
        myset_api::Credentials {
            user: "myset".into(),
            password_file: "/x".into(),
        },
        vec![myset_api::InstanceStatus::from_state(&record(1, 0, 1), 0)],
    );
    let keys =
        |v: &serde_json::Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    let (ours, theirs) = (
        serde_json::to_value(&status).unwrap(),
        serde_json::to_value(&local).unwrap(),
    );
    assert_eq!(keys(&ours), keys(&theirs));
    assert_eq!(keys(&ours["instances"][0]), keys(&theirs["instances"][0]));
    let back: myset_api::ClusterStatus = serde_json::from_value(ours).unwrap();
    assert_eq!(back, status);
}

#[tokio::test]
async fn status_of_a_myset_the_operator_has_not_taken_yet() {
    let kube = api_server(vec![myset("db", 3)], vec![]).await;
    let status = client::cluster_status(&client::get_myset(&kube, NS, "db").await.unwrap());
    assert!(!status.running);
    assert_eq!((status.primary, status.replicas), (0, 3));
    assert!(status.instances.is_empty());
}

#[tokio::test]
async fn a_missing_myset_is_one_line() {
    let kube = api_server(vec![myset("db", 3)], vec![]).await;
    for result in [
        client::get_myset(&kube, NS, "nope").await.map(|_| ()),
        client::events(&kube, NS, "nope").await.map(|_| ()),
        client::get_myset(&kube, "elsewhere", "db")
            .await
            .map(|_| ()),
        client::scale(&kube, NS, "nope", 2, false, Duration::from_secs(1), |_| {})
            .await
            .map(|_| ()),
        client::switchover(&kube, NS, "nope", None, Duration::from_secs(1))
            .await
            .map(|_| ()),
    ] {
        let message = format!("{:#}", result.expect_err("no such MySet"));
        assert!(
            message.starts_with("no MySet nope in namespace prod: ")
                || message.starts_with("no MySet db in namespace elsewhere: "),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");
    }
}

#[tokio::test]
async fn events_are_this_mysets_oldest_first() {
    let mut repeated = kube_event(
        "db.3",
        "MySet",
        "db",
        UID,
        "unready",
        "db-2 is not Ready",
        1_000,
    );
    repeated.series = Some(EventSeries {
        count: 3,
        last_observed_time: MicroTime(at(5_000)),
    });
    let events = vec![
        kube_event(
            "db.1",
            "MySet",
            "db",
            UID,
            "failover",
            "primary moved",
            3_000,
        ),
        kube_event(
            "db.2",
            "MySet",
            "db",
            UID,
            "controller-started",
            "started",
            2_000,
        ),
        repeated,
        kube_event(
            "db.4",
            "MySet",
            "db",
            UID,
            "brand-new-kind",
            "from a newer operator",
            4_000,
        ),
        // Not this MySet's: another MySet, a Pod of the same name, an earlier MySet "db".
        kube_event(
            "other.1", "MySet", "other", "u-2", "scale", "other's", 2_500,
        ),
        kube_event("pod.1", "Pod", "db", "u-3", "Killing", "a Pod's", 2_600),
        kube_event(
            "old.1",
            "MySet",
            "db",
            "u-old",
            "scale",
            "an earlier db's",
            2_700,
        ),
    ];
    let kube = api_server(vec![myset("db", 3), myset("other", 1)], events).await;

    let got = client::events(&kube, NS, "db").await.expect("events");
    let summary: Vec<(f64, EventKind, &str)> = got
        .iter()
        .map(|e| (e.at, e.kind, e.message.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (2_000.0, EventKind::ControllerStarted, "started"),
            (3_000.0, EventKind::Failover, "primary moved"),
            (4_000.0, EventKind::Other, "from a newer operator"),
            (5_000.0, EventKind::Unready, "db-2 is not Ready"),
        ]
    );
    // Printed as JSON like local events: no structured fields Kubernetes does not carry.
    let line = serde_json::to_string(&got[1]).unwrap();
    assert_eq!(
        line,
        r#"{"at":3000.0,"kind":"failover","message":"primary moved"}"#
    );
}

#[tokio::test]
async fn events_published_by_the_operators_recorder_read_back() {
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    use kube::Resource;
    let kube = api_server(vec![myset("db", 3)], vec![]).await;
    let db = client::get_myset(&kube, NS, "db").await.unwrap();
    let recorder = Recorder::new(
        kube.clone(),
        Reporter {
            controller: "myset-operator".into(),
            instance: None,
        },
    );
    for (kind, note) in [
        (EventKind::Scale, "replicas 3 -> 5"),
        (EventKind::SwitchoverFailed, "refused: no Ready replica"),
    ] {
        let event = Event {
            type_: EventType::Normal,
            reason: kind.to_string(),
            note: Some(note.into()),
            action: kind.to_string(),
            secondary: None,
        };
        recorder
            .publish(&event, &db.object_ref(&()))
            .await
            .expect("published");
    }
    let got = client::events(&kube, NS, "db").await.expect("events");
    let kinds: Vec<(EventKind, &str)> = got.iter().map(|e| (e.kind, e.message.as_str())).collect();
    assert_eq!(
        kinds,
        vec![
            (EventKind::Scale, "replicas 3 -> 5"),
            (EventKind::SwitchoverFailed, "refused: no Ready replica"),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn scale_waits_for_the_operator() {
    let mut db = myset("db", 3);
    db.status = Some(status(3, 0, 1, &[0, 1, 2]));
    let kube = api_server(vec![db], vec![]).await;
    let api: Api<MySet> = Api::namespaced(kube.clone(), NS);

    // The operator: once the spec asks for 5, the record grows, then the members get Ready.
    let operator = {
        let api = api.clone();
        tokio::spawn(async move {
            let asked = myset_os::poll_until_async(
                Duration::from_secs(60),
                Duration::from_millis(100),
                || async { api.get("db").await.unwrap().spec.replicas == 5 },
            )
            .await;
            assert!(asked, "the spec was patched");
            write_status(&api, "db", status(5, 0, 1, &[0, 1, 2])).await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            write_status(&api, "db", status(5, 0, 1, &[0, 1, 2, 3, 4])).await;
        })
    };
    let mut seen = Vec::new();
    let done = client::scale(&kube, NS, "db", 5, false, Duration::from_secs(60), |s| {
        seen.push(s.instances.iter().filter(|i| i.ready).count())
    })
    .await
    .expect("scaled");
    operator.await.unwrap();
    assert_eq!(done.replicas, 5);
    assert_eq!(done.instances.len(), 5);
    assert!(done.instances.iter().all(|i| i.ready));
    assert!(seen.contains(&3), "progress saw the wait: {seen:?}");
    let spec = api.get("db").await.unwrap().spec;
    assert_eq!(spec.replicas, 5);
    assert!(!spec.storage.delete_on_scale_down);
}

#[tokio::test(start_paused = true)]
async fn scale_down_with_delete_data_sets_the_policy_and_waits_for_it() {
    let mut db = myset("db", 3);
    db.status = Some(status(3, 0, 1, &[0, 1, 2]));
    let kube = api_server(vec![db], vec![]).await;
    let api: Api<MySet> = Api::namespaced(kube.clone(), NS);
    let operator = {
        let api = api.clone();
        tokio::spawn(async move {
            let asked = myset_os::poll_until_async(
                Duration::from_secs(60),
                Duration::from_millis(100),
                || async { api.get("db").await.unwrap().spec.replicas == 2 },
            )
            .await;
            assert!(asked);
            // Two Ready instances but the record not updated yet: not done.
            let mut s = status(2, 0, 1, &[0, 1]);
            s.record = Some(record(3, 0, 1));
            write_status(&api, "db", s).await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            let mut s = status(2, 0, 1, &[0, 1]);
            if let Some(r) = s.record.as_mut() {
                r.delete_data_on_removal = true;
            }
            write_status(&api, "db", s).await;
            tokio::time::Instant::now()
        })
    };
    let started = tokio::time::Instant::now();
    client::scale(&kube, NS, "db", 2, true, Duration::from_secs(60), |_| {})
        .await
        .expect("scaled");
    let recorded = operator.await.unwrap();
    assert!(
        tokio::time::Instant::now() >= recorded && recorded - started >= Duration::from_secs(3),
        "returned only once the record had the new size and policy"
    );
    assert!(
        api.get("db")
            .await
            .unwrap()
            .spec
            .storage
            .delete_on_scale_down
    );
}

#[tokio::test(start_paused = true)]
async fn scale_gives_up_at_its_timeout_with_a_clear_error() {
    let mut db = myset("db", 3);
    db.status = Some(status(3, 0, 1, &[0, 1, 2]));
    let kube = api_server(vec![db], vec![]).await;
    let error = client::scale(&kube, NS, "db", 4, false, Duration::from_secs(30), |_| {})
        .await
        .expect_err("no operator acts");
    let message = format!("{error:#}");
    assert!(
        message.starts_with("not converged after 30s (3 of 4 wanted: db-0: ready"),
        "{message}"
    );
    assert!(message.contains("the operator keeps trying"), "{message}");
    assert!(
        message.contains("kubectl describe myset db -n prod"),
        "{message}"
    );
    assert!(!message.contains('\n'));
}

/// The operator's side of a switchover: waits for the annotation and returns its value.
async fn annotation_asked(api: &Api<MySet>) -> String {
    let value = myset_os::poll_for(
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            let m = api.get("db").await.unwrap();
            Ok::<_, ()>(
                m.metadata
                    .annotations
                    .and_then(|a| a.get(ANNOTATION_SWITCHOVER).cloned()),
            )
        },
    )
    .await;
    value.unwrap().expect("the annotation was set")
}

async fn remove_annotation(api: &Api<MySet>) {
    let patch = serde_json::json!({"metadata": {"annotations": {ANNOTATION_SWITCHOVER: null}}});
    api.patch("db", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn switchover_reports_the_new_primary() {
    let mut db = myset("db", 3);
    db.status = Some(status(3, 0, 4, &[0, 1, 2]));
    let kube = api_server(vec![db], vec![]).await;
    let api: Api<MySet> = Api::namespaced(kube.clone(), NS);
    let operator = {
        let api = api.clone();
        tokio::spawn(async move {
            let asked = annotation_asked(&api).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            write_status(&api, "db", status(3, 2, 5, &[0, 1, 2])).await;
            remove_annotation(&api).await;
            asked
        })
    };
    let done = client::switchover(&kube, NS, "db", Some(2), Duration::from_secs(60))
        .await
        .expect("switched over");
    assert_eq!(operator.await.unwrap(), "2");
    assert_eq!(
        done,
        client::SwitchoverDone {
            name: "db".into(),
            from: 0,
            to: 2,
            term: 5
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_switchover_fails_with_the_operators_reason() {
    let mut db = myset("db", 3);
    db.status = Some(status(3, 0, 4, &[0]));
    // An earlier refusal must not be taken for this one.
    let old = kube_event(
        "db.old",
        "MySet",
        "db",
        UID,
        "switchover-failed",
        "an old refusal",
        1_000,
    );
    let kube = api_server(vec![db], vec![old]).await;
    let api: Api<MySet> = Api::namespaced(kube.clone(), NS);
    let operator = {
        let (api, events) = (api.clone(), Api::<KubeEvent>::namespaced(kube.clone(), NS));
        tokio::spawn(async move {
            let asked = annotation_asked(&api).await;
            remove_annotation(&api).await;
            // The operator publishes its event in the background: after the annotation is gone.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let refusal = kube_event(
                "db.new",
                "MySet",
                "db",
                UID,
                "switchover-failed",
                "switchover asked by myset.dev/switchover-to=\"any\" refused: no Ready replica to promote",
                2_000,
            );
            events
                .create(&PostParams::default(), &refusal)
                .await
                .unwrap();
            asked
        })
    };
    let error = client::switchover(&kube, NS, "db", None, Duration::from_secs(60))
        .await
        .expect_err("refused");
    assert_eq!(operator.await.unwrap(), "any");
    assert_eq!(
        format!("{error:#}"),
        "switchover refused: switchover asked by myset.dev/switchover-to=\"any\" refused: no Ready replica to promote"
    );
}

#[tokio::test(start_paused = true)]
async fn a_switchover_nobody_acts_on_is_withdrawn() {
    let mut db = myset("db", 3);
    db.status = Some(status(3, 0, 4, &[0, 1, 2]));
    let kube = api_server(vec![db], vec![]).await;
    let api: Api<MySet> = Api::namespaced(kube.clone(), NS);
    let error = client::switchover(&kube, NS, "db", Some(1), Duration::from_secs(20))
        .await
        .expect_err("no operator");
    let message = format!("{error:#}");
    assert!(
        message.starts_with(
            "the operator did not act on the switchover within 20s (the request was withdrawn)"
        ),
        "{message}"
    );
    let annotations = api.get("db").await.unwrap().metadata.annotations;
    assert!(!annotations.is_some_and(|a| a.contains_key(ANNOTATION_SWITCHOVER)));
}

#[tokio::test]
async fn a_pending_switchover_is_not_asked_twice() {
    let mut db = myset("db", 3);
    db.metadata.annotations = Some(BTreeMap::from([(
        ANNOTATION_SWITCHOVER.to_string(),
        "1".to_string(),
    )]));
    let kube = api_server(vec![db], vec![]).await;
    let error = client::switchover(&kube, NS, "db", Some(2), Duration::from_secs(20))
        .await
        .expect_err("one at a time");
    assert!(
        format!("{error:#}").contains("already pending"),
        "{error:#}"
    );
}

fn pod(ordinal: u32, role: &str, ready: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("db-{ordinal}")),
            namespace: Some(NS.into()),
            labels: Some(BTreeMap::from([
                ("myset.dev/cluster".to_string(), "db".to_string()),
                ("myset.dev/ordinal".to_string(), ordinal.to_string()),
                ("myset.dev/role".to_string(), role.to_string()),
            ])),
            ..ObjectMeta::default()
        },
        status: Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
        ..Pod::default()
    }
}

#[test]
fn sql_picks_the_pod_to_forward_to() {
    let mut db = myset("db", 3);
    db.status = Some(status(3, 1, 2, &[0, 1]));
    let pods = vec![
        pod(0, "replica", true),
        pod(1, "primary", true),
        pod(2, "replica", false),
    ];
    let target = |t: &str, pick: usize| client::sql_target(&db, &pods, t, |_| pick);

    let rw = target("rw", 0).unwrap();
    assert_eq!(
        (rw.pod.as_str(), rw.what.as_str()),
        ("db-1", "rw (Pod db-1)")
    );
    // ro: among the Ready members only (db-2 is not Ready), as the caller's pick says.
    let mut ro: Vec<String> = (0..4).map(|p| target("ro", p).unwrap().pod).collect();
    ro.sort();
    ro.dedup();
    assert_eq!(ro, vec!["db-0", "db-1"]);
    assert_eq!(target("ro", 0).unwrap().what, "ro (Pod db-0)");
    let two = target("2", 0).unwrap();
    assert_eq!(
        (two.pod.as_str(), two.what.as_str()),
        ("db-2", "instance 2 (Pod db-2)")
    );

    let error = |t: &str, pods: &[Pod]| {
        format!(
            "{:#}",
            client::sql_target(&db, pods, t, |_| 0).expect_err("refused")
        )
    };
    assert_eq!(
        error("7", &pods),
        "instance 7 is not a member of cluster db (members: 0, 1, 2): pick one of those"
    );
    assert_eq!(
        error("primary", &pods),
        "unknown target \"primary\": use rw, ro or an instance ordinal"
    );
    let no_primary = vec![pod(0, "replica", true), pod(2, "replica", false)];
    assert!(error("rw", &no_primary)
        .starts_with("no Pod of cluster db is labelled myset.dev/role=primary"));
    assert!(error("1", &no_primary).starts_with("instance 1 has no Pod now"));
    let none_ready = vec![pod(1, "primary", false)];
    assert!(error("ro", &none_ready).starts_with("no member Pod of cluster db is Ready"));
    // Another cluster's Pods are not candidates.
    let mut foreign = pod(1, "primary", true);
    foreign
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("myset.dev/cluster".into(), "other".into());
    assert!(error("rw", &[foreign]).starts_with("no Pod of cluster db"));
}
