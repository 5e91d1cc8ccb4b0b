//! [`TopNExec`]: the first N rows of each partition of a stream, by the query's order,
//! emitted as a changelog keyed by partition and rank (see [`TopNState`]). Its state is
//! accounted in the memory pool and checkpointed with the job; its input's watermarks pass
//! through, though a changed rank may carry a row older than them.

use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{TreeNodeIterator, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{
    EquivalenceProperties, PhysicalExpr, PhysicalExprRef, PhysicalSortExpr,
};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
    InputDistributionRequirements, Partitioning, PlanProperties,
};

use super::state::TopNState;
use crate::stream::{
    JobProgress, OperatorCheckpoint, StateAccount, StateSnapshot, lock, map_with_state, node_id,
};
use crate::stream::{
    MessageStream, StreamingExec, execute_messages, execute_rows, key_distribution, partitions_of,
};

/// The first `limit` rows of each partition of its input, with their ranks.
#[derive(Debug)]
pub struct TopNExec {
    input: Arc<dyn ExecutionPlan>,
    partition_by: Vec<PhysicalExprRef>,
    order_by: Vec<PhysicalSortExpr>,
    limit: usize,
    /// The input's columns and the rank (named as the query names it).
    schema: SchemaRef,
    metrics: ExecutionPlanMetricsSet,
    properties: Arc<PlanProperties>,
}

impl TopNExec {
    /// `schema` is the input's columns followed by the rank, a `UInt64`.
    pub fn new(
        input: Arc<dyn ExecutionPlan>,
        partition_by: Vec<PhysicalExprRef>,
        order_by: Vec<PhysicalSortExpr>,
        limit: usize,
        schema: SchemaRef,
    ) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(partitions_of(&input)),
            EmissionType::Incremental,
            match input.boundedness().is_unbounded() {
                true => Boundedness::Unbounded {
                    requires_infinite_memory: false,
                },
                false => Boundedness::Bounded,
            },
        );
        Self {
            input,
            partition_by,
            order_by,
            limit,
            schema,
            metrics: ExecutionPlanMetricsSet::new(),
            properties: Arc::new(properties),
        }
    }

    fn describe_partitions(&self) -> String {
        let names: Vec<String> = self.partition_by.iter().map(|e| e.to_string()).collect();
        names.join(", ")
    }
}

impl DisplayAs for TopNExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let order: Vec<String> = self.order_by.iter().map(|e| e.to_string()).collect();
        write!(
            f,
            "TopNExec: partition_by=[{}], order_by=[{}], limit={}",
            self.describe_partitions(),
            order.join(", "),
            self.limit,
        )
    }
}

impl ExecutionPlan for TopNExec {
    fn name(&self) -> &str {
        "TopNExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    /// Every row of a partition (of `PARTITION BY`) in one partition.
    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        InputDistributionRequirements::new(vec![key_distribution(self.partition_by.clone())])
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        let order = self.order_by.iter().map(|e| &e.expr);
        self.partition_by.iter().chain(order).apply_until_stop(f)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children)
            .map_err(|_| DataFusionError::Internal("TopNExec takes one input".into()))?;
        Ok(Arc::new(Self::new(
            input,
            self.partition_by.clone(),
            self.order_by.clone(),
            self.limit,
            Arc::clone(&self.schema),
        )))
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

impl StreamingExec for TopNExec {
    /// Batches go through the state; the input's watermarks are handed on as they come.
    fn execute_messages(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<MessageStream> {
        let input = execute_messages(&self.input, partition, Arc::clone(&context))?;
        let mut state = TopNState::try_new(
            self.partition_by.clone(),
            self.order_by.clone(),
            self.limit,
            self.input.schema(),
            Arc::clone(&self.schema),
        )?;
        let progress = JobProgress::of_task(&context);
        let mut checkpoint = OperatorCheckpoint::of(progress, node_id(self));
        let partitions = self.properties().partitioning.partition_count();
        // A snapshot holds input rows.
        let slot = checkpoint.slot("top-n", partition, partitions, &self.partition_by)?;
        if let Some(restored) = slot.as_ref().and_then(|s| s.restored.as_ref()) {
            for batch in &restored.batches {
                state.restore(batch)?;
            }
        }
        let state = Arc::new(Mutex::new(state));
        if let Some(slot) = slot {
            let state = Arc::clone(&state);
            let schema = self.input.schema();
            checkpoint.register(&slot, move || {
                StateSnapshot::new(Arc::clone(&schema), vec![lock(&state).snapshot()?], &[])
            });
        }
        let mut run = TopNRun {
            state,
            account: StateAccount::new(
                format!("TopNExec[{}]", self.describe_partitions()),
                &context,
                &self.metrics,
                partition,
            ),
            baseline: BaselineMetrics::new(&self.metrics, partition),
            limit: self.limit,
        };
        Ok(map_with_state(input, checkpoint, move |batch| {
            run.take(batch)
        }))
    }
}

/// A running Top-N: its state and its accounting.
struct TopNRun {
    state: Arc<Mutex<TopNState>>,
    account: StateAccount,
    baseline: BaselineMetrics,
    limit: usize,
}

impl TopNRun {
    /// Takes in `batch`; returns the ranks it changed.
    fn take(&mut self, batch: &RecordBatch) -> Result<Option<RecordBatch>> {
        let timer = self.baseline.elapsed_compute().timer();
        let mut state = lock(&self.state);
        let out = state.take(batch)?;
        let (size, rows) = (state.size(), state.len());
        drop(state);
        timer.done();
        let limit = self.limit;
        self.account.hold(size, || {
            format!(
                "the first {limit} rows of each partition are {rows} rows in {size} bytes, over \
                 the memory limit (raise --memory-limit)"
            )
        })?;
        if let Some(out) = &out {
            self.baseline.record_output(out.num_rows());
        }
        Ok(out)
    }
}
