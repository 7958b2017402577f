//! A chunk's lines scanned once into a grid of cells, one per dataset column and line,
//! for typing column by column ([`super::super::columnar`]).
//!
//! The scanner accepts only what it can vouch for: plain JSON objects whose keys have no
//! escapes, with at most `max_columns` keys, no line cut at `max_row_bytes`, and no
//! undeclared key the dataset wants kept or refused. Anything else (invalid JSON, a lone
//! surrogate, nesting deeper than [`MAX_DEPTH`], ...) makes [`LineChunk::grid`] return
//! `None`, and the row path, which parses with serde_json, says what was wrong. So the
//! grid never passes a line serde_json would refuse.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;

use super::LineChunk;
use crate::convert::report::MAX_NEW_COLUMNS;
use crate::domain::dataset::{Dataset, NewColumns};

/// Arrays and objects nest at most this deep in a cell the grid takes (serde_json refuses
/// 128 levels; past this the row path decides).
const MAX_DEPTH: usize = 64;

/// The grid's cells weigh at most this many times the chunk's text: a chunk of short
/// lines for a dataset of many columns (sparse objects) takes the row path instead, so
/// the grid stays within the conversion's reserve (see `crate::config::memory`).
const MAX_CELL_BYTES_PER_BYTE: usize = 3;

/// One line's value for one column. Ranges are byte offsets (`u32`: a chunk the grid
/// takes is under 4 GiB, and its unescaped strings are no longer than their JSON text).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(in crate::convert) enum Cell {
    /// The line has no such key.
    #[default]
    Missing,
    Null,
    Bool(bool),
    /// A string without escapes: its text, in the chunk.
    Str(u32, u32),
    /// A string with escapes: its unescaped text, in the grid's own buffer.
    Unescaped(u32, u32),
    /// A number: its JSON text, in the chunk.
    Number(u32, u32),
    /// An array or object: its JSON text, in the chunk.
    Nested(u32, u32),
}

/// A chunk's cells, column by column.
pub(in crate::convert) struct JsonGrid<'c> {
    bytes: &'c str,
    unescaped: String,
    /// `cells[column * rows + row]`.
    cells: Vec<Cell>,
    rows: usize,
    /// Undeclared keys (ignored, or added by `on_new_columns = "add"`), at most
    /// [`MAX_NEW_COLUMNS`].
    pub(in crate::convert) new_columns: BTreeSet<String>,
}

impl JsonGrid<'_> {
    pub(in crate::convert) fn rows(&self) -> usize {
        self.rows
    }

    /// Column `column`'s cells, line after line.
    pub(in crate::convert) fn column(&self, column: usize) -> &[Cell] {
        &self.cells[column * self.rows..(column + 1) * self.rows]
    }

    /// The text of a string cell (`""` for any other).
    pub(in crate::convert) fn text(&self, cell: Cell) -> &str {
        match cell {
            Cell::Str(start, end) => &self.bytes[start as usize..end as usize],
            Cell::Unescaped(start, end) => &self.unescaped[start as usize..end as usize],
            _ => "",
        }
    }

    /// The JSON text of a number, array or object cell (`""` for any other).
    pub(in crate::convert) fn json(&self, cell: Cell) -> &str {
        match cell {
            Cell::Number(start, end) | Cell::Nested(start, end) => {
                &self.bytes[start as usize..end as usize]
            }
            _ => "",
        }
    }
}

