//! Datasets: what a landing file is, found by a glob over its key.
//!
//! A [`Dataset`] is the validated form of a `[[datasets]]` config entry. [`Router`] picks the
//! dataset of an object key: the first dataset, in config order, whose glob matches.

use globset::GlobMatcher;

use crate::domain::schema::{Column, ColumnType};

/// The name of the partition column when partitioning by arrival date.
pub const INGEST_DATE: &str = "ingest_date";

/// The file format of a dataset's landing files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// Comma-separated values with a header row (RFC 4180 quoting).
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// How a dataset's rows are split into Hive partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partition {
    /// `ingest_date=YYYY-MM-DD`: the UTC date the object arrived (the S3 event time), so
    /// a retry on a later day still lands on the same key.
    IngestDate,
    /// A date column: `{column}=YYYY-MM-DD`. The column lives in the path only.
    DateColumn { index: usize },
    /// A timestamp column: `{column}_date=YYYY-MM-DD` (its UTC date). The full timestamp
    /// stays in the file, so no precision is lost.
    TimestampColumn { index: usize },
}

/// How CSV files of a dataset are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    pub delimiter: u8,
    /// `None` turns quoting off.
    pub quote: Option<u8>,
    /// `None` means quotes inside quoted fields are doubled (RFC 4180).
    pub escape: Option<u8>,
    pub header: Header,
    /// Lines skipped before the header (or the first row).
    pub skip_rows: u64,
    /// Lines starting with this byte are skipped.
    pub comment: Option<u8>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            delimiter: b',',
            quote: Some(b'"'),
            escape: None,
            header: Header::FirstRow,
            skip_rows: 0,
            comment: None,
        }
    }
}

/// Where a CSV file's column names come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Header {
    FirstRow,
    /// The file has no header row; these are its columns, in order.
    Names(Vec<String>),
}

/// What to do with columns (CSV) or keys (JSON lines) the dataset does not declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewColumns {
    Ignore,
    /// Kept as one JSON object per row in the `_extra` string column.
    Keep,
    /// Kept as raw text in the row's `_rescued` JSON column (column name → text).
    Rescue,
    /// A CSV header with unknown columns rejects the file; a JSON line with unknown keys is
    /// a bad row.
    Reject,
    /// The table grows each unknown column as a nullable string (recorded in the ledger,
    /// so every task and restart sees the same effective schema): see [`AddedColumn`].
    Add,
}

impl NewColumns {
    /// The config word.
    pub fn as_str(self) -> &'static str {
        match self {
            NewColumns::Ignore => "ignore",
            NewColumns::Keep => "keep",
            NewColumns::Rescue => "rescue",
            NewColumns::Reject => "reject",
            NewColumns::Add => "add",
        }
    }
}

/// A column a dataset with `on_new_columns = "add"` gained from a file: a nullable string
/// after the configured columns, in the order the ledger recorded them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedColumn {
    pub name: String,
    /// When it was added (RFC 3339, UTC).
    pub added_at: String,
    /// The `s3://` URI of the file that brought it.
    pub source: String,
}

/// What the ledger holds of a dataset's added columns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatasetColumns {
    pub added: Vec<AddedColumn>,
    /// How many of `added`, from the first, the Hive catalog has (its
    /// `ALTER TABLE ADD COLUMNS` ran).
    pub in_catalog: usize,
}

impl DatasetColumns {
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.added.iter().map(|c| c.name.as_str())
    }
}

/// An Iceberg table's field ids by column name, and the last id it assigned: the ids a
/// dataset's lake columns take, so a column keeps its id whatever the config does around
/// it (a column the table lacks takes the next free id, in lake column order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldIds {
    pub by_name: std::collections::HashMap<String, i32>,
    pub last: i32,
}

/// The longest name an added column may have.
pub const MAX_ADDED_NAME: usize = 128;

/// What a file with bad rows becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInvalid {
    /// Good rows go on; bad rows go to the quarantine (unless there are too many).
    QuarantineRows,
    /// Any bad row rejects the whole file.
    RejectFile,
    /// A row whose only bad cells are in optional, non-key columns is kept: those cells
    /// are null and their raw text and failed rule go to `_rescued`. Other bad rows are
    /// quarantined as with `QuarantineRows`.
    Rescue,
}

