//! Table formats: implementations of the [`crate::ports::TableSink`] port, which makes an
//! object's converted parts visible in its dataset's table.
//!
//! - [`hive`]: Parquet parts under Hive partition folders, each new partition noted in
//!   the ledger and registered in the catalog.

pub mod hive;

/// Files uploaded at once per object.
pub const UPLOADS_AT_ONCE: usize = 4;
