//! [`UpsertAggregateExec`]: a `GROUP BY` over an unbounded input without a window. After
//! each input batch it emits the current row of every key the batch changed: an upsert
//! stream, which a keyed sink or a materialized view's store applies by primary key.
//!
//! In a materialized view it also emits each row's version as a trailing `_version` column
//! (see [`KeyedAggregates`]), and with `'state.ttl'` it forgets keys idle for that long.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::{TreeNodeIterator, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result, plan_err};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
    InputDistributionRequirements, Partitioning, PlanProperties,
};

use super::keyed_state::KeyedAggregates;
use crate::stream::VERSION_COLUMN;
use crate::stream::{
    DisplayNanos, JobProgress, MessageStream, OperatorCheckpoint, PipelineContext, StreamingExec,
    execute_messages, execute_rows, key_distribution, lock, map_with_state, node_id, partitions_of,
};
use crate::window::{AggregateExprs, without_input_ordering};

/// How often idle keys are looked for when a state TTL is set.
const EXPIRY_PERIOD: Duration = Duration::from_secs(1);

/// An unbounded `GROUP BY` that emits upserts.
#[derive(Debug)]
pub struct UpsertAggregateExec {
    input: Arc<dyn ExecutionPlan>,
    group_by: Vec<(Arc<dyn PhysicalExpr>, String)>,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// The aggregate's own output: keys, then aggregate values.
    rows_schema: SchemaRef,
    /// True when rows end with their version.
    versioned: bool,
    state_ttl: Option<Duration>,
    properties: Arc<PlanProperties>,
}

impl UpsertAggregateExec {
    /// The aggregation `group_by` / `aggregates` (with their `FILTER`s) over `input`;
    /// `schema` is the output schema of the aggregate it replaces.
    pub fn try_new(
        input: Arc<dyn ExecutionPlan>,
        group_by: Vec<(Arc<dyn PhysicalExpr>, String)>,
        aggregates: Vec<Arc<AggregateFunctionExpr>>,
        filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
        schema: SchemaRef,
    ) -> Result<Self> {
        let aggregates = aggregates
            .into_iter()
            .map(without_input_ordering)
            .collect::<Result<Vec<_>>>()?;
        let properties = properties(&input, Arc::clone(&schema));
        Ok(Self {
            input,
            group_by,
            aggregates,
            filters,
            rows_schema: schema,
            versioned: false,
            state_ttl: None,
            properties,
        })
    }

    /// The same aggregation emitting each row's version as a trailing `_version` column.
    pub fn with_versions(&self) -> Self {
        let mut fields = self.rows_schema.fields().to_vec();
        fields.push(Arc::new(Field::new(VERSION_COLUMN, DataType::Int64, false)));
        let schema = Arc::new(Schema::new(fields));
        Self {
            input: Arc::clone(&self.input),
            group_by: self.group_by.clone(),
            aggregates: self.aggregates.clone(),
            filters: self.filters.clone(),
            rows_schema: Arc::clone(&self.rows_schema),
            versioned: true,
            state_ttl: self.state_ttl,
            properties: properties(&self.input, schema),
        }
    }

    /// The same aggregation forgetting keys that no row arrived for in `ttl`.
    pub fn with_state_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.state_ttl = ttl;
        self
    }

    fn exprs(&self) -> Result<AggregateExprs> {
        AggregateExprs::try_new(
            self.group_by.clone(),
            self.aggregates.clone(),
            self.filters.clone(),
            &self.input.schema(),
        )
    }
}

fn properties(input: &Arc<dyn ExecutionPlan>, schema: SchemaRef) -> Arc<PlanProperties> {
    Arc::new(PlanProperties::new(
        EquivalenceProperties::new(schema),
        Partitioning::UnknownPartitioning(partitions_of(input)),
        EmissionType::Incremental,
        if input.boundedness().is_unbounded() {
            Boundedness::Unbounded {
                requires_infinite_memory: false,
            }
        } else {
            Boundedness::Bounded
        },
    ))
}

