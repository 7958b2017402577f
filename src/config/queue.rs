//! `[queue]`: the SQS queue and its dead-letter queue, how many pollers and messages in
//! flight, long polls, visibility, retries, and the SNS topics notifications may come from.

use std::fmt;
use std::num::NonZeroUsize;
use std::time::Duration;

use serde::Deserialize;

use super::checks::{is_http_url, nonzero};
use super::Problems;
use crate::domain::envelope::TopicPolicy;

#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub url: String,
    pub dead_letter_url: String,
    pub pollers: NonZeroUsize,
    pub max_in_flight: NonZeroUsize,
    pub wait: Duration,
    pub visibility_timeout: Duration,
    pub max_attempts: u32,
    /// Backoff of a transient failure: `retry_base` × 2^(attempt − 1), at most `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// `queue.allowed_topic_arns`: the SNS topics a notification may come from.
    pub sns_topics: TopicPolicy,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQueue {
    url: String,
    dead_letter_url: String,
    #[serde(default = "default_pollers")]
    pollers: u32,
    #[serde(default = "default_max_in_flight")]
    max_in_flight: u32,
    #[serde(default = "default_wait_seconds")]
    wait_seconds: u32,
    #[serde(default = "default_visibility_timeout_seconds")]
    visibility_timeout_seconds: u32,
    #[serde(default = "default_max_attempts")]
    max_attempts: u32,
    #[serde(default = "default_retry_base_seconds")]
    retry_base_seconds: u32,
    #[serde(default = "default_retry_max_seconds")]
    retry_max_seconds: u32,
    allowed_topic_arns: Option<RawTopicArns>,
}

fn default_pollers() -> u32 {
    2
}

fn default_max_in_flight() -> u32 {
    8
}

fn default_wait_seconds() -> u32 {
    20
}

fn default_visibility_timeout_seconds() -> u32 {
    60
}

fn default_max_attempts() -> u32 {
    5
}

fn default_retry_base_seconds() -> u32 {
    5
}

fn default_retry_max_seconds() -> u32 {
    300
}

/// `queue.allowed_topic_arns` as written: a TOML list, or (as environment overrides
/// arrive) one string of comma-separated ARNs. Entries are trimmed; empty ones are
/// dropped, each keeping its index for problems.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RawTopicArns(Vec<(usize, String)>);

impl RawTopicArns {
    fn new<'a>(entries: impl IntoIterator<Item = &'a str>) -> RawTopicArns {
        RawTopicArns(
            entries
                .into_iter()
                .map(str::trim)
                .enumerate()
                .filter(|(_, arn)| !arn.is_empty())
                .map(|(i, arn)| (i, arn.to_owned()))
                .collect(),
        )
    }
}

impl<'de> Deserialize<'de> for RawTopicArns {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TopicsVisitor;

        impl<'de> serde::de::Visitor<'de> for TopicsVisitor {
            type Value = RawTopicArns;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of SNS topic ARNs, or one string of them separated by commas")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<RawTopicArns, E> {
                Ok(RawTopicArns::new(text.split(',')))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RawTopicArns, A::Error> {
                let mut entries: Vec<String> = Vec::new();
                while let Some(arn) = seq.next_element::<String>()? {
                    entries.push(arn);
                }
                Ok(RawTopicArns::new(entries.iter().map(String::as_str)))
            }
        }

        deserializer.deserialize_any(TopicsVisitor)
    }
}

