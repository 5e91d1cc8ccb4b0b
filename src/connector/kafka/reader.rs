//! One partition's reading thread: a consumer assigned the partition at its start offset,
//! taking messages from librdkafka's fetch queue many at a time until a batch is full or
//! the queue is empty, decoding them into one Arrow batch (bad records to the `bad_data` policy) and
//! handing it on; committing settled positions as it goes. A snapshot stops at the end
//! offset seen when reading starts.

use prometheus_client::metrics::gauge::Gauge;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::common::Result;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::bad_data::{BadDataHandler, BadRecordKind, Rejected};
use super::commit::PartitionCommitter;
use super::config::{REQUEST_TIMEOUT, consumer_config, kafka_error};
use super::decode::{RawRecord, RecordDecoder};
use super::fetch_queue::FetchQueue;
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

/// Runs `read`, the reading of `topic`/`partition` on its thread, handing its error, or
/// its panic as an error naming the partition, to `batches`: a reader that dies fails its
/// job instead of ending its partition as if it had been read to the end.
pub fn read_guarded(
    topic: &str,
    partition: i32,
    batches: &mpsc::Sender<Result<PositionedBatch>>,
    read: impl FnOnce() -> Result<(), Error>,
) {
    let failed = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)) {
        Ok(Ok(())) => return,
        Ok(Err(error)) => error.into(),
        Err(panic) => datafusion::common::DataFusionError::Execution(format!(
            "reading {topic}/{partition}: the reader panicked: {}",
            crate::stream::panic_reason(panic.as_ref())
        )),
    };
    let _ = batches.blocking_send(Err(failed));
}

/// Reads one partition until `batches` is closed, sending each decoded batch; an error is
/// sent and ends the reading. With a committer, settled positions are committed as reading
/// goes and once more at the end.
pub fn read_partition(
    reader: PartitionReader,
    batches: &mpsc::Sender<Result<PositionedBatch>>,
) -> Result<(), Error> {
    let PartitionReader {
        options,
        reads,
        columns,
        topic,
        partition,
        resume,
        mut committer,
        bad_data,
        mut decoder,
        lag,
        event_time,
    } = reader;
    let options = &options;
    let consumer: BaseConsumer = consumer_config(options)
        .create()
        .map_err(kafka_error(format!("consumer for {topic}/{partition}")))?;
    let start = match resume {
        Some(offset) => Offset::Offset(offset),
        None => start_offset(&consumer, options.startup, &topic, partition)?,
    };
    // A snapshot ends at the partition's end offset as of now.
    let end = match reads {
        SourceReads::Continuous => None,
        SourceReads::Snapshot => {
            let (low, high) = consumer
                .fetch_watermarks(&topic, partition, REQUEST_TIMEOUT)
                .map_err(kafka_error(format!("end offset of {topic}/{partition}")))?;
            let empty = match start {
                Offset::End => true,
                Offset::Offset(offset) => offset >= high,
                _ => low >= high,
            };
            if empty {
                return Ok(());
            }
            Some(high)
        }
    };
    let reached_end = |consumer: &BaseConsumer| -> Result<bool, Error> {
        let Some(end) = end else { return Ok(false) };
        let position = consumer
            .position()
            .map_err(kafka_error(format!("position in {topic}/{partition}")))?;
        Ok(position
            .elements()
            .first()
            .is_some_and(|e| matches!(e.offset(), Offset::Offset(o) if o >= end)))
    };
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&topic, partition, start)
        .and_then(|()| consumer.assign(&assignment))
        .map_err(kafka_error(format!("assigning {topic}/{partition}")))?;
    let mut fetched = FetchQueue::of(&consumer).ok_or_else(|| {
        Error::DataFusion(datafusion::common::DataFusionError::Internal(format!(
            "the consumer of {topic}/{partition} has no queue of fetched messages"
        )))
    })?;
    let mut warned = None;
    let mut done = false;
    let mut next_offset = match start {
        Offset::Offset(offset) => Some(offset),
        _ => None,
    };
    let mut lag_measured: Option<Instant> = None;
    while !done && !batches.is_closed() {
        if let Some(committer) = &mut committer {
            committer.tick(&consumer);
        }
        if end.is_none() && lag_measured.is_none_or(|at| at.elapsed() >= LAG_INTERVAL) {
            lag_measured = Some(Instant::now());
            // Before the first batch, the consumer's own position says where reading is.
            let position = next_offset.or_else(|| {
                let positions = consumer.position().ok()?;
                match positions.elements().first()?.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                }
            });
            if let Some(position) = position
                && let Ok((_, high)) = consumer.fetch_watermarks(&topic, partition, REQUEST_TIMEOUT)
            {
                lag.set((high - position).max(0));
            }
        }
        // Wait for a first message; then take what is already fetched, without waiting.
        if fetched.take(POLL_INTERVAL, options.batch_size) == 0 {
            // Nothing yet; a snapshot may be over anyway (the end offset of a compacted
            // or transactional partition need not be a record).
            done = reached_end(&consumer)?;
            continue;
        }
        let mut records: Vec<RawRecord<'_>> = Vec::with_capacity(options.batch_size);
        for message in fetched.messages() {
            if let Some(error) = message.error() {
                // librdkafka recovers from most errors itself (a broker down, a leader
                // moving): those are reported and reading goes on; the others end it.
                if !is_transient(&error) {
                    return Err(kafka_error(format!("reading {topic}/{partition}"))(error));
                }
                if warned.is_none_or(|at: Instant| at.elapsed() > TRANSIENT_WARNING_INTERVAL) {
                    eprintln!("warning: reading {topic}/{partition}: {error} (retrying)");
                    warned = Some(Instant::now());
                }
                continue;
            }
            // The last record of a snapshot; offsets past the end belong to later reads.
            if end.is_some_and(|end| message.offset() >= end) {
                done = true;
                break;
            }
            done = end.is_some_and(|end| message.offset() + 1 >= end);
            records.push(RawRecord {
                offset: message.offset(),
                value: message.payload(),
                key: message.key(),
                timestamp_millis: message.timestamp_millis(),
                headers: message.headers(),
            });
            if done {
                break;
            }
        }
        if records.is_empty() {
            drop(records);
            fetched.clear();
            continue;
        }
        let decoded = decoder.decode(&records)?;
        bad_data.handle(&records, &decoded.rejected)?;
        let batch = columns.assemble(
            decoded.batch,
            &records,
            &decoded.kept,
            partition,
            &decoded.ops,
        )?;
        let batch = without_future_rows(
            batch,
            event_time.as_ref(),
            &decoded.kept,
            &records,
            &bad_data,
        )?;
        let position = records.last().map_or(0, |r| r.offset + 1);
        next_offset = Some(position);
        drop(records);
        fetched.clear();
        // A batch whose records were all dropped still moves the position on.
        if batches.blocking_send(Ok((batch, position))).is_err() {
            break;
        }
    }
    if let Some(committer) = &mut committer {
        committer.finish(&consumer);
    }
    Ok(())
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
            read_guarded("events", 3, &sender, || panic!("index out of bounds"));
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
