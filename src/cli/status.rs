//! `lakeworker status`: one object's ledger records, or the latest failures.

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
