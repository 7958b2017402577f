//! SDK errors → [`StoreError`]: which failures a retry can heal.

use crate::ports::{StoreError, StoreErrorKind};

/// Classifies an SDK error by its error code and HTTP status.
pub fn from_sdk<E>(operation: &'static str, err: aws_sdk_s3::error::SdkError<E>) -> StoreError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
    let kind = match &err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            classify(service.err().code(), status)
        }
        SdkError::ConstructionFailure(_) => StoreErrorKind::Rejected,
        _ => StoreErrorKind::Transient,
    };
    let message = match err.message() {
        Some(message) => message.to_owned(),
        None => aws_sdk_s3::error::DisplayErrorContext(&err).to_string(),
    };
    StoreError {
        operation,
        kind,
        code: err.code().map(str::to_owned),
        message,
    }
}

/// Error codes and statuses seen from S3, SQS and DynamoDB.
fn classify(code: Option<&str>, status: u16) -> StoreErrorKind {
    const NOT_FOUND: [&str; 7] = [
        "NoSuchKey",
        "NoSuchBucket",
        "NotFound",
        "ResourceNotFoundException",
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "NoSuchVersion",
    ];
    const TRANSIENT: [&str; 10] = [
        "Throttling",
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "SlowDown",
        "RequestTimeout",
        "InternalError",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
    ];
    // Credentials and permissions: the operator fixes these, not the message, and an
    // expiring token or a policy being deployed heals on its own; so they are retried.
    const ACCESS: [&str; 9] = [
        "AccessDenied",
        "AccessDeniedException",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "RequestExpired",
        "KMS.DisabledException",
    ];
    match code {
        Some(code) if NOT_FOUND.contains(&code) => StoreErrorKind::NotFound,
        Some(code) if TRANSIENT.contains(&code) || ACCESS.contains(&code) => {
            StoreErrorKind::Transient
        }
        Some("PreconditionFailed") => StoreErrorKind::PreconditionFailed,
        _ => match status {
            404 => StoreErrorKind::NotFound,
            412 => StoreErrorKind::PreconditionFailed,
            408 | 429 | 500..=599 => StoreErrorKind::Transient,
            _ => StoreErrorKind::Rejected,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(classify(Some("NoSuchKey"), 404), StoreErrorKind::NotFound);
        assert_eq!(classify(Some("SlowDown"), 503), StoreErrorKind::Transient);
        assert_eq!(
            classify(Some("ProvisionedThroughputExceededException"), 400),
            StoreErrorKind::Transient
        );
        assert_eq!(
            classify(Some("PreconditionFailed"), 412),
            StoreErrorKind::PreconditionFailed
        );
        assert_eq!(classify(None, 412), StoreErrorKind::PreconditionFailed);
        assert_eq!(
            classify(Some("AccessDenied"), 403),
            StoreErrorKind::Transient
        );
        assert_eq!(
            classify(Some("ExpiredToken"), 400),
            StoreErrorKind::Transient
        );
        assert_eq!(classify(None, 403), StoreErrorKind::Rejected);
        assert_eq!(
            classify(Some("ValidationException"), 400),
            StoreErrorKind::Rejected
        );
        assert_eq!(classify(None, 502), StoreErrorKind::Transient);
    }
}
