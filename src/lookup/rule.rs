//! [`LookupJoinRule`]: a hash join of an unbounded input with a bounded one becomes a
//! [`LookupJoinExec`] when the unbounded input is the side whose rows it keeps (inner,
//! stream-side outer, semi and anti joins), so the bounded table is read into memory —
//! and again every `'lookup.refresh'` — instead of once for the life of the pipeline.

use std::sync::Arc;
use std::time::Duration;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{JoinType, NullEquality, Result};
use datafusion::config::ConfigOptions;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};

use super::exec::{JoinShape, LookupJoinExec, LookupKind, LookupTable};

/// The name and `'lookup.refresh'` of the table a bounded plan reads, if it reads one.
pub type TableOfPlan =
    Arc<dyn Fn(&Arc<dyn ExecutionPlan>) -> Option<(String, Option<Duration>)> + Send + Sync>;

/// Plans joins of a stream with a bounded table as lookups.
pub struct LookupJoinRule {
    table_of: TableOfPlan,
}

impl LookupJoinRule {
    /// The rule, asking `table_of` which table a join's bounded side reads.
    pub fn new(table_of: TableOfPlan) -> Self {
        Self { table_of }
    }
}

impl std::fmt::Debug for LookupJoinRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LookupJoinRule")
    }
}

impl PhysicalOptimizerRule for LookupJoinRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(join) = node.downcast_ref::<HashJoinExec>() else {
                return Ok(Transformed::no(node));
            };
            match lookup_join(join, &self.table_of) {
                Some(lookup) => Ok(Transformed::yes(Arc::new(lookup) as Arc<dyn ExecutionPlan>)),
                None => Ok(Transformed::no(node)),
            }
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "lookup_join"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The lookup join a hash join can be, if it can be one.
fn lookup_join(join: &HashJoinExec, table_of: &TableOfPlan) -> Option<LookupJoinExec> {
    let left_unbounded = join.left.boundedness().is_unbounded();
    let right_unbounded = join.right.boundedness().is_unbounded();
    if left_unbounded == right_unbounded
        || join.filter.is_some()
        || join.null_aware
        || join.null_equality == NullEquality::NullEqualsNull
    {
        return None;
    }
    let stream_is_left = left_unbounded;
    let kind = match (join.join_type, stream_is_left) {
        (JoinType::Inner, _) => LookupKind::Inner,
        (JoinType::Left, true) | (JoinType::Right, false) => LookupKind::Outer,
        (JoinType::LeftSemi, true) | (JoinType::RightSemi, false) => LookupKind::Semi,
        (JoinType::LeftAnti, true) | (JoinType::RightAnti, false) => LookupKind::Anti,
        _ => return None,
    };
    let (left_keys, right_keys): (Vec<_>, Vec<_>) = join.on.iter().cloned().unzip();
    let (stream, stream_keys, table_plan, table_keys) = if stream_is_left {
        (
            Arc::clone(&join.left),
            left_keys,
            Arc::clone(&join.right),
            right_keys,
        )
    } else {
        (
            Arc::clone(&join.right),
            right_keys,
            Arc::clone(&join.left),
            left_keys,
        )
    };
    let (name, refresh) =
        table_of(&table_plan).unwrap_or_else(|| (table_plan.name().to_string(), None));
    let table = LookupTable {
        name,
        plan: table_plan,
        keys: table_keys,
        refresh,
    };
    let shape = JoinShape {
        stream_keys,
        kind,
        stream_is_left,
        join_schema: Arc::clone(join.join_schema()),
        projection: join.projection.as_ref().map(|p| p.to_vec()),
    };
    Some(LookupJoinExec::new(
        stream,
        table,
        Arc::new(shape),
        join.schema(),
    ))
}
