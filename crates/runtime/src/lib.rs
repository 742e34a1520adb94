//! The seam between the controller and the world it drives.
//!
//! The controller decides; a [`Runtime`] makes instances exist (local processes today,
//! Kubernetes Pods later) and keeps the cluster's record, and an [`AgentApi`] carries specs,
//! orders and status between the controller and each instance's agent. Neither trait knows
//! the controller's internals, so a runtime depends only on this crate and `myset-api`, and
//! tests can drive the controller with fakes of both.

mod agents;

pub use agents::{member_data, AgentApi, AgentError, HttpAgents};
pub use myset_http::ApiAccess;

use myset_api::{ClusterState, Event, InstanceSpec, Placement};
use std::future::Future;

/// What a kill achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillOutcome {
    /// Its processes were running and are dead now.
    Killed,
    /// Nothing of it was running.
    AlreadyGone,
    /// It cannot be reached (a host cut off from the network): it may still run.
    Unreachable,
}

/// How instances come to exist, and where the cluster's records are kept.
pub trait Runtime: Send + Sync + 'static {
    /// How the controller reaches agents.
    type Agents: AgentApi;

    fn agents(&self) -> &Self::Agents;
    /// Chooses where a new ordinal listens. Called once per ordinal; the result is persisted.
    fn place(&self, ordinal: u32, state: &ClusterState) -> anyhow::Result<Placement>;
    /// Starts the agent for `spec` (like creating a Pod).
    fn start(&self, spec: &InstanceSpec) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// The pid of the ordinal's agent while it runs, None when it is gone.
    fn agent_pid(&self, ordinal: u32) -> Option<u32>;
    /// Stops the ordinal's agent and server gracefully; its data stays. May take long (a
    /// server's clean shutdown): callers must not hold anything others wait for.
    fn stop(&self, ordinal: u32) -> impl Future<Output = ()> + Send;
    /// Kills the ordinal's agent and server at once, if they can be reached (fencing a primary
    /// that is being replaced).
    fn kill(&self, ordinal: u32) -> impl Future<Output = KillOutcome> + Send;
    /// Moves the ordinal's data dir aside for inspection, so the instance re-clones.
    /// Returns where it went.
    fn set_aside_data(
        &self,
        ordinal: u32,
        label: &str,
    ) -> impl Future<Output = anyhow::Result<String>> + Send;
    /// Whether the ordinal's volume holds a data dir.
    fn has_data(&self, ordinal: u32) -> bool;
    /// Removes the ordinal's volume.
    fn delete_data(&self, ordinal: u32) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Persists the cluster record durably; returns once it is on stable storage.
    fn save_state(&self, state: &ClusterState) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Appends to the cluster's event log.
    fn record_event(&self, event: &Event);
    /// Where the user account's password is kept, for `status`.
    fn password_file(&self) -> String;
    /// Issues new certificates where they are needed: for members whose certificate is
    /// missing, nearing its end or naming other addresses, and for the controller's API; for
    /// all of them with `force`. Returns the members whose files changed: their agents must
    /// be told to take them up. A runtime that issues no certificates does nothing.
    fn renew_certificates(
        &self,
        state: &ClusterState,
        force: bool,
    ) -> impl Future<Output = anyhow::Result<Vec<u32>>> + Send {
        let _ = (state, force);
        async { Ok(Vec::new()) }
    }
    /// Galera: a stopped member's last committed position, read from its data dir, for the
    /// bootstrap choice after a full outage.
    fn galera_position(
        &self,
        ordinal: u32,
    ) -> impl Future<Output = anyhow::Result<myset_core::galera::MemberData>> + Send {
        async move {
            anyhow::bail!(
                "this runtime cannot read member {ordinal}'s Galera position yet (a full outage of a Galera cluster is recovered by the local runtime only)"
            )
        }
    }
}
