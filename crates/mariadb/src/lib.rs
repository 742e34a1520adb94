//! The MariaDB flavour: where its binaries are, how a server is configured, and every SQL
//! statement myset sends. A second flavour (MySQL 8) would be a sibling of this crate.

pub mod binaries;
pub mod client;
pub mod config;
pub mod galera;
pub mod sql;

pub use binaries::{Binaries, MissingBinary};
pub use client::{AdminClient, ClientError};
pub use config::ServerConfig;
