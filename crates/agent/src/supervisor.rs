//! Starting, watching and restarting mariadbd.

use crate::layout::InstanceLayout;
use crate::state::Shared;
use crate::{datadir, role};
use anyhow::Context;
use myset_api::GaleraStart;
use myset_api::Phase;
use myset_mariadb::client::{GaleraLink, Target};
use myset_mariadb::config::GaleraConfig;
use myset_mariadb::{AdminClient, ServerConfig};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::process::{Child, Command};

/// How long a starting server (crash recovery included) may take to answer.
const START_DEADLINE: Duration = Duration::from_secs(300);
/// How often a starting server is asked whether it answers. A refused connection costs
/// nothing, and after a crash the primary's writes wait for this (plus the replicas'
/// reconnect), so it is short.
const START_POLL: Duration = Duration::from_millis(20);
/// How long a stopping server may take before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(60);
/// How long a Galera server that has not answered yet may take to stop. It is still joining
/// (a state transfer, or the wait for one) and ignores SIGTERM until that ends; it has taken no
/// write of its own, so killing it loses nothing, and a `down` need not wait a minute for it.
const JOINING_STOP_GRACE: Duration = Duration::from_secs(3);
/// Pause before restarting a server: short after a server that had come up (a crash of a
/// healthy server is restarted at once), doubling while it keeps failing to come up, so a
/// broken server is not hot-looped.
const RESTART_BACKOFF_FIRST: Duration = Duration::from_millis(50);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How often the supervisor re-converges replication to the spec.
const CONVERGE_PERIOD: Duration = Duration::from_secs(1);

pub async fn run(shared: Arc<Shared>) -> anyhow::Result<()> {
    tokio::select! {
        r = datadir::ensure(&shared) => r?,
        _ = shared.stop.cancelled() => return Ok(()),
    }
    let mut backoff = RESTART_BACKOFF_FIRST;
    // A Galera member forms the cluster only until its server has come up once; a later
    // restart (a crash) joins the cluster that is there.
    let mut forms_cluster = true;
    loop {
        shared.set_phase(Phase::Starting);
        stop_leftover_transfer(&shared.layout).await;
        let extra = galera_start_args(&shared, forms_cluster).await?;
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let generation = shared.restart_generation();
        let mut child = spawn_server(&shared, &shared.layout.data(), &extra).await?;
        shared.set_pid(child.id());
        let started = tokio::select! {
            r = wait_until_answering(&shared, &mut child) => r,
            _ = shared.stop.cancelled() => {
                let grace = if shared.spec().galera.is_some() { JOINING_STOP_GRACE } else { STOP_GRACE };
                stop_child(&shared, &mut child, grace).await;
                // A transfer cut short by the kill must not outlive this agent.
                stop_leftover_transfer(&shared.layout).await;
                return Ok(());
            }
        };
        if let Err(e) = &started {
            tracing::error!("mariadbd did not start: {e:#}");
            let _ = child.start_kill();
            let _ = child.wait().await;
        } else {
            shared.set_server_version(started.ok().flatten());
            backoff = RESTART_BACKOFF_FIRST;
            forms_cluster = false;
            match watch(&shared, &mut child, generation).await {
                Watch::Stopped => return Ok(()),
                Watch::Exited(status) => {
                    tracing::warn!(%status, "mariadbd exited; restarting it");
                }
                // Asked for: not a crash, so neither counted nor delayed.
                Watch::Restart => continue,
            }
        }
        shared.set_pid(None);
        let restarts = shared.count_restart();
        tracing::info!(restarts, "restarting mariadbd");
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shared.stop.cancelled() => return Ok(()),
        }
        backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
    }
}

enum Watch {
    Stopped,
    Exited(std::process::ExitStatus),
    /// Stopped cleanly because a restart was asked.
    Restart,
}

/// A Galera member's server that has stayed wedged this long ([`wedged`]) is restarted, so it
/// joins again.
const GALERA_WEDGED_LIMIT: Duration = Duration::from_secs(20);

/// Whether a running Galera member can only take part again after a restart: it is outside
/// any view (for example after "IST didn't contain all write sets, node restart required",
/// when mariadbd keeps running disconnected), or it is still a donor while no state transfer
/// runs (its transfer ended and its state did not; it refuses every query meanwhile).
fn wedged(link: GaleraLink, transfer_running: bool) -> bool {
    match link {
        GaleraLink::OutsideAnyView => true,
        GaleraLink::Donor => !transfer_running,
        GaleraLink::InAView => false,
    }
}

