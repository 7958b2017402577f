//! The per-table committer of one process: jobs join the open batch, hand over their
//! rows, and wait; the committer seals the batch `commit_interval` after its first file
//! (or at `commit_max_files` files, or at shutdown), uploads its data files and commits
//! them in one append snapshot, then wakes the jobs with the snapshot id.
//!
//! Small parts (under half of `target_file_size`) are combined: their rows go into the
//! batch's shared Parquet file of their partition (rolled at `target_file_size`), so many
//! small landing files make one data file. Larger parts are uploaded as they are, each
//! under a key of its own (never one a retry could overwrite under a committed snapshot).
//!
//! Exactly once ([`Committer::commit`], README "Iceberg: exactly once"): a job adds the
//! batch id to its object's `commit_ids` under its live lease before it hands over any row;
//! the committer, holding the table's commit lease, loads the table, treats the batch as
//! landed if its id is in the history, aborts it if one of its objects is in a landed
//! commit already, writes the commit record, and appends pinned to the version it checked.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures_util::{StreamExt, TryStreamExt};
use iceberg::spec::{DataFile, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::catalog::{commit_ids, IcebergCatalog};
use super::stats::{self, FileStats};
use crate::config::IcebergSettings;
use crate::convert::PartFile;
use crate::domain::dataset::FieldIds;
use crate::domain::lake::{partition_text, PartitionValue};
use crate::domain::ledger::{Claim, CommitRecord, LedgerKey};
use crate::ports::{CommitLog, ObjectStore, Slot, StoreError, StoreErrorKind};

/// A combined file's row group is written out once it buffers this much.
const COMBINED_ROW_GROUP_BYTES: usize = 32 << 20;
/// What the row groups being built in all of a batch's combined files may hold together
/// (many partitions at once): past it every one is written out.
const COMBINED_TOTAL_BYTES: usize = 64 << 20;
/// A batch is sealed once its commit record's object list reaches this (DynamoDB items
/// hold at most 400 KB).
const MAX_RECORD_BYTES: usize = 300_000;
/// Checks of the other commits of a batch's objects at once.
const CHECKS_AT_ONCE: usize = 16;
/// Retries of a failing commit start at this pause and double to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What a batch came to: its snapshot id, or why it was not committed.
pub type BatchResult = Result<i64, String>;

/// Where one table's data files go and how they are written.
pub struct TableLayout {
    /// `{database}.{table}`, for the lease and the records.
    pub qualified: String,
    /// The table's name in its database.
    pub name: String,
    pub bucket: String,
    /// Key prefix of data files: `{lake prefix}/{dataset}/data`.
    pub data_prefix: String,
    /// The Hive-style partition folder name (`ingest_date`, `{column}`, `{column}_date`).
    pub partition_name: String,
    /// The lake batch schema (Arrow, with field ids) of combined files, as the table
    /// opened ([`Committer::evolve`] adds wider ones).
    pub arrow_schema: SchemaRef,
    pub props: WriterProperties,
    pub target_file_size: u64,
    /// The table's schema and default partition spec id, for manifest entries.
    pub schema: Schema,
    /// The table's field ids, which the dataset's conversions use.
    pub field_ids: Arc<FieldIds>,
    pub spec_id: i32,
}

/// One table's committer, shared by every job of the process.
pub struct Committer<S, L> {
    layout: TableLayout,
    settings: IcebergSettings,
    catalog: Arc<IcebergCatalog>,
    store: Arc<S>,
    ledger: Arc<L>,
    /// Combined files are written here until they are uploaded.
    spool: tempfile::TempDir,
    /// This process as the owner of the table's commit lease.
    owner: String,
    open: Mutex<Arc<Batch>>,
    /// A file joined the open batch (or a reservation was dropped).
    wake: Notify,
    /// Cancelled when the committer's loop ends, however it ends (stop, panic): a job
    /// waiting for a batch then stops waiting.
    ended: CancellationToken,
    /// Jobs that gave their in-flight slot back while they wait for a commit: at most
    /// twice `commit_max_files`, so a stalled catalog cannot gather messages without end.
    waiting: Arc<tokio::sync::Semaphore>,
    schemas: Mutex<Schemas>,
}

/// The lake batch schemas parts may have (one per width: a table that added columns has
/// parts converted before and after), and the table's current schema for manifest entries.
struct Schemas {
    arrow: Vec<SchemaRef>,
    table: Schema,
    ids: Arc<FieldIds>,
}

/// Cancels its token when dropped: on return and on unwinding alike.
struct EndGuard(CancellationToken);

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// One batch: an id, the jobs still handing over, what they handed over, and the result.
pub struct Batch {
    pub id: String,
    state: Mutex<BatchState>,
    writers: Mutex<Writers>,
    /// A reservation ended (handed over or withdrawn).
    settled: Notify,
    result: watch::Sender<Option<BatchResult>>,
}

#[derive(Default)]
struct BatchState {
    /// Jobs that joined and have not handed over or withdrawn yet.
    reserved: usize,
    objects: Vec<LedgerKey>,
    /// The objects handed over or being handed over: a second delivery of one of them
    /// (its first job stopped while waiting) must not add its rows again.
    keys: std::collections::HashSet<LedgerKey>,
    /// Bytes the commit record's object list will take.
    record_bytes: usize,
    /// Parts uploaded as they are.
    files: Vec<DataFile>,
    first_at: Option<Instant>,
    /// A hand-over failed half-way: the shared files hold rows of an object that is not
    /// in the batch, so the batch must not be committed.
    poisoned: Option<String>,
}

#[derive(Default)]
struct Writers {
    /// By partition and lake schema width: parts of a table that just added columns are
    /// combined apart from the narrower ones.
    open: BTreeMap<(PartitionValue, usize), Combined>,
    /// Rolled combined files: (path, partition, stats).
    closed: Vec<(PathBuf, PartitionValue, FileStats)>,
    written: u32,
}

struct Combined {
    writer: ArrowWriter<BufWriter<File>>,
    path: PathBuf,
}

/// A job's place in a batch; dropped without [`Ticket::hand_over`], it withdraws.
pub struct Ticket {
    batch: Arc<Batch>,
    handed_over: bool,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.handed_over {
            self.batch.state.lock().expect("batch state").reserved -= 1;
            self.batch.settled.notify_one();
        }
    }
}

