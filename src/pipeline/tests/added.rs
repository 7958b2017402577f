//! `on_new_columns = "add"`: a file's new columns become nullable string columns of the
//! dataset (one list in the ledger, after the configured columns, in the order they came),
//! the file is converted again with them, and later files keep them, as the lake shows.

use arrow::array::{Array, StringArray};
use arrow::record_batch::RecordBatch;

use super::*;

fn adding(format: &str, glob: &str) -> TestPipeline {
    let datasets = format!(
        "[[datasets]]\nname = \"signups\"\nmatch = \"{glob}\"\nformat = \"{format}\"\non_new_columns = \"add\"\n\
         records_table = \"signups-table\"\nrecords_key = \"id\"\n\
         [[datasets.columns]]\nname = \"id\"\ntype = \"string\"\nrequired = true\n\
         [[datasets.columns]]\nname = \"age\"\ntype = \"int\"\n"
    );
    pipeline_with(&[("LAKEWORKER_DATASETS", &datasets)])
}

/// The lake batch of a written object (one part).
fn lake_batch(p: &TestPipeline, outcome: &ObjectOutcome) -> RecordBatch {
    let ObjectOutcome::Written(summary) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(summary.parts.len(), 1, "{summary:?}");
    let part = p.store.get(LAKE, &summary.parts[0]).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
        bytes::Bytes::from(part),
        100,
    )
    .unwrap();
    reader.collect::<Result<Vec<_>, _>>().unwrap().remove(0)
}

fn names(batch: &RecordBatch) -> Vec<String> {
    let schema = batch.schema();
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

fn texts(batch: &RecordBatch, column: &str) -> Vec<Option<String>> {
    let column = batch.column_by_name(column).expect(column);
    let column = column.as_any().downcast_ref::<StringArray>().unwrap();
    (0..column.len())
        .map(|i| column.is_valid(i).then(|| column.value(i).to_owned()))
        .collect()
}

fn added(p: &TestPipeline) -> Vec<(String, String)> {
    let columns = p.ledger.columns.lock().unwrap();
    columns["signups"]
        .added
        .iter()
        .map(|c| (c.name.clone(), c.source.clone()))
        .collect()
}

#[tokio::test]
async fn csv_columns_are_added_in_order_and_kept_by_later_files() {
    let p = adding("csv", "signups/*.csv");
    p.store.insert(
        LANDING,
        "signups/1.csv",
        b"id,age,referrer\nu-1,1,ad-1\nu-2,2,\n",
    );
    let first = one_object(&p, "signups/1.csv").await;
    let ObjectOutcome::Written(summary) = &first else {
        panic!("{first:?}")
    };
    assert_eq!(summary.new_columns, ["referrer"]);
    assert_eq!((summary.rows_in, summary.rows_written), (2, 2));
    let batch = lake_batch(&p, &first);
    assert_eq!(
        names(&batch),
        ["id", "age", "_source", "_ingested_at", "referrer"]
    );
    assert_eq!(
        texts(&batch, "referrer"),
        [Some("ad-1".into()), Some(String::new())],
        "an empty cell of an added column is kept as text"
    );

    // A second file brings another column, in another place of its header.
    p.store.insert(
        LANDING,
        "signups/2.csv",
        b"coupon,id,referrer,age\nC9,u-3,tv,3\n",
    );
    let second = one_object(&p, "signups/2.csv").await;
    let batch = lake_batch(&p, &second);
    assert_eq!(
        names(&batch),
        ["id", "age", "_source", "_ingested_at", "referrer", "coupon"]
    );
    assert_eq!(texts(&batch, "coupon"), [Some("C9".into())]);
    assert_eq!(
        added(&p),
        [
            ("referrer".into(), format!("s3://{LANDING}/signups/1.csv")),
            ("coupon".into(), format!("s3://{LANDING}/signups/2.csv")),
        ]
    );

    // A file without them still writes the table's full schema, with nulls.
    p.store.insert(LANDING, "signups/3.csv", b"id,age\nu-4,4\n");
    let third = one_object(&p, "signups/3.csv").await;
    let ObjectOutcome::Written(summary) = &third else {
        panic!("{third:?}")
    };
    assert!(summary.new_columns.is_empty(), "{summary:?}");
    let batch = lake_batch(&p, &third);
    assert_eq!(texts(&batch, "referrer"), [None]);
    assert_eq!(texts(&batch, "coupon"), [None]);
}

#[tokio::test]
async fn jsonl_keys_are_added_with_their_json_text() {
    let p = adding("jsonl", "signups/*.jsonl");
    let lines = "{\"id\": \"u-1\", \"age\": 1, \"device\": {\"os\": \"ios\"}}\n\
                 {\"id\": \"u-2\", \"visits\": 5}\n\
                 {\"id\": \"u-3\", \"device\": \"web\"}\n";
    p.store.insert(LANDING, "signups/a.jsonl", lines.as_bytes());
    let outcome = one_object(&p, "signups/a.jsonl").await;
    let ObjectOutcome::Written(summary) = &outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(summary.rows_written, 3, "{summary:?}");
    assert_eq!(summary.new_columns, ["device", "visits"]);
    let batch = lake_batch(&p, &outcome);
    assert_eq!(
        texts(&batch, "device"),
        [Some("{\"os\":\"ios\"}".into()), None, Some("web".into())]
    );
    assert_eq!(texts(&batch, "visits"), [None, Some("5".into()), None]);
}

#[tokio::test]
async fn a_new_column_that_cannot_be_one_rejects_the_file_and_adds_nothing() {
    for (header, wrong) in [
        ("id,age,Discount Code", "\"Discount Code\" is not a name"),
        ("id,age,AGE", "would clash with the table's column \"age\""),
        (
            "id,age,ingest_date",
            "would clash with the table's column \"ingest_date\"",
        ),
    ] {
        let p = adding("csv", "signups/*.csv");
        let csv = format!("{header}\nu-1,1,x\n");
        p.store.insert(LANDING, "signups/bad.csv", csv.as_bytes());
        let outcome = one_object(&p, "signups/bad.csv").await;
        let ObjectOutcome::Rejected(rejection) = &outcome else {
            panic!("{header}: {outcome:?}")
        };
        assert!(rejection.reason.contains(wrong), "{}", rejection.reason);
        assert!(p.ledger.columns.lock().unwrap().is_empty(), "{header}");
        assert!(p
            .store
            .keys(LAKE)
            .iter()
            .all(|k| !k.starts_with("curated/")));
    }
}

#[test]
fn with_added_only_grows_and_names_already_there_are_skipped() {
    let p = adding("csv", "signups/*.csv");
    let dataset = p.settings.datasets.by_name("signups").unwrap();
    let wider = dataset.with_added(["b", "a", "b", "id"]);
    let names: Vec<&str> = wider.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "age", "b", "a"]);
    assert_eq!(wider.added, 2);
    let again = wider.with_added(["a", "c"]);
    assert_eq!(again.added, 3);
    assert_eq!(again.added_columns()[2].name, "c");
    assert!(!again.added_columns()[0].required);
}

