//! [`WindowAssignExec`]: assigns each row of any stream its windows (`window_start`,
//! `window_end`). It reads its input as messages, so it knows, for every row, the watermark
//! the aggregate above has applied when the row reaches it: a row whose every window is
//! already emitted is late, and is counted and routed to the late-data sink here, where the
//! input's full row is still at hand. Watermarks are forwarded in place.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, internal_err, plan_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::EmissionType;
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
    InputDistributionRequirements, Partitioning, PlanProperties,
};
use futures::StreamExt;

use super::WindowKind;
use super::assigner::{Assigned, WindowAssigner};
use super::constant_arrays::ConstantArrays;
use super::late_rows::LateRowRouter;
pub use super::late_rows::LateSink;
use super::provenance::WindowColumn;
use crate::stream::{DisplayNanos, ExchangeExec, key_distribution, node_id, partitions_of};
use crate::stream::{
    JobProgress, MessageStream, OperatorCheckpoint, StateSnapshot, StreamMessage, StreamingExec,
    Watermark, execute_messages, execute_rows, lock,
};

/// What an aggregate over assigned windows needs to know of them.
#[derive(Debug, Clone)]
pub struct WindowAssignment {
    pub kind: WindowKind,
    /// How long after its end a window waits for late rows, in nanoseconds.
    pub lateness_nanos: i64,
    /// What is windowed, for messages: `events`, or `(subquery)`.
    pub input: String,
    /// True when windows are on a source table's declared event-time column, whose times
    /// source positions are settled by.
    pub on_event_time: bool,
    /// True when an aggregation groups again by an upstream window aggregate's windows:
    /// each input batch is one upstream window's rows.
    pub regroups: bool,
}

/// Key expressions, over the input's or the output's columns.
type Keys = Vec<Arc<dyn PhysicalExpr>>;

/// Assigns windows of one kind on a timestamp column of its input.
#[derive(Debug)]
pub struct WindowAssignExec {
    input: Arc<dyn ExecutionPlan>,
    assignment: WindowAssignment,
    time_index: usize,
    /// The input's columns followed by `window_start`, `window_end` and `window_time`.
    windowed_schema: SchemaRef,
    projection: Option<Vec<usize>>,
    late_sink: Option<LateSink>,
    /// When the windows are assigned per key behind a hash exchange: the key over the
    /// input's columns, and the same over the output's.
    keys: Option<(Keys, Keys)>,
    metrics: ExecutionPlanMetricsSet,
    properties: Arc<PlanProperties>,
}

impl WindowAssignExec {
    /// Windows of `assignment` on column `time_index` of `input`; `windowed_schema` is the
    /// input's columns and the window columns, of which `projection` are produced.
    pub fn try_new(
        input: Arc<dyn ExecutionPlan>,
        assignment: WindowAssignment,
        time_index: usize,
        windowed_schema: SchemaRef,
        projection: Option<Vec<usize>>,
        late_sink: Option<LateSink>,
    ) -> Result<Self> {
        if !matches!(
            windowed_schema.field(time_index).data_type(),
            DataType::Timestamp(_, _)
        ) {
            return plan_err!(
                "{}: the window time column is not a TIMESTAMP",
                assignment.kind.function_name()
            );
        }
        let output = match &projection {
            Some(indices) => Arc::new(windowed_schema.project(indices)?),
            None => Arc::clone(&windowed_schema),
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(output),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            input.boundedness(),
        );
        Ok(Self {
            input,
            assignment,
            time_index,
            windowed_schema,
            projection,
            late_sink,
            keys: None,
            metrics: ExecutionPlanMetricsSet::new(),
            properties: Arc::new(properties),
        })
    }

    /// Where late rows go, if the table has a `'late_data.sink'`.
    pub fn late_sink(&self) -> Option<&LateSink> {
        self.late_sink.as_ref()
    }

    /// The input columns that `output_keys` (columns of its output, the key of the
    /// aggregate above) are; `None` when a key is not an input column (a window column,
    /// or an expression).
    pub fn input_keys(
        &self,
        output_keys: &[Arc<dyn PhysicalExpr>],
    ) -> Option<Vec<Arc<dyn PhysicalExpr>>> {
        let added = self.windowed_schema.fields().len() - 3;
        let mut input_keys: Vec<Arc<dyn PhysicalExpr>> = Vec::with_capacity(output_keys.len());
        for key in output_keys {
            let column = key.downcast_ref::<Column>()?;
            let index = match &self.projection {
                Some(indices) => indices[column.index()],
                None => column.index(),
            };
            if index >= added {
                return None;
            }
            let name = self.windowed_schema.field(index).name();
            input_keys.push(Arc::new(Column::new(name, index)));
        }
        Some(input_keys)
    }

