//! [`IngestWriter`]: one long-lived write into a table's sink for webhook events, so a
//! request costs one batch, not a new Kafka producer.
//!
//! Requests queue their batch with a reply channel; the writer's stream hands the sink
//! everything queued at once as one batch. Every sink writes a batch to the end (a Kafka
//! sink waits for the broker's acknowledgements) before it asks for the next one, so when
//! the sink asks again, the batches it had are durable: their requests are answered then.
//! If the write fails, the requests of the batch in hand are told why, and the next request
//! starts a new writer. Events of a failed batch may be partly written (Kafka has no
//! transactions here): a client that retries may write some twice.

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::DataFusionError;
use datafusion::datasource::sink::DataSink;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use tokio::sync::{mpsc, oneshot};

use crate::connector::CountingSink;
use crate::stream::lock;

/// Batches taken into one write at most.
const MAX_BATCHES_PER_WRITE: usize = 256;

/// Where a request hears whether its batch was written.
type Reply = oneshot::Sender<Result<(), Arc<str>>>;

/// The replies of the batch the sink has in hand.
type InHand = Arc<Mutex<Vec<Reply>>>;

/// The webhook writer of one table.
#[derive(Debug)]
pub struct IngestWriter {
    table: String,
    schema: SchemaRef,
    sink: Arc<dyn DataSink>,
    context: Arc<TaskContext>,
    /// Where the write runs: the pipeline's runtime.
    runtime: tokio::runtime::Handle,
    running: Mutex<Option<mpsc::Sender<(RecordBatch, Reply)>>>,
}

impl IngestWriter {
    /// A writer into `sink` of the table `table`, run with `context` on `runtime`.
    pub fn new(
        table: String,
        schema: SchemaRef,
        sink: Arc<dyn DataSink>,
        context: Arc<TaskContext>,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        Self {
            table,
            schema,
            sink,
            context,
            runtime,
            running: Mutex::new(None),
        }
    }

    /// Writes `batch`; returns once it is durable in the table's sink, or why it is not.
    pub async fn write(&self, batch: RecordBatch) -> Result<(), Arc<str>> {
        let (reply, written) = oneshot::channel();
        let mut queued = (batch, reply);
        // A writer that has just ended refuses the batch: start another and queue again.
        for _ in 0..2 {
            match self.sender().send(queued).await {
                Ok(()) => {
                    return written.await.unwrap_or_else(|_| {
                        Err(format!("writing to table {} stopped; retry", self.table).into())
                    });
                }
                Err(mpsc::error::SendError(back)) => {
                    queued = back;
                    *lock(&self.running) = None;
                }
            }
        }
        Err(format!("writing to table {} could not start", self.table).into())
    }

    /// The queue of the running write, started if there is none.
    fn sender(&self) -> mpsc::Sender<(RecordBatch, Reply)> {
        let mut running = lock(&self.running);
        if let Some(sender) = running.as_ref().filter(|s| !s.is_closed()) {
            return sender.clone();
        }
        let (sender, receiver) = mpsc::channel(1024);
        let in_hand: InHand = Arc::default();
        let stream = Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            batches(receiver, Arc::clone(&self.schema), Arc::clone(&in_hand)),
        ));
        let sink = CountingSink::new(self.table.clone(), Arc::clone(&self.sink));
        let context = Arc::clone(&self.context);
        let table = self.table.clone();
        self.runtime.spawn(async move {
            if let Err(error) = sink.write_all(stream, &context).await {
                let message: Arc<str> = format!("writing to table {table}: {error}").into();
                eprintln!("serve: {message}");
                for reply in lock(&in_hand).drain(..) {
                    let _ = reply.send(Err(Arc::clone(&message)));
                }
            }
        });
        *running = Some(sender.clone());
        sender
    }
}

/// The batches the sink writes: each time it asks, the requests of the batch before are
/// answered (it is durable), and everything queued since is joined into the next.
fn batches(
    receiver: mpsc::Receiver<(RecordBatch, Reply)>,
    schema: SchemaRef,
    in_hand: InHand,
) -> impl futures::Stream<Item = Result<RecordBatch, DataFusionError>> {
    futures::stream::unfold(receiver, move |mut receiver| {
        let schema = Arc::clone(&schema);
        let in_hand = Arc::clone(&in_hand);
        async move {
            for reply in lock(&in_hand).drain(..) {
                let _ = reply.send(Ok(()));
            }
            let (first, reply) = receiver.recv().await?;
            let mut joined = vec![first];
            let mut replies = vec![reply];
            while joined.len() < MAX_BATCHES_PER_WRITE {
                match receiver.try_recv() {
                    Ok((batch, reply)) => {
                        joined.push(batch);
                        replies.push(reply);
                    }
                    Err(_) => break,
                }
            }
            *lock(&in_hand) = replies;
            let batch = concat_batches(&schema, &joined).map_err(DataFusionError::from);
            Some((batch, receiver))
        }
    })
}
