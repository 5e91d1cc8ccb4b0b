//! [`execute_messages`]: runs any plan node as a message stream. Streaming operators run
//! themselves; DataFusion's stateless operators (filters, projections, unions, and the
//! cooperative-scheduling wrapper) are run here, batch by batch, with every watermark
//! forwarded untouched in its place; `UNNEST` and async functions (`enrich_http`), whose
//! work DataFusion keeps private, are run over one batch at a time for the same effect;
//! anything else runs as DataFusion runs it, followed by the end of input when it is
//! bounded.

use std::sync::Arc;

use datafusion::common::{Result, exec_err, internal_datafusion_err, internal_err};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::async_func::AsyncFuncExec;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::filter::{FilterExec, batch_filter};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::unnest::UnnestExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, collect};
use futures::StreamExt;

use super::{MessageStream, OperatorCheckpoint, StreamMessage, StreamingOperators, messages_of};
use datafusion::arrow::array::RecordBatch;

/// Runs `partition` of `plan` as messages: rows with event-time progress in band.
pub fn execute_messages(
    plan: &Arc<dyn ExecutionPlan>,
    partition: usize,
    context: Arc<TaskContext>,
) -> Result<MessageStream> {
    let operators = context
        .session_config()
        .get_extension::<StreamingOperators>()
        .ok_or_else(|| {
            internal_datafusion_err!(
                "the session has no streaming operators registered: build it with profusion::session::new_session"
            )
        })?;
    if let Some(operator) = operators.find(plan.as_ref()) {
        return operator.execute_messages(partition, context);
    }
    if let Some(filter) = plan.downcast_ref::<FilterExec>() {
        let predicate = Arc::clone(filter.predicate());
        let projection = filter.projection().as_ref().map(|p| p.to_vec());
        let input = execute_messages(filter.input(), partition, context)?;
        return Ok(map_batches(input, move |batch| {
            let filtered = batch_filter(&batch, &predicate)?;
            match &projection {
                Some(indices) => Ok(filtered.project(indices)?),
                None => Ok(filtered),
            }
        }));
    }
    if let Some(projection) = plan.downcast_ref::<ProjectionExec>() {
        let projector = projection
            .projection_expr()
            .make_projector(&projection.input().schema())?;
        let input = execute_messages(projection.input(), partition, context)?;
        return Ok(map_batches(input, move |batch| {
            projector.project_batch(&batch)
        }));
    }
    // This only reschedules polling: the rows and their order stay as they are.
    if let Some(cooperative) = plan.downcast_ref::<CooperativeExec>() {
        return execute_messages(cooperative.input(), partition, context);
    }
    if let Some(union) = plan.downcast_ref::<UnionExec>() {
        let mut first = 0;
        for input in union.inputs() {
            let count = input.output_partitioning().partition_count();
            if partition < first + count {
                return execute_messages(input, partition - first, context);
            }
            first += count;
        }
        return internal_err!("UnionExec has no partition {partition}");
    }
    if plan.is::<UnnestExec>() || plan.is::<AsyncFuncExec>() {
        let [input] = plan.children()[..] else {
            return internal_err!("{} takes one input", plan.name());
        };
        let input = execute_messages(input, partition, Arc::clone(&context))?;
        return Ok(per_batch(Arc::clone(plan), input, context));
    }
    if plan.boundedness().is_unbounded() && !plan.children().is_empty() {
        return exec_err!(
            "{} cannot run over a stream: it does not carry event time from its input",
            plan.name()
        );
    }
    let bounded = !plan.boundedness().is_unbounded();
    Ok(messages_of(plan.execute(partition, context)?, bounded))
}

/// `messages` with every batch run through `operator` on its own (over a one-batch input),
/// and every watermark forwarded after the output of the batches before it.
fn per_batch(
    operator: Arc<dyn ExecutionPlan>,
    messages: MessageStream,
    context: Arc<TaskContext>,
) -> MessageStream {
    let outputs = messages.then(move |message| {
        let operator = Arc::clone(&operator);
        let context = Arc::clone(&context);
        async move {
            let batch = match message {
                Ok(StreamMessage::Batch(batch)) => batch,
                other => return vec![other],
            };
            let output = async {
                let input = MemorySourceConfig::try_new_exec(
                    &[vec![batch]],
                    operator.children()[0].schema(),
                    None,
                )?;
                #[allow(deprecated)]
                let plan = operator.with_new_children(vec![input as Arc<dyn ExecutionPlan>])?;
                collect(plan, context).await
            };
            match output.await {
                Ok(batches) => batches
                    .into_iter()
                    .map(|b| Ok(StreamMessage::Batch(b)))
                    .collect(),
                Err(e) => vec![Err(e)],
            }
        }
    });
    Box::pin(outputs.flat_map(futures::stream::iter))
}

/// `messages` through an operator of one input that keeps state between batches: every
/// batch goes through `step`, which returns the rows it changed, if any; at each barrier
/// the operator's `checkpoint` is taken before the barrier is handed on; watermarks are
/// forwarded as they are.
pub fn map_with_state(
    messages: MessageStream,
    checkpoint: OperatorCheckpoint,
    mut step: impl FnMut(&RecordBatch) -> Result<Option<RecordBatch>> + Send + 'static,
) -> MessageStream {
    Box::pin(messages.filter_map(move |message| {
        let out = match message {
            Ok(StreamMessage::Batch(batch)) => step(&batch)
                .map(|out| out.map(StreamMessage::Batch))
                .transpose(),
            Ok(StreamMessage::Barrier(epoch)) => {
                checkpoint.on_barrier(epoch);
                Some(Ok(StreamMessage::Barrier(epoch)))
            }
            other => Some(other),
        };
        futures::future::ready(out)
    }))
}

/// `messages` with `f` applied to every batch and every watermark forwarded as it is.
pub fn map_batches(
    messages: MessageStream,
    f: impl Fn(datafusion::arrow::array::RecordBatch) -> Result<datafusion::arrow::array::RecordBatch>
    + Send
    + 'static,
) -> MessageStream {
    Box::pin(messages.map(move |message| match message? {
        StreamMessage::Batch(batch) => f(batch).map(StreamMessage::Batch),
        progress => Ok(progress),
    }))
}
