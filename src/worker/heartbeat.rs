//! The visibility heartbeat: while a message's job runs, keep the message invisible to
//! other consumers, so no job is limited by the visibility timeout.
//!
//! Each message gets one heartbeat task from receive to disposition. When half of the
//! current visibility window is left (at most 30 s before the deadline: room for a slow
//! ChangeMessageVisibility call and a retry), it sets the visibility to
//! `visibility_timeout` from now. A failed call is retried every second until the deadline.
//! If SQS says the receipt handle is no longer valid, the message is not ours any more:
//! the job is stopped (reason: lost). SQS caps visibility at 12 hours from the receive; near
//! the cap the heartbeat warns once and extends only up to it. The loop is the job's
//! keep-alive ([`crate::pipeline::keepalive`]), the same as the ledger lease's.
//!
//! Extensions run on the async reactor while conversions run on blocking threads, so busy
//! cores delay a heartbeat only by OS scheduling; each extension logs its lateness.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::disposition::MAX_VISIBILITY;
use super::events::VisibilityExtended;
use crate::pipeline::job::Job;
use crate::pipeline::keepalive::{Check, KeepAlive, Renew, Renewed, RETRY};
use crate::ports::{Queue, Received, StoreErrorKind};

/// The most an extension is done ahead of the deadline.
const MAX_MARGIN: Duration = Duration::from_secs(30);

/// How long before the deadline to extend: half the window, at most [`MAX_MARGIN`].
pub fn margin(visibility: Duration) -> Duration {
    (visibility / 2).min(MAX_MARGIN)
}

/// A running heartbeat; [`Heartbeat::stop`] ends it before the message's disposition.
pub struct Heartbeat(KeepAlive);

impl Heartbeat {
    pub fn start<Q: Queue>(
        queue: Arc<Q>,
        message: Received,
        visibility: Duration,
        job: Job,
    ) -> Heartbeat {
        Self::start_with_cap(queue, message, visibility, job, MAX_VISIBILITY)
    }

    /// [`Heartbeat::start`] with another total cap than SQS's 12 hours (for tests).
    pub fn start_with_cap<Q: Queue>(
        queue: Arc<Q>,
        message: Received,
        visibility: Duration,
        job: Job,
        cap: Duration,
    ) -> Heartbeat {
        let beat = Beat {
            queue,
            deadline: Instant::from_std(message.received_at) + visibility,
            cap_at: Instant::from_std(message.received_at) + cap,
            message,
            visibility,
            margin: margin(visibility),
            warned: false,
        };
        let first = beat.deadline - beat.margin;
        Heartbeat(KeepAlive::start(beat, first, job))
    }

    /// Stops extending and waits for an extension under way to finish.
    pub async fn stop(self) {
        self.0.stop().await
    }
}

/// One message's visibility, as the keep-alive renews it.
struct Beat<Q> {
    queue: Arc<Q>,
    message: Received,
    visibility: Duration,
    /// [`margin`] of `visibility`: how long before the deadline to extend, and how long an
    /// extension may take.
    margin: Duration,
    /// When the message becomes visible unless extended.
    deadline: Instant,
    /// SQS refuses visibility beyond this.
    cap_at: Instant,
    /// Whether the warning near the cap was logged.
    warned: bool,
}

impl<Q: Queue> Renew for Beat<Q> {
    fn check(&mut self, now: Instant) -> Check {
        if self.cap_at.saturating_duration_since(now) <= self.margin {
            tracing::warn!(
                visible_in_s = self.deadline.saturating_duration_since(now).as_secs(),
                "reached SQS's 12-hour visibility cap; the message will become visible to other consumers"
            );
            return Check::End;
        }
        Check::Renew {
            deadline: now + self.margin,
        }
    }

