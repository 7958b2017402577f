//! Where converted batches and bad rows go: Parquet parts per partition for the lake
//! (after the lake transforms), one Parquet file for `lakeworker convert`, an Arrow spool
//! of clear typed rows for DynamoDB, and a JSON-lines quarantine of bad rows.

use std::collections::{btree_map, BTreeMap};
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Date32Array, StringArray, TimestampMicrosecondArray, UInt32Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use parquet::basic::ZstdLevel;
use parquet::file::properties::WriterProperties;

use super::batch::full_schema;
use super::encode::ParquetWriter;
use super::{BadRow, BadRowSink, BatchSink, ConvertError, Lineage};
use crate::config::{Compression, MemoryBudget, ParquetOptions, Secret, RESCUED_COLUMN};
use crate::domain::dataset::{Dataset, Partition, TableFormat, INGEST_DATE};
use crate::domain::records::value_text;
use crate::domain::schema::{pii_hash, ColumnType, LakeOutput};

/// Most partitions one file may write; each open partition holds a writer and a buffer.
pub const MAX_PARTITIONS_PER_FILE: usize = 1000;

const MICROS_PER_DAY: i64 = 86_400_000_000;

fn create(path: &Path) -> Result<File, ConvertError> {
    File::create(path).map_err(|e| ConvertError::Write(format!("{}: {e}", path.display())))
}

/// Parquet writer settings for the lake.
pub fn writer_properties(options: &ParquetOptions) -> WriterProperties {
    let codec = match options.compression {
        Compression::Zstd => parquet::basic::Compression::ZSTD(
            ZstdLevel::try_new(options.zstd_level).unwrap_or_default(),
        ),
        Compression::Snappy => parquet::basic::Compression::SNAPPY,
        Compression::None => parquet::basic::Compression::UNCOMPRESSED,
    };
    WriterProperties::builder()
        .set_compression(codec)
        .set_max_row_group_row_count(Some(options.row_group_size.max(1)))
        .set_created_by(concat!("lakeworker ", env!("CARGO_PKG_VERSION")).to_owned())
        .build()
}

/// One Parquet file with every column, for `lakeworker convert`. Its row group is cut
/// at the budget's Parquet share as well as at `row_group_size` rows.
pub struct ParquetFile {
    /// Opened at the first batch, with the dictionary settings tuned to it.
    writer: Option<ParquetWriter<BufWriter<File>>>,
    file: Option<(BufWriter<File>, SchemaRef, WriterProperties)>,
    row_group_memory: usize,
    /// Threads encoding a batch's columns.
    encoders: usize,
}

impl ParquetFile {
    pub fn create(
        path: &Path,
        schema: SchemaRef,
        props: WriterProperties,
        memory: MemoryBudget,
    ) -> Result<Self, ConvertError> {
        Ok(ParquetFile {
            writer: None,
            file: Some((BufWriter::new(create(path)?), schema, props)),
            row_group_memory: usize::try_from(memory.row_groups()).unwrap_or(usize::MAX),
            encoders: 1,
        })
    }

    /// Encodes a batch's columns on up to `threads` threads (1 at first).
    pub fn with_encoders(mut self, threads: usize) -> Self {
        self.encoders = threads.max(1);
        self
    }

    /// Bytes the row group being built holds (the Parquet writer's estimate).
    pub fn buffered_bytes(&self) -> usize {
        self.writer.as_ref().map_or(0, ParquetWriter::memory_size)
    }

    /// The writer, opened (with `first` tuning its dictionaries) if it is not yet.
    fn writer(
        &mut self,
        first: Option<&RecordBatch>,
    ) -> Result<&mut ParquetWriter<BufWriter<File>>, ConvertError> {
        if let Some((out, schema, props)) = self.file.take() {
            let props = match first {
                Some(batch) => super::dictionary::tune(props, batch),
                None => props,
            };
            self.writer = Some(ParquetWriter::try_new(out, schema, props, self.encoders)?);
        }
        self.writer
            .as_mut()
            .ok_or_else(|| ConvertError::Write("the Parquet writer failed to open".into()))
    }

