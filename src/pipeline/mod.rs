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
//! - [`keepalive`]: the renewal loop of the lease and of the worker's visibility heartbeat;
//! - [`object`]: one object: size limit, download, conversion, rejection or lake write;
//! - [`inline`]: inline user records;
//! - [`dead_letter`]: keeping a body the dead-letter queue would not take.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::Instrument;

use crate::config::Settings;
use crate::convert::{self, ConvertReport, Lineage};
use crate::domain::dataset::{Dataset, OnInvalid, Policy};
use crate::domain::envelope::{self, Envelope, ObjectRef};
use crate::domain::lake;
use crate::domain::ledger::{Claim, ClaimOutcome, Completion, EarlierOutputs, LedgerKey, Status};
use crate::domain::schema::date_to_days;
use crate::pipeline::error::JobError;
use crate::pipeline::job::Job;
#[cfg(test)] // the tests (tests.rs) stop jobs; the keep-alive does it for the lease
use crate::pipeline::job::StopReason;
use crate::pipeline::keepalive::{Check, KeepAlive, Renew, Renewed};
use crate::ports::{Ledger, ObjectStore, RecordStore, StoreErrorKind, TableSink};
use crate::table::hive::HiveTable;

mod dead_letter;
pub mod error;
mod inline;
pub mod job;
pub mod keepalive;
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
        }
    }

    /// Announces every partition written to the catalog registrar.
    pub fn with_catalog(mut self, partitions: crate::catalog::Partitions) -> Self {
        self.table = self.table.with_catalog(partitions);
        self
    }
}

