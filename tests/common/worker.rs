//! A running `lakeworker run` ([`Worker`], started by [`WorkerBuilder`]) and its JSON
//! log lines, which tests read by field rather than by text.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::proxy::Proxy;
use super::{unique, TestEnv, BIN};

/// How a [`Worker`] of a [`TestEnv`] is started: `env.worker()…start()`.
#[must_use = "a builder does nothing until `start`"]
pub struct WorkerBuilder<'e> {
    env: &'e TestEnv,
    vars: Vec<(String, String)>,
}

impl WorkerBuilder<'_> {
    /// Reaches AWS through `proxy`.
    pub fn via(self, proxy: &Proxy) -> Self {
        self.env("LAKEWORKER__AWS__ENDPOINT_URL", &proxy.url())
    }

    /// One more environment variable than the environment's (later ones win).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.vars.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn start(self) -> Worker {
        let env = self.env;
        let log = env.dir.path().join(format!("worker-{}.log", unique("log")));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(BIN)
            .args(["run", "--config", env.config_str()])
            .envs(env.env_pairs())
            .envs(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(file.try_clone().expect("dup log"))
            .stderr(file)
            .spawn()
            .expect("spawn worker");
        Worker { child, log }
    }
}

impl TestEnv {
    /// A worker with more settings: `env.worker().via(&proxy).env(…).start()`.
    pub fn worker(&self) -> WorkerBuilder<'_> {
        WorkerBuilder {
            env: self,
            vars: Vec::new(),
        }
    }

    /// A worker with this environment's settings alone.
    pub fn start_worker(&self) -> Worker {
        self.worker().start()
    }
}

/// A running `lakeworker run`. Dropping it kills the process (by pid) and reaps it.
pub struct Worker {
    child: Child,
    log: PathBuf,
}

impl Worker {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("poll worker")
    }

    pub fn log_path(&self) -> PathBuf {
        self.log.clone()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Every JSON log line.
    pub fn log_events(&self) -> Vec<Value> {
        json_lines(&self.log())
    }

    /// The JSON log lines whose message is `message`.
    pub fn events(&self, message: &str) -> Vec<Value> {
        events_in(&self.log(), message)
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("poll worker").is_none()
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit.
    pub fn terminate(mut self, timeout: Duration) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll worker") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "worker did not exit within {timeout:?} of SIGTERM; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Worker {
    /// Stops the worker (SIGTERM) so another may start on the same queue: also waits out
    /// its last long poll, which the emulator may still answer with a message that then
    /// stays invisible for the visibility timeout. For an environment made with
    /// [`super::TestEnvBuilder::short_polls`].
    pub fn stop_for_restart(self) {
        let status = self.terminate(Duration::from_secs(30));
        assert!(status.success(), "{status:?}");
        std::thread::sleep(SHORT_POLL + Duration::from_millis(500));
    }
}

/// `queue.wait_seconds` of [`super::TestEnvBuilder::short_polls`].
pub const SHORT_POLL: Duration = Duration::from_secs(1);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The JSON lines of a log (other lines are skipped).
pub fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .collect()
}

/// The JSON lines of a log whose message (`fields.message`) is `message`.
pub fn events_in(log: &str, message: &str) -> Vec<Value> {
    json_lines(log)
        .into_iter()
        .filter(|event| event["fields"]["message"] == message)
        .collect()
}

/// The field `name` of the span named `span` around a log event (the innermost such).
pub fn span_field<'a>(event: &'a Value, span: &str, name: &str) -> Option<&'a Value> {
    event["spans"]
        .as_array()?
        .iter()
        .rev()
        .find(|s| s["name"] == span)
        .and_then(|s| s.get(name))
}

/// Whether a log event's own fields, or those of any span around it, hold `name` =
/// `value`.
pub fn has_field(event: &Value, name: &str, value: impl Into<Value>) -> bool {
    let value = value.into();
    event["fields"].get(name) == Some(&value)
        || event["spans"]
            .as_array()
            .is_some_and(|spans| spans.iter().any(|span| span.get(name) == Some(&value)))
}
