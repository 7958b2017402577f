//! One message, start to finish: parse the body, route each object to its dataset, claim
//! it in the ledger, convert it to Parquet parts, upload them, upsert user rows, settle the
//! ledger, and say what happened.
//!
//! [`Pipeline::handle`] is the step function the worker pool calls for every message; it
//! does not touch the queue. Its result decides the message's fate
//! ([`crate::worker::disposition`]). It works against the [`ObjectStore`], [`RecordStore`]
//! and [`Ledger`] traits, so tests can drive it with in-memory fakes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::{StreamExt, TryStreamExt};
use parquet::file::properties::WriterProperties;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::aws::{AwsErrorKind, Ledger, ObjectStore, RecordStore};
use crate::config::Settings;
use crate::convert::{self, Collect, ConvertReport, LakeParts, Lineage, PartFile, Spool};
use crate::datasets::Dataset;
use crate::envelope::{self, Envelope, InlineRecords, ObjectRef};
use crate::error::JobError;
use crate::job::{Job, StopReason, StoppableReader};
use crate::lake;
use crate::ledger::{Claim, ClaimOutcome, Completion, LedgerKey, Status};
use crate::records::{self, Item};
use crate::schema::date_to_days;

/// Lake parts uploaded at once per object.
const UPLOAD_CONCURRENCY: usize = 4;