    async fn renew(&mut self, now: Instant, late: Duration) -> Renewed {
        let room = self.cap_at.saturating_duration_since(now);
        let extend_by = self.visibility.min(room);
        if extend_by < self.visibility && !self.warned {
            self.warned = true;
            tracing::warn!(
                left_s = room.as_secs(),
                "near SQS's 12-hour visibility cap; extending only up to it"
            );
        }
        match self.queue.change_visibility(&self.message, extend_by).await {
            Ok(()) => {
                VisibilityExtended {
                    by: extend_by,
                    late,
                }
                .emit();
                self.deadline = now + extend_by;
                Renewed::Next(self.deadline - self.margin)
            }
            Err(e) if e.kind == StoreErrorKind::NotFound => {
                tracing::warn!(error = %e, "the message is no longer ours; stopping its job");
                Renewed::Lost
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not extend visibility; retrying");
                Renewed::Failed
            }
        }
    }

    fn timed_out(&mut self, _deadline: Instant) -> Instant {
        tracing::warn!(
            timeout_ms = self.margin.as_millis() as u64,
            "visibility extension timed out; retrying"
        );
        Instant::now() + RETRY
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::job::StopReason;
    use crate::testing::queue::MemoryQueue;
    use tokio_util::sync::CancellationToken;

    fn message() -> Received {
        Received {
            message_id: "m".into(),
            receipt_handle: "r".into(),
            body: String::new(),
            receive_count: 1,
            received_at: Instant::now().into_std(),
            sent_at_ms: None,
        }
    }

    /// Records extensions as (seconds since start, extension); told the message is gone
    /// after `gone_after` of them.
    fn queue(gone_after: usize) -> Arc<MemoryQueue> {
        Arc::new(MemoryQueue::default().gone_after(gone_after))
    }

    #[tokio::test(start_paused = true)]
    async fn failed_extensions_are_retried_every_second() {
        let queue = Arc::new(MemoryQueue::default().failing_visibility_changes(2));
        let job = Job::new("m", &CancellationToken::new());
        let beat = Heartbeat::start(
            queue.clone(),
            message(),
            Duration::from_secs(10),
            job.clone(),
        );
        tokio::time::sleep(Duration::from_secs(13)).await;
        beat.stop().await;
        // Failed at 5 and 6 s, extended at 7 s, next at 7 + 10 - 5 = 12 s.
        assert_eq!(queue.extensions(), [(7, 10), (12, 10)]);
    }

    #[tokio::test(start_paused = true)]
    async fn extends_at_half_the_window_until_stopped() {
        let queue = queue(usize::MAX);
        let job = Job::new("m", &CancellationToken::new());
        let beat = Heartbeat::start(
            queue.clone(),
            message(),
            Duration::from_secs(10),
            job.clone(),
        );
        tokio::time::sleep(Duration::from_secs(32)).await;
        beat.stop().await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(
            queue.extensions(),
            [(5, 10), (10, 10), (15, 10), (20, 10), (25, 10), (30, 10)]
        );
        assert_eq!(job.stopped(), None);
        // Long windows extend 30 s ahead of the deadline.
        assert_eq!(margin(Duration::from_secs(600)), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_receipt_handle_stops_the_job() {
        let queue = queue(2);
        let job = Job::new("m", &CancellationToken::new());
        let _beat = Heartbeat::start(
            queue.clone(),
            message(),
            Duration::from_secs(4),
            job.clone(),
        );
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(queue.extensions(), [(2, 4), (4, 4)]);
        assert_eq!(job.stopped(), Some(StopReason::Lost));
    }

    #[tokio::test(start_paused = true)]
    async fn extensions_stop_at_the_visibility_cap() {
        let queue = queue(usize::MAX);
        let job = Job::new("m", &CancellationToken::new());
        let cap = Duration::from_secs(23);
        let _beat = Heartbeat::start_with_cap(
            queue.clone(),
            message(),
            Duration::from_secs(10),
            job.clone(),
            cap,
        );
        tokio::time::sleep(Duration::from_secs(60)).await;
        // At 15 s only 8 s are left under the cap; at 18 s (8 s later minus the margin) no
        // meaningful extension is possible.
        assert_eq!(queue.extensions(), [(5, 10), (10, 10), (15, 8)]);
        assert_eq!(job.stopped(), None);
    }
}
