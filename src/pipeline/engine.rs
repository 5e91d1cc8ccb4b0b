//! [`Engine`]: a profusion session that takes pipeline statements one at a time: tables and
//! views are declared at once; `INSERT` and `SELECT` become [`Job`]s, planned and ready to
//! run. `profusion run`, `explain`, the tests and embedding applications all go through it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::common::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, collect, execute_stream};
use datafusion::prelude::SessionContext;
use futures::StreamExt;

use super::checkpoint::{SinkInputExec, run_checkpointable};
use super::session::{SessionOptions, new_session};
use super::view::{ViewDefinition, plan_run, plan_view};
use crate::connector::create_table;
use crate::connector::store::ViewStore;
use crate::error::{Error, Result};
use crate::sql::{PipelineStatement, SourceStatement};
use crate::stream::{JobProgress, PipelineContext, SourceReads};

/// What a query job does with its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobKind {
    /// `INSERT INTO sink ...`: rows go to the sink.
    Insert,
    /// A bare `SELECT`: rows go to whoever runs the job.
    Query,
    /// `CREATE MATERIALIZED VIEW name`: rows are upserted into the view's store (again on
    /// the view's `refresh` schedule, for a view over a bounded query).
    View(String),
    /// `REFRESH MATERIALIZED VIEW name`: one run of a view over a bounded query, now.
    Refresh(String),
}

/// A planned continuous query.
#[derive(Debug, Clone)]
pub struct Job {
    pub kind: JobKind,
    /// The statement as written.
    pub sql: String,
    pub line: usize,
    pub plan: Arc<dyn ExecutionPlan>,
    /// For a view's job: the view, and for a run of a bounded query the version its rows
    /// carry (rows older than it are deleted once the run has finished).
    pub view: Option<(Arc<ViewDefinition>, Option<i64>)>,
}

impl Job {
    /// True when the job ends by itself (every input is bounded).
    pub fn is_bounded(&self) -> bool {
        !self.plan.boundedness().is_unbounded()
    }
}

/// A session that runs pipeline statements.
#[derive(Clone)]
pub struct Engine {
    context: SessionContext,
    /// Materialized views by name, for `REFRESH`.
    views: Arc<Mutex<BTreeMap<String, Arc<ViewDefinition>>>>,
    shared: Arc<PipelineContext>,
    reads: SourceReads,
}

impl Engine {
    /// A fresh engine with its own pipeline context.
    pub fn new(options: &SessionOptions) -> Result<Self> {
        let shared = Arc::new(PipelineContext::default());
        let context = new_session(options, Arc::clone(&shared))?;
        Ok(Self {
            context,
            views: Arc::default(),
            shared,
            reads: options.reads,
        })
    }

    /// The DataFusion session.
    pub fn context(&self) -> &SessionContext {
        &self.context
    }

    /// Metrics and the stop signal of everything this engine runs.
    pub fn shared(&self) -> &Arc<PipelineContext> {
        &self.shared
    }

