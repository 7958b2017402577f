//! `lakeworker infer` ([`crate::cli::infer`]): a bounded sample of a CSV or JSON-lines
//! source, the evidence it gives about each column, the narrowest type that fits every
//! sampled value, and the `[[datasets]]` block that says so ([`render`]).
//!
//! Every candidate type is checked with the converter's own cell parser
//! ([`Column::parse`]), so a column typed from a sample converts that sample without a
//! bad row by construction. Candidates, narrowest first: bool, int, float, date (ISO,
//! then common strftime forms), timestamp (RFC 3339, common forms, epoch seconds and
//! millis, for integer columns whose name says time and whose values fall in 2000-2100),
//! string.

use std::collections::BTreeSet;

use crate::domain::schema::{Column, ColumnType, RawCell, ValueFormat};

/// Text read as null when a sample holds it, besides the empty string.
pub const NULL_SPELLINGS: &[&str] = &["", "NA", "N/A", "n/a", "null", "NULL", "None", "-"];

/// One type (and format) a column may have, with its TOML spelling.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub kind: ColumnType,
    /// The `format` key's value, if the type needs one.
    pub format: Option<&'static str>,
}

/// The candidates, narrowest first.
pub fn candidates() -> Vec<Candidate> {
    let c = |kind, format| Candidate { kind, format };
    vec![
        c(ColumnType::Bool, None),
        c(ColumnType::Int, None),
        c(ColumnType::Float, None),
        c(ColumnType::Date, None),
        c(ColumnType::Date, Some("%m/%d/%Y")),
        c(ColumnType::Date, Some("%d/%m/%Y")),
        c(ColumnType::Date, Some("%Y/%m/%d")),
        c(ColumnType::Date, Some("%d.%m.%Y")),
        c(ColumnType::Timestamp, None),
        c(ColumnType::Timestamp, Some("%Y-%m-%d %H:%M:%S")),
        c(ColumnType::Timestamp, Some("%Y-%m-%dT%H:%M:%S")),
        c(ColumnType::Timestamp, Some("%m/%d/%Y %H:%M:%S")),
        c(ColumnType::Timestamp, Some("epoch_millis")),
        c(ColumnType::Timestamp, Some("epoch_seconds")),
        c(ColumnType::String, None),
    ]
}

/// The parser a candidate stands for: the converter's column with that type and format
/// and every null spelling.
fn column(candidate: &Candidate) -> Column {
    let mut column = Column::new("sample", candidate.kind, false);
    column.nulls = NULL_SPELLINGS.iter().map(|s| s.to_string()).collect();
    // A column of 0s and 1s is a number, not a flag, unless the file says true or false.
    column.true_values.retain(|v| v != "1");
    column.false_values.retain(|v| v != "0");
    column.format = candidate.format.map(|f| match f {
        "epoch_millis" => ValueFormat::EpochMillis,
        "epoch_seconds" => ValueFormat::EpochSeconds,
        pattern => ValueFormat::Strftime(pattern.to_owned()),
    });
    column
}

/// What a sample says of one column.
#[derive(Debug, Clone)]
pub struct Evidence {
    pub name: String,
    /// Cells seen, nulls included.
    pub values: u64,
    pub nulls: u64,
    /// The null spellings the sample used.
    pub null_spellings: BTreeSet<String>,
    /// The first non-null value (for the comment; not printed for pii columns).
    pub example: Option<String>,
    candidates: Vec<(Candidate, Column, bool)>,
    /// The smallest and largest integer seen, for epoch detection.
    integers: Option<(i64, i64)>,
}

/// Epoch values between 2000-01-01 and 2100-01-01, in seconds and in milliseconds.
const EPOCH_SECONDS: std::ops::RangeInclusive<i64> = 946_684_800..=4_102_444_800;
const EPOCH_MILLIS: std::ops::RangeInclusive<i64> = 946_684_800_000..=4_102_444_800_000;

/// Whether a column's name says it holds times (`created_at`, `ts`, `event_time`, …).
fn names_a_time(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.ends_with("_at")
        || name == "ts"
        || name.ends_with("_ts")
        || ["time", "epoch", "date", "timestamp"]
            .iter()
            .any(|w| name.contains(w))
}

