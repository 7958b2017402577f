//! CSV rows on `csv_core`: RFC 4180 quoting (or the dataset's delimiter, quote, escape and
//! comment), a header row or configured names, and bounded memory per row. A record longer
//! than `max_row_bytes` is read to its end without keeping it and reported as a bad row;
//! the raw bytes of every record are kept (up to the limit) for the quarantine.

use std::io::BufRead;

use csv_core::{ReadRecordResult, Reader, ReaderBuilder};

use super::input::read_error;
use super::{ConvertError, RowCheck, RowSource};
use crate::datasets::{Dataset, ExtraColumns, Header};
use crate::schema::RawCell;

/// Fields at first; grown as needed up to the dataset's limits.
const START_FIELDS: usize = 64;
const START_BYTES: usize = 4096;

/// CSV records, their cells found by the header's column names.
pub(super) struct CsvRows<R: BufRead> {
    input: R,
    core: Reader,
    max_row_bytes: usize,
    max_columns: usize,
    comment: Option<u8>,
    /// Field bytes of the current record and their end offsets.
    fields: Vec<u8>,
    used: usize,
    ends: Vec<usize>,
    nends: usize,
    /// The record as it appeared in the input (up to `max_row_bytes`).
    raw: Vec<u8>,
    too_long: bool,
    too_many_fields: bool,
    /// Lines and bytes consumed so far, and where the current record starts.
    lines_read: u64,
    bytes_read: u64,
    line: u64,
    byte: u64,
    /// Dataset column index → field index.
    map: Vec<Option<usize>>,
    /// Undeclared fields kept in `_extra`: (field index, header name).
    extra: Vec<(usize, String)>,
    width: usize,
}

impl<R: BufRead> CsvRows<R> {
    pub(super) fn new(mut input: R, dataset: &Dataset) -> Result<Self, ConvertError> {
        let options = &dataset.csv;
        let policy = &dataset.policy;
        let mut builder = ReaderBuilder::new();
        builder
            .delimiter(options.delimiter)
            .quoting(options.quote.is_some())
            .quote(options.quote.unwrap_or(b'"'))
            .escape(options.escape)
            .double_quote(options.escape.is_none())
            .comment(options.comment);
        let (mut lines_read, mut bytes_read) = (0, 0);
        let mut skipped = Vec::new();
        for _ in 0..options.skip_rows {
            skipped.clear();
            let n = read_line_capped(&mut input, &mut skipped, policy.max_row_bytes)
                .map_err(read_error)?;
            if n == 0 {
                break;
            }
            lines_read += 1;
            bytes_read += n as u64;
        }
        let mut rows = CsvRows {
            input,
            core: builder.build(),
            max_row_bytes: policy.max_row_bytes,
            max_columns: policy.max_columns,
            comment: options.comment,
            fields: vec![0; START_BYTES.min(policy.max_row_bytes)],
            used: 0,
            ends: vec![0; START_FIELDS],
            nends: 0,
            raw: Vec::new(),
            too_long: false,
            too_many_fields: false,
            lines_read,
            bytes_read,
            line: lines_read,
            byte: bytes_read,
            map: vec![None; dataset.columns.len()],
            extra: Vec::new(),
            width: 0,
        };
        let names: Vec<String> = match &options.header {
            Header::Names(names) => names.clone(),
            Header::FirstRow => {
                if !rows.read_record()? {
                    return Ok(rows); // an empty file needs no header
                }
                rows.header_names()?
            }
        };
        rows.map_header(&names, dataset)?;
        Ok(rows)
    }

    /// The current record as header names.
    fn header_names(&self) -> Result<Vec<String>, ConvertError> {
        let line = self.line;
        if self.too_long {
            return Err(ConvertError::Malformed(format!(
                "line {line}: the header is longer than max_row_bytes ({})",
                self.max_row_bytes
            )));
        }
        if self.too_many_fields {
            return Err(ConvertError::Malformed(format!(
                "line {line}: the header has more than max_columns ({}) columns",
                self.max_columns
            )));
        }
        (0..self.nends)
            .map(|i| match self.field_text(i) {
                Some(name) => Ok(name.trim().to_owned()),
                None => Err(ConvertError::Malformed(format!(
                    "line {line}: the header is not UTF-8 (column {})",
                    i + 1
                ))),
            })
            .collect()
    }

