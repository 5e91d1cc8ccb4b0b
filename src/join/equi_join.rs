//! [`EquiJoin`]: the parts of a DataFusion equi-join (a hash join, or the symmetric hash
//! join DataFusion plans for unbounded inputs), as the stream join rules take them apart.

use std::sync::Arc;

use datafusion::common::{JoinType, NullEquality};
use datafusion::physical_expr::PhysicalExprRef;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::joins::utils::JoinFilter;
use datafusion::physical_plan::joins::{HashJoinExec, SymmetricHashJoinExec};

/// The parts of a DataFusion equi-join.
pub(super) struct EquiJoin {
    pub(super) left: Arc<dyn ExecutionPlan>,
    pub(super) right: Arc<dyn ExecutionPlan>,
    pub(super) on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
    pub(super) filter: Option<JoinFilter>,
    pub(super) join_type: JoinType,
    pub(super) projection: Option<Vec<usize>>,
    /// Whether NULL keys equal each other (`IS NOT DISTINCT FROM`).
    pub(super) null_equality: NullEquality,
}

impl EquiJoin {
    /// Refuses keys compared with `IS NOT DISTINCT FROM`: the stream joins keep no row
    /// under a NULL key.
    pub(super) fn check_null_equality(&self) -> datafusion::common::Result<()> {
        match self.null_equality {
            NullEquality::NullEqualsNull => datafusion::common::plan_err!(
                "a join of a stream on IS NOT DISTINCT FROM is not supported: NULL keys match \
                 nothing; compare the keys with ="
            ),
            NullEquality::NullEqualsNothing => Ok(()),
        }
    }

    /// The parts of `plan`, if it is a hash join.
    pub(super) fn of(plan: &Arc<dyn ExecutionPlan>) -> Option<Self> {
        if let Some(join) = plan.downcast_ref::<HashJoinExec>() {
            return Some(Self {
                left: Arc::clone(join.left()),
                right: Arc::clone(join.right()),
                on: join.on().to_vec(),
                filter: join.filter().cloned(),
                join_type: *join.join_type(),
                projection: join.projection.as_ref().map(|p| p.to_vec()),
                null_equality: join.null_equality(),
            });
        }
        let join = plan.downcast_ref::<SymmetricHashJoinExec>()?;
        Some(Self {
            left: Arc::clone(join.left()),
            right: Arc::clone(join.right()),
            on: join.on().to_vec(),
            filter: join.filter().cloned(),
            join_type: *join.join_type(),
            projection: None,
            null_equality: join.null_equality(),
        })
    }
}