impl Batch {
    fn new() -> Arc<Batch> {
        Arc::new(Batch {
            id: uuid::Uuid::new_v4().to_string(),
            state: Mutex::new(BatchState::default()),
            writers: Mutex::new(Writers::default()),
            settled: Notify::new(),
            result: watch::channel(None).0,
        })
    }

    /// (objects handed over, when the first was, whether the batch must be committed now:
    /// poisoned, or its commit record near DynamoDB's item size limit).
    fn sources(&self) -> (usize, Option<Instant>, bool) {
        let state = self.state.lock().expect("batch state");
        let now = state.poisoned.is_some() || state.record_bytes >= MAX_RECORD_BYTES;
        (state.objects.len(), state.first_at, now)
    }
}

impl<S: ObjectStore, L: CommitLog> Committer<S, L> {
    pub fn new(
        layout: TableLayout,
        settings: IcebergSettings,
        catalog: Arc<IcebergCatalog>,
        store: Arc<S>,
        ledger: Arc<L>,
        owner: String,
        scratch: Option<&Path>,
    ) -> std::io::Result<Self> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("lakeworker-iceberg-");
        let spool = match scratch {
            Some(dir) => builder.tempdir_in(dir)?,
            None => builder.tempdir()?,
        };
        let waiting = Arc::new(tokio::sync::Semaphore::new(2 * settings.commit_max_files));
        let schemas = Mutex::new(Schemas {
            arrow: vec![layout.arrow_schema.clone()],
            table: layout.schema.clone(),
            ids: layout.field_ids.clone(),
        });
        Ok(Committer {
            layout,
            settings,
            catalog,
            store,
            ledger,
            spool,
            owner,
            open: Mutex::new(Batch::new()),
            wake: Notify::new(),
            ended: CancellationToken::new(),
            waiting,
            schemas,
        })
    }

    /// Whether parts of this lake schema width can join: the table has its columns.
    pub fn knows(&self, width: usize) -> bool {
        let schemas = self.schemas.lock().expect("schemas");
        schemas.arrow.iter().any(|s| s.fields().len() == width)
    }

    /// The table gained columns: parts with lake schema `arrow` (wider than any before)
    /// may join, and manifest entries are described against `table`, whose ids are `ids`.
    pub fn evolve(&self, arrow: SchemaRef, table: Schema, ids: Arc<FieldIds>) {
        let mut schemas = self.schemas.lock().expect("schemas");
        if schemas
            .arrow
            .iter()
            .all(|s| s.fields().len() != arrow.fields().len())
        {
            schemas.arrow.push(arrow);
        }
        if table.schema_id() > schemas.table.schema_id() {
            schemas.table = table;
            schemas.ids = ids;
        }
    }

    /// The table's field ids, as this process last saw them.
    pub fn field_ids(&self) -> Arc<FieldIds> {
        self.schemas.lock().expect("schemas").ids.clone()
    }

    pub fn qualified(&self) -> &str {
        &self.layout.qualified
    }

    /// The table's name in its database.
    pub fn name(&self) -> &str {
        &self.layout.name
    }

    /// Joins the open batch: it cannot be sealed until the ticket hands over or drops.
    fn reserve(&self) -> Ticket {
        let open = self.open.lock().expect("open batch");
        open.state.lock().expect("batch state").reserved += 1;
        Ticket {
            batch: open.clone(),
            handed_over: false,
        }
    }

    /// Makes `parts` (the rows of the object `claim` holds) part of the next snapshot and
    /// waits until it is committed; returns the snapshot id. While it waits it gives the
    /// job's in-flight `slot` back (while fewer than twice `commit_max_files` jobs of this
    /// table wait so). On `cancel` it stops waiting (`Cancelled`): rows already handed
    /// over may still be committed, which the next claim of the object finds in the
    /// ledger.
    pub async fn publish(
        self: &Arc<Self>,
        claim: &Claim,
        parts: &[PartFile],
        slot: &Slot,
        cancel: &CancellationToken,
    ) -> Result<i64, StoreError> {
        let ticket = self.reserve();
        let batch = ticket.batch.clone();
        if !self.ledger.join_commit(claim, &batch.id).await? {
            return Err(StoreError::new(
                "ledger join commit",
                StoreErrorKind::Cancelled,
                format!("the claim of {} is no longer this job's", claim.key.uri),
            ));
        }
        let small_below = self.layout.target_file_size / 2;
        let (mut small, mut large) = (Vec::new(), Vec::new());
        for part in parts {
            let size = std::fs::metadata(&part.path).map(|m| m.len()).unwrap_or(0);
            if size < small_below {
                small.push(part.clone());
            } else {
                large.push(part.clone());
            }
        }
        let mut files = Vec::with_capacity(large.len());
        for part in &large {
            files.push(self.upload_as_is(part, cancel).await?);
        }
        // Handed over on a blocking thread that finishes whatever happens to this job: the
        // rows and the object join the batch together, or the batch is poisoned.
        let committer = self.clone();
        let key = claim.key.clone();
        tokio::task::spawn_blocking(move || committer.hand_over(ticket, key, &small, files))
            .await
            .map_err(|e| {
                StoreError::new(
                    "Iceberg hand-over",
                    StoreErrorKind::Transient,
                    e.to_string(),
                )
            })??;
        self.wake.notify_one();
        let _waiting = match self.waiting.clone().try_acquire_owned() {
            Ok(permit) => {
                slot.give_back();
                Some(permit)
            }
            Err(_) => None,
        };
        let mut result = batch.result.subscribe();
        let done = tokio::select! {
            done = result.wait_for(Option::is_some) => done.map(|r| r.clone()),
            _ = cancel.cancelled() => return Err(StoreError::cancelled("Iceberg commit")),
            _ = self.ended.cancelled() => return Err(StoreError::new(
                "Iceberg commit",
                StoreErrorKind::Transient,
                "the table's committer stopped before the batch was committed",
            )),
        };
        match done {
            Ok(Some(Ok(snapshot))) => Ok(snapshot),
            Ok(Some(Err(reason))) => Err(StoreError::new(
                "Iceberg commit",
                StoreErrorKind::Transient,
                reason,
            )),
            _ => Err(StoreError::new(
                "Iceberg commit",
                StoreErrorKind::Transient,
                "the committer stopped before the batch was committed",
            )),
        }
    }

    /// Uploads a large part under a key of its own and describes it.
    async fn upload_as_is(
        &self,
        part: &PartFile,
        cancel: &CancellationToken,
    ) -> Result<DataFile, StoreError> {
        let key = self.data_key(part.partition);
        self.store
            .put_file(&self.layout.bucket, &key, &part.path, cancel)
            .await?;
        let path = part.path.clone();
        let stats = tokio::task::spawn_blocking(move || stats::read(&path))
            .await
            .map_err(|e| {
                StoreError::new("Parquet footer", StoreErrorKind::Transient, e.to_string())
            })?
            .map_err(|e| StoreError::new("Parquet footer", StoreErrorKind::Rejected, e))?;
        self.data_file(&stats, &key, part.partition)
    }

    fn data_file(
        &self,
        stats: &FileStats,
        key: &str,
        partition: PartitionValue,
    ) -> Result<DataFile, StoreError> {
        stats::data_file(
            stats,
            format!("s3://{}/{key}", self.layout.bucket),
            partition,
            self.layout.spec_id,
            &self.schemas.lock().expect("schemas").table,
        )
        .map_err(|e| StoreError::new("Iceberg data file", StoreErrorKind::Rejected, e))
    }

    /// A new data file's key: `{data prefix}/{partition}={value}/{uuid}.parquet`.
    fn data_key(&self, partition: PartitionValue) -> String {
        format!(
            "{}/{}={}/{}.parquet",
            self.layout.data_prefix,
            self.layout.partition_name,
            partition_text(partition),
            uuid::Uuid::new_v4()
        )
    }

    /// Appends the small parts' rows to the batch's shared files and registers the object
    /// with its uploaded files; on a failure half-way, poisons the batch.
    fn hand_over(
        &self,
        mut ticket: Ticket,
        key: LedgerKey,
        small: &[PartFile],
        files: Vec<DataFile>,
    ) -> Result<(), StoreError> {
        let batch = ticket.batch.clone();
        let first = batch
            .state
            .lock()
            .expect("batch state")
            .keys
            .insert(key.clone());
        if !first {
            // Its rows are in this batch already: wait for it like the first job did.
            let mut state = batch.state.lock().expect("batch state");
            state.reserved -= 1;
            ticket.handed_over = true;
            drop(state);
            batch.settled.notify_one();
            tracing::info!(uri = %key.uri, commit_id = %batch.id, "already handed over to this batch; waiting for its commit");
            return Ok(());
        }
        let appended = {
            let mut writers = batch.writers.lock().expect("batch writers");
            small
                .iter()
                .try_for_each(|part| self.append(&mut writers, part))
        };
        let mut state = batch.state.lock().expect("batch state");
        state.reserved -= 1;
        ticket.handed_over = true;
        let result = match appended {
            Ok(()) => {
                state.record_bytes += key.uri.len() + key.version.len() + 8;
                state.objects.push(key);
                state.files.extend(files);
                state.first_at.get_or_insert_with(Instant::now);
                Ok(())
            }
            Err(e) => {
                state.poisoned = Some(format!("combining {}: {e}", key.uri));
                Err(StoreError::new(
                    "Iceberg combine",
                    StoreErrorKind::Transient,
                    e,
                ))
            }
        };
        drop(state);
        batch.settled.notify_one();
        result
    }

    /// Copies one part's rows into its partition's shared file, rolling it at the
    /// target size.
    fn append(&self, writers: &mut Writers, part: &PartFile) -> Result<(), String> {
        let file = File::open(&part.path).map_err(|e| format!("{}: {e}", part.path.display()))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .map_err(|e| e.to_string())?;
        for batch in reader {
            let batch = batch.map_err(|e| e.to_string())?;
            let width = batch.num_columns();
            let schema = {
                let schemas = self.schemas.lock().expect("schemas");
                let known = schemas.arrow.iter().find(|s| s.fields().len() == width);
                known.cloned().ok_or_else(|| {
                    format!("a part with {width} columns, which the table has not added")
                })?
            };
            let batch = RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
                .map_err(|e| e.to_string())?;
            let slot = (part.partition, width);
            if !writers.open.contains_key(&slot) {
                writers.written += 1;
                let path = self
                    .spool
                    .path()
                    .join(format!("combined-{}.parquet", uuid::Uuid::new_v4()));
                let out = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                let writer = ArrowWriter::try_new(
                    BufWriter::new(out),
                    schema,
                    Some(self.layout.props.clone()),
                )
                .map_err(|e| e.to_string())?;
                writers.open.insert(slot, Combined { writer, path });
            }
            let combined = writers.open.get_mut(&slot).expect("just opened");
            combined.writer.write(&batch).map_err(|e| e.to_string())?;
            if combined.writer.memory_size() > COMBINED_ROW_GROUP_BYTES {
                combined.writer.flush().map_err(|e| e.to_string())?;
            }
            let size = combined.writer.bytes_written() + combined.writer.memory_size();
            let buffered: usize = writers.open.values().map(|c| c.writer.memory_size()).sum();
            if buffered > COMBINED_TOTAL_BYTES {
                for other in writers.open.values_mut() {
                    other.writer.flush().map_err(|e| e.to_string())?;
                }
            }
            if size as u64 >= self.layout.target_file_size {
                let combined = writers.open.remove(&slot).expect("open");
                let closed = close(combined)?;
                writers.closed.push((closed.0, part.partition, closed.1));
            }
        }
        Ok(())
    }

    /// The committer's loop: seal, upload, commit, wake, until `stop`. Once `draining`
    /// is cancelled (shutdown began) a batch is committed as soon as a file joins it: its
    /// jobs are waiting within the grace period.
    pub async fn run(self: Arc<Self>, draining: CancellationToken, stop: CancellationToken) {
        let _ended = EndGuard(self.ended.clone());
        loop {
            let batch = self.open.lock().expect("open batch").clone();
            // Until the first file joins (or the batch is poisoned).
            while matches!(batch.sources(), (0, _, false)) {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = stop.cancelled() => return,
                }
            }
            // Until the interval is over, the batch full, or the process stopping.
            loop {
                let (sources, first_at, now) = batch.sources();
                let deadline =
                    first_at.unwrap_or_else(Instant::now) + self.settings.commit_interval;
                if sources >= self.settings.commit_max_files
                    || now
                    || Instant::now() >= deadline
                    || draining.is_cancelled()
                {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => {}
                    _ = self.wake.notified() => {}
                    _ = draining.cancelled() => {}
                    _ = stop.cancelled() => return,
                }
            }
            *self.open.lock().expect("open batch") = Batch::new();
            // The jobs that joined hand over (or withdraw) first.
            while batch.state.lock().expect("batch state").reserved > 0 {
                batch.settled.notified().await;
            }
            let result = self.commit(&batch).await;
            match &result {
                Ok(snapshot) => tracing::info!(
                    table = %self.layout.qualified,
                    commit_id = %batch.id,
                    snapshot,
                    "Iceberg batch committed"
                ),
                Err(reason) => tracing::warn!(
                    table = %self.layout.qualified,
                    commit_id = %batch.id,
                    %reason,
                    "Iceberg batch not committed; its objects will be retried"
                ),
            }
            batch.result.send_replace(Some(result));
        }
    }

    /// Closes and uploads the batch's shared files, then commits everything in one
    /// snapshot, retrying until it lands or is refused for good.
    async fn commit(&self, batch: &Batch) -> BatchResult {
        let (objects, mut files) = {
            let mut state = batch.state.lock().expect("batch state");
            if let Some(reason) = state.poisoned.take() {
                return Err(reason);
            }
            (
                std::mem::take(&mut state.objects),
                std::mem::take(&mut state.files),
            )
        };
        let combined = {
            let mut writers = std::mem::take(&mut *batch.writers.lock().expect("batch writers"));
            let open = std::mem::take(&mut writers.open);
            tokio::task::spawn_blocking(move || {
                for ((partition, _), combined) in open {
                    let (path, stats) = close(combined)?;
                    writers.closed.push((path, partition, stats));
                }
                Ok::<_, String>(writers.closed)
            })
            .await
            .map_err(|e| e.to_string())??
        };
        let mut backoff = FIRST_BACKOFF;
        let never = CancellationToken::new();
        for (path, partition, stats) in combined {
            let key = self.data_key(partition);
            loop {
                match self
                    .store
                    .put_file(&self.layout.bucket, &key, &path, &never)
                    .await
                {
                    Ok(()) => break,
                    Err(e) if e.is_transient() => {
                        tracing::warn!(error = %e, "uploading a combined data file; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            let _ = std::fs::remove_file(&path);
            files.push(
                self.data_file(&stats, &key, partition)
                    .map_err(|e| e.to_string())?,
            );
        }
        let record = CommitRecord {
            id: batch.id.clone(),
            table: self.layout.qualified.clone(),
            objects,
            snapshot_id: None,
        };
        let mut recorded = false;
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.try_commit(&record, &files, &mut recorded).await {
                Ok(Attempted::Landed(snapshot)) => {
                    self.note_landed(&record.id, snapshot).await;
                    return Ok(snapshot);
                }
                Ok(Attempted::Aborted(reason)) => return Err(reason),
                Ok(Attempted::Conflict) => {
                    tracing::info!(table = %self.layout.qualified, "another commit landed first; checking again on the new version");
                    tokio::time::sleep(FIRST_BACKOFF).await;
                }
                Err(e) if e.is_transient() => {
                    tracing::warn!(table = %self.layout.qualified, error = %e, "Iceberg commit failed; retrying (the messages stay invisible)");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                // Refused for good (a missing table, a record DynamoDB will not take): the
                // batch fails and its objects are retried, then dead-lettered.
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// One try, under the table's commit lease.
    async fn try_commit(
        &self,
        record: &CommitRecord,
        files: &[DataFile],
        recorded: &mut bool,
    ) -> Result<Attempted, StoreError> {
        if !self
            .ledger
            .take_table_lease(
                &self.layout.qualified,
                &self.owner,
                self.settings.commit_lease,
            )
            .await?
        {
            return Ok(Attempted::Conflict);
        }
        let attempted = self.try_commit_leased(record, files, recorded).await;
        if let Err(e) = self
            .ledger
            .drop_table_lease(&self.layout.qualified, &self.owner)
            .await
        {
            tracing::warn!(error = %e, "could not drop the table's commit lease; it runs out");
        }
        attempted
    }

    async fn try_commit_leased(
        &self,
        record: &CommitRecord,
        files: &[DataFile],
        recorded: &mut bool,
    ) -> Result<Attempted, StoreError> {
        let base = self.catalog.load(&self.layout.name).await?;
        let history = commit_ids(&base);
        // An earlier try of ours landed (its answer was lost).
        if let Some(snapshot) = history.get(&record.id) {
            return Ok(Attempted::Landed(*snapshot));
        }
        // Read after the load: a commit that joined any of our objects before it went to
        // the catalog is in the history we hold, or its append cannot land on this base.
        let checks: Vec<_> = record
            .objects
            .iter()
            .map(|key| self.landed_elsewhere(key, &record.id, &history))
            .collect();
        let elsewhere: Vec<Option<String>> = futures_util::stream::iter(checks)
            .buffer_unordered(CHECKS_AT_ONCE)
            .try_collect()
            .await?;
        if let Some(reason) = elsewhere.into_iter().flatten().next() {
            return Ok(Attempted::Aborted(reason));
        }
        if !*recorded {
            self.ledger.record_commit(record).await?;
            *recorded = true;
        }
        match self.catalog.append(&base, files.to_vec(), &record.id).await {
            Ok(snapshot) => Ok(Attempted::Landed(snapshot)),
            Err(e) if e.kind == StoreErrorKind::PreconditionFailed => {
                // Refused on this base (it moved on): look again.
                tracing::debug!(error = %e, "append refused on this base");
                Ok(Attempted::Conflict)
            }
            // Refused for good (the append itself is wrong): retrying would not help.
            Err(e) if e.kind == StoreErrorKind::Rejected => Ok(Attempted::Aborted(e.to_string())),
            Err(e) => Err(e),
        }
    }

    /// Whether `key` is already in another landed commit, and if so, why this batch stops.
    async fn landed_elsewhere(
        &self,
        key: &LedgerKey,
        ours: &str,
        history: &std::collections::HashMap<String, i64>,
    ) -> Result<Option<String>, StoreError> {
        for id in self.ledger.commit_ids(key).await? {
            if id == ours {
                continue;
            }
            let landed_here = history.get(&id).copied();
            let Some(other) = self.ledger.commit_record(&id).await? else {
                continue;
            };
            if other.carries(key) && (landed_here.is_some() || other.snapshot_id.is_some()) {
                return Ok(Some(format!(
                    "{} is already in snapshot {} (commit {id}); this batch is dropped and its other objects retried",
                    key.uri,
                    landed_here.or(other.snapshot_id).unwrap_or_default()
                )));
            }
        }
        Ok(None)
    }

    /// Notes the landed commit in its record, until that works: once the snapshot is
    /// expired, the record is what says the commit's objects are in the table. Its jobs
    /// wait meanwhile.
    async fn note_landed(&self, id: &str, snapshot: i64) {
        let mut backoff = FIRST_BACKOFF;
        while let Err(e) = self.ledger.commit_landed(id, snapshot).await {
            tracing::warn!(error = %e, "could not note the landed commit in the ledger; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Expires the table's old snapshots every `expire_every`, under the commit lease.
    pub async fn expire_loop(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.settings.expire_every) => {}
                _ = shutdown.cancelled() => return,
            }
            match self.expire_once().await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(table = %self.layout.qualified, expired = n, "expired old snapshots")
                }
                Err(e) => {
                    tracing::warn!(table = %self.layout.qualified, error = %e, "snapshot expiry failed; next time")
                }
            }
        }
    }

    /// One expiry of snapshots older than `keep_snapshots`; returns how many went.
    pub async fn expire_once(&self) -> Result<usize, StoreError> {
        // Its own owner name: it must not take over, or drop, the lease of a commit of
        // this same process.
        let owner = format!("{}/expire", self.owner);
        if !self
            .ledger
            .take_table_lease(&self.layout.qualified, &owner, self.settings.commit_lease)
            .await?
        {
            return Ok(0);
        }
        let keep = chrono::Duration::from_std(self.settings.keep_snapshots).unwrap_or_default();
        let older_than = (chrono::Utc::now() - keep).timestamp_millis();
        let result = match self.catalog.load(&self.layout.name).await {
            Ok(base) => self.catalog.expire(&base, older_than).await,
            Err(e) => Err(e),
        };
        let _ = self
            .ledger
            .drop_table_lease(&self.layout.qualified, &owner)
            .await;
        result
    }
}

enum Attempted {
    Landed(i64),
    /// Refused on this base: reload and try again.
    Conflict,
    Aborted(String),
}

/// Closes a shared file; returns its path and stats.
fn close(combined: Combined) -> Result<(PathBuf, FileStats), String> {
    let metadata = combined.writer.close().map_err(|e| e.to_string())?;
    let bytes = std::fs::metadata(&combined.path)
        .map_err(|e| format!("{}: {e}", combined.path.display()))?
        .len();
    Ok((combined.path, stats::from_metadata(&metadata, bytes)))
}
