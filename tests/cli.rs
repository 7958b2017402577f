//! The one-shot commands: `check-config`, `convert` and `provision`.

mod common;

use std::path::Path;

use arrow::array::{Array, Date32Array};
use arrow::datatypes::DataType;
use aws_sdk_sqs::types::QueueAttributeName;
use common::*;

/// `lakeworker convert` with the users dataset of the tests' config fixture.
fn convert_users(input: &Path, output: &Path) -> std::process::Output {
    let (input, output) = (input.to_str().unwrap(), output.to_str().unwrap());
    lakeworker(
        &[
            "convert",
            "--config",
            WORKER_CONFIG,
            "--dataset",
            "users",
            input,
            output,
        ],
        &[],
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The demo config shipped for `make demo` is valid. Checking the demo config itself is
/// the point of this test, so it reads config/local.toml; every other test uses the tests'
/// own fixture (tests/fixtures/worker.toml).
#[test]
fn the_shipped_demo_config_is_valid() {
    let out = lakeworker(&["check-config", "--config", "config/local.toml"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.ends_with("config OK\n"), "{stdout}");
}

#[test]
fn check_config_summarises_a_good_config() {
    let out = lakeworker(&["check-config", "--config", WORKER_CONFIG], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("3 dataset(s)"), "{stdout}");
    assert!(
        stdout.contains("users: Csv files matching \"users/**\", partitioned by signup_date"),
        "{stdout}"
    );
    assert!(
        stdout.contains("records → DynamoDB lakeworker-users (key user_id)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "orders: Csv files matching \"orders/*.csv\", partitioned by ordered_at_date"
        ),
        "{stdout}"
    );
    assert!(stdout.ends_with("config OK\n"), "{stdout}");
}

/// The image's config with what a task definition gives it (as `deploy/` does). Checking
/// the shipped config/container.toml itself is the point of this test.
#[test]
fn the_container_config_takes_everything_site_specific_from_the_environment() {
    let datasets = "[[datasets]]\nname = \"events\"\nmatch = \"events/**\"\nformat = \"jsonl\"\n[[datasets.columns]]\nname = \"id\"\ntype = \"string\"\n";
    let env = [
        ("LAKEWORKER__AWS__REGION", "eu-west-1"),
        ("LAKEWORKER__LANDING__BUCKET", "acme-landing"),
        (
            "LAKEWORKER__QUEUE__URL",
            "https://sqs.eu-west-1.amazonaws.com/123456789012/landing",
        ),
        (
            "LAKEWORKER__QUEUE__DEAD_LETTER_URL",
            "https://sqs.eu-west-1.amazonaws.com/123456789012/landing-dlq",
        ),
        ("LAKEWORKER__LAKE__BUCKET", "acme-lake"),
        ("LAKEWORKER__LEDGER__TABLE", "acme-ledger"),
        ("LAKEWORKER_DATASETS", datasets),
    ];
    let out = lakeworker(&["check-config", "--config", "config/container.toml"], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("landing s3://acme-landing"), "{stdout}");
    assert!(
        stdout.contains("events: Jsonl files matching \"events/**\""),
        "{stdout}"
    );

    // Without the environment, what is missing is named.
    let out = lakeworker(&["check-config", "--config", "config/container.toml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("missing configuration field \"aws\""),
        "{stderr}"
    );
}

#[test]
fn check_config_reports_every_problem_with_its_key_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let mut bad = ConfigFile::load(WORKER_CONFIG);
    bad.set("datasets.users.match", "users/[")
        .set("datasets.users.records_key", "nobody")
        .set("queue.pollers", 0);
    let path = dir.path().join("bad.toml");
    bad.write(&path);
    let out = lakeworker(&["check-config", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    for expected in [
        "queue.pollers: must be between 1 and 256",
        "datasets[0].match: \"users/[\" is not a valid glob",
        "datasets[0].records_key: \"nobody\" is not a column of this dataset",
    ] {
        assert!(stderr.contains(expected), "{expected:?} not in:\n{stderr}");
    }

    let typo = lakeworker(
        &["check-config", "--config", WORKER_CONFIG],
        &[("LAKEWORKER__QUEUE__POLERS", "4")],
    );
    assert_eq!(typo.status.code(), Some(2));
    assert!(
        text(&typo.stderr).contains("queue.polers: unknown field `polers`"),
        "{}",
        text(&typo.stderr)
    );

    let missing = lakeworker(&["check-config", "--config", "no/such.toml"], &[]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("does not exist"));
}

#[test]
fn run_refuses_an_invalid_config_before_touching_aws() {
    let out = lakeworker(
        &["run", "--config", WORKER_CONFIG],
        &[("LAKEWORKER__LAKE__COMPRESSION", "lz4")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("lake.compression: \"lz4\" is not one of: zstd, snappy, none")
    );
}

#[test]
fn convert_writes_one_typed_parquet_file() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("users.parquet");
    let out = convert_users(Path::new("examples/users/late signups+fixes.csv"), &output);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("2 rows written to {}\n", output.display())
    );

    let batches = read_parquet(std::fs::read(&output).unwrap().into());
    let batch = &batches[0];
    let dates = batch.column_by_name("signup_date").unwrap();
    assert_eq!(dates.data_type(), &DataType::Date32);
    let dates = dates.as_any().downcast_ref::<Date32Array>().unwrap();
    assert_eq!(dates.value_as_date(1).unwrap().to_string(), "2024-05-04");

    let seen = read_with_pyarrow(&output);
    assert_eq!(seen["schema"]["signup_date"], "date32[day]");
    assert_eq!(seen["schema"]["age"], "int64");
    let rows = seen["rows"].as_array().unwrap();
    let dennis = rows.iter().find(|r| r["user_id"] == "u-007").unwrap();
    assert_eq!(dennis["plan"], "pro\r\n(trial)", "quoted newlines survive");
    assert!(
        dennis["age"].is_null(),
        "a column missing from the file is null"
    );
    assert!(dennis["_source"].as_str().unwrap().starts_with("file:///"));
}

#[test]
fn convert_refuses_a_file_with_bad_rows() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.csv");
    std::fs::write(
        &input,
        "user_id,signup_date\nu-1,2024/01/01\nu-2,yesterday\n",
    )
    .unwrap();
    let output = dir.path().join("out.parquet");
    let out = convert_users(&input, &output);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("file rejected, no output written: 1 of 2 rows are invalid (50.0%), above max_invalid_fraction 0.1"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "line 3, column signup_date: \"yesterday\" is not a date in format \"%Y/%m/%d\""
        ),
        "{stderr}"
    );
    assert!(!output.exists());

    // Under the limit, good rows are written and bad ones listed beside the output.
    let mut many = String::from("user_id,signup_date\n");
    for i in 0..20 {
        many.push_str(&format!("u-{i},2024/01/01\n"));
    }
    many.push_str("u-99,someday\n");
    std::fs::write(&input, many).unwrap();
    let out = convert_users(&input, &output);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("20 rows written"), "{stdout}");
    assert!(stdout.contains("1 bad rows written to"), "{stdout}");
    let bad_rows = std::fs::read_to_string(format!("{}.bad-rows.jsonl", output.display())).unwrap();
    let bad: serde_json::Value = serde_json::from_str(bad_rows.trim()).unwrap();
    assert_eq!(bad["line"], 22);
    assert_eq!(bad["errors"][0]["rule"], "type");

    let unknown = lakeworker(
        &[
            "convert",
            "--config",
            WORKER_CONFIG,
            "--dataset",
            "nope",
            "a",
            "b",
        ],
        &[],
    );
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown.stderr)
        .contains("unknown dataset \"nope\"; the config defines: users, events, orders"));
}

