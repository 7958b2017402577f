//! The Athena / Glue catalog: makes the lake queryable without Glue crawlers. At start-up
//! the database, one external Parquet table per dataset and the configured views are
//! created; after a job writes to a partition, the partition is added, batched and cached
//! so each is registered once per process. Catalog work runs beside the jobs: a failure is
//! retried, logged and counted, and never blocks or fails the message that wrote the data.
//!
//! Nothing is lost to a crash in between: before its message is deleted, a job notes each
//! partition the process has not registered yet in the ledger table
//! ([`Ledger::note_partitions`]); the note is removed once Athena has the partition, and
//! the registrar replays what is still noted at start-up.
//!
//! Columns a dataset adds (`on_new_columns = "add"`) reach the table the same way: the task
//! whose ledger write added them asks for one `ALTER TABLE ... ADD COLUMNS`; the ledger
//! counts how many of the dataset's added columns the catalog has, and the registrar adds
//! the rest at start-up (an Athena "column already exists" then counts as done).
//!
//! The DDL text is built by pure functions; [`QueryRunner`] runs it (Athena in production).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::datatypes::{DataType, TimeUnit};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{CatalogSettings, LakeSettings};
use crate::convert::LakeProjection;
use crate::domain::dataset::{Dataset, DatasetColumns, NewColumns};
use crate::domain::lake::{self, NewPartition};
use crate::ports::{Ledger, QueryRunner};

/// Partitions added by one ALTER TABLE at most.
const BATCH: usize = 100;
/// How long the registrar waits for more partitions before a batch goes.
const LINGER: Duration = Duration::from_millis(500);
/// Tries per statement; waits between them double from [`RETRY`].
const TRIES: u32 = 4;
const RETRY: Duration = Duration::from_secs(1);

/// Athena's name for an Arrow type of a lake column.
pub fn hive_type(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Int64 => "bigint",
        DataType::Float64 => "double",
        DataType::Boolean => "boolean",
        DataType::Date32 => "date",
        DataType::Timestamp(TimeUnit::Microsecond, _) => "timestamp",
        _ => "string",
    }
}

fn quoted(identifier: &str) -> String {
    format!("`{}`", identifier.replace('`', ""))
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

pub fn create_database(database: &str) -> String {
    format!("CREATE DATABASE IF NOT EXISTS {}", quoted(database))
}

/// Where a dataset's data lives: `s3://{bucket}/{prefix}/{dataset}/`.
/// The external table of a dataset: the lake columns (after renames, hashing and drops),
/// the partition column as a string (so Hive's null partition fits), Parquet at the
/// dataset's location.
pub fn create_table(database: &str, dataset: &Dataset, lake: &LakeSettings) -> String {
    let schema = LakeProjection::new(dataset, None).schema();
    let columns: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| format!("  {} {}", quoted(f.name()), hive_type(f.data_type())))
        .collect();
    format!(
        "CREATE EXTERNAL TABLE IF NOT EXISTS {}.{} (\n{}\n)\nPARTITIONED BY ({} string)\nSTORED AS PARQUET\nLOCATION {}",
        quoted(database),
        quoted(&dataset.name),
        columns.join(",\n"),
        quoted(&dataset.partition_name()),
        literal(&lake::dataset_location(&lake.bucket, &lake.prefix, &dataset.name)),
    )
}

/// One ALTER TABLE adding every `(value, location)` partition that is not there yet.
pub fn add_partitions(
    database: &str,
    table: &str,
    partition_name: &str,
    partitions: &[(String, String)],
) -> String {
    let clauses: Vec<String> = partitions
        .iter()
        .map(|(value, location)| {
            format!(
                "  PARTITION ({} = {}) LOCATION {}",
                quoted(partition_name),
                literal(value),
                literal(location)
            )
        })
        .collect();
    format!(
        "ALTER TABLE {}.{} ADD IF NOT EXISTS\n{}",
        quoted(database),
        quoted(table),
        clauses.join("\n")
    )
}

/// One ALTER TABLE adding string columns after the table's others.
pub fn add_columns(database: &str, table: &str, columns: &[String]) -> String {
    let columns: Vec<String> = columns
        .iter()
        .map(|name| format!("{} string", quoted(name)))
        .collect();
    format!(
        "ALTER TABLE {}.{} ADD COLUMNS ({})",
        quoted(database),
        quoted(table),
        columns.join(", ")
    )
}

/// Whether Athena refused to add a column because the table has it already.
fn has_the_column(error: &str) -> bool {
    let error = error.to_ascii_lowercase();
    error.contains("duplicate column") || error.contains("already exists")
}

