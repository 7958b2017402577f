//! The three-stage engine behind [`super::convert`]: one thread splits the input into
//! chunks of whole rows, worker threads type the rows of each chunk, and one thread puts
//! the typed chunks back in file order and writes them, with the rows in flight held
//! within the memory budget.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::BufRead;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use arrow::record_batch::RecordBatch;
use serde_json::Value;

use super::budget::InFlight;
use super::{
    batch, columnar, csv, jsonl, redact, BadRow, BadRowSink, BatchSink, ConvertError,
    ConvertOptions, ConvertReport, Lineage, RowError,
};
use crate::config::RESCUED_COLUMN;
use crate::domain::dataset::Dataset;
use crate::domain::records;
use crate::domain::schema::{CellError, Column, Parsed, RawCell};

/// The first stage: whole rows, in file order.
pub(super) enum Splitter<R: BufRead> {
    Csv(csv::CsvInput<R>),
    Lines(jsonl::LineSplitter<R>),
}

/// A chunk of whole rows.
enum Chunk {
    Csv(csv::CsvChunk),
    /// Cut, not yet parsed.
    CsvRaw(csv::RawCsv),
    Lines(jsonl::LineChunk),
}

impl Chunk {
    /// What it counts in the rows in flight until typed: its allocated bytes twice, for
    /// itself and for the batch it becomes.
    fn weight(&self) -> u64 {
        let allocated = match self {
            Chunk::Csv(c) => c.allocated(),
            Chunk::CsvRaw(raw) => return raw.weight(),
            Chunk::Lines(l) => l.allocated(),
        };
        2 * allocated as u64
    }
}

impl<R: BufRead> Splitter<R> {
    /// The next chunk: at most `rows` rows, closed once it holds `bytes`.
    fn next_chunk(&mut self, rows: usize, bytes: usize) -> Result<Option<Chunk>, ConvertError> {
        Ok(match self {
            Splitter::Csv(s) => s.next_chunk(rows, bytes)?.map(|piece| match piece {
                csv::CsvPiece::Raw(raw) => Chunk::CsvRaw(raw),
                csv::CsvPiece::Records(records) => Chunk::Csv(records),
            }),
            Splitter::Lines(s) => s.next_chunk(rows, bytes)?.map(Chunk::Lines),
        })
    }

    fn header(&self) -> Option<Arc<csv::HeaderMap>> {
        match self {
            Splitter::Csv(s) => Some(s.header()),
            Splitter::Lines(_) => None,
        }
    }
}

/// What the typing stage needs besides the chunk.
struct Typing<'a> {
    dataset: &'a Dataset,
    lineage: &'a Lineage,
    header: Option<Arc<csv::HeaderMap>>,
    /// Whether bad rows' raw text must be redacted.
    pii: bool,
    /// Per dataset column, whether a bad cell is rescued rather than failing its row
    /// (`on_invalid = "rescue"`, and the column is optional and no key).
    rescuable: Vec<bool>,
    /// Whether chunks are tried column by column first ([`columnar`]).
    columnar: bool,
    /// Chunks tried column by column, and how many of them needed the row path after all.
    columnar_tries: AtomicUsize,
    columnar_misses: AtomicUsize,
}

impl Typing<'_> {
    /// Whether to try the column path on the next chunk: not once most chunks of the file
    /// needed the row path anyway (dirty data would pay for both).
    fn tries_columns(&self) -> bool {
        let tries = self.columnar_tries.load(Ordering::Relaxed);
        let misses = self.columnar_misses.load(Ordering::Relaxed);
        self.columnar && (tries < 8 || misses * 2 <= tries)
    }
}

/// A bad row that can travel between threads.
struct OwnedBadRow {
    line: u64,
    byte_offset: Option<u64>,
    raw: Option<Vec<u8>>,
    errors: Vec<RowError>,
}

/// One chunk typed: a batch of its good rows, its bad rows, and how many rows it had.
struct Typed {
    batch: Option<RecordBatch>,
    bad: Vec<OwnedBadRow>,
    rows_in: u64,
    rows_rescued: u64,
    new_columns: std::collections::BTreeSet<String>,
}

