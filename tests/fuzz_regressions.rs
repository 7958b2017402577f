//! Inputs that once crashed a fuzz target (tests/fixtures/fuzz/{target}/), replayed with the
//! target's own checks so they stay fixed.

#[path = "../fuzz/fuzz_targets/common.rs"]
mod common;

use std::path::PathBuf;

use lakeworker::domain::dataset::FileFormat;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .map(|p| (p.clone(), std::fs::read(p).expect("read fixture")))
        .collect()
}

#[test]
fn csv_crashes_stay_fixed() {
    let found = inputs("csv");
    assert!(!found.is_empty(), "the csv target's crash inputs are kept");
    for (path, data) in found {
        eprintln!("replaying {}", path.display());
        common::check(FileFormat::Csv, &data);
    }
}

#[test]
fn jsonl_and_envelope_inputs_stay_fixed() {
    for (_, data) in inputs("jsonl") {
        common::check(FileFormat::Jsonl, &data);
    }
    for (_, data) in inputs("envelope") {
        if let Ok(body) = std::str::from_utf8(&data) {
            let _ = lakeworker::domain::envelope::parse(body);
        }
    }
}
