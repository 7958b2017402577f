//! The Glue Data Catalog through the iceberg crate: connecting (endpoint, path-style S3
//! for the emulator), creating a dataset's table if absent, loading it, and one append or
//! expiry commit **pinned to the table version the caller checked**.
//!
//! The crate's `Transaction::commit` reloads the table and re-bases onto a newer version,
//! and retries conflicts by itself; either would let a commit land on a base whose history
//! the committer never checked. [`Pinned`] is the catalog the transaction sees: its
//! `load_table` returns the checked table and its `update_table` hands Glue's conflict back
//! as a plain, non-retryable error, so one call is one try on one base.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use iceberg::spec::{DataFile, Schema, UnboundPartitionSpec};
use iceberg::table::Table;
use iceberg::transaction::{AddColumn, ApplyTransactionAction, Transaction};
use iceberg::{
    Catalog, CatalogBuilder, Error, ErrorKind, Namespace, NamespaceIdent, TableCommit,
    TableCreation, TableIdent,
};
use iceberg_catalog_glue::{GlueCatalog, GlueCatalogBuilder};

use crate::config::AwsSettings;
use crate::ports::{StoreError, StoreErrorKind};

/// The snapshot summary property that carries a lakeworker commit id.
pub const COMMIT_ID_PROPERTY: &str = "lakeworker.commit-id";

/// The Glue catalog and the database (namespace) of the lake's tables.
pub struct IcebergCatalog {
    glue: GlueCatalog,
    namespace: NamespaceIdent,
    /// The longest one load or commit may take (the crate's Glue client has no deadline
    /// of its own): past it the call is abandoned, its outcome unknown.
    bound: Duration,
}

/// `call` within `bound`, else a transient error whose outcome is unknown.
async fn bounded<T>(
    operation: &'static str,
    bound: Duration,
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(bound, call).await {
        Ok(result) => result,
        Err(_) => Err(StoreError::new(
            operation,
            StoreErrorKind::Transient,
            format!("no answer within {bound:?}; whether it took effect is unknown"),
        )),
    }
}

impl std::fmt::Debug for IcebergCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IcebergCatalog")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// An iceberg crate error as a port error: conflicts are `PreconditionFailed`, bad
/// requests `Rejected`, the rest (network, service) `Transient`.
pub fn store_error(operation: &'static str, error: &Error) -> StoreError {
    let kind = match error.kind() {
        ErrorKind::CatalogCommitConflicts => StoreErrorKind::PreconditionFailed,
        ErrorKind::TableNotFound | ErrorKind::NamespaceNotFound => StoreErrorKind::NotFound,
        ErrorKind::DataInvalid | ErrorKind::FeatureUnsupported | ErrorKind::PreconditionFailed => {
            StoreErrorKind::Rejected
        }
        _ => StoreErrorKind::Transient,
    };
    // The chain has the service's own words.
    StoreError::new(operation, kind, format!("{error:#}"))
}

impl IcebergCatalog {
    /// Connects to Glue (and S3, for metadata files) in `aws.region`, at
    /// `aws.endpoint_url` when set (then with path-style S3 addressing); credentials come
    /// from the default chain. `warehouse` is where new tables' folders go.
    pub async fn connect(
        aws: &AwsSettings,
        database: &str,
        warehouse: String,
        bound: Duration,
    ) -> Result<Self, StoreError> {
        let mut props = HashMap::from([
            ("warehouse".to_owned(), warehouse),
            (
                iceberg_catalog_glue::AWS_REGION_NAME.to_owned(),
                aws.region.clone(),
            ),
            (iceberg::io::S3_REGION.to_owned(), aws.region.clone()),
        ]);
        if let Some(endpoint) = &aws.endpoint_url {
            props.insert("uri".to_owned(), endpoint.clone());
            props.insert(
                iceberg::io::S3_PATH_STYLE_ACCESS.to_owned(),
                "true".to_owned(),
            );
        }
        // Static credentials from the environment, when set (the emulator, local runs):
        // the S3 side of the crate does not read the SDK's chain.
        for (env, prop) in [
            ("AWS_ACCESS_KEY_ID", iceberg_catalog_glue::AWS_ACCESS_KEY_ID),
            (
                "AWS_SECRET_ACCESS_KEY",
                iceberg_catalog_glue::AWS_SECRET_ACCESS_KEY,
            ),
            ("AWS_SESSION_TOKEN", iceberg_catalog_glue::AWS_SESSION_TOKEN),
        ] {
            if let Ok(value) = std::env::var(env) {
                props.insert(prop.to_owned(), value);
            }
        }
        let glue = GlueCatalogBuilder::default()
            .load("lakeworker", props)
            .await
            .map_err(|e| store_error("Glue connect", &e))?;
        Ok(IcebergCatalog {
            glue,
            namespace: NamespaceIdent::new(database.to_owned()),
            bound,
        })
    }

    pub fn ident(&self, table: &str) -> TableIdent {
        TableIdent::new(self.namespace.clone(), table.to_owned())
    }