impl LineChunk {
    /// The chunk as a grid of `dataset`'s columns, or `None` when a line needs the row
    /// path (see the module doc).
    pub(in crate::convert) fn grid(&self, dataset: &Dataset) -> Option<JsonGrid<'_>> {
        let rows = self.lines.len();
        let cells = rows.saturating_mul(dataset.columns.len());
        if self.bytes.len() >= u32::MAX as usize
            || cells.saturating_mul(size_of::<Cell>()) > MAX_CELL_BYTES_PER_BYTE * self.bytes.len()
            || self.lines.iter().any(|l| l.too_long)
        {
            return None;
        }
        // A line the grid takes starts with `{` and ends with `}`: cut from UTF-8 text
        // at ASCII bytes, it is UTF-8 too.
        let bytes = std::str::from_utf8(&self.bytes).ok()?;
        let keys = Keys::new(dataset);
        let mut grid = JsonGrid {
            bytes,
            unescaped: String::new(),
            cells: vec![Cell::Missing; cells],
            rows,
            new_columns: BTreeSet::new(),
        };
        for (row, line) in self.lines.iter().enumerate() {
            grid.scan_line(&keys, row, line.text.clone())?;
        }
        Some(grid)
    }
}

/// How a chunk's keys find their columns, and what the dataset allows of them.
struct Keys<'d> {
    /// Column names, for a key to match byte for byte; `None` for a name with a
    /// character JSON must escape (its key is read and looked up).
    plain: Vec<Option<&'d str>>,
    columns: HashMap<&'d str, usize>,
    max_columns: usize,
    /// Whether an undeclared key must be kept or refused (the row path's work).
    keeps_undeclared: bool,
}

impl<'d> Keys<'d> {
    fn new(dataset: &'d Dataset) -> Self {
        let names = dataset.columns.iter().map(|c| c.name.as_str());
        let escapes = |name: &str| name.bytes().any(|b| matches!(b, b'"' | b'\\' | 0..=0x1f));
        Keys {
            plain: names
                .clone()
                .map(|n| Some(n).filter(|n| !escapes(n)))
                .collect(),
            columns: names.enumerate().map(|(i, n)| (n, i)).collect(),
            max_columns: dataset.policy.max_columns,
            keeps_undeclared: match dataset.policy.on_new_columns {
                NewColumns::Ignore | NewColumns::Add => false,
                NewColumns::Keep | NewColumns::Rescue | NewColumns::Reject => true,
            },
        }
    }

    /// The key after its opening quote, and its column: `likely`'s when the key is its
    /// name (matched in place), else looked up.
    fn read<'t>(&self, scan: &mut Scan<'t>, likely: usize) -> Option<(&'t str, Option<usize>)>
    where
        'd: 't,
    {
        if let Some(name) = self.plain.get(likely).copied().flatten() {
            if scan.quoted_ahead(name) {
                return Some((name, Some(likely)));
            }
        }
        let (start, end) = scan.plain_string()?;
        // A range of a UTF-8 line, cut at ASCII quotes.
        let key = std::str::from_utf8(&scan.bytes[start..end]).ok()?;
        Some((key, self.columns.get(key).copied()))
    }
}

impl JsonGrid<'_> {
    /// One line's object into row `row` of the cells; `None` if the row path must read it.
    fn scan_line(&mut self, keys: &Keys<'_>, row: usize, text: Range<usize>) -> Option<()> {
        let mut scan = Scan {
            bytes: self.bytes.as_bytes(),
            at: text.start,
            end: text.end,
        };
        scan.space();
        scan.expect(b'{')?;
        scan.space();
        if !scan.eat(b'}') {
            let mut count = 0;
            // The column whose key is likely next: lines tend to keep the columns' order.
            let mut next = 0;
            loop {
                scan.expect(b'"')?;
                let (key, column) = keys.read(&mut scan, next)?;
                count += 1;
                if count > keys.max_columns {
                    return None;
                }
                scan.space();
                scan.expect(b':')?;
                scan.space();
                match column {
                    Some(column) => {
                        // A repeated key: the last value wins, as in the row path.
                        self.cells[column * self.rows + row] = scan.value(&mut self.unescaped)?;
                        next = column + 1;
                    }
                    None if keys.keeps_undeclared => return None,
                    None => {
                        scan.skip_value(0)?;
                        let seen = &mut self.new_columns;
                        if seen.len() < MAX_NEW_COLUMNS && !seen.contains(key) {
                            seen.insert(key.to_owned());
                        }
                    }
                }
                scan.space();
                if !scan.eat(b',') {
                    scan.expect(b'}')?;
                    break;
                }
                scan.space();
            }
        }
        scan.space();
        (scan.at == scan.end).then_some(())
    }
}

