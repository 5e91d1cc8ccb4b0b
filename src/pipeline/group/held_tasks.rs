//! The partitions' tasks a process of a consumer group runs ([`HeldTasks`]): started as
//! the group assigns partitions, stopped (and, past [`STOP_WAIT`], aborted) before a
//! revocation is acknowledged, and what their runs came to; the first failure makes the
//! process leave the group.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::connector::kafka::GroupMember;
use crate::error::{Error, Result};
use crate::pipeline::RunSummary;
use crate::stream::PipelineContext;

/// How long a revoked partition's task may take to stop before it is aborted; below the
/// member's own wait for a revocation ([`crate::connector::kafka::REVOKE_WAIT`]).
const STOP_WAIT: Duration = Duration::from_secs(45);

/// A partition's task running in this process.
pub(super) struct RunningTask {
    pub(super) shared: Arc<PipelineContext>,
    pub(super) handle: JoinHandle<Result<RunSummary>>,
    /// Says when the task reads again; ended with the task.
    pub(super) reporter: JoinHandle<()>,
}

/// The tasks this process runs, and what their runs came to.
pub(super) struct HeldTasks {
    pub(super) member: GroupMember,
    tasks: BTreeMap<i32, RunningTask>,
    total: RunSummary,
    /// The first failure: the process then leaves the group.
    failure: Option<Error>,
    pub(super) leaving: bool,
}

impl HeldTasks {
    /// No task yet, for `member`'s partitions.
    pub(super) fn new(member: GroupMember) -> Self {
        Self {
            member,
            tasks: BTreeMap::new(),
            total: RunSummary::default(),
            failure: None,
            leaving: false,
        }
    }

    /// Holds `task` for `partition`; a task still running for it (an assignment repeated
    /// without a revocation) is stopped first, so that one task at most writes for it.
    pub(super) async fn add(&mut self, partition: i32, task: RunningTask) {
        self.stop(partition).await;
        self.tasks.insert(partition, task);
    }

    /// Stops `partition`'s task, if one runs, and waits until it has ended.
    pub(super) async fn stop(&mut self, partition: i32) {
        if let Some(task) = self.tasks.remove(&partition) {
            let ran = stop_task(partition, task).await;
            self.collect(ran);
        }
    }

    /// Takes in the tasks that ended by themselves: they failed.
    pub(super) async fn collect_ended(&mut self) {
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
    pub(super) fn leave(&mut self, failure: Option<Error>) {
        if let Some(error) = failure {
            self.failure.get_or_insert(error);
        }
        if !self.leaving {
            self.leaving = true;
            self.member.leave();
        }
    }

    /// Stops what still runs; the total, or the first failure.
    pub(super) async fn finish(mut self) -> Result<RunSummary> {
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
