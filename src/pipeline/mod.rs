//! One message, start to finish: parse the body, route each object to its dataset, claim
//! it in the ledger, convert it, write the lake, the quarantine and the table, settle the
//! ledger, and say what happened.
//!
//! [`Pipeline::handle`] is the step function the worker pool calls for every message; it
//! does not touch the queue. Its result decides the message's fate
//! ([`crate::worker::disposition`]). It works against the [`ObjectStore`], [`RecordStore`]
//! and [`Ledger`] traits and the table port ([`TableSink`]), so tests can drive it with in-memory fakes.
//!
//! - this module: the outcome types, [`Pipeline::handle`] and routing;
//! - [`claim`]: one object in the ledger: pin its version, claim, renew the lease,
//!   process, settle;
//! - [`object`]: processing it: size limit, download, conversion, then the rejection of
//!   the whole file or the table write ([`crate::ports::TableSink`]), bad rows and rows;
//! - [`outputs`]: the outputs an attempt records, removes and leaves behind;
//! - [`inline`]: inline user records;
//! - [`history`]: a row per settled attempt, flushed to the load history table;
//! - [`keepalive`]: the renewal loop of the lease and of the worker's visibility heartbeat;
//! - [`dead_letter`]: keeping a body the dead-letter queue would not take;
//! - [`error`]: the one error type of message handling and its class; [`job`]: a job's
//!   identity and cancellation.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tracing::Instrument;

use crate::config::Settings;
use crate::convert::{self, ConvertReport, Lineage};
use crate::domain::dataset::{Dataset, OnInvalid, Policy};
use crate::domain::envelope::{self, Envelope, ObjectRef};
use crate::domain::ledger::Status;
use crate::domain::schema::date_to_days;
use crate::pipeline::error::JobError;
use crate::pipeline::job::Job;
#[cfg(test)] // the tests (tests/) stop jobs; the keep-alive does it for the lease
use crate::pipeline::job::StopReason;
use crate::ports::{CommitLog, Ledger, ObjectStore, RecordStore, TableSink};
use crate::table::hive::HiveTable;
use crate::table::iceberg::IcebergTables;
use crate::table::LakeTables;
use claim::Attempt;
use outputs::rejection_outputs;
// What the tests (tests/) reach through `use super::*`.
#[cfg(test)]
use crate::domain::ledger::{Claim, ClaimOutcome, Completion, LedgerKey};
#[cfg(test)]
use claim::LeaseRenewal;

mod claim;
mod dead_letter;
pub mod error;
pub mod history;
mod inline;
pub mod job;
pub mod keepalive;
mod object;
mod outputs;
#[cfg(test)]
mod tests;

/// What a handled message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to do (test event, deletions).
    Discarded(String),
    /// Every object of the message: converted, rejected, already done, or superseded.
    Converted(Vec<ObjectOutcome>),
    /// Inline records upserted; bad ones quarantined.
    Upserted {
        dataset: String,
        rows: u64,
        quarantined: u64,
    },
}

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectOutcome {
    Written(ObjectSummary),
    /// Refused as a whole: copied to the quarantine with an error report beside it.
    Rejected(Rejection),
    /// The ledger says this version is finished: a duplicate delivery, no work done.
    AlreadyDone {
        uri: String,
        status: Status,
    },
    /// The object changed after the event; the newer version's own event brings it.
    Superseded {
        uri: String,
    },
    /// An earlier attempt's rows are in the table for good (an Iceberg commit that landed
    /// before the ledger settled): only the ledger is settled, with what it published.
    Committed {
        uri: String,
    },
}

impl ObjectOutcome {
    /// A word for spans: written, rejected, already_done, superseded, committed_earlier.
    pub fn kind(&self) -> &'static str {
        match self {
            ObjectOutcome::Written(_) => "written",
            ObjectOutcome::Rejected(_) => "rejected",
            ObjectOutcome::AlreadyDone { .. } => "already_done",
            ObjectOutcome::Superseded { .. } => "superseded",
            ObjectOutcome::Committed { .. } => "committed_earlier",
        }
    }
}

