//! Bad rows and rejected files: the quarantine, rejection reports and the size limit.

use super::*;

#[tokio::test]
async fn bad_rows_are_quarantined_and_good_rows_flow() {
    let p = pipeline();
    let mut csv = String::from("user_id,age,signup_date\n");
    for i in 0..19 {
        csv.push_str(&format!("u-{i},{i},2024/01/01\n"));
    }
    csv.push_str("u-19,old,2024/01/01\n");
    p.store
        .insert(LANDING, "users/some-bad.csv", csv.as_bytes());
    let ObjectOutcome::Written(summary) = one_object(&p, "users/some-bad.csv").await else {
        panic!()
    };
    assert_eq!(
        (
            summary.rows_in,
            summary.rows_written,
            summary.rows_quarantined
        ),
        (20, 19, 1)
    );
    let quarantine = summary.quarantine.clone().unwrap();
    assert!(
        quarantine.starts_with("quarantine/users/dt=2024-03-04/")
            && quarantine.ends_with(".rows.jsonl"),
        "{quarantine}"
    );
    let lines = String::from_utf8(p.store.get(LAKE, &quarantine).unwrap()).unwrap();
    let bad: serde_json::Value = serde_json::from_str(lines.trim()).unwrap();
    assert_eq!(bad["line"], 21);
    assert_eq!(bad["raw"], "u-19,old,2024/01/01");
    assert_eq!(bad["errors"][0]["column"], "age");
    assert_eq!(bad["errors"][0]["rule"], "type");
    assert_eq!(table(&p).len(), 19, "the bad row is not upserted");
    let record = p
        .ledger
        .record("s3://lakeworker-landing/users/some-bad.csv")
        .unwrap();
    assert_eq!(
        (record.status, record.rows_rejected),
        (Some(Status::Done), Some(1))
    );
    assert!(record
        .outputs
        .contains(&format!("s3://{LAKE}/{quarantine}")));
}

#[tokio::test]
async fn too_many_bad_rows_reject_the_whole_file() {
    let p = pipeline();
    let csv = "user_id,age,signup_date\nu-1,1,2024/01/01\nu-2,x,2024/01/01\n";
    p.store.insert(LANDING, "users/dir/bad.csv", csv.as_bytes());
    let ObjectOutcome::Rejected(rejection) = one_object(&p, "users/dir/bad.csv").await else {
        panic!()
    };
    assert!(
        rejection
            .reason
            .starts_with("1 of 2 rows are invalid (50.0%), above max_invalid_fraction 0.1"),
        "{}",
        rejection.reason
    );
    assert!(rejection
        .quarantined_as
        .starts_with("quarantine/users/dt=2024-03-04/"));
    assert!(rejection.quarantined_as.ends_with("/bad.csv"));
    assert_eq!(
        p.store.get(LAKE, &rejection.quarantined_as).unwrap(),
        csv.as_bytes(),
        "copied unchanged"
    );
    let report_key = format!("{}.error.json", rejection.quarantined_as);
    let report: serde_json::Value =
        serde_json::from_slice(&p.store.get(LAKE, &report_key).unwrap()).unwrap();
    assert_eq!(
        (report["rows_in"].as_u64(), report["rows_invalid"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(
        report["errors"][0]["reason"],
        "\"x\" is not a 64-bit integer"
    );
    assert_eq!(
        report["source"],
        "s3://lakeworker-landing/users/dir/bad.csv"
    );
    assert!(
        p.store
            .keys(LAKE)
            .iter()
            .all(|k| k.starts_with("quarantine/")),
        "nothing in the lake"
    );
    assert!(table(&p).is_empty(), "nothing in the table");
    let record = p
        .ledger
        .record("s3://lakeworker-landing/users/dir/bad.csv")
        .unwrap();
    assert_eq!(record.status, Some(Status::Rejected));
    // A rejected file is an answered question: a redelivery does no work.
    let again = one_object(&p, "users/dir/bad.csv").await;
    assert!(
        matches!(
            again,
            ObjectOutcome::AlreadyDone {
                status: Status::Rejected,
                ..
            }
        ),
        "{again:?}"
    );
}

#[tokio::test]
async fn the_rejection_report_keeps_the_first_100_errors_and_counts_them_all() {
    let p = pipeline();
    let mut csv = String::from("user_id,age,signup_date\n");
    for i in 0..150 {
        csv.push_str(&format!("u-{i},age-{i},2024/01/01\n"));
    }
    p.store
        .insert(LANDING, "users/many-bad.csv", csv.as_bytes());
    let ObjectOutcome::Rejected(rejection) = one_object(&p, "users/many-bad.csv").await else {
        panic!()
    };
    assert_eq!((rejection.rows_in, rejection.rows_rejected), (150, 150));
    let report_key = format!("{}.error.json", rejection.quarantined_as);
    let report: serde_json::Value =
        serde_json::from_slice(&p.store.get(LAKE, &report_key).unwrap()).unwrap();
    assert_eq!(
        (
            report["rows_in"].as_u64(),
            report["rows_valid"].as_u64(),
            report["rows_invalid"].as_u64()
        ),
        (Some(150), Some(0), Some(150))
    );
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 100, "only the first 100 errors are described");
    assert_eq!(errors.len(), crate::convert::MAX_ERRORS_KEPT);
    assert_eq!(
        (&errors[0]["line"], &errors[99]["line"]),
        (&2.into(), &101.into())
    );
    assert_eq!(errors[99]["reason"], "\"age-99\" is not a 64-bit integer");
}

#[tokio::test]
async fn malformed_and_oversized_files_are_rejected() {
    let p = pipeline();
    p.store.insert(LANDING, "users/no-key.csv", b"age\n1\n");
    let ObjectOutcome::Rejected(r) = one_object(&p, "users/no-key.csv").await else {
        panic!()
    };
    assert_eq!(
        r.reason,
        "line 1: the header lacks required column(s) user_id, signup_date; found age"
    );

    let limited = pipeline_with(&[]);
    limited.store.insert(
        LANDING,
        "users/big.csv",
        b"user_id,signup_date\nu-1,2024/01/01\n",
    );
    let body = event_sized(LANDING, "users/big.csv", Some(200 * 1024 * 1024 * 1024));
    let Outcome::Converted(objects) = limited.handle(&body, &job("m1")).await.unwrap() else {
        panic!()
    };
    let ObjectOutcome::Rejected(r) = &objects[0] else {
        panic!("{objects:?}")
    };
    assert!(
        r.reason
            .starts_with("the object is 214748364800 bytes, above max_object_bytes"),
        "{}",
        r.reason
    );
}

#[tokio::test]
async fn the_size_limit_applies_to_the_object_when_the_event_has_no_size() {
    let p = pipeline_from(
        "tests/fixtures/hostile/config.toml",
        &[("LAKEWORKER_PII_SALT", "s")],
    );
    let big = format!("id,value\n{}", "l1,1\n".repeat(20_001));
    p.store.insert(LANDING, "limits/big.csv", big.as_bytes());
    let ObjectOutcome::Rejected(r) = one_object(&p, "limits/big.csv").await else {
        panic!()
    };
    assert_eq!(
        r.reason,
        "the object is 100014 bytes, above max_object_bytes (100000)"
    );
}
