//! The user's server settings (`myset config set`): which keys are well formed, which myset
//! owns, which values an option file can hold, and how a value is written in `SET GLOBAL`.

use std::collections::BTreeMap;

/// Longest variable name accepted (MariaDB's are all shorter).
const MAX_KEY_LEN: usize = 64;
/// Longest value accepted.
const MAX_VALUE_LEN: usize = 4096;

/// Why myset keeps a setting to itself; the text ends the refusal line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owned {
    Identity,
    Fencing,
    Gtid,
    SemiSync,
    Binlog,
    RelayLog,
    ReplicationStart,
    PathsAndPorts,
    Durability,
    Galera,
    Security,
}

impl Owned {
    pub fn why(self) -> &'static str {
        match self {
            Owned::Identity => "server_id is 100 + the ordinal; the failover logic relies on it",
            Owned::Fencing => {
                "myset sets read_only by role and to fence a primary; a user value would break fencing"
            }
            Owned::Gtid => "GTID replication is set up by myset (strict mode, positions)",
            Owned::SemiSync => {
                "semi-synchronous replication is set by role from --durability (myset up --durability)"
            }
            Owned::Binlog => {
                "the binary log is what replication, failover and the archive read; myset fixes its format and durability"
            }
            Owned::RelayLog => "relay logs and their recovery are set up by myset",
            Owned::ReplicationStart => "myset starts replication once it knows the primary",
            Owned::PathsAndPorts => {
                "paths, ports and addresses come from the instance's placement and data dir"
            }
            Owned::Durability => {
                "myset keeps commits durable (a value other than 1 loses acknowledged writes on a crash)"
            }
            Owned::Galera => "wsrep settings are rendered by myset for the Galera topology",
            Owned::Security => {
                "it would load code, skip authentication or change who the server runs as"
            }
        }
    }
}

/// Exact names myset owns (normalised: lower case, `_`).
const OWNED: &[(&str, Owned)] = &[
    ("server_id", Owned::Identity),
    ("gtid_domain_id", Owned::Gtid),
    ("read_only", Owned::Fencing),
    ("log_bin", Owned::Binlog),
    ("binlog_format", Owned::Binlog),
    ("log_slave_updates", Owned::Binlog),
    ("log_replica_updates", Owned::Binlog),
    ("sync_binlog", Owned::Binlog),
    ("innodb_flush_log_at_trx_commit", Owned::Durability),
    ("skip_slave_start", Owned::ReplicationStart),
    ("skip_replica_start", Owned::ReplicationStart),
    ("slave_net_timeout", Owned::ReplicationStart),
    ("init_connect", Owned::Galera),
    ("basedir", Owned::PathsAndPorts),
    ("datadir", Owned::PathsAndPorts),
    ("socket", Owned::PathsAndPorts),
    ("port", Owned::PathsAndPorts),
    ("bind_address", Owned::PathsAndPorts),
    ("pid_file", Owned::PathsAndPorts),
    ("log_error", Owned::PathsAndPorts),
    ("tmpdir", Owned::PathsAndPorts),
    ("innodb_data_home_dir", Owned::PathsAndPorts),
    ("innodb_log_group_home_dir", Owned::PathsAndPorts),
    ("skip_networking", Owned::PathsAndPorts),
    ("skip_name_resolve", Owned::PathsAndPorts),
    ("secure_file_priv", Owned::Security),
    ("user", Owned::Security),
    ("init_file", Owned::Security),
    ("skip_grant_tables", Owned::Security),
    ("plugin_dir", Owned::Security),
    ("plugin_load", Owned::Security),
    ("plugin_load_add", Owned::Security),
];

/// Name prefixes myset owns.
const OWNED_PREFIXES: &[(&str, Owned)] = &[
    ("gtid_", Owned::Gtid),
    ("rpl_semi_sync_", Owned::SemiSync),
    ("relay_log", Owned::RelayLog),
    ("log_bin_", Owned::Binlog),
    ("wsrep_", Owned::Galera),
];

/// A key as MariaDB reads it: `-` and `_` are the same, case does not matter.
pub fn normalise_key(key: &str) -> String {
    key.trim().to_ascii_lowercase().replace('-', "_")
}

