//! The local-process runtime: each instance is an agent process with a data dir under the state
//! dir, started, watched and restarted by a controller process running on the same machine;
//! the agents in turn restart the controller when it dies.

mod conntrack;
mod controller_process;
pub mod endpoints;
pub mod keeper;
pub mod layout;
mod lock;
pub mod netns;
pub mod runtime;
pub mod store;
pub mod tls;

pub use controller_process::{run_controller, spawn_controller, ControllerInfo};
pub use keeper::Keeper;
pub use layout::ClusterDir;
pub use lock::ControllerLock;
pub use runtime::LocalRuntime;
pub use store::{validate_name, StoreError};
