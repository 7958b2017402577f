//! The ports: what the pipeline, the worker and the catalog need from the outside world,
//! as traits with one neutral error type. `aws/` implements them over the AWS SDK;
//! `testing/` has in-memory fakes. Nothing here names the SDK.
//!
//! - [`Queue`]: receive, extend, delete and dead-letter messages.
//! - [`ObjectStore`]: stream a landing object, upload a lake part.
//! - [`RecordStore`]: upsert user rows.
//! - [`Ledger`]: claim, renew and settle object versions.
//! - [`QueryRunner`]: run one SQL statement (Athena DDL for the catalog).
//! - [`TableSink`]: make an object's converted parts visible in its dataset's table
//!   (Hive-partitioned Parquet with catalog partitions: [`crate::table::hive`]; Apache
//!   Iceberg: [`crate::table::iceberg`]).
//! - [`CommitLog`]: the ledger's side of batched Iceberg commits: which commits an object
//!   joined, what a commit carried, and the per-table commit lease.
//!
//! Every call fails with a [`StoreError`] whose [`StoreErrorKind`] says whether a retry
//! can help.

use std::future::Future;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::convert::PartFile;
use crate::domain::dataset::{Dataset, DatasetColumns, FieldIds};
use crate::domain::envelope::ObjectRef;
use crate::domain::lake::NewPartition;
use crate::domain::ledger::{Claim, ClaimOutcome, CommitRecord, Completion, LedgerKey};

/// What kind of failure a call had, which decides what the worker does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// Throttling, 5xx, timeouts, connection errors: retry later.
    Transient,
    /// The resource does not exist (object, bucket, table, queue).
    NotFound,
    /// A conditional request's condition failed (the object changed since the event).
    PreconditionFailed,
    /// The request was refused and the same request will be refused again.
    Rejected,
    /// The job was cancelled while the call was under way (shutdown, lost message).
    Cancelled,
}

/// A failed call: which operation, what kind of failure, and the service's explanation.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation} failed: {}{message}", code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
pub struct StoreError {
    pub operation: &'static str,
    pub kind: StoreErrorKind,
    /// The service's error code, such as `NoSuchKey`, when it sent one.
    pub code: Option<String>,
    pub message: String,
}

impl StoreError {
    pub fn new(operation: &'static str, kind: StoreErrorKind, message: impl Into<String>) -> Self {
        StoreError {
            operation,
            kind,
            code: None,
            message: message.into(),
        }
    }

    pub fn has_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    pub fn is_transient(&self) -> bool {
        self.kind == StoreErrorKind::Transient
    }

    pub fn cancelled(operation: &'static str) -> Self {
        StoreError::new(operation, StoreErrorKind::Cancelled, "cancelled")
    }
}

/// One received SQS message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    /// `ApproximateReceiveCount`: 1 on the first delivery.
    pub receive_count: u32,
    /// When this worker received it; SQS's 12-hour visibility limit counts from here.
    pub received_at: Instant,
    /// `SentTimestamp`: when the message entered the queue, in milliseconds since the epoch.
    pub sent_at_ms: Option<u64>,
}

/// A message for the dead-letter queue: a body (the original, or a pointer to where it
/// was kept) and the `lakeworker.*` attributes that say why. Built by
/// [`crate::worker::dead_letter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter<'a> {
    pub body: &'a str,
    pub attributes: Vec<MessageAttribute>,
}

/// One SQS message attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageAttribute {
    pub name: &'static str,
    /// SQS's data type: `String` or `Number`.
    pub data_type: &'static str,
    pub value: String,
}

