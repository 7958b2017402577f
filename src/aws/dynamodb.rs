//! DynamoDB adapter: BatchWriteItem in chunks of 25, resending unprocessed items with
//! exponential backoff.

use std::collections::HashMap;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use futures_util::{StreamExt, TryStreamExt};

use super::error::from_sdk;
use super::items::{upsert_items, Item};
use super::timeouts;
use crate::config::AwsTimeouts;
use crate::domain::dataset::Dataset;
use crate::ports::{RecordStore, StoreError, StoreErrorKind};

/// BatchWriteItem's limit on requests per call.
pub const BATCH_SIZE: usize = 25;
/// Batch calls in flight at once per upsert; safe because no key repeats within an upsert.
const CONCURRENCY: usize = 4;
/// BatchWriteItem calls per chunk before giving up (the message is retried later).
const MAX_ROUNDS: u32 = 8;
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const OPERATION: &str = "DynamoDB BatchWriteItem";

/// DynamoDB through the SDK.
#[derive(Clone, Debug)]
pub struct DynamoRecords {
    client: aws_sdk_dynamodb::Client,
    /// A batch of large items may take longer than a small call.
    timeouts: AwsTimeouts,
}

impl DynamoRecords {
    pub fn new(client: aws_sdk_dynamodb::Client) -> Self {
        DynamoRecords {
            client,
            timeouts: AwsTimeouts::default(),
        }
    }

