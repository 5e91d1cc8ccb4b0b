//! [`WindowQueryPlanner`]: plans `TUMBLE((SELECT …), ts, …)` and the other window functions
//! over a query in parentheses. DataFusion hands table functions their arguments as
//! expressions, where a query must be a scalar subquery of one column; this relation
//! planner sees the call first, plans the query as a derived table and windows its rows.

use std::sync::Arc;

use datafusion::catalog::view::ViewTable;
use datafusion::common::{DFSchema, Result, TableReference, plan_err};
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::logical_expr::planner::{
    PlannedRelation, RelationPlanner, RelationPlannerContext, RelationPlanning,
};
use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, FunctionArg, FunctionArgExpr, TableFactor};

use super::WindowFunction;

/// Plans window functions whose first argument is a query in parentheses.
#[derive(Debug, Default)]
pub struct WindowQueryPlanner;

impl RelationPlanner for WindowQueryPlanner {
    fn plan_relation(
        &self,
        relation: TableFactor,
        context: &mut dyn RelationPlannerContext,
    ) -> Result<RelationPlanning> {
        let TableFactor::Table {
            name,
            alias,
            args: Some(call),
            ..
        } = &relation
        else {
            return Ok(RelationPlanning::Original(Box::new(relation)));
        };
        let written = name.0.last().and_then(|part| part.as_ident());
        let Some((written, function)) = written
            .and_then(|ident| Some((ident.value.clone(), WindowFunction::named(&ident.value)?)))
        else {
            return Ok(RelationPlanning::Original(Box::new(relation)));
        };
        let args = &call.args;
        let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Subquery(query)))) =
            args.first()
        else {
            return Ok(RelationPlanning::Original(Box::new(relation)));
        };
        let input = context.plan(TableFactor::Derived {
            lateral: false,
            subquery: query.clone(),
            alias: None,
            sample: None,
        })?;
        let empty = DFSchema::empty();
        let rest = args[1..]
            .iter()
            .map(|arg| match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => {
                    context.sql_expr_to_logical_expr(expr.clone(), &empty)
                }
                other => plan_err!("{}: unsupported argument {other}", function.name()),
            })
            .collect::<Result<Vec<_>>>()?;
        let table = function.over(
            "(subquery)".to_string(),
            Arc::new(ViewTable::new(input, None)),
            None,
            &rest,
        )?;
        // Named as DataFusion names a table function's scan: `TUMBLE()`.
        let scan = TableReference::bare(format!("{written}()"));
        let plan = LogicalPlanBuilder::scan(scan, provider_as_source(table), None)?.build()?;
        Ok(RelationPlanning::Planned(Box::new(PlannedRelation::new(
            plan,
            alias.clone(),
        ))))
    }
}
