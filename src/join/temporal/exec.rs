//! [`TemporalJoinExec`]: a temporal join of a stream with a versioned table
//! (`JOIN users FOR SYSTEM_TIME AS OF e.ts AS u ON u.user_id = e.user_id`): each stream
//! row is joined with the version of its key valid at the row's time, once the versioned
//! input's watermark shows every such version has arrived. INNER drops rows without a
//! version; LEFT keeps them with NULLs. The rows it keeps are in [`TemporalState`].

use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, JoinSide, JoinType, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr, PhysicalExprRef};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::joins::utils::{JoinFilter, build_join_schema};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
    InputDistributionRequirements, Partitioning, PlanProperties,
};

use super::state::{TemporalShape, TemporalState};
use crate::join::run::JoinRun;
use crate::join::shape::{key_partitioned, key_sides};
use crate::stream::{
    AlignedInputs, JobProgress, MessageStream, OperatorCheckpoint, StateAccount, StateSlot,
    StateSnapshot, StreamingExec, execute_messages, execute_rows, lock, node_id, partitions_of,
};

/// The parts of a temporal join, as the rule finds them in DataFusion's join.
#[derive(Debug, Clone)]
pub struct TemporalJoin {
    pub left: Arc<dyn ExecutionPlan>,
    pub right: Arc<dyn ExecutionPlan>,
    /// Which input is the versioned table.
    pub versioned_side: JoinSide,
    /// Equal pairs (left, right): the versioned table's key and the stream's.
    pub on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
    /// The rest of `ON`, on both rows.
    pub filter: Option<JoinFilter>,
    /// Conditions on the versioned table alone, applied to the version a row finds.
    pub version_condition: Option<PhysicalExprRef>,
    pub join_type: JoinType,
    /// The stream's time (the `AS OF` column) and the versions' start, in their inputs.
    pub stream_time: usize,
    pub version_time: usize,
    /// The versions' change kind, for a changelog: a `d` row ends its key's versions.
    pub change_op: Option<usize>,
    pub projection: Option<Vec<usize>>,
}

impl TemporalJoin {
    fn stream(&self) -> &Arc<dyn ExecutionPlan> {
        match self.versioned_side {
            JoinSide::Left => &self.right,
            _ => &self.left,
        }
    }

    fn versioned(&self) -> &Arc<dyn ExecutionPlan> {
        match self.versioned_side {
            JoinSide::Left => &self.left,
            _ => &self.right,
        }
    }
}

/// A stream joined with a versioned table as of each row's time.
#[derive(Debug)]
pub struct TemporalJoinExec {
    join: TemporalJoin,
    /// Left columns then right columns, before `projection`.
    join_schema: SchemaRef,
    metrics: ExecutionPlanMetricsSet,
    properties: Arc<PlanProperties>,
}

impl TemporalJoinExec {
    /// The plan node of `join`.
    pub fn try_new(join: TemporalJoin) -> Result<Self> {
        let join_schema = Arc::new(
            build_join_schema(&join.left.schema(), &join.right.schema(), &join.join_type).0,
        );
        let output = match &join.projection {
            Some(indices) => Arc::new(join_schema.project(indices)?),
            None => Arc::clone(&join_schema),
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(output),
            Partitioning::UnknownPartitioning(partitions_of(&join.left)),
            EmissionType::Incremental,
            match join.stream().boundedness().is_unbounded() {
                true => Boundedness::Unbounded {
                    requires_infinite_memory: false,
                },
                false => Boundedness::Bounded,
            },
        );
        Ok(Self {
            join,
            join_schema,
            metrics: ExecutionPlanMetricsSet::new(),
            properties: Arc::new(properties),
        })
    }

    fn describe_on(&self) -> String {
        let on: Vec<String> = self
            .join
            .on
            .iter()
            .map(|(l, r)| format!("{l} = {r}"))
            .collect();
        on.join(", ")
    }

