//! Conversion: a byte stream of CSV or JSON lines → validated, typed Arrow batches → sinks,
//! and bad rows → a quarantine.
//!
//! [`convert`] is the one code path used by the worker, `lakeworker convert` and the
//! benchmarks. It is synchronous and CPU-bound; the worker runs it on a blocking thread and
//! feeds it from the S3 stream, so memory stays bounded (one batch per open partition, one
//! row of at most `max_row_bytes`) whatever the file size.
//!
//! - [`input`]: gzip/zstd detection, byte order mark, read-error classes.
//! - [`csv`], [`jsonl`]: row sources yielding raw cells.
//! - [`batch`]: good rows → Arrow batches (every dataset column plus lineage).
//! - [`sinks`]: lake parts (with rename/hash/drop), one Parquet file, the DynamoDB spool,
//!   the quarantine.
//!
//! Each row: the source checks its shape (fields, UTF-8, JSON, length), every column
//! parses its cell ([`crate::schema::Column::parse`]), then `unique_key` is checked. A row
//! with any problem goes to the [`BadRowSink`] with all its problems; a good row goes to
//! the batch. The [`ConvertReport`] counts both.

use std::collections::HashMap;
use std::io::{self, Read};

use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use serde_json::Value;

use crate::datasets::{Dataset, FileFormat};
use crate::schema::{Parsed, RawCell};

pub mod batch;
mod csv;
pub mod input;
mod jsonl;
#[cfg(test)]
mod proptests;
pub mod sinks;
#[cfg(test)]
mod tests;

pub use batch::full_schema;
pub use input::SourceFailed;
pub use sinks::{
    read_spool, writer_properties, Collect, LakeParts, LakeProjection, ParquetFile, PartFile,
    PartitionValue, Quarantine, Spool,
};

/// How many row errors a report describes in full; the rest are only counted.
pub const MAX_ERRORS_KEPT: usize = 100;

/// What every output row records about where it came from.
#[derive(Debug, Clone)]
pub struct Lineage {
    /// `s3://bucket/key` of the source object (or `file://…` for `lakeworker convert`).
    pub source: String,
    /// Microseconds since the epoch, UTC.
    pub ingested_at: i64,
    /// The `ingest_date` partition value, days since the epoch.
    pub ingest_date: i32,
}

/// One problem of one row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RowError {
    /// 1-based line where the row starts (for inline records: the record number).
    pub line: u64,
    pub column: Option<String>,
    /// The rule that refused it: `required`, `type`, `pattern`, `allowed`, `min`, `max`,
    /// `max_length`, `unique_key`, `fields`, `utf8`, `json`, `extra_columns`,
    /// `max_row_bytes`.
    pub rule: &'static str,
    pub reason: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.column {
            Some(column) => write!(f, "line {}, column {column}: {}", self.line, self.reason),
            None => write!(f, "line {}: {}", self.line, self.reason),
        }
    }
}

/// A bad row with every problem found in it.
#[derive(Debug)]
pub struct BadRow<'a> {
    pub line: u64,
    pub byte_offset: Option<u64>,
    /// The row as it appeared in the input (at most `max_row_bytes`).
    pub raw: &'a [u8],
    pub errors: &'a [RowError],
}

/// Receives bad rows.
pub trait BadRowSink {
    fn bad_row(&mut self, row: &BadRow<'_>) -> Result<(), ConvertError>;
}

/// Bad rows only counted and described in the report.
impl BadRowSink for () {
    fn bad_row(&mut self, _: &BadRow<'_>) -> Result<(), ConvertError> {
        Ok(())
    }
}

/// Counts and errors of one conversion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConvertReport {
    pub rows_in: u64,
    pub rows_written: u64,
    /// Bad rows (sent to the bad-row sink).
    pub rows_rejected: u64,
    /// The first [`MAX_ERRORS_KEPT`] row problems.
    pub errors: Vec<RowError>,
}

impl ConvertReport {
    fn reject(&mut self, errors: &[RowError]) {
        self.rows_rejected += 1;
        let room = MAX_ERRORS_KEPT.saturating_sub(self.errors.len());
        self.errors.extend(errors.iter().take(room).cloned());
    }

