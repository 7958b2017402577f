//! In-memory object store, records table and ledger.

use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::path::Path;
use std::sync::Mutex;

use arrow::record_batch::RecordBatch;
use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::aws::items::{upsert_items, Item};
use crate::domain::dataset::{AddedColumn, Dataset, DatasetColumns};
use crate::domain::envelope::ObjectRef;
use crate::domain::lake::NewPartition;
use crate::domain::ledger::{
    timestamp, Claim, ClaimOutcome, Completion, EarlierOutputs, LedgerKey, LedgerRecord, Status,
};
use crate::ports::{
    Ledger, ObjectInfo, ObjectStore, Opened, RecordStore, StoreError, StoreErrorKind,
};

/// Objects by `(bucket, key)`.
#[derive(Default)]
pub struct MemoryStore {
    pub objects: Mutex<BTreeMap<(String, String), Vec<u8>>>,
    /// What HeadObject says of every object's LastModified.
    pub last_modified: Mutex<chrono::DateTime<Utc>>,
    /// ETags of landing objects, where a test sets them: HeadObject of an object naming
    /// another ETag is refused (412), as S3's If-Match is.
    pub etags: Mutex<BTreeMap<(String, String), String>>,
    /// Runs inside every copy, before it completes (a test's way to act mid-job).
    pub during_copy: Mutex<Option<Box<dyn Fn() + Send>>>,
}

impl MemoryStore {
    pub fn insert(&self, bucket: &str, key: &str, body: &[u8]) {
        self.objects
            .lock()
            .unwrap()
            .insert((bucket.to_owned(), key.to_owned()), body.to_vec());
    }

    pub fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let objects = self.objects.lock().unwrap();
        objects.get(&(bucket.to_owned(), key.to_owned())).cloned()
    }

    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let objects = self.objects.lock().unwrap();
        objects
            .keys()
            .filter(|(b, _)| b == bucket)
            .map(|(_, k)| k.clone())
            .collect()
    }
}

impl ObjectStore for MemoryStore {
    async fn open(&self, object: &ObjectRef) -> Result<Opened, StoreError> {
        let objects = self.objects.lock().unwrap();
        match objects.get(&(object.bucket.clone(), object.key.clone())) {
            Some(body) => Ok(Opened {
                size: Some(body.len() as u64),
                reader: Box::new(Cursor::new(body.clone())),
            }),
            None => Err(StoreError::new(
                "GetObject",
                StoreErrorKind::NotFound,
                "NoSuchKey",
            )),
        }
    }

    async fn head(&self, object: &ObjectRef) -> Result<ObjectInfo, StoreError> {
        let id = (object.bucket.clone(), object.key.clone());
        if let (Some(wanted), Some(held)) = (&object.etag, self.etags.lock().unwrap().get(&id)) {
            if wanted != held {
                return Err(StoreError::new(
                    "HeadObject",
                    StoreErrorKind::PreconditionFailed,
                    "PreconditionFailed",
                ));
            }
        }
        let objects = self.objects.lock().unwrap();
        match objects.get(&(object.bucket.clone(), object.key.clone())) {
            Some(body) => Ok(ObjectInfo {
                version_id: object.version_id.clone(),
                etag: object.etag.clone(),
                size: Some(body.len() as u64),
                last_modified: Some(*self.last_modified.lock().unwrap()),
            }),
            None => Err(StoreError::new(
                "HeadObject",
                StoreErrorKind::NotFound,
                "NoSuchKey",
            )),
        }
    }

    async fn copy(&self, object: &ObjectRef, bucket: &str, key: &str) -> Result<(), StoreError> {
        let hook = self.during_copy.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
            // A server-side copy takes a while; a job stopped meanwhile must not wait.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let body = self
            .objects
            .lock()
            .unwrap()
            .get(&(object.bucket.clone(), object.key.clone()))
            .cloned();
        let body = body
            .ok_or_else(|| StoreError::new("CopyObject", StoreErrorKind::NotFound, "NoSuchKey"))?;
        self.insert(bucket, key, &body);
        Ok(())
    }

    async fn delete(&self, object: &ObjectRef) -> Result<(), StoreError> {
        self.objects
            .lock()
            .unwrap()
            .remove(&(object.bucket.clone(), object.key.clone()));
        Ok(())
    }

    async fn put_bytes(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        self.insert(bucket, key, &body);
        Ok(())
    }

    async fn put_file(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        _cancel: &CancellationToken,
    ) -> Result<(), StoreError> {
        let body = std::fs::read(path)
            .map_err(|e| StoreError::new("PutObject", StoreErrorKind::Transient, e.to_string()))?;
        self.insert(bucket, key, &body);
        Ok(())
    }
}