#[test]
fn convert_refuses_a_decompression_bomb() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bomb.csv.gz");
    let note = "x".repeat(8000);
    let (bomb, expanded) = gzip_bomb(
        "user_id,signup_date,note\n",
        &format!("u-1,2024/01/01,{note}\n"),
        3200,
    );
    assert!(expanded > 3 << 30);
    std::fs::write(&input, &bomb).unwrap();
    let output = dir.path().join("out.parquet");
    let out = convert_users(&input, &output);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("file rejected, no output written: the object expands more than max_compression_ratio (200) times"),
        "{stderr}"
    );
    assert!(!output.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provision_is_idempotent_and_sets_the_redrive_policy() {
    let env = TestEnv::builder("provision")
        .env("LAKEWORKER__QUEUE__MAX_ATTEMPTS", "3")
        .start()
        .await;
    let again = env.cli(&["provision", "--config", env.config_str()]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    let stdout = text(&again.stdout);
    assert!(
        stdout.contains(&format!("bucket s3://{} exists", env.landing)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "table {} (key user_id: S, on-demand) exists",
            env.users_table
        )),
        "{stdout}"
    );

    let attributes = env
        .clients
        .sqs
        .get_queue_attributes()
        .queue_url(&env.queue_url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    let redrive: serde_json::Value =
        serde_json::from_str(&attributes[&QueueAttributeName::RedrivePolicy]).unwrap();
    assert_eq!(
        redrive["maxReceiveCount"].to_string().trim_matches('"'),
        "4"
    );
    assert!(redrive["deadLetterTargetArn"]
        .as_str()
        .unwrap()
        .ends_with("-dlq"));
    assert_eq!(attributes[&QueueAttributeName::VisibilityTimeout], "60");
    let policy: serde_json::Value =
        serde_json::from_str(&attributes[&QueueAttributeName::Policy]).unwrap();
    assert_eq!(
        policy["Statement"][0]["Principal"]["Service"],
        "s3.amazonaws.com"
    );
    assert_eq!(
        policy["Statement"][0]["Condition"]["ArnLike"]["aws:SourceArn"],
        format!("arn:aws:s3:::{}", env.landing)
    );
    let dlq = env
        .clients
        .sqs
        .get_queue_attributes()
        .queue_url(&env.dlq_url)
        .attribute_names(QueueAttributeName::MessageRetentionPeriod)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    assert_eq!(
        dlq[&QueueAttributeName::MessageRetentionPeriod],
        "1209600",
        "14 days"
    );

    let notification = env
        .clients
        .s3
        .get_bucket_notification_configuration()
        .bucket(&env.landing)
        .send()
        .await
        .unwrap();
    let queues = notification.queue_configurations();
    assert_eq!(queues.len(), 1);
    assert_eq!(queues[0].events()[0].as_str(), "s3:ObjectCreated:*");
}

/// Each kind of config mistake on its own: `check-config` exits 2 and names the key.
#[test]
fn check_config_names_the_key_and_reason_of_each_kind_of_mistake() {
    const BASE: &str = r#"
[aws]
region = "us-east-1"
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
"#;
    let dataset = &BASE[BASE.find("[[datasets]]").unwrap()..];
    let cases: [(&str, String, &str); 8] = [
        (
            "unknown key",
            BASE.replace("[queue]\n", "[queue]\npolers = 3\n"),
            "queue.polers: unknown field `polers`",
        ),
        (
            "bad glob",
            BASE.replace("match = \"users/**\"", "match = \"users/[\""),
            "datasets[0].match: \"users/[\" is not a valid glob",
        ),
        (
            "unknown type",
            BASE.replace("type = \"date\"", "type = \"datetime\""),
            "datasets[0].columns[1].type: \"datetime\" is not one of: string, int, float, bool, date, timestamp",
        ),
        (
            "pattern that does not compile",
            format!("{BASE}[[datasets.columns]]\nname = \"code\"\ntype = \"string\"\npattern = \"(\"\n"),
            "datasets[0].columns[2].pattern: \"(\" does not compile",
        ),
        (
            "min above max",
            format!("{BASE}[[datasets.columns]]\nname = \"age\"\ntype = \"int\"\nmin = 5\nmax = 1\n"),
            "datasets[0].columns[2].min: 5 is above max 1",
        ),
        (
            "partition column not a date or timestamp",
            BASE.replace("partition_by = \"signup_date\"", "partition_by = \"user_id\""),
            "datasets[0].partition_by: column \"user_id\" has type string; partition columns must be date or timestamp",
        ),
        (
            "duplicate dataset names",
            format!("{BASE}{dataset}"),
            "datasets[1].name: dataset name \"users\" is used twice",
        ),
        (
            "records_key not a column",
            BASE.replace("records_key = \"user_id\"", "records_key = \"nobody\""),
            "datasets[0].records_key: \"nobody\" is not a column of this dataset",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, BASE).unwrap();
    let out = lakeworker(&["check-config", "--config", good.to_str().unwrap()], &[]);
    assert!(
        out.status.success(),
        "the base is good: {}",
        text(&out.stderr)
    );
    for (n, (mistake, config, expected)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad-{n}.toml"));
        std::fs::write(&path, config).unwrap();
        let out = lakeworker(&["check-config", "--config", path.to_str().unwrap()], &[]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{mistake}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{mistake}: {expected:?} not in:\n{stderr}"
        );
    }
}

/// Describes `table` and returns its billing mode and its key schema as
/// `(attribute, key type, attribute type)`, hash key first.
async fn table_keys(
    env: &TestEnv,
    table: &str,
) -> (
    Option<aws_sdk_dynamodb::types::BillingMode>,
    Vec<(String, String, String)>,
) {
    let described = env
        .clients
        .dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .unwrap_or_else(|e| panic!("describe {table}: {e:?}"))
        .table
        .expect("table description");
    let billing = described
        .billing_mode_summary()
        .and_then(|s| s.billing_mode())
        .cloned();
    let types = described.attribute_definitions();
    let keys = described
        .key_schema()
        .iter()
        .map(|k| {
            let kind = types
                .iter()
                .find(|d| d.attribute_name() == k.attribute_name())
                .map(|d| d.attribute_type().as_str().to_owned())
                .unwrap_or_else(|| panic!("{table}: no attribute definition for {k:?}"));
            (
                k.attribute_name().to_owned(),
                k.key_type().as_str().to_owned(),
                kind,
            )
        })
        .collect();
    (billing, keys)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provision_creates_on_demand_tables_keyed_by_strings() {
    use aws_sdk_dynamodb::types::BillingMode;
    let env = TestEnv::builder("tables").start().await;

    let (billing, keys) = table_keys(&env, &env.users_table).await;
    assert_eq!(billing, Some(BillingMode::PayPerRequest), "users table");
    assert_eq!(
        keys,
        [("user_id".into(), "HASH".into(), "S".into())],
        "users table"
    );

    let (billing, keys) = table_keys(&env, &env.ledger_table).await;
    assert_eq!(billing, Some(BillingMode::PayPerRequest), "ledger table");
    assert_eq!(
        keys,
        [
            ("object_uri".into(), "HASH".into(), "S".into()),
            ("object_version".into(), "RANGE".into(), "S".into()),
        ],
        "ledger table"
    );
}

/// The codec of every column chunk of a Parquet file.
fn codecs(path: &Path) -> Vec<parquet::basic::Compression> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let metadata = reader.metadata();
    assert!(metadata.num_row_groups() > 0, "{}", path.display());
    metadata
        .row_groups()
        .iter()
        .flat_map(|group| group.columns().iter().map(|column| column.compression()))
        .collect()
}

#[test]
fn convert_compresses_with_the_configured_codec() {
    use parquet::basic::Compression;
    let dir = tempfile::tempdir().unwrap();
    // The fixture names zstd; without the key, the default applies.
    let mut config = ConfigFile::load(WORKER_CONFIG);
    assert_eq!(
        config.remove("lake.compression"),
        Some("zstd".into()),
        "the compression key is gone"
    );
    let config_path = dir.path().join("config.toml");
    config.write(&config_path);

    let convert = |setting: Option<&str>| {
        let output = dir
            .path()
            .join(format!("users-{}.parquet", setting.unwrap_or("default")));
        let env: Vec<(&str, &str)> = setting
            .map(|s| ("LAKEWORKER__LAKE__COMPRESSION", s))
            .into_iter()
            .collect();
        let out = lakeworker(
            &[
                "convert",
                "--config",
                config_path.to_str().unwrap(),
                "--dataset",
                "users",
                "examples/users/signups-2024-05.csv",
                output.to_str().unwrap(),
            ],
            &env,
        );
        assert!(out.status.success(), "{setting:?}: {}", text(&out.stderr));
        let codecs = codecs(&output);
        assert!(!codecs.is_empty());
        codecs
    };

    let zstd = convert(None);
    assert!(
        zstd.iter().all(|c| matches!(c, Compression::ZSTD(_))),
        "default: {zstd:?}"
    );
    let snappy = convert(Some("snappy"));
    assert!(
        snappy.iter().all(|c| *c == Compression::SNAPPY),
        "snappy: {snappy:?}"
    );
    let none = convert(Some("none"));
    assert!(
        none.iter().all(|c| *c == Compression::UNCOMPRESSED),
        "none: {none:?}"
    );
}
