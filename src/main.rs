//! The `lakeworker` binary: parse the command line, load the config, dispatch.
//!
//! Exit codes: 0 success, 1 failure, 2 invalid configuration or usage.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use lakeworker::config::Settings;
use lakeworker::convert::{self, ConvertError, Lineage, ParquetFile, Quarantine};
use lakeworker::domain::schema::date_to_days;
use lakeworker::telemetry::{self, Output};

#[derive(Parser)]
#[command(
    name = "lakeworker",
    version,
    about = "S3 landing files → Parquet lake and DynamoDB, driven by SQS"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the worker pool until SIGINT or SIGTERM.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Load and validate the config, print a summary of the datasets.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
    },
    /// Convert a local file with a dataset's schema into one Parquet file (no AWS).
    Convert {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        dataset: String,
        input: PathBuf,
        output: PathBuf,
    },
    /// Create the buckets, queues, notification and tables the config names.
    Provision {
        #[arg(long)]
        config: PathBuf,
    },
    /// Show the ledger: one object's versions, or recent failures.
    Status {
        #[arg(long)]
        config: PathBuf,
        /// s3://bucket/key of the object.
        #[arg(required_unless_present = "failed", conflicts_with = "failed")]
        uri: Option<String>,
        /// List the most recently failed or rejected objects instead.
        #[arg(long)]
        failed: bool,
        /// How many failures to list.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Enqueue S3 events for objects already in the landing bucket (the ledger skips
    /// those already done).
    Backfill {
        #[arg(long)]
        config: PathBuf,
        /// s3://bucket/prefix in the landing bucket.
        target: String,
        /// Only objects of this dataset.
        #[arg(long)]
        dataset: Option<String>,
        /// List what would be enqueued; send nothing.
        #[arg(long)]
        dry_run: bool,
        /// Process object versions already done (or rejected) again, once; outputs of the
        /// earlier run that the new one does not rewrite are removed.
        #[arg(long)]
        reprocess: bool,
    },
    /// Ask a running worker's health endpoint; exit 0 when healthy, 1 otherwise (for
    /// container health checks: the image has no curl).
    Healthcheck {
        /// The endpoint to ask.
        #[arg(long, default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3)]
        timeout: u64,
    },
    /// Move dead-lettered messages back to the work queue.
    Redrive {
        #[arg(long)]
        config: PathBuf,
        /// Only print each message's error attributes; move nothing.
        #[arg(long)]
        dry_run: bool,
        /// Handle at most this many messages (default: as many as the queue holds now).
        #[arg(long)]
        max: Option<usize>,
    },
}

