//! CSV on `csv_core`, in three parts:
//!
//! - [`CsvInput`] hands out the input in chunks of whole records, in file order. Most
//!   dialects are cut into [`RawCsv`] chunks by [`cuts`] without being parsed, and each is
//!   parsed on a typing thread ([`RawCsv::parse`]); others (an escape or comment byte), and
//!   the rest of a file whose quotes break the cut model, are read record by record by one
//!   [`CsvSplitter`].
//! - [`CsvSplitter`] reads records (RFC 4180 quoting, or the dataset's delimiter, quote,
//!   escape and comment; a header row or configured names) into [`CsvChunk`]s of whole
//!   records, with line numbers, byte offsets and raw bytes. A record longer than
//!   `max_row_bytes` is read to its end without being kept.
//! - [`CsvChunkRows`] walks one chunk as a [`RowSource`], so chunks can be typed on any
//!   thread.

mod cuts;

use std::collections::BTreeSet;
use std::io::{self, BufRead, Cursor, Read};
use std::ops::Range;
use std::sync::Arc;

use csv_core::{ReadRecordResult, Reader, ReaderBuilder};

use super::input::{self, read_error};
use super::{ConvertError, RowCheck, RowSource};
use crate::domain::dataset::{CsvOptions, Dataset, Header, NewColumns};
use crate::domain::schema::RawCell;

/// Fields per record at first; grown as needed up to `max_columns`.
pub(super) const START_FIELDS: usize = 64;
const START_BYTES: usize = 4096;

/// Where each dataset column is in a record, from the header.
#[derive(Debug, Default)]
pub(super) struct HeaderMap {
    /// Dataset column index → field index.
    map: Vec<Option<usize>>,
    /// Undeclared fields kept in `_extra` or `_rescued`: (field index, header name).
    extra: Vec<(usize, String)>,
    /// The header's undeclared names, whatever the policy does with them.
    undeclared: Vec<String>,
    width: usize,
}

impl HeaderMap {
    /// The field of dataset column `column`, if the header has it.
    pub(super) fn field_of(&self, column: usize) -> Option<usize> {
        self.map.get(column).copied().flatten()
    }

    /// The header's field count.
    pub(super) fn width(&self) -> usize {
        self.width
    }

    /// Whether records carry fields kept in `_extra` or `_rescued`.
    pub(super) fn keeps_extra_fields(&self) -> bool {
        !self.extra.is_empty()
    }

    /// The header's undeclared names.
    pub(super) fn undeclared(&self) -> &[String] {
        &self.undeclared
    }
}

/// How a record was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Whole,
    TooLong,
    TooManyFields,
}

/// One record of a chunk: where it starts, its fields and raw bytes in the chunk.
#[derive(Debug)]
struct Record {
    line: u64,
    byte: u64,
    shape: Shape,
    /// Range in `CsvChunk::ends`.
    fields: Range<usize>,
    /// Range in `CsvChunk::raw`.
    raw: Range<usize>,
}

/// Whole records, in file order.
#[derive(Debug, Default)]
pub(super) struct CsvChunk {
    records: Vec<Record>,
    /// Field bytes of every record (the first `bytes_used` are filled); `ends` are offsets
    /// into it (the first `ends_used` are filled).
    bytes: Vec<u8>,
    bytes_used: usize,
    ends: Vec<usize>,
    ends_used: usize,
    raw: Vec<u8>,
}

impl CsvChunk {
    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    /// Bytes its records fill: what decides when a chunk is full.
    fn used(&self) -> usize {
        self.bytes_used
            + self.raw.len()
            + self.ends_used * size_of::<usize>()
            + self.records.len() * size_of::<Record>()
    }

    /// Bytes it has allocated: what it weighs in the memory budget.
    pub(super) fn allocated(&self) -> usize {
        self.bytes.len()
            + self.raw.capacity()
            + self.ends.len() * size_of::<usize>()
            + self.records.capacity() * size_of::<Record>()
    }
}

/// A chunk's fields as a grid: every record whole, with the header's field count, every
/// field UTF-8 (see [`CsvChunk::grid`]).
pub(super) struct Grid<'c> {
    bytes: &'c [u8],
    /// The end of every field of every record, record after record.
    ends: &'c [usize],
    width: usize,
}

impl<'c> Grid<'c> {
    pub(super) fn rows(&self) -> usize {
        self.ends.len() / self.width
    }

