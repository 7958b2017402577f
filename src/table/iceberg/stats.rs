//! What an Iceberg manifest says of one data file, read from the Parquet footer our own
//! writer (parquet 60) produced: row count, size, and per column (by field id) the
//! compressed size, value and null counts and lower/upper bounds, so engines can prune.
//! [`FileStats`] is neutral; [`data_file`] turns it into the iceberg crate's `DataFile`.

use std::collections::HashMap;
use std::path::Path;

use iceberg::spec::{
    DataContentType, DataFile, DataFileBuilder, DataFileFormat, Datum, Literal, PrimitiveType,
    Schema, Struct,
};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::statistics::Statistics;

use crate::domain::lake::PartitionValue;

/// Iceberg's default metrics mode keeps string bounds to 16 characters.
const STRING_BOUND_CHARS: usize = 16;

/// A bound in the column's own terms.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    Bool(bool),
    Int(i64),
    Double(f64),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ColumnStats {
    pub compressed_bytes: u64,
    /// Values including nulls.
    pub values: u64,
    pub nulls: u64,
    pub lower: Option<Bound>,
    pub upper: Option<Bound>,
    /// A row group with values had no (exact) lower bound: the file's is unknown.
    pub lower_unknown: bool,
    /// Likewise for the upper bound (parquet truncates long string maxima).
    pub upper_unknown: bool,
}

/// One finished data file, as its footer describes it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FileStats {
    pub rows: u64,
    pub bytes: u64,
    /// By Iceberg field id.
    pub columns: HashMap<i32, ColumnStats>,
}

/// Reads the footer of the Parquet file at `path`.
pub fn read(path: &Path) -> Result<FileStats, String> {
    let bytes = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let reader = SerializedFileReader::new(file).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(from_metadata(reader.metadata(), bytes))
}

/// The stats of a file of `bytes` bytes with this footer.
pub fn from_metadata(metadata: &ParquetMetaData, bytes: u64) -> FileStats {
    let mut stats = FileStats {
        rows: u64::try_from(metadata.file_metadata().num_rows()).unwrap_or_default(),
        bytes,
        columns: HashMap::new(),
    };
    for group in metadata.row_groups() {
        for chunk in group.columns() {
            let info = chunk.column_descr().self_type().get_basic_info();
            if !info.has_id() {
                continue;
            }
            let column = stats.columns.entry(info.id()).or_default();
            column.compressed_bytes += u64::try_from(chunk.compressed_size()).unwrap_or_default();
            column.values += u64::try_from(chunk.num_values()).unwrap_or_default();
            let Some(statistics) = chunk.statistics() else {
                // A chunk without statistics: nothing can be said of the file's bounds.
                column.lower_unknown = true;
                column.upper_unknown = true;
                continue;
            };
            let nulls = statistics.null_count_opt().unwrap_or_default();
            column.nulls += nulls;
            let (lower, upper) = bounds(statistics);
            // A group of only nulls has no bounds and needs none; one with values whose
            // bound is missing makes the file's unknown.
            let has_values = u64::try_from(chunk.num_values()).unwrap_or_default() > nulls;
            column.lower_unknown |= has_values && lower.is_none();
            column.upper_unknown |= has_values && upper.is_none();
            merge(&mut column.lower, lower, true);
            merge(&mut column.upper, upper, false);
        }
    }
    stats
}

/// A row group's bounds: exact ones, or for text a truncated lower bound (a prefix is
/// never larger) and no upper bound unless it is exact.
fn bounds(statistics: &Statistics) -> (Option<Bound>, Option<Bound>) {
    let exact_max = statistics.max_is_exact();
    match statistics {
        Statistics::Boolean(s) => (
            s.min_opt().map(|v| Bound::Bool(*v)),
            s.max_opt().map(|v| Bound::Bool(*v)),
        ),
        Statistics::Int32(s) => (
            s.min_opt().map(|v| Bound::Int(i64::from(*v))),
            s.max_opt().map(|v| Bound::Int(i64::from(*v))),
        ),
        Statistics::Int64(s) => (
            s.min_opt().map(|v| Bound::Int(*v)),
            s.max_opt().map(|v| Bound::Int(*v)),
        ),
        Statistics::Double(s) => (
            s.min_opt().map(|v| Bound::Double(*v)),
            s.max_opt().map(|v| Bound::Double(*v)),
        ),
        Statistics::ByteArray(s) => {
            let text = |v: &parquet::data_type::ByteArray| {
                std::str::from_utf8(v.data()).ok().map(str::to_owned)
            };
            (
                s.min_opt().and_then(text).map(Bound::Text),
                s.max_opt()
                    .filter(|_| exact_max)
                    .and_then(text)
                    .map(Bound::Text),
            )
        }
        _ => (None, None),
    }
}