/// A view (Presto syntax, as Athena runs views).
pub fn create_view(database: &str, name: &str, sql: &str) -> String {
    format!(
        "CREATE OR REPLACE VIEW \"{}\".\"{}\" AS {}",
        database.replace('"', ""),
        name.replace('"', ""),
        sql.trim().trim_end_matches(';')
    )
}

/// Counts of catalog work, for logs and telemetry.
#[derive(Debug, Default)]
pub struct CatalogStats {
    pub partitions_added: AtomicU64,
    pub columns_added: AtomicU64,
    pub failures: AtomicU64,
}

/// How a catalog statement went.
#[derive(Debug, PartialEq, Eq)]
enum Ran {
    Done,
    /// An ADD COLUMNS refused because the table has (one of) the columns.
    HadColumn,
    Failed,
}

/// How long columns the catalog failed to add wait before the registrar tries again
/// (unless other work comes first).
const COLUMNS_RETRY: Duration = Duration::from_secs(30);

/// What the registrar is asked to do.
#[derive(Debug)]
enum Work {
    Partition(NewPartition),
    Columns(ColumnsWork),
}

/// `new` were just added to the dataset's table, whose added columns are now `list`.
#[derive(Debug)]
struct ColumnsWork {
    dataset: String,
    list: Vec<String>,
    new: Vec<String>,
}

/// (table, partition value) pairs this process registered.
type Registered = Arc<Mutex<HashSet<(String, String)>>>;

/// Hands new partitions to the registrar without waiting, and says which ones this
/// process has not registered yet.
#[derive(Clone, Debug)]
pub struct Partitions {
    sender: mpsc::UnboundedSender<Work>,
    registered: Registered,
    database: String,
}

impl Partitions {
    pub fn send(&self, partition: NewPartition) {
        // Only fails when the registrar has stopped (shutdown): nothing to do then (a
        // column not added then is added at the next start).
        let _ = self.sender.send(Work::Partition(partition));
    }

    /// Asks for the columns `new` of `dataset`, whose added columns are now `list`.
    pub fn send_columns(&self, dataset: &str, list: Vec<String>, new: Vec<String>) {
        let _ = self.sender.send(Work::Columns(ColumnsWork {
            dataset: dataset.to_owned(),
            list,
            new,
        }));
    }