    /// The share of rows that were bad (0 for an empty file).
    pub fn invalid_fraction(&self) -> f64 {
        if self.rows_in == 0 {
            0.0
        } else {
            self.rows_rejected as f64 / self.rows_in as f64
        }
    }

    /// A one-line description of the first errors, for logs and error messages.
    pub fn error_summary(&self, max: usize) -> String {
        let shown: Vec<String> = self
            .errors
            .iter()
            .take(max)
            .map(ToString::to_string)
            .collect();
        let more = self.errors.len().saturating_sub(shown.len());
        if more > 0 {
            format!("{} (and {more} more)", shown.join("; "))
        } else {
            shown.join("; ")
        }
    }
}

/// Why a file could not be converted at all (as opposed to individual bad rows).
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The input stream failed (for S3: a dropped connection). Worth a retry.
    #[error("reading input: {0}")]
    Read(#[source] io::Error),
    /// The file's structure is wrong, so no row can be trusted. Not worth a retry.
    #[error("{0}")]
    Malformed(String),
    /// Writing local output failed (disk full, permissions). Worth a retry.
    #[error("writing output: {0}")]
    Write(String),
}

impl ConvertError {
    /// Whether trying the same input again can succeed.
    pub fn is_transient(&self) -> bool {
        !matches!(self, ConvertError::Malformed(_))
    }
}

impl From<ArrowError> for ConvertError {
    fn from(e: ArrowError) -> Self {
        match e {
            ArrowError::IoError(_, io) => ConvertError::Write(io.to_string()),
            other => ConvertError::Write(other.to_string()),
        }
    }
}

impl From<parquet::errors::ParquetError> for ConvertError {
    fn from(e: parquet::errors::ParquetError) -> Self {
        ConvertError::Write(e.to_string())
    }
}

/// Receives validated batches with every dataset column plus `_extra` and lineage.
pub trait BatchSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ConvertError>;
}

/// Both sinks get every batch (the lake and, for user datasets, the records spool).
impl<A: BatchSink, B: BatchSink> BatchSink for (A, B) {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ConvertError> {
        self.0.write(batch)?;
        self.1.write(batch)
    }
}

impl<S: BatchSink> BatchSink for Option<S> {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ConvertError> {
        match self {
            Some(sink) => sink.write(batch),
            None => Ok(()),
        }
    }
}

/// Converts `input` (plain, gzip or zstd; `name` is its key or file name) in the dataset's
/// format, sending batches of up to `batch_rows` good rows to `sink` and bad rows to
/// `bad_rows`. The caller decides what a file with bad rows means.
pub fn convert<R: Read, S: BatchSink, B: BadRowSink>(
    input: R,
    name: &str,
    dataset: &Dataset,
    lineage: &Lineage,
    batch_rows: usize,
    sink: &mut S,
    bad_rows: &mut B,
) -> Result<ConvertReport, ConvertError> {
    let (text, _) = input::open(input, name)?;
    match dataset.format {
        FileFormat::Csv => run(
            csv::CsvRows::new(text, dataset)?,
            dataset,
            lineage,
            batch_rows,
            sink,
            bad_rows,
        ),
        FileFormat::Jsonl => run(
            jsonl::JsonRows::new(text, dataset),
            dataset,
            lineage,
            batch_rows,
            sink,
            bad_rows,
        ),
    }
}

/// Converts inline records (JSON values) with the JSON lines path, so they are validated
/// exactly like a file. Line numbers in errors are record numbers.
pub fn convert_records<S: BatchSink, B: BadRowSink>(
    records: &[Value],
    dataset: &Dataset,
    lineage: &Lineage,
    sink: &mut S,
    bad_rows: &mut B,
) -> Result<ConvertReport, ConvertError> {
    let mut lines = Vec::new();
    for record in records {
        // A record is one line: serde_json never writes a raw newline inside a value.
        serde_json::to_writer(&mut lines, record)
            .map_err(|e| ConvertError::Malformed(e.to_string()))?;
        lines.push(b'\n');
    }
    let rows = jsonl::JsonRows::new(lines.as_slice(), dataset);
    run(rows, dataset, lineage, records.len().max(1), sink, bad_rows)
}