/// Items by table, in write order.
#[derive(Default)]
pub struct MemoryRecords {
    pub tables: Mutex<HashMap<String, Vec<Item>>>,
    /// While set, every upsert is refused as malformed (a permanent failure).
    pub refuse: std::sync::atomic::AtomicBool,
}

impl RecordStore for MemoryRecords {
    async fn upsert(
        &self,
        table: &str,
        dataset: &Dataset,
        batch: &RecordBatch,
    ) -> Result<u64, StoreError> {
        // What the DynamoDB adapter would send.
        let items = upsert_items(dataset, batch);
        let written = items.len() as u64;
        if self.refuse.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::new(
                "BatchWriteItem",
                StoreErrorKind::Rejected,
                "ValidationException: refused",
            ));
        }
        self.tables
            .lock()
            .unwrap()
            .entry(table.to_owned())
            .or_default()
            .extend(items);
        Ok(written)
    }
}

/// Ledger records by key, with the same claim and ownership rules as the DynamoDB ledger.
#[derive(Default)]
pub struct MemoryLedger {
    pub records: Mutex<BTreeMap<LedgerKey, LedgerRecord>>,
    /// While set, renewals fail as if DynamoDB were unreachable.
    pub renewals_fail: std::sync::atomic::AtomicBool,
    /// Renewal calls, failed or not.
    pub renewals: std::sync::atomic::AtomicUsize,
    /// Pending catalog partitions by (database, table, value).
    pub partitions: Mutex<BTreeMap<(String, String, String), NewPartition>>,
    /// Added columns by dataset.
    pub columns: Mutex<HashMap<String, DatasetColumns>>,
}

impl MemoryLedger {
    /// Records a finished claim (done or rejected) with its counts, outputs and error.
    fn settle(
        &self,
        claim: &Claim,
        status: Status,
        counts: &Completion,
        error: Option<&str>,
    ) -> bool {
        self.owned(claim, |r| {
            r.status = Some(status);
            r.lease_expires_at = None;
            r.rows_in = Some(counts.rows_in);
            r.rows_written = Some(counts.rows_written);
            r.rows_rejected = Some(counts.rows_rejected);
            r.rows_rescued = Some(counts.rows_rescued);
            r.outputs = counts.outputs.clone();
            r.pending_outputs.clear();
            r.last_error = error.map(str::to_owned);
        })
    }

    pub fn status(&self, uri: &str) -> Option<Status> {
        let records = self.records.lock().unwrap();
        records
            .values()
            .find(|r| r.uri == uri)
            .and_then(|r| r.status)
    }

    pub fn record(&self, uri: &str) -> Option<LedgerRecord> {
        let records = self.records.lock().unwrap();
        records.values().find(|r| r.uri == uri).cloned()
    }

    /// Runs `write` on the claim's record if its owner holds a live processing claim.
    fn owned(&self, claim: &Claim, write: impl FnOnce(&mut LedgerRecord)) -> bool {
        let mut records = self.records.lock().unwrap();
        match records.get_mut(&claim.key) {
            Some(r)
                if r.owner.as_ref() == Some(&claim.owner)
                    && r.status == Some(Status::Processing)
                    && r.lease_expires_at.is_some_and(|until| until > Utc::now()) =>
            {
                write(r);
                true
            }
            _ => false,
        }
    }
}

impl Ledger for MemoryLedger {
    async fn claim(&self, claim: &Claim) -> Result<ClaimOutcome, StoreError> {
        let now = Utc::now();
        let mut records = self.records.lock().unwrap();
        let record = records
            .entry(claim.key.clone())
            .or_insert_with(|| LedgerRecord {
                uri: claim.key.uri.clone(),
                version: claim.key.version.clone(),
                ..LedgerRecord::default()
            });
        let asked_again = claim.reprocess.is_some() && record.reprocess != claim.reprocess;
        if let Some(status) = record.status.filter(|s| s.is_final() && !asked_again) {
            return Ok(ClaimOutcome::Finished { status });
        }
        if let Some(until) = record.lease_expires_at.filter(|until| *until > now) {
            let owner = record.owner.clone().unwrap_or_default();
            return Ok(ClaimOutcome::Busy { owner, until });
        }
        record.status = Some(Status::Processing);
        record.owner = Some(claim.owner.clone());
        record.lease_expires_at = Some(now + claim.lease);
        record.attempts += 1;
        if claim.reprocess.is_some() {
            record.reprocess = claim.reprocess.clone();
        }
        if claim.etag.is_some() {
            record.etag = claim.etag.clone();
        }
        Ok(ClaimOutcome::Claimed {
            attempt: record.attempts as u32,
            earlier: EarlierOutputs {
                done: record.outputs.clone(),
                pending: record.pending_outputs.clone(),
                commits: record.commit_ids.clone(),
            },
        })
    }

