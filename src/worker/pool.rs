//! The poller pool: `pollers` long-poll loops share `max_in_flight` permits. A poller asks
//! SQS only for as many messages as it holds permits, so no received message waits for a
//! slot while its visibility clock runs. Each message runs as its own job task with its
//! own heartbeat ([`super::job`]); its result becomes a disposition that the job carries
//! out. Deletes are batched (up to 10) by one deleter task ([`super::deleter`]).
//!
//! Shutdown: cancelling the token stops the pollers at once (an in-progress long poll is
//! abandoned; anything SQS had already handed out reappears after its visibility timeout).
//! In-flight jobs get the grace period to finish; then they are stopped: each aborts its
//! uploads, releases its ledger claim and makes its message visible again. Pending deletes
//! are flushed last.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::time::{timeout_at, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::deleter::delete_loop;
use super::disposition::RetryPolicy;
use super::events::{PollFailed, Polled};
use super::job::{self, Handler, Shared};
use crate::config::QueueSettings;
use crate::health::Health;
use crate::ports::{Queue, Received};

/// SQS's limit on messages per ReceiveMessage and per DeleteMessageBatch.
pub(super) const SQS_BATCH: usize = 10;
/// Backoff after a failed ReceiveMessage, doubling up to the cap.
const RECEIVE_BACKOFF: Duration = Duration::from_millis(200);
const RECEIVE_BACKOFF_CAP: Duration = Duration::from_secs(20);
/// After the grace period, how long stopped jobs get to clean up.
const CLEANUP: Duration = Duration::from_millis(2500);
/// Then how long the last deletes may take. [`Pool::run`] returns at most
/// `grace + CLEANUP + DELETE_FLUSH` after shutdown began, even if a job never stops.
const DELETE_FLUSH: Duration = Duration::from_secs(1);

/// A worker's pollers, jobs and deleter.
pub struct Pool<Q, H> {
    shared: Arc<Shared<Q, H>>,
    settings: QueueSettings,
    grace: Duration,
}

impl<Q: Queue, H: Handler> Pool<Q, H> {
    /// A pool reporting its liveness and readiness to `health` (sized for its pollers).
    pub fn new(
        queue: Arc<Q>,
        handler: Arc<H>,
        settings: QueueSettings,
        grace: Duration,
        health: Arc<Health>,
    ) -> Self {
        let shared = Shared {
            queue,
            handler,
            source_queue: settings.url.clone(),
            policy: RetryPolicy {
                max_attempts: settings.max_attempts,
                base: settings.retry_base,
                max: settings.retry_max,
            },
            visibility: settings.visibility_timeout,
            health,
        };
        Pool {
            shared: Arc::new(shared),
            settings,
            grace,
        }
    }

    /// Runs until `shutdown` is cancelled and every in-flight job is done or stopped;
    /// returns when it stopped receiving (shutdown's start, for the caller's own bounds).
    pub async fn run(self, shutdown: CancellationToken) -> Instant {
        let health = self.shared.health.clone();
        let stopping = shutdown.clone();
        tokio::spawn(async move {
            stopping.cancelled().await;
            health.stopping();
        });
        let permits = Arc::new(Semaphore::new(self.settings.max_in_flight.get()));
        let jobs = TaskTracker::new();
        let stop_jobs = CancellationToken::new();
        let (deletes, pending_deletes) =
            mpsc::channel(self.settings.max_in_flight.get() + SQS_BATCH);
        let deleter =
            tokio::spawn(delete_loop(self.shared.queue.clone(), pending_deletes).in_current_span());
        tracing::info!(
            pollers = self.settings.pollers.get(),
            max_in_flight = self.settings.max_in_flight.get(),
            queue = %self.settings.url,
            "worker started"
        );

        let pollers: Vec<_> = (0..self.settings.pollers.get())
            .map(|poller| {
                let poll = Poller {
                    index: poller,
                    shared: self.shared.clone(),
                    permits: permits.clone(),
                    jobs: jobs.clone(),
                    stop_jobs: stop_jobs.clone(),
                    deletes: deletes.clone(),
                    wait: self.settings.wait,
                };
                tokio::spawn(
                    poll.run(shutdown.clone())
                        .instrument(tracing::info_span!("poller", poller)),
                )
            })
            .collect();
        drop(deletes);
        for poller in pollers {
            if let Err(e) = poller.await {
                tracing::error!(error = %e, "poller task failed");
            }
        }

        let stopped = Instant::now();
        jobs.close();
        tracing::info!(
            in_flight = jobs.len(),
            grace_s = self.grace.as_secs_f64(),
            "stopped receiving; waiting for in-flight messages"
        );
        if tokio::time::timeout(self.grace, jobs.wait()).await.is_err() {
            tracing::warn!(
                in_flight = jobs.len(),
                "grace period over; stopping in-flight messages and releasing them"
            );
            stop_jobs.cancel();
            if tokio::time::timeout(CLEANUP, jobs.wait()).await.is_err() {
                tracing::error!(in_flight = jobs.len(), "jobs did not stop in time; their messages come back after their visibility timeout");
            }
        }
        // A job that never stopped still holds a sender, so the deleter is bounded too;
        // what it did not delete comes back and is discarded as done by the ledger.
        let mut deleter = deleter;
        match timeout_at(stopped + self.grace + CLEANUP + DELETE_FLUSH, &mut deleter).await {
            Ok(Err(e)) => tracing::error!(error = %e, "delete task failed"),
            Ok(Ok(())) => {}
            Err(_) => {
                deleter.abort();
                tracing::error!("pending deletes abandoned at the shutdown deadline; those messages come back and are discarded as done");
            }
        }
        tracing::info!("worker stopped");
        stopped
    }
}

