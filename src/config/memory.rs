//! `worker.conversion_memory`: the memory budget of one file's conversion, and how its
//! stages share it, so that memory holds at any row size and any partition count.
//!
//! - **Rows in flight**, five sixteenths: chunks from the splitter, queued, being typed, and
//!   typed batches with their bad rows waiting for the ordered writer. A chunk closes at
//!   `batch_rows` rows or [`MemoryBudget::chunk_bytes`], whichever comes first (always
//!   with at least one row). The splitter admits a chunk only while the rows in flight
//!   fit; a chunk counts twice its allocated size until it is typed (itself and the batch
//!   it becomes), then its batch's size until written.
//! - **Parquet row groups being built**, five sixteenths: summed over every open partition
//!   writer (the writer's own `memory_size` estimate); before a batch would take the sum
//!   past it, and whenever it is past it, the largest is flushed.
//! - **The reserve**, three eighths, for what is not counted: fixed costs per file (input
//!   and decoder buffers, up to 128 MiB of zstd window for files compressed with `--long`,
//!   the splitter's one-row buffer, 8 KiB per open part file, the `unique_key` set), the
//!   batch each typing thread is building (and for JSON lines its chunk's grid: cells of
//!   at most three times the chunk, and its unescaped strings), the writer's copies of a
//!   batch per partition, and memory the allocator keeps after it was freed. Chunks are small enough for these
//!   to fit; measured, the whole `lakeworker convert` process stays within the budget
//!   (docs/benchmarks.md).

/// Bytes one file's conversion may hold, and its shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBudget {
    bytes: u64,
}

impl Default for MemoryBudget {
    /// 128 MiB, the default of `worker.conversion_memory`.
    fn default() -> Self {
        MemoryBudget::new(128 << 20)
    }
}

impl MemoryBudget {
    pub fn new(bytes: u64) -> Self {
        MemoryBudget { bytes }
    }

    /// The whole budget.
    pub fn bytes(self) -> u64 {
        self.bytes
    }

    /// Rows in flight between the splitter and the writer: five sixteenths.
    pub fn rows_in_flight(self) -> u64 {
        self.bytes / 16 * 5
    }

    /// Parquet row groups being built, over every open partition together: five sixteenths.
    pub fn row_groups(self) -> u64 {
        self.bytes / 16 * 5
    }

    /// What the shares leave for what cannot be counted: three eighths.
    pub fn reserve(self) -> u64 {
        self.bytes - self.rows_in_flight() - self.row_groups()
    }

    /// Most bytes a chunk holds before it closes: a sixty-fourth of the budget, but at
    /// least two of the longest rows (`max_row_bytes`; a CSV chunk keeps a row twice, as
    /// fields and as raw text). Small enough that what is not counted (the batches being
    /// built, the writer's copies per partition) fits in the reserve, and that several
    /// chunks fit in the rows in flight. It does not depend on the thread count, so the
    /// output (row groups, parts) does not either.
    pub fn chunk_bytes(self, max_row_bytes: usize) -> usize {
        usize::try_from(self.bytes / 64)
            .unwrap_or(usize::MAX)
            .max(max_row_bytes.saturating_mul(2))
    }

    /// The default budget, or the smallest that holds rows of the longest `max_row_bytes`
    /// when that is more: what `worker.conversion_memory` is when the config leaves it out.
    pub fn fitting(max_row_bytes: impl Iterator<Item = usize>) -> Self {
        let longest = max_row_bytes.max().unwrap_or(0);
        MemoryBudget::new(Self::default().bytes.max(Self::minimum_for(longest)))
    }

    /// The smallest budget for rows of `max_row_bytes`: 16 times it, so a chunk of the
    /// longest rows (two of them, counted twice) fits the rows in flight with room to spare.
    pub fn minimum_for(max_row_bytes: usize) -> u64 {
        16 * max_row_bytes as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_chunk_sizes() {
        let budget = MemoryBudget::default();
        assert_eq!(
            (
                budget.rows_in_flight(),
                budget.row_groups(),
                budget.reserve()
            ),
            (40 << 20, 40 << 20, 48 << 20)
        );
        assert_eq!(budget.chunk_bytes(1 << 20), 2 << 20);
        // Never less than two of the longest rows.
        assert_eq!(MemoryBudget::new(16 << 20).chunk_bytes(1 << 20), 2 << 20);
        assert_eq!(MemoryBudget::minimum_for(1 << 20), 16 << 20);
    }
}
