//! The everyday commands: `list`, `shell`, `logs`, `events --follow` and `completions`.

use crate::args::{Cli, Output};
use crate::commands::{cluster_stopped, ensure_not_stopped, print_events, sql_address};
use crate::wait;
use anyhow::{bail, Context};
use myset_api::{ClusterStatus, Event};
use myset_local::{ClusterDir, ControllerInfo};
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often `--follow` looks for more.
pub const FOLLOW_POLL: Duration = Duration::from_millis(250);
/// How long `list` waits for a running controller's status before calling it degraded.
const LIST_STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// `myset completions SHELL`.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    use clap::CommandFactory;
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "myset", &mut out);
    let text = String::from_utf8(out).context("the completion script is not UTF-8")?;
    say!("{}", text.trim_end());
    Ok(())
}

/// How a cluster is doing, as far as `list` can tell cheaply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    /// Its controller runs and every instance is Ready.
    Running,
    /// Something runs, but not all of it: an instance not Ready, a controller that does not
    /// answer or is gone while agents run.
    Degraded,
    /// Nothing runs (after `myset down`, or a reboot).
    Stopped,
    /// Its record cannot be read.
    Unreadable,
}

impl Health {
    fn word(self) -> &'static str {
        match self {
            Health::Running => "running",
            Health::Degraded => "degraded",
            Health::Stopped => "stopped",
            Health::Unreadable => "unreadable",
        }
    }
}

/// One line of `list`.
struct Listed {
    name: String,
    health: Health,
    /// Ready instances and desired instances, when known.
    ready: Option<(usize, u32)>,
    rw: String,
    ro: String,
}

/// `myset list`: every cluster of the state dir.
pub async fn list(state_dir: &Path, output: Output) -> anyhow::Result<()> {
    let mut listed = Vec::new();
    for name in myset_local::store::cluster_names(state_dir) {
        listed.push(summarise(&ClusterDir::new(state_dir, &name)).await);
    }
    match output {
        Output::Json => {
            let items: Vec<serde_json::Value> = listed
                .iter()
                .map(|l| {
                    serde_json::json!({
                        "name": l.name,
                        "state": l.health.word(),
                        "ready": l.ready.map(|(ready, _)| ready),
                        "replicas": l.ready.map(|(_, replicas)| replicas),
                        "rw": l.rw,
                        "ro": l.ro,
                    })
                })
                .collect();
            say!("{}", serde_json::to_string_pretty(&items)?);
        }
        Output::Table if listed.is_empty() => {
            say!(
                "no clusters in {}; create one with `myset up`",
                state_dir.display()
            );
        }
        Output::Table => {
            say!(
                "{:<20} {:<10} {:<8} {:<22} RO",
                "NAME",
                "STATE",
                "READY",
                "RW"
            );
            for l in &listed {
                let ready = l
                    .ready
                    .map_or_else(|| "-".to_string(), |(r, n)| format!("{r}/{n}"));
                say!(
                    "{:<20} {:<10} {:<8} {:<22} {}",
                    l.name,
                    l.health.word(),
                    ready,
                    l.rw,
                    l.ro
                );
            }
        }
    }
    Ok(())
}

async fn summarise(dir: &ClusterDir) -> Listed {
    let Ok(state) = dir.load_state() else {
        return Listed {
            name: dir.name().to_string(),
            health: Health::Unreadable,
            ready: None,
            rw: "-".into(),
            ro: "-".into(),
        };
    };
    let endpoint = |port: u16| format!("{}:{port}", state.bind_host);
    let observed = match ControllerInfo::find(dir) {
        Some(info) => match wait::api_client_with_timeout(dir, &info, LIST_STATUS_TIMEOUT) {
            Ok(api) => api.get::<ClusterStatus>("/status").await.ok(),
            Err(_) => None,
        },
        None => None,
    };
    let (health, ready) = match observed {
        Some(status) => {
            let ready = status.instances.iter().filter(|i| i.ready).count();
            let health = if status.converged() {
                Health::Running
            } else {
                Health::Degraded
            };
            (health, Some((ready, status.replicas)))
        }
        None if cluster_stopped(dir, &state) => (Health::Stopped, None),
        None => (Health::Degraded, None),
    };
    Listed {
        name: dir.name().to_string(),
        health,
        ready,
        rw: endpoint(state.rw_port),
        ro: endpoint(state.ro_port),
    }
}

