//! [`WindowAggregateExec`]: a `GROUP BY window_start, window_end, …` over assigned windows,
//! emitted once per window when the watermark passes the window's end (plus the allowed
//! lateness). It replaces DataFusion's `AggregateExec` for windowed queries and reuses its
//! group values and accumulators. It reads its input as messages, so any stream may sit
//! below it, and forwards its own watermark: the earliest window end still to come, so a
//! window can sit on its output.

use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{TreeNodeIterator, TreeNodeRecursion};
use datafusion::common::{Result, plan_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
    InputDistributionRequirements, Partitioning, PlanProperties,
};
use futures::StreamExt;

use super::WindowKind;
use super::assign_exec::WindowAssignment;
use super::bins::{WindowBins, WindowColumns};
use super::grouped::AggregateExprs;
use super::provenance::{WindowColumn, window_column};
use super::sessions::SessionWindows;
use crate::stream::{
    DisplayNanos, EventTimeHold, JobProgress, OperatorCheckpoint, PipelineContext, StateAccount,
    StateSnapshot, lock, node_id,
};
use crate::stream::{
    MessageStream, StreamMessage, StreamingExec, Watermark, execute_messages, execute_rows,
    key_distribution, partitions_of,
};

/// A windowed aggregation.
#[derive(Debug)]
pub struct WindowAggregateExec {
    input: Arc<dyn ExecutionPlan>,
    group_by: Vec<(Arc<dyn PhysicalExpr>, String)>,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    window: WindowAssignment,
    start_position: usize,
    end_position: usize,
    /// The position of `window_time` in the GROUP BY list, when it is grouped by.
    time_position: Option<usize>,
    schema: SchemaRef,
    metrics: ExecutionPlanMetricsSet,
    properties: Arc<PlanProperties>,
}