    pub fn close(mut self) -> Result<(), ConvertError> {
        if self.file.is_some() {
            self.writer(None)?;
        }
        if let Some(writer) = self.writer.take() {
            writer.close()?;
        }
        Ok(())
    }
}

impl BatchSink for ParquetFile {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ConvertError> {
        let limit = self.row_group_memory;
        let writer = self.writer(Some(batch))?;
        let incoming = batch.get_array_memory_size();
        if writer.memory_size().saturating_add(incoming) > limit {
            writer.flush()?;
        }
        writer.write(batch)?;
        if writer.memory_size() > limit {
            writer.flush()?;
        }
        Ok(())
    }
}

/// How a full batch becomes a lake batch: the columns kept (not dropped, not the date
/// partition column that lives in the path), renamed and hashed as configured. For an
/// Iceberg table every field carries its Iceberg field id (`PARQUET:field_id`, numbered
/// in schema order from 1 for a new table, else the table's id of the name, see
/// [`Dataset::field_ids`] and [`ICEBERG_FIELD_ID`]), and a table partitioned by ingest
/// date gets a real `ingest_date` column. `_rescued` comes after the configured and
/// lineage columns, then the columns `on_new_columns = "add"` added, in the order they were
/// added: a table that gains a column (a dataset turning `rescue` on, a file bringing a new
/// one) gives it the next field id.
pub struct LakeProjection {
    sources: Vec<Source>,
    schema: SchemaRef,
    salt: String,
}

/// Where a lake column's values come from.
enum Source {
    /// A column of the full batch, and the column's type if its values are hashed.
    Batch(usize, Option<ColumnType>),
    /// The rows' ingest date.
    IngestDate,
}

/// The Arrow field metadata key the parquet crate writes as the Parquet field id.
pub const ICEBERG_FIELD_ID: &str = "PARQUET:field_id";

