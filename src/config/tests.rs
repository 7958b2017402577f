//! Tests of loading a whole configuration, and the fixtures the tests of every section
//! share: [`GOOD`], a valid configuration, helpers that add to it, and [`load`] and
//! [`problems`], which read a text with an environment.

use std::io::Write;
use std::time::Duration;

use super::*;

pub(super) const GOOD: &str = r#"
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

/// GOOD with `line` added to its `users` dataset.
pub(super) fn in_dataset(line: &str) -> String {
    GOOD.replace(
        "records_key = \"user_id\"\n",
        &format!("records_key = \"user_id\"\n{line}\n"),
    )
}

/// GOOD with `extra` appended to the users dataset and `column` to its columns.
pub(super) fn with(extra: &str, column: &str) -> String {
    let text = GOOD.replace(
        "records_key = \"user_id\"\n",
        &format!("records_key = \"user_id\"\n{extra}\n"),
    );
    format!("{text}{column}\n")
}

/// The `events` dataset of GOOD, renamed, as its own TOML text.
pub(super) fn another_dataset(name: &str) -> String {
    format!(
        "[[datasets]]\nname = \"{name}\"\nmatch = \"{name}/**\"\nformat = \"jsonl\"\n[[datasets.columns]]\nname = \"id\"\ntype = \"string\"\n"
    )
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
    assert_eq!(s.lake.parquet.zstd_level, 1);
    let users = s.datasets.by_name("users").unwrap();
    assert_eq!(
        users.partition,
        crate::domain::dataset::Partition::DateColumn { index: 1 }
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
            ("LAKEWORKER__LAKE__ZSTD_LEVEL", "9"),
        ],
    )
    .unwrap();
    assert_eq!(s.queue.url, "http://elsewhere/1/q");
    assert_eq!(s.queue.pollers.get(), 7);
    assert_eq!(s.lake.parquet.compression, Compression::Snappy);
    assert_eq!(s.lake.parquet.zstd_level, 9);
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
    for level in ["0", "23"] {
        let text = GOOD.replace(
            "bucket = \"lakeworker-lake\"",
            &format!("bucket = \"lakeworker-lake\"\nzstd_level = {level}"),
        );
        assert_eq!(
            problems(&text),
            ["lake.zstd_level: must be between 1 and 22"]
        );
    }
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

#[test]
fn the_load_history_is_kept_by_default_and_can_be_turned_off() {
    let lake = |extra: &str| {
        GOOD.replace(
            "bucket = \"lakeworker-lake\"\n",
            &format!("bucket = \"lakeworker-lake\"\n{extra}\n"),
        )
    };
    let s = load(GOOD, &[]).unwrap();
    assert_eq!(s.lake.history_interval, Some(Duration::from_secs(300)));
    let history = s.datasets.history().expect("the history table");
    assert_eq!(history.name, crate::domain::history::LOADS_TABLE);
    assert!(
        s.datasets.by_name("lakeworker_loads").is_none(),
        "not a dataset"
    );
    assert!(
        s.datasets.table("lakeworker_loads").is_some(),
        "but a table"
    );
    assert!(
        s.datasets.route("lakeworker_loads").is_none(),
        "and never a route"
    );
    assert!(s
        .summary()
        .contains("load history: table lakeworker_loads (Hive), flushed every 300s"));

    let off = load(
        &lake("history = false\nhistory_interval = \"forever\""),
        &[],
    )
    .unwrap();
    assert_eq!(
        off.lake.history_interval, None,
        "the interval is not read when off"
    );
    assert!(off.datasets.history().is_none());

    let found = problems(&lake("history_interval = \"2d\""));
    assert_eq!(
        found,
        ["lake.history_interval: \"2d\" must be between 100ms and 24h"]
    );
    let found = problems(&lake("table_format = \"iceberg\""));
    assert!(
        found.iter().any(|p| p.starts_with("lake.table_format: \"iceberg\" makes the load history an Iceberg table, which needs [catalog]")),
        "{found:?}"
    );
    let found = problems(&GOOD.replace("name = \"users\"", "name = \"lakeworker_loads\""));
    assert!(
        found.iter().any(|p| p
            == "datasets[0].name: \"lakeworker_loads\" is the load history's table (lake.history)"),
        "{found:?}"
    );
}