/// Keeps the running server converged to the spec until it exits or the agent stops.
async fn watch(shared: &Arc<Shared>, child: &mut Child, generation: u64) -> Watch {
    let mut converged = false;
    let mut wedged_since: Option<std::time::Instant> = None;
    loop {
        if shared.spec().galera.is_some() && converged {
            let link = role::galera_link(shared).await;
            let transfer_running = link == Some(GaleraLink::Donor) && {
                let layout = shared.layout.clone();
                tokio::task::spawn_blocking(move || leftover_transfer(&layout).is_some())
                    .await
                    .unwrap_or(true)
            };
            match link.filter(|&l| wedged(l, transfer_running)) {
                Some(link) => {
                    let since = *wedged_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() >= GALERA_WEDGED_LIMIT {
                        tracing::warn!(
                            "mariadbd has been {link} with no state transfer running for {:?}; restarting it to join again",
                            since.elapsed()
                        );
                        let _ = child.start_kill();
                        wedged_since = None;
                    }
                }
                None => wedged_since = None,
            }
        }
        let result = {
            let ops = shared.server_ops().await;
            role::converge(shared, &ops).await
        };
        match result {
            Ok(()) if !converged || shared.server().phase != Phase::Running => {
                shared.set_phase(Phase::Running);
                if !converged
                    && crate::reconnect::announces(
                        &shared.spec(),
                        shared.fencing().self_fenced.is_some(),
                    )
                {
                    // Takes writes again: the replicas need not wait for their retry timer.
                    // In a task of its own, so a peer slow to answer delays nothing here.
                    let shared = shared.clone();
                    tokio::spawn(async move { crate::reconnect::announce(&shared).await });
                }
                converged = true;
            }
            Ok(()) => {}
            Err(e) if converged => tracing::warn!("re-converging the role failed: {e:#}"),
            Err(e) => tracing::warn!("cannot configure the server's role yet: {e:#}"),
        }
        if converged {
            let result = {
                let _ops = shared.server_ops().await;
                crate::settings::converge_live(shared).await
            };
            if let Err(e) = result {
                tracing::warn!("cannot apply the server settings live: {e:#}");
            }
        }
        tokio::select! {
            status = child.wait() => {
                return Watch::Exited(status.unwrap_or_else(|_| std::os::unix::process::ExitStatusExt::from_raw(-1)));
            }
            _ = shared.stop.cancelled() => {
                stop_child(shared, child, STOP_GRACE).await;
                return Watch::Stopped;
            }
            _ = shared.restart_asked_after(generation) => {
                tracing::info!("restarting mariadbd as asked");
                stop_child(shared, child, STOP_GRACE).await;
                return Watch::Restart;
            }
            _ = shared.wait_for_spec_change(CONVERGE_PERIOD) => {}
        }
    }
}

async fn stop_child(shared: &Shared, child: &mut Child, grace: Duration) {
    shared.set_phase(Phase::Stopping);
    if let Some(pid) = child.id() {
        myset_os::terminate(pid, grace).await;
    }
    let _ = child.wait().await;
    shared.set_pid(None);
}

/// The option file for a server on `datadir`.
pub fn server_config(shared: &Shared, datadir: &Path) -> ServerConfig {
    let spec = shared.spec();
    let layout = &shared.layout;
    ServerConfig {
        server_id: spec.server_id,
        role: spec.role,
        bind_address: shared.overrides.server_bind_host(&spec),
        port: spec.server.port,
        datadir: datadir.to_path_buf(),
        socket: layout.socket(),
        pid_file: layout.server_pid_file(),
        error_log: layout.server_log(),
        run_as_root: nix::unistd::geteuid().is_root(),
        admin_user: shared.secrets.admin_user.clone(),
        admin_password: shared.secrets.admin_password.clone(),
        includes: shared.overrides.server_option_files(spec.role),
        settings: spec.settings.for_role(spec.role),
        galera: spec.galera.as_ref().map(|g| GaleraConfig {
            cluster_name: g.cluster_name.clone(),
            node_host: spec.server.host.clone(),
            ports: g.ports,
            members: g.members.iter().map(|a| a.to_string()).collect(),
            sst_user: shared.secrets.admin_user.clone(),
            sst_password: shared.secrets.admin_password.clone(),
            causal_reads: g.causal_reads,
        }),
        tls: shared.tls.as_ref().map(|t| t.server_files()),
    }
}

