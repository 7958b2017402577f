//! User records: the canonical text of a cell ([`value_text`], for table items and PII
//! hashes) and the records table's limits. The items themselves are the adapter's
//! business ([`crate::ports::RecordStore`]; DynamoDB's mapping is in `aws::items`).
//!
//! [`item_problems`] finds, while a file is converted, the rows whose item DynamoDB would
//! refuse (a number out of its range, an empty or oversized key, an item over 400 KB), so
//! they become bad rows before anything is published instead of failing the whole file's
//! writes afterwards.

use arrow::array::{
    Array, BooleanArray, Date32Array, Float64Array, Int64Array, StringArray,
    TimestampMicrosecondArray,
};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

use crate::domain::dataset::Dataset;
use crate::domain::schema::{days_to_date, micros_to_datetime, ColumnType, Parsed, RawCell};

/// DynamoDB's largest item: attribute names and values, 400 KB.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// DynamoDB's longest partition key value, in bytes.
pub const MAX_KEY_BYTES: usize = 2048;
/// DynamoDB's number range in magnitude: 1E-130 to 9.9999999999999999999999999999999999999E+125.
/// A float's text (Rust prints the shortest that reads back, at most 17 digits) lies in it
/// exactly when the float is 0 or its magnitude is at least `1e-130` and below `1e126`.
const SMALLEST_NUMBER: f64 = 1e-130;
const NUMBER_CEILING: f64 = 1e126;

/// The canonical text of a cell (`None` for null): strings as they are, numbers in
/// decimal, booleans `true`/`false`, dates `YYYY-MM-DD`, timestamps RFC 3339 in UTC with
/// `Z`. DynamoDB items and PII hashes use it.
pub fn value_text(kind: ColumnType, array: &dyn Array, row: usize) -> Option<String> {
    if array.is_null(row) {
        return None;
    }
    let any = array.as_any();
    Some(match kind {
        ColumnType::String => any.downcast_ref::<StringArray>()?.value(row).to_owned(),
        ColumnType::Int => any.downcast_ref::<Int64Array>()?.value(row).to_string(),
        ColumnType::Float => any.downcast_ref::<Float64Array>()?.value(row).to_string(),
        ColumnType::Bool => any.downcast_ref::<BooleanArray>()?.value(row).to_string(),
        ColumnType::Date => date_text(days_to_date(any.downcast_ref::<Date32Array>()?.value(row))?),
        ColumnType::Timestamp => timestamp_text(micros_to_datetime(
            any.downcast_ref::<TimestampMicrosecondArray>()?.value(row),
        )?),
    })
}

/// Why DynamoDB would refuse a row's item: the rule (`dynamodb_number`, `dynamodb_key`,
/// `dynamodb_item_size`), the column it concerns (an index into the dataset's columns)
/// and why, with values shown as the column allows ([`crate::domain::schema::Column::shown`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemProblem {
    pub column: Option<usize>,
    pub rule: &'static str,
    pub reason: String,
}

/// Whether DynamoDB can store `value` (as the item gets it: [`value_text`]).
pub fn number_fits(value: f64) -> bool {
    value == 0.0 || (SMALLEST_NUMBER..NUMBER_CEILING).contains(&value.abs())
}

/// What DynamoDB would refuse in the item of a row whose cells all parsed: `parsed` holds
/// the row's typed values, `cell` its raw cells (strings are read from them),
/// `key_index` is the table's hash key column and `more_bytes` what the item holds beyond
/// the dataset's columns (its `_rescued` attribute).
pub fn item_problems<'c>(
    dataset: &Dataset,
    key_index: usize,
    parsed: &[Parsed],
    cell: impl Fn(usize) -> RawCell<'c>,
    more_bytes: usize,
) -> Vec<ItemProblem> {
    let mut problems = Vec::new();
    for (index, (column, value)) in dataset.columns.iter().zip(parsed).enumerate() {
        if let Parsed::Float(v) = value {
            if !number_fits(*v) {
                let shown = cell(index)
                    .text()
                    .map_or_else(|| v.to_string(), |t| column.shown(&t));
                problems.push(ItemProblem {
                    column: Some(index),
                    rule: "dynamodb_number",
                    reason: format!("{shown} is outside DynamoDB's number range (magnitude 1E-130 to 9.99…E+125)"),
                });
            }
        }
    }
    if let Some(Parsed::Str) = parsed.get(key_index) {
        let bytes = cell(key_index).text().map_or(0, |key| key.len());
        let why = if bytes == 0 {
            Some("the key is empty; DynamoDB refuses empty key values".to_owned())
        } else if bytes > MAX_KEY_BYTES {
            Some(format!(
                "the key is {bytes} bytes; DynamoDB keys hold at most {MAX_KEY_BYTES}"
            ))
        } else {
            None
        };
        if let Some(reason) = why {
            problems.push(ItemProblem {
                column: Some(key_index),
                rule: "dynamodb_key",
                reason,
            });
        }
    }
    // Bounds first: only an item that might be too large is measured exactly.
    if item_bytes(dataset, parsed, &cell, false) + more_bytes > MAX_ITEM_BYTES {
        let bytes = item_bytes(dataset, parsed, &cell, true) + more_bytes;
        if bytes > MAX_ITEM_BYTES {
            problems.push(ItemProblem {
                column: None,
                rule: "dynamodb_item_size",
                reason: format!(
                    "the item would be {bytes} bytes; DynamoDB items hold at most {MAX_ITEM_BYTES} (400 KB)"
                ),
            });
        }
    }
    problems
}