impl Typed {
    /// Bytes it holds until written: the batch's buffers and the bad rows.
    fn weight(&self) -> u64 {
        let batch = self
            .batch
            .as_ref()
            .map_or(0, RecordBatch::get_array_memory_size);
        let bad: usize = self
            .bad
            .iter()
            .map(|row| {
                let reasons: usize = row.errors.iter().map(|e| e.reason.capacity()).sum();
                size_of::<OwnedBadRow>()
                    + row.raw.as_ref().map_or(0, Vec::capacity)
                    + row.errors.capacity() * size_of::<RowError>()
                    + reasons
            })
            .sum();
        (batch + bad) as u64
    }
}

impl Typing<'_> {
    /// The second stage, for one chunk: column by column when it can be, else row by
    /// row. `seen_keys` is the file's `unique_key` state.
    fn chunk(
        &self,
        chunk: &Chunk,
        seen_keys: Option<&mut HashMap<String, u64>>,
    ) -> Result<Typed, ConvertError> {
        let parsed;
        let chunk = match chunk {
            Chunk::CsvRaw(raw) => {
                parsed = Chunk::Csv(raw.parse()?);
                &parsed
            }
            other => other,
        };
        if self.tries_columns() {
            self.columnar_tries.fetch_add(1, Ordering::Relaxed);
            let typed = match (chunk, &self.header) {
                (Chunk::Csv(c), Some(header)) => {
                    columnar::csv_chunk(c, header, self.dataset, self.lineage)?
                        .map(|batch| (batch, header.undeclared().iter().cloned().collect()))
                }
                (Chunk::Lines(l), _) => columnar::json_chunk(l, self.dataset, self.lineage)?,
                // Never made (a CSV splitter has a header, a raw chunk was parsed above);
                // the row path reports it.
                (Chunk::Csv(_), None) | (Chunk::CsvRaw(_), _) => None,
            };
            match typed {
                Some((batch, new_columns)) => {
                    return Ok(Typed {
                        rows_in: batch.num_rows() as u64,
                        // A cut chunk can have no rows (a byte order mark and a line end
                        // at the start of a file without a header row).
                        batch: (batch.num_rows() > 0).then_some(batch),
                        bad: Vec::new(),
                        rows_rescued: 0,
                        new_columns,
                    });
                }
                None => self.columnar_misses.fetch_add(1, Ordering::Relaxed),
            };
        }
        match (chunk, &self.header) {
            (Chunk::Csv(c), Some(header)) => self.rows(
                csv::CsvChunkRows::new(c, header, self.dataset),
                c.len(),
                seen_keys,
            ),
            (Chunk::Lines(l), _) => self.rows(
                jsonl::JsonChunkRows::new(l, self.dataset),
                l.len(),
                seen_keys,
            ),
            (Chunk::Csv(_), None) | (Chunk::CsvRaw(_), _) => {
                Err(ConvertError::Write("a CSV chunk without a header".into()))
            }
        }
    }

    fn rows<S: RowSource>(
        &self,
        mut rows: S,
        capacity: usize,
        mut seen_keys: Option<&mut HashMap<String, u64>>,
    ) -> Result<Typed, ConvertError> {
        let dataset = self.dataset;
        let mut builder = batch::BatchBuilder::new(dataset, self.lineage, capacity);
        let mut parsed = vec![Parsed::Null; dataset.columns.len()];
        let mut typed = Typed {
            batch: None,
            bad: Vec::new(),
            rows_in: 0,
            rows_rescued: 0,
            new_columns: Default::default(),
        };
        let mut errors: Vec<RowError> = Vec::new();
        // Bad cells of rescuable columns: into `_rescued`, or listed with the row's other
        // problems if it is quarantined after all.
        let mut rescued: Vec<batch::RescuedCell> = Vec::new();
        while let Some(check) = rows.next_row()? {
            typed.rows_in += 1;
            let mut rescued_text = None;
            let line = rows.line();
            match check {
                RowCheck::Bad { rule, reason } => errors.push(RowError {
                    line,
                    column: None,
                    rule,
                    reason,
                }),
                RowCheck::Ok => {
                    for (i, column) in dataset.columns.iter().enumerate() {
                        if let Err(e) = column.parse_into(rows.cell(i), &mut parsed[i]) {
                            if self.rescuable[i] {
                                parsed[i] = Parsed::Null;
                                rescued.push((i, e));
                            } else {
                                errors.push(cell_error(line, column, &e));
                            }
                        }
                    }
                    if errors.is_empty() {
                        rescued_text = builder.rescued(&rows, &rescued);
                    }
                    // DynamoDB's limits, once the cells are typed: such a row is bad before
                    // anything is published. The item holds `_rescued` too.
                    if let (true, Some(target)) = (errors.is_empty(), &dataset.records) {
                        let rescued_bytes = rescued_text
                            .as_ref()
                            .map_or(0, |text| RESCUED_COLUMN.len() + text.len());
                        let problems = records::item_problems(
                            dataset,
                            target.key_index,
                            &parsed,
                            |i| rows.cell(i),
                            rescued_bytes,
                        );
                        errors.extend(problems.into_iter().map(|p| RowError {
                            line,
                            column: p.column.map(|i| dataset.columns[i].name.clone()),
                            rule: p.rule,
                            reason: p.reason,
                        }));
                    }
                    if let (true, Some(seen)) = (errors.is_empty(), seen_keys.as_deref_mut()) {
                        if let Some(first) = check_unique(&rows, dataset, seen, line) {
                            errors.push(RowError {
                                line,
                                column: None,
                                rule: "unique_key",
                                reason: format!("duplicate key; first seen at line {first}"),
                            });
                        }
                    }
                }
            }
            if errors.is_empty() {
                typed.rows_rescued += u64::from(rescued_text.is_some());
                builder.append(&parsed, &rows, rescued_text);
            } else {
                let columns = &dataset.columns;
                errors.extend(
                    rescued
                        .iter()
                        .map(|(i, e)| cell_error(line, &columns[*i], e)),
                );
                let raw = if self.pii {
                    rows.redacted_raw(dataset)
                } else {
                    Some(rows.raw().to_vec())
                };
                typed.bad.push(OwnedBadRow {
                    line,
                    byte_offset: rows.byte_offset(),
                    raw,
                    errors: std::mem::take(&mut errors),
                });
            }
            rescued.clear();
        }
        if builder.len() > 0 {
            typed.batch = Some(builder.finish()?);
        }
        rows.new_columns(&mut typed.new_columns);
        Ok(typed)
    }
}