/// Folds a row group's bound into the file's: the smaller lower, the larger upper. A
/// group without a bound (all nulls) leaves the file's as it is.
fn merge(file: &mut Option<Bound>, group: Option<Bound>, lower: bool) {
    let Some(group) = group else { return };
    let replace = match (&*file, &group) {
        (None, _) => true,
        (Some(Bound::Bool(a)), Bound::Bool(b)) => (b < a) == lower && a != b,
        (Some(Bound::Int(a)), Bound::Int(b)) => (b < a) == lower && a != b,
        (Some(Bound::Double(a)), Bound::Double(b)) => (b < a) == lower && a != b,
        (Some(Bound::Text(a)), Bound::Text(b)) => (b < a) == lower && a != b,
        _ => false,
    };
    if replace {
        *file = Some(group);
    }
}

/// The smallest string of at most [`STRING_BOUND_CHARS`] characters not above `text`.
fn truncated_lower(text: &str) -> String {
    text.chars().take(STRING_BOUND_CHARS).collect()
}

/// The smallest string of at most [`STRING_BOUND_CHARS`] characters not below `text`, if
/// there is one: the prefix with its last character incremented.
fn truncated_upper(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= STRING_BOUND_CHARS {
        return Some(text.to_owned());
    }
    let mut prefix = chars[..STRING_BOUND_CHARS].to_vec();
    while let Some(last) = prefix.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            prefix.push(next);
            return Some(prefix.into_iter().collect());
        }
    }
    None
}

/// The bound as a value of the field's Iceberg type.
fn datum(bound: &Bound, kind: &PrimitiveType, lower: bool) -> Option<Datum> {
    Some(match (bound, kind) {
        (Bound::Bool(v), PrimitiveType::Boolean) => Datum::bool(*v),
        (Bound::Int(v), PrimitiveType::Long) => Datum::long(*v),
        (Bound::Int(v), PrimitiveType::Date) => Datum::date(i32::try_from(*v).ok()?),
        (Bound::Int(v), PrimitiveType::Timestamptz) => Datum::timestamptz_micros(*v),
        (Bound::Int(v), PrimitiveType::Timestamp) => Datum::timestamp_micros(*v),
        (Bound::Double(v), PrimitiveType::Double) if !v.is_nan() => Datum::double(*v),
        (Bound::Text(v), PrimitiveType::String) if lower => Datum::string(truncated_lower(v)),
        (Bound::Text(v), PrimitiveType::String) => Datum::string(truncated_upper(v)?),
        _ => return None,
    })
}