/// The options of a Galera member's start. Forming the cluster: `--wsrep-new-cluster` for a
/// brand-new one, and for a bootstrap after a full outage also the recovered position (so the
/// cluster keeps its UUID), after marking the data dir safe to bootstrap from. Joining (and
/// every restart after the server once came up): the member's own position, so that after a
/// crash (seqno -1 in `grastate.dat`) it asks its donor for the missing write sets (IST)
/// rather than a full copy (SST), as `mysqld_safe --wsrep-recover` would arrange.
async fn galera_start_args(shared: &Shared, forms_cluster: bool) -> anyhow::Result<Vec<String>> {
    let spec = shared.spec();
    let Some(galera) = &spec.galera else {
        return Ok(Vec::new());
    };
    let start = if forms_cluster {
        &galera.start
    } else {
        &GaleraStart::Join
    };
    Ok(match start {
        GaleraStart::Join => joiner_position(shared)
            .await
            .map(|position| vec![myset_mariadb::galera::start_position_arg(&position)])
            .unwrap_or_default(),
        GaleraStart::NewCluster => vec!["--wsrep-new-cluster".into()],
        GaleraStart::Bootstrap { position } => {
            myset_mariadb::galera::mark_safe_to_bootstrap(&shared.layout.data())?;
            vec![
                "--wsrep-new-cluster".into(),
                myset_mariadb::galera::start_position_arg(position),
            ]
        }
    })
}

/// A joining member's last committed position, recovered from InnoDB after a crash; None for
/// an empty data dir, or when recovery fails (the member then gets a full state transfer).
async fn joiner_position(shared: &Shared) -> Option<myset_core::galera::Position> {
    let layout = &shared.layout;
    // The recovery reads the option file of the server about to start.
    if let Err(e) = write_server_config(shared, &layout.data()).await {
        tracing::warn!("cannot write the option file for position recovery: {e:#}");
        return None;
    }
    match myset_mariadb::galera::member_data(
        &shared.binaries.mariadbd,
        &layout.server_config(),
        &layout.data(),
        &layout.wsrep_recover_log(),
    )
    .await
    {
        Ok(myset_core::galera::MemberData::At { position, .. }) => Some(position),
        Ok(myset_core::galera::MemberData::Empty) => None,
        Err(e) => {
            tracing::warn!(
                "cannot recover the member's position; it will need a full state transfer: {e:#}"
            );
            None
        }
    }
}

/// Renders the option file of a server on `datadir`.
async fn write_server_config(shared: &Shared, datadir: &Path) -> anyhow::Result<()> {
    let config = server_config(shared, datadir).render();
    crate::blocking::write_atomic(shared.layout.server_config(), config.into_bytes(), 0o600)
        .await?;
    Ok(())
}

/// Renders the option file and starts mariadbd on `datadir` with `extra_args`.
pub async fn spawn_server(
    shared: &Shared,
    datadir: &Path,
    extra_args: &[&str],
) -> anyhow::Result<Child> {
    let layout = &shared.layout;
    write_server_config(shared, datadir).await?;
    let spec = shared.spec();
    shared.server_started_with(spec.settings.for_role(spec.role));
    let log = append_log(&layout.server_log())?;
    let child = Command::new(&shared.binaries.mariadbd)
        .arg(format!(
            "--defaults-file={}",
            layout.server_config().display()
        ))
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", shared.binaries.mariadbd.display()))?;
    tracing::info!(pid = child.id(), "started mariadbd");
    // mariadbd writes its pid file only once its storage is up, which for a Galera joiner is
    // after the state transfer. Until then `myset kill` and the next agent's leftover check
    // would not find it, and a server left running would hold the member's ports, so the
    // agent writes the file at once (mariadbd overwrites it with the same pid).
    if let Some(pid) = child.id() {
        let file = layout.server_pid_file();
        if let Err(e) =
            crate::blocking::write_atomic(file.clone(), format!("{pid}\n").into_bytes(), 0o644)
                .await
        {
            tracing::warn!("cannot write {}: {e:#}", file.display());
        }
    }
    Ok(child)
}

