//! [`JoinShape`]: what a running interval join knows of itself: its keys, filter, type,
//! time bound and output columns, and how it builds joined and one-sided rows.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::SchemaRef;

use datafusion::common::{JoinSide, JoinType, Result};
use datafusion::physical_expr::PhysicalExprRef;
use datafusion::physical_plan::InputDistributionRequirements;
use datafusion::physical_plan::joins::utils::JoinFilter;

use super::key_bytes::{KeyBytes, KeyEncoding};
use super::side_buffer::UNTIMED;
use super::time_bound::TimeBound;
use crate::stream::nanos_values;
use crate::stream::{Watermark, key_distribution};

/// True for the join types an interval join runs: inner, outer, semi and anti.
pub fn is_supported(join_type: JoinType) -> bool {
    matches!(
        join_type,
        JoinType::Inner
            | JoinType::Left
            | JoinType::Right
            | JoinType::Full
            | JoinType::LeftSemi
            | JoinType::RightSemi
            | JoinType::LeftAnti
            | JoinType::RightAnti
    )
}

/// The rows of `batch` at `rows`.
pub(super) fn take_rows(batch: &RecordBatch, rows: &[u32]) -> Result<Vec<ArrayRef>> {
    let indices = UInt32Array::from(rows.to_vec());
    Ok(batch
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), &indices, None))
        .collect::<std::result::Result<Vec<_>, _>>()?)
}

/// What a running join needs to know of itself.
pub(super) struct JoinShape {
    pub(super) on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
    pub(super) filter: Option<JoinFilter>,
    pub(super) join_type: JoinType,
    pub(super) bound: TimeBound,
    pub(super) join_schema: SchemaRef,
    pub(super) projection: Option<Vec<usize>>,
    pub(super) keys: KeyEncoding,
    pub(super) left_schema: SchemaRef,
    pub(super) right_schema: SchemaRef,
}

impl JoinShape {
    pub(super) fn is_outer(&self, side: JoinSide) -> bool {
        matches!(
            (self.join_type, side),
            (JoinType::Full, _)
                | (JoinType::Left, JoinSide::Left)
                | (JoinType::Right, JoinSide::Right)
        )
    }

    pub(super) fn schema(&self, side: JoinSide) -> &SchemaRef {
        match side {
            JoinSide::Left => &self.left_schema,
            _ => &self.right_schema,
        }
    }