/// The item's size as DynamoDB counts it: per attribute its name's UTF-8 bytes plus its
/// value's (strings: UTF-8 bytes; numbers: 1 byte per 2 significant digits, plus 1;
/// booleans: 1; dates and timestamps: their text). Nulls are omitted. With `exact` false,
/// an upper bound that needs no formatting.
fn item_bytes<'c>(
    dataset: &Dataset,
    parsed: &[Parsed],
    cell: &impl Fn(usize) -> RawCell<'c>,
    exact: bool,
) -> usize {
    let number = |digits: usize| digits.div_ceil(2) + 1;
    let mut total = 0;
    for (index, (column, value)) in dataset.columns.iter().zip(parsed).enumerate() {
        let bytes = match *value {
            Parsed::Null => continue,
            Parsed::Str => cell(index).text().map_or(0, |t| t.len()),
            Parsed::Bool(_) => 1,
            Parsed::Int(v) => number(if exact { int_digits(v) } else { 19 }),
            Parsed::Float(v) => number(if exact { float_digits(v) } else { 17 }),
            Parsed::Date(days) if exact => days_to_date(days).map_or(0, |d| date_text(d).len()),
            // "-262143-01-01", the longest a date column holds
            Parsed::Date(_) => 13,
            Parsed::Timestamp(micros) if exact => {
                micros_to_datetime(micros).map_or(0, |t| timestamp_text(t).len())
            }
            // "+262142-12-31T23:59:59.999999Z"
            Parsed::Timestamp(_) => 30,
        };
        total += column.name.len() + bytes;
    }
    total
}

/// Significant digits of an integer (trailing zeros do not count).
fn int_digits(value: i64) -> usize {
    let text = value.unsigned_abs().to_string();
    text.trim_end_matches('0').len().max(1)
}

/// Significant digits of a float as written ([`value_text`] prints the same digits).
fn float_digits(value: f64) -> usize {
    let text = format!("{:e}", value.abs());
    let mantissa = text.split('e').next().unwrap_or_default();
    mantissa.bytes().filter(u8::is_ascii_digit).count().max(1)
}

