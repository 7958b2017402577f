//! PII columns: hashed or dropped in the lake, clear in the table, never clear in error texts.

use super::*;

#[tokio::test]
async fn pii_is_hashed_in_the_lake_and_clear_in_the_table() {
    let p = pipeline_from(
        "tests/fixtures/hostile/config.toml",
        &[("LAKEWORKER_PII_SALT", "salt")],
    );
    let csv = "id,name,email,joined\nP1,Ann,ann@example.com,2024-05-01\n";
    p.store.insert(LANDING, "people/a.csv", csv.as_bytes());
    let ObjectOutcome::Written(summary) = one_object(&p, "people/a.csv").await else {
        panic!()
    };
    let part = p.store.get(LAKE, &summary.parts[0]).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
        bytes::Bytes::from(part),
        10,
    )
    .unwrap();
    let batch = reader.collect::<Result<Vec<_>, _>>().unwrap().remove(0);
    let emails = batch.column_by_name("email").unwrap();
    let emails = emails
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .unwrap();
    use sha2::{Digest, Sha256};
    let expected: String = Sha256::digest(b"saltann@example.com")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(emails.value(0), expected, "the lake holds the salted hash");
    let tables = p.records.tables.lock().unwrap();
    assert_eq!(
        tables["lakeworker-users"][0]["email"].as_s().unwrap(),
        "ann@example.com",
        "the table keeps the clear value"
    );
}

#[tokio::test]
async fn pii_drop_leaves_the_column_out_of_the_lake_but_in_the_table() {
    let contacts = "[[datasets]]\nname = \"contacts\"\nmatch = \"contacts/**\"\nformat = \"csv\"\nrecords_table = \"lakeworker-contacts\"\nrecords_key = \"id\"\n[[datasets.columns]]\nname = \"id\"\ntype = \"string\"\nrequired = true\n[[datasets.columns]]\nname = \"phone\"\ntype = \"string\"\npii = \"drop\"\n";
    let p = pipeline_with(&[("LAKEWORKER_DATASETS", contacts)]);
    let csv = "id,phone\nc-1,+44 20 7946 0000\n";
    p.store.insert(LANDING, "contacts/a.csv", csv.as_bytes());
    let ObjectOutcome::Written(summary) = one_object(&p, "contacts/a.csv").await else {
        panic!()
    };
    assert_eq!(summary.parts.len(), 1);
    let part = p.store.get(LAKE, &summary.parts[0]).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
        bytes::Bytes::from(part),
        10,
    )
    .unwrap();
    let batch = reader.collect::<Result<Vec<_>, _>>().unwrap().remove(0);
    let schema = batch.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        ["id", "_source", "_ingested_at"],
        "no phone in the lake"
    );
    let tables = p.records.tables.lock().unwrap();
    let item = &tables["lakeworker-contacts"][0];
    assert_eq!(item["id"].as_s().unwrap(), "c-1");
    assert_eq!(
        item["phone"].as_s().unwrap(),
        "+44 20 7946 0000",
        "the table keeps the value"
    );
}

/// A dataset `name` over `match/**` with a hashed and a dropped pii column, for
/// [`pii_values_never_appear_in_error_texts_or_quarantine_reports`].
fn people(name: &str, format: &str, policy: &str) -> String {
    format!(
        "[[datasets]]\nname = \"{name}\"\nmatch = \"{name}/**\"\nformat = \"{format}\"\nrecords_table = \"lakeworker-people\"\nrecords_key = \"id\"\n{policy}\n\
         [[datasets.columns]]\nname = \"id\"\ntype = \"string\"\nrequired = true\n\
         [[datasets.columns]]\nname = \"email\"\ntype = \"string\"\npattern = \"[^@]+@[^@]+\"\npii = \"hash\"\n\
         [[datasets.columns]]\nname = \"phone\"\ntype = \"string\"\nmax_length = 8\npii = \"drop\"\n\
         [[datasets.columns]]\nname = \"age\"\ntype = \"int\"\n"
    )
}