/// Counts and outputs of one converted object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSummary {
    pub uri: String,
    pub dataset: String,
    pub rows_in: u64,
    pub rows_written: u64,
    /// Bad rows, written to `quarantine` (when there were any).
    pub rows_quarantined: u64,
    /// Written rows with values kept in `_rescued`.
    pub rows_rescued: u64,
    /// The first bad row's problem, when there was one (pii values as stand-ins).
    pub first_error: Option<String>,
    /// Undeclared columns the file had (`on_new_columns` decided what became of them).
    pub new_columns: Vec<String>,
    /// Keys of the table's parts, in partition order.
    pub parts: Vec<String>,
    /// The same parts as `s3://` URIs (the table format decides their bucket).
    pub part_uris: Vec<String>,
    pub quarantine: Option<String>,
    /// The original's copy in the raw zone, when `lake.raw_prefix` is set.
    pub raw: Option<String>,
    /// Rows upserted into the dataset's table (after last-wins per key).
    pub records_upserted: u64,
}

/// A file refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub uri: String,
    pub reason: String,
    pub rows_in: u64,
    pub rows_rejected: u64,
    /// Where the file was copied; the report is this key plus `.error.json`.
    pub quarantined_as: String,
}

/// The message handler, shared by every job of a worker. `T` is the table format of
/// the lake ([`HiveTable`] unless [`Pipeline::with_table`] gives another).
pub struct Pipeline<S, R, L, T = HiveTable<S, L>> {
    settings: Arc<Settings>,
    store: Arc<S>,
    records: R,
    ledger: Arc<L>,
    table: T,
    /// Identifies this process in ledger claims.
    worker_id: String,
    /// Load history rows waiting for [`Pipeline::flush_history`].
    history: Arc<history::History>,
}

impl<S: ObjectStore, R: RecordStore, L: Ledger> Pipeline<S, R, L> {
    /// A pipeline writing Hive tables to `lake.bucket`.
    pub fn new(
        settings: Arc<Settings>,
        store: S,
        records: R,
        ledger: L,
        worker_id: String,
    ) -> Self {
        let store = Arc::new(store);
        let ledger = Arc::new(ledger);
        let table = HiveTable::new(
            store.clone(),
            ledger.clone(),
            settings.lake.bucket.clone(),
            settings.lake.prefix.clone(),
        );
        Pipeline {
            settings,
            store,
            records,
            ledger,
            table,
            worker_id,
            history: Arc::default(),
        }
    }

    /// Announces every partition written to the catalog registrar.
    pub fn with_catalog(mut self, partitions: crate::catalog::Partitions) -> Self {
        self.table = self.table.with_catalog(partitions);
        self
    }

    /// The store and the ledger this pipeline shares, for the tables built beside it.
    pub fn shared(&self) -> (Arc<S>, Arc<L>) {
        (self.store.clone(), self.ledger.clone())
    }

    /// The same pipeline writing Iceberg datasets to `iceberg` and the rest to its Hive
    /// table.
    pub fn with_iceberg(
        self,
        iceberg: Option<IcebergTables<S, L>>,
    ) -> Pipeline<S, R, L, LakeTables<S, L>>
    where
        L: CommitLog,
    {
        Pipeline {
            settings: self.settings,
            store: self.store,
            records: self.records,
            ledger: self.ledger,
            table: LakeTables {
                hive: self.table,
                iceberg,
            },
            worker_id: self.worker_id,
            history: self.history,
        }
    }
}

impl<S: ObjectStore, R: RecordStore, L: Ledger, T: TableSink> Pipeline<S, R, L, T> {
    /// The same pipeline writing its tables with `table`.
    #[cfg(test)]
    pub fn with_table<U: TableSink>(self, table: U) -> Pipeline<S, R, L, U> {
        Pipeline {
            settings: self.settings,
            store: self.store,
            records: self.records,
            ledger: self.ledger,
            table,
            worker_id: self.worker_id,
            history: self.history,
        }
    }

    /// Handles one message body. Deletion is the caller's business: `Ok` means every
    /// output is durable (or there was nothing to do).
    pub async fn handle(&self, body: &str, job: &Job) -> Result<Outcome, JobError> {
        match envelope::parse_from(body, &self.settings.queue.sns_topics)? {
            Envelope::Discard(reason) => Ok(Outcome::Discarded(reason)),
            Envelope::Records(records) => self.upsert_inline(records, job).await,
            Envelope::Objects(objects) => {
                // Refuse the whole message before any work if one object cannot be routed.
                let routed: Vec<(&ObjectRef, &Dataset)> = objects
                    .iter()
                    .map(|o| Ok((o, self.route(o)?)))
                    .collect::<Result<_, JobError>>()?;
                let mut outcomes = Vec::with_capacity(routed.len());
                let message = tracing::Span::current();
                for (object, dataset) in routed {
                    // The message span names its (last) object; each object has its own.
                    message.record("dataset", dataset.name.as_str());
                    message.record("bucket", object.bucket.as_str());
                    message.record("key", object.key.as_str());
                    let span = tracing::info_span!(
                        "object",
                        dataset = %dataset.name,
                        bucket = %object.bucket,
                        key = %object.key,
                        outcome = tracing::field::Empty,
                    );
                    let outcome = self
                        .claim_and_process(object, dataset, job)
                        .instrument(span.clone())
                        .await?;
                    span.record("outcome", outcome.kind());
                    outcomes.push(outcome);
                }
                Ok(Outcome::Converted(outcomes))
            }
        }
    }

