//! Inline user records: validated like a file's rows, good ones upserted into the
//! dataset's table, bad ones quarantined (or, past the dataset's limits, the whole message
//! refused).

use std::borrow::Cow;
use std::sync::Arc;

use super::{convert_on_blocking_thread, lineage, rejection_reason, Outcome, Pipeline};
use crate::convert::{self, Collect, Quarantine};
use crate::domain::dataset::NewColumns;
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
        // With `on_new_columns = "add"`, the columns files added, and those these records
        // bring (added like a file's, then converted again).
        let mut dataset = self.effective(dataset).await?;
        let records = Arc::new(inline.records);
        let mut passes = 0;
        let (report, batches, bad_rows) = loop {
            passes += 1;
            let (owned, batch_lineage, records) = (
                dataset.clone().into_owned(),
                lineage.clone(),
                records.clone(),
            );
            let converted = convert_on_blocking_thread(move || {
                let mut batches = Collect::default();
                let mut bad = Quarantine::in_memory();
                let report = convert::convert_records(
                    &records,
                    &owned,
                    &batch_lineage,
                    &mut batches,
                    &mut bad,
                )?;
                Ok((report, batches.0, bad.finish()?))
            })
            .await?;
            let converted = converted.map_err(|source| JobError::Convert {
                what: what.clone(),
                source,
            })?;
            let report = &converted.0;
            if dataset.policy.on_new_columns != NewColumns::Add || report.new_columns.is_empty() {
                break converted;
            }
            if passes >= super::object::MAX_ADD_PASSES {
                return Err(JobError::Internal(format!(
                    "{what}: still new columns after {passes} conversions"
                )));
            }
            let source = format!("inline records of message {}", job.message_id());
            match self.add_columns(&source, &dataset, report).await? {
                Ok((wider, _)) => dataset = Cow::Owned(wider),
                Err(reason) => return Err(JobError::Rejected { what, reason }),
            }
        };
        let dataset = dataset.as_ref();
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
