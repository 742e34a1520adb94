//! State shared between the agent's supervisor, probes and HTTP handlers.

use crate::layout::InstanceLayout;
use myset_api::{InstanceSpec, Phase, Secrets};
use myset_mariadb::Binaries;
use std::sync::Mutex;
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
        }
    }

    pub fn spec(&self) -> InstanceSpec {
        self.spec.lock().expect("spec lock").clone()
    }

    /// Stores a new spec from the controller, durably, and wakes the supervisor.
    pub fn set_spec(&self, spec: InstanceSpec) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(&spec).expect("spec serializes");
        myset_os::write_atomic(&self.layout.spec_file(), &bytes, 0o600)?;
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
