//! The hostile-input corpus (tests/fixtures/hostile, made by its generate.py) against the
//! emulator: every file and message gets its expected outcome, and nothing crashes.

mod common;

use std::collections::HashMap;

use common::*;
use lakeworker::domain::ledger::{LedgerRecord, Status};
use serde::Deserialize;

const CONFIG: &str = "tests/fixtures/hostile/config.toml";
const SALT: &str = "corpus-salt";
const EVENT_TIME: &str = "2024-06-01T00:00:00.000Z";

#[derive(Debug, Deserialize)]
struct ExpectedFile {
    file: String,
    key: String,
    outcome: String,
    rows_written: Option<u64>,
    rows_quarantined: Option<u64>,
    rule: Option<String>,
    reason: Option<String>,
    /// Counts of a rejected file's report.
    rows_in: Option<u64>,
    rows_invalid: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct ExpectedMessage {
    name: String,
    body: String,
    outcome: String,
    error_class: Option<String>,
    reason: Option<String>,
}

/// An environment with the corpus's datasets, the test sending every message.
async fn corpus_env(tag: &str) -> TestEnv {
    TestEnv::builder(tag)
        .config(CONFIG)
        .env("LAKEWORKER_PII_SALT", SALT)
        .quiet()
        .start()
        .await
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(root().join("tests/fixtures/hostile").join(name)).expect("fixture")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_file_gets_its_expected_outcome() {
    let expected: Vec<ExpectedFile> = serde_json::from_str(&fixture("expected.json")).unwrap();
    assert!(expected.len() >= 30, "the corpus holds at least 30 files");
    let env = corpus_env("hostile-files").await;
    let worker = env.start_worker();
    // Each file's object id, which names everything it puts in the lake.
    let mut ids = HashMap::new();
    for file in &expected {
        let body =
            std::fs::read(root().join("tests/fixtures/hostile/files").join(&file.file)).unwrap();
        let etag = env.put(&file.key, &body).await;
        let event = s3_event(&env.landing, &file.key, &etag, EVENT_TIME).size(body.len() as u64);
        env.send(&event.body()).await;
        ids.insert(file.key.clone(), part_id(&env.landing, &file.key, &etag));
    }
    env.wait_drained().await;
    assert_eq!(
        env.depth(&env.dlq_url).await,
        0,
        "no file is a poison message"
    );

    let lake_keys = env.lake_keys().await;
    let mut failures = Vec::new();
    for file in &expected {
        let records = env.ledger(&file.key).await;
        let Some(record) = records.first() else {
            failures.push(format!("{}: no ledger record", file.file));
            continue;
        };
        let problem = match file.outcome.as_str() {
            "done" => {
                let id = &ids[&file.key];
                let own: Vec<&String> = lake_keys.iter().filter(|k| k.contains(id)).collect();
                check_done(&env, file, record, &own).await
            }
            "rejected" => check_rejected(&env, file, record).await,
            other => Some(format!("unknown outcome {other}")),
        };
        if let Some(problem) = problem {
            failures.push(format!("{}: {problem}\n  ledger: {record:?}", file.file));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} files differ:\n{}\nworker log:\n{}",
        failures.len(),
        expected.len(),
        failures.join("\n"),
        worker.log()
    );
}

/// `own` are the lake objects named by the file's object id.
async fn check_done(
    env: &TestEnv,
    file: &ExpectedFile,
    record: &LedgerRecord,
    own: &[&String],
) -> Option<String> {
    if record.status != Some(Status::Done) {
        return Some(format!("status {:?}, expected done", record.status));
    }
    let counts = (record.rows_written, record.rows_rejected);
    let wanted = (file.rows_written, file.rows_quarantined);
    if counts != wanted {
        return Some(format!(
            "rows written/quarantined {counts:?}, expected {wanted:?}"
        ));
    }
    let outputs: Vec<String> = record.outputs.iter().map(|o| key_of(o)).collect();
    let parts: Vec<&String> = outputs.iter().filter(|k| k.ends_with(".parquet")).collect();
    if record.rows_written == Some(0) {
        if !parts.is_empty() || !own.is_empty() {
            return Some(format!(
                "no rows, yet Parquet outputs {parts:?} and lake objects {own:?}"
            ));
        }
    } else if parts.is_empty() || !parts.iter().all(|part| own.contains(part)) {
        return Some(format!(
            "Parquet outputs {parts:?} are not all among the file's lake objects {own:?}"
        ));
    }
    let quarantine = outputs.iter().find(|k| k.ends_with(".rows.jsonl"));
    match (quarantine, &file.rule) {
        (None, None) => None,
        (Some(key), Some(rule)) => {
            let body = env.lake_object(key).await;
            let line = body.split(|b| *b == b'\n').next().unwrap_or_default();
            match serde_json::from_slice::<serde_json::Value>(line) {
                Ok(first) => (first["errors"][0]["rule"] != rule.as_str())
                    .then(|| format!("first quarantined row {first}, expected rule {rule}")),
                Err(e) => Some(format!("{key} does not start with a JSON line: {e}")),
            }
        }
        (found, rule) => Some(format!(
            "quarantine {found:?}, expected a row with rule {rule:?}"
        )),
    }
}

async fn check_rejected(
    env: &TestEnv,
    file: &ExpectedFile,
    record: &LedgerRecord,
) -> Option<String> {
    if record.status != Some(Status::Rejected) {
        return Some(format!("status {:?}, expected rejected", record.status));
    }
    let reason = file.reason.as_deref().unwrap_or_default();
    let error = record.last_error.as_deref().unwrap_or_default();
    if !error.contains(reason) {
        return Some(format!("reason {error:?} lacks {reason:?}"));
    }
    let Some(copy) = record.outputs.first().map(|o| key_of(o)) else {
        return Some("no quarantined copy in the outputs".to_owned());
    };
    let original =
        std::fs::read(root().join("tests/fixtures/hostile/files").join(&file.file)).unwrap();
    if env.lake_object(&copy).await.as_ref() != original.as_slice() {
        return Some(format!("{copy} is not the unchanged file"));
    }
    let report: serde_json::Value =
        match serde_json::from_slice(&env.lake_object(&format!("{copy}.error.json")).await) {
            Ok(report) => report,
            Err(e) => return Some(format!("{copy}.error.json is not JSON: {e}")),
        };
    if report["reason"] != error {
        return Some(format!("report {report} does not carry the reason"));
    }
    let (rows_in, valid, invalid) = (
        report["rows_in"].as_u64(),
        report["rows_valid"].as_u64(),
        report["rows_invalid"].as_u64(),
    );
    let errors = report["errors"].as_array().map_or(0, Vec::len);
    let consistent = match (rows_in, valid, invalid) {
        (Some(rows_in), Some(valid), Some(invalid)) => {
            valid + invalid == rows_in && errors <= 100 && (errors == 0) == (invalid == 0)
        }
        _ => false,
    };
    let wanted = (file.rows_in.or(rows_in), file.rows_invalid.or(invalid));
    (!consistent || (rows_in, invalid) != wanted).then(|| {
        format!(
            "report counts in/valid/invalid {rows_in:?}/{valid:?}/{invalid:?} with {errors} errors, expected in/invalid {wanted:?}"
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_message_gets_its_expected_outcome() {
    let expected: Vec<ExpectedMessage> = serde_json::from_str(&fixture("messages.json")).unwrap();
    assert!(
        expected.len() >= 15,
        "the corpus holds at least 15 messages"
    );
    let env = corpus_env("hostile-messages").await;
    let worker = env.start_worker();
    let bodies: Vec<String> = expected
        .iter()
        .map(|m| m.body.replace("{landing}", &env.landing))
        .collect();
    for body in &bodies {
        env.send(body).await;
    }
    let dead = expected
        .iter()
        .filter(|m| m.outcome == "dead_letter")
        .count() as u64;
    wait_for("the dead letters", WAIT, || async {
        env.depth(&env.dlq_url).await == dead
    })
    .await;
    env.wait_drained().await;
    let letters: HashMap<String, HashMap<String, String>> = env
        .dead_letters_with_attributes()
        .await
        .into_iter()
        .collect();
    let mut failures = Vec::new();
    for (message, body) in expected.iter().zip(&bodies) {
        let letter = letters.get(body);
        let problem = match (message.outcome.as_str(), letter) {
            ("dead_letter", None) => Some("not dead-lettered".to_owned()),
            ("dead_letter", Some(attributes)) => {
                let class = &attributes["lakeworker.error_class"];
                let error = &attributes["lakeworker.error"];
                let reason = message.reason.as_deref().unwrap_or_default();
                (Some(class) != message.error_class.as_ref() || !error.contains(reason)).then(
                    || {
                        format!(
                            "class {class}, error {error:?}; expected {:?} and {reason:?}",
                            message.error_class
                        )
                    },
                )
            }
            (_, Some(attributes)) => Some(format!("dead-lettered: {attributes:?}")),
            (_, None) => None,
        };
        if let Some(problem) = problem {
            failures.push(format!("{}: {problem}", message.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\nworker log:\n{}",
        failures.join("\n"),
        worker.log()
    );
    // The partly bad records: good ones upserted, the bad one quarantined.
    let users = env.users_by("id").await;
    assert_eq!(users.len(), 10, "{users:?}");
    let quarantined = env.lake_keys().await;
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert!(quarantined[0].ends_with(".rows.jsonl"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decompression_bomb_is_rejected_before_anything_reaches_the_lake() {
    let env = corpus_env("bomb").await;
    // The `strict` dataset: CSV `id,amount`, no records table. The undeclared `note`
    // column is ignored; long runs in it compress 800 to 1, and make few rows to convert.
    let note = "x".repeat(8000);
    let (bomb, expanded) = gzip_bomb("id,amount,note\n", &format!("s1,1.5,{note}\n"), 3200);
    assert!(
        bomb.len() < 8 << 20 && expanded > 3 << 30,
        "{} bytes expanding to {expanded}",
        bomb.len()
    );
    let key = "strict/bomb.csv.gz";
    let etag = env.put(key, &bomb).await;
    let event = s3_event(&env.landing, key, &etag, EVENT_TIME).size(bomb.len() as u64);
    env.send(&event.body()).await;
    let worker = env.start_worker();

    // Converting 3 GiB would take minutes here; the bomb is refused after 64 MiB.
    wait_for("the bomb's ledger record to settle", WAIT, || async {
        env.ledger(key)
            .await
            .first()
            .is_some_and(|r| r.status != Some(Status::Processing))
    })
    .await;
    let record = env.ledger(key).await.remove(0);
    let error = record.last_error.clone().unwrap_or_default();
    assert_eq!(
        record.status,
        Some(Status::Rejected),
        "{record:?}\n{}",
        worker.log()
    );
    assert!(error.contains("max_compression_ratio (200)"), "{error}");
    env.wait_drained().await;
    assert_eq!(env.depth(&env.dlq_url).await, 0);
    // The file and its report are in the quarantine, and nothing else was written.
    let copy = key_of(record.outputs.first().expect("the quarantined copy"));
    assert_eq!(
        env.lake_keys().await,
        [copy.clone(), format!("{copy}.error.json")]
    );
    assert_eq!(env.lake_object(&copy).await.len(), bomb.len());
    let report: serde_json::Value =
        serde_json::from_slice(&env.lake_object(&format!("{copy}.error.json")).await).unwrap();
    assert_eq!(report["reason"], error.as_str());
    let rejected = worker.events("file rejected");
    assert_eq!(rejected.len(), 1, "{}", worker.log());
    assert_eq!(rejected[0]["fields"]["reason"], error.as_str());
    assert_eq!(rejected[0]["fields"]["quarantined_as"], copy.as_str());
}
