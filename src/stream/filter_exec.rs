//! [`StreamingFilterExec`]: a filter that hands each batch on as soon as it is filtered.
//!
//! DataFusion's `FilterExec` gathers small filtered batches into full ones, which is right
//! for a bounded scan but, over an unbounded source, keeps rows back until enough others
//! arrive: a quiet topic's matching events would wait indefinitely, and positions could be
//! committed for rows still waiting. [`StreamingFilterRule`] swaps every `FilterExec` over
//! an unbounded input for this operator.

use std::fmt;
use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::filter::{FilterExec, batch_filter};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};

use super::{
    MessageStream, StreamingExec, execute_messages, execute_rows, map_batches, partitions_of,
};

/// Filters (and optionally projects) each input batch on its own.
#[derive(Debug)]
pub struct StreamingFilterExec {
    input: Arc<dyn ExecutionPlan>,
    predicate: Arc<dyn PhysicalExpr>,
    projection: Option<Vec<usize>>,
    /// The replaced filter's properties: same schema, ordering and partitioning.
    properties: Arc<PlanProperties>,
}

impl StreamingFilterExec {
    /// The streaming form of `filter`.
    pub fn new(filter: &FilterExec) -> Self {
        Self {
            input: Arc::clone(filter.input()),
            predicate: Arc::clone(filter.predicate()),
            projection: filter.projection().as_ref().map(|p| p.to_vec()),
            properties: Arc::clone(filter.properties()),
        }
    }
}

impl StreamingFilterExec {
    /// The rows kept.
    pub fn predicate(&self) -> &Arc<dyn PhysicalExpr> {
        &self.predicate
    }

    /// The columns kept, when the filter also projects.
    pub fn projection(&self) -> Option<&[usize]> {
        self.projection.as_deref()
    }

    /// The filtered plan.
    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }
}

impl DisplayAs for StreamingFilterExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "StreamingFilterExec: {}", self.predicate)?;
        if let Some(projection) = &self.projection {
            let schema = self.input.schema();
            let columns: Vec<String> = projection
                .iter()
                .map(|&i| format!("{}@{i}", schema.field(i).name()))
                .collect();
            write!(f, ", projection=[{}]", columns.join(", "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for StreamingFilterExec {
    fn name(&self) -> &str {
        "StreamingFilterExec"
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
        f(&self.predicate)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children.swap_remove(0);
        // Rows stay in the partition they came in.
        let partitioning = match &self.projection {
            None => input.output_partitioning().clone(),
            Some(_) => Partitioning::UnknownPartitioning(partitions_of(&input)),
        };
        let properties = self
            .properties
            .as_ref()
            .clone()
            .with_partitioning(partitioning);
        Ok(Arc::new(Self {
            input,
            predicate: Arc::clone(&self.predicate),
            projection: self.projection.clone(),
            properties: Arc::new(properties),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        execute_rows(self, partition, context)
    }
}

impl StreamingExec for StreamingFilterExec {
    fn execute_messages(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<MessageStream> {
        let input = execute_messages(&self.input, partition, context)?;
        let predicate = Arc::clone(&self.predicate);
        let projection = self.projection.clone();
        Ok(map_batches(input, move |batch| {
            let filtered = batch_filter(&batch, &predicate)?;
            match &projection {
                Some(indices) => Ok(filtered.project(indices)?),
                None => Ok(filtered),
            }
        }))
    }
}

/// Replaces each `FilterExec` over an unbounded input with a [`StreamingFilterExec`].
#[derive(Debug, Default)]
pub struct StreamingFilterRule;

impl PhysicalOptimizerRule for StreamingFilterRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_down(|node| match node.downcast_ref::<FilterExec>() {
            Some(filter) if filter.input().boundedness().is_unbounded() => Ok(Transformed::yes(
                Arc::new(StreamingFilterExec::new(filter)) as _,
            )),
            _ => Ok(Transformed::no(node)),
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "streaming_filter"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
