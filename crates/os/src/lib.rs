//! Small operating-system helpers shared by the agent, the controller and the CLI.

mod poll;
mod process;

pub use poll::{poll_for, poll_until, poll_until_async};
pub use process::{
    cmdline, kill_and_wait, kill_group_of, kill_tree, owned_pid, pid_alive, pid_matches, read_pid,
    signal, terminate, wait_gone,
};

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

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

/// Runs blocking file-system work (fsync, large deletes) on tokio's blocking pool, so it
/// never stalls the async threads.
pub async fn off_thread<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(std::io::Error::other)?
}

/// Where [`set_aside`] puts a data dir: `data.<label>` beside it.
pub fn set_aside_path(data: &Path, label: &str) -> std::path::PathBuf {
    data.with_file_name(format!("data.{label}"))
}

/// Moves a data dir aside for inspection (a rename on the same volume, so nothing is copied
/// and nothing is lost); returns where it went. Blocking: run it with [`off_thread`].
pub fn set_aside(data: &Path, label: &str) -> std::io::Result<std::path::PathBuf> {
    let aside = set_aside_path(data, label);
    std::fs::rename(data, &aside)?;
    Ok(aside)
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
