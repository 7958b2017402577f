//! A Parquet file writer that encodes a batch's columns on several threads.
//!
//! The parquet crate's `ArrowWriter` encodes and compresses every column of a row group
//! on the calling thread, which makes the writing stage of a conversion one thread however
//! many cores there are. [`ParquetWriter`] keeps one column writer per column, as
//! `ArrowWriter` does, but hands the columns of a batch (and the closing of a row group,
//! which compresses the last pages) to up to `threads` threads, grouped so each thread gets
//! about the same bytes. The file is the same: the columns' chunks are appended to the row
//! group in schema order, and the row groups are cut at the same row count.

use std::io::Write;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_writer::{
    compute_leaves, ArrowColumnWriter, ArrowLeafColumn, ArrowRowGroupWriterFactory,
};
use parquet::arrow::ArrowWriter;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;

/// Below this many bytes a batch is encoded, or a row group closed, on the calling thread:
/// starting threads would cost more than they save.
const PARALLEL_MIN_BYTES: usize = 512 * 1024;

/// One Parquet file being written, row group by row group.
pub struct ParquetWriter<W: Write + Send> {
    file: SerializedFileWriter<W>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    /// The open row group's column writers, one per leaf column.
    columns: Option<Vec<ArrowColumnWriter>>,
    buffered_rows: usize,
    max_rows: usize,
    threads: usize,
}

impl<W: Write + Send> ParquetWriter<W> {
    /// A writer of `schema` with `props` (as `ArrowWriter` would write it, Arrow schema
    /// metadata included) encoding on up to `threads` threads.
    pub fn try_new(
        out: W,
        schema: SchemaRef,
        props: WriterProperties,
        threads: usize,
    ) -> Result<Self, ParquetError> {
        // What ArrowWriter would do and this one does not: refused rather than ignored.
        if props.max_row_group_bytes().is_some() || props.content_defined_chunking().is_some() {
            return Err(ParquetError::General(
                "row groups cut by bytes and content-defined chunking are not supported".into(),
            ));
        }
        let max_rows = props.max_row_group_row_count().unwrap_or(usize::MAX).max(1);
        let (file, factory) =
            ArrowWriter::try_new(out, schema.clone(), Some(props))?.into_serialized_writer()?;
        Ok(ParquetWriter {
            file,
            factory,
            schema,
            columns: None,
            buffered_rows: 0,
            max_rows,
            threads: threads.max(1),
        })
    }

    /// Bytes the open row group holds (the column writers' estimate).
    pub fn memory_size(&self) -> usize {
        self.columns
            .as_ref()
            .map_or(0, |c| c.iter().map(ArrowColumnWriter::memory_size).sum())
    }

    /// Bytes of finished row groups written to the output so far.
    pub fn bytes_written(&self) -> usize {
        self.file.bytes_written()
    }

