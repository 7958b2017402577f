//! The load history on in-memory stores: a row per settled attempt (a failed one too),
//! written by a flush through the table port, kept when a flush fails.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use arrow::array::{Array, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::*;
use crate::convert::PartFile;
use crate::domain::history::LOADS_TABLE;
use crate::ports::{PartLocation, StoreError, StoreErrorKind};

/// A table that refuses the users dataset, and fails the first `history_failures` history
/// publishes after writing them (as a lost answer would); it keeps the (source, status)
/// of the history rows by the location they were written to, so a rewrite replaces.
#[derive(Default)]
struct FlakyTable {
    history_failures: AtomicU32,
    history: Mutex<BTreeMap<String, Vec<(String, String)>>>,
}

impl FlakyTable {
    fn rows(&self) -> Vec<(String, String)> {
        let mut rows: Vec<_> = self
            .history
            .lock()
            .unwrap()
            .values()
            .flatten()
            .cloned()
            .collect();
        rows.sort();
        rows
    }
}

impl TableSink for FlakyTable {
    fn locations(&self, dataset: &Dataset, id: &str, parts: &[PartFile]) -> Vec<PartLocation> {
        parts
            .iter()
            .map(|part| PartLocation {
                bucket: "t".into(),
                key: format!("{}/{id}-{}", dataset.name, part.seq),
            })
            .collect()
    }

    async fn publish(
        &self,
        dataset: &Dataset,
        _: &Claim,
        parts: &[PartFile],
        locations: &[PartLocation],
        _: &crate::ports::Slot,
        _: &CancellationToken,
    ) -> Result<(), StoreError> {
        let refuse = || StoreError::new("table", StoreErrorKind::Transient, "refused");
        if dataset.name == "users" {
            return Err(refuse());
        }
        if dataset.name != LOADS_TABLE {
            return Ok(());
        }
        for (part, at) in parts.iter().zip(locations) {
            let mut rows = Vec::new();
            let file = std::fs::File::open(&part.path).unwrap();
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap()
                .build()
                .unwrap();
            for batch in reader {
                let batch = batch.unwrap();
                let text = |name: &str| {
                    let column = batch.column_by_name(name).unwrap();
                    let strings = column.as_any().downcast_ref::<StringArray>().unwrap();
                    (0..strings.len())
                        .map(|i| strings.value(i).to_owned())
                        .collect::<Vec<_>>()
                };
                rows.extend(text("source_uri").into_iter().zip(text("status")));
            }
            self.history.lock().unwrap().insert(at.key.clone(), rows);
        }
        let failures = self.history_failures.load(Ordering::SeqCst);
        if failures > 0 {
            self.history_failures.store(failures - 1, Ordering::SeqCst);
            return Err(refuse());
        }
        Ok(())
    }
}

type HistoryPipeline = Pipeline<MemoryStore, MemoryRecords, MemoryLedger, FlakyTable>;

/// A pipeline with the history on (or off) whose table fails the first `failures`
/// history publishes.
fn with_history(on: bool, failures: u32) -> HistoryPipeline {
    let table = FlakyTable::default();
    table.history_failures.store(failures, Ordering::SeqCst);
    let on = if on { "true" } else { "false" };
    pipeline_with(&[("LAKEWORKER__LAKE__HISTORY", on)]).with_table(table)
}

/// Stores an events file at `key` and handles its event as message `id`.
async fn load_events(p: &HistoryPipeline, key: &str, id: &str) {
    let line = r#"{"event_id": "e", "user_id": "u", "at": "2020-01-01T00:00:00Z"}"#;
    p.store.insert(LANDING, key, line.as_bytes());
    p.handle(&event(LANDING, key), &job(id)).await.unwrap();
}

#[tokio::test]
async fn settled_attempts_are_flushed_and_a_failed_flush_keeps_its_rows() {
    let p = with_history(true, 1);
    load_events(&p, "events/a.jsonl", "m1").await;
    p.store.insert(
        LANDING,
        "users/a.csv",
        b"user_id,signup_date\nu-1,2024/01/01\n",
    );
    let failed = p.handle(&event(LANDING, "users/a.csv"), &job("m2")).await;
    assert!(failed.is_err(), "{failed:?}");

    let cancel = CancellationToken::new();
    assert!(
        p.flush_history(&cancel).await.is_err(),
        "the first flush fails"
    );
    // Another object settles meanwhile: its row goes into a flush of its own.
    load_events(&p, "events/b.jsonl", "m3").await;
    assert_eq!(
        p.flush_history(&cancel).await.unwrap(),
        3,
        "the failed flush is retried, then the new row"
    );
    assert_eq!(p.flush_history(&cancel).await.unwrap(), 0, "nothing twice");
    assert_eq!(
        p.table.rows(),
        [
            (format!("s3://{LANDING}/events/a.jsonl"), "done".to_owned()),
            (format!("s3://{LANDING}/events/b.jsonl"), "done".to_owned()),
            (format!("s3://{LANDING}/users/a.csv"), "failed".to_owned()),
        ],
        "the retry rewrote its own files: every row once"
    );
    assert_eq!(
        p.table.history.lock().unwrap().len(),
        2,
        "two flushes' files"
    );
    // Each flush is an entry of the ledger, done; the retried one took two attempts.
    let records = p.ledger.records.lock().unwrap();
    let mut flushes: Vec<(&str, u64)> = records
        .values()
        .filter(|r| r.uri.starts_with("lakeworker://"))
        .map(|r| (r.status.map_or("?", |s| s.as_str()), r.attempts))
        .collect();
    flushes.sort();
    assert_eq!(flushes, [("done", 1), ("done", 2)]);
}

#[tokio::test]
async fn without_the_history_nothing_is_kept() {
    let p = with_history(false, 0);
    load_events(&p, "events/a.jsonl", "m1").await;
    assert_eq!(p.flush_history(&CancellationToken::new()).await.unwrap(), 0);
    assert!(p.table.rows().is_empty());
}

#[tokio::test]
async fn a_flush_that_fails_again_does_not_hold_up_newer_rows() {
    let p = with_history(true, 2);
    let cancel = CancellationToken::new();
    for (n, key) in ["events/a.jsonl", "events/b.jsonl"].iter().enumerate() {
        load_events(&p, key, &format!("m{n}")).await;
        // a's flush fails twice: its retry fails with b's flush, which lands.
        assert!(p.flush_history(&cancel).await.is_err());
    }
    assert_eq!(
        p.table.rows(),
        [
            (format!("s3://{LANDING}/events/a.jsonl"), "done".to_owned()),
            (format!("s3://{LANDING}/events/b.jsonl"), "done".to_owned()),
        ],
        "b's row is in; a's files were written by its failed attempts"
    );
    assert_eq!(
        p.flush_history(&cancel).await.unwrap(),
        1,
        "a's flush, at last"
    );
    assert_eq!(
        p.table.history.lock().unwrap().len(),
        2,
        "each flush's files once"
    );
    assert_eq!(p.flush_history(&cancel).await.unwrap(), 0);
}
