//! The `rescue` policies: undeclared columns and bad cells kept in `_rescued`, in either
//! format, and what still quarantines a row.

use std::sync::Arc;

use super::*;
use crate::config::RESCUED_COLUMN;
use crate::domain::dataset::{NewColumns, OnInvalid};
use crate::domain::schema::{LakeOutput, Redaction};

/// The `_rescued` values of the batches, parsed.
fn rescued(batches: &[RecordBatch]) -> Vec<Option<serde_json::Value>> {
    let index = batches[0].schema().index_of(RESCUED_COLUMN).unwrap();
    strings(batches, index)
        .into_iter()
        .map(|v| v.map(|text| serde_json::from_str(&text).unwrap()))
        .collect()
}

#[test]
fn new_columns_are_rescued_as_text_in_either_format() {
    let mut d = dataset(FileFormat::Csv, Partition::IngestDate);
    d.policy.on_new_columns = NewColumns::Rescue;
    let (report, batches) = collect("user_id,nickname,age,team\na,ace,1,red\nb,,2,\n", &d);
    assert_eq!((report.rows_written, report.rows_rescued), (2, 2));
    assert_eq!(batches[0].schema().field(6).name(), RESCUED_COLUMN);
    assert_eq!(
        rescued(&batches),
        [
            Some(serde_json::json!({"nickname": "ace", "team": "red"})),
            Some(serde_json::json!({"nickname": "", "team": ""}))
        ]
    );

    let mut j = dataset(FileFormat::Jsonl, Partition::IngestDate);
    j.policy.on_new_columns = NewColumns::Rescue;
    let input = "{\"user_id\": \"a\", \"x\": [1, 2], \"n\": 1.50, \"s\": \"t\", \"z\": null}\n\
                 {\"user_id\": \"b\", \"age\": 3}\n";
    let (report, batches) = collect(input, &j);
    assert_eq!((report.rows_written, report.rows_rescued), (2, 1));
    assert_eq!(
        rescued(&batches),
        [
            // Raw text: non-string JSON values as their JSON text.
            Some(serde_json::json!({"x": "[1,2]", "n": "1.5", "s": "t", "z": "null"})),
            None
        ]
    );
}

#[test]
fn bad_cells_are_rescued_and_required_or_key_columns_still_quarantine() {
    for format in [FileFormat::Csv, FileFormat::Jsonl] {
        let mut d = dataset(format, Partition::IngestDate);
        d.policy.on_invalid = OnInvalid::Rescue;
        d.policy.unique_key = vec![0];
        d.columns[2].rules.min = Some(crate::domain::schema::Limit::Float(0.0));
        let input = match format {
            FileFormat::Csv => "user_id,age,score,active\n\
                                a,x,1.5,true\n\
                                b,2,-1,maybe\n\
                                ,bad,1,true\n\
                                a,4,1,true\n\
                                c,5,2,false\n",
            FileFormat::Jsonl => "{\"user_id\": \"a\", \"age\": \"x\", \"score\": 1.5, \"active\": true}\n\
                                  {\"user_id\": \"b\", \"age\": 2, \"score\": -1, \"active\": \"maybe\"}\n\
                                  {\"age\": \"bad\", \"score\": 1, \"active\": true}\n\
                                  {\"user_id\": \"a\", \"age\": 4}\n\
                                  {\"user_id\": \"c\", \"age\": 5, \"score\": 2, \"active\": false}\n",
        };
        let (report, batches, bad) = run_on(input.as_bytes(), &d, 10);
        assert_eq!(
            (
                report.rows_written,
                report.rows_rescued,
                report.rows_rejected
            ),
            (3, 2, 2),
            "{format:?}: {:?}",
            errors(&report)
        );
        let ages: Vec<Option<i64>> = batches[0]
            .column(1)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(ages, [None, Some(2), Some(5)], "{format:?}");
        assert_eq!(
            rescued(&batches),
            [
                Some(serde_json::json!({"age": "x", "_rules": {"age": "type"}})),
                Some(serde_json::json!({
                    "score": "-1",
                    "active": "maybe",
                    "_rules": {"score": "min", "active": "type"}
                })),
                None
            ],
            "{format:?}"
        );
        let rules: Vec<Vec<&str>> = bad
            .iter()
            .map(|row| {
                let errors = row["errors"].as_array().unwrap();
                errors.iter().map(|e| e["rule"].as_str().unwrap()).collect()
            })
            .collect();
        // A quarantined row lists its rescuable problems too (`age` "x" is not an int).
        assert_eq!(
            rules,
            [vec!["required", "type"], vec!["unique_key"]],
            "{format:?}"
        );
    }
}