const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Healthcheck { url, timeout } = &cli.command {
        return healthcheck(url, *timeout);
    }
    let config_path = match &cli.command {
        Command::Healthcheck { .. } => unreachable!("handled above"),
        Command::Run { config }
        | Command::CheckConfig { config }
        | Command::Convert { config, .. }
        | Command::Provision { config }
        | Command::Status { config, .. }
        | Command::Redrive { config, .. }
        | Command::Backfill { config, .. } => config.clone(),
    };
    let settings = match Settings::load(&config_path) {
        Ok(settings) => Arc::new(settings),
        Err(e) => {
            eprintln!("invalid configuration in {}:", config_path.display());
            for line in e.to_string().lines() {
                eprintln!("  {line}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let is_run = matches!(cli.command, Command::Run { .. });
    let output = if is_run {
        Output::Stdout
    } else {
        Output::Stderr
    };
    let telemetry = telemetry::init(&settings.log, output);
    let result = match cli.command {
        Command::CheckConfig { .. } => {
            print!("{}", settings.summary());
            println!("config OK");
            Ok(ExitCode::SUCCESS)
        }
        Command::Convert {
            dataset,
            input,
            output,
            ..
        } => convert_file(&settings, &dataset, &input, &output),
        Command::Run { .. } => block_on(run(settings)),
        Command::Provision { .. } => block_on(provision(settings)),
        Command::Status {
            uri, failed, limit, ..
        } => block_on(status(settings, uri, failed, limit)),
        Command::Redrive { dry_run, max, .. } => block_on(redrive(settings, dry_run, max)),
        Command::Backfill {
            target,
            dataset,
            dry_run,
            reprocess,
            ..
        } => {
            let options = lakeworker::backfill::Options {
                dataset,
                dry_run,
                // One id per run: each version is processed once more for it.
                reprocess: reprocess.then(|| {
                    format!(
                        "{}-{}",
                        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
                        std::process::id()
                    )
                }),
            };
            block_on(backfill(settings, target, options))
        }
        Command::Healthcheck { .. } => unreachable!("handled before loading a config"),
    };
    // Outside the runtime: the exporters flush on their own threads. A stopping worker has
    // little time left (see `run`); a one-off command can wait longer.
    let flush = if is_run {
        std::time::Duration::from_millis(400)
    } else {
        std::time::Duration::from_secs(5)
    };
    telemetry.shutdown_within(flush);
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}

/// `lakeworker healthcheck`: prints the endpoint's answer; 0 for a 200, else 1.
fn healthcheck(url: &str, timeout: u64) -> ExitCode {
    let timeout = std::time::Duration::from_secs(timeout.max(1));
    match lakeworker::health::check(url, timeout) {
        Ok((200, body)) => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Ok((code, body)) => {
            eprintln!("unhealthy ({code}): {body}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn block_on<F: std::future::Future<Output = anyhow::Result<ExitCode>>>(
    future: F,
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(future);
    // Do not wait for a blocking thread stuck in a read: the jobs have already settled.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    result
}

/// How long after the grace period a stopping worker has exited, whatever hangs.
const EXIT_BOUND: std::time::Duration = std::time::Duration::from_millis(4900);

async fn run(settings: Arc<Settings>) -> anyhow::Result<ExitCode> {
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
    let ran = lakeworker::worker::run(settings, shutdown).await;
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

async fn provision(settings: Arc<Settings>) -> anyhow::Result<ExitCode> {
    let clients = lakeworker::aws::Clients::connect(&settings.aws).await;
    for line in lakeworker::provision::provision(&settings, &clients).await? {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(
    settings: Arc<Settings>,
    uri: Option<String>,
    failed: bool,
    limit: usize,
) -> anyhow::Result<ExitCode> {
    let clients = lakeworker::aws::Clients::connect(&settings.aws).await;
    let ledger =
        lakeworker::aws::ledger::DynamoLedger::new(clients.dynamodb, settings.ledger.table.clone());
    let records = match uri {
        Some(uri) if !failed => {
            if !uri.starts_with("s3://") {
                eprintln!("{uri:?} is not an s3://bucket/key URI");
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
            ledger.history(&uri).await?
        }
        _ => ledger.failures(limit).await?,
    };
    if records.is_empty() {
        println!("no ledger records");
    }
    for record in records {
        print!("{record}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn backfill(
    settings: Arc<Settings>,
    target: String,
    options: lakeworker::backfill::Options,
) -> anyhow::Result<ExitCode> {
    use lakeworker::backfill::BackfillError;
    let clients = lakeworker::aws::Clients::connect(&settings.aws).await;
    let dry_run = options.dry_run;
    let report = match lakeworker::backfill::backfill(&settings, &clients, &target, &options).await
    {
        Ok(report) => report,
        Err(
            e @ (BackfillError::Target(_)
            | BackfillError::NotLanding { .. }
            | BackfillError::UnknownDataset(_)),
        ) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
        Err(e) => return Err(e.into()),
    };
    for (key, dataset) in &report.planned {
        println!("{dataset}\t{key}");
    }
    let total: usize = report.enqueued.values().sum();
    let per_dataset: Vec<String> = report
        .enqueued
        .iter()
        .map(|(name, n)| format!("{name}: {n}"))
        .collect();
    println!(
        "listed {} object(s); {} {} ({}); {} skipped (no matching dataset)",
        report.listed,
        total,
        if dry_run {
            "would be enqueued (dry run)"
        } else {
            "enqueued"
        },
        per_dataset.join(", "),
        report.skipped
    );
    if let Some(request) = &options.reprocess {
        println!("reprocess request {request}: versions already done are processed once more");
    }
    Ok(ExitCode::SUCCESS)
}

async fn redrive(
    settings: Arc<Settings>,
    dry_run: bool,
    max: Option<usize>,
) -> anyhow::Result<ExitCode> {
    let clients = lakeworker::aws::Clients::connect(&settings.aws).await;
    let letters = lakeworker::redrive::redrive(&settings, &clients, dry_run, max).await?;
    if dry_run {
        for letter in &letters {
            println!("{letter}");
        }
        println!(
            "{} message(s) in the dead-letter queue (dry run: nothing moved)",
            letters.len()
        );
    } else {
        println!(
            "moved {} message(s) back to {}",
            letters.len(),
            settings.queue.url
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `lakeworker convert`: the worker's conversion path on a local file, into one Parquet
/// file with every column. Bad rows go to `OUTPUT.bad-rows.jsonl`; a file the dataset's
/// policy rejects produces no output (exit 1).
fn convert_file(
    settings: &Settings,
    name: &str,
    input: &Path,
    output: &Path,
) -> anyhow::Result<ExitCode> {
    let Some(dataset) = settings.datasets.by_name(name) else {
        let known: Vec<&str> = settings
            .datasets
            .datasets()
            .iter()
            .map(|d| d.name.as_str())
            .collect();
        eprintln!(
            "unknown dataset {name:?}; the config defines: {}",
            known.join(", ")
        );
        return Ok(ExitCode::from(EXIT_CONFIG));
    };
    let file =
        std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?;
    let absolute = std::path::absolute(input).unwrap_or_else(|_| input.to_owned());
    let now = Utc::now();
    let lineage = Lineage {
        source: format!("file://{}", absolute.display()),
        ingested_at: now.timestamp_micros(),
        ingest_date: date_to_days(now.date_naive()),
    };
    let props = convert::writer_properties(&settings.lake.parquet);
    let memory = settings.worker.conversion_memory;
    let mut sink = ParquetFile::create(output, convert::full_schema(dataset), props, memory)?;
    let bad_rows_path = PathBuf::from(format!("{}.bad-rows.jsonl", output.display()));
    let mut bad_rows = Quarantine::create(&bad_rows_path)?;
    let name = input.to_string_lossy();
    let converted = convert::convert(
        file,
        &name,
        dataset,
        &lineage,
        convert::ConvertOptions {
            batch_rows: settings.worker.batch_rows.get(),
            threads: settings.worker.conversion_threads.get(),
            memory,
        },
        &mut sink,
        &mut bad_rows,
    );
    sink.close()?;
    bad_rows.finish()?;
    let rejected = match &converted {
        Ok(report) => lakeworker::pipeline::rejection_reason(&dataset.policy, report),
        Err(ConvertError::Malformed(reason)) => Some(reason.clone()),
        Err(_) => None,
    };
    let report = match (converted, rejected) {
        (_, Some(reason)) => {
            // Same rule as the worker: a rejected file produces no output.
            let _ = std::fs::remove_file(output);
            let _ = std::fs::remove_file(&bad_rows_path);
            eprintln!("file rejected, no output written: {reason}");
            return Ok(ExitCode::FAILURE);
        }
        (converted, None) => {
            converted.with_context(|| format!("converting {}", input.display()))?
        }
    };
    println!(
        "{} rows written to {}",
        report.rows_written,
        output.display()
    );
    if report.rows_rejected > 0 {
        println!(
            "{} bad rows written to {}; first: {}",
            report.rows_rejected,
            bad_rows_path.display(),
            report.error_summary(3)
        );
    } else {
        let _ = std::fs::remove_file(&bad_rows_path);
    }
    Ok(ExitCode::SUCCESS)
}
