//! `myset config set|show` and `myset restart`: the controller does the work (checks, live
//! changes, the rolling restart); this asks and reports.

use crate::args::{ConfigAction, Output};
use crate::commands::{cluster, controller_waiting};
use myset_api::{ConfigSetRequest, RollingOutcome, ServerSettings, SettingsRole};
use myset_local::ClusterDir;
use std::time::Duration;

/// A rolling restart waits for each server in turn (crash recovery included): the answer
/// may take long on a big cluster.
const ROLLING_TIMEOUT: Duration = Duration::from_secs(3600);

pub async fn run(state_dir: &std::path::Path, action: ConfigAction) -> anyhow::Result<()> {
    match action {
        ConfigAction::Set {
            name,
            role,
            assignments,
        } => set(&cluster(state_dir, &name)?, role, assignments).await,
        ConfigAction::Show { name, output } => show(&cluster(state_dir, &name)?, output).await,
    }
}

async fn set(
    dir: &ClusterDir,
    role: SettingsRole,
    assignments: Vec<(String, String)>,
) -> anyhow::Result<()> {
    let api = controller_waiting(dir, ROLLING_TIMEOUT)?;
    let outcome: RollingOutcome = api
        .call("/config", &ConfigSetRequest { role, assignments })
        .await
        .map_err(|e| anyhow::anyhow!("settings not changed: {}", message(e)))?;
    report(dir.name(), &outcome);
    Ok(())
}

pub async fn restart(dir: &ClusterDir) -> anyhow::Result<()> {
    let api = controller_waiting(dir, ROLLING_TIMEOUT)?;
    let outcome: RollingOutcome = api
        .call("/restart", &())
        .await
        .map_err(|e| anyhow::anyhow!("restart stopped: {}", message(e)))?;
    report(dir.name(), &outcome);
    Ok(())
}

/// The controller's own words for a refusal, without the URL around them.
fn message(e: myset_http::CallError) -> String {
    match e {
        myset_http::CallError::Status { message, .. } => message,
        other => other.to_string(),
    }
}

fn report(name: &str, outcome: &RollingOutcome) {
    if !outcome.applied_live.is_empty() {
        say!("applied live: {}", outcome.applied_live.join(", "));
    }
    if !outcome.restarted.is_empty() {
        let names: Vec<String> = outcome
            .restarted
            .iter()
            .map(|o| format!("{name}-{o}"))
            .collect();
        say!("restarted one at a time: {}", names.join(", "));
    }
    if let Some((from, to)) = outcome.switchover {
        say!("switched over: primary {name}-{from} -> {name}-{to}");
    }
    if outcome.applied_live.is_empty() && outcome.restarted.is_empty() {
        say!("nothing to change");
    }
}

async fn show(dir: &ClusterDir, output: Output) -> anyhow::Result<()> {
    // The record is the truth, whether or not the cluster runs.
    let settings = dir.load_state()?.settings;
    match output {
        Output::Json => say!("{}", serde_json::to_string_pretty(&settings)?),
        Output::Table => print_table(&settings),
    }
    Ok(())
}

fn print_table(settings: &ServerSettings) {
    if settings.is_empty() {
        say!("no server settings (myset's defaults); set some with `myset config set KEY=VALUE`");
        return;
    }
    say!("{:<8} {:<40} VALUE", "ROLE", "KEY");
    for role in [
        SettingsRole::All,
        SettingsRole::Primary,
        SettingsRole::Replica,
    ] {
        for (key, value) in settings.part(role) {
            say!("{:<8} {key:<40} {value}", role.to_string());
        }
    }
}
