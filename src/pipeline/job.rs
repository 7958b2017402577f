//! One message's job: who it is (ledger claims are owned per job) and how it is stopped.
//!
//! A job stops early for two reasons: the worker is shutting down and the grace period
//! ran out, or the message was lost (its receipt handle is no longer valid, or another
//! worker took over the object's lease). Every long step of the pipeline watches
//! [`Job::token`] and gives up promptly, cleaning up what it started.

use std::io::{self, Read};
use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

use crate::convert::SourceFailed;
use crate::ports::Slot;

/// Why a job was stopped before it finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Shutdown: release the message so another worker takes it at once.
    Shutdown,
    /// Someone else owns the message or the object now: leave it alone.
    Lost,
}

/// The identity and cancellation of one message's job.
#[derive(Debug, Clone)]
pub struct Job {
    message_id: String,
    token: CancellationToken,
    reason: Arc<OnceLock<StopReason>>,
    /// Its place among the worker's in-flight messages, if the pool gave it one.
    slot: Slot,
}

impl Job {
    /// A job stopped when `parent` is cancelled (reason: shutdown) or by [`Job::stop`].
    pub fn new(message_id: impl Into<String>, parent: &CancellationToken) -> Job {
        Job {
            message_id: message_id.into(),
            token: parent.child_token(),
            reason: Arc::new(OnceLock::new()),
            slot: Slot::default(),
        }
    }

    /// The same job holding `slot` (the pool's in-flight permit).
    pub fn with_slot(mut self, slot: Slot) -> Job {
        self.slot = slot;
        self
    }

    pub fn slot(&self) -> &Slot {
        &self.slot
    }

    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Stops the job; the first reason given wins.
    pub fn stop(&self, reason: StopReason) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }

    /// Why the job was stopped, if it was.
    pub fn stopped(&self) -> Option<StopReason> {
        self.token
            .is_cancelled()
            .then(|| self.reason.get().copied().unwrap_or(StopReason::Shutdown))
    }
}

/// A reader that fails as soon as its job is stopped, so a blocking conversion ends
/// promptly instead of reading the rest of the object.
pub struct StoppableReader<R> {
    inner: R,
    token: CancellationToken,
}

impl<R: Read> StoppableReader<R> {
    pub fn new(inner: R, job: &Job) -> Self {
        StoppableReader {
            inner,
            token: job.token.clone(),
        }
    }
}

impl<R: Read> Read for StoppableReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.token.is_cancelled() {
            return Err(SourceFailed::io("the job was stopped"));
        }
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_reasons() {
        let parent = CancellationToken::new();
        let lost = Job::new("m1", &parent);
        let shut = Job::new("m2", &parent);
        assert_eq!(lost.stopped(), None);
        lost.stop(StopReason::Lost);
        lost.stop(StopReason::Shutdown);
        assert_eq!(
            lost.stopped(),
            Some(StopReason::Lost),
            "the first reason wins"
        );
        parent.cancel();
        assert_eq!(shut.stopped(), Some(StopReason::Shutdown));
    }

    #[test]
    fn a_stopped_job_stops_reading() {
        let job = Job::new("m", &CancellationToken::new());
        let mut reader = StoppableReader::new(&b"abc"[..], &job);
        let mut buf = [0u8; 1];
        assert_eq!(reader.read(&mut buf).unwrap(), 1);
        job.stop(StopReason::Shutdown);
        assert!(reader.read(&mut buf).is_err());
    }
}