    /// This assignment run in `partitions` partitions, behind a hash exchange on the input
    /// columns that `output_keys` are (see [`Self::input_keys`]): each partition then
    /// assigns windows to its keys' rows, with the watermark of every input partition
    /// merged. `None` when a key is not an input column, or when late rows go to a sink.
    pub fn keyed(
        &self,
        output_keys: &[Arc<dyn PhysicalExpr>],
        partitions: usize,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        // Late rows go to their sink from one writer: such an assignment stays in one
        // partition, ahead of the aggregate's exchange.
        if self.late_sink.is_some() {
            return Ok(None);
        }
        let Some(input_keys) = self.input_keys(output_keys) else {
            return Ok(None);
        };
        // Rows merged for an assignment in one partition are split by key instead.
        let input = match self.input.downcast_ref::<ExchangeExec>() {
            Some(gather) if gather.is_gather() => Arc::clone(gather.input()),
            _ => Arc::clone(&self.input),
        };
        let exchange = Arc::new(ExchangeExec::hash(input, input_keys.clone(), partitions));
        let mut keyed = Self::try_new(
            exchange,
            self.assignment.clone(),
            self.time_index,
            Arc::clone(&self.windowed_schema),
            self.projection.clone(),
            self.late_sink.clone(),
        )?
        .with_keys(input_keys, output_keys.to_vec());
        keyed.metrics = ExecutionPlanMetricsSet::new();
        Ok(Some(Arc::new(keyed)))
    }

    fn with_keys(
        mut self,
        input_keys: Vec<Arc<dyn PhysicalExpr>>,
        output_keys: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Self {
        let partitions = partitions_of(&self.input);
        let partitioning = Partitioning::Hash(output_keys.clone(), partitions);
        let properties = self
            .properties
            .as_ref()
            .clone()
            .with_partitioning(partitioning);
        self.properties = Arc::new(properties);
        self.keys = Some((input_keys, output_keys));
        self
    }

    /// The windows this operator assigns.
    pub fn assignment(&self) -> &WindowAssignment {
        &self.assignment
    }

    /// Output column `index` as a window column, if it is one.
    pub fn window_column(&self, index: usize) -> Option<WindowColumn> {
        let index = match &self.projection {
            Some(indices) => *indices.get(index)?,
            None => index,
        };
        let added = self.windowed_schema.fields().len() - 3;
        match index.checked_sub(added)? {
            0 => Some(WindowColumn::Start),
            1 => Some(WindowColumn::End),
            2 => Some(WindowColumn::Time),
            _ => None,
        }
    }
}

impl DisplayAs for WindowAssignExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let time = self.windowed_schema.field(self.time_index).name();
        write!(f, "WindowAssignExec: {}, time={time}", self.assignment.kind)?;
        let lateness = self.assignment.lateness_nanos;
        if lateness > 0 {
            write!(f, ", allowed_lateness={}", DisplayNanos(lateness))?;
        }
        if let Some(late) = &self.late_sink {
            write!(f, ", late_data.sink={}", late.table)?;
        }
        Ok(())
    }
}