    /// Field `field` of every record, in order.
    pub(super) fn column(&self, field: usize) -> impl Iterator<Item = &'c str> + '_ {
        (0..self.rows()).map(move |row| {
            let at = row * self.width + field;
            let start = if at == 0 { 0 } else { self.ends[at - 1] };
            // SAFETY: `CsvChunk::grid` checked that every field is UTF-8.
            unsafe { std::str::from_utf8_unchecked(&self.bytes[start..self.ends[at]]) }
        })
    }
}

impl CsvChunk {
    /// The chunk as a [`Grid`] if every record is whole, has `width` fields and every field
    /// is UTF-8 (what [`CsvChunkRows::next_row`] checks of each record); `None` otherwise.
    pub(super) fn grid(&self, width: usize) -> Option<Grid<'_>> {
        let whole = self
            .records
            .iter()
            .all(|r| r.shape == Shape::Whole && r.fields.len() == width);
        if !whole || width == 0 {
            return None;
        }
        let grid = Grid {
            bytes: &self.bytes[..self.bytes_used],
            ends: &self.ends[..self.ends_used],
            width,
        };
        // Each field on its own (two invalid halves can make a valid whole), unless the
        // chunk is ASCII.
        if !grid.bytes.is_ascii() {
            let mut start = 0;
            for &end in grid.ends {
                std::str::from_utf8(&grid.bytes[start..end]).ok()?;
                start = end;
            }
        }
        Some(grid)
    }
}

/// The input left after the records already read: bytes read ahead, then the rest.
pub(super) type Rest<R> = io::Chain<Cursor<Vec<u8>>, R>;

/// A csv_core reader of the dialect, at the start of the input. (One is built for every
/// chunk: in csv_core 0.1.13 a cloned `Reader` parses wrongly, its `Dfa::clone` copying
/// the transition table but not the byte classes, the output flags or the final states.)
fn csv_reader(options: &CsvOptions) -> Reader {
    ReaderBuilder::new()
        .delimiter(options.delimiter)
        .quoting(options.quote.is_some())
        .quote(options.quote.unwrap_or(b'"'))
        .escape(options.escape)
        .double_quote(options.escape.is_none())
        .comment(options.comment)
        .build()
}

