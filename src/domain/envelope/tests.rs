//! The parser's tests: each accepted shape, and what a bad body is told.

use super::*;
use serde_json::json;

fn s3_record(name: &str, key: &str) -> Value {
    json!({
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2024-05-06T07:08:09.000Z", "eventName": name,
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "x",
               "bucket": {"name": "landing", "arn": "arn:aws:s3:::landing"},
               "object": {"key": key, "size": 12, "eTag": "\"abc\"", "sequencer": "00"}}
    })
}

fn objects(body: &str) -> Vec<ObjectRef> {
    match parse(body).unwrap() {
        Envelope::Objects(objects) => objects,
        other => panic!("expected objects, got {other:?}"),
    }
}

#[test]
fn plain_s3_notification_with_several_records() {
    let body = json!({"Records": [
        s3_record("ObjectCreated:Put", "users/a.csv"),
        s3_record("ObjectRemoved:Delete", "users/old.csv"),
        s3_record("ObjectCreated:CompleteMultipartUpload", "users/b.csv"),
    ]});
    let found = objects(&body.to_string());
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].key, "users/a.csv");
    assert_eq!(found[0].bucket, "landing");
    assert_eq!(found[0].etag.as_deref(), Some("abc"));
    assert_eq!(found[0].size, Some(12));
    assert_eq!(
        found[0].event_time.unwrap().to_rfc3339(),
        "2024-05-06T07:08:09+00:00"
    );
    assert_eq!(found[1].key, "users/b.csv");
    assert_eq!(found[0].uri(), "s3://landing/users/a.csv");
}

#[test]
fn keys_are_form_decoded() {
    for (raw, decoded) in [
        ("users/a+b.csv", "users/a b.csv"),
        ("users/a%2Bb.csv", "users/a+b.csv"),
        ("users%2Fa+b%2Bc%2F%C3%BC.csv", "users/a b+c/ü.csv"),
        ("users/100%25.csv", "users/100%.csv"),
    ] {
        let body = json!({"Records": [s3_record("ObjectCreated:Put", raw)]});
        assert_eq!(objects(&body.to_string())[0].key, decoded, "{raw}");
    }
    let bad = json!({"Records": [s3_record("ObjectCreated:Put", "a%FF.csv")]});
    assert!(matches!(
        parse(&bad.to_string()),
        Err(EnvelopeError::BadKeyEncoding { .. })
    ));
}

#[test]
fn only_removed_records_are_discarded() {
    let body = json!({"Records": [s3_record("ObjectRemoved:Delete", "users/a.csv")]});
    assert_eq!(
        parse(&body.to_string()).unwrap(),
        Envelope::Discard("no ObjectCreated records (saw ObjectRemoved:Delete)".into())
    );
}

#[test]
fn test_event_is_discarded_plain_and_in_sns() {
    let test_event = json!({"Service": "Amazon S3", "Event": "s3:TestEvent",
        "Time": "2024-01-01T00:00:00.000Z", "Bucket": "landing", "RequestId": "r", "HostId": "h"});
    assert!(matches!(
        parse(&test_event.to_string()).unwrap(),
        Envelope::Discard(_)
    ));
    let sns = sns_wrap(&test_event.to_string());
    assert_eq!(
        parse(&sns).unwrap(),
        Envelope::Discard("s3:TestEvent".into())
    );
}

fn sns_wrap(message: &str) -> String {
    json!({"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:us-east-1:1:t",
           "Subject": "Amazon S3 Notification", "Message": message,
           "Timestamp": "2024-01-01T00:00:00.000Z", "SignatureVersion": "1",
           "Signature": "s", "SigningCertURL": "u", "UnsubscribeURL": "u"})
    .to_string()
}

