//! Property tests of the converter: for any generated table, every row is either written or
//! quarantined, and written values come back unchanged from Parquet; for any bytes at all,
//! conversion ends without a panic and the counts still add up.

use std::fs::File;

use arrow::array::{
    Array, BooleanArray, Date32Array, Float64Array, Int64Array, StringArray,
    TimestampMicrosecondArray,
};
use chrono::SecondsFormat;
use proptest::prelude::*;

use super::*;
use crate::config::ParquetOptions;
use crate::domain::dataset::{testing, Partition};
use crate::domain::schema::{days_to_date, micros_to_datetime, Column, ColumnType, DEFAULT_NULLS};

mod csv_cuts;
mod json_columns;

/// One generated row: typed values, and whether its `age` cell is made unparsable.
#[derive(Debug, Clone)]
struct Row {
    name: Option<String>,
    age: Option<i64>,
    score: Option<f64>,
    active: Option<bool>,
    day: Option<i32>,
    at: Option<i64>,
    broken: bool,
}

fn row() -> impl Strategy<Value = Row> {
    (
        proptest::option::of(any::<String>()),
        proptest::option::of(any::<i64>()),
        proptest::option::of(any::<f64>().prop_filter("finite", |f| f.is_finite())),
        proptest::option::of(any::<bool>()),
        proptest::option::of(-25_000i32..80_000),
        proptest::option::of(-2_000_000_000_000_000i64..7_000_000_000_000_000),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(name, age, score, active, day, at, broken)| Row {
            name,
            age,
            score,
            active,
            day,
            at,
            broken,
        })
}

fn columns() -> Vec<Column> {
    vec![
        Column::new("id", ColumnType::String, true),
        Column::new("name", ColumnType::String, false),
        Column::new("age", ColumnType::Int, false),
        Column::new("score", ColumnType::Float, false),
        Column::new("active", ColumnType::Bool, false),
        Column::new("day", ColumnType::Date, false),
        Column::new("at", ColumnType::Timestamp, false),
    ]
}

