//! Several `profusion run --group NAME` processes sharing one pipeline, as Kafka Streams
//! instances share a topology: Kafka's consumer-group protocol is the cluster manager.
//!
//! Partition N of the source topics is task N. The group deals the lead topic's partitions
//! out among the processes ([`GroupMember`], cooperative-sticky); each partition a process
//! holds runs as a task of its own: the whole pipeline, planned in a session that reads
//! partition N of every source topic on one worker ([`GroupTask`]), checkpointed under
//! `--checkpoint-dir` in `task-N/`. Whichever process is given partition N next restores
//! that task from its latest checkpoint and replays from the offsets recorded there, so a
//! key's state moves with its partition. A revoked partition's task is stopped before the
//! group hands the partition on. Keyed state must follow the topics' partitioning (the
//! producer's key is the grouping key), since each task sees only its partition's rows.

mod shared_plan;

pub use shared_plan::SharedPlan;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool, TrackConsumersPool};
use std::num::NonZeroUsize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::checkpoint::CheckpointOptions;
use super::session::SessionOptions;
use super::{Pipeline, RunSummary};
use crate::connector::kafka::{GroupChange, GroupMember, GroupMembership};
use crate::error::{Error, Result};
use crate::stream::{GroupTask, PipelineContext, PipelineMetrics, SettledPosition, StopSignal};

/// How often the group checks whether a task has ended by itself (failed).
const TASK_CHECK_INTERVAL: Duration = Duration::from_millis(200);
/// How long a revoked partition's task may take to stop before it is aborted; below the
/// member's own wait for a revocation ([`crate::connector::kafka::REVOKE_WAIT`]).
const STOP_WAIT: Duration = Duration::from_secs(45);

/// How a process takes part in a group.
#[derive(Debug, Clone)]
pub struct GroupOptions {
    /// The consumer group the processes share (`--group`).
    pub group: String,
    /// Where every task's checkpoints go, in `task-N/` (a URL all processes reach).
    pub checkpoints: CheckpointOptions,
    /// How long the group waits for a silent process before giving its partitions to the
    /// others (`--session-timeout`).
    pub session_timeout: Duration,
}

/// One process's share of a pipeline run by a consumer group.
pub struct GroupRun {
    /// The pipeline as planned for checking it, never run: its engine knows the tables
    /// and views (`serve --group` reads views through it).
    probe: Pipeline,
    text: String,
    session: SessionOptions,
    options: GroupOptions,
    plan: SharedPlan,
    stop: Arc<StopSignal>,
}

/// A partition's task running in this process.
struct RunningTask {
    shared: Arc<PipelineContext>,
    handle: JoinHandle<Result<RunSummary>>,
    /// Says when the task reads again; ended with the task.
    reporter: JoinHandle<()>,
}

/// The tasks this process runs, and what their runs came to.
struct HeldTasks {
    member: GroupMember,
    tasks: BTreeMap<i32, RunningTask>,
    total: RunSummary,
    /// The first failure: the process then leaves the group.
    failure: Option<Error>,
    leaving: bool,
}

impl HeldTasks {
    /// Holds `task` for `partition`; a task still running for it (an assignment repeated
    /// without a revocation) is stopped first, so that one task at most writes for it.
    async fn add(&mut self, partition: i32, task: RunningTask) {
        self.stop(partition).await;
        self.tasks.insert(partition, task);
    }

    /// Stops `partition`'s task, if one runs, and waits until it has ended.
    async fn stop(&mut self, partition: i32) {
        if let Some(task) = self.tasks.remove(&partition) {
            let ran = stop_task(partition, task).await;
            self.collect(ran);
        }
    }

    /// Takes in the tasks that ended by themselves: they failed.
    async fn collect_ended(&mut self) {
        let ended: Vec<i32> = self
            .tasks
            .iter()
            .filter(|(_, task)| task.handle.is_finished())
            .map(|(partition, _)| *partition)
            .collect();
        for partition in ended {
            if let Some(task) = self.tasks.remove(&partition) {
                task.reporter.abort();
                let ran = task.handle.await;
                self.collect(ran.map_err(joined(partition)).and_then(|ran| ran));
            }
        }
    }

