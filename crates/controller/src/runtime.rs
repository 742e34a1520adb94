//! How instances come to exist, and where the cluster's records are kept.

use myset_api::{ClusterState, Event, InstanceSpec, Placement};
use std::future::Future;

/// Implemented by the local-process runtime (and later a Kubernetes one).
pub trait Runtime: Send + Sync + 'static {
    /// Chooses where a new ordinal listens. Called once per ordinal; the result is persisted.
    fn place(&self, ordinal: u32, state: &ClusterState) -> anyhow::Result<Placement>;
    /// Starts the agent for `spec` (like creating a Pod).
    fn start(&self, spec: &InstanceSpec) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// The pid of the ordinal's agent while it runs, None when it is gone.
    fn agent_pid(&self, ordinal: u32) -> Option<u32>;
    /// Stops the ordinal's agent and server gracefully; its data stays.
    fn stop(&self, ordinal: u32) -> impl Future<Output = ()> + Send;
    /// Kills the ordinal's agent and server at once, if they can be reached (fencing a primary
    /// that is being replaced). Returns whether anything was killed.
    fn kill(&self, ordinal: u32) -> impl Future<Output = bool> + Send;
    /// Moves the ordinal's data dir aside for inspection, so the instance re-clones.
    /// Returns where it went.
    fn set_aside_data(&self, ordinal: u32, label: &str) -> anyhow::Result<String>;
    /// Whether the ordinal's volume holds a data dir.
    fn has_data(&self, ordinal: u32) -> bool;
    /// Removes the ordinal's volume.
    fn delete_data(&self, ordinal: u32) -> anyhow::Result<()>;
    /// Persists the cluster record durably.
    fn save_state(&self, state: &ClusterState) -> anyhow::Result<()>;
    /// Appends to the cluster's event log.
    fn record_event(&self, event: &Event);
    /// Where the user account's password is kept, for `status`.
    fn password_file(&self) -> String;
}