/// Validation and size limits of a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub on_invalid: OnInvalid,
    /// Above this share of bad rows, the whole file is rejected.
    pub max_invalid_fraction: f64,
    pub on_new_columns: NewColumns,
    /// Column indexes whose values together must be unique within a file (empty: no check).
    pub unique_key: Vec<usize>,
    /// Larger objects are rejected without being downloaded.
    pub max_object_bytes: u64,
    /// How far a compressed object may expand; past it the file is rejected.
    pub expansion: Expansion,
    /// A longer row (CSV record or JSON line) is a bad row; it is never held in memory.
    pub max_row_bytes: usize,
    /// A CSV header with more columns rejects the file; a CSV row with more fields, or a
    /// JSON object with more keys, is a bad row.
    pub max_columns: usize,
    /// Whether inline-records messages may name this dataset (`inline`). Only matters with
    /// a records table: without one, inline records are refused anyway.
    pub accepts_inline: bool,
}

impl Policy {
    /// Whether rows carry a `_rescued` column (new columns or bad cells rescued).
    pub fn rescues(&self) -> bool {
        self.on_new_columns == NewColumns::Rescue || self.on_invalid == OnInvalid::Rescue
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            on_invalid: OnInvalid::QuarantineRows,
            max_invalid_fraction: 0.1,
            on_new_columns: NewColumns::Ignore,
            unique_key: Vec::new(),
            max_object_bytes: 100 * 1024 * 1024 * 1024,
            expansion: Expansion::default(),
            max_row_bytes: 1024 * 1024,
            max_columns: 1000,
            accepts_inline: true,
        }
    }
}

/// Limits on the decompressed text of a gzip or zstd object, so that a small
/// "decompression bomb" is refused after a bounded amount of work instead of being
/// converted in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expansion {
    /// Most decompressed bytes of one object (`max_decompressed_bytes`).
    pub max_bytes: u64,
    /// Most decompressed bytes per compressed byte read so far (`max_compression_ratio`),
    /// once past `ratio_free_bytes`.
    pub max_ratio: u64,
    /// The first this many decompressed bytes may expand without limit, so a small file
    /// (whose ratio says little) never trips the ratio. Not a config key: 64 MiB.
    pub ratio_free_bytes: u64,
}

impl Default for Expansion {
    fn default() -> Self {
        Expansion {
            // As much text as the largest plain object (`max_object_bytes`) holds.
            max_bytes: 100 * 1024 * 1024 * 1024,
            // Three times the most compressible ordinary data measured (66: a CSV of
            // constant columns under zstd), a fifth of a gzip bomb's (1,030: zeros).
            max_ratio: 200,
            ratio_free_bytes: 64 << 20,
        }
    }
}

/// Where a user dataset's rows are upserted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordsTarget {
    pub table: String,
    /// Index into [`Dataset::columns`] of the hash key (a required string column).
    pub key_index: usize,
}

/// How a dataset's table is laid out in the lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TableFormat {
    /// Parquet under Hive partition folders, partitions registered in the catalog.
    #[default]
    Hive,
    /// An Apache Iceberg table in the Glue Data Catalog, committed in batched snapshots.
    Iceberg,
}

impl TableFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            TableFormat::Hive => "hive",
            TableFormat::Iceberg => "iceberg",
        }
    }
}

/// One dataset, validated.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    /// The glob text, for messages.
    pub pattern: String,
    pub matcher: GlobMatcher,
    pub format: FileFormat,
    pub partition: Partition,
    pub columns: Vec<Column>,
    pub records: Option<RecordsTarget>,
    pub csv: CsvOptions,
    pub policy: Policy,
    /// `table_format` (the dataset's, else `[lake]`'s).
    pub table: TableFormat,
    /// How many of `columns`, at their end, were added by `on_new_columns = "add"` rather
    /// than configured ([`Dataset::with_added`]).
    pub added: usize,
    /// For an Iceberg table, its field ids (from the table); `None`: numbered in lake
    /// column order from 1, as a new table numbers them.
    pub field_ids: Option<std::sync::Arc<FieldIds>>,
}

