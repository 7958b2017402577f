//! `lakeworker backfill` against the emulator: objects that landed with no notification
//! are enqueued (dry run first), converted by the worker, and a second backfill is
//! harmless (the ledger says done). Bad targets exit 2.

mod common;

use common::*;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_enqueues_existing_objects_once_and_reruns_are_harmless() {
    let env = TestEnv::builder("backfill").quiet().start().await;
    env.put(
        "users/old/a file.csv",
        &example("users/signups-2024-05.csv"),
    )
    .await;
    env.put(
        "orders/orders-2024-05.csv",
        &example("orders/orders-2024-05.csv"),
    )
    .await;
    env.put("misc/readme.txt", b"not data").await;
    let target = format!("s3://{}/", env.landing);

    let dry = env.cli(&[
        "backfill",
        "--config",
        env.config_str(),
        &target,
        "--dry-run",
    ]);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let text = stdout(&dry);
    assert!(text.contains("users\tusers/old/a file.csv"), "{text}");
    assert!(text.contains("orders\torders/orders-2024-05.csv"), "{text}");
    assert!(
        text.contains(
            "listed 3 object(s); 2 would be enqueued (dry run) (orders: 1, users: 1); 1 skipped"
        ),
        "{text}"
    );
    assert_eq!(
        env.depth(&env.queue_url).await,
        0,
        "a dry run sends nothing"
    );

    let only_users = env.cli(&[
        "backfill",
        "--config",
        env.config_str(),
        &target,
        "--dataset",
        "users",
    ]);
    assert!(only_users.status.success());
    assert!(stdout(&only_users).contains("1 enqueued (users: 1); 2 skipped"));
    assert_eq!(env.depth(&env.queue_url).await, 1);

    let worker = env.start_worker();
    env.wait_drained().await;
    let keys = env.lake_keys().await;
    assert_eq!(keys.len(), 3, "three signup dates: {keys:?}");
    assert_eq!(env.users().await.len(), 5, "5 distinct user ids");

    // Again, everything: the users file is already done, the orders file is new.
    let all = env.cli(&["backfill", "--config", env.config_str(), &target]);
    assert!(stdout(&all).contains("2 enqueued (orders: 1, users: 1)"));
    env.wait_drained().await;
    wait_for("the orders file in the lake", WAIT, || async {
        env.lake_keys()
            .await
            .iter()
            .any(|k| k.starts_with("curated/orders/"))
    })
    .await;
    let users_parts: Vec<String> = env
        .lake_keys()
        .await
        .into_iter()
        .filter(|k| k.starts_with("curated/users/"))
        .collect();
    assert_eq!(users_parts, keys, "the users file was not converted again");
    let skipped = worker.events("already processed; nothing to do");
    assert_eq!(skipped.len(), 1, "{}", worker.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_refuses_other_buckets_and_unknown_datasets() {
    let env = TestEnv::builder("backfillbad").quiet().start().await;
    let other = env.cli(&[
        "backfill",
        "--config",
        env.config_str(),
        "s3://someone-else/x",
    ]);
    assert_eq!(other.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&other.stderr).contains("is not the landing bucket"));
    let target = format!("s3://{}/", env.landing);
    let unknown = env.cli(&[
        "backfill",
        "--config",
        env.config_str(),
        &target,
        "--dataset",
        "nope",
    ]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no dataset named \"nope\""));
    let bad = env.cli(&["backfill", "--config", env.config_str(), "landing/x"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reprocess_after_a_settings_change_leaves_no_stale_parts() {
    // The first worker's last long poll may still take a message after it exited (SQS
    // hands messages to a poll whose client is gone); they come back after 5 s.
    let env = TestEnv::builder("reprocess")
        .env("LAKEWORKER__QUEUE__VISIBILITY_TIMEOUT_SECONDS", "5")
        .quiet()
        .start()
        .await;
    let key = "orders/2024-05.csv";
    let rows = 100_000;
    let etag = env.put(key, &incompressible_orders(rows)).await;
    let target = format!("s3://{}/orders/", env.landing);
    let first = env
        .worker()
        .env("LAKEWORKER__LAKE__TARGET_FILE_SIZE", "1MiB")
        .env("LAKEWORKER__LAKE__ROW_GROUP_SIZE", "20000")
        .start();
    assert!(env
        .cli(&["backfill", "--config", env.config_str(), &target])
        .status
        .success());
    env.wait_lake_keys(2).await;
    env.wait_drained().await;
    let small_parts = env.lake_keys().await;
    assert!(small_parts.len() >= 2, "{small_parts:?}");
    assert!(first.terminate(WAIT).success());

    // After a deploy with the default target_file_size (128 MiB), reprocess on purpose.
    let second = env.start_worker();
    let plain = env.cli(&["backfill", "--config", env.config_str(), &target]);
    assert!(plain.status.success());
    env.wait_drained().await;
    assert_eq!(
        env.lake_keys().await,
        small_parts,
        "a plain backfill is a no-op"
    );
    let again = env.cli(&[
        "backfill",
        "--config",
        env.config_str(),
        &target,
        "--reprocess",
    ]);
    assert!(again.status.success());
    assert!(
        stdout(&again).contains("reprocess request"),
        "{}",
        stdout(&again)
    );
    wait_for("the reprocessed version", WAIT, || async {
        env.ledger(key).await[0].attempts == 2
            && env.ledger(key).await[0].status == Some(lakeworker::domain::ledger::Status::Done)
    })
    .await;
    env.wait_drained().await;
    let id = part_id(&env.landing, key, &etag);
    assert_eq!(
        env.lake_keys().await,
        [format!(
            "curated/orders/ordered_at_date=2024-05-01/part-{id}.parquet"
        )],
        "the earlier run's extra parts are gone"
    );
    let seen = read_with_pyarrow(&env.download_lake("curated/orders").await);
    assert_eq!(seen["rows"].as_array().unwrap().len() as u64, rows);
    assert_eq!(second.events("object converted").len(), 1);
    assert_eq!(env.depth(&env.dlq_url).await, 0);
}
