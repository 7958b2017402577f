//! Catalog DDL text and the registrar's batching, caching and retries, with a fake runner.

use std::sync::Mutex;

use super::*;
use crate::config::Settings;
use crate::ports::StoreError;

fn settings() -> Settings {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/worker.toml");
    Settings::load_with_env(&path, Vec::<(String, String)>::new()).unwrap()
}

#[test]
fn tables_have_the_lake_columns_and_a_string_partition() {
    let s = settings();
    let users = s.datasets.by_name("users").unwrap();
    let sql = create_table("lake", users, &s.lake);
    assert!(
        sql.starts_with(
            "CREATE EXTERNAL TABLE IF NOT EXISTS `lake`.`users` (\n  `user_id` string,"
        ),
        "{sql}"
    );
    assert!(sql.contains("  `age` bigint,"), "{sql}");
    assert!(sql.contains("  `newsletter` boolean,"), "{sql}");
    assert!(sql.contains("  `_ingested_at` timestamp\n)"), "{sql}");
    assert!(
        !sql.contains("`signup_date` date"),
        "the date partition lives in the path: {sql}"
    );
    assert!(
        sql.ends_with(
            "PARTITIONED BY (`signup_date` string)\nSTORED AS PARQUET\nLOCATION 's3://lakeworker-lake/curated/users/'"
        ),
        "{sql}"
    );
    let orders = create_table("lake", s.datasets.by_name("orders").unwrap(), &s.lake);
    assert!(orders.contains("  `ordered_at` timestamp,"), "{orders}");
    assert!(
        orders.contains("PARTITIONED BY (`ordered_at_date` string)"),
        "{orders}"
    );
}

#[test]
fn partitions_views_and_quoting() {
    let sql = add_partitions(
        "lake",
        "users",
        "signup_date",
        &[
            (
                "2024-05-01".into(),
                "s3://l/curated/users/signup_date=2024-05-01/".into(),
            ),
            ("it's".into(), "s3://l/x/".into()),
        ],
    );
    assert_eq!(
        sql,
        "ALTER TABLE `lake`.`users` ADD IF NOT EXISTS\n  PARTITION (`signup_date` = '2024-05-01') LOCATION 's3://l/curated/users/signup_date=2024-05-01/'\n  PARTITION (`signup_date` = 'it''s') LOCATION 's3://l/x/'"
    );
    assert_eq!(
        create_view("lake", "pro", "SELECT * FROM users WHERE plan = 'pro';\n"),
        "CREATE OR REPLACE VIEW \"lake\".\"pro\" AS SELECT * FROM users WHERE plan = 'pro'"
    );
    assert_eq!(
        create_database("lake"),
        "CREATE DATABASE IF NOT EXISTS `lake`"
    );
}

/// (pattern, error text, times left).
type Refusal = (&'static str, &'static str, u32);

/// Records statements; fails the first `fail` runs, and runs whose text contains a
/// `refuse` pattern (with its error text, while its count lasts).
#[derive(Clone, Default)]
struct Fake {
    statements: Arc<Mutex<Vec<String>>>,
    fail: Arc<Mutex<u32>>,
    refuse: Arc<Mutex<Vec<Refusal>>>,
}

impl QueryRunner for Fake {
    async fn run(&self, sql: &str, _: Option<&str>) -> Result<(), StoreError> {
        self.statements.lock().unwrap().push(sql.to_owned());
        for (pattern, error, times) in self.refuse.lock().unwrap().iter_mut() {
            if *times > 0 && sql.contains(*pattern) {
                *times -= 1;
                return Err(StoreError::new(
                    "Athena",
                    crate::ports::StoreErrorKind::Rejected,
                    *error,
                ));
            }
        }
        let mut fail = self.fail.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            return Err(StoreError::new(
                "Athena",
                crate::ports::StoreErrorKind::Transient,
                "throttled",
            ));
        }
        Ok(())
    }
}

fn partition(dataset: &str, value: &str) -> NewPartition {
    NewPartition {
        dataset: dataset.into(),
        partition_name: "signup_date".into(),
        value: value.into(),
        location: format!("s3://l/{dataset}/signup_date={value}/"),
    }
}

