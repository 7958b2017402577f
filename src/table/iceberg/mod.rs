//! The Iceberg table format: each Iceberg dataset is a table in the Glue Data Catalog,
//! created at start-up if absent, whose data files our own Parquet writer makes and whose
//! commits a per-table [`committer`] batches across jobs, exactly once per object version.
//!
//! - [`IcebergTables`]: the [`TableSink`] of Iceberg datasets (start-up, recovery of an
//!   object whose commit landed before the ledger settled, and publishing through the
//!   committer);
//! - [`committer`]: batching, combining small files, the exactly-once commit;
//! - [`catalog`]: Glue through the iceberg crate, commits pinned to a checked version;
//! - [`schema`]: a dataset's Iceberg schema and partition spec;
//! - [`stats`]: manifest entries from Parquet footers.

pub mod catalog;
pub mod committer;
pub mod schema;
pub mod stats;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use iceberg::spec::Schema;
use iceberg::table::Table;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::convert::sinks::{writer_properties, LakeProjection};
use crate::convert::PartFile;
use crate::domain::dataset::{Dataset, FieldIds, NewColumns, TableFormat};
use crate::domain::lake;
use crate::domain::ledger::Claim;
use crate::ports::{
    CommitLog, Ledger, ObjectStore, PartLocation, Slot, StoreError, StoreErrorKind, TableSink,
};
use catalog::{commit_ids, IcebergCatalog};
use committer::{Committer, TableLayout};

/// The Iceberg tables of a worker, one committer each.
pub struct IcebergTables<S, L> {
    ledger: Arc<L>,
    catalog: Arc<IcebergCatalog>,
    /// How long one catalog call may take.
    bound: std::time::Duration,
    /// By dataset name.
    committers: HashMap<String, Arc<Committer<S, L>>>,
}

impl<S: ObjectStore, L: CommitLog> IcebergTables<S, L> {
    /// Connects to the catalog, creates every Iceberg dataset's table if absent (checking
    /// an existing one matches), and starts their committers and snapshot expiry. Once
    /// `draining` is cancelled (shutdown began) the committers commit whatever joins at
    /// once; at `stop` (the pool has stopped) they end.
    /// `None` when no dataset is an Iceberg table.
    pub async fn open(
        settings: &Settings,
        store: Arc<S>,
        ledger: Arc<L>,
        owner: &str,
        draining: &CancellationToken,
        stop: &CancellationToken,
    ) -> Result<Option<Self>, StoreError>
    where
        L: Ledger,
    {
        let datasets: Vec<&Dataset> = settings
            .datasets
            .tables()
            .filter(|d| d.table == TableFormat::Iceberg)
            .collect();
        if datasets.is_empty() {
            return Ok(None);
        }
        let database = settings
            .catalog
            .as_ref()
            .map(|c| c.database.clone())
            .ok_or_else(|| {
                StoreError::new(
                    "Iceberg tables",
                    StoreErrorKind::Rejected,
                    "Iceberg datasets need [catalog] database",
                )
            })?;
        let lake = &settings.lake;
        let warehouse = format!("s3://{}/{}", lake.bucket, lake.prefix);
        // Half the commit lease: a load or commit is abandoned well within the lease (the
        // lease is dropped after; Glue's version check refuses a stale late arrival).
        let bound = settings.iceberg.commit_lease / 2;
        let catalog =
            Arc::new(IcebergCatalog::connect(&settings.aws, &database, warehouse, bound).await?);
        with_retries("Glue database", bound, || catalog.ensure_namespace()).await?;
        let mut committers = HashMap::new();
        for dataset in datasets {
            // With `on_new_columns = "add"`, the columns files added so far, after its own.
            let effective;
            let dataset = if dataset.policy.on_new_columns == NewColumns::Add {
                let added =
                    with_retries("ledger", bound, || ledger.dataset_columns(&dataset.name)).await?;
                effective = dataset.with_added(added.names());
                &effective
            } else {
                dataset
            };
            let projection = LakeProjection::new(dataset, lake.pii_salt.as_ref());
            let arrow_schema = projection.schema();
            let rejected = |e: String| {
                StoreError::new(
                    "Iceberg table",
                    StoreErrorKind::Rejected,
                    format!("dataset {}: {e}", dataset.name),
                )
            };
            let wanted = schema::table_schema(&arrow_schema).map_err(rejected)?;
            let spec = schema::partition_spec(dataset, &wanted).map_err(rejected)?;
            let location = lake::dataset_location(&lake.bucket, &lake.prefix, &dataset.name);
            let location = location.trim_end_matches('/').to_owned();
            // A new table numbers the lake columns in order. An existing one keeps its ids
            // by name and gains the optional columns it lacks as its next fields
            // (`_rescued`, once `rescue` is turned on; columns `add` recorded but a crash
            // kept from the table).
            with_retries("Glue table", bound, || async {
                catalog
                    .ensure_table(
                        &dataset.name,
                        wanted.clone(),
                        spec.clone(),
                        location.clone(),
                    )
                    .await
            })
            .await?;
            let qualified = format!("{database}.{}", dataset.name);
            let widened =
                with_retries("Glue table", bound, || widen(&catalog, dataset, &qualified)).await?;
            let Widened {
                table,
                arrow_schema,
                wanted,
                ids,
            } = widened;
            let wanted_spec = schema::partition_spec(dataset, &wanted).map_err(rejected)?;
            let metadata = table.metadata();
            if let Some(problem) =
                schema::spec_mismatch(metadata.default_partition_spec(), &wanted_spec)
            {
                return Err(rejected(format!(
                    "the table {database}.{}: {problem}",
                    dataset.name
                )));
            }
            let layout = TableLayout {
                qualified,
                name: dataset.name.clone(),
                bucket: lake.bucket.clone(),
                data_prefix: format!("{}/data", lake::dataset_prefix(&lake.prefix, &dataset.name)),
                partition_name: dataset.partition_name(),
                arrow_schema,
                field_ids: ids,
                props: writer_properties(&lake.parquet),
                target_file_size: lake.parquet.target_file_size,
                schema: (**metadata.current_schema()).clone(),
                spec_id: metadata.default_partition_spec_id(),
            };
            let committer = Arc::new(
                Committer::new(
                    layout,
                    settings.iceberg.clone(),
                    catalog.clone(),
                    store.clone(),
                    ledger.clone(),
                    owner.to_owned(),
                    settings.worker.scratch_dir.as_deref(),
                )
                .map_err(|e| {
                    StoreError::new("Iceberg spool", StoreErrorKind::Rejected, e.to_string())
                })?,
            );
            tokio::spawn(committer.clone().run(draining.clone(), stop.clone()));
            tokio::spawn(committer.clone().expire_loop(stop.clone()));
            committers.insert(dataset.name.clone(), committer);
        }
        Ok(Some(IcebergTables {
            ledger,
            catalog,
            bound,
            committers,
        }))
    }