    fn map_header(&mut self, names: &[String], dataset: &Dataset) -> Result<(), ConvertError> {
        let line = self.line.max(1);
        let mut unknown = Vec::new();
        for (field, name) in names.iter().enumerate() {
            match dataset.column_index(name) {
                Some(index) if self.map[index].is_some() => {
                    return Err(ConvertError::Malformed(format!(
                        "line {line}: the header names column {name:?} twice"
                    )));
                }
                Some(index) => self.map[index] = Some(field),
                None => unknown.push((field, name.clone())),
            }
        }
        let missing: Vec<&str> = dataset
            .columns
            .iter()
            .zip(&self.map)
            .filter(|(c, f)| c.required && f.is_none())
            .map(|(c, _)| c.name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(ConvertError::Malformed(format!(
                "line {line}: the header lacks required column(s) {}; found {}",
                missing.join(", "),
                names.join(",")
            )));
        }
        match dataset.policy.extra_columns {
            ExtraColumns::Reject if !unknown.is_empty() => {
                let names: Vec<&str> = unknown.iter().map(|(_, n)| n.as_str()).collect();
                return Err(ConvertError::Malformed(format!(
                    "line {line}: the header has columns the dataset does not declare: {} (extra_columns = \"reject\")",
                    names.join(", ")
                )));
            }
            ExtraColumns::Keep => self.extra = unknown,
            _ => {}
        }
        self.width = names.len();
        Ok(())
    }

    /// The byte range of field `i` in `fields`.
    fn bounds(&self, i: usize) -> std::ops::Range<usize> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        start..self.ends[i]
    }

    /// Field `i` as text, or `None` if its bytes are not UTF-8.
    fn field_text(&self, i: usize) -> Option<&str> {
        std::str::from_utf8(&self.fields[self.bounds(i)]).ok()
    }

    /// Field `i` of a row that passed the UTF-8 check.
    fn field(&self, i: usize) -> &str {
        self.field_text(i).unwrap_or_default()
    }

    /// Reads the next record into `fields`/`ends`/`raw`; false at the end of the input.
    fn read_record(&mut self) -> Result<bool, ConvertError> {
        self.used = 0;
        self.nends = 0;
        self.raw.clear();
        self.too_long = false;
        self.too_many_fields = false;
        let (start_lines, start_bytes) = (self.lines_read, self.bytes_read);
        let mut scratch_bytes = [0u8; 4096];
        let mut scratch_ends = [0usize; 64];
        loop {
            let input = self.input.fill_buf().map_err(read_error)?;
            let output: &mut [u8] = if self.too_long {
                &mut scratch_bytes
            } else {
                &mut self.fields[self.used..]
            };
            let ends: &mut [usize] = if self.too_many_fields || self.too_long {
                &mut scratch_ends
            } else {
                &mut self.ends[self.nends..]
            };
            let (result, nin, nout, nend) = self.core.read_record(input, output, ends);
            let consumed = &input[..nin];
            let room = self.max_row_bytes.saturating_sub(self.raw.len());
            self.raw.extend_from_slice(&consumed[..nin.min(room)]);
            self.lines_read += memchr::memchr_iter(b'\n', consumed).count() as u64;
            self.bytes_read += nin as u64;
            self.input.consume(nin);
            if !self.too_long {
                self.used += nout;
                if !self.too_many_fields {
                    self.nends += nend;
                }
            }
            match result {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => {
                    if self.fields.len() >= self.max_row_bytes {
                        self.too_long = true;
                    } else {
                        let grown = (self.fields.len() * 2).min(self.max_row_bytes);
                        self.fields.resize(grown, 0);
                    }
                }
                ReadRecordResult::OutputEndsFull => {
                    if self.ends.len() > self.max_columns {
                        self.too_many_fields = true;
                    } else {
                        let grown = self.ends.len() * 2;
                        self.ends.resize(grown, 0);
                    }
                }
                ReadRecordResult::Record => {
                    self.too_many_fields |= self.nends > self.max_columns;
                    self.too_long |= self.used > self.max_row_bytes;
                    self.locate(start_lines, start_bytes);
                    return Ok(true);
                }
                ReadRecordResult::End => return Ok(false),
            }
        }
    }

    /// Sets `line`/`byte` to where the record's text starts, past the blank and comment
    /// lines the parser skipped before it, and drops those lines from `raw`.
    fn locate(&mut self, start_lines: u64, start_bytes: u64) {
        let mut offset = 0;
        let mut lines = 0;
        while offset < self.raw.len() {
            let rest = &self.raw[offset..];
            let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
            let text = &rest[..end];
            let blank = text.iter().all(|b| *b == b'\n' || *b == b'\r');
            let comment = self.comment.is_some_and(|c| text.first() == Some(&c));
            if !(blank || comment) {
                break;
            }
            offset += end;
            lines += 1;
        }
        self.raw.drain(..offset);
        self.line = start_lines + lines + 1;
        self.byte = start_bytes + offset as u64;
    }
}

