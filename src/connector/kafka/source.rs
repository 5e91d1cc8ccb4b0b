//! Reading a Kafka table: one split per partition, each read by its own consumer on a
//! blocking thread (librdkafka's calls block; the async runtime never waits on them). A
//! thread polls messages from librdkafka's fetch queue until a batch is full or the queue is
//! empty, decodes them into one Arrow batch and hands it on; the source merges the
//! partitions' watermarks like any other splits.
//!
//! Read as a snapshot (an ad-hoc query, `profusion run --bounded`), each partition is read
//! from its start offset up to its end offset as seen when the query starts, then ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use futures::StreamExt;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::bad_data::{BadDataHandler, DeadLetters};
use super::commit::PartitionCommitter;
use super::config::{consumer_config, producer_config};
use super::decode::{RawRecord, RecordDecoder};
use super::delivery::Deliveries;
use super::metadata::MetadataColumns;
use super::options::{BadDataPolicy, KafkaOptions, StartupMode};
use crate::connector::{Source, SplitStream};
use crate::error::Error;
use crate::pipeline::{JobProgress, PipelineContext, SplitLedger};
use crate::session::SourceReads;
use crate::window::WatermarkSpec;

/// How long a metadata or offset lookup may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a reader waits for a message before checking whether it is still wanted.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The reading half of a Kafka table.
#[derive(Debug)]
pub struct KafkaSource {
    options: KafkaOptions,
    reads: SourceReads,
    metadata: MetadataColumns,
}

impl KafkaSource {
    /// A source of the table whose columns `metadata` describes.
    pub fn new(options: KafkaOptions, reads: SourceReads, metadata: MetadataColumns) -> Self {
        Self {
            options,
            reads,
            metadata,
        }
    }
}

fn kafka_error(context: impl Into<String>) -> impl FnOnce(rdkafka::error::KafkaError) -> Error {
    let context = context.into();
    move |source| Error::Kafka { context, source }
}