impl LakeProjection {
    pub fn new(dataset: &Dataset, salt: Option<&Secret>) -> Self {
        let full = full_schema(dataset);
        let path_only = dataset.path_only_column();
        let mut sources = Vec::new();
        let mut fields = Vec::new();
        let mut rescued = None;
        let first_added = dataset.columns.len() - dataset.added;
        for (index, field) in full.fields().iter().enumerate() {
            if Some(index) == path_only || (first_added..dataset.columns.len()).contains(&index) {
                continue;
            }
            let Some(column) = dataset.columns.get(index) else {
                if field.name() == RESCUED_COLUMN {
                    rescued = Some((index, field.as_ref().clone()));
                    continue;
                }
                // `_extra` and the lineage columns pass through.
                sources.push(Source::Batch(index, None));
                fields.push(field.as_ref().clone());
                continue;
            };
            match &column.lake {
                LakeOutput::Keep { name } => {
                    sources.push(Source::Batch(index, None));
                    fields.push(field.as_ref().clone().with_name(name));
                }
                LakeOutput::Hash { name } => {
                    sources.push(Source::Batch(index, Some(column.kind)));
                    fields.push(Field::new(name, DataType::Utf8, field.is_nullable()));
                }
                LakeOutput::Drop => {}
            }
        }
        if dataset.has_ingest_date_column() {
            sources.push(Source::IngestDate);
            fields.push(Field::new(INGEST_DATE, DataType::Date32, false));
        }
        if let Some((index, field)) = rescued {
            sources.push(Source::Batch(index, None));
            fields.push(field);
        }
        for index in first_added..dataset.columns.len() {
            sources.push(Source::Batch(index, None));
            fields.push(full.field(index).clone());
        }
        let iceberg = dataset.table == TableFormat::Iceberg;
        if iceberg {
            // The table's ids by name; a column it lacks takes the next free one.
            let ids = dataset.field_ids.as_deref();
            let mut next = ids.map_or(0, |ids| ids.last);
            fields = fields
                .into_iter()
                .enumerate()
                .map(|(i, field)| {
                    let id = match ids {
                        None => i as i32 + 1,
                        Some(ids) => ids.by_name.get(field.name()).copied().unwrap_or_else(|| {
                            next += 1;
                            next
                        }),
                    };
                    let id = id.to_string();
                    // Iceberg `timestamp` (UTC values, no zone in the type): the Glue
                    // catalog of iceberg-rust 0.10 cannot register `timestamptz` columns.
                    let field = match field.data_type() {
                        DataType::Timestamp(unit, Some(_)) => {
                            let kind = DataType::Timestamp(*unit, None);
                            field.with_data_type(kind)
                        }
                        _ => field,
                    };
                    field.with_metadata(std::collections::HashMap::from([(
                        ICEBERG_FIELD_ID.to_owned(),
                        id,
                    )]))
                })
                .collect();
        }
        LakeProjection {
            sources,
            schema: Arc::new(Schema::new(fields)),
            salt: salt.map(|s| s.expose().to_owned()).unwrap_or_default(),
        }
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The lake batch of `batch`, whose rows arrived on `ingest_date` (days since the epoch).
    pub fn apply(
        &self,
        batch: &RecordBatch,
        ingest_date: i32,
    ) -> Result<RecordBatch, ConvertError> {
        let columns: Vec<ArrayRef> = self
            .sources
            .iter()
            .zip(self.schema.fields())
            .map(|(source, field)| {
                let (index, hashed) = match source {
                    Source::Batch(index, hashed) => (*index, hashed),
                    Source::IngestDate => {
                        let dates = Date32Array::from_value(ingest_date, batch.num_rows());
                        return Ok(Arc::new(dates) as ArrayRef);
                    }
                };
                let column = batch.column(index);
                match hashed {
                    // The same microseconds, without the zone (see `new`).
                    None if column.data_type() != field.data_type() => {
                        arrow::compute::cast(column, field.data_type()).map_err(ConvertError::from)
                    }
                    None => Ok(column.clone()),
                    Some(kind) => Ok(Arc::new(self.hash(*kind, column.as_ref())) as ArrayRef),
                }
            })
            .collect::<Result<_, ConvertError>>()?;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    /// SHA-256 over the salt and the value's text, as 64 hex digits; nulls stay null.
    fn hash(&self, kind: ColumnType, array: &dyn Array) -> StringArray {
        (0..array.len())
            .map(|row| value_text(kind, array, row).map(|text| pii_hash(&self.salt, &text)))
            .collect()
    }
}

pub use crate::domain::lake::PartitionValue;

/// A finished local Parquet part, ready to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartFile {
    pub partition: PartitionValue,
    /// 0 for a partition's first part, then 1, 2, … as parts reach the target size.
    pub seq: u32,
    pub path: PathBuf,
    pub rows: u64,
}

/// The part of one partition being written.
struct OpenPart {
    writer: ParquetWriter<BufWriter<File>>,
    path: PathBuf,
    rows: u64,
}

/// One partition's parts: the one being written (if any), how many came before it, and
/// what the open part's row group held at the last look.
#[derive(Default)]
struct PartitionParts {
    open: Option<OpenPart>,
    closed: u32,
    buffered: usize,
}

impl PartitionParts {
    /// Closes the open part, if any, into `done`.
    fn close(
        &mut self,
        partition: PartitionValue,
        done: &mut Vec<PartFile>,
    ) -> Result<(), ConvertError> {
        if let Some(open) = self.open.take() {
            open.writer.close()?;
            done.push(PartFile {
                partition,
                seq: self.closed,
                path: open.path,
                rows: open.rows,
            });
            self.closed += 1;
        }
        Ok(())
    }

