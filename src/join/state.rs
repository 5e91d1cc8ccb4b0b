//! [`JoinState`]: an interval join's kept rows of both sides and both watermarks between
//! messages: joining a batch, expiring what a watermark has passed, the output watermark,
//! and the snapshot a checkpoint takes. Each side keeps its rows only until the other
//! side's watermark has passed every time a match could have; a row of an outer side that
//! never matched is then emitted with NULLs, at once, not at the end of input. The output
//! watermark is the earliest event time a row still to come can carry.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{JoinSide, Result};

use super::key_bytes::KeyBytes;
use super::run::TwoInputState;
use super::shape::{JoinShape, take_rows};
use super::side_buffer::{NONE, RowRef, SideBuffer};
use crate::stream::ByteKeys;
use crate::stream::Watermark;
use crate::stream::{StateSlot, StateSnapshot};

/// The name of the column a checkpoint adds to a side's rows: whether the row has matched.
pub(super) const MATCHED: &str = "__profusion_matched";

/// The join's state between messages; a checkpoint snapshots it.
pub(super) struct JoinState {
    pub(super) join: JoinShape,
    pub(super) left: SideBuffer,
    pub(super) right: SideBuffer,
    /// The join keys both sides hold, interned into ids.
    pub(super) keys: ByteKeys,
    /// How far past its time a left row's bound can end (a bound up to a left column).
    pub(super) left_span: i64,
    pub(super) left_watermark: Watermark,
    pub(super) right_watermark: Watermark,
    /// The last watermark handed on.
    pub(super) forwarded: Watermark,
    /// Output batches not yet handed on, last first.
    pub(super) pending: Vec<RecordBatch>,
}

impl JoinState {
    pub(super) fn buffer(&mut self, side: JoinSide) -> &mut SideBuffer {
        match side {
            JoinSide::Left => &mut self.left,
            _ => &mut self.right,
        }
    }

    /// The watermark of the input on `side`.
    pub(super) fn watermark(&self, side: JoinSide) -> Watermark {
        match side {
            JoinSide::Left => self.left_watermark,
            _ => self.right_watermark,
        }
    }

    /// The key id of each row ([`NONE`] for a NULL key), interned for both sides.
    fn intern(&mut self, keys: &KeyBytes, has_key: &[bool]) -> Result<Vec<u32>> {
        has_key
            .iter()
            .enumerate()
            .map(|(row, &has)| match has {
                true => self.keys.intern(keys.row(row)),
                false => Ok(NONE),
            })
            .collect()
    }

    /// Forgets the rows of `side` the other side's `watermark` has passed, emitting those
    /// that never matched when `side` is outer.
    pub(super) fn expire(
        &mut self,
        side: JoinSide,
        watermark: Watermark,
        out: &mut Vec<RecordBatch>,
    ) -> Result<()> {
        let mut emptied = Vec::new();
        let unmatched = self.buffer(side).expire(watermark.0, &mut emptied);
        // A key neither side holds any more is forgotten.
        for key in emptied {
            if !self.buffer(side.negate()).holds_key(key) {
                self.keys.remove(key);
            }
        }
        if !unmatched.is_empty() && self.join.anti_side() == Some(side) {
            let rows = self.buffer(side).columns(&unmatched)?;
            out.push(self.join.output_side(rows)?);
        } else if !unmatched.is_empty() && self.join.is_outer(side) {
            let buffer = match side {
                JoinSide::Left => &self.left,
                _ => &self.right,
            };
            let kept = buffer.columns(&unmatched)?;
            let other_schema = self.join.schema(side.negate());
            let nulls = SideBuffer::null_columns(other_schema, unmatched.len());
            let (left, right) = match side {
                JoinSide::Left => (kept, nulls),
                _ => (nulls, kept),
            };
            out.push(self.join.output(left, right)?);
        }
        self.buffer(side).release_expired();
        Ok(())
    }

    /// The earliest time a kept left row can have: rows are kept as of their bound's end,
    /// at most `left_span` past their time.
    fn earliest_left(&self) -> Option<i64> {
        let kept = self.left.earliest_time()?;
        Some(kept.saturating_sub(self.left_span))
    }

    pub(super) fn state_schema(&self, side: JoinSide) -> SchemaRef {
        let schema = self.join.schema(side);
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(MATCHED, DataType::Boolean, false));
        Arc::new(Schema::new(fields))
    }

    /// One side's kept rows and both watermarks, for a checkpoint.
    pub(super) fn snapshot(&self, side: JoinSide) -> Result<StateSnapshot> {
        let schema = self.state_schema(side);
        let buffer = match side {
            JoinSide::Left => &self.left,
            _ => &self.right,
        };
        StateSnapshot::new(
            Arc::clone(&schema),
            buffer.snapshot(&schema)?,
            &[
                ("left_watermark", self.left_watermark.0),
                ("right_watermark", self.right_watermark.0),
            ],
        )
    }

    /// Takes back the rows and watermarks of a checkpoint.
    pub(super) fn restore(&mut self, left: &StateSlot, right: &StateSlot) -> Result<()> {
        for (slot, side) in [(left, JoinSide::Left), (right, JoinSide::Right)] {
            let Some(snapshot) = &slot.restored else {
                continue;
            };
            self.left_watermark = self
                .left_watermark
                .max(Watermark(snapshot.scalar("left_watermark")?));
            self.right_watermark = self
                .right_watermark
                .max(Watermark(snapshot.scalar("right_watermark")?));
            let schema = Arc::clone(self.join.schema(side));
            for batch in &snapshot.batches {
                let width = schema.fields().len();
                let rows =
                    RecordBatch::try_new(Arc::clone(&schema), batch.columns()[..width].to_vec())?;
                let matched = batch
                    .column(width)
                    .as_boolean()
                    .iter()
                    .map(|m| m == Some(true))
                    .collect();
                let arrival = match side {
                    JoinSide::Left => self.left_watermark,
                    _ => self.right_watermark,
                };
                let (keys, has_key, times, span) = self.join.prepare(side, &rows, arrival)?;
                self.left_span = self.left_span.max(span);
                let keys = self.intern(&keys, &has_key)?;
                self.buffer(side).insert(rows, &keys, times, matched);
            }
        }
        Ok(())
    }
}

