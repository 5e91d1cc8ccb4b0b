//! Writing a Kafka table (`INSERT INTO`): each row becomes one message on the table's topic,
//! through an idempotent producer (librdkafka's retries neither duplicate nor reorder).
//!
//! A batch counts as written once librdkafka has acknowledged every one of its messages;
//! only then may the job settle (and sources commit) what it came from. A message that
//! cannot be delivered (after librdkafka's own retries, within `message.timeout.ms`) fails
//! the pipeline with the cause: nothing is dropped silently.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::sink::DataSink;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use futures::StreamExt;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, Producer};

use super::config::producer_config;
use super::delivery::{Deliveries, TrackedProducer};
use super::encode::{MessageLayout, ValueEncoder, avro_schema_of};
use super::message_size::{DEFAULT_MESSAGE_MAX_BYTES, MessageSizeCheck};
use super::options::{KafkaFormat, KafkaOptions};
use crate::error::Error;
use crate::format::SchemaRegistry;
use crate::stream::{JobProgress, PipelineContext};

/// How long the final flush may take when the input ends.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// The writing half of a Kafka table.
#[derive(Debug)]
pub struct KafkaSink {
    schema: SchemaRef,
    options: KafkaOptions,
    layout: MessageLayout,
    /// The schema registry of an Avro table.
    registry: Option<Arc<SchemaRegistry>>,
}

impl KafkaSink {
    /// A sink writing rows of `schema` as `layout` says.
    pub fn new(
        schema: SchemaRef,
        options: KafkaOptions,
        layout: MessageLayout,
        registry: Option<Arc<SchemaRegistry>>,
    ) -> Self {
        Self {
            schema,
            options,
            layout,
            registry,
        }
    }

    /// How values are written: JSON, or Avro with the value schema registered under the
    /// table's subject.
    async fn value_encoder(&self, topic: &str) -> Result<ValueEncoder> {
        match (&self.options.format, &self.registry) {
            (KafkaFormat::Avro, Some(registry)) => {
                let schema = self.layout.value_schema(&self.schema)?;
                let avro = avro_schema_of(&schema)?;
                let id = registry
                    .register(&self.options.subject(topic), &avro)
                    .await?;
                ValueEncoder::avro(schema, avro, id)
            }
            (KafkaFormat::DebeziumJson, _) => Err(DataFusionError::Plan(format!(
                "topic {topic}: debezium-json is read only; write format 'json' or 'avro' with a METADATA FROM 'op' column, and deletes become tombstones"
            ))),
            _ => Ok(ValueEncoder::Json),
        }
    }

    /// The check of each webhook event's message size, for a table `serve` writes to
    /// (none for a table that cannot be written).
    pub fn message_size_check(&self) -> Option<MessageSizeCheck> {
        let topic = self.topic().ok()?;
        let values = match self.options.format {
            KafkaFormat::Avro => {
                let schema = self.layout.value_schema(&self.schema).ok()?;
                let avro = avro_schema_of(&schema).ok()?;
                // The registry's id takes 4 bytes whatever it is.
                ValueEncoder::avro(schema, avro, 0).ok()?
            }
            KafkaFormat::DebeziumJson => return None,
            _ => ValueEncoder::Json,
        };
        let max_bytes = self
            .options
            .properties
            .get("message.max.bytes")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(DEFAULT_MESSAGE_MAX_BYTES);
        Some(MessageSizeCheck::new(
            topic.to_string(),
            self.layout.clone(),
            values,
            max_bytes,
        ))
    }

    /// The one topic written to.
    fn topic(&self) -> Result<&str> {
        match self.options.topics.as_slice() {
            [topic] => Ok(topic),
            topics => Err(DataFusionError::Plan(format!(
                "a Kafka table over several topics ({}) cannot be written to",
                topics.join(", ")
            ))),
        }
    }
}

impl DisplayAs for KafkaSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "KafkaSink: topic={}", self.options.topics.join(","))
    }
}

#[async_trait]
impl DataSink for KafkaSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        context: &Arc<TaskContext>,
    ) -> Result<u64> {
        let topic = self.topic()?;
        self.layout.check_writable()?;
        let failed = |source: KafkaError| -> DataFusionError {
            Error::Kafka {
                context: format!("writing to topic {topic}"),
                source,
            }
            .into()
        };
        let pipeline = PipelineContext::of_task(context);
        let producer: Arc<TrackedProducer> = Arc::new(
            producer_config(&self.options)
                .create_with_context(Deliveries::default())
                .map_err(failed)?,
        );
        let deliveries = producer.context();
        let mut values = self.value_encoder(topic).await?;
        let mut rows = 0u64;
        while let Some(batch) = data.next().await.transpose()? {
            let messages = self.layout.encode(&batch, &mut values)?;
            for i in 0..messages.len() {
                let message = messages.message(i);
                let mut record = BaseRecord::<[u8], [u8]>::to(topic);
                if let Some(value) = message.value {
                    record = record.payload(value);
                }
                if let Some(key) = message.key {
                    record = record.key(key);
                }
                if let Some(timestamp) = message.timestamp {
                    record = record.timestamp(timestamp);
                }
                Deliveries::send_queued(&producer, record)
                    .await
                    .map_err(failed)?;
            }
            deliveries.settled().await.map_err(failed)?;
            rows += batch.num_rows() as u64;
            pipeline.metrics.rows_out.inc_by(batch.num_rows() as u64);
            JobProgress::settle_task(context);
        }
        let flushing = Arc::clone(&producer);
        tokio::task::spawn_blocking(move || flushing.flush(FLUSH_TIMEOUT))
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?
            .map_err(failed)?;
        Ok(rows)
    }
}
