//! Configuration: a TOML file, overridden by `LAKEWORKER__SECTION__KEY` environment
//! variables, validated into typed [`Settings`] before anything touches AWS.
//!
//! Loading happens in two steps. Serde reads the layered sources into `Raw*` structs that
//! refuse unknown keys; [`RawSettings::validate`] then checks every value and collects
//! every problem, each with its key path, so one run of `check-config` shows them all.
//!
//! This file holds [`Settings`], loading and the problem types. Each section has a file of
//! its own with its raw struct, defaults, validated settings and checks: `aws.rs`,
//! `landing.rs`, `queue.rs`, `ledger.rs`, `lake.rs`, `worker.rs`, `log.rs` (with
//! `[telemetry]`), `catalog.rs`, `health.rs`, and `dataset.rs` for `[[datasets]]` (with
//! `dataset_columns.rs` and `dataset_csv.rs`). `validate.rs` checks them all in order,
//! with the checks that span sections; `size.rs` and `checks.rs` hold what several
//! sections share, `memory.rs` the conversion memory budget, `tests.rs` the shared test
//! fixtures and the tests of a whole configuration.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::domain::dataset::Router;
use crate::domain::envelope::TopicPolicy;

/// The prefix of environment overrides; sections and keys are separated by `__`.
pub const ENV_PREFIX: &str = "LAKEWORKER";

/// Lineage columns added to every lake file; dataset columns may not start with `_`.
pub const SOURCE_COLUMN: &str = "_source";
pub const INGESTED_AT_COLUMN: &str = "_ingested_at";
/// With `on_new_columns = "keep"`, undeclared columns as one JSON object per row.
pub const EXTRA_COLUMN: &str = "_extra";
/// With `on_new_columns = "rescue"` or `on_invalid = "rescue"`: per row, a JSON object of
/// what did not fit (column name → raw text, and under `_rules` the rule each bad cell
/// failed).
pub const RESCUED_COLUMN: &str = "_rescued";

mod aws;
mod catalog;
mod checks;
mod dataset;
mod dataset_columns;
mod dataset_csv;
mod health;
mod iceberg;
mod lake;
mod landing;
mod ledger;
mod log;
mod memory;
mod queue;
mod size;
mod validate;
mod worker;

pub use aws::{AwsSettings, AwsTimeouts};
pub use catalog::CatalogSettings;
pub use health::HealthSettings;
pub use iceberg::{parse_duration, IcebergSettings};
pub use lake::{Compression, LakeSettings, ParquetOptions, Secret};
pub use landing::LandingSettings;
pub use ledger::LedgerSettings;
pub use log::{LogFormat, LogSettings};
pub use memory::MemoryBudget;
pub use queue::QueueSettings;
pub use size::parse_size;
pub use worker::WorkerSettings;

/// Every problem found in a configuration, each with its key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

/// One configuration problem: where (`queue.pollers`, `datasets[1].match`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if p.path.is_empty() {
                write!(f, "{}", p.reason)?;
            } else {
                write!(f, "{}: {}", p.path, p.reason)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Collects problems while validating.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            reason: reason.into(),
        });
    }

    fn check(&mut self, ok: bool, path: impl Into<String>, reason: impl Into<String>) {
        if !ok {
            self.add(path, reason);
        }
    }
}

impl ConfigError {
    fn single(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            problems: vec![Problem {
                path: path.into(),
                reason: reason.into(),
            }],
        }
    }
}

/// Validated settings: what the rest of the program reads.
#[derive(Debug, Clone)]
pub struct Settings {
    pub aws: AwsSettings,
    pub landing: LandingSettings,
    pub queue: QueueSettings,
    pub lake: LakeSettings,
    pub ledger: LedgerSettings,
    pub worker: WorkerSettings,
    pub log: LogSettings,
    pub health: HealthSettings,
    /// The Athena / Glue catalog; `None` leaves it alone.
    pub catalog: Option<CatalogSettings>,
    /// How Iceberg tables are committed and kept (defaults unless `[iceberg]` is given).
    pub iceberg: IcebergSettings,
    pub datasets: Router,
    /// Deprecated keys in use, each with what replaces it (`check-config` prints them, the
    /// worker logs them at start).
    pub deprecations: Vec<String>,
}

