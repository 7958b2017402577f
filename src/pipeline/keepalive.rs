//! Keep-alive: the one loop behind what a job keeps renewing while it runs, its message's
//! visibility ([`crate::worker::heartbeat`]) and its ledger claim's lease
//! (the pipeline's `LeaseRenewal`).
//!
//! A keep-alive task sleeps until its next renewal is due (or its stop signal), asks its
//! [`Renew`] whether to renew now and by when the call must finish, renews, and schedules
//! the next one: when the renewal says, [`RETRY`] after a failure, or as the renewal says
//! after a call that ran past its deadline. If what it keeps alive is not the job's any
//! more (the message is gone, the lease was taken over or runs out), the job is stopped
//! (reason: lost). Each [`Renew`] logs its own successes and failures.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::job::{Job, StopReason};

/// Pause before retrying a failed renewal.
pub const RETRY: Duration = Duration::from_secs(1);

/// What a keep-alive keeps alive, and what its renewals mean.
pub trait Renew: Send + 'static {
    /// When to wake for a renewal due at `due` (sooner if something runs out first).
    fn wake_at(&self, due: Instant) -> Instant {
        due
    }

    /// At `now`, before renewing: whether to renew, and by when the call must finish.
    fn check(&mut self, now: Instant) -> Check;

    /// One renewal, started at `now`, `late` after its wake-up was due.
    fn renew(&mut self, now: Instant, late: Duration) -> impl Future<Output = Renewed> + Send;

    /// The renewal did not finish by `deadline`: when to wake next.
    fn timed_out(&mut self, deadline: Instant) -> Instant;
}

/// Whether to renew now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Renew; the call is abandoned at `deadline`.
    Renew { deadline: Instant },
    /// Nothing more can be renewed: end the keep-alive; the job goes on.
    End,
    /// It ran out before a renewal succeeded: stop the job (reason: lost).
    Lost,
}

/// What a renewal said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewed {
    /// Renewed; the next renewal is due at this instant.
    Next(Instant),
    /// Failed; tried again after [`RETRY`].
    Failed,
    /// Not the job's any more: stop the job (reason: lost).
    Lost,
}

/// A running keep-alive; [`KeepAlive::stop`] ends it.
pub struct KeepAlive {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl KeepAlive {
    /// Renews `renewal` for `job`, first at `first`, in a task of the current span.
    pub fn start<R: Renew>(renewal: R, first: Instant, job: Job) -> KeepAlive {
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(renewal, first, job, stop.clone()).in_current_span());
        KeepAlive { stop, task }
    }

    /// Stops renewing and waits for a renewal under way to finish.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn run<R: Renew>(mut renewal: R, mut due: Instant, job: Job, stop: CancellationToken) {
    loop {
        let wake = renewal.wake_at(due);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(wake) => {}
        }
        let now = Instant::now();
        let deadline = match renewal.check(now) {
            Check::Renew { deadline } => deadline,
            Check::End => return,
            Check::Lost => {
                job.stop(StopReason::Lost);
                return;
            }
        };
        let late = now.saturating_duration_since(wake);
        due = match tokio::time::timeout_at(deadline, renewal.renew(now, late)).await {
            Ok(Renewed::Next(at)) => at,
            Ok(Renewed::Failed) => Instant::now() + RETRY,
            Ok(Renewed::Lost) => {
                job.stop(StopReason::Lost);
                return;
            }
            Err(_) => renewal.timed_out(deadline),
        };
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Plays `script` (one renewal result per call, `None`: hangs past its 2 s deadline)
    /// and records when each call was made, in seconds from the start.
    struct Script {
        start: Instant,
        script: Vec<Option<Renewed>>,
        calls: Arc<Mutex<Vec<u64>>>,
    }

    impl Renew for Script {
        fn check(&mut self, now: Instant) -> Check {
            if self.script.is_empty() {
                return Check::End;
            }
            Check::Renew {
                deadline: now + Duration::from_secs(2),
            }
        }

        async fn renew(&mut self, now: Instant, _late: Duration) -> Renewed {
            self.calls
                .lock()
                .unwrap()
                .push((now - self.start).as_secs());
            match self.script.remove(0) {
                Some(renewed) => renewed,
                None => std::future::pending().await,
            }
        }

        fn timed_out(&mut self, deadline: Instant) -> Instant {
            deadline + Duration::from_secs(3)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn renews_when_due_retries_failures_and_stops_a_lost_job() {
        let start = Instant::now();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let script = Script {
            start,
            script: vec![
                Some(Renewed::Next(start + Duration::from_secs(10))),
                Some(Renewed::Failed),
                None,
                Some(Renewed::Lost),
            ],
            calls: calls.clone(),
        };
        let job = Job::new("m", &CancellationToken::new());
        let keep = KeepAlive::start(script, start + Duration::from_secs(5), job.clone());
        tokio::time::sleep(Duration::from_secs(60)).await;
        // At 5 s, due again at 10 s; failed, retried at 11 s; timed out at 13 s, woken at
        // 16 s: lost.
        assert_eq!(*calls.lock().unwrap(), [5, 10, 11, 16]);
        assert_eq!(job.stopped(), Some(StopReason::Lost));
        keep.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn stops_on_its_signal() {
        let start = Instant::now();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let script = Script {
            start,
            script: vec![Some(Renewed::Next(start + Duration::from_secs(10))); 5],
            calls: calls.clone(),
        };
        let job = Job::new("m", &CancellationToken::new());
        let keep = KeepAlive::start(script, start + Duration::from_secs(1), job.clone());
        tokio::time::sleep(Duration::from_secs(5)).await;
        keep.stop().await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(*calls.lock().unwrap(), [1]);
        assert_eq!(job.stopped(), None);
    }
}
