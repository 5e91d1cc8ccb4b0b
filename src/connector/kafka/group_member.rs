//! [`GroupMember`]: this process's membership of a consumer group (`profusion run
//! --group`). It subscribes to the pipeline's lead topic with the cooperative-sticky
//! assignor and turns the group's rebalances into [`GroupChange`]s: the partitions this
//! process now holds, and those it must give up. It reads no record itself: every
//! partition it is given is paused at once, and the tasks that run the pipeline for it
//! read it with consumers of their own, from their checkpoints.
//!
//! Giving a partition up waits until its task has stopped: with the cooperative protocol
//! the group hands a revoked partition to another member only after the one that held it
//! has acknowledged the revocation, so the old owner has stopped writing for it before the
//! new owner starts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as blocking;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::CommitMode;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::commit::COMMIT_INTERVAL;
use super::config::{consumer_config, kafka_error};
use super::options::KafkaOptions;
use crate::error::Error;
use crate::stream::{SettledPosition, lock};

/// How long a revocation waits for the tasks it stops (the group runner aborts a task
/// that takes longer to stop than a shorter wait of its own).
pub const REVOKE_WAIT: Duration = Duration::from_secs(60);
/// How often the member serves the group (heartbeats, rebalances).
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A change of the partitions this process holds.
#[derive(Debug)]
pub enum GroupChange {
    /// The group gave these partitions of the lead topic to this process.
    Assigned(Vec<i32>),
    /// The group takes these partitions away: stop their tasks, then send on `done`.
    Revoked {
        /// The partitions of the lead topic taken away.
        partitions: Vec<i32>,
        /// Told once their tasks have stopped; the group hands them on after that.
        done: blocking::SyncSender<()>,
    },
    /// The member has left the group (after [`GroupMember::leave`]) or failed.
    Left(Option<String>),
}

/// How this process takes part in a consumer group.
#[derive(Debug, Clone)]
pub struct GroupMembership {
    /// The consumer group (`--group`).
    pub group: String,
    /// The topic whose partitions are the group's tasks.
    pub topic: String,
    /// After this long without a heartbeat the group gives a member's partitions to the
    /// others (`session.timeout.ms`).
    pub session_timeout: Duration,
}

/// The membership, served on a thread of its own; dropped or left, it leaves the group.
pub struct GroupMember {
    leaving: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    reported: Arc<Reported>,
}

/// The positions the tasks' readers have settled, by topic and partition, then reader.
#[derive(Debug, Default)]
struct Reported(Mutex<BTreeMap<(String, i32), BTreeMap<usize, i64>>>);

impl Reported {
    fn report(&self, topic: &str, partition: i32, reader: usize, position: i64) {
        lock(&self.0)
            .entry((topic.to_string(), partition))
            .or_default()
            .insert(reader, position);
    }

    /// The least settled position of each partition (of `partitions` only, when given):
    /// every row before it has had its effect in every job.
    fn least(&self, partitions: Option<&[i32]>) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for ((topic, partition), readers) in lock(&self.0).iter() {
            if partitions.is_some_and(|p| !p.contains(partition)) {
                continue;
            }
            if let Some(&least) = readers.values().min() {
                let _ = list.add_partition_offset(topic, *partition, Offset::Offset(least));
            }
        }
        list
    }

    /// Forgets the partitions given up: their next owner reports them.
    fn forget(&self, partitions: &[i32]) {
        lock(&self.0).retain(|(_, partition), _| !partitions.contains(partition));
    }
}

impl GroupMember {
    /// Joins the group, reporting every change of this process's partitions on `changes`.
    pub fn join(
        options: &KafkaOptions,
        membership: &GroupMembership,
        changes: mpsc::UnboundedSender<GroupChange>,
    ) -> Result<Self, Error> {
        let session_ms = membership.session_timeout.as_millis().max(1000);
        let reported = Arc::new(Reported::default());
        let consumer: BaseConsumer<MemberContext> = consumer_config(options)
            .set("group.id", &membership.group)
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", session_ms.to_string())
            .set("heartbeat.interval.ms", (session_ms / 3).to_string())
            // The member polls ten times a second and blocks only while revoked tasks stop,
            // for at most REVOKE_WAIT: it is never taken for stuck meanwhile.
            .set(
                "max.poll.interval.ms",
                (REVOKE_WAIT.as_millis() + 30_000)
                    .max(session_ms * 2)
                    .to_string(),
            )
            .create_with_context(MemberContext {
                changes: changes.clone(),
                reported: Arc::clone(&reported),
            })
            .map_err(kafka_error(format!(
                "joining consumer group {}",
                membership.group
            )))?;
        consumer
            .subscribe(&[&membership.topic])
            .map_err(kafka_error(format!(
                "subscribing to {} in consumer group {}",
                membership.topic, membership.group
            )))?;
        let leaving = Arc::new(AtomicBool::new(false));
        let leave = Arc::clone(&leaving);
        let committed = Arc::clone(&reported);
        let thread = std::thread::Builder::new()
            .name(format!("group {}", membership.group))
            .spawn(move || serve(consumer, &leave, &changes, &committed))
            .map_err(|source| Error::Io {
                context: "starting the consumer group member".into(),
                source,
            })?;
        Ok(Self {
            leaving,
            thread: Some(thread),
            reported,
        })
    }

