//! The worker's own cost per message, without AWS (feature `bench-fakes`, for
//! `benches/messages.rs` and `make bench-e2e`): the message handler the worker runs for
//! every SQS message ([`crate::pipeline`]: envelope, routing, ledger claim, download,
//! conversion, part upload, table commit, ledger settle) against the in-memory object
//! store, records table and ledger the unit tests use, so what is measured is lakeworker's
//! own work, not the network's or the emulator's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::domain::envelope::S3Event;
use crate::pipeline::job::Job;
use crate::pipeline::{Outcome, Pipeline};
use crate::testing::memory::{MemoryLedger, MemoryRecords, MemoryStore};

/// Landing objects and the S3 notifications that name them.
pub struct Messages {
    store: MemoryStore,
    bodies: Vec<String>,
}

impl Messages {
    /// One notification per `(key, body)`, each object stored in the landing bucket.
    pub fn new(settings: &Settings, objects: &[(String, Vec<u8>)]) -> Self {
        let store = MemoryStore::default();
        let bucket = &settings.landing.bucket;
        let bodies = objects
            .iter()
            .map(|(key, body)| {
                store.insert(bucket, key, body);
                S3Event::put(bucket, key).at("2024-03-04T05:06:07Z").body()
            })
            .collect();
        Messages { store, bodies }
    }
}

/// What handling every message took.
#[derive(Debug, Clone)]
pub struct Handled {
    pub messages: usize,
    pub wall: Duration,
    /// Each message's time in the handler.
    pub per_message: Vec<Duration>,
}

/// Handles every message once, one after the other, on a current-thread runtime (the
/// conversion's own threads aside); fails at the first message that is not converted.
pub fn handle_all(settings: Settings, messages: Messages) -> Result<Handled, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let pipeline = Pipeline::new(
        Arc::new(settings),
        messages.store,
        MemoryRecords::default(),
        MemoryLedger::default(),
        "bench-worker".into(),
    );
    let stop = CancellationToken::new();
    runtime.block_on(async {
        let start = Instant::now();
        let mut per_message = Vec::with_capacity(messages.bodies.len());
        for (n, body) in messages.bodies.iter().enumerate() {
            let job = Job::new(format!("m{n}"), &stop);
            let begun = Instant::now();
            let span = tracing::info_span!("message");
            let outcome = tracing::Instrument::instrument(pipeline.handle(body, &job), span)
                .await
                .map_err(|e| format!("message {n}: {e}"))?;
            per_message.push(begun.elapsed());
            match outcome {
                Outcome::Converted(_) => {}
                other => return Err(format!("message {n}: {other:?}")),
            }
        }
        Ok(Handled {
            messages: messages.bodies.len(),
            wall: start.elapsed(),
            per_message,
        })
    })
}
