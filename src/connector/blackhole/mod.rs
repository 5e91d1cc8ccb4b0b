//! `connector = 'blackhole'`: a sink that discards rows, counting them and their Arrow
//! size. For benchmarks and for trying a query's speed without its output.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Result;
use datafusion::datasource::sink::DataSink;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use futures::StreamExt;

use crate::stream::{JobProgress, PipelineContext};

/// The `blackhole` sink.
#[derive(Debug)]
pub struct BlackholeSink {
    schema: SchemaRef,
    /// Arrow bytes of every batch received.
    pub bytes: Arc<AtomicU64>,
}

impl BlackholeSink {
    pub fn new(schema: SchemaRef) -> Self {
        Self {
            schema,
            bytes: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl DisplayAs for BlackholeSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "BlackholeSink")
    }
}

#[async_trait]
impl DataSink for BlackholeSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        context: &Arc<TaskContext>,
    ) -> Result<u64> {
        let pipeline = PipelineContext::of_task(context);
        let mut rows = 0;
        while let Some(batch) = data.next().await.transpose()? {
            rows += batch.num_rows() as u64;
            self.bytes
                .fetch_add(batch.get_array_memory_size() as u64, Ordering::Relaxed);
            pipeline.metrics.rows_out.inc_by(batch.num_rows() as u64);
            JobProgress::settle_task(context);
        }
        Ok(rows)
    }
}

/// `connector = 'blackhole'`.
pub struct BlackholeConnector;

impl super::Connector for BlackholeConnector {
    fn name(&self) -> &'static str {
        "blackhole"
    }

    fn halves(
        &self,
        declared: super::Declared<'_>,
        options: &mut crate::sql::WithOptions,
        _reads: crate::stream::SourceReads,
    ) -> crate::error::Result<super::Halves> {
        let _ = options;
        Ok((
            None,
            Some(std::sync::Arc::new(BlackholeSink::new(
                std::sync::Arc::clone(declared.schema),
            ))),
        ))
    }
}
