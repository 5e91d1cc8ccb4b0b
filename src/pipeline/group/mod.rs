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
//! group hands the partition on. Keyed state whose key is not what the topics are keyed
//! by goes through a repartition topic ([`RepartitionTopicExec`]), written and read by
//! the tasks, so that each task holds the state of the keys that hash to it.
//!
//! [`RepartitionTopicExec`]: crate::connector::kafka::RepartitionTopicExec

mod held_tasks;
mod repartition;
mod shared_plan;

pub use shared_plan::SharedPlan;

use held_tasks::{HeldTasks, RunningTask};

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use tokio::sync::mpsc;

use super::checkpoint::{CheckpointOptions, CheckpointStore};
use super::session::SessionOptions;
use super::{Pipeline, RunSummary};
use crate::connector::kafka::{
    GroupChange, GroupMember, GroupMembership, create_repartition_topic,
};
use crate::error::{Error, Result};
use crate::stream::{GroupTask, PipelineContext, SettledPosition, StopSignal};

/// How often the group checks whether a task has ended by itself (failed).
const TASK_CHECK_INTERVAL: Duration = Duration::from_millis(200);

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

impl GroupRun {
    /// Plans the pipeline in `text` and checks that a group can share it.
    pub async fn load(text: &str, session: &SessionOptions, options: GroupOptions) -> Result<Self> {
        // The process's memory limit is shared by all its tasks, not given to each: one
        // pool, made as DataFusion makes a session's.
        let memory_pool = match session.memory_limit {
            Some(limit) => Some(Arc::clone(
                &RuntimeEnvBuilder::new()
                    .with_memory_limit(limit, 1.0)
                    .build()?
                    .memory_pool,
            )),
            None => None,
        };
        let session = &SessionOptions {
            memory_pool,
            ..session.clone()
        };
        let mut probe = Pipeline::load(text, &Self::task_session(session, 0, None)).await?;
        let lineage = CheckpointStore::open(&options.checkpoints.location)?
            .lineage()
            .await?;
        let plan = SharedPlan::of(&mut probe, &options.group, lineage).await?;
        for topic in &plan.topics {
            let topic = Arc::clone(topic);
            tokio::task::spawn_blocking(move || create_repartition_topic(&topic))
                .await
                .map_err(|e| Error::Io {
                    context: "creating a repartition topic".into(),
                    source: std::io::Error::other(e),
                })??;
        }
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

    /// The pipeline's jobs, planned as every task runs them (through the group's
    /// repartition topics).
    pub fn jobs(&self) -> &[super::Job] {
        self.probe.jobs()
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
        Self::task_session(&self.session, partition, None)
    }

    /// The session of partition `partition`'s task: one worker, reading that partition,
    /// drawing on the process's memory pool.
    fn task_session(
        session: &SessionOptions,
        partition: i32,
        settled: Option<SettledPosition>,
    ) -> SessionOptions {
        SessionOptions {
            workers: 1,
            group_task: Some(GroupTask { partition, settled }),
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
        let mut held = HeldTasks::new(member);
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
        let session = Self::task_session(&self.session, partition, Some(settled));
        let mut pipeline = Pipeline::load(&self.text, &session).await?;
        self.plan.place(&mut pipeline)?;
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
        if task.metrics.events_in.get() > 0 {
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
