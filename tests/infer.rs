//! `lakeworker infer` on the example files and on real-world files
//! (tests/fixtures/infer/, sources in its README): the printed block passes
//! `check-config`, and converting the sampled file with it gives no bad row.

mod common;

use common::*;

/// Infers a dataset for `file`, writes a config with it alone, checks it and converts
/// the file with it; returns the printed block.
fn infer_then_convert(file: &str, format: &str, name: &str, extra: &[&str]) -> String {
    let path = root().join(file);
    let mut args = vec!["infer", "--format", format, "--name", name];
    args.extend_from_slice(extra);
    let source = path.to_str().unwrap();
    args.push(source);
    let out = lakeworker(&args, &[]);
    let block = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let mut base = ConfigFile::load(WORKER_CONFIG);
    base.remove("datasets");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, format!("{}\n{block}", base.to_toml())).unwrap();
    let config = config.to_str().unwrap();
    let check = lakeworker(&["check-config", "--config", config], &[]);
    assert!(
        check.status.success(),
        "{file}: the inferred block fails check-config:\n{}\n{block}",
        String::from_utf8_lossy(&check.stderr)
    );
    let output = dir.path().join("out.parquet");
    let converted = lakeworker(
        &[
            "convert",
            "--config",
            config,
            "--dataset",
            name,
            source,
            output.to_str().unwrap(),
        ],
        &[],
    );
    let said = String::from_utf8_lossy(&converted.stdout).to_string();
    assert!(
        converted.status.success(),
        "{file}: {}\n{block}",
        String::from_utf8_lossy(&converted.stderr)
    );
    assert!(!said.contains("bad rows"), "{file}: {said}\n{block}");
    block
}

/// The `type` (and `format`) the block gives `column`.
fn typed(block: &str, column: &str) -> String {
    let start = block
        .find(&format!("name = \"{column}\"\n"))
        .unwrap_or_else(|| panic!("no column {column} in\n{block}"));
    let rest = &block[start..];
    let end = rest[1..]
        .find("[[datasets.columns]]")
        .map_or(rest.len(), |i| i + 1);
    rest[..end]
        .lines()
        .filter(|l| l.starts_with("type") || l.starts_with("format") || l.starts_with("required"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn the_examples_infer_to_blocks_that_convert_them_cleanly() {
    let users = infer_then_convert(
        "examples/users/signups-2024-05.csv",
        "csv",
        "users",
        &["--match", "users/**"],
    );
    assert!(users.contains("match = \"users/**\""), "{users}");
    assert_eq!(typed(&users, "age"), "type = \"int\"");
    assert_eq!(
        typed(&users, "signup_date"),
        "type = \"date\" format = \"%Y/%m/%d\" required = true"
    );
    assert_eq!(typed(&users, "newsletter"), "type = \"bool\"");
    // A column whose name suggests personal data shows no example.
    assert!(!users.contains("ada@example.com"), "{users}");
    let events = infer_then_convert("examples/events/2024/clicks.jsonl", "jsonl", "events", &[]);
    assert_eq!(typed(&events, "at"), "type = \"timestamp\" required = true");
    assert_eq!(typed(&events, "amount"), "type = \"float\"");
    let first = events.find("name = \"event_id\"").unwrap();
    assert!(
        first < events.find("name = \"at\"").unwrap(),
        "file order: {events}"
    );
    let orders = infer_then_convert("examples/orders/orders-2024-05.csv", "csv", "orders", &[]);
    assert_eq!(typed(&orders, "paid"), "type = \"bool\" required = true");
    assert_eq!(
        typed(&orders, "ordered_at"),
        "type = \"timestamp\" required = true"
    );
}

#[test]
fn real_world_files_infer_to_blocks_that_convert_them_cleanly() {
    let weather = infer_then_convert(
        "tests/fixtures/infer/seattle-weather.csv",
        "csv",
        "seattle",
        &[],
    );
    assert_eq!(
        typed(&weather, "date"),
        "type = \"date\" format = \"%Y/%m/%d\" required = true"
    );
    assert_eq!(
        typed(&weather, "precipitation"),
        "type = \"float\" required = true"
    );
    assert_eq!(
        typed(&weather, "weather"),
        "type = \"string\" required = true"
    );
    let stocks = infer_then_convert("tests/fixtures/infer/stocks.csv", "csv", "stocks", &[]);
    // `Jan 1 2000` is no form it knows: kept as text rather than guessed.
    assert_eq!(typed(&stocks, "date"), "type = \"string\" required = true");
    let airports = infer_then_convert("tests/fixtures/infer/airports.csv", "csv", "airports", &[]);
    assert_eq!(
        typed(&airports, "iata"),
        "type = \"string\" required = true"
    );
    assert_eq!(
        typed(&airports, "latitude"),
        "type = \"float\" required = true"
    );
    let cars = infer_then_convert("tests/fixtures/infer/cars.jsonl", "jsonl", "cars", &[]);
    assert_eq!(typed(&cars, "Miles_per_Gallon"), "type = \"float\"");
    assert_eq!(typed(&cars, "Year"), "type = \"date\" required = true");
    assert!(cars.contains("rename = \"miles_per_gallon\""), "{cars}");
}

#[test]
fn null_spellings_seen_become_the_datasets_nulls() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("scores.csv");
    std::fs::write(
        &csv,
        "id,score,when\na,1.5,2024-01-01\nb,NA,-\nc,,2024-01-03\n",
    )
    .unwrap();
    let rel = csv.to_str().unwrap();
    let block = infer_then_convert(rel, "csv", "scores", &[]);
    assert!(block.contains("nulls = [\"\", \"-\", \"NA\"]"), "{block}");
    assert_eq!(typed(&block, "score"), "type = \"float\"");
    assert_eq!(typed(&block, "when"), "type = \"date\"");
}

#[test]
fn a_sample_is_bounded_and_compressed_input_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("weather.csv.gz");
    let text = std::fs::read(root().join("tests/fixtures/infer/seattle-weather.csv")).unwrap();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut encoder, &text).unwrap();
    std::fs::write(&gz, encoder.finish().unwrap()).unwrap();
    let out = lakeworker(
        &[
            "infer",
            "--format",
            "csv",
            "--rows",
            "100",
            gz.to_str().unwrap(),
        ],
        &[],
    );
    let block = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(block.contains("100 rows"), "{block}");
    assert!(block.contains("(a sample: the source goes on)"), "{block}");
    assert!(block.contains("name = \"weather\""), "{block}");
    let bad = lakeworker(&["infer", "--format", "xml", gz.to_str().unwrap()], &[]);
    assert_eq!(bad.status.code(), Some(2));
    let s3 = lakeworker(&["infer", "--format", "csv", "s3://bucket/key.csv"], &[]);
    assert_eq!(s3.status.code(), Some(2), "an s3:// source needs --config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_source_is_read_with_the_configs_aws_settings() {
    let env = TestEnv::builder("infer").start().await;
    env.put("drops/signups.csv", &example("users/signups-2024-05.csv"))
        .await;
    let source = format!("s3://{}/drops/signups.csv", env.landing);
    let out = env.cli(&[
        "infer",
        "--config",
        env.config_str(),
        "--format",
        "csv",
        &source,
    ]);
    let block = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(block.contains("name = \"signups\""), "{block}");
    assert_eq!(typed(&block, "age"), "type = \"int\"");
    let missing = env.cli(&[
        "infer",
        "--config",
        env.config_str(),
        "--format",
        "csv",
        &format!("s3://{}/nothing.csv", env.landing),
    ]);
    assert_eq!(missing.status.code(), Some(1));
}
