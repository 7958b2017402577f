//! What a job's result means for its SQS message.
//!
//! A message is deleted only when everything it asked for is durable, or when there was
//! nothing to do. Any failure leaves it on the queue: it becomes visible again when its
//! visibility timeout runs out and is retried, and the queue's redrive policy moves it to
//! the dead-letter queue after `max_attempts` + 1 receives.

use crate::error::JobError;
use crate::pipeline::Outcome;

/// The fate of a handled message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Done or nothing to do: delete it.
    Delete,
    /// Failed: leave it for a later delivery.
    Leave,
}

pub fn decide(result: &Result<Outcome, JobError>) -> Disposition {
    match result {
        Ok(_) => Disposition::Delete,
        Err(_) => Disposition::Leave,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_success_deletes() {
        assert_eq!(
            decide(&Ok(Outcome::Discarded("test".into()))),
            Disposition::Delete
        );
        assert_eq!(
            decide(&Err(JobError::UnknownDataset("x".into()))),
            Disposition::Leave
        );
        assert_eq!(
            decide(&Err(JobError::Internal("x".into()))),
            Disposition::Leave
        );
    }
}
