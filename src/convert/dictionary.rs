//! Which columns get Parquet dictionary encoding: only those whose dictionary would fit.
//!
//! The parquet crate tries a dictionary for every column and falls back to plain encoding
//! once the dictionary outgrows its page limit, in every row group anew; for ids, free
//! text and random numbers that is hashing and copying every value of the group's start
//! for nothing. From the first batch of a file, each column's number of distinct values
//! is estimated (the count `D` for which a sample of `n` values drawn uniformly from `D`
//! would show the `d` distinct values the sample shows) and the dictionary is turned off
//! where the estimated dictionary would not fit the limit.

use std::collections::HashSet;
use std::hash::Hash;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

/// Values looked at per column.
const SAMPLE: usize = 8192;
/// Fewer sampled values than this and the sample says too little: the default stays.
const MIN_SAMPLE: usize = 512;

/// `props` with the dictionary turned off for the columns of `first` (a file's first
/// batch) whose estimated dictionary is larger than the dictionary page limit.
pub fn tune(props: WriterProperties, first: &RecordBatch) -> WriterProperties {
    let limit = props.dictionary_page_size_limit() as f64;
    let schema = first.schema();
    let mut builder = None;
    for (field, column) in schema.fields().iter().zip(first.columns()) {
        let Some(bytes) = estimated_dictionary_bytes(column.as_ref()) else {
            continue;
        };
        if bytes > limit {
            let b = builder
                .take()
                .unwrap_or_else(|| props.clone().into_builder());
            builder = Some(
                b.set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), false),
            );
        }
    }
    builder.map_or(props, |b| b.build())
}

/// The estimated bytes of a dictionary of the whole column (distinct values times their
/// mean size), or `None` for types and samples this does not judge.
fn estimated_dictionary_bytes(column: &dyn Array) -> Option<f64> {
    let rows = column.len().min(SAMPLE);
    match column.data_type() {
        DataType::Utf8 => {
            let strings = column.as_string::<i32>();
            let values = (0..rows)
                .filter(|i| strings.is_valid(*i))
                .map(|i| strings.value(i));
            let (seen, distinct, bytes) = count(values.map(|s| (s, s.len())));
            estimate(seen, distinct).map(|d| d * (bytes as f64 / seen.max(1) as f64 + 4.0))
        }
        DataType::Int64 => numbers(
            column
                .as_primitive::<Int64Type>()
                .iter()
                .take(rows)
                .flatten(),
        ),
        DataType::Float64 => numbers(
            column
                .as_primitive::<Float64Type>()
                .iter()
                .take(rows)
                .flatten()
                .map(f64::to_bits),
        ),
        DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, _) => numbers(
            column
                .as_primitive::<TimestampMicrosecondType>()
                .iter()
                .take(rows)
                .flatten(),
        ),
        _ => None,
    }
}

fn numbers<T: Hash + Eq>(values: impl Iterator<Item = T>) -> Option<f64> {
    let (seen, distinct, _) = count(values.map(|v| (v, 0)));
    estimate(seen, distinct).map(|d| d * 8.0)
}

/// (values seen, distinct values, their bytes).
fn count<T: Hash + Eq>(values: impl Iterator<Item = (T, usize)>) -> (usize, usize, usize) {
    let mut distinct = HashSet::with_capacity(SAMPLE);
    let (mut seen, mut bytes) = (0, 0);
    for (value, size) in values {
        seen += 1;
        bytes += size;
        distinct.insert(value);
    }
    (seen, distinct.len(), bytes)
}