/// The work queue (and its dead-letter queue).
pub trait Queue: Send + Sync + 'static {
    /// Long-polls for up to `max` (1-10) messages, each hidden from other consumers for
    /// `visibility` (whatever the queue's default visibility timeout is).
    fn receive(
        &self,
        max: i32,
        wait: Duration,
        visibility: Duration,
    ) -> impl Future<Output = Result<Vec<Received>, StoreError>> + Send;

    /// Deletes up to 10 messages; returns the message ids that could not be deleted.
    fn delete_batch(
        &self,
        messages: &[Received],
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Sets the message's visibility timeout, counted from now (0 releases it at once).
    /// `NotFound` means the receipt handle is no longer valid: the message is not ours.
    fn change_visibility(
        &self,
        message: &Received,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Sends `letter` to the dead-letter queue. The caller deletes the original afterwards.
    fn dead_letter(
        &self,
        letter: &DeadLetter<'_>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// An object opened for reading.
pub struct Opened {
    /// Streams the body; read it from a blocking thread. Errors of the download itself
    /// are [`crate::convert::SourceFailed`].
    pub reader: Box<dyn Read + Send>,
    /// The object's size as the service reports it.
    pub size: Option<u64>,
}

/// What S3 says of one object version (HeadObject).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The version id; `None` in a bucket without versioning (S3's `null` version too).
    pub version_id: Option<String>,
    /// The ETag without quotes.
    pub etag: Option<String>,
    pub size: Option<u64>,
    pub last_modified: Option<DateTime<Utc>>,
}

/// Landing objects in, lake objects out.
pub trait ObjectStore: Send + Sync + 'static {
    /// Opens the exact version the event names, streamed (never held whole in memory).
    fn open(&self, object: &ObjectRef) -> impl Future<Output = Result<Opened, StoreError>> + Send;

    /// Describes the exact version the object names (by version id, else only while the
    /// key still holds its ETag, else whatever is there), without reading it.
    fn head(
        &self,
        object: &ObjectRef,
    ) -> impl Future<Output = Result<ObjectInfo, StoreError>> + Send;

    /// Copies the exact version the event names to `bucket/key`, server-side.
    fn copy(
        &self,
        object: &ObjectRef,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes the exact version the event names from the landing bucket (with no version
    /// id: only while the key still holds the event's ETag).
    fn delete(&self, object: &ObjectRef) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Writes a small object (a report) from memory.
    fn put_bytes(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Uploads a local file to `bucket/key`, replacing what is there. On `cancel` the
    /// upload stops (a multipart upload is aborted) and the call fails with `Cancelled`.
    fn put_file(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        cancel: &CancellationToken,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The DynamoDB tables of user datasets.
pub trait RecordStore: Send + Sync + 'static {
    /// Puts the rows of `batch` (every column of `dataset`, as the conversion makes them)
    /// into `table`, whole-item by the dataset's records key; of rows sharing a key, the
    /// last wins. Returns how many items were written.
    fn upsert(
        &self,
        table: &str,
        dataset: &Dataset,
        batch: &RecordBatch,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// The ledger of object versions (see [`crate::domain::ledger`]). Every write after the claim is
/// conditioned on the owner still holding the claim (and, but for `fail` and `release`, a
/// lease that has not run out): `false` means it no longer does and nothing was written.
pub trait Ledger: Send + Sync + 'static {
    /// Claims the object for `claim.owner` unless it is finished (and no new reprocess
    /// request asks for it) or leased by someone else.
    fn claim(&self, claim: &Claim)
        -> impl Future<Output = Result<ClaimOutcome, StoreError>> + Send;

    /// Extends the owner's lease.
    fn renew(&self, claim: &Claim) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records, before anything is uploaded, the outputs (`s3://` URIs) this attempt will
    /// publish, beside those earlier attempts recorded.
    fn publishing(
        &self,
        claim: &Claim,
        outputs: &[String],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records success with counts and outputs.
    fn finish(
        &self,
        claim: &Claim,
        done: &Completion,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records that the file was refused for good (an answered question): later
    /// deliveries are deleted without work.
    fn reject(
        &self,
        claim: &Claim,
        counts: &Completion,
        reason: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records a failed attempt and drops the lease, so the next delivery can claim. The
    /// outputs it recorded as published stay listed.
    fn fail(
        &self,
        claim: &Claim,
        error: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Drops the lease of an attempt that was cancelled (shutdown).
    fn release(&self, claim: &Claim) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The version id of a record of `uri` claimed with ETag `etag`, if there is one: an
    /// ETag-only event for a version that is gone from the bucket maps to it.
    fn version_with_etag(
        &self,
        uri: &str,
        etag: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Keeps partitions written to the lake until the catalog confirms them
    /// ([`Ledger::partitions_registered`]), so a crash between the write and the
    /// registration loses none: the registrar replays what is pending at start-up.
    fn note_partitions(
        &self,
        database: &str,
        partitions: &[NewPartition],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The catalog registered these partitions: they are no longer pending.
    fn partitions_registered(
        &self,
        database: &str,
        partitions: &[NewPartition],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The partitions of `dataset`'s table still waiting for the catalog.
    fn pending_partitions(
        &self,
        database: &str,
        dataset: &str,
    ) -> impl Future<Output = Result<Vec<NewPartition>, StoreError>> + Send;

    /// The columns `on_new_columns = "add"` gave `dataset` so far, read consistently.
    fn dataset_columns(
        &self,
        dataset: &str,
    ) -> impl Future<Output = Result<DatasetColumns, StoreError>> + Send;

    /// Appends the `names` the dataset has not added yet (brought by the file `source`),
    /// atomically: tasks adding at once agree on one list with each name once. A name
    /// differing only in case from a listed one is not added. Returns the list after the
    /// add and the names this call added.
    fn add_columns(
        &self,
        dataset: &str,
        names: &[String],
        source: &str,
    ) -> impl Future<Output = Result<(DatasetColumns, Vec<String>), StoreError>> + Send;

    /// The catalog has the first `count` added columns of `dataset` (never lowers it).
    fn columns_in_catalog(
        &self,
        dataset: &str,
        count: usize,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Runs one SQL statement to completion.
pub trait QueryRunner: Send + Sync + 'static {
    /// `database` is the default database of the statement, if any.
    fn run(
        &self,
        sql: &str,
        database: Option<&str>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A job's place among the worker's `queue.max_in_flight`: held while it works; a job that
/// only waits (for an Iceberg commit) may give it back, so the poller can take another
/// message meanwhile. Giving back is once; a job without a place gives back nothing.
#[derive(Debug, Clone, Default)]
pub struct Slot(Arc<std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>>);

impl Slot {
    pub fn new(permit: tokio::sync::OwnedSemaphorePermit) -> Slot {
        Slot(Arc::new(std::sync::Mutex::new(Some(permit))))
    }

    /// Gives the place back; `false` if it was given back before (or there was none).
    pub fn give_back(&self) -> bool {
        self.0
            .lock()
            .map(|mut p| p.take().is_some())
            .unwrap_or(false)
    }
}

/// Where one part of an object's table output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartLocation {
    pub bucket: String,
    pub key: String,
}

/// A dataset's table: makes the converted parts of one object visible, idempotently (a
/// retry with the same object id writes the same locations). The pipeline records
/// [`TableSink::locations`] in the ledger before [`TableSink::publish`], so a later
/// attempt can remove what it does not rewrite.
pub trait TableSink: Send + Sync + 'static {
    /// Where each of `parts` will be written, in the same order. `object_id` names the
    /// source version ([`crate::domain::lake::object_id`]).
    fn locations(
        &self,
        dataset: &Dataset,
        object_id: &str,
        parts: &[PartFile],
    ) -> Vec<PartLocation>;

    /// Whether an earlier attempt of `claim`'s object already made its rows visible for
    /// good (one of the Iceberg `commits` it joined, as the claim read them, landed
    /// before the ledger settled): then there is nothing to write. Hive parts are
    /// rewritten idempotently instead, so: no.
    fn committed(
        &self,
        _dataset: &Dataset,
        _claim: &Claim,
        _commits: &[String],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async { Ok(false) }
    }

    /// The field ids of `dataset`'s table, when its format numbers fields (Iceberg): the
    /// conversion writes them ([`Dataset::field_ids`]).
    fn field_ids(&self, _dataset: &Dataset) -> Option<Arc<FieldIds>> {
        None
    }

    /// Makes the table hold every column of `dataset`, whose last `dataset.added` columns
    /// `on_new_columns = "add"` added (the same list in every task, from the ledger);
    /// `added_now` are those this task's ledger write added, for a catalog that must be
    /// told once. Called before parts of such a dataset are converted and published.
    fn evolve(
        &self,
        _dataset: &Dataset,
        _added_now: &[String],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async { Ok(()) }
    }

    /// Uploads the parts to their locations and makes them visible in the table, for the
    /// object `claim` holds. On `cancel` it stops and fails with
    /// [`StoreErrorKind::Cancelled`]. While it only waits, it may give the job's `slot`
    /// back.
    fn publish(
        &self,
        dataset: &Dataset,
        claim: &Claim,
        parts: &[PartFile],
        locations: &[PartLocation],
        slot: &Slot,
        cancel: &CancellationToken,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The ledger's side of batched Iceberg commits ([`crate::table::iceberg`]).
pub trait CommitLog: Send + Sync + 'static {
    /// Adds `commit_id` to the commits the claimed object joined, while the claim is the
    /// owner's with a live lease (`false`: it is not, and nothing was written).
    fn join_commit(
        &self,
        claim: &Claim,
        commit_id: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Every commit id the object version ever joined, read consistently.
    fn commit_ids(
        &self,
        key: &LedgerKey,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Writes the commit record (objects, no snapshot yet) unless it exists.
    fn record_commit(
        &self,
        commit: &CommitRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The commit record, read consistently.
    fn commit_record(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<CommitRecord>, StoreError>> + Send;

    /// The commit landed as `snapshot_id`.
    fn commit_landed(
        &self,
        id: &str,
        snapshot_id: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Takes (or extends) the commit lease of `table` for `owner` unless another owner
    /// holds a lease that has not run out.
    fn take_table_lease(
        &self,
        table: &str,
        owner: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Drops `owner`'s lease of `table` (a no-op if it is not theirs).
    fn drop_table_lease(
        &self,
        table: &str,
        owner: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}
