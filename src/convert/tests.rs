//! Converter tests: CSV and JSON lines parsing, row problems, limits, CSV options, extra
//! columns, unique keys, compressed input, the quarantine and the lake transforms.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, BooleanArray, Date32Array, Float64Array, Int64Array, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;

use super::*;
use crate::config::{
    Compression, ParquetOptions, Secret, EXTRA_COLUMN, INGESTED_AT_COLUMN, SOURCE_COLUMN,
};
use crate::domain::dataset::{testing, ExtraColumns, FileFormat, Header, Partition};
use crate::domain::schema::{timestamp_type, Column, ColumnType, LakeOutput, UTC};

fn columns() -> Vec<Column> {
    vec![
        Column::new("user_id", ColumnType::String, true),
        Column::new("age", ColumnType::Int, false),
        Column::new("score", ColumnType::Float, false),
        Column::new("active", ColumnType::Bool, false),
        Column::new("signup_date", ColumnType::Date, false),
        Column::new("seen_at", ColumnType::Timestamp, false),
    ]
}

fn dataset(format: FileFormat, partition: Partition) -> Dataset {
    testing::dataset(format, partition, columns())
}

fn lineage() -> Lineage {
    Lineage {
        source: "s3://b/k".into(),
        ingested_at: 5,
        ingest_date: 19000,
    }
}

/// Bad rows kept in memory, as the quarantine would write them.
fn quarantine() -> Quarantine<Vec<u8>> {
    Quarantine::in_memory()
}

fn run_on(
    input: &[u8],
    dataset: &Dataset,
    batch_rows: usize,
) -> (ConvertReport, Vec<RecordBatch>, Vec<serde_json::Value>) {
    let mut sink = Collect::default();
    let mut bad = quarantine();
    let report = convert(
        input,
        "in.csv",
        dataset,
        &lineage(),
        ConvertOptions::sequential(batch_rows),
        &mut sink,
        &mut bad,
    )
    .unwrap();
    let lines = String::from_utf8(bad.finish().unwrap()).unwrap();
    let bad_rows = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (report, sink.0, bad_rows)
}

fn collect(input: &str, dataset: &Dataset) -> (ConvertReport, Vec<RecordBatch>) {
    let (report, batches, _) = run_on(input.as_bytes(), dataset, 2);
    (report, batches)
}

fn errors(report: &ConvertReport) -> Vec<String> {
    report.errors.iter().map(ToString::to_string).collect()
}

fn strings(batches: &[RecordBatch], column: usize) -> Vec<Option<String>> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b
                .column(column)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            a.iter().map(|v| v.map(str::to_owned)).collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn csv_columns_are_found_by_name_and_typed() {
    let d = dataset(FileFormat::Csv, Partition::IngestDate);
    let input = "\u{feff}active,user_id,age,score,signup_date,seen_at,unused\r\n\
                 yes,u1,30,1.5,2024-01-02,2024-01-02T03:04:05Z,x\r\n\
                 ,u2,,,,,\r\n\
                 false,\"u,3\n\"\"quoted\"\"\",7,2,2024-01-03,2024-01-03 00:00:00,y\r\n";
    let (report, batches) = collect(input, &d);
    assert_eq!(report.errors, vec![]);
    assert_eq!((report.rows_in, report.rows_written), (3, 3));
    assert_eq!(batches.len(), 2, "batch_rows = 2");
    let b = &batches[0];
    assert_eq!(b.schema().field(5).data_type(), &timestamp_type());
    assert_eq!(b.schema().field(6).name(), SOURCE_COLUMN);
    assert_eq!(
        strings(&batches, 0),
        [
            Some("u1".into()),
            Some("u2".into()),
            Some("u,3\n\"quoted\"".into())
        ]
    );
    let ages = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
    assert_eq!(ages.iter().collect::<Vec<_>>(), [Some(30), None]);
    let scores = b.column(2).as_any().downcast_ref::<Float64Array>().unwrap();
    assert_eq!(scores.value(0), 1.5);
    let active = b.column(3).as_any().downcast_ref::<BooleanArray>().unwrap();
    assert_eq!(active.iter().collect::<Vec<_>>(), [Some(true), None]);
    let dates = b.column(4).as_any().downcast_ref::<Date32Array>().unwrap();
    assert_eq!(dates.value(0), 19724);
    let seen = b
        .column(5)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .unwrap();
    assert_eq!(seen.value(0), 1_704_164_645_000_000);
    assert_eq!(strings(&batches, 6), vec![Some("s3://b/k".to_owned()); 3]);
}

