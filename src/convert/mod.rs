//! Conversion: a byte stream of CSV or JSON lines → validated, typed Arrow batches → sinks,
//! and bad rows → a quarantine.
//!
//! [`convert`] is the one code path used by the worker, `lakeworker convert` and the
//! benchmarks. It is synchronous and CPU-bound; the worker runs it on a blocking thread and
//! feeds it from the S3 stream, so memory stays within its [`MemoryBudget`] whatever the
//! file size, the row size and the partition count.
//!
//! - [`report`]: the report, bad rows and the error type; [`engine`]: the three stages.
//! - [`input`]: gzip/zstd detection, expansion limits, byte order mark, read-error classes.
//! - [`budget`]: the rows in flight between the stages, held within the budget.
//! - [`csv`], [`jsonl`]: row sources yielding raw cells.
//! - [`batch`]: good rows → Arrow batches (every dataset column plus lineage);
//!   [`columnar`]: a chunk of good CSV rows typed column by column.
//! - [`encode`]: a Parquet writer that encodes columns on several threads.
//! - [`sinks`]: lake parts (with rename/hash/drop), one Parquet file, the DynamoDB spool,
//!   the quarantine.
//!
//! Each row: the source checks its shape (fields, UTF-8, JSON, length), every column
//! parses its cell ([`crate::domain::schema::Column::parse`]), then `unique_key` is checked. A row
//! with any problem goes to the [`BadRowSink`] with all its problems; a good row goes to
//! the batch. The [`ConvertReport`] counts both. Rows are split, typed and written in
//! three stages so one file uses several cores (see [`convert`]).

use std::io::Read;

use arrow::record_batch::RecordBatch;
use serde_json::Value;

use crate::domain::dataset::{Dataset, FileFormat};

pub mod batch;
mod budget;
mod columnar;
mod csv;
pub mod dictionary;
mod encode;
mod engine;
pub mod input;
mod jsonl;
#[cfg(test)]
mod proptests;
mod redact;
mod report;
pub mod sinks;
#[cfg(test)]
mod tests;

pub use batch::full_schema;
pub use budget::MemoryBudget;
use engine::{drive, Splitter};
pub(crate) use engine::{RowCheck, RowSource};
pub use input::SourceFailed;
pub use report::{BadRow, BadRowSink, ConvertError, ConvertReport, RowError, MAX_ERRORS_KEPT};
pub use sinks::{
    read_spool, writer_properties, Collect, LakeParts, LakeProjection, ParquetFile, PartFile,
    PartitionValue, Quarantine, Spool,
};

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

/// How a conversion runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvertOptions {
    /// Most rows per chunk, and so per Arrow batch.
    pub batch_rows: usize,
    /// Threads typing rows in parallel (reading the input and writing the output are one
    /// thread each). 1 runs everything on the calling thread.
    pub threads: usize,
    /// What the rows in flight may hold (the sinks keep the Parquet share themselves).
    pub memory: MemoryBudget,
}

impl ConvertOptions {
    /// Everything on the calling thread, within the default budget.
    pub fn sequential(batch_rows: usize) -> Self {
        ConvertOptions {
            batch_rows,
            threads: 1,
            memory: MemoryBudget::default(),
        }
    }
}

/// Converts `input` (plain, gzip or zstd; `name` is its key or file name) in the dataset's
/// format, sending batches of good rows to `sink` and bad rows to `bad_rows`, in file
/// order. The caller decides what a file with bad rows means.
///
/// The work is three stages: one thread splits the input into chunks of whole rows (with
/// line numbers), `options.threads` threads type the chunks' rows, and one thread puts the
/// typed chunks back in order and writes them. A dataset with a `unique_key` types on one
/// thread, since keys must be checked in file order, and so does an input of one chunk.
pub fn convert<R, S, B>(
    input: R,
    name: &str,
    dataset: &Dataset,
    lineage: &Lineage,
    options: ConvertOptions,
    sink: &mut S,
    bad_rows: &mut B,
) -> Result<ConvertReport, ConvertError>
where
    R: Read,
    S: BatchSink + Send,
    B: BadRowSink + Send,
{
    let (text, _) = input::open(input, name, dataset.policy.expansion)?;
    let splitter = match dataset.format {
        FileFormat::Csv => Splitter::Csv(csv::CsvInput::new(text, dataset)?),
        FileFormat::Jsonl => Splitter::Lines(jsonl::LineSplitter::new(text, dataset)),
    };
    drive(splitter, dataset, lineage, options, sink, bad_rows)
}

/// Converts inline records (JSON values) with the JSON lines path, so they are validated
/// exactly like a file. Line numbers in errors are record numbers.
pub fn convert_records<S: BatchSink + Send, B: BadRowSink + Send>(
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
    let splitter = Splitter::Lines(jsonl::LineSplitter::new(lines.as_slice(), dataset));
    let options = ConvertOptions::sequential(records.len().max(1));
    drive(splitter, dataset, lineage, options, sink, bad_rows)
}
