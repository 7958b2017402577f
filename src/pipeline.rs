//! One message, start to finish: parse the body, route each object to its dataset, convert
//! it to Parquet parts, upload them, upsert user rows, and say what happened.
//!
//! [`Pipeline::handle`] is the step function the worker pool calls for every message; it
//! does not touch the queue. Its result decides the message's fate
//! ([`crate::worker::disposition`]). It works against the [`ObjectStore`] and
//! [`RecordStore`] traits, so tests can drive it with in-memory fakes.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::{StreamExt, TryStreamExt};
use parquet::file::properties::WriterProperties;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::aws::{AwsErrorKind, ObjectStore, RecordStore};
use crate::config::Settings;
use crate::convert::{self, Collect, ConvertReport, LakeParts, Lineage, PartFile, Spool};
use crate::datasets::Dataset;
use crate::envelope::{self, Envelope, InlineRecords, ObjectRef};
use crate::error::JobError;
use crate::lake;
use crate::records::{self, Item};
use crate::schema::date_to_days;

/// Lake parts uploaded at once per object.
const UPLOAD_CONCURRENCY: usize = 4;

/// What a handled message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to do (test event, deletions).
    Discarded(String),
    /// Every object of the message, converted (or skipped as superseded).
    Converted(Vec<ObjectOutcome>),
    /// Inline records upserted.
    Upserted { dataset: String, rows: u64 },
}

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectOutcome {
    Written(ObjectSummary),
    /// The object changed after the event; the newer version's own event brings it.
    Superseded {
        uri: String,
    },
}

/// Counts and outputs of one converted object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSummary {
    pub uri: String,
    pub dataset: String,
    pub rows_in: u64,
    pub rows_written: u64,
    /// Lake keys written, in partition order.
    pub parts: Vec<String>,
    /// Rows upserted into the dataset's table (after last-wins per key).
    pub records_upserted: u64,
}

/// The message handler, shared by every job of a worker.
pub struct Pipeline<S, R> {
    settings: Arc<Settings>,
    store: S,
    records: R,
    props: WriterProperties,
}

impl<S: ObjectStore, R: RecordStore> Pipeline<S, R> {
    pub fn new(settings: Arc<Settings>, store: S, records: R) -> Self {
        let props = convert::writer_properties(settings.lake.compression);
        Pipeline {
            settings,
            store,
            records,
            props,
        }
    }

