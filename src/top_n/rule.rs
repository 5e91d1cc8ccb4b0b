//! [`TopNRule`]: finds `ROW_NUMBER() OVER (PARTITION BY … ORDER BY …)` filtered to its
//! first N rows (`rn <= N`, `rn < N`, `rn = 1`) over an unbounded input, which DataFusion
//! plans as a filter over a window function over a sort of all the input, and plans a
//! [`TopNExec`] instead. Other conditions of the filter stay above it.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, ScalarValue};
use datafusion::functions_window::row_number::RowNumber;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
use datafusion::physical_expr::window::StandardWindowExpr;
use datafusion::physical_expr::{PhysicalExpr, conjunction, split_conjunction};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowAggExec, WindowUDFExpr};
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};

use super::exec::TopNExec;
use crate::stream::without_sort;

/// Replaces a filtered `ROW_NUMBER` over an unbounded input with a [`TopNExec`].
#[derive(Debug, Default)]
pub struct TopNRule;

impl PhysicalOptimizerRule for TopNRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| match top_n(&node)? {
            Some(planned) => Ok(Transformed::yes(planned)),
            None => Ok(Transformed::no(node)),
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "top_n"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The Top-N `node` is, if it is a filter on a lone `ROW_NUMBER` of an unbounded input.
fn top_n(node: &Arc<dyn ExecutionPlan>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(filter) = node.downcast_ref::<FilterExec>() else {
        return Ok(None);
    };
    // DataFusion may put a projection of the window's columns between.
    let projection = filter.input().downcast_ref::<ProjectionExec>();
    let window = projection.map_or(filter.input(), |p| p.input());
    let (window_exprs, input) = if let Some(w) = window.downcast_ref::<BoundedWindowAggExec>() {
        (w.window_expr(), w.input())
    } else if let Some(w) = window.downcast_ref::<WindowAggExec>() {
        (w.window_expr(), w.input())
    } else {
        return Ok(None);
    };
    let [window_expr] = window_exprs else {
        return Ok(None);
    };
    let is_row_number = window_expr
        .as_any()
        .downcast_ref::<StandardWindowExpr>()
        .and_then(|e| {
            e.get_standard_func_expr()
                .as_any()
                .downcast_ref::<WindowUDFExpr>()
        })
        .is_some_and(|e| e.fun().inner().is::<RowNumber>());
    if !is_row_number || !input.boundedness().is_unbounded() {
        return Ok(None);
    }
    let window_rank = window.schema().fields().len() - 1;
    let rank_column = match projection {
        None => Some(window_rank),
        Some(projection) => projection.expr().iter().position(|e| {
            e.expr
                .downcast_ref::<Column>()
                .is_some_and(|c| c.index() == window_rank)
        }),
    };
    let Some(rank_column) = rank_column else {
        return Ok(None);
    };
    let conjuncts = split_conjunction(filter.predicate());
    let Some((at, limit)) = conjuncts
        .iter()
        .enumerate()
        .find_map(|(at, c)| rank_limit(c, rank_column).map(|limit| (at, limit)))
    else {
        return Ok(None);
    };
    let mut planned: Arc<dyn ExecutionPlan> = Arc::new(TopNExec::new(
        without_sort(Arc::clone(input)),
        window_expr.partition_by().to_vec(),
        window_expr.order_by().to_vec(),
        limit,
        window.schema(),
    ));
    if let Some(projection) = projection {
        planned = Arc::new(ProjectionExec::try_new(
            projection.expr().to_vec(),
            planned,
        )?);
    }
    let rest: Vec<Arc<dyn PhysicalExpr>> = conjuncts
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != at)
        .map(|(_, c)| Arc::clone(c))
        .collect();
    let projection = filter.projection().as_ref().map(|p| p.to_vec());
    if rest.is_empty() && projection.is_none() {
        return Ok(Some(planned));
    }
    let predicate = match rest.is_empty() {
        true => Arc::new(Literal::new(ScalarValue::Boolean(Some(true)))) as Arc<dyn PhysicalExpr>,
        false => conjunction(rest),
    };
    let filter = FilterExecBuilder::new(predicate, planned)
        .apply_projection(projection)?
        .build()?;
    Ok(Some(Arc::new(filter)))
}

/// N, when `expr` keeps the first N ranks of column `rank`.
fn rank_limit(expr: &Arc<dyn PhysicalExpr>, rank: usize) -> Option<usize> {
    let binary = expr.downcast_ref::<BinaryExpr>()?;
    let is_rank = |e: &Arc<dyn PhysicalExpr>| {
        e.downcast_ref::<Column>()
            .is_some_and(|c| c.index() == rank)
    };
    let (op, value) = match (is_rank(binary.left()), is_rank(binary.right())) {
        (true, false) => (*binary.op(), binary.right()),
        (false, true) => (binary.op().swap()?, binary.left()),
        _ => return None,
    };
    let value = match value.downcast_ref::<Literal>()?.value() {
        ScalarValue::UInt64(Some(v)) => i64::try_from(*v).ok()?,
        ScalarValue::Int64(Some(v)) => *v,
        ScalarValue::Int32(Some(v)) => i64::from(*v),
        _ => return None,
    };
    let limit = match op {
        Operator::LtEq => value,
        Operator::Lt => value - 1,
        Operator::Eq if value == 1 => 1,
        _ => return None,
    };
    usize::try_from(limit).ok().filter(|&n| n > 0)
}
