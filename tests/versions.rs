//! Versioned landing buckets: one object version has one identity however its event
//! arrived. A notification names the version id; a backfill event only the ETag; both must
//! map to the same ledger record and lake keys. The raw zone keeps every version.
//!
//! moto's own notifications carry no `versionId` (real S3's do), so these tests send the
//! notifications themselves, shaped like S3's for a versioned bucket.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use common::*;
use lakeworker::domain::ledger::Status;

const NOW: &str = "2024-06-01T00:00:00.000Z";

async fn enable_versioning(env: &TestEnv) {
    env.clients
        .s3
        .put_bucket_versioning()
        .bucket(&env.landing)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("enable versioning");
}

/// Puts a new version of `key`; returns (ETag, version id).
async fn put_version(env: &TestEnv, key: &str, body: &[u8]) -> (String, String) {
    let out = env
        .clients
        .s3
        .put_object()
        .bucket(&env.landing)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .expect("put object");
    (
        out.e_tag.expect("etag").trim_matches('"').to_owned(),
        out.version_id.expect("a version id in a versioned bucket"),
    )
}

/// The notification S3 sends for a version of a versioned bucket.
async fn announce_version(env: &TestEnv, key: &str, etag: &str, version: &str) {
    let event = s3_event(&env.landing, key, etag, NOW).version_id(version);
    env.send(&event.body()).await;
}

async fn wait_done(env: &TestEnv, key: &str, versions: usize) {
    wait_for("the ledger to say done", WAIT, || async {
        let ledger = env.ledger(key).await;
        ledger.len() == versions && ledger.iter().all(|r| r.status == Some(Status::Done))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_after_the_notification_adds_no_part_and_no_row() {
    let env = TestEnv::builder("vbackfill").quiet().start().await;
    enable_versioning(&env).await;
    let worker = env.start_worker();
    let key = "users/2024/signups.csv";
    let (etag, version) = put_version(&env, key, &example("users/signups-2024-05.csv")).await;
    announce_version(&env, key, &etag, &version).await;
    wait_done(&env, key, 1).await;
    env.wait_drained().await;
    let parts = env.lake_keys().await;
    assert_eq!(parts.len(), 3, "three signup dates: {parts:?}");
    let users = env.users().await;

    let target = format!("s3://{}/users/", env.landing);
    let backfill = env.cli(&["backfill", "--config", env.config_str(), &target]);
    assert!(
        backfill.status.success(),
        "{}",
        String::from_utf8_lossy(&backfill.stderr)
    );
    wait_for("the backfill event to be handled", WAIT, || async {
        worker.events("message handled").len() == 2
    })
    .await;
    env.wait_drained().await;

    assert_eq!(env.lake_keys().await, parts, "no second set of parts");
    let ledger = env.ledger(key).await;
    assert_eq!(ledger.len(), 1, "one identity for the version: {ledger:?}");
    assert_eq!(ledger[0].version, format!("v:{version}"));
    assert_eq!(
        (ledger[0].status, ledger[0].attempts),
        (Some(Status::Done), 1)
    );
    assert_eq!(
        worker.events("object converted").len(),
        1,
        "converted (and upserted) once"
    );
    assert_eq!(worker.events("already processed; nothing to do").len(), 1);
    assert_eq!(env.users().await, users);
    let lake = env.download_lake("curated/users").await;
    let rows = read_with_pyarrow(&lake)["rows"].as_array().unwrap().len();
    assert_eq!(rows, 6, "every row once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_versions_of_a_key_both_survive_in_the_raw_zone() {
    let env = TestEnv::builder("vraw")
        .env("LAKEWORKER__LAKE__RAW_PREFIX", "raw")
        .env("LAKEWORKER__LANDING__DELETE_AFTER", "true")
        .quiet()
        .start()
        .await;
    enable_versioning(&env).await;
    let _worker = env.start_worker();
    let key = "users/daily.csv";
    let first = example("users/signups-2024-05.csv");
    let second = example("users/late signups+fixes.csv");
    let (etag, v1) = put_version(&env, key, &first).await;
    announce_version(&env, key, &etag, &v1).await;
    wait_done(&env, key, 1).await;
    let (etag, v2) = put_version(&env, key, &second).await;
    announce_version(&env, key, &etag, &v2).await;
    wait_done(&env, key, 2).await;
    env.wait_drained().await;

    let raw: Vec<String> = env
        .lake_keys()
        .await
        .into_iter()
        .filter(|k| k.starts_with("raw/"))
        .collect();
    assert_eq!(raw.len(), 2, "one raw copy per version: {raw:?}");
    let mut bodies = Vec::new();
    for k in &raw {
        assert!(
            k.starts_with("raw/users/ingest_date=2024-06-01/") && k.ends_with("/users/daily.csv"),
            "{k}"
        );
        bodies.push(env.lake_object(k).await.to_vec());
    }
    bodies.sort();
    let mut expected = vec![first, second];
    expected.sort();
    assert!(bodies == expected, "both versions, byte for byte");
    for record in env.ledger(key).await {
        assert!(
            record.outputs.iter().any(|o| raw.contains(&key_of(o))),
            "{record:?}"
        );
    }
    // delete_after removed exactly those versions, each after its raw copy was checked.
    let versions = env
        .clients
        .s3
        .list_object_versions()
        .bucket(&env.landing)
        .send()
        .await
        .expect("list versions");
    assert!(versions.versions().is_empty(), "{versions:?}");
}
