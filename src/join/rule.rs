//! [`StreamJoinRule`]: plans joins of two streams. A join whose `ON` condition bounds the
//! two rows' times, or joins two windowed aggregations on their windows' ends, becomes an
//! [`IntervalJoinExec`]; any other join of two streams would keep every row of both
//! forever, and is refused with what to write instead.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, plan_err};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};

use super::equi_join::EquiJoin;
use super::interval_exec::IntervalJoinExec;
use super::shape::is_supported;
use super::time_bound::{InputRetention, TimeBound, WindowEndOf};
use crate::stream::without_sort;

/// How long an input of a join keeps its rows, if its tables say (`'state.ttl'`).
pub type RetentionOf = Arc<dyn Fn(&Arc<dyn ExecutionPlan>) -> Option<InputRetention> + Send + Sync>;

/// Replaces each hash join of two unbounded inputs.
pub struct StreamJoinRule {
    retention: RetentionOf,
    is_window_end: WindowEndOf,
}

impl StreamJoinRule {
    /// The rule, asking `retention` how long each input of a join without a time bound
    /// keeps its rows, and `is_window_end` which columns end windows (window joins).
    pub fn new(retention: RetentionOf, is_window_end: WindowEndOf) -> Self {
        Self {
            retention,
            is_window_end,
        }
    }
}

impl std::fmt::Debug for StreamJoinRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamJoinRule")
    }
}

impl PhysicalOptimizerRule for StreamJoinRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(join) = EquiJoin::of(&node) else {
                return Ok(Transformed::no(node));
            };
            if !join.left.boundedness().is_unbounded() || !join.right.boundedness().is_unbounded() {
                return Ok(Transformed::no(node));
            }
            join.check_null_equality()?;
            let retention = [(self.retention)(&join.left), (self.retention)(&join.right)];
            let from_filter = join.filter.as_ref().and_then(TimeBound::from_filter);
            if let Some(bound) = &from_filter {
                check_event_times(bound, &retention, &join)?;
            }
            let bound = from_filter.or_else(|| {
                TimeBound::from_window_keys(&join.on, &join.left, &join.right, &self.is_window_end)
            });
            let bound = bound.or_else(|| {
                TimeBound::from_retention(retention[0].as_ref(), retention[1].as_ref())
            });
            let Some(bound) = bound else {
                return plan_err!(
                    "a join of two streams without a time bound would keep every row of both \
                     forever: bound the rows' times in ON (b.ts BETWEEN a.ts AND a.ts + INTERVAL \
                     '1' MINUTE), join windows of both streams on window_start and window_end, \
                     or set 'state.ttl' on an input table"
                );
            };
            if !is_supported(join.join_type) {
                return plan_err!(
                    "a {} join of two streams is not supported: interval joins are inner, \
                     outer, semi (IN, EXISTS) or anti (NOT EXISTS) joins",
                    join.join_type
                );
            }
            let interval: Arc<dyn ExecutionPlan> = Arc::new(IntervalJoinExec::try_new(
                without_sort(join.left),
                without_sort(join.right),
                join.on,
                join.filter,
                join.join_type,
                bound,
                join.projection,
            )?);
            Ok(Transformed::yes(interval))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "stream_join"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Refuses a time bound on a column of an input's table other than its event time: the
/// join forgets rows by the inputs' watermarks, which say nothing of another column. (A
/// column computed from the event time, such as `ts + INTERVAL '40' SECOND`, is not one.)
fn check_event_times(
    bound: &TimeBound,
    retention: &[Option<InputRetention>; 2],
    join: &EquiJoin,
) -> Result<()> {
    let sides = [
        (bound.left_time, &retention[0], &join.left),
        (bound.right_time, &retention[1], &join.right),
    ];
    for (bounded, retention, input) in sides {
        let (Some(bounded), Some(retention)) = (bounded, retention) else {
            continue;
        };
        if retention.other_columns.contains(&bounded) {
            return plan_err!(
                "the time bound of a join of two streams is on {}, which is not the event time \
                 of its table: the join forgets rows by the watermarks, so bound the rows' \
                 event times (the columns their tables declare WATERMARK FOR)",
                input.schema().field(bounded).name()
            );
        }
    }
    Ok(())
}
