//! What a source connector provides: a schema and, when a query runs, one stream of record
//! batches per split (a file, a partition, a generator shard). [`SourceStream`] reads the
//! splits fairly and tracks the watermark of each.

use std::any::Any;
use std::fmt::Debug;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::array::{AsArray, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::common::Result;
use datafusion::execution::TaskContext;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, Stream, StreamExt};

use super::{
    JobProgress, OperatorCheckpoint, PipelineContext, ScanPartition, SplitLedger, StateSlot,
    StateSnapshot, TableCounts, Watermark, WatermarkSpec, WatermarkTracker, lock, without_rows,
};

/// How a session reads sources that never end on their own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SourceReads {
    /// Continuously, until the pipeline stops: what `profusion run` does.
    #[default]
    Continuous,
    /// As bounded snapshots: up to where each source ended when the query started, then
    /// the query ends (ad-hoc queries, `profusion run --bounded`).
    Snapshot,
}

/// The rows of one split, in the order the split produces them.
pub type SplitStream = BoxStream<'static, Result<RecordBatch>>;

/// A source connector: the reading half of a `CREATE TABLE ... WITH (connector = ...)`.
#[async_trait]
pub trait Source: Any + Debug + Send + Sync {
    /// The schema of the rows the splits produce (the table's declared columns).
    fn schema(&self) -> SchemaRef;

    /// True when every split ends by itself.
    fn is_bounded(&self) -> bool;

    /// A one-line description for `EXPLAIN`, e.g. `datagen(count=1000, seed=7)`.
    fn describe(&self) -> String;

    /// How many splits the source has, when that is known before it is opened: a scan is
    /// spread over at most that many workers. `None` when only opening tells (a topic's
    /// partitions, a folder's files). One by default: a source that reads every split
    /// whatever `ScanPartition` it is given is read by one worker only.
    fn split_count(&self) -> Option<usize> {
        Some(1)
    }

    /// Opens the splits `scan` reads, for one execution of a query. `event_time` is the
    /// table's declared event time, for sources that record which rows they have handed on
    /// (to commit positions once the rows' results have reached the sinks, and to resume
    /// from a checkpoint).
    async fn open(
        &self,
        context: Arc<TaskContext>,
        event_time: Option<&WatermarkSpec>,
        scan: &ScanPartition,
    ) -> Result<Vec<SplitStream>>;
}

impl dyn Source {
    /// The source as a `T`, when it is one (a consumer group shares only Kafka topics among
    /// processes).
    pub fn downcast_ref<T: Source>(&self) -> Option<&T> {
        (self as &dyn Any).downcast_ref()
    }
}

/// A batch read from a source with the source's watermark after it, or, with an empty
/// batch, a checkpoint barrier to put in after everything the source has handed on.
#[derive(Debug, Clone)]
pub struct SourceBatch {
    pub batch: RecordBatch,
    pub watermark: Watermark,
    pub barrier: Option<u64>,
    /// Every split has been quiet for the idle timeout: the source holds back no watermark
    /// where streams merge.
    pub idle: bool,
}

/// Reads the splits of a source round-robin, counts rows, and keeps the watermark.
///
/// When every split has ended it yields one last empty batch whose watermark is
/// [`Watermark::END`]; when the pipeline is stopped it just ends, so that open windows are
/// not mistaken for complete ones. With an idle timeout it also yields an empty batch when
/// no split has produced anything for that long, so that downstream operators see the
/// watermark that idleness allows.
pub struct SourceStream {
    schema: SchemaRef,
    splits: Vec<Option<SplitStream>>,
    next: usize,
    tracker: Arc<Mutex<WatermarkTracker>>,
    watermark: Option<WatermarkSpec>,
    idle: Option<(Duration, Pin<Box<tokio::time::Sleep>>)>,
    stopped: BoxFuture<'static, ()>,
    context: Arc<PipelineContext>,
    /// The counts of the table read.
    table: TableCounts,
    /// The job whose checkpoints put barriers in, and the last barrier put in.
    barriers: Option<(Arc<JobProgress>, u64)>,
    /// Where the job records when each batch was read (to measure staleness), and how
    /// many batches were.
    arrivals: Option<(Arc<SplitLedger>, i64)>,
    done: bool,
}

impl SourceStream {
    /// A stream over `splits`, with the watermark declared by `watermark`, if any, counting
    /// its rows into the pipeline's and into `table`'s counts.
    pub fn new(
        schema: SchemaRef,
        splits: Vec<SplitStream>,
        watermark: Option<WatermarkSpec>,
        idle_timeout: Option<Duration>,
        context: Arc<PipelineContext>,
        table: TableCounts,
    ) -> Self {
        let tracker = WatermarkTracker::new(splits.len(), idle_timeout, Instant::now());
        let stop_context = Arc::clone(&context);
        Self {
            schema,
            splits: splits.into_iter().map(Some).collect(),
            next: 0,
            tracker: Arc::new(Mutex::new(tracker)),
            watermark,
            idle: idle_timeout.map(|t| (t, Box::pin(tokio::time::sleep(t)))),
            stopped: async move { stop_context.stop.stopped().await }.boxed(),
            context,
            table,
            barriers: None,
            arrivals: None,
            done: false,
        }
    }

    /// Puts in the barriers of `job`'s checkpoints.
    pub fn with_barriers(mut self, job: Arc<JobProgress>) -> Self {
        self.barriers = Some((job, 0));
        self
    }