impl TwoInputState for JoinState {
    /// Joins `batch` (rows of `side`) with the other side's kept rows, keeps it, and
    /// appends to `out` the joined rows and any of its rows already past matching.
    fn on_batch(
        &mut self,
        side: JoinSide,
        batch: RecordBatch,
        out: &mut Vec<RecordBatch>,
    ) -> Result<()> {
        let other = side.negate();
        let arrival = self.watermark(side);
        let (keys, has_key, times, span) = self.join.prepare(side, &batch, arrival)?;
        self.left_span = self.left_span.max(span);
        let keys = self.intern(&keys, &has_key)?;
        let mut probe: Vec<u32> = Vec::new();
        let mut candidates: Vec<RowRef> = Vec::new();
        let other_buffer = match other {
            JoinSide::Left => &self.left,
            _ => &self.right,
        };
        for (row, &key) in keys.iter().enumerate().filter(|(_, key)| **key != NONE) {
            for candidate in other_buffer.matches(key) {
                probe.push(row as u32);
                candidates.push(candidate);
            }
        }
        let mut matched = vec![false; batch.num_rows()];
        if !probe.is_empty() {
            let new_columns = take_rows(&batch, &probe)?;
            let other_columns = other_buffer.columns(&candidates)?;
            let (left, right) = match side {
                JoinSide::Left => (new_columns, other_columns),
                _ => (other_columns, new_columns),
            };
            let mask = self.join.filter_mask(&left, &right)?;
            let mask = self.join.within_bound(mask, &left, &right)?;
            let mut matched_other = Vec::new();
            for (pair, keep) in mask.iter().enumerate() {
                if keep == Some(true) {
                    matched[probe[pair] as usize] = true;
                    matched_other.push(candidates[pair]);
                }
            }
            let newly_matched = self.buffer(other).mark_matched(&matched_other);
            match self.join.semi_side() {
                // Each row of the semi side once, when it first matches.
                Some(semi) if semi == side => {
                    let first: Vec<u32> = (0..batch.num_rows() as u32)
                        .filter(|&row| matched[row as usize])
                        .collect();
                    let rows = take_rows(&batch, &first)?;
                    out.push(self.join.output_side(rows)?);
                }
                Some(_) => {
                    if !newly_matched.is_empty() {
                        let rows = self.buffer(other).columns(&newly_matched)?;
                        out.push(self.join.output_side(rows)?);
                    }
                }
                None if self.join.anti_side().is_some() => {}
                None => {
                    let joined = filter_record_batch(&self.join.output(left, right)?, &mask)?;
                    if joined.num_rows() > 0 {
                        out.push(joined);
                    }
                }
            }
        }
        self.buffer(side).insert(batch, &keys, times, matched);
        // A row that arrives after the other side's watermark has passed its matches.
        let watermark = self.watermark(other);
        self.expire(side, watermark, out)
    }

    /// Takes in `watermark` of the input on `side`: the other side's rows it has passed
    /// are forgotten.
    fn on_watermark(
        &mut self,
        side: JoinSide,
        watermark: Watermark,
        out: &mut Vec<RecordBatch>,
    ) -> Result<()> {
        match side {
            JoinSide::Left => self.left_watermark = self.left_watermark.max(watermark),
            _ => self.right_watermark = self.right_watermark.max(watermark),
        }
        let watermark = self.watermark(side);
        if watermark > Watermark::MIN {
            self.buffer(side).time_untimed(watermark.0);
        }
        self.expire(side.negate(), watermark, out)
    }

    fn pending(&mut self) -> &mut Vec<RecordBatch> {
        &mut self.pending
    }

    /// The output watermark when it has moved: no row still to come carries an earlier time
    /// in either input's time column.
    fn output_watermark(&mut self) -> Option<Watermark> {
        let (left, right) = (self.left_watermark, self.right_watermark);
        let output = if left.is_end() && right.is_end() {
            Watermark::END
        } else {
            let from_left = left.0.saturating_add(self.join.bound.lower.min(0));
            let from_right = match self.join.bound.left_end {
                None => right.0.saturating_sub(self.join.bound.upper.max(0)),
                // A right row still to come may match any left row kept.
                Some(_) => right.0.min(self.earliest_left().unwrap_or(i64::MAX)),
            };
            Watermark(from_left.min(from_right))
        };
        (output > self.forwarded).then(|| {
            self.forwarded = output;
            output
        })
    }

    /// The earliest event time the join still holds rows of.
    fn earliest_held(&self) -> Option<i64> {
        match (self.earliest_left(), self.right.earliest_time()) {
            (Some(l), Some(r)) => Some(l.min(r)),
            (l, r) => l.or(r),
        }
    }

    /// Bytes held: both sides' rows and the keys.
    fn size(&self) -> usize {
        self.left.size() + self.right.size() + self.keys.size()
    }

    fn over_limit(&self, bytes: usize) -> String {
        let on: Vec<String> = self
            .join
            .on
            .iter()
            .map(|(l, r)| format!("{l} = {r}"))
            .collect();
        format!(
            "the interval join on {} holds {} rows in {bytes} bytes, over the memory limit \
             (narrow the time bound in its ON condition, or raise --memory-limit)",
            on.join(", "),
            self.left.len() + self.right.len()
        )
    }
}
