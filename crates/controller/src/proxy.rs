//! The rw and ro endpoints: TCP listeners that forward each new connection to a backend, as the
//! tutorial's Services do. rw has one backend (the primary); ro rotates over every Ready one.

use myset_api::Address;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves `listener` until `stop`, forwarding to the backends currently in `backends`. With
/// `cut_removed`, a connection whose backend leaves the list is closed (rw after a change of
/// primary, so no client keeps writing to a demoted server).
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    backends: watch::Receiver<Vec<Address>>,
    cut_removed: bool,
    stop: CancellationToken,
) {
    let next = Arc::new(AtomicUsize::new(0));
    loop {
        let (client, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(endpoint = name, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let candidates = backends.borrow().clone();
        let start = next.fetch_add(1, Ordering::Relaxed);
        let stop = stop.clone();
        let watched = backends.clone();
        tokio::spawn(async move {
            let _ = client.set_nodelay(true);
            let Some((backend, mut server)) = connect_first(&candidates, start).await else {
                tracing::debug!(
                    endpoint = name,
                    "no backend reachable; closing the connection"
                );
                return;
            };
            let mut client = client;
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = removed(watched, backend.clone(), cut_removed) => {
                    tracing::debug!(endpoint = name, %backend, "connection cut: backend removed");
                }
                _ = stop.cancelled() => {}
            }
        });
    }
}

/// Resolves once `backend` leaves the list; never when `enabled` is false.
async fn removed(mut backends: watch::Receiver<Vec<Address>>, backend: Address, enabled: bool) {
    if enabled {
        while backends.changed().await.is_ok() {
            if !backends.borrow().contains(&backend) {
                return;
            }
        }
    }
    std::future::pending::<()>().await
}

/// Connects to the backends in rotation starting at `start`, skipping ones that refuse.
async fn connect_first(backends: &[Address], start: usize) -> Option<(Address, TcpStream)> {
    for i in 0..backends.len() {
        let b = &backends[(start + i) % backends.len()];
        let connect = TcpStream::connect((b.host.as_str(), b.port));
        if let Ok(Ok(s)) = tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            let _ = s.set_nodelay(true);
            return Some((b.clone(), s));
        }
    }
    None
}