#[cfg(test)]
thread_local! {
    /// Makes [`CsvInput::new`] read every file record by record (tests compare both ways).
    pub(super) static RECORDS_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Raw chunks cut, and inputs that went from cuts to records, on this thread.
    pub(super) static CUT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    pub(super) static SWITCHED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A CSV input, handed out in chunks of whole records.
pub(super) enum CsvInput<R: BufRead> {
    /// Cut without parsing; parsed on the typing threads.
    Cuts(Box<RecordCutter<R>>),
    /// Read record by record.
    Records(Box<CsvSplitter<Rest<R>>>),
    /// Only while one becomes the other.
    Switching,
}

/// A chunk of a [`CsvInput`].
pub(super) enum CsvPiece {
    Raw(RawCsv),
    Records(CsvChunk),
}

impl<R: BufRead> CsvInput<R> {
    /// Skips `skip_rows`, reads and maps the header (a problem with it rejects the file),
    /// then cuts the records if the dialect allows.
    pub(super) fn new(input: R, dataset: &Dataset) -> Result<Self, ConvertError> {
        let splitter = CsvSplitter::new(Cursor::new(Vec::new()).chain(input), dataset)?;
        #[cfg(test)]
        if RECORDS_ONLY.get() {
            return Ok(CsvInput::Records(Box::new(splitter)));
        }
        Ok(match cuts::Dialect::of(&dataset.csv) {
            Some(dialect) => CsvInput::Cuts(Box::new(splitter.into_cutter(dialect, dataset))),
            None => CsvInput::Records(Box::new(splitter)),
        })
    }

    pub(super) fn header(&self) -> Arc<HeaderMap> {
        match self {
            CsvInput::Cuts(c) => c.header.clone(),
            CsvInput::Records(s) => s.header(),
            CsvInput::Switching => Arc::default(),
        }
    }

    /// The next chunk: at most `max_records` records, about `max_bytes` bytes (at least
    /// one record); `None` at the end of the input.
    pub(super) fn next_chunk(
        &mut self,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Option<CsvPiece>, ConvertError> {
        loop {
            match self {
                CsvInput::Records(s) => {
                    return Ok(s.next_chunk(max_records, max_bytes)?.map(CsvPiece::Records))
                }
                CsvInput::Cuts(cutter) => match cutter.next_chunk(max_records, max_bytes)? {
                    Next::Raw(raw) => {
                        #[cfg(test)]
                        CUT.set(CUT.get() + 1);
                        return Ok(Some(CsvPiece::Raw(raw)));
                    }
                    Next::End => return Ok(None),
                    Next::Records => {
                        // Moves the cutter's input and bytes read ahead into a record
                        // reader (`Switching` only stands in while both are taken apart).
                        if let CsvInput::Cuts(cutter) = std::mem::replace(self, CsvInput::Switching)
                        {
                            *self = CsvInput::Records(Box::new(cutter.into_records()));
                            #[cfg(test)]
                            SWITCHED.set(SWITCHED.get() + 1);
                        }
                    }
                },
                CsvInput::Switching => {
                    return Err(ConvertError::Write(
                        "the CSV input was left switching".into(),
                    ))
                }
            }
        }
    }
}

/// A chunk of whole records as they are in the input, parsed on a typing thread.
#[derive(Debug)]
pub(super) struct RawCsv {
    bytes: Vec<u8>,
    start: Start,
    /// Its records and separators, as [`cuts::find_cut`] counted them: the sizes of the
    /// buffers it is parsed into.
    records: usize,
    separators: usize,
    parser: Arc<ChunkParser>,
}

/// Where a reader starts in the input.
#[derive(Debug, Clone, Copy)]
struct Start {
    /// The lines before it (`skip_rows` and the `\n` bytes csv_core has passed).
    lines: u64,
    offset: u64,
}

impl RawCsv {
    /// What it weighs in the rows in flight until typed: itself and what it is parsed
    /// into (see [`RawCsv::parse`]), twice, as any chunk.
    pub(super) fn weight(&self) -> u64 {
        let len = self.bytes.capacity();
        let parsed = (len + 64)
            + len
            + (self.separators + 1 + START_FIELDS) * size_of::<usize>()
            + (self.records + 1) * size_of::<Record>();
        2 * (len + parsed) as u64
    }

    /// Its records, as the one reader of the whole input would have read them.
    pub(super) fn parse(&self) -> Result<CsvChunk, ConvertError> {
        let mut splitter = self
            .parser
            .splitter(self.bytes.as_slice(), self.start, Arc::default());
        // Field bytes never outnumber the raw bytes, nor fields the separators and one, so
        // neither buffer grows (tested: `a_raw_chunk_weighs_what_it_is_parsed_into`).
        let len = self.bytes.len();
        let mut chunk = CsvChunk {
            bytes: vec![0; len + 64],
            ends: vec![0; self.separators + 1 + START_FIELDS],
            raw: Vec::with_capacity(len),
            records: Vec::with_capacity(self.records + 1),
            ..CsvChunk::default()
        };
        while splitter.read_record(&mut chunk)? {}
        Ok(chunk)
    }
}

/// How a file's records are read: the dataset's dialect and limits.
#[derive(Debug)]
pub(super) struct ChunkParser {
    options: CsvOptions,
    max_row_bytes: usize,
    max_columns: usize,
}

impl ChunkParser {
    fn new(dataset: &Dataset) -> Self {
        ChunkParser {
            options: dataset.csv.clone(),
            max_row_bytes: dataset.policy.max_row_bytes,
            max_columns: dataset.policy.max_columns,
        }
    }

    /// A record reader of `input`, which starts at a record at `start`.
    fn splitter<R: BufRead>(
        &self,
        input: R,
        start: Start,
        header: Arc<HeaderMap>,
    ) -> CsvSplitter<R> {
        let mut core = csv_reader(&self.options);
        // csv_core drops a byte order mark at the start of its first input, if that input
        // holds all three bytes: so whether it did would depend on where a chunk, or a
        // read, starts. `input::open` has dropped the file's own mark; any other is text.
        // A call with no room for output reads nothing, yet counts as having read, which
        // is all that stops csv_core looking (tested:
        // `a_primed_reader_keeps_a_byte_order_mark`).
        let _ = core.read_record(b" ", &mut [], &mut [0]);
        CsvSplitter {
            input,
            core,
            max_row_bytes: self.max_row_bytes,
            max_columns: self.max_columns,
            comment: self.options.comment,
            lines_before: start.lines,
            lines_read: start.lines,
            bytes_read: start.offset,
            bytes_hint: START_BYTES,
            raw_hint: 0,
            header,
            scratch_bytes: vec![0; START_BYTES].into_boxed_slice(),
            scratch_ends: vec![0; START_FIELDS].into_boxed_slice(),
        }
    }
}

/// What [`RecordCutter::next_chunk`] found.
enum Next {
    Raw(RawCsv),
    End,
    /// The rest must be read record by record.
    Records,
}

/// Cuts the input into [`RawCsv`] chunks at record ends ([`cuts::find_cut`]).
pub(super) struct RecordCutter<R> {
    input: R,
    dialect: cuts::Dialect,
    parser: Arc<ChunkParser>,
    header: Arc<HeaderMap>,
    /// Bytes read past the last cut, starting at a record at `start`.
    pending: Vec<u8>,
    start: Start,
    at_end: bool,
    /// A quote broke the cut model before the next cut.
    irregular: bool,
}

impl<R: BufRead> RecordCutter<R> {
    /// The next chunk: cut where its records would take about `max_bytes` parsed, as the
    /// record reader's chunks do, or at `max_records` records.
    fn next_chunk(&mut self, max_records: usize, max_bytes: usize) -> Result<Next, ConvertError> {
        if self.irregular {
            return Ok(Next::Records);
        }
        // Parsed, a chunk takes more than twice its bytes: a third is a first guess.
        let mut want = (max_bytes / 3).max(1);
        loop {
            self.fill(want)?;
            let only_line_ends = || self.pending.iter().all(|b| matches!(b, b'\n' | b'\r'));
            match cuts::find_cut(&self.pending, self.dialect, max_bytes, max_records) {
                cuts::Cut::At(span) => return Ok(Next::Raw(self.take(span))),
                cuts::Cut::Irregular { before } => {
                    self.irregular = true;
                    return Ok(match before {
                        Some(span) => Next::Raw(self.take(span)),
                        None => Next::Records,
                    });
                }
                // Blank lines at the end are no record.
                cuts::Cut::None(_) if self.at_end && only_line_ends() => return Ok(Next::End),
                // The last chunk: all of `pending`, its last record perhaps unended.
                cuts::Cut::None(all) if self.at_end => {
                    let records = all.records + 1;
                    return Ok(Next::Raw(self.take(cuts::Span { records, ..all })));
                }
                // A first record that would outweigh two chunks is left to the record
                // reader, which keeps no more than `max_row_bytes` (and `max_columns`) of
                // it. (Its bytes are at most half its weight, so `pending` stops growing
                // at `max_bytes` and one read.)
                cuts::Cut::None(span) if span.parsed_bytes() >= max_bytes.saturating_mul(2) => {
                    return Ok(Next::Records)
                }
                // Read more (at least a byte more: the arm above stops the growth).
                cuts::Cut::None(_) => {
                    let len = self.pending.len();
                    want = len.saturating_mul(2).min(max_bytes).max(len + 1);
                }
            }
        }
    }

    /// Reads until `pending` holds `want` bytes or the input ends.
    fn fill(&mut self, want: usize) -> Result<(), ConvertError> {
        while self.pending.len() < want && !self.at_end {
            let available = self.input.fill_buf().map_err(read_error)?;
            if available.is_empty() {
                self.at_end = true;
                break;
            }
            let n = available.len();
            self.pending.extend_from_slice(available);
            self.input.consume(n);
        }
        Ok(())
    }

    /// The first `span.end` bytes of `pending` as a chunk; the rest stays, in a buffer
    /// with room for the next chunk's first read (none after the last chunk).
    fn take(&mut self, span: cuts::Span) -> RawCsv {
        let left = self.pending.len() - span.end;
        let room = if self.at_end {
            left
        } else {
            left + input::BUFFER
        };
        let mut rest = Vec::with_capacity(room);
        rest.extend_from_slice(&self.pending[span.end..]);
        self.pending.truncate(span.end);
        let mut bytes = std::mem::replace(&mut self.pending, rest);
        bytes.shrink_to_fit();
        let raw = RawCsv {
            bytes,
            start: self.start,
            records: span.records,
            separators: span.separators,
            parser: self.parser.clone(),
        };
        self.start = Start {
            lines: self.start.lines + span.lines,
            offset: self.start.offset + span.end as u64,
        };
        raw
    }

    /// A record reader for the rest, from the last cut.
    fn into_records(self) -> CsvSplitter<Rest<R>> {
        let rest = Cursor::new(self.pending).chain(self.input);
        self.parser.splitter(rest, self.start, self.header)
    }
}

impl<R: BufRead> CsvSplitter<Rest<R>> {
    /// A cutter for the records after the header.
    fn into_cutter(self, dialect: cuts::Dialect, dataset: &Dataset) -> RecordCutter<R> {
        // What the header reader read ahead of its last record (nothing today: csv_core
        // consumes only what it reads) starts the cutter's bytes.
        let (ahead, input) = self.input.into_inner();
        let position = usize::try_from(ahead.position()).unwrap_or(usize::MAX);
        let pending = ahead
            .into_inner()
            .get(position..)
            .unwrap_or_default()
            .to_vec();
        RecordCutter {
            input,
            dialect,
            parser: Arc::new(ChunkParser::new(dataset)),
            header: self.header,
            pending,
            start: Start {
                lines: self.lines_read,
                offset: self.bytes_read,
            },
            at_end: false,
            irregular: false,
        }
    }
}

/// Reads CSV records in order and hands them out in chunks.
pub(super) struct CsvSplitter<R: BufRead> {
    input: R,
    core: Reader,
    max_row_bytes: usize,
    max_columns: usize,
    comment: Option<u8>,
    /// Lines before this reader's start (`skip_rows`, or the chunks before it), which its
    /// csv_core does not count.
    lines_before: u64,
    lines_read: u64,
    bytes_read: u64,
    /// Field bytes a chunk starts with room for (the last chunk's size).
    bytes_hint: usize,
    /// Raw bytes a chunk starts with room for (the same).
    raw_hint: usize,
    header: Arc<HeaderMap>,
    /// Where the fields of a record past a limit go, to be dropped (kept here so no record
    /// zeroes a buffer of its own).
    scratch_bytes: Box<[u8]>,
    scratch_ends: Box<[usize]>,
}

impl<R: BufRead> CsvSplitter<R> {
    /// Skips `skip_rows`, reads and maps the header. A header problem rejects the file.
    pub(super) fn new(mut input: R, dataset: &Dataset) -> Result<Self, ConvertError> {
        let options = &dataset.csv;
        let policy = &dataset.policy;
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
        let start = Start {
            lines: lines_read,
            offset: bytes_read,
        };
        let mut splitter = ChunkParser::new(dataset).splitter(input, start, Arc::default());
        let (names, line) = match &options.header {
            Header::Names(names) => (names.clone(), 1),
            Header::FirstRow => {
                let mut first = CsvChunk::default();
                if !splitter.read_record(&mut first)? {
                    return Ok(splitter); // an empty file needs no header
                }
                (splitter.header_names(&first)?, first.records[0].line)
            }
        };
        splitter.header = Arc::new(map_header(&names, dataset, line)?);
        Ok(splitter)
    }

    pub(super) fn header(&self) -> Arc<HeaderMap> {
        self.header.clone()
    }

    /// Whole records until there are `max_records` or they fill `max_bytes` (at least
    /// one); `None` at the end of the input.
    pub(super) fn next_chunk(
        &mut self,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Option<CsvChunk>, ConvertError> {
        // Room for about as many field bytes as the last chunk had, and four field ends per
        // record (within a quarter of the byte limit); both grow when needed.
        let ends = max_records.saturating_mul(4).min(max_bytes / 32);
        let mut chunk = CsvChunk {
            bytes: vec![0; self.bytes_hint.min(max_bytes)],
            ends: vec![0; START_FIELDS.max(ends)],
            raw: Vec::with_capacity(self.raw_hint.min(max_bytes)),
            ..CsvChunk::default()
        };
        while chunk.records.len() < max_records
            && chunk.used() < max_bytes
            && self.read_record(&mut chunk)?
        {}
        self.bytes_hint = self.bytes_hint.max(chunk.bytes_used + chunk.bytes_used / 8);
        self.raw_hint = self.raw_hint.max(chunk.raw.len() + chunk.raw.len() / 8);
        Ok((!chunk.records.is_empty()).then_some(chunk))
    }

    /// The chunk's one record as header names.
    fn header_names(&self, first: &CsvChunk) -> Result<Vec<String>, ConvertError> {
        let record = &first.records[0];
        let line = record.line;
        match record.shape {
            Shape::TooLong => {
                return Err(ConvertError::Malformed(format!(
                    "line {line}: the header is longer than max_row_bytes ({})",
                    self.max_row_bytes
                )))
            }
            Shape::TooManyFields => {
                return Err(ConvertError::Malformed(format!(
                    "line {line}: the header has more than max_columns ({}) columns",
                    self.max_columns
                )))
            }
            Shape::Whole => {}
        }
        let mut start = 0;
        first.ends[record.fields.clone()]
            .iter()
            .enumerate()
            .map(|(i, &end)| {
                let field = &first.bytes[start..end];
                start = end;
                match std::str::from_utf8(field) {
                    Ok(name) => Ok(name.trim().to_owned()),
                    Err(_) => Err(ConvertError::Malformed(format!(
                        "line {line}: the header is not UTF-8 (column {})",
                        i + 1
                    ))),
                }
            })
            .collect()
    }

    /// Reads the next record straight into the chunk's buffers; false at the end of the
    /// input.
    fn read_record(&mut self, chunk: &mut CsvChunk) -> Result<bool, ConvertError> {
        let (field_base, ends_base, raw_base) =
            (chunk.bytes_used, chunk.ends_used, chunk.raw.len());
        let (start_lines, start_bytes) = (self.lines_read, self.bytes_read);
        let mut shape = Shape::Whole;
        // Line ends before the record (blank lines, the `\n` of a `\r\n` that csv_core
        // reads after the record it ends): not kept, so the record's `max_row_bytes` of raw
        // text are its own wherever a chunk starts. (Comment lines before it are dropped
        // only once it has ended, by `skip_preamble`, and count against the limit.)
        let (mut lead_lines, mut lead_bytes) = (0, 0);
        loop {
            let input = self.input.fill_buf().map_err(read_error)?;
            let output: &mut [u8] = if shape == Shape::TooLong {
                &mut self.scratch_bytes
            } else {
                &mut chunk.bytes[chunk.bytes_used..]
            };
            let ends: &mut [usize] = if shape == Shape::Whole {
                &mut chunk.ends[chunk.ends_used..]
            } else {
                &mut self.scratch_ends
            };
            let (result, nin, nout, nend) = self.core.read_record(input, output, ends);
            let mut read = &input[..nin];
            if chunk.raw.len() == raw_base {
                let blank = read.iter().take_while(|b| matches!(b, b'\n' | b'\r'));
                let (lines, bytes) =
                    blank.fold((0, 0), |(l, n), b| (l + u64::from(*b == b'\n'), n + 1));
                (lead_lines, lead_bytes) = (lead_lines + lines, lead_bytes + bytes);
                read = &read[bytes as usize..];
            }
            let room = self
                .max_row_bytes
                .saturating_sub(chunk.raw.len() - raw_base);
            chunk.raw.extend_from_slice(&read[..read.len().min(room)]);
            self.bytes_read += nin as u64;
            self.input.consume(nin);
            if shape != Shape::TooLong {
                chunk.bytes_used += nout;
            }
            if shape == Shape::Whole {
                chunk.ends_used += nend;
            }
            let record_bytes = chunk.bytes_used - field_base;
            match result {
                ReadRecordResult::InputEmpty => {}
                // Past a limit, output goes to scratch buffers that are simply reused.
                ReadRecordResult::OutputFull if shape == Shape::TooLong => {}
                ReadRecordResult::OutputEndsFull if shape != Shape::Whole => {}
                ReadRecordResult::OutputFull if record_bytes > self.max_row_bytes => {
                    shape = Shape::TooLong
                }
                ReadRecordResult::OutputFull => {
                    let grown = (chunk.bytes.len() * 2).max(chunk.bytes_used + START_BYTES);
                    chunk.bytes.resize(grown, 0);
                }
                ReadRecordResult::OutputEndsFull
                    if chunk.ends_used - ends_base > self.max_columns =>
                {
                    shape = Shape::TooManyFields;
                }
                ReadRecordResult::OutputEndsFull => {
                    let grown = (chunk.ends.len() * 2).max(START_FIELDS);
                    chunk.ends.resize(grown, 0);
                }
                ReadRecordResult::Record => {
                    if record_bytes > self.max_row_bytes {
                        shape = Shape::TooLong;
                    } else if shape == Shape::Whole
                        && chunk.ends_used - ends_base > self.max_columns
                    {
                        shape = Shape::TooManyFields;
                    }
                    if shape == Shape::Whole {
                        // csv_core counts a record's field ends from its own first byte.
                        for end in &mut chunk.ends[ends_base..chunk.ends_used] {
                            *end += field_base;
                        }
                    } else {
                        chunk.bytes_used = field_base;
                        chunk.ends_used = ends_base;
                    }
                    // csv_core counts lines from 1, after the skipped preamble.
                    self.lines_read = self.lines_before + self.core.line() - 1;
                    let (skipped_lines, skipped_bytes) =
                        self.skip_preamble(&mut chunk.raw, raw_base);
                    chunk.records.push(Record {
                        line: start_lines + lead_lines + skipped_lines + 1,
                        byte: start_bytes + lead_bytes + skipped_bytes,
                        shape,
                        fields: ends_base..chunk.ends_used,
                        raw: raw_base..chunk.raw.len(),
                    });
                    return Ok(true);
                }
                ReadRecordResult::End => {
                    chunk.raw.truncate(raw_base);
                    return Ok(false);
                }
            }
        }
    }

    /// Drops from `raw[start..]` the blank and comment lines the parser skipped before the
    /// record; returns how many lines and bytes that was.
    fn skip_preamble(&self, raw: &mut Vec<u8>, start: usize) -> (u64, u64) {
        let mut offset = start;
        let mut lines = 0;
        while offset < raw.len() {
            let rest = &raw[offset..];
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
        raw.drain(start..offset);
        (lines, (offset - start) as u64)
    }
}

/// Header names as an error may quote them. In a dataset with pii columns, a name the
/// dataset does not declare is not quoted: a file without its header row would have its
/// first record, pii values and all, read as names.
fn reported_names<'a>(names: impl Iterator<Item = &'a String>, dataset: &Dataset) -> Vec<String> {
    let has_pii = dataset.columns.iter().any(|c| c.pii.is_some());
    names
        .map(|name| match dataset.column_index(name) {
            None if has_pii => "<undeclared>".to_owned(),
            _ => name.clone(),
        })
        .collect()
}

fn map_header(names: &[String], dataset: &Dataset, line: u64) -> Result<HeaderMap, ConvertError> {
    let mut header = HeaderMap {
        map: vec![None; dataset.columns.len()],
        extra: Vec::new(),
        undeclared: Vec::new(),
        width: names.len(),
    };
    let mut unknown = Vec::new();
    for (field, name) in names.iter().enumerate() {
        match dataset.column_index(name) {
            Some(index) if header.map[index].is_some() => {
                return Err(ConvertError::Malformed(format!(
                    "line {line}: the header names column {name:?} twice"
                )));
            }
            Some(index) => header.map[index] = Some(field),
            None => unknown.push((field, name.clone())),
        }
    }
    let missing: Vec<&str> = dataset
        .columns
        .iter()
        .zip(&header.map)
        .filter(|(c, f)| c.required && f.is_none())
        .map(|(c, _)| c.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(ConvertError::Malformed(format!(
            "line {line}: the header lacks required column(s) {}; found {}",
            missing.join(", "),
            reported_names(names.iter(), dataset).join(",")
        )));
    }
    match dataset.policy.on_new_columns {
        NewColumns::Reject if !unknown.is_empty() => {
            let names = reported_names(unknown.iter().map(|(_, n)| n), dataset);
            return Err(ConvertError::Malformed(format!(
                "line {line}: the header has columns the dataset does not declare: {} (on_new_columns = \"reject\")",
                names.join(", ")
            )));
        }
        NewColumns::Keep | NewColumns::Rescue => {
            header.undeclared = unknown.iter().map(|(_, n)| n.clone()).collect();
            header.extra = unknown;
        }
        NewColumns::Ignore | NewColumns::Reject | NewColumns::Add => {
            header.undeclared = unknown.into_iter().map(|(_, n)| n).collect();
        }
    }
    Ok(header)
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

/// One chunk's records as rows.
pub(super) struct CsvChunkRows<'c> {
    chunk: &'c CsvChunk,
    header: &'c HeaderMap,
    max_row_bytes: usize,
    max_columns: usize,
    /// The current record, once `next_row` has been called.
    at: Option<usize>,
    /// Whether every field of the current record is UTF-8 (checked in `next_row`).
    checked: bool,
}

impl<'c> CsvChunkRows<'c> {
    pub(super) fn new(chunk: &'c CsvChunk, header: &'c HeaderMap, dataset: &Dataset) -> Self {
        CsvChunkRows {
            chunk,
            header,
            max_row_bytes: dataset.policy.max_row_bytes,
            max_columns: dataset.policy.max_columns,
            at: None,
            checked: false,
        }
    }

    fn record(&self) -> &'c Record {
        &self.chunk.records[self.at.unwrap_or_default()]
    }

    /// Where the current record's field bytes start in the chunk.
    fn record_start(&self) -> usize {
        match self.record().fields.start {
            0 => 0,
            first => self.chunk.ends[first - 1],
        }
    }

    /// All field bytes of the current record.
    fn record_bytes(&self) -> &'c [u8] {
        let record = self.record();
        if record.fields.is_empty() {
            return &[];
        }
        &self.chunk.bytes[self.record_start()..self.chunk.ends[record.fields.end - 1]]
    }

    /// The bytes of field `i` of the current record.
    fn field_bytes(&self, i: usize) -> &'c [u8] {
        let ends = &self.chunk.ends[self.record().fields.clone()];
        let start = if i == 0 {
            self.record_start()
        } else {
            ends[i - 1]
        };
        &self.chunk.bytes[start..ends[i]]
    }

    /// Field `i` of the current record as text (empty if `next_row` refused the record).
    fn field(&self, i: usize) -> &'c str {
        let bytes = self.field_bytes(i);
        if self.checked {
            // SAFETY: `next_row` checked that every field of this record is UTF-8, and
            // `checked` is reset whenever the current record changes.
            unsafe { std::str::from_utf8_unchecked(bytes) }
        } else {
            std::str::from_utf8(bytes).unwrap_or_default()
        }
    }
}

