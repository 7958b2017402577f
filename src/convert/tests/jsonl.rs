//! JSON lines and inline records: objects, escapes, repeated keys, max_columns.

use super::*;
use crate::domain::dataset::NewColumns;

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
fn jsonl_escapes_and_repeated_keys_read_like_a_json_object() {
    // The last of a repeated key wins; escaped strings are unescaped; kept extra keys come
    // out sorted, as a JSON object does.
    let input =
        "{\"user_id\": \"a\\\"b\", \"z\": 1, \"user_id\": \"c\\u00e9\", \"y\": 2, \"z\": 3}\n";
    let mut j = dataset(FileFormat::Jsonl, Partition::IngestDate);
    j.policy.on_new_columns = NewColumns::Keep;
    let (report, batches) = collect(input, &j);
    assert_eq!(report.rows_written, 1, "{:?}", errors(&report));
    assert_eq!(strings(&batches, 0), [Some("c\u{e9}".into())]);
    assert_eq!(strings(&batches, 6), [Some(r#"{"y":2,"z":3}"#.into())]);
    j.policy.on_new_columns = NewColumns::Reject;
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
    j.policy.on_new_columns = NewColumns::Keep;
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