#[test]
fn csv_row_errors_have_line_numbers_and_rules() {
    let d = dataset(FileFormat::Csv, Partition::IngestDate);
    let input = "user_id,age\nu1,1\n,2\nu3,old\n\"u4\nstill u4\",x\n\nu5\nu6,6,extra\n";
    let (report, batches, bad) = run_on(input.as_bytes(), &d, 10);
    assert_eq!(
        (report.rows_in, report.rows_written, report.rows_rejected),
        (6, 1, 5)
    );
    assert_eq!(
        errors(&report),
        [
            "line 3, column user_id: required value is missing",
            "line 4, column age: \"old\" is not a 64-bit integer",
            "line 5, column age: \"x\" is not a 64-bit integer",
            "line 8: expected 2 fields, found 1",
            "line 9: expected 2 fields, found 3",
        ]
    );
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 1);
    assert!(report.error_summary(2).ends_with("(and 3 more)"));
    // The quarantine keeps the raw row, its position and every problem with its rule.
    assert_eq!(bad.len(), 5);
    assert_eq!(bad[2]["raw"], "\"u4\nstill u4\",x");
    assert_eq!(bad[2]["line"], 5);
    assert_eq!(bad[2]["byte_offset"], 27);
    assert_eq!(bad[0]["errors"][0]["rule"], "required");
    assert_eq!(bad[0]["errors"][0]["column"], "user_id");
    assert_eq!(bad[3]["errors"][0]["rule"], "fields");
    assert_eq!(bad[3]["errors"][0]["column"], serde_json::Value::Null);
}

#[test]
fn every_problem_of_a_row_is_reported() {
    let d = dataset(FileFormat::Csv, Partition::IngestDate);
    let (report, _, bad) = run_on(b"user_id,age,score\n,x,y\n", &d, 10);
    assert_eq!(report.rows_rejected, 1);
    let rules: Vec<&str> = bad[0]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["required", "type", "type"]);
}

#[test]
fn csv_invalid_utf8_is_a_row_error_with_its_offset() {
    let d = dataset(FileFormat::Csv, Partition::IngestDate);
    let (report, _, bad) = run_on(b"user_id\nu1\nu\xff2\nu3\n", &d, 10);
    assert_eq!((report.rows_written, report.rows_rejected), (2, 1));
    assert_eq!(
        errors(&report)[0],
        "line 3: field 1 is not valid UTF-8 (the row starts at byte 11)"
    );
    assert_eq!(bad[0]["errors"][0]["rule"], "utf8");
    assert_eq!(bad[0]["raw"], "u\u{fffd}2");
}

#[test]
fn utf8_is_checked_per_field() {
    // Two invalid halves of one character, split by the delimiter, make a valid whole:
    // found by the csv fuzz target (a panic in the header, an empty cell in a row).
    let d = dataset(FileFormat::Csv, Partition::IngestDate);
    let (report, _) = collect_bytes(b"user_id,age\n\xef\xbb,\xbf\n", &d);
    assert_eq!(
        errors(&report),
        ["line 2: field 1 is not valid UTF-8 (the row starts at byte 12)"]
    );
    let err = convert(
        &b"user_\xef\xbb,\xbfid\n"[..],
        "x",
        &d,
        &lineage(),
        ConvertOptions::sequential(10),
        &mut Collect::default(),
        &mut (),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 1: the header is not UTF-8 (column 1)"
    );
}

