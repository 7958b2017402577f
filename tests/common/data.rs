//! Test data and what becomes of it: S3 events, generated and example files,
//! Parquet read by the parquet crate and (independently) by pyarrow, object ids.

use std::path::Path;
use std::process::Command;

use arrow::record_batch::RecordBatch;
use lakeworker::domain::envelope::S3Event;

use super::{python, root, run_bounded, WAIT};

/// Reads a Parquet file with the parquet crate.
pub fn read_parquet(bytes: bytes::Bytes) -> Vec<RecordBatch> {
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .expect("parquet metadata")
        .build()
        .expect("parquet reader")
        .collect::<Result<_, _>>()
        .expect("parquet batches")
}

/// What pyarrow sees: `{"schema": {column: type}, "rows": [...]}`, rows sorted.
/// `path` is a file, or a folder read as a Hive-partitioned dataset.
pub fn read_with_pyarrow(path: &Path) -> serde_json::Value {
    let script = root().join("tests/pyarrow_read.py");
    let out = run_bounded(Command::new(python()).arg(script).arg(path), WAIT);
    assert!(
        out.status.success(),
        "pyarrow failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("pyarrow JSON")
}

/// The key of an `s3://bucket/key` URI (as the ledger names outputs).
pub fn key_of(uri: &str) -> String {
    uri.strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .map_or_else(
            || panic!("{uri:?} is not an s3:// URI"),
            |(_, key)| key.to_owned(),
        )
}

/// The object id (which names a file's lake parts and quarantine objects) of
/// `s3://bucket/key` at `etag`.
pub fn part_id(bucket: &str, key: &str, etag: &str) -> String {
    lakeworker::domain::lake::object_id(&lakeworker::domain::envelope::ObjectRef {
        bucket: bucket.into(),
        key: key.into(),
        size: None,
        etag: Some(etag.into()),
        version_id: None,
        event_time: None,
        reprocess: None,
    })
}

/// The S3 event the tests send for an object: `ObjectCreated:Put` of `key` at `etag`, at
/// `event_time`, with size 1 unless a test sets the real one. Built by the worker's own
/// [`S3Event`], which form-encodes the key as S3 does; `.body()` is the message.
pub fn s3_event(bucket: &str, key: &str, etag: &str, event_time: &str) -> S3Event {
    S3Event::put(bucket, key).size(1).etag(etag).at(event_time)
}

/// A CSV of `rows` orders on one day whose values do not compress away (about 76 bytes a
/// row), so its Parquet passes 1 MiB a few times (about 2 MiB for 100,000 rows).
pub fn incompressible_orders(rows: u64) -> Vec<u8> {
    let mut csv = String::from("order_id,user_id,total,paid,ordered_at\n");
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for n in 0..rows {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let total = (x % 1_000_000) as f64 / 100.0;
        // A second random half, so the ids stay incompressible whatever the encoding.
        let y = x.rotate_left(29).wrapping_mul(0x2545_F491_4F6C_DD1D);
        csv.push_str(&format!(
            "o-{n},u-{x:016x}{y:016x},{total},{},2024-05-01T{:02}:{:02}:00Z\n",
            n % 2 == 0,
            n % 24,
            n % 60
        ));
    }
    csv.into_bytes()
}

/// A gzip of a few MB that would expand to gigabytes of valid rows: gzip members, each a
/// compressed block of the same rows, one after another (as `cat a.gz b.gz` makes). Built
/// from one compressed block, so the test never holds or compresses the gigabytes.
pub fn gzip_bomb(header: &str, row: &str, members: usize) -> (Vec<u8>, u64) {
    use std::io::Write;
    let block = row.repeat((1 << 20) / row.len());
    let member = |text: &str| {
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gzip.write_all(text.as_bytes()).expect("compress");
        gzip.finish().expect("compress")
    };
    let mut bomb = member(&format!("{header}{block}"));
    let rest = member(&block);
    for _ in 1..members {
        bomb.extend_from_slice(&rest);
    }
    let expanded = (header.len() + block.len() * members) as u64;
    (bomb, expanded)
}

pub fn example(path: &str) -> Vec<u8> {
    std::fs::read(root().join("examples").join(path)).expect("example file")
}
