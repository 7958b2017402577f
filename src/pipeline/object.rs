//! One object: the size limit, the streamed download, the conversion on a blocking
//! thread, then either the rejection of the whole file (copied to the quarantine with a
//! report) or the lake parts, the bad rows and the table rows.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use arrow::record_batch::RecordBatch;
use futures_util::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::{
    arrival, convert_on_blocking_thread, ingest_date, lineage, rejection_outputs, rejection_reason,
    stopped_or, Attempt, ObjectOutcome, ObjectSummary, Pipeline, Rejection,
};
use crate::config::{ParquetOptions, Secret};
use crate::convert::{
    self, ConvertError, ConvertOptions, ConvertReport, LakeParts, Lineage, PartFile, Quarantine,
    Spool,
};
use crate::domain::dataset::{Dataset, NewColumns, TableFormat};
use crate::domain::envelope::ObjectRef;
use crate::domain::lake;
use crate::domain::ledger::output_uri;
use crate::pipeline::error::JobError;
use crate::pipeline::job::{Job, StoppableReader};
use crate::ports::{Ledger, ObjectStore, RecordStore, StoreErrorKind, TableSink};
use crate::table::UPLOADS_AT_ONCE;

/// What the blocking conversion produced in the scratch directory.
pub(super) struct Converted {
    pub(super) report: ConvertReport,
    pub(super) parts: Vec<PartFile>,
    spool: Option<PathBuf>,
    /// The bad rows, as JSON lines, when there were any.
    bad_rows: Option<PathBuf>,
    /// The scratch directory holding the files above, removed when this is dropped.
    scratch: Option<tempfile::TempDir>,
}

/// Why an object was not converted.
enum NotConverted {
    /// The whole file is refused, for this reason.
    Refused(String),
    /// Its version changed since the event.
    Superseded,
}
use NotConverted::{Refused, Superseded};

/// Conversions of one file at most with `on_new_columns = "add"`: each adds the new
/// columns it saw (up to the report's cap), the last finds none.
pub(super) const MAX_ADD_PASSES: usize = 12;

fn too_large(size: u64, limit: u64) -> String {
    format!("the object is {size} bytes, above max_object_bytes ({limit})")
}

impl<S: ObjectStore, R: RecordStore, L: Ledger, T: TableSink> Pipeline<S, R, L, T> {
    pub(super) async fn process_object(
        &self,
        object: &ObjectRef,
        dataset: &Dataset,
        job: &Job,
        attempt: &Attempt,
    ) -> Result<ObjectOutcome, JobError> {
        let limit = dataset.policy.max_object_bytes;
        if let Some(size) = object.size.filter(|size| *size > limit) {
            return self
                .reject_file(object, dataset, attempt, job, too_large(size, limit), None)
                .await;
        }
        let lineage = lineage(&object.uri(), arrival(object)?);
        let mut dataset = self.effective(dataset).await?;
        let mut added = Vec::new();
        for _ in 0..MAX_ADD_PASSES {
            let converted = match self
                .download_and_convert(object, &dataset, &lineage, job)
                .await?
            {
                Ok(converted) => converted,
                Err(Refused(reason)) => {
                    return self
                        .reject_file(object, &dataset, attempt, job, reason, None)
                        .await
                }
                Err(Superseded) => return Ok(ObjectOutcome::Superseded { uri: object.uri() }),
            };
            let report = &converted.report;
            if dataset.policy.on_new_columns == NewColumns::Add && !report.new_columns.is_empty() {
                // The table grows the columns, then the file is converted again with them.
                match self.add_columns(&object.uri(), &dataset, report).await? {
                    Ok((wider, now)) => {
                        added.extend(report.new_columns.iter().cloned());
                        tracing::info!(columns = ?now, "the dataset added the file's new columns; converting it again with them");
                        dataset = Cow::Owned(wider);
                        continue;
                    }
                    Err(reason) => {
                        return self
                            .reject_file(object, &dataset, attempt, job, reason, Some(report))
                            .await
                    }
                }
            }
            if let Some(reason) = rejection_reason(&dataset.policy, report) {
                return self
                    .reject_file(object, &dataset, attempt, job, reason, Some(report))
                    .await;
            }
            let mut outcome = self
                .write_outputs(object, &dataset, &lineage, converted, job, attempt)
                .await?;
            if let ObjectOutcome::Written(summary) = &mut outcome {
                // What this file brought, though the table has the columns now.
                summary.new_columns.splice(0..0, added);
            }
            return Ok(outcome);
        }
        Err(JobError::Internal(format!(
            "{}: still new columns after {MAX_ADD_PASSES} conversions",
            object.uri()
        )))
    }