/// One long-poll loop.
struct Poller<Q, H> {
    /// Which poller this is, for its health.
    index: usize,
    shared: Arc<Shared<Q, H>>,
    permits: Arc<Semaphore>,
    jobs: TaskTracker,
    stop_jobs: CancellationToken,
    deletes: mpsc::Sender<Received>,
    wait: Duration,
}

impl<Q: Queue, H: Handler> Poller<Q, H> {
    async fn run(self, shutdown: CancellationToken) {
        let _alive = self.shared.health.poller();
        let mut backoff = RECEIVE_BACKOFF;
        let health = &self.shared.health;
        loop {
            let first = match self.permits.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    // Every slot is busy: waiting for capacity is not a stalled receive.
                    health.waiting(self.index);
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        first = self.permits.clone().acquire_owned() => match first {
                            Ok(permit) => permit,
                            Err(_) => return,
                        },
                    }
                }
            };
            let mut held = vec![first];
            while held.len() < SQS_BATCH {
                match self.permits.clone().try_acquire_owned() {
                    Ok(permit) => held.push(permit),
                    Err(_) => break,
                }
            }
            let polled = std::time::Instant::now();
            health.receiving(self.index);
            let receive =
                self.shared
                    .queue
                    .receive(held.len() as i32, self.wait, self.shared.visibility);
            let received = tokio::select! {
                _ = shutdown.cancelled() => return,
                received = receive => received,
            };
            let took = polled.elapsed();
            match received {
                Ok(messages) => {
                    health.received(self.index);
                    Polled {
                        took,
                        messages: messages.len(),
                    }
                    .emit();
                    backoff = RECEIVE_BACKOFF;
                    // Permits beyond the messages received are released when `held` drops.
                    for (message, permit) in messages.into_iter().zip(held.drain(..)) {
                        let job = job::run(
                            self.shared.clone(),
                            message,
                            permit,
                            self.stop_jobs.clone(),
                            self.deletes.clone(),
                        );
                        self.jobs.spawn(job);
                    }
                }
                Err(e) => {
                    PollFailed {
                        took,
                        error: &e,
                        retry_in: backoff,
                    }
                    .emit();
                    drop(held);
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(RECEIVE_BACKOFF_CAP);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::error::JobError;
    use crate::pipeline::job::Job;
    use crate::pipeline::Outcome;
    use crate::ports::{StoreError, StoreErrorKind};
    use crate::testing::queue::{Call, MemoryQueue};
    use crate::worker::dead_letter::KeepBody;
    use std::num::NonZeroUsize;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    /// Acts on the body: "ok", "permanent", "transient", "hang" (until stopped), "stuck"
    /// (ignores its stop); counts how many run at once. Keeps dead-letter bodies in
    /// memory.
    #[derive(Default)]
    struct FakeHandler {
        now: AtomicUsize,
        peak: AtomicUsize,
        kept: Mutex<Vec<(String, String)>>,
    }

    impl KeepBody for FakeHandler {
        async fn keep_body(&self, message_id: &str, body: &str) -> Result<String, StoreError> {
            let mut kept = self.kept.lock().unwrap();
            kept.push((message_id.to_owned(), body.to_owned()));
            Ok(format!("s3://q/{message_id}"))
        }
    }

    impl Handler for FakeHandler {
        async fn handle(&self, body: &str, job: &Job) -> Result<Outcome, JobError> {
            let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(30)).await;
            self.now.fetch_sub(1, Ordering::SeqCst);
            match body {
                "ok" => Ok(Outcome::Discarded("ok".into())),
                "permanent" => Err(JobError::UnknownDataset("nope".into())),
                "transient" => Err(JobError::Aws(StoreError::new(
                    "S3 GetObject",
                    StoreErrorKind::Transient,
                    "SlowDown",
                ))),
                "stuck" => std::future::pending().await,
                _ => {
                    job.token().cancelled().await;
                    Err(JobError::Stopped)
                }
            }
        }
    }

    fn settings(pollers: usize, max_in_flight: usize) -> QueueSettings {
        QueueSettings {
            url: "q".into(),
            dead_letter_url: "dlq".into(),
            pollers: NonZeroUsize::new(pollers).unwrap(),
            max_in_flight: NonZeroUsize::new(max_in_flight).unwrap(),
            wait: Duration::from_millis(10),
            visibility_timeout: Duration::from_secs(60),
            max_attempts: 3,
            retry_base: Duration::from_secs(7),
            retry_max: Duration::from_secs(60),
            sns_topics: Default::default(),
        }
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_flight_limit_holds_and_deletes_are_batched() {
        let queue = Arc::new(MemoryQueue::new(vec!["ok"; 25]));
        let handler = Arc::new(FakeHandler::default());
        let pool = Pool::new(
            queue.clone(),
            handler.clone(),
            settings(2, 3),
            Duration::from_secs(5),
            Health::new(2, Duration::from_secs(60)),
        );
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(pool.run(shutdown.clone()));
        until("25 deletes", || queue.deleted().len() == 25).await;
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .unwrap()
            .unwrap();

        let peak = handler.peak.load(Ordering::SeqCst);
        assert!((2..=3).contains(&peak), "peak in flight {peak}");
        assert!(queue
            .asked
            .lock()
            .unwrap()
            .iter()
            .all(|&(max, visibility)| (1..=3).contains(&max) && visibility == 60));
        for call in queue.calls() {
            assert!(
                matches!(&call, Call::Delete(ids) if (1..=SQS_BATCH).contains(&ids.len())),
                "{call:?}"
            );
        }
        let mut ids = queue.deleted();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 25, "each message deleted once");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failures_are_retried_or_dead_lettered() {
        let queue = Arc::new(MemoryQueue::new(vec!["permanent", "transient"]));
        let pool = Pool::new(
            queue.clone(),
            Arc::new(FakeHandler::default()),
            settings(1, 2),
            Duration::from_secs(5),
            Health::new(2, Duration::from_secs(60)),
        );
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(pool.run(shutdown.clone()));
        until("two dispositions", || queue.calls().len() >= 3).await;
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .unwrap()
            .unwrap();
        let mut calls = queue.calls();
        calls.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(
            calls,
            [
                Call::DeadLetter(
                    "m0".into(),
                    "permanent".into(),
                    "inline records name dataset \"nope\", which is not configured".into()
                ),
                Call::Delete(vec!["m0".into()]),
                Call::Visibility("m1".into(), 7),
            ]
        );
    }

    /// A message the dead-letter queue will not take ends: it is not made visible again
    /// every `retry_base` seconds for ever.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_message_that_cannot_be_dead_lettered_does_not_loop() {
        let queue = Arc::new(
            MemoryQueue::new(vec!["permanent"]).refusing_dead_letters(StoreErrorKind::NotFound),
        );
        let handler = Arc::new(FakeHandler::default());
        let pool = Pool::new(
            queue.clone(),
            handler.clone(),
            settings(1, 1),
            Duration::from_secs(5),
            Health::new(2, Duration::from_secs(60)),
        );
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(pool.run(shutdown.clone()));
        until("the message's fate", || {
            queue
                .calls()
                .iter()
                .any(|c| matches!(c, Call::Delete(_) | Call::Visibility(..)))
        })
        .await;
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(queue.deleted(), ["m0"], "{:?}", queue.calls());
        // Full, trimmed, pointer: each refused; the body is safe in the quarantine bucket.
        let letters = queue
            .calls()
            .into_iter()
            .filter(|c| matches!(c, Call::DeadLetter(..)))
            .count();
        assert_eq!(letters, 3);
        assert_eq!(
            handler.kept.lock().unwrap().as_slice(),
            [("m0".to_owned(), "permanent".to_owned())]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_waits_for_the_grace_then_releases() {
        let queue = Arc::new(MemoryQueue::new(vec!["hang", "ok"]));
        let pool = Pool::new(
            queue.clone(),
            Arc::new(FakeHandler::default()),
            settings(1, 2),
            Duration::from_millis(300),
            Health::new(2, Duration::from_secs(60)),
        );
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(pool.run(shutdown.clone()));
        until("the quick message", || queue.deleted() == ["m1"]).await;
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            queue.calls(),
            [
                Call::Delete(vec!["m1".into()]),
                Call::Visibility("m0".into(), 0)
            ],
            "the hung message is released at once"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_is_bounded_even_when_a_job_never_stops() {
        let queue = Arc::new(MemoryQueue::new(vec!["stuck", "ok"]));
        let grace = Duration::from_secs(2);
        let pool = Pool::new(
            queue.clone(),
            Arc::new(FakeHandler::default()),
            settings(1, 2),
            grace,
            Health::new(2, Duration::from_secs(60)),
        );
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(pool.run(shutdown.clone()));
        until("the quick message", || queue.deleted() == ["m1"]).await;
        let started = Instant::now();
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(60), running)
            .await
            .expect("the pool returned")
            .unwrap();
        let took = started.elapsed();
        assert!(
            took <= grace + CLEANUP + DELETE_FLUSH + Duration::from_millis(100),
            "took {took:?}"
        );
    }
}
