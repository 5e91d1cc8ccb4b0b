//! How long a join of two streams without a time bound keeps an input's rows: the
//! `'state.ttl'` of the source table the input reads, with the input's column that carries
//! that table's event time. The join rule asks this of each input; it lives here, where
//! plans and connectors meet, so that joins know no connector.

use std::sync::Arc;

use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;

use crate::connector::SourceExec;
use crate::join::InputRetention;
use crate::stream::StreamingFilterExec;

/// The retention of the rows of `plan`, a join's input, when it reads one source table with
/// an event time: the table's `'state.ttl'`, if any, and the input's column that carries
/// the table's event time, if the query keeps it.
pub fn join_retention(plan: &Arc<dyn ExecutionPlan>) -> Option<InputRetention> {
    let source = source_below(plan)?;
    // Without event time nothing would ever expire.
    source.event_time_name()?;
    Some(InputRetention {
        time_column: event_time_column(plan),
        ttl_nanos: source
            .state_ttl()
            .map(|ttl| i64::try_from(ttl.as_nanos()).unwrap_or(i64::MAX)),
    })
}

fn source_below(plan: &Arc<dyn ExecutionPlan>) -> Option<&SourceExec> {
    if let Some(source) = plan.downcast_ref::<SourceExec>() {
        return Some(source);
    }
    match plan.children().as_slice() {
        [input] => source_below(input),
        _ => None,
    }
}

/// The column of `plan` that is its source table's event time, through projections and
/// filters.
fn event_time_column(plan: &Arc<dyn ExecutionPlan>) -> Option<usize> {
    if let Some(source) = plan.downcast_ref::<SourceExec>() {
        return source.event_time_column();
    }
    if let Some(projection) = plan.downcast_ref::<ProjectionExec>() {
        let below = event_time_column(projection.input())?;
        return projection.expr().iter().position(|e| {
            e.expr
                .downcast_ref::<Column>()
                .is_some_and(|c| c.index() == below)
        });
    }
    let through = |projection: Option<&[usize]>, below: usize| match projection {
        Some(indices) => indices.iter().position(|&i| i == below),
        None => Some(below),
    };
    if let Some(filter) = plan.downcast_ref::<StreamingFilterExec>() {
        return through(filter.projection(), event_time_column(filter.input())?);
    }
    if let Some(filter) = plan.downcast_ref::<FilterExec>() {
        return through(
            filter.projection().as_deref(),
            event_time_column(filter.input())?,
        );
    }
    match plan.children().as_slice() {
        [input] if plan.is::<CooperativeExec>() => event_time_column(input),
        _ => None,
    }
}
