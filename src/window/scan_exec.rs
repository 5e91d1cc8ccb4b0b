//! [`WindowScanExec`]: reads a source table and assigns each row its windows (`window_start`,
//! `window_end`). Rows whose every window has already been emitted are late: they are
//! counted and routed here, where the source's full row is still at hand. After each batch
//! it publishes the source's watermark for the [`WindowAggregateExec`](super::WindowAggregateExec)
//! above it.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{BooleanArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{filter_record_batch, not, take_record_batch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, internal_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;

use super::event_time::time_array_from_nanos;
use super::late_rows::LateRowRouter;
pub use super::late_rows::LateSink;
use super::spec::{DisplayNanos, floor};
use super::{Watermark, WatermarkCell, WindowKind, nanos_values};
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
            late: LateRowRouter::new(self.late_sink.clone(), source_schema, context),
        };
        let cell = Arc::clone(&self.watermark);
        let projection = self.projection.clone();
        let stream = futures::stream::try_unfold(state, move |mut state| {
            let assigner = assigner.clone();
            let cell = Arc::clone(&cell);
            let projection = projection.clone();
            async move {
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
                state.applied = watermark;
                cell.set(watermark);
                let rows = match &projection {
                    Some(indices) => rows.project(indices)?,
                    None => rows,
                };
                Ok(Some((rows, state)))
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
    applied: Watermark,
    late: LateRowRouter,
}

/// A batch split into rows with their windows and rows that are late.
struct Assigned {
    rows: RecordBatch,
    late: Option<RecordBatch>,
}

/// Assigns windows to rows, given the watermark before the batch.
#[derive(Debug, Clone)]
struct WindowAssigner {
    kind: WindowKind,
    lateness: i64,
    time_index: usize,
    windowed_schema: SchemaRef,
}

impl WindowAssigner {
    fn assign(&self, batch: &RecordBatch, applied: Watermark) -> Result<Assigned> {
        let ts = nanos_values(batch.column(self.time_index))?;
        // A window [start, end) is emitted once `end + lateness <= watermark`.
        let open = |end: i64| end.saturating_add(self.lateness) > applied.0;
        let (rows, starts, ends, late) = match self.kind {
            WindowKind::Hop { slide, size } => {
                let mut rows = Vec::with_capacity(ts.len());
                let mut starts = Vec::with_capacity(ts.len());
                let mut late = vec![true; ts.len()];
                for j in 0..size / slide {
                    for (row, &t) in ts.iter().enumerate() {
                        if t == i64::MIN {
                            continue;
                        }
                        let start = floor(t, slide) - j * slide;
                        if open(start + size) {
                            rows.push(row as u32);
                            starts.push(start);
                            late[row] = false;
                        }
                    }
                }
                let ends = starts.iter().map(|s| s + size).collect();
                (Some(rows), starts, ends, late)
            }
            WindowKind::Tumble { size } => {
                let starts: Vec<i64> = ts.iter().map(|&t| floor(t, size)).collect();
                let late: Vec<bool> = ts
                    .iter()
                    .zip(&starts)
                    .map(|(&t, &s)| t == i64::MIN || !open(s + size))
                    .collect();
                let ends = starts.iter().map(|s| s + size).collect();
                (None, starts, ends, late)
            }
            WindowKind::Session { gap } => {
                let late = ts
                    .iter()
                    .map(|&t| t == i64::MIN || !open(t.saturating_add(gap)))
                    .collect();
                let ends = ts.iter().map(|t| t.saturating_add(gap)).collect();
                (None, ts, ends, late)
            }
        };
        let any_late = late.iter().any(|&l| l);
        let late_rows = any_late
            .then(|| filter_record_batch(batch, &BooleanArray::from(late.clone())))
            .transpose()?;
        let (kept, starts, ends) = match rows {
            Some(rows) => (
                take_record_batch(batch, &UInt32Array::from(rows))?,
                starts,
                ends,
            ),
            None if any_late => {
                let keep = not(&BooleanArray::from(late.clone()))?;
                let pick = |values: Vec<i64>| -> Vec<i64> {
                    values
                        .into_iter()
                        .zip(&late)
                        .filter(|(_, l)| !**l)
                        .map(|(v, _)| v)
                        .collect()
                };
                (filter_record_batch(batch, &keep)?, pick(starts), pick(ends))
            }
            None => (batch.clone(), starts, ends),
        };
        let time_type = self.windowed_schema.field(self.time_index).data_type();
        let mut columns = kept.columns().to_vec();
        columns.push(time_array_from_nanos(starts, time_type)?);
        columns.push(time_array_from_nanos(ends, time_type)?);
        let rows = RecordBatch::try_new(Arc::clone(&self.windowed_schema), columns)?;
        Ok(Assigned {
            rows,
            late: late_rows,
        })
    }
}