impl ExecutionPlan for WindowAssignExec {
    fn name(&self) -> &str {
        "WindowAssignExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    /// Lateness is judged against one watermark, every source partition's merged: the
    /// input in one partition, or split by key behind an exchange, which merges them.
    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        let keys = self.keys.as_ref().map(|(input, _)| input.clone());
        InputDistributionRequirements::new(vec![key_distribution(keys.unwrap_or_default())])
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(input) = children.pop() else {
            return internal_err!("WindowAssignExec takes one input");
        };
        let rebuilt = Self::try_new(
            input,
            self.assignment.clone(),
            self.time_index,
            Arc::clone(&self.windowed_schema),
            self.projection.clone(),
            self.late_sink.clone(),
        )?;
        Ok(Arc::new(match &self.keys {
            Some((input_keys, output_keys)) => {
                rebuilt.with_keys(input_keys.clone(), output_keys.clone())
            }
            None => rebuilt,
        }))
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

impl StreamingExec for WindowAssignExec {
    fn execute_messages(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<MessageStream> {
        // What a checkpoint keeps: the watermark handed on and the batches not yet handed on.
        let progress = JobProgress::of_task(&context);
        let mut held = Held {
            applied: Watermark::MIN,
            queue: VecDeque::new(),
        };
        let mut checkpoint = OperatorCheckpoint::of(progress, node_id(self));
        let partitions = self.properties().partitioning.partition_count();
        let slot = checkpoint.slot("window-assign", partition, partitions, &[])?;
        if let Some(restored) = slot.as_ref().and_then(|s| s.restored.as_ref()) {
            held.applied = Watermark(restored.scalar("applied")?);
            for batch in &restored.batches {
                held.queue.push_back(RecordBatch::try_new(
                    self.schema(),
                    batch.columns().to_vec(),
                )?);
            }
        }
        let held = Arc::new(Mutex::new(held));
        if let Some(slot) = slot {
            let held = Arc::clone(&held);
            let schema = self.schema();
            checkpoint.register(&slot, move || {
                let held = lock(&held);
                let queued = held.queue.iter().cloned().collect();
                StateSnapshot::new(Arc::clone(&schema), queued, &[("applied", held.applied.0)])
            });
        }
        let state = AssignState {
            input: execute_messages(&self.input, partition, Arc::clone(&context))?,
            assigner: WindowAssigner {
                kind: self.assignment.kind,
                lateness: self.assignment.lateness_nanos,
                time_index: self.time_index,
                windowed_schema: Arc::clone(&self.windowed_schema),
                // The three columns of every window a pane's rows land in, and of the
                // next pane's new window.
                constants: ConstantArrays::new(3 * (self.assignment.kind.windows_per_pane() + 1)),
            },
            projection: self.projection.clone(),
            held,
            checkpoint,
            late: LateRowRouter::new(self.late_sink.clone(), self.input.schema(), context),
            baseline: BaselineMetrics::new(&self.metrics, partition),
            late_rows: MetricBuilder::new(&self.metrics).counter("late_rows", partition),
        };
        Ok(Box::pin(futures::stream::try_unfold(
            state,
            |mut state| async move {
                let message = state.next().await?;
                Ok(message.map(|message| (message, state)))
            },
        )))
    }
}

struct AssignState {
    input: MessageStream,
    assigner: WindowAssigner,
    projection: Option<Vec<usize>>,
    held: Arc<Mutex<Held>>,
    checkpoint: OperatorCheckpoint,
    late: LateRowRouter,
    baseline: BaselineMetrics,
    late_rows: Count,
}

/// What the assignment holds between messages; a checkpoint snapshots it.
struct Held {
    /// The last watermark handed on: the one the aggregate above has applied when the
    /// next row reaches it.
    applied: Watermark,
    /// Windowed batches of the current input batch not yet handed on.
    queue: VecDeque<RecordBatch>,
}

impl AssignState {
    async fn next(&mut self) -> Result<Option<StreamMessage>> {
        loop {
            if let Some(rows) = lock(&self.held).queue.pop_front() {
                return Ok(Some(StreamMessage::Batch(rows)));
            }
            match self.input.next().await.transpose()? {
                None => {
                    self.late.finish().await?;
                    return Ok(None);
                }
                Some(StreamMessage::Batch(batch)) => {
                    let timer = self.baseline.elapsed_compute().timer();
                    let late = {
                        let mut held = lock(&self.held);
                        let Assigned { rows, late } = self.assigner.assign(&batch, held.applied)?;
                        for rows in rows {
                            let rows = match &self.projection {
                                Some(indices) => rows.project(indices)?,
                                None => rows,
                            };
                            self.baseline.record_output(rows.num_rows());
                            held.queue.push_back(rows);
                        }
                        late
                    };
                    timer.done();
                    if let Some(late) = late {
                        self.late_rows.add(late.num_rows());
                        self.late.route(late).await?;
                    }
                }
                Some(StreamMessage::Watermark(watermark)) => {
                    {
                        let mut held = lock(&self.held);
                        held.applied = held.applied.max(watermark);
                    }
                    if watermark.is_end() {
                        self.late.finish().await?;
                    }
                    return Ok(Some(StreamMessage::Watermark(watermark)));
                }
                Some(StreamMessage::Idle) => return Ok(Some(StreamMessage::Idle)),
                // The queue is empty here: what is held is the applied watermark.
                Some(StreamMessage::Barrier(epoch)) => {
                    self.checkpoint.on_barrier(epoch);
                    return Ok(Some(StreamMessage::Barrier(epoch)));
                }
            }
        }
    }
}