#[test]
fn rescued_cells_of_pii_or_dropped_columns_are_never_in_clear() {
    let mut d = dataset(FileFormat::Csv, Partition::IngestDate);
    d.policy.on_invalid = OnInvalid::Rescue;
    d.columns[1].lake = LakeOutput::Hash { name: "age".into() };
    d.columns[1].pii = Some(Redaction::Hash {
        salt: Arc::from("s"),
    });
    d.columns[2].lake = LakeOutput::Drop;
    let (report, batches) = collect("user_id,age,score\na,secret-age,nope\n", &d);
    assert_eq!(report.rows_rescued, 1);
    let value = rescued(&batches)[0].clone().unwrap();
    let text = value.to_string();
    assert!(
        !text.contains("secret-age") && !text.contains("nope"),
        "{text}"
    );
    assert!(value["age"].as_str().unwrap().starts_with("<pii sha256:"));
    assert_eq!(value["score"], "<omitted>");
    assert_eq!(
        value["_rules"],
        serde_json::json!({"age": "type", "score": "type"})
    );
}

#[test]
fn both_rescues_share_one_object_and_the_rules_key_never_hides_a_column() {
    let mut j = dataset(FileFormat::Jsonl, Partition::IngestDate);
    j.policy.on_invalid = OnInvalid::Rescue;
    j.policy.on_new_columns = NewColumns::Rescue;
    let (report, batches) = collect(
        "{\"user_id\": \"a\", \"age\": true, \"_rules\": \"mine\"}\n",
        &j,
    );
    assert_eq!(report.rows_rescued, 1);
    assert_eq!(
        rescued(&batches),
        [Some(serde_json::json!({
            "age": "true",
            "_rules": "mine",
            "__rules": {"age": "type"}
        }))]
    );
}

#[test]
fn without_rescue_the_same_rows_are_quarantined_and_there_is_no_rescued_column() {
    let d = dataset(FileFormat::Csv, Partition::IngestDate);
    let (report, batches) = collect("user_id,age,extra\na,1,x\nb,x,y\n", &d);
    assert_eq!((report.rows_written, report.rows_rejected), (1, 1));
    assert!(batches[0].schema().index_of(RESCUED_COLUMN).is_err());
}

#[test]
fn a_records_item_counts_its_rescued_text_against_the_400_kb_limit() {
    let mut d = dataset(FileFormat::Csv, Partition::IngestDate);
    d.policy.on_new_columns = NewColumns::Rescue;
    d.policy.max_row_bytes = 1024 * 1024;
    d.records = Some(crate::domain::dataset::RecordsTarget {
        table: "users".into(),
        key_index: 0,
    });
    let big = "x".repeat(300 * 1024);
    // Each row is under 400 KB in its declared columns; with its rescued text, the
    // second is not.
    let input = format!("user_id,note,other\na,{big},\nb,{big},{big}\n");
    let (report, batches) = collect(&input, &d);
    assert_eq!((report.rows_written, report.rows_rejected), (1, 1));
    assert_eq!(report.errors[0].rule, "dynamodb_item_size");
    assert_eq!(strings(&batches, 0), [Some("a".into())]);
}
