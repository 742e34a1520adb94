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
    /// The running server's version, read once it answers after each start.
    pub version: Option<String>,
    /// The donor whose clone became the data dir, when this agent received it.
    pub cloned_from: Option<u32>,
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
    /// The instance's certificates; None with TLS off.
    pub tls: Option<crate::tls::AgentTls>,
    /// How to reach peers' agents (donors, the isolation check).
    pub api: myset_http::ApiAccess,
    /// When clone progress was last logged, and at how many bytes.
    clone_logged: Mutex<Option<(Instant, u64)>>,
    /// Raised to ask the supervisor for a clean restart of the server; a server started at
    /// or after a value satisfies it.
    restart_wanted: tokio::sync::watch::Sender<u64>,
    /// The user's settings the running server has.
    live_settings: Mutex<crate::settings::LiveSettings>,
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
                version: None,
                cloned_from: None,
                progress_at: Instant::now(),
            }),
            clone_logged: Mutex::new(None),
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
            tls: None,
            api: myset_http::ApiAccess::plain(&secrets.api_token),
            secrets,
            restart_wanted: tokio::sync::watch::Sender::new(0),
            live_settings: Mutex::new(Default::default()),
        }
    }

    /// The CA file TCP connections to servers verify them by; None with TLS off.
    pub fn tls_ca(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(|t| t.files.ca())
    }

    /// Asks for a clean restart of the server (shutdown, then a start with a newly rendered
    /// option file).
    pub fn request_restart(&self) {
        self.restart_wanted.send_modify(|g| *g += 1);
    }

    /// The restart generation a server started now satisfies.
    pub fn restart_generation(&self) -> u64 {
        *self.restart_wanted.borrow()
    }

    /// Resolves once a restart newer than `generation` is asked.
    pub async fn restart_asked_after(&self, generation: u64) {
        let mut rx = self.restart_wanted.subscribe();
        let _ = rx.wait_for(|g| *g > generation).await;
    }

    pub fn live_settings(&self) -> crate::settings::LiveSettings {
        self.live_settings.lock().expect("settings lock").clone()
    }

    /// A server starts with the spec's settings for its role in its option file.
    pub fn server_started_with(&self, values: std::collections::BTreeMap<String, String>) {
        *self.live_settings.lock().expect("settings lock") = crate::settings::LiveSettings {
            values,
            need_restart: Default::default(),
        };
    }

    pub fn note_live_settings(&self, set: &std::collections::BTreeMap<String, String>) {
        let mut live = self.live_settings.lock().expect("settings lock");
        live.values
            .extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
    }

    pub fn note_needs_restart(&self, key: &str) {
        let mut live = self.live_settings.lock().expect("settings lock");
        live.need_restart.insert(key.to_string());
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
        if s.phase != phase && self.worth_logging(&s.phase, &phase) {
            tracing::info!(%phase, "phase");
        }
        if made_progress(&s.phase, &phase) {
            s.progress_at = Instant::now();
        }
        s.phase = phase;
    }

    /// Whether going from `from` to `to` deserves a line in agent.log: every change of step,
    /// but clone progress at most once per [`CLONE_LOG_PERIOD`].
    fn worth_logging(&self, from: &Phase, to: &Phase) -> bool {
        let mut logged = self.clone_logged.lock().expect("clone log lock");
        let now = Instant::now();
        let verdict = clone_progress_worth_logging(from, to, *logged, now);
        if let (true, Phase::Cloning { bytes, .. }) = (verdict, to) {
            *logged = Some((now, *bytes));
        }
        verdict
    }

    pub fn set_pid(&self, pid: Option<u32>) {
        let mut s = self.server.lock().expect("server lock");
        s.pid = pid;
        if pid.is_none() {
            // The version belongs to the server that ran; the next start reads it again.
            s.version = None;
        }
    }

    pub fn set_cloned_from(&self, donor: u32) {
        self.server.lock().expect("server lock").cloned_from = Some(donor);
    }

    pub fn set_server_version(&self, version: Option<String>) {
        self.server.lock().expect("server lock").version = version;
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

/// At most one line of clone progress per this period in agent.log.
pub const CLONE_LOG_PERIOD: Duration = Duration::from_secs(5);

/// Whether a change of phase is logged, given when clone progress was last logged
/// (`last`): a new step always is; more bytes of the same clone only once
/// [`CLONE_LOG_PERIOD`] has passed since the last line.
pub fn clone_progress_worth_logging(
    from: &Phase,
    to: &Phase,
    last: Option<(Instant, u64)>,
    now: Instant,
) -> bool {
    match (from, to) {
        (Phase::Cloning { donor: a, .. }, Phase::Cloning { donor: b, .. }) if a == b => {
            last.is_none_or(|(at, _)| now.duration_since(at) >= CLONE_LOG_PERIOD)
        }
        _ => true,
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
    fn clone_progress_is_logged_at_most_once_per_period() {
        use super::{clone_progress_worth_logging as worth, CLONE_LOG_PERIOD};
        use myset_api::Phase;
        use std::time::{Duration, Instant};
        let cloning = |donor, bytes| Phase::Cloning { donor, bytes };
        let t0 = Instant::now();
        assert!(worth(&Phase::Starting, &cloning(1, 0), None, t0));
        let last = Some((t0, 0));
        let soon = t0 + Duration::from_millis(100);
        assert!(!worth(&cloning(1, 0), &cloning(1, 10), last, soon));
        assert!(worth(
            &cloning(1, 10),
            &cloning(1, 20),
            last,
            t0 + CLONE_LOG_PERIOD
        ));
        assert!(
            worth(&cloning(1, 10), &cloning(2, 0), last, soon),
            "another donor"
        );
        assert!(worth(
            &cloning(1, 10),
            &Phase::Preparing { donor: 1 },
            last,
            soon
        ));
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