    /// The keys of `batch` (rows of `side`), whether each row has a key without NULLs, and
    /// each row's time.
    /// Rows of an input without its time column count as of `arrival`, the input's
    /// watermark when they arrive. A left row whose bound ends at a column of its own is
    /// kept as of that column; the last value is how far past its time that can be.
    pub(super) fn prepare(
        &self,
        side: JoinSide,
        batch: &RecordBatch,
        arrival: Watermark,
    ) -> Result<(KeyBytes, Vec<bool>, Vec<i64>, i64)> {
        let n = batch.num_rows();
        let keys = self
            .on
            .iter()
            .map(|(l, r)| {
                let expr = if side == JoinSide::Left { l } else { r };
                expr.evaluate(batch).and_then(|v| v.into_array(n))
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let has_key = (0..n)
            .map(|row| keys.iter().all(|k| k.is_valid(row)))
            .collect();
        let time_column = match side {
            JoinSide::Left => self.bound.left_time,
            _ => self.bound.right_time,
        };
        let times = match time_column {
            Some(column) => nanos_values(batch.column(column))?.to_vec(),
            // Before the input's first watermark: timed by it when it comes.
            None if arrival == Watermark::MIN => vec![UNTIMED; n],
            None => vec![arrival.0; n],
        };
        let keys = self.keys.encode(&keys)?;
        let Some(end) = self.bound.left_end.filter(|_| side == JoinSide::Left) else {
            return Ok((keys, has_key, times, 0));
        };
        let ends = nanos_values(batch.column(end))?;
        let span = ends
            .iter()
            .zip(&times)
            .map(|(&end, &time)| end.saturating_sub(time))
            .max()
            .unwrap_or(0)
            .max(0);
        Ok((keys, has_key, ends.to_vec(), span))
    }

    /// `mask` and, when the join checks its time bound itself, the pairs within it.
    pub(super) fn within_bound(
        &self,
        mask: datafusion::arrow::array::BooleanArray,
        left: &[ArrayRef],
        right: &[ArrayRef],
    ) -> Result<datafusion::arrow::array::BooleanArray> {
        let (true, Some(left_time), Some(right_time)) = (
            self.bound.checked,
            self.bound.left_time,
            self.bound.right_time,
        ) else {
            return Ok(mask);
        };
        let left_times = nanos_values(&left[left_time])?;
        let right_times = nanos_values(&right[right_time])?;
        let within = self.bound.contains(&left_times, &right_times);
        Ok(mask
            .iter()
            .zip(within)
            .map(|(keep, within)| Some(keep == Some(true) && within))
            .collect())
    }

    /// The side whose matched rows a semi join emits.
    pub(super) fn semi_side(&self) -> Option<JoinSide> {
        match self.join_type {
            JoinType::LeftSemi => Some(JoinSide::Left),
            JoinType::RightSemi => Some(JoinSide::Right),
            _ => None,
        }
    }

    /// The side whose never-matched rows an anti join emits.
    pub(super) fn anti_side(&self) -> Option<JoinSide> {
        match self.join_type {
            JoinType::LeftAnti => Some(JoinSide::Left),
            JoinType::RightAnti => Some(JoinSide::Right),
            _ => None,
        }
    }

    /// Rows of the one side a semi or anti join emits, projected.
    pub(super) fn output_side(&self, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
        let batch = RecordBatch::try_new(Arc::clone(&self.join_schema), columns)?;
        Ok(match &self.projection {
            Some(indices) => batch.project(indices)?,
            None => batch,
        })
    }

    /// Joined rows, left columns then right, projected.
    pub(super) fn output(&self, left: Vec<ArrayRef>, right: Vec<ArrayRef>) -> Result<RecordBatch> {
        let mut columns = left;
        columns.extend(right);
        let batch = RecordBatch::try_new(Arc::clone(&self.join_schema), columns)?;
        Ok(match &self.projection {
            Some(indices) => batch.project(indices)?,
            None => batch,
        })
    }

    /// Which candidate pairs satisfy the join's filter.
    pub(super) fn filter_mask(
        &self,
        left: &[ArrayRef],
        right: &[ArrayRef],
    ) -> Result<datafusion::arrow::array::BooleanArray> {
        let rows = left.first().map_or(0, |c| c.len());
        let Some(filter) = &self.filter else {
            return Ok(datafusion::arrow::array::BooleanArray::from(vec![
                true;
                rows
            ]));
        };
        let columns = filter
            .column_indices()
            .iter()
            .map(|index| match index.side {
                JoinSide::Left => Arc::clone(&left[index.index]),
                _ => Arc::clone(&right[index.index]),
            })
            .collect();
        let intermediate = RecordBatch::try_new_with_options(
            Arc::clone(filter.schema()),
            columns,
            &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows)),
        )?;
        let mask = filter
            .expression()
            .evaluate(&intermediate)?
            .into_array(rows)?;
        Ok(mask.as_boolean().clone())
    }
}

/// The key expressions of each side of the equalities `on`: (left's, right's).
pub(super) fn key_sides(
    on: &[(PhysicalExprRef, PhysicalExprRef)],
) -> (Vec<PhysicalExprRef>, Vec<PhysicalExprRef>) {
    on.iter()
        .map(|(l, r)| (Arc::clone(l), Arc::clone(r)))
        .unzip()
}

/// What a join keyed by `on` needs of its inputs: both split by their side of the key.
pub(super) fn key_partitioned(
    on: &[(PhysicalExprRef, PhysicalExprRef)],
) -> InputDistributionRequirements {
    let (left, right) = key_sides(on);
    InputDistributionRequirements::co_partitioned(vec![
        key_distribution(left),
        key_distribution(right),
    ])
}
