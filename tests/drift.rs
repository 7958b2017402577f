//! Drift policies through the worker: every `on_new_columns` value and
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

/// Users signing up on 2024-05-01, ids `u-{n}` for `n` in `ids`, with the extra columns
/// `extra` (header name, cell text of row n) after or before the declared ones.
fn users_file(ids: std::ops::Range<usize>, extra: &[(&str, &str)], first: bool) -> Vec<u8> {
    let declared = "user_id,email,age,plan,newsletter,signup_date";
    let names: Vec<&str> = extra.iter().map(|(name, _)| *name).collect();
    let mut csv = if first {
        format!("{},{declared}\n", names.join(","))
    } else {
        format!("{declared},{}\n", names.join(","))
    };
    if extra.is_empty() {
        csv = format!("{declared}\n");
    }
    for n in ids {
        let cells: Vec<String> = extra
            .iter()
            .map(|(_, prefix)| format!("{prefix}{n}"))
            .collect();
        let row = format!("u-{n},u{n}@x.io,{n},pro,yes,2024/05/01");
        csv.push_str(&match (extra.is_empty(), first) {
            (true, _) => format!("{row}\n"),
            (false, true) => format!("{},{row}\n", cells.join(",")),
            (false, false) => format!("{row},{}\n", cells.join(",")),
        });
    }
    csv.into_bytes()
}

/// Events `e-{n}` with a nested `device` and a numeric `screen` neither declares.
fn events_file(ids: std::ops::Range<usize>) -> Vec<u8> {
    let mut lines = String::new();
    for n in ids {
        let line = json!({"event_id": format!("e-{n}"), "user_id": "u-1", "kind": "view",
            "at": "2024-05-01T08:00:00Z", "device": {"os": "ios"}, "screen": n});
        lines.push_str(&format!("{line}\n"));
    }
    lines.into_bytes()
}

fn adding(builder: TestEnvBuilder) -> TestEnvBuilder {
    builder
        .set("datasets.users.on_new_columns", "add")
        .set("datasets.events.on_new_columns", "add")
}