/// A date as a table item holds it, `YYYY-MM-DD`.
pub fn date_text(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

/// A timestamp as a table item holds it, RFC 3339 in UTC with `Z`.
pub fn timestamp_text(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::{convert, Collect, ConvertOptions, Lineage};
    use crate::domain::dataset::{testing, FileFormat, Partition};
    use crate::domain::schema::Column;
    use crate::testing::records::all_types_dataset as dataset;
    use arrow::array::Float64Array;

    #[test]
    fn numbers_fit_dynamodb_exactly_within_its_range() {
        let top = f64::from_bits(1e126f64.to_bits() - 1);
        for fits in [0.0, -0.0, 1e-130, -1e-130, 9.9e125, top, -top, 1.5] {
            assert!(number_fits(fits), "{fits:e}");
        }
        let text = value_text_of(top);
        assert_eq!(text.len(), 126, "below 1E+126: {text}");
        assert!(text.starts_with("99999999999999"), "{text}");
        let below = f64::from_bits(1e-130f64.to_bits() - 1);
        for refused in [below, -below, 1e126, -1e126, 1e300, 5e-324, f64::MAX] {
            assert!(!number_fits(refused), "{refused:e}");
        }
        // What DynamoDB receives: Rust's text for the float, never an exponent.
        assert_eq!(value_text_of(1e-130).len(), "0.".len() + 130);
        assert!(value_text_of(below).starts_with(&format!("0.{}", "0".repeat(130))));
        assert!(value_text_of(9.9e125).starts_with("99"));
    }

    fn value_text_of(v: f64) -> String {
        let array = Float64Array::from(vec![v]);
        value_text(ColumnType::Float, &array, 0).unwrap()
    }

    /// A dataset keyed by `id` with a float and a string column; `problems` of one row.
    fn problems(id: &str, score: Option<f64>, note: &str) -> Vec<(Option<usize>, &'static str)> {
        let columns = vec![
            Column::new("id", ColumnType::String, true),
            Column::new("score", ColumnType::Float, false),
            Column::new("note", ColumnType::String, false),
        ];
        let d = testing::dataset(FileFormat::Csv, Partition::IngestDate, columns);
        let parsed = [
            Parsed::Str,
            score.map_or(Parsed::Null, Parsed::Float),
            Parsed::Str,
        ];
        let texts = [id, "", note];
        item_problems(&d, 0, &parsed, |i| RawCell::Text(texts[i]), 0)
            .into_iter()
            .map(|p| (p.column, p.rule))
            .collect()
    }

    #[test]
    fn items_dynamodb_would_refuse_are_found_at_their_limits() {
        assert_eq!(problems("u1", Some(1.0), "n"), []);
        assert_eq!(
            problems("u1", Some(1e300), "n"),
            [(Some(1), "dynamodb_number")]
        );
        assert_eq!(problems("", None, "n"), [(Some(0), "dynamodb_key")]);
        assert_eq!(problems(&"k".repeat(MAX_KEY_BYTES), None, ""), []);
        assert_eq!(
            problems(&"k".repeat(MAX_KEY_BYTES + 1), None, ""),
            [(Some(0), "dynamodb_key")]
        );
        // "id" + "u1" + "note" + the note: exactly 400 KB fits, a byte more does not.
        let room = MAX_ITEM_BYTES - "idu1note".len();
        assert_eq!(problems("u1", None, &"x".repeat(room)), []);
        assert_eq!(
            problems("u1", None, &"x".repeat(room + 1)),
            [(None, "dynamodb_item_size")]
        );
        // A number counts 1 byte per 2 significant digits, plus 1: "score" + 2 for 1.5.
        let room = MAX_ITEM_BYTES - "idu1note".len() - "score".len() - 2;
        assert_eq!(problems("u1", Some(1.5), &"x".repeat(room)), []);
        assert_eq!(
            problems("u1", Some(1.25), &"x".repeat(room)),
            [(None, "dynamodb_item_size")],
            "3 digits take 3 bytes"
        );
    }

    #[test]
    fn refused_rows_are_bad_rows_of_the_conversion() {
        let mut d = dataset();
        d.records = Some(crate::domain::dataset::RecordsTarget {
            table: "t".into(),
            key_index: 0,
        });
        let mut nulls = d.columns[0].clone();
        nulls.nulls = vec!["NULL".into()];
        d.columns[0] = nulls;
        let mut secret = d.columns[2].clone();
        secret.pii = Some(crate::domain::schema::Redaction::Omit);
        d.columns[2] = secret;
        let lineage = Lineage {
            source: "s".into(),
            ingested_at: 0,
            ingest_date: 0,
        };
        let mut sink = Collect::default();
        let report = convert(
            "id,f\nu1,1e300\n,2\nu3,3\n".as_bytes(),
            "t.csv",
            &d,
            &lineage,
            ConvertOptions::sequential(100),
            &mut sink,
            &mut (),
        )
        .unwrap();
        assert_eq!((report.rows_written, report.rows_rejected), (1, 2));
        let errors: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                "line 2, column f: <pii omitted> is outside DynamoDB's number range (magnitude 1E-130 to 9.99…E+125)",
                "line 3, column id: the key is empty; DynamoDB refuses empty key values"
            ]
        );
        assert_eq!(report.errors[0].rule, "dynamodb_number");
        // Without a records table the same rows are fine: the limits are DynamoDB's.
        d.records = None;
        let report = convert(
            "id,f\nu1,1e300\n,2\n".as_bytes(),
            "t.csv",
            &d,
            &lineage,
            ConvertOptions::sequential(100),
            &mut Collect::default(),
            &mut (),
        )
        .unwrap();
        assert_eq!(report.rows_rejected, 0);
    }
}
