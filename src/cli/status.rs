//! `lakeworker status`: one object's ledger records, or the latest failures; with
//! `--dataset`, a dataset's columns and those it added; with `--table`, an Iceberg
//! dataset's last snapshots.

use std::process::ExitCode;
use std::sync::Arc;

use super::EXIT_CONFIG;
use crate::config::Settings;

pub async fn command(
    settings: Arc<Settings>,
    uri: Option<String>,
    failed: bool,
    limit: usize,
) -> anyhow::Result<ExitCode> {
    let clients = crate::aws::Clients::connect(&settings.aws).await;
    let ledger =
        crate::aws::ledger::DynamoLedger::new(clients.dynamodb, settings.ledger.table.clone());
    let records = match uri {
        Some(uri) if !failed => {
            if !uri.starts_with("s3://") {
                eprintln!("{uri:?} is not an s3://bucket/key URI");
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
            ledger.history(&uri).await?
        }
        _ => ledger.failures(limit).await?,
    };
    if records.is_empty() {
        println!("no ledger records");
    }
    for record in records {
        print!("{record}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a dataset's configured columns, then the columns `on_new_columns = "add"` gave
/// it (from the ledger): when, from which file, and whether the Hive catalog has them.
pub async fn dataset(settings: Arc<Settings>, name: &str) -> anyhow::Result<ExitCode> {
    use crate::domain::dataset::{NewColumns, TableFormat};
    use crate::ports::Ledger;
    let Some(dataset) = settings.datasets.table(name) else {
        eprintln!("no dataset is named {name:?}");
        return Ok(ExitCode::from(EXIT_CONFIG));
    };
    let table = match dataset.table {
        TableFormat::Hive => "Hive",
        TableFormat::Iceberg => "Iceberg",
    };
    let policy = dataset.policy.on_new_columns.as_str();
    println!("dataset {name}: {table} table, on_new_columns = \"{policy}\"");
    println!("configured columns ({}):", dataset.columns.len());
    for column in &dataset.columns {
        let required = if column.required { ", required" } else { "" };
        println!("  {} {}{required}", column.name, column.kind.name());
    }
    let clients = crate::aws::Clients::connect(&settings.aws).await;
    let ledger =
        crate::aws::ledger::DynamoLedger::new(clients.dynamodb, settings.ledger.table.clone());
    let added = ledger.dataset_columns(name).await?;
    if added.added.is_empty() {
        let why = match dataset.policy.on_new_columns {
            NewColumns::Add => "no file has brought a new column yet",
            _ => "only on_new_columns = \"add\" adds columns",
        };
        println!("added columns: none ({why})");
        return Ok(ExitCode::SUCCESS);
    }
    println!("added columns ({}, nullable strings):", added.added.len());
    for (i, column) in added.added.iter().enumerate() {
        let catalog = match dataset.table {
            TableFormat::Hive if i >= added.in_catalog => " (not in the catalog yet)",
            _ => "",
        };
        println!(
            "  {} added {} from {}{catalog}",
            column.name, column.added_at, column.source
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the last `limit` snapshots of an Iceberg dataset's table, newest first, and what
/// the current one holds.
pub async fn table(settings: Arc<Settings>, name: &str, limit: usize) -> anyhow::Result<ExitCode> {
    use crate::domain::dataset::TableFormat;
    use crate::table::iceberg::catalog::{IcebergCatalog, COMMIT_ID_PROPERTY};
    let Some(dataset) = settings.datasets.table(name) else {
        eprintln!("no dataset is named {name:?}");
        return Ok(ExitCode::from(EXIT_CONFIG));
    };
    let (TableFormat::Iceberg, Some(catalog)) = (dataset.table, &settings.catalog) else {
        eprintln!("dataset {name:?} is not an Iceberg table (table_format = \"iceberg\" with a [catalog])");
        return Ok(ExitCode::from(EXIT_CONFIG));
    };
    let lake = &settings.lake;
    let iceberg = IcebergCatalog::connect(
        &settings.aws,
        &catalog.database,
        format!("s3://{}/{}", lake.bucket, lake.prefix),
        settings.aws.timeouts.call * 6,
    )
    .await?;
    let table = iceberg.load(name).await?;
    let metadata = table.metadata();
    println!(
        "table {}.{name} at {}",
        catalog.database,
        metadata.location()
    );
    let mut snapshots: Vec<_> = metadata.snapshots().collect();
    snapshots.sort_by_key(|s| std::cmp::Reverse(s.timestamp_ms()));
    match metadata.current_snapshot() {
        None => println!("no snapshot yet"),
        Some(current) => {
            let summary = &current.summary().additional_properties;
            let get = |key: &str| summary.get(key).map(String::as_str).unwrap_or("?");
            println!(
                "current snapshot {}: {} rows in {} data files ({} bytes); {} snapshots kept",
                current.snapshot_id(),
                get("total-records"),
                get("total-data-files"),
                get("total-files-size"),
                snapshots.len()
            );
        }
    }
    for snapshot in snapshots.into_iter().take(limit) {
        let summary = &snapshot.summary().additional_properties;
        let get = |key: &str| summary.get(key).map(String::as_str).unwrap_or("-");
        let at = chrono::DateTime::from_timestamp_millis(snapshot.timestamp_ms())
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default();
        println!(
            "  {} {at} {:?}: +{} rows, +{} data files, commit {}",
            snapshot.snapshot_id(),
            snapshot.summary().operation,
            get("added-records"),
            get("added-data-files"),
            get(COMMIT_ID_PROPERTY),
        );
    }
    Ok(ExitCode::SUCCESS)
}
