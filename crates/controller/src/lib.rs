//! The controller: a reconcile loop over intent (desired members, primary, term) and observed
//! state (agent statuses). Decisions come from `myset-core`; instances come and go through a
//! [`Runtime`], so the same loop can drive local processes or, later, Kubernetes.

mod api;
pub mod backups;
mod controller;
mod galera;
mod ha;
mod proxy;

pub use controller::{Controller, Timing};
pub use myset_runtime::{AgentApi, AgentError, HttpAgents, KillOutcome, Runtime};
