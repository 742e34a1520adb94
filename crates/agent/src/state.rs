//! State shared between the agent's supervisor, probes and HTTP handlers.

use crate::clocks::{StreamClock, WaitClock};
use crate::layout::InstanceLayout;
use myset_api::{InstanceSpec, Phase, Role, Secrets};
use myset_mariadb::Binaries;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What the supervisor knows about its server right now.
#[derive(Debug, Clone)]
pub struct ServerState {
    pub phase: Phase,
    pub pid: Option<u32>,
    pub restarts: u32,
    /// When the agent last made progress on preparing its server: entered another phase, or
    /// received more of a clone. Only the kubelet's liveness probe reads it.
    pub progress_at: Instant,
}

/// How the agent binds and configures its server when it does not run as the local runtime
/// started it (on Kubernetes). The defaults change nothing.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// The host mariadbd binds, instead of the spec's server host (which peers keep using to
    /// reach it, for example a DNS name of the Pod).
    pub bind_host: Option<String>,
    /// A directory with the user's option files `all.cnf`, `primary.cnf` and `replica.cnf`.
    pub server_options_dir: Option<PathBuf>,
}

impl Overrides {
    /// The address mariadbd binds.
    pub fn server_bind_host(&self, spec: &InstanceSpec) -> String {
        self.bind_host
            .clone()
            .unwrap_or_else(|| spec.server.host.clone())
    }

    /// The host the agent reaches its own server at over TCP: where it binds, or loopback when
    /// it binds every address.
    pub fn server_local_host(&self, spec: &InstanceSpec) -> String {
        match self.bind_host.as_deref() {
            None => spec.server.host.clone(),
            Some("" | "*" | "0.0.0.0" | "::" | "[::]") => "127.0.0.1".into(),
            Some(host) => host.into(),
        }
    }

    /// The user's option files for a server of `role`: the common file, then the role's.
    /// MariaDB reads options only at start, so a promotion or demotion applies the new
    /// role's file at the server's next start; the server is not restarted for it.
    pub fn server_option_files(&self, role: Role) -> Vec<PathBuf> {
        match &self.server_options_dir {
            None => Vec::new(),
            Some(dir) => vec![dir.join("all.cnf"), dir.join(format!("{role}.cnf"))],
        }
    }
}

pub struct Shared {
    /// The spec in force; held only to copy or replace it, never across I/O.
    spec: Mutex<InstanceSpec>,
    /// Serialises spec changes across their write to disk, so the newest accepted spec is
    /// the one on disk and a stale one is judged against the latest.
    spec_writer: tokio::sync::Mutex<()>,
    /// The one owner of the server's state: see [`ServerOps`].
    server_ops: tokio::sync::Mutex<()>,
    /// Woken when the controller sends a new spec.
    pub spec_changed: Notify,
    server: Mutex<ServerState>,
    pub secrets: Secrets,
    pub layout: InstanceLayout,
    pub binaries: Binaries,
    pub overrides: Overrides,
    pub stop: CancellationToken,
    pub fencing: Mutex<Fencing>,
    /// When a replica last saw its primary's heartbeats or events advance.
    stream: Mutex<StreamClock>,
    /// Since when the primary's commits wait for a semi-sync acknowledgement.
    semisync_wait: Mutex<WaitClock>,
}

/// Proof that its holder is the only task changing the server's state (read_only, semi-sync,
/// replication threads): orders, the supervisor's convergence and self-fencing each hold it
/// for a whole step, so none of them acts on what another is half-way through changing.
/// Reading the server (probes) needs no such proof.
pub struct ServerOps<'a> {
    _held: tokio::sync::MutexGuard<'a, ()>,
}

/// Why the server refuses writes beyond what its role implies.
#[derive(Debug, Clone)]
pub struct Fencing {
    /// A replica stops receiving until it gets a spec of at least this term.
    pub fence_term: u64,
    /// Set when this primary fenced itself; the reason says why.
    pub self_fenced: Option<String>,
    pub last_controller_contact: Instant,
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("spec of term {offered} refused: this agent is at term {current}")]
    StaleTerm { current: u64, offered: u64 },
    #[error("cannot store spec: {0}")]
    Io(#[from] std::io::Error),
}

