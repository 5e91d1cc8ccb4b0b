//! [`ExchangeRule`]: spreads a plan over the session's workers. Sources read their splits in
//! one partition per worker; where an operator needs its input partitioned by key (a
//! window aggregate, a view's upsert, a join, Top-N: their `required_input_distribution`)
//! a hash exchange on that key is put in front of it; where a node needs one partition (a
//! sink, DataFusion's own operators over a merged input) a gather. Stateless nodes run in
//! every partition as they are.
//!
//! DataFusion plans the query for one partition (`target_partitions = 1`); this rule runs
//! after profusion's streaming rules have put the streaming operators in, and its
//! exchanges carry watermarks and checkpoint barriers, which DataFusion's
//! `RepartitionExec` and `CoalescePartitionsExec` do not. With one worker it only merges
//! the branches of a `UNION ALL` of streams.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::physical_expr::PartitioningSatisfaction;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::{Distribution, ExecutionPlan, ExecutionPlanProperties};

use crate::connector::SourceExec;
use crate::stream::{ExchangeExec, StreamingOperators};
use crate::window::WindowAssignExec;

/// Places exchanges for `workers` workers.
#[derive(Debug)]
pub struct ExchangeRule {
    workers: usize,
    /// The operators that run as message streams: only they are split by key. DataFusion's
    /// own operators, over bounded inputs, get their input in one partition.
    operators: StreamingOperators,
}

impl ExchangeRule {
    /// A rule spreading plans over `workers` workers (at least one).
    pub fn new(workers: usize, operators: StreamingOperators) -> Self {
        Self {
            workers: workers.max(1),
            operators,
        }
    }

    /// `node` with its inputs partitioned as it requires.
    fn place(&self, node: Arc<dyn ExecutionPlan>) -> Result<Transformed<Arc<dyn ExecutionPlan>>> {
        if let Some(coalesce) = node.downcast_ref::<CoalescePartitionsExec>()
            && coalesce.fetch().is_none()
        {
            let input = Arc::clone(coalesce.input());
            return Ok(Transformed::yes(gather(input)));
        }
        if let Some(source) = node.downcast_ref::<SourceExec>() {
            return Ok(match source.split(self.workers)? {
                Some(split) => Transformed::yes(split),
                None => Transformed::no(node),
            });
        }
        let keyed = self.operators.find(node.as_ref()).is_some();
        let requirements = node.input_distribution_requirements().into_per_child();
        // Windows assigned right below a keyed aggregate are assigned per key: the rows are
        // exchanged as they come, not once for every window they fall in.
        if let ([Distribution::KeyPartitioned(keys)], [child]) =
            (requirements.as_slice(), node.children().as_slice())
            && keyed
            && self.workers > 1
            && let Some(assign) = child.downcast_ref::<WindowAssignExec>()
            && let Some(keyed_assign) = assign.keyed(keys, self.workers)?
        {
            return Ok(Transformed::yes(replace_children_if_necessary(
                node,
                vec![keyed_assign],
            )?));
        }
        let mut changed = false;
        let children = node
            .children()
            .into_iter()
            .zip(requirements)
            .map(|(child, requirement)| {
                let placed = self.satisfy(Arc::clone(child), requirement, keyed);
                changed |= !Arc::ptr_eq(&placed, child);
                placed
            })
            .collect::<Vec<_>>();
        if !changed {
            return Ok(Transformed::no(node));
        }
        Ok(Transformed::yes(replace_children_if_necessary(
            node, children,
        )?))
    }

    /// `child` partitioned as `requirement` asks.
    fn satisfy(
        &self,
        child: Arc<dyn ExecutionPlan>,
        requirement: Distribution,
        keyed: bool,
    ) -> Arc<dyn ExecutionPlan> {
        let partitions = child.output_partitioning().partition_count();
        match requirement {
            Distribution::KeyPartitioned(keys) if keyed && self.workers > 1 => {
                let placed = child.output_partitioning().satisfaction(
                    &Distribution::KeyPartitioned(keys.clone()),
                    child.equivalence_properties(),
                    false,
                ) == PartitioningSatisfaction::Exact;
                if placed && partitions == self.workers {
                    return child;
                }
                Arc::new(ExchangeExec::hash(child, keys, self.workers))
            }
            Distribution::KeyPartitioned(_) | Distribution::SinglePartition if partitions > 1 => {
                gather(child)
            }
            _ => child,
        }
    }
}

/// Every partition of `plan` in one.
fn gather(plan: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
    Arc::new(ExchangeExec::gather(plan))
}

impl PhysicalOptimizerRule for ExchangeRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let plan = plan.transform_up(|node| self.place(node))?.data;
        // Whoever runs the plan reads one partition.
        Ok(match plan.output_partitioning().partition_count() {
            1 => plan,
            _ => gather(plan),
        })
    }

    fn name(&self) -> &str {
        "exchanges"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
