//! Running podman with a configuration of our own, so nothing of the machine's is changed.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::Output;

/// Settings that Debian's podman 4.3 needs in these sandboxes, given to every podman call
/// through `CONTAINERS_CONF` (which replaces the machine's containers.conf files):
/// - runc, not crun;
/// - cgroupfs and a file event log: there is no systemd;
/// - capped `nofile` and `nproc`: podman's default (1048576 open files) is above the
///   sandbox's hard limit, and the container would not start.
const CONTAINERS_CONF: &str = r#"# Written by myset-podman for its own podman calls (CONTAINERS_CONF).
[containers]
default_ulimits = ["nofile=10240:10240", "nproc=8192:8192"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"#;

/// podman, run with this crate's containers.conf.
#[derive(Debug, Clone)]
pub struct Podman {
    conf: PathBuf,
}

impl Podman {
    /// Writes the containers.conf into `dir`.
    pub fn configure(dir: &Path) -> std::io::Result<Podman> {
        let conf = dir.join("containers.conf");
        std::fs::write(&conf, CONTAINERS_CONF)?;
        Ok(Podman { conf })
    }

    /// The containers.conf, for other podman callers (`deploy/image/build`).
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// Why podman cannot run Pods here, if it cannot: missing, or not root (the Pods get IPs on
    /// a bridge network of their own, which rootless podman cannot give).
    pub fn unavailable() -> Option<String> {
        let found = std::process::Command::new("podman")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some("podman is not installed (scripts/install-deps installs it)".into());
        }
        if !nix::unistd::geteuid().is_root() {
            return Some("not root: the Pods need a rootful podman bridge network".into());
        }
        None
    }

    /// Runs `podman args...` and returns its standard output; fails with its standard error.
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = tokio::process::Command::new("podman")
            .args(args)
            .env("CONTAINERS_CONF", &self.conf)
            .kill_on_drop(true)
            .output()
            .await
            .context("cannot run podman")?;
        outcome(args, output)
    }

    /// [`Podman::run`] for synchronous callers (cleanup in a `Drop`).
    pub fn run_blocking(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = std::process::Command::new("podman")
            .args(args)
            .env("CONTAINERS_CONF", &self.conf)
            .output()
            .context("cannot run podman")?;
        outcome(args, output)
    }
}

fn outcome(args: &[&str], output: Output) -> anyhow::Result<String> {
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    // podman prints warnings before the error; the error is the last line.
    let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
    anyhow::bail!(
        "podman {} failed ({}): {}",
        args.first().copied().unwrap_or_default(),
        output.status,
        last.unwrap_or("no message")
    )
}
