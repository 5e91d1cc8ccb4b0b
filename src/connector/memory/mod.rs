//! `connector = 'memory'`: a table held in the process, readable and writable. Handy for
//! tests, for the REPL, and as a `'late_data.sink'`. With `splits = N`, inserted batches are
//! dealt to N splits in turn, each with its own watermark.
//!
//! `'scan.mode'` says when reading ends: `snapshot` (the default) reads the rows inserted so
//! far and ends, a bounded source; `follow` goes on to read every row inserted later, an
//! unbounded source that ends only when the pipeline stops; `replay` reads the rows inserted
//! so far as a stream does, planned as an unbounded source (the way a Kafka topic is), and
//! ends after them: streaming plans, tested deterministically.

use std::fmt;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{Result, exec_datafusion_err};
use datafusion::datasource::sink::DataSink;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use futures::StreamExt;

use crate::error::Error;
use crate::sql::WithOptions;
use crate::stream::{JobProgress, ScanPartition, Source, SourceReads, SplitStream, WatermarkSpec};

/// When reading a memory table ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanMode {
    /// After the rows inserted before reading started.
    Snapshot,
    /// Never: rows inserted later are read as they come.
    Follow,
    /// After the rows inserted before reading started, planned as an unbounded source.
    Replay,
}

/// The rows of a memory table, shared by its source and sink halves.
#[derive(Debug)]
pub struct MemoryTable {
    schema: SchemaRef,
    batches: RwLock<Vec<RecordBatch>>,
    /// The number of batches inserted so far, watched by following readers.
    inserted: watch::Sender<usize>,
    splits: usize,
    mode: ScanMode,
}

impl MemoryTable {
    /// An empty table with `schema`, consuming the `memory` options.
    /// A followed table is read as a snapshot when `reads` says so.
    pub fn try_new(
        schema: SchemaRef,
        options: &mut WithOptions,
        reads: SourceReads,
    ) -> Result<Arc<Self>, Error> {
        let splits = options.parse::<usize>("splits")?.unwrap_or(1);
        if splits == 0 {
            return Err(options.error("option 'splits' has a bad value '0': expected at least 1"));
        }
        let mode = options
            .choice(
                "scan.mode",
                &[
                    ("snapshot", ScanMode::Snapshot),
                    ("follow", ScanMode::Follow),
                    ("replay", ScanMode::Replay),
                ],
            )?
            .unwrap_or(ScanMode::Snapshot);
        let mode = match reads {
            SourceReads::Snapshot => ScanMode::Snapshot,
            SourceReads::Continuous => mode,
        };
        Ok(Arc::new(Self {
            schema,
            batches: RwLock::new(Vec::new()),
            inserted: watch::Sender::new(0),
            splits,
            mode,
        }))
    }

    /// The batch at `index`, which has been inserted.
    fn batch(&self, index: usize) -> Result<RecordBatch> {
        let batches = self
            .batches
            .read()
            .map_err(|_| exec_datafusion_err!("memory table lock poisoned"))?;
        batches
            .get(index)
            .cloned()
            .ok_or_else(|| exec_datafusion_err!("memory table has no batch {index}"))
    }

    fn push(&self, batch: RecordBatch) -> Result<()> {
        let mut batches = self
            .batches
            .write()
            .map_err(|_| exec_datafusion_err!("memory table lock poisoned"))?;
        batches.push(batch);
        self.inserted.send_replace(batches.len());
        Ok(())
    }
}

/// Reads one split of a memory table: every `splits`-th batch from the split's own index.
struct SplitReader {
    table: Arc<MemoryTable>,
    next: usize,
    /// Where a snapshot ends; `None` when following.
    end: Option<usize>,
    inserted: watch::Receiver<usize>,
}

impl SplitReader {
    fn new(table: Arc<MemoryTable>, split: usize) -> Self {
        let inserted = table.inserted.subscribe();
        let end = (table.mode != ScanMode::Follow).then(|| *inserted.borrow());
        Self {
            table,
            next: split,
            end,
            inserted,
        }
    }

    async fn next_batch(&mut self) -> Option<Result<RecordBatch>> {
        loop {
            let available = match self.end {
                Some(end) => end,
                None => *self.inserted.borrow_and_update(),
            };
            if self.next < available {
                let batch = self.table.batch(self.next);
                self.next += self.table.splits;
                return Some(batch);
            }
            if self.end.is_some() || self.inserted.changed().await.is_err() {
                return None;
            }
        }
    }

    fn into_stream(self) -> SplitStream {
        futures::stream::unfold(self, |mut reader| async move {
            let batch = reader.next_batch().await?;
            Some((batch, reader))
        })
        .boxed()
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
        self.0.mode == ScanMode::Snapshot
    }

    fn describe(&self) -> String {
        match self.0.mode {
            ScanMode::Snapshot => format!("memory(splits={})", self.0.splits),
            ScanMode::Follow => format!("memory(splits={}, follow)", self.0.splits),
            ScanMode::Replay => format!("memory(splits={}, replay)", self.0.splits),
        }
    }

    fn split_count(&self) -> Option<usize> {
        Some(self.0.splits)
    }

    async fn open(
        &self,
        _context: Arc<TaskContext>,
        _event_time: Option<&WatermarkSpec>,
        scan: &ScanPartition,
    ) -> Result<Vec<SplitStream>> {
        Ok((0..self.0.splits)
            .filter(|split| scan.reads(*split))
            .map(|split| SplitReader::new(Arc::clone(&self.0), split).into_stream())
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
        context: &Arc<TaskContext>,
    ) -> Result<u64> {
        let mut rows = 0;
        while let Some(batch) = data.next().await.transpose()? {
            if batch.num_rows() > 0 {
                rows += batch.num_rows() as u64;
                self.0
                    .push(batch.with_schema(Arc::clone(&self.0.schema))?)?;
            }
            JobProgress::settle_task(context);
        }
        Ok(rows)
    }
}

/// `connector = 'memory'`.
pub struct MemoryConnector;

impl super::Connector for MemoryConnector {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn halves(
        &self,
        declared: super::Declared<'_>,
        options: &mut crate::sql::WithOptions,
        reads: crate::stream::SourceReads,
    ) -> crate::error::Result<super::Halves> {
        let table = MemoryTable::try_new(std::sync::Arc::clone(declared.schema), options, reads)?;
        Ok((
            Some(std::sync::Arc::new(MemorySource(std::sync::Arc::clone(
                &table,
            )))),
            Some(std::sync::Arc::new(MemorySink(table))),
        ))
    }
    fn takes_ingest(&self) -> bool {
        true
    }
}
