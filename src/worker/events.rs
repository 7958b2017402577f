//! What the worker observes, one struct per observation: each writes its log line and
//! records its metrics together, so the two cannot drift apart. Both are an interface:
//! the integration tests and operators' queries read the log messages and fields, the
//! dashboard reads the metrics ([`crate::metrics`]; `deploy/test_template.py` takes the
//! `outcome` values from `outcome_name` here).

use std::time::Duration;

use super::dead_letter::{Ending, Step};
use super::disposition::Disposition;
use crate::pipeline::error::JobError;
use crate::pipeline::{ObjectOutcome, Outcome};
use crate::ports::{Received, StoreError};

/// A long poll came back, after `took`, with `messages` messages.
pub struct Polled {
    pub took: Duration,
    pub messages: usize,
}

impl Polled {
    pub fn emit(self) {
        let metrics = crate::metrics::get();
        metrics.poll(self.took.as_secs_f64());
        metrics.received(self.messages);
    }
}

/// A long poll failed after `took`; the poller tries again in `retry_in`.
pub struct PollFailed<'a> {
    pub took: Duration,
    pub error: &'a StoreError,
    pub retry_in: Duration,
}

impl PollFailed<'_> {
    pub fn emit(self) {
        crate::metrics::get().poll(self.took.as_secs_f64());
        tracing::warn!(error = %self.error, retry_in_ms = self.retry_in.as_millis() as u64, "receive failed");
    }
}

/// The heartbeat extended a message's visibility by `by`, `late` after it was due.
pub struct VisibilityExtended {
    pub by: Duration,
    pub late: Duration,
}

impl VisibilityExtended {
    pub fn emit(self) {
        crate::metrics::get().extension();
        tracing::debug!(
            extended_by_s = self.by.as_secs(),
            lateness_ms = self.late.as_millis() as u64,
            "visibility extended"
        );
    }
}

/// How a message's job ended: its log line, the `outcome` of its span, and the message
/// metrics (a count and the time since receipt, by outcome).
pub enum MessageEnded<'a> {
    Handled(MessageHandled<'a>),
    Failed(MessageFailed<'a>),
}

/// The job succeeded, or found nothing to do.
pub struct MessageHandled<'a> {
    pub message: &'a Received,
    pub outcome: &'a Outcome,
}

/// The job failed; `disposition` is what becomes of its message.
pub struct MessageFailed<'a> {
    pub message: &'a Received,
    pub error: &'a JobError,
    pub disposition: &'a Disposition,
}

impl<'a> MessageEnded<'a> {
    pub fn new(
        message: &'a Received,
        result: &'a Result<Outcome, JobError>,
        disposition: &'a Disposition,
    ) -> Self {
        match result {
            Ok(outcome) => MessageEnded::Handled(MessageHandled { message, outcome }),
            Err(error) => MessageEnded::Failed(MessageFailed {
                message,
                error,
                disposition,
            }),
        }
    }

    /// Logs, then records the outcome in the current span and the metrics.
    pub fn emit(self) {
        let message = match &self {
            MessageEnded::Handled(handled) => {
                handled.log();
                handled.message
            }
            MessageEnded::Failed(failed) => {
                failed.log();
                failed.message
            }
        };
        let outcome = outcome_name(&self);
        tracing::Span::current().record("outcome", outcome);
        let metrics = crate::metrics::get();
        metrics.message(outcome);
        metrics.duration(message.received_at.elapsed().as_secs_f64(), outcome);
    }
}

/// What became of a message, as the `outcome` of its span and metrics.
fn outcome_name(ended: &MessageEnded<'_>) -> &'static str {
    match ended {
        MessageEnded::Handled(MessageHandled {
            outcome: Outcome::Discarded(_),
            ..
        }) => "discarded",
        MessageEnded::Handled(_) => "succeeded",
        MessageEnded::Failed(failed) => match failed.disposition {
            Disposition::Retry(_) => "retried",
            Disposition::DeadLetter { .. } => "dead_lettered",
            Disposition::Release => "released",
            Disposition::Abandon => "abandoned",
            Disposition::Delete => "deleted",
        },
    }
}

impl MessageHandled<'_> {
    fn log(&self) {
        let message = self.message;
        // Time since receipt, and since the message entered the queue (queue wait
        // included), for latency measurements.
        let since_sent_ms = message.sent_at_ms.map(|sent| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            now.saturating_sub(sent)
        });
        tracing::info!(
            outcome = %describe(self.outcome),
            handled_in_ms = message.received_at.elapsed().as_millis() as u64,
            since_sent_ms,
            "message handled"
        )
    }
}

impl MessageFailed<'_> {
    fn log(&self) {
        let e = self.error;
        match self.disposition {
            Disposition::Retry(after) => tracing::warn!(
                error = %e,
                error_class = e.class().as_str(),
                retry_in_s = after.as_secs(),
                "message failed; retrying later"
            ),
            Disposition::DeadLetter { class, reason } => tracing::error!(
                error = %reason,
                error_class = class.as_str(),
                cause = %e,
                "message failed; dead-lettering it"
            ),
            Disposition::Release => {
                tracing::info!("stopped at shutdown; releasing the message")
            }
            Disposition::Abandon => {
                tracing::warn!("message lost to another consumer; leaving it")
            }
            Disposition::Delete => {
                tracing::error!(error = %e, "unexpected: an error that deletes")
            }
        }
    }
}

/// A handled message's outcome, as the `outcome` field of its "message handled" line.
fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Discarded(reason) => format!("discarded: {reason}"),
        Outcome::Upserted {
            dataset,
            rows,
            quarantined,
        } => {
            format!("upserted {rows} inline records into {dataset}, quarantined {quarantined}")
        }
        Outcome::Converted(objects) => objects
            .iter()
            .map(|o| match o {
                ObjectOutcome::Written(s) => format!(
                    "{} → {} rows in {} part(s), {} quarantined",
                    s.uri,
                    s.rows_written,
                    s.parts.len(),
                    s.rows_quarantined
                ),
                ObjectOutcome::Rejected(r) => format!("{} rejected: {}", r.uri, r.reason),
                ObjectOutcome::AlreadyDone { uri, status } => {
                    format!("{uri} already {}", status.as_str())
                }
                ObjectOutcome::Superseded { uri } => format!("{uri} superseded by a newer version"),
                ObjectOutcome::Committed { uri } => {
                    format!("{uri} already committed by an earlier attempt")
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// How dead-lettering a message ended: counted by `via`, and logged unless it went the
/// ordinary way (the full message).
pub struct DeadLetterEnded<'a>(pub &'a Ending);

impl DeadLetterEnded<'_> {
    pub fn emit(self) {
        let metrics = crate::metrics::get();
        match self.0 {
            Ending::Sent(step) => {
                metrics.dead_letter(step.as_str());
                if *step != Step::Full {
                    tracing::info!(via = step.as_str(), "dead-lettered after a fallback");
                }
            }
            Ending::KeptOnly { uri, error } => {
                metrics.dead_letter("kept_in_s3");
                tracing::error!(
                    body_uri = %uri,
                    error = %error,
                    "the dead-letter queue refused the message; its body is kept only in the quarantine bucket and the message is deleted"
                );
            }
            Ending::Retry { after, error } => {
                metrics.dead_letter("retried");
                tracing::error!(
                    error = %error,
                    retry_in_s = after.as_secs(),
                    "could not dead-letter the message nor keep its body; it comes back later"
                );
            }
        }
    }
}
