//! [`TemporalJoinRule`]: plans each join that carries the [`AsOf`] marker as a
//! [`TemporalJoinExec`]. It takes the marker out of the join's condition (its two columns
//! are the stream's time and the versions' start), and lifts the filters DataFusion pushed
//! onto the versioned input into the join: a version they reject must still hide the
//! versions before it, so they apply to the version a row finds, not to the table.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{JoinSide, Result, plan_err};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::utils::{conjunction, split_conjunction};
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::utils::{ColumnIndex, JoinFilter};

use super::as_of::{AsOf, is_temporal};
use super::exec::{TemporalJoin, TemporalJoinExec};
use crate::join::equi_join::EquiJoin;
use crate::stream::without_sort;

/// Replaces each hash join of a versioned table with a [`TemporalJoinExec`].
#[derive(Debug, Default)]
pub struct TemporalJoinRule;

impl PhysicalOptimizerRule for TemporalJoinRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let plan = plan
            .transform_up(|node| {
                let Some(join) = EquiJoin::of(&node) else {
                    return Ok(Transformed::no(node));
                };
                match temporal_join(join)? {
                    Some(join) => Ok(Transformed::yes(
                        Arc::new(TemporalJoinExec::try_new(join)?) as Arc<dyn ExecutionPlan>
                    )),
                    None => Ok(Transformed::no(node)),
                }
            })?
            .data;
        let mut unplanned = false;
        plan.apply(|node| {
            node.apply_expressions(&mut |expr| {
                unplanned |= expr.exists(|e| Ok(as_of(e).is_some()))?;
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        if unplanned {
            return plan_err!(
                "a temporal join (FOR SYSTEM_TIME AS OF) needs ON to equate the versioned \
                 table's key with the stream's columns (ON u.user_id = e.user_id)"
            );
        }
        Ok(plan)
    }

    fn name(&self) -> &str {
        "temporal_join"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The columns of an [`AsOf`] marker, if `expr` is one: the stream's time, the versions'
/// start, and their change kind when there is one.
fn as_of(expr: &Arc<dyn PhysicalExpr>) -> Option<(&Column, &Column, Option<&Column>)> {
    let call = expr.downcast_ref::<ScalarFunctionExpr>()?;
    if !call.fun().inner().is::<AsOf>() {
        return None;
    }
    match call.args() {
        [stream, version] => Some((stream.downcast_ref()?, version.downcast_ref()?, None)),
        [stream, version, op] => Some((
            stream.downcast_ref()?,
            version.downcast_ref()?,
            Some(op.downcast_ref()?),
        )),
        _ => None,
    }
}

/// The temporal join `join` is, if its condition carries the marker.
fn temporal_join(join: EquiJoin) -> Result<Option<TemporalJoin>> {
    let Some(filter) = &join.filter else {
        return Ok(None);
    };
    let conjuncts = split_conjunction(filter.expression());
    let Some((stream_time, version_time, change_op)) = conjuncts.iter().find_map(|c| as_of(c))
    else {
        return Ok(None);
    };
    join.check_null_equality()?;
    let at = |column: &Column| -> (ColumnIndex, DataType) {
        let index = filter.column_indices()[column.index()].clone();
        let data_type = filter.schema().field(column.index()).data_type().clone();
        (index, data_type)
    };
    let (stream_time, stream_type) = at(stream_time);
    let (version_time, version_type) = at(version_time);
    let change_op = change_op.map(|column| at(column).0.index);
    for (what, data_type) in [
        ("AS OF", &stream_type),
        ("the versions' start", &version_type),
    ] {
        if !matches!(data_type, DataType::Timestamp(_, _)) {
            return plan_err!("a temporal join's time is a TIMESTAMP; {what} is {data_type}");
        }
    }
    let versioned_side = version_time.side;
    if !is_temporal(versioned_side, join.join_type) || stream_time.side == versioned_side {
        return plan_err!(
            "a temporal join is an INNER or LEFT join of a stream to a versioned table; this \
             one is planned as a {} join",
            join.join_type
        );
    }
    let rest: Vec<Arc<dyn PhysicalExpr>> = conjuncts
        .into_iter()
        .filter(|c| as_of(c).is_none())
        .cloned()
        .collect();
    let rest = (!rest.is_empty()).then(|| {
        JoinFilter::new(
            conjunction(rest),
            filter.column_indices().to_vec(),
            Arc::clone(filter.schema()),
        )
    });
    let (versioned, stream) = match versioned_side {
        JoinSide::Left => (without_sort(join.left), without_sort(join.right)),
        _ => (without_sort(join.right), without_sort(join.left)),
    };
    let seen_width = versioned.schema().fields().len();
    let lifted = lift_filters(versioned)?;
    if filters_below(&lifted.input) {
        return plan_err!(
            "a condition on a table read FOR SYSTEM_TIME AS OF sits below a computed column \
             of it, where it would judge the table instead of the version found: join on the \
             table's columns as they are"
        );
    }
    let map = |index: usize| {
        lifted
            .columns
            .as_ref()
            .map_or(index, |columns| columns[index])
    };
    let on = join
        .on
        .into_iter()
        .map(|(l, r)| {
            Ok(match versioned_side {
                JoinSide::Left => (remap(l, &lifted.columns)?, r),
                _ => (l, remap(r, &lifted.columns)?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let filter = rest.map(|filter| {
        let indices = filter
            .column_indices()
            .iter()
            .map(|c| ColumnIndex {
                index: if c.side == versioned_side {
                    map(c.index)
                } else {
                    c.index
                },
                side: c.side,
            })
            .collect();
        JoinFilter::new(
            Arc::clone(filter.expression()),
            indices,
            Arc::clone(filter.schema()),
        )
    });
    // The join's output columns, as the wider versioned input now places them.
    let projection = match &lifted.columns {
        None => join.projection,
        Some(_) => {
            let stream_width = stream.schema().fields().len();
            let full_width = lifted.input.schema().fields().len();
            let output = join
                .projection
                .unwrap_or_else(|| (0..stream_width + seen_width).collect());
            let place = |k: usize| match versioned_side {
                JoinSide::Left if k < seen_width => map(k),
                JoinSide::Left => full_width + (k - seen_width),
                _ if k < stream_width => k,
                _ => stream_width + map(k - stream_width),
            };
            Some(output.into_iter().map(place).collect())
        }
    };
    let (left, right) = match versioned_side {
        JoinSide::Left => (lifted.input, stream),
        _ => (stream, lifted.input),
    };
    Ok(Some(TemporalJoin {
        left,
        right,
        versioned_side,
        on,
        filter,
        version_condition: lifted.condition,
        join_type: join.join_type,
        stream_time: stream_time.index,
        version_time: map(version_time.index),
        change_op: change_op.map(map),
        projection,
    }))
}

/// The versioned input below the filters DataFusion pushed onto it, and those filters.
struct LiftedFilters {
    input: Arc<dyn ExecutionPlan>,
    /// The filters' conditions, on `input`'s columns.
    condition: Option<Arc<dyn PhysicalExpr>>,
    /// Where each column the join saw is in `input`, when the filters projected them.
    columns: Option<Vec<usize>>,
}

fn lift_filters(mut input: Arc<dyn ExecutionPlan>) -> Result<LiftedFilters> {
    let mut conditions: Vec<Arc<dyn PhysicalExpr>> = Vec::new();
    let mut columns: Option<Vec<usize>> = None;
    while let Some(filter) = input.downcast_ref::<FilterExec>() {
        if let Some(projection) = filter.projection() {
            let projection: Vec<usize> = projection.to_vec();
            conditions = conditions
                .into_iter()
                .map(|c| remap(c, &Some(projection.clone())))
                .collect::<Result<_>>()?;
            columns = Some(match columns {
                Some(above) => above.iter().map(|&i| projection[i]).collect(),
                None => projection,
            });
        }
        conditions.push(Arc::clone(filter.predicate()));
        let below = Arc::clone(filter.input());
        input = below;
    }
    Ok(LiftedFilters {
        input,
        condition: (!conditions.is_empty()).then(|| conjunction(conditions)),
        columns,
    })
}

/// True when a filter is left anywhere below `plan`.
fn filters_below(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.exists(|node| Ok(node.downcast_ref::<FilterExec>().is_some()))
        .unwrap_or(false)
}

/// `expr` with each column `i` read from column `columns[i]` instead.
fn remap(
    expr: Arc<dyn PhysicalExpr>,
    columns: &Option<Vec<usize>>,
) -> Result<Arc<dyn PhysicalExpr>> {
    let Some(columns) = columns else {
        return Ok(expr);
    };
    expr.transform(|e| match e.downcast_ref::<Column>() {
        Some(column) => Ok(Transformed::yes(Arc::new(Column::new(
            column.name(),
            columns[column.index()],
        )) as Arc<dyn PhysicalExpr>)),
        None => Ok(Transformed::no(e)),
    })
    .map(|t| t.data)
}
