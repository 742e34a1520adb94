//! Backups: the store they live in, base backups, continuous binlog archiving, and the plan
//! a restore follows.

pub mod archive;
pub mod base;
pub mod restore;
pub mod segment;
pub mod store;

pub use store::{Store, StoreUrl};

/// A Unix second in UTC, written with `format`.
pub(crate) fn format_utc(
    unix: i64,
    format: &[time::format_description::BorrowedFormatItem<'_>],
) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .format(format)
        .unwrap_or_else(|_| unix.to_string())
}
