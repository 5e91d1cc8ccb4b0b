//! A reading thread of one or more partitions of a table: one consumer assigned each
//! partition at its start offset takes messages from librdkafka's fetch queue many at a
//! time, until a batch is full or the queue is empty; each partition's messages are decoded
//! into one Arrow batch (bad records to the `bad_data` policy) and handed on to that
//! partition's stream; settled positions are committed as reading goes. A snapshot stops
//! at the end offset seen when reading starts.

use prometheus_client::metrics::gauge::Gauge;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::common::{DataFusionError, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::bad_data::{BadDataHandler, BadRecordKind, Rejected};
use super::commit::PartitionCommitter;
use super::config::{REQUEST_TIMEOUT, consumer_config, kafka_error};
use super::decode::{RawRecord, RecordDecoder};
use super::fetch_queue::{FetchQueue, FetchedMessage};
use super::metadata::MetadataColumns;
use super::options::{KafkaOptions, StartupMode};
use crate::error::Error;
use crate::stream::{SourceReads, WatermarkSpec};

/// How long a reader waits for a message before checking whether it is still wanted.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How often a continuous reader measures how far behind the partition's end it is.
const LAG_INTERVAL: Duration = Duration::from_secs(5);

/// Where reading `partition` of `topic` starts.
fn start_offset(
    consumer: &BaseConsumer,
    startup: StartupMode,
    topic: &str,
    partition: i32,
) -> Result<Offset, Error> {
    let lookup = |offset: Offset| -> Result<TopicPartitionList, Error> {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, partition, offset)
            .map_err(kafka_error(format!("{topic}/{partition}")))?;
        Ok(list)
    };
    let first = |list: TopicPartitionList| list.elements().first().map(|e| e.offset());
    Ok(match startup {
        StartupMode::Earliest => Offset::Beginning,
        StartupMode::Latest => Offset::End,
        StartupMode::GroupOffsets => {
            let committed = consumer
                .committed_offsets(lookup(Offset::Invalid)?, REQUEST_TIMEOUT)
                .map_err(kafka_error(format!(
                    "committed offset of {topic}/{partition}"
                )))?;
            match first(committed) {
                Some(offset @ Offset::Offset(_)) => offset,
                _ => Offset::Beginning,
            }
        }
        StartupMode::Timestamp(millis) => {
            let found = consumer
                .offsets_for_times(lookup(Offset::Offset(millis))?, REQUEST_TIMEOUT)
                .map_err(kafka_error(format!(
                    "offset for time of {topic}/{partition}"
                )))?;
            first(found).unwrap_or(Offset::End)
        }
    })
}

/// How often a partition reports errors librdkafka is recovering from.
const TRANSIENT_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// True for errors librdkafka recovers from by itself (connections, leadership, timeouts).
pub(super) fn is_transient(error: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    match error.rdkafka_error_code() {
        Some(
            Fatal
            | UnknownTopicOrPartition
            | UnknownTopic
            | UnknownPartition
            | AutoOffsetReset
            | TopicAuthorizationFailed
            | GroupAuthorizationFailed
            | ClusterAuthorizationFailed
            | SaslAuthenticationFailed
            | Authentication
            | SSL,
        ) => false,
        Some(_) => true,
        None => false,
    }
}

/// A decoded batch and the partition's position after it (the next offset to read).
pub type PositionedBatch = (RecordBatch, i64);

/// Everything one partition's reading thread needs.
pub struct PartitionReader {
    pub options: KafkaOptions,
    pub reads: SourceReads,
    pub columns: MetadataColumns,
    pub topic: String,
    pub partition: i32,
    /// The offset to resume at, restored from a checkpoint: it overrides the startup mode.
    pub resume: Option<i64>,
    /// Commits settled positions, for a table with a group read continuously.
    pub committer: Option<PartitionCommitter>,
    pub bad_data: BadDataHandler,
    pub decoder: RecordDecoder,
    /// Where the reader publishes how many messages it is behind the partition's end.
    pub lag: Gauge,
    /// The table's event time: rows too far ahead of the clock are bad records.
    pub event_time: Option<WatermarkSpec>,
}

/// Where a partition's reader sends its batches.
pub type BatchSender = mpsc::Sender<Result<PositionedBatch>>;

