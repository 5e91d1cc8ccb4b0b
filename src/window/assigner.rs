//! Which windows each row belongs to. `TUMBLE` and `HOP` work by pane (the rows between
//! two slide boundaries): a pane's rows share their windows, so each (pane, window) pair
//! becomes one batch that reuses the rows' columns and adds constant window columns, and
//! nothing is copied when a batch falls in one pane. `CUMULATE` works the same way by step:
//! a step's rows belong to every window of their period that ends after the step. `SESSION` gives each row its own
//! provisional window, `[ts, ts + gap)`, which the aggregate merges.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{filter_record_batch, not, take_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{Result, ScalarValue};

use super::WindowKind;
use super::constant_arrays::ConstantArrays;
use super::spec::floor;
use crate::stream::{Watermark, nanos_values, time_array_from_nanos};

/// A source batch with its windows assigned.
pub struct Assigned {
    /// Rows with `window_start`, `window_end` and `window_time` appended; one batch per window for
    /// `TUMBLE` and `HOP`.
    pub rows: Vec<RecordBatch>,
    /// Rows whose every window was already emitted, as they came from the source.
    pub late: Option<RecordBatch>,
}

/// Assigns windows of one kind, given the watermark the aggregate has applied.
#[derive(Debug, Clone)]
pub struct WindowAssigner {
    pub kind: WindowKind,
    pub lateness: i64,
    pub time_index: usize,
    /// The input's columns followed by `window_start`, `window_end` and `window_time`.
    pub windowed_schema: SchemaRef,
    /// The window columns of the latest windows.
    pub constants: ConstantArrays,
}

impl WindowAssigner {
    pub fn assign(&mut self, batch: &RecordBatch, applied: Watermark) -> Result<Assigned> {
        if batch.num_rows() == 0 {
            return Ok(Assigned {
                rows: Vec::new(),
                late: None,
            });
        }
        let ts = nanos_values(batch.column(self.time_index))?;
        // A window [start, end) is emitted once `end + lateness <= watermark`.
        let lateness = self.lateness;
        let open = |end: i64| end.saturating_add(lateness) > applied.0;
        let (slide, size) = match self.kind {
            WindowKind::Tumble { size } => (size, size),
            WindowKind::Hop { slide, size } => (slide, size),
            WindowKind::Cumulate { step, size } => (step, size),
            WindowKind::Session { gap } => {
                let late: Vec<bool> = ts
                    .iter()
                    .map(|&t| t == i64::MIN || !open(t.saturating_add(gap)))
                    .collect();
                let ends: Vec<i64> = ts.iter().map(|t| t.saturating_add(gap)).collect();
                let starts = ts.to_vec();
                if !late.contains(&true) {
                    return Ok(Assigned {
                        rows: vec![self.with_windows(batch, starts, ends)?],
                        late: None,
                    });
                }
                let late_mask = BooleanArray::from(late.clone());
                let keep = not(&late_mask)?;
                let pick = |values: Vec<i64>| -> Vec<i64> {
                    values
                        .into_iter()
                        .zip(&late)
                        .filter(|(_, l)| !**l)
                        .map(|(v, _)| v)
                        .collect()
                };
                let kept = filter_record_batch(batch, &keep)?;
                let late_rows = filter_record_batch(batch, &late_mask)?;
                return Ok(Assigned {
                    rows: vec![self.with_windows(&kept, pick(starts), pick(ends))?],
                    late: Some(late_rows),
                });
            }
        };

        let mut rows = Vec::new();
        let mut late = Vec::new();
        for (pane, pane_rows) in panes(batch, &ts, slide)? {
            let Some(pane) = pane else {
                late.push(pane_rows);
                continue;
            };
            let mut any_open = false;
            // The pane's windows, latest end first: once one is emitted, the earlier ones are too.
            for (start, end) in self.windows_of_pane(pane, slide, size) {
                if !open(end) {
                    break;
                }
                any_open = true;
                rows.push(self.with_window(&pane_rows, start, end)?);
            }
            if !any_open {
                late.push(pane_rows);
            }
        }
        let late = match late.len() {
            0 => None,
            _ => Some(datafusion::arrow::compute::concat_batches(
                &batch.schema(),
                &late,
            )?),
        };
        Ok(Assigned { rows, late })
    }

    /// The (start, end) of every window the rows of `pane` belong to, latest end first.
    fn windows_of_pane(&self, pane: i64, slide: i64, size: i64) -> Vec<(i64, i64)> {
        match self.kind {
            WindowKind::Cumulate { .. } => {
                let start = floor(pane, size);
                let last = start.saturating_add(size);
                let count = (last - pane) / slide;
                (0..count)
                    .map(|back| (start, last - back * slide))
                    .collect()
            }
            _ => (0..size / slide)
                .map(|back| {
                    let start = pane - back * slide;
                    (start, start.saturating_add(size))
                })
                .collect(),
        }
    }

    /// `batch` with each row's window: `starts` and `ends` in nanoseconds.
    fn with_windows(
        &self,
        batch: &RecordBatch,
        starts: Vec<i64>,
        ends: Vec<i64>,
    ) -> Result<RecordBatch> {
        let time_type = self.windowed_schema.field(self.time_index).data_type();
        let times = ends.iter().map(|end| end - 1).collect();
        self.with_window_columns(
            batch,
            [
                time_array_from_nanos(starts, time_type)?,
                time_array_from_nanos(ends, time_type)?,
                time_array_from_nanos(times, time_type)?,
            ],
        )
    }

