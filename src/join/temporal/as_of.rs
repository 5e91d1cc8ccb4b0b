//! [`TemporalJoinAnalyzer`]: ties each table read `FOR SYSTEM_TIME AS OF` to the join that
//! reads it. The `AS OF` clause names a column of the other input, which the relation
//! alone cannot see; the analyzer resolves it in the join and adds to the join's condition
//! an [`AsOf`] marker of the two times (the stream's and the version's). The marker keeps
//! both columns alive through DataFusion's optimizer, and the temporal join rule takes it
//! out again when it plans the join.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNodeRecursion};
use datafusion::common::{Column, JoinSide, JoinType, Result, internal_err, plan_err};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    ColumnarValue, Expr, Join, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

use super::versioned_table::{Versioning, versioned_scan};

/// The marker of a temporal join in its condition: `as_of(stream time, version time)`,
/// with the versions' change kind third for a changelog. The join rule removes it; it is
/// never evaluated.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct AsOf {
    signature: Signature,
}

impl Default for AsOf {
    fn default() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for AsOf {
    fn name(&self) -> &str {
        "as_of"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        internal_err!("FOR SYSTEM_TIME AS OF is planned as a temporal join, never evaluated")
    }
}

fn is_as_of(expr: &Expr) -> bool {
    matches!(expr, Expr::ScalarFunction(call) if call.func.inner().is::<AsOf>())
}

/// Adds the [`AsOf`] marker to each join of a versioned table.
#[derive(Debug, Default)]
pub struct TemporalJoinAnalyzer;

impl AnalyzerRule for TemporalJoinAnalyzer {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        let mut joined = 0;
        let plan = plan
            .transform_up_with_subqueries(|node| match node {
                LogicalPlan::Join(join) => {
                    let marked = mark_join(join)?;
                    joined += usize::from(has_marker(&marked.data));
                    Ok(marked.update_data(LogicalPlan::Join))
                }
                other => Ok(Transformed::no(other)),
            })?
            .data;
        let mut unjoined = None;
        let mut scans = 0;
        plan.apply_with_subqueries(|node| {
            if let Some(versioning) = versioned_scan(node) {
                scans += 1;
                unjoined = Some(versioning);
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        match unjoined {
            Some(Versioning { table, as_of, .. }) if scans > joined => plan_err!(
                "{table} FOR SYSTEM_TIME AS OF {as_of} is read as of the time of each row of a \
                 stream: JOIN it to that stream ON its key (JOIN {table} FOR SYSTEM_TIME AS OF \
                 e.ts AS t ON t.key = e.key)"
            ),
            _ => Ok(plan),
        }
    }

    fn name(&self) -> &str {
        "temporal_join"
    }
}

/// True when `join` carries the [`AsOf`] marker.
fn has_marker(join: &Join) -> bool {
    join.filter
        .as_ref()
        .is_some_and(|filter| split_conjunction(filter).into_iter().any(is_as_of))
}

/// Whether a `join_type` join with the versioned table on `versioned_side` is a temporal
/// join: an inner join, or an outer join that keeps the stream's rows.
pub(super) fn is_temporal(versioned_side: JoinSide, join_type: JoinType) -> bool {
    matches!(
        (versioned_side, join_type),
        (_, JoinType::Inner)
            | (JoinSide::Right, JoinType::Left)
            | (JoinSide::Left, JoinType::Right)
    )
}

/// The versioning of the table `plan` reads, through aliases, projections and filters.
fn versioning_below(plan: &LogicalPlan) -> Option<Versioning> {
    match plan {
        LogicalPlan::TableScan(_) => versioned_scan(plan),
        LogicalPlan::SubqueryAlias(_) | LogicalPlan::Projection(_) | LogicalPlan::Filter(_) => {
            versioning_below(plan.inputs().first()?)
        }
        _ => None,
    }
}

/// `join` with the [`AsOf`] marker in its condition, if one input is a versioned table.
fn mark_join(join: Join) -> Result<Transformed<Join>> {
    let left = versioning_below(&join.left);
    let right = versioning_below(&join.right);
    let (versioning, versioned_side) = match (left, right) {
        (None, None) => return Ok(Transformed::no(join)),
        (Some(left), Some(_)) => {
            return plan_err!(
                "{} and the table it is joined to are both read FOR SYSTEM_TIME AS OF: a \
                 temporal join reads one versioned table as of the times of a stream",
                left.table
            );
        }
        (Some(left), None) => (left, JoinSide::Left),
        (None, Some(right)) => (right, JoinSide::Right),
    };
    if has_marker(&join) {
        return Ok(Transformed::no(join));
    }
    let Versioning {
        table,
        as_of,
        version_time,
        change_op,
    } = &versioning;
    if !is_temporal(versioned_side, join.join_type) {
        return plan_err!(
            "{table} FOR SYSTEM_TIME AS OF {as_of}: a temporal join is an INNER JOIN or a LEFT \
             JOIN of the stream to the versioned table, not a {} join",
            join.join_type
        );
    }
    let (stream, versioned) = match versioned_side {
        JoinSide::Left => (&join.right, &join.left),
        _ => (&join.left, &join.right),
    };
    let Ok((qualifier, field)) = stream
        .schema()
        .qualified_field_with_name(as_of.relation.as_ref(), &as_of.name)
    else {
        return plan_err!(
            "{table} FOR SYSTEM_TIME AS OF {as_of}: the stream it is joined to has no column \
             {as_of}"
        );
    };
    let stream_time = Column::from((qualifier, field));
    let Ok((qualifier, field)) = versioned
        .schema()
        .qualified_field_with_unqualified_name(version_time)
    else {
        return plan_err!(
            "{table} FOR SYSTEM_TIME AS OF {as_of}: the versioned rows need their event time \
             {version_time}, the time each version starts; keep it in the query"
        );
    };
    let version_time = Column::from((qualifier, field));
    let mut args = vec![Expr::Column(stream_time), Expr::Column(version_time)];
    if let Some(change_op) = change_op {
        let Ok((qualifier, field)) = versioned
            .schema()
            .qualified_field_with_unqualified_name(change_op)
        else {
            return plan_err!(
                "{table} FOR SYSTEM_TIME AS OF {as_of}: the versioned rows need their change \
                 kind {change_op} (METADATA FROM 'op'); keep it in the query"
            );
        };
        args.push(Expr::Column(Column::from((qualifier, field))));
    }
    let marker = Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::new(ScalarUDF::new_from_impl(AsOf::default())),
        args,
    ));
    let filter = match join.filter.clone() {
        Some(filter) => filter.and(marker),
        None => marker,
    };
    Ok(Transformed::yes(Join {
        filter: Some(filter),
        ..join
    }))
}