/// The third stage: typed chunks, written in file order.
struct Writer<'s, S, B> {
    sink: &'s mut S,
    bad_rows: &'s mut B,
    report: ConvertReport,
    next: u64,
    /// Typed chunks that came early, with their weight in the rows in flight.
    waiting: BTreeMap<u64, (Typed, u64)>,
    /// Where written chunks free their weight, when the stages run on several threads.
    in_flight: Option<&'s InFlight>,
}

impl<'s, S: BatchSink, B: BadRowSink> Writer<'s, S, B> {
    fn new(sink: &'s mut S, bad_rows: &'s mut B, in_flight: Option<&'s InFlight>) -> Self {
        Writer {
            sink,
            bad_rows,
            report: ConvertReport::default(),
            next: 0,
            waiting: BTreeMap::new(),
            in_flight,
        }
    }

    /// Takes chunk `seq` (weighing `weight` in the rows in flight); writes every chunk that
    /// is next in order.
    fn accept(&mut self, seq: u64, typed: Typed, weight: u64) -> Result<(), ConvertError> {
        self.waiting.insert(seq, (typed, weight));
        while let Some((typed, weight)) = self.waiting.remove(&self.next) {
            self.next += 1;
            self.report.rows_in += typed.rows_in;
            self.report.rows_rescued += typed.rows_rescued;
            for name in typed.new_columns {
                if self.report.new_columns.len() >= super::report::MAX_NEW_COLUMNS {
                    break;
                }
                self.report.new_columns.insert(name);
            }
            for bad in &typed.bad {
                self.report.reject(&bad.errors);
                self.bad_rows.bad_row(&BadRow {
                    line: bad.line,
                    byte_offset: bad.byte_offset,
                    raw: bad.raw.as_deref(),
                    errors: &bad.errors,
                })?;
            }
            if let Some(batch) = typed.batch {
                self.report.rows_written += batch.num_rows() as u64;
                self.sink.write(&batch)?;
            }
            if let Some(in_flight) = self.in_flight {
                in_flight.release(weight);
            }
        }
        Ok(())
    }
}

