//! What flows between streaming operators: record batches with event-time progress in the
//! same stream. A watermark follows the rows it covers, so an operator that reads its
//! input in order knows, for every row, how far event time had got when the row arrived.

use std::pin::Pin;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{Stream, StreamExt};

use super::{StreamingExec, Watermark};

/// One message of a streaming operator's output.
#[derive(Debug, Clone)]
pub enum StreamMessage {
    /// Rows.
    Batch(RecordBatch),
    /// Event time has reached this point: no row earlier than it follows.
    /// [`Watermark::END`] says the input has ended and every result is complete; a stream
    /// that ends without it was stopped, and what its operators hold is not complete.
    Watermark(Watermark),
    /// Checkpoint barrier of this epoch: every row before it is in the checkpoint's state,
    /// no row after it. An operator snapshots its state when the barrier reaches it (from
    /// every input) and passes it on.
    Barrier(u64),
    /// The stream is idle: every split behind it has been quiet for its table's
    /// `'watermark.idle_timeout'`. Where streams merge, an idle one holds the others'
    /// watermark back no more, until it sends rows again (whose times may then be late).
    Idle,
}

/// A partition of a streaming operator's output.
pub type MessageStream = Pin<Box<dyn Stream<Item = Result<StreamMessage>> + Send>>;

/// The rows of `messages`, for consumers that only want rows (a sink, a batch operator).
pub fn batches_only(schema: SchemaRef, messages: MessageStream) -> SendableRecordBatchStream {
    let batches = messages.filter_map(|message| {
        futures::future::ready(match message {
            Ok(StreamMessage::Batch(batch)) if batch.num_rows() > 0 => Some(Ok(batch)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, batches))
}

/// The rows of `operator`'s messages: a streaming operator's `ExecutionPlan::execute`.
pub fn execute_rows(
    operator: &dyn StreamingExec,
    partition: usize,
    context: Arc<TaskContext>,
) -> Result<SendableRecordBatchStream> {
    let messages = operator.execute_messages(partition, context)?;
    Ok(batches_only(operator.schema(), messages))
}

/// `batches` as messages: their rows, then, if `bounded`, [`Watermark::END`] once they end.
pub fn messages_of(batches: SendableRecordBatchStream, bounded: bool) -> MessageStream {
    let rows = batches.map(|batch| batch.map(StreamMessage::Batch));
    if bounded {
        let end = futures::stream::once(async { Ok(StreamMessage::Watermark(Watermark::END)) });
        Box::pin(rows.chain(end))
    } else {
        Box::pin(rows)
    }
}
