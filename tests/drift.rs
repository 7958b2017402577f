//! Drift policies through the worker: `on_new_columns = "rescue"` and
//! `on_invalid = "rescue"` on CSV and JSON lines, into Hive tables (read back by pyarrow)
//! and Iceberg tables (read back by pyiceberg), with the ledger's counts.

mod common;

use std::time::Duration;

use common::*;
use lakeworker::domain::ledger::Status;
use serde_json::{json, Value};

/// Users: 20 good rows, one with a bad optional cell (`age`), one with a bad required
/// cell (`user_id`); every row has the undeclared `referrer`.
fn drifted_users() -> Vec<u8> {
    let mut csv = String::from("user_id,email,age,plan,newsletter,signup_date,referrer\n");
    for n in 0..20 {
        csv.push_str(&format!("u-{n},u{n}@x.io,{n},pro,yes,2024/05/01,ad-{n}\n"));
    }
    csv.push_str("u-98,v@x.io,old,free,maybe,2024/05/01,\n");
    csv.push_str("nobody,w@x.io,5,free,no,2024/05/01,friend\n");
    csv.into_bytes()
}

/// Events: 20 good lines with an undeclared `device`, one with a bad optional
/// `amount`, one without the required `user_id`.
fn drifted_events() -> Vec<u8> {
    let mut lines = String::new();
    for n in 0..20 {
        let line = json!({"event_id": format!("e-{n}"), "user_id": "u-1", "kind": "view",
            "amount": n as f64 + 0.5, "at": "2024-05-01T08:00:00Z", "device": {"os": "ios"}});
        lines.push_str(&format!("{line}\n"));
    }
    lines.push_str(
        "{\"event_id\": \"e-98\", \"user_id\": \"u-1\", \"amount\": \"lots\", \"at\": \"2024-05-01T08:00:00Z\"}\n",
    );
    lines.push_str("{\"event_id\": \"e-99\", \"at\": \"2024-05-01T08:00:00Z\"}\n");
    lines.into_bytes()
}

/// Both datasets rescue new columns and bad cells.
fn rescuing(builder: TestEnvBuilder) -> TestEnvBuilder {
    builder
        .set("datasets.users.on_new_columns", "rescue")
        .set("datasets.users.on_invalid", "rescue")
        .set("datasets.events.on_new_columns", "rescue")
        .set("datasets.events.on_invalid", "rescue")
}

const USERS_KEY: &str = "users/drifted.csv";
const EVENTS_KEY: &str = "events/2024/drifted.jsonl";

/// Puts both files and waits until the ledger has them done.
async fn load_drifted(env: &TestEnv, worker: &Worker) {
    env.put(USERS_KEY, &drifted_users()).await;
    env.put(EVENTS_KEY, &drifted_events()).await;
    env.wait_status(&[USERS_KEY, EVENTS_KEY], Status::Done, WAIT, worker)
        .await;
    let ledger = env.ledger(USERS_KEY).await;
    let users = &ledger[0];
    assert_eq!(
        (
            users.rows_in,
            users.rows_written,
            users.rows_rejected,
            users.rows_rescued
        ),
        (Some(22), Some(21), Some(1), Some(21)),
        "{users:?}\n{}",
        worker.log()
    );
    let ledger = env.ledger(EVENTS_KEY).await;
    let events = &ledger[0];
    assert_eq!(
        (
            events.rows_in,
            events.rows_written,
            events.rows_rejected,
            events.rows_rescued
        ),
        (Some(22), Some(21), Some(1), Some(21)),
        "{events:?}"
    );
}

/// The rows of `rows` whose `column` is `value`.
fn row<'a>(rows: &'a [Value], column: &str, value: &str) -> &'a Value {
    rows.iter()
        .find(|r| r[column] == value)
        .unwrap_or_else(|| panic!("no {column} = {value} in {rows:#?}"))
}

fn rescued(row: &Value) -> Value {
    serde_json::from_str(row["_rescued"].as_str().expect("_rescued text")).expect("JSON")
}

