//! Waiting on conditions, with deadlines and progress for the person watching.

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use myset_api::ClusterStatus;
use myset_local::{ClusterDir, ControllerInfo};
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(250);
/// A dead controller is restarted by an agent within a fraction of a second; gone longer than
/// this, it is not coming back by itself (or keeps dying), and waiting is pointless.
const CONTROLLER_GONE: Duration = Duration::from_secs(5);

pub fn api_client(dir: &ClusterDir, info: &ControllerInfo) -> anyhow::Result<myset_http::Client> {
    let secrets = dir.load_secrets()?;
    Ok(myset_http::Client::new(
        format!("http://{}", info.api),
        &secrets.api_token,
        Duration::from_secs(10),
    ))
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
    let deadline = Instant::now() + timeout;
    let mut last: Option<ClusterStatus> = None;
    let mut api = api.clone();
    let mut missing_since: Option<Instant> = None;
    let result = loop {
        match api.get::<ClusterStatus>("/status").await {
            Ok(status) => {
                bar.set_message(summary(&status));
                if status.converged() && done(&status) {
                    break Ok(status);
                }
                last = Some(status);
            }
            Err(e) => match ControllerInfo::find(dir) {
                // A controller that died is restarted by the agents: follow the new one.
                Some(info) => {
                    missing_since = None;
                    api = api_client(dir, &info)?;
                }
                None => {
                    let since = *missing_since.get_or_insert_with(Instant::now);
                    if dir.stop_marker().exists() || since.elapsed() > CONTROLLER_GONE {
                        break Err(anyhow::anyhow!(
                            "the controller stopped ({e}): {} (log: {})",
                            controller_last_words(dir),
                            dir.controller_log().display()
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