/// Runs a MariaDB tool to completion with its output appended to `log`; a failure names the
/// tool and the log to read.
pub async fn run_logged(mut command: Command, what: &str, log: &Path) -> anyhow::Result<()> {
    let out = append_log(log)?;
    let status = command
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .status()
        .await
        .with_context(|| format!("cannot run {what}"))?;
    if !status.success() {
        anyhow::bail!("{what} failed ({status}); see {}", log.display());
    }
    Ok(())
}

pub fn append_log(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Waits until the server accepts admin logins over TCP, or fails if it exits first. Returns
/// the server's version, read on that first login (None if that one query failed).
async fn wait_until_answering(
    shared: &Shared,
    child: &mut Child,
) -> anyhow::Result<Option<String>> {
    let spec = &shared.spec();
    let host = &shared.overrides.server_local_host(spec);
    let s = &shared.secrets;
    let ca = &shared.tls_ca();
    let answered = myset_os::poll_for(START_DEADLINE, START_POLL, || {
        let exited = child.try_wait();
        async move {
            if let Some(status) = exited? {
                anyhow::bail!(
                    "mariadbd exited with {status} while starting; see {}",
                    shared.layout.server_log().display()
                );
            }
            let target = Target::Tcp {
                host,
                port: spec.server.port,
                ca: ca.as_deref(),
            };
            let login = Duration::from_secs(2);
            match AdminClient::connect(target, &s.admin_user, &s.admin_password, login).await {
                Ok(mut c) => {
                    let version = c
                        .scalar(myset_mariadb::sql::SERVER_VERSION)
                        .await
                        .ok()
                        .flatten();
                    c.disconnect().await;
                    Ok(Some(version))
                }
                Err(_) => Ok(None),
            }
        }
    })
    .await?;
    answered.ok_or_else(|| anyhow::anyhow!("mariadbd did not answer within {START_DEADLINE:?}"))
}

/// A previous agent may have died and left its mariadbd running on our data dir. It is killed,
/// not asked to stop: it may be a frozen former primary, and letting it run again, even to shut
/// down, could commit writes nobody else has. InnoDB and sync_binlog make the kill safe.
///
/// Its whole process group goes with it (the earlier agent's, as a Pod's container would):
/// a Galera state transfer's script and socat outlive the server otherwise, and the next
/// transfer waits on them forever ("Previous SST is not completed"). So does such a script
/// left alone, found by the pid file it keeps in the data dir.
pub async fn stop_leftover_server(layout: &InstanceLayout) {
    let config = layout.server_config();
    let leftovers = [
        myset_os::owned_pid(&layout.server_pid_file(), &config.to_string_lossy()),
        leftover_transfer(layout),
    ];
    for pid in leftovers.into_iter().flatten() {
        tracing::warn!(
            pid,
            "killing a process left behind by an earlier agent, with its group"
        );
        myset_os::kill_group_of(pid);
        myset_os::kill_and_wait(pid).await;
    }
}

/// A Galera state transfer's script still running on our data dir, found by the pid file it
/// keeps there.
fn leftover_transfer(layout: &InstanceLayout) -> Option<u32> {
    myset_os::owned_pid(&layout.data().join("wsrep_sst.pid"), "wsrep_sst")
}

/// Before a server starts again: a state transfer's script (and its socat, mbstream and
/// mariadb-backup) that outlived the server that ran it is killed with its children. It is
/// in this agent's own process group, so the group cannot go; left alone, every later transfer
/// waits on it ("Previous SST is not completed") until mariadbd aborts.
async fn stop_leftover_transfer(layout: &InstanceLayout) {
    if let Some(pid) = leftover_transfer(layout) {
        tracing::warn!(
            pid,
            "killing a state transfer left behind by the last server"
        );
        myset_os::kill_tree(pid);
        myset_os::kill_and_wait(pid).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_member_that_cannot_rejoin_by_itself_is_restarted() {
        // Outside any view: nothing brings it back but a restart.
        assert!(wedged(GaleraLink::OutsideAnyView, false));
        assert!(wedged(GaleraLink::OutsideAnyView, true));
        // A donor is wedged only once no transfer runs: a long SST must be left to finish.
        assert!(!wedged(GaleraLink::Donor, true));
        assert!(wedged(GaleraLink::Donor, false));
        // Cut off or synced: it rejoins by itself, or is fine.
        assert!(!wedged(GaleraLink::InAView, false));
    }
}
