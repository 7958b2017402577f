//! `lakeworker redrive`: moves dead-lettered messages back to the work queue with their
//! original bodies (once their cause is fixed), or, with `--dry-run`, lists them with the
//! reasons the worker attached.
//!
//! A dead letter whose body the dead-letter queue could not hold is a pointer (attribute
//! `lakeworker.body_uri`, see [`crate::worker::dead_letter`]): redrive sends the original
//! body, read back from the quarantine bucket, and then deletes that copy.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::{Message, MessageAttributeValue};

use crate::aws::error::from_sdk;
use crate::aws::Clients;
use crate::config::Settings;
use crate::ports::{StoreError, StoreErrorKind};

/// How long a message received for redrive stays invisible while we handle it.
const HOLD: Duration = Duration::from_secs(60);

/// One dead-lettered message, as `--dry-run` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLettered {
    pub message_id: String,
    pub error_class: Option<String>,
    pub error: Option<String>,
    pub attempts: Option<String>,
    pub failed_at: Option<String>,
    /// Where the original body is kept when this message is a pointer to it.
    pub body_uri: Option<String>,
    pub body: String,
}

impl std::fmt::Display for DeadLettered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        writeln!(f, "message {}", self.message_id)?;
        writeln!(f, "  error_class: {}", show(&self.error_class))?;
        writeln!(f, "  error: {}", show(&self.error))?;
        writeln!(f, "  attempts: {}", show(&self.attempts))?;
        writeln!(f, "  failed_at: {}", show(&self.failed_at))?;
        if let Some(uri) = &self.body_uri {
            writeln!(f, "  body kept at: {uri}")?;
        }
        write!(
            f,
            "  body: {}",
            crate::worker::dead_letter::truncate(&self.body, 300)
        )
    }
}

/// Moves (or, dry, lists) up to `max` messages from the dead-letter queue; without `max`,
/// as many as it held when the run began, so a message that fails again and comes back
/// during the run is not moved round in a loop. Returns them.
pub async fn redrive(
    settings: &Settings,
    clients: &Clients,
    dry_run: bool,
    max: Option<usize>,
) -> Result<Vec<DeadLettered>, StoreError> {
    let dlq = &settings.queue.dead_letter_url;
    let limit = match max {
        Some(max) => max,
        None => crate::aws::sqs::depth(&clients.sqs, dlq).await? as usize,
    };
    let mut seen = Vec::new();
    let mut held = Vec::new();
    // Every message received counts toward the limit, the ones skipped too.
    let mut taken = 0;
    while taken < limit {
        let want = (limit - taken).min(10) as i32;
        let messages = clients
            .sqs
            .receive_message()
            .queue_url(dlq)
            .max_number_of_messages(want)
            .wait_time_seconds(1)
            .visibility_timeout(HOLD.as_secs() as i32)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| from_sdk("SQS ReceiveMessage (dead-letter queue)", e))?
            .messages
            .unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for message in messages {
            taken += 1;
            let Some(receipt) = message.receipt_handle.clone() else {
                continue;
            };
            let letter = describe(&message);
            if !dry_run {
                let body = match &letter.body_uri {
                    Some(uri) => match kept_body(clients, uri).await {
                        Ok(body) => body,
                        // A second pointer to a body an earlier one brought back (the
                        // message was dead-lettered twice), or a body the quarantine's
                        // lifecycle expired: nothing to send; left in the queue.
                        Err(e) if e.kind == StoreErrorKind::NotFound => {
                            tracing::warn!(%uri, message_id = %letter.message_id, "the kept body of this pointer is gone (brought back by an earlier pointer of the same message, or expired); the pointer stays in the dead-letter queue");
                            held.push(receipt);
                            continue;
                        }
                        Err(e) => return Err(e),
                    },
                    None => letter.body.clone(),
                };
                clients
                    .sqs
                    .send_message()
                    .queue_url(&settings.queue.url)
                    .message_body(&body)
                    .send()
                    .await
                    .map_err(|e| from_sdk("SQS SendMessage (redrive)", e))?;
                clients
                    .sqs
                    .delete_message()
                    .queue_url(dlq)
                    .receipt_handle(&receipt)
                    .send()
                    .await
                    .map_err(|e| from_sdk("SQS DeleteMessage (dead-letter queue)", e))?;
                if let Some(uri) = &letter.body_uri {
                    // The body is back in the work queue; a copy left over does no harm.
                    if let Err(e) = delete_kept_body(clients, uri).await {
                        tracing::warn!(%uri, error = %e, "could not delete the kept body after its redrive");
                    }
                }
            } else {
                held.push(receipt);
            }
            seen.push(letter);
        }
    }
    // A dry run leaves the dead-letter queue as it was: make what it read visible again.
    for receipt in held {
        clients
            .sqs
            .change_message_visibility()
            .queue_url(dlq)
            .receipt_handle(receipt)
            .visibility_timeout(0)
            .send()
            .await
            .map_err(|e| from_sdk("SQS ChangeMessageVisibility (dead-letter queue)", e))?;
    }
    Ok(seen)
}

