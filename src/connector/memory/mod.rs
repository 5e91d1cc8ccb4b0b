//! `connector = 'memory'`: a table held in the process, readable and writable. Handy for
//! tests, for the REPL, and as a `'late_data.sink'`. With `splits = N`, inserted batches are
//! dealt to N splits in turn, each with its own watermark.
//!
//! `'scan.mode'` says when reading ends: `snapshot` (the default) reads the rows inserted so
//! far and ends, a bounded source; `follow` goes on to read every row inserted later, an
//! unbounded source that ends only when the pipeline stops; `replay` reads the rows inserted
//! so far as a stream does, planned as an unbounded source (the way a Kafka topic is), and
//! ends after them: streaming plans, tested deterministically.
//!
//! `'retention'` bounds what the table keeps: `'100000 rows'`, or a duration such as
//! `'1 hour'`. Older rows go once every reader that follows the table has read them (a
//! snapshot read later starts after them); rows not yet read are never dropped, so a
//! write that would keep more than the retention allows is refused ("full"). `serve`
//! takes webhook events into a followed memory table only with a retention.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

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

/// How much a memory table keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// The newest rows, at most this many.
    Rows(usize),
    /// Rows inserted within this long.
    Age(Duration),
}

impl Retention {
    /// `'N rows'` or a duration.
    fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(count) = text
            .strip_suffix("rows")
            .or_else(|| text.strip_suffix("row"))
        {
            let count = count.trim().replace('_', "");
            return match count.parse::<usize>() {
                Ok(rows) if rows > 0 => Ok(Self::Rows(rows)),
                _ => Err(format!("'{count}' is not a number of rows above 0")),
            };
        }
        match crate::sql::parse_duration(text) {
            Ok(age) if !age.is_zero() => Ok(Self::Age(age)),
            Ok(_) => Err("a retention of 0 keeps nothing".into()),
            Err(e) => Err(format!("expected 'N rows' or a duration: {e}")),
        }
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rows(rows) => write!(f, "{rows} rows"),
            Self::Age(age) => write!(f, "{}", crate::stream::DisplayNanos(age.as_nanos() as i64)),
        }
    }
}

/// The rows of a memory table, shared by its source and sink halves.
#[derive(Debug)]
pub struct MemoryTable {
    schema: SchemaRef,
    batches: RwLock<Kept>,
    /// The number of batches inserted so far, watched by following readers.
    inserted: watch::Sender<usize>,
    splits: usize,
    mode: ScanMode,
    retention: Option<Retention>,
    /// The readers following the table: what each has read.
    followers: Mutex<Vec<Follower>>,
}

/// The batches a table keeps: those from `first` (counted from the first ever inserted).
#[derive(Debug, Default)]
struct Kept {
    batches: VecDeque<(RecordBatch, Instant)>,
    first: usize,
    rows: usize,
}

/// A reader following one split: the next batch it will read.
#[derive(Debug)]
struct Follower {
    split: usize,
    next: Weak<AtomicUsize>,
}

