//! [`GroupTask`]: the one partition a pipeline instance runs when several `profusion run
//! --group` processes share a pipeline. Kafka's consumer group deals a topic's partitions
//! out among the processes; each partition the process holds runs as a task of its own
//! (its own session, plan and checkpoint), reading partition N of every source topic, as
//! a Kafka Streams task does. The task travels in DataFusion's session config, so a
//! source reaches it through its task context.

use std::sync::Arc;

use datafusion::execution::TaskContext;

/// Takes a reader's settled position (topic, partition, a number naming the reader, next
/// offset) for the group member to commit to the group, where Kafka's tools show the
/// group's lag. Several jobs of a task read one partition: the member commits the least.
pub type SettledPosition = Arc<dyn Fn(&str, i32, usize, i64) + Send + Sync>;

/// The partition of every source topic this pipeline instance reads.
#[derive(Clone)]
pub struct GroupTask {
    /// The partition number read in every source topic.
    pub partition: i32,
    /// Where the task's readers report what they have settled; none commits nothing.
    pub settled: Option<SettledPosition>,
}

impl std::fmt::Debug for GroupTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupTask")
            .field("partition", &self.partition)
            .field("commits", &self.settled.is_some())
            .finish()
    }
}

impl GroupTask {
    /// The task of the session `context` runs in, if it runs one.
    pub fn of(context: &TaskContext) -> Option<Arc<Self>> {
        context.session_config().get_extension::<GroupTask>()
    }
}
