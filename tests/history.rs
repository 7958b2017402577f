//! The load history table through the worker: after good, partly bad and rejected files,
//! every settled object has its row in `lakeworker_loads` (read back with pyarrow) and
//! the row agrees with the ledger; the table is registered in the catalog.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use lakeworker::domain::ledger::Status;
use serde_json::Value;

/// The landing files and the status each must end with.
const FILES: [(&str, &str, Status); 4] = [
    ("users/good.csv", "users/signups-2024-05.csv", Status::Done),
    (
        "users/typos.csv",
        "users/signups-with-typos.csv",
        Status::Done,
    ),
    (
        "orders/wrong.csv",
        "orders/orders-wrong-export.csv",
        Status::Rejected,
    ),
    (
        "events/2024/clicks.jsonl",
        "events/2024/clicks.jsonl",
        Status::Done,
    ),
];

/// The history rows by source URI, once there are `count` of them (or fails after WAIT).
async fn history_rows(env: &TestEnv, count: usize) -> BTreeMap<String, Value> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let keys = env.lake_keys().await;
        let mut rows = BTreeMap::new();
        if keys
            .iter()
            .any(|k| k.starts_with("curated/lakeworker_loads/"))
        {
            let read = read_with_pyarrow(&env.download_lake("curated/lakeworker_loads").await);
            for row in read["rows"].as_array().unwrap() {
                let uri = row["source_uri"].as_str().unwrap().to_owned();
                assert!(
                    rows.insert(uri, row.clone()).is_none(),
                    "a row twice: {row}"
                );
            }
        }
        if rows.len() >= count {
            return rows;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {count} history rows after {WAIT:?}: {rows:#?}",
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_settled_object_has_a_history_row_that_matches_the_ledger() {
    let env = TestEnv::builder("history")
        .catalog()
        .set("lake.history", true)
        .set("lake.history_interval", "1s")
        .short_polls()
        .start()
        .await;
    let worker = env.start_worker();
    for (key, example_path, _) in FILES {
        env.put(key, &example(example_path)).await;
    }
    for (key, _, status) in FILES {
        env.wait_status(&[key], status, WAIT, &worker).await;
    }
    let rows = history_rows(&env, FILES.len()).await;
    assert_eq!(rows.len(), FILES.len(), "one row each: {rows:#?}");

    for (key, _, status) in FILES {
        let record = env.ledger(key).await.remove(0);
        let row = &rows[&record.uri];
        let n = |name: &str| row[name].as_u64();
        assert_eq!(row["status"], status.as_str(), "{key}");
        assert_eq!(row["source_version"], record.version.as_str(), "{key}");
        assert_eq!(
            (
                n("rows_in"),
                n("rows_written"),
                n("rows_quarantined"),
                n("attempt")
            ),
            (
                record.rows_in,
                record.rows_written.or(Some(0)),
                record.rows_rejected,
                Some(record.attempts)
            ),
            "{key}: {row:#}"
        );
        let outputs: Vec<String> = serde_json::from_str(row["outputs"].as_str().unwrap()).unwrap();
        let mut expected = record.outputs.clone();
        expected.sort();
        let mut outputs = outputs;
        outputs.sort();
        assert_eq!(outputs, expected, "{key}");
        assert!(row["worker_id"].as_str().is_some_and(|w| !w.is_empty()));
        assert!(
            row["started_at"].as_str() <= row["finished_at"].as_str(),
            "{row}"
        );
        assert_eq!(row["dataset"], record.dataset.clone().unwrap().as_str());
    }
    let typos = &rows[&format!("s3://{}/users/typos.csv", env.landing)];
    assert!(
        typos["first_error"]
            .as_str()
            .is_some_and(|e| e.contains("\"thirty\" is not a 64-bit integer")),
        "{typos}"
    );
    let wrong = &rows[&format!("s3://{}/orders/wrong.csv", env.landing)];
    assert!(
        wrong["first_error"]
            .as_str()
            .is_some_and(|e| e.contains("lacks required column")),
        "{wrong}"
    );
    assert!(rows[&format!("s3://{}/users/good.csv", env.landing)]["first_error"].is_null());

    // Partitioned by the day each attempt finished, and registered in the catalog.
    let keys = env.lake_keys().await;
    let today = chrono::Utc::now().date_naive();
    assert!(
        keys.iter()
            .filter(|k| k.starts_with("curated/lakeworker_loads/"))
            .all(|k| k.starts_with(&format!(
                "curated/lakeworker_loads/finished_at_date={today}/"
            ))),
        "{keys:#?}"
    );
    let workgroup = env.catalog().workgroup.clone();
    let database = env.catalog().database.clone();
    wait_for("the history partition", WAIT, || async {
        env.athena_statements(&workgroup).await.iter().any(|s| {
            s.starts_with("ALTER TABLE") && s.contains(&format!("`{database}`.`lakeworker_loads`"))
        })
    })
    .await;
    let sent = env.athena_statements(&workgroup).await;
    assert!(
        sent.iter().any(|s| s.starts_with("CREATE EXTERNAL TABLE")
            && s.contains(&format!("`{database}`.`lakeworker_loads`"))),
        "{sent:#?}"
    );
    // Few files: the flushes, not one per object (four objects settled within seconds).
    let history_files = keys
        .iter()
        .filter(|k| k.starts_with("curated/lakeworker_loads/"))
        .count();
    assert!(history_files <= FILES.len(), "{history_files}");

    // A graceful stop flushes what is pending: with an interval that never comes, the
    // row of an object settled before the stop is written at the stop.
    worker.stop_for_restart();
    let worker = env
        .worker()
        .env("LAKEWORKER__LAKE__HISTORY_INTERVAL", "1h")
        .start();
    env.put("users/late.csv", &example("users/signups-2024-05.csv"))
        .await;
    env.wait_status(&["users/late.csv"], Status::Done, WAIT, &worker)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let late = format!("s3://{}/users/late.csv", env.landing);
    assert!(!history_rows(&env, FILES.len()).await.contains_key(&late));
    let status = worker.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    let rows = history_rows(&env, FILES.len() + 1).await;
    assert!(rows.contains_key(&late));
}