/// Reads one line (through `\n`) keeping at most `max` bytes of it; returns the bytes read.
pub(super) fn read_line_capped<R: BufRead>(
    input: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let available = input.fill_buf()?;
        if available.is_empty() {
            return Ok(total);
        }
        let (chunk, done) = match memchr::memchr(b'\n', available) {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let room = max.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let n = chunk.len();
        input.consume(n);
        total += n;
        if done {
            return Ok(total);
        }
    }
}

impl<R: BufRead> RowSource for CsvRows<R> {
    fn next_row(&mut self) -> Result<Option<RowCheck>, ConvertError> {
        if !self.read_record()? {
            return Ok(None);
        }
        if self.too_long {
            return Ok(Some(RowCheck::bad(
                "max_row_bytes",
                format!("the row is longer than {} bytes", self.max_row_bytes),
            )));
        }
        if self.too_many_fields {
            return Ok(Some(RowCheck::bad(
                "fields",
                format!("the row has more than {} fields", self.max_columns),
            )));
        }
        // Each field on its own: two invalid halves can make a valid whole.
        if let Some(field) = (0..self.nends).find(|i| self.field_text(*i).is_none()) {
            return Ok(Some(RowCheck::bad(
                "utf8",
                format!(
                    "field {} is not valid UTF-8 (the row starts at byte {})",
                    field + 1,
                    self.byte
                ),
            )));
        }
        if self.nends != self.width {
            return Ok(Some(RowCheck::bad(
                "fields",
                format!("expected {} fields, found {}", self.width, self.nends),
            )));
        }
        Ok(Some(RowCheck::Ok))
    }

    fn line(&self) -> u64 {
        self.line
    }

    fn byte_offset(&self) -> Option<u64> {
        Some(self.byte)
    }

    fn raw(&self) -> &[u8] {
        &self.raw
    }

    fn cell(&self, column: usize) -> RawCell<'_> {
        match self.map[column] {
            Some(field) if field < self.nends => RawCell::Text(self.field(field)),
            _ => RawCell::Missing,
        }
    }

    fn extra(&self) -> Option<String> {
        if self.extra.is_empty() {
            return None;
        }
        let object: serde_json::Map<String, serde_json::Value> = self
            .extra
            .iter()
            .filter(|(field, _)| *field < self.nends)
            .map(|(field, name)| {
                (
                    name.clone(),
                    serde_json::Value::String(self.field(*field).to_owned()),
                )
            })
            .collect();
        Some(serde_json::Value::Object(object).to_string())
    }
}
