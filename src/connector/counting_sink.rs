//! [`CountingSink`]: a table's sink, counting the rows handed to it under the table's name
//! (what `GET /metrics` reports as rows out per table). It shows as the sink it wraps.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Result;
use datafusion::datasource::sink::DataSink;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use futures::StreamExt;

use crate::stream::PipelineContext;

/// The sink of the table named `table`, counted.
#[derive(Debug)]
pub struct CountingSink {
    table: String,
    inner: Arc<dyn DataSink>,
}

impl CountingSink {
    pub fn new(table: String, inner: Arc<dyn DataSink>) -> Self {
        Self { table, inner }
    }

    /// The sink that writes.
    pub fn inner(&self) -> &Arc<dyn DataSink> {
        &self.inner
    }

    /// The table written to.
    pub fn table(&self) -> &str {
        &self.table
    }
}

impl DisplayAs for CountingSink {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        self.inner.fmt_as(t, f)
    }
}

#[async_trait]
impl DataSink for CountingSink {
    fn schema(&self) -> &SchemaRef {
        self.inner.schema()
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        context: &Arc<TaskContext>,
    ) -> Result<u64> {
        let counts = PipelineContext::of_task(context).metrics.table(&self.table);
        let schema = data.schema();
        let counted = data.inspect(move |batch| {
            if let Ok(batch) = batch {
                counts.rows_out.inc_by(batch.num_rows() as u64);
            }
        });
        let counted = Box::pin(RecordBatchStreamAdapter::new(schema, counted));
        self.inner.write_all(counted, context).await
    }
}
