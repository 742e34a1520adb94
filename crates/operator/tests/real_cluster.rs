//! The operator on a real Kubernetes cluster (kind or k3d). Ignored by default: no API server
//! can run on the machines CI uses. With a cluster at hand:
//!
//! ```text
//! kind create cluster --name myset
//! deploy/image/build                                   # builds localhost/myset:dev
//! podman save localhost/myset:dev -o /tmp/myset.tar && kind load image-archive /tmp/myset.tar --name myset
//! sed 's|image: myset:latest|image: localhost/myset:dev|' deploy/operator.yaml > /tmp/operator.yaml
//! kubectl apply -f deploy/crd.yaml -f deploy/rbac.yaml -f /tmp/operator.yaml
//! MYSET_E2E_IMAGE=localhost/myset:dev cargo test -p myset-operator --test real_cluster -- --ignored --nocapture
//! ```
//!
//! It uses the current kubeconfig, works in a namespace of its own (deleted at the end, also
//! on failure), and follows the tutorial: three members Ready with one primary behind `-rw`,
//! a deleted Pod back with its PVC, a switchover, scale 3→5→3 keeping the PVCs.

use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use myset_operator::MySet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(600);

/// Deletes the test's namespace when dropped, whatever happened.
struct Scratch {
    namespaces: Api<Namespace>,
    name: String,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let (api, name) = (self.namespaces.clone(), self.name.clone());
        let done = std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .expect("a runtime")
                .block_on(async { api.delete(&name, &DeleteParams::default()).await })
        });
        let _ = done.join();
    }
}

async fn until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let reached = myset_os::poll_until_async(WAIT, Duration::from_secs(2), &mut done).await;
    assert!(reached, "gave up after {WAIT:?} waiting for: {what}");
}

fn myset(namespace: &str, image: &str) -> MySet {
    let text = format!(
        "apiVersion: myset.dev/v1alpha1
kind: MySet
metadata:
  name: e2e
  namespace: {namespace}
spec:
  replicas: 3
  image: {image}
  storage:
    size: 1Gi
"
    );
    myset_operator::parse_manifest(&text).expect("a valid MySet")
}

async fn ready(mysets: &Api<MySet>, n: usize) -> bool {
    let Ok(m) = mysets.get("e2e").await else {
        return false;
    };
    let status = m.status.unwrap_or_default();
    status.instances.len() == n
        && status.instances.iter().all(|i| i.ready)
        && status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

async fn names<K>(api: &Api<K>) -> Vec<String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut names: Vec<String> = api
        .list(&ListParams::default().labels("myset.dev/cluster=e2e"))
        .await
        .map(|l| {
            l.items
                .into_iter()
                .filter_map(|o| o.meta().name.clone())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

async fn primary_pods(pods: &Api<Pod>) -> Vec<String> {
    let selector = ListParams::default().labels("myset.dev/cluster=e2e,myset.dev/role=primary");
    pods.list(&selector)
        .await
        .map(|l| {
            l.items
                .into_iter()
                .filter_map(|p| p.metadata.name)
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
#[ignore = "needs a Kubernetes cluster with the operator installed; see the file's doc"]
async fn the_tutorial_on_a_real_cluster() {
    let image = std::env::var("MYSET_E2E_IMAGE").expect("MYSET_E2E_IMAGE names the myset image");
    let client = kube::Client::try_default().await.expect("a kubeconfig");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let name = format!("myset-e2e-{}", std::process::id());
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            },
        )
        .await
        .expect("create the test namespace");
    let _scratch = Scratch {
        namespaces,
        name: name.clone(),
    };
    let mysets: Api<MySet> = Api::namespaced(client.clone(), &name);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &name);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &name);

    mysets
        .create(&PostParams::default(), &myset(&name, &image))
        .await
        .expect("create the MySet");
    until("3 Ready members", || ready(&mysets, 3)).await;
    assert_eq!(names(&pods).await, ["e2e-0", "e2e-1", "e2e-2"]);
    assert_eq!(primary_pods(&pods).await, ["e2e-0"]);

    pods.delete("e2e-1", &DeleteParams::default())
        .await
        .expect("delete a Pod");
    until("e2e-1 back and Ready", || async {
        names(&pods).await.contains(&"e2e-1".to_string()) && ready(&mysets, 3).await
    })
    .await;

    let switch = serde_json::json!({"metadata": {"annotations": {"myset.dev/switchover-to": "2"}}});
    mysets
        .patch("e2e", &PatchParams::default(), &Patch::Merge(&switch))
        .await
        .expect("ask for a switchover");
    until("e2e-2 primary behind -rw", || async {
        primary_pods(&pods).await == ["e2e-2"]
    })
    .await;

    for replicas in [5u32, 3] {
        let scale = serde_json::json!({"spec": {"replicas": replicas}});
        mysets
            .patch("e2e", &PatchParams::default(), &Patch::Merge(&scale))
            .await
            .expect("scale");
        until(&format!("{replicas} Ready members"), || async {
            names(&pods).await.len() == replicas as usize && ready(&mysets, replicas as usize).await
        })
        .await;
    }
    assert_eq!(
        names(&pvcs).await,
        [
            "e2e-0-data",
            "e2e-1-data",
            "e2e-2-data",
            "e2e-3-data",
            "e2e-4-data"
        ],
        "scale-down keeps the PVCs"
    );
}
