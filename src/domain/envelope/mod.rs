//! Message bodies: what an SQS message asks for, parsed without any I/O.
//!
//! Accepted shapes (see `../shared/FACTS.md` and the README):
//! - an S3 event notification (`{"Records": [...]}`), possibly wrapped in an SNS envelope;
//! - an `s3:TestEvent` (discarded);
//! - an EventBridge `Object Created` event from `aws.s3`;
//! - inline user records, `{"dataset": "users", "records": [{...}, ...]}`.
//!
//! [`parse`] turns a body into an [`Envelope`]: objects to convert, records to upsert, or a
//! reason to discard the message. Anything else is an [`EnvelopeError`] naming what was wrong.
//! [`parse_from`] does the same but accepts an SNS notification only from the topics of a
//! [`TopicPolicy`] (`queue.allowed_topic_arns`).
//!
//! The other direction, an S3 notification body built from its fields, is [`S3Event`]
//! (in `event.rs`), which `lakeworker backfill` and the tests use; the parser's tests are
//! in `tests.rs`.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

mod event;
pub use event::{form_encode, notification, S3Event};

/// What a message asks the worker to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Envelope {
    /// New objects to convert; never empty.
    Objects(Vec<ObjectRef>),
    /// Records to validate and upsert into a dataset's table.
    Records(InlineRecords),
    /// Nothing to do (a test event, deletions): acknowledge and move on.
    Discard(String),
}

/// One created S3 object version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectRef {
    pub bucket: String,
    /// The decoded key, as S3 stores it.
    pub key: String,
    pub size: Option<u64>,
    /// The ETag without quotes.
    pub etag: Option<String>,
    pub version_id: Option<String>,
    /// When S3 saw the object; the arrival time for `ingest_date` partitions.
    pub event_time: Option<DateTime<Utc>>,
    /// A request to process this version again even if it is done (the id of a
    /// `lakeworker backfill --reprocess` run, from the record's `lakeworker.reprocess`).
    pub reprocess: Option<String>,
}

impl ObjectRef {
    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    /// Which version of the key this is: `v:{version id}`, else `e:{etag}`, else empty
    /// (an event without either; every such event names the same "version").
    pub fn version_tag(&self) -> String {
        match (&self.version_id, &self.etag) {
            (Some(version), _) => format!("v:{version}"),
            (None, Some(etag)) => format!("e:{etag}"),
            (None, None) => String::new(),
        }
    }
}

/// Inline user records for one dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct InlineRecords {
    pub dataset: String,
    /// The records as sent; each is validated against the dataset's columns later.
    pub records: Vec<Value>,
}

/// Why a body is not a message the worker understands. Never retried: the body will not
/// change on redelivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("body is {0} bytes, more than SQS's maximum of {MAX_BODY_BYTES}")]
    TooLarge(usize),
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("body is a JSON {0}, expected an object")]
    NotAnObject(&'static str),
    #[error(
        "body is not a known message shape (keys: {0}); expected an S3 notification (Records), \
         an SNS notification, an EventBridge S3 event, or inline records (dataset, records)"
    )]
    UnknownShape(String),
    #[error("{shape}: {path}: {reason}")]
    Invalid {
        shape: &'static str,
        path: String,
        reason: String,
    },
    #[error(
        "S3 event record {index}: eventVersion {version:?} is not supported (major version 2 is)"
    )]
    UnsupportedVersion { index: usize, version: String },
    #[error("S3 event record {index}: key {key:?} does not decode to UTF-8")]
    BadKeyEncoding { index: usize, key: String },
    /// An SNS notification whose `TopicArn` (shortened to [`MAX_TOPIC_CHARS`]; `None`:
    /// absent or not a string) is not one of [`TopicPolicy::Only`].
    #[error("{}", topic_refusal(.topic.as_deref()))]
    TopicNotAllowed { topic: Option<String> },
}

fn topic_refusal(topic: Option<&str>) -> String {
    match topic {
        Some(topic) => format!(
            "SNS notification from topic {topic:?}, which is not in queue.allowed_topic_arns"
        ),
        None => "SNS notification without a TopicArn; queue.allowed_topic_arns is set, so only \
                 notifications from its topics are accepted"
            .to_owned(),
    }
}

/// The most characters of a refused `TopicArn` kept in the error (a real ARN is shorter),
/// so a hostile body cannot make a huge log line.
pub const MAX_TOPIC_CHARS: usize = 300;

