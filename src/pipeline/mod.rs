//! One message, start to finish: parse the body, route each object to its dataset, claim
//! it in the ledger, convert it, write the lake, the quarantine and the table, settle the
//! ledger, and say what happened.
//!
//! [`Pipeline::handle`] is the step function the worker pool calls for every message; it
//! does not touch the queue. Its result decides the message's fate
//! ([`crate::worker::disposition`]). It works against the [`ObjectStore`], [`RecordStore`]
//! and [`Ledger`] traits, so tests can drive it with in-memory fakes.
//!
//! - this module: routing, ledger claims and settlement, lease renewal;
//! - [`object`]: one object: size limit, download, conversion, rejection or lake write;
//! - [`inline`]: inline user records;
//! - [`dead_letter`]: keeping a body the dead-letter queue would not take.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::Instrument;

use crate::aws::{AwsErrorKind, Ledger, ObjectStore, RecordStore};
use crate::config::Settings;
use crate::convert::{self, ConvertReport, Lineage};
use crate::datasets::{Dataset, OnInvalid, Policy};
use crate::envelope::{self, Envelope, ObjectRef};
use crate::error::JobError;
use crate::job::{Job, StopReason};
use crate::ledger::{Claim, ClaimOutcome, Completion, LedgerKey, Status};
use crate::schema::date_to_days;

mod dead_letter;
mod inline;
mod object;
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
}

