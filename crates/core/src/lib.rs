//! The controller's decisions, as plain functions over plain data.
//!
//! Nothing here starts a process, opens a socket or reads a clock, so every rule can be unit-
//! and property-tested. The controller gathers observations, calls these, and acts.

pub mod donors;
pub mod failover;
pub mod galera;
pub mod gtid;
pub mod health;
pub mod membership;
pub mod readiness;
pub mod restart;
pub mod rolling;
pub mod routing;
pub mod settings;
pub mod start;

pub use donors::donor_order;
pub use gtid::{Gtid, GtidPos};
pub use health::readiness;
pub use membership::{scale_down_victims, scale_up_additions};
pub use readiness::{check_quickly, Readiness, Transition};
pub use restart::{RestartDecision, RestartHistory, RestartPolicy};
pub use routing::{conditions, serves_reads, ClusterView};
pub use start::{start_plan, StartPlan};
