//! The controller as a local process: how it is started, found and run.

use crate::layout::ClusterDir;
use crate::lock::{ControllerLock, INHERITED_LOCK_FD};
use crate::runtime::{spawn_detached, LocalRuntime};
use anyhow::Context;
use myset_api::Address;
use myset_controller::{Controller, Timing};
use serde::{Deserialize, Serialize};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// Written by a running controller so the CLI can find its API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControllerInfo {
    pub pid: u32,
    pub api: Address,
}

impl ControllerInfo {
    /// The running controller of `dir`, if there is one.
    pub fn find(dir: &ClusterDir) -> Option<ControllerInfo> {
        Self::read(dir)
            .filter(|info| myset_os::pid_matches(info.pid, &dir.root().to_string_lossy()))
    }

    /// What the last controller wrote, alive or not (a killed one leaves its file behind).
    pub fn read(dir: &ClusterDir) -> Option<ControllerInfo> {
        let text = std::fs::read_to_string(dir.controller_info()).ok()?;
        serde_json::from_str(&text).ok()
    }
}

fn controller_command(dir: &ClusterDir, exe: &Path, state_dir: &Path) -> Command {
    let mut command = Command::new(exe);
    command
        .arg("--state-dir")
        .arg(state_dir)
        .arg("controller")
        .arg("--name")
        .arg(dir.name())
        .arg("--cluster-dir")
        .arg(dir.root());
    command
}

/// Starts the controller of `dir` as a background process running `exe controller`; it takes
/// the controller lock itself.
pub fn spawn_controller(dir: &ClusterDir, exe: &Path, state_dir: &Path) -> anyhow::Result<u32> {
    let child = spawn_detached(
        &mut controller_command(dir, exe, state_dir),
        &dir.controller_log(),
    )
    .with_context(|| format!("cannot start {}", exe.display()))?;
    Ok(child.id())
}

