//! The pure domain: what a message asks for, datasets and their columns, the lake's
//! layout, and the ledger's records. No I/O, no AWS: every
//! other layer depends on this one and it depends on none of them.
//!
//! - [`envelope`]: message bodies (S3, SNS, EventBridge, inline records) → what to do.
//! - [`dataset`]: datasets, key-glob routing, validation policies.
//! - [`schema`]: column types, cell parsing, Arrow mapping.
//! - [`lake`]: every key and location in the lake and quarantine.
//! - [`ledger`]: the ledger's model: claims, leases, status.
//! - [`records`]: a cell's canonical text, the records table's limits.
//! - [`history`]: the load history table's row and columns.

pub mod dataset;
pub mod envelope;
pub mod history;
pub mod lake;
pub mod ledger;
pub mod records;
pub mod schema;
