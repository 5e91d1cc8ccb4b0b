//! [`IntervalJoinExec`]: an equi-join of two streams whose `ON` condition bounds the
//! distance between the two rows' event times (`c.ts BETWEEN i.ts AND i.ts + INTERVAL '30'
//! MINUTE`), or joins two windowed aggregations on their windows' ends (a window join:
//! a bound of zero, each window's rows joined once both sides have closed it). Each side keeps its rows only until the other side's watermark has passed
//! every time a match could have; a row of an outer side that never matched is then
//! emitted with NULLs, at once, not at the end of input. Its output watermark is the
//! earliest event time a row it may still emit can carry.

use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{filter_record_batch, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, JoinSide, JoinType, Result, internal_err};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr, PhysicalExprRef};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::joins::utils::{JoinFilter, build_join_schema};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, ExecutionPlanMetricsSet, Gauge, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, ExecutionPlanProperties,
    Partitioning, PlanProperties,
};
use futures::StreamExt;

use super::side_buffer::{RowRef, SideBuffer, UNTIMED};
use super::time_bound::TimeBound;
use crate::stream::{
    EventTimeHold, JobProgress, PipelineContext, StateSlot, StateSnapshot, lock, nanos_values,
};
use crate::stream::{
    MessageStream, StreamMessage, StreamingExec, Watermark, execute_messages, execute_rows,
};

/// The name of the column a checkpoint adds to a side's rows: whether the row has matched.
const MATCHED: &str = "__profusion_matched";

/// A stream-stream join bounded in event time.
#[derive(Debug)]
pub struct IntervalJoinExec {
    left: Arc<dyn ExecutionPlan>,
    right: Arc<dyn ExecutionPlan>,
    on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
    filter: Option<JoinFilter>,
    join_type: JoinType,
    bound: TimeBound,
    /// Left columns then right columns, before `projection`.
    join_schema: SchemaRef,
    projection: Option<Vec<usize>>,
    metrics: ExecutionPlanMetricsSet,
    properties: Arc<PlanProperties>,
}

