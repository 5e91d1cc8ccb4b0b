//! `connector = 'stdout'`: a sink that prints rows as they arrive, as an aligned table
//! (`format = 'table'`, the default) or as JSON lines (`format = 'json'`).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Result;
use datafusion::datasource::sink::DataSink;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::error::Error;
use crate::format::{TextTable, encode_json_lines};
use crate::sql::WithOptions;
use crate::stream::{JobProgress, PipelineContext};

/// How `stdout` prints rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdoutFormat {
    Table,
    Json,
}

/// The `stdout` sink.
#[derive(Debug)]
pub struct StdoutSink {
    schema: SchemaRef,
    format: StdoutFormat,
}

impl StdoutSink {
    /// A sink printing rows of `schema` in `format`.
    pub fn new(schema: SchemaRef, format: StdoutFormat) -> Self {
        Self { schema, format }
    }

    /// Builds the sink, consuming the `stdout` options.
    pub fn try_new(schema: SchemaRef, options: &mut WithOptions) -> Result<Self, Error> {
        let format = options
            .choice(
                "format",
                &[("table", StdoutFormat::Table), ("json", StdoutFormat::Json)],
            )?
            .unwrap_or(StdoutFormat::Table);
        Ok(Self::new(schema, format))
    }
}

impl DisplayAs for StdoutSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "StdoutSink: format={:?}", self.format)
    }
}

#[async_trait]
impl DataSink for StdoutSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        context: &Arc<TaskContext>,
    ) -> Result<u64> {
        let metrics = PipelineContext::of_task(context);
        let mut stdout = tokio::io::stdout();
        let mut table = TextTable::new(data.schema());
        let mut rows = 0u64;
        while let Some(batch) = data.next().await.transpose()? {
            if batch.num_rows() == 0 {
                JobProgress::settle_task(context);
                continue;
            }
            let bytes = match self.format {
                StdoutFormat::Table => {
                    let mut text = String::new();
                    table.write(&batch, &mut text)?;
                    text.into_bytes()
                }
                StdoutFormat::Json => {
                    let mut out = Vec::new();
                    encode_json_lines(&batch, &mut out)?;
                    out
                }
            };
            let written = async {
                stdout.write_all(&bytes).await?;
                stdout.flush().await
            };
            match written.await {
                Ok(()) => {}
                // The reader went away (`| head`): stop the pipeline quietly.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    metrics.stop.stop();
                    return Ok(rows);
                }
                Err(e) => return Err(e.into()),
            }
            rows += batch.num_rows() as u64;
            metrics.metrics.rows_out.inc_by(batch.num_rows() as u64);
            JobProgress::settle_task(context);
        }
        Ok(rows)
    }
}

/// `connector = 'stdout'`.
pub struct StdoutConnector;

impl super::Connector for StdoutConnector {
    fn name(&self) -> &'static str {
        "stdout"
    }

    fn halves(
        &self,
        declared: super::Declared<'_>,
        options: &mut crate::sql::WithOptions,
        _reads: crate::stream::SourceReads,
    ) -> crate::error::Result<super::Halves> {
        Ok((
            None,
            Some(std::sync::Arc::new(StdoutSink::try_new(
                std::sync::Arc::clone(declared.schema),
                options,
            )?)),
        ))
    }
}
