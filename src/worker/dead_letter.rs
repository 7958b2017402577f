//! Dead-lettering that always ends, and never loses a message.
//!
//! SendMessage to the dead-letter queue can fail: the body plus the `lakeworker.*`
//! attributes may exceed the queue's size limit (1 MiB at most, a queue may be set lower),
//! or the queue may refuse everything (deleted, access denied). [`send`] tries in order:
//!
//! 1. the original body with the full attributes (`lakeworker.error` up to 1 KiB);
//! 2. the original body with trimmed attributes (`error_class`, `error` up to 256 bytes,
//!    `attempts`, `message_id`);
//! 3. the body kept in the quarantine bucket, at a key derived from the message id
//!    ([`crate::domain::lake::dead_letter_body_key`]), and a small pointer message sent instead:
//!    the body `{"lakeworker_dead_letter": {"body_uri", "message_id", "body_bytes"}}`
//!    with the trimmed attributes plus `lakeworker.body_uri`. `lakeworker redrive` puts
//!    the original body back.
//!
//! A step whose message would be over SQS's 1 MiB is skipped without a call. When every
//! send fails ([`Ending`]): if the body is kept in S3, the original is deleted (an error
//! log names where the body is) unless the last refusal was transient and attempts are
//! left, in which case the message comes back after the policy's backoff; if the body
//! could not be kept either, the message comes back after the policy's backoff, growing
//! with every delivery (and SQS's own redrive policy, maxReceiveCount, is the backstop).

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use super::disposition::RetryPolicy;
use crate::pipeline::error::ErrorClass;
use crate::ports::{DeadLetter, MessageAttribute, Queue, Received, StoreError};

/// SQS's largest message: body and attributes (names, types and values) together.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Longest `lakeworker.error` in the full attributes; the full error is in the log.
pub const MAX_ERROR_ATTRIBUTE: usize = 1024;
/// Longest `lakeworker.error` in the trimmed attributes.
pub const TRIMMED_ERROR_ATTRIBUTE: usize = 256;

/// Why a message is dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason<'a> {
    pub class: ErrorClass,
    pub error: &'a str,
    /// The delivery attempt (`ApproximateReceiveCount`).
    pub attempts: u32,
}

/// Where dead letters come from, and how a failed one is retried.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The work queue's URL (`lakeworker.source_queue`).
    pub source_queue: &'a str,
    pub policy: &'a RetryPolicy,
}

/// Keeps a message body that the dead-letter queue would not take (the pipeline: in the
/// quarantine bucket); returns its `s3://` URI.
pub trait KeepBody: Send + Sync + 'static {
    fn keep_body(
        &self,
        message_id: &str,
        body: &str,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;
}

/// What was sent to the dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The body with every attribute.
    Full,
    /// The body with trimmed attributes.
    Trimmed,
    /// A pointer to the body kept in S3.
    Pointer,
}

impl Step {
    /// The `via` of the `lakeworker.dead_letters` metric.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Full => "full",
            Step::Trimmed => "trimmed",
            Step::Pointer => "pointer",
        }
    }
}

/// How dead-lettering ended.
#[derive(Debug)]
pub enum Ending {
    /// In the dead-letter queue: delete the original.
    Sent(Step),
    /// The dead-letter queue refused even the pointer, for good: the body is kept at
    /// `uri` only. Delete the original (the loop ends) and tell the operator.
    KeptOnly { uri: String, error: StoreError },
    /// Nothing durable outside the work queue yet: make the message visible again after
    /// `after` (the policy's backoff for this attempt).
    Retry { after: Duration, error: StoreError },
}

