//! Rendering tests: what `render` makes of a `MySet`, without any API server.

use crate::crd::{MySet, MySetStatus, OrdinalScheduling};
use crate::render::{names, Object, LABEL_CLUSTER, LABEL_ORDINAL, LABEL_ROLE};
use crate::{crd_yaml, parse_manifest, render, to_yaml_stream, ManifestError, CRD_COMMAND};
use k8s_openapi::api::core::v1::{Pod, Secret, Service, Toleration};
use myset_api::Secrets;
use std::collections::BTreeMap;

const EXAMPLE: &str = include_str!("../../../deploy/example-myset.yaml");

fn secrets() -> Secrets {
    Secrets {
        admin_user: "myset_admin".into(),
        admin_password: "admin-pw".into(),
        repl_user: "myset_repl".into(),
        repl_password: "repl-pw".into(),
        user: "myset".into(),
        user_password: "user-pw".into(),
        api_token: "token".into(),
    }
}

fn myset(replicas: u32) -> MySet {
    let text = format!(
        "apiVersion: myset.dev/v1alpha1\nkind: MySet\nmetadata: {{name: db, namespace: prod, uid: u-1234}}\n\
         spec: {{replicas: {replicas}, image: 'myset:1', storage: {{size: 5Gi, storageClassName: local}}}}\n"
    );
    parse_manifest(&text).unwrap()
}

fn pods(objects: &[Object]) -> Vec<&Pod> {
    objects
        .iter()
        .filter_map(|o| match o {
            Object::Pod(p) => Some(p),
            _ => None,
        })
        .collect()
}