/// Closes the rows in flight when dropped (always, or only while panicking): a later stage
/// is gone, so the splitter must not wait for room that will never be freed.
struct CloseOnDrop<'a> {
    in_flight: &'a InFlight,
    always: bool,
}

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        if self.always || std::thread::panicking() {
            self.in_flight.close();
        }
    }
}

/// Runs the three stages, on one thread or on several, within `options.memory`: chunks
/// close at `batch_rows` rows or the budget's chunk size, and on several threads the
/// splitter waits while the rows in flight fill their share (see [`MemoryBudget`]).
pub(super) fn drive<R, S, B>(
    mut splitter: Splitter<R>,
    dataset: &Dataset,
    lineage: &Lineage,
    options: ConvertOptions,
    sink: &mut S,
    bad_rows: &mut B,
) -> Result<ConvertReport, ConvertError>
where
    R: BufRead,
    S: BatchSink + Send,
    B: BadRowSink + Send,
{
    let typing = Typing {
        dataset,
        lineage,
        header: splitter.header(),
        pii: redact::has_pii(dataset),
        rescuable: (0..dataset.columns.len())
            .map(|i| dataset.rescues_bad_cells_of(i))
            .collect(),
        columnar: columnar::applies(dataset, splitter.header().as_deref()),
        columnar_tries: AtomicUsize::new(0),
        columnar_misses: AtomicUsize::new(0),
    };
    let rows = options.batch_rows.max(1);
    let threads = if dataset.policy.unique_key.is_empty() {
        options.threads.max(1)
    } else {
        1
    };
    let chunk_bytes = options.memory.chunk_bytes(dataset.policy.max_row_bytes);
    // The first two chunks, read ahead: an input of one chunk (most small files) is typed
    // on this thread, since the stages' threads would cost it more than its rows do.
    let mut ahead = VecDeque::new();
    if threads > 1 {
        ahead.extend(splitter.next_chunk(rows, chunk_bytes)?);
        ahead.extend(splitter.next_chunk(rows, chunk_bytes)?);
    }
    let one_chunk = ahead.len() < 2;
    let mut next_chunk = |splitter: &mut Splitter<R>| match ahead.pop_front() {
        Some(chunk) => Ok(Some(chunk)),
        None => splitter.next_chunk(rows, chunk_bytes),
    };
    if threads == 1 || one_chunk {
        let mut seen = HashMap::new();
        let mut writer = Writer::new(sink, bad_rows, None);
        let mut seq = 0;
        while let Some(chunk) = next_chunk(&mut splitter)? {
            let keys = (!dataset.policy.unique_key.is_empty()).then_some(&mut seen);
            writer.accept(seq, typing.chunk(&chunk, keys)?, 0)?;
            seq += 1;
        }
        return Ok(writer.report);
    }

    let in_flight = InFlight::new(options.memory.rows_in_flight());
    std::thread::scope(|scope| {
        // Chunks carry their weight in the rows in flight; the channels bound their count.
        let (work, chunks) = mpsc::sync_channel::<(u64, Chunk, u64)>(threads * 2);
        let (done, results) =
            mpsc::sync_channel::<Result<(u64, Typed, u64), ConvertError>>(threads * 2);
        // Shared by the typing threads; it is dropped with the last of them, which makes
        // the splitter's next send fail if they all stop early.
        let chunks = Arc::new(Mutex::new(chunks));
        for _ in 0..threads {
            let (chunks, done, typing) = (chunks.clone(), done.clone(), &typing);
            let in_flight = &in_flight;
            scope.spawn(move || {
                let _closes = CloseOnDrop {
                    in_flight,
                    always: false,
                };
                loop {
                    let next = match chunks.lock() {
                        Ok(receiver) => receiver.recv(),
                        Err(_) => break,
                    };
                    let Ok((seq, chunk, weight)) = next else {
                        break;
                    };
                    let typed = typing.chunk(&chunk, None);
                    drop(chunk);
                    let typed = typed.map(|typed| {
                        let typed_weight = typed.weight();
                        in_flight.exchange(weight, typed_weight);
                        (seq, typed, typed_weight)
                    });
                    if typed.is_err() {
                        in_flight.release(weight);
                    }
                    if done.send(typed).is_err() {
                        break;
                    }
                }
            });
        }
        drop((chunks, done));
        let in_flight = &in_flight;
        let writer = scope.spawn(move || {
            let _closes = CloseOnDrop {
                in_flight,
                always: true,
            };
            let mut writer = Writer::new(sink, bad_rows, Some(in_flight));
            for result in results {
                let (seq, typed, weight) = result?;
                writer.accept(seq, typed, weight)?;
            }
            Ok::<_, ConvertError>(writer.report)
        });
        let mut split = Ok(());
        let mut seq = 0;
        loop {
            match next_chunk(&mut splitter) {
                Ok(Some(chunk)) => {
                    let weight = chunk.weight();
                    // Waits for room; refused once a later stage has stopped.
                    if !in_flight.admit(weight) || work.send((seq, chunk, weight)).is_err() {
                        break; // a later stage failed; its error is reported below
                    }
                    seq += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    split = Err(e);
                    break;
                }
            }
        }
        drop(work);
        let written = writer
            .join()
            .map_err(|_| ConvertError::Write("the writing thread panicked".into()))?;
        split.and(written)
    })
}