/// The `lakeworker.*` attributes of a dead letter. `Full` has all six; `Trimmed` and
/// `Pointer` the four that say what and why, with the error cut shorter; `Pointer` adds
/// `lakeworker.body_uri`.
pub fn attributes(
    step: Step,
    message: &Received,
    reason: &Reason<'_>,
    source_queue: &str,
    failed_at: DateTime<Utc>,
    body_uri: Option<&str>,
) -> Vec<MessageAttribute> {
    let text = |name, value: String| MessageAttribute {
        name,
        data_type: "String",
        value,
    };
    let error_bytes = match step {
        Step::Full => MAX_ERROR_ATTRIBUTE,
        Step::Trimmed | Step::Pointer => TRIMMED_ERROR_ATTRIBUTE,
    };
    let mut attributes = vec![
        text("lakeworker.error_class", reason.class.as_str().to_owned()),
        text("lakeworker.error", truncate(reason.error, error_bytes)),
        MessageAttribute {
            name: "lakeworker.attempts",
            data_type: "Number",
            value: reason.attempts.to_string(),
        },
        text("lakeworker.message_id", message.message_id.clone()),
    ];
    match (step, body_uri) {
        (Step::Full, _) => {
            attributes.push(text("lakeworker.source_queue", source_queue.to_owned()));
            let at = failed_at.to_rfc3339_opts(SecondsFormat::Millis, true);
            attributes.push(text("lakeworker.failed_at", at));
        }
        (Step::Pointer, Some(uri)) => attributes.push(text("lakeworker.body_uri", uri.to_owned())),
        _ => {}
    }
    attributes
}

/// A message's size as SQS counts it: the body plus each attribute's name, type and value.
pub fn message_bytes(body: &str, attributes: &[MessageAttribute]) -> usize {
    body.len()
        + attributes
            .iter()
            .map(|a| a.name.len() + a.data_type.len() + a.value.len())
            .sum::<usize>()
}

/// The body sent in place of one kept in S3.
pub fn pointer_body(uri: &str, message: &Received) -> String {
    serde_json::json!({"lakeworker_dead_letter": {
        "body_uri": uri,
        "message_id": message.message_id,
        "body_bytes": message.body.len(),
    }})
    .to_string()
}

/// Sends `message` to the dead-letter queue, falling back as the module says; logs each
/// step that fails.
pub async fn send<Q: Queue, K: KeepBody>(
    queue: &Q,
    keeper: &K,
    message: &Received,
    reason: &Reason<'_>,
    context: Context<'_>,
) -> Ending {
    let now = Utc::now();
    for step in [Step::Full, Step::Trimmed] {
        let attributes = attributes(step, message, reason, context.source_queue, now, None);
        let bytes = message_bytes(&message.body, &attributes);
        if bytes > MAX_MESSAGE_BYTES {
            tracing::warn!(
                step = step.as_str(),
                bytes,
                "the dead letter would be over SQS's 1 MiB; trying a smaller one"
            );
            continue;
        }
        let letter = DeadLetter {
            body: &message.body,
            attributes,
        };
        match queue.dead_letter(&letter).await {
            Ok(()) => return Ending::Sent(step),
            Err(e) => {
                tracing::warn!(step = step.as_str(), bytes, error = %e, "the dead-letter queue refused the message; trying a smaller one");
            }
        }
    }
    let uri = match keeper.keep_body(&message.message_id, &message.body).await {
        Ok(uri) => uri,
        Err(error) => {
            let after = context.policy.backoff(reason.attempts);
            return Ending::Retry { after, error };
        }
    };
    let body = pointer_body(&uri, message);
    let letter = DeadLetter {
        body: &body,
        attributes: attributes(
            Step::Pointer,
            message,
            reason,
            context.source_queue,
            now,
            Some(&uri),
        ),
    };
    match queue.dead_letter(&letter).await {
        Ok(()) => Ending::Sent(Step::Pointer),
        Err(error) => after_the_pointer_failed(uri, error, reason.attempts, context.policy),
    }
}

