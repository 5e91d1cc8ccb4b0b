//! [`SourceExec`]: the leaf operator that reads a source table's splits.

use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::{StreamExt, TryStreamExt};

use super::dedup::Deduplicator;
use super::table::SourceDefinition;
use crate::stream::{
    DisplayNanos, JobProgress, MessageStream, OperatorCheckpoint, PipelineContext, ScanPartition,
    Source, SourceBatch, SourceStream, StreamMessage, StreamingExec, Watermark, execute_rows, lock,
    node_id,
};

/// Reads a source table: every split, merged into one partition, projected.
#[derive(Debug)]
pub struct SourceExec {
    definition: Arc<SourceDefinition>,
    projection: Option<Vec<usize>>,
    metrics: ExecutionPlanMetricsSet,
    properties: Arc<PlanProperties>,
}

impl SourceExec {
    /// A scan of `definition` producing the columns in `projection` (all when `None`).
    pub fn try_new(
        definition: Arc<SourceDefinition>,
        projection: Option<Vec<usize>>,
    ) -> Result<Self> {
        let schema = definition.source.schema();
        let schema = match &projection {
            Some(indices) => Arc::new(schema.project(indices)?),
            None => schema,
        };
        let properties = source_properties(schema, definition.source.is_bounded());
        Ok(Self {
            definition,
            projection,
            metrics: ExecutionPlanMetricsSet::new(),
            properties: Arc::new(properties),
        })
    }

    /// What the scan reads.
    pub fn source(&self) -> &Arc<dyn Source> {
        &self.definition.source
    }

    /// The columns a deduplicating table (`'dedup.key'`) drops repeated rows by.
    pub fn dedup_columns(&self) -> Option<Vec<String>> {
        Some(self.definition.dedup.as_ref()?.names.clone())
    }

    /// The source table's name.
    pub fn table(&self) -> &str {
        &self.definition.table
    }

    /// The index of the table's event-time column (the one its `WATERMARK` is on) among
    /// the columns this scan produces, if it produces it.
    pub fn event_time_column(&self) -> Option<usize> {
        let column = &self.definition.watermark.as_ref()?.column;
        let index = self.definition.source.schema().index_of(column).ok()?;
        match &self.projection {
            Some(indices) => indices.iter().position(|&i| i == index),
            None => Some(index),
        }
    }

    /// The name of the table's event-time column, if it declares one.
    pub fn event_time_name(&self) -> Option<String> {
        Some(self.definition.watermark.as_ref()?.column.clone())
    }

    /// This scan read in `partitions` partitions, each reading its share of the splits;
    /// `None` when it stays in one: a deduplicating table sees every row of a key in one
    /// place only when one partition reads them all.
    pub fn split(&self, partitions: usize) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let splits = self.definition.source.split_count().unwrap_or(partitions);
        let partitions = partitions.min(splits);
        if partitions <= 1 || self.definition.dedup.is_some() {
            return Ok(None);
        }
        let properties = self
            .properties
            .as_ref()
            .clone()
            .with_partitioning(Partitioning::UnknownPartitioning(partitions));
        Ok(Some(Arc::new(Self {
            definition: Arc::clone(&self.definition),
            projection: self.projection.clone(),
            metrics: ExecutionPlanMetricsSet::new(),
            properties: Arc::new(properties),
        })))
    }

    /// How long a join of two streams keeps this table's rows (`'state.ttl'`).
    pub fn state_ttl(&self) -> Option<std::time::Duration> {
        self.definition.state_ttl
    }

    /// How often a lookup join reads this table again, if it is given.
    pub fn lookup_refresh(&self) -> Option<std::time::Duration> {
        self.definition.lookup_refresh
    }
}

/// Plan properties of a leaf that reads a source: one partition, incremental emission.
pub fn source_properties(schema: SchemaRef, bounded: bool) -> PlanProperties {
    PlanProperties::new(
        EquivalenceProperties::new(schema),
        Partitioning::UnknownPartitioning(1),
        EmissionType::Incremental,
        if bounded {
            Boundedness::Bounded
        } else {
            Boundedness::Unbounded {
                requires_infinite_memory: false,
            }
        },
    )
}

