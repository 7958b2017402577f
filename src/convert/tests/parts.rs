//! Lake output: partitions, part files and their roll-over, lake transforms, the spool.

use arrow::array::{Array, Int64Array};
use arrow::datatypes::DataType;

use super::*;
use crate::config::{Compression, ParquetOptions, Secret, INGESTED_AT_COLUMN, SOURCE_COLUMN};
use crate::domain::schema::{LakeOutput, UTC};

#[test]
fn too_many_partitions_reject_the_file() {
    let d = dataset(FileFormat::Csv, Partition::DateColumn { index: 4 });
    let mut input = String::from("user_id,signup_date\n");
    for day in 0..=sinks::MAX_PARTITIONS_PER_FILE {
        input.push_str(&format!(
            "u{day},{}\n",
            crate::domain::schema::days_to_date(day as i32).unwrap()
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut parts = LakeParts::new(
        dir.path(),
        &d,
        &lineage(),
        &ParquetOptions {
            compression: Compression::None,
            ..Default::default()
        },
        None,
        MemoryBudget::default(),
    );
    let err = convert(
        input.as_bytes(),
        "in",
        &d,
        &lineage(),
        ConvertOptions::sequential(100_000),
        &mut parts,
        &mut (),
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "the file spans more than 1000 partitions");
}

fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let file = File::open(path).unwrap();
    parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 1024)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn lake_parts(d: &Dataset, input: &str, batch_rows: usize, salt: Option<&Secret>) -> Vec<PartFile> {
    lake_parts_with(d, input, batch_rows, salt, &ParquetOptions::default())
}

fn lake_parts_with(
    d: &Dataset,
    input: &str,
    batch_rows: usize,
    salt: Option<&Secret>,
    options: &ParquetOptions,
) -> Vec<PartFile> {
    let dir = tempfile::tempdir().unwrap().keep();
    let mut parts = LakeParts::new(&dir, d, &lineage(), options, salt, MemoryBudget::default());
    convert(
        input.as_bytes(),
        "in",
        d,
        &lineage(),
        ConvertOptions::sequential(batch_rows),
        &mut parts,
        &mut (),
    )
    .unwrap();
    parts.finish().unwrap()
}

#[test]
fn lake_parts_split_by_date_and_drop_the_path_column() {
    let d = dataset(FileFormat::Csv, Partition::DateColumn { index: 4 });
    let input = "user_id,signup_date\na,2024-01-02\nb,2024-01-01\nc,2024-01-02\nd,\ne,2024-01-02\n";
    let done = lake_parts(&d, input, 3, None);
    let summary: Vec<(PartitionValue, u64)> = done.iter().map(|p| (p.partition, p.rows)).collect();
    assert_eq!(summary, [(None, 1), (Some(19723), 1), (Some(19724), 3)]);
    let batches = read_parquet(&done[2].path);
    let schema = batches[0].schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "user_id",
            "age",
            "score",
            "active",
            "seen_at",
            SOURCE_COLUMN,
            INGESTED_AT_COLUMN
        ]
    );
    assert_eq!(
        strings(&batches, 0),
        [Some("a".into()), Some("c".into()), Some("e".into())]
    );
    assert_eq!(
        schema.field(4).data_type(),
        &DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some(UTC.into()))
    );
}

#[test]
fn timestamp_partitions_keep_the_column() {
    let d = dataset(FileFormat::Jsonl, Partition::TimestampColumn { index: 5 });
    let input = "{\"user_id\":\"a\",\"seen_at\":\"1969-12-31T23:59:59Z\"}\n{\"user_id\":\"b\",\"seen_at\":\"1970-01-01T00:00:00Z\"}\n";
    let done = lake_parts(&d, input, 10, None);
    assert_eq!(
        done.iter().map(|p| p.partition).collect::<Vec<_>>(),
        [Some(-1), Some(0)]
    );
    assert_eq!(read_parquet(&done[0].path)[0].num_columns(), 8);
}

/// An epoch value past the timestamp range is a bad row, not a value in the null partition.
#[test]
fn epoch_timestamps_beyond_the_range_are_bad_rows_not_null_partitions() {
    let mut cols = columns();
    cols[5].format = Some(crate::domain::schema::ValueFormat::EpochMillis);
    let d = testing::dataset(
        FileFormat::Jsonl,
        Partition::TimestampColumn { index: 5 },
        cols,
    );
    let beyond = crate::domain::schema::MAX_TIMESTAMP_MICROS / 1000 + 1;
    let input = format!(
        "{{\"user_id\":\"a\",\"seen_at\":0}}\n{{\"user_id\":\"b\",\"seen_at\":{beyond}}}\n{{\"user_id\":\"c\",\"seen_at\":\"{beyond}\"}}\n"
    );
    let (report, _, bad) = run_on(input.as_bytes(), &d, 10);
    assert_eq!((report.rows_written, report.rows_rejected), (1, 2));
    assert!(bad
        .iter()
        .all(|row| row["errors"][0]["rule"] == "type" && row["errors"][0]["column"] == "seen_at"));
    let done = lake_parts(&d, &input, 10, None);
    assert_eq!(
        done.iter().map(|p| p.partition).collect::<Vec<_>>(),
        [Some(0)],
        "no null partition"
    );
}

#[test]
fn ingest_date_partition_is_one_part() {
    let d = dataset(FileFormat::Csv, Partition::IngestDate);
    let done = lake_parts(&d, "user_id\na\nb\n", 1, None);
    assert_eq!(done.len(), 1);
    assert_eq!((done[0].partition, done[0].rows), (Some(19000), 2));
}