fn service<'a>(objects: &'a [Object], name: &str) -> &'a Service {
    objects
        .iter()
        .find_map(|o| match o {
            Object::Service(s) if s.metadata.name.as_deref() == Some(name) => Some(s),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no Service {name}"))
}

fn secret<'a>(objects: &'a [Object], name: &str) -> &'a Secret {
    objects
        .iter()
        .find_map(|o| match o {
            Object::Secret(s) if s.metadata.name.as_deref() == Some(name) => Some(s),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no Secret {name}"))
}

fn labels(pod: &Pod) -> &BTreeMap<String, String> {
    pod.metadata.labels.as_ref().unwrap()
}

#[test]
fn committed_crd_is_current() {
    let committed = include_str!("../../../deploy/crd.yaml");
    assert!(
        committed == crd_yaml(),
        "deploy/crd.yaml differs from the CRD generated from crates/operator/src/crd.rs; run `{CRD_COMMAND}`"
    );
}

#[test]
fn three_replicas_make_three_pods_and_three_pvcs_and_no_statefulset() {
    let objects = render(&myset(3), &secrets()).unwrap();
    let count = |kind: &str| objects.iter().filter(|o| o.kind() == kind).count();
    assert_eq!(count("Pod"), 3);
    assert_eq!(count("PersistentVolumeClaim"), 3);
    assert_eq!(count("Service"), 3);
    assert_eq!(count("PodDisruptionBudget"), 1);
    assert_eq!(count("Secret"), 2);
    let yaml = to_yaml_stream(&objects).unwrap();
    assert!(!yaml.contains("StatefulSet"));
    assert_eq!(yaml.matches("\n---\n").count() + 1, objects.len());
    let names: Vec<&str> = objects.iter().map(|o| o.name()).collect();
    for expected in [
        "db-0",
        "db-1",
        "db-2",
        "db-0-data",
        "db-1-data",
        "db-2-data",
        "db",
        "db-rw",
        "db-ro",
        "db-agent",
        "db-user",
        "db-config",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    for o in &objects {
        assert_eq!(
            o.metadata().namespace.as_deref(),
            Some("prod"),
            "{}",
            o.name()
        );
    }
}

#[test]
fn pods_are_labelled_with_cluster_ordinal_and_role_and_mount_their_own_pvc() {
    let objects = render(&myset(3), &secrets()).unwrap();
    for (ordinal, pod) in pods(&objects).into_iter().enumerate() {
        let l = labels(pod);
        assert_eq!(
            pod.metadata.name.as_deref(),
            Some(&*format!("db-{ordinal}"))
        );
        assert_eq!(l[LABEL_CLUSTER], "db");
        assert_eq!(l[LABEL_ORDINAL], ordinal.to_string());
        let role = if ordinal == 0 { "primary" } else { "replica" };
        assert_eq!(l[LABEL_ROLE], role);
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some(&*format!("db-{ordinal}")));
        assert_eq!(spec.subdomain.as_deref(), Some("db"));
        let claim = spec
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find_map(|v| v.persistent_volume_claim.as_ref())
            .unwrap();
        assert_eq!(claim.claim_name, format!("db-{ordinal}-data"));
    }
}

#[test]
fn the_recorded_primary_gets_the_primary_label() {
    let mut m = myset(3);
    m.status = Some(MySetStatus {
        primary: Some(2),
        term: 4,
        ..MySetStatus::default()
    });
    let objects = render(&m, &secrets()).unwrap();
    let roles: Vec<&str> = pods(&objects)
        .iter()
        .map(|p| labels(p)[LABEL_ROLE].as_str())
        .collect();
    assert_eq!(roles, ["replica", "replica", "primary"]);
    // A primary outside the set is refused rather than silently moved.
    m.status.as_mut().unwrap().primary = Some(3);
    let e = render(&m, &secrets()).unwrap_err();
    assert_eq!(e.field, "status.primary");
}

#[test]
fn every_pod_has_startup_readiness_and_liveness_probes_on_the_probe_port() {
    let objects = render(&myset(3), &secrets()).unwrap();
    for pod in pods(&objects) {
        let c = &pod.spec.as_ref().unwrap().containers[0];
        let path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
            let get = p.as_ref().unwrap().http_get.as_ref().unwrap();
            assert_eq!(
                get.port,
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("probes".into())
            );
            get.path.clone().unwrap()
        };
        assert_eq!(path(&c.startup_probe), "/healthz");
        assert_eq!(path(&c.readiness_probe), "/readyz");
        assert_eq!(path(&c.liveness_probe), "/healthz");
        let startup = c.startup_probe.as_ref().unwrap();
        let budget = startup.period_seconds.unwrap() * startup.failure_threshold.unwrap();
        assert!(
            budget >= 12 * 3600,
            "startup budget {budget} s is short for a clone"
        );
        // The agent is PID 1: no shell around it.
        let command = c.command.as_ref().unwrap();
        assert_eq!(command[..2], ["myset", "agent"]);
        // It waits for its spec from the operator, as this member, and serves the probes
        // on the port they go to.
        let flag = |name: &str| {
            let at = command.iter().position(|a| a == name);
            at.map(|i| command.get(i + 1).cloned().unwrap_or_default())
        };
        assert!(command.iter().any(|a| a == "--await-spec"));
        assert_eq!(flag("--cluster").as_deref(), Some("db"));
        let ordinal = &pod.metadata.labels.as_ref().unwrap()[crate::render::LABEL_ORDINAL];
        assert_eq!(flag("--ordinal").as_ref(), Some(ordinal));
        assert_eq!(
            flag("--probe-listen"),
            Some(format!("0.0.0.0:{}", crate::render::PROBE_PORT))
        );
        assert_eq!(
            flag("--listen"),
            Some(format!("0.0.0.0:{}", crate::render::AGENT_PORT))
        );
        assert_eq!(
            flag("--server-options-dir").as_deref(),
            Some(crate::render::SERVER_CONFIG_DIR)
        );
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        let psc = pod
            .spec
            .as_ref()
            .unwrap()
            .security_context
            .as_ref()
            .unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert!(psc.run_as_user.unwrap() > 0);
        let mounts: Vec<&str> = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.mount_path.as_str())
            .collect();
        for path in ["/var/lib/myset", "/run", "/tmp", "/etc/myset/secrets"] {
            assert!(mounts.contains(&path), "{path} not mounted");
        }
        // Probe headers would expose the token to anyone who can read Pods.
        let yaml = serde_norway::to_string(pod).unwrap();
        assert!(!yaml.contains("token"), "the Pod spec mentions the token");
        assert!(!yaml.contains("httpHeaders"));
    }
}

