//! `[aws]`: the region, a local emulator's endpoint, and the deadlines of every AWS call.

use std::time::Duration;

use serde::Deserialize;

use super::checks::is_http_url;
use super::size::{size_in, RawSize};
use super::Problems;

#[derive(Debug, Clone)]
pub struct AwsSettings {
    pub region: String,
    /// Set only for a local emulator; also switches S3 to path-style addressing.
    pub endpoint_url: Option<String>,
    /// Deadlines of every AWS call (see [`crate::aws::timeouts`]).
    pub timeouts: AwsTimeouts,
}

/// The deadlines of AWS calls (`[aws]` `connect_timeout_seconds`, `read_timeout_seconds`,
/// `call_timeout_seconds`, `min_transfer_rate`); [`crate::aws::timeouts`] turns them into
/// SDK settings per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsTimeouts {
    /// Opening a connection (TCP and TLS).
    pub connect: Duration,
    /// The first byte of an answer, and the longest gap in a streamed download.
    pub read: Duration,
    /// One attempt of a small call.
    pub call: Duration,
    /// Bytes per second a transfer is granted at least, on top of `call`.
    pub min_transfer_rate: u64,
}

impl Default for AwsTimeouts {
    /// The `[aws]` defaults: connect 3 s, read 10 s, call 5 s, 1 MiB/s.
    fn default() -> Self {
        AwsTimeouts {
            connect: Duration::from_secs(3),
            read: Duration::from_secs(10),
            call: Duration::from_secs(5),
            min_transfer_rate: 1 << 20,
        }
    }
}

impl AwsTimeouts {
    /// One attempt of a ReceiveMessage long poll of `wait`: SQS answers when it ends.
    pub fn long_poll_time(&self, wait: Duration) -> Duration {
        wait + self.call
    }

    /// One attempt of a call that sends or copies `bytes`: `call` plus the bytes at the
    /// minimum transfer rate.
    pub fn transfer_time(&self, bytes: u64) -> Duration {
        let rate = self.min_transfer_rate.max(1);
        self.call + Duration::from_secs_f64(bytes as f64 / rate as f64)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAws {
    region: String,
    endpoint_url: Option<String>,
    #[serde(default = "default_connect_timeout_seconds")]
    connect_timeout_seconds: u32,
    #[serde(default = "default_read_timeout_seconds")]
    read_timeout_seconds: u32,
    #[serde(default = "default_call_timeout_seconds")]
    call_timeout_seconds: u32,
    #[serde(default = "default_min_transfer_rate")]
    min_transfer_rate: RawSize,
}

fn default_connect_timeout_seconds() -> u32 {
    AwsTimeouts::default().connect.as_secs() as u32
}

fn default_read_timeout_seconds() -> u32 {
    AwsTimeouts::default().read.as_secs() as u32
}

fn default_call_timeout_seconds() -> u32 {
    AwsTimeouts::default().call.as_secs() as u32
}

fn default_min_transfer_rate() -> RawSize {
    RawSize::text("1MiB")
}

impl RawAws {
    pub(super) fn validate(self, p: &mut Problems) -> AwsSettings {
        p.check(
            !self.region.trim().is_empty(),
            "aws.region",
            "must not be empty",
        );
        if let Some(url) = &self.endpoint_url {
            p.check(
                is_http_url(url),
                "aws.endpoint_url",
                format!("{url:?} is not an http(s) URL"),
            );
        }
        for (key, seconds) in [
            ("aws.connect_timeout_seconds", self.connect_timeout_seconds),
            ("aws.read_timeout_seconds", self.read_timeout_seconds),
            ("aws.call_timeout_seconds", self.call_timeout_seconds),
        ] {
            p.check(
                (1..=600).contains(&seconds),
                key,
                "must be between 1 and 600 seconds",
            );
        }
        let min_transfer_rate = size_in(
            p,
            "aws.min_transfer_rate",
            &self.min_transfer_rate,
            1 << 10..=1 << 30,
            "1KiB and 1GiB (bytes per second)",
        );
        let timeouts = AwsTimeouts {
            connect: Duration::from_secs(self.connect_timeout_seconds.into()),
            read: Duration::from_secs(self.read_timeout_seconds.into()),
            call: Duration::from_secs(self.call_timeout_seconds.into()),
            min_transfer_rate,
        };
        AwsSettings {
            region: self.region,
            endpoint_url: self.endpoint_url,
            timeouts,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::{load, problems, GOOD};
    use super::AwsTimeouts;

    #[test]
    fn aws_timeouts_have_defaults_overrides_and_limits() {
        let s = load(GOOD, &[]).unwrap();
        assert_eq!(s.aws.timeouts, AwsTimeouts::default());
        assert_eq!(
            (
                s.aws.timeouts.connect,
                s.aws.timeouts.read,
                s.aws.timeouts.call
            ),
            (
                Duration::from_secs(3),
                Duration::from_secs(10),
                Duration::from_secs(5)
            )
        );
        assert_eq!(s.aws.timeouts.min_transfer_rate, 1 << 20);
        let s = load(
            GOOD,
            &[
                ("LAKEWORKER__AWS__CALL_TIMEOUT_SECONDS", "2"),
                ("LAKEWORKER__AWS__MIN_TRANSFER_RATE", "512KiB"),
            ],
        )
        .unwrap();
        assert_eq!(s.aws.timeouts.call, Duration::from_secs(2));
        assert_eq!(s.aws.timeouts.min_transfer_rate, 512 << 10);
        // A 16 MiB part at 512 KiB/s gets 2 s + 32 s per attempt; a 20 s poll 22 s.
        assert_eq!(
            s.aws.timeouts.transfer_time(16 << 20),
            Duration::from_secs(34)
        );
        assert_eq!(
            s.aws.timeouts.long_poll_time(Duration::from_secs(20)),
            Duration::from_secs(22)
        );
        let text = GOOD.replace(
            "region = \"us-east-1\"",
            "region = \"us-east-1\"\nconnect_timeout_seconds = 0\ncall_timeout_seconds = 601\nmin_transfer_rate = \"fast\"",
        );
        assert_eq!(
            problems(&text),
            [
                "aws.connect_timeout_seconds: must be between 1 and 600 seconds",
                "aws.call_timeout_seconds: must be between 1 and 600 seconds",
                "aws.min_transfer_rate: \"fast\" is not a size such as 134217728 or \"128MiB\"",
            ]
        );
    }
}