/// Opens the splits of `definition` that `scan` reads and merges them into a
/// [`SourceStream`], dropping duplicate rows when the table deduplicates. In a pipeline
/// job, the stream puts the job's checkpoint barriers in, with the source's state and its
/// splits' positions snapshotted at each.
pub fn open_source(
    definition: &Arc<SourceDefinition>,
    context: Arc<TaskContext>,
    scan: ScanPartition,
    node: usize,
) -> impl futures::Stream<Item = Result<SourceBatch>> + Send + 'static {
    let definition = Arc::clone(definition);
    let job = JobProgress::of_task(&context);
    // Named now, while the plan is executed in its fixed order, not when first polled.
    let progress = job.clone();
    let mut checkpoint = OperatorCheckpoint::of(job.clone(), node);
    let slots = checkpoint
        .slot("source", scan.index, scan.count, &[])
        .and_then(|source| {
            let dedup = match definition.dedup {
                Some(_) => checkpoint.slot("dedup", scan.index, scan.count, &[])?,
                None => None,
            };
            Ok((source, dedup))
        });
    let scan = match &slots {
        Ok((Some(source), _)) => scan.of_scan(&source.id),
        _ => scan,
    };
    let scan = Arc::new(scan);
    let opened = {
        let scan = Arc::clone(&scan);
        async move {
            let (source_slot, dedup_slot) = slots?;
            let pipeline = PipelineContext::of_task(&context);
            let splits = definition
                .source
                .open(Arc::clone(&context), definition.watermark.as_ref(), &scan)
                .await?;
            let schema = definition.source.schema();
            let mut stream = SourceStream::new(
                Arc::clone(&schema),
                splits,
                definition.watermark.clone(),
                definition.lateness.idle_timeout,
                Arc::clone(&pipeline),
                scan.counts.clone(),
            );
            if let Some(progress) = &progress {
                stream = stream.with_barriers(Arc::clone(progress));
                if let Some(arrivals) = progress.arrivals() {
                    stream = stream.recording_arrivals(arrivals);
                }
            }
            if let Some(slot) = source_slot {
                stream.checkpoint_as(slot, &mut checkpoint)?;
            }
            let Some(spec) = definition.dedup.clone() else {
                return Ok::<_, DataFusionError>((stream.boxed(), checkpoint));
            };
            let reservation = MemoryConsumer::new(format!("dedup[{}]", definition.table))
                .register(context.memory_pool());
            let mut deduplicator =
                Deduplicator::try_new(spec, &schema, definition.watermark.as_ref())?;
            if let Some(restored) = dedup_slot.as_ref().and_then(|s| s.restored.as_ref()) {
                deduplicator.restore(restored)?;
            }
            let deduplicator = Arc::new(Mutex::new(deduplicator));
            if let Some(slot) = dedup_slot {
                let deduplicator = Arc::clone(&deduplicator);
                checkpoint.register(&slot, move || lock(&deduplicator).snapshot());
            }
            let table = definition.table.clone();
            let counts = scan.counts.clone();
            let deduplicated = stream.map(move |item| {
                item.and_then(|source_batch| {
                    let mut deduplicator = lock(&deduplicator);
                    let (batch, dropped) =
                        deduplicator.apply(source_batch.batch, source_batch.watermark)?;
                    counts.duplicates.inc_by(dropped as u64);
                    let size = deduplicator.size();
                    reservation.try_resize(size).map_err(|e| {
                        DataFusionError::ResourcesExhausted(format!(
                            "deduplicating table '{table}' needs {size} bytes for {} keys, over the memory limit \
                             (shorten 'dedup.ttl' or raise the limit): {e}",
                            deduplicator.len()
                        ))
                    })?;
                    Ok(SourceBatch {
                        batch,
                        ..source_batch
                    })
                })
            });
            Ok((deduplicated.boxed(), checkpoint))
        }
    };
    futures::stream::once(opened)
        .map_ok(move |(batches, checkpoint)| {
            let (at_barrier, at_end) = (Arc::clone(&scan), Arc::clone(&scan));
            let (job, ended) = (job.clone(), job.clone());
            let with_barriers = batches.inspect_ok(move |item| {
                // What the source hands on, after bad, future and duplicate rows.
                at_barrier
                    .counts
                    .rows_in
                    .inc_by(item.batch.num_rows() as u64);
                if let (Some(epoch), Some(job)) = (item.barrier, &job) {
                    checkpoint.on_barrier(epoch);
                    job.state.record_positions(epoch, at_barrier.positions());
                }
            });
            // An ended partition puts no barrier in any more: where it stopped goes into
            // every later checkpoint.
            let end = futures::stream::once(async move {
                if let Some(job) = ended {
                    job.state.record_ended_positions(at_end.positions());
                }
            })
            .filter_map(|()| futures::future::ready(None));
            with_barriers.chain(end)
        })
        .try_flatten()
        // Every batch spends tokio's cooperative budget: a source that is never Pending (a
        // generator, a file) still yields now and then, so tasks its job has woken get to
        // run on the worker it occupies.
        .then(|item| async move {
            tokio::task::coop::consume_budget().await;
            item
        })
}

