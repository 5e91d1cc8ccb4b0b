//! Pipelines: a `.sql` file becomes declared tables and planned jobs ([`Engine`]); running
//! it drives every job at once until the bounded inputs end or a stop is requested.

pub mod checkpoint;
mod engine;
mod exchange_rule;
pub mod group;
pub mod session;
mod status;
mod table_facts;
mod unbounded_check;
mod view;
mod view_runs;

pub use engine::{Engine, Job, JobKind, rows_written};
pub use exchange_rule::ExchangeRule;
pub use status::{StatusLine, status_text};
pub use table_facts::{join_retention, lookup_table, table_declarations, table_event_time};
pub use unbounded_check::UnboundedInputCheck;
pub use view::{DEFAULT_MIN_INTERVAL, PlannedView, ViewDefinition, ViewRun, plan_run, plan_view};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::common::runtime::SpawnedTask;
use datafusion::datasource::sink::DataSink;
use datafusion::physical_plan::execute_stream;
use futures::StreamExt;
use futures::stream::FuturesUnordered;

use crate::connector::stdout::{StdoutFormat, StdoutSink};
use crate::error::{Error, Result};
use crate::sql::parse_pipeline;
use crate::stream::JobProgress;
use checkpoint::{
    CheckpointOptions, CheckpointStore, CheckpointedJob, Checkpointer, SinkInputExec,
    run_checkpointable,
};
use session::SessionOptions;

/// A pipeline file, declared and planned.
pub struct Pipeline {
    engine: Engine,
    jobs: Vec<Job>,
}

/// What a finished run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub events_in: u64,
    pub rows_out: u64,
    pub late_rows: u64,
    /// Rows sources dropped as duplicates (`'dedup.key'`).
    pub duplicates: u64,
    /// Upserts stores skipped as not newer than what they held.
    pub stale_upserts: u64,
    /// Records sources skipped or dead-lettered as bad, by kind.
    pub bad_records: BTreeMap<String, u64>,
    pub elapsed: Duration,
    /// True when the run ended because a stop was requested.
    pub stopped: bool,
}

impl RunSummary {
    /// Adds the counts of another run (a task of a consumer group) to these.
    pub fn add(&mut self, other: &RunSummary) {
        self.events_in += other.events_in;
        self.rows_out += other.rows_out;
        self.late_rows += other.late_rows;
        self.duplicates += other.duplicates;
        self.stale_upserts += other.stale_upserts;
        for (kind, count) in &other.bad_records {
            *self.bad_records.entry(kind.clone()).or_default() += count;
        }
    }
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

    /// The planned jobs, to place what running them needs (a group's repartition topics).
    pub(crate) fn jobs_mut(&mut self) -> &mut [Job] {
        &mut self.jobs
    }

    /// The engine the pipeline runs in.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Runs every job until all have ended, a job fails (the others are stopped), or a
    /// stop is requested through [`StopSignal`].
    pub async fn run(self) -> Result<RunSummary> {
        self.run_with(None).await
    }

