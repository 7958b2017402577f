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
    #[serde(default = "default_conversion_memory")]
    conversion_memory: RawSize,
    #[serde(default = "default_shutdown_grace_seconds")]
    shutdown_grace_seconds: u32,
}

impl Default for RawWorker {
    fn default() -> Self {
        RawWorker {
            scratch_dir: None,
            batch_rows: default_batch_rows(),
            conversion_threads: 0,
            conversion_memory: default_conversion_memory(),
            shutdown_grace_seconds: default_shutdown_grace_seconds(),
        }
    }
}

fn default_conversion_memory() -> RawSize {
    RawSize::text("128MiB")
}

fn default_batch_rows() -> u32 {
    8192
}

fn default_shutdown_grace_seconds() -> u32 {
    25
}

impl RawWorker {
    pub(super) fn validate(self, p: &mut Problems) -> WorkerSettings {
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
        let conversion_memory = MemoryBudget::new(size_in(
            p,
            "worker.conversion_memory",
            &self.conversion_memory,
            16 << 20..=1 << 40,
            "between 16MiB and 1TiB",
        ));
        p.check(
            self.shutdown_grace_seconds <= 3600,
            "worker.shutdown_grace_seconds",
            "must be between 0 and 3600",
        );
        WorkerSettings {
            scratch_dir: self.scratch_dir,
            batch_rows: nonzero(self.batch_rows),
            conversion_memory,
            conversion_threads: match self.conversion_threads {
                0 => std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
                n => nonzero(n),
            },
            shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds.into()),
        }
    }
}
