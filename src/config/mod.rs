//! Configuration: a TOML file, overridden by `LAKEWORKER__SECTION__KEY` environment
//! variables, validated into typed [`Settings`] before anything touches AWS.
//!
//! Loading happens in two steps. Serde reads the layered sources into `Raw*` structs that
//! refuse unknown keys; [`RawSettings::validate`] then checks every value and collects
//! every problem, each with its key path, so one run of `check-config` shows them all.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::datasets::Router;
use crate::envelope::TopicPolicy;

/// The prefix of environment overrides; sections and keys are separated by `__`.
pub const ENV_PREFIX: &str = "LAKEWORKER";

/// Lineage columns added to every lake file; dataset columns may not start with `_`.
pub const SOURCE_COLUMN: &str = "_source";
pub const INGESTED_AT_COLUMN: &str = "_ingested_at";
/// With `extra_columns = "keep"`, undeclared columns as one JSON object per row.
pub const EXTRA_COLUMN: &str = "_extra";

mod aws;
mod catalog;
mod checks;
mod dataset;
mod health;
mod lake;
mod landing;
mod ledger;
mod log;
mod memory;
mod queue;
mod size;
mod worker;

pub use aws::{AwsSettings, AwsTimeouts};
pub use catalog::CatalogSettings;
pub use health::HealthSettings;
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
    pub datasets: Router,
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
        out.push_str(&format!("{} dataset(s):\n", self.datasets.datasets().len()));
        for dataset in self.datasets.datasets() {
            out.push_str(&format!("  {}\n", dataset.summary()));
        }
        out
    }
}

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

