//! Writing a `file` table: JSON lines (timestamps as ISO-8601 strings), CSV or Parquet, streamed
//! to the object store as rows arrive and committed when the input ends (a bounded query
//! finishes, or the pipeline is stopped). Its rows are durable only then, so a continuous
//! query into it could never complete a checkpoint: with checkpoints, that is refused at
//! planning ([`streaming_file_sink`]).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::csv::WriterBuilder;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{Result, exec_datafusion_err};
use datafusion::datasource::sink::DataSink;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::parquet::arrow::AsyncArrowWriter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use futures::StreamExt;
use object_store::buffered::BufWriter;
use tokio::io::AsyncWriteExt;

use super::options::{FileFormat, FileOptions};
use crate::format::encode_json_lines;
use crate::stream::{JobProgress, PipelineContext};

/// The `file` sink.
#[derive(Debug)]
pub struct FileSink {
    schema: SchemaRef,
    options: FileOptions,
}

impl FileSink {
    pub fn new(schema: SchemaRef, options: FileOptions) -> Self {
        Self { schema, options }
    }
}

impl DisplayAs for FileSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "FileSink: path={}, format={}",
            self.options.location.display,
            self.options.format.name()
        )
    }
}

/// The path of a file sink `plan` writes, if any: a continuous job into one cannot be
/// checkpointed, since the file is durable only when the job ends.
pub fn streaming_file_sink(
    plan: &Arc<dyn datafusion::physical_plan::ExecutionPlan>,
) -> Option<String> {
    if let Some(exec) = plan.downcast_ref::<datafusion::datasource::sink::DataSinkExec>() {
        let mut sink: &dyn std::any::Any = exec.sink();
        if let Some(counting) = sink.downcast_ref::<crate::connector::CountingSink>() {
            sink = counting.inner().as_ref();
        }
        if let Some(file) = sink.downcast_ref::<FileSink>() {
            return Some(file.options.location.display.clone());
        }
    }
    plan.children().into_iter().find_map(streaming_file_sink)
}

#[async_trait]
impl DataSink for FileSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        context: &Arc<TaskContext>,
    ) -> Result<u64> {
        let pipeline = PipelineContext::of_task(context);
        let location = &self.options.location;
        let store = Arc::clone(&location.store);
        let failed =
            |e: &dyn std::fmt::Display| exec_datafusion_err!("writing {}: {e}", location.display);
        let mut rows = 0u64;
        match self.options.format {
            FileFormat::Json | FileFormat::Csv => {
                let mut writer = BufWriter::new(store, location.path.clone());
                let mut buffer = Vec::new();
                while let Some(batch) = data.next().await.transpose()? {
                    buffer.clear();
                    if self.options.format == FileFormat::Json {
                        encode_json_lines(&batch, &mut buffer)?;
                    } else {
                        let mut csv = WriterBuilder::new()
                            .with_header(rows == 0)
                            .build(&mut buffer);
                        csv.write(&batch)?;
                    }
                    writer.write_all(&buffer).await.map_err(|e| failed(&e))?;
                    rows += batch.num_rows() as u64;
                    pipeline.metrics.rows_out.inc_by(batch.num_rows() as u64);
                }
                writer.shutdown().await.map_err(|e| failed(&e))?;
                JobProgress::settle_task(context);
            }
            FileFormat::Parquet => {
                let object = BufWriter::new(store, location.path.clone());
                let mut writer = AsyncArrowWriter::try_new(object, data.schema(), None)?;
                while let Some(batch) = data.next().await.transpose()? {
                    writer.write(&batch).await?;
                    rows += batch.num_rows() as u64;
                    pipeline.metrics.rows_out.inc_by(batch.num_rows() as u64);
                }
                writer.close().await?;
                JobProgress::settle_task(context);
            }
        }
        Ok(rows)
    }
}