impl ObjectOutcome {
    /// A word for spans: written, rejected, already_done, superseded.
    pub fn kind(&self) -> &'static str {
        match self {
            ObjectOutcome::Written(_) => "written",
            ObjectOutcome::Rejected(_) => "rejected",
            ObjectOutcome::AlreadyDone { .. } => "already_done",
            ObjectOutcome::Superseded { .. } => "superseded",
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
    /// Lake keys written, in partition order.
    pub parts: Vec<String>,
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

/// The message handler, shared by every job of a worker.
pub struct Pipeline<S, R, L> {
    settings: Arc<Settings>,
    store: S,
    records: R,
    ledger: Arc<L>,
    /// Identifies this process in ledger claims.
    worker_id: String,
    /// Where new partitions are announced for the catalog, when it is on.
    partitions: Option<crate::catalog::Partitions>,
}

impl<S: ObjectStore, R: RecordStore, L: Ledger> Pipeline<S, R, L> {
    pub fn new(
        settings: Arc<Settings>,
        store: S,
        records: R,
        ledger: L,
        worker_id: String,
    ) -> Self {
        Pipeline {
            settings,
            store,
            records,
            ledger: Arc::new(ledger),
            worker_id,
            partitions: None,
        }
    }

    /// Announces every partition written to the catalog registrar.
    pub fn with_catalog(mut self, partitions: crate::catalog::Partitions) -> Self {
        self.partitions = Some(partitions);
        self
    }

    /// Handles one message body. Deletion is the caller's business: `Ok` means every
    /// output is durable (or there was nothing to do).
    pub async fn handle(&self, body: &str, job: &Job) -> Result<Outcome, JobError> {
        match envelope::parse(body)? {
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

    /// Gives the object version its one identity, however its event arrived: an event
    /// without a version id (a backfill, a plain re-send) is resolved to the version that
    /// holds its ETag, so it maps to the same ledger key and lake keys as the version-id
    /// event of a versioned bucket; an event without a usable time gets the object's
    /// LastModified (the `ingest_date` never comes from the clock). `None`: the key holds
    /// another version by now (superseded). A version that is gone is left as the event
    /// says: the ledger may know it as done; if not, the download reports it missing.
    async fn pin(&self, object: &ObjectRef) -> Result<Option<ObjectRef>, JobError> {
        let mut pinned = object.clone();
        if object.version_id.is_some() && object.event_time.is_some() {
            return Ok(Some(pinned));
        }
        let info = match self
            .store
            .head(object)
            .instrument(tracing::info_span!("resolve"))
            .await
        {
            Ok(info) => info,
            Err(e) if e.kind == AwsErrorKind::PreconditionFailed => return Ok(None),
            Err(e) if e.kind == AwsErrorKind::NotFound => return Ok(Some(pinned)),
            Err(e) => return Err(e.into()),
        };
        if pinned.version_id.is_none() {
            pinned.version_id = info.version_id;
        }
        pinned.event_time = pinned.event_time.or(info.last_modified);
        pinned.size = pinned.size.or(info.size);
        pinned.etag = pinned.etag.or(info.etag);
        Ok(Some(pinned))
    }

    /// Claims the object in the ledger, processes it while renewing the lease, and records
    /// the result.
    async fn claim_and_process(
        &self,
        object: &ObjectRef,
        dataset: &Dataset,
        job: &Job,
    ) -> Result<ObjectOutcome, JobError> {
        let Some(object) = self.pin(object).await? else {
            tracing::info!(uri = %object.uri(), "object changed since this event; skipping this version");
            return Ok(ObjectOutcome::Superseded { uri: object.uri() });
        };
        let object = &object;
        let uri = object.uri();
        let claim = Claim {
            key: LedgerKey::of(object),
            owner: format!("{}/{}", self.worker_id, job.message_id()),
            lease: self.settings.queue.visibility_timeout,
            dataset: dataset.name.clone(),
            message_id: job.message_id().to_owned(),
        };
        let claimed = self
            .ledger
            .claim(&claim)
            .instrument(tracing::info_span!("ledger", operation = "claim"))
            .await?;
        match claimed {
            ClaimOutcome::Claimed { attempt } => tracing::debug!(attempt, "claimed"),
            ClaimOutcome::Finished { status } => {
                tracing::info!(%uri, status = status.as_str(), "already processed; nothing to do");
                return Ok(ObjectOutcome::AlreadyDone { uri, status });
            }
            ClaimOutcome::Busy { owner, until } => {
                return Err(JobError::Busy { uri, owner, until })
            }
        }

        let renewal = LeaseRenewal::start(self.ledger.clone(), claim.clone(), job.clone());
        let result = self.process_object(object, dataset, job).await;
        renewal.stop().await;
        self.settle(&claim, object, &result)
            .instrument(tracing::info_span!("ledger", operation = "settle"))
            .await?;
        result
    }

    /// Records the result in the ledger (and, once `done`, deletes the landing object when
    /// configured).
    async fn settle(
        &self,
        claim: &Claim,
        object: &ObjectRef,
        result: &Result<ObjectOutcome, JobError>,
    ) -> Result<(), JobError> {
        match result {
            Ok(ObjectOutcome::Rejected(rejection)) => {
                let counts = Completion {
                    rows_in: rejection.rows_in,
                    rows_written: 0,
                    rows_rejected: rejection.rows_rejected,
                    outputs: vec![rejection.quarantined_as.clone()],
                };
                self.ledger
                    .reject(claim, &counts, &rejection.reason)
                    .await?;
            }
            Ok(outcome) => {
                let completion = match outcome {
                    ObjectOutcome::Written(summary) => Completion {
                        rows_in: summary.rows_in,
                        rows_written: summary.rows_written,
                        rows_rejected: summary.rows_quarantined,
                        outputs: summary
                            .parts
                            .iter()
                            .chain(&summary.quarantine)
                            .chain(&summary.raw)
                            .cloned()
                            .collect(),
                    },
                    // A superseded version is an answered question too: nothing to write.
                    _ => Completion::default(),
                };
                self.ledger.finish(claim, &completion).await?;
                if let ObjectOutcome::Written(summary) = outcome {
                    self.delete_landing(object, summary).await;
                }
            }
            // Shutdown or lost: let the next owner claim at once (a no-op if the claim
            // is someone else's by now).
            Err(JobError::Stopped) => {
                if let Err(e) = self.ledger.release(claim).await {
                    tracing::warn!(error = %e, "could not release the ledger claim; it expires with its lease");
                }
            }
            Err(error) => {
                if let Err(e) = self.ledger.fail(claim, &error.to_string()).await {
                    tracing::warn!(error = %e, "could not record the failure in the ledger");
                }
            }
        }
        Ok(())
    }

    /// With `landing.delete_after`, removes a converted object from the landing bucket.
    /// Runs after the ledger says `done`, so a redelivery finds the answer there instead of
    /// a missing object, and only once the raw copy is there with the original's size (the
    /// copy itself is pinned to the version). A failure only leaves the object where it was.
    async fn delete_landing(&self, object: &ObjectRef, summary: &ObjectSummary) {
        let Some(raw) = summary
            .raw
            .as_ref()
            .filter(|_| self.settings.landing.delete_after)
        else {
            return;
        };
        let copy = ObjectRef {
            bucket: self.settings.lake.bucket.clone(),
            key: raw.clone(),
            size: None,
            etag: None,
            version_id: None,
            event_time: None,
        };
        let (original, kept) = tokio::join!(self.store.head(object), self.store.head(&copy));
        match (original, kept) {
            (Ok(original), Ok(kept)) if original.size.is_some() && original.size == kept.size => {}
            (original, kept) => {
                tracing::warn!(
                    uri = %summary.uri,
                    raw = %raw,
                    ?original,
                    ?kept,
                    "the raw copy could not be checked against the original; the landing object stays"
                );
                return;
            }
        }
        match self.store.delete(object).await {
            Ok(()) => tracing::info!(uri = %summary.uri, "landing object deleted"),
            Err(e) => {
                tracing::warn!(uri = %summary.uri, error = %e, "could not delete the landing object; it stays")
            }
        }
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

/// A failure caused by the job being stopped is reported as the stop, not as the failure.
fn stopped_or(error: JobError, job: &Job) -> JobError {
    if job.stopped().is_some() {
        JobError::Stopped
    } else {
        error
    }
}

/// Keeps a ledger claim's lease alive while its object is processed: renews every half
/// lease; if the claim turns out to be someone else's, stops the job (reason: lost).
struct LeaseRenewal {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl LeaseRenewal {
    fn start<L: Ledger>(ledger: Arc<L>, claim: Claim, job: Job) -> LeaseRenewal {
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        let every = (claim.lease / 2).max(Duration::from_millis(100));
        let task = tokio::spawn(
            async move {
                loop {
                    tokio::select! {
                        _ = stopped.cancelled() => return,
                        _ = tokio::time::sleep(every) => {}
                    }
                    match ledger.renew(&claim).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!("the ledger claim was taken over; stopping this job");
                            job.stop(StopReason::Lost);
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "could not renew the ledger lease; retrying")
                        }
                    }
                }
            }
            .in_current_span(),
        );
        LeaseRenewal { stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
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