impl RowSource for CsvChunkRows<'_> {
    fn next_row(&mut self) -> Result<Option<RowCheck>, ConvertError> {
        let next = self.at.map_or(0, |i| i + 1);
        self.checked = false;
        if next >= self.chunk.records.len() {
            return Ok(None);
        }
        self.at = Some(next);
        let record = self.record();
        match record.shape {
            Shape::TooLong => {
                return Ok(Some(RowCheck::bad(
                    "max_row_bytes",
                    format!("the row is longer than {} bytes", self.max_row_bytes),
                )))
            }
            Shape::TooManyFields => {
                return Ok(Some(RowCheck::bad(
                    "fields",
                    format!("the row has more than {} fields", self.max_columns),
                )))
            }
            Shape::Whole => {}
        }
        let count = record.fields.len();
        // Each field on its own: two invalid halves can make a valid whole. An all-ASCII
        // record needs no more than one look.
        if !self.record_bytes().is_ascii() {
            if let Some(field) =
                (0..count).find(|i| std::str::from_utf8(self.field_bytes(*i)).is_err())
            {
                return Ok(Some(RowCheck::bad(
                    "utf8",
                    format!(
                        "field {} is not valid UTF-8 (the row starts at byte {})",
                        field + 1,
                        record.byte
                    ),
                )));
            }
        }
        self.checked = true;
        if count != self.header.width {
            return Ok(Some(RowCheck::bad(
                "fields",
                format!("expected {} fields, found {count}", self.header.width),
            )));
        }
        Ok(Some(RowCheck::Ok))
    }

    fn line(&self) -> u64 {
        self.record().line
    }

    fn byte_offset(&self) -> Option<u64> {
        Some(self.record().byte)
    }

    fn raw(&self) -> &[u8] {
        &self.chunk.raw[self.record().raw.clone()]
    }

    fn redacted_raw(&self, dataset: &Dataset) -> Option<Vec<u8>> {
        // `checked`: whole, every field UTF-8. With another field count than the header's,
        // a field's position says nothing about its column.
        let count = self.record().fields.len();
        if !self.checked || count != self.header.width {
            return None;
        }
        let mut columns = vec![None; count];
        for (column, field) in self.header.map.iter().enumerate() {
            if let Some(slot) = field.and_then(|f| columns.get_mut(f)) {
                *slot = dataset.columns.get(column);
            }
        }
        let fields = (0..count).map(|i| self.field(i));
        Some(super::redact::csv_record(fields, &columns, &dataset.csv))
    }

    fn cell(&self, column: usize) -> RawCell<'_> {
        match self.header.map[column] {
            Some(field) if field < self.record().fields.len() => RawCell::Text(self.field(field)),
            _ => RawCell::Missing,
        }
    }

    fn new_columns(&self, out: &mut BTreeSet<String>) {
        out.extend(self.header.undeclared.iter().cloned());
    }

    fn extra_fields(&self, out: &mut serde_json::Map<String, serde_json::Value>) {
        let count = self.record().fields.len();
        for (field, name) in &self.header.extra {
            if *field < count {
                let text = serde_json::Value::String(self.field(*field).to_owned());
                out.insert(name.clone(), text);
            }
        }
    }
}
