//! Converter tests: the shared datasets and helpers; the tests by theme.

use std::fs::File;
use std::path::Path;

use arrow::array::StringArray;
use arrow::record_batch::RecordBatch;

use super::*;
use crate::domain::dataset::{testing, FileFormat, Partition};
use crate::domain::schema::{Column, ColumnType};

mod csv;
mod encode;
mod input;
mod jsonl;
mod memory;
mod parts;
mod rescue;
mod rules;

fn columns() -> Vec<Column> {
    vec![
        Column::new("user_id", ColumnType::String, true),
        Column::new("age", ColumnType::Int, false),
        Column::new("score", ColumnType::Float, false),
        Column::new("active", ColumnType::Bool, false),
        Column::new("signup_date", ColumnType::Date, false),
        Column::new("seen_at", ColumnType::Timestamp, false),
    ]
}

fn dataset(format: FileFormat, partition: Partition) -> Dataset {
    testing::dataset(format, partition, columns())
}

fn lineage() -> Lineage {
    Lineage {
        source: "s3://b/k".into(),
        ingested_at: 5,
        ingest_date: 19000,
    }
}

/// Bad rows kept in memory, as the quarantine would write them.
fn quarantine() -> Quarantine<Vec<u8>> {
    Quarantine::in_memory()
}

fn run_on(
    input: &[u8],
    dataset: &Dataset,
    batch_rows: usize,
) -> (ConvertReport, Vec<RecordBatch>, Vec<serde_json::Value>) {
    let mut sink = Collect::default();
    let mut bad = quarantine();
    let report = convert(
        input,
        "in.csv",
        dataset,
        &lineage(),
        ConvertOptions::sequential(batch_rows),
        &mut sink,
        &mut bad,
    )
    .unwrap();
    let lines = String::from_utf8(bad.finish().unwrap()).unwrap();
    let bad_rows = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (report, sink.0, bad_rows)
}

fn collect(input: &str, dataset: &Dataset) -> (ConvertReport, Vec<RecordBatch>) {
    let (report, batches, _) = run_on(input.as_bytes(), dataset, 2);
    (report, batches)
}

fn errors(report: &ConvertReport) -> Vec<String> {
    report.errors.iter().map(ToString::to_string).collect()
}

fn strings(batches: &[RecordBatch], column: usize) -> Vec<Option<String>> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b
                .column(column)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            a.iter().map(|v| v.map(str::to_owned)).collect::<Vec<_>>()
        })
        .collect()
}

fn row_groups(path: &Path) -> Vec<(i64, i64)> {
    let reader =
        parquet::file::reader::SerializedFileReader::new(File::open(path).unwrap()).unwrap();
    parquet::file::reader::FileReader::metadata(&reader)
        .row_groups()
        .iter()
        .map(|g| (g.num_rows(), g.compressed_size()))
        .collect()
}
