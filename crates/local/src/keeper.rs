//! Keeping the controller alive: every agent watches the controller lock, and when nobody
//! holds it (the controller died: SIGKILL, panic, OOM kill) one agent starts a new controller.
//!
//! Why the agents: they already outlive the controller (they run the servers), there is one
//! per instance so no single one is needed, and the lock makes sure only one of them restarts
//! it. The restart happens under the lock and hands it to the new controller, so two
//! controllers never run at once. Nothing restarts a controller the user stopped (`myset down`
//! leaves a stop marker, checked under the lock), and one that keeps dying is restarted ever
//! more slowly, with the reason in the events.

use crate::controller_process::spawn_controller_holding;
use crate::layout::ClusterDir;
use crate::lock::ControllerLock;
use myset_api::{Event, EventKind};
use myset_core::{RestartDecision, RestartHistory, RestartPolicy};
use serde::{Deserialize, Serialize};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

/// How long a keeper pauses while the cluster is stopped or a restart must wait, before
/// looking again.
const PAUSE: Duration = Duration::from_millis(200);

/// What a keeper needs to restart its cluster's controller.
pub struct Keeper {
    pub dir: ClusterDir,
    /// The myset binary and the state dir the controller is started with.
    pub exe: PathBuf,
    pub state_dir: PathBuf,
    /// The network namespace the controller belongs in, when the agent runs in another one.
    pub netns: Option<OwnedFd>,
    /// Who restarts, for the events (the instance's name).
    pub who: String,
    pub policy: RestartPolicy,
}

/// The restarts agents made, shared through a file written only under the controller lock.
#[derive(Debug, Default, Serialize, Deserialize)]
struct History {
    /// When each counted restart happened (ms since the epoch).
    restarts: Vec<u64>,
    /// The restart whose controller's death was already noted.
    #[serde(default)]
    death_noted_for: Option<u64>,
    /// The delayed restart last reported in the events, so it is reported once.
    reported_delay_until: Option<u64>,
}

impl History {
    fn tracker(&self) -> RestartHistory {
        RestartHistory {
            starts: self.restarts.clone(),
            death_noted_for: self.death_noted_for,
        }
    }

    fn keep(&mut self, tracker: RestartHistory) {
        self.restarts = tracker.starts;
        self.death_noted_for = tracker.death_noted_for;
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

impl Keeper {
    /// Runs on a thread of its own (everything it does blocks: flock, files, spawning) until
    /// the process exits.
    pub fn spawn(self) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("controller-keeper".into())
            .spawn(move || loop {
                match self.check() {
                    Ok(Some(pause)) => std::thread::sleep(pause),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!("keeping the controller alive: {e:#}");
                        std::thread::sleep(PAUSE);
                    }
                }
            })
    }

    /// Waits until no controller holds the lock, then restarts it if the cluster should run.
    /// Returns how long to pause before the next look, when the answer was "not now".
    fn check(&self) -> anyhow::Result<Option<Duration>> {
        if self.dir.stop_marker().exists() || !self.dir.state_file().exists() {
            return Ok(Some(PAUSE));
        }
        // Blocks while a controller lives, and wakes the moment it dies.
        let lock = ControllerLock::acquire_blocking(&self.dir)?;
        // Under the lock: no controller runs, and none can start until it is released.
        if self.dir.stop_marker().exists() || !self.dir.state_file().exists() {
            return Ok(Some(PAUSE));
        }
        let now = now_ms();
        let mut history = self.load_history();
        let mut tracker = history.tracker();
        let decision = tracker.decide(now, self.policy);
        if tracker != history.tracker() {
            history.keep(tracker);
            self.save_history(&history)?;
        }
        if let RestartDecision::Later { at_ms, recent } = decision {
            if history.reported_delay_until != Some(at_ms) {
                history.reported_delay_until = Some(at_ms);
                self.save_history(&history)?;
                let wait = at_ms.saturating_sub(now) as f64 / 1000.0;
                self.dir.append_event(
                    &Event::new(
                        EventKind::ControllerRestartDelayed,
                        format!("the controller keeps dying soon after it starts ({recent} restarts within {}s); the next restart waits {wait:.1}s; see controller.log", self.policy.window_ms / 1000),
                    )
                    .reason(format!("{recent} short-lived runs within {}s", self.policy.window_ms / 1000)),
                );
            }
            drop(lock);
            return Ok(Some(
                Duration::from_millis(at_ms.saturating_sub(now)).min(PAUSE),
            ));
        }
        // Under the lock no controller lives: this is the one that died, if it wrote its file.
        let previous = crate::ControllerInfo::read(&self.dir).map(|i| i.pid);
        let mut tracker = history.tracker();
        tracker.started(now, self.policy);
        history.keep(tracker);
        self.save_history(&history)?;
        let mut child = spawn_controller_holding(
            &self.dir,
            &self.exe,
            &self.state_dir,
            lock,
            self.netns.as_ref(),
        )?;
        let pid = child.id();
        let was = previous
            .map(|p| format!("controller pid {p} is gone"))
            .unwrap_or_else(|| "no controller was running".into());
        self.dir.append_event(&Event::new(
            EventKind::ControllerRestarted,
            format!(
                "{was}; the agent of {} started controller pid {pid}",
                self.who
            ),
        ));
        tracing::info!(pid, "started a new controller");
        // Reap it when it exits, and say how it ended unless the user stopped it.
        let dir = self.dir.clone();
        std::thread::spawn(move || {
            let Ok(status) = child.wait() else { return };
            if !status.success() && !dir.stop_marker().exists() {
                dir.append_event(&Event::new(
                    EventKind::ControllerExited,
                    format!("controller pid {pid} exited ({status}); see controller.log"),
                ));
            }
        });
        Ok(None)
    }

    fn load_history(&self) -> History {
        // A missing or damaged history only forgets earlier restarts: at worst one restart
        // more happens at once.
        std::fs::read(self.dir.restart_history())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save_history(&self, history: &History) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(history).expect("history serializes");
        myset_os::write_atomic(&self.dir.restart_history(), &bytes, 0o600)
    }
}
