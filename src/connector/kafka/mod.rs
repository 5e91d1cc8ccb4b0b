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
mod metadata;
mod options;
mod reader;
mod sink;
mod source;

pub use bad_data::{
    BadRecordKind, DLQ_ERROR_HEADER, DLQ_KIND_HEADER, DLQ_OFFSET_HEADER, DLQ_PARTITION_HEADER,
    DLQ_TOPIC_HEADER,
};
pub use encode::MessageLayout;
pub use metadata::MetadataColumns;
pub use options::{BadDataPolicy, KafkaFormat, KafkaOptions, StartupMode};
pub use sink::KafkaSink;
pub use source::{KafkaSource, MessageSchemas};
