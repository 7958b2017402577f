//! The Hive table: each part at `{prefix}/{dataset}/{partition}={value}/part-{id}[-n].parquet`
//! ([`lake::part_key`]), so a retry rewrites the same keys; with a catalog, every partition
//! written is noted in the ledger (durable before the message can be deleted) and sent to
//! the registrar, which adds it to the Athena table and drops the note.

use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::UPLOADS_AT_ONCE;
use crate::catalog::Partitions;
use crate::convert::PartFile;
use crate::domain::dataset::Dataset;
use crate::domain::lake::{self, NewPartition};
use crate::domain::ledger::Claim;
use crate::ports::{Ledger, ObjectStore, PartLocation, Slot, StoreError, TableSink};

/// Hive-partitioned Parquet in the lake bucket.
pub struct HiveTable<S, L> {
    store: Arc<S>,
    ledger: Arc<L>,
    bucket: String,
    prefix: String,
    /// Where new partitions are announced, when the catalog is on.
    partitions: Option<Partitions>,
}

impl<S, L> HiveTable<S, L> {
    pub fn new(store: Arc<S>, ledger: Arc<L>, bucket: String, prefix: String) -> Self {
        HiveTable {
            store,
            ledger,
            bucket,
            prefix,
            partitions: None,
        }
    }

    /// Announces every partition written to the catalog registrar.
    pub fn with_catalog(mut self, partitions: Partitions) -> Self {
        self.partitions = Some(partitions);
        self
    }
}

impl<S: ObjectStore, L: Ledger> TableSink for HiveTable<S, L> {
    fn locations(
        &self,
        dataset: &Dataset,
        object_id: &str,
        parts: &[PartFile],
    ) -> Vec<PartLocation> {
        let partition_name = dataset.partition_name();
        parts
            .iter()
            .map(|part| PartLocation {
                bucket: self.bucket.clone(),
                key: lake::part_key(
                    &self.prefix,
                    &dataset.name,
                    &partition_name,
                    part.partition,
                    object_id,
                    part.seq,
                ),
            })
            .collect()
    }

    async fn evolve(&self, dataset: &Dataset, added_now: &[String]) -> Result<(), StoreError> {
        // The Parquet parts carry the new columns anyway; the catalog learns them once.
        if let (Some(catalog), false) = (&self.partitions, added_now.is_empty()) {
            let list = dataset.added_columns().iter().map(|c| c.name.clone());
            catalog.send_columns(&dataset.name, list.collect(), added_now.to_vec());
        }
        Ok(())
    }

    async fn publish(
        &self,
        dataset: &Dataset,
        _claim: &Claim,
        parts: &[PartFile],
        locations: &[PartLocation],
        _slot: &Slot,
        cancel: &CancellationToken,
    ) -> Result<(), StoreError> {
        // Futures are built first: a closure over borrowed pairs inside the stream would
        // make the job future fail the `Send` check of `tokio::spawn`.
        let uploads: Vec<_> = parts
            .iter()
            .zip(locations)
            .map(|(part, at)| self.store.put_file(&at.bucket, &at.key, &part.path, cancel))
            .collect();
        futures_util::stream::iter(uploads)
            .buffer_unordered(UPLOADS_AT_ONCE)
            .try_collect::<()>()
            .await?;

        let Some(catalog) = &self.partitions else {
            return Ok(());
        };
        let partition_name = dataset.partition_name();
        let written: Vec<NewPartition> = parts
            .iter()
            .map(|part| {
                let value = lake::partition_text(part.partition);
                NewPartition {
                    dataset: dataset.name.clone(),
                    location: lake::partition_location(
                        &self.bucket,
                        &self.prefix,
                        &dataset.name,
                        &partition_name,
                        &value,
                    ),
                    partition_name: partition_name.clone(),
                    value,
                }
            })
            .collect();
        // Noted durably before the message can be deleted; the registrar drops the note
        // once Athena has the partition.
        let new = catalog.unregistered(&written);
        if !new.is_empty() {
            self.ledger
                .note_partitions(catalog.database(), &new)
                .instrument(tracing::info_span!("ledger", operation = "note_partitions"))
                .await?;
        }
        for partition in written {
            catalog.send(partition);
        }
        Ok(())
    }
}
