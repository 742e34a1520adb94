//! Processes myset started: finding them again, signalling them and waiting for them to go.
//!
//! A pid alone is not an identity (pids are reused), so every lookup checks that the process's
//! command line carries a marker of ours, such as the instance directory.

use crate::poll::poll_until_async;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::Path;
use std::time::Duration;

/// How long a SIGKILLed process may take to be gone (its threads exit one by one).
const KILL_WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(10);

/// Whether a process with this pid exists (a zombie counts as gone). Every thread counts: a
/// killed multi-threaded process shows its main thread as a zombie while the others are still
/// exiting, and until the last one is gone its sockets and files are still open.
pub fn pid_alive(pid: u32) -> bool {
    let threads = match std::fs::read_dir(format!("/proc/{pid}/task")) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("stat"))
            .collect::<Vec<_>>(),
        Err(_) => vec![format!("/proc/{pid}/stat").into()],
    };
    threads.iter().any(|stat| running(stat))
}

/// Whether a /proc stat file describes a task that has not exited.
fn running(stat: &Path) -> bool {
    match std::fs::read_to_string(stat) {
        // The state letter follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// The process's command line, arguments joined by spaces.
pub fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// Whether `pid` is alive and its command line contains `needle`, which guards against
/// signalling an unrelated process that reused a stale pid.
pub fn pid_matches(pid: u32, needle: &str) -> bool {
    pid_alive(pid) && cmdline(pid).is_some_and(|c| c.contains(needle))
}

pub fn signal(pid: u32, sig: Signal) -> bool {
    i32::try_from(pid).is_ok_and(|p| kill(Pid::from_raw(p), sig).is_ok())
}

/// Asks a process to stop with SIGTERM, then SIGKILLs it after `grace`. Returns once it is gone.
/// A stopped (SIGSTOP) process is continued first so it can act on SIGTERM.
pub async fn terminate(pid: u32, grace: Duration) {
    if !pid_alive(pid) {
        return;
    }
    signal(pid, Signal::SIGTERM);
    signal(pid, Signal::SIGCONT);
    if !wait_gone(pid, grace).await {
        kill_and_wait(pid).await;
    }
}

/// SIGKILLs a process and waits until it is gone. Returns whether it was alive.
pub async fn kill_and_wait(pid: u32) -> bool {
    if !pid_alive(pid) {
        return false;
    }
    signal(pid, Signal::SIGKILL);
    wait_gone(pid, KILL_WAIT).await;
    true
}

/// Waits until the process is gone, at most `limit`. Returns whether it is gone.
pub async fn wait_gone(pid: u32, limit: Duration) -> bool {
    poll_until_async(limit, POLL, || async move { !pid_alive(pid) }).await
}

/// SIGKILLs the whole process group `pid` belongs to, as the death of a Pod kills every process
/// of its container: a server's helpers (a state transfer's script, its socat) are in its
/// agent's group and would otherwise outlive it, holding the member's ports and files. Never
/// this process's own group. Returns whether a group was signalled.
pub fn kill_group_of(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    let Ok(group) = nix::unistd::getpgid(Some(Pid::from_raw(raw))) else {
        return false;
    };
    if nix::unistd::getpgrp() == group {
        return false;
    }
    nix::sys::signal::killpg(group, Signal::SIGKILL).is_ok()
}

/// SIGKILLs `pid` and every process descended from it. The whole tree is collected before
/// any signal: a killed parent's children are reparented, not killed, and could no longer be
/// found by their parent.
pub fn kill_tree(pid: u32) {
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(children_of(parent));
        i += 1;
    }
    for p in tree {
        signal(p, Signal::SIGKILL);
    }
}

/// The pids whose parent is `pid`, from /proc.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| parent_of(child) == Some(pid))
        .collect()
}

/// A process's parent pid (the field after the command name in /proc/PID/stat).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain spaces or parentheses.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// Reads a pid file; None when absent or unreadable.
pub fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The live process whose pid is in `pid_file` and whose command line contains `marker`.
pub fn owned_pid(pid_file: &Path, marker: &str) -> Option<u32> {
    read_pid(pid_file).filter(|&pid| pid_matches(pid, marker))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    /// `sh` running a `sleep` child that would outlive it; returns both. `own_group` puts the
    /// parent in a process group of its own (as an agent's children are); otherwise it stays in
    /// this process's group.
    fn parent_with_child(own_group: bool) -> (std::process::Child, u32) {
        let mut command = std::process::Command::new("sh");
        command
            .args(["-c", "sleep 300 & echo $!; wait"])
            .stdout(std::process::Stdio::piped());
        if own_group {
            command.process_group(0);
        }
        let mut parent = command.spawn().expect("sh runs");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(parent.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("the child's pid");
        (parent, line.trim().parse().expect("a pid"))
    }

    /// Waits for `pid` to be gone with the crate's own wait.
    fn gone(pid: u32) -> bool {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime")
            .block_on(wait_gone(pid, KILL_WAIT))
    }

    #[test]
    fn killing_a_group_takes_the_helpers_a_process_left_behind() {
        let (mut parent, child) = parent_with_child(true);
        assert!(pid_alive(child));
        assert!(kill_group_of(parent.id()));
        let _ = parent.wait();
        assert!(gone(child), "the helper outlived its group's kill");
        // This process's own group is never signalled.
        assert!(!kill_group_of(std::process::id()));
    }

    #[test]
    fn killing_a_tree_takes_the_children_its_root_would_leave_behind() {
        // The root stays in this process's group, as a server's helpers stay in its agent's.
        let (mut root, child) = parent_with_child(false);
        assert_eq!(parent_of(child), Some(root.id()));
        kill_tree(root.id());
        let _ = root.wait();
        assert!(gone(child), "the child outlived its parent's tree kill");
    }
}
