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
    h.edit(patch).await;
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
    h.edit(scale(5)).await;
    h.converge(5).await;
    h.edit(scale(3)).await;
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
    h.edit(edit).await;
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

/// The Galera topology: members and their Pods, ports and rw.
mod galera {
    use super::*;
    use myset_api::{EventKind, Topology};
    use sim::myset_of;

    async fn galera_harness(nodes: usize) -> Harness {
        let h = Harness::with(myset_of(3, Topology::Galera), nodes).await;
        h.converge(3).await;
        h
    }

    /// The member `-rw` selects (the Pod labelled primary), when exactly one is.
    async fn rw_member(h: &Harness) -> Option<u32> {
        match h.labelled_primary().await.as_slice() {
            [one] => one.strip_prefix("db-")?.parse().ok(),
            _ => None,
        }
    }

    fn events(h: &Harness) -> Vec<myset_api::Event> {
        h.operator
            .brain(NAMESPACE, "db")
            .expect("a brain")
            .runtime()
            .events()
    }

    /// Steps until the first event matching `wanted` is recorded, at most `limit`; returns it.
    async fn until_event(
        h: &Harness,
        limit: Duration,
        wanted: impl Fn(&myset_api::Event) -> bool,
    ) -> myset_api::Event {
        let found = || events(h).into_iter().find(|e| wanted(e));
        assert!(
            h.until(limit, || async { found().is_some() }).await,
            "no such event: {:#?}",
            events(h)
        );
        found().expect("found")
    }

    #[tokio::test(start_paused = true)]
    async fn a_galera_myset_runs_writable_members_reachable_on_galeras_ports_with_one_rw_member() {
        let h = galera_harness(3).await;
        let record = h.status().await.record.expect("the record");
        assert_eq!(record.topology, Topology::Galera);
        assert_eq!(
            record.placements[&2].galera,
            Some(myset_operator::render::GALERA_PORTS)
        );
        // Each member's agent is told every member's group-communication address.
        let spec = h.sim.agents.world.agent(1).spec;
        let galera = spec.galera.expect("a Galera spec");
        let members: Vec<String> = galera.members.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            members,
            [
                "db-0.db.default.svc:4567",
                "db-1.db.default.svc:4567",
                "db-2.db.default.svc:4567"
            ]
        );
        // The Pods and the headless Service carry the group-communication, IST and SST ports.
        let pod = h.sim.pods.get("db-1").await.unwrap();
        let ports: Vec<(String, i32)> = pod.spec.unwrap().containers[0]
            .ports
            .clone()
            .unwrap()
            .into_iter()
            .map(|p| (p.name.unwrap(), p.container_port))
            .collect();
        for wanted in [("galera", 4567), ("galera-ist", 4568), ("galera-sst", 4444)] {
            assert!(
                ports.contains(&(wanted.0.to_string(), wanted.1)),
                "{ports:?}"
            );
        }
        let services: Api<Service> = Api::namespaced(h.sim.client.clone(), NAMESPACE);
        let headless = services.get("db").await.unwrap().spec.unwrap();
        let names: Vec<String> = headless
            .ports
            .unwrap()
            .into_iter()
            .filter_map(|p| p.name)
            .collect();
        assert_eq!(
            names,
            ["mysql", "agent", "galera", "galera-ist", "galera-sst"]
        );
        assert_eq!(headless.publish_not_ready_addresses, Some(true));

        // One member for rw; every member takes writes, and each has them all.
        let writer = rw_member(&h).await.expect("one Pod labelled for rw");
        assert_eq!(h.sim.agents.world.galera_write(writer, 5), 5);
        for o in 0..3 {
            assert_eq!(h.sim.agents.world.galera_write(o, 1), 1, "member {o}");
        }
        for o in 0..3 {
            assert_eq!(h.sim.agents.world.agent(o).executed.1, 8);
        }
        let statuses = h.status().await.instances;
        assert_eq!(
            statuses
                .iter()
                .filter(|i| i.role == myset_operator::crd::Role::Primary)
                .map(|i| i.ordinal)
                .collect::<Vec<_>>(),
            [writer],
            "the status names rw's member"
        );
        // `myset --kube status` shows it as the local status does: rw's member and, per
        // member, the wsrep state and component.
        let shown = myset_operator::client::cluster_status(&h.latest().await);
        assert_eq!((shown.topology, shown.primary), (Topology::Galera, writer));
        assert!(
            shown
                .instances
                .iter()
                .all(|i| i.galera.as_ref().is_some_and(|g| {
                    g.state == myset_api::WsrepState::Synced && g.primary_component
                })),
            "{:?}",
            shown.instances
        );

