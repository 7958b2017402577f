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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn columns_or_rows_type_a_json_chunk_alike(
        lines in proptest::collection::vec(
            (
                proptest::collection::vec(
                    (0usize..JSON_CELLS.len(), prop::bool::weighted(0.95), prop::bool::weighted(0.03)),
                    8,
                ),
                0usize..16,
            ),
            0..40,
        ),
        policy in 0usize..5,
        rescue in any::<bool>(),
        epoch in any::<bool>(),
        rules in any::<bool>(),
        batch in 1usize..12,
    ) {
        let dataset = json_dataset(policy, rescue, epoch, rules);
        let names = ["id", "name", "age", "score", "active", "day", "at", "extra"];
        let mut text = String::new();
        for (cells, kind) in &lines {
            let pairs: Vec<String> = cells
                .iter()
                .enumerate()
                .filter(|(_, (_, _, omit))| !omit)
                .map(|(i, (cell, good, _))| {
                    let value = match (*good, i) {
                        (true, 6) if epoch => "1700000000",
                        (true, _) => JSON_GOOD[i],
                        (false, _) => JSON_CELLS[*cell],
                    };
                    let name = if *kind == 3 && i == 1 { "n\\u0061me" } else { names[i] };
                    format!("\"{name}\":{value}")
                })
                .collect();
            let line = match kind {
                0 => format!(" {{ {} }} ", pairs.join(" , ")),
                1 => format!("{{{},\"id\":\"again\"}}", pairs.join(",")),
                2 => "[1,2]".to_owned(),
                4 => format!("{{{}}} x", pairs.join(",")),
                5 => String::new(),
                _ => format!("{{{}}}", pairs.join(",")),
            };
            text.push_str(&line);
            text.push('\n');
        }
        let (by_rows, by_columns) = rows_and_columns(&text, &dataset, batch);
        prop_assert_eq!(by_rows, by_columns);
    }
}

/// The JSON comparison's dataset: `policy` picks `on_new_columns`; `rescue` rescues bad
/// cells; `epoch` makes `at` epoch seconds; `rules` gives `age` a minimum and `name` a
/// maximum length, so no cell of those takes the shortcut.
fn json_dataset(policy: usize, rescue: bool, epoch: bool, rules: bool) -> Dataset {
    use crate::domain::dataset::{NewColumns, OnInvalid};
    use crate::domain::schema::{Limit, ValueFormat};
    let mut dataset = testing::dataset(FileFormat::Jsonl, Partition::IngestDate, columns());
    if rules {
        dataset.columns[2].rules.min = Some(Limit::Int(0));
        dataset.columns[1].rules.max_length = Some(3);
    }
    dataset.policy.max_row_bytes = 200;
    if epoch {
        dataset.columns[6].format = Some(ValueFormat::EpochSeconds);
    }
    if rescue {
        dataset.policy.on_invalid = OnInvalid::Rescue;
    }
    dataset.policy.on_new_columns = [
        NewColumns::Ignore,
        NewColumns::Add,
        NewColumns::Keep,
        NewColumns::Rescue,
        NewColumns::Reject,
    ][policy];
    dataset
}

/// A conversion's report (or error), batches and quarantine.
type Outcome = (Result<ConvertReport, String>, Vec<RecordBatch>, Vec<u8>);

/// What converting `text` gives row by row, and with the column path allowed.
fn rows_and_columns(text: &str, dataset: &Dataset, batch: usize) -> (Outcome, Outcome) {
    let lineage = Lineage {
        source: "s".into(),
        ingested_at: 0,
        ingest_date: 0,
    };
    let run = |rows_only: bool| {
        super::columnar::ROWS_ONLY.with(|off| off.set(rows_only));
        let mut sink = Collect::default();
        let mut bad = Quarantine::in_memory();
        let report = convert(
            text.as_bytes(),
            "t",
            dataset,
            &lineage,
            ConvertOptions::sequential(batch),
            &mut sink,
            &mut bad,
        );
        super::columnar::ROWS_ONLY.with(|off| off.set(false));
        (
            report.map_err(|e| e.to_string()),
            sink.0,
            bad.finish().unwrap(),
        )
    };
    (run(true), run(false))
}

/// Every value of [`JSON_CELLS`] in every column (and as an undeclared key) of an
/// otherwise good line, under every dataset variant: the column path agrees with the
/// row path on each.
#[test]
fn columns_or_rows_type_every_json_value_alike() {
    let names = ["id", "name", "age", "score", "active", "day", "at", "extra"];
    for variant in 0..40 {
        let (policy, rescue, epoch, rules) = (
            variant % 5,
            variant / 5 % 2 == 1,
            variant / 10 % 2 == 1,
            variant / 20 == 1,
        );
        let dataset = json_dataset(policy, rescue, epoch, rules);
        for column in 0..names.len() {
            for cell in JSON_CELLS {
                let pairs: Vec<String> = (0..names.len())
                    .map(|i| {
                        let value = match i {
                            _ if i == column => cell,
                            6 if epoch => "1700000000",
                            _ => JSON_GOOD[i],
                        };
                        format!("\"{}\":{value}", names[i])
                    })
                    .collect();
                // Alone, and as the first value of a repeated key (which the second
                // replaces).
                let repeated = format!("\"{}\":{}", names[column], JSON_GOOD[column]);
                for text in [
                    format!("{{{}}}\n", pairs.join(",")),
                    format!("{{{},{repeated}}}\n", pairs.join(",")),
                ] {
                    let (by_rows, by_columns) = rows_and_columns(&text, &dataset, 4);
                    assert_eq!(by_rows, by_columns, "{text} (variant {variant})");
                }
            }
        }
    }
}

