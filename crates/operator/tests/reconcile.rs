//! The operator against a mocked API server (kube-fake-client) with simulated nodes, kubelets
//! and agents (see `sim`): the real reconcile, the real Kubernetes runtime and the real
//! shared controller, on tokio's paused clock, so minutes of cluster life take milliseconds.

mod sim;

use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{Api, Patch, PatchParams};
use myset_operator::operator::ANNOTATION_SWITCHOVER;
use myset_operator::record::{StatusError, StatusStore};
use sim::{myset, Harness, Sim, NAMESPACE};
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn a_new_myset_gets_secrets_services_pods_and_a_recorded_primary() {
    let h = Harness::new(3, 3).await;
    h.converge(3).await;
    assert_eq!(h.sim.pod_names().await, ["db-0", "db-1", "db-2"]);
    assert_eq!(
        h.sim.pvc_names().await,
        ["db-0-data", "db-1-data", "db-2-data"]
    );
    assert_eq!(h.labelled_primary().await, ["db-0"]);
    let status = h.status().await;
    assert_eq!(status.primary, Some(0));
    let record = status.record.expect("the record in the status");
    assert_eq!(record.members, [0, 1, 2].into());
    assert_eq!(
        record.placements[&1].server.host, "db-1.db.default.svc",
        "members are reached by their stable DNS names"
    );
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("a Ready condition");
    assert_eq!(ready.status, "True", "{ready:?}");

    // The Secrets are generated once: another reconcile keeps them.
    let secrets: Api<Secret> = Api::namespaced(h.sim.client.clone(), NAMESPACE);
    let before = secrets.get("db-agent").await.unwrap().data;
    h.step().await;
    assert_eq!(secrets.get("db-agent").await.unwrap().data, before);
    let services: Api<Service> = Api::namespaced(h.sim.client.clone(), NAMESPACE);
    let rw = services.get("db-rw").await.unwrap();
    let selector = rw.spec.unwrap().selector.unwrap();
    assert_eq!(
        selector.get("myset.dev/role").map(String::as_str),
        Some("primary")
    );
    assert!(services.get("db-ro").await.is_ok() && services.get("db").await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_deleted_pod_comes_back_with_its_volume_and_data() {
    let h = Harness::new(3, 3).await;
    h.converge(3).await;
    assert!(h.write(5) > 0);
    let node = h.sim.node_of("db-2").await;
    h.sim
        .pods
        .delete("db-2", &Default::default())
        .await
        .expect("delete the Pod");
    assert!(
        h.until(Duration::from_secs(60), || async {
            h.sim.pod_names().await.contains(&"db-2".to_string()) && h.all_ready(3).await
        })
        .await
    );
    assert_eq!(
        h.sim.node_of("db-2").await,
        node,
        "back on its volume's node"
    );
    assert_eq!(h.primary(), 0, "a replica's Pod changes no primary");
    assert!(h.no_write_lost());
}

#[tokio::test(start_paused = true)]
async fn a_node_that_stops_reporting_fails_the_primary_over_and_its_pod_is_force_deleted_once_fenced(
) {
    let h = Harness::new(3, 4).await;
    h.converge(3).await;
    assert!(h.write(10) > 0);
    let node = h.sim.node_of("db-0").await.expect("scheduled");
    h.sim.set_node_ready(&node, false).await;
    assert!(
        h.until(Duration::from_secs(60), || async {
            h.primary() != 0 && h.labelled_primary().await == [format!("db-{}", h.primary())]
        })
        .await,
        "no failover: {:#?}",
        h.operator
            .brain(NAMESPACE, "db")
            .unwrap()
            .runtime()
            .events()
    );
    let status = h.status().await;
    assert_eq!(
        status.primary,
        Some(h.primary()),
        "the status follows the record"
    );
    assert!(status.term > 1);
    assert!(h.no_write_lost(), "no acknowledged write lost");
    assert_eq!(
        h.sim.agents.world.write_on(0, 1, true),
        0,
        "the cut-off old primary can acknowledge nothing: its replicas are fenced"
    );
    // The old primary's Pod was force-deleted once fenced; it stays Pending while its local
    // volume's node is away, and rejoins when the node comes back.
    let brain = h.operator.brain(NAMESPACE, "db").unwrap();
    assert!(
        h.until(Duration::from_secs(30), || async {
            brain
                .runtime()
                .events()
                .iter()
                .any(|e| e.kind == myset_api::EventKind::PodForceDeleted)
        })
        .await
    );
    h.sim.set_node_ready(&node, true).await;
    h.converge(3).await;
    // The write the old primary took alone (above) diverged it: its data was set aside on
    // its volume and it re-cloned.
    let errant = brain
        .runtime()
        .events()
        .into_iter()
        .find(|e| e.kind == myset_api::EventKind::Errant && e.ordinal == Some(0))
        .expect("the diverged former primary is reported");
    assert!(errant.message.contains("set aside at data."), "{errant:?}");
    assert!(h.write(5) > 0);
    assert!(h.no_write_lost());
}

#[tokio::test(start_paused = true)]
async fn draining_the_primarys_node_switches_over_first() {
    let h = Harness::new(3, 3).await;
    h.converge(3).await;
    let node = h.sim.node_of("db-0").await.expect("scheduled");
    h.sim.cordon(&node).await;
    assert!(
        h.until(Duration::from_secs(30), || async { h.primary() != 0 })
            .await
    );
    let new_node = h.sim.node_of(&format!("db-{}", h.primary())).await;
    assert_ne!(new_node.as_deref(), Some(node.as_str()));
    let change = h.status().await.last_primary_change.expect("recorded");
    assert_eq!(change.kind, myset_api::ChangeKind::Switchover);
    assert!(h.no_write_lost());
}

#[tokio::test(start_paused = true)]
async fn a_switchover_is_asked_with_an_annotation_and_the_annotation_is_removed() {
    let h = Harness::new(3, 3).await;
    h.converge(3).await;
    let patch = serde_json::json!({"metadata": {"annotations": {ANNOTATION_SWITCHOVER: "2"}}});
    h.sim
        .mysets
        .patch("db", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert!(
        h.until(Duration::from_secs(30), || async { h.primary() == 2 })
            .await
    );
    let annotations = h.latest().await.metadata.annotations.unwrap_or_default();
    assert!(!annotations.contains_key(ANNOTATION_SWITCHOVER));
    assert!(
        h.until(Duration::from_secs(10), || async {
            h.labelled_primary().await == ["db-2"]
        })
        .await
    );
}

#[tokio::test(start_paused = true)]
async fn scaling_up_and_down_keeps_the_volumes() {
    let h = Harness::new(3, 5).await;
    h.converge(3).await;
    let scale = |n: u32| serde_json::json!({"spec": {"replicas": n}});
    h.sim
        .mysets
        .patch("db", &PatchParams::default(), &Patch::Merge(&scale(5)))
        .await
        .unwrap();
    h.converge(5).await;
    h.sim
        .mysets
        .patch("db", &PatchParams::default(), &Patch::Merge(&scale(3)))
        .await
        .unwrap();
    assert!(
        h.until(Duration::from_secs(120), || async {
            h.sim.pod_names().await == ["db-0", "db-1", "db-2"] && h.all_ready(3).await
        })
        .await,
        "{:?}",
        h.sim.pod_names().await
    );
    assert_eq!(
        h.sim.pvc_names().await,
        [
            "db-0-data",
            "db-1-data",
            "db-2-data",
            "db-3-data",
            "db-4-data"
        ],
        "scale-down keeps the PVCs, as the tutorial shows"
    );
}

#[tokio::test(start_paused = true)]
async fn a_member_whose_node_is_lost_with_its_volume_is_rebuilt_elsewhere() {
    let h = Harness::new(3, 4).await;
    h.converge(3).await;
    let node = h.sim.node_of("db-2").await.expect("scheduled");
    h.sim
        .nodes
        .delete(&node, &Default::default())
        .await
        .unwrap();
    assert!(
        h.until(Duration::from_secs(180), || async {
            let moved = h.sim.node_of("db-2").await.is_some_and(|n| n != node);
            moved && h.all_ready(3).await
        })
        .await,
        "not rebuilt: {:?}",
        h.operator
            .brain(NAMESPACE, "db")
            .unwrap()
            .runtime()
            .events()
    );
    let events = h
        .operator
        .brain(NAMESPACE, "db")
        .unwrap()
        .runtime()
        .events();
    assert!(events
        .iter()
        .any(|e| e.kind == myset_api::EventKind::MemberRebuilt && e.ordinal == Some(2)));
}

#[tokio::test(start_paused = true)]
async fn a_record_written_by_another_operator_stops_this_one_from_acting() {
    let sim = Sim::new(myset(3), 1).await;
    let first = sim.mysets.get("db").await.unwrap();
    let ours = StatusStore::new(sim.mysets.clone(), first.clone());
    let theirs = StatusStore::new(sim.mysets.clone(), first);
    let mut record = myset_operator::operator::initial_record(&myset(3));
    ours.save_record(&record).await.expect("the first write");
    // A spec edit changes the resource version but not the record: our next write retries.
    let scale = serde_json::json!({"spec": {"replicas": 4}});
    sim.mysets
        .patch("db", &PatchParams::default(), &Patch::Merge(&scale))
        .await
        .unwrap();
    record.term = 2;
    ours.save_record(&record)
        .await
        .expect("retried past a spec edit");
    // Another writer that did not see our record conflicts and learns it is stale.
    let mut stale = record.clone();
    stale.term = 3;
    stale.primary = 1;
    match theirs.save_record(&stale).await {
        Err(StatusError::Superseded { ours, theirs, .. }) => {
            assert_eq!((ours, theirs), (0, 2));
        }
        other => panic!("expected Superseded, got {other:?}"),
    }
    let stored = sim.mysets.get("db").await.unwrap().status.unwrap();
    assert_eq!(stored.term, 2);
    assert_eq!(stored.record.unwrap().term, 2);
}

#[tokio::test(start_paused = true)]
async fn a_deleted_myset_stops_its_brain_and_one_created_again_gets_a_new_one() {
    let h = Harness::new(3, 3).await;
    h.converge(3).await;
    let first = h.operator.brain(NAMESPACE, "db").expect("a brain");
    h.sim
        .mysets
        .delete("db", &Default::default())
        .await
        .expect("delete the MySet");
    // Its Pods go with it (owner references); its brain notices and stops.
    assert!(
        myset_os::poll_until_async(Duration::from_secs(30), Duration::from_millis(500), || {
            async { h.operator.brain(NAMESPACE, "db").is_none() }
        })
        .await,
        "the brain of a deleted MySet kept running"
    );
    let mut again = myset(3);
    again.metadata.uid = Some("6c1c3a52-0000-4000-8000-000000000002".into());
    h.sim
        .mysets
        .create(&Default::default(), &again)
        .await
        .expect("create it again");
    h.converge(3).await;
    let second = h.operator.brain(NAMESPACE, "db").expect("a new brain");
    assert!(!std::sync::Arc::ptr_eq(&first, &second));
    assert_eq!(h.status().await.primary, Some(0));
}

#[tokio::test(start_paused = true)]
async fn durability_and_failover_delay_edits_reach_the_members() {
    let h = Harness::new(3, 3).await;
    h.converge(3).await;
    let edit = serde_json::json!({"spec": {"durability": "async", "failoverDelaySeconds": 7}});
    h.sim
        .mysets
        .patch("db", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .unwrap();
    assert!(
        h.until(Duration::from_secs(30), || async {
            let primary = h.sim.agents.world.agent(h.primary());
            !primary.spec.semisync && primary.spec.isolation_fence_ms == 7000
        })
        .await,
        "the primary's spec did not follow the edit"
    );
    let record = h.status().await.record.unwrap();
    assert_eq!(record.durability, myset_api::Durability::Async);
    assert_eq!(record.failover_delay_ms, 7000);
}
