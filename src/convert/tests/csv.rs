//! CSV files: typed columns, row errors and their lines, UTF-8, headers, empty files, options.

use arrow::array::{
    Array, BooleanArray, Date32Array, Float64Array, Int64Array, TimestampMicrosecondArray,
};

use super::*;
use crate::config::SOURCE_COLUMN;
use crate::domain::dataset::{Header, NewColumns};
use crate::domain::schema::timestamp_type;

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
    strict.policy.on_new_columns = NewColumns::Reject;
    let extra = convert_text("user_id,nickname\na,b\n", &strict);
    assert_eq!(
        extra.to_string(),
        "line 1: the header has columns the dataset does not declare: nickname (on_new_columns = \"reject\")"
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
fn empty_and_header_only_files_have_no_rows() {
    let d = dataset(FileFormat::Csv, Partition::IngestDate);
    for input in ["", "user_id,age\n", "\u{feff}", "\n\n"] {
        let (report, batches) = collect(input, &d);
        assert_eq!(report, ConvertReport::default(), "{input:?}");
        assert!(batches.is_empty());
    }
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