#[tokio::test(start_paused = true)]
async fn partitions_are_batched_registered_once_and_retried() {
    let s = settings();
    let fake = Fake::default();
    *fake.fail.lock().unwrap() = 1; // CREATE DATABASE fails once, then works
    let catalog = CatalogSettings {
        database: "lake".into(),
        workgroup: "primary".into(),
        output_location: None,
        views: vec![("v".into(), "SELECT 1".into())],
    };
    let shutdown = CancellationToken::new();
    let (partitions, stats, task) = start(
        fake.clone(),
        Arc::new(crate::testing::memory::MemoryLedger::default()),
        catalog,
        s.lake.clone(),
        s.datasets.datasets().to_vec(),
        shutdown.clone(),
    );
    for value in ["2024-05-01", "2024-05-02", "2024-05-01"] {
        partitions.send(partition("users", value));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    partitions.send(partition("users", "2024-05-01")); // cached: no statement
    partitions.send(partition("users", "2024-05-03"));
    tokio::time::sleep(Duration::from_secs(5)).await;
    shutdown.cancel();
    task.await.unwrap();

    let statements = fake.statements.lock().unwrap().clone();
    let kinds: Vec<&str> = statements
        .iter()
        .map(|s| s.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .map(|k| match k.as_str() {
            "CREATE DATABASE" => "database",
            "CREATE EXTERNAL" => "table",
            "CREATE OR" => "view",
            _ => "partitions",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "database",
            "database",
            "table",
            "table",
            "table",
            "view",
            "partitions",
            "partitions"
        ]
    );
    assert_eq!(
        statements[6].matches("PARTITION (").count(),
        2,
        "{}",
        statements[6]
    );
    assert!(statements[7].contains("'2024-05-03'") && !statements[7].contains("'2024-05-01'"));
    assert_eq!(stats.partitions_added.load(Ordering::Relaxed), 3);
    assert_eq!(stats.failures.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn a_failing_catalog_gives_up_counts_and_tries_the_partition_again_later() {
    let s = settings();
    let fake = Fake::default();
    let catalog = CatalogSettings {
        database: "lake".into(),
        workgroup: "primary".into(),
        output_location: None,
        views: vec![],
    };
    let shutdown = CancellationToken::new();
    let (partitions, stats, task) = start(
        fake.clone(),
        Arc::new(crate::testing::memory::MemoryLedger::default()),
        catalog,
        s.lake.clone(),
        vec![],
        shutdown.clone(),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    *fake.fail.lock().unwrap() = TRIES;
    partitions.send(partition("users", "2024-05-01"));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(stats.failures.load(Ordering::Relaxed), 1);
    partitions.send(partition("users", "2024-05-01"));
    tokio::time::sleep(Duration::from_secs(5)).await;
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(
        stats.partitions_added.load(Ordering::Relaxed),
        1,
        "registered on the next write"
    );
}

#[tokio::test(start_paused = true)]
async fn partitions_noted_by_an_earlier_run_are_registered_at_start_and_forgotten() {
    let fake = Fake::default();
    let log = Arc::new(crate::testing::memory::MemoryLedger::default());
    log.note_partitions("lake", &[partition("users", "2024-05-01")])
        .await
        .unwrap();
    log.note_partitions("elsewhere", &[partition("users", "2024-05-09")])
        .await
        .unwrap();
    let (partitions, stats, shutdown, task) = registrar(&fake, &log);
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Registered now: a job writing to it again need not note it.
    assert!(partitions
        .unregistered(&[partition("users", "2024-05-01")])
        .is_empty());
    assert_eq!(
        partitions
            .unregistered(&[partition("users", "2024-05-02")])
            .len(),
        1
    );
    shutdown.cancel();
    task.await.unwrap();
    let statements = fake.statements.lock().unwrap().clone();
    let alters: Vec<&String> = statements
        .iter()
        .filter(|s| s.starts_with("ALTER TABLE"))
        .collect();
    assert_eq!(alters.len(), 1, "{statements:#?}");
    assert!(alters[0].contains("'2024-05-01'") && !alters[0].contains("2024-05-09"));
    assert_eq!(stats.partitions_added.load(Ordering::Relaxed), 1);
    assert!(log
        .pending_partitions("lake", "users")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        log.pending_partitions("elsewhere", "users")
            .await
            .unwrap()
            .len(),
        1,
        "another database's notes are not this registrar's"
    );
}

/// A registrar over the fixture's datasets and `ledger`, with `fake` as Athena and no
/// views.
fn registrar(
    fake: &Fake,
    ledger: &Arc<crate::testing::memory::MemoryLedger>,
) -> (
    Partitions,
    Arc<CatalogStats>,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let s = settings();
    let catalog = CatalogSettings {
        database: "lake".into(),
        workgroup: "primary".into(),
        output_location: None,
        views: vec![],
    };
    let shutdown = CancellationToken::new();
    let (partitions, stats, task) = start(
        fake.clone(),
        ledger.clone(),
        catalog,
        s.lake.clone(),
        s.datasets.datasets().to_vec(),
        shutdown.clone(),
    );
    (partitions, stats, shutdown, task)
}

fn column_statements(fake: &Fake) -> Vec<String> {
    let statements = fake.statements.lock().unwrap();
    statements
        .iter()
        .filter(|s| s.contains(" ADD COLUMNS "))
        .cloned()
        .collect()
}

#[tokio::test(start_paused = true)]
async fn columns_the_table_partly_has_are_added_one_by_one() {
    let fake = Fake::default();
    let duplicate = "FAILED: SemanticException [Error 10036]: Duplicate column name: y";
    *fake.refuse.lock().unwrap() = vec![
        ("(`x` string, `y` string)", duplicate, 1),
        ("(`y` string)", duplicate, 1),
    ];
    let ledger = Arc::new(crate::testing::memory::MemoryLedger::default());
    let names = ["x".to_owned(), "y".to_owned()];
    ledger
        .add_columns("users", &names, "s3://l/a.csv")
        .await
        .unwrap();
    let (partitions, _, shutdown, task) = registrar(&fake, &ledger);
    partitions.send_columns("users", names.to_vec(), names.to_vec());
    tokio::time::sleep(Duration::from_secs(5)).await;
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(
        column_statements(&fake),
        [
            "ALTER TABLE `lake`.`users` ADD COLUMNS (`x` string, `y` string)",
            "ALTER TABLE `lake`.`users` ADD COLUMNS (`x` string)",
            "ALTER TABLE `lake`.`users` ADD COLUMNS (`y` string)",
        ]
    );
    assert_eq!(ledger.dataset_columns("users").await.unwrap().in_catalog, 2);
}

#[tokio::test(start_paused = true)]
async fn columns_the_catalog_failed_to_add_are_tried_again_later() {
    let fake = Fake::default();
    *fake.refuse.lock().unwrap() = vec![("ADD COLUMNS", "throttled", TRIES)];
    let ledger = Arc::new(crate::testing::memory::MemoryLedger::default());
    let names = ["x".to_owned()];
    ledger
        .add_columns("users", &names, "s3://l/a.csv")
        .await
        .unwrap();
    let (partitions, _, shutdown, task) = registrar(&fake, &ledger);
    partitions.send_columns("users", names.to_vec(), names.to_vec());
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(column_statements(&fake).len(), TRIES as usize);
    assert_eq!(ledger.dataset_columns("users").await.unwrap().in_catalog, 0);
    // Partitions still go through meanwhile.
    partitions.send(partition("users", "2024-05-01"));
    tokio::time::sleep(COLUMNS_RETRY).await;
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(column_statements(&fake).len(), TRIES as usize + 1);
    assert_eq!(ledger.dataset_columns("users").await.unwrap().in_catalog, 1);
    let statements = fake.statements.lock().unwrap();
    assert!(statements.iter().any(|s| s.contains("PARTITION (")));
}
