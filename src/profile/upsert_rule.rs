//! [`UpsertAggregateRule`]: a `GROUP BY` over an unbounded input that is not a window
//! becomes an [`UpsertAggregateExec`], emitting each changed key's row as it changes instead
//! of waiting for an end that never comes.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, plan_err};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};

use super::upsert_aggregate::UpsertAggregateExec;
use crate::window::{raw_aggregate, without_sorts};

/// Replaces each `AggregateExec` over an unbounded input with an [`UpsertAggregateExec`].
/// Runs after the window rule, so windowed aggregations are already taken.
#[derive(Debug, Default)]
pub struct UpsertAggregateRule;

impl PhysicalOptimizerRule for UpsertAggregateRule {
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
            if !raw.input().boundedness().is_unbounded() {
                return Ok(Transformed::no(node));
            }
            if raw.group_expr().has_grouping_set() {
                return plan_err!(
                    "GROUPING SETS, CUBE and ROLLUP are not supported over an unbounded input"
                );
            }
            let upsert = UpsertAggregateExec::try_new(
                without_sorts(raw.input())?,
                raw.group_expr().expr().to_vec(),
                raw.aggr_expr().to_vec(),
                raw.filter_expr().to_vec(),
                aggregate.schema(),
            )?;
            Ok(Transformed::yes(Arc::new(upsert) as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "upsert_aggregate"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
