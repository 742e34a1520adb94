//! myset on Kubernetes: the `MySet` custom resource and its CRD, the objects the operator
//! creates for it (rendered by pure functions), and the operator itself: a Lease-elected
//! process that drives each `MySet` through the shared controller over [`kube_runtime`],
//! keeping the cluster record in the resource's status ([`record`]).

pub mod client;
pub mod crd;
pub mod kube_runtime;
pub mod lease;
pub mod nodes;
pub mod operator;
pub mod record;
pub mod render;
pub mod validate;

pub use crd::{MySet, MySetSpec, MySetStatus};
pub use render::{render, Object};
pub use validate::InvalidMySet;

use kube::core::CustomResourceExt;
use myset_api::Secrets;

/// The command whose output `deploy/crd.yaml` must be.
pub const CRD_COMMAND: &str = "myset operator crd > deploy/crd.yaml";

/// The CustomResourceDefinition of `MySet`, as YAML, generated from the Rust types.
pub fn crd_yaml() -> String {
    let crd = MySet::crd();
    let body = serde_norway::to_string(&crd).expect("a CRD always serializes");
    format!("# Generated from crates/operator/src/crd.rs by `{CRD_COMMAND}`; do not edit.\n{body}")
}

/// Objects as one multi-document YAML stream, like `helm template`.
pub fn to_yaml_stream(objects: &[Object]) -> Result<String, serde_norway::Error> {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(object)?);
    }
    Ok(out)
}

/// Why a manifest is not a `MySet` this operator can render.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("not YAML: {0}")]
    Yaml(String),
    #[error("expected one MySet, found {0} documents")]
    Documents(usize),
    #[error(
        "not a MySet: apiVersion {api_version:?}, kind {kind:?} (want myset.dev/v1alpha1, MySet)"
    )]
    Kind { api_version: String, kind: String },
    #[error("invalid MySet: {0}")]
    Fields(String),
    /// Not `#[from]`: that would make it the source too, and the message would repeat.
    #[error("invalid MySet: {0}")]
    Invalid(InvalidMySet),
}

impl From<InvalidMySet> for ManifestError {
    fn from(e: InvalidMySet) -> Self {
        ManifestError::Invalid(e)
    }
}

/// Reads one `MySet` manifest and checks it.
pub fn parse_manifest(text: &str) -> Result<MySet, ManifestError> {
    use serde::Deserialize;
    let mut documents = Vec::new();
    for document in serde_norway::Deserializer::from_str(text) {
        let value = serde_norway::Value::deserialize(document)
            .map_err(|e| ManifestError::Yaml(one_line(&e.to_string())))?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    if documents.len() != 1 {
        return Err(ManifestError::Documents(documents.len()));
    }
    let value = documents.remove(0);
    let field = |name: &str| {
        value
            .get(name)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    if api_version != "myset.dev/v1alpha1" || kind != "MySet" {
        return Err(ManifestError::Kind { api_version, kind });
    }
    let myset: MySet = serde_norway::from_value(value)
        .map_err(|e| ManifestError::Fields(one_line(&e.to_string())))?;
    validate::validate(&myset)?;
    Ok(myset)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Fresh credentials for a new `MySet`: the one impure step, kept out of [`render`]. The
/// operator generates them once, stores them in the `N-agent` Secret, and reads them back
/// from there afterwards.
pub fn generate_credentials() -> Secrets {
    use rand::distr::{Alphanumeric, SampleString};
    let random = || Alphanumeric.sample_string(&mut rand::rng(), 32);
    Secrets::generate(random)
}

#[cfg(test)]
mod tests;
