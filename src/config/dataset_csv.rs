//! `[datasets.csv]` as written, and its validation into [`CsvOptions`]: delimiter, quote,
//! escape and comment characters, rows to skip, and the header, whose names must fit the
//! dataset's columns. Every problem is recorded with its key path.

use std::collections::HashSet;

use serde::Deserialize;

use super::Problems;
use crate::domain::dataset::{CsvOptions, Header, NewColumns};
use crate::domain::schema::Column;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCsv {
    delimiter: Option<String>,
    quote: Option<String>,
    escape: Option<String>,
    header: Option<RawHeader>,
    skip_rows: Option<u64>,
    comment: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawHeader {
    Present(bool),
    Names(Vec<String>),
}

impl RawCsv {
    pub(super) fn validate(self, path: &str, p: &mut Problems) -> CsvOptions {
        let mut options = CsvOptions::default();
        let mut byte =
            |text: Option<String>, key: &str, empty_means_none: bool| -> Option<Option<u8>> {
                let text = text?;
                let text = if text == "\\t" { "\t".to_owned() } else { text };
                match text.as_bytes() {
                    [] if empty_means_none => Some(None),
                    [b] if b.is_ascii() && *b != b'\n' && *b != b'\r' => Some(Some(*b)),
                    _ => {
                        p.add(
                            format!("{path}.{key}"),
                            format!("{text:?} must be one ASCII character (not a line break)"),
                        );
                        None
                    }
                }
            };
        if let Some(Some(delimiter)) = byte(self.delimiter, "delimiter", false) {
            options.delimiter = delimiter;
        }
        if let Some(quote) = byte(self.quote, "quote", true) {
            options.quote = quote;
        }
        if let Some(escape) = byte(self.escape, "escape", true) {
            options.escape = escape;
        }
        if let Some(comment) = byte(self.comment, "comment", true) {
            options.comment = comment;
        }
        options.skip_rows = self.skip_rows.unwrap_or(0);
        match self.header {
            None | Some(RawHeader::Present(true)) => {}
            Some(RawHeader::Present(false)) => p.add(
                format!("{path}.header"),
                "a file without a header row needs its column names: header = [\"a\", \"b\", …]",
            ),
            Some(RawHeader::Names(names)) => {
                p.check(
                    !names.is_empty(),
                    format!("{path}.header"),
                    "must name at least one column",
                );
                options.header = Header::Names(names);
            }
        }
        let specials = [
            Some(options.delimiter),
            options.quote,
            options.escape,
            options.comment,
        ];
        let distinct: HashSet<u8> = specials.iter().flatten().copied().collect();
        p.check(
            distinct.len() == specials.iter().flatten().count(),
            path.to_owned(),
            "delimiter, quote, escape and comment must be different characters",
        );
        options
    }
}

/// The column names of a header-less CSV file must be able to make a good header: each
/// name once, every required column present (and, with `on_new_columns = "reject"`, no
/// undeclared name), or every file of the dataset would be rejected.
pub(super) fn validate_header_names(
    names: &[String],
    columns: &[Column],
    untyped: &[String],
    on_new_columns: NewColumns,
    path: &str,
    p: &mut Problems,
) {
    let key = format!("{path}.csv.header");
    let mut seen = HashSet::new();
    for name in names {
        if !seen.insert(name.as_str()) {
            p.add(&key, format!("names column {name:?} twice"));
        }
    }
    let missing: Vec<&str> = columns
        .iter()
        .filter(|c| c.required && !seen.contains(c.name.as_str()))
        .map(|c| c.name.as_str())
        .collect();
    if !missing.is_empty() {
        p.add(
            &key,
            format!("lacks required column(s) {}", missing.join(", ")),
        );
    }
    if on_new_columns == NewColumns::Reject {
        let undeclared: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|name| {
                !columns.iter().any(|c| c.name == *name) && !untyped.iter().any(|u| u == name)
            })
            .collect();
        if !undeclared.is_empty() {
            p.add(
                &key,
                format!(
                    "names columns the dataset does not declare, which on_new_columns = \"reject\" refuses: {}",
                    undeclared.join(", ")
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{load, problems, with};
    use crate::domain::dataset::Header;

    #[test]
    fn csv_header_names_must_fit_the_columns() {
        let header = |list: &str| format!("[datasets.csv]\nheader = [{list}]");
        let cases = [
            (
                header("\"signup_date\", \"note\""),
                "datasets[0].csv.header: lacks required column(s) user_id",
            ),
            (
                header("\"user_id\", \"signup_date\", \"user_id\""),
                "datasets[0].csv.header: names column \"user_id\" twice",
            ),
            (
                header("\"user_id\", \"note\", \"note\""),
                "datasets[0].csv.header: names column \"note\" twice",
            ),
            (
                format!(
                    "on_new_columns = \"reject\"\n{}",
                    header("\"user_id\", \"signup_date\", \"note\"")
                ),
                "datasets[0].csv.header: names columns the dataset does not declare, which on_new_columns = \"reject\" refuses: note",
            ),
        ];
        for (extra, expected) in cases {
            let found = problems(&with(&extra, ""));
            assert_eq!(found, [expected], "{extra}");
        }
        // Any order, optional columns left out and undeclared names kept by default.
        let s = load(
            &with(&header("\"note\", \"signup_date\", \"user_id\""), ""),
            &[],
        )
        .unwrap();
        let d = s.datasets.by_name("users").unwrap();
        assert!(matches!(&d.csv.header, Header::Names(names) if names.len() == 3));
    }
}