impl Dataset {
    /// The dataset with `added` columns (nullable strings) after its own; names it has
    /// already are skipped, so the result only grows.
    pub fn with_added<'a>(&self, added: impl IntoIterator<Item = &'a str>) -> Dataset {
        let mut wider = self.clone();
        for name in added {
            if wider.columns.iter().all(|c| c.name != name) {
                let mut column = Column::new(name, ColumnType::String, false);
                // Every text is kept: an empty cell is an empty string, as in `_rescued`.
                column.nulls.clear();
                wider.columns.push(column);
                wider.added += 1;
            }
        }
        wider
    }

    /// The columns added by `on_new_columns = "add"`, in order.
    pub fn added_columns(&self) -> &[Column] {
        &self.columns[self.columns.len() - self.added..]
    }

    /// Why a file's column `name` cannot become a column of the table, if it cannot: it
    /// must be a plain identifier (letters, digits, `_`, not first) that no column,
    /// lake name, partition or lineage column has already, in any case (Athena and Glue
    /// fold case).
    pub fn refuses_new_column(&self, name: &str) -> Option<String> {
        let plain = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric());
        if !plain || name.len() > MAX_ADDED_NAME {
            return Some(format!(
                "{name:?} is not a name a table column can take (letters, digits and _, not first; at most {MAX_ADDED_NAME}): declare it in the dataset, with a lake name"
            ));
        }
        let taken = self
            .columns
            .iter()
            .flat_map(|c| [Some(c.name.as_str()), c.lake.name()])
            .flatten()
            .map(str::to_owned)
            .chain([self.partition_name(), INGEST_DATE.to_owned()]);
        for other in taken {
            if other.eq_ignore_ascii_case(name) {
                return Some(format!(
                    "{name:?} would clash with the table's column {other:?} (Athena and Glue fold case)"
                ));
            }
        }
        None
    }

    /// The Hive partition key: `ingest_date`, the date column's name, or `{column}_date`.
    pub fn partition_name(&self) -> String {
        match self.partition {
            Partition::IngestDate => INGEST_DATE.to_owned(),
            Partition::DateColumn { index } => self.columns[index].name.clone(),
            Partition::TimestampColumn { index } => format!("{}_date", self.columns[index].name),
        }
    }

    /// The index of a column that lives only in the partition path, if any: a Hive date
    /// partition column. Iceberg keeps every column in its data files.
    pub fn path_only_column(&self) -> Option<usize> {
        match (self.table, &self.partition) {
            (TableFormat::Hive, Partition::DateColumn { index }) => Some(*index),
            _ => None,
        }
    }

    /// Whether the lake files carry an `ingest_date` column: Iceberg tables partitioned by
    /// ingest date (the partition source must be a real column there).
    pub fn has_ingest_date_column(&self) -> bool {
        self.table == TableFormat::Iceberg && self.partition == Partition::IngestDate
    }

    /// Whether a bad cell of column `index` is rescued (kept as null, its text in
    /// `_rescued`) rather than failing its row: only under `on_invalid = "rescue"`, and
    /// never for a required column, a `unique_key` or records key column, or the
    /// partition column (a null there would file the row under the wrong partition).
    pub fn rescues_bad_cells_of(&self, index: usize) -> bool {
        let partition = match self.partition {
            Partition::IngestDate => None,
            Partition::DateColumn { index } | Partition::TimestampColumn { index } => Some(index),
        };
        self.policy.on_invalid == OnInvalid::Rescue
            && !self.columns[index].required
            && !self.policy.unique_key.contains(&index)
            && self.records.as_ref().map(|r| r.key_index) != Some(index)
            && partition != Some(index)
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// One line for `check-config`.
    pub fn summary(&self) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                let required = if c.required { "!" } else { "" };
                format!("{}:{}{required}", c.name, c.kind.name())
            })
            .collect();
        let records = match &self.records {
            Some(target) => format!(
                ", records → DynamoDB {} (key {})",
                target.table, self.columns[target.key_index].name
            ),
            None => String::new(),
        };
        let inline = match (&self.records, self.policy.accepts_inline) {
            (Some(_), false) => ", inline records refused",
            _ => "",
        };
        format!(
            "{name}: {format:?} files matching {pattern:?}, partitioned by {partition}, columns [{columns}]{records}{inline}",
            name = self.name,
            format = self.format,
            pattern = self.pattern,
            partition = self.partition_name(),
            columns = columns.join(", "),
        )
    }
}