/// Why myset owns `key` (normalised), if it does.
pub fn owned(key: &str) -> Option<Owned> {
    OWNED
        .iter()
        .find(|(name, _)| *name == key)
        .or_else(|| OWNED_PREFIXES.iter().find(|(p, _)| key.starts_with(p)))
        .map(|(_, why)| *why)
}

/// A refused setting, in one line naming it and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    #[error(
        "{key:?} is not a server variable name (letters, digits, - and _, starting with a letter)"
    )]
    BadKey { key: String },
    #[error("{key} is managed by myset and cannot be set: {}", why.why())]
    Owned { key: String, why: Owned },
    #[error("{key}: the value {problem}")]
    BadValue { key: String, problem: String },
    #[error("{key} is given twice")]
    Repeated { key: String },
}

/// Checks a key as typed and returns it normalised.
pub fn check_key(key: &str) -> Result<String, SettingError> {
    let normal = normalise_key(key);
    let well_formed = !normal.is_empty()
        && normal.len() <= MAX_KEY_LEN
        && normal.starts_with(|c: char| c.is_ascii_lowercase())
        && normal
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    // `loose-` makes MariaDB ignore an unknown option: a typo would pass unnoticed.
    if !well_formed || normal.starts_with("loose_") {
        return Err(SettingError::BadKey { key: key.into() });
    }
    if let Some(why) = owned(&normal) {
        return Err(SettingError::Owned { key: normal, why });
    }
    Ok(normal)
}

/// Whether `value` can stand on one line of an option file as it is: no line breaks or other
/// control characters, no `#` (a comment), no quotes or backslashes (an option file unquotes
/// and unescapes them), no blanks around it, not empty.
pub fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("is empty".into());
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(format!("is longer than {MAX_VALUE_LEN} bytes"));
    }
    if let Some(c) = value
        .chars()
        .find(|c| c.is_control() || matches!(c, '#' | '\'' | '"' | '\\'))
    {
        return Err(format!("contains {c:?}, which an option file cannot hold"));
    }
    if value.trim() != value {
        return Err("has leading or trailing blanks".into());
    }
    Ok(())
}

/// Checks `KEY=VALUE` pairs as typed: each key well formed, not owned and given once, each
/// value fit for an option file. Returns them normalised.
pub fn check_assignments(
    assignments: &[(String, String)],
) -> Result<BTreeMap<String, String>, SettingError> {
    let mut out = BTreeMap::new();
    for (key, value) in assignments {
        let key = check_key(key)?;
        check_value(value).map_err(|problem| SettingError::BadValue {
            key: key.clone(),
            problem,
        })?;
        if out.insert(key.clone(), value.clone()).is_some() {
            return Err(SettingError::Repeated { key });
        }
    }
    Ok(out)
}

/// The keys whose value in `next` differs from `before` (added or changed).
pub fn changed_keys(
    before: &BTreeMap<String, String>,
    next: &BTreeMap<String, String>,
) -> Vec<String> {
    next.iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect()
}

