//! [`LookupJoinExec`]: a stream joined with a bounded table held in memory. The table is
//! read in full before the first stream row is joined, then read again in the background
//! every `'lookup.refresh'`; each stream batch is joined with the latest complete copy as
//! it arrives, so the stream is never buffered and never waits for a refresh.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{filter_record_batch, not, take};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::tree_node::{TreeNodeIterator, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result, exec_err, internal_err};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr, PhysicalExprRef};
use datafusion::physical_plan::execution_plan::EmissionType;
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, execute_stream,
};
use datafusion::prelude::SessionConfig;
use futures::TryStreamExt;
use tokio::sync::watch;

use super::index::LookupIndex;
use crate::stream::{
    DisplayNanos, MessageStream, PipelineContext, StreamingExec, execute_messages, execute_rows,
    map_batches,
};

/// What a stream row becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupKind {
    /// One row per matching table row (`JOIN`).
    Inner,
    /// As `Inner`, and an unmatched stream row once with NULL table columns (`LEFT JOIN`
    /// with the stream on the left).
    Outer,
    /// The stream row if some table row matches (`WHERE EXISTS`, `IN`).
    Semi,
    /// The stream row if no table row matches (`WHERE NOT EXISTS`).
    Anti,
}

/// The table side of a lookup join: its plan, its keys, and how often it is read again.
#[derive(Debug, Clone)]
pub struct LookupTable {
    /// The table's name, for `EXPLAIN` and errors.
    pub name: String,
    pub plan: Arc<dyn ExecutionPlan>,
    pub keys: Vec<PhysicalExprRef>,
    /// `None`: read once per query.
    pub refresh: Option<Duration>,
}

/// How stream rows and table rows make output rows.
#[derive(Debug)]
pub struct JoinShape {
    pub stream_keys: Vec<PhysicalExprRef>,
    pub kind: LookupKind,
    /// The stream's columns come first in the joined row (it is the join's left input).
    pub stream_is_left: bool,
    /// The joined row before `projection`.
    pub join_schema: SchemaRef,
    pub projection: Option<Vec<usize>>,
}

