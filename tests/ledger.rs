//! The DynamoDB ledger's conditional writes against the emulator: only the owner of a
//! live claim may renew, record what it publishes, or settle; a claim returns what earlier
//! attempts recorded; a reprocess request claims a finished version once.

mod common;

use std::time::Duration;

use common::*;
use lakeworker::aws::ledger::DynamoLedger;
use lakeworker::domain::ledger::{Claim, ClaimOutcome, Completion, LedgerKey, Status};
use lakeworker::ports::Ledger;

fn claim(owner: &str, lease: Duration, reprocess: Option<&str>) -> Claim {
    Claim {
        key: LedgerKey {
            uri: "s3://landing/users/a.csv".into(),
            version: "v:1".into(),
        },
        owner: owner.into(),
        lease,
        dataset: "users".into(),
        message_id: "m".into(),
        reprocess: reprocess.map(str::to_owned),
        etag: Some("e1".into()),
    }
}

fn claimed(outcome: ClaimOutcome) -> (u32, Vec<String>) {
    match outcome {
        ClaimOutcome::Claimed { attempt, earlier } => (attempt, earlier.all()),
        other => panic!("expected a claim, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_live_owner_writes_and_reprocess_claims_once() {
    let env = TestEnv::builder("ledger").quiet().start().await;
    let ledger = DynamoLedger::new(env.clients.dynamodb.clone(), env.ledger_table.clone());
    let part = |n: u32| format!("s3://lake/curated/users/d=1/part-id-{n}.parquet");

    // A claim whose lease runs out before it settles.
    let stale = claim("w1/m/0", Duration::from_millis(1500), None);
    assert_eq!(
        claimed(ledger.claim(&stale).await.unwrap()),
        (1, Vec::new())
    );
    assert!(ledger
        .publishing(&stale, &[part(0), part(1)])
        .await
        .unwrap());
    assert!(ledger.renew(&stale).await.unwrap());
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert!(
        !ledger.finish(&stale, &Completion::default()).await.unwrap(),
        "a lease that ran out cannot settle, even before anyone claims"
    );
    assert!(!ledger.renew(&stale).await.unwrap());

    // The next owner learns what the stale attempt recorded.
    let fresh = claim("w2/m/0", Duration::from_secs(60), None);
    let (attempt, earlier) = claimed(ledger.claim(&fresh).await.unwrap());
    assert_eq!((attempt, earlier), (2, vec![part(0), part(1)]));
    assert!(!ledger.publishing(&stale, &[part(9)]).await.unwrap());
    assert!(!ledger
        .reject(&stale, &Completion::default(), "late")
        .await
        .unwrap());
    ledger.fail(&stale, "late").await.unwrap();
    let key = LedgerKey {
        uri: "s3://landing/users/a.csv".into(),
        version: "v:1".into(),
    };
    let record = ledger.get(&key).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.owner.as_deref()),
        (Some(Status::Processing), Some("w2/m/0")),
        "the stale owner changed nothing"
    );
    assert_eq!(record.pending_outputs, [part(0), part(1)]);

    let done = Completion {
        rows_in: 2,
        rows_written: 2,
        rows_rejected: 0,
        rows_rescued: 1,
        outputs: vec![part(0)],
    };
    assert!(ledger.finish(&fresh, &done).await.unwrap());
    let record = ledger.get(&key).await.unwrap().unwrap();
    assert_eq!(record.rows_rescued, Some(1));
    assert_eq!(record.status, Some(Status::Done));
    assert_eq!(record.outputs, [part(0)]);
    assert!(record.pending_outputs.is_empty(), "{record:?}");

    // Done: a plain claim finds it finished; a reprocess request claims it once.
    let again = claim("w3/m/0", Duration::from_secs(60), None);
    assert_eq!(
        ledger.claim(&again).await.unwrap(),
        ClaimOutcome::Finished {
            status: Status::Done
        }
    );
    let reprocess = claim("w3/m/1", Duration::from_secs(60), Some("r-1"));
    assert_eq!(
        claimed(ledger.claim(&reprocess).await.unwrap()),
        (3, vec![part(0)])
    );
    assert!(ledger.finish(&reprocess, &done).await.unwrap());
    let repeat = claim("w4/m/0", Duration::from_secs(60), Some("r-1"));
    assert_eq!(
        ledger.claim(&repeat).await.unwrap(),
        ClaimOutcome::Finished {
            status: Status::Done
        },
        "the same request does not run twice"
    );
    let plain = claim("w4/m/1", Duration::from_secs(60), None);
    assert!(matches!(
        ledger.claim(&plain).await.unwrap(),
        ClaimOutcome::Finished { .. }
    ));
    let next = claim("w4/m/2", Duration::from_secs(60), Some("r-2"));
    assert_eq!(claimed(ledger.claim(&next).await.unwrap()).0, 4);
    assert_eq!(
        ledger
            .get(&key)
            .await
            .unwrap()
            .unwrap()
            .reprocess
            .as_deref(),
        Some("r-2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_columns_form_one_list_under_concurrent_appends() {
    let env = TestEnv::builder("ledgercols").quiet().start().await;
    let ledger = DynamoLedger::new(env.clients.dynamodb.clone(), env.ledger_table.clone());
    let empty = ledger.dataset_columns("users").await.unwrap();
    assert!(empty.added.is_empty() && empty.in_catalog == 0);
    // Eight tasks at once, each with its own column and a shared one.
    let adds = (0..8).map(|n| {
        let ledger = ledger.clone();
        async move {
            let names = [format!("c{n}"), "shared".to_owned()];
            ledger
                .add_columns("users", &names, &format!("s3://l/{n}.csv"))
                .await
                .unwrap()
        }
    });
    let results = futures_util::future::join_all(adds).await;
    let list = ledger.dataset_columns("users").await.unwrap();
    let names: Vec<&str> = list.names().collect();
    assert_eq!(names.len(), 9, "{names:?}");
    for n in 0..8 {
        assert_eq!(
            names.iter().filter(|c| **c == format!("c{n}")).count(),
            1,
            "{names:?}"
        );
    }
    assert_eq!(names.iter().filter(|c| **c == "shared").count(), 1);
    // Each name was added by exactly one call, and every call saw its names listed.
    let added: usize = results.iter().map(|(_, now)| now.len()).sum();
    assert_eq!(added, 9);
    assert!(results
        .iter()
        .all(|(after, _)| after.names().any(|n| n == "shared")));

    // A name differing only in case is not added; the caller finds it missing.
    let (after, now) = ledger
        .add_columns("users", &["SHARED".to_owned()], "s3://l/x.csv")
        .await
        .unwrap();
    assert!(now.is_empty() && !after.names().any(|n| n == "SHARED"));
    // The catalog count only rises.
    ledger.columns_in_catalog("users", 5).await.unwrap();
    ledger.columns_in_catalog("users", 3).await.unwrap();
    assert_eq!(ledger.dataset_columns("users").await.unwrap().in_catalog, 5);
    // Another dataset's list is its own; a count without a list records nothing.
    ledger.columns_in_catalog("events", 2).await.unwrap();
    assert_eq!(
        ledger.dataset_columns("events").await.unwrap(),
        Default::default()
    );
}