    /// Declares tables and views, runs set-up statements, and plans queries into jobs.
    pub async fn submit(&self, statement: PipelineStatement) -> Result<Option<Job>> {
        match statement {
            PipelineStatement::CreateTable(create) => {
                let line = create.line;
                let table = create_table(&self.context.state(), create, self.reads).await?;
                let name = table.name().to_string();
                self.check_new_name(&name, line)?;
                self.context
                    .register_table(name.as_str(), Arc::new(table))
                    .map_err(|source| Error::Statement { line, source })?;
                Ok(None)
            }
            PipelineStatement::CreateView(view) => {
                let line = view.line;
                self.check_new_name(&view.name, line)?;
                let planned =
                    plan_view(&self.context, view, self.reads, |name| self.view(name)).await?;
                let name = planned.table.name().to_string();
                self.context
                    .register_table(name.as_str(), Arc::new(planned.table))
                    .map_err(|source| Error::Statement { line, source })?;
                self.views
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(name.clone(), Arc::clone(&planned.definition));
                Ok(Some(Job {
                    kind: JobKind::View(name),
                    sql: planned.definition.query.clone(),
                    line,
                    plan: planned.run.plan,
                    view: Some((planned.definition, planned.run.version)),
                }))
            }
            PipelineStatement::Refresh { view, line } => {
                let definition = self.view(&view).ok_or_else(|| Error::Syntax {
                    line,
                    message: format!(
                        "REFRESH MATERIALIZED VIEW {view}: no materialized view named '{view}'"
                    ),
                })?;
                let run = plan_run(&self.context, &definition).await?;
                if run.version.is_none() {
                    return Err(Error::Syntax {
                        line,
                        message: format!(
                            "REFRESH MATERIALIZED VIEW {view}: the view reads a stream and is kept up to date as events arrive"
                        ),
                    });
                }
                Ok(Some(Job {
                    kind: JobKind::Refresh(view),
                    sql: definition.query.clone(),
                    line,
                    plan: run.plan,
                    view: Some((definition, run.version)),
                }))
            }
            PipelineStatement::Setup(statement) => {
                let frame = self.sql(&statement).await?;
                frame.collect().await.map_err(|source| Error::Statement {
                    line: statement.line,
                    source,
                })?;
                Ok(None)
            }
            PipelineStatement::Insert(statement) => {
                self.plan(statement, JobKind::Insert).await.map(Some)
            }
            PipelineStatement::Query(statement) => {
                self.plan(statement, JobKind::Query).await.map(Some)
            }
        }
    }

