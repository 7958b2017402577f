//! Shared harness for the integration tests: the emulator's address, the `lakeworker`
//! binary with bounded waits (here); the tests' config fixture ([`config_file`]); uniquely
//! named AWS resources per test ([`env`], [`lake`]); a running worker and its JSON log
//! ([`worker`]); test data and Parquet readers, the parquet crate's and pyarrow's ([`data`]).
//!
//! `make test` (scripts/with-moto) starts moto and sets `LAKEWORKER_TEST_ENDPOINT` and
//! `LAKEWORKER_TEST_PYTHON`. Without them these tests fail with instructions, never skip.
#![allow(dead_code)]

mod config_file;
mod data;
mod env;
mod lake;
pub mod proxy;
mod worker;

// Each test file uses some of these.
#[allow(unused_imports)]
pub use config_file::{ConfigFile, WORKER_CONFIG};
#[allow(unused_imports)]
pub use data::*;
#[allow(unused_imports)]
pub use env::{Catalog, TestEnv, TestEnvBuilder};
#[allow(unused_imports)]
pub use worker::{events_in, has_field, json_lines, span_field, Worker, WorkerBuilder};

use std::future::Future;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_lakeworker");
pub const WAIT: Duration = Duration::from_secs(60);
pub const REGION: &str = "us-east-1";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the integration tests with `make test`, which starts the emulator")
    })
}

pub fn endpoint() -> String {
    required_env("LAKEWORKER_TEST_ENDPOINT")
}

pub fn python() -> String {
    required_env("LAKEWORKER_TEST_PYTHON")
}

/// A name no other test (or earlier run against the same emulator) uses.
pub fn unique(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("lw-{tag}-{}-{n}-{nanos}", std::process::id())
}

/// Runs a command to completion, killing it if it outlives `timeout`. Its output is
/// drained while it runs, so a chatty command cannot stall on a full pipe.
pub fn run_bounded(command: &mut Command, timeout: Duration) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn command");
    fn drain(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    }
    let stdout = drain(child.stdout.take().expect("stdout"));
    let stderr = drain(child.stderr.take().expect("stderr"));
    let deadline = Instant::now() + timeout;
    loop {
        let status = child.try_wait().expect("poll child");
        let late = status.is_none() && Instant::now() > deadline;
        if late {
            let _ = child.kill();
        }
        if status.is_some() || late {
            let output = Output {
                status: child.wait().expect("wait for child"),
                stdout: stdout.join().expect("stdout reader"),
                stderr: stderr.join().expect("stderr reader"),
            };
            if !late {
                return output;
            }
            panic!(
                "{command:?} did not finish within {timeout:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `lakeworker ARGS...` with the emulator's credentials, bounded by [`WAIT`].
pub fn lakeworker(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command.args(args).envs(env.iter().copied());
    run_bounded(&mut command, WAIT)
}

/// Polls `check` every 200 ms until it returns true; panics after `timeout` with `what`.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