/// The estimated distinct values of the whole column from a sample of `seen` values with
/// `distinct` different ones: the `D` with `D·(1 − e^(−seen/D)) = distinct` (the expected
/// distinct count of `seen` uniform draws from `D` values), found by bisection; infinite
/// when nothing repeated.
fn estimate(seen: usize, distinct: usize) -> Option<f64> {
    if seen < MIN_SAMPLE {
        return None;
    }
    if distinct >= seen {
        return Some(f64::INFINITY);
    }
    let (n, d) = (seen as f64, distinct as f64);
    let expected = |values: f64| values * (1.0 - (-n / values).exp());
    // `expected` grows with the values, from `d`'s neighbourhood to `n`.
    let (mut low, mut high) = (d, d.max(1.0));
    while expected(high) < d {
        high *= 2.0;
        if high > 1e15 {
            return Some(f64::INFINITY);
        }
    }
    for _ in 0..60 {
        let mid = (low + high) / 2.0;
        if expected(mid) < d {
            low = mid;
        } else {
            high = mid;
        }
    }
    Some(high)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch(columns: Vec<(&str, Arc<dyn Array>)>) -> RecordBatch {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(name, a)| Field::new(*name, a.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .unwrap()
    }

    fn dictionary(props: &WriterProperties, column: &str) -> bool {
        props.dictionary_enabled(&ColumnPath::from(column))
    }

    #[test]
    fn only_columns_whose_dictionary_fits_keep_it() {
        let n = 8192;
        // A pseudo-random sequence, so values repeat as in data, not in a pattern.
        let mut x: u64 = 42;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let ids: Vec<String> = (0..n).map(|i| format!("ev-{i:010}")).collect();
        let categories: Vec<&str> = (0..n).map(|i| ["a", "b", "c"][i % 3]).collect();
        let prices: Vec<f64> = (0..n).map(|_| (next() % 50_000) as f64 / 100.0).collect();
        let random: Vec<i64> = (0..n).map(|_| next() as i64).collect();
        let stores: Vec<i64> = (0..n).map(|_| (next() % 1000) as i64).collect();
        let first = batch(vec![
            ("id", Arc::new(StringArray::from(ids))),
            ("category", Arc::new(StringArray::from(categories))),
            ("price", Arc::new(Float64Array::from(prices))),
            ("random", Arc::new(Int64Array::from(random))),
            ("store", Arc::new(Int64Array::from(stores))),
        ]);
        let props = tune(WriterProperties::builder().build(), &first);
        assert!(!dictionary(&props, "id"), "unique strings");
        assert!(dictionary(&props, "category"));
        assert!(
            dictionary(&props, "price"),
            "50000 values of 8 bytes fit 1 MiB"
        );
        assert!(!dictionary(&props, "random"));
        assert!(dictionary(&props, "store"));
    }

    #[test]
    fn the_estimate_follows_the_true_count() {
        // Expected distinct values of 8192 uniform draws from 3, 1000, 50000 values.
        for (values, seen_distinct) in [(3.0, 3.0), (1000.0, 999.7), (50_000.0, 7573.0)] {
            let d: f64 = seen_distinct;
            let estimate = estimate(8192, d.round() as usize).unwrap();
            assert!(
                (estimate - values).abs() / values < 0.1 || (values < 10.0 && estimate < 10.0),
                "{values}: {estimate}"
            );
        }
        assert_eq!(estimate(8192, 8192), Some(f64::INFINITY));
        assert_eq!(estimate(100, 50), None);
    }

    #[test]
    fn long_strings_of_few_values_keep_their_dictionary() {
        let agents: Vec<String> = (0..8192)
            .map(|i| format!("{}-{}", "Mozilla/5.0 ".repeat(40), i % 3))
            .collect();
        let first = batch(vec![("agent", Arc::new(StringArray::from(agents)))]);
        let props = tune(WriterProperties::builder().build(), &first);
        assert!(dictionary(&props, "agent"));
    }

    #[test]
    fn a_small_first_batch_changes_nothing() {
        let ids: Vec<String> = (0..100).map(|i| format!("{i}")).collect();
        let first = batch(vec![("id", Arc::new(StringArray::from(ids)))]);
        let props = tune(WriterProperties::builder().build(), &first);
        assert!(dictionary(&props, "id"));
    }
}