impl RawSettings {
    /// `env` is where the PII salt is looked up.
    fn validate(self, env: &config::Map<String, String>) -> Result<Settings, ConfigError> {
        let mut p = Problems::default();
        let pii_salt = self.lake.pii_salt(env);

        let aws = self.aws.validate(&mut p);
        let landing = self.landing.validate(&mut p);
        let queue = self.queue.validate(&mut p);
        let ledger = self.ledger.validate(&mut p);

        // landing.delete_after is checked after lake's keys and before the form of
        // lake.quarantine_prefix: the order its problems have always been reported in.
        let has_raw_zone = self.lake.raw_prefix.is_some();
        let quarantine_prefix = self.lake.quarantine_prefix.clone();
        let lake = self.lake.validate(pii_salt.clone(), &mut p);
        p.check(
            !landing.delete_after || has_raw_zone,
            "landing.delete_after",
            "needs lake.raw_prefix: a landing object is deleted only once its original is kept in the raw zone",
        );
        lake::check_prefix(&mut p, "lake.quarantine_prefix", &quarantine_prefix);

        let worker = self.worker.validate(&mut p);
        // log.level is checked after [catalog] and [health]: the order its problems have
        // always been reported in.
        let log_format = self.log.validate_format(&mut p);
        self.telemetry.validate(&mut p);
        let catalog = self.catalog.map(|raw| raw.validate(&mut p));
        let health = self.health.validate(&mut p);
        let log = self.log.validate(log_format, self.telemetry, &mut p);

        if self.datasets.is_empty() {
            p.add("datasets", "at least one [[datasets]] entry is needed");
        }
        let mut datasets = Vec::new();
        // Every name, whether or not its dataset was valid: a clash is a problem either way.
        let mut names = HashSet::new();
        for (i, raw) in self.datasets.into_iter().enumerate() {
            let path = format!("datasets[{i}]");
            if !names.insert(raw.name.clone()) {
                p.add(
                    format!("{path}.name"),
                    format!("dataset name {:?} is used twice", raw.name),
                );
            }
            if let Some(dataset) = raw.validate(&path, &mut p, pii_salt.as_ref()) {
                let row = dataset.policy.max_row_bytes;
                p.check(
                    worker.conversion_memory.bytes() >= MemoryBudget::minimum_for(row),
                    format!("{path}.max_row_bytes"),
                    format!(
                        "{row} is more than a sixteenth of worker.conversion_memory ({}): raise that to at least {} or lower this",
                        worker.conversion_memory.bytes(),
                        MemoryBudget::minimum_for(row),
                    ),
                );
                datasets.push(dataset);
            }
        }

        let (Some(lake), Some(log), true) = (lake, log, p.0.is_empty()) else {
            return Err(ConfigError { problems: p.0 });
        };
        Ok(Settings {
            aws,
            landing,
            queue,
            lake,
            ledger,
            worker,
            log,
            health,
            catalog,
            datasets: Router::new(datasets),
        })
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    pub(crate) const GOOD: &str = r#"
[aws]
region = "us-east-1"
endpoint_url = "http://127.0.0.1:4566"

[landing]
bucket = "lakeworker-landing"

[queue]
url = "http://127.0.0.1:4566/123456789012/lakeworker-landing"
dead_letter_url = "http://127.0.0.1:4566/123456789012/lakeworker-dlq"

[lake]
bucket = "lakeworker-lake"

[ledger]
table = "lakeworker-ledger"

[[datasets]]
name = "users"
match = "users/**"
format = "csv"
partition_by = "signup_date"
records_table = "lakeworker-users"
records_key = "user_id"
[[datasets.columns]]
name = "user_id"
type = "string"
required = true
[[datasets.columns]]
name = "signup_date"
type = "date"
format = "%Y/%m/%d"
"#;

    pub(super) fn load(text: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Settings::load_with_env(file.path(), env)
    }

    pub(super) fn problems(text: &str) -> Vec<String> {
        load(text, &[])
            .unwrap_err()
            .problems
            .into_iter()
            .map(|p| format!("{}: {}", p.path, p.reason))
            .collect()
    }

    #[test]
    fn good_config_loads_with_defaults() {
        let s = load(GOOD, &[]).unwrap();
        assert_eq!(s.queue.pollers.get(), 2);
        assert_eq!(s.queue.max_in_flight.get(), 8);
        assert_eq!(s.queue.wait, Duration::from_secs(20));
        assert_eq!(s.queue.max_attempts, 5);
        assert_eq!(s.queue.retry_base, Duration::from_secs(5));
        assert_eq!(s.queue.retry_max, Duration::from_secs(300));
        assert_eq!(s.worker.shutdown_grace, Duration::from_secs(25));
        assert_eq!(s.ledger.table, "lakeworker-ledger");
        assert_eq!(s.lake.prefix, "curated");
        assert_eq!(s.lake.parquet.compression, Compression::Zstd);
        let users = s.datasets.by_name("users").unwrap();
        assert_eq!(
            users.partition,
            crate::datasets::Partition::DateColumn { index: 1 }
        );
        assert_eq!(users.records.as_ref().unwrap().table, "lakeworker-users");
        assert!(s
            .summary()
            .contains("users: Csv files matching \"users/**\""));
    }

    #[test]
    fn environment_overrides_file() {
        let s = load(
            GOOD,
            &[
                ("LAKEWORKER__QUEUE__URL", "http://elsewhere/1/q"),
                ("LAKEWORKER__QUEUE__POLLERS", "7"),
                ("LAKEWORKER__LAKE__COMPRESSION", "snappy"),
            ],
        )
        .unwrap();
        assert_eq!(s.queue.url, "http://elsewhere/1/q");
        assert_eq!(s.queue.pollers.get(), 7);
        assert_eq!(s.lake.parquet.compression, Compression::Snappy);
    }

    /// Where a size key lives in GOOD: how to add a line setting it, and how to read it.
    struct SizeKey {
        path: &'static str,
        /// GOOD with `line` (`key = value`) in the key's section.
        place: fn(&str) -> String,
        read: fn(&Settings) -> u64,
    }

    fn in_lake(line: &str) -> String {
        GOOD.replace(
            "bucket = \"lakeworker-lake\"",
            &format!("bucket = \"lakeworker-lake\"\n{line}"),
        )
    }

    fn in_worker(line: &str) -> String {
        GOOD.replace("[ledger]\n", &format!("[worker]\n{line}\n[ledger]\n"))
    }

    fn in_dataset(line: &str) -> String {
        GOOD.replace(
            "records_key = \"user_id\"\n",
            &format!("records_key = \"user_id\"\n{line}\n"),
        )
    }

    fn users(s: &Settings) -> &crate::datasets::Policy {
        &s.datasets.by_name("users").unwrap().policy
    }

    const SIZE_KEYS: [SizeKey; 6] = [
        SizeKey {
            path: "lake.target_file_size",
            place: in_lake,
            read: |s| s.lake.parquet.target_file_size,
        },
        SizeKey {
            path: "lake.upload_part_size",
            place: in_lake,
            read: |s| s.lake.upload_part_size,
        },
        SizeKey {
            path: "worker.conversion_memory",
            place: in_worker,
            read: |s| s.worker.conversion_memory.bytes(),
        },
        SizeKey {
            path: "datasets[0].max_object_bytes",
            place: in_dataset,
            read: |s| users(s).max_object_bytes,
        },
        SizeKey {
            path: "datasets[0].max_decompressed_bytes",
            place: in_dataset,
            read: |s| users(s).expansion.max_bytes,
        },
        SizeKey {
            path: "datasets[0].max_row_bytes",
            place: in_dataset,
            read: |s| users(s).max_row_bytes as u64,
        },
    ];

    /// Loads GOOD with `key` set to `value` (as TOML).
    fn load_size(key: &SizeKey, value: &str) -> Result<Settings, ConfigError> {
        let name = key.path.rsplit('.').next().unwrap();
        load(&(key.place)(&format!("{name} = {value}")), &[])
    }

    #[test]
    fn every_size_key_takes_the_same_forms() {
        // 16 MiB is within every size key's range.
        let forms = [
            "16777216",
            "\"16777216\"",
            "\"16MiB\"",
            "\"16 mb\"",
            "\"16384K\"",
            "\" 16m \"",
        ];
        for key in &SIZE_KEYS {
            for form in forms {
                match load_size(key, form) {
                    Ok(s) => assert_eq!((key.read)(&s), 16 << 20, "{} = {form}", key.path),
                    Err(e) => panic!("{} = {form}: {e}", key.path),
                }
            }
            let refused = |value: &str| -> Vec<String> {
                let err = load_size(key, value).expect_err(value);
                err.problems
                    .into_iter()
                    .map(|p| format!("{}: {}", p.path, p.reason))
                    .collect()
            };
            for (value, written) in [
                ("\"lots\"", "\"lots\""),
                ("-5", "-5"),
                ("\"1.5GiB\"", "\"1.5GiB\""),
            ] {
                assert_eq!(
                    refused(value),
                    [format!(
                        "{}: {written} is not a size such as 134217728 or \"128MiB\"",
                        key.path
                    )],
                    "{} = {value}",
                    key.path
                );
            }
            let wrong_type = refused("true");
            assert_eq!(wrong_type.len(), 1, "{wrong_type:?}");
            assert!(
                wrong_type[0].starts_with(&format!(
                    "{}: invalid type: boolean `true`, expected a size",
                    key.path
                )),
                "{wrong_type:?}"
            );
        }
        // Datasets from LAKEWORKER_DATASETS are TOML too.
        for form in forms {
            let views = another_dataset("views").replace(
                "format = \"jsonl\"\n",
                &format!("format = \"jsonl\"\nmax_row_bytes = {form}\n"),
            );
            let s = load(GOOD, &[(DATASETS_ENV, views.as_str())]).unwrap();
            let views = s.datasets.by_name("views").unwrap();
            assert_eq!(views.policy.max_row_bytes, 16 << 20, "{form}");
        }
        // Environment overrides arrive as strings, with or without a unit.
        for (name, value) in [
            ("LAKEWORKER__LAKE__TARGET_FILE_SIZE", "16777216"),
            ("LAKEWORKER__LAKE__UPLOAD_PART_SIZE", "16MiB"),
            ("LAKEWORKER__WORKER__CONVERSION_MEMORY", "16 MB"),
        ] {
            let s = load(GOOD, &[(name, value)]).unwrap();
            let read = [
                s.lake.parquet.target_file_size,
                s.lake.upload_part_size,
                s.worker.conversion_memory.bytes(),
            ];
            assert!(read.contains(&(16 << 20)), "{name}={value}: {read:?}");
        }
    }

    #[test]
    fn size_ranges_are_reported_in_the_same_words() {
        let cases = [
            (
                "lake.target_file_size",
                "\"1KiB\"",
                "\"1KiB\" must be between 1MiB and 64GiB",
            ),
            (
                "lake.upload_part_size",
                "1048576",
                "1048576 must be between 5MiB and 5GiB (S3's part size limits)",
            ),
            (
                "worker.conversion_memory",
                "\"1MiB\"",
                "\"1MiB\" must be between 16MiB and 1TiB",
            ),
            (
                "datasets[0].max_object_bytes",
                "0",
                "0 must be at least 1 byte",
            ),
            (
                "datasets[0].max_decompressed_bytes",
                "0",
                "0 must be at least 1 byte",
            ),
            (
                "datasets[0].max_row_bytes",
                "\"32\"",
                "\"32\" must be between 64 bytes and 256MiB",
            ),
        ];
        for (path, value, reason) in cases {
            let key = SIZE_KEYS.iter().find(|k| k.path == path).unwrap();
            let err = load_size(key, value).unwrap_err();
            assert_eq!(err.to_string(), format!("{path}: {reason}"));
        }
    }

    #[test]
    fn the_conversion_memory_must_hold_the_longest_rows() {
        assert_eq!(
            load(GOOD, &[]).unwrap().worker.conversion_memory,
            MemoryBudget::new(256 << 20)
        );
        let long_rows = in_dataset("max_row_bytes = \"64MiB\"");
        assert_eq!(
            problems(&long_rows),
            ["datasets[0].max_row_bytes: 67108864 is more than a sixteenth of worker.conversion_memory (268435456): raise that to at least 1073741824 or lower this"]
        );
        let s = load(
            &long_rows,
            &[("LAKEWORKER__WORKER__CONVERSION_MEMORY", "1GiB")],
        )
        .unwrap();
        assert_eq!(s.worker.conversion_memory.bytes(), 1 << 30);
    }

    #[test]
    fn delete_after_needs_the_raw_zone() {
        let err = load(GOOD, &[("LAKEWORKER__LANDING__DELETE_AFTER", "true")]).unwrap_err();
        assert!(
            err.to_string()
                .contains("landing.delete_after: needs lake.raw_prefix"),
            "{err}"
        );
        let err = load(GOOD, &[("LAKEWORKER__LAKE__RAW_PREFIX", "curated")]).unwrap_err();
        assert!(
            err.to_string().contains("lake.raw_prefix: must differ"),
            "{err}"
        );
        let s = load(
            GOOD,
            &[
                ("LAKEWORKER__LANDING__DELETE_AFTER", "true"),
                ("LAKEWORKER__LAKE__RAW_PREFIX", "raw"),
            ],
        )
        .unwrap();
        assert!(s.landing.delete_after);
        assert_eq!(s.lake.raw_prefix.as_deref(), Some("raw"));
    }

    /// The `events` dataset of GOOD, renamed, as its own TOML text.
    fn another_dataset(name: &str) -> String {
        format!(
            "[[datasets]]\nname = \"{name}\"\nmatch = \"{name}/**\"\nformat = \"jsonl\"\n[[datasets.columns]]\nname = \"id\"\ntype = \"string\"\n"
        )
    }

    #[test]
    fn datasets_also_come_from_a_file_and_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("more.toml"), another_dataset("clicks")).unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(&config, format!("datasets_file = \"more.toml\"\n{GOOD}")).unwrap();
        let env = [(DATASETS_ENV.to_string(), another_dataset("views"))];
        let s = Settings::load_with_env(&config, env).unwrap();
        let names: Vec<&str> = s
            .datasets
            .datasets()
            .iter()
            .map(|d| d.name.as_str())
            .collect();
        assert_eq!(&names[names.len() - 2..], ["clicks", "views"]);
        assert!(names.len() > 2);

