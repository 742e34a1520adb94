//! The controller: a reconcile loop over intent (desired members, primary, term) and observed
//! state (agent statuses). Decisions come from `myset-core`; instances come and go through a
//! [`Runtime`], so the same loop can drive local processes or, later, Kubernetes.

mod api;
pub mod backups;
mod controller;
mod galera;
mod ha;
mod metrics;
mod proxy;
mod publish;
mod rolling;
pub mod tls;

pub use controller::{Controller, Timing};
pub use myset_runtime::{AgentApi, AgentError, HttpAgents, KillOutcome, Runtime};
pub use publish::EndpointPublisher;
