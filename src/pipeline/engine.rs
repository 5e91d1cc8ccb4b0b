//! [`Engine`]: a profusion session that takes pipeline statements one at a time: tables and
//! views are declared at once; `INSERT` and `SELECT` become [`Job`]s, planned and ready to
//! run. `profusion run`, `explain`, the tests and embedding applications all go through it.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, collect, execute_stream};
use datafusion::prelude::SessionContext;
use futures::StreamExt;

use super::{JobProgress, PipelineContext};
use crate::connector::create_table;
use crate::error::{Error, Result};
use crate::profile::plan_view;
use crate::session::{SessionOptions, SourceReads, new_session};
use crate::sql::{PipelineStatement, SourceStatement};

/// What a query job does with its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobKind {
    /// `INSERT INTO sink ...`: rows go to the sink.
    Insert,
    /// A bare `SELECT`: rows go to whoever runs the job.
    Query,
    /// `CREATE MATERIALIZED VIEW name`: rows are upserted into the view's store.
    View(String),
}

/// A planned continuous query.
#[derive(Debug, Clone)]
pub struct Job {
    pub kind: JobKind,
    /// The statement as written.
    pub sql: String,
    pub line: usize,
    pub plan: Arc<dyn ExecutionPlan>,
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
                let planned = plan_view(&self.context, view).await?;
                let name = planned.table.name().to_string();
                self.context
                    .register_table(name.as_str(), Arc::new(planned.table))
                    .map_err(|source| Error::Statement { line, source })?;
                Ok(Some(Job {
                    kind: JobKind::View(name),
                    sql: planned.query,
                    line,
                    plan: planned.plan,
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
        self.context
            .sql(&statement.text)
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
        })
    }

    /// A task context for one run of a job: the session's, with the job's own
    /// [`JobProgress`] (what its sources may commit).
    pub fn job_context(&self) -> Arc<TaskContext> {
        let state = self.context.state();
        let config = state
            .config()
            .clone()
            .with_extension(Arc::new(JobProgress::default()));
        Arc::new(TaskContext::from(&state).with_session_config(config))
    }

    /// Runs `job` to its end and returns its rows (for an `INSERT`, the row count).
    pub async fn collect(&self, job: &Job) -> Result<Vec<RecordBatch>> {
        let context = self.job_context();
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
        mut on_batch: impl FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        let failed = |source| Error::Statement {
            line: job.line,
            source,
        };
        let context = self.job_context();
        let drained = async {
            let mut stream =
                execute_stream(Arc::clone(&job.plan), Arc::clone(&context)).map_err(failed)?;
            while let Some(batch) = stream.next().await {
                on_batch(batch.map_err(failed)?)?;
                JobProgress::settle_task(&context);
            }
            Ok(())
        }
        .await;
        JobProgress::finish_task(&context).await;
        drained
    }
}

/// Planning errors arrive wrapped in context layers; the innermost message is the one that
/// says what is wrong.
fn unwrap_context(error: DataFusionError) -> DataFusionError {
    match error {
        DataFusionError::Context(_, inner) => unwrap_context(*inner),
        other => other,
    }
}