    /// The materialized view named `name`, if one is declared.
    pub fn view(&self, name: &str) -> Option<Arc<ViewDefinition>> {
        self.views
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// The names of every table and view in the session's default schema, sorted.
    pub fn table_names(&self) -> Vec<String> {
        let Some(catalog) = self.context.catalog("datafusion") else {
            return Vec::new();
        };
        let Some(schema) = catalog.schema("public") else {
            return Vec::new();
        };
        let mut names = schema.table_names();
        names.sort();
        names
    }

    /// Every materialized view declared so far, by name.
    pub fn views(&self) -> Vec<Arc<ViewDefinition>> {
        self.views
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The next run of `job`, a view over a bounded query on a `refresh` schedule.
    pub async fn replan_view(&self, job: &Job) -> Result<Job> {
        let Some((definition, _)) = &job.view else {
            return Err(Error::Syntax {
                line: job.line,
                message: "only a materialized view's job can run again".into(),
            });
        };
        let run = plan_run(&self.context, definition).await?;
        Ok(Job {
            plan: run.plan,
            view: Some((Arc::clone(definition), run.version)),
            ..job.clone()
        })
    }

    /// After a run of a bounded view has finished: deletes the rows of earlier runs (keys
    /// the query no longer returns); returns how many.
    pub(crate) async fn finish_view_run(&self, job: &Job) -> Result<u64> {
        match &job.view {
            Some((definition, Some(version))) => match &definition.store {
                ViewStore::Table(store) => {
                    let deleted = store.delete_older_than(*version).await.map_err(|source| {
                        Error::Statement {
                            line: job.line,
                            source,
                        }
                    })?;
                    if deleted > 0 {
                        definition.changes.deleted();
                    }
                    Ok(deleted)
                }
                ViewStore::Topic { .. } => Ok(0),
            },
            _ => Ok(0),
        }
    }

    /// An error when a table or view named `name` is already declared.
    fn check_new_name(&self, name: &str, line: usize) -> Result<()> {
        if self.context.table_exist(name).unwrap_or(false) {
            return Err(Error::Syntax {
                line,
                message: format!("a table or view named '{name}' is already declared"),
            });
        }
        Ok(())
    }

    async fn sql(&self, statement: &SourceStatement) -> Result<datafusion::prelude::DataFrame> {
        crate::sql::sql_frame(&self.context, &statement.text)
            .await
            .map_err(|source| Error::Statement {
                line: statement.line,
                source,
            })
    }

    async fn plan(&self, statement: SourceStatement, kind: JobKind) -> Result<Job> {
        let frame = self.sql(&statement).await?;
        let plan = frame
            .create_physical_plan()
            .await
            .map_err(|source| Error::Statement {
                line: statement.line,
                source: unwrap_context(source),
            })?;
        Ok(Job {
            kind,
            sql: statement.text,
            line: statement.line,
            plan,
            view: None,
        })
    }

    /// A task context for one run of a job: the session's, with the job's own
    /// [`JobProgress`] (what its sources may commit).
    pub fn job_context(&self) -> Arc<TaskContext> {
        self.job_context_with(Arc::new(JobProgress::default()))
    }

    /// A task context for one run of a job whose progress is `progress`.
    pub fn job_context_with(&self, progress: Arc<JobProgress>) -> Arc<TaskContext> {
        let state = self.context.state();
        let config = state.config().clone().with_extension(progress);
        Arc::new(TaskContext::from(&state).with_session_config(config))
    }

    /// The progress of one run of `job`: `checkpointed`, or a fresh one; a view's job
    /// measures the view's staleness.
    fn progress_of(&self, job: &Job, checkpointed: Option<Arc<JobProgress>>) -> Arc<JobProgress> {
        let progress = checkpointed.unwrap_or_default();
        if let Some((view, _)) = &job.view {
            progress.measure_staleness(self.shared.metrics.profile_staleness(&view.name));
        }
        progress
    }

    /// Runs `job` to its end and returns its rows (for an `INSERT`, the row count). A run of
    /// a view over a bounded query then deletes the rows of earlier runs.
    pub async fn collect(&self, job: &Job) -> Result<Vec<RecordBatch>> {
        let _run = match &job.view {
            Some((definition, Some(_))) => Some(definition.runs.lock().await),
            _ => None,
        };
        let batches = self.collect_rows(job).await?;
        self.finish_view_run(job).await?;
        Ok(batches)
    }

    /// [`Self::collect`] without what follows a view's run.
    pub(crate) async fn collect_rows(&self, job: &Job) -> Result<Vec<RecordBatch>> {
        let context = self.job_context_with(self.progress_of(job, None));
        let batches = collect(Arc::clone(&job.plan), Arc::clone(&context)).await;
        if batches.is_ok() {
            // The caller has every row: what they came from is settled.
            JobProgress::settle_task(&context);
        }
        JobProgress::finish_task(&context).await;
        batches.map_err(|source| Error::Statement {
            line: job.line,
            source,
        })
    }

    /// Runs `job` to its end, handing each batch it produces to `on_batch`; once
    /// `on_batch` has returned, the batch counts as delivered.
    pub async fn drain(
        &self,
        job: &Job,
        on_batch: impl FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        self.drain_with(job, None, on_batch).await
    }

    /// [`Self::drain`]; with `checkpointed`, the job's progress, restored from a checkpoint
    /// or not, whose snapshots a [`Checkpointer`](super::checkpoint::Checkpointer) takes.
    pub async fn drain_with(
        &self,
        job: &Job,
        checkpointed: Option<Arc<JobProgress>>,
        mut on_batch: impl FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        let failed = |source| Error::Statement {
            line: job.line,
            source,
        };
        let plan = match &checkpointed {
            Some(_) => SinkInputExec::around_sink_input(&job.plan).map_err(failed)?,
            None => Arc::clone(&job.plan),
        };
        let context = self.job_context_with(self.progress_of(job, checkpointed.clone()));
        let drained = async {
            let mut stream = execute_stream(plan, Arc::clone(&context)).map_err(failed)?;
            while let Some(batch) = stream.next().await {
                on_batch(batch.map_err(failed)?)?;
                JobProgress::settle_task(&context);
            }
            Ok::<_, Error>(())
        };
        let drained = match checkpointed {
            Some(progress) => run_checkpointable(progress, job.line, drained).await,
            None => drained.await,
        };
        JobProgress::finish_task(&context).await;
        drained?;
        self.finish_view_run(job).await?;
        Ok(())
    }
}

/// The rows an `INSERT` or a view's run wrote, from the count its sink reports.
pub fn rows_written(batches: &[RecordBatch]) -> u64 {
    batches
        .iter()
        .filter(|b| b.num_rows() > 0)
        .filter_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<datafusion::arrow::array::UInt64Array>()
        })
        .map(|counts| counts.value(0))
        .sum()
}

/// Planning errors arrive wrapped in context layers; the innermost message is the one that
/// says what is wrong.
fn unwrap_context(error: DataFusionError) -> DataFusionError {
    match error {
        DataFusionError::Context(_, inner) => unwrap_context(*inner),
        other => other,
    }
}
