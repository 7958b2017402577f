//! Conversion: a byte stream of CSV or JSON lines → validated, typed Arrow batches → sinks.
//!
//! [`convert`] is the one code path used by the worker, `lakeworker convert` and the
//! benchmarks. It is synchronous and CPU-bound; the worker runs it on a blocking thread and
//! feeds it from the S3 stream through [`crate::aws::s3::ChannelReader`], so memory stays
//! bounded by one batch per open partition, whatever the file size.
//!
//! Rows flow: a [`RowSource`] (CSV or JSON lines) yields raw cells, each column parses its
//! cell ([`crate::schema::Column::parse`]), good rows are appended to a [`BatchBuilder`]
//! and every full batch goes to a [`BatchSink`]: Parquet parts per partition
//! ([`LakeParts`]), one Parquet file ([`ParquetFile`]) or an Arrow spool of typed rows for
//! DynamoDB ([`Spool`]). Bad rows are counted and described in the [`ConvertReport`].

use std::collections::{btree_map, BTreeMap};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Date32Array, Date32Builder, Float64Builder,
    Int64Builder, StringArray, StringBuilder, TimestampMicrosecondArray,
    TimestampMicrosecondBuilder, UInt32Array,
};
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::ZstdLevel;
use parquet::file::properties::WriterProperties;
use serde_json::Value;

use crate::config::{Compression, INGESTED_AT_COLUMN, SOURCE_COLUMN};
use crate::datasets::{Dataset, FileFormat, Partition};
use crate::schema::{arrow_field, timestamp_type, Column, ColumnType, Parsed, RawCell, UTC};

/// How many row errors a report describes in full; the rest are only counted.
pub const MAX_ERRORS_KEPT: usize = 100;

/// Most partitions one file may write; each open partition holds a writer and a buffer.
pub const MAX_PARTITIONS_PER_FILE: usize = 1000;

const MICROS_PER_DAY: i64 = 86_400_000_000;

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

/// One refused row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RowError {
    /// 1-based line (CSV: where the record starts) or record number (inline records).
    pub line: u64,
    pub column: Option<String>,
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

/// Counts and errors of one conversion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConvertReport {
    pub rows_in: u64,
    pub rows_written: u64,
    pub rows_rejected: u64,
    /// The first [`MAX_ERRORS_KEPT`] cell or row errors.
    pub errors: Vec<RowError>,
}

