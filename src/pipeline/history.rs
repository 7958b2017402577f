//! The load history's side of the pipeline: a row per settled attempt is kept in memory
//! ([`History::record`]) and [`Pipeline::flush_history`] writes the pending rows as one
//! file of the [`LOADS_TABLE`] table, through the same conversion and table port as a
//! landing file (a flush is claimed in the ledger like an object, so an Iceberg commit
//! of it is exactly once). Rows a failed flush could not write are kept for the next.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::claim::Attempt;
use super::object::convert_to_parts;
use super::outputs::{rejection_outputs, summary_outputs};
use super::{convert_on_blocking_thread, lineage, JobError, ObjectOutcome, Pipeline};
use crate::config::LakeSettings;
use crate::convert::ConvertOptions;
use crate::domain::dataset::Dataset;
use crate::domain::envelope::ObjectRef;
use crate::domain::history::{LoadRow, LOADS_TABLE};
use crate::domain::ledger::{output_uri, Claim, ClaimOutcome, Completion, LedgerKey, Status};
use crate::ports::{Ledger, ObjectStore, RecordStore, Slot, TableSink};

/// Most rows held for the history (a flush that keeps failing must not grow memory
/// without bound): past it the oldest are dropped, with a warning.
const MAX_PENDING_ROWS: usize = 100_000;

/// Rows waiting for the next flush, and the flushes that failed.
#[derive(Debug, Default)]
pub struct History {
    pending: Mutex<VecDeque<LoadRow>>,
    /// Held through a flush (flushes run one at a time); holds the flushes that failed,
    /// each retried by the next flush under its own id, oldest first.
    unfinished: tokio::sync::Mutex<VecDeque<Flush>>,
    /// Rows dropped because [`MAX_PENDING_ROWS`] were waiting.
    dropped: AtomicU64,
}

/// One flush: its id (naming its ledger key and its files) and its rows.
#[derive(Debug)]
struct Flush {
    id: String,
    rows: Vec<LoadRow>,
}

impl History {
    pub(super) fn record(&self, row: LoadRow) {
        let Ok(mut pending) = self.pending.lock() else {
            tracing::warn!(source = %row.source_uri, "load history unavailable; row dropped");
            return;
        };
        if pending.len() >= MAX_PENDING_ROWS {
            pending.pop_front();
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(
                    dropped,
                    "load history flushes are failing and {MAX_PENDING_ROWS} rows wait; the oldest are dropped (the ledger keeps the same facts)"
                );
            }
        }
        pending.push_back(row);
    }

    fn take(&self) -> Vec<LoadRow> {
        self.pending
            .lock()
            .map(|mut p| p.drain(..).collect())
            .unwrap_or_default()
    }
}

/// The history row of an attempt that settled with `result`, or `None` when the attempt
/// settled nothing (stopped, its lease lost) or loaded nothing (an already finished or
/// superseded version).
pub(super) fn load_row(
    attempt: &Attempt,
    object: &ObjectRef,
    result: &Result<ObjectOutcome, JobError>,
    worker_id: &str,
    lake: &LakeSettings,
) -> Option<LoadRow> {
    let mut row = LoadRow {
        source_uri: object.uri(),
        source_version: attempt.claim.key.version.clone(),
        dataset: attempt.claim.dataset.clone(),
        status: Status::Done.as_str(),
        rows_in: 0,
        rows_written: 0,
        rows_quarantined: 0,
        rows_rescued: 0,
        first_error: None,
        attempt: attempt.number,
        started_at: attempt.started_at,
        finished_at: Utc::now(),
        worker_id: worker_id.to_owned(),
        outputs: Vec::new(),
        new_columns: Vec::new(),
    };
    match result {
        Ok(ObjectOutcome::Written(summary)) => {
            row.rows_in = summary.rows_in;
            row.rows_written = summary.rows_written;
            row.rows_quarantined = summary.rows_quarantined;
            row.rows_rescued = summary.rows_rescued;
            row.first_error = summary.first_error.clone();
            row.outputs = summary_outputs(lake, summary);
            row.new_columns = summary.new_columns.clone();
        }
        Ok(ObjectOutcome::Rejected(rejection)) => {
            row.status = Status::Rejected.as_str();
            row.rows_in = rejection.rows_in;
            row.rows_quarantined = rejection.rows_rejected;
            row.first_error = Some(rejection.reason.clone());
            row.outputs = rejection_outputs(&lake.quarantine_bucket, &rejection.quarantined_as);
        }
        Ok(ObjectOutcome::Committed { .. }) => {
            row.outputs = super::claim::committed_outputs(&attempt.earlier);
        }
        Ok(ObjectOutcome::Superseded { .. } | ObjectOutcome::AlreadyDone { .. })
        | Err(JobError::Stopped | JobError::LeaseLost { .. }) => return None,
        Err(error) => {
            row.status = Status::Failed.as_str();
            row.first_error = Some(error.to_string());
        }
    }
    Some(row)
}

/// How long a flush's ledger claim lasts beyond twice the Iceberg commit interval and the
/// commit lease (an Iceberg flush waits for its table's next commit; the claim is renewed
/// by nobody). A claim whose answer was lost holds its key this long at most.
const FLUSH_LEASE_SLACK: Duration = Duration::from_secs(60);

