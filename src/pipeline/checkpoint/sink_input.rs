//! [`SinkInputExec`]: where a job's messages become the rows its sink receives. It counts
//! the batches handed to the sink and tells the job when a checkpoint's barrier has
//! reached the sink, so the checkpoint completes once the sink has made everything before
//! the barrier durable. Added above the sink's input when a job runs with checkpoints;
//! invisible to `EXPLAIN`.

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

use crate::stream::{JobProgress, StreamMessage, execute_messages};

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
        let input = execute_messages(&self.input, partition, context)?;
        let rows = input.filter_map(move |message| {
            let out = match message {
                Ok(StreamMessage::Batch(batch)) => {
                    if let Some(progress) = &progress {
                        progress.state.delivered();
                    }
                    Some(Ok(batch))
                }
                // Everything before the barrier is with the sink now.
                Ok(StreamMessage::Barrier(epoch)) => {
                    if let Some(progress) = &progress {
                        progress.state.barrier_at_sink(epoch);
                    }
                    None
                }
                Ok(StreamMessage::Watermark(_) | StreamMessage::Idle) => None,
                Err(e) => Some(Err(e)),
            };
            futures::future::ready(out)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema(), rows)))
    }
}