    /// [`Self::run`], checkpointing the continuous jobs as `checkpoints` says, after
    /// restoring them from the latest complete checkpoint there, if any.
    pub async fn run_with(self, checkpoints: Option<CheckpointOptions>) -> Result<RunSummary> {
        let started = Instant::now();
        let shared = Arc::clone(self.engine.shared());
        let mut progress: Vec<Option<Arc<JobProgress>>> = vec![None; self.jobs.len()];
        let mut checkpointer = None;
        if let Some(options) = checkpoints {
            for job in self.jobs.iter().filter(|job| !job.is_bounded()) {
                if let Some(path) = crate::connector::file::streaming_file_sink(&job.plan) {
                    return Err(Error::Statement {
                        line: job.line,
                        source: datafusion::error::DataFusionError::Plan(format!(
                            "a continuous query into the file sink {path} cannot be checkpointed: the file is written whole only when the query ends. Write to a kafka, sqlite or postgres table, or run without --checkpoint-dir"
                        )),
                    });
                }
            }
            let store = CheckpointStore::open(&options.location)?.with_writer(options.writer);
            let (resumed, epoch, restored) = checkpoint::restore(&store, &self.jobs).await?;
            if let Some(resumed) = resumed {
                eprintln!("resuming from checkpoint {resumed} in {}", store.display());
            }
            let mut checkpointed = Vec::new();
            for (index, (job, state)) in self.jobs.iter().zip(restored).enumerate() {
                if job.is_bounded() {
                    continue;
                }
                let job_progress = Arc::new(JobProgress::restoring(state.unwrap_or_default()));
                checkpointed.push(CheckpointedJob {
                    index,
                    sql: job.sql.clone(),
                    progress: Arc::clone(&job_progress),
                });
                progress[index] = Some(job_progress);
            }
            let checkpoints = Checkpointer::new(
                store,
                options.interval,
                checkpointed,
                epoch,
                Arc::clone(&shared),
            );
            checkpointer = Some(SpawnedTask::spawn(checkpoints.run()));
        }
        // Every job writing a view is registered before any runs, so that a view over it
        // knows, from its first run, that it may change.
        let writers: Vec<_> = self
            .jobs
            .iter()
            .map(|job| job.view.as_ref().map(|(view, _)| view.changes.writer()))
            .collect();
        let mut tasks = Vec::with_capacity(self.jobs.len());
        for ((job, progress), writer) in self.jobs.into_iter().zip(progress).zip(writers) {
            let engine = self.engine.clone();
            tasks.push(SpawnedTask::spawn(async move {
                let ran = run_job(&engine, &job, progress).await;
                drop(writer);
                ran
            }));
        }
        // Jobs are awaited as they end, so that one that fails stops the others at once.
        let mut ending: FuturesUnordered<_> =
            tasks.into_iter().map(SpawnedTask::join_unwind).collect();
        let mut first_error = None;
        while let Some(outcome) = ending.next().await {
            let outcome = outcome.map_err(|e| Error::Io {
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
        drop(checkpointer);
        if let Some(error) = first_error {
            return Err(error);
        }
        let m = &shared.metrics;
        Ok(RunSummary {
            events_in: m.events_in.get(),
            rows_out: m.rows_out.get(),
            late_rows: m.late_rows.get(),
            duplicates: m.duplicates(),
            stale_upserts: m.stale_upserts.get(),
            bad_records: m.bad_records(),
            elapsed: started.elapsed(),
            stopped: shared.stop.is_stopped(),
        })
    }
}

/// Runs one job: an `INSERT` drains into its sink; a `SELECT` prints its rows as a table.
/// With `progress`, the job is checkpointed (and may resume from a checkpoint).
async fn run_job(engine: &Engine, job: &Job, progress: Option<Arc<JobProgress>>) -> Result<()> {
    match job.kind {
        JobKind::Insert => engine.drain_with(job, progress, |_| Ok(())).await,
        JobKind::View(_) | JobKind::Refresh(_) => view_runs::run_view(engine, job, progress).await,
        JobKind::Query => {
            let failed = |source| Error::Statement {
                line: job.line,
                source,
            };
            let (plan, context) = match &progress {
                Some(progress) => {
                    let plan = SinkInputExec::around_sink_input(&job.plan).map_err(failed)?;
                    (plan, engine.job_context_with(Arc::clone(progress)))
                }
                None => (Arc::clone(&job.plan), engine.job_context()),
            };
            let printed = async {
                let rows = execute_stream(plan, Arc::clone(&context)).map_err(failed)?;
                let printer = StdoutSink::new(job.plan.schema(), StdoutFormat::Table);
                printer.write_all(rows, &context).await.map_err(failed)
            };
            let printed = match progress {
                Some(progress) => run_checkpointable(progress, job.line, printed).await,
                None => printed.await,
            };
            JobProgress::finish_task(&context).await;
            printed.map(|_| ())
        }
    }
}
