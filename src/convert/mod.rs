//! Conversion: a byte stream of CSV or JSON lines → validated, typed Arrow batches → sinks,
//! and bad rows → a quarantine.
//!
//! [`convert`] is the one code path used by the worker, `lakeworker convert` and the
//! benchmarks. It is synchronous and CPU-bound; the worker runs it on a blocking thread and
//! feeds it from the S3 stream, so memory stays within its [`MemoryBudget`] whatever the
//! file size, the row size and the partition count.
//!
//! - [`input`]: gzip/zstd detection, expansion limits, byte order mark, read-error classes.
//! - [`budget`]: the rows in flight between the stages, held within the budget.
//! - [`csv`], [`jsonl`]: row sources yielding raw cells.
//! - [`batch`]: good rows → Arrow batches (every dataset column plus lineage).
//! - [`sinks`]: lake parts (with rename/hash/drop), one Parquet file, the DynamoDB spool,
//!   the quarantine.
//!
//! Each row: the source checks its shape (fields, UTF-8, JSON, length), every column
//! parses its cell ([`crate::domain::schema::Column::parse`]), then `unique_key` is checked. A row
//! with any problem goes to the [`BadRowSink`] with all its problems; a good row goes to
//! the batch. The [`ConvertReport`] counts both. Rows are split, typed and written in
//! three stages so one file uses several cores (see [`convert`]).

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, Read};
use std::sync::{mpsc, Arc, Mutex};

use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use serde_json::Value;

use crate::domain::dataset::{Dataset, FileFormat};
use crate::domain::records;
use crate::domain::schema::{Parsed, RawCell};

pub mod batch;
mod budget;
mod csv;
pub mod input;
mod jsonl;
#[cfg(test)]
mod proptests;
mod redact;
pub mod sinks;
#[cfg(test)]
mod tests;

pub use batch::full_schema;
use budget::InFlight;
pub use budget::MemoryBudget;
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
    /// `max_row_bytes`, `max_columns` (a JSON object with too many keys), and for datasets
    /// with a `records_table` `dynamodb_number`, `dynamodb_key`, `dynamodb_item_size`.
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
    /// The row as it appeared in the input (at most `max_row_bytes`); in a dataset with
    /// `pii` columns, re-rendered with their values replaced, or `None` when the row
    /// cannot be split into its columns (see [`redact`]).
    pub raw: Option<&'a [u8]>,
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
    /// The file's structure is wrong (or it breaks a limit, such as a compressed stream
    /// expanding too far), so no row can be trusted. Not worth a retry: the file is
    /// rejected.
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
/// thread, since keys must be checked in file order.
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
        FileFormat::Csv => Splitter::Csv(Box::new(csv::CsvSplitter::new(text, dataset)?)),
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

/// The first stage: whole rows, in file order.
enum Splitter<R: BufRead> {
    Csv(Box<csv::CsvSplitter<R>>),
    Lines(jsonl::LineSplitter<R>),
}

/// A chunk of whole rows.
enum Chunk {
    Csv(csv::CsvChunk),
    Lines(jsonl::LineChunk),
}

impl Chunk {
    /// What it counts in the rows in flight until typed: its allocated bytes twice, for
    /// itself and for the batch it becomes.
    fn weight(&self) -> u64 {
        let allocated = match self {
            Chunk::Csv(c) => c.allocated(),
            Chunk::Lines(l) => l.allocated(),
        };
        2 * allocated as u64
    }
}

impl<R: BufRead> Splitter<R> {
    /// The next chunk: at most `rows` rows, closed once it holds `bytes`.
    fn next_chunk(&mut self, rows: usize, bytes: usize) -> Result<Option<Chunk>, ConvertError> {
        Ok(match self {
            Splitter::Csv(s) => s.next_chunk(rows, bytes)?.map(Chunk::Csv),
            Splitter::Lines(s) => s.next_chunk(rows, bytes)?.map(Chunk::Lines),
        })
    }

