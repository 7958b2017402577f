//! DynamoDB adapter: BatchWriteItem in chunks of 25, resending unprocessed items with
//! exponential backoff.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use futures_util::{StreamExt, TryStreamExt};

use super::{AwsError, AwsErrorKind, RecordStore};
use crate::records::Item;

/// BatchWriteItem's limit on requests per call.
pub const BATCH_SIZE: usize = 25;
/// Batch calls in flight at once per upsert; safe because no key repeats within an upsert.
const CONCURRENCY: usize = 4;
/// Rounds of resending unprocessed items before giving up (the message is retried later).
const MAX_ROUNDS: u32 = 8;
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// DynamoDB through the SDK.
#[derive(Clone, Debug)]
pub struct DynamoRecords {
    client: aws_sdk_dynamodb::Client,
}

impl DynamoRecords {
    pub fn new(client: aws_sdk_dynamodb::Client) -> Self {
        DynamoRecords { client }
    }

    async fn write_chunk(&self, table: &str, chunk: Vec<Item>) -> Result<(), AwsError> {
        let mut pending = Vec::with_capacity(chunk.len());
        for item in chunk {
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(|e| {
                    AwsError::new(
                        "DynamoDB BatchWriteItem",
                        AwsErrorKind::Rejected,
                        e.to_string(),
                    )
                })?;
            pending.push(WriteRequest::builder().put_request(put).build());
        }
        let mut backoff = FIRST_BACKOFF;
        for round in 1..=MAX_ROUNDS {
            let output = self
                .client
                .batch_write_item()
                .set_request_items(Some(HashMap::from([(table.to_owned(), pending)])))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("DynamoDB BatchWriteItem", e))?;
            pending = output
                .unprocessed_items
                .and_then(|mut unprocessed| unprocessed.remove(table))
                .unwrap_or_default();
            if pending.is_empty() {
                return Ok(());
            }
            tracing::debug!(
                table,
                round,
                unprocessed = pending.len(),
                "resending unprocessed items"
            );
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
        Err(AwsError::new(
            "DynamoDB BatchWriteItem",
            AwsErrorKind::Transient,
            format!(
                "{} items still unprocessed after {MAX_ROUNDS} rounds",
                pending.len()
            ),
        ))
    }
}

impl RecordStore for DynamoRecords {
    async fn upsert(&self, table: &str, items: Vec<Item>) -> Result<(), AwsError> {
        let mut chunks = Vec::with_capacity(items.len().div_ceil(BATCH_SIZE));
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            chunks.push(items.by_ref().take(BATCH_SIZE).collect::<Vec<_>>());
        }
        futures_util::stream::iter(chunks)
            .map(|chunk| self.write_chunk(table, chunk))
            .buffer_unordered(CONCURRENCY)
            .try_collect::<()>()
            .await
    }
}
