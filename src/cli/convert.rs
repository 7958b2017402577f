//! `lakeworker convert`: a local file through the worker's conversion path (no AWS).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;

use super::EXIT_CONFIG;
use crate::config::Settings;
use crate::convert::{self, ConvertError, Lineage, ParquetFile, Quarantine};
use crate::domain::schema::date_to_days;

/// `lakeworker convert`: the worker's conversion path on a local file, into one Parquet
/// file with every column. Bad rows go to `OUTPUT.bad-rows.jsonl`; a file the dataset's
/// policy rejects produces no output (exit 1).
pub fn command(
    settings: &Settings,
    name: &str,
    input: &Path,
    output: &Path,
) -> anyhow::Result<ExitCode> {
    let Some(dataset) = settings.datasets.by_name(name) else {
        let known: Vec<&str> = settings
            .datasets
            .datasets()
            .iter()
            .map(|d| d.name.as_str())
            .collect();
        eprintln!(
            "unknown dataset {name:?}; the config defines: {}",
            known.join(", ")
        );
        return Ok(ExitCode::from(EXIT_CONFIG));
    };
    let file =
        std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?;
    let absolute = std::path::absolute(input).unwrap_or_else(|_| input.to_owned());
    let now = Utc::now();
    let lineage = Lineage {
        source: format!("file://{}", absolute.display()),
        ingested_at: now.timestamp_micros(),
        ingest_date: date_to_days(now.date_naive()),
    };
    let props = convert::writer_properties(&settings.lake.parquet);
    let memory = settings.worker.conversion_memory;
    let threads = settings.worker.conversion_threads.get();
    let mut sink = ParquetFile::create(output, convert::full_schema(dataset), props, memory)?
        .with_encoders(threads);
    let bad_rows_path = PathBuf::from(format!("{}.bad-rows.jsonl", output.display()));
    let mut bad_rows = Quarantine::create(&bad_rows_path)?;
    let name = input.to_string_lossy();
    let converted = convert::convert(
        file,
        &name,
        dataset,
        &lineage,
        convert::ConvertOptions {
            batch_rows: settings.worker.batch_rows.get(),
            threads,
            memory,
        },
        &mut sink,
        &mut bad_rows,
    );
    sink.close()?;
    bad_rows.finish()?;
    let rejected = match &converted {
        Ok(report) => crate::pipeline::rejection_reason(&dataset.policy, report),
        Err(ConvertError::Malformed(reason)) => Some(reason.clone()),
        Err(_) => None,
    };
    let report = match (converted, rejected) {
        (_, Some(reason)) => {
            // Same rule as the worker: a rejected file produces no output.
            let _ = std::fs::remove_file(output);
            let _ = std::fs::remove_file(&bad_rows_path);
            eprintln!("file rejected, no output written: {reason}");
            return Ok(ExitCode::FAILURE);
        }
        (converted, None) => {
            converted.with_context(|| format!("converting {}", input.display()))?
        }
    };
    println!(
        "{} rows written to {}",
        report.rows_written,
        output.display()
    );
    if report.rows_rescued > 0 {
        println!("{} rows have values kept in _rescued", report.rows_rescued);
    }
    if report.rows_rejected > 0 {
        println!(
            "{} bad rows written to {}; first: {}",
            report.rows_rejected,
            bad_rows_path.display(),
            report.error_summary(3)
        );
    } else {
        let _ = std::fs::remove_file(&bad_rows_path);
    }
    Ok(ExitCode::SUCCESS)
}