impl Evidence {
    pub fn new(name: &str) -> Evidence {
        Evidence {
            name: name.to_owned(),
            values: 0,
            nulls: 0,
            null_spellings: BTreeSet::new(),
            example: None,
            candidates: candidates()
                .into_iter()
                .map(|c| {
                    let parser = column(&c);
                    (c, parser, true)
                })
                .collect(),
            integers: None,
        }
    }

    /// One cell of the sample: a CSV field's text, or a JSON value.
    pub fn observe(&mut self, cell: RawCell<'_>) {
        self.values += 1;
        let text = match cell {
            RawCell::Text(text) => Some(text),
            RawCell::Json(serde_json::Value::String(text)) => Some(text.as_str()),
            RawCell::Json(serde_json::Value::Null) | RawCell::Missing => {
                self.nulls += 1;
                return;
            }
            RawCell::Json(_) => None,
        };
        if let Some(text) = text {
            if let Some(spelling) = NULL_SPELLINGS.iter().find(|s| **s == text.trim()) {
                self.nulls += 1;
                self.null_spellings.insert((*spelling).to_owned());
                return;
            }
        }
        if self.example.is_none() {
            self.example = Some(match (text, &cell) {
                (Some(text), _) => text.to_owned(),
                (None, RawCell::Json(value)) => value.to_string(),
                (None, _) => String::new(),
            });
        }
        let integer = match (text, &cell) {
            (Some(text), _) => text.trim().parse::<i64>().ok(),
            (None, RawCell::Json(value)) => value.as_i64(),
            _ => None,
        };
        if let Some(n) = integer {
            let (low, high) = self.integers.get_or_insert((n, n));
            *low = (*low).min(n);
            *high = (*high).max(n);
        }
        for (_, parser, viable) in self.candidates.iter_mut().filter(|(_, _, v)| *v) {
            *viable = parser.parse(cell).is_ok();
        }
    }

    /// The narrowest candidate every sampled value fits (string when none was seen).
    pub fn best(&self) -> Candidate {
        if self.values == self.nulls {
            return Candidate {
                kind: ColumnType::String,
                format: None,
            };
        }
        let best = self
            .candidates
            .iter()
            .find(|(_, _, viable)| *viable)
            .map(|(candidate, _, _)| candidate.clone())
            .unwrap_or(Candidate {
                kind: ColumnType::String,
                format: None,
            });
        // Integers that a time-like name and a plausible range (2000-2100) make epochs.
        if let (ColumnType::Int, Some((low, high))) = (best.kind, self.integers) {
            if names_a_time(&self.name) {
                for (range, format) in [
                    (EPOCH_SECONDS, "epoch_seconds"),
                    (EPOCH_MILLIS, "epoch_millis"),
                ] {
                    let fits = self
                        .candidates
                        .iter()
                        .any(|(c, _, viable)| *viable && c.format == Some(format));
                    if fits && range.contains(&low) && range.contains(&high) {
                        return Candidate {
                            kind: ColumnType::Timestamp,
                            format: Some(format),
                        };
                    }
                }
            }
        }
        best
    }

