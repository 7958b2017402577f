//! Row rules in either format: every problem of a row, unique keys, extra columns, long rows.

use super::*;
use crate::config::EXTRA_COLUMN;
use crate::domain::dataset::NewColumns;

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
fn on_new_columns_can_be_kept_as_json() {
    let mut d = dataset(FileFormat::Csv, Partition::IngestDate);
    d.policy.on_new_columns = NewColumns::Keep;
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
    j.policy.on_new_columns = NewColumns::Keep;
    let (_, batches) = collect(
        "{\"user_id\": \"a\", \"x\": [1]}\n{\"user_id\": \"b\"}\n",
        &j,
    );
    assert_eq!(strings(&batches, 6), [Some(r#"{"x":[1]}"#.into()), None]);
    j.policy.on_new_columns = NewColumns::Reject;
    let (report, _) = collect("{\"user_id\": \"a\", \"x\": 1}\n", &j);
    assert_eq!(
        errors(&report),
        ["line 1: keys the dataset does not declare: x"]
    );
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
fn undeclared_columns_are_named_in_the_report_whatever_the_policy_does() {
    for policy in [NewColumns::Ignore, NewColumns::Keep, NewColumns::Rescue] {
        let mut d = dataset(FileFormat::Csv, Partition::IngestDate);
        d.policy.on_new_columns = policy;
        let (report, _) = collect("user_id,team,nickname\na,red,ace\n", &d);
        let names: Vec<&str> = report.new_columns.iter().map(String::as_str).collect();
        assert_eq!(names, ["nickname", "team"], "{policy:?}");

        let mut j = dataset(FileFormat::Jsonl, Partition::IngestDate);
        j.policy.on_new_columns = policy;
        let lines = "{\"user_id\": \"a\", \"z\": 1}\n{\"user_id\": \"b\"}\n{\"user_id\": \"c\", \"y\": 2, \"z\": 3}\n";
        let (report, _) = collect(lines, &j);
        let names: Vec<&str> = report.new_columns.iter().map(String::as_str).collect();
        assert_eq!(names, ["y", "z"], "{policy:?}: every chunk's keys");
    }
    let d = dataset(FileFormat::Jsonl, Partition::IngestDate);
    let many: String = (0..150)
        .map(|i| format!("{{\"user_id\": \"u\", \"k{i:03}\": 1}}\n"))
        .collect();
    let (report, _) = collect(&many, &d);
    assert_eq!(
        report.new_columns.len(),
        crate::convert::report::MAX_NEW_COLUMNS
    );
    let (report, _) = collect(
        "user_id,age\na,1\n",
        &dataset(FileFormat::Csv, Partition::IngestDate),
    );
    assert!(report.new_columns.is_empty());
}