// ----- raw, as written -------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    aws: aws::RawAws,
    landing: landing::RawLanding,
    queue: queue::RawQueue,
    lake: lake::RawLake,
    ledger: ledger::RawLedger,
    #[serde(default)]
    worker: worker::RawWorker,
    #[serde(default)]
    log: log::RawLog,
    #[serde(default)]
    health: health::RawHealth,
    catalog: Option<catalog::RawCatalog>,
    #[serde(default)]
    iceberg: iceberg::RawIceberg,
    #[serde(default)]
    telemetry: log::RawTelemetry,
    /// A TOML file with more `[[datasets]]`, relative to this config file.
    datasets_file: Option<PathBuf>,
    #[serde(default)]
    datasets: Vec<dataset::RawDataset>,
}

// ----- loading ---------------------------------------------------------------------------

/// An environment variable holding TOML with more `[[datasets]]`, for containers.
pub const DATASETS_ENV: &str = "LAKEWORKER_DATASETS";

/// A deserialization error as a problem at its key path, prefixed with `source`.
fn deserialize_error(
    source: &str,
    e: serde_path_to_error::Error<config::ConfigError>,
) -> ConfigError {
    let path = e.path().to_string();
    let path = if path == "." { String::new() } else { path };
    let mut reason = e.into_inner().to_string();
    // The config crate repeats the key in its own notation; the path says it better.
    if let Some(at) = reason.rfind(" for key `") {
        reason.truncate(at);
    }
    ConfigError::single(format!("{source}{path}"), reason)
}

/// `[[datasets]]` (and nothing else) from another TOML text: `datasets_file` or
/// [`DATASETS_ENV`]. `source` names it in errors.
fn more_datasets(source: &str, text: &str) -> Result<Vec<dataset::RawDataset>, ConfigError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct OnlyDatasets {
        #[serde(default)]
        datasets: Vec<dataset::RawDataset>,
    }
    let parsed = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .map_err(|e| ConfigError::single(source.trim_end_matches([':', ' ']), e.to_string()))?;
    let only: OnlyDatasets =
        serde_path_to_error::deserialize(parsed).map_err(|e| deserialize_error(source, e))?;
    Ok(only.datasets)
}

impl Settings {
    /// Reads `path`, applies `LAKEWORKER__…` environment overrides, adds the datasets of
    /// `datasets_file` and of [`DATASETS_ENV`], validates.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// [`Settings::load`] with an explicit environment, for tests.
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        if !path.is_file() {
            return Err(ConfigError::single(
                "",
                format!(
                    "config file {} does not exist or is not a file",
                    path.display()
                ),
            ));
        }
        let env: config::Map<String, String> = env.into_iter().collect();
        let layered = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__")
                    .source(Some(env.clone())),
            )
            .build()
            .map_err(|e| ConfigError::single("", format!("{}: {e}", path.display())))?;
        let mut raw: RawSettings =
            serde_path_to_error::deserialize(layered).map_err(|e| deserialize_error("", e))?;
        if let Some(file) = raw.datasets_file.take() {
            let file = path.parent().unwrap_or(Path::new(".")).join(file);
            let text = std::fs::read_to_string(&file).map_err(|e| {
                ConfigError::single("datasets_file", format!("{}: {e}", file.display()))
            })?;
            let source = format!("{}: ", file.display());
            raw.datasets.extend(more_datasets(&source, &text)?);
        }
        if let Some(text) = env.get(DATASETS_ENV).filter(|t| !t.trim().is_empty()) {
            raw.datasets
                .extend(more_datasets(&format!("{DATASETS_ENV}: "), text)?);
        }
        raw.validate(&env)
    }

    /// A short human summary for `check-config`.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "landing s3://{} → queue {} ({} pollers, {} in flight); lake s3://{}/{} ({:?})\n",
            self.landing.bucket,
            self.queue.url,
            self.queue.pollers,
            self.queue.max_in_flight,
            self.lake.bucket,
            self.lake.prefix,
            self.lake.parquet.compression,
        );
        match &self.queue.sns_topics {
            TopicPolicy::AnyTopic => {}
            TopicPolicy::Only(topics) if topics.is_empty() => out.push_str(
                "SNS notifications: refused from every topic (queue.allowed_topic_arns is empty)\n",
            ),
            TopicPolicy::Only(topics) => out.push_str(&format!(
                "SNS notifications: only from {}\n",
                topics.join(", ")
            )),
        }
        for deprecation in &self.deprecations {
            out.push_str(&format!("warning: {deprecation}\n"));
        }
        out.push_str(&format!("{} dataset(s):\n", self.datasets.datasets().len()));
        for dataset in self.datasets.datasets() {
            out.push_str(&format!("  {}\n", dataset.summary()));
        }
        if let (Some(history), Some(every)) = (self.datasets.history(), self.lake.history_interval)
        {
            out.push_str(&format!(
                "load history: table {} ({:?}), flushed every {every:?}\n",
                history.name, history.table
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests;