/// The stand-in of a hashed pii value in error texts and quarantine rows.
fn hashed(salt: &str, text: &str) -> String {
    use sha2::{Digest, Sha256};
    let hex: String = Sha256::digest(format!("{salt}{text}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("<pii sha256:{hex}>")
}

/// Values of pii columns: in bad cells (hashed and dropped columns), in the raw text of
/// bad rows that are bad for another reason, in CSV and JSON lines files, in rejected
/// files' reports, the ledger, and inline records' quarantine and refusal. None may show
/// a clear value; hashed ones show the salted hash, dropped ones a placeholder.
#[tokio::test]
async fn pii_values_never_appear_in_error_texts_or_quarantine_reports() {
    let datasets = [
        people("people_csv", "csv", "max_invalid_fraction = 0.9"),
        people("people_jsonl", "jsonl", "max_invalid_fraction = 0.9"),
        people("people_strict", "csv", "on_invalid = \"reject_file\""),
    ]
    .concat();
    let p = pipeline_with(&[
        ("LAKEWORKER_DATASETS", &datasets),
        ("LAKEWORKER_PII_SALT", "pepper"),
    ]);
    let clear = [
        "ann.example.com",
        "555-0100",
        "bob@example.com",
        "555-0101",
        "eve@example.com",
        "555-0103",
        "cy@example.com",
        "+44 20 7946 0000",
        "dee@example.com",
        "555-0102",
        "fay@example.com",
        "555-0104",
    ];
    let csv = "id,email,phone,age\n\
               a,ann.example.com,555-0100,1\n\
               b,bob@example.com,555-0101,x\n\
               c,cy@example.com,+44 20 7946 0000,3\n\
               d,\"dee@example.com, 555-0102\",4\n\
               f,fay@example.com,555-0104,4711,extra\n\
               e,eve@example.com,555-0103,5\n";
    let jsonl = "{\"id\":\"a\",\"email\":\"ann.example.com\",\"phone\":\"555-0100\",\"age\":1}\n\
                 {\"id\":\"b\",\"email\":\"bob@example.com\",\"phone\":\"555-0101\",\"age\":\"x\"}\n\
                 {\"id\":\"c\",\"email\":\"cy@example.com\",\"phone\":\"+44 20 7946 0000\",\"age\":3}\n\
                 {\"id\":\"d\",\"email\":\"dee@example.com\",\"phone\":\"555-0102\",\"age\":4\n\
                 [\"fay@example.com\", \"555-0104\", 4711]\n\
                 {\"id\":\"e\",\"email\":\"eve@example.com\",\"phone\":\"555-0103\",\"age\":5}\n";
    let mut reports = Vec::new();
    for (key, body) in [("people_csv/a.csv", csv), ("people_jsonl/a.jsonl", jsonl)] {
        p.store.insert(LANDING, key, body.as_bytes());
        let ObjectOutcome::Written(summary) = one_object(&p, key).await else {
            panic!("{key}")
        };
        assert_eq!(
            (summary.rows_written, summary.rows_quarantined),
            (1, 5),
            "{key}"
        );
        let rows = String::from_utf8(
            p.store
                .get(LAKE, summary.quarantine.as_ref().unwrap())
                .unwrap(),
        )
        .unwrap();
        let rows: Vec<serde_json::Value> = rows
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        // A bad hashed cell and a bad dropped cell name their stand-ins, not the values.
        assert_eq!(
            rows[0]["errors"][0]["reason"],
            format!(
                "{} does not match the pattern \"[^@]+@[^@]+\"",
                hashed("pepper", "ann.example.com")
            ),
            "{key}"
        );
        assert_eq!(
            rows[2]["errors"][0]["reason"],
            "<pii omitted> is 16 characters long; at most 8 allowed",
            "{key}"
        );
        // A row bad for another reason shows the pii values of its raw text as stand-ins.
        assert_eq!(rows[1]["errors"][0]["column"], "age");
        let raw = rows[1]["raw"].as_str().unwrap();
        if key.ends_with(".csv") {
            assert_eq!(
                raw,
                format!("b,{},<pii omitted>,x", hashed("pepper", "bob@example.com"))
            );
        } else {
            let raw: serde_json::Value = serde_json::from_str(raw).unwrap();
            assert_eq!(
                raw,
                serde_json::json!({"id": "b", "email": hashed("pepper", "bob@example.com"),
                                   "phone": "<pii omitted>", "age": "x"})
            );
        }
        // Rows that cannot be split into their columns keep no raw text at all.
        assert!(rows[3]["raw"].is_null(), "{key}: {}", rows[3]);
        assert!(rows[4]["raw"].is_null(), "{key}: {}", rows[4]);
        reports.push(
            rows.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        );
    }

    // A rejected file: its report and the ledger.
    p.store
        .insert(LANDING, "people_strict/a.csv", csv.as_bytes());
    let ObjectOutcome::Rejected(rejection) = one_object(&p, "people_strict/a.csv").await else {
        panic!()
    };
    let report = p
        .store
        .get(LAKE, &format!("{}.error.json", rejection.quarantined_as))
        .unwrap();
    reports.push(String::from_utf8(report).unwrap());
    reports.push(rejection.reason.clone());
    let record = p
        .ledger
        .record("s3://lakeworker-landing/people_strict/a.csv")
        .unwrap();
    reports.push(record.last_error.unwrap());

    // A file without its header row: its first record must not be quoted as "names".
    let headerless = csv.split_once('\n').unwrap().1;
    p.store
        .insert(LANDING, "people_csv/headerless.csv", headerless.as_bytes());
    let ObjectOutcome::Rejected(rejection) = one_object(&p, "people_csv/headerless.csv").await
    else {
        panic!()
    };
    assert!(
        rejection.reason.contains("found <undeclared>,<undeclared>"),
        "{}",
        rejection.reason
    );
    let report = p
        .store
        .get(LAKE, &format!("{}.error.json", rejection.quarantined_as))
        .unwrap();
    reports.push(String::from_utf8(report).unwrap());
    reports.push(rejection.reason.clone());

    // Inline records: quarantined ones, and a message refused past the policy (the
    // refusal is the dead letter's `lakeworker.error` and the log's reason).
    let inline = serde_json::json!({"dataset": "people_csv", "records": [
        {"id": "a", "email": "ann.example.com", "phone": "555-0101", "age": 1},
        {"id": "b", "email": "bob@example.com", "phone": "555-0100", "age": 2},
    ]});
    p.handle(&inline.to_string(), &job("m-inline"))
        .await
        .unwrap();
    let inline_rows = p
        .store
        .keys(LAKE)
        .into_iter()
        .find(|k| k.ends_with("/m-inline.rows.jsonl"))
        .unwrap();
    reports.push(String::from_utf8(p.store.get(LAKE, &inline_rows).unwrap()).unwrap());
    let refused = serde_json::json!({"dataset": "people_csv", "records": [
        {"id": "c", "email": "cy@example.com", "phone": "+44 20 7946 0000", "age": "4711"},
    ]});
    let err = p
        .handle(&refused.to_string(), &job("m-refused"))
        .await
        .unwrap_err();
    reports.push(err.to_string());

    for report in &reports {
        for value in clear {
            assert!(!report.contains(value), "{value:?} in {report}");
        }
    }
    assert!(
        reports[2].contains(&hashed("pepper", "ann.example.com")),
        "{}",
        reports[2]
    );
    assert!(
        reports[7].contains(&hashed("pepper", "ann.example.com")),
        "the inline rows: {}",
        reports[7]
    );
}