/// Which SNS topics a notification may come from (`queue.allowed_topic_arns`). Messages
/// without an SNS envelope (raw message delivery, S3 or EventBridge straight to the queue)
/// carry no topic and are not checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TopicPolicy {
    /// The key is absent: any topic.
    #[default]
    AnyTopic,
    /// Only these topic ARNs, compared exactly; an empty list refuses every SNS
    /// notification.
    Only(Vec<String>),
}

impl TopicPolicy {
    fn check(&self, topic: Option<&Value>) -> Result<(), EnvelopeError> {
        let TopicPolicy::Only(allowed) = self else {
            return Ok(());
        };
        match topic {
            Some(Value::String(topic)) if allowed.iter().any(|a| a == topic) => Ok(()),
            Some(Value::String(topic)) => Err(EnvelopeError::TopicNotAllowed {
                topic: Some(shorten(topic, MAX_TOPIC_CHARS)),
            }),
            _ => Err(EnvelopeError::TopicNotAllowed { topic: None }),
        }
    }
}

/// The first `max` characters of `text`, with `…` if any were cut.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// SQS's largest message body (1 MiB); anything larger did not come from SQS as sent.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Parses a message body, accepting SNS notifications from any topic. Nesting deeper than
/// 128 levels is refused by the JSON parser.
pub fn parse(body: &str) -> Result<Envelope, EnvelopeError> {
    parse_from(body, &TopicPolicy::AnyTopic)
}

/// [`parse`], but an SNS notification is refused, before its `Message` is read, unless
/// `topics` allows its `TopicArn`.
pub fn parse_from(body: &str, topics: &TopicPolicy) -> Result<Envelope, EnvelopeError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(EnvelopeError::TooLarge(body.len()));
    }
    let value: Value =
        serde_json::from_str(body).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
    let object = as_object(value)?;
    if object.get("Type").and_then(Value::as_str) == Some("Notification")
        && object.contains_key("Message")
    {
        topics.check(object.get("TopicArn"))?;
        let sns: SnsEnvelope = typed("SNS notification", Value::Object(object))?;
        let inner: Value =
            serde_json::from_str(&sns.message).map_err(|e| EnvelopeError::Invalid {
                shape: "SNS notification",
                path: "Message".into(),
                reason: format!("is not JSON: {e}"),
            })?;
        return parse_unwrapped(as_object(inner)?);
    }
    parse_unwrapped(object)
}

/// Every shape but SNS, which may wrap any of these (but not itself).
fn parse_unwrapped(object: Map<String, Value>) -> Result<Envelope, EnvelopeError> {
    if object.contains_key("Records") {
        return parse_s3_notification(typed("S3 notification", Value::Object(object))?);
    }
    if object.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Envelope::Discard("s3:TestEvent".into()));
    }
    if object.contains_key("detail-type") && object.contains_key("detail") {
        return parse_eventbridge(typed("EventBridge event", Value::Object(object))?);
    }
    if object.contains_key("dataset") && object.contains_key("records") {
        let records: RecordsBody = typed("inline records", Value::Object(object))?;
        return Ok(Envelope::Records(InlineRecords {
            dataset: records.dataset,
            records: records.records,
        }));
    }
    let mut keys: Vec<&str> = object.keys().map(String::as_str).take(10).collect();
    keys.sort_unstable();
    Err(EnvelopeError::UnknownShape(if keys.is_empty() {
        "none".into()
    } else {
        keys.join(", ")
    }))
}

fn as_object(value: Value) -> Result<Map<String, Value>, EnvelopeError> {
    match value {
        Value::Object(map) => Ok(map),
        Value::Array(_) => Err(EnvelopeError::NotAnObject("array")),
        Value::String(_) => Err(EnvelopeError::NotAnObject("string")),
        Value::Number(_) => Err(EnvelopeError::NotAnObject("number")),
        Value::Bool(_) => Err(EnvelopeError::NotAnObject("boolean")),
        Value::Null => Err(EnvelopeError::NotAnObject("null")),
    }
}

/// Deserializes a known shape, reporting the path of the first bad field.
fn typed<T: DeserializeOwned>(shape: &'static str, value: Value) -> Result<T, EnvelopeError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        EnvelopeError::Invalid {
            shape,
            path: if path == "." { "body".into() } else { path },
            reason: e.into_inner().to_string(),
        }
    })
}

#[derive(Deserialize)]
struct SnsEnvelope {
    #[serde(rename = "Message")]
    message: String,
}