/// Whether `arn` is an SNS topic ARN, `arn:<partition>:sns:<region>:<account>:<name>`
/// (a standard or `.fifo` topic name, a 12-digit account).
fn is_topic_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    let [prefix, partition, service, region, account, name] = parts[..] else {
        return false;
    };
    let word = |text: &str| {
        !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    let base = name.strip_suffix(".fifo").unwrap_or(name);
    prefix == "arn"
        && word(partition)
        && service == "sns"
        && word(region)
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && (1..=256).contains(&name.len())
        && !base.is_empty()
        && base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl RawQueue {
    pub(super) fn validate(self, p: &mut Problems) -> QueueSettings {
        p.check(
            is_http_url(&self.url),
            "queue.url",
            format!("{:?} is not an http(s) queue URL", self.url),
        );
        p.check(
            is_http_url(&self.dead_letter_url),
            "queue.dead_letter_url",
            format!("{:?} is not an http(s) queue URL", self.dead_letter_url),
        );
        p.check(
            self.url != self.dead_letter_url,
            "queue.dead_letter_url",
            "must differ from queue.url",
        );
        p.check(
            (1..=256).contains(&self.pollers),
            "queue.pollers",
            "must be between 1 and 256",
        );
        p.check(
            (1..=10_000).contains(&self.max_in_flight),
            "queue.max_in_flight",
            "must be between 1 and 10000",
        );
        p.check(
            self.wait_seconds <= 20,
            "queue.wait_seconds",
            "must be between 0 and 20 (SQS long-poll limit)",
        );
        p.check(
            (1..=43_200).contains(&self.visibility_timeout_seconds),
            "queue.visibility_timeout_seconds",
            "must be between 1 and 43200 (12 hours, the SQS limit)",
        );
        // The redrive policy uses max_attempts + 1, and SQS allows at most 1000 receives.
        p.check(
            (1..=999).contains(&self.max_attempts),
            "queue.max_attempts",
            "must be between 1 and 999",
        );
        p.check(
            (1..=43_200).contains(&self.retry_base_seconds),
            "queue.retry_base_seconds",
            "must be between 1 and 43200",
        );
        p.check(
            (self.retry_base_seconds..=43_200).contains(&self.retry_max_seconds),
            "queue.retry_max_seconds",
            "must be between queue.retry_base_seconds and 43200 (the SQS visibility limit)",
        );
        let sns_topics = match &self.allowed_topic_arns {
            None => TopicPolicy::AnyTopic,
            Some(RawTopicArns(entries)) => {
                for (i, arn) in entries {
                    p.check(
                        is_topic_arn(arn),
                        format!("queue.allowed_topic_arns[{i}]"),
                        format!("{arn:?} is not an SNS topic ARN (arn:<partition>:sns:<region>:<account>:<name>)"),
                    );
                }
                TopicPolicy::Only(entries.iter().map(|(_, arn)| arn.clone()).collect())
            }
        };
        QueueSettings {
            pollers: nonzero(self.pollers),
            max_in_flight: nonzero(self.max_in_flight),
            wait: Duration::from_secs(self.wait_seconds.into()),
            visibility_timeout: Duration::from_secs(self.visibility_timeout_seconds.into()),
            max_attempts: self.max_attempts,
            retry_base: Duration::from_secs(self.retry_base_seconds.into()),
            retry_max: Duration::from_secs(self.retry_max_seconds.into()),
            url: self.url,
            dead_letter_url: self.dead_letter_url,
            sns_topics,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{load, problems, GOOD};
    use crate::domain::envelope::TopicPolicy;

    const TOPICS_ENV: &str = "LAKEWORKER__QUEUE__ALLOWED_TOPIC_ARNS";

    fn with_topics(value: &str) -> String {
        GOOD.replace(
            "[queue]\n",
            &format!("[queue]\nallowed_topic_arns = {value}\n"),
        )
    }

    #[test]
    fn allowed_topic_arns_take_a_list_or_a_comma_separated_string() {
        let s = load(GOOD, &[]).unwrap();
        assert_eq!(
            s.queue.sns_topics,
            TopicPolicy::AnyTopic,
            "absent: any topic"
        );
        assert!(!s.summary().contains("SNS"), "{}", s.summary());
        let a = "arn:aws:sns:us-east-1:123456789012:landing";
        let b = "arn:aws-cn:sns:cn-north-1:123456789012:Events_2.fifo";
        let both = TopicPolicy::Only(vec![a.into(), b.into()]);
        let listed = with_topics(&format!("[\"{a}\", \" {b} \", \"\"]"));
        let s = load(&listed, &[]).unwrap();
        assert_eq!(s.queue.sns_topics, both);
        assert!(
            s.summary()
                .contains(&format!("SNS notifications: only from {a}, {b}\n")),
            "{}",
            s.summary()
        );
        let env_text = format!(" {a} ,{b},");
        let s = load(GOOD, &[(TOPICS_ENV, &env_text)]).unwrap();
        assert_eq!(s.queue.sns_topics, both);
        let s = load(&with_topics("[]"), &[(TOPICS_ENV, a)]).unwrap();
        assert_eq!(
            s.queue.sns_topics,
            TopicPolicy::Only(vec![a.into()]),
            "the environment overrides the file"
        );
        // Present but empty: no SNS notification is accepted, and check-config says so.
        for (text, env) in [
            (with_topics("[]"), None),
            (GOOD.to_owned(), Some(" , ")),
            (GOOD.to_owned(), Some("")),
        ] {
            let env: Vec<(&str, &str)> = env.map(|v| (TOPICS_ENV, v)).into_iter().collect();
            let s = load(&text, &env).unwrap();
            assert_eq!(s.queue.sns_topics, TopicPolicy::Only(vec![]), "{env:?}");
            assert!(
                s.summary()
                    .contains("SNS notifications: refused from every topic"),
                "{}",
                s.summary()
            );
        }
    }

    #[test]
    fn allowed_topic_arns_must_be_sns_topic_arns() {
        let not_arn = |i: usize, arn: &str| {
            format!("queue.allowed_topic_arns[{i}]: {arn:?} is not an SNS topic ARN (arn:<partition>:sns:<region>:<account>:<name>)")
        };
        let bad = [
            "landing",
            "arn:aws:sqs:us-east-1:123456789012:landing",
            "arn:aws:sns:us-east-1:1234:landing",
            "arn:aws:sns:us-east-1:123456789012:*",
            "arn:aws:sns::123456789012:landing",
            "arn:aws:sns:us-east-1:123456789012:landing:sub-id",
            "arn:aws:sns:us-east-1:123456789012:.fifo",
        ];
        let list: Vec<String> = std::iter::once("arn:aws:sns:us-east-1:123456789012:ok")
            .chain(bad)
            .map(|arn| format!("{arn:?}"))
            .collect();
        let expected: Vec<String> = bad
            .iter()
            .enumerate()
            .map(|(i, arn)| not_arn(i + 1, arn))
            .collect();
        assert_eq!(
            problems(&with_topics(&format!("[{}]", list.join(", ")))),
            expected
        );
        // The environment's form: indexes count the entries as written, empty ones too.
        let err = load(
            GOOD,
            &[(
                TOPICS_ENV,
                "arn:aws:sns:us-east-1:123456789012:ok,,sns:topic",
            )],
        )
        .unwrap_err();
        assert_eq!(err.to_string(), not_arn(2, "sns:topic"));
        // Neither a list nor a string.
        let found = problems(&with_topics("5"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("queue.allowed_topic_arns: invalid type: integer `5`, expected a list of SNS topic ARNs"),
            "{found:?}"
        );
        // The config crate reads a number in the list as its text.
        assert_eq!(
            problems(&with_topics(
                "[\"arn:aws:sns:us-east-1:123456789012:ok\", 5]"
            )),
            [not_arn(1, "5")]
        );
    }
}