    /// `batch` with every row in the window `[start, end)`: its window columns are slices
    /// of arrays kept for that window.
    fn with_window(&mut self, batch: &RecordBatch, start: i64, end: i64) -> Result<RecordBatch> {
        let time_type = self.windowed_schema.field(self.time_index).data_type();
        let n = batch.num_rows();
        let mut column = |nanos: i64| {
            let value = time_array_from_nanos(vec![nanos], time_type)?;
            self.constants
                .of(&ScalarValue::try_from_array(&value, 0)?, n)
        };
        let columns = [column(start)?, column(end)?, column(end - 1)?];
        self.with_window_columns(batch, columns)
    }

    fn with_window_columns(
        &self,
        batch: &RecordBatch,
        windows: [ArrayRef; 3],
    ) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        columns.extend(windows);
        Ok(RecordBatch::try_new(
            Arc::clone(&self.windowed_schema),
            columns,
        )?)
    }
}

/// The rows of `batch` by pane (the multiple of `slide` at or below their event time), in
/// pane order; rows without an event time come first, under `None`. A batch within one pane
/// is handed on as it is; one that straddles panes (rows out of order around a boundary) is
/// reordered by pane with one `take` and cut into slices.
fn panes(batch: &RecordBatch, ts: &[i64], slide: i64) -> Result<Vec<(Option<i64>, RecordBatch)>> {
    let Some(&first) = ts.first() else {
        return Ok(Vec::new());
    };
    // Most batches lie within their first row's pane: one subtraction and one comparison
    // per row say so (a row without an event time is far out of any pane).
    if first != i64::MIN {
        let pane = floor(first, slide);
        if ts
            .iter()
            .all(|&t| (t.wrapping_sub(pane) as u64) < slide as u64)
        {
            return Ok(vec![(Some(pane), batch.clone())]);
        }
    }
    let row_panes: Vec<Option<i64>> = ts
        .iter()
        .map(|&t| (t != i64::MIN).then(|| floor(t, slide)))
        .collect();
    let panes = distinct_panes(&row_panes);
    // A counting sort of the rows by pane: counts, then each pane's first position.
    let index_of = |pane: Option<i64>| panes.partition_point(|&p| p < pane);
    let mut starts = vec![0u32; panes.len() + 1];
    let mut row_indices = Vec::with_capacity(ts.len());
    let mut last = (row_panes[0], index_of(row_panes[0]));
    for &pane in &row_panes {
        if pane != last.0 {
            last = (pane, index_of(pane));
        }
        row_indices.push(last.1 as u32);
        starts[last.1 + 1] += 1;
    }
    for i in 1..starts.len() {
        starts[i] += starts[i - 1];
    }
    let mut order = vec![0u32; ts.len()];
    let mut next = starts.clone();
    for (row, &pane) in row_indices.iter().enumerate() {
        order[next[pane as usize] as usize] = row as u32;
        next[pane as usize] += 1;
    }
    let ordered = take_record_batch(batch, &UInt32Array::from(order))?;
    Ok(panes
        .iter()
        .zip(starts.windows(2))
        .map(|(&pane, range)| {
            let (from, to) = (range[0] as usize, range[1] as usize);
            (pane, ordered.slice(from, to - from))
        })
        .collect())
}

/// The distinct values of `panes`, sorted. Rows out of order around a boundary alternate
/// between a few panes, so a short list checked on each change of pane finds them; a batch
/// spanning many panes is sorted instead.
fn distinct_panes(panes: &[Option<i64>]) -> Vec<Option<i64>> {
    const FEW: usize = 16;
    let mut distinct: Vec<Option<i64>> = Vec::new();
    let mut last = None;
    for &pane in panes {
        if last == Some(pane) {
            continue;
        }
        last = Some(pane);
        if !distinct.contains(&pane) {
            if distinct.len() == FEW {
                distinct = panes.to_vec();
                distinct.sort_unstable();
                distinct.dedup();
                return distinct;
            }
            distinct.push(pane);
        }
    }
    distinct.sort_unstable();
    distinct
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;

    fn batch(ts: &[i64]) -> RecordBatch {
        let schema = Schema::new(vec![Field::new("ts", DataType::Int64, false)]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(Int64Array::from(ts.to_vec()))],
        )
        .unwrap()
    }

    fn split(ts: &[i64], slide: i64) -> Vec<(Option<i64>, Vec<i64>)> {
        panes(&batch(ts), ts, slide)
            .unwrap()
            .into_iter()
            .map(|(pane, rows)| {
                let values = rows.column(0).as_primitive::<Int64Type>().values().to_vec();
                (pane, values)
            })
            .collect()
    }

    #[test]
    fn a_batch_within_one_pane_stays_whole() {
        assert_eq!(split(&[12, 10, 19], 10), vec![(Some(10), vec![12, 10, 19])]);
    }

    #[test]
    fn rows_out_of_order_around_a_boundary_go_to_their_panes_in_order() {
        let ts = [18, 21, 19, i64::MIN, 20, 9, 25, 17];
        assert_eq!(
            split(&ts, 10),
            vec![
                (None, vec![i64::MIN]),
                (Some(0), vec![9]),
                (Some(10), vec![18, 19, 17]),
                (Some(20), vec![21, 20, 25]),
            ]
        );
    }

    #[test]
    fn a_batch_spanning_many_panes_is_split_by_each() {
        let ts: Vec<i64> = (0..100).map(|i| (i * 37) % 100).collect();
        let panes = split(&ts, 5);
        assert_eq!(panes.len(), 20);
        for (at, (pane, rows)) in panes.iter().enumerate() {
            assert_eq!(*pane, Some(at as i64 * 5));
            let expected: Vec<i64> = ts.iter().copied().filter(|t| t / 5 == at as i64).collect();
            assert_eq!(rows, &expected);
        }
    }
}