/// The body is kept in S3 but the pointer was refused: come back later if that can help
/// and attempts are left, else end here.
fn after_the_pointer_failed(
    uri: String,
    error: StoreError,
    attempt: u32,
    policy: &RetryPolicy,
) -> Ending {
    if error.is_transient() && attempt < policy.max_attempts {
        Ending::Retry {
            after: policy.backoff(attempt),
            error,
        }
    } else {
        Ending::KeptOnly { uri, error }
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::ports::StoreErrorKind;
    use crate::testing::queue::MemoryQueue;

    const POLICY: RetryPolicy = RetryPolicy {
        max_attempts: 4,
        base: Duration::from_secs(5),
        max: Duration::from_secs(300),
    };

    /// A dead-letter queue that takes messages up to `limit` bytes (body and attributes,
    /// as SQS counts), or refuses everything with `refuse`.
    fn dead_letter_queue(limit: usize, refuse: Option<StoreErrorKind>) -> MemoryQueue {
        let dlq = MemoryQueue::default().dead_letter_limit(limit);
        match refuse {
            Some(kind) => dlq.refusing_dead_letters(kind),
            None => dlq,
        }
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate("short", 10), "short");
        let cut = truncate(&"é".repeat(100), 11);
        assert_eq!(cut, "éééé…");
    }

    /// Keeps bodies in memory, or fails like an unreachable S3.
    #[derive(Default)]
    struct FakeKeeper {
        fail: bool,
        kept: Mutex<Vec<(String, String)>>,
    }

    impl KeepBody for FakeKeeper {
        async fn keep_body(&self, message_id: &str, body: &str) -> Result<String, StoreError> {
            if self.fail {
                return Err(StoreError::new(
                    "S3 PutObject",
                    StoreErrorKind::Transient,
                    "ServiceUnavailable",
                ));
            }
            let mut kept = self.kept.lock().unwrap();
            kept.push((message_id.to_owned(), body.to_owned()));
            Ok(format!("s3://q/quarantine/_dead_letters/{message_id}.body"))
        }
    }

    fn message(body: String, receive_count: u32) -> Received {
        Received {
            message_id: "m-1".into(),
            receipt_handle: "r".into(),
            body,
            receive_count,
            received_at: std::time::Instant::now(),
            sent_at_ms: None,
        }
    }

    fn reason(attempts: u32) -> Reason<'static> {
        Reason {
            class: ErrorClass::Permanent,
            error: "bad message body: not JSON",
            attempts,
        }
    }

    const QUEUE: &str = "https://sqs.eu-west-1.amazonaws.com/1/landing";

    async fn run(dlq: &MemoryQueue, keeper: &FakeKeeper, message: &Received) -> Ending {
        let context = Context {
            source_queue: QUEUE,
            policy: &POLICY,
        };
        send(
            dlq,
            keeper,
            message,
            &reason(message.receive_count),
            context,
        )
        .await
    }

    fn names(attributes: &[MessageAttribute]) -> Vec<&'static str> {
        attributes.iter().map(|a| a.name).collect()
    }

    #[tokio::test]
    async fn a_message_that_fits_goes_with_every_attribute() {
        let dlq = dead_letter_queue(MAX_MESSAGE_BYTES, None);
        let keeper = FakeKeeper::default();
        let m = message("{".into(), 1);
        assert!(matches!(
            run(&dlq, &keeper, &m).await,
            Ending::Sent(Step::Full)
        ));
        let accepted = dlq.accepted();
        assert_eq!(accepted[0].0, "{", "the body unchanged");
        assert_eq!(
            names(&accepted[0].1),
            [
                "lakeworker.error_class",
                "lakeworker.error",
                "lakeworker.attempts",
                "lakeworker.message_id",
                "lakeworker.source_queue",
                "lakeworker.failed_at"
            ]
        );
        assert!(keeper.kept.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_body_near_the_limit_goes_with_trimmed_attributes() {
        let long_error = "e".repeat(5000);
        let m = message("x".repeat(10_000), 1);
        let reason = Reason {
            error: &long_error,
            ..reason(1)
        };
        let full = message_bytes(
            &m.body,
            &attributes(Step::Full, &m, &reason, QUEUE, Utc::now(), None),
        );
        let trimmed = message_bytes(
            &m.body,
            &attributes(Step::Trimmed, &m, &reason, QUEUE, Utc::now(), None),
        );
        assert!(trimmed + 700 < full, "{trimmed} against {full}");
        let dlq = dead_letter_queue(trimmed, None);
        let keeper = FakeKeeper::default();
        let context = Context {
            source_queue: QUEUE,
            policy: &POLICY,
        };
        let ending = send(&dlq, &keeper, &m, &reason, context).await;
        assert!(matches!(ending, Ending::Sent(Step::Trimmed)), "{ending:?}");
        assert_eq!(dlq.tries(), 2);
        let (body, attributes) = dlq.accepted().remove(0);
        assert_eq!(body, m.body);
        let error = attributes
            .iter()
            .find(|a| a.name == "lakeworker.error")
            .unwrap();
        assert!(error.value.len() <= TRIMMED_ERROR_ATTRIBUTE);
    }

    #[tokio::test]
    async fn a_body_the_queue_cannot_hold_is_kept_in_s3_and_a_pointer_sent() {
        // A dead-letter queue set to SQS's smallest limit, and a body above it.
        let dlq = dead_letter_queue(1024, None);
        let keeper = FakeKeeper::default();
        let m = message("b".repeat(2000), 1);
        let ending = run(&dlq, &keeper, &m).await;
        assert!(matches!(ending, Ending::Sent(Step::Pointer)), "{ending:?}");
        assert_eq!(dlq.tries(), 3, "full, trimmed, pointer");
        assert_eq!(
            keeper.kept.lock().unwrap().as_slice(),
            [("m-1".to_owned(), m.body.clone())]
        );
        let (body, attributes) = dlq.accepted().remove(0);
        let uri = "s3://q/quarantine/_dead_letters/m-1.body";
        let pointer: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            pointer,
            serde_json::json!({"lakeworker_dead_letter": {"body_uri": uri, "message_id": "m-1", "body_bytes": 2000}})
        );
        let body_uri = attributes.iter().find(|a| a.name == "lakeworker.body_uri");
        assert_eq!(body_uri.map(|a| a.value.as_str()), Some(uri));
        assert!(message_bytes(&body, &attributes) <= 1024);
    }

    #[tokio::test]
    async fn a_body_over_a_mebibyte_with_attributes_skips_the_sends_that_cannot_fit() {
        let dlq = dead_letter_queue(MAX_MESSAGE_BYTES, None);
        let keeper = FakeKeeper::default();
        let m = message("z".repeat(MAX_MESSAGE_BYTES - 50), 1);
        let ending = run(&dlq, &keeper, &m).await;
        assert!(matches!(ending, Ending::Sent(Step::Pointer)), "{ending:?}");
        assert_eq!(dlq.tries(), 1, "only the pointer was sent");
    }

    #[tokio::test]
    async fn a_queue_that_refuses_everything_ends_with_the_body_kept_in_s3() {
        let dlq = dead_letter_queue(MAX_MESSAGE_BYTES, Some(StoreErrorKind::NotFound));
        let keeper = FakeKeeper::default();
        let m = message("{".into(), 1);
        match run(&dlq, &keeper, &m).await {
            Ending::KeptOnly { uri, .. } => {
                assert_eq!(uri, "s3://q/quarantine/_dead_letters/m-1.body")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(keeper.kept.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_transient_refusal_comes_back_while_attempts_are_left() {
        let dlq = dead_letter_queue(MAX_MESSAGE_BYTES, Some(StoreErrorKind::Transient));
        let keeper = FakeKeeper::default();
        match run(&dlq, &keeper, &message("{".into(), 2)).await {
            Ending::Retry { after, .. } => assert_eq!(after, POLICY.backoff(2)),
            other => panic!("{other:?}"),
        }
        // On the last attempt the body is safe in S3 and the loop ends.
        let last = message("{".into(), POLICY.max_attempts);
        assert!(matches!(
            run(&dlq, &keeper, &last).await,
            Ending::KeptOnly { .. }
        ));
    }

    #[tokio::test]
    async fn when_s3_fails_too_the_message_comes_back_after_a_growing_backoff() {
        let dlq = dead_letter_queue(MAX_MESSAGE_BYTES, Some(StoreErrorKind::NotFound));
        let keeper = FakeKeeper {
            fail: true,
            ..FakeKeeper::default()
        };
        let mut waits = Vec::new();
        for attempt in [1, 3, 9] {
            match run(&dlq, &keeper, &message("{".into(), attempt)).await {
                Ending::Retry { after, .. } => waits.push(after.as_secs()),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(waits, [5, 20, 300]);
    }
}