/// A cursor over one line; every method returns `None` on what it does not vouch for.
struct Scan<'a> {
    bytes: &'a [u8],
    at: usize,
    end: usize,
}

impl Scan<'_> {
    fn peek(&self) -> Option<u8> {
        (self.at < self.end).then(|| self.bytes[self.at])
    }

    /// JSON's white space.
    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// Whether `name` and a closing quote come next; if so, passes over them.
    #[inline]
    fn quoted_ahead(&mut self, name: &str) -> bool {
        let name = name.as_bytes();
        let rest = &self.bytes[self.at..self.end];
        // Byte by byte: names are short, and a call to `memcmp` costs more.
        let found = rest.len() > name.len()
            && rest[name.len()] == b'"'
            && name.iter().zip(rest).all(|(a, b)| a == b);
        if found {
            self.at += name.len() + 1;
        }
        found
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        self.at += usize::from(found);
        found
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.eat(byte).then_some(())
    }

    fn literal(&mut self, text: &[u8]) -> Option<()> {
        let found = self.bytes[self.at..self.end].starts_with(text);
        self.at += if found { text.len() } else { 0 };
        found.then_some(())
    }

    /// A column's value, starting at its first byte.
    fn value(&mut self, unescaped: &mut String) -> Option<Cell> {
        let start = self.at;
        let range = |end: usize| (start as u32, end as u32);
        Some(match self.peek()? {
            b'"' => {
                self.at += 1;
                match self.plain_string() {
                    Some((from, to)) => Cell::Str(from as u32, to as u32),
                    None => {
                        self.at = start + 1;
                        let from = unescaped.len();
                        self.unescape(unescaped)?;
                        Cell::Unescaped(from as u32, unescaped.len() as u32)
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                self.number()?;
                let (start, end) = range(self.at);
                Cell::Number(start, end)
            }
            b't' => self.literal(b"true").map(|()| Cell::Bool(true))?,
            b'f' => self.literal(b"false").map(|()| Cell::Bool(false))?,
            b'n' => self.literal(b"null").map(|()| Cell::Null)?,
            b'{' | b'[' => {
                self.skip_value(0)?;
                let (start, end) = range(self.at);
                Cell::Nested(start, end)
            }
            _ => return None,
        })
    }

    /// The rest of a string without escapes, after its opening quote: the range of its
    /// text. `None` (the cursor left anywhere) at an escape or a control character.
    fn plain_string(&mut self) -> Option<(usize, usize)> {
        let start = self.at;
        self.skip_plain_bytes();
        while self.at < self.end {
            match self.bytes[self.at] {
                b'"' => {
                    self.at += 1;
                    return Some((start, self.at - 1));
                }
                b'\\' | 0..=0x1f => return None,
                _ => self.at += 1,
            }
        }
        None
    }

    /// Passes over string bytes that need no look (no quote, backslash or control
    /// character), eight at a time; stops at or before the first that does.
    #[inline]
    fn skip_plain_bytes(&mut self) {
        const ONES: u64 = u64::from_ne_bytes([1; 8]);
        const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
        // Bytes of `word` that are zero, flagged in their high bit. The lowest flag is
        // exact (a borrow may flag bytes above it, which are never looked at).
        let zeros = |word: u64| word.wrapping_sub(ONES) & !word & HIGH;
        while let Some(chunk) = self.bytes[..self.end].get(self.at..self.at + 8) {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
            let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
            let special = zeros(word ^ (ONES * u64::from(b'"')))
                | zeros(word ^ (ONES * u64::from(b'\\')))
                | below_space;
            if special != 0 {
                self.at += special.trailing_zeros() as usize / 8;
                return;
            }
            self.at += 8;
        }
    }

    /// The rest of a string after its opening quote, unescaped onto `out`.
    fn unescape(&mut self, out: &mut String) -> Option<()> {
        loop {
            let start = self.at;
            while self.at < self.end && !matches!(self.bytes[self.at], b'"' | b'\\' | 0..=0x1f) {
                self.at += 1;
            }
            // Cut at ASCII bytes of a UTF-8 line: a whole UTF-8 text.
            out.push_str(std::str::from_utf8(&self.bytes[start..self.at]).ok()?);
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Some(());
                }
                b'\\' => {
                    self.at += 1;
                    let escape = self.peek()?;
                    self.at += 1;
                    out.push(match escape {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return None,
                    });
                }
                _ => return None,
            }
        }
    }

    /// A `\u` escape's character, after the `u`: a surrogate pair makes one character;
    /// a lone surrogate is refused (as serde_json does).
    fn unicode_escape(&mut self) -> Option<char> {
        let first = self.hex4()?;
        match first {
            0xd800..=0xdbff => {
                self.literal(b"\\u")?;
                let second = self.hex4()?;
                if !(0xdc00..=0xdfff).contains(&second) {
                    return None;
                }
                char::from_u32(0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00))
            }
            0xdc00..=0xdfff => None,
            _ => char::from_u32(first),
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self
            .bytes
            .get(self.at..self.at + 4)
            .filter(|_| self.at + 4 <= self.end)?;
        let mut value = 0;
        for digit in digits {
            value = value * 16 + char::from(*digit).to_digit(16)?;
        }
        self.at += 4;
        Some(value)
    }

    /// A number, by JSON's grammar, and below 10^300 in magnitude: serde_json refuses a
    /// number too large for an `f64` wherever it reads the value (a declared column's,
    /// even one a repeated key then replaces), so such a line is left to the row path.
    fn number(&mut self) -> Option<()> {
        self.eat(b'-');
        let start = self.at;
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        let whole_digits = self.at - start;
        if self.eat(b'.') {
            self.digits_after()?;
        }
        let mut exponent = 0;
        if self.eat(b'e') || self.eat(b'E') {
            let negative = !self.eat(b'+') && self.eat(b'-');
            let digits = self.at;
            self.digits_after()?;
            // Leading zeros count for nothing (`1e0400` is 1e400).
            let written = &self.bytes[digits..self.at];
            let significant = &written[written.iter().take_while(|d| **d == b'0').count()..];
            if !negative {
                if significant.len() > 3 {
                    return None;
                }
                exponent = significant
                    .iter()
                    .fold(0, |n, d| n * 10 + usize::from(d - b'0'));
            }
        }
        (whole_digits + exponent <= 300).then_some(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
    }

    /// At least one digit.
    fn digits_after(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }

    /// Any value, checked and passed over. Stricter than serde_json, which leaves the
    /// row path to say: its strings may hold no `\u` surrogate escape at all.
    fn skip_value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => {
                self.at += 1;
                self.skip_string()
            }
            b'-' | b'0'..=b'9' => self.number(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            open @ (b'{' | b'[') if depth < MAX_DEPTH => {
                self.at += 1;
                let close = if open == b'{' { b'}' } else { b']' };
                self.space();
                if self.eat(close) {
                    return Some(());
                }
                loop {
                    if open == b'{' {
                        self.expect(b'"')?;
                        self.skip_string()?;
                        self.space();
                        self.expect(b':')?;
                        self.space();
                    }
                    self.skip_value(depth + 1)?;
                    self.space();
                    if self.eat(b',') {
                        self.space();
                        continue;
                    }
                    return self.expect(close);
                }
            }
            _ => None,
        }
    }

    /// The rest of a string after its opening quote, checked.
    fn skip_string(&mut self) -> Option<()> {
        loop {
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Some(());
                }
                0..=0x1f => return None,
                b'\\' => {
                    self.at += 1;
                    let escape = self.peek()?;
                    self.at += 1;
                    match escape {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' if !(0xd800..=0xdfff).contains(&self.hex4()?) => {}
                        _ => return None,
                    }
                }
                _ => self.at += 1,
            }
        }
    }
}
