//! Reading a Kafka table: one split per partition, each read by its own consumer on a
//! blocking thread (`reader.rs`; librdkafka's calls block, the async runtime never waits on
//! them). The source merges the partitions' watermarks like any other splits, and records
//! which batches it handed on so that their positions can be committed once settled.
//!
//! Read as a snapshot (an ad-hoc query, `profusion run --bounded`), each partition is read
//! from its start offset up to its end offset as seen when the query starts, then ends.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use futures::StreamExt;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::mpsc;

use super::avro::AvroValues;
use super::bad_data::{BadDataHandler, DeadLetters};
use super::commit::PartitionCommitter;
use super::config::{REQUEST_TIMEOUT, consumer_config, kafka_error, producer_config};
use super::decode::{RecordDecoder, TombstoneRows, ValueFormat};
use super::delivery::Deliveries;
use super::metadata::MetadataColumns;
use super::options::{BadDataPolicy, KafkaFormat, KafkaOptions};
use super::reader::{BatchSender, PartitionReader, names_of, read_guarded, read_partitions};
use crate::error::Error;
use crate::format::{JsonSchema, SchemaRegistry};
use crate::stream::{
    GroupTask, PipelineContext, ScanPartition, Source, SourceReads, SplitLedger, SplitStream,
    WatermarkSpec,
};

/// The reading half of a Kafka table.
#[derive(Debug)]
pub struct KafkaSource {
    options: KafkaOptions,
    reads: SourceReads,
    metadata: MetadataColumns,
    schemas: MessageSchemas,
    /// The columns the topic's messages are keyed by, so a partition holds every row of
    /// a key; empty when the table does not say.
    partitioned_by: Vec<String>,
}

/// What a table's messages are checked and decoded with, besides its columns.
#[derive(Debug, Clone, Default)]
pub struct MessageSchemas {
    /// The schema registry of an Avro table.
    pub registry: Option<Arc<SchemaRegistry>>,
    /// The JSON Schema of a JSON table (`'json.schema'`).
    pub json: Option<JsonSchema>,
    /// How tombstones become deletes, for a keyed JSON table with a change kind column.
    pub tombstones: Option<TombstoneRows>,
}

impl KafkaSource {
    /// A source of the table whose columns `metadata` describes.
    pub fn new(
        options: KafkaOptions,
        reads: SourceReads,
        metadata: MetadataColumns,
        schemas: MessageSchemas,
    ) -> Self {
        Self {
            options,
            reads,
            metadata,
            schemas,
            partitioned_by: Vec::new(),
        }
    }

    /// This source, its topic's messages keyed by `columns` (`'key.fields'`, the primary
    /// key, or a `METADATA FROM 'key'` column): Kafka's partitioner puts every message of a
    /// key in one partition.
    pub fn partitioned_by(self, columns: Vec<String>) -> Self {
        Self {
            partitioned_by: columns,
            ..self
        }
    }

    /// The columns every partition holds all the rows of a key of (see
    /// [`Self::partitioned_by`]); empty when the table does not say.
    pub fn partition_key(&self) -> &[String] {
        &self.partitioned_by
    }

    /// The table's options.
    pub fn options(&self) -> &KafkaOptions {
        &self.options
    }
}