    fn header(&self) -> Option<Arc<csv::HeaderMap>> {
        match self {
            Splitter::Csv(s) => Some(s.header()),
            Splitter::Lines(_) => None,
        }
    }
}

/// What the typing stage needs besides the chunk.
struct Typing<'a> {
    dataset: &'a Dataset,
    lineage: &'a Lineage,
    header: Option<Arc<csv::HeaderMap>>,
    /// Whether bad rows' raw text must be redacted.
    pii: bool,
}

/// A bad row that can travel between threads.
struct OwnedBadRow {
    line: u64,
    byte_offset: Option<u64>,
    raw: Option<Vec<u8>>,
    errors: Vec<RowError>,
}

/// One chunk typed: a batch of its good rows, its bad rows, and how many rows it had.
struct Typed {
    batch: Option<RecordBatch>,
    bad: Vec<OwnedBadRow>,
    rows_in: u64,
}

impl Typed {
    /// Bytes it holds until written: the batch's buffers and the bad rows.
    fn weight(&self) -> u64 {
        let batch = self
            .batch
            .as_ref()
            .map_or(0, RecordBatch::get_array_memory_size);
        let bad: usize = self
            .bad
            .iter()
            .map(|row| {
                let reasons: usize = row.errors.iter().map(|e| e.reason.capacity()).sum();
                size_of::<OwnedBadRow>()
                    + row.raw.as_ref().map_or(0, Vec::capacity)
                    + row.errors.capacity() * size_of::<RowError>()
                    + reasons
            })
            .sum();
        (batch + bad) as u64
    }
}

impl Typing<'_> {
    /// The second stage, for one chunk. `seen_keys` is the file's `unique_key` state.
    fn chunk(
        &self,
        chunk: &Chunk,
        seen_keys: Option<&mut HashMap<String, u64>>,
    ) -> Result<Typed, ConvertError> {
        match (chunk, &self.header) {
            (Chunk::Csv(c), Some(header)) => self.rows(
                csv::CsvChunkRows::new(c, header, self.dataset),
                c.len(),
                seen_keys,
            ),
            (Chunk::Lines(l), _) => self.rows(
                jsonl::JsonChunkRows::new(l, self.dataset),
                l.len(),
                seen_keys,
            ),
            (Chunk::Csv(_), None) => {
                Err(ConvertError::Write("a CSV chunk without a header".into()))
            }
        }
    }

    fn rows<S: RowSource>(
        &self,
        mut rows: S,
        capacity: usize,
        mut seen_keys: Option<&mut HashMap<String, u64>>,
    ) -> Result<Typed, ConvertError> {
        let dataset = self.dataset;
        let mut builder = batch::BatchBuilder::new(dataset, self.lineage, capacity);
        let mut parsed = vec![Parsed::Null; dataset.columns.len()];
        let mut typed = Typed {
            batch: None,
            bad: Vec::new(),
            rows_in: 0,
        };
        let mut errors: Vec<RowError> = Vec::new();
        while let Some(check) = rows.next_row()? {
            typed.rows_in += 1;
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
                        if let Err(e) = column.parse_into(rows.cell(i), &mut parsed[i]) {
                            errors.push(RowError {
                                line,
                                column: Some(column.name.clone()),
                                rule: e.rule(),
                                reason: e.to_string(),
                            });
                        }
                    }
                    // DynamoDB's limits, once the cells are typed: such a row is bad before
                    // anything is published.
                    if let (true, Some(target)) = (errors.is_empty(), &dataset.records) {
                        let problems =
                            records::item_problems(dataset, target.key_index, &parsed, |i| {
                                rows.cell(i)
                            });
                        errors.extend(problems.into_iter().map(|p| RowError {
                            line,
                            column: p.column.map(|i| dataset.columns[i].name.clone()),
                            rule: p.rule,
                            reason: p.reason,
                        }));
                    }
                    if let (true, Some(seen)) = (errors.is_empty(), seen_keys.as_deref_mut()) {
                        if let Some(first) = check_unique(&rows, dataset, seen, line) {
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
            if errors.is_empty() {
                builder.append(&parsed, &rows);
            } else {
                let raw = if self.pii {
                    rows.redacted_raw(dataset)
                } else {
                    Some(rows.raw().to_vec())
                };
                typed.bad.push(OwnedBadRow {
                    line,
                    byte_offset: rows.byte_offset(),
                    raw,
                    errors: std::mem::take(&mut errors),
                });
            }
        }
        if builder.len() > 0 {
            typed.batch = Some(builder.finish()?);
        }
        Ok(typed)
    }
}