impl ConvertReport {
    fn reject(&mut self, line: u64, column: Option<&str>, reason: String) {
        if self.errors.len() < MAX_ERRORS_KEPT {
            self.errors.push(RowError {
                line,
                column: column.map(str::to_owned),
                reason,
            });
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
        let more = self.rows_rejected.saturating_sub(shown.len() as u64);
        if more > 0 {
            format!("{} (and {more} more rejected rows)", shown.join("; "))
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

/// Receives validated batches with every dataset column plus the lineage columns.
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

/// Converts `input` in the dataset's format, sending batches of up to `batch_rows` rows to
/// `sink`. Bad rows are skipped and described in the report; the caller decides what a
/// file with bad rows means.
pub fn convert<R: Read, S: BatchSink>(
    input: R,
    dataset: &Dataset,
    lineage: &Lineage,
    batch_rows: usize,
    sink: &mut S,
) -> Result<ConvertReport, ConvertError> {
    let input = skip_utf8_bom(input).map_err(ConvertError::Read)?;
    let input = BufReader::with_capacity(256 * 1024, input);
    match dataset.format {
        FileFormat::Csv => run(
            CsvRows::new(input, dataset)?,
            dataset,
            lineage,
            batch_rows,
            sink,
        ),
        FileFormat::Jsonl => run(
            JsonRows::new(input, dataset),
            dataset,
            lineage,
            batch_rows,
            sink,
        ),
    }
}

/// Converts inline records (JSON values) with the JSON lines path, so they are validated
/// exactly like a file. Line numbers in errors are record numbers.
pub fn convert_records<S: BatchSink>(
    records: &[Value],
    dataset: &Dataset,
    lineage: &Lineage,
    sink: &mut S,
) -> Result<ConvertReport, ConvertError> {
    let mut lines = Vec::new();
    for record in records {
        // A record is one line: serde_json never writes a raw newline inside a value.
        serde_json::to_writer(&mut lines, record)
            .map_err(|e| ConvertError::Malformed(e.to_string()))?;
        lines.push(b'\n');
    }
    let rows = JsonRows::new(lines.as_slice(), dataset);
    run(rows, dataset, lineage, records.len().max(1), sink)
}

fn run<S: RowSource, K: BatchSink>(
    mut rows: S,
    dataset: &Dataset,
    lineage: &Lineage,
    batch_rows: usize,
    sink: &mut K,
) -> Result<ConvertReport, ConvertError> {
    let mut report = ConvertReport::default();
    let mut builder = BatchBuilder::new(dataset, lineage, batch_rows);
    let mut parsed = vec![Parsed::Null; dataset.columns.len()];
    while let Some(check) = rows.next_row()? {
        report.rows_in += 1;
        if let RowCheck::Bad(reason) = check {
            report.rows_rejected += 1;
            report.reject(rows.line(), None, reason);
            continue;
        }
        let mut good = true;
        for (i, column) in dataset.columns.iter().enumerate() {
            match column.parse(rows.cell(i)) {
                Ok(value) => parsed[i] = value,
                Err(e) => {
                    report.reject(rows.line(), Some(&column.name), e.to_string());
                    good = false;
                }
            }
        }
        if !good {
            report.rows_rejected += 1;
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

/// Drops a leading UTF-8 byte order mark, however the first bytes arrive.
fn skip_utf8_bom<R: Read>(mut input: R) -> io::Result<impl Read> {
    let mut head = [0u8; 3];
    let mut filled = 0;
    while filled < head.len() {
        match input.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let start = if head[..filled] == [0xEF, 0xBB, 0xBF] {
        3
    } else {
        0
    };
    Ok(io::Cursor::new(head[start..filled].to_vec()).chain(input))
}

// ----- row sources -----------------------------------------------------------------------

/// Whether the source itself could read the row.
enum RowCheck {
    Ok,
    Bad(String),
}

/// Rows of a file, one at a time, with their cells looked up by dataset column index.
trait RowSource {
    /// Advances to the next row. `Err` only for failures that make the rest unreadable.
    fn next_row(&mut self) -> Result<Option<RowCheck>, ConvertError>;
    /// The current row's line number.
    fn line(&self) -> u64;
    /// The current row's cell for dataset column `column`.
    fn cell(&self, column: usize) -> RawCell<'_>;
}

/// CSV with a header row; columns are found by header name, in any order.
struct CsvRows<R: Read> {
    reader: csv::Reader<R>,
    record: csv::StringRecord,
    /// Dataset column index → field index in the file.
    fields: Vec<Option<usize>>,
    width: usize,
    line: u64,
}

impl<R: Read> CsvRows<R> {
    fn new(input: R, dataset: &Dataset) -> Result<Self, ConvertError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(input);
        let mut header = csv::ByteRecord::new();
        let has_header = reader.read_byte_record(&mut header).map_err(csv_error)?;
        let mut fields = vec![None; dataset.columns.len()];
        if has_header {
            let header = csv::StringRecord::from_byte_record(header).map_err(|e| {
                ConvertError::Malformed(format!("line 1: header is not UTF-8: {}", e.utf8_error()))
            })?;
            for (field, name) in header.iter().enumerate() {
                let Some(index) = dataset.column_index(name.trim()) else {
                    continue;
                };
                if fields[index].is_some() {
                    return Err(ConvertError::Malformed(format!(
                        "line 1: header names column {:?} twice",
                        name.trim()
                    )));
                }
                fields[index] = Some(field);
            }
            let missing: Vec<&str> = dataset
                .columns
                .iter()
                .zip(&fields)
                .filter(|(c, f)| c.required && f.is_none())
                .map(|(c, _)| c.name.as_str())
                .collect();
            if !missing.is_empty() {
                return Err(ConvertError::Malformed(format!(
                    "line 1: header lacks required column(s) {}; found {}",
                    missing.join(", "),
                    header.iter().collect::<Vec<_>>().join(",")
                )));
            }
            Ok(CsvRows {
                width: header.len(),
                reader,
                record: csv::StringRecord::new(),
                fields,
                line: 1,
            })
        } else {
            // An empty file has no rows; it needs no header.
            Ok(CsvRows {
                width: 0,
                reader,
                record: csv::StringRecord::new(),
                fields,
                line: 0,
            })
        }
    }
}

fn csv_error(e: csv::Error) -> ConvertError {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => ConvertError::Read(io),
        other => ConvertError::Malformed(format!("{other:?}")),
    }
}

impl<R: Read> RowSource for CsvRows<R> {
    fn next_row(&mut self) -> Result<Option<RowCheck>, ConvertError> {
        let mut bytes = std::mem::take(&mut self.record).into_byte_record();
        if !self
            .reader
            .read_byte_record(&mut bytes)
            .map_err(csv_error)?
        {
            return Ok(None);
        }
        self.line = bytes.position().map_or(self.line + 1, |p| p.line());
        let byte_offset = bytes.position().map_or(0, |p| p.byte());
        let field_count = bytes.len();
        let check = match csv::StringRecord::from_byte_record(bytes) {
            Ok(record) => {
                self.record = record;
                if field_count == self.width {
                    RowCheck::Ok
                } else {
                    RowCheck::Bad(format!(
                        "expected {} fields, found {field_count}",
                        self.width
                    ))
                }
            }
            Err(e) => {
                let reason = format!(
                    "field {} is not valid UTF-8 (row starts at byte {byte_offset})",
                    e.utf8_error().field() + 1
                );
                self.record = csv::StringRecord::from_byte_record_lossy(e.into_byte_record());
                RowCheck::Bad(reason)
            }
        };
        Ok(Some(check))
    }

    fn line(&self) -> u64 {
        self.line
    }

    fn cell(&self, column: usize) -> RawCell<'_> {
        match self.fields[column].and_then(|field| self.record.get(field)) {
            Some(text) => RawCell::Text(text),
            None => RawCell::Missing,
        }
    }
}

/// JSON lines: one object per line; blank lines are skipped.
struct JsonRows<'d, R: BufRead> {
    input: R,
    names: Vec<&'d str>,
    buffer: Vec<u8>,
    current: serde_json::Map<String, Value>,
    line: u64,
}

impl<'d, R: BufRead> JsonRows<'d, R> {
    fn new(input: R, dataset: &'d Dataset) -> Self {
        JsonRows {
            input,
            names: dataset.columns.iter().map(|c| c.name.as_str()).collect(),
            buffer: Vec::new(),
            current: serde_json::Map::new(),
            line: 0,
        }
    }
}

impl<R: BufRead> RowSource for JsonRows<'_, R> {
    fn next_row(&mut self) -> Result<Option<RowCheck>, ConvertError> {
        loop {
            self.buffer.clear();
            if self
                .input
                .read_until(b'\n', &mut self.buffer)
                .map_err(ConvertError::Read)?
                == 0
            {
                return Ok(None);
            }
            self.line += 1;
            let text = self.buffer.trim_ascii();
            if text.is_empty() {
                continue;
            }
            self.current.clear();
            let check = match serde_json::from_slice::<Value>(text) {
                Ok(Value::Object(map)) => {
                    self.current = map;
                    RowCheck::Ok
                }
                Ok(_) => RowCheck::Bad("line is not a JSON object".into()),
                Err(e) => RowCheck::Bad(format!("line is not valid JSON: {e}")),
            };
            return Ok(Some(check));
        }
    }

    fn line(&self) -> u64 {
        self.line
    }

    fn cell(&self, column: usize) -> RawCell<'_> {
        match self.current.get(self.names[column]) {
            Some(value) => RawCell::Json(value),
            None => RawCell::Missing,
        }
    }
}

// ----- building batches ------------------------------------------------------------------

/// The schema of converted batches: the dataset's columns, then `_source` and `_ingested_at`.
pub fn full_schema(dataset: &Dataset) -> SchemaRef {
    let mut fields: Vec<Field> = dataset.columns.iter().map(arrow_field).collect();
    fields.push(Field::new(
        SOURCE_COLUMN,
        arrow::datatypes::DataType::Utf8,
        false,
    ));
    fields.push(Field::new(INGESTED_AT_COLUMN, timestamp_type(), false));
    Arc::new(Schema::new(fields))
}

enum ColumnBuilder {
    Str(StringBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl ColumnBuilder {
    fn new(column: &Column, capacity: usize) -> Self {
        match column.kind {
            ColumnType::String => {
                ColumnBuilder::Str(StringBuilder::with_capacity(capacity, capacity * 16))
            }
            ColumnType::Int => ColumnBuilder::Int(Int64Builder::with_capacity(capacity)),
            ColumnType::Float => ColumnBuilder::Float(Float64Builder::with_capacity(capacity)),
            ColumnType::Bool => ColumnBuilder::Bool(BooleanBuilder::with_capacity(capacity)),
            ColumnType::Date => ColumnBuilder::Date(Date32Builder::with_capacity(capacity)),
            ColumnType::Timestamp => ColumnBuilder::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone(UTC),
            ),
        }
    }

    /// Appends a parsed value; strings are read again from the raw cell.
    fn append(&mut self, value: Parsed, cell: RawCell<'_>) {
        match (self, value) {
            (ColumnBuilder::Str(b), Parsed::Str) => match cell {
                RawCell::Text(text) => b.append_value(text),
                RawCell::Json(Value::String(text)) => b.append_value(text),
                RawCell::Json(other) => b.append_value(other.to_string()),
                RawCell::Missing => b.append_null(),
            },
            (ColumnBuilder::Int(b), Parsed::Int(v)) => b.append_value(v),
            (ColumnBuilder::Float(b), Parsed::Float(v)) => b.append_value(v),
            (ColumnBuilder::Bool(b), Parsed::Bool(v)) => b.append_value(v),
            (ColumnBuilder::Date(b), Parsed::Date(v)) => b.append_value(v),
            (ColumnBuilder::Timestamp(b), Parsed::Timestamp(v)) => b.append_value(v),
            // Null, or (impossible by construction) a value of another type.
            (builder, _) => builder.append_null(),
        }
    }

    fn append_null(&mut self) {
        match self {
            ColumnBuilder::Str(b) => b.append_null(),
            ColumnBuilder::Int(b) => b.append_null(),
            ColumnBuilder::Float(b) => b.append_null(),
            ColumnBuilder::Bool(b) => b.append_null(),
            ColumnBuilder::Date(b) => b.append_null(),
            ColumnBuilder::Timestamp(b) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Str(b) => Arc::new(b.finish()),
            ColumnBuilder::Int(b) => Arc::new(b.finish()),
            ColumnBuilder::Float(b) => Arc::new(b.finish()),
            ColumnBuilder::Bool(b) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) => ArrayBuilder::finish(b),
        }
    }
}

/// Accumulates good rows into Arrow arrays.
struct BatchBuilder {
    schema: SchemaRef,
    columns: Vec<ColumnBuilder>,
    rows: usize,
    source: String,
    ingested_at: i64,
}

impl BatchBuilder {
    fn new(dataset: &Dataset, lineage: &Lineage, capacity: usize) -> Self {
        let capacity = capacity.min(64 * 1024);
        BatchBuilder {
            schema: full_schema(dataset),
            columns: dataset
                .columns
                .iter()
                .map(|c| ColumnBuilder::new(c, capacity))
                .collect(),
            rows: 0,
            source: lineage.source.clone(),
            ingested_at: lineage.ingested_at,
        }
    }

    fn len(&self) -> usize {
        self.rows
    }

    fn append<S: RowSource>(&mut self, parsed: &[Parsed], row: &S) {
        for (i, (builder, value)) in self.columns.iter_mut().zip(parsed).enumerate() {
            let cell = if *value == Parsed::Str {
                row.cell(i)
            } else {
                RawCell::Missing
            };
            builder.append(*value, cell);
        }
        self.rows += 1;
    }

    fn finish(&mut self) -> Result<RecordBatch, ConvertError> {
        let rows = std::mem::take(&mut self.rows);
        let mut arrays: Vec<ArrayRef> =
            self.columns.iter_mut().map(ColumnBuilder::finish).collect();
        arrays.push(Arc::new(StringArray::new_repeated(&self.source, rows)));
        arrays.push(Arc::new(
            TimestampMicrosecondArray::from_iter_values(std::iter::repeat_n(
                self.ingested_at,
                rows,
            ))
            .with_timezone(UTC),
        ));
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
    }
}

// ----- sinks -----------------------------------------------------------------------------

/// Parquet writer settings for the lake.
pub fn writer_properties(compression: Compression) -> WriterProperties {
    let codec = match compression {
        Compression::Zstd => parquet::basic::Compression::ZSTD(ZstdLevel::default()),
        Compression::Snappy => parquet::basic::Compression::SNAPPY,
        Compression::None => parquet::basic::Compression::UNCOMPRESSED,
    };
    WriterProperties::builder()
        .set_compression(codec)
        .set_created_by(concat!("lakeworker ", env!("CARGO_PKG_VERSION")).to_owned())
        .build()
}

/// One Parquet file with every column, for `lakeworker convert`.
pub struct ParquetFile {
    writer: ArrowWriter<BufWriter<File>>,
}

impl ParquetFile {
    pub fn create(
        path: &Path,
        schema: SchemaRef,
        props: WriterProperties,
    ) -> Result<Self, ConvertError> {
        let file = File::create(path)
            .map_err(|e| ConvertError::Write(format!("{}: {e}", path.display())))?;
        Ok(ParquetFile {
            writer: ArrowWriter::try_new(BufWriter::new(file), schema, Some(props))?,
        })
    }

    pub fn close(self) -> Result<(), ConvertError> {
        self.writer.close()?;
        Ok(())
    }
}

impl BatchSink for ParquetFile {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ConvertError> {
        Ok(self.writer.write(batch)?)
    }
}

/// A Hive partition value: a date in days since the epoch, or null.
pub type PartitionValue = Option<i32>;

/// A finished local Parquet part, ready to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartFile {
    pub partition: PartitionValue,
    pub path: PathBuf,
    pub rows: u64,
}

/// Lake output: one Parquet file per partition value, in a scratch directory. A date
/// partition column is dropped from the files because it lives in the path.
pub struct LakeParts {
    dir: PathBuf,
    partition: Partition,
    ingest_date: i32,
    /// Columns of the full batch that go into lake files.
    projection: Vec<usize>,
    schema: SchemaRef,
    props: WriterProperties,
    parts: BTreeMap<PartitionValue, (ArrowWriter<BufWriter<File>>, PathBuf, u64)>,
}

impl LakeParts {
    pub fn new(dir: &Path, dataset: &Dataset, lineage: &Lineage, props: WriterProperties) -> Self {
        let full = full_schema(dataset);
        let dropped = dataset.path_only_column();
        let projection: Vec<usize> = (0..full.fields().len())
            .filter(|i| Some(*i) != dropped)
            .collect();
        let schema = Arc::new(
            full.project(&projection)
                .expect("projection indices come from the schema"),
        );
        LakeParts {
            dir: dir.to_owned(),
            partition: dataset.partition.clone(),
            ingest_date: lineage.ingest_date,
            projection,
            schema,
            props,
            parts: BTreeMap::new(),
        }
    }

