//! [`RepartitionWriter`]: the sending half of a task's repartition. It sends each row of
//! its input to the partition of the repartition topic its key hashes to (the hash an
//! in-process exchange uses), numbering the rows sent to each partition; and its
//! watermark, idleness and end of input to every partition. At a checkpoint barrier it
//! waits until the broker has acknowledged everything sent, then hands the barrier, with
//! how many rows it has sent each partition, to the reading half.
//!
//! Rows are gathered per partition into frames of up to [`FRAME_BYTES`], and the
//! watermark is sent at most every [`MARK_INTERVAL`]: a source hands on small batches, each
//! followed by a watermark, which frame by frame would cost a message to every partition
//! per batch. Gathered rows are sent before any watermark, idleness or barrier after them.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::{DataFusionError, Result};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::metrics::Count;
use futures::{FutureExt, StreamExt};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, Producer};
use tokio::sync::mpsc;

use super::RepartitionTopic;
use super::frame::Frame;
use crate::connector::kafka::delivery::{Deliveries, TrackedProducer};
use crate::error::Error;
use crate::stream::{MessageStream, StreamMessage, Watermark, panic_reason, split_by_key};

/// The most bytes of rows one frame carries, well under a broker's default message limit
/// (1 MB).
const FRAME_BYTES: usize = 512 * 1024;
/// How often the latest watermark (and rows gathered until then) is sent on.
const MARK_INTERVAL: Duration = Duration::from_millis(100);

/// What the writer tells the reading half.
#[derive(Debug)]
pub enum Control {
    /// Everything before barrier `epoch` is in the topic; `sent` rows to each partition.
    Barrier { epoch: u64, sent: Vec<u64> },
    /// The input or the topic failed.
    Failed(DataFusionError),
}

/// The sending half of one task's repartition.
pub struct RepartitionWriter {
    producer: Arc<TrackedProducer>,
    topic: Arc<RepartitionTopic>,
    /// This task's number: the partition of the source topics it reads.
    writer: u32,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    /// Rows sent to each partition so far.
    sent: Vec<u64>,
    rows_sent: Count,
    /// The latest watermark sent, and whether idleness was.
    mark: Watermark,
    idle: bool,
    /// The latest watermark received, when it is later than the one sent.
    next_mark: Option<Watermark>,
    /// Rows gathered for each partition, not yet sent, and their size.
    gathered: Vec<Vec<RecordBatch>>,
    gathered_bytes: Vec<usize>,
}

impl RepartitionWriter {
    /// The writer of task `writer`, placing rows by `keys`, having sent `sent` rows to
    /// each partition of `topic` (restored from the task's checkpoint).
    pub fn new(
        producer: Arc<TrackedProducer>,
        topic: Arc<RepartitionTopic>,
        writer: u32,
        keys: Vec<Arc<dyn PhysicalExpr>>,
        sent: Vec<u64>,
        rows_sent: Count,
    ) -> Self {
        let partitions = sent.len();
        Self {
            producer,
            topic,
            writer,
            keys,
            sent,
            rows_sent,
            mark: Watermark::MIN,
            idle: false,
            next_mark: None,
            gathered: vec![Vec::new(); partitions],
            gathered_bytes: vec![0; partitions],
        }
    }