/// A good value of each key of the JSON column-or-row comparison.
const JSON_GOOD: [&str; 8] = [
    "\"u1\"",
    "\"ab\"",
    "7",
    "2.5",
    "true",
    "\"2024-01-02\"",
    "\"2024-01-02T03:04:05Z\"",
    "\"e\"",
];

/// Other values (and non-values) for the JSON comparison: numbers at the edges of
/// serde_json's reading, strings with every kind of escape, nested values, nulls, and
/// text that is no JSON at all.
const JSON_CELLS: &[&str] = &[
    "\"\"",
    "0",
    "1",
    "-0",
    "-5",
    "1.0",
    "3.25",
    "-2.5e-3",
    "1E2",
    "1e400",
    "1e300",
    "1e301",
    "-1e00309",
    "1e000400",
    "[1e+000400]",
    "1E-400",
    "0.5e+299",
    "1234567890123456789012345678901234567890",
    "01",
    "1.",
    "-",
    "9223372036854775808",
    "18446744073709551616",
    "-9223372036854775809",
    "1700000000.5",
    "true",
    "false",
    "null",
    "tru",
    "\"x\"",
    "\"NULL\"",
    "\" 42 \"",
    "\"7\"",
    "\"2.5\"",
    "\"true\"",
    "\"1700000000\"",
    "\"2024-13-40\"",
    "\"abcd\"",
    "\"é\"",
    "\"a\\\"b\"",
    "\"\\u00e9\"",
    "\"\\ud83d\\ude00\"",
    "\"\\ud800\"",
    "\"\\udc00x\"",
    "\"tab\\there\"",
    "\"raw\ttab\"",
    "\"\\x\"",
    "\"unterminated",
    "[1,2]",
    "[]",
    "{}",
    "{\"z\":1,\"a\":[true,null,\"\\ud800\"]}",
    "{\"b\":{\"c\":[1.5e3,\"\\n\"]}}",
    "\"yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\"",
];

#[test]
fn a_chunk_of_good_json_lines_is_typed_column_by_column() {
    let mut text = String::new();
    for i in 0..20 {
        text.push_str(&format!(
            "{{\"id\":\"u{i}\",\"name\":\"n \\\"{i}\\\"\",\"age\":{i},\"score\":2.5,\"active\":true,\"day\":\"2024-01-02\",\"at\":\"2024-01-02T03:04:05Z\",\"new\":[1]}}\n"
        ));
    }
    let dataset = testing::dataset(FileFormat::Jsonl, Partition::IngestDate, columns());
    let lineage = Lineage {
        source: "s".into(),
        ingested_at: 0,
        ingest_date: 0,
    };
    let typed = || super::columnar::TYPED_CHUNKS.with(std::cell::Cell::get);
    let before = typed();
    let mut sink = Collect::default();
    let mut bad = Quarantine::in_memory();
    let report = convert(
        text.as_bytes(),
        "t",
        &dataset,
        &lineage,
        ConvertOptions::sequential(8),
        &mut sink,
        &mut bad,
    )
    .unwrap();
    assert_eq!(report.rows_written, 20);
    assert_eq!(report.new_columns.iter().collect::<Vec<_>>(), ["new"]);
    // 20 lines in chunks of 8: three chunks, every one typed by columns.
    assert_eq!(typed() - before, 3);
    let names = sink.0[0]
        .column(1)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!(names.value(3), "n \"3\"");
}

#[test]
fn a_chunk_of_lines_far_shorter_than_the_dataset_is_wide_takes_the_row_path() {
    // Seven columns of cells for lines of a dozen bytes: the grid would weigh seven times
    // the text, past its bound.
    let text: String = (0..20).map(|i| format!("{{\"id\":\"u{i}\"}}\n")).collect();
    let mut dataset = testing::dataset(FileFormat::Jsonl, Partition::IngestDate, columns());
    dataset.columns[0].required = false;
    let lineage = Lineage {
        source: "s".into(),
        ingested_at: 0,
        ingest_date: 0,
    };
    let typed = || super::columnar::TYPED_CHUNKS.with(std::cell::Cell::get);
    let before = typed();
    let mut sink = Collect::default();
    let report = convert(
        text.as_bytes(),
        "t",
        &dataset,
        &lineage,
        ConvertOptions::sequential(8),
        &mut sink,
        &mut (),
    )
    .unwrap();
    assert_eq!(report.rows_written, 20);
    assert_eq!(typed(), before);
    let ids = sink.0[2]
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!(ids.value(3), "u19");
}