        // A missing file, a bad text and a clash are errors that say where.
        let err = load(
            GOOD,
            &[("LAKEWORKER__DATASETS_FILE", "/nonexistent/d.toml")],
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("datasets_file: /nonexistent/d.toml"),
            "{err}"
        );
        let bad = another_dataset("x").replace("format", "fromat");
        let err = load(GOOD, &[(DATASETS_ENV, bad.as_str())]).unwrap_err();
        assert!(
            err.to_string()
                .contains("LAKEWORKER_DATASETS: datasets[0].fromat"),
            "{err}"
        );
        let err = load(GOOD, &[(DATASETS_ENV, "[lake]\nbucket = \"b\"")]).unwrap_err();
        assert!(err.to_string().contains("unknown field `lake`"), "{err}");
        let twice = another_dataset("users");
        let err = load(GOOD, &[(DATASETS_ENV, twice.as_str())]).unwrap_err();
        assert!(err.to_string().contains("\"users\" is used twice"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused_with_their_path() {
        let text = GOOD.replace("[queue]\n", "[queue]\npolers = 3\n");
        let found = problems(&text);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].starts_with("queue.polers: unknown field `polers`, expected one of `url`"),
            "{found:?}"
        );
        assert!(!found[0].contains("for key"), "{found:?}");
        let env = load(GOOD, &[("LAKEWORKER__QUEUE__POLERS", "3")]).unwrap_err();
        assert!(env.to_string().contains("unknown field `polers`"), "{env}");
    }

