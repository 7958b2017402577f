//! The commands of the `lakeworker` binary, one module each; `main.rs` only parses the
//! command line and dispatches here. This is the wiring layer: the only one, with the
//! one-shot commands, that names the AWS adapters ([`crate::aws`]).
//!
//! - [`run`]: the worker (pool, pipeline and catalog over the AWS adapters) until a signal.
//! - [`convert`]: one local file through the conversion path, no AWS.
//! - [`provision`], [`status`], [`backfill`], [`redrive`]: operations on the queues, buckets
//!   and tables.

use std::process::ExitCode;

use anyhow::Context;

pub mod backfill;
pub mod convert;
pub mod infer;
pub mod provision;
pub mod redrive;
pub mod run;
pub mod status;

/// The exit code of an invalid configuration or usage.
pub const EXIT_CONFIG: u8 = 2;

/// Runs a command's future on a multi-threaded runtime.
pub fn block_on<F: std::future::Future<Output = anyhow::Result<ExitCode>>>(
    future: F,
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(future);
    // Do not wait for a blocking thread stuck in a read: the jobs have already settled.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    result
}

/// `lakeworker healthcheck`: prints the endpoint's answer; 0 for a 200, else 1.
pub fn healthcheck(url: &str, timeout: u64) -> ExitCode {
    let timeout = std::time::Duration::from_secs(timeout.max(1));
    match crate::health::check(url, timeout) {
        Ok((200, body)) => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Ok((code, body)) => {
            eprintln!("unhealthy ({code}): {body}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}