/// What a handled message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to do (test event, deletions).
    Discarded(String),
    /// Every object of the message: converted, already done, or superseded.
    Converted(Vec<ObjectOutcome>),
    /// Inline records upserted.
    Upserted { dataset: String, rows: u64 },
}

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectOutcome {
    Written(ObjectSummary),
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
pub struct Pipeline<S, R, L> {
    settings: Arc<Settings>,
    store: S,
    records: R,
    ledger: Arc<L>,
    /// Identifies this process in ledger claims.
    worker_id: String,
    props: WriterProperties,
}

impl<S: ObjectStore, R: RecordStore, L: Ledger> Pipeline<S, R, L> {
    pub fn new(
        settings: Arc<Settings>,
        store: S,
        records: R,
        ledger: L,
        worker_id: String,
    ) -> Self {
        let props = convert::writer_properties(settings.lake.compression);
        Pipeline {
            settings,
            store,
            records,
            ledger: Arc::new(ledger),
            worker_id,
            props,
        }
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
                for (object, dataset) in routed {
                    let span = tracing::info_span!("object", dataset = %dataset.name, bucket = %object.bucket, key = %object.key);
                    outcomes.push(
                        self.claim_and_process(object, dataset, job)
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

    /// Claims the object in the ledger, processes it while renewing the lease, and records
    /// the result.
    async fn claim_and_process(
        &self,
        object: &ObjectRef,
        dataset: &Dataset,
        job: &Job,
    ) -> Result<ObjectOutcome, JobError> {
        let uri = object.uri();
        let claim = Claim {
            key: LedgerKey::of(object),
            owner: format!("{}/{}", self.worker_id, job.message_id()),
            lease: self.settings.queue.visibility_timeout,
            dataset: dataset.name.clone(),
            message_id: job.message_id().to_owned(),
        };
        match self.ledger.claim(&claim).await? {
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

        match &result {
            Ok(outcome) => {
                let completion = match outcome {
                    ObjectOutcome::Written(summary) => Completion {
                        rows_in: summary.rows_in,
                        rows_written: summary.rows_written,
                        rows_rejected: 0,
                        outputs: summary.parts.clone(),
                    },
                    // A superseded version is an answered question too: nothing to write.
                    _ => Completion::default(),
                };
                self.ledger.finish(&claim, &completion).await?;
            }
            // Shutdown or lost: let the next owner claim at once (a no-op if the claim
            // is someone else's by now).
            Err(JobError::Stopped) => {
                if let Err(e) = self.ledger.release(&claim).await {
                    tracing::warn!(error = %e, "could not release the ledger claim; it expires with its lease");
                }
            }
            Err(error) => {
                if let Err(e) = self.ledger.fail(&claim, &error.to_string()).await {
                    tracing::warn!(error = %e, "could not record the failure in the ledger");
                }
            }
        }
        result
    }

    async fn process_object(
        &self,
        object: &ObjectRef,
        dataset: &Dataset,
        job: &Job,
    ) -> Result<ObjectOutcome, JobError> {
        let uri = object.uri();
        let input = tokio::select! {
            opened = self.store.open(object) => opened,
            _ = job.token().cancelled() => return Err(JobError::Stopped),
        };
        let input = match input {
            Ok(input) => StoppableReader::new(input, job),
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
        if job.stopped().is_some() {
            return Err(JobError::Stopped);
        }
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
                    .put_file(&self.settings.lake.bucket, key, &part.path, job.token())
            })
            .collect();
        futures_util::stream::iter(uploads)
            .buffer_unordered(UPLOAD_CONCURRENCY)
            .try_collect::<()>()
            .await
            .map_err(|e| stopped_or(e.into(), job))?;

        let mut records_upserted = 0;
        if let (Some(target), Some(spool)) = (&dataset.records, spool) {
            records_upserted = self
                .upsert_spool(dataset, &target.table, spool, job)
                .await?;
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
        job: &Job,
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
            tokio::select! {
                upserted = self.records.upsert(table, items) => upserted?,
                _ = job.token().cancelled() => return Err(JobError::Stopped),
            }
        }
        reader
            .await
            .map_err(|e| JobError::Internal(format!("records spool task: {e}")))?;
        Ok(written)
    }

    async fn upsert_inline(&self, inline: InlineRecords, job: &Job) -> Result<Outcome, JobError> {
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
        tokio::select! {
            upserted = self.records.upsert(&target.table, items) => upserted?,
            _ = job.token().cancelled() => return Err(JobError::Stopped),
        }
        tracing::info!(dataset = %dataset.name, rows, "inline records upserted");
        Ok(Outcome::Upserted {
            dataset: dataset.name.clone(),
            rows,
        })
    }
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

/// Runs on a blocking thread: the whole file through the converter into lake parts and,
/// for user datasets, a spool of typed rows.
fn convert_to_parts(
    input: impl std::io::Read,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::memory::{MemoryLedger, MemoryRecords, MemoryStore};
    use crate::error::ErrorClass;
    use std::path::Path;
    use tokio_util::sync::CancellationToken;

    type TestPipeline = Pipeline<MemoryStore, MemoryRecords, MemoryLedger>;

    fn pipeline() -> TestPipeline {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/local.toml");
        let settings = Settings::load_with_env(&path, []).expect("config/local.toml is valid");
        Pipeline::new(
            Arc::new(settings),
            MemoryStore::default(),
            MemoryRecords::default(),
            MemoryLedger::default(),
            "test-worker".into(),
        )
    }

    fn job(id: &str) -> Job {
        Job::new(id, &CancellationToken::new())
    }

    fn event(bucket: &str, key: &str) -> String {
        serde_json::json!({"Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "eventTime": "2024-03-04T05:06:07Z",
            "s3": {"bucket": {"name": bucket}, "object": {"key": key, "eTag": "e1"}}
        }]})
        .to_string()
    }

    #[tokio::test]
    async fn a_user_file_becomes_lake_parts_and_table_rows() {
        let p = pipeline();
        let csv = "user_id,age,signup_date\na,1,2024/01/01\nb,2,2024/01/02\na,3,2024/01/02\n";
        p.store
            .insert("lakeworker-landing", "users/x y.csv", csv.as_bytes());
        let outcome = p
            .handle(&event("lakeworker-landing", "users/x+y.csv"), &job("m1"))
            .await
            .unwrap();
        let Outcome::Converted(objects) = outcome else {
            panic!("{outcome:?}")
        };
        let ObjectOutcome::Written(summary) = &objects[0] else {
            panic!("{objects:?}")
        };
        assert_eq!(
            (
                summary.rows_in,
                summary.rows_written,
                summary.records_upserted
            ),
            (3, 3, 2)
        );
        let lake_keys = p.store.keys("lakeworker-lake");
        assert_eq!(lake_keys, summary.parts);
        assert_eq!(lake_keys.len(), 2);
        assert!(lake_keys[0].starts_with("curated/users/signup_date=2024-01-01/part-"));
        let tables = p.records.tables.lock().unwrap();
        let users = &tables["lakeworker-users"];
        let ages: Vec<(&str, &str)> = users
            .iter()
            .map(|i| {
                (
                    i["user_id"].as_s().unwrap().as_str(),
                    i["age"].as_n().unwrap().as_str(),
                )
            })
            .collect();
        assert_eq!(ages, [("b", "2"), ("a", "3")]);
    }

    #[tokio::test]
    async fn ingest_date_partitions_use_the_event_time() {
        let p = pipeline();
        let line = r#"{"event_id": "e", "user_id": "u", "at": "2020-01-01T00:00:00Z"}"#;
        p.store
            .insert("lakeworker-landing", "events/a.jsonl", line.as_bytes());
        p.handle(&event("lakeworker-landing", "events/a.jsonl"), &job("m1"))
            .await
            .unwrap();
        let keys = p.store.keys("lakeworker-lake");
        assert_eq!(keys.len(), 1);
        assert!(
            keys[0].starts_with("curated/events/ingest_date=2024-03-04/part-"),
            "{keys:?}"
        );
    }

    #[tokio::test]
    async fn refusals_are_permanent_and_write_nothing() {
        let p = pipeline();
        p.store.insert(
            "lakeworker-landing",
            "users/bad.csv",
            b"user_id,signup_date\n,2024/01/01\n",
        );
        p.store.insert("lakeworker-landing", "misc/a.csv", b"x\n");
        for (body, expected) in [
            (
                event("elsewhere", "users/a.csv"),
                "is not the landing bucket",
            ),
            (
                event("lakeworker-landing", "misc/a.csv"),
                "no dataset matches the key",
            ),
            (
                event("lakeworker-landing", "users/bad.csv"),
                "1 of 1 rows rejected",
            ),
            ("{".to_owned(), "body is not JSON"),
            (
                r#"{"dataset": "orders", "records": []}"#.to_owned(),
                "has no records_table",
            ),
        ] {
            let err = p.handle(&body, &job("m1")).await.unwrap_err();
            assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
            assert!(err.to_string().contains(expected), "{err}");
        }
        assert!(p.store.keys("lakeworker-lake").is_empty());
        assert!(p.records.tables.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_missing_object_is_transient() {
        let err = pipeline()
            .handle(&event("lakeworker-landing", "users/gone.csv"), &job("m1"))
            .await
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Transient);
        assert_eq!(err.to_string(), "object s3://lakeworker-landing/users/gone.csv does not exist (deleted since the event?)");
    }

    #[tokio::test]
    async fn inline_records_are_upserted_last_wins() {
        let p = pipeline();
        let body = serde_json::json!({"dataset": "users", "records": [
            {"user_id": "a", "signup_date": "2024/01/01", "age": 1},
            {"user_id": "a", "signup_date": "2024/01/02", "age": 2}
        ]});
        let outcome = p.handle(&body.to_string(), &job("m1")).await.unwrap();
        assert_eq!(
            outcome,
            Outcome::Upserted {
                dataset: "users".into(),
                rows: 1
            }
        );
        let tables = p.records.tables.lock().unwrap();
        assert_eq!(tables["lakeworker-users"][0]["age"].as_n().unwrap(), "2");
        assert!(p.store.keys("lakeworker-lake").is_empty());
    }

    #[tokio::test]
    async fn a_done_object_is_not_processed_again() {
        let p = pipeline();
        p.store.insert(
            "lakeworker-landing",
            "users/a.csv",
            b"user_id,signup_date\na,2024/01/01\n",
        );
        let body = event("lakeworker-landing", "users/a.csv");
        p.handle(&body, &job("m1")).await.unwrap();
        let again = p.handle(&body, &job("m2")).await.unwrap();
        assert_eq!(
            again,
            Outcome::Converted(vec![ObjectOutcome::AlreadyDone {
                uri: "s3://lakeworker-landing/users/a.csv".into(),
                status: Status::Done
            }])
        );
        let record = p
            .ledger
            .record("s3://lakeworker-landing/users/a.csv")
            .unwrap();
        assert_eq!((record.status, record.attempts), (Some(Status::Done), 1));
        assert_eq!(record.outputs.len(), 1);
        assert_eq!(record.rows_written, Some(1));
        assert_eq!(
            p.records.tables.lock().unwrap()["lakeworker-users"].len(),
            1,
            "no second upsert"
        );
    }

    #[tokio::test]
    async fn a_live_lease_makes_a_duplicate_wait() {
        let p = pipeline();
        p.store.insert(
            "lakeworker-landing",
            "users/a.csv",
            b"user_id,signup_date\na,2024/01/01\n",
        );
        let object = ObjectRef {
            bucket: "lakeworker-landing".into(),
            key: "users/a.csv".into(),
            size: None,
            etag: Some("e1".into()),
            version_id: None,
            event_time: None,
        };
        let other = Claim {
            key: LedgerKey::of(&object),
            owner: "another-worker/m0".into(),
            lease: Duration::from_secs(60),
            dataset: "users".into(),
            message_id: "m0".into(),
        };
        assert_eq!(
            p.ledger.claim(&other).await.unwrap(),
            ClaimOutcome::Claimed { attempt: 1 }
        );
        let err = p
            .handle(&event("lakeworker-landing", "users/a.csv"), &job("m1"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, JobError::Busy { owner, .. } if owner == "another-worker/m0"),
            "{err}"
        );
        assert!(p.store.keys("lakeworker-lake").is_empty());
    }

    #[tokio::test]
    async fn failures_and_stops_settle_the_claim() {
        let p = pipeline();
        p.store.insert(
            "lakeworker-landing",
            "users/bad.csv",
            b"user_id,signup_date\n,2024/01/01\n",
        );
        p.handle(&event("lakeworker-landing", "users/bad.csv"), &job("m1"))
            .await
            .unwrap_err();
        let record = p
            .ledger
            .record("s3://lakeworker-landing/users/bad.csv")
            .unwrap();
        assert_eq!(record.status, Some(Status::Failed));
        assert!(record.last_error.unwrap().contains("1 of 1 rows rejected"));
        assert_eq!(
            record.lease_expires_at, None,
            "the next delivery may claim at once"
        );

        p.store.insert(
            "lakeworker-landing",
            "users/a.csv",
            b"user_id,signup_date\na,2024/01/01\n",
        );
        let stopped = job("m2");
        stopped.stop(StopReason::Shutdown);
        let err = p
            .handle(&event("lakeworker-landing", "users/a.csv"), &stopped)
            .await
            .unwrap_err();
        assert!(matches!(err, JobError::Stopped), "{err}");
        let record = p
            .ledger
            .record("s3://lakeworker-landing/users/a.csv")
            .unwrap();
        assert_eq!(
            (record.status, record.lease_expires_at),
            (Some(Status::Failed), None)
        );
        assert!(p.store.keys("lakeworker-lake").is_empty());
    }
}
