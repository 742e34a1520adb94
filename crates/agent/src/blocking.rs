//! File-system work that may block for long (fsync, removing a data dir), run on tokio's
//! blocking pool so it never stalls the runtime threads serving probes and orders.

use std::io;
use std::path::PathBuf;

async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(io::Error::other)?
}

/// `myset_os::write_atomic` (temp file, fsync, rename).
pub async fn write_atomic(path: PathBuf, contents: Vec<u8>, mode: u32) -> io::Result<()> {
    off_runtime(move || myset_os::write_atomic(&path, &contents, mode)).await
}

/// Removes a directory tree; one that is already gone is fine.
pub async fn remove_tree(path: PathBuf) -> io::Result<()> {
    off_runtime(move || match std::fs::remove_dir_all(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_and_removes_off_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("a/b")).unwrap();
        write_atomic(tree.join("a/b/f"), b"x".to_vec(), 0o600)
            .await
            .unwrap();
        assert_eq!(std::fs::read(tree.join("a/b/f")).unwrap(), b"x");
        remove_tree(tree.clone()).await.unwrap();
        assert!(!tree.exists());
        remove_tree(tree).await.unwrap();
    }
}