#[tokio::test]
async fn inline_records_keep_added_columns_and_add_their_own() {
    let p = adding("csv", "signups/*.csv");
    p.store
        .insert(LANDING, "signups/1.csv", b"id,age,referrer\nu-1,1,ad-1\n");
    one_object(&p, "signups/1.csv").await;
    let inline = serde_json::json!({"dataset": "signups", "records": [
        {"id": "u-2", "age": 2, "referrer": "tv", "team": "red"},
    ]});
    p.handle(&inline.to_string(), &job("m-inline"))
        .await
        .unwrap();
    let tables = p.records.tables.lock().unwrap();
    let item = tables["signups-table"]
        .iter()
        .find(|i| i["id"].as_s().unwrap() == "u-2")
        .unwrap();
    assert_eq!(item["referrer"].as_s().unwrap(), "tv", "{item:?}");
    assert_eq!(item["team"].as_s().unwrap(), "red", "{item:?}");
    let names: Vec<String> = added(&p).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["referrer", "team"]);
    assert_eq!(added(&p)[1].1, "inline records of message m-inline");
}

#[tokio::test]
async fn names_differing_only_in_case_are_refused_within_a_file_and_against_the_list() {
    let p = adding("csv", "signups/*.csv");
    p.store
        .insert(LANDING, "signups/1.csv", b"id,age,Email,email\nu-1,1,a,b\n");
    let ObjectOutcome::Rejected(rejection) = one_object(&p, "signups/1.csv").await else {
        panic!()
    };
    assert!(
        rejection.reason.contains("differ only in case"),
        "{}",
        rejection.reason
    );
    // Another task listed `Referrer` after this one read the list.
    p.ledger
        .add_columns("signups", &["Referrer".to_owned()], "s3://elsewhere")
        .await
        .unwrap();
    let dataset = p.settings.datasets.by_name("signups").unwrap();
    let report = ConvertReport {
        new_columns: ["referrer".to_owned()].into(),
        ..Default::default()
    };
    let refused = p.add_columns("s3://x", dataset, &report).await.unwrap();
    let Err(reason) = refused else { panic!() };
    assert!(reason.contains("\"Referrer\""), "{reason}");
}
