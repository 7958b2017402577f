//! The poller pool: `pollers` long-poll loops share `max_in_flight` permits. A poller asks
//! SQS only for as many messages as it holds permits, so no received message waits for a
//! slot while its visibility clock runs. Each message runs as its own task; finished
//! messages are deleted in batches of up to 10 by one deleter task.
//!
//! Shutdown: cancelling the token stops the pollers at once (an in-progress long poll is
//! abandoned; anything SQS had already handed out reappears after its visibility timeout),
//! then in-flight jobs finish and pending deletes are flushed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::{timeout_at, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::disposition::{self, Disposition};
use crate::aws::{ObjectStore, Queue, Received, RecordStore};
use crate::config::QueueSettings;
use crate::pipeline::{ObjectOutcome, Outcome, Pipeline};

/// SQS's limit on messages per ReceiveMessage and per DeleteMessageBatch.
const SQS_BATCH: usize = 10;
/// How long a finished message may wait for others to share its delete call.
const DELETE_LINGER: Duration = Duration::from_millis(20);
/// Backoff after a failed ReceiveMessage, doubling up to the cap.
const RECEIVE_BACKOFF: Duration = Duration::from_millis(200);
const RECEIVE_BACKOFF_CAP: Duration = Duration::from_secs(20);
/// Tries per delete batch before leaving the messages to come back (harmless: outputs are
/// idempotent).
const DELETE_TRIES: u32 = 3;

/// A worker's pollers, jobs and deleter.
pub struct Pool<Q, S, R> {
    queue: Arc<Q>,
    pipeline: Arc<Pipeline<S, R>>,
    settings: QueueSettings,
}

impl<Q: Queue, S: ObjectStore, R: RecordStore> Pool<Q, S, R> {
    pub fn new(queue: Arc<Q>, pipeline: Arc<Pipeline<S, R>>, settings: QueueSettings) -> Self {
        Pool {
            queue,
            pipeline,
            settings,
        }
    }