#[derive(Deserialize)]
struct S3Notification {
    #[serde(rename = "Records")]
    records: Vec<S3Record>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3Record {
    event_version: String,
    event_source: String,
    event_name: String,
    event_time: Option<String>,
    s3: S3Entity,
    /// lakeworker's own addition to the events it sends (backfill).
    #[serde(default)]
    lakeworker: Option<Extension>,
}

/// What lakeworker adds to the S3 events it makes itself.
#[derive(Deserialize)]
struct Extension {
    /// A reprocess request id.
    reprocess: Option<String>,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: S3Bucket,
    object: S3Object,
}

#[derive(Deserialize)]
struct S3Bucket {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3Object {
    key: String,
    size: Option<u64>,
    e_tag: Option<String>,
    version_id: Option<String>,
}

fn parse_s3_notification(notification: S3Notification) -> Result<Envelope, EnvelopeError> {
    let mut objects = Vec::new();
    let mut ignored = Vec::new();
    for (index, record) in notification.records.into_iter().enumerate() {
        if record.event_version.split('.').next() != Some("2") {
            return Err(EnvelopeError::UnsupportedVersion {
                index,
                version: record.event_version,
            });
        }
        if record.event_source != "aws:s3" {
            return Err(EnvelopeError::Invalid {
                shape: "S3 notification",
                path: format!("Records[{index}].eventSource"),
                reason: format!("{:?} is not \"aws:s3\"", record.event_source),
            });
        }
        if !record.event_name.starts_with("ObjectCreated:") {
            ignored.push(record.event_name);
            continue;
        }
        let key = decode_form_key(&record.s3.object.key).ok_or_else(|| {
            EnvelopeError::BadKeyEncoding {
                index,
                key: record.s3.object.key.clone(),
            }
        })?;
        objects.push(ObjectRef {
            bucket: record.s3.bucket.name,
            key,
            size: record.s3.object.size,
            etag: record.s3.object.e_tag.map(|t| unquote(&t)),
            version_id: record
                .s3
                .object
                .version_id
                .filter(|v| !v.is_empty() && v != "null"),
            event_time: parse_time(record.event_time.as_deref()),
            reprocess: record
                .lakeworker
                .and_then(|extension| extension.reprocess)
                .filter(|request| !request.is_empty()),
        });
    }
    if objects.is_empty() {
        let reason = if ignored.is_empty() {
            "S3 notification without records".to_owned()
        } else {
            format!("no ObjectCreated records (saw {})", ignored.join(", "))
        };
        return Ok(Envelope::Discard(reason));
    }
    Ok(Envelope::Objects(objects))
}

#[derive(Deserialize)]
struct EventBridgeEvent {
    #[serde(rename = "detail-type")]
    detail_type: String,
    source: String,
    time: Option<String>,
    detail: EventBridgeDetail,
}

#[derive(Deserialize)]
struct EventBridgeDetail {
    bucket: S3Bucket,
    object: EventBridgeObject,
}

#[derive(Deserialize)]
struct EventBridgeObject {
    key: String,
    size: Option<u64>,
    etag: Option<String>,
    #[serde(rename = "version-id")]
    version_id: Option<String>,
}

fn parse_eventbridge(event: EventBridgeEvent) -> Result<Envelope, EnvelopeError> {
    if event.source != "aws.s3" {
        return Err(EnvelopeError::Invalid {
            shape: "EventBridge event",
            path: "source".into(),
            reason: format!("{:?} is not \"aws.s3\"", event.source),
        });
    }
    if event.detail_type != "Object Created" {
        return Ok(Envelope::Discard(format!(
            "EventBridge {:?} event",
            event.detail_type
        )));
    }
    let object = event.detail.object;
    Ok(Envelope::Objects(vec![ObjectRef {
        bucket: event.detail.bucket.name,
        key: object.key,
        size: object.size,
        etag: object.etag.map(|t| unquote(&t)),
        version_id: object.version_id.filter(|v| !v.is_empty() && v != "null"),
        event_time: parse_time(event.time.as_deref()),
        reprocess: None,
    }]))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordsBody {
    dataset: String,
    records: Vec<Value>,
}

/// Decodes an S3 event key: `+` is a space, then percent-decoding (`%2B` is `+`, `%2F` is
/// `/`). `None` when the bytes are not UTF-8.
pub fn decode_form_key(key: &str) -> Option<String> {
    let spaced = key.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|k| k.into_owned())
}

/// Event times only place `ingest_date` partitions; an unreadable one falls back to the
/// processing time rather than failing the message.
fn parse_time(time: Option<&str>) -> Option<DateTime<Utc>> {
    time.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_owned()
}

#[cfg(test)]
mod tests;
