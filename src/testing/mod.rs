//! In-memory fakes of the [`crate::ports`], for unit tests of the pipeline, the worker and
//! the catalog (the integration tests use the emulator instead), and their test data.
//!
//! - [`memory`]: object store, records table and ledger.
//! - [`queue`]: the work queue and its dead-letter queue.
//! - [`records`]: a dataset with a column of every type, and batches of it.

pub mod memory;
pub mod queue;
pub mod records;