        // rw's member's Pod is deleted: rw moves to another Ready member, and the member
        // comes back into the cluster with every write.
        h.sim
            .pods
            .delete(&format!("db-{writer}"), &Default::default())
            .await
            .unwrap();
        assert!(
            h.until(Duration::from_secs(10), || async {
                rw_member(&h).await.is_some_and(|w| w != writer)
            })
            .await,
            "rw did not move: {:?}",
            h.labelled_primary().await
        );
        h.converge(3).await;
        assert_eq!(h.sim.agents.world.agent(writer).executed.1, 8);
        assert!(h.sim.agents.world.with(|w| w.split_brain.is_empty()));
        assert!(events(&h)
            .iter()
            .all(|e| e.kind != EventKind::GaleraBootstrap));
    }

    /// Every member is lost, the first one earlier than the others (its node stopped
    /// reporting while the other two took writes). The operator reads each member's position
    /// from the agent of a Pod that runs no server, bootstraps the newest, and the others
    /// join it: no acknowledged write is lost.
    #[tokio::test(start_paused = true)]
    async fn after_losing_every_member_the_operator_bootstraps_the_newest_from_positions_the_agents_read(
    ) {
        let h = galera_harness(3).await;
        let world = &h.sim.agents.world;
        let writer = rw_member(&h).await.expect("rw's member");
        assert_eq!(world.galera_write(writer, 5), 5);

        // Member 0's node stops reporting: it is cut off, the two others keep a quorum.
        let n0 = h.sim.node_of("db-0").await.expect("scheduled");
        h.sim.set_node_ready(&n0, false).await;
        assert!(
            h.until(Duration::from_secs(30), || async {
                rw_member(&h).await.is_some_and(|w| w != 0)
            })
            .await,
            "rw did not leave the cut-off member"
        );
        let writer = rw_member(&h).await.unwrap();
        assert_eq!(world.galera_write(writer, 5), 5);
        assert_eq!(world.agent(0).executed.1, 5, "the cut-off member is behind");
        // Its Pod is force-deleted once the node was away for the failover delay (Galera's
        // quorum fences it); its replacement cannot run while the volume's node is away.
        until_event(&h, Duration::from_secs(30), |e| {
            e.kind == EventKind::PodForceDeleted && e.ordinal == Some(0)
        })
        .await;

        // Then the two others are lost at once, and member 0's node comes back.
        for pod in ["db-1", "db-2"] {
            h.sim.pods.delete(pod, &Default::default()).await.unwrap();
        }
        h.sim.set_node_ready(&n0, true).await;
        h.converge(3).await;

        let bootstrap = events(&h)
            .into_iter()
            .find(|e| e.kind == EventKind::GaleraBootstrap)
            .expect("a bootstrap after the outage");
        let chosen = bootstrap.ordinal.expect("the member chosen");
        assert_ne!(
            chosen, 0,
            "the member lost first is never the source: {bootstrap:?}"
        );
        let uuid = sim::fake::GALERA_UUID;
        for position in [format!("0: {uuid}:5"), format!("{chosen}: {uuid}:10")] {
            assert!(
                bootstrap.message.contains(&position),
                "{position} in {bootstrap:?}"
            );
        }
        // The positions came from the members' agents, each in a Pod of its own.
        let reported = h.sim.agents.positions_reported.lock().unwrap().clone();
        let members: std::collections::BTreeSet<u32> = reported.iter().map(|(o, _)| *o).collect();
        assert_eq!(members, [0, 1, 2].into(), "{reported:?}");
        // Every acknowledged write is on every member, and only one component ever formed.
        for o in 0..3 {
            let seqno = world.agent(o).executed.1;
            assert!(
                world.with(|w| w.acked.iter().all(|&s| s <= seqno)),
                "member {o} at {seqno}"
            );
        }
        assert!(world.with(|w| w.split_brain.is_empty()));
        let writer = rw_member(&h).await.expect("rw's member");
        assert_eq!(world.galera_write(writer, 1), 1);
    }

    /// A member's container restarts (its agent died): the new agent waits for a spec rather
    /// than act on its stored one, the operator sees the restart count and starts the member
    /// again as the cluster needs it (joining), and it rejoins with every write.
    #[tokio::test(start_paused = true)]
    async fn a_restarted_container_waits_for_the_operator_and_rejoins() {
        let h = galera_harness(3).await;
        let world = &h.sim.agents.world;
        let writer = rw_member(&h).await.expect("rw's member");
        assert_eq!(world.galera_write(writer, 3), 3);
        let member = (writer + 1) % 3;
        h.sim.restart_container(member).await;
        assert_eq!(
            world.galera_write(writer, 2),
            2,
            "two members keep the quorum"
        );
        // The operator starts it again.
        until_event(&h, Duration::from_secs(30), |e| {
            e.kind == EventKind::AgentRestarted && e.ordinal == Some(member)
        })
        .await;
        // Ready again, as the controller sees it after the restart.
        let restarted_at = events(&h)
            .iter()
            .rposition(|e| e.kind == EventKind::AgentRestarted)
            .unwrap();
        assert!(
            h.until(Duration::from_secs(30), || async {
                events(&h)[restarted_at..]
                    .iter()
                    .any(|e| e.kind == EventKind::Ready && e.ordinal == Some(member))
            })
            .await
        );
        h.converge(3).await;
        let again = world.agent(member);
        assert_eq!(
            again.spec.galera.expect("a Galera spec").start,
            myset_api::GaleraStart::Join
        );
        assert_eq!(again.executed.1, 5, "it rejoined with every write");
        let pod = h.sim.pods.get(&format!("db-{member}")).await.unwrap();
        let delivered = pod.metadata.annotations.unwrap_or_default();
        assert_eq!(
            delivered
                .get(myset_operator::kube_runtime::ANNOTATION_SPEC_DELIVERED)
                .map(String::as_str),
            Some("1"),
            "the delivery is recorded against the restarted container"
        );
        assert!(events(&h)
            .iter()
            .all(|e| e.kind != EventKind::GaleraBootstrap));
    }

    /// Two members' nodes stop reporting and an administrator force-deletes their Pods; the
    /// member left alone has no quorum and is stopped. Its position is the only one that can
    /// be read (the others' volumes are on the nodes that are away), so no bootstrap is
    /// automatic; the `myset.dev/force-bootstrap` annotation makes it bootstrap anyway.
    #[tokio::test(start_paused = true)]
    async fn a_refused_bootstrap_is_forced_by_annotation() {
        use myset_operator::operator::ANNOTATION_FORCE_BOOTSTRAP;
        let h = galera_harness(3).await;
        let world = &h.sim.agents.world;
        let writer = rw_member(&h).await.expect("rw's member");
        assert_eq!(world.galera_write(writer, 5), 5);
        let force = |value: &str| serde_json::json!({"metadata": {"annotations": {ANNOTATION_FORCE_BOOTSTRAP: value}}});
        // Asked while the cluster runs: refused, and the annotation is removed.
        h.edit(force("0")).await;
        h.step().await;
        let annotations = h.latest().await.metadata.annotations.unwrap_or_default();
        assert!(!annotations.contains_key(ANNOTATION_FORCE_BOOTSTRAP));
        assert!(events(&h)
            .iter()
            .any(|e| e.kind == EventKind::SpecRefused && e.message.contains("cluster runs")));

        for member in [1, 2] {
            let node = h.sim.node_of(&format!("db-{member}")).await.unwrap();
            h.sim.set_node_ready(&node, false).await;
            h.sim
                .pods
                .delete(&format!("db-{member}"), &Default::default())
                .await
                .unwrap();
        }
        let refused = until_event(&h, Duration::from_secs(1800), |e| {
            e.kind == EventKind::GaleraBootstrapRefused
        })
        .await;
        assert!(refused.message.contains("db-1"), "{refused:?}");
        assert!(
            refused
                .message
                .contains("kubectl annotate myset db -n default myset.dev/force-bootstrap=ORDINAL"),
            "{refused:?}"
        );
        assert!(events(&h)
            .iter()
            .all(|e| e.kind != EventKind::GaleraBootstrap));

        h.edit(force("0")).await;
        let bootstrap = until_event(&h, Duration::from_secs(1800), |e| {
            e.kind == EventKind::GaleraBootstrap
        })
        .await;
        assert_eq!(bootstrap.ordinal, Some(0));
        assert!(bootstrap.message.contains("forced"), "{bootstrap:?}");
        assert!(events(&h)
            .iter()
            .any(|e| e.kind == EventKind::GaleraForceBootstrapAsked && e.ordinal == Some(0)));
        let annotations = h.latest().await.metadata.annotations.unwrap_or_default();
        assert!(!annotations.contains_key(ANNOTATION_FORCE_BOOTSTRAP));
        assert!(
            h.until(Duration::from_secs(30), || async {
                world.agent(0).galera_primary
            })
            .await,
            "member 0 did not form the cluster: {:#?}",
            events(&h)
        );
        assert_eq!(world.galera_write(0, 1), 1, "member 0 takes writes again");
        // The nodes come back: the others join it, and the force is forgotten.
        for n in ["n0", "n1", "n2"] {
            h.sim.set_node_ready(n, true).await;
        }
        h.converge(3).await;
        let record = h.status().await.record.unwrap();
        assert_eq!(record.galera_force_bootstrap, None);
        for o in 0..3 {
            assert_eq!(world.agent(o).executed.1, 6, "member {o}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn causal_reads_reach_every_members_spec() {
        let h = galera_harness(3).await;
        h.edit(serde_json::json!({"spec": {"causalReads": true}}))
            .await;
        let world = &h.sim.agents.world;
        assert!(
            h.until(Duration::from_secs(10), || async {
                (0..3).all(|o| world.agent(o).spec.galera.is_some_and(|g| g.causal_reads))
            })
            .await
        );
        assert!(h.status().await.record.unwrap().causal_reads);
        // Not for replication: refused in one line naming the field.
        let mut replication = sim::myset(3);
        replication.spec.causal_reads = true;
        let error = myset_operator::validate::validate(&replication).unwrap_err();
        assert_eq!(error.field, "spec.causalReads");
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_of_topology_is_refused_and_nothing_in_that_spec_is_acted_on() {
        let h = Harness::new(3, 4).await;
        h.converge(3).await;
        let edit = serde_json::json!({"spec": {"topology": "galera", "replicas": 4}});
        h.edit(edit).await;
        assert!(
            h.until(Duration::from_secs(10), || async {
                let degraded = h
                    .status()
                    .await
                    .conditions
                    .into_iter()
                    .find(|c| c.type_ == "Degraded");
                degraded.is_some_and(|c| c.status == "True" && c.message.contains("spec.topology"))
            })
            .await,
            "no Degraded condition: {:?}",
            h.status().await.conditions
        );
        let refused: Vec<_> = events(&h)
            .into_iter()
            .filter(|e| e.kind == EventKind::SpecRefused)
            .collect();
        assert_eq!(refused.len(), 1, "one event for one refusal: {refused:?}");
        assert!(
            refused[0].message.contains("created as replication"),
            "{refused:?}"
        );
        let record = h.status().await.record.unwrap();
        assert_eq!(record.topology, Topology::Replication);
        assert_eq!(
            record.replicas, 3,
            "the scale in the refused spec is not acted on"
        );
        assert_eq!(h.sim.pod_names().await, ["db-0", "db-1", "db-2"]);
        let services: Api<Service> = Api::namespaced(h.sim.client.clone(), NAMESPACE);
        let ports = services
            .get("db")
            .await
            .unwrap()
            .spec
            .unwrap()
            .ports
            .unwrap();
        assert_eq!(ports.len(), 2, "no Galera ports: {ports:?}");
        // Back to replication: the refusal ends and the scale is acted on.
        let edit = serde_json::json!({"spec": {"topology": "replication"}});
        h.edit(edit).await;
        h.converge(4).await;
        let degraded = h
            .status()
            .await
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Degraded")
            .unwrap();
        assert_eq!(degraded.status, "False", "{degraded:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn fewer_than_three_galera_members_are_refused_at_creation_and_at_scale_down() {
        let mut two = myset_of(3, Topology::Galera);
        two.spec.replicas = 2;
        let sim = sim::Sim::new(two, 3).await;
        let agents = sim.agents.clone();
        let operator = std::sync::Arc::new(myset_operator::operator::Operator::with_agents(
            sim.client.clone(),
            sim::TIMING,
            move |_| agents.clone(),
        ));
        let latest = sim.mysets.get("db").await.unwrap();
        let error = operator.reconcile(&latest).await.unwrap_err();
        assert!(
            format!("{error:#}").contains("at least 3 members"),
            "{error:#}"
        );
        assert!(sim.pod_names().await.is_empty(), "nothing is created");
        assert!(operator.brain(NAMESPACE, "db").is_none());

        let h = galera_harness(3).await;
        let edit = serde_json::json!({"spec": {"replicas": 2}});
        h.edit(edit).await;
        let latest = h.latest().await;
        let error = h.operator.reconcile(&latest).await.unwrap_err();
        assert!(format!("{error:#}").contains("at least 3 members"));
        let refused: Vec<_> = events(&h)
            .into_iter()
            .filter(|e| e.kind == EventKind::SpecRefused)
            .collect();
        assert!(
            refused.len() == 1 && refused[0].message.contains("spec.replicas"),
            "{refused:?}"
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            h.operator.brain(NAMESPACE, "db").unwrap().state().replicas,
            3
        );
        assert_eq!(h.sim.pod_names().await, ["db-0", "db-1", "db-2"]);
    }
}