#[test]
fn every_object_is_owned_by_the_myset() {
    let objects = render(&myset(2), &secrets()).unwrap();
    for o in &objects {
        let owners = o.metadata().owner_references.as_ref().unwrap();
        assert_eq!(owners.len(), 1, "{}", o.name());
        let owner = &owners[0];
        assert_eq!(owner.api_version, "myset.dev/v1alpha1");
        assert_eq!(owner.kind, "MySet");
        assert_eq!(owner.name, "db");
        assert_eq!(owner.uid, "u-1234");
        assert_eq!(owner.controller, Some(true));
    }
}

#[test]
fn a_myset_without_a_uid_is_not_rendered() {
    let mut m = myset(1);
    m.metadata.uid = None;
    assert_eq!(render(&m, &secrets()).unwrap_err().field, "metadata.uid");
}

#[test]
fn services_select_the_primary_every_member_and_every_member_for_dns() {
    let objects = render(&myset(3), &secrets()).unwrap();
    let selector = |name: &str| {
        service(&objects, name)
            .spec
            .as_ref()
            .unwrap()
            .selector
            .clone()
            .unwrap()
    };
    let rw = selector("db-rw");
    assert_eq!(rw[LABEL_ROLE], "primary");
    assert_eq!(rw[LABEL_CLUSTER], "db");
    let ro = selector("db-ro");
    assert_eq!(ro, BTreeMap::from([(LABEL_CLUSTER.into(), "db".into())]));
    let headless = service(&objects, "db").spec.as_ref().unwrap();
    assert_eq!(headless.cluster_ip.as_deref(), Some("None"));
    assert_eq!(headless.publish_not_ready_addresses, Some(true));
    assert_eq!(selector("db"), ro);
    // Every Pod matches ro; exactly one matches rw.
    let matches = |sel: &BTreeMap<String, String>, pod: &Pod| {
        sel.iter().all(|(k, v)| labels(pod).get(k) == Some(v))
    };
    assert_eq!(pods(&objects).iter().filter(|p| matches(&rw, p)).count(), 1);
    assert_eq!(pods(&objects).iter().filter(|p| matches(&ro, p)).count(), 3);
}

#[test]
fn secrets_hold_every_credential_and_nothing_empty() {
    let s = secrets();
    let objects = render(&myset(1), &s).unwrap();
    let agent = secret(&objects, &names::agent_secret("db"));
    let data = agent.data.as_ref().unwrap();
    let file: Secrets = serde_json::from_slice(&data["secrets.json"].0).unwrap();
    assert_eq!(file, s);
    let json: serde_json::Value = serde_json::from_slice(&data["secrets.json"].0).unwrap();
    for key in [
        "admin_user",
        "admin_password",
        "repl_user",
        "repl_password",
        "user",
        "user_password",
        "api_token",
    ] {
        assert!(
            json[key].as_str().is_some_and(|v| !v.is_empty()),
            "{key} missing or empty"
        );
    }
    let user = secret(&objects, &names::user_secret("db"));
    assert_eq!(user.type_.as_deref(), Some("kubernetes.io/basic-auth"));
    let data = user.data.as_ref().unwrap();
    assert_eq!(data["username"].0, b"myset");
    assert_eq!(data["password"].0, b"user-pw");
    for o in &objects {
        if let Object::Secret(sec) = o {
            for (k, v) in sec.data.as_ref().unwrap() {
                assert!(!v.0.is_empty(), "{}/{k} is empty", o.name());
            }
        }
    }
}

#[test]
fn generated_credentials_are_distinct_and_not_empty() {
    let a = crate::generate_credentials();
    let b = crate::generate_credentials();
    for v in [
        &a.admin_password,
        &a.repl_password,
        &a.user_password,
        &a.api_token,
    ] {
        assert!(v.len() >= 32);
    }
    assert_ne!(a.api_token, b.api_token);
    assert_ne!(a.admin_password, a.user_password);
}

fn toleration(key: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        ..Toleration::default()
    }
}