/// Whether the source itself could read the row.
pub(crate) enum RowCheck {
    Ok,
    Bad { rule: &'static str, reason: String },
}

impl RowCheck {
    pub(crate) fn bad(rule: &'static str, reason: String) -> RowCheck {
        RowCheck::Bad { rule, reason }
    }
}

/// Rows of a chunk, one at a time, with their cells looked up by dataset column index.
pub(crate) trait RowSource {
    /// Advances to the next row.
    fn next_row(&mut self) -> Result<Option<RowCheck>, ConvertError>;
    /// The current row's line number.
    fn line(&self) -> u64;
    fn byte_offset(&self) -> Option<u64>;
    /// The current row as it appeared in the input (at most `max_row_bytes`).
    fn raw(&self) -> &[u8];
    /// The current row with the values of `pii` columns replaced by their stand-ins, or
    /// `None` when it cannot be split into its columns with certainty.
    fn redacted_raw(&self, dataset: &Dataset) -> Option<Vec<u8>>;
    /// The current row's cell for dataset column `column`.
    fn cell(&self, column: usize) -> RawCell<'_>;
    /// Adds the undeclared column names seen so far in the chunk (CSV: the header's) to
    /// `out`.
    fn new_columns(&self, out: &mut std::collections::BTreeSet<String>);
    /// Adds the current row's undeclared fields to `out` (`on_new_columns = "keep"` or
    /// `"rescue"`): CSV fields as strings, JSON values as they are.
    fn extra_fields(&self, out: &mut serde_json::Map<String, Value>);
}

/// A bad cell as a row problem.
fn cell_error(line: u64, column: &Column, error: &CellError) -> RowError {
    RowError {
        line,
        column: Some(column.name.clone()),
        rule: error.rule(),
        reason: error.to_string(),
    }
}

/// Records the row's key; returns the line of an earlier row with the same key.
fn check_unique<S: RowSource>(
    rows: &S,
    dataset: &Dataset,
    seen: &mut HashMap<String, u64>,
    line: u64,
) -> Option<u64> {
    let mut key = String::new();
    for (n, index) in dataset.policy.unique_key.iter().enumerate() {
        if n > 0 {
            key.push('\u{1f}');
        }
        match rows.cell(*index) {
            RawCell::Text(text) => key.push_str(text),
            RawCell::Json(Value::String(text)) => key.push_str(text),
            RawCell::Json(other) => key.push_str(&other.to_string()),
            RawCell::Missing => {}
        }
    }
    match seen.entry(key) {
        std::collections::hash_map::Entry::Occupied(first) => Some(*first.get()),
        std::collections::hash_map::Entry::Vacant(slot) => {
            slot.insert(line);
            None
        }
    }
}