/// The third stage: typed chunks, written in file order.
struct Writer<'s, S, B> {
    sink: &'s mut S,
    bad_rows: &'s mut B,
    report: ConvertReport,
    next: u64,
    /// Typed chunks that came early, with their weight in the rows in flight.
    waiting: BTreeMap<u64, (Typed, u64)>,
    /// Where written chunks free their weight, when the stages run on several threads.
    in_flight: Option<&'s InFlight>,
}

impl<'s, S: BatchSink, B: BadRowSink> Writer<'s, S, B> {
    fn new(sink: &'s mut S, bad_rows: &'s mut B, in_flight: Option<&'s InFlight>) -> Self {
        Writer {
            sink,
            bad_rows,
            report: ConvertReport::default(),
            next: 0,
            waiting: BTreeMap::new(),
            in_flight,
        }
    }

    /// Takes chunk `seq` (weighing `weight` in the rows in flight); writes every chunk that
    /// is next in order.
    fn accept(&mut self, seq: u64, typed: Typed, weight: u64) -> Result<(), ConvertError> {
        self.waiting.insert(seq, (typed, weight));
        while let Some((typed, weight)) = self.waiting.remove(&self.next) {
            self.next += 1;
            self.report.rows_in += typed.rows_in;
            for bad in &typed.bad {
                self.report.reject(&bad.errors);
                self.bad_rows.bad_row(&BadRow {
                    line: bad.line,
                    byte_offset: bad.byte_offset,
                    raw: bad.raw.as_deref(),
                    errors: &bad.errors,
                })?;
            }
            if let Some(batch) = typed.batch {
                self.report.rows_written += batch.num_rows() as u64;
                self.sink.write(&batch)?;
            }
            if let Some(in_flight) = self.in_flight {
                in_flight.release(weight);
            }
        }
        Ok(())
    }
}

/// Closes the rows in flight when dropped (always, or only while panicking): a later stage
/// is gone, so the splitter must not wait for room that will never be freed.
struct CloseOnDrop<'a> {
    in_flight: &'a InFlight,
    always: bool,
}

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        if self.always || std::thread::panicking() {
            self.in_flight.close();
        }
    }
}

