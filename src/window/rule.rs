//! Physical optimizer rules that make a DataFusion plan streamable: windowed aggregations
//! become [`WindowAggregateExec`]s, and what still needs all of an unbounded input before
//! producing a row is refused with a message that says why.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, plan_err};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::EmissionType;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};

use super::aggregate_exec::WindowAggregateExec;
use super::scan_exec::WindowScanExec;
use crate::connector::SourceExec;

/// Replaces each `AggregateExec` over a window table with a [`WindowAggregateExec`].
#[derive(Debug, Default)]
pub struct WindowAggregateRule;

impl PhysicalOptimizerRule for WindowAggregateRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(aggregate) = node.downcast_ref::<AggregateExec>() else {
                return Ok(Transformed::no(node));
            };
            let Some(raw) = raw_aggregate(aggregate) else {
                return Ok(Transformed::no(node));
            };
            if !reads_window_directly(raw.input()) {
                return Ok(Transformed::no(node));
            }
            if raw.group_expr().has_grouping_set() {
                return plan_err!("GROUPING SETS, CUBE and ROLLUP are not supported over windows");
            }
            let windowed = WindowAggregateExec::try_new(
                without_sorts(raw.input())?,
                raw.group_expr().expr().to_vec(),
                raw.aggr_expr().to_vec(),
                raw.filter_expr().to_vec(),
                aggregate.schema(),
            )?;
            Ok(Transformed::yes(
                Arc::new(windowed) as Arc<dyn ExecutionPlan>
            ))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "window_aggregate"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The plan down to the window scan without the sorts DataFusion added for order-sensitive
/// aggregates: the window aggregate orders those aggregates' input itself.
pub(crate) fn without_sorts(plan: &Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    if plan.is::<WindowScanExec>() {
        return Ok(Arc::clone(plan));
    }
    if let Some(sort) = plan.downcast_ref::<SortExec>() {
        return without_sorts(sort.input());
    }
    let children = plan
        .children()
        .into_iter()
        .map(without_sorts)
        .collect::<Result<Vec<_>>>()?;
    if children.is_empty() {
        return Ok(Arc::clone(plan));
    }
    #[allow(deprecated)]
    Arc::clone(plan).with_new_children(children)
}

/// The aggregate whose input holds the raw rows: `aggregate` itself when it runs in one
/// step, the partial aggregate under it when it is the final step; `None` for a partial
/// step (its final step is the one replaced).
pub(crate) fn raw_aggregate(aggregate: &AggregateExec) -> Option<&AggregateExec> {
    match aggregate.mode() {
        AggregateMode::Single | AggregateMode::SinglePartitioned => Some(aggregate),
        AggregateMode::Final | AggregateMode::FinalPartitioned => partial_below(aggregate.input()),
        _ => None,
    }
}

/// The partial aggregate under a final one, through exchanges.
fn partial_below(plan: &Arc<dyn ExecutionPlan>) -> Option<&AggregateExec> {
    if let Some(partial) = plan.downcast_ref::<AggregateExec>() {
        return (*partial.mode() == AggregateMode::Partial).then_some(partial);
    }
    match plan.children().as_slice() {
        [child] => partial_below(child),
        _ => None,
    }
}

/// True when a window scan is below `plan` with no other aggregation in between.
fn reads_window_directly(plan: &Arc<dyn ExecutionPlan>) -> bool {
    if plan.is::<WindowScanExec>() {
        return true;
    }
    if plan.is::<WindowAggregateExec>() || plan.is::<AggregateExec>() {
        return false;
    }
    plan.children().into_iter().any(reads_window_directly)
}

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
    match node.name() {
        "SortExec" => "ORDER BY".to_string(),
        "AggregateExec" => {
            "an aggregation without a window (GROUP BY or an aggregate function)".to_string()
        }
        name if name.contains("Join") => format!("a join ({name})"),
        name => name.to_string(),
    }
}

/// The unbounded source tables under `plan`, as `source table 'name'`.
fn unbounded_sources(plan: &Arc<dyn ExecutionPlan>) -> Vec<String> {
    let mut names = Vec::new();
    let _ = plan.apply(|node| {
        if node.children().is_empty() && node.boundedness().is_unbounded() {
            let name = if let Some(scan) = node.downcast_ref::<SourceExec>() {
                scan.table().to_string()
            } else if let Some(scan) = node.downcast_ref::<WindowScanExec>() {
                scan.table().to_string()
            } else {
                node.name().to_string()
            };
            names.push(format!("source table '{name}'"));
        }
        Ok(TreeNodeRecursion::Continue)
    });
    names
}
