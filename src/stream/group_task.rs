//! [`GroupTask`]: the one partition a pipeline instance runs when several `profusion run
//! --group` processes share a pipeline. Kafka's consumer group deals a topic's partitions
//! out among the processes; each partition the process holds runs as a task of its own
//! (its own session, plan and checkpoint), reading partition N of every source topic, as
//! a Kafka Streams task does. The task travels in DataFusion's session config, so a
//! source reaches it through its task context.

use std::sync::Arc;

use datafusion::execution::TaskContext;

/// The partition of every source topic this pipeline instance reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupTask {
    /// The consumer group the processes share (`--group`).
    pub group: String,
    /// The partition number read in every source topic.
    pub partition: i32,
}

impl GroupTask {
    /// The task of the session `context` runs in, if it runs one.
    pub fn of(context: &TaskContext) -> Option<Arc<Self>> {
        context.session_config().get_extension::<GroupTask>()
    }
}
