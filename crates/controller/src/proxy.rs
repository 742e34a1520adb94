//! The rw and ro endpoints: TCP listeners that forward each new connection to a backend, as the
//! tutorial's Services do. rw has one backend (the primary); ro rotates over every Ready one.
//!
//! A backend gets a client only once its server has greeted: a hung mariadbd (SIGSTOPped,
//! say) still has its connections accepted by the kernel but never speaks, and a client handed
//! to it would wait forever. So the proxy reads the server's greeting itself, within a bound,
//! and only then forwards it to the client and splices the two connections. A backend that
//! does not greet in time is reported as suspect, and ro tries the next one.

use crate::metrics::EndpointMetrics;
use myset_api::Address;
use prometheus_client::metrics::counter::Counter;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Told about a backend that accepted no connection, sent no greeting in time, or closed
/// before greeting.
pub type OnSuspect = Arc<dyn Fn(&Address, Suspicion) + Send + Sync>;

/// Why a proxy gave up on a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suspicion {
    /// It accepted the connection, then stayed silent or closed it: a hung or broken server.
    Silent,
    /// Nothing listens there: a dead server (or one restarting).
    Refused,
}

/// How long a backend may take to connect and greet before a client is taken elsewhere.
#[derive(Debug, Clone, Copy)]
struct GreetingBounds {
    /// When the endpoint has other backends to try (ro): short, since skipping one costs the
    /// client only this delay.
    several: Duration,
    /// When the endpoint has a single backend (rw, or ro with one Ready member): there is
    /// nothing to fall back to, so giving up early would turn a slow server into a failed
    /// client. A greeting needs no disk I/O, only a connection thread, so even a saturated
    /// server sends it within milliseconds; the agents' probes give a whole query 0.9 s, so a
    /// server that takes twice that merely to greet is hung, not busy.
    single: Duration,
    /// How long a client is held while no backend is usable (none listed, or none greeted):
    /// the list is retried on every change and every [`RETRY_PAUSE`] until then. This carries
    /// clients over short gaps, such as a restarted controller's first probes or a change of
    /// primary, instead of closing them at once.
    hold: Duration,
}

impl GreetingBounds {
    /// The bound for one backend of an endpoint that has `count`.
    fn for_backends(&self, count: usize) -> Duration {
        if count > 1 {
            self.several
        } else {
            self.single
        }
    }
}

/// Whether `backend` connects and greets within the bound the proxy gives a backend of an
/// endpoint with `count` of them: what the proxy checks before handing it a client, for
/// endpoints that cannot check each connection (the kernel's).
pub(crate) async fn check_greets(backend: &Address, count: usize) -> Result<(), Suspicion> {
    match tokio::time::timeout(BOUNDS.for_backends(count), greeted(backend)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(NotGreeted::Refused)) => Err(Suspicion::Refused),
        Ok(Err(NotGreeted::Failed(_))) | Err(_) => Err(Suspicion::Silent),
    }
}

const BOUNDS: GreetingBounds = GreetingBounds {
    several: Duration::from_millis(500),
    single: Duration::from_secs(2),
    hold: Duration::from_secs(2),
};

/// Between two tries of an unchanged list of backends that all refused or failed.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The largest first packet accepted as a greeting; a MariaDB greeting is about 100 bytes, so
/// anything bigger is not a MySQL-protocol server.
const MAX_GREETING: usize = 64 * 1024;

/// Binds an endpoint's listener; `flag` names the option that chose the port, for the error.
pub async fn bind(host: &str, port: u16, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind((host, port))
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {host}:{port} for {flag}: {e}"))
}

/// One client endpoint: its name, how it treats a backend that leaves, and its counts.
pub(crate) struct Endpoint {
    pub(crate) name: &'static str,
    /// Close a connection whose backend leaves the list (rw after a change of primary, so no
    /// client keeps writing to a demoted server).
    pub(crate) cut_removed: bool,
    pub(crate) metrics: EndpointMetrics,
}