    /// The deadlines the client was built with, to size batches from.
    pub fn with_timeouts(mut self, timeouts: AwsTimeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    async fn write_chunk(&self, table: &str, chunk: Vec<Item>) -> Result<(), StoreError> {
        let mut requests = Vec::with_capacity(chunk.len());
        for item in chunk {
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(|e| StoreError::new(OPERATION, StoreErrorKind::Rejected, e.to_string()))?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        resend_unprocessed(requests, |pending| self.batch_write(table, pending)).await
    }

    /// One BatchWriteItem call with a deadline sized for its items; returns the requests
    /// DynamoDB left unprocessed.
    async fn batch_write(
        &self,
        table: &str,
        requests: Vec<WriteRequest>,
    ) -> Result<Vec<WriteRequest>, StoreError> {
        let bytes = requests
            .iter()
            .filter_map(|r| r.put_request.as_ref())
            .map(|put| approximate_size(&put.item))
            .sum();
        let deadline = timeouts::transfer(&self.timeouts, bytes);
        batch_write(&self.client, table, requests, Some(deadline)).await
    }
}

/// One BatchWriteItem call (with `deadline` instead of the client's own, when given);
/// returns the requests DynamoDB left unprocessed.
async fn batch_write(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    requests: Vec<WriteRequest>,
    deadline: Option<aws_config::timeout::TimeoutConfig>,
) -> Result<Vec<WriteRequest>, StoreError> {
    let mut config = aws_sdk_dynamodb::config::Builder::default();
    config.set_timeout_config(deadline);
    let output = client
        .batch_write_item()
        .set_request_items(Some(HashMap::from([(table.to_owned(), requests)])))
        .customize()
        .config_override(config)
        .send()
        .await
        .map_err(|e| from_sdk(OPERATION, e))?;
    Ok(output
        .unprocessed_items
        .and_then(|mut unprocessed| unprocessed.remove(table))
        .unwrap_or_default())
}

/// Sends `requests`, then resends whatever comes back unprocessed after an exponentially
/// growing pause, for at most [`MAX_ROUNDS`] calls.
async fn resend_unprocessed<F, Fut>(
    mut pending: Vec<WriteRequest>,
    mut send: F,
) -> Result<(), StoreError>
where
    F: FnMut(Vec<WriteRequest>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<WriteRequest>, StoreError>>,
{
    let mut backoff = FIRST_BACKOFF;
    for round in 1..=MAX_ROUNDS {
        pending = send(pending).await?;
        if pending.is_empty() {
            return Ok(());
        }
        tracing::debug!(
            round,
            unprocessed = pending.len(),
            "resending unprocessed items"
        );
        if round < MAX_ROUNDS {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    Err(StoreError::new(
        OPERATION,
        StoreErrorKind::Transient,
        format!(
            "{} items still unprocessed after {MAX_ROUNDS} calls",
            pending.len()
        ),
    ))
}

/// Writes `requests` (puts or deletes) to `table`, 25 per BatchWriteItem call, resending
/// what comes back unprocessed, with the client's own deadlines (small items).
pub async fn write_all(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    requests: Vec<WriteRequest>,
) -> Result<(), StoreError> {
    let mut requests = requests.into_iter().peekable();
    while requests.peek().is_some() {
        let chunk: Vec<WriteRequest> = requests.by_ref().take(BATCH_SIZE).collect();
        resend_unprocessed(chunk, |pending| batch_write(client, table, pending, None)).await?;
    }
    Ok(())
}

/// Splits items into BatchWriteItem-sized chunks, in order.
fn chunks(items: Vec<Item>) -> Vec<Vec<Item>> {
    let mut chunks = Vec::with_capacity(items.len().div_ceil(BATCH_SIZE));
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        chunks.push(items.by_ref().take(BATCH_SIZE).collect());
    }
    chunks
}

/// About the bytes an item takes on the wire (names and values as text), to size a
/// batch's deadline.
fn approximate_size(item: &Item) -> u64 {
    use aws_sdk_dynamodb::types::AttributeValue;
    item.iter()
        .map(|(name, value)| {
            let value = match value {
                AttributeValue::S(text) | AttributeValue::N(text) => text.len(),
                _ => 8,
            };
            (name.len() + value + 8) as u64
        })
        .sum()
}

impl RecordStore for DynamoRecords {
    async fn upsert(
        &self,
        table: &str,
        dataset: &Dataset,
        batch: &RecordBatch,
    ) -> Result<u64, StoreError> {
        // Building items is CPU work over every cell: off the runtime's threads, which
        // also run heartbeats and lease renewals.
        let (dataset, batch) = (dataset.clone(), batch.clone());
        let items = tokio::task::spawn_blocking(move || upsert_items(&dataset, &batch))
            .await
            .map_err(|e| {
                StoreError::new(
                    OPERATION,
                    StoreErrorKind::Transient,
                    format!("item task: {e}"),
                )
            })?;
        let written = items.len() as u64;
        futures_util::stream::iter(chunks(items))
            .map(|chunk| self.write_chunk(table, chunk))
            .buffer_unordered(CONCURRENCY)
            .try_collect::<()>()
            .await?;
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;
    use std::sync::Mutex;

    fn requests(n: usize) -> Vec<WriteRequest> {
        (0..n)
            .map(|i| {
                let item = Item::from([("k".to_owned(), AttributeValue::S(i.to_string()))]);
                let put = PutRequest::builder().set_item(Some(item)).build().unwrap();
                WriteRequest::builder().put_request(put).build()
            })
            .collect()
    }

    #[test]
    fn items_go_in_chunks_of_at_most_25_in_order() {
        let items: Vec<Item> = (0..60)
            .map(|i| Item::from([("k".to_owned(), AttributeValue::N(i.to_string()))]))
            .collect();
        let chunks = chunks(items.clone());
        let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
        assert_eq!(sizes, [25, 25, 10]);
        assert_eq!(chunks.concat(), items, "nothing lost or reordered");
        assert!(super::chunks(Vec::new()).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn unprocessed_items_are_resent_until_done() {
        let calls = Mutex::new(Vec::new());
        let result = resend_unprocessed(requests(25), |pending| {
            calls.lock().unwrap().push(pending.len());
            // DynamoDB keeps back half of what it is sent, twice.
            let keep = if calls.lock().unwrap().len() <= 2 {
                pending.len() / 2
            } else {
                0
            };
            async move { Ok(pending.into_iter().take(keep).collect()) }
        })
        .await;
        assert!(result.is_ok());
        assert_eq!(*calls.lock().unwrap(), [25, 12, 6]);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_as_transient_after_the_last_round() {
        let started = tokio::time::Instant::now();
        let mut calls = 0;
        let err = resend_unprocessed(requests(3), |pending| {
            calls += 1;
            async move { Ok(pending) }
        })
        .await
        .unwrap_err();
        assert_eq!(calls, MAX_ROUNDS);
        assert!(err.is_transient());
        assert_eq!(
            err.to_string(),
            "DynamoDB BatchWriteItem failed: 3 items still unprocessed after 8 calls"
        );
        // 50 ms doubling between the 8 calls: 50 + 100 + ... + 3200 ms.
        assert_eq!(started.elapsed(), Duration::from_millis(6350));
    }
}