/// Finds the dataset of a landing key; knows the load history's table besides.
#[derive(Debug, Clone)]
pub struct Router {
    datasets: Vec<Dataset>,
    /// The load history ([`crate::domain::history`]), when kept: a table, not a route.
    history: Option<Dataset>,
}

impl Router {
    pub fn new(datasets: Vec<Dataset>) -> Self {
        Router {
            datasets,
            history: None,
        }
    }

    /// Keeps the load history in `table`.
    pub fn with_history(mut self, table: Dataset) -> Self {
        self.history = Some(table);
        self
    }

    /// The first dataset, in config order, whose glob matches the whole key.
    pub fn route(&self, key: &str) -> Option<&Dataset> {
        self.datasets.iter().find(|d| d.matcher.is_match(key))
    }

    /// A configured dataset (never the load history's table: no message or backfill may
    /// name it).
    pub fn by_name(&self, name: &str) -> Option<&Dataset> {
        self.datasets.iter().find(|d| d.name == name)
    }

    /// A table the worker writes: a configured dataset's or the load history's.
    pub fn table(&self, name: &str) -> Option<&Dataset> {
        self.tables().find(|d| d.name == name)
    }

    /// The configured datasets.
    pub fn datasets(&self) -> &[Dataset] {
        &self.datasets
    }

    /// The load history's table, when kept.
    pub fn history(&self) -> Option<&Dataset> {
        self.history.as_ref()
    }

    /// Every table the worker writes: the datasets', then the load history's.
    pub fn tables(&self) -> impl Iterator<Item = &Dataset> {
        self.datasets.iter().chain(&self.history)
    }
}

/// Compiles a dataset glob: `*` and `?` stay within one path segment, `**` crosses them.
pub fn compile_glob(pattern: &str) -> Result<GlobMatcher, globset::Error> {
    Ok(globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()?
        .compile_matcher())
}

/// Datasets for unit tests.
#[cfg(test)]
pub mod testing {
    use super::*;

    /// A dataset over `columns` with default CSV options and policy.
    pub fn dataset(format: FileFormat, partition: Partition, columns: Vec<Column>) -> Dataset {
        Dataset {
            name: "users".into(),
            pattern: "**".into(),
            matcher: compile_glob("**").unwrap(),
            format,
            partition,
            columns,
            records: None,
            csv: CsvOptions::default(),
            policy: Policy::default(),
            table: TableFormat::Hive,
            added: 0,
            field_ids: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset(name: &str, pattern: &str) -> Dataset {
        Dataset {
            name: name.into(),
            pattern: pattern.into(),
            matcher: compile_glob(pattern).unwrap(),
            format: FileFormat::Csv,
            partition: Partition::IngestDate,
            columns: vec![],
            records: None,
            csv: CsvOptions::default(),
            policy: Policy::default(),
            table: TableFormat::Hive,
            added: 0,
            field_ids: None,
        }
    }

    #[test]
    fn first_matching_glob_wins() {
        let router = Router::new(vec![
            dataset("vip", "users/vip/*.csv"),
            dataset("users", "users/**"),
            dataset("events", "events/*.jsonl"),
        ]);
        assert_eq!(router.route("users/vip/a.csv").unwrap().name, "vip");
        assert_eq!(
            router.route("users/vip/deeper/a.csv").unwrap().name,
            "users"
        );
        assert_eq!(router.route("users/a b+c.csv").unwrap().name, "users");
        assert_eq!(router.route("events/x.jsonl").unwrap().name, "events");
        assert!(router.route("events/2024/x.jsonl").is_none());
        assert!(router.route("other/x.csv").is_none());
    }
}
