//! [`trace_column`]: follows a column of a plan down to where it was made, through
//! projections (renames included), filters, merges, exchanges and the cooperative-scheduling
//! wrapper, asking `origin` at each node whether it made the column. Window columns and a
//! source's event-time column are found this way.

use std::sync::Arc;

use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;

use super::{ExchangeExec, StreamingFilterExec};

/// Asked of each node a column is followed through: what made column `index` of the node,
/// if the node made it.
pub type ColumnOrigin<'a, T> = &'a dyn Fn(&Arc<dyn ExecutionPlan>, usize) -> Option<T>;

/// What `origin` says of the node that made column `index` of `plan`, if the column is
/// followed down to one it answers for.
pub fn trace_column<T>(
    plan: &Arc<dyn ExecutionPlan>,
    index: usize,
    origin: ColumnOrigin<'_, T>,
) -> Option<T> {
    if let Some(found) = origin(plan, index) {
        return Some(found);
    }
    if let Some(projection) = plan.downcast_ref::<ProjectionExec>() {
        let column = projection
            .expr()
            .get(index)?
            .expr
            .downcast_ref::<Column>()?;
        return trace_column(projection.input(), column.index(), origin);
    }
    let through = |projection: Option<&[usize]>, input: &Arc<dyn ExecutionPlan>| {
        let index = match projection {
            Some(indices) => *indices.get(index)?,
            None => index,
        };
        trace_column(input, index, origin)
    };
    if let Some(filter) = plan.downcast_ref::<StreamingFilterExec>() {
        return through(filter.projection(), filter.input());
    }
    if let Some(filter) = plan.downcast_ref::<FilterExec>() {
        return through(filter.projection().as_deref(), filter.input());
    }
    // Nodes that move rows without touching their columns: the cooperative wrapper, an
    // exchange, and any other node of one input with its input's schema (a group's
    // repartition topic).
    match plan.children().as_slice() {
        [input]
            if plan.is::<CooperativeExec>()
                || plan.is::<ExchangeExec>()
                || plan.schema() == input.schema() =>
        {
            trace_column(input, index, origin)
        }
        _ => None,
    }
}