impl WindowAggregateExec {
    /// The aggregation `group_by` / `aggregates` (with their `FILTER`s) over `input`, whose
    /// rows carry the windows of `window`; `schema` is the output schema of the aggregate
    /// it replaces.
    pub fn try_new(
        input: Arc<dyn ExecutionPlan>,
        window: WindowAssignment,
        group_by: Vec<(Arc<dyn PhysicalExpr>, String)>,
        aggregates: Vec<Arc<AggregateFunctionExpr>>,
        filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
        schema: SchemaRef,
    ) -> Result<Self> {
        let aggregates = aggregates
            .into_iter()
            .map(without_input_ordering)
            .collect::<Result<Vec<_>>>()?;
        let columns: Vec<Option<WindowColumn>> = group_by
            .iter()
            .map(|(expr, _)| {
                let column = expr.downcast_ref::<Column>()?;
                window_column(&input, column.index()).map(|(column, _)| column)
            })
            .collect();
        let position = |wanted: WindowColumn| columns.iter().position(|c| *c == Some(wanted));
        let time_position = position(WindowColumn::Time);
        let (Some(start_position), Some(end_position)) =
            (position(WindowColumn::Start), position(WindowColumn::End))
        else {
            return plan_err!(
                "an aggregation over {}({}, …) must GROUP BY window_start and window_end",
                window.kind.function_name(),
                window.input
            );
        };
        let bounded = !input.boundedness().is_unbounded();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(partitions_of(&input)),
            EmissionType::Incremental,
            if bounded {
                Boundedness::Bounded
            } else {
                Boundedness::Unbounded {
                    requires_infinite_memory: false,
                }
            },
        );
        Ok(Self {
            input,
            group_by,
            aggregates,
            filters,
            window,
            start_position,
            end_position,
            time_position,
            schema,
            metrics: ExecutionPlanMetricsSet::new(),
            properties: Arc::new(properties),
        })
    }

    /// Output column `index` as a window column of this aggregate's windows, if it is one:
    /// the rows a window aggregate emits carry their window, for windows downstream.
    pub fn window_column(&self, index: usize) -> Option<(WindowColumn, WindowAssignment)> {
        let column = if index == self.start_position {
            WindowColumn::Start
        } else if index == self.end_position {
            WindowColumn::End
        } else if Some(index) == self.time_position {
            WindowColumn::Time
        } else {
            return None;
        };
        let windows = WindowAssignment {
            // Its output watermark already allows for the lateness.
            lateness_nanos: 0,
            on_event_time: false,
            regroups: true,
            ..self.window.clone()
        };
        Some((column, windows))
    }

    /// The aggregation expressions with the given GROUP BY keys.
    fn exprs(&self, keys: Vec<(Arc<dyn PhysicalExpr>, String)>) -> Result<AggregateExprs> {
        AggregateExprs::try_new(
            keys,
            self.aggregates.clone(),
            self.filters.clone(),
            &self.input.schema(),
        )
    }

    /// The key of each row (as an exchange places rows): every group expression but the
    /// window's own columns.
    fn partition_keys(&self) -> Vec<Arc<dyn PhysicalExpr>> {
        let windows = [
            Some(self.start_position),
            Some(self.end_position),
            self.time_position,
        ];
        self.group_by
            .iter()
            .enumerate()
            .filter(|(i, _)| !windows.contains(&Some(*i)))
            .map(|(_, (expr, _))| Arc::clone(expr))
            .collect()
    }

    /// The same key over the rows of a snapshot of the open windows: sessions keep input
    /// rows; bins keep window start and end, then the group values but the window's.
    fn snapshot_keys(&self) -> Vec<Arc<dyn PhysicalExpr>> {
        let sessions =
            matches!(self.window.kind, WindowKind::Session { .. }) && !self.window.regroups;
        if sessions {
            return self.partition_keys();
        }
        self.group_by
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != self.start_position && *i != self.end_position)
            .enumerate()
            .filter(|(_, (i, _))| Some(*i) != self.time_position)
            .map(|(column, (_, (_, name)))| {
                Arc::new(Column::new(name, 2 + column)) as Arc<dyn PhysicalExpr>
            })
            .collect()
    }

    fn open_state(&self) -> Result<OpenWindows> {
        let keys: Vec<_> = self
            .group_by
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != self.start_position && *i != self.end_position)
            .map(|(_, (e, n))| (Arc::clone(e), n.clone()))
            .collect();
        let column_index =
            |e: &Arc<dyn PhysicalExpr>| e.downcast_ref::<Column>().map(|c| c.index());
        let start = Arc::clone(&self.group_by[self.start_position].0);
        let end = Arc::clone(&self.group_by[self.end_position].0);
        let lateness = self.window.lateness_nanos;
        Ok(match self.window.kind {
            // An upstream aggregate's windows, whatever their kind: each batch is one window.
            _ if self.window.regroups => self.bins(keys, start, end, true)?,
            WindowKind::Session { gap } => {
                // A session's window_time follows from its end, known only when it closes.
                let time = self.time_position.map(|p| &self.group_by[p].0);
                let is_time = |e: &Arc<dyn PhysicalExpr>| time.is_some_and(|t| Arc::ptr_eq(t, e));
                let time_column = keys
                    .iter()
                    .find(|(e, _)| is_time(e))
                    .and_then(|(e, _)| column_index(e));
                let session_keys = keys
                    .iter()
                    .filter(|(e, _)| !is_time(e))
                    .map(|(e, _)| Arc::clone(e))
                    .collect();
                let (Some(start_column), Some(end_column)) =
                    (column_index(&start), column_index(&end))
                else {
                    return plan_err!(
                        "SESSION windows need window_start and window_end as plain columns"
                    );
                };
                OpenWindows::Sessions(SessionWindows::new(
                    session_keys,
                    self.exprs(self.group_by.clone())?,
                    self.input.schema(),
                    Arc::clone(&self.schema),
                    start_column,
                    end_column,
                    time_column,
                    gap,
                    lateness,
                )?)
            }
            WindowKind::Tumble { .. } => self.bins(keys, start, end, false)?,
            WindowKind::Hop { slide, size } => self.bins(keys, start, end, size > slide)?,
            WindowKind::Cumulate { step, size } => self.bins(keys, start, end, size > step)?,
        })
    }

    fn bins(
        &self,
        keys: Vec<(Arc<dyn PhysicalExpr>, String)>,
        start: Arc<dyn PhysicalExpr>,
        end: Arc<dyn PhysicalExpr>,
        overlapping: bool,
    ) -> Result<OpenWindows> {
        let window = WindowColumns {
            start,
            end,
            start_position: self.start_position,
            end_position: self.end_position,
        };
        Ok(OpenWindows::Bins(WindowBins::try_new(
            self.exprs(keys)?,
            window,
            self.window.lateness_nanos,
            Arc::clone(&self.schema),
            overlapping,
        )?))
    }
}

