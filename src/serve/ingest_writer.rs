//! [`IngestWriter`]: one long-lived write into a table's sink for webhook events, so a
//! request costs one batch, not a new Kafka producer.
//!
//! Requests queue their batch with a reply channel; the writer's stream hands the sink
//! everything queued at once as one batch. Every sink writes a batch to the end (a Kafka
//! sink waits for the broker's acknowledgements) before it asks for the next one, so when
//! the sink asks again, the batches it had are durable: their requests are answered then.
//! If the write fails, the waiting requests are told why and the next request starts a new
//! writer.

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::datasource::sink::DataSink;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use tokio::sync::{mpsc, oneshot};

use crate::connector::CountingSink;

/// Batches taken into one write at most.
const MAX_BATCHES_PER_WRITE: usize = 256;

/// A request's batch and where to say it is durable.
type Queued = (RecordBatch, oneshot::Sender<()>);

/// The webhook writer of one table.
#[derive(Debug)]
pub struct IngestWriter {
    table: String,
    schema: SchemaRef,
    sink: Arc<dyn DataSink>,
    context: Arc<TaskContext>,
    running: Mutex<Option<mpsc::Sender<Queued>>>,
    /// Why the last write ended, if it failed.
    last_error: Arc<Mutex<Option<String>>>,
}

impl IngestWriter {
    /// A writer into `sink` of the table `table`, run with `context`.
    pub fn new(
        table: String,
        schema: SchemaRef,
        sink: Arc<dyn DataSink>,
        context: Arc<TaskContext>,
    ) -> Self {
        Self {
            table,
            schema,
            sink,
            context,
            running: Mutex::new(None),
            last_error: Arc::default(),
        }
    }

    /// Writes `batch`; returns once it is durable in the table's sink.
    pub async fn write(&self, batch: RecordBatch) -> Result<(), String> {
        let (done, durable) = oneshot::channel();
        let mut queued = (batch, done);
        for _ in 0..2 {
            let sender = self.sender();
            match sender.send(queued).await {
                Ok(()) => {
                    return durable.await.map_err(|_| self.failure());
                }
                // The writer ended: start another and queue again.
                Err(mpsc::error::SendError(back)) => {
                    queued = back;
                    *crate::pipeline::lock(&self.running) = None;
                }
            }
        }
        Err(self.failure())
    }

    fn failure(&self) -> String {
        crate::pipeline::lock(&self.last_error)
            .clone()
            .unwrap_or_else(|| format!("writing to table {} stopped", self.table))
    }

    /// The queue of the running write, started if there is none.
    fn sender(&self) -> mpsc::Sender<Queued> {
        let mut running = crate::pipeline::lock(&self.running);
        if let Some(sender) = running.as_ref().filter(|s| !s.is_closed()) {
            return sender.clone();
        }
        let (sender, receiver) = mpsc::channel::<Queued>(1024);
        let schema = Arc::clone(&self.schema);
        let batches = futures::stream::unfold(
            (receiver, Vec::<oneshot::Sender<()>>::new()),
            move |(mut receiver, written)| {
                let schema = Arc::clone(&schema);
                async move {
                    // The sink asks for more only once what it had is durable.
                    for done in written {
                        let _ = done.send(());
                    }
                    let (first, done) = receiver.recv().await?;
                    let mut batches = vec![first];
                    let mut waiting = vec![done];
                    while batches.len() < MAX_BATCHES_PER_WRITE {
                        match receiver.try_recv() {
                            Ok((batch, done)) => {
                                batches.push(batch);
                                waiting.push(done);
                            }
                            Err(_) => break,
                        }
                    }
                    let batch = concat_batches(&schema, &batches)
                        .map_err(datafusion::common::DataFusionError::from);
                    Some((batch, (receiver, waiting)))
                }
            },
        );
        let stream = Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            batches,
        ));
        let sink = CountingSink::new(self.table.clone(), Arc::clone(&self.sink));
        let context = Arc::clone(&self.context);
        let last_error = Arc::clone(&self.last_error);
        let table = self.table.clone();
        tokio::spawn(async move {
            if let Err(error) = sink.write_all(stream, &context).await {
                let message = format!("writing to table {table}: {error}");
                eprintln!("serve: {message}");
                *crate::pipeline::lock(&last_error) = Some(message);
            }
        });
        *running = Some(sender.clone());
        sender
    }
}