    /// Adds a task's run to the total; a failure makes the process leave the group.
    fn collect(&mut self, ran: Result<RunSummary>) {
        match ran {
            Ok(summary) => self.total.add(&summary),
            Err(error) => self.leave(Some(error)),
        }
    }

    /// Leaves the group (its partitions are revoked, their tasks stopped), keeping the
    /// first failure.
    fn leave(&mut self, failure: Option<Error>) {
        if let Some(error) = failure {
            self.failure.get_or_insert(error);
        }
        if !self.leaving {
            self.leaving = true;
            self.member.leave();
        }
    }

    /// Stops what still runs; the total, or the first failure.
    async fn finish(mut self) -> Result<RunSummary> {
        let partitions: Vec<i32> = self.tasks.keys().copied().collect();
        for partition in partitions {
            self.stop(partition).await;
        }
        match self.failure {
            Some(error) => Err(error),
            None => Ok(self.total),
        }
    }
}

impl GroupRun {
    /// Plans the pipeline in `text` and checks that a group can share it.
    pub async fn load(text: &str, session: &SessionOptions, options: GroupOptions) -> Result<Self> {
        // The process's memory limit is shared by all its tasks, not given to each.
        let session = &SessionOptions {
            memory_pool: session.memory_limit.map(|limit| {
                Arc::new(TrackConsumersPool::new(
                    GreedyMemoryPool::new(limit),
                    NonZeroUsize::new(5).unwrap_or(NonZeroUsize::MIN),
                )) as Arc<dyn MemoryPool>
            }),
            ..session.clone()
        };
        let probe =
            Pipeline::load(text, &Self::task_session(session, &options.group, 0, None)).await?;
        let plan = SharedPlan::of(&probe, &options.group).await?;
        Ok(Self {
            probe,
            text: text.to_string(),
            session: session.clone(),
            options,
            plan,
            stop: Arc::default(),
        })
    }

    /// What the group shares.
    pub fn plan(&self) -> &SharedPlan {
        &self.plan
    }

    /// The engine the pipeline's tables and views are declared in (not the tasks').
    pub fn engine(&self) -> &super::Engine {
        self.probe.engine()
    }

    /// Stops this process's share: it leaves the group, whose other members take its
    /// partitions over.
    pub fn stop_signal(&self) -> Arc<StopSignal> {
        Arc::clone(&self.stop)
    }

    /// The session partition `partition`'s task runs in.
    pub fn session_of(&self, partition: i32) -> SessionOptions {
        Self::task_session(&self.session, &self.options.group, partition, None)
    }

    /// The session of partition `partition`'s task: one worker, reading that partition,
    /// drawing on the process's memory pool.
    fn task_session(
        session: &SessionOptions,
        group: &str,
        partition: i32,
        settled: Option<SettledPosition>,
    ) -> SessionOptions {
        SessionOptions {
            workers: 1,
            group_task: Some(GroupTask {
                group: group.to_string(),
                partition,
                settled,
            }),
            ..session.clone()
        }
    }

    /// Runs the tasks of whatever partitions the group gives this process, until a stop is
    /// requested or a task fails.
    pub async fn run(self) -> Result<RunSummary> {
        let started = Instant::now();
        let group = self.options.group.clone();
        let (changes, mut changed) = mpsc::unbounded_channel();
        let membership = GroupMembership {
            group: group.clone(),
            topic: self.plan.lead_topic.clone(),
            session_timeout: self.options.session_timeout,
        };
        let member = GroupMember::join(&self.plan.kafka, &membership, changes)?;
        eprintln!(
            "joined consumer group {group}: {} partitions of {} to share",
            self.plan.partitions, self.plan.lead_topic
        );
        let mut held = HeldTasks {
            member,
            tasks: BTreeMap::new(),
            total: RunSummary::default(),
            failure: None,
            leaving: false,
        };
        loop {
            tokio::select! {
                change = changed.recv() => match change {
                    Some(GroupChange::Assigned(partitions)) => {
                        eprintln!("consumer group {group}: assigned partitions {partitions:?}");
                        for partition in partitions {
                            if self.stop.is_stopped() {
                                held.leave(None);
                            }
                            if held.leaving {
                                break;
                            }
                            match self.start(partition, held.member.settled_position()).await {
                                Ok(task) => held.add(partition, task).await,
                                Err(error) => held.leave(Some(error)),
                            }
                        }
                    }
                    Some(GroupChange::Revoked { partitions, done }) => {
                        eprintln!("consumer group {group}: revoked partitions {partitions:?}");
                        for partition in partitions {
                            held.stop(partition).await;
                        }
                        let _ = done.send(());
                    }
                    Some(GroupChange::Left(error)) => {
                        if let Some(message) = error {
                            held.leave(Some(Error::Group { group: group.clone(), message }));
                        }
                        break;
                    }
                    None => break,
                },
                _ = self.stop.stopped(), if !held.leaving => held.leave(None),
                _ = tokio::time::sleep(TASK_CHECK_INTERVAL) => held.collect_ended().await,
            }
        }
        let mut total = held.finish().await?;
        total.elapsed = started.elapsed();
        total.stopped = self.stop.is_stopped();
        Ok(total)
    }

