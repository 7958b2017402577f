//! A dataset with a column of every type and batches of it, for the records mapping tests.

use arrow::record_batch::RecordBatch;

use crate::convert::{convert, Collect, ConvertOptions, Lineage};
use crate::domain::dataset::{testing, Dataset, FileFormat, Partition};
use crate::domain::schema::{Column, ColumnType};

/// A dataset with one column of each type (`id` string key, `n`, `f`, `b`, `d`, `t`).
pub fn all_types_dataset() -> Dataset {
    let col = |name: &str, kind| Column::new(name, kind, name == "id");
    testing::dataset(
        FileFormat::Csv,
        Partition::IngestDate,
        vec![
            col("id", ColumnType::String),
            col("n", ColumnType::Int),
            col("f", ColumnType::Float),
            col("b", ColumnType::Bool),
            col("d", ColumnType::Date),
            col("t", ColumnType::Timestamp),
        ],
    )
}

/// `csv` (a header and rows of [`all_types_dataset`]) converted into one batch.
pub fn all_types_batch(csv: &str) -> RecordBatch {
    let lineage = Lineage {
        source: "s".into(),
        ingested_at: 0,
        ingest_date: 0,
    };
    let mut sink = Collect::default();
    convert(
        csv.as_bytes(),
        "t.csv",
        &all_types_dataset(),
        &lineage,
        ConvertOptions::sequential(100),
        &mut sink,
        &mut (),
    )
    .unwrap();
    sink.0.remove(0)
}