fn describe(message: &Message) -> DeadLettered {
    let attribute = |name: &str| {
        message
            .message_attributes
            .as_ref()
            .and_then(|a| a.get(name))
            .and_then(MessageAttributeValue::string_value)
            .map(str::to_owned)
    };
    DeadLettered {
        message_id: message.message_id.clone().unwrap_or_default(),
        error_class: attribute("lakeworker.error_class"),
        error: attribute("lakeworker.error"),
        attempts: attribute("lakeworker.attempts"),
        failed_at: attribute("lakeworker.failed_at"),
        body_uri: attribute("lakeworker.body_uri"),
        body: message.body.clone().unwrap_or_default(),
    }
}

/// `s3://bucket/key` → (bucket, key).
fn split_uri(uri: &str) -> Result<(&str, &str), StoreError> {
    uri.strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .filter(|(bucket, key)| !bucket.is_empty() && !key.is_empty())
        .ok_or_else(|| {
            StoreError::new(
                "redrive",
                StoreErrorKind::Rejected,
                format!("lakeworker.body_uri {uri:?} is not an s3://bucket/key URI"),
            )
        })
}

/// The original body of a pointer dead letter.
async fn kept_body(clients: &Clients, uri: &str) -> Result<String, StoreError> {
    let (bucket, key) = split_uri(uri)?;
    let object = clients
        .s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| from_sdk("S3 GetObject (kept dead-letter body)", e))?;
    let bytes = object
        .body
        .collect()
        .await
        .map_err(|e| {
            StoreError::new(
                "S3 GetObject (kept dead-letter body)",
                StoreErrorKind::Transient,
                e.to_string(),
            )
        })?
        .into_bytes();
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        StoreError::new(
            "redrive",
            StoreErrorKind::Rejected,
            format!("the body kept at {uri} is not UTF-8"),
        )
    })
}

async fn delete_kept_body(clients: &Clients, uri: &str) -> Result<(), StoreError> {
    let (bucket, key) = split_uri(uri)?;
    clients
        .s3
        .delete_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| from_sdk("S3 DeleteObject (kept dead-letter body)", e))?;
    Ok(())
}

/// The command: runs it and prints what it did.
pub async fn command(
    settings: Arc<Settings>,
    dry_run: bool,
    max: Option<usize>,
) -> anyhow::Result<ExitCode> {
    let clients = crate::aws::Clients::connect(&settings.aws).await;
    let letters = redrive(&settings, &clients, dry_run, max).await?;
    if dry_run {
        for letter in &letters {
            println!("{letter}");
        }
        println!(
            "{} message(s) in the dead-letter queue (dry run: nothing moved)",
            letters.len()
        );
    } else {
        println!(
            "moved {} message(s) back to {}",
            letters.len(),
            settings.queue.url
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_body_uris_split_into_bucket_and_key() {
        assert_eq!(
            split_uri("s3://q/quarantine/_dead_letters/m.body").unwrap(),
            ("q", "quarantine/_dead_letters/m.body")
        );
        for bad in ["q/k", "s3://q", "s3:///k", "s3://q/"] {
            assert!(split_uri(bad).is_err(), "{bad}");
        }
    }
}
