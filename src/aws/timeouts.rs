//! Deadlines for every AWS call, so a connection that is accepted but never answered (a
//! half-open TCP connection, a hung load balancer, a black-holed route) fails the call
//! instead of hanging it. A timed-out attempt is a transient error: the SDK's retry
//! strategy tries again on another connection (the timed-out one is dropped, never reused),
//! and what still fails after the SDK's attempts reaches the worker as a transient
//! [`super::StoreError`].
//!
//! Sized per call (the values are [`AwsTimeouts`], from the `[aws]` keys):
//! - every call: `connect` to open a connection; small calls (SQS deletes, visibility
//!   changes and sends, DynamoDB, S3 reads and small writes, Athena) get `call` per attempt
//!   and `read` (at most `call`) for the first byte of the answer;
//! - a long poll: `wait_seconds` + `call`, since SQS answers only when the poll ends;
//! - a transfer (a lake part, an upload part, a copy, a DynamoDB batch): `call` plus its
//!   bytes at `min_transfer_rate`;
//! - a streamed download fails once no byte arrived for `read` (the SDK's stalled-stream
//!   protection, with `read` as its grace period).
//!
//! [`TimeoutLog`] logs every timed-out attempt with the call's name.

use std::time::Duration;

use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

use crate::config::AwsTimeouts;

/// The clients' defaults: small calls.
pub fn small_calls(t: &AwsTimeouts) -> TimeoutConfig {
    config(t, t.read.min(t.call), t.call)
}

/// A ReceiveMessage long poll of `wait`: the answer comes only when the poll ends.
pub fn long_poll(t: &AwsTimeouts, wait: Duration) -> TimeoutConfig {
    let attempt = t.long_poll_time(wait);
    config(t, attempt, attempt)
}

/// A call that sends or copies `bytes`: its first answer byte may come only at the end.
pub fn transfer(t: &AwsTimeouts, bytes: u64) -> TimeoutConfig {
    let attempt = t.transfer_time(bytes);
    config(t, attempt, attempt)
}

/// A streamed download fails once no byte arrived for `read`.
pub fn stalled_streams(t: &AwsTimeouts) -> StalledStreamProtectionConfig {
    StalledStreamProtectionConfig::enabled()
        .grace_period(t.read)
        .build()
}

fn config(t: &AwsTimeouts, read: Duration, attempt: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(t.connect)
        .read_timeout(read)
        .operation_attempt_timeout(attempt)
        .build()
}

/// Logs each attempt that timed out (connecting, waiting for the answer, or the whole
/// attempt) with the service and operation, at warn: the one trace a black-holed endpoint
/// leaves before the call's final error.
#[derive(Debug, Default)]
pub struct TimeoutLog;

impl Intercept for TimeoutLog {
    fn name(&self) -> &'static str {
        "TimeoutLog"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(Err(error)) = context.inner().output_or_error() else {
            return Ok(());
        };
        let timed_out = error.is_timeout_error()
            || error
                .as_connector_error()
                .is_some_and(|connector| connector.is_timeout());
        if timed_out {
            let (service, operation) = cfg
                .load::<Metadata>()
                .map_or(("AWS", "call"), |m| (m.service(), m.name()));
            let attempt = cfg.load::<RequestAttempts>().map_or(1, |a| a.attempts());
            tracing::warn!(
                call = %format!("{service} {operation}"),
                attempt,
                error = %error,
                "AWS call timed out; the SDK retries on a new connection while attempts remain"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_are_sized_per_call() {
        let t = AwsTimeouts::default();
        let small = small_calls(&t);
        assert_eq!(small.connect_timeout(), Some(Duration::from_secs(3)));
        assert_eq!(small.read_timeout(), Some(Duration::from_secs(5)));
        assert_eq!(
            small.operation_attempt_timeout(),
            Some(Duration::from_secs(5))
        );

        let poll = long_poll(&t, Duration::from_secs(20));
        assert_eq!(poll.read_timeout(), Some(Duration::from_secs(25)));
        assert_eq!(
            poll.operation_attempt_timeout(),
            Some(Duration::from_secs(25))
        );

        // A 16 MiB part at 1 MiB/s: 5 s + 16 s, for the whole attempt and its answer.
        let part = transfer(&t, 16 << 20);
        assert_eq!(
            part.operation_attempt_timeout(),
            Some(Duration::from_secs(21))
        );
        assert_eq!(part.read_timeout(), Some(Duration::from_secs(21)));
        assert_eq!(stalled_streams(&t).grace_period(), Duration::from_secs(10));
    }
}