    /// No sampled value was null.
    pub fn required(&self) -> bool {
        self.values > 0 && self.nulls == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(values: &[&str]) -> Candidate {
        let mut evidence = Evidence::new("c");
        for value in values {
            evidence.observe(RawCell::Text(value));
        }
        evidence.best()
    }

    #[test]
    fn the_narrowest_type_that_fits_every_value() {
        assert_eq!(typed(&["true", "false"]).kind, ColumnType::Bool);
        assert_eq!(typed(&["1", "0"]).kind, ColumnType::Int);
        assert_eq!(typed(&["1", "-20", ""]).kind, ColumnType::Int);
        assert_eq!(typed(&["1", "2.5"]).kind, ColumnType::Float);
        assert_eq!(
            typed(&["2024-01-03", "2024-02-29"]),
            Candidate {
                kind: ColumnType::Date,
                format: None
            }
        );
        assert_eq!(
            typed(&["01/31/2024", "12/01/2024"]).format,
            Some("%m/%d/%Y")
        );
        assert_eq!(
            typed(&["31/01/2024", "01/12/2024"]).format,
            Some("%d/%m/%Y")
        );
        assert_eq!(typed(&["2024-01-03T10:00:00Z"]).kind, ColumnType::Timestamp);
        // The default timestamp parser takes a space for the `T` too.
        assert_eq!(
            typed(&["2024-01-03 10:00:00"]),
            Candidate {
                kind: ColumnType::Timestamp,
                format: None
            }
        );
        assert_eq!(
            typed(&["01/03/2024 10:00:00"]).format,
            Some("%m/%d/%Y %H:%M:%S")
        );
        assert_eq!(typed(&["1704276000000"]).kind, ColumnType::Int);
        assert_eq!(typed(&["u-1", "2"]).kind, ColumnType::String);
        assert_eq!(typed(&["", "NA"]).kind, ColumnType::String);
    }

    #[test]
    fn integers_named_and_ranged_like_times_are_epochs() {
        let epoch = |name: &str, values: &[&str]| {
            let mut evidence = Evidence::new(name);
            for value in values {
                evidence.observe(RawCell::Text(value));
            }
            evidence.best()
        };
        let millis = ["1704276000000", "1704276000123"];
        assert_eq!(epoch("created_at", &millis).format, Some("epoch_millis"));
        assert_eq!(
            epoch("event_time", &["1704276000"]).format,
            Some("epoch_seconds")
        );
        // The same numbers under another name, or out of range, stay numbers.
        assert_eq!(epoch("order_id", &millis).kind, ColumnType::Int);
        assert_eq!(epoch("ts", &["12", "13"]).kind, ColumnType::Int);
    }

    #[test]
    fn nulls_and_their_spellings_are_counted() {
        let mut evidence = Evidence::new("c");
        for value in ["1", "NA", "", "3"] {
            evidence.observe(RawCell::Text(value));
        }
        assert_eq!((evidence.values, evidence.nulls), (4, 2));
        assert!(!evidence.required());
        assert_eq!(
            evidence.null_spellings.iter().cloned().collect::<Vec<_>>(),
            ["", "NA"]
        );
        assert_eq!(evidence.example.as_deref(), Some("1"));
    }

    #[test]
    fn json_values_keep_their_type() {
        let mut evidence = Evidence::new("c");
        for value in [
            serde_json::json!(1),
            serde_json::json!(2),
            serde_json::Value::Null,
        ] {
            evidence.observe(RawCell::Json(&value));
        }
        assert_eq!(evidence.best().kind, ColumnType::Int);
        assert_eq!(evidence.nulls, 1);
    }
}

/// How much of a source [`sample_csv`] and [`sample_jsonl`] read at most.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub rows: u64,
    pub bytes: u64,
}

/// What a sample found: one [`Evidence`] per column in file order.
#[derive(Debug, Clone)]
pub struct Sample {
    pub columns: Vec<Evidence>,
    pub rows: u64,
    pub bytes: u64,
    /// The limits stopped the sample before the end of the source.
    pub truncated: bool,
}

impl Sample {
    /// The index of `name`'s column, added if it is new.
    fn slot(&mut self, name: &str) -> usize {
        match self.columns.iter().position(|c| c.name == name) {
            Some(i) => i,
            None => {
                self.columns.push(Evidence::new(name));
                self.columns.len() - 1
            }
        }
    }

    fn column(&mut self, name: &str) -> &mut Evidence {
        let slot = self.slot(name);
        &mut self.columns[slot]
    }
}