/// The number of partitions of each of the table's topics, in the order of `topics`.
pub fn partition_counts(options: &KafkaOptions) -> Result<Vec<(String, usize)>, Error> {
    let partitions = list_partitions(options)?;
    Ok(options
        .topics
        .iter()
        .map(|topic| {
            let count = partitions.iter().filter(|(t, _)| t == topic).count();
            (topic.clone(), count)
        })
        .collect())
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
        // In partition order, whatever order the broker lists them in: a checkpoint keeps
        // the splits' watermarks by their place in this list.
        let mut ids: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
        ids.sort_unstable();
        partitions.extend(ids.into_iter().map(|id| (topic.clone(), id)));
    }
    Ok(partitions)
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

    /// Known once the topic's partitions or the folder's files are listed.
    fn split_count(&self) -> Option<usize> {
        None
    }

    async fn open(
        &self,
        context: Arc<TaskContext>,
        event_time: Option<&WatermarkSpec>,
        scan: &ScanPartition,
    ) -> Result<Vec<SplitStream>> {
        let options = self.options.clone();
        // Continuous reads record what they hand on (for checkpoints), and commit it to a
        // named group once settled. A task of a consumer group reads its one partition of
        // each topic and reports what it settled to the group's member, which commits it
        // (only a member may commit to an active group); its offsets for restoring live in
        // its checkpoint.
        let recorded = self.reads == SourceReads::Continuous;
        let task = GroupTask::of(&context).filter(|_| recorded);
        let partitions: Vec<_> = tokio::task::spawn_blocking(move || list_partitions(&options))
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))??
            .into_iter()
            .enumerate()
            .filter(|(index, (_, id))| {
                scan.reads(*index) && task.as_ref().is_none_or(|task| task.partition == *id)
            })
            .map(|(_, partition)| partition)
            .collect();
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
        // Each partition's reader, the sender of its batches, and its ledger.
        let mut readers = Vec::with_capacity(partitions.len());
        let streams: Vec<SplitStream> = partitions
            .into_iter()
            .map(|(topic, partition)| {
                let bad_data = BadDataHandler::new(
                    self.options.bad_data.clone(),
                    dead_letters.clone(),
                    (&topic, partition),
                    scan.counts.clone(),
                );
                let ledger = recorded
                    .then(|| scan.ledger(&format!("kafka:{topic}/{partition}")))
                    .flatten();
                let resume = ledger.as_ref().and_then(|l| scan.restored_position(l));
                let committer = match (&ledger, &self.options.group_id, &task) {
                    (Some(ledger), Some(_), None) => Some(PartitionCommitter::new(
                        Arc::clone(ledger),
                        &topic,
                        partition,
                    )),
                    (Some(ledger), _, Some(task)) => task.settled.clone().map(|member| {
                        PartitionCommitter::new(Arc::clone(ledger), &topic, partition)
                            .reporting_to(member)
                    }),
                    _ => None,
                };
                let format = match (self.options.format, &self.schemas.registry) {
                    (KafkaFormat::Avro, Some(registry)) => ValueFormat::Avro(AvroValues::new(
                        Arc::clone(registry),
                        tokio::runtime::Handle::current(),
                        self.metadata.value_schema(),
                        self.options.batch_size,
                    )),
                    (KafkaFormat::DebeziumJson, _) => ValueFormat::DebeziumJson,
                    _ => ValueFormat::Json,
                };
                let lag = pipeline.metrics.consumer_lag(&topic, partition);
                let reader = PartitionReader {
                    lag,
                    options: self.options.clone(),
                    reads: self.reads,
                    columns: self.metadata.clone(),
                    topic,
                    partition,
                    resume,
                    committer,
                    bad_data,
                    decoder: RecordDecoder::new(
                        self.metadata.value_schema(),
                        self.options.max_record_bytes,
                        format,
                    )
                    .with_json_schema(self.schemas.json.clone())
                    .with_tombstones(self.schemas.tombstones.clone()),
                    event_time: event_time.cloned(),
                };
                let (sender, receiver): (BatchSender, _) = mpsc::channel(2);
                readers.push((reader, sender, ledger.clone()));
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
            .collect();
        for group in reading_threads(readers, scan.count) {
            tokio::task::spawn_blocking(move || {
                let (readers, ledgers): (Vec<_>, Vec<_>) = group
                    .into_iter()
                    .map(|(reader, sender, ledger)| ((reader, sender), ledger))
                    .unzip();
                let senders: Vec<BatchSender> = readers.iter().map(|(_, s)| s.clone()).collect();
                let name = names_of(readers.iter().map(|(reader, _)| reader));
                read_guarded(&name, &senders, || read_partitions(readers));
                // The reader has committed all it will (if it commits at all): a finishing
                // job need not wait for it.
                for ledger in ledgers.into_iter().flatten() {
                    ledger.close();
                }
            });
        }
        Ok(streams)
    }
}

/// The partitions of one scan, dealt out to reading threads: one per partition while there
/// is a core for each (decoding a partition takes a core), fewer past that, each thread
/// with one consumer for its partitions. `scans` is how many scans of the table share the
/// machine's cores.
fn reading_threads<T>(partitions: Vec<T>, scans: usize) -> Vec<Vec<T>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / scans.max(1)).clamp(1, partitions.len().max(1));
    let mut groups: Vec<Vec<T>> = (0..threads).map(|_| Vec::new()).collect();
    for (index, partition) in partitions.into_iter().enumerate() {
        groups[index % threads].push(partition);
    }
    groups.retain(|group| !group.is_empty());
    groups
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_get_a_thread_each_while_there_is_a_core_for_each() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let one_each = reading_threads((0..cores).collect(), 1);
        assert_eq!(one_each.len(), cores);
        assert!(one_each.iter().all(|group| group.len() == 1));

        let many = reading_threads((0..cores * 3 + 1).collect::<Vec<_>>(), 1);
        assert_eq!(many.len(), cores, "one thread per core");
        let mut all: Vec<usize> = many.concat();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..cores * 3 + 1).collect::<Vec<_>>(),
            "each read once"
        );

        let shared = reading_threads((0..8).collect::<Vec<_>>(), cores * 2);
        assert_eq!(
            shared.len(),
            1,
            "scans that outnumber the cores read on one thread each"
        );
        assert!(reading_threads(Vec::<usize>::new(), 1).is_empty());
    }
}