    /// Where this process's tasks report their settled positions, which the member
    /// commits to the group about once a second and when it gives a partition up.
    pub fn settled_position(&self) -> SettledPosition {
        let reported = Arc::clone(&self.reported);
        Arc::new(move |topic, partition, reader, position| {
            reported.report(topic, partition, reader, position)
        })
    }

    /// Leaves the group: the member's partitions are revoked (their tasks stopped through
    /// [`GroupChange::Revoked`]), then [`GroupChange::Left`] is sent.
    pub fn leave(&self) {
        self.leaving.store(true, Ordering::SeqCst);
    }
}

impl Drop for GroupMember {
    /// Leaves without waiting: the thread unsubscribes on its own (a runner that drops the
    /// member has waited for [`GroupChange::Left`] first, unless it was cancelled).
    fn drop(&mut self) {
        self.leave();
        drop(self.thread.take());
    }
}

/// Polls the membership until asked to leave, then leaves the group cleanly.
fn serve(
    consumer: BaseConsumer<MemberContext>,
    leaving: &AtomicBool,
    changes: &mpsc::UnboundedSender<GroupChange>,
    reported: &Reported,
) {
    let mut failure = None;
    let mut last_commit = Instant::now();
    while !leaving.load(Ordering::SeqCst) && !changes.is_closed() {
        if last_commit.elapsed() >= COMMIT_INTERVAL {
            last_commit = Instant::now();
            commit(&consumer, &reported.least(None), CommitMode::Async);
        }
        // Partitions are paused as they are assigned; a record fetched before that is
        // not this member's to read.
        if let Some(Err(error)) = consumer.poll(POLL_INTERVAL) {
            if is_fatal(&error) {
                failure = Some(error.to_string());
                break;
            }
            eprintln!("warning: consumer group member: {error}");
        }
    }
    // Unsubscribing revokes every partition held (the tasks are stopped through the
    // callback) and leaves the group, so the others take the partitions over at once.
    consumer.unsubscribe();
    for _ in 0..50 {
        if consumer.assignment().is_ok_and(|a| a.count() == 0) {
            break;
        }
        consumer.poll(POLL_INTERVAL);
    }
    drop(consumer);
    let _ = changes.send(GroupChange::Left(failure));
}

/// Errors after which the member can never take part: retrying them would only repeat the
/// warning.
fn is_fatal(error: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(error, KafkaError::MessageConsumptionFatal(_))
        || matches!(
            error.rdkafka_error_code(),
            Some(
                Code::InvalidSessionTimeout
                    | Code::GroupAuthorizationFailed
                    | Code::InconsistentGroupProtocol
                    | Code::TopicAuthorizationFailed
            )
        )
}

/// Commits `positions` to the group; a failed commit is only reported (a later one carries
/// later positions, and the checkpoints hold what a restart needs).
fn commit(
    consumer: &BaseConsumer<MemberContext>,
    positions: &TopicPartitionList,
    mode: CommitMode,
) {
    if positions.count() == 0 {
        return;
    }
    if let Err(error) = consumer.commit(positions, mode) {
        eprintln!("warning: committing the group's positions: {error}");
    }
}

/// Turns the group's rebalance callbacks into [`GroupChange`]s.
struct MemberContext {
    changes: mpsc::UnboundedSender<GroupChange>,
    reported: Arc<Reported>,
}

impl ClientContext for MemberContext {}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(list) = rebalance else {
            return;
        };
        let partitions = partitions_of(list);
        if partitions.is_empty() {
            return;
        }
        let (done, stopped) = blocking::sync_channel(1);
        let sent = self.changes.send(GroupChange::Revoked {
            partitions: partitions.clone(),
            done,
        });
        if sent.is_ok() && stopped.recv_timeout(REVOKE_WAIT).is_err() {
            eprintln!(
                "warning: revoked partitions were not stopped within {}s",
                REVOKE_WAIT.as_secs()
            );
        }
        // The stopped tasks have reported their last positions: commit them while this
        // member still holds the partitions, then leave them to the next owner.
        let positions = self.reported.least(Some(&partitions));
        commit(consumer, &positions, CommitMode::Sync);
        self.reported.forget(&partitions);
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(list) = rebalance else {
            return;
        };
        let partitions = partitions_of(list);
        if partitions.is_empty() {
            return;
        }
        if let Err(error) = consumer.pause(list) {
            eprintln!("warning: pausing the consumer group member's partitions: {error}");
        }
        let _ = self.changes.send(GroupChange::Assigned(partitions));
    }
}

/// The partition numbers in `list`, in order.
fn partitions_of(list: &TopicPartitionList) -> Vec<i32> {
    let mut partitions: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
    partitions.sort_unstable();
    partitions
}
