//! A message the dead-letter queue cannot take ends anyway: its body is kept in the
//! quarantine bucket and a small pointer is dead-lettered; `lakeworker redrive` puts the
//! original body back. Against the emulator, with a dead-letter queue set to SQS's
//! smallest message size (1 KiB).

mod common;

use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use common::*;

/// What `redrive` logs when a pointer's kept body is gone.
const POINTER_BODY_GONE: &str = "the kept body of this pointer is gone (brought back by an earlier pointer of the same message, or expired); the pointer stays in the dead-letter queue";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_too_large_for_the_dead_letter_queue_is_kept_and_redriven_whole() {
    let env = TestEnv::builder("dlq-fallback").quiet().start().await;
    env.clients
        .sqs
        .set_queue_attributes()
        .queue_url(&env.dlq_url)
        .attributes(QueueAttributeName::MaximumMessageSize, "1024")
        .send()
        .await
        .expect("set the dead-letter queue's size limit");
    let worker = env.start_worker();

    // A poison message (no known shape) larger than the dead-letter queue takes.
    let body = serde_json::json!({"unknown": "shape", "padding": "p".repeat(3000)}).to_string();
    env.send(&body).await;
    env.wait_drained().await;
    // Read without hiding it, so the redrive below finds it at once.
    let letters = env.peek_dead_letters().await;
    assert_eq!(letters.len(), 1, "{letters:?}\n{}", worker.log());
    let (pointer, attributes) = &letters[0];
    assert_eq!(attributes["lakeworker.error_class"], "permanent");
    assert!(attributes["lakeworker.error"].starts_with("bad message body"));
    let uri = &attributes["lakeworker.body_uri"];
    let key = uri
        .strip_prefix(&format!("s3://{}/", env.lake))
        .expect("kept in the quarantine bucket (the lake bucket here)");
    assert!(key.starts_with("quarantine/_dead_letters/"), "{key}");
    let pointer: serde_json::Value = serde_json::from_str(pointer).expect("pointer JSON");
    assert_eq!(pointer["lakeworker_dead_letter"]["body_uri"], uri.as_str());
    assert_eq!(
        env.lake_object(key).await.as_ref(),
        body.as_bytes(),
        "the whole body is kept"
    );
    let fallbacks = worker.events("dead-lettered after a fallback");
    assert_eq!(fallbacks.len(), 1, "{}", worker.log());
    assert_eq!(fallbacks[0]["fields"]["via"], "pointer");

    // The same message dead-lettered twice (its delete failed, say) leaves two pointers
    // to one kept body.
    let mut duplicate = env
        .clients
        .sqs
        .send_message()
        .queue_url(&env.dlq_url)
        .message_body(&letters[0].0);
    for (name, value) in attributes {
        duplicate = duplicate.message_attributes(
            name,
            aws_sdk_sqs::types::MessageAttributeValue::builder()
                .data_type(if name == "lakeworker.attempts" {
                    "Number"
                } else {
                    "String"
                })
                .string_value(value)
                .build()
                .unwrap(),
        );
    }
    let duplicate_id = duplicate
        .send()
        .await
        .expect("a duplicate pointer")
        .message_id
        .expect("the duplicate's message id");

    // Redrive sends the original body back, not the pointer, and drops the kept copy: the
    // worker gets the whole body again (still poison), so it keeps it anew under the new
    // message's id and dead-letters a new pointer. The duplicate pointer finds its body
    // gone: it is skipped, left in the queue, and the run goes on.
    let out = env.cli(&["redrive", "--config", env.config_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let gone = events_in(&stderr, POINTER_BODY_GONE);
    assert_eq!(gone.len(), 1, "{stderr}");
    assert_eq!(gone[0]["fields"]["uri"], uri.as_str(), "{stderr}");
    assert_eq!(gone[0]["fields"]["message_id"], duplicate_id, "{stderr}");
    wait_for("the second dead letter", WAIT, || async {
        worker.events("dead-lettered after a fallback").len() == 2
    })
    .await;
    env.wait_drained().await;
    let letters = env.peek_dead_letters().await;
    assert_eq!(
        letters.len(),
        2,
        "the new pointer and the skipped duplicate: {letters:?}"
    );
    let uris: Vec<&String> = letters
        .iter()
        .map(|l| &l.1["lakeworker.body_uri"])
        .collect();
    assert!(uris.contains(&uri), "the duplicate stays: {uris:?}");
    let again = uris
        .into_iter()
        .find(|u| *u != uri)
        .expect("a new message, a new copy");
    let again = again
        .strip_prefix(&format!("s3://{}/", env.lake))
        .expect("in the quarantine bucket");
    assert_eq!(env.lake_object(again).await.as_ref(), body.as_bytes());
    assert!(
        !env.lake_keys().await.iter().any(|k| k == key),
        "the first copy is deleted after its redrive"
    );
    let status = worker.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}
