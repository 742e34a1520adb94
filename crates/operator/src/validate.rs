//! Checks a `MySet` before anything is rendered from it: every error names the field and what
//! is wrong, in one line.

use crate::crd::{MySet, MAX_REPLICAS};
use std::collections::{BTreeMap, BTreeSet};

/// Longest `MySet` name: `<name>-<ordinal>` must stay a DNS label (63) as a Pod hostname, and
/// `<name>-<ordinal>-data` leaves room for the ordinal.
pub const MAX_NAME_LEN: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InvalidMySet {
    pub field: String,
    pub problem: String,
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> InvalidMySet {
    InvalidMySet {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Whether `name` is a server option myset lets users set: lower-case letters, digits, `-`
/// and `_`, starting with a letter, not one of the options myset manages.
pub fn check_option_name(name: &str) -> Result<(), String> {
    let well_formed = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !well_formed {
        return Err(format!(
            "{name:?} is not an option name (lower-case letters, digits, - and _, starting with a letter)"
        ));
    }
    // The same rule as `myset config set`; `loose-` only hides a typo, not an owned option.
    let normal = myset_core::settings::normalise_key(name);
    let bare = normal.strip_prefix("loose_").unwrap_or(&normal);
    if let Some(why) = myset_core::settings::owned(bare) {
        return Err(format!(
            "{name:?} is managed by myset and cannot be set: {}",
            why.why()
        ));
    }
    Ok(())
}

/// Whether `value` can stand on one line of an option file (as `myset config set` checks).
pub fn check_option_value(value: &str) -> Result<(), String> {
    myset_core::settings::check_value(value)
}

/// A DNS-1123 label: lower-case letters, digits and `-`, starting and ending alphanumeric.
pub fn is_dns_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A Kubernetes quantity as a storage size: a positive number with an optional suffix.
fn is_size(s: &str) -> bool {
    let digits_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(digits_end);
    let number_ok = number.parse::<f64>().is_ok_and(|n| n > 0.0) && !number.ends_with('.');
    let suffix_ok = [
        "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E",
    ]
    .contains(&suffix);
    number_ok && suffix_ok
}

/// Checks everything the rendering relies on.
pub fn validate(myset: &MySet) -> Result<(), InvalidMySet> {
    let name = myset.metadata.name.as_deref().unwrap_or("");
    if !is_dns_label(name, MAX_NAME_LEN) {
        return Err(invalid(
            "metadata.name",
            format!(
                "{name:?} is not a DNS label of at most {MAX_NAME_LEN} characters (lower-case letters, digits and -)"
            ),
        ));
    }
    if let Some(ns) = &myset.metadata.namespace {
        if !is_dns_label(ns, 63) {
            return Err(invalid(
                "metadata.namespace",
                format!("{ns:?} is not a DNS label"),
            ));
        }
    }
    let spec = &myset.spec;
    if !(1..=MAX_REPLICAS).contains(&spec.replicas) {
        return Err(invalid(
            "spec.replicas",
            format!("{} is outside 1 to {MAX_REPLICAS}", spec.replicas),
        ));
    }
    if spec.topology == myset_api::Topology::Galera {
        // The same rule as `myset up` and `myset scale`, in words for a MySet.
        if myset_core::galera::check_size(spec.replicas).is_err() {
            return Err(invalid(
                "spec.replicas",
                format!(
                    "a Galera cluster needs at least {} members to keep a quorum when one is lost; {} would stop taking writes at the first failure",
                    myset_core::galera::MIN_MEMBERS,
                    spec.replicas
                ),
            ));
        }
    } else if spec.causal_reads {
        return Err(invalid(
            "spec.causalReads",
            "is for Galera; with replication, reads through -ro are bounded by the staleness limit instead",
        ));
    }
    if !(1..=600).contains(&spec.failover_delay_seconds) {
        return Err(invalid(
            "spec.failoverDelaySeconds",
            format!("{} is outside 1 to 600", spec.failover_delay_seconds),
        ));
    }
    if spec.image.trim().is_empty() || spec.image.chars().any(char::is_whitespace) {
        return Err(invalid(
            "spec.image",
            format!("{:?} is not an image reference", spec.image),
        ));
    }
    if !is_size(&spec.storage.size.0) {
        return Err(invalid(
            "spec.storage.size",
            format!(
                "{:?} is not a positive size such as 10Gi",
                spec.storage.size.0
            ),
        ));
    }
    if let Some(class) = &spec.storage.storage_class_name {
        if class.is_empty() {
            return Err(invalid(
                "spec.storage.storageClassName",
                "is empty (leave it out for the default class)",
            ));
        }
    }
    for (group, options) in [
        ("all", &spec.server.all),
        ("primary", &spec.server.primary),
        ("replica", &spec.server.replica),
    ] {
        check_options(group, options)?;
    }
    let mut seen = BTreeSet::new();
    for (i, o) in spec.scheduling.ordinals.iter().enumerate() {
        if !seen.insert(o.ordinal) {
            return Err(invalid(
                format!("spec.scheduling.ordinals[{i}].ordinal"),
                format!("ordinal {} appears twice", o.ordinal),
            ));
        }
        if o.ordinal >= MAX_REPLICAS {
            return Err(invalid(
                format!("spec.scheduling.ordinals[{i}].ordinal"),
                format!("{} is beyond the last possible ordinal", o.ordinal),
            ));
        }
    }
    for (field, port) in [
        ("spec.service.rwPort", spec.service.rw_port),
        ("spec.service.roPort", spec.service.ro_port),
    ] {
        if port == 0 {
            return Err(invalid(field, "0 is not a port"));
        }
    }
    if let Some(primary) = myset.status.as_ref().and_then(|s| s.primary) {
        if primary >= spec.replicas {
            return Err(invalid(
                "status.primary",
                format!(
                    "{primary} is not a member of a set of {} instances",
                    spec.replicas
                ),
            ));
        }
    }
    Ok(())
}

fn check_options(group: &str, options: &BTreeMap<String, String>) -> Result<(), InvalidMySet> {
    for (name, value) in options {
        check_option_name(name).map_err(|p| invalid(format!("spec.server.{group}"), p))?;
        check_option_value(value).map_err(|p| invalid(format!("spec.server.{group}.{name}"), p))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_names() {
        for good in [
            "max-connections",
            "innodb_buffer_pool_size",
            "long-query-time",
        ] {
            assert!(check_option_name(good).is_ok(), "{good} refused");
        }
        for bad in [
            "",
            "Max",
            "a b",
            "a=b",
            "!include",
            "x\ny",
            "server-id",
            "server_id",
            "loose-read_only",
            "wsrep_on",
            "user",
            "plugin_load_add",
            "1abc",
        ] {
            assert!(check_option_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn option_values() {
        assert!(check_option_value("512M").is_ok());
        assert!(check_option_value("STRICT_TRANS_TABLES,NO_ZERO_DATE").is_ok());
        for bad in ["a\nserver-id=1", "1 # x", " 1", "a\rb", "x\0"] {
            assert!(check_option_value(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn sizes() {
        for good in ["10Gi", "1", "500M", "1.5Ti", "100k"] {
            assert!(is_size(good), "{good} refused");
        }
        for bad in ["", "Gi", "-1Gi", "0", "10 Gi", "10GB", "1."] {
            assert!(!is_size(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("demo-1", 40));
        for bad in ["", "-a", "a-", "Demo", "a_b", "a.b"] {
            assert!(!is_dns_label(bad, 40), "{bad:?} accepted");
        }
        assert!(!is_dns_label(&"a".repeat(41), 40));
    }
}