/// Runs `read`, the reading of the partitions named `name` on their thread, handing its
/// error, or its panic as an error naming them, to every partition's `senders`: a reader
/// that dies fails its job instead of ending its partitions as if they had been read to the
/// end.
pub fn read_guarded(name: &str, senders: &[BatchSender], read: impl FnOnce() -> Result<(), Error>) {
    let failed: DataFusionError = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(read))
    {
        Ok(Ok(())) => return,
        Ok(Err(error)) => error.into(),
        Err(panic) => DataFusionError::Execution(format!(
            "reading {name}: the reader panicked: {}",
            crate::stream::panic_reason(panic.as_ref())
        )),
    };
    let message = failed.to_string();
    let mut failed = Some(failed);
    for sender in senders {
        let error = failed
            .take()
            .unwrap_or_else(|| DataFusionError::Execution(message.clone()));
        let _ = sender.blocking_send(Err(error));
    }
}

/// Reads `partitions` (of one table) with one consumer until each is read to its end (a
/// snapshot) or no longer wanted, sending each partition's decoded batches to its own
/// sender; an error ends the reading of them all. With a committer, a partition's settled
/// positions are committed as reading goes and once more at the end.
pub fn read_partitions(partitions: Vec<(PartitionReader, BatchSender)>) -> Result<(), Error> {
    let Some((first, _)) = partitions.first() else {
        return Ok(());
    };
    let name = names_of(partitions.iter().map(|(reader, _)| reader));
    let options = first.options.clone();
    let consumer: BaseConsumer = consumer_config(&options)
        .create()
        .map_err(kafka_error(format!("consumer for {name}")))?;
    let mut reads = Vec::with_capacity(partitions.len());
    let mut assignment = TopicPartitionList::new();
    for (reader, sender) in partitions {
        if let Some((read, start)) = PartitionRead::open(&consumer, reader, sender)? {
            assignment
                .add_partition_offset(&read.reader.topic, read.reader.partition, start)
                .map_err(kafka_error(format!("assigning {name}")))?;
            reads.push(read);
        }
    }
    if reads.is_empty() {
        return Ok(());
    }
    consumer
        .assign(&assignment)
        .map_err(kafka_error(format!("assigning {name}")))?;
    let mut fetched = FetchQueue::of(&consumer).ok_or_else(|| {
        Error::DataFusion(DataFusionError::Internal(format!(
            "the consumer of {name} has no queue of fetched messages"
        )))
    })?;
    let mut warned = None;
    while reads.iter().any(PartitionRead::wanted) {
        for read in &mut reads {
            read.tick(&consumer);
        }
        // Wait for a first message; then take what is already fetched, without waiting.
        if fetched.take(POLL_INTERVAL, options.batch_size) == 0 {
            // Nothing yet; a snapshot may be over anyway (the end offset of a compacted
            // or transactional partition need not be a record).
            for read in &mut reads {
                read.end_if_reached(&consumer)?;
            }
            continue;
        }
        let mut records: Vec<Vec<RawRecord<'_>>> = reads.iter().map(|_| Vec::new()).collect();
        let mut last = 0;
        for message in fetched.messages() {
            if let Some(error) = message.error() {
                // librdkafka recovers from most errors itself (a broker down, a leader
                // moving): those are reported and reading goes on; the others end it.
                // An error of one partition names it; others name them all.
                let place = match (message.topic(), message.partition()) {
                    (Some(topic), partition) if partition >= 0 => {
                        format!("{}/{partition}", String::from_utf8_lossy(topic))
                    }
                    _ => name.clone(),
                };
                if !is_transient(&error) {
                    return Err(kafka_error(format!("reading {place}"))(error));
                }
                if warned.is_none_or(|at: Instant| at.elapsed() > TRANSIENT_WARNING_INTERVAL) {
                    eprintln!("warning: reading {place}: {error} (retrying)");
                    warned = Some(Instant::now());
                }
                continue;
            }
            // Messages come in runs of one partition: look where the last one went first.
            let Some(index) = std::iter::once(last)
                .chain(0..reads.len())
                .find(|&i| reads[i].reads(&message))
            else {
                continue;
            };
            last = index;
            reads[index].take(&message, &mut records[index]);
        }
        for (read, records) in reads.iter_mut().zip(records) {
            read.hand_on(records, &consumer)?;
        }
        fetched.clear();
    }
    for read in &mut reads {
        read.finish(&consumer);
    }
    Ok(())
}

