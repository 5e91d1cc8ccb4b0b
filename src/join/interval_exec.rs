//! [`IntervalJoinExec`]: an equi-join of two streams whose `ON` condition bounds the
//! distance between the two rows' event times (`c.ts BETWEEN i.ts AND i.ts + INTERVAL '30'
//! MINUTE`), or joins two windowed aggregations on their windows' ends (a window join:
//! a bound of zero, each window's rows joined once both sides have closed it). This file is
//! the plan node; the rows it keeps and how it joins them are in [`JoinState`], the running
//! join in [`JoinRun`].

use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, JoinSide, JoinType, Result, internal_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr, PhysicalExprRef};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::joins::utils::{JoinFilter, build_join_schema};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
    InputDistributionRequirements, Partitioning, PlanProperties,
};

use super::key_bytes::KeyEncoding;
use super::run::JoinRun;
use super::shape::{JoinShape, is_supported, key_partitioned, key_sides};
use super::side_buffer::SideBuffer;
use super::state::JoinState;
use super::time_bound::TimeBound;
use crate::stream::{
    AlignedInputs, ByteKeys, JobProgress, OperatorCheckpoint, StateAccount, StateSnapshot, lock,
    node_id,
};
use crate::stream::{
    MessageStream, StreamingExec, Watermark, execute_messages, execute_rows, partitions_of,
};

/// A stream-stream join bounded in event time.
#[derive(Debug)]
pub struct IntervalJoinExec {
    left: Arc<dyn ExecutionPlan>,
    right: Arc<dyn ExecutionPlan>,
    on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
    filter: Option<JoinFilter>,
    join_type: JoinType,
    bound: TimeBound,
    /// Left columns then right columns, before `projection`.
    join_schema: SchemaRef,
    projection: Option<Vec<usize>>,
    metrics: ExecutionPlanMetricsSet,
    properties: Arc<PlanProperties>,
}