impl DisplayAs for UpsertAggregateExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let keys: Vec<&str> = self.group_by.iter().map(|(_, n)| n.as_str()).collect();
        let aggregates: Vec<&str> = self.aggregates.iter().map(|a| a.name()).collect();
        write!(
            f,
            "UpsertAggregateExec: keys=[{}], aggregates=[{}]",
            keys.join(", "),
            aggregates.join(", ")
        )?;
        if self.versioned {
            write!(f, ", versioned")?;
        }
        if let Some(ttl) = self.state_ttl {
            write!(f, ", state_ttl={}", DisplayNanos(ttl.as_nanos() as i64))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for UpsertAggregateExec {
    fn name(&self) -> &str {
        "UpsertAggregateExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.group_by
            .iter()
            .map(|(expr, _)| expr)
            .apply_until_stop(f)
    }

    /// Every row of a key in one partition.
    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        let keys = self.group_by.iter().map(|(e, _)| Arc::clone(e)).collect();
        InputDistributionRequirements::new(vec![key_distribution(keys)])
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(input) = children.pop() else {
            return plan_err!("UpsertAggregateExec takes one input");
        };
        let mut rebuilt = Self::try_new(
            input,
            self.group_by.clone(),
            self.aggregates.clone(),
            self.filters.clone(),
            Arc::clone(&self.rows_schema),
        )?
        .with_state_ttl(self.state_ttl);
        if self.versioned {
            rebuilt = rebuilt.with_versions();
        }
        Ok(Arc::new(rebuilt))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        execute_rows(self, partition, context)
    }
}

impl StreamingExec for UpsertAggregateExec {
    /// The changed rows after each input batch; watermarks are handed on as they come.
    fn execute_messages(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<MessageStream> {
        let input = execute_messages(&self.input, partition, Arc::clone(&context))?;
        let keys: Vec<&str> = self.group_by.iter().map(|(_, n)| n.as_str()).collect();
        let reservation = MemoryConsumer::new(format!("UpsertAggregateExec[{}]", keys.join(", ")))
            .register(context.memory_pool());
        let clock = Instant::now();
        let mut keyed = KeyedAggregates::try_new(self.exprs()?, Arc::clone(&self.rows_schema))?;
        let mut checkpoint = OperatorCheckpoint::of(JobProgress::of_task(&context), node_id(self));
        let partitions = self.properties().partitioning.partition_count();
        // A snapshot's rows start with the key's columns.
        let keys: Vec<Arc<dyn PhysicalExpr>> = self
            .group_by
            .iter()
            .enumerate()
            .map(|(i, (_, name))| Arc::new(Column::new(name, i)) as Arc<dyn PhysicalExpr>)
            .collect();
        let slot = checkpoint.slot("upsert", partition, partitions, &keys)?;
        if let Some(restored) = slot.as_ref().and_then(|s| s.restored.as_ref()) {
            keyed.restore(restored, 0)?;
        }
        let keyed = Arc::new(Mutex::new(keyed));
        if let Some(slot) = slot {
            let keyed = Arc::clone(&keyed);
            checkpoint.register(&slot, move || {
                lock(&keyed).snapshot(clock.elapsed().as_millis() as u64)
            });
        }
        let mut state = UpsertState {
            keyed,
            reservation,
            pipeline: PipelineContext::of_task(&context),
            versioned: self.versioned,
            state_ttl: self.state_ttl,
            clock,
            last_expiry: Duration::ZERO,
            schema: self.schema(),
        };
        Ok(map_with_state(input, checkpoint, move |batch| {
            state.step(batch)
        }))
    }
}

struct UpsertState {
    keyed: Arc<Mutex<KeyedAggregates>>,
    reservation: MemoryReservation,
    pipeline: Arc<PipelineContext>,
    versioned: bool,
    state_ttl: Option<Duration>,
    /// The start of the operator's clock, for idle times.
    clock: Instant,
    last_expiry: Duration,
    schema: SchemaRef,
}

impl UpsertState {
    /// Folds `batch` in and returns the rows it changed, if any.
    fn step(&mut self, batch: &RecordBatch) -> Result<Option<RecordBatch>> {
        let now = self.clock.elapsed();
        let mut keyed = lock(&self.keyed);
        if let Some(ttl) = self.state_ttl
            && now.saturating_sub(self.last_expiry) >= EXPIRY_PERIOD
        {
            self.last_expiry = now;
            keyed.expire(now.as_millis() as u64, ttl);
        }
        let touched = keyed.fold(batch, now.as_millis() as u64)?;
        let size = keyed.size();
        self.pipeline
            .metrics
            .peak_state_bytes
            .fetch_max(size as u64, std::sync::atomic::Ordering::Relaxed);
        self.reservation.try_resize(size).map_err(|e| {
            DataFusionError::ResourcesExhausted(format!(
                "the state of an unbounded GROUP BY needs {size} bytes for {} keys, over the memory limit \
                 (set 'state.ttl' on the view to forget idle keys, or raise the limit): {e}",
                keyed.len()
            ))
        })?;
        if touched.is_empty() {
            return Ok(None);
        }
        let (rows, versions) = keyed.rows(&touched)?;
        let mut columns = rows.columns().to_vec();
        if self.versioned {
            columns.push(Arc::new(versions));
        }
        Ok(Some(RecordBatch::try_new(
            Arc::clone(&self.schema),
            columns,
        )?))
    }
}
