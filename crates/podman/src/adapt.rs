//! The one place where a rendered Pod is changed to run under Debian's podman 4.3. Each change
//! works around something podman 4.3's `kube play` does differently from a kubelet; none changes
//! what the agent is told (command, image, user, read-only root, mounts at the same paths).

use k8s_openapi::api::core::v1::{HostPathVolumeSource, Pod, Volume};
use std::path::PathBuf;

/// Host directories and values that stand in for what podman 4.3 cannot provide.
#[derive(Debug, Clone)]
pub struct HostSide {
    /// Holds `secrets.json`, readable by the Pod's user: stands in for the Secret volume.
    pub secrets_dir: PathBuf,
    /// Per-Pod directory; each emptyDir volume becomes its subdirectory of the same name.
    pub scratch_dir: PathBuf,
    /// The Pod's IP, for `status.podIP`.
    pub pod_ip: String,
}

/// Adapts `pod` (as `myset_operator::render` made it) for `podman kube play` 4.3:
///
/// 1. **Secret volumes become a host directory** (`secrets_dir`). podman 4.3 dereferences a
///    Secret volume's unset `optional` (a nil-pointer panic in `VolumeFromSecret`), and, given a
///    `Secret` document, writes its `data` into the file still base64-encoded.
/// 2. **emptyDir volumes become per-Pod host directories** (`scratch_dir/<volume>`). podman 4.3
///    turns an emptyDir into a named volume called after the volume (`run`, `tmp`): one volume
///    shared by every Pod on the host, kept across Pods, owned by root (fsGroup is not
///    applied). The runtime empties these directories before each start, as a new Pod's
///    emptyDir is empty.
/// 3. **Container ports are dropped.** podman 4.3 publishes every `containerPort` on the host
///    (0.0.0.0:3306, ...), so a second Pod collides with the first; Pods are reached on their
///    own IPs instead, where every port is open, as on a Kubernetes Pod network.
/// 4. **Probes are dropped.** podman 4.3 ignores readiness and startup probes and turns a
///    liveness probe into a healthcheck driven by systemd timers, which do not exist here (each
///    `kube play` logs errors). The agent still serves the probe port; the data-plane test
///    checks it directly.
/// 5. **`fieldRef` environment variables other than `metadata.name` get literal values**
///    (`metadata.namespace` from the Pod, `status.podIP` from `pod_ip`): podman 4.3 refuses
///    them ("fieldPath ... is either not valid or not supported").
///
/// Left as rendered: the ConfigMap volume (podman 4.3 reads a `ConfigMap` document given in the
/// same file), the PVC volume (a named podman volume the runtime creates, because 4.3 refuses
/// a `PersistentVolumeClaim` document naming a volume that exists, which every restart does),
/// user, group, read-only root, dropped capabilities, seccomp, hostname and restart policy.
/// Scheduling fields (affinity, tolerations, node selector) mean nothing on one host.
pub fn adapt_for_podman(pod: &mut Pod, host: &HostSide) {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    for volume in spec.volumes.iter_mut().flatten() {
        if volume.secret.is_some() {
            *volume = host_path(&volume.name, host.secrets_dir.clone());
        } else if volume.empty_dir.is_some() {
            *volume = host_path(&volume.name, host.scratch_dir.join(&volume.name));
        }
    }
    for container in &mut spec.containers {
        container.ports = None;
        container.liveness_probe = None;
        container.readiness_probe = None;
        container.startup_probe = None;
        for var in container.env.iter_mut().flatten() {
            let path = var
                .value_from
                .as_ref()
                .and_then(|from| from.field_ref.as_ref())
                .map(|field| field.field_path.as_str());
            let literal = match path {
                Some("metadata.namespace") => namespace.clone(),
                Some("status.podIP") => host.pod_ip.clone(),
                _ => continue,
            };
            var.value_from = None;
            var.value = Some(literal);
        }
    }
}

/// The emptyDir volumes of `pod`: the subdirectories of `scratch_dir` to prepare.
pub fn scratch_volumes(pod: &Pod) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|spec| spec.volumes.iter().flatten())
        .filter(|v| v.empty_dir.is_some())
        .map(|v| v.name.clone())
        .collect()
}

fn host_path(name: &str, path: PathBuf) -> Volume {
    Volume {
        name: name.to_string(),
        host_path: Some(HostPathVolumeSource {
            path: path.to_string_lossy().into_owned(),
            type_: Some("Directory".into()),
        }),
        ..Volume::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use myset_operator::{render, MySet, Object};

    fn rendered_pod() -> Pod {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/example-myset.yaml"
        ))
        .unwrap();
        let mut myset: MySet = myset_operator::parse_manifest(&text).unwrap();
        myset.metadata.uid = Some("uid".into());
        let secrets = myset_operator::generate_credentials();
        render(&myset, &secrets)
            .unwrap()
            .into_iter()
            .find_map(|o| match o {
                Object::Pod(p) if p.metadata.name.as_deref() == Some("demo-1") => Some(p),
                _ => None,
            })
            .unwrap()
    }

    fn host() -> HostSide {
        HostSide {
            secrets_dir: "/h/secrets".into(),
            scratch_dir: "/h/pods/demo-1".into(),
            pod_ip: "10.77.1.11".into(),
        }
    }

    #[test]
    fn only_what_podman_cannot_run_changes() {
        let rendered = rendered_pod();
        let mut pod = rendered.clone();
        adapt_for_podman(&mut pod, &host());
        let (before, after) = (rendered.spec.unwrap(), pod.spec.unwrap());
        let (c0, c1) = (&before.containers[0], &after.containers[0]);
        assert_eq!(c1.command, c0.command);
        assert_eq!(c1.image, c0.image);
        assert_eq!(c1.volume_mounts, c0.volume_mounts);
        assert_eq!(c1.security_context, c0.security_context);
        assert_eq!(after.security_context, before.security_context);
        assert!(c1.ports.is_none() && c1.liveness_probe.is_none());
        assert!(c1.readiness_probe.is_none() && c1.startup_probe.is_none());

        let volumes = after.volumes.unwrap();
        let path = |name: &str| {
            let v = volumes.iter().find(|v| v.name == name).unwrap();
            v.host_path.as_ref().map(|h| h.path.clone())
        };
        assert_eq!(path("secrets").as_deref(), Some("/h/secrets"));
        assert_eq!(path("run").as_deref(), Some("/h/pods/demo-1/run"));
        assert_eq!(path("tmp").as_deref(), Some("/h/pods/demo-1/tmp"));
        assert_eq!(path("data"), None, "the PVC stays a claim");
        assert_eq!(path("server-config"), None, "the ConfigMap stays");
        assert_eq!(scratch_volumes(&rendered_pod()), ["run", "tmp"]);

        let env = c1.env.as_ref().unwrap();
        let value = |name: &str| env.iter().find(|e| e.name == name).unwrap().clone();
        assert_eq!(value("POD_NAMESPACE").value.as_deref(), Some("default"));
        assert_eq!(value("POD_IP").value.as_deref(), Some("10.77.1.11"));
        assert!(value("POD_NAME").value_from.is_some(), "podman supports it");
    }
}