/// Serves `endpoint` on `listener` until `stop`, forwarding to the backends currently in
/// `backends`. Backends that do not greet in time are passed to `on_suspect`.
pub(crate) async fn serve(
    endpoint: Endpoint,
    listener: TcpListener,
    backends: watch::Receiver<Vec<Address>>,
    on_suspect: OnSuspect,
    stop: CancellationToken,
) {
    serve_with(endpoint, listener, backends, BOUNDS, on_suspect, stop).await
}

async fn serve_with(
    endpoint: Endpoint,
    listener: TcpListener,
    backends: watch::Receiver<Vec<Address>>,
    bounds: GreetingBounds,
    on_suspect: OnSuspect,
    stop: CancellationToken,
) {
    let Endpoint {
        name,
        cut_removed,
        metrics,
    } = endpoint;
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
        let start = next.fetch_add(1, Ordering::Relaxed);
        let open = metrics.accepted();
        let (from_client, to_client) = (metrics.from_clients.clone(), metrics.to_clients.clone());
        let stop = stop.clone();
        let watched = backends.clone();
        let on_suspect = on_suspect.clone();
        tokio::spawn(async move {
            let _open = open;
            let _ = client.set_nodelay(true);
            let picked = tokio::select! {
                picked = pick_backend(name, watched.clone(), start, cut_removed, bounds, &on_suspect) => picked,
                _ = stop.cancelled() => None,
            };
            let Some((backend, server, greeting)) = picked else {
                tracing::debug!(
                    endpoint = name,
                    "no backend greeted; closing the connection"
                );
                return;
            };
            let mut client = Counted::new(client, from_client);
            let mut server = Counted::new(server, to_client);
            if client.write_all(&greeting).await.is_err() {
                return;
            }
            server.count(greeting.len());
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

/// A stream that counts the bytes read from it, with one relaxed atomic add per read.
struct Counted<S> {
    inner: S,
    read: Counter,
}

impl<S> Counted<S> {
    fn new(inner: S, read: Counter) -> Self {
        Counted { inner, read }
    }

    fn count(&self, bytes: usize) {
        self.read.inc_by(bytes as u64);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.count(buf.filled().len() - before);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
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

/// Resolves once any of `candidates` leaves the list; never when `enabled` is false.
async fn removed_any(
    mut backends: watch::Receiver<Vec<Address>>,
    candidates: &[Address],
    enabled: bool,
) {
    if enabled {
        while backends.changed().await.is_ok() {
            let now = backends.borrow();
            if candidates.iter().any(|c| !now.contains(c)) {
                return;
            }
        }
    }
    std::future::pending::<()>().await
}

/// Finds a backend for one client, holding it up to `bounds.hold` while none is usable. With
/// `cut_removed` (rw), a backend that leaves the list while its greeting is awaited is given up
/// at once and the new list is tried: a client connecting during a change of primary reaches
/// the new one, never the old.
async fn pick_backend(
    endpoint: &'static str,
    mut backends: watch::Receiver<Vec<Address>>,
    start: usize,
    cut_removed: bool,
    bounds: GreetingBounds,
    on_suspect: &OnSuspect,
) -> Option<(Address, TcpStream, Vec<u8>)> {
    let deadline = tokio::time::Instant::now() + bounds.hold;
    loop {
        let candidates = backends.borrow_and_update().clone();
        if !candidates.is_empty() {
            tokio::select! {
                picked = connect_first(endpoint, &candidates, start, bounds, on_suspect) => {
                    if picked.is_some() {
                        return picked;
                    }
                }
                _ = removed_any(backends.clone(), &candidates, cut_removed) => continue,
            }
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return None;
        }
        // A new list is tried at once; an unchanged one after a pause.
        let wait = RETRY_PAUSE.min(deadline - now);
        if let Ok(Err(_)) = tokio::time::timeout(wait, backends.changed()).await {
            return None;
        }
    }
}

/// Tries the backends in rotation starting at `start` until one connects and greets within
/// its bound; returns it with its greeting. A backend that refuses, or accepts but stays
/// silent, or closes, is skipped and reported with why.
async fn connect_first(
    endpoint: &'static str,
    backends: &[Address],
    start: usize,
    bounds: GreetingBounds,
    on_suspect: &OnSuspect,
) -> Option<(Address, TcpStream, Vec<u8>)> {
    let bound = bounds.for_backends(backends.len());
    for i in 0..backends.len() {
        let b = &backends[(start + i) % backends.len()];
        match tokio::time::timeout(bound, greeted(b)).await {
            Ok(Ok((server, greeting))) => return Some((b.clone(), server, greeting)),
            Ok(Err(NotGreeted::Refused)) => on_suspect(b, Suspicion::Refused),
            Ok(Err(NotGreeted::Failed(why))) => {
                tracing::info!(endpoint, backend = %b, "backend suspect: {why}");
                on_suspect(b, Suspicion::Silent);
            }
            Err(_) => {
                tracing::info!(endpoint, backend = %b, ?bound, "backend suspect: no greeting in time");
                on_suspect(b, Suspicion::Silent);
            }
        }
    }
    None
}

/// Why a backend was not used.
enum NotGreeted {
    /// Nothing listens there: the connection was refused.
    Refused,
    /// It accepted, then closed or sent something that is not a greeting.
    Failed(String),
}

/// Connects to `backend` and reads its server's greeting, the first packet of the MySQL
/// protocol: a 3-byte little-endian payload length, a 1-byte sequence id, then the payload.
async fn greeted(backend: &Address) -> Result<(TcpStream, Vec<u8>), NotGreeted> {
    let mut server = TcpStream::connect((backend.host.as_str(), backend.port))
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => NotGreeted::Refused,
            _ => NotGreeted::Failed(format!("cannot connect: {e}")),
        })?;
    let _ = server.set_nodelay(true);
    let mut packet = vec![0u8; 4];
    server
        .read_exact(&mut packet)
        .await
        .map_err(|e| NotGreeted::Failed(format!("closed before greeting: {e}")))?;
    let len = u32::from_le_bytes([packet[0], packet[1], packet[2], 0]) as usize;
    if len == 0 || len > MAX_GREETING {
        return Err(NotGreeted::Failed(format!(
            "a first packet of {len} bytes is no greeting"
        )));
    }
    packet.resize(4 + len, 0);
    server
        .read_exact(&mut packet[4..])
        .await
        .map_err(|e| NotGreeted::Failed(format!("closed during greeting: {e}")))?;
    Ok((server, packet))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Instant;

    const TEST_BOUNDS: GreetingBounds = GreetingBounds {
        several: Duration::from_millis(100),
        single: Duration::from_millis(150),
        hold: Duration::from_millis(150),
    };
    /// Scheduling delay tolerated on a busy machine beyond a bound.
    const SLACK: Duration = Duration::from_millis(400);

    /// A greeting as a server would send it: length 10, sequence 0, payload.
    fn greeting_of(tag: u8) -> Vec<u8> {
        let mut p = vec![10, 0, 0, 0, 10];
        p.extend_from_slice(b"fake-");
        p.extend_from_slice(&[tag; 4]);
        p
    }

    fn address(listener: &TcpListener) -> Address {
        let a = listener.local_addr().expect("local addr");
        Address {
            host: a.ip().to_string(),
            port: a.port(),
        }
    }

    /// A backend that greets with `greeting_of(tag)`, then echoes what it receives.
    async fn live(tag: u8) -> Address {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let a = address(&l);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    s.write_all(&greeting_of(tag)).await.expect("greet");
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        a
    }

    /// A backend that accepts (as the kernel does for a SIGSTOPped server) and never speaks.
    async fn silent() -> Address {
        silent_watched().await.0
    }

    /// [`silent`], also telling of every connection it accepted.
    async fn silent_watched() -> (Address, tokio::sync::mpsc::UnboundedReceiver<()>) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let a = address(&l);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s);
                let _ = tx.send(());
            }
        });
        (a, rx)
    }

    /// An address where nothing listens.
    async fn refused() -> Address {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        address(&l)
    }

    struct Endpoint {
        addr: std::net::SocketAddr,
        backends: watch::Sender<Vec<Address>>,
        suspects: Arc<Mutex<Vec<(Address, Suspicion)>>>,
        metrics: EndpointMetrics,
        _stop: tokio_util::sync::DropGuard,
    }

    async fn endpoint(backends: Vec<Address>, cut_removed: bool) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = watch::channel(backends);
        let suspects: Arc<Mutex<Vec<(Address, Suspicion)>>> = Arc::default();
        let seen = suspects.clone();
        let stop = CancellationToken::new();
        let metrics = EndpointMetrics::default();
        let test_endpoint = super::Endpoint {
            name: "test",
            cut_removed,
            metrics: metrics.clone(),
        };
        tokio::spawn(serve_with(
            test_endpoint,
            listener,
            rx,
            TEST_BOUNDS,
            Arc::new(move |a: &Address, why: Suspicion| {
                seen.lock().unwrap().push((a.clone(), why))
            }),
            stop.clone(),
        ));
        Endpoint {
            addr,
            backends: tx,
            suspects,
            metrics,
            _stop: stop.drop_guard(),
        }
    }

    /// Connects a client and reads what the endpoint sends first: a greeting, or nothing
    /// (the connection closed). Fails the test if nothing happens within a second.
    async fn first_packet(e: &Endpoint) -> (TcpStream, Option<Vec<u8>>) {
        let mut c = TcpStream::connect(e.addr).await.expect("connect");
        let mut buf = vec![0u8; 14];
        let read = tokio::time::timeout(Duration::from_secs(1), c.read_exact(&mut buf))
            .await
            .expect("the endpoint neither greeted nor closed within a second");
        (c, read.ok().map(|_| buf))
    }

    #[tokio::test]
    async fn a_silent_backend_is_skipped_within_the_bound_and_reported() {
        let hung = silent().await;
        let e = endpoint(vec![hung.clone(), live(1).await], false).await;
        let started = Instant::now();
        let (_c, greeting) = first_packet(&e).await;
        assert_eq!(greeting, Some(greeting_of(1)));
        let took = started.elapsed();
        assert!(
            took >= TEST_BOUNDS.several && took < TEST_BOUNDS.several + SLACK,
            "{took:?}"
        );
        assert_eq!(*e.suspects.lock().unwrap(), vec![(hung, Suspicion::Silent)]);
    }

    #[tokio::test]
    async fn a_refused_backend_is_skipped_at_once_and_reported_as_refused() {
        let dead = refused().await;
        let e = endpoint(vec![dead.clone(), live(2).await], false).await;
        let started = Instant::now();
        let (_c, greeting) = first_packet(&e).await;
        assert_eq!(greeting, Some(greeting_of(2)));
        assert!(
            started.elapsed() < TEST_BOUNDS.several,
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            *e.suspects.lock().unwrap(),
            vec![(dead, Suspicion::Refused)]
        );
    }

    #[tokio::test]
    async fn ro_rotates_and_splices_after_the_greeting() {
        let e = endpoint(vec![live(1).await, live(2).await], false).await;
        let (mut c, first) = first_packet(&e).await;
        let (_, second) = first_packet(&e).await;
        assert_eq!(first, Some(greeting_of(1)));
        assert_eq!(second, Some(greeting_of(2)));
        c.write_all(b"ping").await.expect("write");
        let mut echo = [0u8; 4];
        c.read_exact(&mut echo).await.expect("echo");
        assert_eq!(&echo, b"ping");
        let m = &e.metrics;
        assert_eq!(m.accepted.get(), 2);
        assert_eq!(m.from_clients.get(), 4, "the client's ping");
        assert_eq!(
            m.to_clients.get(),
            2 * greeting_of(1).len() as u64 + 4,
            "two greetings and the echo"
        );
        drop(c);
        assert!(
            wait_for(|| m.open.get() == 0).await,
            "closed connections are no longer open"
        );
    }

    /// Polls `condition` every 10 ms for up to a second.
    async fn wait_for(mut condition: impl FnMut() -> bool) -> bool {
        for _ in 0..100 {
            if condition() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        condition()
    }

    #[tokio::test]
    async fn ro_with_every_backend_silent_closes_the_client() {
        let (a, b) = (silent().await, silent().await);
        let e = endpoint(vec![a.clone(), b.clone()], false).await;
        let (_c, greeting) = first_packet(&e).await;
        assert_eq!(greeting, None);
        assert_eq!(
            *e.suspects.lock().unwrap(),
            vec![(a, Suspicion::Silent), (b, Suspicion::Silent)]
        );
    }

    #[tokio::test]
    async fn rw_with_a_silent_primary_closes_the_client_after_the_bound() {
        let hung = silent().await;
        let e = endpoint(vec![hung.clone()], true).await;
        let started = Instant::now();
        let (_c, greeting) = first_packet(&e).await;
        let took = started.elapsed();
        assert_eq!(greeting, None);
        assert!(
            took >= TEST_BOUNDS.single && took < TEST_BOUNDS.single + SLACK,
            "{took:?}"
        );
        assert_eq!(*e.suspects.lock().unwrap(), vec![(hung, Suspicion::Silent)]);
    }

    #[tokio::test]
    async fn rw_moves_a_waiting_client_to_the_new_primary() {
        let (old, mut accepted) = silent_watched().await;
        let e = endpoint(vec![old], true).await;
        let mut c = TcpStream::connect(e.addr).await.expect("connect");
        // Once the proxy waits for the old primary's greeting, move rw.
        tokio::time::timeout(Duration::from_secs(1), accepted.recv())
            .await
            .expect("the proxy connects to the old primary");
        let started = Instant::now();
        e.backends.send_replace(vec![live(3).await]);
        let mut buf = vec![0u8; 14];
        tokio::time::timeout(Duration::from_secs(1), c.read_exact(&mut buf))
            .await
            .expect("greeted within a second")
            .expect("greeted, not closed");
        assert_eq!(buf, greeting_of(3), "the new primary greets, not the old");
        assert!(
            started.elapsed() < TEST_BOUNDS.single,
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn an_empty_endpoint_holds_a_client_until_a_backend_appears() {
        let e = endpoint(Vec::new(), false).await;
        let mut c = TcpStream::connect(e.addr).await.expect("connect");
        e.backends.send_replace(vec![live(6).await]);
        let mut buf = vec![0u8; 14];
        tokio::time::timeout(Duration::from_secs(1), c.read_exact(&mut buf))
            .await
            .expect("greeted within a second")
            .expect("greeted, not closed");
        assert_eq!(buf, greeting_of(6));
    }

    #[tokio::test]
    async fn a_client_is_held_while_the_only_backend_refuses_then_served() {
        // A port that refuses now and listens a moment later: a server restarting.
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let a = address(&l);
        drop(l);
        let e = endpoint(vec![a.clone()], false).await;
        let mut c = TcpStream::connect(e.addr).await.expect("connect");
        tokio::time::sleep(RETRY_PAUSE / 2).await;
        let l = TcpListener::bind((a.host.as_str(), a.port))
            .await
            .expect("rebind");
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.expect("accept");
            s.write_all(&greeting_of(7)).await.expect("greet");
            std::future::pending::<()>().await;
        });
        let mut buf = vec![0u8; 14];
        tokio::time::timeout(Duration::from_secs(1), c.read_exact(&mut buf))
            .await
            .expect("greeted within a second")
            .expect("greeted, not closed");
        assert_eq!(buf, greeting_of(7));
    }

    #[tokio::test]
    async fn an_endpoint_that_stays_empty_closes_the_client_after_the_hold() {
        let e = endpoint(Vec::new(), false).await;
        let started = Instant::now();
        let (_c, greeting) = first_packet(&e).await;
        let took = started.elapsed();
        assert_eq!(greeting, None);
        assert!(
            took >= TEST_BOUNDS.hold && took < TEST_BOUNDS.hold + SLACK,
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn rw_cuts_a_spliced_connection_when_the_primary_changes() {
        let e = endpoint(vec![live(4).await], true).await;
        let (mut c, greeting) = first_packet(&e).await;
        assert_eq!(greeting, Some(greeting_of(4)));
        e.backends.send_replace(vec![live(5).await]);
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(1), c.read(&mut buf))
            .await
            .expect("cut within a second")
            .unwrap_or(0);
        assert_eq!(n, 0);
    }
}