/// Every (topic, partition) of the table's topics.
fn list_partitions(options: &KafkaOptions) -> Result<Vec<(String, i32)>, Error> {
    let consumer: BaseConsumer = consumer_config(options)
        .create()
        .map_err(kafka_error("creating a consumer"))?;
    let mut partitions = Vec::new();
    for topic in &options.topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
            .map_err(kafka_error(format!("metadata of topic {topic}")))?;
        let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Err(kafka_error(format!("metadata of topic {topic}"))(
                rdkafka::error::KafkaError::MetadataFetch(
                    rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
                ),
            ));
        };
        if let Some(code) = found.error() {
            return Err(kafka_error(format!("topic {topic}"))(
                rdkafka::error::KafkaError::MetadataFetch(code.into()),
            ));
        }
        partitions.extend(found.partitions().iter().map(|p| (topic.clone(), p.id())));
    }
    Ok(partitions)
}

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
fn is_transient(error: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    match error.rdkafka_error_code() {
        Some(
            Fatal
            | UnknownTopicOrPartition
            | UnknownTopic
            | UnknownPartition
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
type PositionedBatch = (RecordBatch, i64);

/// Reads one partition until `batches` is closed, sending each decoded batch; an error is
/// sent and ends the reading. With a committer, settled positions are committed as reading
/// goes and once more at the end.
fn read_partition(
    options: &KafkaOptions,
    reads: SourceReads,
    columns: &MetadataColumns,
    (topic, partition): (String, i32),
    mut committer: Option<PartitionCommitter>,
    bad_data: &BadDataHandler,
    batches: &mpsc::Sender<Result<PositionedBatch>>,
) -> Result<(), Error> {
    let consumer: BaseConsumer = consumer_config(options)
        .create()
        .map_err(kafka_error(format!("consumer for {topic}/{partition}")))?;
    let start = start_offset(&consumer, options.startup, &topic, partition)?;
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
    let decoder = RecordDecoder::new(columns.value_schema(), options.max_record_bytes);
    let mut warned = None;
    let mut messages: Vec<BorrowedMessage<'_>> = Vec::with_capacity(options.batch_size);
    let mut done = false;
    while !done && !batches.is_closed() {
        if let Some(committer) = &mut committer {
            committer.tick(&consumer);
        }
        // Wait for a first message; then take what is already fetched, without waiting.
        let wait = if messages.is_empty() {
            POLL_INTERVAL
        } else {
            Duration::ZERO
        };
        match consumer.poll(wait) {
            Some(Ok(message)) => {
                // The last record of a snapshot; offsets past the end belong to later reads.
                if end.is_some_and(|end| message.offset() >= end) {
                    done = true;
                } else {
                    done = end.is_some_and(|end| message.offset() + 1 >= end);
                    messages.push(message);
                    if !done && messages.len() < options.batch_size {
                        continue;
                    }
                }
            }
            // librdkafka recovers from most errors itself (a broker down, a leader moving):
            // those are reported and reading goes on; the others end it.
            Some(Err(error)) if !is_transient(&error) => {
                return Err(kafka_error(format!("reading {topic}/{partition}"))(error));
            }
            Some(Err(error)) => {
                if warned.is_none_or(|at: Instant| at.elapsed() > TRANSIENT_WARNING_INTERVAL) {
                    eprintln!("warning: reading {topic}/{partition}: {error} (retrying)");
                    warned = Some(Instant::now());
                }
                continue;
            }
            // Nothing more yet; a snapshot may be over anyway (the end offset of a
            // compacted or transactional partition need not be a record).
            None if messages.is_empty() => {
                done = reached_end(&consumer)?;
                continue;
            }
            None => {}
        }
        let records: Vec<RawRecord<'_>> = messages
            .iter()
            .map(|m| RawRecord {
                offset: m.offset(),
                value: m.payload(),
                key: m.key(),
                timestamp_millis: m.timestamp().to_millis(),
                headers: m.headers(),
            })
            .collect();
        let decoded = decoder.decode(&records)?;
        bad_data.handle(&records, &decoded.rejected)?;
        let batch = columns.assemble(decoded.batch, &records, &decoded.kept, partition)?;
        let position = records.last().map_or(0, |r| r.offset + 1);
        drop(records);
        messages.clear();
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

#[async_trait]
impl Source for KafkaSource {
    fn schema(&self) -> SchemaRef {
        self.metadata.table_schema()
    }

    fn is_bounded(&self) -> bool {
        self.reads == SourceReads::Snapshot
    }

    fn describe(&self) -> String {
        let snapshot = match self.reads {
            SourceReads::Snapshot => ", snapshot",
            SourceReads::Continuous => "",
        };
        format!("kafka(topic={}{snapshot})", self.options.topics.join(","))
    }

    async fn open(
        &self,
        context: Arc<TaskContext>,
        event_time: Option<&WatermarkSpec>,
    ) -> Result<Vec<SplitStream>> {
        let options = self.options.clone();
        let partitions = tokio::task::spawn_blocking(move || list_partitions(&options))
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))??;
        // Positions are committed only for a named group, only by continuous reads.
        let progress = match (self.reads, &self.options.group_id) {
            (SourceReads::Continuous, Some(_)) => JobProgress::of_task(&context),
            _ => None,
        };
        let dead_letters = match &self.options.bad_data {
            BadDataPolicy::Dlq(topic) => Some(DeadLetters {
                topic: topic.clone(),
                producer: Arc::new(
                    producer_config(&self.options)
                        .create_with_context(Deliveries::default())
                        .map_err(kafka_error(format!(
                            "producer for dead-letter topic {topic}"
                        )))?,
                ),
            }),
            _ => None,
        };
        let pipeline = PipelineContext::of_task(&context);
        Ok(partitions
            .into_iter()
            .map(|(topic, partition)| {
                let bad_data = BadDataHandler::new(
                    self.options.bad_data.clone(),
                    dead_letters.clone(),
                    (&topic, partition),
                    Arc::clone(&pipeline),
                );
                let ledger = progress.as_ref().map(|p| p.ledger());
                let committer = ledger
                    .as_ref()
                    .map(|l| PartitionCommitter::new(Arc::clone(l), &topic, partition));
                let (sender, receiver) = mpsc::channel(2);
                let options = self.options.clone();
                let (columns, reads) = (self.metadata.clone(), self.reads);
                tokio::task::spawn_blocking(move || {
                    let read = read_partition(
                        &options,
                        reads,
                        &columns,
                        (topic, partition),
                        committer,
                        &bad_data,
                        &sender,
                    );
                    if let Err(error) = read {
                        let _ = sender.blocking_send(Err(error.into()));
                    }
                });
                let handed_on = HandedOn {
                    ledger,
                    event_time: event_time.cloned(),
                };
                futures::stream::unfold(
                    (receiver, handed_on),
                    |(mut receiver, handed_on)| async move {
                        let item = receiver.recv().await?;
                        let batch = item.and_then(|(batch, position)| {
                            handed_on.record(&batch, position)?;
                            Ok(batch)
                        });
                        Some((batch, (receiver, handed_on)))
                    },
                )
                .boxed()
            })
            .collect())
    }
}

/// Records, for committing, each batch a partition hands on to the plan.
struct HandedOn {
    ledger: Option<Arc<SplitLedger>>,
    event_time: Option<WatermarkSpec>,
}

impl HandedOn {
    fn record(&self, batch: &RecordBatch, position: i64) -> Result<()> {
        if let Some(ledger) = &self.ledger {
            let latest = match &self.event_time {
                Some(spec) => spec.latest_event_time(batch)?,
                None => None,
            };
            ledger.read(position, latest);
        }
        Ok(())
    }
}
