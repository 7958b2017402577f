//! The ledger: recorded failures, duplicates, leases, stopped jobs and reprocessing.

use super::*;
use crate::pipeline::error::ErrorClass;

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
