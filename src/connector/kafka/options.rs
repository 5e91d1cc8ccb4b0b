//! The `WITH` options of a Kafka table, consumed into [`KafkaOptions`].

use std::collections::BTreeMap;

use crate::error::Error;
use crate::sql::WithOptions;

/// The default `max_record_bytes`: Kafka's own default largest message (1 MiB).
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1024 * 1024;

/// Where reading starts in each partition (`'scan.startup.mode'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartupMode {
    /// The first offset still in the partition (the default).
    Earliest,
    /// The end of the partition when reading starts: only newer records.
    Latest,
    /// The offsets committed by `'group.id'`, or the earliest where it has none.
    GroupOffsets,
    /// The first record whose Kafka timestamp is at or after this many milliseconds since
    /// the epoch (`'scan.startup.timestamp'`).
    Timestamp(i64),
}

/// What happens to a record that cannot be decoded (`bad_data`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadDataPolicy {
    /// Stop the pipeline, naming the topic, partition, offset and reason (the default).
    Fail,
    /// Skip the record, counted by reason.
    Drop,
    /// Write the record as it was, with where it came from and why it was refused, to
    /// this topic (`'dlq.topic'`), counted by reason.
    Dlq(String),
}

/// Message formats a Kafka table can read and write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaFormat {
    /// One JSON object per message, fields named like the table's columns.
    Json,
    /// Avro records in the Confluent wire format, schemas in a schema registry.
    Avro,
    /// Debezium change events in JSON: a changelog (read only).
    DebeziumJson,
}

/// The parsed options of a Kafka table.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    pub topics: Vec<String>,
    pub bootstrap_servers: String,
    pub group_id: Option<String>,
    pub startup: StartupMode,
    pub format: KafkaFormat,
    /// A JSON Schema file each JSON message (or change event row) must satisfy
    /// (`'json.schema'`).
    pub json_schema: Option<String>,
    /// The schema registry of an Avro table (`'schema.registry.url'`).
    pub schema_registry_url: Option<String>,
    /// The subject a sink registers its schema under (`'schema.registry.subject'`; the
    /// topic name followed by `-value` by default).
    pub schema_registry_subject: Option<String>,
    pub bad_data: BadDataPolicy,
    /// Message values longer than this are bad records (`max_record_bytes`).
    pub max_record_bytes: usize,
    /// Rows per decoded batch.
    pub batch_size: usize,
    /// Columns whose values make a written message's key (`'key.fields'`); the table's
    /// primary key when not given.
    pub key_fields: Option<Vec<String>>,
    /// librdkafka properties given as `'properties.<name>'`, passed to every client.
    pub properties: BTreeMap<String, String>,
}

impl KafkaOptions {
    /// The subject a sink writing `topic` registers its value schema under.
    pub fn subject(&self, topic: &str) -> String {
        self.schema_registry_subject
            .clone()
            .unwrap_or_else(|| format!("{topic}-value"))
    }

    /// Consumes the Kafka options from `options`.
    pub fn parse(options: &mut WithOptions) -> Result<Self, Error> {
        let topics: Vec<String> = options
            .required("topic")?
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        if topics.is_empty() {
            return Err(options.error("option 'topic' names no topic"));
        }
        let bootstrap_servers = options.required("bootstrap.servers")?;
        let group_id = options.take("group.id");
        let mode = options
            .choice(
                "scan.startup.mode",
                &[
                    ("earliest", "earliest"),
                    ("latest", "latest"),
                    ("group-offsets", "group-offsets"),
                    ("timestamp", "timestamp"),
                ],
            )?
            .unwrap_or("earliest");
        let timestamp = options.parse::<i64>("scan.startup.timestamp")?;
        let startup = match (mode, timestamp) {
            ("timestamp", Some(millis)) => StartupMode::Timestamp(millis),
            ("timestamp", None) => {
                return Err(options.error(
                    "option 'scan.startup.timestamp' (milliseconds since the epoch) is required when 'scan.startup.mode' is 'timestamp'",
                ));
            }
            (_, Some(_)) => {
                return Err(options.error(
                    "option 'scan.startup.timestamp' is only used when 'scan.startup.mode' is 'timestamp'",
                ));
            }
            ("latest", None) => StartupMode::Latest,
            ("group-offsets", None) => StartupMode::GroupOffsets,
            _ => StartupMode::Earliest,
        };
        if startup == StartupMode::GroupOffsets && group_id.is_none() {
            return Err(options.error(
                "option 'group.id' is required when 'scan.startup.mode' is 'group-offsets'",
            ));
        }
        let format = options
            .choice(
                "format",
                &[
                    ("json", KafkaFormat::Json),
                    ("avro", KafkaFormat::Avro),
                    ("debezium-json", KafkaFormat::DebeziumJson),
                ],
            )?
            .unwrap_or(KafkaFormat::Json);
        let schema_registry_url = options.take("schema.registry.url");
        let schema_registry_subject = options.take("schema.registry.subject");
        let json_schema = options.take("json.schema");
        if json_schema.is_some() && format == KafkaFormat::Avro {
            return Err(options.error(
                "option 'json.schema' validates JSON messages: it is not used when format is 'avro'",
            ));
        }
        match (format, &schema_registry_url) {
            (KafkaFormat::Avro, None) => {
                return Err(
                    options.error("option 'schema.registry.url' is required when format is 'avro'")
                );
            }
            (KafkaFormat::Json | KafkaFormat::DebeziumJson, Some(_)) => {
                return Err(options
                    .error("option 'schema.registry.url' is only used when format is 'avro'"));
            }
            _ => {}
        }
        let policy = options
            .choice(
                "bad_data",
                &[("fail", "fail"), ("drop", "drop"), ("dlq", "dlq")],
            )?
            .unwrap_or("fail");
        let bad_data = match (policy, options.take("dlq.topic")) {
            ("dlq", Some(topic)) => BadDataPolicy::Dlq(topic),
            ("dlq", None) => {
                return Err(options.error(
                    "option 'dlq.topic' (where bad records go) is required when bad_data is 'dlq'",
                ));
            }
            (_, Some(_)) => {
                return Err(options.error("option 'dlq.topic' is only used when bad_data is 'dlq'"));
            }
            ("drop", None) => BadDataPolicy::Drop,
            _ => BadDataPolicy::Fail,
        };
        let max_record_bytes = options
            .parse::<usize>("max_record_bytes")?
            .unwrap_or(DEFAULT_MAX_RECORD_BYTES);
        let batch_size = options.parse::<usize>("batch_size")?.unwrap_or(8192).max(1);
        let key_fields = options.take("key.fields").map(|fields| {
            fields
                .split(',')
                .map(|f| f.trim().to_string())
                .filter(|f| !f.is_empty())
                .collect()
        });
        let properties = options.take_prefixed("properties.");
        Ok(Self {
            topics,
            bootstrap_servers,
            group_id,
            startup,
            format,
            json_schema,
            schema_registry_url,
            schema_registry_subject,
            bad_data,
            max_record_bytes,
            batch_size,
            key_fields,
            properties,
        })
    }
}