#[test]
fn the_per_ordinal_override_is_merged_over_the_common_scheduling() {
    use k8s_openapi::api::core::v1::{
        Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    };
    let mut m = myset(3);
    let sched = &mut m.spec.scheduling;
    sched.node_selector = Some(BTreeMap::from([
        ("disk".into(), "ssd".into()),
        ("zone".into(), "a".into()),
    ]));
    sched.tolerations = Some(vec![toleration("common")]);
    let pinned = Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: "kubernetes.io/hostname".into(),
                        operator: "In".into(),
                        values: Some(vec!["node-7".into()]),
                    }]),
                    ..NodeSelectorTerm::default()
                }],
            }),
            ..NodeAffinity::default()
        }),
        ..Affinity::default()
    };
    sched.ordinals = vec![OrdinalScheduling {
        ordinal: 1,
        node_selector: Some(BTreeMap::from([("zone".into(), "b".into())])),
        affinity: Some(pinned.clone()),
        tolerations: Some(vec![toleration("local-disk"), toleration("common")]),
    }];
    let objects = render(&m, &secrets()).unwrap();
    let pods = pods(&objects);
    let spec = |o: usize| pods[o].spec.as_ref().unwrap();
    // Ordinals 0 and 2: the common settings alone.
    for o in [0, 2] {
        assert_eq!(spec(o).node_selector.as_ref().unwrap()["zone"], "a");
        assert_eq!(spec(o).tolerations.as_ref().unwrap().len(), 1);
        assert!(spec(o).affinity.as_ref().unwrap().node_affinity.is_none());
    }
    // Ordinal 1: zone overridden, disk kept, its node affinity, tolerations added once.
    let one = spec(1);
    assert_eq!(
        one.node_selector.as_ref().unwrap(),
        &BTreeMap::from([("disk".into(), "ssd".into()), ("zone".into(), "b".into())])
    );
    let affinity = one.affinity.as_ref().unwrap();
    assert_eq!(affinity.node_affinity, pinned.node_affinity);
    assert!(
        affinity.pod_anti_affinity.is_some(),
        "spreading kept by default"
    );
    let keys: Vec<&str> = one
        .tolerations
        .as_ref()
        .unwrap()
        .iter()
        .map(|t| t.key.as_deref().unwrap())
        .collect();
    assert_eq!(keys, ["common", "local-disk"]);
}

#[test]
fn pvcs_carry_the_size_and_class() {
    let objects = render(&myset(2), &secrets()).unwrap();
    for o in &objects {
        if let Object::PersistentVolumeClaim(pvc) = o {
            let spec = pvc.spec.as_ref().unwrap();
            assert_eq!(spec.storage_class_name.as_deref(), Some("local"));
            let requests = spec.resources.as_ref().unwrap().requests.as_ref().unwrap();
            assert_eq!(requests["storage"].0, "5Gi");
            assert_eq!(spec.access_modes.as_ref().unwrap(), &["ReadWriteOnce"]);
        }
    }
}