/// `topic/0,1,2` for partitions of one topic; each named in full otherwise.
pub fn names_of<'a>(readers: impl Iterator<Item = &'a PartitionReader>) -> String {
    let mut name = String::new();
    let mut topic: Option<&str> = None;
    for reader in readers {
        match topic {
            Some(last) if last == reader.topic => name.push(','),
            Some(_) => name.push_str(&format!(", {}/", reader.topic)),
            None => name.push_str(&format!("{}/", reader.topic)),
        }
        name.push_str(&reader.partition.to_string());
        topic = Some(&reader.topic);
    }
    name
}

/// One partition's reading, within a thread that may read several.
struct PartitionRead {
    reader: PartitionReader,
    /// `None` once the partition is read to its end.
    sender: Option<BatchSender>,
    /// A snapshot's end: the partition's end offset when reading started.
    end: Option<i64>,
    /// The last record of a snapshot was taken: the partition ends once it is handed on.
    ending: bool,
    next_offset: Option<i64>,
    lag_measured: Option<Instant>,
}

impl PartitionRead {
    /// The reading of `reader`'s partition and the offset it starts at; `None` for a
    /// snapshot with nothing to read.
    fn open(
        consumer: &BaseConsumer,
        reader: PartitionReader,
        sender: BatchSender,
    ) -> Result<Option<(Self, Offset)>, Error> {
        let (topic, partition) = (&reader.topic, reader.partition);
        let start = match reader.resume {
            Some(offset) => Offset::Offset(offset),
            None => start_offset(consumer, reader.options.startup, topic, partition)?,
        };
        // A snapshot ends at the partition's end offset as of now.
        let end = match reader.reads {
            SourceReads::Continuous => None,
            SourceReads::Snapshot => {
                let (low, high) = consumer
                    .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
                    .map_err(kafka_error(format!("end offset of {topic}/{partition}")))?;
                let empty = match start {
                    Offset::End => true,
                    Offset::Offset(offset) => offset >= high,
                    _ => low >= high,
                };
                if empty {
                    return Ok(None);
                }
                Some(high)
            }
        };
        let next_offset = match start {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        };
        let read = Self {
            reader,
            sender: Some(sender),
            end,
            ending: false,
            next_offset,
            lag_measured: None,
        };
        Ok(Some((read, start)))
    }

    /// Whether the partition is still to be read: not at its end, and its batches wanted.
    fn wanted(&self) -> bool {
        self.sender
            .as_ref()
            .is_some_and(|sender| !sender.is_closed())
    }

    /// Whether `message` is of this partition, and still wanted.
    fn reads(&self, message: &FetchedMessage<'_>) -> bool {
        message.partition() == self.reader.partition
            && message.topic() == Some(self.reader.topic.as_bytes())
            && self.wanted()
    }

    /// Commits what is due, and measures the lag of a continuous read now and then.
    fn tick(&mut self, consumer: &BaseConsumer) {
        if let Some(committer) = &mut self.reader.committer {
            committer.tick(consumer);
        }
        if self.end.is_some()
            || !self.wanted()
            || self
                .lag_measured
                .is_some_and(|at| at.elapsed() < LAG_INTERVAL)
        {
            return;
        }
        self.lag_measured = Some(Instant::now());
        let (topic, partition) = (&self.reader.topic, self.reader.partition);
        // Before the first batch, the consumer's own position says where reading is.
        let position = self
            .next_offset
            .or_else(|| position_of(consumer, topic, partition));
        if let Some(position) = position
            && let Ok((_, high)) = consumer.fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
        {
            self.reader.lag.set((high - position).max(0));
        }
    }

    /// Ends a snapshot whose consumer has moved past its end offset.
    fn end_if_reached(&mut self, consumer: &BaseConsumer) -> Result<(), Error> {
        let Some(end) = self.end else { return Ok(()) };
        if !self.wanted() {
            return Ok(());
        }
        let (topic, partition) = (&self.reader.topic, self.reader.partition);
        if position_of(consumer, topic, partition).is_some_and(|position| position >= end) {
            self.end(consumer)?;
        }
        Ok(())
    }

