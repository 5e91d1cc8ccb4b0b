//! `connector = 'kafka'`: a topic (or several) as a table. Each partition is a split with its
//! own watermark, read on its own blocking thread and decoded straight into Arrow batches.
//! Client configuration is built in one place (`config.rs`) from the typed options.

mod avro;
mod bad_data;
mod commit;
mod config;
mod debezium;
mod decode;
mod delivery;
mod encode;
mod fetch_queue;
mod group_member;
mod message_size;
mod metadata;
mod options;
mod reader;
mod repartition;
mod sink;
mod source;

pub use bad_data::{
    BadRecordKind, DLQ_ERROR_HEADER, DLQ_KIND_HEADER, DLQ_OFFSET_HEADER, DLQ_PARTITION_HEADER,
    DLQ_TOPIC_HEADER,
};
pub use encode::MessageLayout;
pub use group_member::{GroupChange, GroupMember, GroupMembership, REVOKE_WAIT};
pub use metadata::MetadataColumns;
pub use options::{BadDataPolicy, KafkaFormat, KafkaOptions, StartupMode};
pub use repartition::{RepartitionTopic, RepartitionTopicExec, create_repartition_topic};
pub use sink::KafkaSink;
pub use source::{KafkaSource, MessageSchemas, partition_counts};

/// `connector = 'kafka'`: a topic, read and written; an upsert topic can hold a view.
pub struct KafkaConnector;

impl super::Connector for KafkaConnector {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn halves(
        &self,
        declared: super::Declared<'_>,
        options: &mut crate::sql::WithOptions,
        reads: crate::stream::SourceReads,
    ) -> crate::error::Result<super::Halves> {
        use std::sync::Arc;

        use crate::format::{JsonSchema, SchemaRegistry};

        let schema = Arc::clone(declared.schema);
        let parsed = KafkaOptions::parse(options)?;
        let metadata =
            MetadataColumns::try_new(&schema, declared.metadata).map_err(|m| options.error(m))?;
        let key_fields = parsed.key_fields.as_deref().unwrap_or(declared.primary_key);
        let layout = MessageLayout::try_new(&metadata, key_fields)
            .map_err(|e| options.error(e.to_string()))?;
        let registry = match &parsed.schema_registry_url {
            Some(url) => Some(Arc::new(SchemaRegistry::new(url)?)),
            None => None,
        };
        let json = match &parsed.json_schema {
            Some(path) => Some(
                JsonSchema::load(path)
                    .map_err(|e| options.error(format!("option 'json.schema': {e}")))?,
            ),
            None => None,
        };
        // A keyed JSON table that reads each row's change kind reads tombstones as deletes,
        // when a row of the key alone fits its other columns.
        let value_schema = metadata.value_schema();
        let key_alone_fits = value_schema
            .fields()
            .iter()
            .all(|f| f.is_nullable() || key_fields.contains(f.name()));
        let tombstones = (metadata.op_column().is_some()
            && parsed.format == options::KafkaFormat::Json
            && !key_fields.is_empty()
            && key_alone_fits)
            .then(|| decode::TombstoneRows::new(key_fields, &value_schema));
        let schemas = MessageSchemas {
            registry: registry.clone(),
            json,
            tombstones,
        };
        // What the messages are keyed by: the written key's columns, or the column the
        // key is read into.
        let partitioned_by = match (key_fields.is_empty(), metadata.key_column()) {
            (false, _) => key_fields.to_vec(),
            (true, Some(index)) => vec![schema.field(index).name().clone()],
            (true, None) => Vec::new(),
        };
        Ok((
            Some(Arc::new(
                KafkaSource::new(parsed.clone(), reads, metadata, schemas)
                    .partitioned_by(partitioned_by),
            )),
            Some(Arc::new(KafkaSink::new(schema, parsed, layout, registry))),
        ))
    }

    fn has_metadata(&self) -> bool {
        true
    }

    fn holds_views(&self) -> bool {
        true
    }

    fn view_store(
        &self,
        declared: super::Declared<'_>,
        options: &mut crate::sql::WithOptions,
        reads: crate::stream::SourceReads,
    ) -> crate::error::Result<super::store::ViewStore> {
        match self.halves(declared, options, reads)? {
            (Some(source), Some(sink)) => Ok(super::store::ViewStore::Topic { sink, source }),
            _ => Err(options.error("a Kafka table is both read and written")),
        }
    }

    fn takes_ingest(&self) -> bool {
        true
    }

    fn ingest_check(
        &self,
        _table: &str,
        sink: &std::sync::Arc<dyn datafusion::datasource::sink::DataSink>,
    ) -> std::result::Result<Option<std::sync::Arc<dyn crate::connector::IngestCheck>>, String>
    {
        let any: &dyn std::any::Any = sink.as_ref();
        let Some(sink) = any.downcast_ref::<sink::KafkaSink>() else {
            return Ok(None);
        };
        Ok(sink
            .message_size_check()
            .map(|check| std::sync::Arc::new(check) as _))
    }
}