    /// The dataset as its table is now: with `on_new_columns = "add"`, its own columns
    /// and those files added (from the ledger), which the table is made to have; for an
    /// Iceberg table, with the table's field ids.
    pub(super) async fn effective<'d>(
        &self,
        dataset: &'d Dataset,
    ) -> Result<Cow<'d, Dataset>, JobError> {
        let ids = self.table.field_ids(dataset);
        if dataset.policy.on_new_columns != NewColumns::Add && ids.is_none() {
            return Ok(Cow::Borrowed(dataset));
        }
        let mut effective = dataset.clone();
        effective.field_ids = ids;
        if dataset.policy.on_new_columns == NewColumns::Add {
            let added = self.ledger.dataset_columns(&dataset.name).await?;
            effective = effective.with_added(added.names());
            if effective.added > 0 {
                self.table.evolve(&effective, &[]).await?;
                effective.field_ids = self.table.field_ids(dataset);
            }
        }
        Ok(Cow::Owned(effective))
    }

    /// Records the new columns `source` (a file's URI) brought as the dataset's (in the
    /// ledger, one list for every task) and has the table add them; the wider dataset and
    /// the names this task added. `Err(reason)` when a name cannot be a column (the file
    /// is then rejected).
    pub(super) async fn add_columns(
        &self,
        source: &str,
        dataset: &Dataset,
        report: &ConvertReport,
    ) -> Result<Result<(Dataset, Vec<String>), String>, JobError> {
        let names: Vec<String> = report.new_columns.iter().cloned().collect();
        let refused = |reason: String| {
            Ok(Err(format!(
                "a new column cannot be added (on_new_columns = \"add\"): {reason}"
            )))
        };
        if let Some(reason) = names.iter().find_map(|n| dataset.refuses_new_column(n)) {
            return refused(reason);
        }
        for (i, name) in names.iter().enumerate() {
            if let Some(other) = names[..i].iter().find(|o| o.eq_ignore_ascii_case(name)) {
                return refused(format!(
                    "{name:?} and {other:?} differ only in case (Athena and Glue fold case)"
                ));
            }
        }
        let max = dataset.policy.max_columns;
        if dataset.columns.len() + names.len() > max {
            return Ok(Err(format!(
                "adding the file's {} new columns would give the dataset more than max_columns ({max}): {}",
                names.len(),
                names.join(", ")
            )));
        }
        let (list, now) = self
            .ledger
            .add_columns(&dataset.name, &names, source)
            .await?;
        // The ledger refuses a name differing only in case from one another task added.
        if let Some(name) = names.iter().find(|n| list.names().all(|l| l != n.as_str())) {
            let other = list.names().find(|l| l.eq_ignore_ascii_case(name));
            return refused(format!(
                "{name:?} would clash with the column {:?} the dataset added (Athena and Glue fold case)",
                other.unwrap_or_default()
            ));
        }
        let mut wider = dataset.with_added(list.names());
        self.table.evolve(&wider, &now).await?;
        wider.field_ids = self.table.field_ids(dataset);
        Ok(Ok((wider, now)))
    }

    /// Downloads and converts the object: the conversion, or why the file is refused
    /// (too large, malformed) or skipped (its version changed since the event).
    async fn download_and_convert(
        &self,
        object: &ObjectRef,
        dataset: &Dataset,
        lineage: &Lineage,
        job: &Job,
    ) -> Result<Result<Converted, NotConverted>, JobError> {
        let uri = object.uri();
        let limit = dataset.policy.max_object_bytes;
        let opened = tokio::select! {
            opened = self.store.open(object).instrument(tracing::info_span!("download")) => opened,
            _ = job.token().cancelled() => return Err(JobError::Stopped),
        };
        let opened = match opened {
            Ok(opened) => opened,
            Err(e) if e.kind == StoreErrorKind::PreconditionFailed => {
                tracing::info!(%uri, "object changed since this event; skipping this version");
                return Ok(Err(Superseded));
            }
            Err(e) if e.kind == StoreErrorKind::NotFound => {
                return Err(JobError::ObjectMissing { uri })
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(size) = opened.size.filter(|size| *size > limit) {
            // Dropping the reader stops the download.
            return Ok(Err(Refused(too_large(size, limit))));
        }

        let scratch = self.scratch_dir(&uri)?;
        let converted = {
            let input = StoppableReader::new(opened.reader, job);
            let (dataset, dir, parquet) = (
                dataset.clone(),
                scratch.path().to_owned(),
                self.settings.lake.parquet,
            );
            let (key, lineage, salt) = (
                object.key.clone(),
                lineage.clone(),
                self.settings.lake.pii_salt.clone(),
            );
            let options = ConvertOptions {
                batch_rows: self.settings.worker.batch_rows.get(),
                threads: self.settings.worker.conversion_threads.get(),
                memory: self.settings.worker.conversion_memory,
            };
            convert_on_blocking_thread(move || {
                convert_to_parts(
                    input,
                    &key,
                    &dataset,
                    &lineage,
                    options,
                    &dir,
                    &parquet,
                    salt.as_ref(),
                )
            })
            .await?
        };
        if job.stopped().is_some() {
            return Err(JobError::Stopped);
        }
        match converted {
            Ok(mut converted) => {
                converted.scratch = Some(scratch);
                Ok(Ok(converted))
            }
            Err(ConvertError::Malformed(reason)) => Ok(Err(Refused(reason))),
            Err(source) => Err(JobError::Convert { what: uri, source }),
        }
    }

    /// Records what it will publish in the ledger, uploads the lake parts and the bad rows,
    /// upserts the table rows, then copies the original to the raw zone.
    async fn write_outputs(
        &self,
        object: &ObjectRef,
        dataset: &Dataset,
        lineage: &Lineage,
        converted: Converted,
        job: &Job,
        attempt: &Attempt,
    ) -> Result<ObjectOutcome, JobError> {
        let Converted {
            report,
            parts,
            spool,
            bad_rows,
            scratch: _scratch,
        } = converted;
        let lake_settings = &self.settings.lake;
        let id = lake::object_id(object);
        let locations = self.table.locations(dataset, &id, &parts);
        let quarantine = bad_rows.map(|path| {
            let key = lake::quarantine_rows_key(
                &lake_settings.quarantine_prefix,
                &dataset.name,
                lineage.ingest_date,
                &id,
            );
            (path, key)
        });
        let bytes_written: u64 = parts
            .iter()
            .map(|p| p.path.as_path())
            .chain(quarantine.iter().map(|(path, _)| path.as_path()))
            .filter_map(|path| std::fs::metadata(path).ok())
            .map(|m| m.len())
            .sum();
        let raw_key = self.raw_key(object, dataset, lineage);
        let publishing: Vec<String> = locations
            .iter()
            .map(|at| output_uri(&at.bucket, &at.key))
            .chain(
                quarantine
                    .iter()
                    .map(|(_, key)| output_uri(&lake_settings.quarantine_bucket, key)),
            )
            .chain(
                raw_key
                    .iter()
                    .map(|key| output_uri(&lake_settings.bucket, key)),
            )
            .collect();
        self.publishing(attempt, object, &publishing).await?;
        let bad_rows_upload = quarantine
            .iter()
            .map(|(path, key)| {
                (
                    path.clone(),
                    lake_settings.quarantine_bucket.as_str(),
                    key.clone(),
                )
            })
            .collect::<Vec<_>>();
        // An Iceberg commit is final: a retry after it only settles the ledger
        // (`TableSink::committed`), so the records and the raw copy go first there (both
        // are idempotent). For Hive they follow the lake write, as the parts are rewritten
        // by a retry anyway.
        let table_last = dataset.table == TableFormat::Iceberg;
        let mut spool = spool;
        let mut done_before = None;
        if table_last {
            done_before = Some(
                self.records_and_raw(object, dataset, spool.take(), raw_key.clone(), job)
                    .await?,
            );
        }
        // The bad rows first, then the table: the table makes its parts visible (for Hive,
        // notes and registers their partitions) only once everything else is up, and a
        // publish is never dropped half-way.
        async {
            self.upload(&bad_rows_upload, job).await?;
            self.table
                .publish(
                    dataset,
                    &attempt.claim,
                    &parts,
                    &locations,
                    job.slot(),
                    job.token(),
                )
                .await
                .map_err(|e| stopped_or(e.into(), job))
        }
        .instrument(tracing::info_span!(
            "lake_write",
            files = parts.len() + bad_rows_upload.len(),
            bytes = bytes_written
        ))
        .await?;

        let (records_upserted, raw) = match done_before {
            Some(done) => done,
            None => {
                self.records_and_raw(object, dataset, spool, raw_key, job)
                    .await?
            }
        };
        let summary = ObjectSummary {
            uri: object.uri(),
            dataset: dataset.name.clone(),
            rows_in: report.rows_in,
            rows_written: report.rows_written,
            rows_quarantined: report.rows_rejected,
            rows_rescued: report.rows_rescued,
            first_error: report.errors.first().map(ToString::to_string),
            new_columns: report.new_columns.iter().cloned().collect(),
            part_uris: locations
                .iter()
                .map(|at| output_uri(&at.bucket, &at.key))
                .collect(),
            parts: locations.into_iter().map(|at| at.key).collect(),
            quarantine: quarantine.map(|(_, key)| key),
            raw,
            records_upserted,
        };
        let metrics = crate::metrics::get();
        metrics.rows(
            &dataset.name,
            summary.rows_in,
            summary.rows_written,
            summary.rows_quarantined,
        );
        metrics.bytes(&dataset.name, "read", object.size.unwrap_or_default());
        metrics.bytes(&dataset.name, "written", bytes_written);
        if !summary.new_columns.is_empty() {
            let policy = dataset.policy.on_new_columns;
            let columns = summary.new_columns.join(", ");
            if policy == NewColumns::Ignore {
                tracing::warn!(%columns, "the file has columns the dataset does not declare; on_new_columns = \"ignore\" dropped them");
            } else {
                tracing::info!(%columns, ?policy, "the file has columns the dataset does not declare");
            }
        }
        tracing::info!(
            rows_in = summary.rows_in,
            rows_written = summary.rows_written,
            rows_quarantined = summary.rows_quarantined,
            rows_rescued = summary.rows_rescued,
            parts = summary.parts.len(),
            records_upserted,
            "object converted"
        );
        Ok(ObjectOutcome::Written(summary))
    }

    /// Upserts the spooled rows into the dataset's records table (when it has one) and
    /// copies the original to the raw zone (when `raw_key` is set); returns the rows
    /// upserted and the raw key.
    async fn records_and_raw(
        &self,
        object: &ObjectRef,
        dataset: &Dataset,
        spool: Option<PathBuf>,
        raw_key: Option<String>,
        job: &Job,
    ) -> Result<(u64, Option<String>), JobError> {
        let mut records_upserted = 0;
        if let (Some(target), Some(spool)) = (&dataset.records, spool) {
            records_upserted = self
                .upsert_spool(dataset, &target.table, spool, job)
                .instrument(tracing::info_span!("table_write", table = %target.table))
                .await?;
        }
        let raw = match raw_key {
            Some(key) => self.copy_to_raw(object, key, job).await?,
            None => None,
        };
        Ok((records_upserted, raw))
    }

    /// With `lake.raw_prefix`, where the raw zone keeps this version of the original.
    fn raw_key(&self, object: &ObjectRef, dataset: &Dataset, lineage: &Lineage) -> Option<String> {
        let raw_prefix = self.settings.lake.raw_prefix.as_ref()?;
        Some(lake::raw_key(
            raw_prefix,
            &dataset.name,
            lineage.ingest_date,
            &lake::object_id(object),
            &object.key,
        ))
    }

    /// Copies the original server-side (pinned to its version) into the raw zone at `key`
    /// and returns the key. If the original changed or vanished since its event, there is
    /// nothing to keep for this version (its successor has its own event): logged, skipped.
    async fn copy_to_raw(
        &self,
        object: &ObjectRef,
        key: String,
        job: &Job,
    ) -> Result<Option<String>, JobError> {
        let copy = self.store.copy(object, &self.settings.lake.bucket, &key);
        match until_stopped(job, copy).await? {
            Ok(()) => Ok(Some(key)),
            Err(e)
                if matches!(
                    e.kind,
                    StoreErrorKind::PreconditionFailed | StoreErrorKind::NotFound
                ) =>
            {
                tracing::warn!(error = %e, "the original changed or vanished after conversion; no raw copy");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Uploads local files (path, bucket, key), a few at a time.
    async fn upload(&self, files: &[(PathBuf, &str, String)], job: &Job) -> Result<(), JobError> {
        // Futures are built first: a closure over borrowed pairs inside the stream would
        // make the job future fail the `Send` check of `tokio::spawn`.
        let uploads: Vec<_> = files
            .iter()
            .map(|(path, bucket, key)| self.store.put_file(bucket, key, path, job.token()))
            .collect();
        futures_util::stream::iter(uploads)
            .buffer_unordered(UPLOADS_AT_ONCE)
            .try_collect::<()>()
            .await
            .map_err(|e| stopped_or(e.into(), job))
    }

    /// Refuses the whole file: copies it, unchanged, to the quarantine and writes a report
    /// beside it (both recorded in the ledger first). Nothing goes to the lake or the table.
    async fn reject_file(
        &self,
        object: &ObjectRef,
        dataset: &Dataset,
        attempt: &Attempt,
        job: &Job,
        reason: String,
        report: Option<&ConvertReport>,
    ) -> Result<ObjectOutcome, JobError> {
        let ingest_date = ingest_date(arrival(object)?);
        let id = lake::object_id(object);
        let key = lake::quarantine_file_key(
            &self.settings.lake.quarantine_prefix,
            &dataset.name,
            ingest_date,
            &id,
            &object.key,
        );
        let bucket = &self.settings.lake.quarantine_bucket;
        self.publishing(attempt, object, &rejection_outputs(bucket, &key))
            .await?;
        match until_stopped(job, self.store.copy(object, bucket, &key)).await? {
            Ok(()) => {}
            Err(e) if e.kind == StoreErrorKind::PreconditionFailed => {
                return Ok(ObjectOutcome::Superseded { uri: object.uri() });
            }
            Err(e) if e.kind == StoreErrorKind::NotFound => {
                return Err(JobError::ObjectMissing { uri: object.uri() })
            }
            Err(e) => return Err(e.into()),
        }
        let empty = ConvertReport::default();
        let counts = report.unwrap_or(&empty);
        let document = serde_json::json!({
            "source": object.uri(),
            "dataset": dataset.name,
            "rejected_at": crate::domain::ledger::timestamp(chrono::Utc::now()),
            "reason": reason,
            "rows_in": counts.rows_in,
            "rows_valid": counts.rows_in - counts.rows_rejected,
            "rows_invalid": counts.rows_rejected,
            "max_invalid_fraction": dataset.policy.max_invalid_fraction,
            "errors": counts.errors,
        });
        let body =
            serde_json::to_vec_pretty(&document).map_err(|e| JobError::Internal(e.to_string()))?;
        let report_key = format!("{key}.error.json");
        let report = self.store.put_bytes(bucket, &report_key, body);
        until_stopped(job, report).await??;
        tracing::warn!(%reason, quarantined_as = %key, "file rejected");
        Ok(ObjectOutcome::Rejected(Rejection {
            uri: object.uri(),
            reason,
            rows_in: counts.rows_in,
            rows_rejected: counts.rows_rejected,
            quarantined_as: key,
        }))
    }

    /// Streams the spooled rows into the table, one batch at a time, last wins per key.
    async fn upsert_spool(
        &self,
        dataset: &Dataset,
        table: &str,
        spool: PathBuf,
        job: &Job,
    ) -> Result<u64, JobError> {
        let (sender, mut receiver) = mpsc::channel::<Result<RecordBatch, JobError>>(2);
        let reader = tokio::task::spawn_blocking(move || {
            let batches = match convert::read_spool(&spool) {
                Ok(batches) => batches,
                Err(source) => {
                    let _ = sender.blocking_send(Err(JobError::Convert {
                        what: "records spool".into(),
                        source,
                    }));
                    return;
                }
            };
            for batch in batches {
                let batch =
                    batch.map_err(|e| JobError::Internal(format!("reading records spool: {e}")));
                if sender.blocking_send(batch).is_err() {
                    return;
                }
            }
        });
        let mut written = 0;
        while let Some(batch) = receiver.recv().await {
            let batch = batch?;
            written += tokio::select! {
                upserted = self.records.upsert(table, dataset, &batch) => upserted?,
                _ = job.token().cancelled() => return Err(JobError::Stopped),
            };
        }
        reader
            .await
            .map_err(|e| JobError::Internal(format!("records spool task: {e}")))?;
        Ok(written)
    }
}

/// Awaits `call` unless the job is stopped first (`Err(Stopped)`): a server-side copy of
/// a large object can take minutes, and a job that lost its lease must not finish it.
async fn until_stopped<T>(
    job: &Job,
    call: impl std::future::Future<Output = T>,
) -> Result<T, JobError> {
    tokio::select! {
        result = call => Ok(result),
        _ = job.token().cancelled() => Err(JobError::Stopped),
    }
}

/// Runs on a blocking thread: the whole file through the converter into lake parts, a
/// spool of typed rows for user datasets, and a file of bad rows.
#[allow(clippy::too_many_arguments)]
pub(super) fn convert_to_parts(
    input: impl std::io::Read,
    name: &str,
    dataset: &Dataset,
    lineage: &Lineage,
    options: ConvertOptions,
    dir: &Path,
    parquet: &ParquetOptions,
    salt: Option<&Secret>,
) -> Result<Converted, ConvertError> {
    let lake = LakeParts::new(dir, dataset, lineage, parquet, salt, options.memory)
        .with_encoders(options.threads);
    let spool = match dataset.records {
        Some(_) => Some(Spool::create(
            &dir.join("records.arrow"),
            &convert::full_schema(dataset),
        )?),
        None => None,
    };
    let bad_path = dir.join("bad-rows.jsonl");
    let mut quarantine = Quarantine::create(&bad_path)?;
    let mut sinks = (lake, spool);
    let report = convert::convert(
        input,
        name,
        dataset,
        lineage,
        options,
        &mut sinks,
        &mut quarantine,
    )?;
    let (lake, spool) = sinks;
    let bad_rows = (quarantine.rows() > 0).then_some(bad_path);
    quarantine.finish()?;
    Ok(Converted {
        report,
        parts: lake.finish()?,
        spool: spool.map(Spool::finish).transpose()?,
        bad_rows,
        scratch: None,
    })
}