    /// Looks again at what the open row group holds; keeps `total` (the sum over every
    /// partition) in step.
    fn measure(&mut self, total: &mut usize) {
        let now = self.open.as_ref().map_or(0, |o| o.writer.memory_size());
        *total = total.saturating_sub(self.buffered) + now;
        self.buffered = now;
    }
}

/// Lake output: Parquet files per partition value, in a scratch directory; a partition
/// rolls over to a new file once its current one reaches `target_file_size`. A row group
/// ends at `row_group_size` rows, or when the row groups being built, over every open
/// partition, would hold more than the budget's Parquet share: then the largest is
/// flushed, so memory holds whatever the partition count.
pub struct LakeParts {
    dir: PathBuf,
    partition: Partition,
    ingest_date: i32,
    projection: LakeProjection,
    props: WriterProperties,
    /// Whether `props` were tuned to the first lake batch ([`super::dictionary::tune`]).
    tuned: bool,
    target_file_size: u64,
    /// Most bytes the row groups being built may hold, over every partition together.
    row_group_memory: usize,
    /// What they hold (the sum of the partitions' `buffered`).
    buffered: usize,
    partitions: BTreeMap<PartitionValue, PartitionParts>,
    done: Vec<PartFile>,
    files: usize,
    /// Threads encoding a batch's columns.
    encoders: usize,
}

impl LakeParts {
    pub fn new(
        dir: &Path,
        dataset: &Dataset,
        lineage: &Lineage,
        options: &ParquetOptions,
        salt: Option<&Secret>,
        memory: MemoryBudget,
    ) -> Self {
        LakeParts {
            dir: dir.to_owned(),
            partition: dataset.partition.clone(),
            ingest_date: lineage.ingest_date,
            projection: LakeProjection::new(dataset, salt),
            props: writer_properties(options),
            tuned: false,
            target_file_size: options.target_file_size,
            row_group_memory: usize::try_from(memory.row_groups()).unwrap_or(usize::MAX),
            buffered: 0,
            partitions: BTreeMap::new(),
            done: Vec::new(),
            files: 0,
            encoders: 1,
        }
    }

    /// Encodes a batch's columns on up to `threads` threads (1 at first).
    pub fn with_encoders(mut self, threads: usize) -> Self {
        self.encoders = threads.max(1);
        self
    }

    /// Bytes the row groups being built hold, over every open partition (the Parquet
    /// writer's estimate).
    pub fn buffered_bytes(&self) -> usize {
        self.partitions
            .values()
            .filter_map(|parts| parts.open.as_ref())
            .map(|open| open.writer.memory_size())
            .sum()
    }

    /// Closes every part and returns them in partition order, then part order.
    pub fn finish(mut self) -> Result<Vec<PartFile>, ConvertError> {
        for (partition, parts) in &mut self.partitions {
            parts.close(*partition, &mut self.done)?;
        }
        self.done.sort_by_key(|p| (p.partition, p.seq));
        Ok(self.done)
    }

