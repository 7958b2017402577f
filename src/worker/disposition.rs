//! What a job's result means for its SQS message. Pure: the pool carries it out.
//!
//! | result | disposition |
//! |---|---|
//! | done, or nothing to do (test event, deletion, already-done duplicate) | delete |
//! | permanent error (bad body, no dataset, bucket not allowed, bad rows) | dead-letter at once |
//! | transient error, attempts left | retry: visibility = base × 2^(attempt−1), capped |
//! | transient error on attempt `max_attempts` | dead-letter (a missing object as permanent) |
//! | object busy under another live lease | retry when that lease ends |
//! | stopped by shutdown | release: visibility 0, another worker takes it now |
//! | stopped because the message or object was lost | leave it alone |

use std::time::Duration;

use chrono::Utc;

use crate::pipeline::error::{ErrorClass, JobError};
use crate::pipeline::job::StopReason;
use crate::pipeline::Outcome;

/// SQS's longest visibility timeout (12 hours).
pub const MAX_VISIBILITY: Duration = Duration::from_secs(43_200);

/// How transient failures back off and when they give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    /// `base` × 2^(attempt − 1), at most `max`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(32);
        self.base
            .saturating_mul(2u32.saturating_pow(doublings))
            .min(self.max)
            .min(MAX_VISIBILITY)
    }
}

/// The fate of a handled message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Done or nothing to do: delete it.
    Delete,
    /// Make it visible again after this long.
    Retry(Duration),
    /// Send it to the dead-letter queue with the reason, then delete it.
    DeadLetter { class: ErrorClass, reason: String },
    /// Make it visible at once (shutdown).
    Release,
    /// Not ours any more: no call at all.
    Abandon,
}

/// Decides from the result, the delivery attempt (`ApproximateReceiveCount`), and why the
/// job stopped early, if it did.
pub fn decide(
    result: &Result<Outcome, JobError>,
    attempt: u32,
    policy: &RetryPolicy,
    stopped: Option<StopReason>,
) -> Disposition {
    let error = match result {
        Ok(_) => return Disposition::Delete,
        Err(error) => error,
    };
    match (error, stopped) {
        (_, Some(StopReason::Shutdown)) => Disposition::Release,
        (_, Some(StopReason::Lost)) => Disposition::Abandon,
        (JobError::Busy { until, .. }, None) => {
            // Back off until the other owner's lease ends; it renews while it works.
            let wait = (*until - Utc::now()).to_std().unwrap_or_default();
            Disposition::Retry(wait.clamp(policy.base, MAX_VISIBILITY))
        }
        (error, None) if error.class() == ErrorClass::Permanent => Disposition::DeadLetter {
            class: ErrorClass::Permanent,
            reason: error.to_string(),
        },
        (error, None) if attempt >= policy.max_attempts => Disposition::DeadLetter {
            class: error.final_class(),
            reason: format!("gave up after {attempt} attempts: {error}"),
        },
        (_, None) => Disposition::Retry(policy.backoff(attempt)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{StoreError, StoreErrorKind};

    const POLICY: RetryPolicy = RetryPolicy {
        max_attempts: 4,
        base: Duration::from_secs(5),
        max: Duration::from_secs(30),
    };

    fn err(e: JobError) -> Result<Outcome, JobError> {
        Err(e)
    }

    fn throttled() -> JobError {
        JobError::Aws(StoreError::new(
            "S3 GetObject",
            StoreErrorKind::Transient,
            "SlowDown",
        ))
    }

    #[test]
    fn success_and_discards_delete() {
        let ok = Ok(Outcome::Discarded("s3:TestEvent".into()));
        assert_eq!(decide(&ok, 1, &POLICY, None), Disposition::Delete);
    }

    #[test]
    fn transient_errors_back_off_exponentially_then_dead_letter() {
        let delays: Vec<Disposition> = (1..=3)
            .map(|a| decide(&err(throttled()), a, &POLICY, None))
            .collect();
        assert_eq!(
            delays,
            [5, 10, 20].map(|s| Disposition::Retry(Duration::from_secs(s)))
        );
        assert_eq!(POLICY.backoff(9), Duration::from_secs(30), "capped");
        assert_eq!(POLICY.backoff(1000), Duration::from_secs(30), "no overflow");
        match decide(&err(throttled()), 4, &POLICY, None) {
            Disposition::DeadLetter { class, reason } => {
                assert_eq!(class, ErrorClass::Transient);
                assert!(
                    reason.starts_with("gave up after 4 attempts: S3 GetObject failed"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn permanent_errors_dead_letter_at_once() {
        let d = decide(&err(JobError::UnknownDataset("x".into())), 1, &POLICY, None);
        assert_eq!(
            d,
            Disposition::DeadLetter {
                class: ErrorClass::Permanent,
                reason: "inline records name dataset \"x\", which is not configured".into()
            }
        );
    }

    #[test]
    fn a_missing_object_is_retried_then_permanent() {
        let missing = || {
            err(JobError::ObjectMissing {
                uri: "s3://b/k".into(),
            })
        };
        assert_eq!(
            decide(&missing(), 1, &POLICY, None),
            Disposition::Retry(Duration::from_secs(5))
        );
        match decide(&missing(), 4, &POLICY, None) {
            Disposition::DeadLetter { class, .. } => assert_eq!(class, ErrorClass::Permanent),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn busy_objects_wait_for_the_lease_and_never_dead_letter() {
        let busy = |secs| {
            err(JobError::Busy {
                uri: "s3://b/k".into(),
                owner: "w".into(),
                until: Utc::now() + chrono::Duration::seconds(secs),
            })
        };
        match decide(&busy(120), 99, &POLICY, None) {
            Disposition::Retry(wait) => {
                assert!(wait > Duration::from_secs(110) && wait <= Duration::from_secs(120))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decide(&busy(-5), 1, &POLICY, None),
            Disposition::Retry(POLICY.base)
        );
    }

    #[test]
    fn stopped_jobs_release_or_abandon() {
        assert_eq!(
            decide(
                &err(JobError::Stopped),
                1,
                &POLICY,
                Some(StopReason::Shutdown)
            ),
            Disposition::Release
        );
        assert_eq!(
            decide(&err(JobError::Stopped), 1, &POLICY, Some(StopReason::Lost)),
            Disposition::Abandon
        );
        // Whatever the error, a job stopped by shutdown is released, not dead-lettered.
        assert_eq!(
            decide(
                &err(JobError::UnknownDataset("x".into())),
                9,
                &POLICY,
                Some(StopReason::Shutdown)
            ),
            Disposition::Release
        );
    }
}
