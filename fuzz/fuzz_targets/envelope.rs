//! Message parsing on arbitrary text: an envelope or a described error, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(body) = std::str::from_utf8(data) {
        let _ = lakeworker::domain::envelope::parse(body);
    }
});
