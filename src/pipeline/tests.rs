//! Pipeline tests with in-memory stores and ledger: outputs, refusals, the quarantine,
//! rejected files, duplicates, leases and stopped jobs.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::domain::envelope::S3Event;
use crate::pipeline::error::ErrorClass;
use crate::testing::memory::{MemoryLedger, MemoryRecords, MemoryStore};

type TestPipeline = Pipeline<MemoryStore, MemoryRecords, MemoryLedger>;

const LANDING: &str = "lakeworker-landing";
const LAKE: &str = "lakeworker-lake";

fn pipeline() -> TestPipeline {
    pipeline_with(&[])
}

fn pipeline_with(env: &[(&str, &str)]) -> TestPipeline {
    pipeline_from("tests/fixtures/worker.toml", env)
}

fn pipeline_from(config: &str, env: &[(&str, &str)]) -> TestPipeline {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(config);
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let settings = Settings::load_with_env(&path, env).expect("the config is valid");
    Pipeline::new(
        Arc::new(settings),
        MemoryStore::default(),
        MemoryRecords::default(),
        MemoryLedger::default(),
        "test-worker".into(),
    )
}

/// A claim by `owner` on `key` for the users dataset.
fn claim_of(key: LedgerKey, owner: &str, lease: Duration) -> Claim {
    Claim {
        key,
        owner: owner.into(),
        lease,
        dataset: "users".into(),
        message_id: "m0".into(),
        reprocess: None,
        etag: Some("e1".into()),
    }
}

/// The ledger key the claim tests use.
fn test_key() -> LedgerKey {
    LedgerKey {
        uri: "s3://b/k".into(),
        version: "e:1".into(),
    }
}

fn job(id: &str) -> Job {
    Job::new(id, &CancellationToken::new())
}

fn event(bucket: &str, key: &str) -> String {
    event_sized(bucket, key, None)
}

/// An `ObjectCreated:Put` event for the stored `key` (form-encoded in the body, as S3
/// writes it), ETag `e1`, at 2024-03-04T05:06:07Z; `size` left out when `None`.
fn event_sized(bucket: &str, key: &str, size: Option<u64>) -> String {
    let event = S3Event::put(bucket, key)
        .etag("e1")
        .at("2024-03-04T05:06:07Z");
    S3Event { size, ..event }.body()
}

async fn one_object(p: &TestPipeline, key: &str) -> ObjectOutcome {
    match p.handle(&event(LANDING, key), &job("m1")).await.unwrap() {
        Outcome::Converted(mut objects) => objects.remove(0),
        other => panic!("{other:?}"),
    }
}