/// `myset shell`: becomes the `mariadb` client, logged in through the cluster's client.cnf
/// (mode 0600), so the password never shows in `ps`.
pub fn shell(dir: &ClusterDir, target: &str, client_args: &[String]) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let state = dir.load_state()?;
    let (_, host, port) = sql_address(dir, &state, target)?;
    ensure_not_stopped(dir, &state)?;
    let secrets = dir.load_secrets()?;
    // Rewritten from the record, so a cluster made by an older myset has one too.
    dir.write_client_config(&secrets, &state)?;
    let client = myset_mariadb::Binaries::find()?.client;
    let error = std::process::Command::new(&client)
        // Must come first: the client reads it only there.
        .arg(format!(
            "--defaults-extra-file={}",
            dir.client_config().display()
        ))
        .args(["--protocol=TCP", "-h", &host, "-P", &port.to_string()])
        .args(client_args)
        .exec();
    Err(error).with_context(|| format!("cannot run {}", client.display()))
}

/// Which log `myset logs` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LogTarget {
    Controller,
    Agent(u32),
    Server(u32),
}

/// Reads `logs`' target: controller or an ordinal that has an instance directory.
fn log_target(target: &str, server: bool, ordinals: &[u32]) -> Result<LogTarget, String> {
    let valid = || {
        let list: Vec<String> = ordinals.iter().map(u32::to_string).collect();
        format!(
            "use controller or an instance ordinal ({})",
            if list.is_empty() {
                "none yet".to_string()
            } else {
                list.join(", ")
            }
        )
    };
    match (target, target.parse::<u32>()) {
        ("controller", _) if server => {
            Err("--server is for an instance's log: give its ordinal, not controller".into())
        }
        ("controller", _) => Ok(LogTarget::Controller),
        (_, Ok(o)) if ordinals.contains(&o) && server => Ok(LogTarget::Server(o)),
        (_, Ok(o)) if ordinals.contains(&o) => Ok(LogTarget::Agent(o)),
        (_, Ok(o)) => Err(format!("instance {o} has no logs: {}", valid())),
        _ => Err(format!("unknown log {target:?}: {}", valid())),
    }
}

fn log_path(dir: &ClusterDir, target: &LogTarget) -> PathBuf {
    match target {
        LogTarget::Controller => dir.controller_log(),
        LogTarget::Agent(o) => dir.agent_log(*o),
        LogTarget::Server(o) => dir.server_log(*o),
    }
}

/// `myset logs`.
pub async fn logs(
    dir: &ClusterDir,
    target: &str,
    server: bool,
    follow: bool,
) -> anyhow::Result<()> {
    dir.load_state()?;
    let target =
        log_target(target, server, &wait::instance_ordinals(dir)).map_err(anyhow::Error::msg)?;
    let path = log_path(dir, &target);
    if !follow && !path.exists() {
        bail!(
            "{} does not exist yet (nothing was logged there); `myset logs --follow` waits for it",
            path.display()
        );
    }
    tokio::task::spawn_blocking(move || {
        let mut tail = Tail::new(path);
        loop {
            for line in tail.read_lines(!follow)? {
                say!("{line}");
            }
            if !follow {
                return Ok(());
            }
            std::thread::sleep(FOLLOW_POLL);
        }
    })
    .await?
}

/// `myset events --follow`: the events so far, then each new one as the controller records
/// it (events.jsonl is the controller's log of them; its byte offset is the cursor).
pub async fn follow_events(dir: &ClusterDir, output: Output) -> anyhow::Result<()> {
    let path = dir.events_file();
    tokio::task::spawn_blocking(move || {
        let mut tail = Tail::new(path);
        loop {
            let events: Vec<Event> = tail
                .read_lines(false)?
                .iter()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            print_events(&events, output)?;
            std::thread::sleep(FOLLOW_POLL);
        }
    })
    .await?
}