    /// Adds the batch's rows, starting a new row group whenever one reaches the row limit.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ParquetError> {
        let mut rest = batch.clone();
        while rest.num_rows() > 0 {
            let room = self.max_rows - self.buffered_rows;
            let now = rest.slice(0, room.min(rest.num_rows()));
            rest = rest.slice(now.num_rows(), rest.num_rows() - now.num_rows());
            self.write_rows(&now)?;
            if self.buffered_rows >= self.max_rows {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn write_rows(&mut self, batch: &RecordBatch) -> Result<(), ParquetError> {
        let columns = match &mut self.columns {
            Some(columns) => columns,
            empty => {
                let index = self.file.flushed_row_groups().len();
                empty.insert(self.factory.create_column_writers(index)?)
            }
        };
        let mut leaves = Vec::with_capacity(columns.len());
        for (field, array) in self.schema.fields().iter().zip(batch.columns()) {
            leaves.extend(compute_leaves(field, array)?);
        }
        if leaves.len() != columns.len() {
            return Err(ParquetError::General(format!(
                "the batch has {} leaf columns, the file {}",
                leaves.len(),
                columns.len()
            )));
        }
        let threads = if batch.get_array_memory_size() < PARALLEL_MIN_BYTES {
            1
        } else {
            self.threads
        };
        let sizes: Vec<usize> = batch
            .columns()
            .iter()
            .map(|a| a.get_array_memory_size())
            .collect();
        let work: Vec<(&mut ArrowColumnWriter, ArrowLeafColumn)> =
            columns.iter_mut().zip(leaves).collect();
        // Leaf columns are the batch's columns here (no nested types), so their array
        // sizes weigh them; with nested types the weights are merely less even.
        let weights = (0..work.len())
            .map(|i| sizes.get(i).copied().unwrap_or(1))
            .collect();
        in_groups(work, weights, threads, |(writer, leaf)| writer.write(&leaf))?;
        self.buffered_rows += batch.num_rows();
        Ok(())
    }

    /// Finishes the open row group (if any) and writes it to the output.
    pub fn flush(&mut self) -> Result<(), ParquetError> {
        let Some(columns) = self.columns.take() else {
            return Ok(());
        };
        self.buffered_rows = 0;
        let weights: Vec<usize> = columns.iter().map(ArrowColumnWriter::memory_size).collect();
        let threads = if weights.iter().sum::<usize>() < PARALLEL_MIN_BYTES {
            1
        } else {
            self.threads
        };
        let work: Vec<(usize, ArrowColumnWriter)> = columns.into_iter().enumerate().collect();
        let mut chunks = in_groups(work, weights, threads, |(i, writer)| {
            writer.close().map(|chunk| (i, chunk))
        })?;
        chunks.sort_by_key(|(i, _)| *i);
        let mut row_group = self.file.next_row_group()?;
        for (_, chunk) in chunks {
            chunk.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
        Ok(())
    }

    /// Finishes the open row group and the file.
    pub fn close(mut self) -> Result<(), ParquetError> {
        self.flush()?;
        self.file.close()?;
        Ok(())
    }
}

/// Runs `job` on every item, on up to `threads` threads (the calling thread among them),
/// with the items grouped so each thread's summed `weights` are about equal (largest
/// first, each to the lightest group). Returns the results in no particular order; the
/// first error wins.
fn in_groups<T: Send, R: Send>(
    items: Vec<T>,
    weights: Vec<usize>,
    threads: usize,
    job: impl Fn(T) -> Result<R, ParquetError> + Sync,
) -> Result<Vec<R>, ParquetError> {
    let threads = threads.min(items.len()).max(1);
    if threads == 1 {
        return items.into_iter().map(job).collect();
    }
    let mut order: Vec<(usize, T)> = weights.into_iter().zip(items).collect();
    order.sort_by_key(|(weight, _)| std::cmp::Reverse(*weight));
    let mut groups: Vec<(usize, Vec<T>)> = (0..threads).map(|_| (0, Vec::new())).collect();
    for (weight, item) in order {
        if let Some(lightest) = groups.iter_mut().min_by_key(|(total, _)| *total) {
            lightest.0 += weight.max(1);
            lightest.1.push(item);
        }
    }
    let mut groups = groups.into_iter().map(|(_, items)| items);
    let here = groups.next().unwrap_or_default();
    let job = &job;
    let run = move |items: Vec<T>| items.into_iter().map(job).collect::<Result<Vec<R>, _>>();
    std::thread::scope(|scope| {
        let others: Vec<_> = groups
            .map(|items| scope.spawn(move || run(items)))
            .collect();
        let mut results = run(here);
        for handle in others {
            // A panic in an encoder is the caller's panic, as it would be on one thread.
            let theirs = handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            results = match (results, theirs) {
                (Ok(mut mine), Ok(more)) => {
                    mine.extend(more);
                    Ok(mine)
                }
                (Err(e), _) | (_, Err(e)) => Err(e),
            };
        }
        results
    })
}
