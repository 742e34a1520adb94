//! Waiting on conditions, with deadlines and progress for the person watching.

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use myset_api::{ClusterStatus, InstanceStatus};
use myset_local::{ClusterDir, ControllerInfo};
use std::time::{Duration, Instant};

/// How often the CLI asks the controller how things stand. A status call reads the
/// controller's memory only, so asking often costs little, and a command returns within this
/// of the cluster being where it waits for it.
const POLL: Duration = Duration::from_millis(50);
/// A dead controller is restarted by an agent within a fraction of a second; gone longer than
/// this, it is not coming back by itself (or keeps dying), and waiting is pointless.
const CONTROLLER_GONE: Duration = Duration::from_secs(5);

pub fn api_client(dir: &ClusterDir, info: &ControllerInfo) -> anyhow::Result<myset_http::Client> {
    api_client_with_timeout(dir, info, Duration::from_secs(10))
}

/// The controller's API client, over HTTPS when the cluster has TLS, every call bounded by
/// `timeout`.
pub fn api_client_with_timeout(
    dir: &ClusterDir,
    info: &ControllerInfo,
    timeout: Duration,
) -> anyhow::Result<myset_http::Client> {
    let secrets = dir.load_secrets()?;
    let state = dir.load_state()?;
    Ok(myset_local::tls::api_access(dir, &state, &secrets.api_token)?.client(&info.api, timeout))
}

/// A failed call to the controller's API, in the user's terms: its own message when it
/// answered with an error, otherwise what happened to it, without its internal address.
pub fn controller_error(dir: &ClusterDir, e: myset_http::CallError) -> anyhow::Error {
    let name = dir.name();
    match e {
        myset_http::CallError::Status { message, .. } => anyhow::anyhow!("{message}"),
        myset_http::CallError::Unreachable { .. } => anyhow::anyhow!(
            "the controller of cluster {name} does not answer: retry shortly (its agents restart a dead controller), or see `myset logs --name {name} controller`"
        ),
        myset_http::CallError::Undecodable { .. } => anyhow::anyhow!(
            "the controller of cluster {name} answered in a form this myset does not read (another myset version running it?): run `myset down --name {name}` and `myset up --name {name}` with this one"
        ),
    }
}

/// The last non-empty line of the controller's log, to explain why it stopped.
fn controller_last_words(dir: &ClusterDir) -> String {
    std::fs::read_to_string(dir.controller_log())
        .unwrap_or_default()
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| "no log".into())
}

/// Waits until the controller `pid` publishes its API.
pub async fn controller_started(dir: &ClusterDir, pid: u32) -> anyhow::Result<myset_http::Client> {
    let limit = Duration::from_secs(30);
    let info = myset_os::poll_for(limit, POLL, || async {
        if let Some(info) = ControllerInfo::find(dir).filter(|i| i.pid == pid) {
            return Ok(Some(info));
        }
        if !myset_os::pid_alive(pid) {
            bail!(
                "the controller exited at start: {} (log: {})",
                controller_last_words(dir),
                dir.controller_log().display()
            );
        }
        Ok(None)
    })
    .await?;
    match info {
        Some(info) => api_client(dir, &info),
        None => bail!(
            "the controller did not start within {}s; see {}",
            limit.as_secs(),
            dir.controller_log().display()
        ),
    }
}

/// Waits until every desired instance is Ready and `done` holds, showing each instance's state.
pub async fn converged(
    dir: &ClusterDir,
    api: &myset_http::Client,
    timeout: Duration,
    done: impl Fn(&ClusterStatus) -> bool,
) -> anyhow::Result<ClusterStatus> {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>3} {wide_msg}").expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    // Without a terminal the spinner draws nothing: a plain line per change of step instead.
    let mut plain = (!std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .then(std::collections::BTreeMap::<u32, String>::new);
    let deadline = Instant::now() + timeout;
    let mut last: Option<ClusterStatus> = None;
    let mut api = api.clone();
    let mut missing_since: Option<Instant> = None;
    let result = loop {
        match api.get::<ClusterStatus>("/status").await {
            Ok(status) => {
                bar.set_message(summary(&status));
                if let Some(shown) = plain.as_mut() {
                    for i in &status.instances {
                        let step = step(i, &status.name);
                        if shown.get(&i.ordinal) != Some(&step) {
                            eprintln!("{}: {step}", i.name);
                            shown.insert(i.ordinal, step);
                        }
                    }
                }
                if status.converged() && done(&status) {
                    break Ok(status);
                }
                last = Some(status);
            }
            Err(_) => match ControllerInfo::find(dir) {
                // A controller that died is restarted by the agents: follow the new one.
                Some(info) => {
                    missing_since = None;
                    api = api_client(dir, &info)?;
                }
                None => {
                    let since = *missing_since.get_or_insert_with(Instant::now);
                    if dir.stop_marker().exists() || since.elapsed() > CONTROLLER_GONE {
                        break Err(anyhow::anyhow!(
                            "the controller stopped: {} (see `myset logs --name {} controller`)",
                            controller_last_words(dir),
                            dir.name()
                        ));
                    }
                }
            },
        }
        if Instant::now() > deadline {
            let detail = last.as_ref().map(summary).unwrap_or_default();
            break Err(anyhow::anyhow!(
                "not converged after {}s ({detail}); the cluster keeps trying: watch `myset status --name {}` and the logs under {}",
                timeout.as_secs(),
                dir.name(),
                dir.root().display()
            ));
        }
        tokio::time::sleep(POLL).await;
    };
    bar.finish_and_clear();
    result
}

fn summary(status: &ClusterStatus) -> String {
    status
        .instances
        .iter()
        .map(|i| {
            let ready = if i.ready {
                "ready".to_string()
            } else {
                i.state.to_string()
            };
            format!("{}: {ready}", i.name)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What an instance is doing, in a few words that change only when it moves to another step
/// (no byte counts), for the plain progress lines.
fn step(i: &InstanceStatus, cluster: &str) -> String {
    use myset_api::{InstanceState, Phase};
    if i.ready {
        return "ready".into();
    }
    match &i.state {
        InstanceState::Stopped => "stopped".into(),
        InstanceState::NotRunning => "agent not running yet".into(),
        InstanceState::Unreachable => "agent starting".into(),
        InstanceState::Agent { phase } => match phase {
            Phase::Initializing => "bootstrapping a new data dir".into(),
            Phase::Cloning { donor, .. } => format!("cloning from {cluster}-{donor}"),
            Phase::Preparing { donor } => format!("preparing the clone from {cluster}-{donor}"),
            Phase::Starting => "starting mariadbd".into(),
            Phase::Running => "running, not Ready yet".into(),
            Phase::Waiting { reason } => format!("waiting: {reason}"),
            Phase::Stopping => "stopping".into(),
        },
    }
}

pub async fn process_gone(pid: u32, limit: Duration) -> anyhow::Result<()> {
    if !myset_os::wait_gone(pid, limit).await {
        bail!("process {pid} did not stop within {}s", limit.as_secs());
    }
    Ok(())
}

/// Ordinals that have an instance directory, members or not (kept volumes included).
pub fn instance_ordinals(dir: &ClusterDir) -> Vec<u32> {
    let prefix = format!("{}-", dir.name());
    let Ok(entries) = std::fs::read_dir(dir.root().join("instances")) else {
        return Vec::new();
    };
    let mut ordinals: Vec<u32> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_prefix(&prefix)?.parse().ok())
        .collect();
    ordinals.sort_unstable();
    ordinals
}
