//! JSON lines, in two parts: [`LineSplitter`] reads lines in file order (blank lines
//! skipped, at most `max_row_bytes` of a line kept) into [`LineChunk`]s, and
//! [`JsonChunkRows`] parses one chunk's lines as rows, on any thread.

use std::collections::HashSet;
use std::io::BufRead;
use std::ops::Range;

use serde_json::Value;

use super::csv::read_line_capped;
use super::input::read_error;
use super::{ConvertError, RowCheck, RowSource};
use crate::datasets::{Dataset, ExtraColumns};
use crate::schema::RawCell;

#[derive(Debug)]
struct Line {
    number: u64,
    byte: u64,
    /// Range in `LineChunk::bytes` (without the line break).
    text: Range<usize>,
    too_long: bool,
}

/// Whole lines, in file order.
#[derive(Debug, Default)]
pub(super) struct LineChunk {
    lines: Vec<Line>,
    bytes: Vec<u8>,
}

impl LineChunk {
    pub(super) fn len(&self) -> usize {
        self.lines.len()
    }
}

/// Reads lines in order and hands them out in chunks.
pub(super) struct LineSplitter<R: BufRead> {
    input: R,
    max_row_bytes: usize,
    line: u64,
    byte: u64,
    buffer: Vec<u8>,
}

impl<R: BufRead> LineSplitter<R> {
    pub(super) fn new(input: R, dataset: &Dataset) -> Self {
        LineSplitter {
            input,
            max_row_bytes: dataset.policy.max_row_bytes,
            line: 0,
            byte: 0,
            buffer: Vec::new(),
        }
    }

    /// Up to `max_lines` non-blank lines; `None` at the end of the input.
    pub(super) fn next_chunk(
        &mut self,
        max_lines: usize,
    ) -> Result<Option<LineChunk>, ConvertError> {
        let mut chunk = LineChunk::default();
        while chunk.lines.len() < max_lines {
            self.buffer.clear();
            // Two more bytes than the limit tell a long line from one ending in CR LF.
            let read = read_line_capped(&mut self.input, &mut self.buffer, self.max_row_bytes + 2)
                .map_err(read_error)?;
            if read == 0 {
                break;
            }
            self.line += 1;
            let byte = self.byte;
            self.byte += read as u64;
            while matches!(self.buffer.last(), Some(b'\n' | b'\r')) {
                self.buffer.pop();
            }
            let too_long = self.buffer.len() > self.max_row_bytes;
            self.buffer.truncate(self.max_row_bytes);
            if !too_long && self.buffer.trim_ascii().is_empty() {
                continue;
            }
            let start = chunk.bytes.len();
            chunk.bytes.extend_from_slice(&self.buffer);
            chunk.lines.push(Line {
                number: self.line,
                byte,
                text: start..chunk.bytes.len(),
                too_long,
            });
        }
        Ok((!chunk.lines.is_empty()).then_some(chunk))
    }
}

/// One chunk's lines parsed as rows.
pub(super) struct JsonChunkRows<'c, 'd> {
    chunk: &'c LineChunk,
    names: Vec<&'d str>,
    declared: HashSet<&'d str>,
    extra_columns: ExtraColumns,
    max_row_bytes: usize,
    at: Option<usize>,
    current: serde_json::Map<String, Value>,
}

impl<'c, 'd> JsonChunkRows<'c, 'd> {
    pub(super) fn new(chunk: &'c LineChunk, dataset: &'d Dataset) -> Self {
        let names: Vec<&str> = dataset.columns.iter().map(|c| c.name.as_str()).collect();
        JsonChunkRows {
            chunk,
            declared: names.iter().copied().collect(),
            names,
            extra_columns: dataset.policy.extra_columns,
            max_row_bytes: dataset.policy.max_row_bytes,
            at: None,
            current: serde_json::Map::new(),
        }
    }

    fn line_info(&self) -> &'c Line {
        &self.chunk.lines[self.at.unwrap_or_default()]
    }

    fn undeclared(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.current
            .iter()
            .filter(|(key, _)| !self.declared.contains(key.as_str()))
    }
}

impl RowSource for JsonChunkRows<'_, '_> {
    fn next_row(&mut self) -> Result<Option<RowCheck>, ConvertError> {
        let next = self.at.map_or(0, |i| i + 1);
        self.current.clear();
        if next >= self.chunk.lines.len() {
            return Ok(None);
        }
        self.at = Some(next);
        let line = self.line_info();
        if line.too_long {
            return Ok(Some(RowCheck::bad(
                "max_row_bytes",
                format!("the line is longer than {} bytes", self.max_row_bytes),
            )));
        }
        let check = match serde_json::from_slice::<Value>(&self.chunk.bytes[line.text.clone()]) {
            Ok(Value::Object(map)) => {
                self.current = map;
                let unknown: Vec<&str> = self
                    .undeclared()
                    .map(|(k, _)| k.as_str())
                    .take(10)
                    .collect();
                if self.extra_columns == ExtraColumns::Reject && !unknown.is_empty() {
                    RowCheck::bad(
                        "extra_columns",
                        format!("keys the dataset does not declare: {}", unknown.join(", ")),
                    )
                } else {
                    RowCheck::Ok
                }
            }
            Ok(_) => RowCheck::bad("json", "the line is not a JSON object".into()),
            Err(e) => RowCheck::bad("json", format!("the line is not valid JSON: {e}")),
        };
        Ok(Some(check))
    }

    fn line(&self) -> u64 {
        self.line_info().number
    }

    fn byte_offset(&self) -> Option<u64> {
        Some(self.line_info().byte)
    }

    fn raw(&self) -> &[u8] {
        &self.chunk.bytes[self.line_info().text.clone()]
    }

    fn cell(&self, column: usize) -> RawCell<'_> {
        match self.current.get(self.names[column]) {
            Some(value) => RawCell::Json(value),
            None => RawCell::Missing,
        }
    }

    fn extra(&self) -> Option<String> {
        let extra: serde_json::Map<String, Value> = self
            .undeclared()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        (!extra.is_empty()).then(|| Value::Object(extra).to_string())
    }
}
