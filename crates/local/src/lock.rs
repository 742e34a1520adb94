//! The controller lock: whoever holds it is the cluster's only controller.
//!
//! It is a `flock` on `<cluster>/controller.lock`, so the kernel releases it the moment its
//! holder dies, however it dies. An agent that finds it free takes it and hands it to the
//! controller it starts (the child inherits the locked file), so no other agent can start a
//! second controller in between.

use crate::layout::ClusterDir;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

/// The descriptor a controller receives its inherited lock on.
pub const INHERITED_LOCK_FD: RawFd = 3;

/// Held while this value lives: closing the file (here, or by the process dying) releases it.
pub struct ControllerLock(File);

impl ControllerLock {
    /// Takes the lock if no controller holds it; None when one does.
    pub fn try_acquire(dir: &ClusterDir) -> std::io::Result<Option<Self>> {
        let file = Self::open(dir)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(ControllerLock(file))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    /// Waits until no controller holds the lock, then takes it. The kernel wakes the waiter
    /// the moment the holder dies, so nothing needs to poll.
    pub fn acquire_blocking(dir: &ClusterDir) -> std::io::Result<Self> {
        let file = Self::open(dir)?;
        file.lock()?;
        Ok(ControllerLock(file))
    }

    fn open(dir: &ClusterDir) -> std::io::Result<File> {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.controller_lock())
    }

    /// The lock a parent took and handed over on `INHERITED_LOCK_FD`. Checked, and made
    /// close-on-exec so the agents this controller starts do not inherit it (they would keep
    /// it held after the controller died).
    pub fn inherited() -> anyhow::Result<Self> {
        use nix::fcntl::{fcntl, FcntlArg, FdFlag};
        // SAFETY: the parent put an open file on this descriptor for us; nothing else owns it.
        let file = unsafe { File::from_raw_fd(INHERITED_LOCK_FD) };
        fcntl(&file, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
        // Locking again through the same open file is a no-op that proves we hold it.
        file.try_lock()
            .map_err(|e| anyhow::anyhow!("the inherited controller lock is not held: {e}"))?;
        Ok(ControllerLock(file))
    }

    pub fn raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Closes this process's handle without unlocking: a child that inherited the locked file
    /// keeps holding the lock (a flock belongs to the open file, not to one descriptor).
    pub fn hand_over(self) {
        drop(self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_holder_at_a_time() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ClusterDir::new(tmp.path(), "demo");
        std::fs::create_dir_all(dir.root()).unwrap();
        let first = ControllerLock::try_acquire(&dir)
            .unwrap()
            .expect("free lock");
        assert!(ControllerLock::try_acquire(&dir).unwrap().is_none());
        drop(first);
        assert!(ControllerLock::try_acquire(&dir).unwrap().is_some());
    }
}