#[test]
fn the_pdb_allows_one_disruption() {
    let objects = render(&myset(3), &secrets()).unwrap();
    let pdb = objects
        .iter()
        .find_map(|o| match o {
            Object::PodDisruptionBudget(p) => Some(p),
            _ => None,
        })
        .unwrap();
    let spec = pdb.spec.as_ref().unwrap();
    assert_eq!(
        spec.max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    assert_eq!(
        spec.selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()[LABEL_CLUSTER],
        "db"
    );
}

#[test]
fn server_settings_land_in_the_role_files() {
    let mut m = parse_manifest(EXAMPLE).unwrap();
    m.metadata.uid = Some("u".into());
    let objects = render(&m, &secrets()).unwrap();
    let config = objects
        .iter()
        .find_map(|o| match o {
            Object::ConfigMap(c) => c.data.clone(),
            _ => None,
        })
        .unwrap();
    assert!(config["all.cnf"].contains("[mariadbd]\ninnodb-buffer-pool-size = 256M\n"));
    assert!(config["replica.cnf"].contains("slave-parallel-threads = 4\n"));
    assert!(!config["primary.cnf"].contains(" = "));
}

#[test]
fn the_example_has_three_instances() {
    let m = parse_manifest(EXAMPLE).unwrap();
    assert_eq!(m.spec.replicas, 3);
    assert_eq!(m.metadata.name.as_deref(), Some("demo"));
}

#[test]
fn bad_manifests_get_one_clear_line() {
    let base = "apiVersion: myset.dev/v1alpha1\nkind: MySet\nmetadata: {name: db}\n";
    let spec = "spec: {replicas: 3, image: x, storage: {size: 1Gi}}\n";
    let cases: &[(String, &str)] = &[
        ("{".into(), "not YAML"),
        (String::new(), "found 0 documents"),
        (format!("{base}{spec}---\n{base}{spec}"), "found 2 documents"),
        (
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: x}\n".into(),
            "not a MySet",
        ),
        (format!("{base}spec: {{image: x}}\n"), "missing field"),
        (
            format!("{base}spec: {{replicas: 0, image: x, storage: {{size: 1Gi}}}}\n"),
            "spec.replicas: 0 is outside 1 to 64",
        ),
        (
            format!("{base}spec: {{replicas: 65, image: x, storage: {{size: 1Gi}}}}\n"),
            "spec.replicas",
        ),
        (
            format!("{base}spec: {{replicas: -1, image: x, storage: {{size: 1Gi}}}}\n"),
            "invalid MySet",
        ),
        (
            format!("{base}spec: {{replicas: 1, image: x, storage: {{size: lots}}}}\n"),
            "spec.storage.size",
        ),
        (
            format!(
                "{base}spec: {{replicas: 1, image: x, storage: {{size: 1Gi}}, server: {{all: {{server-id: '9'}}}}}}\n"
            ),
            "managed by myset",
        ),
        (
            format!(
                "{base}spec: {{replicas: 1, image: x, storage: {{size: 1Gi}}, server: {{primary: {{'a b': '1'}}}}}}\n"
            ),
            "not an option name",
        ),
        (
            "apiVersion: myset.dev/v1alpha1\nkind: MySet\nmetadata: {name: Bad_Name}\nspec: {replicas: 1, image: x, storage: {size: 1Gi}}\n".into(),
            "metadata.name",
        ),
        (
            format!(
                "{base}spec: {{replicas: 2, image: x, storage: {{size: 1Gi}}, scheduling: {{ordinals: [{{ordinal: 1}}, {{ordinal: 1}}]}}}}\n"
            ),
            "appears twice",
        ),
    ];
    for (text, expected) in cases {
        let e: ManifestError = parse_manifest(text).unwrap_err();
        let message = e.to_string();
        assert!(
            message.contains(expected),
            "{text:?}: {message:?} lacks {expected:?}"
        );
        assert!(!message.contains('\n'), "{message:?} spans lines");
    }
}

#[test]
fn rbac_has_no_wildcards_and_covers_what_the_operator_manages() {
    use serde::Deserialize;
    let text = include_str!("../../../deploy/rbac.yaml");
    let mut granted = Vec::new();
    for document in serde_norway::Deserializer::from_str(text) {
        let doc = serde_norway::Value::deserialize(document).unwrap();
        let Some(rules) = doc.get("rules").and_then(|r| r.as_sequence()) else {
            continue;
        };
        for rule in rules {
            let list = |key: &str| -> Vec<String> {
                rule[key]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect()
            };
            for key in ["apiGroups", "resources", "verbs"] {
                assert!(
                    !list(key).iter().any(|v| v.contains('*')),
                    "wildcard in {key}: {rule:?}"
                );
            }
            assert!(rule.get("nonResourceURLs").is_none());
            for resource in list("resources") {
                granted.push(resource);
            }
        }
    }
    for needed in [
        "mysets",
        "mysets/status",
        "pods",
        "persistentvolumeclaims",
        "services",
        "secrets",
        "configmaps",
        "poddisruptionbudgets",
        "events",
        "leases",
        "nodes",
    ] {
        assert!(granted.iter().any(|g| g == needed), "{needed} not granted");
    }
}
