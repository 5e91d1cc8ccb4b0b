//! Open windows of `TUMBLE` and `HOP`: one aggregation per window (a bin), keyed by the
//! window's start. A batch usually falls into one bin; when it spans several it is split.
//! A bin is emitted, and its memory freed, once the watermark passes its end.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{Result, ScalarValue};
use datafusion::physical_expr::PhysicalExpr;

use super::grouped::{AggregateExprs, EvaluatedRows, GroupedAggregation};
use super::{Watermark, nanos_values};

/// Where the window columns sit among the GROUP BY expressions.
#[derive(Debug, Clone)]
pub struct WindowColumns {
    pub start: Arc<dyn PhysicalExpr>,
    pub end: Arc<dyn PhysicalExpr>,
    /// Positions of `window_start` and `window_end` in the GROUP BY list.
    pub start_position: usize,
    pub end_position: usize,
}

struct Bin {
    end_nanos: i64,
    start: ScalarValue,
    end: ScalarValue,
    aggregation: GroupedAggregation,
}

/// The open bins of one window aggregate.
pub struct WindowBins {
    exprs: AggregateExprs,
    window: WindowColumns,
    lateness: i64,
    output: SchemaRef,
    bins: BTreeMap<i64, Bin>,
    /// Rows dropped because their bin was already emitted.
    pub late_rows: usize,
}

impl WindowBins {
    /// `exprs` holds the GROUP BY keys other than the window columns.
    pub fn new(
        exprs: AggregateExprs,
        window: WindowColumns,
        lateness: i64,
        output: SchemaRef,
    ) -> Self {
        Self {
            exprs,
            window,
            lateness,
            output,
            bins: BTreeMap::new(),
            late_rows: 0,
        }
    }

    /// Folds `batch` into its bins; rows of bins already emitted under `applied` are dropped.
    pub fn insert(&mut self, batch: &RecordBatch, applied: Watermark) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let starts_array = self.window.start.evaluate(batch)?.into_array(n)?;
        let ends_array = self.window.end.evaluate(batch)?.into_array(n)?;
        let starts = nanos_values(&starts_array)?;
        let ends = nanos_values(&ends_array)?;
        let rows = self.exprs.evaluate(batch)?;
        let first = starts[0];
        if starts.iter().all(|&s| s == first) {
            return self.insert_bin(
                first,
                0,
                &starts_array,
                &ends_array,
                ends[0],
                &rows,
                applied,
            );
        }
        let mut by_start: HashMap<i64, Vec<u32>> = HashMap::new();
        for (row, &start) in starts.iter().enumerate() {
            by_start.entry(start).or_default().push(row as u32);
        }
        for (start, indices) in by_start {
            let first_row = indices[0] as usize;
            let part = rows.take(&UInt32Array::from(indices))?;
            self.insert_bin(
                start,
                first_row,
                &starts_array,
                &ends_array,
                ends[first_row],
                &part,
                applied,
            )?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn insert_bin(
        &mut self,
        start_nanos: i64,
        row: usize,
        starts: &ArrayRef,
        ends: &ArrayRef,
        end_nanos: i64,
        rows: &EvaluatedRows,
        applied: Watermark,
    ) -> Result<()> {
        if end_nanos.saturating_add(self.lateness) <= applied.0 {
            self.late_rows += rows.num_rows;
            return Ok(());
        }
        let bin = match self.bins.entry(start_nanos) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => entry.insert(Bin {
                end_nanos,
                start: ScalarValue::try_from_array(starts, row)?,
                end: ScalarValue::try_from_array(ends, row)?,
                aggregation: GroupedAggregation::try_new(&self.exprs)?,
            }),
        };
        bin.aggregation.update(rows)
    }

    /// Emits, in window order, every bin whose end plus the allowed lateness is at or
    /// below `watermark`.
    pub fn advance(&mut self, watermark: Watermark, out: &mut Vec<RecordBatch>) -> Result<()> {
        while let Some(entry) = self.bins.first_entry() {
            if entry.get().end_nanos.saturating_add(self.lateness) > watermark.0 {
                // Bins of one kind have one size: later starts end later.
                break;
            }
            let bin = entry.remove();
            out.push(self.emit(bin)?);
        }
        Ok(())
    }

    fn emit(&self, mut bin: Bin) -> Result<RecordBatch> {
        let num_groups = bin.aggregation.num_groups();
        let (keys, values) = bin.aggregation.emit()?;
        let mut keys = keys.into_iter();
        let group_count = self.exprs.keys.len() + 2;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.output.fields().len());
        for position in 0..group_count {
            let column = if position == self.window.start_position {
                bin.start.to_array_of_size(num_groups)?
            } else if position == self.window.end_position {
                bin.end.to_array_of_size(num_groups)?
            } else {
                keys.next().ok_or_else(|| {
                    datafusion::error::DataFusionError::Internal("missing group key column".into())
                })?
            };
            columns.push(column);
        }
        columns.extend(values);
        Ok(RecordBatch::try_new(Arc::clone(&self.output), columns)?)
    }

    /// Bytes held by the open bins.
    pub fn size(&self) -> usize {
        self.bins.values().map(|b| b.aggregation.size()).sum()
    }

    /// The number of open windows and of groups across them.
    pub fn open(&self) -> (usize, usize) {
        (
            self.bins.len(),
            self.bins.values().map(|b| b.aggregation.num_groups()).sum(),
        )
    }
}
