//! [`SinkInputExec`]: counts the batches a job's sink receives, so a checkpoint can tell
//! whether the sink holds rows it has not yet made durable. Added above the sink's input
//! when a job runs with checkpoints; invisible to `EXPLAIN`.

use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, plan_err};
use datafusion::datasource::sink::DataSinkExec;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;

use crate::stream::JobProgress;

/// Passes its input on, counting each batch as delivered to the sink.
#[derive(Debug)]
pub struct SinkInputExec {
    input: Arc<dyn ExecutionPlan>,
}

impl SinkInputExec {
    /// `plan` with the input of its sink counted: the rows a `DataSinkExec` at its root
    /// receives, or, for a plan without one, the rows it returns.
    pub fn around_sink_input(plan: &Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        if plan.downcast_ref::<DataSinkExec>().is_some() {
            let input = Arc::clone(plan.children()[0]);
            return replace_children_if_necessary(Arc::clone(plan), vec![Arc::new(Self { input })]);
        }
        Ok(Arc::new(Self {
            input: Arc::clone(plan),
        }))
    }
}

impl DisplayAs for SinkInputExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SinkInputExec")
    }
}

impl ExecutionPlan for SinkInputExec {
    fn name(&self) -> &str {
        "SinkInputExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match children.pop() {
            Some(input) => Ok(Arc::new(Self { input })),
            None => plan_err!("SinkInputExec takes one input"),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let progress = JobProgress::of_task(&context);
        let input = self.input.execute(partition, context)?;
        let schema = input.schema();
        let counted = input.inspect(move |batch| {
            if let (Ok(_), Some(progress)) = (batch, &progress) {
                progress.state.delivered();
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, counted)))
    }
}