/// The manifest entry of a data file at `uri` holding one partition's rows.
pub fn data_file(
    stats: &FileStats,
    uri: String,
    partition: PartitionValue,
    spec_id: i32,
    schema: &Schema,
) -> Result<DataFile, String> {
    let mut column_sizes = HashMap::new();
    let mut value_counts = HashMap::new();
    let mut null_counts = HashMap::new();
    let mut lower_bounds = HashMap::new();
    let mut upper_bounds = HashMap::new();
    for (id, column) in &stats.columns {
        column_sizes.insert(*id, column.compressed_bytes);
        value_counts.insert(*id, column.values);
        null_counts.insert(*id, column.nulls);
        let Some(kind) = schema
            .field_by_id(*id)
            .and_then(|field| field.field_type.as_primitive_type().cloned())
        else {
            continue;
        };
        let lower = column.lower.as_ref().filter(|_| !column.lower_unknown);
        if let Some(d) = lower.and_then(|b| datum(b, &kind, true)) {
            lower_bounds.insert(*id, d);
        }
        let upper = column.upper.as_ref().filter(|_| !column.upper_unknown);
        if let Some(d) = upper.and_then(|b| datum(b, &kind, false)) {
            upper_bounds.insert(*id, d);
        }
    }
    DataFileBuilder::default()
        .content(DataContentType::Data)
        .file_path(uri)
        .file_format(DataFileFormat::Parquet)
        .partition(Struct::from_iter([partition.map(Literal::date)]))
        .partition_spec_id(spec_id)
        .record_count(stats.rows)
        .file_size_in_bytes(stats.bytes)
        .column_sizes(column_sizes)
        .value_counts(value_counts)
        .null_value_counts(null_counts)
        .lower_bounds(lower_bounds)
        .upper_bounds(upper_bounds)
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_bounds_are_truncated_the_safe_way() {
        assert_eq!(
            truncated_lower("abcdefghijklmnopqrstuvwxyz"),
            "abcdefghijklmnop"
        );
        assert_eq!(
            truncated_upper("abcdefghijklmnopqrstuvwxyz").as_deref(),
            Some("abcdefghijklmnoq")
        );
        assert_eq!(truncated_upper("short").as_deref(), Some("short"));
        let over = format!("{}{}", "a".repeat(15), '\u{10FFFF}');
        assert_eq!(
            truncated_upper(&format!("{over}z")),
            Some(format!("{}b", "a".repeat(14)))
        );
        // Past a surrogate gap: U+D7FF + 1 is U+E000.
        let gap = format!("{}{}", "a".repeat(15), '\u{D7FF}');
        assert_eq!(
            truncated_upper(&format!("{gap}z")),
            Some(format!("{}\u{E000}", "a".repeat(15)))
        );
    }

    /// A file of two row groups whose second has a string longer than parquet's 64-byte
    /// statistics: the file gets no upper bound for it (a truncated one would be too low),
    /// and exact bounds elsewhere.
    #[test]
    fn a_truncated_maximum_leaves_the_file_without_an_upper_bound() {
        use arrow::array::{Int64Array, StringArray};
        use arrow::datatypes::{DataType, Field, Schema as ArrowSchema};
        use arrow::record_batch::RecordBatch;
        use std::sync::Arc;
        let id = |n: &str| HashMap::from([("PARQUET:field_id".to_owned(), n.to_owned())]);
        let schema = Arc::new(ArrowSchema::new(vec![
            Field::new("s", DataType::Utf8, true).with_metadata(id("1")),
            Field::new("n", DataType::Int64, true).with_metadata(id("2")),
        ]));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.parquet");
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(2))
            .build();
        let mut writer = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&path).unwrap(),
            schema.clone(),
            Some(props),
        )
        .unwrap();
        let long = "z".repeat(100);
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![
                    Some("b"),
                    Some("c"),
                    Some("a"),
                    Some(long.as_str()),
                ])),
                Arc::new(Int64Array::from(vec![Some(5), None, Some(-3), Some(9)])),
            ],
        )
        .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let stats = read(&path).unwrap();
        assert_eq!(stats.rows, 4);
        let s = &stats.columns[&1];
        assert_eq!((s.values, s.nulls), (4, 0));
        assert_eq!(s.lower, Some(Bound::Text("a".into())));
        assert!(s.upper_unknown, "{s:?}");
        let n = &stats.columns[&2];
        assert_eq!((n.values, n.nulls), (4, 1));
        assert_eq!(
            (n.lower.clone(), n.upper.clone()),
            (Some(Bound::Int(-3)), Some(Bound::Int(9)))
        );
        assert!(!n.lower_unknown && !n.upper_unknown);
    }

    #[test]
    fn bounds_fold_to_the_file_extremes() {
        let mut lower = None;
        let mut upper = None;
        for v in [5, -3, 9, 0] {
            merge(&mut lower, Some(Bound::Int(v)), true);
            merge(&mut upper, Some(Bound::Int(v)), false);
        }
        merge(&mut lower, None, true);
        assert_eq!((lower, upper), (Some(Bound::Int(-3)), Some(Bound::Int(9))));
    }
}
