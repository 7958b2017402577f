//! In-memory fakes of the [`crate::ports`], for unit tests of the pipeline, the worker and
//! the catalog (the integration tests use the emulator instead).

pub mod memory;
pub mod queue;
