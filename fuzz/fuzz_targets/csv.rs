//! The CSV converter on arbitrary bytes (the first byte picks the CSV options).
#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::check(lakeworker::domain::dataset::FileFormat::Csv, data);
});
