//! JSON lines rows: one object per line, blank lines skipped, each line read with at most
//! `max_row_bytes` kept in memory.

use std::collections::HashSet;
use std::io::BufRead;

use serde_json::Value;

use super::csv::read_line_capped;
use super::input::read_error;
use super::{ConvertError, RowCheck, RowSource};
use crate::datasets::{Dataset, ExtraColumns};
use crate::schema::RawCell;

pub(super) struct JsonRows<'d, R: BufRead> {
    input: R,
    names: Vec<&'d str>,
    declared: HashSet<&'d str>,
    extra_columns: ExtraColumns,
    max_row_bytes: usize,
    buffer: Vec<u8>,
    current: serde_json::Map<String, Value>,
    line: u64,
    byte: u64,
    next_byte: u64,
}

impl<'d, R: BufRead> JsonRows<'d, R> {
    pub(super) fn new(input: R, dataset: &'d Dataset) -> Self {
        let names: Vec<&str> = dataset.columns.iter().map(|c| c.name.as_str()).collect();
        JsonRows {
            input,
            declared: names.iter().copied().collect(),
            names,
            extra_columns: dataset.policy.extra_columns,
            max_row_bytes: dataset.policy.max_row_bytes,
            buffer: Vec::new(),
            current: serde_json::Map::new(),
            line: 0,
            byte: 0,
            next_byte: 0,
        }
    }

    fn undeclared(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.current
            .iter()
            .filter(|(key, _)| !self.declared.contains(key.as_str()))
    }
}

impl<R: BufRead> RowSource for JsonRows<'_, R> {
    fn next_row(&mut self) -> Result<Option<RowCheck>, ConvertError> {
        loop {
            self.buffer.clear();
            self.current.clear();
            let read = read_line_capped(&mut self.input, &mut self.buffer, self.max_row_bytes + 2)
                .map_err(read_error)?;
            if read == 0 {
                return Ok(None);
            }
            self.line += 1;
            self.byte = self.next_byte;
            self.next_byte += read as u64;
            while matches!(self.buffer.last(), Some(b'\n' | b'\r')) {
                self.buffer.pop();
            }
            if self.buffer.len() > self.max_row_bytes {
                self.buffer.truncate(self.max_row_bytes);
                return Ok(Some(RowCheck::bad(
                    "max_row_bytes",
                    format!("the line is longer than {} bytes", self.max_row_bytes),
                )));
            }
            if self.buffer.trim_ascii().is_empty() {
                continue;
            }
            let check = match serde_json::from_slice::<Value>(&self.buffer) {
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
            return Ok(Some(check));
        }
    }

    fn line(&self) -> u64 {
        self.line
    }

    fn byte_offset(&self) -> Option<u64> {
        Some(self.byte)
    }

    fn raw(&self) -> &[u8] {
        &self.buffer
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
