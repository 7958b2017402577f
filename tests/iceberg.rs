//! Iceberg tables against the emulator (moto's Glue, patched to honour `VersionId` like
//! Glue: tests/moto_server.py), read back by pyiceberg (tests/pyiceberg_read.py) as well as
//! by our own Parquet reader: every dataset kind, 500 small files, two workers on one
//! table, `kill -9` at three points of a commit, duplicates and a settings change.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use common::*;
use lakeworker::domain::ledger::Status;
use serde_json::Value;

/// An environment whose datasets are all Iceberg tables, committed every `interval`.
fn iceberg(tag: &str, interval: &str) -> TestEnvBuilder {
    TestEnv::builder(tag)
        .catalog()
        .set("lake.table_format", "iceberg")
        .set("iceberg.commit_interval", interval)
        // Jobs wait for their commit while holding a slot: room for a batch's worth.
        .set("queue.max_in_flight", 256)
        .set("queue.visibility_timeout_seconds", 10)
        .set("iceberg.commit_lease", "10s")
}

/// The partition values of the table's data files under `field`, as dates (days since
/// the epoch in the manifests; pyiceberg may hand them over as dates already).
fn partition_dates(table: &Value, field: &str) -> BTreeSet<String> {
    table["data_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| match &file["partition"][field] {
            Value::String(date) => date.clone(),
            value => {
                let days = value.as_i64().unwrap_or_else(|| panic!("{field}: {value}"));
                let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
                (epoch + chrono::Duration::days(days)).to_string()
            }
        })
        .collect()
}

fn rows(table: &Value) -> &Vec<Value> {
    table["rows"].as_array().expect("rows")
}

fn snapshots(table: &Value) -> &Vec<Value> {
    table["snapshots"].as_array().expect("snapshots")
}

/// The values of `column` in the table's rows, counted.
fn counted(table: &Value, column: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for row in rows(table) {
        *counts.entry(row[column].to_string()).or_default() += 1;
    }
    counts
}

/// Waits until each key's newest ledger record is done; else fails with `worker`'s log.
async fn wait_done(env: &TestEnv, keys: &[String], within: Duration, worker: &Worker) {
    env.wait_status(keys, Status::Done, within, worker).await;
}

/// Our own reader over the table's live data files: rows per file path.
async fn rows_by_our_reader(env: &TestEnv, table: &Value) -> u64 {
    let mut total = 0;
    for file in table["data_files"].as_array().expect("data files") {
        let key = key_of(file["path"].as_str().expect("path"));
        let batches = read_parquet(env.lake_object(&key).await);
        let n: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(n as u64, file["record_count"].as_u64().unwrap(), "{key}");
        total += n as u64;
    }
    total
}

