//! Checkpoints: `profusion run --checkpoint-dir DIR` saves, every interval, where each
//! job's sources had read up to and all its operators' state (open windows, view keys,
//! duplicate keys, watermarks); a restart resumes from the latest complete checkpoint.
//!
//! Each job is snapshotted with barriers ([`JobState`]): its sources put one in after the
//! rows they have handed on, each operator snapshots its state as the barrier passes, and
//! the checkpoint is complete once the sink has made everything before the barrier
//! durable. So a restored job re-reads exactly what followed the barrier, and what it
//! writes again is what it had written after it: the same rows with the same versions,
//! which stores skip. Effects on profiles and keyed sinks are exactly once.

mod coordinator;
mod manifest;
mod sink_input;
mod store;

pub use coordinator::{CheckpointOptions, CheckpointedJob, Checkpointer, restore};
pub use manifest::{JobEntry, Manifest, StateFile};
pub use sink_input::SinkInputExec;
pub use store::{CheckpointStore, Listed};

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;

use crate::error::{Error, Result};
use crate::stream::JobProgress;

/// Runs `job`, a future that drives one job's plan. Fails at once when the job was restored
/// from a checkpoint holding state its plan has no operator for.
pub async fn run_checkpointable<T>(
    progress: Arc<JobProgress>,
    line: usize,
    job: impl Future<Output = Result<T>>,
) -> Result<T> {
    let mut job = pin!(job);
    let mut checked = false;
    std::future::poll_fn(move |cx| {
        let polled = job.as_mut().poll(cx);
        if !checked {
            checked = true;
            let unclaimed = progress.state.unclaimed();
            if !unclaimed.is_empty() {
                return Poll::Ready(Err(Error::Syntax {
                    line,
                    message: format!(
                        "the checkpoint holds state ({}) that this statement's plan has no operator for; \
                         run with a fresh --checkpoint-dir to start over",
                        unclaimed.join(", ")
                    ),
                }));
            }
        }
        polled
    })
    .await
}
