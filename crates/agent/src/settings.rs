//! The user's server settings on the running server: asking the server which variables exist
//! and which are dynamic, and applying dynamic ones live (`SET GLOBAL`). Static ones take
//! effect when the server next starts with its newly rendered option file.

use crate::role::admin;
use crate::state::Shared;
use anyhow::Context;
use myset_api::VariableInfo;
use myset_mariadb::{sql, AdminClient};
use std::collections::{BTreeMap, BTreeSet};

/// What the running server has of the user's settings.
#[derive(Debug, Clone, Default)]
pub struct LiveSettings {
    /// Set in its option file at start, or live since.
    pub values: BTreeMap<String, String>,
    /// Static settings the spec changed since the start: they wait for a restart.
    pub need_restart: BTreeSet<String>,
}

/// Describes `names` as the server knows them. A variable whose `READ_ONLY` is `YES` cannot
/// be changed while the server runs.
pub async fn describe(c: &mut AdminClient, names: &[String]) -> anyhow::Result<Vec<VariableInfo>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let list = names
        .iter()
        .map(|n| sql::literal(&n.to_ascii_uppercase()))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = c
        .text_rows(&format!(
            "SELECT VARIABLE_NAME, READ_ONLY FROM information_schema.SYSTEM_VARIABLES WHERE VARIABLE_NAME IN ({list})"
        ))
        .await?;
    let known: BTreeMap<String, bool> = rows
        .into_iter()
        .filter_map(|r| {
            let name = r.first()?.clone()?.to_ascii_lowercase();
            let read_only = r.get(1)?.clone()?;
            Some((name, !read_only.eq_ignore_ascii_case("YES")))
        })
        .collect();
    Ok(names
        .iter()
        .map(|n| VariableInfo {
            name: n.clone(),
            dynamic: known.get(n).copied(),
        })
        .collect())
}

async fn global_value(c: &mut AdminClient, name: &str) -> anyhow::Result<Option<String>> {
    Ok(c.scalar(&format!(
        "SELECT GLOBAL_VALUE FROM information_schema.SYSTEM_VARIABLES WHERE VARIABLE_NAME = {}",
        sql::literal(&name.to_ascii_uppercase())
    ))
    .await?)
}

async fn set_global(c: &mut AdminClient, name: &str, value: &str) -> anyhow::Result<()> {
    let rhs = myset_core::settings::sql_value(value, sql::literal);
    c.exec(&format!("SET GLOBAL {name} = {rhs}"))
        .await
        .map_err(|e| anyhow::anyhow!("{name}={value}: {e}"))
}

/// Sets `settings` live, all or none: on a refusal the ones already set go back to their
/// values before. Returns each variable's global value before.
pub async fn apply_live(
    shared: &Shared,
    settings: &BTreeMap<String, String>,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut c = admin(shared).await?;
    let result = apply_with(&mut c, settings).await;
    c.disconnect().await;
    let before = result?;
    shared.note_live_settings(settings);
    Ok(before)
}

async fn apply_with(
    c: &mut AdminClient,
    settings: &BTreeMap<String, String>,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut before: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in settings {
        let previous = global_value(c, name)
            .await?
            .with_context(|| format!("the server has no variable {name}"))?;
        if let Err(e) = set_global(c, name, value).await {
            for (done, old) in &before {
                if let Err(undo) = set_global(c, done, old).await {
                    tracing::warn!("cannot set {done} back to {old}: {undo:#}");
                }
            }
            return Err(e);
        }
        before.insert(name.clone(), previous);
    }
    Ok(before)
}

/// Brings the running server's dynamic settings to the spec's for its role (after a
/// promotion, the primary's; after `config set`, the new ones). Static ones are noted as
/// waiting for a restart.
pub async fn converge_live(shared: &Shared) -> anyhow::Result<()> {
    let spec = shared.spec();
    let desired = spec.settings.for_role(spec.role);
    let live = shared.live_settings();
    let changed: Vec<String> = myset_core::settings::changed_keys(&live.values, &desired)
        .into_iter()
        .filter(|k| !live.need_restart.contains(k))
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    let mut c = admin(shared).await?;
    let result = async {
        let mut dynamic = BTreeMap::new();
        for info in describe(&mut c, &changed).await? {
            match info.dynamic {
                Some(true) => {
                    dynamic.insert(info.name.clone(), desired[&info.name].clone());
                }
                _ => shared.note_needs_restart(&info.name),
            }
        }
        apply_with(&mut c, &dynamic).await?;
        shared.note_live_settings(&dynamic);
        anyhow::Ok(())
    }
    .await;
    c.disconnect().await;
    result
}
