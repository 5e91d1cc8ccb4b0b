//! Rows that arrive after their window was emitted: counted, and written to the source
//! table's `'late_data.sink'` when it names one.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::{Result, exec_datafusion_err};
use datafusion::datasource::sink::DataSink;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use tokio::sync::mpsc;

use crate::stream::{JobProgress, PipelineContext};

/// The table late rows go to.
#[derive(Debug, Clone)]
pub struct LateSink {
    pub table: String,
    pub sink: Arc<dyn DataSink>,
}

/// Counts late rows and streams them into the late-data sink, if there is one.
pub struct LateRowRouter {
    sink: Option<LateSink>,
    schema: SchemaRef,
    context: Arc<TaskContext>,
    pipeline: Arc<PipelineContext>,
    writer: Option<(mpsc::Sender<RecordBatch>, SpawnedTask<Result<u64>>)>,
}

impl LateRowRouter {
    pub fn new(sink: Option<LateSink>, schema: SchemaRef, context: Arc<TaskContext>) -> Self {
        let pipeline = PipelineContext::of_task(&context);
        Self {
            sink,
            schema,
            // What the late sink settles is not the job's sink's.
            context: JobProgress::detached(&context),
            pipeline,
            writer: None,
        }
    }

    /// Counts `rows` as late and hands them to the sink.
    pub async fn route(&mut self, rows: RecordBatch) -> Result<()> {
        if rows.num_rows() == 0 {
            return Ok(());
        }
        self.pipeline
            .metrics
            .late_rows
            .inc_by(rows.num_rows() as u64);
        let Some(late) = self.sink.clone() else {
            return Ok(());
        };
        let (sender, _) = self.writer.get_or_insert_with(|| {
            let (sender, receiver) = mpsc::channel::<RecordBatch>(16);
            let stream = futures::stream::unfold(receiver, |mut receiver| async move {
                receiver.recv().await.map(|batch| (Ok(batch), receiver))
            });
            let input = Box::pin(RecordBatchStreamAdapter::new(
                Arc::clone(&self.schema),
                stream,
            ));
            let sink = Arc::clone(&late.sink);
            let context = Arc::clone(&self.context);
            let task = SpawnedTask::spawn(async move { sink.write_all(input, &context).await });
            (sender, task)
        });
        if sender.send(rows).await.is_err() {
            // The writer ended early: its own error says why.
            return self.finish().await.and_then(|_| {
                Err(exec_datafusion_err!(
                    "the late-data sink '{}' stopped accepting rows",
                    late.table
                ))
            });
        }
        Ok(())
    }

    /// Closes the late-data sink and waits until it has written everything.
    pub async fn finish(&mut self) -> Result<()> {
        if let Some((sender, task)) = self.writer.take() {
            drop(sender);
            let table = self
                .sink
                .as_ref()
                .map(|s| s.table.as_str())
                .unwrap_or_default();
            task.join_unwind()
                .await
                .map_err(|e| exec_datafusion_err!("late-data sink '{table}': {e}"))??;
        }
        Ok(())
    }
}