#[test]
fn parts_roll_over_at_the_target_size_with_bounded_row_groups() {
    let d = dataset(FileFormat::Csv, Partition::DateColumn { index: 4 });
    let mut input = String::from("user_id,signup_date,score\n");
    for row in 0..30_000 {
        // Two partitions, interleaved; scores that compress badly keep the files growing.
        let day = if row % 3 == 0 {
            "2024-01-01"
        } else {
            "2024-01-02"
        };
        input.push_str(&format!("u{row},{day},{}\n", (row as f64 * 0.7137).sin()));
    }
    let options = ParquetOptions {
        compression: Compression::Zstd,
        zstd_level: 1,
        row_group_size: 1000,
        target_file_size: 25_000,
    };
    let done = lake_parts_with(&d, &input, 700, None, &options);

    for partition in [Some(19723), Some(19724)] {
        let parts: Vec<&PartFile> = done.iter().filter(|p| p.partition == partition).collect();
        assert!(parts.len() >= 3, "{partition:?}: {parts:?}");
        let seqs: Vec<u32> = parts.iter().map(|p| p.seq).collect();
        assert_eq!(seqs, (0..parts.len() as u32).collect::<Vec<_>>());
        let mut ids = Vec::new();
        for (n, part) in parts.iter().enumerate() {
            let size = std::fs::metadata(&part.path).unwrap().len();
            if n + 1 < parts.len() {
                assert!(size >= options.target_file_size, "part {n}: {size} bytes");
            }
            let file = File::open(&part.path).unwrap();
            let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
            let meta = parquet::file::reader::FileReader::metadata(&reader);
            assert!(meta.row_groups().iter().all(|g| g.num_rows() <= 1000));
            let batches = read_parquet(&part.path);
            assert_eq!(
                batches.iter().map(|b| b.num_rows() as u64).sum::<u64>(),
                part.rows
            );
            ids.extend(strings(&batches, 0).into_iter().map(Option::unwrap));
        }
        // Every row of the partition, once, in file order.
        let expected: Vec<String> = (0..30_000)
            .filter(|row| (row % 3 == 0) == (partition == Some(19723)))
            .map(|row| format!("u{row}"))
            .collect();
        assert_eq!(ids, expected);
    }
}

#[test]
fn lake_transforms_rename_hash_and_drop() {
    let mut cols = columns();
    cols[0].lake = LakeOutput::Hash {
        name: "user_hash".into(),
    };
    cols[1].lake = LakeOutput::Keep {
        name: "years".into(),
    };
    cols[2].lake = LakeOutput::Drop;
    cols[3].lake = LakeOutput::Drop;
    cols[5].lake = LakeOutput::Hash {
        name: "seen_hash".into(),
    };
    let d = testing::dataset(FileFormat::Csv, Partition::IngestDate, cols);
    let salt = Secret::new("pepper");
    let done = lake_parts(
        &d,
        "user_id,age,score,seen_at\nalice,30,1.5,1970-01-01T00:00:00Z\nbob,,,\n",
        10,
        Some(&salt),
    );
    let batches = read_parquet(&done[0].path);
    let schema = batches[0].schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "user_hash",
            "years",
            "signup_date",
            "seen_hash",
            SOURCE_COLUMN,
            INGESTED_AT_COLUMN
        ]
    );
    // sha256("pepper" + "alice"), and a timestamp hashed through its RFC 3339 text.
    let hashes = strings(&batches, 0);
    let expected = |text: &str| {
        use sha2::{Digest, Sha256};
        Sha256::digest(format!("pepper{text}"))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    assert_eq!(hashes, [Some(expected("alice")), Some(expected("bob"))]);
    assert_eq!(
        strings(&batches, 3),
        [Some(expected("1970-01-01T00:00:00Z")), None],
        "nulls stay null"
    );
    let years = batches[0]
        .column(1)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    assert_eq!(years.iter().collect::<Vec<_>>(), [Some(30), None]);
}

#[test]
fn spool_round_trips() {
    let d = dataset(FileFormat::Csv, Partition::IngestDate);
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::create(&dir.path().join("s.arrow"), &full_schema(&d)).unwrap();
    convert(
        "user_id\na\nb\nc\n".as_bytes(),
        "in",
        &d,
        &lineage(),
        ConvertOptions::sequential(2),
        &mut spool,
        &mut (),
    )
    .unwrap();
    let path = spool.finish().unwrap();
    let batches: Vec<RecordBatch> = read_spool(&path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        batches.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
        [2, 1]
    );
    assert_eq!(batches[0].column(0).len(), 2);
}

#[test]
fn the_zstd_level_is_the_configured_one() {
    // Text that compresses, unevenly: higher levels find more of it.
    let mut x: u64 = 7;
    let words = ["alpha", "bravo", "charlie", "delta", "echo", "fox", "golf"];
    let text: Vec<String> = (0..20_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!(
                "{} {} {}",
                words[(x % 7) as usize],
                x % 1000,
                words[(x / 7 % 7) as usize]
            )
        })
        .collect();
    use arrow::array::StringArray;
    use arrow::datatypes::{Field, Schema};
    use arrow::record_batch::RecordBatch;
    use std::sync::Arc;
    let schema = Arc::new(Schema::new(vec![Field::new("t", DataType::Utf8, false)]));
    let batch =
        RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(text))]).unwrap();
    let size = |level: i32| {
        let options = ParquetOptions {
            zstd_level: level,
            ..ParquetOptions::default()
        };
        let mut out = Vec::new();
        let props = crate::convert::writer_properties(&options);
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(&mut out, schema.clone(), Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        out.len()
    };
    assert!(size(19) < size(1), "{} vs {}", size(19), size(1));
}
