//! In-memory fakes of the [`crate::ports`], for unit tests of the pipeline, the worker and
//! the catalog (the integration tests use the emulator instead), and their test data. The
//! stores of [`memory`] also serve the benchmark of the worker's own cost per message
//! (feature `bench-fakes`, [`crate::bench`]).
//!
//! - [`memory`]: object store, records table and ledger.
//! - [`queue`]: the work queue and its dead-letter queue.
//! - [`records`]: a dataset with a column of every type, and batches of it.

// The benchmark uses only some of what the tests use.
#[cfg_attr(not(test), allow(dead_code))]
pub mod memory;
#[cfg(test)]
pub mod queue;
#[cfg(test)]
pub mod records;