/// A streaming input joined with a [`LookupTable`].
#[derive(Debug)]
pub struct LookupJoinExec {
    stream: Arc<dyn ExecutionPlan>,
    table: LookupTable,
    shape: Arc<JoinShape>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl LookupJoinExec {
    /// A lookup join producing `schema` (the join's output: `shape.join_schema` projected).
    pub fn new(
        stream: Arc<dyn ExecutionPlan>,
        table: LookupTable,
        shape: Arc<JoinShape>,
        schema: SchemaRef,
    ) -> Self {
        let input = stream.properties();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            input.output_partitioning().clone(),
            EmissionType::Incremental,
            input.boundedness,
        );
        Self {
            stream,
            table,
            shape,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// The table the stream looks up.
    pub fn table(&self) -> &LookupTable {
        &self.table
    }
}

impl JoinShape {
    /// Joins one stream batch with the current copy of the table.
    fn join(&self, batch: &RecordBatch, index: &LookupIndex) -> Result<RecordBatch> {
        let joined = match self.kind {
            LookupKind::Semi | LookupKind::Anti => {
                let matches = index.probe(batch, &self.stream_keys, true)?;
                let mut found = vec![false; batch.num_rows()];
                for (stream_row, table_row) in matches
                    .stream_rows
                    .values()
                    .iter()
                    .zip(matches.table_rows.iter())
                {
                    found[*stream_row as usize] |= table_row.is_some();
                }
                let found = BooleanArray::from(found);
                let keep = if self.kind == LookupKind::Semi {
                    found
                } else {
                    not(&found)?
                };
                filter_record_batch(batch, &keep)?
            }
            LookupKind::Inner | LookupKind::Outer => {
                let matches =
                    index.probe(batch, &self.stream_keys, self.kind == LookupKind::Outer)?;
                let taken = |columns: &[ArrayRef], rows| -> Result<Vec<ArrayRef>> {
                    columns
                        .iter()
                        .map(|c| Ok(take(c.as_ref(), rows, None)?))
                        .collect()
                };
                let stream_columns = taken(batch.columns(), &matches.stream_rows)?;
                let table_columns = taken(index.rows().columns(), &matches.table_rows)?;
                let columns = if self.stream_is_left {
                    [stream_columns, table_columns].concat()
                } else {
                    [table_columns, stream_columns].concat()
                };
                RecordBatch::try_new(Arc::clone(&self.join_schema), columns)?
            }
        };
        match &self.projection {
            Some(indices) => Ok(joined.project(indices)?),
            None => Ok(joined),
        }
    }
}

/// A copy of the table, or why the first read failed.
type Loaded = Option<std::result::Result<Arc<LookupIndex>, String>>;

/// Reads the table, then again every `refresh`, publishing each complete copy.
async fn keep_loaded(
    table: LookupTable,
    context: Arc<TaskContext>,
    publish: watch::Sender<Loaded>,
    reservation: MemoryReservation,
    loads: Count,
    failures: Count,
    pipeline: Arc<PipelineContext>,
) {
    loop {
        let loaded = load(&table, &context).await.and_then(|index| {
            let size = index.size();
            reservation.try_resize(size).map_err(|e| {
                DataFusionError::ResourcesExhausted(format!(
                    "lookup table '{}' needs {size} bytes for {} rows, over the memory limit: {e}",
                    table.name,
                    index.len()
                ))
            })?;
            Ok(index)
        });
        let first = publish.borrow().is_none();
        match loaded {
            Ok(index) => {
                loads.add(1);
                publish.send_replace(Some(Ok(Arc::new(index))));
            }
            Err(e) if first => {
                publish.send_replace(Some(Err(format!(
                    "reading lookup table '{}': {e}",
                    table.name
                ))));
                return;
            }
            Err(e) => {
                // The previous copy stays in use; the next refresh tries again.
                failures.add(1);
                pipeline.metrics.lookup_refresh_failures.inc();
                eprintln!(
                    "warning: reading lookup table '{}' again failed, keeping the copy read before: {e}",
                    table.name
                );
            }
        }
        match table.refresh {
            Some(every) => tokio::time::sleep(every).await,
            None => {
                // Read once: the reservation lives as long as the copy is in use.
                publish.closed().await;
                return;
            }
        }
        if publish.is_closed() {
            return;
        }
    }
}

async fn load(table: &LookupTable, context: &Arc<TaskContext>) -> Result<LookupIndex> {
    let batches: Vec<RecordBatch> = execute_stream(Arc::clone(&table.plan), Arc::clone(context))?
        .try_collect()
        .await?;
    LookupIndex::build(&table.plan.schema(), &batches, &table.keys)
}

/// The context the table is read in: the query's functions and runtime, without its
/// pipeline's checkpoint bookkeeping (a lookup table is read whole each time, never resumed).
fn table_context(context: &TaskContext) -> Arc<TaskContext> {
    let config = SessionConfig::from(context.session_config().options().as_ref().clone());
    Arc::new(TaskContext::new(
        context.task_id(),
        context.session_id(),
        config,
        context.scalar_functions().clone(),
        context.higher_order_functions().clone(),
        context.aggregate_functions().clone(),
        context.window_functions().clone(),
        context.runtime_env(),
    ))
}

impl DisplayAs for LookupJoinExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let on: Vec<String> = self
            .shape
            .stream_keys
            .iter()
            .zip(&self.table.keys)
            .map(|(s, t)| format!("{s} = {t}"))
            .collect();
        write!(
            f,
            "LookupJoinExec: type={:?}, table={} ({}), on=[{}], refresh=",
            self.shape.kind,
            self.table.name,
            if self.shape.stream_is_left {
                "right"
            } else {
                "left"
            },
            on.join(", ")
        )?;
        match self.table.refresh {
            Some(every) => write!(f, "{}", DisplayNanos(every.as_nanos() as i64))?,
            None => write!(f, "once")?,
        }
        if let Some(projection) = &self.shape.projection {
            let names: Vec<&str> = projection
                .iter()
                .map(|&i| self.shape.join_schema.field(i).name().as_str())
                .collect();
            write!(f, ", projection=[{}]", names.join(", "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for LookupJoinExec {
    fn name(&self) -> &str {
        "LookupJoinExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        if self.shape.stream_is_left {
            vec![&self.stream, &self.table.plan]
        } else {
            vec![&self.table.plan, &self.stream]
        }
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        let keys = self.shape.stream_keys.iter().chain(&self.table.keys);
        keys.apply_until_stop(f)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [first, second] = <[_; 2]>::try_from(children).map_err(|_| {
            DataFusionError::Internal("LookupJoinExec takes two inputs".to_string())
        })?;
        let (stream, table_plan) = if self.shape.stream_is_left {
            (first, second)
        } else {
            (second, first)
        };
        let table = LookupTable {
            plan: table_plan,
            ..self.table.clone()
        };
        Ok(Arc::new(Self::new(
            stream,
            table,
            Arc::clone(&self.shape),
            self.schema(),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        execute_rows(self, partition, context)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

impl StreamingExec for LookupJoinExec {
    /// Each stream batch joined with the table as last read; watermarks pass through.
    fn execute_messages(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<MessageStream> {
        if self.shape.stream_keys.len() != self.table.keys.len()
            || self.shape.stream_keys.is_empty()
        {
            return internal_err!("LookupJoinExec needs one table key per stream key");
        }
        let stream = execute_messages(&self.stream, partition, Arc::clone(&context))?;
        let reservation = MemoryConsumer::new(format!("LookupJoinExec[{}]", self.table.name))
            .register(context.memory_pool());
        let (publish, mut loaded) = watch::channel::<Loaded>(None);
        let loader = SpawnedTask::spawn(keep_loaded(
            self.table.clone(),
            table_context(&context),
            publish,
            reservation,
            MetricBuilder::new(&self.metrics).counter("table_loads", partition),
            MetricBuilder::new(&self.metrics).counter("table_load_failures", partition),
            PipelineContext::of_task(&context),
        ));
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let shape = Arc::clone(&self.shape);
        let joined = futures::stream::once(async move {
            // The first copy, before any stream row is joined.
            let first = loaded
                .wait_for(Option::is_some)
                .await
                .map_err(|_| {
                    DataFusionError::Execution("the lookup table reader stopped".to_string())
                })?
                .clone();
            if let Some(Err(message)) = first {
                return exec_err!("{message}");
            }
            let joined = map_batches(stream, move |batch| {
                // The loader lives as long as the stream it serves.
                let _ = &loader;
                let current = loaded.borrow().clone();
                let Some(Ok(index)) = current else {
                    return internal_err!("the lookup table was not read");
                };
                let timer = baseline.elapsed_compute().timer();
                let out = shape.join(&batch, &index)?;
                timer.done();
                baseline.record_output(out.num_rows());
                Ok(out)
            });
            Ok::<_, DataFusionError>(joined)
        })
        .try_flatten();
        Ok(Box::pin(joined))
    }
}