    /// This stream, recording in `arrivals` when it hands each batch on.
    pub fn recording_arrivals(mut self, arrivals: Arc<SplitLedger>) -> Self {
        self.arrivals = Some((arrivals, 0));
        self
    }

    /// Registers the watermark tracker's state under `slot` and takes back what a
    /// checkpoint restored there.
    pub fn checkpoint_as(
        &self,
        slot: StateSlot,
        checkpoint: &mut OperatorCheckpoint,
    ) -> Result<()> {
        if let Some(restored) = &slot.restored {
            // Splits are dealt out again on another number of workers: only the
            // watermark, the earliest of the old partitions', still holds.
            let splits = match restored.batches.first().filter(|_| !slot.rescaled) {
                Some(batch) => batch
                    .column(0)
                    .as_primitive_opt::<Int64Type>()
                    .map(|w| w.values().to_vec())
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            lock(&self.tracker).restore(&splits, restored.scalar("watermark")?);
        }
        let tracker = Arc::clone(&self.tracker);
        checkpoint.register(&slot, move || {
            let (splits, current) = lock(&tracker).snapshot();
            let schema = Arc::new(Schema::new(vec![Field::new(
                "split_watermark",
                DataType::Int64,
                false,
            )]));
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(Int64Array::from(splits))],
            )?;
            StateSnapshot::new(schema, vec![batch], &[("watermark", current)])
        });
        Ok(())
    }

    /// `batch` without the rows further ahead of the clock than the table's
    /// `'watermark.max_future'`: dropped and counted as bad records, they never move the
    /// watermark. (A Kafka table's reader has already handed them to its `bad_data`
    /// policy.)
    fn without_future_rows(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let Some(spec) = &self.watermark else {
            return Ok(batch);
        };
        let future = spec.future_rows(&batch)?;
        if future.is_empty() {
            return Ok(batch);
        }
        for _ in &future {
            self.table.bad_record("future_event_time");
        }
        without_rows(&batch, future.iter().map(|f| f.row))
    }

    /// Records in the job's arrivals ledger, if it keeps one, that `batch` was read now.
    fn record_arrival(&mut self, batch: &RecordBatch) -> Result<()> {
        if self.arrivals.is_none() || batch.num_rows() == 0 {
            return Ok(());
        }
        let latest = match &self.watermark {
            Some(spec) => spec.latest_event_time(batch)?,
            None => None,
        };
        if let Some((arrivals, read)) = &mut self.arrivals {
            *read += 1;
            arrivals.read(*read, latest);
        }
        Ok(())
    }

    fn emit(&mut self, batch: RecordBatch) -> SourceBatch {
        let watermark = lock(&self.tracker).current(Instant::now());
        if self.watermark.is_some() {
            self.context.metrics.observe_watermark(watermark);
        }
        if let Some((timeout, sleep)) = &mut self.idle {
            sleep.as_mut().reset(tokio::time::Instant::now() + *timeout);
        }
        SourceBatch {
            batch,
            watermark,
            barrier: None,
            idle: false,
        }
    }
}

impl Stream for SourceStream {
    type Item = Result<SourceBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done || self.stopped.poll_unpin(cx).is_ready() {
            self.done = true;
            return Poll::Ready(None);
        }
        if let Some((job, seen)) = &self.barriers
            && let Some(epoch) = job.state.barrier_due(*seen, cx.waker())
        {
            self.barriers = Some((Arc::clone(job), epoch));
            let barrier = SourceBatch {
                batch: RecordBatch::new_empty(Arc::clone(&self.schema)),
                watermark: lock(&self.tracker).current(Instant::now()),
                barrier: Some(epoch),
                idle: false,
            };
            return Poll::Ready(Some(Ok(barrier)));
        }
        let count = self.splits.len();
        for step in 0..count {
            let index = (self.next + step) % count;
            let Some(split) = self.splits[index].as_mut() else {
                continue;
            };
            match split.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(batch))) => {
                    self.next = index + 1;
                    self.table.events_in.inc_by(batch.num_rows() as u64);
                    let batch = match self.without_future_rows(batch) {
                        Ok(batch) => batch,
                        Err(e) => return Poll::Ready(Some(Err(e))),
                    };
                    let max = match &self.watermark {
                        Some(spec) => match spec.max_of(&batch) {
                            Ok(max) => max,
                            Err(e) => return Poll::Ready(Some(Err(e))),
                        },
                        None => None,
                    };
                    lock(&self.tracker).observe(index, max, Instant::now());
                    if let Err(e) = self.record_arrival(&batch) {
                        return Poll::Ready(Some(Err(e)));
                    }
                    self.context
                        .metrics
                        .events_in
                        .inc_by(batch.num_rows() as u64);
                    let batch = self.emit(batch);
                    return Poll::Ready(Some(Ok(batch)));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    self.splits[index] = None;
                    lock(&self.tracker).finish(index);
                }
                Poll::Pending => {}
            }
        }
        if self.splits.iter().all(Option::is_none) {
            self.done = true;
            let end = RecordBatch::new_empty(Arc::clone(&self.schema));
            return Poll::Ready(Some(Ok(self.emit(end))));
        }
        if let Some((_, sleep)) = &mut self.idle
            && sleep.as_mut().poll(cx).is_ready()
        {
            let heartbeat = RecordBatch::new_empty(Arc::clone(&self.schema));
            let idle = lock(&self.tracker).all_idle(Instant::now());
            return Poll::Ready(Some(Ok(SourceBatch {
                idle,
                ..self.emit(heartbeat)
            })));
        }
        Poll::Pending
    }
}