    /// Creates the database unless it exists (another task creating it meanwhile is fine).
    pub async fn ensure_namespace(&self) -> Result<(), StoreError> {
        let exists = |e: Error| store_error("Glue GetDatabase", &e);
        if self
            .glue
            .namespace_exists(&self.namespace)
            .await
            .map_err(exists)?
        {
            return Ok(());
        }
        match self
            .glue
            .create_namespace(&self.namespace, HashMap::new())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                if self
                    .glue
                    .namespace_exists(&self.namespace)
                    .await
                    .unwrap_or(false)
                {
                    Ok(())
                } else {
                    Err(store_error("Glue CreateDatabase", &e))
                }
            }
        }
    }

    /// The table, created with `schema` and `spec` at `location` if absent. A creation by
    /// another task meanwhile is not an error: its table is loaded instead.
    pub async fn ensure_table(
        &self,
        name: &str,
        schema: Schema,
        spec: UnboundPartitionSpec,
        location: String,
    ) -> Result<Table, StoreError> {
        let ident = self.ident(name);
        // (The crate's `load_table` reports a missing table as an unexpected error.)
        let exists = self
            .glue
            .table_exists(&ident)
            .await
            .map_err(|e| store_error("Glue GetTable", &e))?;
        if exists {
            return self.load(name).await;
        }
        let creation = TableCreation::builder()
            .name(name.to_owned())
            .schema(schema)
            .partition_spec(spec)
            .location(location)
            .properties([
                ("write.format.default".to_owned(), "parquet".to_owned()),
                (
                    "write.parquet.compression-codec".to_owned(),
                    "zstd".to_owned(),
                ),
            ])
            .build();
        match self.glue.create_table(&self.namespace, creation).await {
            Ok(table) => {
                tracing::info!(table = %ident, "created the Iceberg table");
                Ok(table)
            }
            Err(e) if e.kind() == ErrorKind::TableAlreadyExists => self.load(name).await,
            Err(e) => Err(store_error("Glue CreateTable", &e)),
        }
    }

    /// `table` with the optional columns `wanted` has after all of the table's, added by
    /// a schema update pinned to `table` (so the new columns take the ids `wanted` gives
    /// them: the next ones). Anything else `wanted` differs in is left for
    /// [`super::schema::mismatch`] to report. A task that added them first makes this
    /// commit fail; the caller's retry then finds them.
    pub async fn add_trailing_columns(
        &self,
        table: Table,
        wanted: &Schema,
    ) -> Result<Table, StoreError> {
        let operation = "Iceberg add columns";
        let current = table.metadata().current_schema();
        // New fields take the ids after the table's last assigned one (which a dropped
        // column may have held), not after the current schema's highest.
        let highest = table.metadata().last_column_id();
        let mut missing: Vec<_> = wanted
            .as_struct()
            .fields()
            .iter()
            .filter(|f| current.field_by_id(f.id).is_none())
            .filter(|f| current.field_by_name(&f.name).is_none())
            .collect();
        missing.sort_by_key(|f| f.id);
        let next_ids = missing
            .iter()
            .zip(highest + 1..)
            .all(|(f, id)| f.id == id && !f.required);
        if missing.is_empty() || !next_ids {
            return Ok(table);
        }
        let tx = Transaction::new(&table);
        let mut update = tx.update_schema();
        for field in &missing {
            update = update.add_column(AddColumn::optional(
                &field.name,
                (*field.field_type).clone(),
            ));
        }
        let tx = update.apply(tx).map_err(|e| store_error(operation, &e))?;
        // A task that commits first (these columns, or an append) makes this one fail as
        // a conflict: transient here, so the caller reloads and finds the columns.
        let updated = match self.commit_pinned(operation, &table, tx).await {
            Err(e) if e.kind == StoreErrorKind::PreconditionFailed => {
                return Err(StoreError::new(
                    operation,
                    StoreErrorKind::Transient,
                    e.to_string(),
                ))
            }
            other => other?,
        };
        let names: Vec<&str> = missing.iter().map(|f| f.name.as_str()).collect();
        tracing::info!(table = %self.ident(table.identifier().name()), columns = ?names, "added columns to the Iceberg table");
        Ok(updated)
    }

    pub async fn load(&self, name: &str) -> Result<Table, StoreError> {
        let load = async {
            self.glue
                .load_table(&self.ident(name))
                .await
                .map_err(|e| store_error("Glue GetTable", &e))
        };
        bounded("Glue GetTable", self.bound, load).await
    }

    /// Appends `files` in one snapshot whose summary carries `commit_id`, on `base` and
    /// only on it: if the table moved on since, Glue refuses (`PreconditionFailed`).
    /// Returns the new snapshot's id.
    pub async fn append(
        &self,
        base: &Table,
        files: Vec<DataFile>,
        commit_id: &str,
    ) -> Result<i64, StoreError> {
        let operation = "Iceberg append";
        let tx = Transaction::new(base);
        let append = tx
            .fast_append()
            .with_check_duplicate(false)
            .set_snapshot_properties(HashMap::from([(
                COMMIT_ID_PROPERTY.to_owned(),
                commit_id.to_owned(),
            )]))
            .add_data_files(files);
        let tx = append.apply(tx).map_err(|e| store_error(operation, &e))?;
        let table = self.commit_pinned(operation, base, tx).await?;
        table.metadata().current_snapshot_id().ok_or_else(|| {
            StoreError::new(
                operation,
                StoreErrorKind::Transient,
                "no snapshot after the append",
            )
        })
    }

    /// Expires the snapshots of `base` older than `older_than_ms` (the newest is kept).
    /// Returns how many went.
    pub async fn expire(&self, base: &Table, older_than_ms: i64) -> Result<usize, StoreError> {
        let operation = "Iceberg expire snapshots";
        let current = base.metadata().current_snapshot_id();
        let old = base
            .metadata()
            .snapshots()
            .filter(|s| s.timestamp_ms() < older_than_ms && Some(s.snapshot_id()) != current)
            .count();
        if old == 0 {
            return Ok(0);
        }
        let tx = Transaction::new(base);
        let expire = tx
            .expire_snapshots()
            .expire_older_than_ms(older_than_ms)
            .retain_last(1);
        let tx = expire.apply(tx).map_err(|e| store_error(operation, &e))?;
        self.commit_pinned(operation, base, tx).await?;
        Ok(old)
    }

    /// Commits `tx` on `base` and only on it ([`Pinned`]), within the bound.
    async fn commit_pinned(
        &self,
        operation: &'static str,
        base: &Table,
        tx: Transaction,
    ) -> Result<Table, StoreError> {
        let pinned = Pinned {
            glue: &self.glue,
            table: base.clone(),
        };
        let commit = async {
            tx.commit(&pinned)
                .await
                .map_err(|e| store_error(operation, &e))
        };
        bounded(operation, self.bound, commit).await
    }
}

