//! Every object `render` makes of the example MySet (as it is, and as a Galera cluster), and
//! every manifest under deploy/, is
//! strict-valid against the real Kubernetes schemas of the oldest and newest versions
//! kubernetes-validate bundles (scripts/validate-k8s). Needs `kubernetes-validate` from PyPI;
//! without it the test is skipped, except under CI (`CI` set), where it fails.

mod validator;

use std::path::Path;
use std::process::Command;

#[test]
fn rendered_objects_and_deploy_manifests_are_valid_kubernetes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if !validator::available() {
        return;
    }
    let text = std::fs::read_to_string(root.join("deploy/example-myset.yaml")).unwrap();
    let mut myset = myset_operator::parse_manifest(&text).unwrap();
    myset.metadata.uid = Some("00000000-0000-0000-0000-000000000000".into());
    let mut objects =
        myset_operator::render(&myset, &myset_operator::generate_credentials()).unwrap();
    // The same as a Galera cluster: its Pods and headless Service have more ports.
    let mut galera = myset.clone();
    galera.metadata.name = Some("galera".into());
    galera.spec.topology = myset_api::Topology::Galera;
    objects
        .extend(myset_operator::render(&galera, &myset_operator::generate_credentials()).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let rendered = dir.path().join("rendered.yaml");
    std::fs::write(&rendered, myset_operator::to_yaml_stream(&objects).unwrap()).unwrap();

    let out = Command::new(root.join("scripts/validate-k8s"))
        .arg(&rendered)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    // Both versions ran, over the rendered Pods and the deploy/ manifests.
    for expected in [
        "pod/demo-2 against version 1.25",
        "pod/demo-2 against version 1.37",
        "pod/galera-2 against version 1.25",
        "service/galera against version 1.37",
        "customresourcedefinition/mysets.myset.dev against version 1.25",
        "clusterrole/myset-operator against version 1.37",
        "deployment/myset-operator against version 1.25",
        "myset/demo against the CRD",
    ] {
        assert!(stdout.contains(expected), "{expected:?} not in\n{stdout}");
    }
}
