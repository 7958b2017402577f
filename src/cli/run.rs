//! `lakeworker run`: the worker wired to AWS (SQS queue, S3 store, DynamoDB records and
//! ledger, Athena catalog), running until SIGINT or SIGTERM, with every shutdown step
//! bounded.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::aws::athena::Athena;
use crate::aws::dynamodb::DynamoRecords;
use crate::aws::ledger::DynamoLedger;
use crate::aws::s3::S3Store;
use crate::aws::sqs::SqsQueue;
use crate::aws::Clients;
use crate::config::Settings;
use crate::domain::dataset::TableFormat;
use crate::health::{self, Health};
use crate::pipeline::Pipeline;
use crate::ports::{Ledger, ObjectStore, RecordStore, TableSink};
use crate::table::iceberg::IcebergTables;
use crate::worker::pool;

/// How long the catalog may take to register the last partitions at shutdown, at most.
const CATALOG_FLUSH: Duration = Duration::from_secs(10);
/// After the grace period, [`run`] returns within this (the pool's cleanup and last
/// deletes, then the catalog's last registrations), leaving the process a second to exit:
/// SIGTERM to exit is at most `shutdown_grace_seconds` + 5 s.
const AFTER_GRACE: Duration = Duration::from_secs(4);

/// How long after the grace period a stopping worker has exited, whatever hangs.
const EXIT_BOUND: std::time::Duration = std::time::Duration::from_millis(4900);

pub async fn command(settings: Arc<Settings>) -> anyhow::Result<ExitCode> {
    for deprecation in &settings.deprecations {
        tracing::warn!("{deprecation}");
    }
    let shutdown = CancellationToken::new();
    let signals = tokio::spawn(stop_on_signal(shutdown.clone()));
    // Every shutdown step is bounded (the pool, the catalog flush, the runtime, the
    // telemetry flush); this watchdog makes the bound hold even for a bug in one of them.
    let grace = settings.worker.shutdown_grace;
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            std::thread::spawn(move || {
                std::thread::sleep(grace + EXIT_BOUND);
                tracing::error!("still stopping at the shutdown bound; exiting now");
                std::process::exit(1);
            });
        }
    });
    let ran = run(settings, shutdown).await;
    signals.abort();
    ran?;
    Ok(ExitCode::SUCCESS)
}

/// Cancels `shutdown` on the first SIGINT or SIGTERM (ECS stops tasks with SIGTERM).
async fn stop_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (mut term, mut int) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => (term, int),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot listen for signals; stopping");
                shutdown.cancel();
                return;
            }
        };
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutting down");
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    }
    shutdown.cancel();
}

