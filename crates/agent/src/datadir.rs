//! Making sure the instance has a data dir: keep existing data, bootstrap, or clone.
//!
//! A data dir only ever appears by renaming a complete one into place, so a crash or a failed
//! attempt can never leave something that later passes for valid data.

use crate::blocking::remove_tree;
use crate::clone;
use crate::state::Shared;
use crate::supervisor::{run_logged, spawn_server};
use anyhow::Context;
use myset_api::Phase;
use myset_mariadb::sql;
use std::time::Duration;
use tokio::process::Command;

/// Pause between rounds of clone attempts when every donor failed.
const RETRY_PAUSE: Duration = Duration::from_secs(2);

pub async fn ensure(shared: &Shared) -> anyhow::Result<()> {
    let layout = &shared.layout;
    for leftover in [layout.data_init(), layout.data_clone()] {
        if leftover.exists() {
            tracing::warn!(path = %leftover.display(), "removing an unfinished earlier attempt");
            remove_tree(leftover).await?;
        }
    }
    loop {
        if layout.data().exists() {
            return Ok(());
        }
        let spec = shared.spec();
        if spec.bootstrap {
            shared.set_phase(Phase::Initializing);
            if let Err(e) = bootstrap(shared).await {
                if let Err(r) = remove_tree(layout.data_init()).await {
                    tracing::warn!("cannot remove the failed bootstrap's data dir: {r}");
                }
                return Err(e.context("bootstrapping a new data dir failed"));
            }
            continue;
        }
        if spec.galera.is_some() {
            // A joiner's server needs a data dir to start; its state transfer replaces it.
            shared.set_phase(Phase::Initializing);
            if let Err(e) = install(shared).await {
                if let Err(r) = remove_tree(layout.data_init()).await {
                    tracing::warn!("cannot remove the failed data dir: {r}");
                }
                return Err(e.context("creating a joiner's data dir failed"));
            }
            std::fs::rename(layout.data_init(), layout.data())?;
            continue;
        }
        if spec.donors.is_empty() {
            shared.set_phase(Phase::Waiting {
                reason: "no donor to clone from".into(),
            });
            shared.wait_for_spec_change(RETRY_PAUSE).await;
            continue;
        }
        for donor in &spec.donors {
            match clone::receive(shared, donor).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(donor = donor.ordinal, "clone failed: {e:#}");
                    if let Err(r) = remove_tree(layout.data_clone()).await {
                        tracing::warn!("cannot remove the failed clone: {r}");
                    }
                    shared.set_phase(Phase::Waiting {
                        reason: format!("clone from {} failed: {e:#}", donor.ordinal),
                    });
                }
            }
        }
        if !layout.data().exists() {
            shared.wait_for_spec_change(RETRY_PAUSE).await;
        }
    }
}

/// Creates the first primary's data dir: system tables, myset's accounts and nothing else.
async fn bootstrap(shared: &Shared) -> anyhow::Result<()> {
    let layout = &shared.layout;
    let init = layout.data_init();
    install(shared).await?;
    // Listen on the socket only, so nobody can log in before the accounts are secured; a
    // Galera member's provider stays off, so this server joins no cluster.
    let mut server = spawn_server(shared, &init, &["--skip-networking", "--wsrep-on=OFF"]).await?;
    let result = secure_accounts(shared, &mut server).await;
    let _ = server.start_kill();
    let _ = server.wait().await;
    result?;
    std::fs::rename(&init, layout.data())?;
    tracing::info!("bootstrapped a new data dir");
    Ok(())
}

/// Fills `data.init` with a fresh data dir of system tables only (no accounts yet).
async fn install(shared: &Shared) -> anyhow::Result<()> {
    let layout = &shared.layout;
    let init = layout.data_init();
    let mut install = Command::new(&shared.binaries.install_db);
    install
        .arg("--no-defaults")
        .arg(format!("--datadir={}", init.display()))
        .arg("--auth-root-authentication-method=normal")
        .arg("--skip-test-db");
    if nix::unistd::geteuid().is_root() {
        install.arg("--user=root");
    }
    let log = layout.log_dir().join("install-db.log");
    run_logged(install, "mariadb-install-db", &log).await
}

async fn secure_accounts(
    shared: &Shared,
    server: &mut tokio::process::Child,
) -> anyhow::Result<()> {
    let socket = shared.layout.socket();
    let mut c =
        myset_mariadb::client::connect_starting_server(server, &socket, Duration::from_secs(120))
            .await
            .context("the bootstrap server did not come up")?;
    for statement in sql::bootstrap(&shared.secrets) {
        c.exec(&statement).await?;
    }
    for account in c.text_rows(&sql::foreign_accounts(&shared.secrets)).await? {
        if let [Some(user), Some(host)] = account.as_slice() {
            c.exec(&sql::drop_account(user, host)).await?;
        }
    }
    c.exec(sql::FLUSH_PRIVILEGES).await?;
    // A clean shutdown, so the renamed data dir needs no crash recovery.
    let _ = c.exec("SHUTDOWN").await;
    let _ = tokio::time::timeout(Duration::from_secs(60), server.wait()).await;
    Ok(())
}