impl DisplayAs for SourceExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "SourceExec: table={}, source={}",
            self.definition.table,
            self.definition.source.describe()
        )?;
        if let Some(watermark) = &self.definition.watermark {
            write!(f, ", watermark={}", watermark.sql)?;
        }
        if let Some(idle) = self.definition.lateness.idle_timeout {
            write!(f, ", idle_timeout={}", DisplayNanos(idle.as_nanos() as i64))?;
        }
        if let Some(dedup) = &self.definition.dedup {
            write!(
                f,
                ", dedup=[{}] ttl={}",
                dedup.names.join(", "),
                DisplayNanos(dedup.ttl.as_nanos() as i64)
            )?;
        }
        if let Some(ttl) = self.definition.state_ttl {
            write!(f, ", state.ttl={}", DisplayNanos(ttl.as_nanos() as i64))?;
        }
        if let Some(refresh) = self.definition.lookup_refresh {
            write!(
                f,
                ", lookup.refresh={}",
                DisplayNanos(refresh.as_nanos() as i64)
            )?;
        }
        if let Some(projection) = &self.projection {
            let schema = self.definition.source.schema();
            let names: Vec<&str> = projection
                .iter()
                .map(|&i| schema.field(i).name().as_str())
                .collect();
            write!(f, ", projection=[{}]", names.join(", "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for SourceExec {
    fn name(&self) -> &str {
        "SourceExec"
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

impl StreamingExec for SourceExec {
    /// The source's rows, each batch followed by the source's watermark when it moved.
    fn execute_messages(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<MessageStream> {
        let scan = ScanPartition::new(
            partition,
            self.properties.partitioning.partition_count(),
            &self.definition.table,
            &context,
        );
        let mut messages = SourceMessages {
            projection: self.projection.clone(),
            forwarded: Watermark::MIN,
            idle_sent: false,
            output_rows: MetricBuilder::new(&self.metrics).output_rows(partition),
        };
        let messages = open_source(&self.definition, context, scan, node_id(self))
            .flat_map(move |item| futures::stream::iter(messages.of(item)));
        Ok(Box::pin(messages))
    }
}

/// Turns what a source reads into messages: its rows (projected), its watermark when it
/// moved, its barriers, and that it went idle.
struct SourceMessages {
    projection: Option<Vec<usize>>,
    forwarded: Watermark,
    /// Idleness was said, and no row has come since.
    idle_sent: bool,
    output_rows: Count,
}

impl SourceMessages {
    fn of(&mut self, item: Result<SourceBatch>) -> Vec<Result<StreamMessage>> {
        let source = match item {
            Ok(source) => source,
            Err(e) => return vec![Err(e)],
        };
        let mut out = Vec::with_capacity(2);
        let batch = source.batch;
        if batch.num_rows() > 0 {
            self.idle_sent = false;
            self.output_rows.add(batch.num_rows());
            out.push(match &self.projection {
                Some(indices) => batch
                    .project(indices)
                    .map(StreamMessage::Batch)
                    .map_err(Into::into),
                None => Ok(StreamMessage::Batch(batch)),
            });
        }
        if source.watermark > self.forwarded {
            self.forwarded = source.watermark;
            out.push(Ok(StreamMessage::Watermark(source.watermark)));
        }
        if let Some(epoch) = source.barrier {
            out.push(Ok(StreamMessage::Barrier(epoch)));
        }
        if source.idle && !self.idle_sent {
            self.idle_sent = true;
            out.push(Ok(StreamMessage::Idle));
        }
        out
    }
}
