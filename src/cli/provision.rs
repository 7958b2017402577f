//! `lakeworker provision`: creates, idempotently, what the config points at. For local
//! emulators and dev accounts; production stacks come from `deploy/`.
//!
//! Landing, lake (and a separate quarantine) buckets; the dead-letter queue (14-day retention) and the queue (the
//! config's visibility timeout, a redrive policy with maxReceiveCount = `max_attempts` + 1,
//! and a policy letting the landing bucket send to it); the landing bucket's
//! `s3:ObjectCreated:*` notification to the queue; one on-demand DynamoDB table per
//! `records_table` with the string hash key `records_key`; the ledger table.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
};
use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, Event, NotificationConfiguration,
    QueueConfiguration,
};
use aws_sdk_sqs::types::QueueAttributeName;

use crate::aws::error::from_sdk;
use crate::aws::ledger::LEDGER_KEYS;
use crate::aws::Clients;
use crate::config::Settings;
use crate::ports::{StoreError, StoreErrorKind};

/// Dead-lettered messages are kept for SQS's maximum, 14 days.
const DLQ_RETENTION_SECONDS: u32 = 14 * 24 * 3600;
/// How long to wait for a new table to become active.
const TABLE_WAIT: Duration = Duration::from_secs(120);

/// Creates or updates every resource; returns one line per resource for the user.
pub async fn provision(settings: &Settings, clients: &Clients) -> Result<Vec<String>, StoreError> {
    let mut report = Vec::new();
    let mut buckets = vec![&settings.landing.bucket, &settings.lake.bucket];
    if settings.lake.quarantine_bucket != settings.lake.bucket {
        buckets.push(&settings.lake.quarantine_bucket);
    }
    for bucket in buckets {
        report.push(ensure_bucket(clients, &settings.aws.region, bucket).await?);
    }

    let dlq_name = queue_name(&settings.queue.dead_letter_url)?;
    let dlq_url = ensure_queue(
        clients,
        dlq_name,
        HashMap::from([(
            QueueAttributeName::MessageRetentionPeriod,
            DLQ_RETENTION_SECONDS.to_string(),
        )]),
    )
    .await?;
    let dlq_arn = queue_arn(clients, &dlq_url).await?;
    report.push(format!("queue {dlq_url} (dead-letter queue)"));

    let name = queue_name(&settings.queue.url)?;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": settings.queue.max_attempts + 1,
    });
    let url = ensure_queue(
        clients,
        name,
        HashMap::from([
            (
                QueueAttributeName::VisibilityTimeout,
                settings.queue.visibility_timeout.as_secs().to_string(),
            ),
            (QueueAttributeName::RedrivePolicy, redrive.to_string()),
        ]),
    )
    .await?;
    let arn = queue_arn(clients, &url).await?;
    set_queue_attributes(
        clients,
        &url,
        HashMap::from([(
            QueueAttributeName::Policy,
            s3_send_policy(&arn, &settings.landing.bucket),
        )]),
    )
    .await?;
    report.push(format!(
        "queue {url} (redrive to the dead-letter queue after {} receives)",
        settings.queue.max_attempts + 1
    ));
    for (configured, actual) in [
        (&settings.queue.url, &url),
        (&settings.queue.dead_letter_url, &dlq_url),
    ] {
        if configured != actual {
            report.push(format!(
                "note: the config says {configured}, the service calls it {actual}"
            ));
        }
    }

    let notification = NotificationConfiguration::builder()
        .queue_configurations(
            QueueConfiguration::builder()
                .id("lakeworker-object-created")
                .queue_arn(&arn)
                .events(Event::from("s3:ObjectCreated:*"))
                .build()
                .map_err(|e| {
                    StoreError::new(
                        "S3 PutBucketNotificationConfiguration",
                        StoreErrorKind::Rejected,
                        e.to_string(),
                    )
                })?,
        )
        .build();
    clients
        .s3
        .put_bucket_notification_configuration()
        .bucket(&settings.landing.bucket)
        .notification_configuration(notification)
        .send()
        .await
        .map_err(|e| from_sdk("S3 PutBucketNotificationConfiguration", e))?;
    report.push(format!(
        "notification s3://{} ObjectCreated → {name}",
        settings.landing.bucket
    ));

    for dataset in settings.datasets.datasets() {
        if let Some(target) = &dataset.records {
            let key = dataset.columns[target.key_index].name.as_str();
            report.push(ensure_table(clients, &target.table, &[key]).await?);
        }
    }
    report.push(ensure_table(clients, &settings.ledger.table, &LEDGER_KEYS).await?);
    Ok(report)
}