    /// Adds `message` to the partition's `records`, unless it is past a snapshot's end.
    fn take<'a>(&mut self, message: &FetchedMessage<'a>, records: &mut Vec<RawRecord<'a>>) {
        if self.ending {
            return;
        }
        // The last record of a snapshot; offsets past the end belong to later reads.
        if self.end.is_some_and(|end| message.offset() >= end) {
            self.ending = true;
            return;
        }
        self.ending = self.end.is_some_and(|end| message.offset() + 1 >= end);
        records.push(RawRecord {
            offset: message.offset(),
            value: message.payload(),
            key: message.key(),
            timestamp_millis: message.timestamp_millis(),
            headers: message.headers(),
        });
    }

    /// Decodes `records` into one batch and sends it; ends the partition after the last
    /// record of a snapshot.
    fn hand_on(
        &mut self,
        records: Vec<RawRecord<'_>>,
        consumer: &BaseConsumer,
    ) -> Result<(), Error> {
        if !records.is_empty() {
            let PartitionReader {
                columns,
                partition,
                bad_data,
                decoder,
                event_time,
                ..
            } = &mut self.reader;
            let decoded = decoder.decode(&records)?;
            bad_data.handle(&records, &decoded.rejected)?;
            let batch = columns.assemble(
                decoded.batch,
                &records,
                &decoded.kept,
                *partition,
                &decoded.ops,
            )?;
            let batch = without_future_rows(
                batch,
                event_time.as_ref(),
                &decoded.kept,
                &records,
                bad_data,
            )?;
            let position = records.last().map_or(0, |r| r.offset + 1);
            self.next_offset = Some(position);
            // A batch whose records were all dropped still moves the position on.
            let sent = self
                .sender
                .as_ref()
                .is_some_and(|sender| sender.blocking_send(Ok((batch, position))).is_ok());
            if !sent {
                self.sender = None;
            }
        }
        if self.ending {
            self.end(consumer)?;
        }
        Ok(())
    }

    /// Ends the partition: its stream ends, and the consumer fetches no more of it.
    fn end(&mut self, consumer: &BaseConsumer) -> Result<(), Error> {
        self.sender = None;
        let (topic, partition) = (&self.reader.topic, self.reader.partition);
        let mut list = TopicPartitionList::new();
        list.add_partition(topic, partition);
        consumer
            .pause(&list)
            .map_err(kafka_error(format!("pausing {topic}/{partition}")))
    }

    /// Commits what is settled, once more at the end.
    fn finish(&mut self, consumer: &BaseConsumer) {
        if let Some(committer) = &mut self.reader.committer {
            committer.finish(consumer);
        }
    }
}

/// The consumer's position in `topic`/`partition`: the next offset it will read.
fn position_of(consumer: &BaseConsumer, topic: &str, partition: i32) -> Option<i64> {
    let positions = consumer.position().ok()?;
    let element = positions.find_partition(topic, partition)?;
    match element.offset() {
        Offset::Offset(offset) => Some(offset),
        _ => None,
    }
}

/// Takes out of `batch` (the rows of the `kept` records) the rows further ahead of the
/// clock than the table's `'watermark.max_future'`, after the table's `bad_data` policy has
/// handled their records: they never reach the watermark.
fn without_future_rows(
    batch: RecordBatch,
    event_time: Option<&WatermarkSpec>,
    kept: &[usize],
    records: &[RawRecord<'_>],
    bad_data: &BadDataHandler,
) -> Result<RecordBatch, Error> {
    let Some(spec) = event_time else {
        return Ok(batch);
    };
    let future = spec.future_rows(&batch)?;
    if future.is_empty() {
        return Ok(batch);
    }
    let rejected: Vec<Rejected> = future
        .iter()
        .map(|f| Rejected {
            index: kept[f.row],
            kind: BadRecordKind::FutureEventTime,
            reason: f.reason.clone(),
        })
        .collect();
    bad_data.handle(records, &rejected)?;
    Ok(crate::stream::without_rows(
        &batch,
        future.iter().map(|f| f.row),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_that_panics_fails_with_its_partition_named() {
        let (sender, mut receiver) = mpsc::channel(1);
        std::thread::spawn(move || {
            read_guarded("events/3", &[sender], || panic!("index out of bounds"));
        })
        .join()
        .unwrap();
        let Some(Err(error)) = receiver.blocking_recv() else {
            panic!("the panic was not handed on");
        };
        let message = error.to_string();
        assert!(message.contains("reading events/3"), "{message}");
        assert!(message.contains("index out of bounds"), "{message}");
    }
}
