//! Which windows each row belongs to. `TUMBLE` and `HOP` work by pane (the rows between
//! two slide boundaries): a pane's rows share their windows, so each (pane, window) pair
//! becomes one batch that reuses the rows' columns and adds constant window columns, and
//! nothing is copied when a batch falls in one pane. `CUMULATE` works the same way by step:
//! a step's rows belong to every window of their period that ends after the step. `SESSION` gives each row its own
//! provisional window, `[ts, ts + gap)`, which the aggregate merges.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{filter_record_batch, not, take_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Result;

use super::WindowKind;
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
}

impl WindowAssigner {
    pub fn assign(&self, batch: &RecordBatch, applied: Watermark) -> Result<Assigned> {
        if batch.num_rows() == 0 {
            return Ok(Assigned {
                rows: Vec::new(),
                late: None,
            });
        }
        let ts = nanos_values(batch.column(self.time_index))?;
        // A window [start, end) is emitted once `end + lateness <= watermark`.
        let open = |end: i64| end.saturating_add(self.lateness) > applied.0;
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
                let n = pane_rows.num_rows();
                rows.push(self.with_windows(&pane_rows, vec![start; n], vec![end; n])?);
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

    fn with_windows(
        &self,
        batch: &RecordBatch,
        starts: Vec<i64>,
        ends: Vec<i64>,
    ) -> Result<RecordBatch> {
        let time_type = self.windowed_schema.field(self.time_index).data_type();
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        columns.push(time_array_from_nanos(starts, time_type)?);
        let times = ends.iter().map(|end| end - 1).collect();
        columns.push(time_array_from_nanos(ends, time_type)?);
        columns.push(time_array_from_nanos(times, time_type)?);
        Ok(RecordBatch::try_new(
            Arc::clone(&self.windowed_schema),
            columns,
        )?)
    }
}

/// The rows of `batch` by pane (the multiple of `slide` at or below their event time);
/// rows without an event time come under `None`.
fn panes(batch: &RecordBatch, ts: &[i64], slide: i64) -> Result<Vec<(Option<i64>, RecordBatch)>> {
    let (lo, hi) = ts
        .iter()
        .fold((i64::MAX, i64::MIN), |(lo, hi), &t| (lo.min(t), hi.max(t)));
    if lo != i64::MIN && floor(lo, slide) == floor(hi, slide) {
        return Ok(vec![(Some(floor(lo, slide)), batch.clone())]);
    }
    let mut by_pane: BTreeMap<Option<i64>, Vec<u32>> = BTreeMap::new();
    for (row, &t) in ts.iter().enumerate() {
        let pane = (t != i64::MIN).then(|| floor(t, slide));
        by_pane.entry(pane).or_default().push(row as u32);
    }
    by_pane
        .into_iter()
        .map(|(pane, rows)| Ok((pane, take_record_batch(batch, &UInt32Array::from(rows))?)))
        .collect()
}
