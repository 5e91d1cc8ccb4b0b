//! Repartition topics: how keyed state whose key is not what the source topic is keyed by
//! is split over the tasks of a consumer group (`profusion run --group`), as Kafka
//! Streams does it. Task N reads partition N of the source topics; [`RepartitionTopicExec`]
//! sends its input's rows through an internal topic (`GROUP-JOB-repartition`, with as many
//! partitions as the source topics) to the partition their key hashes to, and reads
//! partition N back for the keyed operator above it.
//!
//! Exactly once in effect, across crashes and partitions moving between processes: each
//! task's checkpoint keeps how many rows its writer sent each partition and how far its
//! reader has read and taken from each writer. A restored writer replays its source from
//! the checkpoint's offsets and numbers its rows as before, so the reader drops what it
//! has taken already. Event time travels in the topic too: each writer sends its
//! watermark to every partition, and a reader's watermark is the least over the writers.

mod exec;
mod frame;
mod progress;
mod reader;
mod topic;
mod writer;

pub use exec::RepartitionTopicExec;
pub use topic::{RepartitionTopic, create_repartition_topic};
