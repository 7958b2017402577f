//! The JSON-lines column path against the row path: generated chunks, and every value of
//! a list of edge cases in every column, give the same batches, bad rows and report
//! either way.

use arrow::array::StringArray;
use proptest::prelude::*;

use super::*;

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
    let lineage = lineage();
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
    let (report, batches, typed) = convert_in_eights(&text, &dataset);
    assert_eq!(report.rows_written, 20);
    assert_eq!(report.new_columns.iter().collect::<Vec<_>>(), ["new"]);
    // 20 lines in chunks of 8: three chunks, every one typed by columns.
    assert_eq!(typed, 3);
    assert_eq!(column::<StringArray>(&batches, 1)[0].value(3), "n \"3\"");
}

#[test]
fn a_chunk_of_lines_far_shorter_than_the_dataset_is_wide_takes_the_row_path() {
    // Seven columns of cells for lines of a dozen bytes: the grid would weigh seven times
    // the text, past its bound.
    let text: String = (0..20).map(|i| format!("{{\"id\":\"u{i}\"}}\n")).collect();
    let mut dataset = testing::dataset(FileFormat::Jsonl, Partition::IngestDate, columns());
    dataset.columns[0].required = false;
    let (report, batches, typed) = convert_in_eights(&text, &dataset);
    assert_eq!(report.rows_written, 20);
    assert_eq!(typed, 0);
    assert_eq!(column::<StringArray>(&batches, 0)[2].value(3), "u19");
}

/// Converts `text` on this thread in chunks of 8 lines: the report, the batches, and how
/// many chunks were typed by columns.
fn convert_in_eights(text: &str, dataset: &Dataset) -> (ConvertReport, Vec<RecordBatch>, usize) {
    let typed = || super::columnar::TYPED_CHUNKS.with(std::cell::Cell::get);
    let before = typed();
    let mut sink = Collect::default();
    let options = ConvertOptions::sequential(8);
    let report = convert(
        text.as_bytes(),
        "t",
        dataset,
        &lineage(),
        options,
        &mut sink,
        &mut (),
    )
    .unwrap();
    (report, sink.0, typed() - before)
}

fn lineage() -> Lineage {
    Lineage {
        source: "s".into(),
        ingested_at: 0,
        ingest_date: 0,
    }
}