/// Every lakeworker commit id in the table's snapshots, with its snapshot id.
pub fn commit_ids(table: &Table) -> HashMap<String, i64> {
    table
        .metadata()
        .snapshots()
        .filter_map(|s| {
            let id = s.summary().additional_properties.get(COMMIT_ID_PROPERTY)?;
            Some((id.clone(), s.snapshot_id()))
        })
        .collect()
}

/// The catalog a pinned transaction commits through (see the module comment).
struct Pinned<'a> {
    glue: &'a GlueCatalog,
    table: Table,
}

impl std::fmt::Debug for Pinned<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pinned").finish_non_exhaustive()
    }
}

fn unsupported<T>() -> iceberg::Result<T> {
    Err(Error::new(
        ErrorKind::FeatureUnsupported,
        "a pinned commit only loads its table and updates it",
    ))
}

#[async_trait]
impl Catalog for Pinned<'_> {
    async fn list_namespaces(
        &self,
        _parent: Option<&NamespaceIdent>,
    ) -> iceberg::Result<Vec<NamespaceIdent>> {
        unsupported()
    }
    async fn create_namespace(
        &self,
        _namespace: &NamespaceIdent,
        _properties: HashMap<String, String>,
    ) -> iceberg::Result<Namespace> {
        unsupported()
    }
    async fn get_namespace(&self, _namespace: &NamespaceIdent) -> iceberg::Result<Namespace> {
        unsupported()
    }
    async fn namespace_exists(&self, _namespace: &NamespaceIdent) -> iceberg::Result<bool> {
        unsupported()
    }
    async fn update_namespace(
        &self,
        _namespace: &NamespaceIdent,
        _properties: HashMap<String, String>,
    ) -> iceberg::Result<()> {
        unsupported()
    }
    async fn drop_namespace(&self, _namespace: &NamespaceIdent) -> iceberg::Result<()> {
        unsupported()
    }
    async fn list_tables(&self, _namespace: &NamespaceIdent) -> iceberg::Result<Vec<TableIdent>> {
        unsupported()
    }
    async fn create_table(
        &self,
        _namespace: &NamespaceIdent,
        _creation: TableCreation,
    ) -> iceberg::Result<Table> {
        unsupported()
    }
    async fn load_table(&self, table: &TableIdent) -> iceberg::Result<Table> {
        if table == self.table.identifier() {
            Ok(self.table.clone())
        } else {
            unsupported()
        }
    }
    async fn drop_table(&self, _table: &TableIdent) -> iceberg::Result<()> {
        unsupported()
    }
    async fn purge_table(&self, _table: &TableIdent) -> iceberg::Result<()> {
        unsupported()
    }
    async fn table_exists(&self, _table: &TableIdent) -> iceberg::Result<bool> {
        unsupported()
    }
    async fn rename_table(&self, _src: &TableIdent, _dest: &TableIdent) -> iceberg::Result<()> {
        unsupported()
    }
    async fn register_table(
        &self,
        _table: &TableIdent,
        _metadata_location: String,
    ) -> iceberg::Result<Table> {
        unsupported()
    }
    async fn update_table(&self, commit: TableCommit) -> iceberg::Result<Table> {
        // A fresh error is not retryable: the crate must not retry on its own.
        self.glue
            .update_table(commit)
            .await
            .map_err(|e| Error::new(e.kind(), format!("{e:#}")))
    }
}
