//! The column-parallel Parquet writer: the same file as the parquet crate's `ArrowWriter`,
//! byte for byte, whatever the thread count; row groups cut at the same rows.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::convert::encode::ParquetWriter;

/// `rows` rows of five columns of different weights (long strings to small ints), so the
/// columns are spread over threads unevenly, starting at row `from`.
fn batch(from: usize, rows: usize) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("n", DataType::Int64, true),
        Field::new("text", DataType::Utf8, true),
        Field::new("x", DataType::Float64, false),
        Field::new("small", DataType::Int64, false),
    ]));
    let range = from..from + rows;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            range.clone().map(|i| format!("id-{i:08}")),
        )),
        Arc::new(Int64Array::from_iter(
            range.clone().map(|i| (i % 7 != 0).then_some(i as i64 * 31)),
        )),
        Arc::new(StringArray::from_iter(range.clone().map(|i| {
            (i % 5 != 0).then(|| format!("{} words of text {}", i % 97, i * 7919 % 100_003))
        }))),
        Arc::new(Float64Array::from_iter_values(
            range.clone().map(|i| i as f64 / 3.0),
        )),
        Arc::new(Int64Array::from_iter_values(range.map(|i| (i % 10) as i64))),
    ];
    RecordBatch::try_new(schema, columns).unwrap()
}

fn props() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(30_000))
        .build()
}

fn with_arrow_writer(batches: &[RecordBatch]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batches[0].schema(), Some(props())).unwrap();
    for b in batches {
        writer.write(b).unwrap();
    }
    writer.close().unwrap();
    out
}

fn with_parquet_writer(batches: &[RecordBatch], threads: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut writer =
        ParquetWriter::try_new(&mut out, batches[0].schema(), props(), threads).unwrap();
    for b in batches {
        writer.write(b).unwrap();
    }
    writer.close().unwrap();
    out
}

fn row_groups(file: &[u8]) -> Vec<i64> {
    let bytes = bytes::Bytes::copy_from_slice(file);
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
    reader
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows())
        .collect()
}

#[test]
fn files_match_the_arrow_writer_byte_for_byte_on_any_thread_count() {
    // Batches large enough for the parallel path (over 512 KiB each), crossing the row
    // group limit mid-batch, and a small last batch encoded on the calling thread.
    let batches = vec![batch(0, 20_000), batch(20_000, 25_000), batch(45_000, 100)];
    assert!(batches[0].get_array_memory_size() > 1 << 20);
    let expected = with_arrow_writer(&batches);
    assert_eq!(row_groups(&expected), vec![30_000, 15_100]);
    for threads in [1, 2, 3, 8] {
        let ours = with_parquet_writer(&batches, threads);
        assert!(ours == expected, "{threads} thread(s): the file differs");
    }
}

#[test]
fn a_flush_ends_the_row_group_and_rows_read_back_in_order() {
    let batches = vec![
        batch(0, 12_000),
        batch(12_000, 12_000),
        batch(24_000, 12_000),
    ];
    let file = with_parquet_writer(&batches, 3);
    assert_eq!(row_groups(&file), vec![30_000, 6_000]);
    let mut out = Vec::new();
    let mut writer = ParquetWriter::try_new(&mut out, batches[0].schema(), props(), 3).unwrap();
    writer.write(&batches[0]).unwrap();
    assert!(writer.memory_size() > 0);
    writer.flush().unwrap();
    assert_eq!(writer.memory_size(), 0);
    assert!(writer.bytes_written() > 0);
    writer.write(&batches[1]).unwrap();
    writer.write(&batches[2]).unwrap();
    writer.close().unwrap();
    assert_eq!(row_groups(&out), vec![12_000, 24_000]);
    let read: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(out))
        .unwrap()
        .with_batch_size(36_000)
        .build()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let all = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    assert_eq!(read, vec![all]);
}
