//! `[worker]`: scratch space, Arrow batch rows, conversion threads and memory, and the
//! grace period after SIGTERM.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::checks::nonzero;
use super::size::{size_in, RawSize};
use super::{MemoryBudget, Problems};

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Where jobs write their temporary Parquet parts; the system temp dir when unset.
    pub scratch_dir: Option<PathBuf>,
    /// Rows per Arrow batch handed to the Parquet writer.
    pub batch_rows: NonZeroUsize,
    /// Threads typing the rows of one file (reading and writing are one more each).
    pub conversion_threads: NonZeroUsize,
    /// What one file's conversion may hold in memory.
    pub conversion_memory: MemoryBudget,
    /// After SIGTERM, how long in-flight messages may run before they are cancelled.
    pub shutdown_grace: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorker {
    scratch_dir: Option<PathBuf>,
    #[serde(default = "default_batch_rows")]
    batch_rows: u32,
    #[serde(default)]
    conversion_threads: u32,
    /// Unset: [`MemoryBudget::fitting`] the datasets' rows.
    #[serde(default)]
    conversion_memory: Option<RawSize>,
    #[serde(default = "default_shutdown_grace_seconds")]
    shutdown_grace_seconds: u32,
}

impl Default for RawWorker {
    fn default() -> Self {
        RawWorker {
            scratch_dir: None,
            batch_rows: default_batch_rows(),
            conversion_threads: 0,
            conversion_memory: None,
            shutdown_grace_seconds: default_shutdown_grace_seconds(),
        }
    }
}

fn default_batch_rows() -> u32 {
    8192
}

fn default_shutdown_grace_seconds() -> u32 {
    25
}

impl RawWorker {
    /// The worker settings, and whether `conversion_memory` was given (when it was not,
    /// the settings hold the default, which [`MemoryBudget::fitting`] raises for long rows).
    pub(super) fn validate(self, p: &mut Problems) -> (WorkerSettings, bool) {
        p.check(
            (1..=1_000_000).contains(&self.batch_rows),
            "worker.batch_rows",
            "must be between 1 and 1000000",
        );
        p.check(
            self.conversion_threads <= 256,
            "worker.conversion_threads",
            "must be between 0 (one per CPU) and 256",
        );
        let given = self.conversion_memory.is_some();
        let conversion_memory = match &self.conversion_memory {
            Some(size) => MemoryBudget::new(size_in(
                p,
                "worker.conversion_memory",
                size,
                16 << 20..=1 << 40,
                "between 16MiB and 1TiB",
            )),
            None => MemoryBudget::default(),
        };
        p.check(
            self.shutdown_grace_seconds <= 3600,
            "worker.shutdown_grace_seconds",
            "must be between 0 and 3600",
        );
        let settings = WorkerSettings {
            scratch_dir: self.scratch_dir,
            batch_rows: nonzero(self.batch_rows),
            conversion_memory,
            conversion_threads: match self.conversion_threads {
                0 => std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
                n => nonzero(n),
            },
            shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds.into()),
        };
        (settings, given)
    }
}
