//! Cutting CSV input into chunks of whole records without parsing their fields, so the
//! parsing (csv_core, the costliest part of reading) runs on the typing threads instead
//! of the one thread that reads the input.
//!
//! [`find_cut`] looks at 64 bytes at a time: it finds the quote, delimiter and line-end
//! bytes as bit masks, takes a byte as quoted when an odd number of quotes precede it in
//! its chunk (a prefix XOR), and cuts after a `\n` that is not quoted. With doubled quotes
//! inside quoted fields and no escape or comment byte ([`Dialect::of`]), that is what
//! csv_core reads as long as every quote that opens a quoted run starts a field (follows a
//! delimiter, a line end or a closing quote, the last being a doubled quote). Text after a
//! closing quote (`"ab"c`) is unquoted to both. A quote inside an unquoted field (`ab"c`)
//! is text to csv_core but would open a quoted run in the model, so no cut is made past it
//! and the splitter reads the rest of the file record by record ([`Cut::Irregular`]). Each
//! cut is made where csv_core is at the start of a record, so a fresh reader started there
//! reads what one reader over the whole input would (line numbers and byte offsets carried
//! over).

use crate::domain::dataset::CsvOptions;

/// What the cut model needs of a CSV dialect.
#[derive(Debug, Clone, Copy)]
pub(in crate::convert) struct Dialect {
    quote: Option<u8>,
    delimiter: u8,
}

impl Dialect {
    /// The dialect if records can be cut without parsing: no escape byte (quotes inside
    /// quoted fields are doubled), no comment byte, and an ASCII delimiter and quote that
    /// are neither line-end bytes nor each other.
    pub(in crate::convert) fn of(options: &CsvOptions) -> Option<Dialect> {
        let line_end = |b: u8| b == b'\n' || b == b'\r';
        // ASCII: a byte order mark's bytes (which csv_core drops at the very start of its
        // input only) would otherwise be able to change the quotes.
        let quote_ok = options
            .quote
            .is_none_or(|q| q.is_ascii() && !line_end(q) && q != options.delimiter);
        (options.escape.is_none()
            && options.comment.is_none()
            && options.delimiter.is_ascii()
            && !line_end(options.delimiter)
            && quote_ok)
            .then_some(Dialect {
                quote: options.quote,
                delimiter: options.delimiter,
            })
    }
}

/// A run of whole records at the start of the input: its length, and counts that size the
/// buffers it is parsed into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::convert) struct Span {
    pub(in crate::convert) end: usize,
    /// Its `\n` bytes (csv_core's line count).
    pub(in crate::convert) lines: u64,
    /// Records that end in it.
    pub(in crate::convert) records: usize,
    /// Delimiters and line ends in it (quoted ones too): at least its fields, but one.
    pub(in crate::convert) separators: usize,
}

impl Span {
    /// About what its records take parsed (field bytes, raw text, field ends, records):
    /// what the record reader measures its chunks by.
    pub(in crate::convert) fn parsed_bytes(&self) -> usize {
        2 * self.end
            + self.separators * size_of::<usize>()
            + self.records * size_of::<super::Record>()
    }
}

/// Where to cut a run of input that starts at a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::convert) enum Cut {
    At(Span),
    /// No cut in the bytes given (no record has ended, or they are short of
    /// `max_parsed`); the span is all of them.
    None(Span),
    /// A quote breaks the model (see the module doc): `before` is the last cut before it.
    Irregular {
        before: Option<Span>,
    },
}

/// Where to cut `bytes` (which start at a record): after the last unquoted `\n` once the
/// blocks scanned would take `max_parsed` bytes parsed ([`Span::parsed_bytes`]), or after
/// the `max_records`-th record, whichever comes
/// first. Only after a record: blank lines alone are no chunk. (A record ended by a lone
/// `\r` is cut after the next `\n`, which can put more than `max_records` records before
/// a cut that has no other.)
pub(in crate::convert) fn find_cut(
    bytes: &[u8],
    dialect: Dialect,
    max_parsed: usize,
    max_records: usize,
) -> Cut {
    let mut state = Carry::default();
    // What the blocks before the current one hold.
    let mut before = Span {
        end: 0,
        lines: 0,
        records: 0,
        separators: 0,
    };
    let mut last = None;
    for block in bytes.chunks(64) {
        let masks = Masks::of(block, dialect);
        let found = state.advance(&masks);
        let separators = masks.delimiter | masks.newline | masks.carriage_return;
        let mut cuts = found.cuts;
        while cuts != 0 {
            let bit = cuts.trailing_zeros();
            let upto = |mask: u64| (mask & through(bit)).count_ones() as usize;
            let here = Span {
                end: before.end + bit as usize + 1,
                lines: before.lines + upto(masks.newline) as u64,
                records: before.records + upto(found.record_ends),
                separators: before.separators + upto(separators),
            };
            // Past the limit (only where a lone `\r` ended a record): the cut before, if any.
            if here.records > max_records {
                return Cut::At(last.unwrap_or(here));
            }
            if here.records == max_records {
                return Cut::At(here);
            }
            if here.records > 0 {
                last = Some(here);
            }
            cuts &= cuts - 1;
        }
        if found.irregular {
            return Cut::Irregular { before: last };
        }
        before = Span {
            end: before.end + block.len(),
            lines: before.lines + u64::from(masks.newline.count_ones()),
            records: before.records + found.record_ends.count_ones() as usize,
            separators: before.separators + separators.count_ones() as usize,
        };
        if before.parsed_bytes() >= max_parsed {
            if let Some(span) = last {
                return Cut::At(span);
            }
        }
    }
    Cut::None(before)
}

