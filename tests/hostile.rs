//! The hostile-input corpus (tests/fixtures/hostile, made by its generate.py) against the
//! emulator: every file and message gets its expected outcome, and nothing crashes.

mod common;

use std::collections::HashMap;

use common::*;
use lakeworker::ledger::Status;
use serde::Deserialize;

const CONFIG: &str = "tests/fixtures/hostile/config.toml";
const SALT: (&str, &str) = ("LAKEWORKER_PII_SALT", "corpus-salt");
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
}

#[derive(Debug, Deserialize)]
struct ExpectedMessage {
    name: String,
    body: String,
    outcome: String,
    error_class: Option<String>,
    reason: Option<String>,
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(root().join("tests/fixtures/hostile").join(name)).expect("fixture")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_file_gets_its_expected_outcome() {
    let expected: Vec<ExpectedFile> = serde_json::from_str(&fixture("expected.json")).unwrap();
    assert!(expected.len() >= 30, "the corpus holds at least 30 files");
    let env = TestEnv::quiet_from("hostile-files", CONFIG, &[SALT]).await;
    let worker = env.start_worker();
    for file in &expected {
        let body =
            std::fs::read(root().join("tests/fixtures/hostile/files").join(&file.file)).unwrap();
        let etag = env.put(&file.key, &body).await;
        let mut event = s3_event(&env.landing, &file.key, &etag, EVENT_TIME);
        event["Records"][0]["s3"]["object"]["size"] = body.len().into();
        env.send(&event.to_string()).await;
    }
    env.wait_drained().await;
    assert_eq!(
        env.depth(&env.dlq_url).await,
        0,
        "no file is a poison message"
    );

    let mut failures = Vec::new();
    for file in &expected {
        let records = env.ledger(&file.key).await;
        let Some(record) = records.first() else {
            failures.push(format!("{}: no ledger record", file.file));
            continue;
        };
        let problem = match file.outcome.as_str() {
            "done" => check_done(&env, file, record).await,
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

async fn check_done(
    env: &TestEnv,
    file: &ExpectedFile,
    record: &lakeworker::ledger::LedgerRecord,
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
    let quarantine = record.outputs.iter().find(|k| k.ends_with(".rows.jsonl"));
    match (quarantine, &file.rule) {
        (None, None) => None,
        (Some(key), Some(rule)) => {
            let body = env.lake_object(key).await;
            let first: serde_json::Value =
                serde_json::from_slice(body.split(|b| *b == b'\n').next()?).ok()?;
            (first["errors"][0]["rule"] != rule.as_str())
                .then(|| format!("first quarantined row {first}, expected rule {rule}"))
        }
        (found, rule) => Some(format!(
            "quarantine {found:?}, expected a row with rule {rule:?}"
        )),
    }
}

async fn check_rejected(
    env: &TestEnv,
    file: &ExpectedFile,
    record: &lakeworker::ledger::LedgerRecord,
) -> Option<String> {
    if record.status != Some(Status::Rejected) {
        return Some(format!("status {:?}, expected rejected", record.status));
    }
    let reason = file.reason.as_deref().unwrap_or_default();
    let error = record.last_error.as_deref().unwrap_or_default();
    if !error.contains(reason) {
        return Some(format!("reason {error:?} lacks {reason:?}"));
    }
    let copy = record.outputs.first()?;
    let original =
        std::fs::read(root().join("tests/fixtures/hostile/files").join(&file.file)).ok()?;
    if env.lake_object(copy).await.as_ref() != original.as_slice() {
        return Some(format!("{copy} is not the unchanged file"));
    }
    let report: serde_json::Value =
        serde_json::from_slice(&env.lake_object(&format!("{copy}.error.json")).await).ok()?;
    (report["reason"] != error).then(|| format!("report {report} does not carry the reason"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_message_gets_its_expected_outcome() {
    let expected: Vec<ExpectedMessage> = serde_json::from_str(&fixture("messages.json")).unwrap();
    assert!(
        expected.len() >= 15,
        "the corpus holds at least 15 messages"
    );
    let env = TestEnv::quiet_from("hostile-messages", CONFIG, &[SALT]).await;
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