    /// Runs until `shutdown` is cancelled and every in-flight job is done.
    pub async fn run(self, shutdown: CancellationToken) {
        let permits = Arc::new(Semaphore::new(self.settings.max_in_flight.get()));
        let jobs = TaskTracker::new();
        let (deletes, pending_deletes) =
            mpsc::channel(self.settings.max_in_flight.get() + SQS_BATCH);
        let deleter = tokio::spawn(delete_loop(self.queue.clone(), pending_deletes));
        tracing::info!(
            pollers = self.settings.pollers.get(),
            max_in_flight = self.settings.max_in_flight.get(),
            queue = %self.settings.url,
            "worker started"
        );

        let pollers: Vec<_> = (0..self.settings.pollers.get())
            .map(|poller| {
                let poll = Poller {
                    queue: self.queue.clone(),
                    pipeline: self.pipeline.clone(),
                    permits: permits.clone(),
                    jobs: jobs.clone(),
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
        tracing::info!(
            in_flight = jobs.len(),
            "stopped receiving; waiting for in-flight messages"
        );
        jobs.close();
        jobs.wait().await;
        if let Err(e) = deleter.await {
            tracing::error!(error = %e, "delete task failed");
        }
        tracing::info!("worker stopped");
    }
}

/// One long-poll loop.
struct Poller<Q, S, R> {
    queue: Arc<Q>,
    pipeline: Arc<Pipeline<S, R>>,
    permits: Arc<Semaphore>,
    jobs: TaskTracker,
    deletes: mpsc::Sender<Received>,
    wait: Duration,
}

impl<Q: Queue, S: ObjectStore, R: RecordStore> Poller<Q, S, R> {
    async fn run(self, shutdown: CancellationToken) {
        let mut backoff = RECEIVE_BACKOFF;
        loop {
            let mut held = tokio::select! {
                _ = shutdown.cancelled() => return,
                first = self.permits.clone().acquire_owned() => match first {
                    Ok(permit) => vec![permit],
                    Err(_) => return,
                },
            };
            while held.len() < SQS_BATCH {
                match self.permits.clone().try_acquire_owned() {
                    Ok(permit) => held.push(permit),
                    Err(_) => break,
                }
            }
            let received = tokio::select! {
                _ = shutdown.cancelled() => return,
                received = self.queue.receive(held.len() as i32, self.wait) => received,
            };
            match received {
                Ok(messages) => {
                    backoff = RECEIVE_BACKOFF;
                    // Permits beyond the messages received are released when `held` drops.
                    for (message, permit) in messages.into_iter().zip(held.drain(..)) {
                        self.jobs.spawn(run_job(
                            message,
                            permit,
                            self.pipeline.clone(),
                            self.deletes.clone(),
                        ));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "receive failed");
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

/// Handles one message and queues its delete when the disposition says so.
async fn run_job<S: ObjectStore, R: RecordStore>(
    message: Received,
    _permit: OwnedSemaphorePermit,
    pipeline: Arc<Pipeline<S, R>>,
    deletes: mpsc::Sender<Received>,
) {
    let span = tracing::info_span!("message", message_id = %message.message_id, attempt = message.receive_count);
    async {
        let result = pipeline.handle(&message.body).await;
        match &result {
            Ok(outcome) => tracing::info!(outcome = %describe(outcome), "message handled"),
            Err(e) => tracing::warn!(
                error = %e,
                error_class = e.class().as_str(),
                "message failed; leaving it on the queue for a later attempt"
            ),
        }
        if disposition::decide(&result) == Disposition::Delete
            && deletes.send(message).await.is_err()
        {
            tracing::error!("delete queue closed; the message will be delivered again");
        }
    }
    .instrument(span)
    .await
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Discarded(reason) => format!("discarded: {reason}"),
        Outcome::Upserted { dataset, rows } => {
            format!("upserted {rows} inline records into {dataset}")
        }
        Outcome::Converted(objects) => objects
            .iter()
            .map(|o| match o {
                ObjectOutcome::Written(s) => format!(
                    "{} → {} rows in {} part(s)",
                    s.uri,
                    s.rows_written,
                    s.parts.len()
                ),
                ObjectOutcome::Superseded { uri } => format!("{uri} superseded by a newer version"),
            })
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// Collects finished messages and deletes them in batches of up to 10.
async fn delete_loop<Q: Queue>(queue: Arc<Q>, mut pending: mpsc::Receiver<Received>) {
    let mut batch = Vec::with_capacity(SQS_BATCH);
    while let Some(first) = pending.recv().await {
        batch.push(first);
        let deadline = Instant::now() + DELETE_LINGER;
        while batch.len() < SQS_BATCH {
            match timeout_at(deadline, pending.recv()).await {
                Ok(Some(message)) => batch.push(message),
                Ok(None) | Err(_) => break,
            }
        }
        delete_with_retries(queue.as_ref(), &batch).await;
        batch.clear();
    }
}

async fn delete_with_retries<Q: Queue>(queue: &Q, batch: &[Received]) {
    for attempt in 1..=DELETE_TRIES {
        match queue.delete_batch(batch).await {
            Ok(failed) if failed.is_empty() => return,
            Ok(failed) => {
                tracing::warn!(
                    ?failed,
                    "some deletes failed; those messages will be delivered again"
                );
                return;
            }
            Err(e) if e.is_transient() && attempt < DELETE_TRIES => {
                tracing::warn!(error = %e, attempt, "delete failed; retrying");
                tokio::time::sleep(RECEIVE_BACKOFF * attempt).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, messages = batch.len(), "delete failed; the messages will be delivered again");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::memory::MemoryRecords;
    use crate::aws::AwsError;
    use crate::config::Settings;
    use crate::envelope::ObjectRef;
    use std::io::{Cursor, Read};
    use std::num::NonZeroUsize;
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    /// Hands out `total` messages, then nothing; records what was asked and deleted.
    struct FakeQueue {
        total: usize,
        handed: AtomicUsize,
        asked: Mutex<Vec<i32>>,
        deleted: Mutex<Vec<Vec<String>>>,
    }

    impl Queue for FakeQueue {
        async fn receive(&self, max: i32, wait: Duration) -> Result<Vec<Received>, AwsError> {
            self.asked.lock().unwrap().push(max);
            let mut out = Vec::new();
            while out.len() < max as usize {
                let n = self.handed.fetch_add(1, Ordering::SeqCst);
                if n >= self.total {
                    break;
                }
                out.push(Received {
                    message_id: format!("m{n}"),
                    receipt_handle: format!("r{n}"),
                    body: r#"{"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                             "s3": {"bucket": {"name": "lakeworker-landing"}, "object": {"key": "orders/a.csv"}}}]}"#
                        .into(),
                    receive_count: 1,
                });
            }
            if out.is_empty() {
                tokio::time::sleep(wait).await;
            }
            Ok(out)
        }

        async fn delete_batch(&self, messages: &[Received]) -> Result<Vec<String>, AwsError> {
            let ids = messages.iter().map(|m| m.message_id.clone()).collect();
            self.deleted.lock().unwrap().push(ids);
            Ok(Vec::new())
        }
    }

    /// Every open takes a while; records the most opens at once.
    #[derive(Default)]
    struct SlowStore {
        now: AtomicUsize,
        peak: AtomicUsize,
    }

    impl ObjectStore for SlowStore {
        async fn open(&self, _: &ObjectRef) -> Result<Box<dyn Read + Send>, AwsError> {
            let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(30)).await;
            self.now.fetch_sub(1, Ordering::SeqCst);
            Ok(Box::new(Cursor::new(
                b"order_id,ordered_at\no1,2024-01-01T00:00:00Z\n".to_vec(),
            )))
        }

        async fn put_file(&self, _: &str, _: &str, _: &Path) -> Result<(), AwsError> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_flight_limit_holds_and_deletes_are_batched() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/local.toml");
        let settings = Arc::new(Settings::load_with_env(&path, []).unwrap());
        let mut queue_settings = settings.queue.clone();
        queue_settings.pollers = NonZeroUsize::new(2).unwrap();
        queue_settings.max_in_flight = NonZeroUsize::new(3).unwrap();
        queue_settings.wait = Duration::from_millis(10);
        let queue = Arc::new(FakeQueue {
            total: 25,
            handed: AtomicUsize::new(0),
            asked: Mutex::new(Vec::new()),
            deleted: Mutex::new(Vec::new()),
        });
        let pipeline = Arc::new(Pipeline::new(
            settings,
            SlowStore::default(),
            MemoryRecords::default(),
        ));
        let shutdown = CancellationToken::new();
        let pool = Pool::new(queue.clone(), pipeline.clone(), queue_settings);
        let running = tokio::spawn(pool.run(shutdown.clone()));

        let deadline = Instant::now() + Duration::from_secs(20);
        while queue
            .deleted
            .lock()
            .unwrap()
            .iter()
            .map(Vec::len)
            .sum::<usize>()
            < 25
        {
            assert!(Instant::now() < deadline, "not all messages deleted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .unwrap()
            .unwrap();

        let peak = pipeline.store().peak.load(Ordering::SeqCst);
        assert!((2..=3).contains(&peak), "peak in flight {peak}");
        assert!(queue
            .asked
            .lock()
            .unwrap()
            .iter()
            .all(|&max| (1..=3).contains(&max)));
        let batches = queue.deleted.lock().unwrap();
        assert!(batches.iter().all(|b| (1..=SQS_BATCH).contains(&b.len())));
        let mut ids: Vec<&String> = batches.iter().flatten().collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 25, "each message deleted once");
    }
}
