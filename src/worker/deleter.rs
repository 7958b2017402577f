//! Batched deletes: jobs hand their finished messages to one deleter task, which deletes
//! them up to ten at a time (SQS's DeleteMessageBatch limit), letting a message wait
//! briefly for others to share its call. A failed batch is tried again a few times, then
//! left to come back (harmless: outputs are idempotent and the ledger says they are done).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{timeout_at, Instant};

use super::pool::SQS_BATCH;
use crate::ports::{Queue, Received};

/// How long a finished message may wait for others to share its delete call.
const DELETE_LINGER: Duration = Duration::from_millis(20);
/// Tries per delete batch before leaving the messages to come back.
const DELETE_TRIES: u32 = 3;
/// Pause after a failed try, times the try's number (the receive's first backoff).
const DELETE_BACKOFF: Duration = Duration::from_millis(200);

/// Collects finished messages and deletes them in batches of up to 10, until every
/// sender is gone.
pub(super) async fn delete_loop<Q: Queue>(queue: Arc<Q>, mut pending: mpsc::Receiver<Received>) {
    let mut batch = Vec::with_capacity(SQS_BATCH);
    while let Some(first) = pending.recv().await {
        batch.push(first);
        let deadline = Instant::now() + DELETE_LINGER;
        while batch.len() < SQS_BATCH {
            match timeout_at(deadline, pending.recv()).await {
                Ok(Some(message)) => batch.push(message),
                Ok(None) | Err(_) => break,
            }
        }
        delete_with_retries(queue.as_ref(), &batch).await;
        batch.clear();
    }
}

async fn delete_with_retries<Q: Queue>(queue: &Q, batch: &[Received]) {
    for attempt in 1..=DELETE_TRIES {
        match queue.delete_batch(batch).await {
            Ok(failed) if failed.is_empty() => return,
            Ok(failed) => {
                tracing::warn!(
                    ?failed,
                    "some deletes failed; those messages will be delivered again"
                );
                return;
            }
            Err(e) if e.is_transient() && attempt < DELETE_TRIES => {
                tracing::warn!(error = %e, attempt, "delete failed; retrying");
                tokio::time::sleep(DELETE_BACKOFF * attempt).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, messages = batch.len(), "delete failed; the messages will be delivered again");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::queue::{received, Call, MemoryQueue};

    #[tokio::test(start_paused = true)]
    async fn finished_messages_are_deleted_ten_at_a_time() {
        let queue = Arc::new(MemoryQueue::new(Vec::new()));
        let (send, pending) = mpsc::channel(16);
        for n in 0..12 {
            send.send(received(n, String::new())).await.unwrap();
        }
        drop(send);
        delete_loop(queue.clone(), pending).await;
        let sizes: Vec<usize> = queue
            .calls()
            .iter()
            .map(|call| match call {
                Call::Delete(ids) => ids.len(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(sizes, [10, 2]);
        assert_eq!(queue.deleted().len(), 12);
    }
}
