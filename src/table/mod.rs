//! Table formats: implementations of the [`crate::ports::TableSink`] port, which makes an
//! object's converted parts visible in its dataset's table.
//!
//! - [`hive`]: Parquet parts under Hive partition folders, each new partition noted in
//!   the ledger and registered in the catalog.
//! - [`iceberg`]: Apache Iceberg tables in the Glue Data Catalog, committed in batches.
//! - [`LakeTables`]: both side by side, each dataset to the one its `table_format` names.

pub mod hive;
pub mod iceberg;

use tokio_util::sync::CancellationToken;

use crate::convert::PartFile;
use crate::domain::dataset::{Dataset, FieldIds, TableFormat};
use crate::domain::ledger::Claim;
use crate::ports::{
    CommitLog, Ledger, ObjectStore, PartLocation, Slot, StoreError, StoreErrorKind, TableSink,
};
use hive::HiveTable;
use iceberg::IcebergTables;

/// Files uploaded at once per object.
pub const UPLOADS_AT_ONCE: usize = 4;

/// The lake's tables: Hive datasets to [`HiveTable`], Iceberg datasets to
/// [`IcebergTables`] (present when some dataset is one).
pub struct LakeTables<S, L> {
    pub hive: HiveTable<S, L>,
    pub iceberg: Option<IcebergTables<S, L>>,
}

impl<S, L> LakeTables<S, L> {
    fn iceberg(&self, dataset: &Dataset) -> Result<&IcebergTables<S, L>, StoreError> {
        self.iceberg.as_ref().ok_or_else(|| {
            StoreError::new(
                "Iceberg table",
                StoreErrorKind::Rejected,
                format!(
                    "dataset {} is an Iceberg table but no Iceberg catalog was opened",
                    dataset.name
                ),
            )
        })
    }
}

impl<S: ObjectStore, L: Ledger + CommitLog> TableSink for LakeTables<S, L> {
    fn locations(
        &self,
        dataset: &Dataset,
        object_id: &str,
        parts: &[PartFile],
    ) -> Vec<PartLocation> {
        match (dataset.table, &self.iceberg) {
            (TableFormat::Iceberg, Some(iceberg)) => iceberg.locations(dataset, object_id, parts),
            (TableFormat::Iceberg, None) => Vec::new(),
            (TableFormat::Hive, _) => self.hive.locations(dataset, object_id, parts),
        }
    }

    async fn committed(
        &self,
        dataset: &Dataset,
        claim: &Claim,
        commits: &[String],
    ) -> Result<bool, StoreError> {
        match dataset.table {
            TableFormat::Iceberg => {
                self.iceberg(dataset)?
                    .committed(dataset, claim, commits)
                    .await
            }
            TableFormat::Hive => self.hive.committed(dataset, claim, commits).await,
        }
    }

    fn field_ids(&self, dataset: &Dataset) -> Option<std::sync::Arc<FieldIds>> {
        match (dataset.table, &self.iceberg) {
            (TableFormat::Iceberg, Some(iceberg)) => iceberg.field_ids(dataset),
            _ => None,
        }
    }

    async fn evolve(&self, dataset: &Dataset, added_now: &[String]) -> Result<(), StoreError> {
        match dataset.table {
            TableFormat::Iceberg => self.iceberg(dataset)?.evolve(dataset, added_now).await,
            TableFormat::Hive => self.hive.evolve(dataset, added_now).await,
        }
    }

    async fn publish(
        &self,
        dataset: &Dataset,
        claim: &Claim,
        parts: &[PartFile],
        locations: &[PartLocation],
        slot: &Slot,
        cancel: &CancellationToken,
    ) -> Result<(), StoreError> {
        match dataset.table {
            TableFormat::Iceberg => {
                self.iceberg(dataset)?
                    .publish(dataset, claim, parts, locations, slot, cancel)
                    .await
            }
            TableFormat::Hive => {
                self.hive
                    .publish(dataset, claim, parts, locations, slot, cancel)
                    .await
            }
        }
    }
}
