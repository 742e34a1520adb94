//! Backups: the store they live in, base backups, continuous binlog archiving, and the plan
//! a restore follows.

pub mod store;

pub use store::{Store, StoreUrl};
