//! The local-process runtime: each instance is an agent process with a data dir under the state
//! dir, started, watched and restarted by a controller process running on the same machine.

pub mod layout;
pub mod netns;
pub mod runtime;
pub mod store;

pub use layout::ClusterDir;
pub use runtime::{run_controller, spawn_controller, ControllerInfo, LocalRuntime};
pub use store::{validate_name, StoreError};
