//! One message's job, receipt to disposition: the handler (the pipeline) runs under the
//! message's heartbeat; its result becomes a [`Disposition`], is reported
//! ([`MessageEnded`]), and is carried out: the message is deleted (by the deleter), made
//! visible again later or at once, left alone, or dead-lettered ([`dead_letter::send`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::dead_letter::{self, Ending, KeepBody};
use super::disposition::{self, Disposition, RetryPolicy};
use super::events::{DeadLetterEnded, MessageEnded};
use super::heartbeat::Heartbeat;
use crate::health::Health;
use crate::pipeline::error::JobError;
use crate::pipeline::job::Job;
use crate::pipeline::{Outcome, Pipeline};
use crate::ports::{Ledger, ObjectStore, Queue, Received, RecordStore, StoreError, TableSink};

/// What the pool runs for each message: the pipeline, or a fake in tests. It also keeps
/// the bodies the dead-letter queue would not take ([`KeepBody`]).
pub trait Handler: KeepBody {
    fn handle(
        &self,
        body: &str,
        job: &Job,
    ) -> impl Future<Output = Result<Outcome, JobError>> + Send;
}

impl<S: ObjectStore, R: RecordStore, L: Ledger, T: TableSink> Handler for Pipeline<S, R, L, T> {
    fn handle(
        &self,
        body: &str,
        job: &Job,
    ) -> impl Future<Output = Result<Outcome, JobError>> + Send {
        Pipeline::handle(self, body, job)
    }
}

impl<S: ObjectStore, R: RecordStore, L: Ledger, T: TableSink> KeepBody for Pipeline<S, R, L, T> {
    fn keep_body(
        &self,
        message_id: &str,
        body: &str,
    ) -> impl Future<Output = Result<String, StoreError>> + Send {
        self.keep_dead_letter_body(message_id, body)
    }
}

/// What every job needs.
pub(super) struct Shared<Q, H> {
    pub(super) queue: Arc<Q>,
    pub(super) handler: Arc<H>,
    /// The work queue's URL, for dead letters' `lakeworker.source_queue`.
    pub(super) source_queue: String,
    pub(super) policy: RetryPolicy,
    pub(super) visibility: Duration,
    pub(super) health: Arc<Health>,
}

/// Handles one message under its heartbeat and carries out its disposition.
pub(super) async fn run<Q: Queue, H: Handler>(
    shared: Arc<Shared<Q, H>>,
    message: Received,
    permit: OwnedSemaphorePermit,
    stop_jobs: CancellationToken,
    deletes: mpsc::Sender<Received>,
) {
    let span = tracing::info_span!(
        "message",
        message_id = %message.message_id,
        attempt = message.receive_count,
        dataset = tracing::field::Empty,
        bucket = tracing::field::Empty,
        key = tracing::field::Empty,
        outcome = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    if let Some(id) = crate::telemetry::trace_id(&span) {
        span.record("trace_id", id);
    }
    async {
        let _in_flight = shared.health.job();
        let metrics = crate::metrics::get();
        metrics.in_flight(1);
        let job = Job::new(message.message_id.clone(), &stop_jobs)
            .with_slot(crate::ports::Slot::new(permit));
        let heartbeat = Heartbeat::start(
            shared.queue.clone(),
            message.clone(),
            shared.visibility,
            job.clone(),
        );
        let result = shared.handler.handle(&message.body, &job).await;
        let disposition = disposition::decide(
            &result,
            message.receive_count,
            &shared.policy,
            job.stopped(),
        );
        heartbeat.stop().await;
        MessageEnded::new(&message, &result, &disposition).emit();
        metrics.in_flight(-1);
        carry_out(&shared, message, disposition, &deletes).await;
    }
    .instrument(span)
    .await
}

/// Does what the disposition says with the message.
async fn carry_out<Q: Queue, H: Handler>(
    shared: &Shared<Q, H>,
    message: Received,
    disposition: Disposition,
    deletes: &mpsc::Sender<Received>,
) {
    let queue = shared.queue.as_ref();
    match disposition {
        Disposition::Delete => {
            if deletes.send(message).await.is_err() {
                tracing::error!("delete queue closed; the message will be delivered again");
            }
        }
        Disposition::Retry(after) => set_visibility(queue, &message, after).await,
        Disposition::Release => set_visibility(queue, &message, Duration::ZERO).await,
        Disposition::Abandon => {}
        Disposition::DeadLetter { class, reason } => {
            let reason = dead_letter::Reason {
                class,
                error: &reason,
                attempts: message.receive_count,
            };
            let context = dead_letter::Context {
                source_queue: &shared.source_queue,
                policy: &shared.policy,
            };
            let ending =
                dead_letter::send(queue, shared.handler.as_ref(), &message, &reason, context).await;
            DeadLetterEnded(&ending).emit();
            let delete = match ending {
                Ending::Sent(_) | Ending::KeptOnly { .. } => true,
                Ending::Retry { after, .. } => {
                    set_visibility(queue, &message, after).await;
                    false
                }
            };
            if delete && deletes.send(message).await.is_err() {
                tracing::error!(
                    "delete queue closed; the dead-lettered message will be delivered again"
                );
            }
        }
    }
}

async fn set_visibility<Q: Queue>(queue: &Q, message: &Received, timeout: Duration) {
    if let Err(e) = queue.change_visibility(message, timeout).await {
        tracing::warn!(
            error = %e,
            "could not change the message's visibility; it comes back when its current timeout ends"
        );
    }
}
