//! The load history's side of the pipeline: a row per settled attempt is kept in memory
//! ([`History::record`]) and [`Pipeline::flush_history`] writes the pending rows as one
//! file of the [`LOADS_TABLE`] table, through the same conversion and table port as a
//! landing file (a flush is claimed in the ledger like an object, so an Iceberg commit
//! of it is exactly once). Rows a failed flush could not write are kept for the next.

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
use crate::domain::envelope::ObjectRef;
use crate::domain::history::{LoadRow, LOADS_TABLE};
use crate::domain::ledger::{output_uri, Claim, ClaimOutcome, Completion, LedgerKey, Status};
use crate::ports::{Ledger, ObjectStore, RecordStore, Slot, TableSink};

/// Rows waiting for the next flush.
#[derive(Debug, Default)]
pub struct History {
    pending: Mutex<Vec<LoadRow>>,
}

impl History {
    pub(super) fn record(&self, row: LoadRow) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.push(row);
        }
    }

    fn take(&self) -> Vec<LoadRow> {
        self.pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
    }

    /// Puts rows a flush could not write back, before any recorded since.
    fn restore(&self, mut rows: Vec<LoadRow>) {
        if let Ok(mut pending) = self.pending.lock() {
            rows.append(&mut pending);
            *pending = rows;
        }
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
    };
    match result {
        Ok(ObjectOutcome::Written(summary)) => {
            row.rows_in = summary.rows_in;
            row.rows_written = summary.rows_written;
            row.rows_quarantined = summary.rows_quarantined;
            row.rows_rescued = summary.rows_rescued;
            row.first_error = summary.first_error.clone();
            row.outputs = summary_outputs(lake, summary);
        }
        Ok(ObjectOutcome::Rejected(rejection)) => {
            row.status = Status::Rejected.as_str();
            row.rows_in = rejection.rows_in;
            row.rows_quarantined = rejection.rows_rejected;
            row.first_error = Some(rejection.reason.clone());
            row.outputs = rejection_outputs(&lake.quarantine_bucket, &rejection.quarantined_as);
        }
        Ok(ObjectOutcome::Committed { .. }) => {
            row.outputs = attempt.earlier.done.clone();
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

/// How long a flush's ledger claim lasts: it is renewed by nobody, and an Iceberg flush
/// waits for its table's next commit.
const FLUSH_LEASE: Duration = Duration::from_secs(3600);

impl<S: ObjectStore, R: RecordStore, L: Ledger, T: TableSink> Pipeline<S, R, L, T> {
    /// Writes every pending history row as one file of the history table (nothing when
    /// there is none or the history is off); returns how many rows it wrote. On failure
    /// the rows stay pending for the next flush.
    pub async fn flush_history(&self, cancel: &CancellationToken) -> Result<usize, JobError> {
        let Some(dataset) = self.settings.datasets.history() else {
            return Ok(0);
        };
        let rows = self.history.take();
        if rows.is_empty() {
            return Ok(0);
        }
        match self.write_history(dataset, &rows, cancel).await {
            Ok(()) => Ok(rows.len()),
            Err(e) => {
                self.history.restore(rows);
                Err(e)
            }
        }
    }

    async fn write_history(
        &self,
        dataset: &crate::domain::dataset::Dataset,
        rows: &[LoadRow],
        cancel: &CancellationToken,
    ) -> Result<(), JobError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let uri = format!("lakeworker://{LOADS_TABLE}/{id}");
        let claim = Claim {
            key: LedgerKey {
                uri: uri.clone(),
                version: "-".into(),
            },
            owner: format!("{}/{LOADS_TABLE}/{id}", self.worker_id),
            lease: FLUSH_LEASE,
            dataset: dataset.name.clone(),
            message_id: id.clone(),
            reprocess: None,
            etag: None,
        };
        match self.ledger.claim(&claim).await? {
            ClaimOutcome::Claimed { .. } => {}
            other => {
                return Err(JobError::Internal(format!(
                    "history flush {uri}: a fresh ledger key was {other:?}"
                )))
            }
        }
        let written = self.convert_and_publish_history(dataset, rows, &uri, &id, &claim, cancel);
        match written.await {
            Ok(outputs) => {
                let done = Completion {
                    rows_in: rows.len() as u64,
                    rows_written: rows.len() as u64,
                    outputs,
                    ..Completion::default()
                };
                self.ledger.finish(&claim, &done).await?;
                Ok(())
            }
            Err(e) => {
                if let Err(fail) = self.ledger.fail(&claim, &e.to_string()).await {
                    tracing::warn!(error = %fail, "could not record the failed history flush");
                }
                Err(e)
            }
        }
    }

    /// Converts the rows like a landing file and publishes the parts; returns their URIs.
    async fn convert_and_publish_history(
        &self,
        dataset: &crate::domain::dataset::Dataset,
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
            // The rows are ours: a bad one is a bug, never the user's data.
            return Err(JobError::Internal(format!(
                "history rows the history table refuses: {}",
                converted.report.error_summary(3)
            )));
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