/// Connects to AWS and runs the pool until `shutdown` is cancelled, then lets in-flight
/// jobs finish (within the grace period) and flushes pending deletes. With
/// `[health] listen` set, serves the health endpoint meanwhile; failing to bind it is the
/// only error.
pub async fn run(settings: Arc<Settings>, shutdown: CancellationToken) -> std::io::Result<()> {
    let health = Health::new(
        settings.queue.pollers.get(),
        health::stall_bound(settings.queue.wait, settings.aws.timeouts.call),
    );
    if let Some(address) = settings.health.listen {
        let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("health endpoint on {address}: {e}"))
        })?;
        tracing::info!(%address, "health endpoint listening (/healthz, /readyz)");
        tokio::spawn(health::serve(listener, health.clone(), shutdown.clone()));
    }
    let clients = Clients::connect(&settings.aws).await;
    let timeouts = settings.aws.timeouts;
    let queue = SqsQueue::new(
        clients.sqs.clone(),
        settings.queue.url.clone(),
        settings.queue.dead_letter_url.clone(),
    )
    .with_timeouts(timeouts);
    let worker_id = worker_id();
    tracing::info!(%worker_id, "this worker's ledger owner id");
    let mut pipeline = Pipeline::new(
        settings.clone(),
        S3Store::new(clients.s3.clone())
            .with_upload(
                settings.lake.upload_part_size,
                settings.lake.upload_concurrency.get(),
            )
            .with_timeouts(timeouts),
        DynamoRecords::new(clients.dynamodb.clone()).with_timeouts(timeouts),
        DynamoLedger::new(clients.dynamodb.clone(), settings.ledger.table.clone()),
        worker_id.clone(),
    );
    // The catalog runs beside the pool and outlives it briefly to register what the last
    // jobs wrote.
    let catalog_stop = CancellationToken::new();
    let mut catalog_task = None;
    if let Some(catalog) = &settings.catalog {
        let runner = Athena::new(
            clients.athena.clone(),
            catalog.workgroup.clone(),
            catalog.output_location.clone(),
        );
        let (partitions, _stats, task) = crate::catalog::start(
            runner,
            Arc::new(DynamoLedger::new(
                clients.dynamodb.clone(),
                settings.ledger.table.clone(),
            )),
            catalog.clone(),
            settings.lake.clone(),
            // Iceberg tables are the Iceberg committers' business.
            settings
                .datasets
                .tables()
                .filter(|d| d.table == TableFormat::Hive)
                .cloned()
                .collect(),
            catalog_stop.clone(),
        );
        pipeline = pipeline.with_catalog(partitions);
        catalog_task = Some(task);
    }
    // Iceberg tables: created if absent before any message is taken; their committers
    // stop after the pool, committing what its last jobs handed over.
    let (store, ledger) = pipeline.shared();
    let iceberg = match IcebergTables::open(
        &settings,
        store,
        ledger,
        &worker_id,
        &shutdown,
        &catalog_stop,
    )
    .await
    {
        Ok(iceberg) => iceberg,
        Err(e) => {
            return Err(std::io::Error::other(format!(
                "cannot open the Iceberg tables: {e}"
            )))
        }
    };
    let pipeline = Arc::new(pipeline.with_iceberg(iceberg));
    // The load history is flushed on its interval, and once more after the pool stops
    // (before the Iceberg committers and the catalog end, so its table takes it). At the
    // stop no new interval flush begins; one under way finishes, within the bound.
    let history_stop = CancellationToken::new();
    let flush_cancel = CancellationToken::new();
    let history_task = settings
        .lake
        .history_interval
        .filter(|_| settings.datasets.history().is_some())
        .map(|every| {
            tokio::spawn(flush_history_every(
                pipeline.clone(),
                every,
                history_stop.clone(),
                flush_cancel.clone(),
            ))
        });
    let stopped = pool::Pool::new(
        Arc::new(queue),
        pipeline.clone(),
        settings.queue.clone(),
        settings.worker.shutdown_grace,
        health,
    )
    .run(shutdown)
    .await;
    let exit_by = stopped + settings.worker.shutdown_grace + AFTER_GRACE;
    history_stop.cancel();
    if let Some(task) = history_task {
        // Its own share of the time left, so the catalog keeps the rest of it.
        let flush_by = exit_by.min(Instant::now() + HISTORY_FLUSH);
        let last = async {
            let _ = task.await;
            pipeline.flush_history(&flush_cancel).await
        };
        match tokio::time::timeout_at(flush_by, last).await {
            Ok(Ok(rows)) => tracing::info!(rows, "load history flushed"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the last load history flush failed; its rows are lost (the ledger keeps the same facts)")
            }
            Err(_) => {
                flush_cancel.cancel();
                tracing::warn!("the last load history flush did not finish in time; its rows may be lost (the ledger keeps the same facts)");
            }
        }
    }
    catalog_stop.cancel();
    if let Some(task) = catalog_task {
        let flush_by = exit_by.min(Instant::now() + CATALOG_FLUSH);
        if tokio::time::timeout_at(flush_by, task).await.is_err() {
            tracing::warn!(
                "catalog registrar still busy at exit; later writes or a restart register the rest"
            );
        }
    }
    Ok(())
}

/// This process in ledger claims: host name, process id and start time, so a restarted
/// container (often pid 1 again) is a new owner.
pub fn worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    let started = chrono::Utc::now().timestamp_millis();
    format!("{host}-{}-{started}", std::process::id())
}

/// The most the last load history flush (with an interval flush under way) may take at
/// shutdown: an Iceberg commit at the stop takes a few seconds.
const HISTORY_FLUSH: Duration = Duration::from_secs(12);

/// Flushes the load history every `every` until `stop` (a flush under way then finishes;
/// `cancel` abandons it); a failed flush is retried by the next.
async fn flush_history_every<S, R, L, T>(
    pipeline: Arc<Pipeline<S, R, L, T>>,
    every: Duration,
    stop: CancellationToken,
    cancel: CancellationToken,
) where
    S: ObjectStore,
    R: RecordStore,
    L: Ledger,
    T: TableSink,
{
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        // A flush under way finishes (or fails) on its own; the next waits for it.
        match pipeline.flush_history(&cancel).await {
            Ok(0) => {}
            Ok(rows) => tracing::info!(rows, "load history flushed"),
            Err(e) => {
                tracing::warn!(error = %e, "load history flush failed; its rows wait for the next")
            }
        }
    }
}
