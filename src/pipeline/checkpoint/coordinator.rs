//! [`Checkpointer`]: takes a checkpoint of every running job each interval. It sends each
//! job a barrier and waits for its snapshot (see [`JobState`]), writes each job's state
//! files, then the manifest, then deletes checkpoints older than the last few.
//!
//! Jobs are snapshotted one after the other, each at its own consistent moment: jobs share
//! no state, so each job's part of a checkpoint is consistent on its own.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::manifest::Manifest;
use super::store::CheckpointStore;
use crate::error::{Error, Result};
use crate::pipeline::Job;
use crate::stream::{JobProgress, JobState, PipelineContext};

/// How many complete checkpoints are kept.
const RETAINED: usize = 3;
/// How long a job may take to reach a moment it can be snapshotted at.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(60);

/// Where and how often a pipeline checkpoints.
#[derive(Debug, Clone)]
pub struct CheckpointOptions {
    /// A local folder or an object-store URL.
    pub location: String,
    pub interval: Duration,
    /// A tag for this writer's checkpoint folders, when another process may write the
    /// same location at once (see [`super::CheckpointStore::with_writer`]).
    pub writer: Option<String>,
}

/// A job whose state goes into checkpoints.
#[derive(Debug, Clone)]
pub struct CheckpointedJob {
    /// The job's place among the pipeline's jobs.
    pub index: usize,
    pub sql: String,
    pub progress: Arc<JobProgress>,
}

/// Takes the pipeline's checkpoints.
pub struct Checkpointer {
    store: CheckpointStore,
    interval: Duration,
    jobs: Vec<CheckpointedJob>,
    epoch: u64,
    pipeline: Arc<PipelineContext>,
}

impl Checkpointer {
    /// A checkpointer of `jobs` into `store`; the next checkpoint follows `last_epoch`.
    pub fn new(
        store: CheckpointStore,
        interval: Duration,
        jobs: Vec<CheckpointedJob>,
        last_epoch: u64,
        pipeline: Arc<PipelineContext>,
    ) -> Self {
        Self {
            store,
            interval,
            jobs,
            epoch: last_epoch,
            pipeline,
        }
    }

    /// Checkpoints every interval until the pipeline stops. A failed checkpoint is
    /// reported and the next one tried: the last complete one stays usable.
    pub async fn run(mut self) {
        let stop = Arc::clone(&self.pipeline);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = stop.stop.stopped() => return,
            }
            if let Err(error) = self.checkpoint().await {
                self.pipeline.metrics.checkpoint_failures.inc();
                eprintln!("warning: {error} (the previous checkpoint stays the latest)");
            }
        }
    }

    /// Takes one checkpoint of every job.
    pub async fn checkpoint(&mut self) -> Result<Manifest> {
        let started = Instant::now();
        // Every attempt has an epoch of its own: a barrier of a failed one may still be on
        // its way, and must not count for the next.
        let epoch = self.epoch + 1;
        self.epoch = epoch;
        let mut entries = Vec::with_capacity(self.jobs.len());
        for job in &self.jobs {
            let reply = job.progress.state.request(epoch);
            let snapshot = tokio::time::timeout(SNAPSHOT_WAIT, reply)
                .await
                .map_err(|_| {
                    self.failed(
                        epoch,
                        format!("the barrier of job {} did not reach its sink", job.index),
                    )
                })?
                .map_err(|_| self.failed(epoch, format!("job {} ended", job.index)))?
                .map_err(|e| self.failed(epoch, format!("snapshot of job {}: {e}", job.index)))?;
            entries.push(
                self.store
                    .write_job(epoch, job.index, &job.sql, &snapshot)
                    .await?,
            );
        }
        let manifest = Manifest {
            epoch,
            completed_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            duration_ms: started.elapsed().as_millis() as u64,
            jobs: entries,
        };
        self.store.write_manifest(&manifest).await?;
        let metrics = &self.pipeline.metrics;
        metrics.checkpoints.inc();
        metrics.checkpoint_seconds.observe(started.elapsed());
        metrics
            .last_checkpoint_ms
            .store(manifest.duration_ms, std::sync::atomic::Ordering::Relaxed);
        metrics
            .last_checkpoint_success
            .set(manifest.completed_at_ms.max(0) as f64 / 1000.0);
        self.store.prune(RETAINED).await?;
        Ok(manifest)
    }

    fn failed(&self, epoch: u64, message: String) -> Error {
        Error::Checkpoint {
            location: self.store.display().to_string(),
            source: format!("checkpoint {epoch}: {message}").into(),
        }
    }
}

/// The state each of `jobs` resumes from, from the newest checkpoint in `store` that reads
/// whole (newer damaged ones are skipped with a warning): that checkpoint's epoch, the
/// epoch the next checkpoint follows (the highest in the directory; 0 when there is none),
/// and the states. Only unbounded jobs are checkpointed; the checkpoint must have been
/// taken of the same statements.
pub async fn restore(
    store: &CheckpointStore,
    jobs: &[Job],
) -> Result<(Option<u64>, u64, Vec<Option<JobState>>)> {
    let mut states: Vec<Option<JobState>> = jobs.iter().map(|_| None).collect();
    let restorable = store.latest_whole().await?;
    for (folder, reason) in &restorable.skipped {
        eprintln!(
            "warning: checkpoint {folder} in {} does not read whole and is skipped: {reason}",
            store.display()
        );
    }
    let Some((manifest, snapshots)) = restorable.found else {
        if !restorable.skipped.is_empty() {
            eprintln!(
                "warning: no checkpoint in {} reads whole: starting from the beginning",
                store.display()
            );
        }
        return Ok((None, restorable.newest_epoch, states));
    };
    let mismatch = |message: String| {
        Error::Checkpoint {
        location: store.display().to_string(),
        source: format!(
            "checkpoint {} was taken of another pipeline: {message}; run with a fresh --checkpoint-dir to start over",
            manifest.epoch
        )
        .into(),
    }
    };
    let checkpointed: Vec<usize> = jobs
        .iter()
        .enumerate()
        .filter(|(_, j)| !j.is_bounded())
        .map(|(i, _)| i)
        .collect();
    let saved: Vec<usize> = manifest.jobs.iter().map(|j| j.job).collect();
    if saved != checkpointed {
        return Err(mismatch(format!(
            "it holds jobs {saved:?}, the pipeline runs continuous jobs {checkpointed:?}"
        )));
    }
    for (entry, snapshot) in manifest.jobs.iter().zip(snapshots) {
        let job = &jobs[entry.job];
        if job.sql != entry.sql {
            return Err(mismatch(format!(
                "the statement at line {} differs from the one checkpointed",
                job.line
            )));
        }
        states[entry.job] = Some(JobState::restored_from(snapshot));
    }
    Ok((
        Some(manifest.epoch),
        restorable.newest_epoch.max(manifest.epoch),
        states,
    ))
}