/// A small orders file: `rows` orders `o-{file}-{n}`, half on 2024-05-01, half on the 2nd.
fn small_orders(file: usize, rows: usize) -> Vec<u8> {
    let mut csv = String::from("order_id,user_id,total,paid,ordered_at\n");
    for n in 0..rows {
        let day = 1 + (file + n) % 2;
        csv.push_str(&format!(
            "o-{file}-{n},u-{n},{}.25,true,2024-05-0{day}T{:02}:00:00Z\n",
            n + 1,
            n % 24
        ));
    }
    csv.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dataset_kind_is_a_table_pyiceberg_reads_exactly() {
    let env = iceberg("icekinds", "1s").start().await;
    let worker = env.start_worker();
    let keys = [
        "users/a.csv".to_owned(),
        "events/2024/clicks.jsonl".to_owned(),
        "orders/may.csv".to_owned(),
    ];
    let users_etag = env
        .put(&keys[0], &example("users/signups-2024-05.csv"))
        .await;
    env.put(&keys[1], &example("events/2024/clicks.jsonl"))
        .await;
    env.put(&keys[2], &example("orders/orders-2024-05.csv"))
        .await;
    wait_done(&env, &keys, WAIT, &worker).await;
    // A duplicate delivery of a committed file: nothing new.
    let event = s3_event(
        &env.landing,
        &keys[0],
        &users_etag,
        "2024-06-01T00:00:00.000Z",
    );
    env.send(&event.body()).await;
    env.wait_drained().await;
    wait_for("the duplicate to be answered", WAIT, || async {
        !worker.events("already processed; nothing to do").is_empty()
    })
    .await;

    for (key, table) in keys.iter().zip(["users", "events", "orders"]) {
        let written = env.ledger(key).await[0].rows_written.expect("rows written");
        let read = env.read_iceberg(table);
        assert_eq!(rows(&read).len() as u64, written, "{table}: {read:#}");
        assert_eq!(rows_by_our_reader(&env, &read).await, written, "{table}");
        // Field ids are 1.. in column order, the lineage columns included.
        let ids: Vec<i64> = read["field_ids"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            (1..=ids.len() as i64).collect::<Vec<_>>(),
            "{table}"
        );
        assert_eq!(read["schema"]["_source"], "string", "{table}");
        assert_eq!(read["schema"]["_ingested_at"], "timestamp", "{table}");
        let spec = &read["partition_spec"][0];
        for file in read["data_files"].as_array().unwrap() {
            assert!(
                file["path"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("/curated/{table}/data/")),
                "{file}"
            );
        }
        match table {
            "users" => {
                assert_eq!(read["schema"]["age"], "long");
                assert_eq!(read["schema"]["newsletter"], "boolean");
                assert_eq!(read["schema"]["signup_date"], "date");
                assert_eq!(spec["source"], "signup_date");
                assert_eq!(spec["transform"], "identity");
                let ada = rows(&read)
                    .iter()
                    .find(|r| r["user_id"] == "u-001")
                    .expect("u-001");
                assert_eq!(ada["age"], 36);
                assert_eq!(ada["newsletter"], true);
                assert_eq!(ada["signup_date"], "2024-05-01");
                // The duplicate added no snapshot.
                assert_eq!(snapshots(&read).len(), 1);
                // The records table has every user (last wins per key).
                assert_eq!(env.users().await.len(), counted(&read, "user_id").len());
                // Each data file holds one partition, whose value its rows carry.
                let dates: BTreeSet<String> = rows(&read)
                    .iter()
                    .map(|r| r["signup_date"].as_str().unwrap().to_owned())
                    .collect();
                assert_eq!(read["data_files"].as_array().unwrap().len(), dates.len());
                assert_eq!(partition_dates(&read, "signup_date"), dates);
            }
            "events" => {
                assert_eq!(read["schema"]["at"], "timestamp");
                assert_eq!(read["schema"]["amount"], "double");
                assert_eq!(read["schema"]["ingest_date"], "date");
                assert_eq!(spec["source"], "ingest_date");
                assert_eq!(spec["transform"], "identity");
                assert!(rows(&read).iter().all(|r| r["ingest_date"].is_string()));
            }
            "orders" => {
                assert_eq!(read["schema"]["ordered_at"], "timestamp");
                assert_eq!(spec["source"], "ordered_at");
                assert_eq!(spec["transform"], "day");
                assert_eq!(spec["name"], "ordered_at_date");
                let o1 = rows(&read)
                    .iter()
                    .find(|r| r["order_id"] == "o-1")
                    .expect("o-1");
                assert_eq!(o1["total"], 120.0);
                assert!(o1["ordered_at"]
                    .as_str()
                    .unwrap()
                    .starts_with("2024-05-01 23:59:59"));
                // day(ordered_at) of each file is the UTC date of its rows.
                let days: BTreeSet<String> = rows(&read)
                    .iter()
                    .map(|r| r["ordered_at"].as_str().unwrap()[..10].to_owned())
                    .collect();
                assert_eq!(partition_dates(&read, "ordered_at_date"), days);
            }
            _ => unreachable!(),
        }
        // One append snapshot per commit, each naming its commit id.
        for snapshot in snapshots(&read) {
            assert_eq!(snapshot["operation"], "append");
            assert!(
                snapshot["summary"]["lakeworker.commit-id"].is_string(),
                "{snapshot}"
            );
        }
    }

    // `status --table` shows the snapshot and what the table holds.
    let status = env.cli(&["status", "--config", env.config_str(), "--table", "orders"]);
    let text = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(status.status.success(), "{text}");
    let orders = env.read_iceberg("orders");
    let (orders_rows, orders_files) = (
        rows(&orders).len(),
        orders["data_files"].as_array().unwrap().len(),
    );
    assert!(
        text.contains(&format!(
            ": {orders_rows} rows in {orders_files} data files"
        )),
        "{text}"
    );
    assert!(text.contains("Append: +"), "{text}");
    let unknown = env.cli(&["status", "--config", env.config_str(), "--table", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));

    // A reprocess of a committed object appends nothing.
    let users_rows = rows(&env.read_iceberg("users")).len();
    let target = format!("s3://{}/users/", env.landing);
    let again = env.cli(&[
        "backfill",
        "--config",
        env.config_str(),
        &target,
        "--reprocess",
    ]);
    assert!(again.status.success());
    wait_for("the reprocess to be answered", WAIT, || async {
        env.ledger(&keys[0]).await[0].attempts >= 2
            && env.ledger(&keys[0]).await[0].status == Some(Status::Done)
    })
    .await;
    env.wait_drained().await;
    let users = env.read_iceberg("users");
    assert_eq!(snapshots(&users).len(), 1, "{users:#}");
    assert_eq!(rows(&users).len(), users_rows);
    drop(worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_that_differs_from_the_dataset_stops_the_worker_with_the_column() {
    let env = iceberg("iceschema", "1s").start().await;
    let first = env.start_worker();
    wait_for("the tables", WAIT, || async {
        first.events("created the Iceberg table").len() == 3
    })
    .await;
    first.terminate(WAIT);
    // The same tables, the dataset's `age` now a string.
    let mut config = ConfigFile::parse(&std::fs::read_to_string(&env.config).unwrap());
    config.set("datasets.users.columns.age.type", "string");
    config.remove("datasets.users.columns.age.min");
    config.remove("datasets.users.columns.age.max");
    let path = env.dir.path().join("changed.toml");
    config.write(&path);
    let out = run_bounded(
        Command::new(BIN)
            .args(["run", "--config", path.to_str().unwrap()])
            .envs(env.env_pairs()),
        WAIT,
    );
    assert!(!out.status.success());
    let log =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("column age is long in the table, string here"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_drops_old_snapshots_and_keeps_every_row() {
    let env = iceberg("iceexpire", "1s").start().await;
    let worker = env.start_worker();
    let mut keys = put_orders(&env, "first", 2, 5).await;
    wait_done(&env, &keys, WAIT, &worker).await;
    keys.extend(put_orders(&env, "second", 2, 5).await);
    wait_done(&env, &keys, WAIT, &worker).await;
    let before = env.read_iceberg("orders");
    assert!(snapshots(&before).len() >= 2, "{before:#}");
    // What the schedule runs, with every snapshot but the current one old enough.
    let catalog = lakeworker::table::iceberg::catalog::IcebergCatalog::connect(
        &lakeworker::config::AwsSettings {
            region: REGION.into(),
            endpoint_url: Some(endpoint()),
            timeouts: Default::default(),
        },
        &env.catalog().database,
        format!("s3://{}/curated", env.lake),
        Duration::from_secs(30),
    )
    .await
    .expect("catalog");
    let table = catalog.load("orders").await.expect("table");
    let now = chrono::Utc::now().timestamp_millis() + 1;
    let expired = catalog.expire(&table, now).await.expect("expire");
    assert_eq!(expired, snapshots(&before).len() - 1);
    let after = env.read_iceberg("orders");
    assert_eq!(snapshots(&after).len(), 1);
    assert_eq!(rows(&after).len(), rows(&before).len());
    assert_eq!(rows(&after).len(), keys.len() * 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_small_files_make_a_handful_of_data_files_and_snapshots() {
    let env = iceberg("ice500", "5s").start().await;
    let _worker = env.start_worker();
    let keys = put_orders(&env, "small", 500, 4).await;
    let read = wait_every_order_once(&env, 500 * 4, Duration::from_secs(240)).await;
    let snapshot_count = snapshots(&read).len();
    let data_files = read["data_files"].as_array().unwrap().len();
    // The bound: a snapshot per commit interval while files arrive, and per snapshot one
    // data file per partition (two days here).
    assert!(snapshot_count <= 12, "{snapshot_count} snapshots");
    assert!(data_files <= 2 * snapshot_count, "{data_files} data files");
    println!("500 small files: {snapshot_count} snapshots, {data_files} data files");
    // Every object is settled, its message deleted.
    for key in keys.iter().step_by(50) {
        assert_eq!(env.ledger(key).await[0].status, Some(Status::Done), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_one_table_every_row_once_no_snapshot_lost() {
    let env = iceberg("icetwo", "1s").start().await;
    let a = env.start_worker();
    let b = env.start_worker();
    put_orders(&env, "two", 80, 3).await;
    let expected = 80 * 3;
    let read = wait_every_order_once(&env, expected, Duration::from_secs(180)).await;
    // No lost snapshot: one chain, each commit id once, and the records they added sum
    // to the rows.
    let snaps = snapshots(&read);
    for pair in snaps.windows(2) {
        assert_eq!(pair[1]["parent_id"], pair[0]["snapshot_id"], "{snaps:#?}");
    }
    let commit_ids: BTreeSet<&str> = snaps
        .iter()
        .map(|s| s["summary"]["lakeworker.commit-id"].as_str().unwrap())
        .collect();
    assert_eq!(commit_ids.len(), snaps.len());
    let added: u64 = snaps
        .iter()
        .map(|s| {
            s["summary"]["added-records"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(added, expected as u64);
    // Both workers committed to the table.
    for worker in [&a, &b] {
        assert!(
            !worker.events("Iceberg batch committed").is_empty(),
            "{}",
            worker.log()
        );
    }
}

/// Puts `files` orders files of `rows` rows each (`orders/{tag}-NNN.csv`); returns their keys.
async fn put_orders(env: &TestEnv, tag: &str, files: usize, rows: usize) -> Vec<String> {
    let mut keys = Vec::new();
    for file in 0..files {
        let key = format!("orders/{tag}-{file:03}.csv");
        env.put(&key, &small_orders(file, rows)).await;
        keys.push(key);
    }
    keys
}

/// Once the queue is drained: the orders table, holding each of `expected` order ids once.
async fn every_order_once(env: &TestEnv, expected: usize) -> Value {
    env.wait_drained().await;
    let read = env.read_iceberg("orders");
    let ids = counted(&read, "order_id");
    assert_eq!(ids.len(), expected, "{ids:?}");
    assert!(ids.values().all(|n| *n == 1), "a row twice: {ids:?}");
    read
}

/// Waits until the orders table holds `expected` rows, then [`every_order_once`].
async fn wait_every_order_once(env: &TestEnv, expected: usize, within: Duration) -> Value {
    wait_for("every row in the table", within, || async {
        env.try_read_iceberg("orders")
            .is_some_and(|t| rows(&t).len() >= expected)
    })
    .await;
    every_order_once(env, expected).await
}

/// After the restart: every row of the 5-row files `keys` once.
async fn assert_every_row_once(env: &TestEnv, keys: &[String], worker: &Worker) -> Value {
    wait_done(env, keys, Duration::from_secs(120), worker).await;
    every_order_once(env, keys.len() * 5).await
}

/// Commit ids the ledger has for `key`.
async fn joined(env: &TestEnv, key: &str) -> Vec<String> {
    use lakeworker::ports::CommitLog;
    let ledger = lakeworker::aws::ledger::DynamoLedger::new(
        env.clients.dynamodb.clone(),
        env.ledger_table.clone(),
    );
    let record = &env.ledger(key).await[0];
    ledger
        .commit_ids(&lakeworker::domain::ledger::LedgerKey {
            uri: record.uri.clone(),
            version: record.version.clone(),
        })
        .await
        .expect("commit ids")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_during_a_batch_then_restarted_with_other_settings_every_row_once() {
    // A long interval: the batch is open when the worker dies.
    let env = iceberg("icekillbatch", "60s").start().await;
    let first = env.start_worker();
    let keys = put_orders(&env, "batch", 6, 5).await;
    wait_for("every file to join the batch", WAIT, || async {
        for key in &keys {
            if env.ledger(key).await.is_empty() || joined(&env, key).await.is_empty() {
                return false;
            }
        }
        true
    })
    .await;
    first.kill();
    // The next worker writes differently (another codec, a shorter interval).
    let second = env
        .worker()
        .env("LAKEWORKER__LAKE__COMPRESSION", "snappy")
        .env("LAKEWORKER__ICEBERG__COMMIT_INTERVAL", "1s")
        .start();
    let read = assert_every_row_once(&env, &keys, &second).await;
    assert_eq!(snapshots(&read).len(), 1, "the killed batch never landed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_commit_before_the_ledger_settles_every_row_once() {
    let env = iceberg("icekillsettle", "1s")
        .set("lake.raw_prefix", "raw")
        .start()
        .await;
    // The commit lands; the ledger's note of it never gets an answer.
    let proxy = common::proxy::Proxy::start(&endpoint()).await;
    proxy.silence_requests_containing(Some(b":snapshot"));
    let first = env.worker().via(&proxy).start();
    let keys = put_orders(&env, "settle", 4, 5).await;
    wait_for("a snapshot in the table", WAIT, || async {
        env.try_read_iceberg("orders")
            .is_some_and(|t| !snapshots(&t).is_empty())
    })
    .await;
    first.kill();
    for key in &keys {
        assert_ne!(
            env.ledger(key).await[0].status,
            Some(Status::Done),
            "{key} settled"
        );
    }
    let second = env.start_worker();
    let read = assert_every_row_once(&env, &keys, &second).await;
    assert_eq!(snapshots(&read).len(), 1, "recovered, not committed again");
    let recovered = second
        .events("already committed to the table by an earlier attempt")
        .len();
    assert!(recovered >= 1, "{}", second.log());
    // What the first attempt published before its commit stays, and is listed.
    let lake = env.lake_keys().await;
    for key in &keys {
        let outputs = env.ledger(key).await[0].outputs.clone();
        let raw: Vec<&String> = outputs.iter().filter(|o| o.contains("/raw/")).collect();
        assert_eq!(raw.len(), 1, "{key}: {outputs:?}");
        assert!(lake.contains(&key_of(raw[0])), "{} is gone", raw[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_the_glue_commit_is_unanswered_every_row_once() {
    let env = iceberg("icekillglue", "1s").start().await;
    // Glue gets the commit and acts on it; the answer is lost.
    let proxy = common::proxy::Proxy::start(&endpoint()).await;
    proxy.lose_answers_to_requests_containing(Some(b"AWSGlue.UpdateTable"));
    let first = env.worker().via(&proxy).start();
    let keys = put_orders(&env, "glue", 4, 5).await;
    wait_for("the commit to land in Glue", WAIT, || async {
        env.try_read_iceberg("orders")
            .is_some_and(|t| !snapshots(&t).is_empty())
    })
    .await;
    first.kill();
    let second = env.start_worker();
    let read = assert_every_row_once(&env, &keys, &second).await;
    assert_eq!(
        snapshots(&read).len(),
        1,
        "the unanswered commit was not repeated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hive_and_iceberg_datasets_side_by_side_in_one_worker() {
    let env = TestEnv::builder("icemixed")
        .catalog()
        .set("datasets.orders.table_format", "iceberg")
        .set("iceberg.commit_interval", "1s")
        .start()
        .await;
    let worker = env.start_worker();
    let keys = ["users/a.csv".to_owned(), "orders/may.csv".to_owned()];
    env.put(&keys[0], &example("users/signups-2024-05.csv"))
        .await;
    env.put(&keys[1], &example("orders/orders-2024-05.csv"))
        .await;
    wait_done(&env, &keys, WAIT, &worker).await;
    // users: Hive parts under their partition folders.
    let lake = env.lake_keys().await;
    assert!(
        lake.iter()
            .any(|k| k.starts_with("curated/users/signup_date=2024-05-01/part-")),
        "{lake:#?}"
    );
    // orders: an Iceberg table, no Hive parts.
    assert!(!lake
        .iter()
        .any(|k| k.starts_with("curated/orders/ordered_at_date=")));
    let orders = env.read_iceberg("orders");
    let written = env.ledger(&keys[1]).await[0].rows_written.unwrap();
    assert_eq!(rows(&orders).len() as u64, written);
    assert_eq!(snapshots(&orders).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_records_table_that_fails_is_retried_before_the_rows_are_committed() {
    let env = iceberg("icerecords", "1s")
        .set("aws.call_timeout_seconds", 2)
        .start()
        .await;
    // The users table hangs at first; the ledger, S3 and Glue answer.
    let proxy = common::proxy::Proxy::start(&endpoint()).await;
    proxy.silence_requests_containing(Some(b"DynamoDB_20120810.BatchWriteItem"));
    let worker = env.worker().via(&proxy).start();
    let key = "users/a.csv".to_owned();
    env.put(&key, &example("users/signups-2024-05.csv")).await;
    wait_for("the first attempt to fail", WAIT, || async {
        env.ledger(&key).await.first().and_then(|r| r.status) == Some(Status::Failed)
    })
    .await;
    proxy.silence_requests_containing(None);
    wait_done(
        &env,
        std::slice::from_ref(&key),
        Duration::from_secs(90),
        &worker,
    )
    .await;
    let read = env.read_iceberg("users");
    let written = env.ledger(&key).await[0].rows_written.unwrap();
    assert_eq!(rows(&read).len() as u64, written);
    assert_eq!(snapshots(&read).len(), 1);
    assert_eq!(env.users().await.len(), counted(&read, "user_id").len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_waiting_for_a_commit_give_their_in_flight_slot_back() {
    // The default eight slots, 60 files: were every waiting job to keep its slot, a
    // commit could carry at most eight files, so at least eight snapshots.
    let env = iceberg("iceslots", "3s")
        .set("queue.max_in_flight", 8)
        .start()
        .await;
    let worker = env.start_worker();
    let keys = put_orders(&env, "slots", 60, 5).await;
    wait_done(&env, &keys, Duration::from_secs(120), &worker).await;
    let read = env.read_iceberg("orders");
    assert_eq!(rows(&read).len(), 60 * 5);
    let snapshots = snapshots(&read).len();
    assert!(snapshots <= 4, "{snapshots} snapshots for 60 files");
}
