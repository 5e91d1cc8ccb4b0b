//! `connector = 'memory'`: a table held in the process, readable and writable. Handy for
//! tests, for the REPL, and as a `'late_data.sink'`. Reading takes a snapshot of the rows
//! inserted so far (a bounded source); with `splits = N`, inserted batches are dealt to N
//! splits in turn, each with its own watermark.

use std::fmt;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{Result, exec_datafusion_err};
use datafusion::datasource::sink::DataSink;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use futures::StreamExt;

use super::source::{Source, SplitStream};
use crate::error::Error;
use crate::sql::WithOptions;

/// The rows of a memory table, shared by its source and sink halves.
#[derive(Debug)]
pub struct MemoryTable {
    schema: SchemaRef,
    batches: RwLock<Vec<RecordBatch>>,
    splits: usize,
}

impl MemoryTable {
    /// An empty table with `schema`, consuming the `memory` options.
    pub fn try_new(schema: SchemaRef, options: &mut WithOptions) -> Result<Arc<Self>, Error> {
        let splits = options.parse::<usize>("splits")?.unwrap_or(1);
        if splits == 0 {
            return Err(options.error("option 'splits' has a bad value '0': expected at least 1"));
        }
        Ok(Arc::new(Self {
            schema,
            batches: RwLock::new(Vec::new()),
            splits,
        }))
    }

    fn snapshot(&self) -> Result<Vec<RecordBatch>> {
        self.batches
            .read()
            .map(|batches| batches.clone())
            .map_err(|_| exec_datafusion_err!("memory table lock poisoned"))
    }
}

/// The reading half of a [`MemoryTable`].
#[derive(Debug)]
pub struct MemorySource(pub Arc<MemoryTable>);

#[async_trait]
impl Source for MemorySource {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.0.schema)
    }

    fn is_bounded(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!("memory(splits={})", self.0.splits)
    }

    async fn open(&self, _context: Arc<TaskContext>) -> Result<Vec<SplitStream>> {
        let batches = self.0.snapshot()?;
        Ok((0..self.0.splits)
            .map(|split| {
                let mine: Vec<Result<RecordBatch>> = batches
                    .iter()
                    .skip(split)
                    .step_by(self.0.splits)
                    .cloned()
                    .map(Ok)
                    .collect();
                futures::stream::iter(mine).boxed()
            })
            .collect())
    }
}

/// The writing half of a [`MemoryTable`].
#[derive(Debug)]
pub struct MemorySink(pub Arc<MemoryTable>);

impl DisplayAs for MemorySink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "MemorySink")
    }
}

#[async_trait]
impl DataSink for MemorySink {
    fn schema(&self) -> &SchemaRef {
        &self.0.schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> Result<u64> {
        let mut rows = 0;
        while let Some(batch) = data.next().await.transpose()? {
            if batch.num_rows() == 0 {
                continue;
            }
            rows += batch.num_rows() as u64;
            let batch = batch.with_schema(Arc::clone(&self.0.schema))?;
            self.0
                .batches
                .write()
                .map_err(|_| exec_datafusion_err!("memory table lock poisoned"))?
                .push(batch);
        }
        Ok(rows)
    }
}