    /// Sends every message of `input` on until it ends or the reading half is gone; a
    /// failure (or a panic upstream) goes to the reading half.
    pub async fn run(mut self, mut input: MessageStream, control: mpsc::Sender<Control>) {
        let mut ticks = tokio::time::interval(MARK_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let sent = AssertUnwindSafe(async {
            loop {
                let handed = tokio::select! {
                    message = input.next() => match message {
                        Some(Ok(message)) => self.send(message, &control).await,
                        Some(Err(error)) => Err(error),
                        None => return,
                    },
                    _ = ticks.tick() => self.send_mark().await,
                };
                if let Err(error) = handed {
                    let _ = control.send(Control::Failed(error)).await;
                    return;
                }
                if control.is_closed() {
                    return;
                }
            }
        })
        .catch_unwind()
        .await;
        if let Err(panic) = sent {
            let reason = panic_reason(panic.as_ref());
            let error = DataFusionError::Execution(format!(
                "the writer of repartition topic {} panicked: {reason}",
                self.topic.name
            ));
            let _ = control.send(Control::Failed(error)).await;
        }
        drop(control);
        // librdkafka's producer waits for its queue when dropped: not on an async thread.
        let producer = Arc::clone(&self.producer);
        drop(self);
        let _ = tokio::task::spawn_blocking(move || drop(producer)).await;
    }

    async fn send(
        &mut self,
        message: StreamMessage,
        control: &mpsc::Sender<Control>,
    ) -> Result<()> {
        match message {
            StreamMessage::Batch(batch) => self.gather(&batch).await,
            StreamMessage::Watermark(watermark) if watermark > self.mark || self.idle => {
                self.next_mark = Some(watermark.max(self.mark));
                match watermark.is_end() {
                    true => self.send_mark().await,
                    false => Ok(()),
                }
            }
            StreamMessage::Watermark(_) => Ok(()),
            StreamMessage::Idle if !self.idle => {
                self.send_mark().await?;
                self.idle = true;
                self.send_to_all(|sent| Frame::Idle { sent }).await
            }
            StreamMessage::Idle => Ok(()),
            StreamMessage::Barrier(epoch) => {
                self.send_mark().await?;
                self.producer
                    .context()
                    .settled()
                    .await
                    .map_err(|e| self.failed(e))?;
                let sent = self.sent.clone();
                let _ = control.send(Control::Barrier { epoch, sent }).await;
                Ok(())
            }
        }
    }

    /// Gathers each row of `batch` for its key's partition; a partition whose rows fill a
    /// frame has them sent.
    async fn gather(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.idle = false;
        let partitions = self.sent.len();
        let parts = match self.keys.is_empty() {
            true => vec![Some(batch.clone())],
            false => split_by_key(batch, &self.keys, partitions, &mut Vec::new())?,
        };
        for (partition, part) in parts.into_iter().enumerate() {
            let Some(part) = part else { continue };
            self.gathered_bytes[partition] += part.get_array_memory_size();
            self.gathered[partition].push(part);
            if self.gathered_bytes[partition] >= FRAME_BYTES {
                self.send_partition(partition).await?;
            }
        }
        Ok(())
    }

    /// Sends the rows gathered for every partition, then the latest watermark if it is
    /// later than the one sent.
    async fn send_mark(&mut self) -> Result<()> {
        self.send_gathered().await?;
        if let Some(mark) = self.next_mark.take() {
            self.mark = mark;
            self.idle = false;
            self.send_to_all(|sent| Frame::Watermark {
                watermark: mark,
                sent,
            })
            .await?;
        }
        Ok(())
    }

    /// Sends the rows gathered for every partition.
    async fn send_gathered(&mut self) -> Result<()> {
        for partition in 0..self.gathered.len() {
            self.send_partition(partition).await?;
        }
        Ok(())
    }

    /// Sends the rows gathered for `partition`, in frames of at most [`FRAME_BYTES`], each
    /// batch kept whole (an operator above may want each batch of one window) unless it
    /// is larger than a frame.
    async fn send_partition(&mut self, partition: usize) -> Result<()> {
        let gathered = std::mem::take(&mut self.gathered[partition]);
        self.gathered_bytes[partition] = 0;
        let mut frame: Vec<RecordBatch> = Vec::new();
        let mut frame_bytes = 0;
        for batch in gathered {
            for part in frame_sized(batch) {
                let bytes = part.get_array_memory_size();
                if frame_bytes + bytes > FRAME_BYTES && !frame.is_empty() {
                    self.send_frame(partition, std::mem::take(&mut frame))
                        .await?;
                    frame_bytes = 0;
                }
                frame_bytes += bytes;
                frame.push(part);
            }
        }
        if !frame.is_empty() {
            self.send_frame(partition, frame).await?;
        }
        Ok(())
    }

    /// Sends `batches` to `partition` as one frame, numbering their rows.
    async fn send_frame(&mut self, partition: usize, batches: Vec<RecordBatch>) -> Result<()> {
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let frame = Frame::Rows {
            first_seq: self.sent[partition],
            batches,
        };
        self.produce(partition, frame.encode(self.topic.lineage, self.writer)?)
            .await?;
        self.sent[partition] += rows as u64;
        self.rows_sent.add(rows);
        Ok(())
    }

    /// Sends every partition the frame `frame` makes of the rows sent it so far.
    async fn send_to_all(&self, frame: impl Fn(u64) -> Frame) -> Result<()> {
        for (partition, sent) in self.sent.iter().enumerate() {
            let bytes = frame(*sent).encode(self.topic.lineage, self.writer)?;
            self.produce(partition, bytes).await?;
        }
        Ok(())
    }

    /// Queues `bytes` for `partition`, waiting while librdkafka's queue is full.
    async fn produce(&self, partition: usize, bytes: Vec<u8>) -> Result<()> {
        if let Some(error) = self.producer.context().take_failure() {
            return Err(self.failed(error));
        }
        let record = BaseRecord::<[u8], [u8]>::to(&self.topic.name)
            .partition(partition as i32)
            .payload(bytes.as_slice());
        Deliveries::send_queued(&self.producer, record)
            .await
            .map_err(|error| self.failed(error))
    }

    fn failed(&self, source: KafkaError) -> DataFusionError {
        Error::Kafka {
            context: format!("writing repartition topic {}", self.topic.name),
            source,
        }
        .into()
    }
}

/// `batch` in slices that each fit a frame.
fn frame_sized(batch: RecordBatch) -> Vec<RecordBatch> {
    let bytes = batch.get_array_memory_size();
    if bytes <= FRAME_BYTES {
        return vec![batch];
    }
    let rows = batch.num_rows();
    let per_slice = (rows * FRAME_BYTES / bytes).max(1);
    (0..rows)
        .step_by(per_slice)
        .map(|offset| batch.slice(offset, per_slice.min(rows - offset)))
        .collect()
}