/// A window aggregate sees rows in arrival order, not sorted by an aggregate's `ORDER BY`:
/// aggregates that can order their input themselves are told so; the rest are refused.
pub(crate) fn without_input_ordering(
    aggregate: Arc<AggregateFunctionExpr>,
) -> Result<Arc<AggregateFunctionExpr>> {
    let sensitivity = aggregate.order_sensitivity();
    if sensitivity.is_insensitive() {
        return Ok(aggregate);
    }
    if sensitivity.hard_requires() {
        return plan_err!(
            "{} needs its input sorted by its ORDER BY, which a streaming window cannot provide",
            aggregate.name()
        );
    }
    Ok(
        match Arc::clone(&aggregate).with_beneficial_ordering(false)? {
            Some(unordered) => Arc::new(unordered),
            None => aggregate,
        },
    )
}

/// The state of the windows not yet emitted. One per running operator: the size of the
/// larger variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum OpenWindows {
    Bins(WindowBins),
    Sessions(SessionWindows),
}

impl OpenWindows {
    fn insert(&mut self, batch: RecordBatch, applied: Watermark) -> Result<()> {
        match self {
            Self::Bins(bins) => bins.insert(&batch, applied),
            Self::Sessions(sessions) => sessions.insert(batch),
        }
    }

    fn advance(&mut self, watermark: Watermark, out: &mut Vec<RecordBatch>) -> Result<()> {
        match self {
            Self::Bins(bins) => bins.advance(watermark, out),
            Self::Sessions(sessions) => sessions.advance(watermark, out),
        }
    }

    fn size(&self) -> usize {
        match self {
            Self::Bins(bins) => bins.size(),
            Self::Sessions(sessions) => sessions.size(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Bins(bins) => {
                let (windows, groups) = bins.open();
                format!("{windows} open windows with {groups} groups")
            }
            Self::Sessions(sessions) => {
                format!("{} rows of open sessions", sessions.pending_rows())
            }
        }
    }

    /// The earliest event time whose rows the open windows still hold.
    fn earliest_held(&self) -> Option<i64> {
        match self {
            Self::Bins(bins) => bins.earliest_start(),
            Self::Sessions(sessions) => sessions.earliest_time(),
        }
    }

    fn take_late_rows(&mut self) -> usize {
        match self {
            Self::Bins(bins) => std::mem::take(&mut bins.late_rows),
            Self::Sessions(_) => 0,
        }
    }
}

impl DisplayAs for WindowAggregateExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let keys: Vec<&str> = self
            .group_by
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != self.start_position && *i != self.end_position)
            .map(|(_, (_, name))| name.as_str())
            .collect();
        let aggregates: Vec<&str> = self.aggregates.iter().map(|a| a.name()).collect();
        write!(f, "WindowAggregateExec: {}", self.window.kind)?;
        if self.window.lateness_nanos > 0 {
            write!(
                f,
                ", allowed_lateness={}",
                DisplayNanos(self.window.lateness_nanos)
            )?;
        }
        write!(
            f,
            ", keys=[{}], aggregates=[{}]",
            keys.join(", "),
            aggregates.join(", ")
        )
    }
}

