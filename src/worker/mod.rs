//! The long-running worker: pollers receive messages, jobs run the pipeline, and each
//! result becomes a disposition (delete now, or leave for a later delivery).
//!
//! - [`pool`]: N long-poll loops, the in-flight limit, batched deletes, shutdown.
//! - [`disposition`]: what a job's result means for its message.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::aws::dynamodb::DynamoRecords;
use crate::aws::s3::S3Store;
use crate::aws::sqs::SqsQueue;
use crate::aws::Clients;
use crate::config::Settings;
use crate::pipeline::Pipeline;

pub mod disposition;
pub mod pool;

/// Connects to AWS and runs the pool until `shutdown` is cancelled, then lets in-flight
/// jobs finish and flushes pending deletes.
pub async fn run(settings: Arc<Settings>, shutdown: CancellationToken) {
    let clients = Clients::connect(&settings.aws).await;
    let queue = SqsQueue::new(clients.sqs.clone(), settings.queue.url.clone());
    let pipeline = Pipeline::new(
        settings.clone(),
        S3Store::new(clients.s3.clone()),
        DynamoRecords::new(clients.dynamodb.clone()),
    );
    pool::Pool::new(Arc::new(queue), Arc::new(pipeline), settings.queue.clone())
        .run(shutdown)
        .await;
}