    #[test]
    fn bad_types_name_the_key() {
        let text = GOOD.replace("type = \"date\"", "type = \"datetime\"");
        let found = problems(&text);
        assert_eq!(
            found,
            ["datasets[0].columns[1].type: \"datetime\" is not one of: string, int, float, bool, date, timestamp"]
        );
        let text = GOOD.replace(
            "bucket = \"lakeworker-lake\"",
            "bucket = \"lakeworker-lake\"\ncompression = \"lz4\"",
        );
        assert_eq!(
            problems(&text),
            ["lake.compression: \"lz4\" is not one of: zstd, snappy, none"]
        );
        let text = GOOD.replace("[queue]\n", "[queue]\npollers = \"many\"\n");
        let found = problems(&text);
        assert!(found[0].starts_with("queue.pollers:"), "{found:?}");
    }

    #[test]
    fn every_problem_is_reported() {
        let text = GOOD
            .replace("match = \"users/**\"", "match = \"users/[\"")
            .replace(
                "partition_by = \"signup_date\"",
                "partition_by = \"user_id\"",
            )
            .replace("records_key = \"user_id\"", "records_key = \"nope\"")
            .replace("bucket = \"lakeworker-lake\"", "bucket = \"Bad_Bucket\"")
            .replace("[queue]\n", "[queue]\nwait_seconds = 30\n");
        let found = problems(&text);
        let paths: Vec<&str> = found.iter().map(|f| f.split(':').next().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "queue.wait_seconds",
                "lake.bucket",
                "datasets[0].match",
                "datasets[0].partition_by",
                "datasets[0].records_key"
            ],
            "{found:#?}"
        );
    }

    #[test]
    fn dataset_rules() {
        let dup = format!("{GOOD}\n{}", &GOOD[GOOD.find("[[datasets]]").unwrap()..]);
        assert!(problems(&dup)
            .iter()
            .any(|p| p.contains("dataset name \"users\" is used twice")));
        // The first of the two is invalid: the clash is reported all the same.
        let broken_first = format!(
            "{}\n{}",
            GOOD.replace("match = \"users/**\"", "match = \"users/[\""),
            &GOOD[GOOD.find("[[datasets]]").unwrap()..]
        );
        let found = problems(&broken_first);
        assert!(
            found.contains(&"datasets[1].name: dataset name \"users\" is used twice".to_owned()),
            "{found:#?}"
        );
        let reserved = GOOD.replace("name = \"user_id\"", "name = \"_source\"");
        assert!(problems(&reserved)
            .iter()
            .any(|p| p.starts_with("datasets[0].columns[0].name")));
        let bad_format = GOOD.replace("format = \"%Y/%m/%d\"", "format = \"%Q\"");
        assert!(problems(&bad_format)
            .iter()
            .any(|p| p.starts_with("datasets[0].columns[1].format")));
        let optional_key = GOOD.replace("required = true\n", "");
        assert!(problems(&optional_key)
            .iter()
            .any(|p| p.starts_with("datasets[0].records_key")));
        let no_datasets = &GOOD[..GOOD.find("[[datasets]]").unwrap()];
        assert_eq!(
            problems(no_datasets),
            ["datasets: at least one [[datasets]] entry is needed"]
        );
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let err = Settings::load_with_env(Path::new("/nonexistent/x.toml"), []).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
}
