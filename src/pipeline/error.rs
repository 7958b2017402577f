//! The one error type of message handling, and its class: what a retry can change.

use chrono::{DateTime, Utc};

use crate::convert::ConvertError;
use crate::domain::envelope::EnvelopeError;
use crate::ports::{StoreError, StoreErrorKind};

/// Whether a failed message can succeed later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Throttling, outages, timeouts, a missing object, denied access or a missing lake
    /// bucket or table: try again later.
    Transient,
    /// The message or its file is wrong and will be wrong on every delivery.
    Permanent,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
        }
    }
}

/// Why a message could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("bad message body: {0}")]
    Envelope(#[from] EnvelopeError),
    #[error(
        "object s3://{bucket}/{key}: bucket {bucket:?} is not the landing bucket {expected:?}"
    )]
    BucketNotAllowed {
        bucket: String,
        key: String,
        expected: String,
    },
    #[error("object s3://{bucket}/{key}: no dataset matches the key")]
    NoDataset { bucket: String, key: String },
    #[error("inline records name dataset {0:?}, which is not configured")]
    UnknownDataset(String),
    #[error("inline records for dataset {0:?}: the dataset has no records_table")]
    NoRecordsTable(String),
    #[error(
        "inline records for dataset {0:?}: the dataset does not accept inline records (inline = false)"
    )]
    InlineRefused(String),
    #[error("{what}: {reason}")]
    Rejected { what: String, reason: String },
    #[error("{what}: {source}")]
    Convert {
        what: String,
        #[source]
        source: ConvertError,
    },
    #[error("object {uri} does not exist (deleted since the event?)")]
    ObjectMissing { uri: String },
    #[error("object {uri} is being processed by {owner} (lease until {until})")]
    Busy {
        uri: String,
        owner: String,
        until: DateTime<Utc>,
    },
    #[error("stopped before finishing")]
    Stopped,
    #[error(
        "the ledger claim on {uri} is no longer this job's (its lease ran out or another worker \
         took it over); nothing more was recorded"
    )]
    LeaseLost { uri: String },
    #[error(transparent)]
    Aws(StoreError),
    #[error("worker: {0}")]
    Internal(String),
}

impl From<StoreError> for JobError {
    fn from(error: StoreError) -> Self {
        match error.kind {
            StoreErrorKind::Cancelled => JobError::Stopped,
            _ => JobError::Aws(error),
        }
    }
}

impl JobError {
    /// What a retry can change. A busy object and a stopped job are transient: the
    /// message comes back.
    pub fn class(&self) -> ErrorClass {
        match self {
            JobError::Envelope(_)
            | JobError::BucketNotAllowed { .. }
            | JobError::NoDataset { .. }
            | JobError::UnknownDataset(_)
            | JobError::NoRecordsTable(_)
            | JobError::InlineRefused(_)
            | JobError::Rejected { .. } => ErrorClass::Permanent,
            JobError::Convert { source, .. } if !source.is_transient() => ErrorClass::Permanent,
            // Only a request AWS refuses as malformed (an item over DynamoDB's size limit)
            // fails again every time; a missing bucket or table is the environment's
            // fault, retried until the attempts run out.
            JobError::Aws(e) if e.kind == StoreErrorKind::Rejected => ErrorClass::Permanent,
            JobError::Convert { .. }
            | JobError::ObjectMissing { .. }
            | JobError::Busy { .. }
            | JobError::LeaseLost { .. }
            | JobError::Stopped
            | JobError::Aws(_)
            | JobError::Internal(_) => ErrorClass::Transient,
        }
    }

    /// The class once the attempts are used up: an object still missing after every
    /// attempt is not coming (permanent); anything else transient stays transient.
    pub fn final_class(&self) -> ErrorClass {
        match self {
            JobError::ObjectMissing { .. } => ErrorClass::Permanent,
            other => other.class(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aws(kind: StoreErrorKind) -> JobError {
        JobError::Aws(StoreError::new("S3 PutObject", kind, "x"))
    }

    #[test]
    fn the_environment_is_retried_and_a_malformed_request_is_not() {
        assert_eq!(
            aws(StoreErrorKind::Transient).class(),
            ErrorClass::Transient
        );
        // The lake bucket or a table is missing: fixed by the operator, then it works.
        assert_eq!(aws(StoreErrorKind::NotFound).class(), ErrorClass::Transient);
        assert_eq!(aws(StoreErrorKind::Rejected).class(), ErrorClass::Permanent);
        let missing = JobError::ObjectMissing {
            uri: "s3://b/k".into(),
        };
        assert_eq!(missing.class(), ErrorClass::Transient);
        assert_eq!(missing.final_class(), ErrorClass::Permanent);
        assert_eq!(
            JobError::NoDataset {
                bucket: "b".into(),
                key: "k".into()
            }
            .class(),
            ErrorClass::Permanent
        );
    }
}