impl<S: ObjectStore, R: RecordStore, L: Ledger, T: TableSink> Pipeline<S, R, L, T> {
    /// Writes the pending history rows as one file of the history table (nothing when
    /// there is none or the history is off), after retrying a flush that failed before
    /// (under its own id, so its files are rewritten, or found committed, never written
    /// twice); returns how many rows it wrote. A failed flush is kept for the next call.
    pub async fn flush_history(&self, cancel: &CancellationToken) -> Result<usize, JobError> {
        let Some(dataset) = self.settings.datasets.history() else {
            return Ok(0);
        };
        let dataset = &*self.effective(dataset).await?;
        let mut unfinished = self.history.unfinished.lock().await;
        let mut flushes: Vec<Flush> = unfinished.drain(..).collect();
        let rows = self.history.take();
        if !rows.is_empty() {
            flushes.push(Flush {
                id: uuid::Uuid::new_v4().simple().to_string(),
                rows,
            });
        }
        // A flush that fails again does not hold up the newer ones.
        let (mut written, mut first_error) = (0, None);
        for flush in flushes {
            match self.write_history(dataset, &flush, cancel).await {
                Ok(()) => written += flush.rows.len(),
                Err(e) => {
                    first_error.get_or_insert(e);
                    unfinished.push_back(flush);
                }
            }
        }
        let mut queued: usize = unfinished.iter().map(|f| f.rows.len()).sum();
        while queued > MAX_PENDING_ROWS && unfinished.len() > 1 {
            if let Some(dropped) = unfinished.pop_front() {
                queued -= dropped.rows.len();
                tracing::warn!(
                    rows = dropped.rows.len(),
                    "load history flushes keep failing; the oldest failed flush is dropped (the ledger keeps the same facts)"
                );
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(written),
        }
    }

    /// One attempt at a flush: claims its ledger key, settles at once if an earlier
    /// attempt's Iceberg commit landed, else converts and publishes (Hive parts land on
    /// the same keys as an earlier attempt's) and records `done`; a failure is recorded.
    async fn write_history(
        &self,
        dataset: &Dataset,
        flush: &Flush,
        cancel: &CancellationToken,
    ) -> Result<(), JobError> {
        static ATTEMPTS: AtomicU64 = AtomicU64::new(0);
        let uri = format!("lakeworker://{LOADS_TABLE}/{}", flush.id);
        let claim = Claim {
            key: LedgerKey {
                uri: uri.clone(),
                version: "-".into(),
            },
            owner: format!(
                "{}/{LOADS_TABLE}/{}",
                self.worker_id,
                ATTEMPTS.fetch_add(1, Ordering::Relaxed)
            ),
            lease: 2 * self.settings.iceberg.commit_interval
                + self.settings.iceberg.commit_lease
                + FLUSH_LEASE_SLACK,
            dataset: dataset.name.clone(),
            message_id: flush.id.clone(),
            reprocess: None,
            etag: None,
        };
        let earlier = match self.ledger.claim(&claim).await? {
            ClaimOutcome::Claimed { earlier, .. } => earlier,
            ClaimOutcome::Finished { .. } => return Ok(()),
            ClaimOutcome::Busy { owner, until } => {
                return Err(JobError::Busy { uri, owner, until })
            }
        };
        let rows = flush.rows.len() as u64;
        let done = |outputs| Completion {
            rows_in: rows,
            rows_written: rows,
            outputs,
            ..Completion::default()
        };
        let result = async {
            if self
                .table
                .committed(dataset, &claim, &earlier.commits)
                .await?
            {
                return Ok(super::claim::committed_outputs(&earlier));
            }
            self.convert_and_publish_history(dataset, &flush.rows, &uri, &flush.id, &claim, cancel)
                .await
        }
        .await;
        let outcome = match result {
            Ok(outputs) => self
                .ledger
                .finish(&claim, &done(outputs))
                .await
                .map_err(JobError::from),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(true) => Ok(()),
            Ok(false) => Err(JobError::LeaseLost { uri }),
            Err(e) => {
                if let Err(fail) = self.ledger.fail(&claim, &e.to_string()).await {
                    tracing::warn!(error = %fail, "could not record the failed history flush");
                }
                Err(e)
            }
        }
    }

    /// Converts the rows like a landing file and publishes the parts; returns their URIs.
    /// A row the history table refuses (a bug: the rows are ours) is left out, logged.
    async fn convert_and_publish_history(
        &self,
        dataset: &Dataset,
        rows: &[LoadRow],
        uri: &str,
        id: &str,
        claim: &Claim,
        cancel: &CancellationToken,
    ) -> Result<Vec<String>, JobError> {
        let scratch = self.scratch_dir(uri)?;
        let mut text = String::new();
        for row in rows {
            text.push_str(&row.json_line());
            text.push('\n');
        }
        let lineage = lineage(uri, Utc::now());
        let (owned, dir, parquet) = (
            dataset.clone(),
            scratch.path().to_owned(),
            self.settings.lake.parquet,
        );
        let options = ConvertOptions {
            batch_rows: self.settings.worker.batch_rows.get(),
            threads: 1,
            memory: self.settings.worker.conversion_memory,
        };
        let name = format!("{id}.jsonl");
        let converted = convert_on_blocking_thread(move || {
            convert_to_parts(
                std::io::Cursor::new(text.into_bytes()),
                &name,
                &owned,
                &lineage,
                options,
                &dir,
                &parquet,
                None,
            )
        })
        .await?
        .map_err(|source| JobError::Convert {
            what: uri.to_owned(),
            source,
        })?;
        if converted.report.rows_rejected > 0 {
            tracing::error!(
                refused = converted.report.rows_rejected,
                first = %converted.report.error_summary(3),
                "history rows the history table refuses are left out (a bug; please report it)"
            );
        }
        let locations = self.table.locations(dataset, id, &converted.parts);
        let outputs: Vec<String> = locations
            .iter()
            .map(|at| output_uri(&at.bucket, &at.key))
            .collect();
        self.ledger.publishing(claim, &outputs).await?;
        self.table
            .publish(
                dataset,
                claim,
                &converted.parts,
                &locations,
                &Slot::default(),
                cancel,
            )
            .await?;
        Ok(outputs)
    }
}