    /// The catalog's database.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Those of `partitions` this process has not registered (they must be noted before
    /// the message that wrote them is deleted).
    pub fn unregistered(&self, partitions: &[NewPartition]) -> Vec<NewPartition> {
        let registered = lock(&self.registered);
        let mut seen = HashSet::new();
        partitions
            .iter()
            .filter(|p| !registered.contains(&(p.dataset.clone(), p.value.clone())))
            .filter(|p| seen.insert((p.dataset.clone(), p.value.clone())))
            .cloned()
            .collect()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts the registrar: the start-up DDL (each table with the columns its dataset
/// added, and those the catalog may miss added), the partitions still noted in `log` from
/// earlier runs, then partitions and columns as they come, until `shutdown` (after which what is
/// queued is still registered, briefly).
pub fn start<Q: QueryRunner, L: Ledger>(
    runner: Q,
    log: Arc<L>,
    catalog: CatalogSettings,
    lake: LakeSettings,
    datasets: Vec<Dataset>,
    shutdown: CancellationToken,
) -> (Partitions, Arc<CatalogStats>, tokio::task::JoinHandle<()>) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let stats = Arc::new(CatalogStats::default());
    let registered = Registered::default();
    let partitions = Partitions {
        sender,
        registered: registered.clone(),
        database: catalog.database.clone(),
    };
    let registrar = Registrar {
        runner,
        log,
        catalog,
        stats: stats.clone(),
        registered,
        columns: HashMap::new(),
        failed_columns: Vec::new(),
        retry_columns_at: None,
    };
    let task = tokio::spawn(registrar.run(lake, datasets, receiver, shutdown));
    (partitions, stats, task)
}

struct Registrar<Q, L> {
    runner: Q,
    log: Arc<L>,
    catalog: CatalogSettings,
    stats: Arc<CatalogStats>,
    registered: Registered,
    /// Added columns this process knows the catalog has, by table.
    columns: HashMap<String, HashSet<String>>,
    /// Column work whose statement failed, for another try, and when.
    failed_columns: Vec<ColumnsWork>,
    retry_columns_at: Option<tokio::time::Instant>,
}

impl<Q: QueryRunner, L: Ledger> Registrar<Q, L> {
    async fn run(
        mut self,
        lake: LakeSettings,
        datasets: Vec<Dataset>,
        mut receiver: mpsc::UnboundedReceiver<Work>,
        shutdown: CancellationToken,
    ) {
        let database = self.catalog.database.clone();
        self.statement(&create_database(&database), None).await;
        for dataset in &datasets {
            self.create_table(dataset, &lake).await;
        }
        for (name, sql) in self.catalog.views.clone() {
            self.statement(&create_view(&database, &name, &sql), Some(&database))
                .await;
        }
        tracing::info!(%database, tables = datasets.len(), "catalog ready");
        let mut noted = Vec::new();
        for dataset in &datasets {
            match self.log.pending_partitions(&database, &dataset.name).await {
                Ok(pending) => noted.extend(pending),
                Err(e) => {
                    tracing::warn!(error = %e, dataset = %dataset.name, "could not read the partitions left pending; the next start tries again")
                }
            }
        }
        if !noted.is_empty() {
            tracing::info!(
                partitions = noted.len(),
                "registering partitions an earlier run wrote but did not register"
            );
            for batch in noted.chunks(BATCH) {
                self.register(batch.to_vec()).await;
            }
        }

        loop {
            // Columns the catalog failed to add are tried again COLUMNS_RETRY later.
            let retry_at = (!self.failed_columns.is_empty()).then(|| {
                *self
                    .retry_columns_at
                    .get_or_insert_with(|| tokio::time::Instant::now() + COLUMNS_RETRY)
            });
            let first = tokio::select! {
                first = receiver.recv() => first,
                _ = shutdown.cancelled() => None,
                _ = tokio::time::sleep_until(retry_at.unwrap_or_else(tokio::time::Instant::now)), if retry_at.is_some() => {
                    self.retry_columns_at = None;
                    for work in std::mem::take(&mut self.failed_columns) {
                        self.add_columns(work).await;
                    }
                    continue;
                }
            };
            let Some(first) = first else { break };
            let mut batch = Vec::new();
            if let Some(columns) = self.partition_or(first, &mut batch) {
                self.add_columns(columns).await;
                continue;
            }
            let linger = tokio::time::sleep(LINGER);
            tokio::pin!(linger);
            let mut columns = Vec::new();
            while batch.len() < BATCH {
                tokio::select! {
                    more = receiver.recv() => match more {
                        Some(more) => columns.extend(self.partition_or(more, &mut batch)),
                        None => break,
                    },
                    _ = &mut linger => break,
                }
            }
            // Columns first: a partition of a file with a new column is then read whole.
            for work in columns {
                self.add_columns(work).await;
            }
            self.register(batch).await;
        }
        // Shutting down: register what is already queued.
        let mut rest = Vec::new();
        while let Ok(more) = receiver.try_recv() {
            if let Some(columns) = self.partition_or(more, &mut rest) {
                self.add_columns(columns).await;
            }
        }
        if !rest.is_empty() {
            self.register(rest).await;
        }
    }

    /// Puts a partition into `batch`; gives back other work.
    fn partition_or(&self, work: Work, batch: &mut Vec<NewPartition>) -> Option<ColumnsWork> {
        match work {
            Work::Partition(p) => {
                batch.push(p);
                None
            }
            Work::Columns(columns) => Some(columns),
        }
    }

    /// The dataset's table with the columns it added so far, then those of them the
    /// ledger does not count as in the catalog (an earlier run stopped before adding).
    async fn create_table(&mut self, dataset: &Dataset, lake: &LakeSettings) {
        let database = self.catalog.database.clone();
        let added = if dataset.policy.on_new_columns == NewColumns::Add {
            match self.log.dataset_columns(&dataset.name).await {
                Ok(added) => added,
                Err(e) => {
                    tracing::warn!(error = %e, dataset = %dataset.name, "could not read the dataset's added columns; the table is created without them and they are added as files bring them");
                    DatasetColumns::default()
                }
            }
        } else {
            DatasetColumns::default()
        };
        let effective = dataset.with_added(added.names());
        self.statement(&create_table(&database, &effective, lake), Some(&database))
            .await;
        let list: Vec<String> = added.names().map(str::to_owned).collect();
        if added.in_catalog < list.len() {
            let missing = list[added.in_catalog..].to_vec();
            self.add_columns(ColumnsWork {
                dataset: dataset.name.clone(),
                list,
                new: missing,
            })
            .await;
        }
    }

    /// One ALTER TABLE ADD COLUMNS (a column the table has already counts as added),
    /// then the ledger's count of added columns the catalog has: the longest start of
    /// `list` this process knows is there.
    async fn add_columns(&mut self, work: ColumnsWork) {
        let ColumnsWork { dataset, list, new } = work;
        let database = self.catalog.database.clone();
        let known = self.columns.entry(dataset.clone()).or_default();
        let new: Vec<String> = new.into_iter().filter(|c| !known.contains(c)).collect();
        if !new.is_empty() {
            let sql = add_columns(&database, &dataset, &new);
            let done = match self.statement_outcome(&sql, Some(&database), true).await {
                Ran::Done => true,
                // Athena refuses the whole statement when one column is there already:
                // each column alone, then, so the others are added.
                Ran::HadColumn if new.len() > 1 => {
                    let mut all = true;
                    for column in &new {
                        let sql = add_columns(&database, &dataset, std::slice::from_ref(column));
                        let ran = self.statement_outcome(&sql, Some(&database), true).await;
                        all &= ran != Ran::Failed;
                    }
                    all
                }
                Ran::HadColumn => true,
                Ran::Failed => false,
            };
            if !done {
                // Tried again after COLUMNS_RETRY, and at the next start.
                self.failed_columns.push(ColumnsWork { dataset, list, new });
                return;
            }
            self.stats
                .columns_added
                .fetch_add(new.len() as u64, Ordering::Relaxed);
            tracing::info!(table = %dataset, columns = ?new, "added columns to the catalog table");
        }
        let known = self.columns.entry(dataset.clone()).or_default();
        known.extend(new);
        let count = list.iter().take_while(|c| known.contains(*c)).count();
        if let Err(e) = self.log.columns_in_catalog(&dataset, count).await {
            tracing::warn!(error = %e, "could not count the columns in the catalog; the next start adds them again (harmless)");
        }
    }

    /// Adds the partitions not registered yet, one ALTER TABLE per table, then drops
    /// their notes from the ledger.
    async fn register(&mut self, batch: Vec<NewPartition>) {
        let mut by_table: BTreeMap<(String, String), Vec<NewPartition>> = BTreeMap::new();
        {
            let registered = lock(&self.registered);
            for p in batch {
                if registered.contains(&(p.dataset.clone(), p.value.clone())) {
                    continue;
                }
                let key = (p.dataset.clone(), p.partition_name.clone());
                let partitions = by_table.entry(key).or_default();
                if !partitions.iter().any(|known| known.value == p.value) {
                    partitions.push(p);
                }
            }
        }
        let database = self.catalog.database.clone();
        for ((table, partition_name), partitions) in by_table {
            let clauses: Vec<(String, String)> = partitions
                .iter()
                .map(|p| (p.value.clone(), p.location.clone()))
                .collect();
            let sql = add_partitions(&database, &table, &partition_name, &clauses);
            if !self.statement(&sql, Some(&database)).await {
                continue;
            }
            self.stats
                .partitions_added
                .fetch_add(partitions.len() as u64, Ordering::Relaxed);
            lock(&self.registered)
                .extend(partitions.iter().map(|p| (table.clone(), p.value.clone())));
            if let Err(e) = self.log.partitions_registered(&database, &partitions).await {
                tracing::warn!(error = %e, "could not drop the notes of registered partitions; the next start registers them again (harmless)");
            }
        }
    }

    /// Runs a statement with retries; `false` (logged and counted) if it never succeeds.
    async fn statement(&self, sql: &str, database: Option<&str>) -> bool {
        self.statement_outcome(sql, database, false).await != Ran::Failed
    }

    /// Like [`Registrar::statement`]; for an ADD COLUMNS (`adds_columns`), Athena's refusal
    /// because the table has a column already is [`Ran::HadColumn`], not retried.
    async fn statement_outcome(
        &self,
        sql: &str,
        database: Option<&str>,
        adds_columns: bool,
    ) -> Ran {
        let mut wait = RETRY;
        for attempt in 1..=TRIES {
            match self.runner.run(sql, database).await {
                Ok(()) => {
                    tracing::debug!(%sql, "catalog statement done");
                    return Ran::Done;
                }
                Err(e) if adds_columns && has_the_column(&e.to_string()) => {
                    tracing::info!(error = %e, "the table has the column already");
                    return Ran::HadColumn;
                }
                Err(e) if attempt < TRIES => {
                    tracing::warn!(error = %e, attempt, "catalog statement failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(e) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, %sql, "catalog statement failed; the data is in the lake, the catalog misses it until a later write or a restart");
                }
            }
        }
        Ran::Failed
    }
}

#[cfg(test)]
mod tests;
