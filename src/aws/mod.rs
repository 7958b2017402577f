//! The AWS SDK behind the [`crate::ports`]: each adapter implements one port and turns
//! SDK errors into [`crate::ports::StoreError`]s ([`error::from_sdk`]). Only the binary's wiring (and
//! the one-shot commands) name this module.
//!
//! - [`sqs::SqsQueue`] implements [`crate::ports::Queue`];
//! - [`s3::S3Store`] implements [`crate::ports::ObjectStore`];
//! - [`dynamodb::DynamoRecords`] implements [`crate::ports::RecordStore`];
//! - [`ledger::DynamoLedger`] implements [`crate::ports::Ledger`];
//! - [`athena::Athena`] implements [`crate::ports::QueryRunner`].

use aws_config::{BehaviorVersion, Region, SdkConfig};

use crate::config::AwsSettings;

pub mod athena;
pub mod columns;
pub mod commits;
pub mod dynamodb;
pub mod error;
pub mod items;
pub mod ledger;
pub mod s3;
pub mod sqs;
pub mod timeouts;

/// The SDK clients, configured once per process.
#[derive(Clone, Debug)]
pub struct Clients {
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub athena: aws_sdk_athena::Client,
}

impl Clients {
    /// Builds clients for the region and, for a local emulator, its endpoint (S3 then uses
    /// path-style addressing). Credentials come from the standard AWS provider chain.
    /// Every client has the deadlines of [`timeouts`] for small calls (the adapters set
    /// longer ones per call for long polls and transfers) and logs timed-out attempts.
    pub async fn connect(aws: &AwsSettings) -> Clients {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(aws.region.clone()))
            .timeout_config(timeouts::small_calls(&aws.timeouts))
            .stalled_stream_protection(timeouts::stalled_streams(&aws.timeouts));
        if let Some(endpoint) = &aws.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        let shared: SdkConfig = loader.load().await;
        let s3 = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(aws.endpoint_url.is_some())
            .interceptor(timeouts::TimeoutLog)
            .build();
        let sqs = aws_sdk_sqs::config::Builder::from(&shared)
            .interceptor(timeouts::TimeoutLog)
            .build();
        let dynamodb = aws_sdk_dynamodb::config::Builder::from(&shared)
            .interceptor(timeouts::TimeoutLog)
            .build();
        let athena = aws_sdk_athena::config::Builder::from(&shared)
            .interceptor(timeouts::TimeoutLog)
            .build();
        Clients {
            sqs: aws_sdk_sqs::Client::from_conf(sqs),
            s3: aws_sdk_s3::Client::from_conf(s3),
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb),
            athena: aws_sdk_athena::Client::from_conf(athena),
        }
    }
}
