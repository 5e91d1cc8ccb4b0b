//! Which window column a plan's column is: a `window_start`, `window_end` or `window_time`
//! that a window assignment or a window aggregate made, followed through projections
//! (renames included), filters and merges. A window aggregate finds its windows this way,
//! an aggregation can group again by an upstream aggregate's windows (Nexmark q5), and a
//! join of two windowed aggregations on their ends is recognised as a window join.

use std::sync::Arc;

use datafusion::physical_plan::ExecutionPlan;

use super::aggregate_exec::WindowAggregateExec;
use super::assign_exec::{WindowAssignExec, WindowAssignment};
use crate::stream::trace_column;

/// A column that windows add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowColumn {
    Start,
    End,
    /// The window's event time: its end less one nanosecond.
    Time,
}

/// Column `index` of `plan` as a window column, with the windows it belongs to.
pub fn window_column(
    plan: &Arc<dyn ExecutionPlan>,
    index: usize,
) -> Option<(WindowColumn, WindowAssignment)> {
    trace_column(plan, index, &|node, index| {
        if let Some(assign) = node.downcast_ref::<WindowAssignExec>() {
            return assign
                .window_column(index)
                .map(|column| (column, assign.assignment().clone()));
        }
        node.downcast_ref::<WindowAggregateExec>()?
            .window_column(index)
    })
}

/// True when column `index` of `plan` is the end or time of a window aggregate's windows:
/// the columns its output watermark bounds. (Rows fresh from a window assignment are not:
/// with allowed lateness they may come after the watermark has passed their window's end.)
pub fn is_window_end(plan: &Arc<dyn ExecutionPlan>, index: usize) -> bool {
    let Some((column, windows)) = window_column(plan, index) else {
        return false;
    };
    windows.regroups && (column == WindowColumn::End || column == WindowColumn::Time)
}