    /// Flushes the largest row groups until those being built, and `incoming` more bytes,
    /// fit the Parquet share.
    fn keep_within_budget(&mut self, incoming: usize) -> Result<(), ConvertError> {
        while self.buffered.saturating_add(incoming) > self.row_group_memory {
            let largest = self
                .partitions
                .iter_mut()
                .filter(|(_, parts)| parts.buffered > 0)
                .max_by_key(|(_, parts)| parts.buffered);
            let Some((partition, parts)) = largest else {
                return Ok(());
            };
            if let Some(open) = &mut parts.open {
                open.writer.flush()?;
                if open.writer.bytes_written() as u64 >= self.target_file_size {
                    parts.close(*partition, &mut self.done)?;
                }
            }
            parts.measure(&mut self.buffered);
        }
        Ok(())
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
        let lake = self.projection.apply(batch, self.ingest_date)?;
        // Room first, so the share holds while the batch is encoded (its arrays are an
        // upper bound of what it adds), then a look at what it did add.
        self.keep_within_budget(lake.get_array_memory_size())?;
        let known = self.partitions.len();
        let parts = match self.partitions.entry(partition) {
            btree_map::Entry::Occupied(e) => e.into_mut(),
            btree_map::Entry::Vacant(_) if known >= MAX_PARTITIONS_PER_FILE => {
                return Err(ConvertError::Malformed(format!(
                    "the file spans more than {MAX_PARTITIONS_PER_FILE} partitions"
                )));
            }
            btree_map::Entry::Vacant(e) => e.insert(PartitionParts::default()),
        };
        let open = match &mut parts.open {
            Some(open) => open,
            None => {
                let path = self.dir.join(format!("part-{:05}.parquet", self.files));
                self.files += 1;
                let writer = ParquetWriter::try_new(
                    BufWriter::new(create(&path)?),
                    self.projection.schema(),
                    self.props.clone(),
                    self.encoders,
                )?;
                parts.open.insert(OpenPart {
                    writer,
                    path,
                    rows: 0,
                })
            }
        };
        open.writer.write(&lake)?;
        open.rows += lake.num_rows() as u64;
        // Only finished row groups count: the open one's size before compression says
        // little about its size on disk.
        if open.writer.bytes_written() as u64 >= self.target_file_size {
            parts.close(partition, &mut self.done)?;
        }
        parts.measure(&mut self.buffered);
        self.keep_within_budget(0)
    }
}

impl BatchSink for LakeParts {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ConvertError> {
        if !self.tuned {
            // The whole first batch, before it is split by partition.
            let lake = self.projection.apply(batch, self.ingest_date)?;
            self.props = super::dictionary::tune(self.props.clone(), &lake);
            self.tuned = true;
        }
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
        Ok(Spool {
            writer: arrow::ipc::writer::StreamWriter::try_new(
                BufWriter::new(create(path)?),
                schema,
            )?,
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

/// Bad rows as JSON lines: `{"line", "byte_offset", "raw", "errors": [{"line", "column",
/// "rule", "reason"}]}`, one per row, in file order; to a file, or to memory for inline
/// records. `raw` is null when a pii dataset's row cannot be redacted.
pub struct Quarantine<W: Write> {
    writer: W,
    rows: u64,
}

impl Quarantine<BufWriter<File>> {
    pub fn create(path: &Path) -> Result<Self, ConvertError> {
        Ok(Quarantine {
            writer: BufWriter::new(create(path)?),
            rows: 0,
        })
    }
}

impl Quarantine<Vec<u8>> {
    pub fn in_memory() -> Self {
        Quarantine {
            writer: Vec::new(),
            rows: 0,
        }
    }
}

impl<W: Write> Quarantine<W> {
    /// The rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Flushes and returns the writer.
    pub fn finish(mut self) -> Result<W, ConvertError> {
        self.writer
            .flush()
            .map_err(|e| ConvertError::Write(format!("quarantine: {e}")))?;
        Ok(self.writer)
    }
}

impl<W: Write> BadRowSink for Quarantine<W> {
    fn bad_row(&mut self, row: &BadRow<'_>) -> Result<(), ConvertError> {
        let raw = row.raw.map(|raw| {
            String::from_utf8_lossy(raw)
                .trim_end_matches(['\r', '\n'])
                .to_owned()
        });
        let record = serde_json::json!({
            "line": row.line,
            "byte_offset": row.byte_offset,
            "raw": raw,
            "errors": row.errors,
        });
        serde_json::to_writer(&mut self.writer, &record)
            .map_err(|e| ConvertError::Write(format!("quarantine: {e}")))?;
        self.writer
            .write_all(b"\n")
            .map_err(|e| ConvertError::Write(format!("quarantine: {e}")))?;
        self.rows += 1;
        Ok(())
    }
}
