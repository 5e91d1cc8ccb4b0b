//! A bounded table held in memory for lookup joins: all of its rows in one batch, and a
//! hash index from each row's join key (in Arrow's row format) to the rows that have it.

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array, UInt32Builder};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::{Result, exec_err};
use datafusion::physical_expr::PhysicalExprRef;
use std::collections::HashMap;

/// No further row with the same key.
const END: u32 = u32::MAX;

/// A table's rows and the index over their keys.
#[derive(Debug)]
pub struct LookupIndex {
    rows: RecordBatch,
    converter: RowConverter,
    /// The first row with each key.
    first: HashMap<Box<[u8]>, u32>,
    /// The next row with the same key as row `i`, or `END`.
    next: Vec<u32>,
}

/// For a batch of stream rows: pairs of (stream row, table row) that match.
#[derive(Debug)]
pub struct Matches {
    pub stream_rows: UInt32Array,
    pub table_rows: UInt32Array,
}

impl LookupIndex {
    /// Indexes `batches` (of `schema`) by the keys `keys` compute; rows with a NULL key
    /// are left out, as they never equal anything.
    pub fn build(
        schema: &SchemaRef,
        batches: &[RecordBatch],
        keys: &[PhysicalExprRef],
    ) -> Result<Self> {
        let rows = concat_batches(schema, batches)?;
        if rows.num_rows() >= END as usize {
            return exec_err!(
                "a lookup table holds at most {} rows, not {}",
                END - 1,
                rows.num_rows()
            );
        }
        let key_columns = evaluate(keys, &rows)?;
        let fields = key_columns
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect();
        let converter = RowConverter::new(fields)?;
        let key_rows = converter.convert_columns(&key_columns)?;
        let mut first: HashMap<Box<[u8]>, u32> = HashMap::with_capacity(rows.num_rows());
        let mut next = vec![END; rows.num_rows()];
        // Insert back to front, so each key's chain lists its rows in table order.
        for row in (0..rows.num_rows()).rev() {
            if has_null(&key_columns, row) {
                continue;
            }
            let key_row = key_rows.row(row);
            let key = key_row.as_ref();
            match first.get_mut(key) {
                Some(head) => {
                    next[row] = *head;
                    *head = row as u32;
                }
                None => {
                    first.insert(key.into(), row as u32);
                }
            }
        }
        Ok(Self {
            rows,
            converter,
            first,
            next,
        })
    }

    /// The table's rows.
    pub fn rows(&self) -> &RecordBatch {
        &self.rows
    }

    /// The rows of `stream` each key matches; with `keep_unmatched`, a stream row that
    /// matches nothing appears once with a NULL table row.
    pub fn probe(
        &self,
        stream: &RecordBatch,
        keys: &[PhysicalExprRef],
        keep_unmatched: bool,
    ) -> Result<Matches> {
        let key_columns = evaluate(keys, stream)?;
        let key_rows: Rows = self.converter.convert_columns(&key_columns)?;
        let mut stream_rows = UInt32Builder::with_capacity(stream.num_rows());
        let mut table_rows = UInt32Builder::with_capacity(stream.num_rows());
        for row in 0..stream.num_rows() {
            let mut at = if has_null(&key_columns, row) {
                END
            } else {
                self.first
                    .get(key_rows.row(row).as_ref())
                    .copied()
                    .unwrap_or(END)
            };
            if at == END && keep_unmatched {
                stream_rows.append_value(row as u32);
                table_rows.append_null();
            }
            while at != END {
                stream_rows.append_value(row as u32);
                table_rows.append_value(at);
                at = self.next[at as usize];
            }
        }
        Ok(Matches {
            stream_rows: stream_rows.finish(),
            table_rows: table_rows.finish(),
        })
    }

    /// Bytes held: rows, keys and index.
    pub fn size(&self) -> usize {
        let keys: usize = self.first.keys().map(|k| k.len() + 24).sum();
        self.rows.get_array_memory_size() + keys + self.next.len() * 4 + self.converter.size()
    }

    /// The number of rows held.
    pub fn len(&self) -> usize {
        self.rows.num_rows()
    }

    /// True when the table is empty.
    pub fn is_empty(&self) -> bool {
        self.rows.num_rows() == 0
    }
}

fn evaluate(keys: &[PhysicalExprRef], batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
    keys.iter()
        .map(|k| k.evaluate(batch)?.into_array(batch.num_rows()))
        .collect()
}

fn has_null(columns: &[ArrayRef], row: usize) -> bool {
    columns.iter().any(|c| c.is_null(row))
}
