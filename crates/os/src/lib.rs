//! Small operating-system helpers shared by the agent, the controller and the CLI.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

/// Writes `contents` to `path` atomically (temp file, fsync, rename) with the given mode, so a
/// crash never leaves a half-written file behind.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

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
    let deadline = Instant::now() + grace;
    while pid_alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if pid_alive(pid) {
        signal(pid, Signal::SIGKILL);
        let hard_deadline = Instant::now() + Duration::from_secs(10);
        while pid_alive(pid) && Instant::now() < hard_deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Reads a pid file; None when absent or unreadable.
pub fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether a TCP port can be bound on `host` right now.
pub fn port_free(host: &str, port: u16) -> bool {
    std::net::TcpListener::bind((host, port)).is_ok()
}

/// A port the kernel considers free on `host`, for assigning to a new instance.
pub fn free_port(host: &str) -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind((host, 0))?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_sets_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret.json");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(p.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!p.with_extension("tmp").exists());
    }

    #[test]
    fn own_process_is_alive_and_matches() {
        let me = std::process::id();
        assert!(pid_alive(me));
        assert!(cmdline(me).is_some());
        assert!(!pid_matches(me, "certainly-not-in-the-cmdline-xyz"));
        assert!(!pid_alive(u32::MAX - 1));
    }
}