    /// Closes every part and returns them in partition order.
    pub fn finish(self) -> Result<Vec<PartFile>, ConvertError> {
        let mut done = Vec::with_capacity(self.parts.len());
        for (partition, (writer, path, rows)) in self.parts {
            writer.close()?;
            done.push(PartFile {
                partition,
                path,
                rows,
            });
        }
        Ok(done)
    }

    fn partition_of_rows(&self, batch: &RecordBatch) -> Vec<PartitionValue> {
        match self.partition {
            Partition::IngestDate => vec![Some(self.ingest_date); batch.num_rows()],
            Partition::DateColumn { index } => batch
                .column(index)
                .as_any()
                .downcast_ref::<Date32Array>()
                .map(|a| a.iter().collect())
                .unwrap_or_default(),
            Partition::TimestampColumn { index } => batch
                .column(index)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .map(|a| {
                    a.iter()
                        .map(|t| t.map(|t| t.div_euclid(MICROS_PER_DAY) as i32))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    fn write_part(
        &mut self,
        partition: PartitionValue,
        batch: &RecordBatch,
    ) -> Result<(), ConvertError> {
        let projected = batch.project(&self.projection)?;
        let next = self.parts.len();
        let entry = match self.parts.entry(partition) {
            btree_map::Entry::Occupied(e) => e.into_mut(),
            btree_map::Entry::Vacant(e) => {
                if next >= MAX_PARTITIONS_PER_FILE {
                    return Err(ConvertError::Malformed(format!(
                        "file spans more than {MAX_PARTITIONS_PER_FILE} partitions"
                    )));
                }
                let path = self.dir.join(format!("part-{next:05}.parquet"));
                let file = File::create(&path)
                    .map_err(|e| ConvertError::Write(format!("{}: {e}", path.display())))?;
                let writer = ArrowWriter::try_new(
                    BufWriter::new(file),
                    self.schema.clone(),
                    Some(self.props.clone()),
                )?;
                e.insert((writer, path, 0))
            }
        };
        entry.0.write(&projected)?;
        entry.2 += projected.num_rows() as u64;
        Ok(())
    }
}

impl BatchSink for LakeParts {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ConvertError> {
        let partitions = self.partition_of_rows(batch);
        let first = partitions.first().copied().flatten();
        if partitions.iter().all(|p| *p == first) {
            return self.write_part(first, batch);
        }
        let mut groups: BTreeMap<PartitionValue, Vec<u32>> = BTreeMap::new();
        for (row, partition) in partitions.iter().enumerate() {
            groups.entry(*partition).or_default().push(row as u32);
        }
        for (partition, rows) in groups {
            let part = arrow::compute::take_record_batch(batch, &UInt32Array::from(rows))?;
            self.write_part(partition, &part)?;
        }
        Ok(())
    }
}

/// Typed rows kept on disk (Arrow IPC stream) for a second pass into DynamoDB, so the
/// table is written only after the whole file validated and the lake write succeeded.
pub struct Spool {
    writer: arrow::ipc::writer::StreamWriter<BufWriter<File>>,
    path: PathBuf,
}

impl Spool {
    pub fn create(path: &Path, schema: &Schema) -> Result<Self, ConvertError> {
        let file = File::create(path)
            .map_err(|e| ConvertError::Write(format!("{}: {e}", path.display())))?;
        Ok(Spool {
            writer: arrow::ipc::writer::StreamWriter::try_new(BufWriter::new(file), schema)?,
            path: path.to_owned(),
        })
    }

    pub fn finish(mut self) -> Result<PathBuf, ConvertError> {
        self.writer.finish()?;
        Ok(self.path)
    }
}

impl BatchSink for Spool {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ConvertError> {
        Ok(self.writer.write(batch)?)
    }
}

/// Reads a spool back, one batch at a time.
pub fn read_spool(
    path: &Path,
) -> Result<impl Iterator<Item = Result<RecordBatch, ArrowError>>, ConvertError> {
    let file =
        File::open(path).map_err(|e| ConvertError::Write(format!("{}: {e}", path.display())))?;
    Ok(arrow::ipc::reader::StreamReader::try_new(
        BufReader::new(file),
        None,
    )?)
}

/// Collects batches in memory (inline records are at most one SQS message).
#[derive(Default)]
pub struct Collect(pub Vec<RecordBatch>);

impl BatchSink for Collect {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ConvertError> {
        self.0.push(batch.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::compile_glob;
    use arrow::array::{Array, BooleanArray, Float64Array, Int64Array};
    use arrow::datatypes::DataType;

    pub(crate) fn dataset(format: FileFormat, partition: Partition) -> Dataset {
        let col = |name: &str, kind, required| Column {
            name: name.into(),
            kind,
            required,
            format: None,
        };
        Dataset {
            name: "users".into(),
            pattern: "users/**".into(),
            matcher: compile_glob("users/**").unwrap(),
            format,
            partition,
            columns: vec![
                col("user_id", ColumnType::String, true),
                col("age", ColumnType::Int, false),
                col("score", ColumnType::Float, false),
                col("active", ColumnType::Bool, false),
                col("signup_date", ColumnType::Date, false),
                col("seen_at", ColumnType::Timestamp, false),
            ],
            records: None,
        }
    }

    fn lineage() -> Lineage {
        Lineage {
            source: "s3://b/k".into(),
            ingested_at: 5,
            ingest_date: 19000,
        }
    }

    fn collect(input: &str, dataset: &Dataset) -> (ConvertReport, Vec<RecordBatch>) {
        let mut sink = Collect::default();
        let report = convert(input.as_bytes(), dataset, &lineage(), 2, &mut sink).unwrap();
        (report, sink.0)
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

    #[test]
    fn csv_columns_are_found_by_name_and_typed() {
        let d = dataset(FileFormat::Csv, Partition::IngestDate);
        let input = "\u{feff}active,user_id,age,score,signup_date,seen_at,unused\r\n\
                     yes,u1,30,1.5,2024-01-02,2024-01-02T03:04:05Z,x\r\n\
                     ,u2,,,,,\r\n\
                     false,\"u,3\n\"\"quoted\"\"\",7,2,2024-01-03,2024-01-03 00:00:00,y\r\n";
        let (report, batches) = collect(input, &d);
        assert_eq!(report.errors, vec![]);
        assert_eq!((report.rows_in, report.rows_written), (3, 3));
        assert_eq!(batches.len(), 2, "batch_rows = 2");
        let b = &batches[0];
        assert_eq!(b.schema().field(5).data_type(), &timestamp_type());
        assert_eq!(b.schema().field(6).name(), SOURCE_COLUMN);
        assert_eq!(
            strings(&batches, 0),
            [
                Some("u1".into()),
                Some("u2".into()),
                Some("u,3\n\"quoted\"".into())
            ]
        );
        let ages = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(ages.iter().collect::<Vec<_>>(), [Some(30), None]);
        let scores = b.column(2).as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!(scores.value(0), 1.5);
        let active = b.column(3).as_any().downcast_ref::<BooleanArray>().unwrap();
        assert_eq!(active.iter().collect::<Vec<_>>(), [Some(true), None]);
        let dates = b.column(4).as_any().downcast_ref::<Date32Array>().unwrap();
        assert_eq!(dates.value(0), 19724);
        let seen = b
            .column(5)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(seen.value(0), 1_704_164_645_000_000);
        assert_eq!(strings(&batches, 6), vec![Some("s3://b/k".to_owned()); 3]);
    }

    #[test]
    fn csv_row_errors_have_line_numbers() {
        let d = dataset(FileFormat::Csv, Partition::IngestDate);
        let input = "user_id,age\nu1,1\n,2\nu3,old\n\"u4\nstill u4\",x\nu5\nu6,6,extra\n";
        let (report, batches) = collect(input, &d);
        assert_eq!(
            (report.rows_in, report.rows_written, report.rows_rejected),
            (6, 1, 5)
        );
        let errors: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                "line 3, column user_id: required value is missing",
                "line 4, column age: \"old\" is not a 64-bit integer",
                "line 5, column age: \"x\" is not a 64-bit integer",
                "line 7: expected 2 fields, found 1",
                "line 8: expected 2 fields, found 3",
            ]
        );
        assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 1);
        assert!(report
            .error_summary(2)
            .ends_with("(and 3 more rejected rows)"));
    }

    #[test]
    fn csv_invalid_utf8_is_a_row_error() {
        let d = dataset(FileFormat::Csv, Partition::IngestDate);
        let mut input = b"user_id\nu1\nu\xff2\nu3\n".to_vec();
        let mut sink = Collect::default();
        let report = convert(input.as_slice(), &d, &lineage(), 10, &mut sink).unwrap();
        assert_eq!((report.rows_written, report.rows_rejected), (2, 1));
        assert_eq!(
            report.errors[0].to_string(),
            "line 3: field 1 is not valid UTF-8 (row starts at byte 11)"
        );
        input.clear();
    }

    #[test]
    fn csv_missing_required_column_rejects_the_file() {
        let d = dataset(FileFormat::Csv, Partition::IngestDate);
        let err = convert(
            "age\n1\n".as_bytes(),
            &d,
            &lineage(),
            10,
            &mut Collect::default(),
        )
        .unwrap_err();
        assert!(!err.is_transient());
        assert_eq!(
            err.to_string(),
            "line 1: header lacks required column(s) user_id; found age"
        );
    }

    #[test]
    fn empty_and_header_only_files_have_no_rows() {
        let d = dataset(FileFormat::Csv, Partition::IngestDate);
        for input in ["", "user_id,age\n", "\u{feff}"] {
            let (report, batches) = collect(input, &d);
            assert_eq!(report, ConvertReport::default(), "{input:?}");
            assert!(batches.is_empty());
        }
    }

    #[test]
    fn jsonl_rows() {
        let d = dataset(FileFormat::Jsonl, Partition::IngestDate);
        let input = "{\"user_id\": \"u1\", \"age\": 3, \"active\": true, \"extra\": 1}\n\
                     \n\
                     [1, 2]\n\
                     {\"user_id\": {\"nested\": [1]}, \"score\": \"2.5\"}\r\n\
                     {\"user_id\": \"u4\", \"age\": 1.5}\n\
                     {bad json\n";
        let (report, batches) = collect(input, &d);
        assert_eq!((report.rows_in, report.rows_written), (5, 2));
        let errors: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors[0], "line 3: line is not a JSON object");
        assert_eq!(
            errors[1],
            "line 5, column age: \"1.5\" is not a 64-bit integer"
        );
        assert!(
            errors[2].starts_with("line 6: line is not valid JSON"),
            "{errors:?}"
        );
        assert_eq!(
            strings(&batches, 0),
            [Some("u1".into()), Some("{\"nested\":[1]}".into())]
        );
    }

    #[test]
    fn inline_records_are_validated_like_files() {
        let d = dataset(FileFormat::Csv, Partition::IngestDate);
        let records = vec![
            serde_json::json!({"user_id": "a"}),
            serde_json::json!("x"),
            serde_json::json!({"age": 1}),
        ];
        let mut sink = Collect::default();
        let report = convert_records(&records, &d, &lineage(), &mut sink).unwrap();
        assert_eq!((report.rows_in, report.rows_written), (3, 1));
        assert_eq!(
            report.errors[0].to_string(),
            "line 2: line is not a JSON object"
        );
        assert_eq!(
            report.errors[1].to_string(),
            "line 3, column user_id: required value is missing"
        );
    }

    fn read_parquet(path: &Path) -> Vec<RecordBatch> {
        let file = File::open(path).unwrap();
        parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 1024)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn lake_parts_split_by_date_and_drop_the_path_column() {
        let d = dataset(FileFormat::Csv, Partition::DateColumn { index: 4 });
        let dir = tempfile::tempdir().unwrap();
        let mut parts = LakeParts::new(
            dir.path(),
            &d,
            &lineage(),
            writer_properties(Compression::Zstd),
        );
        let input =
            "user_id,signup_date\na,2024-01-02\nb,2024-01-01\nc,2024-01-02\nd,\ne,2024-01-02\n";
        let report = convert(input.as_bytes(), &d, &lineage(), 3, &mut parts).unwrap();
        assert_eq!(report.rows_written, 5);
        let done = parts.finish().unwrap();
        let summary: Vec<(PartitionValue, u64)> =
            done.iter().map(|p| (p.partition, p.rows)).collect();
        assert_eq!(summary, [(None, 1), (Some(19723), 1), (Some(19724), 3)]);
        let batches = read_parquet(&done[2].path);
        let schema = batches[0].schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "user_id",
                "age",
                "score",
                "active",
                "seen_at",
                SOURCE_COLUMN,
                INGESTED_AT_COLUMN
            ]
        );
        assert_eq!(
            strings(&batches, 0),
            [Some("a".into()), Some("c".into()), Some("e".into())]
        );
        assert_eq!(
            schema.field(4).data_type(),
            &DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some(UTC.into()))
        );
    }