fn collect_bytes(input: &[u8], dataset: &Dataset) -> (ConvertReport, Vec<RecordBatch>) {
    let (report, batches, _) = run_on(input, dataset, 10);
    (report, batches)
}

#[test]
fn a_header_problem_rejects_the_file() {
    let d = dataset(FileFormat::Csv, Partition::IngestDate);
    let convert_text = |text: &str, d: &Dataset| {
        convert(
            text.as_bytes(),
            "x.csv",
            d,
            &lineage(),
            ConvertOptions::sequential(10),
            &mut Collect::default(),
            &mut (),
        )
        .unwrap_err()
    };
    let err = convert_text("age\n1\n", &d);
    assert!(!err.is_transient());
    assert_eq!(
        err.to_string(),
        "line 1: the header lacks required column(s) user_id; found age"
    );
    let twice = convert_text("user_id,user_id\na,b\n", &d);
    assert_eq!(
        twice.to_string(),
        "line 1: the header names column \"user_id\" twice"
    );
    let mut strict = dataset(FileFormat::Csv, Partition::IngestDate);
    strict.policy.extra_columns = ExtraColumns::Reject;
    let extra = convert_text("user_id,nickname\na,b\n", &strict);
    assert_eq!(
        extra.to_string(),
        "line 1: the header has columns the dataset does not declare: nickname (extra_columns = \"reject\")"
    );
    let mut narrow = dataset(FileFormat::Csv, Partition::IngestDate);
    narrow.policy.max_columns = 3;
    let wide = convert_text("user_id,a,b,c,d\n", &narrow);
    assert!(
        wide.to_string().contains("more than max_columns (3)"),
        "{wide}"
    );
    narrow.csv.header = Header::Names(vec!["user_id".into(), "age".into()]);
    let (report, _) = collect("a,1\nb,2,3,4,5\n", &narrow);
    assert_eq!(errors(&report), ["line 2: the row has more than 3 fields"]);
}

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

#[test]
fn empty_and_header_only_files_have_no_rows() {
    let d = dataset(FileFormat::Csv, Partition::IngestDate);
    for input in ["", "user_id,age\n", "\u{feff}", "\n\n"] {
        let (report, batches) = collect(input, &d);
        assert_eq!(report, ConvertReport::default(), "{input:?}");
        assert!(batches.is_empty());
    }
}

#[test]
fn long_rows_are_bad_rows_and_never_held_whole() {
    let mut d = dataset(FileFormat::Csv, Partition::IngestDate);
    d.policy.max_row_bytes = 64;
    let long = "x".repeat(10_000);
    let input = format!("user_id,age\nu1,1\n\"{long}\n{long}\",2\nu3,3\n");
    let (report, _, bad) = run_on(input.as_bytes(), &d, 10);
    assert_eq!((report.rows_written, report.rows_rejected), (2, 1));
    assert_eq!(errors(&report), ["line 3: the row is longer than 64 bytes"]);
    assert_eq!(
        bad[0]["raw"].as_str().unwrap().len(),
        64,
        "the quarantine keeps only the first bytes"
    );
    let mut j = dataset(FileFormat::Jsonl, Partition::IngestDate);
    j.policy.max_row_bytes = 64;
    let input =
        format!("{{\"user_id\": \"a\"}}\n{{\"user_id\": \"{long}\"}}\n{{\"user_id\": \"c\"}}\n");
    let (report, _, _) = run_on(input.as_bytes(), &j, 10);
    assert_eq!((report.rows_written, report.rows_rejected), (2, 1));
    assert_eq!(
        errors(&report),
        ["line 2: the line is longer than 64 bytes"]
    );
}

