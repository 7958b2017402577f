//! Objects to the lake: parts and table rows, partition dates, the raw zone and delete_after.

use super::*;

#[tokio::test]
async fn a_user_file_becomes_lake_parts_and_table_rows() {
    let p = pipeline();
    let csv = "user_id,age,signup_date\nu-1,1,2024/01/01\nu-2,2,2024/01/02\nu-1,3,2024/01/02\n";
    p.store.insert(LANDING, "users/x y.csv", csv.as_bytes());
    let outcome = p
        .handle(&event(LANDING, "users/x y.csv"), &job("m1"))
        .await
        .unwrap();
    let Outcome::Converted(objects) = outcome else {
        panic!("{outcome:?}")
    };
    let ObjectOutcome::Written(summary) = &objects[0] else {
        panic!("{objects:?}")
    };
    assert_eq!(
        (
            summary.rows_in,
            summary.rows_written,
            summary.records_upserted
        ),
        (3, 3, 2)
    );
    assert_eq!((summary.rows_quarantined, &summary.quarantine), (0, &None));
    let lake_keys = p.store.keys(LAKE);
    assert_eq!(lake_keys, summary.parts);
    assert_eq!(lake_keys.len(), 2);
    assert!(lake_keys[0].starts_with("curated/users/signup_date=2024-01-01/part-"));
    assert_eq!(
        table(&p),
        [("u-2".into(), "2".into()), ("u-1".into(), "3".into())]
    );
}

#[tokio::test]
async fn ingest_date_partitions_use_the_event_time() {
    let p = pipeline();
    let line = r#"{"event_id": "e", "user_id": "u", "at": "2020-01-01T00:00:00Z"}"#;
    p.store.insert(LANDING, "events/a.jsonl", line.as_bytes());
    p.handle(&event(LANDING, "events/a.jsonl"), &job("m1"))
        .await
        .unwrap();
    let keys = p.store.keys(LAKE);
    assert_eq!(keys.len(), 1);
    assert!(
        keys[0].starts_with("curated/events/ingest_date=2024-03-04/part-"),
        "{keys:?}"
    );
}

#[tokio::test]
async fn an_event_without_a_time_takes_the_objects_last_modified_never_the_clock() {
    let p = pipeline();
    *p.store.last_modified.lock().unwrap() = "2023-01-02T03:04:05Z".parse().unwrap();
    let line = r#"{"event_id": "e", "user_id": "u", "at": "2020-01-01T00:00:00Z"}"#;
    p.store.insert(LANDING, "events/a.jsonl", line.as_bytes());
    let body = S3Event::put(LANDING, "events/a.jsonl").etag("e1").body();
    p.handle(&body, &job("m1")).await.unwrap();
    let keys = p.store.keys(LAKE);
    assert!(
        keys[0].starts_with("curated/events/ingest_date=2023-01-02/part-"),
        "{keys:?}"
    );
}

#[tokio::test]
async fn raw_zone_keeps_the_original_and_delete_after_empties_the_landing_bucket() {
    let p = pipeline_with(&[
        ("LAKEWORKER__LAKE__RAW_PREFIX", "raw"),
        ("LAKEWORKER__LANDING__DELETE_AFTER", "true"),
    ]);
    let csv = b"user_id,email,age,plan,newsletter,signup_date\nu-1,a@x.io,30,pro,true,2024/05/01\n";
    p.store.insert(LANDING, "users/in/a.csv", csv);
    let ObjectOutcome::Written(summary) = one_object(&p, "users/in/a.csv").await else {
        panic!()
    };
    let id = crate::domain::lake::object_id(&ObjectRef {
        bucket: LANDING.into(),
        key: "users/in/a.csv".into(),
        size: None,
        etag: Some("e1".into()),
        version_id: None,
        event_time: None,
        reprocess: None,
    });
    let raw = format!("raw/users/ingest_date=2024-03-04/{id}/users/in/a.csv");
    let raw = raw.as_str();
    assert_eq!(summary.raw.as_deref(), Some(raw));
    assert_eq!(p.store.get(LAKE, raw).unwrap(), csv);
    assert_eq!(
        p.store.get(LANDING, "users/in/a.csv"),
        None,
        "deleted after"
    );
    let record = p
        .ledger
        .record("s3://lakeworker-landing/users/in/a.csv")
        .unwrap();
    assert!(
        record.outputs.contains(&format!("s3://{LAKE}/{raw}")),
        "{record:?}"
    );

    // Without delete_after the original stays; a rejected file is neither copied nor
    // deleted.
    let p = pipeline_with(&[("LAKEWORKER__LAKE__RAW_PREFIX", "raw")]);
    p.store.insert(LANDING, "users/in/a.csv", csv);
    one_object(&p, "users/in/a.csv").await;
    assert!(p.store.get(LANDING, "users/in/a.csv").is_some());
    let p = pipeline_with(&[
        ("LAKEWORKER__LAKE__RAW_PREFIX", "raw"),
        ("LAKEWORKER__LANDING__DELETE_AFTER", "true"),
    ]);
    p.store
        .insert(LANDING, "users/bad.csv", b"nothing,known\n1,2\n");
    let outcome = one_object(&p, "users/bad.csv").await;
    assert!(matches!(outcome, ObjectOutcome::Rejected(_)), "{outcome:?}");
    assert!(p.store.get(LANDING, "users/bad.csv").is_some());
    assert!(p.store.keys(LAKE).iter().all(|k| !k.starts_with("raw/")));
}