    async fn renew(&self, claim: &Claim) -> Result<bool, StoreError> {
        use std::sync::atomic::Ordering;
        self.renewals.fetch_add(1, Ordering::SeqCst);
        if self.renewals_fail.load(Ordering::SeqCst) {
            return Err(StoreError::new(
                "UpdateItem",
                StoreErrorKind::Transient,
                "timed out",
            ));
        }
        Ok(self.owned(claim, |r| {
            r.lease_expires_at = Some(Utc::now() + claim.lease);
        }))
    }

    async fn publishing(&self, claim: &Claim, outputs: &[String]) -> Result<bool, StoreError> {
        Ok(self.owned(claim, |r| {
            for output in outputs {
                if !r.pending_outputs.contains(output) {
                    r.pending_outputs.push(output.clone());
                }
            }
        }))
    }

    async fn finish(&self, claim: &Claim, done: &Completion) -> Result<bool, StoreError> {
        Ok(self.settle(claim, Status::Done, done, None))
    }

    async fn reject(
        &self,
        claim: &Claim,
        counts: &Completion,
        reason: &str,
    ) -> Result<bool, StoreError> {
        Ok(self.settle(claim, Status::Rejected, counts, Some(reason)))
    }

    async fn fail(&self, claim: &Claim, error: &str) -> Result<(), StoreError> {
        let mut records = self.records.lock().unwrap();
        if let Some(r) = records.get_mut(&claim.key) {
            if r.owner.as_ref() == Some(&claim.owner) && r.status == Some(Status::Processing) {
                r.status = Some(Status::Failed);
                r.lease_expires_at = None;
                r.last_error = Some(error.to_owned());
            }
        }
        Ok(())
    }

    async fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        self.fail(claim, "released").await
    }

    async fn version_with_etag(&self, uri: &str, etag: &str) -> Result<Option<String>, StoreError> {
        let records = self.records.lock().unwrap();
        Ok(records
            .values()
            .filter(|r| r.uri == uri && r.etag.as_deref() == Some(etag))
            .find_map(|r| r.version.strip_prefix("v:").map(str::to_owned)))
    }

    async fn note_partitions(
        &self,
        database: &str,
        partitions: &[NewPartition],
    ) -> Result<(), StoreError> {
        let mut pending = self.partitions.lock().unwrap();
        for p in partitions {
            let key = (database.to_owned(), p.dataset.clone(), p.value.clone());
            pending.insert(key, p.clone());
        }
        Ok(())
    }

    async fn partitions_registered(
        &self,
        database: &str,
        partitions: &[NewPartition],
    ) -> Result<(), StoreError> {
        let mut pending = self.partitions.lock().unwrap();
        for p in partitions {
            pending.remove(&(database.to_owned(), p.dataset.clone(), p.value.clone()));
        }
        Ok(())
    }

    async fn pending_partitions(
        &self,
        database: &str,
        dataset: &str,
    ) -> Result<Vec<NewPartition>, StoreError> {
        let pending = self.partitions.lock().unwrap();
        Ok(pending
            .iter()
            .filter(|((d, t, _), _)| d == database && t == dataset)
            .map(|(_, p)| p.clone())
            .collect())
    }

    async fn dataset_columns(&self, dataset: &str) -> Result<DatasetColumns, StoreError> {
        let columns = self.columns.lock().unwrap();
        Ok(columns.get(dataset).cloned().unwrap_or_default())
    }

    async fn add_columns(
        &self,
        dataset: &str,
        names: &[String],
        source: &str,
    ) -> Result<(DatasetColumns, Vec<String>), StoreError> {
        let mut columns = self.columns.lock().unwrap();
        let list = columns.entry(dataset.to_owned()).or_default();
        let mut added = Vec::new();
        for name in names {
            if list.names().all(|n| !n.eq_ignore_ascii_case(name)) {
                list.added.push(AddedColumn {
                    name: name.clone(),
                    added_at: timestamp(Utc::now()),
                    source: source.to_owned(),
                });
                added.push(name.clone());
            }
        }
        Ok((list.clone(), added))
    }

    async fn columns_in_catalog(&self, dataset: &str, count: usize) -> Result<(), StoreError> {
        let mut columns = self.columns.lock().unwrap();
        let list = columns.entry(dataset.to_owned()).or_default();
        list.in_catalog = list.in_catalog.max(count);
        Ok(())
    }
}
