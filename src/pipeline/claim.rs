//! One object in the ledger: resolve the version the event names, claim it, process it
//! while the lease is renewed, and settle the result (done, rejected, failed, released),
//! the lease still renewed until the ledger has it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use super::keepalive::{Check, KeepAlive, Renew, Renewed};
use super::outputs::{rejection_outputs, summary_outputs};
use super::{history, stopped_or, ObjectOutcome, Pipeline};
use crate::domain::dataset::Dataset;
use crate::domain::envelope::ObjectRef;
use crate::domain::ledger::{Claim, ClaimOutcome, Completion, EarlierOutputs, LedgerKey};
use crate::pipeline::error::JobError;
use crate::pipeline::job::Job;
use crate::ports::{Ledger, ObjectStore, RecordStore, StoreErrorKind, TableSink};

impl<S: ObjectStore, R: RecordStore, L: Ledger, T: TableSink> Pipeline<S, R, L, T> {
    /// Gives the object version its one identity, however its event arrived: an event
    /// without a version id (a backfill, a plain re-send) is resolved to the version that
    /// holds its ETag, so it maps to the same ledger key and lake keys as the version-id
    /// event of a versioned bucket; an event without a usable time gets the object's
    /// LastModified (the `ingest_date` never comes from the clock). If the key holds
    /// another version by now, the object is marked superseded. A version that is gone
    /// keeps the version id its ledger record has for that ETag, if any; else it is left
    /// as the event says (the download then reports it missing).
    pub(super) async fn pin(&self, object: &ObjectRef) -> Result<Pinned, JobError> {
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
    pub(super) async fn claim_and_process(
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
        let started_at = chrono::Utc::now();
        let claimed = self
            .ledger
            .claim(&claim)
            .instrument(tracing::info_span!("ledger", operation = "claim"))
            .await?;
        let (number, earlier) = match claimed {
            ClaimOutcome::Claimed { attempt, earlier } => {
                tracing::debug!(attempt, earlier_outputs = earlier.all().len(), "claimed");
                (u64::from(attempt), earlier)
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
                commits: earlier.commits,
            },
            number,
            started_at,
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
            // An earlier attempt's rows may be in the table already (an Iceberg commit
            // that landed before its ledger record settled): then this one only settles.
            let committed = self
                .table
                .committed(dataset, &attempt.claim, &attempt.earlier.commits)
                .instrument(tracing::info_span!("ledger", operation = "committed"))
                .await;
            match committed {
                Ok(true) => {
                    tracing::info!(%uri, "already committed to the table by an earlier attempt");
                    Ok(ObjectOutcome::Committed { uri })
                }
                Ok(false) => self.process_object(object, dataset, job, &attempt).await,
                Err(e) => Err(e.into()),
            }
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
    pub(super) async fn settle(
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
        if self.settings.datasets.history().is_some() {
            let lake = &self.settings.lake;
            if let Some(row) = history::load_row(attempt, object, &result, &self.worker_id, lake) {
                self.history.record(row);
            }
        }
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
    pub(super) async fn record_outcome(
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
                    rows_rescued: 0,
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
                    rows_rescued: summary.rows_rescued,
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
            // Everything an earlier attempt published went up before its commit landed:
            // all of it stays, nothing is removed.
            ObjectOutcome::Committed { .. } => {
                let completion = Completion {
                    outputs: committed_outputs(&attempt.earlier),
                    ..Completion::default()
                };
                self.ledger.finish(claim, &completion).await?
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
}

/// What an object whose earlier attempt's commit landed keeps: everything its earlier
/// attempts published or were about to.
pub(super) fn committed_outputs(earlier: &EarlierOutputs) -> Vec<String> {
    let mut outputs = earlier.done.clone();
    for output in &earlier.pending {
        if !outputs.contains(output) {
            outputs.push(output.clone());
        }
    }
    outputs
}

/// One claimed attempt at an object version: its claim, and the outputs earlier attempts
/// recorded.
pub(super) struct Attempt {
    pub(super) claim: Claim,
    pub(super) earlier: EarlierOutputs,
    /// Which claim of the version this is (1 for the first), and when it was made.
    pub(super) number: u64,
    pub(super) started_at: chrono::DateTime<chrono::Utc>,
}

/// An object with its resolved identity ([`Pipeline::pin`]).
pub(super) struct Pinned {
    object: ObjectRef,
    /// The key holds another version by now: nothing to convert for this one.
    superseded: bool,
}

/// How long before its lease would run out a job that could not renew it is stopped: a
/// quarter of the lease, so it has time to abandon its uploads before anyone may claim.
pub(super) fn fence_margin(lease: Duration) -> Duration {
    lease / 4
}

/// Keeps a ledger claim's lease alive while its object is processed: renews every half
/// lease, and after a failed renewal every second. If the claim turns out to be someone
/// else's, or the lease would run out before a renewal succeeds (the job is then stopped
/// a quarter lease before it does), the job is stopped (reason: lost) and its outputs are
/// abandoned: no job works on without a live lease.
pub(super) struct LeaseRenewal(KeepAlive);

impl LeaseRenewal {
    /// `claimed_at`: when the claim was sent, where its lease began at the latest.
    pub(super) fn start<L: Ledger>(
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

    pub(super) async fn stop(self) {
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
    pub(super) fn fence(&self) -> tokio::time::Instant {
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