/// Whether the source itself could read the row.
enum RowCheck {
    Ok,
    Bad { rule: &'static str, reason: String },
}

impl RowCheck {
    fn bad(rule: &'static str, reason: String) -> RowCheck {
        RowCheck::Bad { rule, reason }
    }
}

/// Rows of a file, one at a time, with their cells looked up by dataset column index.
trait RowSource {
    /// Advances to the next row. `Err` only for failures that make the rest unreadable.
    fn next_row(&mut self) -> Result<Option<RowCheck>, ConvertError>;
    /// The current row's line number.
    fn line(&self) -> u64;
    fn byte_offset(&self) -> Option<u64>;
    /// The current row as it appeared in the input (at most `max_row_bytes`).
    fn raw(&self) -> &[u8];
    /// The current row's cell for dataset column `column`.
    fn cell(&self, column: usize) -> RawCell<'_>;
    /// Undeclared fields of the current row as a JSON object (`extra_columns = "keep"`).
    fn extra(&self) -> Option<String>;
}

fn run<S: RowSource, K: BatchSink, B: BadRowSink>(
    mut rows: S,
    dataset: &Dataset,
    lineage: &Lineage,
    batch_rows: usize,
    sink: &mut K,
    bad_rows: &mut B,
) -> Result<ConvertReport, ConvertError> {
    let mut report = ConvertReport::default();
    let mut builder = batch::BatchBuilder::new(dataset, lineage, batch_rows);
    let mut parsed = vec![Parsed::Null; dataset.columns.len()];
    let mut errors: Vec<RowError> = Vec::new();
    let mut seen_keys: HashMap<String, u64> = HashMap::new();
    while let Some(check) = rows.next_row()? {
        report.rows_in += 1;
        errors.clear();
        let line = rows.line();
        match check {
            RowCheck::Bad { rule, reason } => errors.push(RowError {
                line,
                column: None,
                rule,
                reason,
            }),
            RowCheck::Ok => {
                for (i, column) in dataset.columns.iter().enumerate() {
                    match column.parse(rows.cell(i)) {
                        Ok(value) => parsed[i] = value,
                        Err(e) => errors.push(RowError {
                            line,
                            column: Some(column.name.clone()),
                            rule: e.rule(),
                            reason: e.to_string(),
                        }),
                    }
                }
                if errors.is_empty() && !dataset.policy.unique_key.is_empty() {
                    if let Some(first) = check_unique(&rows, dataset, &mut seen_keys, line) {
                        errors.push(RowError {
                            line,
                            column: None,
                            rule: "unique_key",
                            reason: format!("duplicate key; first seen at line {first}"),
                        });
                    }
                }
            }
        }
        if !errors.is_empty() {
            report.reject(&errors);
            bad_rows.bad_row(&BadRow {
                line,
                byte_offset: rows.byte_offset(),
                raw: rows.raw(),
                errors: &errors,
            })?;
            continue;
        }
        builder.append(&parsed, &rows);
        if builder.len() >= batch_rows {
            let batch = builder.finish()?;
            report.rows_written += batch.num_rows() as u64;
            sink.write(&batch)?;
        }
    }
    if builder.len() > 0 {
        let batch = builder.finish()?;
        report.rows_written += batch.num_rows() as u64;
        sink.write(&batch)?;
    }
    Ok(report)
}

/// Records the row's key; returns the line of an earlier row with the same key.
fn check_unique<S: RowSource>(
    rows: &S,
    dataset: &Dataset,
    seen: &mut HashMap<String, u64>,
    line: u64,
) -> Option<u64> {
    let mut key = String::new();
    for (n, index) in dataset.policy.unique_key.iter().enumerate() {
        if n > 0 {
            key.push('\u{1f}');
        }
        match rows.cell(*index) {
            RawCell::Text(text) => key.push_str(text),
            RawCell::Json(Value::String(text)) => key.push_str(text),
            RawCell::Json(other) => key.push_str(&other.to_string()),
            RawCell::Missing => {}
        }
    }
    match seen.entry(key) {
        std::collections::hash_map::Entry::Occupied(first) => Some(*first.get()),
        std::collections::hash_map::Entry::Vacant(slot) => {
            slot.insert(line);
            None
        }
    }
}