impl IntervalJoinExec {
    /// The `join_type` join of `left` and `right` on `on` and `filter`, whose conjuncts
    /// bound the times as `bound` says; `projection` picks the output columns.
    pub fn try_new(
        left: Arc<dyn ExecutionPlan>,
        right: Arc<dyn ExecutionPlan>,
        on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
        filter: Option<JoinFilter>,
        join_type: JoinType,
        bound: TimeBound,
        projection: Option<Vec<usize>>,
    ) -> Result<Self> {
        if !is_supported(join_type) {
            return internal_err!("an interval join cannot be {join_type}");
        }
        let join_schema =
            Arc::new(build_join_schema(&left.schema(), &right.schema(), &join_type).0);
        let output = match &projection {
            Some(indices) => Arc::new(join_schema.project(indices)?),
            None => Arc::clone(&join_schema),
        };
        let unbounded = left.boundedness().is_unbounded() || right.boundedness().is_unbounded();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(output),
            Partitioning::UnknownPartitioning(partitions_of(&left)),
            EmissionType::Incremental,
            if unbounded {
                Boundedness::Unbounded {
                    requires_infinite_memory: false,
                }
            } else {
                Boundedness::Bounded
            },
        );
        Ok(Self {
            left,
            right,
            on,
            filter,
            join_type,
            bound,
            join_schema,
            projection,
            metrics: ExecutionPlanMetricsSet::new(),
            properties: Arc::new(properties),
        })
    }

    fn describe_on(&self) -> String {
        self.on
            .iter()
            .map(|(l, r)| format!("{l} = {r}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl DisplayAs for IntervalJoinExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "IntervalJoinExec: type={}, on=[{}], time={}",
            self.join_type,
            self.describe_on(),
            self.bound.display_with(&self.left.schema()),
        )?;
        if let Some(filter) = &self.filter {
            write!(f, ", filter={}", filter.expression())?;
        }
        if let Some(projection) = &self.projection {
            let names: Vec<&str> = projection
                .iter()
                .map(|&i| self.join_schema.field(i).name().as_str())
                .collect();
            write!(f, ", projection=[{}]", names.join(", "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for IntervalJoinExec {
    fn name(&self) -> &str {
        "IntervalJoinExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.left, &self.right]
    }

    /// The rows of a key of both sides in one partition.
    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        key_partitioned(&self.on)
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        for (l, r) in &self.on {
            for expr in [l, r] {
                if f(expr)? == TreeNodeRecursion::Stop {
                    return Ok(TreeNodeRecursion::Stop);
                }
            }
        }
        match &self.filter {
            Some(filter) => f(filter.expression()),
            None => Ok(TreeNodeRecursion::Continue),
        }
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [left, right] = <[_; 2]>::try_from(children)
            .map_err(|_| DataFusionError::Internal("IntervalJoinExec takes two inputs".into()))?;
        Ok(Arc::new(Self::try_new(
            left,
            right,
            self.on.clone(),
            self.filter.clone(),
            self.join_type,
            self.bound,
            self.projection.clone(),
        )?))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        execute_rows(self, partition, context)
    }
}

impl StreamingExec for IntervalJoinExec {
    fn execute_messages(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<MessageStream> {
        let left = execute_messages(&self.left, partition, Arc::clone(&context))?;
        let right = execute_messages(&self.right, partition, Arc::clone(&context))?;
        let key_fields = self
            .on
            .iter()
            .map(|(l, _)| l.data_type(&self.left.schema()))
            .collect::<Result<Vec<_>>>()?;
        let mut state = JoinState {
            join: JoinShape {
                on: self.on.clone(),
                filter: self.filter.clone(),
                join_type: self.join_type,
                bound: self.bound,
                join_schema: Arc::clone(&self.join_schema),
                projection: self.projection.clone(),
                keys: KeyEncoding::new(&key_fields)?,
                left_schema: self.left.schema(),
                right_schema: self.right.schema(),
            },
            left: SideBuffer::new(self.left.schema(), self.bound.upper),
            right: SideBuffer::new(self.right.schema(), self.bound.lower.saturating_neg()),
            keys: ByteKeys::default(),
            left_span: 0,
            left_watermark: Watermark::MIN,
            right_watermark: Watermark::MIN,
            forwarded: Watermark::MIN,
            pending: Vec::new(),
        };
        let progress = JobProgress::of_task(&context);
        let mut checkpoint = OperatorCheckpoint::of(progress.clone(), node_id(self));
        let partitions = self.properties().partitioning.partition_count();
        // A side's snapshot holds rows of that side.
        let (left_keys, right_keys) = key_sides(&self.on);
        let slot = |kind, keys: &[_]| checkpoint.slot(kind, partition, partitions, keys);
        let slots = slot("join-left", &left_keys)?.zip(slot("join-right", &right_keys)?);
        let output_slot = slot("join-output", &[])?;
        if let Some((left, right)) = &slots {
            state.restore(left, right)?;
        }
        // Rows already joined but not yet handed on when the checkpoint was taken.
        if let Some(restored) = output_slot.as_ref().and_then(|s| s.restored.as_ref()) {
            for batch in restored.batches.iter().rev() {
                state.pending.push(RecordBatch::try_new(
                    self.schema(),
                    batch.columns().to_vec(),
                )?);
            }
        }
        let state = Arc::new(Mutex::new(state));
        if let Some((left, right)) = slots {
            for (slot, side) in [(left, JoinSide::Left), (right, JoinSide::Right)] {
                let state = Arc::clone(&state);
                checkpoint.register(&slot, move || lock(&state).snapshot(side));
            }
        }
        if let Some(slot) = output_slot {
            let state = Arc::clone(&state);
            let schema = self.schema();
            checkpoint.register(&slot, move || {
                let pending = lock(&state).pending.iter().rev().cloned().collect();
                StateSnapshot::new(Arc::clone(&schema), pending, &[])
            });
        }
        let run = JoinRun {
            input: AlignedInputs::new(vec![left, right]),
            state,
            checkpoint,
            account: StateAccount::new(
                format!("IntervalJoinExec[{}]", self.describe_on()),
                &context,
                &self.metrics,
                partition,
            ),
            hold: progress.map(|progress| progress.hold()),
            baseline: BaselineMetrics::new(&self.metrics, partition),
        };
        Ok(run.into_messages())
    }
}
