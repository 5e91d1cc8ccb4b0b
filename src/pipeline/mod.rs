//! Pipelines: a `.sql` file becomes declared tables and planned jobs ([`Engine`]); running
//! it drives every job at once until the bounded inputs end or a stop is requested.

mod context;
mod engine;
mod status;

pub use context::{PipelineContext, PipelineMetrics, StopSignal};
pub use engine::{Engine, Job, JobKind};
pub use status::{StatusLine, status_text};

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::common::runtime::SpawnedTask;
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};
use crate::format::TextTable;
use crate::session::SessionOptions;
use crate::sql::parse_pipeline;

/// A pipeline file, declared and planned.
pub struct Pipeline {
    engine: Engine,
    jobs: Vec<Job>,
}

/// What a finished run did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub events_in: u64,
    pub rows_out: u64,
    pub late_rows: u64,
    pub elapsed: Duration,
    /// True when the run ended because a stop was requested.
    pub stopped: bool,
}

impl Pipeline {
    /// Parses and plans the pipeline in `text`.
    pub async fn load(text: &str, options: &SessionOptions) -> Result<Self> {
        let engine = Engine::new(options)?;
        let mut jobs = Vec::new();
        for statement in parse_pipeline(text)? {
            if let Some(job) = engine.submit(statement).await? {
                jobs.push(job);
            }
        }
        Ok(Self { engine, jobs })
    }

    /// The planned jobs, in file order.
    pub fn jobs(&self) -> &[Job] {
        &self.jobs
    }

    /// The engine the pipeline runs in.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Runs every job until all have ended, a job fails (the others are stopped), or a
    /// stop is requested through [`StopSignal`].
    pub async fn run(self) -> Result<RunSummary> {
        let started = Instant::now();
        let shared = Arc::clone(self.engine.shared());
        let mut tasks = Vec::with_capacity(self.jobs.len());
        for job in self.jobs {
            let engine = self.engine.clone();
            tasks.push(SpawnedTask::spawn(async move { run_job(&engine, &job).await }));
        }
        let mut first_error = None;
        for task in tasks {
            let outcome = task.join_unwind().await.map_err(|e| Error::Io {
                context: "pipeline task".into(),
                source: std::io::Error::other(e.to_string()),
            });
            if let Err(error) = outcome.and_then(|r| r)
                && first_error.is_none()
            {
                shared.stop.stop();
                first_error = Some(error);
            }
        }
        if let Some(error) = first_error {
            return Err(error);
        }
        let m = &shared.metrics;
        Ok(RunSummary {
            events_in: PipelineMetrics::read(&m.events_in),
            rows_out: PipelineMetrics::read(&m.rows_out),
            late_rows: PipelineMetrics::read(&m.late_rows),
            elapsed: started.elapsed(),
            stopped: shared.stop.is_stopped(),
        })
    }
}

/// Runs one job: an `INSERT` drains into its sink; a `SELECT` prints its rows as a table.
async fn run_job(engine: &Engine, job: &Job) -> Result<()> {
    match job.kind {
        JobKind::Insert => engine.drain(job, |_| Ok(())).await,
        JobKind::Query => {
            let mut table = TextTable::new(job.plan.schema());
            let mut text = String::new();
            let mut stdout = tokio::io::stdout();
            let metrics = Arc::clone(engine.shared());
            let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<String>();
            let reader_gone = Arc::clone(engine.shared());
            let printer = SpawnedTask::spawn(async move {
                while let Some(chunk) = receiver.recv().await {
                    let written = async {
                        stdout.write_all(chunk.as_bytes()).await?;
                        stdout.flush().await
                    };
                    match written.await {
                        Ok(()) => {}
                        // The reader went away (`| head`): stop the pipeline quietly.
                        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                            reader_gone.stop.stop();
                            return Ok(());
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok::<_, std::io::Error>(())
            });
            engine
                .drain(job, |batch| {
                    text.clear();
                    table.write(&batch, &mut text)?;
                    PipelineMetrics::add(&metrics.metrics.rows_out, batch.num_rows());
                    let _ = sender.send(text.clone());
                    Ok(())
                })
                .await?;
            drop(sender);
            printer
                .join_unwind()
                .await
                .map_err(|e| Error::Io { context: "printing results".into(), source: std::io::Error::other(e.to_string()) })?
                .map_err(|source| Error::Io { context: "printing results".into(), source })
        }
    }
}
