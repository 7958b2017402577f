//! Inline user records: validated like a file's rows, good ones upserted into the
//! dataset's table, bad ones quarantined (or, past the dataset's limits, the whole message
//! refused).

use super::{convert_on_blocking_thread, lineage, rejection_reason, Outcome, Pipeline};
use crate::convert::{self, Collect, Quarantine};
use crate::domain::envelope::InlineRecords;
use crate::domain::lake;
use crate::pipeline::error::JobError;
use crate::pipeline::job::Job;
use crate::ports::{Ledger, ObjectStore, RecordStore, TableSink};

impl<S: ObjectStore, R: RecordStore, L: Ledger, T: TableSink> Pipeline<S, R, L, T> {
    pub(super) async fn upsert_inline(
        &self,
        inline: InlineRecords,
        job: &Job,
    ) -> Result<Outcome, JobError> {
        let dataset = self
            .settings
            .datasets
            .by_name(&inline.dataset)
            .ok_or_else(|| JobError::UnknownDataset(inline.dataset.clone()))?;
        if !dataset.policy.accepts_inline {
            return Err(JobError::InlineRefused(dataset.name.clone()));
        }
        let target = dataset
            .records
            .as_ref()
            .ok_or_else(|| JobError::NoRecordsTable(dataset.name.clone()))?;
        let what = format!("inline records for dataset {}", dataset.name);
        // A message has no object time; its records arrive when they are handled.
        let lineage = lineage(&what, chrono::Utc::now());
        let owned = dataset.clone();
        let batch_lineage = lineage.clone();
        let converted = convert_on_blocking_thread(move || {
            let mut batches = Collect::default();
            let mut bad = Quarantine::in_memory();
            let report = convert::convert_records(
                &inline.records,
                &owned,
                &batch_lineage,
                &mut batches,
                &mut bad,
            )?;
            Ok((report, batches.0, bad.finish()?))
        })
        .await?;
        let (report, batches, bad_rows) = converted.map_err(|source| JobError::Convert {
            what: what.clone(),
            source,
        })?;
        if let Some(reason) = rejection_reason(&dataset.policy, &report) {
            return Err(JobError::Rejected { what, reason });
        }
        if report.rows_rejected > 0 {
            let key = lake::quarantine_rows_key(
                &self.settings.lake.quarantine_prefix,
                &dataset.name,
                lineage.ingest_date,
                job.message_id(),
            );
            self.store
                .put_bytes(&self.settings.lake.quarantine_bucket, &key, bad_rows)
                .await?;
            tracing::warn!(quarantined = report.rows_rejected, %key, "bad inline records quarantined");
        }
        // One batch, so the last record of a key wins across the whole message.
        let rows = match batches.first() {
            Some(first) => {
                let all = arrow::compute::concat_batches(&first.schema(), &batches)
                    .map_err(|e| JobError::Internal(format!("joining inline batches: {e}")))?;
                tokio::select! {
                    upserted = self.records.upsert(&target.table, dataset, &all) => upserted?,
                    _ = job.token().cancelled() => return Err(JobError::Stopped),
                }
            }
            None => 0,
        };
        tracing::info!(dataset = %dataset.name, rows, "inline records upserted");
        Ok(Outcome::Upserted {
            dataset: dataset.name.clone(),
            rows,
            quarantined: report.rows_rejected,
        })
    }
}