    fn route(&self, object: &ObjectRef) -> Result<&Dataset, JobError> {
        if object.bucket != self.settings.landing.bucket {
            return Err(JobError::BucketNotAllowed {
                bucket: object.bucket.clone(),
                key: object.key.clone(),
                expected: self.settings.landing.bucket.clone(),
            });
        }
        self.settings
            .datasets
            .route(&object.key)
            .ok_or_else(|| JobError::NoDataset {
                bucket: object.bucket.clone(),
                key: object.key.clone(),
            })
    }

    /// A per-job directory for parts, spool and quarantine, removed when dropped.
    fn scratch_dir(&self, uri: &str) -> Result<tempfile::TempDir, JobError> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("lakeworker-");
        let dir = match &self.settings.worker.scratch_dir {
            Some(dir) => builder.tempdir_in(dir),
            None => builder.tempdir(),
        };
        dir.map_err(|e| JobError::Convert {
            what: uri.to_owned(),
            source: convert::ConvertError::Write(format!("creating scratch directory: {e}")),
        })
    }
}

/// Whether a file (or message) with these counts is refused as a whole, and why.
pub fn rejection_reason(policy: &Policy, report: &ConvertReport) -> Option<String> {
    if report.rows_rejected == 0 {
        return None;
    }
    if policy.on_invalid == OnInvalid::RejectFile {
        return Some(format!(
            "{} of {} rows are invalid and on_invalid = \"reject_file\"; first: {}",
            report.rows_rejected,
            report.rows_in,
            report.error_summary(3)
        ));
    }
    let fraction = report.invalid_fraction();
    (fraction > policy.max_invalid_fraction).then(|| {
        format!(
            "{} of {} rows are invalid ({:.1}%), above max_invalid_fraction {}; first: {}",
            report.rows_rejected,
            report.rows_in,
            fraction * 100.0,
            policy.max_invalid_fraction,
            report.error_summary(3)
        )
    })
}

/// Runs a conversion on a blocking thread (it is CPU-bound and reads synchronously) inside
/// a `convert` span; the outer error is the thread's own failure, the inner the
/// conversion's.
async fn convert_on_blocking_thread<T: Send + 'static>(
    conversion: impl FnOnce() -> Result<T, convert::ConvertError> + Send + 'static,
) -> Result<Result<T, convert::ConvertError>, JobError> {
    let span = tracing::info_span!("convert");
    tokio::task::spawn_blocking(move || span.in_scope(conversion))
        .await
        .map_err(|e| JobError::Internal(format!("conversion task: {e}")))
}

/// A failure caused by the job being stopped is reported as the stop, not as the failure.
fn stopped_or(error: JobError, job: &Job) -> JobError {
    if job.stopped().is_some() {
        JobError::Stopped
    } else {
        error
    }
}

/// Lineage of a job whose input arrived at `arrived`.
fn lineage(source: &str, arrived: DateTime<Utc>) -> Lineage {
    Lineage {
        source: source.to_owned(),
        ingested_at: Utc::now().timestamp_micros(),
        ingest_date: ingest_date(arrived),
    }
}

/// The `ingest_date` (and quarantine `dt`): the UTC date the input arrived, so retries on
/// later days agree.
fn ingest_date(arrived: DateTime<Utc>) -> i32 {
    date_to_days(arrived.date_naive())
}

/// When an object arrived: its event's time, else its LastModified ([`Pipeline::pin`]
/// fills it in). Only an object that vanished before it could be described has neither,
/// and then there is nothing to convert.
fn arrival(object: &ObjectRef) -> Result<DateTime<Utc>, JobError> {
    object
        .event_time
        .ok_or_else(|| JobError::ObjectMissing { uri: object.uri() })
}