    /// Starts partition `partition`'s task, restoring it from its latest checkpoint.
    /// Its readers report their settled positions to `settled`, for the group.
    async fn start(&self, partition: i32, settled: SettledPosition) -> Result<RunningTask> {
        let session =
            Self::task_session(&self.session, &self.options.group, partition, Some(settled));
        let pipeline = Pipeline::load(&self.text, &session).await?;
        let shared = Arc::clone(pipeline.engine().shared());
        // The partition's old owner may still be writing its last checkpoint: each run of
        // a task writes folders of its own.
        let checkpoints = CheckpointOptions {
            location: task_location(&self.options.checkpoints.location, partition),
            interval: self.options.checkpoints.interval,
            writer: Some(writer_tag(partition)),
        };
        let handle = tokio::spawn(pipeline.run_with(Some(checkpoints)));
        let reporter = tokio::spawn(report_processing(
            self.options.group.clone(),
            partition,
            Arc::clone(&shared),
        ));
        Ok(RunningTask {
            shared,
            handle,
            reporter,
        })
    }
}

/// Says when a newly assigned partition's task reads again (its checkpoint restored, its
/// first record read): what taking a partition over cost.
async fn report_processing(group: String, partition: i32, task: Arc<PipelineContext>) {
    let assigned = Instant::now();
    while !task.stop.is_stopped() {
        if PipelineMetrics::read(&task.metrics.events_in) > 0 {
            eprintln!(
                "consumer group {group}: partition {partition} processing, {} ms after it was \
                 assigned",
                assigned.elapsed().as_millis()
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Where partition `partition`'s task keeps its checkpoints under the group's location.
pub fn task_location(location: &str, partition: i32) -> String {
    format!("{}/task-{partition}", location.trim_end_matches('/'))
}

/// A tag no other run of the task shares: this process, the partition and the time.
fn writer_tag(partition: i32) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{:x}-{partition}-{:x}",
        std::process::id(),
        nanos % (1 << 40)
    )
}

/// Stops a task and waits until it has ended: its sinks have flushed what reached them.
/// A task that does not end within [`STOP_WAIT`] is aborted (it writes no more), so that
/// the revocation is acknowledged only once nothing runs for the partition.
async fn stop_task(partition: i32, mut task: RunningTask) -> Result<RunSummary> {
    task.reporter.abort();
    task.shared.stop.stop();
    match tokio::time::timeout(STOP_WAIT, &mut task.handle).await {
        Ok(ran) => ran.map_err(joined(partition))?,
        Err(_) => {
            task.handle.abort();
            let _ = task.handle.await;
            Err(Error::Io {
                context: format!("stopping partition {partition}'s task"),
                source: std::io::Error::other(format!(
                    "it did not end within {}s and was aborted",
                    STOP_WAIT.as_secs()
                )),
            })
        }
    }
}

fn joined(partition: i32) -> impl Fn(tokio::task::JoinError) -> Error {
    move |error| Error::Io {
        context: format!("partition {partition}'s task"),
        source: std::io::Error::other(error.to_string()),
    }
}
