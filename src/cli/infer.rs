//! `lakeworker infer`: samples a local file or an `s3://` object (plain, gzip or zstd)
//! and prints a `[[datasets]]` block for it ([`crate::infer`]).

use std::io::Read;
use std::process::ExitCode;

use super::EXIT_CONFIG;
use crate::config::Settings;
use crate::infer::{self, Limits};
use crate::ports::ObjectStore;

/// What `infer` was asked.
pub struct Request {
    pub format: String,
    pub name: Option<String>,
    pub pattern: Option<String>,
    pub limits: Limits,
    pub source: String,
}

pub async fn command(settings: Option<&Settings>, request: Request) -> anyhow::Result<ExitCode> {
    if request.format != "csv" && request.format != "jsonl" {
        eprintln!("--format must be csv or jsonl, not {:?}", request.format);
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    let file_name = request
        .source
        .rsplit('/')
        .next()
        .unwrap_or(&request.source)
        .to_owned();
    let reader: Box<dyn Read + Send> = match request.source.strip_prefix("s3://") {
        Some(rest) => {
            let Some(settings) = settings else {
                eprintln!(
                    "an s3:// source needs --config (its [aws] section says how to reach S3)"
                );
                return Ok(ExitCode::from(EXIT_CONFIG));
            };
            let Some((bucket, key)) = rest.split_once('/') else {
                eprintln!("{:?} is not an s3://bucket/key URI", request.source);
                return Ok(ExitCode::from(EXIT_CONFIG));
            };
            let clients = crate::aws::Clients::connect(&settings.aws).await;
            let store = crate::aws::s3::S3Store::new(clients.s3);
            let object = crate::domain::envelope::ObjectRef {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                ..Default::default()
            };
            store.open(&object).await?.reader
        }
        None => match std::fs::File::open(&request.source) {
            Ok(file) => Box::new(file),
            Err(e) => {
                eprintln!("{}: {e}", request.source);
                return Ok(ExitCode::FAILURE);
            }
        },
    };
    let name = request
        .name
        .clone()
        .unwrap_or_else(|| default_name(&file_name));
    let pattern = request
        .pattern
        .clone()
        .unwrap_or_else(|| format!("{name}/**"));
    let format = request.format.clone();
    let limits = request.limits;
    let source = request.source.clone();
    let sampled = tokio::task::spawn_blocking(move || {
        let (input, _) = crate::convert::input::open(reader, &file_name, Default::default())
            .map_err(|e| e.to_string())?;
        match format.as_str() {
            "csv" => infer::sample_csv(input, limits),
            _ => infer::sample_jsonl(input, limits),
        }
    })
    .await?;
    match sampled {
        Ok(sample) if sample.columns.is_empty() => {
            eprintln!("{source}: no columns found (an empty file?)");
            Ok(ExitCode::FAILURE)
        }
        Ok(sample) => {
            print!(
                "{}",
                infer::render(&sample, &name, &request.format, &pattern, &source)
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{source}: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// A dataset name from a file name: `Seattle Weather-2024.csv.gz` → `seattle_weather_2024`.
fn default_name(file: &str) -> String {
    let stem = file.split('.').next().unwrap_or(file);
    let mut name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    while name.contains("__") {
        name = name.replace("__", "_");
    }
    let name = name.trim_matches('_').to_owned();
    match name.chars().next() {
        Some(c) if c.is_ascii_lowercase() => name,
        _ => format!("d_{name}"),
    }
}