/// Runs the three stages, on one thread or on several, within `options.memory`: chunks
/// close at `batch_rows` rows or the budget's chunk size, and on several threads the
/// splitter waits while the rows in flight fill their share (see [`MemoryBudget`]).
fn drive<R, S, B>(
    mut splitter: Splitter<R>,
    dataset: &Dataset,
    lineage: &Lineage,
    options: ConvertOptions,
    sink: &mut S,
    bad_rows: &mut B,
) -> Result<ConvertReport, ConvertError>
where
    R: BufRead,
    S: BatchSink + Send,
    B: BadRowSink + Send,
{
    let typing = Typing {
        dataset,
        lineage,
        header: splitter.header(),
        pii: redact::has_pii(dataset),
    };
    let rows = options.batch_rows.max(1);
    let threads = if dataset.policy.unique_key.is_empty() {
        options.threads.max(1)
    } else {
        1
    };
    let chunk_bytes = options.memory.chunk_bytes(dataset.policy.max_row_bytes);
    if threads == 1 {
        let mut seen = HashMap::new();
        let mut writer = Writer::new(sink, bad_rows, None);
        let mut seq = 0;
        while let Some(chunk) = splitter.next_chunk(rows, chunk_bytes)? {
            let keys = (!dataset.policy.unique_key.is_empty()).then_some(&mut seen);
            writer.accept(seq, typing.chunk(&chunk, keys)?, 0)?;
            seq += 1;
        }
        return Ok(writer.report);
    }

    let in_flight = InFlight::new(options.memory.rows_in_flight());
    std::thread::scope(|scope| {
        // Chunks carry their weight in the rows in flight; the channels bound their count.
        let (work, chunks) = mpsc::sync_channel::<(u64, Chunk, u64)>(threads * 2);
        let (done, results) =
            mpsc::sync_channel::<Result<(u64, Typed, u64), ConvertError>>(threads * 2);
        // Shared by the typing threads; it is dropped with the last of them, which makes
        // the splitter's next send fail if they all stop early.
        let chunks = Arc::new(Mutex::new(chunks));
        for _ in 0..threads {
            let (chunks, done, typing) = (chunks.clone(), done.clone(), &typing);
            let in_flight = &in_flight;
            scope.spawn(move || {
                let _closes = CloseOnDrop {
                    in_flight,
                    always: false,
                };
                loop {
                    let next = match chunks.lock() {
                        Ok(receiver) => receiver.recv(),
                        Err(_) => break,
                    };
                    let Ok((seq, chunk, weight)) = next else {
                        break;
                    };
                    let typed = typing.chunk(&chunk, None);
                    drop(chunk);
                    let typed = typed.map(|typed| {
                        let typed_weight = typed.weight();
                        in_flight.exchange(weight, typed_weight);
                        (seq, typed, typed_weight)
                    });
                    if typed.is_err() {
                        in_flight.release(weight);
                    }
                    if done.send(typed).is_err() {
                        break;
                    }
                }
            });
        }
        drop((chunks, done));
        let in_flight = &in_flight;
        let writer = scope.spawn(move || {
            let _closes = CloseOnDrop {
                in_flight,
                always: true,
            };
            let mut writer = Writer::new(sink, bad_rows, Some(in_flight));
            for result in results {
                let (seq, typed, weight) = result?;
                writer.accept(seq, typed, weight)?;
            }
            Ok::<_, ConvertError>(writer.report)
        });
        let mut split = Ok(());
        let mut seq = 0;
        loop {
            match splitter.next_chunk(rows, chunk_bytes) {
                Ok(Some(chunk)) => {
                    let weight = chunk.weight();
                    // Waits for room; refused once a later stage has stopped.
                    if !in_flight.admit(weight) || work.send((seq, chunk, weight)).is_err() {
                        break; // a later stage failed; its error is reported below
                    }
                    seq += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    split = Err(e);
                    break;
                }
            }
        }
        drop(work);
        let written = writer
            .join()
            .map_err(|_| ConvertError::Write("the writing thread panicked".into()))?;
        split.and(written)
    })
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

/// Rows of a chunk, one at a time, with their cells looked up by dataset column index.
trait RowSource {
    /// Advances to the next row.
    fn next_row(&mut self) -> Result<Option<RowCheck>, ConvertError>;
    /// The current row's line number.
    fn line(&self) -> u64;
    fn byte_offset(&self) -> Option<u64>;
    /// The current row as it appeared in the input (at most `max_row_bytes`).
    fn raw(&self) -> &[u8];
    /// The current row with the values of `pii` columns replaced by their stand-ins, or
    /// `None` when it cannot be split into its columns with certainty.
    fn redacted_raw(&self, dataset: &Dataset) -> Option<Vec<u8>>;
    /// The current row's cell for dataset column `column`.
    fn cell(&self, column: usize) -> RawCell<'_>;
    /// Undeclared fields of the current row as a JSON object (`extra_columns = "keep"`).
    fn extra(&self) -> Option<String>;
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