/// Reads what was appended to a file since the last read, line by line, like `tail -f`.
struct Tail {
    path: PathBuf,
    /// Where the next read starts: just after the last whole line returned.
    offset: u64,
}

impl Tail {
    fn new(path: PathBuf) -> Self {
        Tail { path, offset: 0 }
    }

    /// The whole lines appended since the last call; with `partial`, also a last line that
    /// has no newline yet. A file that shrank was replaced or truncated: read from its start.
    /// A file that does not exist yet has no lines.
    fn read_lines(&mut self, partial: bool) -> anyhow::Result<Vec<String>> {
        let mut file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", self.path.display()))
            }
        };
        let len = file.metadata()?.len();
        if len < self.offset {
            self.offset = 0;
        }
        file.seek(std::io::SeekFrom::Start(self.offset))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {}", self.path.display()))?;
        let (lines, consumed) = whole_lines(&bytes, partial);
        self.offset += consumed as u64;
        Ok(lines)
    }
}

/// Splits `bytes` into lines; returns them and how many bytes they used. Without `partial`, a
/// last line without its newline is left for later (it is still being written).
fn whole_lines(bytes: &[u8], partial: bool) -> (Vec<String>, usize) {
    let end = match bytes.iter().rposition(|&b| b == b'\n') {
        _ if partial => bytes.len(),
        Some(last) => last + 1,
        None => 0,
    };
    let lines = String::from_utf8_lossy(&bytes[..end])
        .lines()
        .map(str::to_string)
        .collect();
    (lines, end)
}

/// Asks on a terminal whether to go on; anything but y or yes is no.
pub fn confirm(question: &str) -> anyhow::Result<bool> {
    use std::io::Write;
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// Whether a person is there to answer a question: stdin and stderr are terminals.
pub fn interactive() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_lines_keep_a_line_being_written_for_later() {
        assert_eq!(
            whole_lines(b"a\nb\nhalf", false),
            (vec!["a".to_string(), "b".to_string()], 4)
        );
        assert_eq!(
            whole_lines(b"a\nhalf", true),
            (vec!["a".to_string(), "half".to_string()], 6)
        );
        assert_eq!(whole_lines(b"half", false), (vec![], 0));
        assert_eq!(whole_lines(b"", true), (vec![], 0));
    }

    #[test]
    fn a_tail_reads_what_was_appended_and_starts_over_on_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut tail = Tail::new(path.clone());
        assert!(tail.read_lines(false).unwrap().is_empty(), "no file yet");
        std::fs::write(&path, "one\ntw").unwrap();
        assert_eq!(tail.read_lines(false).unwrap(), ["one"]);
        std::fs::write(&path, "one\ntwo\nthree\n").unwrap();
        assert_eq!(tail.read_lines(false).unwrap(), ["two", "three"]);
        assert!(tail.read_lines(false).unwrap().is_empty());
        std::fs::write(&path, "new\n").unwrap();
        assert_eq!(tail.read_lines(false).unwrap(), ["new"], "truncated");
    }

    #[test]
    fn a_log_target_is_controller_or_an_instance_with_logs() {
        let ordinals = [0, 1, 2];
        assert_eq!(
            log_target("controller", false, &ordinals),
            Ok(LogTarget::Controller)
        );
        assert_eq!(log_target("1", false, &ordinals), Ok(LogTarget::Agent(1)));
        assert_eq!(log_target("2", true, &ordinals), Ok(LogTarget::Server(2)));
        assert_eq!(
            log_target("7", false, &ordinals),
            Err("instance 7 has no logs: use controller or an instance ordinal (0, 1, 2)".into())
        );
        assert_eq!(
            log_target("agent", false, &ordinals),
            Err("unknown log \"agent\": use controller or an instance ordinal (0, 1, 2)".into())
        );
        assert!(log_target("controller", true, &ordinals).is_err());
    }
}
