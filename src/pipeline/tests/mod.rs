//! Pipeline tests on in-memory stores and ledger: the shared helpers; the tests by theme.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::domain::envelope::S3Event;
use crate::testing::memory::{MemoryLedger, MemoryRecords, MemoryStore};

mod added;
mod history;
mod ledger;
mod objects;
mod pii;
mod rejection;
mod routing;
mod scratch;
mod table;

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

/// The users table's (user_id, age) items.
fn table<T>(p: &Pipeline<MemoryStore, MemoryRecords, MemoryLedger, T>) -> Vec<(String, String)> {
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
