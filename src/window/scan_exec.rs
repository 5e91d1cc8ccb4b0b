//! [`WindowScanExec`]: reads a source table and assigns each row its windows (`window_start`,
//! `window_end`). Rows whose every window has already been emitted are late: they are
//! counted and routed here, where the source's full row is still at hand. After each batch
//! it publishes the source's watermark for the [`WindowAggregateExec`](super::WindowAggregateExec)
//! above it.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, internal_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;

use super::assigner::{Assigned, WindowAssigner};
use super::late_rows::LateRowRouter;
pub use super::late_rows::LateSink;
use super::spec::DisplayNanos;
use super::{Watermark, WatermarkCell, WindowKind};
use crate::connector::{SourceBatch, SourceDefinition, open_source, source_properties};

/// Reads a source and assigns windows of one kind on its event-time column.
#[derive(Debug)]
pub struct WindowScanExec {
    definition: Arc<SourceDefinition>,
    kind: WindowKind,
    time_index: usize,
    /// The source's columns followed by `window_start` and `window_end`.
    windowed_schema: SchemaRef,
    projection: Option<Vec<usize>>,
    late_sink: Option<LateSink>,
    watermark: Arc<WatermarkCell>,
    properties: Arc<PlanProperties>,
}

impl WindowScanExec {
    pub fn try_new(
        definition: Arc<SourceDefinition>,
        kind: WindowKind,
        time_index: usize,
        windowed_schema: SchemaRef,
        projection: Option<Vec<usize>>,
        late_sink: Option<LateSink>,
    ) -> Result<Self> {
        let output = match &projection {
            Some(indices) => Arc::new(windowed_schema.project(indices)?),
            None => Arc::clone(&windowed_schema),
        };
        let properties = source_properties(output, definition.source.is_bounded());
        Ok(Self {
            definition,
            kind,
            time_index,
            windowed_schema,
            projection,
            late_sink,
            watermark: Arc::new(WatermarkCell::default()),
            properties: Arc::new(properties),
        })
    }

    /// The window kind this scan assigns.
    pub fn kind(&self) -> WindowKind {
        self.kind
    }

    /// Where this scan publishes the watermark after each batch it yields.
    pub fn watermark_cell(&self) -> &Arc<WatermarkCell> {
        &self.watermark
    }

    /// The allowed lateness of the source, in nanoseconds.
    pub fn lateness_nanos(&self) -> i64 {
        self.definition.lateness.lateness_nanos()
    }

    /// True when windows are assigned on the table's declared event-time column (the one
    /// its `WATERMARK FOR` names), whose times source positions are settled by.
    pub fn on_event_time(&self) -> bool {
        let time = self.windowed_schema.field(self.time_index).name();
        self.definition
            .watermark
            .as_ref()
            .is_some_and(|spec| &spec.column == time)
    }

    /// The source table's name.
    pub fn table(&self) -> &str {
        &self.definition.table
    }
}

impl DisplayAs for WindowScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let time = self.windowed_schema.field(self.time_index).name();
        write!(
            f,
            "WindowScanExec: {}, time={time}, table={}, source={}",
            self.kind,
            self.definition.table,
            self.definition.source.describe()
        )?;
        if let Some(watermark) = &self.definition.watermark {
            write!(f, ", watermark={}", watermark.sql)?;
        }
        if let Some(idle) = self.definition.lateness.idle_timeout {
            let nanos = i64::try_from(idle.as_nanos()).unwrap_or(i64::MAX);
            write!(f, ", idle_timeout={}", DisplayNanos(nanos))?;
        }
        let lateness = self.lateness_nanos();
        if lateness > 0 {
            write!(f, ", allowed_lateness={}", DisplayNanos(lateness))?;
        }
        if let Some(late) = &self.late_sink {
            write!(f, ", late_data.sink={}", late.table)?;
        }
        Ok(())
    }
}

impl ExecutionPlan for WindowScanExec {
    fn name(&self) -> &str {
        "WindowScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        _partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let DataType::Timestamp(_, _) = self.windowed_schema.field(self.time_index).data_type()
        else {
            return internal_err!("window time column is not a timestamp");
        };
        let assigner = WindowAssigner {
            kind: self.kind,
            lateness: self.lateness_nanos(),
            time_index: self.time_index,
            windowed_schema: Arc::clone(&self.windowed_schema),
        };
        let source_schema = self.definition.source.schema();
        let state = ScanState {
            input: open_source(&self.definition, Arc::clone(&context)).boxed(),
            applied: Watermark::MIN,
            queue: VecDeque::new(),
            next_watermark: Watermark::MIN,
            late: LateRowRouter::new(self.late_sink.clone(), source_schema, context),
        };
        let cell = Arc::clone(&self.watermark);
        let projection = self.projection.clone();
        let windowed_schema = Arc::clone(&self.windowed_schema);
        let stream = futures::stream::try_unfold(state, move |mut state| {
            let assigner = assigner.clone();
            let cell = Arc::clone(&cell);
            let projection = projection.clone();
            let windowed_schema = Arc::clone(&windowed_schema);
            async move {
                loop {
                    if let Some(rows) = state.queue.pop_front() {
                        if state.queue.is_empty() {
                            // Every row of the source batch is on its way: now its watermark.
                            state.applied = state.next_watermark;
                            cell.set(state.next_watermark);
                        }
                        let rows = match &projection {
                            Some(indices) => rows.project(indices)?,
                            None => rows,
                        };
                        return Ok(Some((rows, state)));
                    }
                    let Some(SourceBatch { batch, watermark }) =
                        state.input.next().await.transpose()?
                    else {
                        state.late.finish().await?;
                        return Ok(None);
                    };
                    let Assigned { rows, late } = assigner.assign(&batch, state.applied)?;
                    if let Some(late) = late {
                        state.late.route(late).await?;
                    }
                    if watermark.is_end() {
                        state.late.finish().await?;
                    }
                    state.queue.extend(rows);
                    if state.queue.is_empty() {
                        // Nothing to hand on, but the watermark still moves.
                        state
                            .queue
                            .push_back(RecordBatch::new_empty(Arc::clone(&windowed_schema)));
                    }
                    state.next_watermark = watermark;
                }
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            stream,
        )))
    }
}

struct ScanState {
    input: futures::stream::BoxStream<'static, Result<SourceBatch>>,
    /// The watermark the aggregate above has applied: the one after the last source batch
    /// whose rows have all been handed on.
    applied: Watermark,
    late: LateRowRouter,
    /// Windowed batches of the current source batch not yet handed on, and the watermark
    /// to publish with the last of them.
    queue: VecDeque<RecordBatch>,
    next_watermark: Watermark,
}
