//! What becomes of a record that cannot become a row, by the table's `bad_data` policy:
//! `fail` stops the pipeline naming the record (nothing past it is committed), `drop` skips
//! it, `dlq` writes its original key, value and headers to the `'dlq.topic'`, adding headers
//! that say where it came from and why it was refused. Skipped and dead-lettered records
//! are counted by kind in the pipeline's metrics.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};

use super::decode::RawRecord;
use super::delivery::{Deliveries, TrackedProducer};
use super::options::BadDataPolicy;
use crate::error::Error;
use crate::stream::TableCounts;

/// Headers a dead-lettered record carries besides its own.
pub const DLQ_TOPIC_HEADER: &str = "dlq.source.topic";
pub const DLQ_PARTITION_HEADER: &str = "dlq.source.partition";
pub const DLQ_OFFSET_HEADER: &str = "dlq.source.offset";
pub const DLQ_KIND_HEADER: &str = "dlq.error.kind";
pub const DLQ_ERROR_HEADER: &str = "dlq.error";

/// How long a reader waits for the dead-letter topic to acknowledge a batch's records.
const DLQ_FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a record was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BadRecordKind {
    /// The value is not JSON.
    InvalidJson,
    /// A field holds a value of the wrong type for its column.
    WrongType,
    /// A NOT NULL column has no value.
    MissingValue,
    /// The value holds no object or several.
    NotOneObject,
    /// The value is empty.
    Empty,
    /// The value is larger than `max_record_bytes`.
    Oversize,
    /// An Avro value shorter than the 5-byte wire-format header.
    ShortAvroHeader,
    /// An Avro value whose first byte is not the wire format's magic byte 0.
    WrongMagicByte,
    /// An Avro value whose schema id the registry does not know.
    UnknownSchemaId,
    /// An Avro value whose body does not decode with its schema.
    InvalidAvro,
    /// A `debezium-json` value that is not a row change (no `op`, or no row image).
    InvalidChange,
    /// A JSON value the table's `'json.schema'` rejects.
    SchemaViolation,
    /// An event time further ahead of the clock than `'watermark.max_future'`.
    FutureEventTime,
}

impl BadRecordKind {
    /// The kind's name in metrics, messages and the `dlq.error.kind` header.
    pub fn name(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::WrongType => "wrong_type",
            Self::MissingValue => "missing_value",
            Self::NotOneObject => "not_one_object",
            Self::Empty => "empty",
            Self::Oversize => "oversize",
            Self::ShortAvroHeader => "short_avro_header",
            Self::WrongMagicByte => "wrong_magic_byte",
            Self::UnknownSchemaId => "unknown_schema_id",
            Self::InvalidAvro => "invalid_avro",
            Self::InvalidChange => "invalid_change",
            Self::SchemaViolation => "schema_violation",
            Self::FutureEventTime => "future_event_time",
        }
    }
}

/// A record that could not be decoded: its index in the poll, and why.
#[derive(Debug)]
pub struct Rejected {
    pub index: usize,
    pub kind: BadRecordKind,
    pub reason: String,
}

/// The dead-letter topic and the producer writing to it (one per table read).
#[derive(Clone)]
pub struct DeadLetters {
    pub topic: String,
    pub producer: Arc<TrackedProducer>,
}

/// Applies a table's `bad_data` policy to one partition's rejected records.
pub struct BadDataHandler {
    policy: BadDataPolicy,
    dead_letters: Option<DeadLetters>,
    topic: String,
    partition: i32,
    counts: TableCounts,
}

impl BadDataHandler {
    pub fn new(
        policy: BadDataPolicy,
        dead_letters: Option<DeadLetters>,
        (topic, partition): (&str, i32),
        counts: TableCounts,
    ) -> Self {
        Self {
            policy,
            dead_letters,
            topic: topic.to_string(),
            partition,
            counts,
        }
    }

    /// Handles the `rejected` among `records`. Runs on a reader's blocking thread: with a
    /// dead-letter topic, it returns once the broker has acknowledged every record sent.
    pub fn handle(&self, records: &[RawRecord<'_>], rejected: &[Rejected]) -> Result<(), Error> {
        if rejected.is_empty() {
            return Ok(());
        }
        let position = |r: &Rejected| (records[r.index].offset, r.reason.clone());
        match (&self.policy, &self.dead_letters) {
            (BadDataPolicy::Fail, _) => {
                let (offset, reason) = position(&rejected[0]);
                return Err(Error::BadRecord {
                    topic: self.topic.clone(),
                    partition: self.partition,
                    offset,
                    reason,
                });
            }
            (BadDataPolicy::Dlq(_), Some(dead_letters)) => {
                for refused in rejected {
                    self.dead_letter(dead_letters, &records[refused.index], refused)?;
                }
                self.await_dead_letters(dead_letters)?;
            }
            _ => {}
        }
        // Refused records were read too: the table's events in counts them with its bad
        // records, so that events in less rows out is what the source dropped.
        self.counts.events_in.inc_by(rejected.len() as u64);
        for refused in rejected {
            self.counts.bad_record(refused.kind.name());
        }
        Ok(())
    }

    fn dead_letter(
        &self,
        dead_letters: &DeadLetters,
        record: &RawRecord<'_>,
        refused: &Rejected,
    ) -> Result<(), Error> {
        let mut headers = OwnedHeaders::new();
        if let Some(original) = record.headers {
            for header in original.iter() {
                headers = headers.insert(Header {
                    key: &header.name,
                    value: header.value,
                });
            }
        }
        let partition = self.partition.to_string();
        let offset = record.offset.to_string();
        for (key, value) in [
            (DLQ_TOPIC_HEADER, self.topic.as_str()),
            (DLQ_PARTITION_HEADER, partition.as_str()),
            (DLQ_OFFSET_HEADER, offset.as_str()),
            (DLQ_KIND_HEADER, refused.kind.name()),
            (DLQ_ERROR_HEADER, refused.reason.as_str()),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut message = BaseRecord::<[u8], [u8]>::to(&dead_letters.topic).headers(headers);
        if let Some(key) = record.key {
            message = message.key(key);
        }
        if let Some(value) = record.value {
            message = message.payload(value);
        }
        if let Some(millis) = record.timestamp_millis {
            message = message.timestamp(millis);
        }
        Deliveries::send_queued_blocking(&dead_letters.producer, message)
            .map_err(|source| self.dlq_error(dead_letters, source))
    }

    fn await_dead_letters(&self, dead_letters: &DeadLetters) -> Result<(), Error> {
        dead_letters
            .producer
            .flush(DLQ_FLUSH_TIMEOUT)
            .map_err(|source| self.dlq_error(dead_letters, source))?;
        match dead_letters.producer.context().take_failure() {
            Some(source) => Err(self.dlq_error(dead_letters, source)),
            None => Ok(()),
        }
    }

    fn dlq_error(&self, dead_letters: &DeadLetters, source: rdkafka::error::KafkaError) -> Error {
        Error::Kafka {
            context: format!(
                "writing bad records of {}/{} to the dead-letter topic {}",
                self.topic, self.partition, dead_letters.topic
            ),
            source,
        }
    }
}
