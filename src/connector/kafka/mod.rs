//! `connector = 'kafka'`: a topic (or several) as a table. Each partition is a split with its
//! own watermark, read on its own blocking thread and decoded straight into Arrow batches.
//! Client configuration is built in one place (`config.rs`) from the typed options.

mod commit;
mod config;
mod decode;
mod encode;
mod metadata;
mod options;
mod sink;
mod source;

pub use encode::MessageLayout;
pub use metadata::MetadataColumns;
pub use options::{BadDataPolicy, KafkaFormat, KafkaOptions, StartupMode};
pub use sink::KafkaSink;
pub use source::KafkaSource;
