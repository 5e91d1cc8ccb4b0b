//! [`TopNState`]: the first N rows of each partition, ordered by the query's `ORDER BY`.
//! Rows are kept in Arrow's row format (the sort key, compared as bytes, and the whole row,
//! turned back into columns when a rank is emitted); a row that ties with a kept one ranks
//! after it, as the later arrival.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt32Array, UInt64Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::common::Result;
use datafusion::physical_expr::{PhysicalExprRef, PhysicalSortExpr};

use crate::stream::ByteKeys;

/// A kept row: its sort key, and the row itself once stored.
struct Entry {
    sort: Box<[u8]>,
    row: Stored,
}

enum Stored {
    Held(OwnedRow),
    /// Row `n` of the batch being taken in.
    New(u32),
}

/// The kept rows of every partition, and how to turn rows into bytes and back.
pub struct TopNState {
    partition_by: Vec<PhysicalExprRef>,
    order_by: Vec<PhysicalSortExpr>,
    limit: usize,
    /// The input's schema, and the output's: the input's columns and the rank.
    input: SchemaRef,
    output: SchemaRef,
    partitions: ByteKeys,
    partition_keys: Option<RowConverter>,
    sort_keys: RowConverter,
    rows: RowConverter,
    /// The kept rows of each partition id, best first.
    kept: Vec<Vec<Entry>>,
    kept_rows: usize,
    bytes: usize,
}

impl TopNState {
    pub fn try_new(
        partition_by: Vec<PhysicalExprRef>,
        order_by: Vec<PhysicalSortExpr>,
        limit: usize,
        input: SchemaRef,
        output: SchemaRef,
    ) -> Result<Self> {
        let partition_keys = match partition_by.is_empty() {
            true => None,
            false => Some(RowConverter::new(
                partition_by
                    .iter()
                    .map(|e| Ok(SortField::new(e.data_type(&input)?)))
                    .collect::<Result<_>>()?,
            )?),
        };
        let sort_keys = RowConverter::new(
            order_by
                .iter()
                .map(|e| {
                    Ok(SortField::new_with_options(
                        e.expr.data_type(&input)?,
                        e.options,
                    ))
                })
                .collect::<Result<_>>()?,
        )?;
        let rows = RowConverter::new(
            input
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )?;
        Ok(Self {
            partition_by,
            order_by,
            limit,
            input,
            output,
            partitions: ByteKeys::default(),
            partition_keys,
            sort_keys,
            rows,
            kept: Vec::new(),
            kept_rows: 0,
            bytes: 0,
        })
    }