    fn committer(&self, dataset: &Dataset) -> Result<&Arc<Committer<S, L>>, StoreError> {
        self.committers.get(&dataset.name).ok_or_else(|| {
            StoreError::new(
                "Iceberg table",
                StoreErrorKind::Rejected,
                format!(
                    "dataset {} has no Iceberg table in this worker",
                    dataset.name
                ),
            )
        })
    }
}

impl<S: ObjectStore, L: CommitLog> TableSink for IcebergTables<S, L> {
    fn locations(&self, _: &Dataset, _: &str, _: &[PartFile]) -> Vec<PartLocation> {
        // Data files get fresh keys at upload: no key of a committed file is ever
        // written again, and nothing is recorded for a later attempt to remove.
        Vec::new()
    }

    async fn committed(
        &self,
        dataset: &Dataset,
        claim: &Claim,
        commits: &[String],
    ) -> Result<bool, StoreError> {
        // The claim read the commit ids, atomically with taking the lease: an earlier
        // owner can join no commit after it (its join is conditioned on its lease).
        let mut history = None;
        for id in commits {
            let Some(record) = self.ledger.commit_record(id).await? else {
                continue;
            };
            if !record.carries(&claim.key) {
                continue;
            }
            if record.snapshot_id.is_some() {
                return Ok(true);
            }
            if history.is_none() {
                let table = self.catalog.load(self.committer(dataset)?.name()).await?;
                history = Some(commit_ids(&table));
            }
            if let Some(snapshot) = history.as_ref().and_then(|h| h.get(id)) {
                tracing::info!(commit_id = %id, snapshot, "an earlier attempt's commit landed; nothing to write");
                let _ = self.ledger.commit_landed(id, *snapshot).await;
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn field_ids(&self, dataset: &Dataset) -> Option<Arc<FieldIds>> {
        self.committers.get(&dataset.name).map(|c| c.field_ids())
    }

    async fn evolve(&self, dataset: &Dataset, _added_now: &[String]) -> Result<(), StoreError> {
        let committer = self.committer(dataset)?;
        let width = LakeProjection::new(dataset, None).schema().fields().len();
        if committer.knows(width) {
            return Ok(());
        }
        // Tasks adding the same columns at once: one schema update lands, the others
        // conflict, reload and find the columns there (under the same ids: by name).
        let widened = with_retries("Iceberg add columns", self.bound, || {
            widen(&self.catalog, dataset, committer.qualified())
        })
        .await?;
        let schema = (**widened.table.metadata().current_schema()).clone();
        committer.evolve(widened.arrow_schema, schema, widened.ids);
        Ok(())
    }

    async fn publish(
        &self,
        dataset: &Dataset,
        claim: &Claim,
        parts: &[PartFile],
        _locations: &[PartLocation],
        slot: &Slot,
        cancel: &CancellationToken,
    ) -> Result<(), StoreError> {
        if parts.is_empty() {
            return Ok(());
        }
        let committer = self.committer(dataset)?;
        let snapshot = committer.publish(claim, parts, slot, cancel).await?;
        tracing::info!(table = %committer.qualified(), snapshot, "rows committed");
        Ok(())
    }
}

/// A table with every column of its dataset.
struct Widened {
    table: Table,
    /// The dataset's lake schema under the table's field ids.
    arrow_schema: SchemaRef,
    /// Its Iceberg form.
    wanted: Schema,
    ids: Arc<FieldIds>,
}

/// Loads the dataset's table and adds, as its next fields, the optional columns of the
/// dataset it lacks (found by name, so a column keeps its id however the config orders
/// or drops those around it). Refused for good if the table still does not match: a
/// column whose type changed, a required column it lacks.
async fn widen(
    catalog: &IcebergCatalog,
    dataset: &Dataset,
    qualified: &str,
) -> Result<Widened, StoreError> {
    let rejected = |e: String| {
        StoreError::new(
            "Iceberg table",
            StoreErrorKind::Rejected,
            format!("dataset {}: {e}", dataset.name),
        )
    };
    let lake_schema = |table: &Table| {
        let mut with_ids = dataset.clone();
        let ids = Arc::new(schema::field_ids(table.metadata()));
        with_ids.field_ids = Some(ids.clone());
        let arrow_schema = LakeProjection::new(&with_ids, None).schema();
        let wanted = schema::table_schema(&arrow_schema).map_err(rejected)?;
        Ok::<_, StoreError>((arrow_schema, wanted, ids))
    };
    let table = catalog.load(&dataset.name).await?;
    let (_, wanted, ids) = lake_schema(&table)?;
    // A column the table lacks but has in another case (a case-only rename) would give
    // Glue two columns Athena cannot tell apart.
    for field in wanted.as_struct().fields() {
        if ids.by_name.contains_key(&field.name) {
            continue;
        }
        if let Some(have) = ids
            .by_name
            .keys()
            .find(|k| k.eq_ignore_ascii_case(&field.name))
        {
            return Err(rejected(format!(
                "column {} differs only in case from the table's column {have} (Glue and Athena fold case)",
                field.name
            )));
        }
    }
    let table = catalog.add_trailing_columns(table, &wanted).await?;
    let (arrow_schema, wanted, ids) = lake_schema(&table)?;
    if let Some(problem) = schema::mismatch(table.metadata().current_schema(), &wanted) {
        return Err(rejected(format!(
            "the table {qualified} does not match the dataset's columns: {problem}"
        )));
    }
    Ok(Widened {
        table,
        arrow_schema,
        wanted,
        ids,
    })
}

/// Start-up tries of a catalog step: each bounded, transient failures retried.
const START_TRIES: u32 = 5;

/// `step` until it succeeds or fails for good, each try within `bound`, at most
/// [`START_TRIES`] times (1, 2, 4, 8 s apart).
async fn with_retries<T, F, Fut>(
    what: &'static str,
    bound: std::time::Duration,
    step: F,
) -> Result<T, StoreError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut pause = std::time::Duration::from_secs(1);
    for attempt in 1..=START_TRIES {
        let result = match tokio::time::timeout(bound, step()).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::new(
                what,
                StoreErrorKind::Transient,
                format!("no answer within {bound:?}"),
            )),
        };
        match result {
            Err(e) if e.is_transient() && attempt < START_TRIES => {
                tracing::warn!(error = %e, attempt, "setting up the Iceberg tables; trying again");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            other => return other,
        }
    }
    unreachable!("the last try returns")
}