/// Starts a controller that inherits `lock` (so nobody can start another in between), in the
/// network namespace `netns` when given (an agent in a namespace of its own starts it back in
/// the one the endpoints live in). Returns the child, for its exit to be waited on.
pub fn spawn_controller_holding(
    dir: &ClusterDir,
    exe: &Path,
    state_dir: &Path,
    lock: ControllerLock,
    netns: Option<&OwnedFd>,
) -> anyhow::Result<Child> {
    let mut command = controller_command(dir, exe, state_dir);
    command.arg("--inherited-lock");
    let lock_fd = lock.raw_fd();
    let netns_fd = netns.map(|fd| fd.as_raw_fd());
    // SAFETY: between fork and exec only async-signal-safe calls are made (dup2, fcntl,
    // setns), on descriptors that stay open in the parent for the whole spawn.
    unsafe {
        command.pre_exec(move || {
            if let Some(fd) = netns_fd {
                if libc_setns(fd) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if lock_fd != INHERITED_LOCK_FD && nix_dup2(lock_fd, INHERITED_LOCK_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // dup2 clears close-on-exec, but the same descriptor number would keep it.
            clear_cloexec(INHERITED_LOCK_FD);
            Ok(())
        });
    }
    let child = spawn_detached(&mut command, &dir.controller_log())
        .with_context(|| format!("cannot start {}", exe.display()))?;
    lock.hand_over();
    Ok(child)
}

fn libc_setns(fd: i32) -> i32 {
    use std::os::fd::BorrowedFd;
    // SAFETY: `fd` is the namespace handle the caller keeps open.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    match nix::sched::setns(borrowed, nix::sched::CloneFlags::CLONE_NEWNET) {
        Ok(()) => 0,
        Err(_) => -1,
    }
}

fn nix_dup2(from: i32, to: i32) -> i32 {
    // SAFETY: plain dup2 on descriptors of this (forked) process.
    unsafe { nix::libc::dup2(from, to) }
}

fn clear_cloexec(fd: i32) {
    // SAFETY: plain fcntl on a descriptor of this (forked) process.
    unsafe {
        nix::libc::fcntl(fd, nix::libc::F_SETFD, 0);
    }
}

/// A Prometheus `file_sd_configs` target list naming the controller's API address, over HTTPS
/// (`__scheme__`) when the API serves TLS; the scrape config gives the CA and the token. It adds
/// no `cluster` label: every metric has its own.
fn prometheus_targets(api: &Address, tls: bool) -> Vec<u8> {
    let scheme = if tls { "https" } else { "http" };
    let targets = serde_json::json!([{
        "targets": [api.to_string()],
        "labels": { "__scheme__": scheme },
    }]);
    serde_json::to_vec_pretty(&targets).expect("targets serialize")
}

/// The cluster's backup store, opened, with the controller's scratch dir.
fn backups_of(
    dir: &ClusterDir,
    state: &myset_api::ClusterState,
) -> anyhow::Result<myset_controller::backups::Backups> {
    let state_dir = dir.root().parent().unwrap_or(dir.root());
    let url = crate::layout::backup_store_url(state_dir, state)?;
    let store = myset_backup::Store::open(&url)?;
    Ok(myset_controller::backups::Backups::new(
        store,
        dir.backup_scratch(),
        myset_mariadb::Binaries::find()?,
    ))
}

/// The controller process: holds the cluster's lock, serves the API and reconciles. With
/// `inherited_lock`, the lock was taken by the agent that started it.
pub async fn run_controller(
    dir: ClusterDir,
    exe: PathBuf,
    inherited_lock: bool,
) -> anyhow::Result<()> {
    let _lock = if inherited_lock {
        ControllerLock::inherited()?
    } else {
        ControllerLock::try_acquire(&dir)?.ok_or_else(|| {
            anyhow::anyhow!("another controller already runs cluster {}", dir.name())
        })?
    };
    // A `myset down` that raced with an agent restarting the controller wins.
    if dir.stop_marker().exists() {
        tracing::info!(
            "cluster {} is stopped by `myset down`; not starting",
            dir.name()
        );
        return Ok(());
    }
    let state = dir.load_state()?;
    let secrets = dir.load_secrets()?;
    let api_listener = tokio::net::TcpListener::bind((state.bind_host.as_str(), 0)).await?;
    let info = ControllerInfo {
        pid: std::process::id(),
        api: Address {
            host: state.bind_host.clone(),
            port: api_listener.local_addr()?.port(),
        },
    };
    let metrics_token = dir.metrics_token()?;
    let tls = state.tls.enabled();
    let (runtime, controller_tls) = if state.tls.enabled() {
        let (controller_tls, api_cert) = crate::tls::controller_tls(&dir, &state)?;
        let access = myset_http::ApiAccess::verified_by(&secrets.api_token, &controller_tls.ca)?;
        let tls = crate::runtime::LocalTls {
            endpoint_host: state.bind_host.clone(),
            api_cert,
        };
        (
            LocalRuntime::new(dir.clone(), exe, state.netns, access, Some(tls)),
            Some(controller_tls),
        )
    } else {
        let access = myset_http::ApiAccess::plain(&secrets.api_token);
        (
            LocalRuntime::new(dir.clone(), exe, state.netns, access, None),
            None,
        )
    };
    let backups = backups_of(&dir, &state);
    let kernel_endpoints = match crate::endpoints::path_for(&state).map_err(anyhow::Error::msg)? {
        myset_api::EndpointPath::Kernel => {
            Some(crate::endpoints::KernelEndpoints::new(&dir, &state)?)
        }
        myset_api::EndpointPath::Userspace => None,
    };
    let controller = Controller::new(runtime, state, secrets, Timing::default());
    if let Some(kernel) = kernel_endpoints {
        controller.publish_endpoints_through(std::sync::Arc::new(kernel));
    }
    if let Some(tls) = controller_tls {
        controller.enable_tls(tls);
    }
    controller.enable_metrics_token(&metrics_token);
    match backups {
        Ok(backups) => controller.enable_backups(backups),
        // The cluster runs on; `status` shows no backups and `myset backup` says why.
        Err(e) => tracing::error!("backups are off: {e:#}"),
    }
    let run = controller.run_with(api_listener, || {
        // No secret in it, and Prometheus (another user) reads it.
        myset_os::write_atomic(
            &dir.prometheus_targets_file(),
            &prometheus_targets(&info.api, tls),
            0o644,
        )?;
        myset_os::write_atomic(
            &dir.controller_info(),
            &serde_json::to_vec(&info).expect("info serializes"),
            0o600,
        )
    });
    let result = run.await;
    let _ = std::fs::remove_file(dir.controller_info());
    result
}
