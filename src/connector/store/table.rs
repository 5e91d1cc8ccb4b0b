//! A [`ProfileStore`] as the two halves of a table: [`StoreSource`] reads every stored row
//! (a bounded source), [`StoreSink`] upserts what a query writes, one transaction per batch.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::common::{Result, exec_err};
use datafusion::datasource::sink::DataSink;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use futures::StreamExt;

use super::changes::ViewChanges;
use super::{ProfileStore, VERSION_COLUMN};
use crate::stream::{
    JobProgress, PipelineContext, ScanPartition, Source, SplitStream, WatermarkSpec,
};

/// Reads a store's rows as they are when the query starts.
#[derive(Debug)]
pub struct StoreSource(pub Arc<dyn ProfileStore>);

#[async_trait]
impl Source for StoreSource {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }

    fn is_bounded(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        self.0.describe()
    }

    async fn open(
        &self,
        _context: Arc<TaskContext>,
        _event_time: Option<&WatermarkSpec>,
        scan: &ScanPartition,
    ) -> Result<Vec<SplitStream>> {
        if !scan.reads(0) {
            return Ok(Vec::new());
        }
        let store = Arc::clone(&self.0);
        let rows = futures::stream::once(async move { store.scan().await })
            .flat_map(|scanned| match scanned {
                Ok(batches) => futures::stream::iter(batches.into_iter().map(Ok)).boxed(),
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            })
            .boxed();
        Ok(vec![rows])
    }
}

/// Upserts a query's rows into a store.
#[derive(Debug)]
pub struct StoreSink {
    store: Arc<dyn ProfileStore>,
    /// The schema of the rows written: the store's, plus a trailing `_version` column
    /// when they carry versions.
    schema: SchemaRef,
    versioned: bool,
    /// Told of every batch that changed the store (a view's, for the views over it).
    changes: Option<Arc<ViewChanges>>,
}

impl StoreSink {
    /// The store written.
    pub fn store(&self) -> &Arc<dyn ProfileStore> {
        &self.store
    }

    /// A sink for rows of the store's own schema.
    pub fn new(store: Arc<dyn ProfileStore>) -> Self {
        Self {
            schema: store.schema(),
            store,
            versioned: false,
            changes: None,
        }
    }

    /// A sink for rows followed by their version (an `Int64` column named `_version`),
    /// the output of a materialized view.
    pub fn versioned(store: Arc<dyn ProfileStore>, schema: SchemaRef) -> Self {
        Self {
            store,
            schema,
            versioned: true,
            changes: None,
        }
    }

    /// This sink, telling `changes` of every batch that changed the store.
    pub fn signalling(self, changes: Arc<ViewChanges>) -> Self {
        Self {
            changes: Some(changes),
            ..self
        }
    }
}

impl DisplayAs for StoreSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "StoreSink: {}", self.store.describe())?;
        if !self.store.primary_key().is_empty() {
            write!(f, ", primary_key=[{}]", self.store.primary_key().join(", "))?;
        }
        if self.versioned {
            write!(f, ", versioned")?;
        }
        Ok(())
    }
}

#[async_trait]
impl DataSink for StoreSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        context: &Arc<TaskContext>,
    ) -> Result<u64> {
        let pipeline = PipelineContext::of_task(context);
        let store_schema = self.store.schema();
        let mut rows = 0;
        while let Some(batch) = data.next().await.transpose()? {
            if batch.num_rows() > 0 {
                let (values, versions) = if self.versioned {
                    let last = batch.num_columns() - 1;
                    let version = batch.column(last);
                    if batch.schema().field(last).name() != VERSION_COLUMN
                        || version.data_type() != &DataType::Int64
                    {
                        return exec_err!(
                            "{}: versioned rows end with an Int64 column named {VERSION_COLUMN}",
                            self.store.describe()
                        );
                    }
                    let versions = version.as_primitive::<Int64Type>().clone();
                    (
                        batch.project(&(0..last).collect::<Vec<_>>())?,
                        Some(versions),
                    )
                } else {
                    (batch, None)
                };
                let values =
                    RecordBatch::try_new(Arc::clone(&store_schema), values.columns().to_vec())?;
                let started = std::time::Instant::now();
                let upserted = match &self.changes {
                    // Listeners see the rows after the commit: keep a cheap copy (Arc'd columns).
                    Some(changes) => {
                        let upserted = self.store.upsert(values.clone(), versions.clone()).await?;
                        if upserted.written > 0 {
                            changes.upserted(&values, versions.as_ref());
                        }
                        upserted
                    }
                    None => self.store.upsert(values, versions).await?,
                };
                pipeline.metrics.upsert_seconds.observe(started.elapsed());
                rows += upserted.written;
                pipeline.metrics.rows_out.inc_by(upserted.written as u64);
                pipeline.metrics.stale_upserts.inc_by(upserted.stale as u64);
            }
            JobProgress::settle_task(context);
        }
        Ok(rows)
    }
}