#[test]
fn sns_wrapped_notification() {
    let inner = json!({"Records": [s3_record("ObjectCreated:Put", "users/x+y.csv")]});
    let found = objects(&sns_wrap(&inner.to_string()));
    assert_eq!(found[0].key, "users/x y.csv");
    let bad = sns_wrap("not json");
    let err = parse(&bad).unwrap_err().to_string();
    assert!(
        err.starts_with("SNS notification: Message: is not JSON"),
        "{err}"
    );
}

/// An SNS notification with `topic` as its `TopicArn` (`Value::Null`: without one).
fn sns_from(topic: Value, message: &str) -> String {
    let mut envelope: Value = serde_json::from_str(&sns_wrap(message)).unwrap();
    match topic {
        Value::Null => envelope.as_object_mut().unwrap().remove("TopicArn"),
        topic => envelope
            .as_object_mut()
            .unwrap()
            .insert("TopicArn".into(), topic),
    };
    envelope.to_string()
}

const LANDING_TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:landing";

fn only_landing() -> TopicPolicy {
    TopicPolicy::Only(vec![
        "arn:aws:sns:eu-west-1:123456789012:other".into(),
        LANDING_TOPIC.into(),
    ])
}

#[test]
fn an_allowed_topic_passes() {
    let inner = json!({"Records": [s3_record("ObjectCreated:Put", "users/a.csv")]});
    let body = sns_from(json!(LANDING_TOPIC), &inner.to_string());
    match parse_from(&body, &only_landing()).unwrap() {
        Envelope::Objects(found) => assert_eq!(found[0].key, "users/a.csv"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn another_topic_is_refused_with_its_name() {
    let inner = json!({"Records": [s3_record("ObjectCreated:Put", "users/a.csv")]});
    let stranger = "arn:aws:sns:us-east-1:999999999999:landing";
    let body = sns_from(json!(stranger), &inner.to_string());
    let err = parse_from(&body, &only_landing()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "SNS notification from topic \"arn:aws:sns:us-east-1:999999999999:landing\", which is not in queue.allowed_topic_arns"
    );
    // Checked before the message is read: a bad Message does not change the answer.
    let body = sns_from(json!(stranger), "not json");
    assert!(matches!(
        parse_from(&body, &only_landing()),
        Err(EnvelopeError::TopicNotAllowed { .. })
    ));
    // An empty list allows no topic; the comparison is exact.
    for (topic, policy) in [
        (LANDING_TOPIC, TopicPolicy::Only(vec![])),
        ("ARN:AWS:SNS:US-EAST-1:123456789012:LANDING", only_landing()),
        (
            "arn:aws:sns:us-east-1:123456789012:landing ",
            only_landing(),
        ),
    ] {
        let body = sns_from(json!(topic), &inner.to_string());
        assert_eq!(
            parse_from(&body, &policy),
            Err(EnvelopeError::TopicNotAllowed {
                topic: Some(topic.into())
            }),
            "{topic:?}"
        );
    }
    // A hostile topic is shortened in the error.
    let long = "x".repeat(10_000);
    let body = sns_from(json!(long), &inner.to_string());
    let err = parse_from(&body, &only_landing()).unwrap_err().to_string();
    assert!(err.len() < MAX_TOPIC_CHARS + 100, "{}", err.len());
    assert!(err.contains("x…\", which is not"), "{err}");
}

#[test]
fn a_notification_without_a_topic_is_refused_when_topics_are_listed() {
    let inner = json!({"Records": [s3_record("ObjectCreated:Put", "users/a.csv")]});
    for topic in [
        Value::Null,
        json!(7),
        json!(["arn:aws:sns:us-east-1:123456789012:landing"]),
    ] {
        let body = sns_from(topic.clone(), &inner.to_string());
        let err = parse_from(&body, &only_landing()).unwrap_err();
        assert_eq!(
            err,
            EnvelopeError::TopicNotAllowed { topic: None },
            "{topic}"
        );
        assert_eq!(
            err.to_string(),
            "SNS notification without a TopicArn; queue.allowed_topic_arns is set, so only notifications from its topics are accepted"
        );
        // Without the list, as before: any topic, or none, is fine.
        assert!(matches!(parse(&body), Ok(Envelope::Objects(_))), "{topic}");
    }
}

#[test]
fn without_a_list_any_topic_is_accepted_and_unwrapped_bodies_are_never_checked() {
    let inner = json!({"Records": [s3_record("ObjectCreated:Put", "users/a.csv")]});
    let stranger = sns_from(
        json!("arn:aws:sns:us-east-1:999999999999:t"),
        &inner.to_string(),
    );
    assert_eq!(
        parse_from(&stranger, &TopicPolicy::AnyTopic),
        parse(&stranger)
    );
    assert!(matches!(parse(&stranger), Ok(Envelope::Objects(_))));
    // Raw message delivery: the S3 event itself, no topic to check.
    let raw = inner.to_string();
    assert!(matches!(
        parse_from(&raw, &TopicPolicy::Only(vec![])),
        Ok(Envelope::Objects(_))
    ));
}

#[test]
fn eventbridge_object_created() {
    let event = json!({"version": "0", "id": "1", "detail-type": "Object Created",
        "source": "aws.s3", "account": "1", "time": "2024-02-03T04:05:06Z", "region": "us-east-1",
        "resources": ["arn:aws:s3:::landing"],
        "detail": {"version": "0", "bucket": {"name": "landing"},
                   "object": {"key": "events/a b.jsonl", "size": 5, "etag": "e1",
                              "version-id": "v1", "sequencer": "1"},
                   "request-id": "r", "requester": "me", "reason": "PutObject"}});
    let found = objects(&event.to_string());
    assert_eq!(found[0].key, "events/a b.jsonl");
    assert_eq!(found[0].etag.as_deref(), Some("e1"));
    assert_eq!(found[0].version_id.as_deref(), Some("v1"));
    let mut deleted = event.clone();
    deleted["detail-type"] = json!("Object Deleted");
    assert!(matches!(
        parse(&deleted.to_string()).unwrap(),
        Envelope::Discard(_)
    ));
}

#[test]
fn inline_records() {
    let body = json!({"dataset": "users", "records": [{"user_id": "u1"}, {"user_id": "u2"}]});
    match parse(&body.to_string()).unwrap() {
        Envelope::Records(r) => {
            assert_eq!(r.dataset, "users");
            assert_eq!(r.records.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    let typo = json!({"dataset": "users", "records": [], "extra": 1});
    assert!(parse(&typo.to_string())
        .unwrap_err()
        .to_string()
        .contains("unknown field `extra`"));
}

#[test]
fn bad_bodies_say_what_is_wrong() {
    assert!(matches!(parse("hello"), Err(EnvelopeError::NotJson(_))));
    assert_eq!(parse("[1]"), Err(EnvelopeError::NotAnObject("array")));
    let unknown = parse(r#"{"foo": 1, "bar": 2}"#).unwrap_err().to_string();
    assert!(unknown.contains("keys: bar, foo"), "{unknown}");
    let missing_key = json!({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {}}}]});
    let err = parse(&missing_key.to_string()).unwrap_err().to_string();
    assert!(
        err.starts_with("S3 notification: Records[0].s3.object: missing field `key`"),
        "{err}"
    );
    let mut v3 = s3_record("ObjectCreated:Put", "k");
    v3["eventVersion"] = json!("3.0");
    let err = parse(&json!({"Records": [v3]}).to_string()).unwrap_err();
    assert!(matches!(err, EnvelopeError::UnsupportedVersion { .. }));
    let deep = "[".repeat(10_000);
    assert!(matches!(parse(&deep), Err(EnvelopeError::NotJson(_))));
    let huge = format!("{{\"pad\": \"{}\"}}", "x".repeat(MAX_BODY_BYTES));
    assert_eq!(
        parse(&huge),
        Err(EnvelopeError::TooLarge(MAX_BODY_BYTES + 11))
    );
}
