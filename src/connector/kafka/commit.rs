//! Committing a partition's settled position to the table's consumer group: the offset
//! after the last row whose results have reached the sinks (see [`SplitLedger`]), so a
//! pipeline restarted with `'scan.startup.mode' = 'group-offsets'` re-reads at most what had
//! not yet had its effect (at least once).
//!
//! The reading thread commits at most once per [`COMMIT_INTERVAL`] and once more when it
//! stops. A failed commit is not fatal: the next one carries a later position.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::stream::{SettledPosition, SplitLedger};

/// How often a partition's position is committed while the pipeline runs.
pub const COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// How long a stopping reader waits for its job to end (its sinks to settle what it
/// handed on).
const FINAL_SETTLE_WAIT: Duration = Duration::from_secs(10);

/// Commits one partition's settled positions (the reading thread closes the ledger when it
/// ends, committer or not).
pub struct PartitionCommitter {
    ledger: Arc<SplitLedger>,
    topic: String,
    partition: i32,
    committed: Option<i64>,
    last_attempt: Instant,
    /// A task of a consumer group reports its positions to the group's member, which
    /// commits them: only a member may commit to an active group.
    member: Option<SettledPosition>,
}

impl PartitionCommitter {
    /// A committer for `topic`/`partition` following `ledger`.
    pub fn new(ledger: Arc<SplitLedger>, topic: &str, partition: i32) -> Self {
        Self {
            ledger,
            topic: topic.to_string(),
            partition,
            committed: None,
            last_attempt: Instant::now(),
            member: None,
        }
    }

    /// This committer, reporting to a consumer group's member instead of committing.
    pub fn reporting_to(mut self, member: SettledPosition) -> Self {
        self.member = Some(member);
        self
    }

    /// Commits the settled position if it moved and the interval has passed.
    pub fn tick(&mut self, consumer: &BaseConsumer) {
        if self.last_attempt.elapsed() >= COMMIT_INTERVAL {
            self.commit(consumer);
        }
    }

    /// Waits (briefly) for the job to finish settling, then commits what it settled.
    pub fn finish(&mut self, consumer: &BaseConsumer) {
        let deadline = Instant::now() + FINAL_SETTLE_WAIT;
        while !self.ledger.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.commit(consumer);
    }

    fn commit(&mut self, consumer: &BaseConsumer) {
        self.last_attempt = Instant::now();
        let Some(position) = self.ledger.settled() else {
            return;
        };
        if self.committed == Some(position) {
            return;
        }
        if let Some(member) = &self.member {
            let reader = Arc::as_ptr(&self.ledger) as usize;
            member(&self.topic, self.partition, reader, position);
            self.committed = Some(position);
            return;
        }
        let mut list = TopicPartitionList::new();
        let committed = list
            .add_partition_offset(&self.topic, self.partition, Offset::Offset(position))
            .and_then(|()| consumer.commit(&list, CommitMode::Sync));
        match committed {
            Ok(()) => self.committed = Some(position),
            Err(error) => eprintln!(
                "warning: committing offset {position} of {}/{}: {error} (retried with the next commit)",
                self.topic, self.partition
            ),
        }
    }
}
