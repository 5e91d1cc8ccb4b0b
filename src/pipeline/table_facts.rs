//! What operators ask of the tables they read, answered from the connectors' tables. It
//! lives here, where plans and connectors meet, so that operators know no connector:
//!
//! - a join of two streams without a time bound: how long an input keeps its rows (the
//!   `'state.ttl'` of the source table it reads, with its column of that table's event
//!   time);
//! - a temporal join: a versioned table's event time, when each of its rows starts;
//! - a lookup join: which table its bounded side reads, and its `'lookup.refresh'`;
//! - a window over a source table: the table's event time, lateness and late-data sink;
//!   over a view or a query, which columns are not event time ([`TableDeclarations`], a
//!   session extension).

use std::sync::Arc;
use std::time::Duration;

use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::physical_plan::ExecutionPlan;

use crate::connector::{SourceExec, StreamTable};
use crate::join::{InputRetention, VersionColumns};
use crate::stream::trace_column;
use crate::stream::{DeclaredEventTime, TableDeclarations};

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
        other_columns: besides_event_time(plan),
    })
}

/// The columns of `plan` that are its source tables' columns other than their event time.
pub fn besides_event_time(plan: &Arc<dyn ExecutionPlan>) -> Vec<usize> {
    (0..plan.schema().fields().len())
        .filter(|&index| {
            let traced = trace_column(plan, index, &|node, index| {
                let source = node.downcast_ref::<SourceExec>()?;
                Some(source.event_time_column() == Some(index))
            });
            traced == Some(false)
        })
        .collect()
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

/// The column of `plan` that is its source table's event time, if `plan` keeps it.
fn event_time_column(plan: &Arc<dyn ExecutionPlan>) -> Option<usize> {
    (0..plan.schema().fields().len()).find(|&index| {
        trace_column(plan, index, &|node, index| {
            let source = node.downcast_ref::<SourceExec>()?;
            (source.event_time_column() == Some(index)).then_some(())
        })
        .is_some()
    })
}

/// The columns that make `table`'s rows versions, if it is a source table with an event
/// time: that time, and the change kind of a changelog.
pub fn table_event_time(table: &dyn TableProvider) -> Option<VersionColumns> {
    let table = table.downcast_ref::<StreamTable>()?;
    let definition = table.source().ok()?;
    Some(VersionColumns {
        start: definition.watermark.as_ref()?.column.clone(),
        change_op: definition.change_op.clone(),
    })
}

/// The name and `'lookup.refresh'` of the source table a bounded plan reads, if it reads
/// one.
pub fn lookup_table(plan: &Arc<dyn ExecutionPlan>) -> Option<(String, Option<Duration>)> {
    let mut found = None;
    let _ = plan.apply(|node| {
        if let Some(source) = node.downcast_ref::<SourceExec>() {
            found = Some((source.table().to_string(), source.lookup_refresh()));
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// What the session's tables declare, from their connectors.
pub fn table_declarations() -> TableDeclarations {
    TableDeclarations {
        event_time: Arc::new(|table| {
            let table = table.downcast_ref::<StreamTable>()?;
            Some(table.source().map(|definition| DeclaredEventTime {
                table: definition.table.clone(),
                watermark: definition.watermark.clone(),
                lateness: definition.lateness.clone(),
                schema: definition.source.schema(),
            }))
        }),
        sink: Arc::new(|table| {
            let table = table.downcast_ref::<StreamTable>()?;
            Some(table.sink().map(Arc::clone))
        }),
        besides_event_time: Arc::new(besides_event_time),
    }
}
