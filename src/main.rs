//! The `lakeworker` binary: parse the command line, load the config, start telemetry,
//! dispatch to [`lakeworker::cli`].
//!
//! Exit codes: 0 success, 1 failure, 2 invalid configuration or usage.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use lakeworker::cli::{self, block_on, EXIT_CONFIG};
use lakeworker::config::Settings;
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
    /// Sample a CSV or JSON-lines file (local or s3://, plain, gzip or zstd) and print a
    /// [[datasets]] block for it.
    Infer {
        /// Needed for an s3:// source: its [aws] section.
        #[arg(long)]
        config: Option<PathBuf>,
        /// csv or jsonl.
        #[arg(long)]
        format: String,
        /// The dataset's name (default: from the file name).
        #[arg(long)]
        name: Option<String>,
        /// Its landing-key glob (default: `{name}/**`).
        #[arg(long = "match")]
        pattern: Option<String>,
        /// Most rows sampled.
        #[arg(long, default_value_t = 10_000)]
        rows: u64,
        /// Most bytes sampled (of the decompressed text).
        #[arg(long, default_value_t = 16 << 20)]
        bytes: u64,
        /// A local path or s3://bucket/key.
        source: String,
    },
    /// Create the buckets, queues, notification and tables the config names.
    Provision {
        #[arg(long)]
        config: PathBuf,
    },
    /// Show the ledger: one object's versions, or recent failures; a dataset's columns,
    /// with those `on_new_columns = "add"` added and when; or an Iceberg dataset's last
    /// snapshots.
    Status {
        #[arg(long)]
        config: PathBuf,
        /// s3://bucket/key of the object.
        #[arg(required_unless_present_any = ["failed", "table", "dataset"], conflicts_with_all = ["failed", "table", "dataset"])]
        uri: Option<String>,
        /// List the most recently failed or rejected objects instead.
        #[arg(long, conflicts_with_all = ["table", "dataset"])]
        failed: bool,
        /// Show this dataset's columns: the configured ones, then those files added.
        #[arg(long, conflicts_with = "table")]
        dataset: Option<String>,
        /// Show this Iceberg dataset's table: its last snapshots and what they hold.
        #[arg(long)]
        table: Option<String>,
        /// How many failures (or snapshots) to list.
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

fn main() -> ExitCode {
    // Before any thread starts (see the module's doc).
    lakeworker::allocator::tune();
    let cli = Cli::parse();
    if let Command::Healthcheck { url, timeout } = &cli.command {
        return cli::healthcheck(url, *timeout);
    }
    if let Command::Infer {
        config,
        format,
        name,
        pattern,
        rows,
        bytes,
        source,
    } = cli.command
    {
        let settings = match config.as_deref().map(Settings::load).transpose() {
            Ok(settings) => settings,
            Err(e) => {
                eprintln!("invalid configuration: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        let request = cli::infer::Request {
            format,
            name,
            pattern,
            limits: lakeworker::infer::Limits { rows, bytes },
            source,
        };
        return block_on(cli::infer::command(settings.as_ref(), request)).unwrap_or_else(|e| {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        });
    }
    let config_path = match &cli.command {
        Command::Healthcheck { .. } | Command::Infer { .. } => unreachable!("handled above"),
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
        } => cli::convert::command(&settings, &dataset, &input, &output),
        Command::Run { .. } => block_on(cli::run::command(settings)),
        Command::Provision { .. } => block_on(cli::provision::command(settings)),
        Command::Status {
            table: Some(table),
            limit,
            ..
        } => block_on(cli::status::table(settings, &table, limit)),
        Command::Status {
            dataset: Some(dataset),
            ..
        } => block_on(cli::status::dataset(settings, &dataset)),
        Command::Status {
            uri, failed, limit, ..
        } => block_on(cli::status::command(settings, uri, failed, limit)),
        Command::Redrive { dry_run, max, .. } => {
            block_on(cli::redrive::command(settings, dry_run, max))
        }
        Command::Backfill {
            target,
            dataset,
            dry_run,
            reprocess,
            ..
        } => {
            let options = cli::backfill::Options {
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
            block_on(cli::backfill::command(settings, target, options))
        }
        Command::Healthcheck { .. } | Command::Infer { .. } => {
            unreachable!("handled before loading a config")
        }
    };
    // Outside the runtime: the exporters flush on their own threads. A stopping worker has
    // little time left (see `cli::run`); a one-off command can wait longer.
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