impl Shared {
    pub fn new(
        spec: InstanceSpec,
        secrets: Secrets,
        layout: InstanceLayout,
        binaries: Binaries,
    ) -> Self {
        Shared {
            spec: Mutex::new(spec),
            spec_writer: tokio::sync::Mutex::new(()),
            server_ops: tokio::sync::Mutex::new(()),
            spec_changed: Notify::new(),
            server: Mutex::new(ServerState {
                phase: Phase::Starting,
                pid: None,
                restarts: 0,
                progress_at: Instant::now(),
            }),
            secrets,
            layout,
            binaries,
            overrides: Overrides::default(),
            stop: CancellationToken::new(),
            fencing: Mutex::new(Fencing {
                fence_term: 0,
                self_fenced: None,
                last_controller_contact: Instant::now(),
            }),
            stream: Mutex::new(StreamClock::default()),
            semisync_wait: Mutex::new(WaitClock::default()),
        }
    }

    /// Waits for, and takes, the sole right to change the server's state.
    pub async fn server_ops(&self) -> ServerOps<'_> {
        ServerOps {
            _held: self.server_ops.lock().await,
        }
    }

    pub fn fencing(&self) -> Fencing {
        self.fencing.lock().expect("fencing lock").clone()
    }

    /// Records a call from the controller at `term`. Contact from the controller at this
    /// primary's own term lifts a self-fence: the controller still trusts it.
    pub fn controller_contact(&self, term: u64) {
        let spec = self.spec();
        let mut f = self.fencing.lock().expect("fencing lock");
        f.last_controller_contact = Instant::now();
        if term == spec.term && spec.role == myset_api::Role::Primary && f.self_fenced.is_some() {
            tracing::info!("the controller is back at term {term}: lifting the self-fence");
            f.self_fenced = None;
        }
    }

    /// Records a sample of the replica's stream; returns the milliseconds since the primary
    /// was last heard, None while unknown.
    pub fn primary_silence(&self, r: &myset_api::ReplicationStatus) -> Option<u64> {
        let silence = self.stream.lock().expect("stream lock").observe(
            r.heartbeats,
            &r.received,
            r.io_running,
            Instant::now(),
        );
        silence.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// The server is no longer a replica: what it heard before says nothing about later.
    pub fn forget_primary_stream(&self) {
        self.stream.lock().expect("stream lock").forget();
    }

    /// Records whether commits wait for a semi-sync acknowledgement now; returns since when
    /// (milliseconds since the Unix epoch) they have been waiting, None when none waits.
    pub fn commits_waiting(&self, waiting: bool) -> Option<u64> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        self.semisync_wait
            .lock()
            .expect("semisync wait lock")
            .observe(waiting, now_ms)
    }

    pub fn spec(&self) -> InstanceSpec {
        self.spec.lock().expect("spec lock").clone()
    }

    /// Stores a new spec from the controller, durably, and wakes the supervisor. A spec from
    /// an older term is refused: a controller that has moved on is never overruled.
    ///
    /// The write (with its fsync) runs on the blocking pool with no std lock held. A caller
    /// that may be cancelled (an HTTP handler) must run this in its own task: cancelled after
    /// the write, the disk would hold a spec the agent does not run.
    pub async fn set_spec(&self, spec: InstanceSpec) -> Result<(), SpecError> {
        let _writer = self.spec_writer.lock().await;
        let current = self.spec();
        if !myset_core::failover::accept_term(current.term, spec.term) {
            return Err(SpecError::StaleTerm {
                current: current.term,
                offered: spec.term,
            });
        }
        let bytes = serde_json::to_vec_pretty(&spec).expect("spec serializes");
        crate::blocking::write_atomic(self.layout.spec_file(), bytes, 0o600).await?;
        if spec.term > current.term || spec.role != current.role {
            self.fencing.lock().expect("fencing lock").self_fenced = None;
        }
        *self.spec.lock().expect("spec lock") = spec;
        self.spec_changed.notify_waiters();
        Ok(())
    }

    pub fn server(&self) -> ServerState {
        self.server.lock().expect("server lock").clone()
    }

    pub fn set_phase(&self, phase: Phase) {
        let mut s = self.server.lock().expect("server lock");
        if s.phase != phase {
            tracing::info!(%phase, "phase");
        }
        if made_progress(&s.phase, &phase) {
            s.progress_at = Instant::now();
        }
        s.phase = phase;
    }

    pub fn set_pid(&self, pid: Option<u32>) {
        self.server.lock().expect("server lock").pid = pid;
    }

    pub fn count_restart(&self) -> u32 {
        let mut s = self.server.lock().expect("server lock");
        s.restarts += 1;
        s.restarts
    }

    /// Waits for a spec change, at most `limit`.
    pub async fn wait_for_spec_change(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.spec_changed.notified()).await;
    }
}

