//! State shared between the agent's supervisor, probes and HTTP handlers.

use crate::layout::InstanceLayout;
use myset_api::{InstanceSpec, Phase, Secrets};
use myset_mariadb::Binaries;
use std::sync::Mutex;
use std::time::Instant;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What the supervisor knows about its server right now.
#[derive(Debug, Clone)]
pub struct ServerState {
    pub phase: Phase,
    pub pid: Option<u32>,
    pub restarts: u32,
}

pub struct Shared {
    spec: Mutex<InstanceSpec>,
    /// Woken when the controller sends a new spec.
    pub spec_changed: Notify,
    server: Mutex<ServerState>,
    pub secrets: Secrets,
    pub layout: InstanceLayout,
    pub binaries: Binaries,
    pub stop: CancellationToken,
    pub fencing: Mutex<Fencing>,
    /// When a replica last saw its primary's heartbeats or events advance.
    primary_heard: Mutex<Option<(u64, String, Instant)>>,
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

/// The controller's calls carry its term in this header, which tells the agent it is in contact.
pub const CONTROLLER_TERM_HEADER: &str = "x-myset-controller-term";

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
            spec_changed: Notify::new(),
            server: Mutex::new(ServerState {
                phase: Phase::Starting,
                pid: None,
                restarts: 0,
            }),
            secrets,
            layout,
            binaries,
            stop: CancellationToken::new(),
            fencing: Mutex::new(Fencing {
                fence_term: 0,
                self_fenced: None,
                last_controller_contact: Instant::now(),
            }),
            primary_heard: Mutex::new(None),
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

    /// Milliseconds since the primary's stream last advanced, given the latest replica status.
    pub fn primary_silence(&self, heartbeats: u64, received: &str) -> u64 {
        let mut heard = self.primary_heard.lock().expect("heard lock");
        let now = Instant::now();
        match heard.as_mut() {
            Some((h, r, at)) if *h == heartbeats && r == received => {
                now.duration_since(*at).as_millis() as u64
            }
            _ => {
                *heard = Some((heartbeats, received.to_string(), now));
                0
            }
        }
    }

    pub fn spec(&self) -> InstanceSpec {
        self.spec.lock().expect("spec lock").clone()
    }

    /// Stores a new spec from the controller, durably, and wakes the supervisor. A spec from
    /// an older term is refused: a controller that has moved on is never overruled.
    pub fn set_spec(&self, spec: InstanceSpec) -> Result<(), SpecError> {
        let mut current = self.spec.lock().expect("spec lock");
        if !myset_core::failover::accept_term(current.term, spec.term) {
            return Err(SpecError::StaleTerm {
                current: current.term,
                offered: spec.term,
            });
        }
        let bytes = serde_json::to_vec_pretty(&spec).expect("spec serializes");
        myset_os::write_atomic(&self.layout.spec_file(), &bytes, 0o600)?;
        if spec.term > current.term || spec.role != current.role {
            self.fencing.lock().expect("fencing lock").self_fenced = None;
        }
        *current = spec;
        drop(current);
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
    pub async fn wait_for_spec_change(&self, limit: std::time::Duration) {
        let _ = tokio::time::timeout(limit, self.spec_changed.notified()).await;
    }
}

/// Turns SIGTERM and SIGINT into a graceful stop.
pub async fn stop_on_signal(shared: std::sync::Arc<Shared>) {
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
    shared.stop.cancel();
}