/// The bits up to and including `bit`.
fn through(bit: u32) -> u64 {
    u64::MAX >> (63 - bit)
}

/// One block's bytes of each kind, bit `i` for byte `i` (none past the block's end).
#[derive(Debug, Default)]
struct Masks {
    quote: u64,
    delimiter: u64,
    newline: u64,
    carriage_return: u64,
}

impl Masks {
    fn of(block: &[u8], dialect: Dialect) -> Masks {
        let mut padded = [0u8; 64];
        let bytes: &[u8; 64] = match block.try_into() {
            Ok(whole) => whole,
            Err(_) => {
                padded[..block.len()].copy_from_slice(block);
                &padded
            }
        };
        let valid = u64::MAX >> (64 - block.len());
        Masks {
            quote: dialect.quote.map_or(0, |q| eq_mask(bytes, q) & valid),
            delimiter: eq_mask(bytes, dialect.delimiter) & valid,
            newline: eq_mask(bytes, b'\n') & valid,
            carriage_return: eq_mask(bytes, b'\r') & valid,
        }
    }
}

/// What one block leaves the next.
#[derive(Debug, Clone, Copy)]
struct Carry {
    /// All ones if the block ended inside quotes.
    inside: u64,
    /// 1 if the block's last byte lets a quote after it open a field.
    opens_after: u64,
    /// 1 if the block's last byte is a line end.
    line_ended: u64,
}

impl Default for Carry {
    /// At the start of a record.
    fn default() -> Self {
        Carry {
            inside: 0,
            opens_after: 1,
            line_ended: 1,
        }
    }
}

/// What the model finds in one block.
struct Block {
    /// Unquoted `\n` bytes before any irregular quote.
    cuts: u64,
    /// Where records end: unquoted line ends after something other than a line end (or
    /// the chunk's start), since csv_core skips blank lines and reads `\r\n` as one end.
    record_ends: u64,
    irregular: bool,
}

impl Carry {
    fn advance(&mut self, m: &Masks) -> Block {
        let line_end = m.newline | m.carriage_return;
        // Bit i set: byte i is quoted (an opening quote counts as quoted, a closing one not).
        let inside = prefix_xor(m.quote) ^ self.inside;
        let opens = m.quote & inside;
        let closes = m.quote & !inside;
        let before_open = m.delimiter | line_end | closes;
        // Quotes that open a quoted run but do not start a field: the byte before is no
        // delimiter, line end or closing quote (`"a""b"`: the third quote follows the
        // second, a closing one, so it opens again, as csv_core reads a doubled quote).
        // In `x,ab"c` the quote follows `b`: bad. Text after a closing quote (`"ab"c`)
        // needs no check: csv_core reads it as unquoted, as the model does.
        let bad = opens & !((before_open << 1) | self.opens_after);
        self.inside = ((inside as i64) >> 63) as u64;
        self.opens_after = before_open >> 63;
        let record_ends = line_end & !inside & !((line_end << 1) | self.line_ended);
        self.line_ended = line_end >> 63;
        let mut cuts = m.newline & !inside;
        if bad != 0 {
            cuts &= (1u64 << bad.trailing_zeros()).wrapping_sub(1);
        }
        Block {
            cuts,
            record_ends,
            irregular: bad != 0,
        }
    }
}

/// Bit i of the result is the XOR of bits 0..=i of `x`.
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// Bit i set where `block[i] == byte`.
#[cfg(target_arch = "x86_64")]
fn eq_mask(block: &[u8; 64], byte: u8) -> u64 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
    };
    let mut mask = 0;
    // SAFETY: SSE2 is part of every x86_64 CPU; each load reads 16 of the block's 64
    // bytes, unaligned loads being allowed.
    unsafe {
        let needle = _mm_set1_epi8(byte as i8);
        for k in 0..4 {
            let v = _mm_loadu_si128(block.as_ptr().add(16 * k).cast::<__m128i>());
            let bits = _mm_movemask_epi8(_mm_cmpeq_epi8(v, needle)) as u16;
            mask |= u64::from(bits) << (16 * k);
        }
    }
    mask
}

#[cfg(not(target_arch = "x86_64"))]
fn eq_mask(block: &[u8; 64], byte: u8) -> u64 {
    eq_mask_portable(block, byte)
}

#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn eq_mask_portable(block: &[u8; 64], byte: u8) -> u64 {
    block
        .iter()
        .enumerate()
        .fold(0, |mask, (i, &b)| mask | (u64::from(b == byte) << i))
}

#[cfg(test)]
mod tests;
