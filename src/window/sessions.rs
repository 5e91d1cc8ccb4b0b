//! Open windows of `SESSION`: rows wait, per key, until the watermark shows that their
//! session can no longer grow (its last row plus the gap, plus the allowed lateness, is at
//! or below the watermark). Then the closed sessions' rows get their real `window_start`
//! and `window_end` and go through one aggregation.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take, take_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::Result;
use datafusion::physical_expr::PhysicalExpr;

use super::grouped::{AggregateExprs, GroupedAggregation};
use crate::stream::{Watermark, nanos_values, time_array_from_nanos};

/// Session windows of one aggregate.
pub struct SessionWindows {
    /// GROUP BY keys other than the window columns: they define whose session a row is in.
    session_keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The whole aggregation, window columns included as keys.
    exprs: AggregateExprs,
    input: SchemaRef,
    output: SchemaRef,
    /// Input column indices of `window_start` and `window_end` (each row's event time and
    /// event time + gap, as the scan assigned them).
    start_column: usize,
    end_column: usize,
    /// Input column index of `window_time`, when the aggregation groups by it.
    time_column: Option<usize>,
    gap: i64,
    lateness: i64,
    pending: Vec<RecordBatch>,
    /// The earliest a pending row's session could close.
    earliest_end: i64,
    /// The earliest event time among pending rows.
    earliest_time: i64,
}

impl SessionWindows {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        session_keys: Vec<Arc<dyn PhysicalExpr>>,
        exprs: AggregateExprs,
        input: SchemaRef,
        output: SchemaRef,
        start_column: usize,
        end_column: usize,
        time_column: Option<usize>,
        gap: i64,
        lateness: i64,
    ) -> Self {
        Self {
            session_keys,
            exprs,
            input,
            output,
            start_column,
            end_column,
            time_column,
            gap,
            lateness,
            pending: Vec::new(),
            earliest_end: i64::MAX,
            earliest_time: i64::MAX,
        }
    }

    /// The rows of open sessions (the window scan's columns), for a checkpoint.
    pub fn snapshot(&self) -> (SchemaRef, Vec<RecordBatch>) {
        (Arc::clone(&self.input), self.pending.clone())
    }

    /// Holds the rows of a snapshot taken by [`Self::snapshot`] again.
    pub fn restore(&mut self, batches: &[RecordBatch]) -> Result<()> {
        for batch in batches {
            let batch = RecordBatch::try_new(Arc::clone(&self.input), batch.columns().to_vec())?;
            self.insert(batch)?;
        }
        Ok(())
    }

    /// Holds `batch` until its sessions close.
    pub fn insert(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let ends = nanos_values(batch.column(self.end_column))?;
        if let Some(&min) = ends.iter().min() {
            self.earliest_end = self.earliest_end.min(min);
        }
        let times = nanos_values(batch.column(self.start_column))?;
        if let Some(&min) = times.iter().min() {
            self.earliest_time = self.earliest_time.min(min);
        }
        self.pending.push(batch);
        Ok(())
    }

    /// Emits every session closed at `watermark`.
    pub fn advance(&mut self, watermark: Watermark, out: &mut Vec<RecordBatch>) -> Result<()> {
        if self.pending.is_empty() || self.earliest_end.saturating_add(self.lateness) > watermark.0
        {
            return Ok(());
        }
        let rows = concat_batches(&self.input, &self.pending)?;
        self.pending.clear();
        let n = rows.num_rows();
        let times = nanos_values(rows.column(self.start_column))?;
        let keys = self
            .session_keys
            .iter()
            .map(|e| e.evaluate(&rows).and_then(|v| v.into_array(n)))
            .collect::<Result<Vec<ArrayRef>>>()?;
        // Without keys besides the window, every row belongs to one key.
        let key_rows = if keys.is_empty() {
            None
        } else {
            let converter = RowConverter::new(
                keys.iter()
                    .map(|k| SortField::new(k.data_type().clone()))
                    .collect(),
            )?;
            Some(converter.convert_columns(&keys)?)
        };
        let same_key = |a: usize, b: usize| {
            key_rows
                .as_ref()
                .is_none_or(|rows| rows.row(a) == rows.row(b))
        };
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_unstable_by(|&a, &b| {
            let by_key = match &key_rows {
                Some(rows) => rows.row(a).cmp(&rows.row(b)),
                None => std::cmp::Ordering::Equal,
            };
            by_key.then(times[a].cmp(&times[b]))
        });

        let mut closed: Vec<u32> = Vec::new();
        let mut closed_starts: Vec<i64> = Vec::new();
        let mut closed_ends: Vec<i64> = Vec::new();
        let mut open: Vec<u32> = Vec::new();
        let mut earliest_end = i64::MAX;
        let mut earliest_time = i64::MAX;
        let mut i = 0;
        while i < n {
            // One session: rows of one key, each within `gap` of the session so far.
            let start = times[order[i]];
            let mut end = start.saturating_add(self.gap);
            let mut j = i + 1;
            while j < n && same_key(order[j], order[i]) && times[order[j]] < end {
                end = end.max(times[order[j]].saturating_add(self.gap));
                j += 1;
            }
            let members = order[i..j].iter().map(|&r| r as u32);
            if end.saturating_add(self.lateness) <= watermark.0 {
                closed.extend(members);
                closed_starts.extend(std::iter::repeat_n(start, j - i));
                closed_ends.extend(std::iter::repeat_n(end, j - i));
            } else {
                open.extend(members);
                earliest_end = earliest_end.min(end);
                earliest_time = earliest_time.min(start);
            }
            i = j;
        }
        if !open.is_empty() {
            self.pending
                .push(take_record_batch(&rows, &UInt32Array::from(open))?);
        }
        self.earliest_end = earliest_end;
        self.earliest_time = earliest_time;
        if closed.is_empty() {
            return Ok(());
        }
        let closed = UInt32Array::from(closed);
        let mut columns: Vec<ArrayRef> = rows
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &closed, None))
            .collect::<Result<_, _>>()?;
        columns[self.start_column] = time_array_from_nanos(
            closed_starts,
            self.input.field(self.start_column).data_type(),
        )?;
        if let Some(time_column) = self.time_column {
            let times = closed_ends.iter().map(|end| end - 1).collect();
            columns[time_column] =
                time_array_from_nanos(times, self.input.field(time_column).data_type())?;
        }
        columns[self.end_column] =
            time_array_from_nanos(closed_ends, self.input.field(self.end_column).data_type())?;
        let sessions = RecordBatch::try_new(Arc::clone(&self.input), columns)?;
        let mut aggregation = GroupedAggregation::try_new(&self.exprs)?;
        aggregation.update(&self.exprs.evaluate(&sessions)?)?;
        let (mut columns, values) = aggregation.emit()?;
        columns.extend(values);
        out.push(RecordBatch::try_new(Arc::clone(&self.output), columns)?);
        Ok(())
    }

    /// Bytes held by waiting rows.
    pub fn size(&self) -> usize {
        self.pending.iter().map(|b| b.get_array_memory_size()).sum()
    }

    /// The earliest event time among waiting rows, if any wait.
    pub fn earliest_time(&self) -> Option<i64> {
        (!self.pending.is_empty()).then_some(self.earliest_time)
    }

    /// The number of waiting rows.
    pub fn pending_rows(&self) -> usize {
        self.pending.iter().map(|b| b.num_rows()).sum()
    }
}
