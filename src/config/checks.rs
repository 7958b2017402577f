//! Checks shared by several sections: a word from a list of choices, http(s) URLs, S3
//! bucket names, identifiers, DynamoDB table names, and counts of at least 1.

use std::num::NonZeroUsize;

use super::Problems;

/// Maps a word to one of its allowed values, or records which words are allowed.
pub(super) fn choice<T: Copy>(
    p: &mut Problems,
    path: impl Into<String>,
    word: &str,
    choices: &[(&str, T)],
) -> Option<T> {
    if let Some((_, value)) = choices.iter().find(|(name, _)| *name == word) {
        return Some(*value);
    }
    let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
    p.add(
        path,
        format!("{word:?} is not one of: {}", names.join(", ")),
    );
    None
}

pub(super) fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    matches!(rest, Some(host) if !host.is_empty() && !host.starts_with('/'))
}

/// S3 bucket naming rules (the common subset): 3-63 of a-z 0-9 . -, starting and ending
/// with a letter or digit.
pub(super) fn check_bucket(p: &mut Problems, path: &str, name: &str) {
    let chars_ok = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ends_ok = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    p.check(
        (3..=63).contains(&name.len()) && chars_ok && ends_ok,
        path,
        format!("{name:?} is not a valid S3 bucket name (3-63 of a-z 0-9 . -)"),
    );
}

pub(super) fn is_identifier(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

pub(super) fn is_table_name(name: &str) -> bool {
    (3..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A count known to be at least 1 once its problems are checked (0 was reported).
pub(super) fn nonzero(n: u32) -> NonZeroUsize {
    NonZeroUsize::new(n as usize).unwrap_or(NonZeroUsize::MIN)
}
