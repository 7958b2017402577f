//! Rows DynamoDB cannot store (a number out of its range, an empty or oversized key, an
//! item over 400 KB) are bad rows found during conversion, before anything is published:
//! quarantined with their rule while the file's good rows reach the lake and the table.
//! Against the emulator, whose DynamoDB refuses such items as AWS does.

mod common;

use aws_sdk_dynamodb::types::AttributeValue;
use common::*;
use lakeworker::domain::ledger::Status;

/// JSON lines: good rows `r-1`, `r-6`, `r-7`, `r-8` (at DynamoDB's number limits) and
/// bad ones with the rule each must be quarantined with.
fn lines(prefix: &str) -> (Vec<serde_json::Value>, Vec<(&'static str, &'static str)>) {
    let id = |n: &str| format!("{prefix}{n}");
    let rows = vec![
        serde_json::json!({"user_id": id("1"), "value": 1.5, "note": "ok"}),
        serde_json::json!({"user_id": id("2"), "value": 1e300}),
        serde_json::json!({"user_id": id("3"), "value": -1e-200}),
        serde_json::json!({"user_id": "", "value": 2.0}),
        serde_json::json!({"user_id": id("5"), "note": "x".repeat(500_000)}),
        serde_json::json!({"user_id": id("6"), "value": -2.5e-7, "note": "fine"}),
        serde_json::json!({"user_id": id("7"), "value": 9.9e125}),
        serde_json::json!({"user_id": id("8"), "value": 1e-130}),
        serde_json::json!({"user_id": "k".repeat(3000)}),
    ];
    let rules = vec![
        ("value", "dynamodb_number"),
        ("value", "dynamodb_number"),
        ("user_id", "dynamodb_key"),
        ("", "dynamodb_item_size"),
        ("user_id", "dynamodb_key"),
    ];
    (rows, rules)
}

/// The bad rows of a quarantine object as (column, rule) of their first error.
fn rules_of(quarantine: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(quarantine)
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).expect("quarantine JSON");
            let error = &row["errors"][0];
            (
                error["column"].as_str().unwrap_or_default().to_owned(),
                error["rule"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_dynamodb_cannot_store_are_quarantined_and_the_file_is_done() {
    // The `readings` dataset, upserted into the users table, given as LAKEWORKER_DATASETS.
    let env = TestEnv::builder("ddb-limits")
        .datasets("tests/fixtures/readings.toml")
        .quiet()
        .start()
        .await;
    let worker = env.start_worker();

    let (rows, expected) = lines("r-");
    let body: String = rows.iter().map(|r| format!("{r}\n")).collect();
    let key = "readings/batch.jsonl";
    let etag = env.put_and_announce(key, body.as_bytes()).await;
    wait_for("the file to be settled", WAIT, || async {
        env.ledger(key)
            .await
            .first()
            .and_then(|r| r.status)
            .is_some_and(|s| s != Status::Processing)
    })
    .await;
    env.wait_drained().await;
    let record = &env.ledger(key).await[0];
    assert_eq!(
        record.status,
        Some(Status::Done),
        "{record:?}\n{}",
        worker.log()
    );
    assert_eq!(
        (record.rows_in, record.rows_written, record.rows_rejected),
        (Some(9), Some(4), Some(5))
    );
    assert_eq!(env.depth(&env.dlq_url).await, 0, "nothing dead-lettered");

    // The good rows are in the lake (read by pyarrow) and in the table, the bad ones in
    // the quarantine with their rule.
    let lake = env.download_lake("curated/readings").await;
    let seen = read_with_pyarrow(&lake);
    let mut ids: Vec<&str> = seen["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["user_id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["r-1", "r-6", "r-7", "r-8"]);
    assert_eq!(seen["schema"]["value"], "double");
    let users = env.users().await;
    let mut table: Vec<&str> = users.keys().map(String::as_str).collect();
    table.sort();
    assert_eq!(table, ["r-1", "r-6", "r-7", "r-8"]);
    assert_eq!(
        users["r-6"]["value"],
        AttributeValue::N("-0.00000025".into())
    );
    let id = part_id(&env.landing, key, &etag);
    let quarantine = env
        .lake_object(&format!(
            "quarantine/readings/dt=2024-06-01/{id}.rows.jsonl"
        ))
        .await;
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(c, r)| (c.to_string(), r.to_string()))
        .collect();
    assert_eq!(rules_of(&quarantine), expected);

    // Inline records go through the same rules.
    let (rows, _) = lines("i-");
    let message = serde_json::json!({"dataset": "readings", "records": rows});
    env.send(&message.to_string()).await;
    wait_for("the inline records", WAIT, || async {
        env.users().await.len() == 8
    })
    .await;
    env.wait_drained().await;
    assert_eq!(env.depth(&env.dlq_url).await, 0, "nothing dead-lettered");
    let inline_rows = env
        .lake_keys()
        .await
        .into_iter()
        .find(|k| {
            k.starts_with("quarantine/readings/") && !k.contains(&id) && k.ends_with(".rows.jsonl")
        })
        .expect("the inline records' quarantine");
    assert_eq!(
        rules_of(&env.lake_object(&inline_rows).await),
        expected,
        "{inline_rows}"
    );
}