    /// Handles one message body. Deletion is the caller's business: `Ok` means every
    /// output is durable.
    pub async fn handle(&self, body: &str) -> Result<Outcome, JobError> {
        match envelope::parse(body)? {
            Envelope::Discard(reason) => Ok(Outcome::Discarded(reason)),
            Envelope::Records(records) => self.upsert_inline(records).await,
            Envelope::Objects(objects) => {
                // Refuse the whole message before any work if one object cannot be routed.
                let routed: Vec<(&ObjectRef, &Dataset)> = objects
                    .iter()
                    .map(|o| Ok((o, self.route(o)?)))
                    .collect::<Result<_, JobError>>()?;
                let mut outcomes = Vec::with_capacity(routed.len());
                for (object, dataset) in routed {
                    let span = tracing::info_span!("object", dataset = %dataset.name, bucket = %object.bucket, key = %object.key);
                    outcomes.push(
                        self.process_object(object, dataset)
                            .instrument(span)
                            .await?,
                    );
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

    async fn process_object(
        &self,
        object: &ObjectRef,
        dataset: &Dataset,
    ) -> Result<ObjectOutcome, JobError> {
        let uri = object.uri();
        let input = match self.store.open(object).await {
            Ok(input) => input,
            Err(e) if e.kind == AwsErrorKind::PreconditionFailed => {
                tracing::info!(%uri, "object changed since this event; skipping this version");
                return Ok(ObjectOutcome::Superseded { uri });
            }
            Err(e) if e.kind == AwsErrorKind::NotFound => {
                return Err(JobError::ObjectMissing { uri })
            }
            Err(e) => return Err(e.into()),
        };
        let scratch = self.scratch_dir(&uri)?;
        let lineage = lineage(&uri, object.event_time);
        let converted = {
            let dataset = dataset.clone();
            let dir = scratch.path().to_owned();
            let props = self.props.clone();
            let batch_rows = self.settings.worker.batch_rows.get();
            tokio::task::spawn_blocking(move || {
                convert_to_parts(input, &dataset, &lineage, batch_rows, &dir, props)
            })
            .await
            .map_err(|e| JobError::Internal(format!("conversion task: {e}")))?
        };
        let (report, parts, spool) = converted.map_err(|source| JobError::Convert {
            what: uri.clone(),
            source,
        })?;
        if report.rows_rejected > 0 {
            return Err(rejected(&uri, &report));
        }

        let id = lake::object_id(object);
        let partition_name = dataset.partition_name();
        let keys: Vec<String> = parts
            .iter()
            .map(|p| {
                lake::part_key(
                    &self.settings.lake.prefix,
                    &dataset.name,
                    &partition_name,
                    p.partition,
                    &id,
                )
            })
            .collect();
        // Futures are built first: a closure over borrowed pairs inside the stream would
        // make the job future fail the `Send` check of `tokio::spawn`.
        let uploads: Vec<_> = parts
            .iter()
            .zip(&keys)
            .map(|(part, key)| {
                self.store
                    .put_file(&self.settings.lake.bucket, key, &part.path)
            })
            .collect();
        futures_util::stream::iter(uploads)
            .buffer_unordered(UPLOAD_CONCURRENCY)
            .try_collect::<()>()
            .await?;

        let mut records_upserted = 0;
        if let (Some(target), Some(spool)) = (&dataset.records, spool) {
            records_upserted = self.upsert_spool(dataset, &target.table, spool).await?;
        }
        let summary = ObjectSummary {
            uri,
            dataset: dataset.name.clone(),
            rows_in: report.rows_in,
            rows_written: report.rows_written,
            parts: keys,
            records_upserted,
        };
        tracing::info!(
            rows_in = summary.rows_in,
            rows_written = summary.rows_written,
            parts = summary.parts.len(),
            records_upserted,
            "object converted"
        );
        Ok(ObjectOutcome::Written(summary))
    }

    /// A per-job directory for parts and spool, removed when dropped.
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

    /// Streams the spooled rows into the table, one batch at a time, last wins per key.
    async fn upsert_spool(
        &self,
        dataset: &Dataset,
        table: &str,
        spool: PathBuf,
    ) -> Result<u64, JobError> {
        let key = dataset.columns[dataset.records.as_ref().map_or(0, |t| t.key_index)]
            .name
            .clone();
        let (sender, mut receiver) = mpsc::channel::<Result<Vec<Item>, JobError>>(2);
        let reader_dataset = dataset.clone();
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
                let items = batch
                    .map(|b| {
                        records::last_per_key(records::items_from_batch(&reader_dataset, &b), &key)
                    })
                    .map_err(|e| JobError::Internal(format!("reading records spool: {e}")));
                if sender.blocking_send(items).is_err() {
                    return;
                }
            }
        });
        let mut written = 0;
        while let Some(items) = receiver.recv().await {
            let items = items?;
            written += items.len() as u64;
            self.records.upsert(table, items).await?;
        }
        reader
            .await
            .map_err(|e| JobError::Internal(format!("records spool task: {e}")))?;
        Ok(written)
    }

    async fn upsert_inline(&self, inline: InlineRecords) -> Result<Outcome, JobError> {
        let dataset = self
            .settings
            .datasets
            .by_name(&inline.dataset)
            .ok_or_else(|| JobError::UnknownDataset(inline.dataset.clone()))?;
        let target = dataset
            .records
            .as_ref()
            .ok_or_else(|| JobError::NoRecordsTable(dataset.name.clone()))?;
        let what = format!("inline records for dataset {}", dataset.name);
        let lineage = lineage(&what, None);
        let owned = dataset.clone();
        let converted = tokio::task::spawn_blocking(move || {
            let mut batches = Collect::default();
            convert::convert_records(&inline.records, &owned, &lineage, &mut batches)
                .map(|report| (report, batches.0))
        })
        .await
        .map_err(|e| JobError::Internal(format!("conversion task: {e}")))?;
        let (report, batches) = converted.map_err(|source| JobError::Convert {
            what: what.clone(),
            source,
        })?;
        if report.rows_rejected > 0 {
            return Err(rejected(&what, &report));
        }
        let items: Vec<Item> = batches
            .iter()
            .flat_map(|b| records::items_from_batch(dataset, b))
            .collect();
        let items = records::last_per_key(items, &dataset.columns[target.key_index].name);
        let rows = items.len() as u64;
        self.records.upsert(&target.table, items).await?;
        tracing::info!(dataset = %dataset.name, rows, "inline records upserted");
        Ok(Outcome::Upserted {
            dataset: dataset.name.clone(),
            rows,
        })
    }
}

/// Runs on a blocking thread: the whole file through the converter into lake parts and,
/// for user datasets, a spool of typed rows.
fn convert_to_parts(
    input: Box<dyn std::io::Read + Send>,
    dataset: &Dataset,
    lineage: &Lineage,
    batch_rows: usize,
    dir: &std::path::Path,
    props: WriterProperties,
) -> Result<(ConvertReport, Vec<PartFile>, Option<PathBuf>), convert::ConvertError> {
    let lake = LakeParts::new(dir, dataset, lineage, props);
    let spool = match dataset.records {
        Some(_) => Some(Spool::create(
            &dir.join("records.arrow"),
            &convert::full_schema(dataset),
        )?),
        None => None,
    };
    let mut sinks = (lake, spool);
    let report = convert::convert(input, dataset, lineage, batch_rows, &mut sinks)?;
    let (lake, spool) = sinks;
    Ok((
        report,
        lake.finish()?,
        spool.map(Spool::finish).transpose()?,
    ))
}

/// Lineage of a job. `ingest_date` comes from the event time, so retries agree on it.
fn lineage(source: &str, event_time: Option<DateTime<Utc>>) -> Lineage {
    let now = Utc::now();
    Lineage {
        source: source.to_owned(),
        ingested_at: now.timestamp_micros(),
        ingest_date: date_to_days(event_time.unwrap_or(now).date_naive()),
    }
}

fn rejected(what: &str, report: &ConvertReport) -> JobError {
    JobError::Rejected {
        what: what.to_owned(),
        rows: report.rows_in,
        rejected: report.rows_rejected,
        summary: report.error_summary(5),
    }
}