impl ExecutionPlan for WindowAggregateExec {
    fn name(&self) -> &str {
        "WindowAggregateExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.group_by
            .iter()
            .map(|(expr, _)| expr)
            .apply_until_stop(f)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    /// Every row of a key, whatever its window, in one partition.
    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        InputDistributionRequirements::new(vec![key_distribution(self.partition_keys())])
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(input) = children.pop() else {
            return plan_err!("WindowAggregateExec takes one input");
        };
        Ok(Arc::new(Self::try_new(
            input,
            self.window.clone(),
            self.group_by.clone(),
            self.aggregates.clone(),
            self.filters.clone(),
            Arc::clone(&self.schema),
        )?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        execute_rows(self, partition, context)
    }
}

impl StreamingExec for WindowAggregateExec {
    fn execute_messages(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<MessageStream> {
        let input = execute_messages(&self.input, partition, Arc::clone(&context))?;
        let account = StateAccount::new(
            format!("WindowAggregateExec[{}]", self.window.kind),
            &context,
            &self.metrics,
            partition,
        );
        let progress = JobProgress::of_task(&context);
        let mut windows = WindowState {
            open: self.open_state()?,
            applied: Watermark::MIN,
            ready: Vec::new(),
        };
        let mut checkpoint = OperatorCheckpoint::of(progress.clone(), node_id(self));
        let partitions = self.properties().partitioning.partition_count();
        let slots = checkpoint
            .slot("window", partition, partitions, &self.snapshot_keys())?
            .zip(checkpoint.slot("window-output", partition, partitions, &[])?);
        if let Some((open, output)) = &slots {
            windows.restore(
                open.restored.as_ref(),
                output.restored.as_ref(),
                &self.schema,
            )?;
        }
        let windows = Arc::new(Mutex::new(windows));
        if let Some((open, output)) = slots {
            let state = Arc::clone(&windows);
            checkpoint.register(&open, move || lock(&state).snapshot_open());
            let state = Arc::clone(&windows);
            let schema = Arc::clone(&self.schema);
            checkpoint.register(&output, move || {
                let emitted = lock(&state).ready.iter().rev().cloned().collect();
                StateSnapshot::new(Arc::clone(&schema), emitted, &[])
            });
        }
        let state = AggregateState {
            input,
            window: self.window.clone(),
            windows,
            checkpoint,
            barrier: None,
            idle: false,
            account,
            pipeline: PipelineContext::of_task(&context),
            hold: progress.map(|progress| progress.hold()),
            forwarded: Watermark::MIN,
            finished: false,
            metrics: AggregateMetrics::new(&self.metrics, partition),
        };
        let stream = futures::stream::try_unfold(state, |mut state| async move {
            loop {
                let emitted = lock(&state.windows).ready.pop();
                if let Some(batch) = emitted {
                    state.publish_hold();
                    state.metrics.baseline.record_output(batch.num_rows());
                    return Ok(Some((StreamMessage::Batch(batch), state)));
                }
                if let Some(watermark) = state.output_watermark() {
                    return Ok(Some((StreamMessage::Watermark(watermark), state)));
                }
                // Every window emitted before the barrier is on its way.
                if let Some(epoch) = state.barrier.take() {
                    state.checkpoint.on_barrier(epoch);
                    return Ok(Some((StreamMessage::Barrier(epoch), state)));
                }
                if std::mem::take(&mut state.idle) {
                    return Ok(Some((StreamMessage::Idle, state)));
                }
                if state.finished {
                    return Ok(None);
                }
                state.step().await?;
                state.publish_hold();
            }
        });
        Ok(Box::pin(stream))
    }
}

/// What a window aggregate holds between batches; a checkpoint snapshots it.
struct WindowState {
    open: OpenWindows,
    /// The watermark the open windows were last advanced to.
    applied: Watermark,
    /// Emitted batches, last first.
    ready: Vec<RecordBatch>,
}

impl WindowState {
    /// The open windows and the applied watermark, for a checkpoint.
    fn snapshot_open(&mut self) -> Result<StateSnapshot> {
        let applied = [("applied", self.applied.0)];
        match &mut self.open {
            OpenWindows::Bins(bins) => {
                StateSnapshot::new(bins.state_schema()?, bins.snapshot()?, &applied)
            }
            OpenWindows::Sessions(sessions) => {
                let (schema, rows) = sessions.snapshot()?;
                StateSnapshot::new(schema, rows, &applied)
            }
        }
    }

    /// Takes back the open windows and the emitted batches of a checkpoint.
    fn restore(
        &mut self,
        open: Option<&StateSnapshot>,
        output: Option<&StateSnapshot>,
        schema: &SchemaRef,
    ) -> Result<()> {
        if let Some(open) = open {
            self.applied = Watermark(open.scalar("applied")?);
            match &mut self.open {
                OpenWindows::Bins(bins) => bins.restore(&open.batches)?,
                OpenWindows::Sessions(sessions) => sessions.restore(&open.batches)?,
            }
        }
        if let Some(output) = output {
            for batch in output.batches.iter().rev() {
                self.ready.push(RecordBatch::try_new(
                    Arc::clone(schema),
                    batch.columns().to_vec(),
                )?);
            }
        }
        Ok(())
    }
}

struct AggregateState {
    input: MessageStream,
    window: WindowAssignment,
    windows: Arc<Mutex<WindowState>>,
    checkpoint: OperatorCheckpoint,
    /// A barrier read, to hand on once the windows emitted before it are.
    barrier: Option<u64>,
    /// The input said it is idle: so is the output, once the windows before it are out.
    idle: bool,
    account: StateAccount,
    pipeline: Arc<PipelineContext>,
    /// What the open windows hold, for committing source positions.
    hold: Option<Arc<EventTimeHold>>,
    /// The last watermark handed on.
    forwarded: Watermark,
    finished: bool,
    metrics: AggregateMetrics,
}

/// What `EXPLAIN ANALYZE` shows of a window aggregate.
struct AggregateMetrics {
    baseline: BaselineMetrics,
    input_rows: Count,
    late_rows: Count,
}

impl AggregateMetrics {
    fn new(metrics: &ExecutionPlanMetricsSet, partition: usize) -> Self {
        Self {
            baseline: BaselineMetrics::new(metrics, partition),
            input_rows: MetricBuilder::new(metrics).counter("input_rows", partition),
            late_rows: MetricBuilder::new(metrics).counter("late_rows", partition),
        }
    }
}

impl AggregateState {
    /// Publishes the earliest event time still held. Rows of emitted windows stay held
    /// until the last of them is on its way to the sink; rows just folded into an earlier
    /// window than any before are held at once.
    fn publish_hold(&self) {
        let Some(hold) = &self.hold else { return };
        let windows = lock(&self.windows);
        let mut open = windows.open.earliest_held();
        // Windows on another time column than the one sources settle by hold every row.
        if !self.window.on_event_time && open.is_some() {
            open = Some(i64::MIN);
        }
        if windows.ready.is_empty() {
            hold.set(open);
        } else if let Some(open) = open {
            hold.lower(open);
        }
    }

    /// The watermark to hand on after the windows emitted so far, when it has moved: a
    /// window still to come ends after the applied watermark less the allowed lateness.
    fn output_watermark(&mut self) -> Option<Watermark> {
        let applied = lock(&self.windows).applied;
        let output = if applied.is_end() {
            Watermark::END
        } else {
            Watermark(applied.0.saturating_sub(self.window.lateness_nanos))
        };
        (output > self.forwarded).then(|| {
            self.forwarded = output;
            output
        })
    }

    /// Reads one input message: folds rows in, or emits the windows a new watermark closes.
    async fn step(&mut self) -> Result<()> {
        let message = self.input.next().await.transpose()?;
        let timer = self.metrics.baseline.elapsed_compute().timer();
        let mut windows = lock(&self.windows);
        let windows = &mut *windows;
        match message {
            Some(StreamMessage::Batch(batch)) => {
                self.metrics.input_rows.add(batch.num_rows());
                windows.open.insert(batch, windows.applied)?;
            }
            Some(StreamMessage::Watermark(watermark)) => {
                if watermark > windows.applied {
                    windows.applied = watermark;
                    let mut emitted = Vec::new();
                    windows.open.advance(watermark, &mut emitted)?;
                    emitted.reverse();
                    windows.ready.extend(emitted);
                }
            }
            Some(StreamMessage::Barrier(epoch)) => self.barrier = Some(epoch),
            Some(StreamMessage::Idle) => self.idle = true,
            // Stopped, or ended: open windows are complete only after the end of input.
            None => self.finished = true,
        }
        let late = windows.open.take_late_rows();
        self.metrics.late_rows.add(late);
        self.pipeline.metrics.late_rows.inc_by(late as u64);
        let size = windows.open.size();
        timer.done();
        let window = &self.window;
        self.account.hold(size, || {
            format!(
                "window state of {}({}, …) needs {size} bytes for {}, over the memory limit \
                 (raise --memory-limit, or use smaller windows or fewer keys)",
                window.kind.function_name(),
                window.input,
                windows.open.describe(),
            )
        })?;
        Ok(())
    }
}