async fn ensure_bucket(
    clients: &Clients,
    region: &str,
    bucket: &str,
) -> Result<String, StoreError> {
    // CreateBucket on an existing bucket of ours succeeds silently in us-east-1, so ask first.
    match clients.s3.head_bucket().bucket(bucket).send().await {
        Ok(_) => return Ok(format!("bucket s3://{bucket} exists")),
        Err(e) => {
            let error = from_sdk("S3 HeadBucket", e);
            if error.kind != StoreErrorKind::NotFound {
                return Err(error);
            }
        }
    }
    let mut request = clients.s3.create_bucket().bucket(bucket);
    // us-east-1 is the one region that refuses an explicit location constraint.
    if region != "us-east-1" {
        request = request.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region))
                .build(),
        );
    }
    request
        .send()
        .await
        .map_err(|e| from_sdk("S3 CreateBucket", e))?;
    Ok(format!("bucket s3://{bucket} created"))
}

fn queue_name(url: &str) -> Result<&str, StoreError> {
    url.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|name| !name.is_empty())
        .ok_or_else(|| {
            StoreError::new(
                "SQS CreateQueue",
                StoreErrorKind::Rejected,
                format!("no queue name in {url}"),
            )
        })
}

/// Creates the queue, or updates its attributes when it exists.
async fn ensure_queue(
    clients: &Clients,
    name: &str,
    attributes: HashMap<QueueAttributeName, String>,
) -> Result<String, StoreError> {
    let created = clients
        .sqs
        .create_queue()
        .queue_name(name)
        .set_attributes(Some(attributes.clone()))
        .send()
        .await;
    let url = match created {
        Ok(output) => output.queue_url.unwrap_or_default(),
        Err(e) => {
            let error = from_sdk("SQS CreateQueue", e);
            if !(error.has_code("QueueAlreadyExists") || error.has_code("QueueNameExists")) {
                return Err(error);
            }
            let url = clients
                .sqs
                .get_queue_url()
                .queue_name(name)
                .send()
                .await
                .map_err(|e| from_sdk("SQS GetQueueUrl", e))?
                .queue_url
                .unwrap_or_default();
            set_queue_attributes(clients, &url, attributes).await?;
            url
        }
    };
    Ok(url)
}

async fn set_queue_attributes(
    clients: &Clients,
    url: &str,
    attributes: HashMap<QueueAttributeName, String>,
) -> Result<(), StoreError> {
    clients
        .sqs
        .set_queue_attributes()
        .queue_url(url)
        .set_attributes(Some(attributes))
        .send()
        .await
        .map_err(|e| from_sdk("SQS SetQueueAttributes", e))?;
    Ok(())
}

async fn queue_arn(clients: &Clients, url: &str) -> Result<String, StoreError> {
    let output = clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| from_sdk("SQS GetQueueAttributes", e))?;
    output
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| {
            StoreError::new(
                "SQS GetQueueAttributes",
                StoreErrorKind::Transient,
                format!("no QueueArn for {url}"),
            )
        })
}

/// Lets the landing bucket (and only it) send notifications to the queue.
fn s3_send_policy(queue_arn: &str, bucket: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "lakeworker-landing-notifications",
            "Effect": "Allow",
            "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnLike": {"aws:SourceArn": format!("arn:aws:s3:::{bucket}")}}
        }]
    })
    .to_string()
}

/// Creates an on-demand table whose key attributes are all strings: `keys` is the hash
/// key, then optionally the range key.
async fn ensure_table(clients: &Clients, table: &str, keys: &[&str]) -> Result<String, StoreError> {
    let invalid = |e: aws_sdk_dynamodb::error::BuildError| {
        StoreError::new(
            "DynamoDB CreateTable",
            StoreErrorKind::Rejected,
            e.to_string(),
        )
    };
    let mut request = clients
        .dynamodb
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest);
    for (i, key) in keys.iter().enumerate() {
        let kind = if i == 0 {
            KeyType::Hash
        } else {
            KeyType::Range
        };
        request = request
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(*key)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(invalid)?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(*key)
                    .key_type(kind)
                    .build()
                    .map_err(invalid)?,
            );
    }
    let verb = match request.send().await {
        Ok(_) => "created",
        Err(e) => {
            let error = from_sdk("DynamoDB CreateTable", e);
            if !error.has_code("ResourceInUseException") {
                return Err(error);
            }
            "exists"
        }
    };
    wait_for_table(clients, table).await?;
    let schema: Vec<String> = keys.iter().map(|k| format!("{k}: S")).collect();
    Ok(format!(
        "table {table} (key {}, on-demand) {verb}",
        schema.join(" + ")
    ))
}

async fn wait_for_table(clients: &Clients, table: &str) -> Result<(), StoreError> {
    let deadline = tokio::time::Instant::now() + TABLE_WAIT;
    loop {
        let described = clients
            .dynamodb
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| from_sdk("DynamoDB DescribeTable", e))?;
        let status = described.table.and_then(|t| t.table_status);
        if status == Some(TableStatus::Active) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(StoreError::new(
                "DynamoDB DescribeTable",
                StoreErrorKind::Transient,
                format!("table {table} not active after {TABLE_WAIT:?} (status {status:?})"),
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The command: runs it and prints what it did.
pub async fn command(settings: Arc<Settings>) -> anyhow::Result<ExitCode> {
    let clients = crate::aws::Clients::connect(&settings.aws).await;
    for line in provision(&settings, &clients).await? {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