impl<S: ObjectStore, R: RecordStore, L: Ledger, T: TableSink> Pipeline<S, R, L, T> {
    /// The same pipeline writing its tables with `table`.
    pub fn with_table<U: TableSink>(self, table: U) -> Pipeline<S, R, L, U> {
        Pipeline {
            settings: self.settings,
            store: self.store,
            records: self.records,
            ledger: self.ledger,
            table,
            worker_id: self.worker_id,
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

    /// Gives the object version its one identity, however its event arrived: an event
    /// without a version id (a backfill, a plain re-send) is resolved to the version that
    /// holds its ETag, so it maps to the same ledger key and lake keys as the version-id
    /// event of a versioned bucket; an event without a usable time gets the object's
    /// LastModified (the `ingest_date` never comes from the clock). If the key holds
    /// another version by now, the object is marked superseded. A version that is gone
    /// keeps the version id its ledger record has for that ETag, if any; else it is left
    /// as the event says (the download then reports it missing).
    async fn pin(&self, object: &ObjectRef) -> Result<Pinned, JobError> {
        let mut pinned = Pinned {
            object: object.clone(),
            superseded: false,
        };
        if object.version_id.is_some() && object.event_time.is_some() {
            return Ok(pinned);
        }
        let info = match self
            .store
            .head(object)
            .instrument(tracing::info_span!("resolve"))
            .await
        {
            Ok(info) => info,
            Err(e) if e.kind == StoreErrorKind::PreconditionFailed => {
                pinned.superseded = true;
                return Ok(pinned);
            }
            Err(e) if e.kind == StoreErrorKind::NotFound => {
                if let (None, Some(etag)) = (&object.version_id, &object.etag) {
                    pinned.object.version_id =
                        self.ledger.version_with_etag(&object.uri(), etag).await?;
                }
                return Ok(pinned);
            }
            Err(e) => return Err(e.into()),
        };
        let object = &mut pinned.object;
        if object.version_id.is_none() {
            object.version_id = info.version_id;
        }
        object.event_time = object.event_time.or(info.last_modified);
        object.size = object.size.or(info.size);
        object.etag = object.etag.take().or(info.etag);
        Ok(pinned)
    }

    /// Claims the object in the ledger, processes it while renewing the lease, and records
    /// the result (with the lease still renewed until the ledger has it).
    async fn claim_and_process(
        &self,
        object: &ObjectRef,
        dataset: &Dataset,
        job: &Job,
    ) -> Result<ObjectOutcome, JobError> {
        let Pinned { object, superseded } = self.pin(object).await?;
        let object = &object;
        let uri = object.uri();
        static CLAIMS: AtomicU64 = AtomicU64::new(0);
        let claim = Claim {
            key: LedgerKey::of(object),
            owner: format!(
                "{}/{}/{}",
                self.worker_id,
                job.message_id(),
                CLAIMS.fetch_add(1, Ordering::Relaxed)
            ),
            lease: self.settings.queue.visibility_timeout,
            dataset: dataset.name.clone(),
            message_id: job.message_id().to_owned(),
            reprocess: object.reprocess.clone(),
            etag: object.etag.clone(),
        };
        // The lease is counted from before the claim was sent: it cannot have begun later.
        let claimed_at = tokio::time::Instant::now();
        let claimed = self
            .ledger
            .claim(&claim)
            .instrument(tracing::info_span!("ledger", operation = "claim"))
            .await?;
        let earlier = match claimed {
            ClaimOutcome::Claimed { attempt, earlier } => {
                tracing::debug!(attempt, earlier_outputs = earlier.all().len(), "claimed");
                earlier
            }
            ClaimOutcome::Finished { status } => {
                tracing::info!(%uri, status = status.as_str(), "already processed; nothing to do");
                return Ok(ObjectOutcome::AlreadyDone { uri, status });
            }
            ClaimOutcome::Busy { owner, until } => {
                return Err(JobError::Busy { uri, owner, until })
            }
        };
        let attempt = Attempt {
            claim,
            // Outputs recorded before they were URIs are keys; name them the same way.
            earlier: EarlierOutputs {
                done: self.output_uris(&earlier.done),
                pending: self.output_uris(&earlier.pending),
            },
        };
        let renewal = LeaseRenewal::start(
            self.ledger.clone(),
            attempt.claim.clone(),
            job.clone(),
            claimed_at,
        );
        let result = if superseded {
            tracing::info!(%uri, "object changed since this event; skipping this version");
            Ok(ObjectOutcome::Superseded { uri })
        } else {
            self.process_object(object, dataset, job, &attempt).await
        };
        let settled = self
            .settle(&attempt, object, result, job)
            .instrument(tracing::info_span!("ledger", operation = "settle"))
            .await;
        renewal.stop().await;
        settled
    }

    /// Records the result in the ledger: an outcome once the outputs earlier attempts
    /// published and this one did not are removed ([`Pipeline::record_outcome`]), a
    /// failure as `failed`, a stop as a released claim. A job stopped meanwhile (its lease
    /// lost) records nothing but the release.
    async fn settle(
        &self,
        attempt: &Attempt,
        object: &ObjectRef,
        result: Result<ObjectOutcome, JobError>,
        job: &Job,
    ) -> Result<ObjectOutcome, JobError> {
        let result = match result {
            Ok(_) if job.stopped().is_some() => Err(JobError::Stopped),
            Ok(outcome) => match self.record_outcome(attempt, object, &outcome, job).await {
                Ok(()) => Ok(outcome),
                Err(e) => Err(stopped_or(e, job)),
            },
            Err(e) => Err(stopped_or(e, job)),
        };
        let claim = &attempt.claim;
        match &result {
            Ok(_) | Err(JobError::LeaseLost { .. }) => {}
            // Shutdown or lost: let the next owner claim at once (a no-op if the claim is
            // someone else's by now).
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
        result
    }

    /// Records `done` or `rejected` with the outputs, after removing what earlier attempts
    /// published that this outcome does not include; then, for `done`, deletes the landing
    /// object when configured. A superseded version keeps the outputs of its last finished
    /// run and loses only what unfinished attempts published.
    async fn record_outcome(
        &self,
        attempt: &Attempt,
        object: &ObjectRef,
        outcome: &ObjectOutcome,
        job: &Job,
    ) -> Result<(), JobError> {
        let claim = &attempt.claim;
        let lake = &self.settings.lake;
        let recorded = match outcome {
            ObjectOutcome::Rejected(rejection) => {
                let counts = Completion {
                    rows_in: rejection.rows_in,
                    rows_written: 0,
                    rows_rejected: rejection.rows_rejected,
                    outputs: rejection_outputs(&lake.quarantine_bucket, &rejection.quarantined_as),
                };
                self.remove_stale(
                    attempt,
                    object,
                    &attempt.earlier.all(),
                    &counts.outputs,
                    job,
                )
                .await?;
                self.ledger
                    .reject(claim, &counts, &rejection.reason)
                    .await?
            }
            ObjectOutcome::Written(summary) => {
                let completion = Completion {
                    rows_in: summary.rows_in,
                    rows_written: summary.rows_written,
                    rows_rejected: summary.rows_quarantined,
                    outputs: summary_outputs(lake, summary),
                };
                self.remove_stale(
                    attempt,
                    object,
                    &attempt.earlier.all(),
                    &completion.outputs,
                    job,
                )
                .await?;
                let finished = self.ledger.finish(claim, &completion).await?;
                if finished {
                    self.delete_landing(object, summary).await;
                }
                finished
            }
            // A superseded version is an answered question too: nothing new to write.
            ObjectOutcome::Superseded { .. } | ObjectOutcome::AlreadyDone { .. } => {
                let done = &attempt.earlier.done;
                self.remove_stale(attempt, object, &attempt.earlier.pending, done, job)
                    .await?;
                let completion = Completion {
                    outputs: done.clone(),
                    ..Completion::default()
                };
                self.ledger.finish(claim, &completion).await?
            }
        };
        if recorded {
            Ok(())
        } else {
            Err(JobError::LeaseLost { uri: object.uri() })
        }
    }

    /// Records the outputs this attempt is about to publish, before it uploads them, so a
    /// later attempt knows what may exist. Fails if the claim is no longer this job's.
    async fn publishing(
        &self,
        attempt: &Attempt,
        object: &ObjectRef,
        outputs: &[String],
    ) -> Result<(), JobError> {
        let recorded = self
            .ledger
            .publishing(&attempt.claim, outputs)
            .instrument(tracing::info_span!("ledger", operation = "publishing"))
            .await?;
        if recorded {
            Ok(())
        } else {
            Err(JobError::LeaseLost { uri: object.uri() })
        }
    }

    /// Deletes what earlier attempts of this version published (`earlier`) and `current`
    /// does not hold (a part a larger `target_file_size` no longer makes, bad rows that are
    /// good now). Only under a lease just renewed, and only while the job is not stopped:
    /// a job that lost its claim deletes nothing. Only this version's own outputs are
    /// touched: a key that does not carry its object id is left alone and logged.
    async fn remove_stale(
        &self,
        attempt: &Attempt,
        object: &ObjectRef,
        earlier: &[String],
        current: &[String],
        job: &Job,
    ) -> Result<(), JobError> {
        let stale: Vec<&String> = earlier.iter().filter(|o| !current.contains(o)).collect();
        if stale.is_empty() {
            return Ok(());
        }
        if !self.ledger.renew(&attempt.claim).await? {
            return Err(JobError::LeaseLost { uri: object.uri() });
        }
        let id = lake::object_id(object);
        for output in stale {
            if job.stopped().is_some() {
                return Err(JobError::Stopped);
            }
            let Some((bucket, key)) = output.strip_prefix("s3://").and_then(|o| o.split_once('/'))
            else {
                tracing::warn!(%output, "an earlier output that is not an s3:// URI; left alone");
                continue;
            };
            if !key.contains(&id) {
                tracing::warn!(%output, "an earlier output without this version's id; left alone");
                continue;
            }
            let stale = ObjectRef {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                ..ObjectRef::default()
            };
            self.store.delete(&stale).await?;
            tracing::info!(%output, "removed an output of an earlier attempt that this one did not rewrite");
        }
        Ok(())
    }

    /// Outputs as `s3://` URIs: records from before outputs were URIs list keys, in the
    /// quarantine bucket under `quarantine_prefix`, else in the lake bucket.
    fn output_uris(&self, outputs: &[String]) -> Vec<String> {
        let lake = &self.settings.lake;
        let quarantine = format!("{}/", lake.quarantine_prefix);
        outputs
            .iter()
            .map(|output| match output.starts_with("s3://") {
                true => output.clone(),
                false if output.starts_with(&quarantine) => {
                    crate::domain::ledger::output_uri(&lake.quarantine_bucket, output)
                }
                false => crate::domain::ledger::output_uri(&lake.bucket, output),
            })
            .collect()
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
            ..ObjectRef::default()
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

/// One claimed attempt at an object version: its claim, and the outputs earlier attempts
/// recorded.
struct Attempt {
    claim: Claim,
    earlier: EarlierOutputs,
}

/// An object with its resolved identity ([`Pipeline::pin`]).
struct Pinned {
    object: ObjectRef,
    /// The key holds another version by now: nothing to convert for this one.
    superseded: bool,
}

/// The ledger outputs of a written object: its parts, bad rows and raw copy.
fn summary_outputs(lake: &crate::config::LakeSettings, summary: &ObjectSummary) -> Vec<String> {
    let in_lake = |key: &String| crate::domain::ledger::output_uri(&lake.bucket, key);
    summary
        .parts
        .iter()
        .map(in_lake)
        .chain(
            summary
                .quarantine
                .iter()
                .map(|key| crate::domain::ledger::output_uri(&lake.quarantine_bucket, key)),
        )
        .chain(summary.raw.iter().map(in_lake))
        .collect()
}

/// The ledger outputs of a rejected file: its copy in the quarantine and the report.
fn rejection_outputs(quarantine_bucket: &str, copy: &str) -> Vec<String> {
    vec![
        crate::domain::ledger::output_uri(quarantine_bucket, copy),
        crate::domain::ledger::output_uri(quarantine_bucket, &format!("{copy}.error.json")),
    ]
}

/// How long before its lease would run out a job that could not renew it is stopped: a
/// quarter of the lease, so it has time to abandon its uploads before anyone may claim.
fn fence_margin(lease: Duration) -> Duration {
    lease / 4
}

/// Keeps a ledger claim's lease alive while its object is processed: renews every half
/// lease, and after a failed renewal every second. If the claim turns out to be someone
/// else's, or the lease would run out before a renewal succeeds (the job is then stopped
/// a quarter lease before it does), the job is stopped (reason: lost) and its outputs are
/// abandoned: no job works on without a live lease.
struct LeaseRenewal(KeepAlive);

impl LeaseRenewal {
    /// `claimed_at`: when the claim was sent, where its lease began at the latest.
    fn start<L: Ledger>(
        ledger: Arc<L>,
        claim: Claim,
        job: Job,
        claimed_at: tokio::time::Instant,
    ) -> LeaseRenewal {
        let lease = claim.lease;
        let every = (lease / 2).max(Duration::from_millis(100));
        let renewal = Lease {
            ledger,
            claim,
            every,
            valid_until: claimed_at + lease,
        };
        LeaseRenewal(KeepAlive::start(renewal, claimed_at + every, job))
    }

    async fn stop(self) {
        self.0.stop().await
    }
}

/// A ledger claim's lease, as the keep-alive renews it.
struct Lease<L> {
    ledger: Arc<L>,
    claim: Claim,
    every: Duration,
    /// When the lease runs out unless renewed.
    valid_until: tokio::time::Instant,
}

impl<L> Lease<L> {
    /// When the job is stopped unless the lease was renewed.
    fn fence(&self) -> tokio::time::Instant {
        self.valid_until - fence_margin(self.claim.lease)
    }
}

impl<L: Ledger> Renew for Lease<L> {
    fn wake_at(&self, due: tokio::time::Instant) -> tokio::time::Instant {
        due.min(self.fence())
    }

    fn check(&mut self, now: tokio::time::Instant) -> Check {
        let fence = self.fence();
        if now >= fence {
            tracing::warn!(
                lease_s = self.claim.lease.as_secs_f64(),
                "the ledger lease could not be renewed and runs out soon; stopping this job and abandoning its outputs"
            );
            return Check::Lost;
        }
        Check::Renew { deadline: fence }
    }

    async fn renew(&mut self, sent: tokio::time::Instant, _late: Duration) -> Renewed {
        match self.ledger.renew(&self.claim).await {
            Ok(true) => {
                self.valid_until = sent + self.claim.lease;
                Renewed::Next(sent + self.every)
            }
            Ok(false) => {
                tracing::warn!("the ledger claim was taken over; stopping this job");
                Renewed::Lost
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not renew the ledger lease; retrying");
                Renewed::Failed
            }
        }
    }

    /// The fence passed during the call: the job is stopped at the next check.
    fn timed_out(&mut self, fence: tokio::time::Instant) -> tokio::time::Instant {
        fence
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