fn date_text(days: i32) -> String {
    days_to_date(days)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

fn timestamp_text(micros: i64) -> String {
    micros_to_datetime(micros)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
        .unwrap_or_default()
}

fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

fn csv(rows: &[Row]) -> String {
    let mut out = String::from("id,name,age,score,active,day,at\n");
    for (i, r) in rows.iter().enumerate() {
        let age = if r.broken {
            "not a number".to_owned()
        } else {
            r.age.map(|v| v.to_string()).unwrap_or_default()
        };
        let cells = [
            format!("id{i}"),
            r.name.as_deref().map(quote).unwrap_or_default(),
            age,
            r.score.map(|v| v.to_string()).unwrap_or_default(),
            r.active.map(|v| v.to_string()).unwrap_or_default(),
            r.day.map(date_text).unwrap_or_default(),
            r.at.map(timestamp_text).unwrap_or_default(),
        ];
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

fn jsonl(rows: &[Row]) -> String {
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        let age = if r.broken {
            serde_json::json!("not a number")
        } else {
            serde_json::json!(r.age)
        };
        let line = serde_json::json!({
            "id": format!("id{i}"), "name": r.name, "age": age, "score": r.score, "active": r.active,
            "day": r.day.map(date_text), "at": r.at.map(timestamp_text),
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}

/// Converts to one Parquet file and reads it back with the parquet crate.
fn round_trip(format: FileFormat, text: &str) -> (ConvertReport, Vec<RecordBatch>) {
    let dataset = testing::dataset(format, Partition::IngestDate, columns());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.parquet");
    let lineage = Lineage {
        source: "s3://b/k".into(),
        ingested_at: 0,
        ingest_date: 0,
    };
    let mut sink = ParquetFile::create(
        &path,
        full_schema(&dataset),
        writer_properties(&ParquetOptions::default()),
        MemoryBudget::default(),
    )
    .unwrap();
    let mut bad = Quarantine::in_memory();
    let report = convert(
        text.as_bytes(),
        "t",
        &dataset,
        &lineage,
        ConvertOptions::sequential(64),
        &mut sink,
        &mut bad,
    )
    .unwrap();
    sink.close().unwrap();
    let batches = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
        File::open(&path).unwrap(),
        1024,
    )
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap();
    assert_eq!(bad.rows(), report.rows_rejected);
    (report, batches)
}

fn column<T: Array + Clone + 'static>(batches: &[RecordBatch], index: usize) -> Vec<T> {
    batches
        .iter()
        .map(|b| {
            b.column(index)
                .as_any()
                .downcast_ref::<T>()
                .unwrap()
                .clone()
        })
        .collect()
}

/// What a string cell reads back as: the null markers (and no value) are null.
fn expected_name(name: &Option<String>) -> Option<String> {
    name.clone()
        .filter(|n| !DEFAULT_NULLS.contains(&n.as_str()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn rows_are_written_or_quarantined_and_values_round_trip(rows in proptest::collection::vec(row(), 0..40), as_json in any::<bool>()) {
        let format = if as_json { FileFormat::Jsonl } else { FileFormat::Csv };
        let text = if as_json { jsonl(&rows) } else { csv(&rows) };
        let (report, batches) = round_trip(format, &text);
        let broken = rows.iter().filter(|r| r.broken).count() as u64;
        prop_assert_eq!(report.rows_in, rows.len() as u64);
        prop_assert_eq!(report.rows_in, report.rows_written + report.rows_rejected);
        prop_assert_eq!(report.rows_rejected, broken);
        let good: Vec<&Row> = rows.iter().filter(|r| !r.broken).collect();
        let names: Vec<Option<String>> = column::<StringArray>(&batches, 1).iter().flat_map(|a| a.iter().map(|v| v.map(str::to_owned)).collect::<Vec<_>>()).collect();
        let ages: Vec<Option<i64>> = column::<Int64Array>(&batches, 2).iter().flat_map(|a| a.iter().collect::<Vec<_>>()).collect();
        let scores: Vec<Option<f64>> = column::<Float64Array>(&batches, 3).iter().flat_map(|a| a.iter().collect::<Vec<_>>()).collect();
        let actives: Vec<Option<bool>> = column::<BooleanArray>(&batches, 4).iter().flat_map(|a| a.iter().collect::<Vec<_>>()).collect();
        let days: Vec<Option<i32>> = column::<Date32Array>(&batches, 5).iter().flat_map(|a| a.iter().collect::<Vec<_>>()).collect();
        let ats: Vec<Option<i64>> = column::<TimestampMicrosecondArray>(&batches, 6).iter().flat_map(|a| a.iter().collect::<Vec<_>>()).collect();
        prop_assert_eq!(names, good.iter().map(|r| expected_name(&r.name)).collect::<Vec<_>>());
        prop_assert_eq!(ages, good.iter().map(|r| r.age).collect::<Vec<_>>());
        prop_assert_eq!(scores, good.iter().map(|r| r.score).collect::<Vec<_>>());
        prop_assert_eq!(actives, good.iter().map(|r| r.active).collect::<Vec<_>>());
        prop_assert_eq!(days, good.iter().map(|r| r.day).collect::<Vec<_>>());
        prop_assert_eq!(ats, good.iter().map(|r| r.at).collect::<Vec<_>>());
    }

    #[test]
    fn any_bytes_convert_without_panic_and_counts_add_up(bytes in proptest::collection::vec(any::<u8>(), 0..2048), as_json in any::<bool>()) {
        let format = if as_json { FileFormat::Jsonl } else { FileFormat::Csv };
        let mut dataset = testing::dataset(format, Partition::IngestDate, columns());
        dataset.columns[0].required = false;
        dataset.policy.max_row_bytes = 128;
        let lineage = Lineage { source: "s".into(), ingested_at: 0, ingest_date: 0 };
        let mut sink = Collect::default();
        if let Ok(report) = convert(bytes.as_slice(), "t", &dataset, &lineage, ConvertOptions::sequential(16), &mut sink, &mut ()) {
            prop_assert_eq!(report.rows_in, report.rows_written + report.rows_rejected);
            prop_assert_eq!(sink.0.iter().map(|b| b.num_rows() as u64).sum::<u64>(), report.rows_written);
        }
    }

    #[test]
    fn threads_change_nothing_but_speed(rows in proptest::collection::vec(row(), 0..60), as_json in any::<bool>(), batch in 1usize..9) {
        let format = if as_json { FileFormat::Jsonl } else { FileFormat::Csv };
        let text = if as_json { jsonl(&rows) } else { csv(&rows) };
        let dataset = testing::dataset(format, Partition::IngestDate, columns());
        let lineage = Lineage { source: "s".into(), ingested_at: 0, ingest_date: 0 };
        let run = |threads| {
            let mut sink = Collect::default();
            let mut bad = Quarantine::in_memory();
            let options = ConvertOptions { batch_rows: batch, threads, memory: MemoryBudget::default() };
            let report = convert(text.as_bytes(), "t", &dataset, &lineage, options, &mut sink, &mut bad).unwrap();
            (report, sink.0, bad.finish().unwrap())
        };
        let (one, one_batches, one_bad) = run(1);
        let (many, many_batches, many_bad) = run(3);
        prop_assert_eq!(one, many);
        prop_assert_eq!(one_batches, many_batches);
        prop_assert_eq!(one_bad, many_bad);
    }

    #[test]
    fn columns_or_rows_type_a_csv_chunk_alike(
        cells in proptest::collection::vec(proptest::collection::vec((0usize..CELLS.len(), prop::bool::weighted(0.97)), 8), 0..40),
        rescue in any::<bool>(),
        keep in any::<bool>(),
        without_day in any::<bool>(),
        with_extra in any::<bool>(),
        crlf in any::<bool>(),
        batch in 1usize..12,
    ) {
        let mut dataset = testing::dataset(FileFormat::Csv, Partition::IngestDate, columns());
        dataset.columns[2].rules.min = Some(crate::domain::schema::Limit::Int(0));
        dataset.columns[1].rules.max_length = Some(3);
        if rescue {
            dataset.policy.on_invalid = crate::domain::dataset::OnInvalid::Rescue;
        }
        if keep {
            dataset.policy.on_new_columns = crate::domain::dataset::NewColumns::Keep;
        }
        // The header: every column (but `day`, sometimes) and an undeclared one.
        let names = ["id", "name", "age", "score", "active", "day", "at", "extra"];
        let kept: Vec<usize> = (0..names.len())
            .filter(|i| (!without_day || *i != 5) && (with_extra || *i != 7))
            .collect();
        let end = if crlf { "\r\n" } else { "\n" };
        let mut text = kept.iter().map(|i| names[*i]).collect::<Vec<_>>().join(",");
        text.push_str(end);
        for row in &cells {
            let fields: Vec<&str> = kept
                .iter()
                .map(|i| if row[*i].1 { GOOD[*i] } else { CELLS[row[*i].0] })
                .collect();
            text.push_str(&fields.join(","));
            text.push_str(end);
        }
        let lineage = Lineage { source: "s".into(), ingested_at: 0, ingest_date: 0 };
        let run = |rows_only: bool| {
            super::columnar::ROWS_ONLY.with(|off| off.set(rows_only));
            let mut sink = Collect::default();
            let mut bad = Quarantine::in_memory();
            let report = convert(text.as_bytes(), "t", &dataset, &lineage, ConvertOptions::sequential(batch), &mut sink, &mut bad);
            super::columnar::ROWS_ONLY.with(|off| off.set(false));
            (report.map_err(|e| e.to_string()), sink.0, bad.finish().unwrap())
        };
        let (rows_report, rows_batches, rows_bad) = run(true);
        let (columns_report, columns_batches, columns_bad) = run(false);
        prop_assert_eq!(rows_report, columns_report);
        prop_assert_eq!(rows_batches, columns_batches);
        prop_assert_eq!(rows_bad, columns_bad);
    }
}

/// A good cell of each column of the column-or-row comparison (most cells are these, so
/// whole chunks are good as often as not).
const GOOD: [&str; 8] = [
    "u1",
    "ab",
    "7",
    "2.5",
    "true",
    "2024-01-02",
    "2024-01-02T03:04:05Z",
    "e",
];

/// Other cells for the column-or-row comparison: good and bad values of every type, nulls,
/// padding, quoting, non-ASCII text, a wrong field count.
const CELLS: &[&str] = &[
    "",
    "1",
    "-5",
    " 42 ",
    "3.25",
    "1e400",
    "NaN",
    "true",
    "FALSE",
    "yes",
    "2024-01-02",
    "2024-01-02T03:04:05Z",
    "2024-13-40",
    "x",
    "NULL",
    "null",
    "N/A",
    "é",
    "\"q,uo\"\"ted\"",
    "ab",
    "abcd",
    "9223372036854775808",
    "0x1F",
    "a,b",
    "\u{1F600}",
    "\"two\nlines\"",
    " ",
    "\u{b}1",
];

/// `rows` CSV rows of the shared columns, the age of row `i` being `age(i)`.
fn csv_with_ages(rows: usize, age: impl Fn(usize) -> String) -> String {
    let mut text = String::from("id,name,age,score,active,day,at\n");
    for i in 0..rows {
        let age = age(i);
        text.push_str(&format!(
            "u{i},\"n, {i}\",{age},2.5,true,2024-01-02,2024-01-02T03:04:05Z\n"
        ));
    }
    text
}

/// Converts `text` with the shared CSV dataset on the calling thread, in chunks of
/// `batch` rows.
fn convert_on_this_thread(text: &str, batch: usize) -> ConvertReport {
    let dataset = testing::dataset(FileFormat::Csv, Partition::IngestDate, columns());
    let lineage = Lineage {
        source: "s".into(),
        ingested_at: 0,
        ingest_date: 0,
    };
    let options = ConvertOptions::sequential(batch);
    let mut sink = Collect::default();
    let mut bad = Quarantine::in_memory();
    convert(
        text.as_bytes(),
        "t",
        &dataset,
        &lineage,
        options,
        &mut sink,
        &mut bad,
    )
    .unwrap()
}

#[test]
fn a_chunk_of_good_csv_rows_is_typed_column_by_column() {
    let text = csv_with_ages(20, |i| i.to_string());
    let typed = || super::columnar::TYPED_CHUNKS.with(std::cell::Cell::get);
    let before = typed();
    let report = convert_on_this_thread(&text, 8);
    assert_eq!(report.rows_written, 20);
    // 20 rows in chunks of 8: three chunks, every one typed by columns.
    assert_eq!(typed() - before, 3);
}

#[test]
fn the_column_path_is_given_up_on_a_file_whose_chunks_keep_needing_rows() {
    // Chunks of 4 rows, each with one bad age.
    let text = csv_with_ages(80, |i| {
        if i % 4 == 3 {
            "old".into()
        } else {
            i.to_string()
        }
    });
    let tried = || super::columnar::TRIED_CHUNKS.with(std::cell::Cell::get);
    let before = tried();
    let report = convert_on_this_thread(&text, 4);
    assert_eq!((report.rows_written, report.rows_rejected), (60, 20));
    // Eight tries, eight misses: the other twelve chunks go straight to the row path.
    assert_eq!(tried() - before, 8);
}