/// What both table formats must hold: every good and rescued row, the new column's
/// text and the bad cells' raw text with their rules, and nothing of the bad rows.
fn check_rows(users: &[Value], events: &[Value]) {
    assert_eq!(users.len(), 21);
    assert!(users.iter().all(|r| r["user_id"] != "nobody"));
    let u3 = row(users, "user_id", "u-3");
    assert_eq!(rescued(u3), json!({"referrer": "ad-3"}));
    assert_eq!(u3["age"], 3);
    let u98 = row(users, "user_id", "u-98");
    assert!(u98["age"].is_null() && u98["newsletter"].is_null(), "{u98}");
    let r98 = rescued(u98);
    assert_eq!(r98["age"], "old");
    assert_eq!(r98["newsletter"], "maybe");
    assert_eq!(r98["referrer"], "");
    assert_eq!(r98["_rules"], json!({"age": "type", "newsletter": "type"}));

    assert_eq!(events.len(), 21);
    let e3 = row(events, "event_id", "e-3");
    assert_eq!(rescued(e3), json!({"device": "{\"os\":\"ios\"}"}));
    let e98 = row(events, "event_id", "e-98");
    assert!(e98["amount"].is_null());
    assert_eq!(
        rescued(e98),
        json!({"amount": "lots", "_rules": {"amount": "type"}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rescue_keeps_new_columns_and_bad_cells_in_hive_tables() {
    let env = rescuing(TestEnv::builder("rescuehive")).start().await;
    let worker = env.start_worker();
    load_drifted(&env, &worker).await;

    let users = read_with_pyarrow(&env.download_lake("curated/users").await);
    let events = read_with_pyarrow(&env.download_lake("curated/events").await);
    assert_eq!(users["schema"]["_rescued"], "string");
    assert_eq!(events["schema"]["_rescued"], "string");
    check_rows(
        users["rows"].as_array().unwrap(),
        events["rows"].as_array().unwrap(),
    );
    // The records table keeps the rescued text too, for files and inline records.
    let users = env.users().await;
    let item = |id: &str| -> Value {
        let text = users[id]["_rescued"].as_s().expect("_rescued is a string");
        serde_json::from_str(text).expect("JSON")
    };
    assert_eq!(item("u-98")["age"], "old");
    assert_eq!(item("u-3"), json!({"referrer": "ad-3"}));
    assert!(!users["u-98"].contains_key("age"));
    let inline = json!({"dataset": "users", "records": [
        {"user_id": "u-500", "age": "ancient", "signup_date": "2024/05/06", "team": "red"}
    ]});
    env.send(&inline.to_string()).await;
    wait_for("the inline record", WAIT, || async {
        env.users().await.contains_key("u-500")
    })
    .await;
    let users = env.users().await;
    let text = users["u-500"]["_rescued"].as_s().expect("_rescued");
    assert_eq!(
        serde_json::from_str::<Value>(text).unwrap(),
        json!({"age": "ancient", "team": "red", "_rules": {"age": "type"}})
    );

    // The quarantine still gets the row a required column refused.
    let quarantined = env.keys_in(&env.lake).await;
    assert!(
        quarantined.iter().any(|k| k.contains("quarantine")),
        "{quarantined:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rescue_keeps_new_columns_and_bad_cells_in_iceberg_tables() {
    let env = rescuing(
        TestEnv::builder("rescueice")
            .catalog()
            .set("lake.table_format", "iceberg")
            .set("iceberg.commit_interval", "1s")
            .set("lake.history", true)
            .set("lake.history_interval", "1s"),
    )
    .start()
    .await;
    let worker = env.start_worker();
    load_drifted(&env, &worker).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let users = env.read_iceberg("users");
    let events = env.read_iceberg("events");
    assert_eq!(users["schema"]["_rescued"], "string", "{users:#}");
    check_rows(
        users["rows"].as_array().unwrap(),
        events["rows"].as_array().unwrap(),
    );

    // The load history is an Iceberg table too, with the rescued counts.
    let deadline = std::time::Instant::now() + WAIT;
    let history = loop {
        let read = env.try_read_iceberg("lakeworker_loads");
        match read {
            Some(read) if read["rows"].as_array().is_some_and(|r| r.len() >= 2) => break read,
            _ => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no history rows: {}",
                    worker.log()
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let rows = history["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{history:#}");
    for key in [USERS_KEY, EVENTS_KEY] {
        let record = env.ledger(key).await.remove(0);
        let row = row(rows, "source_uri", &record.uri);
        let n = |name: &str| row[name].as_u64();
        assert_eq!(row["status"], "done");
        assert_eq!(
            (
                n("rows_in"),
                n("rows_written"),
                n("rows_quarantined"),
                n("rows_rescued")
            ),
            (
                record.rows_in,
                record.rows_written,
                record.rows_rejected,
                record.rows_rescued
            ),
            "{row}"
        );
        assert_eq!(n("rows_rescued"), Some(21));
        let new = if key == USERS_KEY {
            "[\"referrer\"]"
        } else {
            "[\"device\"]"
        };
        assert_eq!(row["new_columns"], new, "{row}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_rescue_on_for_an_existing_iceberg_table_adds_the_column() {
    let env = TestEnv::builder("rescuelater")
        .catalog()
        .set("lake.table_format", "iceberg")
        .set("iceberg.commit_interval", "1s")
        .short_polls()
        .start()
        .await;
    let header = "order_id,user_id,total,paid,ordered_at\n";
    let worker = env.start_worker();
    let before = format!("{header}o-1,u-1,1.5,true,2024-05-01T00:00:00Z\n");
    env.put("orders/before.csv", before.as_bytes()).await;
    env.wait_status(&["orders/before.csv"], Status::Done, WAIT, &worker)
        .await;
    worker.stop_for_restart();
    let table = env.read_iceberg("orders");
    assert!(table["schema"].get("_rescued").is_none(), "{table:#}");
    let highest = table["field_ids"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(Value::as_i64)
        .max()
        .unwrap();

    // The operator turns rescue on; the next start adds the column to the live table.
    let mut config = ConfigFile::parse(&std::fs::read_to_string(&env.config).unwrap());
    config.set("datasets.orders.on_invalid", "rescue");
    config.write(&env.config);
    let worker = env.start_worker();
    let after = format!("{header}o-2,u-2,lots,true,2024-05-01T00:00:00Z\n");
    env.put("orders/after.csv", after.as_bytes()).await;
    env.wait_status(&["orders/after.csv"], Status::Done, WAIT, &worker)
        .await;
    let table = env.read_iceberg("orders");
    assert_eq!(table["schema"]["_rescued"], "string", "{table:#}");
    assert_eq!(
        table["field_ids"]["_rescued"],
        highest + 1,
        "the next field id"
    );
    let rows = table["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert!(row(rows, "order_id", "o-1")["_rescued"].is_null());
    let o2 = row(rows, "order_id", "o-2");
    assert!(o2["total"].is_null());
    assert_eq!(
        rescued(o2),
        json!({"total": "lots", "_rules": {"total": "type"}})
    );
    assert!(!worker.log().contains("does not match"), "{}", worker.log());
}