fn table(p: &TestPipeline) -> Vec<(String, String)> {
    let tables = p.records.tables.lock().unwrap();
    tables
        .get("lakeworker-users")
        .map(|items| {
            items
                .iter()
                .map(|i| {
                    let age = i
                        .get("age")
                        .and_then(|a| a.as_n().ok())
                        .cloned()
                        .unwrap_or_default();
                    (i["user_id"].as_s().unwrap().clone(), age)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_user_file_becomes_lake_parts_and_table_rows() {
    let p = pipeline();
    let csv = "user_id,age,signup_date\nu-1,1,2024/01/01\nu-2,2,2024/01/02\nu-1,3,2024/01/02\n";
    p.store.insert(LANDING, "users/x y.csv", csv.as_bytes());
    let outcome = p
        .handle(&event(LANDING, "users/x y.csv"), &job("m1"))
        .await
        .unwrap();
    let Outcome::Converted(objects) = outcome else {
        panic!("{outcome:?}")
    };
    let ObjectOutcome::Written(summary) = &objects[0] else {
        panic!("{objects:?}")
    };
    assert_eq!(
        (
            summary.rows_in,
            summary.rows_written,
            summary.records_upserted
        ),
        (3, 3, 2)
    );
    assert_eq!((summary.rows_quarantined, &summary.quarantine), (0, &None));
    let lake_keys = p.store.keys(LAKE);
    assert_eq!(lake_keys, summary.parts);
    assert_eq!(lake_keys.len(), 2);
    assert!(lake_keys[0].starts_with("curated/users/signup_date=2024-01-01/part-"));
    assert_eq!(
        table(&p),
        [("u-2".into(), "2".into()), ("u-1".into(), "3".into())]
    );
}

#[tokio::test]
async fn ingest_date_partitions_use_the_event_time() {
    let p = pipeline();
    let line = r#"{"event_id": "e", "user_id": "u", "at": "2020-01-01T00:00:00Z"}"#;
    p.store.insert(LANDING, "events/a.jsonl", line.as_bytes());
    p.handle(&event(LANDING, "events/a.jsonl"), &job("m1"))
        .await
        .unwrap();
    let keys = p.store.keys(LAKE);
    assert_eq!(keys.len(), 1);
    assert!(
        keys[0].starts_with("curated/events/ingest_date=2024-03-04/part-"),
        "{keys:?}"
    );
}

#[tokio::test]
async fn an_event_without_a_time_takes_the_objects_last_modified_never_the_clock() {
    let p = pipeline();
    *p.store.last_modified.lock().unwrap() = "2023-01-02T03:04:05Z".parse().unwrap();
    let line = r#"{"event_id": "e", "user_id": "u", "at": "2020-01-01T00:00:00Z"}"#;
    p.store.insert(LANDING, "events/a.jsonl", line.as_bytes());
    let body = S3Event::put(LANDING, "events/a.jsonl").etag("e1").body();
    p.handle(&body, &job("m1")).await.unwrap();
    let keys = p.store.keys(LAKE);
    assert!(
        keys[0].starts_with("curated/events/ingest_date=2023-01-02/part-"),
        "{keys:?}"
    );
}

#[tokio::test]
async fn a_permanent_failure_after_publishing_leaves_the_outputs_in_the_ledger() {
    let p = pipeline();
    p.records
        .refuse
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let csv = "user_id,signup_date\nu-1,2024/01/01\nu-2,2024/01/02\n";
    p.store.insert(LANDING, "users/a.csv", csv.as_bytes());
    let err = p
        .handle(&event(LANDING, "users/a.csv"), &job("m1"))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
    let record = p
        .ledger
        .record("s3://lakeworker-landing/users/a.csv")
        .unwrap();
    assert_eq!(record.status, Some(Status::Failed));
    let published: Vec<String> = p
        .store
        .keys(LAKE)
        .iter()
        .map(|k| format!("s3://{LAKE}/{k}"))
        .collect();
    assert_eq!(published.len(), 2, "the parts went up before the table");
    assert_eq!(record.pending_outputs, published, "which outputs exist");
    assert!(record
        .to_string()
        .contains("published by an unfinished attempt"));
}

#[tokio::test]
async fn a_reprocess_removes_the_earlier_outputs_it_does_not_rewrite() {
    let p = pipeline();
    let csv = "user_id,signup_date\nu-1,2024/01/01\n";
    p.store.insert(LANDING, "users/a.csv", csv.as_bytes());
    p.handle(&event(LANDING, "users/a.csv"), &job("m1"))
        .await
        .unwrap();
    let first = p.store.keys(LAKE);
    assert_eq!(first.len(), 1);
    // Earlier settings made one more part of this version; something else's object sits
    // beside it and is recorded too (it must survive: it lacks this version's id).
    let extra = first[0].replace(".parquet", "-1.parquet");
    let foreign = "curated/users/signup_date=2024-01-01/part-someone-else.parquet";
    p.store.insert(LAKE, &extra, b"old part");
    p.store.insert(LAKE, foreign, b"not ours");
    {
        let mut records = p.ledger.records.lock().unwrap();
        let record = records.values_mut().next().unwrap();
        record.outputs.push(format!("s3://{LAKE}/{extra}"));
        record.outputs.push(format!("s3://{LAKE}/{foreign}"));
    }
    // A plain redelivery is a duplicate: nothing happens.
    let again = p
        .handle(&event(LANDING, "users/a.csv"), &job("m2"))
        .await
        .unwrap();
    assert!(
        matches!(&again, Outcome::Converted(o) if matches!(o[0], ObjectOutcome::AlreadyDone { .. }))
    );
    assert!(p.store.get(LAKE, &extra).is_some());

    let mut reprocess: serde_json::Value =
        serde_json::from_str(&event(LANDING, "users/a.csv")).unwrap();
    reprocess["Records"][0]["lakeworker"] = serde_json::json!({"reprocess": "r-1"});
    let outcome = p.handle(&reprocess.to_string(), &job("m3")).await.unwrap();
    assert!(matches!(&outcome, Outcome::Converted(o) if matches!(o[0], ObjectOutcome::Written(_))));
    assert_eq!(p.store.get(LAKE, &extra), None, "the stale part is gone");
    assert!(
        p.store.get(LAKE, foreign).is_some(),
        "only this version's outputs are touched"
    );
    assert!(p.store.get(LAKE, &first[0]).is_some());
    let record = p
        .ledger
        .record("s3://lakeworker-landing/users/a.csv")
        .unwrap();
    assert_eq!(record.outputs, [format!("s3://{LAKE}/{}", first[0])]);
    assert_eq!((record.status, record.attempts), (Some(Status::Done), 2));
    // The same request delivered again is done.
    let repeat = p.handle(&reprocess.to_string(), &job("m4")).await.unwrap();
    assert!(
        matches!(&repeat, Outcome::Converted(o) if matches!(o[0], ObjectOutcome::AlreadyDone { .. }))
    );
}

/// The users file `users/a.csv` done once in `p`; returns its one lake part.
async fn done_once(p: &TestPipeline) -> String {
    let csv = "user_id,signup_date\nu-1,2024/01/01\n";
    p.store.insert(LANDING, "users/a.csv", csv.as_bytes());
    p.handle(&event(LANDING, "users/a.csv"), &job("m1"))
        .await
        .unwrap();
    let parts: Vec<String> = p
        .store
        .keys(LAKE)
        .into_iter()
        .filter(|k| k.starts_with("curated/"))
        .collect();
    assert_eq!(parts.len(), 1);
    parts[0].clone()
}

/// A reprocess request for `users/a.csv`.
fn reprocess_event() -> String {
    let mut event: serde_json::Value =
        serde_json::from_str(&event(LANDING, "users/a.csv")).unwrap();
    event["Records"][0]["lakeworker"] = serde_json::json!({"reprocess": "r-1"});
    event.to_string()
}

#[tokio::test]
async fn a_job_that_loses_its_lease_mid_copy_neither_deletes_nor_settles() {
    let p = pipeline_with(&[("LAKEWORKER__LAKE__RAW_PREFIX", "raw")]);
    let part = done_once(&p).await;
    // An earlier run's extra part, recorded in the ledger.
    let extra = part.replace(".parquet", "-1.parquet");
    p.store.insert(LAKE, &extra, b"old part");
    {
        let mut records = p.ledger.records.lock().unwrap();
        let record = records.values_mut().next().unwrap();
        record.outputs.push(format!("s3://{LAKE}/{extra}"));
    }
    // The reprocess loses its lease while its raw copy runs.
    let reprocessing = job("m2");
    let stopper = reprocessing.clone();
    *p.store.during_copy.lock().unwrap() = Some(Box::new(move || stopper.stop(StopReason::Lost)));
    let err = p
        .handle(&reprocess_event(), &reprocessing)
        .await
        .unwrap_err();
    assert!(matches!(err, JobError::Stopped), "{err}");
    assert!(p.store.get(LAKE, &extra).is_some(), "nothing deleted");
    let record = p
        .ledger
        .record("s3://lakeworker-landing/users/a.csv")
        .unwrap();
    assert_ne!(record.status, Some(Status::Done), "not settled: {record:?}");
    assert_eq!(record.lease_expires_at, None, "the claim is released");
}

#[tokio::test]
async fn outputs_recorded_as_keys_before_they_were_uris_are_matched_and_cleaned() {
    let p = pipeline();
    let part = done_once(&p).await;
    let extra = part.replace(".parquet", "-1.parquet");
    p.store.insert(LAKE, &extra, b"old part");
    {
        // A record written before outputs were URIs: bare lake keys.
        let mut records = p.ledger.records.lock().unwrap();
        let record = records.values_mut().next().unwrap();
        record.outputs = vec![part.clone(), extra.clone()];
    }
    p.handle(&reprocess_event(), &job("m2")).await.unwrap();
    assert!(
        p.store.get(LAKE, &part).is_some(),
        "the part it rewrote stays"
    );
    assert_eq!(p.store.get(LAKE, &extra), None, "the stale one is gone");
    let record = p
        .ledger
        .record("s3://lakeworker-landing/users/a.csv")
        .unwrap();
    assert_eq!(record.outputs, [format!("s3://{LAKE}/{part}")]);
}

#[tokio::test]
async fn a_superseded_version_loses_what_an_unfinished_attempt_published() {
    let p = pipeline();
    p.store.insert(
        LANDING,
        "users/a.csv",
        b"user_id,signup_date\nu-2,2024/01/02\n",
    );
    // The key now holds another version than the event's ETag e1.
    p.store
        .etags
        .lock()
        .unwrap()
        .insert((LANDING.into(), "users/a.csv".into()), "e2".into());
    // An attempt at e1 published a part and crashed.
    let object = ObjectRef {
        bucket: LANDING.into(),
        key: "users/a.csv".into(),
        etag: Some("e1".into()),
        ..ObjectRef::default()
    };
    let id = crate::domain::lake::object_id(&object);
    let partial = format!("curated/users/signup_date=2024-01-01/part-{id}.parquet");
    p.store.insert(LAKE, &partial, b"part of e1");
    let crashed = claim_of(
        LedgerKey::of(&object),
        "dead-worker/m0/0",
        Duration::from_millis(1),
    );
    p.ledger.claim(&crashed).await.unwrap();
    assert!(p
        .ledger
        .publishing(&crashed, &[format!("s3://{LAKE}/{partial}")])
        .await
        .unwrap());
    tokio::time::sleep(Duration::from_millis(5)).await;

    let outcome = one_object(&p, "users/a.csv").await;
    assert!(
        matches!(outcome, ObjectOutcome::Superseded { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        p.store.get(LAKE, &partial),
        None,
        "the partial output is gone"
    );
    let record = p
        .ledger
        .record("s3://lakeworker-landing/users/a.csv")
        .unwrap();
    assert_eq!(record.status, Some(Status::Done), "answered: {record:?}");
    assert!(record.outputs.is_empty() && record.pending_outputs.is_empty());
}

#[tokio::test]
async fn an_etag_only_event_for_a_version_gone_from_the_bucket_finds_its_record() {
    let p = pipeline();
    let versioned = ObjectRef {
        bucket: LANDING.into(),
        key: "users/a.csv".into(),
        etag: Some("e1".into()),
        version_id: Some("v1".into()),
        ..ObjectRef::default()
    };
    let claim = claim_of(LedgerKey::of(&versioned), "w/m0/0", Duration::from_secs(60));
    p.ledger.claim(&claim).await.unwrap();
    assert!(p
        .ledger
        .finish(&claim, &Completion::default())
        .await
        .unwrap());
    // The version was converted and deleted (delete_after); a backfill event names it
    // by ETag only.
    let outcome = one_object(&p, "users/a.csv").await;
    assert!(
        matches!(outcome, ObjectOutcome::AlreadyDone { .. }),
        "the same record, not a missing object: {outcome:?}"
    );
    assert_eq!(p.ledger.records.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_lease_that_cannot_be_renewed_stops_the_job_before_it_runs_out() {
    let ledger = Arc::new(MemoryLedger::default());
    ledger
        .renewals_fail
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let claim = claim_of(test_key(), "w/m/0", Duration::from_secs(8));
    let job = job("m");
    let start = tokio::time::Instant::now();
    let renewal = LeaseRenewal::start(ledger.clone(), claim, job.clone(), start);
    // Renewals at 4 s and, failed, again every second; the lease ends at 8 s, so the job
    // is stopped a quarter lease before, at 6 s.
    tokio::time::sleep(Duration::from_millis(5_900)).await;
    assert_eq!(job.stopped(), None);
    assert_eq!(ledger.renewals.load(std::sync::atomic::Ordering::SeqCst), 2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(job.stopped(), Some(StopReason::Lost));
    renewal.stop().await;

    // Failures that end before the fence only delay the renewal.
    let ledger = Arc::new(MemoryLedger::default());
    let claim = claim_of(test_key(), "w/m/1", Duration::from_secs(8));
    assert!(matches!(
        ledger.claim(&claim).await.unwrap(),
        ClaimOutcome::Claimed { .. }
    ));
    ledger
        .renewals_fail
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let job = self::job("m");
    let renewal = LeaseRenewal::start(
        ledger.clone(),
        claim,
        job.clone(),
        tokio::time::Instant::now(),
    );
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    ledger
        .renewals_fail
        .store(false, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(job.stopped(), None, "the retry at 5 s renewed it");
    renewal.stop().await;
}

#[tokio::test]
async fn settling_needs_the_owner_to_hold_a_live_lease() {
    let ledger = MemoryLedger::default();
    let claim =
        |owner: &str, lease_ms| claim_of(test_key(), owner, Duration::from_millis(lease_ms));
    let (stale, fresh) = (claim("w1/m/0", 1), claim("w2/m/0", 60_000));
    ledger.claim(&stale).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    // Its lease ran out: nothing it writes counts, even before anyone else claims.
    let outputs = vec!["s3://lake/k".to_owned()];
    assert!(!ledger.publishing(&stale, &outputs).await.unwrap());
    assert!(!ledger.finish(&stale, &Completion::default()).await.unwrap());
    assert!(matches!(
        ledger.claim(&fresh).await.unwrap(),
        ClaimOutcome::Claimed { attempt: 2, .. }
    ));
    assert!(!ledger.renew(&stale).await.unwrap());
    assert!(!ledger
        .reject(&stale, &Completion::default(), "x")
        .await
        .unwrap());
    ledger.fail(&stale, "late").await.unwrap();
    let record = ledger.record("s3://b/k").unwrap();
    assert_eq!(
        (record.status, record.owner.as_deref()),
        (Some(Status::Processing), Some("w2/m/0")),
        "the stale owner changed nothing"
    );
    assert!(ledger.publishing(&fresh, &outputs).await.unwrap());
    assert!(ledger.finish(&fresh, &Completion::default()).await.unwrap());
    assert_eq!(ledger.status("s3://b/k"), Some(Status::Done));
}

#[tokio::test]
async fn bad_rows_are_quarantined_and_good_rows_flow() {
    let p = pipeline();
    let mut csv = String::from("user_id,age,signup_date\n");
    for i in 0..19 {
        csv.push_str(&format!("u-{i},{i},2024/01/01\n"));
    }
    csv.push_str("u-19,old,2024/01/01\n");
    p.store
        .insert(LANDING, "users/some-bad.csv", csv.as_bytes());
    let ObjectOutcome::Written(summary) = one_object(&p, "users/some-bad.csv").await else {
        panic!()
    };
    assert_eq!(
        (
            summary.rows_in,
            summary.rows_written,
            summary.rows_quarantined
        ),
        (20, 19, 1)
    );
    let quarantine = summary.quarantine.clone().unwrap();
    assert!(
        quarantine.starts_with("quarantine/users/dt=2024-03-04/")
            && quarantine.ends_with(".rows.jsonl"),
        "{quarantine}"
    );
    let lines = String::from_utf8(p.store.get(LAKE, &quarantine).unwrap()).unwrap();
    let bad: serde_json::Value = serde_json::from_str(lines.trim()).unwrap();
    assert_eq!(bad["line"], 21);
    assert_eq!(bad["raw"], "u-19,old,2024/01/01");
    assert_eq!(bad["errors"][0]["column"], "age");
    assert_eq!(bad["errors"][0]["rule"], "type");
    assert_eq!(table(&p).len(), 19, "the bad row is not upserted");
    let record = p
        .ledger
        .record("s3://lakeworker-landing/users/some-bad.csv")
        .unwrap();
    assert_eq!(
        (record.status, record.rows_rejected),
        (Some(Status::Done), Some(1))
    );
    assert!(record
        .outputs
        .contains(&format!("s3://{LAKE}/{quarantine}")));
}

#[tokio::test]
async fn too_many_bad_rows_reject_the_whole_file() {
    let p = pipeline();
    let csv = "user_id,age,signup_date\nu-1,1,2024/01/01\nu-2,x,2024/01/01\n";
    p.store.insert(LANDING, "users/dir/bad.csv", csv.as_bytes());
    let ObjectOutcome::Rejected(rejection) = one_object(&p, "users/dir/bad.csv").await else {
        panic!()
    };
    assert!(
        rejection
            .reason
            .starts_with("1 of 2 rows are invalid (50.0%), above max_invalid_fraction 0.1"),
        "{}",
        rejection.reason
    );
    assert!(rejection
        .quarantined_as
        .starts_with("quarantine/users/dt=2024-03-04/"));
    assert!(rejection.quarantined_as.ends_with("/bad.csv"));
    assert_eq!(
        p.store.get(LAKE, &rejection.quarantined_as).unwrap(),
        csv.as_bytes(),
        "copied unchanged"
    );
    let report_key = format!("{}.error.json", rejection.quarantined_as);
    let report: serde_json::Value =
        serde_json::from_slice(&p.store.get(LAKE, &report_key).unwrap()).unwrap();
    assert_eq!(
        (report["rows_in"].as_u64(), report["rows_invalid"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(
        report["errors"][0]["reason"],
        "\"x\" is not a 64-bit integer"
    );
    assert_eq!(
        report["source"],
        "s3://lakeworker-landing/users/dir/bad.csv"
    );
    assert!(
        p.store
            .keys(LAKE)
            .iter()
            .all(|k| k.starts_with("quarantine/")),
        "nothing in the lake"
    );
    assert!(table(&p).is_empty(), "nothing in the table");
    let record = p
        .ledger
        .record("s3://lakeworker-landing/users/dir/bad.csv")
        .unwrap();
    assert_eq!(record.status, Some(Status::Rejected));
    // A rejected file is an answered question: a redelivery does no work.
    let again = one_object(&p, "users/dir/bad.csv").await;
    assert!(
        matches!(
            again,
            ObjectOutcome::AlreadyDone {
                status: Status::Rejected,
                ..
            }
        ),
        "{again:?}"
    );
}

#[tokio::test]
async fn malformed_and_oversized_files_are_rejected() {
    let p = pipeline();
    p.store.insert(LANDING, "users/no-key.csv", b"age\n1\n");
    let ObjectOutcome::Rejected(r) = one_object(&p, "users/no-key.csv").await else {
        panic!()
    };
    assert_eq!(
        r.reason,
        "line 1: the header lacks required column(s) user_id, signup_date; found age"
    );

    let limited = pipeline_with(&[]);
    limited.store.insert(
        LANDING,
        "users/big.csv",
        b"user_id,signup_date\nu-1,2024/01/01\n",
    );
    let body = event_sized(LANDING, "users/big.csv", Some(200 * 1024 * 1024 * 1024));
    let Outcome::Converted(objects) = limited.handle(&body, &job("m1")).await.unwrap() else {
        panic!()
    };
    let ObjectOutcome::Rejected(r) = &objects[0] else {
        panic!("{objects:?}")
    };
    assert!(
        r.reason
            .starts_with("the object is 214748364800 bytes, above max_object_bytes"),
        "{}",
        r.reason
    );
}

#[tokio::test]
async fn the_size_limit_applies_to_the_object_when_the_event_has_no_size() {
    let p = pipeline_from(
        "tests/fixtures/hostile/config.toml",
        &[("LAKEWORKER_PII_SALT", "s")],
    );
    let big = format!("id,value\n{}", "l1,1\n".repeat(20_001));
    p.store.insert(LANDING, "limits/big.csv", big.as_bytes());
    let ObjectOutcome::Rejected(r) = one_object(&p, "limits/big.csv").await else {
        panic!()
    };
    assert_eq!(
        r.reason,
        "the object is 100014 bytes, above max_object_bytes (100000)"
    );
}

#[tokio::test]
async fn pii_is_hashed_in_the_lake_and_clear_in_the_table() {
    let p = pipeline_from(
        "tests/fixtures/hostile/config.toml",
        &[("LAKEWORKER_PII_SALT", "salt")],
    );
    let csv = "id,name,email,joined\nP1,Ann,ann@example.com,2024-05-01\n";
    p.store.insert(LANDING, "people/a.csv", csv.as_bytes());
    let ObjectOutcome::Written(summary) = one_object(&p, "people/a.csv").await else {
        panic!()
    };
    let part = p.store.get(LAKE, &summary.parts[0]).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
        bytes::Bytes::from(part),
        10,
    )
    .unwrap();
    let batch = reader.collect::<Result<Vec<_>, _>>().unwrap().remove(0);
    let emails = batch.column_by_name("email").unwrap();
    let emails = emails
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .unwrap();
    use sha2::{Digest, Sha256};
    let expected: String = Sha256::digest(b"saltann@example.com")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(emails.value(0), expected, "the lake holds the salted hash");
    let tables = p.records.tables.lock().unwrap();
    assert_eq!(
        tables["lakeworker-users"][0]["email"].as_s().unwrap(),
        "ann@example.com",
        "the table keeps the clear value"
    );
}

#[tokio::test]
async fn pii_drop_leaves_the_column_out_of_the_lake_but_in_the_table() {
    let contacts = "[[datasets]]\nname = \"contacts\"\nmatch = \"contacts/**\"\nformat = \"csv\"\nrecords_table = \"lakeworker-contacts\"\nrecords_key = \"id\"\n[[datasets.columns]]\nname = \"id\"\ntype = \"string\"\nrequired = true\n[[datasets.columns]]\nname = \"phone\"\ntype = \"string\"\npii = \"drop\"\n";
    let p = pipeline_with(&[("LAKEWORKER_DATASETS", contacts)]);
    let csv = "id,phone\nc-1,+44 20 7946 0000\n";
    p.store.insert(LANDING, "contacts/a.csv", csv.as_bytes());
    let ObjectOutcome::Written(summary) = one_object(&p, "contacts/a.csv").await else {
        panic!()
    };
    assert_eq!(summary.parts.len(), 1);
    let part = p.store.get(LAKE, &summary.parts[0]).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
        bytes::Bytes::from(part),
        10,
    )
    .unwrap();
    let batch = reader.collect::<Result<Vec<_>, _>>().unwrap().remove(0);
    let schema = batch.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        ["id", "_source", "_ingested_at"],
        "no phone in the lake"
    );
    let tables = p.records.tables.lock().unwrap();
    let item = &tables["lakeworker-contacts"][0];
    assert_eq!(item["id"].as_s().unwrap(), "c-1");
    assert_eq!(
        item["phone"].as_s().unwrap(),
        "+44 20 7946 0000",
        "the table keeps the value"
    );
}

/// A dataset `name` over `match/**` with a hashed and a dropped pii column, for
/// [`pii_values_never_appear_in_error_texts_or_quarantine_reports`].
fn people(name: &str, format: &str, policy: &str) -> String {
    format!(
        "[[datasets]]\nname = \"{name}\"\nmatch = \"{name}/**\"\nformat = \"{format}\"\nrecords_table = \"lakeworker-people\"\nrecords_key = \"id\"\n{policy}\n\
         [[datasets.columns]]\nname = \"id\"\ntype = \"string\"\nrequired = true\n\
         [[datasets.columns]]\nname = \"email\"\ntype = \"string\"\npattern = \"[^@]+@[^@]+\"\npii = \"hash\"\n\
         [[datasets.columns]]\nname = \"phone\"\ntype = \"string\"\nmax_length = 8\npii = \"drop\"\n\
         [[datasets.columns]]\nname = \"age\"\ntype = \"int\"\n"
    )
}

/// The stand-in of a hashed pii value in error texts and quarantine rows.
fn hashed(salt: &str, text: &str) -> String {
    use sha2::{Digest, Sha256};
    let hex: String = Sha256::digest(format!("{salt}{text}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("<pii sha256:{hex}>")
}

/// Values of pii columns: in bad cells (hashed and dropped columns), in the raw text of
/// bad rows that are bad for another reason, in CSV and JSON lines files, in rejected
/// files' reports, the ledger, and inline records' quarantine and refusal. None may show
/// a clear value; hashed ones show the salted hash, dropped ones a placeholder.
#[tokio::test]
async fn pii_values_never_appear_in_error_texts_or_quarantine_reports() {
    let datasets = [
        people("people_csv", "csv", "max_invalid_fraction = 0.9"),
        people("people_jsonl", "jsonl", "max_invalid_fraction = 0.9"),
        people("people_strict", "csv", "on_invalid = \"reject_file\""),
    ]
    .concat();
    let p = pipeline_with(&[
        ("LAKEWORKER_DATASETS", &datasets),
        ("LAKEWORKER_PII_SALT", "pepper"),
    ]);
    let clear = [
        "ann.example.com",
        "555-0100",
        "bob@example.com",
        "555-0101",
        "eve@example.com",
        "555-0103",
        "cy@example.com",
        "+44 20 7946 0000",
        "dee@example.com",
        "555-0102",
        "fay@example.com",
        "555-0104",
    ];
    let csv = "id,email,phone,age\n\
               a,ann.example.com,555-0100,1\n\
               b,bob@example.com,555-0101,x\n\
               c,cy@example.com,+44 20 7946 0000,3\n\
               d,\"dee@example.com, 555-0102\",4\n\
               f,fay@example.com,555-0104,4711,extra\n\
               e,eve@example.com,555-0103,5\n";
    let jsonl = "{\"id\":\"a\",\"email\":\"ann.example.com\",\"phone\":\"555-0100\",\"age\":1}\n\
                 {\"id\":\"b\",\"email\":\"bob@example.com\",\"phone\":\"555-0101\",\"age\":\"x\"}\n\
                 {\"id\":\"c\",\"email\":\"cy@example.com\",\"phone\":\"+44 20 7946 0000\",\"age\":3}\n\
                 {\"id\":\"d\",\"email\":\"dee@example.com\",\"phone\":\"555-0102\",\"age\":4\n\
                 [\"fay@example.com\", \"555-0104\", 4711]\n\
                 {\"id\":\"e\",\"email\":\"eve@example.com\",\"phone\":\"555-0103\",\"age\":5}\n";
    let mut reports = Vec::new();
    for (key, body) in [("people_csv/a.csv", csv), ("people_jsonl/a.jsonl", jsonl)] {
        p.store.insert(LANDING, key, body.as_bytes());
        let ObjectOutcome::Written(summary) = one_object(&p, key).await else {
            panic!("{key}")
        };
        assert_eq!(
            (summary.rows_written, summary.rows_quarantined),
            (1, 5),
            "{key}"
        );
        let rows = String::from_utf8(
            p.store
                .get(LAKE, summary.quarantine.as_ref().unwrap())
                .unwrap(),
        )
        .unwrap();
        let rows: Vec<serde_json::Value> = rows
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        // A bad hashed cell and a bad dropped cell name their stand-ins, not the values.
        assert_eq!(
            rows[0]["errors"][0]["reason"],
            format!(
                "{} does not match the pattern \"[^@]+@[^@]+\"",
                hashed("pepper", "ann.example.com")
            ),
            "{key}"
        );
        assert_eq!(
            rows[2]["errors"][0]["reason"],
            "<pii omitted> is 16 characters long; at most 8 allowed",
            "{key}"
        );
        // A row bad for another reason shows the pii values of its raw text as stand-ins.
        assert_eq!(rows[1]["errors"][0]["column"], "age");
        let raw = rows[1]["raw"].as_str().unwrap();
        if key.ends_with(".csv") {
            assert_eq!(
                raw,
                format!("b,{},<pii omitted>,x", hashed("pepper", "bob@example.com"))
            );
        } else {
            let raw: serde_json::Value = serde_json::from_str(raw).unwrap();
            assert_eq!(
                raw,
                serde_json::json!({"id": "b", "email": hashed("pepper", "bob@example.com"),
                                   "phone": "<pii omitted>", "age": "x"})
            );
        }
        // Rows that cannot be split into their columns keep no raw text at all.
        assert!(rows[3]["raw"].is_null(), "{key}: {}", rows[3]);
        assert!(rows[4]["raw"].is_null(), "{key}: {}", rows[4]);
        reports.push(
            rows.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        );
    }

    // A rejected file: its report and the ledger.
    p.store
        .insert(LANDING, "people_strict/a.csv", csv.as_bytes());
    let ObjectOutcome::Rejected(rejection) = one_object(&p, "people_strict/a.csv").await else {
        panic!()
    };
    let report = p
        .store
        .get(LAKE, &format!("{}.error.json", rejection.quarantined_as))
        .unwrap();
    reports.push(String::from_utf8(report).unwrap());
    reports.push(rejection.reason.clone());
    let record = p
        .ledger
        .record("s3://lakeworker-landing/people_strict/a.csv")
        .unwrap();
    reports.push(record.last_error.unwrap());

    // A file without its header row: its first record must not be quoted as "names".
    let headerless = csv.split_once('\n').unwrap().1;
    p.store
        .insert(LANDING, "people_csv/headerless.csv", headerless.as_bytes());
    let ObjectOutcome::Rejected(rejection) = one_object(&p, "people_csv/headerless.csv").await
    else {
        panic!()
    };
    assert!(
        rejection.reason.contains("found <undeclared>,<undeclared>"),
        "{}",
        rejection.reason
    );
    let report = p
        .store
        .get(LAKE, &format!("{}.error.json", rejection.quarantined_as))
        .unwrap();
    reports.push(String::from_utf8(report).unwrap());
    reports.push(rejection.reason.clone());

    // Inline records: quarantined ones, and a message refused past the policy (the
    // refusal is the dead letter's `lakeworker.error` and the log's reason).
    let inline = serde_json::json!({"dataset": "people_csv", "records": [
        {"id": "a", "email": "ann.example.com", "phone": "555-0101", "age": 1},
        {"id": "b", "email": "bob@example.com", "phone": "555-0100", "age": 2},
    ]});
    p.handle(&inline.to_string(), &job("m-inline"))
        .await
        .unwrap();
    let inline_rows = p
        .store
        .keys(LAKE)
        .into_iter()
        .find(|k| k.ends_with("/m-inline.rows.jsonl"))
        .unwrap();
    reports.push(String::from_utf8(p.store.get(LAKE, &inline_rows).unwrap()).unwrap());
    let refused = serde_json::json!({"dataset": "people_csv", "records": [
        {"id": "c", "email": "cy@example.com", "phone": "+44 20 7946 0000", "age": "4711"},
    ]});
    let err = p
        .handle(&refused.to_string(), &job("m-refused"))
        .await
        .unwrap_err();
    reports.push(err.to_string());

    for report in &reports {
        for value in clear {
            assert!(!report.contains(value), "{value:?} in {report}");
        }
    }
    assert!(
        reports[2].contains(&hashed("pepper", "ann.example.com")),
        "{}",
        reports[2]
    );
    assert!(
        reports[7].contains(&hashed("pepper", "ann.example.com")),
        "the inline rows: {}",
        reports[7]
    );
}

#[tokio::test]
async fn the_rejection_report_keeps_the_first_100_errors_and_counts_them_all() {
    let p = pipeline();
    let mut csv = String::from("user_id,age,signup_date\n");
    for i in 0..150 {
        csv.push_str(&format!("u-{i},age-{i},2024/01/01\n"));
    }
    p.store
        .insert(LANDING, "users/many-bad.csv", csv.as_bytes());
    let ObjectOutcome::Rejected(rejection) = one_object(&p, "users/many-bad.csv").await else {
        panic!()
    };
    assert_eq!((rejection.rows_in, rejection.rows_rejected), (150, 150));
    let report_key = format!("{}.error.json", rejection.quarantined_as);
    let report: serde_json::Value =
        serde_json::from_slice(&p.store.get(LAKE, &report_key).unwrap()).unwrap();
    assert_eq!(
        (
            report["rows_in"].as_u64(),
            report["rows_valid"].as_u64(),
            report["rows_invalid"].as_u64()
        ),
        (Some(150), Some(0), Some(150))
    );
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 100, "only the first 100 errors are described");
    assert_eq!(errors.len(), crate::convert::MAX_ERRORS_KEPT);
    assert_eq!(
        (&errors[0]["line"], &errors[99]["line"]),
        (&2.into(), &101.into())
    );
    assert_eq!(errors[99]["reason"], "\"age-99\" is not a 64-bit integer");
}

#[tokio::test]
async fn refusals_are_permanent_and_write_nothing() {
    let p = pipeline();
    p.store.insert(LANDING, "misc/a.csv", b"x\n");
    for (body, expected) in [
        (
            event("elsewhere", "users/a.csv"),
            "is not the landing bucket",
        ),
        (event(LANDING, "misc/a.csv"), "no dataset matches the key"),
        ("{".to_owned(), "body is not JSON"),
        (
            r#"{"dataset": "orders", "records": []}"#.to_owned(),
            "has no records_table",
        ),
        (
            r#"{"dataset": "users", "records": [{"user_id": "u-1"}]}"#.to_owned(),
            "1 of 1 rows are invalid",
        ),
    ] {
        let err = p.handle(&body, &job("m1")).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
        assert!(err.to_string().contains(expected), "{err}");
    }
    assert!(p.store.keys(LAKE).is_empty());
    assert!(p.records.tables.lock().unwrap().is_empty());
}

/// `body` wrapped in an SNS notification from `topic`.
fn sns_from(topic: &str, body: &str) -> String {
    serde_json::json!({"Type": "Notification", "MessageId": "m", "TopicArn": topic,
        "Message": body, "Timestamp": "2024-03-04T05:06:07Z"})
    .to_string()
}

#[tokio::test]
async fn sns_notifications_from_topics_not_allowed_are_permanent_and_write_nothing() {
    let allowed = "arn:aws:sns:us-east-1:123456789012:landing";
    let stranger = "arn:aws:sns:us-east-1:999999999999:landing";
    let p = pipeline_with(&[("LAKEWORKER__QUEUE__ALLOWED_TOPIC_ARNS", allowed)]);
    p.store.insert(
        LANDING,
        "users/a.csv",
        b"user_id,signup_date\nu-1,2024/01/01\n",
    );
    let inline =
        r#"{"dataset": "users", "records": [{"user_id": "u-2", "signup_date": "2024/01/01"}]}"#;
    for body in [event(LANDING, "users/a.csv"), inline.to_owned()] {
        let err = p
            .handle(&sns_from(stranger, &body), &job("m1"))
            .await
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
        assert_eq!(
            err.to_string(),
            format!("bad message body: SNS notification from topic {stranger:?}, which is not in queue.allowed_topic_arns")
        );
    }
    assert!(p.store.keys(LAKE).is_empty());
    assert!(p.records.tables.lock().unwrap().is_empty());
    assert!(p
        .ledger
        .record("s3://lakeworker-landing/users/a.csv")
        .is_none());
    // The allowed topic's notifications, and bodies without an envelope, are handled.
    let from_allowed = sns_from(allowed, &event(LANDING, "users/a.csv"));
    assert!(matches!(
        p.handle(&from_allowed, &job("m2")).await.unwrap(),
        Outcome::Converted(_)
    ));
    assert!(matches!(
        p.handle(inline, &job("m3")).await.unwrap(),
        Outcome::Upserted { rows: 1, .. }
    ));
}

/// A pipeline on the tests' config (`tests/fixtures/worker.toml`) with `line` added to the users dataset.
fn pipeline_with_users(line: &str) -> TestPipeline {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("tests/fixtures/worker.toml")).unwrap();
    let anchor = "records_key = \"user_id\"";
    assert!(text.contains(anchor), "tests/fixtures/worker.toml changed");
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(
        file.path(),
        text.replacen(anchor, &format!("{anchor}\n{line}"), 1),
    )
    .unwrap();
    pipeline_from(file.path().to_str().unwrap(), &[])
}

#[tokio::test]
async fn inline_false_refuses_inline_records_but_not_files() {
    let p = pipeline_with_users("inline = false");
    // Refused before validation: the bad record is not quarantined.
    let body = r#"{"dataset": "users", "records": [{"user_id": "u-1", "signup_date": "2024/01/01"}, {"bad": 1}]}"#;
    let err = p.handle(body, &job("m1")).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
    assert_eq!(
        err.to_string(),
        "inline records for dataset \"users\": the dataset does not accept inline records (inline = false)"
    );
    assert!(p.records.tables.lock().unwrap().is_empty());
    assert!(p.store.keys(LAKE).is_empty(), "nothing quarantined either");
    // The dataset's files still reach the lake and the table.
    p.store.insert(
        LANDING,
        "users/a.csv",
        b"user_id,signup_date\nu-2,2024/01/01\n",
    );
    assert!(matches!(
        one_object(&p, "users/a.csv").await,
        ObjectOutcome::Written(_)
    ));
    assert_eq!(table(&p), [("u-2".to_owned(), String::new())]);
    // inline = true is the default.
    let p = pipeline_with_users("inline = true");
    let good =
        r#"{"dataset": "users", "records": [{"user_id": "u-1", "signup_date": "2024/01/01"}]}"#;
    assert!(matches!(
        p.handle(good, &job("m2")).await.unwrap(),
        Outcome::Upserted { rows: 1, .. }
    ));
}

#[tokio::test]
async fn a_missing_object_is_transient_and_recorded() {
    let p = pipeline();
    let err = p
        .handle(&event(LANDING, "users/gone.csv"), &job("m1"))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transient);
    assert_eq!(
        err.to_string(),
        "object s3://lakeworker-landing/users/gone.csv does not exist (deleted since the event?)"
    );
    let record = p
        .ledger
        .record("s3://lakeworker-landing/users/gone.csv")
        .unwrap();
    assert_eq!(
        (record.status, record.lease_expires_at),
        (Some(Status::Failed), None),
        "the next delivery may claim at once"
    );
    assert!(record.last_error.unwrap().contains("does not exist"));
}

#[tokio::test]
async fn inline_records_are_upserted_last_wins_and_bad_ones_quarantined() {
    let p = pipeline();
    let mut records: Vec<serde_json::Value> =
        (0..10).map(|i| serde_json::json!({"user_id": format!("u-{i}"), "signup_date": "2024/01/01", "age": i})).collect();
    records.push(serde_json::json!({"user_id": "u-0", "signup_date": "2024/01/02", "age": 99}));
    records.push(serde_json::json!({"signup_date": "2024/01/02"}));
    let body = serde_json::json!({"dataset": "users", "records": records});
    let outcome = p.handle(&body.to_string(), &job("m7")).await.unwrap();
    assert_eq!(
        outcome,
        Outcome::Upserted {
            dataset: "users".into(),
            rows: 10,
            quarantined: 1
        }
    );
    assert!(
        table(&p).contains(&("u-0".into(), "99".into())),
        "last wins"
    );
    let keys = p.store.keys(LAKE);
    assert_eq!(keys.len(), 1);
    assert!(
        keys[0].starts_with("quarantine/users/dt=") && keys[0].ends_with("/m7.rows.jsonl"),
        "{keys:?}"
    );
}

#[tokio::test]
async fn a_done_object_is_not_processed_again() {
    let p = pipeline();
    p.store.insert(
        LANDING,
        "users/a.csv",
        b"user_id,signup_date\nu-1,2024/01/01\n",
    );
    let body = event(LANDING, "users/a.csv");
    p.handle(&body, &job("m1")).await.unwrap();
    let again = p.handle(&body, &job("m2")).await.unwrap();
    assert_eq!(
        again,
        Outcome::Converted(vec![ObjectOutcome::AlreadyDone {
            uri: "s3://lakeworker-landing/users/a.csv".into(),
            status: Status::Done
        }])
    );
    let record = p
        .ledger
        .record("s3://lakeworker-landing/users/a.csv")
        .unwrap();
    assert_eq!((record.status, record.attempts), (Some(Status::Done), 1));
    assert_eq!(record.outputs.len(), 1);
    assert_eq!(record.rows_written, Some(1));
    assert_eq!(table(&p).len(), 1, "no second upsert");
}

#[tokio::test]
async fn a_live_lease_makes_a_duplicate_wait() {
    let p = pipeline();
    p.store.insert(
        LANDING,
        "users/a.csv",
        b"user_id,signup_date\nu-1,2024/01/01\n",
    );
    let object = ObjectRef {
        bucket: LANDING.into(),
        key: "users/a.csv".into(),
        size: None,
        etag: Some("e1".into()),
        version_id: None,
        event_time: None,
        reprocess: None,
    };
    let other = claim_of(
        LedgerKey::of(&object),
        "another-worker/m0",
        Duration::from_secs(60),
    );
    assert_eq!(
        p.ledger.claim(&other).await.unwrap(),
        ClaimOutcome::Claimed {
            attempt: 1,
            earlier: Default::default()
        }
    );
    let err = p
        .handle(&event(LANDING, "users/a.csv"), &job("m1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, JobError::Busy { owner, .. } if owner == "another-worker/m0"),
        "{err}"
    );
    assert!(p.store.keys(LAKE).is_empty());
}

#[tokio::test]
async fn a_stopped_job_releases_its_claim() {
    let p = pipeline();
    p.store.insert(
        LANDING,
        "users/a.csv",
        b"user_id,signup_date\nu-1,2024/01/01\n",
    );
    let stopped = job("m2");
    stopped.stop(StopReason::Shutdown);
    let err = p
        .handle(&event(LANDING, "users/a.csv"), &stopped)
        .await
        .unwrap_err();
    assert!(matches!(err, JobError::Stopped), "{err}");
    let record = p
        .ledger
        .record("s3://lakeworker-landing/users/a.csv")
        .unwrap();
    assert_eq!(
        (record.status, record.lease_expires_at),
        (Some(Status::Failed), None)
    );
    assert!(p.store.keys(LAKE).is_empty());
}

#[tokio::test]
async fn raw_zone_keeps_the_original_and_delete_after_empties_the_landing_bucket() {
    let p = pipeline_with(&[
        ("LAKEWORKER__LAKE__RAW_PREFIX", "raw"),
        ("LAKEWORKER__LANDING__DELETE_AFTER", "true"),
    ]);
    let csv = b"user_id,email,age,plan,newsletter,signup_date\nu-1,a@x.io,30,pro,true,2024/05/01\n";
    p.store.insert(LANDING, "users/in/a.csv", csv);
    let ObjectOutcome::Written(summary) = one_object(&p, "users/in/a.csv").await else {
        panic!()
    };
    let id = crate::domain::lake::object_id(&ObjectRef {
        bucket: LANDING.into(),
        key: "users/in/a.csv".into(),
        size: None,
        etag: Some("e1".into()),
        version_id: None,
        event_time: None,
        reprocess: None,
    });
    let raw = format!("raw/users/ingest_date=2024-03-04/{id}/users/in/a.csv");
    let raw = raw.as_str();
    assert_eq!(summary.raw.as_deref(), Some(raw));
    assert_eq!(p.store.get(LAKE, raw).unwrap(), csv);
    assert_eq!(
        p.store.get(LANDING, "users/in/a.csv"),
        None,
        "deleted after"
    );
    let record = p
        .ledger
        .record("s3://lakeworker-landing/users/in/a.csv")
        .unwrap();
    assert!(
        record.outputs.contains(&format!("s3://{LAKE}/{raw}")),
        "{record:?}"
    );

    // Without delete_after the original stays; a rejected file is neither copied nor
    // deleted.
    let p = pipeline_with(&[("LAKEWORKER__LAKE__RAW_PREFIX", "raw")]);
    p.store.insert(LANDING, "users/in/a.csv", csv);
    one_object(&p, "users/in/a.csv").await;
    assert!(p.store.get(LANDING, "users/in/a.csv").is_some());
    let p = pipeline_with(&[
        ("LAKEWORKER__LAKE__RAW_PREFIX", "raw"),
        ("LAKEWORKER__LANDING__DELETE_AFTER", "true"),
    ]);
    p.store
        .insert(LANDING, "users/bad.csv", b"nothing,known\n1,2\n");
    let outcome = one_object(&p, "users/bad.csv").await;
    assert!(matches!(outcome, ObjectOutcome::Rejected(_)), "{outcome:?}");
    assert!(p.store.get(LANDING, "users/bad.csv").is_some());
    assert!(p.store.keys(LAKE).iter().all(|k| !k.starts_with("raw/")));
}

/// A users file whose rows go to all three scratch files: a lake part, the records spool
/// and (one row in twelve, within max_invalid_fraction) the bad rows.
const MIXED_USERS: &str = "user_id,age,signup_date\nu-1,1,2024/01/01\nu-2,two,2024/01/01\n\
    u-3,3,2024/01/02\nu-4,4,2024/01/02\nu-5,5,2024/01/02\nu-6,6,2024/01/02\nu-7,7,2024/01/02\n\
    u-8,8,2024/01/02\nu-9,9,2024/01/02\nu-10,10,2024/01/02\nu-11,11,2024/01/02\nu-12,12,2024/01/02\n";

fn retry_policy() -> crate::worker::disposition::RetryPolicy {
    crate::worker::disposition::RetryPolicy {
        max_attempts: 5,
        base: Duration::from_secs(5),
        max: Duration::from_secs(300),
    }
}

#[test]
fn a_full_scratch_disk_is_a_transient_failure_of_the_job() {
    use crate::worker::disposition::{decide, Disposition};
    let p = pipeline();
    let dataset = p.settings.datasets.by_name("users").unwrap();
    let lineage = lineage("s3://lakeworker-landing/users/a.csv", chrono::Utc::now());
    // Larger, on several threads: the spool and the bad rows fill their write buffers and
    // fail while the rows stream, in the writing thread.
    let mut larger = String::from("user_id,age,signup_date\n");
    for i in 0..5000 {
        let age = if i % 50 == 0 {
            "many".to_owned()
        } else {
            i.to_string()
        };
        larger.push_str(&format!("u-{i},{age},2024/01/01\n"));
    }
    let runs = [
        (
            MIXED_USERS,
            crate::convert::ConvertOptions::sequential(8192),
        ),
        (
            larger.as_str(),
            crate::convert::ConvertOptions {
                batch_rows: 500,
                threads: 2,
                memory: p.settings.worker.conversion_memory,
            },
        ),
    ];
    // /dev/full answers every write with ENOSPC, as a full disk does; each scratch file
    // of the job in turn is made to land there.
    for ((input, options), file) in runs.iter().flat_map(|run| {
        ["part-00000.parquet", "records.arrow", "bad-rows.jsonl"].map(|file| (run, file))
    }) {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/dev/full", dir.path().join(file)).unwrap();
        let converted = object::convert_to_parts(
            input.as_bytes(),
            "users/a.csv",
            dataset,
            &lineage,
            *options,
            dir.path(),
            &p.settings.lake.parquet,
            None,
        );
        let file = format!("{file}, {} thread(s)", options.threads);
        let Err(error) = converted else {
            panic!("{file}: the conversion succeeded on a full disk")
        };
        assert!(
            matches!(&error, convert::ConvertError::Write(reason) if reason.contains("No space left on device")),
            "{file}: {error:?}"
        );
        let failed = JobError::Convert {
            what: lineage.source.clone(),
            source: error,
        };
        assert_eq!(failed.class(), ErrorClass::Transient, "{file}");
        assert_eq!(
            decide(&Err(failed), 1, &retry_policy(), None),
            Disposition::Retry(Duration::from_secs(5)),
            "{file}: the message comes back later"
        );
    }
}

#[tokio::test]
async fn a_scratch_dir_that_cannot_be_written_fails_the_job_not_the_worker() {
    let p = pipeline_with(&[("LAKEWORKER__WORKER__SCRATCH_DIR", "/dev/full")]);
    p.store
        .insert(LANDING, "users/a.csv", MIXED_USERS.as_bytes());
    let err = p
        .handle(&event(LANDING, "users/a.csv"), &job("m1"))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transient, "{err}");
    assert!(
        err.to_string().contains("creating scratch directory"),
        "{err}"
    );
    let record = p
        .ledger
        .record("s3://lakeworker-landing/users/a.csv")
        .unwrap();
    assert_eq!(record.status, Some(Status::Failed));
    assert!(record
        .last_error
        .unwrap()
        .contains("creating scratch directory"));
    assert!(p.store.keys(LAKE).is_empty());
    assert!(p.records.tables.lock().unwrap().is_empty());
    // The next delivery, with room on the disk, converts it.
    let p = Pipeline {
        settings: Arc::new(pipeline().settings.as_ref().clone()),
        ..p
    };
    let ObjectOutcome::Written(summary) = one_object(&p, "users/a.csv").await else {
        panic!()
    };
    assert_eq!((summary.rows_written, summary.rows_quarantined), (11, 1));
}

#[tokio::test]
async fn scratch_files_are_removed_whatever_the_outcome() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().to_str().unwrap();
    let p = pipeline_with(&[("LAKEWORKER__WORKER__SCRATCH_DIR", dir)]);
    let leftovers = || std::fs::read_dir(scratch.path()).unwrap().count();
    p.store
        .insert(LANDING, "users/a.csv", MIXED_USERS.as_bytes());
    assert!(matches!(
        one_object(&p, "users/a.csv").await,
        ObjectOutcome::Written(_)
    ));
    assert_eq!(leftovers(), 0);
    // Refused after a thousand part files were begun: they go too.
    let mut many = String::from("user_id,signup_date\n");
    for day in 0..=1000 {
        let date = crate::domain::schema::days_to_date(day)
            .unwrap()
            .format("%Y/%m/%d");
        many.push_str(&format!("u-{day},{date}\n"));
    }
    p.store.insert(LANDING, "users/many.csv", many.as_bytes());
    let ObjectOutcome::Rejected(rejection) = one_object(&p, "users/many.csv").await else {
        panic!()
    };
    assert_eq!(rejection.reason, "the file spans more than 1000 partitions");
    assert_eq!(leftovers(), 0);
}