impl IntervalJoinExec {
    /// The `join_type` join of `left` and `right` on `on` and `filter`, whose conjuncts
    /// bound the times as `bound` says; `projection` picks the output columns.
    pub fn try_new(
        left: Arc<dyn ExecutionPlan>,
        right: Arc<dyn ExecutionPlan>,
        on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
        filter: Option<JoinFilter>,
        join_type: JoinType,
        bound: TimeBound,
        projection: Option<Vec<usize>>,
    ) -> Result<Self> {
        if !is_supported(join_type) {
            return internal_err!("an interval join cannot be {join_type}");
        }
        let join_schema =
            Arc::new(build_join_schema(&left.schema(), &right.schema(), &join_type).0);
        let output = match &projection {
            Some(indices) => Arc::new(join_schema.project(indices)?),
            None => Arc::clone(&join_schema),
        };
        let unbounded = left.boundedness().is_unbounded() || right.boundedness().is_unbounded();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(output),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            if unbounded {
                Boundedness::Unbounded {
                    requires_infinite_memory: false,
                }
            } else {
                Boundedness::Bounded
            },
        );
        Ok(Self {
            left,
            right,
            on,
            filter,
            join_type,
            bound,
            join_schema,
            projection,
            metrics: ExecutionPlanMetricsSet::new(),
            properties: Arc::new(properties),
        })
    }

    fn describe_on(&self) -> String {
        self.on
            .iter()
            .map(|(l, r)| format!("{l} = {r}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl DisplayAs for IntervalJoinExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "IntervalJoinExec: type={}, on=[{}], time={}",
            self.join_type,
            self.describe_on(),
            self.bound,
        )?;
        if let Some(filter) = &self.filter {
            write!(f, ", filter={}", filter.expression())?;
        }
        if let Some(projection) = &self.projection {
            let names: Vec<&str> = projection
                .iter()
                .map(|&i| self.join_schema.field(i).name().as_str())
                .collect();
            write!(f, ", projection=[{}]", names.join(", "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for IntervalJoinExec {
    fn name(&self) -> &str {
        "IntervalJoinExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.left, &self.right]
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![Distribution::SinglePartition, Distribution::SinglePartition]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        for (l, r) in &self.on {
            for expr in [l, r] {
                if f(expr)? == TreeNodeRecursion::Stop {
                    return Ok(TreeNodeRecursion::Stop);
                }
            }
        }
        match &self.filter {
            Some(filter) => f(filter.expression()),
            None => Ok(TreeNodeRecursion::Continue),
        }
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [left, right] = <[_; 2]>::try_from(children)
            .map_err(|_| DataFusionError::Internal("IntervalJoinExec takes two inputs".into()))?;
        Ok(Arc::new(Self::try_new(
            left,
            right,
            self.on.clone(),
            self.filter.clone(),
            self.join_type,
            self.bound,
            self.projection.clone(),
        )?))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        execute_rows(self, partition, context)
    }
}

impl StreamingExec for IntervalJoinExec {
    fn execute_messages(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<MessageStream> {
        let left = execute_messages(&self.left, partition, Arc::clone(&context))?
            .map(|message| (JoinSide::Left, message));
        let right = execute_messages(&self.right, partition, Arc::clone(&context))?
            .map(|message| (JoinSide::Right, message));
        let key_fields = self
            .on
            .iter()
            .map(|(l, _)| Ok(SortField::new(l.data_type(&self.left.schema())?)))
            .collect::<Result<Vec<_>>>()?;
        let mut state = JoinState {
            join: JoinShape {
                on: self.on.clone(),
                filter: self.filter.clone(),
                join_type: self.join_type,
                bound: self.bound,
                join_schema: Arc::clone(&self.join_schema),
                projection: self.projection.clone(),
                converter: RowConverter::new(key_fields)?,
                left_schema: self.left.schema(),
                right_schema: self.right.schema(),
            },
            left: SideBuffer::new(self.left.schema(), self.bound.upper),
            right: SideBuffer::new(self.right.schema(), self.bound.lower.saturating_neg()),
            left_watermark: Watermark::MIN,
            right_watermark: Watermark::MIN,
            forwarded: Watermark::MIN,
            pending: Vec::new(),
        };
        let progress = JobProgress::of_task(&context);
        let slots = progress
            .as_ref()
            .map(|p| (p.state.slot("join-left"), p.state.slot("join-right")));
        let output_slot = progress.as_ref().map(|p| p.state.slot("join-output"));
        if let Some((left, right)) = &slots {
            state.restore(left, right)?;
        }
        // Rows already joined but not yet handed on when the checkpoint was taken.
        if let Some(restored) = output_slot.as_ref().and_then(|s| s.restored.as_ref()) {
            for batch in restored.batches.iter().rev() {
                state.pending.push(RecordBatch::try_new(
                    self.schema(),
                    batch.columns().to_vec(),
                )?);
            }
        }
        let state = Arc::new(Mutex::new(state));
        if let (Some(progress), Some((left, right))) = (&progress, slots) {
            for (slot, side) in [(left, JoinSide::Left), (right, JoinSide::Right)] {
                let state = Arc::clone(&state);
                progress
                    .state
                    .register(slot.id, move || lock(&state).snapshot(side));
            }
        }
        if let (Some(progress), Some(slot)) = (&progress, output_slot) {
            let state = Arc::clone(&state);
            let schema = self.schema();
            progress.state.register(slot.id, move || {
                let pending = lock(&state).pending.iter().rev().cloned().collect();
                StateSnapshot::new(Arc::clone(&schema), pending, &[])
            });
        }
        let reservation = MemoryConsumer::new(format!("IntervalJoinExec[{}]", self.describe_on()))
            .register(context.memory_pool());
        let run = JoinRun {
            input: Box::pin(futures::stream::select(left, right)),
            state,
            reservation,
            hold: progress.map(|progress| progress.hold()),
            baseline: BaselineMetrics::new(&self.metrics, partition),
            state_bytes: MetricBuilder::new(&self.metrics).gauge("peak_state_bytes", partition),
            on: self.describe_on(),
            pipeline: PipelineContext::of_task(&context),
        };
        Ok(Box::pin(futures::stream::try_unfold(
            run,
            |mut run| async move {
                let message = run.next().await?;
                Ok(message.map(|message| (message, run)))
            },
        )))
    }
}

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
fn take_rows(batch: &RecordBatch, rows: &[u32]) -> Result<Vec<ArrayRef>> {
    let indices = UInt32Array::from(rows.to_vec());
    Ok(batch
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), &indices, None))
        .collect::<std::result::Result<Vec<_>, _>>()?)
}

/// What a running join needs to know of itself.
struct JoinShape {
    on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
    filter: Option<JoinFilter>,
    join_type: JoinType,
    bound: TimeBound,
    join_schema: SchemaRef,
    projection: Option<Vec<usize>>,
    converter: RowConverter,
    left_schema: SchemaRef,
    right_schema: SchemaRef,
}

impl JoinShape {
    fn is_outer(&self, side: JoinSide) -> bool {
        matches!(
            (self.join_type, side),
            (JoinType::Full, _)
                | (JoinType::Left, JoinSide::Left)
                | (JoinType::Right, JoinSide::Right)
        )
    }

    fn schema(&self, side: JoinSide) -> &SchemaRef {
        match side {
            JoinSide::Left => &self.left_schema,
            _ => &self.right_schema,
        }
    }

    /// The keys of `batch` (rows of `side`), whether each row has a key without NULLs, and
    /// each row's time.
    /// Rows of an input without its time column count as of `arrival`, the input's
    /// watermark when they arrive.
    fn prepare(
        &self,
        side: JoinSide,
        batch: &RecordBatch,
        arrival: Watermark,
    ) -> Result<(datafusion::arrow::row::Rows, Vec<bool>, Vec<i64>)> {
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
        Ok((self.converter.convert_columns(&keys)?, has_key, times))
    }

    /// `mask` and, when the join checks its time bound itself, the pairs within it.
    fn within_bound(
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
    fn semi_side(&self) -> Option<JoinSide> {
        match self.join_type {
            JoinType::LeftSemi => Some(JoinSide::Left),
            JoinType::RightSemi => Some(JoinSide::Right),
            _ => None,
        }
    }

    /// The side whose never-matched rows an anti join emits.
    fn anti_side(&self) -> Option<JoinSide> {
        match self.join_type {
            JoinType::LeftAnti => Some(JoinSide::Left),
            JoinType::RightAnti => Some(JoinSide::Right),
            _ => None,
        }
    }

    /// Rows of the one side a semi or anti join emits, projected.
    fn output_side(&self, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
        let batch = RecordBatch::try_new(Arc::clone(&self.join_schema), columns)?;
        Ok(match &self.projection {
            Some(indices) => batch.project(indices)?,
            None => batch,
        })
    }

    /// Joined rows, left columns then right, projected.
    fn output(&self, left: Vec<ArrayRef>, right: Vec<ArrayRef>) -> Result<RecordBatch> {
        let mut columns = left;
        columns.extend(right);
        let batch = RecordBatch::try_new(Arc::clone(&self.join_schema), columns)?;
        Ok(match &self.projection {
            Some(indices) => batch.project(indices)?,
            None => batch,
        })
    }

    /// Which candidate pairs satisfy the join's filter.
    fn filter_mask(
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

/// The join's state between messages; a checkpoint snapshots it.
struct JoinState {
    join: JoinShape,
    left: SideBuffer,
    right: SideBuffer,
    left_watermark: Watermark,
    right_watermark: Watermark,
    /// The last watermark handed on.
    forwarded: Watermark,
    /// Output batches not yet handed on, last first.
    pending: Vec<RecordBatch>,
}

impl JoinState {
    fn buffer(&mut self, side: JoinSide) -> &mut SideBuffer {
        match side {
            JoinSide::Left => &mut self.left,
            _ => &mut self.right,
        }
    }

    /// The watermark of the input on `side`.
    fn watermark(&self, side: JoinSide) -> Watermark {
        match side {
            JoinSide::Left => self.left_watermark,
            _ => self.right_watermark,
        }
    }

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
        let (keys, has_key, times) = self.join.prepare(side, &batch, arrival)?;
        let mut probe: Vec<u32> = Vec::new();
        let mut candidates: Vec<RowRef> = Vec::new();
        let other_buffer = match other {
            JoinSide::Left => &self.left,
            _ => &self.right,
        };
        for (row, _) in has_key.iter().enumerate().filter(|(_, has)| **has) {
            for &candidate in other_buffer.matches(keys.row(row).as_ref()) {
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
        self.buffer(side)
            .insert(batch, keys, has_key, times, matched);
        // A row that arrives after the other side's watermark has passed its matches.
        let watermark = self.watermark(other);
        self.expire(side, watermark, out)
    }

    /// Forgets the rows of `side` the other side's `watermark` has passed, emitting those
    /// that never matched when `side` is outer.
    fn expire(
        &mut self,
        side: JoinSide,
        watermark: Watermark,
        out: &mut Vec<RecordBatch>,
    ) -> Result<()> {
        let unmatched = self.buffer(side).expire(watermark.0);
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

    /// The output watermark when it has moved: no row still to come carries an earlier time
    /// in either input's time column.
    fn output_watermark(&mut self) -> Option<Watermark> {
        let (left, right) = (self.left_watermark, self.right_watermark);
        let output = if left.is_end() && right.is_end() {
            Watermark::END
        } else {
            let from_left = left.0.saturating_add(self.join.bound.lower.min(0));
            let from_right = right.0.saturating_sub(self.join.bound.upper.max(0));
            Watermark(from_left.min(from_right))
        };
        (output > self.forwarded).then(|| {
            self.forwarded = output;
            output
        })
    }

    /// The earliest event time the join still holds rows of.
    fn earliest_held(&self) -> Option<i64> {
        match (self.left.earliest_time(), self.right.earliest_time()) {
            (Some(l), Some(r)) => Some(l.min(r)),
            (l, r) => l.or(r),
        }
    }

    fn state_schema(&self, side: JoinSide) -> SchemaRef {
        let schema = self.join.schema(side);
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(MATCHED, DataType::Boolean, false));
        Arc::new(Schema::new(fields))
    }

    /// One side's kept rows and both watermarks, for a checkpoint.
    fn snapshot(&self, side: JoinSide) -> Result<StateSnapshot> {
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
    fn restore(&mut self, left: &StateSlot, right: &StateSlot) -> Result<()> {
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
                let (keys, has_key, times) = self.join.prepare(side, &rows, arrival)?;
                self.buffer(side)
                    .insert(rows, keys, has_key, times, matched);
            }
        }
        Ok(())
    }
}

/// A running join: its merged input, its state, and rows waiting to be handed on.
struct JoinRun {
    input: futures::stream::BoxStream<'static, (JoinSide, Result<StreamMessage>)>,
    state: Arc<Mutex<JoinState>>,
    reservation: MemoryReservation,
    hold: Option<Arc<EventTimeHold>>,
    baseline: BaselineMetrics,
    state_bytes: Gauge,
    on: String,
    pipeline: Arc<PipelineContext>,
}

impl JoinRun {
    async fn next(&mut self) -> Result<Option<StreamMessage>> {
        loop {
            let next = lock(&self.state).pending.pop();
            if let Some(batch) = next {
                self.baseline.record_output(batch.num_rows());
                return Ok(Some(StreamMessage::Batch(batch)));
            }
            if let Some(watermark) = lock(&self.state).output_watermark() {
                return Ok(Some(StreamMessage::Watermark(watermark)));
            }
            let Some((side, message)) = self.input.next().await else {
                return Ok(None);
            };
            let timer = self.baseline.elapsed_compute().timer();
            let mut out = Vec::new();
            let mut state = lock(&self.state);
            match message? {
                StreamMessage::Batch(batch) => state.on_batch(side, batch, &mut out)?,
                StreamMessage::Watermark(watermark) => {
                    state.on_watermark(side, watermark, &mut out)?
                }
            }
            let size = state.left.size() + state.right.size();
            let rows = state.left.len() + state.right.len();
            if let Some(hold) = &self.hold {
                // Rows on their way out are held until the next step, when they are gone.
                match out.is_empty() {
                    true => hold.set(state.earliest_held()),
                    false => hold.lower(i64::MIN),
                }
            }
            drop(state);
            timer.done();
            self.state_bytes.set_max(size);
            self.pipeline
                .metrics
                .peak_state_bytes
                .fetch_max(size as u64, std::sync::atomic::Ordering::Relaxed);
            self.reservation.try_resize(size).map_err(|e| {
                DataFusionError::ResourcesExhausted(format!(
                    "the interval join on {} holds {rows} rows in {size} bytes, over the memory limit \
                     (narrow the time bound in its ON condition, or raise --memory-limit): {e}",
                    self.on
                ))
            })?;
            out.reverse();
            lock(&self.state).pending = out;
        }
    }
}