    /// Takes in `batch`; returns the rows of every rank it changed, with their ranks.
    pub fn take(&mut self, batch: &RecordBatch) -> Result<Option<RecordBatch>> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(None);
        }
        let evaluate = |exprs: &mut dyn Iterator<Item = &PhysicalExprRef>| {
            exprs
                .map(|e| e.evaluate(batch).and_then(|v| v.into_array(n)))
                .collect::<Result<Vec<ArrayRef>>>()
        };
        let sort_keys = self
            .sort_keys
            .convert_columns(&evaluate(&mut self.order_by.iter().map(|e| &e.expr))?)?;
        let partition_keys = match &self.partition_keys {
            Some(converter) => {
                Some(converter.convert_columns(&evaluate(&mut self.partition_by.iter())?)?)
            }
            None => None,
        };
        // The first rank changed in each partition changed.
        let mut first_changed: HashMap<u32, usize> = HashMap::new();
        for row in 0..n {
            let partition = match &partition_keys {
                Some(keys) => self.partitions.intern(keys.row(row).as_ref())?,
                None => 0,
            };
            if self.kept.len() <= partition as usize {
                self.kept.resize_with(partition as usize + 1, Vec::new);
            }
            let kept = &mut self.kept[partition as usize];
            let sort = sort_keys.row(row);
            let sort = sort.as_ref();
            if kept.len() == self.limit && kept.last().is_some_and(|worst| *worst.sort <= *sort) {
                continue;
            }
            let rank = kept.partition_point(|entry| *entry.sort <= *sort);
            kept.insert(
                rank,
                Entry {
                    sort: sort.into(),
                    row: Stored::New(row as u32),
                },
            );
            if kept.len() > self.limit
                && let Some(Entry {
                    sort,
                    row: Stored::Held(row),
                }) = kept.pop()
            {
                self.bytes -= entry_bytes(&sort, &row);
                self.kept_rows -= 1;
            }
            first_changed
                .entry(partition)
                .and_modify(|first| *first = (*first).min(rank))
                .or_insert(rank);
        }
        if first_changed.is_empty() {
            return Ok(None);
        }
        let mut changed: Vec<(u32, usize)> = first_changed.into_iter().collect();
        changed.sort_unstable();
        self.store_new_rows(batch, &changed)?;
        self.emit(&changed).map(Some)
    }

    /// Turns the rows of `batch` that are now kept into rows of their own.
    fn store_new_rows(&mut self, batch: &RecordBatch, changed: &[(u32, usize)]) -> Result<()> {
        let mut new_rows: Vec<u32> = Vec::new();
        for &(partition, _) in changed {
            for entry in &self.kept[partition as usize] {
                if let Stored::New(row) = entry.row {
                    new_rows.push(row);
                }
            }
        }
        let taken = take_record_batch(batch, &UInt32Array::from(new_rows))?;
        let converted = self.rows.convert_columns(taken.columns())?;
        let mut next = 0;
        for &(partition, _) in changed {
            for entry in &mut self.kept[partition as usize] {
                if let Stored::New(_) = entry.row {
                    let row = converted.row(next).owned();
                    self.bytes += entry_bytes(&entry.sort, &row);
                    self.kept_rows += 1;
                    entry.row = Stored::Held(row);
                    next += 1;
                }
            }
        }
        Ok(())
    }

    /// The rows of each changed partition from its first changed rank on, with ranks.
    fn emit(&self, changed: &[(u32, usize)]) -> Result<RecordBatch> {
        let mut rows = Vec::new();
        let mut ranks: Vec<u64> = Vec::new();
        for &(partition, first) in changed {
            for (rank, entry) in self.kept[partition as usize].iter().enumerate().skip(first) {
                if let Stored::Held(row) = &entry.row {
                    rows.push(row.row());
                    ranks.push(rank as u64 + 1);
                }
            }
        }
        let mut columns = self.rows.convert_rows(rows)?;
        columns.push(Arc::new(UInt64Array::from(ranks)));
        Ok(RecordBatch::try_new(Arc::clone(&self.output), columns)?)
    }

    /// Every kept row, best first within each partition, for a checkpoint.
    pub fn snapshot(&self) -> Result<RecordBatch> {
        let rows = self
            .kept
            .iter()
            .flatten()
            .filter_map(|entry| match &entry.row {
                Stored::Held(row) => Some(row.row()),
                Stored::New(_) => None,
            });
        let columns = self.rows.convert_rows(rows)?;
        Ok(RecordBatch::try_new(Arc::clone(&self.input), columns)?)
    }

    /// Takes back the rows of a snapshot taken by [`Self::snapshot`].
    pub fn restore(&mut self, batch: &RecordBatch) -> Result<()> {
        self.take(batch).map(|_| ())
    }

    /// Bytes held.
    pub fn size(&self) -> usize {
        self.bytes + self.partitions.size() + self.kept.capacity() * 24
    }

    /// Rows kept.
    pub fn len(&self) -> usize {
        self.kept_rows
    }
}

/// What a kept row costs: its sort key, its row and their boxes.
fn entry_bytes(sort: &[u8], row: &OwnedRow) -> usize {
    sort.len() + row.as_ref().len() + 64
}
