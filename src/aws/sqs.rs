//! SQS adapter: long-poll receive, visibility changes, batched delete and dead-lettering
//! for one queue and its dead-letter queue.

use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageAttributeValue, MessageSystemAttributeName,
};

use super::error::from_sdk;
use super::timeouts;
use crate::config::AwsTimeouts;
use crate::ports::{DeadLetter, Queue, Received, StoreError, StoreErrorKind};

/// Error codes meaning the receipt handle no longer refers to a message we hold.
const GONE: [&str; 3] = [
    "ReceiptHandleIsInvalid",
    "MessageNotInflight",
    "AWS.SimpleQueueService.MessageNotInflight",
];

/// Messages in the queue, visible or not (SQS's approximate counts).
pub async fn depth(client: &aws_sdk_sqs::Client, url: &str) -> Result<u64, StoreError> {
    use aws_sdk_sqs::types::QueueAttributeName as Name;
    let attributes = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(Name::ApproximateNumberOfMessages)
        .attribute_names(Name::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| from_sdk("SQS GetQueueAttributes", e))?
        .attributes
        .unwrap_or_default();
    Ok([
        Name::ApproximateNumberOfMessages,
        Name::ApproximateNumberOfMessagesNotVisible,
    ]
    .iter()
    .filter_map(|name| attributes.get(name)?.parse::<u64>().ok())
    .sum())
}

/// One SQS queue and its dead-letter queue, addressed by URL.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
    dead_letter_url: String,
    /// Long polls get `wait_seconds` plus the small-call deadline per attempt.
    timeouts: AwsTimeouts,
}

impl SqsQueue {
    pub fn new(
        client: aws_sdk_sqs::Client,
        url: impl Into<String>,
        dead_letter_url: impl Into<String>,
    ) -> Self {
        SqsQueue {
            client,
            url: url.into(),
            dead_letter_url: dead_letter_url.into(),
            timeouts: AwsTimeouts::default(),
        }
    }

    /// The deadlines the client was built with, to size long polls from.
    pub fn with_timeouts(mut self, timeouts: AwsTimeouts) -> Self {
        self.timeouts = timeouts;
        self
    }
}

fn attribute(
    data_type: &str,
    value: impl Into<String>,
) -> Result<MessageAttributeValue, StoreError> {
    MessageAttributeValue::builder()
        .data_type(data_type)
        .string_value(value)
        .build()
        .map_err(|e| StoreError::new("SQS SendMessage", StoreErrorKind::Rejected, e.to_string()))
}

impl Queue for SqsQueue {
    async fn receive(
        &self,
        max: i32,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Received>, StoreError> {
        let wait = wait.min(Duration::from_secs(20));
        let long_poll = aws_sdk_sqs::config::Builder::default()
            .timeout_config(timeouts::long_poll(&self.timeouts, wait));
        let output = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10))
            .wait_time_seconds(wait.as_secs() as i32)
            // The worker's own window, not the queue's default (which may be shorter
            // than the first heartbeat).
            .visibility_timeout(i32::try_from(visibility.as_secs()).unwrap_or(i32::MAX))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .customize()
            .config_override(long_poll)
            .send()
            .await
            .map_err(|e| from_sdk("SQS ReceiveMessage", e))?;
        let mut received = Vec::new();
        for message in output.messages.unwrap_or_default() {
            let (Some(message_id), Some(receipt_handle)) =
                (message.message_id.clone(), message.receipt_handle.clone())
            else {
                // SQS always sets both; without a receipt handle the message cannot be
                // acknowledged, so it is left to come back. (Not the body: it may hold
                // inline records' pii values.)
                tracing::warn!(
                    message_id = ?message.message_id,
                    has_receipt_handle = message.receipt_handle.is_some(),
                    "SQS returned a message without id or receipt handle"
                );
                continue;
            };
            let attribute = |name| {
                message
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&name))
                    .and_then(|n| n.parse().ok())
            };
            let receive_count =
                attribute(MessageSystemAttributeName::ApproximateReceiveCount).unwrap_or(1);
            let sent_at_ms = attribute(MessageSystemAttributeName::SentTimestamp);
            received.push(Received {
                message_id,
                receipt_handle,
                body: message.body.unwrap_or_default(),
                receive_count: receive_count as u32,
                received_at: Instant::now(),
                sent_at_ms,
            });
        }
        Ok(received)
    }

    async fn delete_batch(&self, messages: &[Received]) -> Result<Vec<String>, StoreError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        // Batch entry ids must be unique and short; the position is both.
        let mut entries = Vec::with_capacity(messages.len());
        for (i, message) in messages.iter().enumerate() {
            let entry = DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(&message.receipt_handle)
                .build()
                .map_err(|e| {
                    StoreError::new(
                        "SQS DeleteMessageBatch",
                        StoreErrorKind::Rejected,
                        e.to_string(),
                    )
                })?;
            entries.push(entry);
        }
        let output = self
            .client
            .delete_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| from_sdk("SQS DeleteMessageBatch", e))?;
        let failed = output
            .failed
            .iter()
            .filter_map(|f| f.id.parse::<usize>().ok())
            .filter_map(|i| messages.get(i))
            .map(|m| m.message_id.clone())
            .collect();
        Ok(failed)
    }

    async fn change_visibility(
        &self,
        message: &Received,
        timeout: Duration,
    ) -> Result<(), StoreError> {
        let seconds = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX);
        let result = self
            .client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(&message.receipt_handle)
            .visibility_timeout(seconds)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                let mut error = from_sdk("SQS ChangeMessageVisibility", e);
                let invalid_handle = error.has_code("InvalidParameterValue")
                    && error.message.contains("ReceiptHandle");
                if invalid_handle || GONE.iter().any(|code| error.has_code(code)) {
                    error.kind = StoreErrorKind::NotFound;
                }
                Err(error)
            }
        }
    }

    async fn dead_letter(&self, letter: &DeadLetter<'_>) -> Result<(), StoreError> {
        let mut send = self
            .client
            .send_message()
            .queue_url(&self.dead_letter_url)
            .message_body(letter.body);
        for a in &letter.attributes {
            send = send.message_attributes(a.name, attribute(a.data_type, &a.value)?);
        }
        send.send()
            .await
            .map_err(|e| from_sdk("SQS SendMessage (dead letter)", e))?;
        Ok(())
    }
}