/// `value` as the right-hand side of `SET GLOBAL`: a number stays a number (a quoted one is
/// refused for numeric variables), a size with a K/M/G/T suffix becomes bytes (the suffix is
/// option-file syntax only), anything else is a quoted string (enums, ON/OFF, lists).
pub fn sql_value(value: &str, quote: impl Fn(&str) -> String) -> String {
    let is_number = |s: &str| {
        let digits = s.strip_prefix('-').unwrap_or(s);
        !digits.is_empty()
            && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
            && digits.chars().filter(|&c| c == '.').count() <= 1
            && !digits.starts_with('.')
            && !digits.ends_with('.')
    };
    if is_number(value) {
        return value.to_string();
    }
    let (body, unit) = value.split_at(value.len() - 1);
    let shift = match unit {
        "K" | "k" => Some(10),
        "M" | "m" => Some(20),
        "G" | "g" => Some(30),
        "T" | "t" => Some(40),
        _ => None,
    };
    if let (Some(shift), Ok(n)) = (shift, body.parse::<u64>()) {
        if let Some(bytes) = n.checked_mul(1u64 << shift) {
            return bytes.to_string();
        }
    }
    quote(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn dashes_underscores_and_case_are_one_key() {
        let a = check_assignments(&pairs(&[("Max-Connections", "333")])).unwrap();
        let b = check_assignments(&pairs(&[("max_connections", "333")])).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.keys().next().unwrap(), "max_connections");
        let twice = check_assignments(&pairs(&[
            ("max-connections", "1"),
            ("MAX_CONNECTIONS", "2"),
        ]));
        assert_eq!(
            twice,
            Err(SettingError::Repeated {
                key: "max_connections".into()
            })
        );
    }

    #[test]
    fn owned_settings_are_refused_with_the_reason() {
        for key in [
            "server_id",
            "server-id",
            "READ_ONLY",
            "gtid_strict_mode",
            "gtid-domain-id",
            "rpl_semi_sync_master_enabled",
            "log_bin",
            "log-bin-index",
            "binlog_format",
            "log_slave_updates",
            "sync_binlog",
            "relay_log",
            "relay_log_recovery",
            "datadir",
            "socket",
            "port",
            "bind-address",
            "pid_file",
            "log_error",
            "tmpdir",
            "wsrep_on",
            "wsrep_provider_options",
            "skip_slave_start",
            "user",
            "plugin_load_add",
            "innodb_flush_log_at_trx_commit",
        ] {
            match check_key(key) {
                Err(e @ SettingError::Owned { .. }) => {
                    let line = e.to_string();
                    assert!(line.contains("managed by myset"), "{line}");
                    assert!(!line.contains('\n'));
                }
                other => panic!("{key}: {other:?}"),
            }
        }
        let e = check_key("server-id").unwrap_err().to_string();
        assert!(e.starts_with("server_id is managed by myset"), "{e}");
        assert!(e.contains("100 + the ordinal"), "{e}");
    }

    #[test]
    fn tunable_settings_pass() {
        for key in [
            "max_connections",
            "innodb_buffer_pool_size",
            "innodb-log-buffer-size",
            "long_query_time",
            "sql_mode",
            "binlog_cache_size",
            "character_set_server",
        ] {
            assert!(check_key(key).is_ok(), "{key} refused");
        }
    }

    #[test]
    fn malformed_keys_and_values_are_refused() {
        for key in [
            "",
            "1abc",
            "a b",
            "a=b",
            "!include",
            "x\ny",
            "loose-max_connections",
            "a.b",
        ] {
            assert!(
                matches!(check_key(key), Err(SettingError::BadKey { .. })),
                "{key:?} accepted"
            );
        }
        for value in [
            "",
            "a\nserver-id=1",
            "1 # x",
            " 1",
            "a\rb",
            "x\0",
            "'x'",
            "\"x\"",
            "a\\b",
        ] {
            assert!(check_value(value).is_err(), "{value:?} accepted");
        }
        for value in ["512M", "STRICT_TRANS_TABLES,NO_ZERO_DATE", "0.5", "ON"] {
            assert!(check_value(value).is_ok(), "{value:?} refused");
        }
        let e = check_assignments(&pairs(&[("max_connections", "1\nserver_id=9")])).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("max_connections: the value contains"));
    }

    #[test]
    fn values_in_set_global() {
        let q = |s: &str| format!("'{s}'");
        assert_eq!(sql_value("333", q), "333");
        assert_eq!(sql_value("0.5", q), "0.5");
        assert_eq!(sql_value("-1", q), "-1");
        assert_eq!(sql_value("32M", q), "33554432");
        assert_eq!(sql_value("1k", q), "1024");
        assert_eq!(sql_value("ON", q), "'ON'");
        assert_eq!(sql_value("STRICT_TRANS_TABLES", q), "'STRICT_TRANS_TABLES'");
        assert_eq!(sql_value("1.2.3", q), "'1.2.3'");
        assert_eq!(sql_value("M", q), "'M'");
    }

    #[test]
    fn changed_keys_are_the_added_and_the_different() {
        let before: BTreeMap<String, String> =
            [("a".into(), "1".into()), ("b".into(), "2".into())].into();
        let next: BTreeMap<String, String> = [
            ("a".into(), "1".into()),
            ("b".into(), "3".into()),
            ("c".into(), "4".into()),
        ]
        .into();
        assert_eq!(changed_keys(&before, &next), vec!["b", "c"]);
    }
}
