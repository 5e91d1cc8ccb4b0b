//! [`MergeStreamsExec`]: the partitions of a plan (the branches of a `UNION ALL` of
//! streams) merged into one, polled in turn by the task that polls the merge; the merged
//! watermark is the minimum of the branches'.
//!
//! DataFusion's `CoalescePartitionsExec` runs each input partition in a task of its own and
//! passes batches through a channel. Over streams that is a place where rows wait between
//! a source and the operator above: a checkpoint taken then would record source positions
//! past rows that no operator state holds yet. Polling every branch from one task leaves
//! nothing in between, so a checkpoint taken while the job waits sees every row that left
//! a source inside the state above it. [`MergeStreamsRule`] puts this operator in place of
//! each `CoalescePartitionsExec`.

use std::fmt;
use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, internal_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::EmissionType;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};

use super::{MessageStream, StreamingExec, execute_messages, execute_rows, merge_messages};

/// Merges every partition of its input into one, without tasks or channels.
#[derive(Debug)]
pub struct MergeStreamsExec {
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

impl MergeStreamsExec {
    /// A merge of `input`'s partitions.
    pub fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(input.schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            input.boundedness(),
        );
        Self {
            input,
            properties: Arc::new(properties),
        }
    }
}

/// `plan` as one partition: itself when it has one, else its partitions merged (in this
/// task when it is unbounded, see [`MergeStreamsExec`]).
pub fn single_partition(plan: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
    if plan.output_partitioning().partition_count() == 1 {
        plan
    } else if plan.boundedness().is_unbounded() {
        Arc::new(MergeStreamsExec::new(plan))
    } else {
        Arc::new(CoalescePartitionsExec::new(plan))
    }
}

impl DisplayAs for MergeStreamsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "MergeStreamsExec: streams={}",
            self.input.output_partitioning().partition_count()
        )
    }
}

impl ExecutionPlan for MergeStreamsExec {
    fn name(&self) -> &str {
        "MergeStreamsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
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
        Ok(Arc::new(Self::new(children.swap_remove(0))))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        execute_rows(self, partition, context)
    }
}

impl StreamingExec for MergeStreamsExec {
    /// Every partition's rows, and the minimum of their watermarks.
    fn execute_messages(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<MessageStream> {
        if partition != 0 {
            return internal_err!("MergeStreamsExec has one partition, asked for {partition}");
        }
        let inputs = (0..self.input.output_partitioning().partition_count())
            .map(|p| execute_messages(&self.input, p, Arc::clone(&context)))
            .collect::<Result<Vec<_>>>()?;
        Ok(merge_messages(inputs))
    }
}

/// Replaces each `CoalescePartitionsExec` with a [`MergeStreamsExec`], so that the merged
/// partitions' watermarks reach the operators above, bounded or not.
#[derive(Debug, Default)]
pub struct MergeStreamsRule;

impl PhysicalOptimizerRule for MergeStreamsRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(coalesce) = node.downcast_ref::<CoalescePartitionsExec>() else {
                return Ok(Transformed::no(node));
            };
            let input = coalesce.input();
            if coalesce.fetch().is_some() {
                return Ok(Transformed::no(node));
            }
            let merge: Arc<dyn ExecutionPlan> = Arc::new(MergeStreamsExec::new(Arc::clone(input)));
            Ok(Transformed::yes(merge))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "merge_streams"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
