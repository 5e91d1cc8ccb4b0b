//! [`UnboundedInputCheck`]: refuses, at planning, operators that need all of an unbounded
//! input before they produce a row, with a message that says why and what to do instead.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, plan_err};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::execution_plan::EmissionType;
use datafusion::physical_plan::joins::{
    CrossJoinExec, HashJoinExec, NestedLoopJoinExec, SortMergeJoinExec, SymmetricHashJoinExec,
};
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};

use crate::connector::SourceExec;

/// Refuses operators that need all of an unbounded input before they produce anything.
#[derive(Debug, Default)]
pub struct UnboundedInputCheck;

impl PhysicalOptimizerRule for UnboundedInputCheck {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut refusal = None;
        plan.apply(|node| {
            let blocking = node.pipeline_behavior() == EmissionType::Final
                || matches!(node.boundedness(), datafusion::physical_plan::execution_plan::Boundedness::Unbounded { requires_infinite_memory: true });
            let unbounded_inputs: Vec<String> = node
                .children()
                .into_iter()
                .filter(|c| c.boundedness().is_unbounded())
                .flat_map(unbounded_sources)
                .collect();
            // The culprit is the lowest blocking operator: operators above it only inherit.
            let inherits = node.children().iter().any(|c| c.pipeline_behavior() == EmissionType::Final);
            if blocking && !inherits && !unbounded_inputs.is_empty() {
                refusal = Some(format!(
                    "{} needs all of its input before it can produce a row, but {} never ends. \
                     Bound the source (for datagen, set count), or work within windows (TUMBLE, HOP or SESSION).",
                    describe(node.as_ref()),
                    unbounded_inputs.join(", ")
                ));
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        match refusal {
            Some(message) => plan_err!("{message}"),
            None => Ok(plan),
        }
    }

    fn name(&self) -> &str {
        "unbounded_input_check"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

fn describe(node: &dyn ExecutionPlan) -> String {
    if node.is::<SortExec>() {
        "ORDER BY".to_string()
    } else if node.is::<AggregateExec>() {
        "an aggregation without a window (GROUP BY or an aggregate function)".to_string()
    } else if is_join(node) {
        format!("a join ({})", node.name())
    } else {
        node.name().to_string()
    }
}

fn is_join(node: &dyn ExecutionPlan) -> bool {
    node.is::<HashJoinExec>()
        || node.is::<NestedLoopJoinExec>()
        || node.is::<CrossJoinExec>()
        || node.is::<SortMergeJoinExec>()
        || node.is::<SymmetricHashJoinExec>()
}

/// The unbounded source tables under `plan`, as `source table 'name'`.
fn unbounded_sources(plan: &Arc<dyn ExecutionPlan>) -> Vec<String> {
    let mut names = Vec::new();
    let _ = plan.apply(|node| {
        if node.children().is_empty() && node.boundedness().is_unbounded() {
            let name = match node.downcast_ref::<SourceExec>() {
                Some(scan) => scan.table().to_string(),
                None => node.name().to_string(),
            };
            names.push(format!("source table '{name}'"));
        }
        Ok(TreeNodeRecursion::Continue)
    });
    names
}