/// Samples a CSV source: the header names the columns, then each record's fields.
pub fn sample_csv(mut input: impl std::io::BufRead, limits: Limits) -> Result<Sample, String> {
    use csv_core::{ReadRecordResult, Reader};
    let mut reader = Reader::new();
    let mut sample = Sample {
        columns: Vec::new(),
        rows: 0,
        bytes: 0,
        truncated: false,
    };
    let mut out = vec![0u8; 64 * 1024];
    let mut ends = vec![0usize; 1024];
    let (mut used, mut fields) = (0usize, 0usize);
    // For each header position, its column in `sample.columns` (a name twice is one
    // column), found once rather than per cell.
    let mut header: Option<Vec<usize>> = None;
    loop {
        let buf = input.fill_buf().map_err(|e| e.to_string())?;
        let (result, read, written, ended) =
            reader.read_record(buf, &mut out[used..], &mut ends[fields..]);
        let at_end = buf.is_empty();
        input.consume(read);
        sample.bytes += read as u64;
        used += written;
        fields += ended;
        match result {
            ReadRecordResult::InputEmpty if !at_end => continue,
            ReadRecordResult::OutputFull => out.resize(out.len() * 2, 0),
            ReadRecordResult::OutputEndsFull => ends.resize(ends.len() * 2, 0),
            ReadRecordResult::Record | ReadRecordResult::InputEmpty => {
                // Bytes that are not UTF-8 are kept (replaced), so such a column types as
                // a string rather than looking null.
                let owned: Vec<String> = (0..fields)
                    .map(|i| {
                        let start = if i == 0 { 0 } else { ends[i - 1] };
                        String::from_utf8_lossy(&out[start..ends[i]]).into_owned()
                    })
                    .collect();
                let record: Vec<&str> = owned.iter().map(String::as_str).collect();
                match &header {
                    None => {
                        header = Some(record.iter().map(|name| sample.slot(name.trim())).collect());
                    }
                    Some(slots) => {
                        sample.rows += 1;
                        for (i, slot) in slots.iter().enumerate() {
                            sample.columns[*slot].observe(match record.get(i) {
                                Some(text) => RawCell::Text(text),
                                None => RawCell::Missing,
                            });
                        }
                    }
                }
                used = 0;
                fields = 0;
                if sample.rows >= limits.rows || sample.bytes >= limits.bytes {
                    sample.truncated = !input.fill_buf().map_err(|e| e.to_string())?.is_empty();
                    return Ok(sample);
                }
                if at_end && result == ReadRecordResult::InputEmpty {
                    return Ok(sample);
                }
            }
            ReadRecordResult::End => return Ok(sample),
        }
    }
}

/// Samples a JSON-lines source: each line an object, columns in the order keys are first
/// seen; a key a line lacks counts as null there.
pub fn sample_jsonl(input: impl std::io::BufRead, limits: Limits) -> Result<Sample, String> {
    let mut sample = Sample {
        columns: Vec::new(),
        rows: 0,
        bytes: 0,
        truncated: false,
    };
    let mut lines = input.lines();
    while let Some(line) = lines.next() {
        let line = line.map_err(|e| e.to_string())?;
        sample.bytes += line.len() as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        let Ordered(object) = serde_json::from_str(&line)
            .map_err(|e| format!("line {}: not a JSON object: {e}", sample.rows + 1))?;
        sample.rows += 1;
        for (key, value) in &object {
            let seen_before = sample.columns.iter().any(|c| &c.name == key);
            let earlier = sample.rows - 1;
            let column = sample.column(key);
            if !seen_before {
                // Absent from every earlier line.
                column.values += earlier;
                column.nulls += earlier;
            }
            column.observe(RawCell::Json(value));
        }
        for column in sample
            .columns
            .iter_mut()
            .filter(|c| !object.iter().any(|(key, _)| key == &c.name))
        {
            column.observe(RawCell::Missing);
        }
        if sample.rows >= limits.rows || sample.bytes >= limits.bytes {
            sample.truncated = lines.next().is_some();
            break;
        }
    }
    Ok(sample)
}

#[cfg(test)]
mod sample_tests {
    use super::*;

    const ALL: Limits = Limits {
        rows: u64::MAX,
        bytes: u64::MAX,
    };

    #[test]
    fn a_csv_sample_types_each_column_in_file_order() {
        let csv = "id,when,n,flag,note\nu-1,2024-01-03,1,true,\"a, b\"\nu-2,2024-01-04,,false,\n";
        let sample = sample_csv(csv.as_bytes(), ALL).unwrap();
        assert_eq!(sample.rows, 2);
        let names: Vec<&str> = sample.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["id", "when", "n", "flag", "note"]);
        let kinds: Vec<ColumnType> = sample.columns.iter().map(|c| c.best().kind).collect();
        assert_eq!(
            kinds,
            [
                ColumnType::String,
                ColumnType::Date,
                ColumnType::Int,
                ColumnType::Bool,
                ColumnType::String
            ]
        );
        assert!(sample.columns[0].required());
        assert!(!sample.columns[2].required());
        assert!(!sample.truncated);
    }

    #[test]
    fn bytes_that_are_not_utf8_make_a_string_not_a_null() {
        let csv = b"n\n1\n\xff\xfe\n";
        let sample = sample_csv(&csv[..], ALL).unwrap();
        assert_eq!(sample.columns[0].nulls, 0);
        assert_eq!(sample.columns[0].best().kind, ColumnType::String);
    }

    #[test]
    fn a_sample_stops_at_its_row_limit_and_says_so() {
        let csv = "a\n1\n2\n3\n";
        let sample = sample_csv(
            csv.as_bytes(),
            Limits {
                rows: 2,
                bytes: u64::MAX,
            },
        )
        .unwrap();
        assert_eq!((sample.rows, sample.truncated), (2, true));
    }

    #[test]
    fn a_jsonl_sample_counts_absent_keys_as_null() {
        let jsonl = "{\"z\": 1}\n{\"z\": 2, \"b\": \"x\"}\n{\"b\": \"y\"}\n";
        let sample = sample_jsonl(jsonl.as_bytes(), ALL).unwrap();
        let a = &sample.columns[0];
        let b = &sample.columns[1];
        // In the order the lines have them, not sorted.
        assert_eq!((a.name.as_str(), b.name.as_str()), ("z", "b"));
        assert_eq!((a.values, a.nulls, a.best().kind), (3, 1, ColumnType::Int));
        assert_eq!(
            (b.values, b.nulls, b.best().kind),
            (3, 1, ColumnType::String)
        );
    }
}