/// Whether going from phase `from` to `to` is progress: another kind of phase, or more bytes
/// of a clone. A phase repeated as it is (a wait, a stalled clone) is not.
pub fn made_progress(from: &Phase, to: &Phase) -> bool {
    match (from, to) {
        (Phase::Cloning { donor: a, bytes: x }, Phase::Cloning { donor: b, bytes: y }) => {
            a != b || x != y
        }
        (from, to) => std::mem::discriminant(from) != std::mem::discriminant(to),
    }
}

/// Turns SIGTERM and SIGINT into cancelling `stop` (a graceful stop of the agent).
pub async fn stop_on_signal(stop: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("stop requested by signal");
    stop.cancel();
}

#[cfg(test)]
mod tests {
    use crate::testing::{shared, spec};
    use myset_api::{InstanceSpec, Role};
    use std::sync::Arc;

    #[test]
    fn progress_is_a_new_kind_of_phase_or_more_clone_bytes() {
        use super::made_progress;
        use myset_api::Phase;
        let cloning = |bytes| Phase::Cloning { donor: 1, bytes };
        let waiting = |r: &str| Phase::Waiting { reason: r.into() };
        assert!(made_progress(&Phase::Starting, &Phase::Initializing));
        assert!(made_progress(&waiting("a"), &cloning(0)));
        assert!(made_progress(&cloning(0), &cloning(10)));
        assert!(made_progress(&cloning(10), &Phase::Preparing { donor: 1 }));
        assert!(!made_progress(&cloning(10), &cloning(10)));
        assert!(!made_progress(&waiting("a"), &waiting("b")));
        assert!(!made_progress(&Phase::Running, &Phase::Running));
    }

    #[test]
    fn without_overrides_the_spec_decides_where_the_server_binds() {
        use super::Overrides;
        let mut s = spec(Role::Primary, 1, None);
        s.server.host = "db-0.db.ns.svc".into();
        let none = Overrides::default();
        assert_eq!(none.server_bind_host(&s), "db-0.db.ns.svc");
        assert_eq!(none.server_local_host(&s), "db-0.db.ns.svc");
        assert!(none.server_option_files(Role::Primary).is_empty());

        let every = Overrides {
            bind_host: Some("0.0.0.0".into()),
            server_options_dir: Some("/etc/o".into()),
        };
        assert_eq!(every.server_bind_host(&s), "0.0.0.0");
        assert_eq!(every.server_local_host(&s), "127.0.0.1");
        assert_eq!(
            every.server_option_files(Role::Replica),
            [
                std::path::PathBuf::from("/etc/o/all.cnf"),
                "/etc/o/replica.cnf".into()
            ]
        );
        let pod_ip = Overrides {
            bind_host: Some("10.1.2.3".into()),
            ..Overrides::default()
        };
        assert_eq!(pod_ip.server_local_host(&s), "10.1.2.3");
    }

    fn on_disk(shared: &super::Shared) -> InstanceSpec {
        serde_json::from_slice(&std::fs::read(shared.layout.spec_file()).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_spec_of_an_older_term_is_refused_and_the_newest_is_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let s = shared(dir.path(), spec(Role::Replica, 3, None));
        s.set_spec(spec(Role::Replica, 5, None)).await.unwrap();
        let err = s.set_spec(spec(Role::Primary, 4, None)).await.unwrap_err();
        assert!(matches!(
            err,
            super::SpecError::StaleTerm {
                current: 5,
                offered: 4
            }
        ));
        assert_eq!(s.spec().term, 5);
        assert_eq!(on_disk(&s), s.spec());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_specs_leave_the_newest_accepted_in_memory_and_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(shared(dir.path(), spec(Role::Replica, 0, None)));
        let terms = [7u64, 2, 9, 4, 9, 1, 8, 3, 6, 5];
        let tasks: Vec<_> = terms
            .iter()
            .map(|&term| {
                let s = s.clone();
                tokio::spawn(async move { s.set_spec(spec(Role::Replica, term, None)).await })
            })
            .collect();
        for t in tasks {
            // Refusals are expected: whichever arrives after a newer term loses.
            let _ = t.await.unwrap();
        }
        assert_eq!(s.spec().term, 9, "the newest term always wins");
        assert_eq!(on_disk(&s), s.spec());
    }
}