/// The `ADD COLUMNS` statements Athena got.
async fn column_statements(env: &TestEnv) -> Vec<String> {
    let statements = env.athena_statements(&env.catalog().workgroup).await;
    statements
        .into_iter()
        .filter(|s| s.contains(" ADD COLUMNS "))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_grows_hive_tables_from_csv_and_jsonl_and_tells_the_catalog_once() {
    let env = adding(TestEnv::builder("addhive").catalog()).start().await;
    let worker = env.start_worker();
    env.put(
        "users/a.csv",
        &users_file(0..5, &[("referrer", "ad-")], false),
    )
    .await;
    env.put("events/2024/a.jsonl", &events_file(0..3)).await;
    env.wait_status(
        &["users/a.csv", "events/2024/a.jsonl"],
        Status::Done,
        WAIT,
        &worker,
    )
    .await;
    // A second file brings another column, first in its header; a third has neither.
    let coupon = [("coupon", "C"), ("referrer", "tv-")];
    env.put("users/b.csv", &users_file(5..8, &coupon, true))
        .await;
    env.put("users/c.csv", &users_file(8..10, &[], false)).await;
    env.wait_status(&["users/b.csv", "users/c.csv"], Status::Done, WAIT, &worker)
        .await;

    let users = read_with_pyarrow(&env.download_lake("curated/users").await);
    assert_eq!(users["schema"]["referrer"], "string", "{users:#}");
    assert_eq!(users["schema"]["coupon"], "string");
    let rows = users["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 10);
    let at = |id: &str| row(rows, "user_id", id).clone();
    assert_eq!(
        (at("u-1")["referrer"].clone(), at("u-1")["coupon"].clone()),
        (json!("ad-1"), Value::Null)
    );
    assert_eq!(
        (at("u-6")["referrer"].clone(), at("u-6")["coupon"].clone()),
        (json!("tv-6"), json!("C6"))
    );
    assert!(at("u-9")["referrer"].is_null() && at("u-9")["coupon"].is_null());
    assert_eq!(at("u-6")["age"], 6, "the declared columns keep their types");
    let events = read_with_pyarrow(&env.download_lake("curated/events").await);
    let e2 = row(events["rows"].as_array().unwrap(), "event_id", "e-2");
    assert_eq!(
        (e2["device"].clone(), e2["screen"].clone()),
        (json!("{\"os\":\"ios\"}"), json!("2"))
    );
    // The records table gets the added columns too.
    assert_eq!(env.users().await["u-6"]["coupon"].as_s().unwrap(), "C6");
    // One ALTER TABLE per new column set, each column once.
    let mut alters = column_statements(&env).await;
    alters.sort();
    let mut expected = [
        "ALTER TABLE `lakeworker_test`.`users` ADD COLUMNS (`referrer` string)",
        "ALTER TABLE `lakeworker_test`.`events` ADD COLUMNS (`device` string, `screen` string)",
        "ALTER TABLE `lakeworker_test`.`users` ADD COLUMNS (`coupon` string)",
    ]
    .map(|s| s.replace("lakeworker_test", &env.catalog().database));
    expected.sort();
    assert_eq!(alters, expected, "{}", worker.log());

    // `status --dataset` lists them, with when and from which file.
    let out = env.cli(&["status", "--config", env.config_str(), "--dataset", "users"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("on_new_columns = \"add\""), "{text}");
    let referrer = text
        .lines()
        .find(|l| l.trim_start().starts_with("referrer added "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        referrer.ends_with(&format!("from s3://{}/users/a.csv", env.landing)),
        "{text}"
    );
    assert!(text.contains("coupon added 20"), "{text}");
    assert!(!text.contains("not in the catalog"), "{text}");

    // A restart creates the table with them and adds nothing again.
    worker.stop_for_restart();
    let worker = env.start_worker();
    env.put(
        "users/d.csv",
        &users_file(10..11, &[("referrer", "x-")], false),
    )
    .await;
    env.wait_status(&["users/d.csv"], Status::Done, WAIT, &worker)
        .await;
    assert_eq!(column_statements(&env).await.len(), 3, "{}", worker.log());
    let creates = env.athena_statements(&env.catalog().workgroup).await;
    let last_create = creates
        .iter()
        .rfind(|s| s.contains("TABLE IF NOT EXISTS") && s.contains("`users`"))
        .unwrap();
    assert!(
        last_create.contains("`referrer` string,\n  `coupon` string\n)"),
        "{last_create}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_arriving_at_two_workers_at_once_is_added_once_to_iceberg_and_hive_tables() {
    let env = adding(
        TestEnv::builder("addrace")
            .catalog()
            .set("datasets.users.table_format", "iceberg")
            .set("iceberg.commit_interval", "1s"),
    )
    .start()
    .await;
    // Every add of a column waits 3 s on its way to DynamoDB: the files that arrive
    // meanwhile, at either worker, all find the column new and race to add it.
    let hold = (b"added_columns".as_slice(), Duration::from_secs(3));
    let proxies = [
        common::proxy::Proxy::start(&endpoint()).await,
        common::proxy::Proxy::start(&endpoint()).await,
    ];
    let workers: Vec<Worker> = proxies
        .iter()
        .map(|proxy| {
            proxy.delay_requests_containing(Some(hold));
            env.worker().via(proxy).start()
        })
        .collect();
    for worker in &workers {
        wait_for("the worker to poll", WAIT, || async {
            !worker.events("worker started").is_empty()
        })
        .await;
    }
    let mut keys = Vec::new();
    for n in 0..4 {
        let users = format!("users/race-{n}.csv");
        let events = format!("events/2024/race-{n}.jsonl");
        env.put(
            &users,
            &users_file(n * 10..n * 10 + 3, &[("referrer", "r-")], false),
        )
        .await;
        env.put(&events, &events_file(n * 10..n * 10 + 3)).await;
        keys.extend([users, events]);
    }
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    env.wait_status(&keys, Status::Done, WAIT, &workers[0])
        .await;

    let logs = || {
        workers
            .iter()
            .map(Worker::log)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let raced: Vec<usize> = workers
        .iter()
        .map(|w| {
            w.events("the dataset added the file's new columns; converting it again with them")
                .len()
        })
        .collect();
    assert!(
        raced.iter().all(|n| *n >= 1) && raced.iter().sum::<usize>() >= 4,
        "both workers must have converted files that found the columns new: {raced:?}\n{}",
        logs()
    );

    // One list in the ledger, each column once.
    use lakeworker::ports::Ledger;
    let ledger = lakeworker::aws::ledger::DynamoLedger::new(
        env.clients.dynamodb.clone(),
        env.ledger_table.clone(),
    );
    let names = |dataset: &'static str| {
        let ledger = ledger.clone();
        async move {
            let columns = ledger.dataset_columns(dataset).await.unwrap();
            columns.names().map(str::to_owned).collect::<Vec<_>>()
        }
    };
    assert_eq!(names("users").await, ["referrer"]);
    assert_eq!(names("events").await, ["device", "screen"]);

    // Hive: one ALTER TABLE. Iceberg: one schema update.
    wait_for("the catalog to add the columns", WAIT, || async {
        !column_statements(&env).await.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let alters = column_statements(&env).await;
    assert_eq!(alters.len(), 1, "{alters:#?}\n{}", logs());
    assert!(alters[0].ends_with("`events` ADD COLUMNS (`device` string, `screen` string)"));
    let users = env.read_iceberg("users");
    assert_eq!(users["schema"]["referrer"], "string", "{users:#}");
    assert_eq!(users["schemas"], 2, "one schema update: {users:#}");
    let rows = users["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 12);
    assert!(
        rows.iter()
            .all(|r| r["referrer"].as_str().is_some_and(|t| t.starts_with("r-"))),
        "{rows:#?}"
    );
    let events = read_with_pyarrow(&env.download_lake("curated/events").await);
    let rows = events["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 12);
    assert!(
        rows.iter().all(|r| r["device"] == "{\"os\":\"ios\"}"),
        "{rows:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_grows_iceberg_tables_by_schema_updates_that_survive_a_restart() {
    let env = adding(
        TestEnv::builder("addice")
            .catalog()
            .set("lake.table_format", "iceberg")
            .set("iceberg.commit_interval", "2s"),
    )
    .start()
    .await;
    let worker = env.start_worker();
    // A file with a new column and one without, at once: their parts may share a batch.
    env.put(
        "users/a.csv",
        &users_file(0..3, &[("referrer", "ad-")], false),
    )
    .await;
    env.put("users/plain.csv", &users_file(3..5, &[], false))
        .await;
    env.put("events/2024/a.jsonl", &events_file(0..3)).await;
    env.wait_status(
        &["users/a.csv", "users/plain.csv", "events/2024/a.jsonl"],
        Status::Done,
        WAIT,
        &worker,
    )
    .await;
    env.put("users/b.csv", &users_file(5..7, &[("coupon", "C")], true))
        .await;
    env.wait_status(&["users/b.csv"], Status::Done, WAIT, &worker)
        .await;

    // A restart opens the tables with the columns the ledger lists, and goes on.
    worker.stop_for_restart();
    let worker = env.start_worker();
    env.put(
        "users/c.csv",
        &users_file(7..8, &[("referrer", "x-")], false),
    )
    .await;
    env.wait_status(&["users/c.csv"], Status::Done, WAIT, &worker)
        .await;

    let users = env.read_iceberg("users");
    assert_eq!(users["schemas"], 3, "two schema updates: {users:#}");
    let ids = &users["field_ids"];
    assert!(
        ids["_ingested_at"].as_u64() < ids["referrer"].as_u64()
            && ids["referrer"].as_u64() < ids["coupon"].as_u64(),
        "added columns take the next ids, in order: {ids}"
    );
    let rows = users["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 8, "{}", worker.log());
    let at = |id: &str| row(rows, "user_id", id).clone();
    assert_eq!(at("u-1")["referrer"], "ad-1");
    assert!(at("u-1")["coupon"].is_null());
    assert!(at("u-4")["referrer"].is_null());
    assert_eq!(at("u-6")["coupon"], "C6");
    assert_eq!(at("u-7")["referrer"], "x-7");
    let events = env.read_iceberg("events");
    let e1 = row(events["rows"].as_array().unwrap(), "event_id", "e-1");
    assert_eq!(e1["device"], "{\"os\":\"ios\"}");
    assert_eq!(e1["screen"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_the_catalog_missed_is_added_at_the_next_start() {
    let env = adding(TestEnv::builder("addcrash").catalog().quiet())
        .start()
        .await;
    // Athena never answers the first worker; everything else does.
    let proxy = common::proxy::Proxy::start(&endpoint()).await;
    proxy.silence_requests_containing(Some(b"AmazonAthena."));
    let first = env.worker().via(&proxy).start();
    env.put_and_announce(
        "users/a.csv",
        &users_file(0..3, &[("referrer", "ad-")], false),
    )
    .await;
    env.wait_status(&["users/a.csv"], Status::Done, WAIT, &first)
        .await;
    let status = || {
        let out = env.cli(&["status", "--config", env.config_str(), "--dataset", "users"]);
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let before = status();
    assert!(
        before.contains("referrer added") && before.contains("(not in the catalog yet)"),
        "{before}"
    );
    assert!(column_statements(&env).await.is_empty());
    first.kill();

    let _second = env.start_worker();
    wait_for("the column to reach the catalog", WAIT, || async {
        !column_statements(&env).await.is_empty()
    })
    .await;
    assert_eq!(
        column_statements(&env).await,
        [format!(
            "ALTER TABLE `{}`.`users` ADD COLUMNS (`referrer` string)",
            env.catalog().database
        )]
    );
    wait_for("the ledger to count it in the catalog", WAIT, || async {
        !status().contains("not in the catalog")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iceberg_columns_keep_their_ids_when_rescue_and_add_are_switched() {
    let env = adding(
        TestEnv::builder("addswitch")
            .catalog()
            .set("lake.table_format", "iceberg")
            .set("iceberg.commit_interval", "1s")
            .short_polls(),
    )
    .start()
    .await;
    let reconfigure = |changes: &[(&str, &str)]| {
        let mut config = ConfigFile::parse(&std::fs::read_to_string(&env.config).unwrap());
        for (key, value) in changes {
            config.set(key, *value);
        }
        config.write(&env.config);
    };
    let mut worker = env.start_worker();
    let load = |key: &'static str, body: Vec<u8>, worker: Worker| {
        let env = &env;
        async move {
            env.put(key, &body).await;
            env.wait_status(&[key], Status::Done, WAIT, &worker).await;
            worker
        }
    };
    // 1. `add`: referrer becomes a column.
    worker = load(
        "users/1.csv",
        users_file(0..2, &[("referrer", "a-")], false),
        worker,
    )
    .await;
    // 2. Bad cells rescued too: `_rescued` is new, so it takes the next id.
    worker.stop_for_restart();
    reconfigure(&[("datasets.users.on_invalid", "rescue")]);
    worker = env.start_worker();
    let mut bad = users_file(2..4, &[("referrer", "b-")], false);
    bad.extend_from_slice(b"u-9,v@x.io,old,pro,yes,2024/05/01,b-9\n");
    worker = load("users/2.csv", bad, worker).await;
    // 3. New columns rescued instead of added: the table keeps referrer (null from now).
    worker.stop_for_restart();
    reconfigure(&[("datasets.users.on_new_columns", "rescue")]);
    worker = env.start_worker();
    worker = load(
        "users/3.csv",
        users_file(4..5, &[("coupon", "C")], false),
        worker,
    )
    .await;
    // 4. Back to `add` alone: no `_rescued` in new files, coupon added after it.
    worker.stop_for_restart();
    reconfigure(&[
        ("datasets.users.on_new_columns", "add"),
        ("datasets.users.on_invalid", "quarantine_rows"),
    ]);
    worker = env.start_worker();
    worker = load(
        "users/4.csv",
        users_file(5..6, &[("coupon", "D")], true),
        worker,
    )
    .await;
    let coupon_id = env.read_iceberg("users")["field_ids"]["coupon"].clone();
    // 5. The operator declares coupon, and a new optional int column: coupon keeps its
    //    id and data, score is the table's next field.
    worker.stop_for_restart();
    let mut config = ConfigFile::parse(&std::fs::read_to_string(&env.config).unwrap());
    let users = config
        .datasets_mut()
        .find(|d| d["name"] == "users")
        .expect("users");
    let columns = users["columns"].as_array_mut().unwrap();
    columns.push(json!({"name": "coupon", "type": "string"}));
    columns.push(json!({"name": "score", "type": "int"}));
    config.write(&env.config);
    worker = env.start_worker();
    let extra = [("coupon", "E"), ("score", "")];
    let worker = load("users/5.csv", users_file(6..7, &extra, false), worker).await;

    let users = env.read_iceberg("users");
    assert_eq!(users["field_ids"]["coupon"], coupon_id, "{users:#}");
    assert_eq!(users["schema"]["score"], "long", "{users:#}");
    assert!(users["field_ids"]["score"].as_i64() > coupon_id.as_i64());
    let id = |name: &str| {
        users["field_ids"][name]
            .as_i64()
            .unwrap_or_else(|| panic!("{name}: {users:#}"))
    };
    assert!(id("_ingested_at") < id("referrer"), "{users:#}");
    assert_eq!(id("_rescued"), id("referrer") + 1, "{users:#}");
    assert_eq!(id("coupon"), id("_rescued") + 1, "{users:#}");
    let rows = users["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 8, "{rows:#?}\n{}", worker.log());
    let u6 = row(rows, "user_id", "u-6");
    assert_eq!(
        (u6["coupon"].clone(), u6["score"].clone()),
        (json!("E6"), json!(6))
    );
    let at = |id: &str| row(rows, "user_id", id).clone();
    assert_eq!(at("u-1")["referrer"], "a-1");
    assert!(at("u-1")["_rescued"].is_null());
    assert_eq!(at("u-3")["referrer"], "b-3");
    let u9 = at("u-9");
    assert!(u9["age"].is_null());
    assert_eq!(
        rescued(&u9),
        json!({"age": "old", "_rules": {"age": "type"}})
    );
    let u4 = at("u-4");
    assert!(u4["referrer"].is_null() && u4["coupon"].is_null(), "{u4}");
    assert_eq!(rescued(&u4), json!({"coupon": "C4"}));
    let u5 = at("u-5");
    assert_eq!(u5["coupon"], "D5");
    assert!(u5["_rescued"].is_null() && u5["referrer"].is_null(), "{u5}");
}

/// `keep`, `reject` and `ignore` through the worker, for one table format: users (CSV)
/// keep `referrer` in `_extra`, events (JSON lines) refuse a line with an undeclared key
/// as a bad row, orders (CSV) drop their extra column.
async fn keep_reject_ignore(env: &TestEnv, iceberg: bool) {
    let worker = env.start_worker();
    env.put(
        "users/k.csv",
        &users_file(0..3, &[("referrer", "ad-")], false),
    )
    .await;
    let mut events = String::new();
    for n in 0..19 {
        events.push_str(&format!(
            "{{\"event_id\": \"e-{n}\", \"user_id\": \"u-1\", \"at\": \"2024-05-01T08:00:00Z\"}}\n"
        ));
    }
    events.push_str("{\"event_id\": \"e-99\", \"user_id\": \"u-1\", \"at\": \"2024-05-01T08:00:00Z\", \"device\": \"ios\"}\n");
    env.put("events/2024/r.jsonl", events.as_bytes()).await;
    let orders =
        "order_id,user_id,total,paid,ordered_at,coupon\no-1,u-1,1.5,true,2024-05-01T00:00:00Z,C1\n";
    env.put("orders/i.csv", orders.as_bytes()).await;
    let keys = ["users/k.csv", "events/2024/r.jsonl", "orders/i.csv"];
    env.wait_status(&keys, Status::Done, WAIT, &worker).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let read = |table: &'static str| async move {
        if iceberg {
            env.read_iceberg(table)
        } else {
            read_with_pyarrow(&env.download_lake(&format!("curated/{table}")).await)
        }
    };
    let users = read("users").await;
    let u1 = row(users["rows"].as_array().unwrap(), "user_id", "u-1");
    let extra: Value = serde_json::from_str(u1["_extra"].as_str().expect("_extra")).unwrap();
    assert_eq!(extra, json!({"referrer": "ad-1"}));
    assert!(users["schema"].get("referrer").is_none(), "{users:#}");

    let events = read("events").await;
    let rows = events["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 19);
    assert!(rows.iter().all(|r| r["event_id"] != "e-99"));
    let record = env.ledger("events/2024/r.jsonl").await.remove(0);
    assert_eq!(
        (record.rows_written, record.rows_rejected),
        (Some(19), Some(1))
    );

    let orders = read("orders").await;
    assert!(orders["schema"].get("coupon").is_none(), "{orders:#}");
    assert_eq!(orders["rows"].as_array().unwrap().len(), 1);
    let warned = worker.events("the file has columns the dataset does not declare; on_new_columns = \"ignore\" dropped them");
    assert!(
        warned.iter().any(|e| e["fields"]["columns"] == "coupon"),
        "{}",
        worker.log()
    );
}

fn keep_reject_ignore_env(builder: TestEnvBuilder) -> TestEnvBuilder {
    builder
        .set("datasets.users.on_new_columns", "keep")
        .set("datasets.events.on_new_columns", "reject")
        .set("datasets.orders.on_new_columns", "ignore")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_reject_and_ignore_in_hive_tables() {
    let env = keep_reject_ignore_env(TestEnv::builder("keephive"))
        .start()
        .await;
    keep_reject_ignore(&env, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_reject_and_ignore_in_iceberg_tables() {
    let env = keep_reject_ignore_env(
        TestEnv::builder("keepice")
            .catalog()
            .set("lake.table_format", "iceberg")
            .set("iceberg.commit_interval", "1s"),
    )
    .start()
    .await;
    keep_reject_ignore(&env, true).await;
}