/// A JSON object's members in the order the line has them (`serde_json::Map` sorts).
struct Ordered(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Ordered, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, serde_json::Value>()? {
                    members.push(member);
                }
                Ok(Ordered(members))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

/// A TOML string literal.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// `text` as a lake identifier (a-z, 0-9, _, starting with a letter), for `rename`.
fn identifier(text: &str) -> String {
    let mut out = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let out = out.trim_matches('_').to_owned();
    match out.chars().next() {
        Some(c) if c.is_ascii_lowercase() => out,
        _ => format!("c_{out}"),
    }
}

/// The `[[datasets]]` block for `sample`, ready to paste into a config: the columns in
/// file order with their narrowest types, `required` where no sampled value was null,
/// the null spellings seen, and a comment of evidence per column (no example for a
/// column whose name suggests personal data).
pub fn render(sample: &Sample, name: &str, format: &str, pattern: &str, source: &str) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "# inferred by lakeworker infer from {source}: {} rows, {} bytes sampled{}\n",
        sample.rows,
        sample.bytes,
        if sample.truncated {
            " (a sample: the source goes on)"
        } else {
            " (the whole source)"
        }
    ));
    out.push_str("[[datasets]]\n");
    out.push_str(&format!("name = {}\n", quoted(name)));
    out.push_str(&format!("match = {}\n", quoted(pattern)));
    out.push_str(&format!("format = {}\n", quoted(format)));
    let spellings: BTreeSet<&str> = sample
        .columns
        .iter()
        .flat_map(|c| c.null_spellings.iter().map(String::as_str))
        .collect();
    if spellings.iter().any(|s| !s.is_empty()) {
        let mut list: Vec<String> = spellings.iter().map(|s| quoted(s)).collect();
        if !spellings.contains("") {
            list.insert(0, quoted(""));
        }
        out.push_str(&format!("nulls = [{}]\n", list.join(", ")));
    }
    for column in &sample.columns {
        if column.name.is_empty() || column.name.starts_with('_') {
            out.push_str(&format!(
                "# column {} skipped: a column name may not be empty or start with _ (the file's extra column is ignored)\n",
                quoted(&column.name)
            ));
            continue;
        }
        let best = column.best();
        out.push_str("[[datasets.columns]]\n");
        out.push_str(&format!("name = {}\n", quoted(&column.name)));
        out.push_str(&format!("type = {}\n", quoted(best.kind.name())));
        if let Some(format) = best.format {
            out.push_str(&format!("format = {}\n", quoted(format)));
        }
        if column.required() {
            out.push_str("required = true\n");
        }
        let lake = identifier(&column.name);
        if lake != column.name {
            out.push_str(&format!("rename = {}\n", quoted(&lake)));
        }
        let personal = ["email", "phone", "name", "address", "ssn", "birth"]
            .iter()
            .any(|hint| column.name.to_ascii_lowercase().contains(hint));
        let example = match (&column.example, personal) {
            (Some(_), true) => ", example withheld (the name suggests personal data)".to_owned(),
            (Some(example), false) => {
                let short: String = example.chars().take(40).collect();
                format!(", e.g. {}", quoted(&short))
            }
            (None, _) => String::new(),
        };
        out.push_str(&format!(
            "# {} values, {} null{example}\n",
            column.values, column.nulls
        ));
    }
    out
}
