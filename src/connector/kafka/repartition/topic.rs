//! [`RepartitionTopic`]: the internal topic one keyed operator's rows go through, and its
//! creation (once, by whichever process of the group comes first).

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::connector::kafka::config::{REQUEST_TIMEOUT, consumer_config, kafka_error};
use crate::connector::kafka::options::KafkaOptions;
use crate::error::Error;

/// A repartition topic of a group.
#[derive(Debug, Clone)]
pub struct RepartitionTopic {
    /// The consumer group whose topic it is.
    pub group: String,
    /// `GROUP-JOB-repartition`.
    pub name: String,
    /// The cluster (and client properties) of the source topic it repartitions.
    pub kafka: KafkaOptions,
    /// The partitions of the source topics: one per task.
    pub partitions: usize,
    /// The group's lineage, kept with its checkpoints: frames of another lineage (an
    /// earlier run of a group under the same name) are skipped.
    pub lineage: u64,
}

/// Creates `topic` with its partitions unless it exists; an existing topic with another
/// number of partitions is an error. Blocking: call off the async threads.
pub fn create_repartition_topic(topic: &RepartitionTopic) -> Result<(), Error> {
    let name = &topic.name;
    if let Some(partitions) = existing_partitions(topic)? {
        return match partitions == topic.partitions {
            true => Ok(()),
            false => Err(Error::Group {
                group: topic.group.clone(),
                message: format!(
                    "repartition topic {name} has {partitions} partitions, the source topics \
                     {}: start the group under another name (or delete the topic and start \
                     anew with a fresh --checkpoint-dir: its checkpoints point into it)",
                    topic.partitions
                ),
            }),
        };
    }
    let admin: AdminClient<DefaultClientContext> = consumer_config(&topic.kafka)
        .create()
        .map_err(kafka_error("creating an admin client"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            context: "creating a repartition topic".into(),
            source,
        })?;
    // The broker's default replication first; a broker without one gets a single replica.
    for replication in [-1, 1] {
        let new = NewTopic::new(
            name,
            topic.partitions as i32,
            TopicReplication::Fixed(replication),
        );
        let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
        let created = runtime
            .block_on(admin.create_topics([&new], &options))
            .map_err(kafka_error(format!("creating repartition topic {name}")))?;
        match created.into_iter().next() {
            Some(Ok(_)) | Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | None => {
                return Ok(());
            }
            Some(Err((_, RDKafkaErrorCode::InvalidReplicationFactor))) if replication < 0 => {}
            Some(Err((_, code))) => {
                return Err(kafka_error(format!("creating repartition topic {name}"))(
                    KafkaError::AdminOp(code),
                ));
            }
        }
    }
    Ok(())
}

/// The partitions of `topic` if it exists.
fn existing_partitions(topic: &RepartitionTopic) -> Result<Option<usize>, Error> {
    let name = &topic.name;
    let consumer: BaseConsumer = consumer_config(&topic.kafka)
        .set("allow.auto.create.topics", "false")
        .create()
        .map_err(kafka_error("creating a consumer"))?;
    let metadata = consumer
        .fetch_metadata(Some(name), REQUEST_TIMEOUT)
        .map_err(kafka_error(format!("metadata of topic {name}")))?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len()))
}
