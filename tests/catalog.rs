//! The Athena catalog against the emulator: at start-up the database and a table per
//! dataset; after a file lands, its partitions, once; a partition whose registration a
//! crash interrupted is registered at the next start. The DDL text sent is read back from
//! Athena's query history.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_at_start_and_each_new_partition_once() {
    let env = TestEnv::builder("catalog").catalog().start().await;
    let Catalog {
        database,
        workgroup,
    } = env.catalog();
    let _worker = env.start_worker();
    wait_for("the start-up DDL", WAIT, || async {
        env.athena_statements(workgroup).await.len() >= 4
    })
    .await;

    env.put("users/a.csv", &example("users/signups-2024-05.csv"))
        .await;
    wait_for("the partitions", WAIT, || async {
        env.athena_statements(workgroup)
            .await
            .iter()
            .any(|s| s.starts_with("ALTER TABLE"))
    })
    .await;
    // The same partitions again: cached, no new statement.
    env.put("users/b.csv", &example("users/signups-2024-05.csv"))
        .await;
    env.wait_drained().await;
    env.wait_lake_keys(6).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;

    let sent = env.athena_statements(workgroup).await;
    assert_eq!(
        sent[0],
        format!("CREATE DATABASE IF NOT EXISTS `{database}`")
    );
    let tables: Vec<&String> = sent
        .iter()
        .filter(|s| s.starts_with("CREATE EXTERNAL TABLE"))
        .collect();
    assert_eq!(tables.len(), 3, "{sent:#?}");
    let users = tables
        .iter()
        .find(|s| s.contains(&format!("`{database}`.`users`")))
        .expect("users table");
    assert!(
        users.contains(&format!("LOCATION 's3://{}/curated/users/'", env.lake)),
        "{users}"
    );
    let alters: Vec<&String> = sent
        .iter()
        .filter(|s| s.starts_with("ALTER TABLE"))
        .collect();
    assert_eq!(alters.len(), 1, "each partition once: {sent:#?}");
    for day in ["2024-05-01", "2024-05-02", "2024-05-03"] {
        assert!(
            alters[0].contains(&format!(
                "PARTITION (`signup_date` = '{day}') LOCATION 's3://{}/curated/users/signup_date={day}/'",
                env.lake
            )),
            "{}",
            alters[0]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_a_crash_left_unregistered_is_registered_at_the_next_start() {
    let env = TestEnv::builder("catalogcrash")
        .catalog()
        .quiet()
        .start()
        .await;
    let Catalog {
        database,
        workgroup,
    } = env.catalog();
    // Athena never answers the first worker; everything else does.
    let proxy = common::proxy::Proxy::start(&endpoint()).await;
    proxy.silence_requests_containing(Some(b"AmazonAthena."));
    let first = env.worker().via(&proxy).start();
    let key = "users/a.csv";
    env.put_and_announce(key, &example("users/signups-2024-05.csv"))
        .await;
    wait_for("the file to be done", WAIT, || async {
        env.ledger(key).await.first().and_then(|r| r.status)
            == Some(lakeworker::domain::ledger::Status::Done)
    })
    .await;
    env.wait_drained().await;
    // The message is deleted, the partitions are in the lake, the catalog has none.
    assert!(!env
        .athena_statements(workgroup)
        .await
        .iter()
        .any(|s| s.starts_with("ALTER TABLE")));
    first.kill();

    let _second = env.start_worker();
    wait_for("the partitions to be registered", WAIT, || async {
        env.athena_statements(workgroup)
            .await
            .iter()
            .any(|s| s.starts_with("ALTER TABLE"))
    })
    .await;
    let sent = env.athena_statements(workgroup).await;
    let alters: Vec<&String> = sent
        .iter()
        .filter(|s| s.starts_with("ALTER TABLE"))
        .collect();
    assert_eq!(alters.len(), 1, "{sent:#?}");
    for day in ["2024-05-01", "2024-05-02", "2024-05-03"] {
        assert!(
            alters[0].contains(&format!("PARTITION (`signup_date` = '{day}')")),
            "{}",
            alters[0]
        );
    }
    // Registered: the notes are gone, so no later start registers them again.
    wait_for("the notes to be dropped", WAIT, || async {
        let ledger = lakeworker::aws::ledger::DynamoLedger::new(
            env.clients.dynamodb.clone(),
            env.ledger_table.clone(),
        );
        use lakeworker::ports::Ledger;
        ledger
            .pending_partitions(database, "users")
            .await
            .expect("pending partitions")
            .is_empty()
    })
    .await;
}
