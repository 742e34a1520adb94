//! Backups: the store they live in, base backups, continuous binlog archiving, and the plan
//! a restore follows.

pub mod archive;
pub mod base;
pub mod restore;
pub mod segment;
pub mod store;

pub use store::{Store, StoreUrl};
