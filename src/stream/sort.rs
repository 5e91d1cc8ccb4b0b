//! [`without_sort`]: a plan without the sort DataFusion put on top of it. DataFusion sorts
//! the input of a join or a window function to run it in batch; the streaming operators
//! that replace those take rows in any order, and a sort of a stream would never end.

use std::sync::Arc;

use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::sorts::sort::SortExec;

/// `plan` without a sort on top of it.
pub fn without_sort(plan: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
    match plan.downcast_ref::<SortExec>() {
        Some(sort) => Arc::clone(sort.input()),
        None => plan,
    }
}