    #[test]
    fn timestamp_partitions_keep_the_column() {
        let d = dataset(FileFormat::Jsonl, Partition::TimestampColumn { index: 5 });
        let dir = tempfile::tempdir().unwrap();
        let mut parts = LakeParts::new(
            dir.path(),
            &d,
            &lineage(),
            writer_properties(Compression::Snappy),
        );
        let input = "{\"user_id\":\"a\",\"seen_at\":\"1969-12-31T23:59:59Z\"}\n{\"user_id\":\"b\",\"seen_at\":\"1970-01-01T00:00:00Z\"}\n";
        convert(input.as_bytes(), &d, &lineage(), 10, &mut parts).unwrap();
        let done = parts.finish().unwrap();
        assert_eq!(
            done.iter().map(|p| p.partition).collect::<Vec<_>>(),
            [Some(-1), Some(0)]
        );
        assert_eq!(read_parquet(&done[0].path)[0].num_columns(), 8);
    }

    #[test]
    fn ingest_date_partition_is_one_part() {
        let d = dataset(FileFormat::Csv, Partition::IngestDate);
        let dir = tempfile::tempdir().unwrap();
        let mut parts = LakeParts::new(
            dir.path(),
            &d,
            &lineage(),
            writer_properties(Compression::None),
        );
        convert("user_id\na\nb\n".as_bytes(), &d, &lineage(), 1, &mut parts).unwrap();
        let done = parts.finish().unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!((done[0].partition, done[0].rows), (Some(19000), 2));
    }

    #[test]
    fn spool_round_trips() {
        let d = dataset(FileFormat::Csv, Partition::IngestDate);
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::create(&dir.path().join("s.arrow"), &full_schema(&d)).unwrap();
        convert(
            "user_id\na\nb\nc\n".as_bytes(),
            &d,
            &lineage(),
            2,
            &mut spool,
        )
        .unwrap();
        let path = spool.finish().unwrap();
        let batches: Vec<RecordBatch> = read_spool(&path)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            batches.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
            [2, 1]
        );
        assert_eq!(batches[0].column(0).len(), 2);
    }

    #[test]
    fn bom_split_across_reads_is_skipped() {
        struct OneByte<'a>(&'a [u8]);
        impl Read for OneByte<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() || buf.is_empty() {
                    return Ok(0);
                }
                buf[0] = self.0[0];
                self.0 = &self.0[1..];
                Ok(1)
            }
        }
        let d = dataset(FileFormat::Csv, Partition::IngestDate);
        let input = "\u{feff}user_id\nu1\n";
        let mut sink = Collect::default();
        let report = convert(OneByte(input.as_bytes()), &d, &lineage(), 10, &mut sink).unwrap();
        assert_eq!(report.rows_written, 1);
    }
}