/// Why a write to a memory table was refused.
pub fn full_error(table_rows: usize, retention: Retention, behind: bool) -> String {
    if behind {
        format!(
            "the memory table is full: its readers are more than {retention} behind ('retention'); retry later"
        )
    } else {
        format!(
            "the memory table is full: {table_rows} rows kept, at most {retention} ('retention'), and its readers have not read them yet; retry later"
        )
    }
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
        let retention = options
            .take("retention")
            .map(|raw| {
                Retention::parse(&raw).map_err(|e| {
                    options.error(format!("option 'retention' has a bad value '{raw}': {e}"))
                })
            })
            .transpose()?;
        Ok(Arc::new(Self {
            schema,
            batches: RwLock::new(Kept::default()),
            inserted: watch::Sender::new(0),
            splits,
            mode,
            retention,
            followers: Mutex::default(),
        }))
    }

    /// True when the table keeps whatever is inserted for as long as the process runs.
    pub fn keeps_everything(&self) -> bool {
        self.retention.is_none()
    }

    /// True when the table is read as a stream that goes on.
    pub fn is_followed(&self) -> bool {
        self.mode == ScanMode::Follow
    }

    /// The batch at `index`, or `None` when retention has dropped it.
    fn batch(&self, index: usize) -> Result<Option<RecordBatch>> {
        let kept = self
            .batches
            .read()
            .map_err(|_| exec_datafusion_err!("memory table lock poisoned"))?;
        if index < kept.first {
            return Ok(None);
        }
        kept.batches
            .get(index - kept.first)
            .map(|(batch, _)| Some(batch.clone()))
            .ok_or_else(|| exec_datafusion_err!("memory table has no batch {index}"))
    }

    /// The first batch still kept.
    fn first_kept(&self) -> usize {
        self.batches.read().map_or(0, |kept| kept.first)
    }

    /// Registers a reader following `split`, about to read batch `next`.
    fn follow(&self, split: usize, next: &Arc<AtomicUsize>) {
        let mut followers = crate::stream::lock(&self.followers);
        followers.retain(|f| f.next.strong_count() > 0);
        followers.push(Follower {
            split,
            next: Arc::downgrade(next),
        });
    }

    /// True when every reader following the table has read batch `index`; a followed
    /// table nobody follows yet keeps everything.
    fn read_by_all(&self, index: usize) -> bool {
        let followers = crate::stream::lock(&self.followers);
        let split = index % self.splits;
        let live: Vec<(usize, Arc<AtomicUsize>)> = followers
            .iter()
            .filter_map(|f| f.next.upgrade().map(|next| (f.split, next)))
            .collect();
        if self.mode == ScanMode::Follow && live.is_empty() {
            return false;
        }
        live.iter()
            .all(|(s, next)| *s != split || next.load(Ordering::Acquire) > index)
    }

    /// Checks that `rows` more rows fit the retention now.
    pub fn check_room(&self, rows: usize) -> Result<(), String> {
        let mut kept = self
            .batches
            .write()
            .map_err(|_| "memory table lock poisoned")?;
        self.make_room(&mut kept, rows)
    }

    /// Drops what the retention no longer keeps; an error when `rows` more do not fit.
    fn make_room(&self, kept: &mut Kept, rows: usize) -> Result<(), String> {
        let Some(retention) = self.retention else {
            return Ok(());
        };
        self.drop_expired(kept, retention, rows);
        match retention {
            Retention::Rows(max) if kept.rows + rows > max => {
                Err(full_error(kept.rows, retention, false))
            }
            Retention::Age(age)
                if kept
                    .batches
                    .front()
                    .is_some_and(|(_, at)| at.elapsed() > age) =>
            {
                Err(full_error(kept.rows, retention, true))
            }
            _ => Ok(()),
        }
    }

    /// Drops the oldest batches the retention no longer keeps (with room for `incoming`
    /// rows), as far as every follower has read them.
    fn drop_expired(&self, kept: &mut Kept, retention: Retention, incoming: usize) {
        while let Some((batch, at)) = kept.batches.front() {
            let over = match retention {
                Retention::Rows(max) => kept.rows + incoming > max,
                Retention::Age(age) => at.elapsed() > age,
            };
            if !over || !self.read_by_all(kept.first) {
                break;
            }
            kept.rows -= batch.num_rows();
            kept.batches.pop_front();
            kept.first += 1;
        }
    }

    fn push(&self, batch: RecordBatch) -> Result<()> {
        let mut kept = self
            .batches
            .write()
            .map_err(|_| exec_datafusion_err!("memory table lock poisoned"))?;
        self.make_room(&mut kept, batch.num_rows())
            .map_err(|e| exec_datafusion_err!("{e}"))?;
        kept.rows += batch.num_rows();
        kept.batches.push_back((batch, Instant::now()));
        self.inserted.send_replace(kept.first + kept.batches.len());
        Ok(())
    }
}

/// Reads one split of a memory table: every `splits`-th batch from the split's own index.
struct SplitReader {
    table: Arc<MemoryTable>,
    /// The next batch to read, shared with the table when following (it keeps what a
    /// follower has not read).
    next: Arc<AtomicUsize>,
    /// Where a snapshot ends; `None` when following.
    end: Option<usize>,
    inserted: watch::Receiver<usize>,
}

impl SplitReader {
    fn new(table: Arc<MemoryTable>, split: usize) -> Self {
        let inserted = table.inserted.subscribe();
        let end = (table.mode != ScanMode::Follow).then(|| *inserted.borrow());
        // A reader starts at the first batch of its split still kept.
        let first = table.first_kept();
        let start = split + first.saturating_sub(split).div_ceil(table.splits) * table.splits;
        let next = Arc::new(AtomicUsize::new(start));
        if end.is_none() {
            table.follow(split, &next);
        }
        Self {
            table,
            next,
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
            let next = self.next.load(Ordering::Acquire);
            if next < available {
                self.next.store(next + self.table.splits, Ordering::Release);
                match self.table.batch(next) {
                    // Dropped by the retention before a snapshot came to it.
                    Ok(None) => continue,
                    Ok(Some(batch)) => return Some(Ok(batch)),
                    Err(e) => return Some(Err(e)),
                }
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

    fn ingest_check(
        &self,
        table: &str,
        sink: &Arc<dyn DataSink>,
    ) -> std::result::Result<Option<Arc<dyn super::IngestCheck>>, String> {
        let any: &dyn std::any::Any = sink.as_ref();
        let Some(MemorySink(memory)) = any.downcast_ref::<MemorySink>() else {
            return Ok(None);
        };
        if memory.is_followed() && memory.keeps_everything() {
            return Err(format!(
                "table {table} is a followed memory table without 'retention': webhook events would be kept for as long as the process runs. Set 'retention' (e.g. '1000000 rows' or '1 hour')"
            ));
        }
        Ok(Some(Arc::new(MemoryRoom(Arc::clone(memory)))))
    }
}

/// A memory table's check of webhook events: room within its retention.
#[derive(Debug)]
struct MemoryRoom(Arc<MemoryTable>);

impl super::IngestCheck for MemoryRoom {
    fn check(&self, events: &RecordBatch) -> std::result::Result<(), super::IngestRefusal> {
        self.0
            .check_room(events.num_rows())
            .map_err(super::IngestRefusal::Unavailable)
    }
}
