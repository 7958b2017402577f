//! Routing and envelopes: refused messages, SNS topics, and inline records.

use super::*;
use crate::pipeline::error::ErrorClass;

#[tokio::test]
async fn refusals_are_permanent_and_write_nothing() {
    let p = pipeline();
    p.store.insert(LANDING, "misc/a.csv", b"x\n");
    for (body, expected) in [
        (
            event("elsewhere", "users/a.csv"),
            "is not the landing bucket",
        ),
        (event(LANDING, "misc/a.csv"), "no dataset matches the key"),
        ("{".to_owned(), "body is not JSON"),
        (
            r#"{"dataset": "orders", "records": []}"#.to_owned(),
            "has no records_table",
        ),
        (
            r#"{"dataset": "users", "records": [{"user_id": "u-1"}]}"#.to_owned(),
            "1 of 1 rows are invalid",
        ),
    ] {
        let err = p.handle(&body, &job("m1")).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
        assert!(err.to_string().contains(expected), "{err}");
    }
    assert!(p.store.keys(LAKE).is_empty());
    assert!(p.records.tables.lock().unwrap().is_empty());
}

/// `body` wrapped in an SNS notification from `topic`.
fn sns_from(topic: &str, body: &str) -> String {
    serde_json::json!({"Type": "Notification", "MessageId": "m", "TopicArn": topic,
        "Message": body, "Timestamp": "2024-03-04T05:06:07Z"})
    .to_string()
}

#[tokio::test]
async fn sns_notifications_from_topics_not_allowed_are_permanent_and_write_nothing() {
    let allowed = "arn:aws:sns:us-east-1:123456789012:landing";
    let stranger = "arn:aws:sns:us-east-1:999999999999:landing";
    let p = pipeline_with(&[("LAKEWORKER__QUEUE__ALLOWED_TOPIC_ARNS", allowed)]);
    p.store.insert(
        LANDING,
        "users/a.csv",
        b"user_id,signup_date\nu-1,2024/01/01\n",
    );
    let inline =
        r#"{"dataset": "users", "records": [{"user_id": "u-2", "signup_date": "2024/01/01"}]}"#;
    for body in [event(LANDING, "users/a.csv"), inline.to_owned()] {
        let err = p
            .handle(&sns_from(stranger, &body), &job("m1"))
            .await
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
        assert_eq!(
            err.to_string(),
            format!("bad message body: SNS notification from topic {stranger:?}, which is not in queue.allowed_topic_arns")
        );
    }
    assert!(p.store.keys(LAKE).is_empty());
    assert!(p.records.tables.lock().unwrap().is_empty());
    assert!(p
        .ledger
        .record("s3://lakeworker-landing/users/a.csv")
        .is_none());
    // The allowed topic's notifications, and bodies without an envelope, are handled.
    let from_allowed = sns_from(allowed, &event(LANDING, "users/a.csv"));
    assert!(matches!(
        p.handle(&from_allowed, &job("m2")).await.unwrap(),
        Outcome::Converted(_)
    ));
    assert!(matches!(
        p.handle(inline, &job("m3")).await.unwrap(),
        Outcome::Upserted { rows: 1, .. }
    ));
}

/// A pipeline on the tests' config (`tests/fixtures/worker.toml`) with `line` added to the users dataset.
fn pipeline_with_users(line: &str) -> TestPipeline {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("tests/fixtures/worker.toml")).unwrap();
    let anchor = "records_key = \"user_id\"";
    assert!(text.contains(anchor), "tests/fixtures/worker.toml changed");
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(
        file.path(),
        text.replacen(anchor, &format!("{anchor}\n{line}"), 1),
    )
    .unwrap();
    pipeline_from(file.path().to_str().unwrap(), &[])
}

#[tokio::test]
async fn inline_false_refuses_inline_records_but_not_files() {
    let p = pipeline_with_users("inline = false");
    // Refused before validation: the bad record is not quarantined.
    let body = r#"{"dataset": "users", "records": [{"user_id": "u-1", "signup_date": "2024/01/01"}, {"bad": 1}]}"#;
    let err = p.handle(body, &job("m1")).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
    assert_eq!(
        err.to_string(),
        "inline records for dataset \"users\": the dataset does not accept inline records (inline = false)"
    );
    assert!(p.records.tables.lock().unwrap().is_empty());
    assert!(p.store.keys(LAKE).is_empty(), "nothing quarantined either");
    // The dataset's files still reach the lake and the table.
    p.store.insert(
        LANDING,
        "users/a.csv",
        b"user_id,signup_date\nu-2,2024/01/01\n",
    );
    assert!(matches!(
        one_object(&p, "users/a.csv").await,
        ObjectOutcome::Written(_)
    ));
    assert_eq!(table(&p), [("u-2".to_owned(), String::new())]);
    // inline = true is the default.
    let p = pipeline_with_users("inline = true");
    let good =
        r#"{"dataset": "users", "records": [{"user_id": "u-1", "signup_date": "2024/01/01"}]}"#;
    assert!(matches!(
        p.handle(good, &job("m2")).await.unwrap(),
        Outcome::Upserted { rows: 1, .. }
    ));
}

#[tokio::test]
async fn inline_records_are_upserted_last_wins_and_bad_ones_quarantined() {
    let p = pipeline();
    let mut records: Vec<serde_json::Value> =
        (0..10).map(|i| serde_json::json!({"user_id": format!("u-{i}"), "signup_date": "2024/01/01", "age": i})).collect();
    records.push(serde_json::json!({"user_id": "u-0", "signup_date": "2024/01/02", "age": 99}));
    records.push(serde_json::json!({"signup_date": "2024/01/02"}));
    let body = serde_json::json!({"dataset": "users", "records": records});
    let outcome = p.handle(&body.to_string(), &job("m7")).await.unwrap();
    assert_eq!(
        outcome,
        Outcome::Upserted {
            dataset: "users".into(),
            rows: 10,
            quarantined: 1
        }
    );
    assert!(
        table(&p).contains(&("u-0".into(), "99".into())),
        "last wins"
    );
    let keys = p.store.keys(LAKE);
    assert_eq!(keys.len(), 1);
    assert!(
        keys[0].starts_with("quarantine/users/dt=") && keys[0].ends_with("/m7.rows.jsonl"),
        "{keys:?}"
    );
}
