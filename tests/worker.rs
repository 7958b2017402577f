//! The worker binary against the emulator: every message shape, CSV and JSON lines,
//! column and ingest-date partitions, keys with spaces, `+` and unicode, user rows in
//! DynamoDB. Parquet output is read back with the parquet crate and with pyarrow. Failure
//! handling is in `faults.rs`.

mod common;

use std::time::Duration;

use arrow::array::{Array, StringArray};
use arrow::datatypes::{DataType, TimeUnit};
use aws_sdk_dynamodb::types::AttributeValue;
use common::*;
use lakeworker::domain::envelope::{notification, S3Event};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_csv_lands_in_date_partitions_and_dynamodb() {
    let env = TestEnv::builder("users").start().await;
    let worker = env.start_worker();
    // S3 notifications carry this key as "users/signups+2024%2B05.csv".
    let key = "users/signups 2024+05.csv";
    let etag = env.put(key, &example("users/signups-2024-05.csv")).await;

    let keys = env.wait_lake_keys(3).await;
    env.wait_drained().await;
    let id = part_id(&env.landing, key, &etag);
    assert_eq!(
        keys,
        ["2024-05-01", "2024-05-02", "2024-05-03"]
            .map(|d| format!("curated/users/signup_date={d}/part-{id}.parquet"))
    );

    // The parquet crate: typed columns, the partition column only in the path, lineage.
    let batches = read_parquet(env.lake_object(&keys[0]).await);
    let schema = batches[0].schema();
    let types: Vec<(&str, &DataType)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type()))
        .collect();
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    assert_eq!(
        types,
        [
            ("user_id", &DataType::Utf8),
            ("email", &DataType::Utf8),
            ("age", &DataType::Int64),
            ("plan", &DataType::Utf8),
            ("newsletter", &DataType::Boolean),
            ("_source", &DataType::Utf8),
            ("_ingested_at", &utc),
        ]
    );
    let source = batches[0]
        .column(5)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!(source.value(0), format!("s3://{}/{key}", env.landing));

    // pyarrow, reading the lake as a Hive-partitioned dataset.
    let local = env.download_lake("curated/users").await;
    let seen = read_with_pyarrow(&local);
    assert_eq!(seen["schema"]["age"], "int64");
    assert_eq!(seen["schema"]["newsletter"], "bool");
    assert_eq!(seen["schema"]["_ingested_at"], "timestamp[us, tz=UTC]");
    assert!(
        seen["schema"]["signup_date"].is_string(),
        "partition column discovered from the path"
    );
    let rows = seen["rows"].as_array().unwrap();
    assert_eq!(
        rows.len(),
        6,
        "the lake keeps every row, duplicates included"
    );
    let barbara = rows.iter().find(|r| r["user_id"] == "u-004").unwrap();
    assert_eq!(barbara["plan"], "team, annual");
    assert_eq!(barbara["newsletter"], false);
    assert_eq!(
        barbara["signup_date"].to_string().trim_matches('"'),
        "2024-05-02"
    );
    let alan = rows.iter().find(|r| r["user_id"] == "u-003").unwrap();
    assert!(alan["age"].is_null());

    // DynamoDB: one item per distinct key, the last row wins, nulls omitted.
    let users = env.users().await;
    assert_eq!(users.len(), 5);
    let grace = &users["u-002"];
    assert_eq!(
        grace["email"],
        AttributeValue::S("grace.hopper@example.com".into())
    );
    assert_eq!(grace["plan"], AttributeValue::S("pro".into()));
    assert_eq!(grace["age"], AttributeValue::N("45".into()));
    assert_eq!(grace["newsletter"], AttributeValue::Bool(true));
    assert_eq!(grace["signup_date"], AttributeValue::S("2024-05-01".into()));
    assert!(!users["u-003"].contains_key("age"));
    assert!(!users["u-005"].contains_key("newsletter"));

    assert_eq!(env.depth(&env.dlq_url).await, 0);
    assert!(
        worker
            .events("message handled")
            .iter()
            .any(|event| event["fields"]["outcome"] == "discarded: s3:TestEvent"),
        "the provisioning TestEvent is discarded: {}",
        worker.log()
    );
    let status = worker.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_ingest_date_comes_from_the_event_and_keys_are_decoded() {
    let env = TestEnv::builder("events").quiet().start().await;
    let _worker = env.start_worker();
    let key = "events/2024/a b+c ü%.jsonl";
    let etag = env.put(key, &example("events/2024/clicks.jsonl")).await;
    let event = s3_event(&env.landing, key, &etag, "2024-02-03T23:59:59.000Z");
    let body = event.body();
    assert!(body.contains("a+b%2Bc+%C3%BC%25.jsonl"), "{body}");
    env.send(&body).await;

    let keys = env.wait_lake_keys(1).await;
    env.wait_drained().await;
    let id = part_id(&env.landing, key, &etag);
    assert_eq!(
        keys,
        [format!(
            "curated/events/ingest_date=2024-02-03/part-{id}.parquet"
        )]
    );

    let local = env.download_lake("curated/events").await;
    let seen = read_with_pyarrow(&local);
    assert_eq!(seen["schema"]["amount"], "double");
    assert_eq!(seen["schema"]["at"], "timestamp[us, tz=UTC]");
    let rows = seen["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let e1 = rows.iter().find(|r| r["event_id"] == "e-1").unwrap();
    assert_eq!(
        e1["props"], r#"{"ab":["a"],"page":"/pricing"}"#,
        "nested JSON kept as text"
    );
    assert!(e1["amount"].is_null());
    assert_eq!(e1["_source"], format!("s3://{}/{key}", env.landing));
    let e2 = rows.iter().find(|r| r["event_id"] == "e-2").unwrap();
    assert_eq!(e2["amount"], 49.5);
    assert_eq!(
        e2["at"], "2024-05-01 08:05:30.250000+00:00",
        "offsets are converted to UTC"
    );

    // The same rows through the parquet crate.
    let batches = read_parquet(env.lake_object(&keys[0]).await);
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
    assert_eq!(
        batches[0]
            .schema()
            .field_with_name("at")
            .unwrap()
            .data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_eventbridge_and_multi_record_messages() {
    let topic = "arn:aws:sns:us-east-1:123456789012:landing";
    // The environment's form of the list, as a task definition would set it.
    let allowed = format!("arn:aws:sns:eu-west-1:123456789012:elsewhere, {topic}");
    let env = TestEnv::builder("shapes")
        .env("LAKEWORKER__QUEUE__ALLOWED_TOPIC_ARNS", &allowed)
        .quiet()
        .start()
        .await;
    let _worker = env.start_worker();
    let orders = example("orders/orders-2024-05.csv");
    let via_sns = env.put("orders/via-sns.csv", &orders).await;
    let via_stranger = env.put("orders/via-stranger.csv", &orders).await;
    let via_eventbridge = env.put("orders/via-eventbridge.csv", &orders).await;
    let first = env.put("orders/first.csv", &orders).await;
    let second = env.put("orders/second.csv", &orders).await;
    let now = "2024-06-01T00:00:00.000Z";

    let sns_from = |topic: &str, message: String| {
        json!({"Type": "Notification", "MessageId": "m-1", "TopicArn": topic,
               "Subject": "Amazon S3 Notification", "Message": message, "Timestamp": now,
               "SignatureVersion": "1", "Signature": "x", "SigningCertURL": "https://x", "UnsubscribeURL": "https://x"})
        .to_string()
    };
    let sns = |message: String| sns_from(topic, message);
    // Another account's topic: refused, whatever it wraps.
    let stranger = "arn:aws:sns:us-east-1:999999999999:landing";
    let refused = sns_from(
        stranger,
        s3_event(&env.landing, "orders/via-stranger.csv", &via_stranger, now).body(),
    );
    env.send(&refused).await;
    env.send(&sns(s3_event(
        &env.landing,
        "orders/via-sns.csv",
        &via_sns,
        now,
    )
    .body()))
        .await;
    let test_event = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": now,
        "Bucket": env.landing, "RequestId": "r", "HostId": "h"});
    env.send(&sns(test_event.to_string())).await;
    let eventbridge = json!({"version": "0", "id": "e-1", "detail-type": "Object Created", "source": "aws.s3",
        "account": "123456789012", "time": now, "region": REGION, "resources": [format!("arn:aws:s3:::{}", env.landing)],
        "detail": {"version": "0", "bucket": {"name": env.landing},
                   "object": {"key": "orders/via-eventbridge.csv", "size": orders.len(), "etag": via_eventbridge, "sequencer": "1"},
                   "request-id": "r", "requester": "123456789012", "reason": "PutObject"}});
    env.send(&eventbridge.to_string()).await;
    let removed = S3Event::new("ObjectRemoved:Delete", &env.landing, "orders/gone.csv").at(now);
    let several = notification(&[
        s3_event(&env.landing, "orders/first.csv", &first, now),
        removed.clone(),
        S3Event {
            event_name: "ObjectCreated:CompleteMultipartUpload".into(),
            ..s3_event(&env.landing, "orders/second.csv", &second, now)
        },
    ]);
    env.send(&several).await;
    env.send(&removed.body()).await;

    // Four objects, each split into two timestamp-date partitions.
    let keys = env.wait_lake_keys(8).await;
    env.wait_drained().await;
    for (name, etag) in [
        ("via-sns", &via_sns),
        ("via-eventbridge", &via_eventbridge),
        ("first", &first),
        ("second", &second),
    ] {
        let id = part_id(&env.landing, &format!("orders/{name}.csv"), etag);
        for day in ["2024-05-01", "2024-05-02"] {
            let key = format!("curated/orders/ordered_at_date={day}/part-{id}.parquet");
            assert!(keys.contains(&key), "{key} missing from {keys:#?}");
        }
    }
    // A timestamp partition keeps the full timestamp in the file.
    let local = env.download_lake("curated/orders").await;
    let seen = read_with_pyarrow(&local);
    assert_eq!(seen["schema"]["ordered_at"], "timestamp[us, tz=UTC]");
    assert_eq!(seen["schema"]["paid"], "bool");
    let rows = seen["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 12);
    let o3 = rows.iter().find(|r| r["order_id"] == "o-3").unwrap();
    assert_eq!(o3["ordered_at"], "2024-05-02 03:30:00+00:00");
    assert_eq!(
        o3["ordered_at_date"].to_string().trim_matches('"'),
        "2024-05-02"
    );
    assert!(
        !env.lake_keys().await.iter().any(|k| k.contains(&part_id(
            &env.landing,
            "orders/via-stranger.csv",
            &via_stranger
        ))),
        "{keys:#?}"
    );
    wait_for("the refused notification in the DLQ", WAIT, || async {
        env.depth(&env.dlq_url).await == 1
    })
    .await;
    let letters = env.dead_letters_with_attributes().await;
    assert_eq!(letters.len(), 1, "{letters:#?}");
    let (body, attributes) = &letters[0];
    assert_eq!(body, &refused, "dead-lettered unchanged");
    assert_eq!(attributes["lakeworker.error_class"], "permanent");
    assert_eq!(
        attributes["lakeworker.error"],
        format!("bad message body: SNS notification from topic {stranger:?}, which is not in queue.allowed_topic_arns")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_records_are_upserted() {
    let env = TestEnv::builder("inline").quiet().start().await;
    let _worker = env.start_worker();
    env.send(&String::from_utf8(example("messages/users-inline.json")).unwrap())
        .await;
    // SQS standard queues do not order messages, so the update is sent after the first
    // message is stored; "last wins" is a promise within one message or file.
    wait_for("2 users", WAIT, || async { env.users().await.len() == 2 }).await;
    let again = json!({"dataset": "users", "records": [
        {"user_id": "u-101", "email": "m.hamilton@example.com", "signup_date": "2024/05/06", "newsletter": "yes"},
        {"user_id": "u-102", "age": 7, "signup_date": "2024/05/06"},
        {"user_id": "u-102", "age": 8, "signup_date": "2024/05/07"}
    ]});
    env.send(&again.to_string()).await;
    env.wait_drained().await;
    wait_for("3 users", WAIT, || async { env.users().await.len() == 3 }).await;
    let users = env.users().await;
    assert_eq!(users["u-100"]["age"], AttributeValue::N("54".into()));
    assert_eq!(users["u-100"]["newsletter"], AttributeValue::Bool(true));
    assert_eq!(
        users["u-101"]["email"],
        AttributeValue::S("m.hamilton@example.com".into())
    );
    assert_eq!(users["u-101"]["newsletter"], AttributeValue::Bool(true));
    assert!(
        !users["u-101"].contains_key("plan"),
        "an upsert replaces the whole item"
    );
    assert_eq!(
        users["u-102"]["age"],
        AttributeValue::N("8".into()),
        "last record wins"
    );
    assert_eq!(
        users["u-102"]["signup_date"],
        AttributeValue::S("2024-05-07".into())
    );
    assert!(
        env.lake_keys().await.is_empty(),
        "inline records go to DynamoDB only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dataset_with_inline_false_refuses_inline_records_and_still_takes_files() {
    let env = TestEnv::builder("noinline")
        .set("datasets.users.inline", false)
        .quiet()
        .start()
        .await;
    let _worker = env.start_worker();
    let inline = String::from_utf8(example("messages/users-inline.json")).unwrap();
    env.send(&inline).await;
    env.put_and_announce("users/signups.csv", &example("users/signups-2024-05.csv"))
        .await;
    env.wait_lake_keys(3).await;
    wait_for("the inline records in the DLQ", WAIT, || async {
        env.depth(&env.dlq_url).await == 1
    })
    .await;
    env.wait_drained().await;
    let letters = env.dead_letters_with_attributes().await;
    assert_eq!(letters.len(), 1, "{letters:#?}");
    let (body, attributes) = &letters[0];
    assert_eq!(body, &inline, "dead-lettered unchanged");
    assert_eq!(attributes["lakeworker.error_class"], "permanent");
    assert_eq!(
        attributes["lakeworker.error"],
        "inline records for dataset \"users\": the dataset does not accept inline records (inline = false)"
    );
    // The file's rows reach the table; the inline ones do not.
    wait_for("the file's users", WAIT, || async {
        env.users().await.contains_key("u-001")
    })
    .await;
    let users = env.users().await;
    assert!(
        !users.contains_key("u-100") && !users.contains_key("u-101"),
        "{:?}",
        users.keys()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overwritten_object_is_processed_by_its_newest_event_only() {
    let env = TestEnv::builder("superseded").quiet().start().await;
    let worker = env.start_worker();
    let now = "2024-06-01T00:00:00.000Z";
    let old = env
        .put(
            "orders/changing.csv",
            b"order_id,ordered_at\no-old,2024-01-01T00:00:00Z\n",
        )
        .await;
    let new = env
        .put("orders/changing.csv", &example("orders/orders-2024-05.csv"))
        .await;
    env.send(&s3_event(&env.landing, "orders/changing.csv", &old, now).body())
        .await;
    env.send(&s3_event(&env.landing, "orders/changing.csv", &new, now).body())
        .await;
    let keys = env.wait_lake_keys(2).await;
    env.wait_drained().await;
    let id = part_id(&env.landing, "orders/changing.csv", &new);
    assert!(
        keys.iter()
            .all(|k| k.ends_with(&format!("part-{id}.parquet"))),
        "{keys:#?}"
    );
    assert_eq!(keys.len(), 2);
    let superseded = format!(
        "s3://{}/orders/changing.csv superseded by a newer version",
        env.landing
    );
    assert!(
        worker
            .events("message handled")
            .iter()
            .any(|event| event["fields"]["outcome"] == superseded.as_str()),
        "{}",
        worker.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_file_rolls_over_into_parts_of_the_target_size() {
    let env = TestEnv::builder("roll")
        .env("LAKEWORKER__LAKE__TARGET_FILE_SIZE", "1MiB")
        .env("LAKEWORKER__LAKE__ROW_GROUP_SIZE", "20000")
        .start()
        .await;
    let _worker = env.start_worker();
    let rows = 100_000u64;
    let key = "orders/big.csv";
    let etag = env.put(key, &incompressible_orders(rows)).await;
    env.wait_lake_keys(1).await;
    env.wait_drained().await;

    let id = part_id(&env.landing, key, &etag);
    let keys = env.lake_keys().await;
    assert!(keys.len() >= 2, "{keys:?}");
    let dir = "curated/orders/ordered_at_date=2024-05-01";
    let mut expected: Vec<String> = (1..keys.len())
        .map(|n| format!("{dir}/part-{id}-{n}.parquet"))
        .collect();
    expected.push(format!("{dir}/part-{id}.parquet"));
    expected.sort();
    assert_eq!(keys, expected);
    let mut total_rows = 0;
    for key in &keys {
        let bytes = env.lake_object(key).await;
        let size = bytes.len();
        let batches = read_parquet(bytes);
        total_rows += batches.iter().map(|b| b.num_rows() as u64).sum::<u64>();
        assert!(size < 3 << 20, "{key}: {size} bytes");
    }
    assert_eq!(total_rows, rows);

    // pyarrow sees every row once across the parts.
    let seen = read_with_pyarrow(&env.download_lake("curated/orders").await);
    let ids: std::collections::HashSet<&str> = seen["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["order_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len() as u64, rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_separate_quarantine_bucket_gets_bad_rows_and_rejected_files() {
    let quarantine = format!("{}-q", unique("qb"));
    let env = TestEnv::builder("qbucket")
        .env("LAKEWORKER__LAKE__QUARANTINE_BUCKET", quarantine.as_str())
        .start()
        .await;
    let _worker = env.start_worker();
    env.put("users/typos.csv", &example("users/signups-with-typos.csv"))
        .await;
    env.put(
        "orders/wrong-export.csv",
        &example("orders/orders-wrong-export.csv"),
    )
    .await;

    wait_for("bad rows and the rejected file", WAIT, || async {
        env.keys_in(&quarantine).await.len() >= 3
    })
    .await;
    env.wait_drained().await;
    let quarantined = env.keys_in(&quarantine).await;
    assert!(
        quarantined
            .iter()
            .any(|k| k.starts_with("quarantine/users/dt=") && k.ends_with(".rows.jsonl")),
        "{quarantined:?}"
    );
    assert!(
        quarantined
            .iter()
            .any(|k| k.starts_with("quarantine/orders/") && k.ends_with("/wrong-export.csv")),
        "{quarantined:?}"
    );
    assert!(
        quarantined
            .iter()
            .any(|k| k.ends_with("/wrong-export.csv.error.json")),
        "{quarantined:?}"
    );
    // The lake bucket holds only converted data.
    let lake = env.lake_keys().await;
    assert!(!lake.is_empty());
    assert!(
        lake.iter().all(|k| k.starts_with("curated/users/")),
        "{lake:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_zone_copies_the_original_and_delete_after_removes_it_from_landing() {
    let env = TestEnv::builder("raw")
        .env("LAKEWORKER__LAKE__RAW_PREFIX", "raw")
        .env("LAKEWORKER__LANDING__DELETE_AFTER", "true")
        .start()
        .await;
    let _worker = env.start_worker();
    let body = example("users/signups-2024-05.csv");
    let key = "users/2024/signups.csv";
    env.put(key, &body).await;

    wait_for("the landing object to be deleted", WAIT, || async {
        !env.keys_in(&env.landing).await.iter().any(|k| k == key)
    })
    .await;
    env.wait_drained().await;
    let lake = env.lake_keys().await;
    let raw: Vec<&String> = lake.iter().filter(|k| k.starts_with("raw/")).collect();
    assert_eq!(raw.len(), 1, "{lake:?}");
    assert!(
        raw[0].starts_with("raw/users/ingest_date=") && raw[0].ends_with("/users/2024/signups.csv"),
        "{raw:?}"
    );
    assert_eq!(env.lake_object(raw[0]).await.as_ref(), body.as_slice());
    assert!(lake.iter().any(|k| k.starts_with("curated/users/")));
    let ledger = env.ledger(key).await;
    assert!(
        ledger[0].outputs.iter().any(|o| &key_of(o) == raw[0]),
        "{ledger:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_the_worker_cleanly() {
    let env = TestEnv::builder("sigint").quiet().start().await;
    let mut worker = env.start_worker();
    env.put_and_announce("users/sigint.csv", &example("users/signups-2024-05.csv"))
        .await;
    env.wait_lake_keys(3).await;
    env.wait_drained().await;
    assert!(worker.is_running(), "log:\n{}", worker.log());

    let sent = std::process::Command::new("kill")
        .args(["-INT", &worker.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -INT failed");
    let timeout = Duration::from_secs(10);
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Some(status) = worker.exited() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "worker did not exit within {timeout:?} of SIGINT; log:\n{}",
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0), "log:\n{}", worker.log());
    let stopping = worker.events("shutting down");
    assert_eq!(stopping.len(), 1, "log:\n{}", worker.log());
    assert_eq!(stopping[0]["fields"]["signal"], "SIGINT", "{stopping:?}");
}
