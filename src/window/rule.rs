//! The physical optimizer rule that turns aggregations over assigned windows into
//! [`WindowAggregateExec`]s.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, plan_err};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::sorts::sort::SortExec;

use super::WindowKind;
use super::aggregate_exec::WindowAggregateExec;
use super::assign_exec::{WindowAssignExec, WindowAssignment};
use super::provenance::{WindowColumn, window_column};
use datafusion::physical_expr::expressions::Column;

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
            let Some(window) = assigned_window(raw.input()).or_else(|| regrouped_windows(raw))
            else {
                return Ok(Transformed::no(node));
            };
            if raw.group_expr().has_grouping_set() {
                return plan_err!("GROUPING SETS, CUBE and ROLLUP are not supported over windows");
            }
            let windowed = WindowAggregateExec::try_new(
                without_sorts(raw.input())?,
                window,
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

/// The plan down to the window assignment without the sorts DataFusion added for
/// order-sensitive aggregates: the window aggregate orders those aggregates' input itself.
pub(crate) fn without_sorts(plan: &Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    if plan.is::<WindowAssignExec>() {
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

/// The windows of an upstream window aggregate that `aggregate` groups by again: both the
/// start and the end of its windows are among the GROUP BY columns.
fn regrouped_windows(aggregate: &AggregateExec) -> Option<WindowAssignment> {
    let columns: Vec<(WindowColumn, WindowAssignment)> = aggregate
        .group_expr()
        .expr()
        .iter()
        .filter_map(|(expr, _)| {
            let column = expr.downcast_ref::<Column>()?;
            window_column(aggregate.input(), column.index())
        })
        .collect();
    let has = |wanted: WindowColumn| columns.iter().any(|(column, _)| *column == wanted);
    if !has(WindowColumn::Start) || !has(WindowColumn::End) {
        return None;
    }
    // Sessions close many windows in one batch; their rows are not grouped again here.
    columns
        .into_iter()
        .next()
        .map(|(_, windows)| windows)
        .filter(|windows| !matches!(windows.kind, WindowKind::Session { .. }))
}

/// The windows assigned below `plan` with no other aggregation in between.
fn assigned_window(plan: &Arc<dyn ExecutionPlan>) -> Option<WindowAssignment> {
    if let Some(assign) = plan.downcast_ref::<WindowAssignExec>() {
        return Some(assign.assignment().clone());
    }
    if plan.is::<WindowAggregateExec>() || plan.is::<AggregateExec>() {
        return None;
    }
    plan.children().into_iter().find_map(assigned_window)
}