    fn shape(&self) -> Result<TemporalShape> {
        let join = &self.join;
        let (stream_keys, version_keys): (Vec<_>, Vec<_>) = join
            .on
            .iter()
            .map(|(l, r)| match join.versioned_side {
                JoinSide::Left => (Arc::clone(r), Arc::clone(l)),
                _ => (Arc::clone(l), Arc::clone(r)),
            })
            .unzip();
        let stream_schema = join.stream().schema();
        let key_fields = stream_keys
            .iter()
            .map(|k| Ok(SortField::new(k.data_type(&stream_schema)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(TemporalShape {
            versioned_side: join.versioned_side,
            join_type: join.join_type,
            stream_keys,
            version_keys,
            converter: RowConverter::new(key_fields)?,
            filter: join.filter.clone(),
            version_condition: join.version_condition.clone(),
            stream_time: join.stream_time,
            version_time: join.version_time,
            change_op: join.change_op,
            stream_schema,
            version_schema: join.versioned().schema(),
            output_schema: self.schema(),
            projection: join.projection.clone(),
        })
    }
}

impl DisplayAs for TemporalJoinExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let join = &self.join;
        let (stream, versioned) = (join.stream().schema(), join.versioned().schema());
        write!(
            f,
            "TemporalJoinExec: type={}, on=[{}], versioned={}, as_of={}, version_start={}",
            join.join_type,
            self.describe_on(),
            match join.versioned_side {
                JoinSide::Left => "left",
                _ => "right",
            },
            stream.field(join.stream_time).name(),
            versioned.field(join.version_time).name(),
        )?;
        if let Some(filter) = &join.filter {
            write!(f, ", filter={}", filter.expression())?;
        }
        if let Some(condition) = &join.version_condition {
            write!(f, ", version_condition={condition}")?;
        }
        if let Some(projection) = &join.projection {
            let names: Vec<&str> = projection
                .iter()
                .map(|&i| self.join_schema.field(i).name().as_str())
                .collect();
            write!(f, ", projection=[{}]", names.join(", "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for TemporalJoinExec {
    fn name(&self) -> &str {
        "TemporalJoinExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.join.left, &self.join.right]
    }

    /// The rows and versions of a key in one partition.
    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        key_partitioned(&self.join.on)
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        let join = &self.join;
        let pairs = join.on.iter().flat_map(|(l, r)| [l, r]);
        let conditions = join.filter.iter().map(|f| f.expression());
        for expr in pairs.chain(conditions).chain(join.version_condition.iter()) {
            if f(expr)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [left, right] = <[_; 2]>::try_from(children)
            .map_err(|_| DataFusionError::Internal("TemporalJoinExec takes two inputs".into()))?;
        Ok(Arc::new(Self::try_new(TemporalJoin {
            left,
            right,
            ..self.join.clone()
        })?))
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

impl StreamingExec for TemporalJoinExec {
    fn execute_messages(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<MessageStream> {
        let left = execute_messages(&self.join.left, partition, Arc::clone(&context))?;
        let right = execute_messages(&self.join.right, partition, Arc::clone(&context))?;
        let mut state = TemporalState::new(self.shape()?);
        let progress = JobProgress::of_task(&context);
        let mut checkpoint = OperatorCheckpoint::of(progress.clone(), node_id(self));
        let partitions = self.properties().partitioning.partition_count();
        // Versions are rows of the versioned side, waiting rows of the stream side.
        let (left_keys, right_keys) = key_sides(&self.join.on);
        let (version_keys, stream_keys) = match self.join.versioned_side {
            JoinSide::Left => (left_keys, right_keys),
            _ => (right_keys, left_keys),
        };
        let slot = |kind, keys: &[_]| checkpoint.slot(kind, partition, partitions, keys);
        let slots = match (
            slot("temporal-versions", &version_keys)?,
            slot("temporal-waiting", &stream_keys)?,
            slot("temporal-output", &[])?,
        ) {
            (Some(versions), Some(waiting), Some(output)) => Some((versions, waiting, output)),
            _ => None,
        };
        if let Some((versions, waiting, output)) = &slots {
            state.restore(versions, waiting)?;
            // Rows already joined but not yet handed on when the checkpoint was taken.
            if let Some(restored) = &output.restored {
                for batch in restored.batches.iter().rev() {
                    state.pending.push(RecordBatch::try_new(
                        self.schema(),
                        batch.columns().to_vec(),
                    )?);
                }
            }
        }
        let state = Arc::new(Mutex::new(state));
        if let Some((versions, waiting, output)) = slots {
            let mut register =
                |slot: &StateSlot, snapshot: fn(&TemporalState) -> Result<StateSnapshot>| {
                    let state = Arc::clone(&state);
                    checkpoint.register(slot, move || snapshot(&lock(&state)));
                };
            register(&versions, TemporalState::snapshot_versions);
            register(&waiting, TemporalState::snapshot_waiting);
            register(&output, TemporalState::snapshot_pending);
        }
        let run = JoinRun {
            input: AlignedInputs::new(vec![left, right]),
            state,
            checkpoint,
            account: StateAccount::new(
                format!("TemporalJoinExec[{}]", self.describe_on()),
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