#[test]
fn csv_options() {
    let mut d = dataset(FileFormat::Csv, Partition::IngestDate);
    d.csv.delimiter = b';';
    d.csv.quote = Some(b'\'');
    d.csv.escape = Some(b'\\');
    d.csv.comment = Some(b'#');
    d.csv.skip_rows = 2;
    let input = "exported by tool X\nversion 3\nuser_id;age\n# a comment\n'a;\\'b';1\nc;2\n";
    let (report, batches) = collect(input, &d);
    assert_eq!(errors(&report), Vec::<String>::new());
    assert_eq!(
        strings(&batches, 0),
        [Some("a;'b".into()), Some("c".into())]
    );

    let mut headless = dataset(FileFormat::Csv, Partition::IngestDate);
    headless.csv.header = Header::Names(vec!["age".into(), "user_id".into()]);
    headless.csv.delimiter = b'\t';
    let (report, batches) = collect("1\ta\n2\tb\n", &headless);
    assert_eq!(report.rows_written, 2);
    assert_eq!(strings(&batches, 0), [Some("a".into()), Some("b".into())]);
    let (report, _) = collect("1\n", &headless);
    assert_eq!(errors(&report), ["line 1: expected 2 fields, found 1"]);
}

#[test]
fn extra_columns_can_be_kept_as_json() {
    let mut d = dataset(FileFormat::Csv, Partition::IngestDate);
    d.policy.extra_columns = ExtraColumns::Keep;
    let (report, batches) = collect("user_id,nickname,team\na,ace,red\nb,,blue\n", &d);
    assert_eq!(report.rows_written, 2);
    let schema = batches[0].schema();
    assert_eq!(schema.field(6).name(), EXTRA_COLUMN);
    assert_eq!(
        strings(&batches, 6),
        [
            Some(r#"{"nickname":"ace","team":"red"}"#.into()),
            Some(r#"{"nickname":"","team":"blue"}"#.into())
        ]
    );
    let mut j = dataset(FileFormat::Jsonl, Partition::IngestDate);
    j.policy.extra_columns = ExtraColumns::Keep;
    let (_, batches) = collect(
        "{\"user_id\": \"a\", \"x\": [1]}\n{\"user_id\": \"b\"}\n",
        &j,
    );
    assert_eq!(strings(&batches, 6), [Some(r#"{"x":[1]}"#.into()), None]);
    j.policy.extra_columns = ExtraColumns::Reject;
    let (report, _) = collect("{\"user_id\": \"a\", \"x\": 1}\n", &j);
    assert_eq!(
        errors(&report),
        ["line 1: keys the dataset does not declare: x"]
    );
}

#[test]
fn jsonl_escapes_and_repeated_keys_read_like_a_json_object() {
    // The last of a repeated key wins; escaped strings are unescaped; kept extra keys come
    // out sorted, as a JSON object does.
    let input =
        "{\"user_id\": \"a\\\"b\", \"z\": 1, \"user_id\": \"c\\u00e9\", \"y\": 2, \"z\": 3}\n";
    let mut j = dataset(FileFormat::Jsonl, Partition::IngestDate);
    j.policy.extra_columns = ExtraColumns::Keep;
    let (report, batches) = collect(input, &j);
    assert_eq!(report.rows_written, 1, "{:?}", errors(&report));
    assert_eq!(strings(&batches, 0), [Some("c\u{e9}".into())]);
    assert_eq!(strings(&batches, 6), [Some(r#"{"y":2,"z":3}"#.into())]);
    j.policy.extra_columns = ExtraColumns::Reject;
    let (report, _) = collect(input, &j);
    assert_eq!(
        errors(&report),
        ["line 1: keys the dataset does not declare: y, z"]
    );
}

#[test]
fn jsonl_objects_with_more_keys_than_max_columns_are_bad_rows() {
    let mut j = dataset(FileFormat::Jsonl, Partition::IngestDate);
    j.policy.max_columns = 3;
    j.policy.extra_columns = ExtraColumns::Keep;
    let input = "{\"user_id\": \"a\", \"age\": 1, \"x\": 2}\n\
                 {\"user_id\": \"b\", \"age\": 1, \"x\": 2, \"y\": {\"deep\": [1]}, \"z\": 4}\n\
                 {\"user_id\": \"c\", \"user_id\": \"d\", \"age\": 1, \"age\": 2}\n";
    let (report, batches, bad) = run_on(input.as_bytes(), &j, 10);
    assert_eq!((report.rows_in, report.rows_written), (3, 1));
    assert_eq!(
        errors(&report),
        [
            "line 2: the object has more than 3 keys (max_columns)",
            "line 3: the object has more than 3 keys (max_columns)"
        ],
        "repeated keys count too"
    );
    assert_eq!(report.errors[0].rule, "max_columns");
    assert_eq!(bad[0]["errors"][0]["rule"], "max_columns");
    assert_eq!(strings(&batches, 0), [Some("a".into())]);
    assert_eq!(strings(&batches, 6), [Some(r#"{"x":2}"#.into())]);
    // Inline records take the same path.
    let records = vec![serde_json::json!({"user_id": "a", "p": 1, "q": 2, "r": 3})];
    let report =
        convert_records(&records, &j, &lineage(), &mut Collect::default(), &mut ()).unwrap();
    assert_eq!(
        errors(&report),
        ["line 1: the object has more than 3 keys (max_columns)"]
    );
}

#[test]
fn duplicate_keys_are_bad_rows_when_a_unique_key_is_set() {
    let mut d = dataset(FileFormat::Csv, Partition::IngestDate);
    d.policy.unique_key = vec![0, 1];
    let (report, _) = collect("user_id,age\na,1\na,2\nb,1\na,1\n,1\n", &d);
    assert_eq!((report.rows_written, report.rows_rejected), (3, 2));
    assert_eq!(
        errors(&report),
        [
            "line 5: duplicate key; first seen at line 2",
            "line 6, column user_id: required value is missing"
        ]
    );
}

#[test]
fn jsonl_rows() {
    let d = dataset(FileFormat::Jsonl, Partition::IngestDate);
    let input = "{\"user_id\": \"u1\", \"age\": 3, \"active\": true, \"extra\": 1}\n\
                 \n\
                 [1, 2]\n\
                 {\"user_id\": {\"nested\": [1]}, \"score\": \"2.5\"}\r\n\
                 {\"user_id\": \"u4\", \"age\": 1.5}\n\
                 {bad json\n";
    let (report, batches) = collect(input, &d);
    assert_eq!((report.rows_in, report.rows_written), (5, 2));
    let errors = errors(&report);
    assert_eq!(errors[0], "line 3: the line is not a JSON object");
    assert_eq!(
        errors[1],
        "line 5, column age: \"1.5\" is not a 64-bit integer"
    );
    assert!(
        errors[2].starts_with("line 6: the line is not valid JSON"),
        "{errors:?}"
    );
    assert_eq!(
        strings(&batches, 0),
        [Some("u1".into()), Some("{\"nested\":[1]}".into())]
    );
}

#[test]
fn compressed_inputs_are_read_by_their_magic() {
    let d = dataset(FileFormat::Csv, Partition::IngestDate);
    let text = b"user_id,age\na,1\nb,2\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::stream::encode_all(&text[..], 1).unwrap();
    for (bytes, name) in [(gz, "a.csv.gz"), (zst, "a.csv.zst")] {
        let mut sink = Collect::default();
        let report = convert(
            bytes.as_slice(),
            name,
            &d,
            &lineage(),
            ConvertOptions::sequential(10),
            &mut sink,
            &mut (),
        )
        .unwrap();
        assert_eq!(report.rows_written, 2, "{name}");
    }
    let err = convert(
        &text[..],
        "a.csv.gz",
        &d,
        &lineage(),
        ConvertOptions::sequential(10),
        &mut Collect::default(),
        &mut (),
    )
    .unwrap_err();
    assert!(matches!(err, ConvertError::Malformed(_)), "{err}");
}

#[test]
fn inline_records_are_validated_like_files() {
    let d = dataset(FileFormat::Csv, Partition::IngestDate);
    let records = vec![
        serde_json::json!({"user_id": "a"}),
        serde_json::json!("x"),
        serde_json::json!({"age": 1}),
    ];
    let mut sink = Collect::default();
    let report = convert_records(&records, &d, &lineage(), &mut sink, &mut ()).unwrap();
    assert_eq!((report.rows_in, report.rows_written), (3, 1));
    assert_eq!(
        errors(&report),
        [
            "line 2: the line is not a JSON object",
            "line 3, column user_id: required value is missing"
        ]
    );
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
        row_group_size: 1000,
        target_file_size: 40_000,
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
fn ingest_date_partition_is_one_part() {
    let d = dataset(FileFormat::Csv, Partition::IngestDate);
    let done = lake_parts(&d, "user_id\na\nb\n", 1, None);
    assert_eq!(done.len(), 1);
    assert_eq!((done[0].partition, done[0].rows), (Some(19000), 2));
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
fn input_arriving_a_byte_at_a_time() {
    struct OneByte<'a>(&'a [u8]);
    impl Read for OneByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() || buf.is_empty() {
                return Ok(0);
            }
            buf[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }
    let d = dataset(FileFormat::Csv, Partition::IngestDate);
    let input = "\u{feff}user_id,age\n\"u\n1\",1\nu2,2\n";
    let mut sink = Collect::default();
    let report = convert(
        OneByte(input.as_bytes()),
        "in",
        &d,
        &lineage(),
        ConvertOptions::sequential(10),
        &mut sink,
        &mut (),
    )
    .unwrap();
    assert_eq!(report.rows_written, 2);
    assert_eq!(
        strings(&sink.0, 0),
        [Some("u\n1".into()), Some("u2".into())]
    );
}

// ----- memory: chunks and row groups are bounded by bytes as well as rows --------------

/// Text that differs from row to row and compresses poorly: `len` hex digits.
fn noise(seed: u64, len: usize) -> String {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b"0123456789abcdef"[(state % 16) as usize])
        })
        .collect()
}

/// `rows` rows with a `user_id` of about `bytes` and a `signup_date` among `days` dates,
/// as CSV or JSON lines.
fn long_rows(format: FileFormat, rows: usize, bytes: usize, days: usize) -> String {
    let mut text = match format {
        FileFormat::Csv => String::from("user_id,signup_date\n"),
        FileFormat::Jsonl => String::new(),
    };
    for row in 0..rows {
        let id = format!("{row:06}-{}", noise(row as u64, bytes));
        let day = crate::domain::schema::days_to_date((row % days) as i32).unwrap();
        match format {
            FileFormat::Csv => text.push_str(&format!("{id},{day}\n")),
            FileFormat::Jsonl => text.push_str(&format!(
                "{{\"user_id\":\"{id}\",\"signup_date\":\"{day}\"}}\n"
            )),
        }
    }
    text
}

/// Counts the bytes read from it.
struct CountingReader<'a> {
    inner: &'a [u8],
    read: Arc<std::sync::atomic::AtomicU64>,
}

impl Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// A slow sink: keeps the batches, and how far the input had been read at each, measured
/// after a pause on the first batch that lets earlier stages run as far ahead as they can.
struct SlowSink {
    read: Arc<std::sync::atomic::AtomicU64>,
    batches: Vec<RecordBatch>,
    read_at_batch: Vec<u64>,
}

impl BatchSink for SlowSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ConvertError> {
        if self.batches.is_empty() {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
        self.read_at_batch
            .push(self.read.load(std::sync::atomic::Ordering::Relaxed));
        self.batches.push(batch.clone());
        Ok(())
    }
}

/// The text bytes of a batch's user_id values.
fn id_bytes(batch: &RecordBatch) -> usize {
    let ids = batch
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    ids.iter().map(|id| id.map_or(0, str::len)).sum()
}

#[test]
fn chunks_are_cut_by_bytes_as_well_as_rows() {
    // Rows of about 500 KB with batch_rows 8192: cut by rows alone, one chunk of 20 MB.
    let memory = MemoryBudget::new(16 << 20);
    for format in [FileFormat::Csv, FileFormat::Jsonl] {
        let d = dataset(format, Partition::IngestDate);
        let input = long_rows(format, 40, 500_000, 1);
        for threads in [1, 2] {
            let read = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let mut sink = SlowSink {
                read: read.clone(),
                batches: Vec::new(),
                read_at_batch: Vec::new(),
            };
            let reader = CountingReader {
                inner: input.as_bytes(),
                read: read.clone(),
            };
            let options = ConvertOptions {
                batch_rows: 8192,
                threads,
                memory,
            };
            let report =
                convert(reader, "in", &d, &lineage(), options, &mut sink, &mut ()).unwrap();
            let what = format!("{format:?}, {threads} thread(s)");
            assert_eq!(
                (report.rows_written, report.rows_rejected),
                (40, 0),
                "{what}"
            );
            // Each chunk closes once it holds chunk_bytes, so it has at most one row more.
            let cap = memory.chunk_bytes(d.policy.max_row_bytes);
            assert_eq!(cap, 2 << 20);
            let sizes: Vec<usize> = sink.batches.iter().map(id_bytes).collect();
            assert!(
                sizes.iter().all(|size| *size <= cap + 500_007),
                "{what}: {sizes:?}"
            );
            // Every row, once, in file order.
            let ids = strings(&sink.batches, 0);
            let order: Vec<String> = ids
                .iter()
                .map(|id| id.as_ref().unwrap()[..6].to_owned())
                .collect();
            assert_eq!(
                order,
                (0..40).map(|row| format!("{row:06}")).collect::<Vec<_>>(),
                "{what}"
            );
            // While the first batch was being written, the stages before it held at most
            // the rows in flight, a chunk being split and the read buffer: nowhere near the
            // file, whatever the channels could hold.
            let mut written = 0;
            for (batch, read) in sink.batches.iter().zip(&sink.read_at_batch) {
                let ahead = read - written;
                assert!(
                    ahead <= memory.rows_in_flight() + (cap + (1 << 20)) as u64,
                    "{what}: {ahead} bytes read ahead of the writer"
                );
                written += input.len() as u64 * batch.num_rows() as u64 / 40;
            }
        }
    }
}

/// Writes every batch to `parts`, checking after each that the row groups being built
/// stay within `limit`; records the most they held.
struct Checked<'a> {
    parts: &'a mut LakeParts,
    limit: usize,
    most: usize,
}

impl BatchSink for Checked<'_> {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ConvertError> {
        self.parts.write(batch)?;
        let held = self.parts.buffered_bytes();
        assert!(
            held <= self.limit,
            "{held} bytes buffered, over {}",
            self.limit
        );
        self.most = self.most.max(held);
        Ok(())
    }
}

fn row_groups(path: &Path) -> Vec<(i64, i64)> {
    let reader =
        parquet::file::reader::SerializedFileReader::new(File::open(path).unwrap()).unwrap();
    parquet::file::reader::FileReader::metadata(&reader)
        .row_groups()
        .iter()
        .map(|g| (g.num_rows(), g.compressed_size()))
        .collect()
}

#[test]
fn row_groups_are_cut_by_bytes_across_every_partition() {
    let memory = MemoryBudget::new(16 << 20);
    let limit = memory.row_groups() as usize;
    let options = ParquetOptions {
        compression: Compression::None,
        ..ParquetOptions::default()
    };
    // 300 partitions of 4 KB rows, 24 MB in all, interleaved: by rows alone (a million
    // per row group) every partition would hold all of its rows until the end. Rows of
    // at most 8 KiB leave chunks of a sixty-fourth of the budget (256 KiB).
    let mut d = dataset(FileFormat::Csv, Partition::DateColumn { index: 4 });
    d.policy.max_row_bytes = 8192;
    let input = long_rows(FileFormat::Csv, 6000, 4000, 300);
    let dir = tempfile::tempdir().unwrap();
    let mut parts = LakeParts::new(dir.path(), &d, &lineage(), &options, None, memory);
    let mut checked = Checked {
        parts: &mut parts,
        limit,
        most: 0,
    };
    let options_run = ConvertOptions {
        batch_rows: 500,
        threads: 2,
        memory,
    };
    let report = convert(
        input.as_bytes(),
        "in",
        &d,
        &lineage(),
        options_run,
        &mut checked,
        &mut (),
    )
    .unwrap();
    assert_eq!(report.rows_written, 6000);
    assert!(
        checked.most > limit / 2,
        "the test fills the buffers: {}",
        checked.most
    );
    let done = parts.finish().unwrap();
    assert_eq!(done.len(), 300);
    let mut rows = 0;
    for part in &done {
        let groups = row_groups(&part.path);
        rows += groups.iter().map(|(n, _)| n).sum::<i64>();
        assert!(groups.len() > 1, "{:?}: {groups:?}", part.partition);
    }
    assert_eq!(rows, 6000);

    // One partition, and the one Parquet file of `lakeworker convert`: row groups of about
    // the Parquet share, cut at the same rows on one thread as on two.
    let mut d = dataset(FileFormat::Csv, Partition::IngestDate);
    d.policy.max_row_bytes = 8192;
    let input = long_rows(FileFormat::Csv, 6000, 4000, 1);
    struct CheckedFile<'a>(&'a mut ParquetFile, usize);
    impl BatchSink for CheckedFile<'_> {
        fn write(&mut self, batch: &RecordBatch) -> Result<(), ConvertError> {
            self.0.write(batch)?;
            let held = self.0.buffered_bytes();
            assert!(held <= self.1, "{held} bytes buffered, over {}", self.1);
            Ok(())
        }
    }
    let mut layouts = Vec::new();
    for threads in [2, 1] {
        let path = dir.path().join(format!("one-{threads}.parquet"));
        let props = writer_properties(&options);
        let mut file = ParquetFile::create(&path, full_schema(&d), props, memory).unwrap();
        let run = ConvertOptions {
            threads,
            ..options_run
        };
        let mut checked = CheckedFile(&mut file, limit);
        convert(
            input.as_bytes(),
            "in",
            &d,
            &lineage(),
            run,
            &mut checked,
            &mut (),
        )
        .unwrap();
        file.close().unwrap();
        let groups = row_groups(&path);
        assert!(groups.len() >= 3, "{groups:?}");
        assert_eq!(groups.iter().map(|(n, _)| n).sum::<i64>(), 6000);
        assert!(
            groups.iter().all(|(_, size)| *size as usize <= limit),
            "{groups:?}"
        );
        layouts.push(groups);
    }
    assert_eq!(layouts[0], layouts[1]);
}

#[test]
fn a_failing_sink_stops_a_splitter_waiting_for_room() {
    struct FailsSecond(usize);
    impl BatchSink for FailsSecond {
        fn write(&mut self, _: &RecordBatch) -> Result<(), ConvertError> {
            self.0 += 1;
            match self.0 {
                2 => Err(ConvertError::Write("no space left".into())),
                _ => Ok(()),
            }
        }
    }
    let d = dataset(FileFormat::Csv, Partition::IngestDate);
    let input = long_rows(FileFormat::Csv, 40, 500_000, 1);
    let (sender, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let options = ConvertOptions {
            batch_rows: 8192,
            threads: 2,
            memory: MemoryBudget::new(16 << 20),
        };
        let converted = convert(
            input.as_bytes(),
            "in",
            &d,
            &lineage(),
            options,
            &mut FailsSecond(0),
            &mut (),
        );
        let _ = sender.send(converted.map(|r| r.rows_written).map_err(|e| e.to_string()));
    });
    // The splitter is waiting for room the failed writer will never free: it must be let
    // go, not left hanging (the bound is generous; it takes a moment).
    let outcome = result.recv_timeout(std::time::Duration::from_secs(120));
    assert_eq!(outcome, Ok(Err("writing output: no space left".to_owned())));
}
