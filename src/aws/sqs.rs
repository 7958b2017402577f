//! SQS adapter: long-poll receive and batched delete for one queue.

use std::time::Duration;

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};

use super::{AwsError, AwsErrorKind, Queue, Received};

/// One SQS queue, addressed by URL.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        SqsQueue {
            client,
            url: url.into(),
        }
    }
}

impl Queue for SqsQueue {
    async fn receive(&self, max: i32, wait: Duration) -> Result<Vec<Received>, AwsError> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10))
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("SQS ReceiveMessage", e))?;
        let mut received = Vec::new();
        for message in output.messages.unwrap_or_default() {
            let (Some(message_id), Some(receipt_handle)) =
                (message.message_id.clone(), message.receipt_handle.clone())
            else {
                // SQS always sets both; without a receipt handle the message cannot be
                // acknowledged, so it is left to come back.
                tracing::warn!(
                    ?message,
                    "SQS returned a message without id or receipt handle"
                );
                continue;
            };
            let receive_count = message
                .attributes
                .as_ref()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            received.push(Received {
                message_id,
                receipt_handle,
                body: message.body.unwrap_or_default(),
                receive_count,
            });
        }
        Ok(received)
    }

    async fn delete_batch(&self, messages: &[Received]) -> Result<Vec<String>, AwsError> {
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
                    AwsError::new(
                        "SQS DeleteMessageBatch",
                        AwsErrorKind::Rejected,
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
            .map_err(|e| AwsError::from_sdk("SQS DeleteMessageBatch", e))?;
        let failed = output
            .failed
            .iter()
            .filter_map(|f| f.id.parse::<usize>().ok())
            .filter_map(|i| messages.get(i))
            .map(|m| m.message_id.clone())
            .collect();
        Ok(failed)
    }
}
